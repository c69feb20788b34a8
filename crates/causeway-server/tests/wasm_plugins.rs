//! Custom WebAssembly plugins over real HTTP: loading through `/api/plugins`, the example
//! plugins changing requests, answering from cache and editing streams, and the sandbox:
//! a plugin that traps, loops forever or allocates without bound never breaks a request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use common::{Harness, assert_envelope, chat_body, json_of, provider, sse_data};
use mock_provider::{MockConfig, MockServer};
use serde_json::{Value, json};

fn example(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/examples")
        .join(name)
        .join(format!("{name}.wasm"))
        .canonicalize()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// A minimal ABI module whose `pre_hook` body is `body` and whose `init` returns `init`.
fn wat_module(dir: &tempfile::TempDir, file: &str, body: &str, init: i32) -> String {
    let wat = format!(
        r#"(module
  (memory (export "memory") 1)
  (global $bump (mut i32) (i32.const 1024))
  (data (i32.const 16) "sandbox-test")
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (if (i32.gt_u (i32.add (global.get $bump) (local.get $n)) (i32.const 60000))
      (then (global.set $bump (i32.const 1024))))
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (local.get $n)))
    (local.get $p))
  (func (export "free") (param i32))
  (func (export "get_name") (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 12)))
  (func (export "init") (param i32 i32) (result i32) (i32.const {init}))
  (func (export "pre_hook") (param i32 i32) (result i64) {body}))"#
    );
    let path = dir.path().join(file);
    std::fs::write(&path, wat).unwrap();
    path.to_string_lossy().into_owned()
}

async fn setup() -> (MockServer, Harness) {
    let m = MockServer::start(MockConfig::default()).await.unwrap();
    let h = Harness::start(Some(
        json!({"providers": {"openai": provider(&m.base_url(), &[("k", "sk-one-111111111111")])}}),
    ))
    .await;
    (m, h)
}

fn content_of(v: &Value) -> &str {
    v["choices"][0]["message"]["content"].as_str().unwrap_or("")
}

#[tokio::test]
async fn header_rewrite_plugin_changes_the_request_sent_upstream() {
    let (m, h) = setup().await;
    let (s, v) = json_of(
        h.post(
            "/api/plugins",
            &json!({"name": "rewrite", "enabled": true, "path": example("header-rewrite")}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let p = &v["plugin"];
    assert_eq!(
        p["actualName"], "header-rewrite",
        "the name the module reports: {p}"
    );
    assert_eq!(p["isCustom"], true);
    assert_eq!(p["placement"], "post_builtin");
    assert_eq!(p["status"]["status"], "active");
    let mut types: Vec<&str> = p["status"]["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    types.sort_unstable();
    assert_eq!(types, ["http", "llm"]);

    let (s, v) = json_of(h.chat("openai/gpt-4o").await).await;
    assert_eq!(s, 200, "{v}");
    let sent = &m.requests()[0].body;
    let msgs = sent["messages"].as_array().unwrap();
    assert_eq!(msgs.last().unwrap()["content"], "Answer briefly.", "{sent}");
    assert_eq!(sent["temperature"], 0, "{sent}");
}

#[tokio::test]
async fn cached_answer_plugin_short_circuits_and_keeps_secrets_on_update() {
    let (m, h) = setup().await;
    let config =
        json!({"prompt": "what is 2+2?", "answer": "4", "api_key": "sk-cache-secret-0123456789"});
    let (s, v) = json_of(
        h.post(
            "/api/plugins",
            &json!({"name": "cache", "enabled": true, "path": example("cached-answer"), "config": config}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let shown = &v["plugin"]["config"];
    assert_eq!(shown["prompt"], "what is 2+2?");
    assert_ne!(
        shown["api_key"], "sk-cache-secret-0123456789",
        "secrets are redacted"
    );
    assert!(!v.to_string().contains("secret-0123"));

    let (s, v) = json_of(h.chat_prompt("what is 2+2?").await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(content_of(&v), "4");
    assert_eq!(m.request_count(), 0, "answered without the provider");
    let (_, v) = json_of(h.chat_prompt("something else").await).await;
    assert_eq!(content_of(&v), "Hello from mock-provider");

    // Send back the redacted config with a new answer: the stored secret is kept.
    let mut back = shown.clone();
    back["answer"] = json!("four");
    let (s, v) = json_of(h.put("/api/plugins/cache", &json!({"config": back})).await).await;
    assert_eq!(s, 200, "{v}");
    let stored = h.gw.state.plugins.spec("cache").unwrap().config;
    assert_eq!(stored["api_key"], "sk-cache-secret-0123456789");
    let (_, v) = json_of(h.chat_prompt("what is 2+2?").await).await;
    assert_eq!(content_of(&v), "four");

    // Survives a restart.
    let h = h.restart().await;
    let (_, v) = json_of(h.get("/api/plugins/cache").await).await;
    assert_eq!(v["status"]["status"], "active", "{v}");
    let (_, v) = json_of(h.chat_prompt("what is 2+2?").await).await;
    assert_eq!(content_of(&v), "four");
}

#[tokio::test]
async fn chunk_editor_plugin_edits_stream_chunks() {
    let (_m, h) = setup().await;
    let (s, v) = json_of(
        h.post(
            "/api/plugins",
            &json!({"name": "shout", "enabled": true, "path": example("chunk-editor")}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let mut body = chat_body("openai/gpt-4o");
    body["stream"] = json!(true);
    let events = sse_data(h.post("/v1/chat/completions", &body).await).await;
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
    assert_eq!(text, "HELLO FROM MOCK-PROVIDER");
}

#[tokio::test]
async fn misbehaving_plugins_never_break_requests() {
    let (m, h) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "trapper",
            wat_module(&dir, "trap.wat", "unreachable", 0),
            "trap",
        ),
        (
            "looper",
            wat_module(&dir, "loop.wat", "(loop $l (br $l)) (i64.const 0)", 0),
            "time",
        ),
        (
            "hog",
            wat_module(
                &dir,
                "hog.wat",
                "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable",
                0,
            ),
            "memory",
        ),
    ];
    for (name, path, _) in &cases {
        let (s, v) = json_of(
            h.post(
                "/api/plugins",
                &json!({"name": name, "enabled": true, "path": path, "config": {"_limits": {"memory_mb": 2, "call_timeout_ms": 50}}}),
            )
            .await,
        )
        .await;
        assert_eq!(s, 201, "{name}: {v}");
    }
    for _ in 0..3 {
        let (s, v) = json_of(h.chat("openai/gpt-4o").await).await;
        assert_eq!(s, 200, "the provider still answers: {v}");
        assert_eq!(content_of(&v), "Hello from mock-provider");
    }
    assert_eq!(m.request_count(), 3);
    for (name, _, needle) in &cases {
        let (_, v) = json_of(h.get(&format!("/api/plugins/{name}")).await).await;
        assert_eq!(
            v["status"]["status"], "error",
            "{name} flips to error after repeated failures: {v}"
        );
        let logs = v["status"]["logs"].to_string().to_ascii_lowercase();
        assert!(
            logs.contains(needle),
            "{name} logs say why ({needle}): {logs}"
        );
    }
}

#[tokio::test]
async fn load_failures_roll_back_and_bad_modules_are_400() {
    let (_m, h) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let failing_init = wat_module(&dir, "init.wat", "(i64.const 0)", 1);
    let (s, v) = json_of(
        h.post(
            "/api/plugins",
            &json!({"name": "broken", "enabled": true, "path": failing_init}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 500, "{v}");
    assert_envelope(&v, 500);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("init"),
        "{v}"
    );
    let (s, _) = json_of(h.get("/api/plugins/broken").await).await;
    assert_eq!(s, 404, "the row was rolled back");

    // Not a module at all: 400, nothing stored.
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "hello").unwrap();
    let (s, v) = json_of(
        h.post(
            "/api/plugins",
            &json!({"name": "notes", "enabled": true, "path": text.to_str().unwrap()}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (s, _) = json_of(h.get("/api/plugins/notes").await).await;
    assert_eq!(s, 404);

    // A disabled plugin is stored without being loaded; enabling it loads it.
    let ok = wat_module(&dir, "ok.wat", "(i64.const 0)", 0);
    let (s, v) = json_of(
        h.post("/api/plugins", &json!({"name": "later", "path": ok}))
            .await,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["plugin"]["status"]["status"], "disabled");
    // A failed enable keeps the definition as it was (disabled) and says why.
    let (s, v) = json_of(
        h.put(
            "/api/plugins/later",
            &json!({"enabled": true, "path": failing_init_path(&dir)}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 500, "{v}");
    let (_, v) = json_of(h.get("/api/plugins/later").await).await;
    assert_eq!(v["enabled"], false, "{v}");
    let (s, v) = json_of(h.put("/api/plugins/later", &json!({"enabled": true})).await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["plugin"]["status"]["status"], "active");
    assert_eq!(v["plugin"]["actualName"], "sandbox-test");
}

fn failing_init_path(dir: &tempfile::TempDir) -> String {
    dir.path().join("init.wat").to_string_lossy().into_owned()
}
