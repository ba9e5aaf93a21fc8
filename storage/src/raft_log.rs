//! The Raft log of the metadata group, kept in the node's database: entries, hard state, conf
//! state, the latest snapshot and the applied metadata state, behind `raft::Storage`.
//!
//! Keys (the bytes live in the `raft_log` and `raft_state` column families of `store.rs`):
//! `raft_log`: entry index (u64 big-endian) -> `Entry` protobuf. `raft_state`: `hard_state` ->
//! `HardState`, `conf_state` -> `ConfState`, `snapshot` -> `Snapshot` (metadata and data),
//! `applied` -> applied index (u64 big-endian) ++ the applied state's bytes.
//!
//! Invariant, after every write and checked at open: the log holds exactly the entries
//! `snapshot index + 1 ..= last index`, consecutive; `commit <= last index` (raft-rs refuses to
//! start otherwise); `snapshot index <= applied index <= commit`. Every public write is one
//! synced write batch, so a crash leaves the state either before or after it.
//!
//! In memory: the snapshot metadata, hard state, conf state, applied index and the term of every
//! stored entry (raft-rs asks for terms far more often than for entries), loaded at open by one
//! scan that also decodes every stored entry, so damage shows at open.
//! *Boundary*: stored bytes are decoded as untrusted; damage is an error naming the key.

use std::collections::VecDeque;

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage};

use crate::error::StorageError;
use crate::store::RaftDb;

const KEY_HARD_STATE: &str = "hard_state";
const KEY_CONF_STATE: &str = "conf_state";
const KEY_SNAPSHOT: &str = "snapshot";
const KEY_APPLIED: &str = "applied";

/// Sorts after every 8-byte entry key: the exclusive end of "every entry from here on".
const ENTRY_KEYS_END: [u8; 9] = [0xff; 9];

/// The highest Raft index accepted, stored or given: far beyond any real log, and low enough that
/// index arithmetic never overflows.
const RAFT_INDEX_MAX: u64 = 1 << 62;

/// Entries read into one `Vec` before it grows on demand.
const ENTRIES_RESERVE_MAX: u64 = 1024;

fn entry_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn entry_name(index: u64) -> String {
    format!("log entry {index}")
}

fn corrupt(key: impl Into<String>, message: impl Into<String>) -> StorageError {
    StorageError::RaftCorrupt {
        key: key.into(),
        message: message.into(),
    }
}

fn decode_entry_key(key: &[u8]) -> Result<u64, StorageError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| {
        corrupt(
            format!("log key {key:02x?}"),
            format!("a log key is 8 bytes, this one is {}", key.len()),
        )
    })?;
    Ok(u64::from_be_bytes(bytes))
}

fn decode<M: protobuf::Message>(key: &str, bytes: &[u8]) -> Result<M, StorageError> {
    M::parse_from_bytes(bytes).map_err(|error| corrupt(key, error.to_string()))
}

fn encode<M: protobuf::Message>(what: &'static str, message: &M) -> Result<Vec<u8>, StorageError> {
    message
        .write_to_bytes()
        .map_err(|error| StorageError::RaftEncode {
            what,
            message: error.to_string(),
        })
}

/// Decodes one stored entry, checking that it sits under its own index.
fn decode_entry(key: &[u8], value: &[u8]) -> Result<Entry, StorageError> {
    let index = decode_entry_key(key)?;
    let entry: Entry = decode(&entry_name(index), value)?;
    if entry.index != index {
        return Err(corrupt(
            entry_name(index),
            format!("it holds the entry of index {}", entry.index),
        ));
    }
    Ok(entry)
}

fn encode_applied(index: u64, state: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(8 + state.len());
    value.extend_from_slice(&index.to_be_bytes());
    value.extend_from_slice(state);
    value
}

fn decode_applied(value: &[u8]) -> Result<(u64, &[u8]), StorageError> {
    let (index, state) = value.split_first_chunk::<8>().ok_or_else(|| {
        corrupt(
            KEY_APPLIED,
            format!(
                "it needs an 8-byte index, the value is {} bytes",
                value.len()
            ),
        )
    })?;
    Ok((u64::from_be_bytes(*index), state))
}

fn snapshot_metadata(index: u64, term: u64, conf_state: ConfState) -> SnapshotMetadata {
    let mut metadata = SnapshotMetadata {
        index,
        term,
        ..SnapshotMetadata::default()
    };
    metadata.set_conf_state(conf_state);
    metadata
}

fn snapshot_of(metadata: SnapshotMetadata, data: &[u8]) -> Snapshot {
    let mut snapshot = Snapshot::default();
    snapshot.set_metadata(metadata);
    snapshot.data = data.to_vec().into();
    snapshot
}

fn to_raft(error: StorageError) -> raft::Error {
    raft::Error::Store(raft::StorageError::Other(Box::new(error)))
}

/// The metadata group's Raft log on the node's database. Get it from `Store::raft_log`, hand it
/// to `raft::RawNode`, and drive it through the Ready steps below.
pub struct RaftLog {
    db: RaftDb,
    /// Metadata of the latest snapshot (all zero before bootstrap or a received snapshot).
    snapshot: SnapshotMetadata,
    /// Terms of the stored entries, `snapshot.index + 1` first.
    terms: VecDeque<u64>,
    hard_state: HardState,
    conf_state: ConfState,
    /// The index of the saved applied state, if one was saved.
    applied_index: Option<u64>,
}

impl std::fmt::Debug for RaftLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftLog")
            .field("first_index", &self.first_index_cached())
            .field("last_index", &self.last_index_cached())
            .field("snapshot_term", &self.snapshot.term)
            .field("hard_state", &self.hard_state)
            .field("voters", &self.conf_state.voters)
            .field("applied_index", &self.applied_index)
            .finish()
    }
}

impl RaftLog {
    /// Loads the caches from the database and checks the log's shape.
    pub(crate) fn open(db: RaftDb) -> Result<RaftLog, StorageError> {
        let load = |key: &str| db.state(key);
        let hard_state: HardState = match load(KEY_HARD_STATE)? {
            Some(bytes) => decode(KEY_HARD_STATE, &bytes)?,
            None => HardState::default(),
        };
        let conf_state: ConfState = match load(KEY_CONF_STATE)? {
            Some(bytes) => decode(KEY_CONF_STATE, &bytes)?,
            None => ConfState::default(),
        };
        let snapshot = match load(KEY_SNAPSHOT)? {
            Some(bytes) => decode::<Snapshot>(KEY_SNAPSHOT, &bytes)?.take_metadata(),
            None => SnapshotMetadata::default(),
        };
        if snapshot.index > RAFT_INDEX_MAX {
            return Err(corrupt(
                KEY_SNAPSHOT,
                format!(
                    "its index {} is above the limit {RAFT_INDEX_MAX}",
                    snapshot.index
                ),
            ));
        }
        let applied_index = match load(KEY_APPLIED)? {
            Some(bytes) => Some(decode_applied(&bytes)?.0),
            None => None,
        };
        let mut terms = VecDeque::new();
        let mut expected = snapshot.index + 1;
        db.scan_entries(&[], |key, value| {
            let entry = decode_entry(key, value)?;
            if entry.index != expected {
                return Err(corrupt(
                    entry_name(entry.index),
                    format!(
                        "the log must run on from the snapshot at index {} without gaps, so \
                         entry {expected} was expected here",
                        snapshot.index
                    ),
                ));
            }
            terms.push_back(entry.term);
            expected += 1;
            Ok(true)
        })?;
        let log = RaftLog {
            db,
            snapshot,
            terms,
            hard_state,
            conf_state,
            applied_index,
        };
        log.check_shape()?;
        Ok(log)
    }

    /// The invariants between the stored pieces, which every write keeps.
    fn check_shape(&self) -> Result<(), StorageError> {
        let last_index = self.last_index_cached();
        let commit = self.hard_state.commit;
        if commit > last_index {
            return Err(corrupt(
                KEY_HARD_STATE,
                format!("commit index {commit} is beyond the last stored index {last_index}"),
            ));
        }
        match self.applied_index {
            Some(applied) if applied < self.snapshot.index || applied > commit => Err(corrupt(
                KEY_APPLIED,
                format!(
                    "applied index {applied} is outside the snapshot index {} to the commit \
                         index {commit}",
                    self.snapshot.index
                ),
            )),
            None if self.snapshot.index > 0 => Err(corrupt(
                KEY_APPLIED,
                format!(
                    "it is missing although a snapshot at index {} is stored",
                    self.snapshot.index
                ),
            )),
            _ => Ok(()),
        }
    }

    /// True once a conf state with at least one voter has been persisted (by bootstrap or a
    /// snapshot).
    pub fn is_initialized(&self) -> bool {
        !self.conf_state.voters.is_empty()
    }

    /// Creates the initial state of a new group: a snapshot at index 1 term 1 whose conf state
    /// has `voters` and whose data is `state` (the applied metadata state), hard state term 1
    /// commit 1, applied state `state` at index 1. Refuses a log that holds any state.
    pub fn bootstrap(&mut self, voters: &[u64], state: &[u8]) -> Result<(), StorageError> {
        if voters.is_empty() {
            return Err(StorageError::RaftNoVoters);
        }
        if self.is_initialized()
            || self.last_index_cached() > 0
            || self.hard_state != HardState::default()
            || self.applied_index.is_some()
        {
            return Err(StorageError::RaftAlreadyInitialized {
                last_index: self.last_index_cached(),
                term: self.hard_state.term,
            });
        }
        let conf_state = ConfState {
            voters: voters.to_vec(),
            ..ConfState::default()
        };
        let metadata = snapshot_metadata(1, 1, conf_state.clone());
        let snapshot = snapshot_of(metadata.clone(), state);
        let hard_state = HardState {
            term: 1,
            commit: 1,
            ..HardState::default()
        };

        let mut batch = self.db.batch();
        batch.delete_entries(&[], &ENTRY_KEYS_END);
        batch.put_state(KEY_SNAPSHOT, &encode("snapshot", &snapshot)?);
        batch.put_state(KEY_CONF_STATE, &encode("conf state", &conf_state)?);
        batch.put_state(KEY_HARD_STATE, &encode("hard state", &hard_state)?);
        batch.put_state(KEY_APPLIED, &encode_applied(1, state));
        self.db.write(batch)?;

        self.snapshot = metadata;
        self.terms.clear();
        self.conf_state = conf_state;
        self.hard_state = hard_state;
        self.applied_index = Some(1);
        Ok(())
    }

    /// Raft Ready step: appends `entries` (replacing every stored entry from `entries[0].index`
    /// on) and writes `hard_state` if given, in one synced write batch, then updates the caches.
    /// Refuses entries that start at or below the stored commit index or leave a gap, and a
    /// commit index beyond the resulting log. The stored commit index never moves backwards
    /// (`save_applied` may have raised it past the given hard state's).
    pub fn persist(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), StorageError> {
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let first_index = self.first_index_cached();
        let last_index = self.last_index_cached();
        let mut new_last = last_index;
        if let Some(first) = entries.first() {
            // A committed entry is never rewritten; raft-rs hands out entries from after the
            // commit index only (it treats a conflict with a committed entry as fatal).
            let lowest = first_index.max(self.hard_state.commit + 1);
            if first.index < lowest || first.index > last_index + 1 {
                return Err(StorageError::RaftAppendOutOfRange {
                    index: first.index,
                    lowest,
                    next_index: last_index + 1,
                });
            }
            for pair in entries.windows(2) {
                if pair[1].index != pair[0].index + 1 {
                    return Err(StorageError::RaftEntriesNotConsecutive {
                        index: pair[1].index,
                        previous: pair[0].index,
                    });
                }
            }
            new_last = first.index + entries.len() as u64 - 1;
            if new_last > RAFT_INDEX_MAX {
                return Err(StorageError::RaftIndexTooLarge {
                    index: new_last,
                    limit: RAFT_INDEX_MAX,
                });
            }
        }
        let mut new_hard_state = hard_state.unwrap_or(&self.hard_state).clone();
        new_hard_state.commit = new_hard_state.commit.max(self.hard_state.commit);
        if new_hard_state.commit > new_last {
            return Err(StorageError::RaftCommitBeyondLog {
                commit: new_hard_state.commit,
                last_index: new_last,
            });
        }

        let mut batch = self.db.batch();
        if let Some(first) = entries.first() {
            if first.index <= last_index {
                batch.delete_entries(&entry_key(first.index), &ENTRY_KEYS_END);
            }
            for entry in entries {
                batch.put_entry(&entry_key(entry.index), &encode("entry", entry)?);
            }
        }
        if hard_state.is_some() {
            batch.put_state(KEY_HARD_STATE, &encode("hard state", &new_hard_state)?);
        }
        self.db.write(batch)?;

        if let Some(first) = entries.first() {
            self.terms.truncate((first.index - first_index) as usize);
            self.terms.extend(entries.iter().map(|entry| entry.term));
        }
        self.hard_state = new_hard_state;
        Ok(())
    }

    /// Updates only the commit index of the hard state (LightReady), durably. A commit index at
    /// or below the stored one writes nothing.
    pub fn set_commit(&mut self, commit: u64) -> Result<(), StorageError> {
        if commit <= self.hard_state.commit {
            return Ok(());
        }
        let last_index = self.last_index_cached();
        if commit > last_index {
            return Err(StorageError::RaftCommitBeyondLog { commit, last_index });
        }
        let mut hard_state = self.hard_state.clone();
        hard_state.commit = commit;
        let mut batch = self.db.batch();
        batch.put_state(KEY_HARD_STATE, &encode("hard state", &hard_state)?);
        self.db.write(batch)?;
        self.hard_state = hard_state;
        Ok(())
    }

    /// Records a new conf state (after `apply_conf_change`), durably.
    pub fn set_conf_state(&mut self, conf_state: &ConfState) -> Result<(), StorageError> {
        let mut batch = self.db.batch();
        batch.put_state(KEY_CONF_STATE, &encode("conf state", conf_state)?);
        self.db.write(batch)?;
        self.conf_state = conf_state.clone();
        Ok(())
    }

    /// Installs a snapshot received from the leader, in one synced batch: drops every log entry,
    /// stores the snapshot (metadata and data) and its conf state, sets the hard state's commit
    /// to its index (and its term to at least the snapshot's), and records the snapshot's data
    /// as the applied state at its index. Refuses a snapshot not newer than the stored snapshot,
    /// commit or applied index.
    pub fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let metadata = snapshot.get_metadata();
        let index = metadata.index;
        if index > RAFT_INDEX_MAX {
            return Err(StorageError::RaftIndexTooLarge {
                index,
                limit: RAFT_INDEX_MAX,
            });
        }
        let applied = self.applied_index.unwrap_or(0);
        if index <= self.snapshot.index || index < self.hard_state.commit.max(applied) {
            return Err(StorageError::RaftSnapshotOutOfDate {
                index,
                held: self.snapshot.index.max(self.hard_state.commit).max(applied),
            });
        }
        let conf_state = metadata.get_conf_state().clone();
        let mut hard_state = self.hard_state.clone();
        hard_state.term = hard_state.term.max(metadata.term);
        hard_state.commit = index;

        let mut batch = self.db.batch();
        batch.delete_entries(&[], &ENTRY_KEYS_END);
        batch.put_state(KEY_SNAPSHOT, &encode("snapshot", snapshot)?);
        batch.put_state(KEY_CONF_STATE, &encode("conf state", &conf_state)?);
        batch.put_state(KEY_HARD_STATE, &encode("hard state", &hard_state)?);
        batch.put_state(KEY_APPLIED, &encode_applied(index, &snapshot.data));
        self.db.write(batch)?;

        self.snapshot = metadata.clone();
        self.terms.clear();
        self.conf_state = conf_state;
        self.hard_state = hard_state;
        self.applied_index = Some(index);
        Ok(())
    }

    /// Durably records the state machine after applying entries up to `index` (the metadata
    /// state as bytes). `index` must not move backwards and must be stored in the log; if it is
    /// beyond the stored commit index, the commit index is raised to it in the same batch (the
    /// Ready order applies committed entries before persisting the hard state that commits
    /// them, and raft-rs refuses to start with applied > commit).
    pub fn save_applied(&mut self, index: u64, state: &[u8]) -> Result<(), StorageError> {
        let applied = self.applied_index.unwrap_or(self.snapshot.index);
        let last_index = self.last_index_cached();
        if index < applied || index > last_index {
            return Err(StorageError::RaftAppliedOutOfRange {
                index,
                applied,
                last_index,
            });
        }
        let mut batch = self.db.batch();
        batch.put_state(KEY_APPLIED, &encode_applied(index, state));
        let mut hard_state = None;
        if index > self.hard_state.commit {
            let mut raised = self.hard_state.clone();
            raised.commit = index;
            batch.put_state(KEY_HARD_STATE, &encode("hard state", &raised)?);
            hard_state = Some(raised);
        }
        self.db.write(batch)?;
        self.applied_index = Some(index);
        if let Some(hard_state) = hard_state {
            self.hard_state = hard_state;
        }
        Ok(())
    }

    /// The last saved applied state: (index, bytes). None before bootstrap or a snapshot.
    pub fn applied(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        match self.db.state(KEY_APPLIED)? {
            Some(value) => {
                let (index, state) = decode_applied(&value)?;
                Ok(Some((index, state.to_vec())))
            }
            None => Ok(None),
        }
    }

    /// Log compaction, in one synced batch: stores a snapshot at `index` (at most the applied
    /// index; its term read from the log) with `state` as its data and the current conf state,
    /// and deletes the entries up to `index`. An index at or below the stored snapshot's is a
    /// no-op.
    pub fn compact(&mut self, index: u64, state: &[u8]) -> Result<(), StorageError> {
        if index <= self.snapshot.index {
            return Ok(());
        }
        let applied = self.applied_index.unwrap_or(self.snapshot.index);
        let term = match self.stored_term(index) {
            Some(term) if index <= applied => term,
            _ => return Err(StorageError::RaftCompactBeyondApplied { index, applied }),
        };
        let metadata = snapshot_metadata(index, term, self.conf_state.clone());
        let snapshot = snapshot_of(metadata.clone(), state);

        let mut batch = self.db.batch();
        batch.put_state(KEY_SNAPSHOT, &encode("snapshot", &snapshot)?);
        batch.delete_entries(&[], &entry_key(index + 1));
        self.db.write(batch)?;

        let dropped = index - self.snapshot.index;
        self.terms.drain(..dropped as usize);
        self.snapshot = metadata;
        Ok(())
    }

    /// The stored hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state.clone()
    }

    /// The stored conf state.
    pub fn conf_state(&self) -> ConfState {
        self.conf_state.clone()
    }

    /// The first index that `entries` can return: the snapshot index + 1.
    pub fn first_index_cached(&self) -> u64 {
        self.snapshot.index + 1
    }

    /// The last stored index: the last entry's, or the snapshot's when the log is empty.
    pub fn last_index_cached(&self) -> u64 {
        self.snapshot.index + self.terms.len() as u64
    }

    /// The term of a stored entry (not of the snapshot's index).
    fn stored_term(&self, index: u64) -> Option<u64> {
        let offset = index.checked_sub(self.first_index_cached())?;
        self.terms.get(usize::try_from(offset).ok()?).copied()
    }

    /// Reads the entries `[low, high)`, all stored, stopping before the entry that would take the
    /// total encoded size past `max_size` (the first entry always comes).
    fn read_entries(
        &self,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> Result<Vec<Entry>, StorageError> {
        let mut entries = Vec::with_capacity((high - low).min(ENTRIES_RESERVE_MAX) as usize);
        let mut size = 0u64;
        let mut full = false;
        self.db.scan_entries(&entry_key(low), |key, value| {
            let expected = low + entries.len() as u64;
            let entry = decode_entry(key, value)?;
            if entry.index != expected {
                return Err(corrupt(
                    entry_name(expected),
                    format!("it is missing: entry {} follows", entry.index),
                ));
            }
            size = size.saturating_add(u64::from(entry.compute_size()));
            if !entries.is_empty() && max_size.is_some_and(|max| size > max) {
                full = true;
                return Ok(false);
            }
            entries.push(entry);
            Ok(expected + 1 < high)
        })?;
        let reached = low + entries.len() as u64;
        if !full && reached < high {
            return Err(corrupt(
                entry_name(reached),
                "it is missing at the end of the log",
            ));
        }
        Ok(entries)
    }

    /// A snapshot of the applied state at the applied index, if one is saved and new enough.
    fn applied_snapshot(&self, request_index: u64) -> Result<Option<Snapshot>, StorageError> {
        let Some((index, state)) = self.applied()? else {
            return Ok(None);
        };
        if index == 0 || index < request_index {
            return Ok(None);
        }
        let term = if index == self.snapshot.index {
            self.snapshot.term
        } else {
            self.stored_term(index).ok_or_else(|| {
                corrupt(
                    KEY_APPLIED,
                    format!(
                        "applied index {index} is not in the log ({} to {})",
                        self.first_index_cached(),
                        self.last_index_cached()
                    ),
                )
            })?
        };
        let metadata = snapshot_metadata(index, term, self.conf_state.clone());
        Ok(Some(snapshot_of(metadata, &state)))
    }
}

impl Storage for RaftLog {
    /// The stored hard state and conf state; both default (uninitialized) before bootstrap or a
    /// received snapshot.
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first_index_cached() {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > self.last_index_cached() + 1 {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        if low >= high {
            return Ok(Vec::new());
        }
        self.read_entries(low, high, max_size.into())
            .map_err(to_raft)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if index == self.snapshot.index {
            return Ok(self.snapshot.term);
        }
        if index < self.first_index_cached() {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        self.stored_term(index)
            .ok_or(raft::Error::Store(raft::StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first_index_cached())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index_cached())
    }

    /// The newest snapshot this log can give: one built from the applied state at the applied
    /// index (with the current conf state) when that is newer than the stored snapshot, else
    /// the stored one; `SnapshotTemporarilyUnavailable` if neither reaches `request_index`.
    /// (An older stored snapshot may predate a conf change that added the very peer asking,
    /// and raft-rs refuses to restore a snapshot whose conf state lacks it.)
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let applied = self.applied_index.unwrap_or(0);
        if self.snapshot.index > 0
            && self.snapshot.index >= applied
            && self.snapshot.index >= request_index
        {
            let bytes = self
                .db
                .state(KEY_SNAPSHOT)
                .map_err(to_raft)?
                .ok_or_else(|| to_raft(corrupt(KEY_SNAPSHOT, "it is missing")))?;
            return decode(KEY_SNAPSHOT, &bytes).map_err(to_raft);
        }
        match self.applied_snapshot(request_index).map_err(to_raft)? {
            Some(snapshot) => Ok(snapshot),
            None => Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            )),
        }
    }
}
