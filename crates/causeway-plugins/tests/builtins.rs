//! The built-in `mocker` and `request_guard` plugins run through a `PluginChain`, as the server
//! runs them: rule matching, weighted and probabilistic answers, OpenAI-shaped bodies and
//! chunks, guard blocking and redaction in both directions, and config rejections.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use causeway_core::{
    GatewayError, LlmRequest, LlmResponse, RawObject, RequestContext, RequestType, RouteInfo,
};
use causeway_plugins::builtin::mocker::Mocker;
use causeway_plugins::builtin::request_guard::RequestGuard;
use causeway_plugins::{ChainEntry, Plugin, PluginChain};
use futures_util::StreamExt;
use serde_json::{Value, json};

fn entry<P: Plugin + 'static>(p: P) -> ChainEntry {
    ChainEntry {
        name: p.name().to_owned(),
        hooks: p.hooks(),
        plugin: Arc::new(p),
        health: Default::default(),
    }
}

fn mocker(cfg: Value) -> PluginChain {
    PluginChain::new(vec![entry(Mocker::from_config(&cfg).unwrap())])
}

fn guard(cfg: Value) -> PluginChain {
    PluginChain::new(vec![entry(RequestGuard::from_config(&cfg).unwrap())])
}

fn ctx() -> RequestContext {
    RequestContext::new("req-1", http::HeaderMap::new())
}

fn request(rt: RequestType, target: &str, body: Value) -> LlmRequest {
    let (provider, model) = target.split_once('/').unwrap();
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    LlmRequest {
        request_type: rt,
        provider: provider.into(),
        model: model.into(),
        fallbacks: vec![],
        stream,
        body: RawObject::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap(),
    }
}

fn chat(target: &str, text: &str) -> LlmRequest {
    request(
        RequestType::ChatCompletion,
        target,
        json!({"messages":[{"role":"user","content":text}]}),
    )
}

/// Runs the pre hooks; `None` means the request would go on to the provider.
async fn pre(
    chain: &PluginChain,
    c: &mut RequestContext,
    r: &mut LlmRequest,
) -> Option<Result<LlmResponse, GatewayError>> {
    chain.run_pre_llm(c, r).await.0
}

async fn pre1(
    chain: &PluginChain,
    r: &mut LlmRequest,
) -> Option<Result<LlmResponse, GatewayError>> {
    pre(chain, &mut ctx(), r).await
}

fn complete(resp: LlmResponse) -> (Value, RouteInfo) {
    match resp {
        LlmResponse::Complete { body, route } => (serde_json::from_slice(&body).unwrap(), route),
        LlmResponse::Stream { .. } => panic!("expected a complete response"),
    }
}

/// The message content of a mocked chat completion, or `None` if the request passed through.
async fn answer(chain: &PluginChain, r: &mut LlmRequest) -> Option<String> {
    let resp = pre1(chain, r).await?.unwrap();
    let (v, _) = complete(resp);
    Some(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

fn success_rule(name: &str, message: &str) -> Value {
    json!({"name": name, "responses": [{"type":"success","content":{"message": message}}]})
}

// ------------------------------------------------------------------------------------------
// mocker

#[tokio::test]
async fn mocker_matches_providers_and_models() {
    let mut by_provider = success_rule("anthropic-only", "from rule");
    by_provider["conditions"] = json!({"providers":["anthropic"]});
    let mut by_model = success_rule("mini-models", "mini");
    by_model["conditions"] = json!({"models":["regex:-mini$", "openai/o1"]});
    let chain = mocker(json!({"rules":[by_provider, by_model]}));

    assert_eq!(
        answer(&chain, &mut chat("anthropic/claude-3-5-sonnet", "hi"))
            .await
            .as_deref(),
        Some("from rule")
    );
    assert_eq!(
        answer(&chain, &mut chat("openai/gpt-4o-mini", "hi"))
            .await
            .as_deref(),
        Some("mini")
    );
    assert_eq!(
        answer(&chain, &mut chat("openai/o1", "hi"))
            .await
            .as_deref(),
        Some("mini")
    );
    assert_eq!(answer(&chain, &mut chat("azure/o1", "hi")).await, None);
    assert_eq!(answer(&chain, &mut chat("openai/gpt-4o", "hi")).await, None);
}

#[tokio::test]
async fn mocker_matches_message_regex_over_all_text() {
    let mut rule = success_rule("support", "routed to support");
    rule["conditions"] = json!({"message_regex":"(?i)system says.*\\n.*NEED HELP"});
    let chain = mocker(json!({"rules":[rule]}));
    let mut r = request(
        RequestType::ChatCompletion,
        "openai/gpt-4o",
        json!({"messages":[
            {"role":"system","content":"System says hello"},
            {"role":"user","content":[{"type":"text","text":"I need help"},{"type":"image_url","image_url":{"url":"data:x"}}]}
        ]}),
    );
    assert_eq!(
        answer(&chain, &mut r).await.as_deref(),
        Some("routed to support")
    );
    assert_eq!(
        answer(&chain, &mut chat("openai/gpt-4o", "all good")).await,
        None
    );

    // Text completions match against the prompt.
    let mut r = request(
        RequestType::TextCompletion,
        "openai/gpt-3.5-turbo-instruct",
        json!({"prompt":"system says x\nneed help"}),
    );
    let (v, _) = complete(pre1(&chain, &mut r).await.unwrap().unwrap());
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], "routed to support");
}

#[tokio::test]
async fn mocker_matches_request_size() {
    let small = chat("openai/gpt-4o", "hi");
    let small_len = small.body.to_bytes().len() as u64;
    let mut big_rule = success_rule("big", "big body");
    big_rule["conditions"] = json!({"request_size":{"min": small_len + 1}});
    let mut small_rule = success_rule("small", "small body");
    small_rule["conditions"] = json!({"request_size":{"min": 0, "max": small_len}});
    let chain = mocker(json!({"rules":[big_rule, small_rule]}));

    assert_eq!(
        answer(&chain, &mut small.clone()).await.as_deref(),
        Some("small body")
    );
    let mut big = chat("openai/gpt-4o", &"x".repeat(500));
    assert_eq!(answer(&chain, &mut big).await.as_deref(), Some("big body"));
}

#[tokio::test]
async fn mocker_priority_then_config_order_and_disabled_rules() {
    let mut disabled = success_rule("disabled", "disabled");
    disabled["priority"] = json!(100);
    disabled["enabled"] = json!(false);
    let mut low = success_rule("low", "low");
    low["priority"] = json!(-5);
    let mut first_tie = success_rule("tie-a", "tie-a");
    first_tie["priority"] = json!(10);
    let mut second_tie = success_rule("tie-b", "tie-b");
    second_tie["priority"] = json!(10);
    let chain = mocker(json!({"rules":[low, disabled, first_tie, second_tie]}));
    let mut c = ctx();
    let resp = pre(&chain, &mut c, &mut chat("openai/gpt-4o", "hi"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        complete(resp).0["choices"][0]["message"]["content"],
        "tie-a"
    );
    assert_eq!(
        c.values["mocker"],
        json!({"rule":"tie-a","response":"success"})
    );
}

#[tokio::test]
async fn mocker_probability_zero_and_one() {
    let mut never = success_rule("never", "never");
    never["probability"] = json!(0);
    // A rule that matches but does not fire lets the request through (as in Bifrost), even
    // with a default behaviour and lower-priority rules.
    let chain = mocker(
        json!({"default_behavior":"success","rules":[never, success_rule("later","later")]}),
    );
    for _ in 0..200 {
        assert_eq!(answer(&chain, &mut chat("openai/gpt-4o", "hi")).await, None);
    }
    let mut always = success_rule("always", "always");
    always["probability"] = json!(1.0);
    let chain = mocker(json!({"rules":[always]}));
    for _ in 0..200 {
        assert_eq!(
            answer(&chain, &mut chat("openai/gpt-4o", "hi"))
                .await
                .as_deref(),
            Some("always")
        );
    }
}

#[tokio::test]
async fn mocker_probability_half_fires_sometimes() {
    let mut half = success_rule("half", "half");
    half["probability"] = json!(0.5);
    let chain = mocker(json!({"rules":[half]}));
    let mut fired = 0;
    for _ in 0..2000 {
        if answer(&chain, &mut chat("openai/gpt-4o", "hi"))
            .await
            .is_some()
        {
            fired += 1;
        }
    }
    assert!((800..=1200).contains(&fired), "fired {fired} of 2000");
}

#[tokio::test]
async fn mocker_weights() {
    let rule = json!({"name":"w","responses":[
        {"type":"success","weight":3,"content":{"message":"heavy"}},
        {"type":"success","weight":1,"content":{"message":"light"}},
        {"type":"success","weight":0,"content":{"message":"never"}}
    ]});
    let chain = mocker(json!({"rules":[rule]}));
    let (mut heavy, mut light) = (0, 0);
    for _ in 0..4000 {
        match answer(&chain, &mut chat("openai/gpt-4o", "hi"))
            .await
            .as_deref()
        {
            Some("heavy") => heavy += 1,
            Some("light") => light += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // Expected 3000 / 1000; the bounds are many standard deviations wide.
    assert!((2700..=3300).contains(&heavy), "heavy {heavy}");
    assert_eq!(heavy + light, 4000);
}

#[tokio::test]
async fn mocker_success_body_is_an_openai_chat_completion() {
    let chain = mocker(
        json!({"rules":[{"name":"r","responses":[{"type":"success","content":{
            "message":"Hello there","model":"mock-model","finish_reason":"length",
            "usage":{"prompt_tokens":11,"completion_tokens":22}
        }}]}]}),
    );
    let resp = pre1(&chain, &mut chat("openai/gpt-4o", "hi"))
        .await
        .unwrap()
        .unwrap();
    let (v, route) = complete(resp);
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-mock-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "mock-model");
    assert_eq!(v["choices"][0]["index"], 0);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello there");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens":11,"completion_tokens":22,"total_tokens":33})
    );
    assert_eq!(route.provider, "openai");
    assert_eq!(route.model, "gpt-4o");
    assert_eq!(route.key_id, None);

    // Without a model override the request model is echoed, and usage is estimated.
    let chain = mocker(json!({"rules":[success_rule("r", "four words right here")]}));
    let resp = pre1(&chain, &mut chat("openai/gpt-4o", "12345678"))
        .await
        .unwrap()
        .unwrap();
    let (v, _) = complete(resp);
    assert_eq!(v["model"], "gpt-4o");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 2);
    assert_eq!(v["usage"]["completion_tokens"], 6);
    assert_eq!(v["usage"]["total_tokens"], 8);
}

#[tokio::test]
async fn mocker_embeddings_get_zero_vectors() {
    let chain = mocker(json!({"default_behavior":"success","rules":[]}));
    let mut r = request(
        RequestType::Embedding,
        "openai/text-embedding-3-small",
        json!({"input":"hello"}),
    );
    let (v, _) = complete(pre1(&chain, &mut r).await.unwrap().unwrap());
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    assert_eq!(v["data"][0]["object"], "embedding");
    assert_eq!(v["data"][0]["embedding"], json!(vec![0.0; 8]));
    assert_eq!(v["usage"]["prompt_tokens"], v["usage"]["total_tokens"]);
}

#[tokio::test]
async fn mocker_error_responses() {
    let chain = mocker(json!({"rules":[
        {"name":"limited","conditions":{"models":["rate-limited"]},"responses":[{"type":"error","allow_fallbacks":false,
            "error":{"message":"Rate limit exceeded","type":"rate_limit","code":"429","status_code":429}}]},
        {"name":"flaky","responses":[{"type":"error","error":{"message":"upstream broke","code":503}}]}
    ]}));
    let err = pre1(&chain, &mut chat("openai/rate-limited", "hi"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.status(), 429);
    assert_eq!(err.message(), "Rate limit exceeded");
    assert_eq!(err.details().error_type.as_deref(), Some("rate_limit"));
    assert_eq!(err.details().code.as_deref(), Some("429"));
    assert!(!err.details().allow_fallbacks);
    assert!(!err.details().gateway_fault);
    let env = err.to_envelope(Some("req-1"));
    assert_eq!(env["status_code"], 429);
    assert_eq!(env["error"]["type"], "rate_limit");
    assert_eq!(env["error"]["code"], "429");

    let err = pre1(&chain, &mut chat("openai/gpt-4o", "hi"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.status(), 500, "status_code defaults to 500");
    assert_eq!(
        err.details().code.as_deref(),
        Some("503"),
        "numeric codes are accepted"
    );
    assert!(
        err.details().allow_fallbacks,
        "allow_fallbacks defaults to true"
    );

    // A stream request gets the error too, not a stream.
    let mut r = request(
        RequestType::ChatCompletion,
        "openai/gpt-4o",
        json!({"messages":[{"role":"user","content":"hi"}],"stream":true}),
    );
    assert_eq!(
        pre1(&chain, &mut r).await.unwrap().unwrap_err().status(),
        500
    );
}

async fn stream_chunks(chain: &PluginChain, include_usage: bool) -> Vec<Value> {
    let mut body = json!({"messages":[{"role":"user","content":"hi"}],"stream":true});
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    let mut r = request(RequestType::ChatCompletion, "openai/gpt-4o", body);
    let Some(Ok(LlmResponse::Stream { chunks, route })) = pre1(chain, &mut r).await else {
        panic!("expected a stream");
    };
    assert_eq!(
        (route.provider.as_str(), route.model.as_str()),
        ("openai", "gpt-4o")
    );
    chunks
        .map(|c| serde_json::from_slice::<Value>(&c.unwrap()).unwrap())
        .collect()
        .await
}

#[tokio::test]
async fn mocker_streams_openai_chunks() {
    let message = "The quick brown fox jumps over the lazy dog";
    let chain = mocker(
        json!({"rules":[{"name":"s","responses":[{"type":"success","content":{
            "message": message, "usage": {"prompt_tokens": 5, "completion_tokens": 9}
        }}]}]}),
    );
    for include_usage in [false, true] {
        let chunks = stream_chunks(&chain, include_usage).await;
        let id = chunks[0]["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("chatcmpl-mock-"));
        for c in &chunks {
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["id"], id.as_str(), "one id per stream");
            assert_eq!(c["model"], "gpt-4o");
            assert!(c["created"].is_u64());
        }
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let content_chunks: Vec<&Value> = chunks
            .iter()
            .filter(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty())
            })
            .collect();
        assert!(
            content_chunks.len() > 1,
            "content is split into several chunks"
        );
        let text: String = content_chunks
            .iter()
            .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
            .collect();
        assert_eq!(text, message);
        let finish: Vec<&Value> = chunks
            .iter()
            .filter(|c| !c["choices"][0]["finish_reason"].is_null())
            .collect();
        assert_eq!(finish.len(), 1);
        assert_eq!(finish[0]["choices"][0]["finish_reason"], "stop");
        let usage_chunk = chunks.last().unwrap();
        if include_usage {
            assert_eq!(usage_chunk["choices"], json!([]));
            assert_eq!(usage_chunk["usage"]["total_tokens"], 14);
            assert!(
                chunks[..chunks.len() - 1]
                    .iter()
                    .all(|c| c["usage"].is_null())
            );
        } else {
            assert!(chunks.iter().all(|c| c.get("usage").is_none()));
            assert_eq!(usage_chunk["choices"][0]["finish_reason"], "stop");
        }
    }
}

#[tokio::test]
async fn mocker_default_behaviours_and_disabled() {
    let rule = {
        let mut r = success_rule("never-matches", "x");
        r["conditions"] = json!({"providers":["nobody"]});
        r
    };
    let chain = mocker(json!({"rules":[rule.clone()]}));
    assert_eq!(
        answer(&chain, &mut chat("openai/gpt-4o", "hi")).await,
        None,
        "passthrough"
    );

    let chain = mocker(json!({"default_behavior":"success","rules":[rule.clone()]}));
    assert_eq!(
        answer(&chain, &mut chat("openai/gpt-4o", "hi"))
            .await
            .as_deref(),
        Some("This is a mock response from the mocker plugin")
    );

    let chain = mocker(json!({"default_behavior":"error","rules":[rule.clone()]}));
    let mut c = ctx();
    let err = pre(&chain, &mut c, &mut chat("openai/gpt-4o", "hi"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.status(), 500);
    assert_eq!(
        c.values["mocker"],
        json!({"rule": null, "response": "error"})
    );

    let chain = mocker(
        json!({"enabled":false,"default_behavior":"success","rules":[success_rule("all","all")]}),
    );
    let mut c = ctx();
    assert_eq!(
        pre(&chain, &mut c, &mut chat("openai/gpt-4o", "hi"))
            .await
            .map(|_| ()),
        None
    );
    assert!(c.values.is_empty());

    // List-models requests are never mocked.
    let chain = mocker(json!({"default_behavior":"success"}));
    let mut r = request(RequestType::ListModels, "openai/x", json!({}));
    assert!(pre1(&chain, &mut r).await.is_none());
}

#[tokio::test]
async fn mocker_applies_latency() {
    let mut rule = success_rule("slow", "slow");
    rule["latency"] = json!({"type":"fixed","min":"60ms"});
    let chain = mocker(json!({"global_latency":{"type":"fixed","min":5000},"rules":[rule]}));
    let start = Instant::now();
    assert!(
        answer(&chain, &mut chat("openai/gpt-4o", "hi"))
            .await
            .is_some()
    );
    let took = start.elapsed();
    // The rule's latency overrides the (much longer) global one.
    assert!(
        took >= Duration::from_millis(60) && took < Duration::from_secs(4),
        "{took:?}"
    );

    let chain = mocker(
        json!({"global_latency":{"type":"uniform","min":20,"max":40},"rules":[success_rule("r","r")]}),
    );
    let start = Instant::now();
    assert!(
        answer(&chain, &mut chat("openai/gpt-4o", "hi"))
            .await
            .is_some()
    );
    assert!(start.elapsed() >= Duration::from_millis(20));
}

// ------------------------------------------------------------------------------------------
// request_guard

#[tokio::test]
async fn guard_blocks_requests() {
    let chain = guard(json!({
        "block_status": 403,
        "rules": [{"name":"no-secrets","pattern":"\\bsk-[a-z0-9]{8,}","action":"block"}]
    }));
    let mut c = ctx();
    let mut r = chat("openai/gpt-4o", "my key is SK-abcdefgh1234");
    let (out, ran) = chain.run_pre_llm(&mut c, &mut r).await;
    assert_eq!(ran, 1);
    let err = out.unwrap().unwrap_err();
    assert_eq!(err.status(), 403);
    assert_eq!(err.kind(), Some("request_blocked"));
    assert_eq!(err.details().code.as_deref(), Some("no-secrets"));
    assert_eq!(err.message(), "request blocked by guard rule no-secrets");
    assert!(
        !err.details().allow_fallbacks,
        "a blocked request must not fall back"
    );
    let env = err.to_envelope(Some("req-1"));
    assert_eq!(env["type"], "request_blocked");
    assert_eq!(env["status_code"], 403);
    assert_eq!(env["error"]["code"], "no-secrets");
    assert_eq!(c.values["request_guard"]["blocked"], "no-secrets");

    // Case-sensitive rules and clean requests pass.
    let chain = guard(json!({
        "block_message": "nope ({rule})",
        "rules": [{"name":"cs","pattern":"DROP TABLE","action":"block","case_insensitive":false}]
    }));
    assert!(
        pre1(&chain, &mut chat("openai/gpt-4o", "drop table x"))
            .await
            .is_none()
    );
    let err = pre1(&chain, &mut chat("openai/gpt-4o", "DROP TABLE x"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.status(), 400, "block_status defaults to 400");
    assert_eq!(err.message(), "nope (cs)");
}

#[tokio::test]
async fn guard_redacts_request_text_in_place() {
    let chain = guard(json!({"rules":[
        {"name":"email","pattern":"[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,}","action":"redact"},
        {"name":"ssn","pattern":"\\b\\d{3}-\\d{2}-\\d{4}\\b","action":"redact"}
    ]}));
    let body = br#"{"messages":[{"role":"system","content":"Be brief.","name":"sys"},{"role":"user","content":[{"type":"text","text":"Mail John@Example.com or jane@x.org, SSN 123-45-6789"},{"type":"image_url","image_url":{"url":"https://e.x/a.png","detail":"low"}}]},{"role":"assistant","content":"noted a@b.cc"}],"temperature":0.25,"max_tokens":1.0e2,"metadata":{"email":"keep@me.com"},"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}"#;
    let original = RawObject::from_slice(body).unwrap();
    let mut r = request(RequestType::ChatCompletion, "openai/gpt-4o", json!({}));
    r.body = original.clone();
    let mut c = ctx();
    assert!(
        pre(&chain, &mut c, &mut r).await.is_none(),
        "redaction continues"
    );

    // Every field other than `messages` is forwarded byte for byte, in order.
    let keys: Vec<&str> = r.body.keys().collect();
    assert_eq!(keys, original.keys().collect::<Vec<_>>());
    for (k, v) in original.iter().filter(|(k, _)| *k != "messages") {
        assert_eq!(r.body.get(k).unwrap().get(), v.get(), "field {k}");
    }
    let messages: Value = r.body.get_as("messages").unwrap().unwrap();
    assert_eq!(
        messages,
        json!([
            {"role":"system","content":"Be brief.","name":"sys"},
            {"role":"user","content":[
                {"type":"text","text":"Mail [REDACTED] or [REDACTED], SSN [REDACTED]"},
                {"type":"image_url","image_url":{"url":"https://e.x/a.png","detail":"low"}}
            ]},
            {"role":"assistant","content":"noted [REDACTED]"}
        ])
    );
    assert_eq!(c.values["request_guard"]["redactions"], 4);
    assert_eq!(c.values["request_guard"]["rules"], json!(["email", "ssn"]));

    // A clean request is left exactly as it was and nothing is recorded.
    let mut r = chat("openai/gpt-4o", "nothing to see");
    let before = r.body.to_bytes();
    let mut c = ctx();
    assert!(pre(&chain, &mut c, &mut r).await.is_none());
    assert_eq!(r.body.to_bytes(), before);
    assert!(c.values.is_empty());
}

fn completion(content: &str) -> Result<LlmResponse, GatewayError> {
    let body = json!({
        "id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o",
        "choices":[{"index":0,"message":{"role":"assistant","content":content},"finish_reason":"stop"}],
        "usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}
    });
    Ok(LlmResponse::Complete {
        body: Bytes::from(serde_json::to_vec(&body).unwrap()),
        route: RouteInfo {
            provider: "openai".into(),
            model: "gpt-4o".into(),
            ..Default::default()
        },
    })
}

#[tokio::test]
async fn guard_redacts_and_blocks_responses() {
    let chain = guard(json!({"redact_with":"***","rules":[
        {"name":"phone","pattern":"\\d{3}-\\d{4}","action":"redact","applies_to":"response"},
        {"name":"forbidden","pattern":"launch codes","action":"block","applies_to":"both"},
        {"name":"request-only","pattern":"hello","action":"block"}
    ]}));
    let mut c = ctx();
    // Request-only rules do not touch responses.
    let out = chain
        .run_post_llm(&mut c, 1, completion("hello, call 555-1234"))
        .await;
    let (v, route) = complete(out.unwrap());
    assert_eq!(v["choices"][0]["message"]["content"], "hello, call ***");
    assert_eq!(v["usage"]["total_tokens"], 3);
    assert_eq!(route.provider, "openai");
    assert_eq!(c.values["request_guard"]["redactions"], 1);

    let mut c = ctx();
    let err = chain
        .run_post_llm(&mut c, 1, completion("the LAUNCH CODES are 0000"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some("response_blocked"));
    assert_eq!(err.details().code.as_deref(), Some("forbidden"));
    assert_eq!(err.status(), 400);
    assert_eq!(c.values["request_guard"]["blocked"], "forbidden");

    // Clean responses keep their exact bytes.
    let Ok(LlmResponse::Complete { body: before, .. }) = completion("fine") else {
        unreachable!()
    };
    let out = chain
        .run_post_llm(&mut ctx(), 1, completion("fine"))
        .await
        .unwrap();
    let LlmResponse::Complete { body: after, .. } = out else {
        panic!()
    };
    assert_eq!(before, after);
}

fn chunk(content: &str) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&json!({
            "id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o",
            "choices":[{"index":0,"delta":{"content":content},"finish_reason":null}]
        }))
        .unwrap(),
    )
}

#[tokio::test]
async fn guard_redacts_and_blocks_stream_chunks() {
    let chain = guard(json!({"rules":[
        {"name":"phone","pattern":"\\d{3}-\\d{4}","action":"redact","applies_to":"response"},
        {"name":"forbidden","pattern":"launch codes","action":"block","applies_to":"response"}
    ]}));
    let mut c = ctx();
    let clean = chunk("hello ");
    let out = chain
        .run_stream_chunk(&mut c, clean.clone())
        .unwrap()
        .unwrap();
    assert_eq!(out, clean, "clean chunks pass unchanged");

    let out = chain
        .run_stream_chunk(&mut c, chunk("call 555-1234 now"))
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["choices"][0]["delta"]["content"], "call [REDACTED] now");
    assert_eq!(v["object"], "chat.completion.chunk");
    let out = chain
        .run_stream_chunk(&mut c, chunk("or 555-9999"))
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["choices"][0]["delta"]["content"], "or [REDACTED]");
    assert_eq!(
        c.values["request_guard"]["redactions"], 2,
        "counts add up across chunks"
    );

    // Documented limitation: a match split across chunks is not caught.
    assert_eq!(
        chain
            .run_stream_chunk(&mut c, chunk("555-"))
            .unwrap()
            .unwrap(),
        chunk("555-")
    );

    let err = chain
        .run_stream_chunk(&mut c, chunk("the launch codes"))
        .unwrap_err();
    assert_eq!(err.kind(), Some("response_blocked"));
    assert_eq!(err.details().code.as_deref(), Some("forbidden"));

    // The usage chunk (empty choices) and non-JSON pass through.
    let usage = Bytes::from_static(br#"{"id":"x","choices":[],"usage":{"total_tokens":3}}"#);
    assert_eq!(
        chain
            .run_stream_chunk(&mut c, usage.clone())
            .unwrap()
            .unwrap(),
        usage
    );
}

#[tokio::test]
async fn guard_then_mocker_sees_redacted_text() {
    let chain = PluginChain::new(vec![
        entry(
            RequestGuard::from_config(&json!({"rules":[
                {"name":"card","pattern":"\\b\\d{4}( \\d{4}){3}\\b","action":"redact"}
            ]}))
            .unwrap(),
        ),
        entry(
            Mocker::from_config(&json!({"rules":[{
                "name":"saw-redaction",
                "conditions":{"message_regex":"\\[REDACTED\\]"},
                "responses":[{"type":"success","content":{"message":"redacted upstream"}}]
            }]}))
            .unwrap(),
        ),
    ]);
    let mut c = ctx();
    let mut r = chat("openai/gpt-4o", "card 4111 1111 1111 1111");
    let (out, ran) = chain.run_pre_llm(&mut c, &mut r).await;
    assert_eq!(ran, 2);
    let (v, _) = complete(out.unwrap().unwrap());
    assert_eq!(v["choices"][0]["message"]["content"], "redacted upstream");
    assert_eq!(c.values["request_guard"]["redactions"], 1);
    assert_eq!(c.values["mocker"]["rule"], "saw-redaction");
}

// ------------------------------------------------------------------------------------------
// config rejections

#[test]
fn config_rejections_name_the_field() {
    let ok = json!({"type":"success","content":{"message":"x"}});
    let cases: Vec<(Result<(), String>, &str, &str)> = vec![
        (
            mock_err(
                json!({"rules":[{"name":"r","conditions":{"message_regex":"(unclosed"},"responses":[ok]}]}),
            ),
            "rules[0].conditions.message_regex",
            "invalid regex",
        ),
        (
            mock_err(json!({"rules":[{"name":"r","probability":2,"responses":[ok]}]})),
            "rules[0].probability",
            "between 0 and 1",
        ),
        (
            mock_err(
                json!({"rules":[{"name":"r","responses":[ok,{"type":"error","error":{"message":"m","status_code":200}}]}]}),
            ),
            "rules[0].responses[1].error.status_code",
            "between 400 and 599",
        ),
        (
            mock_err(
                json!({"rules":[{"name":"r","responses":[ok,{"type":"success","weight":-0.5,"content":{"message":"y"}}]}]}),
            ),
            "rules[0].responses[1].weight",
            ">= 0",
        ),
        (
            mock_err(
                json!({"rules":[{"name":"r","responses":[{"type":"success","content":{"message":"x","finsh_reason":"stop"}}]}]}),
            ),
            "rules[0].responses[0].content.finsh_reason",
            "unknown field",
        ),
        (
            mock_err(json!({"enabeld":true})),
            "enabeld",
            "unknown field",
        ),
        (
            mock_err(
                json!({"rules":[{"name":"r","latency":{"type":"fixed","min":"fast"}, "responses":[ok]}]}),
            ),
            "rules[0].latency.min",
            "invalid duration",
        ),
        (
            guard_err(json!({"rules":[{"name":"g","pattern":"[a-","action":"block"}]})),
            "rules[0].pattern",
            "invalid regex",
        ),
        (
            guard_err(
                json!({"rules":[{"name":"g","pattern":"x","action":"block","case_sensitive":true}]}),
            ),
            "rules[0].case_sensitive",
            "unknown field",
        ),
        (
            guard_err(json!({"block_status":200})),
            "block_status",
            "between 400 and 499",
        ),
        (
            guard_err(json!({"rules":[{"name":"g","pattern":"x"}]})),
            "rules[0].action",
            "required field is missing",
        ),
    ];
    for (result, field, reason) in cases {
        let message = result.unwrap_err();
        let (got_field, got_reason) = message.split_once(": ").unwrap();
        assert_eq!(got_field, field, "{message}");
        assert!(got_reason.contains(reason), "{message}");
    }
}

fn mock_err(cfg: Value) -> Result<(), String> {
    Mocker::from_config(&cfg)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn guard_err(cfg: Value) -> Result<(), String> {
    RequestGuard::from_config(&cfg)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn names_and_hooks() {
    let m = Mocker::from_config(&json!({})).unwrap();
    assert_eq!(m.name(), "mocker");
    let h = m.hooks();
    assert!(h.pre_llm && !h.post_llm && !h.stream_chunk && !h.http_pre && !h.http_post);
    assert_eq!(h.types(), ["llm"]);

    let g = RequestGuard::from_config(&json!({"rules":[
        {"name":"a","pattern":"x","action":"redact","applies_to":"response"}
    ]}))
    .unwrap();
    assert_eq!(g.name(), "request_guard");
    let h = g.hooks();
    assert!(!h.pre_llm && h.post_llm && h.stream_chunk);
    assert_eq!(h.types(), ["llm", "http"]);
}
