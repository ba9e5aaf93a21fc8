//! Partial aggregates: what a node computes over its own rows and sends up the tier tree, how
//! partials merge, and how the merged whole becomes the answer (HAVING, ORDER BY, LIMIT).
//!
//! Group keys and MIN/MAX hold answer values, never node-local codes, so partials from nodes with
//! different dictionaries merge correctly.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::plan::{Aggregate, AggregateFunction, Dimension, OrderKey, OutputRef, Plan, Predicate};
use super::semantics::compare_value;
use super::sketch::Sketch;
use super::value::{Value, ValueType};

/// The accumulators of one aggregate in one group. AVG keeps sum and count; MEDIAN a sketch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Accumulator {
    /// Non-null inputs (rows, for COUNT(*)).
    pub count: u64,
    /// Sum of inputs, in the input's units (fen for money).
    pub sum: i128,
    pub min: Option<Value>,
    pub max: Option<Value>,
    /// MEDIAN's sketch of the inputs, in the input's units (fen for money); `None` for the other
    /// aggregates. (`serde(default)` lets self-describing formats read accumulators written
    /// without it; bincode always carries the field.)
    #[serde(default)]
    pub sketch: Option<Sketch>,
}

impl Accumulator {
    fn merge(&mut self, other: Accumulator) {
        self.count += other.count;
        self.sum += other.sum;
        keep_best(&mut self.min, other.min, Ordering::Less);
        keep_best(&mut self.max, other.max, Ordering::Greater);
        match (&mut self.sketch, other.sketch) {
            (Some(sketch), Some(other)) => sketch.merge(&other),
            (current @ None, Some(other)) => *current = Some(other),
            (_, None) => {}
        }
    }
}

fn keep_best(current: &mut Option<Value>, candidate: Option<Value>, wanted: Ordering) {
    if let Some(candidate) = candidate {
        let better = match current {
            Some(value) => candidate.total_cmp(value) == wanted,
            None => true,
        };
        if better {
            *current = Some(candidate);
        }
    }
}

/// One group: its key values (in `Plan::keys` order), its row count and one accumulator per
/// `Plan::aggregates` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartialGroup {
    pub key: Vec<Value>,
    pub rows: u64,
    pub accumulators: Vec<Accumulator>,
}

/// A query's groups before HAVING, ORDER BY and LIMIT, mergeable with other nodes' partials of
/// the same plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PartialAggregate {
    pub groups: Vec<PartialGroup>,
    /// Live rows of the scanned table(s) read to compute this partial.
    pub rows_scanned: u64,
}

/// A group key as bytes, for finding equal keys.
pub(crate) fn key_bytes(key: &[Value]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for value in key {
        match value {
            Value::Null => bytes.push(0),
            Value::Int(number) => {
                bytes.push(1);
                bytes.extend_from_slice(&number.to_le_bytes());
            }
            Value::Decimal(number) => {
                bytes.push(2);
                bytes.extend_from_slice(&number.to_le_bytes());
            }
            Value::Float(number) => {
                bytes.push(3);
                bytes.extend_from_slice(&number.to_bits().to_le_bytes());
            }
            Value::Bool(flag) => bytes.extend_from_slice(&[4, u8::from(*flag)]),
            Value::Text(text) => {
                bytes.push(5);
                bytes.extend_from_slice(&(text.len() as u64).to_le_bytes());
                bytes.extend_from_slice(text.as_bytes());
            }
            Value::Suppressed => bytes.push(6),
        }
    }
    bytes
}

impl PartialAggregate {
    /// Adds another partial of the same plan.
    pub fn merge(&mut self, other: PartialAggregate) {
        self.rows_scanned += other.rows_scanned;
        let mut index: HashMap<Vec<u8>, usize> = self
            .groups
            .iter()
            .enumerate()
            .map(|(position, group)| (key_bytes(&group.key), position))
            .collect();
        for group in other.groups {
            let bytes = key_bytes(&group.key);
            match index.get(&bytes) {
                Some(position) => {
                    let known = &mut self.groups[*position];
                    known.rows += group.rows;
                    for (accumulator, other) in
                        known.accumulators.iter_mut().zip(group.accumulators)
                    {
                        accumulator.merge(other);
                    }
                }
                None => {
                    index.insert(bytes, self.groups.len());
                    self.groups.push(group);
                }
            }
        }
    }

    /// The answer: aggregates finalised, HAVING applied, rows ordered (by ORDER BY, ties and
    /// unordered queries by the group keys ascending, nulls last) and limited.
    ///
    /// A query without GROUP BY answers exactly one row, even over no rows.
    pub fn finalize(mut self, plan: &Plan) -> QueryResult {
        self.ensure_answer_row(plan);
        let withheld = vec![false; self.groups.len()];
        self.finalize_withheld(plan, &withheld)
    }

    /// Gives a query without GROUP BY its one group (zero rows) when no rows matched.
    pub(crate) fn ensure_answer_row(&mut self, plan: &Plan) {
        if plan.keys.is_empty() && self.groups.is_empty() {
            self.groups.push(PartialGroup {
                key: Vec::new(),
                rows: 0,
                accumulators: vec![Accumulator::default(); plan.aggregates.len()],
            });
        }
    }

    /// `finalize`, with every aggregate of group `i` replaced by `Value::Suppressed` where
    /// `withheld[i]`, before HAVING (which treats a suppressed cell as unknown), ORDER BY (which
    /// puts suppressed cells last whatever the direction) and LIMIT. Call `ensure_answer_row`
    /// first.
    pub(crate) fn finalize_withheld(self, plan: &Plan, withheld: &[bool]) -> QueryResult {
        assert_eq!(
            withheld.len(),
            self.groups.len(),
            "one withheld flag per group"
        );
        let mut rows: Vec<(Vec<Value>, Vec<Value>)> = self
            .groups
            .into_iter()
            .zip(withheld)
            .map(|(group, withheld)| {
                let aggregates = plan
                    .aggregates
                    .iter()
                    .zip(&group.accumulators)
                    .map(|(aggregate, accumulator)| {
                        if *withheld {
                            Value::Suppressed
                        } else {
                            final_value(aggregate, accumulator)
                        }
                    })
                    .collect();
                (group.key, aggregates)
            })
            .collect();
        if let Some(having) = &plan.having {
            rows.retain(|(keys, aggregates)| truth(having, keys, aggregates) == Some(true));
        }
        rows.sort_by(|left, right| compare_rows(&plan.order_by, left, right));
        if let Some(limit) = plan.limit {
            rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        let pick = |keys: &[Value], aggregates: &[Value], source: OutputRef| match source {
            OutputRef::Key(index) => keys[index].clone(),
            OutputRef::Aggregate(index) => aggregates[index].clone(),
        };
        QueryResult {
            columns: plan
                .outputs
                .iter()
                .map(|output| output.name.clone())
                .collect(),
            rows: rows
                .iter()
                .map(|(keys, aggregates)| {
                    plan.outputs
                        .iter()
                        .map(|output| pick(keys, aggregates, output.source))
                        .collect()
                })
                .collect(),
            rows_scanned: self.rows_scanned,
        }
    }
}

/// COUNT as an integer; SUM null over no input, else an integer or decimal; AVG and MEDIAN a
/// float (money in yuan); MIN/MAX as found.
fn final_value(aggregate: &Aggregate, accumulator: &Accumulator) -> Value {
    let count = accumulator.count;
    let argument_type = aggregate.argument.as_ref().map(Dimension::value_type);
    match aggregate.function {
        AggregateFunction::CountRows | AggregateFunction::Count => {
            Value::Int(i64::try_from(count).unwrap_or(i64::MAX))
        }
        _ if count == 0 => Value::Null,
        AggregateFunction::Sum => {
            let sum = i64::try_from(accumulator.sum).unwrap_or(if accumulator.sum < 0 {
                i64::MIN
            } else {
                i64::MAX
            });
            if argument_type == Some(ValueType::Decimal) {
                Value::Decimal(sum)
            } else {
                Value::Int(sum)
            }
        }
        AggregateFunction::Avg => {
            // Money sums are in fen; divide once, as DuckDB does, so results round alike.
            let scale = if argument_type == Some(ValueType::Decimal) {
                100.0
            } else {
                1.0
            };
            Value::Float(accumulator.sum as f64 / (count as f64 * scale))
        }
        AggregateFunction::Median => {
            let scale = if argument_type == Some(ValueType::Decimal) {
                100.0
            } else {
                1.0
            };
            match accumulator.sketch.as_ref().and_then(Sketch::median) {
                Some(median) => Value::Float(median / scale),
                None => Value::Null,
            }
        }
        AggregateFunction::Min => accumulator.min.clone().unwrap_or(Value::Null),
        AggregateFunction::Max => accumulator.max.clone().unwrap_or(Value::Null),
    }
}

fn output<'v>(keys: &'v [Value], aggregates: &'v [Value], source: OutputRef) -> &'v Value {
    match source {
        OutputRef::Key(index) => &keys[index],
        OutputRef::Aggregate(index) => &aggregates[index],
    }
}

/// HAVING on one group, in three-valued logic (`None` is unknown). A condition on a suppressed
/// cell is unknown, whatever the condition (even `IS NULL`), so the outcome never depends on
/// what the cell hides.
fn truth(predicate: &Predicate<OutputRef>, keys: &[Value], aggregates: &[Value]) -> Option<bool> {
    let value = |source: &OutputRef| output(keys, aggregates, *source);
    if let Some(operand) = leaf_operand(predicate) {
        if value(operand).is_suppressed() {
            return None;
        }
    }
    match predicate {
        Predicate::And(parts) => {
            let mut result = Some(true);
            for part in parts {
                match truth(part, keys, aggregates) {
                    Some(false) => return Some(false),
                    None => result = None,
                    Some(true) => {}
                }
            }
            result
        }
        Predicate::Or(parts) => {
            let mut result = Some(false);
            for part in parts {
                match truth(part, keys, aggregates) {
                    Some(true) => return Some(true),
                    None => result = None,
                    Some(false) => {}
                }
            }
            result
        }
        Predicate::Not(inner) => truth(inner, keys, aggregates).map(|inner| !inner),
        Predicate::Compare {
            operand,
            comparison,
            literal,
        } => compare_value(value(operand), literal).map(|ordering| comparison.holds(ordering)),
        Predicate::In {
            operand,
            list,
            negated,
        } => {
            let operand = value(operand);
            if operand.is_null() {
                return None;
            }
            let found = list
                .iter()
                .any(|literal| compare_value(operand, literal) == Some(Ordering::Equal));
            Some(found != *negated)
        }
        Predicate::Between {
            operand,
            low,
            high,
            negated,
        } => {
            let operand = value(operand);
            let above = compare_value(operand, low)?;
            let below = compare_value(operand, high)?;
            Some((above != Ordering::Less && below != Ordering::Greater) != *negated)
        }
        Predicate::LikePrefix {
            operand,
            prefix,
            negated,
        } => match value(operand) {
            Value::Text(text) => Some(text.starts_with(prefix.as_str()) != *negated),
            _ => None,
        },
        Predicate::IsNull { operand, negated } => Some(value(operand).is_null() != *negated),
        Predicate::IsTrue { operand } => match value(operand) {
            Value::Bool(flag) => Some(*flag),
            _ => None,
        },
    }
}

/// The operand of a condition that is not AND, OR or NOT.
fn leaf_operand(predicate: &Predicate<OutputRef>) -> Option<&OutputRef> {
    match predicate {
        Predicate::And(_) | Predicate::Or(_) | Predicate::Not(_) => None,
        Predicate::Compare { operand, .. }
        | Predicate::In { operand, .. }
        | Predicate::Between { operand, .. }
        | Predicate::LikePrefix { operand, .. }
        | Predicate::IsNull { operand, .. }
        | Predicate::IsTrue { operand } => Some(operand),
    }
}

fn compare_rows(
    order_by: &[OrderKey],
    left: &(Vec<Value>, Vec<Value>),
    right: &(Vec<Value>, Vec<Value>),
) -> Ordering {
    for key in order_by {
        let left = output(&left.0, &left.1, key.source);
        let right = output(&right.0, &right.1, key.source);
        // Suppressed cells go last in either direction, nulls first or not, all tied.
        let ordering = match (left.is_suppressed(), right.is_suppressed()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => compare_cells(key, left, right),
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    for (left, right) in left.0.iter().zip(&right.0) {
        let ordering = left.total_cmp(right);
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

/// Two unsuppressed cells under one ORDER BY term.
fn compare_cells(key: &OrderKey, left: &Value, right: &Value) -> Ordering {
    match (left.is_null(), right.is_null()) {
        (true, true) => Ordering::Equal,
        (true, false) if key.nulls_first => Ordering::Less,
        (true, false) => Ordering::Greater,
        (false, true) if key.nulls_first => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) if key.descending => right.total_cmp(left),
        (false, false) => left.total_cmp(right),
    }
}

/// A query's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// Live rows of the scanned table(s) read, summed over merged partials.
    pub rows_scanned: u64,
}

impl fmt::Display for QueryResult {
    /// One line per row (the column names first), cells separated by ` | `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.columns.join(" | "))?;
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(ToString::to_string).collect();
            writeln!(f, "{}", cells.join(" | "))?;
        }
        Ok(())
    }
}
