//! `/api/v1/session`: the dashboard's login. A browser cannot be made to
//! send a bearer header, so the login form posts a token once, and the
//! server answers with a session: a random id, kept in this server's memory
//! with the token, sent back as a cookie the page's script cannot read
//! (`HttpOnly`) and no other site can make the browser send
//! (`SameSite=Strict`). The token itself never goes into the cookie, so a
//! cookie leaked to another service on the same host (cookies ignore the
//! port) is worth at most one session, which logging out ends.
//!
//! A session stands for its token on reads only: writes take the header,
//! so no cookie can be used to forge counts (CSRF). It ends on logging out,
//! after [`LIFETIME`], or when the server restarts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use sha2::{Digest, Sha256};

use super::{HttpApi, HttpError, json, read_body, same_origin_json};
use crate::auth::Role;
use crate::error::Error;

/// The cookie's name.
const COOKIE: &str = "count_session";

/// How long a session lasts: a working day, then the form asks again.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The most sessions kept: past it, a login ends the oldest, so that
/// logins cannot grow the server's memory without bound.
const MAX_SESSIONS: usize = 10_000;

/// The largest login body: a token, with room to spare.
const MAX_LOGIN_BYTES: usize = 4096;

/// The open sessions, by the SHA-256 digest of their id (so that neither
/// a lookup's timing nor a memory dump gives an id away).
#[derive(Debug, Default)]
pub(super) struct Sessions {
    open: Mutex<HashMap<[u8; 32], Session>>,
}

#[derive(Debug)]
struct Session {
    token: String,
    expires: Instant,
}

impl Sessions {
    /// Opens a session for `token`; returns its id.
    fn open(&self, token: &str) -> Result<String, Error> {
        let mut id = [0u8; 32];
        rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut id)
            .map_err(|_| Error::Setup("no random numbers for a session id".to_owned()))?;
        let id: String = id.iter().map(|byte| format!("{byte:02x}")).collect();
        let now = Instant::now();
        let mut open = self.lock();
        open.retain(|_, session| session.expires > now);
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open
                .iter()
                .min_by_key(|(_, session)| session.expires)
                .map(|(key, _)| *key)
        {
            open.remove(&oldest);
        }
        open.insert(
            digest(&id),
            Session {
                token: token.to_owned(),
                expires: now + LIFETIME,
            },
        );
        Ok(id)
    }

    /// The token of the session the request's cookie names, while it lasts.
    pub(super) fn token(&self, headers: &HeaderMap) -> Option<String> {
        let id = cookie_value(headers)?;
        let open = self.lock();
        open.get(&digest(id))
            .filter(|session| session.expires > Instant::now())
            .map(|session| session.token.clone())
    }

    /// Ends the session the request's cookie names.
    fn close(&self, headers: &HeaderMap) {
        if let Some(id) = cookie_value(headers) {
            self.lock().remove(&digest(id));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        // A panic elsewhere leaves the map whole: go on with it.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The session id in the request's cookie, if any.
fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// `GET`: whether this server takes tokens, and whether the request
/// carries a valid one for reads. Answers 200 either way, so that the
/// page can choose to show its login form without an error in the
/// browser's console.
pub(super) async fn status(State(api): State<HttpApi>, headers: HeaderMap) -> Response {
    let authenticated = api.admit(&headers, Role::Read, "the dashboard").is_ok();
    json(
        StatusCode::OK,
        &serde_json::json!({
            "login_required": api.tokens.is_some(),
            "authenticated": authenticated,
        }),
    )
}

/// `POST {"token": "…"}`: checks the token has the `read` role and opens a
/// session for it.
pub(super) async fn log_in(
    State(api): State<HttpApi>,
    request: Request,
) -> Result<Response, HttpError> {
    let (parts, body) = request.into_parts();
    // A page on another site must not log the browser in as someone else.
    same_origin_json(&parts.headers)?;
    api.admit_host(&parts.headers)?;
    let Some(tokens) = &api.tokens else {
        return Err(
            Error::invalid("token", "this server takes no tokens: nothing to log in to").into(),
        );
    };
    let body = read_body(body, MAX_LOGIN_BYTES, "", api.body_timeout).await?;
    let token = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|body| body.get("token")?.as_str().map(|t| t.trim().to_owned()))
        .ok_or_else(|| Error::invalid("token", "send {\"token\": \"…\"}"))?;
    crate::auth::authorize(tokens, Some(&token), Some(Role::Read), "the dashboard")
        .map_err(HttpError::from)?;
    let id = api.sessions.open(&token)?;
    let mut response = json(
        StatusCode::OK,
        &serde_json::json!({ "authenticated": true }),
    );
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(&id, api.secure, ""));
    Ok(response)
}

/// `DELETE`: ends the session and clears its cookie.
pub(super) async fn log_out(State(api): State<HttpApi>, headers: HeaderMap) -> Response {
    api.sessions.close(&headers);
    let mut response = json(
        StatusCode::OK,
        &serde_json::json!({ "authenticated": false }),
    );
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie("", api.secure, "; Max-Age=0"));
    response
}

/// The session cookie naming session `id` (hex digits), `Secure` when
/// served over TLS, with `extra` attributes.
fn cookie(id: &str, secure: bool, extra: &str) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!("{COOKIE}={id}; Path=/api/v1/; HttpOnly; SameSite=Strict{secure}{extra}");
    // Hex digits and fixed ASCII: always a valid header value.
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_a_random_id_for_its_token_until_closed() {
        let sessions = Sessions::default();
        let first = sessions.open("token-0123456789abcdef").unwrap();
        let second = sessions.open("token-0123456789abcdef").unwrap();
        assert_ne!(first, second);
        assert_eq!(first.len(), 64);
        let headers = |id: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::COOKIE,
                HeaderValue::try_from(format!("other=1; {COOKIE}={id}")).unwrap(),
            );
            headers
        };
        assert_eq!(
            sessions.token(&headers(&first)).as_deref(),
            Some("token-0123456789abcdef")
        );
        assert_eq!(sessions.token(&headers("0123")), None);
        sessions.close(&headers(&first));
        assert_eq!(sessions.token(&headers(&first)), None);
        assert!(sessions.token(&headers(&second)).is_some());
    }

    #[test]
    fn the_cookie_is_secure_over_tls() {
        assert_eq!(
            cookie("ab12", false, ""),
            "count_session=ab12; Path=/api/v1/; HttpOnly; SameSite=Strict"
        );
        assert_eq!(
            cookie("ab12", true, "; Max-Age=0"),
            "count_session=ab12; Path=/api/v1/; HttpOnly; SameSite=Strict; Secure; Max-Age=0"
        );
    }
}
