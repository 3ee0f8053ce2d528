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

/// The period the page last read, as it states it on `#total`.
struct Period {
    start: String,
    end: String,
    granularity: String,
    time_zone: String,
}

async fn period(browser: &Browser) -> Period {
    let read = |name: &'static str| async move {
        browser
            .attribute("#total", name)
            .await
            .unwrap_or_else(|| panic!("#total has no {name}"))
    };
    Period {
        start: read("data-start").await,
        end: read("data-end").await,
        granularity: read("data-granularity").await,
        time_zone: read("data-time-zone").await,
    }
}

/// `count.totals` over `period` (summed over endpoints), for `methods`:
/// `(bucket as RFC 3339 UTC, total)`.
async fn database_buckets(
    db: &TestDatabase,
    period: &Period,
    methods: Option<&[&str]>,
) -> Vec<(String, i64)> {
    let methods: Option<Vec<String>> = methods.map(|m| m.iter().map(|m| m.to_string()).collect());
    db.sql()
        .await
        .query(
            "SELECT to_char(bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.000\"Z\"'), total
               FROM count.totals($1::text::timestamptz, $2::text::timestamptz, $3, $4, $5, group_by => '{}')
              ORDER BY bucket",
            &[
                &period.start,
                &period.end,
                &period.granularity,
                &period.time_zone,
                &methods,
            ],
        )
        .await
        .expect("count.totals")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// Checks the page's total and every bar against the database, for the
/// period the page says it read.
async fn page_matches_database(browser: &Browser, db: &TestDatabase, methods: Option<&[&str]>) {
    let period = period(browser).await;
    let buckets = database_buckets(db, &period, methods).await;
    let total: i64 = buckets.iter().map(|(_, total)| total).sum();
    assert!(total > 0, "the test's counts are in the page's period");
    assert_eq!(
        browser.attribute("#total", "data-total").await.as_deref(),
        Some(total.to_string().as_str())
    );
    for (bucket, expected) in &buckets {
        let css = format!("#chart rect[data-bucket='{bucket}']");
        assert_eq!(
            browser.attribute(&css, "data-total").await.as_deref(),
            Some(expected.to_string().as_str()),
            "the bar of {bucket} ({} in {})",
            period.granularity,
            period.time_zone
        );
        let label = browser.attribute(&css, "aria-label").await.unwrap();
        assert!(label.ends_with(" requests"), "{label}");
    }
    // And no bar where the database has nothing.
    let bars = browser
        .eval("return [...document.querySelectorAll('#chart rect[data-total]')].reduce((s, r) => s + Number(r.dataset.total), 0)")
        .await;
    assert_eq!(bars.as_i64(), Some(total));
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
    assert_eq!(period(&browser).await.time_zone, zone.as_str().unwrap());
    page_matches_database(&browser, &db, None).await;
    assert_eq!(
        browser
            .attribute("#top tbody tr", "data-path")
            .await
            .as_deref(),
        Some("/users/{id}")
    );
    assert_eq!(
        browser
            .attribute("#top tbody tr", "data-total")
            .await
            .as_deref(),
        Some("37")
    );
    assert_eq!(browser.text("#top tbody tr td:nth-child(4)").await, "68.5%");
    browser.screenshot("dashboard-desktop").await;

    // A filter: POST only. The URL keeps it.
    let method = browser.client.find(Locator::Id("method")).await.unwrap();
    method.select_by_value("POST").await.unwrap();
    browser
        .wait_for_attribute("#total", "data-total", "12", WAIT)
        .await;
    page_matches_database(&browser, &db, Some(&["POST"])).await;
    assert_eq!(
        browser
            .attribute("#top tbody tr", "data-path")
            .await
            .as_deref(),
        Some("/orders")
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
    assert_eq!(period(&browser).await.time_zone, "Asia/Kathmandu");
    assert_eq!(period(&browser).await.granularity, "hour");
    page_matches_database(&browser, &db, None).await;
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
    assert_eq!(browser.eval("return document.cookie").await, "");
    // A reload keeps the session.
    browser.client.refresh().await.unwrap();
    browser
        .wait_for_attribute("#total", "data-total", "54", WAIT)
        .await;
    // Logging out shows the form again.
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
        assert!(
            response.headers["content-security-policy"].contains("script-src 'self'"),
            "{path}"
        );
        assert_eq!(response.headers["x-content-type-options"], "nosniff");
        bytes += response.body.len();
    }
    // The budget for a first load: 300 KB of HTML and assets.
    assert!(bytes <= 300_000, "{bytes} bytes");
    server.stop().await;
}
