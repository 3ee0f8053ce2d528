//! `GET /api/v1/totals`: `GetTotals` over HTTP. The query parameters are
//! `GetTotalsRequest`'s fields, by the same names, so that the one check of
//! a request ([`crate::query::totals_query`]) and `count.totals` name the
//! same parameter a caller sent. JSON by default; CSV with `format=csv` or
//! `Accept: text/csv`.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::response::Response;
use chrono::{DateTime, Utc};
use count_proto::v1::{Dimension, GetTotalsRequest, Granularity, Method};
use futures::{StreamExt, TryStreamExt};

use super::{HttpApi, HttpError, json};
use crate::auth::Role;
use crate::db::store::TotalRow;
use crate::error::Error;
use crate::export;
use crate::query;

/// The parameters that may be given more than once, each adding to the
/// list.
const LISTS: [&str; 4] = ["methods", "group_by", "tenants", "statuses"];

/// The answer's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

pub(super) async fn totals(
    State(api): State<HttpApi>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let bound = api.admit(&headers, Role::Read, "GET /api/v1/totals")?;
    let (request, format) = request(raw.as_deref().unwrap_or(""), &headers)?;
    let query = query::totals_query(request, bound.as_ref())?;
    let mut response = match format {
        Format::Json => {
            // Taken before the read's snapshot: everything committed
            // before it is in the answer.
            let as_of = Utc::now();
            let rows = api.state.store()?.totals(&query).await?;
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "as_of": export::rfc3339(as_of),
                    "totals": rows.iter().map(export::json).collect::<Vec<_>>(),
                }),
            )
        }
        Format::Csv => csv(api.state.store()?.totals_stream(&query).await?).await?,
    };
    // The body depends on Accept: caches must key on it.
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept"));
    Ok(response)
}

/// The request the query string asks for, and the answer's format.
fn request(raw: &str, headers: &HeaderMap) -> Result<(GetTotalsRequest, Format), Error> {
    let mut request = GetTotalsRequest::default();
    let mut format = match headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        Some(accept) if accept.contains("text/csv") => Format::Csv,
        _ => Format::Json,
    };
    let mut seen = std::collections::HashSet::new();
    for (name, value) in parameters(raw)? {
        // Lists may repeat; a second value of any other would silently
        // replace the first.
        if !LISTS.contains(&name.as_str()) && !seen.insert(name.clone()) {
            return Err(Error::invalid(name, "given twice"));
        }
        let value = value.as_str();
        match name.as_str() {
            "start_time" => request.start_time = Some(time(value, "start_time")?),
            "end_time" => request.end_time = Some(time(value, "end_time")?),
            "granularity" => {
                request.granularity = Granularity::from_str_name(&value.to_ascii_uppercase())
                    .filter(|g| *g != Granularity::Unspecified)
                    .ok_or_else(|| {
                        Error::invalid(
                            "granularity",
                            format!(
                                "must be minute, hour, day, week, month, year or total, got '{value}'"
                            ),
                        )
                    })? as i32;
            }
            "time_zone" => request.time_zone = value.to_owned(),
            "methods" => {
                for method in value.split(',').filter(|m| !m.is_empty()) {
                    let number = match method.to_ascii_uppercase().as_str() {
                        "OTHER" => Method::Unspecified,
                        name => Method::from_str_name(name)
                            .filter(|m| *m != Method::Unspecified)
                            .ok_or_else(|| {
                                Error::invalid(
                                    "methods",
                                    format!(
                                        "unknown method '{method}' (GET, POST, …, GRPC, OTHER)"
                                    ),
                                )
                            })?,
                    };
                    request.methods.push(number as i32);
                }
            }
            "path" => request.path = value.to_owned(),
            "path_prefix" => request.path_prefix = value.to_owned(),
            "group_by" => {
                for name in value.split(',').map(str::trim) {
                    let name = name.to_ascii_lowercase();
                    if name.is_empty() || name == "none" {
                        continue;
                    }
                    // Every dimension has a name: the enum's numbers
                    // from 1 on.
                    let dimension = (1..)
                        .map_while(|n| Dimension::try_from(n).ok())
                        .find(|d| query::dimension_name(*d) == Some(name.as_str()))
                        .ok_or_else(|| {
                            Error::invalid(
                                "group_by",
                                format!(
                                    "must be none or a list of endpoint, tenant, status and \
                                     status_class, got '{name}'"
                                ),
                            )
                        })?;
                    request.group_by.push(dimension as i32);
                }
            }
            // One tenant per parameter: a tenant may hold a comma.
            "tenants" => request.tenants.push(value.to_owned()),
            "statuses" => request.statuses.extend(
                value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.trim().to_ascii_lowercase()),
            ),
            "top" => {
                request.top = value.parse().map_err(|_| {
                    Error::invalid("top", format!("must be a whole number, got '{value}'"))
                })?;
            }
            "format" => {
                format = match value.to_ascii_lowercase().as_str() {
                    "json" => Format::Json,
                    "csv" => Format::Csv,
                    other => {
                        return Err(Error::invalid(
                            "format",
                            format!("must be json or csv, got '{other}'"),
                        ));
                    }
                };
            }
            _ => {
                return Err(Error::invalid(
                    name,
                    "unknown parameter: see /api/v1/openapi.json",
                ));
            }
        }
    }
    Ok((request, format))
}

/// The query string's `name=value` pairs, percent-decoded. Not as an HTML
/// form's: a `+` stays a `+`, as in `start_time=…T12:00:00+05:45` or
/// `time_zone=Etc/GMT+5`, and a space is sent as `%20`.
fn parameters(raw: &str) -> Result<Vec<(String, String)>, Error> {
    let decode = |part: &str, what: &str| {
        percent_encoding::percent_decode_str(part)
            .decode_utf8()
            .map(|text| text.into_owned())
            .map_err(|_| Error::invalid(what.to_owned(), "is not UTF-8 once percent-decoded"))
    };
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(name, "query string")?;
            let value = decode(value, &name)?;
            Ok((name, value))
        })
        .collect()
}

/// The rows as a CSV body streamed as they come, so that a year by minute
/// does not sit in the server's memory. The first row is awaited before
/// answering: `count.totals` raises its errors (a bad time zone, a range
/// too long) before it returns any row, and they must be a 400, not a
/// cut-off 200.
async fn csv(
    rows: impl futures::Stream<Item = Result<TotalRow, Error>> + Send + 'static,
) -> Result<Response, Error> {
    let mut rows = Box::pin(rows);
    let first = rows.next().await.transpose()?;
    let lines = futures::stream::iter(first.map(Ok))
        .chain(rows)
        .map(|row| row.map(|row| export::csv(&row)))
        .inspect_err(|error| tracing::warn!(%error, "a CSV answer was cut short"));
    let body = futures::stream::once(async { Ok(export::CSV_HEADER.to_owned()) }).chain(lines);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        )],
        Body::from_stream(body),
    )
        .into_response())
}

/// An RFC 3339 time as the wire's timestamp.
fn time(value: &str, field: &str) -> Result<prost_types::Timestamp, Error> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| query::timestamp(t.with_timezone(&Utc)))
        .map_err(|e| {
            Error::invalid(
                field,
                format!(
                    "must be an RFC 3339 time such as 2026-11-29T12:00:00Z, got '{value}': {e}"
                ),
            )
        })
}
