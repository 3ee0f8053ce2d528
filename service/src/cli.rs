//! The `count` command line: argument definitions and what each subcommand
//! does. `main` only parses, sets up logging and calls [`Cli::run`].

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::{Datelike, NaiveDate};
use clap::{Args, Parser, Subcommand, ValueEnum};
use count_client::BearerToken;
use count_proto::google::r#type::Date;
use count_proto::v1::count_service_client::CountServiceClient;
use count_proto::v1::{GetPeriodTotalsRequest, ListDailyTotalsRequest, Method, MethodCount};
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::auth::Tokens;
use crate::config::{IngestConfig, ServerConfig};
use crate::database::DatabaseLocation;
use crate::entry::EntryRules;
use crate::error::{Error, Result};
use crate::state::StoreSource;
use crate::store::Store;
use crate::{dates, server, shutdown};

/// Counts requests exactly and reads their totals by day, month and year.
#[derive(Debug, Parser)]
#[command(name = "count", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log level or filter (`RUST_LOG` takes precedence).
    #[arg(long, env = "COUNT_LOG_LEVEL", default_value = "info", global = true)]
    pub log_level: String,
    /// Log as human-readable text or as JSON lines.
    #[arg(long, env = "COUNT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// A TOML file of settings (keys: the COUNT_* variable names without the
    /// prefix, e.g. `flush-interval = "2s"`); flags and environment win.
    #[arg(long, env = "COUNT_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

/// How logs are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server (on the embedded PostgreSQL unless a database is given).
    Serve(Box<ServeArgs>),
    /// Apply pending schema migrations and install the SQL API, then exit.
    Migrate(DatabaseArgs),
    /// Roll raw counts up into daily totals.
    Rollup(RollupArgs),
    /// Print rolled-up totals from a running server as a table.
    Totals(TotalsArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Which database to use.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL or key=value string; also read from DB_URL. Without one,
    /// count runs its embedded PostgreSQL cluster.
    #[arg(long, env = "COUNT_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Base directory of the embedded cluster [default: /var/lib/count as
    /// root, else the user's data directory + /count].
    #[arg(long, env = "COUNT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL server binaries for the embedded cluster [default: the
    /// newest /usr/lib/postgresql/*/bin].
    #[arg(long, env = "COUNT_PG_BIN_DIR")]
    pub pg_bin_dir: Option<PathBuf>,
    /// Most database connections kept open.
    #[arg(long, env = "COUNT_POOL_SIZE", default_value_t = 16)]
    pub pool_size: usize,
    /// Use the schema and SQL API as they are: `count migrate` ran as their
    /// owner, and this role has only the grants of sql/roles.sql.
    #[arg(long, env = "COUNT_NO_MIGRATE")]
    pub no_migrate: bool,
}

/// `count serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address to serve gRPC on.
    #[arg(long, env = "COUNT_LISTEN", default_value = "127.0.0.1:7777")]
    pub listen: SocketAddr,
    /// Longest time an accepted entry waits in memory before it is written.
    #[arg(long, env = "COUNT_FLUSH_INTERVAL", default_value = "1s")]
    pub flush_interval: humantime::Duration,
    /// A stream's aggregate is written once it holds this many distinct
    /// (method, path, second) keys.
    #[arg(long, env = "COUNT_MAX_BATCH_KEYS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch_keys: u32,
    /// How far in the future a request timestamp may be.
    #[arg(long, env = "COUNT_MAX_FUTURE", default_value = "5m")]
    pub max_future: humantime::Duration,
    /// Longest path accepted, in bytes.
    #[arg(long, env = "COUNT_MAX_PATH_BYTES", default_value_t = 1024, value_parser = positive)]
    pub max_path_bytes: usize,
    /// Largest count one entry may carry.
    #[arg(long, env = "COUNT_MAX_ENTRY_COUNT", default_value_t = 1_000_000_000,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub max_entry_count: i64,
    /// Most entries one AddBatch may carry.
    #[arg(long, env = "COUNT_MAX_BATCH_ENTRIES", default_value_t = 10_000, value_parser = positive)]
    pub max_batch_entries: usize,
    /// Most distinct endpoints (method + path) the database may hold; new
    /// ones past it are refused (RESOURCE_EXHAUSTED).
    #[arg(long, env = "COUNT_MAX_ENDPOINTS", default_value_t = 100_000, value_parser = positive)]
    pub max_endpoints: usize,
    /// Most Add streams and AddBatch calls served at once; more are refused
    /// with RESOURCE_EXHAUSTED (clients retry). Bounds the server's memory:
    /// each holds at most two aggregates of --max-batch-keys keys, or one
    /// message of --max-message-bytes.
    #[arg(long, env = "COUNT_MAX_INGEST_CALLS", default_value_t = 256, value_parser = ingest_calls)]
    pub max_ingest_calls: usize,
    /// Largest gRPC message accepted, in bytes.
    #[arg(long, env = "COUNT_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024, value_parser = positive)]
    pub max_message_bytes: usize,
    /// After SIGINT/SIGTERM, how long open streams may go on before they are
    /// ended (what they sent is committed).
    #[arg(long, env = "COUNT_SHUTDOWN_GRACE", default_value = "30s")]
    pub shutdown_grace: humantime::Duration,
    /// Serve Prometheus metrics over HTTP on this address (/metrics); off
    /// when unset. The metrics take no token: a non-loopback address needs
    /// --allow-unauthenticated.
    #[arg(long, env = "COUNT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Run `count.rollup_due()` this often (for databases without pg_cron);
    /// off when unset. Safe with several servers: rollups are idempotent.
    #[arg(long, env = "COUNT_ROLLUP_EVERY")]
    pub rollup_every: Option<humantime::Duration>,
    /// How often the database is checked for the health service.
    #[arg(long, env = "COUNT_HEALTH_INTERVAL", default_value = "2s")]
    pub health_interval: humantime::Duration,
    /// A file of bearer tokens with roles (`role[,role…] token` lines); the
    /// COUNT_TOKENS variable may hold more. Tokens never go on the command
    /// line.
    #[arg(long, env = "COUNT_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// TLS certificate chain (PEM) for the gRPC listener; with --tls-key.
    #[arg(long, env = "COUNT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the gRPC listener; with --tls-cert.
    #[arg(long, env = "COUNT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) that client certificates must chain to: mutual TLS.
    #[arg(long, env = "COUNT_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve gRPC on a non-loopback address without tokens, or metrics on a
    /// non-loopback address (refused otherwise).
    #[arg(long, env = "COUNT_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// `count rollup`.
#[derive(Debug, Args)]
pub struct RollupArgs {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Roll up this UTC day (YYYY-MM-DD).
    #[arg(
        long,
        env = "COUNT_ROLLUP_DAY",
        required_unless_present = "due",
        conflicts_with = "due"
    )]
    pub day: Option<NaiveDate>,
    /// Roll up every complete day before today that has raw counts.
    #[arg(long, env = "COUNT_ROLLUP_DUE")]
    pub due: bool,
}

/// `count totals`.
#[derive(Debug, Args)]
pub struct TotalsArgs {
    /// The count server's URL (`https://` for TLS).
    #[arg(long, env = "COUNT_SERVER", default_value = "http://127.0.0.1:7777")]
    pub server: String,
    /// CA (PEM) the server's certificate chains to [default for https:
    /// the system's roots].
    #[arg(long, env = "COUNT_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
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

impl DatabaseArgs {
    fn location(&self) -> DatabaseLocation {
        DatabaseLocation {
            url: self
                .database_url
                .clone()
                .or_else(|| std::env::var("DB_URL").ok()),
            data_dir: self.data_dir.clone(),
            pg_bin_dir: self.pg_bin_dir.clone(),
        }
    }

    async fn open_store(&self) -> Result<(crate::database::Database, Store)> {
        let database = self.location().open().await?;
        let store = if self.no_migrate {
            Store::open_existing(database.config.clone(), self.pool_size).await?
        } else {
            Store::open(database.config.clone(), self.pool_size).await?
        };
        Ok((database, store))
    }
}

impl ServeArgs {
    /// The server configuration these flags describe, tokens loaded.
    pub fn server_config(&self) -> Result<ServerConfig> {
        Ok(ServerConfig {
            ingest: IngestConfig {
                rules: EntryRules {
                    max_future: *self.max_future,
                    max_path_bytes: self.max_path_bytes,
                    max_entry_count: self.max_entry_count,
                },
                flush_interval: *self.flush_interval,
                max_batch_keys: self.max_batch_keys as usize,
                max_batch_entries: self.max_batch_entries,
                max_endpoints: self.max_endpoints,
                max_calls: self.max_ingest_calls,
            },
            shutdown_grace: *self.shutdown_grace,
            health_interval: *self.health_interval,
            rollup_every: self.rollup_every.map(Into::into),
            max_message_bytes: self.max_message_bytes,
            tokens: Tokens::load(self.tokens_file.as_deref())?,
            tls: self.tls()?,
        })
    }

    fn tls(&self) -> Result<Option<ServerTlsConfig>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(Error::io(format!("reading {}", path.display())))
        };
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
        if let Some(ca) = &self.tls_client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        Ok(Some(tls))
    }

    /// The effective configuration as TOML (a valid `--config` file), with
    /// the database password redacted.
    pub fn describe(&self) -> String {
        let database = &self.database;
        let optional = |value: Option<String>| {
            value.map_or_else(|| "# unset".to_owned(), |v| format!("{v:?}"))
        };
        let url = database
            .location()
            .url
            .map(|url| crate::config_file::redact_url(&url));
        [
            ("database-url", optional(url)),
            (
                "data-dir",
                optional(database.data_dir.as_ref().map(|d| d.display().to_string())),
            ),
            (
                "pg-bin-dir",
                optional(
                    database
                        .pg_bin_dir
                        .as_ref()
                        .map(|d| d.display().to_string()),
                ),
            ),
            ("pool-size", database.pool_size.to_string()),
            ("no-migrate", database.no_migrate.to_string()),
            ("listen", format!("{:?}", self.listen.to_string())),
            (
                "flush-interval",
                format!("{:?}", self.flush_interval.to_string()),
            ),
            ("max-batch-keys", self.max_batch_keys.to_string()),
            ("max-future", format!("{:?}", self.max_future.to_string())),
            ("max-path-bytes", self.max_path_bytes.to_string()),
            ("max-entry-count", self.max_entry_count.to_string()),
            ("max-batch-entries", self.max_batch_entries.to_string()),
            ("max-endpoints", self.max_endpoints.to_string()),
            ("max-ingest-calls", self.max_ingest_calls.to_string()),
            ("max-message-bytes", self.max_message_bytes.to_string()),
            (
                "shutdown-grace",
                format!("{:?}", self.shutdown_grace.to_string()),
            ),
            (
                "metrics-listen",
                optional(self.metrics_listen.map(|a| a.to_string())),
            ),
            (
                "rollup-every",
                optional(self.rollup_every.map(|d| d.to_string())),
            ),
            (
                "health-interval",
                format!("{:?}", self.health_interval.to_string()),
            ),
        ]
        .iter()
        .map(|(key, value)| match value.strip_prefix("# ") {
            Some(comment) => format!("# {key}: {comment}\n"),
            None => format!("{key} = {value}\n"),
        })
        .collect()
    }
}

impl Cli {
    /// Runs the subcommand; text for people goes to stdout, logs to stderr.
    pub async fn run(self) -> Result<()> {
        match self.command {
            Command::Serve(args) => serve(*args).await,
            Command::Migrate(args) => {
                let (_database, store) = args.open_store().await?;
                println!(
                    "schema up to date; SQL API backend: {}",
                    store.backend().name()
                );
                Ok(())
            }
            Command::Rollup(args) => {
                let (_database, store) = args.database.open_store().await?;
                match args.day {
                    Some(day) => {
                        let moved = store.rollup(day).await?;
                        println!("rolled up {day}: {moved} requests moved into daily totals");
                    }
                    None => {
                        let days = store.rollup_due().await?;
                        println!("rolled up {days} days");
                    }
                }
                Ok(())
            }
            Command::Completions { shell } => {
                let mut command = <Cli as clap::CommandFactory>::command();
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut command, "count", &mut script);
                std::io::Write::write_all(&mut std::io::stdout(), &script)
                    .map_err(Error::io("writing the completion script"))
            }
            Command::Totals(args) => {
                let rows = totals(&args).await?;
                if rows.is_empty() {
                    eprintln!("no rolled-up totals from {} to {}", args.from, args.to);
                } else {
                    print!("{}", render_table(&rows));
                }
                Ok(())
            }
        }
    }
}

/// A clap parser for limits and sizes that must be at least 1: a limit of
/// 0 would refuse everything. (`count-bench` parses its sizes with it too.)
pub fn positive(value: &str) -> std::result::Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A clap parser for `--max-ingest-calls`: positive, and within what a
/// semaphore can count.
fn ingest_calls(value: &str) -> std::result::Result<usize, String> {
    let calls = positive(value)?;
    if calls > tokio::sync::Semaphore::MAX_PERMITS {
        return Err(format!(
            "must be at most {}",
            tokio::sync::Semaphore::MAX_PERMITS
        ));
    }
    Ok(calls)
}

async fn serve(args: ServeArgs) -> Result<()> {
    if args.print_config {
        print!("{}", args.describe());
        return Ok(());
    }
    let config = args.server_config()?;
    if config.tokens.is_none() && !args.listen.ip().is_loopback() && !args.allow_unauthenticated {
        return Err(Error::invalid(
            "--listen",
            format!(
                "refusing to serve {} without tokens: set --tokens-file or COUNT_TOKENS, \
                 or pass --allow-unauthenticated",
                args.listen
            ),
        ));
    }
    if let Some(address) = args.metrics_listen {
        if !address.ip().is_loopback() && !args.allow_unauthenticated {
            return Err(Error::invalid(
                "--metrics-listen",
                format!(
                    "refusing to serve metrics on {address}: they take no token; \
                     pass --allow-unauthenticated to serve them beyond loopback"
                ),
            ));
        }
        crate::metrics::install(address)?;
    }
    if config.tokens.is_some() && config.tls.is_none() && !args.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %args.listen,
            "bearer tokens will cross the network in plaintext: set --tls-cert and --tls-key"
        );
    }
    let database = args.database.location().open().await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(Error::io(format!("binding {}", args.listen)))?;
    let address = listener
        .local_addr()
        .map_err(Error::io("reading the bound address"))?;
    tracing::info!(%address, database = ?database.config.postgres.get_dbname(), "count serving");
    // The database may not be up yet: the server serves meanwhile (health
    // NOT_SERVING, calls UNAVAILABLE) and connects as soon as it can.
    let store = StoreSource::Connect {
        config: Box::new(database.config.clone()),
        pool_size: args.database.pool_size,
        migrate: !args.database.no_migrate,
    };
    server::run(listener, store, config, shutdown::signal()).await?;
    tracing::info!("stopped");
    drop(database);
    Ok(())
}

/// One line of `count totals`: period, method, path, total.
type Row = (String, String, String, i64);

async fn totals(args: &TotalsArgs) -> Result<Vec<Row>> {
    if args.to < args.from {
        return Err(Error::invalid(
            "--to",
            format!("{} is before --from {}", args.to, args.from),
        ));
    }
    // The token comes from the environment, never from the command line.
    let token = std::env::var("COUNT_TOKEN").ok();
    let token = BearerToken::new(token.as_deref())
        .map_err(|e| Error::invalid("COUNT_TOKEN", e.to_string()))?;
    let mut endpoint = tonic::transport::Endpoint::from_shared(args.server.clone())
        .map_err(|e| Error::invalid("--server", e.to_string()))?;
    if args.server.starts_with("https:") {
        let tls = match &args.ca_cert {
            Some(ca) => {
                let pem =
                    std::fs::read(ca).map_err(Error::io(format!("reading {}", ca.display())))?;
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
            }
            None => ClientTlsConfig::new().with_native_roots(),
        };
        endpoint = endpoint.tls_config(tls)?;
    }
    let channel = endpoint.connect().await?;
    let mut client = CountServiceClient::with_interceptor(channel, token);
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
    for period in periods(args.from, args.to, args.by) {
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
    (period, method.to_owned(), count.path, count.count)
}

fn not_found_is_empty<T>(result: Result<T, tonic::Status>) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(status) if status.code() == Code::NotFound => Ok(None),
        Err(status) => Err(status.into()),
    }
}

/// The months or years (as `google.type.Date` periods) that contain
/// `from..=to`.
fn periods(from: NaiveDate, to: NaiveDate, by: Granularity) -> Vec<Date> {
    let mut periods = Vec::new();
    let (mut year, mut month) = (from.year(), from.month());
    while (year, month) <= (to.year(), to.month()) {
        match by {
            Granularity::Year => {
                periods.push(Date {
                    year,
                    month: 0,
                    day: 0,
                });
                year += 1;
                month = 1;
                if year > to.year() {
                    break;
                }
            }
            _ => {
                periods.push(Date {
                    year,
                    month: month as i32,
                    day: 0,
                });
                (year, month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
            }
        }
    }
    periods
}

/// Rows as an aligned text table with a header.
fn render_table(rows: &[Row]) -> String {
    let header = ("PERIOD", "METHOD", "PATH", "TOTAL");
    let width =
        |f: &dyn Fn(&Row) -> usize, min: usize| rows.iter().map(f).max().unwrap_or(0).max(min);
    let (w0, w1, w2) = (
        width(&|r| r.0.len(), header.0.len()),
        width(&|r| r.1.len(), header.1.len()),
        width(&|r| r.2.len(), header.2.len()),
    );
    let mut out = format!(
        "{:<w0$}  {:<w1$}  {:<w2$}  {}\n",
        header.0, header.1, header.2, header.3
    );
    for (period, method, path, total) in rows {
        out.push_str(&format!(
            "{period:<w0$}  {method:<w1$}  {path:<w2$}  {total}\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn months_and_years_cover_the_range() {
        let months = periods(ymd(2025, 11, 20), ymd(2026, 2, 1), Granularity::Month);
        let months: Vec<_> = months.iter().map(|d| (d.year, d.month, d.day)).collect();
        assert_eq!(
            months,
            vec![(2025, 11, 0), (2025, 12, 0), (2026, 1, 0), (2026, 2, 0)]
        );
        let years = periods(ymd(2024, 6, 1), ymd(2026, 1, 1), Granularity::Year);
        let years: Vec<_> = years.iter().map(|d| (d.year, d.month, d.day)).collect();
        assert_eq!(years, vec![(2024, 0, 0), (2025, 0, 0), (2026, 0, 0)]);
    }

    #[test]
    fn table_columns_align() {
        let rows = vec![
            (
                "2026-01-01".to_owned(),
                "GET".to_owned(),
                "/users/{id}".to_owned(),
                12,
            ),
            (
                "2026-01-01".to_owned(),
                "GRPC".to_owned(),
                "/a".to_owned(),
                3,
            ),
        ];
        assert_eq!(
            render_table(&rows),
            "PERIOD      METHOD  PATH         TOTAL\n\
             2026-01-01  GET     /users/{id}  12\n\
             2026-01-01  GRPC    /a           3\n"
        );
    }
}
