//! The SPI work of one `count.add_batch` call: claim the producer's
//! sequence, resolve endpoint ids, insert the raw rows. Every statement is a
//! plan prepared once per backend.

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::{self, PgOid};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult, SpiTupleTable};

use crate::batch::{Batch, METHODS};
use crate::endpoint_ids;
use crate::error::Error;
use crate::subtransaction;

/// The plans `add_batch` runs, prepared on first use and kept for the
/// backend's life (PostgreSQL replans them if the tables change).
struct Plans {
    claim_sequence: OwnedPreparedStatement,
    find_endpoints: OwnedPreparedStatement,
    insert_endpoints_plain: OwnedPreparedStatement,
    insert_endpoints_on_conflict: OwnedPreparedStatement,
    insert_requests: OwnedPreparedStatement,
}

thread_local! {
    static PLANS: OnceCell<Plans> = const { OnceCell::new() };
}

impl Plans {
    fn prepare(client: &SpiClient<'_>) -> SpiResult<Plans> {
        let text = PgOid::from(pg_sys::TEXTOID);
        let texts = PgOid::from(pg_sys::TEXTARRAYOID);
        let bigint = PgOid::from(pg_sys::INT8OID);
        let bigints = PgOid::from(pg_sys::INT8ARRAYOID);
        let timestamps = PgOid::from(pg_sys::TIMESTAMPTZARRAYOID);
        let plan = |sql: &'static str, args: &[PgOid]| -> SpiResult<OwnedPreparedStatement> {
            Ok(client.prepare_mut(sql, args)?.keep())
        };
        Ok(Plans {
            claim_sequence: plan(
                include_str!("../queries/claim_sequence.sql"),
                &[text, bigint],
            )?,
            find_endpoints: plan(
                include_str!("../queries/find_endpoints.sql"),
                &[texts, texts],
            )?,
            insert_endpoints_plain: plan(
                include_str!("../queries/insert_endpoints.sql"),
                &[texts, texts],
            )?,
            insert_endpoints_on_conflict: plan(
                include_str!("../queries/insert_endpoints_on_conflict.sql"),
                &[texts, texts],
            )?,
            insert_requests: plan(
                include_str!("../queries/insert_requests.sql"),
                &[bigints, timestamps, bigints],
            )?,
        })
    }
}

/// Applies a validated batch. `None` when its sequence was applied before.
pub fn add_batch(batch: Batch<'_, TimestampWithTimeZone>) -> Result<Option<i64>, Error> {
    Spi::connect_mut(|client| {
        PLANS.with(|cell| {
            let plans = match cell.get() {
                Some(plans) => plans,
                None => {
                    let plans = Plans::prepare(client)?;
                    cell.get_or_init(|| plans)
                }
            };
            apply(client, plans, batch)
        })
    })
}

fn apply(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    batch: Batch<'_, TimestampWithTimeZone>,
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
    let ids = resolve(client, plans, &batch.methods, &batch.paths)?;
    let args: [DatumWithOid<'_>; 3] = [ids.into(), batch.timestamps.into(), batch.counts.into()];
    client.update(&plans.insert_requests, None, &args)?;
    Ok(Some(batch.requests))
}

/// The endpoint id of each row: from the cache, else found, else inserted.
fn resolve(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    methods: &[usize],
    paths: &[&str],
) -> Result<Vec<i64>, Error> {
    let mut ids: Vec<Option<i64>> = methods
        .iter()
        .zip(paths)
        .map(|(&method, path)| endpoint_ids::lookup(method, path))
        .collect();
    let missing: HashSet<(usize, &str)> = (0..ids.len())
        .filter(|&i| ids[i].is_none())
        .map(|i| (methods[i], paths[i]))
        .collect();
    if !missing.is_empty() {
        // Every transaction inserts new endpoints in the same order, so two
        // inserting overlapping sets wait for each other instead of
        // deadlocking.
        let mut keys: Vec<(usize, &str)> = missing.into_iter().collect();
        keys.sort_unstable();
        // A warm cache's misses are most likely new endpoints: insert them
        // straight away (an existing one only costs an identity value), then
        // find those that were there or a concurrent transaction inserted
        // first (each statement sees what committed before it started). A
        // cold cache (a new backend) looks its endpoints up first.
        let steps: &[Step] = if endpoint_ids::is_warm() {
            &[Step::Insert, Step::Find]
        } else {
            &[Step::Find, Step::Insert, Step::Find]
        };
        // The ids this call resolves, kept here too: a subtransaction rolled
        // back on the way (another backend inserted one of the new
        // endpoints first) drops the cache's pending ids, found ones
        // included.
        let mut resolved: [HashMap<String, i64>; METHODS.len()] =
            std::array::from_fn(|_| HashMap::new());
        for step in steps {
            if keys.is_empty() {
                break;
            }
            let names: Vec<&str> = keys.iter().map(|(m, _)| METHODS[*m]).collect();
            let key_paths: Vec<&str> = keys.iter().map(|(_, p)| *p).collect();
            let args: [DatumWithOid<'_>; 2] = [names.into(), key_paths.into()];
            let found = match step {
                Step::Find => endpoint_rows(client.update(&plans.find_endpoints, None, &args)?)?,
                Step::Insert => insert_endpoints(client, plans, &args)?,
            };
            for (m, p, id) in &found {
                resolved[*m].insert(p.clone(), *id);
            }
            endpoint_ids::remember(found);
            keys.retain(|(m, p)| !resolved[*m].contains_key(*p));
        }
        if !keys.is_empty() {
            return Err(Error::NotVisible(keys.len()));
        }
        for (i, id) in ids.iter_mut().enumerate() {
            if id.is_none() {
                *id = resolved[methods[i]].get(paths[i]).copied();
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

/// How `resolve` looks endpoints up.
enum Step {
    /// Finds existing ones.
    Find,
    /// Inserts new ones.
    Insert,
}

/// (method index, path, id) of `count.methods` rows a statement returned.
fn endpoint_rows(rows: SpiTupleTable<'_>) -> SpiResult<Vec<(usize, String, i64)>> {
    let mut found = Vec::new();
    for row in rows {
        let id: Option<i64> = row.get(1)?;
        let method: Option<String> = row.get(2)?;
        let path: Option<String> = row.get(3)?;
        if let (Some(id), Some(method), Some(path)) = (id, method, path)
            && let Some(method) = METHODS.iter().position(|m| *m == method)
        {
            found.push((method, path, id));
        }
    }
    Ok(found)
}

/// Inserts endpoints that are most likely new: a plain INSERT in a
/// subtransaction, and only if one of them existed after all (inserted
/// meanwhile by another backend), INSERT … ON CONFLICT DO NOTHING. ON
/// CONFLICT checks every row for a conflict before inserting it, which made
/// it a third slower than the plain INSERT (41 against 26 ms for 10,000
/// endpoints), and inserting endpoints dominated `add_batch` calls with new
/// ones.
fn insert_endpoints(
    client: &mut SpiClient<'_>,
    plans: &Plans,
    args: &[DatumWithOid<'_>],
) -> SpiResult<Vec<(usize, String, i64)>> {
    let plain = subtransaction::attempt(PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION, || {
        endpoint_rows(client.update(&plans.insert_endpoints_plain, None, args)?)
    });
    match plain {
        Some(found) => found,
        None => endpoint_rows(client.update(&plans.insert_endpoints_on_conflict, None, args)?),
    }
}
