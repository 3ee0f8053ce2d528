//! Upgrades from release 0.1.0: a database it wrote, on the run's backend,
//! keeps every count through migration V3, the new SQL API and (for the
//! extension) `ALTER EXTENSION count UPDATE`, run by the new server.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use count_service::db::store::{Backend, EXTENSION_VERSION, FlushBatch, Store};

use crate::harness::*;

mod release {
    refinery::embed_migrations!("../migrations");
}

/// Release 0.1.0's commit: the fallback's SQL API of that release is read
/// from git (the extension's install script is kept in extension/released/).
const RELEASE: &str = "2b2170f7f66fa67dae6f5a2d5e9cc752b53b25d9";

fn released(path: &str) -> String {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(["show", &format!("{RELEASE}:{path}")])
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git show {RELEASE}:{path} (this test needs the repository's history, not a shallow clone): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[tokio::test]
async fn a_database_written_by_release_0_1_0_upgrades_with_every_count_kept() {
    let backend = test_backend();
    // No extension yet: release 0.1.0's is created below.
    let db = TestDatabase::start_with(Backend::Sql, Vec::new()).await;
    let mut sql = db.sql().await;
    release::migrations::runner()
        .set_target(refinery::Target::Version(2))
        .run_async(&mut sql)
        .await
        .unwrap();
    match backend {
        Backend::Extension => sql
            .batch_execute("CREATE EXTENSION count VERSION '0.1.0'")
            .await
            .unwrap(),
        Backend::Sql => {
            for file in ["sql/add_batch.sql", "sql/totals.sql", "sql/rollup.sql"] {
                sql.batch_execute(&released(file)).await.unwrap();
            }
        }
    }
    sql.batch_execute(&released("sql/views.sql")).await.unwrap();

    // Release 0.1.0 at work: batches over 40 days, some days rolled up by
    // day, complete days by rollup_due, late data for a rolled-up day, and
    // today's rows raw.
    let today = day_start(0);
    let mut expected = BTreeMap::<i64, i64>::new();
    let mut sequence = 0i64;
    let mut add = |rows: &[(i64, i64)]| {
        sequence += 1;
        for (second, count) in rows {
            *expected
                .entry(second.div_euclid(86_400) * 86_400)
                .or_default() += count;
        }
        (
            sequence,
            rows.iter().map(|r| at(r.0)).collect::<Vec<_>>(),
            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        )
    };
    let write = |(sequence, times, counts): (i64, Vec<DateTime<Utc>>, Vec<i64>)| {
        let sql = &sql;
        async move {
            let n = times.len();
            sql.execute(
                "SELECT count.add_batch('release-0.1.0', $1, array_fill('GET'::text, ARRAY[$4::int]),
                        array_fill('/old'::text, ARRAY[$4::int]), $2, $3)",
                &[&sequence, &times, &counts, &(n as i32)],
            )
            .await
            .unwrap();
        }
    };
    write(add(&[
        (today - 40 * 86_400 + 3_600, 1),
        (today - 40 * 86_400 + 7_000, 2),
    ]))
    .await;
    write(add(&[
        (today - 10 * 86_400 + 20_000, 4),
        (today - 3 * 86_400 + 600, 8),
    ]))
    .await;
    write(add(&[(today - 86_400 + 50_000, 16), (today + 60, 32)])).await;
    sql.batch_execute(&format!(
        "SELECT count.rollup('{}'); SELECT count.rollup('{}'); SELECT count.rollup_due();",
        day_of(today - 40 * 86_400),
        day_of(today - 10 * 86_400)
    ))
    .await
    .unwrap();
    write(add(&[
        (today - 10 * 86_400 + 30_000, 64),
        (today + 120, 128),
    ]))
    .await;
    assert_eq!(
        db.bigint("SELECT coalesce(sum(total), 0)::bigint FROM count.daily_method_totals")
            .await,
        1 + 2 + 4 + 8 + 16,
        "release 0.1.0 rolled up the complete days"
    );

    // A server that may not set the schema up (--no-migrate) refuses an
    // old extension, saying what to run.
    if backend == Backend::Extension {
        let error = Store::open_existing(db.config(), 1).await.unwrap_err();
        assert!(
            error.to_string().contains(&format!(
                "the count extension is version 0.1.0; this server needs {EXTENSION_VERSION}: run `count migrate`"
            )),
            "{error}"
        );
    }
    // The new server sets itself up over it.
    let store: Store = Store::open(db.config(), 4)
        .await
        .expect("the upgrade succeeds");
    assert_eq!(store.backend(), backend);
    if backend == Backend::Extension {
        let version: String = sql
            .query_one(
                "SELECT extversion FROM pg_extension WHERE extname = 'count'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(version, EXTENSION_VERSION);
    }
    let days = || {
        let store = store.clone();
        async move {
            store
                .daily_totals(day_of(today - 41 * 86_400), day_of(today), None)
                .await
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t.day
                            .unwrap()
                            .and_hms_opt(0, 0, 0)
                            .unwrap()
                            .and_utc()
                            .timestamp(),
                        t.total,
                    )
                })
                .collect::<BTreeMap<_, _>>()
        }
    };
    // Before and after the new rollups: every count once.
    assert_eq!(days().await, expected);
    store.rollup_due().await.unwrap();
    assert_eq!(days().await, expected);
    assert_eq!(db.bigint("SELECT count(*) FROM count.requests").await, 0);
    // Today was never rolled up by 0.1.0: its hours are in the new tiers.
    let hours = store
        .totals(&query(at(today), at(today + 86_400), "hour", "UTC"))
        .await
        .unwrap();
    assert_eq!(
        hours
            .iter()
            .map(|r| (r.bucket.timestamp(), r.total))
            .collect::<Vec<_>>(),
        vec![(today, 32 + 128)]
    );
    // The days 0.1.0 rolled up have no hours: a read that needs them says so.
    let error = store
        .totals(&query(
            at(today - 10 * 86_400),
            at(today - 9 * 86_400),
            "day",
            "Asia/Kathmandu",
        ))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("hourly totals are kept from"),
        "{error}"
    );
    // The producer's sequence survived: a replay is a duplicate.
    let replay = FlushBatch::of_endpoints(
        vec!["GET"],
        vec!["/old".to_owned()],
        vec![at(today)],
        vec![1],
    );
    assert_eq!(
        store
            .add_batch(Some(("release-0.1.0", 4)), &replay)
            .await
            .unwrap(),
        None
    );
}
