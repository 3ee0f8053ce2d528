//! The HTTP API (`count serve --http-listen`): totals as JSON and CSV equal
//! to `GetTotals`' for the same query, posted counts exactly once, errors
//! as JSON naming the parameter, the tokens on every route, the refusal of
//! a non-loopback address without tokens, and the OpenAPI description
//! against real responses.

use count_proto::v1::{Dimension, GetTotalsRequest, Granularity, Method};
use count_service::auth::Tokens;
use count_service::http::HttpLimits;
use count_service::ingest::IngestConfig;
use count_service::server::ServerConfig;

use crate::harness::*;

const INGEST: &str = "ingest-token-0123456789";
const READ: &str = "read-token-0123456789ab";

/// Two endpoints' counts over two hours of yesterday, through gRPC.
async fn server_with_counts(db: &TestDatabase, config: ServerConfig) -> (TestServer, i64) {
    let server = TestServer::start_with_http(db.store().await, config).await;
    let t = day_start(1) + 10 * 3600;
    let mut client = server.client().await;
    client
        .add(tokio_stream::iter(vec![
            entry(Method::Get, "/users/{id}", t + 5, 3),
            entry(Method::Get, "/users/{id}", t + 3600, 4),
            entry(Method::Post, "/a,b \"quoted\"", t + 70, 2),
        ]))
        .await
        .unwrap();
    (server, t - 10 * 3600)
}

fn rfc3339(seconds: i64) -> String {
    at(seconds).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test]
async fn totals_over_http_are_the_grpc_totals_as_json_and_csv() {
    let db = TestDatabase::start().await;
    let (server, day) = server_with_counts(&db, config()).await;
    let http_address = server.http.unwrap();
    let (start, end) = (rfc3339(day), rfc3339(day + 86_400));
    let target = format!(
        "/api/v1/totals?start_time={start}&end_time={end}&granularity=hour&time_zone=Asia/Kathmandu&group_by=endpoint"
    );
    let response = http(http_address, "GET", &target, &[], "").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.headers["content-type"], "application/json");
    let body = response.json();
    let grpc = server
        .client()
        .await
        .get_totals(GetTotalsRequest {
            start_time: Some(prost_types::Timestamp {
                seconds: day,
                nanos: 0,
            }),
            end_time: Some(prost_types::Timestamp {
                seconds: day + 86_400,
                nanos: 0,
            }),
            granularity: Granularity::Hour as i32,
            time_zone: "Asia/Kathmandu".to_owned(),
            group_by: vec![Dimension::Endpoint as i32],
            ..GetTotalsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let from_grpc: Vec<(String, String, String, i64, bool)> = grpc
        .totals
        .iter()
        .map(|t| {
            let bucket = t.bucket.unwrap();
            // OTHER reads back as METHOD_UNSPECIFIED over gRPC.
            let method = Method::try_from(t.method).unwrap().as_str_name().to_owned();
            (
                rfc3339(bucket.seconds),
                method,
                t.path.clone(),
                t.total,
                t.live,
            )
        })
        .collect();
    let from_http: Vec<(String, String, String, i64, bool)> = body["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["bucket"].as_str().unwrap().to_owned(),
                t["method"].as_str().unwrap().to_owned(),
                t["path"].as_str().unwrap().to_owned(),
                t["total"].as_i64().unwrap(),
                t["live"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(from_http, from_grpc);
    assert_eq!(from_http.iter().map(|r| r.3).sum::<i64>(), 9);
    assert_eq!(from_http.iter().filter(|r| r.1 == "POST").count(), 1);

    // Without grouping: one row per bucket, method and path null.
    let ungrouped = http(
        http_address,
        "GET",
        &target.replace("group_by=endpoint", "group_by=none"),
        &[],
        "",
    )
    .await
    .json();
    let rows = ungrouped["totals"].as_array().unwrap();
    assert!(
        rows.iter()
            .all(|r| r["method"].is_null() && r["path"].is_null()),
        "{ungrouped}"
    );
    assert_eq!(
        rows.iter()
            .map(|r| r["total"].as_i64().unwrap())
            .sum::<i64>(),
        9
    );
    // A `+` is a plus, not a space: an offset, and an Etc zone.
    let plus = format!(
        "/api/v1/totals?start_time={}&end_time={}&time_zone=Etc/GMT+5",
        at(day).to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        rfc3339(day + 86_400)
    );
    assert!(plus.contains("+00:00"), "{plus}");
    let plus = http(http_address, "GET", &plus, &[], "").await;
    assert_eq!(plus.status, 200, "{}", plus.body);
    assert_eq!(plus.json()["totals"][0]["total"], 9);
    assert_eq!(plus.headers["vary"], "accept");
    assert!(body["as_of"].as_str().unwrap().ends_with('Z'));

    // The same query as CSV, by parameter and by Accept.
    let by_parameter = http(
        http_address,
        "GET",
        &format!("{target}&format=csv"),
        &[],
        "",
    )
    .await;
    let by_accept = http(http_address, "GET", &target, &["Accept: text/csv"], "").await;
    assert_eq!(
        by_parameter.headers["content-type"],
        "text/csv; charset=utf-8"
    );
    assert_eq!(by_parameter.body, by_accept.body);
    // Streamed as the database sends the rows, not held whole.
    assert_eq!(by_parameter.headers["transfer-encoding"], "chunked");
    let lines: Vec<&str> = by_parameter
        .body
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        lines[0],
        "bucket,method,path,total,live,tenant,status_code,status_class"
    );
    assert_eq!(lines.len(), from_grpc.len() + 1);
    assert!(
        lines.contains(
            &format!(
                "{},POST,\"/a,b \"\"quoted\"\"\",2,false,,,",
                from_grpc
                    .iter()
                    .find(|r| r.2.starts_with("/a,b"))
                    .unwrap()
                    .0
            )
            .as_str()
        ),
        "{lines:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_parameters_get_a_json_error_naming_them() {
    let db = TestDatabase::start().await;
    let server = TestServer::start_with_http(db.store().await, config()).await;
    let http_address = server.http.unwrap();
    let range = "start_time=2026-11-01T00:00:00Z&end_time=2026-11-02T00:00:00Z";
    for (query, field, words) in [
        (
            "start_time=yesterday&end_time=2026-11-02T00:00:00Z",
            Some("start_time"),
            "RFC 3339",
        ),
        (
            &format!("{range}&granularity=fortnight") as &str,
            Some("granularity"),
            "fortnight",
        ),
        (&format!("{range}&methods=FETCH"), Some("methods"), "FETCH"),
        (
            &format!("{range}&group_by=tenant,colour"),
            Some("group_by"),
            "colour",
        ),
        (&format!("{range}&top=many"), Some("top"), "many"),
        (
            &format!("{range}&colour=blue"),
            Some("colour"),
            "unknown parameter",
        ),
        (
            "end_time=2026-11-02T00:00:00Z",
            Some("start_time"),
            "must be set",
        ),
        // count.totals' own checks, named by the SQL API's message.
        (
            &format!("{range}&time_zone=Mars/Olympus"),
            Some("time_zone"),
            "time_zone: unknown time zone",
        ),
        (
            "start_time=2026-11-02T00:00:00Z&end_time=2026-11-01T00:00:00Z",
            Some("end_time"),
            "end_time",
        ),
        (
            "start_time=2026-11-01T00:00:30Z&end_time=2026-11-02T00:00:00Z",
            Some("start_time"),
            "whole minute",
        ),
        (
            "start_time=2020-01-01T00:00:00Z&end_time=2026-11-02T00:00:00Z&granularity=minute",
            Some("end_time"),
            "at most",
        ),
    ] {
        let response = http(
            http_address,
            "GET",
            &format!("/api/v1/totals?{query}"),
            &[],
            "",
        )
        .await;
        assert_eq!(response.status, 400, "{query}: {}", response.body);
        let error = &response.json()["error"];
        assert_eq!(error["code"], "INVALID_ARGUMENT", "{query}");
        assert!(
            error["message"].as_str().unwrap().contains(words),
            "{query}: {error}"
        );
        if let Some(field) = field {
            assert_eq!(error["fields"][0]["field"], field, "{query}: {error}");
        }
    }
    let response = http(http_address, "GET", "/api/v2/anything", &[], "").await;
    assert_eq!(
        (response.status, &response.json()["error"]["code"]),
        (404, &"NOT_FOUND".into())
    );
    // CSV is streamed, yet its errors still come as a 400 with JSON.
    let csv = http(
        http_address,
        "GET",
        &format!("/api/v1/totals?{range}&time_zone=Mars/Olympus&format=csv"),
        &[],
        "",
    )
    .await;
    assert_eq!(
        (csv.status, &csv.json()["error"]["code"]),
        (400, &"INVALID_ARGUMENT".into())
    );
    let twice = http(
        http_address,
        "GET",
        &format!("/api/v1/totals?{range}&top=1&top=2"),
        &[],
        "",
    )
    .await;
    assert_eq!(
        (twice.status, &twice.json()["error"]["fields"][0]["field"]),
        (400, &"top".into())
    );
    let response = http(http_address, "DELETE", "/api/v1/totals", &[], "").await;
    assert_eq!(
        (response.status, &response.json()["error"]["code"]),
        (405, &"UNIMPLEMENTED".into())
    );
    server.stop().await;
}

#[tokio::test]
async fn posted_counts_count_once_per_producer_and_sequence() {
    let db = TestDatabase::start().await;
    let server = TestServer::start_with_http(db.store().await, config()).await;
    let http_address = server.http.unwrap();
    let t = rfc3339(day_start(1) + 60);
    let batch = format!(
        r#"{{"producer": "billing-job", "sequence": 7, "entries": [
            {{"method": "get", "path": "/invoices", "timestamp": "{t}", "count": 5}},
            {{"method": "POST", "path": "/invoices", "timestamp": "{t}"}}]}}"#
    );
    let first = http(
        http_address,
        "POST",
        "/api/v1/counts",
        &["Content-Type: application/json"],
        &batch,
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json()["accepted"], 6);
    let again = http(http_address, "POST", "/api/v1/counts", &[], &batch).await;
    assert_eq!(
        (
            again.json()["accepted"].clone(),
            again.json()["duplicate"].clone()
        ),
        (0.into(), true.into())
    );
    let single =
        format!(r#"{{"entries": [{{"method": "GET", "path": "/invoices", "timestamp": "{t}"}}]}}"#);
    assert_eq!(
        http(http_address, "POST", "/api/v1/counts", &[], &single)
            .await
            .json()["accepted"],
        1
    );
    let held = db
        .bigint("SELECT sum(count)::bigint FROM count.requests")
        .await;
    assert_eq!(held, 7);
    // Only the post with a producer left one behind.
    assert_eq!(db.bigint("SELECT count(*) FROM count.producers").await, 1);

    // Refusals name the entry and member; nothing of a refused batch is written.
    for (body, field) in [
        ("not json", "body"),
        (
            r#"{"entries": [{"method": "GET", "path": "/x", "count": "lots"}]}"#,
            "entries[0].count",
        ),
        (
            r#"{"entries": [{"method": "GET", "path": "/x", "colour": 1}]}"#,
            "entries[0].colour",
        ),
        (r#"{"producer": "p", "entries": []}"#, "sequence"),
        (
            r#"{"entries": [{"method": "GET", "path": "/ok"}, {"method": "GET", "path": ""}]}"#,
            "entries[1].path",
        ),
    ] {
        let response = http(http_address, "POST", "/api/v1/counts", &[], body).await;
        assert_eq!(response.status, 400, "{body}: {}", response.body);
        assert_eq!(
            response.json()["error"]["fields"][0]["field"],
            field,
            "{body}: {}",
            response.body
        );
    }
    assert_eq!(
        db.bigint("SELECT sum(count)::bigint FROM count.requests")
            .await,
        7
    );

    // What a page on another site could make a browser send is refused:
    // a body not sent as JSON, a request marked cross-site, another host
    // name for 127.0.0.1 (no tokens here).
    let form = http(
        http_address,
        "POST",
        "/api/v1/counts",
        &["Content-Type: text/plain"],
        &single,
    )
    .await;
    assert_eq!(form.status, 415, "{}", form.body);
    let cross = http(
        http_address,
        "POST",
        "/api/v1/counts",
        &["Sec-Fetch-Site: cross-site"],
        &single,
    )
    .await;
    assert_eq!(cross.status, 403, "{}", cross.body);
    let rebound = http(
        http_address,
        "GET",
        "/api/v1/totals",
        &["Host: attacker.example"],
        "",
    )
    .await;
    assert_eq!(rebound.status, 403, "{}", rebound.body);
    // A body over --max-message-bytes: a JSON error, not a cut connection.
    let huge = format!(
        r#"{{"entries": [{{"method": "GET", "path": "/{}"}}]}}"#,
        "x".repeat(5 * 1024 * 1024)
    );
    let response = http(http_address, "POST", "/api/v1/counts", &[], &huge).await;
    assert_eq!(
        (
            response.status,
            &response.json()["error"]["fields"][0]["field"]
        ),
        (413, &"body".into())
    );
    assert_eq!(
        db.bigint("SELECT sum(count)::bigint FROM count.requests")
            .await,
        7
    );
    server.stop().await;
}

#[tokio::test]
async fn every_route_takes_the_grpc_tokens_and_roles() {
    let db = TestDatabase::start().await;
    let tokens = Tokens::parse(&format!("ingest {INGEST}\nread {READ}"), "test").unwrap();
    let config = ServerConfig {
        tokens: Some(tokens),
        ..config()
    };
    let server = TestServer::start_with_http(db.store().await, config).await;
    let http_address = server.http.unwrap();
    let totals = "/api/v1/totals?start_time=2026-11-01T00:00:00Z&end_time=2026-11-02T00:00:00Z";
    let counts = r#"{"entries": [{"method": "GET", "path": "/t"}]}"#;
    let bearer = |token: &str| format!("Authorization: Bearer {token}");
    for (method, target, body, token, status) in [
        ("GET", totals, "", None, 401),
        ("GET", totals, "", Some("not-a-token-at-all"), 401),
        ("GET", totals, "", Some(INGEST), 403),
        ("GET", totals, "", Some(READ), 200),
        ("POST", "/api/v1/counts", counts, None, 401),
        ("POST", "/api/v1/counts", counts, Some(READ), 403),
        ("POST", "/api/v1/counts", counts, Some(INGEST), 200),
        // Health and the API's description are open, as gRPC health is.
        ("GET", "/healthz", "", None, 200),
        ("GET", "/api/v1/openapi.json", "", None, 200),
    ] {
        let header = token.map(bearer);
        let headers: Vec<&str> = header.iter().map(String::as_str).collect();
        let response = http(http_address, method, target, &headers, body).await;
        assert_eq!(
            response.status, status,
            "{method} {target} with {token:?}: {}",
            response.body
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn serving_http_beyond_loopback_without_tokens_is_refused() {
    let output = tokio::process::Command::from(count_command())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "0.0.0.0:0",
            "--database-url",
            "postgresql://count@127.0.0.1:1/count",
        ])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("count: --http-listen: refusing to serve 0.0.0.0:0 without tokens"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_openapi_description_matches_the_routes_and_the_responses() {
    let db = TestDatabase::start().await;
    let (server, day) = server_with_counts(&db, config()).await;
    let http_address = server.http.unwrap();
    let description: serde_json::Value =
        serde_json::from_str(count_service::http::OPENAPI).expect("openapi.json is JSON");
    assert_eq!(description["openapi"], "3.1.0");
    let paths: Vec<&str> = description["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        paths,
        [
            "/api/v1/counts",
            "/api/v1/openapi.json",
            "/api/v1/session",
            "/api/v1/totals",
            "/healthz"
        ]
    );
    let schema = |name: &str| description["components"]["schemas"][name].clone();

    // Each documented parameter of the totals is accepted.
    let parameters: Vec<String> = description["paths"]["/api/v1/totals"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    let values = [
        ("start_time", rfc3339(day)),
        ("end_time", rfc3339(day + 86_400)),
        ("granularity", "day".to_owned()),
        ("time_zone", "UTC".to_owned()),
        ("methods", "GET,POST".to_owned()),
        ("path_prefix", "/".to_owned()),
        ("group_by", "endpoint".to_owned()),
        ("tenants", "acme".to_owned()),
        ("statuses", "2xx,unknown".to_owned()),
        ("top", "5".to_owned()),
        ("format", "json".to_owned()),
    ];
    let mut query = Vec::new();
    for name in &parameters {
        let value = values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone());
        if let Some(value) = value {
            query.push(format!("{name}={value}"));
        } else {
            assert_eq!(name, "path", "a documented parameter without a value here");
        }
    }
    let response = http(
        http_address,
        "GET",
        &format!("/api/v1/totals?{}", query.join("&")),
        &[],
        "",
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    conforms(&response.json(), &schema("Totals"), &description, "Totals");
    let counted = http(
        http_address,
        "POST",
        "/api/v1/counts",
        &[],
        r#"{"entries": [{"method": "GET", "path": "/o"}]}"#,
    )
    .await;
    conforms(&counted.json(), &schema("Counted"), &description, "Counted");
    let refused = http(http_address, "GET", "/api/v1/totals", &[], "").await;
    conforms(&refused.json(), &schema("Error"), &description, "Error");
    let health = http(http_address, "GET", "/healthz", &[], "").await;
    conforms(&health.json(), &schema("Health"), &description, "Health");
    let session = http(http_address, "GET", "/api/v1/session", &[], "").await;
    conforms(&session.json(), &schema("Session"), &description, "Session");
    server.stop().await;
}

#[tokio::test]
async fn the_dashboards_login_sets_a_cookie_for_reads_only() {
    let db = TestDatabase::start().await;
    let both = "read-and-ingest-token-0123";
    let tokens = Tokens::parse(
        &format!("ingest {INGEST}\nread {READ}\nread,ingest {both}"),
        "test",
    )
    .unwrap();
    let config = ServerConfig {
        tokens: Some(tokens),
        ..config()
    };
    let server = TestServer::start_with_http(db.store().await, config).await;
    let address = server.http.unwrap();
    let description: serde_json::Value =
        serde_json::from_str(count_service::http::OPENAPI).unwrap();
    let session_schema = &description["components"]["schemas"]["Session"];
    let login = |token: &str| format!(r#"{{"token": "{token}"}}"#);

    let anonymous = http(address, "GET", "/api/v1/session", &[], "").await;
    assert_eq!(
        anonymous.json(),
        serde_json::json!({"login_required": true, "authenticated": false})
    );
    for (token, headers, status) in [
        ("not-a-token-at-all", &[][..], 401),
        (INGEST, &[][..], 403),
        (READ, &["Sec-Fetch-Site: cross-site"][..], 403),
        (READ, &["Content-Type: text/plain"][..], 415),
    ] {
        let response = http(address, "POST", "/api/v1/session", headers, &login(token)).await;
        assert_eq!(
            response.status, status,
            "{token} {headers:?}: {}",
            response.body
        );
        assert!(!response.headers.contains_key("set-cookie"));
    }
    let logged_in = http(address, "POST", "/api/v1/session", &[], &login(both)).await;
    assert_eq!(logged_in.status, 200, "{}", logged_in.body);
    conforms(&logged_in.json(), session_schema, &description, "Session");
    let set_cookie = &logged_in.headers["set-cookie"];
    assert!(
        !set_cookie.contains(both),
        "the cookie holds a session id, not the token"
    );
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/api/v1/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = format!("Cookie: {}", set_cookie.split(';').next().unwrap());
    let session = http(address, "GET", "/api/v1/session", &[&cookie], "").await;
    assert_eq!(session.json()["authenticated"], true);
    let totals = "/api/v1/totals?start_time=2026-11-01T00:00:00Z&end_time=2026-11-02T00:00:00Z";
    assert_eq!(
        http(address, "GET", totals, &[&cookie], "").await.status,
        200
    );
    // The same token's cookie cannot write: a write takes the header.
    let counts = r#"{"entries": [{"method": "GET", "path": "/t"}]}"#;
    assert_eq!(
        http(address, "POST", "/api/v1/counts", &[&cookie], counts)
            .await
            .status,
        401
    );
    let logged_out = http(address, "DELETE", "/api/v1/session", &[&cookie], "").await;
    assert_eq!(logged_out.status, 200);
    assert!(logged_out.headers["set-cookie"].contains("Max-Age=0"));
    // The session ended on the server: its cookie, kept, reads no more.
    let session = http(address, "GET", "/api/v1/session", &[&cookie], "").await;
    assert_eq!(session.json()["authenticated"], false);
    assert_eq!(
        http(address, "GET", totals, &[&cookie], "").await.status,
        401
    );
    server.stop().await;
}

/// Checks `value` against the subset of JSON Schema that openapi.json uses
/// (object with required properties and no others, array, string,
/// integer, boolean, nullable types, `$ref`).
fn conforms(
    value: &serde_json::Value,
    schema: &serde_json::Value,
    root: &serde_json::Value,
    at: &str,
) {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return conforms(value, &root["components"]["schemas"][name], root, at);
    }
    let types: Vec<&str> = match &schema["type"] {
        serde_json::Value::String(t) => vec![t.as_str()],
        serde_json::Value::Array(ts) => ts.iter().filter_map(|t| t.as_str()).collect(),
        other => panic!("{at}: schema without a type: {other}"),
    };
    let kind = match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(n) if n.is_i64() => "integer",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    };
    assert!(
        types.contains(&kind),
        "{at}: {value} is {kind}, the schema says {types:?}"
    );
    match value {
        serde_json::Value::Object(members) => {
            let properties = schema["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{at}: no properties"));
            for (name, member) in members {
                let property = properties
                    .get(name)
                    .unwrap_or_else(|| panic!("{at}.{name}: not documented"));
                conforms(member, property, root, &format!("{at}.{name}"));
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                let required = required.as_str().unwrap();
                assert!(members.contains_key(required), "{at}.{required}: missing");
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                conforms(item, &schema["items"], root, &format!("{at}[{i}]"));
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn http2_requests_are_answered_like_http1_ones() {
    // HTTP/2 names the host in `:authority`, not `Host`: the loopback-name
    // check (no tokens, a loopback address) must read it there.
    let db = TestDatabase::start().await;
    let (server, day) = server_with_counts(&db, config()).await;
    let address = server.http.unwrap();
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let get = |authority: &str| {
        http::Request::get(format!(
            "http://{authority}/api/v1/totals?start_time={}&end_time={}",
            rfc3339(day),
            rfc3339(day + 86_400)
        ))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap()
    };
    let answer = sender
        .send_request(get(&address.to_string()))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.version(), http::Version::HTTP_2);
    let foreign = sender
        .send_request(get("rebound.example:7780"))
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_sends_no_whole_request_is_let_go() {
    // Slowloris: a request head that never ends, a connection that sends
    // nothing at all, or an HTTP/2 connection that goes quiet, holds its
    // connection only for the header timeout (30 s by default; 1 s here)
    // or the idle timeout (5 min; 2 s here); a body that never ends, its
    // ingest slot only for the header timeout again.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = TestDatabase::start().await;
    let config = ServerConfig {
        http_limits: HttpLimits {
            header_timeout: std::time::Duration::from_secs(1),
            idle_timeout: std::time::Duration::from_secs(2),
            ..HttpLimits::default()
        },
        ingest: IngestConfig {
            max_calls: 1,
            ..IngestConfig::default()
        },
        ..config()
    };
    let server = TestServer::start_with_http(db.store().await, config).await;
    let address = server.http.unwrap();
    for sent in [
        &b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "[..],
        b"",
        b"PRI * HTTP/2.0",
    ] {
        let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
        slow.write_all(sent).await.unwrap();
        let started = std::time::Instant::now();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            slow.read_to_end(&mut answer),
        )
        .await;
        let sent = String::from_utf8_lossy(sent);
        assert!(read.is_ok(), "{sent:?}: still open after 20 s");
        // Let go for the timeout, not at once for some other reason.
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(900),
            "{sent:?}: closed after {:?}",
            started.elapsed()
        );
    }
    // A body that stops halfway: 408, naming the body, after the timeout.
    let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
    slow.write_all(
        b"POST /api/v1/counts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Sec-Fetch-Site: same-origin\r\nContent-Length: 100\r\n\r\n{\"entries\": [",
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(20), slow.read(&mut answer))
        .await
        .expect("an answer within 20 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""field":"body""#), "{answer}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    // Its ingest slot (the only one here) is free again.
    let post = http(
        address,
        "POST",
        "/api/v1/counts",
        &[],
        r#"{"entries": [{"method": "GET", "path": "/a", "count": 1}]}"#,
    )
    .await;
    assert_eq!(post.status, 200, "{}", post.body);
    // An HTTP/2 connection that goes quiet after a request is closed at
    // the idle timeout.
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let closed = tokio::spawn(connection);
    let answer = sender
        .send_request(
            http::Request::get(format!("http://{address}/healthz"))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let started = std::time::Instant::now();
    tokio::time::timeout(std::time::Duration::from_secs(20), closed)
        .await
        .expect("closed within 20 s")
        .unwrap()
        .ok();
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1_800),
        "closed after {:?}",
        started.elapsed()
    );
    // Other clients are served meanwhile and after.
    let answer = http(address, "GET", "/api/v1/openapi.json", &[], "").await;
    assert_eq!(answer.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn connections_past_the_cap_wait_for_one_to_close() {
    // Two connections open (the cap here) that send nothing: a third
    // client's request is answered once the header timeout lets one go,
    // not before, and not refused.
    let db = TestDatabase::start().await;
    let config = ServerConfig {
        http_limits: HttpLimits {
            header_timeout: std::time::Duration::from_secs(2),
            max_connections: 2,
            ..HttpLimits::default()
        },
        ..config()
    };
    let server = TestServer::start_with_http(db.store().await, config).await;
    let address = server.http.unwrap();
    // The server takes queued connections in order: these two first.
    let started = std::time::Instant::now();
    let idle: Vec<_> =
        futures::future::join_all((0..2).map(|_| tokio::net::TcpStream::connect(address))).await;
    let answer = http(address, "GET", "/healthz", &[], "").await;
    assert_eq!(answer.status, 200);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1_500),
        "answered after {:?}, past the cap",
        started.elapsed()
    );
    drop(idle);
    server.stop().await;
}
