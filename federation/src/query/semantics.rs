//! What a comparison with a literal means, in one place: WHERE compiles it into value ranges and
//! lookup tables, HAVING applies it to answer values.
//!
//! Numbers compare exactly (an integer column against 2.5, money in fen against 4000.555); text
//! compares byte by byte; a digit code compares with text as its zero-padded text and with a
//! whole number as a number.

use std::cmp::Ordering;

use super::plan::{Comparison, Literal, Number};
use super::value::Value;

/// The null marker in a chunk of `i64` values.
pub(crate) const NULL: i64 = i64::MIN;
/// The smallest non-null value.
pub(crate) const VALUE_MIN: i64 = NULL + 1;

/// Sorted, disjoint, non-adjacent inclusive ranges of non-null values.
pub(crate) type Ranges = Vec<(i64, i64)>;

fn range(low: i128, high: i128) -> Option<(i64, i64)> {
    let low = low.max(i128::from(VALUE_MIN));
    let high = high.min(i128::from(i64::MAX));
    (low <= high).then_some((low as i64, high as i64))
}

/// The values `v` (integers carrying `scale` decimals: 0 for integers, 2 for money) for which
/// `v comparison literal` holds.
pub(crate) fn number_ranges(comparison: Comparison, literal: Number, scale: u32) -> Ranges {
    let numerator = literal.mantissa * 10i128.pow(scale);
    let denominator = 10i128.pow(literal.scale);
    let floor = numerator.div_euclid(denominator);
    let exact = numerator.rem_euclid(denominator) == 0;
    let ceiling = if exact { floor } else { floor + 1 };
    let (min, max) = (i128::from(VALUE_MIN), i128::from(i64::MAX));
    let ranges = match comparison {
        Comparison::Less => vec![range(min, ceiling - 1)],
        Comparison::LessOrEqual => vec![range(min, floor)],
        Comparison::Greater => vec![range(floor + 1, max)],
        Comparison::GreaterOrEqual => vec![range(ceiling, max)],
        Comparison::Equal if exact => vec![range(floor, floor)],
        Comparison::Equal => vec![],
        Comparison::NotEqual if exact => vec![range(min, floor - 1), range(floor + 1, max)],
        Comparison::NotEqual => vec![range(min, max)],
    };
    ranges.into_iter().flatten().collect()
}

/// `10^width`, the number of `width`-digit codes.
pub(crate) fn code_limit(width: u8) -> i64 {
    10i64.pow(u32::from(width))
}

/// A code's text: zero-padded to `width` digits (empty for width 0).
pub(crate) fn code_text(value: i64, width: u8) -> String {
    if width == 0 {
        String::new()
    } else {
        format!("{value:0width$}", width = usize::from(width))
    }
}

/// How many `width`-digit codes satisfy `predicate` on their text, for a predicate that holds for
/// a prefix of the codes in order (text order equals numeric order at a fixed width).
fn codes_before(width: u8, predicate: impl Fn(&str) -> bool) -> i64 {
    let (mut low, mut high) = (0i64, code_limit(width));
    while low < high {
        let middle = low + (high - low) / 2;
        if predicate(&code_text(middle, width)) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}

/// The `width`-digit codes whose text satisfies `text comparison literal`.
pub(crate) fn code_text_ranges(comparison: Comparison, literal: &str, width: u8) -> Ranges {
    let below = codes_before(width, |text| text.as_bytes() < literal.as_bytes());
    let at_most = codes_before(width, |text| text.as_bytes() <= literal.as_bytes());
    let last = code_limit(width) - 1;
    let span = |low: i64, high: i64| (low <= high).then_some((low, high));
    let ranges = match comparison {
        Comparison::Less => vec![span(0, below - 1)],
        Comparison::LessOrEqual => vec![span(0, at_most - 1)],
        Comparison::Greater => vec![span(at_most, last)],
        Comparison::GreaterOrEqual => vec![span(below, last)],
        Comparison::Equal => vec![span(below, at_most - 1)],
        Comparison::NotEqual => vec![span(0, below - 1), span(at_most, last)],
    };
    ranges.into_iter().flatten().collect()
}

/// The `width`-digit codes whose text starts with `prefix`.
pub(crate) fn code_prefix_ranges(prefix: &str, width: u8) -> Ranges {
    if prefix.len() > usize::from(width) || !prefix.bytes().all(|byte| byte.is_ascii_digit()) {
        return Vec::new();
    }
    let value: i64 = prefix.parse().unwrap_or(0);
    let span = code_limit(width - prefix.len() as u8);
    vec![(value * span, (value + 1) * span - 1)]
}

/// Sorts and merges ranges into the canonical form.
pub(crate) fn normalize(mut ranges: Ranges) -> Ranges {
    ranges.sort_unstable();
    let mut merged: Ranges = Vec::with_capacity(ranges.len());
    for (low, high) in ranges {
        match merged.last_mut() {
            Some(last) if low <= last.1.saturating_add(1) => last.1 = last.1.max(high),
            _ => merged.push((low, high)),
        }
    }
    merged
}

/// Every non-null value not in `ranges` (which must be normalised).
pub(crate) fn complement(ranges: &[(i64, i64)]) -> Ranges {
    let mut result = Vec::with_capacity(ranges.len() + 1);
    let mut next = Some(VALUE_MIN);
    for (low, high) in ranges {
        if let Some(start) = next {
            if start < *low {
                result.push((start, low - 1));
            }
        }
        next = high.checked_add(1);
    }
    if let Some(start) = next {
        result.push((start, i64::MAX));
    }
    result
}

/// Values in both (normalised) range sets.
pub(crate) fn intersect(left: &[(i64, i64)], right: &[(i64, i64)]) -> Ranges {
    let mut result = Vec::new();
    for (left_low, left_high) in left {
        for (right_low, right_high) in right {
            let low = (*left_low).max(*right_low);
            let high = (*left_high).min(*right_high);
            if low <= high {
                result.push((low, high));
            }
        }
    }
    normalize(result)
}

/// `text comparison literal`, byte by byte.
pub(crate) fn text_holds(text: &str, comparison: Comparison, literal: &str) -> bool {
    comparison.holds(text.as_bytes().cmp(literal.as_bytes()))
}

/// `value * 10^-scale` against the literal, exactly.
fn compare_scaled(value: i64, scale: u32, literal: Number) -> Ordering {
    let left = i128::from(value) * 10i128.pow(literal.scale);
    let right = literal.mantissa * 10i128.pow(scale);
    left.cmp(&right)
}

/// An answer value against a literal; `None` when the value is null or the kinds do not meet
/// (planning refuses those).
pub(crate) fn compare_value(value: &Value, literal: &Literal) -> Option<Ordering> {
    match (value, literal) {
        (Value::Int(value), Literal::Number(number)) => Some(compare_scaled(*value, 0, *number)),
        (Value::Decimal(value), Literal::Number(number)) => {
            Some(compare_scaled(*value, 2, *number))
        }
        (Value::Float(value), Literal::Number(number)) => value.partial_cmp(&number.to_f64()),
        (Value::Bool(value), Literal::Bool(literal)) => Some(value.cmp(literal)),
        (Value::Text(text), Literal::Text(literal)) => {
            Some(text.as_bytes().cmp(literal.as_bytes()))
        }
        // A digit code against a whole number: the code's digits as a number ("" is 0).
        (Value::Text(text), Literal::Number(number)) => {
            if !text.bytes().all(|byte| byte.is_ascii_digit()) || text.len() > 18 {
                return None;
            }
            let value: i64 = if text.is_empty() {
                0
            } else {
                text.parse().ok()?
            };
            Some(compare_scaled(value, 0, *number))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(mantissa: i128, scale: u32) -> Number {
        Number { mantissa, scale }
    }

    #[test]
    fn number_ranges_are_exact() {
        assert_eq!(
            number_ranges(Comparison::Greater, number(25, 1), 0),
            vec![(3, i64::MAX)]
        );
        assert_eq!(
            number_ranges(Comparison::Less, number(25, 1), 0),
            vec![(VALUE_MIN, 2)]
        );
        assert_eq!(number_ranges(Comparison::Equal, number(25, 1), 0), vec![]);
        assert_eq!(
            number_ranges(Comparison::Equal, number(40005, 1), 2),
            vec![(400050, 400050)]
        );
        assert_eq!(
            number_ranges(Comparison::GreaterOrEqual, number(-4000555, 3), 2),
            vec![(-400055, i64::MAX)]
        );
        assert_eq!(
            number_ranges(Comparison::NotEqual, number(7, 0), 0),
            vec![(VALUE_MIN, 6), (8, i64::MAX)]
        );
    }

    #[test]
    fn code_text_ranges_follow_text_order() {
        assert_eq!(
            code_text_ranges(Comparison::Less, "5201", 12),
            vec![(0, 520099999999)]
        );
        assert_eq!(code_text_ranges(Comparison::Equal, "5201", 12), vec![]);
        assert_eq!(
            code_text_ranges(Comparison::Equal, "520102001201", 12),
            vec![(520102001201, 520102001201)]
        );
        assert_eq!(
            code_text_ranges(Comparison::Greater, "9", 2),
            vec![(90, 99)]
        );
        assert_eq!(
            code_prefix_ranges("5201", 12),
            vec![(520100000000, 520199999999)]
        );
        assert_eq!(code_prefix_ranges("52a", 12), vec![]);
        assert_eq!(code_prefix_ranges("", 2), vec![(0, 99)]);
    }

    #[test]
    fn range_algebra() {
        let ranges = normalize(vec![(5, 9), (1, 2), (3, 4), (20, 30)]);
        assert_eq!(ranges, vec![(1, 9), (20, 30)]);
        assert_eq!(
            complement(&ranges),
            vec![(VALUE_MIN, 0), (10, 19), (31, i64::MAX)]
        );
        assert_eq!(complement(&[(VALUE_MIN, i64::MAX)]), vec![]);
        assert_eq!(intersect(&ranges, &[(8, 25)]), vec![(8, 9), (20, 25)]);
    }
}
