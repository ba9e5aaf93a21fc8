//! The storage crate's one error type.

use std::path::PathBuf;

use crate::row_codec::RowCodecError;

/// What went wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// RocksDB refused to open the database (missing, locked by another process, or damaged).
    #[error("cannot open the database at {path}: {message}")]
    Open { path: PathBuf, message: String },
    /// A read or write failed inside RocksDB.
    #[error("database {operation} failed: {message}")]
    Engine {
        operation: &'static str,
        message: String,
    },
    /// A stored row could not be decoded: the database is damaged.
    #[error("stored {table} row with key {key} is damaged: {source}")]
    Corrupt {
        table: &'static str,
        key: String,
        source: RowCodecError,
    },
    /// A person's household is not stored; the caller must check before writing.
    #[error("person {person} refers to household {household}, which is not stored")]
    MissingHousehold { person: String, household: String },
    /// The audit log does not verify: a line was edited, deleted, reordered or inserted.
    #[error("the audit log {path} is damaged at line {line}: {reason}")]
    AuditDamaged {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    /// The audit log could not be read or written.
    #[error("{operation} the audit log {path} failed: {message}")]
    AuditIo {
        path: PathBuf,
        operation: &'static str,
        message: String,
    },
    /// A stored Raft value (an entry or a state key) does not decode or breaks the log's shape.
    #[error("stored Raft {key} is damaged: {message}")]
    RaftCorrupt { key: String, message: String },
    /// A Raft message could not be encoded for storing.
    #[error("cannot encode the Raft {what}: {message}")]
    RaftEncode { what: &'static str, message: String },
    /// `bootstrap` was asked of a log that already holds Raft state.
    #[error("the Raft log already holds state (last index {last_index}, term {term}); only an empty log can be bootstrapped")]
    RaftAlreadyInitialized { last_index: u64, term: u64 },
    /// `bootstrap` was given no voters.
    #[error("a Raft group needs at least one voter to bootstrap, got none")]
    RaftNoVoters,
    /// Entries to append would rewrite a committed or compacted entry, or leave a gap.
    #[error("Raft entries starting at index {index} cannot be appended: accepted start is {lowest} to {next_index}")]
    RaftAppendOutOfRange {
        index: u64,
        lowest: u64,
        next_index: u64,
    },
    /// Entries to append are not consecutive.
    #[error("Raft entry index {index} follows index {previous}; entries must be consecutive")]
    RaftEntriesNotConsecutive { index: u64, previous: u64 },
    /// A commit index beyond the stored log (or a truncation below the commit) was asked for.
    #[error("Raft commit index {commit} is beyond the last stored index {last_index}")]
    RaftCommitBeyondLog { commit: u64, last_index: u64 },
    /// An applied index that moves backwards or lies beyond the stored log was asked for.
    #[error("Raft applied index {index} is out of range: accepted is {applied} to {last_index}")]
    RaftAppliedOutOfRange {
        index: u64,
        applied: u64,
        last_index: u64,
    },
    /// Compaction was asked beyond the applied index.
    #[error("cannot compact the Raft log to index {index}: only entries up to the applied index {applied} may be compacted")]
    RaftCompactBeyondApplied { index: u64, applied: u64 },
    /// A Raft index beyond any real log was given.
    #[error("Raft index {index} is above the limit {limit}")]
    RaftIndexTooLarge { index: u64, limit: u64 },
    /// A snapshot to install is not newer than what the log already holds.
    #[error(
        "Raft snapshot at index {index} is out of date: the log already holds up to index {held}"
    )]
    RaftSnapshotOutOfDate { index: u64, held: u64 },
}

impl StorageError {
    pub(crate) fn engine(operation: &'static str, error: rocksdb::Error) -> StorageError {
        StorageError::Engine {
            operation,
            message: error.into_string(),
        }
    }
}
