//! The database layer: where the database is, how to connect to it, the
//! embedded cluster, and the store the rest of the service calls.
//!
//! Layout:
//! - [`location`]: a URL, or the embedded cluster (started and stopped here).
//! - [`connect`]: connection settings from a libpq URL, TLS with libpq's
//!   `sslmode` semantics.
//! - [`cluster`]: a private PostgreSQL cluster (the embedded default, and the
//!   test harness's).
//! - `engine`: PostgreSQL or CockroachDB, told by `version()`.
//! - `lease`: one migrator at a time, without advisory locks.
//! - `retry`: retrying serialization failures and deadlocks.
//! - [`store`]: migrations, the SQL API's installation, and every call the
//!   service makes (the SQL API, and reads of its tables).

pub mod cluster;
pub mod connect;
mod engine;
mod lease;
pub mod location;
mod retry;
pub mod store;
