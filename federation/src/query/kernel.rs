//! Scalar kernels: each dimension of a plan compiled into a tight loop that fills a chunk of
//! `i64` values from the image's columns, plus how to turn a value back into an answer `Value`.
//!
//! In a chunk, null is `semantics::NULL`; enums, dictionary text and text derived from them are
//! codes into the kernel's `Decoder::Names` table; digit codes are their numeric value. Ancestor
//! codes and age bands are kept as quotients (`value / multiplier`: 52 for province
//! 520000000000, 3 for the band 30-39 of width 10) so that their group keys pack into few bits.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::date::Date;
use crate::image::{Image, NULL_CODE, NULL_YEAR};
use crate::record::HouseholdId;
use crate::region::RegionCode;
use crate::schema::{ColumnKind, Table};

use super::filter::Values;
use super::plan::{ColumnRef, Dimension, Source};
use super::semantics::{code_limit, code_text, NULL, VALUE_MIN};
use super::value::Value;

/// Where a row's value sits: in the scanned table's own slot, or in its household's slot.
#[derive(Clone, Copy)]
pub(crate) enum Access<'a> {
    Direct,
    /// The scanned table is `persons`; the column is a household's, reached through
    /// `persons.household_slot`.
    Household(&'a [u32]),
}

/// A loop that produces one dimension's values for a range of slots.
pub(crate) enum Kernel<'a> {
    /// Enum codes and small integers.
    Bytes {
        column: &'a [u8],
        access: Access<'a>,
    },
    Bools {
        column: &'a [bool],
        access: Access<'a>,
    },
    /// Years; `nullable` when `NULL_YEAR` stands for null.
    Years {
        column: &'a [u16],
        nullable: bool,
        access: Access<'a>,
    },
    /// Money in fen.
    Money {
        column: &'a [i32],
        access: Access<'a>,
    },
    /// Household ids and region codes.
    Codes {
        column: &'a [u64],
        access: Access<'a>,
    },
    /// Dictionary codes; `NULL_CODE` is null.
    Dictionary {
        column: &'a [u32],
        access: Access<'a>,
    },
    /// A region code's ancestor, as the quotient `value / divisor`.
    Truncate {
        source: Box<Kernel<'a>>,
        divisor: i64,
    },
    /// Quotients turned back into values: `value * multiplier`.
    Scale {
        source: Box<Kernel<'a>>,
        multiplier: i64,
    },
    /// A run of digits of a code: `value / divisor % modulus`.
    Slice {
        source: Box<Kernel<'a>>,
        divisor: i64,
        modulus: i64,
    },
    /// Codes mapped to the codes of derived text.
    Remap {
        source: Box<Kernel<'a>>,
        map: Vec<i64>,
    },
    /// Age divided by `width` (1 for `age`, the band width for `age_band`) from a birth date in
    /// days: looked up in `window` for births from `window_start` on, computed otherwise.
    Age {
        birth_date: &'a [i32],
        ages: AgeTable,
        width: i64,
        window_start: i64,
        window: Vec<i16>,
    },
}

#[inline]
fn gather<T: Copy>(
    column: &[T],
    access: Access<'_>,
    start: usize,
    rows: Rows<'_>,
    out: &mut [i64],
    convert: impl Fn(T) -> i64,
) {
    match (access, rows) {
        (Access::Direct, Rows::All) => {
            let end = start + out.len();
            for (value, cell) in out.iter_mut().zip(&column[start..end]) {
                *value = convert(*cell);
            }
        }
        (Access::Household(slots), Rows::All) => {
            let end = start + out.len();
            for (value, slot) in out.iter_mut().zip(&slots[start..end]) {
                *value = convert(column[*slot as usize]);
            }
        }
        (Access::Direct, Rows::Selected(rows)) => {
            let column = &column[start..];
            for row in rows {
                let row = *row as usize;
                out[row] = convert(column[row]);
            }
        }
        (Access::Household(slots), Rows::Selected(rows)) => {
            let slots = &slots[start..];
            for row in rows {
                let row = *row as usize;
                out[row] = convert(column[slots[row] as usize]);
            }
        }
    }
}

/// Which values of a chunk to produce.
#[derive(Clone, Copy)]
pub(crate) enum Rows<'r> {
    /// Every row of `out`.
    All,
    /// Only these rows (offsets into the chunk); the other entries of `out` are left as they
    /// were. For a selective WHERE, a key or aggregate column is then read at a few places of
    /// a chunk instead of all of it.
    Selected(&'r [u32]),
}

/// Applies `change` to the entries of `out` that `rows` names.
#[inline]
fn each(out: &mut [i64], rows: Rows<'_>, mut change: impl FnMut(&mut i64)) {
    match rows {
        Rows::All => out.iter_mut().for_each(change),
        Rows::Selected(rows) => {
            for row in rows {
                change(&mut out[*row as usize]);
            }
        }
    }
}

impl Kernel<'_> {
    /// Fills `out` with the values of slots `start .. start + out.len()`.
    pub(crate) fn fill(&self, start: usize, out: &mut [i64]) {
        self.fill_rows(start, Rows::All, out);
    }

    /// The values of slots `start .. start + length` as they lie in the image, when this
    /// kernel only reads them from a column of the scanned table without changing them (an
    /// enum or small-integer column, or money): WHERE then reads them there instead of from a
    /// filled copy.
    pub(crate) fn direct(&self, start: usize, length: usize) -> Option<Values<'_>> {
        match self {
            Kernel::Bytes {
                column,
                access: Access::Direct,
            } => Some(Values::Bytes(&column[start..start + length])),
            Kernel::Money {
                column,
                access: Access::Direct,
            } => Some(Values::Fen(&column[start..start + length])),
            _ => None,
        }
    }

    /// Sets `out[row]` to the value of slot `start + row` for each row of `rows` (offsets into
    /// the chunk of `out`); the other entries keep what they held.
    pub(crate) fn fill_selected(&self, start: usize, rows: &[u32], out: &mut [i64]) {
        self.fill_rows(start, Rows::Selected(rows), out);
    }

    fn fill_rows(&self, start: usize, rows: Rows<'_>, out: &mut [i64]) {
        match self {
            Kernel::Bytes { column, access } => {
                gather(column, *access, start, rows, out, i64::from)
            }
            Kernel::Bools { column, access } => {
                gather(column, *access, start, rows, out, i64::from)
            }
            Kernel::Years {
                column,
                nullable: true,
                access,
            } => gather(column, *access, start, rows, out, |year| {
                if year == NULL_YEAR {
                    NULL
                } else {
                    i64::from(year)
                }
            }),
            Kernel::Years { column, access, .. } => {
                gather(column, *access, start, rows, out, i64::from)
            }
            Kernel::Money { column, access } => {
                gather(column, *access, start, rows, out, i64::from)
            }
            Kernel::Codes { column, access } => {
                gather(column, *access, start, rows, out, |code| code as i64)
            }
            Kernel::Dictionary { column, access } => {
                gather(column, *access, start, rows, out, |code| {
                    if code == NULL_CODE {
                        NULL
                    } else {
                        i64::from(code)
                    }
                })
            }
            Kernel::Truncate { source, divisor } => {
                source.fill_rows(start, rows, out);
                // A constant divisor becomes a multiplication; the four tiers' divisors are known.
                match *divisor {
                    10_000_000_000 => each(out, rows, |value| *value /= 10_000_000_000),
                    100_000_000 => each(out, rows, |value| *value /= 100_000_000),
                    1_000_000 => each(out, rows, |value| *value /= 1_000_000),
                    1_000 => each(out, rows, |value| *value /= 1_000),
                    divisor => each(out, rows, |value| *value /= divisor),
                }
            }
            Kernel::Scale { source, multiplier } => {
                source.fill_rows(start, rows, out);
                each(out, rows, |value| {
                    if *value != NULL {
                        *value *= multiplier;
                    }
                });
            }
            Kernel::Slice {
                source,
                divisor,
                modulus,
            } => {
                source.fill_rows(start, rows, out);
                each(out, rows, |value| {
                    if *value != NULL {
                        *value = *value / divisor % modulus;
                    }
                });
            }
            Kernel::Remap { source, map } => {
                source.fill_rows(start, rows, out);
                each(out, rows, |value| {
                    if *value != NULL {
                        *value = map.get(*value as usize).copied().unwrap_or(NULL);
                    }
                });
            }
            Kernel::Age {
                birth_date,
                ages,
                width,
                window_start,
                window,
            } => {
                let age = |birth: i32| {
                    let offset = i64::from(birth) - window_start;
                    match usize::try_from(offset)
                        .ok()
                        .and_then(|offset| window.get(offset))
                    {
                        Some(quotient) => i64::from(*quotient),
                        None => ages.age(birth).div_euclid(*width),
                    }
                };
                match rows {
                    Rows::All => {
                        let births = &birth_date[start..start + out.len()];
                        for (value, birth) in out.iter_mut().zip(births) {
                            *value = age(*birth);
                        }
                    }
                    Rows::Selected(rows) => {
                        let births = &birth_date[start..];
                        for row in rows {
                            let row = *row as usize;
                            out[row] = age(births[row]);
                        }
                    }
                }
            }
        }
    }
}

/// Completed years of age on a reference date, by table lookup instead of calendar arithmetic.
///
/// `thresholds[i]` is the last birth date (in days) of someone aged at least `first_age + i`, so
/// a birth date's age is the largest age whose threshold it does not pass.
pub(crate) struct AgeTable {
    first_age: i64,
    thresholds: Vec<i32>,
    as_of_days: i64,
}

impl AgeTable {
    pub(crate) fn new(as_of: Date) -> AgeTable {
        let (year, month, day) = as_of.ymd();
        // Birth years run 1..=9999, so ages run from year - 10000 to year.
        let first_age = i64::from(year) - 10_000;
        let thresholds = (first_age..=i64::from(year))
            .map(|age| {
                let birth_year = i64::from(year) - age;
                if birth_year < 1 {
                    i32::MIN
                } else if birth_year > 9999 {
                    i32::MAX
                } else {
                    let birth_year = birth_year as i32;
                    // Someone born on 29 February has their birthday on 1 March in other years.
                    Date::from_ymd(birth_year, month, day)
                        .or_else(|| Date::from_ymd(birth_year, month, day - 1))
                        .map_or(i32::MIN, Date::days)
                }
            })
            .collect();
        AgeTable {
            first_age,
            thresholds,
            as_of_days: i64::from(as_of.days()),
        }
    }

    /// The smallest and largest age the table gives.
    pub(crate) fn range(&self) -> (i64, i64) {
        (
            self.first_age,
            self.first_age + self.thresholds.len() as i64 - 1,
        )
    }

    #[inline]
    pub(crate) fn age(&self, birth_date: i32) -> i64 {
        let last = self.thresholds.len() - 1;
        let estimate = ((self.as_of_days - i64::from(birth_date)) * 400).div_euclid(146_097);
        let mut index = (estimate - self.first_age).clamp(0, last as i64) as usize;
        while index < last && birth_date <= self.thresholds[index + 1] {
            index += 1;
        }
        while index > 0 && birth_date > self.thresholds[index] {
            index -= 1;
        }
        self.first_age + index as i64
    }
}

/// Birth dates this many days before the reference date and later are looked up, not computed.
const AGE_WINDOW_DAYS: i64 = 150 * 366;

/// How a chunk value (times the scalar's multiplier) becomes an answer value.
pub(crate) enum Decoder<'a> {
    Int,
    Decimal,
    Bool,
    /// A zero-padded digit code.
    Digits {
        width: u8,
    },
    /// A code into a table of text.
    Names(Vec<Cow<'a, str>>),
}

impl Decoder<'_> {
    pub(crate) fn decode(&self, value: i64) -> Value {
        if value == NULL {
            return Value::Null;
        }
        match self {
            Decoder::Int => Value::Int(value),
            Decoder::Decimal => Value::Decimal(value),
            Decoder::Bool => Value::Bool(value != 0),
            Decoder::Digits { width } => Value::Text(code_text(value, *width)),
            Decoder::Names(names) => names
                .get(value as usize)
                .map_or(Value::Null, |name| Value::Text(name.to_string())),
        }
    }
}

/// The non-null values a kernel can produce, for packing group keys.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Domain {
    pub(crate) min: i64,
    pub(crate) max: i64,
    pub(crate) nullable: bool,
}

/// A compiled dimension.
pub(crate) struct Scalar<'a> {
    pub(crate) kernel: Kernel<'a>,
    pub(crate) decoder: Decoder<'a>,
    /// The chunk values' range (in chunk units).
    pub(crate) domain: Domain,
    /// A chunk value times this is the dimension's value (1 but for ancestors and age bands).
    pub(crate) multiplier: i64,
}

impl Scalar<'_> {
    /// The answer value of a chunk value.
    pub(crate) fn decode(&self, value: i64) -> Value {
        if value == NULL {
            Value::Null
        } else {
            self.decoder.decode(value * self.multiplier)
        }
    }
}

fn domain(min: i64, max: i64, nullable: bool) -> Domain {
    Domain { min, max, nullable }
}

/// Compiles `dimension` for scanning `source` in `image`.
///
/// Panics on a dimension planning never produces (a personal column read directly, a substr
/// of a number): those are programmer errors.
pub(crate) fn compile<'a>(
    dimension: &Dimension,
    image: &'a Image,
    source: Source,
    as_of: Date,
) -> Scalar<'a> {
    match dimension {
        Dimension::Column(column) => column_scalar(*column, image, source),
        Dimension::Ancestor { tier, code } => {
            let inner = column_scalar(*code, image, source);
            let divisor = 10i64.pow(12 - tier.prefix_digits());
            Scalar {
                kernel: Kernel::Truncate {
                    source: Box::new(inner.kernel),
                    divisor,
                },
                decoder: Decoder::Digits { width: 12 },
                domain: domain(0, RegionCode::LIMIT as i64 / divisor - 1, false),
                multiplier: divisor,
            }
        }
        Dimension::Substr {
            source: inner,
            start,
            length,
        } => {
            let inner = compile(inner, image, source, as_of);
            let source_multiplier = inner.multiplier;
            let first = start.saturating_sub(1) as usize;
            let length = *length as usize;
            match inner.decoder {
                Decoder::Digits { width } => {
                    let width = usize::from(width);
                    let end = first.saturating_add(length).min(width);
                    let first = first.min(width);
                    let kept = (end - first) as u8;
                    let modulus = code_limit(kept);
                    let divisor = code_limit((width - end) as u8);
                    let kernel = if source_multiplier == 1 {
                        Kernel::Slice {
                            source: Box::new(inner.kernel),
                            divisor,
                            modulus,
                        }
                    } else {
                        // The source holds quotients: scale back to the code before slicing.
                        Kernel::Slice {
                            source: Box::new(Kernel::Scale {
                                source: Box::new(inner.kernel),
                                multiplier: source_multiplier,
                            }),
                            divisor,
                            modulus,
                        }
                    };
                    Scalar {
                        kernel,
                        decoder: Decoder::Digits { width: kept },
                        domain: domain(0, modulus - 1, inner.domain.nullable),
                        multiplier: 1,
                    }
                }
                Decoder::Names(names) => {
                    let mut derived: Vec<Cow<'a, str>> = Vec::new();
                    let mut codes: HashMap<String, i64> = HashMap::new();
                    let map = names
                        .iter()
                        .map(|name| {
                            let piece: String = name.chars().skip(first).take(length).collect();
                            *codes.entry(piece.clone()).or_insert_with(|| {
                                derived.push(Cow::Owned(piece));
                                derived.len() as i64 - 1
                            })
                        })
                        .collect();
                    let max = derived.len().max(1) as i64 - 1;
                    Scalar {
                        kernel: Kernel::Remap {
                            source: Box::new(inner.kernel),
                            map,
                        },
                        decoder: Decoder::Names(derived),
                        domain: domain(0, max, inner.domain.nullable),
                        multiplier: 1,
                    }
                }
                _ => panic!("substr of a number is refused at planning"),
            }
        }
        Dimension::Age { birth_date } | Dimension::AgeBand { birth_date, .. } => {
            assert!(
                birth_date.table == Table::Persons && birth_date.name == "birth_date",
                "age reads persons.birth_date"
            );
            let ages = AgeTable::new(as_of);
            let (first, last) = ages.range();
            let width = match dimension {
                Dimension::AgeBand { width, .. } => i64::from(*width),
                _ => 1,
            };
            let window_start = i64::from(as_of.days()) - AGE_WINDOW_DAYS;
            let window = (window_start..=i64::from(as_of.days()))
                .map(|birth| {
                    let quotient = ages.age(birth as i32).div_euclid(width);
                    i16::try_from(quotient).unwrap_or(i16::MAX)
                })
                .collect();
            Scalar {
                kernel: Kernel::Age {
                    birth_date: &image.persons.birth_date,
                    ages,
                    width,
                    window_start,
                    window,
                },
                decoder: Decoder::Int,
                domain: domain(first.div_euclid(width), last.div_euclid(width), false),
                multiplier: width,
            }
        }
    }
}

fn enum_names(names: &'static [&'static str]) -> Decoder<'static> {
    Decoder::Names(names.iter().map(|name| Cow::Borrowed(*name)).collect())
}

fn column_scalar<'a>(column: ColumnRef, image: &'a Image, source: Source) -> Scalar<'a> {
    let households = &image.households;
    let persons = &image.persons;
    let via_household = match source.base_table() {
        Table::Persons => Access::Household(&persons.household_slot),
        Table::Households => Access::Direct,
    };
    let access = match column.table {
        Table::Households => via_household,
        Table::Persons => Access::Direct,
    };
    let kind = column.column().kind;
    let bytes = |column: &'a [u8]| Kernel::Bytes { column, access };
    let bools = |column: &'a [bool]| Kernel::Bools { column, access };
    let (kernel, decoder, domain) = match (column.table, column.name) {
        (_, "household_id") => (
            Kernel::Codes {
                column: &households.household_id,
                access: via_household,
            },
            Decoder::Digits { width: 16 },
            domain(0, HouseholdId::LIMIT as i64 - 1, false),
        ),
        (Table::Households, "region_code") => (
            Kernel::Codes {
                column: &households.region_code,
                access,
            },
            Decoder::Digits { width: 12 },
            domain(0, RegionCode::LIMIT as i64 - 1, false),
        ),
        (Table::Households, "members") => (
            bytes(&households.members),
            Decoder::Int,
            domain(0, 255, false),
        ),
        (Table::Households, "registered_year") => (
            Kernel::Years {
                column: &households.registered_year,
                nullable: false,
                access,
            },
            Decoder::Int,
            domain(0, i64::from(u16::MAX), false),
        ),
        (Table::Households, "exit_year") => (
            Kernel::Years {
                column: &households.exit_year,
                nullable: true,
                access,
            },
            Decoder::Int,
            domain(0, i64::from(u16::MAX), true),
        ),
        (Table::Households, "income_per_capita") => (
            Kernel::Money {
                column: &households.income_per_capita,
                access,
            },
            Decoder::Decimal,
            domain(VALUE_MIN, i64::MAX, false),
        ),
        (Table::Households, "cadre_id") => dictionary(
            &households.cadre_id,
            households.cadre_ids.values(),
            access,
            false,
        ),
        (Table::Households, "relocation_site") => dictionary(
            &households.relocation_site,
            households.relocation_sites.values(),
            access,
            true,
        ),
        (table, name) => {
            let bytes_column: Option<&'a [u8]> = match (table, name) {
                (Table::Households, "cause") => Some(&households.cause),
                (Table::Households, "status") => Some(&households.status),
                (Table::Households, "industry") => Some(&households.industry),
                (Table::Persons, "relation") => Some(&persons.relation),
                (Table::Persons, "gender") => Some(&persons.gender),
                (Table::Persons, "education") => Some(&persons.education),
                (Table::Persons, "health") => Some(&persons.health),
                (Table::Persons, "labor") => Some(&persons.labor),
                _ => None,
            };
            let bool_column: Option<&'a [bool]> = match (table, name) {
                (Table::Households, "housing_safe") => Some(&households.housing_safe),
                (Table::Households, "water_safe") => Some(&households.water_safe),
                (Table::Households, "medical_insured") => Some(&households.medical_insured),
                (Table::Households, "relocated") => Some(&households.relocated),
                (Table::Persons, "in_school") => Some(&persons.in_school),
                (Table::Persons, "employed") => Some(&persons.employed),
                _ => None,
            };
            match (kind, bytes_column, bool_column) {
                (ColumnKind::Enum { names }, Some(codes), _) => (
                    bytes(codes),
                    enum_names(names),
                    domain(0, names.len() as i64 - 1, false),
                ),
                (ColumnKind::Bool, _, Some(flags)) => {
                    (bools(flags), Decoder::Bool, domain(0, 1, false))
                }
                _ => panic!("{table}.{name} is not a queryable column of the image"),
            }
        }
    };
    Scalar {
        kernel,
        decoder,
        domain,
        multiplier: 1,
    }
}

fn dictionary<'a>(
    codes: &'a [u32],
    values: &'a [String],
    access: Access<'a>,
    nullable: bool,
) -> (Kernel<'a>, Decoder<'a>, Domain) {
    (
        Kernel::Dictionary {
            column: codes,
            access,
        },
        Decoder::Names(
            values
                .iter()
                .map(|value| Cow::Borrowed(value.as_str()))
                .collect(),
        ),
        domain(0, values.len().max(1) as i64 - 1, nullable),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_table_agrees_with_the_calendar() {
        for as_of in ["2026-06-15", "2024-02-29", "2023-03-01", "2000-01-01"] {
            let as_of = Date::parse_iso(as_of).expect("date");
            let ages = AgeTable::new(as_of);
            let mut birth = Date::from_ymd(1890, 1, 1).expect("date").days();
            let end = Date::from_ymd(2030, 12, 31).expect("date").days();
            while birth <= end {
                let expected = i64::from(Date::from_days(birth).age_on(as_of));
                assert_eq!(
                    ages.age(birth),
                    expected,
                    "born {} on {as_of}",
                    Date::from_days(birth)
                );
                birth += 1;
            }
            for extreme in [Date::from_ymd(1, 1, 1), Date::from_ymd(9999, 12, 31)] {
                let extreme = extreme.expect("date");
                assert_eq!(ages.age(extreme.days()), i64::from(extreme.age_on(as_of)));
            }
        }
    }
}
