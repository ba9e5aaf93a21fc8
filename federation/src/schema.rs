//! The tables and columns of the data standard, as the validator and the query planner see them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::record::{Cause, Education, Gender, Health, Industry, Labor, Relation, Status};

/// The two tables every node keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Table {
    Households,
    Persons,
}

impl Table {
    /// Both tables, in import order (households before the persons that need them).
    pub const ALL: [Table; 2] = [Table::Households, Table::Persons];

    /// The table's name in SQL and in file headers.
    pub fn name(self) -> &'static str {
        match self {
            Table::Households => "households",
            Table::Persons => "persons",
        }
    }

    /// The table's columns, in the standard's order.
    pub fn columns(self) -> &'static [Column] {
        match self {
            Table::Households => HOUSEHOLD_COLUMNS,
            Table::Persons => PERSON_COLUMNS,
        }
    }

    /// The column called `name`, if the table has one.
    pub fn column(self, name: &str) -> Option<&'static Column> {
        self.columns().iter().find(|column| column.name == name)
    }

    /// Parses a table name.
    pub fn parse(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|table| table.name() == name)
    }

    /// Recognises a table from a CSV header: the table whose column set equals the header's.
    pub fn from_header<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<Table> {
        let mut names: Vec<&str> = names.into_iter().collect();
        names.sort_unstable();
        Table::ALL.into_iter().find(|table| {
            let mut expected: Vec<&str> = table.columns().iter().map(|c| c.name).collect();
            expected.sort_unstable();
            expected == names
        })
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What values a column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// 16 digits: a household id.
    HouseholdId,
    /// 12 digits: a region code.
    RegionCode,
    /// An 18-character GB 11643 ID number.
    IdNumber,
    /// Free text of 1 to `max_chars` characters.
    Text { max_chars: usize },
    /// An integer in `min..=max`.
    Int { min: i64, max: i64 },
    /// Yuan with at most two decimals, stored as fen.
    Decimal,
    /// `true` or `false`.
    Bool,
    /// `YYYY-MM-DD`.
    Date,
    /// One of a fixed list of exact names.
    Enum { names: &'static [&'static str] },
}

/// One column of the standard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnKind,
    /// Empty cells allowed (subject to the column's own rule, e.g. `exit_year`).
    pub nullable: bool,
    /// Identifies a person: never returned, grouped by or filtered on by a query.
    pub personal: bool,
}

const fn column(name: &'static str, kind: ColumnKind) -> Column {
    Column {
        name,
        kind,
        nullable: false,
        personal: false,
    }
}

const fn nullable(name: &'static str, kind: ColumnKind) -> Column {
    Column {
        name,
        kind,
        nullable: true,
        personal: false,
    }
}

const fn personal(mut column: Column) -> Column {
    column.personal = true;
    column
}

/// Text columns are limited to 32 characters by the standard; free-form optional text (a
/// relocation site, a phone number) gets a generous bound so one cell cannot grow without limit.
pub const TEXT_CHARS_MAX: usize = 32;
/// Bound on optional free text columns.
pub const FREE_TEXT_CHARS_MAX: usize = 200;

static HOUSEHOLD_COLUMNS: &[Column] = &[
    column("household_id", ColumnKind::HouseholdId),
    column("region_code", ColumnKind::RegionCode),
    personal(column("head_id", ColumnKind::IdNumber)),
    personal(column(
        "head_name",
        ColumnKind::Text {
            max_chars: TEXT_CHARS_MAX,
        },
    )),
    column("members", ColumnKind::Int { min: 1, max: 20 }),
    column(
        "cause",
        ColumnKind::Enum {
            names: Cause::NAMES,
        },
    ),
    column(
        "status",
        ColumnKind::Enum {
            names: Status::NAMES,
        },
    ),
    column(
        "registered_year",
        ColumnKind::Int {
            min: 2014,
            max: 9999,
        },
    ),
    nullable(
        "exit_year",
        ColumnKind::Int {
            min: 2014,
            max: 9999,
        },
    ),
    column("income_per_capita", ColumnKind::Decimal),
    column("housing_safe", ColumnKind::Bool),
    column("water_safe", ColumnKind::Bool),
    column("medical_insured", ColumnKind::Bool),
    column(
        "cadre_id",
        ColumnKind::Text {
            max_chars: TEXT_CHARS_MAX,
        },
    ),
    column(
        "industry",
        ColumnKind::Enum {
            names: Industry::NAMES,
        },
    ),
    column("relocated", ColumnKind::Bool),
    nullable(
        "relocation_site",
        ColumnKind::Text {
            max_chars: FREE_TEXT_CHARS_MAX,
        },
    ),
    personal(nullable(
        "phone",
        ColumnKind::Text {
            max_chars: FREE_TEXT_CHARS_MAX,
        },
    )),
];

static PERSON_COLUMNS: &[Column] = &[
    personal(column("person_id", ColumnKind::IdNumber)),
    column("household_id", ColumnKind::HouseholdId),
    column(
        "relation",
        ColumnKind::Enum {
            names: Relation::NAMES,
        },
    ),
    column(
        "gender",
        ColumnKind::Enum {
            names: Gender::NAMES,
        },
    ),
    personal(column("birth_date", ColumnKind::Date)),
    column(
        "education",
        ColumnKind::Enum {
            names: Education::NAMES,
        },
    ),
    column(
        "health",
        ColumnKind::Enum {
            names: Health::NAMES,
        },
    ),
    column(
        "labor",
        ColumnKind::Enum {
            names: Labor::NAMES,
        },
    ),
    column("in_school", ColumnKind::Bool),
    column("employed", ColumnKind::Bool),
];

/// Version of the data standard this build implements.
pub const STANDARD_VERSION: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_recognise_tables_in_any_order() {
        let mut names: Vec<&str> = Table::Persons.columns().iter().map(|c| c.name).collect();
        names.reverse();
        assert_eq!(
            Table::from_header(names.iter().copied()),
            Some(Table::Persons)
        );
        names.pop();
        assert_eq!(Table::from_header(names.iter().copied()), None);
    }

    #[test]
    fn personal_columns_match_the_standard() {
        let personal: Vec<&str> = Table::ALL
            .iter()
            .flat_map(|t| t.columns())
            .filter(|c| c.personal)
            .map(|c| c.name)
            .collect();
        assert_eq!(
            personal,
            ["head_id", "head_name", "phone", "person_id", "birth_date"]
        );
    }
}
