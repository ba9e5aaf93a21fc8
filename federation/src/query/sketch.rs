//! The mergeable quantile sketch behind `MEDIAN`: exact value counts while a group has few
//! distinct values, then a DDSketch-style log-bucketed histogram with relative accuracy
//! [`SKETCH_RELATIVE_ACCURACY`] (Masson, Rim, Lee, "DDSketch", VLDB 2019).
//!
//! *Median*: of `n` values sorted ascending `x_0 <= ... <= x_{n-1}`, the middle value
//! `x_{(n-1)/2}` for an odd count and the mean of the two middle values `x_{n/2-1}` and `x_{n/2}`
//! for an even count, as DuckDB's `median` answers.
//!
//! *Accuracy*: while the exact map holds every value (at most [`SKETCH_EXACT_VALUES_MAX`]
//! distinct values) the answer is `x_r` itself. After that, a positive value `x` is counted in
//! bucket `k = ceil(log_gamma(x))` with `gamma = (1 + a) / (1 - a)`, which covers
//! `(gamma^(k-1), gamma^k]` and answers `2 gamma^k / (gamma + 1)`: within `a` relative of every
//! value in the bucket, so the answer is within 1 % of `|x_r|` (up to f64 rounding, about
//! 1e-15); the mean of two such answers of one sign is within 1 % of the true mean. Negative values are bucketed by magnitude in their own store; zeros are counted apart
//! and answer exactly 0.
//!
//! *Merging* adds counts, so a sketch merged from any split of the values equals the sketch of
//! all of them, bucket for bucket (the exact map turns into buckets when the union of two maps
//! exceeds the bound, which is what one sketch over all the values does too).
//!
//! *Memory*: at most [`SKETCH_EXACT_VALUES_MAX`] exact entries or [`SKETCH_BUCKETS_MAX`] buckets
//! (half per sign). When a store would exceed its half, its lowest-magnitude buckets collapse into
//! the lowest one kept, so values of smaller magnitude than that bucket answer as it does and lose
//! the accuracy guarantee; quantiles above the collapsed range keep it. The collapsed state
//! depends only on the values added, not on their order or on how they were split. Integer inputs
//! (`i64`) reach at most about 2,040 keys per sign, so only a damaged or hostile partial ever
//! collapses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The sketch's relative accuracy `a`: a bucketed answer is within `a * |x_r|` of the true
/// median `x_r`.
pub const SKETCH_RELATIVE_ACCURACY: f64 = 0.01;
/// Most distinct values kept exactly before the sketch switches to buckets.
pub const SKETCH_EXACT_VALUES_MAX: usize = 256;
/// Most buckets over both signs (each sign's store holds at most half).
pub const SKETCH_BUCKETS_MAX: usize = 4096;

const STORE_BUCKETS_MAX: usize = SKETCH_BUCKETS_MAX / 2;
const GAMMA: f64 = (1.0 + SKETCH_RELATIVE_ACCURACY) / (1.0 - SKETCH_RELATIVE_ACCURACY);

/// A mergeable summary of a group's values that answers quantiles (see the module docs).
///
/// Fields are public for the wire codec and for tests; a partial from another node may break
/// the bounds, and `merge` restores them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sketch {
    /// Each distinct value and how often it occurred, while `bucketed` is false.
    pub exact: BTreeMap<i64, u64>,
    /// True once the values are kept in buckets (then `exact` is empty).
    pub bucketed: bool,
    /// Zeros counted after the switch to buckets.
    pub zeros: u64,
    /// Positive values by bucket key.
    pub positive: BTreeMap<i32, u64>,
    /// Negative values by the bucket key of their magnitude.
    pub negative: BTreeMap<i32, u64>,
}

impl Sketch {
    /// Counts one value.
    pub fn add(&mut self, value: i64) {
        if self.bucketed {
            self.add_bucketed(value, 1);
            return;
        }
        *self.exact.entry(value).or_insert(0) += 1;
        if self.exact.len() > SKETCH_EXACT_VALUES_MAX {
            self.switch_to_buckets();
        }
    }

    /// Adds another sketch's counts.
    pub fn merge(&mut self, other: &Sketch) {
        if !self.bucketed && !other.bucketed {
            for (value, count) in &other.exact {
                let known = self.exact.entry(*value).or_insert(0);
                *known = known.saturating_add(*count);
            }
            if self.exact.len() > SKETCH_EXACT_VALUES_MAX {
                self.switch_to_buckets();
            }
            return;
        }
        self.switch_to_buckets();
        for (value, count) in &other.exact {
            self.add_bucketed(*value, *count);
        }
        self.zeros = self.zeros.saturating_add(other.zeros);
        for (store, other_store) in [
            (&mut self.positive, &other.positive),
            (&mut self.negative, &other.negative),
        ] {
            for (key, count) in other_store {
                let known = store.entry(*key).or_insert(0);
                *known = known.saturating_add(*count);
            }
        }
        collapse_lowest(&mut self.positive);
        collapse_lowest(&mut self.negative);
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        let sum = |store: &BTreeMap<i32, u64>| {
            store
                .values()
                .fold(0u64, |total, count| total.saturating_add(*count))
        };
        self.exact
            .values()
            .fold(0u64, |total, count| total.saturating_add(*count))
            .saturating_add(self.zeros)
            .saturating_add(sum(&self.positive))
            .saturating_add(sum(&self.negative))
    }

    /// The (estimated) value at `rank` (0-based, ascending), or `None` past the last value.
    pub fn value_at_rank(&self, rank: u64) -> Option<f64> {
        let mut seen = 0u64;
        let mut passes = |count: u64| {
            seen = seen.saturating_add(count);
            rank < seen
        };
        for (value, count) in &self.exact {
            if passes(*count) {
                return Some(*value as f64);
            }
        }
        for (key, count) in self.negative.iter().rev() {
            if passes(*count) {
                return Some(-representative(*key));
            }
        }
        if passes(self.zeros) {
            return Some(0.0);
        }
        for (key, count) in &self.positive {
            if passes(*count) {
                return Some(representative(*key));
            }
        }
        None
    }

    /// The median (the middle value, or the mean of the two middle values for an even count),
    /// or `None` for no values.
    pub fn median(&self) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let lower = self.value_at_rank((count - 1) / 2)?;
        if count % 2 == 1 {
            return Some(lower);
        }
        let upper = self.value_at_rank(count / 2)?;
        Some(lower + (upper - lower) / 2.0)
    }

    fn switch_to_buckets(&mut self) {
        if self.bucketed {
            return;
        }
        self.bucketed = true;
        for (value, count) in std::mem::take(&mut self.exact) {
            self.add_bucketed(value, count);
        }
    }

    fn add_bucketed(&mut self, value: i64, count: u64) {
        let store = match value.cmp(&0) {
            std::cmp::Ordering::Equal => {
                self.zeros = self.zeros.saturating_add(count);
                return;
            }
            std::cmp::Ordering::Greater => &mut self.positive,
            std::cmp::Ordering::Less => &mut self.negative,
        };
        let known = store
            .entry(bucket_key(value.unsigned_abs() as f64))
            .or_insert(0);
        *known = known.saturating_add(count);
        collapse_lowest(store);
    }
}

/// `ceil(log_gamma(magnitude))` for a magnitude of at least 1.
fn bucket_key(magnitude: f64) -> i32 {
    (magnitude.ln() / GAMMA.ln()).ceil() as i32
}

/// The value bucket `key` answers: within `SKETCH_RELATIVE_ACCURACY` of everything in it.
fn representative(key: i32) -> f64 {
    2.0 * (f64::from(key) * GAMMA.ln()).exp() / (GAMMA + 1.0)
}

/// Folds the lowest buckets into the lowest one kept until the store is within its bound.
fn collapse_lowest(store: &mut BTreeMap<i32, u64>) {
    while store.len() > STORE_BUCKETS_MAX {
        let Some((_, count)) = store.pop_first() else {
            return;
        };
        if let Some(mut lowest) = store.first_entry() {
            let total = lowest.get().saturating_add(count);
            *lowest.get_mut() = total;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_integer_bucket_answers_within_the_accuracy() {
        for value in (1..5000).chain([i64::MAX, 1 << 53, 999_999_999]) {
            let answer = representative(bucket_key(value as f64));
            let error = (answer - value as f64).abs() / value as f64;
            assert!(
                error <= SKETCH_RELATIVE_ACCURACY * (1.0 + 1e-9),
                "{value}: {answer}"
            );
        }
    }

    #[test]
    fn integers_never_fill_a_store() {
        let mut keys: Vec<i32> = (1..=100_000)
            .map(|value| bucket_key(value as f64))
            .collect();
        keys.push(bucket_key(i64::MAX as f64));
        let low = keys.iter().filter(|key| **key <= bucket_key(100_000.0));
        let low = low.collect::<std::collections::BTreeSet<_>>().len();
        let high = bucket_key(i64::MAX as f64) - bucket_key(100_000.0);
        assert!(low + high as usize <= STORE_BUCKETS_MAX, "{low} + {high}");
    }

    #[test]
    fn collapse_keeps_the_highest_buckets_and_every_count() {
        let mut store: BTreeMap<i32, u64> = (0..STORE_BUCKETS_MAX as i32 + 10)
            .map(|key| (key, 1))
            .collect();
        collapse_lowest(&mut store);
        assert_eq!(store.len(), STORE_BUCKETS_MAX);
        assert_eq!(store.first_key_value(), Some((&10, &11)));
        assert_eq!(store.values().sum::<u64>(), STORE_BUCKETS_MAX as u64 + 10);
    }
}
