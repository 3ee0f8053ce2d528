//! The `count.v1.CountService` handlers: thin adapters from gRPC to
//! [`crate::ingest`] and [`Store`].

use count_proto::v1::count_service_server::CountService;
use count_proto::v1::{
    AddBatchRequest, AddBatchResponse, AddRequest, AddResponse, CountDailyTotalsRequest,
    CountDailyTotalsResponse, GetPeriodTotalsRequest, GetPeriodTotalsResponse,
    ListDailyTotalsRequest, ListDailyTotalsResponse, Method, MethodCount,
};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tonic::{Request, Response, Status, Streaming};

use crate::aggregate::Aggregate;
use crate::config::IngestConfig;
use crate::dates;
use crate::entry::{Clock, method_of_stored};
use crate::error::{Error, Refusal};
use crate::ingest::ingest_stream;
use crate::metrics;
use crate::state::State;
use crate::store::Total;

/// The longest producer id accepted, in bytes.
const MAX_PRODUCER_ID_BYTES: usize = 256;

/// How many refused entries an `AddBatch` error names at most: they travel
/// in the status's trailers, which HTTP/2 peers bound (16 KiB is common). A
/// client resending the rest learns of further refusals on the next try.
const MAX_REFUSALS: usize = 100;

/// The service implementation; cheap to clone.
#[derive(Debug, Clone)]
pub struct CountApi {
    state: State,
    config: IngestConfig,
    drain: watch::Receiver<bool>,
    /// One permit per `Add` stream or `AddBatch` call being served: memory
    /// is bounded per call, and this bounds the calls.
    calls: Arc<Semaphore>,
}

impl CountApi {
    /// A service over `state`; open `Add` streams end when `drain` turns true.
    pub fn new(state: State, config: IngestConfig, drain: watch::Receiver<bool>) -> Self {
        CountApi {
            state,
            config,
            drain,
            calls: Arc::new(Semaphore::new(config.max_calls)),
        }
    }

    /// A permit to serve one ingest call, or RESOURCE_EXHAUSTED when
    /// `max_calls` are being served (the client library retries that).
    fn admit_call(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.calls.clone().try_acquire_owned().map_err(|_| {
            Error::ResourceExhausted(format!(
                "server busy: {} Add streams and AddBatch calls are being served, \
                 the limit of --max-ingest-calls; retry",
                self.config.max_calls
            ))
            .into()
        })
    }
}

#[tonic::async_trait]
impl CountService for CountApi {
    async fn add(
        &self,
        request: Request<Streaming<AddRequest>>,
    ) -> Result<Response<AddResponse>, Status> {
        // In a task of its own: when the client cancels the call, the
        // handler is dropped, but the stream still commits what the server
        // read (its in-memory aggregate and a batch waiting for the flush
        // before it), as the original service did.
        let permit = self.admit_call()?;
        let (state, config, drain) = (self.state.clone(), self.config, self.drain.clone());
        let messages = request.into_inner();
        let stream = tokio::spawn(async move {
            // Held until the stream's task ends, not the handler.
            let _permit = permit;
            ingest_stream(state, config, messages, drain).await
        });
        let response = stream
            .await
            .map_err(|e| Status::internal(format!("Add stream task failed: {e}")))??;
        Ok(Response::new(response))
    }

    async fn count_daily_totals(
        &self,
        request: Request<CountDailyTotalsRequest>,
    ) -> Result<Response<CountDailyTotalsResponse>, Status> {
        let day = dates::day(request.into_inner().date, "date")?;
        let moved = self.state.store()?.rollup(day).await?;
        tracing::debug!(%day, moved, "rolled up");
        let totals = self.state.store()?.daily_totals(day, day).await?;
        Ok(Response::new(CountDailyTotalsResponse {
            method_counts: method_counts(totals),
        }))
    }

    async fn list_daily_totals(
        &self,
        request: Request<ListDailyTotalsRequest>,
    ) -> Result<Response<ListDailyTotalsResponse>, Status> {
        let request = request.into_inner();
        let start = dates::day(request.start_date, "start_date")?;
        let end = dates::day(request.end_date, "end_date")?;
        if end < start {
            return Err(
                Error::invalid("end_date", format!("{end} is before start_date {start}")).into(),
            );
        }
        let totals = self.state.store()?.daily_totals(start, end).await?;
        if totals.is_empty() {
            return Err(
                Error::NotFound(format!("no rolled-up totals from {start} to {end}")).into(),
            );
        }
        Ok(Response::new(ListDailyTotalsResponse {
            method_counts: method_counts(totals),
        }))
    }

    async fn get_period_totals(
        &self,
        request: Request<GetPeriodTotalsRequest>,
    ) -> Result<Response<GetPeriodTotalsResponse>, Status> {
        let (first, last) = dates::period(request.into_inner().period, "period")?;
        let totals = self.state.store()?.period_totals(first, last).await?;
        if totals.is_empty() {
            return Err(
                Error::NotFound(format!("no rolled-up totals from {first} to {last}")).into(),
            );
        }
        Ok(Response::new(GetPeriodTotalsResponse {
            method_counts: method_counts(totals),
        }))
    }

    async fn add_batch(
        &self,
        request: Request<AddBatchRequest>,
    ) -> Result<Response<AddBatchResponse>, Status> {
        let _permit = self.admit_call()?;
        let request = request.into_inner();
        if request.producer_id.is_empty() {
            return Err(Error::invalid("producer_id", "must not be empty").into());
        }
        if request.producer_id.len() > MAX_PRODUCER_ID_BYTES {
            return Err(Error::invalid(
                "producer_id",
                format!(
                    "is {} bytes long, the limit is {MAX_PRODUCER_ID_BYTES}",
                    request.producer_id.len()
                ),
            )
            .into());
        }
        if request.entries.len() > self.config.max_batch_entries {
            return Err(Error::TooLarge {
                field: "entries".to_owned(),
                reason: format!(
                    "{} entries, the limit is {}",
                    request.entries.len(),
                    self.config.max_batch_entries
                ),
            }
            .into());
        }
        let sequence = i64::try_from(request.sequence).map_err(|_| {
            Error::invalid(
                "sequence",
                format!("must be at most {}, got {}", i64::MAX, request.sequence),
            )
        })?;
        let mut clock = Clock::system();
        let mut aggregate = Aggregate::default();
        let entries = request.entries.len() as u64;
        metrics::received("add_batch", entries);
        let mut refusals = Vec::new();
        for (index, entry) in request.entries.into_iter().enumerate() {
            let added = self
                .config
                .rules
                .check(entry, &mut clock)
                .and_then(|entry| aggregate.add(entry, |m, p| self.state.endpoints.admit(m, p)));
            let refusal = match added {
                Ok(()) => continue,
                Err(Error::InvalidArgument { field, reason }) => {
                    metrics::rejected("add_batch", &field);
                    Refusal {
                        field: format!("entries[{index}].{field}"),
                        reason,
                        over_cap: false,
                    }
                }
                Err(Error::ResourceExhausted(reason)) => {
                    metrics::rejected("add_batch", "endpoint");
                    Refusal {
                        field: format!("entries[{index}]"),
                        reason,
                        over_cap: true,
                    }
                }
                Err(other) => return Err(other.into()),
            };
            if refusals.len() < MAX_REFUSALS {
                refusals.push(refusal);
            }
        }
        let store = self.state.store()?;
        if !refusals.is_empty() {
            // A resend of a batch applied before the limits were tightened
            // is still a duplicate, not a refusal.
            if let Some(last) = store.last_sequence(&request.producer_id).await?
                && last >= sequence
            {
                metrics::batch(true);
                return Ok(Response::new(duplicate(last)));
            }
            return Err(Error::EntriesRefused(refusals).into());
        }
        metrics::accepted("add_batch", entries);
        let batch = aggregate.take_batch();
        let started = std::time::Instant::now();
        let applied = store
            .add_batch(Some((&request.producer_id, sequence)), &batch)
            .await?;
        metrics::batch(applied.is_none());
        metrics::committed("add_batch", applied.unwrap_or(0), started.elapsed());
        let Some(accepted) = applied else {
            let last = store.last_sequence(&request.producer_id).await?;
            return Ok(Response::new(duplicate(last.unwrap_or(sequence))));
        };
        Ok(Response::new(AddBatchResponse {
            accepted,
            duplicate: false,
            last_sequence: request.sequence,
        }))
    }
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

fn method_counts(totals: Vec<Total>) -> Vec<MethodCount> {
    totals
        .into_iter()
        .map(|total| MethodCount {
            // OTHER, and only it, reads back as METHOD_UNSPECIFIED.
            method: method_of_stored(&total.method).unwrap_or(Method::Unspecified) as i32,
            path: total.path,
            count: total.total,
            date: total.day.map(dates::to_proto),
        })
        .collect()
}
