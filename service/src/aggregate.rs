//! In-memory aggregation: many entries become one row per series (method,
//! path, tenant, status code) and minute, so the database sees one row per
//! key per flush.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;

use chrono::DateTime;
use count_proto::v1::Method;

use crate::db::store::FlushBatch;
use crate::entry::{Entry, stored_method};
use crate::error::Error;
use crate::series::{Series, same_text};

/// A series and a minute. Its `eq` compares the fields the derived `Hash`
/// hashes, the tenant through [`same_text`].
#[allow(clippy::derived_hash_with_manual_eq)]
#[derive(Debug, Hash)]
struct Key {
    method: Method,
    path: String,
    tenant: String,
    status: Option<u16>,
    minute: i64,
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.minute == other.minute
            && self.method == other.method
            && self.status == other.status
            && self.path == other.path
            && same_text(&self.tenant, &other.tenant)
    }
}

impl Eq for Key {}

/// Counts summed by series and minute, waiting to be flushed.
///
/// Hashed with foldhash (randomly seeded per process) rather than SipHash:
/// hashing was a tenth of an `Add` stream's cost per message, and the keys an
/// attacker could aim at the table are bounded by the endpoint guard.
#[derive(Debug, Default)]
pub struct Aggregate {
    counts: HashMap<Key, i64, foldhash::fast::RandomState>,
    requests: i64,
}

impl Aggregate {
    /// Adds `entry`; a key new to this aggregate must first pass `admit`
    /// (the series guard), so known keys cost one hash lookup. Fails,
    /// leaving the aggregate unchanged, when `admit` refuses or a sum would
    /// overflow an `i64`.
    pub fn add(
        &mut self,
        entry: Entry,
        admit: impl FnOnce(Series<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let overflow = || Error::invalid("count", "the sum of the counts would overflow int64");
        let requests = self
            .requests
            .checked_add(entry.count)
            .ok_or_else(overflow)?;
        // Every key's sum is at most the total, which just fit.
        let key = Key {
            method: entry.method,
            path: entry.path,
            tenant: entry.tenant,
            status: entry.status,
            minute: entry.minute,
        };
        match self.counts.entry(key) {
            Slot::Occupied(mut slot) => *slot.get_mut() += entry.count,
            Slot::Vacant(slot) => {
                let key = slot.key();
                admit(Series {
                    method: key.method,
                    path: &key.path,
                    tenant: &key.tenant,
                    status: key.status,
                })?;
                slot.insert(entry.count);
            }
        }
        self.requests = requests;
        Ok(())
    }

    /// Distinct keys held.
    pub fn keys(&self) -> usize {
        self.counts.len()
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Takes everything out as one batch, leaving the aggregate empty.
    pub fn take_batch(&mut self) -> FlushBatch {
        let mut batch = FlushBatch {
            requests: std::mem::take(&mut self.requests),
            ..FlushBatch::default()
        };
        for (
            Key {
                method,
                path,
                tenant,
                status,
                minute,
            },
            count,
        ) in self.counts.drain()
        {
            batch.methods.push(stored_method(method));
            batch.paths.push(path);
            batch.tenants.push(tenant);
            batch.status_codes.push(status.map(i32::from));
            batch
                .timestamps
                .push(DateTime::from_timestamp(minute, 0).unwrap_or_default());
            batch.counts.push(count);
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(method: Method, path: &str, minute: i64, count: i64) -> Entry {
        Entry {
            method,
            path: path.to_owned(),
            tenant: String::new(),
            status: None,
            minute,
            count,
        }
    }

    #[test]
    fn sums_by_series_and_minute() {
        let mut aggregate = Aggregate::default();
        for e in [
            entry(Method::Get, "/a", 10, 1),
            entry(Method::Get, "/a", 10, 2),
            entry(Method::Post, "/a", 10, 1),
            entry(Method::Get, "/a", 11, 1),
            Entry {
                tenant: "t".into(),
                ..entry(Method::Get, "/a", 11, 4)
            },
            Entry {
                status: Some(500),
                ..entry(Method::Get, "/a", 11, 8)
            },
        ] {
            aggregate.add(e, |_| Ok(())).unwrap();
        }
        assert_eq!(aggregate.keys(), 5);
        let batch = aggregate.take_batch();
        assert!(aggregate.is_empty());
        assert_eq!(batch.requests, 17);
        let mut rows: Vec<_> = (0..batch.counts.len())
            .map(|i| {
                (
                    batch.methods[i],
                    batch.paths[i].as_str(),
                    batch.tenants[i].as_str(),
                    batch.status_codes[i],
                    batch.timestamps[i].timestamp(),
                    batch.counts[i],
                )
            })
            .collect();
        rows.sort();
        assert_eq!(
            rows,
            vec![
                ("GET", "/a", "", None, 10, 3),
                ("GET", "/a", "", None, 11, 1),
                ("GET", "/a", "", Some(500), 11, 8),
                ("GET", "/a", "t", None, 11, 4),
                ("POST", "/a", "", None, 10, 1)
            ]
        );
    }

    #[test]
    fn overflow_is_refused_and_leaves_the_aggregate_unchanged() {
        let mut aggregate = Aggregate::default();
        aggregate
            .add(entry(Method::Get, "/a", 10, i64::MAX), |_| Ok(()))
            .unwrap();
        let error = aggregate
            .add(entry(Method::Get, "/b", 10, 1), |_| Ok(()))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "count: the sum of the counts would overflow int64"
        );
        assert_eq!(aggregate.keys(), 1);
        assert_eq!(aggregate.take_batch().requests, i64::MAX);
    }
}
