//! Security: bearer tokens with roles over real gRPC, the secure default
//! for non-loopback addresses, and TLS.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use count_client::{BearerToken, Counter};
use count_proto::v1::count_service_client::CountServiceClient;
use count_proto::v1::{GetPeriodTotalsRequest, Method};
use count_service::auth::Tokens;
use count_service::server::ServerConfig;
use count_service::tls::TlsFiles;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::harness::*;

const INGEST: &str = "ingest-token-0123456789";
const READ: &str = "read-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

pub(crate) async fn client_with(
    server: &TestServer,
    token: Option<&str>,
) -> CountServiceClient<InterceptedService<Channel, BearerToken>> {
    let channel = Channel::from_shared(format!("http://{}", server.address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    CountServiceClient::with_interceptor(channel, BearerToken::new(token).unwrap())
}

#[tokio::test]
async fn tokens_admit_each_role_to_its_calls_only() {
    let db = TestDatabase::start().await;
    let tokens = Tokens::parse(
        &format!("ingest {INGEST}\nread {READ}\nadmin {ADMIN}"),
        "test",
    )
    .unwrap();
    let config = ServerConfig {
        tokens: Some(tokens),
        ..config()
    };
    let server = TestServer::start_with(db.store().await, config).await;
    let t = day_start(1) + 1;
    let stream = || tokio_stream::iter(vec![entry(Method::Get, "/secure", t, 2)]);
    let period = || GetPeriodTotalsRequest {
        period: date(day_of(t)),
    };

    let status = client_with(&server, None)
        .await
        .add(stream())
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::Unauthenticated,
            "missing bearer token: send the header `authorization: Bearer <token>`"
        )
    );
    let status = client_with(&server, Some("forged-token-0123456789"))
        .await
        .add(stream())
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "invalid bearer token")
    );

    let mut ingest = client_with(&server, Some(INGEST)).await;
    assert_eq!(ingest.add(stream()).await.unwrap().into_inner().accepted, 2);
    let status = ingest.get_period_totals(period()).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::PermissionDenied,
            "this token lacks the 'read' role that count.v1.CountService/GetPeriodTotals needs"
        )
    );
    let mut read = client_with(&server, Some(READ)).await;
    let status = read
        .count_daily_totals(count_proto::v1::CountDailyTotalsRequest {
            date: date(day_of(t)),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let mut admin = client_with(&server, Some(ADMIN)).await;
    admin
        .count_daily_totals(count_proto::v1::CountDailyTotalsRequest {
            date: date(day_of(t)),
        })
        .await
        .unwrap();
    let counts = read
        .get_period_totals(period())
        .await
        .unwrap()
        .into_inner()
        .method_counts;
    assert_eq!(
        totals(&counts),
        Totals::from([(("GET".into(), "/secure".into()), 2)])
    );
    // GetTotals is a read too, over gRPC as over HTTP.
    let live = count_proto::v1::GetTotalsRequest {
        start_time: Some(prost_types::Timestamp {
            seconds: day_start(1),
            nanos: 0,
        }),
        end_time: Some(prost_types::Timestamp {
            seconds: day_start(0),
            nanos: 0,
        }),
        ..Default::default()
    };
    let read_totals = read
        .get_totals(live.clone())
        .await
        .unwrap()
        .into_inner()
        .totals;
    assert_eq!(read_totals.iter().map(|t| t.total).sum::<i64>(), 2);
    let status = ingest.get_totals(live).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Health needs no token; the client library presents its own.
    let channel = Channel::from_shared(format!("http://{}", server.address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    let counter = Counter::builder(format!("http://{}", server.address))
        .bearer_token(INGEST)
        .build()
        .unwrap();
    counter.record(Method::Post, "/secure");
    tokio::time::timeout(Duration::from_secs(10), counter.flush())
        .await
        .unwrap();
    assert_eq!(counter.stats().delivered, 1);
    let refused = Counter::builder(format!("http://{}", server.address))
        .bearer_token(READ)
        .build()
        .unwrap();
    refused.record(Method::Post, "/secure");
    tokio::time::timeout(Duration::from_secs(10), refused.flush())
        .await
        .unwrap();
    assert_eq!(
        (refused.stats().delivered, refused.stats().dropped),
        (0, 1),
        "refused for good, not retried forever"
    );
    server.stop().await;
}

#[test]
fn serving_beyond_loopback_needs_tokens_or_an_explicit_opt_out() {
    let run = |extra: &[&str], tokens: Option<&str>| {
        let mut command = count_command();
        command
            .args([
                "serve",
                "--listen",
                "0.0.0.0:0",
                "--http-listen",
                "127.0.0.1:0",
                "--database-url",
                "postgresql://count@127.0.0.1:1/count",
            ])
            .args(extra);
        if let Some(tokens) = tokens {
            command.env("COUNT_TOKENS", tokens);
        }
        let mut child = command
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(700));
        let exited = child.try_wait().unwrap();
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        (
            exited.map(|s| s.code()),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (exited, stderr) = run(&[], None);
    assert_eq!(exited, Some(Some(1)), "{stderr}");
    assert!(
        stderr.contains("count: --listen: refusing to serve 0.0.0.0:0 without tokens: set --tokens-file or COUNT_TOKENS, or pass --allow-unauthenticated"),
        "{stderr}"
    );
    let (exited, stderr) = run(&["--allow-unauthenticated"], None);
    assert_eq!(exited, None, "still serving: {stderr}");
    let (exited, stderr) = run(&[], Some(&format!("ingest {INGEST}")));
    assert_eq!(exited, None, "still serving: {stderr}");
    // Tokens over plaintext beyond loopback: served, with a warning.
    assert!(
        stderr.contains("bearer tokens will cross the network in plaintext"),
        "{stderr}"
    );
    // Metrics take no token: beyond loopback only when asked explicitly.
    let metrics = ["--metrics-listen", "0.0.0.0:0"];
    let (exited, stderr) = run(&metrics, Some(&format!("ingest {INGEST}")));
    assert_eq!(exited, Some(Some(1)), "{stderr}");
    assert!(
        stderr.contains("count: --metrics-listen: refusing to serve metrics on 0.0.0.0:0: they take no token; pass --allow-unauthenticated to serve them beyond loopback"),
        "{stderr}"
    );
    let (exited, stderr) = run(
        &["--metrics-listen", "0.0.0.0:0", "--allow-unauthenticated"],
        Some(&format!("ingest {INGEST}")),
    );
    assert_eq!(exited, None, "still serving: {stderr}");
}

/// A private certificate authority for the TLS tests.
struct Pki {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
            .unwrap();
        Pki {
            ca,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A certificate for `name` and its key, as PEM.
    fn leaf(&self, name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes `contents` to a file named `name`; returns its path.
    fn file(&self, name: &str, contents: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    }
}

async fn tls_channel(
    address: std::net::SocketAddr,
    ca: &str,
    identity: Option<(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{address}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

#[tokio::test]
async fn grpc_and_http_over_tls_and_mutual_tls() {
    let db = TestDatabase::start().await;
    let pki = Pki::new();
    let ca = pki.ca.pem();
    let (cert, key) = pki.leaf("localhost");
    let tls = TlsFiles::new(cert.clone().into(), key.clone().into(), None).unwrap();
    let server = TestServer::start_with_http(
        db.store().await,
        ServerConfig {
            tls: Some(tls),
            ..config()
        },
    )
    .await;
    let http_address = server.http.unwrap();
    let answer = https_get(http_address, &ca, None, "/api/v1/openapi.json")
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    // Plaintext HTTP on the TLS port gets no answer: the connection
    // closes after a failed handshake.
    let mut plain = tokio::net::TcpStream::connect(http_address).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), plain.read_to_end(&mut answer))
        .await
        .expect("the server closes a plaintext connection");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let t = day_start(1);
    let mut client = CountServiceClient::new(tls_channel(server.address, &ca, None).await.unwrap());
    let stream = || tokio_stream::iter(vec![entry(Method::Get, "/tls", t, 3)]);
    assert_eq!(client.add(stream()).await.unwrap().into_inner().accepted, 3);
    assert!(
        server.client_plaintext_fails().await,
        "plaintext is refused on a TLS port"
    );
    let counter = Counter::builder(format!("https://localhost:{}", server.address.port()))
        .tls(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&ca)),
        )
        .build()
        .unwrap();
    counter.record(Method::Get, "/tls");
    tokio::time::timeout(Duration::from_secs(10), counter.flush())
        .await
        .unwrap();
    assert_eq!(counter.stats().delivered, 1);
    server.stop().await;

    // Mutual TLS: a client certificate from the CA is required, on both
    // listeners.
    let mutual = TlsFiles::new(cert.into(), key.into(), Some(ca.clone().into())).unwrap();
    let server = TestServer::start_with_http(
        db.store().await,
        ServerConfig {
            tls: Some(mutual),
            ..config()
        },
    )
    .await;
    let http_address = server.http.unwrap();
    assert!(
        https_get(http_address, &ca, None, "/api/v1/openapi.json")
            .await
            .is_err(),
        "an HTTPS client without a certificate is refused"
    );
    let answer = https_get(
        http_address,
        &ca,
        Some(pki.leaf("client")),
        "/api/v1/openapi.json",
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let anonymous = tls_channel(server.address, &ca, None).await;
    let refused = match anonymous {
        Err(_) => true,
        Ok(channel) => CountServiceClient::new(channel)
            .add(stream())
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate is refused");
    let mut client = CountServiceClient::new(
        tls_channel(server.address, &ca, Some(pki.leaf("client")))
            .await
            .unwrap(),
    );
    assert_eq!(client.add(stream()).await.unwrap().into_inner().accepted, 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_tls_from_its_flags_and_count_totals_reads_it() {
    let db = TestDatabase::start().await;
    let _store = db.store().await;
    let pki = Pki::new();
    let (cert, key) = pki.leaf("localhost");
    let (cert, key, ca) = (
        pki.file("cert.pem", &cert),
        pki.file("key.pem", &key),
        pki.file("ca.pem", &pki.ca.pem()),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let _server = spawn_serve(
        address,
        &db.cluster.url("count"),
        &["--tls-cert", &cert, "--tls-key", &key],
    );
    wait_until_listening(address).await;
    // Connected to its database: its health says SERVING (over TLS).
    let ca_for_health = std::fs::read_to_string(&ca).unwrap();
    eventually(Duration::from_secs(30), || {
        let ca = ca_for_health.clone();
        async move {
            let Ok(channel) = tls_channel(address, &ca, None).await else {
                return false;
            };
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
            let request = tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            };
            health
                .check(request)
                .await
                .is_ok_and(|r| r.into_inner().status == 1)
        }
    })
    .await;
    let t = day_start(1);
    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    let mut client = CountServiceClient::new(tls_channel(address, &ca_pem, None).await.unwrap());
    client
        .add(tokio_stream::iter(vec![entry(
            Method::Head,
            "/tls-cli",
            t,
            6,
        )]))
        .await
        .unwrap();
    roll_up(&mut client, day_of(t)).await;
    let day = day_of(t).to_string();
    let output = tokio::process::Command::from(count_command())
        .args([
            "totals",
            "--server",
            &format!("https://localhost:{port}"),
            "--ca-cert",
            &ca,
            "--from",
            &day,
            "--to",
            &day,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out = String::from_utf8(output.stdout).unwrap();
    assert!(
        out.ends_with(&format!("{day}  HEAD    /tls-cli  6\n")),
        "{out}"
    );
}

#[tokio::test]
async fn postgres_tls_honours_sslmode_and_sslrootcert() {
    let db = TestDatabase::start().await;
    let pki = Pki::new();
    let (cert, key) = pki.leaf("localhost");
    let base = db.cluster.base_dir();
    for (name, contents) in [("server.crt", &cert), ("server.key", &key)] {
        let path = base.join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        db.cluster.give(&path).unwrap();
    }
    let admin = db.sql().await;
    for statement in [
        format!(
            "ALTER SYSTEM SET ssl_cert_file = '{}'",
            base.join("server.crt").display()
        ),
        format!(
            "ALTER SYSTEM SET ssl_key_file = '{}'",
            base.join("server.key").display()
        ),
        "ALTER SYSTEM SET ssl = on".to_owned(),
        "SELECT pg_reload_conf()".to_owned(),
    ] {
        admin.batch_execute(&statement).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ca = pki.file("ca.pem", &pki.ca.pem());
    let wrong_ca = pki.file("wrong.pem", &Pki::new().ca.pem());
    let password = db.cluster.password().unwrap();
    let port = db.cluster.port();
    let url = |host: &str, options: &str| {
        format!("postgresql://postgres:{password}@{host}:{port}/count?{options}")
    };
    let encrypted = "SELECT count(*) FROM pg_stat_ssl AS s JOIN pg_stat_activity AS a USING (pid)
                      WHERE s.ssl AND a.application_name = 'count-tls-test'";
    let cases = [
        (url("localhost", "sslmode=disable"), Some(false)),
        (url("localhost", "sslmode=require"), Some(true)),
        (
            url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            Some(true),
        ),
        (
            url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={wrong_ca}"),
            ),
            None,
        ),
        (
            url(
                "127.0.0.1",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            None,
        ),
        (
            url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")),
            Some(true),
        ),
    ];
    for (url, expected) in cases {
        let config = count_service::db::connect::ConnectConfig::parse(&format!(
            "{url}&application_name=count-tls-test"
        ))
        .unwrap();
        let opened = count_service::db::store::Store::open(config, 1).await;
        match (opened, expected) {
            (Ok(store), Some(tls)) => {
                assert!(store.ping().await, "{url}");
                let count: i64 = admin.query_one(encrypted, &[]).await.unwrap().get(0);
                assert_eq!(count > 0, tls, "{url}");
                drop(store);
            }
            (Err(error), None) => assert!(
                error.to_string().starts_with("database: "),
                "{url}: {error}"
            ),
            (opened, expected) => {
                panic!("{url}: expected {expected:?}, got {:?}", opened.map(|_| ()))
            }
        }
        // Let the dropped pool's connections close before the next case.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_service_runs_as_a_least_privilege_role_after_the_owner_migrates() {
    let db = TestDatabase::start().await;
    let _owner = db.store().await;
    db.sql()
        .await
        .batch_execute(include_str!("../../../sql/roles.sql"))
        .await
        .unwrap();
    let mut app = db.config();
    app.user("count_app");
    // The role cannot set the schema up...
    let refused = count_service::db::store::Store::open(app.clone(), 2)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused}"
    );
    // ...but runs the service on it.
    let store = count_service::db::store::Store::open_existing(app, 2)
        .await
        .unwrap();
    assert_eq!(store.backend(), db.backend);
    let server = TestServer::start_with(store, config()).await;
    let mut client = server.client().await;
    let t = day_start(1) + 77;
    client
        .add(tokio_stream::iter(vec![entry(
            Method::Trace,
            "/least",
            t,
            9,
        )]))
        .await
        .unwrap();
    let batch = count_proto::v1::AddBatchRequest {
        producer_id: "app".into(),
        sequence: 1,
        entries: vec![entry(Method::Trace, "/least", t, 1)],
    };
    client.add_batch(batch).await.unwrap();
    let counts = roll_up(&mut client, day_of(t)).await;
    assert_eq!(
        totals(&counts),
        Totals::from([(("TRACE".into(), "/least".into()), 10)])
    );
    let period = client
        .get_period_totals(GetPeriodTotalsRequest {
            period: date(day_of(t)),
        })
        .await
        .unwrap();
    assert_eq!(period.into_inner().method_counts.len(), 1);
    server.stop().await;
}
