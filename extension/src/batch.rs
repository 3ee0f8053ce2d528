//! `add_batch`'s arguments, validated in one pass into rows.
//!
//! Messages and SQLSTATEs match the portable fallback (`sql/add_batch.sql`),
//! so callers see the same errors on either backend (but for a sum that
//! overflows a bigint: 22003 on both, in PostgreSQL's words there). Indexes
//! are 1-based, like the SQL arrays' ordinalities.

use crate::error::Error;

/// The method names `count.add_batch` accepts: the `count.v1.Method` enum's,
/// and `OTHER` for a method outside it. (e2e
/// sql::every_count_v1_method_and_other_is_accepted checks this list, and
/// the fallback's, against the proto.)
pub const METHODS: [&str; 11] = [
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "TRACE", "PATCH", "GRPC", "OTHER",
];

/// A timestamp as `add_batch` checks it.
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
    /// Each row's timestamp, passed through untouched.
    pub timestamps: Vec<T>,
    /// Each row's count, at least 1.
    pub counts: Vec<i64>,
    /// The sum of `counts`.
    pub requests: i64,
}

impl<'a, T: Timestamp> Batch<'a, T> {
    /// Checks the arguments as the SQL function received them (`None` for a
    /// NULL array or element).
    pub fn from_arrays(
        producer: Option<&'a str>,
        seq: Option<i64>,
        methods: Option<Vec<Option<&'a str>>>,
        paths: Option<Vec<Option<&'a str>>>,
        timestamps: Option<Vec<Option<T>>>,
        counts: Option<Vec<Option<i64>>>,
    ) -> Result<Self, Error> {
        let (Some(methods), Some(paths), Some(timestamps), Some(counts)) =
            (methods, paths, timestamps, counts)
        else {
            return Err(Error::Null(
                "methods, paths, timestamps and counts must not be NULL".into(),
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
        // NULLs first, over all rows, then values: the fallback's order.
        for i in 0..n {
            let null = if methods[i].is_none() {
                "methods"
            } else if paths[i].is_none() {
                "paths"
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
            timestamps: Vec::with_capacity(n),
            counts: Vec::with_capacity(n),
            requests: 0,
        };
        // No element is NULL any more, so flattening keeps every row.
        let rows = (methods.into_iter().flatten())
            .zip(paths.into_iter().flatten())
            .zip(timestamps.into_iter().flatten())
            .zip(counts.into_iter().flatten());
        for (i, (((method, path), timestamp), count)) in rows.enumerate() {
            let index = i + 1;
            let Some(method) = METHODS.iter().position(|m| *m == method) else {
                return Err(Error::Invalid(format!(
                    "methods[{index}] is not a known method: {method}"
                )));
            };
            if path.is_empty() {
                return Err(Error::Invalid(format!("paths[{index}] must not be empty")));
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
            batch.timestamps.push(timestamp);
            batch.counts.push(count);
        }
        Ok(batch)
    }
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

    type Args<'a> = (
        Option<&'a str>,
        Option<i64>,
        Option<Vec<Option<&'a str>>>,
        Option<Vec<Option<&'a str>>>,
        Option<Vec<Option<u8>>>,
        Option<Vec<Option<i64>>>,
    );

    /// Makes one argument of a valid call bad.
    type Change = Box<dyn Fn(&mut Args<'_>)>;

    fn check(args: Args<'_>) -> Result<Batch<'_, u8>, Error> {
        Batch::from_arrays(args.0, args.1, args.2, args.3, args.4, args.5)
    }

    fn valid<'a>() -> Args<'a> {
        (
            Some("p"),
            Some(7),
            Some(vec![Some("GET"), Some("GRPC")]),
            Some(vec![Some("/a"), Some("/s.S/M")]),
            Some(vec![Some(1), Some(2)]),
            Some(vec![Some(3), Some(4)]),
        )
    }

    #[test]
    fn valid_arrays_become_rows() {
        let batch = check(valid()).unwrap();
        assert_eq!(batch.claim, Some(("p", 7)));
        assert_eq!(batch.methods, vec![2, 9]);
        assert_eq!(batch.paths, vec!["/a", "/s.S/M"]);
        assert_eq!(batch.timestamps, vec![1, 2]);
        assert_eq!(batch.requests, 7);
    }

    #[test]
    fn each_bad_argument_names_itself_and_its_index() {
        let cases: Vec<(Change, Error)> = vec![
            (Box::new(|a| a.5 = None), Error::Null("methods, paths, timestamps and counts must not be NULL".into())),
            (Box::new(|a| a.1 = None), Error::Null("producer and seq must be both NULL or both set".into())),
            (Box::new(|a| a.0 = Some("")), Error::Invalid("producer must not be empty".into())),
            (Box::new(|a| a.3 = Some(vec![Some("/a")])), Error::Invalid("methods, paths, timestamps and counts must have the same length, got 2, 1, 2, 2".into())),
            (Box::new(|a| a.4 = Some(vec![Some(1), None])), Error::Null("timestamps[2] must not be NULL".into())),
            (Box::new(|a| a.2 = Some(vec![Some("GET"), Some("FETCH")])), Error::Invalid("methods[2] is not a known method: FETCH".into())),
            (Box::new(|a| a.3 = Some(vec![Some(""), Some("/b")])), Error::Invalid("paths[1] must not be empty".into())),
            (Box::new(|a| a.4 = Some(vec![Some(1), Some(u8::MAX)])), Error::Invalid("timestamps[2] must be a finite time".into())),
            (Box::new(|a| a.5 = Some(vec![Some(1), Some(0)])), Error::Invalid("counts[2] must be at least 1, got 0".into())),
            (Box::new(|a| a.5 = Some(vec![Some(i64::MAX), Some(1)])), Error::Overflow),
        ];
        for (change, expected) in cases {
            let mut args = valid();
            change(&mut args);
            assert_eq!(check(args).unwrap_err(), expected);
        }
    }
}
