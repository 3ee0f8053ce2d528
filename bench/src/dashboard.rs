//! The dashboard over the live reads' store (1,000 endpoints, 30 days by
//! minute, a year by hour): its data requests, each refresh made as the
//! page makes it (`GET /api/v1/totals`: the series and the top 10 at once,
//! then one trend per top endpoint at once), for its 24-hour and 30-day
//! presets; and, where Debian's chromedriver is installed, the page's
//! first load in headless Chromium.

use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::browser::Browser;
use crate::error::{Error, Result};
use crate::{Programs, ServerProcess};
use count_service::db::cluster::Cluster;
use count_service::export::rfc3339;

/// One preset's refreshes, timed.
#[derive(Debug, Clone, PartialEq)]
pub struct PresetFigure {
    /// The preset, as the page's URL names it.
    pub preset: &'static str,
    /// Requests per refresh.
    pub requests: usize,
    /// Each request's latency, p50 and p99, ms.
    pub request: (f64, f64),
    /// Each refresh's latency (what a person waits for), p50 and p99, ms.
    pub refresh: (f64, f64),
}

/// The page's first load in Chromium, timed.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadFigure {
    /// Loads measured.
    pub loads: usize,
    /// Chromium's load event after navigation start, p50 and p99, ms.
    pub load_event: (f64, f64),
    /// Until the page shows its numbers (its reads answered), p50 and p99,
    /// ms.
    pub numbers_shown: (f64, f64),
}

/// What the dashboard measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    /// Bytes of the page and its assets.
    pub asset_bytes: usize,
    /// The 24-hour and 30-day presets.
    pub presets: Vec<PresetFigure>,
    /// In Chromium, when chromedriver is installed.
    pub load: Option<LoadFigure>,
}

/// Times `calls` refreshes of each preset, and the page's first load,
/// through a `count serve` with its HTTP API, over the store
/// [`crate::live::reads`] left, whose counts end at `store_end`.
pub(crate) async fn measure(
    cluster: &Cluster,
    programs: &Programs,
    keys: usize,
    store_end: DateTime<Utc>,
    calls: usize,
) -> Result<Dashboard> {
    let (server, http) =
        ServerProcess::start_with_http(programs, cluster, &["--rollup-every", "0"]).await?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let get = |target: String| {
        let client = client.clone();
        async move {
            let start = Instant::now();
            let uri: http::Uri = format!("http://{http}{target}")
                .parse()
                .map_err(|e| Error::Check(format!("{target}: {e}")))?;
            let response = client
                .get(uri)
                .await
                .map_err(|e| Error::Check(format!("GET {target}: {e}")))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Error::Check(format!("GET {target}: {e}")))?
                .to_bytes();
            if !status.is_success() {
                return Err(Error::Check(format!(
                    "GET {target}: {status}: {}",
                    String::from_utf8_lossy(&body)
                )));
            }
            Ok::<_, Error>((start.elapsed().as_secs_f64() * 1000.0, body))
        }
    };
    let mut asset_bytes = 0;
    for (path, _, _) in count_service::http::dashboard::ASSETS {
        asset_bytes += get(path.to_owned()).await?.1.len();
    }
    // The presets end where the store's counts do, not at the clock: the
    // live reads ran for minutes in between, and once an hour had begun
    // since, the 24-hour preset's last bucket was empty and the check below
    // failed.
    let end = store_end.timestamp();
    // As the page starts its presets: on a bucket boundary (in UTC here).
    let presets = [
        ("24h", "hour", 3_600, 86_400),
        ("30d", "day", 86_400, 30 * 86_400),
    ];
    let mut figures = Vec::new();
    for (preset, granularity, bucket, length) in presets {
        let start = end - length - (end - length) % bucket;
        // The store has counts in every bucket.
        let buckets = (end - start + bucket - 1) / bucket;
        let range = format!(
            "/api/v1/totals?start_time={}&end_time={}&time_zone=UTC",
            rfc3339(DateTime::from_timestamp(start, 0).unwrap_or_default()),
            rfc3339(DateTime::from_timestamp(end, 0).unwrap_or_default())
        );
        let mut requests = Vec::new();
        let mut refreshes = Vec::new();
        let mut per_refresh = 0;
        // Refreshes to warm the plans, then `calls` timed.
        for call in 0..crate::WARM_CALLS + calls {
            let start = Instant::now();
            let (series, top_answer) = tokio::try_join!(
                get(format!("{range}&granularity={granularity}")),
                get(format!(
                    "{range}&granularity=total&group_by=endpoint&top=10"
                )),
            )?;
            let rows = |body: &Bytes| {
                serde_json::from_slice::<serde_json::Value>(body)
                    .map_err(|e| Error::Check(format!("dashboard {preset}: {e}")))
            };
            let bars = rows(&series.1)?["totals"].as_array().map_or(0, Vec::len);
            if bars as i64 != buckets {
                return Err(Error::Check(format!(
                    "bench self-check failed: dashboard {preset}: {bars} buckets, expected {buckets}"
                )));
            }
            let top = rows(&top_answer.1)?;
            let endpoints = top["totals"].as_array().cloned().unwrap_or_default();
            if endpoints.len() != keys.min(10) {
                return Err(Error::Check(format!(
                    "bench self-check failed: dashboard {preset}: {} top endpoints, expected {}",
                    endpoints.len(),
                    keys.min(10)
                )));
            }
            let trends = futures::future::try_join_all(endpoints.iter().map(|row| {
                get(format!(
                    "{range}&granularity={granularity}&methods={}&path={}",
                    row["method"].as_str().unwrap_or_default(),
                    row["path"].as_str().unwrap_or_default()
                ))
            }))
            .await?;
            if call >= crate::WARM_CALLS {
                refreshes.push(start.elapsed().as_secs_f64() * 1000.0);
                requests.extend([series.0, top_answer.0]);
                requests.extend(trends.iter().map(|t| t.0));
                per_refresh = 2 + trends.len();
            }
        }
        figures.push(PresetFigure {
            preset,
            requests: per_refresh,
            request: crate::percentiles(&mut requests),
            refresh: crate::percentiles(&mut refreshes),
        });
    }
    let load = page_load(http, calls.min(20)).await?;
    drop(server);
    Ok(Dashboard {
        asset_bytes,
        presets: figures,
        load,
    })
}

/// The page's first load, `loads` times, in headless Chromium (the page
/// and its assets are served `no-cache` without validators: each load
/// fetches them again), when `chromedriver` is on the PATH.
async fn page_load(http: std::net::SocketAddr, loads: usize) -> Result<Option<LoadFigure>> {
    let Some(browser) = Browser::start(1280, 900, serde_json::Map::new()).await? else {
        return Ok(None);
    };
    let figure = time_loads(&browser.client, http, loads).await;
    // Closed whatever happened, so that no browser outlives the run.
    let _ = browser.client.clone().close().await;
    figure.map(Some)
}

async fn time_loads(
    browser: &fantoccini::Client,
    http: std::net::SocketAddr,
    loads: usize,
) -> Result<LoadFigure> {
    let mut load_events = Vec::new();
    let mut shown = Vec::new();
    let fail = |e: fantoccini::error::CmdError| Error::Check(format!("the browser: {e}"));
    for _ in 0..loads {
        browser.goto("about:blank").await.map_err(fail)?;
        browser
            .goto(&format!("http://{http}/?range=30d&tz=UTC"))
            .await
            .map_err(fail)?;
        // Read in the page, in ms from its navigation's start: when its
        // numbers first showed, and its load event's end (waited for).
        let timings = browser
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 let shownAt = 0;
                 const check = () => {
                   if (!shownAt && document.getElementById('total').dataset.total) shownAt = performance.now();
                   const loaded = performance.getEntriesByType('navigation')[0].loadEventEnd;
                   if (shownAt && loaded > 0) done([loaded, shownAt]); else setTimeout(check, 5);
                 };
                 check();",
                vec![],
            )
            .await
            .map_err(fail)?;
        match (timings[0].as_f64(), timings[1].as_f64()) {
            (Some(loaded), Some(at)) if loaded > 0.0 && at > 0.0 => {
                load_events.push(loaded);
                shown.push(at);
            }
            _ => {
                return Err(Error::Check(format!(
                    "bench self-check failed: the page's timings: {timings}"
                )));
            }
        }
    }
    Ok(LoadFigure {
        loads,
        load_event: crate::percentiles(&mut load_events),
        numbers_shown: crate::percentiles(&mut shown),
    })
}

impl Dashboard {
    /// The dashboard's table.
    pub(crate) fn render(&self) -> String {
        let mut out = format!(
            "dashboard (HTTP, the page's own reads; page and assets {} kB, target <= 300 kB)   p50 ms   p99 ms   target p99\n",
            self.asset_bytes / 1000
        );
        for f in &self.presets {
            out.push_str(&format!(
                "{:<82}{:>8.1}{:>9.1}   <= 50 ms\n",
                format!(
                    "{} preset: each data request ({} per refresh)",
                    f.preset, f.requests
                ),
                f.request.0,
                f.request.1
            ));
            out.push_str(&format!(
                "{:<82}{:>8.1}{:>9.1}\n",
                format!("{} preset: a whole refresh", f.preset),
                f.refresh.0,
                f.refresh.1
            ));
        }
        match &self.load {
            Some(load) => {
                out.push_str(&format!(
                    "{:<82}{:>8.1}{:>9.1}   <= 1000 ms\n",
                    format!(
                        "first load in Chromium, 30d preset ({} loads): load event",
                        load.loads
                    ),
                    load.load_event.0,
                    load.load_event.1
                ));
                out.push_str(&format!(
                    "{:<82}{:>8.1}{:>9.1}\n",
                    "first load in Chromium: until its numbers show",
                    load.numbers_shown.0,
                    load.numbers_shown.1
                ));
            }
            None => {
                out.push_str("first load in Chromium: not measured (no chromedriver on the PATH)\n")
            }
        }
        out
    }
}
