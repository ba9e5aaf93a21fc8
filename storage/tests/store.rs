//! The store on a real RocksDB on disk: durability across reopen, upserts, moves, removal, and
//! damage reported as errors.

use tiermesh_federation::date::Date;
use tiermesh_federation::record::{
    Cause, Education, Gender, Health, Household, HouseholdId, IdNumber, Industry, Labor, Person,
    Relation, Status,
};
use tiermesh_storage::{StorageError, Store, StoreOptions};

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
