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
        serve_threads: 0,
        on_serve_thread_quiet: None,
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

    /// A chat to `openai/gpt-4o` whose only user message is `prompt`.
    pub async fn chat_prompt(&self, prompt: &str) -> reqwest::Response {
        self.post(
            "/v1/chat/completions",
            &json!({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": prompt}]}),
        )
        .await
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

/// Options for a gateway on `serve_threads` serve threads (the binary's way of serving) whose
/// config.json, in the returned app dir, has one OpenAI provider at `base_url`.
pub fn serve_thread_options(
    base_url: &str,
    serve_threads: usize,
) -> (tempfile::TempDir, GatewayOptions) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        json!({"providers": {"openai": provider(base_url, &[("k1", "sk-one-111111111111")])}})
            .to_string(),
    )
    .unwrap();
    let mut opts = options(dir.path().to_path_buf());
    opts.serve_threads = serve_threads;
    (dir, opts)
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

// ---- helpers added for the governance and auth tests ------------------------------------

/// Any request with extra headers (credentials, virtual keys); `body` is sent as JSON.
pub async fn send(
    h: &Harness,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut rb = h.http.request(method, h.url(path));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.json(b);
    }
    rb.send().await.unwrap()
}

/// A provider block whose keys carry explicit ids: (id, value, weight).
pub fn provider_with_key_ids(base_url: &str, keys: &[(&str, &str, f64)]) -> Value {
    json!({
        "keys": keys.iter().map(|(id, v, w)| json!({"id": id, "name": id, "value": v, "models": ["*"], "weight": w})).collect::<Vec<_>>(),
        "network_config": {"base_url": base_url, "max_retries": 0, "retry_backoff_initial": 1, "retry_backoff_max": 5}
    })
}

/// Creates a virtual key through the API (with `auth` headers); asserts 200 and returns
/// (id, full value).
pub async fn create_vk(h: &Harness, body: &Value, auth: &[(&str, &str)]) -> (String, String) {
    let (s, v) = json_of(
        send(
            h,
            reqwest::Method::POST,
            "/api/governance/virtual-keys",
            Some(body),
            auth,
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "create virtual key {body}: {v}");
    let id = v["virtual_key"]["id"].as_str().expect("id").to_owned();
    let value = v["virtual_key"]["value"]
        .as_str()
        .expect("value")
        .to_owned();
    assert!(value.starts_with("sk-bf-"), "{v}");
    (id, value)
}

/// Re-evaluates `check` until it gives `Some` (a state reached asynchronously by the server,
/// e.g. after a client disconnect) or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: std::time::Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Waits until `GET /api/logs?<query>` reports `n` matching logs (the writer is batched);
/// returns the response, or fails the test with what the store has.
pub async fn logs_when(h: &Harness, query: &str, n: u64) -> Value {
    let path = format!("/api/logs?{query}");
    let found = eventually(std::time::Duration::from_secs(10), || async {
        let (s, v) = json_of(h.get(&path).await).await;
        assert_eq!(s, 200, "{v}");
        (v["pagination"]["total_count"].as_u64() == Some(n)).then_some(v)
    })
    .await;
    match found {
        Some(v) => v,
        None => {
            let (_, v) = json_of(h.get(&path).await).await;
            panic!("expected {n} logs for {query:?}, have: {v:#}")
        }
    }
}
