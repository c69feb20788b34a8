//! LogStore on Postgres: the same behavioural checks as `tests/store.rs` (shared in
//! `common/mod.rs`), plus what only a shared server has: replicas migrating and writing
//! at once, and the batched writer.
//!
//! These need a server, so they are `#[ignore]`d and named `services_*`; run them with
//! `CAUSEWAY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!  cargo test -p causeway-logstore -- --ignored services`.
//! Each test works in a fresh schema (`cw_test_<pid>_<nanos>_<n>`, via `search_path`),
//! dropped at the end even when the test fails, so tests run in parallel and leave
//! nothing behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use causeway_logstore::{
    LogEntry, LogFilter, LogStore, LogStoreError, LogWriter, Page, PgConnectOptions, PgPoolConfig,
    WriterConfig,
};
use sqlx::{Connection, PgConnection};

const URL_VAR: &str = "CAUSEWAY_TEST_POSTGRES_URL";

fn url() -> String {
    match std::env::var(URL_VAR) {
        Ok(u) if !u.trim().is_empty() => u,
        _ => panic!(
            "{URL_VAR} is not set: these tests need a Postgres server. Set it to a database \
             the tests may create schemas in, e.g. \
             `{URL_VAR}=postgres://postgres@127.0.0.1:5432/test cargo test -p causeway-logstore -- --ignored services`"
        ),
    }
}

fn unique_schema() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "cw_test_{}_{}_{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Connection options that put every table in `schema`.
fn options_for(schema: &str) -> PgConnectOptions {
    PgConnectOptions::from_str(&url())
        .unwrap()
        .options([("search_path", schema)])
}

async fn open_in(schema: &str) -> LogStore {
    LogStore::open_postgres_with(options_for(schema), PgPoolConfig::default())
        .await
        .unwrap()
}

/// Runs `test` with a fresh, empty schema and drops the schema afterwards (a panic in
/// the test is re-raised after the cleanup).
async fn in_fresh_schema<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let url = url();
    let schema = unique_schema();
    let mut admin = PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{URL_VAR}: cannot connect: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let outcome = tokio::spawn(test(schema.clone())).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .unwrap();
    if let Err(e) = outcome {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("test task failed: {e}");
    }
}

macro_rules! postgres_tests {
    ($($check:ident),* $(,)?) => {
        mod services_postgres {
            use super::*;
            $(
                #[tokio::test]
                #[ignore = "needs Postgres: set CAUSEWAY_TEST_POSTGRES_URL, run with --ignored services"]
                async fn $check() {
                    in_fresh_schema(|schema| async move {
                        let store = open_in(&schema).await;
                        common::$check(store.clone()).await;
                        store.close().await;
                    })
                    .await;
                }
            )*
        }
    };
}

for_each_check!(postgres_tests);

fn entry(prefix: &str, i: usize) -> LogEntry {
    LogEntry {
        id: format!("{prefix}-{i}"),
        timestamp: common::BASE_TS + i as i64,
        object: "chat_completion".into(),
        route: "/v1/chat/completions".into(),
        provider: Some(
            if i.is_multiple_of(3) {
                "openai"
            } else {
                "groq"
            }
            .into(),
        ),
        status: if i.is_multiple_of(5) {
            "error"
        } else {
            "success"
        }
        .into(),
        status_code: 200,
        latency_ms: 10.0 + (i % 7) as f64,
        prompt_tokens: i as u64 % 11,
        completion_tokens: 3,
        total_tokens: i as u64 % 11 + 3,
        cost: (!i.is_multiple_of(4)).then_some(0.001),
        input: Some(format!("hello number {i}")),
        ..Default::default()
    }
}

/// The running totals (O(1)) against a full aggregate of the rows: a filter that
/// matches everything forces the scan.
async fn assert_totals_match_rows(store: &LogStore) {
    let totals = store.stats(&LogFilter::default()).await.unwrap();
    let scan = store
        .stats(&LogFilter {
            start_time: Some(i64::MIN),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (
            totals.total_requests,
            totals.success_count,
            totals.error_count,
            totals.prompt_tokens,
            totals.completion_tokens,
            totals.total_tokens
        ),
        (
            scan.total_requests,
            scan.success_count,
            scan.error_count,
            scan.prompt_tokens,
            scan.completion_tokens,
            scan.total_tokens
        )
    );
    assert!(common::close(totals.total_cost, scan.total_cost));
    assert!(common::close(
        totals.average_latency_ms,
        scan.average_latency_ms
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Postgres: set CAUSEWAY_TEST_POSTGRES_URL, run with --ignored services"]
async fn services_postgres_replicas_migrate_and_write_at_once() {
    in_fresh_schema(|schema| async move {
        // Four replicas start together on an empty schema: the advisory lock lets one
        // migrate while the others wait, then find the schema applied.
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let schema = schema.clone();
                tokio::spawn(async move { open_in(&schema).await })
            })
            .collect();
        let mut stores = Vec::new();
        for o in opens {
            stores.push(o.await.unwrap());
        }
        // 1,000 old rows for a deleter to remove while the writers run.
        let old: Vec<LogEntry> = (0..1000)
            .map(|i| LogEntry {
                timestamp: common::BASE_TS - 10_000 + i as i64,
                ..entry("old", i)
            })
            .collect();
        assert_eq!(stores[0].insert_batch(&old).await.unwrap(), 1000);
        // Each replica writes 1,500 rows in batches of 100; ids overlap between pairs of
        // replicas (a retried batch landing on another replica), so 3,000 distinct rows.
        let writers: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(r, store)| {
                let store = store.clone();
                tokio::spawn(async move {
                    let prefix = if r % 2 == 0 { "even" } else { "odd" };
                    let mut inserted = 0;
                    for start in (0..1500).step_by(100) {
                        let batch: Vec<LogEntry> =
                            (start..start + 100).map(|i| entry(prefix, i)).collect();
                        inserted += store.insert_batch(&batch).await.unwrap();
                    }
                    inserted
                })
            })
            .collect();
        // Meanwhile a replica deletes the old rows, racing the writers' totals updates.
        let deleter = {
            let store = stores[0].clone();
            tokio::spawn(async move {
                let mut deleted = store
                    .delete(
                        &LogFilter {
                            providers: vec!["openai".into()],
                            end_time: Some(common::BASE_TS - 1),
                            ..Default::default()
                        },
                        false,
                    )
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
                deleted += store.purge_older_than(common::BASE_TS).await.unwrap();
                deleted
            })
        };
        let mut inserted = 0;
        for w in writers {
            inserted += w.await.unwrap();
        }
        let deleted = deleter.await.unwrap();
        assert_eq!(inserted, 3000, "each distinct id inserted exactly once");
        assert_eq!(deleted, 1000);
        let store = &stores[1];
        assert_eq!(store.count().await.unwrap(), 3000);
        assert_totals_match_rows(store).await;
        // Rebuilding from the rows changes nothing: no count was lost.
        let before = store.stats(&LogFilter::default()).await.unwrap();
        store.rebuild_totals().await.unwrap();
        let after = store.stats(&LogFilter::default()).await.unwrap();
        assert_eq!(before.total_requests, after.total_requests);
        assert_eq!(before.total_tokens, after.total_tokens);
        // Concurrent purges on several replicas split the work without double counting.
        let purges: Vec<_> = stores
            .iter()
            .map(|s| {
                let s = s.clone();
                tokio::spawn(async move { s.purge_older_than(common::BASE_TS + 1000).await })
            })
            .collect();
        let mut purged = 0;
        for p in purges {
            purged += p.await.unwrap().unwrap();
        }
        let left = store.count().await.unwrap();
        // Both id sets (even-*, odd-*) have 1,000 rows older than the cutoff.
        assert_eq!(purged, 2000);
        assert_eq!(left, 1000);
        assert_totals_match_rows(store).await;
        for s in &stores {
            s.close().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Postgres: set CAUSEWAY_TEST_POSTGRES_URL, run with --ignored services"]
async fn services_postgres_writer_batches_arrive_and_counts_are_right() {
    in_fresh_schema(|schema| async move {
        // Two replicas, each with its own writer, as two gateway processes would run.
        let a = Arc::new(open_in(&schema).await);
        let b = Arc::new(open_in(&schema).await);
        let config = WriterConfig {
            queue_capacity: 10_000,
            max_batch: 64,
            flush_interval: Duration::from_millis(20),
        };
        let (wa, ha) = LogWriter::spawn(a.clone(), config.clone());
        let (wb, hb) = LogWriter::spawn(b.clone(), config);
        for i in 0..1000 {
            wa.log(entry("a", i));
            wb.log(entry("b", i));
            if i % 250 == 0 {
                tokio::task::yield_now().await;
            }
        }
        // A partial batch goes out on the interval, without flush().
        wa.log(entry("late", 0));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while a.get("late-0").await.unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "interval flush never happened"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        wa.shutdown().await;
        wb.shutdown().await;
        ha.await.unwrap();
        hb.await.unwrap();
        assert_eq!(wa.stats().written, 1001);
        assert_eq!(wb.stats().written, 1000);
        assert_eq!(wa.dropped() + wb.dropped(), 0);
        assert_eq!(a.count().await.unwrap(), 2001);
        assert_eq!(b.count().await.unwrap(), 2001);
        assert_totals_match_rows(&a).await;
        // Newest first, content kept and searchable.
        let p = b
            .query(&LogFilter::default(), &Page::default())
            .await
            .unwrap();
        // a-999 and b-999 share the newest timestamp; which is first depends on which
        // replica committed last.
        let mut newest = common::ids(&p.logs[..2]);
        newest.sort();
        assert_eq!(newest, ["a-999", "b-999"]);
        assert_eq!(p.logs[0].input.as_deref(), Some("hello number 999"));
        let f = LogFilter {
            content_search: Some("NUMB 123".into()),
            ..Default::default()
        };
        assert_eq!(
            a.count_matching(&f).await.unwrap(),
            2,
            "a-123 and b-123 (a prefix of no other number below 1000)"
        );
        a.close().await;
        b.close().await;
    })
    .await;
}

#[tokio::test]
#[ignore = "needs Postgres: set CAUSEWAY_TEST_POSTGRES_URL, run with --ignored services"]
async fn services_postgres_nul_characters_do_not_fail_a_batch() {
    in_fresh_schema(|schema| async move {
        let store = open_in(&schema).await;
        let mut e = entry("nul", 1);
        e.input = Some("before\0after".into());
        e.error_message = Some("x\0y".into());
        assert_eq!(store.insert_batch(&[e, entry("nul", 2)]).await.unwrap(), 2);
        let got = store.get("nul-1").await.unwrap().unwrap();
        assert_eq!(got.input.as_deref(), Some("before\u{fffd}after"));
        assert_eq!(got.error_message.as_deref(), Some("x\u{fffd}y"));
        store.close().await;
    })
    .await;
}

#[tokio::test]
#[ignore = "needs Postgres: set CAUSEWAY_TEST_POSTGRES_URL, run with --ignored services"]
async fn services_postgres_connect_errors_name_the_server_not_the_password() {
    // Nothing listens on port 1; the URL carries a password that must not leak.
    let _ = url();
    let options =
        PgConnectOptions::from_str("postgres://someone:s3cret-pw@127.0.0.1:1/db").unwrap();
    let err = LogStore::open_postgres_with(
        options,
        PgPoolConfig {
            connect_timeout: Duration::from_secs(2),
            ..PgPoolConfig::default()
        },
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LogStoreError::Connect { .. }), "{msg}");
    assert!(msg.contains("someone@127.0.0.1:1/db"), "{msg}");
    assert!(!msg.contains("s3cret"), "{msg}");
    let err = LogStore::open_postgres("postgres://u:s3cret-pw@host:notaport/db")
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("s3cret"), "{err}");
}
