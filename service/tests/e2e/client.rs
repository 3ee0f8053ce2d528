//! The client library against a real count server and PostgreSQL: exact
//! totals through concurrency, server crashes, late servers and overload,
//! and its tower layer in real axum and tonic servers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use count_client::{CountLayer, Counter, Method, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

/// Raw requests by (method, path) in the database, rolled up or not.
async fn stored(db: &TestDatabase) -> BTreeMap<(String, String), i64> {
    let rows = db
        .sql()
        .await
        .query(
            "SELECT m.method, m.path, sum(r.count)::bigint FROM count.requests AS r
               JOIN count.methods AS m ON m.id = r.method_id GROUP BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect()
}

/// Raw requests by (tenant, method, path, status code; -1 unknown).
async fn stored_series(db: &TestDatabase) -> BTreeMap<(String, String, String, i32), i64> {
    let rows = db
        .sql()
        .await
        .query(
            "SELECT m.tenant, m.method, m.path, m.status_code, sum(r.count)::bigint
               FROM count.requests AS r JOIN count.methods AS m ON m.id = r.method_id
              GROUP BY 1, 2, 3, 4",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| ((r.get(0), r.get(1), r.get(2), r.get(3)), r.get(4)))
        .collect()
}

fn counter(address: SocketAddr) -> count_client::CounterBuilder {
    Counter::builder(format!("http://{address}"))
        .flush_interval(Duration::from_millis(100))
        .request_timeout(Duration::from_secs(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_million_records_from_eight_tasks_are_counted_exactly() {
    let db = TestDatabase::start().await;
    let server = TestServer::start(&db).await;
    let counter = counter(server.address).build().unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let counter = counter.clone();
            tokio::task::spawn_blocking(move || {
                for i in 0..125_000u32 {
                    counter.record(
                        if i % 2 == 0 {
                            Method::Get
                        } else {
                            Method::Post
                        },
                        &format!("/p/{}", (i + task) % 20),
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    counter.flush().await;
    let stats = counter.stats();
    assert_eq!(
        stats,
        Stats {
            recorded: 1_000_000,
            delivered: 1_000_000,
            dropped: 0,
            pending: 0,
            batches: stats.batches,
            retries: 0,
            duplicates: 0
        }
    );
    assert!(stats.batches >= 1, "{stats:?}");
    let stored = stored(&db).await;
    assert_eq!(stored.len(), 40);
    assert_eq!(stored.values().sum::<i64>(), 1_000_000);
    for ((method, path), total) in &stored {
        // Task t records path n for i ≡ n - t (mod 20): 6,250 times, all of
        // one parity, so four tasks count it as GET and four as POST.
        assert_eq!(*total, 4 * 6_250, "{method} {path}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_and_restarted_mid_run_loses_and_doubles_nothing() {
    let db = TestDatabase::start().await;
    let _store = db.store().await;
    let address = free_address();
    let mut server = spawn_serve(address, &db.cluster.url("count"), &[]);
    wait_until_listening(address).await;
    let counter = counter(address).max_batch_keys(50).build().unwrap();
    let mut recorded = 0u64;
    for round in 0..30 {
        for i in 0..2_000u64 {
            counter.record(Method::Put, &format!("/kill/{}", i % 100));
            recorded += 1;
        }
        if round == 10 {
            server.0.kill().unwrap();
            server.0.wait().unwrap();
        }
        if round == 20 {
            server = spawn_serve(address, &db.cluster.url("count"), &[]);
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    wait_until_listening(address).await;
    tokio::time::timeout(Duration::from_secs(60), counter.flush())
        .await
        .expect("flush after restart");
    let stats = counter.stats();
    assert_eq!(
        (
            stats.recorded,
            stats.delivered,
            stats.dropped,
            stats.pending
        ),
        (recorded, recorded, 0, 0)
    );
    assert!(
        stats.retries > 0,
        "the outage made the client retry: {stats:?}"
    );
    assert_eq!(stored(&db).await.values().sum::<i64>(), recorded as i64);
}

#[tokio::test]
async fn records_made_while_the_server_is_down_are_delivered_once_it_is_up() {
    let db = TestDatabase::start().await;
    let address = free_address();
    let counter = counter(address).build().unwrap();
    for i in 0..1_000 {
        counter.record(Method::Head, &format!("/late/{}", i % 10));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counter.stats().pending, 1_000);
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let server = TestServer::start_on(listener, db.store().await, config());
    tokio::time::timeout(Duration::from_secs(30), counter.flush())
        .await
        .expect("delivered");
    assert_eq!(counter.stats().delivered, 1_000);
    let stored = stored(&db).await;
    assert_eq!(stored.len(), 10);
    assert!(stored.values().all(|&total| total == 100));
    server.stop().await;
}

#[tokio::test]
async fn over_capacity_new_keys_are_dropped_and_counted_and_the_stats_add_up() {
    let db = TestDatabase::start().await;
    let address = free_address();
    let counter = counter(address).max_pending_keys(10).build().unwrap();
    for i in 0..25 {
        counter.record(Method::Options, &format!("/cap/{i}"));
    }
    // Existing keys keep counting (within the same second as their first
    // record, or the next: either way they are kept or dropped exactly).
    for _ in 0..5 {
        counter.record(Method::Options, "/cap/0");
    }
    counter.record(Method::Options, "");
    counter.record(Method::Unspecified, "/cap/0");
    let stats = counter.stats();
    assert_eq!(stats.recorded, 32);
    assert!(stats.dropped >= 17, "{stats:?}");
    assert_eq!(
        stats.recorded,
        stats.delivered + stats.dropped + stats.pending,
        "{stats:?}"
    );

    // The counter points at `address`, where nothing listened: serve there.
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    let server = TestServer::start_on(listener, db.store().await, config());
    tokio::time::timeout(Duration::from_secs(30), counter.flush())
        .await
        .expect("delivered");
    let after = counter.stats();
    assert_eq!(
        (after.delivered, after.pending),
        (stats.pending, 0),
        "{after:?}"
    );
    assert_eq!(
        stored(&db).await.values().sum::<i64>(),
        stats.pending as i64
    );
    server.stop().await;
}

/// One HTTP/1.1 GET; returns the status line.
async fn http_get(address: SocketAddr, path: &str) -> String {
    http_request(address, "GET", path).await
}

/// One HTTP/1.1 request; returns the status line.
async fn http_request(address: SocketAddr, method: &str, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.lines().next().unwrap_or_default().to_owned()
}

async fn axum_app(counter: Counter) -> SocketAddr {
    let app = axum::Router::new()
        .route("/users/{id}", axum::routing::get(|| async { "user" }))
        .route("/health", axum::routing::get(|| async { "ok" }))
        .layer(CountLayer::new(counter));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

#[tokio::test]
async fn the_layer_counts_axum_routes_by_template_and_tonic_calls_by_method_path() {
    let db = TestDatabase::start().await;
    let server = TestServer::start(&db).await;
    let counter = counter(server.address).build().unwrap();

    let http = axum_app(counter.clone()).await;
    for id in 0..10 {
        assert_eq!(
            http_get(http, &format!("/users/{id}")).await,
            "HTTP/1.1 200 OK"
        );
    }
    assert_eq!(http_get(http, "/health").await, "HTTP/1.1 200 OK");
    assert_eq!(http_get(http, "/missing").await, "HTTP/1.1 404 Not Found");
    // A method outside count's enum is counted under OTHER.
    assert_eq!(
        http_request(http, "PROPFIND", "/missing").await,
        "HTTP/1.1 404 Not Found"
    );

    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(CountLayer::new(counter.clone()))
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    for _ in 0..3 {
        client
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
    }

    counter.flush().await;
    let key = |m: &str, p: &str| (m.to_owned(), p.to_owned());
    assert_eq!(
        stored(&db).await,
        BTreeMap::from([
            (key("GET", "/health"), 1),
            (key("GET", "/missing"), 1),
            (key("GET", "/users/{id}"), 10),
            (key("OTHER", "/missing"), 1),
            (key("GRPC", "/grpc.health.v1.Health/Check"), 3),
        ])
    );
    server.stop().await;
}

/// A service whose answer never comes.
#[derive(Clone)]
struct Unanswered;

impl tower_service::Service<http::Request<()>> for Unanswered {
    type Response = http::Response<String>;
    type Error = std::convert::Infallible;
    type Future = std::future::Pending<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        std::future::pending()
    }
}

/// One HTTP/1.1 GET with `x-tenant: tenant`; returns the status line (empty
/// when the server closed the connection without one).
async fn http_get_for(address: SocketAddr, path: &str, tenant: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nx-tenant: {tenant}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_layer_counts_each_response_with_its_status_and_tenant() {
    use tower_layer::Layer;
    use tower_service::Service;
    let db = TestDatabase::start().await;
    let server = TestServer::start(&db).await;
    let counter = counter(server.address).build().unwrap();
    let layer = CountLayer::new(counter.clone()).with_tenant(|request| {
        let tenant = request.headers.get("x-tenant")?.to_str().ok()?;
        Some(tenant.to_owned())
    });
    let app = axum::Router::new()
        .route("/ok", axum::routing::get(|| async { "ok" }))
        .route(
            "/teapot",
            axum::routing::get(|| async {
                (axum::http::StatusCode::IM_A_TEAPOT, "short and stout")
            }),
        )
        .route(
            "/panic",
            axum::routing::get(|| async {
                if true {
                    panic!("a handler that panics");
                }
                "never"
            }),
        )
        .layer(layer.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    for _ in 0..2 {
        assert_eq!(http_get_for(http, "/ok", "acme").await, "HTTP/1.1 200 OK");
    }
    assert_eq!(
        http_get_for(http, "/teapot", "beta").await,
        "HTTP/1.1 418 I'm a teapot"
    );
    assert_eq!(http_get(http, "/missing").await, "HTTP/1.1 404 Not Found");
    // The connection's task unwinds: no answer, counted as a panic.
    assert_eq!(http_get_for(http, "/panic", "acme").await, "");
    // A request whose answer never comes, dropped (the client went away).
    let mut never = layer.layer(Unanswered);
    let request = http::Request::get("/never")
        .header("x-tenant", "acme")
        .body(())
        .unwrap();
    let call = never.call(request);
    assert!(
        tokio::time::timeout(Duration::from_millis(20), call)
            .await
            .is_err()
    );

    // gRPC: OK in the trailers, NOT_FOUND in headers only.
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let check = |service: &str| tonic_health::pb::HealthCheckRequest {
        service: service.to_owned(),
    };
    client.check(check("")).await.unwrap();
    let missing = client.check(check("no.such.Service")).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    counter.flush().await;
    let key = |tenant: &str, method: &str, path: &str, status: i32| {
        (
            tenant.to_owned(),
            method.to_owned(),
            path.to_owned(),
            status,
        )
    };
    let check_path = "/grpc.health.v1.Health/Check";
    assert_eq!(
        stored_series(&db).await,
        BTreeMap::from([
            (key("", "GET", "/missing", 404), 1),
            (key("", "GRPC", check_path, 0), 1),
            (key("", "GRPC", check_path, 5), 1),
            (key("acme", "GET", "/never", 499), 1),
            (key("acme", "GET", "/ok", 200), 2),
            (key("acme", "GET", "/panic", 500), 1),
            (key("beta", "GET", "/teapot", 418), 1),
        ])
    );
    server.stop().await;
}

#[tokio::test]
async fn the_layer_never_delays_requests_when_the_count_server_is_unreachable() {
    // Nothing listens there.
    let counter = counter(free_address()).build().unwrap();
    let http = axum_app(counter.clone()).await;
    let started = tokio::time::Instant::now();
    for id in 0..50 {
        assert_eq!(
            http_get(http, &format!("/users/{id}")).await,
            "HTTP/1.1 200 OK"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(counter.stats().pending, 50);
    let undelivered = counter
        .shutdown(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(
        undelivered.to_string(),
        "50 recorded requests could not be delivered before the deadline"
    );
}
