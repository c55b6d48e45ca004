//! A bounded, expiring memo of database answers that the hot paths ask for on every chat
//! message (which course a room belongs to, the course, whether a user is enrolled, a
//! sender's name).
//!
//! Invalidation is exact within this process: a load that raced an invalidation is never
//! stored, so a stale answer cannot outlive the change that made it stale. The time to live
//! bounds how long a change made elsewhere (another node, the command line) goes unseen.

use std::{
    hash::Hash,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use dashmap::{DashMap, mapref::entry::Entry};

pub struct Memo<K, V> {
    entries: DashMap<K, (V, Instant)>,
    ttl: Duration,
    capacity: usize,
    /// Bumped by every invalidation; a load stores its answer only if no invalidation
    /// happened while it ran.
    generation: AtomicU64,
}

/// Taken before a load; hands the answer back to [`Memo::store`].
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

impl<K: Eq + Hash + Clone, V: Clone> Memo<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Memo {
            entries: DashMap::new(),
            ttl,
            capacity: capacity.max(1),
            generation: AtomicU64::new(0),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let entry = self.entries.get(key)?;
        let (value, at) = &*entry;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    /// Call before reading the database for `key`.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::Acquire))
    }

    /// Keeps a loaded answer unless an invalidation happened since `ticket` was taken.
    pub fn store(&self, key: K, value: V, ticket: Ticket) {
        if self.ttl.is_zero() {
            return;
        }
        if self.entries.len() >= self.capacity {
            // Dropping everything is crude but keeps memory bounded with no bookkeeping on
            // the read path; the working set refills from the database.
            self.entries.clear();
        }
        // The generation is compared while the key's shard is locked: an invalidation either
        // bumped it before (the answer is dropped here) or removes the entry after.
        match self.entries.entry(key) {
            Entry::Occupied(mut slot) => {
                if self.generation.load(Ordering::Acquire) == ticket.0 {
                    slot.insert((value, Instant::now()));
                }
            }
            Entry::Vacant(slot) => {
                if self.generation.load(Ordering::Acquire) == ticket.0 {
                    slot.insert((value, Instant::now()));
                }
            }
        }
    }

    pub fn invalidate(&self, key: &K) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.remove(key);
    }

    /// Invalidates every key `stale` picks.
    pub fn invalidate_where(&self, stale: impl Fn(&K) -> bool) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.retain(|key, _| !stale(key));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_loaded_across_an_invalidation_is_not_kept() {
        let memo: Memo<u32, bool> = Memo::new(Duration::from_secs(60), 100);
        let ticket = memo.ticket();
        // The database said "enrolled", then the enrollment was removed before the answer
        // reached the memo.
        memo.invalidate(&1);
        memo.store(1, true, ticket);
        assert_eq!(memo.get(&1), None);

        let ticket = memo.ticket();
        memo.store(1, false, ticket);
        assert_eq!(memo.get(&1), Some(false));
        memo.invalidate(&1);
        assert_eq!(memo.get(&1), None);
    }

    #[test]
    fn answers_expire_and_the_memo_stays_within_its_capacity() {
        let memo: Memo<u32, u32> = Memo::new(Duration::from_millis(30), 4);
        for key in 0..10 {
            memo.store(key, key, memo.ticket());
            assert!(memo.len() <= 4);
        }
        assert_eq!(memo.get(&9), Some(9));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(memo.get(&9), None);

        let off: Memo<u32, u32> = Memo::new(Duration::ZERO, 4);
        off.store(1, 1, off.ticket());
        assert!(off.is_empty(), "a zero time to live turns the memo off");
    }

    #[test]
    fn invalidate_where_drops_only_the_picked_keys() {
        let memo: Memo<(u32, u32), bool> = Memo::new(Duration::from_secs(60), 100);
        for key in [(1, 1), (1, 2), (2, 1)] {
            memo.store(key, true, memo.ticket());
        }
        memo.invalidate_where(|(course, _)| *course == 1);
        assert_eq!(memo.get(&(1, 1)), None);
        assert_eq!(memo.get(&(1, 2)), None);
        assert_eq!(memo.get(&(2, 1)), Some(true));
    }
}
