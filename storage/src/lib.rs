//! RocksDB storage for a TierMesh node: the record tables, node metadata, and the columnar image
//! kept in step with them. Synchronous API; RocksDB is named in `store.rs` only.

mod error;
pub mod row_codec;
mod store;

pub use error::StorageError;
pub use store::{Committer, PreparedWrite, RemoveSummary, Store, StoreOptions, WriteSummary};
