//! `count export`: the totals of any `count totals` query, from a running
//! server, as CSV or JSON lines (the HTTP API's forms, [`crate::export`]),
//! for a spreadsheet, a billing job or another database.

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};

use super::totals::{Group, TotalsArgs, method_name, request};
use crate::db::store::TotalRow;
use crate::error::{Error, Result};
use crate::export;

/// `count export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The query, as `count totals` takes it.
    #[command(flatten)]
    pub query: TotalsArgs,
    /// CSV with a header row, or one JSON object per line.
    #[arg(long, env = "COUNT_EXPORT_FORMAT", value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short, env = "COUNT_EXPORT_OUTPUT")]
    pub output: Option<PathBuf>,
}

/// What `count export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// `bucket,method,path,total,live,tenant,status_code,status_class`
    /// (RFC 4180).
    Csv,
    /// `{"bucket", "method", "path", "tenant", "status_code",
    /// "status_class", "total", "live"}` per line.
    Jsonl,
}

/// Writes the totals `args` ask for.
pub(super) async fn export(args: &ExportArgs) -> Result<()> {
    let request = request(&args.query, Utc::now())?;
    let mut client = args.query.server.connect().await?;
    let totals = client.get_totals(request).await?.into_inner().totals;
    let by = |group: Group| args.query.group.contains(&group);
    let (by_endpoint, by_tenant, by_status) =
        (by(Group::Endpoint), by(Group::Tenant), by(Group::Status));
    let by_class = by_status || by(Group::StatusClass);
    let rows = totals.into_iter().map(|total| TotalRow {
        bucket: total
            .bucket
            .and_then(|b| DateTime::from_timestamp(b.seconds, 0))
            .unwrap_or_default(),
        method: by_endpoint.then(|| method_name(total.method).to_owned()),
        path: by_endpoint.then_some(total.path),
        tenant: by_tenant.then_some(total.tenant),
        status_code: total.status_code.and_then(|code| i32::try_from(code).ok()),
        status_class: by_class.then_some(total.status_class),
        total: total.total,
        live: total.live,
    });
    let (mut out, name): (Box<dyn Write>, String) = match &args.output {
        Some(path) => (
            Box::new(
                std::fs::File::create(path)
                    .map_err(Error::io(format!("creating {}", path.display())))?,
            ),
            path.display().to_string(),
        ),
        None => (
            Box::new(std::io::stdout().lock()),
            "standard output".to_owned(),
        ),
    };
    let mut out = std::io::BufWriter::new(&mut out);
    let mut write = |text: &str| {
        out.write_all(text.as_bytes())
            .map_err(Error::io(format!("writing {name}")))
    };
    if args.format == ExportFormat::Csv {
        write(export::CSV_HEADER)?;
    }
    for row in rows {
        match args.format {
            ExportFormat::Csv => write(&export::csv(&row))?,
            ExportFormat::Jsonl => write(&format!("{}\n", export::json(&row)))?,
        }
    }
    out.flush().map_err(Error::io(format!("writing {name}")))
}
