//! The TierMesh domain, sans-IO: regions and the tier tree, the national data standard, the query
//! language, aggregation over a node's columnar image, the metadata state machine and the wire
//! codec.
//!
//! Invariant: nothing here touches a socket, a clock, a file or a random source; the caller
//! passes time and randomness in.

pub mod date;
pub mod disclosure;
pub mod fanout;
pub mod fast_hash;
pub mod grant;
pub mod image;
pub mod meta;
pub mod query;
pub mod record;
pub mod region;
pub mod schema;
pub mod slot_index;
pub mod standard;
pub mod wire;
