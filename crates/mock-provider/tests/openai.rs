#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! OpenAI dialect over real HTTP: chat (plain, streamed, tools, usage), completions,
//! embeddings, models and error envelopes.

mod common;

use common::{Harness, chat_body, parse_sse};
use mock_provider::MockConfig;
use serde_json::{Value, json};

const CONTENT: &str = "Hello from mock-provider";

#[tokio::test]
async fn chat_completion_has_openai_shape() {
    let h = Harness::start(MockConfig::default()).await;
    let res = h
        .openai("/v1/chat/completions", Some("sk-a"), chat_body(false))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let v: Value = res.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-mock-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "gpt-4o-mini");
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], CONTENT);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8})
    );
}

#[tokio::test]
async fn chat_stream_sends_role_content_finish_done() {
    let h = Harness::start(MockConfig::default()).await;
    let res = h
        .openai("/v1/chat/completions", Some("sk-a"), chat_body(true))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let events = parse_sse(&res.text().await.unwrap());
    // role chunk + 8 content chunks + finish chunk + [DONE]
    assert_eq!(events.len(), 11, "{events:?}");
    assert!(events.iter().all(|e| e.name.is_none()));
    assert_eq!(events.last().unwrap().data, "[DONE]");

    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| e.json())
        .collect();
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-mock-"));
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id);
        assert_eq!(c["model"], "gpt-4o-mini");
        assert!(c.get("usage").is_none());
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks[1..9]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, CONTENT);
    assert!(
        chunks[..9]
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );
    assert_eq!(chunks[9]["choices"][0]["finish_reason"], "stop");
    assert_eq!(h.server.streams_started(), 1);
    assert_eq!(h.server.streams_completed(), 1);
    assert_eq!(h.server.streams_cancelled(), 0);
}

#[tokio::test]
async fn chat_stream_include_usage_adds_usage_chunk() {
    let h = Harness::start(MockConfig {
        stream_chunks: 3,
        ..MockConfig::default()
    })
    .await;
    let mut body = chat_body(true);
    body["stream_options"] = json!({"include_usage": true});
    let res = h.openai("/v1/chat/completions", None, body).await;
    let events = parse_sse(&res.text().await.unwrap());
    assert_eq!(events.len(), 1 + 3 + 1 + 1 + 1);
    assert_eq!(events[4].json()["choices"][0]["finish_reason"], "stop");
    let usage = events[5].json();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8})
    );
    assert_eq!(events[6].data, "[DONE]");
}

fn with_tools(mut body: Value) -> Value {
    body["tools"] = json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}}
    ]);
    body
}

#[tokio::test]
async fn chat_with_tools_answers_a_tool_call() {
    let h = Harness::start(MockConfig::default()).await;
    let res = h
        .openai("/v1/chat/completions", None, with_tools(chat_body(false)))
        .await;
    let v: Value = res.json().await.unwrap();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([{"id": "call_mock_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"mock\":true}"}}])
    );
}

#[tokio::test]
async fn chat_stream_with_tools_streams_arguments() {
    let h = Harness::start(MockConfig::default()).await;
    let res = h
        .openai("/v1/chat/completions", None, with_tools(chat_body(true)))
        .await;
    let events = parse_sse(&res.text().await.unwrap());
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| e.json())
        .collect();
    let first = &chunks[0]["choices"][0]["delta"];
    assert_eq!(first["role"], "assistant");
    assert_eq!(first["tool_calls"][0]["id"], "call_mock_1");
    assert_eq!(first["tool_calls"][0]["function"]["name"], "get_weather");
    let args: String = chunks[1..chunks.len() - 1]
        .iter()
        .map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"mock": true})
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test]
async fn legacy_completion_plain_and_streamed() {
    let h = Harness::start(MockConfig::default()).await;
    let body = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "say hi"});
    let v: Value = h
        .openai("/v1/completions", None, body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], CONTENT);
    assert_eq!(v["usage"]["prompt_tokens"], 2);

    let body = json!({"model": "m", "prompt": "say hi", "stream": true});
    let text = h
        .openai("/v1/completions", None, body)
        .await
        .text()
        .await
        .unwrap();
    let events = parse_sse(&text);
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let joined: String = events[..events.len() - 1]
        .iter()
        .map(|e| e.json()["choices"][0]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(joined, CONTENT);
}

#[tokio::test]
async fn embeddings_for_string_and_array_input() {
    let h = Harness::start(MockConfig::default()).await;
    let body = json!({"model": "text-embedding-3-small", "input": "one two three"});
    let v: Value = h
        .openai("/v1/embeddings", None, body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"][0]["object"], "embedding");
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(v["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));

    let body = json!({"model": "e", "input": ["a", "b c", "d"]});
    let v: Value = h
        .openai("/v1/embeddings", None, body)
        .await
        .json()
        .await
        .unwrap();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["index"], i);
    }
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
}

#[tokio::test]
async fn models_list_in_openai_shape() {
    let h = Harness::start(MockConfig::default()).await;
    let v: Value = h
        .client
        .get(h.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["object"], "model");
            assert_eq!(m["owned_by"], "mock");
            m["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(ids, ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]);
}

#[tokio::test]
async fn bad_json_is_400_and_unknown_route_404() {
    let h = Harness::start(MockConfig::default()).await;
    let res = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["param"].is_null());
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid JSON")
    );

    let res = h.client.post(h.url("/v1/nope")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let res = h
        .client
        .get(h.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
}

#[tokio::test]
async fn health_answers_ok() {
    let h = Harness::start(MockConfig::default()).await;
    let res = h.client.get(h.url("/_mock/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "ok");
    assert_eq!(
        h.server.request_count(),
        0,
        "control routes are not counted"
    );
}
