//! `count-bench`: runs count's benchmark scenarios and prints the table, or
//! (`count-bench discard`, which the bench starts itself) serves the
//! protocol ceiling.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use count_bench::{BenchOptions, Programs};

/// Measures count on this machine, each figure side by side with its
/// baseline, on a private PostgreSQL cluster.
#[derive(Debug, Parser)]
#[command(name = "count-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    options: BenchOptions,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves a count.v1 service whose Add reads and discards: the protocol
    /// ceiling, in a process of its own (started by the bench).
    #[command(hide = true)]
    Discard {
        /// Address to serve on.
        #[arg(long)]
        listen: SocketAddr,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Discard { listen }) => count_bench::serve_discard(listen).await,
        None => run(&cli.options).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("count-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: &BenchOptions) -> count_bench::error::Result<()> {
    let me =
        std::env::current_exe().map_err(count_bench::error::Error::io("finding this program"))?;
    let programs = Programs {
        count: options
            .count_bin
            .clone()
            .unwrap_or_else(|| me.with_file_name("count")),
        discard: me,
    };
    print!("{}", count_bench::run(options, &programs).await?);
    Ok(())
}
