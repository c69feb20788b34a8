//! HTTP-level tests of the management API's provider and key routes (`/api/providers...`,
//! `/api/keys`), config-store persistence across restarts, start-up behaviour, the loopback
//! guard, `/health`, and the error envelope of management errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use causeway_server::{Gateway, ManagementAccess};
use common::{Harness, assert_envelope, chat_body, json_of, options, provider};
use mock_provider::{MockConfig, MockServer, RecordedRequest};
use reqwest::Method;
use serde_json::{Value, json};
use tower::ServiceExt;

const SECRET: &str = "sk-live-1234567890abcdef";
const SECRET_MASK: &str = "sk-l************************cdef";

// ---- helpers ---------------------------------------------------------------------------

async fn mock() -> MockServer {
    MockServer::start(MockConfig::default())
        .await
        .expect("mock starts")
}

/// What the API is documented to show for a literal secret.
fn mask(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    assert!(chars.len() > 8, "test secrets are longer than 8 chars");
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(24))
}

/// A POST /api/providers body for a built-in provider pointing at `base_url`, with short
/// backoffs so failing tests stay quick.
fn provider_body(name: &str, base_url: &str) -> Value {
    json!({
        "provider": name,
        "network_config": {"base_url": base_url, "retry_backoff_initial": 1, "retry_backoff_max": 5}
    })
}

async fn call(h: &Harness, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut rb = h.http.request(method, h.url(path));
    if let Some(b) = body {
        rb = rb.json(b);
    }
    json_of(rb.send().await.unwrap()).await
}

/// Sends a raw (possibly malformed) JSON body.
async fn call_raw(h: &Harness, method: Method, path: &str, body: &str) -> (u16, Value) {
    let resp = h
        .http
        .request(method, h.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    json_of(resp).await
}

/// Creates a provider via the API and asserts 200.
async fn create_provider(h: &Harness, name: &str, base_url: &str) -> Value {
    let (s, v) = json_of(
        h.post("/api/providers", &provider_body(name, base_url))
            .await,
    )
    .await;
    assert_eq!(s, 200, "create provider {name}: {v}");
    v
}

/// Creates a key via the API and asserts 200; returns the response.
async fn create_key(h: &Harness, provider: &str, name: &str, value: &str) -> Value {
    let (s, v) = json_of(
        h.post(
            &format!("/api/providers/{provider}/keys"),
            &json!({"name": name, "value": value}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "create key {name} on {provider}: {v}");
    v
}

fn chat_requests(m: &MockServer) -> Vec<RecordedRequest> {
    m.requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .collect()
}

/// Sends one chat request and returns the status, body and the key the mock saw (if the
/// request reached it).
async fn chat_key(h: &Harness, m: &MockServer, model: &str) -> (u16, Value, Option<String>) {
    m.clear_requests();
    let (s, v) = json_of(h.chat(model).await).await;
    let seen = chat_requests(m).last().and_then(|r| r.api_key.clone());
    (s, v, seen)
}

/// A chat that must succeed and must reach `m` with `key`.
async fn assert_chat_uses_key(h: &Harness, m: &MockServer, model: &str, key: &str) {
    let (s, v, seen) = chat_key(h, m, model).await;
    assert_eq!(s, 200, "chat {model}: {v}");
    assert_eq!(seen.as_deref(), Some(key), "key the upstream received");
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_owned())
        .collect()
}

/// Unwraps a start-up result (`Gateway` and `AppState` are not `Debug`).
fn ok_or_panic<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

async fn start_err(opts: causeway_server::GatewayOptions) -> String {
    match Gateway::start(opts).await {
        Ok(gw) => {
            gw.shutdown().await;
            panic!("gateway started but should have refused");
        }
        Err(e) => e.to_string(),
    }
}

// ---- 1. list ---------------------------------------------------------------------------

#[tokio::test]
async fn list_providers_sorted_with_fields() {
    let m = mock().await;
    let url = m.base_url();
    let h = Harness::start(Some(json!({"providers": {
        "openai": provider(&url, &[("o1", "sk-openai-aaaaaaaaaaaa")]),
        "mistral": provider(&url, &[("m1", "sk-mistral-bbbbbbbbbbbb")]),
        "groq": provider(&url, &[("g1", "sk-groq-cccccccccccc")]),
    }})))
    .await;
    let (s, v) = json_of(h.get("/api/providers").await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["total"], 3, "{v}");
    assert_eq!(names(&v["providers"]), ["groq", "mistral", "openai"]);
    for p in v["providers"].as_array().unwrap() {
        assert_eq!(p["network_config"]["base_url"], url.as_str(), "{p}");
        assert_eq!(p["network_config"]["retry_backoff_initial"], 1, "{p}");
        assert_eq!(
            p["concurrency_and_buffer_size"],
            json!({"concurrency": 1000, "buffer_size": 5000}),
            "{p}"
        );
        assert_eq!(p["provider_status"], "active", "{p}");
        assert!(p.get("keys").is_none(), "keys are not inlined: {p}");
    }
    // Providers added through the API sort in too.
    create_provider(&h, "deepseek", &url).await;
    let (_, v) = json_of(h.get("/api/providers").await).await;
    assert_eq!(v["total"], 4);
    assert_eq!(
        names(&v["providers"]),
        ["deepseek", "groq", "mistral", "openai"]
    );
}

// ---- 2. create ---------------------------------------------------------------------------

#[tokio::test]
async fn create_provider_then_conflict() {
    let m = mock().await;
    let h = Harness::start(None).await;
    let (s, v) = json_of(
        h.post(
            "/api/providers",
            &json!({"provider": "groq", "network_config": {"base_url": m.base_url()}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "groq");
    assert_eq!(v["network_config"]["base_url"], m.base_url().as_str());
    assert_eq!(v["network_config"]["max_retries"], 0);
    assert_eq!(
        v["network_config"]["default_request_timeout_in_seconds"],
        30
    );
    assert_eq!(
        v["concurrency_and_buffer_size"],
        json!({"concurrency": 1000, "buffer_size": 5000})
    );
    assert_eq!(v["provider_status"], "active");

    let (s, again) = json_of(h.get("/api/providers/groq").await).await;
    assert_eq!(s, 200);
    assert_eq!(again, v, "GET returns what POST returned");

    let (s, v) = json_of(
        h.post(
            "/api/providers",
            &json!({"provider": "groq", "network_config": {"base_url": m.base_url()}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert_envelope(&v, 409);
    assert_eq!(v["is_bifrost_error"], false);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("groq"),
        "{v}"
    );
    let (_, list) = json_of(h.get("/api/providers").await).await;
    assert_eq!(list["total"], 1);
}

#[tokio::test]
async fn create_provider_validation_errors() {
    let h = Harness::start(None).await;

    // Missing provider name.
    let (s, v) = json_of(
        h.post(
            "/api/providers",
            &json!({"network_config": {"base_url": "http://127.0.0.1:9"}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_envelope(&v, 400);
    assert_eq!(v["error"]["param"], "provider", "{v}");

    // Empty provider name.
    let (s, v) = json_of(h.post("/api/providers", &json!({"provider": ""})).await).await;
    assert_eq!(s, 400, "{v}");
    assert_envelope(&v, 400);

    // A non-HTTP base URL.
    let (s, v) = json_of(
        h.post(
            "/api/providers",
            &json!({"provider": "groq", "network_config": {"base_url": "ftp://x"}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_envelope(&v, 400);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("network_config.base_url"), "{v}");
    assert!(msg.contains("ftp://x"), "{v}");
    assert_eq!(v["error"]["param"], "network_config.base_url", "{v}");

    // Base URLs no request could be built on: refused here, not at the first request.
    for (url, why) in [
        ("http://bad host", "not a valid URL"),
        ("https://", "not a valid URL"),
        ("https://api.example.com/v1?key=1", "must not carry a query"),
    ] {
        let (s, v) = json_of(
            h.post(
                "/api/providers",
                &json!({"provider": "groq", "network_config": {"base_url": url}}),
            )
            .await,
        )
        .await;
        assert_eq!(s, 400, "{url}: {v}");
        assert_envelope(&v, 400);
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(why), "{url}: {v}");
        assert_eq!(v["error"]["param"], "network_config.base_url", "{v}");
    }

    // An unknown provider without custom_provider_config.
    let (s, v) = json_of(
        h.post(
            "/api/providers",
            &json!({"provider": "acme", "network_config": {"base_url": "http://127.0.0.1:9"}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_envelope(&v, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("custom_provider_config"),
        "{v}"
    );

    // Invalid provider name characters.
    let (s, v) = json_of(h.post("/api/providers", &json!({"provider": "Groq"})).await).await;
    assert_eq!(s, 400, "{v}");
    assert_envelope(&v, 400);

    // A custom provider with an unsupported wire family.
    let (s, v) = json_of(
        h.post(
            "/api/providers",
            &json!({"provider": "acme", "custom_provider_config": {"base_provider_type": "cohere"},
                    "network_config": {"base_url": "http://127.0.0.1:9"}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("base_provider_type"),
        "{v}"
    );

    // Concurrency 0.
    let (s, v) = json_of(
        h.post(
            "/api/providers",
            &json!({"provider": "groq", "concurrency_and_buffer_size": {"concurrency": 0, "buffer_size": 10}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("concurrency_and_buffer_size.concurrency"),
        "{v}"
    );

    // Nothing was persisted by any of the rejected requests.
    let (s, v) = json_of(h.get("/api/providers").await).await;
    assert_eq!(s, 200);
    assert_eq!(v, json!({"providers": [], "total": 0}));
}

#[tokio::test]
async fn custom_provider_end_to_end() {
    let m = mock().await;
    let h = Harness::start(None).await;
    let (s, v) = json_of(
        h.post(
            "/api/providers",
            &json!({
                "provider": "acme",
                "custom_provider_config": {"base_provider_type": "openai"},
                "network_config": {"base_url": m.base_url()}
            }),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "acme");
    assert_eq!(
        v["custom_provider_config"]["base_provider_type"], "openai",
        "{v}"
    );
    create_key(&h, "acme", "acme-1", "sk-acme-0123456789xyz").await;

    m.clear_requests();
    let (s, v) = json_of(h.chat("acme/gpt-x").await).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["choices"][0]["message"]["content"].is_string(), "{v}");
    let reqs = chat_requests(&m);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    assert_eq!(reqs[0].body["model"], "gpt-x", "upstream model name");
    assert_eq!(reqs[0].api_key.as_deref(), Some("sk-acme-0123456789xyz"));
}

// ---- 3. get / put / delete ---------------------------------------------------------------

#[tokio::test]
async fn get_provider_and_unknown_is_404() {
    let m = mock().await;
    let h = Harness::start(Some(
        json!({"providers": {"openai": provider(&m.base_url(), &[("k1", SECRET)])}}),
    ))
    .await;
    let (s, v) = json_of(h.get("/api/providers/openai").await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "openai");
    assert_eq!(v["provider_status"], "active");
    assert_eq!(v["network_config"]["base_url"], m.base_url().as_str());
    assert!(v["concurrency_and_buffer_size"].is_object());

    let (s, v) = json_of(h.get("/api/providers/nope").await).await;
    assert_eq!(s, 404, "{v}");
    assert_envelope(&v, 404);
    assert_eq!(v["status_code"], 404);
    assert_eq!(v["is_bifrost_error"], false);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Provider not found"),
        "{v}"
    );
}

#[tokio::test]
async fn put_network_config_keeps_concurrency() {
    let m1 = mock().await;
    let m2 = mock().await;
    let h = Harness::start(None).await;
    let mut body = provider_body("groq", &m1.base_url());
    body["concurrency_and_buffer_size"] = json!({"concurrency": 7, "buffer_size": 70});
    let (s, v) = json_of(h.post("/api/providers", &body).await).await;
    assert_eq!(s, 200, "{v}");
    create_key(&h, "groq", "g1", SECRET).await;
    assert_chat_uses_key(&h, &m1, "groq/llama", SECRET).await;

    let (s, v) = json_of(
        h.put(
            "/api/providers/groq",
            &json!({"network_config": {"base_url": m2.base_url(), "max_retries": 2}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "groq");
    assert_eq!(v["network_config"]["base_url"], m2.base_url().as_str());
    assert_eq!(v["network_config"]["max_retries"], 2);
    assert_eq!(
        v["concurrency_and_buffer_size"],
        json!({"concurrency": 7, "buffer_size": 70}),
        "omitted block is kept: {v}"
    );
    let (_, got) = json_of(h.get("/api/providers/groq").await).await;
    assert_eq!(got, v, "GET reflects the update");

    // The next request goes to the new upstream, with the key untouched by the PUT.
    m1.clear_requests();
    assert_chat_uses_key(&h, &m2, "groq/llama", SECRET).await;
    assert!(chat_requests(&m1).is_empty(), "old upstream not used");
    let (_, keys) = json_of(h.get("/api/providers/groq/keys").await).await;
    assert_eq!(keys["total"], 1, "PUT provider keeps keys: {keys}");
}

#[tokio::test]
async fn put_concurrency_keeps_network_config() {
    let m = mock().await;
    let h = Harness::start(None).await;
    let mut body = provider_body("groq", &m.base_url());
    body["network_config"]["max_retries"] = json!(3);
    body["network_config"]["extra_headers"] = json!({"x-team": "blue"});
    let (s, created) = json_of(h.post("/api/providers", &body).await).await;
    assert_eq!(s, 200, "{created}");

    let (s, v) = json_of(
        h.put(
            "/api/providers/groq",
            &json!({"concurrency_and_buffer_size": {"concurrency": 3, "buffer_size": 9}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["concurrency_and_buffer_size"],
        json!({"concurrency": 3, "buffer_size": 9})
    );
    assert_eq!(
        v["network_config"], created["network_config"],
        "omitted network_config is kept"
    );
    assert_eq!(v["network_config"]["max_retries"], 3);
    assert_eq!(v["network_config"]["extra_headers"]["x-team"], "blue");

    // Read-only fields sent back by a dashboard are ignored, not an error.
    let mut whole = v.clone();
    whole["send_back_raw_response"] = json!(true);
    let (s, v2) = json_of(h.put("/api/providers/groq", &whole).await).await;
    assert_eq!(s, 200, "{v2}");
    assert_eq!(v2["send_back_raw_response"], true);
    assert_eq!(
        v2["concurrency_and_buffer_size"],
        v["concurrency_and_buffer_size"]
    );
}

#[tokio::test]
async fn put_unknown_provider_is_404_and_invalid_values_are_400() {
    let m = mock().await;
    let h = Harness::start(None).await;
    let (s, v) = json_of(
        h.put(
            "/api/providers/groq",
            &json!({"network_config": {"base_url": m.base_url()}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 404, "{v}");
    assert_envelope(&v, 404);

    create_provider(&h, "groq", &m.base_url()).await;
    let (_, before) = json_of(h.get("/api/providers/groq").await).await;

    let bad: &[(Value, &str)] = &[
        (
            json!({"concurrency_and_buffer_size": {"concurrency": 0, "buffer_size": 1}}),
            "concurrency",
        ),
        (
            json!({"network_config": {"base_url": "ftp://x"}}),
            "network_config.base_url",
        ),
        (
            json!({"network_config": {"base_url": m.base_url(), "retry_backoff_initial": 10000, "retry_backoff_max": 5}}),
            "retry_backoff_initial",
        ),
        (
            json!({"network_config": {"base_url": m.base_url(), "default_request_timeout_in_seconds": 0}}),
            "default_request_timeout_in_seconds",
        ),
        (
            json!({"network_config": {"base_url": m.base_url(), "max_retries": "two"}}),
            "max_retries",
        ),
        (
            json!({"network_config": {"base_url": m.base_url(), "extra_headers": {"bad header": "x"}}}),
            "extra_headers",
        ),
        (
            json!({"custom_provider_config": {"base_provider_type": "cohere"}}),
            "base_provider_type",
        ),
    ];
    for (body, needle) in bad {
        let (s, v) = json_of(h.put("/api/providers/groq", body).await).await;
        assert_eq!(s, 400, "PUT {body}: {v}");
        assert_envelope(&v, 400);
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "PUT {body}: message should name {needle}: {v}"
        );
    }
    let (_, after) = json_of(h.get("/api/providers/groq").await).await;
    assert_eq!(after, before, "rejected PUTs change nothing");
}

#[tokio::test]
async fn delete_provider_then_404_and_inference_fails() {
    let m = mock().await;
    let h = Harness::start(None).await;
    create_provider(&h, "groq", &m.base_url()).await;
    create_key(&h, "groq", "g1", SECRET).await;
    assert_chat_uses_key(&h, &m, "groq/llama", SECRET).await;

    let (s, v) = json_of(h.delete("/api/providers/groq").await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "groq", "the deleted provider is returned: {v}");
    assert_eq!(v["network_config"]["base_url"], m.base_url().as_str());

    let (s, v) = json_of(h.get("/api/providers/groq").await).await;
    assert_eq!(s, 404, "{v}");
    assert_envelope(&v, 404);
    let (s, v) = json_of(h.get("/api/providers/groq/keys").await).await;
    assert_eq!(s, 404, "{v}");
    let (_, all) = json_of(h.get("/api/keys").await).await;
    assert_eq!(all, json!([]), "keys go with their provider");

    m.clear_requests();
    let (s, v) = json_of(h.chat("groq/llama").await).await;
    assert_eq!(s, 400, "{v}");
    assert_envelope(&v, 400);
    assert_eq!(v["error"]["type"], "provider_not_configured", "{v}");
    assert!(chat_requests(&m).is_empty());

    let (s, v) = json_of(h.delete("/api/providers/groq").await).await;
    assert_eq!(s, 404, "second delete: {v}");
    assert_envelope(&v, 404);

    // Re-creating starts without the old keys.
    create_provider(&h, "groq", &m.base_url()).await;
    let (_, keys) = json_of(h.get("/api/providers/groq/keys").await).await;
    assert_eq!(keys, json!({"keys": [], "total": 0}));
}

/// A redacted extra-header value sent back unchanged keeps the stored original.
#[tokio::test]
async fn put_with_redacted_extra_header_keeps_original() {
    let m = mock().await;
    let h = Harness::start(None).await;
    let hdr_secret = "hdr-secret-0123456789abcdef";
    let mut body = provider_body("groq", &m.base_url());
    body["network_config"]["extra_headers"] = json!({"x-upstream-token": hdr_secret});
    let (s, v) = json_of(h.post("/api/providers", &body).await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["network_config"]["extra_headers"]["x-upstream-token"],
        mask(hdr_secret),
        "{v}"
    );
    create_key(&h, "groq", "g1", SECRET).await;

    let mut nc = v["network_config"].clone();
    nc["max_retries"] = json!(1);
    let (s, v) = json_of(
        h.put("/api/providers/groq", &json!({"network_config": nc}))
            .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["network_config"]["max_retries"], 1);

    m.clear_requests();
    let (s, v) = json_of(h.chat("groq/llama").await).await;
    assert_eq!(s, 200, "{v}");
    let reqs = chat_requests(&m);
    assert_eq!(
        reqs[0].header("x-upstream-token"),
        Some(hdr_secret),
        "the original header value is still sent"
    );
}

/// Settings the routing table rejects must be rejected before they are stored; otherwise the
/// store holds a provider that breaks every later reload and the next start.
#[tokio::test]
async fn invalid_extra_header_value_is_rejected_without_persisting() {
    let m = mock().await;
    let h = Harness::start(None).await;
    let mut body = provider_body("groq", &m.base_url());
    body["network_config"]["extra_headers"] = json!({"x-team": "blue\nred"});
    let (s, v) = json_of(h.post("/api/providers", &body).await).await;
    assert_eq!(s, 400, "{v}");
    assert_envelope(&v, 400);

    let (s, v) = json_of(h.get("/api/providers/groq").await).await;
    assert_eq!(s, 404, "a rejected provider must not exist: {v}");

    // Later writes keep working.
    let (s, v) = json_of(
        h.post("/api/providers", &provider_body("mistral", &m.base_url()))
            .await,
    )
    .await;
    assert_eq!(s, 200, "an unrelated create after the rejected one: {v}");

    // And the gateway still starts.
    let h = h.restart().await;
    let (s, _) = json_of(h.get("/api/providers/mistral").await).await;
    assert_eq!(s, 200);
}

/// Same as above, through PUT on an existing provider.
#[tokio::test]
async fn invalid_extra_header_value_on_put_is_rejected_without_persisting() {
    let m = mock().await;
    let h = Harness::start(None).await;
    create_provider(&h, "groq", &m.base_url()).await;
    create_key(&h, "groq", "g1", SECRET).await;
    let (_, before) = json_of(h.get("/api/providers/groq").await).await;
    let (s, v) = json_of(
        h.put(
            "/api/providers/groq",
            &json!({"network_config": {"base_url": m.base_url(), "extra_headers": {"x-team": "a\u{7f}b\nc"}}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (_, after) = json_of(h.get("/api/providers/groq").await).await;
    assert_eq!(after, before, "rejected PUT changes nothing");
    // The gateway still starts with what is stored.
    let Harness { gw, dir, .. } = h;
    gw.shutdown().await;
    let restarted = Gateway::start(options(dir.path().to_path_buf())).await;
    let gw = match restarted {
        Ok(gw) => gw,
        Err(e) => panic!("restart after a rejected PUT fails: {e}"),
    };
    let h = Harness {
        gw,
        dir,
        http: reqwest::Client::new(),
    };
    let (s, v) = json_of(h.get("/api/providers/groq").await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["network_config"]["extra_headers"], json!({}), "{v}");
    let (s, v) = json_of(
        h.post(
            "/api/providers/groq/keys",
            &json!({"name": "g2", "value": "sk-another-key-0000111122"}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "later writes keep working: {v}");
}

/// Creating a provider with inline keys is all-or-nothing: when a key is refused, the
/// provider must not be left half-created (stored, but missing from the live snapshot).
#[tokio::test]
async fn create_provider_with_conflicting_inline_key_is_atomic() {
    let m = mock().await;
    let h = Harness::start(Some(
        json!({"providers": {"openai": provider(&m.base_url(), &[("k1", SECRET)])}}),
    ))
    .await;
    let (_, keys) = json_of(h.get("/api/providers/openai/keys").await).await;
    let taken_id = keys["keys"][0]["id"].as_str().unwrap().to_owned();
    let mut body = provider_body("groq", &m.base_url());
    body["keys"] = json!([{"id": taken_id, "name": "g1", "value": "sk-groq-000011112222"}]);
    let (s, v) = json_of(h.post("/api/providers", &body).await).await;
    assert!(
        s == 409 || s == 400,
        "key id already used elsewhere: {s} {v}"
    );
    assert_envelope(&v, s);

    let (s, v) = json_of(h.get("/api/providers/groq").await).await;
    assert_eq!(s, 404, "the refused provider must not exist: {v}");
    // Creating it again without the bad key works (no phantom "already exists").
    let (s, v) = json_of(
        h.post("/api/providers", &provider_body("groq", &m.base_url()))
            .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

/// POST /api/providers with inline keys applies the same value rules as the keys route: a
/// redacted-looking value must never be stored as if it were the secret.
#[tokio::test]
async fn create_provider_refuses_redacted_inline_key() {
    let m = mock().await;
    let h = Harness::start(None).await;
    let mut body = provider_body("groq", &m.base_url());
    body["keys"] = json!([{"name": "g1", "value": SECRET_MASK}]);
    let (s, v) = json_of(h.post("/api/providers", &body).await).await;
    assert_eq!(s, 400, "{v}");
    assert_envelope(&v, 400);
    let (s, _) = json_of(h.get("/api/providers/groq").await).await;
    assert_eq!(s, 404);
}

/// Inline keys on POST /api/providers work (Bifrost before v1.5 embedded keys there).
#[tokio::test]
async fn create_provider_with_inline_keys() {
    let m = mock().await;
    let h = Harness::start(None).await;
    let mut body = provider_body("groq", &m.base_url());
    body["keys"] = json!([{"name": "g1", "value": SECRET}]);
    let (s, v) = json_of(h.post("/api/providers", &body).await).await;
    assert_eq!(s, 200, "{v}");
    assert!(v.get("keys").is_none(), "keys are not echoed: {v}");
    let (_, keys) = json_of(h.get("/api/providers/groq/keys").await).await;
    assert_eq!(keys["total"], 1, "{keys}");
    assert_eq!(keys["keys"][0]["value"], SECRET_MASK);
    assert_chat_uses_key(&h, &m, "groq/llama", SECRET).await;
}

// ---- 4. keys -----------------------------------------------------------------------------

#[tokio::test]
async fn create_key_returns_id_and_redacted_value() {
    let m = mock().await;
    let h = Harness::start(None).await;
    create_provider(&h, "groq", &m.base_url()).await;
    let (s, v) = json_of(
        h.post(
            "/api/providers/groq/keys",
            &json!({"name": "k2", "value": SECRET}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "k2");
    assert_eq!(v["value"], SECRET_MASK, "{v}");
    assert_eq!(SECRET_MASK, mask(SECRET));
    let id = v["id"].as_str().expect("generated id");
    assert!(!id.is_empty());
    assert_eq!(v["weight"], 1.0);
    assert_eq!(v["enabled"], true);
    assert_eq!(v["models"], json!(["*"]));

    // A second key gets a different id.
    let v2 = create_key(&h, "groq", "k3", "sk-live-zyxwvutsrq987654").await;
    assert_ne!(v2["id"], v["id"]);

    // The new key is used immediately.
    assert_chat_uses_key_one_of(&h, &m, "groq/llama", &[SECRET, "sk-live-zyxwvutsrq987654"]).await;
}

async fn assert_chat_uses_key_one_of(h: &Harness, m: &MockServer, model: &str, keys: &[&str]) {
    let (s, v, seen) = chat_key(h, m, model).await;
    assert_eq!(s, 200, "{v}");
    let seen = seen.expect("a key was sent");
    assert!(
        keys.contains(&seen.as_str()),
        "unexpected key sent upstream"
    );
}

#[tokio::test]
async fn create_key_validation_errors() {
    let m = mock().await;
    let h = Harness::start(None).await;
    create_provider(&h, "groq", &m.base_url()).await;

    // Empty and missing value.
    for body in [json!({"name": "k", "value": ""}), json!({"name": "k"})] {
        let (s, v) = json_of(h.post("/api/providers/groq/keys", &body).await).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert_envelope(&v, 400);
        assert_eq!(v["error"]["param"], "value", "{v}");
    }

    // A value that looks like a redacted key.
    let (s, v) = json_of(
        h.post(
            "/api/providers/groq/keys",
            &json!({"name": "k", "value": SECRET_MASK}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_envelope(&v, 400);

    // Negative weight; `env.` without a name.
    for body in [
        json!({"name": "k", "value": SECRET, "weight": -1}),
        json!({"name": "k", "value": "env."}),
    ] {
        let (s, v) = json_of(h.post("/api/providers/groq/keys", &body).await).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert_envelope(&v, 400);
    }

    // Duplicate name.
    create_key(&h, "groq", "k2", SECRET).await;
    let (s, v) = json_of(
        h.post(
            "/api/providers/groq/keys",
            &json!({"name": "k2", "value": "sk-other-value-1234567890"}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert_envelope(&v, 409);

    // Unknown provider.
    let (s, v) = json_of(
        h.post(
            "/api/providers/nope/keys",
            &json!({"name": "k", "value": SECRET}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 404, "{v}");
    assert_envelope(&v, 404);

    // Keyless provider.
    create_provider(&h, "ollama", &m.base_url()).await;
    let (s, v) = json_of(
        h.post(
            "/api/providers/ollama/keys",
            &json!({"name": "k", "value": SECRET}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_envelope(&v, 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("keyless"),
        "{v}"
    );

    // Only the one valid key exists.
    let (_, keys) = json_of(h.get("/api/providers/groq/keys").await).await;
    assert_eq!(keys["total"], 1, "{keys}");
    let (_, keys) = json_of(h.get("/api/providers/ollama/keys").await).await;
    assert_eq!(keys["total"], 0, "{keys}");
}

/// A key value that cannot be sent in an HTTP header is a caller error at creation, not a
/// 500 on every later inference request.
#[tokio::test]
async fn key_value_with_control_characters_is_rejected() {
    let m = mock().await;
    let h = Harness::start(None).await;
    create_provider(&h, "groq", &m.base_url()).await;
    let (s, v) = json_of(
        h.post(
            "/api/providers/groq/keys",
            &json!({"name": "bad", "value": "sk-live-1234\n567890abcdef"}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_envelope(&v, 400);
}

/// A key created without a name gets a generated one; that must not collide with an
/// existing key (here: after an earlier generated-name key was deleted).
#[tokio::test]
async fn nameless_keys_get_unique_generated_names() {
    let m = mock().await;
    let h = Harness::start(None).await;
    create_provider(&h, "groq", &m.base_url()).await;
    let (s, a) = json_of(
        h.post(
            "/api/providers/groq/keys",
            &json!({"value": "sk-first-0123456789ab"}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["name"], "groq-key-1");
    let (s, b) = json_of(
        h.post(
            "/api/providers/groq/keys",
            &json!({"value": "sk-second-0123456789ab"}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["name"], "groq-key-2");
    let id_a = a["id"].as_str().unwrap();
    let (s, _) = json_of(h.delete(&format!("/api/providers/groq/keys/{id_a}")).await).await;
    assert_eq!(s, 200);
    let (s, c) = json_of(
        h.post(
            "/api/providers/groq/keys",
            &json!({"value": "sk-third-0123456789ab"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        s, 200,
        "a nameless key must not conflict with a generated name: {c}"
    );
    assert_ne!(c["name"], b["name"]);
}

#[tokio::test]
async fn list_and_get_keys() {
    let m = mock().await;
    let h = Harness::start(Some(
        json!({"providers": {"openai": provider(&m.base_url(), &[("k1", SECRET)])}}),
    ))
    .await;
    let k2 = create_key(&h, "openai", "k2", "sk-live-abcdefghijklmnop").await;
    let (s, v) = json_of(h.get("/api/providers/openai/keys").await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["total"], 2, "{v}");
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["name"], "k1");
    assert_eq!(keys[0]["value"], SECRET_MASK);
    assert!(
        keys[0]["id"].as_str().is_some_and(|s| !s.is_empty()),
        "config keys get ids: {v}"
    );
    assert_eq!(keys[1]["name"], "k2");
    assert_eq!(keys[1]["value"], mask("sk-live-abcdefghijklmnop"));
    assert_eq!(keys[1], k2, "list and create agree");

    let id1 = keys[0]["id"].as_str().unwrap();
    let (s, v) = json_of(h.get(&format!("/api/providers/openai/keys/{id1}")).await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, keys[0]);

    let (s, v) = json_of(h.get("/api/providers/openai/keys/no-such-id").await).await;
    assert_eq!(s, 404, "{v}");
    assert_envelope(&v, 404);
    // A key id looked up under the wrong provider is not found either.
    create_provider(&h, "groq", &m.base_url()).await;
    let (s, v) = json_of(h.get(&format!("/api/providers/groq/keys/{id1}")).await).await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = json_of(h.get("/api/providers/nope/keys").await).await;
    assert_eq!(s, 404, "{v}");
    assert_envelope(&v, 404);
}

#[tokio::test]
async fn put_key_with_redacted_value_keeps_secret_and_updates_weight() {
    let m = mock().await;
    let h = Harness::start(None).await;
    create_provider(&h, "groq", &m.base_url()).await;
    let k = create_key(&h, "groq", "k2", SECRET).await;
    let id = k["id"].as_str().unwrap().to_owned();
    let path = format!("/api/providers/groq/keys/{id}");

    // Send back the whole object as GET returned it (redacted value), plus a new weight.
    let (_, mut got) = json_of(h.get(&path).await).await;
    got["weight"] = json!(5);
    let (s, v) = json_of(h.put(&path, &got).await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["weight"], 5.0, "{v}");
    assert_eq!(v["value"], SECRET_MASK);
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["name"], "k2");
    let (_, again) = json_of(h.get(&path).await).await;
    assert_eq!(again["weight"], 5.0);
    assert_chat_uses_key(&h, &m, "groq/llama", SECRET).await;

    // Minimal body: only value (redacted) and weight.
    let (s, v) = json_of(
        h.put(&path, &json!({"value": SECRET_MASK, "weight": 2}))
            .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["weight"], 2.0);
    assert_chat_uses_key(&h, &m, "groq/llama", SECRET).await;

    // Omitting value keeps it too.
    let (s, v) = json_of(h.put(&path, &json!({"description": "primary"})).await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["description"], "primary");
    assert_eq!(v["weight"], 2.0, "omitted fields are kept");
    assert_chat_uses_key(&h, &m, "groq/llama", SECRET).await;
}

#[tokio::test]
async fn put_key_with_new_value_changes_it() {
    let m = mock().await;
    let h = Harness::start(None).await;
    create_provider(&h, "groq", &m.base_url()).await;
    let k = create_key(&h, "groq", "k2", SECRET).await;
    let path = format!("/api/providers/groq/keys/{}", k["id"].as_str().unwrap());
    assert_chat_uses_key(&h, &m, "groq/llama", SECRET).await;

    let new = "sk-live-NEWNEWNEW00001111";
    let (s, v) = json_of(h.put(&path, &json!({"value": new})).await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["value"], mask(new));
    assert_chat_uses_key(&h, &m, "groq/llama", new).await;

    // A different masked-looking value is refused and changes nothing.
    let (s, v) = json_of(
        h.put(
            &path,
            &json!({"value": "sk-x************************zzzz", "weight": 9}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_envelope(&v, 400);
    assert_eq!(v["error"]["param"], "value", "{v}");
    // The old secret's mask is no longer accepted as "unchanged" either.
    let (s, v) = json_of(h.put(&path, &json!({"value": SECRET_MASK})).await).await;
    assert_eq!(s, 400, "mask of a previous value: {v}");
    let (_, got) = json_of(h.get(&path).await).await;
    assert_eq!(got["weight"], 1.0, "rejected PUT changed nothing: {got}");
    assert_chat_uses_key(&h, &m, "groq/llama", new).await;
}

#[tokio::test]
async fn put_key_errors() {
    let m = mock().await;
    let h = Harness::start(None).await;
    create_provider(&h, "groq", &m.base_url()).await;
    let a = create_key(&h, "groq", "a", SECRET).await;
    create_key(&h, "groq", "b", "sk-live-bbbbbbbbbbbbbbbb").await;
    let path = format!("/api/providers/groq/keys/{}", a["id"].as_str().unwrap());

    let (s, v) = json_of(h.put(&path, &json!({"name": "b"})).await).await;
    assert_eq!(s, 409, "rename onto an existing name: {v}");
    assert_envelope(&v, 409);
    let (s, v) = json_of(h.put(&path, &json!({"weight": -3})).await).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = json_of(h.put(&path, &json!({"weight": "heavy"})).await).await;
    assert_eq!(s, 400, "{v}");
    assert_envelope(&v, 400);
    let (s, v) = json_of(
        h.put("/api/providers/groq/keys/nope", &json!({"weight": 2}))
            .await,
    )
    .await;
    assert_eq!(s, 404, "{v}");
    assert_envelope(&v, 404);
    let (s, v) = json_of(
        h.put(
            &format!("/api/providers/nope/keys/{}", a["id"].as_str().unwrap()),
            &json!({"weight": 2}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 404, "{v}");
    // The id in the body cannot move the update to another key.
    let (s, v) = json_of(h.put(&path, &json!({"id": "other", "weight": 4})).await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"], a["id"]);
}

#[tokio::test]
async fn delete_key_then_404() {
    let m = mock().await;
    let h = Harness::start(None).await;
    create_provider(&h, "groq", &m.base_url()).await;
    let k = create_key(&h, "groq", "k2", SECRET).await;
    let path = format!("/api/providers/groq/keys/{}", k["id"].as_str().unwrap());
    let (s, v) = json_of(h.delete(&path).await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, k, "the deleted key is returned, redacted");
    let (s, v) = json_of(h.get(&path).await).await;
    assert_eq!(s, 404, "{v}");
    assert_envelope(&v, 404);
    let (s, v) = json_of(h.delete(&path).await).await;
    assert_eq!(s, 404, "{v}");
    let (_, keys) = json_of(h.get("/api/providers/groq/keys").await).await;
    assert_eq!(keys, json!({"keys": [], "total": 0}));

    // Without keys, inference fails with a caller error and never reaches the upstream.
    m.clear_requests();
    let (s, v) = json_of(h.chat("groq/llama").await).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["type"], "no_key_supports_model", "{v}");
    assert!(chat_requests(&m).is_empty());
}

#[tokio::test]
async fn env_references_are_returned_as_references() {
    let m = mock().await;
    let h = Harness::start(None).await;
    create_provider(&h, "groq", &m.base_url()).await;
    // PATH is set in every test environment; its value must never be shown.
    let path_value = std::env::var("PATH").expect("PATH is set");
    let v = create_key(&h, "groq", "from-env", "env.PATH").await;
    assert_eq!(v["value"], "env.PATH", "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let (_, got) = json_of(h.get(&format!("/api/providers/groq/keys/{id}")).await).await;
    assert_eq!(got["value"], "env.PATH");
    let (_, all) = json_of(h.get("/api/keys").await).await;
    assert_eq!(all[0]["value"], "env.PATH");
    // Sent back unchanged it stays a reference.
    let (s, v) = json_of(
        h.put(
            &format!("/api/providers/groq/keys/{id}"),
            &json!({"value": "env.PATH", "weight": 3}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["value"], "env.PATH");
    // The upstream receives the resolved value.
    assert_chat_uses_key(&h, &m, "groq/llama", &path_value).await;
    // Bifrost's object form is accepted and stored as a reference.
    let (s, v) = json_of(
        h.post(
            "/api/providers/groq/keys",
            &json!({"name": "obj", "value": {"value": "", "env_var": "env.HOME", "from_env": true}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["value"], "env.HOME");
}

// ---- 5. /api/keys and redaction ------------------------------------------------------------

#[tokio::test]
async fn all_keys_lists_every_provider_redacted() {
    let m = mock().await;
    let h = Harness::start(Some(json!({"providers": {
        "openai": provider(&m.base_url(), &[("o1", "sk-openai-1111111111"), ("o2", "sk-openai-2222222222")]),
    }})))
    .await;
    create_provider(&h, "groq", &m.base_url()).await;
    create_key(&h, "groq", "g1", SECRET).await;
    let (s, v) = json_of(h.get("/api/keys").await).await;
    assert_eq!(s, 200, "{v}");
    let arr = v.as_array().expect("a JSON array");
    assert_eq!(arr.len(), 3, "{v}");
    let mut seen: Vec<(String, String, String)> = arr
        .iter()
        .map(|k| {
            (
                k["provider"].as_str().unwrap().to_owned(),
                k["name"].as_str().unwrap().to_owned(),
                k["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("groq".into(), "g1".into(), SECRET_MASK.into()),
            ("openai".into(), "o1".into(), mask("sk-openai-1111111111")),
            ("openai".into(), "o2".into(), mask("sk-openai-2222222222")),
        ]
    );
    for k in arr {
        assert!(k["id"].as_str().is_some_and(|s| !s.is_empty()), "{k}");
    }
}

/// Walks every management route (successes and errors) and checks that no response body ever
/// contains a configured secret.
#[tokio::test]
async fn no_secret_in_any_management_response() {
    let m = mock().await;
    let file_secret = "sk-file-secret-AAAABBBBCCCC";
    let api_secret = SECRET;
    let new_secret = "sk-rotated-secret-DDDDEEEEFFFF";
    let hdr_secret = "Bearer hdr-secret-GGGGHHHHIIII";
    let mut file_provider = provider(&m.base_url(), &[("f1", file_secret)]);
    file_provider["network_config"]["extra_headers"] =
        json!({"Authorization": hdr_secret, "X-Api-Key": "hdr-apikey-JJJJKKKKLLLL"});
    let h = Harness::start(Some(json!({"providers": {"openai": file_provider}}))).await;
    let secrets = [
        file_secret,
        api_secret,
        new_secret,
        hdr_secret,
        "hdr-secret-GGGGHHHHIIII",
        "hdr-apikey-JJJJKKKKLLLL",
        "sk-inline-key-MMMMNNNNOOOO",
    ];
    let mut bodies: Vec<(String, String)> = Vec::new();

    async fn record(
        h: &Harness,
        bodies: &mut Vec<(String, String)>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut rb = h.http.request(method.clone(), h.url(path));
        if let Some(b) = &body {
            rb = rb.json(b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        bodies.push((format!("{method} {path} -> {status}"), text.clone()));
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    let b = &mut bodies;
    record(&h, b, Method::GET, "/api/providers", None).await;
    record(&h, b, Method::GET, "/api/providers/openai", None).await;
    let (s, created) = record(
        &h,
        b,
        Method::POST,
        "/api/providers",
        Some(json!({
            "provider": "groq",
            "network_config": {"base_url": m.base_url(), "extra_headers": {"authorization": hdr_secret}},
            "keys": [{"name": "inline", "value": "sk-inline-key-MMMMNNNNOOOO"}]
        })),
    )
    .await;
    assert_eq!(s, 200, "{created}");
    record(
        &h,
        b,
        Method::POST,
        "/api/providers",
        Some(provider_body("groq", &m.base_url())),
    )
    .await;
    let (s, k) = record(
        &h,
        b,
        Method::POST,
        "/api/providers/groq/keys",
        Some(json!({"name": "k2", "value": api_secret})),
    )
    .await;
    assert_eq!(s, 200, "{k}");
    let kid = k["id"].as_str().unwrap().to_owned();
    // Error paths that involve the secret.
    record(
        &h,
        b,
        Method::POST,
        "/api/providers/groq/keys",
        Some(json!({"name": "k2", "value": api_secret})),
    )
    .await;
    record(
        &h,
        b,
        Method::POST,
        "/api/providers/ollama/keys",
        Some(json!({"name": "k9", "value": api_secret})),
    )
    .await;
    record(
        &h,
        b,
        Method::POST,
        "/api/providers/groq/keys",
        Some(json!({"name": "k3", "value": api_secret, "weight": -1})),
    )
    .await;
    record(&h, b, Method::GET, "/api/providers/groq/keys", None).await;
    record(
        &h,
        b,
        Method::GET,
        &format!("/api/providers/groq/keys/{kid}"),
        None,
    )
    .await;
    record(&h, b, Method::GET, "/api/providers/openai/keys", None).await;
    record(&h, b, Method::GET, "/api/keys", None).await;
    record(
        &h,
        b,
        Method::PUT,
        &format!("/api/providers/groq/keys/{kid}"),
        Some(json!({"value": SECRET_MASK, "weight": 4})),
    )
    .await;
    record(
        &h,
        b,
        Method::PUT,
        &format!("/api/providers/groq/keys/{kid}"),
        Some(json!({"value": "sk-x************************zzzz"})),
    )
    .await;
    record(
        &h,
        b,
        Method::PUT,
        &format!("/api/providers/groq/keys/{kid}"),
        Some(json!({"value": new_secret})),
    )
    .await;
    record(
        &h,
        b,
        Method::PUT,
        "/api/providers/openai",
        Some(json!({"concurrency_and_buffer_size": {"concurrency": 10, "buffer_size": 20}})),
    )
    .await;
    record(
        &h,
        b,
        Method::PUT,
        "/api/providers/openai",
        Some(json!({"concurrency_and_buffer_size": {"concurrency": 0, "buffer_size": 20}})),
    )
    .await;
    record(&h, b, Method::GET, "/api/providers", None).await;
    record(&h, b, Method::GET, "/api/keys", None).await;
    record(&h, b, Method::GET, "/health", None).await;
    record(
        &h,
        b,
        Method::DELETE,
        &format!("/api/providers/groq/keys/{kid}"),
        None,
    )
    .await;
    record(&h, b, Method::DELETE, "/api/providers/groq", None).await;
    record(&h, b, Method::DELETE, "/api/providers/openai", None).await;

    assert!(bodies.len() > 20);
    for (what, text) in &bodies {
        for s in secrets {
            assert!(!text.contains(s), "{what} leaks a secret: {text}");
        }
        // Nor a long-enough fragment of one (e.g. a partially masked value).
        for s in [file_secret, api_secret, new_secret] {
            assert!(
                !text.contains(&s[4..s.len() - 4]),
                "{what} leaks part of a secret: {text}"
            );
        }
    }
}

/// `proxy_config` carries a password in Bifrost's schema; it must not be echoed back.
#[tokio::test]
async fn proxy_password_is_not_returned() {
    let m = mock().await;
    let h = Harness::start(None).await;
    let pw = "proxy-password-PPPPQQQQRRRR";
    let mut body = provider_body("groq", &m.base_url());
    body["proxy_config"] = json!({"type": "http", "url": "http://proxy.internal:3128", "username": "u", "password": pw});
    let resp = h.post("/api/providers", &body).await;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(
        !text.contains(pw),
        "POST response leaks the proxy password: {text}"
    );
    let text = h.get("/api/providers/groq").await.text().await.unwrap();
    assert!(!text.contains(pw), "GET leaks the proxy password: {text}");
    let text = h.get("/api/providers").await.text().await.unwrap();
    assert!(!text.contains(pw), "list leaks the proxy password: {text}");
}

// ---- 6. live changes ------------------------------------------------------------------------

#[tokio::test]
async fn changes_apply_to_the_next_request() {
    let m = mock().await;
    let h = Harness::start(None).await;
    // Before: not configured.
    let (s, v) = json_of(h.chat("groq/llama").await).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["type"], "provider_not_configured", "{v}");

    create_provider(&h, "groq", &m.base_url()).await;
    let k = create_key(&h, "groq", "g1", SECRET).await;
    assert_chat_uses_key(&h, &m, "groq/llama", SECRET).await;

    let path = format!("/api/providers/groq/keys/{}", k["id"].as_str().unwrap());
    let (s, v) = json_of(h.put(&path, &json!({"enabled": false})).await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["enabled"], false);
    m.clear_requests();
    let (s, v) = json_of(h.chat("groq/llama").await).await;
    assert_eq!(s, 400, "{v}");
    assert_envelope(&v, 400);
    assert_eq!(v["error"]["type"], "no_key_supports_model", "{v}");
    assert!(chat_requests(&m).is_empty(), "a disabled key is never sent");

    let (s, v) = json_of(h.put(&path, &json!({"enabled": true})).await).await;
    assert_eq!(s, 200, "{v}");
    assert_chat_uses_key(&h, &m, "groq/llama", SECRET).await;

    // Restricting the key's models applies immediately too.
    let (s, _) = json_of(h.put(&path, &json!({"models": ["llama"]})).await).await;
    assert_eq!(s, 200);
    assert_chat_uses_key(&h, &m, "groq/llama", SECRET).await;
    let (s, v) = json_of(h.chat("groq/mixtral").await).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["type"], "no_key_supports_model", "{v}");
}

// ---- 7. persistence --------------------------------------------------------------------------

#[tokio::test]
async fn api_changes_survive_restart() {
    let m = mock().await;
    let h = Harness::start(None).await;
    create_provider(&h, "groq", &m.base_url()).await;
    let k = create_key(&h, "groq", "g1", SECRET).await;
    let (_, provider_before) = json_of(h.get("/api/providers/groq").await).await;

    let h = h.restart().await;
    let (s, v) = json_of(h.get("/api/providers/groq").await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, provider_before);
    let (s, v) = json_of(
        h.get(&format!(
            "/api/providers/groq/keys/{}",
            k["id"].as_str().unwrap()
        ))
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, k, "same id, name and redacted value after restart");
    assert_chat_uses_key(&h, &m, "groq/llama", SECRET).await;
}

#[tokio::test]
async fn config_file_provider_deleted_stays_deleted_until_file_changes() {
    let m = mock().await;
    let config =
        |key: &str| json!({"providers": {"openai": provider(&m.base_url(), &[("k1", key)])}});
    let h = Harness::start(Some(config(SECRET))).await;
    assert_chat_uses_key(&h, &m, "openai/gpt-4o", SECRET).await;

    // API edits of a file provider survive a restart with the same file.
    let (_, keys) = json_of(h.get("/api/providers/openai/keys").await).await;
    let kid = keys["keys"][0]["id"].as_str().unwrap().to_owned();
    let (s, _) = json_of(
        h.put(
            &format!("/api/providers/openai/keys/{kid}"),
            &json!({"weight": 7}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    let h = h.restart().await;
    let (_, k) = json_of(h.get(&format!("/api/providers/openai/keys/{kid}")).await).await;
    assert_eq!(k["weight"], 7.0, "API edit kept: {k}");

    // Deleted via the API: stays deleted across a restart with the same config.json.
    let (s, v) = json_of(h.delete("/api/providers/openai").await).await;
    assert_eq!(s, 200, "{v}");
    let h = h.restart().await;
    let (s, v) = json_of(h.get("/api/providers/openai").await).await;
    assert_eq!(s, 404, "deleted provider came back from config.json: {v}");
    let (s, v) = json_of(h.chat("openai/gpt-4o").await).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["type"], "provider_not_configured");

    // Edit the provider's section in config.json: it is re-imported from the file.
    let new_key = "sk-edited-in-file-99998888";
    std::fs::write(
        h.dir.path().join("config.json"),
        serde_json::to_vec_pretty(&config(new_key)).unwrap(),
    )
    .unwrap();
    let h = h.restart().await;
    let (s, v) = json_of(h.get("/api/providers/openai").await).await;
    assert_eq!(s, 200, "edited provider re-imported: {v}");
    let (_, keys) = json_of(h.get("/api/providers/openai/keys").await).await;
    assert_eq!(keys["total"], 1, "{keys}");
    assert_eq!(keys["keys"][0]["value"], mask(new_key));
    assert_chat_uses_key(&h, &m, "openai/gpt-4o", new_key).await;
}

// ---- 8. start-up -----------------------------------------------------------------------------

#[tokio::test]
async fn malformed_config_fails_start_with_json_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"providers":{"openai":{"keys":[{"name":"a","value":"sk-xxxxxxxxxxxx","weight":"heavy"}]}}}"#,
    )
    .unwrap();
    let msg = start_err(options(dir.path().to_path_buf())).await;
    assert!(msg.contains("providers.openai.keys[0].weight"), "{msg}");
    assert!(msg.contains("config.json"), "names the file: {msg}");
    assert!(
        !msg.contains("sk-xxxxxxxxxxxx"),
        "no secret in start errors: {msg}"
    );
}

#[tokio::test]
async fn explicit_missing_config_path_fails_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path().to_path_buf());
    let missing = dir.path().join("does-not-exist.json");
    opts.config_path = Some(missing.clone());
    let msg = start_err(opts).await;
    assert!(msg.contains("does-not-exist.json"), "{msg}");
}

#[tokio::test]
async fn explicit_config_path_is_used() {
    let m = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg_dir = tempfile::tempdir().unwrap();
    let path = cfg_dir.path().join("custom.json");
    std::fs::write(
        &path,
        serde_json::to_vec(
            &json!({"providers": {"openai": provider(&m.base_url(), &[("k1", SECRET)])}}),
        )
        .unwrap(),
    )
    .unwrap();
    let mut opts = options(dir.path().to_path_buf());
    opts.config_path = Some(path);
    let gw = ok_or_panic(
        Gateway::start(opts).await,
        "starts with an explicit config path",
    );
    let h = Harness {
        gw,
        dir,
        http: reqwest::Client::new(),
    };
    assert_chat_uses_key(&h, &m, "openai/gpt-4o", SECRET).await;
    h.gw.shutdown().await;
}

#[tokio::test]
async fn config_store_disabled_refuses_writes_serves_reads_and_inference() {
    let m = mock().await;
    let h = Harness::start(Some(json!({
        "config_store": {"enabled": false},
        "providers": {"openai": provider(&m.base_url(), &[("k1", SECRET)])}
    })))
    .await;
    assert!(
        !h.dir.path().join("config.db").exists(),
        "no store file when the store is disabled"
    );

    // Reads.
    let (s, v) = json_of(h.get("/api/providers").await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(names(&v["providers"]), ["openai"]);
    let (s, v) = json_of(h.get("/api/providers/openai/keys").await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["keys"][0]["value"], SECRET_MASK);
    let kid = v["keys"][0]["id"].as_str().unwrap().to_owned();
    let (s, _) = json_of(h.get(&format!("/api/providers/openai/keys/{kid}")).await).await;
    assert_eq!(s, 200);
    let (s, v) = json_of(h.get("/api/keys").await).await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().unwrap().len(), 1);

    // Writes.
    let writes: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/api/providers".into(),
            Some(provider_body("groq", &m.base_url())),
        ),
        (
            Method::PUT,
            "/api/providers/openai".into(),
            Some(json!({"network_config": {"max_retries": 1}})),
        ),
        (Method::DELETE, "/api/providers/openai".into(), None),
        (
            Method::POST,
            "/api/providers/openai/keys".into(),
            Some(json!({"name": "k2", "value": "sk-live-xxxxxxxxxxxxxxx"})),
        ),
        (
            Method::PUT,
            format!("/api/providers/openai/keys/{kid}"),
            Some(json!({"weight": 3})),
        ),
        (
            Method::DELETE,
            format!("/api/providers/openai/keys/{kid}"),
            None,
        ),
    ];
    for (method, path, body) in writes {
        let (s, v) = call(&h, method.clone(), &path, body.as_ref()).await;
        assert_eq!(s, 400, "{method} {path}: {v}");
        assert_envelope(&v, 400);
        assert_eq!(
            v["error"]["type"], "config_store_disabled",
            "{method} {path}: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("config_store"),
            "{v}"
        );
    }
    let (_, v) = json_of(h.get("/api/providers").await).await;
    assert_eq!(v["total"], 1, "nothing changed: {v}");

    // Inference from the file.
    assert_chat_uses_key(&h, &m, "openai/gpt-4o", SECRET).await;

    // Health reports the store as disabled and is still healthy.
    let (s, v) = json_of(h.get("/health").await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["components"]["config_store"], "disabled");
}

// ---- 9. loopback guard -----------------------------------------------------------------------

fn in_process_request(
    method: &str,
    path: &str,
    peer: Option<SocketAddr>,
    body: Option<&Value>,
) -> http::Request<axum::body::Body> {
    let mut b = http::Request::builder().method(method).uri(path);
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let body = match body {
        Some(v) => axum::body::Body::from(serde_json::to_vec(v).unwrap()),
        None => axum::body::Body::empty(),
    };
    let mut req = b.body(body).unwrap();
    if let Some(p) = peer {
        req.extensions_mut().insert(ConnectInfo(p));
    }
    req
}

async fn oneshot(router: &axum::Router, req: http::Request<axum::body::Body>) -> (u16, Value) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON ({status}): {}", String::from_utf8_lossy(&bytes)));
    (status, v)
}

async fn in_process_router(
    m: &MockServer,
    insecure_no_auth: bool,
) -> (
    axum::Router,
    Arc<causeway_server::AppState>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(
            &json!({"providers": {"openai": provider(&m.base_url(), &[("k1", SECRET)])}}),
        )
        .unwrap(),
    )
    .unwrap();
    let mut opts = options(dir.path().to_path_buf());
    opts.insecure_no_auth = insecure_no_auth;
    let state = Arc::new(ok_or_panic(
        causeway_server::gateway::build_state(&opts).await,
        "state builds",
    ));
    (causeway_server::router(state.clone()), state, dir)
}

#[tokio::test]
async fn management_guard_blocks_remote_clients() {
    let m = mock().await;
    let (router, state, _dir) = in_process_router(&m, false).await;
    assert_eq!(state.access, ManagementAccess::LoopbackOnly);
    let remote = SocketAddr::from(([10, 1, 2, 3], 40000));

    let blocked: &[(&str, &str, Option<Value>)] = &[
        ("GET", "/api/providers", None),
        ("GET", "/api/providers/openai", None),
        ("GET", "/api/providers/openai/keys", None),
        ("GET", "/api/keys", None),
        (
            "POST",
            "/api/providers",
            Some(provider_body("groq", &m.base_url())),
        ),
        ("DELETE", "/api/providers/openai", None),
    ];
    for (method, path, body) in blocked {
        let (s, v) = oneshot(
            &router,
            in_process_request(method, path, Some(remote), body.as_ref()),
        )
        .await;
        assert_eq!(s, 403, "{method} {path}: {v}");
        assert_envelope(&v, 403);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--insecure-no-auth"),
            "{v}"
        );
    }
    // Nothing changed behind the guard.
    let local = SocketAddr::from(([127, 0, 0, 1], 40000));
    let (s, v) = oneshot(
        &router,
        in_process_request("GET", "/api/providers", Some(local), None),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(names(&v["providers"]), ["openai"]);

    // No peer address at all: refused.
    let (s, v) = oneshot(
        &router,
        in_process_request("GET", "/api/providers", None, None),
    )
    .await;
    assert_eq!(s, 403, "{v}");

    // IPv6 loopback and IPv4-mapped loopback are local.
    for ip in ["::1", "::ffff:127.0.0.1"] {
        let peer = SocketAddr::new(ip.parse().unwrap(), 40000);
        let (s, v) = oneshot(
            &router,
            in_process_request("GET", "/api/providers", Some(peer), None),
        )
        .await;
        assert_eq!(s, 200, "{ip}: {v}");
    }
    // An IPv4-mapped remote address is not.
    let peer = SocketAddr::new("::ffff:10.1.2.3".parse().unwrap(), 40000);
    let (s, _) = oneshot(
        &router,
        in_process_request("GET", "/api/providers", Some(peer), None),
    )
    .await;
    assert_eq!(s, 403);

    // Inference and health are not behind the guard.
    m.clear_requests();
    let (s, v) = oneshot(
        &router,
        in_process_request(
            "POST",
            "/v1/chat/completions",
            Some(remote),
            Some(&chat_body("openai/gpt-4o")),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(chat_requests(&m).len(), 1);
    let (s, v) = oneshot(
        &router,
        in_process_request(
            "POST",
            "/openai/v1/chat/completions",
            Some(remote),
            Some(&chat_body("openai/gpt-4o")),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = oneshot(
        &router,
        in_process_request("GET", "/health", Some(remote), None),
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn management_open_with_insecure_no_auth() {
    let m = mock().await;
    let (router, state, _dir) = in_process_router(&m, true).await;
    assert_eq!(state.access, ManagementAccess::Open);
    let remote = SocketAddr::from(([10, 1, 2, 3], 40000));
    let (s, v) = oneshot(
        &router,
        in_process_request("GET", "/api/providers", Some(remote), None),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["total"], 1);
    let (s, v) = oneshot(
        &router,
        in_process_request(
            "POST",
            "/api/providers",
            Some(remote),
            Some(&provider_body("groq", &m.base_url())),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn non_loopback_bind_requires_insecure_no_auth() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path().to_path_buf());
    opts.host = "0.0.0.0".into();
    let msg = start_err(opts.clone()).await;
    assert!(msg.contains("--insecure-no-auth"), "{msg}");
    assert!(msg.contains("0.0.0.0"), "{msg}");

    // With the flag it starts (ephemeral port).
    opts.insecure_no_auth = true;
    let gw = ok_or_panic(Gateway::start(opts).await, "starts with --insecure-no-auth");
    assert_eq!(gw.state.access, ManagementAccess::Open);
    gw.shutdown().await;
}

// ---- 10. health ------------------------------------------------------------------------------

#[tokio::test]
async fn health_reports_store_ok() {
    let h = Harness::start(None).await;
    let resp = h.get("/health").await;
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let (s, v) = json_of(resp).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(
        v["components"],
        json!({"config_store": "ok", "logs_store": "ok"}),
        "{v}"
    );
}

// ---- 11. error envelope ----------------------------------------------------------------------

#[tokio::test]
async fn management_errors_use_the_envelope() {
    let m = mock().await;
    let h = Harness::start(None).await;
    create_provider(&h, "groq", &m.base_url()).await;
    let k = create_key(&h, "groq", "g1", SECRET).await;
    let kid = k["id"].as_str().unwrap();

    // Bad JSON on every route that takes a body.
    let key_path = format!("/api/providers/groq/keys/{kid}");
    let with_body: [(Method, &str); 4] = [
        (Method::POST, "/api/providers"),
        (Method::PUT, "/api/providers/groq"),
        (Method::POST, "/api/providers/groq/keys"),
        (Method::PUT, &key_path),
    ];
    for (method, path) in &with_body {
        for raw in ["{not json", "", "   ", "[1,2]", "\"str\"", "{\"a\":"] {
            let (s, v) = call_raw(&h, method.clone(), path, raw).await;
            assert_eq!(s, 400, "{method} {path} {raw:?}: {v}");
            assert_envelope(&v, 400);
            assert_eq!(v["is_bifrost_error"], false);
            let msg = v["error"]["message"].as_str().unwrap();
            assert!(
                msg.starts_with("Invalid request body"),
                "{method} {path} {raw:?}: {msg}"
            );
        }
    }
    // A wrongly typed field names the field.
    let (s, v) = call(
        &h,
        Method::POST,
        "/api/providers/groq/keys",
        Some(&json!({"name": "x", "value": SECRET, "weight": "heavy"})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("weight"),
        "{v}"
    );
    assert_eq!(v["error"]["param"], "weight", "{v}");
}

#[tokio::test]
async fn unknown_routes_are_404_envelopes() {
    let h = Harness::start(None).await;
    for path in ["/api/whatever", "/api/providers/groq/keys/x/y", "/nope"] {
        let (s, v) = call(&h, Method::GET, path, None).await;
        assert_eq!(s, 404, "{path}: {v}");
        assert_envelope(&v, 404);
        assert_eq!(v["is_bifrost_error"], false);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("Route not found"),
            "{v}"
        );
    }
}

/// The 404 message names the path the client requested, not the path inside the nested
/// `/api` router.
#[tokio::test]
async fn unknown_api_route_message_names_full_path() {
    let h = Harness::start(None).await;
    for path in ["/api/whatever", "/api/providers/groq/keys/x/y", "/nope"] {
        let (s, v) = call(&h, Method::GET, path, None).await;
        assert_eq!(s, 404, "{path}: {v}");
        assert_eq!(
            v["error"]["message"],
            format!("Route not found: {path}"),
            "{v}"
        );
    }
}

#[tokio::test]
async fn wrong_methods_are_405_envelopes() {
    let h = Harness::start(None).await;
    for (method, path) in [
        (Method::PATCH, "/api/providers"),
        (Method::DELETE, "/api/providers"),
        (Method::POST, "/api/providers/groq"),
        (Method::PUT, "/api/providers/groq/keys"),
        (Method::POST, "/api/keys"),
        (Method::PATCH, "/api/providers/groq/keys/some-id"),
        (Method::POST, "/health"),
        (Method::GET, "/v1/chat/completions"),
    ] {
        let (s, v) = call(&h, method.clone(), path, None).await;
        assert_eq!(s, 405, "{method} {path}: {v}");
        assert_envelope(&v, 405);
        assert_eq!(v["is_bifrost_error"], false);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains(method.as_str()),
            "{v}"
        );
    }
}

/// A body with garbage after the JSON value is not valid JSON and must be refused; it must
/// not be applied as if the garbage were not there.
#[tokio::test]
async fn trailing_garbage_after_json_body_is_rejected() {
    let m = mock().await;
    let h = Harness::start(None).await;
    create_provider(&h, "groq", &m.base_url()).await;
    let (_, before) = json_of(h.get("/api/providers/groq").await).await;
    let (s, v) = call_raw(
        &h,
        Method::PUT,
        "/api/providers/groq",
        r#"{"network_config": {"base_url": "http://127.0.0.1:9", "max_retries": 4}} trailing"#,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_envelope(&v, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid request body"),
        "{v}"
    );
    let (_, after) = json_of(h.get("/api/providers/groq").await).await;
    assert_eq!(after, before, "a rejected body changes nothing");
}
