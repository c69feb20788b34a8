//! Helpers shared by the integration tests: a started server plus a client, and an SSE parser.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mock_provider::{MockConfig, MockServer};
use serde_json::Value;

pub struct Harness {
    pub server: MockServer,
    pub client: reqwest::Client,
}

impl Harness {
    pub async fn start(config: MockConfig) -> Self {
        let server = MockServer::start(config).await.unwrap();
        Self {
            server,
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.base_url(), path)
    }

    /// OpenAI-style POST with a bearer key.
    pub async fn openai(&self, path: &str, key: Option<&str>, body: Value) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).json(&body);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        req.send().await.unwrap()
    }

    /// Anthropic-style POST with `x-api-key` and `anthropic-version`.
    pub async fn anthropic(&self, key: Option<&str>, body: Value) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url("/v1/messages"))
            .header("anthropic-version", "2023-06-01")
            .json(&body);
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        req.send().await.unwrap()
    }
}

/// One server-sent event: its `event:` name (if any) and its `data:` payload.
#[derive(Debug)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
}

pub fn parse_sse(text: &str) -> Vec<Event> {
    assert!(text.ends_with("\n\n"), "stream must end with a blank line");
    text.split("\n\n")
        .filter(|block| !block.is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push(v);
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            Event {
                name,
                data: data.join("\n"),
            }
        })
        .collect()
}

pub fn chat_body(stream: bool) -> Value {
    serde_json::json!({
        "model": "gpt-4o-mini",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": "hello there world"}
        ]
    })
}

pub fn messages_body(stream: bool) -> Value {
    serde_json::json!({
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 64,
        "stream": stream,
        "system": "be nice",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there world"}]}]
    })
}
