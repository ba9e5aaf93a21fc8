//! WHERE, compiled for column-at-a-time evaluation: every leaf becomes either value ranges over a
//! dimension's chunk or a truth table over its codes, and the logic combines whole chunks of
//! three-valued truth (false 0, unknown 1, true 2: AND is min, OR is max, NOT is 2 - x).

use super::kernel::{Decoder, Scalar};
use super::plan::{Comparison, Dimension, Literal, Number, Predicate};
use super::semantics::{
    code_prefix_ranges, code_text_ranges, complement, intersect, normalize, number_ranges,
    text_holds, Ranges, NULL,
};

pub(crate) const FALSE: u8 = 0;
pub(crate) const UNKNOWN: u8 = 1;
pub(crate) const TRUE: u8 = 2;

/// A chunk's values of one dimension, as WHERE reads them.
#[derive(Clone, Copy)]
pub(crate) enum Values<'a> {
    /// Produced by the dimension's kernel (null is `NULL`).
    Filled(&'a [i64]),
    /// An enum or small-integer column read where it lies in the image (never null).
    Bytes(&'a [u8]),
    /// A money column (fen) read where it lies in the image (never null).
    Fen(&'a [i32]),
}

/// Range lists longer than this are searched by bisection instead of scanned.
const RANGES_SCANNED_MAX: usize = 8;

/// A compiled condition.
pub(crate) enum Filter {
    All {
        parts: Vec<Filter>,
        scratch: Vec<u8>,
    },
    Any {
        parts: Vec<Filter>,
        scratch: Vec<u8>,
    },
    Not(Box<Filter>),
    /// True when the value lies in one of the ranges.
    Ranges {
        scalar: usize,
        ranges: Ranges,
    },
    /// True when the code's entry is `TRUE`.
    Lookup {
        scalar: usize,
        truth: Vec<u8>,
        /// The same table as a byte column reads it, worked out once here.
        bytes: ByteTruth,
    },
    /// True when the value is null (not null when `negated`).
    IsNull {
        scalar: usize,
        negated: bool,
    },
}

impl Filter {
    /// Compiles `predicate`; `scalar_of` gives a dimension's scalar index and decoder.
    pub(crate) fn compile<'s>(
        predicate: &Predicate<Dimension>,
        scalar_of: &mut dyn FnMut(&Dimension) -> usize,
        decoders: &dyn Fn(usize) -> LeafKind<'s>,
        chunk_rows: usize,
    ) -> Filter {
        match predicate {
            Predicate::And(parts) | Predicate::Or(parts) => {
                let parts = parts
                    .iter()
                    .map(|part| Filter::compile(part, scalar_of, decoders, chunk_rows))
                    .collect();
                let scratch = vec![FALSE; chunk_rows];
                if matches!(predicate, Predicate::And(_)) {
                    Filter::All { parts, scratch }
                } else {
                    Filter::Any { parts, scratch }
                }
            }
            Predicate::Not(inner) => Filter::Not(Box::new(Filter::compile(
                inner, scalar_of, decoders, chunk_rows,
            ))),
            Predicate::IsNull { operand, negated } => Filter::IsNull {
                scalar: scalar_of(operand),
                negated: *negated,
            },
            Predicate::Compare { operand, .. }
            | Predicate::In { operand, .. }
            | Predicate::Between { operand, .. }
            | Predicate::LikePrefix { operand, .. }
            | Predicate::IsTrue { operand } => {
                let scalar = scalar_of(operand);
                match decoders(scalar) {
                    LeafKind::Names(names) => {
                        let truth: Vec<u8> = names
                            .iter()
                            .map(|name| {
                                if text_leaf_holds(predicate, name) {
                                    TRUE
                                } else {
                                    FALSE
                                }
                            })
                            .collect();
                        Filter::Lookup {
                            scalar,
                            bytes: ByteTruth::of(&truth),
                            truth,
                        }
                    }
                    LeafKind::Number { scale, multiplier } => Filter::Ranges {
                        scalar,
                        ranges: quotient_ranges(number_leaf_ranges(predicate, scale), multiplier),
                    },
                    LeafKind::Code { width, multiplier } => Filter::Ranges {
                        scalar,
                        ranges: quotient_ranges(code_leaf_ranges(predicate, width), multiplier),
                    },
                }
            }
        }
    }

    /// Evaluates the condition for one chunk; `out` has the chunk's length, and `values` gives
    /// each dimension's values for the chunk (at least `out.len()` of them).
    pub(crate) fn evaluate<'v>(&mut self, values: &dyn Fn(usize) -> Values<'v>, out: &mut [u8]) {
        let is_all = matches!(self, Filter::All { .. });
        let length = out.len();
        match self {
            Filter::All { parts, scratch } | Filter::Any { parts, scratch } => {
                let Some((first, rest)) = parts.split_first_mut() else {
                    out.fill(if is_all { TRUE } else { FALSE });
                    return;
                };
                first.evaluate(values, out);
                let scratch = &mut scratch[..length];
                for part in rest {
                    part.evaluate(values, scratch);
                    if is_all {
                        for (truth, other) in out.iter_mut().zip(scratch.iter()) {
                            *truth = (*truth).min(*other);
                        }
                    } else {
                        for (truth, other) in out.iter_mut().zip(scratch.iter()) {
                            *truth = (*truth).max(*other);
                        }
                    }
                }
            }
            Filter::Not(inner) => {
                inner.evaluate(values, out);
                for truth in out.iter_mut() {
                    *truth = TRUE - *truth;
                }
            }
            Filter::Ranges { scalar, ranges } => match values(*scalar) {
                Values::Filled(values) => evaluate_ranges(ranges, &values[..length], out),
                Values::Bytes(bytes) => evaluate_ranges(ranges, &bytes[..length], out),
                Values::Fen(fen) => evaluate_ranges(ranges, &fen[..length], out),
            },
            Filter::Lookup {
                scalar,
                truth,
                bytes,
            } => match values(*scalar) {
                Values::Filled(values) => {
                    for (result, value) in out.iter_mut().zip(&values[..length]) {
                        *result = if *value == NULL {
                            UNKNOWN
                        } else {
                            truth.get(*value as usize).copied().unwrap_or(FALSE)
                        };
                    }
                }
                Values::Bytes(column) => {
                    let column = &column[..length];
                    match bytes {
                        // `column = 'value'`, the common case: one comparison a byte, which
                        // the compiler does sixteen or more at a time.
                        ByteTruth::One(code) => {
                            for (result, byte) in out.iter_mut().zip(column) {
                                *result = 2 * u8::from(byte == code);
                            }
                        }
                        // A byte indexes a table of 256 entries: no bound check in the loop.
                        ByteTruth::Table(table) => {
                            for (result, byte) in out.iter_mut().zip(column) {
                                *result = table[usize::from(*byte)];
                            }
                        }
                    }
                }
                Values::Fen(fen) => {
                    for (result, value) in out.iter_mut().zip(&fen[..length]) {
                        *result = usize::try_from(*value)
                            .ok()
                            .and_then(|code| truth.get(code).copied())
                            .unwrap_or(FALSE);
                    }
                }
            },
            Filter::IsNull { scalar, negated } => {
                let negated = *negated;
                match values(*scalar) {
                    Values::Filled(values) => {
                        for (result, value) in out.iter_mut().zip(&values[..length]) {
                            *result = if (*value == NULL) != negated {
                                TRUE
                            } else {
                                FALSE
                            };
                        }
                    }
                    Values::Bytes(_) | Values::Fen(_) => {
                        out.fill(if negated { TRUE } else { FALSE });
                    }
                }
            }
        }
    }
}

/// A lookup's truth table as a byte column reads it.
pub(crate) enum ByteTruth {
    /// Only this code is true (every other is false).
    One(u8),
    /// The entry of every byte value (codes past the table are false).
    Table(Box<[u8; 256]>),
}

impl ByteTruth {
    fn of(truth: &[u8]) -> ByteTruth {
        let mut true_codes = truth
            .iter()
            .enumerate()
            .filter(|(_, entry)| **entry != FALSE);
        let only = match (true_codes.next(), true_codes.next()) {
            (Some((code, &TRUE)), None) => u8::try_from(code).ok(),
            _ => None,
        };
        match only {
            Some(code) => ByteTruth::One(code),
            None => {
                let mut table = Box::new([FALSE; 256]);
                for (entry, value) in table.iter_mut().zip(truth) {
                    *entry = *value;
                }
                ByteTruth::Table(table)
            }
        }
    }
}

/// A column type WHERE compares in: its values widen to `i64`, and only filled `i64` values
/// can be `NULL` (the narrow columns read in place hold no null).
trait Cell: Copy + PartialOrd + TryFrom<i64> + Into<i64> {
    const MIN: Self;
    const MAX: Self;
    fn is_null(self) -> bool {
        false
    }
}

impl Cell for u8 {
    const MIN: u8 = u8::MIN;
    const MAX: u8 = u8::MAX;
}

impl Cell for i32 {
    const MIN: i32 = i32::MIN;
    const MAX: i32 = i32::MAX;
}

impl Cell for i64 {
    const MIN: i64 = i64::MIN;
    const MAX: i64 = i64::MAX;
    fn is_null(self) -> bool {
        self == NULL
    }
}

/// Whether each value lies in one of `ranges`, null being unknown. One range is clipped to the
/// column's type, so it is two comparisons in that type, which the compiler does several values
/// at a time; longer lists compare widened. Ranges never hold `NULL`, so a null value is outside
/// them and only its unknown term counts.
fn evaluate_ranges<T: Cell>(ranges: &[(i64, i64)], values: &[T], out: &mut [u8]) {
    let null = |value: T| u8::from(value.is_null());
    match ranges {
        [(low, high)] => {
            let low = T::try_from((*low).max(T::MIN.into())).ok();
            let high = T::try_from((*high).min(T::MAX.into())).ok();
            match (low, high) {
                (Some(low), Some(high)) => {
                    for (result, value) in out.iter_mut().zip(values) {
                        *result = 2 * u8::from(low <= *value && *value <= high) + null(*value);
                    }
                }
                // The range lies wholly outside the type: no value is inside.
                _ => evaluate_ranges::<T>(&[], values, out),
            }
        }
        _ if ranges.len() <= RANGES_SCANNED_MAX => {
            for (result, value) in out.iter_mut().zip(values) {
                let wide: i64 = (*value).into();
                let inside = ranges
                    .iter()
                    .any(|(low, high)| *low <= wide && wide <= *high);
                *result = 2 * u8::from(inside) + null(*value);
            }
        }
        _ => {
            for (result, value) in out.iter_mut().zip(values) {
                let wide: i64 = (*value).into();
                let index = ranges.partition_point(|(_, high)| *high < wide);
                let inside = ranges.get(index).is_some_and(|(low, _)| *low <= wide);
                *result = 2 * u8::from(inside) + null(*value);
            }
        }
    }
}

/// How a leaf's operand is represented in a chunk.
pub(crate) enum LeafKind<'a> {
    /// Codes into a table of text.
    Names(&'a [std::borrow::Cow<'a, str>]),
    /// Integers carrying `scale` decimals (booleans are 0 and 1), stored divided by `multiplier`.
    Number { scale: u32, multiplier: i64 },
    /// A `width`-digit code, stored divided by `multiplier`.
    Code { width: u8, multiplier: i64 },
}

impl<'a> LeafKind<'a> {
    pub(crate) fn of(scalar: &'a Scalar<'a>) -> LeafKind<'a> {
        let multiplier = scalar.multiplier;
        match &scalar.decoder {
            Decoder::Names(names) => LeafKind::Names(names),
            Decoder::Int | Decoder::Bool => LeafKind::Number {
                scale: 0,
                multiplier,
            },
            Decoder::Decimal => LeafKind::Number {
                scale: 2,
                multiplier,
            },
            Decoder::Digits { width } => LeafKind::Code {
                width: *width,
                multiplier,
            },
        }
    }
}

/// Ranges of values turned into ranges of their quotients by `multiplier`, for dimensions whose
/// values are all multiples of it.
fn quotient_ranges(ranges: Ranges, multiplier: i64) -> Ranges {
    if multiplier == 1 {
        return ranges;
    }
    let quotients = ranges
        .into_iter()
        .filter_map(|(low, high)| {
            let low = -((-low).div_euclid(multiplier));
            let high = high.div_euclid(multiplier);
            (low <= high).then_some((low, high))
        })
        .collect();
    normalize(quotients)
}

/// A leaf of a text operand, applied to one text value.
fn text_leaf_holds(predicate: &Predicate<Dimension>, text: &str) -> bool {
    let literal_holds = |comparison: Comparison, literal: &Literal| match literal {
        Literal::Text(literal) => text_holds(text, comparison, literal),
        _ => false,
    };
    match predicate {
        Predicate::Compare {
            comparison,
            literal,
            ..
        } => literal_holds(*comparison, literal),
        Predicate::In { list, negated, .. } => {
            list.iter()
                .any(|literal| literal_holds(Comparison::Equal, literal))
                != *negated
        }
        Predicate::Between {
            low, high, negated, ..
        } => {
            (literal_holds(Comparison::GreaterOrEqual, low)
                && literal_holds(Comparison::LessOrEqual, high))
                != *negated
        }
        Predicate::LikePrefix {
            prefix, negated, ..
        } => text.starts_with(prefix.as_str()) != *negated,
        _ => false,
    }
}

fn as_number(literal: &Literal) -> Option<Number> {
    match literal {
        Literal::Number(number) => Some(*number),
        Literal::Bool(value) => Some(Number {
            mantissa: i128::from(*value),
            scale: 0,
        }),
        Literal::Text(_) => None,
    }
}

/// Ranges where `operand comparison literal` holds, given how a literal turns into ranges.
fn leaf_ranges(
    predicate: &Predicate<Dimension>,
    compare: &dyn Fn(Comparison, &Literal) -> Ranges,
    prefix: &dyn Fn(&str) -> Ranges,
) -> Ranges {
    let negate = |ranges: Ranges, negated: bool| if negated { complement(&ranges) } else { ranges };
    match predicate {
        Predicate::Compare {
            comparison,
            literal,
            ..
        } => normalize(compare(*comparison, literal)),
        Predicate::In { list, negated, .. } => {
            let ranges = list
                .iter()
                .flat_map(|literal| compare(Comparison::Equal, literal))
                .collect();
            negate(normalize(ranges), *negated)
        }
        Predicate::Between {
            low, high, negated, ..
        } => {
            let low = normalize(compare(Comparison::GreaterOrEqual, low));
            let high = normalize(compare(Comparison::LessOrEqual, high));
            negate(intersect(&low, &high), *negated)
        }
        Predicate::LikePrefix {
            prefix: text,
            negated,
            ..
        } => negate(normalize(prefix(text)), *negated),
        Predicate::IsTrue { .. } => vec![(1, 1)],
        _ => Vec::new(),
    }
}

fn number_leaf_ranges(predicate: &Predicate<Dimension>, scale: u32) -> Ranges {
    let compare = |comparison: Comparison, literal: &Literal| match as_number(literal) {
        Some(number) => number_ranges(comparison, number, scale),
        None => Vec::new(),
    };
    leaf_ranges(predicate, &compare, &|_| Vec::new())
}

fn code_leaf_ranges(predicate: &Predicate<Dimension>, width: u8) -> Ranges {
    let compare = |comparison: Comparison, literal: &Literal| match literal {
        Literal::Text(text) => code_text_ranges(comparison, text, width),
        Literal::Number(number) => {
            let limit = 10i64.pow(u32::from(width)) - 1;
            intersect(&number_ranges(comparison, *number, 0), &[(0, limit)])
        }
        Literal::Bool(_) => Vec::new(),
    };
    leaf_ranges(predicate, &compare, &|prefix| {
        code_prefix_ranges(prefix, width)
    })
}
