//! WebAssembly plugins end to end through `module_loader`, the adapter and `PluginChain`: the
//! committed example modules (plugins/examples), small WAT modules written from the ABI page
//! alone, sandbox failures (trap, timeout, memory) and load-error mapping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use causeway_core::{
    ErrorClass, GatewayError, LlmRequest, LlmResponse, RawObject, RequestContext, RequestType,
    RouteInfo,
};
use causeway_plugins::registry::ModuleLoader;
use causeway_plugins::wasm::module_loader;
use causeway_plugins::{
    ChainEntry, HttpRequest, HttpResponse, LoadError, Plugin, PluginChain, PluginHealth,
};
use causeway_wasm_host::{Hook, ModuleSource, WasmHost, WasmLimits};
use futures_util::StreamExt;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers.

fn loader() -> &'static ModuleLoader {
    static LOADER: OnceLock<ModuleLoader> = OnceLock::new();
    LOADER.get_or_init(|| module_loader(WasmLimits::default()).unwrap())
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/examples")
        .join(name)
        .join(format!("{name}.wasm"))
}

struct Loaded {
    plugin: Arc<dyn Plugin>,
    health: Arc<PluginHealth>,
    chain: PluginChain,
}

fn try_load(path: &Path, config: Value) -> Result<Loaded, LoadError> {
    let health = Arc::new(PluginHealth::default());
    let plugin = loader()(path, &config, Arc::clone(&health))?;
    let chain = PluginChain::new(vec![ChainEntry {
        name: "under-test".to_owned(),
        plugin: Arc::clone(&plugin),
        hooks: plugin.hooks(),
        health: Arc::clone(&health),
    }]);
    Ok(Loaded {
        plugin,
        health,
        chain,
    })
}

fn load(path: &Path, config: Value) -> Loaded {
    match try_load(path, config) {
        Ok(loaded) => loaded,
        Err(e) => panic!("{} failed to load: {e:?}", path.display()),
    }
}

/// Writes a WAT module to a temporary file and loads it (the host accepts WAT text).
fn load_wat(wat: &str, config: Value) -> (Loaded, tempfile::TempDir) {
    let (path, dir) = write_module(wat);
    (load(&path, config), dir)
}

fn write_module(text: &str) -> (PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugin.wat");
    std::fs::write(&path, text).unwrap();
    (path, dir)
}

fn ctx() -> RequestContext {
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", "Bearer secret".parse().unwrap());
    headers.insert("x-team", "blue".parse().unwrap());
    RequestContext::new("req-1", headers)
}

fn llm_request(kind: RequestType, body: Value, stream: bool) -> LlmRequest {
    LlmRequest {
        request_type: kind,
        provider: "openai".to_owned(),
        model: "gpt-4o-mini".to_owned(),
        fallbacks: Vec::new(),
        stream,
        body: RawObject::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap(),
    }
}

fn chat(user: &str) -> LlmRequest {
    llm_request(
        RequestType::ChatCompletion,
        json!({"messages": [{"role": "user", "content": user}], "max_tokens": 50, "temperature": 0.7}),
        false,
    )
}

fn body_json(req: &LlmRequest) -> Value {
    serde_json::from_slice(&req.body.to_bytes()).unwrap()
}

fn http_request() -> HttpRequest {
    HttpRequest {
        method: "POST".to_owned(),
        path: "/v1/chat/completions".to_owned(),
        headers: vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("X-Trace".to_owned(), "a".to_owned()),
            ("x-trace".to_owned(), "b".to_owned()),
        ],
        query: vec![("debug".to_owned(), "1".to_owned())],
        body: Bytes::from_static(br#"{"model":"openai/gpt-4o-mini","messages":[]}"#),
    }
}

fn completion() -> Result<LlmResponse, GatewayError> {
    Ok(LlmResponse::Complete {
        body: Bytes::from_static(
            br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}]}"#,
        ),
        route: RouteInfo {
            provider: "openai".to_owned(),
            model: "gpt-4o-mini".to_owned(),
            ..RouteInfo::default()
        },
    })
}

fn complete_body(result: &Result<LlmResponse, GatewayError>) -> Value {
    match result {
        Ok(LlmResponse::Complete { body, .. }) => serde_json::from_slice(body).unwrap(),
        other => panic!("expected a complete response, got {other:?}"),
    }
}

fn chunk(content: Value, finish: Value) -> Bytes {
    let delta = if content.is_null() {
        json!({})
    } else {
        json!({ "content": content })
    };
    Bytes::from(
        serde_json::to_vec(&json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        }))
        .unwrap(),
    )
}

/// A WAT module built from the ABI page alone: exports `memory`, `malloc`, `free(ptr)`,
/// `get_name`, `init` and the hooks given. String constants live in data segments; `$emit`
/// copies one into a fresh buffer and returns the packed pointer/length; `$contains` searches
/// the input.
struct Wat {
    data: Vec<String>,
    funcs: Vec<String>,
    next: usize,
    init: String,
}

impl Wat {
    fn new() -> Self {
        let mut wat = Wat {
            data: Vec::new(),
            funcs: Vec::new(),
            next: 1024,
            init: "(i32.const 0)".to_owned(),
        };
        let (ptr, len) = wat.string("abi-test");
        wat.funcs.push(format!(
            r#"(func (export "get_name") (result i64) (i64.or (i64.shl (i64.const {ptr}) (i64.const 32)) (i64.const {len})))"#
        ));
        wat
    }

    /// Adds a string constant; returns its address and length.
    fn string(&mut self, s: &str) -> (usize, usize) {
        let ptr = self.next;
        let escaped = s.replace('\\', "\\\\").replace('"', "\\\"");
        self.data
            .push(format!(r#"(data (i32.const {ptr}) "{escaped}")"#));
        self.next += s.len() + 8;
        (ptr, s.len())
    }

    /// `(call $emit ...)` for a constant output.
    fn emit(&mut self, output: &str) -> String {
        let (ptr, len) = self.string(output);
        format!("(call $emit (i32.const {ptr}) (i32.const {len}))")
    }

    /// Whether the input (locals 0 and 1) contains `needle`.
    fn input_contains(&mut self, needle: &str) -> String {
        let (ptr, len) = self.string(needle);
        format!("(call $contains (local.get 0) (local.get 1) (i32.const {ptr}) (i32.const {len}))")
    }

    fn hook(mut self, export: &str, body: &str) -> Self {
        self.funcs.push(format!(
            r#"(func (export "{export}") (param i32 i32) (result i64) {body})"#
        ));
        self
    }

    fn constant_hook(mut self, export: &str, output: &str) -> Self {
        let body = self.emit(output);
        self.hook(export, &body)
    }

    fn with_init(mut self, body: &str) -> Self {
        self.init = body.to_owned();
        self
    }

    fn build(self) -> String {
        format!(
            r#"(module
  (import "env" "log" (func $log (param i32 i32)))
  (memory (export "memory") 2)
  (global $heap_base i32 (i32.const 65536))
  (global $bump (mut i32) (i32.const 65536))
  (global $live (mut i32) (i32.const 0))
  {data}
  (func $malloc (export "malloc") (param $size i32) (result i32)
    (local $ptr i32) (local $end i32) (local $have i32)
    (local.set $ptr (global.get $bump))
    (local.set $end (i32.and (i32.add (i32.add (local.get $ptr) (local.get $size)) (i32.const 7)) (i32.const -8)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535)) (i32.const 16))) (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $bump (local.get $end))
    (global.set $live (i32.add (global.get $live) (i32.const 1)))
    (local.get $ptr))
  (func $free (export "free") (param $ptr i32)
    (if (i32.eqz (local.get $ptr)) (then (return)))
    (global.set $live (i32.sub (global.get $live) (i32.const 1)))
    (if (i32.eqz (global.get $live)) (then (global.set $bump (global.get $heap_base)))))
  (func $emit (param $ptr i32) (param $len i32) (result i64)
    (local $out i32)
    (local.set $out (call $malloc (local.get $len)))
    (memory.copy (local.get $out) (local.get $ptr) (local.get $len))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32)) (i64.extend_i32_u (local.get $len))))
  (func $contains (param $h i32) (param $hl i32) (param $n i32) (param $nl i32) (result i32)
    (local $i i32) (local $j i32)
    (if (i32.gt_u (local.get $nl) (local.get $hl)) (then (return (i32.const 0))))
    (loop $outer
      (local.set $j (i32.const 0))
      (block $mismatch
        (loop $inner
          (br_if $mismatch (i32.ne
            (i32.load8_u (i32.add (i32.add (local.get $h) (local.get $i)) (local.get $j)))
            (i32.load8_u (i32.add (local.get $n) (local.get $j)))))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))
          (if (i32.eq (local.get $j) (local.get $nl)) (then (return (i32.const 1))))
          (br $inner)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $outer (i32.le_u (i32.add (local.get $i) (local.get $nl)) (local.get $hl))))
    (i32.const 0))
  (func (export "init") (param i32 i32) (result i32) {init})
  {funcs}
)"#,
            data = self.data.join("\n  "),
            init = self.init,
            funcs = self.funcs.join("\n  "),
        )
    }
}

const PRE_CONTINUE: &str =
    r#"{"context":{},"request":null,"short_circuit":null,"has_short_circuit":false,"error":""}"#;

// ---------------------------------------------------------------------------------------------
// The example plugins (committed modules; npm is not needed to run these tests).

#[tokio::test]
async fn header_rewrite_changes_the_http_request_and_the_llm_request() {
    let loaded = load(&example("header-rewrite"), json!({}));
    assert_eq!(loaded.plugin.name(), "header-rewrite");
    let hooks = loaded.plugin.hooks();
    assert!(hooks.http_pre && hooks.pre_llm);
    assert!(!hooks.http_post && !hooks.stream_chunk && !hooks.post_llm);
    assert_eq!(hooks.types(), ["llm", "http"]);

    let mut ctx = ctx();
    let mut http = http_request();
    let answered = loaded
        .chain
        .run_http_pre(&mut ctx, &mut http)
        .await
        .unwrap();
    assert!(answered.is_none());
    let header = http
        .headers
        .iter()
        .find(|(name, _)| name == "x-causeway-example")
        .map(|(_, value)| value.as_str());
    assert_eq!(header, Some("header-rewrite"));
    assert!(
        http.headers
            .iter()
            .any(|(n, v)| n == "Content-Type" && v == "application/json")
    );
    // Repeated headers reach the guest joined and come back as one field.
    assert!(
        http.headers
            .iter()
            .any(|(n, v)| n == "X-Trace" && v == "a, b")
    );
    assert_eq!(http.query, [("debug".to_owned(), "1".to_owned())]);
    assert_eq!(http.body, http_request().body);

    let mut req = chat("What is Rust?");
    req.body
        .set("stream_options", &json!({"include_usage": true}))
        .unwrap();
    let (short_circuit, ran) = loaded.chain.run_pre_llm(&mut ctx, &mut req).await;
    assert!(short_circuit.is_none());
    assert_eq!(ran, 1);
    let body = body_json(&req);
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": "What is Rust?"},
            {"role": "system", "content": "Answer briefly."}
        ])
    );
    assert_eq!(body["temperature"], 0);
    assert_eq!(body["max_tokens"], 50);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert!(body.get("model").is_none());
    assert_eq!(
        (req.provider.as_str(), req.model.as_str()),
        ("openai", "gpt-4o-mini")
    );

    // Context values set in one hook reach the later hooks of the same request.
    assert_eq!(ctx.values["header-rewrite:http_pre"], true);
    assert_eq!(ctx.values["header-rewrite:pre"], true);
    assert!(!ctx.values.contains_key("request_id"));
    assert!(!loaded.health.failing());
    assert!(
        loaded
            .health
            .logs()
            .iter()
            .any(|l| l == "[info] header-rewrite ready: header value 'header-rewrite'"),
        "{:?}",
        loaded.health.logs()
    );
}

#[tokio::test]
async fn header_rewrite_config_is_passed_to_init() {
    let loaded = load(
        &example("header-rewrite"),
        json!({"header_value": "custom", "system_message": "", "temperature": null}),
    );
    let mut ctx = ctx();
    let mut http = http_request();
    loaded
        .chain
        .run_http_pre(&mut ctx, &mut http)
        .await
        .unwrap();
    assert!(
        http.headers
            .iter()
            .any(|(n, v)| n == "x-causeway-example" && v == "custom")
    );
    let mut req = chat("hi");
    let before = body_json(&req);
    loaded.chain.run_pre_llm(&mut ctx, &mut req).await;
    assert_eq!(body_json(&req), before);
}

#[tokio::test]
async fn cached_answer_short_circuits_the_configured_prompt() {
    let loaded = load(
        &example("cached-answer"),
        json!({"prompt": "What is the capital of France?", "answer": "Paris."}),
    );
    assert_eq!(loaded.plugin.name(), "cached-answer");
    assert_eq!(loaded.plugin.hooks().types(), ["llm"]);

    let mut ctx = ctx();
    let mut req = chat("  What is the capital of France? ");
    let (short_circuit, ran) = loaded.chain.run_pre_llm(&mut ctx, &mut req).await;
    assert_eq!(ran, 1);
    let result = short_circuit.expect("a cached answer");
    let body = complete_body(&result);
    assert_eq!(body["choices"][0]["message"]["content"], "Paris.");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-4o-mini");
    // The guest does not know the time; the adapter fills `created` in for OpenAI clients.
    assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
    let route = result.as_ref().unwrap().route();
    assert_eq!(
        (route.provider.as_str(), route.model.as_str()),
        ("openai", "gpt-4o-mini")
    );
    assert_eq!(ctx.values["cached-answer"], "hit");

    // Another prompt continues to the provider, unchanged.
    let mut other = chat("What is the capital of Spain?");
    let before = body_json(&other);
    let (short_circuit, _) = loaded.chain.run_pre_llm(&mut ctx, &mut other).await;
    assert!(short_circuit.is_none());
    assert_eq!(body_json(&other), before);
    assert_eq!(ctx.values["cached-answer"], "miss");
}

#[tokio::test]
async fn cached_answer_streams_when_the_caller_streams() {
    let loaded = load(
        &example("cached-answer"),
        json!({"prompt": "ping", "answer": "pong"}),
    );
    let mut req = llm_request(
        RequestType::ChatCompletion,
        json!({"messages": [{"role": "user", "content": "ping"}], "stream": true,
               "stream_options": {"include_usage": true}}),
        true,
    );
    let (short_circuit, _) = loaded.chain.run_pre_llm(&mut ctx(), &mut req).await;
    let Some(Ok(LlmResponse::Stream { chunks, .. })) = short_circuit else {
        panic!("expected a streamed short circuit");
    };
    let chunks: Vec<Value> = chunks
        .map(|c| serde_json::from_slice::<Value>(&c.unwrap()).unwrap())
        .collect()
        .await;
    assert_eq!(chunks.len(), 4, "{chunks:?}");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "pong");
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[3]["choices"], json!([]));
    assert!(chunks[3]["usage"].is_object());
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
}

#[test]
fn cached_answer_refuses_a_config_without_prompt() {
    let err = try_load(&example("cached-answer"), json!({"answer": "x"}))
        .err()
        .unwrap();
    let LoadError::Failed(message) = err else {
        panic!("expected Failed, got {err:?}")
    };
    assert!(message.contains("init returned 2"), "{message}");
    assert!(message.contains("cached-answer.wasm"), "{message}");
}

#[test]
fn chunk_editor_uppercases_and_drops_empty_chunks() {
    let loaded = load(&example("chunk-editor"), json!({"drop_empty": true}));
    assert_eq!(loaded.plugin.name(), "chunk-editor");
    let hooks = loaded.plugin.hooks();
    assert!(hooks.stream_chunk && !hooks.pre_llm && !hooks.http_pre);
    assert_eq!(hooks.types(), ["http"]);

    let mut ctx = ctx();
    let out = loaded
        .chain
        .run_stream_chunk(&mut ctx, chunk(json!("hello wörld"), Value::Null))
        .unwrap()
        .expect("a chunk");
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["choices"][0]["delta"]["content"], "HELLO WÖRLD");
    assert_eq!(out["id"], "chatcmpl-1");

    let dropped = loaded
        .chain
        .run_stream_chunk(&mut ctx, chunk(Value::Null, Value::Null))
        .unwrap();
    assert!(dropped.is_none());
    // The finish chunk has an empty delta but must reach the client.
    let finish = loaded
        .chain
        .run_stream_chunk(&mut ctx, chunk(Value::Null, json!("stop")))
        .unwrap();
    assert!(finish.is_some());
    assert!(!loaded.health.failing());
}

#[test]
fn chunk_editor_replaces_a_word_and_keeps_empty_chunks_by_default() {
    let loaded = load(
        &example("chunk-editor"),
        json!({"mode": "replace", "find": "cat", "replace": "dog"}),
    );
    let mut ctx = ctx();
    let out = loaded
        .chain
        .run_stream_chunk(&mut ctx, chunk(json!("a cat and a cat"), Value::Null))
        .unwrap()
        .unwrap();
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["choices"][0]["delta"]["content"], "a dog and a dog");
    let empty = chunk(Value::Null, Value::Null);
    let kept = loaded
        .chain
        .run_stream_chunk(&mut ctx, empty.clone())
        .unwrap();
    // A chunk the guest returns unchanged is passed on as the original bytes.
    assert_eq!(kept, Some(empty));

    let err = try_load(&example("chunk-editor"), json!({"mode": "shout"}))
        .err()
        .unwrap();
    assert!(
        matches!(&err, LoadError::Failed(m) if m.contains("init returned 3")),
        "{err:?}"
    );
}

#[tokio::test]
async fn passthrough_returns_the_request_and_the_response_unchanged() {
    let loaded = load(&example("passthrough"), json!({}));
    assert_eq!(loaded.plugin.name(), "passthrough");
    assert_eq!(loaded.plugin.hooks().types(), ["llm"]);

    // Escapes, non-ASCII text, content parts and numbers in several spellings go through the
    // guest's parser and serializer and must come back as they went in.
    let mut req = llm_request(
        RequestType::ChatCompletion,
        json!({
            "messages": [
                {"role": "system", "content": "quote \" backslash \\ newline \n tab \t nul \u{0} é 中文 😀"},
                {"role": "user", "content": [{"type": "text", "text": "part"}, {"type": "text", "text": ""}]}
            ],
            "temperature": 0.25, "top_p": 1e-3, "max_tokens": 512, "seed": -7,
            "stop": ["END", ""], "metadata": {"nested": {"deeper": [[], {}, null, true]}},
            "user": "u-1"
        }),
        false,
    );
    let before = body_json(&req);
    let mut ctx = ctx();
    ctx.values
        .insert("earlier".into(), json!({"kept": ["as", "is"]}));
    let (short_circuit, ran) = loaded.chain.run_pre_llm(&mut ctx, &mut req).await;
    assert!(short_circuit.is_none());
    assert_eq!(ran, 1);
    assert_eq!(body_json(&req), before);
    assert_eq!(
        (req.provider.as_str(), req.model.as_str()),
        ("openai", "gpt-4o-mini")
    );
    assert_eq!(ctx.values["passthrough"], true);
    assert_eq!(ctx.values["earlier"], json!({"kept": ["as", "is"]}));

    let result = loaded.chain.run_post_llm(&mut ctx, ran, completion()).await;
    assert_eq!(complete_body(&result), complete_body(&completion()));
    let failed = Err(GatewayError::new(
        502,
        ErrorClass::ProviderServerError,
        "upstream broke",
    ));
    let result = loaded.chain.run_post_llm(&mut ctx, ran, failed).await;
    let err = result.unwrap_err();
    assert_eq!((err.status(), err.message()), (502, "upstream broke"));
    assert!(!loaded.health.failing());
    assert!(
        loaded.health.logs().is_empty(),
        "{:?}",
        loaded.health.logs()
    );
}

/// The example library (plugins/examples/lib/json.ts) validates every input in full before a
/// plugin sees it. The host never sends malformed JSON, so this calls the guest directly: each
/// case comes back as the hook's error naming the problem and its byte offset, and the instance
/// keeps working afterwards.
#[test]
fn the_example_library_rejects_malformed_input() {
    let host = WasmHost::new().unwrap();
    let plugin = host
        .load(
            ModuleSource::Path(example("passthrough")),
            b"{}",
            WasmLimits::default(),
            Arc::new(|_| {}),
        )
        .unwrap();
    let nested = |depth: usize| {
        format!(
            r#"{{"context":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    let too_deep = nested(129);
    let cases: [(&[u8], &str); 20] = [
        (b"", "unexpected end of input at offset 0"),
        (b"   ", "unexpected end of input at offset 3"),
        (b"{} x", "unexpected text after the value at offset 3"),
        (br#"{"a":1,}"#, "expected a member name at offset 7"),
        (br#"{"a" 1}"#, "expected ':' at offset 5"),
        (br#"{"a":[1 2]}"#, "expected ',' or ']' at offset 9"),
        (br#"{"a":1 "b":2}"#, "expected ',' or '}' at offset 8"),
        (br#"{"a":tru}"#, "unexpected character at offset 5"),
        (br#"{"a":-}"#, "invalid number at offset 6"),
        (br#"{"a":"\x"}"#, "invalid escape at offset 6"),
        (br#"{"a":"\u12G4"}"#, r"invalid \u escape at offset 6"),
        (
            b"{\"a\":\"\x01\"}",
            "control character in string at offset 6",
        ),
        (
            b"{\"a\":\"line\nbreak\"}",
            "control character in string at offset 10",
        ),
        (br#"{"a":"open"#, "unterminated string at offset 10"),
        (br#"{"a":"open\"#, "unterminated string at offset 10"),
        (br#"{"a":[1,2"#, "unterminated array at offset 9"),
        (br#"{"a":{}"#, "unterminated object at offset 7"),
        (
            br#"{"a":1}}"#,
            "unexpected text after the value at offset 7",
        ),
        (br#"{'a':1}"#, "expected a member name at offset 1"),
        (too_deep.as_bytes(), "nesting too deep at offset 139"),
    ];
    for (hook, field) in [(Hook::PreLlm, "error"), (Hook::PostLlm, "hook_error")] {
        for (input, problem) in cases {
            let output = plugin.call(hook, input).unwrap();
            let output: Value = serde_json::from_slice(&output).unwrap();
            assert_eq!(
                output[field],
                format!("cannot parse input: {problem}"),
                "{hook} {}",
                String::from_utf8_lossy(input)
            );
        }
        for input in [&b"[1]"[..], b"\"text\"", b"null"] {
            let output: Value = serde_json::from_slice(&plugin.call(hook, input).unwrap()).unwrap();
            assert_eq!(output[field], "input is not a JSON object");
        }
    }
    // 128 levels are fine, and the instance still answers valid input.
    let output = plugin.call(Hook::PreLlm, nested(128).as_bytes()).unwrap();
    let output: Value = serde_json::from_slice(&output).unwrap();
    assert_eq!(output["error"], "");
    assert_eq!(output["context"], json!({"passthrough": true}));
}

// ---------------------------------------------------------------------------------------------
// Modules written from the ABI page alone.

#[tokio::test]
async fn an_abi_only_module_passes_context_from_pre_to_post_hook() {
    let mut wat = Wat::new();
    let found = wat.emit(
        r#"{"context":{"wat_post":"found"},"response":null,"error":null,"has_error":false,"hook_error":""}"#,
    );
    let missing = wat.emit(
        r#"{"context":{"wat_post":"missing"},"response":null,"error":null,"has_error":false,"hook_error":""}"#,
    );
    let seen = wat.input_contains(r#""wat_seen":"yes""#);
    let wat = wat
        .constant_hook(
            "pre_hook",
            r#"{"context":{"wat_seen":"yes"},"request":null,"short_circuit":null,"has_short_circuit":false,"error":""}"#,
        )
        .hook(
            "post_hook",
            &format!("(if (result i64) {seen} (then {found}) (else {missing}))"),
        );
    let (loaded, _dir) = load_wat(&wat.build(), json!({}));
    assert_eq!(loaded.plugin.name(), "abi-test");
    assert_eq!(loaded.plugin.hooks().types(), ["llm"]);

    let mut ctx = ctx();
    ctx.values.insert("earlier".into(), json!("kept"));
    let mut req = chat("hi");
    let before = body_json(&req);
    let (short_circuit, ran) = loaded.chain.run_pre_llm(&mut ctx, &mut req).await;
    assert!(short_circuit.is_none());
    assert_eq!(body_json(&req), before);
    assert_eq!(ctx.values["wat_seen"], "yes");
    // The guest returned only its own key; values set by others stay.
    assert_eq!(ctx.values["earlier"], "kept");

    let result = loaded.chain.run_post_llm(&mut ctx, ran, completion()).await;
    assert_eq!(ctx.values["wat_post"], "found");
    assert_eq!(complete_body(&result), complete_body(&completion()));
    assert!(loaded.health.logs().iter().all(|l| !l.contains("failed")));
}

#[tokio::test]
async fn guest_log_lines_reach_the_plugin_health() {
    let mut wat = Wat::new();
    let (ptr, len) = wat.string("hello from init");
    let wat = wat
        .with_init(&format!(
            "(call $log (i32.const {ptr}) (i32.const {len})) (i32.const 0)"
        ))
        .constant_hook("pre_hook", PRE_CONTINUE);
    let (loaded, _dir) = load_wat(&wat.build(), json!({}));
    assert!(
        loaded
            .health
            .logs()
            .contains(&"[info] hello from init".to_owned()),
        "{:?}",
        loaded.health.logs()
    );
}

#[tokio::test]
async fn a_trap_is_logged_the_request_continues_and_three_in_a_row_flip_the_status() {
    let (loaded, _dir) = load_wat(
        &Wat::new().hook("pre_hook", "unreachable").build(),
        json!({}),
    );
    let mut ctx = ctx();
    for round in 1..=3 {
        let mut req = chat("hi");
        let before = body_json(&req);
        let (short_circuit, _) = loaded.chain.run_pre_llm(&mut ctx, &mut req).await;
        assert!(short_circuit.is_none());
        assert_eq!(body_json(&req), before);
        assert_eq!(
            loaded.health.failing(),
            round >= 3,
            "after {round} failures"
        );
    }
    let logs = loaded.health.logs();
    assert!(
        logs.iter().any(
            |l| l.starts_with("plugin under-test pre_hook failed: plugin trapped")
                && l.contains("unreachable")
        ),
        "{logs:?}"
    );
}

#[tokio::test]
async fn an_infinite_loop_times_out_and_the_next_call_works() {
    let mut wat = Wat::new();
    let spin = wat.input_contains("spin-forever");
    let pass = wat.emit(PRE_CONTINUE);
    let wat = wat.hook(
        "pre_hook",
        &format!("(if {spin} (then (loop $forever (br $forever)))) {pass}"),
    );
    let (loaded, _dir) = load_wat(&wat.build(), json!({"_limits": {"call_timeout_ms": 20}}));
    let mut ctx = ctx();

    let mut req = chat("spin-forever");
    let started = std::time::Instant::now();
    let (short_circuit, _) = loaded.chain.run_pre_llm(&mut ctx, &mut req).await;
    assert!(short_circuit.is_none());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let logs = loaded.health.logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("pre_hook failed") && l.contains("time limit of 20ms")),
        "{logs:?}"
    );

    let mut req = chat("hello");
    let (short_circuit, _) = loaded.chain.run_pre_llm(&mut ctx, &mut req).await;
    assert!(short_circuit.is_none());
    let failures = loaded
        .health
        .logs()
        .iter()
        .filter(|l| l.starts_with("plugin under-test"))
        .count();
    assert_eq!(failures, 1);
}

#[tokio::test]
async fn unbounded_allocation_hits_the_memory_limit() {
    let wat = Wat::new().hook(
        "pre_hook",
        "(loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 4)) (i32.const -1)))) unreachable",
    );
    let (loaded, _dir) = load_wat(&wat.build(), json!({"_limits": {"memory_mb": 2}}));
    let (short_circuit, _) = loaded.chain.run_pre_llm(&mut ctx(), &mut chat("hi")).await;
    assert!(short_circuit.is_none());
    let logs = loaded.health.logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("pre_hook failed") && l.contains("more memory than its limit")),
        "{logs:?}"
    );
}

#[tokio::test]
async fn malformed_output_is_a_failure_that_says_so() {
    for (output, expected) in [
        (
            "this is not json",
            "malformed output from pre_hook: expected ident at line 1 column 2 (output: this is not json)",
        ),
        (
            r#"{"context":{}}"#,
            "malformed output from pre_hook: missing field `has_short_circuit`",
        ),
        (
            r#"{"context":{},"has_short_circuit":true,"short_circuit":null}"#,
            "has_short_circuit is true but short_circuit is null",
        ),
        (
            r#"{"context":{},"has_short_circuit":"yes"}"#,
            "malformed output from pre_hook: invalid type",
        ),
        (
            r#"[{},null,null,false,""]"#,
            "malformed output from pre_hook: the output is not a JSON object",
        ),
        (
            r#"{"context":{},"has_short_circuit":false,"error":"config missing"}"#,
            "plugin reported an error: config missing",
        ),
    ] {
        let (loaded, _dir) = load_wat(
            &Wat::new().constant_hook("pre_hook", output).build(),
            json!({}),
        );
        let mut ctx = ctx();
        let mut req = chat("hi");
        let before = body_json(&req);
        let (short_circuit, _) = loaded.chain.run_pre_llm(&mut ctx, &mut req).await;
        assert!(short_circuit.is_none());
        assert_eq!(body_json(&req), before);
        let logs = loaded.health.logs();
        assert!(
            logs.iter()
                .any(|l| l.starts_with("plugin under-test pre_hook failed") && l.contains(expected)),
            "{output}: {logs:?}"
        );
    }
}

#[tokio::test]
async fn a_request_rewrite_changes_model_messages_and_params() {
    let output = r#"{"context":{"rewritten":true},"request":{"provider":"anthropic","model":"claude-x","input":[{"role":"user","content":"changed"}],"params":{"max_tokens":7,"model":"sneaky","stream":true},"request_type":"chat_completion","stream":false},"short_circuit":null,"has_short_circuit":false,"error":""}"#;
    let (loaded, _dir) = load_wat(
        &Wat::new().constant_hook("pre_hook", output).build(),
        json!({}),
    );
    let mut req = chat("original");
    loaded.chain.run_pre_llm(&mut ctx(), &mut req).await;
    assert_eq!(
        (req.provider.as_str(), req.model.as_str()),
        ("anthropic", "claude-x")
    );
    // `params` replaces the other fields: temperature is gone; model and stream are not body fields
    // a guest may set.
    assert_eq!(
        body_json(&req),
        json!({"messages": [{"role": "user", "content": "changed"}], "max_tokens": 7})
    );
    assert!(!req.stream);
}

#[tokio::test]
async fn short_circuit_errors_in_both_shapes() {
    let bifrost = r#"{"context":{},"request":null,"short_circuit":{"error":{"is_bifrost_error":false,"status_code":429,"error":{"message":"Rate limit exceeded","type":"rate_limit","code":"429"},"allow_fallbacks":false}},"has_short_circuit":true,"error":""}"#;
    let simple = r#"{"context":{},"request":null,"short_circuit":{"error":{"message":"blocked by policy","type":"policy"}},"has_short_circuit":true,"error":""}"#;

    let (loaded, _dir) = load_wat(
        &Wat::new().constant_hook("pre_hook", bifrost).build(),
        json!({}),
    );
    let (short_circuit, _) = loaded.chain.run_pre_llm(&mut ctx(), &mut chat("hi")).await;
    let err = short_circuit.unwrap().unwrap_err();
    assert_eq!(err.status(), 429);
    assert_eq!(err.message(), "Rate limit exceeded");
    assert_eq!(err.kind(), Some("rate_limit"));
    assert_eq!(err.details().code.as_deref(), Some("429"));
    assert!(!err.details().allow_fallbacks);

    let (loaded, _dir) = load_wat(
        &Wat::new().constant_hook("pre_hook", simple).build(),
        json!({}),
    );
    let (short_circuit, _) = loaded.chain.run_pre_llm(&mut ctx(), &mut chat("hi")).await;
    let err = short_circuit.unwrap().unwrap_err();
    assert_eq!(err.status(), 400);
    assert_eq!(err.message(), "blocked by policy");
    assert!(err.details().allow_fallbacks);
    assert!(!loaded.health.failing());
}

#[tokio::test]
async fn post_hook_recovers_an_error_and_can_turn_a_response_into_one() {
    let recover = r#"{"context":{},"response":{"chat_response":{"id":"recovered","object":"chat.completion","choices":[]}},"error":null,"has_error":false,"hook_error":""}"#;
    let (loaded, _dir) = load_wat(
        &Wat::new().constant_hook("post_hook", recover).build(),
        json!({}),
    );
    let failed = Err(
        GatewayError::new(502, ErrorClass::ProviderServerError, "upstream broke")
            .with_request_info(
                "chat_completion",
                "openai",
                "openai/gpt-4o-mini",
                "gpt-4o-mini",
            ),
    );
    let result = loaded.chain.run_post_llm(&mut ctx(), 1, failed).await;
    assert_eq!(complete_body(&result)["id"], "recovered");
    assert_eq!(result.as_ref().unwrap().route().provider, "openai");

    let replace = r#"{"context":{},"response":null,"error":{"error":{"message":"withheld","type":"content_filter"},"status_code":451},"has_error":true,"hook_error":""}"#;
    let (loaded, _dir) = load_wat(
        &Wat::new().constant_hook("post_hook", replace).build(),
        json!({}),
    );
    let result = loaded.chain.run_post_llm(&mut ctx(), 1, completion()).await;
    let err = result.unwrap_err();
    assert_eq!((err.status(), err.message()), (451, "withheld"));

    // A pass-through that returns nulls (as Bifrost's documented AssemblyScript template does)
    // changes nothing.
    let nulls = r#"{"context":{},"response":null,"error":null,"has_error":false,"hook_error":""}"#;
    let (loaded, _dir) = load_wat(
        &Wat::new().constant_hook("post_hook", nulls).build(),
        json!({}),
    );
    let original = GatewayError::new(503, ErrorClass::ProviderOverloaded, "busy");
    let result = loaded
        .chain
        .run_post_llm(&mut ctx(), 1, Err(original))
        .await;
    assert_eq!(result.unwrap_err().class(), ErrorClass::ProviderOverloaded);
}

#[tokio::test]
async fn post_hook_sees_the_error_envelope_and_is_not_called_for_streams() {
    let mut wat = Wat::new();
    let saw = wat.input_contains(r#""has_error":true"#);
    let saw_message = wat.input_contains(r#""message":"upstream broke""#);
    let yes = wat.emit(r#"{"context":{"saw_error":true},"response":null,"error":null,"has_error":true,"hook_error":""}"#);
    let wat = wat.hook(
        "post_hook",
        &format!("(if (i32.and {saw} {saw_message}) (then (return {yes}))) unreachable"),
    );
    let (loaded, _dir) = load_wat(&wat.build(), json!({}));
    let mut ctx = ctx();
    let failed = Err(GatewayError::new(
        502,
        ErrorClass::ProviderServerError,
        "upstream broke",
    ));
    let result = loaded.chain.run_post_llm(&mut ctx, 1, failed).await;
    assert_eq!(ctx.values["saw_error"], true);
    assert_eq!(result.unwrap_err().message(), "upstream broke");

    // Its post_hook would trap on anything else; a stream must not reach it at all.
    let stream = Ok(LlmResponse::Stream {
        chunks: Box::pin(futures_util::stream::empty()),
        route: RouteInfo::default(),
    });
    let _ = loaded.chain.run_post_llm(&mut ctx, 1, stream).await;
    assert!(
        loaded.health.logs().iter().all(|l| !l.contains("failed")),
        "{:?}",
        loaded.health.logs()
    );
}

#[tokio::test]
async fn http_hooks_can_answer_directly_and_edit_the_response() {
    let respond = r#"{"context":{},"request":null,"response":{"status_code":418,"headers":{"content-type":"text/plain"},"body":"dGVh"},"has_response":true,"error":""}"#;
    let (loaded, _dir) = load_wat(
        &Wat::new().constant_hook("http_pre_hook", respond).build(),
        json!({}),
    );
    let answered = loaded
        .chain
        .run_http_pre(&mut ctx(), &mut http_request())
        .await
        .unwrap()
        .expect("a direct response");
    assert_eq!(answered.status, 418);
    assert_eq!(answered.body, Bytes::from_static(b"tea"));
    assert_eq!(
        answered.headers,
        [("content-type".to_owned(), "text/plain".to_owned())]
    );

    let mut wat = Wat::new();
    let saw_body = wat.input_contains(r#""body":"eyJpZCI6MX0=""#);
    let saw_status = wat.input_contains(r#""status_code":200"#);
    let edit = wat.emit(r#"{"context":{"post":"done"},"error":"","response":{"status_code":201,"headers":{"x-edited":"1"},"body":"e30"}}"#);
    let wat = wat.hook(
        "http_post_hook",
        &format!("(if (i32.and {saw_body} {saw_status}) (then (return {edit}))) unreachable"),
    );
    let (loaded, _dir) = load_wat(&wat.build(), json!({}));
    let mut ctx = ctx();
    let mut resp = HttpResponse {
        status: 200,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body: Bytes::from_static(br#"{"id":1}"#),
    };
    loaded
        .chain
        .run_http_post(&mut ctx, &http_request(), &mut resp)
        .await;
    assert_eq!(resp.status, 201);
    assert_eq!(resp.headers, [("x-edited".to_owned(), "1".to_owned())]);
    assert_eq!(resp.body, Bytes::from_static(b"{}"));
    assert_eq!(ctx.values["post"], "done");
}

#[test]
fn a_chunk_hook_error_ends_the_stream_and_the_request_headers_are_visible() {
    let mut wat = Wat::new();
    let saw_header = wat.input_contains(r#""x-team":"blue""#);
    let end = wat.emit(
        r#"{"context":{},"chunk":null,"has_chunk":false,"skip":false,"error":"stop right there"}"#,
    );
    let wat = wat.hook(
        "http_stream_chunk_hook",
        &format!("(if {saw_header} (then (return {end}))) unreachable"),
    );
    let (loaded, _dir) = load_wat(&wat.build(), json!({}));
    let err = loaded
        .chain
        .run_stream_chunk(&mut ctx(), chunk(json!("x"), Value::Null))
        .unwrap_err();
    assert_eq!(err.status(), 500);
    assert_eq!(err.message(), "stop right there");
}

// ---------------------------------------------------------------------------------------------
// Loading.

#[test]
fn limits_are_stripped_from_the_config_the_guest_sees() {
    let mut wat = Wat::new();
    let (ptr, len) = wat.string("_limits");
    let wat = wat
        .with_init(&format!(
            "(call $contains (local.get 0) (local.get 1) (i32.const {ptr}) (i32.const {len}))"
        ))
        .constant_hook("pre_hook", PRE_CONTINUE)
        .build();
    let (path, _dir) = write_module(&wat);
    let loaded = load(
        &path,
        json!({"a": 1, "_limits": {"memory_mb": 3, "call_timeout_ms": 7}}),
    );
    assert_eq!(loaded.plugin.name(), "abi-test");
    let err = try_load(&path, json!({"_limits": {"memory_mb": "lots"}}))
        .err()
        .unwrap();
    assert!(
        matches!(&err, LoadError::InvalidConfig(m) if m.contains("_limits")),
        "{err:?}"
    );
}

#[test]
fn load_errors_map_to_invalid_module_or_failed() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"definitely not a module").unwrap();
    let err = try_load(&garbage, json!({})).err().unwrap();
    let LoadError::InvalidModule(message) = err else {
        panic!("expected InvalidModule, got {err:?}")
    };
    assert!(
        message.contains(&garbage.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("neither a WebAssembly binary nor valid WAT text"),
        "{message}"
    );

    let no_malloc = dir.path().join("no-malloc.wat");
    std::fs::write(&no_malloc, r#"(module (memory (export "memory") 1))"#).unwrap();
    let err = try_load(&no_malloc, json!({})).err().unwrap();
    let LoadError::InvalidModule(message) = err else {
        panic!("expected InvalidModule, got {err:?}")
    };
    assert!(
        message.starts_with(&format!(
            "module {} does not export `malloc`",
            no_malloc.display()
        )),
        "{message}"
    );

    let (refusing, _dir) = write_module(
        &Wat::new()
            .with_init("(i32.const 1)")
            .constant_hook("pre_hook", PRE_CONTINUE)
            .build(),
    );
    let err = try_load(&refusing, json!({})).err().unwrap();
    let LoadError::Failed(message) = err else {
        panic!("expected Failed, got {err:?}")
    };
    assert!(message.contains("init returned 1"), "{message}");

    let (looping, _dir) = write_module(
        &Wat::new()
            .with_init("(loop $l (br $l)) (i32.const 0)")
            .build(),
    );
    let limits = WasmLimits {
        init_timeout: std::time::Duration::from_millis(30),
        ..WasmLimits::default()
    };
    let loader = module_loader(limits).unwrap();
    let err = loader(&looping, &json!({}), Arc::new(PluginHealth::default()))
        .err()
        .unwrap();
    assert!(
        matches!(&err, LoadError::Failed(m) if m.contains("time limit")),
        "{err:?}"
    );
}

#[tokio::test]
async fn cleanup_calls_the_guest() {
    let mut wat = Wat::new();
    let (ptr, len) = wat.string("cleaned up");
    let wat = wat
        .constant_hook("pre_hook", PRE_CONTINUE)
        .build()
        .replace(
            "  (func (export \"init\")",
            &format!(
                "  (func (export \"cleanup\") (result i32) (call $log (i32.const {ptr}) (i32.const {len})) (i32.const 0))\n  (func (export \"init\")"
            ),
        );
    let (loaded, _dir) = load_wat(&wat, json!({}));
    loaded.plugin.cleanup().await.unwrap();
    assert!(
        loaded
            .health
            .logs()
            .contains(&"[info] cleaned up".to_owned())
    );
}

#[tokio::test]
async fn the_wat_example_in_the_plugin_guide_works() {
    let guide = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/plugins.md"),
    )
    .unwrap();
    let start = guide.find("```wat\n").expect("a WAT example") + "```wat\n".len();
    let end = start + guide[start..].find("```").unwrap();
    let (loaded, _dir) = load_wat(&guide[start..end], json!({}));
    assert_eq!(loaded.plugin.name(), "hello-wat");
    let mut ctx = ctx();
    let (short_circuit, _) = loaded.chain.run_pre_llm(&mut ctx, &mut chat("hi")).await;
    assert!(short_circuit.is_none());
    assert_eq!(ctx.values["hello"], "wat");
    assert!(!loaded.health.logs().iter().any(|l| l.contains("failed")));
}
