//! `count totals`: rolled-up totals from a running server, as a table.

use chrono::NaiveDate;
use clap::{Args, ValueEnum};
use count_proto::v1::{GetPeriodTotalsRequest, ListDailyTotalsRequest, Method, MethodCount};
use tonic::Code;

use super::remote::ServerArgs;

use crate::dates;
use crate::error::{Error, Result};

/// `count totals`.
#[derive(Debug, Args)]
pub struct TotalsArgs {
    /// The server.
    #[command(flatten)]
    pub server: ServerArgs,
    /// First day (YYYY-MM-DD).
    #[arg(long, env = "COUNT_TOTALS_FROM")]
    pub from: NaiveDate,
    /// Last day, inclusive (YYYY-MM-DD).
    #[arg(long, env = "COUNT_TOTALS_TO")]
    pub to: NaiveDate,
    /// One row per method and path for each day, month or year; months and
    /// years are those that contain --from to --to, whole.
    #[arg(long, env = "COUNT_TOTALS_BY", value_enum, default_value_t = Granularity::Day)]
    pub by: Granularity,
}

/// The period of `count totals` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Granularity {
    /// Daily totals.
    Day,
    /// Monthly totals.
    Month,
    /// Yearly totals.
    Year,
}

/// Prints the totals `args` ask for, or says there are none.
pub(super) async fn print(args: &TotalsArgs) -> Result<()> {
    let rows = totals(args).await?;
    if rows.is_empty() {
        eprintln!("no rolled-up totals from {} to {}", args.from, args.to);
    } else {
        print!("{}", render_table(&rows));
    }
    Ok(())
}

/// One line of `count totals`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    /// The day, month or year, as printed.
    period: String,
    /// The method's name.
    method: String,
    path: String,
    total: i64,
}

async fn totals(args: &TotalsArgs) -> Result<Vec<Row>> {
    if args.to < args.from {
        return Err(Error::invalid(
            "--to",
            format!("{} is before --from {}", args.to, args.from),
        ));
    }
    let mut client = args.server.connect().await?;
    let mut rows = Vec::new();
    if args.by == Granularity::Day {
        let request = ListDailyTotalsRequest {
            start_date: Some(dates::to_proto(args.from)),
            end_date: Some(dates::to_proto(args.to)),
        };
        let counts = not_found_is_empty(client.list_daily_totals(request).await)?
            .map(|r| r.into_inner().method_counts)
            .unwrap_or_default();
        rows.extend(counts.into_iter().map(|c| {
            let day = c
                .date
                .map(|d| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day));
            row(day.unwrap_or_default(), c)
        }));
        return Ok(rows);
    }
    let periods = match args.by {
        Granularity::Year => dates::years(args.from, args.to),
        _ => dates::months(args.from, args.to),
    };
    for period in periods {
        let label = match args.by {
            Granularity::Year => format!("{:04}", period.year),
            _ => format!("{:04}-{:02}", period.year, period.month),
        };
        let request = GetPeriodTotalsRequest {
            period: Some(period),
        };
        if let Some(response) = not_found_is_empty(client.get_period_totals(request).await)? {
            rows.extend(
                response
                    .into_inner()
                    .method_counts
                    .into_iter()
                    .map(|c| row(label.clone(), c)),
            );
        }
    }
    Ok(rows)
}

fn row(period: String, count: MethodCount) -> Row {
    let method = Method::try_from(count.method).map_or("?", |m| m.as_str_name());
    Row {
        period,
        method: method.to_owned(),
        path: count.path,
        total: count.count,
    }
}

fn not_found_is_empty<T>(result: Result<T, tonic::Status>) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(status) if status.code() == Code::NotFound => Ok(None),
        Err(status) => Err(status.into()),
    }
}

/// Rows as an aligned text table with a header.
fn render_table(rows: &[Row]) -> String {
    let header = ("PERIOD", "METHOD", "PATH", "TOTAL");
    let width =
        |f: &dyn Fn(&Row) -> usize, min: usize| rows.iter().map(f).max().unwrap_or(0).max(min);
    let (w0, w1, w2) = (
        width(&|r| r.period.len(), header.0.len()),
        width(&|r| r.method.len(), header.1.len()),
        width(&|r| r.path.len(), header.2.len()),
    );
    let mut out = format!(
        "{:<w0$}  {:<w1$}  {:<w2$}  {}\n",
        header.0, header.1, header.2, header.3
    );
    for Row {
        period,
        method,
        path,
        total,
    } in rows
    {
        out.push_str(&format!(
            "{period:<w0$}  {method:<w1$}  {path:<w2$}  {total}\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_align() {
        let row = |method: &str, path: &str, total| Row {
            period: "2026-01-01".to_owned(),
            method: method.to_owned(),
            path: path.to_owned(),
            total,
        };
        let rows = vec![row("GET", "/users/{id}", 12), row("GRPC", "/a", 3)];
        assert_eq!(
            render_table(&rows),
            "PERIOD      METHOD  PATH         TOTAL\n\
             2026-01-01  GET     /users/{id}  12\n\
             2026-01-01  GRPC    /a           3\n"
        );
    }
}
