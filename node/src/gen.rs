//! Synthetic data generator: realistic, deterministic `households.csv` and `persons.csv` per county.
//!
//! The region tree below the requested region is synthetic but stable: how many prefectures,
//! counties, townships and villages a region has depends only on its code, never on the seed, so
//! a prefecture generated on its own has the same counties as inside a national run. The seed
//! drives everything else (how households spread over counties and villages, every row).
//!
//! Every row obeys every hard rule of the data standard. A small, exactly counted share of rows
//! trips the standard's warning screens, so an import can be checked against
//! [`GenSummary::expected_warnings`].
//!
//! Invariant: no clock reads; `today` is an option. Same options, same bytes.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tiermesh_federation::date::Date;
use tiermesh_federation::record::{
    Cause, Education, Gender, Health, Industry, Labor, Relation, Status,
};
use tiermesh_federation::region::{RegionCode, Tier};
use tiermesh_federation::schema::Table;
use tiermesh_federation::standard::id_number::{check_char, check_value};

/// Upper bound on households in one run (about 330 million persons, tens of gigabytes of CSV).
pub const HOUSEHOLDS_MAX: u64 = 100_000_000;
/// The first year households were registered (建档立卡 began in 2014).
pub const REGISTRATION_YEAR_FIRST: i32 = 2014;
/// The 2020 poverty line in fen per person per year: exited households below it are warned about.
pub const POVERTY_LINE_CENTS: i64 = 400_000;

/// Serials in a household id are four digits, 0001 to 9999.
const VILLAGE_SERIALS_MAX: u64 = 9_999;
/// Township and village segments are three digits.
const SEGMENT_THREE_DIGITS_MAX: u64 = 999;
/// Birth years span this many years, today's year included.
const AGE_YEARS_MAX: i32 = 100;
/// How many neighbouring birth years are tried when one year's ID numbers are used up.
const BIRTH_YEAR_PROBES_MAX: i32 = 10;
/// Sequence numbers per gender per county per birth day (three digits, parity = gender).
const SEQUENCES_PER_GENDER: u32 = 500;
/// Log-normal draws tried before an income falls back to a uniform one within its bounds.
const INCOME_DRAWS_MAX: u32 = 8;
/// Output buffer per CSV file.
const WRITE_BUFFER_BYTES: usize = 1 << 20;
/// Households per cadre (帮扶干部), roughly.
const HOUSEHOLDS_PER_CADRE: u64 = 8;
/// Relocation sites (安置点) per county.
const RELOCATION_SITES_PER_COUNTY: usize = 3;
/// Household weights lie in `WEIGHT_MIN..=3 * WEIGHT_MIN`, which bounds any share at three times
/// the mean.
const WEIGHT_MIN: u64 = 500;

/// Probabilities of the injected warning cases.
const EXIT_BELOW_LINE_PROBABILITY: f64 = 0.005;
const EXIT_WITHOUT_GUARANTEES_PROBABILITY: f64 = 0.005;
const DROPOUT_PROBABILITY: f64 = 0.005;
const MEMBERS_MISMATCH_PROBABILITY: f64 = 0.003;
const HEAD_UNDER_16_PROBABILITY: f64 = 0.001;
/// Share of persons whose ID number carries another county's code.
const MIGRANT_PROBABILITY: f64 = 0.02;
const RELOCATED_PROBABILITY: f64 = 0.10;
const PHONE_PROBABILITY: f64 = 0.72;

/// The 31 provincial codes and how many prefecture-level divisions each has (roughly the real
/// count; municipalities have one or two).
const PROVINCES: [(u64, u64); 31] = [
    (11, 1),
    (12, 1),
    (13, 11),
    (14, 11),
    (15, 12),
    (21, 14),
    (22, 9),
    (23, 13),
    (31, 1),
    (32, 13),
    (33, 11),
    (34, 16),
    (35, 9),
    (36, 11),
    (37, 16),
    (41, 17),
    (42, 13),
    (43, 14),
    (44, 21),
    (45, 14),
    (46, 4),
    (50, 2),
    (51, 21),
    (52, 9),
    (53, 16),
    (54, 7),
    (61, 10),
    (62, 14),
    (63, 8),
    (64, 5),
    (65, 14),
];
const MUNICIPALITIES: [u64; 4] = [11, 12, 31, 50];

/// Salts keep the independent hash streams apart.
const SALT_PREFECTURES: u64 = 1;
const SALT_COUNTIES: u64 = 2;
const SALT_TOWNSHIPS: u64 = 3;
const SALT_VILLAGES: u64 = 4;
const SALT_COUNTY_WEIGHT: u64 = 5;
const SALT_VILLAGE_WEIGHT: u64 = 6;
const SALT_SITES: u64 = 7;
const SALT_BIRTH_DAY: u64 = 8;
const SALT_SEQUENCE: u64 = 9;

/// What to generate and where.
#[derive(Clone, Debug)]
pub struct GenOptions {
    /// The region to fill: the national root, a province, a prefecture or a county.
    pub region: RegionCode,
    /// Households in total, spread over the region's counties.
    pub households: u64,
    /// Drives all randomness: the same options give byte-identical files.
    pub seed: u64,
    /// Output directory; receives one folder per county.
    pub out: PathBuf,
    /// "Now" for years, ages and the not-in-the-future rules.
    pub today: Date,
}

/// Rows generated that the standard's screens will report as warnings on `today`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WarningCounts {
    /// Households `exited` with income_per_capita below 4000.
    pub exit_below_line: u64,
    /// Households `exited` with housing_safe, water_safe or medical_insured false.
    pub exit_without_guarantees: u64,
    /// Persons aged 6-15 with in_school false.
    pub dropout: u64,
    /// Households whose `members` differs from their rows in persons.
    pub members_mismatch: u64,
    /// Households whose head (by head_id) is younger than 16.
    pub head_under_16: u64,
}

/// What a run wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenSummary {
    /// Each county that received households, in code order: (county, households, persons).
    pub counties: Vec<(RegionCode, u64, u64)>,
    /// Households written.
    pub households: u64,
    /// Persons written.
    pub persons: u64,
    /// Warnings an import on `today` will report.
    pub expected_warnings: WarningCounts,
}

/// Why a run could not generate its data.
#[derive(thiserror::Error, Debug)]
pub enum GenError {
    /// The region is a township or a village, below the county folders the output is made of.
    #[error(
        "cannot generate for {tier} {region}: give the national root 000000000000, a province, \
         a prefecture or a county code"
    )]
    RegionTier { region: RegionCode, tier: Tier },
    /// Zero households were asked for.
    #[error("the number of households must be at least 1")]
    NoHouseholds,
    /// More households than [`HOUSEHOLDS_MAX`] were asked for.
    #[error("{households} households requested; at most {max} can be generated in one run")]
    TooManyHouseholds { households: u64, max: u64 },
    /// The reference date lies before the first registration year.
    #[error(
        "the reference date {today} is before {REGISTRATION_YEAR_FIRST}, the first registration \
         year; give a date in {REGISTRATION_YEAR_FIRST} or later"
    )]
    TodayTooEarly { today: Date },
    /// One county's ID numbers for a birth year (and its neighbours) are used up.
    #[error(
        "no unused ID numbers left for county {county:06} around birth year {year}: generate \
         fewer households per county"
    )]
    IdNumbersExhausted { county: u32, year: i32 },
    /// A directory or file could not be created or written.
    #[error("cannot write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A CSV row could not be written.
    #[error("cannot write CSV file {}", path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
}

/// Generates the data set described by `options` under `options.out`.
pub fn generate(options: &GenOptions) -> Result<GenSummary, GenError> {
    let tier = options.region.tier();
    if tier > Tier::County {
        return Err(GenError::RegionTier {
            region: options.region,
            tier,
        });
    }
    if options.households == 0 {
        return Err(GenError::NoHouseholds);
    }
    if options.households > HOUSEHOLDS_MAX {
        return Err(GenError::TooManyHouseholds {
            households: options.households,
            max: HOUSEHOLDS_MAX,
        });
    }
    if options.today.year() < REGISTRATION_YEAR_FIRST {
        return Err(GenError::TodayTooEarly {
            today: options.today,
        });
    }
    assert_columns(Table::Households, &HOUSEHOLD_COLUMNS);
    assert_columns(Table::Persons, &PERSON_COLUMNS);

    let counties = counties_under(options.region);
    let weights: Vec<u64> = counties
        .iter()
        .map(|county| weight(options.seed, county.value(), SALT_COUNTY_WEIGHT))
        .collect();
    let shares = apportion(options.households, &weights);

    fs::create_dir_all(&options.out).map_err(|source| GenError::Io {
        path: options.out.clone(),
        source,
    })?;
    let mut generator = Generator::new(options);
    let mut summary = GenSummary {
        counties: Vec::new(),
        households: 0,
        persons: 0,
        expected_warnings: WarningCounts::default(),
    };
    for (county, households) in counties.into_iter().zip(shares) {
        if households == 0 {
            continue;
        }
        let persons = generator.county(county, households)?;
        summary.counties.push((county, households, persons));
        summary.households += households;
        summary.persons += persons;
    }
    summary.expected_warnings = generator.warnings;
    Ok(summary)
}

const HOUSEHOLD_COLUMNS: [&str; 18] = [
    "household_id",
    "region_code",
    "head_id",
    "head_name",
    "members",
    "cause",
    "status",
    "registered_year",
    "exit_year",
    "income_per_capita",
    "housing_safe",
    "water_safe",
    "medical_insured",
    "cadre_id",
    "industry",
    "relocated",
    "relocation_site",
    "phone",
];
const PERSON_COLUMNS: [&str; 10] = [
    "person_id",
    "household_id",
    "relation",
    "gender",
    "birth_date",
    "education",
    "health",
    "labor",
    "in_school",
    "employed",
];

/// The writer emits fields in a fixed order; it must be the standard's.
fn assert_columns(table: Table, written: &[&str]) {
    let standard: Vec<&str> = table.columns().iter().map(|column| column.name).collect();
    assert_eq!(
        standard, written,
        "generator column order differs from the standard's for {table}"
    );
}

// ---------------------------------------------------------------------------------------------
// Synthetic geography.

/// A stateless 64-bit mix (SplitMix64 finaliser) of a seed, a value and a salt.
fn mix(seed: u64, value: u64, salt: u64) -> u64 {
    let mut z = seed
        ^ value.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03).rotate_left(17);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A household weight in `WEIGHT_MIN..=3 * WEIGHT_MIN`.
fn weight(seed: u64, value: u64, salt: u64) -> u64 {
    WEIGHT_MIN + mix(seed, value, salt) % (2 * WEIGHT_MIN + 1)
}

fn region(value: u64) -> RegionCode {
    match RegionCode::from_u64(value) {
        Ok(code) => code,
        Err(error) => panic!("synthetic region {value:012} is not a valid code: {error}"),
    }
}

fn province_number(code: RegionCode) -> u64 {
    code.value() / 10_000_000_000
}

fn prefectures_in(province: RegionCode) -> u64 {
    let number = province_number(province);
    match PROVINCES.iter().find(|(code, _)| *code == number) {
        Some((_, count)) => *count,
        None => 8 + mix(0, province.value(), SALT_PREFECTURES) % 9,
    }
}

fn counties_in(prefecture: RegionCode) -> u64 {
    let hash = mix(0, prefecture.value(), SALT_COUNTIES);
    if MUNICIPALITIES.contains(&province_number(prefecture)) {
        12 + hash % 7
    } else {
        4 + hash % 11
    }
}

/// The `number`-th child (1-based) of `parent`.
fn child(parent: RegionCode, number: u64) -> RegionCode {
    let unit = match parent.tier() {
        Tier::National => 10_000_000_000,
        Tier::Province => 100_000_000,
        Tier::Prefecture => 1_000_000,
        Tier::County => 1_000,
        Tier::Township => 1,
        Tier::Village => panic!("a village has no children"),
    };
    region(parent.value() + number * unit)
}

/// Every county inside `region`, in code order.
fn counties_under(region_code: RegionCode) -> Vec<RegionCode> {
    let mut out = Vec::new();
    let provinces: Vec<RegionCode> = match region_code.tier() {
        Tier::National => PROVINCES
            .iter()
            .map(|(number, _)| region(number * 10_000_000_000))
            .collect(),
        Tier::Province => vec![region_code],
        Tier::Prefecture => {
            for county in 1..=counties_in(region_code) {
                out.push(child(region_code, county));
            }
            return out;
        }
        Tier::County => return vec![region_code],
        Tier::Township | Tier::Village => panic!("counties_under({region_code}) below a county"),
    };
    for province in provinces {
        for prefecture in 1..=prefectures_in(province) {
            let prefecture = child(province, prefecture);
            for county in 1..=counties_in(prefecture) {
                out.push(child(prefecture, county));
            }
        }
    }
    out
}

/// The villages of `county`, in code order: 10-20 townships of 5-20 villages, with more villages
/// when the county's households would not fit in four-digit serials.
fn villages_in(county: RegionCode, households: u64) -> Vec<RegionCode> {
    let townships = 10 + mix(0, county.value(), SALT_TOWNSHIPS) % 11;
    let mut per_township: Vec<u64> = (1..=townships)
        .map(|township| 5 + mix(0, child(county, township).value(), SALT_VILLAGES) % 16)
        .collect();
    // Weights are within a factor of three, so no village gets more than 3 * mean (+1 rounding).
    let required = (3 * households).div_ceil(VILLAGE_SERIALS_MAX - 1);
    if per_township.iter().sum::<u64>() < required {
        let townships = townships.max(required.div_ceil(SEGMENT_THREE_DIGITS_MAX));
        let each = required.div_ceil(townships);
        assert!(townships <= SEGMENT_THREE_DIGITS_MAX && each <= SEGMENT_THREE_DIGITS_MAX);
        per_township = vec![each; townships as usize];
    }
    let mut villages = Vec::with_capacity(per_township.iter().sum::<u64>() as usize);
    for (township_index, count) in per_township.iter().enumerate() {
        let township = child(county, township_index as u64 + 1);
        for village in 1..=*count {
            villages.push(child(township, village));
        }
    }
    villages
}

/// Splits `total` over `weights` proportionally (largest remainder, ties to the lower index).
fn apportion(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u128 = weights.iter().map(|weight| u128::from(*weight)).sum();
    assert!(sum > 0, "apportion over no weight");
    let mut shares = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    for (index, weight) in weights.iter().enumerate() {
        let exact = u128::from(total) * u128::from(*weight);
        shares.push((exact / sum) as u64);
        remainders.push((exact % sum, index));
    }
    let left = total - shares.iter().sum::<u64>();
    remainders.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, index) in remainders.iter().take(left as usize) {
        shares[*index] += 1;
    }
    shares
}

// ---------------------------------------------------------------------------------------------
// ID numbers.

/// Hands out GB 11643 numbers that never repeat within a run.
///
/// Each (ID county, birth year, gender) has a counter `n`; `n mod days_in_year` picks the birth
/// day through a fixed permutation and `n / days_in_year` the sequence number, so distinct
/// counters give distinct (day, sequence) pairs.
struct IdAllocator {
    /// Today's year: the newest birth year.
    newest_year: i32,
    /// Days of today's year up to and including today: births cannot be later.
    newest_year_days: u32,
    counters: HashMap<u32, Box<[u32]>>,
}

struct AllocatedId {
    text: [u8; 18],
    birth_date: Date,
}

impl IdAllocator {
    fn new(today: Date) -> IdAllocator {
        let newest_year = today.year();
        IdAllocator {
            newest_year,
            newest_year_days: (today.days() - january_first(newest_year).days() + 1) as u32,
            counters: HashMap::new(),
        }
    }

    /// The share of today's year that has passed, today included.
    fn newest_year_share(&self) -> f64 {
        let days = if is_leap(self.newest_year) {
            366.0
        } else {
            365.0
        };
        f64::from(self.newest_year_days) / days
    }

    fn allocate(
        &mut self,
        county: u32,
        target_year: i32,
        gender: Gender,
    ) -> Result<AllocatedId, GenError> {
        let oldest_year = self.newest_year - (AGE_YEARS_MAX - 1);
        let target_year = target_year.clamp(oldest_year, self.newest_year);
        let counters = self
            .counters
            .entry(county)
            .or_insert_with(|| vec![0; 2 * AGE_YEARS_MAX as usize].into_boxed_slice());
        for probe in 0..=2 * BIRTH_YEAR_PROBES_MAX {
            // 0, +1, -1, +2, -2, ...: a younger year first keeps ages from drifting upwards.
            let offset = if probe % 2 == 1 {
                (probe + 1) / 2
            } else {
                -(probe / 2)
            };
            let year = target_year + offset;
            if year < oldest_year || year > self.newest_year {
                continue;
            }
            let index =
                2 * (self.newest_year - year) as usize + usize::from(gender == Gender::Male);
            let jan_first = january_first(year);
            let days = if year == self.newest_year {
                self.newest_year_days
            } else if is_leap(year) {
                366
            } else {
                365
            };
            let counter = counters[index];
            if counter >= days * SEQUENCES_PER_GENDER {
                continue;
            }
            counters[index] = counter + 1;
            let key = u64::from(county) * 10_000 + year as u64;
            let day_slot = counter % days;
            let round = counter / days;
            // A stride coprime to `days` permutes the days; no `days` <= 366 is a multiple of both.
            let stride = if days % 97 == 0 { 101 } else { 97 };
            let day =
                (day_slot * stride + (mix(0, key, SALT_BIRTH_DAY) % u64::from(days)) as u32) % days;
            let sequence_slot = (round * 3
                + (mix(0, key * 1_000 + u64::from(day_slot), SALT_SEQUENCE)
                    % u64::from(SEQUENCES_PER_GENDER)) as u32)
                % SEQUENCES_PER_GENDER;
            let sequence = 2 * sequence_slot + u32::from(gender == Gender::Male);
            let birth_date = Date::from_days(jan_first.days() + day as i32);
            let (birth_year, month, day_of_month) = birth_date.ymd();
            let mut body = [0u8; 17];
            write_digits(&mut body[0..6], u64::from(county));
            write_digits(&mut body[6..10], birth_year as u64);
            write_digits(&mut body[10..12], u64::from(month));
            write_digits(&mut body[12..14], u64::from(day_of_month));
            write_digits(&mut body[14..17], u64::from(sequence));
            let mut text = [0u8; 18];
            text[..17].copy_from_slice(&body);
            text[17] = check_char(check_value(&body)) as u8;
            return Ok(AllocatedId { text, birth_date });
        }
        Err(GenError::IdNumbersExhausted {
            county,
            year: target_year,
        })
    }
}

fn january_first(year: i32) -> Date {
    match Date::from_ymd(year, 1, 1) {
        Some(date) => date,
        None => panic!("year {year} has no 1 January"),
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Writes `value` zero-padded into all of `out`.
fn write_digits(out: &mut [u8], mut value: u64) {
    for byte in out.iter_mut().rev() {
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
    debug_assert_eq!(value, 0, "value wider than its field");
}

// ---------------------------------------------------------------------------------------------
// Distributions.

/// Picks an index with probability proportional to its weight.
fn pick(rng: &mut ChaCha8Rng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut ticket = rng.gen_range(0..total);
    for (index, weight) in weights.iter().enumerate() {
        if ticket < *weight {
            return index;
        }
        ticket -= weight;
    }
    weights.len() - 1
}

/// A standard normal deviate (Box-Muller).
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let radius_uniform = 1.0 - rng.gen::<f64>();
    let angle_uniform = rng.gen::<f64>();
    (-2.0 * radius_uniform.ln()).sqrt() * (std::f64::consts::TAU * angle_uniform).cos()
}

/// A normal age, rounded and clamped.
fn normal_age(rng: &mut ChaCha8Rng, mean: f64, deviation: f64, min: i32, max: i32) -> i32 {
    ((mean + deviation * standard_normal(rng)).round() as i32).clamp(min, max)
}

/// Log-normal income in fen within `min_yuan..=max_yuan`, redrawn rather than clamped so no value
/// piles up at a bound.
fn income_cents(
    rng: &mut ChaCha8Rng,
    median_yuan: f64,
    sigma: f64,
    min_yuan: i64,
    max_yuan: i64,
) -> i64 {
    let range = min_yuan * 100..=max_yuan * 100;
    for _ in 0..INCOME_DRAWS_MAX {
        let yuan = median_yuan * (sigma * standard_normal(rng)).exp();
        let cents = (yuan * 100.0).round() as i64;
        if range.contains(&cents) {
            return cents;
        }
    }
    rng.gen_range(range)
}

/// Per-mille weights in `Cause::NAMES` order.
const CAUSE_WEIGHTS: [u32; 13] = [
    420, // illness
    140, // disability
    100, // education
    40,  // disaster
    5,   // marriage
    30,  // land
    20,  // water
    60,  // skills
    80,  // labor
    70,  // capital
    20,  // transport
    10,  // motivation
    5,   // other
];
const CAUSES: [Cause; 13] = [
    Cause::Illness,
    Cause::Disability,
    Cause::Education,
    Cause::Disaster,
    Cause::Marriage,
    Cause::Land,
    Cause::Water,
    Cause::Skills,
    Cause::Labor,
    Cause::Capital,
    Cause::Transport,
    Cause::Motivation,
    Cause::Other,
];
const STATUS_WEIGHTS: [u32; 4] = [120, 700, 60, 120];
const STATUSES: [Status; 4] = [
    Status::Poor,
    Status::Exited,
    Status::Returned,
    Status::Monitored,
];
const INDUSTRY_WEIGHTS: [u32; 5] = [42, 30, 6, 6, 16];
const INDUSTRIES: [Industry; 5] = [
    Industry::Planting,
    Industry::Breeding,
    Industry::Processing,
    Industry::Circulation,
    Industry::None,
];
/// Household sizes 1-8, per mille; mean about 3.27.
const MEMBER_WEIGHTS: [u32; 8] = [145, 210, 222, 210, 122, 57, 24, 10];
/// Registration years 2014-2020, per mille.
const REGISTRATION_WEIGHTS: [u32; 7] = [550, 130, 100, 80, 60, 50, 30];
/// Monitored households (监测户) were mostly registered from 2020 on: 2019-2024.
const MONITORED_REGISTRATION_WEIGHTS: [u32; 6] = [10, 35, 25, 15, 10, 5];
/// Exit years 2016-2020.
const EXIT_WEIGHTS: [u32; 5] = [15, 20, 25, 25, 15];
const EDUCATIONS: [Education; 6] = [
    Education::None,
    Education::Primary,
    Education::Junior,
    Education::Senior,
    Education::Vocational,
    Education::College,
];
const HEALTHS: [Health; 4] = [
    Health::Healthy,
    Health::Chronic,
    Health::Serious,
    Health::Disabled,
];

const SURNAMES: &str = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤";
const MALE_GIVEN: &str = "建国华明平军文强伟勇刚林海涛斌波辉力永志春生福德成荣富贵金全发兴旺龙虎山峰云飞学忠义仁礼宝才顺祥光新民安家正元";
const FEMALE_GIVEN: &str = "红英芳秀兰玉梅丽霞燕萍琴云桂花香美翠珍凤娟敏静丹莲菊琼艳芬淑慧巧月春";
const SITE_NAMES: &str =
    "幸福和谐阳光锦绣安居振兴团结康乐丰收新城惠民富民同心乐业兴隆向阳美好明珠翠谷金山";
const SITE_SUFFIXES: [&str; 4] = ["社区安置点", "新村安置点", "安置点", "小区安置点"];

// ---------------------------------------------------------------------------------------------
// Generation.

/// One planned member before its ID is drawn.
#[derive(Clone, Copy)]
struct Member {
    relation: Relation,
    gender: Gender,
    target_age: i32,
    /// Born in exactly today's year minus `target_age` (age `target_age` or one less), for
    /// members whose age must stay below a bound.
    exact_year: bool,
}

/// One person row, ready to write.
struct PersonRow {
    id: [u8; 18],
    birth_date: Date,
    age: i32,
    relation: Relation,
    gender: Gender,
    education: Education,
    health: Health,
    labor: Labor,
    in_school: bool,
    employed: bool,
}

struct Generator {
    seed: u64,
    out: PathBuf,
    today: Date,
    ids: IdAllocator,
    warnings: WarningCounts,
    surnames: Vec<char>,
    male_given: Vec<char>,
    female_given: Vec<char>,
    site_names: Vec<char>,
    members: Vec<Member>,
    persons: Vec<PersonRow>,
    text: String,
}

/// The two CSV files of one county.
struct CountyFiles {
    households_path: PathBuf,
    households: csv::Writer<File>,
    persons_path: PathBuf,
    persons: csv::Writer<File>,
}

impl CountyFiles {
    fn create(folder: &Path) -> Result<CountyFiles, GenError> {
        fs::create_dir_all(folder).map_err(|source| GenError::Io {
            path: folder.to_path_buf(),
            source,
        })?;
        let (households_path, households) = csv_file(folder, Table::Households)?;
        let (persons_path, persons) = csv_file(folder, Table::Persons)?;
        Ok(CountyFiles {
            households_path,
            households,
            persons_path,
            persons,
        })
    }

    fn finish(mut self) -> Result<(), GenError> {
        self.households.flush().map_err(|source| GenError::Io {
            path: self.households_path.clone(),
            source,
        })?;
        self.persons.flush().map_err(|source| GenError::Io {
            path: self.persons_path.clone(),
            source,
        })
    }
}

fn csv_file(folder: &Path, table: Table) -> Result<(PathBuf, csv::Writer<File>), GenError> {
    let path = folder.join(format!("{}.csv", table.name()));
    let file = File::create(&path).map_err(|source| GenError::Io {
        path: path.clone(),
        source,
    })?;
    let mut writer = csv::WriterBuilder::new()
        .buffer_capacity(WRITE_BUFFER_BYTES)
        .from_writer(file);
    let header = table.columns().iter().map(|column| column.name);
    writer
        .write_record(header)
        .map_err(|source| GenError::Csv {
            path: path.clone(),
            source,
        })?;
    Ok((path, writer))
}

/// Scratch buffers for one household row's formatted fields.
struct HouseholdFields {
    household_id: [u8; 16],
    region_code: [u8; 12],
    cadre_id: Vec<u8>,
    phone: [u8; 11],
}

impl Generator {
    fn new(options: &GenOptions) -> Generator {
        Generator {
            seed: options.seed,
            out: options.out.clone(),
            today: options.today,
            ids: IdAllocator::new(options.today),
            warnings: WarningCounts::default(),
            surnames: SURNAMES.chars().collect(),
            male_given: MALE_GIVEN.chars().collect(),
            female_given: FEMALE_GIVEN.chars().collect(),
            site_names: SITE_NAMES.chars().collect(),
            members: Vec::with_capacity(8),
            persons: Vec::with_capacity(8),
            text: String::with_capacity(64),
        }
    }

    /// Writes one county's files; returns the persons written.
    fn county(&mut self, county: RegionCode, households: u64) -> Result<u64, GenError> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(county.value());
        let county_number = (county.value() / 1_000_000) as u32;
        let folder = self.out.join(format!("{county_number:06}"));
        let mut files = CountyFiles::create(&folder)?;

        let villages = villages_in(county, households);
        let weights: Vec<u64> = villages
            .iter()
            .map(|village| weight(self.seed, village.value(), SALT_VILLAGE_WEIGHT))
            .collect();
        let shares = apportion(households, &weights);
        let sites = self.relocation_sites(county);

        let mut fields = HouseholdFields {
            household_id: [0; 16],
            region_code: [0; 12],
            cadre_id: Vec::with_capacity(16),
            phone: [0; 11],
        };
        let mut persons_written = 0;
        let mut cadres_assigned = 0u64;
        for (village, village_households) in villages.iter().zip(shares) {
            assert!(
                village_households <= VILLAGE_SERIALS_MAX,
                "village {village} overfull"
            );
            if village_households == 0 {
                continue;
            }
            let village_cadres = village_households.div_ceil(HOUSEHOLDS_PER_CADRE);
            write_digits(&mut fields.region_code, village.value());
            for serial in 1..=village_households {
                write_digits(&mut fields.household_id, village.value() * 10_000 + serial);
                let cadre = cadres_assigned + rng.gen_range(1..=village_cadres);
                fields.cadre_id.clear();
                fields.cadre_id.push(b'C');
                fields.cadre_id.extend_from_slice(&fields.region_code[..6]);
                let mut number = [0u8; 24];
                let digits = format_integer(&mut number, cadre);
                fields.cadre_id.extend(std::iter::repeat_n(
                    b'0',
                    5usize.saturating_sub(digits.len()),
                ));
                fields.cadre_id.extend_from_slice(digits);
                persons_written +=
                    self.household(&mut rng, county_number, &sites, &mut fields, &mut files)?;
            }
            cadres_assigned += village_cadres;
        }
        files.finish()?;
        Ok(persons_written)
    }

    fn relocation_sites(&self, county: RegionCode) -> Vec<String> {
        let pairs = self.site_names.len() / 2;
        (0..RELOCATION_SITES_PER_COUNTY)
            .map(|site| {
                let hash = mix(self.seed, county.value() * 10 + site as u64, SALT_SITES);
                let name = (hash % pairs as u64) as usize;
                let suffix = SITE_SUFFIXES[((hash >> 32) % SITE_SUFFIXES.len() as u64) as usize];
                let mut text: String = self.site_names[2 * name..2 * name + 2].iter().collect();
                text.push_str(suffix);
                text
            })
            .collect()
    }

    /// Generates and writes one household and its persons; returns the persons written.
    fn household(
        &mut self,
        rng: &mut ChaCha8Rng,
        county_number: u32,
        sites: &[String],
        fields: &mut HouseholdFields,
        files: &mut CountyFiles,
    ) -> Result<u64, GenError> {
        let today_year = self.today.year();
        let status = STATUSES[pick(rng, &STATUS_WEIGHTS)];
        let cause = CAUSES[pick(rng, &CAUSE_WEIGHTS)];
        self.plan_members(rng);
        self.draw_persons(rng, county_number, cause)?;

        let registered_year = if status == Status::Monitored {
            2019 + pick(rng, &MONITORED_REGISTRATION_WEIGHTS) as i32
        } else {
            REGISTRATION_YEAR_FIRST + pick(rng, &REGISTRATION_WEIGHTS) as i32
        }
        .min(today_year);
        let exit_year = (status == Status::Exited).then(|| {
            (2016 + pick(rng, &EXIT_WEIGHTS) as i32)
                .max(registered_year)
                .min(today_year)
        });
        let income = match status {
            Status::Exited if rng.gen_bool(EXIT_BELOW_LINE_PROBABILITY) => {
                rng.gen_range(260_000..POVERTY_LINE_CENTS)
            }
            Status::Exited => income_cents(rng, 9_800.0, 0.38, 4_000, 80_000),
            Status::Poor => income_cents(rng, 3_200.0, 0.2, 2_000, 4_500),
            Status::Monitored => income_cents(rng, 5_600.0, 0.3, 1_500, 30_000),
            Status::Returned => income_cents(rng, 3_600.0, 0.25, 800, 12_000),
        };
        let mut guarantees = if status == Status::Exited {
            [true; 3]
        } else {
            [rng.gen_bool(0.88), rng.gen_bool(0.92), rng.gen_bool(0.97)]
        };
        if status == Status::Exited && rng.gen_bool(EXIT_WITHOUT_GUARANTEES_PROBABILITY) {
            guarantees[rng.gen_range(0..3)] = false;
        }
        let industry = INDUSTRIES[pick(rng, &INDUSTRY_WEIGHTS)];
        let relocation_site = rng
            .gen_bool(RELOCATED_PROBABILITY)
            .then(|| sites[rng.gen_range(0..sites.len())].as_str());
        let has_phone = rng.gen_bool(PHONE_PROBABILITY);
        if has_phone {
            fields.phone[0] = b'1';
            fields.phone[1] = [b'3', b'5', b'5', b'7', b'8', b'8', b'9'][rng.gen_range(0..7)];
            write_digits(&mut fields.phone[2..], rng.gen_range(0..1_000_000_000));
        }
        let rows = self.persons.len() as u64;
        let members = if rng.gen_bool(MEMBERS_MISMATCH_PROBABILITY) {
            if rows == 1 || rng.gen_bool(0.5) {
                rows + 1
            } else {
                rows - 1
            }
        } else {
            rows
        };

        // The screens, counted on exactly what is written.
        let warnings = &mut self.warnings;
        if status == Status::Exited && income < POVERTY_LINE_CENTS {
            warnings.exit_below_line += 1;
        }
        if status == Status::Exited && guarantees.contains(&false) {
            warnings.exit_without_guarantees += 1;
        }
        if members != rows {
            warnings.members_mismatch += 1;
        }
        if self.persons[0].age < 16 {
            warnings.head_under_16 += 1;
        }
        self.head_name(rng, self.persons[0].gender);

        let writer = &mut files.households;
        let csv_error = |source| GenError::Csv {
            path: files.households_path.clone(),
            source,
        };
        let mut number = [0u8; 24];
        writer.write_field(fields.household_id).map_err(csv_error)?;
        writer.write_field(fields.region_code).map_err(csv_error)?;
        writer.write_field(self.persons[0].id).map_err(csv_error)?;
        writer
            .write_field(self.text.as_bytes())
            .map_err(csv_error)?;
        writer
            .write_field(format_integer(&mut number, members))
            .map_err(csv_error)?;
        writer.write_field(cause.name()).map_err(csv_error)?;
        writer.write_field(status.name()).map_err(csv_error)?;
        writer
            .write_field(format_integer(&mut number, registered_year as u64))
            .map_err(csv_error)?;
        match exit_year {
            Some(year) => writer.write_field(format_integer(&mut number, year as u64)),
            None => writer.write_field(b""),
        }
        .map_err(csv_error)?;
        writer
            .write_field(format_cents(&mut number, income))
            .map_err(csv_error)?;
        for guarantee in guarantees {
            writer
                .write_field(bool_text(guarantee))
                .map_err(csv_error)?;
        }
        writer.write_field(&fields.cadre_id).map_err(csv_error)?;
        writer.write_field(industry.name()).map_err(csv_error)?;
        writer
            .write_field(bool_text(relocation_site.is_some()))
            .map_err(csv_error)?;
        writer
            .write_field(relocation_site.unwrap_or(""))
            .map_err(csv_error)?;
        writer
            .write_field(if has_phone { &fields.phone[..] } else { b"" })
            .map_err(csv_error)?;
        writer.write_record(None::<&[u8]>).map_err(csv_error)?;

        let writer = &mut files.persons;
        let csv_error = |source| GenError::Csv {
            path: files.persons_path.clone(),
            source,
        };
        let mut birth_text = *b"0000-00-00";
        for person in &self.persons {
            if (6..=15).contains(&person.age) && !person.in_school {
                self.warnings.dropout += 1;
            }
            birth_text[0..4].copy_from_slice(&person.id[6..10]);
            birth_text[5..7].copy_from_slice(&person.id[10..12]);
            birth_text[8..10].copy_from_slice(&person.id[12..14]);
            debug_assert_eq!(person.birth_date.to_string().as_bytes(), birth_text);
            writer.write_field(person.id).map_err(csv_error)?;
            writer.write_field(fields.household_id).map_err(csv_error)?;
            writer
                .write_field(person.relation.name())
                .map_err(csv_error)?;
            writer
                .write_field(person.gender.name())
                .map_err(csv_error)?;
            writer.write_field(birth_text).map_err(csv_error)?;
            writer
                .write_field(person.education.name())
                .map_err(csv_error)?;
            writer
                .write_field(person.health.name())
                .map_err(csv_error)?;
            writer.write_field(person.labor.name()).map_err(csv_error)?;
            writer
                .write_field(bool_text(person.in_school))
                .map_err(csv_error)?;
            writer
                .write_field(bool_text(person.employed))
                .map_err(csv_error)?;
            writer.write_record(None::<&[u8]>).map_err(csv_error)?;
        }
        Ok(rows)
    }

    /// Fills `self.members`: the head first, then spouse, parents, children, grandchildren, others.
    fn plan_members(&mut self, rng: &mut ChaCha8Rng) {
        let members = &mut self.members;
        members.clear();
        if rng.gen_bool(HEAD_UNDER_16_PROBABILITY) {
            // A child-headed household (e.g. orphans): the head is 14 or 15 on `today`.
            let gender = if rng.gen_bool(0.5) {
                Gender::Male
            } else {
                Gender::Female
            };
            members.push(Member {
                exact_year: true,
                relation: Relation::Head,
                gender,
                target_age: 15,
            });
            for _ in 0..rng.gen_range(0..=2) {
                let (target_age, gender) = if rng.gen_bool(0.7) {
                    (rng.gen_range(6..=13), random_gender(rng))
                } else {
                    (rng.gen_range(62..=80), Gender::Female)
                };
                members.push(Member {
                    exact_year: false,
                    relation: Relation::Other,
                    gender,
                    target_age,
                });
            }
            return;
        }
        let size = 1 + pick(rng, &MEMBER_WEIGHTS);
        let head_age = if size == 1 {
            normal_age(rng, 64.0, 10.0, 26, 79)
        } else {
            normal_age(rng, 50.0, 11.0, 26, 79)
        };
        let male_share = if size == 1 { 0.55 } else { 0.8 };
        let head_gender = if rng.gen_bool(male_share) {
            Gender::Male
        } else {
            Gender::Female
        };
        members.push(Member {
            exact_year: false,
            relation: Relation::Head,
            gender: head_gender,
            target_age: head_age,
        });
        let mut slots = size - 1;
        if slots > 0 && rng.gen_bool(0.82) {
            let gap = if head_gender == Gender::Male {
                -2.0
            } else {
                2.0
            };
            members.push(Member {
                exact_year: false,
                relation: Relation::Spouse,
                gender: opposite(head_gender),
                target_age: normal_age(rng, f64::from(head_age) + gap, 3.0, 20, 85),
            });
            slots -= 1;
        }
        if head_age <= 58 && slots > 0 {
            let parents = [0, 0, 0, 0, 0, 0, 0, 1, 1, 2][rng.gen_range(0..10)].min(slots);
            for parent in 0..parents {
                let gender = match (parents, parent) {
                    (2, 0) => Gender::Male,
                    (2, _) => Gender::Female,
                    _ if rng.gen_bool(0.7) => Gender::Female,
                    _ => Gender::Male,
                };
                members.push(Member {
                    exact_year: false,
                    relation: Relation::Parent,
                    gender,
                    target_age: (head_age + rng.gen_range(22..=34)).min(AGE_YEARS_MAX - 2),
                });
            }
            slots -= parents;
        }
        let grandchildren = if head_age >= 50 && slots >= 2 && rng.gen_bool(0.4) {
            rng.gen_range(1..slots)
        } else {
            0
        };
        let others = if slots > grandchildren && rng.gen_bool(0.02) {
            1
        } else {
            0
        };
        for _ in 0..slots - grandchildren - others {
            members.push(Member {
                exact_year: false,
                relation: Relation::Child,
                gender: random_gender(rng),
                target_age: head_age - rng.gen_range(20..=head_age.min(38)),
            });
        }
        for _ in 0..grandchildren {
            members.push(Member {
                exact_year: false,
                relation: Relation::Grandchild,
                gender: random_gender(rng),
                target_age: head_age - rng.gen_range(44..=head_age.min(62)),
            });
        }
        for _ in 0..others {
            members.push(Member {
                exact_year: false,
                relation: Relation::Other,
                gender: random_gender(rng),
                target_age: (head_age + rng.gen_range(-12..=12)).clamp(18, 90),
            });
        }
    }

    /// Draws an ID and attributes for every planned member into `self.persons`.
    fn draw_persons(
        &mut self,
        rng: &mut ChaCha8Rng,
        county_number: u32,
        cause: Cause,
    ) -> Result<(), GenError> {
        self.persons.clear();
        // The member whose health explains the household's cause of poverty.
        let afflicted = match cause {
            Cause::Illness | Cause::Disability => {
                if rng.gen_bool(0.6) {
                    Some(0)
                } else {
                    Some(rng.gen_range(0..self.members.len()))
                }
            }
            _ => None,
        };
        let today_year = self.today.year();
        let year_share = self.ids.newest_year_share();
        for (index, member) in self.members.iter().enumerate() {
            let id_county = if rng.gen_bool(MIGRANT_PROBABILITY) {
                migrant_county(rng, county_number)
            } else {
                county_number
            };
            // Someone `target_age` years old had this year's birthday already (born in today's
            // year minus the age) with the share of the year passed, or not (born a year earlier).
            let mut birth_year = today_year - member.target_age;
            if !member.exact_year && !rng.gen_bool(year_share) {
                birth_year -= 1;
            }
            let allocated = self.ids.allocate(id_county, birth_year, member.gender)?;
            let age = allocated.birth_date.age_on(self.today);
            let forced_health = match (afflicted == Some(index), cause) {
                (true, Cause::Illness) => Some(if rng.gen_bool(0.7) {
                    Health::Chronic
                } else {
                    Health::Serious
                }),
                (true, _) => Some(Health::Disabled),
                (false, _) => None,
            };
            let attributes = attributes(rng, age, forced_health);
            self.persons.push(PersonRow {
                id: allocated.text,
                birth_date: allocated.birth_date,
                age,
                relation: member.relation,
                gender: member.gender,
                education: attributes.education,
                health: attributes.health,
                labor: attributes.labor,
                in_school: attributes.in_school,
                employed: attributes.employed,
            });
        }
        Ok(())
    }

    /// Writes a 2-3 character Chinese name into `self.text`.
    fn head_name(&mut self, rng: &mut ChaCha8Rng, gender: Gender) {
        self.text.clear();
        // The minimum of two draws favours the common surnames at the front of the list.
        let surname = rng
            .gen_range(0..self.surnames.len())
            .min(rng.gen_range(0..self.surnames.len()));
        self.text.push(self.surnames[surname]);
        let pool = match gender {
            Gender::Male => &self.male_given,
            Gender::Female => &self.female_given,
        };
        let given = if rng.gen_bool(0.35) { 1 } else { 2 };
        for _ in 0..given {
            self.text.push(pool[rng.gen_range(0..pool.len())]);
        }
    }
}

/// Another county of the same province, from the synthetic tree (birth registered elsewhere).
fn migrant_county(rng: &mut ChaCha8Rng, county_number: u32) -> u32 {
    let province = region(u64::from(county_number / 10_000) * 10_000_000_000);
    let prefecture = child(province, rng.gen_range(1..=prefectures_in(province)));
    let county = child(prefecture, rng.gen_range(1..=counties_in(prefecture)));
    (county.value() / 1_000_000) as u32
}

fn random_gender(rng: &mut ChaCha8Rng) -> Gender {
    if rng.gen_bool(0.52) {
        Gender::Male
    } else {
        Gender::Female
    }
}

fn opposite(gender: Gender) -> Gender {
    match gender {
        Gender::Male => Gender::Female,
        Gender::Female => Gender::Male,
    }
}

struct Attributes {
    education: Education,
    health: Health,
    labor: Labor,
    in_school: bool,
    employed: bool,
}

/// Education, health, work and schooling plausible for `age` on the reference date.
fn attributes(rng: &mut ChaCha8Rng, age: i32, forced_health: Option<Health>) -> Attributes {
    let in_school = match age {
        6..=15 => !rng.gen_bool(DROPOUT_PROBABILITY),
        16..=18 => rng.gen_bool(0.75),
        19..=22 => rng.gen_bool(0.25),
        _ => false,
    };
    let education = match age {
        ..=5 => Education::None,
        6..=11 => Education::Primary,
        12..=14 => Education::Junior,
        15..=17 => EDUCATIONS[2 + pick(rng, &[30, 45, 25])],
        18..=22 if in_school => EDUCATIONS[4 + pick(rng, &[45, 55])],
        18..=22 => EDUCATIONS[2 + pick(rng, &[45, 35, 20])],
        23..=39 => EDUCATIONS[pick(rng, &[2, 12, 50, 14, 14, 8])],
        40..=59 => EDUCATIONS[pick(rng, &[10, 38, 40, 8, 3, 1])],
        _ => EDUCATIONS[pick(rng, &[40, 45, 12, 3, 0, 0])],
    };
    let health = forced_health.unwrap_or_else(|| match age {
        ..=17 => HEALTHS[pick(rng, &[95, 3, 1, 1])],
        18..=59 => HEALTHS[pick(rng, &[80, 13, 3, 4])],
        _ => HEALTHS[pick(rng, &[55, 33, 6, 6])],
    });
    let labor = if age < 16 || in_school {
        Labor::None
    } else {
        let weights = match (age, health) {
            (..=59, Health::Healthy) => [90, 10, 0],
            (..=59, Health::Chronic) => [20, 70, 10],
            (..=59, _) => [0, 35, 65],
            (60..=69, Health::Healthy) => [25, 60, 15],
            (60..=69, _) => [0, 30, 70],
            _ => [0, 15, 85],
        };
        [Labor::Full, Labor::Partial, Labor::None][pick(rng, &weights)]
    };
    let employed = match labor {
        Labor::Full => rng.gen_bool(0.6),
        Labor::Partial => rng.gen_bool(0.3),
        Labor::None => false,
    };
    Attributes {
        education,
        health,
        labor,
        in_school,
        employed,
    }
}

fn bool_text(value: bool) -> &'static [u8] {
    if value {
        b"true"
    } else {
        b"false"
    }
}

/// Formats an unsigned integer without allocating.
fn format_integer(buffer: &mut [u8; 24], mut value: u64) -> &[u8] {
    let mut start = buffer.len();
    loop {
        start -= 1;
        buffer[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    &buffer[start..]
}

/// Formats non-negative fen as yuan with two decimals, without allocating.
fn format_cents(buffer: &mut [u8; 24], cents: i64) -> &[u8] {
    assert!(cents >= 0, "negative income {cents}");
    let cents = cents as u64;
    let end = buffer.len();
    write_digits(&mut buffer[end - 2..], cents % 100);
    buffer[end - 3] = b'.';
    let mut yuan = [0u8; 24];
    let yuan = format_integer(&mut yuan, cents / 100);
    let start = end - 3 - yuan.len();
    buffer[start..end - 3].copy_from_slice(yuan);
    &buffer[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportion_is_exact_and_proportional() {
        assert_eq!(apportion(10, &[1, 1, 1]), vec![4, 3, 3]);
        assert_eq!(apportion(7, &[500, 1500]), vec![2, 5]);
        let shares = apportion(1_000_003, &[500, 700, 1500, 900]);
        assert_eq!(shares.iter().sum::<u64>(), 1_000_003);
    }

    #[test]
    fn numbers_format_without_allocation() {
        let mut buffer = [0u8; 24];
        assert_eq!(format_integer(&mut buffer, 0), b"0");
        assert_eq!(format_integer(&mut buffer, 2020), b"2020");
        assert_eq!(format_cents(&mut buffer, 5), b"0.05");
        assert_eq!(format_cents(&mut buffer, 1_234_567), b"12345.67");
    }

    #[test]
    fn national_geography_is_realistic() {
        let counties = counties_under(RegionCode::NATIONAL);
        assert!(
            (2_500..4_500).contains(&counties.len()),
            "{} counties",
            counties.len()
        );
        assert!(counties.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(counties.iter().all(|county| county.tier() == Tier::County));
        let provinces: std::collections::BTreeSet<u64> = counties
            .iter()
            .map(|county| province_number(*county))
            .collect();
        let expected: Vec<u64> = [11..=15, 21..=23, 31..=37, 41..=46, 50..=54, 61..=65]
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(provinces.into_iter().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn dense_counties_get_more_villages() {
        let county = region(520_102_000_000);
        let households = 3_000_000;
        let villages = villages_in(county, households);
        let weights: Vec<u64> = villages
            .iter()
            .map(|v| weight(1, v.value(), SALT_VILLAGE_WEIGHT))
            .collect();
        let shares = apportion(households, &weights);
        assert!(shares.iter().all(|share| *share <= VILLAGE_SERIALS_MAX));
        assert!(villages
            .iter()
            .all(|village| village.tier() == Tier::Village));
    }
}
