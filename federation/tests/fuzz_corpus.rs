//! The fuzz corpora of `grant_decode`, `sql_plan` and `csv_row` (under `fuzz/corpus/`): the
//! committed seeds are what this file writes (`UPDATE_EXPECT=1` rewrites them), and the files of
//! each folder replay through the very property its fuzz target checks: the check functions live
//! in `fuzz/checks/` and are included here and by the targets with `#[path]`.
//!
//! `grant_decode` and `sql_plan` replay every file of their folders, fuzzer finds included.
//! `csv_row` inputs are CSV text that the target splits with the `csv` crate, which this crate
//! does not depend on; so here its seeds are checked record by record from the records they were
//! written from (see `csv_seeds`), and files that are not seeds are listed, not replayed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tiermesh_crypto::SigningKey;
use tiermesh_federation::grant::{Grant, GrantLink, SignedLink, GRANT_BYTES_MAX};
use tiermesh_federation::query::{IN_LIST_VALUES_MAX, SQL_BYTES_MAX};
use tiermesh_federation::region::RegionCode;
use tiermesh_federation::schema::Table;
use tiermesh_federation::standard::id_number::{check_char, check_value};

#[path = "../../fuzz/checks/csv_row.rs"]
mod csv_row;
#[path = "../../fuzz/checks/grant_decode.rs"]
mod grant_decode;
#[path = "../../fuzz/checks/sql_plan.rs"]
mod sql_plan;

/// How long one folder may replay before the rest of its files are skipped (and said so), so
/// that a corpus grown by long fuzzing runs cannot make `cargo test` slow.
const REPLAY_SECONDS_MAX: u64 = 10;

// ---- corpus folders ------------------------------------------------------------------------------

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Asserts that every seed is committed as written here; with `UPDATE_EXPECT` set, writes them.
fn check_seeds_current(target: &str, seeds: &[(String, Vec<u8>)]) {
    let dir = corpus_dir(target);
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    for (name, bytes) in seeds {
        let path = dir.join(name);
        if update {
            std::fs::create_dir_all(&dir).expect("create corpus dir");
            std::fs::write(&path, bytes).expect("write seed");
        }
        let stored = std::fs::read(&path).unwrap_or_default();
        assert!(
            stored == *bytes,
            "{} is missing or stale; run `UPDATE_EXPECT=1 cargo test -p tiermesh-federation --test \
             fuzz_corpus` and commit the corpus",
            path.display()
        );
    }
}

/// The files of a corpus folder, sorted by name.
fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

/// Runs `check` on every file of the folder, in name order, for at most `REPLAY_SECONDS_MAX`.
fn replay(target: &str, mut check: impl FnMut(&[u8])) {
    let files = corpus_files(target);
    let deadline = Instant::now() + Duration::from_secs(REPLAY_SECONDS_MAX);
    for (index, path) in files.iter().enumerate() {
        if Instant::now() > deadline {
            eprintln!(
                "{target}: replayed {index} of {} corpus files in {REPLAY_SECONDS_MAX} s; skipped \
                 the rest (from {})",
                files.len(),
                path.display()
            );
            return;
        }
        let bytes =
            std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        eprintln!("{target}: {}", file_name(path));
        check(&bytes);
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

// ---- grant_decode ---------------------------------------------------------------------------------

const NOW_SECONDS: u64 = 1_782_777_600;
const DAY_SECONDS: u64 = 86_400;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed(&[seed; 32]).expect("a fixed seed makes a key")
}

fn region(text: &str) -> RegionCode {
    text.parse().expect("a fixed valid region code")
}

fn names(columns: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = columns.iter().map(|name| name.to_string()).collect();
    names.sort();
    names
}

/// A link to `audience` over province 52 and both tables; `issue` and `delegate` fill in the
/// issuer and parent.
fn link(audience: &SigningKey, id: u8, depth: u8) -> GrantLink {
    GrantLink {
        id: [id; 16],
        parent: [0; 32],
        issuer: audience.public_key(),
        audience: audience.public_key(),
        scope: vec![region("520000000000")],
        tables: vec![Table::Households, Table::Persons],
        dimensions: names(&["region_code", "cause", "status", "gender", "birth_date"]),
        measures: names(&["income_per_capita", "members"]),
        min_cell: 5,
        not_before: NOW_SECONDS - 10 * DAY_SECONDS,
        expires: NOW_SECONDS + 10 * DAY_SECONDS,
        depth,
    }
}

/// A one-link grant signed as it stands, for shapes `issue` would normalise away.
fn signed_as_is(link: GrantLink) -> Vec<u8> {
    Grant {
        links: vec![SignedLink::sign(&key(1), link)],
    }
    .encode()
}

/// `bytes` with the first occurrence of `find` replaced by `replace` (of any length).
fn patched(bytes: &[u8], find: &[u8], replace: &[u8]) -> Vec<u8> {
    let at = bytes
        .windows(find.len())
        .position(|window| window == find)
        .expect("the pattern occurs in the encoding");
    [&bytes[..at], replace, &bytes[at + find.len()..]].concat()
}

fn grant_seeds() -> Vec<(String, Vec<u8>)> {
    let officer = key(1);
    let root = Grant::issue(&officer, link(&key(2), 0xa0, 7));
    let mut chain = root.clone();
    let mut chain_3 = Vec::new();
    for step in 2..=8u8 {
        let mut child = link(&key(step + 1), 0xa0 + step, 8 - step);
        child.scope = vec![region("520102000000")];
        child.dimensions = names(&["region_code", "cause"]);
        child.min_cell = 5 + u32::from(step);
        chain = chain
            .delegate(&key(step), child)
            .expect("each child narrows its parent");
        if chain.links.len() == 3 {
            chain_3 = chain.encode();
        }
    }
    let chain_8 = chain.encode();
    let mut over_long = chain.clone();
    over_long
        .links
        .push(SignedLink::sign(&key(9), link(&key(10), 0xff, 0)));
    let root_bytes = root.encode();
    let mut signature_flipped = root_bytes.clone();
    if let Some(last) = signature_flipped.last_mut() {
        *last ^= 0x01;
    }
    let mut hostile_links = root_bytes.clone();
    hostile_links[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let region_value = 520_000_000_000u64.to_le_bytes();
    let dimension = b"region_code";
    let dimension_length = (dimension.len() as u64).to_le_bytes();
    let mut unsorted = link(&key(2), 0xa1, 1);
    unsorted.scope = vec![region("530000000000"), region("520000000000")];
    let mut unknown_column = link(&key(2), 0xa2, 1);
    unknown_column.measures = names(&["no_such_column"]);
    let mut empty_window = link(&key(2), 0xa3, 1);
    empty_window.expires = empty_window.not_before;
    let mut wide_scope = link(&key(2), 0xa4, 1);
    wide_scope.scope = (1..=257u64)
        .map(|village| {
            RegionCode::from_u64(520_102_001_000 + village).expect("a village of 520102001")
        })
        .collect();
    let mut no_dimensions = link(&key(2), 0xa5, 0);
    no_dimensions.dimensions.clear();
    no_dimensions.measures.clear();
    let long_signature = Grant {
        links: vec![SignedLink {
            link: link(&key(2), 0xa6, 0),
            signature: vec![0x5a; 1000],
        }],
    }
    .encode();
    vec![
        ("root".to_string(), root_bytes.clone()),
        ("chain-3".to_string(), chain_3),
        ("chain-8".to_string(), chain_8),
        ("chain-9-too-long".to_string(), over_long.encode()),
        ("no-links".to_string(), Grant { links: Vec::new() }.encode()),
        ("empty".to_string(), Vec::new()),
        (
            "truncated-half".to_string(),
            root_bytes[..root_bytes.len() / 2].to_vec(),
        ),
        (
            "truncated-last-byte".to_string(),
            root_bytes[..root_bytes.len() - 1].to_vec(),
        ),
        (
            "trailing-byte".to_string(),
            [root_bytes.as_slice(), &[0]].concat(),
        ),
        ("signature-flipped".to_string(), signature_flipped),
        ("signature-long".to_string(), long_signature),
        ("hostile-link-count".to_string(), hostile_links),
        (
            "hostile-string-length".to_string(),
            patched(
                &root_bytes,
                &[dimension_length.as_slice(), dimension].concat(),
                &[(u64::MAX - 7).to_le_bytes().as_slice(), dimension].concat(),
            ),
        ),
        (
            "invalid-utf8-column".to_string(),
            patched(&root_bytes, b"cause", b"\xffause"),
        ),
        (
            "bad-region".to_string(),
            patched(&root_bytes, &region_value, &u64::MAX.to_le_bytes()),
        ),
        (
            "unknown-table".to_string(),
            patched(
                &root_bytes,
                &[
                    1u64.to_le_bytes().as_slice(),
                    &region_value,
                    &2u64.to_le_bytes(),
                ]
                .concat(),
                &[
                    1u64.to_le_bytes().as_slice(),
                    &region_value,
                    &1u64.to_le_bytes(),
                    &[9, 0, 0, 0],
                ]
                .concat(),
            ),
        ),
        ("unsorted-scope".to_string(), signed_as_is(unsorted)),
        ("unknown-column".to_string(), signed_as_is(unknown_column)),
        ("empty-window".to_string(), signed_as_is(empty_window)),
        ("scope-257-regions".to_string(), signed_as_is(wide_scope)),
        ("count-only".to_string(), signed_as_is(no_dimensions)),
        ("too-large".to_string(), vec![0; GRANT_BYTES_MAX + 1]),
    ]
}

/// The seeds of `fuzz/corpus/grant_decode` are current; every file replays through the target's
/// property.
#[test]
fn grant_decode_corpus_is_current_and_replays() {
    let seeds = grant_seeds();
    check_seeds_current("grant_decode", &seeds);
    for (name, bytes) in &seeds {
        let accepted = Grant::decode(bytes).is_ok();
        let expected = matches!(
            name.as_str(),
            "root" | "chain-3" | "chain-8" | "signature-flipped" | "signature-long" | "count-only"
        );
        assert_eq!(
            accepted, expected,
            "seed {name}: decode accepted it: {accepted}"
        );
    }
    replay("grant_decode", grant_decode::check);
}

// ---- sql_plan -------------------------------------------------------------------------------------

fn sql_seeds() -> Vec<(String, Vec<u8>)> {
    let text = |name: &str, sql: String| (name.to_string(), sql.into_bytes());
    let count_where =
        |condition: String| format!("SELECT COUNT(*) FROM households WHERE {condition}");
    let in_list = |values: usize| {
        let list: Vec<String> = (0..values)
            .map(|value| (value % 20 + 1).to_string())
            .collect();
        count_where(format!("members IN ({})", list.join(",")))
    };
    let repeated_or = {
        let term = "members = 1 OR ";
        let terms = (SQL_BYTES_MAX - 100) / term.len();
        count_where(format!("{}members = 2", term.repeat(terms)))
    };
    let mut too_long = count_where("members > 1".to_string());
    too_long.push_str(&" ".repeat(SQL_BYTES_MAX + 1 - too_long.len()));
    vec![
        text(
            "every-function",
            "SELECT province(region_code) AS province, prefecture(region_code), \
             county(region_code), township(region_code), substr(cadre_id, 1, 2) AS team, \
             COUNT(*), COUNT(exit_year), SUM(members), AVG(income_per_capita), \
             MIN(cause), MAX(status), MEDIAN(income_per_capita) \
             FROM households GROUP BY 1, 2, 3, 4, team \
             HAVING COUNT(*) > 0 ORDER BY 6 DESC NULLS FIRST, province LIMIT 10"
                .to_string(),
        ),
        text(
            "persons-join-ages",
            "SELECT age_band(birth_date, 10) AS band, gender, status, COUNT(*), \
             MEDIAN(age(birth_date)), MIN(age(birth_date)) \
             FROM persons JOIN households USING (household_id) \
             WHERE in_school OR NOT employed GROUP BY band, gender, status \
             ORDER BY band ASC NULLS LAST"
                .to_string(),
        ),
        text(
            "persons-join-on",
            "SELECT relation, COUNT(*) FROM persons JOIN households \
             ON persons.household_id = households.household_id GROUP BY relation"
                .to_string(),
        ),
        text(
            "every-condition",
            count_where(
                "cause IN ('illness', 'water') AND status NOT IN ('poor') \
                 AND exit_year BETWEEN 2014 AND 2030 AND members NOT BETWEEN 7 AND 9 \
                 AND region_code LIKE '5201%' AND household_id NOT LIKE '5301%' \
                 AND relocation_site IS NOT NULL AND exit_year IS NULL AND housing_safe \
                 AND NOT (income_per_capita < 3000.5) AND region_code <> '520102001201' \
                 AND household_id >= 5201020012010001 AND members <= 20"
                    .to_string(),
            ),
        ),
        text(
            "group-by-substr-code",
            "SELECT substr(household_id, 1, 6) AS county, substr(region_code, 5, 1000), \
             COUNT(*) FROM households GROUP BY 1, 2 ORDER BY county DESC"
                .to_string(),
        ),
        text(
            "parentheses-5000",
            count_where(format!(
                "{}members > 1{}",
                "(".repeat(5000),
                ")".repeat(5000)
            )),
        ),
        text(
            "not-3000",
            count_where(format!("{}housing_safe", "NOT ".repeat(3000))),
        ),
        text("or-chain-to-the-limit", repeated_or),
        // Not deeper: sqlparser 0.59 takes time exponential in the depth of nested `substr(`
        // calls (about 20 levels take a second in a debug build); see fuzz/README.md.
        text(
            "substr-nested-8",
            format!(
                "SELECT {}region_code{}, COUNT(*) FROM households GROUP BY 1",
                "substr(".repeat(8),
                ", 1, 2)".repeat(8)
            ),
        ),
        text(
            "functions-nested-200",
            count_where(format!(
                "members > {}1{}",
                "abs(".repeat(200),
                ")".repeat(200)
            )),
        ),
        text(
            "subqueries-nested-100",
            format!(
                "SELECT COUNT(*) FROM {}households{}",
                "(SELECT * FROM ".repeat(100),
                ")".repeat(100)
            ),
        ),
        text("in-list-at-max", in_list(IN_LIST_VALUES_MAX)),
        text("in-list-over-max", in_list(IN_LIST_VALUES_MAX + 1)),
        text("too-long", too_long),
        text("empty", String::new()),
        text("select-only", "SELECT".to_string()),
        text(
            "unterminated-string",
            count_where("cause = 'illness".to_string()),
        ),
        text(
            "two-statements",
            "SELECT COUNT(*) FROM households; SELECT COUNT(*) FROM persons".to_string(),
        ),
        text("delete", "DELETE FROM households".to_string()),
        text(
            "number-19-digits",
            count_where("members > 1234567890123456789".to_string()),
        ),
        text(
            "limit-past-u64",
            "SELECT COUNT(*) FROM households LIMIT 18446744073709551616".to_string(),
        ),
        text(
            "limit-zero",
            "SELECT cause, COUNT(*) FROM households GROUP BY cause LIMIT 0".to_string(),
        ),
        text(
            "age-band-zero",
            "SELECT age_band(birth_date, 0), COUNT(*) FROM persons GROUP BY 1".to_string(),
        ),
        text(
            "substr-huge",
            "SELECT substr(cadre_id, 4294967295, 4294967295), COUNT(*) FROM households GROUP BY 1"
                .to_string(),
        ),
        text(
            "personal-column",
            "SELECT head_name, COUNT(*) FROM households GROUP BY head_name".to_string(),
        ),
        text(
            "unknown-enum-name",
            count_where("cause = 'lazy'".to_string()),
        ),
        text(
            "unicode-identifiers",
            "SELECT 户主, COUNT(*) FROM \"households\" GROUP BY 1 -- 注释".to_string(),
        ),
        text(
            "comments-and-newlines",
            "/* a */ SELECT\r\n COUNT(*) -- b\n FROM\thouseholds\n".to_string(),
        ),
        (
            "invalid-utf8".to_string(),
            b"SELECT COUNT(*) FROM households WHERE cadre_id = '\xff\xfe\xc3'".to_vec(),
        ),
        (
            "nul-bytes".to_string(),
            b"SELECT COUNT(*)\0 FROM households WHERE cadre_id = '\0'".to_vec(),
        ),
    ]
}

/// The seeds of `fuzz/corpus/sql_plan` are current; every file replays through the target's
/// property.
#[test]
fn sql_plan_corpus_is_current_and_replays() {
    let seeds = sql_seeds();
    check_seeds_current("sql_plan", &seeds);
    let planned = |bytes: &[u8]| {
        let sql = String::from_utf8_lossy(bytes);
        tiermesh_federation::query::plan(&sql, sql_plan::as_of()).is_ok()
    };
    for name in [
        "every-function",
        "persons-join-ages",
        "every-condition",
        "in-list-at-max",
    ] {
        let (_, bytes) = seeds
            .iter()
            .find(|(seed, _)| seed == name)
            .expect("a named seed");
        assert!(
            planned(bytes),
            "seed {name} no longer plans; it should reach the executor"
        );
    }
    let image = sql_plan::image();
    replay("sql_plan", |bytes| sql_plan::check(bytes, &image));
}

// ---- csv_row --------------------------------------------------------------------------------------

/// A csv_row seed: records written as CSV after the table's selector byte, or raw bytes for
/// inputs no list of records can express (broken quoting, the empty input).
enum CsvSeed {
    Records {
        table: Table,
        records: Vec<Vec<Vec<u8>>>,
        line_end: &'static str,
    },
    Raw(Vec<u8>),
}

impl CsvSeed {
    fn bytes(&self) -> Vec<u8> {
        match self {
            CsvSeed::Raw(bytes) => bytes.clone(),
            CsvSeed::Records {
                table,
                records,
                line_end,
            } => {
                let mut out = vec![match table {
                    Table::Persons => csv_row::PERSONS_SELECTOR,
                    Table::Households => b'h',
                }];
                for record in records {
                    out.extend_from_slice(line_end.as_bytes());
                    for (index, cell) in record.iter().enumerate() {
                        if index > 0 {
                            out.push(b',');
                        }
                        write_cell(&mut out, cell, record.len() == 1);
                    }
                }
                out.extend_from_slice(line_end.as_bytes());
                out
            }
        }
    }
}

/// A cell as CSV: quoted when it holds a delimiter, a quote or a line end, or when it is the only
/// cell of its record and empty (an empty line is no record).
fn write_cell(out: &mut Vec<u8>, cell: &[u8], alone: bool) {
    let quote = cell
        .iter()
        .any(|byte| matches!(byte, b',' | b'"' | b'\n' | b'\r'))
        || (alone && cell.is_empty());
    if !quote {
        out.extend_from_slice(cell);
        return;
    }
    out.push(b'"');
    for byte in cell {
        if *byte == b'"' {
            out.push(b'"');
        }
        out.push(*byte);
    }
    out.push(b'"');
}

/// A valid ID number of county 520102, born `birth` (`YYYYMMDD`), with a 3-digit sequence.
fn id_number(birth: &str, sequence: &str) -> String {
    let text = format!("520102{birth}{sequence}");
    let body: [u8; 17] = text.as_bytes().try_into().expect("17 digits");
    format!("{text}{}", check_char(check_value(&body)))
}

/// An ID number whose check character is `X`.
fn id_number_with_x() -> String {
    (0..1000)
        .map(|sequence| id_number("19800101", &format!("{sequence:03}")))
        .find(|id| id.ends_with('X'))
        .expect("one sequence in ten has check character X")
}

type Cells = Vec<(&'static str, String)>;

fn valid_household() -> Cells {
    vec![
        ("household_id", "5201020012010001".into()),
        ("region_code", "520102001201".into()),
        ("head_id", id_number("19800101", "001")),
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

fn valid_person() -> Cells {
    vec![
        ("person_id", id_number("20130505", "002")),
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

/// `base` with `overrides` (column, value), as a record in the standard's column order.
fn record(base: &Cells, overrides: &[(&str, &str)]) -> Vec<Vec<u8>> {
    base.iter()
        .map(|(column, value)| {
            let value = overrides
                .iter()
                .find(|(name, _)| name == column)
                .map_or(value.as_str(), |(_, value)| *value);
            value.as_bytes().to_vec()
        })
        .collect()
}

/// Several records of `table`, each the valid row with one set of overrides.
fn variations(table: Table, cases: &[&[(&str, &str)]]) -> CsvSeed {
    let base = match table {
        Table::Households => valid_household(),
        Table::Persons => valid_person(),
    };
    CsvSeed::Records {
        table,
        records: cases
            .iter()
            .map(|overrides| record(&base, overrides))
            .collect(),
        line_end: "\n",
    }
}

fn csv_seeds() -> Vec<(String, CsvSeed)> {
    use Table::{Households, Persons};
    let with_x = id_number_with_x();
    let hundred_kb_name = "张".repeat(34_000);
    let hundred_kb_site = "a".repeat(100_000);
    let hundred_kb_digits = "9".repeat(100_000);
    let head = valid_household();
    let mut short = record(&head, &[]);
    short.pop();
    let mut long = record(&head, &[]);
    long.extend([b"extra".to_vec(), Vec::new()]);
    let mut invalid_utf8 = record(&head, &[]);
    invalid_utf8[3] = vec![0xe5, 0xbc];
    invalid_utf8[13] = vec![0xff, b'G', b'Z'];
    let mut bom = record(&head, &[]);
    bom[0] = [b"\xef\xbb\xbf".as_slice(), &bom[0]].concat();
    let seeds = vec![
        (
            "households-valid",
            variations(
                Households,
                &[
                    &[],
                    &[
                        ("household_id", "5201020012010002"),
                        ("head_id", &id_number("19750505", "003")),
                        ("status", "exited"),
                        ("exit_year", "2020"),
                        ("relocated", "true"),
                        ("relocation_site", "新区A"),
                        ("phone", ""),
                        ("income_per_capita", "5200"),
                    ],
                    &[("head_id", &with_x), ("income_per_capita", "0.5")],
                ],
            ),
        ),
        (
            "households-warnings",
            variations(
                Households,
                &[&[
                    ("status", "exited"),
                    ("exit_year", "2021"),
                    ("income_per_capita", "3999.99"),
                    ("water_safe", "false"),
                ]],
            ),
        ),
        (
            "households-every-cell-wrong",
            variations(
                Households,
                &[&[
                    ("household_id", "520102001201000X"),
                    ("region_code", "999999999999"),
                    ("head_id", "123"),
                    ("head_name", "a\u{1}b"),
                    ("members", "0"),
                    ("cause", "Illness"),
                    ("status", "sleeping"),
                    ("registered_year", "2013"),
                    ("exit_year", "2012"),
                    ("income_per_capita", "-1"),
                    ("housing_safe", "yes"),
                    ("water_safe", "TRUE"),
                    ("medical_insured", "1"),
                    ("cadre_id", "0123456789012345678901234567890123"),
                    ("industry", "mining"),
                    ("relocated", "maybe"),
                    ("relocation_site", "site"),
                    ("phone", &"1".repeat(201)),
                ]],
            ),
        ),
        (
            "households-regions",
            variations(
                Households,
                &[
                    &[("region_code", "520103001001")],
                    &[
                        ("household_id", "5201030010010001"),
                        ("region_code", "520103001001"),
                    ],
                    &[
                        ("household_id", "5201020010000001"),
                        ("region_code", "520102001000"),
                    ],
                    &[
                        ("household_id", "0000000000000000"),
                        ("region_code", "000000000000"),
                    ],
                ],
            ),
        ),
        (
            "households-numbers",
            variations(
                Households,
                &[
                    &[("members", "007")],
                    &[("members", "20")],
                    &[("members", "21")],
                    &[("members", "+4")],
                    &[("members", " 4")],
                    &[("members", "4.0")],
                    &[("members", "18446744073709551616")],
                    &[("income_per_capita", "99999999999999999999999.99")],
                    &[("income_per_capita", "1000000.00")],
                    &[("income_per_capita", "1000000.01")],
                    &[("income_per_capita", ".5")],
                    &[("income_per_capita", "5.")],
                    &[("income_per_capita", "1.234")],
                    &[("income_per_capita", "-0")],
                    &[("registered_year", "2026")],
                    &[("registered_year", "2027")],
                    &[("registered_year", "99999999999999999999")],
                    &[
                        ("status", "exited"),
                        ("exit_year", "2015"),
                        ("registered_year", "2016"),
                    ],
                    &[("status", "exited")],
                    &[("relocated", "true")],
                ],
            ),
        ),
        (
            "households-id-numbers",
            variations(
                Households,
                &[
                    &[("head_id", "520102198001010010")],
                    &[("head_id", &id_number("19800230", "001"))],
                    &[("head_id", &id_number("20270101", "001"))],
                    &[("head_id", &with_x.to_lowercase())],
                    &[("head_id", "52010219800101001")],
                    &[("head_id", "5201021980010100111")],
                    &[("head_id", "５２０１０２１９８００１０１００１Ｘ")],
                ],
            ),
        ),
        (
            "households-100kb-fields",
            variations(
                Households,
                &[
                    &[("head_name", &hundred_kb_name)],
                    &[("relocated", "true"), ("relocation_site", &hundred_kb_site)],
                    &[
                        ("members", &hundred_kb_digits),
                        ("household_id", &hundred_kb_digits),
                    ],
                ],
            ),
        ),
        (
            "households-quoted-newlines",
            variations(
                Households,
                &[&[
                    ("head_name", "张\n三"),
                    ("cadre_id", "GZ,\"0001\""),
                    ("relocated", "true"),
                    ("relocation_site", "line one\r\nline two"),
                    ("phone", "\"\""),
                ]],
            ),
        ),
        (
            "households-wrong-column-counts",
            CsvSeed::Records {
                table: Households,
                records: vec![
                    short,
                    long,
                    vec![Vec::new()],
                    vec![b"5201020012010001".to_vec()],
                    vec![Vec::new(); 40],
                ],
                line_end: "\n",
            },
        ),
        (
            "households-invalid-utf8",
            CsvSeed::Records {
                table: Households,
                records: vec![invalid_utf8],
                line_end: "\n",
            },
        ),
        (
            "households-bom",
            CsvSeed::Records {
                table: Households,
                records: vec![bom],
                line_end: "\n",
            },
        ),
        (
            "households-crlf",
            CsvSeed::Records {
                table: Households,
                records: vec![
                    record(&head, &[]),
                    record(&head, &[("household_id", "5201020012010003")]),
                ],
                line_end: "\r\n",
            },
        ),
        (
            "persons-valid",
            variations(
                Persons,
                &[
                    &[],
                    &[
                        ("person_id", &id_number("19800101", "001")),
                        ("relation", "head"),
                        ("gender", "M"),
                        ("birth_date", "1980-01-01"),
                        ("education", "junior"),
                        ("labor", "full"),
                        ("in_school", "false"),
                        ("employed", "true"),
                    ],
                    &[
                        ("person_id", &id_number("20240229", "004")),
                        ("birth_date", "2024-02-29"),
                        ("in_school", "false"),
                    ],
                ],
            ),
        ),
        (
            "persons-warnings",
            variations(
                Persons,
                &[
                    &[("in_school", "false")],
                    &[("relation", "head"), ("in_school", "false")],
                ],
            ),
        ),
        (
            "persons-every-cell-wrong",
            variations(
                Persons,
                &[
                    &[
                        ("person_id", "52010220130505002Y"),
                        ("household_id", "52010200120100"),
                        ("relation", "cousin"),
                        ("gender", "f"),
                        ("birth_date", "2013-5-5"),
                        ("education", "phd"),
                        ("health", "fine"),
                        ("labor", "some"),
                        ("in_school", "True"),
                        ("employed", ""),
                    ],
                    &[("gender", "M"), ("birth_date", "2013-05-06")],
                    &[("birth_date", "2023-02-29")],
                    &[("birth_date", "0000-01-01")],
                    &[("birth_date", "9999-12-31")],
                    &[("birth_date", "2013-05-05T00:00")],
                ],
            ),
        ),
        ("empty", CsvSeed::Raw(Vec::new())),
        ("selector-only", CsvSeed::Raw(b"h".to_vec())),
        ("persons-selector-only", CsvSeed::Raw(b"p".to_vec())),
        ("blank-lines", CsvSeed::Raw(b"h\n\n\r\n\r\r\n".to_vec())),
        (
            "unterminated-quote",
            CsvSeed::Raw(b"h\n5201020012010001,\"520102001201\n,\n".to_vec()),
        ),
        (
            "quote-inside-field",
            CsvSeed::Raw(b"p\n52010220130505\"002\"X,\"5201020012010001\"tail,\"\"\"\n".to_vec()),
        ),
        ("nul-bytes", CsvSeed::Raw(b"h\0\n\0,\0\0,\"\0\"\n".to_vec())),
    ];
    seeds
        .into_iter()
        .map(|(name, seed)| (name.to_string(), seed))
        .collect()
}

/// The seeds of `fuzz/corpus/csv_row` are current, and the records each was written from pass the
/// target's per-record property. Replaying every file through the target's CSV step needs the
/// `csv` crate, which is not a dependency here.
#[test]
fn csv_row_seeds_are_current_and_their_records_pass() {
    let seeds = csv_seeds();
    let bytes: Vec<(String, Vec<u8>)> = seeds
        .iter()
        .map(|(name, seed)| (name.clone(), seed.bytes()))
        .collect();
    check_seeds_current("csv_row", &bytes);
    let context = csv_row::context();
    let deadline = Instant::now() + Duration::from_secs(REPLAY_SECONDS_MAX);
    for (name, seed) in &seeds {
        assert!(
            Instant::now() <= deadline,
            "csv_row seeds took over {REPLAY_SECONDS_MAX} s"
        );
        if let CsvSeed::Records { table, records, .. } = seed {
            assert_eq!(
                csv_row::table_of(seed.bytes()[0]),
                *table,
                "seed {name}: selector"
            );
            let map = csv_row::header(*table);
            for record in records {
                let cells: Vec<&[u8]> = record.iter().map(Vec::as_slice).collect();
                eprintln!("csv_row: {name}");
                csv_row::check_record(&map, &cells, &context);
            }
        }
    }
    let others: Vec<String> = corpus_files("csv_row")
        .iter()
        .map(|path| file_name(path))
        .filter(|file| !seeds.iter().any(|(name, _)| name == file))
        .collect();
    if !others.is_empty() {
        eprintln!(
            "csv_row: {} corpus files are not seeds and are replayed only by `cargo fuzz`: {}",
            others.len(),
            others.join(", ")
        );
    }
}
