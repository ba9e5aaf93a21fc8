//! The property of the `csv_row` fuzz target after its CSV step, shared with the corpus replay in
//! `federation/tests/fuzz_corpus.rs` (both include this file with `#[path]`): every record, as
//! cells of bytes under a fixed standard header, goes through the data standard's row parser.
//!
//! The target's input is one selector byte (`p` for a persons file, anything else for
//! households), then CSV text; the target reads it as the import does (`csv`, no header row,
//! flexible record lengths) and hands every record here.

use tiermesh_federation::date::Date;
use tiermesh_federation::region::RegionCode;
use tiermesh_federation::schema::Table;
use tiermesh_federation::standard::validate::{
    household_warnings, parse_household, parse_person, person_warnings, rule, HeaderMap,
    ImportContext, Issue, Severity, VALUE_SHOWN_CHARS_MAX,
};

/// The selector byte of a persons input.
pub const PERSONS_SELECTOR: u8 = b'p';

/// Every rule name an issue may carry.
const RULES: &[&str] = &[
    rule::SHAPE,
    rule::MALFORMED_CSV,
    rule::REQUIRED,
    rule::HOUSEHOLD_ID,
    rule::REGION_CODE,
    rule::NOT_VILLAGE,
    rule::REGION_MISMATCH,
    rule::OUTSIDE_JURISDICTION,
    rule::ID_NUMBER_SHAPE,
    rule::ID_NUMBER_CHECK,
    rule::ID_NUMBER_DATE,
    rule::ID_NUMBER_FUTURE,
    rule::TEXT_LENGTH,
    rule::CONTROL_CHARACTER,
    rule::INTEGER,
    rule::DECIMAL,
    rule::OUT_OF_RANGE,
    rule::ENUM,
    rule::BOOL,
    rule::DATE,
    rule::EXIT_YEAR_MISSING,
    rule::EXIT_YEAR_UNEXPECTED,
    rule::EXIT_BEFORE_REGISTERED,
    rule::RELOCATION_SITE_MISSING,
    rule::RELOCATION_SITE_UNEXPECTED,
    rule::GENDER_MISMATCH,
    rule::BIRTH_DATE_MISMATCH,
    rule::DUPLICATE,
    rule::UNKNOWN_HOUSEHOLD,
    rule::HOUSEHOLD_REJECTED,
    rule::HEAD_MISMATCH,
    rule::MEMBERS_MISMATCH,
    rule::DUPLICATE_PERSON,
    rule::DROPOUT,
    rule::EXIT_BELOW_LINE,
    rule::EXIT_WITHOUT_GUARANTEES,
    rule::HEAD_UNDER_16,
];

/// The table an input's first byte selects.
pub fn table_of(selector: u8) -> Table {
    if selector == PERSONS_SELECTOR {
        Table::Persons
    } else {
        Table::Households
    }
}

/// The fixed header of `table`: its standard columns in the standard's order.
pub fn header(table: Table) -> HeaderMap {
    let names: Vec<&str> = table.columns().iter().map(|column| column.name).collect();
    HeaderMap::from_header(&names).expect("the standard's own column names form a header")
}

/// The import's date and node: today 2026-06-30, county 520102 (the seeds' region).
pub fn context() -> ImportContext {
    let date = Date::parse_iso("2026-06-30").expect("a fixed valid date");
    ImportContext {
        today: date,
        as_of: date,
        jurisdiction: "520102000000"
            .parse::<RegionCode>()
            .expect("a fixed valid region code"),
    }
}

/// One record through `parse_household` or `parse_person` (per `map`), cells read as UTF-8 with
/// invalid sequences replaced and taken whatever their count: the parser never panics, and the
/// record is a typed row (whose screens then run) or a non-empty list of reject issues, each with
/// one of the standard's rule names, a column of the table (or none) and a message.
pub fn check_record(map: &HeaderMap, cells: &[&[u8]], context: &ImportContext) {
    let text: Vec<std::borrow::Cow<'_, str>> = cells
        .iter()
        .map(|cell| String::from_utf8_lossy(cell))
        .collect();
    let cells: Vec<&str> = text.iter().map(|cell| cell.as_ref()).collect();
    let outcome = match map.table {
        Table::Households => {
            parse_household(map, &cells, context).map(|row| household_warnings(&row, context))
        }
        Table::Persons => {
            parse_person(map, &cells, context).map(|row| person_warnings(&row, context))
        }
    };
    let (issues, severity) = match outcome {
        Ok(warnings) => (warnings, Severity::Warning),
        Err(issues) => {
            assert!(!issues.is_empty(), "a row was refused without an issue");
            (issues, Severity::Reject)
        }
    };
    for issue in &issues {
        check_issue(map.table, issue, severity);
    }
}

fn check_issue(table: Table, issue: &Issue, severity: Severity) {
    assert_eq!(issue.severity, severity, "{issue}");
    assert!(
        RULES.contains(&issue.rule),
        "issue {issue} names the rule {:?}, which is not in `validate::rule` (or not yet in this \
         check's list)",
        issue.rule
    );
    if let Some(column) = issue.column {
        assert!(
            table.column(column).is_some(),
            "issue {issue} names {column}, not a column of {table}"
        );
    }
    assert!(!issue.message.is_empty(), "issue {issue} has no message");
    // `escape_default` writes a character as at most 10 (`\u{10ffff}`), and `…` ends a cut value.
    assert!(
        issue.value.chars().count() <= VALUE_SHOWN_CHARS_MAX * 10 + 1,
        "issue {issue} shows a value of {} characters",
        issue.value.chars().count()
    );
}
