//! The store on a real RocksDB on disk: durability across reopen, upserts, moves, removal, and
//! damage reported as errors.

use tiermesh_federation::date::Date;
use tiermesh_federation::record::{
    Cause, Education, Gender, Health, Household, HouseholdId, IdNumber, Industry, Labor, Person,
    Relation, Status,
};
use tiermesh_storage::{StorageError, Store, StoreOptions, INGEST_MIN_KEYS};

fn household(id: u64, members: u8) -> Household {
    Household {
        household_id: HouseholdId(id),
        region_code: tiermesh_federation::region::RegionCode::from_u64(id / 10_000)
            .expect("region"),
        head_id: IdNumber::pack(52010219800101001, 7),
        head_name: "王五".to_string(),
        members,
        cause: Cause::Illness,
        status: Status::Poor,
        registered_year: 2016,
        exit_year: None,
        income_per_capita: 350_000,
        housing_safe: true,
        water_safe: true,
        medical_insured: true,
        cadre_id: "C1".to_string(),
        industry: Industry::Planting,
        relocated: false,
        relocation_site: None,
        phone: Some("13800000000".to_string()),
    }
}

fn person(id: u64, household: u64) -> Person {
    Person {
        person_id: IdNumber::pack(id, 0),
        household_id: HouseholdId(household),
        relation: Relation::Child,
        gender: Gender::Male,
        birth_date: Date::from_days(10_000),
        education: Education::Primary,
        health: Health::Healthy,
        labor: Labor::None,
        in_school: true,
        employed: false,
    }
}

const H1: u64 = 5201020012010001;
const H2: u64 = 5201020012010002;
const H3: u64 = 5201020013020001;

#[test]
fn rows_survive_reopen_and_upserts_replace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = StoreOptions::default();
    let first_version;
    {
        let mut store = Store::open(dir.path(), &options).expect("open");
        let summary = store
            .write_households(&[household(H1, 2), household(H2, 1), household(H3, 1)])
            .expect("write");
        first_version = summary.data_version;
        store
            .write_persons(&[person(1, H1), person(2, H1), person(3, H2)])
            .expect("write persons");
        let mut changed = household(H1, 5);
        changed.cause = Cause::Water;
        store.write_households(&[changed]).expect("upsert");
        assert!(store.data_version() > first_version);
    }
    let store = Store::open(dir.path(), &options).expect("reopen");
    let image = store.image();
    assert_eq!(image.households_len(), 3);
    assert_eq!(image.persons_len(), 3);
    assert_eq!(image.persons_stored(HouseholdId(H1)), 2);
    let stored = store
        .household(HouseholdId(H1))
        .expect("read")
        .expect("present");
    assert_eq!(stored.members, 5);
    assert_eq!(stored.cause, Cause::Water);
    assert_eq!(store.count_stored().expect("count"), (3, 3));
    assert_eq!(image.data_version, store.data_version());
}

#[test]
fn a_person_moves_and_removal_takes_members() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = StoreOptions::default();
    {
        let mut store = Store::open(dir.path(), &options).expect("open");
        store
            .write_households(&[household(H1, 1), household(H2, 1)])
            .expect("write");
        store
            .write_persons(&[person(1, H1), person(2, H1)])
            .expect("persons");
        store.write_persons(&[person(2, H2)]).expect("move");
        assert_eq!(store.image().persons_stored(HouseholdId(H1)), 1);
        assert_eq!(store.image().persons_stored(HouseholdId(H2)), 1);
        assert_eq!(store.persons_of(HouseholdId(H1)).expect("scan").len(), 1);
        let summary = store
            .remove_households(&[HouseholdId(H1), HouseholdId(H3)])
            .expect("remove");
        assert_eq!(summary.households, vec![HouseholdId(H1)]);
        assert_eq!(summary.not_found, vec![HouseholdId(H3)]);
        assert_eq!(summary.persons, 1);
    }
    let store = Store::open(dir.path(), &options).expect("reopen");
    assert_eq!(store.image().households_len(), 1);
    assert_eq!(store.image().persons_len(), 1);
    assert!(!store.image().has_household(HouseholdId(H1)));
    assert_eq!(store.count_stored().expect("count"), (1, 1));
}

#[test]
fn persons_without_a_stored_household_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(dir.path(), &StoreOptions::default()).expect("open");
    let error = store
        .write_persons(&[person(1, H1)])
        .expect_err("no household");
    assert!(
        matches!(error, StorageError::MissingHousehold { .. }),
        "{error}"
    );
    assert_eq!(store.image().persons_len(), 0);
}

#[test]
fn a_damaged_row_is_an_error_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = Store::open(dir.path(), &StoreOptions::default()).expect("open");
        store.write_households(&[household(H1, 1)]).expect("write");
    }
    {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(false);
        let names = rocksdb::DB::list_cf(&options, dir.path()).expect("list");
        let db = rocksdb::DB::open_cf(&options, dir.path(), names).expect("raw open");
        let cf = db.cf_handle("households").expect("cf");
        db.put_cf(cf, H1.to_be_bytes(), b"\x01garbage")
            .expect("put");
    }
    let error = Store::open(dir.path(), &StoreOptions::default()).expect_err("damaged");
    let message = error.to_string();
    assert!(
        message.contains("households row") && message.contains("damaged"),
        "{message}"
    );
}

#[test]
fn a_damaged_database_file_is_an_error_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = Store::open(dir.path(), &StoreOptions::default()).expect("open");
        store.write_households(&[household(H1, 1)]).expect("write");
    }
    let current = std::fs::read_to_string(dir.path().join("CURRENT")).expect("CURRENT");
    let manifest = dir.path().join(current.trim());
    std::fs::write(&manifest, b"this is not a manifest").expect("damage");
    let error = Store::open(dir.path(), &StoreOptions::default()).expect_err("damaged");
    assert!(matches!(error, StorageError::Open { .. }), "{error}");
    assert!(
        error.to_string().contains("cannot open the database"),
        "{error}"
    );
}

#[test]
fn a_person_given_twice_in_one_batch_is_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(dir.path(), &StoreOptions::default()).expect("open");
    store
        .write_households(&[household(H1, 1), household(H2, 1), household(H3, 1)])
        .expect("write");
    store.write_persons(&[person(1, H1)]).expect("first");
    store
        .write_persons(&[person(1, H2), person(1, H3)])
        .expect("moves twice");
    assert_eq!(store.count_stored().expect("count"), (3, 1));
    assert_eq!(store.image().persons_stored(HouseholdId(H3)), 1);
    assert_eq!(store.image().persons_stored(HouseholdId(H1)), 0);
    assert_eq!(store.image().persons_stored(HouseholdId(H2)), 0);
    drop(store);
    let store = Store::open(dir.path(), &StoreOptions::default()).expect("reopen");
    assert_eq!(store.image().persons_len(), 1);
}

// Bulk loads: a prepared write of at least `INGEST_MIN_KEYS` keys is written as a table file and
// ingested instead of going through the WAL. These tests hold that path to the same behaviour
// as the small one, on a real database, across reopen.

/// Households `first..first + count` of one village, each with `members` persons.
fn village(first: u64, count: u64) -> Vec<Household> {
    (first..first + count)
        .map(|serial| household(5201020012010000 + serial, 2))
        .collect()
}

fn bulk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir.join("bulk-import"))
        .expect("the bulk-load folder exists")
        .map(|entry| entry.expect("entry").path())
        .collect()
}

#[test]
fn a_bulk_load_is_durable_moves_the_data_version_and_leaves_no_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = INGEST_MIN_KEYS as u64 + 10;
    let households = village(0, rows);
    let persons: Vec<Person> = households
        .iter()
        .flat_map(|row| {
            let base = (row.household_id.0 % 100_000) * 10;
            [
                person(base + 1, row.household_id.0),
                person(base + 2, row.household_id.0),
            ]
        })
        .collect();
    let versions;
    {
        let mut store = Store::open(dir.path(), &StoreOptions::default()).expect("open");
        let before = store.data_version();
        let committer = store.committer();
        let prepared = store.prepare_households(&households);
        assert_eq!(prepared.rows(), households.len());
        let after_households = committer.commit(prepared).expect("bulk households");
        let prepared = store.prepare_persons(&persons).expect("prepare persons");
        let after_persons = committer.commit(prepared).expect("bulk persons");
        assert!(before < after_households && after_households < after_persons);
        store.refresh_data_version();
        versions = store.data_version();
        assert_eq!(store.image().households_len(), households.len());
        assert_eq!(store.image().persons_len(), persons.len());
        assert!(
            bulk_files(dir.path()).is_empty(),
            "ingested files are moved into the database"
        );
    }
    let store = Store::open(dir.path(), &StoreOptions::default()).expect("reopen");
    assert_eq!(store.data_version(), versions);
    assert_eq!(
        store.count_stored().expect("count"),
        (households.len() as u64, persons.len() as u64)
    );
    let sample = &households[rows as usize / 2];
    assert_eq!(
        store.household(sample.household_id).expect("read"),
        Some(sample.clone())
    );
    assert_eq!(
        store.persons_of(sample.household_id).expect("read").len(),
        2
    );
    // Many reads at once (on several threads) answer in the order asked, unknown ids as None.
    let mut asked: Vec<HouseholdId> = households
        .iter()
        .rev()
        .step_by(7)
        .map(|row| row.household_id)
        .collect();
    asked.insert(3, HouseholdId(H3 + 999));
    asked.push(asked[0]);
    let expected: Vec<Option<Household>> = asked
        .iter()
        .map(|id| {
            households
                .iter()
                .find(|row| row.household_id == *id)
                .cloned()
        })
        .collect();
    assert!(asked.len() > tiermesh_storage::PARALLEL_READS);
    assert_eq!(store.households(&asked).expect("read many"), expected);
    assert_eq!(store.households(&[]).expect("read none"), Vec::new());
}

#[test]
fn a_bulk_load_over_stored_rows_replaces_them_and_moves_persons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = INGEST_MIN_KEYS as u64 + 1;
    let mut households = village(0, rows);
    let target = household(H3, 3);
    households.push(target.clone());
    let mut store = Store::open(dir.path(), &StoreOptions::default()).expect("open");
    // Small writes first (WAL and memtable), then a bulk load over the same keys.
    store
        .write_households(&households)
        .expect("bulk households");
    store
        .write_persons(&[person(1, households[0].household_id.0)])
        .expect("small person");
    let mut changed: Vec<Household> = households
        .iter()
        .map(|row| Household {
            members: 1,
            ..row.clone()
        })
        .collect();
    changed.pop();
    store.write_households(&changed).expect("bulk replace");
    // Every household but the last gets one person; person 1 moves to H3 on the way, twice
    // given in the batch: the last wins.
    let mut persons: Vec<Person> = changed
        .iter()
        .enumerate()
        .map(|(index, row)| person(1_000 + index as u64, row.household_id.0))
        .collect();
    persons.insert(10, person(1, changed[5].household_id.0));
    persons.push(person(1, H3));
    store.write_persons(&persons).expect("bulk persons");
    let check = |store: &Store| {
        assert_eq!(
            store.household(changed[7].household_id).expect("read"),
            Some(changed[7].clone())
        );
        assert_eq!(
            store.household(HouseholdId(H3)).expect("read"),
            Some(target.clone())
        );
        assert_eq!(
            store.count_stored().expect("count"),
            (households.len() as u64, changed.len() as u64 + 1)
        );
        let at_h3 = store.persons_of(HouseholdId(H3)).expect("read");
        assert_eq!(at_h3, vec![person(1, H3)]);
        assert_eq!(store.image().persons_stored(HouseholdId(H3)), 1);
        assert_eq!(store.image().persons_stored(changed[0].household_id), 1);
        assert_eq!(store.image().persons_stored(changed[5].household_id), 1);
    };
    check(&store);
    drop(store);
    let store = Store::open(dir.path(), &StoreOptions::default()).expect("reopen");
    check(&store);
}

#[test]
fn a_table_file_left_by_a_crash_is_never_ingested() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut store = Store::open(dir.path(), &StoreOptions::default()).expect("open");
        store.write_households(&[household(H1, 1)]).expect("write");
    }
    let leftover = dir.path().join("bulk-import").join("households-7.sst");
    std::fs::write(&leftover, b"half a table file").expect("plant");
    let store = Store::open(dir.path(), &StoreOptions::default()).expect("reopen");
    assert!(
        !leftover.exists(),
        "the bulk-load folder is emptied at open"
    );
    assert_eq!(store.count_stored().expect("count"), (1, 0));
}

#[test]
fn staged_rows_that_are_discarded_leave_the_image_as_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(dir.path(), &StoreOptions::default()).expect("open");
    store.write_households(&[household(H1, 1)]).expect("write");
    let slot = store.stage_household(household(H2, 1));
    assert_eq!(slot, 1, "the second household stored takes the second slot");
    let placed = store.stage_person(person(1, H2)).expect("staged person");
    assert_eq!(placed.household_slot, slot);
    assert_eq!(placed.previous, None, "a new person");
    assert!(matches!(
        store.stage_person(person(2, H3)),
        Err(StorageError::MissingHousehold { .. })
    ));
    assert_eq!(store.image().households_len(), 2);
    store.discard_staged().expect("discard");
    assert_eq!(store.image().households_len(), 1);
    assert_eq!(store.image().persons_len(), 0);
    assert!(store.take_staged_writes().is_empty());
}

mod bulk_model {
    //! Random sequences of small and bulk writes against a model of what must be stored.
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// One write: `count` rows, drawn with a small generator from `seed`, over a key space
    /// small enough that upserts and moves are common.
    #[derive(Clone, Debug)]
    struct Write {
        persons: bool,
        count: usize,
        seed: u64,
    }

    fn write_strategy() -> impl Strategy<Value = Write> {
        (
            any::<bool>(),
            prop_oneof![1usize..50, INGEST_MIN_KEYS..INGEST_MIN_KEYS + 600],
            any::<u64>(),
        )
            .prop_map(|(persons, count, seed)| Write {
                persons,
                count,
                seed,
            })
    }

    fn next(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *state >> 33
    }

    const HOUSEHOLDS: u64 = 6_000;
    const PERSONS: u64 = 9_000;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]
        #[test]
        fn bulk_and_small_writes_store_what_the_model_says(
            writes in proptest::collection::vec(write_strategy(), 1..6)
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut store = Store::open(dir.path(), &StoreOptions::default()).expect("open");
            let mut households: BTreeMap<u64, Household> = BTreeMap::new();
            let mut persons: BTreeMap<u64, Person> = BTreeMap::new();
            for write in &writes {
                let mut state = write.seed;
                if write.persons && !households.is_empty() {
                    let ids: Vec<u64> = households.keys().copied().collect();
                    let rows: Vec<Person> = (0..write.count)
                        .map(|_| {
                            let household = ids[next(&mut state) as usize % ids.len()];
                            let mut row = person(1 + next(&mut state) % PERSONS, household);
                            row.employed = next(&mut state) % 2 == 0;
                            row
                        })
                        .collect();
                    store.write_persons(&rows).expect("persons");
                    for row in rows {
                        persons.insert(row.person_id.0, row);
                    }
                } else {
                    let rows: Vec<Household> = (0..write.count)
                        .map(|_| {
                            let mut row = village(next(&mut state) % HOUSEHOLDS, 1).remove(0);
                            row.members = (1 + next(&mut state) % 9) as u8;
                            row
                        })
                        .collect();
                    store.write_households(&rows).expect("households");
                    for row in rows {
                        households.insert(row.household_id.0, row);
                    }
                }
            }
            for reopened in [false, true] {
                if reopened {
                    drop(store);
                    store = Store::open(dir.path(), &StoreOptions::default()).expect("reopen");
                }
                prop_assert_eq!(
                    store.count_stored().expect("count"),
                    (households.len() as u64, persons.len() as u64)
                );
                prop_assert_eq!(store.image().persons_len(), persons.len());
                for (id, row) in &households {
                    let stored = store.household(HouseholdId(*id)).expect("read");
                    prop_assert_eq!(stored.as_ref(), Some(row));
                    let mut expected: Vec<Person> = persons
                        .values()
                        .filter(|person| person.household_id.0 == *id)
                        .cloned()
                        .collect();
                    expected.sort_by_key(|person| person.person_id);
                    let stored = store.persons_of(HouseholdId(*id)).expect("read");
                    prop_assert_eq!(
                        usize::from(store.image().persons_stored(HouseholdId(*id))),
                        expected.len()
                    );
                    prop_assert_eq!(stored, expected);
                }
            }
        }
    }
}
