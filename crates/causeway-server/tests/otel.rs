//! The `otel` plugin over real HTTP, against a small fake OTLP/HTTP collector: the request
//! span continues the caller's `traceparent`, attempt and hook spans are its children, GenAI
//! attributes carry the right values, the provider sees the request span as its parent, a
//! fallback yields two attempt spans, cleanup flushes what is queued, and a collector that is
//! down or stuck costs requests nothing but counters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use common::{Harness, chat_body, eventually, json_of, provider, send};
use mock_provider::{MockConfig, MockServer};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Notify;

// ---- the fake collector -----------------------------------------------------------------------

#[derive(Default)]
struct Collected {
    /// Every span received, with `service.name` of its resource added as `_service`.
    spans: Mutex<Vec<Value>>,
    arrived: Notify,
}

struct Collector {
    url: String,
    got: Arc<Collected>,
}

async fn collect(State(got): State<Arc<Collected>>, body: Bytes) -> &'static str {
    let v: Value = serde_json::from_slice(&body).expect("OTLP JSON");
    let mut new = Vec::new();
    for rs in v["resourceSpans"].as_array().expect("resourceSpans") {
        let service = attr(&rs["resource"], "service.name").cloned();
        for ss in rs["scopeSpans"].as_array().expect("scopeSpans") {
            for s in ss["spans"].as_array().expect("spans") {
                let mut s = s.clone();
                s["_service"] = service.clone().unwrap_or(Value::Null);
                new.push(s);
            }
        }
    }
    got.spans.lock().unwrap().extend(new);
    got.arrived.notify_waiters();
    "{}"
}

impl Collector {
    async fn start() -> Collector {
        let got = Arc::new(Collected::default());
        let app = Router::new()
            .route("/v1/traces", post(collect))
            .with_state(got.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Collector { url, got }
    }

    /// Waits (woken by each POST, no polling) until at least `n` spans arrived.
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let arrived = self.got.arrived.notified();
            tokio::pin!(arrived);
            // Registered before the check, so a POST between the two is not missed.
            arrived.as_mut().enable();
            {
                let spans = self.got.spans.lock().unwrap();
                if spans.len() >= n {
                    return spans.clone();
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let spans = self.got.spans.lock().unwrap();
                panic!("waited for {n} spans, got {}: {spans:#?}", spans.len());
            }
        }
    }
}

// ---- span helpers -----------------------------------------------------------------------------

/// The value of attribute `key` (`{"stringValue": ..}` etc.) of a span or resource.
fn attr<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .and_then(|a| a["value"].as_object())
        .and_then(|o| o.values().next())
}

fn attr_s<'a>(v: &'a Value, key: &str) -> &'a str {
    attr(v, key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string attribute {key} in {v:#}"))
}

fn kind(s: &Value) -> u64 {
    s["kind"].as_u64().unwrap()
}

fn nanos(s: &Value, field: &str) -> u128 {
    s[field].as_str().unwrap().parse().unwrap()
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

async fn enable(h: &Harness, name: &str, config: Value) {
    let (s, v) = json_of(
        h.post(
            "/api/plugins",
            &json!({"name": name, "enabled": true, "config": config}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["plugin"]["status"]["status"], "active", "{v}");
}

/// A Prometheus counter without labels from `/metrics`.
async fn counter(h: &Harness, name: &str) -> Option<f64> {
    let text = h.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

// ---- tests ------------------------------------------------------------------------------------

#[tokio::test]
async fn request_attempt_and_hook_spans_continue_the_callers_trace() {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let c = Collector::start().await;
    let h = Harness::start(Some(json!({"providers": {
        "openai": provider(&m.base_url(), &[("k1", "sk-one-111111111111")]),
    }})))
    .await;
    enable(
        &h,
        "otel",
        json!({"collector_url": c.url, "service_name": "causeway-test", "flush_interval_ms": 20}),
    )
    .await;

    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let resp = send(
        &h,
        Method::POST,
        "/v1/chat/completions",
        Some(&chat_body("openai/gpt-4o")),
        &[("traceparent", &traceparent), ("x-bf-dim-team", "alpha")],
    )
    .await;
    assert_eq!(resp.status(), 200);

    // Request + 1 attempt + the governance plugin's pre- and post-LLM hooks.
    let spans = c.wait_for(4).await;
    assert_eq!(spans.len(), 4, "{spans:#?}");
    assert!(
        spans.iter().all(|s| s["traceId"] == CALLER_TRACE),
        "{spans:#?}"
    );
    assert!(spans.iter().all(|s| s["_service"] == "causeway-test"));

    let roots: Vec<&Value> = spans.iter().filter(|s| kind(s) == 2).collect();
    assert_eq!(roots.len(), 1, "one SERVER span: {spans:#?}");
    let root = roots[0];
    let root_id = root["spanId"].as_str().unwrap();
    assert_eq!(root_id.len(), 16);
    assert_eq!(root["parentSpanId"], CALLER_SPAN);
    assert_eq!(root["name"], "chat openai/gpt-4o");
    assert_eq!(attr_s(root, "gen_ai.operation.name"), "chat");
    assert_eq!(attr_s(root, "gen_ai.system"), "openai");
    assert_eq!(attr_s(root, "gen_ai.request.model"), "openai/gpt-4o");
    assert_eq!(attr_s(root, "gen_ai.response.model"), "gpt-4o");
    assert_eq!(attr_s(root, "gen_ai.usage.input_tokens"), "2");
    assert_eq!(attr_s(root, "gen_ai.usage.output_tokens"), "3");
    assert_eq!(attr_s(root, "http.response.status_code"), "200");
    assert_eq!(attr_s(root, "causeway.retries"), "0");
    assert_eq!(attr_s(root, "causeway.fallback_index"), "0");
    assert_eq!(attr_s(root, "causeway.dim.team"), "alpha");
    assert!(attr(root, "error.type").is_none());
    assert!(
        root.get("status").is_none(),
        "success leaves the status unset"
    );

    let attempts: Vec<&Value> = spans.iter().filter(|s| kind(s) == 3).collect();
    assert_eq!(attempts.len(), 1);
    let a = attempts[0];
    assert_eq!(a["parentSpanId"], root_id);
    assert_eq!(a["name"], "chat gpt-4o");
    assert_eq!(attr_s(a, "gen_ai.system"), "openai");
    assert_eq!(attr_s(a, "gen_ai.request.model"), "gpt-4o");
    assert_eq!(attr_s(a, "http.response.status_code"), "200");
    assert!(nanos(a, "startTimeUnixNano") >= nanos(root, "startTimeUnixNano"));
    assert!(nanos(a, "endTimeUnixNano") <= nanos(root, "endTimeUnixNano"));
    assert!(nanos(a, "startTimeUnixNano") <= nanos(a, "endTimeUnixNano"));

    let mut hooks: Vec<&str> = spans
        .iter()
        .filter(|s| kind(s) == 1)
        .map(|s| {
            assert_eq!(s["parentSpanId"], root_id);
            assert_eq!(attr_s(s, "causeway.plugin.name"), "governance");
            s["name"].as_str().unwrap()
        })
        .collect();
    hooks.sort();
    assert_eq!(hooks, ["governance.post_hook", "governance.pre_hook"]);

    let ids: std::collections::HashSet<&str> = spans
        .iter()
        .map(|s| s["spanId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "span ids are unique");

    // The provider was told the request span is its parent, in the caller's trace.
    let reqs = m.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].header("traceparent"),
        Some(format!("00-{CALLER_TRACE}-{root_id}-01").as_str())
    );
}

#[tokio::test]
async fn a_fallback_yields_two_attempt_spans() {
    let broken = MockServer::start(MockConfig {
        failure_rate: 1.0,
        failure_status: 500,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let good = MockServer::start(MockConfig::default()).await.unwrap();
    let c = Collector::start().await;
    let mut openai = provider(&broken.base_url(), &[("k", "sk-broken-1111111111")]);
    openai["network_config"]["max_retries"] = json!(0);
    let h = Harness::start(Some(json!({"providers": {
        "openai": openai,
        "mistral": provider(&good.base_url(), &[("k", "sk-good-11111111111")]),
    }})))
    .await;
    enable(
        &h,
        "otel",
        json!({"collector_url": format!("{}/v1/traces", c.url), "flush_interval_ms": 20}),
    )
    .await;
    let mut body = chat_body("openai/gpt-4o");
    body["fallbacks"] = json!(["mistral/mistral-small"]);
    let (s, v) = json_of(h.post("/v1/chat/completions", &body).await).await;
    assert_eq!(s, 200, "{v}");

    // Request + 2 attempts + pre/post hooks of the governance plugin for each target.
    let spans = c.wait_for(3).await;
    let root = spans.iter().find(|s| kind(s) == 2).expect("request span");
    assert!(root.get("parentSpanId").is_none(), "a new trace: {root:#}");
    assert_eq!(attr_s(root, "gen_ai.system"), "mistral");
    assert_eq!(attr_s(root, "gen_ai.response.model"), "mistral-small");
    assert_eq!(attr_s(root, "causeway.fallback_index"), "1");
    assert_eq!(attr_s(root, "causeway.retries"), "1");
    assert_eq!(spans[0]["_service"], "causeway");
    let root_id = root["spanId"].as_str().unwrap();
    let trace = root["traceId"].as_str().unwrap();

    let mut attempts: Vec<&Value> = spans.iter().filter(|s| kind(s) == 3).collect();
    attempts.sort_by_key(|s| nanos(s, "startTimeUnixNano"));
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    for a in &attempts {
        assert_eq!(a["parentSpanId"], root_id);
        assert_eq!(a["traceId"], trace);
    }
    assert_eq!(attr_s(attempts[0], "gen_ai.system"), "openai");
    assert_eq!(attr_s(attempts[0], "http.response.status_code"), "500");
    assert_eq!(attr_s(attempts[0], "causeway.fallback_index"), "0");
    assert_eq!(attr_s(attempts[0], "error.type"), "provider_server_error");
    assert_eq!(attempts[0]["status"]["code"], 2);
    assert_eq!(attr_s(attempts[1], "gen_ai.system"), "mistral");
    assert_eq!(attr_s(attempts[1], "gen_ai.request.model"), "mistral-small");
    assert_eq!(attr_s(attempts[1], "causeway.fallback_index"), "1");
    assert!(attempts[1].get("status").is_none());
    assert!(spans.iter().filter(|s| kind(s) == 1).count() >= 2);

    // Both providers saw the same trace, with the request span as parent.
    for m in [&broken, &good] {
        assert_eq!(
            m.requests()[0].header("traceparent"),
            Some(format!("00-{trace}-{root_id}-01").as_str())
        );
    }
}

#[tokio::test]
async fn shutdown_flushes_queued_spans() {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let c = Collector::start().await;
    let h = Harness::start(Some(json!({
        "providers": {"openai": provider(&m.base_url(), &[("k1", "sk-one-111111111111")])},
        "plugins": [{"name": "otel", "enabled": true, "config": {
            "collector_url": c.url, "flush_interval_ms": 600000, "batch_size": 1000
        }}],
    })))
    .await;
    assert_eq!(h.chat("openai/gpt-4o").await.status(), 200);
    // Nothing is due before the interval; cleanup at shutdown sends it.
    h.gw.shutdown().await;
    let spans = c.wait_for(4).await;
    assert_eq!(spans.iter().filter(|s| kind(s) == 2).count(), 1);
}

#[tokio::test]
async fn a_down_collector_costs_requests_nothing_but_a_counter() {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let h = Harness::start(Some(json!({"providers": {
        "openai": provider(&m.base_url(), &[("k1", "sk-one-111111111111")]),
    }})))
    .await;
    enable(&h, "telemetry", json!({})).await;
    enable(
        &h,
        "otel",
        json!({"collector_url": format!("http://{closed}"), "flush_interval_ms": 10}),
    )
    .await;
    for _ in 0..3 {
        let (s, v) = json_of(h.chat("openai/gpt-4o").await).await;
        assert_eq!(s, 200, "{v}");
    }
    let failed = eventually(Duration::from_secs(10), || async {
        counter(&h, "causeway_otel_spans_failed_total")
            .await
            .filter(|n| *n >= 12.0)
    })
    .await;
    assert!(failed.is_some(), "the failures are counted");
    assert_eq!(
        counter(&h, "causeway_otel_spans_exported_total").await,
        Some(0.0)
    );
    assert_eq!(
        counter(&h, "causeway_otel_spans_dropped_total").await,
        Some(0.0)
    );
}

#[tokio::test]
async fn a_full_queue_drops_and_counts() {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    // Accepts connections (the kernel does) but never answers: the exporter stays stuck on
    // its first batch while requests keep coming.
    let stuck = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let h = Harness::start(Some(json!({"providers": {
        "openai": provider(&m.base_url(), &[("k1", "sk-one-111111111111")]),
    }})))
    .await;
    enable(&h, "telemetry", json!({})).await;
    enable(
        &h,
        "otel",
        json!({
            "collector_url": format!("http://{}", stuck.local_addr().unwrap()),
            "queue_capacity": 1,
            "batch_size": 1,
            "export_timeout_ms": 60000,
        }),
    )
    .await;
    let started = std::time::Instant::now();
    for _ in 0..6 {
        let (s, v) = json_of(h.chat("openai/gpt-4o").await).await;
        assert_eq!(s, 200, "{v}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a stuck collector must not slow requests"
    );
    // At most one record is being exported and one queued: the other four are dropped,
    // 4 spans each (request, attempt, two hooks).
    let dropped = counter(&h, "causeway_otel_spans_dropped_total")
        .await
        .unwrap();
    assert!(dropped >= 16.0, "dropped {dropped}");
    assert_eq!(
        counter(&h, "causeway_otel_spans_exported_total").await,
        Some(0.0)
    );
    drop(stuck);
}

#[tokio::test]
async fn unsupported_protocol_and_bad_urls_are_400s() {
    let h = Harness::start(None).await;
    for (config, needle) in [
        (
            json!({"collector_url": "http://localhost:4317", "protocol": "grpc"}),
            "http/json",
        ),
        (json!({"collector_url": "localhost:4318"}), "collector_url:"),
        (json!({}), "collector_url: missing field"),
        (
            json!({"collector_url": "http://c:1", "trace_type": "zipkin"}),
            "trace_type:",
        ),
    ] {
        let (s, v) = json_of(
            h.post(
                "/api/plugins",
                &json!({"name": "otel", "enabled": true, "config": config}),
            )
            .await,
        )
        .await;
        assert_eq!(s, 400, "{config}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{config}: {msg}");
    }
}

/// With serve threads (the binary's default), an exporter created through the management
/// API lives on the control runtime, not on the serve thread that took the request: it is
/// still there to flush at shutdown, after the serve threads have stopped.
#[tokio::test]
async fn an_exporter_created_through_the_api_on_serve_threads_flushes_at_shutdown() {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let c = Collector::start().await;
    let (_dir, opts) = common::serve_thread_options(&m.base_url(), 2);
    let gw = causeway_server::Gateway::start(opts).await.unwrap();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/api/plugins", gw.url()))
        .json(&json!({"name": "otel", "enabled": true, "config": {
            "collector_url": c.url, "flush_interval_ms": 600000, "batch_size": 1000
        }}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .post(format!("{}/v1/chat/completions", gw.url()))
        .json(&common::chat_body("openai/gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    gw.shutdown().await;
    let spans = c.wait_for(4).await;
    assert_eq!(spans.iter().filter(|s| kind(s) == 2).count(), 1);
}
