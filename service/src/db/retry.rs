//! Retrying what the database asks to retry. A serialization failure
//! (40001) or a deadlock (40P01) rolls the failed transaction back whole,
//! and every write the service makes is one statement in a transaction of
//! its own, so running it again is safe: it applies once or not at all.
//! Under SERIALIZABLE (a database default, and CockroachDB's only level)
//! concurrent flushes and rollups meet such failures as a matter of course;
//! clients should never see them.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};

/// How many times one operation is tried at most.
const MAX_TRIES: u32 = 10;

/// The first and the longest wait between two tries (jittered).
const BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_millis(500));

/// Runs `attempt` until it succeeds, fails for a reason a retry cannot fix,
/// or has been tried [`MAX_TRIES`] times; each retry is counted in the
/// metrics under `operation`.
pub(crate) async fn retrying<T, F, Fut>(operation: &'static str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut backoff = BACKOFF.0;
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(error) if is_retryable(&error) && tries < MAX_TRIES => {
                crate::metrics::database_retry(operation);
                tracing::debug!(%error, operation, tries, "the database asked for a retry");
                // Jitter: transactions that collided should not collide again.
                tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64())).await;
                backoff = (backoff * 2).min(BACKOFF.1);
                tries += 1;
            }
            result => return result,
        }
    }
}

/// A serialization failure or a deadlock.
fn is_retryable(error: &Error) -> bool {
    matches!(
        error,
        Error::Database(e) if e.code().is_some_and(|c| matches!(c.code(), "40001" | "40P01"))
    )
}
