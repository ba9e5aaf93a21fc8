//! The fan-out state machine of one node's part in one federated aggregate query: send the
//! request on to the children whose region meets the scope, merge their partial aggregates with
//! this node's own as they arrive, and say which regions answered and why each missing one is
//! missing.
//!
//! Sans-IO in the manner of quinn-proto: inputs arrive as `handle_*(now, ...)`, the messages to
//! send leave as returned [`Command`]s, and [`FanOut::poll_deadline`] says when the driver must call
//! [`FanOut::handle_timeout`]. Time is `now: u64`, milliseconds on the driver's clock.
//!
//! Deadlines. A node's *deadline* is the instant its parent stops waiting for it. The node stops
//! waiting for its own children [`HOP_MARGIN_MS`] earlier ([`child_deadline`]), which leaves it
//! that long to merge and to get its answer up one hop, and it hands that earlier instant down as
//! its children's deadline. So every hop down the tree takes one margin off: with the client's
//! deadline `D` at the entry node, a child answers by `D - margin`, a grandchild by
//! `D - 2 * margin`, and so on. An answer that arrives at or after the instant a node stopped
//! waiting is not counted: its child is reported missing with [`MissingReason::Timeout`].
//!
//! Invariant: a child is in exactly one state (pending, answered or missing) and leaves pending
//! once; its answer, failure or timeout is final, so a duplicate or late message changes nothing.
//! Boundary: [`SubAnswer`]s come from children over the network; an answer whose coverage names a
//! region outside the child's own region is refused, and the child is counted missing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tiermesh_crypto::PublicKey;

use crate::meta::MetaState;
use crate::query::{Dimension, PartialAggregate, Plan, Predicate};
use crate::region::RegionCode;

/// How much earlier than its own deadline a node stops waiting for its children: the time it
/// keeps for merging and for its answer's hop up to its parent.
pub const HOP_MARGIN_MS: u64 = 200;

/// The deadline a node gives its children, and the instant it stops waiting for them, when its
/// own deadline is `deadline` and the time is `now`.
///
/// The rule: `deadline - HOP_MARGIN_MS`, except that when less than two margins remain, the
/// node keeps only half of what remains, so children always get some time while any is left.
/// Never earlier than `now`, never later than `deadline`.
pub fn child_deadline(deadline: u64, now: u64) -> u64 {
    let remaining = deadline.saturating_sub(now);
    let margin = HOP_MARGIN_MS.min(remaining / 2);
    // margin <= remaining / 2 <= deadline, so no underflow.
    now.max(deadline - margin)
}

/// A child the request goes on to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildTarget {
    pub node: PublicKey,
    /// The region the child serves; if the child does not answer, this region is what the
    /// coverage reports missing (the child's whole subtree).
    pub region: RegionCode,
}

/// Why a region's data is not in an answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MissingReason {
    /// No answer arrived before the node stopped waiting.
    Timeout,
    /// The child could not be reached (connection refused, reset, no route), as the driver saw it.
    Unreachable(String),
    /// The child declined the request (grant or signature check failed, overloaded), in its words.
    Refused(String),
    /// The child's applied metadata is older than the index the query was checked at.
    Stale { node_index: u64, needed: u64 },
    /// The child answered, but its answer was malformed (coverage outside its own region).
    Invalid(String),
}

/// Which regions an answer covers: each answering node with its data version, and each missing
/// region (a whole subtree) with the reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// The nodes whose own rows are in the partial: region, key, data version.
    pub answered: Vec<(RegionCode, PublicKey, u64)>,
    /// Regions whose data is absent, each with its whole subtree.
    pub missing: Vec<(RegionCode, MissingReason)>,
}

/// What a node sends to its parent: the partial aggregate over its subtree and what it covers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SubAnswer {
    pub partial: PartialAggregate,
    pub coverage: Coverage,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Send the (signed) request on to this child, telling it to answer by `deadline`.
    Send {
        to: PublicKey,
        region: RegionCode,
        deadline: u64,
    },
}

/// Where one child stands.
#[derive(Clone, Debug)]
enum ChildState {
    Pending,
    Answered,
    Missing(MissingReason),
}

#[derive(Clone, Debug)]
struct Child {
    target: ChildTarget,
    state: ChildState,
}

/// One node's part of one query: its own partial plus its children's.
#[derive(Clone, Debug)]
pub struct FanOut {
    /// The instant this node stops waiting for its children.
    wait_deadline: u64,
    children: Vec<Child>,
    /// Child key -> position in `children`.
    by_key: BTreeMap<PublicKey, usize>,
    pending: usize,
    partial: PartialAggregate,
    answered: Vec<(RegionCode, PublicKey, u64)>,
    /// Missing regions reported by children's answers (deeper in the tree).
    nested_missing: Vec<(RegionCode, MissingReason)>,
}

impl FanOut {
    /// Starts at `now`. `deadline` is this node's own deadline (when its parent stops waiting);
    /// `own` is this node's local partial (already computed) with its region, key and data
    /// version, `None` when its own rows are outside the query; `children` the children whose
    /// region meets the query scope (see [`targets`]), with distinct keys. Returns the requests to
    /// send, in `children` order; none when no time is left, and then every child has timed out.
    pub fn start(
        now: u64,
        deadline: u64,
        own: Option<(RegionCode, PublicKey, u64, PartialAggregate)>,
        children: Vec<ChildTarget>,
    ) -> (FanOut, Vec<Command>) {
        let wait_deadline = child_deadline(deadline, now);
        let mut by_key = BTreeMap::new();
        for (position, child) in children.iter().enumerate() {
            let previous = by_key.insert(child.node, position);
            assert!(previous.is_none(), "child {} listed twice", child.node);
        }
        let time_left = now < wait_deadline;
        let commands = children
            .iter()
            .filter(|_| time_left)
            .map(|child| Command::Send {
                to: child.node,
                region: child.region,
                deadline: wait_deadline,
            })
            .collect();
        let (partial, answered) = match own {
            Some((region, key, version, partial)) => (partial, vec![(region, key, version)]),
            None => (PartialAggregate::default(), Vec::new()),
        };
        let mut fanout = FanOut {
            wait_deadline,
            pending: children.len(),
            children: children
                .into_iter()
                .map(|target| Child {
                    target,
                    state: ChildState::Pending,
                })
                .collect(),
            by_key,
            partial,
            answered,
            nested_missing: Vec::new(),
        };
        fanout.handle_timeout(now);
        (fanout, commands)
    }

    /// Adds this node's own partial when it was computed after `start` (started with `None`),
    /// so that its scan overlaps the children's work: the same state as if `start` had been
    /// given it, its groups and its entry first.
    pub fn add_own(
        &mut self,
        region: RegionCode,
        key: PublicKey,
        version: u64,
        partial: PartialAggregate,
    ) {
        let mut merged = partial;
        merged.merge(std::mem::take(&mut self.partial));
        self.partial = merged;
        self.answered.insert(0, (region, key, version));
    }

    /// A child's answer arrived: its partial merges in, its coverage joins this node's. An answer
    /// from an unknown sender, a second answer, an answer after the child failed, and an answer
    /// at or after the wait deadline are ignored (the last makes every pending child time out).
    pub fn handle_answer(&mut self, now: u64, from: PublicKey, answer: SubAnswer) {
        if now >= self.wait_deadline {
            self.handle_timeout(now);
            return;
        }
        let Some(position) = self.pending_child(&from) else {
            return;
        };
        let region = self.children[position].target.region;
        let outside = answer
            .coverage
            .answered
            .iter()
            .map(|(answered, _, _)| *answered)
            .chain(answer.coverage.missing.iter().map(|(missing, _)| *missing))
            .find(|covered| !region.contains(*covered));
        if let Some(outside) = outside {
            let reason =
                format!("coverage names region {outside} outside the child's region {region}");
            self.settle(
                position,
                ChildState::Missing(MissingReason::Invalid(reason)),
            );
            return;
        }
        self.settle(position, ChildState::Answered);
        self.partial.merge(answer.partial);
        self.answered.extend(answer.coverage.answered);
        self.nested_missing.extend(answer.coverage.missing);
    }

    /// The child (and with it its whole subtree) will not answer, for `reason`. Ignored for an
    /// unknown sender or a child that already answered or failed, and at or after the wait
    /// deadline (the child has timed out by then).
    pub fn handle_failure(&mut self, now: u64, from: PublicKey, reason: MissingReason) {
        if now >= self.wait_deadline {
            self.handle_timeout(now);
            return;
        }
        if let Some(position) = self.pending_child(&from) {
            self.settle(position, ChildState::Missing(reason));
        }
    }

    /// The clock reached `now`: from the wait deadline on, every child still pending is missing
    /// with [`MissingReason::Timeout`]. Earlier calls do nothing.
    pub fn handle_timeout(&mut self, now: u64) {
        if now < self.wait_deadline || self.pending == 0 {
            return;
        }
        for child in &mut self.children {
            if matches!(child.state, ChildState::Pending) {
                child.state = ChildState::Missing(MissingReason::Timeout);
            }
        }
        self.pending = 0;
    }

    /// When the driver must call [`FanOut::handle_timeout`]; `None` once no child is pending.
    pub fn poll_deadline(&self) -> Option<u64> {
        (self.pending > 0).then_some(self.wait_deadline)
    }

    /// The instant this node stops waiting for its children (also their deadline).
    pub fn wait_deadline(&self) -> u64 {
        self.wait_deadline
    }

    /// True once every child has answered, failed or timed out: the answer can go up.
    pub fn is_done(&self) -> bool {
        self.pending == 0
    }

    /// The merged partial and its coverage: answered = this node's own entry plus the children's
    /// answered entries; missing = the children's nested missing regions plus each failed or
    /// timed-out child's region. Both lists are sorted by region. A child still pending is
    /// reported as timed out, so an early `finish` never pretends to be complete.
    pub fn finish(self) -> SubAnswer {
        let mut answered = self.answered;
        let mut missing = self.nested_missing;
        for child in self.children {
            match child.state {
                ChildState::Answered => {}
                ChildState::Pending => missing.push((child.target.region, MissingReason::Timeout)),
                ChildState::Missing(reason) => missing.push((child.target.region, reason)),
            }
        }
        answered.sort_by_key(|(region, key, _)| (*region, *key));
        missing.sort_by_key(|(region, _)| *region);
        SubAnswer {
            partial: self.partial,
            coverage: Coverage { answered, missing },
        }
    }

    fn pending_child(&self, key: &PublicKey) -> Option<usize> {
        let position = *self.by_key.get(key)?;
        matches!(self.children[position].state, ChildState::Pending).then_some(position)
    }

    fn settle(&mut self, position: usize, state: ChildState) {
        debug_assert!(matches!(self.children[position].state, ChildState::Pending));
        self.children[position].state = state;
        self.pending -= 1;
    }
}

/// Children of `targets` that can hold a row passing `plan`'s filter: a child is dropped only
/// when the filter confines `region_code` (see [`filter_region_ranges`]) to values outside the
/// child's region, so it could only ever answer nothing.
pub fn prune_by_filter(targets: Vec<ChildTarget>, plan: &Plan) -> Vec<ChildTarget> {
    let Some(ranges) = plan.filter.as_ref().and_then(filter_region_ranges) else {
        return targets;
    };
    targets
        .into_iter()
        .filter(|child| {
            let (first, last) = child.region.value_range();
            ranges
                .iter()
                .any(|(low, high)| *low <= last && first <= *high)
        })
        .collect()
}

/// Inclusive ranges of 12-digit `region_code` values that hold every row passing `filter`, or
/// `None` when the filter does not confine `region_code` in a way understood here (then every
/// region may hold matching rows). Understood: `=`, `IN`, `BETWEEN` and `LIKE 'digits%'` on
/// `region_code` or an ancestor of it, under AND (intersection) and OR (union); anything under
/// NOT, or negated, confines nothing. The ranges may be wider than needed, never narrower.
pub fn filter_region_ranges(filter: &Predicate<Dimension>) -> Option<Vec<(u64, u64)>> {
    use crate::grant::{is_region, literal_value};
    let range_of = |operand: &Dimension, value: u64| -> Option<(u64, u64)> {
        match operand {
            Dimension::Column(_) => Some((value, value)),
            _ => RegionCode::from_u64(value)
                .ok()
                .map(RegionCode::value_range),
        }
    };
    match filter {
        Predicate::And(parts) => {
            let mut bound: Option<Vec<(u64, u64)>> = None;
            for part in parts {
                if let Some(ranges) = filter_region_ranges(part) {
                    bound = Some(match bound {
                        None => ranges,
                        Some(known) => intersect_ranges(&known, &ranges),
                    });
                }
            }
            bound
        }
        Predicate::Or(parts) => {
            let mut union = Vec::new();
            for part in parts {
                union.extend(filter_region_ranges(part)?);
            }
            Some(union)
        }
        Predicate::Compare {
            operand,
            comparison: crate::query::Comparison::Equal,
            literal,
        } if is_region(operand) => range_of(operand, literal_value(literal)?).map(|r| vec![r]),
        Predicate::In {
            operand,
            list,
            negated: false,
        } if is_region(operand) => list
            .iter()
            .map(|literal| range_of(operand, literal_value(literal)?))
            .collect(),
        Predicate::Between {
            operand,
            low,
            high,
            negated: false,
        } if is_region(operand) => {
            let (low, _) = range_of(operand, literal_value(low)?)?;
            let (_, high) = range_of(operand, literal_value(high)?)?;
            (low <= high).then(|| vec![(low, high)])
        }
        Predicate::LikePrefix {
            operand,
            prefix,
            negated: false,
        } if is_region(operand) => {
            let digits = prefix.len();
            if digits == 0 || digits > 12 || !prefix.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            let span = 10u64.pow(12 - digits as u32);
            let low = prefix.parse::<u64>().ok()? * span;
            Some(vec![(low, low + span - 1)])
        }
        _ => None,
    }
}

fn intersect_ranges(left: &[(u64, u64)], right: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for (left_low, left_high) in left {
        for (right_low, right_high) in right {
            let (low, high) = ((*left_low).max(*right_low), (*left_high).min(*right_high));
            if low <= high {
                out.push((low, high));
            }
        }
    }
    out
}

/// True when one region contains the other.
fn intersects(left: RegionCode, right: RegionCode) -> bool {
    left.contains(right) || right.contains(left)
}

/// Where `node` sends a query scoped to `scope`: its children in the tier tree
/// ([`MetaState::children_of`], region order) whose region meets some scope region (one
/// contains the other). An empty scope reaches no one.
pub fn targets(state: &MetaState, node: &PublicKey, scope: &[RegionCode]) -> Vec<ChildTarget> {
    state
        .children_of(node)
        .into_iter()
        .filter(|child| scope.iter().any(|region| intersects(child.region, *region)))
        .map(|child| ChildTarget {
            node: child.key,
            region: child.region,
        })
        .collect()
}
