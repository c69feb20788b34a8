//! Plugins: the hook trait, the ordered chain a request runs through, and (later) the
//! registry, built-in plugins and the WebAssembly adapter.

pub mod builtin;
pub mod chain;
pub mod plugin;
pub mod registry;
pub mod wasm;

pub use chain::{ChainEntry, PluginChain, PluginHealth};
pub use plugin::{
    BoxFuture, ChunkOutcome, HookSet, HttpPreOutcome, HttpRequest, HttpResponse, Plugin,
    PluginFailure, PreLlmOutcome,
};
pub use registry::{LoadError, Placement, PluginLoader, PluginRegistry, PluginSpec, PluginView};
