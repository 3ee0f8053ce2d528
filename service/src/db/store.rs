//! The store: schema migrations, the SQL API's installation, and every call
//! the service makes. Writes and rollups go through the SQL API (`count.*`
//! functions), so the native extension can replace the portable fallback
//! function for function; reads use the views and tables the migrations
//! create, and `count.producers` for a producer's last sequence.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use deadpool_postgres::{
    ClientWrapper, Hook, HookError, Manager, ManagerConfig, Pool, QueueMode, RecyclingMethod,
    WeakPool,
};
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::db::connect::ConnectConfig;
use crate::db::engine::Engine;
use crate::db::lease::Lease;
use crate::db::retry::retrying;
use crate::defaults;
use crate::error::{Error, Result};
use crate::series::StoredSeries;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// The portable SQL API functions, installed where the extension is absent
/// (extension/queries/bootstrap.sql drops each of them, checked by
/// sql::the_extension_replaces_every_fallback_function).
pub const SQL_FUNCTIONS: [&str; 3] = [
    include_str!("../../../sql/add_batch.sql"),
    include_str!("../../../sql/totals.sql"),
    include_str!("../../../sql/rollup.sql"),
];

/// The views and `count.totals`, installed whichever backend implements
/// the functions: they only read the tables.
const SQL_READS: [&str; 2] = [
    include_str!("../../../sql/views.sql"),
    include_str!("../../../sql/reads.sql"),
];

/// Which implementation of the SQL API the database runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The native `count` extension (`CREATE EXTENSION count`).
    Extension,
    /// The portable PL/pgSQL functions of `sql/add_batch.sql` and `sql/rollup.sql`.
    Sql,
}

impl Backend {
    /// The name used in logs and status output.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Extension => "extension",
            Backend::Sql => "sql",
        }
    }
}

/// One row of the original service's reads: a day's or a period's total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Total {
    /// The day, for daily totals; `None` for a period's sum.
    pub day: Option<NaiveDate>,
    /// The method's name (`GET`, `GRPC`, ...).
    pub method: String,
    /// The path.
    pub path: String,
    /// Requests counted.
    pub total: i64,
}

/// The column arrays of one `count.add_batch` call.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlushBatch {
    /// Method names as stored (`GET`, `GRPC`, ...).
    pub methods: Vec<&'static str>,
    /// Paths, element for element with `methods`.
    pub paths: Vec<String>,
    /// Tenants, '' for none.
    pub tenants: Vec<String>,
    /// Status codes, `None` when unknown.
    pub status_codes: Vec<Option<i32>>,
    /// Timestamps truncated to the minute.
    pub timestamps: Vec<DateTime<Utc>>,
    /// Requests per row, each at least 1.
    pub counts: Vec<i64>,
    /// The sum of `counts`.
    pub requests: i64,
}

impl FlushBatch {
    /// Rows of tenant '' and unknown status, as the clients that send
    /// neither count: element i of the vectors is one (method, path,
    /// timestamp, count).
    pub fn of_endpoints(
        methods: Vec<&'static str>,
        paths: Vec<String>,
        timestamps: Vec<DateTime<Utc>>,
        counts: Vec<i64>,
    ) -> FlushBatch {
        FlushBatch {
            tenants: vec![String::new(); methods.len()],
            status_codes: vec![None; methods.len()],
            requests: counts.iter().sum(),
            methods,
            paths,
            timestamps,
            counts,
        }
    }
}

/// A pool of connections to a migrated database with its SQL API.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    backend: Backend,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

/// The pool, for the idle check to drop the other stale connections: set
/// once it is built, and weak, so that the pool's own hook does not keep it
/// alive.
type PoolCell = Arc<OnceLock<WeakPool>>;

/// The pool's check of a connection before it hands it out (the rest of
/// the time [`RecyclingMethod::Fast`] only asks whether tokio-postgres saw
/// it close, with no round trip): one not handed out for `check_idle` must
/// answer an empty query within [`defaults::POOL_CHECK_TIMEOUT`], or the
/// pool drops it, with every other connection as idle, and takes a younger
/// one or opens another.
fn idle_check(check_idle: Duration, pool: PoolCell) -> Hook {
    Hook::async_fn(move |client, metrics| {
        let idle = metrics.last_used();
        if idle < check_idle {
            return Box::pin(std::future::ready(Ok(())));
        }
        Box::pin(check_idle_connection(
            client,
            idle,
            check_idle,
            pool.clone(),
        ))
    })
}

/// [`idle_check`] of a connection not handed out for `idle`.
async fn check_idle_connection(
    client: &mut ClientWrapper,
    idle: Duration,
    check_idle: Duration,
    pool: PoolCell,
) -> std::result::Result<(), HookError> {
    let failure =
        match tokio::time::timeout(defaults::POOL_CHECK_TIMEOUT, client.simple_query("")).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(error)) => HookError::Backend(error),
            Err(_) => HookError::message("no answer within the check's timeout"),
        };
    // What dropped this one (a NAT's or firewall's idle limit) dropped the
    // other idle ones too, at once: drop every connection the check would
    // take, rather than have requests meet them one check, and up to its
    // timeout, at a time. Those still sound cost a reconnection when next
    // needed.
    let others = pool.get().and_then(WeakPool::upgrade).map_or(0, |pool| {
        pool.retain(|_, metrics| metrics.last_used() < check_idle)
            .removed
            .len()
    });
    tracing::warn!(
        %failure,
        idle_s = idle.as_secs(),
        others,
        "dropped a pooled database connection that failed its check, and the others as idle"
    );
    Err(failure)
}

impl Store {
    /// Connects, applies pending migrations, installs the views, and the
    /// portable SQL functions unless the extension is installed.
    pub async fn open(config: impl Into<ConnectConfig>, pool_size: usize) -> Result<Store> {
        Self::connect(config.into(), pool_size, Schema::Prepare).await
    }

    /// Connects to a database whose schema and SQL API another role set up
    /// (`count migrate` as the owner): needs no privilege beyond using them.
    pub async fn open_existing(
        config: impl Into<ConnectConfig>,
        pool_size: usize,
    ) -> Result<Store> {
        Self::connect(config.into(), pool_size, Schema::Existing).await
    }

    /// Connects, and sets the schema up or uses it as `schema` says.
    pub async fn connect(config: ConnectConfig, pool_size: usize, schema: Schema) -> Result<Store> {
        let tls = config.connector()?;
        let check_idle = config.check_idle;
        let backend = prepare_schema(&config.postgres, tls.clone(), schema).await?;
        let manager = Manager::from_config(
            config.postgres,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // Last in, first out: a call takes the connection used last, whose
        // backend has the SQL API's plans and caches (the extension's series
        // ids) warm. First in, first out (deadpool's default) went round
        // every connection the pool had grown to under a burst, and each
        // backend plans a read afresh its first five times (PostgreSQL's
        // plan cache) and learns series ids anew.
        let cell = PoolCell::default();
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .queue_mode(QueueMode::Lifo)
            .pre_recycle(idle_check(check_idle, cell.clone()))
            .build()?;
        let _ = cell.set(pool.weak());
        Ok(Store { pool, backend })
    }

    /// The SQL API implementation in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies one flush through `count.add_series`. With a producer and
    /// sequence, returns `None` when that batch was applied before.
    pub async fn add_batch(
        &self,
        producer: Option<(&str, i64)>,
        batch: &FlushBatch,
    ) -> Result<Option<i64>> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(include_str!("../../queries/add_series.sql"))
            .await?;
        retrying("add_batch", || async {
            let row = client
                .query_one(
                    &statement,
                    &[
                        &producer.map(|p| p.0),
                        &producer.map(|p| p.1),
                        &batch.methods,
                        &batch.paths,
                        &batch.tenants,
                        &batch.status_codes,
                        &batch.timestamps,
                        &batch.counts,
                    ],
                )
                .await?;
            Ok(row.get(0))
        })
        .await
    }

    /// The last sequence applied for `producer`, if it has applied any (and
    /// was not forgotten by `count.expire_producers`).
    pub async fn last_sequence(&self, producer: &str) -> Result<Option<i64>> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(include_str!("../../queries/last_sequence.sql"))
            .await?;
        let row = retrying("last_sequence", || async {
            Ok(client.query_opt(&statement, &[&producer]).await?)
        })
        .await?;
        Ok(row.map(|row| row.get(0)))
    }

    /// Every series the database holds.
    pub async fn series(&self) -> Result<Vec<StoredSeries>> {
        let client = self.pool.get().await?;
        let rows = retrying("series", || async {
            Ok(client
                .query(include_str!("../../queries/series.sql"), &[])
                .await?)
        })
        .await?;
        Ok(rows
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
            .collect())
    }

    /// Whether the database answers a trivial query; reports the pool's
    /// connections to the metrics as it goes.
    pub async fn ping(&self) -> bool {
        let ok = match self.pool.get().await {
            Ok(client) => client.simple_query("").await.is_ok(),
            Err(_) => false,
        };
        let status = self.pool.status();
        crate::metrics::connections(status.size - status.available, status.available);
        ok
    }

    /// The one row `sql` returns, on a pooled connection, retried as the
    /// database asks ([`retrying`]); `operation` names it in the metrics.
    async fn one_row(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<tokio_postgres::Row> {
        let client = self.pool.get().await?;
        retrying(operation, || async {
            Ok(client.query_one(sql, params).await?)
        })
        .await
    }

    /// The requests of the endpoint `GET path` that are still raw rows.
    pub async fn raw_requests(&self, path: &str) -> Result<i64> {
        let row = self
            .one_row(
                "raw_requests",
                include_str!("../../queries/raw_requests.sql"),
                &[&path],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Deletes every count of the endpoint `GET path` and the producer
    /// `producer`, in one transaction: what `count check` wrote.
    pub async fn forget(&self, path: &str, producer: &str) -> Result<()> {
        let client = self.pool.get().await?;
        retrying("forget", || async {
            client.batch_execute("BEGIN").await?;
            let deleted = async {
                client
                    .batch_execute(include_str!("../../queries/rollup_turn.sql"))
                    .await?;
                let statements = include_str!("../../queries/forget_endpoint.sql")
                    .split(';')
                    .filter(|s| !s.trim().is_empty());
                for statement in statements {
                    client.execute(statement, &[&path]).await?;
                }
                client
                    .execute(
                        include_str!("../../queries/forget_producer.sql"),
                        &[&producer],
                    )
                    .await?;
                client.batch_execute("COMMIT").await
            }
            .await;
            if deleted.is_err() {
                client.batch_execute("ROLLBACK").await?;
            }
            Ok(deleted?)
        })
        .await
    }

    /// Rolls up one UTC day; returns the requests moved by this call.
    pub async fn rollup(&self, day: NaiveDate) -> Result<i64> {
        let row = self
            .one_row("rollup", include_str!("../../queries/rollup.sql"), &[&day])
            .await?;
        crate::metrics::rollup("day");
        Ok(row.get(0))
    }

    /// Rolls up every complete day with raw rows; returns how many days.
    pub async fn rollup_due(&self) -> Result<i64> {
        let row = self
            .one_row(
                "rollup_due",
                include_str!("../../queries/rollup_due.sql"),
                &[],
            )
            .await?;
        crate::metrics::rollup("due");
        Ok(row.get(0))
    }

    /// Live totals `query` asks for, through `count.series_totals`
    /// (sql/reads.sql).
    pub async fn totals(&self, query: &TotalsQuery) -> Result<Vec<TotalRow>> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(include_str!("../../queries/totals.sql"))
            .await?;
        let rows = retrying("totals", || async {
            Ok(client.query(&statement, &totals_parameters(query)).await?)
        })
        .await?;
        Ok(rows.iter().map(TotalRow::from_row).collect())
    }

    /// [`Store::totals`] as a stream, for answers too large to hold: the
    /// rows come as the database sends them, on a pooled connection the
    /// stream keeps until it ends. One statement, so one snapshot, as in
    /// [`Store::totals`]; not retried (a retry could repeat rows already
    /// sent), so a serialization failure ends the stream with an error.
    pub async fn totals_stream(
        &self,
        query: &TotalsQuery,
    ) -> Result<impl futures::Stream<Item = Result<TotalRow>> + Send + 'static> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(include_str!("../../queries/totals.sql"))
            .await?;
        let rows = Box::pin(
            client
                .query_raw(&statement, totals_parameters(query))
                .await?,
        );
        Ok(futures::stream::unfold(
            (client, rows),
            |(client, mut rows)| async move {
                let row = futures::StreamExt::next(&mut rows).await?;
                Some((
                    row.map(|row| TotalRow::from_row(&row)).map_err(Error::from),
                    (client, rows),
                ))
            },
        ))
    }

    /// Live totals of each UTC day from `from` to `to`, both inclusive, of
    /// `tenant` only if given.
    pub async fn daily_totals(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        tenant: Option<&str>,
    ) -> Result<Vec<Total>> {
        let rows = self
            .totals(&TotalsQuery::utc_days(from, to, "day", tenant)?)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| Total {
                day: Some(row.bucket.date_naive()),
                ..Total::from(row)
            })
            .collect())
    }

    /// Live totals summed over the UTC days `from` to `to`, both inclusive,
    /// of `tenant` only if given.
    pub async fn period_totals(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        tenant: Option<&str>,
    ) -> Result<Vec<Total>> {
        let rows = self
            .totals(&TotalsQuery::utc_days(from, to, "total", tenant)?)
            .await?;
        Ok(rows.into_iter().map(Total::from).collect())
    }
}

/// What `count.series_totals` is asked: its arguments, as the SQL function
/// takes them (sql/reads.sql says what each means).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotalsQuery {
    /// The first minute counted.
    pub start: DateTime<Utc>,
    /// The end, excluded.
    pub end: DateTime<Utc>,
    /// `minute` ... `year`, or `total`.
    pub granularity: String,
    /// The buckets' IANA time zone.
    pub time_zone: String,
    /// Only these stored methods (`GET`, `OTHER`, ...).
    pub methods: Option<Vec<String>>,
    /// Only this path.
    pub path: Option<String>,
    /// Only paths starting with this.
    pub path_prefix: Option<String>,
    /// Only these tenants.
    pub tenants: Option<Vec<String>>,
    /// Only these status codes, classes or `unknown`.
    pub statuses: Option<Vec<String>>,
    /// What rows are grouped by: `endpoint`, `tenant`, `status`,
    /// `status_class`; none for one row per bucket.
    pub group_by: Vec<&'static str>,
    /// Only the groups with the largest totals.
    pub top: Option<i32>,
}

impl TotalsQuery {
    /// All endpoints' totals over the UTC days `from` to `to` (inclusive),
    /// by `granularity`, of `tenant` only if given.
    fn utc_days(
        from: NaiveDate,
        to: NaiveDate,
        granularity: &str,
        tenant: Option<&str>,
    ) -> Result<Self> {
        let midnight = |day: NaiveDate| day.and_time(NaiveTime::MIN).and_utc();
        let after = to
            .succ_opt()
            .ok_or_else(|| Error::invalid("end_date", "is the last representable day"))?;
        Ok(TotalsQuery {
            start: midnight(from),
            end: midnight(after),
            granularity: granularity.to_owned(),
            time_zone: "UTC".to_owned(),
            methods: None,
            path: None,
            path_prefix: None,
            tenants: tenant.map(|tenant| vec![tenant.to_owned()]),
            statuses: None,
            group_by: vec!["endpoint"],
            top: None,
        })
    }
}

/// One row of `count.totals`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotalRow {
    /// The bucket's start.
    pub bucket: DateTime<Utc>,
    /// The method's stored name, when grouped by endpoint.
    pub method: Option<String>,
    /// The path, when grouped by endpoint.
    pub path: Option<String>,
    /// The tenant, when grouped by tenant.
    pub tenant: Option<String>,
    /// The status code, when grouped by status and known.
    pub status_code: Option<i32>,
    /// The status class, when grouped by status or status class.
    pub status_class: Option<String>,
    /// Requests counted.
    pub total: i64,
    /// The bucket ends after the read began.
    pub live: bool,
}

/// queries/totals.sql's parameters for `query`.
fn totals_parameters(query: &TotalsQuery) -> [&(dyn tokio_postgres::types::ToSql + Sync); 11] {
    [
        &query.start,
        &query.end,
        &query.granularity,
        &query.time_zone,
        &query.methods,
        &query.path,
        &query.path_prefix,
        &query.tenants,
        &query.statuses,
        &query.group_by,
        &query.top,
    ]
}

impl TotalRow {
    /// A row of queries/totals.sql.
    fn from_row(row: &tokio_postgres::Row) -> TotalRow {
        TotalRow {
            bucket: row.get(0),
            method: row.get(1),
            path: row.get(2),
            tenant: row.get(3),
            status_code: row.get(4),
            status_class: row.get(5),
            total: row.get(6),
            live: row.get(7),
        }
    }
}

impl From<TotalRow> for Total {
    fn from(row: TotalRow) -> Self {
        Total {
            day: None,
            method: row.method.unwrap_or_default(),
            path: row.path.unwrap_or_default(),
            total: row.total,
        }
    }
}

/// Applies pending migrations and installs the SQL API, on a connection of
/// its own, under the migration lease (one migrator at a time; no advisory
/// locks: CockroachDB has none). A conflict that still happens (two servers
/// creating the lease's table at once, say) is retried, and the retry finds
/// the work done.
async fn prepare_schema(
    config: &tokio_postgres::Config,
    tls: MakeRustlsConnect,
    schema: Schema,
) -> Result<Backend> {
    let (mut client, connection) = config.connect(tls.clone()).await?;
    tokio::spawn(connection);
    let mut tries = 0;
    loop {
        match prepare_once(&mut client, config, tls.clone(), schema).await {
            // Only conflicts: a permission error, say, would fail the same.
            Err(e) if e.is_conflict() && tries < 5 => {
                tries += 1;
                tracing::warn!(%e, tries, "schema set-up conflicted; retrying");
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
            result => return result,
        }
    }
}

/// The extension version this service works with: the workspace's, which
/// the extension crate shares.
pub const EXTENSION_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Brings an installed extension to [`EXTENSION_VERSION`] (`ALTER EXTENSION
/// count UPDATE`, which needs its owner) when setting the schema up, or
/// says what to run when using it as it is.
async fn extension_up_to_date(client: &tokio_postgres::Client, schema: Schema) -> Result<()> {
    let version = || async {
        let row = client
            .query_one(include_str!("../../queries/extension_version.sql"), &[])
            .await?;
        Ok::<String, Error>(row.get(0))
    };
    let installed = version().await?;
    if installed == EXTENSION_VERSION {
        return Ok(());
    }
    if schema == Schema::Existing {
        return Err(Error::Unavailable(format!(
            "the count extension is version {installed}; this server needs {EXTENSION_VERSION}: \
             run `count migrate` (or ALTER EXTENSION count UPDATE) as the extension's owner"
        )));
    }
    client
        .batch_execute(include_str!("../../queries/update_extension.sql"))
        .await
        .map_err(|e| {
            Error::Setup(format!(
                "updating the count extension from {installed} to {EXTENSION_VERSION} \
                 (ALTER EXTENSION count UPDATE) failed; run it as the extension's owner: {}",
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |db| db.message().to_owned())
            ))
        })?;
    let updated = version().await?;
    if updated != EXTENSION_VERSION {
        return Err(Error::Setup(format!(
            "the count extension's installed files are version {updated}; this server needs \
             {EXTENSION_VERSION}: install the extension's {EXTENSION_VERSION} package"
        )));
    }
    tracing::info!(from = %installed, to = %updated, "updated the count extension");
    Ok(())
}

/// Whether opening a store sets the schema up: chosen once (`--no-migrate`)
/// and passed down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Apply migrations, install the SQL API (needs the schema's owner).
    Prepare,
    /// Use what is there (a least-privilege role, see `sql/roles.sql`).
    Existing,
}

async fn prepare_once(
    client: &mut tokio_postgres::Client,
    config: &tokio_postgres::Config,
    tls: MakeRustlsConnect,
    schema: Schema,
) -> Result<Backend> {
    if schema == Schema::Existing {
        return prepare_set_up(client, schema).await;
    }
    let lease = Lease::take(client, config, tls).await?;
    let prepared = prepare_set_up(client, schema).await;
    if prepared.is_err() {
        // A failed statement may have left a transaction open and aborted;
        // without one, ROLLBACK only warns.
        let _ = client.batch_execute("ROLLBACK").await;
    }
    // Given back whether or not the set-up worked: the next try, or the
    // next server, takes it again.
    lease.release(client).await;
    prepared
}

async fn prepare_set_up(client: &mut tokio_postgres::Client, schema: Schema) -> Result<Backend> {
    let engine = Engine::of(client).await?;
    let installed = engine == Engine::Postgres
        && client
            .query_one(include_str!("../../queries/extension_installed.sql"), &[])
            .await?
            .get::<_, bool>(0);
    if installed {
        // Before the migrations: an older extension's rollups, running
        // meanwhile from pg_cron, would not fill the tiers they add.
        extension_up_to_date(client, schema).await?;
    }
    if schema == Schema::Prepare {
        let report = embedded::migrations::runner()
            .run_async(&mut *client)
            .await?;
        for migration in report.applied_migrations() {
            tracing::info!(migration = %migration, "applied migration");
        }
        // V5 made series unique; the endpoints' constraint goes, each
        // engine its own way (idempotent, so every start runs it).
        client
            .batch_execute(match engine {
                Engine::Postgres => include_str!("../../queries/postgres_series_key.sql"),
                Engine::Cockroach => include_str!("../../queries/cockroach_series_key.sql"),
            })
            .await?;
    }
    if schema == Schema::Existing {
        let api = match client
            .query_one(include_str!("../../queries/sql_api_probe.sql"), &[])
            .await
        {
            Ok(_) => true,
            // No function, no schema count at all, or the extension's
            // functions without the migrations' tables.
            Err(e)
                if [
                    SqlState::UNDEFINED_FUNCTION,
                    SqlState::INVALID_SCHEMA_NAME,
                    SqlState::UNDEFINED_TABLE,
                ]
                .iter()
                .any(|state| e.code() == Some(state)) =>
            {
                false
            }
            Err(e) => return Err(e.into()),
        };
        if !api {
            // After DROP EXTENSION, until the owner reinstalls the fallback.
            return Err(Error::Unavailable(
                "the database has no count.add_series: run `count migrate` as the owner of \
                 schema count (after DROP EXTENSION count, it reinstalls the portable SQL API)"
                    .to_owned(),
            ));
        }
        return Ok(if installed {
            Backend::Extension
        } else {
            Backend::Sql
        });
    }
    let backend = if installed {
        // The extension partitions count.requests by day (the migrations
        // create it plain wherever they ran after CREATE EXTENSION).
        client
            .batch_execute(include_str!("../../queries/prepare_partitions.sql"))
            .await?;
        Backend::Extension
    } else {
        for functions in SQL_FUNCTIONS {
            client.batch_execute(functions).await?;
        }
        Backend::Sql
    };
    for reads in SQL_READS {
        client.batch_execute(reads).await?;
    }
    if engine == Engine::Postgres {
        client
            .batch_execute(include_str!("../../queries/postgres_reads.sql"))
            .await?;
    }
    Ok(backend)
}
