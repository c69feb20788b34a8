//! Inference over real HTTP: OpenAI routes, streaming, Anthropic translation, routing and
//! resilience (retries, 429 rotation, 401 retirement, fallbacks, queue limits), errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Harness, assert_envelope, chat_body, json_of, provider, sse_data};
use futures_util::StreamExt;
use mock_provider::{KeyBehaviour, MockConfig, MockServer};
use serde_json::{Value, json};

async fn mock(cfg: MockConfig) -> MockServer {
    MockServer::start(cfg).await.unwrap()
}

fn content_of(v: &Value) -> &str {
    v["choices"][0]["message"]["content"].as_str().unwrap_or("")
}

#[tokio::test]
async fn chat_forwards_body_and_rewrites_model() {
    let m = mock(MockConfig::default()).await;
    let h = Harness::start(Some(
        json!({"providers": {"openai": provider(&m.base_url(), &[("k1", "sk-one-111111111111")])}}),
    ))
    .await;
    let body = json!({
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": "hello"}],
        "temperature": 0.3,
        "some_vendor_field": {"x": [1, 2]},
        "fallbacks": ["openai/gpt-4o"]
    });
    let (status, v) = json_of(h.post("/v1/chat/completions", &body).await).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(content_of(&v), "Hello from mock-provider");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let reqs = m.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.api_key.as_deref(), Some("sk-one-111111111111"));
    assert_eq!(r.body["model"], "gpt-4o-mini");
    assert_eq!(r.body["temperature"], 0.3);
    assert_eq!(r.body["some_vendor_field"], json!({"x": [1, 2]}));
    assert!(
        r.body.get("fallbacks").is_none(),
        "fallbacks must not reach the provider"
    );
}

#[tokio::test]
async fn openai_prefix_completions_embeddings_and_models() {
    let m = mock(MockConfig::default()).await;
    let h = Harness::start(Some(json!({"providers": {
        "openai": provider(&m.base_url(), &[("k1", "sk-one-111111111111")]),
        "anthropic": provider(&m.base_url(), &[("a1", "sk-ant-1111111111111")]),
    }})))
    .await;
    let (s, v) = json_of(
        h.post("/openai/v1/chat/completions", &chat_body("openai/gpt-4o"))
            .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(content_of(&v), "Hello from mock-provider");

    let (s, v) = json_of(
        h.post(
            "/v1/completions",
            &json!({"model": "openai/gpt-3.5-turbo-instruct", "prompt": "say hi"}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert!(v["choices"][0]["text"].as_str().unwrap().contains("Hello"));

    let (s, v) = json_of(
        h.post(
            "/v1/embeddings",
            &json!({"model": "openai/text-embedding-3-small", "input": ["a", "b"]}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(m.requests().last().unwrap().path, "/v1/embeddings");

    let (s, v) = json_of(h.get("/v1/models").await).await;
    assert_eq!(s, 200, "{v}");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"openai/gpt-4o-mini"), "{ids:?}");
    assert!(ids.iter().any(|i| i.starts_with("anthropic/")), "{ids:?}");
    let (s, v) = json_of(h.get("/v1/models?provider=openai").await).await;
    assert_eq!(s, 200);
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["id"].as_str().unwrap().starts_with("openai/"))
    );
    let (s, v) = json_of(h.get("/v1/models?provider=nope").await).await;
    assert_eq!(s, 400);
    assert_envelope(&v, 400);
}

#[tokio::test]
async fn anthropic_provider_is_translated_both_ways() {
    let m = mock(MockConfig::default()).await;
    let h = Harness::start(Some(json!({"providers": {"anthropic": provider(&m.base_url(), &[("a1", "sk-ant-1111111111111")])}}))).await;
    let body = json!({
        "model": "anthropic/claude-3-5-haiku-latest",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
        "max_tokens": 50
    });
    let (s, v) = json_of(h.post("/v1/chat/completions", &body).await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(content_of(&v), "Hello from mock-provider");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let r = &m.requests()[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.api_key.as_deref(), Some("sk-ant-1111111111111"));
    assert!(r.headers.iter().any(|(k, _)| k == "anthropic-version"));
    assert_eq!(r.body["system"], "be brief");
    assert_eq!(r.body["max_tokens"], 50);
    assert_eq!(r.body["model"], "claude-3-5-haiku-latest");

    // Streaming, translated into OpenAI chunks.
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let resp = h.post("/v1/chat/completions", &sbody).await;
    assert_eq!(resp.status(), 200);
    let events = sse_data(resp).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello from mock-provider");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert!(
        chunks.last().unwrap()["usage"]["completion_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn streams_end_with_done_and_carry_usage_when_asked() {
    let m = mock(MockConfig {
        stream_chunks: 5,
        ..MockConfig::default()
    })
    .await;
    let h = Harness::start(Some(
        json!({"providers": {"openai": provider(&m.base_url(), &[("k1", "sk-one-111111111111")])}}),
    ))
    .await;
    let mut body = chat_body("openai/gpt-4o");
    body["stream"] = json!(true);
    let resp = h.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = sse_data(resp).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let text: String = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "Hello from mock-provider");
    assert!(
        !events.iter().any(|e| e.contains("\"usage\":{")),
        "no usage unless asked"
    );

    body["stream_options"] = json!({"include_usage": true});
    let events = sse_data(h.post("/v1/chat/completions", &body).await).await;
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert!(
        last["usage"]["total_tokens"].as_u64().unwrap() > 0,
        "{last}"
    );
}

#[tokio::test]
async fn upstream_connections_are_reused_across_requests_and_streams() {
    let m = mock(MockConfig::default()).await;
    let h = Harness::start(Some(
        json!({"providers": {"openai": provider(&m.base_url(), &[("k1", "sk-one-111111111111")])}}),
    ))
    .await;
    for _ in 0..5 {
        let (s, v) = json_of(
            h.post("/v1/chat/completions", &chat_body("openai/gpt-4o-mini"))
                .await,
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let mut body = chat_body("openai/gpt-4o-mini");
        body["stream"] = json!(true);
        let events = sse_data(h.post("/v1/chat/completions", &body).await).await;
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        // The stream ends for the gateway at `[DONE]`; its upstream connection is ready again
        // once hyper has read the chunked body's terminator, on its own turn.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(m.request_count(), 10);
    assert_eq!(m.connections_accepted(), 1);
}

#[tokio::test]
async fn stream_is_passed_through_and_client_disconnect_cancels_upstream() {
    // The upstream sends one chunk, then waits a long time before the next.
    let m = mock(MockConfig {
        stream_chunks: 3,
        stream_interval: Duration::from_secs(60),
        ..MockConfig::default()
    })
    .await;
    let h = Harness::start(Some(
        json!({"providers": {"openai": provider(&m.base_url(), &[("k1", "sk-one-111111111111")])}}),
    ))
    .await;
    let mut body = chat_body("openai/gpt-4o");
    body["stream"] = json!(true);
    let resp = h.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    // The first chunk reaches us while the upstream is still mid-stream: nothing is buffered.
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("first chunk arrives before the upstream finishes")
        .unwrap()
        .unwrap();
    assert!(std::str::from_utf8(&first).unwrap().starts_with("data: {"));
    assert_eq!(m.streams_completed(), 0);
    drop(stream);
    assert!(
        m.wait_for_cancelled_streams(1, Duration::from_secs(10))
            .await,
        "the upstream stream must be cancelled when the client goes away"
    );
}

#[tokio::test]
async fn upstream_failure_mid_stream_becomes_one_error_event() {
    let m = mock(MockConfig {
        stream_chunks: 6,
        stream_fail_after: Some(2),
        ..MockConfig::default()
    })
    .await;
    let h = Harness::start(Some(
        json!({"providers": {"openai": provider(&m.base_url(), &[("k1", "sk-one-111111111111")])}}),
    ))
    .await;
    let mut body = chat_body("openai/gpt-4o");
    body["stream"] = json!(true);
    let resp = h.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    let events = sse_data(resp).await;
    assert!(!events.contains(&"[DONE]".to_string()), "{events:?}");
    let errors: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter(|v| v.get("error").is_some())
        .collect();
    assert_eq!(errors.len(), 1, "{events:?}");
    assert!(
        errors[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("openai")
    );
    assert_eq!(errors[0]["error"]["status_code"], 502);
    let content_chunks = events.iter().filter(|e| e.contains("\"delta\"")).count();
    assert!(content_chunks >= 2, "{events:?}");
}

#[tokio::test]
async fn retries_5xx_with_backoff_then_succeeds() {
    let m = mock(MockConfig {
        fail_first: 2,
        failure_status: 503,
        ..MockConfig::default()
    })
    .await;
    let mut p = provider(&m.base_url(), &[("k1", "sk-one-111111111111")]);
    p["network_config"]["max_retries"] = json!(2);
    let h = Harness::start(Some(json!({"providers": {"openai": p}}))).await;
    let (s, v) = json_of(h.chat("openai/gpt-4o").await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(m.request_count(), 3);

    // With one retry allowed, two failures surface the upstream error.
    m.set_config(MockConfig {
        fail_first: 2,
        failure_status: 503,
        ..MockConfig::default()
    });
    let m2 = mock(MockConfig {
        fail_first: 2,
        failure_status: 500,
        ..MockConfig::default()
    })
    .await;
    let mut p = provider(&m2.base_url(), &[("k1", "sk-one-111111111111")]);
    p["network_config"]["max_retries"] = json!(1);
    let h2 = Harness::start(Some(json!({"providers": {"openai": p}}))).await;
    let (s, v) = json_of(h2.chat("openai/gpt-4o").await).await;
    assert_eq!(s, 500, "{v}");
    assert_envelope(&v, 500);
    assert_eq!(m2.request_count(), 2);
    assert_eq!(v["extra_fields"]["provider"], "openai");
    assert_eq!(v["extra_fields"]["error_type"], "provider_server_error");
    drop(h);
}

#[tokio::test]
async fn no_retry_on_4xx() {
    let mut kb = HashMap::new();
    kb.insert(
        "sk-bad-request-1111".to_string(),
        KeyBehaviour {
            status: Some(400),
            ..Default::default()
        },
    );
    let m = mock(MockConfig {
        key_behaviours: kb,
        ..MockConfig::default()
    })
    .await;
    let mut p = provider(&m.base_url(), &[("k1", "sk-bad-request-1111")]);
    p["network_config"]["max_retries"] = json!(3);
    let h = Harness::start(Some(json!({"providers": {"openai": p}}))).await;
    let (s, v) = json_of(h.chat("openai/gpt-4o").await).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(m.request_count(), 1);
}

#[tokio::test]
async fn rate_limited_key_rotates_to_another() {
    let mut kb = HashMap::new();
    kb.insert(
        "sk-limited-11111111".to_string(),
        KeyBehaviour {
            status: Some(429),
            ..Default::default()
        },
    );
    let m = mock(MockConfig {
        key_behaviours: kb,
        ..MockConfig::default()
    })
    .await;
    let cfg = json!({"providers": {"openai": {
        "keys": [
            {"name": "limited", "value": "sk-limited-11111111", "weight": 1000},
            {"name": "ok", "value": "sk-ok-2222222222222", "weight": 0.001}
        ],
        "network_config": {"base_url": m.base_url(), "retry_backoff_initial": 1, "retry_backoff_max": 2}
    }}});
    let h = Harness::start(Some(cfg)).await;
    for _ in 0..5 {
        let (s, v) = json_of(h.chat("openai/gpt-4o").await).await;
        assert_eq!(s, 200, "{v}");
    }
    let reqs = m.requests();
    let limited = reqs
        .iter()
        .filter(|r| r.api_key.as_deref() == Some("sk-limited-11111111"))
        .count();
    let ok = reqs
        .iter()
        .filter(|r| r.api_key.as_deref() == Some("sk-ok-2222222222222"))
        .count();
    assert_eq!(ok, 5);
    assert!(
        limited >= 4,
        "the heavy key is tried first almost always: {limited}"
    );

    // Only a rate-limited key and no retries: the 429 reaches the caller with Retry-After.
    let h2 = Harness::start(Some(json!({"providers": {"openai": provider(&m.base_url(), &[("limited", "sk-limited-11111111")])}}))).await;
    let resp = h2.chat("openai/gpt-4o").await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    let (_, v) = json_of(resp).await;
    assert_envelope(&v, 429);
    assert_eq!(v["extra_fields"]["error_type"], "provider_rate_limited");
}

#[tokio::test]
async fn rejected_key_is_retired_and_exhaustion_is_502() {
    let mut kb = HashMap::new();
    kb.insert(
        "sk-revoked-1111111".to_string(),
        KeyBehaviour {
            status: Some(401),
            ..Default::default()
        },
    );
    kb.insert(
        "sk-forbidden-111111".to_string(),
        KeyBehaviour {
            status: Some(403),
            ..Default::default()
        },
    );
    let m = mock(MockConfig {
        key_behaviours: kb,
        ..MockConfig::default()
    })
    .await;
    let cfg = json!({"providers": {"openai": {
        "keys": [
            {"name": "revoked", "value": "sk-revoked-1111111", "weight": 1000},
            {"name": "good", "value": "sk-good-33333333333", "weight": 0.001}
        ],
        "network_config": {"base_url": m.base_url()}
    }}});
    let h = Harness::start(Some(cfg)).await;
    for _ in 0..3 {
        m.clear_requests();
        let (s, v) = json_of(h.chat("openai/gpt-4o").await).await;
        assert_eq!(s, 200, "{v}");
        let revoked = m
            .requests()
            .iter()
            .filter(|r| r.api_key.as_deref() == Some("sk-revoked-1111111"))
            .count();
        assert!(
            revoked <= 1,
            "a retired key is not used again within the request"
        );
    }

    let cfg = json!({"providers": {"openai": {
        "keys": [{"name": "revoked", "value": "sk-revoked-1111111"}, {"name": "forbidden", "value": "sk-forbidden-111111"}],
        "network_config": {"base_url": m.base_url(), "max_retries": 3}
    }}});
    let h = Harness::start(Some(cfg)).await;
    m.clear_requests();
    let (s, v) = json_of(h.chat("openai/gpt-4o").await).await;
    assert_eq!(s, 502, "{v}");
    assert_eq!(v["type"], "upstream_credentials_exhausted");
    assert_eq!(m.request_count(), 2, "each key is tried exactly once");
}

#[tokio::test]
async fn fallbacks_are_tried_in_order_and_primary_error_wins() {
    let broken = mock(MockConfig {
        failure_rate: 1.0,
        failure_status: 500,
        ..MockConfig::default()
    })
    .await;
    let limited = mock(MockConfig {
        failure_rate: 1.0,
        failure_status: 429,
        ..MockConfig::default()
    })
    .await;
    let good = mock(MockConfig {
        content: "from fallback".into(),
        ..MockConfig::default()
    })
    .await;
    let h = Harness::start(Some(json!({"providers": {
        "openai": provider(&broken.base_url(), &[("k", "sk-broken-1111111111")]),
        "groq": provider(&limited.base_url(), &[("k", "sk-limited-11111111")]),
        "mistral": provider(&good.base_url(), &[("k", "sk-good-11111111111")]),
    }})))
    .await;
    let mut body = chat_body("openai/gpt-4o");
    body["fallbacks"] = json!(["groq/llama-3.1-8b", "mistral/mistral-small"]);
    let (s, v) = json_of(h.post("/v1/chat/completions", &body).await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(content_of(&v), "from fallback");
    assert_eq!(broken.request_count(), 1);
    assert_eq!(limited.request_count(), 1);
    assert_eq!(good.requests()[0].body["model"], "mistral-small");

    // Every target fails: the primary's error is returned.
    body["fallbacks"] = json!(["groq/llama-3.1-8b"]);
    let (s, v) = json_of(h.post("/v1/chat/completions", &body).await).await;
    assert_eq!(s, 500, "{v}");
    assert_eq!(v["extra_fields"]["provider"], "openai");
    assert_eq!(
        v["extra_fields"]["original_model_requested"],
        "openai/gpt-4o"
    );

    // A streaming request falls back too.
    body["fallbacks"] = json!(["mistral/mistral-small"]);
    body["stream"] = json!(true);
    let resp = h.post("/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    let events = sse_data(resp).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
}

#[tokio::test]
async fn full_queue_drops_with_503_or_waits() {
    let m = mock(MockConfig {
        stream_chunks: 2,
        stream_interval: Duration::from_secs(60),
        ..MockConfig::default()
    })
    .await;
    let mut p = provider(&m.base_url(), &[("k", "sk-one-111111111111")]);
    p["concurrency_and_buffer_size"] = json!({"concurrency": 1, "buffer_size": 0});
    let h = Harness::start(Some(
        json!({"client": {"drop_excess_requests": true}, "providers": {"openai": p.clone()}}),
    ))
    .await;
    let mut sbody = chat_body("openai/gpt-4o");
    sbody["stream"] = json!(true);
    let hold = h.post("/v1/chat/completions", &sbody).await;
    assert_eq!(hold.status(), 200);
    let (s, v) = json_of(h.chat("openai/gpt-4o").await).await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["type"], "request_dropped");
    assert_eq!(v["is_bifrost_error"], true);
    drop(hold);

    // Without drop_excess_requests the second request waits for the slot.
    let h = Harness::start(Some(json!({"providers": {"openai": p}}))).await;
    let hold = h.post("/v1/chat/completions", &sbody).await;
    assert_eq!(hold.status(), 200);
    let url = h.url("/v1/chat/completions");
    let client = h.http.clone();
    let waiting = tokio::spawn(async move {
        client
            .post(url)
            .json(&chat_body("openai/gpt-4o"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    // Released only when the holder goes away; the waiter then completes normally.
    let still_waiting = tokio::time::timeout(Duration::from_millis(300), async {
        while !waiting.is_finished() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .is_err();
    assert!(
        still_waiting,
        "the second request must wait while the slot is held"
    );
    drop(hold);
    assert_eq!(waiting.await.unwrap(), 200);
}

#[tokio::test]
async fn caller_errors_use_the_envelope() {
    let m = mock(MockConfig::default()).await;
    let h = Harness::start(Some(json!({
        "client": {"max_request_body_size_mb": 1},
        "providers": {"openai": provider(&m.base_url(), &[("k", "sk-one-111111111111")])}
    })))
    .await;
    let cases: Vec<(reqwest::Response, u16, &str)> = vec![
        (h.http.post(h.url("/v1/chat/completions")).body("{not json").send().await.unwrap(), 400, "Invalid request body"),
        (h.http.post(h.url("/v1/chat/completions")).body("").send().await.unwrap(), 400, "Invalid request body"),
        (h.post("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "x"}]})).await, 400, "model is required"),
        (h.post("/v1/chat/completions", &json!({"model": "openai/gpt-4o"})).await, 400, "messages is required"),
        (h.post("/v1/chat/completions", &json!({"model": "openai/gpt-4o", "messages": []})).await, 400, "at least one message"),
        (h.http.post(h.url("/v1/chat/completions")).header("content-type", "application/json").body("{\"model\": \"openai/gpt-4o\", \"messages\": [ \n\t ] }").send().await.unwrap(), 400, "at least one message"),
        (h.post("/v1/chat/completions", &json!({"model": "openai/gpt-4o", "messages": {"role": "user"}})).await, 400, "must be an array"),
        (h.post("/v1/chat/completions", &json!({"model": "openai/gpt-4o", "messages": "hi"})).await, 400, "must be an array"),
        (h.post("/v1/chat/completions", &chat_body("gpt-4o")).await, 400, "provider is required"),
        (h.post("/v1/chat/completions", &chat_body("nope/gpt-4o")).await, 400, "not configured"),
        (h.post("/v1/completions", &json!({"model": "openai/x"})).await, 400, "prompt is required"),
        (h.post("/v1/embeddings", &json!({"model": "openai/x"})).await, 400, "input is required"),
        (h.post("/v1/chat/completions", &json!({"model": "openai/x", "messages": [{"role":"user","content":"x"}], "fallbacks": "groq/y"})).await, 400, "fallbacks must be"),
        (h.get("/v1/nothing-here").await, 404, "Route not found"),
        (h.http.delete(h.url("/v1/chat/completions")).send().await.unwrap(), 405, "not allowed"),
    ];
    for (resp, status, needle) in cases {
        let (s, v) = json_of(resp).await;
        assert_eq!(s, status, "{v}");
        assert_envelope(&v, status);
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{needle}: {v}"
        );
    }
    let big = "x".repeat(2 * 1024 * 1024);
    let (s, v) = json_of(
        h.post(
            "/v1/chat/completions",
            &json!({"model": "openai/x", "messages": [{"role": "user", "content": big}]}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 413, "{v}");
    assert_envelope(&v, 413);
    assert_eq!(
        m.request_count(),
        0,
        "no invalid request reaches the provider"
    );
}

#[tokio::test]
async fn provider_errors_keep_upstream_fields_and_extra_fields() {
    let mut kb = HashMap::new();
    kb.insert(
        "sk-limited-11111111".to_string(),
        KeyBehaviour {
            status: Some(429),
            ..Default::default()
        },
    );
    let m = mock(MockConfig {
        key_behaviours: kb,
        ..MockConfig::default()
    })
    .await;
    // What the upstream says, directly.
    let direct: Value = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", m.base_url()))
        .bearer_auth("sk-limited-11111111")
        .json(&chat_body("gpt-4o"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let h = Harness::start(Some(
        json!({"providers": {"openai": provider(&m.base_url(), &[("k", "sk-limited-11111111")])}}),
    ))
    .await;
    let (s, v) = json_of(h.chat("openai/gpt-4o").await).await;
    assert_eq!(s, 429);
    assert_eq!(v["error"]["message"], direct["error"]["message"]);
    assert_eq!(v["error"]["type"], direct["error"]["type"]);
    assert_eq!(v["error"]["code"], direct["error"]["code"]);
    assert_eq!(v["is_bifrost_error"], false);
    let x = &v["extra_fields"];
    assert_eq!(x["provider"], "openai");
    assert_eq!(x["model_requested"], "openai/gpt-4o");
    assert_eq!(x["request_type"], "chat_completion");
    assert_eq!(x["original_model_requested"], "openai/gpt-4o");
    assert_eq!(x["resolved_model_used"], "gpt-4o");
    assert!(v["event_id"].is_string());
}

#[tokio::test]
async fn weighted_keys_share_traffic() {
    let m = mock(MockConfig::default()).await;
    let cfg = json!({"providers": {"openai": {
        "keys": [
            {"name": "a", "value": "sk-aaaaaaaaaaaaaaaa", "weight": 3},
            {"name": "b", "value": "sk-bbbbbbbbbbbbbbbb", "weight": 1},
            {"name": "off", "value": "sk-offfffffffffff", "weight": 100, "enabled": false},
            {"name": "other-model", "value": "sk-other111111111", "weight": 100, "models": ["gpt-3.5"]}
        ],
        "network_config": {"base_url": m.base_url()}
    }}});
    let h = Harness::start(Some(cfg)).await;
    for _ in 0..200 {
        assert_eq!(h.chat("openai/gpt-4o").await.status(), 200);
    }
    let reqs = m.requests();
    let a = reqs
        .iter()
        .filter(|r| r.api_key.as_deref() == Some("sk-aaaaaaaaaaaaaaaa"))
        .count();
    let b = reqs
        .iter()
        .filter(|r| r.api_key.as_deref() == Some("sk-bbbbbbbbbbbbbbbb"))
        .count();
    assert_eq!(
        a + b,
        200,
        "disabled keys and keys for other models are never used"
    );
    // 3:1 split; with 200 draws, a is far from both 50% and 100%.
    assert!((120..=185).contains(&a), "a={a} b={b}");
}

#[tokio::test]
async fn bare_model_resolves_through_key_model_lists_and_key_pinning() {
    let m = mock(MockConfig::default()).await;
    let cfg = json!({"providers": {"openai": {
        "keys": [
            {"id": "key-a", "name": "a", "value": "sk-aaaaaaaaaaaaaaaa", "models": ["gpt-4o"]},
            {"id": "key-b", "name": "b", "value": "sk-bbbbbbbbbbbbbbbb", "models": ["gpt-4o"]}
        ],
        "network_config": {"base_url": m.base_url()}
    }}});
    let h = Harness::start(Some(cfg)).await;
    let (s, v) = json_of(h.chat("gpt-4o").await).await;
    assert_eq!(s, 200, "{v}");
    for _ in 0..5 {
        let r = h
            .http
            .post(h.url("/v1/chat/completions"))
            .header("x-bf-api-key", "b")
            .json(&chat_body("openai/gpt-4o"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            m.requests().last().unwrap().api_key.as_deref(),
            Some("sk-bbbbbbbbbbbbbbbb")
        );
    }
    let r = h
        .http
        .post(h.url("/v1/chat/completions"))
        .header("x-bf-api-key-id", "key-a")
        .header("x-bf-eh-openai-organization", "org-123")
        .json(&chat_body("openai/gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let last = m.requests().last().unwrap().clone();
    assert_eq!(last.api_key.as_deref(), Some("sk-aaaaaaaaaaaaaaaa"));
    assert!(
        last.headers
            .iter()
            .any(|(k, v)| k == "openai-organization" && v == "org-123")
    );
}

/// The binary's default: connections served by threads that each run their own runtime
/// (and their own upstream pool). Requests over many connections, a stream, the management
/// API, and a graceful shutdown that lets an in-flight request finish.
#[tokio::test]
async fn serve_threads_serve_requests_streams_and_shut_down() {
    let m = mock(MockConfig {
        stream_chunks: 4,
        ..MockConfig::default()
    })
    .await;
    let (_dir, opts) = common::serve_thread_options(&m.base_url(), 2);
    let gw = causeway_server::Gateway::start(opts).await.unwrap();
    let url = gw.url();
    // Separate clients: separate connections, spread over the threads.
    let calls = (0..16).map(|_| {
        let url = url.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{url}/v1/chat/completions"))
                .json(&chat_body("openai/gpt-4o"))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let v: Value = r.json().await.unwrap();
            (status, content_of(&v).to_owned())
        }
    });
    for (status, content) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200);
        assert_eq!(content, "Hello from mock-provider");
    }
    let http = reqwest::Client::new();
    let mut body = chat_body("openai/gpt-4o");
    body["stream"] = json!(true);
    let text = http
        .post(format!("{url}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let providers: Value = http
        .get(format!("{url}/api/providers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(providers["total"], 1, "{providers}");

    // A slow request in flight while shutting down still completes.
    m.set_config(MockConfig {
        latency: Duration::from_millis(300),
        ..MockConfig::default()
    });
    let slow = tokio::spawn({
        let url = url.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/chat/completions"))
                .json(&chat_body("openai/gpt-4o"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    gw.shutdown().await;
    assert_eq!(slow.await.unwrap().unwrap(), 200);
    assert!(
        reqwest::Client::new()
            .get(format!("{url}/health"))
            .send()
            .await
            .is_err(),
        "no longer listening after shutdown"
    );
}

static QUIET_ON_SERVE_THREAD: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);
static QUIET_ELSEWHERE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn count_quiet_call() {
    let on_serve_thread = std::thread::current()
        .name()
        .is_some_and(|n| n.starts_with("causeway-serve-"));
    let counter = if on_serve_thread {
        &QUIET_ON_SERVE_THREAD
    } else {
        &QUIET_ELSEWHERE
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// The binary releases a serve thread's cached memory when the thread goes quiet: the hook
/// runs on the serve thread itself, a few times once requests stop, then no more.
#[tokio::test]
async fn a_serve_thread_calls_the_quiet_hook_after_requests_stop_then_stops() {
    use std::sync::atomic::Ordering::SeqCst;
    let m = mock(MockConfig::default()).await;
    let (_dir, mut opts) = common::serve_thread_options(&m.base_url(), 1);
    opts.on_serve_thread_quiet = Some(count_quiet_call);
    let gw = causeway_server::Gateway::start(opts).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(QUIET_ON_SERVE_THREAD.load(SeqCst), 0, "nothing served yet");
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .json(&chat_body("openai/gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while QUIET_ON_SERVE_THREAD.load(SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no quiet call within 4 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A few more, one a second, then it stops until the thread serves again: wait until the
    // count holds still for 2.5 s (ticks are 1 s apart), however slowly a busy machine ticks.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut settled = QUIET_ON_SERVE_THREAD.load(SeqCst);
    loop {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let now = QUIET_ON_SERVE_THREAD.load(SeqCst);
        if now == settled {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "kept calling while idle: {now} calls"
        );
        settled = now;
    }
    assert!((2..=6).contains(&settled), "{settled} quiet calls");
    assert_eq!(
        QUIET_ELSEWHERE.load(SeqCst),
        0,
        "called off the serve thread"
    );
    gw.shutdown().await;
}

/// An upstream that answers every request on every connection with `200` and `body`.
async fn fixed_upstream(body: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 16 * 1024];
                loop {
                    // One request: its head, then as many body bytes as it announces.
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
                    let Some(head_end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length: usize = text[..head_end]
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if seen.len() < head_end + 4 + length {
                        continue;
                    }
                    seen.clear();
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// A complete answer is checked to be JSON before it is passed on: a broken one is a 502 in
/// the envelope, not garbage handed to the client; a valid one passes byte for byte.
#[tokio::test]
async fn an_answer_that_is_not_json_is_a_502_and_a_json_one_passes_unchanged() {
    let valid = r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"caf\u00e9 \"ok\""},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#;
    let broken: [&'static str; 4] = [
        r#"{"id":"x","choices":[{"index":0,}]}"#,
        r#"{"id":"x","choices":[{"message":{"content":"cut off"#,
        "{\"id\":\"x\",\"content\":\"a raw\ncontrol character\"}",
        r#"{"id":"x"} trailing"#,
    ];
    for (body, want) in std::iter::once((valid, 200)).chain(broken.map(|b| (b, 502))) {
        let url = fixed_upstream(body).await;
        let h = Harness::start(Some(json!({"providers": {"openai": provider(
            &format!("{url}/v1"),
            &[("k1", "sk-one-111111111111")]
        )}})))
        .await;
        let resp = h.chat("openai/gpt-4o").await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, want, "{body} -> {text}");
        if want == 200 {
            assert_eq!(text, valid);
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["error"]["type"], "invalid_provider_response", "{text}");
        }
    }
}
