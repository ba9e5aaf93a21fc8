//! The `tiermesh` binary against real node directories: init, import round trips, malformed
//! input, reports that can be corrected and imported again, removal, and query output.

use std::path::{Path, PathBuf};

use tiermesh_federation::standard::id_number::{check_char, check_value};

mod support;
use support::{path, text, tiermesh};

const COUNTY: &str = "520102000000";
const AS_OF: &str = "2026-06-30";

fn init(dir: &Path) {
    let output = tiermesh(&[
        "init",
        "--dir",
        path(dir),
        "--region",
        COUNTY,
        "--name",
        "test county",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
}

/// A valid ID number born on `birth` (YYYYMMDD) with sequence `sequence` (odd = male).
fn id_number(birth: &str, sequence: u32) -> String {
    let body = format!("520102{birth}{sequence:03}");
    let bytes: [u8; 17] = body.as_bytes().try_into().expect("17 digits");
    format!("{body}{}", check_char(check_value(&bytes)))
}

const HOUSEHOLD_HEADER: &str = "household_id,region_code,head_id,head_name,members,cause,status,registered_year,exit_year,income_per_capita,housing_safe,water_safe,medical_insured,cadre_id,industry,relocated,relocation_site,phone";
const PERSON_HEADER: &str =
    "person_id,household_id,relation,gender,birth_date,education,health,labor,in_school,employed";

fn household_row(serial: u32, head: &str, members: u32) -> String {
    format!(
        "520102001201{serial:04},520102001201,{head},张三,{members},illness,poor,2016,,3500.50,true,true,true,C001,planting,false,,"
    )
}

fn head_row(serial: u32, head: &str, birth_iso: &str, gender: &str) -> String {
    format!(
        "{head},520102001201{serial:04},head,{gender},{birth_iso},primary,healthy,full,false,true"
    )
}

fn write(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, lines.join("\n") + "\n").expect("write csv");
    file
}

fn query_json(dir: &Path, sql: &str) -> serde_json::Value {
    let output = tiermesh(&[
        "query",
        "--dir",
        path(dir),
        "--format",
        "json",
        "--as-of",
        AS_OF,
        sql,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    serde_json::from_slice(&output.stdout).expect("json")
}

fn count(dir: &Path, table: &str) -> i64 {
    let document = query_json(dir, &format!("SELECT COUNT(*) FROM {table}"));
    document["rows"][0][0].as_i64().expect("count")
}

fn read_rows(file: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_path(file)
        .expect("open report");
    reader
        .byte_records()
        .map(|record| {
            record
                .expect("record")
                .iter()
                .map(|cell| String::from_utf8_lossy(cell).into_owned())
                .collect()
        })
        .collect()
}

#[test]
fn init_writes_a_private_key_and_refuses_to_overwrite() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = dir.path().join("node");
    init(&node);
    let mode = std::fs::metadata(node.join("node.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let config = std::fs::read_to_string(node.join("node.toml")).expect("config");
    assert!(config.contains("region = \"520102000000\""), "{config}");
    assert!(config.contains("tier = \"county\""), "{config}");
    let again = tiermesh(&["init", "--dir", path(&node), "--region", COUNTY]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(
        text(&again).contains("refusing to overwrite"),
        "{}",
        text(&again)
    );
    let bad = tiermesh(&[
        "init",
        "--dir",
        path(&dir.path().join("x")),
        "--region",
        "52010200",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("not a region code"), "{}", text(&bad));
}

#[test]
fn generated_data_round_trips_with_exact_warning_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let node = dir.path().join("node");
    let output = tiermesh(&[
        "gen",
        "--region",
        COUNTY,
        "--households",
        "3000",
        "--seed",
        "7",
        "--out",
        path(&data),
        "--as-of",
        AS_OF,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    init(&node);
    let county = data.join("520102");
    let households = county.join("households.csv");
    let persons = county.join("persons.csv");
    // Persons first on the command line: the importer takes households first anyway.
    let args = [
        "import",
        "--dir",
        path(&node),
        "--quiet",
        "--as-of",
        AS_OF,
        path(&persons),
        path(&households),
    ];
    let output = tiermesh(&args);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let summary = String::from_utf8_lossy(&output.stdout).to_string();
    let household_lines = std::fs::read_to_string(&households)
        .expect("read")
        .lines()
        .count()
        - 1;
    let person_lines = std::fs::read_to_string(&persons)
        .expect("read")
        .lines()
        .count()
        - 1;
    assert!(
        summary.contains(&format!(
            "{} rows: {} stored, 0 rejected",
            household_lines + person_lines,
            household_lines + person_lines
        )),
        "{summary}"
    );
    assert_eq!(count(&node, "households"), household_lines as i64);
    assert_eq!(count(&node, "persons"), person_lines as i64);

    // Warnings are written one per line; their count is the summary's.
    let mut warnings = 0;
    for report in [
        county.join("households.warnings.csv"),
        county.join("persons.warnings.csv"),
    ] {
        if report.exists() {
            warnings += read_rows(&report).len();
        }
    }
    assert!(
        summary.contains(&format!("{warnings} warnings")),
        "{summary}"
    );
    assert!(warnings > 0, "generated data carries some warning cases");

    // Re-importing is idempotent.
    let again = tiermesh(&args);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(count(&node, "households"), household_lines as i64);
    assert_eq!(count(&node, "persons"), person_lines as i64);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout)
            .split("; data version")
            .next(),
        summary.split("; data version").next()
    );
}

#[test]
fn malformed_rows_are_reported_with_line_and_rule_and_good_rows_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = dir.path().join("node");
    init(&node);
    let heads: Vec<String> = (0..12).map(|n| id_number("19800101", 11 + 2 * n)).collect();
    let long_name = "名".repeat(10_000);
    let mut households = vec![format!("\u{feff}{HOUSEHOLD_HEADER}")];
    households.push(household_row(1, &heads[0], 1)); // line 2: good
    households.push(household_row(2, &heads[1], 1).replace(",C001,", ",=SUM(A1),")); // line 3: formula kept
    households.push(household_row(3, &heads[2], 1) + ",extra"); // line 4: cell count
    households.push(household_row(4, &heads[3], 1).replace("illness", "Illness")); // line 5: enum
    households.push(household_row(5, &heads[4], 1).replace("张三", &long_name)); // line 6: 10 kB field
    households.push(household_row(6, &heads[5], 1).replace("张三", "\"张\n三\"")); // lines 7-8: quoted newline
    households.push(household_row(7, &heads[6], 1).replace("520102001201", "520103001201")); // line 9
    households.push(household_row(8, &heads[7], 1).replace("3500.50", "1,234.00")); // line 10: quoted? no: shifts -> shape
    households.push(household_row(9, &heads[8], 1)); // line 11: good
    households.push(household_row(9, &heads[8], 1)); // line 12: duplicate
    households.push(household_row(10, &heads[9], 1).replace(",C001,", ",C0\"01,")); // line 13: quote in unquoted field
    let file = write(dir.path(), "households.csv", &households);
    // CRLF line endings and a non-UTF-8 byte in one row.
    let mut bytes = std::fs::read(&file)
        .expect("read")
        .iter()
        .fold(Vec::new(), |mut out, byte| {
            if *byte == b'\n' {
                out.push(b'\r');
            }
            out.push(*byte);
            out
        });
    let bad_utf8 = household_row(11, &heads[10], 1).replace("张三", "\u{1}");
    let mut line = bad_utf8.into_bytes();
    let position = line.iter().position(|b| *b == 1).expect("marker");
    line[position] = 0xff;
    bytes.extend_from_slice(&line); // line 14: invalid UTF-8, no final newline
    std::fs::write(&file, bytes).expect("write");

    let output = tiermesh(&[
        "import",
        "--dir",
        path(&node),
        "--quiet",
        "--as-of",
        AS_OF,
        path(&file),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let rejects = read_rows(&dir.path().join("households.rejects.csv"));
    let found: Vec<(String, String, String)> = rejects
        .iter()
        .map(|row| (row[0].clone(), row[1].clone(), row[3].clone()))
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("4", "", "shape"),
        ("5", "cause", "enum"),
        ("6", "head_name", "text-length"),
        ("7", "head_name", "control-character"),
        ("9", "region_code | household_id", "outside-jurisdiction"),
        ("10", "", "shape"),
        ("12", "household_id", "duplicate"),
        ("14", "", "encoding"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    let lines: Vec<&str> = found.iter().map(|row| row.0.as_str()).collect();
    assert_eq!(
        lines,
        ["4", "5", "6", "7", "9", "10", "12", "14"],
        "{found:?}"
    );
    for ((line, _, rule), (expected_line, _, expected_rule)) in found.iter().zip(&expected) {
        assert_eq!(line, expected_line);
        assert!(
            rule.contains(expected_rule.as_str()),
            "line {line}: rule {rule}, expected {expected_rule}"
        );
    }
    // Good rows, the formula text and the quote-in-field row are stored as written.
    assert_eq!(count(&node, "households"), 4);
    let cadres = query_json(
        &node,
        "SELECT cadre_id, COUNT(*) FROM households GROUP BY cadre_id ORDER BY cadre_id",
    );
    let names: Vec<&str> = cadres["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| row[0].as_str().expect("text"))
        .collect();
    assert_eq!(names, ["=SUM(A1)", "C0\"01", "C001"]);

    // The rejects file, corrected in place, imports again: its report columns are skipped.
    let rejects_path = dir.path().join("households.rejects.csv");
    let original = std::fs::read(&rejects_path).expect("rejects");
    let needle = b",Illness,";
    // The last occurrence is the row's own cell (the first is the report's error_value).
    let at = original
        .windows(needle.len())
        .rposition(|window| window == needle)
        .expect("the rejected cause is in the rejects file");
    let mut corrected = original.clone();
    corrected[at + 1] = b'i';
    let fixed = dir.path().join("fixed.csv");
    std::fs::write(&fixed, corrected).expect("write");
    let output = tiermesh(&[
        "import",
        "--dir",
        path(&node),
        "--quiet",
        "--as-of",
        AS_OF,
        path(&fixed),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let again = std::fs::read(dir.path().join("fixed.rejects.csv")).expect("rejects of the fix");
    assert_eq!(
        count(&node, "households"),
        5,
        "{}",
        String::from_utf8_lossy(&again)
    );
}

#[test]
fn persons_need_their_household_and_the_head_must_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = dir.path().join("node");
    init(&node);
    let head1 = id_number("19800101", 11);
    let head2 = id_number("19810101", 13);
    let child = id_number("20150101", 22);
    let other = id_number("19700101", 31);
    let stranger = id_number("19710101", 33);
    let households = write(
        dir.path(),
        "h.csv",
        &[
            HOUSEHOLD_HEADER.to_string(),
            household_row(1, &head1, 2),
            household_row(2, &head2, 1).replace(",poor,", ",rich,"),
        ],
    );
    let persons = write(
        dir.path(),
        "p.csv",
        &[
            PERSON_HEADER.to_string(),
            head_row(1, &head1, "1980-01-01", "M"),
            format!("{child},5201020012010001,child,F,2015-01-01,primary,healthy,none,false,false"),
            head_row(2, &head2, "1981-01-01", "M"),
            head_row(3, &other, "1970-01-01", "M"),
            head_row(1, &stranger, "1971-01-01", "M"),
        ],
    );
    let output = tiermesh(&[
        "import",
        "--dir",
        path(&node),
        "--quiet",
        "--as-of",
        AS_OF,
        path(&persons),
        path(&households),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let rejects = read_rows(&dir.path().join("p.rejects.csv"));
    let rules: Vec<(&str, &str)> = rejects
        .iter()
        .map(|row| (row[0].as_str(), row[3].as_str()))
        .collect();
    assert_eq!(
        rules,
        [
            ("4", "household-rejected"),
            ("5", "unknown-household"),
            ("6", "head-mismatch")
        ]
    );
    // The child aged 11 out of school is a dropout warning.
    let warnings = read_rows(&dir.path().join("p.warnings.csv"));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0][3], "dropout");
    assert_eq!(count(&node, "persons"), 2);

    // A dry run stores nothing and changes nothing.
    let before = query_json(&node, "SELECT COUNT(*) FROM persons");
    let extra = write(
        dir.path(),
        "extra.csv",
        &[
            PERSON_HEADER.to_string(),
            format!("{other},5201020012010001,parent,M,1970-01-01,none,chronic,none,false,false"),
        ],
    );
    let output = tiermesh(&[
        "import",
        "--dir",
        path(&node),
        "--quiet",
        "--dry-run",
        "--as-of",
        AS_OF,
        path(&extra),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("dry run"),
        "{}",
        text(&output)
    );
    assert_eq!(
        query_json(&node, "SELECT COUNT(*) FROM persons")["rows"],
        before["rows"]
    );
}

/// An import of more files than the process may hold open succeeds: inputs are opened in turn,
/// and each input's reports are closed when its rows have all arrived (and reopened, never
/// rewritten, for the members screen at the end).
#[test]
fn an_import_of_more_files_than_open_files_allowed() {
    const FILES: u32 = 120;
    const OPEN_FILES: u32 = 64;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = dir.path().join("node");
    init(&node);
    let mut files = Vec::new();
    for serial in 1..=FILES {
        let head = id_number("19800101", 2 * serial - 1);
        let child = id_number("20150101", 2 * serial);
        // Exited with unsafe housing below the line: warnings while the file is read. Three
        // members stated, two stored: a members-mismatch filed against it at the end.
        let household = household_row(serial, &head, 3).replace(
            ",poor,2016,,3500.50,true,",
            ",exited,2016,2020,3500.50,false,",
        );
        files.push(write(
            dir.path(),
            &format!("h{serial}.csv"),
            &[HOUSEHOLD_HEADER.to_string(), household],
        ));
        // The child, 11 and out of school, is a dropout warning while the file is read.
        files.push(write(
            dir.path(),
            &format!("p{serial}.csv"),
            &[
                PERSON_HEADER.to_string(),
                head_row(serial, &head, "1980-01-01", "M"),
                format!(
                    "{child},520102001201{serial:04},child,F,2015-01-01,primary,healthy,none,false,false"
                ),
            ],
        ));
    }
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {OPEN_FILES} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_tiermesh"))
        .args(["import", "--dir", path(&node), "--quiet", "--as-of", AS_OF])
        .args(&files);
    let output = command.output().expect("run tiermesh under ulimit");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(count(&node, "households"), i64::from(FILES));
    assert_eq!(count(&node, "persons"), 2 * i64::from(FILES));
    let rules_of = |report: &Path| -> Vec<(String, String)> {
        let header_lines = std::fs::read_to_string(report)
            .expect("warnings report")
            .lines()
            .filter(|line| line.starts_with("error_line,"))
            .count();
        assert_eq!(header_lines, 1, "{}", report.display());
        read_rows(report)
            .into_iter()
            .map(|row| (row[0].clone(), row[3].clone()))
            .collect()
    };
    let pairs = |rules: &[(&str, &str)]| -> Vec<(String, String)> {
        rules
            .iter()
            .map(|(line, rule)| (line.to_string(), rule.to_string()))
            .collect()
    };
    for serial in [1, FILES / 2, FILES] {
        let households = dir.path().join(format!("h{serial}.warnings.csv"));
        assert_eq!(
            rules_of(&households),
            pairs(&[
                ("2", "exit-below-line"),
                ("2", "exit-without-guarantees"),
                ("2", "members-mismatch")
            ]),
            "{}",
            households.display()
        );
        let persons = dir.path().join(format!("p{serial}.warnings.csv"));
        assert_eq!(
            rules_of(&persons),
            pairs(&[("3", "dropout")]),
            "{}",
            persons.display()
        );
    }
}

/// The `members-mismatch` rows of a warnings report: (line, value) pairs.
fn mismatches(report: &Path) -> Vec<(String, String)> {
    if !report.exists() {
        return Vec::new();
    }
    read_rows(report)
        .into_iter()
        .filter(|row| row[3] == "members-mismatch")
        .map(|row| (row[0].clone(), row[2].clone()))
        .collect()
}

#[test]
fn members_mismatch_is_filed_once_per_household_where_its_count_was_decided() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = dir.path().join("node");
    init(&node);
    let head1 = id_number("19800101", 11);
    let head2 = id_number("19810101", 13);
    let head3 = id_number("19820101", 15);
    let child = id_number("20150101", 22);
    let child_of = |household: u32| {
        format!(
            "{child},520102001201{household:04},child,F,2015-01-01,primary,healthy,none,true,false"
        )
    };
    let households = write(
        dir.path(),
        "h1.csv",
        &[
            HOUSEHOLD_HEADER.to_string(),
            household_row(1, &head1, 2),
            household_row(2, &head2, 1),
        ],
    );
    let persons = write(
        dir.path(),
        "p1.csv",
        &[
            PERSON_HEADER.to_string(),
            head_row(1, &head1, "1980-01-01", "M"),
            child_of(1),
            head_row(2, &head2, "1981-01-01", "M"),
        ],
    );
    let import = |files: &[&Path], report_dir: &Path, dry_run: bool| {
        let mut args = vec!["import", "--dir", path(&node), "--quiet", "--as-of", AS_OF];
        args.extend(["--report-dir", path(report_dir)]);
        if dry_run {
            args.push("--dry-run");
        }
        args.extend(files.iter().map(|file| path(file)));
        let output = tiermesh(&args);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    };
    let first = dir.path().join("first");
    import(&[&households, &persons], &first, false);
    assert_eq!(mismatches(&first.join("h1.warnings.csv")), []);
    assert_eq!(mismatches(&first.join("p1.warnings.csv")), []);

    // Household 3 is new and has no persons: filed at its row. Household 1 comes in two files;
    // its last row (members 2) decides, and it loses the child to household 2. Household 2
    // keeps members 1 but gains the child: filed at the persons row that changed it.
    let households = write(
        dir.path(),
        "h2.csv",
        &[
            HOUSEHOLD_HEADER.to_string(),
            household_row(3, &head3, 1),
            household_row(1, &head1, 3),
        ],
    );
    let again = write(
        dir.path(),
        "h3.csv",
        &[HOUSEHOLD_HEADER.to_string(), household_row(1, &head1, 2)],
    );
    let persons = write(
        dir.path(),
        "p2.csv",
        &[PERSON_HEADER.to_string(), child_of(2)],
    );
    let expected = [
        ("h2", vec![("2".to_string(), "1".to_string())]),
        ("h3", vec![("2".to_string(), "2".to_string())]),
        ("p2", vec![("2".to_string(), "1".to_string())]),
    ];
    // A dry run files the same warnings as the import that follows it.
    let dry = dir.path().join("dry");
    import(&[&persons, &households, &again], &dry, true);
    let real = dir.path().join("real");
    import(&[&persons, &households, &again], &real, false);
    for reports in [&dry, &real] {
        for (name, lines) in &expected {
            assert_eq!(
                &mismatches(&reports.join(format!("{name}.warnings.csv"))),
                lines,
                "{name} in {}",
                reports.display()
            );
        }
    }
    let stored = query_json(
        &node,
        "SELECT household_id, COUNT(*) FROM persons GROUP BY household_id ORDER BY household_id",
    );
    assert_eq!(
        stored["rows"],
        serde_json::json!([["5201020012010001", 1], ["5201020012010002", 2]])
    );
}

#[test]
fn removal_is_visible_to_the_next_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = dir.path().join("node");
    init(&node);
    let head1 = id_number("19800101", 11);
    let head2 = id_number("19810101", 13);
    let households = write(
        dir.path(),
        "h.csv",
        &[
            HOUSEHOLD_HEADER.to_string(),
            household_row(1, &head1, 1),
            household_row(2, &head2, 1),
        ],
    );
    let persons = write(
        dir.path(),
        "p.csv",
        &[
            PERSON_HEADER.to_string(),
            head_row(1, &head1, "1980-01-01", "M"),
            head_row(2, &head2, "1981-01-01", "M"),
        ],
    );
    let output = tiermesh(&[
        "import",
        "--dir",
        path(&node),
        "--quiet",
        "--as-of",
        AS_OF,
        path(&households),
        path(&persons),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let before = query_json(&node, "SELECT COUNT(*) FROM persons");
    let output = tiermesh(&[
        "remove",
        "--dir",
        path(&node),
        "--household",
        "5201020012010001",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("removed 1 households and 1 persons"));
    assert_eq!(count(&node, "households"), 1);
    assert_eq!(count(&node, "persons"), 1);
    let after = query_json(&node, "SELECT COUNT(*) FROM persons");
    assert!(after["data_version"].as_u64() > before["data_version"].as_u64());
    let missing = tiermesh(&[
        "remove",
        "--dir",
        path(&node),
        "--household",
        "5201020012010009",
    ]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    let bad = tiermesh(&["remove", "--dir", path(&node), "--household", "12"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
}

#[test]
fn queries_render_three_formats_and_refuse_personal_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = dir.path().join("node");
    init(&node);
    let head = id_number("19800101", 11);
    let households = write(
        dir.path(),
        "h.csv",
        &[HOUSEHOLD_HEADER.to_string(), household_row(1, &head, 1)],
    );
    let output = tiermesh(&["import", "--dir", path(&node), "--quiet", path(&households)]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let sql = "SELECT cause, COUNT(*), SUM(income_per_capita) FROM households GROUP BY cause";
    let json = query_json(&node, sql);
    assert_eq!(json["rows"][0][0], "illness");
    assert_eq!(json["rows"][0][1], 1);
    assert!(json["data_version"]
        .as_u64()
        .is_some_and(|version| version > 0));
    assert_eq!(json["columns"].as_array().map(Vec::len), Some(3));
    let csv = tiermesh(&["query", "--dir", path(&node), "--format", "csv", sql]);
    let csv_text = String::from_utf8_lossy(&csv.stdout).to_string();
    assert_eq!(
        csv_text.lines().nth(1),
        Some("illness,1,3500.50"),
        "{csv_text}"
    );
    let table = tiermesh(&["query", "--dir", path(&node), sql]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("illness"));
    let refused = tiermesh(&[
        "query",
        "--dir",
        path(&node),
        "SELECT head_name, COUNT(*) FROM households GROUP BY head_name",
    ]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let message = text(&refused);
    assert!(
        message.contains("head_name") && message.contains("error: 1:"),
        "{message}"
    );
}

#[test]
fn every_config_parses() {
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut files = Vec::new();
    for folder in [configs.clone(), configs.join("local-mesh")] {
        for entry in std::fs::read_dir(&folder).expect("configs/") {
            files.push(entry.expect("entry").path());
        }
    }
    let mut seen = 0;
    for file in files {
        if file.extension().is_some_and(|ext| ext == "toml") {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::copy(&file, dir.path().join("node.toml")).expect("copy");
            let node = tiermesh::config::NodeDir::open(dir.path());
            assert!(
                node.is_ok(),
                "{}: {:#}",
                file.display(),
                node.err().map(|e| format!("{e:#}")).unwrap_or_default()
            );
            seen += 1;
        }
    }
    assert!(seen >= 7, "configs/ holds the example node configurations");
}
