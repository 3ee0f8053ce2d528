//! `count import` of a CSV file: rows per second parsed, validated and
//! sent, to a server that acknowledges each batch at once (the discard
//! server: what the importer itself can do) and end to end into `count
//! serve` (until it committed every batch), and the importer's peak memory,
//! which must not grow with the file.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::process::{CpuMeter, RssSampler, reaped_children_seconds};
use crate::{Programs, ServerProcess, connect};
use count_service::db::cluster::Cluster;

/// Endpoints the file's rows are spread over.
const ENDPOINTS: usize = 1_000;

/// One file imported twice, timed.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportFigure {
    /// Rows in the file.
    pub rows: usize,
    /// The file's size, MB.
    pub file_mb: f64,
    /// Seconds from start to exit, into the discard server.
    pub sent_seconds: f64,
    /// Seconds from start to exit, into `count serve`.
    pub seconds: f64,
    /// The importer's peak resident memory, MB (the larger of the two).
    pub peak_rss_mb: u64,
    /// CPU seconds of the importer, the server and PostgreSQL into `count
    /// serve`: where the time went.
    pub cpu_seconds: (f64, f64, f64),
}

impl ImportFigure {
    /// Rows per second parsed and sent (target: at least 1M).
    pub fn sent_rate(&self) -> f64 {
        self.rows as f64 / self.sent_seconds
    }

    /// Rows per second committed by `count serve`.
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.seconds
    }

    /// The import's table lines.
    pub(crate) fn render(&self) -> String {
        let (importer, server, postgres) = self.cpu_seconds;
        format!(
            "count import (CSV, {} rows, {:.0} MB)   parsed and sent {:.0} rows/s (target >= 1,000,000; to a server \
             that acknowledges at once)   end to end {:.0} rows/s (into count serve)   importer peak RSS {} MB\n\
             CPU seconds end to end: importer {importer:.1} ({:.0} rows per second of its CPU), server {server:.1}, \
             PostgreSQL {postgres:.1}\n",
            self.rows,
            self.file_mb,
            self.sent_rate(),
            self.rate(),
            self.peak_rss_mb,
            self.rows as f64 / importer.max(0.01),
        )
    }
}

/// One run of `count import FILE` into `server`, to its exit: seconds, the
/// importer's CPU seconds and its peak RSS in kB.
async fn run_import(
    programs: &Programs,
    file: &Path,
    server: SocketAddr,
) -> Result<(f64, f64, u64)> {
    // The importer's CPU is read from this process once it has reaped it.
    let reaped_before = reaped_children_seconds();
    let start = Instant::now();
    let mut child = tokio::process::Command::new(&programs.count)
        .arg("import")
        .arg(file)
        .args(["--server", &format!("http://{server}")])
        .env_remove("COUNT_CONFIG")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(Error::io("starting count import"))?;
    let rss = RssSampler::start(child.id().unwrap_or_default());
    let status = child
        .wait()
        .await
        .map_err(Error::io("running count import"))?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu = reaped_children_seconds() - reaped_before;
    let peak_kb = rss.stop().await;
    if !status.success() {
        return Err(Error::Check(format!("count import failed: {status}")));
    }
    Ok((seconds, cpu, peak_kb))
}

/// Writes a CSV file of `rows` rows over the last day and imports it with
/// `count import` into the discard server, then into a fresh `count serve`;
/// checks that every count arrived once.
pub(crate) async fn import(
    cluster: &Cluster,
    programs: &Programs,
    rows: usize,
) -> Result<ImportFigure> {
    let sql = connect(cluster).await?;
    sql.batch_execute(include_str!("../queries/reset_counts.sql"))
        .await?;
    // Removed when dropped, on every path out of here.
    let dir = tempfile::tempdir().map_err(Error::io("creating the import folder"))?;
    let file = dir.path().join("counts.csv");
    let expected = tokio::task::spawn_blocking({
        let file = file.clone();
        move || write_file(&file, rows)
    })
    .await
    .map_err(|e| Error::Check(format!("writing the import file: {e}")))??;
    let file_mb = std::fs::metadata(&file)
        .map_err(Error::io("reading the import file's size"))?
        .len() as f64
        / 1e6;
    let discard = ServerProcess::discard(programs).await?;
    let (sent_seconds, _, sent_peak_kb) = run_import(programs, &file, discard.address).await?;
    drop(discard);
    let server = ServerProcess::start(programs, cluster, &["--rollup-every", "0"]).await?;
    let cpu = CpuMeter::start(server.pid(), cluster);
    let (seconds, importer_cpu, peak_kb) = run_import(programs, &file, server.address).await?;
    let (server_cpu, postgres_cpu) = cpu.read();
    let stored = sql
        .query_one(include_str!("../queries/raw_rows.sql"), &[])
        .await?;
    let requests: i64 = stored.get(1);
    if requests != expected {
        return Err(Error::Check(format!(
            "bench self-check failed: import of {rows} rows: {requests} requests stored, {expected} in the file"
        )));
    }
    Ok(ImportFigure {
        rows,
        file_mb,
        sent_seconds,
        seconds,
        peak_rss_mb: peak_kb.max(sent_peak_kb) / 1024,
        cpu_seconds: (importer_cpu, server_cpu, postgres_cpu),
    })
}

/// The file: `method,path,timestamp,count` rows over `ENDPOINTS` paths and
/// the last day, each second's rows spread over the endpoints; returns the
/// sum of the counts.
fn write_file(file: &Path, rows: usize) -> Result<i64> {
    let out = std::fs::File::create(file).map_err(Error::io("creating the import file"))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
    let write = |e| Error::io("writing the import file")(e);
    writeln!(out, "method,path,timestamp,count").map_err(write)?;
    let now = chrono::Utc::now().timestamp() - 60;
    let mut sum = 0;
    for i in 0..rows {
        let at = chrono::DateTime::from_timestamp(now - (i % 86_400) as i64, 0).unwrap_or_default();
        let count = 1 + (i % 3) as i64;
        sum += count;
        writeln!(
            out,
            "{},/bench/{},{},{count}",
            if i % 4 == 0 { "POST" } else { "GET" },
            (i * 7) % ENDPOINTS,
            at.format("%Y-%m-%dT%H:%M:%SZ")
        )
        .map_err(write)?;
    }
    out.flush().map_err(write)?;
    Ok(sum)
}
