//! The process-wide wasmtime engine, its epoch ticker thread and the base import linker, and
//! turning a module source (binary or WAT) into a loaded plugin. Create one `WasmHost` per process.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::thread;
use std::time::Duration;

use wasmtime::{Config, Engine, Linker, Module};

use crate::error::WasmError;
use crate::imports;
use crate::instance::HostState;
use crate::limits::WasmLimits;
use crate::log::LogSink;
use crate::plugin::WasmPlugin;

/// Interval between epoch increments; time limits are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Guest call-stack budget. Deep enough for JSON parsers in TinyGo/AssemblyScript/Rust guests,
/// small enough that runaway recursion traps long before the host thread's stack is at risk.
const MAX_WASM_STACK: usize = 512 * 1024;

/// Where a plugin module comes from. Binary or WAT text is told apart by the `\0asm` magic,
/// not by a file extension.
#[derive(Debug, Clone)]
pub enum ModuleSource {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// Shared by the host handle, every plugin loaded from it and (weakly) the ticker thread.
pub(crate) struct HostShared {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
}

/// The wasmtime engine (epoch interruption on) with a background thread ticking its epoch
/// every millisecond. Cheap to clone. The thread stops once the host and all plugins are gone.
#[derive(Clone)]
pub struct WasmHost {
    shared: Arc<HostShared>,
}

impl fmt::Debug for WasmHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmHost").finish_non_exhaustive()
    }
}

impl WasmHost {
    pub fn new() -> Result<Self, WasmError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.max_wasm_stack(MAX_WASM_STACK);
        let engine = Engine::new(&config)
            .map_err(|e| WasmError::Load(format!("cannot create the WebAssembly engine: {e:#}")))?;
        let mut linker = Linker::new(&engine);
        imports::define(&mut linker)
            .map_err(|e| WasmError::Load(format!("cannot define host imports: {e:#}")))?;
        let shared = Arc::new(HostShared { engine, linker });
        spawn_epoch_ticker(Arc::downgrade(&shared))?;
        Ok(Self { shared })
    }

    /// Compiles, links and starts a plugin: one instance is created, `get_name` read and
    /// `init(config_json)` called before this returns. Blocks for the compile (milliseconds
    /// to seconds for large modules); run it off latency-sensitive threads.
    pub fn load(
        &self,
        source: ModuleSource,
        config_json: &[u8],
        limits: WasmLimits,
        logs: LogSink,
    ) -> Result<WasmPlugin, WasmError> {
        let module = compile(&self.shared.engine, source)?;
        WasmPlugin::start(Arc::clone(&self.shared), &module, config_json, limits, logs)
    }
}

fn spawn_epoch_ticker(host: Weak<HostShared>) -> Result<(), WasmError> {
    thread::Builder::new()
        .name("causeway-wasm-epoch".into())
        .spawn(move || {
            while let Some(shared) = host.upgrade() {
                shared.engine.increment_epoch();
                drop(shared);
                thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
        .map_err(|e| WasmError::Load(format!("cannot start the epoch ticker thread: {e}")))
}

fn compile(engine: &Engine, source: ModuleSource) -> Result<Module, WasmError> {
    let (bytes, origin) = match source {
        ModuleSource::Path(path) => {
            let bytes = std::fs::read(&path)
                .map_err(|e| WasmError::Load(format!("cannot read {}: {e}", path.display())))?;
            (bytes, path.display().to_string())
        }
        ModuleSource::Bytes(bytes) => (bytes, "module bytes".to_owned()),
    };
    if bytes.starts_with(b"\0asm") {
        Module::from_binary(engine, &bytes)
            .map_err(|e| WasmError::Load(format!("{origin}: invalid WebAssembly binary: {e:#}")))
    } else {
        // Without the magic the bytes can only be WAT text; `Module::new` parses it.
        Module::new(engine, &bytes).map_err(|e| {
            WasmError::Load(format!(
                "{origin}: no \\0asm header, so read as WAT text: {e:#}"
            ))
        })
    }
}
