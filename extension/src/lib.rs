//! The `count` PostgreSQL extension: count's SQL API, with `count.add_batch`
//! implemented natively.
//!
//! `CREATE EXTENSION count` provides the same functions, with the same
//! signatures and semantics, as the portable fallback in `sql/`; the service
//! uses whichever is installed. Only `count.add_series` and its wrapper
//! `count.add_batch` are native: they are the ingest hot path, where a
//! per-backend cache of series ids, prepared plans
//! and validation in one pass over the arrays save most of the fallback's
//! work. What the rollups share with the fallback (`count.add_totals`,
//! `count.expire_producers`) is the fallback's own `sql/totals.sql`; the
//! extension's rollups, which roll up a day's partition whole, and the
//! partition upkeep are in `queries/partitions.sql`.
//!
//! Layout:
//! - [`batch`]: validation of `add_series`' arrays into rows (plain Rust).
//! - [`series_ids`]: resolving series to `count.methods` ids, cached.
//! - [`batch_write`]: the SPI work of one `add_series` call.
//! - [`error`]: the crate's error type and its SQLSTATEs.
//! - [`subtransaction`]: an internal subtransaction around one SPI call,
//!   as PL/pgSQL's exception blocks use.

use pgrx::prelude::*;

pub mod batch;
pub mod batch_write;
pub mod error;
pub mod series_ids;
pub mod subtransaction;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../queries/bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!(
    "../../sql/totals.sql",
    name = "totals",
    requires = ["bootstrap"]
);
extension_sql_file!("../queries/partitions.sql", name = "partitions", finalize);

/// Adds one flush of aggregated counts: element i of the arrays is one
/// (method, path, tenant, status code, timestamp, count); a NULL status code
/// is unknown. With `producer` and `seq`, applies the batch only if `seq` is
/// above the producer's last applied sequence, and returns NULL for a
/// duplicate. Returns the requests added.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe, requires = ["bootstrap"])]
fn add_series(
    producer: Option<&str>,
    seq: Option<i64>,
    methods: Option<Array<'_, &str>>,
    paths: Option<Array<'_, &str>>,
    tenants: Option<Array<'_, &str>>,
    status_codes: Option<Array<'_, i32>>,
    timestamps: Option<Array<'_, TimestampWithTimeZone>>,
    counts: Option<Array<'_, i64>>,
) -> Option<i64> {
    apply(
        "count.add_series",
        batch::Arrays {
            producer,
            seq,
            methods: methods.as_ref().map(|a| a.iter().collect()),
            paths: paths.as_ref().map(|a| a.iter().collect()),
            tenants: tenants.as_ref().map(|a| a.iter().collect()),
            status_codes: status_codes.as_ref().map(|a| a.iter().collect()),
            timestamps: timestamps.as_ref().map(|a| a.iter().collect()),
            counts: counts.as_ref().map(|a| a.iter().collect()),
        },
    )
}

/// `add_series` for tenant '' and unknown status codes: the batches of
/// clients that send neither. Its errors name `count.add_batch`.
#[pg_extern(volatile, parallel_unsafe, requires = ["bootstrap"])]
fn add_batch(
    producer: Option<&str>,
    seq: Option<i64>,
    methods: Option<Array<'_, &str>>,
    paths: Option<Array<'_, &str>>,
    timestamps: Option<Array<'_, TimestampWithTimeZone>>,
    counts: Option<Array<'_, i64>>,
) -> Option<i64> {
    let rows = methods.as_ref().map_or(0, |a| a.len());
    apply(
        "count.add_batch",
        batch::Arrays {
            producer,
            seq,
            methods: methods.as_ref().map(|a| a.iter().collect()),
            paths: paths.as_ref().map(|a| a.iter().collect()),
            tenants: Some(vec![Some(""); rows]),
            status_codes: Some(vec![None; rows]),
            timestamps: timestamps.as_ref().map(|a| a.iter().collect()),
            counts: counts.as_ref().map(|a| a.iter().collect()),
        },
    )
}

/// Validates and applies one call of `function`.
fn apply(function: &str, arrays: batch::Arrays<'_, TimestampWithTimeZone>) -> Option<i64> {
    match batch::Batch::from_arrays(arrays).and_then(batch_write::add_series) {
        Ok(added) => added,
        Err(error) => error.report(function),
    }
}

#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    /// One-off set-up when the test cluster starts.
    pub fn setup(_options: Vec<&str>) {}

    /// postgresql.conf settings the tests need.
    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
