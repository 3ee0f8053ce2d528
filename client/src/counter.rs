//! [`Counter`], the handle applications record requests with.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use count_proto::v1::Method;
use tokio::sync::{Notify, mpsc, oneshot};
use tonic::transport::{ClientTlsConfig, Endpoint};

use crate::delivery::{Command, Delivery};
use crate::error::Error;
use crate::stats::{StatCounters, Stats};
use crate::tally::{Recorded, Series, Tally};

/// The longest path the count server accepts by default, in bytes.
const MAX_PATH_BYTES: usize = 1024;

/// The longest tenant the count server accepts, in bytes.
const MAX_TENANT_BYTES: usize = 256;

/// Whether the server takes `path` (with its default limits): not empty,
/// not too long, no control characters (which PostgreSQL text or a route
/// cannot hold). Checked at `record`, so that a bad path never reaches, and
/// never costs, a batch.
fn valid_path(path: &str) -> bool {
    !path.is_empty() && path.len() <= MAX_PATH_BYTES && !path.contains(char::is_control)
}

/// `series` as the server takes it: a tenant it would refuse (over 256
/// bytes, control characters) becomes none, and a status outside its
/// method's range (100-599, or 0-16 for gRPC) unknown, so that the request
/// still counts (a tenant header must not be a way not to be counted).
fn servable(mut series: Series<'_>) -> Series<'_> {
    if series.tenant.len() > MAX_TENANT_BYTES || series.tenant.contains(char::is_control) {
        series.tenant = "";
    }
    series.status = series.status.filter(|&code| {
        if series.method == Method::Grpc {
            code <= 16
        } else {
            (100..=599).contains(&code)
        }
    });
    series
}

fn series<'a>(method: Method, path: &'a str, tenant: &'a str, status: Option<u16>) -> Series<'a> {
    Series {
        method,
        path,
        tenant,
        status,
    }
}

/// A tonic interceptor adding `authorization: Bearer <token>` to every
/// call, when a token is set: for servers started with tokens.
///
/// ```
/// use count_client::BearerToken;
///
/// let token = BearerToken::new(Some("ingest-token-0123456789"))?;
/// # Ok::<(), count_client::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct BearerToken(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl BearerToken {
    /// Presents `token`, or nothing when `None`.
    pub fn new(token: Option<&str>) -> Result<Self, Error> {
        match token {
            Some(token) => Ok(BearerToken(Some(
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| Error::Token)?,
            ))),
            None => Ok(BearerToken(None)),
        }
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "BearerToken(***)"
        } else {
            "BearerToken(None)"
        })
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// How a [`Counter`] delivers; see [`CounterBuilder`] for the defaults.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) bearer_token: BearerToken,
    pub(crate) producer_id: String,
    pub(crate) flush_interval: Duration,
    pub(crate) max_batch_keys: usize,
    pub(crate) max_batch_bytes: usize,
    pub(crate) max_entry_count: u64,
    pub(crate) max_pending_keys: usize,
}

/// What the handles and the delivery task share.
pub(crate) struct Shared {
    pub(crate) tally: Tally,
    pub(crate) stats: StatCounters,
    /// Keys taken from the tally and not yet delivered (queued or in
    /// flight): they count against `max_pending_keys` too.
    pub(crate) queued_keys: AtomicUsize,
    /// Wakes the delivery task when the tally holds a batch's worth of keys.
    pub(crate) full: Notify,
    /// Wakes `record_wait` callers when delivery made room.
    pub(crate) room: Notify,
}

/// Records requests and delivers their counts to a count server.
///
/// Cheap to clone; every clone feeds the same tally. `record` never blocks
/// and never fails: it adds to an in-memory count by (method, path, minute),
/// and a background task sends those counts with `AddBatch`, exactly once,
/// retrying through outages. Memory is bounded by `max_pending_keys` keys
/// held (each thread records in a shard of its own, so a key recorded on
/// several threads is held once for each, in at most 16 shards); past it,
/// records of new keys are dropped and counted in [`Stats::dropped`] while
/// existing keys keep counting.
///
/// ```no_run
/// # async fn demo() -> Result<(), count_client::Error> {
/// use count_client::{Counter, Method};
///
/// let counter = Counter::builder("http://127.0.0.1:7777").build()?;
/// counter.record(Method::Get, "/users/{id}");
/// counter.flush().await; // everything recorded so far is delivered
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Counter {
    shared: Arc<Shared>,
    config: Arc<Config>,
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counter")
            .field("producer_id", &self.config.producer_id)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Configures a [`Counter`].
#[derive(Debug, Clone)]
pub struct CounterBuilder {
    url: String,
    bearer_token: Option<String>,
    tls: Option<ClientTlsConfig>,
    producer_id: Option<String>,
    flush_interval: Duration,
    max_batch_keys: usize,
    max_batch_bytes: usize,
    max_entry_count: u64,
    max_pending_keys: usize,
    request_timeout: Duration,
}

impl CounterBuilder {
    /// Identifies this counter to the server's exactly-once bookkeeping
    /// [default: `pid-<pid>-<random>`, unique per counter].
    ///
    /// A stable id (the service's name and host, say) may be reused by the
    /// next run of a process: sequences start from the clock, so the new run
    /// continues above the old one. Processes running at the same time
    /// should not share an id: their batches still all arrive, but each
    /// overtaken batch costs a round trip (see [`Stats::duplicates`]), and a
    /// batch whose answer was lost could be mistaken for applied.
    ///
    /// [`Stats::duplicates`]: crate::Stats::duplicates
    pub fn producer_id(mut self, id: impl Into<String>) -> Self {
        self.producer_id = Some(id.into());
        self
    }

    /// The bearer token to present (a server with tokens needs one with the
    /// `ingest` role) [default: none].
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// TLS settings for an `https://` server: a private CA, a client
    /// identity for mutual TLS [default for `https://`: the system's roots].
    pub fn tls(mut self, tls: ClientTlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// How often the tally is sent [default: 1 s].
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Most keys per `AddBatch`, and how many keys wake the sender before
    /// the interval [default: 5,000].
    pub fn max_batch_keys(mut self, keys: usize) -> Self {
        self.max_batch_keys = keys.max(1);
        self
    }

    /// Most bytes per `AddBatch` message [default: 1 MiB, a quarter of the
    /// server's default `--max-message-bytes`]. A batch the server still
    /// refuses as too large is split and resent, and later batches are
    /// made smaller.
    pub fn max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes.max(1);
        self
    }

    /// Most requests one entry carries: a key counting more is sent as
    /// several entries [default: 1,000,000,000, the server's default
    /// `--max-entry-count`].
    pub fn max_entry_count(mut self, requests: u64) -> Self {
        // An entry's count is an int64 on the wire.
        self.max_entry_count = requests.clamp(1, i64::MAX as u64);
        self
    }

    /// Most (series, minute) keys held in memory, queued and in flight
    /// included [default: 100,000]. Each thread records in a shard of its
    /// own, so a key recorded on several threads is held once for each (in
    /// at most 16 shards) until the next flush adds the copies up. Enforced
    /// per recording thread, so it may be exceeded by at most the number of
    /// threads recording.
    pub fn max_pending_keys(mut self, keys: usize) -> Self {
        self.max_pending_keys = keys;
        self
    }

    /// How long one `AddBatch` call may take before it is resent
    /// [default: 10 s].
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Starts the counter's delivery task on the current tokio runtime. The
    /// server need not be up: the connection is made, and remade, as needed.
    pub fn build(self) -> Result<Counter, Error> {
        let endpoint_error = |source| Error::Endpoint {
            url: self.url.clone(),
            source,
        };
        let mut endpoint = Endpoint::from_shared(self.url.clone())
            .map_err(endpoint_error)?
            .connect_timeout(self.request_timeout)
            .timeout(self.request_timeout);
        let tls = match self.tls.clone() {
            Some(tls) => Some(tls),
            None if self.url.starts_with("https:") => {
                Some(ClientTlsConfig::new().with_native_roots())
            }
            None => None,
        };
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls).map_err(endpoint_error)?;
        }
        let config = Config {
            bearer_token: BearerToken::new(self.bearer_token.as_deref())?,
            producer_id: self.producer_id.unwrap_or_else(|| {
                format!("pid-{}-{:016x}", std::process::id(), fastrand::u64(..))
            }),
            flush_interval: self.flush_interval,
            max_batch_keys: self.max_batch_keys,
            max_batch_bytes: self.max_batch_bytes,
            max_entry_count: self.max_entry_count,
            max_pending_keys: self.max_pending_keys,
        };
        let shared = Arc::new(Shared {
            tally: Tally::new(16),
            stats: StatCounters::default(),
            queued_keys: AtomicUsize::new(0),
            full: Notify::new(),
            room: Notify::new(),
        });
        let (commands, receiver) = mpsc::unbounded_channel();
        let delivery = Delivery::new(
            shared.clone(),
            config.clone(),
            endpoint.connect_lazy(),
            receiver,
        );
        tokio::spawn(delivery.run());
        Ok(Counter {
            shared,
            config: Arc::new(config),
            commands,
        })
    }
}

impl Counter {
    /// A builder for a counter delivering to the count server at `url`
    /// (e.g. `http://127.0.0.1:7777`).
    pub fn builder(url: impl Into<String>) -> CounterBuilder {
        CounterBuilder {
            url: url.into(),
            bearer_token: None,
            tls: None,
            producer_id: None,
            flush_interval: Duration::from_secs(1),
            max_batch_keys: 5_000,
            max_batch_bytes: 1024 * 1024,
            max_entry_count: 1_000_000_000,
            max_pending_keys: 100_000,
            request_timeout: Duration::from_secs(10),
        }
    }

    /// Counts one request now. Never blocks, never fails: a request that
    /// cannot be kept (a new key over capacity, an empty or over-long path,
    /// a path with control characters) is dropped and counted in
    /// [`Stats::dropped`]. `Method::Unspecified` stands for any method
    /// outside the enum: the server counts it under `OTHER`.
    pub fn record(&self, method: Method, path: &str) {
        self.record_count(method, path, 1);
    }

    /// Counts `count` requests now, as [`Counter::record`] does one.
    pub fn record_count(&self, method: Method, path: &str, count: u64) {
        let _ = self.try_record(series(method, path, "", None), count);
    }

    /// Counts one request for `tenant` (`""` for none) that ended with
    /// `status`: the HTTP status code, or for `Method::Grpc` the gRPC
    /// status code (0 is OK); `None` when unknown. As [`Counter::record`],
    /// it never blocks or fails, and a key held already costs no
    /// allocation. A tenant the server would refuse (over 256 bytes, or with
    /// control characters) counts as none, and a status outside its
    /// method's range (100-599, or 0-16 for gRPC) as unknown.
    pub fn record_response(&self, method: Method, path: &str, tenant: &str, status: Option<u16>) {
        let _ = self.try_record(series(method, path, tenant, status), 1);
    }

    /// Counts one request, waiting for room instead of dropping it when the
    /// counter is at capacity (the original client's blocking `Queue`).
    pub async fn record_wait(&self, method: Method, path: &str) {
        loop {
            // Registered before trying, so a wake-up in between is not lost.
            let room = self.shared.room.notified();
            if self.try_record(series(method, path, "", None), 1) {
                return;
            }
            room.await;
        }
    }

    /// Records, or drops for good (invalid input); false only when the
    /// counter is full, so that `record_wait` can wait and retry.
    fn try_record(&self, series: Series<'_>, count: u64) -> bool {
        if count == 0 {
            return true;
        }
        if !valid_path(series.path) {
            self.shared.stats.refused(count);
            return true;
        }
        let series = servable(series);
        // To the minute, as the server keeps counts: the finest any read
        // asks for.
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let minute = second - second % 60;
        let max = self.config.max_pending_keys;
        let queued = self.shared.queued_keys.load(Ordering::Relaxed);
        let recorded = self
            .shared
            .tally
            .record(series, minute, count, |held| held + queued < max);
        match recorded {
            Recorded::Full => {
                self.shared.stats.refused(count);
                return false;
            }
            Recorded::New if self.shared.tally.keys() >= self.config.max_batch_keys => {
                self.shared.full.notify_one();
            }
            Recorded::New | Recorded::Existing => {}
        }
        true
    }

    /// What this counter has done so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats.snapshot(|| self.shared.tally.recorded())
    }

    /// Waits until everything recorded before the call is delivered (or
    /// given up). While the server is unreachable this waits; bound it with
    /// a timeout, or use [`Counter::shutdown`].
    pub async fn flush(&self) {
        let (answer, done) = oneshot::channel();
        if self.commands.send(Command::Flush(answer)).is_ok() {
            let _ = done.await;
        }
    }

    /// Delivers everything recorded, waiting at most `deadline`. Returns the
    /// final stats, or how many requests could not be delivered in time.
    pub async fn shutdown(self, deadline: Duration) -> Result<Stats, Error> {
        let _ = tokio::time::timeout(deadline, self.flush()).await;
        let stats = self.stats();
        if stats.pending > 0 {
            return Err(Error::Undelivered {
                requests: stats.pending,
            });
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_or_status_the_server_would_refuse_still_counts_without_it() {
        let kept = servable(series(Method::Get, "/a", "acme", Some(503)));
        assert_eq!((kept.tenant, kept.status), ("acme", Some(503)));
        let long = "t".repeat(257);
        for (method, tenant, status, expected) in [
            (Method::Get, "a\tb", Some(200), ("", Some(200))),
            (Method::Get, long.as_str(), Some(200), ("", Some(200))),
            (Method::Get, "acme", Some(600), ("acme", None)),
            (Method::Get, "acme", Some(0), ("acme", None)),
            (Method::Grpc, "acme", Some(0), ("acme", Some(0))),
            (Method::Grpc, "acme", Some(17), ("acme", None)),
        ] {
            let series = servable(series(method, "/a", tenant, status));
            assert_eq!(
                (series.tenant, series.status),
                expected,
                "{tenant} {status:?}"
            );
        }
    }
}
