//! The query language through its public behaviour: every class of refusal with its position and
//! message, and answers over a small hand-built image (and that image's prepared person index).

use expect_test::{expect, Expect};
use tiermesh_federation::date::Date;
use tiermesh_federation::image::{Image, PersonIndex};
use tiermesh_federation::query::{self, Value};
use tiermesh_federation::record::{
    Cause, Education, Gender, Health, Household, HouseholdId, IdNumber, Industry, Labor, Person,
    Relation, Status,
};
use tiermesh_federation::region::RegionCode;
use tiermesh_federation::schema::Table;

fn as_of() -> Date {
    Date::parse_iso("2026-06-15").expect("reference date")
}

/// Plans `sql` and compares the refusal with `expected`.
fn check_refused(sql: &str, expected: Expect) {
    match query::plan(sql, as_of()) {
        Ok(plan) => panic!("planned {sql:?} instead of refusing it: {plan:#?}"),
        Err(error) => expected.assert_eq(&error.to_string()),
    }
}

// ---- refusals --------------------------------------------------------------------------------

#[test]
fn syntax_errors_carry_positions() {
    check_refused(
        "SELECT COUNT(*) FROM households WHERE cause = = 'illness'",
        expect!["1:47: syntax error: Expected: an expression, found: ="],
    );
    check_refused(
        "SELECT COUNT(*)\nFROM households\nWHERE",
        expect!["3:6: syntax error: Expected: an expression, found: EOF"],
    );
    check_refused(
        "SELECT COUNT(*) FROM households WHERE cause = 'illness",
        expect!["1:47: syntax error: Unterminated string literal"],
    );
    check_refused(
        "",
        expect!["syntax error: the text holds no statement; write one SELECT"],
    );
}

#[test]
fn only_one_select_is_accepted() {
    check_refused(
        "SELECT COUNT(*) FROM households; SELECT COUNT(*) FROM persons",
        expect!["1:34: not supported: only one statement is accepted; remove everything after the first `;`"],
    );
    check_refused(
        "DELETE FROM households",
        expect!["1:1: not supported: only SELECT queries are accepted"],
    );
    check_refused(
        "INSERT INTO households (members) VALUES (3)",
        expect!["1:1: not supported: only SELECT queries are accepted"],
    );
    check_refused(
        "WITH poor AS (SELECT * FROM households) SELECT COUNT(*) FROM poor",
        expect!["1:1: not supported: WITH (common table expressions) is not supported"],
    );
    check_refused(
        "SELECT COUNT(*) FROM households UNION SELECT COUNT(*) FROM persons",
        expect!["1:1: not supported: UNION is not supported; write one SELECT"],
    );
    check_refused("SELECT COUNT(*)", expect!["1:1: not supported: a FROM clause is required: FROM households, FROM persons, or FROM persons JOIN households USING (household_id)"]);
}

#[test]
fn select_list_refusals() {
    check_refused("SELECT * FROM households", expect!["1:8: not supported: SELECT * is not supported; list group keys and aggregates, e.g. SELECT cause, COUNT(*) ... GROUP BY cause"]);
    check_refused("SELECT DISTINCT cause FROM households", expect!["1:1: not supported: SELECT DISTINCT is not supported; GROUP BY gives one row per distinct group"]);
    check_refused("SELECT 1 FROM households", expect!["1:8: not supported: the constant `1` is not accepted in SELECT; name a column or a dimension"]);
    check_refused("SELECT cause, COUNT(*) FROM households", expect!["1:8: not supported: `cause` is neither in GROUP BY nor inside an aggregate; add it to GROUP BY or aggregate it"]);
    check_refused(
        "SELECT status, COUNT(*) FROM households GROUP BY cause",
        expect!["1:8: not supported: `status` is neither in GROUP BY nor inside an aggregate; add it to GROUP BY or aggregate it"],
    );
    check_refused(
        "SELECT SUM(members) / COUNT(*) FROM households",
        expect!["1:8: not supported: `SUM(members) / COUNT(*)`: arithmetic and operators such as `/` are not supported"],
    );
    check_refused("SELECT members + 1 FROM households GROUP BY members", expect!["1:8: not supported: `members + 1`: arithmetic and operators such as `+` are not supported"]);
    check_refused(
        "SELECT CASE WHEN members > 3 THEN 'big' END FROM households",
        expect![
            "1:8: not supported: `CASE WHEN members > 3 THEN 'big' END`: CASE is not supported"
        ],
    );
}

#[test]
fn from_refusals() {
    check_refused(
        "SELECT COUNT(*) FROM cadres",
        expect![
            "1:22: unknown name: `cadres` is not a table; the tables are households and persons"
        ],
    );
    check_refused("SELECT COUNT(*) FROM households, persons", expect!["1:34: not supported: comma-separated tables are not supported; write FROM households, FROM persons, or FROM persons JOIN households USING (household_id)"]);
    check_refused(
        "SELECT COUNT(*) FROM persons LEFT JOIN households USING (household_id)",
        expect!["1:40: not supported: only an inner join is supported: FROM households, FROM persons, or FROM persons JOIN households USING (household_id)"],
    );
    check_refused(
        "SELECT COUNT(*) FROM persons JOIN households ON persons.gender = households.cause",
        expect!["1:49: not supported: ON persons.gender = households.cause: join on household_id: USING (household_id) or ON persons.household_id = households.household_id"],
    );
    check_refused("SELECT COUNT(*) FROM persons JOIN households", expect!["1:35: not supported: a join needs a condition: join on household_id: USING (household_id) or ON persons.household_id = households.household_id"]);
    check_refused(
        "SELECT COUNT(*) FROM households JOIN households USING (household_id)",
        expect!["1:38: not supported: a table joined with itself is not supported; FROM households, FROM persons, or FROM persons JOIN households USING (household_id)"],
    );
    check_refused(
        "SELECT COUNT(*) FROM (SELECT cause FROM households) AS h",
        expect!["1:23: not supported: subqueries are not supported"],
    );
}

#[test]
fn unknown_names() {
    check_refused("SELECT COUNT(*) FROM households WHERE colour = 'red'", expect!["1:39: unknown name: `colour` is not a column of households; the columns are household_id, region_code, members, cause, status, registered_year, exit_year, income_per_capita, housing_safe, water_safe, medical_insured, cadre_id, industry, relocated, relocation_site"]);
    check_refused(
        "SELECT COUNT(*) FROM households h WHERE p.cause = 'land'",
        expect!["1:41: unknown name: `p` is not a table of this query; FROM names households, h"],
    );
    check_refused("SELECT gender, COUNT(*) FROM households GROUP BY gender", expect!["1:50: unknown name: `gender` is not a column of households; the columns are household_id, region_code, members, cause, status, registered_year, exit_year, income_per_capita, housing_safe, water_safe, medical_insured, cadre_id, industry, relocated, relocation_site"]);
}

#[test]
fn personal_columns_are_refused_everywhere_but_age() {
    check_refused("SELECT head_name, COUNT(*) FROM households GROUP BY head_name", expect!["1:53: personal column: `head_name` identifies people and may not be selected, grouped, filtered or aggregated (only birth_date, and only inside age() or age_band())"]);
    check_refused("SELECT COUNT(*) FROM households WHERE phone IS NULL", expect!["1:39: personal column: `phone` identifies people and may not be selected, grouped, filtered or aggregated (only birth_date, and only inside age() or age_band())"]);
    check_refused("SELECT COUNT(*) FROM persons GROUP BY\n  person_id", expect!["2:3: personal column: `person_id` identifies people and may not be selected, grouped, filtered or aggregated (only birth_date, and only inside age() or age_band())"]);
    check_refused("SELECT COUNT(birth_date) FROM persons", expect!["1:14: personal column: `birth_date` identifies people and may not be selected, grouped, filtered or aggregated (only birth_date, and only inside age() or age_band())"]);
    check_refused("SELECT MIN(birth_date) FROM persons", expect!["1:12: personal column: `birth_date` identifies people and may not be selected, grouped, filtered or aggregated (only birth_date, and only inside age() or age_band())"]);
    check_refused("SELECT COUNT(*) FROM persons WHERE birth_date > '2000-01-01'", expect!["1:36: personal column: `birth_date` identifies people and may not be selected, grouped, filtered or aggregated (only birth_date, and only inside age() or age_band())"]);
    check_refused(
        "SELECT age(head_id), COUNT(*) FROM households GROUP BY 1",
        expect!["1:12: type mismatch: age() takes the column birth_date, not `head_id`"],
    );
}

#[test]
fn function_refusals() {
    check_refused("SELECT upper(cadre_id), COUNT(*) FROM households GROUP BY 1", expect!["1:8: not supported: the function `upper` is not supported; accepted: COUNT, SUM, AVG, MIN, MAX, MEDIAN, province, prefecture, county, township, substr, age, age_band"]);
    check_refused(
        "SELECT COUNT(*) OVER () FROM households",
        expect![
            "1:8: not supported: `COUNT(*) OVER ()`: window functions (OVER) are not supported"
        ],
    );
    check_refused("SELECT COUNT(DISTINCT cause) FROM households", expect!["1:8: not supported: `COUNT(DISTINCT cause)`: DISTINCT inside a function is not supported"]);
    check_refused("SELECT COUNT(*) FILTER (WHERE members > 2) FROM households", expect!["1:8: not supported: `COUNT(*) FILTER (WHERE members > 2)`: FILTER is not supported; use WHERE"]);
    check_refused("SELECT SUM(COUNT(*)) FROM households", expect!["1:12: not supported: the aggregate `COUNT(*)` is not accepted inside another aggregate"]);
    check_refused(
        "SELECT SUM(cause) FROM households",
        expect!["1:12: type mismatch: SUM takes an integer or decimal; `cause` is an enum"],
    );
    check_refused("SELECT AVG(region_code) FROM households", expect!["1:12: type mismatch: AVG takes an integer or decimal; `region_code` is a 12-digit code"]);
    check_refused(
        "SELECT substr(region_code, 0, 2), COUNT(*) FROM households GROUP BY 1",
        expect![
            "1:28: not supported: the substr start must be a whole number from 1 to 1000, not `0`"
        ],
    );
    check_refused(
        "SELECT substr(members, 1, 2), COUNT(*) FROM households GROUP BY 1",
        expect![
            "1:15: type mismatch: substr() takes text, an enum or a code; `members` is an integer"
        ],
    );
    check_refused(
        "SELECT age_band(birth_date, 0), COUNT(*) FROM persons GROUP BY 1",
        expect![
            "1:29: not supported: the age_band width must be a whole number from 1 to 200, not `0`"
        ],
    );
    check_refused(
        "SELECT province(cadre_id), COUNT(*) FROM households GROUP BY 1",
        expect!["1:17: type mismatch: province() takes the column region_code, not `cadre_id`"],
    );
    check_refused(
        "SELECT age(birth_date, 3), COUNT(*) FROM persons GROUP BY 1",
        expect!["1:8: not supported: `age(birth_date, 3)`: age() takes one argument, birth_date"],
    );
    check_refused(
        "SELECT CAST(members AS TEXT), COUNT(*) FROM households GROUP BY 1",
        expect!["1:13: not supported: `CAST(members AS TEXT)`: CAST is not supported"],
    );
}

#[test]
fn clause_refusals() {
    check_refused("SELECT COUNT(*) FROM households WHERE COUNT(*) > 3", expect!["1:39: not supported: the aggregate `COUNT(*)` is not accepted in WHERE; filter groups with HAVING"]);
    check_refused("SELECT COUNT(*) FROM households GROUP BY COUNT(*)", expect!["1:42: not supported: the aggregate `COUNT(*)` is not accepted in GROUP BY; group by columns and dimensions"]);
    check_refused("SELECT COUNT(*) AS n FROM households GROUP BY n", expect!["1:47: not supported: GROUP BY n names the aggregate `COUNT(*)`; group by columns and dimensions"]);
    check_refused(
        "SELECT COUNT(*) FROM households GROUP BY ROLLUP (cause)",
        expect!["1:50: not supported: ROLLUP, CUBE and GROUPING SETS are not supported"],
    );
    check_refused(
        "SELECT COUNT(*) FROM households GROUP BY ALL",
        expect!["1:1: not supported: GROUP BY ALL is not supported; list the grouping columns"],
    );
    check_refused("SELECT cause, COUNT(*) FROM households GROUP BY cause ORDER BY status", expect!["1:64: not supported: `status` is neither in GROUP BY nor inside an aggregate; add it to GROUP BY or aggregate it"]);
    check_refused(
        "SELECT cause, COUNT(*) FROM households GROUP BY cause ORDER BY 3",
        expect!["1:64: not supported: ORDER BY 3: a number names a SELECT column, 1 to 2"],
    );
    check_refused(
        "SELECT COUNT(*) FROM households LIMIT 'ten'",
        expect!["1:39: not supported: LIMIT 'ten': write a whole number 0 or more"],
    );
    check_refused(
        "SELECT COUNT(*) FROM households LIMIT 10 OFFSET 5",
        expect!["1:49: not supported: OFFSET is not supported"],
    );
    check_refused("SELECT cause, COUNT(*) FROM households GROUP BY cause HAVING status = 'poor'", expect!["1:62: not supported: `status` is neither in GROUP BY nor inside an aggregate; add it to GROUP BY or aggregate it"]);
}

#[test]
fn condition_refusals() {
    check_refused(
        "SELECT COUNT(*) FROM households WHERE cadre_id LIKE '%01'",
        expect![[
            r#"1:53: not supported: LIKE '%01': only prefix patterns are supported, such as 'abc%' (one % at the end, no _ or \)"#
        ]],
    );
    check_refused(
        "SELECT COUNT(*) FROM households WHERE cadre_id LIKE 'C_1%'",
        expect![[
            r#"1:53: not supported: LIKE 'C_1%': only prefix patterns are supported, such as 'abc%' (one % at the end, no _ or \)"#
        ]],
    );
    check_refused(
        "SELECT COUNT(*) FROM households WHERE cadre_id LIKE 'C01'",
        expect![[
            r#"1:53: not supported: LIKE 'C01': only prefix patterns are supported, such as 'abc%' (one % at the end, no _ or \)"#
        ]],
    );
    check_refused("SELECT COUNT(*) FROM households WHERE cadre_id ILIKE 'c%'", expect!["1:39: not supported: ILIKE, SIMILAR TO and regular expressions are not supported; write LIKE 'prefix%'"]);
    check_refused("SELECT COUNT(*) FROM households WHERE members LIKE '3%'", expect!["1:39: type mismatch: LIKE applies to text, enum and code columns; `members` is an integer"]);
    check_refused("SELECT COUNT(*) FROM households WHERE exit_year = NULL", expect!["1:51: not supported: NULL is not a value to compare with (a comparison with NULL is never true); write `IS NULL` or `IS NOT NULL`"]);
    check_refused("SELECT COUNT(*) FROM households WHERE registered_year < exit_year", expect!["1:57: not supported: `exit_year` is not a constant: comparing two columns is not supported; compare a column with a constant"]);
    check_refused(
        "SELECT COUNT(*) FROM households WHERE 1 = 1",
        expect![
            "1:39: not supported: `1` and `1` are both constants; compare a column with a constant"
        ],
    );
    check_refused("SELECT COUNT(*) FROM households WHERE members", expect!["1:39: type mismatch: `members` is an integer, not a condition; compare it with a value"]);
    check_refused("SELECT COUNT(*) FROM households WHERE relocated IS TRUE", expect!["1:39: not supported: `relocated IS TRUE`: IS [NOT] TRUE/FALSE/UNKNOWN/DISTINCT FROM are not supported; compare with = true or = false"]);
    check_refused(
        "SELECT COUNT(*) FROM households WHERE household_id IN (SELECT household_id FROM persons)",
        expect!["1:39: not supported: subqueries are not supported"],
    );
    check_refused(
        "SELECT COUNT(*) FROM households WHERE EXISTS (SELECT 1 FROM persons)",
        expect!["1:47: not supported: subqueries are not supported"],
    );
}

#[test]
fn literal_type_refusals() {
    check_refused("SELECT COUNT(*) FROM households WHERE members = 'three'", expect!["1:49: type mismatch: `members` is an integer, so it cannot be compared with text; compare it with a number such as 4000 or 4000.5"]);
    check_refused("SELECT COUNT(*) FROM households WHERE cause = 3", expect!["1:47: type mismatch: `cause` is an enum, so it cannot be compared with a number; compare it with 'single-quoted text'"]);
    check_refused("SELECT COUNT(*) FROM households WHERE cause = 'rich'", expect!["1:47: type mismatch: `cause` has no value 'rich'; its values are 'illness', 'disability', 'education', 'disaster', 'marriage', 'land', 'water', 'skills', 'labor', 'capital', 'transport', 'motivation', 'other'"]);
    check_refused(
        "SELECT COUNT(*) FROM households\nWHERE status IN ('poor',\n                 'exitted')",
        expect!["3:18: type mismatch: `status` has no value 'exitted'; its values are 'poor', 'exited', 'returned', 'monitored'"],
    );
    check_refused("SELECT COUNT(*) FROM households WHERE housing_safe = 1", expect!["1:54: type mismatch: `housing_safe` is a boolean, so it cannot be compared with a number; compare it with true or false"]);
    check_refused("SELECT COUNT(*) FROM households WHERE region_code = 5201.5", expect!["1:53: type mismatch: `region_code` is a 12-digit code; compare it with 'digits' or a whole number, not 5201.5"]);
    check_refused("SELECT COUNT(*) FROM households WHERE income_per_capita = '4000'", expect!["1:59: type mismatch: `income_per_capita` is a decimal, so it cannot be compared with text; compare it with a number such as 4000 or 4000.5"]);
    check_refused("SELECT COUNT(*) FROM households WHERE income_per_capita > 1e3", expect!["1:59: not supported: the number `1e3` is not accepted; write plain digits with an optional decimal point, at most 18 significant digits and 18 decimals (no exponent)"]);
    check_refused("SELECT COUNT(*) FROM households HAVING AVG(members) = 'x'", expect!["1:55: type mismatch: `AVG(members)` is a float, so it cannot be compared with text; compare it with a number such as 4000 or 4000.5"]);
}

// ---- answers ---------------------------------------------------------------------------------

fn region(text: &str) -> RegionCode {
    text.parse().expect("region code")
}

#[allow(clippy::too_many_arguments)]
fn household(
    id: u64,
    members: u8,
    cause: Cause,
    status: Status,
    exit_year: Option<u16>,
    income_per_capita: i64,
    safe: [bool; 3],
    cadre_id: &str,
    relocation_site: Option<&str>,
) -> Household {
    let household_id = HouseholdId(id);
    Household {
        household_id,
        region_code: region(&format!("{:012}", household_id.region_value())),
        head_id: IdNumber::pack(id % 100_000_000_000_000_000, 0),
        head_name: "户主".to_string(),
        members,
        cause,
        status,
        registered_year: 2015,
        exit_year,
        income_per_capita,
        housing_safe: safe[0],
        water_safe: safe[1],
        medical_insured: safe[2],
        cadre_id: cadre_id.to_string(),
        industry: Industry::Planting,
        relocated: relocation_site.is_some(),
        relocation_site: relocation_site.map(str::to_string),
        phone: None,
    }
}

fn person(
    serial: u64,
    household_id: u64,
    relation: Relation,
    gender: Gender,
    birth: &str,
    in_school: bool,
) -> Person {
    Person {
        person_id: IdNumber::pack(52_010_219_800_000_000 + serial, 0),
        household_id: HouseholdId(household_id),
        relation,
        gender,
        birth_date: Date::parse_iso(birth).expect("birth date"),
        education: Education::Junior,
        health: Health::Healthy,
        labor: Labor::Full,
        in_school,
        employed: !in_school,
    }
}

const SAFE: [bool; 3] = [true, true, true];

fn households() -> Vec<Household> {
    vec![
        household(
            5201020012010001,
            3,
            Cause::Illness,
            Status::Poor,
            None,
            350000,
            SAFE,
            "C01",
            None,
        ),
        household(
            5201020012010002,
            2,
            Cause::Education,
            Status::Exited,
            Some(2019),
            520050,
            SAFE,
            "C01",
            Some("新区A"),
        ),
        household(
            5201020022020001,
            4,
            Cause::Illness,
            Status::Returned,
            None,
            399999,
            [false, true, true],
            "C02",
            None,
        ),
        household(
            5201030010010001,
            1,
            Cause::Disability,
            Status::Monitored,
            None,
            400000,
            [true, false, true],
            "C03",
            Some("新区B"),
        ),
        household(
            5301020010010001,
            5,
            Cause::Water,
            Status::Exited,
            Some(2020),
            800000,
            [true, true, false],
            "C02",
            None,
        ),
    ]
}

fn persons() -> Vec<Person> {
    vec![
        person(
            1,
            5201020012010001,
            Relation::Head,
            Gender::Male,
            "1970-03-01",
            false,
        ),
        person(
            2,
            5201020012010001,
            Relation::Spouse,
            Gender::Female,
            "1972-07-20",
            false,
        ),
        person(
            3,
            5201020012010001,
            Relation::Child,
            Gender::Female,
            "2012-06-16",
            false,
        ),
        person(
            4,
            5201020012010002,
            Relation::Head,
            Gender::Female,
            "1958-01-01",
            false,
        ),
        person(
            5,
            5201020012010002,
            Relation::Child,
            Gender::Male,
            "2016-06-15",
            true,
        ),
        person(
            6,
            5201020022020001,
            Relation::Head,
            Gender::Male,
            "1988-12-31",
            false,
        ),
        person(
            7,
            5201030010010001,
            Relation::Head,
            Gender::Female,
            "1940-02-29",
            false,
        ),
        person(
            8,
            5301020010010001,
            Relation::Head,
            Gender::Male,
            "1990-05-05",
            false,
        ),
        person(
            9,
            5301020010010001,
            Relation::Child,
            Gender::Male,
            "2020-01-01",
            true,
        ),
    ]
}

fn image_of(households: &[Household], persons: &[Person]) -> Image {
    let mut image = Image::new();
    for row in households {
        image.upsert_household(row);
    }
    for row in persons {
        image.upsert_person(row);
    }
    image
}

/// The sample image, plus a household that was stored and removed again (its slot stays dead).
fn sample_image() -> Image {
    let removed = household(
        5301020010010002,
        2,
        Cause::Land,
        Status::Poor,
        None,
        100,
        SAFE,
        "C09",
        None,
    );
    let removed_person = person(
        99,
        5301020010010002,
        Relation::Head,
        Gender::Male,
        "1960-01-01",
        false,
    );
    let mut image = image_of(
        std::slice::from_ref(&removed),
        std::slice::from_ref(&removed_person),
    );
    for row in households() {
        image.upsert_household(&row);
    }
    for row in persons() {
        image.upsert_person(&row);
    }
    image.remove_household(removed.household_id, &[removed_person.person_id]);
    image
}

fn check_answer(sql: &str, expected: Expect) {
    let plan = query::plan(sql, as_of()).unwrap_or_else(|error| panic!("{sql}: {error}"));
    let result = query::execute(&plan, &sample_image());
    expected.assert_eq(&format!(
        "{result}(rows scanned: {})\n",
        result.rows_scanned
    ));
}

#[test]
fn groups_and_aggregates() {
    check_answer(
        "SELECT cause, COUNT(*), SUM(members) FROM households \
         WHERE status IN ('poor', 'returned', 'monitored') GROUP BY cause",
        expect![[r#"
            cause | COUNT(*) | SUM(members)
            disability | 1 | 1
            illness | 2 | 7
            (rows scanned: 5)
        "#]],
    );
    check_answer(
        "SELECT status, COUNT(exit_year) AS exits, MIN(exit_year), MAX(cause), \
         SUM(income_per_capita), AVG(income_per_capita), AVG(members) FROM households GROUP BY status",
        expect![[r#"
            status | exits | MIN(exit_year) | MAX(cause) | SUM(income_per_capita) | AVG(income_per_capita) | AVG(members)
            exited | 2 | 2019 | water | 13200.50 | 6600.25 | 3.5
            monitored | 0 | NULL | disability | 4000.00 | 4000.0 | 1.0
            poor | 0 | NULL | illness | 3500.00 | 3500.0 | 3.0
            returned | 0 | NULL | illness | 3999.99 | 3999.99 | 4.0
            (rows scanned: 5)
        "#]],
    );
    check_answer(
        "SELECT MIN(cadre_id), MAX(cadre_id), MIN(relocation_site), MAX(relocation_site), \
         MIN(income_per_capita), MAX(housing_safe) FROM households",
        expect![[r#"
            MIN(cadre_id) | MAX(cadre_id) | MIN(relocation_site) | MAX(relocation_site) | MIN(income_per_capita) | MAX(housing_safe)
            C01 | C03 | 新区A | 新区B | 3500.00 | true
            (rows scanned: 5)
        "#]],
    );
}

#[test]
fn no_rows_still_answer_one_row_without_group_by() {
    check_answer(
        "SELECT COUNT(*), COUNT(exit_year), SUM(members), AVG(income_per_capita), MIN(cause) \
         FROM households WHERE members > 100",
        expect![[r#"
            COUNT(*) | COUNT(exit_year) | SUM(members) | AVG(income_per_capita) | MIN(cause)
            0 | 0 | NULL | NULL | NULL
            (rows scanned: 5)
        "#]],
    );
    check_answer(
        "SELECT cause, COUNT(*) FROM households WHERE members > 100 GROUP BY cause",
        expect![[r#"
            cause | COUNT(*)
            (rows scanned: 5)
        "#]],
    );
}

#[test]
fn region_dimensions_and_codes() {
    check_answer(
        "SELECT province(region_code) AS province, prefecture(region_code), county(region_code), \
         COUNT(*), SUM(income_per_capita) FROM households GROUP BY 1, 2, 3",
        expect![[r#"
            province | prefecture(region_code) | county(region_code) | COUNT(*) | SUM(income_per_capita)
            520000000000 | 520100000000 | 520102000000 | 3 | 12700.49
            520000000000 | 520100000000 | 520103000000 | 1 | 4000.00
            530000000000 | 530100000000 | 530102000000 | 1 | 8000.00
            (rows scanned: 5)
        "#]],
    );
    check_answer(
        "SELECT township(region_code), substr(region_code, 5, 2) AS county_digits, COUNT(*) \
         FROM households WHERE region_code LIKE '5201%' GROUP BY 1, 2",
        expect![[r#"
            township(region_code) | county_digits | COUNT(*)
            520102001000 | 02 | 2
            520102002000 | 02 | 1
            520103001000 | 03 | 1
            (rows scanned: 5)
        "#]],
    );
    check_answer(
        "SELECT COUNT(*) FROM households WHERE household_id = 5201020012010002 \
         OR region_code = '520103001001' OR region_code > '53'",
        expect![[r#"
            COUNT(*)
            3
            (rows scanned: 5)
        "#]],
    );
    check_answer(
        "SELECT COUNT(*) FROM households WHERE region_code < '5201020020' AND household_id NOT LIKE '52010200120100%'",
        expect![[r#"
            COUNT(*)
            0
            (rows scanned: 5)
        "#]],
    );
}

#[test]
fn conditions_follow_three_valued_logic() {
    check_answer(
        "SELECT COUNT(*) FROM households WHERE NOT (exit_year > 2019)",
        expect![[r#"
            COUNT(*)
            1
            (rows scanned: 5)
        "#]],
    );
    check_answer(
        "SELECT COUNT(*) FROM households WHERE exit_year IS NULL OR exit_year BETWEEN 2019 AND 2019",
        expect![[r#"
            COUNT(*)
            4
            (rows scanned: 5)
        "#]],
    );
    check_answer(
        "SELECT COUNT(*) FROM households WHERE relocation_site NOT IN ('新区A')",
        expect![[r#"
            COUNT(*)
            1
            (rows scanned: 5)
        "#]],
    );
    check_answer(
        "SELECT COUNT(*) FROM households WHERE income_per_capita < 4000 AND income_per_capita >= 3999.99",
        expect![[r#"
            COUNT(*)
            1
            (rows scanned: 5)
        "#]],
    );
    check_answer(
        "SELECT COUNT(*) FROM households WHERE relocated AND NOT housing_safe = true OR water_safe = false",
        expect![[r#"
            COUNT(*)
            1
            (rows scanned: 5)
        "#]],
    );
    check_answer(
        "SELECT cause, COUNT(*) FROM households WHERE cause < 'e' OR cadre_id BETWEEN 'C02' AND 'C02' GROUP BY cause",
        expect![[r#"
            cause | COUNT(*)
            disability | 1
            illness | 1
            water | 1
            (rows scanned: 5)
        "#]],
    );
}

#[test]
fn persons_join_households_with_ages() {
    check_answer(
        "SELECT gender, age_band(birth_date, 10) AS band, COUNT(*), MIN(age(birth_date)) \
         FROM persons JOIN households USING (household_id) WHERE status <> 'exited' \
         GROUP BY gender, band ORDER BY gender DESC, band",
        expect![[r#"
            gender | band | COUNT(*) | MIN(age(birth_date))
            M | 30 | 1 | 37
            M | 50 | 1 | 56
            F | 10 | 1 | 13
            F | 50 | 1 | 53
            F | 80 | 1 | 86
            (rows scanned: 9)
        "#]],
    );
    check_answer(
        "SELECT p.relation, COUNT(*) FROM persons AS p JOIN households h ON p.household_id = h.household_id \
         WHERE age(birth_date) BETWEEN 6 AND 15 AND NOT in_school GROUP BY p.relation",
        expect![[r#"
            p.relation | COUNT(*)
            child | 1
            (rows scanned: 9)
        "#]],
    );
    check_answer(
        "SELECT substr(household_id, 1, 2) AS province_digits, COUNT(*), AVG(age(birth_date)) \
         FROM persons GROUP BY province_digits",
        expect![[r#"
            province_digits | COUNT(*) | AVG(age(birth_date))
            52 | 7 | 46.142857
            53 | 2 | 21.0
            (rows scanned: 9)
        "#]],
    );
}

#[test]
fn having_order_and_limit() {
    check_answer(
        "SELECT cadre_id, COUNT(*) AS n, SUM(members) FROM households GROUP BY cadre_id \
         HAVING COUNT(*) >= 2 AND SUM(income_per_capita) > 8000 ORDER BY n DESC, cadre_id",
        expect![[r#"
            cadre_id | n | SUM(members)
            C01 | 2 | 5
            C02 | 2 | 9
            (rows scanned: 5)
        "#]],
    );
    check_answer(
        "SELECT relocation_site, COUNT(*) FROM households GROUP BY relocation_site ORDER BY relocation_site DESC",
        expect![[r#"
            relocation_site | COUNT(*)
            新区B | 1
            新区A | 1
            NULL | 3
            (rows scanned: 5)
        "#]],
    );
    check_answer(
        "SELECT relocation_site, COUNT(*) FROM households GROUP BY relocation_site \
         ORDER BY relocation_site NULLS FIRST LIMIT 2",
        expect![[r#"
            relocation_site | COUNT(*)
            NULL | 3
            新区A | 1
            (rows scanned: 5)
        "#]],
    );
    check_answer(
        "SELECT cause FROM households GROUP BY cause ORDER BY MAX(members) DESC LIMIT 2",
        expect![[r#"
            cause
            water
            illness
            (rows scanned: 5)
        "#]],
    );
    check_answer(
        "SELECT status, AVG(income_per_capita) AS income FROM households GROUP BY status \
         HAVING AVG(income_per_capita) > 4000.5 ORDER BY 2",
        expect![[r#"
            status | income
            exited | 6600.25
            (rows scanned: 5)
        "#]],
    );
}

#[test]
fn plans_name_tables_and_columns() {
    let plan = query::plan(
        "SELECT gender, age_band(birth_date, 5), COUNT(*) FROM persons JOIN households USING (household_id) \
         WHERE province(region_code) = '520000000000' GROUP BY 1, 2",
        as_of(),
    )
    .expect("plan");
    assert_eq!(plan.tables(), [Table::Persons, Table::Households]);
    let columns: Vec<String> = plan
        .columns
        .iter()
        .map(|column| format!("{}.{}", column.table, column.name))
        .collect();
    assert_eq!(
        columns,
        [
            "households.region_code",
            "persons.birth_date",
            "persons.gender"
        ]
    );
}

#[test]
fn partials_merge_into_the_whole() {
    let sql =
        "SELECT province(region_code), cause, COUNT(*), SUM(members), AVG(income_per_capita), \
               MIN(cadre_id), MAX(relocation_site) FROM households GROUP BY 1, 2 ORDER BY 3 DESC";
    let plan = query::plan(sql, as_of()).expect("plan");
    let all_households = households();
    let all_persons = persons();
    let (first, second): (Vec<Household>, Vec<Household>) = all_households
        .iter()
        .cloned()
        .partition(|row| row.household_id.0 % 2 == 1);
    let members = |rows: &[Household]| -> Vec<Person> {
        all_persons
            .iter()
            .filter(|person| {
                rows.iter()
                    .any(|row| row.household_id == person.household_id)
            })
            .cloned()
            .collect()
    };
    let mut merged = query::execute_partial(&plan, &image_of(&first, &members(&first)));
    merged.merge(query::execute_partial(
        &plan,
        &image_of(&second, &members(&second)),
    ));
    let whole = query::execute(&plan, &image_of(&all_households, &all_persons));
    assert_eq!(merged.finalize(&plan), whole);

    let plan = query::plan(
        "SELECT COUNT(*), MAX(members) FROM households WHERE members > 4",
        as_of(),
    )
    .expect("plan");
    let mut merged = query::execute_partial(&plan, &Image::new());
    merged.merge(query::execute_partial(
        &plan,
        &image_of(&all_households, &[]),
    ));
    assert_eq!(
        merged.finalize(&plan).rows,
        vec![vec![Value::Int(1), Value::Int(5)]]
    );
}

#[test]
fn operator_chains_past_the_bound_are_refused_before_planning() {
    // A left-deep chain parses into a tree as deep as it is long; planning it recursively could
    // exhaust a stack, so the planner counts operators first.
    let chain = vec!["members = 1"; 300].join(" AND ");
    check_refused(
        &format!("SELECT COUNT(*) FROM households WHERE {chain}"),
        expect!["1:4131: not supported: the query has 600 operators (AND, OR, NOT, comparisons, arithmetic); at most 512 are accepted"],
    );
    let nots = "NOT ".repeat(600);
    check_refused(
        &format!("SELECT COUNT(*) FROM households WHERE {nots} relocated"),
        expect!["1:2083: not supported: the query has 601 operators (AND, OR, NOT, comparisons, arithmetic); at most 512 are accepted"],
    );
    // Within the bound, a long chain plans and runs.
    let chain = vec!["members > 0"; 200].join(" OR ");
    assert!(tiermesh_federation::query::plan(
        &format!("SELECT COUNT(*) FROM households WHERE {chain}"),
        tiermesh_federation::date::Date::parse_iso("2026-06-30").expect("date"),
    )
    .is_ok());
}

#[test]
fn deep_nesting_is_refused_before_parsing() {
    // sqlparser's work on nested calls doubles with each level: refused from the tokens.
    check_refused(
        &format!("SELECT {}", "substr(".repeat(40)),
        expect!["1:126: not supported: the query nests parentheses more than 16 levels deep"],
    );
    let nested = format!("({}1{})", "(".repeat(20), ")".repeat(20));
    check_refused(
        &format!("SELECT COUNT(*) FROM households WHERE members = {nested}"),
        expect!["1:65: not supported: the query nests parentheses more than 16 levels deep"],
    );
}

#[test]
fn a_prepared_person_index_is_empty_with_room_and_is_adopted_only_by_an_empty_image() {
    const H1: u64 = 5201020012010001;
    let head = |serial: u64| {
        person(
            serial,
            H1,
            Relation::Head,
            Gender::Male,
            "1980-01-01",
            false,
        )
    };
    let id = |serial: u64| head(serial).person_id;
    let index = PersonIndex::prepared(50_000);
    assert!(index.capacity() >= 50_000);
    assert!(index.is_empty(), "the keys written to prepare it are gone");
    let mut image = Image::new();
    image.upsert_household(&household(
        H1,
        1,
        Cause::Illness,
        Status::Poor,
        None,
        350_000,
        [true; 3],
        "C1",
        None,
    ));
    assert!(image.adopt_person_index(index));
    for serial in 1..=1_000 {
        image.place_person(&head(serial)).expect("household stored");
    }
    assert_eq!(image.persons_len(), 1_000);
    assert_eq!(image.persons_stored(HouseholdId(H1)), 1_000);
    assert_eq!(image.person_household(id(500)), Some(HouseholdId(H1)));
    assert_eq!(image.person_household(id(5_000)), None);
    // An image with persons keeps its own index (adopting would lose them).
    assert!(!image.adopt_person_index(PersonIndex::prepared(100_000)));
    assert_eq!(image.persons_len(), 1_000);
    assert_eq!(image.person_household(id(1)), Some(HouseholdId(H1)));
    // A smaller index than the one already reserved is not taken either.
    let mut reserved = Image::new();
    reserved.reserve(0, 100_000);
    assert!(!reserved.adopt_person_index(PersonIndex::prepared(10)));
}
