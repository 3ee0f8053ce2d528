//! The `count.v1.CountService` handlers: thin adapters from gRPC to
//! [`crate::ingest`] and [`Store`].

use count_proto::v1::count_service_server::CountService;
use count_proto::v1::{
    AddBatchRequest, AddBatchResponse, AddRequest, AddResponse, CountDailyTotalsRequest,
    CountDailyTotalsResponse, GetPeriodTotalsRequest, GetPeriodTotalsResponse,
    ListDailyTotalsRequest, ListDailyTotalsResponse, Method, MethodCount,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use crate::aggregate::Aggregate;
use crate::config::IngestConfig;
use crate::dates;
use crate::entry::Clock;
use crate::error::Error;
use crate::ingest::ingest_stream;
use crate::metrics;
use crate::state::State;
use crate::store::Total;

/// The longest producer id accepted, in bytes.
const MAX_PRODUCER_ID_BYTES: usize = 256;

/// The service implementation; cheap to clone.
#[derive(Debug, Clone)]
pub struct CountApi {
    state: State,
    config: IngestConfig,
    drain: watch::Receiver<bool>,
}

impl CountApi {
    /// A service over `state`; open `Add` streams end when `drain` turns true.
    pub fn new(state: State, config: IngestConfig, drain: watch::Receiver<bool>) -> Self {
        CountApi {
            state,
            config,
            drain,
        }
    }
}

#[tonic::async_trait]
impl CountService for CountApi {
    async fn add(
        &self,
        request: Request<Streaming<AddRequest>>,
    ) -> Result<Response<AddResponse>, Status> {
        let response = ingest_stream(
            self.state.clone(),
            self.config,
            request.into_inner(),
            self.drain.clone(),
        )
        .await?;
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
            return Err(Error::invalid(
                "entries",
                format!(
                    "{} entries, the limit is {}",
                    request.entries.len(),
                    self.config.max_batch_entries
                ),
            )
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
        for (index, entry) in request.entries.into_iter().enumerate() {
            self.config
                .rules
                .check(entry, &mut clock)
                .and_then(|entry| aggregate.add(entry, |m, p| self.state.endpoints.admit(m, p)))
                .map_err(|e| match e {
                    Error::InvalidArgument { field, reason } => {
                        metrics::rejected("add_batch", &field);
                        Error::invalid(format!("entries[{index}].{field}"), reason)
                    }
                    Error::ResourceExhausted(reason) => {
                        metrics::rejected("add_batch", "endpoint");
                        Error::ResourceExhausted(format!("entries[{index}]: {reason}"))
                    }
                    other => other,
                })?;
        }
        metrics::accepted("add_batch", entries);
        let batch = aggregate.take_batch();
        let started = std::time::Instant::now();
        let applied = self
            .state
            .store()?
            .add_batch(Some((&request.producer_id, sequence)), &batch)
            .await?;
        metrics::batch(applied.is_none());
        metrics::committed("add_batch", applied.unwrap_or(0), started.elapsed());
        Ok(Response::new(AddBatchResponse {
            accepted: applied.unwrap_or(0),
            duplicate: applied.is_none(),
        }))
    }
}

fn method_counts(totals: Vec<Total>) -> Vec<MethodCount> {
    totals
        .into_iter()
        .map(|total| MethodCount {
            // count.add_batch accepts only the enum's names.
            method: Method::from_str_name(&total.method).unwrap_or(Method::Unspecified) as i32,
            path: total.path,
            count: total.total,
            date: total.day.map(dates::to_proto),
        })
        .collect()
}
