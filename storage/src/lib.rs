//! RocksDB storage for a TierMesh node: the record tables, node metadata, and the columnar image
//! kept in step with them, and the Raft log of the metadata group. Synchronous API; RocksDB is
//! named in `store.rs` only.

pub mod audit_log;
mod error;
mod raft_log;
pub mod row_codec;
mod store;

pub use error::StorageError;
pub use raft_log::RaftLog;
pub use store::{
    Committer, Peek, PreparedWrite, RemoveSummary, Store, StoreOptions, WriteSummary,
    INGEST_MIN_KEYS, PARALLEL_READS,
};
