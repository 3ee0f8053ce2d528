//! The cardinality guard: the series (tenant, method, path, status code) the
//! database holds, and caps on how many there may be, overall and per
//! tenant. Past a cap, new series are refused while known ones keep
//! counting, so a client sending random paths or tenants cannot grow the
//! database without bound, and one tenant cannot use up the cap of all.
//!
//! Each server keeps the set, loaded from `count.methods` at start-up and
//! merged with it periodically to see what other servers added; between
//! merges, several servers may each admit a few series past a cap.

use std::collections::HashMap;
use std::sync::RwLock;

use count_proto::v1::Method;
use hashbrown::{Equivalent, HashSet};

use crate::entry::method_of_stored;
use crate::error::Error;

/// One series, borrowed: what [`KnownSeries::admit`] looks up without
/// allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Series<'a> {
    /// The method.
    pub method: Method,
    /// The path.
    pub path: &'a str,
    /// The tenant, '' for none.
    pub tenant: &'a str,
    /// The status code, `None` when unknown.
    pub status: Option<u16>,
}

/// A [`Series`], owned. Its fields hash as the borrowed one's do (a
/// `String` hashes as its `str`; same order).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    method: Method,
    path: String,
    tenant: String,
    status: Option<u16>,
}

impl Equivalent<SeriesKey> for Series<'_> {
    fn equivalent(&self, key: &SeriesKey) -> bool {
        self.method == key.method
            && self.status == key.status
            && self.path == key.path
            && same_text(self.tenant, &key.tenant)
    }
}

/// `a == b`, without comparing two empty strings' bytes: `==` on two empty
/// strings cost about 90 ns on the development machine (libc's `memcmp` of
/// 0 bytes, through their dangling pointers), and the empty tenant is
/// every old client's. (count-client's tally has the same function.)
pub(crate) fn same_text(a: &str, b: &str) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
}

impl Series<'_> {
    fn key(&self) -> SeriesKey {
        SeriesKey {
            method: self.method,
            path: self.path.to_owned(),
            tenant: self.tenant.to_owned(),
            status: self.status,
        }
    }
}

/// A series as `count.methods` stores it: method name, path, tenant and
/// status code (-1 for unknown).
pub type StoredSeries = (String, String, String, i32);

#[derive(Debug, Default)]
struct Known {
    series: HashSet<SeriesKey>,
    per_tenant: HashMap<String, usize>,
}

/// Known series, capped.
#[derive(Debug)]
pub struct KnownSeries {
    known: RwLock<Known>,
    cap: usize,
    tenant_cap: Option<usize>,
}

impl KnownSeries {
    /// An empty set admitting at most `cap` series, and at most
    /// `tenant_cap` of any one tenant.
    pub fn new(cap: usize, tenant_cap: Option<usize>) -> Self {
        KnownSeries {
            known: RwLock::default(),
            cap,
            tenant_cap,
        }
    }

    /// Adds what the database holds (series other servers added). The set
    /// only grows, as `count.methods` does: a merge, so series admitted
    /// while the database was being read are kept.
    pub fn merge(&self, stored: impl IntoIterator<Item = StoredSeries>) {
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        for (method, path, tenant, status) in stored {
            let Some(method) = method_of_stored(&method) else {
                continue;
            };
            let series = SeriesKey {
                method,
                path,
                status: u16::try_from(status).ok(),
                tenant,
            };
            if !known.series.contains(&series) {
                *known.per_tenant.entry(series.tenant.clone()).or_default() += 1;
                known.series.insert(series);
            }
        }
    }

    /// Admits `series`: known, or new and under the caps.
    pub fn admit(&self, series: Series<'_>) -> Result<(), Error> {
        if self
            .known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .series
            .contains(&series)
        {
            return Ok(());
        }
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        if known.series.contains(&series) {
            return Ok(());
        }
        if known.series.len() >= self.cap {
            return Err(Error::ResourceExhausted(format!(
                "the limit of {} series (tenant, method, path, status code) is reached: \
                 new series are refused",
                self.cap
            )));
        }
        let of_tenant = known.per_tenant.get(series.tenant).copied().unwrap_or(0);
        if let Some(cap) = self.tenant_cap
            && of_tenant >= cap
        {
            return Err(Error::ResourceExhausted(format!(
                "the limit of {cap} series per tenant is reached for tenant {:?}: \
                 its new series are refused",
                series.tenant
            )));
        }
        known
            .per_tenant
            .insert(series.tenant.to_owned(), of_tenant + 1);
        known.series.insert(series.key());
        Ok(())
    }

    /// Series known now.
    pub fn len(&self) -> usize {
        self.known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .series
            .len()
    }

    /// True when no series is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(method: Method, path: &'static str, tenant: &'static str) -> Series<'static> {
        Series {
            method,
            path,
            tenant,
            status: Some(200),
        }
    }

    fn stored(method: &str, path: &str, tenant: &str, status: i32) -> StoredSeries {
        (method.into(), path.into(), tenant.into(), status)
    }

    #[test]
    fn known_series_pass_and_new_ones_stop_at_the_cap() {
        let known = KnownSeries::new(4, None);
        known.merge([
            stored("GET", "/a", "t", 200),
            stored("POST", "/a", "t", 200),
        ]);
        known.merge([stored("GET", "/a", "t", 200)]);
        assert_eq!(known.len(), 2);
        assert!(known.admit(series(Method::Get, "/a", "t")).is_ok());
        assert!(known.admit(series(Method::Put, "/a", "t")).is_ok());
        let unknown_status = Series {
            status: None,
            ..series(Method::Put, "/a", "t")
        };
        assert!(known.admit(unknown_status).is_ok(), "a series of its own");
        let refused = known.admit(series(Method::Get, "/a", "u")).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the limit of 4 series (tenant, method, path, status code) is reached: \
             new series are refused"
        );
        assert!(
            known.admit(series(Method::Put, "/a", "t")).is_ok(),
            "admitted ones stay known"
        );
        assert_eq!(known.len(), 4);
    }

    #[test]
    fn one_tenant_stops_at_its_own_cap_and_the_others_go_on() {
        let known = KnownSeries::new(100, Some(2));
        known.merge([stored("GET", "/a", "big", -1)]);
        assert!(known.admit(series(Method::Get, "/b", "big")).is_ok());
        let refused = known.admit(series(Method::Get, "/c", "big")).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the limit of 2 series per tenant is reached for tenant \"big\": \
             its new series are refused"
        );
        assert!(known.admit(series(Method::Get, "/c", "small")).is_ok());
        assert!(known.admit(series(Method::Get, "/b", "big")).is_ok());
        let merged = Series {
            status: None,
            ..series(Method::Get, "/a", "big")
        };
        assert!(known.admit(merged).is_ok(), "-1 is merged as unknown");
    }
}
