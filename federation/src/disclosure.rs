//! Disclosure control: the minimum cell size `k`, applied once, at the entry node, to the merged
//! partial aggregate of a federated query, before anything is released.
//!
//! # The rules
//!
//! A *cell* here is one group of the answer (one row): its group keys are always released, its
//! aggregates are released or all withheld together, printed as `Value::Suppressed`
//! (`suppressed`), never as 0 and never as NULL. The row count that decides is
//! `PartialGroup::rows` (households for `FROM households`, persons otherwise), not any
//! aggregate's own count.
//!
//! 1. `k <= 1` disables disclosure control: the answer is exactly `PartialAggregate::finalize`.
//! 2. *Primary*: a group with `rows < k` has every aggregate suppressed: COUNT like the others
//!    (a suppressed count is never shown as 0), SUM and AVG, and MIN/MAX, which would otherwise
//!    reveal one person's or household's value. Groups with no rows do not exist, except for a
//!    query without GROUP BY: its one row is suppressed when fewer than `k` rows matched,
//!    including none.
//! 3. *Secondary*: the user can ask for the margins of an answer (the same query without one
//!    group key, or without GROUP BY for the total) and subtract the released cells from them.
//!    For every group key, a *line* is the set of groups that agree on every other key (with one
//!    key, the whole answer is one line). A line is *exposed* when it holds at least one
//!    suppressed and at least one released group, and either exactly one suppressed group or
//!    suppressed groups whose rows add up to fewer than `k` (its margin minus the released
//!    groups would give that small sum). In an exposed line the released group with the fewest
//!    rows (ties: the smallest group key) is suppressed too. Lines are examined key by key, in
//!    group-key order, and the whole pass repeats until no line is exposed. Because the added
//!    group has at least `k` rows, the suppressed groups of every line that has released groups
//!    then number at least two and add up to at least `k` rows.
//! 4. HAVING runs after suppression and treats a suppressed cell as unknown (SQL three-valued
//!    logic, even for `IS NULL`): a group is kept only when the condition is true whatever the
//!    suppressed cells hide, so a HAVING on a suppressed aggregate drops the group, and a HAVING
//!    on group keys alone keeps or drops it as usual. ORDER BY puts suppressed cells last in
//!    either direction and with NULLS FIRST, tied with each other (ties broken by the group keys);
//!    LIMIT is applied last. No step's outcome depends on a suppressed value.
//!
//! # What this protects, and what it does not
//!
//! Protected, within one answer: reading a group of fewer than `k` rows directly; recovering one
//! by subtracting the released groups of a line from that line's margin or from the total;
//! probing it with HAVING, ORDER BY or LIMIT.
//!
//! Not protected, and left to grants (which queries a user may run) and the audit log (which
//! records every query, so differencing can be detected afterwards):
//! - differencing across queries: two queries whose filters differ by a few rows (e.g. a region
//!   with and without one village), or the same query before and after the data changed;
//! - margins that are themselves small: a line of one group equals its margin, which is then
//!   suppressed in the margin's own answer by rule 2, but only if it is asked with the same `k`;
//! - the linear system of all margins together in three or more dimensions, and intervals:
//!   released groups bound the suppressed ones (the heuristic guarantees two or more suppressed
//!   groups per exposed line and at least `k` rows among them, not that no bound is tight);
//! - dominance: a group of at least `k` rows whose SUM or MAX is mostly one contributor's value,
//!   and MIN/MAX of a margin, which may equal a suppressed group's extreme;
//! - existence: a suppressed row still shows that its group is not empty (it may be a secondary
//!   one of at least `k` rows, but a primary one has between 1 and `k - 1`).
//!
//! `primary` and `secondary` count groups before HAVING and LIMIT; they are meant for the audit
//! log. Showing them to the user tells how many groups were small.

use std::collections::HashMap;

use crate::query::{key_bytes, PartialAggregate, PartialGroup, Plan, QueryResult, Value};

/// A merged answer after disclosure control.
#[derive(Clone, Debug, PartialEq)]
pub struct DisclosedResult {
    /// The answer, with `Value::Suppressed` in every aggregate cell of a suppressed group.
    pub result: QueryResult,
    /// Groups suppressed because they have fewer than `k` rows (before HAVING and LIMIT).
    pub primary: usize,
    /// Groups of at least `k` rows suppressed so that no line of the answer exposes a primary one
    /// (before HAVING and LIMIT).
    pub secondary: usize,
}

/// Why a group is withheld, if it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cell {
    Released,
    Primary,
    Secondary,
}

/// Applies minimum cell size `k` to the merged partial aggregate of `plan`, then finalises it
/// (HAVING, ORDER BY, LIMIT as in `PartialAggregate::finalize`). See the module doc for the
/// rules.
pub fn disclose(mut merged: PartialAggregate, plan: &Plan, k: u32) -> DisclosedResult {
    merged.ensure_answer_row(plan);
    if k <= 1 {
        let withheld = vec![false; merged.groups.len()];
        return DisclosedResult {
            result: merged.finalize_withheld(plan, &withheld),
            primary: 0,
            secondary: 0,
        };
    }
    let cells = suppress(&merged.groups, plan.keys.len(), u64::from(k));
    let count = |wanted: Cell| cells.iter().filter(|cell| **cell == wanted).count();
    let primary = count(Cell::Primary);
    let secondary = count(Cell::Secondary);
    let withheld: Vec<bool> = cells.iter().map(|cell| *cell != Cell::Released).collect();
    DisclosedResult {
        result: merged.finalize_withheld(plan, &withheld),
        primary,
        secondary,
    }
}

/// The fate of every group: primary under `k`, then secondary until no line is exposed.
fn suppress(groups: &[PartialGroup], key_count: usize, k: u64) -> Vec<Cell> {
    let mut cells: Vec<Cell> = groups
        .iter()
        .map(|group| {
            if group.rows < k {
                Cell::Primary
            } else {
                Cell::Released
            }
        })
        .collect();
    if key_count == 0 || !cells.contains(&Cell::Primary) {
        return cells;
    }
    // Group-key order, so the outcome does not depend on the order partials were merged in.
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by(|left, right| compare_keys(&groups[*left].key, &groups[*right].key));
    let lines: Vec<Vec<usize>> = (0..key_count)
        .flat_map(|free| lines_along(groups, &order, free))
        .collect();
    loop {
        let mut changed = false;
        for line in &lines {
            if let Some(chosen) = exposed(groups, &cells, line, k) {
                cells[chosen] = Cell::Secondary;
                changed = true;
            }
        }
        if !changed {
            return cells;
        }
    }
}

/// The lines along key `free`: groups (indices, in `order`) that agree on every other key.
fn lines_along(groups: &[PartialGroup], order: &[usize], free: usize) -> Vec<Vec<usize>> {
    let mut lines: Vec<Vec<usize>> = Vec::new();
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    for &position in order {
        let mut rest = groups[position].key.clone();
        rest.remove(free);
        let bytes = key_bytes(&rest);
        match index.get(&bytes) {
            Some(line) => lines[*line].push(position),
            None => {
                index.insert(bytes, lines.len());
                lines.push(vec![position]);
            }
        }
    }
    lines
}

/// When `line` is exposed, the released group to suppress next: the one with the fewest rows,
/// the first in group-key order among equals.
fn exposed(groups: &[PartialGroup], cells: &[Cell], line: &[usize], k: u64) -> Option<usize> {
    let mut suppressed = 0usize;
    let mut suppressed_rows = 0u64;
    let mut smallest: Option<usize> = None;
    for &position in line {
        if cells[position] == Cell::Released {
            let fewer = smallest.is_none_or(|best| groups[position].rows < groups[best].rows);
            if fewer {
                smallest = Some(position);
            }
        } else {
            suppressed += 1;
            suppressed_rows = suppressed_rows.saturating_add(groups[position].rows);
        }
    }
    if suppressed == 0 || !(suppressed == 1 || suppressed_rows < k) {
        return None;
    }
    smallest
}

fn compare_keys(left: &[Value], right: &[Value]) -> std::cmp::Ordering {
    left.iter()
        .zip(right)
        .map(|(left, right)| left.total_cmp(right))
        .find(|ordering| ordering.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}
