//! The SQL API scenario: `count.add_batch` through the portable fallback and
//! through the native extension, on the same cluster with the same batches
//! (fresh and repeated endpoints), on one connection as a server's flush
//! uses. Each block ends with a check that the database holds exactly what
//! was sent.

use std::time::{Duration, Instant};

use chrono::DateTime;

use count_service::db::cluster::Cluster;
use count_service::db::store::FlushBatch;

use crate::connect;
use crate::error::{Error, Result};
use count_service::db::store::{Backend, Store};

/// One measured block: rows per second through each backend.
#[derive(Debug, Clone, PartialEq)]
pub struct AddBatchFigure {
    /// Rows per call.
    pub keys: usize,
    /// Whether every call used endpoints never seen before.
    pub fresh: bool,
    /// Rows/s through the portable fallback.
    pub fallback: f64,
    /// Rows/s through the extension; `None` where it is not installed.
    pub extension: Option<f64>,
}

/// Measures every block on `cluster`.
pub(crate) async fn run(
    cluster: &Cluster,
    keys_per_call: &[usize],
    calls: usize,
) -> Result<Vec<AddBatchFigure>> {
    add_batch_figures(cluster, keys_per_call, calls).await
}

async fn add_batch_figures(
    cluster: &Cluster,
    keys_per_call: &[usize],
    calls: usize,
) -> Result<Vec<AddBatchFigure>> {
    let mut figures = Vec::new();
    for &keys in keys_per_call {
        for fresh in [true, false] {
            let fallback = measure(cluster, Backend::Sql, keys, fresh, calls).await?;
            let extension = if cluster.create_extension().await? {
                Some(measure(cluster, Backend::Extension, keys, fresh, calls).await?)
            } else {
                None
            };
            figures.push(AddBatchFigure {
                keys,
                fresh,
                fallback,
                extension,
            });
        }
    }
    Ok(figures)
}

/// Rows/s of `calls` calls of `keys` rows each through `backend`, on
/// emptied tables and one connection (as a server's flush would use).
async fn measure(
    cluster: &Cluster,
    backend: Backend,
    keys: usize,
    fresh: bool,
    calls: usize,
) -> Result<f64> {
    let sql = connect(cluster).await?;
    if backend == Backend::Sql {
        sql.batch_execute(include_str!("../queries/drop_extension.sql"))
            .await?;
    }
    let store = Store::open(cluster.config(count_service::db::cluster::DATABASE), 1).await?;
    if store.backend() != backend {
        return Err(Error::Check(format!(
            "bench wanted the {} backend, the database runs {}",
            backend.name(),
            store.backend().name()
        )));
    }
    sql.batch_execute(include_str!("../queries/reset.sql"))
        .await?;
    // The repeated case sends the endpoints once before timing.
    let mut sent = 0;
    if !fresh {
        store.add_batch(None, &batch(keys, 0)).await?;
        sent += keys as i64;
    }
    let mut elapsed = Duration::ZERO;
    for call in 0..calls {
        let batch = batch(keys, if fresh { call + 1 } else { 0 });
        let start = Instant::now();
        store.add_batch(None, &batch).await?;
        elapsed += start.elapsed();
        sent += batch.requests;
    }
    let stored: i64 = sql
        .query_one(include_str!("../queries/raw_rows.sql"), &[])
        .await?
        .get(1);
    if stored != sent {
        return Err(Error::Check(format!(
            "bench self-check failed: sent {sent} requests, the database holds {stored}"
        )));
    }
    Ok((keys * calls) as f64 / elapsed.as_secs_f64().max(f64::EPSILON))
}

/// `keys` rows with count 1, one per endpoint of generation `generation`.
fn batch(keys: usize, generation: usize) -> FlushBatch {
    let second = DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default();
    FlushBatch::of_endpoints(
        vec!["GET"; keys],
        (0..keys)
            .map(|k| format!("/bench/{generation}/{k}"))
            .collect(),
        vec![second; keys],
        vec![1; keys],
    )
}

/// The SQL API table.
pub(crate) fn render(figures: &[AddBatchFigure]) -> String {
    let mut out = String::from(
        "scenario                              fallback rows/s  extension rows/s  extension/fallback\n",
    );
    for f in figures {
        let name = format!(
            "add_batch, {} keys/call, {}",
            f.keys,
            if f.fresh { "fresh" } else { "repeated" }
        );
        let (extension, ratio) = match f.extension {
            Some(e) => (format!("{e:.0}"), format!("{:.2}x", e / f.fallback)),
            None => ("n/a".to_owned(), "n/a".to_owned()),
        };
        out.push_str(&format!(
            "{name:<38}{:>15.0}  {extension:>16}  {ratio:>18}\n",
            f.fallback
        ));
    }
    out
}
