//! The `count` command line: argument definitions and what each subcommand
//! does. `main` only parses, sets up logging and calls [`Cli::run`].
//!
//! Layout:
//! - this module: the command, its global flags and the dispatch;
//! - `database`: which database (`--database-url`, the embedded cluster),
//!   shared by `serve`, `migrate`, `rollup` and `check`;
//! - `serve`: `count serve`'s settings, `--print-config`, and serving;
//! - `add`, `totals`, `export` and `import`: `count add`, `count totals`,
//!   `count export` and `count import`, clients of a running server
//!   (`remote`: how they reach it).

mod add;
mod database;
mod export;
mod import;
mod remote;
mod serve;
mod totals;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub use add::AddArgs;
pub use database::{DatabaseArgs, RollupArgs};
pub use export::{ExportArgs, ExportFormat};
pub use import::{ImportArgs, ImportFormat};
pub use remote::ServerArgs;
pub use serve::{ServeArgs, describe};
pub use totals::{Granularity, Group, Moment, TotalsArgs};

use crate::check;
use crate::error::{Error, Result};

/// Counts requests exactly and reads their totals by day, month and year.
#[derive(Debug, Parser)]
#[command(name = "count", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log level or filter (`RUST_LOG` takes precedence). Unless set, the
    /// commands other than `serve` log warnings and errors only.
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
    /// Run the gRPC server and the HTTP API (on the embedded PostgreSQL unless a
    /// database is given).
    Serve(Box<ServeArgs>),
    /// Apply pending schema migrations and install the SQL API, then exit.
    Migrate(DatabaseArgs),
    /// Roll raw counts up into the totals per minute, hour, day and month.
    Rollup(RollupArgs),
    /// Run the SQL API once through on the database and check every answer
    /// (first thing to run on CockroachDB); cleans up after itself.
    Check(DatabaseArgs),
    /// Print live totals from a running server as a table.
    Totals(TotalsArgs),
    /// Send one count (of one or more requests) to a running server.
    Add(AddArgs),
    /// Write live totals from a running server as CSV or JSON lines.
    Export(ExportArgs),
    /// Send the counts of a CSV or JSON lines file to a running server;
    /// importing it again counts nothing twice.
    Import(ImportArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

impl Cli {
    /// The log filter: `--log-level` as given, or its default for `serve`;
    /// a one-off command (`migrate`, `rollup`, `check`, …) left at the
    /// default logs warnings only, so that its output is what it prints
    /// (not refinery's or PostgreSQL's INFO and NOTICE lines).
    /// `source` is where clap found `--log-level`.
    pub fn log_filter(&self, source: Option<clap::parser::ValueSource>) -> &str {
        let defaulted = matches!(source, None | Some(clap::parser::ValueSource::DefaultValue));
        if defaulted && !matches!(self.command, Command::Serve(_)) {
            "warn"
        } else {
            &self.log_level
        }
    }

    /// Runs the subcommand; text for people goes to stdout, logs to stderr.
    pub async fn run(self) -> Result<()> {
        match self.command {
            Command::Serve(args) => serve::serve(*args).await,
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
                        println!("rolled up {day}: {moved} requests moved into the totals");
                    }
                    None => {
                        let days = store.rollup_due().await?;
                        println!("rolled up {days} days");
                    }
                }
                Ok(())
            }
            Command::Check(args) => {
                let (_database, store) = args.open_store().await?;
                let steps = check::check(&store).await?;
                for step in &steps {
                    match &step.outcome {
                        Ok(()) => println!("ok      {}", step.name),
                        Err(why) => println!("FAILED  {}: {why}", step.name),
                    }
                }
                let failed = steps.iter().filter(|s| s.outcome.is_err()).count();
                if failed > 0 {
                    return Err(Error::CheckFailed {
                        failed,
                        steps: steps.len(),
                    });
                }
                println!(
                    "count's SQL API works on this database (backend: {})",
                    store.backend().name()
                );
                Ok(())
            }
            Command::Completions { shell } => {
                let mut command = <Cli as clap::CommandFactory>::command();
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut command, "count", &mut script);
                std::io::Write::write_all(&mut std::io::stdout(), &script)
                    .map_err(Error::io("writing the completion script"))
            }
            Command::Totals(args) => totals::print(&args).await,
            Command::Add(args) => add::add(&args).await,
            Command::Export(args) => export::export(&args).await,
            Command::Import(args) => import::import(&args).await,
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
