//! The `count.v1.CountService` handlers: thin adapters from gRPC to
//! [`crate::ingest`] and [`crate::db::store::Store`].

use count_proto::v1::count_service_server::CountService;
use count_proto::v1::{
    AddBatchRequest, AddBatchResponse, AddRequest, AddResponse, CountDailyTotalsRequest,
    CountDailyTotalsResponse, GetPeriodTotalsRequest, GetPeriodTotalsResponse, GetTotalsRequest,
    GetTotalsResponse, ListDailyTotalsRequest, ListDailyTotalsResponse, Method, MethodCount,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::BoundTenant;
use crate::dates;
use crate::db::store::Total;
use crate::entry::method_of_stored;
use crate::error::Error;
use crate::ingest::IngestConfig;
use crate::ingest::{ingest_batch, ingest_stream};
use crate::query;
use crate::state::State;

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
        // In a task of its own: when the client cancels the call, the
        // handler is dropped, but the stream still commits what the server
        // read (its in-memory aggregate and a batch waiting for the flush
        // before it), as the original service did.
        let permit = self.state.admit_call()?;
        let store = self.state.store()?.clone();
        let (series, config, drain) = (self.state.series.clone(), self.config, self.drain.clone());
        let bound = request.extensions().get::<BoundTenant>().cloned();
        let messages = request.into_inner();
        let stream = tokio::spawn(async move {
            // Held until the stream's task ends, not the handler.
            let _permit = permit;
            ingest_stream(store, series, config, messages, drain, bound).await
        });
        let response = stream
            .await
            .map_err(|e| Error::Task(format!("Add stream task failed: {e}")))??;
        Ok(Response::new(response))
    }

    async fn count_daily_totals(
        &self,
        request: Request<CountDailyTotalsRequest>,
    ) -> Result<Response<CountDailyTotalsResponse>, Status> {
        let day = dates::day(request.into_inner().date, "date")?;
        let moved = self.state.store()?.rollup(day).await?;
        tracing::debug!(%day, moved, "rolled up");
        // Admin tokens only, which no tenant binds: every tenant's totals.
        let totals = self.state.store()?.daily_totals(day, day, None).await?;
        Ok(Response::new(CountDailyTotalsResponse {
            method_counts: method_counts(totals),
        }))
    }

    async fn list_daily_totals(
        &self,
        request: Request<ListDailyTotalsRequest>,
    ) -> Result<Response<ListDailyTotalsResponse>, Status> {
        let tenant = bound_tenant(&request);
        let request = request.into_inner();
        let start = dates::day(request.start_date, "start_date")?;
        let end = dates::day(request.end_date, "end_date")?;
        if end < start {
            return Err(
                Error::invalid("end_date", format!("{end} is before start_date {start}")).into(),
            );
        }
        let totals = self
            .state
            .store()?
            .daily_totals(start, end, tenant.as_deref())
            .await?;
        if totals.is_empty() {
            return Err(Error::NotFound(format!("no totals from {start} to {end}")).into());
        }
        Ok(Response::new(ListDailyTotalsResponse {
            method_counts: method_counts(totals),
        }))
    }

    async fn get_period_totals(
        &self,
        request: Request<GetPeriodTotalsRequest>,
    ) -> Result<Response<GetPeriodTotalsResponse>, Status> {
        let tenant = bound_tenant(&request);
        let (first, last) = dates::period(request.into_inner().period, "period")?;
        let totals = self
            .state
            .store()?
            .period_totals(first, last, tenant.as_deref())
            .await?;
        if totals.is_empty() {
            return Err(Error::NotFound(format!("no totals from {first} to {last}")).into());
        }
        Ok(Response::new(GetPeriodTotalsResponse {
            method_counts: method_counts(totals),
        }))
    }

    async fn add_batch(
        &self,
        request: Request<AddBatchRequest>,
    ) -> Result<Response<AddBatchResponse>, Status> {
        let _permit = self.state.admit_call()?;
        let bound = request.extensions().get::<BoundTenant>().cloned();
        let response = ingest_batch(
            self.state.store()?,
            &self.state.series,
            &self.config,
            request.into_inner(),
            bound.as_ref(),
        )
        .await?;
        Ok(Response::new(response))
    }

    async fn get_totals(
        &self,
        request: Request<GetTotalsRequest>,
    ) -> Result<Response<GetTotalsResponse>, Status> {
        let bound = request.extensions().get::<BoundTenant>().cloned();
        let query = query::totals_query(request.into_inner(), bound.as_ref())?;
        // Taken before the read's snapshot: everything committed before it
        // is in the answer.
        let as_of = chrono::Utc::now();
        let rows = self.state.store()?.totals(&query).await?;
        Ok(Response::new(GetTotalsResponse {
            totals: rows.into_iter().map(query::total).collect(),
            as_of: Some(query::timestamp(as_of)),
        }))
    }
}

/// The tenant a bound token restricts `request` to: the old reads then
/// sum over that tenant only.
fn bound_tenant<T>(request: &Request<T>) -> Option<String> {
    request
        .extensions()
        .get::<BoundTenant>()
        .map(|BoundTenant(tenant)| tenant.clone())
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
