//! Validation of incoming `AddRequest`s into [`Entry`]s.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use count_proto::v1::{AddRequest, Method};

use crate::defaults;
use crate::error::Error;
use crate::metrics;

/// A count's fields as text carries them: the members of an entry of
/// `POST /api/v1/counts` and the columns of `count import`.
pub const TEXT_FIELDS: [&str; 6] = [
    "method",
    "path",
    "tenant",
    "status_code",
    "timestamp",
    "count",
];

/// The stored method of requests whose method is outside `count.v1.Method`.
const OTHER: &str = "OTHER";

/// The method's name as `count.add_batch` takes and `count.methods` stores
/// it: the enum value's name, and `OTHER` for `METHOD_UNSPECIFIED`. The
/// original protocol's middleware sends METHOD_UNSPECIFIED for every method
/// outside the enum (PATCH before it was added, WebDAV methods): they are
/// real requests, so they are counted, under a name of their own.
pub fn stored_method(method: Method) -> &'static str {
    match method {
        Method::Unspecified => OTHER,
        method => method.as_str_name(),
    }
}

/// The method a stored name stands for ([`stored_method`]'s inverse).
pub fn method_of_stored(name: &str) -> Option<Method> {
    match name {
        OTHER => Some(Method::Unspecified),
        name => Method::from_str_name(name),
    }
}

/// One valid request data point, its timestamp truncated to the minute:
/// the finest any read asks for (count.totals takes whole minutes), so
/// requests of one series in one minute are one raw row, not up to 60.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `Unspecified` stands for any method outside the enum (stored as
    /// `OTHER`, see [`stored_method`]).
    pub method: Method,
    /// Not empty, at most [`EntryRules::max_path_bytes`] long.
    pub path: String,
    /// '' for none; at most [`defaults::MAX_TENANT_BYTES`] long.
    pub tenant: String,
    /// `None` when unknown; else an HTTP status code (100-599), or for
    /// GRPC a gRPC status code (0-16).
    pub status: Option<u16>,
    /// The minute's start, in seconds since the Unix epoch (UTC).
    pub minute: i64,
    /// How many requests the entry stands for, at least 1.
    pub count: i64,
}

/// What makes an entry valid; limits come from the server's configuration.
#[derive(Debug, Clone, Copy)]
pub struct EntryRules {
    /// How far in the future a timestamp may be (clock skew).
    pub max_future: Duration,
    /// The longest path accepted, in bytes.
    pub max_path_bytes: usize,
    /// The largest `count` one entry may carry: bounds what one client can
    /// add, and keeps daily sums far from bigint's limit.
    pub max_entry_count: i64,
}

impl Default for EntryRules {
    fn default() -> Self {
        EntryRules {
            max_future: defaults::MAX_FUTURE,
            max_path_bytes: defaults::MAX_PATH_BYTES,
            max_entry_count: defaults::MAX_ENTRY_COUNT,
        }
    }
}

impl EntryRules {
    /// Checks `request` at `clock`'s time. The error's field is relative to the
    /// entry (`path`, `request_timestamp`, ...): callers prefix it with the
    /// entry's position.
    pub fn check(&self, request: AddRequest, clock: &mut Clock) -> Result<Entry, Error> {
        let method = match Method::try_from(request.method) {
            Ok(Method::Unspecified) => {
                metrics::other_method();
                Method::Unspecified
            }
            Ok(method) => method,
            Err(_) => {
                return Err(Error::invalid(
                    "method",
                    format!("unknown method number {}", request.method),
                ));
            }
        };
        if request.path.is_empty() {
            return Err(Error::invalid("path", "must not be empty"));
        }
        if request.path.len() > self.max_path_bytes {
            return Err(Error::invalid(
                "path",
                format!(
                    "is {} bytes long, the limit is {}",
                    request.path.len(),
                    self.max_path_bytes
                ),
            ));
        }
        // PostgreSQL text cannot hold NUL, and no route has control
        // characters: refuse them here rather than fail a whole flush.
        if let Some(at) = request.path.find(char::is_control) {
            return Err(Error::invalid(
                "path",
                format!("has a control character at byte {at}"),
            ));
        }
        if request.tenant.len() > defaults::MAX_TENANT_BYTES {
            return Err(Error::invalid(
                "tenant",
                format!(
                    "is {} bytes long, the limit is {}",
                    request.tenant.len(),
                    defaults::MAX_TENANT_BYTES
                ),
            ));
        }
        if let Some(at) = request.tenant.find(char::is_control) {
            return Err(Error::invalid(
                "tenant",
                format!("has a control character at byte {at}"),
            ));
        }
        let status = request
            .status_code
            .map(|code| status_of(method, code))
            .transpose()?;
        let Some(timestamp) = request.request_timestamp else {
            return Err(Error::invalid("request_timestamp", "must be set"));
        };
        if !(0..1_000_000_000).contains(&timestamp.nanos) {
            return Err(Error::invalid(
                "request_timestamp.nanos",
                format!("must be within 0..999999999, got {}", timestamp.nanos),
            ));
        }
        if timestamp.seconds < 0 {
            return Err(Error::invalid(
                "request_timestamp",
                format!("{}s is before 1970-01-01", timestamp.seconds),
            ));
        }
        let max_future = i64::try_from(self.max_future.as_secs()).unwrap_or(i64::MAX);
        let latest = |now: i64| now.saturating_add(max_future);
        if timestamp.seconds > latest(clock.second) && timestamp.seconds > latest(clock.read()) {
            return Err(Error::invalid(
                "request_timestamp",
                format!(
                    "{} is more than {} in the future",
                    format_seconds(timestamp.seconds),
                    humantime::format_duration(self.max_future)
                ),
            ));
        }
        let count = match request.count {
            0 => 1,
            n if n < 0 => {
                return Err(Error::invalid(
                    "count",
                    format!("must not be negative, got {n}"),
                ));
            }
            n if n > self.max_entry_count => {
                return Err(Error::invalid(
                    "count",
                    format!("{n} is above the limit of {}", self.max_entry_count),
                ));
            }
            n => n,
        };
        Ok(Entry {
            method,
            path: request.path,
            tenant: request.tenant,
            status,
            minute: timestamp.seconds - timestamp.seconds.rem_euclid(60),
            count,
        })
    }
}

/// `code` as the status of a `method` request: a gRPC status code for
/// GRPC, an HTTP one otherwise (the rule `AddRequest.status_code` states).
fn status_of(method: Method, code: u32) -> Result<u16, Error> {
    let (range, what) = if method == Method::Grpc {
        (0..=16, "a gRPC status code (0-16) for GRPC")
    } else {
        (100..=599, "an HTTP status code (100-599)")
    };
    if range.contains(&code) {
        Ok(code as u16)
    } else {
        Err(Error::invalid(
            "status_code",
            format!("must be {what}, got {code}"),
        ))
    }
}

/// The wall clock as [`EntryRules::check`] reads it: the last reading is
/// reused, and the clock read again only when a timestamp is later than that
/// reading allows. Reading it for every message was a tenth of what an `Add`
/// stream spent per message; a reading a little old can only make the check
/// look again, never refuse a timestamp the current time allows.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// The last reading, in seconds since the Unix epoch.
    second: i64,
    fixed: bool,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock {
            second: unix_second(SystemTime::now()),
            fixed: false,
        }
    }

    /// A clock stopped at `at` (tests, and replays of a given moment).
    pub fn fixed(at: SystemTime) -> Clock {
        Clock {
            second: unix_second(at),
            fixed: true,
        }
    }

    /// Reads the time afresh; returns it in seconds since the Unix epoch.
    fn read(&mut self) -> i64 {
        if !self.fixed {
            self.second = unix_second(SystemTime::now());
        }
        self.second
    }
}

/// Whole seconds since the Unix epoch (0 before it).
fn unix_second(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// RFC 3339 text for a Unix second, for messages.
fn format_seconds(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map_or_else(|| format!("{seconds}s"), |t| t.to_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::Timestamp;

    const NOW: u64 = 1_780_000_000;

    fn request(method: i32, path: &str, seconds: Option<i64>, count: i64) -> AddRequest {
        AddRequest {
            method,
            path: path.to_owned(),
            request_timestamp: seconds.map(|seconds| Timestamp { seconds, nanos: 5 }),
            count,
            ..AddRequest::default()
        }
    }

    fn check(request: AddRequest) -> Result<Entry, String> {
        EntryRules::default()
            .check(
                request,
                &mut Clock::fixed(UNIX_EPOCH + Duration::from_secs(NOW)),
            )
            .map_err(|e| e.to_string())
    }

    #[test]
    fn valid_entries_truncate_to_the_minute_and_default_count_to_one() {
        assert_eq!(NOW % 60, 40, "the cases below count on it");
        let now = NOW as i64;
        assert_eq!(
            check(request(Method::Get as i32, "/a", Some(now), 0)),
            Ok(Entry {
                method: Method::Get,
                path: "/a".into(),
                tenant: String::new(),
                status: None,
                minute: now - 40,
                count: 1
            })
        );
        assert_eq!(
            check(AddRequest {
                tenant: "acme".into(),
                status_code: Some(0),
                ..request(Method::Grpc as i32, "/p.S/M", Some(now + 300), 7)
            }),
            Ok(Entry {
                method: Method::Grpc,
                path: "/p.S/M".into(),
                tenant: "acme".into(),
                status: Some(0),
                minute: now + 300 - 40,
                count: 7
            })
        );
        assert_eq!(
            check(AddRequest {
                status_code: Some(503),
                ..request(Method::Post as i32, "/a", Some(now), 1)
            })
            .map(|entry| entry.status),
            Ok(Some(503))
        );
    }

    #[test]
    fn an_unspecified_method_is_counted_as_other() {
        let now = NOW as i64;
        let entry = check(request(0, "/a", Some(now), 2)).unwrap();
        assert_eq!(entry.method, Method::Unspecified);
        assert_eq!(stored_method(entry.method), "OTHER");
        assert_eq!(method_of_stored("OTHER"), Some(Method::Unspecified));
        assert_eq!(method_of_stored("PATCH"), Some(Method::Patch));
    }

    #[test]
    fn invalid_entries_name_the_field() {
        let now = NOW as i64;
        let cases = [
            (
                request(42, "/a", Some(now), 1),
                "method: unknown method number 42",
            ),
            (request(3, "", Some(now), 1), "path: must not be empty"),
            (
                request(3, &"x".repeat(1025), Some(now), 1),
                "path: is 1025 bytes long, the limit is 1024",
            ),
            (request(3, "/a", None, 1), "request_timestamp: must be set"),
            (
                request(3, "/a", Some(-1), 1),
                "request_timestamp: -1s is before 1970-01-01",
            ),
            (
                request(3, "/a", Some(now + 301), 1),
                "request_timestamp: 2026-05-28T20:31:41+00:00 is more than 5m in the future",
            ),
            (
                request(3, "/a", Some(now), -2),
                "count: must not be negative, got -2",
            ),
            (
                request(3, "/a", Some(now), 1_000_000_001),
                "count: 1000000001 is above the limit of 1000000000",
            ),
            (
                request(3, "/a\0b", Some(now), 1),
                "path: has a control character at byte 2",
            ),
            (
                request(3, "/a\nb", Some(now), 1),
                "path: has a control character at byte 2",
            ),
            (
                AddRequest {
                    tenant: "t".repeat(257),
                    ..request(3, "/a", Some(now), 1)
                },
                "tenant: is 257 bytes long, the limit is 256",
            ),
            (
                AddRequest {
                    tenant: "a\tb".into(),
                    ..request(3, "/a", Some(now), 1)
                },
                "tenant: has a control character at byte 1",
            ),
            (
                AddRequest {
                    status_code: Some(0),
                    ..request(3, "/a", Some(now), 1)
                },
                "status_code: must be an HTTP status code (100-599), got 0",
            ),
            (
                AddRequest {
                    status_code: Some(200),
                    ..request(Method::Grpc as i32, "/p.S/M", Some(now), 1)
                },
                "status_code: must be a gRPC status code (0-16) for GRPC, got 200",
            ),
            (
                AddRequest {
                    request_timestamp: Some(Timestamp {
                        seconds: now,
                        nanos: -1,
                    }),
                    ..request(3, "/a", None, 1)
                },
                "request_timestamp.nanos: must be within 0..999999999, got -1",
            ),
        ];
        for (request, expected) in cases {
            assert_eq!(check(request).unwrap_err(), expected);
        }
    }

    mod fuzz {
        //! Property tests on the decode + validation path: whatever arrives,
        //! the server answers with a valid entry or a named field, and never
        //! panics.
        use super::*;
        use proptest::prelude::*;

        const FIELDS: [&str; 7] = [
            "method",
            "path",
            "tenant",
            "status_code",
            "request_timestamp",
            "request_timestamp.nanos",
            "count",
        ];

        fn assert_sound(result: Result<Entry, Error>) {
            let rules = EntryRules::default();
            match result {
                Ok(entry) => {
                    assert!(!entry.path.is_empty() && entry.path.len() <= rules.max_path_bytes);
                    assert!(!entry.path.contains(char::is_control));
                    assert!(entry.tenant.len() <= defaults::MAX_TENANT_BYTES);
                    assert!(!entry.tenant.contains(char::is_control));
                    assert!((1..=rules.max_entry_count).contains(&entry.count));
                    assert!((0..=NOW as i64 + 300).contains(&entry.minute));
                    assert_eq!(entry.minute % 60, 0);
                }
                Err(Error::InvalidArgument { field, .. }) => {
                    assert!(FIELDS.contains(&field.as_str()), "{field}")
                }
                Err(other) => panic!("not a field error: {other}"),
            }
        }

        proptest! {
            #[test]
            fn any_bytes_decode_to_an_entry_or_a_named_error(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                if let Ok(request) = <AddRequest as prost::Message>::decode(bytes.as_slice()) {
                    assert_sound(EntryRules::default().check(request, &mut Clock::fixed(UNIX_EPOCH + Duration::from_secs(NOW))));
                }
            }

            #[test]
            fn any_fields_check_to_an_entry_or_a_named_error(
                method in any::<i32>(),
                path in any::<String>(),
                timestamp in proptest::option::of((any::<i64>(), any::<i32>())),
                count in any::<i64>(),
                tenant in any::<String>(),
                status_code in proptest::option::of(any::<u32>()),
            ) {
                let request = AddRequest {
                    method,
                    path,
                    request_timestamp: timestamp.map(|(seconds, nanos)| Timestamp { seconds, nanos }),
                    count,
                    tenant,
                    status_code,
                };
                assert_sound(EntryRules::default().check(request, &mut Clock::fixed(UNIX_EPOCH + Duration::from_secs(NOW))));
            }
        }
    }
}
