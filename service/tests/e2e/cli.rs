//! The `count` binary: subcommands against a real database and server, and
//! `count serve` on its embedded default.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use count_proto::v1::Method;
use count_proto::v1::count_service_client::CountServiceClient;

use crate::harness::*;

/// `count totals` against `server` from `from` to `to`, by `by`.
async fn totals_table(server: &str, from: &str, to: &str, by: &str) -> (i32, String, String) {
    count(&[
        "totals", "--server", server, "--from", from, "--to", to, "--by", by,
    ])
    .await
}

/// Runs `count` without blocking the runtime the test's server runs on.
async fn count(args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::from(count_command())
        .args(args)
        .output()
        .await
        .expect("count runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What `count check` prints when every step works.
const CHECK_STEPS: [&str; 7] = [
    "add_batch applies a batch once",
    "add_batch refuses a bad entry with 22023, naming it",
    "live totals before a rollup",
    "rollup moves the raw counts into the tiers",
    "the same totals after the rollup",
    "rollup_due runs (what count serve calls)",
    "delete what the check wrote",
];

#[tokio::test]
async fn count_check_runs_the_sql_api_through_and_leaves_nothing_behind() {
    let db = TestDatabase::start().await;
    let url = db.cluster.url("count");
    let (code, out, err) = count(&["check", "--database-url", &url]).await;
    let mut expected: String = CHECK_STEPS
        .iter()
        .map(|s| format!("ok      {s}\n"))
        .collect();
    expected += &format!(
        "count's SQL API works on this database (backend: {})\n",
        test_backend().name()
    );
    assert_eq!((code, out), (0, expected), "{err}");
    let left = db
        .bigint(
            "SELECT ((SELECT count(*) FROM count.methods) + (SELECT count(*) FROM count.producers)
                  + (SELECT count(*) FROM count.requests) + (SELECT count(*) FROM count.minute_method_totals)
                  + (SELECT count(*) FROM count.hourly_method_totals)
                  + (SELECT count(*) FROM count.daily_method_totals)
                  + (SELECT count(*) FROM count.monthly_method_totals)
                  + (SELECT coalesce(sum(q1 + q2 + q3 + q4), 0) FROM count.hourly_tenant_totals)
                  + (SELECT coalesce(sum(total), 0) FROM count.daily_tenant_totals)
                  + (SELECT coalesce(sum(total), 0) FROM count.monthly_tenant_totals))::bigint",
        )
        .await;
    // (The tenant tiers may keep rows of 0: their groups are shared.)
    assert_eq!(left, 0);

    // A read that buckets raw rows in UTC whatever the zone: the check
    // says which step and which read, and fails.
    db.sql()
        .await
        .batch_execute(
            "CREATE OR REPLACE FUNCTION count.bucket_of(t timestamptz, granularity text, time_zone text,
                                                       start_time timestamptz)
             RETURNS timestamptz LANGUAGE sql STABLE
             AS $$ SELECT CASE granularity WHEN 'total' THEN start_time
                                           ELSE date_trunc(granularity, t, 'UTC') END $$",
        )
        .await
        .unwrap();
    let (code, out, err) = count(&["check", "--no-migrate", "--database-url", &url]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("FAILED  live totals before a rollup: by hour in Asia/Kathmandu: read ["),
        "{out}"
    );
    assert!(
        out.contains("ok      the same totals after the rollup"),
        "{out}"
    );
    assert!(err.contains("count check: 1 of 7 steps failed"), "{err}");
}

#[tokio::test]
async fn migrate_rollup_and_totals_subcommands() {
    let db = TestDatabase::start().await;
    let url = db.cluster.url("count");
    let (code, out, _) = count(&["migrate", "--database-url", &url]).await;
    assert_eq!(
        (code, out),
        (
            0,
            format!(
                "schema up to date; SQL API backend: {}\n",
                test_backend().name()
            )
        )
    );

    let server = TestServer::start(&db).await;
    let mut client = server.client().await;
    let day1 = day_start(3);
    let day2 = day_start(2);
    let entries = vec![
        entry(Method::Get, "/users/{id}", day1 + 10, 5),
        entry(Method::Post, "/users", day1 + 20, 2),
        entry(Method::Get, "/users/{id}", day2 + 30, 7),
    ];
    client.add(tokio_stream::iter(entries)).await.unwrap();

    let d1 = day_of(day1).to_string();
    let d2 = day_of(day2).to_string();
    let (code, out, _) = count(&["rollup", "--day", &d1, "--database-url", &url]).await;
    assert_eq!(
        (code, out),
        (
            0,
            format!("rolled up {d1}: 7 requests moved into the totals\n")
        )
    );
    let (code, out, _) = count(&["rollup", "--due", "--database-url", &url]).await;
    assert_eq!((code, out.as_str()), (0, "rolled up 1 days\n"));

    let server_url = format!("http://{}", server.address);
    let (code, out, _) = totals_table(&server_url, &d1, &d2, "day").await;
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!(
            "PERIOD      METHOD  PATH         TOTAL\n\
             {d1}  GET     /users/{{id}}  5\n\
             {d1}  POST    /users       2\n\
             {d2}  GET     /users/{{id}}  7\n"
        )
    );
    let (code, out, _) = totals_table(&server_url, &d1, &d2, "year").await;
    assert_eq!(code, 0);
    let year = &d1[..4];
    let mut expected_year = String::from("PERIOD  METHOD  PATH         TOTAL\n");
    if &d2[..4] == year {
        expected_year.push_str(&format!(
            "{year}    GET     /users/{{id}}  12\n{year}    POST    /users       2\n"
        ));
        assert_eq!(out, expected_year);
    }
    let (code, out, _) = totals_table(&server_url, &d1, &d1, "month").await;
    assert_eq!(code, 0);
    assert!(
        out.starts_with("PERIOD   METHOD  PATH         TOTAL\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!("{}  POST    /users       2\n", &d1[..7])),
        "{out}"
    );

    let (code, _, err) = totals_table(&server_url, &d2, &d1, "day").await;
    assert_eq!(
        (code, err),
        (1, format!("count: --to: {d1} is before --from {d2}\n"))
    );
    let (code, _, err) = count(&["rollup", "--database-url", &url]).await;
    assert_eq!(code, 2, "clap usage error: {err}");
    let (code, _, err) = count(&["rollup", "--day", "2026-02-30", "--database-url", &url]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("invalid value '2026-02-30' for '--day <DAY>'"),
        "{err}"
    );
    let (code, _, err) = count(&[
        "migrate",
        "--database-url",
        "postgresql://nobody@/count?host=/nonexistent",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.starts_with("count: database: "), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn serve_runs_on_its_embedded_cluster_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::Builder::new()
        .prefix("count-serve-")
        .tempdir()
        .unwrap();
    let mut child = count_command()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut address, mut url, mut ready) = (None, None, String::new());
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.split("url=").nth(1) {
            url = Some(rest.trim().to_owned());
        }
        if line.contains("count serving") {
            address = line
                .split("address=")
                .nth(1)
                .and_then(|a| a.split_whitespace().next())
                .map(str::to_owned);
        }
        if line.contains("database ready") {
            ready = line.clone();
            break;
        }
    }
    let (address, url) = (address.expect("serving line"), url.expect("url line"));
    // Keep draining the log so the server never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    let mut client = CountServiceClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    let t = day_start(1) + 5;
    let entries: Vec<_> = (0..1000)
        .map(|i| entry(Method::Delete, "/items/{id}", t + i % 10, 1))
        .collect();
    assert_eq!(
        client
            .add(tokio_stream::iter(entries))
            .await
            .unwrap()
            .into_inner()
            .accepted,
        1000
    );
    let counts = roll_up(&mut client, day_of(t)).await;
    assert_eq!(
        totals(&counts),
        Totals::from([(("DELETE".into(), "/items/{id}".into()), 1000)])
    );

    // What psql would read on the logged URL.
    let config: tokio_postgres::Config = url.parse().unwrap();
    let (sql, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let total: i64 = sql
        .query_one(
            "SELECT total FROM count.daily_totals WHERE method = 'DELETE'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 1000);
    // The embedded cluster runs the extension whenever PostgreSQL has it.
    let available: bool = sql
        .query_one(
            "SELECT count(*) > 0 FROM pg_available_extensions WHERE name = 'count'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let backend = if available { "extension" } else { "sql" };
    assert!(ready.contains(&format!("backend=\"{backend}\"")), "{ready}");
    drop(sql);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    let log = drain.join().unwrap().join("\n");
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(
        !dir.path().join("pg/postmaster.pid").exists(),
        "the embedded cluster is stopped"
    );
}

#[tokio::test]
async fn count_add_sends_one_count_to_a_running_server() {
    let db = TestDatabase::start().await;
    let server = TestServer::start(&db).await;
    let url = format!("http://{}", server.address);
    let (code, out, err) = count(&[
        "add",
        "get",
        "/users/{id}",
        "--count",
        "3",
        "--server",
        &url,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("counted 3 GET /users/{id} at "), "{out}");
    let (code, out, err) = count(&[
        "add",
        "PROPFIND",
        "/dav",
        "--at",
        "2026-01-02T03:04:05+01:00",
        "--server",
        &url,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "counted 1 OTHER /dav at 2026-01-02T02:04:05+00:00\n");
    let rows: Vec<(String, String, String, i64)> = db
        .sql()
        .await
        .query(
            "SELECT m.method, m.path, to_char(r.request_timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                    r.count
               FROM count.requests AS r JOIN count.methods AS m ON m.id = r.method_id
              ORDER BY m.path",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (
            rows[0].0.as_str(),
            rows[0].1.as_str(),
            rows[0].2.as_str(),
            rows[0].3
        ),
        // Kept to its minute, as the server keeps every count.
        ("OTHER", "/dav", "2026-01-02 02:04:00", 1)
    );
    assert_eq!(
        (rows[1].0.as_str(), rows[1].1.as_str(), rows[1].3),
        ("GET", "/users/{id}", 3)
    );
    // Bad values are usage errors; a refused count says why.
    for (args, code, message) in [
        (
            vec!["add", "GET", "/a", "--count", "0"],
            2,
            "invalid value '0' for '--count <COUNT>'",
        ),
        (
            vec!["add", "GET", "/a", "--at", "yesterday"],
            2,
            "invalid value 'yesterday' for '--at <AT>'",
        ),
        (
            vec!["add", "GET", "", "--server", &url],
            1,
            "entries[0].path: must not be empty",
        ),
    ] {
        let (actual, _, err) = count(&args).await;
        assert_eq!(actual, code, "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    server.stop().await;
}

/// The README's first run: `count add`, then `count totals --last 5m --by
/// minute` shows the count at once, on a server with the default rollup
/// schedule (reads add the raw rows not rolled up yet).
#[tokio::test]
async fn a_first_count_shows_live_in_totals_by_minute() {
    let db = TestDatabase::start().await;
    let server = TestServer::start_with(
        db.store().await,
        count_service::server::ServerConfig::default(),
    )
    .await;
    let url = format!("http://{}", server.address);
    let (code, _, err) = count(&["add", "GET", "/users/{id}", "--server", &url]).await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) =
        count(&["totals", "--last", "5m", "--by", "minute", "--server", &url]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], "PERIOD            METHOD  PATH         TOTAL");
    assert!(lines[1].ends_with("  GET     /users/{id}  1"), "{out}");
    server.stop().await;
}

#[tokio::test]
async fn count_export_writes_what_the_http_api_answers_as_csv_and_json_lines() {
    let db = TestDatabase::start().await;
    let server = TestServer::start_with_http(db.store().await, config()).await;
    let t = day_start(2) + 3600;
    server
        .client()
        .await
        .add(tokio_stream::iter(vec![
            entry(Method::Get, "/users/{id}", t, 3),
            entry(Method::Unspecified, "/a,b", t + 60, 2),
            entry(Method::Get, "/users/{id}", t + 7200, 4),
        ]))
        .await
        .unwrap();
    let day = day_of(t).to_string();
    let grpc = format!("http://{}", server.address);
    let export = |format: &'static str| {
        let (grpc, day) = (grpc.clone(), day.clone());
        async move {
            count(&[
                "export", "--server", &grpc, "--from", &day, "--to", &day, "--by", "hour",
                "--format", format,
            ])
            .await
        }
    };
    let (code, csv, err) = export("csv").await;
    assert_eq!(code, 0, "{err}");
    let start = at(day_start(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let end = at(day_start(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let http_csv = http(
        server.http.unwrap(),
        "GET",
        &format!("/api/v1/totals?start_time={start}&end_time={end}&granularity=hour&group_by=endpoint&format=csv"),
        &[],
        "",
    )
    .await;
    assert_eq!(csv, http_csv.body);
    assert!(csv.contains(",OTHER,\"/a,b\",2,false,,,\r\n"), "{csv}");
    let (code, lines, err) = export("jsonl").await;
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = lines
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows.iter()
            .map(|r| r["total"].as_i64().unwrap())
            .sum::<i64>(),
        9
    );
    server.stop().await;
}

/// `count import` against `server`, of `file` with `extra` flags, feeding
/// `stdin` when the file is `-`.
async fn import(
    server: &TestServer,
    file: &str,
    extra: &[&str],
    stdin: &str,
) -> (i32, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::from(count_command())
        .args([
            "import",
            file,
            "--server",
            &format!("http://{}", server.address),
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("count import runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = child.wait_with_output().await.unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn count_import_counts_a_file_once_however_often_it_runs() {
    let db = TestDatabase::start().await;
    let server = TestServer::start(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let t = at(day_start(1) + 30).to_rfc3339();
    let file = dir.path().join("counts.csv");
    let mut csv = String::from("path,method,timestamp,count\n");
    for i in 0..2_500 {
        csv.push_str(&format!("/items/{},get,{t},{}\n", i % 7, 1 + i % 3));
    }
    csv.push_str(&format!("\"/a,b\",POST,{t},\n"));
    std::fs::write(&file, &csv).unwrap();
    let expected: i64 = (0..2_500).map(|i| 1 + i % 3).sum::<i64>() + 1;
    let file = file.to_str().unwrap();
    let (code, out, err) = import(&server, file, &["--batch-rows", "300"], "").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("imported 2501 rows ({expected} requests)")),
        "{out}"
    );
    assert!(
        out.contains("in 9 batches: 9 applied, 0 already imported"),
        "{out}"
    );
    let (code, out, err) = import(&server, file, &["--batch-rows", "300"], "").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("9 batches: 0 applied, 9 already imported"),
        "{out}"
    );
    let stored = || db.bigint("SELECT coalesce(sum(count), 0)::bigint FROM count.requests");
    assert_eq!(stored().await, expected);
    assert_eq!(
        db.bigint("SELECT count(*) FROM count.methods WHERE path = '/a,b' AND method = 'POST'")
            .await,
        1
    );

    // JSON lines from standard input, twice: once.
    let lines = format!(
        "{{\"method\": \"GET\", \"path\": \"/j\", \"timestamp\": \"{t}\", \"count\": 4}}\n\n\
         {{\"method\": \"GET\", \"path\": \"/j\", \"timestamp\": \"{t}\"}}\n"
    );
    for _ in 0..2 {
        let (code, out, err) = import(&server, "-", &["--format", "jsonl"], &lines).await;
        assert_eq!(code, 0, "{out}{err}");
    }
    assert_eq!(stored().await, expected + 5);

    // A row that does not parse: nothing is sent, and its line is named.
    let broken = dir.path().join("broken.csv");
    std::fs::write(
        &broken,
        format!("method,path,timestamp\nGET,/x,{t}\nGET,/y,yesterday\n"),
    )
    .unwrap();
    let (code, _, err) = import(&server, broken.to_str().unwrap(), &[], "").await;
    assert_eq!(code, 1);
    assert!(
        err.contains("line 3: timestamp 'yesterday' is not an RFC 3339 time"),
        "{err}"
    );
    assert_eq!(stored().await, expected + 5);

    // A row the server refuses (an empty path): the others count, it is named.
    let refused = dir.path().join("refused.csv");
    std::fs::write(
        &refused,
        format!("method,path,timestamp\nGET,/ok,{t}\nGET,,{t}\n"),
    )
    .unwrap();
    let (code, out, err) = import(&server, refused.to_str().unwrap(), &[], "").await;
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("line 3: entries[1].path: must not be empty"),
        "{err}"
    );
    assert_eq!(stored().await, expected + 6);
    server.stop().await;
}

#[tokio::test]
async fn a_count_import_killed_halfway_and_run_again_counts_every_row_once() {
    let db = TestDatabase::start().await;
    let server = TestServer::start(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.csv");
    let base = day_start(1);
    let mut csv = String::from("method,path,timestamp\n");
    const ROWS: i64 = 300_000;
    for i in 0..ROWS {
        csv.push_str(&format!(
            "GET,/big/{},{}\n",
            i % 500,
            at(base + i % 80_000).to_rfc3339()
        ));
    }
    std::fs::write(&file, &csv).unwrap();
    let file = file.to_str().unwrap().to_owned();
    let mut first = tokio::process::Command::from(count_command())
        .args([
            "import",
            &file,
            "--batch-rows",
            "1000",
            "--server",
            &format!("http://{}", server.address),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once some batches are in, well before all 300.
    let mut applied = 0;
    for _ in 0..600 {
        applied = db
            .bigint("SELECT coalesce(sum(last_sequence), 0)::bigint FROM count.producers")
            .await;
        if applied >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill().await.unwrap();
    let killed_at = db
        .bigint("SELECT coalesce(sum(count), 0)::bigint FROM count.requests")
        .await;
    assert!(
        applied >= 4 && killed_at < ROWS,
        "killed after {applied} batches, {killed_at} rows"
    );
    let (code, out, err) = import(&server, &file, &["--batch-rows", "1000"], "").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("already imported"), "{out}");
    assert_eq!(
        db.bigint("SELECT coalesce(sum(count), 0)::bigint FROM count.requests")
            .await,
        ROWS
    );
    server.stop().await;
}
