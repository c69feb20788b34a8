//! One plugin instance: its own Store (memory cap, epoch deadline) and cached typed handles to
//! the ABI exports, plus the buffer protocol (malloc, write, call, unpack, copy out, free).
//! Knows nothing about pooling; whoever holds it decides whether it is reused or dropped.

use std::time::Duration;

use wasmtime::{InstancePre, Memory, Store, TypedFunc};

use crate::abi::{Hook, unpack};
use crate::error::{Failure, GuestExit, WasmError};
use crate::exports::ModuleExports;
use crate::limits::{GuestLimiter, WasmLimits, deadline_ticks};
use crate::log::{LineBuffer, LogLevel, LogSink};

/// Longest plugin name accepted from `get_name`; it ends up in status pages and log lines.
const MAX_NAME_BYTES: u32 = 1024;

/// Per-store data the host imports work with.
pub(crate) struct HostState {
    pub(crate) limiter: GuestLimiter,
    pub(crate) logs: LogSink,
    pub(crate) stdout: LineBuffer,
    pub(crate) stderr: LineBuffer,
}

impl HostState {
    pub(crate) fn new(memory_bytes: usize, logs: LogSink) -> Self {
        Self {
            limiter: GuestLimiter::new(memory_bytes),
            logs,
            stdout: LineBuffer::new(LogLevel::Info),
            stderr: LineBuffer::new(LogLevel::Warn),
        }
    }
}

enum GuestFree {
    Ptr(TypedFunc<u32, ()>),
    PtrSize(TypedFunc<(u32, u32), ()>),
}

pub(crate) struct PluginInstance {
    store: Store<HostState>,
    memory: Memory,
    malloc: TypedFunc<u32, u32>,
    free: GuestFree,
    get_name: TypedFunc<(), u64>,
    init: TypedFunc<(u32, u32), i32>,
    hooks: [Option<TypedFunc<(u32, u32), u64>>; Hook::ALL.len()],
    cleanup: Option<TypedFunc<(), i32>>,
}

impl PluginInstance {
    /// Instantiates the module and runs its WASI entry point (`_initialize` or `_start`), under
    /// the init time limit. Does not call `init`.
    pub(crate) fn instantiate(
        pre: &InstancePre<HostState>,
        exports: &ModuleExports,
        limits: &WasmLimits,
        logs: LogSink,
    ) -> Result<Self, WasmError> {
        let mut store = Store::new(
            pre.module().engine(),
            HostState::new(limits.memory_bytes, logs),
        );
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(deadline_ticks(limits.init_timeout));

        let instance = match pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(err) => {
                let refused = store.data().limiter.memory_refused;
                flush_logs(&mut store);
                // Instantiation fails without a trap for limits (memory too large up front)
                // and link-time problems; a trap means the start function failed.
                return Err(match Failure::classify(&err, refused) {
                    Failure::MemoryLimit => WasmError::MemoryLimit,
                    Failure::Timeout => WasmError::Timeout(limits.init_timeout),
                    Failure::Trap(message) if err.downcast_ref::<wasmtime::Trap>().is_some() => {
                        WasmError::Init(format!("start function trapped: {message}"))
                    }
                    Failure::Trap(_) => WasmError::Load(format!("cannot instantiate: {err:#}")),
                });
            }
        };

        // Signatures were checked by `ModuleExports::inspect`; failures here mean a host bug.
        let lookup = |e: wasmtime::Error| WasmError::Load(format!("export lookup failed: {e:#}"));
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| WasmError::Load("export `memory` is not a linear memory".into()))?;
        let malloc = instance
            .get_typed_func(&mut store, "malloc")
            .map_err(lookup)?;
        let free = if exports.free_takes_size {
            GuestFree::PtrSize(
                instance
                    .get_typed_func(&mut store, "free")
                    .map_err(lookup)?,
            )
        } else {
            GuestFree::Ptr(
                instance
                    .get_typed_func(&mut store, "free")
                    .map_err(lookup)?,
            )
        };
        let get_name = instance
            .get_typed_func(&mut store, "get_name")
            .map_err(lookup)?;
        let init = instance
            .get_typed_func(&mut store, "init")
            .map_err(lookup)?;
        let mut hooks = [const { None }; Hook::ALL.len()];
        for hook in &exports.hooks {
            hooks[hook.index()] = Some(
                instance
                    .get_typed_func(&mut store, hook.export_name())
                    .map_err(lookup)?,
            );
        }
        let cleanup = if exports.has_cleanup {
            Some(
                instance
                    .get_typed_func(&mut store, "cleanup")
                    .map_err(lookup)?,
            )
        } else {
            None
        };
        let entry = match exports.entry {
            Some(name) => Some(
                instance
                    .get_typed_func::<(), ()>(&mut store, name)
                    .map_err(lookup)?,
            ),
            None => None,
        };

        let mut this = Self {
            store,
            memory,
            malloc,
            free,
            get_name,
            init,
            hooks,
            cleanup,
        };
        if let Some(entry) = entry {
            let result = entry.call(&mut this.store, ());
            this.flush_logs();
            if let Err(err) = result {
                // TinyGo's `_start` ends with proc_exit(0) once `main` returns; the runtime is
                // set up by then and the exports remain usable.
                if !matches!(err.downcast_ref::<GuestExit>(), Some(GuestExit(0))) {
                    let name = exports.entry.unwrap_or("entry point");
                    return Err(this.failure(&err, limits.init_timeout, |message| {
                        WasmError::Init(format!("`{name}` failed: {message}"))
                    }));
                }
            }
        }
        Ok(this)
    }

    /// Reads the plugin's name from `get_name`. The buffer is not freed: guests may return a
    /// static string, and freeing memory the allocator never handed out corrupts its heap.
    pub(crate) fn read_name(&mut self, limits: &WasmLimits) -> Result<String, WasmError> {
        self.begin(limits.init_timeout);
        let packed = self.get_name.call(&mut self.store, ());
        self.flush_logs();
        let packed = packed.map_err(|err| {
            self.failure(&err, limits.init_timeout, |message| {
                WasmError::Init(format!("get_name trapped: {message}"))
            })
        })?;
        let (ptr, len) = unpack(packed);
        let name = self.read_output(ptr, len, MAX_NAME_BYTES as usize, "get_name")?;
        String::from_utf8(name)
            .map_err(|_| WasmError::BadOutput("get_name returned bytes that are not UTF-8".into()))
    }

    /// Passes the plugin configuration to `init`; non-zero is a refusal.
    pub(crate) fn init(&mut self, config: &[u8], limits: &WasmLimits) -> Result<(), WasmError> {
        let timeout = limits.init_timeout;
        self.begin(timeout);
        let result = self.init_inner(config, timeout);
        self.flush_logs();
        result
    }

    fn init_inner(&mut self, config: &[u8], timeout: Duration) -> Result<(), WasmError> {
        let init_error = |message: String| WasmError::Init(format!("init trapped: {message}"));
        let (ptr, len) = self.write_input(config, timeout, init_error)?;
        let status = self
            .init
            .call(&mut self.store, (ptr, len))
            .map_err(|err| self.failure(&err, timeout, init_error))?;
        self.free(ptr, len, timeout)?;
        match status {
            0 => Ok(()),
            code => Err(WasmError::Init(format!("init returned {code}"))),
        }
    }

    /// One hook call: input into a guest buffer, call, copy the output out, free both buffers.
    /// Any error leaves the instance in an unknown state; the caller must drop it.
    pub(crate) fn call_hook(
        &mut self,
        hook: Hook,
        input: &[u8],
        limits: &WasmLimits,
    ) -> Result<Vec<u8>, WasmError> {
        let Some(func) = self.hooks[hook.index()].clone() else {
            return Err(WasmError::NoSuchHook(hook));
        };
        let timeout = limits.call_timeout;
        self.begin(timeout);
        let (in_ptr, in_len) = self.write_input(input, timeout, WasmError::Trap)?;
        let packed = func
            .call(&mut self.store, (in_ptr, in_len))
            .map_err(|err| self.failure(&err, timeout, WasmError::Trap))?;
        let (out_ptr, out_len) = unpack(packed);
        let output = self.read_output(
            out_ptr,
            out_len,
            limits.max_output_bytes,
            hook.export_name(),
        )?;
        // A guest that answers in place returns the input buffer; free it once, with the size
        // it was allocated with.
        if out_ptr != in_ptr {
            self.free(out_ptr, out_len, timeout)?;
        }
        self.free(in_ptr, in_len, timeout)?;
        Ok(output)
    }

    /// Calls `cleanup` if exported; non-zero is reported, the instance is dropped either way.
    pub(crate) fn cleanup(&mut self, limits: &WasmLimits) -> Result<(), WasmError> {
        let Some(cleanup) = self.cleanup.clone() else {
            return Ok(());
        };
        let timeout = limits.init_timeout;
        self.begin(timeout);
        let status = cleanup.call(&mut self.store, ());
        self.flush_logs();
        match status {
            Ok(0) => Ok(()),
            Ok(code) => Err(WasmError::Cleanup(format!("cleanup returned {code}"))),
            Err(err) => Err(self.failure(&err, timeout, |message| {
                WasmError::Cleanup(format!("cleanup trapped: {message}"))
            })),
        }
    }

    /// Emits partial stdout/stderr lines so they are not held until the next call.
    pub(crate) fn flush_logs(&mut self) {
        flush_logs(&mut self.store);
    }

    /// Starts a guest call: a fresh time budget and a clean memory-refusal record.
    fn begin(&mut self, timeout: Duration) {
        self.store.set_epoch_deadline(deadline_ticks(timeout));
        self.store.data_mut().limiter.memory_refused = false;
    }

    fn failure(
        &self,
        err: &wasmtime::Error,
        timeout: Duration,
        wrap: impl FnOnce(String) -> WasmError,
    ) -> WasmError {
        match Failure::classify(err, self.store.data().limiter.memory_refused) {
            Failure::Timeout => WasmError::Timeout(timeout),
            Failure::MemoryLimit => WasmError::MemoryLimit,
            Failure::Trap(message) => wrap(message),
        }
    }

    /// Copies `input` into a buffer from the guest's `malloc`. Empty input is passed as (0, 0)
    /// without allocating, which is what `malloc(0)` returns in the reference guests anyway.
    fn write_input(
        &mut self,
        input: &[u8],
        timeout: Duration,
        wrap: impl FnOnce(String) -> WasmError,
    ) -> Result<(u32, u32), WasmError> {
        if input.is_empty() {
            return Ok((0, 0));
        }
        // Over 4 GiB can never fit a 32-bit guest memory.
        let len = u32::try_from(input.len()).map_err(|_| WasmError::MemoryLimit)?;
        let ptr = self
            .malloc
            .call(&mut self.store, len)
            .map_err(|err| self.failure(&err, timeout, wrap))?;
        if ptr == 0 {
            return Err(if self.store.data().limiter.memory_refused {
                WasmError::MemoryLimit
            } else {
                WasmError::BadOutput(format!("malloc({len}) returned a null pointer"))
            });
        }
        let start = ptr as usize;
        let Some(target) = self
            .memory
            .data_mut(&mut self.store)
            .get_mut(start..start + input.len())
        else {
            let size = self.memory.data_size(&self.store);
            return Err(WasmError::BadOutput(format!(
                "malloc({len}) returned {ptr}, outside the plugin's {size} bytes of memory"
            )));
        };
        target.copy_from_slice(input);
        Ok((ptr, len))
    }

    /// Bounds-checks a guest (ptr, len) and copies it out as UTF-8 bytes.
    fn read_output(
        &self,
        ptr: u32,
        len: u32,
        max: usize,
        export: &str,
    ) -> Result<Vec<u8>, WasmError> {
        let len = len as usize;
        if len > max {
            return Err(WasmError::BadOutput(format!(
                "{export} returned {len} bytes, over the {max}-byte output limit"
            )));
        }
        let data = self.memory.data(&self.store);
        let start = ptr as usize;
        let Some(output) = data.get(start..start + len) else {
            return Err(WasmError::BadOutput(format!(
                "{export} returned a buffer at {ptr} of {len} bytes, outside the plugin's {} \
                 bytes of memory",
                data.len()
            )));
        };
        if let Err(err) = std::str::from_utf8(output) {
            return Err(WasmError::BadOutput(format!(
                "{export} returned bytes that are not UTF-8 ({err})"
            )));
        }
        Ok(output.to_vec())
    }

    fn free(&mut self, ptr: u32, len: u32, timeout: Duration) -> Result<(), WasmError> {
        if ptr == 0 {
            return Ok(());
        }
        let result = match &self.free {
            GuestFree::Ptr(free) => free.call(&mut self.store, ptr),
            GuestFree::PtrSize(free) => free.call(&mut self.store, (ptr, len)),
        };
        result.map_err(|err| {
            self.failure(&err, timeout, |message| {
                WasmError::Trap(format!("free trapped: {message}"))
            })
        })
    }
}

fn flush_logs(store: &mut Store<HostState>) {
    let state = store.data_mut();
    state.stdout.flush(&state.logs);
    state.stderr.flush(&state.logs);
}
