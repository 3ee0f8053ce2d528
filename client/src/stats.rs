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
    /// Batches the server acknowledged as applied.
    pub batches: u64,
    /// Batch sends that failed and were retried.
    pub retries: u64,
    /// Batches the server answered as already applied on their first send:
    /// another process with the same producer id had used that sequence.
    /// Each was resent with a new sequence, not counted as delivered.
    pub duplicates: u64,
}

/// The live counters behind [`Stats`], but for the requests recorded, which
/// the tally counts (see [`crate::tally::Tally::recorded`]).
#[derive(Debug, Default)]
pub(crate) struct StatCounters {
    /// Requests refused by `record` (full, or invalid).
    refused: AtomicU64,
    delivered: AtomicU64,
    batches: AtomicU64,
    /// Recorded requests given up after all.
    given_up: AtomicU64,
    retries: AtomicU64,
    duplicates: AtomicU64,
}

impl StatCounters {
    /// Requests passed to `record` and refused there (full, or invalid).
    pub(crate) fn refused(&self, requests: u64) {
        self.refused.fetch_add(requests, Ordering::Relaxed);
    }

    /// One batch of `requests` was acknowledged.
    pub(crate) fn delivered(&self, requests: u64) {
        self.delivered.fetch_add(requests, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    /// Recorded requests given up after all.
    pub(crate) fn given_up(&self, requests: u64) {
        self.given_up.fetch_add(requests, Ordering::Relaxed);
    }

    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// A batch was found applied on its first send (see [`Stats::duplicates`]).
    pub(crate) fn duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    /// The stats, given the requests the tally has counted (read after the
    /// counters here, so that it covers every request delivered or given
    /// up).
    pub(crate) fn snapshot(&self, tallied: impl FnOnce() -> u64) -> Stats {
        let refused = self.refused.load(Ordering::Relaxed);
        let delivered = self.delivered.load(Ordering::Relaxed);
        let given_up = self.given_up.load(Ordering::Relaxed);
        let retries = self.retries.load(Ordering::Relaxed);
        let batches = self.batches.load(Ordering::Relaxed);
        let duplicates = self.duplicates.load(Ordering::Relaxed);
        let tallied = tallied();
        Stats {
            recorded: tallied + refused,
            delivered,
            dropped: refused + given_up,
            pending: tallied.saturating_sub(delivered + given_up),
            batches,
            retries,
            duplicates,
        }
    }
}
