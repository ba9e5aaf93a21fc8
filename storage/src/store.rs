//! The node's RocksDB database: one column family per table plus node metadata, keys ordered so
//! that a region is one range scan, synchronous WAL writes, and the columnar image beside it.
//!
//! Keys: `households` = household_id (u64 big-endian), so a region's households are one range;
//! `persons` = household_id ++ person_id (both u64 big-endian), so a household's persons and a
//! region's persons are one range. Where a person lives is found through the image (rebuilt from
//! `persons` at open), so no second index is written per person.
//!
//! Invariant: the image reflects exactly the committed rows. Every write commits one RocksDB
//! write batch (WAL, fsync) first and updates the image only after it succeeded.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tiermesh_crypto::hex;

use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use tiermesh_federation::fast_hash::FastMap;
use tiermesh_federation::image::Image;
use tiermesh_federation::record::{Household, HouseholdId, IdNumber, Person};

use crate::error::StorageError;
use crate::raft_log::RaftLog;
use crate::row_codec;

const CF_HOUSEHOLDS: &str = "households";
const CF_PERSONS: &str = "persons";
const CF_META: &str = "meta";
/// Raft log entries of the metadata group; `raft_log.rs` owns the key scheme.
const CF_RAFT_LOG: &str = "raft_log";
/// Raft hard state, conf state, latest snapshot and applied state; `raft_log.rs` owns the keys.
const CF_RAFT_STATE: &str = "raft_state";
const COLUMN_FAMILIES: [&str; 5] = [
    CF_HOUSEHOLDS,
    CF_PERSONS,
    CF_META,
    CF_RAFT_LOG,
    CF_RAFT_STATE,
];

/// What `Store::peek` read.
pub struct Peek {
    pub households: u64,
    pub persons: u64,
    pub data_version: u64,
    /// The Raft log, read-only (a write to it fails).
    pub raft: RaftLog,
}

/// Tuning of the database.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// fsync the WAL on every write batch (a reported row then survives power loss, not only
    /// `kill -9`).
    pub sync_writes: bool,
    /// Memtable size per column family.
    pub write_buffer_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sync_writes: true,
            write_buffer_bytes: 128 << 20,
        }
    }
}

/// What one write did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Rows written.
    pub rows: usize,
    /// The sequence number after the write: the data version the image now reflects.
    pub data_version: u64,
}

/// What a removal did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoveSummary {
    /// Households removed.
    pub households: Vec<HouseholdId>,
    /// Households asked for that were not stored.
    pub not_found: Vec<HouseholdId>,
    /// Persons removed with them.
    pub persons: usize,
    /// The data version after the removal.
    pub data_version: u64,
}

/// A node's database and its columnar image.
pub struct Store {
    db: Arc<DB>,
    path: PathBuf,
    image: Image,
    write_options: WriteOptions,
    sync_writes: bool,
}

fn write_options(sync: bool) -> WriteOptions {
    let mut options = WriteOptions::default();
    options.set_sync(sync);
    // Writes come in ascending key runs; the hint makes those memtable inserts cheap.
    options.set_memtable_insert_hint_per_batch(true);
    options
}

/// A write batch whose rows the image already shows, waiting for `Committer::commit`.
pub struct PreparedWrite {
    batch: WriteBatch,
    rows: usize,
}

impl PreparedWrite {
    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

impl std::fmt::Debug for PreparedWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PreparedWrite({} rows)", self.rows)
    }
}

/// Commits prepared batches, on another thread than the one that prepares the next.
pub struct Committer {
    db: Arc<DB>,
    write_options: WriteOptions,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Committer")
    }
}

impl Committer {
    /// Writes the batch durably (WAL, fsync unless the store was opened without sync).
    /// Returns the sequence number after it.
    pub fn commit(&self, prepared: PreparedWrite) -> Result<u64, StorageError> {
        self.db
            .write_opt(prepared.batch, &self.write_options)
            .map_err(|e| StorageError::engine("write", e))?;
        Ok(self.db.latest_sequence_number())
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn person_key(household: HouseholdId, person: IdNumber) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&household.0.to_be_bytes());
    key[8..].copy_from_slice(&person.0.to_be_bytes());
    key
}

impl Store {
    /// Opens (creating if needed) the database in `path` and builds the image from it.
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store, StorageError> {
        let mut db_options = Options::default();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        db_options.set_max_background_jobs(2);
        db_options.set_paranoid_checks(true);
        let descriptors = COLUMN_FAMILIES.iter().map(|name| {
            let mut cf_options = Options::default();
            cf_options.set_write_buffer_size(options.write_buffer_bytes);
            cf_options.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(*name, cf_options)
        });
        let db = DB::open_cf_descriptors(&db_options, path, descriptors).map_err(|error| {
            StorageError::Open {
                path: path.to_path_buf(),
                message: error.into_string(),
            }
        })?;
        let write_options = write_options(options.sync_writes);
        let mut store = Store {
            db: Arc::new(db),
            sync_writes: options.sync_writes,
            path: path.to_path_buf(),
            image: Image::new(),
            write_options,
        };
        store.rebuild_image()?;
        Ok(store)
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The columnar image of the committed rows.
    pub fn image(&self) -> &Image {
        &self.image
    }

    /// The sequence number of the last committed write.
    pub fn data_version(&self) -> u64 {
        self.db.latest_sequence_number()
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // Every column family is created at open; a missing one is a programmer error.
        self.db
            .cf_handle(name)
            .expect("column family created at open")
    }

    /// Reads every stored row into a fresh image, from one snapshot.
    fn rebuild_image(&mut self) -> Result<(), StorageError> {
        let mut image = Image::new();
        let estimate = |name: &str| {
            self.db
                .property_int_value_cf(self.cf(name), "rocksdb.estimate-num-keys")
                .ok()
                .flatten()
                .unwrap_or(0) as usize
        };
        image.reserve(estimate(CF_HOUSEHOLDS), estimate(CF_PERSONS));
        let snapshot = self.db.snapshot();
        // Raw iterators: no allocation per row.
        let mut rows = snapshot.raw_iterator_cf(self.cf(CF_HOUSEHOLDS));
        rows.seek_to_first();
        while let (Some(key), Some(value)) = (rows.key(), rows.value()) {
            let row =
                row_codec::decode_household(value).map_err(|source| StorageError::Corrupt {
                    table: CF_HOUSEHOLDS,
                    key: hex::encode(key),
                    source,
                })?;
            image.upsert_household(&row);
            rows.next();
        }
        rows.status().map_err(|e| StorageError::engine("scan", e))?;
        drop(rows);
        let mut rows = snapshot.raw_iterator_cf(self.cf(CF_PERSONS));
        rows.seek_to_first();
        while let (Some(key), Some(value)) = (rows.key(), rows.value()) {
            let row = row_codec::decode_person(value).map_err(|source| StorageError::Corrupt {
                table: CF_PERSONS,
                key: hex::encode(key),
                source,
            })?;
            if !image.upsert_person(&row) {
                return Err(StorageError::MissingHousehold {
                    person: row.person_id.text(),
                    household: row.household_id.to_string(),
                });
            }
            rows.next();
        }
        rows.status().map_err(|e| StorageError::engine("scan", e))?;
        drop(rows);
        drop(snapshot);
        image.data_version = self.db.latest_sequence_number();
        self.image = image;
        Ok(())
    }

    /// Reads one stored household.
    pub fn household(&self, id: HouseholdId) -> Result<Option<Household>, StorageError> {
        let value = self
            .db
            .get_pinned_cf(self.cf(CF_HOUSEHOLDS), id.0.to_be_bytes())
            .map_err(|e| StorageError::engine("read", e))?;
        value
            .map(|bytes| {
                row_codec::decode_household(&bytes).map_err(|source| StorageError::Corrupt {
                    table: CF_HOUSEHOLDS,
                    key: id.to_string(),
                    source,
                })
            })
            .transpose()
    }

    /// Reads the stored persons of one household, in person-id order.
    pub fn persons_of(&self, id: HouseholdId) -> Result<Vec<Person>, StorageError> {
        let prefix = id.0.to_be_bytes();
        let mut persons = Vec::new();
        let mode = IteratorMode::From(&prefix, Direction::Forward);
        for item in self.db.iterator_cf(self.cf(CF_PERSONS), mode) {
            let (key, value) = item.map_err(|e| StorageError::engine("scan", e))?;
            if !key.starts_with(&prefix) {
                break;
            }
            persons.push(row_codec::decode_person(&value).map_err(|source| {
                StorageError::Corrupt {
                    table: CF_PERSONS,
                    key: hex::encode(&key),
                    source,
                }
            })?);
        }
        Ok(persons)
    }

    /// Upserts households in one durable write batch.
    pub fn write_households(&mut self, rows: &[Household]) -> Result<WriteSummary, StorageError> {
        let batch = self.households_batch(rows);
        self.commit(batch)?;
        for row in rows {
            self.image.upsert_household(row);
        }
        Ok(self.summary(rows.len()))
    }

    /// Upserts persons in one durable write batch. A person already stored under another
    /// household moves. Every person's household must be stored.
    pub fn write_persons(&mut self, rows: &[Person]) -> Result<WriteSummary, StorageError> {
        let batch = self.persons_batch(rows)?;
        self.commit(batch)?;
        for row in rows {
            self.image.upsert_person(row);
        }
        Ok(self.summary(rows.len()))
    }

    /// Bulk loading: shows the households in the image at once and returns their write batch,
    /// to be committed by a `Committer` (on another thread) while the next batch is prepared.
    /// Until it is committed the image is ahead of the database; if a commit fails, call
    /// `resync_image` before answering anything from this store.
    pub fn prepare_households(&mut self, rows: &[Household]) -> PreparedWrite {
        let batch = self.households_batch(rows);
        for row in rows {
            self.image.upsert_household(row);
        }
        PreparedWrite {
            batch,
            rows: rows.len(),
        }
    }

    /// Bulk loading of persons; see `prepare_households`.
    pub fn prepare_persons(&mut self, rows: &[Person]) -> Result<PreparedWrite, StorageError> {
        let batch = self.persons_batch(rows)?;
        for row in rows {
            self.image.upsert_person(row);
        }
        Ok(PreparedWrite {
            batch,
            rows: rows.len(),
        })
    }

    /// A committer for prepared batches.
    pub fn committer(&self) -> Committer {
        Committer {
            db: Arc::clone(&self.db),
            write_options: write_options(self.sync_writes),
        }
    }

    /// Rebuilds the image from the database (after a failed commit of a prepared batch), and
    /// takes the data version from it.
    pub fn resync_image(&mut self) -> Result<(), StorageError> {
        self.rebuild_image()
    }

    /// Takes the data version from the database after prepared batches were committed.
    pub fn refresh_data_version(&mut self) {
        self.image.data_version = self.db.latest_sequence_number();
    }

    fn households_batch(&self, rows: &[Household]) -> WriteBatch {
        let mut batch = WriteBatch::default();
        let mut value = Vec::with_capacity(128);
        let cf = self.cf(CF_HOUSEHOLDS);
        for row in rows {
            value.clear();
            row_codec::encode_household(row, &mut value);
            batch.put_cf(cf, row.household_id.0.to_be_bytes(), &value);
        }
        batch
    }

    fn persons_batch(&self, rows: &[Person]) -> Result<WriteBatch, StorageError> {
        let mut batch = WriteBatch::default();
        let mut value = Vec::with_capacity(32);
        let persons = self.cf(CF_PERSONS);
        // The last row of each person wins (a person given twice in one call moves once).
        let mut last: FastMap<IdNumber, usize> = FastMap::default();
        last.reserve(rows.len());
        for (index, row) in rows.iter().enumerate() {
            if !self.image.has_household(row.household_id) {
                return Err(StorageError::MissingHousehold {
                    person: row.person_id.text(),
                    household: row.household_id.to_string(),
                });
            }
            last.insert(row.person_id, index);
        }
        // Keys in ascending order: RocksDB's memtable insert hint then makes each insert cheap.
        let mut order: Vec<([u8; 16], usize)> = Vec::with_capacity(last.len());
        for (person, index) in &last {
            let household = rows[*index].household_id;
            if let Some(stored) = self.image.person_household(*person) {
                if stored != household {
                    batch.delete_cf(persons, person_key(stored, *person));
                }
            }
            order.push((person_key(household, *person), *index));
        }
        order.sort_unstable_by_key(|(key, _)| *key);
        for (key, index) in &order {
            value.clear();
            row_codec::encode_person(&rows[*index], &mut value);
            batch.put_cf(persons, key, &value);
        }
        Ok(batch)
    }

    /// Removes households with all their persons, in one durable write batch.
    pub fn remove_households(
        &mut self,
        ids: &[HouseholdId],
    ) -> Result<RemoveSummary, StorageError> {
        let mut batch = WriteBatch::default();
        let mut summary = RemoveSummary::default();
        let mut removed = Vec::new();
        for id in ids {
            if !self.image.has_household(*id) || removed.iter().any(|(seen, _)| seen == id) {
                if !self.image.has_household(*id) {
                    summary.not_found.push(*id);
                }
                continue;
            }
            let members: Vec<IdNumber> = self
                .persons_of(*id)?
                .into_iter()
                .map(|person| person.person_id)
                .collect();
            for person in &members {
                batch.delete_cf(self.cf(CF_PERSONS), person_key(*id, *person));
            }
            batch.delete_cf(self.cf(CF_HOUSEHOLDS), id.0.to_be_bytes());
            summary.persons += members.len();
            removed.push((*id, members));
        }
        self.commit(batch)?;
        for (id, members) in &removed {
            self.image.remove_household(*id, members);
            summary.households.push(*id);
        }
        summary.data_version = self.image.data_version;
        Ok(summary)
    }

    /// Writes the memtables to table files, so that the next open need not replay the WAL.
    /// Durability does not depend on it: every write is already in the synced WAL.
    pub fn flush(&self) -> Result<(), StorageError> {
        for name in COLUMN_FAMILIES {
            self.db
                .flush_cf(self.cf(name))
                .map_err(|e| StorageError::engine("flush", e))?;
        }
        Ok(())
    }

    /// Reads a node metadata value.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.db
            .get_cf(self.cf(CF_META), key.as_bytes())
            .map_err(|e| StorageError::engine("read", e))
    }

    /// Writes a node metadata value durably.
    pub fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META), key.as_bytes(), value);
        self.commit(batch)
    }

    /// The Raft log of the metadata group, on this database, with its caches loaded. Open one per
    /// store: two would each cache the log and disagree after the first write.
    pub fn raft_log(&self) -> Result<RaftLog, StorageError> {
        RaftLog::open(RaftDb {
            db: Arc::clone(&self.db),
            write_options: write_options(self.sync_writes),
        })
    }

    /// Reads a database read-only, beside the process that may hold it open (`tiermesh status`
    /// on a running node): the rows per table, the data version and the Raft log's state, as of
    /// the moment of opening. Builds no image.
    pub fn peek(path: &Path) -> Result<Peek, StorageError> {
        let db = DB::open_cf_for_read_only(&Options::default(), path, COLUMN_FAMILIES, false)
            .map_err(|error| StorageError::Open {
                path: path.to_path_buf(),
                message: error.into_string(),
            })?;
        let db = Arc::new(db);
        let mut counts = [0u64; 2];
        for (slot, name) in [CF_HOUSEHOLDS, CF_PERSONS].iter().enumerate() {
            let family = db.cf_handle(name).ok_or_else(|| StorageError::Open {
                path: path.to_path_buf(),
                message: format!("the column family '{name}' is missing"),
            })?;
            let mut rows = db.raw_iterator_cf(family);
            rows.seek_to_first();
            while rows.valid() {
                counts[slot] += 1;
                rows.next();
            }
            rows.status().map_err(|e| StorageError::engine("scan", e))?;
        }
        let data_version = db.latest_sequence_number();
        let raft = RaftLog::open(RaftDb {
            db,
            write_options: write_options(false),
        })?;
        Ok(Peek {
            households: counts[0],
            persons: counts[1],
            data_version,
            raft,
        })
    }

    /// Counts rows per table straight from RocksDB (for checks against the image).
    pub fn count_stored(&self) -> Result<(u64, u64), StorageError> {
        let mut counts = [0u64; 2];
        for (slot, name) in [CF_HOUSEHOLDS, CF_PERSONS].iter().enumerate() {
            for item in self.db.iterator_cf(self.cf(name), IteratorMode::Start) {
                item.map_err(|e| StorageError::engine("scan", e))?;
                counts[slot] += 1;
            }
        }
        Ok((counts[0], counts[1]))
    }

    fn commit(&mut self, batch: WriteBatch) -> Result<(), StorageError> {
        self.db
            .write_opt(batch, &self.write_options)
            .map_err(|e| StorageError::engine("write", e))?;
        self.image.data_version = self.db.latest_sequence_number();
        Ok(())
    }

    fn summary(&self, rows: usize) -> WriteSummary {
        WriteSummary {
            rows,
            data_version: self.image.data_version,
        }
    }
}

// The RocksDB side of the Raft log (`raft_log.rs`): plain bytes under plain keys, so that RocksDB
// stays named in this module only. Every write is one batch with the store's synced options.

/// The two Raft column families of the store's database.
pub(crate) struct RaftDb {
    db: Arc<DB>,
    write_options: WriteOptions,
}

/// One atomic write to the Raft column families, built up and handed to `RaftDb::write`.
pub(crate) struct RaftBatch<'a> {
    log: &'a rocksdb::ColumnFamily,
    state: &'a rocksdb::ColumnFamily,
    batch: WriteBatch,
}

impl RaftBatch<'_> {
    /// Stores a log entry.
    pub(crate) fn put_entry(&mut self, key: &[u8], value: &[u8]) {
        self.batch.put_cf(self.log, key, value);
    }

    /// Deletes the log entries with keys in `[from, to)`.
    pub(crate) fn delete_entries(&mut self, from: &[u8], to: &[u8]) {
        self.batch.delete_range_cf(self.log, from, to);
    }

    /// Stores a state value.
    pub(crate) fn put_state(&mut self, key: &str, value: &[u8]) {
        self.batch.put_cf(self.state, key.as_bytes(), value);
    }
}

impl RaftDb {
    fn column_family(&self, name: &str) -> &rocksdb::ColumnFamily {
        // Every column family is created at open; a missing one is a programmer error.
        self.db
            .cf_handle(name)
            .expect("column family created at open")
    }

    /// Reads a state value.
    pub(crate) fn state(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.db
            .get_cf(self.column_family(CF_RAFT_STATE), key.as_bytes())
            .map_err(|e| StorageError::engine("read", e))
    }

    /// Visits the log entries with keys from `from` on, in key order, until `visit` returns
    /// false or the entries end.
    pub(crate) fn scan_entries(
        &self,
        from: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, StorageError>,
    ) -> Result<(), StorageError> {
        let mut rows = self.db.raw_iterator_cf(self.column_family(CF_RAFT_LOG));
        rows.seek(from);
        while let (Some(key), Some(value)) = (rows.key(), rows.value()) {
            if !visit(key, value)? {
                return Ok(());
            }
            rows.next();
        }
        rows.status().map_err(|e| StorageError::engine("scan", e))
    }

    /// A new, empty batch.
    pub(crate) fn batch(&self) -> RaftBatch<'_> {
        RaftBatch {
            log: self.column_family(CF_RAFT_LOG),
            state: self.column_family(CF_RAFT_STATE),
            batch: WriteBatch::default(),
        }
    }

    /// Writes the batch durably (WAL, fsync unless the store was opened without sync).
    pub(crate) fn write(&self, batch: RaftBatch<'_>) -> Result<(), StorageError> {
        self.db
            .write_opt(batch.batch, &self.write_options)
            .map_err(|e| StorageError::engine("write", e))
    }
}
