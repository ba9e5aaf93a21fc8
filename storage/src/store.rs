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

use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use tiermesh_federation::image::Image;
use tiermesh_federation::record::{Household, HouseholdId, IdNumber, Person};

use crate::error::StorageError;
use crate::row_codec;

const CF_HOUSEHOLDS: &str = "households";
const CF_PERSONS: &str = "persons";
const CF_META: &str = "meta";
const COLUMN_FAMILIES: [&str; 3] = [CF_HOUSEHOLDS, CF_PERSONS, CF_META];

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
    db: DB,
    path: PathBuf,
    image: Image,
    write_options: WriteOptions,
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
        let mut write_options = WriteOptions::default();
        write_options.set_sync(options.sync_writes);
        let mut store = Store {
            db,
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
        let snapshot = self.db.snapshot();
        for item in snapshot.iterator_cf(self.cf(CF_HOUSEHOLDS), IteratorMode::Start) {
            let (key, value) = item.map_err(|e| StorageError::engine("scan", e))?;
            let row =
                row_codec::decode_household(&value).map_err(|source| StorageError::Corrupt {
                    table: CF_HOUSEHOLDS,
                    key: hex(&key),
                    source,
                })?;
            image.upsert_household(&row);
        }
        for item in snapshot.iterator_cf(self.cf(CF_PERSONS), IteratorMode::Start) {
            let (key, value) = item.map_err(|e| StorageError::engine("scan", e))?;
            let row = row_codec::decode_person(&value).map_err(|source| StorageError::Corrupt {
                table: CF_PERSONS,
                key: hex(&key),
                source,
            })?;
            if !image.upsert_person(&row) {
                return Err(StorageError::MissingHousehold {
                    person: row.person_id.text(),
                    household: row.household_id.to_string(),
                });
            }
        }
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
                    key: hex(&key),
                    source,
                }
            })?);
        }
        Ok(persons)
    }

    /// Upserts households in one durable write batch.
    pub fn write_households(&mut self, rows: &[Household]) -> Result<WriteSummary, StorageError> {
        let mut batch = WriteBatch::default();
        let mut value = Vec::with_capacity(128);
        let cf = self.cf(CF_HOUSEHOLDS);
        for row in rows {
            value.clear();
            row_codec::encode_household(row, &mut value);
            batch.put_cf(cf, row.household_id.0.to_be_bytes(), &value);
        }
        self.commit(batch)?;
        for row in rows {
            self.image.upsert_household(row);
        }
        Ok(self.summary(rows.len()))
    }

    /// Upserts persons in one durable write batch. A person already stored under another
    /// household moves. Every person's household must be stored.
    pub fn write_persons(&mut self, rows: &[Person]) -> Result<WriteSummary, StorageError> {
        let mut batch = WriteBatch::default();
        let mut value = Vec::with_capacity(32);
        let persons = self.cf(CF_PERSONS);
        // Where each person of this batch was put, so a person given twice moves only once.
        let mut placed: std::collections::HashMap<IdNumber, HouseholdId> =
            std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            if !self.image.has_household(row.household_id) {
                return Err(StorageError::MissingHousehold {
                    person: row.person_id.text(),
                    household: row.household_id.to_string(),
                });
            }
            let previous = placed
                .insert(row.person_id, row.household_id)
                .or_else(|| self.image.person_household(row.person_id));
            if let Some(previous) = previous {
                if previous != row.household_id {
                    batch.delete_cf(persons, person_key(previous, row.person_id));
                }
            }
            value.clear();
            row_codec::encode_person(row, &mut value);
            batch.put_cf(persons, person_key(row.household_id, row.person_id), &value);
        }
        self.commit(batch)?;
        for row in rows {
            self.image.upsert_person(row);
        }
        Ok(self.summary(rows.len()))
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
