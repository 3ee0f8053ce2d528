//! Counters of what a [`crate::Counter`] did, readable at any time.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a counter's activity, in requests (except `retries`).
/// `recorded == delivered + dropped + pending` whenever nothing is being
/// recorded at the same moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests passed to `record` (accepted or not).
    pub recorded: u64,
    /// Requests the count server acknowledged.
    pub delivered: u64,
    /// Requests given up: over capacity, invalid, or refused by the server.
    pub dropped: u64,
    /// Requests recorded and not yet delivered.
    pub pending: u64,
    /// Batch sends that failed and were retried.
    pub retries: u64,
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct StatCounters {
    recorded: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    pending: AtomicU64,
    retries: AtomicU64,
}

impl StatCounters {
    pub(crate) fn recorded(&self, requests: u64) {
        self.recorded.fetch_add(requests, Ordering::Relaxed);
        self.pending.fetch_add(requests, Ordering::Relaxed);
    }

    /// Requests passed to `record` and refused there (full, or invalid).
    pub(crate) fn refused(&self, requests: u64) {
        self.recorded.fetch_add(requests, Ordering::Relaxed);
        self.dropped.fetch_add(requests, Ordering::Relaxed);
    }

    pub(crate) fn delivered(&self, requests: u64) {
        self.delivered.fetch_add(requests, Ordering::Relaxed);
        self.pending.fetch_sub(requests, Ordering::Relaxed);
    }

    /// Recorded requests given up after all.
    pub(crate) fn given_up(&self, requests: u64) {
        self.dropped.fetch_add(requests, Ordering::Relaxed);
        self.pending.fetch_sub(requests, Ordering::Relaxed);
    }

    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            recorded: self.recorded.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}
