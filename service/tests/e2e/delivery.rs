//! count-client's delivery edge cases against a real server: a producer id
//! reused after a restart or ahead of us, entries the server refuses, batches
//! too large for it, and errors a resend cannot fix. Each used to lose counts
//! while the stats said delivered, or to block every later batch.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use count_client::{Counter, Method, Stats};
use count_proto::v1::AddBatchRequest;
use count_service::auth::Tokens;
use count_service::entry::EntryRules;
use count_service::ingest::IngestConfig;
use count_service::server::ServerConfig;

use crate::harness::*;

/// Requests by path in the database, rolled up or not.
async fn stored(db: &TestDatabase) -> BTreeMap<String, i64> {
    let rows = db
        .sql()
        .await
        .query(
            "SELECT m.path, sum(r.count)::bigint FROM count.requests AS r
               JOIN count.methods AS m ON m.id = r.method_id GROUP BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

fn counter(address: SocketAddr) -> count_client::CounterBuilder {
    Counter::builder(format!("http://{address}"))
        .flush_interval(Duration::from_millis(100))
        .request_timeout(Duration::from_secs(5))
}

/// Shuts `counter` down, which must deliver or drop everything in time.
async fn shut_down(counter: Counter) -> Stats {
    counter
        .shutdown(Duration::from_secs(30))
        .await
        .expect("everything settled")
}

#[tokio::test]
async fn a_counter_restarted_with_the_same_producer_id_keeps_counting() {
    let db = TestDatabase::start().await;
    let server = TestServer::start(&db).await;
    let first = counter(server.address).producer_id("x").build().unwrap();
    for _ in 0..10 {
        first.record(Method::Get, "/restart");
    }
    let stats = shut_down(first).await;
    assert_eq!((stats.delivered, stats.duplicates), (10, 0));
    let second = counter(server.address).producer_id("x").build().unwrap();
    for _ in 0..7 {
        second.record(Method::Get, "/restart");
    }
    let stats = shut_down(second).await;
    assert_eq!((stats.delivered, stats.duplicates), (7, 0));
    assert_eq!(stored(&db).await, BTreeMap::from([("/restart".into(), 17)]));
    server.stop().await;
}

#[tokio::test]
async fn a_batch_found_applied_on_its_first_send_is_resent_not_counted_as_delivered() {
    let db = TestDatabase::start().await;
    let server = TestServer::start(&db).await;
    // Another process with id "y" got far ahead (a clock an hour fast).
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let ahead = (now + Duration::from_secs(3_600)).as_micros() as u64;
    let applied = server
        .client()
        .await
        .add_batch(AddBatchRequest {
            producer_id: "y".into(),
            sequence: ahead,
            entries: vec![entry(Method::Put, "/other", now.as_secs() as i64, 5)],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(applied.last_sequence, ahead);
    let counter = counter(server.address).producer_id("y").build().unwrap();
    for _ in 0..3 {
        counter.record(Method::Get, "/behind");
    }
    let stats = shut_down(counter).await;
    assert_eq!(
        (stats.delivered, stats.dropped, stats.duplicates),
        (3, 0, 1),
        "{stats:?}"
    );
    assert_eq!(
        stored(&db).await,
        BTreeMap::from([("/behind".into(), 3), ("/other".into(), 5)])
    );
    server.stop().await;
}

#[tokio::test]
async fn a_key_the_server_refuses_costs_only_itself() {
    let db = TestDatabase::start().await;
    let config = ServerConfig {
        ingest: IngestConfig {
            rules: EntryRules {
                max_path_bytes: 100,
                max_entry_count: 400,
                ..EntryRules::default()
            },
            max_series: 2,
            ..IngestConfig::default()
        },
        ..config()
    };
    let server = TestServer::start_with(db.store().await, config).await;
    // Over the server's path limit, and a third endpoint over its cap: both
    // pass the client's own checks.
    let long = format!("/{}", "x".repeat(200));
    let counter = counter(server.address)
        // The server's per-entry limit: a key counting more is split.
        .max_entry_count(400)
        .build()
        .unwrap();
    counter.record_count(Method::Get, "/big", 1_000);
    counter.record(Method::Get, "/known");
    // The two endpoints the cap allows are known now.
    counter.flush().await;
    for _ in 0..100 {
        counter.record(Method::Get, "/known");
    }
    counter.record(Method::Get, &long);
    counter.record(Method::Post, "/scanner/404");
    counter.record(Method::Get, "/control\u{7}char");
    let stats = shut_down(counter).await;
    assert_eq!(
        (stats.recorded, stats.delivered, stats.dropped),
        (1_104, 1_101, 3),
        "{stats:?}"
    );
    assert_eq!(
        stored(&db).await,
        BTreeMap::from([("/big".into(), 1_000), ("/known".into(), 101)])
    );
    server.stop().await;
}

#[tokio::test]
async fn batches_too_large_for_the_server_are_split_and_later_keys_still_arrive() {
    let db = TestDatabase::start().await;
    // Too many bytes for the server, then too many entries.
    let config = ServerConfig {
        max_message_bytes: 65_536,
        ingest: IngestConfig {
            max_batch_entries: 100,
            ..IngestConfig::default()
        },
        ..config()
    };
    let server = TestServer::start_with(db.store().await, config).await;
    let counter = counter(server.address).build().unwrap();
    let path = |i: usize| format!("/{i:03}/{}", "p".repeat(395));
    for i in 0..300 {
        counter.record(Method::Get, &path(i));
    }
    counter.flush().await;
    for i in 0..300 {
        counter.record(Method::Post, &path(i));
    }
    let stats = shut_down(counter).await;
    assert_eq!((stats.delivered, stats.dropped), (600, 0), "{stats:?}");
    let stored = stored(&db).await;
    assert_eq!(stored.len(), 300);
    assert!(stored.values().all(|&total| total == 2), "{stored:?}");
    server.stop().await;
}

#[tokio::test]
async fn errors_a_resend_cannot_fix_drop_the_batch_instead_of_blocking_delivery() {
    let db = TestDatabase::start().await;
    let tokens = Tokens::parse("read read-token-0123456789", "test").unwrap();
    let config = ServerConfig {
        tokens: Some(tokens),
        ..config()
    };
    let server = TestServer::start_with(db.store().await, config).await;
    // Without a token, then with one lacking the ingest role.
    for token in [None, Some("read-token-0123456789")] {
        let mut builder = counter(server.address);
        if let Some(token) = token {
            builder = builder.bearer_token(token);
        }
        let counter = builder.build().unwrap();
        counter.record(Method::Get, "/denied");
        counter.flush().await;
        counter.record(Method::Get, "/denied/later");
        let stats = shut_down(counter).await;
        assert_eq!((stats.delivered, stats.dropped), (0, 2), "{stats:?}");
    }
    server.stop().await;

    // A gRPC server without count's service: UNIMPLEMENTED.
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let counter = counter(address).build().unwrap();
    for _ in 0..3 {
        counter.record(Method::Get, "/unimplemented");
    }
    let stats = shut_down(counter).await;
    assert_eq!((stats.delivered, stats.dropped), (0, 3), "{stats:?}");
    assert!(stored(&db).await.is_empty());
}

#[tokio::test]
async fn a_busy_server_s_resource_exhausted_is_retried_until_delivered() {
    let db = TestDatabase::start().await;
    let config = ServerConfig {
        ingest: IngestConfig {
            max_calls: 1,
            ..IngestConfig::default()
        },
        ..config()
    };
    let server = TestServer::start_with(db.store().await, config).await;
    // An open Add stream holds the server's only call.
    let (hold, messages) = tokio::sync::mpsc::unbounded_channel();
    let mut client = server.client().await;
    let held = tokio::spawn(async move {
        client
            .add(tokio_stream::wrappers::UnboundedReceiverStream::new(
                messages,
            ))
            .await
    });
    hold.send(entry(Method::Get, "/holder", day_start(1), 1))
        .unwrap();
    // Its first flush shows that the server is serving it.
    eventually(Duration::from_secs(30), || async {
        stored(&db).await.contains_key("/holder")
    })
    .await;
    let counter = counter(server.address).build().unwrap();
    for _ in 0..5 {
        counter.record(Method::Get, "/busy");
    }
    let busy = counter.clone();
    eventually(Duration::from_secs(30), || {
        let busy = busy.clone();
        async move { busy.stats().retries > 0 }
    })
    .await;
    assert_eq!(counter.stats().delivered, 0);
    drop(hold);
    held.await.unwrap().unwrap();
    let stats = shut_down(counter).await;
    assert_eq!((stats.delivered, stats.dropped), (5, 0), "{stats:?}");
    assert_eq!(
        stored(&db).await,
        BTreeMap::from([("/busy".into(), 5), ("/holder".into(), 1)])
    );
    server.stop().await;
}
