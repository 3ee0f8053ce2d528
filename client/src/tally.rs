//! The in-memory tally: request counts by key (method, path, tenant,
//! status code) and minute, in shards, a thread recording in its own so
//! that threads recording at once do not wait for each other.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::{Equivalent, HashMap, HashTable};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use crossbeam_utils::CachePadded;

use count_proto::v1::Method;

/// Counts of one path and tenant: a few (method, status, minute) slots,
/// since a path sees few methods, statuses and minutes between two flushes.
type Slots = Vec<(Method, Option<u16>, i64, u64)>;

/// A path and a tenant, owned: a shard's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Owned {
    path: Box<str>,
    tenant: Box<str>,
}

/// A path and a tenant, borrowed: looks an [`Owned`] up without
/// allocating. Its fields hash as the owned ones do (`Box<str>` hashes as
/// its `str`; same order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Borrowed<'a> {
    path: &'a str,
    tenant: &'a str,
}

impl Equivalent<Owned> for Borrowed<'_> {
    fn equivalent(&self, key: &Owned) -> bool {
        *self.path == *key.path && same_text(self.tenant, &key.tenant)
    }
}

/// `a == b`, without comparing two empty strings' bytes: `==` on two empty
/// `str`s cost 90 ns here (libc's `memcmp` of 0 bytes, through the
/// dangling pointers of empty strings), a key of the empty tenant (every
/// `Counter::record`) 10 times the cost of another.
fn same_text(a: &str, b: &str) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
}

/// One shard: slots by path and tenant, and the requests it has counted.
/// Keys are hashed with foldhash (randomly seeded per process), not
/// SipHash: hashing was the larger part of `record`'s cost. Each shard has
/// its own cache line: shards sharing one made threads recording different
/// paths slow each other down.
type Shard = CachePadded<Mutex<ShardCounts>>;

#[derive(Default)]
struct ShardCounts {
    paths: HashMap<Owned, Slots, RandomState>,
    /// Requests ever counted here: counting them under the shard's lock
    /// rather than in one shared atomic keeps threads off a common cache
    /// line.
    recorded: u64,
}

/// What a request is counted under, borrowed from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Series<'a> {
    pub(crate) method: Method,
    pub(crate) path: &'a str,
    pub(crate) tenant: &'a str,
    pub(crate) status: Option<u16>,
}

/// One counted key, taken out of the tally for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) method: Method,
    pub(crate) path: Box<str>,
    pub(crate) tenant: Box<str>,
    pub(crate) status: Option<u16>,
    /// The minute's start, in seconds since the Unix epoch.
    pub(crate) minute: i64,
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

/// Sharded counts with a bound on the keys held across all shards (a key
/// recorded on several threads is held in each of their shards).
pub(crate) struct Tally {
    shards: Box<[Shard]>,
    keys: AtomicUsize,
}

/// Locks a shard. A poisoned shard only means another thread panicked
/// mid-insert; the counts in it are still whole.
fn lock(shard: &Shard) -> MutexGuard<'_, ShardCounts> {
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Locks a shard if no other thread holds it (poisoned: as [`lock`]).
fn try_lock(shard: &Shard) -> Option<MutexGuard<'_, ShardCounts>> {
    match shard.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// The next thread's home shard (modulo the shards): threads that record
/// take them in turn, so that a few threads have one each.
static NEXT_HOME: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's home shard, where it records ([`Tally::record`]).
    static HOME: usize = NEXT_HOME.fetch_add(1, Ordering::Relaxed);
}

impl Tally {
    pub(crate) fn new(shards: usize) -> Self {
        Tally {
            shards: (0..shards.max(1)).map(|_| Shard::default()).collect(),
            keys: AtomicUsize::new(0),
        }
    }

    /// Adds `count` requests to `series` in `minute`, unless that is a new
    /// key and `room` says no more keys fit. `room` is asked with the number
    /// of keys held here. A key held already costs no allocation.
    ///
    /// Each thread records in a shard of its own (its home), not in one
    /// chosen by the key, and does not wait for a shard another thread
    /// holds: with more threads than cores, a holder may have been
    /// preempted mid-record, and every thread that met its shard slept until
    /// it ran again (4 threads on 2 cores counted 7.6–17.8M requests/s by
    /// key shards, 31M by home shards). So a key recorded on several threads
    /// is held once in each of their shards ([`Tally::drain`] adds the
    /// copies up). At the cap, a key new to the shard but held in another
    /// still counts there: finding it may wait for shards others hold.
    pub(crate) fn record(
        &self,
        series: Series<'_>,
        minute: i64,
        count: u64,
        room: impl Fn(usize) -> bool,
    ) -> Recorded {
        let home = HOME.with(|home| *home);
        self.record_from(home, series, minute, count, room)
    }

    /// [`Tally::record`] from a thread whose home shard is `home`: there, or
    /// in the next shard no other thread holds (only if every one is held,
    /// it waits for the home).
    fn record_from(
        &self,
        home: usize,
        series: Series<'_>,
        minute: i64,
        count: u64,
        room: impl Fn(usize) -> bool,
    ) -> Recorded {
        let shards = self.shards.len();
        let home = home % shards;
        let free = (0..shards)
            .map(|i| (home + i) % shards)
            .find_map(|index| try_lock(&self.shards[index]).map(|shard| (index, shard)));
        let (used, recorded) = match free {
            Some((index, mut shard)) => (index, self.add(&mut shard, series, minute, count, &room)),
            None => (
                home,
                self.add(&mut lock(&self.shards[home]), series, minute, count, &room),
            ),
        };
        if recorded != Recorded::Full {
            return recorded;
        }
        // Free shards first; only then those other threads hold.
        let held_only = |_: usize| false;
        let mut busy = Vec::new();
        for index in (0..shards).filter(|&index| index != used) {
            match try_lock(&self.shards[index]) {
                Some(mut shard) => {
                    if self.add(&mut shard, series, minute, count, &held_only) == Recorded::Existing
                    {
                        return Recorded::Existing;
                    }
                }
                None => busy.push(index),
            }
        }
        for index in busy {
            if self.add(
                &mut lock(&self.shards[index]),
                series,
                minute,
                count,
                &held_only,
            ) == Recorded::Existing
            {
                return Recorded::Existing;
            }
        }
        Recorded::Full
    }

    /// [`Tally::record`] in one locked shard.
    fn add(
        &self,
        shard: &mut ShardCounts,
        series: Series<'_>,
        minute: i64,
        count: u64,
        room: &impl Fn(usize) -> bool,
    ) -> Recorded {
        let Series {
            method,
            path,
            tenant,
            status,
        } = series;
        let borrowed = Borrowed { path, tenant };
        if let Some(slots) = shard.paths.get_mut(&borrowed) {
            if let Some(slot) = slots
                .iter_mut()
                .find(|s| s.0 == method && s.1 == status && s.2 == minute)
            {
                slot.3 += count;
                shard.recorded += count;
                return Recorded::Existing;
            }
            if !room(self.keys.load(Ordering::Relaxed)) {
                return Recorded::Full;
            }
            slots.push((method, status, minute, count));
        } else {
            if !room(self.keys.load(Ordering::Relaxed)) {
                return Recorded::Full;
            }
            let owned = Owned {
                path: path.into(),
                tenant: tenant.into(),
            };
            shard
                .paths
                .insert(owned, vec![(method, status, minute, count)]);
        }
        shard.recorded += count;
        self.keys.fetch_add(1, Ordering::Relaxed);
        Recorded::New
    }

    /// Requests ever counted (not refused), including those drained since.
    pub(crate) fn recorded(&self) -> u64 {
        self.shards.iter().map(|shard| lock(shard).recorded).sum()
    }

    /// Takes every key out, leaving the tally empty: each key once, its
    /// copies in several threads' shards added up (so that they go in one
    /// entry, and one raw row).
    pub(crate) fn drain(&self) -> Vec<Key> {
        let hasher = RandomState::default();
        let identity =
            |k: &Key| hasher.hash_one((k.method, &*k.path, &*k.tenant, k.status, k.minute));
        let mut keys: Vec<Key> = Vec::new();
        let mut places: HashTable<usize> = HashTable::new();
        let mut taken = 0;
        for shard in self.shards.iter() {
            for (owned, slots) in lock(shard).paths.drain() {
                for (method, status, minute, count) in slots {
                    taken += 1;
                    let key = Key {
                        method,
                        path: owned.path.clone(),
                        tenant: owned.tenant.clone(),
                        status,
                        minute,
                        count,
                    };
                    let hash = identity(&key);
                    let same = |&place: &usize| {
                        let held = &keys[place];
                        held.method == key.method
                            && held.path == key.path
                            && held.tenant == key.tenant
                            && held.status == key.status
                            && held.minute == key.minute
                    };
                    match places.find(hash, same).copied() {
                        Some(place) => keys[place].count = keys[place].count.saturating_add(count),
                        None => {
                            keys.push(key);
                            places.insert_unique(hash, keys.len() - 1, |&place| {
                                identity(&keys[place])
                            });
                        }
                    }
                }
            }
        }
        self.keys.fetch_sub(taken, Ordering::Relaxed);
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

    fn series(
        method: Method,
        path: &'static str,
        tenant: &'static str,
        status: Option<u16>,
    ) -> Series<'static> {
        Series {
            method,
            path,
            tenant,
            status,
        }
    }

    #[test]
    fn counts_by_series_and_minute_and_refuses_new_keys_when_full() {
        let tally = Tally::new(4);
        let fits = |max: usize| move |held: usize| held < max;
        let get = series(Method::Get, "/a", "", None);
        let post = series(Method::Post, "/a", "", None);
        assert_eq!(tally.record(get, 1, 1, fits(4)), Recorded::New);
        assert_eq!(tally.record(get, 1, 2, fits(4)), Recorded::Existing);
        assert_eq!(tally.record(post, 1, 1, fits(4)), Recorded::New);
        let acme_ok = series(Method::Get, "/a", "acme", Some(200));
        let acme_error = series(Method::Get, "/a", "acme", Some(500));
        assert_eq!(tally.record(acme_ok, 1, 4, fits(4)), Recorded::New);
        assert_eq!(tally.record(acme_error, 1, 8, fits(4)), Recorded::New);
        assert_eq!(
            tally.record(series(Method::Get, "/b", "", None), 1, 1, fits(4)),
            Recorded::Full
        );
        assert_eq!(tally.record(get, 2, 1, fits(4)), Recorded::Full);
        assert_eq!(tally.record(post, 1, 5, fits(4)), Recorded::Existing);
        assert_eq!(tally.record(acme_ok, 1, 16, fits(4)), Recorded::Existing);
        assert_eq!(tally.keys(), 4);
        let mut keys = tally.drain();
        keys.sort_by_key(|k| (k.method as i32, k.tenant.clone(), k.status));
        let summary: Vec<_> = keys
            .iter()
            .map(|k| (k.method, &*k.path, &*k.tenant, k.status, k.minute, k.count))
            .collect();
        assert_eq!(
            summary,
            vec![
                (Method::Get, "/a", "", None, 1, 3),
                (Method::Get, "/a", "acme", Some(200), 1, 20),
                (Method::Get, "/a", "acme", Some(500), 1, 8),
                (Method::Post, "/a", "", None, 1, 6)
            ]
        );
        assert_eq!(tally.keys(), 0);
    }

    #[test]
    fn a_held_shard_is_not_waited_for_and_a_full_tally_still_counts_its_keys() {
        let tally = Tally::new(4);
        let get = series(Method::Get, "/a", "", None);
        assert_eq!(tally.record_from(0, get, 1, 1, |_| true), Recorded::New);
        assert_eq!(
            tally.record_from(0, get, 1, 2, |_| true),
            Recorded::Existing
        );
        let held = lock(&tally.shards[0]);
        // Not waited for (this thread holds it: a wait would never end): the
        // next shard takes the key.
        assert_eq!(tally.record_from(0, get, 1, 4, |_| true), Recorded::New);
        drop(held);
        // Full: new to the home shard, held in shards 0 and 1: counted there.
        assert_eq!(
            tally.record_from(2, get, 1, 8, |_| false),
            Recorded::Existing
        );
        // Held nowhere: refused.
        let post = series(Method::Post, "/a", "", None);
        assert_eq!(tally.record_from(2, post, 1, 16, |_| false), Recorded::Full);
        assert_eq!(tally.keys(), 2);
        assert_eq!(tally.recorded(), 15);
        // The key's two copies come out as one.
        let counts: Vec<u64> = tally.drain().iter().map(|k| k.count).collect();
        assert_eq!(counts, vec![15]);
        assert_eq!(tally.keys(), 0);
    }

    #[test]
    fn threads_racing_at_the_cap_lose_and_double_nothing() {
        const THREADS: u64 = 4;
        const RECORDS: u64 = 20_000;
        let tally = std::sync::Arc::new(Tally::new(4));
        let (done, finished) = std::sync::mpsc::channel();
        for thread in 0..THREADS {
            let (tally, done) = (tally.clone(), done.clone());
            std::thread::spawn(move || {
                let paths = ["/0", "/1", "/2", "/3", "/4", "/5", "/6", "/7"];
                let mut refused = 0;
                for i in 0..RECORDS {
                    let path = paths[((i + thread) % 8) as usize];
                    // Room for 6 keys: some paths are refused, every held
                    // one keeps counting, whichever shards hold it.
                    let recorded =
                        tally.record(series(Method::Get, path, "", None), 1, 1, |held| held < 6);
                    if recorded == Recorded::Full {
                        refused += 1;
                    }
                }
                let _ = done.send(refused);
            });
        }
        let refused: u64 = (0..THREADS)
            .map(|_| {
                finished
                    .recv_timeout(std::time::Duration::from_secs(60))
                    .expect("a recording thread finished")
            })
            .sum();
        let counted = tally.recorded();
        let keys = tally.drain();
        let drained: u64 = keys.iter().map(|k| k.count).sum();
        assert_eq!(drained, counted);
        assert_eq!(drained + refused, THREADS * RECORDS);
        let mut paths: Vec<&str> = keys.iter().map(|k| &*k.path).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), keys.len(), "a key drained twice: {keys:?}");
        assert!(!keys.is_empty() && keys.len() <= 6, "{keys:?}");
        assert_eq!(tally.keys(), 0);
    }
}
