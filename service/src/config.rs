//! The server's tunables, filled from the command line.

use std::time::Duration;

use crate::auth::Tokens;
use crate::entry::EntryRules;

/// How `Add` streams and batches are checked and written.
#[derive(Debug, Clone, Copy)]
pub struct IngestConfig {
    /// What makes an entry valid.
    pub rules: EntryRules,
    /// The longest an accepted entry waits in memory before it is written.
    pub flush_interval: Duration,
    /// A stream's aggregate is written as soon as it holds this many keys.
    pub max_batch_keys: usize,
    /// The most entries one `AddBatch` may carry.
    pub max_batch_entries: usize,
    /// The most distinct endpoints (method + path) the database may hold.
    pub max_endpoints: usize,
    /// The most `Add` streams and `AddBatch` calls served at once: what
    /// bounds the server's memory, since each holds at most two aggregates
    /// of `max_batch_keys` keys, or one message.
    pub max_calls: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            rules: EntryRules::default(),
            flush_interval: Duration::from_secs(1),
            max_batch_keys: 10_000,
            max_batch_entries: 10_000,
            max_endpoints: 100_000,
            max_calls: 256,
        }
    }
}

/// Everything [`crate::server::run`] needs besides the listener and store.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Ingest limits.
    pub ingest: IngestConfig,
    /// After a shutdown signal, how long open streams may go on before the
    /// server ends them (committing what they sent).
    pub shutdown_grace: Duration,
    /// How often the database is checked for the health service.
    pub health_interval: Duration,
    /// How often `count.rollup_due()` runs; never when `None`.
    pub rollup_every: Option<Duration>,
    /// The largest gRPC message accepted, in bytes.
    pub max_message_bytes: usize,
    /// Bearer tokens every call must present; none when `None`.
    pub tokens: Option<Tokens>,
    /// TLS for the gRPC listener (with a client CA: mutual TLS); plaintext
    /// when `None`.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            ingest: IngestConfig::default(),
            shutdown_grace: Duration::from_secs(30),
            health_interval: Duration::from_secs(2),
            rollup_every: None,
            max_message_bytes: 4 * 1024 * 1024,
            tokens: None,
            tls: None,
        }
    }
}
