//! Request logs over real HTTP: every inference request (success, upstream error, fallback,
//! stream, client disconnect, Anthropic door) becomes one entry in `logs.db`, readable with
//! `/api/logs` filters, paging, stats and delete; content logging can be turned off globally,
//! per virtual key, per plugin config and per request; a slow or failing logs store never
//! slows or fails requests (its losses are counted); queued entries survive a shutdown.
//!
//! The mock counts whitespace words as tokens and answers "Hello from mock-provider" (3
//! tokens). `openai/gpt-4o` is priced at 1000 USD per 1M input and 2000 USD per 1M output
//! tokens, so a 6-word prompt costs (6 * 1000 + 3 * 2000) / 1e6 = 0.012 USD.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{
    Harness, assert_envelope, create_vk, eventually, json_of, logs_when, provider_with_key_ids,
    send, sse_data,
};
use futures_util::StreamExt;
use mock_provider::{MockConfig, MockServer};
use reqwest::Method;
use serde_json::{Value, json};

const PROMPT: &str = "what is the capital of France";

async fn mock(cfg: MockConfig) -> MockServer {
    MockServer::start(cfg).await.unwrap()
}

/// openai -> `good` (key id `k-open`), mistral -> `bad` (always 500, no retries).
fn config(good: &MockServer, bad: &MockServer, logs_store: Value) -> Value {
    json!({
        "providers": {
            "openai": provider_with_key_ids(&good.base_url(), &[("k-open", "sk-open-secret-1111111", 1.0)]),
            "mistral": provider_with_key_ids(&bad.base_url(), &[("k-mis", "sk-mis-secret-2222222", 1.0)]),
        },
        "logs_store": logs_store,
        "governance": {"pricing_overrides": [
            {"provider": "openai", "model": "gpt-4o", "input": 1000.0, "output": 2000.0}
        ]},
    })
}

fn fast_writer() -> Value {
    json!({"writer": {"batch_interval": "10ms"}})
}

async fn failing_mock() -> MockServer {
    mock(MockConfig {
        failure_rate: 1.0,
        failure_status: 500,
        ..MockConfig::default()
    })
    .await
}

fn chat(model: &str, prompt: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": prompt}]})
}

/// `openai/gpt-4o` asked [`PROMPT`], with extra request headers.
async fn chat_gpt4o(h: &Harness, headers: &[(&str, &str)]) -> reqwest::Response {
    send(
        h,
        Method::POST,
        "/v1/chat/completions",
        Some(&chat("openai/gpt-4o", PROMPT)),
        headers,
    )
    .await
}

/// The only log matching `query`.
async fn one_log(h: &Harness, query: &str) -> Value {
    logs_when(h, query, 1).await["logs"][0].clone()
}

#[tokio::test]
async fn success_error_fallback_and_anthropic_requests_are_logged() {
    let good = mock(MockConfig::default()).await;
    let bad = failing_mock().await;
    let h = Harness::start(Some(config(&good, &bad, fast_writer()))).await;

    // Success.
    let resp = chat_gpt4o(&h, &[("x-request-id", "req-success-1")]).await;
    assert_eq!(resp.status(), 200);
    let log = one_log(&h, "request_id=req-success-1").await;
    assert_eq!(log["id"], "req-success-1");
    assert_eq!(log["object"], "chat_completion");
    assert_eq!(log["route"], "/v1/chat/completions");
    assert_eq!(log["provider"], "openai");
    assert_eq!(log["model"], "openai/gpt-4o");
    assert_eq!(log["resolved_provider"], "openai");
    assert_eq!(log["resolved_model"], "gpt-4o");
    assert_eq!(log["key_id"], "k-open");
    assert_eq!(log["status"], "success");
    assert_eq!(log["status_code"], 200);
    assert_eq!(log["error_type"], Value::Null);
    assert_eq!(
        (
            log["prompt_tokens"].clone(),
            log["completion_tokens"].clone()
        ),
        (json!(6), json!(3))
    );
    assert_eq!(log["total_tokens"], 9);
    assert!(
        (log["cost"].as_f64().unwrap() - 0.012).abs() < 1e-9,
        "{log}"
    );
    assert!(log["latency_ms"].as_f64().unwrap() > 0.0, "{log}");
    assert_eq!(
        (log["stream"].clone(), log["attempts"].clone()),
        (json!(false), json!(1))
    );
    assert_eq!(log["fallback_index"], 0);
    assert!(
        log["input"].as_str().unwrap().contains(PROMPT),
        "request content is kept: {log}"
    );
    assert_eq!(log["output"], "Hello from mock-provider");
    let ts = log["timestamp"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!((now - ts).abs() < 60_000, "timestamp is unix ms: {ts}");

    // The same entry by id, and no secret anywhere in it.
    let (s, by_id) = json_of(h.get("/api/logs/req-success-1").await).await;
    assert_eq!(s, 200);
    assert_eq!(by_id, log);
    assert!(!by_id.to_string().contains("secret"), "{by_id}");

    // Upstream error.
    let resp = send(
        &h,
        Method::POST,
        "/v1/chat/completions",
        Some(&chat("mistral/mistral-large", "hi")),
        &[("x-request-id", "req-error-1")],
    )
    .await;
    let (status, body) = json_of(resp).await;
    assert_eq!(status, 500, "{body}");
    let log = one_log(&h, "request_id=req-error-1").await;
    assert_eq!(log["status"], "error");
    assert_eq!(log["status_code"], 500);
    assert_eq!(log["provider"], "mistral");
    assert_eq!(log["resolved_provider"], "mistral");
    assert_eq!(log["key_id"], "k-mis");
    assert!(log["error_type"].is_string(), "{log}");
    assert!(log["error_message"].is_string(), "{log}");
    assert_eq!(log["output"], Value::Null);
    assert!(!log.to_string().contains("secret"), "{log}");

    // Fallback: mistral fails, openai answers.
    let mut body = chat("mistral/mistral-large", PROMPT);
    body["fallbacks"] = json!(["openai/gpt-4o"]);
    let resp = send(
        &h,
        Method::POST,
        "/v1/chat/completions",
        Some(&body),
        &[("x-request-id", "req-fallback-1")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let log = one_log(&h, "request_id=req-fallback-1").await;
    assert_eq!(log["status"], "success");
    assert_eq!(log["model"], "mistral/mistral-large", "as requested");
    assert_eq!(log["resolved_provider"], "openai");
    assert_eq!(log["resolved_model"], "gpt-4o");
    assert_eq!(log["key_id"], "k-open");
    assert_eq!(log["fallback_index"], 1);
    assert_eq!(log["attempts"], 2, "one failed attempt, one success: {log}");

    // Anthropic door.
    let resp = send(
        &h,
        Method::POST,
        "/anthropic/v1/messages",
        Some(&json!({
            "model": "openai/gpt-4o", "max_tokens": 50,
            "messages": [{"role": "user", "content": PROMPT}]
        })),
        &[("x-request-id", "req-anthropic-1")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let log = one_log(&h, "request_id=req-anthropic-1").await;
    assert_eq!(log["route"], "/anthropic/v1/messages");
    assert_eq!(log["status"], "success");
    assert_eq!(log["resolved_model"], "gpt-4o");

    // Embeddings and model lists are logged too.
    let resp = send(
        &h,
        Method::POST,
        "/v1/embeddings",
        Some(&json!({"model": "openai/text-embedding-3-small", "input": "embed me"})),
        &[("x-request-id", "req-embed-1")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let log = one_log(&h, "request_id=req-embed-1").await;
    assert_eq!(log["object"], "embedding");
    assert!(log["input"].as_str().unwrap().contains("embed me"), "{log}");
}

#[tokio::test]
async fn streams_and_client_disconnects_are_logged() {
    let good = mock(MockConfig::default()).await;
    let slow = mock(MockConfig {
        stream_chunks: 3,
        stream_interval: Duration::from_secs(60),
        ..MockConfig::default()
    })
    .await;
    let mut cfg = config(&good, &slow, fast_writer());
    cfg["providers"]["groq"] =
        provider_with_key_ids(&slow.base_url(), &[("k-slow", "sk-slow-3333333", 1.0)]);
    let h = Harness::start(Some(cfg)).await;

    let mut body = chat("openai/gpt-4o", PROMPT);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = send(
        &h,
        Method::POST,
        "/v1/chat/completions",
        Some(&body),
        &[("x-request-id", "req-stream-1")],
    )
    .await;
    let events = sse_data(resp).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let log = one_log(&h, "request_id=req-stream-1").await;
    assert_eq!(log["stream"], true);
    assert_eq!(log["status"], "success");
    assert_eq!(log["output"], "Hello from mock-provider", "{log}");
    assert_eq!(log["completion_tokens"], 3, "{log}");
    let ttft = log["ttft_ms"].as_f64().expect("time to first token");
    assert!(
        ttft > 0.0 && ttft <= log["latency_ms"].as_f64().unwrap(),
        "{log}"
    );

    // The client reads the first chunk and goes away.
    let mut body = chat("groq/llama", PROMPT);
    body["stream"] = json!(true);
    let resp = send(
        &h,
        Method::POST,
        "/v1/chat/completions",
        Some(&body),
        &[("x-request-id", "req-cancel-1")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("first chunk")
        .unwrap()
        .unwrap();
    assert!(std::str::from_utf8(&first).unwrap().starts_with("data: "));
    drop(stream);
    let log = one_log(&h, "request_id=req-cancel-1").await;
    assert_eq!(log["status"], "cancelled", "{log}");
    assert_eq!(log["stream"], true);
    assert_eq!(log["resolved_provider"], "groq");
    let cancelled = one_log(&h, "status=cancelled").await;
    assert_eq!(cancelled["id"], "req-cancel-1");
}

#[tokio::test]
async fn filters_paging_stats_and_delete_over_real_traffic() {
    let good = mock(MockConfig::default()).await;
    let bad = failing_mock().await;
    let h = Harness::start(Some(config(&good, &bad, fast_writer()))).await;
    for i in 0..5 {
        let prompt = if i == 2 {
            "tell me about zebras".to_owned()
        } else {
            format!("{PROMPT} {i}")
        };
        let r = h
            .post("/v1/chat/completions", &chat("openai/gpt-4o", &prompt))
            .await;
        assert_eq!(r.status(), 200);
    }
    for _ in 0..3 {
        let r = h
            .post("/v1/chat/completions", &chat("mistral/small", "hi"))
            .await;
        assert_eq!(r.status(), 500);
    }
    let all = logs_when(&h, "", 8).await;
    assert_eq!(all["has_logs"], true);
    assert_eq!(all["stats"]["total_requests"], 8);
    assert_eq!(all["stats"]["success_count"], 5);
    assert_eq!(all["stats"]["error_count"], 3);

    // Newest first by default.
    let ts: Vec<i64> = all["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["timestamp"].as_i64().unwrap())
        .collect();
    assert!(ts.windows(2).all(|w| w[0] >= w[1]), "{ts:?}");

    let v = logs_when(&h, "providers=mistral", 3).await;
    assert!(
        v["logs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["provider"] == "mistral")
    );
    logs_when(&h, "status=error", 3).await;
    logs_when(&h, "providers=openai&status=success", 5).await;
    logs_when(&h, "models=openai/gpt-4o", 5).await;
    logs_when(&h, "min_tokens=1", 5).await;
    logs_when(&h, "min_cost=0.000001", 5).await;
    let z = one_log(&h, "content_search=zebras").await;
    assert!(z["input"].as_str().unwrap().contains("zebras"));

    // Paging: two pages of 3 and a last page of 2, no overlap.
    let mut seen = std::collections::HashSet::new();
    for (offset, expect) in [(0, 3), (3, 3), (6, 2)] {
        let (s, v) = json_of(h.get(&format!("/api/logs?limit=3&offset={offset}")).await).await;
        assert_eq!(s, 200);
        assert_eq!(v["pagination"]["total_count"], 8);
        let page = v["logs"].as_array().unwrap();
        assert_eq!(page.len(), expect, "offset {offset}");
        for l in page {
            assert!(seen.insert(l["id"].as_str().unwrap().to_owned()));
        }
    }
    let (_, v) = json_of(h.get("/api/logs?sort_by=latency&order=asc").await).await;
    let lat: Vec<f64> = v["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["latency_ms"].as_f64().unwrap())
        .collect();
    assert!(lat.windows(2).all(|w| w[0] <= w[1]), "{lat:?}");

    // Stats over a filter.
    let (s, st) = json_of(h.get("/api/logs/stats?providers=openai").await).await;
    assert_eq!(s, 200);
    assert_eq!(st["total_requests"], 5);
    assert_eq!(st["success_rate"], 100.0);
    assert!(st["total_cost"].as_f64().unwrap() > 0.0);

    // Bad input is a 400 naming the parameter.
    let (s, v) = json_of(h.get("/api/logs?min_latency=fast").await).await;
    assert_envelope(&v, 400);
    assert_eq!(
        (s, v["error"]["param"].clone()),
        (400, json!("min_latency"))
    );
    let (s, v) = json_of(h.get("/api/logs/does-not-exist").await).await;
    assert_envelope(&v, 404);
    assert_eq!(s, 404);

    // Delete with a filter; an unfiltered delete needs all=true.
    let (s, v) = json_of(h.delete("/api/logs").await).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = json_of(h.delete("/api/logs?status=error").await).await;
    assert_eq!((s, v["deleted"].clone()), (200, json!(3)));
    logs_when(&h, "", 5).await;
}

#[tokio::test]
async fn content_logging_can_be_turned_off_per_request_key_plugin_and_globally() {
    let good = mock(MockConfig::default()).await;
    let bad = failing_mock().await;
    let h = Harness::start(Some(config(&good, &bad, fast_writer()))).await;

    // Per request.
    let r = chat_gpt4o(
        &h,
        &[
            ("x-request-id", "no-content-header"),
            ("x-bf-disable-content-logging", "true"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let log = one_log(&h, "request_id=no-content-header").await;
    assert_eq!(
        (log["input"].clone(), log["output"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(log["total_tokens"], 9, "metadata is still logged: {log}");

    // Per virtual key (and the key's id is recorded).
    let (vk_id, vk) = create_vk(
        &h,
        &json!({"name": "private", "disable_content_logging": true}),
        &[],
    )
    .await;
    let (s, v) = json_of(
        h.get(&format!("/api/governance/virtual-keys/{vk_id}"))
            .await,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["virtual_key"]["disable_content_logging"], true, "{v}");
    let r = chat_gpt4o(&h, &[("x-request-id", "no-content-vk"), ("x-bf-vk", &vk)]).await;
    assert_eq!(r.status(), 200);
    let log = one_log(&h, "request_id=no-content-vk").await;
    assert_eq!(log["virtual_key_id"], json!(vk_id));
    assert_eq!(
        (log["input"].clone(), log["output"].clone()),
        (Value::Null, Value::Null)
    );
    let one = one_log(&h, &format!("virtual_key_ids={vk_id}")).await;
    assert_eq!(one["id"], "no-content-vk");

    // A key that does not disable it keeps content.
    let (_, open_vk) = create_vk(&h, &json!({"name": "open"}), &[]).await;
    let r = chat_gpt4o(&h, &[("x-request-id", "content-vk"), ("x-bf-vk", &open_vk)]).await;
    assert_eq!(r.status(), 200);
    let log = one_log(&h, "request_id=content-vk").await;
    assert!(log["input"].as_str().unwrap().contains(PROMPT));

    // Through the logging plugin's config.
    let (s, v) = json_of(
        h.put(
            "/api/plugins/logging",
            &json!({"config": {"disable_content_logging": true}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let r = chat_gpt4o(&h, &[("x-request-id", "no-content-plugin")]).await;
    assert_eq!(r.status(), 200);
    let log = one_log(&h, "request_id=no-content-plugin").await;
    assert_eq!(
        (log["input"].clone(), log["output"].clone()),
        (Value::Null, Value::Null)
    );
    drop(h);

    // Globally.
    let mut cfg = config(&good, &bad, fast_writer());
    cfg["client"] = json!({"disable_content_logging": true});
    let h = Harness::start(Some(cfg)).await;
    let r = chat_gpt4o(&h, &[("x-request-id", "no-content-global")]).await;
    assert_eq!(r.status(), 200);
    let log = one_log(&h, "request_id=no-content-global").await;
    assert_eq!(
        (log["input"].clone(), log["output"].clone()),
        (Value::Null, Value::Null)
    );
    let (_, v) = json_of(h.get("/api/logs?content_search=capital").await).await;
    assert_eq!(v["pagination"]["total_count"], 0, "nothing to find: {v}");
}

/// The pool behind the gateway's logs store, to break or lock it from outside.
fn sqlite_pool(h: &Harness) -> sqlx::SqlitePool {
    let logs = h.gw.state.logs.as_ref().expect("logs store enabled");
    match logs.store.backend() {
        causeway_logstore::Backend::Sqlite(p) => p.clone(),
        #[allow(unreachable_patterns)]
        _ => panic!("expected the SQLite logs store"),
    }
}

#[tokio::test]
async fn a_locked_logs_store_does_not_slow_requests_and_loses_nothing() {
    let good = mock(MockConfig::default()).await;
    let bad = failing_mock().await;
    let h = Harness::start(Some(config(&good, &bad, fast_writer()))).await;
    let path = h.dir.path().join("logs.db");
    assert!(path.exists(), "logs.db is created in the app dir");

    // Another process holds the write lock: the writer must wait, requests must not.
    let mut locker = {
        use sqlx::ConnectOptions;
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .unwrap()
    };
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    for i in 0..10 {
        let r = chat_gpt4o(&h, &[("x-request-id", &format!("locked-{i}"))]).await;
        assert_eq!(r.status(), 200);
    }
    // Generous: each request takes milliseconds; a request waiting on the lock would take
    // the store's 5 s busy timeout.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "requests waited on the logs store: {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    logs_when(&h, "", 10).await;
    let (_, v) = json_of(h.get("/api/logs/dropped").await).await;
    assert_eq!(v["dropped_requests"], 0);
}

#[tokio::test]
async fn a_failing_logs_store_does_not_fail_requests_and_drops_are_counted() {
    let good = mock(MockConfig::default()).await;
    let bad = failing_mock().await;
    let h = Harness::start(Some(config(&good, &bad, fast_writer()))).await;
    let (s, v) = json_of(
        h.post(
            "/api/plugins",
            &json!({"name": "telemetry", "enabled": true}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    sqlx::query("DROP TABLE log_content")
        .execute(&sqlite_pool(&h))
        .await
        .unwrap();
    for _ in 0..4 {
        let r = h
            .post("/v1/chat/completions", &chat("openai/gpt-4o", PROMPT))
            .await;
        assert_eq!(r.status(), 200, "requests do not depend on the logs store");
    }
    let dropped = eventually(Duration::from_secs(10), || async {
        let (_, v) = json_of(h.get("/api/logs/dropped").await).await;
        (v["dropped_requests"].as_u64() == Some(4)).then_some(())
    })
    .await;
    let (_, v) = json_of(h.get("/api/logs/dropped").await).await;
    assert!(
        dropped.is_some(),
        "all four entries counted as dropped: {v}"
    );
    let text = h.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains("causeway_logs_dropped_total{reason=\"store_error\"} 4"),
        "{text}"
    );
}

#[tokio::test]
async fn queued_entries_survive_a_shutdown() {
    let good = mock(MockConfig::default()).await;
    let bad = failing_mock().await;
    // Nothing would be flushed for a minute: only the shutdown drain writes these.
    let h = Harness::start(Some(config(
        &good,
        &bad,
        json!({"writer": {"batch_interval": "60s"}}),
    )))
    .await;
    for _ in 0..3 {
        let r = h
            .post("/v1/chat/completions", &chat("openai/gpt-4o", PROMPT))
            .await;
        assert_eq!(r.status(), 200);
    }
    let (_, v) = json_of(h.get("/api/logs").await).await;
    assert_eq!(v["pagination"]["total_count"], 0, "still queued: {v}");
    let h = h.restart().await;
    let (_, v) = json_of(h.get("/api/logs").await).await;
    assert_eq!(v["pagination"]["total_count"], 3, "{v}");
}

#[tokio::test]
async fn logs_can_be_disabled() {
    let good = mock(MockConfig::default()).await;
    let bad = failing_mock().await;
    let h = Harness::start(Some(config(&good, &bad, json!({"enabled": false})))).await;
    let r = h
        .post("/v1/chat/completions", &chat("openai/gpt-4o", PROMPT))
        .await;
    assert_eq!(r.status(), 200);
    let (s, v) = json_of(h.get("/api/logs").await).await;
    assert_envelope(&v, 503);
    assert_eq!(
        (s, v["error"]["type"].clone()),
        (503, json!("logs_store_disabled"))
    );
    let (s, v) = json_of(
        h.post("/api/plugins", &json!({"name": "logging", "enabled": true}))
            .await,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("logs_store"),
        "{v}"
    );
    assert!(!h.dir.path().join("logs.db").exists());

    // `client.enable_logging: false` keeps the store (and the API) but logs nothing.
    let mut cfg = config(&good, &bad, fast_writer());
    cfg["client"] = json!({"enable_logging": false});
    let h = Harness::start(Some(cfg)).await;
    let (_, v) = json_of(h.get("/api/plugins").await).await;
    assert!(
        !v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "logging"),
        "{v}"
    );
    let r = h
        .post("/v1/chat/completions", &chat("openai/gpt-4o", PROMPT))
        .await;
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, v) = json_of(h.get("/api/logs").await).await;
    assert_eq!((s, v["pagination"]["total_count"].clone()), (200, json!(0)));
}

#[tokio::test]
async fn bad_logs_store_config_fails_start_up_with_the_field() {
    for (logs_store, needle) in [
        (json!({"type": "mongodb"}), "logs_store.type"),
        (
            json!({"writer": {"batch_interval": "soon"}}),
            "batch_interval",
        ),
        (json!({"retention_days": 0}), "at least 1 day"),
        (json!({"enabeld": true}), "enabeld"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            json!({"logs_store": logs_store}).to_string(),
        )
        .unwrap();
        let err = match causeway_server::Gateway::start(common::options(dir.path().to_path_buf()))
            .await
        {
            Ok(_) => panic!("{logs_store} must be refused"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(needle), "{logs_store}: {err}");
    }
}

#[tokio::test]
async fn content_is_truncated_to_the_configured_size() {
    let good = mock(MockConfig::default()).await;
    let bad = failing_mock().await;
    let h = Harness::start(Some(config(&good, &bad, fast_writer()))).await;
    let (s, v) = json_of(
        h.put(
            "/api/plugins/logging",
            &json!({"config": {"max_content_bytes": 70000}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_content_bytes"),
        "{v}"
    );
    let (s, v) = json_of(
        h.put(
            "/api/plugins/logging",
            &json!({"config": {"max_content_bytes": 12}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let r = chat_gpt4o(&h, &[("x-request-id", "cut")]).await;
    assert_eq!(r.status(), 200);
    let log = one_log(&h, "request_id=cut").await;
    let input = log["input"].as_str().unwrap();
    let output = log["output"].as_str().unwrap();
    assert!(input.contains("…[truncated"), "{input}");
    assert_eq!(output, "Hello from m…[truncated 12 bytes]");
}

#[tokio::test]
async fn a_reused_request_id_still_logs_every_request() {
    let good = mock(MockConfig::default()).await;
    let bad = failing_mock().await;
    let h = Harness::start(Some(config(&good, &bad, fast_writer()))).await;
    for _ in 0..2 {
        let r = chat_gpt4o(&h, &[("x-request-id", "same-id")]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-request-id"], "same-id");
    }
    logs_when(&h, "", 2).await;
    let (s, _) = json_of(h.get("/api/logs/same-id").await).await;
    assert_eq!(s, 200);
    let (s, v) = json_of(h.get("/api/logs/same-id~2").await).await;
    assert_eq!((s, v["status"].clone()), (200, json!("success")));
}
