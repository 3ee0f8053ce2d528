//! `GetTotalsRequest` in and out: the request checked into a
//! [`TotalsQuery`] (what only the wire can get wrong: missing timestamps,
//! enum numbers out of range), and rows back into `Total` messages. What
//! the range, granularity and time zone may be is `count.totals`' to say
//! (sql/reads.sql): its errors already name the field.

use chrono::{DateTime, Utc};
use count_proto::v1::{Dimension, GetTotalsRequest, Granularity, Method, Total};
use prost_types::Timestamp;

use crate::auth::BoundTenant;
use crate::db::store::{TotalRow, TotalsQuery};
use crate::entry::{method_of_stored, stored_method};
use crate::error::{Error, Result};

/// The query `request` asks for, by a token bound to `bound` if any: such
/// a query reads that tenant only, and naming another is refused, so that
/// a filter can narrow what the token sees but never widen it.
pub fn totals_query(request: GetTotalsRequest, bound: Option<&BoundTenant>) -> Result<TotalsQuery> {
    let start = time(request.start_time, "start_time")?;
    let end = time(request.end_time, "end_time")?;
    let granularity = match Granularity::try_from(request.granularity) {
        Ok(Granularity::Unspecified) => Granularity::Total,
        Ok(granularity) => granularity,
        Err(_) => {
            return Err(Error::invalid(
                "granularity",
                format!("unknown granularity number {}", request.granularity),
            ));
        }
    };
    let methods = request
        .methods
        .iter()
        .enumerate()
        .map(|(i, &number)| {
            Method::try_from(number)
                .map(|method| stored_method(method).to_owned())
                .map_err(|_| {
                    Error::invalid(
                        format!("methods[{i}]"),
                        format!("unknown method number {number}"),
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut group_by = Vec::new();
    for (i, &number) in request.group_by.iter().enumerate() {
        let name = Dimension::try_from(number)
            .ok()
            .and_then(dimension_name)
            .ok_or_else(|| {
                Error::invalid(
                    format!("group_by[{i}]"),
                    format!("unknown dimension number {number}"),
                )
            })?;
        if !group_by.contains(&name) {
            group_by.push(name);
        }
    }
    for (i, status) in request.statuses.iter().enumerate() {
        if !is_status(status) {
            return Err(Error::invalid(
                format!("statuses[{i}]"),
                format!(
                    "'{status}' is neither a status code, a class ({}) nor unknown",
                    STATUS_CLASSES.join(", ")
                ),
            ));
        }
    }
    let top = match request.top {
        0 => None,
        top => Some(i32::try_from(top).map_err(|_| {
            Error::invalid("top", format!("must be at most {}, got {top}", i32::MAX))
        })?),
    };
    let some = |text: String| (!text.is_empty()).then_some(text);
    Ok(TotalsQuery {
        start,
        end,
        granularity: granularity.as_str_name().to_ascii_lowercase(),
        time_zone: some(request.time_zone).unwrap_or_else(|| "UTC".to_owned()),
        methods: (!methods.is_empty()).then_some(methods),
        path: some(request.path),
        path_prefix: some(request.path_prefix),
        tenants: match bound {
            None => (!request.tenants.is_empty()).then_some(request.tenants),
            Some(BoundTenant(tenant)) => {
                if let Some((i, other)) = request
                    .tenants
                    .iter()
                    .enumerate()
                    .find(|(_, t)| *t != tenant)
                {
                    return Err(Error::OtherTenant {
                        field: format!("tenants[{i}]"),
                        reason: format!("this token reads tenant {tenant:?} only, not {other:?}"),
                    });
                }
                Some(vec![tenant.clone()])
            }
        },
        statuses: (!request.statuses.is_empty()).then_some(request.statuses),
        group_by,
        top,
    })
}

/// The status classes a `statuses` filter may name, as `count.status_class`
/// (sql/reads.sql) tells them.
pub const STATUS_CLASSES: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "grpc_ok", "grpc_error"];

/// Whether `status` is a status filter `count.series_totals` takes: a code
/// (up to three digits, no leading zero, as stored), a class, or
/// `unknown`.
pub fn is_status(status: &str) -> bool {
    let code = (1..=3).contains(&status.len())
        && status.bytes().all(|b| b.is_ascii_digit())
        && (status == "0" || !status.starts_with('0'));
    code || STATUS_CLASSES.contains(&status) || status == "unknown"
}

/// A dimension's name in `count.series_totals`' `group_by` (and the HTTP
/// API's); `None` for UNSPECIFIED.
pub fn dimension_name(dimension: Dimension) -> Option<&'static str> {
    match dimension {
        Dimension::Unspecified => None,
        Dimension::Endpoint => Some("endpoint"),
        Dimension::Tenant => Some("tenant"),
        Dimension::Status => Some("status"),
        Dimension::StatusClass => Some("status_class"),
    }
}

/// The wire form of a `count.totals` row.
pub fn total(row: TotalRow) -> Total {
    Total {
        bucket: Some(timestamp(row.bucket)),
        // OTHER, and only it, reads back as METHOD_UNSPECIFIED.
        method: row
            .method
            .as_deref()
            .and_then(method_of_stored)
            .unwrap_or(Method::Unspecified) as i32,
        path: row.path.unwrap_or_default(),
        total: row.total,
        live: row.live,
        tenant: row.tenant.unwrap_or_default(),
        status_code: row.status_code.and_then(|code| u32::try_from(code).ok()),
        status_class: row.status_class.unwrap_or_default(),
    }
}

/// The wire form of a time.
pub fn timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        // Below 10^9 by construction.
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

fn time(timestamp: Option<Timestamp>, field: &str) -> Result<DateTime<Utc>> {
    let timestamp = timestamp.ok_or_else(|| Error::invalid(field, "must be set"))?;
    u32::try_from(timestamp.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(timestamp.seconds, nanos))
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!("{}s {}ns is not a time", timestamp.seconds, timestamp.nanos),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> GetTotalsRequest {
        GetTotalsRequest {
            start_time: Some(Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            end_time: Some(Timestamp {
                seconds: 1_800_003_600,
                nanos: 0,
            }),
            ..GetTotalsRequest::default()
        }
    }

    #[test]
    fn defaults_are_one_utc_total_of_everything() {
        let query = totals_query(request(), None).unwrap();
        assert_eq!(query.granularity, "total");
        assert_eq!(query.time_zone, "UTC");
        assert_eq!(
            (query.methods, query.path, query.path_prefix),
            (None, None, None)
        );
        assert!(query.group_by.is_empty());
        assert_eq!((query.tenants, query.statuses), (None, None));
        assert_eq!(query.top, None);
    }

    #[test]
    fn methods_are_stored_names_and_other() {
        let query = totals_query(
            GetTotalsRequest {
                methods: vec![Method::Get as i32, Method::Unspecified as i32],
                granularity: Granularity::Week as i32,
                group_by: vec![
                    Dimension::Endpoint as i32,
                    Dimension::Status as i32,
                    Dimension::Endpoint as i32,
                ],
                tenants: vec!["acme".into(), String::new()],
                statuses: vec!["5xx".into(), "404".into(), "unknown".into()],
                top: 3,
                ..request()
            },
            None,
        )
        .unwrap();
        assert_eq!(query.group_by, vec!["endpoint", "status"]);
        assert_eq!(query.tenants, Some(vec!["acme".into(), String::new()]));
        assert_eq!(query.statuses.map(|s| s.len()), Some(3));
        assert_eq!(
            query.methods,
            Some(vec!["GET".to_owned(), "OTHER".to_owned()])
        );
        assert_eq!(query.granularity, "week");
        assert_eq!(query.top, Some(3));
    }

    /// The classes and the status check are also count.series_totals'
    /// (sql/reads.sql): the two lists must agree.
    #[test]
    fn the_status_classes_are_the_sql_api_s() {
        let sql = include_str!("../../sql/reads.sql");
        let check = sql
            .split("s.v IN (")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .expect("the statuses check in sql/reads.sql");
        let listed: Vec<&str> = check
            .split(',')
            .map(|c| c.trim().trim_matches('\''))
            .collect();
        let mut expected = STATUS_CLASSES.to_vec();
        expected.push("unknown");
        assert_eq!(listed, expected);
        for (status, valid) in [
            ("0", true),
            ("404", true),
            ("00", false),
            ("007", false),
            ("1000", false),
            ("5xx", true),
            ("6xx", false),
        ] {
            assert_eq!(is_status(status), valid, "{status}");
        }
    }

    #[test]
    fn a_bound_token_reads_its_tenant_only() {
        let acme = BoundTenant("acme".into());
        let query = totals_query(request(), Some(&acme)).unwrap();
        assert_eq!(query.tenants, Some(vec!["acme".to_owned()]));
        let narrowed = GetTotalsRequest {
            tenants: vec!["acme".into(), "acme".into()],
            ..request()
        };
        assert_eq!(
            totals_query(narrowed, Some(&acme)).unwrap().tenants,
            Some(vec!["acme".to_owned()])
        );
        for tenants in [vec!["beta"], vec!["acme", "beta"], vec![""]] {
            let widened = GetTotalsRequest {
                tenants: tenants.iter().map(|t| t.to_string()).collect(),
                ..request()
            };
            let error = totals_query(widened, Some(&acme)).unwrap_err();
            assert_eq!(error.code(), tonic::Code::PermissionDenied, "{tenants:?}");
            assert!(error.to_string().starts_with("tenants["), "{error}");
        }
    }

    #[test]
    fn wire_errors_name_the_field() {
        let cases = [
            (
                GetTotalsRequest {
                    start_time: None,
                    ..request()
                },
                "start_time: must be set",
            ),
            (
                GetTotalsRequest {
                    end_time: Some(Timestamp {
                        seconds: 0,
                        nanos: -1,
                    }),
                    ..request()
                },
                "end_time: 0s -1ns is not a time",
            ),
            (
                GetTotalsRequest {
                    granularity: 99,
                    ..request()
                },
                "granularity: unknown granularity number 99",
            ),
            (
                GetTotalsRequest {
                    methods: vec![3, 55],
                    ..request()
                },
                "methods[1]: unknown method number 55",
            ),
            (
                GetTotalsRequest {
                    group_by: vec![0],
                    ..request()
                },
                "group_by[0]: unknown dimension number 0",
            ),
            (
                GetTotalsRequest {
                    statuses: vec!["2xx".into(), "6xx".into()],
                    ..request()
                },
                "statuses[1]: '6xx' is neither a status code, a class (1xx, 2xx, 3xx, 4xx, 5xx, \
                 grpc_ok, grpc_error) nor unknown",
            ),
            (
                GetTotalsRequest {
                    top: u32::MAX,
                    ..request()
                },
                "top: must be at most 2147483647, got 4294967295",
            ),
        ];
        for (request, expected) in cases {
            assert_eq!(
                totals_query(request, None).unwrap_err().to_string(),
                expected
            );
        }
    }
}
