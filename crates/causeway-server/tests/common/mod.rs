//! Test harness: a real gateway on an ephemeral port with a temp app dir, talking to
//! `mock-provider` upstreams on ephemeral ports.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use causeway_server::{Gateway, GatewayOptions};
use serde_json::{Value, json};

pub struct Harness {
    pub gw: Gateway,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

pub fn options(dir: PathBuf) -> GatewayOptions {
    GatewayOptions {
        app_dir: dir,
        config_path: None,
        host: "127.0.0.1".into(),
        port: 0,
        insecure_no_auth: false,
        env_autoconfig: false,
    }
}

impl Harness {
    /// Starts a gateway whose app dir holds `config` as config.json (None: no file).
    pub async fn start(config: Option<Value>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        if let Some(c) = config {
            std::fs::write(
                dir.path().join("config.json"),
                serde_json::to_vec_pretty(&c).unwrap(),
            )
            .unwrap();
        }
        Self::start_in(dir).await
    }

    pub async fn start_in(dir: tempfile::TempDir) -> Harness {
        let gw = Gateway::start(options(dir.path().to_path_buf()))
            .await
            .expect("gateway starts");
        Harness {
            gw,
            dir,
            http: reqwest::Client::new(),
        }
    }

    /// Stops the gateway and starts a new one on the same app dir.
    pub async fn restart(self) -> Harness {
        let Harness { gw, dir, .. } = self;
        gw.shutdown().await;
        Self::start_in(dir).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.gw.url(), path)
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .put(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.http.delete(self.url(path)).send().await.unwrap()
    }

    pub async fn chat(&self, model: &str) -> reqwest::Response {
        self.post("/v1/chat/completions", &chat_body(model)).await
    }
}

pub fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]})
}

/// A provider block pointing at a mock, with the given keys (name, value[, weight]).
pub fn provider(base_url: &str, keys: &[(&str, &str)]) -> Value {
    json!({
        "keys": keys.iter().map(|(n, v)| json!({"name": n, "value": v, "models": ["*"], "weight": 1})).collect::<Vec<_>>(),
        "network_config": {"base_url": base_url, "retry_backoff_initial": 1, "retry_backoff_max": 5}
    })
}

/// Response JSON plus status.
pub async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, v)
}

/// Asserts the Bifrost error envelope shape and returns it.
pub fn assert_envelope(v: &Value, status: u16) {
    assert_eq!(v["status_code"], status, "envelope: {v}");
    assert!(v["is_bifrost_error"].is_boolean(), "envelope: {v}");
    assert!(v["error"]["message"].is_string(), "envelope: {v}");
    assert!(v["extra_fields"].is_object(), "envelope: {v}");
}

/// Reads an SSE body into its `data:` payloads (`[DONE]` included as a string).
pub async fn sse_data(resp: reqwest::Response) -> Vec<String> {
    let text = resp.text().await.unwrap();
    text.split("\n\n")
        .filter_map(|ev| {
            let data: Vec<&str> = ev
                .lines()
                .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}
