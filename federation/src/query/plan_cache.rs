//! Plans of recently asked queries. Every node of a fan-out plans the SQL it is asked itself (it
//! trusts no parent's plan), and the same SQL comes again and again (every node of a national
//! query, every refresh of a dashboard): a node that remembers the plan skips parsing and
//! planning. A plan depends on nothing but the SQL text and the as-of date, so a remembered
//! plan is the plan `plan` would make; the grant checks run on it every time.

use std::collections::{HashMap, VecDeque};

use crate::date::Date;

use super::error::QueryError;
use super::plan::Plan;
use super::planner::plan;

/// Plans a `PlanCache` remembers at most (the oldest is forgotten first). With SQL of at most
/// `SQL_BYTES_MAX` bytes that bounds its text at 4 MiB.
pub const PLAN_CACHE_ENTRIES_MAX: usize = 256;

/// Remembered plans by as-of date and SQL text, at most [`PLAN_CACHE_ENTRIES_MAX`].
#[derive(Debug, Default)]
pub struct PlanCache {
    plans: HashMap<Date, HashMap<String, Plan>>,
    /// Insertion order, for forgetting the oldest.
    order: VecDeque<(Date, String)>,
}

impl PlanCache {
    /// An empty cache.
    pub fn new() -> PlanCache {
        PlanCache::default()
    }

    /// Plans remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// `plan(sql, as_of)`, remembered. A refusal is not remembered: it is made again (with the
    /// same error) when the SQL comes again.
    pub fn plan(&mut self, sql: &str, as_of: Date) -> Result<Plan, QueryError> {
        if let Some(plan) = self.plans.get(&as_of).and_then(|plans| plans.get(sql)) {
            return Ok(plan.clone());
        }
        let planned = plan(sql, as_of)?;
        if self.order.len() >= PLAN_CACHE_ENTRIES_MAX {
            if let Some((date, oldest)) = self.order.pop_front() {
                if let Some(plans) = self.plans.get_mut(&date) {
                    plans.remove(&oldest);
                    if plans.is_empty() {
                        self.plans.remove(&date);
                    }
                }
            }
        }
        self.plans
            .entry(as_of)
            .or_default()
            .insert(sql.to_string(), planned.clone());
        self.order.push_back((as_of, sql.to_string()));
        Ok(planned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> Date {
        Date::parse_iso(text).expect("date")
    }

    #[test]
    fn a_remembered_plan_is_the_plan_and_refusals_are_not_remembered() {
        let mut cache = PlanCache::new();
        let sql = "SELECT cause, COUNT(*) FROM households GROUP BY cause";
        let as_of = date("2026-06-30");
        for _ in 0..3 {
            assert_eq!(cache.plan(sql, as_of), plan(sql, as_of));
        }
        assert_eq!(cache.len(), 1);
        // The as-of date is part of the key: ages depend on it.
        let ages = "SELECT age_band(birth_date, 10), COUNT(*) FROM persons GROUP BY 1";
        let later = date("2030-01-01");
        assert_eq!(cache.plan(ages, as_of), plan(ages, as_of));
        assert_eq!(cache.plan(ages, later), plan(ages, later));
        assert_ne!(cache.plan(ages, as_of), cache.plan(ages, later));
        assert_eq!(cache.len(), 3);
        let personal = "SELECT head_name, COUNT(*) FROM households GROUP BY head_name";
        assert!(cache.plan(personal, as_of).is_err());
        assert_eq!(cache.plan(personal, as_of), plan(personal, as_of));
        assert_eq!(cache.len(), 3, "refusals are not remembered");
    }

    #[test]
    fn the_oldest_plan_is_forgotten_at_the_bound() {
        let mut cache = PlanCache::new();
        let as_of = date("2026-06-30");
        let sql = |limit: usize| {
            format!("SELECT cause, COUNT(*) FROM households GROUP BY cause LIMIT {limit}")
        };
        for limit in 0..PLAN_CACHE_ENTRIES_MAX + 10 {
            cache.plan(&sql(limit), as_of).expect("plans");
        }
        assert_eq!(cache.len(), PLAN_CACHE_ENTRIES_MAX);
        let remembered = |cache: &PlanCache, limit: usize| {
            cache
                .plans
                .get(&as_of)
                .is_some_and(|plans| plans.contains_key(&sql(limit)))
        };
        assert!(!remembered(&cache, 0));
        assert!(!remembered(&cache, 9));
        assert!(remembered(&cache, 10));
        assert!(remembered(&cache, PLAN_CACHE_ENTRIES_MAX + 9));
    }
}
