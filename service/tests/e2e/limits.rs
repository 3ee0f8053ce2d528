//! Bad input and limits: every malformed message, oversized batch, full
//! endpoint table, bad flag or foreign data directory is answered with a
//! clear error that names the field, never losing the valid data around it.

use std::time::Duration;

use count_proto::v1::{AddBatchRequest, AddRequest, Method};
use count_service::ingest::IngestConfig;
use count_service::server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn a_stream_refuses_bad_paths_and_huge_counts_and_keeps_the_rest() {
    let db = TestDatabase::start().await;
    let server = TestServer::start(&db).await;
    let mut client = server.client().await;
    let t = day_start(1) + 9;
    let messages = vec![
        entry(Method::Get, "/ok", t, 2),
        entry(Method::Get, "/nul\0byte", t, 1),
        entry(Method::Get, "/tab\there", t, 1),
        entry(Method::Get, "/ok", t, 1_000_000_001),
        entry(Method::Get, &"/x".repeat(600), t, 1),
        AddRequest {
            request_timestamp: Some(prost_types::Timestamp {
                seconds: t,
                nanos: 1_000_000_000,
            }),
            ..entry(Method::Get, "/ok", t, 1)
        },
        entry(Method::Get, "/ok", t, 3),
    ];
    let response = client
        .add(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((response.accepted, response.rejected), (5, 5));
    assert_eq!(
        response.rejections,
        vec![
            "message 2: path: has a control character at byte 4",
            "message 3: path: has a control character at byte 4",
            "message 4: count: 1000000001 is above the limit of 1000000000",
            "message 5: path: is 1200 bytes long, the limit is 1024",
            "message 6: request_timestamp.nanos: must be within 0..999999999, got 1000000000",
        ]
    );
    let counts = roll_up(&mut client, day_of(t)).await;
    assert_eq!(
        totals(&counts),
        Totals::from([(("GET".into(), "/ok".into()), 5)])
    );
    server.stop().await;
}

#[tokio::test]
async fn oversized_batches_and_messages_are_refused_whole() {
    let db = TestDatabase::start().await;
    let config = ServerConfig {
        ingest: IngestConfig {
            max_batch_entries: 100,
            ..IngestConfig::default()
        },
        max_message_bytes: 64 * 1024,
        ..config()
    };
    let server = TestServer::start_with(db.store().await, config).await;
    let mut client = server.client().await;
    let t = day_start(1);
    let batch = |entries: usize, path: &str| AddBatchRequest {
        producer_id: "big".into(),
        sequence: 1,
        entries: (0..entries)
            .map(|_| entry(Method::Get, path, t, 1))
            .collect(),
    };
    let status = client.add_batch(batch(101, "/b")).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::OutOfRange, "entries: 101 entries, the limit is 100")
    );
    let status = client
        .add_batch(batch(100, &"/p".repeat(500)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("the limit is: 65536 bytes"),
        "{}",
        status.message()
    );
    // The same in an Add stream: the stream's answer is tonic's own status,
    // passed through unchanged.
    let status = client
        .add(tokio_stream::iter(vec![entry(
            Method::Get,
            &"/p".repeat(40_000),
            t,
            1,
        )]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("Error, decoded message length too large")
            && status.message().contains("the limit is: 65536 bytes"),
        "{}",
        status.message()
    );
    let long_producer = AddBatchRequest {
        producer_id: "p".repeat(257),
        ..batch(1, "/b")
    };
    let status = client.add_batch(long_producer).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::InvalidArgument,
            "producer_id: is 257 bytes long, the limit is 256"
        )
    );
    // Nothing was applied, and the sequence is still free.
    let applied = client
        .add_batch(batch(100, "/b"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((applied.accepted, applied.duplicate), (100, false));
    server.stop().await;
}

#[tokio::test]
async fn the_endpoint_cap_refuses_new_endpoints_and_keeps_counting_known_ones() {
    let db = TestDatabase::start().await;
    let config = ServerConfig {
        ingest: IngestConfig {
            max_series: 3,
            ..IngestConfig::default()
        },
        ..config()
    };
    let server = TestServer::start_with(db.store().await, config).await;
    let mut client = server.client().await;
    let t = day_start(1) + 3;
    let messages: Vec<_> = (0..6)
        .map(|i| entry(Method::Get, &format!("/random/{i}"), t, 1))
        .chain([entry(Method::Get, "/random/0", t, 10)])
        .collect();
    let response = client
        .add(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((response.accepted, response.rejected), (13, 3));
    assert_eq!(
        response.rejections[0],
        "message 4: the limit of 3 series (tenant, method, path, status code) is reached: new series are refused"
    );
    let batch = AddBatchRequest {
        producer_id: "cap".into(),
        sequence: 1,
        entries: vec![
            entry(Method::Get, "/random/1", t, 1),
            entry(Method::Post, "/random/1", t, 1),
        ],
    };
    let status = client.add_batch(batch).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::ResourceExhausted,
            "entries[1]: the limit of 3 series (tenant, method, path, status code) is reached: new series are refused"
        )
    );
    let endpoints = db.bigint("SELECT count(*) FROM count.methods").await;
    assert_eq!(endpoints, 3);
    server.stop().await;
}

#[tokio::test]
async fn garbage_on_the_port_leaves_the_server_serving() {
    let db = TestDatabase::start().await;
    let server = TestServer::start(&db).await;
    for garbage in [
        &b"\x00\x01\x02garbage that is not HTTP/2\r\n\r\n"[..],
        b"GET /count.v1.CountService/Add HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    ] {
        let mut stream = tokio::net::TcpStream::connect(server.address)
            .await
            .unwrap();
        stream.write_all(garbage).await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink)).await;
    }
    // A gRPC call with the wrong content type gets a gRPC error, not a crash.
    let mut stream = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    stream.write_all(b"POST /count.v1.CountService/GetPeriodTotals HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc").await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink)).await;
    let mut client = server.client().await;
    let t = day_start(1);
    let response = client
        .add(tokio_stream::iter(vec![entry(Method::Get, "/after", t, 1)]))
        .await
        .unwrap();
    assert_eq!(response.into_inner().accepted, 1);
    server.stop().await;
}

/// Runs `count` with `args`; returns its exit code and stderr.
fn run_count(args: &[&str]) -> (i32, String) {
    let output = count_command().args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_and_environment_are_refused_with_the_flag_named() {
    let cases: [(&[&str], i32, &str); 10] = [
        (
            &["serve", "--max-path-bytes", "0", "--print-config"],
            2,
            "invalid value '0' for '--max-path-bytes <MAX_PATH_BYTES>': must be at least 1",
        ),
        (
            &["serve", "--max-batch-entries", "0", "--print-config"],
            2,
            "invalid value '0' for '--max-batch-entries <MAX_BATCH_ENTRIES>': must be at least 1",
        ),
        (
            &["serve", "--max-series", "0", "--print-config"],
            2,
            "invalid value '0' for '--max-series <MAX_SERIES>': must be at least 1",
        ),
        (
            &["serve", "--max-message-bytes", "0", "--print-config"],
            2,
            "invalid value '0' for '--max-message-bytes <MAX_MESSAGE_BYTES>': must be at least 1",
        ),
        (
            &["serve", "--flush-interval", "soon", "--print-config"],
            2,
            "invalid value 'soon' for '--flush-interval <FLUSH_INTERVAL>'",
        ),
        (
            &["serve", "--listen", "nowhere", "--print-config"],
            2,
            "invalid value 'nowhere' for '--listen <LISTEN>'",
        ),
        (
            &["serve", "--max-batch-keys", "0", "--print-config"],
            2,
            "invalid value '0' for '--max-batch-keys <MAX_BATCH_KEYS>'",
        ),
        (
            &["serve", "--max-entry-count=-5", "--print-config"],
            2,
            "invalid value '-5' for '--max-entry-count <MAX_ENTRY_COUNT>'",
        ),
        (
            &["migrate", "--database-url", "postgresql://host:port/db"],
            1,
            "count: --database-url: ",
        ),
        (
            &["totals", "--from", "2026-13-01", "--to", "2026-01-01"],
            2,
            "invalid value '2026-13-01' for '--from <FROM>'",
        ),
    ];
    for (args, code, message) in cases {
        let (actual, stderr) = run_count(args);
        assert_eq!(actual, code, "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    let output = count_command()
        .args(["serve", "--print-config"])
        .env("COUNT_MAX_PATH_BYTES", "lots")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("invalid value 'lots' for '--max-path-bytes <MAX_PATH_BYTES>'")
    );
}

#[test]
fn a_data_dir_holding_other_files_is_refused_and_left_untouched() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let (code, stderr) = run_count(&["serve", "--data-dir", data_dir]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{data_dir} is not empty and not a count data directory (it holds notes.txt)"
        )),
        "{stderr}"
    );
    let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
}
