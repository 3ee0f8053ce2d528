//! The dashboard at `/`: one page, its script and its style sheet, built
//! into the binary so that it needs no CDN and no network at run time.
//! The page holds no data: it reads `/api/v1/totals` like any caller, with
//! the session cookie ([`super::session`]) or no token at all.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("../../web/index.html");
const SCRIPT: &str = include_str!("../../web/dashboard.js");
const STYLE: &str = include_str!("../../web/dashboard.css");

/// What the page may load and run: only this server's own script, style
/// and API (so an injected script could not run nor send data away), and
/// no framing (clickjacking).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Every asset the page loads, by path, with its content type: the routes,
/// and the sizes a test holds to the budget.
pub const ASSETS: [(&str, &str, &str); 3] = [
    ("/", "text/html; charset=utf-8", PAGE),
    (
        "/assets/dashboard.js",
        "text/javascript; charset=utf-8",
        SCRIPT,
    ),
    ("/assets/dashboard.css", "text/css; charset=utf-8", STYLE),
];

/// The asset at `index` of [`ASSETS`]. Served with `no-cache` (the
/// browser asks again, so an upgraded server's page is never mixed with
/// an old script) and without MIME sniffing.
pub(super) fn asset(index: usize) -> Response {
    let (_, content_type, body) = ASSETS[index];
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use count_proto::v1::Method;

    use super::PAGE;

    /// The page's method filter is written out in its HTML: it must list
    /// every method of the wire, OTHER for METHOD_UNSPECIFIED.
    #[test]
    fn the_method_filter_lists_every_method_of_the_wire() {
        let mut listed: Vec<&str> = PAGE
            .split("<option value=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .filter(|value| !value.is_empty() && value.chars().all(|c| c.is_ascii_uppercase()))
            .collect();
        let mut wire: Vec<&str> = (0..=u8::MAX as i32)
            .filter_map(|number| Method::try_from(number).ok())
            .map(|method| match method {
                Method::Unspecified => "OTHER",
                method => method.as_str_name(),
            })
            .collect();
        listed.sort_unstable();
        wire.sort_unstable();
        assert_eq!(listed, wire);
    }
}
