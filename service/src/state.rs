//! What the handlers share, gRPC's and HTTP's: the store once the database
//! is connected, the endpoint guard, and the admission of ingest calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

use crate::db::connect::ConnectConfig;
use crate::db::store::{Schema, Store};
use crate::error::{Error, Result};
use crate::ingest::IngestConfig;
use crate::series::KnownSeries;

/// Where the server gets its store.
#[derive(Debug)]
pub enum StoreSource {
    /// Already open (tests, and callers that want start-up to fail fast).
    Open(Store),
    /// Opened in the background, retrying with backoff until the database
    /// answers; the server serves (answering UNAVAILABLE, health
    /// NOT_SERVING) meanwhile.
    Connect {
        /// How to connect.
        config: Box<ConnectConfig>,
        /// Most connections kept open.
        pool_size: usize,
        /// Whether to set the schema up first.
        schema: Schema,
    },
}

impl From<Store> for StoreSource {
    fn from(store: Store) -> Self {
        StoreSource::Open(store)
    }
}

/// The server's shared state; cheap to clone.
#[derive(Debug, Clone)]
pub struct State {
    store: Arc<OnceCell<Store>>,
    /// The cardinality guard.
    pub series: Arc<KnownSeries>,
    /// One permit per ingest call being served (`Add` streams, `AddBatch`,
    /// HTTP posts): memory is bounded per call, and this bounds the calls.
    calls: Arc<Semaphore>,
    max_calls: usize,
    /// What the server's health check last found (`/healthz` answers it).
    serving: Arc<AtomicBool>,
}

/// Longest wait between two attempts to open the store.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl State {
    /// State without a store yet, with `ingest`'s series caps, admitting
    /// at most its `max_calls` ingest calls at once.
    pub fn new(ingest: &IngestConfig) -> Self {
        State {
            store: Arc::new(OnceCell::new()),
            series: Arc::new(KnownSeries::new(
                ingest.max_series,
                ingest.max_series_per_tenant,
            )),
            calls: Arc::new(Semaphore::new(ingest.max_calls)),
            max_calls: ingest.max_calls,
            serving: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether the database answered the last health check.
    pub fn serving(&self) -> bool {
        self.serving.load(Ordering::Relaxed)
    }

    /// Records what a health check found.
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Relaxed);
    }

    /// A permit to serve one ingest call, or RESOURCE_EXHAUSTED when
    /// `max_calls` are being served (the client library retries that).
    pub fn admit_call(&self) -> Result<OwnedSemaphorePermit> {
        self.calls.clone().try_acquire_owned().map_err(|_| {
            Error::ResourceExhausted(format!(
                "server busy: {} ingest calls (Add streams, AddBatch calls, HTTP posts) are \
                 being served, the limit of --max-ingest-calls; retry",
                self.max_calls
            ))
        })
    }

    /// The store, or UNAVAILABLE while the database is not connected yet.
    pub fn store(&self) -> Result<&Store> {
        self.store.get().ok_or_else(|| {
            Error::Unavailable("the database is not connected yet; retry shortly".to_owned())
        })
    }

    /// Makes `store` the server's store once its series are loaded.
    pub async fn install(&self, store: Store) -> Result<()> {
        self.series.merge(store.series().await?);
        crate::metrics::backend(store.backend().name());
        tracing::info!(
            backend = store.backend().name(),
            series = self.series.len(),
            "database ready"
        );
        // Set once: only `connect` and `run`'s `Open` path call this.
        let _ = self.store.set(store);
        Ok(())
    }

    /// Opens the store with `config`, retrying with backoff until the
    /// database answers.
    pub async fn connect(&self, config: ConnectConfig, pool_size: usize, schema: Schema) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let store = Store::connect(config.clone(), pool_size, schema).await;
            let opened = match store {
                Ok(store) => self.install(store).await,
                Err(error) => Err(error),
            };
            match opened {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "database not ready");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
