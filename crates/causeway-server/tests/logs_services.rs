//! Request logs in Postgres (`logs_store.type: "postgres"`), over real HTTP: entries from
//! live traffic, filters, content search, stats, delete, and persistence across a restart.
//!
//! Needs a Postgres server: `CAUSEWAY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test
//! cargo test -p causeway-server --test logs_services -- --ignored services` (`.ci/run` does
//! this). Each run works in a schema of its own, dropped at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Harness, json_of, logs_when, provider_with_key_ids, send};
use mock_provider::{MockConfig, MockServer};
use reqwest::Method;
use serde_json::json;

fn postgres_url() -> String {
    std::env::var("CAUSEWAY_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "CAUSEWAY_TEST_POSTGRES_URL is not set: point it at a Postgres server, e.g. \
             CAUSEWAY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
        )
    })
}

#[tokio::test]
#[ignore = "needs Postgres: run with --ignored services and CAUSEWAY_TEST_POSTGRES_URL"]
async fn services_postgres_logs_store_end_to_end() {
    let url = postgres_url();
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let schema = format!("cw_gw_logs_{}", fastrand::u64(..));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let store_url = format!("{url}{sep}options=-c%20search_path%3D{schema}");

    let good = MockServer::start(MockConfig::default()).await.unwrap();
    let bad = MockServer::start(MockConfig {
        failure_rate: 1.0,
        failure_status: 500,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let config = json!({
        "providers": {
            "openai": provider_with_key_ids(&good.base_url(), &[("k-open", "sk-open-secret-1111111", 1.0)]),
            "mistral": provider_with_key_ids(&bad.base_url(), &[("k-mis", "sk-mis-secret-2222222", 1.0)]),
        },
        "logs_store": {"type": "postgres", "config": {"url": store_url}, "writer": {"batch_interval": "10ms"}},
    });
    let h = Harness::start(Some(config)).await;
    let (_, health) = json_of(h.get("/health").await).await;
    assert_eq!(health["components"]["logs_store"], "ok", "{health}");

    for (i, prompt) in ["the quick brown fox", "tell me about zebras", "hello"]
        .iter()
        .enumerate()
    {
        let r = send(
            &h,
            Method::POST,
            "/v1/chat/completions",
            Some(&json!({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": prompt}]})),
            &[("x-request-id", &format!("pg-ok-{i}"))],
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    let r = send(
        &h,
        Method::POST,
        "/v1/chat/completions",
        Some(&json!({"model": "mistral/small", "messages": [{"role": "user", "content": "hi"}]})),
        &[("x-request-id", "pg-err")],
    )
    .await;
    assert_eq!(r.status(), 500);

    let all = logs_when(&h, "", 4).await;
    assert_eq!(all["stats"]["success_count"], 3);
    assert_eq!(all["stats"]["error_count"], 1);
    logs_when(&h, "providers=mistral&status=error", 1).await;
    let z = logs_when(&h, "content_search=zebra", 1).await;
    assert_eq!(z["logs"][0]["id"], "pg-ok-1");
    let (s, log) = json_of(h.get("/api/logs/pg-ok-0").await).await;
    assert_eq!(s, 200);
    assert_eq!(log["key_id"], "k-open");
    assert_eq!(log["output"], "Hello from mock-provider");
    assert!(!log.to_string().contains("secret"), "{log}");
    let (s, st) = json_of(h.get("/api/logs/stats?providers=openai").await).await;
    assert_eq!((s, st["total_requests"].clone()), (200, json!(3)));
    let (s, v) = json_of(h.delete("/api/logs?status=error").await).await;
    assert_eq!((s, v["deleted"].clone()), (200, json!(1)));

    // Survives a restart (and the queue is drained at shutdown).
    let h = h.restart().await;
    logs_when(&h, "", 3).await;
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {schema}.logs"
    )))
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(rows, 3, "the rows live in the configured schema");
    h.gw.shutdown().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs Postgres: run with --ignored services and CAUSEWAY_TEST_POSTGRES_URL"]
async fn services_unreachable_postgres_fails_start_up_without_the_password() {
    // Nothing listens on port 1: start-up must fail fast, naming the host, not the password.
    let _ = postgres_url();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        json!({"logs_store": {"type": "postgres", "config": {
            "host": "127.0.0.1", "port": 1, "user": "u", "password": "hunter2-secret", "db_name": "x"
        }}})
        .to_string(),
    )
    .unwrap();
    let err = match causeway_server::Gateway::start(common::options(dir.path().to_path_buf())).await
    {
        Ok(_) => panic!("must not start"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("127.0.0.1"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}
