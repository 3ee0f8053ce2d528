//! The in-memory tally: request counts by (method, path, second), in shards
//! so that threads recording at once rarely meet on a lock.

use std::collections::HashMap;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crossbeam_utils::CachePadded;

use count_proto::v1::Method;

/// Counts of one path: a few (method, second) slots, since a path sees few
/// methods and seconds between two flushes.
type Slots = Vec<(Method, i64, u64)>;

/// One shard: slots by path, and the requests it has counted. Paths are
/// hashed with foldhash (randomly seeded per process), not SipHash: hashing
/// twice per `record` (shard, then slot) was the larger part of its cost.
/// Each shard has its own cache line: shards sharing one made threads
/// recording different paths slow each other down.
type Shard = CachePadded<Mutex<ShardCounts>>;

#[derive(Default)]
struct ShardCounts {
    paths: HashMap<Box<str>, Slots, RandomState>,
    /// Requests ever counted here: counting them under the shard's lock
    /// rather than in one shared atomic keeps threads off a common cache
    /// line.
    recorded: u64,
}

/// One counted key, taken out of the tally for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) method: Method,
    pub(crate) path: Box<str>,
    pub(crate) second: i64,
    pub(crate) count: u64,
}

/// What [`Tally::record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Added to a key already held.
    Existing,
    /// Added as a new key.
    New,
    /// Refused: the tally holds its maximum of keys and this one is new.
    Full,
}

/// Sharded counts with a bound on the keys held across all shards.
pub(crate) struct Tally {
    shards: Box<[Shard]>,
    hasher: RandomState,
    keys: AtomicUsize,
}

/// Locks a shard. A poisoned shard only means another thread panicked
/// mid-insert; the counts in it are still whole.
fn lock(shard: &Shard) -> MutexGuard<'_, ShardCounts> {
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Tally {
    pub(crate) fn new(shards: usize) -> Self {
        Tally {
            shards: (0..shards.max(1)).map(|_| Shard::default()).collect(),
            hasher: RandomState::default(),
            keys: AtomicUsize::new(0),
        }
    }

    /// Adds `count` requests to (method, path, second), unless that is a new
    /// key and `room` says no more keys fit. `room` is asked with the number
    /// of keys held here.
    pub(crate) fn record(
        &self,
        method: Method,
        path: &str,
        second: i64,
        count: u64,
        room: impl FnOnce(usize) -> bool,
    ) -> Recorded {
        let shard = &self.shards[self.hasher.hash_one(path) as usize % self.shards.len()];
        let mut shard = lock(shard);
        let shard = &mut *shard;
        if let Some(slots) = shard.paths.get_mut(path) {
            if let Some(slot) = slots.iter_mut().find(|s| s.0 == method && s.1 == second) {
                slot.2 += count;
                shard.recorded += count;
                return Recorded::Existing;
            }
            if !room(self.keys.load(Ordering::Relaxed)) {
                return Recorded::Full;
            }
            slots.push((method, second, count));
        } else {
            if !room(self.keys.load(Ordering::Relaxed)) {
                return Recorded::Full;
            }
            shard
                .paths
                .insert(path.into(), vec![(method, second, count)]);
        }
        shard.recorded += count;
        self.keys.fetch_add(1, Ordering::Relaxed);
        Recorded::New
    }

    /// Requests ever counted (not refused), including those drained since.
    pub(crate) fn recorded(&self) -> u64 {
        self.shards.iter().map(|shard| lock(shard).recorded).sum()
    }

    /// Takes every key out, leaving the tally empty.
    pub(crate) fn drain(&self) -> Vec<Key> {
        let mut keys = Vec::new();
        for shard in self.shards.iter() {
            for (path, slots) in lock(shard).paths.drain() {
                for (method, second, count) in slots {
                    keys.push(Key {
                        method,
                        path: path.clone(),
                        second,
                        count,
                    });
                }
            }
        }
        self.keys.fetch_sub(keys.len(), Ordering::Relaxed);
        keys
    }

    /// Keys held now.
    pub(crate) fn keys(&self) -> usize {
        self.keys.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_method_path_and_second_and_refuses_new_keys_when_full() {
        let tally = Tally::new(4);
        let fits = |max: usize| move |held: usize| held < max;
        assert_eq!(
            tally.record(Method::Get, "/a", 1, 1, fits(2)),
            Recorded::New
        );
        assert_eq!(
            tally.record(Method::Get, "/a", 1, 2, fits(2)),
            Recorded::Existing
        );
        assert_eq!(
            tally.record(Method::Post, "/a", 1, 1, fits(2)),
            Recorded::New
        );
        assert_eq!(
            tally.record(Method::Get, "/b", 1, 1, fits(2)),
            Recorded::Full
        );
        assert_eq!(
            tally.record(Method::Get, "/a", 2, 1, fits(2)),
            Recorded::Full
        );
        assert_eq!(
            tally.record(Method::Post, "/a", 1, 5, fits(2)),
            Recorded::Existing
        );
        assert_eq!(tally.keys(), 2);
        let mut keys = tally.drain();
        keys.sort_by_key(|k| k.method as i32);
        let summary: Vec<_> = keys
            .iter()
            .map(|k| (k.method, &*k.path, k.second, k.count))
            .collect();
        assert_eq!(
            summary,
            vec![(Method::Get, "/a", 1, 3), (Method::Post, "/a", 1, 6)]
        );
        assert_eq!(tally.keys(), 0);
    }
}
