//! Endpoint ids: (method, path) → `count.methods.id`, with a per-backend
//! cache so that a warm `add_batch` resolves its rows without a query.
//!
//! The cache must never hold an id whose row is not committed: an id cached
//! from a transaction that then rolls back would send later counts to a row
//! that does not exist. So ids found in a transaction are only `pending`
//! until it commits (they are valid inside it); an abort of the transaction
//! or of any subtransaction drops every pending id (the conservative choice:
//! they are resolved again next time). `count.methods` rows are never deleted.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::callbacks::{
    PgSubXactCallbackEvent, PgXactCallbackEvent, register_subxact_callback, register_xact_callback,
};

use crate::batch::METHODS;

/// Ids by path, one map per method (indexed like [`METHODS`]), so a lookup
/// needs no allocation.
type IdMap = [HashMap<String, i64>; METHODS.len()];

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
}

/// The cached id of (method, path), committed or pending in this transaction.
pub fn lookup(method: usize, path: &str) -> Option<i64> {
    CACHE.with_borrow(|cache| {
        cache.committed[method]
            .get(path)
            .or_else(|| cache.pending[method].get(path))
            .copied()
    })
}

/// Whether this backend has cached committed ids already.
pub fn is_warm() -> bool {
    CACHE.with_borrow(|cache| cache.committed.iter().any(|ids| !ids.is_empty()))
}

/// Remembers ids found in this transaction; they become cached for good
/// when it commits.
pub fn remember(found: impl IntoIterator<Item = (usize, String, i64)>) {
    CACHE.with_borrow_mut(|cache| {
        for (method, path, id) in found {
            cache.pending[method].insert(path, id);
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
