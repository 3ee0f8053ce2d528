//! The ingest core, shared by every server that takes counts: an `Add`
//! stream (validate each message, aggregate in memory, flush to the
//! database in the background while the stream goes on) and an `AddBatch`
//! (validate every entry, apply the batch exactly once per producer and
//! sequence). The gRPC handlers in [`crate::api`] only adapt to these: the
//! core takes a store handle, the endpoint guard and its own
//! [`IngestConfig`], and answers with this crate's [`Error`], so that
//! another server (the HTTP API the web interface brings) can share it
//! without tonic.
//!
//! Memory is bounded per stream: at most two aggregates exist, the one being
//! filled and the one being written. When the one being filled is full and the
//! write has not finished, the stream is not read further, and HTTP/2 flow
//! control pushes back on the client.

use std::pin::pin;
use std::time::Duration;

use count_proto::v1::{AddBatchRequest, AddBatchResponse, AddRequest, AddResponse};
use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use crate::aggregate::Aggregate;
use crate::auth::BoundTenant;
use crate::db::store::FlushBatch;
use crate::db::store::Store;
use crate::defaults;
use crate::entry::Clock;
use crate::entry::EntryRules;
use crate::error::{Error, Refusal, RefusalKind};
use crate::metrics;
use crate::series::KnownSeries;

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
    /// The most distinct series (tenant, method, path, status code) the
    /// database may hold.
    pub max_series: usize,
    /// The most series of any one tenant, if capped.
    pub max_series_per_tenant: Option<usize>,
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
            max_series: defaults::MAX_SERIES,
            max_series_per_tenant: None,
            max_calls: defaults::MAX_INGEST_CALLS,
        }
    }
}

/// How many received messages are handled at most between two looks at the
/// flush timer and the shutdown signal.
const READY_MESSAGES: usize = 128;

/// How many rejection reasons an `AddResponse` carries at most.
const MAX_REJECTIONS: usize = 10;

/// Consumes one `Add` stream and answers once everything it sent is
/// committed. When `drain` turns true (server shutdown after the grace
/// period), stops reading, commits what it has and answers.
pub async fn ingest_stream<S, E>(
    store: Store,
    series: std::sync::Arc<KnownSeries>,
    config: IngestConfig,
    mut stream: S,
    mut drain: watch::Receiver<bool>,
    bound: Option<BoundTenant>,
) -> Result<AddResponse, Error>
where
    S: Stream<Item = Result<AddRequest, E>> + Unpin,
    E: Into<Error> + std::fmt::Display,
{
    let mut aggregate = Aggregate::default();
    let mut writer = Writer::new(store);
    let mut response = AddResponse::default();
    let mut counted = StreamMetrics::default();
    // One timer and one drain future for the whole stream: creating them per
    // message registered a timer per message, which cost more than the rest
    // of the message's handling together.
    let flush_timer = sleep_until(Instant::now());
    let mut flush_timer = pin!(flush_timer);
    // Whether the timer is set for the oldest unflushed entry.
    let mut flush_armed = false;
    let mut drained = pin!(drained(&mut drain));
    let mut clock = Clock::system();
    'stream: loop {
        tokio::select! {
            () = &mut drained => {
                tracing::info!(received = counted.received, "server shutting down: ending an open Add stream");
                break;
            }
            () = &mut flush_timer, if flush_armed => {
                writer.write(aggregate.take_batch()).await?;
                flush_armed = false;
            }
            message = stream.next() => {
                // The messages already received are handled together:
                // going through the select for each one cost more than
                // handling it.
                let mut message = message;
                let mut budget = READY_MESSAGES;
                loop {
                    match message {
                        None => break 'stream,
                        Some(Ok(request)) => {
                            counted.received += 1;
                            let mut request = request;
                            let added = bind_tenant(&mut request, bound.as_ref())
                                .and_then(|()| config.rules.check(request, &mut clock))
                                .and_then(|entry| aggregate.add(entry, |s| series.admit(s)));
                            match added {
                                Ok(()) => {
                                    counted.accepted += 1;
                                    if !flush_armed {
                                        flush_timer.as_mut().reset(Instant::now() + config.flush_interval);
                                        flush_armed = true;
                                    }
                                }
                                Err(e) => reject(&mut response, counted.received, &e),
                            }
                            if aggregate.keys() >= config.max_batch_keys {
                                writer.write(aggregate.take_batch()).await?;
                                flush_armed = false;
                            }
                        }
                        Some(Err(broken)) => {
                            // The client is gone; what it sent is still
                            // counted, as the original service did.
                            tracing::debug!(%broken, received = counted.received, "Add stream broke");
                            writer.write(aggregate.take_batch()).await?;
                            writer.finish().await?;
                            return Err(broken.into());
                        }
                    }
                    budget -= 1;
                    if budget == 0 {
                        break;
                    }
                    match stream.next().now_or_never() {
                        Some(next) => message = next,
                        None => break,
                    }
                }
            }
        }
    }
    writer.write(aggregate.take_batch()).await?;
    writer.finish().await?;
    response.accepted = writer.committed;
    Ok(response)
}

/// Received and accepted entries of one stream, reported to the metrics once
/// when the stream ends however it ends (not per message: that is the hot
/// path).
#[derive(Default)]
struct StreamMetrics {
    received: u64,
    accepted: u64,
}

impl Drop for StreamMetrics {
    fn drop(&mut self) {
        metrics::received("add", self.received);
        metrics::accepted("add", self.accepted);
    }
}

/// Counts a rejected entry of `rpc` in the metrics, by the field at fault
/// (`tenant` for another tenant than its token's, `endpoint` for the series
/// caps: the label's value since 0.1.0).
fn count_rejection(rpc: &'static str, error: &Error) {
    match error {
        Error::InvalidArgument { field, .. } | Error::OtherTenant { field, .. } => {
            metrics::rejected(rpc, field)
        }
        _ => metrics::rejected(rpc, "endpoint"),
    }
}

fn reject(response: &mut AddResponse, message: u64, error: &Error) {
    count_rejection("add", error);
    response.rejected += 1;
    if response.rejections.len() < MAX_REJECTIONS {
        response
            .rejections
            .push(format!("message {message}: {error}"));
    }
}

/// Resolves when `drain` is true; never, if its sender is gone.
async fn drained(drain: &mut watch::Receiver<bool>) {
    if drain.wait_for(|draining| *draining).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Writes a stream's batches one at a time in the background.
struct Writer {
    store: Store,
    in_flight: Option<JoinHandle<Result<i64, Error>>>,
    /// Requests committed so far by this stream.
    committed: i64,
}

impl Writer {
    fn new(store: Store) -> Self {
        Writer {
            store,
            in_flight: None,
            committed: 0,
        }
    }

    /// Waits for the previous write, then starts writing `batch`. The write
    /// runs in its own task, so it completes even if the stream's handler is
    /// dropped.
    async fn write(&mut self, batch: FlushBatch) -> Result<(), Error> {
        self.finish().await?;
        if batch.counts.is_empty() {
            return Ok(());
        }
        let store = self.store.clone();
        self.in_flight = Some(tokio::spawn(async move {
            let started = std::time::Instant::now();
            let requests = store.add_batch(None, &batch).await?.unwrap_or(0);
            metrics::committed("add", requests, started.elapsed());
            Ok(requests)
        }));
        Ok(())
    }

    /// Waits for the write in flight, if any.
    async fn finish(&mut self) -> Result<(), Error> {
        let Some(handle) = self.in_flight.take() else {
            return Ok(());
        };
        let result = handle
            .await
            .map_err(|join| Error::Task(format!("flush task failed: {join}")))?;
        match result {
            Ok(requests) => {
                self.committed += requests;
                Ok(())
            }
            Err(error) => Err(Error::Flush {
                committed: self.committed,
                source: Box::new(error),
            }),
        }
    }
}

/// The longest producer id accepted, in bytes.
const MAX_PRODUCER_ID_BYTES: usize = 256;

/// How many refused entries an `AddBatch` error names at most: they travel
/// in the status's trailers, which HTTP/2 peers bound (16 KiB is common). A
/// client resending the rest learns of further refusals on the next try.
const MAX_REFUSALS: usize = 100;

/// Validates, aggregates and applies one `AddBatch`, exactly once per
/// (producer, sequence). Refused entries refuse the batch, each named
/// ([`Error::EntriesRefused`]), unless it was applied before.
pub async fn ingest_batch(
    store: &Store,
    series: &KnownSeries,
    config: &IngestConfig,
    request: AddBatchRequest,
    bound: Option<&BoundTenant>,
) -> Result<AddBatchResponse, Error> {
    let AddBatchRequest {
        producer_id,
        sequence,
        entries,
    } = request;
    ingest_entries(
        store,
        series,
        config,
        Some((&producer_id, sequence)),
        entries,
        bound,
    )
    .await
}

/// Applies the tenant of a bound token to `entry`: an empty tenant becomes
/// it, another is refused. (Unbound tokens write any tenant.)
fn bind_tenant(entry: &mut AddRequest, bound: Option<&BoundTenant>) -> Result<(), Error> {
    let Some(BoundTenant(tenant)) = bound else {
        return Ok(());
    };
    if entry.tenant.is_empty() {
        entry.tenant.clone_from(tenant);
    } else if entry.tenant != *tenant {
        return Err(Error::OtherTenant {
            field: "tenant".to_owned(),
            reason: format!("this token writes tenant {tenant:?} only"),
        });
    }
    Ok(())
}

/// The producer id a batch is recorded under: a bound token's producers
/// are its tenant's own, so that one tenant cannot move another's
/// sequences on (and so have its batches taken for duplicates). The unit
/// separator cannot occur in a tenant (no control characters).
fn producer_of(id: &str, bound: Option<&BoundTenant>) -> String {
    match bound {
        Some(BoundTenant(tenant)) => format!("{tenant}\u{1f}{id}"),
        None => id.to_owned(),
    }
}

/// [`ingest_batch`] with its producer and sequence optional: without them
/// (an HTTP post that has none) the entries are applied once per call, as
/// an `Add` stream's flush is, and no producer is recorded.
pub async fn ingest_entries(
    store: &Store,
    series: &KnownSeries,
    config: &IngestConfig,
    producer: Option<(&str, u64)>,
    entries: Vec<AddRequest>,
    bound: Option<&BoundTenant>,
) -> Result<AddBatchResponse, Error> {
    let producer = match producer {
        None => None,
        Some((id, sequence)) => {
            let (id, sequence) = checked_producer(id, sequence)?;
            Some((producer_of(id, bound), sequence))
        }
    };
    let producer = producer
        .as_ref()
        .map(|(id, sequence)| (id.as_str(), *sequence));
    if entries.len() > config.max_batch_entries {
        return Err(Error::TooLarge {
            field: "entries".to_owned(),
            reason: format!(
                "{} entries, the limit is {}",
                entries.len(),
                config.max_batch_entries
            ),
        });
    }
    let mut clock = Clock::system();
    let mut aggregate = Aggregate::default();
    let count = entries.len() as u64;
    metrics::received("add_batch", count);
    let mut refusals = Vec::new();
    for (index, mut entry) in entries.into_iter().enumerate() {
        let added = bind_tenant(&mut entry, bound)
            .and_then(|()| config.rules.check(entry, &mut clock))
            .and_then(|entry| aggregate.add(entry, |s| series.admit(s)));
        let Err(error) = added else { continue };
        count_rejection("add_batch", &error);
        let refusal = match error {
            Error::InvalidArgument { field, reason } => Refusal {
                field: format!("entries[{index}].{field}"),
                reason,
                kind: RefusalKind::Invalid,
            },
            Error::OtherTenant { field, reason } => Refusal {
                field: format!("entries[{index}].{field}"),
                reason,
                kind: RefusalKind::OtherTenant,
            },
            Error::ResourceExhausted(reason) => Refusal {
                field: format!("entries[{index}]"),
                reason,
                kind: RefusalKind::OverCap,
            },
            other => return Err(other),
        };
        if refusals.len() < MAX_REFUSALS {
            refusals.push(refusal);
        }
    }
    if !refusals.is_empty() {
        // A resend of a batch applied before the limits were tightened
        // is still a duplicate, not a refusal.
        if let Some((id, sequence)) = producer
            && let Some(last) = store.last_sequence(id).await?
            && last >= sequence
        {
            metrics::batch(true);
            return Ok(duplicate(last));
        }
        return Err(Error::EntriesRefused(refusals));
    }
    metrics::accepted("add_batch", count);
    let batch = aggregate.take_batch();
    let started = std::time::Instant::now();
    let applied = store.add_batch(producer, &batch).await?;
    metrics::batch(applied.is_none());
    metrics::committed("add_batch", applied.unwrap_or(0), started.elapsed());
    let Some(accepted) = applied else {
        // Only a batch with a producer is ever a duplicate.
        let (id, sequence) = producer.unwrap_or_default();
        let last = store.last_sequence(id).await?;
        return Ok(duplicate(last.unwrap_or(sequence)));
    };
    Ok(AddBatchResponse {
        accepted,
        duplicate: false,
        last_sequence: producer.map_or(0, |(_, sequence)| u64::try_from(sequence).unwrap_or(0)),
    })
}

/// A producer id and sequence as the store takes them, or the error
/// naming the one at fault.
fn checked_producer(id: &str, sequence: u64) -> Result<(&str, i64), Error> {
    if id.is_empty() {
        return Err(Error::invalid("producer_id", "must not be empty"));
    }
    // A control character could forge a bound token's producer id
    // (`producer_of`: the tenant, U+001F, the id).
    if let Some(at) = id.find(char::is_control) {
        return Err(Error::invalid(
            "producer_id",
            format!("has a control character at byte {at}"),
        ));
    }
    if id.len() > MAX_PRODUCER_ID_BYTES {
        return Err(Error::invalid(
            "producer_id",
            format!(
                "is {} bytes long, the limit is {MAX_PRODUCER_ID_BYTES}",
                id.len()
            ),
        ));
    }
    let sequence = i64::try_from(sequence).map_err(|_| {
        Error::invalid(
            "sequence",
            format!("must be at most {}, got {sequence}", i64::MAX),
        )
    })?;
    Ok((id, sequence))
}

/// The answer to a batch applied before; `last` is the producer's last
/// applied sequence.
fn duplicate(last: i64) -> AddBatchResponse {
    AddBatchResponse {
        accepted: 0,
        duplicate: true,
        last_sequence: u64::try_from(last).unwrap_or(0),
    }
}
