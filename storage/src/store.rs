//! The node's RocksDB database: one column family per table plus node metadata, keys ordered so
//! that a region is one range scan, durable writes (WAL-synced batches, or fsynced table files
//! ingested for bulk loads), and the columnar image beside it.
//!
//! Keys: `households` = household_id (u64 big-endian), so a region's households are one range;
//! `persons` = household_id ++ person_id (both u64 big-endian), so a household's persons and a
//! region's persons are one range. Where a person lives is found through the image (rebuilt from
//! `persons` at open), so no second index is written per person.
//!
//! Invariant: whenever the store is not mutably borrowed, the image reflects exactly the
//! committed rows. `write_*` update the image, commit, and rebuild the image if the commit
//! failed; bulk loading (`stage_*`, `prepare_*` and a `Committer` on another thread) lets the
//! image run ahead of the database until the commits are done, and its caller must
//! `resync_image` (or `discard_staged`) when one fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tiermesh_crypto::hex;

use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use tiermesh_federation::image::{Image, Placed};
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
    ingest_folder: PathBuf,
    /// Bulk loads so far (names the next table file).
    ingested: Arc<std::sync::atomic::AtomicU64>,
    staged: Staged,
    spares: Spares,
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

/// One key's new state in a prepared write: the key as a big-endian number (so that number
/// order is key order), and the index of its row, or `DELETE`.
#[derive(Clone, Copy)]
struct Op {
    key: u128,
    row: u32,
}

/// `Op::row` of a deletion.
const DELETE: u32 = u32::MAX;

/// Rows of one table whose new state the image already shows, waiting for
/// `Committer::commit`, which puts them in key order (one operation per key, the last given
/// winning) and encodes them: that work is done on the committer's thread.
pub struct PreparedWrite {
    table: &'static str,
    ops: Vec<Op>,
    households: Vec<Household>,
    persons: Vec<Person>,
    rows: usize,
}

impl PreparedWrite {
    fn new(table: &'static str, capacity: usize) -> PreparedWrite {
        let (households, persons) = if table == CF_HOUSEHOLDS {
            (capacity, 0)
        } else {
            (0, capacity)
        };
        PreparedWrite {
            table,
            ops: Vec::with_capacity(capacity + capacity / 8),
            households: Vec::with_capacity(households),
            persons: Vec::with_capacity(persons),
            rows: 0,
        }
    }

    fn put_household(&mut self, row: Household) {
        self.push(u128::from(row.household_id.0), self.households.len());
        self.households.push(row);
    }

    fn put_person(&mut self, row: Person) {
        self.push(
            person_key(row.household_id, row.person_id),
            self.persons.len(),
        );
        self.persons.push(row);
    }

    fn delete(&mut self, key: u128) {
        self.ops.push(Op { key, row: DELETE });
    }

    fn push(&mut self, key: u128, row: usize) {
        // A prepared write holds far fewer than u32::MAX rows (batches are bounded by the caller).
        let row = u32::try_from(row).expect("a prepared write of under 4 billion rows");
        self.rows += 1;
        self.ops.push(Op { key, row });
    }

    /// Sorts by key, keeping of each key only its last operation (the sort is stable).
    fn seal(&mut self) {
        self.ops.sort_by_key(|op| op.key);
        let mut kept = 0;
        for index in 0..self.ops.len() {
            let last_of_key = self
                .ops
                .get(index + 1)
                .is_none_or(|next| next.key != self.ops[index].key);
            if last_of_key {
                self.ops[kept] = self.ops[index];
                kept += 1;
            }
        }
        self.ops.truncate(kept);
    }

    /// The operations in key order: key bytes, and the encoded value or `None` for a deletion.
    fn for_each(
        &self,
        mut apply: impl FnMut(&[u8], Option<&[u8]>) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let mut value = Vec::with_capacity(256);
        let key_bytes = if self.table == CF_HOUSEHOLDS { 8 } else { 16 };
        for op in &self.ops {
            let key = op.key.to_be_bytes();
            let key = &key[16 - key_bytes..];
            if op.row == DELETE {
                apply(key, None)?;
                continue;
            }
            value.clear();
            let row = op.row as usize;
            if self.table == CF_HOUSEHOLDS {
                row_codec::encode_household(&self.households[row], &mut value);
            } else {
                row_codec::encode_person(&self.persons[row], &mut value);
            }
            apply(key, Some(&value))?;
        }
        Ok(())
    }

    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.rows
    }

    fn clear(&mut self) {
        self.ops.clear();
        self.households.clear();
        self.persons.clear();
        self.rows = 0;
    }
}

/// Emptied prepared writes, kept for the next batch of their table: a bulk load then reuses the
/// same memory instead of asking the allocator (and the kernel) for new pages every batch.
#[derive(Clone, Default)]
struct Spares(Arc<std::sync::Mutex<Vec<PreparedWrite>>>);

/// Spare prepared writes kept at most.
const SPARES_MAX: usize = 8;

impl Spares {
    fn take(&self, table: &'static str) -> PreparedWrite {
        let mut spares = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match spares.iter().position(|spare| spare.table == table) {
            Some(index) => spares.swap_remove(index),
            None => PreparedWrite::new(table, STAGED_ROWS_HINT),
        }
    }

    fn give(&self, mut prepared: PreparedWrite) {
        prepared.clear();
        let mut spares = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if spares.len() < SPARES_MAX {
            spares.push(prepared);
        }
    }
}

impl std::fmt::Debug for PreparedWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PreparedWrite({} rows of {})", self.rows, self.table)
    }
}

/// Prepared writes of at least this many keys are bulk-loaded: written as a table file and
/// ingested (RocksDB's bulk-load path), instead of going through the WAL and the memtable. The
/// file is fsynced and the ingestion is recorded in the synced MANIFEST before `commit`
/// returns, so such rows are as durable as WAL-synced ones.
pub const INGEST_MIN_KEYS: usize = 4_096;

/// Folder inside the database where table files for ingestion are written; emptied at open
/// (a file left there by a crash was never ingested, and its rows were never reported stored).
const INGEST_FOLDER: &str = "bulk-import";

/// Meta key written (WAL, synced) after each ingestion, so that the data version moves: an
/// ingested file that overlaps nothing takes no sequence number of its own.
const META_INGESTED: &str = "ingested-batches";

/// Commits prepared batches, on another thread than the one that prepares the next.
pub struct Committer {
    db: Arc<DB>,
    write_options: WriteOptions,
    ingest_folder: PathBuf,
    ingested: Arc<std::sync::atomic::AtomicU64>,
    spares: Spares,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Committer")
    }
}

impl Committer {
    /// Makes the prepared write durable: a large one is written as a table file and ingested,
    /// a small one goes through the WAL (fsync unless the store was opened without sync).
    /// Returns the sequence number after it.
    pub fn commit(&self, mut prepared: PreparedWrite) -> Result<u64, StorageError> {
        let cf = self
            .db
            .cf_handle(prepared.table)
            .expect("column family created at open");
        prepared.seal();
        let written = self.write(cf, &prepared);
        self.spares.give(prepared);
        written?;
        Ok(self.db.latest_sequence_number())
    }

    fn write(
        &self,
        cf: &rocksdb::ColumnFamily,
        prepared: &PreparedWrite,
    ) -> Result<(), StorageError> {
        if prepared.ops.len() >= INGEST_MIN_KEYS {
            self.ingest(cf, prepared)
        } else {
            let mut batch = WriteBatch::default();
            prepared.for_each(|key, value| {
                match value {
                    Some(value) => batch.put_cf(cf, key, value),
                    None => batch.delete_cf(cf, key),
                }
                Ok(())
            })?;
            self.db
                .write_opt(batch, &self.write_options)
                .map_err(|e| StorageError::engine("write", e))
        }
    }

    fn ingest(
        &self,
        cf: &rocksdb::ColumnFamily,
        prepared: &PreparedWrite,
    ) -> Result<(), StorageError> {
        let number = self
            .ingested
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self
            .ingest_folder
            .join(format!("{}-{number}.sst", prepared.table));
        let result = self.write_table_file(&path, prepared).and_then(|()| {
            let mut options = rocksdb::IngestExternalFileOptions::default();
            options.set_move_files(true);
            self.db
                .ingest_external_file_cf_opts(cf, &options, vec![&path])
                .map_err(|e| StorageError::engine("bulk load", e))
        });
        if result.is_err() {
            // Moved into the database on success; a failed file is of no use.
            let _ = std::fs::remove_file(&path);
        }
        result?;
        let meta = self
            .db
            .cf_handle(CF_META)
            .expect("column family created at open");
        self.db
            .put_cf_opt(
                meta,
                META_INGESTED,
                (number + 1).to_be_bytes(),
                &self.write_options,
            )
            .map_err(|e| StorageError::engine("write", e))
    }

    fn write_table_file(&self, path: &Path, prepared: &PreparedWrite) -> Result<(), StorageError> {
        // Uncompressed: compressing costs the import more than the disk space saves it (the
        // files are about 1.6 times larger); compactions that later rewrite them use LZ4.
        let mut options = table_options();
        options.set_compression_type(rocksdb::DBCompressionType::None);
        let mut writer = rocksdb::SstFileWriter::create(&options);
        let failed = |e| StorageError::engine("bulk load", e);
        writer.open(path).map_err(failed)?;
        prepared.for_each(|key, value| match value {
            Some(value) => writer.put(key, value).map_err(failed),
            None => writer.delete(key).map_err(failed),
        })?;
        // Syncs the file before returning.
        writer.finish().map_err(failed)
    }
}

/// Threads that read in parallel in `Store::households`.
pub const PARALLEL_READS: usize = 8;

/// Options of the record tables, shared by the column families and the bulk-load writer.
fn table_options() -> Options {
    let mut options = Options::default();
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    options
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn missing_household(row: &Person) -> StorageError {
    StorageError::MissingHousehold {
        person: row.person_id.text(),
        household: row.household_id.to_string(),
    }
}

/// Rows a staged write makes room for at first.
const STAGED_ROWS_HINT: usize = 1 << 16;

/// Writes staged row by row and not yet handed out, per table.
#[derive(Default)]
struct Staged {
    households: Option<PreparedWrite>,
    persons: Option<PreparedWrite>,
}

/// The persons key as a number: household id, then person id, so that its big-endian bytes
/// are the stored key.
fn person_key(household: HouseholdId, person: IdNumber) -> u128 {
    (u128::from(household.0) << 64) | u128::from(person.0)
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
            let mut cf_options = table_options();
            cf_options.set_write_buffer_size(options.write_buffer_bytes);
            ColumnFamilyDescriptor::new(*name, cf_options)
        });
        let db = DB::open_cf_descriptors(&db_options, path, descriptors).map_err(|error| {
            StorageError::Open {
                path: path.to_path_buf(),
                message: error.into_string(),
            }
        })?;
        let ingest_folder = path.join(INGEST_FOLDER);
        if ingest_folder.exists() {
            std::fs::remove_dir_all(&ingest_folder).map_err(|error| StorageError::Open {
                path: ingest_folder.clone(),
                message: format!("cannot clear the bulk-load folder: {error}"),
            })?;
        }
        std::fs::create_dir_all(&ingest_folder).map_err(|error| StorageError::Open {
            path: ingest_folder.clone(),
            message: format!("cannot create the bulk-load folder: {error}"),
        })?;
        let ingested = db
            .get_cf(
                db.cf_handle(CF_META)
                    .expect("column family created at open"),
                META_INGESTED,
            )
            .map_err(|e| StorageError::engine("read", e))?
            .and_then(|value| <[u8; 8]>::try_from(value.as_slice()).ok())
            .map_or(0, u64::from_be_bytes);
        let write_options = write_options(options.sync_writes);
        let mut store = Store {
            ingest_folder,
            ingested: Arc::new(std::sync::atomic::AtomicU64::new(ingested)),
            staged: Staged::default(),
            spares: Spares::default(),
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
        self.staged = Staged::default();
        let mut image = Image::new();
        let estimate = |name: &str| {
            self.db
                .property_int_value_cf(self.cf(name), "rocksdb.estimate-num-keys")
                .ok()
                .flatten()
                // An estimate read from the files on disk: `Image::reserve` caps what it takes.
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

    /// Reads stored households, one answer per id in `ids`' order. The reads run on
    /// [`PARALLEL_READS`] threads in key order: right after a bulk load the table files are not
    /// in the page cache (the files' writer drops them from it), so each read can wait on the
    /// disk, and the disk serves several at once.
    pub fn households(&self, ids: &[HouseholdId]) -> Result<Vec<Option<Household>>, StorageError> {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_unstable_by_key(|position| ids[*position]);
        let chunk = order.len().div_ceil(PARALLEL_READS).max(1);
        let mut found: Vec<Option<Household>> = vec![None; ids.len()];
        let parts = std::thread::scope(|scope| {
            let readers: Vec<_> = order
                .chunks(chunk)
                .map(|positions| {
                    scope.spawn(move || {
                        positions
                            .iter()
                            .map(|position| Ok((*position, self.household(ids[*position])?)))
                            .collect::<Result<Vec<_>, StorageError>>()
                    })
                })
                .collect();
            readers
                .into_iter()
                .map(|reader| {
                    reader.join().unwrap_or_else(|_| {
                        Err(StorageError::Engine {
                            operation: "read",
                            message: "a reader thread panicked".to_string(),
                        })
                    })
                })
                .collect::<Result<Vec<_>, StorageError>>()
        })?;
        for (position, household) in parts.into_iter().flatten() {
            found[position] = household;
        }
        Ok(found)
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

    /// Upserts households in one durable write (the last row of a household given twice wins).
    pub fn write_households(&mut self, rows: &[Household]) -> Result<WriteSummary, StorageError> {
        let prepared = self.prepare_households(rows);
        self.commit_prepared(prepared, rows.len())
    }

    /// Upserts persons in one durable write. A person already stored under another household
    /// moves; a person given twice moves once, to the last. Every person's household must be
    /// stored.
    pub fn write_persons(&mut self, rows: &[Person]) -> Result<WriteSummary, StorageError> {
        let prepared = self.prepare_persons(rows)?;
        self.commit_prepared(prepared, rows.len())
    }

    /// Commits a write the image already shows. The store is borrowed mutably throughout, so
    /// nobody reads the image while it is ahead of the database; if the commit fails, the image
    /// is rebuilt from the database before the error is returned.
    fn commit_prepared(
        &mut self,
        prepared: PreparedWrite,
        rows: usize,
    ) -> Result<WriteSummary, StorageError> {
        if let Err(error) = self.committer().commit(prepared) {
            self.rebuild_image()?;
            return Err(error);
        }
        self.image.data_version = self.db.latest_sequence_number();
        Ok(self.summary(rows))
    }

    /// Bulk loading: shows the households in the image at once and returns their write, to be
    /// committed by a `Committer` (on another thread) while the next batch is prepared. Until it
    /// is committed the image is ahead of the database; if a commit fails, call `resync_image`
    /// before answering anything from this store.
    pub fn prepare_households(&mut self, rows: &[Household]) -> PreparedWrite {
        for row in rows {
            self.stage_household(row.clone());
        }
        self.staged
            .households
            .take()
            .unwrap_or_else(|| PreparedWrite::new(CF_HOUSEHOLDS, 0))
    }

    /// Bulk loading of persons; see `prepare_households`. Fails, changing nothing, when a
    /// person's household is not stored.
    pub fn prepare_persons(&mut self, rows: &[Person]) -> Result<PreparedWrite, StorageError> {
        if let Some(row) = rows
            .iter()
            .find(|row| !self.image.has_household_cached(row.household_id))
        {
            return Err(missing_household(row));
        }
        for row in rows {
            self.stage_person(row.clone())?;
        }
        Ok(self
            .staged
            .persons
            .take()
            .unwrap_or_else(|| PreparedWrite::new(CF_PERSONS, 0)))
    }

    /// Bulk loading row by row: shows the household in the image at once and adds it to the
    /// staged write that `take_staged_writes` hands out. Until that write is committed the image
    /// is ahead of the database (see `prepare_households`); `discard_staged` undoes staging.
    /// Returns the household's slot in the image.
    pub fn stage_household(&mut self, row: Household) -> u32 {
        let slot = self.image.upsert_household(&row);
        let spares = &self.spares;
        self.staged
            .households
            .get_or_insert_with(|| spares.take(CF_HOUSEHOLDS))
            .put_household(row);
        slot
    }

    /// Bulk loading row by row, as `stage_household`: places the person in the image and
    /// returns where (`Placed`: the household's slot, and the household the person was stored
    /// under before). Fails, changing nothing, when the person's household is not in the image.
    pub fn stage_person(&mut self, row: Person) -> Result<Placed, StorageError> {
        let placed = self
            .image
            .place_person(&row)
            .ok_or_else(|| missing_household(&row))?;
        let before = placed.previous_household();
        let spares = &self.spares;
        let staged = self
            .staged
            .persons
            .get_or_insert_with(|| spares.take(CF_PERSONS));
        if let Some(previous) = before.filter(|previous| *previous != row.household_id) {
            staged.delete(person_key(previous, row.person_id));
        }
        staged.put_person(row);
        Ok(placed)
    }

    /// The stored head ID of a household; cheap for households asked for in stored order.
    pub fn stored_head(&mut self, id: HouseholdId) -> Option<IdNumber> {
        self.image.head_id_cached(id)
    }

    /// Makes room in the image for about `rows` more rows of persons (`persons`) or households,
    /// ahead of a bulk load.
    pub fn expect_rows(&mut self, persons: bool, rows: usize) {
        if persons {
            self.image.reserve(0, rows);
        } else {
            self.image.reserve(rows, 0);
        }
    }

    /// Takes a person index prepared ahead of a bulk load (see `PersonIndex`), when the image has
    /// no persons yet; returns whether it did.
    pub fn adopt_person_index(&mut self, index: tiermesh_federation::image::PersonIndex) -> bool {
        self.image.adopt_person_index(index)
    }

    /// Brings the image's index entry of this household into the cache ahead of staging it
    /// (see `SlotIndex::warm`).
    pub fn warm_household(&self, id: HouseholdId) {
        self.image.warm_household(id);
    }

    /// As `warm_household`, for a person.
    pub fn warm_person(&self, id: IdNumber) {
        self.image.warm_person(id);
    }

    /// A stored household's `members` and the persons stored for it; cheap for households
    /// asked for in stored order.
    pub fn member_counts(&mut self, id: HouseholdId) -> Option<(u8, u16)> {
        self.image.member_counts_cached(id)
    }

    /// The staged writes, households first (a person's household must be durable no later
    /// than the person), for a `Committer`.
    pub fn take_staged_writes(&mut self) -> Vec<PreparedWrite> {
        [self.staged.households.take(), self.staged.persons.take()]
            .into_iter()
            .flatten()
            .collect()
    }

    /// Drops what was staged and not taken, rebuilding the image if anything was.
    pub fn discard_staged(&mut self) -> Result<(), StorageError> {
        let staged = self.staged.households.take().is_some() | self.staged.persons.take().is_some();
        if staged {
            self.rebuild_image()?;
        }
        Ok(())
    }

    /// A committer for prepared batches.
    pub fn committer(&self) -> Committer {
        Committer {
            db: Arc::clone(&self.db),
            write_options: write_options(self.sync_writes),
            ingest_folder: self.ingest_folder.clone(),
            ingested: Arc::clone(&self.ingested),
            spares: self.spares.clone(),
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
                batch.delete_cf(self.cf(CF_PERSONS), person_key(*id, *person).to_be_bytes());
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
