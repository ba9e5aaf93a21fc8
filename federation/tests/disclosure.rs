//! Disclosure control through its public behaviour: merged partial aggregates in, released
//! answers out, with the suppression rules of `tiermesh_federation::disclosure` checked inline
//! and, for random two-key tables, as properties.

use expect_test::{expect, Expect};
use proptest::prelude::*;
use tiermesh_federation::date::Date;
use tiermesh_federation::disclosure::{disclose, DisclosedResult};
use tiermesh_federation::image::Image;
use tiermesh_federation::query::{
    self, Accumulator, AggregateFunction, PartialAggregate, PartialGroup, Plan, Value,
};
use tiermesh_federation::record::{Cause, Household, HouseholdId, IdNumber, Industry, Status};
use tiermesh_federation::region::RegionCode;

fn as_of() -> Date {
    Date::parse_iso("2026-06-15").expect("reference date")
}

fn plan(sql: &str) -> Plan {
    query::plan(sql, as_of()).expect("plan")
}

/// A group of `rows` rows with text keys; every aggregate sees each row once, with the value 2
/// (so SUM is `2 * rows`, MIN and MAX are 2).
fn group(plan: &Plan, key: &[&str], rows: u64) -> PartialGroup {
    let accumulators = plan
        .aggregates
        .iter()
        .map(|aggregate| match aggregate.function {
            AggregateFunction::CountRows | AggregateFunction::Count => Accumulator {
                count: rows,
                ..Accumulator::default()
            },
            _ => Accumulator {
                count: rows,
                sum: 2 * i128::from(rows),
                min: Some(Value::Int(2)),
                max: Some(Value::Int(2)),
                sketch: None,
            },
        })
        .collect();
    PartialGroup {
        key: key
            .iter()
            .map(|text| Value::Text(text.to_string()))
            .collect(),
        rows,
        accumulators,
    }
}

fn merged(plan: &Plan, groups: &[(&[&str], u64)]) -> PartialAggregate {
    PartialAggregate {
        groups: groups
            .iter()
            .map(|(key, rows)| group(plan, key, *rows))
            .collect(),
        rows_scanned: groups.iter().map(|(_, rows)| rows).sum(),
    }
}

fn render(disclosed: &DisclosedResult) -> String {
    format!(
        "primary {} secondary {}\n{}",
        disclosed.primary, disclosed.secondary, disclosed.result
    )
}

/// Discloses the groups of `sql` with minimum cell size `k` and compares the answer.
fn check(sql: &str, groups: &[(&[&str], u64)], k: u32, expected: Expect) {
    let plan = plan(sql);
    expected.assert_eq(&render(&disclose(merged(&plan, groups), &plan, k)));
}

const BY_CAUSE: &str =
    "SELECT cause, COUNT(*) AS n, SUM(members) AS people FROM households GROUP BY cause";

#[test]
fn small_groups_are_suppressed_and_one_more_in_a_one_key_table() {
    // illness (2 < 5) is primary; the smallest other group, land (6), is secondary, or the
    // total (asked without GROUP BY) minus the rest would give illness.
    check(
        BY_CAUSE,
        &[
            (&["illness"], 2),
            (&["land"], 6),
            (&["education"], 40),
            (&["water"], 9),
        ],
        5,
        expect![[r#"
            primary 1 secondary 1
            cause | n | people
            education | 40 | 80
            illness | suppressed | suppressed
            land | suppressed | suppressed
            water | 9 | 18
        "#]],
    );
}

#[test]
fn two_small_groups_adding_up_to_k_need_no_secondary() {
    check(
        BY_CAUSE,
        &[(&["illness"], 2), (&["land"], 3), (&["education"], 40)],
        5,
        expect![[r#"
            primary 2 secondary 0
            cause | n | people
            education | 40 | 80
            illness | suppressed | suppressed
            land | suppressed | suppressed
        "#]],
    );
}

#[test]
fn small_groups_adding_up_to_under_k_take_one_more() {
    // 1 + 2 < 5: the total minus education and water would tell that illness and land hold 3.
    check(
        BY_CAUSE,
        &[
            (&["illness"], 1),
            (&["land"], 2),
            (&["education"], 40),
            (&["water"], 9),
        ],
        5,
        expect![[r#"
            primary 2 secondary 1
            cause | n | people
            education | 40 | 80
            illness | suppressed | suppressed
            land | suppressed | suppressed
            water | suppressed | suppressed
        "#]],
    );
}

#[test]
fn every_group_small_suppresses_all_without_secondaries() {
    check(
        BY_CAUSE,
        &[(&["illness"], 1), (&["land"], 2)],
        5,
        expect![[r#"
            primary 2 secondary 0
            cause | n | people
            illness | suppressed | suppressed
            land | suppressed | suppressed
        "#]],
    );
}

#[test]
fn k_of_one_or_zero_changes_nothing() {
    let groups: &[(&[&str], u64)] = &[(&["illness"], 1), (&["land"], 2)];
    for k in [0, 1] {
        check(
            BY_CAUSE,
            groups,
            k,
            expect![[r#"
                primary 0 secondary 0
                cause | n | people
                illness | 1 | 2
                land | 2 | 4
            "#]],
        );
    }
    let plan = plan(BY_CAUSE);
    assert_eq!(
        disclose(merged(&plan, groups), &plan, 1).result,
        merged(&plan, groups).finalize(&plan)
    );
}

#[test]
fn one_small_cell_in_two_keys_forces_secondaries_in_its_row_and_column() {
    // (illness, exited) = 2 is primary. Its row (illness) and its column (exited) each need a
    // second suppressed cell: the smallest released ones, (illness, poor) = 10 and
    // (land, exited) = 7. That leaves column poor and row land with one suppressed cell each,
    // so (land, poor) = 20 goes too: four suppressed cells in a rectangle.
    check(
        "SELECT cause, status, COUNT(*) FROM households GROUP BY cause, status",
        &[
            (&["illness", "poor"], 10),
            (&["illness", "exited"], 2),
            (&["illness", "returned"], 30),
            (&["land", "poor"], 20),
            (&["land", "exited"], 7),
            (&["land", "returned"], 25),
            (&["water", "poor"], 40),
            (&["water", "exited"], 50),
            (&["water", "returned"], 60),
        ],
        5,
        expect![[r#"
            primary 1 secondary 3
            cause | status | COUNT(*)
            illness | exited | suppressed
            illness | poor | suppressed
            illness | returned | 30
            land | exited | suppressed
            land | poor | suppressed
            land | returned | 25
            water | exited | 50
            water | poor | 40
            water | returned | 60
        "#]],
    );
}

#[test]
fn without_group_by_the_one_row_is_suppressed_under_k() {
    let sql = "SELECT COUNT(*) AS n, SUM(members), MIN(members), MAX(members) FROM households";
    check(
        sql,
        &[(&[], 3)],
        5,
        expect![[r#"
            primary 1 secondary 0
            n | SUM(members) | MIN(members) | MAX(members)
            suppressed | suppressed | suppressed | suppressed
        "#]],
    );
    check(
        sql,
        &[(&[], 5)],
        5,
        expect![[r#"
            primary 0 secondary 0
            n | SUM(members) | MIN(members) | MAX(members)
            5 | 10 | 2 | 2
        "#]],
    );
    // No row matched: the count is withheld, not shown as 0.
    check(
        sql,
        &[],
        5,
        expect![[r#"
            primary 1 secondary 0
            n | SUM(members) | MIN(members) | MAX(members)
            suppressed | suppressed | suppressed | suppressed
        "#]],
    );
}

#[test]
fn having_on_a_suppressed_cell_is_unknown() {
    let groups: &[(&[&str], u64)] = &[
        (&["illness"], 2),
        (&["land"], 6),
        (&["education"], 40),
        (&["water"], 9),
    ];
    // Every condition on a suppressed count is unknown, so those groups are dropped whatever
    // they hide, even for conditions a small count would meet or that test for null.
    for having in [
        "COUNT(*) < 5",
        "COUNT(*) >= 5",
        "NOT (COUNT(*) > 100)",
        "COUNT(*) NOT IN (1, 2)",
        "COUNT(*) NOT BETWEEN 100 AND 200",
        "SUM(members) IS NOT NULL",
        "MIN(members) IS NULL OR COUNT(*) > 5",
    ] {
        let sql =
            format!("SELECT cause, COUNT(*) AS n FROM households GROUP BY cause HAVING {having}");
        let plan = plan(&sql);
        let answer = disclose(merged(&plan, groups), &plan, 5).result;
        assert!(
            answer.rows.iter().all(|row| !row[1].is_suppressed()),
            "HAVING {having} kept a suppressed group: {answer}"
        );
    }
    // A condition decided by the group key alone keeps a suppressed group, still suppressed.
    check(
        "SELECT cause, COUNT(*) AS n FROM households GROUP BY cause \
         HAVING cause = 'illness' OR COUNT(*) > 20",
        groups,
        5,
        expect![[r#"
            primary 1 secondary 1
            cause | n
            education | 40
            illness | suppressed
        "#]],
    );
}

#[test]
fn order_by_puts_suppressed_cells_last_and_limit_comes_after() {
    let groups: &[(&[&str], u64)] = &[
        (&["illness"], 2),
        (&["land"], 6),
        (&["education"], 40),
        (&["water"], 9),
        (&["marriage"], 12),
    ];
    check(
        "SELECT cause, COUNT(*) AS n FROM households GROUP BY cause ORDER BY n",
        groups,
        5,
        expect![[r#"
            primary 1 secondary 1
            cause | n
            water | 9
            marriage | 12
            education | 40
            illness | suppressed
            land | suppressed
        "#]],
    );
    check(
        "SELECT cause, COUNT(*) AS n FROM households GROUP BY cause ORDER BY n DESC NULLS FIRST",
        groups,
        5,
        expect![[r#"
            primary 1 secondary 1
            cause | n
            education | 40
            marriage | 12
            water | 9
            illness | suppressed
            land | suppressed
        "#]],
    );
    // ORDER BY n ASC LIMIT 1 would otherwise name the smallest group.
    check(
        "SELECT cause, COUNT(*) AS n FROM households GROUP BY cause ORDER BY n LIMIT 1",
        groups,
        5,
        expect![[r#"
            primary 1 secondary 1
            cause | n
            water | 9
        "#]],
    );
}

// ---- over a real image ------------------------------------------------------------------------

fn household(id: u64, members: u8, cause: Cause) -> Household {
    let household_id = HouseholdId(id);
    let region: RegionCode = format!("{:012}", household_id.region_value())
        .parse()
        .expect("region code");
    Household {
        household_id,
        region_code: region,
        head_id: IdNumber::pack(id % 100_000_000_000_000_000, 0),
        head_name: "户主".to_string(),
        members,
        cause,
        status: Status::Poor,
        registered_year: 2015,
        exit_year: None,
        income_per_capita: 350000,
        housing_safe: true,
        water_safe: true,
        medical_insured: true,
        cadre_id: "C01".to_string(),
        industry: Industry::Planting,
        relocated: false,
        relocation_site: None,
        phone: None,
    }
}

#[test]
fn merged_partials_of_real_images_never_show_a_small_count_as_zero() {
    // Two nodes: illness has 1 household in all, land 3, education 4 (k = 3).
    let north = [
        household(5201020012010001, 7, Cause::Illness),
        household(5201020012010002, 2, Cause::Land),
        household(5201020012010003, 3, Cause::Education),
        household(5201020012010004, 3, Cause::Education),
    ];
    let south = [
        household(5301020012010001, 2, Cause::Land),
        household(5301020012010002, 2, Cause::Land),
        household(5301020012010003, 4, Cause::Education),
        household(5301020012010004, 4, Cause::Education),
    ];
    let plan =
        plan("SELECT cause, COUNT(*) AS n, MAX(members) AS largest FROM households GROUP BY cause");
    let image = |rows: &[Household]| {
        let mut image = Image::new();
        for row in rows {
            image.upsert_household(row);
        }
        image
    };
    let mut merged = query::execute_partial(&plan, &image(&north));
    merged.merge(query::execute_partial(&plan, &image(&south)));
    let disclosed = disclose(merged, &plan, 3);
    expect![[r#"
        primary 1 secondary 1
        cause | n | largest
        education | 4 | 4
        illness | suppressed | suppressed
        land | suppressed | suppressed
    "#]]
    .assert_eq(&render(&disclosed));
    assert!(disclosed
        .result
        .rows
        .iter()
        .flatten()
        .all(|cell| *cell != Value::Int(0)));
}

#[test]
fn the_answer_does_not_depend_on_merge_order() {
    let plan = plan(BY_CAUSE);
    // land and water tie at 6: the secondary is the first in key order, whatever the order.
    let groups: &[(&[&str], u64)] = &[
        (&["illness"], 2),
        (&["water"], 6),
        (&["land"], 6),
        (&["education"], 40),
    ];
    let mut reversed = merged(&plan, groups);
    reversed.groups.reverse();
    let forward = disclose(merged(&plan, groups), &plan, 5);
    assert_eq!(forward, disclose(reversed, &plan, 5));
    expect![[r#"
        primary 1 secondary 1
        cause | n | people
        education | 40 | 80
        illness | suppressed | suppressed
        land | suppressed | suppressed
        water | 6 | 12
    "#]]
    .assert_eq(&render(&forward));
}

// ---- properties over random two-key tables ----------------------------------------------------

const CAUSES: [&str; 5] = ["disability", "education", "illness", "land", "water"];
const STATUSES: [&str; 4] = ["exited", "monitored", "poor", "returned"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// After disclosure every group under k is suppressed, and no row or column of the table
    /// that holds two or more groups holds exactly one suppressed group, nor suppressed groups
    /// adding up to fewer than k rows next to released ones.
    #[test]
    fn no_line_exposes_a_small_group(
        causes in 1usize..=CAUSES.len(),
        statuses in 1usize..=STATUSES.len(),
        // 0 rows: the group does not exist.
        counts in proptest::collection::vec(0u64..12, CAUSES.len() * STATUSES.len()),
        k in 0u32..8,
    ) {
        let plan = plan("SELECT cause, status, COUNT(*) FROM households GROUP BY cause, status");
        let mut table: Vec<(&[&str], u64)> = Vec::new();
        let keys: Vec<[&str; 2]> = CAUSES[..causes]
            .iter()
            .flat_map(|cause| STATUSES[..statuses].iter().map(move |status| [*cause, *status]))
            .collect();
        for (key, rows) in keys.iter().zip(&counts) {
            if *rows > 0 {
                table.push((key.as_slice(), *rows));
            }
        }
        let disclosed = disclose(merged(&plan, &table), &plan, k);
        prop_assert_eq!(disclosed.result.rows.len(), table.len());
        // The answer is ordered by (cause, status), as `table` is.
        let mut suppressed_groups = 0;
        for ((key, rows), row) in table.iter().zip(&disclosed.result.rows) {
            prop_assert_eq!(&row[0], &Value::Text(key[0].to_string()));
            prop_assert_eq!(&row[1], &Value::Text(key[1].to_string()));
            let suppressed = row[2].is_suppressed();
            suppressed_groups += usize::from(suppressed);
            if k > 1 && *rows < u64::from(k) {
                prop_assert!(suppressed, "{:?} has {} rows < k = {}", key, rows, k);
            }
            if !suppressed {
                prop_assert_eq!(&row[2], &Value::Int(*rows as i64));
            }
        }
        prop_assert_eq!(disclosed.primary + disclosed.secondary, suppressed_groups);
        for free in 0..2 {
            let fixed = 1 - free;
            let mut lines: Vec<&str> = table.iter().map(|(key, _)| key[fixed]).collect();
            lines.dedup();
            lines.sort_unstable();
            lines.dedup();
            for line in lines {
                let members: Vec<(u64, bool)> = table
                    .iter()
                    .zip(&disclosed.result.rows)
                    .filter(|((key, _), _)| key[fixed] == line)
                    .map(|((_, rows), row)| (*rows, row[2].is_suppressed()))
                    .collect();
                let suppressed: Vec<u64> =
                    members.iter().filter(|(_, hidden)| *hidden).map(|(rows, _)| *rows).collect();
                if suppressed.is_empty() || suppressed.len() == members.len() {
                    continue;
                }
                prop_assert!(
                    suppressed.len() >= 2 && suppressed.iter().sum::<u64>() >= u64::from(k),
                    "line {} (key {}) exposes its suppressed groups {:?}: {:?}",
                    line, fixed, suppressed, members
                );
            }
        }
    }
}
