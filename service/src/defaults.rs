//! The defaults of `count serve`'s settings: clap's defaults and the
//! configurations' `Default` both read them, so the two cannot differ.

use std::time::Duration;

/// `--listen`.
pub const LISTEN: &str = "127.0.0.1:7777";
/// `--http-listen`.
pub const HTTP_LISTEN: &str = "127.0.0.1:7780";
/// `--flush-interval`.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// `--max-batch-keys`.
pub const MAX_BATCH_KEYS: u32 = 10_000;
/// `--max-future`.
pub const MAX_FUTURE: Duration = Duration::from_secs(5 * 60);
/// `--max-path-bytes`.
pub const MAX_PATH_BYTES: usize = 1024;
/// The longest tenant accepted, in bytes (`AddRequest.tenant`; fixed, as
/// the proto says).
pub const MAX_TENANT_BYTES: usize = 256;
/// `--max-entry-count`.
pub const MAX_ENTRY_COUNT: i64 = 1_000_000_000;
/// `--max-batch-entries`.
pub const MAX_BATCH_ENTRIES: usize = 10_000;
/// `--max-series`.
pub const MAX_SERIES: usize = 100_000;
/// `--max-ingest-calls`.
pub const MAX_INGEST_CALLS: usize = 256;
/// `--max-message-bytes`.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// `--shutdown-grace`.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long an HTTP client may take to send a request's head, or, on a
/// kept-alive connection, to start the next: a client sending nothing, or a
/// byte at a time, holds a connection and its task only this long.
pub const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an HTTP connection with no request in flight may stay with
/// nothing read or written: an idle HTTP/2 connection (a browser's between
/// refreshes, every few seconds) or a peer gone without closing.
pub const HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// HTTP connections open at once: each costs a task and buffers, so a client
/// opening connections without end meets a queue, not an exhausted server.
pub const HTTP_MAX_CONNECTIONS: usize = 1024;
/// `--health-interval`.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
/// `--rollup-every`: raw rows, which every read scans, stay a few seconds'
/// worth.
pub const ROLLUP_EVERY: Duration = Duration::from_secs(5);
/// `--pool-size`.
pub const POOL_SIZE: usize = 16;
/// A pooled connection not handed out for this long is checked with a
/// round trip before it is: the pool hands out the connection used last,
/// so the ones at the back can sit idle long enough for a NAT or firewall
/// to drop them without a word, and a request would fail on one.
pub const POOL_CHECK_IDLE: Duration = Duration::from_secs(30);
/// How long that check may take before the connection is dropped and
/// another taken: a silently dropped connection never answers, and TCP
/// would take minutes to say so.
pub const POOL_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
