//! Faults: exact totals through database outages, restarts and stalls,
//! connections dropped silently, SIGTERM under load, racing rollups and
//! cancelled streams, so nothing acknowledged is lost and nothing is
//! counted twice.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::DateTime;
use count_proto::v1::{AddRequest, Method};
use count_service::db::connect::ConnectConfig;
use count_service::db::store::{FlushBatch, Store};
use count_service::ingest::IngestConfig;
use count_service::server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_before_its_database_serves_once_the_database_is_up() {
    let mut db = TestDatabase::start().await;
    let url = db.cluster.url("count");
    tokio::task::block_in_place(|| db.cluster.stop()).unwrap();
    let grpc = free_address();
    let _server = spawn_serve(grpc, &url, &[]);
    wait_until_listening(grpc).await;
    let mut client = count_proto::v1::count_service_client::CountServiceClient::connect(format!(
        "http://{grpc}"
    ))
    .await
    .unwrap();
    let t = day_start(1);
    let status = client
        .add(tokio_stream::iter(vec![entry(Method::Get, "/early", t, 1)]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        health_status(grpc).await,
        2,
        "NOT_SERVING while the database is down"
    );
    tokio::task::block_in_place(|| db.cluster.restart()).unwrap();
    eventually(Duration::from_secs(30), || {
        let mut client = client.clone();
        async move {
            client
                .add(tokio_stream::iter(vec![entry(Method::Get, "/late", t, 1)]))
                .await
                .is_ok()
        }
    })
    .await;
    let counts = roll_up(&mut client, day_of(t)).await;
    assert_eq!(
        totals(&counts),
        Totals::from([(("GET".into(), "/late".into()), 1)])
    );
    eventually(Duration::from_secs(10), || async move {
        health_status(grpc).await == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_loses_and_doubles_nothing_acknowledged() {
    let mut db = TestDatabase::start().await;
    let server = TestServer::start(&db).await;
    let counter = count_client::Counter::builder(format!("http://{}", server.address))
        .flush_interval(Duration::from_millis(50))
        .max_batch_keys(100)
        .build()
        .unwrap();
    let mut recorded = 0;
    for round in 0..40 {
        for i in 0..500 {
            counter.record(Method::Post, &format!("/restart/{}", i % 50));
            recorded += 1;
        }
        if round == 10 {
            tokio::task::block_in_place(|| db.cluster.kill()).unwrap();
        }
        if round == 20 {
            tokio::task::block_in_place(|| db.cluster.restart()).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::timeout(Duration::from_secs(60), counter.flush())
        .await
        .expect("delivered after the restart");
    let stats = counter.stats();
    assert_eq!(
        (stats.delivered, stats.dropped, stats.pending),
        (recorded, 0, 0),
        "{stats:?}"
    );
    assert!(stats.retries > 0, "{stats:?}");
    // Streams work again too.
    let mut client = server.client().await;
    let t = day_start(1);
    let response = client
        .add(tokio_stream::iter(vec![entry(
            Method::Get,
            "/after-restart",
            t,
            4,
        )]))
        .await
        .unwrap();
    assert_eq!(response.into_inner().accepted, 4);
    let stored = db
        .bigint("SELECT sum(count)::bigint FROM count.requests")
        .await;
    assert_eq!(stored, recorded as i64 + 4);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_commits_everything_acknowledged_and_exits_zero() {
    let db = TestDatabase::start().await;
    let _store = db.store().await;
    let grpc = free_address();
    let mut server = spawn_serve(grpc, &db.cluster.url("count"), &["--shutdown-grace", "1s"]);
    wait_until_serving(grpc).await;
    let counter = count_client::Counter::builder(format!("http://{grpc}"))
        .flush_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let t = day_start(1);
    let mut streams = Vec::new();
    let mut senders = Vec::new();
    // Streams 0 and 1 end on their own once SIGTERM is sent (within the
    // grace period, so they are answered like any stream); 2 and 3 go on
    // until the server ends them.
    let (finish, finishing) = tokio::sync::watch::channel(false);
    for s in 0..4 {
        let finishing = finishing.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel::<AddRequest>(64);
        let mut client = count_proto::v1::count_service_client::CountServiceClient::connect(
            format!("http://{grpc}"),
        )
        .await
        .unwrap();
        streams.push(tokio::spawn(async move {
            client
                .add(tokio_stream::wrappers::ReceiverStream::new(receiver))
                .await
        }));
        // Keep sending until the server stops reading; returns how many
        // messages went out.
        senders.push(tokio::spawn(async move {
            let mut sent = 0i64;
            for i in 0i64.. {
                if s < 2 && *finishing.borrow() {
                    break;
                }
                if sender
                    .send(entry(Method::Get, &format!("/term/{s}"), t + i % 100, 1))
                    .await
                    .is_err()
                {
                    break;
                }
                sent += 1;
                if i % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            sent
        }));
    }
    let recorder = {
        let counter = counter.clone();
        tokio::spawn(async move {
            for i in 0..20_000 {
                counter.record(Method::Put, &format!("/term/client/{}", i % 10));
                if i % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = nix::unistd::Pid::from_raw(server.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    finish.send(true).unwrap();
    let status = tokio::task::block_in_place(|| server.0.wait()).unwrap();
    assert!(status.success(), "{status}");
    // A client still sending when the server ends its stream may see the
    // end as an error (HTTP/2 resets the unread request); what the server
    // acknowledged is what counts.
    let mut acknowledged = 0;
    for stream in streams {
        if let Ok(Ok(response)) = stream.await {
            acknowledged += response.into_inner().accepted;
        }
    }
    let mut sent = 0;
    for sender in senders {
        // The receivers are gone with the calls, so every sender ends.
        sent += sender.await.unwrap();
    }
    recorder.await.unwrap();
    assert!(
        acknowledged > 0,
        "the streams were answered before the server exited"
    );
    let stats = counter.stats();
    acknowledged += stats.delivered as i64;
    sent += stats.recorded as i64;
    let stored = db
        .bigint("SELECT coalesce(sum(count), 0)::bigint FROM count.requests")
        .await;
    assert!(
        acknowledged <= stored && stored <= sent,
        "acknowledged {acknowledged} <= committed {stored} <= sent {sent}: nothing acknowledged lost, nothing counted twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_database_keeps_server_memory_bounded_and_recovers() {
    let db = TestDatabase::start().await;
    let _store = db.store().await;
    let grpc = free_address();
    let server = spawn_serve(
        grpc,
        &db.cluster.url("count"),
        &["--max-batch-keys", "2000", "--max-ingest-calls", "8"],
    );
    wait_until_serving(grpc).await;
    // Hold a lock that stalls every insert.
    let locker = db.sql().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE count.requests IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let t = day_start(1);
    // Three times as many streams as the server serves at once: the rest
    // are refused at once, so memory stays bounded however many come.
    const STREAMS: i64 = 8;
    const ENTRIES: i64 = 100_000;
    let mut streams = Vec::new();
    for s in 0..3 * STREAMS {
        let mut client = count_proto::v1::count_service_client::CountServiceClient::connect(
            format!("http://{grpc}"),
        )
        .await
        .unwrap();
        let entries = (0..ENTRIES).map(move |i| {
            entry(
                Method::Get,
                &format!("/stall/{s}/{}", i % 1000),
                t + i % 3600,
                1,
            )
        });
        streams.push(tokio::spawn(async move {
            client.add(tokio_stream::iter(entries)).await
        }));
    }
    let mut peak = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(count_bench::process::rss_kb(server.0.id()));
    }
    assert!(
        peak < 150 * 1024,
        "server RSS reached {peak} kB while the database stalled"
    );
    let (refused, held): (Vec<_>, Vec<_>) = streams.into_iter().partition(|s| s.is_finished());
    assert_eq!(
        held.len() as i64,
        STREAMS,
        "backpressure holds the streams served"
    );
    for stream in refused {
        let status = stream.await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(
            status.message().starts_with("server busy: 8 ingest calls"),
            "{status:?}"
        );
    }
    locker.batch_execute("COMMIT").await.unwrap();
    let mut accepted = 0;
    for stream in held {
        accepted += stream.await.unwrap().unwrap().into_inner().accepted;
    }
    assert_eq!(accepted, STREAMS * ENTRIES);
    let stored: i64 = locker
        .query_one("SELECT sum(count)::bigint FROM count.requests", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, STREAMS * ENTRIES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rollups_racing_ingest_count_each_request_once() {
    let db = TestDatabase::start().await;
    let server = TestServer::start(&db).await;
    let day = day_of(day_start(1));
    let t = day_start(1) + 100;
    let mut tasks = Vec::new();
    for s in 0..4 {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let mut sent = 0;
            for round in 0..20 {
                let entries: Vec<_> = (0..200)
                    .map(|i| entry(Method::Get, &format!("/race/{}", (i + s) % 7), t + round, 1))
                    .collect();
                sent += client
                    .add(tokio_stream::iter(entries))
                    .await
                    .unwrap()
                    .into_inner()
                    .accepted;
            }
            sent
        }));
    }
    let mut rollers = Vec::new();
    for _ in 0..4 {
        let mut client = server.client().await;
        rollers.push(tokio::spawn(async move {
            for _ in 0..30 {
                roll_up(&mut client, day).await;
            }
        }));
    }
    let mut sent = 0;
    for task in tasks {
        sent += task.await.unwrap();
    }
    for roller in rollers {
        roller.await.unwrap();
    }
    let mut client = server.client().await;
    let counts = roll_up(&mut client, day).await;
    assert_eq!(counts.iter().map(|c| c.count).sum::<i64>(), sent);
    assert_eq!(sent, 4 * 20 * 200);
    server.stop().await;
}

#[tokio::test]
async fn an_add_stream_cancelled_while_a_flush_waits_still_commits_what_the_server_read() {
    let db = TestDatabase::start().await;
    let config = ServerConfig {
        ingest: IngestConfig {
            flush_interval: Duration::from_millis(50),
            ..IngestConfig::default()
        },
        ..config()
    };
    let server = TestServer::start_with(db.store().await, config).await;
    let t = day_start(1) + 5;
    // Flushes wait for this lock.
    let locker = db.sql().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE count.requests IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let (send, messages) = tokio::sync::mpsc::unbounded_channel();
    let mut client = server.client().await;
    let call = tokio::spawn(async move {
        client
            .add(tokio_stream::wrappers::UnboundedReceiverStream::new(
                messages,
            ))
            .await
    });
    send.send(entry(Method::Get, "/cancel/first", t, 1))
        .unwrap();
    let watcher = &db.sql().await;
    let waiting_flushes = "SELECT count(*) FROM pg_stat_activity
                            WHERE wait_event_type = 'Lock' AND query LIKE '%add_series%'";
    eventually(Duration::from_secs(30), || async move {
        single_bigint(watcher, waiting_flushes).await == 1
    })
    .await;
    // Read at once, then held for the next flush, which waits for the
    // first: what a cancelled handler used to drop.
    send.send(entry(Method::Get, "/cancel/second", t, 2))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    locker.batch_execute("COMMIT").await.unwrap();
    let committed = "SELECT coalesce(sum(count), 0)::bigint FROM count.requests";
    eventually(Duration::from_secs(30), || async move {
        single_bigint(watcher, committed).await == 3
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_dropped_silently_are_replaced_before_a_read_uses_them() {
    let db = TestDatabase::start().await;
    let proxy = SilentProxy::start(db.cluster.port()).await;
    let mut postgres = tokio_postgres::Config::new();
    postgres
        .host("127.0.0.1")
        .port(proxy.address.port())
        .user("postgres")
        .password(db.cluster.password().unwrap())
        .dbname(count_service::db::cluster::DATABASE);
    let mut config = ConnectConfig::from(postgres);
    config.check_idle = Duration::from_millis(300);
    let store = Store::open(config, 2).await.unwrap();
    let day = DateTime::from_timestamp(day_start(1) + 3600, 0).unwrap();
    let batch = FlushBatch::of_endpoints(vec!["GET"], vec!["/idle".into()], vec![day], vec![40]);
    store.add_batch(None, &batch).await.unwrap();
    let read = || store.period_totals(day.date_naive(), day.date_naive(), None);
    // Two reads at once: the second finds the first's connection taken, so
    // the pool holds two.
    let before = proxy.accepted();
    let (first, second) = tokio::join!(read(), read());
    assert_eq!(first.unwrap(), second.unwrap());
    assert_eq!(
        proxy.accepted(),
        before + 1,
        "the pool holds two connections"
    );
    let opened = proxy.accepted();

    // Both go quiet, as a NAT that forgot them would leave them: open, every
    // byte swallowed. Then they sit idle past the check.
    proxy.silence_open_connections();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let totals = tokio::time::timeout(Duration::from_secs(20), read())
        .await
        .expect("the read waited on a silent connection")
        .expect("the read succeeds on a new connection");
    assert_eq!(
        totals
            .iter()
            .map(|t| (t.path.as_str(), t.total))
            .collect::<Vec<_>>(),
        [("/idle", 40)]
    );
    assert_eq!(
        proxy.accepted(),
        opened + 1,
        "one new connection in place of the silent ones"
    );
    assert_eq!(
        proxy.swallowed_queries(),
        1,
        "one check failed; the other silent connection, as idle, was dropped unchecked"
    );
}

/// A TCP proxy to 127.0.0.1:`port` that can go silent on the connections
/// it holds, as a NAT or firewall that dropped them would: they stay open
/// and swallow every byte. Connections opened later pass.
struct SilentProxy {
    address: SocketAddr,
    state: Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    /// Raised by each silencing; a connection passes bytes while it is the
    /// one it was opened under.
    generation: AtomicU64,
    accepted: AtomicUsize,
    /// Simple queries ('Q' messages) sent on silent connections.
    swallowed_queries: AtomicUsize,
}

impl SilentProxy {
    async fn start(port: u16) -> SilentProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState::default());
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                let opened_under = shared.generation.load(Ordering::SeqCst);
                let server = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pass(
                    client_read,
                    server_write,
                    shared.clone(),
                    opened_under,
                ));
                tokio::spawn(pass(
                    server_read,
                    client_write,
                    shared.clone(),
                    opened_under,
                ));
            }
        });
        SilentProxy { address, state }
    }

    fn silence_open_connections(&self) {
        self.state.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    fn swallowed_queries(&self) -> usize {
        self.state.swallowed_queries.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` until either closes, or until the proxy goes
/// silent on connections opened under `opened_under`: then holds both open
/// and passes nothing more.
async fn pass(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    state: Arc<ProxyState>,
    opened_under: u64,
) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if state.generation.load(Ordering::SeqCst) != opened_under {
            if buffer[0] == b'Q' {
                state.swallowed_queries.fetch_add(1, Ordering::SeqCst);
            }
            let _held = (from, to);
            std::future::pending::<()>().await;
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// The one bigint `query` returns.
async fn single_bigint(sql: &tokio_postgres::Client, query: &str) -> i64 {
    sql.query_one(query, &[]).await.unwrap().get(0)
}
