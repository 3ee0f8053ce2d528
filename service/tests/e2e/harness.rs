//! The shared test harness: real PostgreSQL clusters (the same code as the
//! embedded default) and real gRPC servers on 127.0.0.1 ports.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::NaiveDate;
use count_proto::google::r#type::Date;
use count_proto::v1::count_service_client::CountServiceClient;
use count_proto::v1::{AddRequest, CountDailyTotalsRequest, Method, MethodCount};
use count_service::db::cluster::{Cluster, ClusterOptions};
use count_service::db::store::{Backend, Store};
use count_service::server::ServerConfig;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A private PostgreSQL cluster with database `count`, removed on drop.
pub(crate) struct TestDatabase {
    pub(crate) cluster: Cluster,
    /// The backend the store must detect.
    pub(crate) backend: Backend,
    // Dropped after the cluster (fields drop in order), so the cluster
    // stops before its directory goes.
    _dir: TempDir,
}

impl TestDatabase {
    /// A cluster on the backend the run selects ([`test_backend`]).
    pub(crate) async fn start() -> TestDatabase {
        Self::start_with(test_backend(), Vec::new()).await
    }

    /// A cluster on `backend`, with extra `postgresql.conf` settings (and
    /// the run's [`test_isolation`], unless they set one).
    pub(crate) async fn start_with(
        backend: Backend,
        mut settings: Vec<(String, String)>,
    ) -> TestDatabase {
        if let Some(isolation) = test_isolation()
            && !settings
                .iter()
                .any(|(name, _)| name == "default_transaction_isolation")
        {
            settings.push(("default_transaction_isolation".to_owned(), isolation));
        }
        let dir = tempfile::Builder::new()
            .prefix("count-test-")
            .tempdir()
            .expect("temporary directory");
        let mut options = ClusterOptions::new(dir.path());
        options.no_sync = true;
        options.settings = settings;
        let cluster = tokio::task::spawn_blocking(move || Cluster::start(&options))
            .await
            .expect("start task")
            .expect("cluster starts");
        cluster.create_database().await.expect("database count");
        if backend == Backend::Extension {
            let created = cluster
                .create_extension()
                .await
                .expect("CREATE EXTENSION count");
            assert!(
                created,
                "the count extension is not installed: run scripts/test, which installs it"
            );
        }
        TestDatabase {
            cluster,
            backend,
            _dir: dir,
        }
    }

    pub(crate) fn config(&self) -> tokio_postgres::Config {
        self.cluster.config(count_service::db::cluster::DATABASE)
    }

    pub(crate) async fn store(&self) -> Store {
        let store = Store::open(self.config(), 8).await.expect("store opens");
        assert_eq!(store.backend(), self.backend);
        store
    }

    /// The one bigint `query` returns, on a connection of its own.
    pub(crate) async fn bigint(&self, query: &str) -> i64 {
        self.sql()
            .await
            .query_one(query, &[])
            .await
            .expect("query")
            .get(0)
    }

    /// A direct SQL connection, as a SQL user would have.
    pub(crate) async fn sql(&self) -> tokio_postgres::Client {
        let (client, connection) = self
            .config()
            .connect(tokio_postgres::NoTls)
            .await
            .expect("sql connection");
        tokio::spawn(connection);
        client
    }
}

/// The SQL API backend the tests run on: `COUNT_TEST_BACKEND=extension`
/// selects the native extension (which must be installed), anything else the
/// portable SQL fallback.
pub(crate) fn test_backend() -> Backend {
    match std::env::var("COUNT_TEST_BACKEND").as_deref() {
        Ok("extension") => Backend::Extension,
        _ => Backend::Sql,
    }
}

/// The isolation level the run gives every test cluster by default:
/// `COUNT_TEST_ISOLATION=serializable` runs the suite the way CockroachDB
/// runs every transaction. `None`: PostgreSQL's READ COMMITTED.
pub(crate) fn test_isolation() -> Option<String> {
    std::env::var("COUNT_TEST_ISOLATION")
        .ok()
        .filter(|level| !level.is_empty())
        .map(|level| level.replace('_', " "))
}

/// A running count server on a free port.
pub(crate) struct TestServer {
    pub(crate) address: SocketAddr,
    /// The HTTP API's address, when the server serves one.
    pub(crate) http: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<count_service::error::Result<()>>,
}

/// The server configuration of the tests: the defaults, with no scheduled
/// rollup, so that a test sees raw rows until it rolls them up itself
/// (rpc::a_default_server_rolls_up_within_seconds covers the schedule).
pub(crate) fn config() -> ServerConfig {
    ServerConfig {
        rollup_every: None,
        ..ServerConfig::default()
    }
}

impl TestServer {
    pub(crate) async fn start(database: &TestDatabase) -> TestServer {
        Self::start_with(database.store().await, config()).await
    }

    pub(crate) async fn start_with(store: Store, config: ServerConfig) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::start_on(listener, store, config)
    }

    /// A server with its HTTP API too, on a port of its own.
    pub(crate) async fn start_with_http(store: Store, config: ServerConfig) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::spawn(listener, Some(http), store, config)
    }

    /// A server on `listener` (an address a client was given before the
    /// server existed).
    pub(crate) fn start_on(
        listener: TcpListener,
        store: Store,
        config: ServerConfig,
    ) -> TestServer {
        Self::spawn(listener, None, store, config)
    }

    fn spawn(
        listener: TcpListener,
        http: Option<TcpListener>,
        store: Store,
        config: ServerConfig,
    ) -> TestServer {
        let address = listener.local_addr().expect("address");
        let http_address = http
            .as_ref()
            .map(|http| http.local_addr().expect("address"));
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(count_service::server::run(
            listener,
            http,
            store,
            config,
            async {
                let _ = signal.await;
            },
        ));
        TestServer {
            address,
            http: http_address,
            shutdown: Some(shutdown),
            task,
        }
    }

    pub(crate) async fn client(&self) -> CountServiceClient<Channel> {
        CountServiceClient::connect(format!("http://{}", self.address))
            .await
            .expect("client connects")
    }

    /// Whether a plaintext client fails against this server (it serves TLS).
    pub(crate) async fn client_plaintext_fails(&self) -> bool {
        match CountServiceClient::connect(format!("http://{}", self.address)).await {
            Err(_) => true,
            Ok(mut client) => client
                .add(tokio_stream::iter(Vec::<AddRequest>::new()))
                .await
                .is_err(),
        }
    }

    /// Signals shutdown and waits for the server to return.
    pub(crate) async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        (&mut self.task)
            .await
            .expect("server task")
            .expect("server exits cleanly");
    }
}

/// Seconds since the epoch at 00:00 UTC of the day `days_ago` days before today.
pub(crate) fn day_start(days_ago: i64) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    (now / 86_400 - days_ago) * 86_400
}

pub(crate) fn day_of(seconds: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp(seconds, 0)
        .expect("timestamp")
        .date_naive()
}

pub(crate) fn date(day: NaiveDate) -> Option<Date> {
    Some(count_service::dates::to_proto(day))
}

pub(crate) fn entry(method: Method, path: &str, seconds: i64, count: i64) -> AddRequest {
    AddRequest {
        method: method as i32,
        path: path.to_owned(),
        request_timestamp: Some(prost_types::Timestamp {
            seconds,
            nanos: 123_456_789,
        }),
        count,
        ..AddRequest::default()
    }
}

/// Rolls `day` up through `CountDailyTotals` and returns its totals.
pub(crate) async fn roll_up(
    client: &mut CountServiceClient<Channel>,
    day: NaiveDate,
) -> Vec<MethodCount> {
    client
        .count_daily_totals(CountDailyTotalsRequest { date: date(day) })
        .await
        .expect("CountDailyTotals")
        .into_inner()
        .method_counts
}

/// Totals keyed by (method name, path).
pub(crate) type Totals = BTreeMap<(String, String), i64>;

pub(crate) fn totals(counts: &[MethodCount]) -> Totals {
    let mut totals = Totals::new();
    for c in counts {
        let method = Method::try_from(c.method)
            .expect("known method")
            .as_str_name()
            .to_owned();
        let previous = totals.insert((method, c.path.clone()), c.count);
        assert!(previous.is_none(), "one entry per method and path: {c:?}");
    }
    totals
}

/// Waits for `condition` up to `limit`, polling.
pub(crate) async fn eventually<F, Fut>(limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A child process killed when dropped, so a failing test leaves no server
/// running (and holding the test runner's output pipes): the bench's.
pub(crate) use count_bench::process::KillOnDrop;

/// A free port on 127.0.0.1 (for servers that must be restarted on it).
pub(crate) fn free_address() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
}

/// The `count` binary as a command with a clean environment: every `COUNT_*`
/// variable and `DB_URL` removed. A developer's or CI's own settings (a
/// `COUNT_DATABASE_URL` or `COUNT_TOKENS` in the shell) must not change what a
/// test runs; a test that needs one sets it on the command itself. Every test
/// that runs the binary starts here (wrap it in `tokio::process::Command::from`
/// to run it without blocking the runtime).
pub(crate) fn count_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_count"));
    command.env_remove("DB_URL");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("COUNT_") {
            command.env_remove(name);
        }
    }
    command
}

/// `count serve` as its own process on `address` against `url`, with
/// `extra` flags; killed when dropped.
pub(crate) fn spawn_serve(address: std::net::SocketAddr, url: &str, extra: &[&str]) -> KillOnDrop {
    KillOnDrop(
        count_command()
            .args([
                "serve",
                "--listen",
                &address.to_string(),
                "--database-url",
                url,
            ])
            .args(["--health-interval", "100ms"])
            // As config(): no scheduled rollup unless `extra` asks, and no
            // HTTP API (its default port would be shared by every test).
            .args(["--rollup-every", "0", "--http-listen", "off"])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("count serve starts"),
    )
}

/// Waits until the count server on `address` (plaintext) reports SERVING:
/// connected to its database, migrations applied.
pub(crate) async fn wait_until_serving(address: std::net::SocketAddr) {
    eventually(Duration::from_secs(30), || async move {
        health_status(address).await == 1
    })
    .await;
}

/// Waits until something accepts connections on `address`.
pub(crate) async fn wait_until_listening(address: std::net::SocketAddr) {
    eventually(Duration::from_secs(30), || async move {
        tokio::net::TcpStream::connect(address).await.is_ok()
    })
    .await;
}

/// The health status of `count.v1.CountService` (1 SERVING, 2 NOT_SERVING;
/// -1 when the check fails).
pub(crate) async fn health_status(address: SocketAddr) -> i32 {
    let Ok(channel) = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .expect("URL")
        .connect()
        .await
    else {
        return -1;
    };
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let request = tonic_health::pb::HealthCheckRequest {
        service: count_proto::v1::count_service_server::SERVICE_NAME.to_owned(),
    };
    health
        .check(request)
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(-1)
}

/// A small deterministic generator (xorshift64*), so a failing workload can
/// be replayed from its seed.
pub(crate) struct Random(pub(crate) u64);

impl Random {
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// The time `seconds` after the epoch.
pub(crate) fn at(seconds: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(seconds, 0).expect("timestamp")
}

/// A `count.totals` query over [start, end), by `granularity` in
/// `time_zone`, all endpoints together.
pub(crate) fn query(
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
    granularity: &str,
    time_zone: &str,
) -> count_service::db::store::TotalsQuery {
    count_service::db::store::TotalsQuery {
        start,
        end,
        granularity: granularity.to_owned(),
        time_zone: time_zone.to_owned(),
        methods: None,
        path: None,
        path_prefix: None,
        tenants: None,
        statuses: None,
        group_by: Vec::new(),
        top: None,
    }
}

/// An HTTP/1.1 response: its status, headers (names lower-cased) and body.
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: String,
}

impl HttpResponse {
    /// The body as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.1 request over a connection of its own (`Connection:
/// close`): `headers` are extra `Name: value` lines; without them, `Host`
/// is the server's address and a POST's body is JSON.
pub(crate) async fn http(
    address: SocketAddr,
    method: &str,
    target: &str,
    headers: &[&str],
    body: &str,
) -> HttpResponse {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    exchange(stream, address, method, target, headers, body)
        .await
        .expect("an HTTP exchange")
}

/// `GET target` over TLS, trusting the PEM certificate `ca`, and
/// presenting the PEM `identity` (certificate, key) when given: the
/// handshake's or the exchange's error when either fails.
pub(crate) async fn https_get(
    address: SocketAddr,
    ca: &str,
    identity: Option<(String, String)>,
    target: &str,
) -> std::io::Result<HttpResponse> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_pemfile::certs(&mut ca.as_bytes()) {
        roots.add(certificate?).expect("a CA certificate");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                rustls_pemfile::certs(&mut cert.as_bytes()).collect::<Result<_, _>>()?,
                rustls_pemfile::private_key(&mut key.as_bytes())?.expect("a key"),
            )
            .expect("a client certificate"),
    };
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
    let stream = connector.connect(name, tcp).await?;
    exchange(stream, address, "GET", target, &[], "").await
}

/// One request and its response over `stream`, as [`http`] describes.
async fn exchange(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    address: SocketAddr,
    method: &str,
    target: &str,
    headers: &[&str],
    body: &str,
) -> std::io::Result<HttpResponse> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    // A loopback Host, and a JSON body, unless the test says otherwise.
    let given = |name: &str| {
        headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with(&format!("{name}:")))
    };
    if !given("host") {
        request.push_str(&format!("Host: {address}\r\n"));
    }
    if method == "POST" && !given("content-type") {
        request.push_str("Content-Type: application/json\r\n");
    }
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    // A TLS peer may close without close_notify once the response is
    // whole (`Connection: close`): what was read is the answer.
    if let Err(error) = stream.read_to_string(&mut response).await
        && (response.is_empty() || error.kind() != std::io::ErrorKind::UnexpectedEof)
    {
        return Err(error);
    }
    let (head, body) = response.split_once("\r\n\r\n").expect("a head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: BTreeMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let body = if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// A chunked body's content (RFC 9112, section 7.1), the chunks joined.
fn dechunk(mut body: &str) -> String {
    let mut content = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        content.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    content
}
