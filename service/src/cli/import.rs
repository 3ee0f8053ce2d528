//! `count import FILE|-`: counts from a CSV file (a header row naming
//! `method,path,timestamp` and optionally `count`, `tenant`, `status_code`)
//! or JSON lines with the same members,
//! sent to a running server with `AddBatch` so that importing a file twice,
//! or again after an import was killed halfway, counts every row once.
//!
//! How: the producers are named after the file's content (its SHA-256),
//! one per stream, and batch `i` of a stream is sequence `i + 1`, sent in
//! order. A second run sends the same batches under the same sequences:
//! those applied before are duplicates, the rest count. (The batch size and
//! stream count decide which rows a sequence holds, so they are part of the
//! producers' names: re-run with the same `--batch-rows` and `--streams`.) The whole file is
//! read and checked once before anything is sent, so that a row a second
//! run would parse differently (after a fix) cannot leave half a file
//! counted under another name.

use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::DateTime;
use clap::{Args, ValueEnum};
use count_proto::v1::{AddBatchRequest, AddRequest, Method};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tonic_types::StatusExt;

use super::positive;
use super::remote::{Client, ServerArgs};
use crate::defaults;
use crate::error::{Error, Result};
use crate::query;

/// `count import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file, or `-` for standard input.
    pub file: PathBuf,
    /// The file's format [default: jsonl for .jsonl and .ndjson files, else csv].
    #[arg(long, env = "COUNT_IMPORT_FORMAT", value_enum)]
    pub format: Option<ImportFormat>,
    /// Rows per batch: at most the server's --max-batch-entries.
    #[arg(long, env = "COUNT_IMPORT_BATCH_ROWS", default_value_t = defaults::MAX_BATCH_ENTRIES, value_parser = positive)]
    pub batch_rows: usize,
    /// Batches in flight at once, each stream in order of its own.
    #[arg(long, env = "COUNT_IMPORT_STREAMS", default_value_t = 4, value_parser = positive)]
    pub streams: usize,
    /// The server.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// What `count import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// A header row, then one row per count (RFC 4180).
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// One row of the file.
struct Row {
    /// The file's line the row starts on, for messages.
    line: u64,
    entry: AddRequest,
}

/// Imports the file `args` name and prints a summary.
pub(super) async fn import(args: &ImportArgs) -> Result<()> {
    let started = Instant::now();
    // Standard input is read once into a file of its own: the import reads
    // its content twice (to name it, then to send it).
    let spooled;
    let path: &Path = if args.file.as_os_str() == "-" {
        spooled = spool_stdin()?;
        spooled.path()
    } else {
        &args.file
    };
    let format = args
        .format
        .unwrap_or_else(|| match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "ndjson") => ImportFormat::Jsonl,
            _ => ImportFormat::Csv,
        });
    // First pass: the content's name, and every row checked.
    let mut hasher = Sha256::new();
    let mut rows = 0u64;
    for row in read_rows(open(path)?, format, Some(&mut hasher))? {
        row?;
        rows += 1;
    }
    let name = hasher
        .finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let client = args.server.connect().await?;
    let progress = Progress::new(rows);
    // Second pass: batches dealt round-robin to the streams.
    let mut senders = Vec::new();
    let mut streams = Vec::new();
    for stream in 0..args.streams {
        let (sender, receiver) = mpsc::channel::<Vec<Row>>(2);
        senders.push(sender);
        // The batch size and stream count shape which rows each sequence
        // holds: a second run must use the same, and the name says so.
        let producer = format!(
            "import-{name}-{}x{}-{stream}",
            args.batch_rows, args.streams
        );
        streams.push(tokio::spawn(send_stream(
            client.clone(),
            producer,
            receiver,
            progress.clone(),
        )));
    }
    let mut batch = Vec::with_capacity(args.batch_rows);
    let mut batches = 0usize;
    let mut requests = 0i64;
    for row in read_rows(open(path)?, format, None)? {
        let row = row?;
        requests += row.entry.count.max(1);
        batch.push(row);
        if batch.len() == args.batch_rows {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(args.batch_rows));
            deal(&senders, batches, full).await?;
            batches += 1;
        }
    }
    if !batch.is_empty() {
        deal(&senders, batches, batch).await?;
        batches += 1;
    }
    drop(senders);
    let mut sent = Sent::default();
    for stream in streams {
        let stream = stream
            .await
            .map_err(|e| Error::Task(format!("an import stream failed: {e}")))??;
        sent.applied += stream.applied;
        sent.duplicates += stream.duplicates;
        sent.refused.extend(stream.refused);
    }
    progress.finish();
    sent.refused.sort_by_key(|r| r.0);
    for (line, reason) in sent.refused.iter().take(20) {
        eprintln!("line {line}: {reason}");
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "imported {rows} rows ({requests} requests) from {} in {batches} batches: {} applied, {} \
         already imported; {} rows refused; {seconds:.1} s ({:.0} rows/s)",
        if args.file.as_os_str() == "-" {
            "standard input".to_owned()
        } else {
            args.file.display().to_string()
        },
        sent.applied,
        sent.duplicates,
        sent.refused.len(),
        rows as f64 / seconds.max(1e-9),
    );
    if sent.refused.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(
            "FILE",
            format!("{} rows were refused (listed above)", sent.refused.len()),
        ))
    }
}

/// Sends batch number `index` to its stream.
async fn deal(senders: &[mpsc::Sender<Vec<Row>>], index: usize, batch: Vec<Row>) -> Result<()> {
    senders[index % senders.len()]
        .send(batch)
        .await
        .map_err(|_| Error::Task("an import stream stopped".to_owned()))
}

/// What the streams did.
#[derive(Debug, Default)]
struct Sent {
    applied: usize,
    duplicates: usize,
    /// (line, reason) of each refused row.
    refused: Vec<(u64, String)>,
}

/// Sends one stream's batches in order, as sequences 1, 2, …: a batch is
/// applied only above its producer's last sequence, so order is what makes
/// a second run skip exactly what the first applied. Refused rows are
/// dropped from their batch, which is sent again under its sequence.
async fn send_stream(
    mut client: Client,
    producer: String,
    mut batches: mpsc::Receiver<Vec<Row>>,
    progress: Progress,
) -> Result<Sent> {
    let mut sent = Sent::default();
    let mut sequence = 0u64;
    while let Some(mut rows) = batches.recv().await {
        sequence += 1;
        let size = rows.len() as u64;
        loop {
            let request = AddBatchRequest {
                producer_id: producer.clone(),
                sequence,
                entries: rows.iter().map(|r| r.entry.clone()).collect(),
            };
            match client.add_batch(request).await {
                Ok(response) => {
                    if response.into_inner().duplicate {
                        sent.duplicates += 1;
                    } else {
                        sent.applied += 1;
                    }
                    break;
                }
                Err(status) => {
                    let refused = refused_entries(&status);
                    if refused.is_empty() {
                        return Err(status.into());
                    }
                    let mut index = 0;
                    rows.retain(|row| {
                        let keep = !refused.iter().any(|(i, _)| *i == index);
                        if !keep {
                            let reason = refused
                                .iter()
                                .find(|(i, _)| *i == index)
                                .map(|r| r.1.clone());
                            sent.refused.push((row.line, reason.unwrap_or_default()));
                        }
                        index += 1;
                        keep
                    });
                    if rows.is_empty() {
                        break;
                    }
                }
            }
        }
        progress.add(size);
    }
    Ok(sent)
}

/// The entries an `AddBatch` refusal names (`entries[3].path`), with why.
fn refused_entries(status: &tonic::Status) -> Vec<(usize, String)> {
    let Some(bad_request) = status.get_details_bad_request() else {
        return Vec::new();
    };
    bad_request
        .field_violations
        .iter()
        .filter_map(|v| {
            let index = v
                .field
                .strip_prefix("entries[")?
                .split(']')
                .next()?
                .parse()
                .ok()?;
            Some((index, format!("{}: {}", v.field, v.description)))
        })
        .collect()
}

fn open(path: &Path) -> Result<BufReader<std::fs::File>> {
    std::fs::File::open(path)
        .map(|file| BufReader::with_capacity(1 << 20, file))
        .map_err(Error::io(format!("opening {}", path.display())))
}

/// A file holding standard input, removed when dropped.
struct Spooled(PathBuf);

impl Spooled {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn spool_stdin() -> Result<Spooled> {
    let path = std::env::temp_dir().join(format!("count-import-{:016x}", fastrand::u64(..)));
    let spooled = Spooled(path);
    let mut file = std::fs::File::create(spooled.path())
        .map_err(Error::io(format!("creating {}", spooled.path().display())))?;
    std::io::copy(&mut std::io::stdin().lock(), &mut file)
        .map_err(Error::io("reading standard input"))?;
    Ok(spooled)
}

/// A reader that feeds what it reads to a hasher too.
struct Hashing<'a, R> {
    inner: R,
    hasher: Option<&'a mut Sha256>,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// The rows of `reader` in `format`; the first error names its line.
fn read_rows<'a, R: BufRead + 'a>(
    reader: R,
    format: ImportFormat,
    hasher: Option<&'a mut Sha256>,
) -> Result<Box<dyn Iterator<Item = Result<Row>> + 'a>> {
    let reader = Hashing {
        inner: reader,
        hasher,
    };
    match format {
        ImportFormat::Csv => csv_rows(reader),
        ImportFormat::Jsonl => Ok(Box::new(json_rows(BufReader::new(reader)))),
    }
}

/// The columns (CSV) and members (JSON lines) a row may have; `method`,
/// `path` and `timestamp` are required.
const COLUMNS: [&str; 6] = crate::entry::TEXT_FIELDS;

/// The columns of a CSV file, by position.
struct Columns {
    method: usize,
    path: usize,
    tenant: Option<usize>,
    status_code: Option<usize>,
    timestamp: usize,
    count: Option<usize>,
}

/// One row's fields as read, before they are checked.
struct Fields<'a> {
    method: &'a str,
    path: &'a str,
    tenant: &'a str,
    /// Empty or absent: unknown.
    status_code: Option<&'a str>,
    timestamp: &'a str,
    count: Option<&'a str>,
}

fn csv_rows<'a, R: Read + 'a>(reader: R) -> Result<Box<dyn Iterator<Item = Result<Row>> + 'a>> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(reader);
    let header = csv
        .headers()
        .map_err(|e| Error::invalid("line 1", format!("not a CSV header row: {e}")))?
        .clone();
    let position = |name: &str| header.iter().position(|h| h.trim() == name);
    for name in &header {
        if !COLUMNS.contains(&name.trim()) {
            return Err(Error::invalid(
                "line 1",
                format!("unknown column '{name}' ({})", COLUMNS.join(", ")),
            ));
        }
    }
    let required = |name: &str| {
        position(name).ok_or_else(|| Error::invalid("line 1", format!("no '{name}' column")))
    };
    let columns = Columns {
        method: required("method")?,
        path: required("path")?,
        tenant: position("tenant"),
        status_code: position("status_code"),
        timestamp: required("timestamp")?,
        count: position("count"),
    };
    Ok(Box::new(csv.into_records().map(move |record| {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            Error::invalid(format!("line {line}"), e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(i).unwrap_or("");
        row(
            line,
            Fields {
                method: field(columns.method),
                path: field(columns.path),
                tenant: columns.tenant.map_or("", field),
                status_code: columns.status_code.map(field),
                timestamp: field(columns.timestamp),
                count: columns.count.map(field),
            },
        )
    })))
}

fn json_rows<'a, R: BufRead + 'a>(reader: R) -> impl Iterator<Item = Result<Row>> + 'a {
    reader
        .lines()
        .enumerate()
        .filter(|(_, line)| line.as_ref().map_or(true, |l| !l.trim().is_empty()))
        .map(|(number, line)| {
            let line_number = number as u64 + 1;
            let at = || format!("line {line_number}");
            let line = line.map_err(|e| Error::invalid(at(), e.to_string()))?;
            let value: serde_json::Value = serde_json::from_str(&line)
                .map_err(|e| Error::invalid(at(), format!("not JSON: {e}")))?;
            let Some(object) = value.as_object() else {
                return Err(Error::invalid(at(), "must be a JSON object"));
            };
            for name in object.keys() {
                if !COLUMNS.contains(&name.as_str()) {
                    return Err(Error::invalid(at(), format!("unknown member '{name}'")));
                }
            }
            let text = |name: &str| object.get(name).and_then(|v| v.as_str()).unwrap_or("");
            let number = |name: &str| match object.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(value) => value
                    .as_i64()
                    .map(|n| Some(n.to_string()))
                    .ok_or_else(|| Error::invalid(at(), format!("{name} must be a whole number"))),
            };
            let count = number("count")?;
            let status_code = number("status_code")?;
            row(
                line_number,
                Fields {
                    method: text("method"),
                    path: text("path"),
                    tenant: text("tenant"),
                    status_code: status_code.as_deref(),
                    timestamp: text("timestamp"),
                    count: count.as_deref(),
                },
            )
        })
}

/// One row's entry; what the server checks (an empty path, a time too far
/// ahead) is left to it, which names the entry.
fn row(line: u64, fields: Fields<'_>) -> Result<Row> {
    let Fields {
        method,
        path,
        tenant,
        status_code,
        timestamp,
        count,
    } = fields;
    let at = || format!("line {line}");
    // As `count add` reads it: any case, OTHER for a method outside the list.
    let method =
        Method::from_str_name(&method.trim().to_ascii_uppercase()).unwrap_or(Method::Unspecified);
    let time = DateTime::parse_from_rfc3339(timestamp.trim()).map_err(|e| {
        Error::invalid(
            at(),
            format!("timestamp '{timestamp}' is not an RFC 3339 time: {e}"),
        )
    })?;
    let count = match count.map(str::trim) {
        None | Some("") => 1,
        Some(text) => text
            .parse()
            .map_err(|_| Error::invalid(at(), format!("count '{text}' is not a whole number")))?,
    };
    let status_code = match status_code.map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(text.parse().map_err(|_| {
            Error::invalid(
                at(),
                format!("status_code '{text}' is not a whole number from 0"),
            )
        })?),
    };
    Ok(Row {
        line,
        entry: AddRequest {
            method: method as i32,
            path: path.to_owned(),
            request_timestamp: Some(query::timestamp(time.to_utc())),
            count,
            tenant: tenant.to_owned(),
            status_code,
        },
    })
}

/// Rows sent so far, as a bar on a terminal; nothing otherwise.
#[derive(Clone)]
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(rows: u64) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::new(rows);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} rows, {per_sec}, {eta} left",
        ) {
            bar.set_style(style);
        }
        Progress(Some(bar))
    }

    fn add(&self, rows: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(rows);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
