//! A timer table: named deadlines with O(log n) set, cancel and "soonest", so `poll_timeout`
//! answers without rescanning every pending item.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// Deadlines keyed by `K`; each key has at most one.
#[derive(Debug, Clone)]
pub(crate) struct TimerTable<K: Ord + Clone> {
    by_time: BTreeSet<(Instant, K)>,
    by_key: BTreeMap<K, Instant>,
}

impl<K: Ord + Clone> Default for TimerTable<K> {
    fn default() -> Self {
        TimerTable { by_time: BTreeSet::new(), by_key: BTreeMap::new() }
    }
}

impl<K: Ord + Clone> TimerTable<K> {
    /// Sets (or moves) `key`'s deadline to `at`.
    pub fn set(&mut self, key: K, at: Instant) {
        if let Some(old) = self.by_key.insert(key.clone(), at) {
            self.by_time.remove(&(old, key.clone()));
        }
        self.by_time.insert((at, key));
    }

    /// Removes `key`'s deadline, if any.
    pub fn cancel(&mut self, key: &K) {
        if let Some(old) = self.by_key.remove(key) {
            self.by_time.remove(&(old, key.clone()));
        }
    }

    /// The earliest deadline.
    pub fn soonest(&self) -> Option<Instant> {
        self.by_time.first().map(|(t, _)| *t)
    }

    /// Removes and returns the earliest key whose deadline is at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let (at, _) = self.by_time.first()?;
        if *at > now {
            return None;
        }
        let (_, key) = self.by_time.pop_first()?;
        self.by_key.remove(&key);
        Some(key)
    }

    /// Whether `key` has a deadline.
    pub fn contains(&self, key: &K) -> bool {
        self.by_key.contains_key(key)
    }
}

/// Deadlines whose owners remember them: one ordered set, so adding and removing one is a
/// single tree operation (the hot path of every request).
#[derive(Debug, Clone)]
pub(crate) struct Deadlines<K: Ord> {
    set: BTreeSet<(Instant, K)>,
}

impl<K: Ord> Default for Deadlines<K> {
    fn default() -> Self {
        Deadlines { set: BTreeSet::new() }
    }
}

impl<K: Ord> Deadlines<K> {
    pub fn insert(&mut self, at: Instant, key: K) {
        self.set.insert((at, key));
    }

    /// Removes the deadline `at` of `key`, as it was inserted.
    pub fn remove(&mut self, at: Instant, key: K) {
        self.set.remove(&(at, key));
    }

    pub fn soonest(&self) -> Option<Instant> {
        self.set.first().map(|(t, _)| *t)
    }

    /// Removes and returns the earliest key due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        if self.set.first()?.0 > now {
            return None;
        }
        self.set.pop_first().map(|(_, k)| k)
    }

    pub fn clear(&mut self) {
        self.set.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn soonest_follows_set_move_and_cancel() {
        let t0 = crate::test_origin();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut timers = TimerTable::default();
        timers.set("a", at(30));
        timers.set("b", at(10));
        timers.set("c", at(20));
        assert_eq!(timers.soonest(), Some(at(10)));
        timers.set("b", at(40));
        assert_eq!(timers.soonest(), Some(at(20)));
        timers.cancel(&"c");
        assert_eq!(timers.soonest(), Some(at(30)));
        assert_eq!(timers.pop_due(at(29)), None);
        assert_eq!(timers.pop_due(at(35)), Some("a"));
        assert_eq!(timers.pop_due(at(35)), None);
        assert_eq!(timers.pop_due(at(40)), Some("b"));
        assert_eq!(timers.soonest(), None);
    }

    #[test]
    fn deadlines_pop_in_time_order() {
        let t0 = crate::test_origin();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut d = Deadlines::default();
        d.insert(at(20), 2);
        d.insert(at(10), 1);
        d.insert(at(30), 3);
        d.remove(at(20), 2);
        assert_eq!(d.soonest(), Some(at(10)));
        assert_eq!(d.pop_due(at(5)), None);
        assert_eq!(d.pop_due(at(40)), Some(1));
        assert_eq!(d.pop_due(at(40)), Some(3));
        assert_eq!(d.pop_due(at(40)), None);
    }
}
