//! `count serve`: its settings, `--print-config`, and serving.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory};
use tokio::net::TcpListener;

use super::database::DatabaseArgs;
use super::{Cli, positive};
use crate::auth::Tokens;
use crate::defaults;
use crate::entry::EntryRules;
use crate::error::{Error, Result};
use crate::ingest::IngestConfig;
use crate::server::ServerConfig;
use crate::state::StoreSource;
use crate::tls::TlsFiles;
use crate::{server, shutdown};

/// `count serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address to serve gRPC on.
    #[arg(long, env = "COUNT_LISTEN", default_value = defaults::LISTEN)]
    pub listen: SocketAddr,
    /// Address to serve the HTTP API on (JSON and CSV, /healthz), or `off`.
    #[arg(long, env = "COUNT_HTTP_LISTEN", default_value = defaults::HTTP_LISTEN, value_parser = http_listen)]
    pub http_listen: HttpListen,
    /// Longest time an accepted entry waits in memory before it is written.
    #[arg(long, env = "COUNT_FLUSH_INTERVAL", default_value_t = defaults::FLUSH_INTERVAL.into())]
    pub flush_interval: humantime::Duration,
    /// A stream's aggregate is written once it holds this many distinct
    /// (series, minute) keys.
    #[arg(long, env = "COUNT_MAX_BATCH_KEYS", default_value_t = defaults::MAX_BATCH_KEYS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch_keys: u32,
    /// How far in the future a request timestamp may be.
    #[arg(long, env = "COUNT_MAX_FUTURE", default_value_t = defaults::MAX_FUTURE.into())]
    pub max_future: humantime::Duration,
    /// Longest path accepted, in bytes.
    #[arg(long, env = "COUNT_MAX_PATH_BYTES", default_value_t = defaults::MAX_PATH_BYTES, value_parser = positive)]
    pub max_path_bytes: usize,
    /// Largest count one entry may carry.
    #[arg(long, env = "COUNT_MAX_ENTRY_COUNT", default_value_t = defaults::MAX_ENTRY_COUNT,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub max_entry_count: i64,
    /// Most entries one AddBatch may carry.
    #[arg(long, env = "COUNT_MAX_BATCH_ENTRIES", default_value_t = defaults::MAX_BATCH_ENTRIES, value_parser = positive)]
    pub max_batch_entries: usize,
    /// Most distinct series (tenant + method + path + status code) the
    /// database may hold; new ones past it are refused (RESOURCE_EXHAUSTED).
    /// Called --max-endpoints before series had a tenant and a status.
    #[arg(long, visible_alias = "max-endpoints", env = "COUNT_MAX_SERIES", default_value_t = defaults::MAX_SERIES, value_parser = positive)]
    pub max_series: usize,
    /// Most series of any one tenant, so that one tenant cannot use up
    /// --max-series for all (unset: no cap of its own).
    #[arg(long, env = "COUNT_MAX_SERIES_PER_TENANT", value_parser = positive)]
    pub max_series_per_tenant: Option<usize>,
    /// Most Add streams and AddBatch calls served at once; more are refused
    /// with RESOURCE_EXHAUSTED (clients retry). Bounds the server's memory:
    /// each holds at most two aggregates of --max-batch-keys keys, or one
    /// message of --max-message-bytes.
    #[arg(long, env = "COUNT_MAX_INGEST_CALLS", default_value_t = defaults::MAX_INGEST_CALLS, value_parser = ingest_calls)]
    pub max_ingest_calls: usize,
    /// Largest gRPC message accepted, in bytes.
    #[arg(long, env = "COUNT_MAX_MESSAGE_BYTES", default_value_t = defaults::MAX_MESSAGE_BYTES, value_parser = positive)]
    pub max_message_bytes: usize,
    /// After SIGINT/SIGTERM, how long open streams may go on before they are
    /// ended (what they sent is committed).
    #[arg(long, env = "COUNT_SHUTDOWN_GRACE", default_value_t = defaults::SHUTDOWN_GRACE.into())]
    pub shutdown_grace: humantime::Duration,
    /// Serve Prometheus metrics over HTTP on this address (/metrics); off
    /// when unset. The metrics take no token: a non-loopback address needs
    /// --allow-unauthenticated.
    #[arg(long, env = "COUNT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Run `count.rollup_due()` this often; 0 turns it off (pg_cron, say,
    /// runs it instead). Every read adds the raw rows not rolled up yet, so
    /// totals are live either way: rolling up often keeps those rows few
    /// and reads fast. Safe with several servers: rollups are exact however
    /// many run at once.
    #[arg(long, env = "COUNT_ROLLUP_EVERY", default_value_t = defaults::ROLLUP_EVERY.into())]
    pub rollup_every: humantime::Duration,
    /// How often the database is checked for the health service.
    #[arg(long, env = "COUNT_HEALTH_INTERVAL", default_value_t = defaults::HEALTH_INTERVAL.into())]
    pub health_interval: humantime::Duration,
    /// A file of bearer tokens with roles (`role[,role…] token` lines); the
    /// COUNT_TOKENS variable may hold more. Tokens never go on the command
    /// line.
    #[arg(long, env = "COUNT_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// TLS certificate chain (PEM) for the gRPC and HTTP listeners; with
    /// --tls-key.
    #[arg(long, env = "COUNT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the gRPC and HTTP listeners; with
    /// --tls-cert.
    #[arg(long, env = "COUNT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) that client certificates must chain to: mutual TLS.
    #[arg(long, env = "COUNT_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve gRPC or HTTP on a non-loopback address without tokens, or
    /// metrics on a non-loopback address (refused otherwise).
    #[arg(long, env = "COUNT_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    pub print_config: bool,
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
                max_series: self.max_series,
                max_series_per_tenant: self.max_series_per_tenant,
                max_calls: self.max_ingest_calls,
            },
            shutdown_grace: *self.shutdown_grace,
            health_interval: *self.health_interval,
            rollup_every: Some(*self.rollup_every).filter(|every| !every.is_zero()),
            max_message_bytes: self.max_message_bytes,
            http_limits: crate::http::HttpLimits::default(),
            tokens: Tokens::load(self.tokens_file.as_deref())?,
            tls: self.tls()?,
        })
    }

    fn tls(&self) -> Result<Option<TlsFiles>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(Error::io(format!("reading {}", path.display())))
        };
        let client_ca = self.tls_client_ca.as_ref().map(read).transpose()?;
        TlsFiles::new(read(cert)?, read(key)?, client_ca).map(Some)
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

/// `--http-listen`: an address, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpListen(pub Option<SocketAddr>);

fn http_listen(value: &str) -> std::result::Result<HttpListen, String> {
    if value == "off" {
        return Ok(HttpListen(None));
    }
    value
        .parse()
        .map(|address| HttpListen(Some(address)))
        .map_err(|e| format!("{e}: an address such as 127.0.0.1:7780, or off"))
}

/// The effective configuration of `count serve` as TOML (a valid `--config`
/// file), with the database password redacted: every setting clap knows,
/// with the value it parsed (flag, environment, file or default). Walked
/// from clap's own argument list, so a new flag shows without a line here.
pub fn describe(matches: &clap::ArgMatches) -> String {
    let mut command = Cli::command();
    command.build();
    let (Some(serve), Some(matches)) = (
        command.find_subcommand("serve"),
        matches.subcommand_matches("serve"),
    ) else {
        return String::new();
    };
    let mut out = String::new();
    for arg in serve.get_arguments() {
        let Some(key) = arg.get_long() else { continue };
        // Not settings: the file itself (a file names no other), help,
        // and this very flag.
        if matches!(key, "config" | "help" | "version" | "print-config") {
            continue;
        }
        let id = arg.get_id().as_str();
        let value = if arg.get_action().takes_values() {
            matches.get_raw(id).map(|values| {
                values
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            })
        } else {
            Some(matches.get_flag(id).to_string())
        };
        let value = match (key, value) {
            ("database-url", None) => std::env::var("DB_URL").ok(),
            (_, value) => value,
        };
        match value {
            None => out.push_str(&format!("# {key}: unset\n")),
            Some(url) if key == "database-url" => {
                let url = crate::config_file::redact_url(&url);
                out.push_str(&format!("{key} = {}\n", toml::Value::String(url)));
            }
            Some(value) => out.push_str(&format!("{key} = {}\n", toml_value(value))),
        }
    }
    out
}

/// A raw value as TOML: numbers and booleans bare, anything else a string.
fn toml_value(raw: String) -> String {
    if raw.parse::<i64>().is_ok() || raw == "true" || raw == "false" {
        raw
    } else {
        toml::Value::String(raw).to_string()
    }
}

/// Runs `count serve` (or prints its configuration).
pub(super) async fn serve(args: ServeArgs) -> Result<()> {
    if args.print_config {
        // The arguments as clap parsed them, to walk every setting.
        print!(
            "{}",
            describe(&Cli::command().get_matches_from(std::env::args_os()))
        );
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
    if let HttpListen(Some(address)) = args.http_listen
        && config.tokens.is_none()
        && !address.ip().is_loopback()
        && !args.allow_unauthenticated
    {
        return Err(Error::invalid(
            "--http-listen",
            format!(
                "refusing to serve {address} without tokens: set --tokens-file or \
                 COUNT_TOKENS, or pass --allow-unauthenticated"
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
    if let HttpListen(Some(address)) = args.http_listen
        && config.tokens.is_some()
        && config.tls.is_none()
        && !address.ip().is_loopback()
    {
        tracing::warn!(
            http_listen = %address,
            "bearer tokens will cross the network in plaintext: set --tls-cert and --tls-key"
        );
    }
    // Both addresses bound before the database is opened: a port in use
    // fails the start at once, not after the embedded cluster started.
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(Error::io(format!("binding {}", args.listen)))?;
    let http = match args.http_listen {
        HttpListen(Some(address)) => Some(
            TcpListener::bind(address)
                .await
                .map_err(Error::io(format!("binding {address} (--http-listen)")))?,
        ),
        HttpListen(None) => None,
    };
    let database = args.database.location().open().await?;
    let address = listener
        .local_addr()
        .map_err(Error::io("reading the bound address"))?;
    tracing::info!(%address, database = ?database.config.postgres.get_dbname(), "count serving");
    // The database may not be up yet: the server serves meanwhile (health
    // NOT_SERVING, calls UNAVAILABLE) and connects as soon as it can.
    let store = StoreSource::Connect {
        config: Box::new(database.config.clone()),
        pool_size: args.database.pool_size,
        schema: args.database.schema(),
    };
    if let Some(http) = &http {
        let bound = http
            .local_addr()
            .map_err(Error::io("reading the bound address"))?;
        tracing::info!(address = %bound, "HTTP API serving");
    }
    server::run(listener, http, store, config, shutdown::signal()).await?;
    tracing::info!("stopped");
    drop(database);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_config_shows_every_serve_flag() {
        let matches = Cli::command()
            .try_get_matches_from(["count", "serve", "--listen", "127.0.0.1:1", "--no-migrate"])
            .expect("parses");
        let text = describe(&matches);
        let mut command = Cli::command();
        command.build();
        let serve = command.find_subcommand("serve").expect("serve");
        let mut shown = 0;
        for arg in serve.get_arguments() {
            let Some(key) = arg.get_long() else { continue };
            if matches!(key, "config" | "help" | "version" | "print-config") {
                continue;
            }
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("{key} = ")) || l == format!("# {key}: unset")),
                "--{key} missing from:\n{text}"
            );
            shown += 1;
        }
        assert!(shown >= 25, "{shown} flags:\n{text}");
        for line in [
            "listen = \"127.0.0.1:1\"",
            "no-migrate = true",
            "allow-unauthenticated = false",
            "max-batch-keys = 10000",
            "flush-interval = \"1s\"",
            "log-level = \"info\"",
            "log-format = \"text\"",
            "# tokens-file: unset",
            "# tls-cert: unset",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in:\n{text}"
            );
        }
    }
}
