//! Running a step in an internal subtransaction, as PL/pgSQL runs a block
//! with an EXCEPTION clause: one expected error rolls the step back and the
//! caller goes on; any other error rolls it back and propagates.

use std::panic::AssertUnwindSafe;

use pgrx::pg_sys::{self, PgTryBuilder};
use pgrx::{PgSqlErrorCode, pg_sys::panic::CaughtError};

/// Runs `step` in a subtransaction. Returns its result when it succeeds
/// (the subtransaction is kept), `None` when it raised `expected` (the
/// subtransaction is rolled back).
pub fn attempt<R>(expected: PgSqlErrorCode, step: impl FnOnce() -> R) -> Option<R> {
    // SAFETY: the pattern of PL/pgSQL's exception blocks (pl_exec.c): begin
    // the subtransaction, run in the caller's memory context, then release
    // or roll back and restore the caller's memory context and resource
    // owner. PgTryBuilder has already flushed the error state when a handler
    // runs, and nothing of the step outlives it (its results are owned Rust
    // values).
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let outcome = PgTryBuilder::new(AssertUnwindSafe(|| Outcome::Done(step())))
            .catch_when(expected, |_| Outcome::Expected)
            .catch_others(|cause| Outcome::Failed(Box::new(cause)))
            .execute();
        match outcome {
            Outcome::Done(_) => pg_sys::ReleaseCurrentSubTransaction(),
            Outcome::Expected | Outcome::Failed(_) => {
                pg_sys::RollbackAndReleaseCurrentSubTransaction()
            }
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
        match outcome {
            Outcome::Done(result) => Some(result),
            Outcome::Expected => None,
            Outcome::Failed(cause) => cause.rethrow(),
        }
    }
}

/// How a step ended.
enum Outcome<R> {
    Done(R),
    /// It raised the expected error.
    Expected,
    /// It raised another error.
    Failed(Box<CaughtError>),
}
