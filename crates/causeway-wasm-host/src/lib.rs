//! Runs sandboxed WebAssembly plugin modules that speak Bifrost's JSON plugin ABI (see README.md).
//! Owns the wasmtime engine, the host imports (`env` logging, AssemblyScript runtime, a capability-free
//! WASI preview1 shim) and the per-plugin instance pool; it never parses the JSON it passes through.

mod abi;
mod error;
mod exports;
mod host;
mod imports;
mod instance;
mod limits;
mod log;
mod plugin;

pub use abi::Hook;
pub use error::WasmError;
pub use host::{ModuleSource, WasmHost};
pub use limits::WasmLimits;
pub use log::{LogLevel, LogLine, LogSink};
pub use plugin::WasmPlugin;
