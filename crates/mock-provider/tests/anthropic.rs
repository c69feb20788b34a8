#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Anthropic Messages dialect over real HTTP: plain and streamed messages, tool use, the model
//! list and the error envelope.

mod common;

use std::collections::HashMap;

use common::{Harness, messages_body, parse_sse};
use mock_provider::{KeyBehaviour, MockConfig};
use serde_json::{Value, json};

const CONTENT: &str = "Hello from mock-provider";

fn with_tools(mut body: Value) -> Value {
    body["tools"] = json!([
        {"name": "get_weather", "description": "w", "input_schema": {"type": "object"}},
        {"name": "other", "input_schema": {"type": "object"}}
    ]);
    body
}

#[tokio::test]
async fn message_has_anthropic_shape() {
    let h = Harness::start(MockConfig::default()).await;
    let res = h.anthropic(Some("sk-ant"), messages_body(false)).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("msg_mock_"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-3-5-haiku-latest");
    assert_eq!(v["content"], json!([{"type": "text", "text": CONTENT}]));
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["stop_sequence"].is_null());
    assert_eq!(v["usage"], json!({"input_tokens": 5, "output_tokens": 3}));
    assert_eq!(h.server.requests()[0].api_key.as_deref(), Some("sk-ant"));
}

#[tokio::test]
async fn message_stream_follows_the_real_event_sequence() {
    let h = Harness::start(MockConfig {
        stream_chunks: 4,
        ..MockConfig::default()
    })
    .await;
    let res = h.anthropic(Some("sk-ant"), messages_body(true)).await;
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let events = parse_sse(&res.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|e| e.name.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for e in &events {
        assert_eq!(e.json()["type"], e.name.as_deref().unwrap());
    }
    let start = events[0].json();
    assert_eq!(start["message"]["usage"]["input_tokens"], 5);
    assert_eq!(start["message"]["model"], "claude-3-5-haiku-latest");
    assert_eq!(start["message"]["content"], json!([]));
    assert_eq!(
        events[1].json()["content_block"],
        json!({"type": "text", "text": ""})
    );
    let text: String = events[3..7]
        .iter()
        .map(|e| {
            let d = e.json();
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, CONTENT);
    let delta = events[8].json();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 3);
    assert_eq!(h.server.streams_completed(), 1);
}

#[tokio::test]
async fn tools_answer_tool_use() {
    let h = Harness::start(MockConfig::default()).await;
    let v: Value = h
        .anthropic(None, with_tools(messages_body(false)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(
        v["content"],
        json!([{"type": "tool_use", "id": "toolu_mock_1", "name": "get_weather", "input": {"mock": true}}])
    );
}

#[tokio::test]
async fn streamed_tool_use_sends_input_json_deltas() {
    let h = Harness::start(MockConfig::default()).await;
    let text = h
        .anthropic(None, with_tools(messages_body(true)))
        .await
        .text()
        .await
        .unwrap();
    let events = parse_sse(&text);
    let block = events[1].json();
    assert_eq!(block["content_block"]["type"], "tool_use");
    assert_eq!(block["content_block"]["name"], "get_weather");
    assert_eq!(block["content_block"]["id"], "toolu_mock_1");
    let partial: String = events
        .iter()
        .filter(|e| e.name.as_deref() == Some("content_block_delta"))
        .map(|e| {
            let d = e.json();
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&partial).unwrap(),
        json!({"mock": true})
    );
    let delta = events
        .iter()
        .find(|e| e.name.as_deref() == Some("message_delta"))
        .unwrap();
    assert_eq!(delta.json()["delta"]["stop_reason"], "tool_use");
    assert_eq!(events.last().unwrap().name.as_deref(), Some("message_stop"));
}

#[tokio::test]
async fn models_list_in_anthropic_shape_when_versioned() {
    let h = Harness::start(MockConfig {
        models: vec!["claude-a".into(), "claude-b".into()],
        ..MockConfig::default()
    })
    .await;
    let v: Value = h
        .client
        .get(h.url("/v1/models"))
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", "k")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["has_more"], false);
    assert_eq!(v["first_id"], "claude-a");
    assert_eq!(v["last_id"], "claude-b");
    assert_eq!(v["data"][1]["type"], "model");
    assert_eq!(v["data"][1]["id"], "claude-b");
    assert!(v["data"][1]["display_name"].is_string());
    assert!(v["data"][1]["created_at"].is_string());
}

#[tokio::test]
async fn errors_use_anthropic_envelope() {
    let h = Harness::start(MockConfig {
        key_behaviours: HashMap::from([
            (
                "bad".to_owned(),
                KeyBehaviour {
                    status: Some(401),
                    ..Default::default()
                },
            ),
            (
                "slow-down".to_owned(),
                KeyBehaviour {
                    status: Some(429),
                    ..Default::default()
                },
            ),
            (
                "busy".to_owned(),
                KeyBehaviour {
                    status: Some(529),
                    ..Default::default()
                },
            ),
            (
                "broken".to_owned(),
                KeyBehaviour {
                    status: Some(500),
                    ..Default::default()
                },
            ),
        ]),
        ..MockConfig::default()
    })
    .await;
    for (key, status, kind) in [
        ("bad", 401, "authentication_error"),
        ("slow-down", 429, "rate_limit_error"),
        ("busy", 529, "overloaded_error"),
        ("broken", 500, "api_error"),
    ] {
        let res = h.anthropic(Some(key), messages_body(false)).await;
        assert_eq!(res.status(), status);
        if status == 429 {
            assert_eq!(res.headers()["retry-after"], "1");
        }
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], kind);
        assert!(v["error"]["message"].is_string());
    }
    // Anthropic keys come from x-api-key only: a bearer token is not the key.
    let res = h
        .client
        .post(h.url("/v1/messages"))
        .bearer_auth("bad")
        .header("anthropic-version", "2023-06-01")
        .json(&messages_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
