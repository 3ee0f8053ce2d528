//! `count totals`: live totals from a running server (`GetTotals`), as a
//! table.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use clap::{ArgGroup, Args, ValueEnum};
use count_proto::v1::{Dimension, GetTotalsRequest, Method, Total};

use super::remote::ServerArgs;

use crate::error::{Error, Result};
use crate::query;

/// `count totals`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("range").required(true).args(["from", "last"])))]
pub struct TotalsArgs {
    /// The server.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Start: a day (YYYY-MM-DD, its midnight in --tz) or a time (RFC 3339,
    /// a whole minute).
    #[arg(long, env = "COUNT_TOTALS_FROM", requires = "to", value_parser = moment)]
    pub from: Option<Moment>,
    /// End: a day, inclusive (YYYY-MM-DD, in --tz), or a time, excluded
    /// (RFC 3339, a whole minute).
    #[arg(long, env = "COUNT_TOTALS_TO", requires = "from", value_parser = moment)]
    pub to: Option<Moment>,
    /// Instead of --from and --to: this long up to now, in whole minutes
    /// (`15m`, `24h`, `30days`); the current minute is included.
    #[arg(long, env = "COUNT_TOTALS_LAST", conflicts_with_all = ["from", "to"])]
    pub last: Option<humantime::Duration>,
    /// One row per bucket of this size (weeks start on Monday); `total`
    /// sums the whole range.
    #[arg(long, env = "COUNT_TOTALS_BY", value_enum, default_value_t = Granularity::Day)]
    pub by: Granularity,
    /// The IANA time zone of days, weeks, months, years and of the printed
    /// times.
    #[arg(long, env = "COUNT_TOTALS_TZ", default_value = "UTC")]
    pub tz: Tz,
    /// Only this method (GET, POST, GRPC, OTHER, ...); repeat for several.
    #[arg(long = "method", env = "COUNT_TOTALS_METHOD", value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Only this path, exactly.
    #[arg(long, env = "COUNT_TOTALS_PATH")]
    pub path: Option<String>,
    /// Only paths that start with this.
    #[arg(long, env = "COUNT_TOTALS_PATH_PREFIX")]
    pub path_prefix: Option<String>,
    /// Only this tenant ("" for the requests counted without one); repeat
    /// for several.
    #[arg(long = "tenant", env = "COUNT_TOTALS_TENANT")]
    pub tenants: Vec<String>,
    /// Only this status: a code (404; for GRPC a gRPC code, 0 is OK), a
    /// class (1xx to 5xx, grpc_ok, grpc_error) or unknown; repeat or
    /// separate with commas for several.
    #[arg(long = "status", env = "COUNT_TOTALS_STATUS", value_delimiter = ',')]
    pub statuses: Vec<String>,
    /// Only the N groups with the most requests over the range.
    #[arg(long, env = "COUNT_TOTALS_TOP", value_parser = clap::value_parser!(u32).range(1..))]
    pub top: Option<u32>,
    /// What a row is per, besides its bucket: any of endpoint, tenant,
    /// status and status-class, comma-separated, or none for one row per
    /// bucket.
    #[arg(
        long,
        env = "COUNT_TOTALS_GROUP",
        value_enum,
        value_delimiter = ',',
        default_value = "endpoint"
    )]
    pub group: Vec<Group>,
}

/// A `--from` or `--to`: a day in `--tz`, or a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// A calendar day (YYYY-MM-DD).
    Day(NaiveDate),
    /// An RFC 3339 time.
    Time(DateTime<Utc>),
}

impl std::fmt::Display for Moment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Moment::Day(day) => write!(f, "{day}"),
            Moment::Time(time) => write!(f, "{}", time.to_rfc3339()),
        }
    }
}

fn moment(text: &str) -> Result<Moment, String> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(Moment::Day(day));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| Moment::Time(t.with_timezone(&Utc)))
        .map_err(|e| format!("{text} is neither a day (YYYY-MM-DD) nor an RFC 3339 time: {e}"))
}

/// The buckets of `count totals` rows: `count.v1.Granularity`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Granularity {
    /// Per minute.
    Minute,
    /// Per hour.
    Hour,
    /// Per day.
    Day,
    /// Per week, from Monday.
    Week,
    /// Per month.
    Month,
    /// Per year.
    Year,
    /// One sum over the range.
    Total,
}

impl Granularity {
    fn wire(self) -> count_proto::v1::Granularity {
        use count_proto::v1::Granularity as G;
        match self {
            Granularity::Minute => G::Minute,
            Granularity::Hour => G::Hour,
            Granularity::Day => G::Day,
            Granularity::Week => G::Week,
            Granularity::Month => G::Month,
            Granularity::Year => G::Year,
            Granularity::Total => G::Total,
        }
    }

    /// How a bucket's start is printed.
    fn format(self) -> &'static str {
        match self {
            Granularity::Minute | Granularity::Hour => "%Y-%m-%d %H:%M",
            Granularity::Day | Granularity::Week => "%Y-%m-%d",
            Granularity::Month => "%Y-%m",
            Granularity::Year => "%Y",
            Granularity::Total => "%Y-%m-%d %H:%M",
        }
    }
}

/// What `count totals` rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Group {
    /// A row per method and path.
    Endpoint,
    /// A row per tenant.
    Tenant,
    /// A row per status code.
    Status,
    /// A row per status class.
    StatusClass,
    /// A row per bucket.
    None,
}

impl Group {
    fn wire(self) -> Option<Dimension> {
        match self {
            Group::Endpoint => Some(Dimension::Endpoint),
            Group::Tenant => Some(Dimension::Tenant),
            Group::Status => Some(Dimension::Status),
            Group::StatusClass => Some(Dimension::StatusClass),
            Group::None => None,
        }
    }
}

/// A table column: its header, and how a total fills it.
type Column = (&'static str, fn(&Total) -> String);

/// The columns a row has for `groups`.
fn group_columns(groups: &[Group]) -> Vec<Column> {
    let mut columns: Vec<Column> = Vec::new();
    if groups.contains(&Group::Endpoint) {
        columns.push(("METHOD", |t| method_name(t.method).to_owned()));
        columns.push(("PATH", |t| t.path.clone()));
    }
    if groups.contains(&Group::Tenant) {
        columns.push(("TENANT", |t| t.tenant.clone()));
    }
    if groups.contains(&Group::Status) {
        columns.push(("STATUS", |t| {
            t.status_code
                .map_or_else(|| "unknown".to_owned(), |code| code.to_string())
        }));
    } else if groups.contains(&Group::StatusClass) {
        columns.push(("STATUS", |t| t.status_class.clone()));
    }
    columns
}

/// A method's stored name: OTHER is the one method that reads back as
/// METHOD_UNSPECIFIED.
pub(super) fn method_name(number: i32) -> &'static str {
    match Method::try_from(number) {
        Ok(Method::Unspecified) => "OTHER",
        Ok(method) => method.as_str_name(),
        Err(_) => "?",
    }
}

/// Prints the totals `args` ask for, or says there are none.
pub(super) async fn print(args: &TotalsArgs) -> Result<()> {
    let request = request(args, Utc::now())?;
    let mut client = args.server.connect().await?;
    let totals = client.get_totals(request).await?.into_inner().totals;
    if totals.is_empty() {
        eprintln!("no requests counted in that range");
    } else {
        let columns = group_columns(&args.group);
        let rows: Vec<Row> = totals
            .iter()
            .map(|total| row(total, args.by, args.tz, &columns))
            .collect();
        let header: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
        print!("{}", render_table(&header, &rows));
    }
    Ok(())
}

/// The `GetTotals` request `args` ask for, at `now`.
pub(super) fn request(args: &TotalsArgs, now: DateTime<Utc>) -> Result<GetTotalsRequest> {
    let (start, end) = match (args.from, args.to, args.last) {
        (Some(from), Some(to), _) => {
            let (start, end) = (
                time(from, args.tz, "--from", false)?,
                time(to, args.tz, "--to", true)?,
            );
            let backwards = match (from, to) {
                (Moment::Day(from), Moment::Day(to)) => to < from,
                _ => end < start,
            };
            if backwards {
                return Err(Error::invalid(
                    "--to",
                    format!("{to} is before --from {from}"),
                ));
            }
            (start, end)
        }
        (_, _, Some(last)) => {
            let last =
                Duration::from_std(*last).map_err(|_| Error::invalid("--last", "is too long"))?;
            // The current minute, and whole minutes before it.
            let end = minute_floor(now) + Duration::minutes(1);
            (minute_floor(end - last), end)
        }
        _ => return Err(Error::invalid("--last", "or --from and --to must be given")),
    };
    let methods = args
        .methods
        .iter()
        .map(|name| {
            let method = match name.to_ascii_uppercase().as_str() {
                "OTHER" => Some(Method::Unspecified),
                "METHOD_UNSPECIFIED" => None,
                upper => Method::from_str_name(upper),
            };
            method
                .map(|m| m as i32)
                .ok_or_else(|| Error::invalid("--method", format!("unknown method {name}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(GetTotalsRequest {
        start_time: Some(query::timestamp(start)),
        end_time: Some(query::timestamp(end)),
        granularity: args.by.wire() as i32,
        time_zone: args.tz.name().to_owned(),
        methods,
        path: args.path.clone().unwrap_or_default(),
        path_prefix: args.path_prefix.clone().unwrap_or_default(),
        group_by: args
            .group
            .iter()
            .filter_map(|group| group.wire())
            .map(|dimension| dimension as i32)
            .collect(),
        top: args.top.unwrap_or(0),
        tenants: args.tenants.clone(),
        statuses: args
            .statuses
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
    })
}

/// A day's midnight in `tz` (the next day's for an inclusive end), or the
/// time given.
fn time(moment: Moment, tz: Tz, flag: &str, end: bool) -> Result<DateTime<Utc>> {
    let day = match moment {
        Moment::Time(time) => return Ok(time),
        Moment::Day(day) if end => day
            .succ_opt()
            .ok_or_else(|| Error::invalid(flag, "is the last representable day"))?,
        Moment::Day(day) => day,
    };
    tz.from_local_datetime(&day.and_time(NaiveTime::MIN))
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| Error::invalid(flag, format!("{day} has no midnight in {tz}")))
}

fn minute_floor(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(time.timestamp().div_euclid(60) * 60, 0).unwrap_or(time)
}

/// One line of `count totals`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    /// The bucket, as printed in the chosen zone.
    period: String,
    /// The group's columns (method, path, tenant, status: as grouped).
    group: Vec<String>,
    total: i64,
}

fn row(total: &Total, by: Granularity, tz: Tz, columns: &[Column]) -> Row {
    let bucket = total
        .bucket
        .and_then(|b| DateTime::from_timestamp(b.seconds, 0))
        .unwrap_or_default()
        .with_timezone(&tz);
    Row {
        period: bucket.format(by.format()).to_string(),
        group: columns.iter().map(|(_, cell)| cell(total)).collect(),
        total: total.total,
    }
}

/// Rows as an aligned text table with a header: PERIOD, the group's
/// columns, TOTAL.
fn render_table(group: &[&str], rows: &[Row]) -> String {
    let cells = |row: &Row| {
        std::iter::once(row.period.clone())
            .chain(row.group.iter().cloned())
            .collect::<Vec<_>>()
    };
    let header: Vec<String> = std::iter::once("PERIOD")
        .chain(group.iter().copied())
        .map(str::to_owned)
        .collect();
    let mut widths: Vec<usize> = header.iter().map(String::len).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(cells(row)) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: Vec<String>, last: String| {
        let mut line: String = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}  "))
            .collect();
        line.push_str(&last);
        line.push('\n');
        line
    };
    let mut out = line(header, "TOTAL".to_owned());
    for row in rows {
        out.push_str(&line(cells(row), row.total.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn table_columns_align() {
        let row = |group: &[&str], total| Row {
            period: "2026-01-01".to_owned(),
            group: group.iter().map(|c| c.to_string()).collect(),
            total,
        };
        let rows = vec![row(&["GET", "/users/{id}"], 12), row(&["GRPC", "/a"], 3)];
        assert_eq!(
            render_table(&["METHOD", "PATH"], &rows),
            "PERIOD      METHOD  PATH         TOTAL\n\
             2026-01-01  GET     /users/{id}  12\n\
             2026-01-01  GRPC    /a           3\n"
        );
        let rows = vec![row(&["acme", "503"], 7), row(&["", "unknown"], 1)];
        assert_eq!(
            render_table(&["TENANT", "STATUS"], &rows),
            "PERIOD      TENANT  STATUS   TOTAL\n\
             2026-01-01  acme    503      7\n\
             2026-01-01          unknown  1\n"
        );
    }

    #[test]
    fn tenants_statuses_and_groups_reach_the_request() {
        let request = request_for(
            &[
                "--last",
                "1h",
                "--tenant",
                "acme",
                "--tenant",
                "",
                "--status",
                "5XX,404",
                "--group",
                "tenant,status-class",
            ],
            "2026-11-30T12:00:00Z",
        )
        .unwrap();
        assert_eq!(request.tenants, vec!["acme".to_owned(), String::new()]);
        assert_eq!(request.statuses, vec!["5xx".to_owned(), "404".to_owned()]);
        assert_eq!(
            request.group_by,
            vec![Dimension::Tenant as i32, Dimension::StatusClass as i32]
        );
        let none = request_for(&["--last", "1h", "--group", "none"], "2026-11-30T12:00:00Z");
        assert_eq!(none.unwrap().group_by, Vec::<i32>::new());
    }

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        totals: TotalsArgs,
    }

    fn request_for(args: &[&str], now: &str) -> Result<GetTotalsRequest> {
        let cli = Cli::try_parse_from(std::iter::once("count").chain(args.iter().copied()))
            .map_err(|e| Error::invalid("args", e.to_string()))?;
        let now = DateTime::parse_from_rfc3339(now)
            .unwrap()
            .with_timezone(&Utc);
        request(&cli.totals, now)
    }

    fn seconds(time: &str) -> i64 {
        DateTime::parse_from_rfc3339(time).unwrap().timestamp()
    }

    #[test]
    fn last_ends_after_the_current_minute() {
        let request =
            request_for(&["--last", "5m", "--by", "minute"], "2026-11-30T12:03:30Z").unwrap();
        assert_eq!(
            request.start_time.unwrap().seconds,
            seconds("2026-11-30T11:59:00Z")
        );
        assert_eq!(
            request.end_time.unwrap().seconds,
            seconds("2026-11-30T12:04:00Z")
        );
        assert_eq!(
            request.granularity,
            count_proto::v1::Granularity::Minute as i32
        );
    }

    #[test]
    fn days_are_midnights_in_the_zone_and_the_last_is_whole() {
        let request = request_for(
            &[
                "--from",
                "2026-03-01",
                "--to",
                "2026-03-31",
                "--tz",
                "Asia/Kathmandu",
                "--method",
                "get,OTHER",
            ],
            "2026-11-30T00:00:00Z",
        )
        .unwrap();
        assert_eq!(
            request.start_time.unwrap().seconds,
            seconds("2026-02-28T18:15:00Z")
        );
        assert_eq!(
            request.end_time.unwrap().seconds,
            seconds("2026-03-31T18:15:00Z")
        );
        assert_eq!(request.time_zone, "Asia/Kathmandu");
        assert_eq!(
            request.methods,
            vec![Method::Get as i32, Method::Unspecified as i32]
        );
    }

    #[test]
    fn bad_values_name_the_flag() {
        let now = "2026-11-30T00:00:00Z";
        let error = |args: &[&str]| request_for(args, now).unwrap_err().to_string();
        assert!(error(&["--from", "yesterday", "--to", "2026-01-01"]).contains("--from"));
        assert_eq!(
            error(&["--from", "2026-01-02", "--to", "2026-01-01"]),
            "--to: 2026-01-01 is before --from 2026-01-02"
        );
        assert_eq!(
            error(&["--last", "1h", "--method", "FETCH"]),
            "--method: unknown method FETCH"
        );
        assert!(error(&["--last", "1h", "--tz", "Mars/Olympus"]).contains("Mars/Olympus"));
        assert!(error(&["--by", "day"]).contains("--from"));
    }
}
