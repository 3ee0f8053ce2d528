//! In-memory aggregation: many entries become one row per (method, path,
//! second), so the database sees one row per key per flush.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;

use chrono::DateTime;
use count_proto::v1::Method;

use crate::db::store::FlushBatch;
use crate::entry::{Entry, stored_method};
use crate::error::Error;

/// Counts summed by (method, path, second), waiting to be flushed.
///
/// Hashed with foldhash (randomly seeded per process) rather than SipHash:
/// hashing was a tenth of an `Add` stream's cost per message, and the keys an
/// attacker could aim at the table are bounded by the endpoint guard.
#[derive(Debug, Default)]
pub struct Aggregate {
    counts: HashMap<(Method, String, i64), i64, foldhash::fast::RandomState>,
    requests: i64,
}

impl Aggregate {
    /// Adds `entry`; a key new to this aggregate must first pass `admit`
    /// (the endpoint guard), so known keys cost one hash lookup. Fails,
    /// leaving the aggregate unchanged, when `admit` refuses or a sum would
    /// overflow an `i64`.
    pub fn add(
        &mut self,
        entry: Entry,
        admit: impl FnOnce(Method, &str) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let overflow = || Error::invalid("count", "the sum of the counts would overflow int64");
        let requests = self
            .requests
            .checked_add(entry.count)
            .ok_or_else(overflow)?;
        // Every key's sum is at most the total, which just fit.
        match self.counts.entry((entry.method, entry.path, entry.second)) {
            Slot::Occupied(mut slot) => *slot.get_mut() += entry.count,
            Slot::Vacant(slot) => {
                admit(slot.key().0, &slot.key().1)?;
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
        for ((method, path, second), count) in self.counts.drain() {
            batch.methods.push(stored_method(method));
            batch.paths.push(path);
            batch
                .timestamps
                .push(DateTime::from_timestamp(second, 0).unwrap_or_default());
            batch.counts.push(count);
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(method: Method, path: &str, second: i64, count: i64) -> Entry {
        Entry {
            method,
            path: path.to_owned(),
            second,
            count,
        }
    }

    #[test]
    fn sums_by_method_path_and_second() {
        let mut aggregate = Aggregate::default();
        for e in [
            entry(Method::Get, "/a", 10, 1),
            entry(Method::Get, "/a", 10, 2),
            entry(Method::Post, "/a", 10, 1),
            entry(Method::Get, "/a", 11, 1),
        ] {
            aggregate.add(e, |_, _| Ok(())).unwrap();
        }
        assert_eq!(aggregate.keys(), 3);
        let batch = aggregate.take_batch();
        assert!(aggregate.is_empty());
        assert_eq!(batch.requests, 5);
        let mut rows: Vec<_> = (0..batch.counts.len())
            .map(|i| {
                (
                    batch.methods[i],
                    batch.paths[i].as_str(),
                    batch.timestamps[i].timestamp(),
                    batch.counts[i],
                )
            })
            .collect();
        rows.sort();
        assert_eq!(
            rows,
            vec![
                ("GET", "/a", 10, 3),
                ("GET", "/a", 11, 1),
                ("POST", "/a", 10, 1)
            ]
        );
    }

    #[test]
    fn overflow_is_refused_and_leaves_the_aggregate_unchanged() {
        let mut aggregate = Aggregate::default();
        aggregate
            .add(entry(Method::Get, "/a", 10, i64::MAX), |_, _| Ok(()))
            .unwrap();
        let error = aggregate
            .add(entry(Method::Get, "/b", 10, 1), |_, _| Ok(()))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "count: the sum of the counts would overflow int64"
        );
        assert_eq!(aggregate.keys(), 1);
        assert_eq!(aggregate.take_batch().requests, i64::MAX);
    }
}
