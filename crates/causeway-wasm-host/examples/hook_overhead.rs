//! Measures the host's per-call overhead: nanoseconds per `pre_hook` round trip through the
//! echo fixture (malloc, copy in, call, copy out, two frees). Run with
//! `cargo run --release -p causeway-wasm-host --example hook_overhead`.

use std::error::Error;
use std::sync::Arc;
use std::time::Instant;

use causeway_wasm_host::{Hook, ModuleSource, WasmHost, WasmLimits};

const CALLS: u32 = 100_000;
const ECHO: &str = include_str!("../tests/fixtures/echo.wat");

fn main() -> Result<(), Box<dyn Error>> {
    let host = WasmHost::new()?;
    let plugin = host.load(
        ModuleSource::Bytes(ECHO.as_bytes().to_vec()),
        b"{}",
        WasmLimits::default(),
        Arc::new(|_| {}),
    )?;

    let small = br#"{"context":{},"request":{"provider":"openai","model":"gpt-4o-mini"}}"#.to_vec();
    let large = format!(r#"{{"context":{{}},"body":"{}"}}"#, "x".repeat(16 * 1024)).into_bytes();
    for (label, input) in [("70 B input", &small), ("16 KiB input", &large)] {
        // Warm up: first calls fault in memory pages and code.
        for _ in 0..1_000 {
            plugin.call(Hook::PreLlm, input)?;
        }
        let started = Instant::now();
        for _ in 0..CALLS {
            let output = plugin.call(Hook::PreLlm, input)?;
            if output.len() != input.len() {
                return Err("echo returned a different length".into());
            }
        }
        let per_call = started.elapsed().as_nanos() / u128::from(CALLS);
        println!("echo pre_hook, {label}: {per_call} ns per call over {CALLS} calls");
    }
    Ok(())
}
