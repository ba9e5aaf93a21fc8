//! Crash safety: `kill -9` during an import, again and again; after each restart every row the
//! import had acknowledged (`committed FILE through line N`) is stored.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use rand::{Rng, SeedableRng};
use tiermesh_federation::record::HouseholdId;
use tiermesh_federation::standard::id_number;
use tiermesh_storage::{Store, StoreOptions};

const BIN: &str = env!("CARGO_BIN_EXE_tiermesh");
const AS_OF: &str = "2026-06-30";
const KILLS: usize = 6;

fn run(args: &[&str]) {
    let output = Command::new(BIN).args(args).output().expect("run tiermesh");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The keys of a generated file by line number (generated files have one line per row).
fn keys_by_line(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .expect("read")
        .lines()
        .skip(1)
        .map(|line| line.split(',').next().expect("key").to_string())
        .collect()
}

#[test]
fn acknowledged_rows_survive_kill_9() {
    let seed: u64 = std::env::var("TIERMESH_CRASH_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(20261129);
    println!("crash test seed {seed} (set TIERMESH_CRASH_SEED to reproduce)");
    let mut random = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let node = dir.path().join("node");
    let text = |path: &Path| path.to_str().expect("utf-8").to_string();
    run(&[
        "gen",
        "--region",
        "520102000000",
        "--households",
        "12000",
        "--seed",
        "3",
        "--out",
        &text(&data),
        "--as-of",
        AS_OF,
    ]);
    run(&["init", "--dir", &text(&node), "--region", "520102000000"]);
    let households = data.join("520102").join("households.csv");
    let persons = data.join("520102").join("persons.csv");
    let household_keys = keys_by_line(&households);
    let person_keys = keys_by_line(&persons);
    let today = tiermesh::today();

    for round in 0..KILLS {
        // Odd rounds commit batches large enough to be bulk-loaded (table files ingested, not
        // the WAL): both durable paths are killed in the middle.
        let (batch_rows, commits) = if round % 2 == 0 {
            ("1500", 40)
        } else {
            const { assert!(4_500 >= tiermesh_storage::INGEST_MIN_KEYS) };
            ("4500", 10)
        };
        let mut child = Command::new(BIN)
            .args([
                "import",
                "--dir",
                &text(&node),
                "--quiet",
                "--log-commits",
                "--batch-rows",
                batch_rows,
                "--as-of",
                AS_OF,
                &text(&households),
                &text(&persons),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn import");
        let commits_before_kill = random.gen_range(1..=commits);
        let stdout = child.stdout.take().expect("stdout");
        let mut acknowledged: Vec<(String, u64)> = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read stdout");
            if let Some(rest) = line.strip_prefix("committed ") {
                let (file, number) = rest.rsplit_once(" through line ").expect("commit line");
                acknowledged.push((file.to_string(), number.parse().expect("line number")));
                if acknowledged.len() == commits_before_kill {
                    child.kill().expect("SIGKILL");
                    break;
                }
            }
        }
        child.wait().expect("reap");

        let store =
            Store::open(&node.join("db"), &StoreOptions::default()).expect("reopen after kill");
        let image = store.image();
        for (file, through) in &acknowledged {
            let (keys, is_households) = if *file == text(&households) {
                (&household_keys, true)
            } else {
                (&person_keys, false)
            };
            // Line 1 is the header; line n holds keys[n - 2].
            for key in keys.iter().take((*through as usize).saturating_sub(1)) {
                if is_households {
                    let id = HouseholdId(key.parse().expect("household id"));
                    assert!(
                        image.has_household(id),
                        "round {round}: household {key} acknowledged but lost (seed {seed})"
                    );
                } else {
                    let id = id_number::parse(key, today).expect("valid id");
                    assert!(
                        image.person_household(id).is_some(),
                        "round {round}: person {key} acknowledged but lost (seed {seed})"
                    );
                }
            }
        }
        println!(
            "round {round} (batches of {batch_rows}): killed after {} commits; all acknowledged \
             rows present",
            acknowledged.len()
        );
    }
    // A final uninterrupted import completes the set.
    run(&[
        "import",
        "--dir",
        &text(&node),
        "--quiet",
        "--as-of",
        AS_OF,
        &text(&households),
        &text(&persons),
    ]);
    let store = Store::open(&node.join("db"), &StoreOptions::default()).expect("open");
    assert_eq!(store.image().households_len(), household_keys.len());
    assert_eq!(store.image().persons_len(), person_keys.len());
}
