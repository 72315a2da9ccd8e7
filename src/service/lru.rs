//! A bounded map that evicts its least-recently-used entry when full.
//!
//! Rules: it never clears itself — an attacker who fills it on purpose (a
//! flood of well-formed keys, addresses, client ids) pushes out only the
//! entries nobody used for the longest time, never the ones in use. Every read
//! through `get`/`get_mut` counts as a use. Operations cost O(log n).

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

pub struct Lru<K, V> {
    capacity: usize,
    tick: u64,
    entries: HashMap<K, (V, u64)>,
    /// Last use → key, oldest first.
    order: BTreeMap<u64, K>,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    /// A map holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), tick: 0, entries: HashMap::new(), order: BTreeMap::new() }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn touch(&mut self, old: u64) -> u64 {
        self.tick += 1;
        if let Some(k) = self.order.remove(&old) {
            self.order.insert(self.tick, k);
        }
        self.tick
    }

    /// The value for `key`, marking it used.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let old = self.entries.get(key)?.1;
        let new = self.touch(old);
        let entry = self.entries.get_mut(key)?;
        entry.1 = new;
        Some(&mut entry.0)
    }

    /// The value for `key` without marking it used.
    pub fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get(key).map(|(v, _)| v)
    }

    /// The value for `key` without marking it used.
    pub fn peek_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get_mut(key).map(|(v, _)| v)
    }

    /// Inserts or replaces `key` (marking it used); returns the entry evicted
    /// to make room, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<(K, V)> {
        self.tick += 1;
        if let Some(entry) = self.entries.get_mut(&key) {
            let old = std::mem::replace(&mut entry.1, self.tick);
            entry.0 = value;
            self.order.remove(&old);
            self.order.insert(self.tick, key);
            return None;
        }
        let evicted = if self.entries.len() >= self.capacity { self.pop_oldest() } else { None };
        self.order.insert(self.tick, key.clone());
        self.entries.insert(key, (value, self.tick));
        evicted
    }

    /// The value for `key`, inserting `make()` first if it is absent (marking
    /// it used); also returns the entry evicted to make room, if any.
    pub fn get_or_insert_with(&mut self, key: &K, make: impl FnOnce() -> V) -> (&mut V, Option<(K, V)>) {
        let evicted = if !self.entries.contains_key(key) && self.entries.len() >= self.capacity {
            self.pop_oldest()
        } else {
            None
        };
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.entry(key.clone()).or_insert_with(|| (make(), tick));
        let old = std::mem::replace(&mut entry.1, tick);
        self.order.remove(&old);
        self.order.insert(tick, key.clone());
        (&mut entry.0, evicted)
    }

    /// Makes room for one more entry when full, evicting the least recently
    /// used of the `scan` oldest entries that `evictable` lets go; `false`
    /// when none of them may go (the caller then refuses rather than evict).
    pub fn make_room(&mut self, scan: usize, evictable: impl Fn(&V) -> bool) -> bool {
        if self.entries.len() < self.capacity {
            return true;
        }
        let victim =
            self.order.values().take(scan).find(|k| self.entries.get(*k).is_some_and(|(v, _)| evictable(v))).cloned();
        match victim {
            Some(k) => {
                self.remove(&k);
                true
            }
            None => false,
        }
    }

    fn pop_oldest(&mut self) -> Option<(K, V)> {
        let (_, key) = self.order.pop_first()?;
        let (value, _) = self.entries.remove(&key)?;
        Some((key, value))
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (value, tick) = self.entries.remove(key)?;
        self.order.remove(&tick);
        Some(value)
    }

    /// Keeps only the entries for which `keep` is true (an explicit
    /// invalidation, never a way to make room).
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let order = &mut self.order;
        self.entries.retain(|k, (v, tick)| {
            let kept = keep(k, v);
            if !kept {
                order.remove(tick);
            }
            kept
        });
    }

    /// Forgets everything (an explicit invalidation, never a way to make room).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_evicts_the_least_recently_used_never_everything() {
        let mut lru = Lru::new(100);
        lru.insert("old".to_owned(), 0);
        for i in 0..10_000 {
            lru.insert(format!("flood-{i}"), i);
            if i % 50 == 0 {
                assert!(lru.get_mut("old").is_some(), "an entry in use survives the flood");
            }
            assert!(lru.len() <= 100);
        }
        assert_eq!(lru.len(), 100, "full, not cleared");
        assert!(lru.peek("old").is_some());
        assert!(lru.peek("flood-9999").is_some());
        assert!(lru.peek("flood-0").is_none(), "the unused ones went first");
    }

    #[test]
    fn get_or_insert_with_marks_use_and_reports_the_evicted_entry() {
        let mut lru = Lru::new(2);
        *lru.get_or_insert_with(&"a", || 1).0 += 10;
        lru.get_or_insert_with(&"b", || 2);
        lru.get_or_insert_with(&"a", || 0);
        let (v, evicted) = lru.get_or_insert_with(&"c", || 3);
        assert_eq!(*v, 3);
        assert_eq!(evicted, Some(("b", 2)));
        assert_eq!(lru.peek("a"), Some(&11));
        lru.retain(|k, _| *k != "a");
        assert_eq!(lru.len(), 1);
        assert_eq!(lru.remove("c"), Some(3));
        assert!(lru.is_empty());
    }
}
