//! Prometheus metrics: every series count exports, named in one place.
//! Recording is a no-op until [`install`] is called (`--metrics-listen`).

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::error::{Error, Result};

/// Serves `/metrics` on `address` and describes every series.
pub fn install(address: SocketAddr) -> Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(address)
        // A real histogram (buckets), not the exporter's default summary.
        .set_buckets_for_metric(
            Matcher::Full("count_flush_duration_seconds".to_owned()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )
        .map_err(|e| Error::Io {
            context: "configuring metric buckets".to_owned(),
            source: std::io::Error::other(e),
        })?
        .install()
        .map_err(|e| Error::Io {
            context: format!("serving metrics on {address}"),
            source: std::io::Error::other(e),
        })?;
    describe_counter!(
        "count_entries_received_total",
        "Entries received, by RPC (add, add_batch)."
    );
    describe_counter!(
        "count_entries_accepted_total",
        "Entries accepted as valid, by RPC (add, add_batch)."
    );
    describe_counter!(
        "count_entries_rejected_total",
        "Entries rejected as invalid, by RPC and offending field."
    );
    describe_counter!(
        "count_requests_committed_total",
        "Requests committed to the database, by RPC."
    );
    describe_counter!(
        "count_batches_total",
        "AddBatch calls applied or found duplicate, by outcome."
    );
    describe_histogram!(
        "count_flush_duration_seconds",
        "Time to commit one flush (one count.add_batch call)."
    );
    describe_counter!(
        "count_entries_other_method_total",
        "Entries with METHOD_UNSPECIFIED (a method outside the enum), counted under OTHER."
    );
    describe_counter!("count_database_errors_total", "Database calls that failed.");
    describe_counter!(
        "count_database_retries_total",
        "Statements retried after a serialization failure or deadlock, by operation."
    );
    describe_counter!("count_rollups_total", "Rollups run, by kind (day, due).");
    describe_gauge!(
        "count_database_connections",
        "Database pool connections, by state (in_use, idle)."
    );
    describe_gauge!(
        "count_backend_info",
        "The SQL API backend in use (label backend: extension or sql)."
    );
    describe_gauge!("count_build_info", "The running build (label version).");
    gauge!("count_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(())
}

/// `entries` entries arrived through `rpc`.
pub fn received(rpc: &'static str, entries: u64) {
    counter!("count_entries_received_total", "rpc" => rpc).increment(entries);
}

/// `entries` valid entries of `rpc` were accepted.
pub fn accepted(rpc: &'static str, entries: u64) {
    counter!("count_entries_accepted_total", "rpc" => rpc).increment(entries);
}

/// An entry with METHOD_UNSPECIFIED was counted under `OTHER`.
pub fn other_method() {
    counter!("count_entries_other_method_total").increment(1);
}

/// One entry of `rpc` was rejected because of `field`.
pub fn rejected(rpc: &'static str, field: &str) {
    // `entries[3].path` and `path` are the same reason: keep the label's
    // values few.
    let field = field.rsplit_once("].").map_or(field, |(_, f)| f).to_owned();
    counter!("count_entries_rejected_total", "rpc" => rpc, "field" => field).increment(1);
}

/// One flush of `rpc` committed `requests` in `took`.
pub fn committed(rpc: &'static str, requests: i64, took: Duration) {
    counter!("count_requests_committed_total", "rpc" => rpc).increment(requests.max(0) as u64);
    histogram!("count_flush_duration_seconds").record(took.as_secs_f64());
}

/// An AddBatch was applied, or found a duplicate.
pub fn batch(duplicate: bool) {
    let outcome = if duplicate { "duplicate" } else { "applied" };
    counter!("count_batches_total", "outcome" => outcome).increment(1);
}

/// The database asked for `operation` to be retried (a serialization
/// failure or a deadlock), and it was.
pub fn database_retry(operation: &'static str) {
    counter!("count_database_retries_total", "operation" => operation).increment(1);
}

/// A database call failed.
pub fn database_error() {
    counter!("count_database_errors_total").increment(1);
}

/// A rollup of `kind` (`day` or `due`) ran.
pub fn rollup(kind: &'static str) {
    counter!("count_rollups_total", "kind" => kind).increment(1);
}

/// The pool's connections now.
pub fn connections(in_use: usize, idle: usize) {
    gauge!("count_database_connections", "state" => "in_use").set(in_use as f64);
    gauge!("count_database_connections", "state" => "idle").set(idle as f64);
}

/// The backend in use.
pub fn backend(name: &'static str) {
    gauge!("count_backend_info", "backend" => name).set(1.0);
}

#[cfg(test)]
mod tests {
    /// The series names in `source` that follow `macro_name!(`.
    fn names(source: &str, macro_name: &str) -> std::collections::BTreeSet<String> {
        source
            .match_indices(&format!("{macro_name}!("))
            .filter_map(|(at, call)| {
                let rest = source[at + call.len()..].trim_start();
                let rest = rest.strip_prefix('"')?;
                Some(rest[..rest.find('"')?].to_owned())
            })
            .collect()
    }

    #[test]
    fn every_series_recorded_is_described() {
        let source = include_str!("metrics.rs");
        let source = &source[..source.find("#[cfg(test)]").unwrap_or(source.len())];
        let mut recorded = names(source, "counter");
        recorded.extend(names(source, "gauge"));
        recorded.extend(names(source, "histogram"));
        let mut described = names(source, "describe_counter");
        described.extend(names(source, "describe_gauge"));
        described.extend(names(source, "describe_histogram"));
        assert!(recorded.len() >= 10, "{recorded:?}");
        let undescribed: Vec<_> = recorded.difference(&described).collect();
        assert!(undescribed.is_empty(), "not described: {undescribed:?}");
    }
}
