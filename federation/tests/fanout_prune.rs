//! Which children a node asks: a filter that confines `region_code` rules out children whose
//! region cannot hold a matching row; anything else (NOT, negations, other columns) asks every
//! child of the scope.

use expect_test::{expect, Expect};
use tiermesh_crypto::PublicKey;
use tiermesh_federation::date::Date;
use tiermesh_federation::fanout::{filter_region_ranges, prune_by_filter, ChildTarget};
use tiermesh_federation::query::plan;
use tiermesh_federation::region::RegionCode;

fn region(prefix: &str) -> RegionCode {
    format!("{prefix:0<12}").parse().expect("valid region")
}

fn as_of() -> Date {
    Date::parse_iso("2026-06-30").expect("date")
}

/// The prefectures 5201, 5202, 5301 and the counties 520102, 520103 as children.
fn children() -> Vec<ChildTarget> {
    ["5201", "5202", "5301", "520102", "520103"]
        .iter()
        .enumerate()
        .map(|(index, prefix)| ChildTarget {
            node: PublicKey([index as u8; 32]),
            region: region(prefix),
        })
        .collect()
}

fn check(where_clause: &str, expected: Expect) {
    let sql = format!("SELECT COUNT(*) FROM households WHERE {where_clause}");
    let plan = plan(&sql, as_of()).unwrap_or_else(|error| panic!("{sql}: {error}"));
    let kept: Vec<String> = prune_by_filter(children(), &plan)
        .iter()
        .map(|child| child.region.prefix())
        .collect();
    let ranges = plan.filter.as_ref().and_then(filter_region_ranges);
    let shown = match ranges {
        None => "unconfined".to_string(),
        Some(ranges) => ranges
            .iter()
            .map(|(low, high)| format!("{low:012}..{high:012}"))
            .collect::<Vec<_>>()
            .join(" "),
    };
    expected.assert_eq(&format!("{shown} -> {}", kept.join(" ")));
}

#[test]
fn region_filters_prune_children_that_cannot_match() {
    check(
        "region_code LIKE '5201%'",
        expect!["520100000000..520199999999 -> 5201 520102 520103"],
    );
    check(
        "region_code = '520102003004'",
        expect!["520102003004..520102003004 -> 5201 520102"],
    );
    check(
        "county(region_code) IN ('520103000000', '530102000000')",
        expect!["520103000000..520103999999 530102000000..530102999999 -> 5201 5301 520103"],
    );
    check(
        "province(region_code) = '530000000000' AND status = 'poor'",
        expect!["530000000000..539999999999 -> 5301"],
    );
    check(
        "region_code LIKE '52%' AND region_code LIKE '5202%'",
        expect!["520200000000..520299999999 -> 5202"],
    );
    check(
        "region_code LIKE '5202%' OR county(region_code) = '520103000000'",
        expect!["520200000000..520299999999 520103000000..520103999999 -> 5201 5202 520103"],
    );
    check(
        "region_code BETWEEN '520103000000' AND '520199999999'",
        expect!["520103000000..520199999999 -> 5201 520103"],
    );
    check(
        "region_code LIKE '54%'",
        expect!["540000000000..549999999999 -> "],
    );
}

#[test]
fn other_filters_ask_every_child() {
    for where_clause in [
        "status = 'poor'",
        "NOT region_code LIKE '5201%'",
        "region_code NOT LIKE '5201%'",
        "region_code NOT IN ('520102000000')",
        "region_code LIKE '5201%' OR status = 'poor'",
        "region_code > '520000000000'",
    ] {
        check(
            where_clause,
            expect!["unconfined -> 5201 5202 5301 520102 520103"],
        );
    }
}
