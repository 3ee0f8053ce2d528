//! count: counts requests exactly and serves their live totals, by minute,
//! hour, day, week, month or year in any time zone, over gRPC (`count.v1`),
//! from the `count` command line, and from SQL (schema `count`).
//!
//! Services stream request data points in; the server validates them,
//! aggregates them in memory by (series, minute), and writes them
//! insert-only through the SQL API (`count.add_batch`). Rollups
//! (`count.rollup_due`, every few seconds) move raw rows into totals per
//! minute, hour, day and month; reads (`count.totals`) add the tiers and
//! the raw rows not rolled up yet.
//!
//! Layout:
//! - [`cli`]: the `count` command line and its subcommands.
//! - [`server`]: serving the gRPC API (with health and reflection) on a
//!   bound listener until shutdown, and the server's background tasks.
//! - [`api`]: the `CountService` handlers.
//! - [`auth`]: bearer tokens with roles (a tower layer).
//! - [`tls`]: the certificate settings both listeners share.
//! - [`http`]: the HTTP side (`--http-listen`): the API as JSON and CSV,
//!   its OpenAPI description, `/healthz`, and the dashboard at `/`.
//! - [`ingest`]: the ingest core every server shares: the `Add` stream
//!   (validate, aggregate, flush in the background) and `AddBatch`.
//! - [`entry`]: validation of one `AddRequest`.
//! - [`series`]: the caps on distinct series (cardinality guard).
//! - [`state`]: what handlers share: the store once connected, the guard.
//! - [`aggregate`]: summing entries by key into flush batches.
//! - [`dates`]: `google.type.Date` days and periods.
//! - [`query`]: `GetTotals` requests into `count.totals` queries.
//! - [`export`]: totals as CSV and JSON, for the HTTP API and `count export`.
//! - [`check`]: `count check`, the SQL API run once through on a database
//!   with each answer checked (the first thing to run on CockroachDB).
//! - [`db`]: the database: where it is (a URL or the embedded cluster), how
//!   to connect (libpq's `sslmode` TLS), and the store (migrations, the SQL
//!   API, and the calls made through it).
//! - [`defaults`]: each setting's default, shared by clap and `Default`.
//! - [`config_file`]: the optional TOML file, layered under flags and env.
//! - [`metrics`]: the Prometheus series.
//! - [`shutdown`]: the SIGINT/SIGTERM signal.
//! - [`error`]: the crate's error type and its mapping to gRPC codes.

pub mod aggregate;
pub mod api;
pub mod auth;
pub mod check;
pub mod cli;
pub mod config_file;
pub mod dates;
pub mod db;
pub mod defaults;
pub mod entry;
pub mod error;
pub mod export;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod query;
pub mod series;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod tls;
