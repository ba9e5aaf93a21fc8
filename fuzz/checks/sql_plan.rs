//! The property of the `sql_plan` fuzz target, shared with the corpus replay in
//! `federation/tests/fuzz_corpus.rs` (both include this file with `#[path]`): the query front end
//! never panics on any text, and whatever it plans runs over a small fixed image.

use tiermesh_federation::date::Date;
use tiermesh_federation::image::Image;
use tiermesh_federation::query;
use tiermesh_federation::record::{
    Cause, Education, Gender, Health, Household, HouseholdId, IdNumber, Industry, Labor, Person,
    Relation, Status,
};
use tiermesh_federation::region::RegionCode;

/// The reference date of `age` and `age_band`.
pub fn as_of() -> Date {
    Date::parse_iso("2026-06-30").expect("a fixed valid date")
}

/// `plan` never panics on the input (read as UTF-8, invalid sequences replaced); a plan it
/// accepts executes over `image` and over an empty image, merges and finalises without panicking,
/// and the answer has the plan's shape.
pub fn check(bytes: &[u8], image: &Image) {
    let sql = String::from_utf8_lossy(bytes);
    let plan = match query::plan(&sql, as_of()) {
        Ok(plan) => plan,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    let partial = query::execute_partial(&plan, image);
    let empty = query::execute_partial(&plan, &Image::new());
    assert_eq!(empty.rows_scanned, 0, "an empty image scanned rows");
    let mut merged = partial.clone();
    merged.merge(empty.clone());
    merged.merge(partial.clone());
    assert_eq!(merged.rows_scanned, 2 * partial.rows_scanned);
    for result in [
        partial.finalize(&plan),
        empty.finalize(&plan),
        merged.finalize(&plan),
    ] {
        assert_eq!(result.columns.len(), plan.outputs.len());
        for row in &result.rows {
            assert_eq!(row.len(), result.columns.len(), "a row of the wrong width");
        }
        if let Some(limit) = plan.limit {
            assert!(
                result.rows.len() as u64 <= limit,
                "LIMIT {limit} not applied"
            );
        }
        if plan.keys.is_empty() {
            assert!(result.rows.len() <= 1, "more than one row without GROUP BY");
        }
        let _ = result.to_string();
    }
}

/// Three households in two counties (one exited and relocated, one with nulls), their persons,
/// and a household stored and removed again so that the image has a dead slot.
pub fn image() -> Image {
    let mut image = Image::new();
    let removed = household(5301020010010002, Status::Poor, None, None);
    let removed_head = person(99, removed.household_id.0, Relation::Head, "1960-01-01");
    image.upsert_household(&removed);
    image.upsert_person(&removed_head);
    image.upsert_household(&household(5201020012010001, Status::Poor, None, None));
    image.upsert_household(&household(
        5201020012010002,
        Status::Exited,
        Some(2019),
        Some("新区A"),
    ));
    image.upsert_household(&household(5301020010010001, Status::Monitored, None, None));
    for (serial, household_id, relation, birth) in [
        (1, 5201020012010001, Relation::Head, "1970-03-01"),
        (2, 5201020012010001, Relation::Child, "2016-06-30"),
        (3, 5201020012010002, Relation::Head, "1940-02-29"),
        (4, 5301020010010001, Relation::Head, "1990-05-05"),
        (5, 5301020010010001, Relation::Spouse, "1991-12-31"),
    ] {
        image.upsert_person(&person(serial, household_id, relation, birth));
    }
    image.remove_household(removed.household_id, &[removed_head.person_id]);
    image
}

fn household(
    id: u64,
    status: Status,
    exit_year: Option<u16>,
    relocation_site: Option<&str>,
) -> Household {
    let household_id = HouseholdId(id);
    Household {
        household_id,
        region_code: RegionCode::from_u64(household_id.region_value()).expect("a village code"),
        head_id: IdNumber::pack(id % 100_000_000_000_000_000, 0),
        head_name: "户主".to_string(),
        members: (id % 5 + 1) as u8,
        cause: if id % 2 == 0 {
            Cause::Illness
        } else {
            Cause::Water
        },
        status,
        registered_year: 2015,
        exit_year,
        income_per_capita: (id % 1000) as i64 * 1_000 + 5,
        housing_safe: true,
        water_safe: id % 3 != 0,
        medical_insured: true,
        cadre_id: format!("C{:02}", id % 7),
        industry: Industry::Planting,
        relocated: relocation_site.is_some(),
        relocation_site: relocation_site.map(str::to_string),
        phone: None,
    }
}

fn person(serial: u64, household_id: u64, relation: Relation, birth: &str) -> Person {
    Person {
        person_id: IdNumber::pack(52_010_219_800_000_000 + serial, 0),
        household_id: HouseholdId(household_id),
        relation,
        gender: if serial % 2 == 0 {
            Gender::Female
        } else {
            Gender::Male
        },
        birth_date: Date::parse_iso(birth).expect("a fixed valid birth date"),
        education: Education::Junior,
        health: Health::Healthy,
        labor: Labor::Full,
        in_school: serial == 2,
        employed: serial != 2,
    }
}
