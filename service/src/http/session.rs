//! `/api/v1/session`: the dashboard's login. A browser cannot be made to
//! send a bearer header, so the login form posts a token once and gets it
//! back as a cookie the page's script cannot read (`HttpOnly`) and no
//! other site can make the browser send (`SameSite=Strict`). The cookie
//! stands for the token on reads only: writes take the header, so no
//! cookie can be used to forge counts (CSRF). It lasts as long as the
//! browser session, and as long as the token is in the tokens file.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::{HttpApi, HttpError, json, same_origin_json};
use crate::auth::Role;
use crate::error::Error;

/// The cookie's name.
const COOKIE: &str = "count_token";

/// The largest login body: a token, with room to spare.
const MAX_LOGIN_BYTES: usize = 4096;

/// The token the session cookie holds, if the request has one.
pub(super) fn token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| percent_decode_str(value).decode_utf8().ok())
        .map(|token| token.into_owned())
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

/// `POST {"token": "…"}`: checks the token has the `read` role and sets it
/// as the session cookie.
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
    let body = axum::body::to_bytes(body, MAX_LOGIN_BYTES)
        .await
        .map_err(|_| Error::TooLarge {
            field: "body".to_owned(),
            reason: format!("is over {MAX_LOGIN_BYTES} bytes"),
        })?;
    let token = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|body| body.get("token")?.as_str().map(str::to_owned))
        .ok_or_else(|| Error::invalid("token", "send {\"token\": \"…\"}"))?;
    crate::auth::authorize(
        tokens,
        Some(token.trim()),
        Some(Role::Read),
        "the dashboard",
    )
    .map_err(HttpError::from)?;
    let mut response = json(
        StatusCode::OK,
        &serde_json::json!({ "authenticated": true }),
    );
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(token.trim(), api.secure, "")?);
    Ok(response)
}

/// `DELETE`: forgets the session cookie.
pub(super) async fn log_out(State(api): State<HttpApi>) -> Result<Response, HttpError> {
    let mut response = json(
        StatusCode::OK,
        &serde_json::json!({ "authenticated": false }),
    );
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie("", api.secure, "; Max-Age=0")?);
    Ok(response)
}

/// The session cookie holding `token` (percent-encoded: a cookie value
/// may not hold every character a token may), `Secure` when served over
/// TLS, with `extra` attributes.
fn cookie(token: &str, secure: bool, extra: &str) -> Result<HeaderValue, Error> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={}; Path=/api/; HttpOnly; SameSite=Strict{secure}{extra}",
        utf8_percent_encode(token, NON_ALPHANUMERIC)
    ))
    .map_err(|_| Error::invalid("token", "is not text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_encoded_and_secure_over_tls() {
        let cookie = |secure| cookie("a b;c", secure, "").unwrap();
        assert_eq!(
            cookie(false),
            "count_token=a%20b%3Bc; Path=/api/; HttpOnly; SameSite=Strict"
        );
        assert_eq!(
            cookie(true),
            "count_token=a%20b%3Bc; Path=/api/; HttpOnly; SameSite=Strict; Secure"
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("other=1; count_token=a%20b%3Bc"),
        );
        assert_eq!(token(&headers).as_deref(), Some("a b;c"));
    }
}
