//! The bench, run small against the real `count` binary: every scenario runs,
//! checks what it wrote (a failed check fails the run), and reports figures.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use count_bench::{BenchOptions, Programs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_runs_every_scenario_and_checks_what_it_wrote() {
    let me = Path::new(env!("CARGO_BIN_EXE_count-bench"));
    // Built beside this crate's binary by the workspace's `cargo test`.
    let count = me.with_file_name("count");
    assert!(
        count.exists(),
        "{} is missing: build the workspace (cargo test at its root builds it)",
        count.display()
    );
    let options = BenchOptions {
        pg_bin_dir: None,
        count_bin: None,
        keys_per_call: vec![5, 7],
        calls: 2,
        records: 6_400,
        client_requests: 20_000,
        overload_requests: 3_200,
        layer_time: Duration::from_millis(50),
        stream_requests: 1_600,
        baseline_time: Duration::from_millis(100),
        rollup_rows: 5_000,
        year_keys: 10,
        queries: 3,
        live_keys: 20,
        minute_days: 2,
        import_rows: 2_000,
    };
    let programs = Programs {
        count,
        discard: me.to_owned(),
    };
    let report = count_bench::run(&options, &programs).await.unwrap();

    let streams: Vec<usize> = report.streams.iter().map(|f| f.streams).collect();
    assert_eq!(streams, vec![1, 4, 16]);
    for figure in &report.streams {
        assert!(
            figure.ceiling > 0.0 && figure.serve.rate > 0.0,
            "{figure:?}"
        );
        assert!(figure.serve.rows > 0, "{figure:?}");
    }
    // Under overload every request is its own raw row.
    assert_eq!(report.overload.rows, 3_200);
    assert!(report.original_design > 0.0 && report.copy_rows_per_second > 0.0);
    let blocks: Vec<(usize, bool)> = report.sql_api.iter().map(|f| (f.keys, f.fresh)).collect();
    assert_eq!(blocks, vec![(5, true), (5, false), (7, true), (7, false)]);
    for block in &report.sql_api {
        assert!(block.fallback > 0.0, "{block:?}");
        // scripts/test installs the extension before the suite runs.
        assert!(block.extension.is_some_and(|e| e > 0.0), "{block:?}");
    }
    assert_eq!(report.rollups.rows, 5_000);
    assert!(!report.rollups.figures.is_empty());
    let (p50, p99, _) = report.year_query;
    assert!(p50 > 0.0 && p99 >= p50, "{:?}", report.year_query);
    let e2e = &report.end_to_end;
    assert_eq!(e2e.requests, 20_000);
    assert!(e2e.counted_per_second > 0.0 && e2e.batches >= 1, "{e2e:?}");
    assert!(e2e.raw_rows >= 1, "{e2e:?}");
    for line in [
        "record, 1 thread",
        "record, 8 threads contending",
        "trivial handler",
    ] {
        assert!(
            report.caller_costs.contains(line),
            "{}",
            report.caller_costs
        );
    }
    let on_off: Vec<usize> = report.rollups_on_off.iter().map(|f| f.streams).collect();
    assert_eq!(on_off, vec![4, 16]);
    for figure in &report.rollups_on_off {
        assert!(figure.off.rate > 0.0 && figure.on.rate > 0.0, "{figure:?}");
    }
    assert_eq!(report.live.figures.len(), 7);
    for figure in &report.live.figures {
        assert!(figure.p50 > 0.0 && figure.p99 >= figure.p50, "{figure:?}");
        assert!(
            figure.warm_up_max > 0.0,
            "the untimed calls ran: {figure:?}"
        );
    }
    assert!(report.live.long_term_bytes_per_endpoint_year > 0.0);
    let dashboard = &report.dashboard;
    let presets: Vec<(&str, usize)> = dashboard
        .presets
        .iter()
        .map(|f| (f.preset, f.requests))
        .collect();
    // The series, the top 10, and a trend for each of the 10.
    assert_eq!(presets, vec![("24h", 12), ("30d", 12)]);
    for figure in &dashboard.presets {
        assert!(
            figure.request.0 > 0.0 && figure.refresh.0 >= figure.request.0,
            "a refresh waits for its requests: {figure:?}"
        );
    }
    assert!(dashboard.asset_bytes > 10_000, "{dashboard:?}");
    // scripts/test installs chromedriver before the suite runs.
    let load = dashboard.load.as_ref().expect("a first load in Chromium");
    assert!(
        load.numbers_shown.0 > 0.0 && load.load_event.0 > 0.0,
        "{load:?}"
    );
    assert_eq!(report.import.rows, 2_000);
    assert!(
        report.import.rate() > 0.0
            && report.import.sent_rate() > 0.0
            && report.import.peak_rss_mb > 0,
        "{:?}",
        report.import
    );
    let text = report.to_string();
    assert!(text.ends_with(&format!("{}\n", report.summary())), "{text}");
}
