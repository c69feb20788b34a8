//! The crate's error type and the mapping from wasmtime failures onto it.
//! Messages are for an operator reading a plugin's status: what failed and what to change.

use std::time::Duration;

use wasmtime::{Trap, WasmBacktrace};

use crate::abi::Hook;

/// Why loading or calling a plugin failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WasmError {
    /// Not a module, a compile error, a missing or mistyped export, or an import the host lacks.
    #[error("cannot load plugin module: {0}")]
    Load(String),
    /// The plugin's start-up code (`_initialize`/`_start`, `init`) failed.
    #[error("plugin initialisation failed: {0}")]
    Init(String),
    /// The guest trapped (including `unreachable`, AssemblyScript `abort` and WASI `proc_exit`).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The guest ran past its time limit and was interrupted.
    #[error("plugin ran past its time limit of {0:?} and was interrupted")]
    Timeout(Duration),
    /// The guest needed more linear memory than `WasmLimits::memory_bytes` allows.
    #[error(
        "plugin needed more memory than its limit allows (raise memory_bytes or reduce the plugin's memory use)"
    )]
    MemoryLimit,
    /// The guest returned a buffer the host cannot use.
    #[error("plugin returned an unusable result: {0}")]
    BadOutput(String),
    /// The plugin does not export this hook.
    #[error("plugin does not export `{0}`")]
    NoSuchHook(Hook),
    /// `cleanup` returned non-zero.
    #[error("plugin cleanup failed: {0}")]
    Cleanup(String),
}

/// Raised by the WASI `proc_exit` import; unwinds the guest like a trap.
#[derive(Debug, thiserror::Error)]
#[error("plugin called proc_exit({0})")]
pub(crate) struct GuestExit(pub(crate) i32);

/// Raised by the AssemblyScript `env.abort` import.
#[derive(Debug, thiserror::Error)]
#[error("abort: {0}")]
pub(crate) struct GuestAbort(pub(crate) String);

/// How a failed guest call ended, before the caller picks the variant for its stage.
pub(crate) enum Failure {
    Timeout,
    MemoryLimit,
    /// A trap or host-raised error, with an operator-readable description.
    Trap(String),
}

impl Failure {
    /// `memory_refused` is whether the store's limiter refused a growth during this call: a guest
    /// that traps after its allocator saw `memory.grow` fail hit the limit, not a bug.
    pub(crate) fn classify(err: &wasmtime::Error, memory_refused: bool) -> Failure {
        if let Some(exit) = err.downcast_ref::<GuestExit>() {
            return Failure::Trap(exit.to_string());
        }
        if let Some(abort) = err.downcast_ref::<GuestAbort>() {
            return Failure::Trap(abort.to_string());
        }
        if matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            return Failure::Timeout;
        }
        if memory_refused {
            return Failure::MemoryLimit;
        }
        Failure::Trap(describe(err))
    }
}

/// The trap (or host error) message plus the innermost named wasm function, which is what a
/// plugin author needs to find the fault; the full backtrace would be noise in a status line.
fn describe(err: &wasmtime::Error) -> String {
    let mut message = match err.downcast_ref::<Trap>() {
        // Every status line already says "plugin trapped"; drop wasmtime's own prefix.
        Some(trap) => {
            let text = trap.to_string();
            match text.strip_prefix("wasm trap: ") {
                Some(rest) => rest.to_owned(),
                None => text,
            }
        }
        None => err.root_cause().to_string(),
    };
    let function = err
        .downcast_ref::<WasmBacktrace>()
        .and_then(|bt| bt.frames().iter().find_map(|frame| frame.func_name()));
    if let Some(function) = function {
        message.push_str(" in function `");
        message.push_str(function);
        message.push('`');
    }
    message
}
