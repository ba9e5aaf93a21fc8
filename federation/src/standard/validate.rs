//! The hard rules and single-row screens of the data standard: CSV cells in, typed records or
//! issues out.
//!
//! Boundary: every cell here came from an operator's file. Nothing is trusted, nothing panics on
//! input, and every broken rule of a row is reported, not only the first.
//!
//! The success path is hot (an import runs at about a million rows a second): it allocates only
//! the owned `String`s a record keeps. Messages are built only when something is wrong.

use std::fmt;

use crate::date::Date;
use crate::record::{
    format_cents, Cause, Cents, Education, Gender, Health, Household, HouseholdId, IdNumber,
    Industry, Labor, Person, Relation, Status,
};
use crate::region::{RegionCode, Tier};
use crate::schema::{Table, FREE_TEXT_CHARS_MAX, TEXT_CHARS_MAX};
use crate::standard::id_number::{self, IdNumberError};

/// Rule names: short kebab-case words shared by the validator, the import pipeline, its reports
/// and the tests.
pub mod rule {
    // Row and file shape (checked by the import pipeline).
    /// A row whose cell count differs from the header's.
    pub const SHAPE: &str = "shape";
    /// A row the CSV reader could not decode (for example a quote inside an unquoted field).
    pub const MALFORMED_CSV: &str = "malformed-csv";

    // Cell rules (checked by `parse_household` / `parse_person`).
    /// A null (empty) cell in a column that does not allow one.
    pub const REQUIRED: &str = "required";
    /// A household id that is not 16 ASCII digits.
    pub const HOUSEHOLD_ID: &str = "household-id";
    /// A region code that is not a valid 12-digit code.
    pub const REGION_CODE: &str = "region-code";
    /// A valid region code that is not a village's.
    pub const NOT_VILLAGE: &str = "not-village";
    /// `region_code` differs from the first 12 digits of `household_id`.
    pub const REGION_MISMATCH: &str = "region-mismatch";
    /// A region outside the importing node's jurisdiction.
    pub const OUTSIDE_JURISDICTION: &str = "outside-jurisdiction";
    /// An ID number that is not 17 digits then a digit or `X`.
    pub const ID_NUMBER_SHAPE: &str = "id-number-shape";
    /// An ID number whose check character is wrong.
    pub const ID_NUMBER_CHECK: &str = "id-number-check";
    /// An ID number whose characters 7-14 are not a calendar date.
    pub const ID_NUMBER_DATE: &str = "id-number-date";
    /// An ID number whose birth date is after the import's date.
    pub const ID_NUMBER_FUTURE: &str = "id-number-future";
    /// Text longer than its column allows (counted in characters).
    pub const TEXT_LENGTH: &str = "text-length";
    /// A control character (a newline included) in `head_name` or `cadre_id`.
    pub const CONTROL_CHARACTER: &str = "control-character";
    /// An integer not written as plain ASCII digits.
    pub const INTEGER: &str = "integer";
    /// A decimal not written as digits with an optional point and one or two decimals.
    pub const DECIMAL: &str = "decimal";
    /// A number outside its column's range.
    pub const OUT_OF_RANGE: &str = "out-of-range";
    /// A value that is not one of its column's exact names (enums, `M`/`F`).
    pub const ENUM: &str = "enum";
    /// A boolean that is not exactly `true` or `false`.
    pub const BOOL: &str = "bool";
    /// A date that is not a real date written `YYYY-MM-DD`.
    pub const DATE: &str = "date";
    /// `exit_year` is null while status is `exited`.
    pub const EXIT_YEAR_MISSING: &str = "exit-year-missing";
    /// `exit_year` is given while status is not `exited`.
    pub const EXIT_YEAR_UNEXPECTED: &str = "exit-year-unexpected";
    /// `exit_year` is before `registered_year`.
    pub const EXIT_BEFORE_REGISTERED: &str = "exit-before-registered";
    /// `relocation_site` is null while relocated is `true`.
    pub const RELOCATION_SITE_MISSING: &str = "relocation-site-missing";
    /// `relocation_site` is given while relocated is `false`.
    pub const RELOCATION_SITE_UNEXPECTED: &str = "relocation-site-unexpected";
    /// `gender` differs from the parity of the ID's 17th character.
    pub const GENDER_MISMATCH: &str = "gender-mismatch";
    /// `birth_date` differs from the ID's characters 7-14.
    pub const BIRTH_DATE_MISMATCH: &str = "birth-date-mismatch";

    // Cross-row rules (checked by the import pipeline).
    /// A second row in one file with an already-seen key.
    pub const DUPLICATE: &str = "duplicate";
    /// A person whose household is not stored on this node.
    pub const UNKNOWN_HOUSEHOLD: &str = "unknown-household";
    /// A person whose household row was rejected in the same import.
    pub const HOUSEHOLD_REJECTED: &str = "household-rejected";
    /// A `head` person whose person_id differs from the household's head_id (or a second head).
    pub const HEAD_MISMATCH: &str = "head-mismatch";

    // Screens (warnings).
    /// *warn*: members differs from the household's stored persons.
    pub const MEMBERS_MISMATCH: &str = "members-mismatch";
    /// *warn*: a person_id already stored in another region.
    pub const DUPLICATE_PERSON: &str = "duplicate-person";
    /// *warn*: a person aged 6-15 on the reference date who is not in school.
    pub const DROPOUT: &str = "dropout";
    /// *warn*: an exited household below the 2020 poverty line.
    pub const EXIT_BELOW_LINE: &str = "exit-below-line";
    /// *warn*: an exited household missing one of the three guarantees (两不愁三保障).
    pub const EXIT_WITHOUT_GUARANTEES: &str = "exit-without-guarantees";
    /// *warn*: a household head younger than 16 on the reference date.
    pub const HEAD_UNDER_16: &str = "head-under-16";
}

/// First year a household can have been registered (建档立卡 began in 2014).
pub const REGISTERED_YEAR_MIN: u16 = 2014;
/// Smallest household size.
pub const MEMBERS_MIN: u8 = 1;
/// Largest household size.
pub const MEMBERS_MAX: u8 = 20;
/// Largest per-capita income accepted: 1 000 000 yuan.
pub const INCOME_MAX_FEN: Cents = 100_000_000;
/// The 2020 poverty line: an exited household below it is screened (`exit-below-line`).
pub const POVERTY_LINE_FEN: Cents = 400_000;
/// Youngest age a household head may be without a `head-under-16` warning.
pub const HEAD_AGE_MIN_YEARS: i32 = 16;
/// Youngest age of compulsory schooling (`dropout`).
pub const SCHOOL_AGE_MIN_YEARS: i32 = 6;
/// Oldest age of compulsory schooling (`dropout`).
pub const SCHOOL_AGE_MAX_YEARS: i32 = 15;
/// Longest cell value copied into an issue; longer ones end in `…`.
pub const VALUE_SHOWN_CHARS_MAX: usize = 64;
/// Most unknown or duplicated header names listed in one error.
pub const HEADER_NAMES_SHOWN_MAX: usize = 8;

/// What the import pipeline knows that the rules depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportContext {
    /// The import's date: "current year" and "not in the future" are read from it.
    pub today: Date,
    /// Reference date of the age-based screens (`--as-of`, default `today`).
    pub as_of: Date,
    /// The importing node's region: every household must lie inside it.
    pub jurisdiction: RegionCode,
}

/// Whether an issue stops the row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The row is not stored.
    Reject,
    /// The row is stored; the issue is reported (逻辑错误筛查).
    Warning,
}

impl Severity {
    /// Lower-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Reject => "reject",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One broken rule of one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    /// The standard column at fault; `None` when the issue is about the whole row.
    pub column: Option<&'static str>,
    /// The offending value as written, control characters escaped, cut at
    /// `VALUE_SHOWN_CHARS_MAX` characters (then ending in `…`).
    pub value: String,
    /// One of the names in [`rule`].
    pub rule: &'static str,
    /// What was wrong and what would be accepted.
    pub message: String,
}

impl Issue {
    /// Builds an issue; `value` is escaped and cut for the report.
    pub fn new(
        severity: Severity,
        column: Option<&'static str>,
        value: &str,
        rule: &'static str,
        message: impl Into<String>,
    ) -> Issue {
        Issue {
            severity,
            column,
            value: shown(value),
            rule,
            message: message.into(),
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.severity, self.rule)?;
        if let Some(column) = self.column {
            write!(f, " [{column}]")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// An issue found by comparing rows (duplicates, unknown households, heads, member counts), for
/// the import pipeline.
pub fn cross_row_issue(
    severity: Severity,
    column: Option<&'static str>,
    value: &str,
    rule: &'static str,
    message: impl Into<String>,
) -> Issue {
    Issue::new(severity, column, value, rule, message)
}

/// A value as an issue shows it: control characters escaped, at most `VALUE_SHOWN_CHARS_MAX`
/// characters, then `…`.
pub fn shown(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(4 * VALUE_SHOWN_CHARS_MAX + 3));
    for (count, character) in value.chars().enumerate() {
        if count == VALUE_SHOWN_CHARS_MAX {
            out.push('…');
            break;
        }
        if character.is_control() {
            out.extend(character.escape_default());
        } else {
            out.push(character);
        }
    }
    out
}

/// Why a header row does not name the columns of one table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The header row has no names at all.
    #[error("the header row is empty; expected the column names of households or persons")]
    Empty,
    /// The names are not recognisably one table's.
    #[error("{}", unrecognised_message(.names))]
    Unrecognised {
        /// The header's names, escaped and cut for the report.
        names: Vec<String>,
    },
    /// The header is one table's, but its set of names is wrong.
    #[error("{}", columns_message(.table, .missing, .unknown, .duplicated))]
    Columns {
        table: Table,
        /// Standard columns the header lacks, in the standard's order.
        missing: Vec<&'static str>,
        /// Header names the table does not have, escaped and cut for the report.
        unknown: Vec<String>,
        /// Standard columns named more than once.
        duplicated: Vec<&'static str>,
    },
}

fn quoted_list(names: &[String]) -> String {
    let mut out = String::new();
    for (index, name) in names.iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        if index == HEADER_NAMES_SHOWN_MAX {
            out.push_str(&format!("and {} more", names.len() - index));
            break;
        }
        out.push('\'');
        out.push_str(name);
        out.push('\'');
    }
    out
}

fn column_list(table: Table) -> String {
    table
        .columns()
        .iter()
        .map(|column| column.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn unrecognised_message(names: &[String]) -> String {
    format!(
        "cannot tell the table from the header {}; a households header names {}; a persons header names {} (any order, exact names)",
        quoted_list(names),
        column_list(Table::Households),
        column_list(Table::Persons),
    )
}

fn columns_message(
    table: &Table,
    missing: &[&'static str],
    unknown: &[String],
    duplicated: &[&'static str],
) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing column(s) {}", missing.join(", ")));
    }
    if !unknown.is_empty() {
        parts.push(format!("unknown column(s) {}", quoted_list(unknown)));
    }
    if !duplicated.is_empty() {
        parts.push(format!("duplicated column(s) {}", duplicated.join(", ")));
    }
    format!(
        "the header of a {table} file is wrong: {}; expected each of {} exactly once, in any order",
        parts.join("; "),
        column_list(*table),
    )
}

/// Where each standard column sits in a file's rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderMap {
    pub table: Table,
    /// For each column of `table`, in the standard's order, its index in the file's row.
    positions: Vec<usize>,
}

impl HeaderMap {
    /// Recognises the table from the header (column order free, names exact). A byte-order mark
    /// before the first name is ignored. Errors name what is missing, unknown or duplicated.
    pub fn from_header(names: &[&str]) -> Result<HeaderMap, HeaderError> {
        let names: Vec<&str> = names
            .iter()
            .enumerate()
            .map(|(index, name)| match name.strip_prefix('\u{feff}') {
                Some(rest) if index == 0 => rest,
                _ => name,
            })
            .collect();
        if names.is_empty() {
            return Err(HeaderError::Empty);
        }
        let matches = |table: Table| {
            names
                .iter()
                .filter(|name| table.column(name).is_some())
                .count()
        };
        let households = matches(Table::Households);
        let persons = matches(Table::Persons);
        let table = match households.cmp(&persons) {
            std::cmp::Ordering::Greater => Table::Households,
            std::cmp::Ordering::Less => Table::Persons,
            std::cmp::Ordering::Equal => {
                return Err(HeaderError::Unrecognised {
                    names: names.iter().map(|name| shown(name)).collect(),
                })
            }
        };
        let columns = table.columns();
        let mut positions: Vec<Option<usize>> = vec![None; columns.len()];
        let mut unknown = Vec::new();
        let mut duplicated = Vec::new();
        for (position, name) in names.iter().enumerate() {
            match columns.iter().position(|column| column.name == *name) {
                None => {
                    let name = shown(name);
                    if !unknown.contains(&name) {
                        unknown.push(name);
                    }
                }
                Some(index) => {
                    if positions[index].is_some() {
                        if !duplicated.contains(&columns[index].name) {
                            duplicated.push(columns[index].name);
                        }
                    } else {
                        positions[index] = Some(position);
                    }
                }
            }
        }
        let missing: Vec<&'static str> = columns
            .iter()
            .zip(&positions)
            .filter(|(_, position)| position.is_none())
            .map(|(column, _)| column.name)
            .collect();
        if !missing.is_empty() || !unknown.is_empty() || !duplicated.is_empty() {
            return Err(HeaderError::Columns {
                table,
                missing,
                unknown,
                duplicated,
            });
        }
        Ok(HeaderMap {
            table,
            positions: positions.into_iter().flatten().collect(),
        })
    }

    /// Number of cells every row of the file must have.
    #[allow(
        clippy::len_without_is_empty,
        reason = "a recognised header always has columns"
    )]
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Index in the file's row of a standard column (its 1-based column number is index + 1).
    pub fn position(&self, column: &str) -> Option<usize> {
        let index = self
            .table
            .columns()
            .iter()
            .position(|standard| standard.name == column)?;
        self.positions.get(index).copied()
    }
}

/// A standard column: its index in `Table::columns()` and its name.
#[derive(Clone, Copy)]
struct Col {
    index: usize,
    name: &'static str,
}

const fn col(index: usize, name: &'static str) -> Col {
    Col { index, name }
}

// Indices follow `schema.rs`; the unit test below holds them to it.
mod households {
    use super::{col, Col};
    pub(super) const HOUSEHOLD_ID: Col = col(0, "household_id");
    pub(super) const REGION_CODE: Col = col(1, "region_code");
    pub(super) const HEAD_ID: Col = col(2, "head_id");
    pub(super) const HEAD_NAME: Col = col(3, "head_name");
    pub(super) const MEMBERS: Col = col(4, "members");
    pub(super) const CAUSE: Col = col(5, "cause");
    pub(super) const STATUS: Col = col(6, "status");
    pub(super) const REGISTERED_YEAR: Col = col(7, "registered_year");
    pub(super) const EXIT_YEAR: Col = col(8, "exit_year");
    pub(super) const INCOME_PER_CAPITA: Col = col(9, "income_per_capita");
    pub(super) const HOUSING_SAFE: Col = col(10, "housing_safe");
    pub(super) const WATER_SAFE: Col = col(11, "water_safe");
    pub(super) const MEDICAL_INSURED: Col = col(12, "medical_insured");
    pub(super) const CADRE_ID: Col = col(13, "cadre_id");
    pub(super) const INDUSTRY: Col = col(14, "industry");
    pub(super) const RELOCATED: Col = col(15, "relocated");
    pub(super) const RELOCATION_SITE: Col = col(16, "relocation_site");
    pub(super) const PHONE: Col = col(17, "phone");
    #[cfg(test)]
    pub(super) const ALL: [Col; 18] = [
        HOUSEHOLD_ID,
        REGION_CODE,
        HEAD_ID,
        HEAD_NAME,
        MEMBERS,
        CAUSE,
        STATUS,
        REGISTERED_YEAR,
        EXIT_YEAR,
        INCOME_PER_CAPITA,
        HOUSING_SAFE,
        WATER_SAFE,
        MEDICAL_INSURED,
        CADRE_ID,
        INDUSTRY,
        RELOCATED,
        RELOCATION_SITE,
        PHONE,
    ];
}

mod persons {
    use super::{col, Col};
    pub(super) const PERSON_ID: Col = col(0, "person_id");
    pub(super) const HOUSEHOLD_ID: Col = col(1, "household_id");
    pub(super) const RELATION: Col = col(2, "relation");
    pub(super) const GENDER: Col = col(3, "gender");
    pub(super) const BIRTH_DATE: Col = col(4, "birth_date");
    pub(super) const EDUCATION: Col = col(5, "education");
    pub(super) const HEALTH: Col = col(6, "health");
    pub(super) const LABOR: Col = col(7, "labor");
    pub(super) const IN_SCHOOL: Col = col(8, "in_school");
    pub(super) const EMPLOYED: Col = col(9, "employed");
    #[cfg(test)]
    pub(super) const ALL: [Col; 10] = [
        PERSON_ID,
        HOUSEHOLD_ID,
        RELATION,
        GENDER,
        BIRTH_DATE,
        EDUCATION,
        HEALTH,
        LABOR,
        IN_SCHOOL,
        EMPLOYED,
    ];
}

/// How a run of ASCII digits reads.
enum Digits {
    /// The value, saturated at `u64::MAX`.
    Value(u64),
    /// Empty, or something other than ASCII digits.
    NotDigits,
}

fn digits(text: &str) -> Digits {
    if text.is_empty() {
        return Digits::NotDigits;
    }
    let mut value = 0u64;
    for byte in text.bytes() {
        if !byte.is_ascii_digit() {
            return Digits::NotDigits;
        }
        value = value
            .saturating_mul(10)
            .saturating_add(u64::from(byte - b'0'));
    }
    Digits::Value(value)
}

/// Reads yuan written as digits with an optional point and one or two decimals, as fen
/// (saturated at `u64::MAX`); `None` for any other shape.
fn decimal_fen(text: &str) -> Option<u64> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let Digits::Value(whole) = digits(whole) else {
        return None;
    };
    let fraction_fen = match fraction {
        None => 0,
        Some(fraction) if fraction.len() > 2 => return None,
        Some(fraction) => match digits(fraction) {
            Digits::NotDigits => return None,
            Digits::Value(value) if fraction.len() == 1 => value * 10,
            Digits::Value(value) => value,
        },
    };
    Some(whole.saturating_mul(100).saturating_add(fraction_fen))
}

/// The birth date in characters 7-14 of a validated ID number, read without formatting it.
fn id_birth_date(id: IdNumber) -> Option<Date> {
    let compact = id.body() / 1_000 % 100_000_000;
    Date::from_ymd(
        (compact / 10_000) as i32,
        (compact / 100 % 100) as u32,
        (compact % 100) as u32,
    )
}

/// The cells of one row and the issues found so far.
struct Row<'c, 's> {
    map: &'c HeaderMap,
    cells: &'c [&'s str],
    issues: Vec<Issue>,
}

impl<'c, 's> Row<'c, 's> {
    fn new(map: &'c HeaderMap, cells: &'c [&'s str]) -> Self {
        Row {
            map,
            cells,
            issues: Vec::new(),
        }
    }

    /// The cell as written; a cell the row lacks reads as null.
    fn raw(&self, column: Col) -> &'s str {
        self.map
            .positions
            .get(column.index)
            .and_then(|position| self.cells.get(*position))
            .copied()
            .unwrap_or("")
    }

    #[cold]
    fn reject(&mut self, column: Col, value: &str, rule: &'static str, message: String) {
        self.issues.push(Issue::new(
            Severity::Reject,
            Some(column.name),
            value,
            rule,
            message,
        ));
    }

    /// The non-null cell, or `None` after a `required` issue.
    fn required(&mut self, column: Col) -> Option<&'s str> {
        let text = self.raw(column);
        if text.is_empty() {
            self.reject(
                column,
                text,
                rule::REQUIRED,
                format!("{} is required; the cell is empty", column.name),
            );
            return None;
        }
        Some(text)
    }

    fn household_id(&mut self, column: Col) -> Option<HouseholdId> {
        let text = self.required(column)?;
        match digits(text) {
            Digits::Value(value) if text.len() == 16 => Some(HouseholdId(value)),
            _ => {
                self.reject(
                    column,
                    text,
                    rule::HOUSEHOLD_ID,
                    format!(
                        "{} must be 16 digits (the 12-digit village code then a 4-digit serial); got '{}'",
                        column.name,
                        shown(text)
                    ),
                );
                None
            }
        }
    }

    fn id_number(&mut self, column: Col, today: Date) -> Option<IdNumber> {
        let text = self.required(column)?;
        match id_number::parse(text, today) {
            Ok(id) => Some(id),
            Err(error) => {
                let rule = match error {
                    IdNumberError::Shape => rule::ID_NUMBER_SHAPE,
                    IdNumberError::Check { .. } => rule::ID_NUMBER_CHECK,
                    IdNumberError::BirthDate => rule::ID_NUMBER_DATE,
                    IdNumberError::Future => rule::ID_NUMBER_FUTURE,
                };
                let message = format!(
                    "{} is not a valid ID number: {}; got '{}'",
                    column.name,
                    error.message(),
                    shown(text)
                );
                self.reject(column, text, rule, message);
                None
            }
        }
    }

    /// Required text of 1 to `chars_max` characters without control characters.
    fn name_text(&mut self, column: Col, chars_max: usize) -> Option<String> {
        let text = self.required(column)?;
        let mut ok = self.length_ok(column, text, chars_max);
        if let Some(control) = text.chars().find(|character| character.is_control()) {
            self.reject(
                column,
                text,
                rule::CONTROL_CHARACTER,
                format!(
                    "{} must not contain control characters (found {}); got '{}'",
                    column.name,
                    control.escape_default(),
                    shown(text)
                ),
            );
            ok = false;
        }
        ok.then(|| text.to_owned())
    }

    /// Nullable text of at most `chars_max` characters, kept exactly. `None` after an issue.
    fn free_text(&mut self, column: Col, chars_max: usize) -> Option<Option<String>> {
        let text = self.raw(column);
        if text.is_empty() {
            return Some(None);
        }
        self.length_ok(column, text, chars_max)
            .then(|| Some(text.to_owned()))
    }

    fn length_ok(&mut self, column: Col, text: &str, chars_max: usize) -> bool {
        // A text of at most `chars_max` bytes has at most as many characters.
        if text.len() <= chars_max {
            return true;
        }
        let chars = text.chars().count();
        if chars <= chars_max {
            return true;
        }
        self.reject(
            column,
            text,
            rule::TEXT_LENGTH,
            format!(
                "{} must be 1 to {chars_max} characters; got {chars}: '{}'",
                column.name,
                shown(text)
            ),
        );
        false
    }

    /// A required integer in `min..=max`.
    fn int(&mut self, column: Col, min: u64, max: u64, range_note: &str) -> Option<u64> {
        let text = self.required(column)?;
        self.int_text(column, text, min, max, range_note)
    }

    fn int_text(
        &mut self,
        column: Col,
        text: &str,
        min: u64,
        max: u64,
        range_note: &str,
    ) -> Option<u64> {
        match digits(text) {
            Digits::Value(value) if (min..=max).contains(&value) => Some(value),
            Digits::Value(_) => {
                self.reject(
                    column,
                    text,
                    rule::OUT_OF_RANGE,
                    format!(
                        "{} must be from {min} to {max}{range_note}; got '{}'",
                        column.name,
                        shown(text)
                    ),
                );
                None
            }
            Digits::NotDigits => {
                self.reject(
                    column,
                    text,
                    rule::INTEGER,
                    format!(
                        "{} must be a whole number in plain digits (no sign, spaces or separators) from {min} to {max}; got '{}'",
                        column.name,
                        shown(text)
                    ),
                );
                None
            }
        }
    }

    fn fen(&mut self, column: Col) -> Option<Cents> {
        let text = self.required(column)?;
        match decimal_fen(text) {
            Some(fen) if fen <= INCOME_MAX_FEN as u64 => Some(fen as Cents),
            Some(_) => {
                self.reject(
                    column,
                    text,
                    rule::OUT_OF_RANGE,
                    format!(
                        "{} must be from 0 to {} yuan; got '{}'",
                        column.name,
                        INCOME_MAX_FEN / 100,
                        shown(text)
                    ),
                );
                None
            }
            None => {
                self.reject(
                    column,
                    text,
                    rule::DECIMAL,
                    format!(
                        "{} must be yuan written as digits with an optional point and one or two decimals (e.g. 3500 or 3500.50; no sign, separators or exponent); got '{}'",
                        column.name,
                        shown(text)
                    ),
                );
                None
            }
        }
    }

    fn boolean(&mut self, column: Col) -> Option<bool> {
        let text = self.required(column)?;
        match text {
            "true" => Some(true),
            "false" => Some(false),
            _ => {
                self.reject(
                    column,
                    text,
                    rule::BOOL,
                    format!(
                        "{} must be exactly true or false; got '{}'",
                        column.name,
                        shown(text)
                    ),
                );
                None
            }
        }
    }

    fn enumeration<T>(
        &mut self,
        column: Col,
        parse: fn(&str) -> Option<T>,
        names: &'static [&'static str],
    ) -> Option<T> {
        let text = self.required(column)?;
        let value = parse(text);
        if value.is_none() {
            self.reject(
                column,
                text,
                rule::ENUM,
                format!(
                    "{} must be one of {} (exact, lower case); got '{}'",
                    column.name,
                    names.join(", "),
                    shown(text)
                ),
            );
        }
        value
    }

    fn date(&mut self, column: Col) -> Option<Date> {
        let text = self.required(column)?;
        let date = Date::parse_iso(text);
        if date.is_none() {
            self.reject(
                column,
                text,
                rule::DATE,
                format!(
                    "{} must be a real date written YYYY-MM-DD; got '{}'",
                    column.name,
                    shown(text)
                ),
            );
        }
        date
    }

    fn finish<T>(mut self, record: Option<T>) -> Result<T, Vec<Issue>> {
        match record {
            Some(record) if self.issues.is_empty() => Ok(record),
            _ => {
                if self.issues.is_empty() {
                    // Unreachable by construction: every `None` above pushed an issue. Still,
                    // a row is never dropped without a reason.
                    self.issues.push(Issue::new(
                        Severity::Reject,
                        None,
                        "",
                        rule::SHAPE,
                        "the row could not be read (internal validator error)",
                    ));
                }
                Err(self.issues)
            }
        }
    }
}

/// Parses and validates every hard rule of one `households` row (cells in file order, already
/// CSV-decoded). Returns all the row's hard-rule issues, not only the first.
///
/// # Panics
///
/// When `map` is not a households header (a programmer error).
pub fn parse_household(
    map: &HeaderMap,
    cells: &[&str],
    ctx: &ImportContext,
) -> Result<Household, Vec<Issue>> {
    use households::*;
    assert_eq!(
        map.table,
        Table::Households,
        "parse_household needs a households header"
    );
    let mut row = Row::new(map, cells);
    let current_year = ctx.today.year().max(0) as u64;

    let household_id = row.household_id(HOUSEHOLD_ID);
    let region_code = region_code(&mut row, household_id, ctx);
    let head_id = row.id_number(HEAD_ID, ctx.today);
    let head_name = row.name_text(HEAD_NAME, TEXT_CHARS_MAX);
    let members = row.int(
        MEMBERS,
        u64::from(MEMBERS_MIN),
        u64::from(MEMBERS_MAX),
        " people",
    );
    let cause = row.enumeration(CAUSE, Cause::parse, Cause::NAMES);
    let status = row.enumeration(STATUS, Status::parse, Status::NAMES);
    let registered_year = row.int(
        REGISTERED_YEAR,
        u64::from(REGISTERED_YEAR_MIN),
        current_year,
        " (the import's year)",
    );
    let exit_year = exit_year(&mut row, status, registered_year, current_year);
    let income_per_capita = row.fen(INCOME_PER_CAPITA);
    let housing_safe = row.boolean(HOUSING_SAFE);
    let water_safe = row.boolean(WATER_SAFE);
    let medical_insured = row.boolean(MEDICAL_INSURED);
    let cadre_id = row.name_text(CADRE_ID, TEXT_CHARS_MAX);
    let industry = row.enumeration(INDUSTRY, Industry::parse, Industry::NAMES);
    let relocated = row.boolean(RELOCATED);
    let relocation_site = relocation_site(&mut row, relocated);
    let phone = row.free_text(PHONE, FREE_TEXT_CHARS_MAX);

    let record = match (
        household_id,
        region_code,
        head_id,
        head_name,
        members,
        cause,
        status,
        registered_year,
        exit_year,
        income_per_capita,
        housing_safe,
        water_safe,
        medical_insured,
        cadre_id,
        industry,
        relocated,
        relocation_site,
        phone,
    ) {
        (
            Some(household_id),
            Some(region_code),
            Some(head_id),
            Some(head_name),
            Some(members),
            Some(cause),
            Some(status),
            Some(registered_year),
            Some(exit_year),
            Some(income_per_capita),
            Some(housing_safe),
            Some(water_safe),
            Some(medical_insured),
            Some(cadre_id),
            Some(industry),
            Some(relocated),
            Some(relocation_site),
            Some(phone),
        ) => Some(Household {
            household_id,
            region_code,
            head_id,
            head_name,
            members: members as u8,
            cause,
            status,
            registered_year: registered_year as u16,
            exit_year: exit_year.map(|year| year as u16),
            income_per_capita,
            housing_safe,
            water_safe,
            medical_insured,
            cadre_id,
            industry,
            relocated,
            relocation_site,
            phone,
        }),
        _ => None,
    };
    row.finish(record)
}

/// A village code equal to household_id's first 12 digits, inside the jurisdiction.
fn region_code(
    row: &mut Row<'_, '_>,
    household_id: Option<HouseholdId>,
    ctx: &ImportContext,
) -> Option<RegionCode> {
    use households::REGION_CODE;
    let text = row.required(REGION_CODE)?;
    let code = match text.parse::<RegionCode>() {
        Ok(code) => code,
        Err(error) => {
            let message = format!(
                "{} must be a valid 12-digit village code: {error}; got '{}'",
                REGION_CODE.name,
                shown(text)
            );
            row.reject(REGION_CODE, text, rule::REGION_CODE, message);
            return None;
        }
    };
    let mut ok = true;
    if code.tier() != Tier::Village {
        let message = format!(
            "{} must be a village code (its last 3 digits not 000); got '{}', a {} code",
            REGION_CODE.name,
            shown(text),
            code.tier()
        );
        row.reject(REGION_CODE, text, rule::NOT_VILLAGE, message);
        ok = false;
    }
    if let Some(household_id) = household_id {
        if household_id.region_value() != code.value() {
            let message = format!(
                "{} must equal the first 12 digits of household_id {household_id} ({:012}); got '{}'",
                REGION_CODE.name,
                household_id.region_value(),
                shown(text)
            );
            row.reject(REGION_CODE, text, rule::REGION_MISMATCH, message);
            ok = false;
        }
    }
    if !ctx.jurisdiction.contains(code) {
        let message = format!(
            "{} {code} lies outside this node's jurisdiction {}",
            REGION_CODE.name, ctx.jurisdiction
        );
        row.reject(REGION_CODE, text, rule::OUTSIDE_JURISDICTION, message);
        ok = false;
    }
    ok.then_some(code)
}

/// `exit_year`: required iff exited; `registered_year <= exit_year <= current year`.
/// `Some(None)` is a valid null.
fn exit_year(
    row: &mut Row<'_, '_>,
    status: Option<Status>,
    registered_year: Option<u64>,
    current_year: u64,
) -> Option<Option<u64>> {
    use households::{EXIT_YEAR, STATUS};
    let text = row.raw(EXIT_YEAR);
    let exited = status.map(|status| status == Status::Exited);
    if text.is_empty() {
        if exited == Some(true) {
            row.reject(
                EXIT_YEAR,
                text,
                rule::EXIT_YEAR_MISSING,
                format!(
                    "{} is required when {} is exited; the cell is empty",
                    EXIT_YEAR.name, STATUS.name
                ),
            );
            return None;
        }
        return Some(None);
    }
    let year = row.int_text(
        EXIT_YEAR,
        text,
        u64::from(REGISTERED_YEAR_MIN),
        current_year,
        " (the import's year)",
    )?;
    if exited == Some(false) {
        let message = format!(
            "{} must be empty unless {} is exited; got '{}'",
            EXIT_YEAR.name,
            STATUS.name,
            shown(text)
        );
        row.reject(EXIT_YEAR, text, rule::EXIT_YEAR_UNEXPECTED, message);
        return None;
    }
    if let Some(registered_year) = registered_year {
        if year < registered_year {
            let message = format!(
                "{} must not be before registered_year {registered_year}; got '{}'",
                EXIT_YEAR.name,
                shown(text)
            );
            row.reject(EXIT_YEAR, text, rule::EXIT_BEFORE_REGISTERED, message);
            return None;
        }
    }
    Some(Some(year))
}

/// `relocation_site`: required iff relocated. `Some(None)` is a valid null.
fn relocation_site(row: &mut Row<'_, '_>, relocated: Option<bool>) -> Option<Option<String>> {
    use households::{RELOCATED, RELOCATION_SITE};
    let site = row.free_text(RELOCATION_SITE, FREE_TEXT_CHARS_MAX)?;
    match (relocated, &site) {
        (Some(true), None) => {
            row.reject(
                RELOCATION_SITE,
                "",
                rule::RELOCATION_SITE_MISSING,
                format!(
                    "{} is required when {} is true; the cell is empty",
                    RELOCATION_SITE.name, RELOCATED.name
                ),
            );
            None
        }
        (Some(false), Some(text)) => {
            let message = format!(
                "{} must be empty when {} is false; got '{}'",
                RELOCATION_SITE.name,
                RELOCATED.name,
                shown(text)
            );
            row.reject(
                RELOCATION_SITE,
                text,
                rule::RELOCATION_SITE_UNEXPECTED,
                message,
            );
            None
        }
        _ => Some(site),
    }
}

/// Parses and validates every hard rule of one `persons` row (cells in file order, already
/// CSV-decoded). Returns all the row's hard-rule issues, not only the first. Cross-row rules
/// (the household exists, one head per household) are the import pipeline's.
///
/// # Panics
///
/// When `map` is not a persons header (a programmer error).
pub fn parse_person(
    map: &HeaderMap,
    cells: &[&str],
    ctx: &ImportContext,
) -> Result<Person, Vec<Issue>> {
    use persons::*;
    assert_eq!(
        map.table,
        Table::Persons,
        "parse_person needs a persons header"
    );
    let mut row = Row::new(map, cells);

    let person_id = row.id_number(PERSON_ID, ctx.today);
    let household_id = row.household_id(HOUSEHOLD_ID);
    let relation = row.enumeration(RELATION, Relation::parse, Relation::NAMES);
    let mut gender = row.enumeration(GENDER, Gender::parse, Gender::NAMES);
    let mut birth_date = row.date(BIRTH_DATE);
    let education = row.enumeration(EDUCATION, Education::parse, Education::NAMES);
    let health = row.enumeration(HEALTH, Health::parse, Health::NAMES);
    let labor = row.enumeration(LABOR, Labor::parse, Labor::NAMES);
    let in_school = row.boolean(IN_SCHOOL);
    let employed = row.boolean(EMPLOYED);

    if let (Some(id), Some(written)) = (person_id, gender) {
        if id.gender() != written {
            let text = row.raw(GENDER);
            let parity = if id.gender() == Gender::Male {
                "odd"
            } else {
                "even"
            };
            let message = format!(
                "{} must be {}, as person_id's 17th character is {parity}; got '{}'",
                GENDER.name,
                id.gender().name(),
                shown(text)
            );
            row.reject(GENDER, text, rule::GENDER_MISMATCH, message);
            gender = None;
        }
    }
    if let (Some(id), Some(written)) = (person_id, birth_date) {
        let from_id = id_birth_date(id);
        if from_id != Some(written) {
            let text = row.raw(BIRTH_DATE);
            let expected = from_id.map_or_else(String::new, |date| date.to_string());
            let message = format!(
                "{} must equal person_id's characters 7-14 ({expected}); got '{}'",
                BIRTH_DATE.name,
                shown(text)
            );
            row.reject(BIRTH_DATE, text, rule::BIRTH_DATE_MISMATCH, message);
            birth_date = None;
        }
    }

    let record = match (
        person_id,
        household_id,
        relation,
        gender,
        birth_date,
        education,
        health,
        labor,
        in_school,
        employed,
    ) {
        (
            Some(person_id),
            Some(household_id),
            Some(relation),
            Some(gender),
            Some(birth_date),
            Some(education),
            Some(health),
            Some(labor),
            Some(in_school),
            Some(employed),
        ) => Some(Person {
            person_id,
            household_id,
            relation,
            gender,
            birth_date,
            education,
            health,
            labor,
            in_school,
            employed,
        }),
        _ => None,
    };
    row.finish(record)
}

#[cold]
fn warning(column: &'static str, value: &str, rule: &'static str, message: String) -> Issue {
    Issue::new(Severity::Warning, Some(column), value, rule, message)
}

/// Single-row screens of a valid household (warnings): `exit-below-line`,
/// `exit-without-guarantees`, `head-under-16` (the head's age read from head_id on `ctx.as_of`).
/// Allocates nothing when the row passes.
pub fn household_warnings(row: &Household, ctx: &ImportContext) -> Vec<Issue> {
    let mut issues = Vec::new();
    if row.status == Status::Exited {
        if row.income_per_capita < POVERTY_LINE_FEN {
            let value = format_cents(row.income_per_capita);
            let message = format!(
                "status is exited while income_per_capita is {value} yuan, below the 2020 poverty line of {} yuan",
                POVERTY_LINE_FEN / 100
            );
            issues.push(warning(
                households::INCOME_PER_CAPITA.name,
                &value,
                rule::EXIT_BELOW_LINE,
                message,
            ));
        }
        let guarantees = [
            (households::HOUSING_SAFE.name, row.housing_safe),
            (households::WATER_SAFE.name, row.water_safe),
            (households::MEDICAL_INSURED.name, row.medical_insured),
        ];
        if let Some(&(first, _)) = guarantees.iter().find(|(_, held)| !held) {
            let failed: Vec<&str> = guarantees
                .iter()
                .filter(|(_, held)| !held)
                .map(|(name, _)| *name)
                .collect();
            let message = format!(
                "status is exited while {} {} false; exiting requires housing_safe, water_safe and medical_insured all true (两不愁三保障)",
                failed.join(" and "),
                if failed.len() == 1 { "is" } else { "are" }
            );
            issues.push(warning(
                first,
                "false",
                rule::EXIT_WITHOUT_GUARANTEES,
                message,
            ));
        }
    }
    if let Some(birth) = id_birth_date(row.head_id) {
        let age = birth.age_on(ctx.as_of);
        if age < HEAD_AGE_MIN_YEARS {
            let message = format!(
                "the head (head_id born {birth}) is {age} on {}, younger than {HEAD_AGE_MIN_YEARS}",
                ctx.as_of
            );
            issues.push(warning(
                households::HEAD_ID.name,
                &row.head_id.text(),
                rule::HEAD_UNDER_16,
                message,
            ));
        }
    }
    issues
}

/// Single-row screen of a valid person (warning): `dropout`, aged 6-15 inclusive on `ctx.as_of`
/// and not in school. Allocates nothing when the row passes.
pub fn person_warnings(row: &Person, ctx: &ImportContext) -> Vec<Issue> {
    let mut issues = Vec::new();
    if !row.in_school {
        let age = row.birth_date.age_on(ctx.as_of);
        if (SCHOOL_AGE_MIN_YEARS..=SCHOOL_AGE_MAX_YEARS).contains(&age) {
            let message = format!(
                "aged {age} on {} (born {}) and in_school is false; ages {SCHOOL_AGE_MIN_YEARS}-{SCHOOL_AGE_MAX_YEARS} should be in school",
                ctx.as_of, row.birth_date
            );
            issues.push(warning(
                persons::IN_SCHOOL.name,
                "false",
                rule::DROPOUT,
                message,
            ));
        }
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ColumnKind;

    #[test]
    fn column_indices_follow_the_schema() {
        for (table, columns) in [
            (Table::Households, &households::ALL[..]),
            (Table::Persons, &persons::ALL[..]),
        ] {
            let names: Vec<&str> = table.columns().iter().map(|column| column.name).collect();
            let ours: Vec<&str> = columns.iter().map(|column| column.name).collect();
            assert_eq!(names, ours, "{table}");
            for (index, column) in columns.iter().enumerate() {
                assert_eq!(column.index, index, "{}", column.name);
            }
        }
    }

    #[test]
    fn limits_agree_with_the_schema() {
        let members = Table::Households
            .column("members")
            .map(|column| column.kind);
        assert_eq!(
            members,
            Some(ColumnKind::Int {
                min: i64::from(MEMBERS_MIN),
                max: i64::from(MEMBERS_MAX)
            })
        );
        let registered = Table::Households.column("registered_year");
        assert!(matches!(
            registered.map(|column| column.kind),
            Some(ColumnKind::Int { min, .. }) if min == i64::from(REGISTERED_YEAR_MIN)
        ));
    }

    #[test]
    fn numbers_parse_strictly() {
        assert!(matches!(digits("007"), Digits::Value(7)));
        assert!(matches!(digits(""), Digits::NotDigits));
        assert!(matches!(digits("+7"), Digits::NotDigits));
        assert!(matches!(
            digits("99999999999999999999999"),
            Digits::Value(u64::MAX)
        ));
        assert_eq!(decimal_fen("0"), Some(0));
        assert_eq!(decimal_fen("12.3"), Some(1230));
        assert_eq!(decimal_fen("12.34"), Some(1234));
        assert_eq!(decimal_fen("1000000.01"), Some(100_000_001));
        for bad in [
            "", ".5", "5.", "1e3", "1,234.00", "12.345", "-1", " 1", "1.2.3", "1..2",
        ] {
            assert_eq!(decimal_fen(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn shown_values_are_escaped_and_cut() {
        assert_eq!(shown("a\nb\u{1b}"), "a\\nb\\u{1b}");
        let long = "字".repeat(VALUE_SHOWN_CHARS_MAX + 1);
        let cut = shown(&long);
        assert_eq!(cut.chars().count(), VALUE_SHOWN_CHARS_MAX + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(
            shown(&long[..3 * VALUE_SHOWN_CHARS_MAX]).chars().count(),
            64
        );
    }

    #[test]
    fn id_birth_dates_are_read_without_formatting() {
        let id = id_number::parse("11010519491231002X", Date::from_days(20_000)).expect("valid");
        assert_eq!(id_birth_date(id), id.birth_date());
    }
}
