//! The HTTP side of `count serve` (`--http-listen`): the read and write API
//! as JSON (and CSV for totals) for callers without a gRPC stack, over the
//! same store, limits and tokens as the gRPC side.
//!
//! Layout:
//! - this module: the router, bearer tokens, errors as JSON, serving;
//! - `totals`: `GET /api/v1/totals`, `GetTotals` over HTTP;
//! - `counts`: `POST /api/v1/counts`, `AddBatch` over HTTP;
//! - `openapi.json`: the API's description, served at
//!   `/api/v1/openapi.json` (a test checks it against real responses).

mod counts;
mod totals;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tonic::Code;

use crate::auth::{Role, Tokens};
use crate::error::{Error, Result};
use crate::ingest::IngestConfig;
use crate::state::State;

/// What the HTTP handlers share; cheap to clone.
#[derive(Debug, Clone)]
pub struct HttpApi {
    state: State,
    ingest: IngestConfig,
    tokens: Option<Arc<Tokens>>,
    /// The largest request body, as `--max-message-bytes` bounds a gRPC
    /// message.
    max_body_bytes: usize,
}

impl HttpApi {
    /// The API over `state`, checking `tokens` when there are any.
    pub fn new(
        state: State,
        ingest: IngestConfig,
        tokens: Option<Tokens>,
        max_body_bytes: usize,
    ) -> Self {
        HttpApi {
            state,
            ingest,
            tokens: tokens.map(Arc::new),
            max_body_bytes,
        }
    }

    /// Refuses a request without a token that has `role` (when tokens are
    /// configured): the gRPC side's rules, from the `Authorization: Bearer`
    /// header.
    fn authorize(&self, headers: &HeaderMap, role: Role) -> std::result::Result<(), HttpError> {
        let Some(tokens) = &self.tokens else {
            return Ok(());
        };
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::auth::bearer_token)
            .ok_or_else(|| {
                HttpError::plain(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHENTICATED",
                    "missing bearer token: send the header `Authorization: Bearer <token>`",
                )
            })?;
        let roles = tokens.roles(token.trim()).ok_or_else(|| {
            HttpError::plain(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "invalid bearer token",
            )
        })?;
        if roles.contains(&Role::Admin) || roles.contains(&role) {
            return Ok(());
        }
        Err(HttpError::plain(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            &format!("this token lacks the '{}' role", role.name()),
        ))
    }
}

/// The routes: the API, its description, and health.
pub fn router(api: HttpApi) -> Router {
    let body_limit = DefaultBodyLimit::max(api.max_body_bytes);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/totals", get(totals::totals))
        .route("/api/v1/counts", post(counts::counts).layer(body_limit))
        .route("/api/v1/openapi.json", get(openapi))
        .fallback(not_found)
        .with_state(api)
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets
/// requests under way finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::io("serving HTTP"))
}

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

/// 200 while the database answers, 503 otherwise: what the gRPC health
/// service says, for load balancers that speak HTTP.
async fn healthz(axum::extract::State(api): axum::extract::State<HttpApi>) -> Response {
    let up = match api.state.store() {
        Ok(store) => store.ping().await,
        Err(_) => false,
    };
    if up {
        json(StatusCode::OK, &serde_json::json!({ "status": "SERVING" }))
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "status": "NOT_SERVING" }),
        )
    }
}

async fn not_found() -> HttpError {
    HttpError::plain(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "no such route: see /api/v1/openapi.json",
    )
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        value.to_string(),
    )
        .into_response()
}

/// An error as the HTTP API answers it: a status and
/// `{"error": {"code", "message", "fields": [{"field", "reason"}]}}`, the
/// fields naming each parameter or entry at fault.
#[derive(Debug)]
pub(crate) struct HttpError {
    status: StatusCode,
    body: serde_json::Value,
}

impl HttpError {
    fn plain(status: StatusCode, code: &str, message: &str) -> HttpError {
        HttpError {
            status,
            body: serde_json::json!({ "error": { "code": code, "message": message, "fields": [] } }),
        }
    }
}

impl From<Error> for HttpError {
    fn from(error: Error) -> Self {
        let fields: Vec<serde_json::Value> = match &error {
            Error::InvalidArgument { field, reason } | Error::TooLarge { field, reason } => {
                vec![serde_json::json!({ "field": field, "reason": reason })]
            }
            Error::EntriesRefused(refusals) => refusals
                .iter()
                .map(|r| serde_json::json!({ "field": r.field, "reason": r.reason }))
                .collect(),
            _ => Vec::new(),
        };
        // The gRPC side's code and message: one mapping from SQLSTATEs.
        let status = tonic::Status::from(error);
        HttpError {
            status: http_status(status.code()),
            body: serde_json::json!({ "error": {
                "code": code_name(status.code()),
                "message": status.message(),
                "fields": fields,
            } }),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        json(self.status, &self.body)
    }
}

/// The HTTP status of a gRPC code (as gRPC's own HTTP mapping guides).
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        Code::OutOfRange => StatusCode::PAYLOAD_TOO_LARGE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The gRPC code's name, as the JSON error's `code`.
fn code_name(code: Code) -> String {
    format!("{code:?}")
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let underscore = (i > 0 && c.is_ascii_uppercase()).then_some('_');
            underscore
                .into_iter()
                .chain(std::iter::once(c.to_ascii_uppercase()))
        })
        .collect()
}

/// A body of `content_type` text.
fn text(content_type: &'static str, body: String) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        Body::from(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::code_name;
    use tonic::Code;

    #[test]
    fn codes_are_named_as_grpc_names_them() {
        for (code, name) in [
            (Code::InvalidArgument, "INVALID_ARGUMENT"),
            (Code::Unavailable, "UNAVAILABLE"),
            (Code::ResourceExhausted, "RESOURCE_EXHAUSTED"),
        ] {
            assert_eq!(code_name(code), name);
        }
    }
}
