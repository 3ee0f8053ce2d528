//! The cardinality guard: the endpoints (method + path) the database holds,
//! and a cap on how many there may be. Past the cap, new endpoints are
//! refused while known ones keep counting, so a client sending random paths
//! cannot grow the database without bound.
//!
//! Each server keeps the set, loaded from `count.methods` at start-up and
//! merged with it periodically to see what other servers added; between
//! merges, several servers may each admit a few endpoints past the cap.

use std::collections::HashMap;
use std::sync::RwLock;

use count_proto::v1::Method;

use crate::entry::method_of_stored;
use crate::error::Error;

/// Known endpoints, capped.
#[derive(Debug)]
pub struct Endpoints {
    /// Methods seen per path, as a bit set indexed by the `Method` enum's
    /// number, so a lookup takes a `&str`.
    known: RwLock<HashMap<String, u128>>,
    count: std::sync::atomic::AtomicUsize,
    cap: usize,
}

/// The bit of `method` in a path's set: its number in `count.v1.Method`
/// (0 to 100 today), so a new enum value needs no change here.
fn bit(method: Method) -> u128 {
    let number = method as u32;
    debug_assert!(number < 128, "count.v1.Method numbers must stay below 128");
    1 << number.min(127)
}

impl Endpoints {
    /// An empty set admitting at most `cap` endpoints.
    pub fn new(cap: usize) -> Self {
        Endpoints {
            known: RwLock::default(),
            count: Default::default(),
            cap,
        }
    }

    /// Adds what the database holds (endpoints other servers added). The set
    /// only grows, as `count.methods` does: a merge, so endpoints admitted
    /// while the database was being read are kept.
    pub fn merge(&self, endpoints: impl IntoIterator<Item = (String, String)>) {
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        let mut added = 0;
        for (method, path) in endpoints {
            if let Some(method) = method_of_stored(&method) {
                let bits = known.entry(path).or_default();
                if *bits & bit(method) == 0 {
                    *bits |= bit(method);
                    added += 1;
                }
            }
        }
        self.count
            .fetch_add(added, std::sync::atomic::Ordering::Relaxed);
    }

    /// Admits (method, path): known, or new and under the cap.
    pub fn admit(&self, method: Method, path: &str) -> Result<(), Error> {
        let bit = bit(method);
        {
            let known = self.known.read().unwrap_or_else(|p| p.into_inner());
            if known.get(path).is_some_and(|bits| bits & bit != 0) {
                return Ok(());
            }
        }
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        let bits = known.get(path).copied().unwrap_or(0);
        if bits & bit != 0 {
            return Ok(());
        }
        let count = self.count.load(std::sync::atomic::Ordering::Relaxed);
        if count >= self.cap {
            return Err(Error::ResourceExhausted(format!(
                "the limit of {} endpoints (method + path) is reached: new endpoints are refused",
                self.cap
            )));
        }
        known.insert(path.to_owned(), bits | bit);
        self.count
            .store(count + 1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Endpoints known now.
    pub fn len(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// True when no endpoint is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_endpoints_pass_and_new_ones_stop_at_the_cap() {
        let endpoints = Endpoints::new(3);
        endpoints.merge([
            ("GET".to_owned(), "/a".to_owned()),
            ("POST".to_owned(), "/a".to_owned()),
        ]);
        endpoints.merge([("GET".to_owned(), "/a".to_owned())]);
        assert_eq!(endpoints.len(), 2);
        assert!(endpoints.admit(Method::Get, "/a").is_ok());
        assert!(endpoints.admit(Method::Put, "/a").is_ok());
        let refused = endpoints.admit(Method::Get, "/b").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the limit of 3 endpoints (method + path) is reached: new endpoints are refused"
        );
        assert!(
            endpoints.admit(Method::Put, "/a").is_ok(),
            "admitted ones stay known"
        );
        assert_eq!(endpoints.len(), 3);
    }
}
