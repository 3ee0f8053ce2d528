//! `count import` of a CSV file into `count serve`, end to end: rows per
//! second parsed, validated and sent (until the server acknowledged every
//! batch), and the importer's peak memory, which must not grow with the
//! file.

use std::io::Write;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::process::{CpuMeter, RssSampler, reaped_children_seconds};
use crate::{Programs, ServerProcess, connect};
use count_service::db::cluster::Cluster;

/// Endpoints the file's rows are spread over.
const ENDPOINTS: usize = 1_000;

/// One import, timed.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportFigure {
    /// Rows in the file.
    pub rows: usize,
    /// The file's size, MB.
    pub file_mb: f64,
    /// Seconds from start to exit.
    pub seconds: f64,
    /// The importer's peak resident memory, MB.
    pub peak_rss_mb: u64,
    /// CPU seconds of the importer, the server and PostgreSQL: where the
    /// time went.
    pub cpu_seconds: (f64, f64, f64),
}

impl ImportFigure {
    /// Rows per second (target: at least 1M).
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.seconds
    }

    /// The import's table line.
    pub(crate) fn render(&self) -> String {
        let (importer, server, postgres) = self.cpu_seconds;
        format!(
            "count import (CSV, {} rows, {:.0} MB, to count serve)   {:.0} rows/s (target >= 1,000,000)   \
             importer peak RSS {} MB\n\
             CPU seconds: importer {importer:.1} ({:.0} rows per second of its CPU), server {server:.1}, \
             PostgreSQL {postgres:.1}\n",
            self.rows,
            self.file_mb,
            self.rate(),
            self.peak_rss_mb,
            self.rows as f64 / importer.max(0.01),
        )
    }
}

/// Writes a CSV file of `rows` rows over the last day and imports it with
/// `count import` into a fresh `count serve`; checks that every count
/// arrived once.
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
    let server = ServerProcess::start(programs, cluster, &["--rollup-every", "0"]).await?;
    let cpu = CpuMeter::start(server.pid(), cluster);
    // The importer's CPU is read from this process once it has reaped it.
    let reaped_before = reaped_children_seconds();
    let start = Instant::now();
    let mut child = tokio::process::Command::new(&programs.count)
        .arg("import")
        .arg(&file)
        .args(["--server", &format!("http://{}", server.address)])
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
    let importer_cpu = reaped_children_seconds() - reaped_before;
    let (server_cpu, postgres_cpu) = cpu.read();
    let peak_kb = rss.stop().await;
    if !status.success() {
        return Err(Error::Check(format!("count import failed: {status}")));
    }
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
        seconds,
        peak_rss_mb: peak_kb / 1024,
        cpu_seconds: (importer_cpu, server_cpu, postgres_cpu),
    })
}

/// The file: `method,path,timestamp,count` rows over `ENDPOINTS` paths and
/// the last day, each second's rows spread over the endpoints; returns the
/// sum of the counts.
fn write_file(file: &std::path::Path, rows: usize) -> Result<i64> {
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
