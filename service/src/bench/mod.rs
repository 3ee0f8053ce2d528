//! `count bench`: measures count on this machine, each figure side by side
//! with its baseline in one run, on a private PostgreSQL cluster it creates
//! and removes. Every scenario checks that what it counted arrived exactly;
//! the figures are rates, never pass/fail thresholds.
//!
//! Scenarios:
//! - [`sql_api`]: `count.add_batch` through the fallback and the extension.
//! - [`client`]: `Counter::record` on the caller's thread, and the
//!   `CountLayer` on an axum handler against the same handler without it.

mod client;
mod sql_api;

use std::path::PathBuf;
use std::time::Duration;

use crate::cluster::{Cluster, ClusterOptions};
use crate::error::{Error, Result};

/// What to measure, and how much.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Where the private cluster's binaries are (found when `None`).
    pub pg_bin_dir: Option<PathBuf>,
    /// Rows (distinct endpoints) per `add_batch` call; one block each.
    pub keys_per_call: Vec<usize>,
    /// Timed `add_batch` calls per block.
    pub calls: usize,
    /// `record` calls per client measurement.
    pub records: usize,
    /// How long each layer measurement sends requests.
    pub layer_time: Duration,
}

/// Runs every scenario and returns the report as text.
pub async fn run(options: &BenchOptions) -> Result<String> {
    let dir = std::env::temp_dir().join(format!("count-bench-{}", std::process::id()));
    let mut cluster_options = ClusterOptions::new(&dir);
    cluster_options.bin_dir = options.pg_bin_dir.clone();
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&cluster_options))
        .await
        .map_err(|e| Error::Cluster(format!("start-up task failed: {e}")))??;
    cluster.create_database().await?;
    let sql_api = sql_api::run(&cluster, &options.keys_per_call, options.calls).await;
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    let client = client::run(options.records, options.layer_time).await?;
    Ok(format!("{}\n{client}", sql_api?))
}
