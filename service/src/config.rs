//! The server's tunables, filled from the command line.

use std::time::Duration;

use crate::auth::Tokens;
use crate::entry::EntryRules;

/// The defaults of `count serve`'s settings: clap's defaults and the
/// configurations' `Default` both read them, so the two cannot differ.
pub mod defaults {
    use std::time::Duration;

    /// `--listen`.
    pub const LISTEN: &str = "127.0.0.1:7777";
    /// `--flush-interval`.
    pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
    /// `--max-batch-keys`.
    pub const MAX_BATCH_KEYS: u32 = 10_000;
    /// `--max-future`.
    pub const MAX_FUTURE: Duration = Duration::from_secs(5 * 60);
    /// `--max-path-bytes`.
    pub const MAX_PATH_BYTES: usize = 1024;
    /// `--max-entry-count`.
    pub const MAX_ENTRY_COUNT: i64 = 1_000_000_000;
    /// `--max-batch-entries`.
    pub const MAX_BATCH_ENTRIES: usize = 10_000;
    /// `--max-endpoints`.
    pub const MAX_ENDPOINTS: usize = 100_000;
    /// `--max-ingest-calls`.
    pub const MAX_INGEST_CALLS: usize = 256;
    /// `--max-message-bytes`.
    pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
    /// `--shutdown-grace`.
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
    /// `--health-interval`.
    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
    /// `--pool-size`.
    pub const POOL_SIZE: usize = 16;
}

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
            flush_interval: defaults::FLUSH_INTERVAL,
            max_batch_keys: defaults::MAX_BATCH_KEYS as usize,
            max_batch_entries: defaults::MAX_BATCH_ENTRIES,
            max_endpoints: defaults::MAX_ENDPOINTS,
            max_calls: defaults::MAX_INGEST_CALLS,
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
            shutdown_grace: defaults::SHUTDOWN_GRACE,
            health_interval: defaults::HEALTH_INTERVAL,
            rollup_every: None,
            max_message_bytes: defaults::MAX_MESSAGE_BYTES,
            tokens: None,
            tls: None,
        }
    }
}
