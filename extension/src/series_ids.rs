//! Series ids: (method, path, tenant, status code) → `count.methods.id`,
//! with a per-backend cache so that a warm `add_series` resolves its rows
//! without a query.
//!
//! The cache must never hold an id whose row is not committed: an id cached
//! from a transaction that then rolls back would send later counts to a row
//! that does not exist. So ids found in a transaction are only `pending`
//! until it commits (they are valid inside it); an abort of the transaction
//! or of any subtransaction drops every pending id (the conservative choice:
//! they are resolved again next time). `count.methods` rows are never deleted.

use std::cell::{Cell, RefCell};

use hashbrown::{Equivalent, HashMap};
use pgrx::callbacks::{
    PgSubXactCallbackEvent, PgXactCallbackEvent, register_subxact_callback, register_xact_callback,
};

use crate::batch::METHODS;

/// A series but its method, owned: a cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    /// The path.
    pub path: String,
    /// The tenant, '' for none.
    pub tenant: String,
    /// The stored status code (`batch::UNKNOWN_STATUS` for unknown).
    pub status: i32,
}

/// A series but its method, borrowed: looks a [`SeriesKey`] up without
/// allocating. Its fields hash as the key's do (a `String` hashes as its
/// `str`, and the fields come in the same order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Series<'a> {
    /// The path.
    pub path: &'a str,
    /// The tenant, '' for none.
    pub tenant: &'a str,
    /// The stored status code.
    pub status: i32,
}

impl Equivalent<SeriesKey> for Series<'_> {
    fn equivalent(&self, key: &SeriesKey) -> bool {
        self.status == key.status
            && self.path == key.path
            // Not `==`: on two empty strings it cost about 90 ns (libc's
            // `memcmp` of 0 bytes, through their dangling pointers), and
            // the empty tenant is every `count.add_batch` row's.
            && self.tenant.len() == key.tenant.len()
            && (self.tenant.is_empty() || self.tenant == key.tenant)
    }
}

/// Ids by series, one map per method (indexed like [`METHODS`]).
pub type IdMap = [HashMap<SeriesKey, i64>; METHODS.len()];

#[derive(Default)]
struct Cache {
    committed: IdMap,
    pending: IdMap,
    /// Whether this transaction's callbacks are registered.
    watching: bool,
}

thread_local! {
    // A backend is one thread: this is per-backend state.
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
    /// Whether most of this backend's last cache misses were new series.
    static MISSES_NEW: Cell<bool> = const { Cell::new(true) };
}

/// The cached id of `series` of `method`, committed or pending in this
/// transaction.
pub fn lookup(method: usize, series: &Series<'_>) -> Option<i64> {
    CACHE.with_borrow(|cache| {
        cache.committed[method]
            .get(series)
            .or_else(|| cache.pending[method].get(series))
            .copied()
    })
}

/// Whether this backend has cached committed ids already.
pub fn is_warm() -> bool {
    CACHE.with_borrow(|cache| cache.committed.iter().any(|ids| !ids.is_empty()))
}

/// Whether most of the series this backend last missed in its cache were
/// new (inserted), rather than created by another backend: what the next
/// misses most likely are.
pub fn misses_are_new() -> bool {
    MISSES_NEW.get()
}

/// Records how many of `missing` series missed in the cache had to be
/// inserted.
pub fn note_misses(missing: usize, inserted: usize) {
    MISSES_NEW.set(inserted * 2 >= missing);
}

/// Remembers ids found in this transaction; they become cached for good
/// when it commits.
pub fn remember(found: impl IntoIterator<Item = (usize, SeriesKey, i64)>) {
    CACHE.with_borrow_mut(|cache| {
        for (method, series, id) in found {
            cache.pending[method].insert(series, id);
        }
        if !cache.watching {
            cache.watching = true;
            register_xact_callback(PgXactCallbackEvent::Commit, promote);
            register_xact_callback(PgXactCallbackEvent::Abort, forget);
            // A prepared transaction may still roll back later.
            register_xact_callback(PgXactCallbackEvent::Prepare, forget);
            register_subxact_callback(PgSubXactCallbackEvent::AbortSub, |_, _| forget());
        }
    });
}

fn promote() {
    CACHE.with_borrow_mut(|cache| {
        let Cache {
            committed, pending, ..
        } = cache;
        for (committed, pending) in committed.iter_mut().zip(pending.iter_mut()) {
            committed.extend(pending.drain());
        }
        cache.watching = false;
    });
}

fn forget() {
    CACHE.with_borrow_mut(|cache| {
        cache.pending.iter_mut().for_each(HashMap::clear);
        cache.watching = false;
    });
}
