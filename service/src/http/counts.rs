//! `POST /api/v1/counts`: `AddBatch` over HTTP, for scripts and jobs
//! without a gRPC stack. The body is JSON:
//! `{"producer": "…", "sequence": 1, "entries": [{"method": "GET", "path":
//! "/users/{id}", "timestamp": "2026-11-29T12:00:03Z", "count": 1}]}`.
//! With a producer and sequence the batch counts once however often it is
//! sent, as `AddBatch`; without, each post counts once per call, as an
//! `Add` stream's flush (a retry of a post whose answer was lost may count
//! twice), and leaves no producer behind. Against CSRF: a write
//! takes a bearer token, never a cookie, and only a JSON body a browser
//! marks as not cross-site (see [`same_origin_json`]).

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use count_proto::v1::{AddRequest, Method};
use serde_json::Value;

use super::{HttpApi, HttpError, json, read_body, same_origin_json};
use crate::auth::Role;
use crate::error::Error;
use crate::ingest::ingest_entries;
use crate::query;

pub(super) async fn counts(
    State(api): State<HttpApi>,
    request: Request,
) -> Result<Response, HttpError> {
    let (parts, body) = request.into_parts();
    let bound = api.admit(&parts.headers, Role::Ingest, "POST /api/v1/counts")?;
    same_origin_json(&parts.headers)?;
    // Admitted before the body is read: at most --max-ingest-calls bodies
    // are in memory at once.
    let _permit = api.state.admit_call()?;
    let body = read_body(
        body,
        api.max_body_bytes,
        " (--max-message-bytes)",
        api.body_timeout,
    )
    .await?;
    let (producer, entries) = batch(&body)?;
    let response = ingest_entries(
        api.state.store()?,
        &api.state.series,
        &api.ingest,
        producer
            .as_ref()
            .map(|(id, sequence)| (id.as_str(), *sequence)),
        entries,
        bound.as_ref(),
    )
    .await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "accepted": response.accepted,
            "duplicate": response.duplicate,
            "last_sequence": response.last_sequence,
        }),
    ))
}

/// A post's producer and sequence, when it names them.
type Producer = Option<(String, u64)>;

/// The producer and the entries a body asks for; errors name the member at
/// fault.
fn batch(body: &[u8]) -> Result<(Producer, Vec<AddRequest>), Error> {
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| Error::invalid("body", format!("is not JSON: {e}")))?;
    let Value::Object(body) = body else {
        return Err(Error::invalid("body", "must be a JSON object"));
    };
    for name in body.keys() {
        if !["producer", "sequence", "entries"].contains(&name.as_str()) {
            return Err(Error::invalid(name.as_str(), "unknown member"));
        }
    }
    let producer = match (body.get("producer"), body.get("sequence")) {
        (None, None) => None,
        (Some(Value::String(producer)), _) if producer.is_empty() => {
            return Err(Error::invalid("producer", "must not be empty"));
        }
        (Some(Value::String(producer)), Some(sequence)) => Some((
            producer.clone(),
            sequence.as_u64().filter(|s| *s > 0).ok_or_else(|| {
                Error::invalid("sequence", "must be a whole number of at least 1")
            })?,
        )),
        (Some(Value::String(_)), None) => {
            return Err(Error::invalid("sequence", "must be set with producer"));
        }
        (None, Some(_)) => return Err(Error::invalid("producer", "must be set with sequence")),
        (Some(_), _) => return Err(Error::invalid("producer", "must be a string")),
    };
    let Some(Value::Array(entries)) = body.get("entries") else {
        return Err(Error::invalid("entries", "must be an array"));
    };
    let entries = entries
        .iter()
        .enumerate()
        .map(|(i, entry)| self::entry(i, entry))
        .collect::<Result<Vec<_>, Error>>()?;
    Ok((producer, entries))
}

/// Entry `i`: its JSON shape checked here, its values by the ingest core
/// (an empty path, a time too far ahead…), which names the entry too.
fn entry(i: usize, entry: &Value) -> Result<AddRequest, Error> {
    let field = |name: &str| format!("entries[{i}].{name}");
    let Value::Object(entry) = entry else {
        return Err(Error::invalid(format!("entries[{i}]"), "must be an object"));
    };
    for name in entry.keys() {
        if !crate::entry::TEXT_FIELDS.contains(&name.as_str()) {
            return Err(Error::invalid(field(name), "unknown member"));
        }
    }
    let string = |name: &str| match entry.get(name) {
        Some(Value::String(text)) => Ok(Some(text.as_str())),
        None | Some(Value::Null) => Ok(None),
        Some(_) => Err(Error::invalid(field(name), "must be a string")),
    };
    // As `count add` reads it: any case, and a method outside the list
    // counts as OTHER.
    let method = string("method")?.ok_or_else(|| Error::invalid(field("method"), "must be set"))?;
    let method = Method::from_str_name(&method.to_ascii_uppercase()).unwrap_or(Method::Unspecified);
    let path = string("path")?.unwrap_or("").to_owned();
    let tenant = string("tenant")?.unwrap_or("").to_owned();
    // Absent or null: unknown.
    let status_code = match entry.get("status_code") {
        None | Some(Value::Null) => None,
        Some(code) => Some(
            code.as_u64()
                .and_then(|code| u32::try_from(code).ok())
                .ok_or_else(|| Error::invalid(field("status_code"), "must be a whole number"))?,
        ),
    };
    let timestamp = match string("timestamp")? {
        None => Utc::now(),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|e| {
                Error::invalid(
                    field("timestamp"),
                    format!("must be an RFC 3339 time, got '{text}': {e}"),
                )
            })?
            .with_timezone(&Utc),
    };
    let count = match entry.get("count") {
        None | Some(Value::Null) => 1,
        Some(count) => count
            .as_i64()
            .ok_or_else(|| Error::invalid(field("count"), "must be a whole number"))?,
    };
    Ok(AddRequest {
        method: method as i32,
        path,
        request_timestamp: Some(query::timestamp(timestamp)),
        count,
        tenant,
        status_code,
    })
}
