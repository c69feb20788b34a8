//! Hook overhead of WebAssembly plugins: p50/p99 of one request's `run_pre_llm` + `run_post_llm`
//! through a `PluginChain` with no plugins, with a minimal pass-through guest (WAT, constant
//! outputs: host call plus the adapter's JSON in and out), and with the AssemblyScript
//! `passthrough` example (parses its input and returns it, as a real plugin does), on a 1 KB
//! chat request. Run with `cargo run --release -p causeway-plugins --example wasm_hook_bench`;
//! prints a Markdown table for bench/RESULTS.md.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use causeway_core::{LlmRequest, LlmResponse, RawObject, RequestContext, RequestType, RouteInfo};
use causeway_plugins::wasm::module_loader;
use causeway_plugins::{ChainEntry, PluginChain, PluginHealth};
use causeway_wasm_host::{Hook, ModuleSource, WasmHost, WasmLimits};
use serde_json::json;

const WARMUP: usize = 2_000;
const ROUNDS: usize = 20_000;

/// A guest that does the least the ABI allows: constant pass-through outputs.
const MINIMAL: &str = r#"(module
  (memory (export "memory") 1)
  (global $bump (mut i32) (i32.const 4096))
  (data (i32.const 16) "minimal")
  (data (i32.const 64) "{\"context\":{},\"request\":null,\"short_circuit\":null,\"has_short_circuit\":false,\"error\":\"\"}")
  (data (i32.const 256) "{\"context\":{},\"response\":null,\"error\":null,\"has_error\":false,\"hook_error\":\"\"}")
  (func $malloc (export "malloc") (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $bump))
    (global.set $bump (i32.add (local.get $ptr) (local.get $size)))
    (if (i32.gt_u (global.get $bump) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.const 1)))))
    (local.get $ptr))
  ;; Every buffer is freed right after each call, so the heap rewinds on any free.
  (func (export "free") (param i32) (global.set $bump (i32.const 4096)))
  (func (export "get_name") (result i64) (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 7)))
  (func (export "init") (param i32 i32) (result i32) (i32.const 0))
  (func (export "pre_hook") (param i32 i32) (result i64) (i64.or (i64.shl (i64.const 64) (i64.const 32)) (i64.const 87)))
  (func (export "post_hook") (param i32 i32) (result i64) (i64.or (i64.shl (i64.const 256) (i64.const 32)) (i64.const 77)))
)"#;

fn request() -> Result<LlmRequest, Box<dyn Error>> {
    let body = json!({
        "messages": [
            {"role": "system", "content": "You are a concise assistant for an engineering team. Answer in plain English, cite sources when you can, and keep code samples short."},
            {"role": "user", "content": "We run a Rust service behind an AI gateway. Which metrics should we watch to notice when a provider degrades, and how should the alerts be tuned so that a single slow request does not page anyone at night?"},
            {"role": "assistant", "content": "Watch p50/p99 latency per provider and model, error rate by status class, timeouts, and token throughput. Alert on sustained changes over a window rather than on single requests."},
            {"role": "user", "content": "Give me concrete thresholds for the p99 latency alert and the error-rate alert, with the window lengths, for a service that handles about forty requests per second at peak."}
        ],
        "temperature": 0.2,
        "max_tokens": 512,
        "top_p": 0.9,
        "user": "bench-user-0001",
        "stream": false
    });
    let body = RawObject::from_slice(&serde_json::to_vec(&body)?)?;
    Ok(LlmRequest {
        request_type: RequestType::ChatCompletion,
        provider: "openai".to_owned(),
        model: "gpt-4o-mini".to_owned(),
        fallbacks: Vec::new(),
        stream: false,
        body,
    })
}

const RESPONSE: &[u8] = br#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Alert when p99 latency stays above 2x its 7-day median for 10 minutes, and when the 5xx plus timeout rate exceeds 2% over 5 minutes with at least 200 requests in the window."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":180,"completion_tokens":48,"total_tokens":228}}"#;

struct Stats {
    p50: Duration,
    p99: Duration,
}

async fn measure(chain: &PluginChain, template: &LlmRequest) -> Result<Stats, Box<dyn Error>> {
    let mut samples = Vec::with_capacity(ROUNDS);
    for round in 0..WARMUP + ROUNDS {
        // Per-request setup the gateway does anyway stays outside the timed section.
        let mut req = template.clone();
        let mut ctx = RequestContext::new("bench-request", http::HeaderMap::new());
        let result = Ok(LlmResponse::Complete {
            body: Bytes::from_static(RESPONSE),
            route: RouteInfo::default(),
        });
        let started = Instant::now();
        let (short_circuit, ran) = chain.run_pre_llm(&mut ctx, &mut req).await;
        let result = chain.run_post_llm(&mut ctx, ran, result).await;
        let elapsed = started.elapsed();
        if short_circuit.is_some() || result.is_err() {
            return Err("the pass-through chain changed the outcome".into());
        }
        if round >= WARMUP {
            samples.push(elapsed);
        }
    }
    Ok(stats(samples))
}

/// The guest alone: the same hooks called on the host directly with inputs shaped as the
/// adapter builds them, to split the plugin row into guest work and adapter work.
fn measure_guest(path: &Path, template: &LlmRequest) -> Result<Stats, Box<dyn Error>> {
    let host = WasmHost::new()?;
    let plugin = host.load(
        ModuleSource::Path(path.to_path_buf()),
        b"{}",
        WasmLimits::default(),
        Arc::new(|_| {}),
    )?;
    let mut params = serde_json::Map::new();
    for (key, value) in template.body.iter() {
        if key != "messages" {
            params.insert(key.to_owned(), serde_json::from_str(value.get())?);
        }
    }
    let messages: serde_json::Value = serde_json::from_str(
        template
            .body
            .get("messages")
            .ok_or("the request has messages")?
            .get(),
    )?;
    let pre = serde_json::to_vec(&json!({
        "context": {"request_id": "bench-request"},
        "request": {"provider": "openai", "model": "gpt-4o-mini", "input": messages,
                    "params": params, "request_type": "chat_completion", "stream": false}
    }))?;
    let response: serde_json::Value = serde_json::from_slice(RESPONSE)?;
    let post = serde_json::to_vec(&json!({
        "context": {"request_id": "bench-request", "passthrough": true},
        "response": {"chat_response": response}, "error": null, "has_error": false
    }))?;
    let mut samples = Vec::with_capacity(ROUNDS);
    for round in 0..WARMUP + ROUNDS {
        let started = Instant::now();
        plugin.call(Hook::PreLlm, &pre)?;
        plugin.call(Hook::PostLlm, &post)?;
        let elapsed = started.elapsed();
        if round >= WARMUP {
            samples.push(elapsed);
        }
    }
    Ok(stats(samples))
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn chain_with(path: &Path, health: &Arc<PluginHealth>) -> Result<PluginChain, Box<dyn Error>> {
    let loader = module_loader(WasmLimits::default())?;
    let plugin = loader(path, &json!({}), Arc::clone(health)).map_err(|e| e.to_string())?;
    Ok(PluginChain::new(vec![ChainEntry {
        name: plugin.name().to_owned(),
        hooks: plugin.hooks(),
        plugin,
        health: Arc::clone(health),
    }]))
}

fn micros(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn main() -> Result<(), Box<dyn Error>> {
    let template = request()?;
    let request_bytes = template.body.to_bytes().len();
    let dir = std::env::temp_dir().join(format!("causeway-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let minimal = dir.join("minimal.wat");
    std::fs::write(&minimal, MINIMAL)?;
    let passthrough = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugins/examples/passthrough/passthrough.wasm");

    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let health = Arc::new(PluginHealth::default());
    let scenarios = [
        ("no plugins", PluginChain::empty()),
        (
            "1 WASM plugin, minimal pass-through (WAT)",
            chain_with(&minimal, &health)?,
        ),
        (
            "1 WASM plugin, parse-and-echo pass-through (AssemblyScript `passthrough`)",
            chain_with(&passthrough, &health)?,
        ),
    ];
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "pre_hook + post_hook per request, {request_bytes} B chat request body, {ROUNDS} requests after {WARMUP} warm-up; load average at start: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    println!("| chain | p50 (µs) | p99 (µs) | p50 added (µs) |");
    println!("|---|---|---|---|");
    let mut baseline = None;
    for (label, chain) in &scenarios {
        let stats = runtime.block_on(measure(chain, &template))?;
        let base = *baseline.get_or_insert(stats.p50);
        println!(
            "| {label} | {} | {} | {} |",
            micros(stats.p50),
            micros(stats.p99),
            micros(stats.p50.saturating_sub(base))
        );
    }
    let guest = measure_guest(&passthrough, &template)?;
    println!(
        "| (for reference) the `passthrough` guest alone, both hooks called on the host directly | {} | {} | — |",
        micros(guest.p50),
        micros(guest.p99)
    );
    std::fs::remove_dir_all(&dir)?;
    let failures = health.logs();
    if !failures.is_empty() {
        return Err(format!("plugins logged: {failures:?}").into());
    }
    Ok(())
}
