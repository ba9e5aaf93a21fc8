//! Online import into a running node (`tiermesh import --connect`): an operator's files are
//! stored with the same rules and reports as a local import, the reports come back beside the
//! operator's files, a re-import changes nothing, and keys that are not the node's operators are
//! refused with the reason; rows reported as stored survive SIGKILL.

use std::io::{BufRead, BufReader};

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

mod support;
use support::{free_port, ok, path, public_key_of, text, tiermesh};

const BIN: &str = env!("CARGO_BIN_EXE_tiermesh");
const AS_OF: &str = "2026-06-30";
const COUNTY: &str = "520102000000";
const HOUSEHOLDS: usize = 300;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn households_stored(dir: &Path) -> i64 {
    let answer: Value = serde_json::from_str(&ok(&[
        "query",
        "--dir",
        path(dir),
        "--format",
        "json",
        "SELECT COUNT(*) FROM households",
    ]))
    .expect("json");
    answer["rows"][0][0].as_i64().expect("a count")
}

#[test]
fn operators_import_into_a_running_node_and_others_are_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let officer = root.path().join("officer.key");
    let officer_key = public_key_of(&ok(&["keygen", "--out", path(&officer)]));
    let operator = root.path().join("operator.key");
    let operator_key = public_key_of(&ok(&["keygen", "--out", path(&operator)]));
    let stranger = root.path().join("stranger.key");
    ok(&["keygen", "--out", path(&stranger)]);

    let dir = root.path().join("nanming");
    ok(&["init", "--dir", path(&dir), "--region", COUNTY]);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    ok(&[
        "mesh",
        "create",
        "--dir",
        path(&dir),
        "--officer",
        &officer_key,
        "--addr",
        &addr,
    ]);

    // The operator's files: generated rows, plus one household of another county appended.
    let data = root.path().join("data");
    ok(&[
        "gen",
        "--region",
        COUNTY,
        "--households",
        &HOUSEHOLDS.to_string(),
        "--seed",
        "3",
        "--out",
        path(&data),
        "--as-of",
        AS_OF,
    ]);
    let folder = data.join(&COUNTY[..6]);
    let households = folder.join("households.csv");
    let persons = folder.join("persons.csv");
    let content = std::fs::read_to_string(&households).expect("read");
    let last = content.lines().last().expect("a row").to_string();
    let outsider = last.replacen(",520102", ",530102", 1);
    assert_ne!(outsider, last, "the row names its county: {last}");
    let outsider = outsider.replacen(&last[..16], "5301020000009999", 1);
    std::fs::write(&households, format!("{content}{outsider}\n")).expect("write");

    let mut child = Command::new(BIN)
        .args([
            "run",
            "--dir",
            path(&dir),
            "--listen",
            &addr,
            "--operator",
            &operator_key,
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn node");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read");
    assert!(first.starts_with("listening on"), "{first:?}");
    let mut node = Running(child);

    let import = |key: &Path, extra: &[&str]| {
        let mut args = vec![
            "import",
            "--connect",
            &addr,
            "--key",
            path(key),
            "--quiet",
            "--as-of",
            AS_OF,
        ];
        args.extend_from_slice(extra);
        // Persons first on the command line: households are still taken first.
        args.extend([path(&persons), path(&households)]);
        tiermesh(&args)
    };

    // The operator imports: every good row stored, the outsider rejected and reported here.
    let first = import(&operator, &[]);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    let summary = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(summary.contains(" stored, 1 rejected"), "{}", text(&first));
    let rejects = std::fs::read_to_string(folder.join("households.rejects.csv"))
        .expect("the rejects file beside the operator's input");
    assert!(rejects.starts_with("error_line,error_column"), "{rejects}");
    assert!(rejects.contains("5301020000009999"), "{rejects}");
    assert!(rejects.contains("region_code"), "{rejects}");

    // Importing the same files again changes nothing (upsert by key).
    let again = import(&operator, &[]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    let counts = |output: &Output| {
        String::from_utf8_lossy(&output.stdout)
            .split("; data version")
            .next()
            .map(str::to_string)
    };
    assert_eq!(counts(&first), counts(&again), "{}", text(&again));

    // The node's own key is an operator too; a dry run stores nothing.
    let node_key = dir.join("node.key");
    let dry = import(&node_key, &["--dry-run"]);
    assert_eq!(dry.status.code(), Some(1), "{}", text(&dry));
    assert!(
        String::from_utf8_lossy(&dry.stdout).starts_with("dry run"),
        "{}",
        text(&dry)
    );

    // The officer may connect (registered) but is not an operator of this node.
    let refused = import(&officer, &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("not an operator"),
        "{}",
        text(&refused)
    );
    // A key the node does not know cannot even connect.
    let stranger_import = import(&stranger, &[]);
    assert_eq!(
        stranger_import.status.code(),
        Some(2),
        "{}",
        text(&stranger_import)
    );
    assert!(
        text(&stranger_import).contains("registered"),
        "{}",
        text(&stranger_import)
    );
    // A header the standard does not know is fatal, and says which file.
    let bad = root.path().join("bad.csv");
    std::fs::write(&bad, "what,is,this\n1,2,3\n").expect("write");
    let fatal = tiermesh(&[
        "import",
        "--connect",
        &addr,
        "--key",
        path(&operator),
        "--quiet",
        path(&bad),
    ]);
    assert_eq!(fatal.status.code(), Some(2), "{}", text(&fatal));
    assert!(text(&fatal).contains("bad.csv"), "{}", text(&fatal));

    // Nothing is left staged once an import has answered.
    let staged: Vec<_> = std::fs::read_dir(dir.join("incoming"))
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    assert!(staged.is_empty(), "left in the staging folder: {staged:?}");

    // Killed without warning, the node keeps every row it reported as stored.
    node.0.kill().expect("SIGKILL");
    node.0.wait().expect("reap");
    assert_eq!(households_stored(&dir), HOUSEHOLDS as i64);
}
