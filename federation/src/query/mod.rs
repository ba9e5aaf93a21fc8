//! The query language v1: a SQL subset over `households` and `persons`, planned into a `Plan`,
//! executed column-at-a-time over a node's `Image` into a mergeable `PartialAggregate`, and
//! finalised into a `QueryResult`.
//!
//! Accepted: `SELECT` of group keys and `COUNT(*)`, `COUNT(x)`, `SUM`, `AVG`, `MIN`, `MAX`,
//! `MEDIAN` (with `AS` aliases); `FROM households`, `FROM persons`, `FROM persons JOIN households USING
//! (household_id)`; `WHERE` with AND/OR/NOT, comparisons, `[NOT] IN`, `[NOT] BETWEEN`,
//! `[NOT] LIKE 'prefix%'`, `IS [NOT] NULL`, bare boolean columns; `GROUP BY` columns and the
//! dimensions `province|prefecture|county|township(region_code)` (12-digit ancestor code),
//! `substr(x, start, length)` (1-based, on text, enum or digit-code values, answered as text),
//! `age(birth_date)` and `age_band(birth_date, width)` (the band's lower bound as an integer);
//! select aliases and ordinals in GROUP BY and ORDER BY; `HAVING`; `ORDER BY` with ASC/DESC and
//! NULLS FIRST/LAST (nulls last by default in both directions, as DuckDB); `LIMIT n`.
//!
//! Semantics follow DuckDB: SQL three-valued logic; COUNT counts rows or non-null values; SUM of
//! integers is an integer, of money a two-decimal decimal; AVG is a float; MIN/MAX keep their
//! type. MEDIAN (integers, money, `age(...)`) is a float, money in yuan like AVG: DuckDB's
//! `median` (the middle value, or the mean of the two middle values for an even count) of the
//! non-null inputs, from a mergeable sketch (`Sketch`): exact while a group has at most 256
//! distinct values, else within 1 % relative. Aggregates over no rows are null except COUNT
//! (0); without GROUP BY the answer has
//! exactly one row. Enums and codes compare and sort as text (byte order); `=`, `<>` and IN
//! against a name an enum does not have are refused, listing the names. A digit code (household
//! id, region code, ancestor, a substr of one) compares with a text literal as text (so `LIKE
//! '5201%'` is a prefix range) and with an integer literal as a number. Money compares exactly
//! with integer and decimal literals. Answers without ORDER BY are ordered by the group keys
//! (nulls last), and ORDER BY ties are broken the same way. `Value`'s Display fixes how answers
//! print.
//!
//! Refused, with the position of the offending text: everything else (subqueries, DISTINCT,
//! window functions, other functions, arithmetic, `SELECT *`, other tables and joins, columns
//! neither grouped nor aggregated, comparisons between two columns, personal columns anywhere
//! but inside `age`/`age_band`).

mod error;
mod executor;
mod filter;
mod group;
mod kernel;
mod partial;
mod plan;
mod plan_cache;
mod planner;
mod semantics;
mod sketch;
mod value;

pub use error::{Position, QueryError};
pub use executor::{execute_partial, CHUNK_ROWS};
pub(crate) use partial::key_bytes;
pub use partial::{Accumulator, PartialAggregate, PartialGroup, QueryResult};
pub use plan::{
    Aggregate, AggregateFunction, ColumnRef, Comparison, Dimension, Literal, Number, OrderKey,
    Output, OutputRef, Plan, Predicate, Source,
};
pub use plan_cache::{PlanCache, PLAN_CACHE_ENTRIES_MAX};
pub use planner::{
    plan, AGE_BAND_WIDTH_MAX, AGGREGATES_MAX, GROUP_KEYS_MAX, IN_LIST_VALUES_MAX, NESTING_MAX,
    NUMBER_DIGITS_MAX, OPERATORS_MAX, SQL_BYTES_MAX, SUBSTR_ARGUMENT_MAX,
};
pub use sketch::{Sketch, SKETCH_BUCKETS_MAX, SKETCH_EXACT_VALUES_MAX, SKETCH_RELATIVE_ACCURACY};
pub use value::{Value, ValueType};

use crate::image::Image;

/// Runs a planned query over one image and finalises it (no merge).
pub fn execute(plan: &Plan, image: &Image) -> QueryResult {
    execute_partial(plan, image).finalize(plan)
}
