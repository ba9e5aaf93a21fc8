//! Answer values and their types: what a cell of a query result holds, how it prints and sorts.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::record::format_cents;

/// One cell of an answer (or of a group key in a partial aggregate).
///
/// Display: `NULL`; integers plainly; `Decimal` (hundredths, i.e. fen) with exactly two decimals;
/// `Float` rounded to 6 decimals with trailing zeros trimmed but at least one decimal kept
/// (`2.0`, `3.5`, `3.333333`); `true`/`false`; text as is; `suppressed` for a cell withheld by
/// disclosure control.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Int(i64),
    /// Hundredths (fen for money).
    Decimal(i64),
    Float(f64),
    Bool(bool),
    Text(String),
    /// A cell withheld by disclosure control (`crate::disclosure`): its group is too small, or it
    /// would let a small group be recovered by subtraction. Never a group key; never produced by
    /// the executor, only by `disclosure::disclose` at the entry node. Unlike `Null` ("no input"),
    /// it says "there is a value and it is not released".
    Suppressed,
}

impl Value {
    /// True for `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// True for `Suppressed`.
    pub fn is_suppressed(&self) -> bool {
        matches!(self, Value::Suppressed)
    }

    /// Orders two values of one column; nulls sort after every other value (callers that want
    /// NULLS FIRST reverse that part), and suppressed cells after nulls, all equal to each other
    /// (so an order never depends on what a suppressed cell hides). Numbers of different kinds
    /// compare by magnitude.
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::Suppressed, Value::Suppressed) => Ordering::Equal,
            (Value::Suppressed, _) => Ordering::Greater,
            (_, Value::Suppressed) => Ordering::Less,
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Null, _) => Ordering::Greater,
            (_, Value::Null) => Ordering::Less,
            (Value::Int(left), Value::Int(right))
            | (Value::Decimal(left), Value::Decimal(right)) => left.cmp(right),
            (Value::Bool(left), Value::Bool(right)) => left.cmp(right),
            (Value::Text(left), Value::Text(right)) => left.as_bytes().cmp(right.as_bytes()),
            (left, right) => match (left.as_f64(), right.as_f64()) {
                (Some(left), Some(right)) => left.total_cmp(&right),
                _ => left.kind_rank().cmp(&right.kind_rank()),
            },
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(value) => Some(*value as f64),
            Value::Decimal(value) => Some(*value as f64 / 100.0),
            Value::Float(value) => Some(*value),
            _ => None,
        }
    }

    fn kind_rank(&self) -> u8 {
        match self {
            Value::Bool(_) => 0,
            Value::Int(_) | Value::Decimal(_) | Value::Float(_) => 1,
            Value::Text(_) => 2,
            Value::Null => 3,
            Value::Suppressed => 4,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Int(value) => write!(f, "{value}"),
            Value::Decimal(value) => f.write_str(&format_cents(*value)),
            Value::Float(value) => f.write_str(&format_float(*value)),
            Value::Bool(value) => write!(f, "{value}"),
            Value::Text(value) => f.write_str(value),
            Value::Suppressed => f.write_str("suppressed"),
        }
    }
}

/// Six decimals, trailing zeros trimmed, at least one decimal kept; negative zero prints as `0.0`.
fn format_float(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let mut text = format!("{value:.6}");
    while text.ends_with('0') && !text.ends_with(".0") {
        text.pop();
    }
    if text == "-0.0" {
        text = "0.0".to_string();
    }
    text
}

/// The type of a dimension, an aggregate or an answer column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// Whole numbers (`Value::Int`).
    Int,
    /// Two-decimal money (`Value::Decimal`).
    Decimal,
    /// `AVG` and `MEDIAN` results (`Value::Float`).
    Float,
    Bool,
    /// Free text (`Value::Text`).
    Text,
    /// One of a fixed list of names, answered as text and ordered as text.
    Enum(&'static [&'static str]),
    /// A fixed-width digit code (household id, region code, or a slice of one), answered as
    /// zero-padded text; compares with text literals as text and with integers as a number.
    DigitCode {
        width: u8,
    },
}

impl ValueType {
    /// True for the types answered as text.
    pub fn is_textual(self) -> bool {
        matches!(
            self,
            ValueType::Text | ValueType::Enum(_) | ValueType::DigitCode { .. }
        )
    }

    /// True for the types `SUM`, `AVG` and `MEDIAN` accept.
    pub fn is_summable(self) -> bool {
        matches!(self, ValueType::Int | ValueType::Decimal)
    }

    /// A short name for messages.
    pub fn describe(self) -> String {
        match self {
            ValueType::Int => "an integer".to_string(),
            ValueType::Decimal => "a decimal".to_string(),
            ValueType::Float => "a float".to_string(),
            ValueType::Bool => "a boolean".to_string(),
            ValueType::Text => "text".to_string(),
            ValueType::Enum(names) => format!("an enum of {}", names.join(", ")),
            ValueType::DigitCode { width } => format!("a {width}-digit code"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_stably() {
        assert_eq!(Value::Float(2.0).to_string(), "2.0");
        assert_eq!(Value::Float(3.5).to_string(), "3.5");
        assert_eq!(Value::Float(10.0 / 3.0).to_string(), "3.333333");
        assert_eq!(Value::Float(-0.0000001).to_string(), "0.0");
        assert_eq!(Value::Float(1234.5678915).to_string(), "1234.567892");
        assert_eq!(Value::Decimal(400050).to_string(), "4000.50");
        assert_eq!(Value::Decimal(-5).to_string(), "-0.05");
    }

    #[test]
    fn nulls_sort_last() {
        let mut values = vec![Value::Null, Value::Int(3), Value::Int(-1)];
        values.sort_by(Value::total_cmp);
        assert_eq!(values, [Value::Int(-1), Value::Int(3), Value::Null]);
    }

    #[test]
    fn suppressed_sorts_after_nulls_and_prints_as_a_word() {
        let mut values = vec![
            Value::Suppressed,
            Value::Null,
            Value::Int(3),
            Value::Suppressed,
            Value::Text("a".to_string()),
        ];
        values.sort_by(Value::total_cmp);
        assert_eq!(
            values,
            [
                Value::Int(3),
                Value::Text("a".to_string()),
                Value::Null,
                Value::Suppressed,
                Value::Suppressed
            ]
        );
        assert_eq!(
            Value::Suppressed.total_cmp(&Value::Suppressed),
            Ordering::Equal
        );
        assert_eq!(Value::Suppressed.to_string(), "suppressed");
        assert!(!Value::Suppressed.is_null());
    }
}
