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
}

impl StorageError {
    pub(crate) fn engine(operation: &'static str, error: rocksdb::Error) -> StorageError {
        StorageError::Engine {
            operation,
            message: error.into_string(),
        }
    }
}
