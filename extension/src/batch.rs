//! `add_series`' and `add_batch`'s arguments, validated in one pass into
//! rows.
//!
//! Messages and SQLSTATEs match the portable fallback (`sql/add_batch.sql`),
//! so callers see the same errors on either backend (but for a sum that
//! overflows a bigint: 22003 on both, in PostgreSQL's words there). Indexes
//! are 1-based, like the SQL arrays' ordinalities.

use crate::error::Error;

/// The method names `count.add_series` accepts: the `count.v1.Method` enum's,
/// and `OTHER` for a method outside it. (e2e
/// sql::every_count_v1_method_and_other_is_accepted checks this list, and
/// the fallback's, against the proto.)
pub const METHODS: [&str; 11] = [
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "TRACE", "PATCH", "GRPC", "OTHER",
];

/// The stored status code of a request whose status is unknown (NULL in
/// `count.add_series`' arguments; migration V5).
pub const UNKNOWN_STATUS: i32 = -1;

/// A timestamp as `add_series` checks it.
pub trait Timestamp {
    /// False for `infinity` and `-infinity`, which no day holds: such a row
    /// would never roll up, or stop the rollups.
    fn is_finite(&self) -> bool;
}

impl Timestamp for pgrx::datum::TimestampWithTimeZone {
    fn is_finite(&self) -> bool {
        !self.is_infinity() && !self.is_neg_infinity()
    }
}

/// A validated call: the producer's claim, if any, and the rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch<'a, T> {
    /// `(producer, seq)` for exactly-once calls.
    pub claim: Option<(&'a str, i64)>,
    /// Index into [`METHODS`] of each row.
    pub methods: Vec<usize>,
    /// Each row's path, never empty.
    pub paths: Vec<&'a str>,
    /// Each row's tenant, '' for none.
    pub tenants: Vec<&'a str>,
    /// Each row's status code as stored ([`UNKNOWN_STATUS`] for unknown).
    pub status_codes: Vec<i32>,
    /// Each row's timestamp, passed through untouched.
    pub timestamps: Vec<T>,
    /// Each row's count, at least 1.
    pub counts: Vec<i64>,
    /// The sum of `counts`.
    pub requests: i64,
}

impl<'a, T: Timestamp> Batch<'a, T> {
    /// Checks the arguments as the SQL function received them (`None` for a
    /// NULL array or element), in the fallback's order (`sql/add_batch.sql`,
    /// `count.add_rows`).
    pub fn from_arrays(arrays: Arrays<'a, T>) -> Result<Self, Error> {
        let Arrays {
            producer,
            seq,
            methods,
            paths,
            tenants,
            status_codes,
            timestamps,
            counts,
        } = arrays;
        let (Some(methods), Some(paths), Some(timestamps), Some(counts)) =
            (methods, paths, timestamps, counts)
        else {
            return Err(Error::Null(
                "methods, paths, timestamps and counts must not be NULL".into(),
            ));
        };
        let (Some(tenants), Some(status_codes)) = (tenants, status_codes) else {
            return Err(Error::Null(
                "tenants and status_codes must not be NULL".into(),
            ));
        };
        let claim = match (producer, seq) {
            (None, None) => None,
            (Some(""), Some(_)) => return Err(Error::Invalid("producer must not be empty".into())),
            (Some(producer), Some(seq)) => Some((producer, seq)),
            _ => {
                return Err(Error::Null(
                    "producer and seq must be both NULL or both set".into(),
                ));
            }
        };
        let n = methods.len();
        if paths.len() != n || timestamps.len() != n || counts.len() != n {
            return Err(Error::Invalid(format!(
                "methods, paths, timestamps and counts must have the same length, got {n}, {}, {}, {}",
                paths.len(),
                timestamps.len(),
                counts.len()
            )));
        }
        if tenants.len() != n || status_codes.len() != n {
            return Err(Error::Invalid(format!(
                "tenants and status_codes must have the length of methods, {n}, got {}, {}",
                tenants.len(),
                status_codes.len()
            )));
        }
        // NULLs first, over all rows, then values: the fallback's order.
        for i in 0..n {
            let null = if methods[i].is_none() {
                "methods"
            } else if paths[i].is_none() {
                "paths"
            } else if tenants[i].is_none() {
                "tenants"
            } else if timestamps[i].is_none() {
                "timestamps"
            } else if counts[i].is_none() {
                "counts"
            } else {
                continue;
            };
            return Err(Error::Null(format!("{null}[{}] must not be NULL", i + 1)));
        }
        let mut batch = Batch {
            claim,
            methods: Vec::with_capacity(n),
            paths: Vec::with_capacity(n),
            tenants: Vec::with_capacity(n),
            status_codes: Vec::with_capacity(n),
            timestamps: Vec::with_capacity(n),
            counts: Vec::with_capacity(n),
            requests: 0,
        };
        // No element is NULL any more, so flattening keeps every row.
        let rows = (methods.into_iter().flatten())
            .zip(paths.into_iter().flatten())
            .zip(tenants.into_iter().flatten())
            .zip(status_codes)
            .zip(timestamps.into_iter().flatten())
            .zip(counts.into_iter().flatten());
        for (i, (((((method, path), tenant), status), timestamp), count)) in rows.enumerate() {
            let index = i + 1;
            let Some(method) = METHODS.iter().position(|m| *m == method) else {
                return Err(Error::Invalid(format!(
                    "methods[{index}] is not a known method: {method}"
                )));
            };
            if path.is_empty() {
                return Err(Error::Invalid(format!("paths[{index}] must not be empty")));
            }
            let grpc = METHODS[method] == "GRPC";
            match status {
                Some(code) if grpc && !(0..=16).contains(&code) => {
                    return Err(Error::Invalid(format!(
                        "status_codes[{index}] must be a gRPC status code (0-16) for GRPC, got {code}"
                    )));
                }
                Some(code) if !grpc && !(100..=599).contains(&code) => {
                    return Err(Error::Invalid(format!(
                        "status_codes[{index}] must be an HTTP status code (100-599), got {code}"
                    )));
                }
                _ => {}
            }
            if !timestamp.is_finite() {
                return Err(Error::Invalid(format!(
                    "timestamps[{index}] must be a finite time"
                )));
            }
            if count < 1 {
                return Err(Error::Invalid(format!(
                    "counts[{index}] must be at least 1, got {count}"
                )));
            }
            batch.requests = batch.requests.checked_add(count).ok_or(Error::Overflow)?;
            batch.methods.push(method);
            batch.paths.push(path);
            batch.tenants.push(tenant);
            batch.status_codes.push(status.unwrap_or(UNKNOWN_STATUS));
            batch.timestamps.push(timestamp);
            batch.counts.push(count);
        }
        Ok(batch)
    }
}

/// `count.add_series`' arguments as received (`None` for NULL).
#[derive(Debug, Clone)]
pub struct Arrays<'a, T> {
    /// The producer, for exactly-once calls.
    pub producer: Option<&'a str>,
    /// The producer's sequence number of this call.
    pub seq: Option<i64>,
    /// Method names.
    pub methods: Option<Vec<Option<&'a str>>>,
    /// Paths.
    pub paths: Option<Vec<Option<&'a str>>>,
    /// Tenants, '' for none.
    pub tenants: Option<Vec<Option<&'a str>>>,
    /// Status codes; NULL elements are unknown ones.
    pub status_codes: Option<Vec<Option<i32>>>,
    /// Request times.
    pub timestamps: Option<Vec<Option<T>>>,
    /// Requests per row.
    pub counts: Option<Vec<Option<i64>>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Timestamps in these tests: 255 stands for infinity.
    impl Timestamp for u8 {
        fn is_finite(&self) -> bool {
            *self != u8::MAX
        }
    }

    /// Makes one argument of a valid call bad.
    type Change = Box<dyn Fn(&mut Arrays<'_, u8>)>;

    fn valid<'a>() -> Arrays<'a, u8> {
        Arrays {
            producer: Some("p"),
            seq: Some(7),
            methods: Some(vec![Some("GET"), Some("GRPC")]),
            paths: Some(vec![Some("/a"), Some("/s.S/M")]),
            tenants: Some(vec![Some(""), Some("t1")]),
            status_codes: Some(vec![None, Some(0)]),
            timestamps: Some(vec![Some(1), Some(2)]),
            counts: Some(vec![Some(3), Some(4)]),
        }
    }

    #[test]
    fn valid_arrays_become_rows() {
        let batch = Batch::from_arrays(valid()).unwrap();
        assert_eq!(batch.claim, Some(("p", 7)));
        assert_eq!(batch.methods, vec![2, 9]);
        assert_eq!(batch.paths, vec!["/a", "/s.S/M"]);
        assert_eq!(batch.tenants, vec!["", "t1"]);
        assert_eq!(batch.status_codes, vec![UNKNOWN_STATUS, 0]);
        assert_eq!(batch.timestamps, vec![1, 2]);
        assert_eq!(batch.requests, 7);
    }

    #[test]
    fn each_bad_argument_names_itself_and_its_index() {
        let cases: Vec<(Change, Error)> = vec![
            (Box::new(|a| a.counts = None), Error::Null("methods, paths, timestamps and counts must not be NULL".into())),
            (Box::new(|a| a.status_codes = None), Error::Null("tenants and status_codes must not be NULL".into())),
            (Box::new(|a| a.seq = None), Error::Null("producer and seq must be both NULL or both set".into())),
            (Box::new(|a| a.producer = Some("")), Error::Invalid("producer must not be empty".into())),
            (Box::new(|a| a.paths = Some(vec![Some("/a")])), Error::Invalid("methods, paths, timestamps and counts must have the same length, got 2, 1, 2, 2".into())),
            (Box::new(|a| a.tenants = Some(vec![Some("")])), Error::Invalid("tenants and status_codes must have the length of methods, 2, got 1, 2".into())),
            (Box::new(|a| a.timestamps = Some(vec![Some(1), None])), Error::Null("timestamps[2] must not be NULL".into())),
            (Box::new(|a| a.tenants = Some(vec![Some(""), None])), Error::Null("tenants[2] must not be NULL".into())),
            (Box::new(|a| a.methods = Some(vec![Some("GET"), Some("FETCH")])), Error::Invalid("methods[2] is not a known method: FETCH".into())),
            (Box::new(|a| a.paths = Some(vec![Some(""), Some("/b")])), Error::Invalid("paths[1] must not be empty".into())),
            (Box::new(|a| a.status_codes = Some(vec![Some(99), Some(0)])), Error::Invalid("status_codes[1] must be an HTTP status code (100-599), got 99".into())),
            (Box::new(|a| a.status_codes = Some(vec![None, Some(17)])), Error::Invalid("status_codes[2] must be a gRPC status code (0-16) for GRPC, got 17".into())),
            (Box::new(|a| a.timestamps = Some(vec![Some(1), Some(u8::MAX)])), Error::Invalid("timestamps[2] must be a finite time".into())),
            (Box::new(|a| a.counts = Some(vec![Some(1), Some(0)])), Error::Invalid("counts[2] must be at least 1, got 0".into())),
            (Box::new(|a| a.counts = Some(vec![Some(i64::MAX), Some(1)])), Error::Overflow),
        ];
        for (change, expected) in cases {
            let mut args = valid();
            change(&mut args);
            assert_eq!(Batch::from_arrays(args).unwrap_err(), expected);
        }
    }
}
