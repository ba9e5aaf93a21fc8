//! The plan of one query: which rows to read, how to filter, group and aggregate them, and how to
//! shape the answer. Produced by `plan()`, read by the executor and by grant checks.

use std::cmp::Ordering;

use crate::date::Date;
use crate::region::Tier;
use crate::schema::{Column, ColumnKind, Table};

use super::value::ValueType;

/// The rows a query reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// `FROM households`.
    Households,
    /// `FROM persons`.
    Persons,
    /// `FROM persons JOIN households USING (household_id)`: one row per person, with its
    /// household's columns.
    PersonsJoinHouseholds,
}

impl Source {
    /// The tables read.
    pub fn tables(self) -> &'static [Table] {
        match self {
            Source::Households => &[Table::Households],
            Source::Persons => &[Table::Persons],
            Source::PersonsJoinHouseholds => &[Table::Persons, Table::Households],
        }
    }

    /// The table whose rows are the query's rows.
    pub fn base_table(self) -> Table {
        match self {
            Source::Households => Table::Households,
            Source::Persons | Source::PersonsJoinHouseholds => Table::Persons,
        }
    }
}

/// A column of one of the standard's tables.
///
/// In a join, `household_id` is always named as `households.household_id` (the two are equal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ColumnRef {
    pub table: Table,
    pub name: &'static str,
}

impl ColumnRef {
    /// The schema's description of the column.
    ///
    /// Panics when the name is not a column of the table: plans only hold resolved columns.
    pub fn column(self) -> &'static Column {
        match self.table.column(self.name) {
            Some(column) => column,
            None => panic!(
                "{}.{} is not a column of the standard",
                self.table, self.name
            ),
        }
    }

    /// The type of the column's values.
    pub fn value_type(self) -> ValueType {
        match self.column().kind {
            ColumnKind::HouseholdId => ValueType::DigitCode { width: 16 },
            ColumnKind::RegionCode => ValueType::DigitCode { width: 12 },
            ColumnKind::IdNumber | ColumnKind::Text { .. } | ColumnKind::Date => ValueType::Text,
            ColumnKind::Int { .. } => ValueType::Int,
            ColumnKind::Decimal => ValueType::Decimal,
            ColumnKind::Bool => ValueType::Bool,
            ColumnKind::Enum { names } => ValueType::Enum(names),
        }
    }
}

/// A per-row value: a column or a dimension derived from one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// A column as stored.
    Column(ColumnRef),
    /// `province(region_code)` and its kin: the 12-digit code of the region at `tier` that
    /// contains the row's village.
    Ancestor { tier: Tier, code: ColumnRef },
    /// `substr(source, start, length)` with SQL's 1-based `start`; text (or a narrower digit code
    /// when `source` is one).
    Substr {
        source: Box<Dimension>,
        start: u32,
        length: u32,
    },
    /// `age(birth_date)`: completed years on the plan's reference date.
    Age { birth_date: ColumnRef },
    /// `age_band(birth_date, width)`: the band's lower bound, `floor(age / width) * width`, as an
    /// integer (width 10 gives 0, 10, 20, ...).
    AgeBand { birth_date: ColumnRef, width: u32 },
}

impl Dimension {
    /// The type of the dimension's values.
    pub fn value_type(&self) -> ValueType {
        match self {
            Dimension::Column(column) => column.value_type(),
            Dimension::Ancestor { .. } => ValueType::DigitCode { width: 12 },
            Dimension::Substr {
                source,
                start,
                length,
            } => match source.value_type() {
                ValueType::DigitCode { width } => ValueType::DigitCode {
                    width: substr_width(width, *start, *length),
                },
                _ => ValueType::Text,
            },
            Dimension::Age { .. } | Dimension::AgeBand { .. } => ValueType::Int,
        }
    }

    /// True when some rows may have no value.
    pub fn nullable(&self) -> bool {
        match self {
            Dimension::Column(column) => column.column().nullable,
            Dimension::Substr { source, .. } => source.nullable(),
            Dimension::Ancestor { .. } | Dimension::Age { .. } | Dimension::AgeBand { .. } => false,
        }
    }

    /// The columns the dimension reads.
    pub fn columns(&self) -> Vec<ColumnRef> {
        match self {
            Dimension::Column(column) | Dimension::Ancestor { code: column, .. } => vec![*column],
            Dimension::Substr { source, .. } => source.columns(),
            Dimension::Age { birth_date } | Dimension::AgeBand { birth_date, .. } => {
                vec![*birth_date]
            }
        }
    }
}

/// Characters of a `width`-character string that `substr(_, start, length)` keeps.
pub(crate) fn substr_width(width: u8, start: u32, length: u32) -> u8 {
    let first = (start.saturating_sub(1)).min(u32::from(width));
    let end = start
        .saturating_sub(1)
        .saturating_add(length)
        .min(u32::from(width));
    (end - first) as u8
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Comparison {
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

impl Comparison {
    /// True when `ordering` (operand against literal) satisfies the operator.
    pub fn holds(self, ordering: Ordering) -> bool {
        match self {
            Comparison::Equal => ordering == Ordering::Equal,
            Comparison::NotEqual => ordering != Ordering::Equal,
            Comparison::Less => ordering == Ordering::Less,
            Comparison::LessOrEqual => ordering != Ordering::Greater,
            Comparison::Greater => ordering == Ordering::Greater,
            Comparison::GreaterOrEqual => ordering != Ordering::Less,
        }
    }

    /// The operator with its sides swapped (`5 < x` is `x > 5`).
    pub fn flipped(self) -> Comparison {
        match self {
            Comparison::Less => Comparison::Greater,
            Comparison::LessOrEqual => Comparison::GreaterOrEqual,
            Comparison::Greater => Comparison::Less,
            Comparison::GreaterOrEqual => Comparison::LessOrEqual,
            other => other,
        }
    }

    /// True for `=` and `<>`.
    pub fn is_equality(self) -> bool {
        matches!(self, Comparison::Equal | Comparison::NotEqual)
    }
}

/// An exact decimal literal: `mantissa / 10^scale`, normalised so that `scale` is 0 for whole
/// numbers (`4000.50` is 40005 / 10^1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Number {
    pub mantissa: i128,
    pub scale: u32,
}

impl Number {
    /// The number when it is whole and fits an `i64`.
    pub fn as_integer(self) -> Option<i64> {
        if self.scale == 0 {
            i64::try_from(self.mantissa).ok()
        } else {
            None
        }
    }

    /// The nearest `f64`.
    pub fn to_f64(self) -> f64 {
        self.mantissa as f64 / 10f64.powi(self.scale as i32)
    }
}

/// A constant in a condition.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Literal {
    Number(Number),
    Text(String),
    Bool(bool),
}

/// A condition over operands of type `O`: dimensions in WHERE, answer columns in HAVING.
///
/// Conditions follow SQL's three-valued logic: a comparison with a null operand is unknown, and
/// only rows (groups) for which the whole condition is true are kept.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Predicate<O> {
    And(Vec<Predicate<O>>),
    Or(Vec<Predicate<O>>),
    Not(Box<Predicate<O>>),
    /// `operand comparison literal`.
    Compare {
        operand: O,
        comparison: Comparison,
        literal: Literal,
    },
    /// `operand [NOT] IN (literals)`.
    In {
        operand: O,
        list: Vec<Literal>,
        negated: bool,
    },
    /// `operand [NOT] BETWEEN low AND high`.
    Between {
        operand: O,
        low: Literal,
        high: Literal,
        negated: bool,
    },
    /// `operand [NOT] LIKE 'prefix%'`.
    LikePrefix {
        operand: O,
        prefix: String,
        negated: bool,
    },
    /// `operand IS [NOT] NULL`.
    IsNull {
        operand: O,
        negated: bool,
    },
    /// A boolean operand standing alone as a condition.
    IsTrue {
        operand: O,
    },
}

/// The aggregate functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AggregateFunction {
    /// `COUNT(*)`.
    CountRows,
    /// `COUNT(expr)`: rows where the argument is not null.
    Count,
    Sum,
    Avg,
    Min,
    Max,
    /// `MEDIAN(expr)`: the median of the non-null values (DuckDB's), estimated by a mergeable
    /// `Sketch` (exact for few distinct values, else within 1 % relative).
    Median,
}

/// One aggregate of the query.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Aggregate {
    pub function: AggregateFunction,
    /// `None` only for `COUNT(*)`.
    pub argument: Option<Dimension>,
}

impl Aggregate {
    /// The type of the aggregate's result: COUNT is an integer, SUM keeps an integer or decimal,
    /// AVG and MEDIAN are floats (money in yuan), MIN and MAX keep their argument's type.
    pub fn value_type(&self) -> ValueType {
        let argument = self
            .argument
            .as_ref()
            .map_or(ValueType::Int, Dimension::value_type);
        match self.function {
            AggregateFunction::CountRows | AggregateFunction::Count => ValueType::Int,
            AggregateFunction::Avg | AggregateFunction::Median => ValueType::Float,
            AggregateFunction::Sum | AggregateFunction::Min | AggregateFunction::Max => argument,
        }
    }
}

/// A column of the answer before projection: a group key or an aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputRef {
    /// Index into `Plan::keys`.
    Key(usize),
    /// Index into `Plan::aggregates`.
    Aggregate(usize),
}

/// One column of the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// The alias, or the expression as written.
    pub name: String,
    pub source: OutputRef,
}

/// One `ORDER BY` term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderKey {
    pub source: OutputRef,
    pub descending: bool,
    /// Defaults to false in both directions, as DuckDB does.
    pub nulls_first: bool,
}

/// A planned query.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The reference date for `age` and `age_band`.
    pub as_of: Date,
    pub source: Source,
    /// WHERE.
    pub filter: Option<Predicate<Dimension>>,
    /// GROUP BY, deduplicated.
    pub keys: Vec<Dimension>,
    /// Every aggregate the query needs: those selected, then those only HAVING or ORDER BY use.
    pub aggregates: Vec<Aggregate>,
    /// The answer's columns, in SELECT order.
    pub outputs: Vec<Output>,
    pub having: Option<Predicate<OutputRef>>,
    pub order_by: Vec<OrderKey>,
    pub limit: Option<u64>,
    /// Every column the query reads, sorted and deduplicated (birth_date included when `age` or
    /// `age_band` reads it), for grant checks.
    pub columns: Vec<ColumnRef>,
}

impl Plan {
    /// The tables read.
    pub fn tables(&self) -> &'static [Table] {
        self.source.tables()
    }

    /// The type of a group key or aggregate.
    pub fn output_type(&self, output: OutputRef) -> ValueType {
        match output {
            OutputRef::Key(index) => self.keys[index].value_type(),
            OutputRef::Aggregate(index) => self.aggregates[index].value_type(),
        }
    }
}
