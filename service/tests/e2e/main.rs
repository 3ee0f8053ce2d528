//! End-to-end tests: real PostgreSQL clusters, real gRPC over TCP, the real
//! `count` binary. One test binary, so the suite links once.

#![allow(clippy::unwrap_used)]

mod browser;
mod harness;

mod cli;
mod client;
mod concurrency;
mod dashboard;
mod delivery;
mod docs;
mod extension;
mod faults;
mod http;
mod limits;
mod operability;
mod portable;
mod rpc;
mod security;
mod series;
mod sources;
mod sql;
mod totals;
mod upgrade;
