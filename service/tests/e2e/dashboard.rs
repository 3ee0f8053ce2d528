//! The dashboard at `/`, in a real headless Chromium: the numbers it shows
//! (the total, the top endpoint, each bar of the chart) against the
//! database's own `count.totals` for the period the page read, a filter
//! changed, a count arriving while the page is open, a shared URL, a time
//! zone, the login form, and no console error throughout. Screenshots at
//! desktop and phone width go to target/screenshots/.

use std::time::Duration;

use count_proto::v1::Method;
use count_service::auth::Tokens;
use count_service::server::ServerConfig;
use fantoccini::Locator;

use crate::browser::Browser;
use crate::harness::*;

/// Long enough for a page to read on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(20);

/// What the page shows, read in one script (so that a redraw cannot fall
/// between two reads): the period it read, its total, its bars and its
/// top endpoints.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Shown {
    start: String,
    end: String,
    granularity: String,
    time_zone: String,
    total: String,
    /// (bucket as RFC 3339 UTC, total, accessible label)
    bars: Vec<(String, i64, String)>,
    /// (method, path, total, share as shown)
    top: Vec<(String, String, i64, String)>,
}

async fn shown(browser: &Browser) -> Shown {
    let value = browser
        .eval(
            "const t = document.getElementById('total');
             return { ...t.dataset,
               bars: [...document.querySelectorAll('#chart rect[data-bucket]')].map((r) =>
                 [r.dataset.bucket, Number(r.dataset.total), r.getAttribute('aria-label')]),
               top: [...document.querySelectorAll('#top tbody tr')].map((r) =>
                 [r.dataset.method, r.dataset.path, Number(r.dataset.total), r.cells[3].textContent]) };",
        )
        .await;
    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{e}: {value}"))
}

/// `count.buckets` (or every minute) and `count.totals` over the period the
/// page read (summed over endpoints, for `methods`): every bucket, with its
/// total.
async fn database_buckets(
    db: &TestDatabase,
    shown: &Shown,
    methods: Option<&[&str]>,
) -> Vec<(String, i64)> {
    let methods: Option<Vec<String>> = methods.map(|m| m.iter().map(|m| m.to_string()).collect());
    db.sql()
        .await
        .query(
            "SELECT to_char(b.bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                    coalesce(t.total, 0)
               FROM (SELECT bucket FROM count.buckets($1::text::timestamptz, $2::text::timestamptz, $3, $4)
                     UNION ALL
                     SELECT generate_series($1::text::timestamptz, $2::text::timestamptz - interval '1 minute',
                                            interval '1 minute')
                      WHERE $3 = 'minute') AS b
               LEFT JOIN count.totals($1::text::timestamptz, $2::text::timestamptz, $3, $4, $5,
                                      group_by => '{}') AS t ON t.bucket = b.bucket
              ORDER BY b.bucket",
            &[
                &shown.start,
                &shown.end,
                &shown.granularity,
                &shown.time_zone,
                &methods,
            ],
        )
        .await
        .expect("count.buckets and count.totals")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// Checks that the page's bars are the database's buckets for the period
/// the page read, one for one, each with its total and a label naming it;
/// returns what the page shows.
async fn bars_match_database(
    browser: &Browser,
    db: &TestDatabase,
    methods: Option<&[&str]>,
) -> Shown {
    let shown = shown(browser).await;
    let buckets = database_buckets(db, &shown, methods).await;
    let bars: Vec<(String, i64)> = shown
        .bars
        .iter()
        .map(|(bucket, total, _)| (bucket.clone(), *total))
        .collect();
    assert_eq!(
        bars, buckets,
        "the bars, by {} in {}",
        shown.granularity, shown.time_zone
    );
    for (bucket, total, label) in &shown.bars {
        assert!(
            label.ends_with(&format!(": {total} requests")),
            "{bucket}: {label}"
        );
    }
    let total: i64 = buckets.iter().map(|(_, total)| total).sum();
    assert_eq!(shown.total, total.to_string());
    shown
}

/// [`bars_match_database`], where the test's counts are.
async fn page_matches_database(
    browser: &Browser,
    db: &TestDatabase,
    methods: Option<&[&str]>,
) -> Shown {
    let shown = bars_match_database(browser, db, methods).await;
    assert_ne!(
        shown.total, "0",
        "the test's counts are in the page's period"
    );
    shown
}

/// Opens `url` and waits until the page shows `total` requests.
async fn open(browser: &Browser, url: &str, total: i64) {
    browser.client.goto(url).await.unwrap();
    browser
        .wait_for_attribute("#total", "data-total", &total.to_string(), WAIT)
        .await;
}

/// Waits for the login form to show.
async fn login_form(browser: &Browser) -> fantoccini::elements::Element {
    browser
        .client
        .wait()
        .for_element(Locator::Css("#login:not([hidden])"))
        .await
        .unwrap()
}

/// Counts of three endpoints over the last 40 minutes, sent with `token`
/// when the server takes tokens.
async fn add_counts(server: &TestServer, token: Option<&str>) {
    let now = chrono::Utc::now().timestamp();
    let mut request = tonic::Request::new(tokio_stream::iter(vec![
        entry(Method::Get, "/users/{id}", now - 2400, 7),
        entry(Method::Get, "/users/{id}", now - 600, 30),
        entry(Method::Post, "/orders", now - 300, 12),
        entry(Method::Get, "/health", now - 60, 5),
    ]));
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    server.client().await.add(request).await.unwrap();
}

#[tokio::test]
async fn the_dashboard_shows_the_database_totals_follows_its_filters_and_stays_live() {
    let db = TestDatabase::start().await;
    let server = TestServer::start_with_http(db.store().await, config()).await;
    add_counts(&server, None).await;
    let base = format!("http://{}", server.http.unwrap());
    let browser = Browser::start(1280, 900).await;
    open(&browser, &format!("{base}/"), 54).await;
    // Its time zone is the browser's own, unless the URL names one.
    let zone = browser
        .eval("return Intl.DateTimeFormat().resolvedOptions().timeZone")
        .await;
    let shown = page_matches_database(&browser, &db, None).await;
    assert_eq!(shown.time_zone, zone.as_str().unwrap());
    assert_eq!(
        shown.top[0],
        ("GET".into(), "/users/{id}".into(), 37, "68.5%".into())
    );
    assert_eq!(shown.top.len(), 3);
    browser.screenshot("dashboard-desktop").await;

    // A filter: POST only. The URL keeps it.
    let method = browser.client.find(Locator::Id("method")).await.unwrap();
    method.select_by_value("POST").await.unwrap();
    browser
        .wait_for_attribute("#total", "data-total", "12", WAIT)
        .await;
    let shown = page_matches_database(&browser, &db, Some(&["POST"])).await;
    assert_eq!(
        shown.top,
        [("POST".into(), "/orders".into(), 12, "100.0%".into())]
    );
    let url = browser.client.current_url().await.unwrap();
    assert!(url.as_str().contains("method=POST"), "{url}");

    // Live: a count arriving shows without a reload.
    browser.eval("window.notReloaded = true; return null").await;
    let now = chrono::Utc::now().timestamp();
    server
        .client()
        .await
        .add(tokio_stream::iter(vec![entry(
            Method::Post,
            "/orders",
            now,
            3,
        )]))
        .await
        .unwrap();
    browser
        .wait_for_attribute("#total", "data-total", "15", WAIT)
        .await;
    assert_eq!(
        browser.eval("return window.notReloaded === true").await,
        true
    );

    // The URL, opened afresh, shows the same view.
    open(&browser, url.as_str(), 15).await;
    let selected = browser.client.find(Locator::Id("method")).await.unwrap();
    assert_eq!(
        selected.prop("value").await.unwrap().as_deref(),
        Some("POST")
    );

    // Another time zone and range, by hour; then a phone, in the dark.
    open(&browser, &format!("{base}/?range=7d&tz=Asia/Kathmandu"), 57).await;
    let shown = page_matches_database(&browser, &db, None).await;
    assert_eq!(
        (shown.time_zone.as_str(), shown.granularity.as_str()),
        ("Asia/Kathmandu", "hour")
    );
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.prefer_dark(true).await;
    open(&browser, &format!("{base}/?range=1h"), 57).await;
    page_matches_database(&browser, &db, None).await;
    // A phone's width, and the whole page's height for the picture.
    browser.client.set_window_size(390, 1500).await.unwrap();
    browser.screenshot("dashboard-phone-dark").await;

    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    server.stop().await;
}

/// The status mix the page shows: (class, total, share as shown).
async fn shown_statuses(browser: &Browser) -> Vec<(String, i64, String)> {
    let value = browser
        .eval(
            "return [...document.querySelectorAll('#statuses tbody tr')].map((r) =>
               [r.dataset.statusClass, Number(r.dataset.total), r.cells[2].textContent]);",
        )
        .await;
    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{e}: {value}"))
}

/// `count.series_totals` by status class over the period the page read,
/// for `tenant` if given, in the page's order.
async fn database_statuses(
    db: &TestDatabase,
    shown: &Shown,
    tenant: Option<&str>,
) -> Vec<(String, i64)> {
    let tenants: Option<Vec<String>> = tenant.map(|t| vec![t.to_owned()]);
    db.sql()
        .await
        .query(
            "SELECT status_class, total
               FROM count.series_totals($1::text::timestamptz, $2::text::timestamptz, 'total', $3, NULL, NULL,
                                        NULL, $4, NULL, '{status_class}')
              ORDER BY array_position(ARRAY['2xx', '3xx', '4xx', '5xx', '1xx', 'grpc_ok', 'grpc_error', 'unknown'],
                                      status_class)",
            &[&shown.start, &shown.end, &shown.time_zone, &tenants],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test]
async fn the_dashboard_filters_by_tenant_and_shows_the_status_mix() {
    let db = TestDatabase::start().await;
    let server = TestServer::start_with_http(db.store().await, config()).await;
    let now = chrono::Utc::now().timestamp();
    let counted =
        |tenant: &str, status: Option<u32>, ago: i64, count: i64| count_proto::v1::AddRequest {
            tenant: tenant.to_owned(),
            status_code: status,
            ..entry(Method::Get, "/users/{id}", now - ago, count)
        };
    server
        .client()
        .await
        .add(tokio_stream::iter(vec![
            counted("acme", Some(200), 600, 30),
            counted("acme", Some(503), 300, 3),
            counted("beta", Some(200), 1200, 10),
            counted("beta", Some(404), 60, 2),
            counted("", None, 60, 5),
        ]))
        .await
        .unwrap();
    let base = format!("http://{}", server.http.unwrap());
    let browser = Browser::start(1280, 1100).await;
    open(&browser, &format!("{base}/?range=1h"), 50).await;
    let all = page_matches_database(&browser, &db, None).await;
    let statuses = shown_statuses(&browser).await;
    assert_eq!(
        statuses
            .iter()
            .map(|(class, total, _)| (class.clone(), *total))
            .collect::<Vec<_>>(),
        database_statuses(&db, &all, None).await
    );
    assert_eq!(statuses[0], ("2xx".into(), 40, "80.0%".into()));
    assert_eq!(
        browser
            .eval("return document.getElementById('errors').textContent")
            .await,
        "6.0% (3)"
    );
    browser.screenshot("dashboard-statuses").await;

    // One tenant: its total, its statuses; the URL keeps it.
    let tenant = browser.client.find(Locator::Id("tenant")).await.unwrap();
    tenant.send_keys("acme\n").await.unwrap();
    browser
        .wait_for_attribute("#total", "data-total", "33", WAIT)
        .await;
    let acme = shown(&browser).await;
    let statuses = shown_statuses(&browser).await;
    assert_eq!(
        statuses
            .iter()
            .map(|(class, total, _)| (class.clone(), *total))
            .collect::<Vec<_>>(),
        database_statuses(&db, &acme, Some("acme")).await
    );
    assert_eq!(statuses.len(), 2);
    let url = browser.client.current_url().await.unwrap();
    assert!(url.as_str().contains("tenant=acme"), "{url}");
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    server.stop().await;
}

#[tokio::test]
async fn the_dashboards_bars_are_the_databases_buckets_across_dst_changes() {
    let db = TestDatabase::start().await;
    let server = TestServer::start_with_http(db.store().await, config()).await;
    let base = format!("http://{}", server.http.unwrap());
    let browser = Browser::start(1280, 900).await;
    // 2026's changes: Lord Howe's 30-minute DST ending (5 April) and
    // starting (4 October), New York falling back (1 November), by hour;
    // Santiago skipping its midnight (6 September), by day.
    for (zone, from, to, granularity) in [
        (
            "Australia/Lord_Howe",
            "2026-04-04T12:00",
            "2026-04-05T12:00",
            "hour",
        ),
        (
            "Australia/Lord_Howe",
            "2026-10-03T12:00",
            "2026-10-04T12:00",
            "hour",
        ),
        (
            "America/New_York",
            "2026-10-31T12:00",
            "2026-11-01T12:00",
            "hour",
        ),
        (
            "America/Santiago",
            "2026-09-01T00:00",
            "2026-09-11T00:00",
            "day",
        ),
    ] {
        browser
            .client
            .goto(&format!(
                "{base}/?range=custom&from={from}&to={to}&tz={zone}"
            ))
            .await
            .unwrap();
        browser
            .wait_for_attribute("#total", "data-time-zone", zone, WAIT)
            .await;
        let shown = bars_match_database(&browser, &db, None).await;
        assert_eq!(shown.granularity, granularity, "{zone} {from}");
    }
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    server.stop().await;
}

#[tokio::test]
async fn with_tokens_the_dashboard_logs_in_with_a_cookie_its_script_cannot_read() {
    let db = TestDatabase::start().await;
    let (read, ingest) = ("read-token-0123456789ab", "ingest-token-0123456789");
    let config = ServerConfig {
        tokens: Some(Tokens::parse(&format!("read {read}\ningest {ingest}"), "test").unwrap()),
        ..config()
    };
    let server = TestServer::start_with_http(db.store().await, config).await;
    add_counts(&server, Some(ingest)).await;
    let base = format!("http://{}", server.http.unwrap());
    let browser = Browser::start(1280, 900).await;
    browser.client.goto(&format!("{base}/")).await.unwrap();
    let form = login_form(&browser).await;
    assert_eq!(
        browser.attribute("#dashboard", "hidden").await.as_deref(),
        Some("true")
    );
    browser.screenshot("dashboard-login").await;
    let token = form.find(Locator::Id("token")).await.unwrap();
    token.send_keys(read).await.unwrap();
    form.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for_attribute("#total", "data-total", "54", WAIT)
        .await;
    page_matches_database(&browser, &db, None).await;
    // The session is a cookie the page's script cannot see, which holds a
    // session id, not the token.
    let cookies = browser.cookies().await;
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let cookie = &cookies[0];
    assert_eq!(
        (
            cookie["name"].as_str(),
            cookie["httpOnly"].as_bool(),
            cookie["sameSite"].as_str(),
            cookie["path"].as_str()
        ),
        (
            Some("count_session"),
            Some(true),
            Some("Strict"),
            Some("/api/v1/")
        )
    );
    assert!(!cookie["value"].as_str().unwrap().contains(read));
    assert_eq!(
        browser
            .eval("return fetch('/api/v1/session').then(() => document.cookie)")
            .await,
        ""
    );
    // A reload keeps the session.
    open(&browser, &format!("{base}/"), 54).await;
    // Logging out shows the form again, and a reload keeps it so.
    browser
        .client
        .find(Locator::Id("logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    login_form(&browser).await;
    browser.client.refresh().await.unwrap();
    login_form(&browser).await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    server.stop().await;
}

#[tokio::test]
async fn the_page_and_its_assets_fit_the_budget_and_lock_down_what_they_load() {
    let db = TestDatabase::start().await;
    let server = TestServer::start_with_http(db.store().await, config()).await;
    let address = server.http.unwrap();
    let mut bytes = 0;
    for (path, content_type, _) in count_service::http::dashboard::ASSETS {
        let response = http(address, "GET", path, &[], "").await;
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(response.headers["content-type"], content_type, "{path}");
        assert_eq!(
            response.headers["content-security-policy"],
            count_service::http::dashboard::CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(response.headers["x-content-type-options"], "nosniff");
        bytes += response.body.len();
    }
    // The budget for a first load: 300 KB of HTML and assets.
    assert!(bytes <= 300_000, "{bytes} bytes");
    server.stop().await;
}
