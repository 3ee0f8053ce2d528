//! Bearer-token authentication with roles, as a tower layer in front of
//! every gRPC service.
//!
//! Tokens come from a file (`--tokens-file`) or the `COUNT_TOKENS`
//! environment variable, never from the command line, where other users of
//! the machine could read them. Each line is `role[,role…][@tenant] token`;
//! blank lines and `#` comments are skipped (in `COUNT_TOKENS`, `;` also
//! ends a line). Roles: `ingest` (Add, AddBatch), `read` (ListDailyTotals,
//! GetPeriodTotals, GetTotals), `admin` (CountDailyTotals, which rolls up,
//! and everything else). Health checks need no token; reflection needs any
//! valid token.
//!
//! A token bound to a tenant (`ingest,read@acme`; the tenant
//! percent-encoded, `%20` for a space) writes and reads that tenant only:
//! the layer hands the handlers a [`BoundTenant`], and they restrict what
//! the call may touch (ingest::bind_tenant, query::totals_query). An admin
//! token cannot be bound: it may roll up every tenant's data.
//!
//! Tokens are compared as SHA-256 digests in constant time, so neither a
//! token's length nor its matching prefix shows in response times.

use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{Error, Result};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Add and AddBatch.
    Ingest,
    /// ListDailyTotals, GetPeriodTotals and GetTotals, and the HTTP API's reads.
    Read,
    /// Everything, CountDailyTotals (a rollup) included.
    Admin,
}

impl Role {
    fn parse(text: &str) -> Option<Role> {
        match text {
            "ingest" => Some(Role::Ingest),
            "read" => Some(Role::Read),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The role's name, as the tokens file spells it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

/// The tenant a token is bound to: its calls write and read that tenant
/// only. The auth layer puts it in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundTenant(pub String);

/// A token's digest, roles and tenant.
#[derive(Clone)]
struct Entry {
    digest: [u8; 32],
    roles: Vec<Role>,
    tenant: Option<BoundTenant>,
}

/// The configured tokens, kept as digests.
#[derive(Clone)]
pub struct Tokens {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.entries.len())
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Parses `role[,role…][@tenant] token` lines; `source` names them in
    /// errors.
    pub fn parse(text: &str, source: &str) -> Result<Tokens> {
        let mut entries = Vec::new();
        for (number, line) in text.split(['\n', ';']).enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let field = || format!("{source}, entry {}", number + 1);
            let (roles, token) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| Error::invalid(field(), "expected `role[,role…][@tenant] token`"))?;
            let (roles, tenant) = match roles.split_once('@') {
                None => (roles, None),
                Some((roles, tenant)) => {
                    let tenant = percent_encoding::percent_decode_str(tenant)
                        .decode_utf8()
                        .map_err(|_| Error::invalid(field(), "the tenant is not UTF-8"))?;
                    if tenant.is_empty() {
                        return Err(Error::invalid(field(), "the tenant after @ is empty"));
                    }
                    // As an entry's tenant must be (`AddRequest.tenant`).
                    if tenant.len() > crate::defaults::MAX_TENANT_BYTES
                        || tenant.contains(char::is_control)
                    {
                        return Err(Error::invalid(
                            field(),
                            "the tenant must be at most 256 bytes, without control characters",
                        ));
                    }
                    (roles, Some(BoundTenant(tenant.into_owned())))
                }
            };
            let token = token.trim();
            if token.len() < 16 {
                return Err(Error::invalid(
                    field(),
                    "a token must be at least 16 characters",
                ));
            }
            let roles = roles
                .split(',')
                .map(|r| {
                    Role::parse(r).ok_or_else(|| {
                        Error::invalid(field(), format!("unknown role '{r}' (ingest, read, admin)"))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            if tenant.is_some() && roles.contains(&Role::Admin) {
                return Err(Error::invalid(
                    field(),
                    "an admin token cannot be bound to a tenant (it rolls up every tenant's data)",
                ));
            }
            // The same token twice could take a binding away unseen.
            if entries.iter().any(|e: &Entry| e.digest == digest(token)) {
                return Err(Error::invalid(field(), "this token is given twice"));
            }
            entries.push(Entry {
                digest: digest(token),
                roles,
                tenant,
            });
        }
        if entries.is_empty() {
            return Err(Error::invalid(source, "no tokens"));
        }
        Ok(Tokens { entries })
    }

    /// The tokens of `file` and of `COUNT_TOKENS`, if either is set.
    pub fn load(file: Option<&Path>) -> Result<Option<Tokens>> {
        let mut text = String::new();
        if let Some(file) = file {
            text = std::fs::read_to_string(file)
                .map_err(Error::io(format!("reading {}", file.display())))?;
        }
        if let Ok(variable) = std::env::var("COUNT_TOKENS") {
            text.push('\n');
            text.push_str(&variable);
        }
        if text.trim().is_empty() {
            return Ok(None);
        }
        Tokens::parse(&text, "tokens").map(Some)
    }

    /// The entry of `token`; every entry is compared, in constant time.
    fn entry(&self, token: &str) -> Option<&Entry> {
        let presented = digest(token);
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.digest.ct_eq(&presented)) {
                found = Some(entry);
            }
        }
        found
    }
}

/// The role a gRPC method needs; `None` for health checks (open to all).
fn required(path: &str) -> Option<Role> {
    match path {
        "/count.v1.CountService/Add" | "/count.v1.CountService/AddBatch" => Some(Role::Ingest),
        "/count.v1.CountService/ListDailyTotals"
        | "/count.v1.CountService/GetPeriodTotals"
        | "/count.v1.CountService/GetTotals" => Some(Role::Read),
        p if p.starts_with("/grpc.health.v1.Health/") => None,
        // CountDailyTotals, reflection, anything unknown: checked below.
        _ => Some(Role::Admin),
    }
}

/// The token of an `authorization` header: the scheme is matched
/// case-insensitively, as RFC 7235 (section 2.1) says it is.
pub(crate) fn bearer(authorization: Option<&http::HeaderValue>) -> Option<&str> {
    let (scheme, token) = authorization?.to_str().ok()?.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// Checks the request's bearer token against `tokens` for `path`; the
/// token's tenant, if it is bound to one.
fn check(
    tokens: &Tokens,
    path: &str,
    authorization: Option<&http::HeaderValue>,
) -> Result<Option<BoundTenant>, Status> {
    let Some(needed) = required(path) else {
        return Ok(None);
    };
    // Reflection needs any valid token.
    let needed = (!path.starts_with("/grpc.reflection.")).then_some(needed);
    authorize(
        tokens,
        bearer(authorization),
        needed,
        path.trim_start_matches('/'),
    )
}

/// Admits a `token` that has role `needed` (or `admin`; any valid token
/// when `None`) for `what`: the one rule of the gRPC and the HTTP side.
/// Returns the tenant the token is bound to, if any.
pub(crate) fn authorize(
    tokens: &Tokens,
    token: Option<&str>,
    needed: Option<Role>,
    what: &str,
) -> Result<Option<BoundTenant>, Status> {
    let token = token.ok_or_else(|| {
        Status::unauthenticated(
            "missing bearer token: send the header `authorization: Bearer <token>`",
        )
    })?;
    let entry = tokens
        .entry(token.trim())
        .ok_or_else(|| Status::unauthenticated("invalid bearer token"))?;
    let Some(needed) = needed else {
        return Ok(entry.tenant.clone());
    };
    if entry.roles.contains(&Role::Admin) || entry.roles.contains(&needed) {
        return Ok(entry.tenant.clone());
    }
    Err(Status::permission_denied(format!(
        "this token lacks the '{}' role that {what} needs",
        needed.name(),
    )))
}

/// Authenticates every request when tokens are configured; passes all
/// through when they are not.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    tokens: Option<Arc<Tokens>>,
}

impl AuthLayer {
    /// A layer enforcing `tokens`, or none.
    pub fn new(tokens: Option<Tokens>) -> Self {
        AuthLayer {
            tokens: tokens.map(Arc::new),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            tokens: self.tokens.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps.
#[derive(Debug, Clone)]
pub struct Authenticated<S> {
    inner: S,
    tokens: Option<Arc<Tokens>>,
}

impl<S, B, R> Service<http::Request<B>> for Authenticated<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Self::Response, Self::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if let Some(tokens) = &self.tokens {
            let authorization = request.headers().get(http::header::AUTHORIZATION);
            match check(tokens, request.uri().path(), authorization) {
                Err(status) => return Either::Left(ready(Ok(status.into_http()))),
                // tonic hands the request's extensions to the handler.
                Ok(Some(tenant)) => {
                    request.extensions_mut().insert(tenant);
                }
                Ok(None) => {}
            }
        }
        Either::Right(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::parse(
            "# comment\ningest ingest-token-0123456789\nread,ingest both-token-0123456789\nadmin admin-token-0123456789\nread,ingest@big%20co bound-token-0123456789",
            "test",
        )
        .unwrap()
    }

    fn outcome(path: &str, token: Option<&str>) -> String {
        let header = token.map(|t| http::HeaderValue::from_str(&format!("Bearer {t}")).unwrap());
        match check(&tokens(), path, header.as_ref()) {
            Ok(None) => "ok".to_owned(),
            Ok(Some(BoundTenant(tenant))) => format!("ok for {tenant}"),
            Err(status) => format!("{:?}: {}", status.code(), status.message()),
        }
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let header =
                http::HeaderValue::from_str(&format!("{scheme} ingest-token-0123456789")).unwrap();
            assert!(
                check(&tokens(), "/count.v1.CountService/Add", Some(&header)).is_ok(),
                "{scheme}"
            );
        }
        let basic = http::HeaderValue::from_static("Basic ingest-token-0123456789");
        assert!(check(&tokens(), "/count.v1.CountService/Add", Some(&basic)).is_err());
    }

    #[test]
    fn each_method_needs_its_role() {
        let add = "/count.v1.CountService/Add";
        let get = "/count.v1.CountService/GetPeriodTotals";
        let roll = "/count.v1.CountService/CountDailyTotals";
        let cases = [
            (add, Some("ingest-token-0123456789"), "ok"),
            (
                get,
                Some("ingest-token-0123456789"),
                "PermissionDenied: this token lacks the 'read' role that count.v1.CountService/GetPeriodTotals needs",
            ),
            (get, Some("both-token-0123456789"), "ok"),
            (
                roll,
                Some("both-token-0123456789"),
                "PermissionDenied: this token lacks the 'admin' role that count.v1.CountService/CountDailyTotals needs",
            ),
            (roll, Some("admin-token-0123456789"), "ok"),
            (get, Some("bound-token-0123456789"), "ok for big co"),
            (add, Some("bound-token-0123456789"), "ok for big co"),
            (
                roll,
                Some("bound-token-0123456789"),
                "PermissionDenied: this token lacks the 'admin' role that count.v1.CountService/CountDailyTotals needs",
            ),
            (add, Some("admin-token-0123456789"), "ok"),
            (
                add,
                Some("wrong-token-0123456789"),
                "Unauthenticated: invalid bearer token",
            ),
            (
                add,
                None,
                "Unauthenticated: missing bearer token: send the header `authorization: Bearer <token>`",
            ),
            ("/grpc.health.v1.Health/Check", None, "ok"),
            (
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                Some("ingest-token-0123456789"),
                "ok",
            ),
            (
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                None,
                "Unauthenticated: missing bearer token: send the header `authorization: Bearer <token>`",
            ),
        ];
        for (path, token, expected) in cases {
            assert_eq!(outcome(path, token), expected, "{path} {token:?}");
        }
    }

    #[test]
    fn bad_token_lines_are_refused() {
        let cases = [
            (
                "ingest",
                "test, entry 1: expected `role[,role…][@tenant] token`",
            ),
            (
                "read@ token-0123456789abcdef",
                "test, entry 1: the tenant after @ is empty",
            ),
            (
                "read@a%1Fb token-0123456789abcdef",
                "test, entry 1: the tenant must be at most 256 bytes, without control characters",
            ),
            (
                "read token-0123456789abcdef\nread,ingest token-0123456789abcdef",
                "test, entry 2: this token is given twice",
            ),
            (
                "read,admin@acme token-0123456789abcdef",
                "test, entry 1: an admin token cannot be bound to a tenant (it rolls up every \
                 tenant's data)",
            ),
            (
                "ingest short",
                "test, entry 1: a token must be at least 16 characters",
            ),
            (
                "writer token-0123456789abcdef",
                "test, entry 1: unknown role 'writer' (ingest, read, admin)",
            ),
            ("# only a comment", "test: no tokens"),
        ];
        for (text, expected) in cases {
            assert_eq!(
                Tokens::parse(text, "test").unwrap_err().to_string(),
                expected
            );
        }
    }
}
