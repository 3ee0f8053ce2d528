//! The SPI work of one `count.add_series` (or `count.add_batch`) call:
//! claim the producer's sequence, resolve series ids, insert the raw rows.
//! Every statement is a plan prepared once per backend.

use std::cell::OnceCell;
use std::collections::HashSet;

use hashbrown::HashMap;

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::{self, PgOid};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult, SpiTupleTable};

use crate::batch::{Batch, METHODS, UNKNOWN_STATUS};
use crate::error::Error;
use crate::series_ids::{self, IdMap, Series, SeriesKey};
use crate::subtransaction;

/// The plans `add_series` runs, prepared on first use and kept for the
/// backend's life (PostgreSQL replans them if the tables change).
struct Plans {
    claim_sequence: OwnedPreparedStatement,
    find_series: OwnedPreparedStatement,
    insert_series_plain: OwnedPreparedStatement,
    insert_series_on_conflict: OwnedPreparedStatement,
    insert_requests: OwnedPreparedStatement,
}

thread_local! {
    static PLANS: OnceCell<Plans> = const { OnceCell::new() };
    /// The plans before migration V5, asked for again on every call until
    /// the series columns exist.
    static ENDPOINT_PLANS: OnceCell<Plans> = const { OnceCell::new() };
}

/// Which queries find and insert series.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Schema {
    /// Migration V5's: (tenant, method, path, status code).
    Series,
    /// Before it: (method, path) only.
    Endpoints,
}

impl Plans {
    fn prepare(client: &SpiClient<'_>, schema: Schema) -> SpiResult<Plans> {
        let text = PgOid::from(pg_sys::TEXTOID);
        let texts = PgOid::from(pg_sys::TEXTARRAYOID);
        let bigint = PgOid::from(pg_sys::INT8OID);
        let bigints = PgOid::from(pg_sys::INT8ARRAYOID);
        let timestamps = PgOid::from(pg_sys::TIMESTAMPTZARRAYOID);
        let integers = PgOid::from(pg_sys::INT4ARRAYOID);
        let series = [texts, texts, texts, integers];
        let plan = |sql: &'static str, args: &[PgOid]| -> SpiResult<OwnedPreparedStatement> {
            Ok(client.prepare_mut(sql, args)?.keep())
        };
        Ok(Plans {
            claim_sequence: plan(
                include_str!("../queries/claim_sequence.sql"),
                &[text, bigint],
            )?,
            find_series: plan(
                match schema {
                    Schema::Series => include_str!("../queries/find_series.sql"),
                    Schema::Endpoints => include_str!("../queries/find_endpoints.sql"),
                },
                &series,
            )?,
            insert_series_plain: plan(
                match schema {
                    Schema::Series => include_str!("../queries/insert_series.sql"),
                    Schema::Endpoints => include_str!("../queries/insert_endpoints.sql"),
                },
                &series,
            )?,
            insert_series_on_conflict: plan(
                match schema {
                    Schema::Series => include_str!("../queries/insert_series_on_conflict.sql"),
                    Schema::Endpoints => {
                        include_str!("../queries/insert_endpoints_on_conflict.sql")
                    }
                },
                &series,
            )?,
            insert_requests: plan(
                include_str!("../queries/insert_requests.sql"),
                &[bigints, timestamps, bigints],
            )?,
        })
    }
}

/// Applies a validated batch. `None` when its sequence was applied before.
pub fn add_series(batch: Batch<'_, TimestampWithTimeZone>) -> Result<Option<i64>, Error> {
    Spi::connect_mut(|client| {
        // Columns are never dropped: once seen, the series plans stay.
        let schema = if PLANS.with(|cell| cell.get().is_some()) {
            Schema::Series
        } else {
            // A migration adding the columns holds count.methods
            // exclusively: wait it out before asking.
            client.update("LOCK TABLE count.methods IN ACCESS SHARE MODE", None, &[])?;
            if client
                .select(include_str!("../queries/series_columns.sql"), None, &[])?
                .first()
                .get_one::<bool>()?
                == Some(true)
            {
                Schema::Series
            } else {
                Schema::Endpoints
            }
        };
        if schema == Schema::Endpoints
            && (batch.tenants.iter().any(|t| !t.is_empty())
                || batch.status_codes.iter().any(|s| *s != UNKNOWN_STATUS))
        {
            return Err(Error::Invalid(
                "tenants and status codes need migration V5: run `count migrate`".into(),
            ));
        }
        let cell = match schema {
            Schema::Series => &PLANS,
            Schema::Endpoints => &ENDPOINT_PLANS,
        };
        cell.with(|cell| {
            let plans = match cell.get() {
                Some(plans) => plans,
                None => {
                    let plans = Plans::prepare(client, schema)?;
                    cell.get_or_init(|| plans)
                }
            };
            apply(client, plans, batch, schema)
        })
    })
}

fn apply(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    batch: Batch<'_, TimestampWithTimeZone>,
    schema: Schema,
) -> Result<Option<i64>, Error> {
    if let Some((producer, seq)) = batch.claim {
        let args: [DatumWithOid<'_>; 2] = [producer.into(), seq.into()];
        if client
            .update(&plans.claim_sequence, None, &args)?
            .is_empty()
        {
            return Ok(None);
        }
    }
    // Ids found before migration V5 are not cached: the endpoint queries
    // cannot tell series apart once it has run.
    let ids = resolve(client, plans, &batch, schema == Schema::Series)?;
    let args: [DatumWithOid<'_>; 3] = [ids.into(), batch.timestamps.into(), batch.counts.into()];
    client.update(&plans.insert_requests, None, &args)?;
    Ok(Some(batch.requests))
}

/// The series id of each row: from the cache (if `cached`), else found,
/// else inserted.
fn resolve(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    batch: &Batch<'_, TimestampWithTimeZone>,
    cached: bool,
) -> Result<Vec<i64>, Error> {
    let row = |i: usize| {
        (
            batch.methods[i],
            Series {
                path: batch.paths[i],
                tenant: batch.tenants[i],
                status: batch.status_codes[i],
            },
        )
    };
    let mut ids: Vec<Option<i64>> = (0..batch.methods.len())
        .map(|i| {
            let (method, series) = row(i);
            series_ids::lookup(method, &series).filter(|_| cached)
        })
        .collect();
    let missing: HashSet<(usize, Series<'_>)> = (0..ids.len())
        .filter(|&i| ids[i].is_none())
        .map(row)
        .collect();
    if !missing.is_empty() {
        // Every transaction inserts new series in the same order, so two
        // inserting overlapping sets wait for each other instead of
        // deadlocking.
        let mut keys: Vec<(usize, Series<'_>)> = missing.into_iter().collect();
        keys.sort_unstable_by(|a, b| {
            (a.0, a.1.tenant, a.1.path, a.1.status).cmp(&(b.0, b.1.tenant, b.1.path, b.1.status))
        });
        // A warm cache's misses are most likely new series: insert them
        // straight away (an existing one only costs an identity value), then
        // find those that were there or a concurrent transaction inserted
        // first (each statement sees what committed before it started). A
        // cold cache (a new backend) looks its series up first, and so does
        // a warm one whose last misses existed already: with many series
        // and many backends, each backend meets series that others created,
        // and trying to insert those first (a plain INSERT failing on a
        // duplicate, then INSERT … ON CONFLICT) cost more than finding them.
        let missing = keys.len();
        let insert_first = cached && series_ids::is_warm() && series_ids::misses_are_new();
        let steps: &[Step] = if insert_first {
            &[Step::Insert, Step::Find]
        } else {
            &[Step::Find, Step::Insert, Step::Find]
        };
        let mut inserted = 0;
        // The ids this call resolves, kept here too: a subtransaction rolled
        // back on the way (another backend inserted one of the new series
        // first) drops the cache's pending ids, found ones included.
        let mut resolved: IdMap = std::array::from_fn(|_| HashMap::new());
        for step in steps {
            if keys.is_empty() {
                break;
            }
            let names: Vec<&str> = keys.iter().map(|(m, _)| METHODS[*m]).collect();
            let paths: Vec<&str> = keys.iter().map(|(_, s)| s.path).collect();
            let tenants: Vec<&str> = keys.iter().map(|(_, s)| s.tenant).collect();
            let statuses: Vec<i32> = keys.iter().map(|(_, s)| s.status).collect();
            let args: [DatumWithOid<'_>; 4] =
                [names.into(), paths.into(), tenants.into(), statuses.into()];
            let found = match step {
                Step::Find => series_rows(client.update(&plans.find_series, None, &args)?)?,
                Step::Insert => {
                    let new = insert_series(client, plans, &args)?;
                    inserted += new.len();
                    new
                }
            };
            for (m, series, id) in &found {
                resolved[*m].insert(series.clone(), *id);
            }
            if cached {
                series_ids::remember(found);
            }
            keys.retain(|(m, s)| !resolved[*m].contains_key(s));
        }
        if !keys.is_empty() {
            return Err(Error::NotVisible(keys.len()));
        }
        series_ids::note_misses(missing, inserted);
        for (i, id) in ids.iter_mut().enumerate() {
            if id.is_none() {
                let (method, series) = row(i);
                *id = resolved[method].get(&series).copied();
            }
        }
    }
    let resolved = ids.len();
    let ids: Vec<i64> = ids.into_iter().flatten().collect();
    if ids.len() != resolved {
        return Err(Error::NotVisible(resolved - ids.len()));
    }
    Ok(ids)
}

/// How `resolve` looks series up.
enum Step {
    /// Finds existing ones.
    Find,
    /// Inserts new ones.
    Insert,
}

/// (method index, series, id) of `count.methods` rows a statement
/// returned.
fn series_rows(rows: SpiTupleTable<'_>) -> SpiResult<Vec<(usize, SeriesKey, i64)>> {
    let mut found = Vec::new();
    for row in rows {
        let id: Option<i64> = row.get(1)?;
        let method: Option<String> = row.get(2)?;
        let path: Option<String> = row.get(3)?;
        let tenant: Option<String> = row.get(4)?;
        let status: Option<i32> = row.get(5)?;
        if let (Some(id), Some(method), Some(path), Some(tenant), Some(status)) =
            (id, method, path, tenant, status)
            && let Some(method) = METHODS.iter().position(|m| *m == method)
        {
            found.push((
                method,
                SeriesKey {
                    path,
                    tenant,
                    status,
                },
                id,
            ));
        }
    }
    Ok(found)
}

/// Inserts series that are most likely new: a plain INSERT in a
/// subtransaction, and only if one of them existed after all (inserted
/// meanwhile by another backend), INSERT … ON CONFLICT DO NOTHING. ON
/// CONFLICT checks every row for a conflict before inserting it, which made
/// it a third slower than the plain INSERT (41 against 26 ms for 10,000
/// endpoints), and inserting endpoints dominated `add_batch` calls with new
/// ones.
fn insert_series(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    args: &[DatumWithOid<'_>],
) -> SpiResult<Vec<(usize, SeriesKey, i64)>> {
    let plain = subtransaction::attempt(PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION, || {
        series_rows(client.update(&plans.insert_series_plain, None, args)?)
    });
    match plain {
        Some(found) => found,
        None => series_rows(client.update(&plans.insert_series_on_conflict, None, args)?),
    }
}
