//! The metadata group's Raft log on a real RocksDB on disk: raft-rs's storage contract (the cases
//! of its `MemStorage` tests, adapted), durability across reopen, a crash after every step of a
//! scripted driver run, and damaged stored bytes reported as errors.

use std::collections::BTreeMap;
use std::path::Path;

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, Storage};
use tiermesh_storage::{RaftLog, StorageError, Store, StoreOptions};

fn open(path: &Path) -> (Store, RaftLog) {
    let store = Store::open(path, &StoreOptions::default()).expect("open store");
    let log = store.raft_log().expect("open raft log");
    (store, log)
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("command {index} of term {term}")
            .into_bytes()
            .into(),
        ..Entry::default()
    }
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|index| entry(index, term)).collect()
}

fn conf_state(voters: &[u64]) -> ConfState {
    ConfState {
        voters: voters.to_vec(),
        ..ConfState::default()
    }
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..HardState::default()
    }
}

/// The metadata state after applying through `index`, as the driver would save it.
fn state_at(index: u64) -> Vec<u8> {
    format!("metadata applied through {index}").into_bytes()
}

fn snapshot(index: u64, term: u64, voters: &[u64]) -> Snapshot {
    let mut metadata = SnapshotMetadata {
        index,
        term,
        ..SnapshotMetadata::default()
    };
    metadata.set_conf_state(conf_state(voters));
    let mut snapshot = Snapshot::default();
    snapshot.set_metadata(metadata);
    snapshot.data = state_at(index).into();
    snapshot
}

fn no_context() -> GetEntriesContext {
    GetEntriesContext::empty(false)
}

fn raft_error(error: raft::StorageError) -> raft::Error {
    raft::Error::Store(error)
}

const VOTERS: [u64; 3] = [1, 2, 3];

/// A log holding a snapshot at index 2 (term 2) and the entries 3, 4, 5 with terms 3, 4, 5: the
/// shape of raft-rs's `MemStorage` tests, whose log starts at 3.
fn log_3_to_5(path: &Path) -> (Store, RaftLog) {
    let (store, mut log) = open(path);
    log.apply_snapshot(&snapshot(2, 2, &VOTERS))
        .expect("snapshot");
    log.persist(&[entry(3, 3), entry(4, 4), entry(5, 5)], None)
        .expect("persist");
    (store, log)
}

fn all_entries(log: &RaftLog) -> Vec<Entry> {
    log.entries(
        log.first_index_cached(),
        log.last_index_cached() + 1,
        None,
        no_context(),
    )
    .expect("entries")
}

#[test]
fn term_of_each_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, log) = log_3_to_5(dir.path());
    let cases = [
        (1, Err(raft_error(raft::StorageError::Compacted))),
        // The snapshot's index keeps its term for matching.
        (2, Ok(2)),
        (3, Ok(3)),
        (4, Ok(4)),
        (5, Ok(5)),
        (6, Err(raft_error(raft::StorageError::Unavailable))),
    ];
    for (index, expected) in cases {
        assert_eq!(log.term(index), expected, "term({index})");
    }
}

#[test]
fn entries_in_a_range_and_under_a_size_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, mut log) = log_3_to_5(dir.path());
    log.persist(&[entry(6, 6)], None).expect("persist");
    let stored = [entry(3, 3), entry(4, 4), entry(5, 5), entry(6, 6)];
    let size = |index: usize| u64::from(stored[index].compute_size());
    let unlimited = u64::MAX;
    // (low, high, max size, expected)
    type Case = (u64, u64, u64, raft::Result<Vec<Entry>>);
    let cases: Vec<Case> = vec![
        (
            2,
            6,
            unlimited,
            Err(raft_error(raft::StorageError::Compacted)),
        ),
        (3, 4, unlimited, Ok(stored[0..1].to_vec())),
        (4, 5, unlimited, Ok(stored[1..2].to_vec())),
        (4, 6, unlimited, Ok(stored[1..3].to_vec())),
        (4, 7, unlimited, Ok(stored[1..4].to_vec())),
        // Even with no room, the first entry comes.
        (4, 7, 0, Ok(stored[1..2].to_vec())),
        (4, 7, size(1) + size(2), Ok(stored[1..3].to_vec())),
        (
            4,
            7,
            size(1) + size(2) + size(3) / 2,
            Ok(stored[1..3].to_vec()),
        ),
        (
            4,
            7,
            size(1) + size(2) + size(3) - 1,
            Ok(stored[1..3].to_vec()),
        ),
        (4, 7, size(1) + size(2) + size(3), Ok(stored[1..4].to_vec())),
        // Past the last index: raft-rs's MemStorage panics, this log says so.
        (
            4,
            8,
            unlimited,
            Err(raft_error(raft::StorageError::Unavailable)),
        ),
        (5, 5, unlimited, Ok(Vec::new())),
    ];
    for (low, high, max_size, expected) in cases {
        assert_eq!(
            log.entries(low, high, max_size, no_context()),
            expected,
            "entries({low}, {high}, {max_size})"
        );
    }
    assert_eq!(
        log.entries(4, 7, None, no_context()),
        Ok(stored[1..4].to_vec())
    );
}

#[test]
fn first_and_last_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, mut log) = log_3_to_5(dir.path());
    assert_eq!(log.first_index(), Ok(3));
    assert_eq!(log.last_index(), Ok(5));
    log.persist(&[entry(6, 5)], None).expect("persist");
    assert_eq!(log.last_index(), Ok(6));
    log.save_applied(4, &state_at(4)).expect("applied");
    log.compact(3, &state_at(3)).expect("compact");
    assert_eq!(log.first_index(), Ok(4));
    assert_eq!(log.last_index(), Ok(6));
}

#[test]
fn compaction_keeps_the_entries_after_the_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    // (compact to, first index after, its term, entries left). Unlike MemStorage::compact, which
    // keeps the entry at its argument, `compact(i)` makes a snapshot at i and drops i itself.
    let cases = [
        (1, 3, 3, 3),
        (2, 3, 3, 3),
        (3, 4, 4, 2),
        (4, 5, 5, 1),
        (5, 6, 0, 0),
    ];
    for (case, (index, first, term, left)) in cases.into_iter().enumerate() {
        let path = dir.path().join(case.to_string());
        let (store, mut log) = log_3_to_5(&path);
        log.save_applied(5, &state_at(5)).expect("applied");
        log.compact(index, &state_at(index)).expect("compact");
        let check = |log: &RaftLog| {
            assert_eq!(log.first_index(), Ok(first), "compact({index})");
            let got_term = log
                .entries(first, first + 1, 1, no_context())
                .map_or(0, |found| found.first().map_or(0, |entry| entry.term));
            assert_eq!(got_term, term, "compact({index})");
            assert_eq!(all_entries(log).len(), left, "compact({index})");
            assert_eq!(log.last_index(), Ok(5), "compact({index})");
            // The term before the first index stays known.
            assert_eq!(
                log.term(first - 1),
                Ok((first - 1).max(2)),
                "compact({index})"
            );
        };
        check(&log);
        drop((log, store));
        let (_store, log) = open(&path);
        check(&log);
    }
}

#[test]
fn compaction_stops_at_the_applied_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, mut log) = log_3_to_5(dir.path());
    log.save_applied(4, &state_at(4)).expect("applied");
    let error = log.compact(5, &state_at(5)).expect_err("beyond applied");
    assert!(
        matches!(
            error,
            StorageError::RaftCompactBeyondApplied {
                index: 5,
                applied: 4
            }
        ),
        "{error}"
    );
    assert_eq!(log.first_index(), Ok(3));
}

#[test]
fn snapshot_is_the_newest_of_the_stored_one_and_the_applied_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, mut log) = log_3_to_5(dir.path());
    let voters = VOTERS.to_vec();
    let unavailable = || {
        Err(raft_error(
            raft::StorageError::SnapshotTemporarilyUnavailable,
        ))
    };
    // Applied up to the stored snapshot only: the stored one.
    assert_eq!(log.snapshot(0, 7), Ok(snapshot(2, 2, &voters)));
    assert_eq!(log.snapshot(3, 7), unavailable());

    log.save_applied(4, &state_at(4)).expect("applied");
    // (request index, expected)
    let cases = [
        (0, Ok(snapshot(4, 4, &voters))),
        (2, Ok(snapshot(4, 4, &voters))),
        (4, Ok(snapshot(4, 4, &voters))),
        (5, unavailable()),
    ];
    for (request_index, expected) in cases {
        assert_eq!(
            log.snapshot(request_index, 7),
            expected,
            "snapshot({request_index})"
        );
    }
    // After compaction the stored snapshot is the compacted one.
    log.compact(4, &state_at(4)).expect("compact");
    assert_eq!(log.snapshot(0, 7), Ok(snapshot(4, 4, &voters)));
    // A peer added after the compaction must find itself in the snapshot it is sent (raft-rs
    // refuses one whose conf state lacks it), so the applied state wins over the stored one.
    log.set_conf_state(&conf_state(&[1, 2, 3, 4]))
        .expect("conf state");
    log.save_applied(5, &state_at(5)).expect("applied");
    assert_eq!(log.snapshot(0, 4), Ok(snapshot(5, 5, &[1, 2, 3, 4])));
}

#[test]
fn append_replaces_a_conflicting_suffix() {
    let dir = tempfile::tempdir().expect("tempdir");
    // (entries to append, entries stored afterwards; None: refused and nothing changed)
    let cases: Vec<(Vec<Entry>, Option<Vec<Entry>>)> = vec![
        (
            vec![entry(3, 3), entry(4, 4), entry(5, 5)],
            Some(vec![entry(3, 3), entry(4, 4), entry(5, 5)]),
        ),
        (
            vec![entry(3, 3), entry(4, 6), entry(5, 6)],
            Some(vec![entry(3, 3), entry(4, 6), entry(5, 6)]),
        ),
        (
            vec![entry(3, 3), entry(4, 4), entry(5, 5), entry(6, 5)],
            Some(vec![entry(3, 3), entry(4, 4), entry(5, 5), entry(6, 5)]),
        ),
        // Overwriting compacted entries is refused.
        (vec![entry(2, 3), entry(3, 3), entry(4, 5)], None),
        // Truncates the stored entries from the first appended one.
        (vec![entry(4, 5)], Some(vec![entry(3, 3), entry(4, 5)])),
        (
            vec![entry(6, 6)],
            Some(vec![entry(3, 3), entry(4, 4), entry(5, 5), entry(6, 6)]),
        ),
        // A gap after the last entry is refused.
        (vec![entry(7, 6)], None),
        // So are entries that skip an index.
        (vec![entry(6, 6), entry(8, 6)], None),
    ];
    let original = vec![entry(3, 3), entry(4, 4), entry(5, 5)];
    for (case, (appended, expected)) in cases.into_iter().enumerate() {
        let path = dir.path().join(case.to_string());
        let (store, mut log) = log_3_to_5(&path);
        let result = log.persist(&appended, None);
        let expected = match expected {
            Some(expected) => {
                result.expect("append");
                expected
            }
            None => {
                result.expect_err("refused");
                original.clone()
            }
        };
        assert_eq!(all_entries(&log), expected, "case {case}");
        assert_eq!(
            log.last_index_cached(),
            expected.last().map_or(0, |entry| entry.index)
        );
        drop((log, store));
        // The truncation is durable: no replaced entry comes back.
        let (_store, log) = open(&path);
        assert_eq!(all_entries(&log), expected, "case {case} after reopen");
        assert_eq!(
            log.entries(3, 9, None, no_context()),
            Err(raft_error(raft::StorageError::Unavailable))
        );
    }
}

#[test]
fn commit_never_passes_the_stored_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, mut log) = log_3_to_5(dir.path());
    log.set_commit(4).expect("commit");
    let error = log.set_commit(6).expect_err("beyond the log");
    assert!(
        matches!(
            error,
            StorageError::RaftCommitBeyondLog {
                commit: 6,
                last_index: 5
            }
        ),
        "{error}"
    );
    // Rewriting committed entries is refused, with or without a new hard state.
    let error = log
        .persist(&[entry(4, 9)], None)
        .expect_err("rewrites committed entry 4");
    assert!(
        matches!(
            error,
            StorageError::RaftAppendOutOfRange {
                index: 4,
                lowest: 5,
                next_index: 6
            }
        ),
        "{error}"
    );
    log.persist(&[entry(4, 9)], Some(&hard_state(9, 0, 3)))
        .expect_err("commit stays at 4");
    log.persist(&[entry(6, 5)], Some(&hard_state(5, 0, 7)))
        .expect_err("commit beyond the appended entries");
    assert_eq!(
        all_entries(&log),
        vec![entry(3, 3), entry(4, 4), entry(5, 5)]
    );
    // A lower commit in a hard state does not move the stored one back.
    log.persist(&[], Some(&hard_state(6, 2, 3)))
        .expect("hard state");
    assert_eq!(log.hard_state(), hard_state(6, 2, 4));
    log.set_commit(2).expect("stale commit");
    assert_eq!(log.hard_state().commit, 4);
}

#[test]
fn a_snapshot_index_beyond_any_log_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, mut log) = open(dir.path());
    let error = log
        .apply_snapshot(&snapshot(u64::MAX, 3, &VOTERS))
        .expect_err("too large");
    assert!(
        matches!(error, StorageError::RaftIndexTooLarge { .. }),
        "{error}"
    );
    assert!(!log.is_initialized());
}

#[test]
fn the_log_can_move_to_the_raft_thread() {
    fn movable<T: Send + 'static>() {}
    movable::<RaftLog>();
}

#[test]
fn a_snapshot_older_than_the_log_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, mut log) = open(dir.path());
    log.apply_snapshot(&snapshot(4, 4, &VOTERS))
        .expect("snapshot");
    let error = log
        .apply_snapshot(&snapshot(3, 3, &VOTERS))
        .expect_err("out of date");
    assert!(
        matches!(
            error,
            StorageError::RaftSnapshotOutOfDate { index: 3, held: 4 }
        ),
        "{error}"
    );
    assert_eq!(log.snapshot(0, 2), Ok(snapshot(4, 4, &VOTERS)));
}

#[test]
fn installing_a_snapshot_replaces_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (_store, mut log) = log_3_to_5(dir.path());
        log.persist(&entries(6..=9, 5), Some(&hard_state(5, 1, 4)))
            .expect("persist");
        log.save_applied(4, &state_at(4)).expect("applied");
        log.apply_snapshot(&snapshot(12, 7, &[1, 2, 5]))
            .expect("snapshot");
        assert_eq!(log.applied().expect("applied"), Some((12, state_at(12))));
    }
    let (_store, log) = open(dir.path());
    assert_eq!(log.first_index(), Ok(13));
    assert_eq!(log.last_index(), Ok(12));
    assert_eq!(log.term(12), Ok(7));
    assert_eq!(log.term(9), Err(raft_error(raft::StorageError::Compacted)));
    assert_eq!(log.hard_state(), hard_state(7, 1, 12));
    assert_eq!(log.conf_state(), conf_state(&[1, 2, 5]));
    assert_eq!(log.applied().expect("applied"), Some((12, state_at(12))));
    assert_eq!(log.snapshot(0, 2), Ok(snapshot(12, 7, &[1, 2, 5])));
    // The next entries start right after the snapshot.
    let mut log = log;
    log.persist(&[entry(13, 7)], Some(&hard_state(7, 1, 13)))
        .expect("persist");
    assert_eq!(all_entries(&log), vec![entry(13, 7)]);
}

#[test]
fn a_new_log_is_uninitialized_until_bootstrap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, mut log) = open(dir.path());
    assert!(!log.is_initialized());
    let initial = log.initial_state().expect("initial state");
    assert!(!initial.initialized());
    assert_eq!(initial.hard_state, HardState::default());
    assert_eq!((log.first_index(), log.last_index()), (Ok(1), Ok(0)));
    assert_eq!(log.term(0), Ok(0));
    assert_eq!(log.applied().expect("applied"), None);
    assert_eq!(
        log.snapshot(0, 2),
        Err(raft_error(
            raft::StorageError::SnapshotTemporarilyUnavailable
        ))
    );
    let error = log.bootstrap(&[], b"state").expect_err("no voters");
    assert!(matches!(error, StorageError::RaftNoVoters), "{error}");

    log.bootstrap(&[1], &state_at(1)).expect("bootstrap");
    let check = |log: &RaftLog| {
        assert!(log.is_initialized());
        let initial = log.initial_state().expect("initial state");
        assert!(initial.initialized());
        assert_eq!(initial.hard_state, hard_state(1, 0, 1));
        assert_eq!(initial.conf_state, conf_state(&[1]));
        assert_eq!((log.first_index(), log.last_index()), (Ok(2), Ok(1)));
        assert_eq!(log.term(1), Ok(1));
        assert_eq!(log.applied().expect("applied"), Some((1, state_at(1))));
        assert_eq!(log.snapshot(0, 2), Ok(snapshot(1, 1, &[1])));
    };
    check(&log);
    let error = log.bootstrap(&[1], b"again").expect_err("twice");
    assert!(
        matches!(error, StorageError::RaftAlreadyInitialized { .. }),
        "{error}"
    );
    drop(log);
    drop(_store);
    let (_store, log) = open(dir.path());
    check(&log);
}

#[test]
fn a_log_that_voted_is_not_bootstrapped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, mut log) = open(dir.path());
    log.persist(&[], Some(&hard_state(3, 2, 0))).expect("vote");
    log.bootstrap(&[1], b"state").expect_err("already voted");
}

#[test]
fn applied_index_moves_forward_within_the_log_and_raises_the_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, mut log) = log_3_to_5(dir.path());
    log.save_applied(3, &state_at(3)).expect("applied");
    let error = log.save_applied(2, &state_at(2)).expect_err("backwards");
    assert!(
        matches!(
            error,
            StorageError::RaftAppliedOutOfRange {
                index: 2,
                applied: 3,
                last_index: 5
            }
        ),
        "{error}"
    );
    log.save_applied(6, &state_at(6))
        .expect_err("beyond the log");
    // Applying before the Ready's hard state is persisted (raft-rs's order) raises the commit.
    assert_eq!(log.hard_state().commit, 3);
    log.save_applied(5, &state_at(5)).expect("applied");
    assert_eq!(log.hard_state().commit, 5);
    assert_eq!(log.applied().expect("applied"), Some((5, state_at(5))));
}

/// Everything the log shows through its API.
#[derive(Debug, PartialEq)]
struct Observed {
    initialized: bool,
    hard_state: HardState,
    conf_state: ConfState,
    first_index: u64,
    last_index: u64,
    entries: Vec<Entry>,
    terms: Vec<Result<u64, String>>,
    applied: Option<(u64, Vec<u8>)>,
    snapshot: Result<Snapshot, String>,
}

fn observe(log: &RaftLog) -> Observed {
    let first_index = log.first_index().expect("first index");
    let last_index = log.last_index().expect("last index");
    Observed {
        initialized: log.is_initialized(),
        hard_state: log.initial_state().expect("initial state").hard_state,
        conf_state: log.initial_state().expect("initial state").conf_state,
        first_index,
        last_index,
        entries: log
            .entries(first_index, last_index + 1, None, no_context())
            .expect("entries"),
        terms: (first_index - 1..=last_index)
            .map(|index| log.term(index).map_err(|error| error.to_string()))
            .collect(),
        applied: log.applied().expect("applied"),
        snapshot: log.snapshot(0, 2).map_err(|error| error.to_string()),
    }
}

/// One step of a driver.
#[derive(Clone, Debug)]
enum Step {
    Bootstrap(Vec<u64>),
    Persist(Vec<Entry>, Option<HardState>),
    SetCommit(u64),
    SaveApplied(u64),
    SetConfState(Vec<u64>),
    Compact(u64),
    ApplySnapshot(u64, u64, Vec<u64>),
}

/// What the steps so far wrote that the log must show: the last conf state and every applied
/// state saved, by index.
#[derive(Debug, Default)]
struct Written {
    conf_state: ConfState,
    applied_states: BTreeMap<u64, Vec<u8>>,
}

fn run(log: &mut RaftLog, step: &Step, written: &mut Written) {
    match step {
        Step::Bootstrap(voters) => {
            log.bootstrap(voters, &state_at(1)).expect("bootstrap");
            written.conf_state = conf_state(voters);
            written.applied_states.insert(1, state_at(1));
        }
        Step::Persist(entries, hard_state) => {
            log.persist(entries, hard_state.as_ref()).expect("persist")
        }
        Step::SetCommit(commit) => log.set_commit(*commit).expect("set commit"),
        Step::SaveApplied(index) => {
            log.save_applied(*index, &state_at(*index))
                .expect("save applied");
            written.applied_states.insert(*index, state_at(*index));
        }
        Step::SetConfState(voters) => {
            log.set_conf_state(&conf_state(voters))
                .expect("set conf state");
            written.conf_state = conf_state(voters);
        }
        Step::Compact(index) => log.compact(*index, &state_at(*index)).expect("compact"),
        Step::ApplySnapshot(index, term, voters) => {
            log.apply_snapshot(&snapshot(*index, *term, voters))
                .expect("apply snapshot");
            written.conf_state = conf_state(voters);
            written.applied_states.insert(*index, state_at(*index));
        }
    }
}

/// A leader's life: bootstrap, append, commit, apply, a conf change, a conflicting suffix
/// replaced, compaction, a snapshot from a new leader, applying ahead of the persisted commit.
fn script() -> Vec<Step> {
    use Step::*;
    vec![
        Bootstrap(vec![1]),
        Persist(entries(2..=4, 2), Some(hard_state(2, 1, 1))),
        SetCommit(3),
        SaveApplied(3),
        Persist(vec![entry(5, 2)], Some(hard_state(2, 1, 4))),
        SaveApplied(4),
        SetConfState(vec![1, 2]),
        // A new leader of term 3 replaces the uncommitted entry 5.
        Persist(entries(5..=6, 3), Some(hard_state(3, 2, 4))),
        SetCommit(6),
        SaveApplied(6),
        Compact(5),
        Persist(entries(7..=8, 3), None),
        SetCommit(8),
        SaveApplied(8),
        ApplySnapshot(12, 4, vec![1, 2, 3]),
        Persist(vec![entry(13, 4)], Some(hard_state(4, 3, 12))),
        // Applied before the hard state that commits 13 is persisted.
        SaveApplied(13),
        Compact(13),
        SetConfState(vec![1, 2, 3, 4]),
        Persist(entries(14..=15, 5), Some(hard_state(5, 3, 13))),
        SetCommit(15),
    ]
}

/// The invariants a restarted driver (and raft-rs's `RawNode::new`) relies on.
fn check_invariants(log: &RaftLog, written: &Written, label: &str) {
    let first_index = log.first_index().expect("first index");
    let last_index = log.last_index().expect("last index");
    assert!(first_index >= 1 && first_index <= last_index + 1, "{label}");
    let stored = log
        .entries(first_index, last_index + 1, None, no_context())
        .expect("entries");
    let indexes: Vec<u64> = stored.iter().map(|entry| entry.index).collect();
    let expected: Vec<u64> = (first_index..=last_index).collect();
    assert_eq!(indexes, expected, "{label}: the log is contiguous");
    for index in first_index - 1..=last_index {
        let term = log.term(index);
        assert!(term.is_ok(), "{label}: term({index}) is {term:?}");
    }
    for entry in &stored {
        assert_eq!(log.term(entry.index), Ok(entry.term), "{label}");
    }
    let hard_state = log.hard_state();
    assert!(
        hard_state.commit <= last_index,
        "{label}: commit {} beyond last index {last_index}",
        hard_state.commit
    );
    if let Some((applied, state)) = log.applied().expect("applied") {
        assert!(
            applied <= hard_state.commit,
            "{label}: applied {applied} beyond commit {}",
            hard_state.commit
        );
        assert!(applied >= first_index - 1, "{label}: applied {applied}");
        assert_eq!(
            Some(&state),
            written.applied_states.get(&applied),
            "{label}: the state saved at {applied}"
        );
    }
    assert_eq!(log.conf_state(), written.conf_state, "{label}");
}

/// What `kill -9` right now would leave: the database's files as they are on disk while it is
/// open, copied elsewhere (every write was synced, so the copy holds every finished write).
fn crash_copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("crash dir");
    for item in std::fs::read_dir(from).expect("read db dir") {
        let item = item.expect("db dir entry");
        if item.file_type().expect("file type").is_file() {
            std::fs::copy(item.path(), to.join(item.file_name())).expect("copy db file");
        }
    }
}

#[test]
fn a_crash_after_any_step_loses_nothing_written() {
    let steps = script();
    let dir = tempfile::tempdir().expect("tempdir");

    let full_run = {
        let (_store, mut log) = open(&dir.path().join("full"));
        let mut written = Written::default();
        for step in &steps {
            run(&mut log, step, &mut written);
            check_invariants(&log, &written, &format!("live after {step:?}"));
        }
        observe(&log)
    };

    for crash_after in 1..=steps.len() {
        let label = format!(
            "crash after step {crash_after} ({:?})",
            steps[crash_after - 1]
        );
        let live_path = dir.path().join(format!("live-{crash_after}"));
        let crashed_path = dir.path().join(format!("crashed-{crash_after}"));
        let mut written = Written::default();
        let live = {
            let (_store, mut log) = open(&live_path);
            for step in &steps[..crash_after] {
                run(&mut log, step, &mut written);
            }
            crash_copy(&live_path, &crashed_path);
            observe(&log)
        };
        let (_store, mut log) = open(&crashed_path);
        assert_eq!(observe(&log), live, "{label}");
        check_invariants(&log, &written, &label);
        // The reopened log carries on exactly as if nothing had happened.
        for step in &steps[crash_after..] {
            run(&mut log, step, &mut written);
        }
        assert_eq!(observe(&log), full_run, "{label}, then the rest");
    }
}

#[test]
fn everything_persisted_survives_a_clean_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut written = Written::default();
    let steps = script();
    for (number, step) in steps.iter().enumerate() {
        let (before, store, log) = {
            let (store, mut log) = open(dir.path());
            run(&mut log, step, &mut written);
            (observe(&log), store, log)
        };
        drop(log);
        drop(store);
        let (_store, log) = open(dir.path());
        assert_eq!(observe(&log), before, "reopen after step {}", number + 1);
    }
}

#[test]
fn a_crash_inside_a_ready_leaves_the_committed_entries_to_reapply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live_path = dir.path().join("live");
    let crashed_path = dir.path().join("crashed");
    {
        let (_store, mut log) = open(&live_path);
        log.bootstrap(&[1], &state_at(1)).expect("bootstrap");
        log.persist(&entries(2..=4, 2), Some(&hard_state(2, 1, 1)))
            .expect("persist");
        // One Ready: its entries and the hard state committing them are persisted, then the
        // process dies before the committed entries are applied and saved.
        log.persist(&entries(5..=6, 2), Some(&hard_state(2, 1, 6)))
            .expect("persist");
        crash_copy(&live_path, &crashed_path);
    }
    let (_store, mut log) = open(&crashed_path);
    let (applied, state) = log.applied().expect("applied").expect("saved at bootstrap");
    assert_eq!((applied, state), (1, state_at(1)));
    let commit = log.hard_state().commit;
    assert_eq!(commit, 6);
    // The driver starts raft with `applied` and applies again from applied + 1.
    let again = log
        .entries(applied + 1, commit + 1, None, no_context())
        .expect("entries to reapply");
    assert_eq!(again, entries(2..=6, 2));
    log.save_applied(commit, &state_at(commit))
        .expect("applied");
    assert_eq!(log.applied().expect("applied"), Some((6, state_at(6))));
}

#[test]
fn a_crash_between_apply_and_persisting_the_hard_state_keeps_applied_within_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live_path = dir.path().join("live");
    let crashed_path = dir.path().join("crashed");
    {
        let (_store, mut log) = open(&live_path);
        log.bootstrap(&[1], &state_at(1)).expect("bootstrap");
        log.persist(&entries(2..=4, 2), Some(&hard_state(2, 1, 1)))
            .expect("persist");
        // raft-rs's Ready order: committed entries (commit 4 known in memory) are applied and
        // saved before the Ready's hard state is persisted; the process dies in between.
        log.save_applied(4, &state_at(4)).expect("applied");
        crash_copy(&live_path, &crashed_path);
        log.persist(&[], Some(&hard_state(2, 1, 4)))
            .expect("persist");
    }
    let (_store, log) = open(&crashed_path);
    assert_eq!(log.applied().expect("applied"), Some((4, state_at(4))));
    // raft-rs refuses to start with applied > commit; the commit came along with the applied.
    assert_eq!(log.hard_state(), hard_state(2, 1, 4));
    assert_eq!(log.last_index(), Ok(4));
}

/// Opens the database without the store and changes the Raft column families.
fn damage(path: &Path, change: impl FnOnce(&rocksdb::DB)) {
    let mut options = rocksdb::Options::default();
    options.create_if_missing(false);
    let names = rocksdb::DB::list_cf(&options, path).expect("list");
    let db = rocksdb::DB::open_cf(&options, path, names).expect("raw open");
    change(&db);
}

fn put(db: &rocksdb::DB, family: &str, key: &[u8], value: &[u8]) {
    let handle = db.cf_handle(family).expect("column family");
    db.put_cf(handle, key, value).expect("put");
}

#[test]
fn damaged_stored_bytes_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stored_entry = |index: u64| entry(index, 2).write_to_bytes().expect("encode");
    type Damage = Box<dyn Fn(&rocksdb::DB)>;
    // (what is damaged, how, what the error names)
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "garbage entry",
            Box::new(|db| put(db, "raft_log", &3u64.to_be_bytes(), b"\xff\xff\xff garbage")),
            "log entry 3",
        ),
        (
            "entry under another index",
            Box::new(move |db| put(db, "raft_log", &3u64.to_be_bytes(), &stored_entry(9))),
            "log entry 3",
        ),
        (
            "a gap in the log",
            Box::new(move |db| put(db, "raft_log", &7u64.to_be_bytes(), &stored_entry(7))),
            "log entry 7",
        ),
        (
            "a key of the wrong length",
            Box::new(|db| put(db, "raft_log", b"abc", b"")),
            "log key",
        ),
        (
            "garbage hard state",
            Box::new(|db| put(db, "raft_state", b"hard_state", b"\x0a\xff")),
            "hard_state",
        ),
        (
            "garbage conf state",
            // Field 1 with wire type 7, which does not exist.
            Box::new(|db| put(db, "raft_state", b"conf_state", b"\x0f\x00")),
            "conf_state",
        ),
        (
            "garbage snapshot",
            Box::new(|db| put(db, "raft_state", b"snapshot", b"\x12\x7f")),
            "snapshot",
        ),
        (
            "a snapshot index no log reaches",
            Box::new(|db| {
                let bytes = snapshot(u64::MAX, 2, &[1])
                    .write_to_bytes()
                    .expect("encode");
                put(db, "raft_state", b"snapshot", &bytes);
            }),
            "snapshot",
        ),
        (
            "short applied state",
            Box::new(|db| put(db, "raft_state", b"applied", b"\x00\x01")),
            "applied",
        ),
        (
            "commit beyond the log",
            Box::new(|db| {
                let bytes = hard_state(2, 1, 99).write_to_bytes().expect("encode");
                put(db, "raft_state", b"hard_state", &bytes);
            }),
            "commit index 99",
        ),
    ];
    for (case, (what, change, named)) in cases.into_iter().enumerate() {
        let path = dir.path().join(case.to_string());
        {
            let (_store, mut log) = open(&path);
            log.bootstrap(&[1], &state_at(1)).expect("bootstrap");
            log.persist(&entries(2..=5, 2), Some(&hard_state(2, 1, 3)))
                .expect("persist");
        }
        damage(&path, change);
        let store = Store::open(&path, &StoreOptions::default()).expect("the store opens");
        let error = store.raft_log().expect_err(what);
        assert!(
            matches!(error, StorageError::RaftCorrupt { .. }),
            "{what}: {error}"
        );
        let message = error.to_string();
        assert!(
            message.contains(named) && message.contains("damaged"),
            "{what}: {message}"
        );
    }
}
