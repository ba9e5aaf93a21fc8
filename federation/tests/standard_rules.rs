//! The data standard's hard rules and single-row screens, one table-driven test per rule: each case
//! overrides cells of a valid baseline row and names the (rule, column) pairs it must produce.

use expect_test::{expect, Expect};
use tiermesh_federation::date::Date;
use tiermesh_federation::record::{Household, Person};
use tiermesh_federation::region::RegionCode;
use tiermesh_federation::schema::Table;
use tiermesh_federation::standard::id_number::{check_char, check_value};
use tiermesh_federation::standard::validate::{
    household_warnings, parse_household, parse_person, person_warnings, rule, HeaderError,
    HeaderMap, ImportContext, Issue, Severity,
};

fn date(text: &str) -> Date {
    Date::parse_iso(text).expect("test date")
}

fn ctx() -> ImportContext {
    ImportContext {
        today: date("2025-06-30"),
        as_of: date("2025-06-30"),
        jurisdiction: "520102000000".parse::<RegionCode>().expect("test code"),
    }
}

/// A valid ID number registered in county 520102, born on `birth` (`YYYY-MM-DD`), with a 3-digit
/// sequence whose last digit's parity gives the gender (odd male, even female).
fn id_born(birth: &str, sequence: &str) -> String {
    let text = format!("520102{}{sequence}", birth.replace('-', ""));
    let body: [u8; 17] = text.as_bytes().try_into().expect("17 digits");
    format!("{text}{}", check_char(check_value(&body)))
}

fn household_baseline() -> Vec<(&'static str, String)> {
    vec![
        ("household_id", "5201020012010001".into()),
        ("region_code", "520102001201".into()),
        ("head_id", id_born("1980-01-01", "001")),
        ("head_name", "张三".into()),
        ("members", "4".into()),
        ("cause", "illness".into()),
        ("status", "poor".into()),
        ("registered_year", "2016".into()),
        ("exit_year", "".into()),
        ("income_per_capita", "3200.50".into()),
        ("housing_safe", "true".into()),
        ("water_safe", "true".into()),
        ("medical_insured", "true".into()),
        ("cadre_id", "GZ-0001".into()),
        ("industry", "planting".into()),
        ("relocated", "false".into()),
        ("relocation_site", "".into()),
        ("phone", "13800000000".into()),
    ]
}

fn person_baseline() -> Vec<(&'static str, String)> {
    vec![
        ("person_id", id_born("2013-05-05", "002")),
        ("household_id", "5201020012010001".into()),
        ("relation", "child".into()),
        ("gender", "F".into()),
        ("birth_date", "2013-05-05".into()),
        ("education", "primary".into()),
        ("health", "healthy".into()),
        ("labor", "none".into()),
        ("in_school", "true".into()),
        ("employed", "false".into()),
    ]
}

/// The baseline row of `table` with `overrides`, laid out in reverse standard order so that every
/// case also exercises a header whose order differs from the standard's.
fn row(table: Table, overrides: &[(&str, &str)]) -> (HeaderMap, Vec<String>) {
    let mut cells = match table {
        Table::Households => household_baseline(),
        Table::Persons => person_baseline(),
    };
    for (column, value) in overrides {
        let cell = cells
            .iter_mut()
            .find(|(name, _)| name == column)
            .unwrap_or_else(|| panic!("test bug: {table} has no column {column}"));
        cell.1 = (*value).to_string();
    }
    cells.reverse();
    let header: Vec<&str> = cells.iter().map(|(name, _)| *name).collect();
    let map = HeaderMap::from_header(&header).expect("baseline header");
    (map, cells.into_iter().map(|(_, value)| value).collect())
}

fn household(overrides: &[(&str, &str)], ctx: &ImportContext) -> Result<Household, Vec<Issue>> {
    let (map, cells) = row(Table::Households, overrides);
    let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
    parse_household(&map, &cells, ctx)
}

fn person(overrides: &[(&str, &str)], ctx: &ImportContext) -> Result<Person, Vec<Issue>> {
    let (map, cells) = row(Table::Persons, overrides);
    let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
    parse_person(&map, &cells, ctx)
}

/// Cell overrides, then the (rule, column) of every issue expected, in order; none for success.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a [(&'a str, &'a str)]);

fn rules_of(issues: &[Issue]) -> Vec<(&'static str, &'static str)> {
    issues
        .iter()
        .map(|issue| (issue.rule, issue.column.unwrap_or("-")))
        .collect()
}

fn check(table: Table, cases: &[Case<'_>]) {
    let mut failures = Vec::new();
    for (overrides, expected) in cases {
        let outcome = match table {
            Table::Households => household(overrides, &ctx()).map(drop),
            Table::Persons => person(overrides, &ctx()).map(drop),
        };
        let issues = outcome.err().unwrap_or_default();
        for issue in &issues {
            assert_eq!(issue.severity, Severity::Reject, "{issue}");
            assert!(issue.column.is_some(), "{issue}");
        }
        let got = rules_of(&issues);
        if got != *expected {
            failures.push(format!(
                "{overrides:?}: expected {expected:?}, got {got:?}\n  {}",
                issues
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn check_households(cases: &[Case<'_>]) {
    check(Table::Households, cases);
}

fn check_persons(cases: &[Case<'_>]) {
    check(Table::Persons, cases);
}

/// Cell overrides and ctx changes, then the (rule, column) of every warning expected.
fn check_screens(table: Table, ctx: &ImportContext, cases: &[Case<'_>]) {
    let mut failures = Vec::new();
    for (overrides, expected) in cases {
        let warnings = match table {
            Table::Households => household(overrides, ctx).map(|row| household_warnings(&row, ctx)),
            Table::Persons => person(overrides, ctx).map(|row| person_warnings(&row, ctx)),
        };
        let warnings = match warnings {
            Ok(warnings) => warnings,
            Err(issues) => panic!("{overrides:?} was rejected: {issues:?}"),
        };
        for warning in &warnings {
            assert_eq!(warning.severity, Severity::Warning, "{warning}");
        }
        let got = rules_of(&warnings);
        if got != *expected {
            failures.push(format!("{overrides:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Header

#[test]
fn header_recognises_tables_in_any_order() {
    let mut names: Vec<&str> = Table::Households.columns().iter().map(|c| c.name).collect();
    names.rotate_left(5);
    let map = HeaderMap::from_header(&names).expect("households");
    assert_eq!(map.table, Table::Households);
    assert_eq!(map.len(), 18);
    assert_eq!(map.position("household_id"), Some(13));
    assert_eq!(map.position("cause"), Some(0));
    assert_eq!(map.position("person_id"), None);

    let mut names: Vec<&str> = Table::Persons.columns().iter().map(|c| c.name).collect();
    names.reverse();
    let map = HeaderMap::from_header(&names).expect("persons");
    assert_eq!(map.table, Table::Persons);
    assert_eq!(map.len(), 10);
    assert_eq!(map.position("person_id"), Some(9));
    assert_eq!(map.position("employed"), Some(0));

    // A byte-order mark the reader left on the first name is not part of it.
    let mut names: Vec<String> = Table::Persons
        .columns()
        .iter()
        .map(|c| c.name.to_string())
        .collect();
    names[0] = format!("\u{feff}{}", names[0]);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        HeaderMap::from_header(&names).map(|map| map.table),
        Ok(Table::Persons)
    );
}

fn check_header(names: &[&str], expect: Expect) {
    let got = match HeaderMap::from_header(names) {
        Ok(map) => format!("ok {}", map.table),
        Err(error) => format!("{error:?}\n{error}"),
    };
    expect.assert_eq(&got);
}

fn persons_header_with(edit: impl FnOnce(&mut Vec<&'static str>)) -> Vec<&'static str> {
    let mut names: Vec<&str> = Table::Persons.columns().iter().map(|c| c.name).collect();
    edit(&mut names);
    names
}

#[test]
fn header_errors_name_what_is_wrong() {
    check_header(
        &persons_header_with(|names| names.retain(|name| *name != "gender")),
        expect![[r#"
            Columns { table: Persons, missing: ["gender"], unknown: [], duplicated: [] }
            the header of a persons file is wrong: missing column(s) gender; expected each of person_id, household_id, relation, gender, birth_date, education, health, labor, in_school, employed exactly once, in any order"#]],
    );
    check_header(
        &persons_header_with(|names| names[3] = "Gender"),
        expect![[r#"
            Columns { table: Persons, missing: ["gender"], unknown: ["Gender"], duplicated: [] }
            the header of a persons file is wrong: missing column(s) gender; unknown column(s) 'Gender'; expected each of person_id, household_id, relation, gender, birth_date, education, health, labor, in_school, employed exactly once, in any order"#]],
    );
    check_header(
        &persons_header_with(|names| names.push("relation")),
        expect![[r#"
            Columns { table: Persons, missing: [], unknown: [], duplicated: ["relation"] }
            the header of a persons file is wrong: duplicated column(s) relation; expected each of person_id, household_id, relation, gender, birth_date, education, health, labor, in_school, employed exactly once, in any order"#]],
    );
    check_header(
        &persons_header_with(|names| names.push(" employed")),
        expect![[r#"
            Columns { table: Persons, missing: [], unknown: [" employed"], duplicated: [] }
            the header of a persons file is wrong: unknown column(s) ' employed'; expected each of person_id, household_id, relation, gender, birth_date, education, health, labor, in_school, employed exactly once, in any order"#]],
    );
    check_header(
        &["id", "name\n"],
        expect![[r#"
            Unrecognised { names: ["id", "name\\n"] }
            cannot tell the table from the header 'id', 'name\n'; a households header names household_id, region_code, head_id, head_name, members, cause, status, registered_year, exit_year, income_per_capita, housing_safe, water_safe, medical_insured, cadre_id, industry, relocated, relocation_site, phone; a persons header names person_id, household_id, relation, gender, birth_date, education, health, labor, in_school, employed (any order, exact names)"#]],
    );
    check_header(
        &["household_id"],
        expect![[r#"
            Unrecognised { names: ["household_id"] }
            cannot tell the table from the header 'household_id'; a households header names household_id, region_code, head_id, head_name, members, cause, status, registered_year, exit_year, income_per_capita, housing_safe, water_safe, medical_insured, cadre_id, industry, relocated, relocation_site, phone; a persons header names person_id, household_id, relation, gender, birth_date, education, health, labor, in_school, employed (any order, exact names)"#]],
    );
    check_header(
        &[],
        expect![[r#"
            Empty
            the header row is empty; expected the column names of households or persons"#]],
    );
    assert_eq!(HeaderMap::from_header(&[]), Err(HeaderError::Empty));
}

// ---------------------------------------------------------------------------------------------
// households: hard rules

#[test]
fn baseline_rows_are_valid_and_kept() {
    let row = household(&[], &ctx()).expect("valid household");
    assert_eq!(row.household_id.to_string(), "5201020012010001");
    assert_eq!(row.region_code.to_string(), "520102001201");
    assert_eq!(row.head_name, "张三");
    assert_eq!(row.income_per_capita, 320_050);
    assert_eq!(row.exit_year, None);
    assert_eq!(row.relocation_site, None);
    assert_eq!(row.phone.as_deref(), Some("13800000000"));
    let row = person(&[], &ctx()).expect("valid person");
    assert_eq!(row.birth_date, date("2013-05-05"));
    assert_eq!(row.person_id.text(), id_born("2013-05-05", "002"));
}

#[test]
fn every_broken_cell_of_a_row_is_reported() {
    let issues = household(
        &[
            ("members", "0"),
            ("cause", "Illness"),
            ("income_per_capita", "1e3"),
            ("water_safe", "yes"),
            ("phone", ""),
        ],
        &ctx(),
    )
    .expect_err("broken");
    assert_eq!(
        rules_of(&issues),
        [
            (rule::OUT_OF_RANGE, "members"),
            (rule::ENUM, "cause"),
            (rule::DECIMAL, "income_per_capita"),
            (rule::BOOL, "water_safe"),
        ]
    );
}

#[test]
fn household_id_is_16_digits() {
    check_households(&[
        (&[("household_id", "5201020012019999")], &[]),
        (
            &[("household_id", "520102001201001")],
            &[(rule::HOUSEHOLD_ID, "household_id")],
        ),
        (
            &[("household_id", "52010200120100011")],
            &[(rule::HOUSEHOLD_ID, "household_id")],
        ),
        (
            &[("household_id", "520102001201000a")],
            &[(rule::HOUSEHOLD_ID, "household_id")],
        ),
        (
            &[("household_id", " 5201020012010001")],
            &[(rule::HOUSEHOLD_ID, "household_id")],
        ),
        (
            &[("household_id", "+201020012010001")],
            &[(rule::HOUSEHOLD_ID, "household_id")],
        ),
        (
            &[("household_id", "５201020012010001")],
            &[(rule::HOUSEHOLD_ID, "household_id")],
        ),
        (&[("household_id", "")], &[(rule::REQUIRED, "household_id")]),
    ]);
}

#[test]
fn region_code_is_the_households_village_inside_the_jurisdiction() {
    check_households(&[
        (&[("region_code", "")], &[(rule::REQUIRED, "region_code")]),
        (
            &[("region_code", "52010200120")],
            &[(rule::REGION_CODE, "region_code")],
        ),
        (
            &[("region_code", "52010200120a")],
            &[(rule::REGION_CODE, "region_code")],
        ),
        (
            &[("region_code", "520002001201")],
            &[(rule::REGION_CODE, "region_code")],
        ),
        (
            &[
                ("region_code", "520102001000"),
                ("household_id", "5201020010000001"),
            ],
            &[(rule::NOT_VILLAGE, "region_code")],
        ),
        (
            &[
                ("region_code", "520102000000"),
                ("household_id", "5201020000000001"),
            ],
            &[(rule::NOT_VILLAGE, "region_code")],
        ),
        (
            &[("region_code", "520102001202")],
            &[(rule::REGION_MISMATCH, "region_code")],
        ),
        (
            &[("region_code", "520102001000")],
            &[
                (rule::NOT_VILLAGE, "region_code"),
                (rule::REGION_MISMATCH, "region_code"),
            ],
        ),
        (
            &[
                ("region_code", "520102002001"),
                ("household_id", "5201020020010007"),
            ],
            &[],
        ),
        (
            &[
                ("region_code", "520103001201"),
                ("household_id", "5201030012010001"),
            ],
            &[(rule::OUTSIDE_JURISDICTION, "region_code")],
        ),
        (
            &[
                ("region_code", "530102001201"),
                ("household_id", "5301020012010001"),
            ],
            &[(rule::OUTSIDE_JURISDICTION, "region_code")],
        ),
        // A broken household_id leaves region_code judged on its own.
        (
            &[("household_id", "x")],
            &[(rule::HOUSEHOLD_ID, "household_id")],
        ),
    ]);
}

#[test]
fn head_id_is_a_valid_id_number_not_in_the_future() {
    let wrong_check = {
        let mut text = id_born("1980-01-01", "001");
        let last = if text.ends_with('0') { "1" } else { "0" };
        text.replace_range(17.., last);
        text
    };
    let leap_day = id_born("2000-02-29", "001");
    let not_leap = id_born("1900-02-29", "001");
    let today = id_born("2025-06-30", "001");
    let tomorrow = id_born("2025-07-01", "001");
    check_households(&[
        (&[("head_id", "11010519491231002X")], &[]),
        (
            &[("head_id", "11010519491231002x")],
            &[(rule::ID_NUMBER_SHAPE, "head_id")],
        ),
        (
            &[("head_id", "11010519491231002")],
            &[(rule::ID_NUMBER_SHAPE, "head_id")],
        ),
        (
            &[("head_id", "11010519491231002X ")],
            &[(rule::ID_NUMBER_SHAPE, "head_id")],
        ),
        (
            &[("head_id", &wrong_check)],
            &[(rule::ID_NUMBER_CHECK, "head_id")],
        ),
        (&[("head_id", &leap_day)], &[]),
        (
            &[("head_id", &not_leap)],
            &[(rule::ID_NUMBER_DATE, "head_id")],
        ),
        (&[("head_id", &today)], &[]),
        (
            &[("head_id", &tomorrow)],
            &[(rule::ID_NUMBER_FUTURE, "head_id")],
        ),
        (&[("head_id", "")], &[(rule::REQUIRED, "head_id")]),
    ]);
}

#[test]
fn names_are_1_to_32_characters_without_control_characters() {
    let chars_32 = "张".repeat(32);
    let chars_33 = "张".repeat(33);
    let ascii_33 = "a".repeat(33);
    let long_with_newline = format!("{}\n", "张".repeat(32));
    for column in ["head_name", "cadre_id"] {
        check_households(&[
            (&[(column, &chars_32)], &[]),
            (&[(column, "a")], &[]),
            (&[(column, &chars_33)], &[(rule::TEXT_LENGTH, column)]),
            (&[(column, &ascii_33)], &[(rule::TEXT_LENGTH, column)]),
            (&[(column, "")], &[(rule::REQUIRED, column)]),
            (&[(column, "张\n三")], &[(rule::CONTROL_CHARACTER, column)]),
            (&[(column, "张三\r")], &[(rule::CONTROL_CHARACTER, column)]),
            (&[(column, "张\t三")], &[(rule::CONTROL_CHARACTER, column)]),
            (
                &[(column, "\u{1b}[31m")],
                &[(rule::CONTROL_CHARACTER, column)],
            ),
            (
                &[(column, "a\u{85}b")],
                &[(rule::CONTROL_CHARACTER, column)],
            ),
            (
                &[(column, &long_with_newline)],
                &[
                    (rule::TEXT_LENGTH, column),
                    (rule::CONTROL_CHARACTER, column),
                ],
            ),
            (&[(column, "=SUM(A1)")], &[]),
            (&[(column, " 张 三 ")], &[]),
        ]);
    }
}

#[test]
fn text_that_looks_like_a_formula_is_kept_exactly() {
    let row = household(
        &[
            ("head_name", "=SUM(A1)"),
            ("cadre_id", "+cmd|' /C calc'!A0"),
            ("relocated", "true"),
            ("relocation_site", "@HYPERLINK(\"http://x\")"),
            ("phone", "-2+3"),
        ],
        &ctx(),
    )
    .expect("formula text is valid");
    assert_eq!(row.head_name, "=SUM(A1)");
    assert_eq!(row.cadre_id, "+cmd|' /C calc'!A0");
    assert_eq!(
        row.relocation_site.as_deref(),
        Some("@HYPERLINK(\"http://x\")")
    );
    assert_eq!(row.phone.as_deref(), Some("-2+3"));
}

#[test]
fn members_is_a_plain_integer_from_1_to_20() {
    check_households(&[
        (&[("members", "0")], &[(rule::OUT_OF_RANGE, "members")]),
        (&[("members", "1")], &[]),
        (&[("members", "20")], &[]),
        (&[("members", "21")], &[(rule::OUT_OF_RANGE, "members")]),
        (&[("members", "05")], &[]),
        (
            &[("members", "99999999999999999999999")],
            &[(rule::OUT_OF_RANGE, "members")],
        ),
        (&[("members", "+5")], &[(rule::INTEGER, "members")]),
        (&[("members", "-1")], &[(rule::INTEGER, "members")]),
        (&[("members", " 5")], &[(rule::INTEGER, "members")]),
        (&[("members", "5 ")], &[(rule::INTEGER, "members")]),
        (&[("members", "5.0")], &[(rule::INTEGER, "members")]),
        (&[("members", "５")], &[(rule::INTEGER, "members")]),
        (&[("members", "")], &[(rule::REQUIRED, "members")]),
    ]);
    let row = household(&[("members", "20")], &ctx()).expect("valid");
    assert_eq!(row.members, 20);
}

#[test]
fn household_enums_are_exact_names() {
    for cause in [
        "illness",
        "disability",
        "education",
        "disaster",
        "marriage",
        "land",
        "water",
    ]
    .into_iter()
    .chain([
        "skills",
        "labor",
        "capital",
        "transport",
        "motivation",
        "other",
    ]) {
        check_households(&[(&[("cause", cause)], &[])]);
    }
    for industry in ["planting", "breeding", "processing", "circulation", "none"] {
        check_households(&[(&[("industry", industry)], &[])]);
    }
    check_households(&[
        (&[("status", "poor")], &[]),
        (&[("status", "returned")], &[]),
        (&[("status", "monitored")], &[]),
        (&[("status", "exited"), ("exit_year", "2020")], &[]),
        (&[("cause", "Illness")], &[(rule::ENUM, "cause")]),
        (&[("cause", "illness ")], &[(rule::ENUM, "cause")]),
        (&[("cause", "因病")], &[(rule::ENUM, "cause")]),
        (&[("cause", "")], &[(rule::REQUIRED, "cause")]),
        (
            &[("status", "EXITED"), ("exit_year", "2020")],
            &[(rule::ENUM, "status")],
        ),
        (&[("status", "")], &[(rule::REQUIRED, "status")]),
        (&[("industry", "farming")], &[(rule::ENUM, "industry")]),
        (&[("industry", "")], &[(rule::REQUIRED, "industry")]),
    ]);
}

#[test]
fn registered_year_is_from_2014_to_the_imports_year() {
    check_households(&[
        (
            &[("registered_year", "2013")],
            &[(rule::OUT_OF_RANGE, "registered_year")],
        ),
        (&[("registered_year", "2014")], &[]),
        (&[("registered_year", "2025")], &[]),
        (
            &[("registered_year", "2026")],
            &[(rule::OUT_OF_RANGE, "registered_year")],
        ),
        (
            &[("registered_year", "20x6")],
            &[(rule::INTEGER, "registered_year")],
        ),
        (
            &[("registered_year", "2016.0")],
            &[(rule::INTEGER, "registered_year")],
        ),
        (
            &[("registered_year", "")],
            &[(rule::REQUIRED, "registered_year")],
        ),
    ]);
}

#[test]
fn exit_year_is_given_iff_exited_and_between_registration_and_today() {
    const EXITED: (&str, &str) = ("status", "exited");
    check_households(&[
        (
            &[EXITED, ("exit_year", "")],
            &[(rule::EXIT_YEAR_MISSING, "exit_year")],
        ),
        (&[EXITED, ("exit_year", "2016")], &[]),
        (
            &[EXITED, ("exit_year", "2015")],
            &[(rule::EXIT_BEFORE_REGISTERED, "exit_year")],
        ),
        (&[EXITED, ("exit_year", "2025")], &[]),
        (
            &[EXITED, ("exit_year", "2026")],
            &[(rule::OUT_OF_RANGE, "exit_year")],
        ),
        (
            &[EXITED, ("exit_year", "2013")],
            &[(rule::OUT_OF_RANGE, "exit_year")],
        ),
        (
            &[EXITED, ("exit_year", "20x0")],
            &[(rule::INTEGER, "exit_year")],
        ),
        (
            &[EXITED, ("registered_year", "2025"), ("exit_year", "2025")],
            &[],
        ),
        (
            &[EXITED, ("registered_year", "2014"), ("exit_year", "2014")],
            &[],
        ),
        (
            &[EXITED, ("registered_year", "2020"), ("exit_year", "2019")],
            &[(rule::EXIT_BEFORE_REGISTERED, "exit_year")],
        ),
        (
            &[EXITED, ("registered_year", "2026"), ("exit_year", "2025")],
            &[(rule::OUT_OF_RANGE, "registered_year")],
        ),
        (
            &[("status", "poor"), ("exit_year", "2020")],
            &[(rule::EXIT_YEAR_UNEXPECTED, "exit_year")],
        ),
        (
            &[("status", "returned"), ("exit_year", "2020")],
            &[(rule::EXIT_YEAR_UNEXPECTED, "exit_year")],
        ),
        (
            &[("status", "monitored"), ("exit_year", "2020")],
            &[(rule::EXIT_YEAR_UNEXPECTED, "exit_year")],
        ),
        (&[("status", "returned"), ("exit_year", "")], &[]),
        // With status unreadable, only status is blamed.
        (
            &[("status", "gone"), ("exit_year", "2020")],
            &[(rule::ENUM, "status")],
        ),
        (
            &[("status", ""), ("exit_year", "")],
            &[(rule::REQUIRED, "status")],
        ),
    ]);
    let row = household(&[EXITED, ("exit_year", "2020")], &ctx()).expect("valid");
    assert_eq!(row.exit_year, Some(2020));
}

#[test]
fn income_is_yuan_with_at_most_two_decimals_up_to_a_million() {
    check_households(&[
        (&[("income_per_capita", "0")], &[]),
        (&[("income_per_capita", "0.00")], &[]),
        (&[("income_per_capita", "1000000")], &[]),
        (&[("income_per_capita", "1000000.00")], &[]),
        (
            &[("income_per_capita", "1000000.01")],
            &[(rule::OUT_OF_RANGE, "income_per_capita")],
        ),
        (
            &[("income_per_capita", "1000001")],
            &[(rule::OUT_OF_RANGE, "income_per_capita")],
        ),
        (
            &[("income_per_capita", "99999999999999999999999")],
            &[(rule::OUT_OF_RANGE, "income_per_capita")],
        ),
        (&[("income_per_capita", "3500.5")], &[]),
        (
            &[("income_per_capita", "1,234.00")],
            &[(rule::DECIMAL, "income_per_capita")],
        ),
        (
            &[("income_per_capita", "1e3")],
            &[(rule::DECIMAL, "income_per_capita")],
        ),
        (
            &[("income_per_capita", "12.345")],
            &[(rule::DECIMAL, "income_per_capita")],
        ),
        (
            &[("income_per_capita", ".5")],
            &[(rule::DECIMAL, "income_per_capita")],
        ),
        (
            &[("income_per_capita", "5.")],
            &[(rule::DECIMAL, "income_per_capita")],
        ),
        (
            &[("income_per_capita", "-1")],
            &[(rule::DECIMAL, "income_per_capita")],
        ),
        (
            &[("income_per_capita", "+1")],
            &[(rule::DECIMAL, "income_per_capita")],
        ),
        (
            &[("income_per_capita", " 1")],
            &[(rule::DECIMAL, "income_per_capita")],
        ),
        (
            &[("income_per_capita", "1,5")],
            &[(rule::DECIMAL, "income_per_capita")],
        ),
        (
            &[("income_per_capita", "¥100")],
            &[(rule::DECIMAL, "income_per_capita")],
        ),
        (
            &[("income_per_capita", "")],
            &[(rule::REQUIRED, "income_per_capita")],
        ),
    ]);
    let fen = |text: &str| {
        household(&[("income_per_capita", text)], &ctx()).map(|row| row.income_per_capita)
    };
    assert_eq!(fen("0"), Ok(0));
    assert_eq!(fen("3500.5"), Ok(350_050));
    assert_eq!(fen("3500.05"), Ok(350_005));
    assert_eq!(fen("1000000"), Ok(100_000_000));
}

#[test]
fn booleans_are_exactly_true_or_false() {
    for column in ["housing_safe", "water_safe", "medical_insured", "relocated"] {
        check_households(&[
            (&[(column, "false")], &[]),
            (&[(column, "TRUE")], &[(rule::BOOL, column)]),
            (&[(column, "True")], &[(rule::BOOL, column)]),
            (&[(column, "1")], &[(rule::BOOL, column)]),
            (&[(column, "yes")], &[(rule::BOOL, column)]),
            (&[(column, "false ")], &[(rule::BOOL, column)]),
            (&[(column, "")], &[(rule::REQUIRED, column)]),
        ]);
    }
    for column in ["in_school", "employed"] {
        check_persons(&[
            (&[(column, "true")], &[]),
            (&[(column, "false")], &[]),
            (&[(column, "F")], &[(rule::BOOL, column)]),
            (&[(column, "0")], &[(rule::BOOL, column)]),
            (&[(column, "")], &[(rule::REQUIRED, column)]),
        ]);
    }
}

#[test]
fn relocation_site_is_given_iff_relocated() {
    let chars_200 = "安".repeat(200);
    let chars_201 = "安".repeat(201);
    check_households(&[
        (
            &[("relocated", "true"), ("relocation_site", "")],
            &[(rule::RELOCATION_SITE_MISSING, "relocation_site")],
        ),
        (
            &[("relocated", "true"), ("relocation_site", "县城安置点")],
            &[],
        ),
        (
            &[("relocated", "true"), ("relocation_site", &chars_200)],
            &[],
        ),
        (
            &[("relocated", "true"), ("relocation_site", &chars_201)],
            &[(rule::TEXT_LENGTH, "relocation_site")],
        ),
        (
            &[("relocated", "false"), ("relocation_site", "县城安置点")],
            &[(rule::RELOCATION_SITE_UNEXPECTED, "relocation_site")],
        ),
        (&[("relocated", "false"), ("relocation_site", "")], &[]),
        // With relocated unreadable, only relocated is blamed.
        (
            &[("relocated", "yes"), ("relocation_site", "")],
            &[(rule::BOOL, "relocated")],
        ),
    ]);
    let row = household(
        &[("relocated", "true"), ("relocation_site", " 县城 安置点 ")],
        &ctx(),
    )
    .expect("valid");
    assert_eq!(row.relocation_site.as_deref(), Some(" 县城 安置点 "));
}

#[test]
fn phone_is_optional_bounded_text() {
    let chars_200 = "1".repeat(200);
    let chars_201 = "1".repeat(201);
    check_households(&[
        (&[("phone", "")], &[]),
        (&[("phone", &chars_200)], &[]),
        (&[("phone", &chars_201)], &[(rule::TEXT_LENGTH, "phone")]),
        // The standard forbids control characters in head_name and cadre_id only.
        (&[("phone", "138\n0000")], &[]),
    ]);
    let row = household(&[("phone", "")], &ctx()).expect("valid");
    assert_eq!(row.phone, None);
}

// ---------------------------------------------------------------------------------------------
// persons: hard rules

#[test]
fn person_id_is_a_valid_id_number_of_any_county() {
    let other_county = {
        let text = format!("110105{}", &id_born("2013-05-05", "002")[6..17]);
        let body: [u8; 17] = text.as_bytes().try_into().expect("17 digits");
        format!("{text}{}", check_char(check_value(&body)))
    };
    check_persons(&[
        (&[("person_id", &other_county)], &[]),
        (
            &[("person_id", "11010519491231002x")],
            &[(rule::ID_NUMBER_SHAPE, "person_id")],
        ),
        (
            &[("person_id", "110105194912310021")],
            &[(rule::ID_NUMBER_CHECK, "person_id")],
        ),
        (&[("person_id", "")], &[(rule::REQUIRED, "person_id")]),
        (
            &[
                ("person_id", &id_born("2025-07-01", "002")),
                ("birth_date", "2025-07-01"),
            ],
            &[(rule::ID_NUMBER_FUTURE, "person_id")],
        ),
        (
            &[
                ("person_id", &id_born("2013-02-29", "002")),
                ("birth_date", "2013-02-29"),
            ],
            &[
                (rule::ID_NUMBER_DATE, "person_id"),
                (rule::DATE, "birth_date"),
            ],
        ),
    ]);
}

#[test]
fn person_household_id_is_16_digits() {
    check_persons(&[
        (&[("household_id", "5201020012010002")], &[]),
        (
            &[("household_id", "520102001201")],
            &[(rule::HOUSEHOLD_ID, "household_id")],
        ),
        (&[("household_id", "")], &[(rule::REQUIRED, "household_id")]),
    ]);
}

#[test]
fn person_enums_are_exact_names() {
    for relation in ["head", "spouse", "child", "parent", "grandchild", "other"] {
        check_persons(&[(&[("relation", relation)], &[])]);
    }
    for education in [
        "none",
        "primary",
        "junior",
        "senior",
        "vocational",
        "college",
    ] {
        check_persons(&[(&[("education", education)], &[])]);
    }
    for health in ["healthy", "chronic", "serious", "disabled"] {
        check_persons(&[(&[("health", health)], &[])]);
    }
    for labor in ["full", "partial", "none"] {
        check_persons(&[(&[("labor", labor)], &[])]);
    }
    check_persons(&[
        (&[("relation", "Head")], &[(rule::ENUM, "relation")]),
        (&[("relation", "")], &[(rule::REQUIRED, "relation")]),
        (&[("education", "high")], &[(rule::ENUM, "education")]),
        (&[("health", "sick")], &[(rule::ENUM, "health")]),
        (&[("labor", "NONE")], &[(rule::ENUM, "labor")]),
    ]);
}

#[test]
fn gender_is_m_or_f_matching_the_id() {
    let male_id = id_born("2013-05-05", "001");
    check_persons(&[
        (&[("gender", "F")], &[]),
        (&[("gender", "M")], &[(rule::GENDER_MISMATCH, "gender")]),
        (&[("person_id", &male_id), ("gender", "M")], &[]),
        (
            &[("person_id", &male_id), ("gender", "F")],
            &[(rule::GENDER_MISMATCH, "gender")],
        ),
        (&[("gender", "f")], &[(rule::ENUM, "gender")]),
        (&[("gender", "female")], &[(rule::ENUM, "gender")]),
        (&[("gender", "女")], &[(rule::ENUM, "gender")]),
        (&[("gender", "")], &[(rule::REQUIRED, "gender")]),
        // An unreadable ID leaves gender unchecked against it.
        (
            &[("person_id", "x"), ("gender", "M")],
            &[(rule::ID_NUMBER_SHAPE, "person_id")],
        ),
    ]);
}

#[test]
fn birth_date_is_a_real_date_matching_the_id() {
    let leap_id = id_born("2012-02-29", "002");
    check_persons(&[
        (
            &[("birth_date", "2013-05-06")],
            &[(rule::BIRTH_DATE_MISMATCH, "birth_date")],
        ),
        (
            &[("birth_date", "2012-02-29")],
            &[(rule::BIRTH_DATE_MISMATCH, "birth_date")],
        ),
        (
            &[("person_id", &leap_id), ("birth_date", "2012-02-29")],
            &[],
        ),
        (
            &[("person_id", &leap_id), ("birth_date", "2012-03-01")],
            &[(rule::BIRTH_DATE_MISMATCH, "birth_date")],
        ),
        (
            &[("birth_date", "2013-02-29")],
            &[(rule::DATE, "birth_date")],
        ),
        (
            &[("birth_date", "2013/05/05")],
            &[(rule::DATE, "birth_date")],
        ),
        (&[("birth_date", "2013-5-5")], &[(rule::DATE, "birth_date")]),
        (&[("birth_date", "20130505")], &[(rule::DATE, "birth_date")]),
        (
            &[("birth_date", "2013-05-05 ")],
            &[(rule::DATE, "birth_date")],
        ),
        (&[("birth_date", "")], &[(rule::REQUIRED, "birth_date")]),
    ]);
}

// ---------------------------------------------------------------------------------------------
// Single-row screens

#[test]
fn exit_below_line_warns_for_exited_households_under_4000_yuan() {
    const EXITED: [(&str, &str); 2] = [("status", "exited"), ("exit_year", "2020")];
    check_screens(
        Table::Households,
        &ctx(),
        &[
            (
                &[EXITED[0], EXITED[1], ("income_per_capita", "3999.99")],
                &[(rule::EXIT_BELOW_LINE, "income_per_capita")],
            ),
            (
                &[EXITED[0], EXITED[1], ("income_per_capita", "0")],
                &[(rule::EXIT_BELOW_LINE, "income_per_capita")],
            ),
            (&[EXITED[0], EXITED[1], ("income_per_capita", "4000")], &[]),
            (
                &[EXITED[0], EXITED[1], ("income_per_capita", "4000.00")],
                &[],
            ),
            (&[("status", "poor"), ("income_per_capita", "100")], &[]),
            (&[("status", "returned"), ("income_per_capita", "100")], &[]),
        ],
    );
}

#[test]
fn exit_without_guarantees_warns_when_any_guarantee_is_false() {
    const EXITED: [(&str, &str); 3] = [
        ("status", "exited"),
        ("exit_year", "2020"),
        ("income_per_capita", "5000"),
    ];
    let [a, b, c] = EXITED;
    check_screens(
        Table::Households,
        &ctx(),
        &[
            (&[a, b, c], &[]),
            (
                &[a, b, c, ("housing_safe", "false")],
                &[(rule::EXIT_WITHOUT_GUARANTEES, "housing_safe")],
            ),
            (
                &[a, b, c, ("water_safe", "false")],
                &[(rule::EXIT_WITHOUT_GUARANTEES, "water_safe")],
            ),
            (
                &[a, b, c, ("medical_insured", "false")],
                &[(rule::EXIT_WITHOUT_GUARANTEES, "medical_insured")],
            ),
            (
                &[
                    a,
                    b,
                    c,
                    ("water_safe", "false"),
                    ("medical_insured", "false"),
                ],
                &[(rule::EXIT_WITHOUT_GUARANTEES, "water_safe")],
            ),
            (
                &[
                    a,
                    b,
                    ("income_per_capita", "100"),
                    ("housing_safe", "false"),
                ],
                &[
                    (rule::EXIT_BELOW_LINE, "income_per_capita"),
                    (rule::EXIT_WITHOUT_GUARANTEES, "housing_safe"),
                ],
            ),
            (&[("status", "poor"), ("housing_safe", "false")], &[]),
            (&[("status", "monitored"), ("water_safe", "false")], &[]),
        ],
    );
}

#[test]
fn head_under_16_reads_the_heads_age_from_head_id_on_the_reference_date() {
    let fifteen = id_born("2009-07-01", "001"); // 16 on 2025-07-01
    let sixteen = id_born("2009-06-30", "001"); // 16 on 2025-06-30
    let leap = id_born("2008-02-29", "001"); // 16 on 2024-03-01
    let cases: &[Case<'_>] = &[
        (
            &[("head_id", &fifteen)],
            &[(rule::HEAD_UNDER_16, "head_id")],
        ),
        (&[("head_id", &sixteen)], &[]),
        (&[("head_id", &leap)], &[]),
    ];
    check_screens(Table::Households, &ctx(), cases);
    // The reference date, not the import's date, decides.
    let earlier = ImportContext {
        as_of: date("2024-02-28"),
        ..ctx()
    };
    check_screens(
        Table::Households,
        &earlier,
        &[
            (
                &[("head_id", &sixteen)],
                &[(rule::HEAD_UNDER_16, "head_id")],
            ),
            (&[("head_id", &leap)], &[(rule::HEAD_UNDER_16, "head_id")]),
        ],
    );
    let leap_birthday = ImportContext {
        as_of: date("2024-03-01"),
        ..ctx()
    };
    check_screens(
        Table::Households,
        &leap_birthday,
        &[(&[("head_id", &leap)], &[])],
    );
}

#[test]
fn dropout_warns_for_ages_6_to_15_not_in_school() {
    let born = |birth: &'static str| -> [(&'static str, String); 3] {
        [
            ("person_id", id_born(birth, "002")),
            ("birth_date", birth.to_string()),
            ("in_school", "false".to_string()),
        ]
    };
    // Ages on 2025-06-30.
    let cases = [
        ("2019-07-01", false), // 5
        ("2019-06-30", true),  // 6 today
        ("2013-05-05", true),  // 12
        ("2009-07-01", true),  // 15, 16 tomorrow
        ("2009-06-30", false), // 16 today
        ("1980-01-01", false), // adult
    ];
    for (birth, warned) in cases {
        let cells = born(birth);
        let overrides: Vec<(&str, &str)> = cells
            .iter()
            .map(|(column, value)| (*column, value.as_str()))
            .collect();
        let expected: &[(&str, &str)] = if warned {
            &[(rule::DROPOUT, "in_school")]
        } else {
            &[]
        };
        check_screens(Table::Persons, &ctx(), &[(&overrides, expected)]);
        // In school is never a dropout.
        check_screens(Table::Persons, &ctx(), &[(&overrides[..2], &[])]);
    }
    // The reference date decides: 16 on 2025-06-30, 15 a year earlier.
    let cells = born("2009-06-30");
    let overrides: Vec<(&str, &str)> = cells
        .iter()
        .map(|(column, value)| (*column, value.as_str()))
        .collect();
    let earlier = ImportContext {
        as_of: date("2024-06-30"),
        ..ctx()
    };
    check_screens(
        Table::Persons,
        &earlier,
        &[(&overrides, &[(rule::DROPOUT, "in_school")])],
    );
}

// ---------------------------------------------------------------------------------------------
// What a report shows

fn check_messages(table: Table, cases: &[&[(&str, &str)]], expect: Expect) {
    let mut out = String::new();
    for overrides in cases {
        let issues = match table {
            Table::Households => household(overrides, &ctx()).err(),
            Table::Persons => person(overrides, &ctx()).err(),
        }
        .unwrap_or_default();
        for issue in issues {
            out.push_str(&format!("{issue}\n    value: '{}'\n", issue.value));
        }
    }
    expect.assert_eq(&out);
}

#[test]
fn messages_name_the_value_and_what_would_be_accepted() {
    check_messages(
        Table::Households,
        &[
            &[("household_id", "52010200120100")],
            &[("region_code", "520102001202")],
            &[
                ("region_code", "530102001201"),
                ("household_id", "5301020012010001"),
            ],
            &[("head_id", "11010519491231002x")],
            &[("head_name", "张\n三")],
            &[("members", "21")],
            &[("members", "+5")],
            &[("cause", "Illness")],
            &[("status", "exited")],
            &[("status", "poor"), ("exit_year", "2020")],
            &[("registered_year", "2026")],
            &[("income_per_capita", "1,234.00")],
            &[("income_per_capita", "1000000.01")],
            &[("housing_safe", "TRUE")],
            &[("relocated", "true")],
            &[("cadre_id", "")],
        ],
        expect![[r#"
            reject household-id [household_id]: household_id must be 16 digits (the 12-digit village code then a 4-digit serial); got '52010200120100'
                value: '52010200120100'
            reject region-mismatch [region_code]: region_code must equal the first 12 digits of household_id 5201020012010001 (520102001201); got '520102001202'
                value: '520102001202'
            reject outside-jurisdiction [region_code]: region_code 530102001201 lies outside this node's jurisdiction 520102000000
                value: '530102001201'
            reject id-number-shape [head_id]: head_id is not a valid ID number: an ID number is 17 digits then a digit or upper-case X (GB 11643); got '11010519491231002x'
                value: '11010519491231002x'
            reject control-character [head_name]: head_name must not contain control characters (found \n); got '张\n三'
                value: '张\n三'
            reject out-of-range [members]: members must be from 1 to 20 people; got '21'
                value: '21'
            reject integer [members]: members must be a whole number in plain digits (no sign, spaces or separators) from 1 to 20; got '+5'
                value: '+5'
            reject enum [cause]: cause must be one of illness, disability, education, disaster, marriage, land, water, skills, labor, capital, transport, motivation, other (exact, lower case); got 'Illness'
                value: 'Illness'
            reject exit-year-missing [exit_year]: exit_year is required when status is exited; the cell is empty
                value: ''
            reject exit-year-unexpected [exit_year]: exit_year must be empty unless status is exited; got '2020'
                value: '2020'
            reject out-of-range [registered_year]: registered_year must be from 2014 to 2025 (the import's year); got '2026'
                value: '2026'
            reject decimal [income_per_capita]: income_per_capita must be yuan written as digits with an optional point and one or two decimals (e.g. 3500 or 3500.50; no sign, separators or exponent); got '1,234.00'
                value: '1,234.00'
            reject out-of-range [income_per_capita]: income_per_capita must be from 0 to 1000000 yuan; got '1000000.01'
                value: '1000000.01'
            reject bool [housing_safe]: housing_safe must be exactly true or false; got 'TRUE'
                value: 'TRUE'
            reject relocation-site-missing [relocation_site]: relocation_site is required when relocated is true; the cell is empty
                value: ''
            reject required [cadre_id]: cadre_id is required; the cell is empty
                value: ''
        "#]],
    );
    check_messages(
        Table::Persons,
        &[
            &[("gender", "M")],
            &[("birth_date", "2013-05-06")],
            &[("birth_date", "2013-02-29")],
        ],
        expect![[r#"
            reject gender-mismatch [gender]: gender must be F, as person_id's 17th character is even; got 'M'
                value: 'M'
            reject birth-date-mismatch [birth_date]: birth_date must equal person_id's characters 7-14 (2013-05-05); got '2013-05-06'
                value: '2013-05-06'
            reject date [birth_date]: birth_date must be a real date written YYYY-MM-DD; got '2013-02-29'
                value: '2013-02-29'
        "#]],
    );
}

#[test]
fn warning_messages_explain_the_screen() {
    let ctx = ctx();
    let row = household(
        &[
            ("status", "exited"),
            ("exit_year", "2020"),
            ("income_per_capita", "3999.99"),
            ("water_safe", "false"),
            ("medical_insured", "false"),
            ("head_id", &id_born("2012-03-04", "001")),
        ],
        &ctx,
    )
    .expect("valid");
    let person = person(&[("in_school", "false")], &ctx).expect("valid");
    let out: String = household_warnings(&row, &ctx)
        .into_iter()
        .chain(person_warnings(&person, &ctx))
        .map(|issue| format!("{issue}\n    value: '{}'\n", issue.value))
        .collect();
    expect![[r#"
        warning exit-below-line [income_per_capita]: status is exited while income_per_capita is 3999.99 yuan, below the 2020 poverty line of 4000 yuan
            value: '3999.99'
        warning exit-without-guarantees [water_safe]: status is exited while water_safe and medical_insured are false; exiting requires housing_safe, water_safe and medical_insured all true (两不愁三保障)
            value: 'false'
        warning head-under-16 [head_id]: the head (head_id born 2012-03-04) is 13 on 2025-06-30, younger than 16
            value: '520102201203040012'
        warning dropout [in_school]: aged 12 on 2025-06-30 (born 2013-05-05) and in_school is false; ages 6-15 should be in school
            value: 'false'
    "#]].assert_eq(&out);
}

#[test]
fn long_values_are_cut_for_the_report() {
    let long = "x".repeat(100);
    let issues = household(&[("cause", &long)], &ctx()).expect_err("bad cause");
    let value = &issues[0].value;
    assert_eq!(value.chars().count(), 65);
    assert!(value.ends_with('…'));
    assert!(issues[0].message.len() < 300, "{}", issues[0].message);
}
