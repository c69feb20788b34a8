//! `/api/plugins` and the plugin pipeline over real HTTP: shapes and status codes, the
//! lifecycle (create disabled, enable, reconfigure, reload under load, delete), ordering,
//! built-in plugins, persistence across restarts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Harness, assert_envelope, chat_body, json_of, provider};
use mock_provider::{MockConfig, MockServer};
use serde_json::{Value, json};

fn mock_rule(name: &str, regex: &str, message: &str) -> Value {
    json!({
        "name": name,
        "conditions": {"message_regex": regex},
        "responses": [{"type": "success", "content": {"message": message}}]
    })
}

fn content_of(v: &Value) -> &str {
    v["choices"][0]["message"]["content"].as_str().unwrap_or("")
}

/// Exactly the seed's plugin object keys (plus placement and order).
fn assert_plugin_shape(p: &Value) {
    let mut keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "actualName",
            "config",
            "enabled",
            "isCustom",
            "name",
            "order",
            "path",
            "placement",
            "status"
        ],
        "{p}"
    );
    let mut skeys: Vec<&str> = p["status"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    skeys.sort_unstable();
    assert_eq!(skeys, ["logs", "name", "status", "types"], "{p}");
    assert!(
        ["active", "error", "disabled", "loading", "uninitialized"]
            .contains(&p["status"]["status"].as_str().unwrap())
    );
}

#[tokio::test]
async fn seed_example_body_gets_an_envelope_and_builtins_are_listed() {
    let h = Harness::start(None).await;
    // The seed's curl example: a bare name that is neither built-in nor given a module path.
    let (s, v) = json_of(h.post("/api/plugins", &json!({"name": "string"})).await).await;
    assert_eq!(s, 400, "{v}");
    assert_envelope(&v, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs a path"),
        "{v}"
    );

    let (s, v) = json_of(h.get("/api/plugins/builtins").await).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"mocker") && names.contains(&"request_guard"),
        "{names:?}"
    );

    // Governance and request logging are built-ins that are on by default.
    let (s, v) = json_of(h.get("/api/plugins").await).await;
    assert_eq!(s, 200);
    assert_eq!(v["count"], 2, "{v}");
    for (i, name) in ["governance", "logging"].iter().enumerate() {
        assert_eq!(v["plugins"][i]["name"], *name, "{v}");
        assert_eq!(v["plugins"][i]["status"]["status"], "active");
        assert_plugin_shape(&v["plugins"][i]);
    }
}

#[tokio::test]
async fn builtin_lifecycle_create_disabled_enable_update_delete() {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let h = Harness::start(Some(
        json!({"providers": {"openai": provider(&m.base_url(), &[("k", "sk-one-111111111111")])}}),
    ))
    .await;

    let (s, v) = json_of(
        h.post(
            "/api/plugins",
            &json!({"name": "mocker", "config": {"rules": [mock_rule("hi", "hello", "mocked hello")]}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["message"], "Plugin created successfully");
    let p = &v["plugin"];
    assert_plugin_shape(p);
    assert_eq!(p["name"], "mocker");
    assert_eq!(p["actualName"], "mocker");
    assert_eq!(p["enabled"], false);
    assert_eq!(p["isCustom"], false);
    assert_eq!(p["path"], Value::Null);
    assert_eq!(p["placement"], "builtin");
    assert_eq!(p["status"]["status"], "disabled");
    assert_eq!(p["status"]["types"], json!([]));

    // Disabled: the provider answers.
    let (s, v) = json_of(h.chat("openai/gpt-4o").await).await;
    assert_eq!(s, 200);
    assert_eq!(content_of(&v), "Hello from mock-provider");

    // Duplicate.
    let (s, v) = json_of(h.post("/api/plugins", &json!({"name": "mocker"})).await).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["message"], "Plugin already exists");

    // Enable: an omitted config keeps the stored one.
    let (s, v) = json_of(
        h.put("/api/plugins/mocker", &json!({"enabled": true}))
            .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message"], "Plugin updated successfully");
    assert_plugin_shape(&v["plugin"]);
    assert_eq!(v["plugin"]["status"]["status"], "active");
    assert_eq!(v["plugin"]["status"]["types"], json!(["llm"]));
    assert!(
        v["plugin"]["status"]["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("mocker"))
    );
    assert_eq!(v["plugin"]["config"]["rules"][0]["name"], "hi");
    let (s, v) = json_of(h.chat("openai/gpt-4o").await).await;
    assert_eq!(s, 200);
    assert_eq!(content_of(&v), "mocked hello");
    assert_eq!(
        m.request_count(),
        1,
        "the short circuit never reaches the provider"
    );

    // Update config only: `enabled` is kept (unlike Bifrost), the new rule applies next request.
    let (s, v) = json_of(
        h.put(
            "/api/plugins/mocker",
            &json!({"config": {"rules": [mock_rule("hi", "hello", "second version")]}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["plugin"]["enabled"], true);
    let (_, v) = json_of(h.chat("openai/gpt-4o").await).await;
    assert_eq!(content_of(&v), "second version");

    // A config the plugin rejects: 400 naming the field; the running version is unchanged.
    let (s, v) = json_of(
        h.put(
            "/api/plugins/mocker",
            &json!({"config": {"rules": [{"name": "x", "probability": 2, "responses": [{"type": "success"}]}]}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("Invalid plugin configuration"), "{msg}");
    assert!(msg.contains("rules[0].probability"), "{msg}");
    let (_, v) = json_of(h.chat("openai/gpt-4o").await).await;
    assert_eq!(content_of(&v), "second version");

    // Disable again, then delete.
    let (s, v) = json_of(
        h.put("/api/plugins/mocker", &json!({"enabled": false}))
            .await,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["plugin"]["status"]["status"], "disabled");
    let (_, v) = json_of(h.chat("openai/gpt-4o").await).await;
    assert_eq!(content_of(&v), "Hello from mock-provider");
    let (s, v) = json_of(h.delete("/api/plugins/mocker").await).await;
    assert_eq!(s, 200);
    assert_eq!(v, json!({"message": "Plugin deleted successfully"}));
    let (s, v) = json_of(h.get("/api/plugins/mocker").await).await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["message"], "Plugin not found");
    let (s, _) = json_of(h.delete("/api/plugins/mocker").await).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn create_validation_errors() {
    let h = Harness::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"definitely not wasm").unwrap();
    let cases = vec![
        (json!({}), 400, "Plugin name is required"),
        (json!({"name": ""}), 400, "Plugin name is required"),
        (json!({"name": "bad name!"}), 400, "Invalid plugin name"),
        (
            json!({"name": "mocker", "placement": "middle"}),
            400,
            "Invalid placement",
        ),
        (
            json!({"name": "mocker", "config": "x"}),
            400,
            "config must be a JSON object",
        ),
        (
            json!({"name": "mocker", "enabled": true, "config": {"nope": 1}}),
            400,
            "Invalid plugin configuration",
        ),
        (
            json!({"name": "native", "path": "/plugins/my_custom_plugin.so"}),
            400,
            "native",
        ),
        (
            json!({"name": "missing", "path": "/no/such/plugin.wasm"}),
            400,
            "cannot be read",
        ),
        (
            json!({"name": "garbage", "enabled": true, "path": garbage.to_str().unwrap()}),
            400,
            "",
        ),
    ];
    for (body, status, needle) in cases {
        let (s, v) = json_of(h.post("/api/plugins", &body).await).await;
        assert_eq!(s, status, "{body}: {v}");
        assert_envelope(&v, status);
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{body}: {v}"
        );
    }
    let resp = h
        .http
        .post(h.url("/api/plugins"))
        .body("{broken")
        .send()
        .await
        .unwrap();
    let (s, v) = json_of(resp).await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid request body")
    );
    // Nothing was left behind by the failures (only the default governance and logging).
    let (_, v) = json_of(h.get("/api/plugins").await).await;
    assert_eq!(v["count"], 2, "{v}");
}

#[tokio::test]
async fn request_guard_blocks_with_its_own_status_and_redacts() {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let h = Harness::start(Some(
        json!({"providers": {"openai": provider(&m.base_url(), &[("k", "sk-one-111111111111")])}}),
    ))
    .await;
    let (s, v) = json_of(
        h.post(
            "/api/plugins",
            &json!({"name": "request_guard", "enabled": true, "config": {
                "block_status": 403,
                "rules": [
                    {"name": "no-secrets", "pattern": "BEGIN PRIVATE KEY", "action": "block"},
                    {"name": "ssn", "pattern": "\\d{3}-\\d{2}-\\d{4}", "action": "redact"}
                ]
            }}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let body = json!({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "here: -----BEGIN PRIVATE KEY-----"}]});
    let (s, v) = json_of(h.post("/v1/chat/completions", &body).await).await;
    assert_eq!(s, 403, "{v}");
    assert_envelope(&v, 403);
    assert_eq!(v["type"], "request_blocked");
    assert_eq!(v["error"]["code"], "no-secrets");
    assert_eq!(m.request_count(), 0);

    let body = json!({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "my ssn is 123-45-6789 ok"}]});
    let (s, _) = json_of(h.post("/v1/chat/completions", &body).await).await;
    assert_eq!(s, 200);
    let sent = &m.requests()[0].body;
    let text = sent["messages"][0]["content"].as_str().unwrap();
    assert!(!text.contains("123-45-6789"), "{text}");
    assert!(text.contains("[REDACTED]"), "{text}");
}

#[tokio::test]
async fn placement_and_order_decide_who_runs_first() {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let h = Harness::start(Some(
        json!({"providers": {"openai": provider(&m.base_url(), &[("k", "sk-one-111111111111")])}}),
    ))
    .await;
    // The guard redacts "alpha"; the mocker answers only when it still sees "alpha".
    let (s, _) = json_of(
        h.post(
            "/api/plugins",
            &json!({"name": "request_guard", "enabled": true, "placement": "pre_builtin",
                    "config": {"rules": [{"name": "r", "pattern": "alpha", "action": "redact"}]}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = json_of(
        h.post(
            "/api/plugins",
            &json!({"name": "mocker", "enabled": true, "placement": "post_builtin",
                    "config": {"rules": [mock_rule("a", "alpha", "mocker saw alpha")]}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 201);
    let body =
        json!({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "alpha"}]});
    let (_, v) = json_of(h.post("/v1/chat/completions", &body).await).await;
    assert_eq!(
        content_of(&v),
        "Hello from mock-provider",
        "guard ran first: {v}"
    );

    // Move the mocker before the guard.
    let (s, _) = json_of(
        h.put(
            "/api/plugins/mocker",
            &json!({"placement": "pre_builtin", "order": -1}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    let (_, v) = json_of(h.post("/v1/chat/completions", &body).await).await;
    assert_eq!(content_of(&v), "mocker saw alpha", "mocker ran first: {v}");

    // Same placement, order decides.
    let (s, _) = json_of(h.put("/api/plugins/mocker", &json!({"order": 5})).await).await;
    assert_eq!(s, 200);
    let (_, v) = json_of(h.post("/v1/chat/completions", &body).await).await;
    assert_eq!(content_of(&v), "Hello from mock-provider", "{v}");
}

#[tokio::test]
async fn definitions_and_builtin_enablement_survive_restart() {
    let h = Harness::start(Some(
        json!({"plugins": [{"name": "request_guard", "enabled": true, "config": {"rules": []}}]}),
    ))
    .await;
    let (_, v) = json_of(h.get("/api/plugins/request_guard").await).await;
    assert_eq!(
        v["status"]["status"], "active",
        "seeded from config.json: {v}"
    );
    // Disable the seeded built-in and add another through the API.
    let (s, _) = json_of(
        h.put("/api/plugins/request_guard", &json!({"enabled": false}))
            .await,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = json_of(
        h.post("/api/plugins", &json!({"name": "mocker", "enabled": true, "order": 3, "config": {"default_behavior": "success"}}))
            .await,
    )
    .await;
    assert_eq!(s, 201);
    let h = h.restart().await;
    let (_, v) = json_of(h.get("/api/plugins/request_guard").await).await;
    assert_eq!(
        v["enabled"], false,
        "disabling a built-in survives a restart: {v}"
    );
    assert_eq!(v["status"]["status"], "disabled");
    let (_, v) = json_of(h.get("/api/plugins/mocker").await).await;
    assert_eq!(v["enabled"], true);
    assert_eq!(v["order"], 3);
    assert_eq!(v["status"]["status"], "active");
    let (s, v) = json_of(h.chat("nope/model").await).await;
    assert_eq!(s, 200, "mocker answers without any provider: {v}");
}

#[tokio::test]
async fn put_creates_missing_definitions() {
    let h = Harness::start(None).await;
    // Bifrost-compatible upsert: PUT on a missing name creates it.
    let (s, v) = json_of(
        h.put(
            "/api/plugins/mocker",
            &json!({"config": {"default_behavior": "success"}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["plugin"]["enabled"], false);

    let (s, v) = json_of(
        h.put(
            "/api/plugins/request_guard",
            &json!({"enabled": true, "config": {"rules": [], "block_message": "no", "api_key": "sk-guard-secret-123456"}}),
        )
        .await,
    )
    .await;
    // request_guard refuses unknown keys, so a secret-bearing field is rejected outright.
    assert_eq!(s, 400, "{v}");
    assert!(!v.to_string().contains("sk-guard-secret-123456"));
}

#[tokio::test]
async fn reload_while_requests_are_in_flight() {
    let h = Harness::start(None).await;
    let slow = json!({"default_behavior": "success", "global_latency": {"type": "fixed", "min": 1500},
                      "rules": [mock_rule("v", ".", "old version")]});
    let (s, v) = json_of(
        h.post(
            "/api/plugins",
            &json!({"name": "mocker", "enabled": true, "config": slow}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let url = h.url("/v1/chat/completions");
    let client = h.http.clone();
    let in_flight: Vec<_> = (0..4)
        .map(|_| {
            let (c, u) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let r = c
                    .post(u)
                    .json(&chat_body("openai/gpt-4o"))
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    // Let them start, then swap in a new version.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, v) = json_of(
        h.put("/api/plugins/mocker", &json!({"config": {"global_latency": null, "rules": [mock_rule("v", ".", "new version")]}}))
            .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    for t in in_flight {
        let (status, v) = t.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            content_of(&v),
            "old version",
            "in-flight requests finish on the old instance"
        );
    }
    let (_, v) = json_of(h.chat("openai/gpt-4o").await).await;
    assert_eq!(content_of(&v), "new version");
}

#[tokio::test]
async fn every_fallback_attempt_reruns_pre_llm_hooks() {
    let m = MockServer::start(MockConfig {
        content: "from groq".into(),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let h = Harness::start(Some(
        json!({"providers": {"groq": provider(&m.base_url(), &[("k", "sk-groq-11111111111")])}}),
    ))
    .await;
    // The mocker fails requests for openai only; the fallback attempt (groq) passes it.
    let (s, v) = json_of(
        h.post(
            "/api/plugins",
            &json!({"name": "mocker", "enabled": true, "config": {"default_behavior": "passthrough", "rules": [{
                "name": "openai-down",
                "conditions": {"providers": ["openai"]},
                "responses": [{"type": "error", "error": {"message": "mocked outage", "status_code": 503}}]
            }]}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let mut body = chat_body("openai/gpt-4o");
    body["fallbacks"] = json!(["groq/llama-3.1-8b-instant"]);
    let (s, v) = json_of(h.post("/v1/chat/completions", &body).await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(content_of(&v), "from groq");
    assert_eq!(m.request_count(), 1);

    // A mocked error that forbids fallbacks stops there.
    let (s, _) = json_of(
        h.put(
            "/api/plugins/mocker",
            &json!({"config": {"rules": [{
                "name": "openai-down",
                "conditions": {"providers": ["openai"]},
                "responses": [{"type": "error", "allow_fallbacks": false, "error": {"message": "hard stop", "status_code": 451}}]
            }]}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = json_of(h.post("/v1/chat/completions", &body).await).await;
    assert_eq!(s, 451, "{v}");
    assert_eq!(v["error"]["message"], "hard stop");
    assert_eq!(m.request_count(), 1, "no fallback attempt was made");
}
