//! The synthetic data generator: determinism, folder layout, the standard's hard rules on every
//! row, and warning counts recomputed here independently of the generator.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use tiermesh::gen::{generate, GenError, GenOptions, GenSummary, WarningCounts};
use tiermesh_federation::date::Date;
use tiermesh_federation::record::{
    Cause, Education, Gender, Health, Industry, Labor, Relation, Status,
};
use tiermesh_federation::region::{RegionCode, Tier};
use tiermesh_federation::schema::Table;
use tiermesh_federation::standard::id_number;
use tiermesh_federation::standard::validate::{self, rule, HeaderMap, ImportContext, Severity};

const SEED: u64 = 20_201_123;

fn today() -> Date {
    Date::parse_iso("2026-03-15").expect("valid date")
}

fn code(text: &str) -> RegionCode {
    text.parse().expect("valid region code")
}

fn options(region: &str, households: u64, seed: u64, out: &Path) -> GenOptions {
    GenOptions {
        region: code(region),
        households,
        seed,
        out: out.to_path_buf(),
        today: today(),
    }
}

/// Every file under `root`, by relative path.
fn read_tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).expect("readable dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(root).expect("under root").to_path_buf();
                files.insert(relative, fs::read(&path).expect("readable file"));
            }
        }
    }
    files
}

/// Header and rows of one generated CSV file.
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).expect("csv opens");
    let header = reader
        .headers()
        .expect("header row")
        .iter()
        .map(str::to_string)
        .collect();
    let rows = reader
        .records()
        .map(|record| {
            record
                .expect("well-formed row")
                .iter()
                .map(str::to_string)
                .collect()
        })
        .collect();
    (header, rows)
}

fn bool_cell(text: &str) -> bool {
    match text {
        "true" => true,
        "false" => false,
        other => panic!("not a boolean: {other:?}"),
    }
}

fn digits(text: &str, count: usize) -> bool {
    text.len() == count && text.bytes().all(|byte| byte.is_ascii_digit())
}

/// Yuan with at most two decimals, as fen.
fn cents(text: &str) -> i64 {
    let (yuan, fraction) = text.split_once('.').unwrap_or((text, ""));
    assert!(
        !yuan.is_empty() && yuan.bytes().all(|b| b.is_ascii_digit()),
        "income {text:?}"
    );
    assert!(
        fraction.len() <= 2 && fraction.bytes().all(|b| b.is_ascii_digit()),
        "income {text:?}"
    );
    let fraction = format!("{fraction:0<2}");
    yuan.parse::<i64>().expect("yuan") * 100 + fraction.parse::<i64>().expect("fen")
}

fn text_ok(text: &str, max_chars: usize) -> bool {
    let count = text.chars().count();
    (1..=max_chars).contains(&count) && !text.chars().any(char::is_control)
}

/// What the checks saw across the whole generated set.
#[derive(Default)]
struct Seen {
    households: u64,
    persons: u64,
    exited: u64,
    relocated: u64,
    migrant_ids: u64,
    warnings: WarningCounts,
    /// The warnings of federation's single-row screens (every screen but members-mismatch).
    screened: WarningCounts,
}

/// Counts single-row screen results by rule; every issue must be a warning.
fn count_screens(issues: &[validate::Issue], counts: &mut WarningCounts) {
    for issue in issues {
        assert_eq!(issue.severity, Severity::Warning, "{issue}");
        match issue.rule {
            rule::EXIT_BELOW_LINE => counts.exit_below_line += 1,
            rule::EXIT_WITHOUT_GUARANTEES => counts.exit_without_guarantees += 1,
            rule::HEAD_UNDER_16 => counts.head_under_16 += 1,
            rule::DROPOUT => counts.dropout += 1,
            other => panic!("unexpected screen {other}: {issue}"),
        }
    }
}

/// Checks every row under `out` against the standard and recomputes the warning screens.
fn check_set(out: &Path, region: RegionCode, summary: &GenSummary) -> Seen {
    let today = today();
    let current_year = today.year();
    let context = ImportContext {
        today,
        as_of: today,
        jurisdiction: region,
    };
    let mut folders: Vec<String> = fs::read_dir(out)
        .expect("out dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    folders.sort();
    let expected_folders: Vec<String> = summary
        .counties
        .iter()
        .map(|(county, _, _)| format!("{:06}", county.value() / 1_000_000))
        .collect();
    assert_eq!(
        folders, expected_folders,
        "one folder per county, in code order"
    );

    let household_header: Vec<&str> = Table::Households.columns().iter().map(|c| c.name).collect();
    let person_header: Vec<&str> = Table::Persons.columns().iter().map(|c| c.name).collect();
    let mut seen = Seen::default();
    let mut person_ids = HashSet::new();
    let mut household_ids = HashSet::new();
    for (county, county_households, county_persons) in &summary.counties {
        assert_eq!(county.tier(), Tier::County);
        assert!(region.contains(*county), "{county:?} outside {region:?}");
        let folder = out.join(format!("{:06}", county.value() / 1_000_000));
        let mut names: Vec<String> = fs::read_dir(&folder)
            .expect("county dir")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        assert_eq!(names, ["households.csv", "persons.csv"]);

        let (header, households) = read_csv(&folder.join("households.csv"));
        assert_eq!(header, household_header);
        let names: Vec<&str> = header.iter().map(String::as_str).collect();
        let map = HeaderMap::from_header(&names).expect("households header");
        assert_eq!(households.len() as u64, *county_households);
        // household_id -> (members, head_id)
        let mut heads: HashMap<String, (u64, String)> = HashMap::new();
        let mut previous_id = String::new();
        for row in &households {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            match validate::parse_household(&map, &cells, &context) {
                Ok(record) => count_screens(
                    &validate::household_warnings(&record, &context),
                    &mut seen.screened,
                ),
                Err(issues) => panic!("household {row:?} rejected: {issues:?}"),
            }
            let [household_id, region_code, head_id, head_name, members, cause, status, registered_year, exit_year, income, housing_safe, water_safe, medical_insured, cadre_id, industry, relocated, relocation_site, phone] =
                row.as_slice()
            else {
                panic!("household row with {} cells", row.len());
            };
            assert!(digits(household_id, 16), "{household_id}");
            assert!(*household_id > previous_id, "households in id order");
            previous_id.clone_from(household_id);
            assert_eq!(&household_id[..12], region_code.as_str());
            assert_ne!(&household_id[12..], "0000");
            let village = code(region_code);
            assert_eq!(village.tier(), Tier::Village, "{region_code}");
            assert!(county.contains(village), "{region_code} outside {county:?}");
            assert!(
                household_ids.insert(household_id.clone()),
                "duplicate {household_id}"
            );
            let head = id_number::parse(head_id, today).expect("valid head_id");
            assert!(text_ok(head_name, 32), "{head_name:?}");
            let name_chars = head_name.chars().count();
            assert!((2..=3).contains(&name_chars), "{head_name:?}");
            let members: u64 = members.parse().expect("members is an integer");
            assert!((1..=20).contains(&members));
            assert!(Cause::parse(cause).is_some(), "{cause}");
            let status = Status::parse(status).expect("status");
            let registered_year: i32 = registered_year.parse().expect("registered_year");
            assert!((2014..=current_year).contains(&registered_year));
            if status == Status::Exited {
                let exit_year: i32 = exit_year.parse().expect("exit_year when exited");
                assert!((registered_year..=current_year).contains(&exit_year));
                seen.exited += 1;
            } else {
                assert_eq!(exit_year, "", "exit_year only when exited");
            }
            let income = cents(income);
            assert!((0..=100_000_000).contains(&income));
            let guarantees =
                [housing_safe, water_safe, medical_insured].map(|cell| bool_cell(cell));
            assert!(text_ok(cadre_id, 32), "{cadre_id:?}");
            assert!(
                cadre_id.starts_with(&format!("C{}", &region_code[..6])),
                "{cadre_id}"
            );
            assert!(Industry::parse(industry).is_some(), "{industry}");
            let relocated = bool_cell(relocated);
            assert_eq!(
                relocated,
                !relocation_site.is_empty(),
                "relocation_site iff relocated"
            );
            if relocated {
                assert!(text_ok(relocation_site, 200) && relocation_site.ends_with("安置点"));
                seen.relocated += 1;
            }
            assert!(
                phone.is_empty() || (digits(phone, 11) && phone.starts_with('1')),
                "{phone}"
            );

            if status == Status::Exited && income < 400_000 {
                seen.warnings.exit_below_line += 1;
            }
            if status == Status::Exited && guarantees.contains(&false) {
                seen.warnings.exit_without_guarantees += 1;
            }
            let head_birth = head.birth_date().expect("head birth date");
            if head_birth.age_on(today) < 16 {
                seen.warnings.head_under_16 += 1;
            }
            heads.insert(household_id.clone(), (members, head_id.clone()));
        }

        let (header, persons) = read_csv(&folder.join("persons.csv"));
        assert_eq!(header, person_header);
        let names: Vec<&str> = header.iter().map(String::as_str).collect();
        let map = HeaderMap::from_header(&names).expect("persons header");
        assert_eq!(persons.len() as u64, *county_persons);
        let mut rows_per_household: HashMap<&str, u64> = HashMap::new();
        let mut head_rows: HashMap<&str, u64> = HashMap::new();
        for row in &persons {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            match validate::parse_person(&map, &cells, &context) {
                Ok(record) => count_screens(
                    &validate::person_warnings(&record, &context),
                    &mut seen.screened,
                ),
                Err(issues) => panic!("person {row:?} rejected: {issues:?}"),
            }
            let [person_id, household_id, relation, gender, birth_date, education, health, labor, in_school, employed] =
                row.as_slice()
            else {
                panic!("person row with {} cells", row.len());
            };
            let id = id_number::parse(person_id, today).expect("valid person_id");
            assert!(
                person_ids.insert(person_id.clone()),
                "duplicate person_id {person_id}"
            );
            if id.county_code() != county.value() / 1_000_000 {
                seen.migrant_ids += 1;
            }
            let (_, head_id) = heads
                .get(household_id)
                .expect("person of a household of the county");
            *rows_per_household.entry(household_id.as_str()).or_default() += 1;
            let relation = Relation::parse(relation).expect("relation");
            if relation == Relation::Head {
                *head_rows.entry(household_id.as_str()).or_default() += 1;
                assert_eq!(person_id, head_id, "the head's person_id is head_id");
            }
            let gender = Gender::parse(gender).expect("gender");
            assert_eq!(gender, id.gender(), "gender follows the ID of {person_id}");
            let birth = Date::parse_iso(birth_date).expect("birth_date");
            assert_eq!(
                Some(birth),
                id.birth_date(),
                "birth_date follows the ID of {person_id}"
            );
            assert!(birth <= today);
            assert!(Education::parse(education).is_some(), "{education}");
            assert!(Health::parse(health).is_some(), "{health}");
            assert!(Labor::parse(labor).is_some(), "{labor}");
            let in_school = bool_cell(in_school);
            bool_cell(employed);
            if (6..=15).contains(&birth.age_on(today)) && !in_school {
                seen.warnings.dropout += 1;
            }
        }
        for (household_id, (members, _)) in &heads {
            let rows = rows_per_household
                .get(household_id.as_str())
                .copied()
                .unwrap_or(0);
            if rows != *members {
                seen.warnings.members_mismatch += 1;
            }
            assert_eq!(
                head_rows.get(household_id.as_str()),
                Some(&1),
                "one head in {household_id}"
            );
        }
        seen.households += households.len() as u64;
        seen.persons += persons.len() as u64;
    }
    assert_eq!(seen.households, summary.households);
    assert_eq!(seen.persons, summary.persons);
    // members-mismatch is a cross-row screen of the import pipeline, not of `validate`.
    let screened = WarningCounts {
        members_mismatch: seen.warnings.members_mismatch,
        ..seen.screened
    };
    assert_eq!(
        screened, seen.warnings,
        "federation's screens count the same warnings"
    );
    seen
}

#[test]
fn a_prefecture_set_obeys_the_standard_and_counts_its_warnings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let region = code("520100000000");
    let summary = generate(&options("520100000000", 2_000, SEED, dir.path())).expect("generates");
    assert_eq!(summary.households, 2_000);
    assert!(
        summary.counties.len() > 1,
        "a prefecture spreads over its counties"
    );
    let seen = check_set(dir.path(), region, &summary);
    assert_eq!(seen.warnings, summary.expected_warnings);
    let warnings = seen.warnings;
    assert!(
        warnings.exit_below_line + warnings.exit_without_guarantees + warnings.dropout > 0,
        "some warning cases are generated: {warnings:?}"
    );
    let persons_per_household = seen.persons as f64 / seen.households as f64;
    assert!(
        (3.0..3.6).contains(&persons_per_household),
        "{persons_per_household}"
    );
    let exited_share = seen.exited as f64 / seen.households as f64;
    assert!((0.62..0.78).contains(&exited_share), "{exited_share}");
    assert!(seen.relocated > 0 && seen.migrant_ids > 0);
}

#[test]
fn the_same_options_give_the_same_bytes() {
    let first = tempfile::tempdir().expect("temp dir");
    let second = tempfile::tempdir().expect("temp dir");
    let third = tempfile::tempdir().expect("temp dir");
    let summary = generate(&options("520000000000", 1_500, SEED, first.path())).expect("generates");
    let again = generate(&options("520000000000", 1_500, SEED, second.path())).expect("generates");
    assert_eq!(summary, again);
    let first_files = read_tree(first.path());
    assert_eq!(first_files.len(), 2 * summary.counties.len());
    assert!(
        first_files == read_tree(second.path()),
        "same seed, different bytes"
    );
    generate(&options("520000000000", 1_500, SEED + 1, third.path())).expect("generates");
    assert!(
        first_files != read_tree(third.path()),
        "another seed, same bytes"
    );
}

#[test]
fn a_county_gets_every_household() {
    let dir = tempfile::tempdir().expect("temp dir");
    let region = code("620102000000");
    let summary = generate(&options("620102000000", 1_200, 7, dir.path())).expect("generates");
    assert_eq!(summary.counties.len(), 1);
    assert_eq!(summary.counties[0].0, region);
    assert_eq!(summary.counties[0].1, 1_200);
    let seen = check_set(dir.path(), region, &summary);
    assert_eq!(seen.warnings, summary.expected_warnings);
}

#[test]
fn a_national_set_uses_the_provincial_codes() {
    // Few households: each county folder costs a directory and two files.
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = generate(&options("000000000000", 300, 11, dir.path())).expect("generates");
    let allowed = [11..=15, 21..=23, 31..=37, 41..=46, 50..=54, 61..=65];
    let provinces: HashSet<u64> = summary
        .counties
        .iter()
        .map(|(county, _, _)| county.value() / 10_000_000_000)
        .collect();
    assert!(provinces
        .iter()
        .all(|p| allowed.iter().any(|range| range.contains(p))));
    assert!(
        provinces.len() > 20,
        "households spread over the provinces: {provinces:?}"
    );
    let seen = check_set(dir.path(), RegionCode::NATIONAL, &summary);
    assert_eq!(seen.warnings, summary.expected_warnings);
}

#[test]
fn bad_requests_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (region, tier) in [
        ("520102001201", Tier::Village),
        ("520102001000", Tier::Township),
    ] {
        let error = generate(&options(region, 10, SEED, dir.path())).expect_err("refused");
        assert!(
            matches!(error, GenError::RegionTier { tier: refused, .. } if refused == tier),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(region) && message.contains("county"),
            "{message}"
        );
    }
    let error = generate(&options("520102000000", 0, SEED, dir.path())).expect_err("refused");
    assert!(matches!(error, GenError::NoHouseholds), "{error:?}");
    let mut early = options("520102000000", 10, SEED, dir.path());
    early.today = Date::parse_iso("2013-12-31").expect("date");
    let error = generate(&early).expect_err("refused");
    assert!(matches!(error, GenError::TodayTooEarly { .. }), "{error:?}");
    assert_eq!(
        fs::read_dir(dir.path()).expect("dir").count(),
        0,
        "nothing written"
    );

    let blocker = dir.path().join("file");
    fs::write(&blocker, b"not a directory").expect("write");
    let error =
        generate(&options("520102000000", 10, SEED, &blocker.join("out"))).expect_err("refused");
    assert!(matches!(error, GenError::Io { .. }), "{error:?}");
    assert!(error.to_string().contains("file"), "{error}");
}
