//! Tenants and status codes (issue 14): each series (tenant, method, path,
//! status code) is counted apart, read back filtered and grouped over gRPC,
//! HTTP and SQL, summed over by the reads from before series had them, and
//! capped per tenant. Every test runs on both backends.

use count_proto::v1::{
    AddBatchRequest, AddRequest, Dimension, GetPeriodTotalsRequest, GetTotalsRequest, Granularity,
    ListDailyTotalsRequest, Method, Total,
};
use count_service::db::store::FlushBatch;
use count_service::server::ServerConfig;

use crate::harness::*;

/// One entry of `count` requests for `tenant` with `status` (None:
/// unknown).
fn counted(
    method: Method,
    path: &str,
    tenant: &str,
    status: Option<u32>,
    seconds: i64,
    count: i64,
) -> AddRequest {
    AddRequest {
        tenant: tenant.to_owned(),
        status_code: status,
        ..entry(method, path, seconds, count)
    }
}

/// Yesterday's counts: tenants acme and beta, HTTP and gRPC statuses, and
/// an old client's entry (no tenant, no status).
fn entries(t: i64) -> Vec<AddRequest> {
    vec![
        counted(Method::Get, "/a", "acme", Some(200), t, 100),
        counted(Method::Get, "/a", "acme", Some(503), t, 3),
        counted(Method::Get, "/a", "beta", Some(200), t + 60, 40),
        counted(Method::Get, "/a", "beta", Some(404), t + 60, 2),
        counted(Method::Grpc, "/s.S/M", "acme", Some(0), t, 7),
        counted(Method::Grpc, "/s.S/M", "acme", Some(13), t, 1),
        entry(Method::Get, "/a", t, 5),
    ]
}

/// Rows as (tenant, status code, class, total) for comparison.
fn by_tenant_and_status(totals: &[Total]) -> Vec<(String, Option<u32>, String, i64)> {
    totals
        .iter()
        .map(|t| {
            (
                t.tenant.clone(),
                t.status_code,
                t.status_class.clone(),
                t.total,
            )
        })
        .collect()
}

#[tokio::test]
async fn tenants_and_status_codes_are_counted_apart_and_the_old_reads_sum_over_them() {
    let db = TestDatabase::start().await;
    let server = TestServer::start_with_http(db.store().await, config()).await;
    let mut client = server.client().await;
    let day = day_start(1);
    let t = day + 3600;
    let response = client
        .add_batch(AddBatchRequest {
            producer_id: "series".into(),
            sequence: 1,
            entries: entries(t),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.accepted, 158);
    let range = GetTotalsRequest {
        start_time: Some(count_service::query::timestamp(at(day))),
        end_time: Some(count_service::query::timestamp(at(day + 86_400))),
        granularity: Granularity::Total as i32,
        ..GetTotalsRequest::default()
    };
    let read = |request: GetTotalsRequest| {
        let mut client = client.clone();
        async move {
            client
                .get_totals(request)
                .await
                .unwrap()
                .into_inner()
                .totals
        }
    };
    // Every series, by tenant and status: unknown has no code; gRPC's OK
    // (0) is a code of its own.
    let all = read(GetTotalsRequest {
        group_by: vec![Dimension::Tenant as i32, Dimension::Status as i32],
        ..range.clone()
    })
    .await;
    let row = |tenant: &str, code: Option<u32>, class: &str, total| {
        (tenant.to_owned(), code, class.to_owned(), total)
    };
    assert_eq!(
        by_tenant_and_status(&all),
        vec![
            row("", None, "unknown", 5),
            row("acme", Some(0), "grpc_ok", 7),
            row("acme", Some(13), "grpc_error", 1),
            row("acme", Some(200), "2xx", 100),
            row("acme", Some(503), "5xx", 3),
            row("beta", Some(200), "2xx", 40),
            row("beta", Some(404), "4xx", 2),
        ]
    );
    // One tenant's errors, by class: filters and grouping together.
    let errors = read(GetTotalsRequest {
        tenants: vec!["acme".into()],
        statuses: vec!["5xx".into(), "4xx".into(), "grpc_error".into()],
        group_by: vec![Dimension::StatusClass as i32],
        ..range.clone()
    })
    .await;
    assert_eq!(
        by_tenant_and_status(&errors),
        vec![row("", None, "5xx", 3), row("", None, "grpc_error", 1)]
    );
    // A code, unknown, and the tenant of no tenant.
    let unknown = read(GetTotalsRequest {
        tenants: vec![String::new()],
        statuses: vec!["unknown".into(), "404".into()],
        ..range.clone()
    })
    .await;
    assert_eq!(unknown.iter().map(|t| t.total).collect::<Vec<_>>(), vec![5]);
    // By endpoint, as before series: the sum over tenants and statuses.
    let endpoints = read(GetTotalsRequest {
        group_by: vec![Dimension::Endpoint as i32],
        ..range.clone()
    })
    .await;
    assert_eq!(
        endpoints
            .iter()
            .map(|t| (t.path.as_str(), t.tenant.as_str(), t.total))
            .collect::<Vec<_>>(),
        vec![("/a", "", 150), ("/s.S/M", "", 8)]
    );
    // The top tenant.
    let top = read(GetTotalsRequest {
        group_by: vec![Dimension::Tenant as i32],
        top: 1,
        ..range.clone()
    })
    .await;
    assert_eq!(by_tenant_and_status(&top), vec![row("acme", None, "", 111)]);
    // The reads from before series: sums over tenants and statuses, live
    // and once rolled up.
    for rolled_up in [false, true] {
        if rolled_up {
            roll_up(&mut client, day_of(day)).await;
        }
        let daily = client
            .list_daily_totals(ListDailyTotalsRequest {
                start_date: date(day_of(day)),
                end_date: date(day_of(day)),
            })
            .await
            .unwrap()
            .into_inner()
            .method_counts;
        assert_eq!(
            totals(&daily),
            totals(
                &client
                    .get_period_totals(GetPeriodTotalsRequest {
                        period: date(day_of(day)),
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .method_counts
            )
        );
        let mut pairs: Vec<(String, i64)> =
            daily.iter().map(|c| (c.path.clone(), c.count)).collect();
        pairs.sort();
        assert_eq!(
            pairs,
            vec![("/a".to_owned(), 150), ("/s.S/M".to_owned(), 8)],
            "rolled up: {rolled_up}"
        );
        assert_eq!(
            db.bigint(
                "SELECT coalesce(sum(total), 0)::bigint FROM count.daily_totals WHERE path = '/a'"
            )
            .await,
            if rolled_up { 150 } else { 0 }
        );
    }
    // The HTTP API answers the same as gRPC.
    let address = server.http.unwrap();
    let target = format!(
        "/api/v1/totals?start_time={}&end_time={}&granularity=total&group_by=tenant,status",
        count_service::export::rfc3339(at(day)),
        count_service::export::rfc3339(at(day + 86_400)),
    );
    let body = http_get_json(address, &target).await;
    let rows: Vec<(String, Option<u32>, String, i64)> = body["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["tenant"].as_str().unwrap().to_owned(),
                r["status_code"].as_u64().map(|c| c as u32),
                r["status_class"].as_str().unwrap().to_owned(),
                r["total"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, by_tenant_and_status(&all));
    let csv = http(
        address,
        "GET",
        &format!("{target}&tenants=beta&format=csv"),
        &[],
        "",
    )
    .await;
    assert_eq!(
        csv.body.lines().collect::<Vec<_>>(),
        vec![
            "bucket,method,path,total,live,tenant,status_code,status_class",
            &format!(
                "{},,,40,false,beta,200,2xx",
                count_service::export::rfc3339(at(day))
            ),
            &format!(
                "{},,,2,false,beta,404,4xx",
                count_service::export::rfc3339(at(day))
            ),
        ]
    );
    server.stop().await;
}

async fn http_get_json(address: std::net::SocketAddr, target: &str) -> serde_json::Value {
    let response = http(address, "GET", target, &[], "").await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()
}

#[tokio::test]
async fn bad_tenants_statuses_and_filters_name_their_field() {
    let db = TestDatabase::start().await;
    let server = TestServer::start_with_http(db.store().await, config()).await;
    let mut client = server.client().await;
    let t = day_start(1) + 60;
    for (bad, field) in [
        (
            counted(Method::Get, "/a", "acme", Some(99), t, 1),
            "entries[1].status_code",
        ),
        (
            counted(Method::Grpc, "/s.S/M", "acme", Some(200), t, 1),
            "entries[1].status_code",
        ),
        (
            counted(Method::Get, "/a", &"t".repeat(257), None, t, 1),
            "entries[1].tenant",
        ),
        (
            counted(Method::Get, "/a", "a\nb", None, t, 1),
            "entries[1].tenant",
        ),
    ] {
        let status = client
            .add_batch(AddBatchRequest {
                producer_id: "bad".into(),
                sequence: 1,
                entries: vec![counted(Method::Get, "/ok", "acme", Some(200), t, 1), bad],
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{field}");
        assert!(status.message().contains(field), "{}", status.message());
    }
    // Nothing of a refused batch is counted; its sequence stays unused.
    assert_eq!(db.bigint("SELECT count(*) FROM count.requests").await, 0);
    let status = client
        .get_totals(GetTotalsRequest {
            start_time: Some(count_service::query::timestamp(at(t - 60))),
            end_time: Some(count_service::query::timestamp(at(t + 60))),
            statuses: vec!["2xx".into(), "teapot".into()],
            ..GetTotalsRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("statuses[1]: 'teapot'"),
        "{}",
        status.message()
    );
    // Over HTTP, a count's status and a totals' group name their parameter.
    let address = server.http.unwrap();
    let post = http_post(
        address,
        r#"{"entries": [{"method": "GET", "path": "/a", "status_code": "ok"}]}"#,
    )
    .await;
    assert_eq!(post.status, 400, "{}", post.body);
    assert_eq!(
        post.json()["error"]["fields"][0]["field"],
        "entries[0].status_code"
    );
    let get = http(address, "GET", "/api/v1/totals?start_time=2026-01-01T00:00:00Z&end_time=2026-01-02T00:00:00Z&group_by=tenant,colour", &[], "").await;
    assert_eq!(get.status, 400, "{}", get.body);
    assert_eq!(get.json()["error"]["fields"][0]["field"], "group_by");
    server.stop().await;
}

async fn http_post(address: std::net::SocketAddr, body: &str) -> HttpResponse {
    http(address, "POST", "/api/v1/counts", &[], body).await
}

#[tokio::test]
async fn add_series_refuses_the_same_way_on_both_backends_and_stores_unknown_as_minus_one() {
    let db = TestDatabase::start().await;
    let _store = db.store().await;
    let sql = db.sql().await;
    let call = |arguments: &str| {
        format!("SELECT count.add_series(NULL, NULL, {arguments}, ARRAY[now()], ARRAY[1::bigint])")
    };
    for (arguments, code, message) in [
        (
            "ARRAY['GET'], ARRAY['/a'], ARRAY['t'], ARRAY[600]",
            "22023",
            "count.add_series: status_codes[1] must be an HTTP status code (100-599), got 600",
        ),
        (
            "ARRAY['GRPC'], ARRAY['/s.S/M'], ARRAY['t'], ARRAY[17]",
            "22023",
            "count.add_series: status_codes[1] must be a gRPC status code (0-16) for GRPC, got 17",
        ),
        (
            "ARRAY['GET'], ARRAY['/a'], ARRAY[NULL::text], ARRAY[200]",
            "22004",
            "count.add_series: tenants[1] must not be NULL",
        ),
        (
            "ARRAY['GET'], ARRAY['/a'], NULL::text[], ARRAY[200]",
            "22004",
            "count.add_series: tenants and status_codes must not be NULL",
        ),
        (
            "ARRAY['GET'], ARRAY['/a'], ARRAY['t', 'u'], ARRAY[200]",
            "22023",
            "count.add_series: tenants and status_codes must have the length of methods, 1, got 2, 1",
        ),
    ] {
        let error = sql.simple_query(&call(arguments)).await.unwrap_err();
        let db_error = error.as_db_error().unwrap();
        assert_eq!(db_error.code().code(), code, "{arguments}");
        assert_eq!(db_error.message(), message, "{arguments}");
    }
    let two = |methods: &str| {
        format!(
            "SELECT count.add_series(NULL, NULL, ARRAY[{methods}], ARRAY['/a', '/a'], ARRAY['t', 't'],
                                     ARRAY[NULL, 0]::int[], ARRAY[now(), now()], ARRAY[1, 2]::bigint[])"
        )
    };
    let refused = sql.batch_execute(&two("'GET', 'GET'")).await.unwrap_err();
    assert_eq!(
        refused.as_db_error().unwrap().message(),
        "count.add_series: status_codes[2] must be an HTTP status code (100-599), got 0"
    );
    sql.batch_execute(&two("'GET', 'GRPC'")).await.unwrap();
    assert_eq!(
        db.bigint("SELECT sum(status_code)::bigint FROM count.methods WHERE tenant = 't'")
            .await,
        -1,
        "unknown is stored as -1, gRPC's OK as 0"
    );
}

/// Series one connection created, met by another: the extension's cache
/// (per backend) misses them. After misses that were new series it inserts
/// before it looks up; after misses that existed, it looks up first
/// (extension/src/batch_write.rs). Either order must give every row its one
/// series, with new and existing series in the same call.
#[tokio::test]
async fn series_another_connection_created_count_once_whichever_is_tried_first() {
    let db = TestDatabase::start().await;
    let _store = db.store().await;
    let (a, b) = (db.sql().await, db.sql().await);
    let add = |tenants: &[&str]| {
        let n = tenants.len();
        let tenants: Vec<String> = tenants.iter().map(|t| format!("'{t}'")).collect();
        format!(
            "SELECT count.add_series(NULL, NULL, array_fill('GET'::text, ARRAY[{n}]),
                    array_fill('/made-elsewhere'::text, ARRAY[{n}]), ARRAY[{}],
                    array_fill(200, ARRAY[{n}]), array_fill(now(), ARRAY[{n}]),
                    array_fill(3::bigint, ARRAY[{n}]))",
            tenants.join(", ")
        )
    };
    // a's cache is warm and its last misses were new.
    a.batch_execute(&add(&["a0"])).await.unwrap();
    b.batch_execute(&add(&["b1", "b2", "b3", "b4", "b5"]))
        .await
        .unwrap();
    // Every miss exists: inserted first, they conflict.
    a.batch_execute(&add(&["b1", "b2", "b3", "b4", "b5"]))
        .await
        .unwrap();
    b.batch_execute(&add(&["b6"])).await.unwrap();
    // Looked up first now: one exists, two are new.
    a.batch_execute(&add(&["b6", "a1", "a2"])).await.unwrap();
    // New again, after a call whose misses were mostly new.
    a.batch_execute(&add(&["a3", "b1"])).await.unwrap();
    b.batch_execute(&add(&["b7"])).await.unwrap();
    // Inserted first, one new and one existing: the plain INSERT fails on
    // the existing one, INSERT … ON CONFLICT adds the new one.
    a.batch_execute(&add(&["b7", "a4"])).await.unwrap();
    let stored = db
        .sql()
        .await
        .query(
            "SELECT m.tenant, count(DISTINCT m.id), sum(r.count)::bigint
               FROM count.methods AS m JOIN count.requests AS r ON r.method_id = m.id
              WHERE m.path = '/made-elsewhere' GROUP BY m.tenant ORDER BY m.tenant",
            &[],
        )
        .await
        .unwrap();
    let stored: Vec<(String, i64, i64)> = stored
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    let expected: Vec<(String, i64, i64)> = [
        ("a0", 3),
        ("a1", 3),
        ("a2", 3),
        ("a3", 3),
        ("a4", 3),
        ("b1", 9),
        ("b2", 6),
        ("b3", 6),
        ("b4", 6),
        ("b5", 6),
        ("b6", 6),
        ("b7", 6),
    ]
    .into_iter()
    .map(|(tenant, requests)| (tenant.to_owned(), 1, requests))
    .collect();
    assert_eq!(stored, expected);
    assert_eq!(
        db.bigint("SELECT count(*) FROM count.methods WHERE path = '/made-elsewhere'")
            .await,
        12
    );
}

#[tokio::test]
async fn a_tenant_past_its_own_cap_is_refused_and_the_others_keep_counting() {
    let db = TestDatabase::start().await;
    let server = TestServer::start_with(
        db.store().await,
        ServerConfig {
            ingest: count_service::ingest::IngestConfig {
                max_series_per_tenant: Some(2),
                ..count_service::ingest::IngestConfig::default()
            },
            ..config()
        },
    )
    .await;
    let mut client = server.client().await;
    let t = day_start(0);
    let batch = |sequence, entries| AddBatchRequest {
        producer_id: "cap".into(),
        sequence,
        entries,
    };
    client
        .add_batch(batch(
            1,
            vec![
                counted(Method::Get, "/a", "big", Some(200), t, 1),
                counted(Method::Get, "/a", "big", Some(500), t, 1),
            ],
        ))
        .await
        .unwrap();
    let status = client
        .add_batch(batch(
            2,
            vec![
                counted(Method::Get, "/a", "small", Some(200), t, 1),
                counted(Method::Get, "/b", "big", Some(200), t, 1),
            ],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(
        status.message().contains("entries[1]") && status.message().contains("\"big\""),
        "{}",
        status.message()
    );
    client
        .add_batch(batch(
            2,
            vec![
                counted(Method::Get, "/a", "small", Some(200), t, 1),
                counted(Method::Get, "/a", "big", Some(500), t, 5),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(
        db.bigint("SELECT sum(count)::bigint FROM count.requests")
            .await,
        8
    );
    server.stop().await;
}

const BOUND: &str = "acme-token-0123456789";
const UNBOUND: &str = "both-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

#[tokio::test]
async fn a_tenant_bound_token_writes_and_reads_its_tenant_only_in_every_call() {
    use count_proto::v1::{CountDailyTotalsRequest, ListDailyTotalsRequest};
    let db = TestDatabase::start().await;
    let tokens = count_service::auth::Tokens::parse(
        &format!("ingest,read@acme {BOUND}\ningest,read {UNBOUND}\nadmin {ADMIN}"),
        "test",
    )
    .unwrap();
    let server = TestServer::start_with_http(
        db.store().await,
        ServerConfig {
            tokens: Some(tokens),
            ..config()
        },
    )
    .await;
    let mut unbound = crate::security::client_with(&server, Some(UNBOUND)).await;
    let mut bound = crate::security::client_with(&server, Some(BOUND)).await;
    let day = day_start(1);
    let t = day + 60;
    let batch = |producer: &str, sequence, entries| AddBatchRequest {
        producer_id: producer.into(),
        sequence,
        entries,
    };
    // Every tenant's counts, by an unbound token; its producer "p" is at 10.
    unbound
        .add_batch(batch(
            "p",
            10,
            vec![
                counted(Method::Get, "/a", "acme", Some(200), t, 10),
                counted(Method::Get, "/a", "beta", Some(200), t, 20),
                counted(Method::Get, "/a", "beta", Some(500), t, 5),
                entry(Method::Get, "/a", t, 1),
            ],
        ))
        .await
        .unwrap();
    // The bound token: an empty tenant is its own; its producer "p" is not
    // the unbound one's (sequence 1 is no duplicate).
    let written = bound
        .add_batch(batch(
            "p",
            1,
            vec![
                entry(Method::Get, "/a", t, 3),
                counted(Method::Get, "/a", "acme", Some(503), t, 4),
            ],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((written.accepted, written.duplicate), (7, false));
    // Another tenant refuses the whole batch, naming the entry.
    let status = bound
        .add_batch(batch(
            "p",
            2,
            vec![
                entry(Method::Get, "/a", t, 100),
                counted(Method::Get, "/a", "beta", None, t, 100),
            ],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        status.message(),
        "entries[1].tenant: this token writes tenant \"acme\" only"
    );
    // In a stream, the entry is rejected and the others count.
    let streamed = bound
        .add(tokio_stream::iter(vec![
            entry(Method::Get, "/a", t, 1),
            counted(Method::Get, "/a", "beta", None, t, 1),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((streamed.accepted, streamed.rejected), (1, 1));
    assert_eq!(
        streamed.rejections,
        vec!["message 2: tenant: this token writes tenant \"acme\" only".to_owned()]
    );
    let of = |tenant: &str| {
        format!(
            "SELECT coalesce(sum(r.count), 0)::bigint FROM count.requests AS r
               JOIN count.methods AS m ON m.id = r.method_id WHERE m.tenant = '{tenant}'"
        )
    };
    assert_eq!(db.bigint(&of("acme")).await, 18);
    assert_eq!(db.bigint(&of("beta")).await, 25);
    assert_eq!(db.bigint(&of("")).await, 1);

    // Reads: restricted to acme whatever the filters and groups, refused
    // when they name another tenant.
    let range = GetTotalsRequest {
        start_time: Some(count_service::query::timestamp(at(day))),
        end_time: Some(count_service::query::timestamp(at(day + 86_400))),
        ..GetTotalsRequest::default()
    };
    for (group_by, statuses, expected) in [
        (vec![], vec![], vec![("", 18)]),
        (vec![Dimension::Tenant], vec![], vec![("acme", 18)]),
        (vec![Dimension::Tenant], vec!["5xx"], vec![("acme", 4)]),
        (vec![Dimension::Tenant], vec!["unknown"], vec![("acme", 4)]),
        (vec![Dimension::Endpoint], vec!["2xx"], vec![("", 10)]),
    ] {
        let request = GetTotalsRequest {
            group_by: group_by.iter().map(|d| *d as i32).collect(),
            statuses: statuses.iter().map(|s| s.to_string()).collect(),
            ..range.clone()
        };
        for tenants in [vec![], vec!["acme"]] {
            let rows = bound
                .get_totals(GetTotalsRequest {
                    tenants: tenants.iter().map(|t| t.to_string()).collect(),
                    ..request.clone()
                })
                .await
                .unwrap()
                .into_inner()
                .totals;
            let rows: Vec<(&str, i64)> =
                rows.iter().map(|r| (r.tenant.as_str(), r.total)).collect();
            assert_eq!(rows, expected, "{group_by:?} {statuses:?} {tenants:?}");
        }
        for tenants in [vec!["beta"], vec!["acme", "beta"], vec![""]] {
            let status = bound
                .get_totals(GetTotalsRequest {
                    tenants: tenants.iter().map(|t| t.to_string()).collect(),
                    ..request.clone()
                })
                .await
                .unwrap_err();
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{tenants:?}");
            assert!(
                status.message().starts_with("tenants["),
                "{}",
                status.message()
            );
        }
    }
    // The unbound token sees everyone.
    let everyone = unbound
        .get_totals(range.clone())
        .await
        .unwrap()
        .into_inner()
        .totals;
    assert_eq!(everyone[0].total, 44);
    // The old reads sum over acme only.
    let daily = bound
        .list_daily_totals(ListDailyTotalsRequest {
            start_date: date(day_of(day)),
            end_date: date(day_of(day)),
        })
        .await
        .unwrap()
        .into_inner()
        .method_counts;
    assert_eq!(daily.iter().map(|c| c.count).collect::<Vec<_>>(), vec![18]);
    let period = bound
        .get_period_totals(GetPeriodTotalsRequest {
            period: date(day_of(day)),
        })
        .await
        .unwrap()
        .into_inner()
        .method_counts;
    assert_eq!(period.iter().map(|c| c.count).collect::<Vec<_>>(), vec![18]);
    // A rollup is an admin's: every tenant's data.
    let status = bound
        .count_daily_totals(CountDailyTotalsRequest {
            date: date(day_of(day)),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);

    // HTTP: the same rules, by bearer token.
    let address = server.http.unwrap();
    let bearer = format!("Authorization: Bearer {BOUND}");
    let target = format!(
        "/api/v1/totals?start_time={}&end_time={}&group_by=tenant",
        count_service::export::rfc3339(at(day)),
        count_service::export::rfc3339(at(day + 86_400)),
    );
    let read = http(address, "GET", &target, &[&bearer], "").await;
    assert_eq!(read.status, 200, "{}", read.body);
    let rows = read.json()["totals"].clone();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["tenant"], "acme");
    assert_eq!(rows[0]["total"], 18);
    let widened = http(
        address,
        "GET",
        &format!("{target}&tenants=beta"),
        &[&bearer],
        "",
    )
    .await;
    assert_eq!(widened.status, 403, "{}", widened.body);
    assert_eq!(widened.json()["error"]["fields"][0]["field"], "tenants[0]");
    let post = http(
        address,
        "POST",
        "/api/v1/counts",
        &[&bearer, "Content-Type: application/json"],
        r#"{"entries": [{"method": "GET", "path": "/a", "tenant": "beta"}]}"#,
    )
    .await;
    assert_eq!(post.status, 403, "{}", post.body);
    assert_eq!(
        post.json()["error"]["fields"][0]["field"],
        "entries[0].tenant"
    );
    assert_eq!(db.bigint(&of("beta")).await, 25);
    server.stop().await;
}

/// Reads neither grouped nor filtered by endpoint take their hours, days
/// and months from the tenant tiers (migration V6): every such read must
/// answer exactly as the series tiers do, whichever time zone, granularity,
/// filter, grouping or top N, with raw rows not rolled up yet, and with the
/// tenant tiers complete only from a day in the middle of the data (as after
/// an upgrade). Checked against the same reads with the tenant tiers turned
/// off (their complete_from at infinity, in a transaction rolled back), and
/// filtered by the path prefix '' (every path, so by endpoint: the series
/// tiers' way alone).
#[tokio::test]
async fn the_tenant_tiers_answer_every_read_as_the_series_tiers_do() {
    let db = TestDatabase::start().await;
    let store = db.store().await;
    let sql = db.sql().await;
    let first = day_start(6);
    // Complete from four days ago: the two days before come from the
    // series tiers, whatever the read.
    sql.execute(
        "UPDATE count.tenant_tiers SET complete_from = $1",
        &[&at(day_start(4))],
    )
    .await
    .unwrap();
    let mut random = Random(0x7e4a47);
    let tenants = ["", "acme", "beta", "gamma"];
    let statuses = [None, Some(200), Some(404), Some(503), Some(201)];
    let mut sent = 0;
    for round in 0..4 {
        let rows = 400;
        let mut batch = FlushBatch::default();
        for _ in 0..rows {
            let grpc = random.below(5) == 0;
            batch.methods.push(if grpc { "GRPC" } else { "GET" });
            let path = random.below(6);
            batch.paths.push(if grpc {
                format!("/s.S/M{path}")
            } else {
                format!("/p{path}")
            });
            batch
                .tenants
                .push(tenants[random.below(tenants.len() as u64) as usize].to_owned());
            batch.status_codes.push(if grpc {
                Some(random.below(3) as i32)
            } else {
                statuses[random.below(statuses.len() as u64) as usize]
            });
            // Any minute of the last six days, past ones and today's.
            let minute = random.below(6 * 1_440) as i64;
            batch.timestamps.push(at(first + 60 * minute));
            let count = 1 + random.below(20) as i64;
            batch.counts.push(count);
            batch.requests += count;
        }
        sent += batch.requests;
        store.add_batch(None, &batch).await.unwrap();
        // The last round stays raw.
        if round < 3 {
            store.rollup_due().await.unwrap();
        }
    }
    assert!(
        db.bigint("SELECT count(*) FROM count.daily_tenant_totals")
            .await
            > 0
            && db.bigint("SELECT count(*) FROM count.requests").await > 0,
        "both tiers and raw rows are read"
    );
    let end = day_start(-1);
    let reads = [
        ("day", "UTC", "{tenant}", "NULL", "NULL", "NULL"),
        ("day", "Asia/Kathmandu", "{status}", "NULL", "NULL", "NULL"),
        (
            "hour",
            "Australia/Lord_Howe",
            "{status_class}",
            "{acme}",
            "NULL",
            "NULL",
        ),
        (
            "month",
            "America/New_York",
            "{tenant,status}",
            "NULL",
            "{5xx,grpc_error,404}",
            "NULL",
        ),
        (
            "week",
            "Asia/Kolkata",
            "{}",
            "{\"\",beta}",
            "{unknown,2xx}",
            "NULL",
        ),
        ("total", "UTC", "{tenant,status_class}", "NULL", "NULL", "2"),
        ("minute", "UTC", "{tenant}", "{gamma}", "NULL", "NULL"),
        ("year", "Asia/Kathmandu", "{}", "NULL", "NULL", "NULL"),
    ];
    // How a read is answered: the tenant tiers where complete, the series
    // tiers with the tenant path's merge, the series tiers alone.
    let read = |how: usize, read: (&str, &str, &str, &str, &str, &str)| {
        let (granularity, zone, group_by, tenants, statuses, top) = read;
        let start = if granularity == "minute" {
            day_start(1)
        } else {
            first - 86_400
        };
        format!(
            "BEGIN;
             UPDATE count.tenant_tiers SET complete_from = {};
             SELECT count(*), coalesce(sum(total), 0),
                    string_agg(concat_ws('|', bucket, tenant, status_code, status_class, total, live), ', ')
               FROM count.series_totals(to_timestamp({start}), to_timestamp({end}), '{granularity}', '{zone}',
                                        NULL, NULL, {}, {}, {}, '{group_by}', {top});
             ROLLBACK;",
            if how == 1 { "'infinity'" } else { "complete_from" },
            if how == 2 { "''" } else { "NULL" },
            if tenants == "NULL" { "NULL".to_owned() } else { format!("'{tenants}'") },
            if statuses == "NULL" { "NULL".to_owned() } else { format!("'{statuses}'") },
        )
    };
    for case in reads {
        let mut answers = Vec::new();
        for how in 0..3 {
            let messages = sql.simple_query(&read(how, case)).await.unwrap();
            let row = messages
                .iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
                    _ => None,
                })
                .expect("a row");
            answers.push((
                row.get(0).unwrap().parse::<i64>().unwrap(),
                row.get(1).unwrap().parse::<i64>().unwrap(),
                row.get(2).unwrap_or("").to_owned(),
            ));
        }
        assert_eq!(answers[0], answers[1], "{case:?}");
        assert_eq!(answers[0], answers[2], "{case:?}");
        assert!(answers[0].0 > 0, "{case:?} read nothing");
        if case.3 == "NULL" && case.4 == "NULL" && case.5 == "NULL" && case.0 != "minute" {
            assert_eq!(answers[0].1, sent, "{case:?}");
        }
    }
    // A status filter the reads do not know is refused, naming it.
    let error = sql
        .simple_query(&format!(
            "SELECT * FROM count.series_totals(to_timestamp({first}), to_timestamp({end}), 'day', 'UTC',
                                               NULL, NULL, NULL, NULL, '{{2xx,teapot}}')"
        ))
        .await
        .unwrap_err();
    let error = error.as_db_error().unwrap();
    assert_eq!(
        (error.code().code(), error.message()),
        (
            "22023",
            "count.totals: only_statuses: 'teapot' is neither a status code, a class (1xx to 5xx, \
             grpc_ok, grpc_error) nor unknown"
        )
    );
}

/// Rows come in byte order of their group (method, path, tenant, status
/// code with unknown first, class) within each bucket, whatever the
/// grouping: the reads sort by each group's place, computed once, and it
/// must agree with the text. Upper case before lower, a longer path after
/// its prefix, non-ASCII last, the empty tenant first.
#[tokio::test]
async fn rows_come_in_byte_order_whatever_the_grouping() {
    let db = TestDatabase::start().await;
    let store = db.store().await;
    let sql = db.sql().await;
    let day = day_start(1);
    let mut batch = FlushBatch::default();
    let paths = ["/a", "/B", "/a/b", "/é", "/Z"];
    let tenants = ["", "a", "A", "b"];
    let statuses = [None, Some(404), Some(200), Some(503)];
    for (i, path) in paths.iter().enumerate() {
        for (j, tenant) in tenants.iter().enumerate() {
            for (k, status) in statuses.iter().enumerate() {
                for (method, status) in [
                    ("GET", *status),
                    ("GRPC", status.map(|_| (k % 2) as i32 * 13)),
                ] {
                    batch.methods.push(method);
                    batch.paths.push((*path).to_owned());
                    batch.tenants.push((*tenant).to_owned());
                    batch.status_codes.push(status);
                    batch
                        .timestamps
                        .push(at(day + 3_600 * ((i + j + k) % 3) as i64));
                    batch.counts.push(1 + (i * 7 + j * 3 + k) as i64);
                    batch.requests += 1 + (i * 7 + j * 3 + k) as i64;
                }
            }
        }
    }
    store.add_batch(None, &batch).await.unwrap();
    store.rollup_due().await.unwrap();
    for group_by in [
        "{endpoint,tenant,status}",
        "{tenant,status_class}",
        "{endpoint}",
        "{status}",
    ] {
        let rows = sql
            .query(
                &format!(
                    "SELECT extract(epoch FROM bucket)::bigint, coalesce(method, ''), coalesce(path, ''),
                            coalesce(tenant, ''), coalesce(status_code, -1), coalesce(status_class, '')
                       FROM count.series_totals(to_timestamp({}), to_timestamp({}), 'hour', 'UTC', NULL, NULL,
                                                NULL, NULL, NULL, '{group_by}')",
                    day,
                    day + 86_400
                ),
                &[],
            )
            .await
            .unwrap();
        // (bucket, method, path, tenant, status code, class), text as bytes.
        type Key = (i64, Vec<u8>, Vec<u8>, Vec<u8>, i32, Vec<u8>);
        let keys: Vec<Key> = rows
            .iter()
            .map(|r| {
                let text = |i| r.get::<_, String>(i).into_bytes();
                (r.get(0), text(1), text(2), text(3), r.get(4), text(5))
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert!(keys.len() > 3, "{group_by}: {} rows", keys.len());
        assert_eq!(keys, sorted, "{group_by}");
    }
}
