//! The HTTP side of `count serve` (`--http-listen`): the read and write API
//! as JSON (and CSV for totals) for callers without a gRPC stack, over the
//! same store, limits and tokens as the gRPC side.
//!
//! Layout:
//! - this module: the router, bearer tokens, errors as JSON, serving;
//! - `totals`: `GET /api/v1/totals`, `GetTotals` over HTTP;
//! - `counts`: `POST /api/v1/counts`, `AddBatch` over HTTP;
//! - `session`: `/api/v1/session`, the dashboard's login cookie;
//! - `dashboard`: the page at `/` and its assets (`service/web/`);
//! - `tls`: the listener over TLS, with `--tls-cert`;
//! - `connections`: serving each connection, with its time limits;
//! - `openapi.json`: the API's description, served at
//!   `/api/v1/openapi.json` (a test checks it against real responses).

mod connections;
pub use connections::{HttpLimits, raise_open_files_limit};
mod counts;
pub mod dashboard;
mod session;
mod tls;
mod totals;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tonic::Code;

use crate::auth::{BoundTenant, Role, Tokens};
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
    /// How long a request's body may take to arrive.
    body_timeout: std::time::Duration,
    /// Served over TLS: the session cookie is marked `Secure`.
    secure: bool,
    /// The dashboard's logins.
    sessions: Arc<session::Sessions>,
    /// Only loopback host names are answered: without tokens on a loopback
    /// address, so that a web page cannot reach the API through a name
    /// that resolves to 127.0.0.1 (DNS rebinding).
    loopback_hosts_only: bool,
}

impl HttpApi {
    /// The API over `state` on `address`, checking `tokens` when there are
    /// any.
    pub fn new(
        state: State,
        ingest: IngestConfig,
        tokens: Option<Tokens>,
        max_body_bytes: usize,
        body_timeout: std::time::Duration,
        address: SocketAddr,
        secure: bool,
    ) -> Self {
        HttpApi {
            state,
            secure,
            sessions: Arc::default(),
            ingest,
            loopback_hosts_only: tokens.is_none() && address.ip().is_loopback(),
            tokens: tokens.map(Arc::new),
            max_body_bytes,
            body_timeout,
        }
    }

    /// Refuses a request to a foreign host name (see `loopback_hosts_only`)
    /// or without a token that has `role` (when tokens are configured):
    /// the gRPC side's rule ([`crate::auth::authorize`]), from the
    /// `Authorization: Bearer` header, or for reads from the dashboard's
    /// session cookie. Returns the tenant the token is bound to, if any.
    fn admit(
        &self,
        headers: &HeaderMap,
        role: Role,
        what: &str,
    ) -> std::result::Result<Option<BoundTenant>, HttpError> {
        self.admit_host(headers)?;
        let Some(tokens) = &self.tokens else {
            return Ok(None);
        };
        let cookie = (role == Role::Read)
            .then(|| self.sessions.token(headers))
            .flatten();
        let token = crate::auth::bearer(headers.get(header::AUTHORIZATION)).or(cookie.as_deref());
        crate::auth::authorize(tokens, token, Some(role), what).map_err(HttpError::from)
    }

    /// Refuses a request to a foreign host name (see `loopback_hosts_only`).
    fn admit_host(&self, headers: &HeaderMap) -> std::result::Result<(), HttpError> {
        if self.loopback_hosts_only {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let name = host.rsplit_once(':').map_or(host, |(name, port)| {
                if port.chars().all(|c| c.is_ascii_digit()) {
                    name
                } else {
                    host
                }
            });
            let loopback = name == "localhost"
                || name
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(HttpError::plain(
                    StatusCode::FORBIDDEN,
                    "PERMISSION_DENIED",
                    &format!(
                        "host '{host}': without tokens, the API answers loopback names only \
                         (localhost, 127.0.0.1, [::1])"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The routes: the dashboard, the API, its description, and health.
pub fn router(api: HttpApi) -> Router {
    let mut router = Router::new();
    for (index, (path, _, _)) in dashboard::ASSETS.iter().enumerate() {
        router = router.route(path, get(move || async move { dashboard::asset(index) }));
    }
    router
        .route("/healthz", get(healthz))
        .route("/api/v1/totals", get(totals::totals))
        .route("/api/v1/counts", post(counts::counts))
        .route(
            "/api/v1/session",
            get(session::status)
                .post(session::log_in)
                .delete(session::log_out),
        )
        .route("/api/v1/openapi.json", get(openapi))
        .layer(axum::middleware::map_request(host_from_authority))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(api)
}

/// HTTP/2 sends the host as the `:authority` pseudo-header (in the URI),
/// not as `Host`: copied into `Host`, so that the loopback-name check reads
/// it whatever the protocol.
async fn host_from_authority(mut request: axum::extract::Request) -> axum::extract::Request {
    if !request.headers().contains_key(header::HOST)
        && let Some(host) = request
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        request.headers_mut().insert(header::HOST, host);
    }
    request
}

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown`
/// resolves, then lets requests under way finish; each client keeps to
/// `limits` ([`connections`]).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: HttpLimits,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    match tls {
        None => connections::serve(listener, limits, router, shutdown).await,
        Some(config) => {
            let listener = tls::TlsListener::new(listener, config)
                .map_err(Error::io("reading the HTTP address"))?;
            connections::serve(listener, limits, router, shutdown).await;
        }
    }
    Ok(())
}

/// Reads a request's whole body: at most `limit` bytes (`limit_name` says
/// which limit, in the error), within `timeout` (the header timeout again:
/// a body sent a byte at a time would hold its connection, and for
/// `POST /api/v1/counts` an ingest slot, for ever).
async fn read_body(
    body: axum::body::Body,
    limit: usize,
    limit_name: &str,
    timeout: std::time::Duration,
) -> std::result::Result<axum::body::Bytes, Error> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => {
            let error = error.into_inner();
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(Error::TooLarge {
                    field: "body".to_owned(),
                    reason: format!("is over {limit} bytes{limit_name}"),
                })
            } else {
                Err(Error::invalid(
                    "body",
                    format!("could not be read: {error}"),
                ))
            }
        }
        Err(_) => Err(Error::TimedOut {
            field: "body".to_owned(),
            reason: format!("was not received within {timeout:?}"),
        }),
    }
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

/// 200 while the database answers, 503 otherwise: the gRPC health
/// service's status, as the server's health check last found it (no
/// database call per request: the route takes no token).
async fn healthz(axum::extract::State(api): axum::extract::State<HttpApi>) -> Response {
    if api.state.serving() {
        json(StatusCode::OK, &serde_json::json!({ "status": "SERVING" }))
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "status": "NOT_SERVING" }),
        )
    }
}

async fn method_not_allowed() -> HttpError {
    HttpError::plain(
        StatusCode::METHOD_NOT_ALLOWED,
        "UNIMPLEMENTED",
        "this route does not take that method: see /api/v1/openapi.json",
    )
}

async fn not_found() -> HttpError {
    HttpError::plain(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "no such route: see /api/v1/openapi.json",
    )
}

/// Refuses what a page on another site could make a browser send: a body
/// that is not `application/json` (a form or `text/plain` post needs no
/// CORS preflight, JSON does, and this server answers none) or a request
/// the browser marks as cross-site.
fn same_origin_json(headers: &HeaderMap) -> Result<(), HttpError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(HttpError::plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "INVALID_ARGUMENT",
            "send the body as Content-Type: application/json",
        ));
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return Err(HttpError::plain(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "a cross-site request may not write, nor log in",
        ));
    }
    Ok(())
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
    /// Answered with `WWW-Authenticate: Bearer` (RFC 6750).
    bearer_challenge: bool,
}

impl HttpError {
    fn plain(status: StatusCode, code: &str, message: &str) -> HttpError {
        HttpError {
            status,
            body: serde_json::json!({ "error": { "code": code, "message": message, "fields": [] } }),
            bearer_challenge: false,
        }
    }
}

impl From<tonic::Status> for HttpError {
    fn from(status: tonic::Status) -> Self {
        let mut error = HttpError::plain(
            http_status(status.code()),
            &code_name(status.code()),
            status.message(),
        );
        if status.code() == Code::Unauthenticated {
            error.bearer_challenge = true;
        }
        error
    }
}

impl From<Error> for HttpError {
    fn from(error: Error) -> Self {
        let fields: Vec<serde_json::Value> = match &error {
            Error::InvalidArgument { field, reason }
            | Error::TooLarge { field, reason }
            | Error::TimedOut { field, reason }
            | Error::OtherTenant { field, reason } => {
                vec![serde_json::json!({ "field": field, "reason": reason })]
            }
            Error::EntriesRefused(refusals) => refusals
                .iter()
                .map(|r| serde_json::json!({ "field": r.field, "reason": r.reason }))
                .collect(),
            // The SQL API's own refusals (count.totals' checks) name their
            // argument in the message: the same names as the parameters.
            error => crate::error::sql_api_field(error)
                .map(|(field, reason)| serde_json::json!({ "field": field, "reason": reason }))
                .into_iter()
                .collect(),
        };
        // The gRPC side's code and message: one mapping from SQLSTATEs.
        // A client too slow to send its body is the client's delay (408),
        // where DEADLINE_EXCEEDED is otherwise the server's (504).
        let slow_client = matches!(error, Error::TimedOut { .. });
        let status = tonic::Status::from(error);
        HttpError {
            status: if slow_client {
                StatusCode::REQUEST_TIMEOUT
            } else {
                http_status(status.code())
            },
            body: serde_json::json!({ "error": {
                "code": code_name(status.code()),
                "message": status.message(),
                "fields": fields,
            } }),
            bearer_challenge: false,
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = json(self.status, &self.body);
        if self.bearer_challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
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
        // A statement cancelled (a timeout) is the server's trouble, not a
        // slow client's: 503, which clients do not resend unasked.
        Code::Cancelled | Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
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
