//! Byte-budgeted, sharded caches of decoded blocks.
//!
//! Each shard is a small map behind its own mutex; the lock is held only for the map operation,
//! never while reading from the source or decompressing. Eviction is CLOCK-like (FIFO with a
//! second chance for entries used since they were last considered), which keeps hot metadata
//! blocks (the root directory, id table, fragment table) resident under streaming reads.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use parking_lot::Mutex;

/// A cache from `K` to shared values, bounded by the sum of caller-supplied weights.
pub(crate) struct Cache<K, V> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    shard_budget: usize,
}

struct Shard<K, V> {
    map: HashMap<K, Slot<V>>,
    order: VecDeque<K>,
    bytes: usize,
}

struct Slot<V> {
    value: Arc<V>,
    weight: usize,
    referenced: bool,
}

impl<K: Hash + Eq + Clone, V> Cache<K, V> {
    /// A cache holding at most `budget` bytes of values no larger than `largest_item`.
    ///
    /// The budget is split over up to 16 shards, fewer when the budget is small, so that every
    /// shard can hold a few of the largest items.
    pub(crate) fn new(budget: usize, largest_item: usize) -> Self {
        let per_shard_min = largest_item.max(1).saturating_mul(4);
        let shard_count = (budget / per_shard_min).clamp(1, 16);
        let shards = (0..shard_count)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::new(),
                    order: VecDeque::new(),
                    bytes: 0,
                })
            })
            .collect();
        Cache {
            shards,
            shard_budget: budget / shard_count,
        }
    }

    fn shard(&self, key: &K) -> &Mutex<Shard<K, V>> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let index = (hasher.finish() % self.shards.len() as u64) as usize;
        &self.shards[index]
    }

    /// The cached value for `key`, marking it recently used.
    pub(crate) fn get(&self, key: &K) -> Option<Arc<V>> {
        let mut shard = self.shard(key).lock();
        let slot = shard.map.get_mut(key)?;
        slot.referenced = true;
        Some(Arc::clone(&slot.value))
    }

    /// Insert `value` (weighing `weight` bytes), evicting older entries to stay in budget.
    /// Values heavier than a shard's budget are not cached.
    pub(crate) fn insert(&self, key: K, value: Arc<V>, weight: usize) {
        if weight > self.shard_budget {
            return;
        }
        let mut guard = self.shard(&key).lock();
        let shard = &mut *guard;
        if let Some(slot) = shard.map.get_mut(&key) {
            // Another thread decoded the same block concurrently; keep the first copy.
            slot.referenced = true;
            return;
        }
        // Each entry gets at most one second chance per pass, so this loop ends after at most
        // two passes over the queue.
        let mut budget_steps = shard.order.len().saturating_mul(2) + 1;
        while shard.bytes + weight > self.shard_budget && budget_steps > 0 {
            budget_steps -= 1;
            let Some(old) = shard.order.pop_front() else {
                break;
            };
            let second_chance = match shard.map.get_mut(&old) {
                Some(slot) if slot.referenced => {
                    slot.referenced = false;
                    true
                }
                Some(_) => false,
                None => continue,
            };
            if second_chance {
                shard.order.push_back(old);
            } else if let Some(slot) = shard.map.remove(&old) {
                shard.bytes -= slot.weight;
            }
        }
        if shard.bytes + weight > self.shard_budget {
            return;
        }
        shard.bytes += weight;
        shard.order.push_back(key.clone());
        shard.map.insert(
            key,
            Slot {
                value,
                weight,
                referenced: false,
            },
        );
    }

    /// Total bytes currently held (sum of weights).
    pub(crate) fn bytes(&self) -> usize {
        self.shards.iter().map(|s| s.lock().bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_budget_and_keeps_hot_entries() {
        let cache: Cache<u64, Vec<u8>> = Cache::new(1000, 100);
        assert_eq!(cache.shards.len(), 2);
        for key in 0..100u64 {
            cache.insert(key, Arc::new(vec![0; 100]), 100);
            // Key 0 is used constantly; it must survive the churn when it lives in a shard.
            let _ = cache.get(&0);
            assert!(cache.bytes() <= 1000);
        }
        assert!(cache.get(&0).is_some());
        assert!(cache.get(&99).is_some());
        assert!(cache.get(&1).is_none());
    }

    #[test]
    fn oversized_values_are_not_cached() {
        let cache: Cache<u64, Vec<u8>> = Cache::new(100, 100);
        cache.insert(1, Arc::new(vec![0; 200]), 200);
        assert!(cache.get(&1).is_none());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn zero_budget_caches_nothing() {
        let cache: Cache<u64, Vec<u8>> = Cache::new(0, 8192);
        cache.insert(1, Arc::new(vec![0; 10]), 10);
        assert!(cache.get(&1).is_none());
    }
}
