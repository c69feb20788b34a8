//! A loaded plugin: the pre-instantiated module and a bounded pool of initialised instances.
//! Calls borrow an idle instance (or start one, up to the limit, or wait); an instance whose
//! call failed is dropped, never reused, because its memory may be inconsistent.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use wasmtime::{InstancePre, Module};

use crate::abi::Hook;
use crate::error::WasmError;
use crate::exports::ModuleExports;
use crate::host::HostShared;
use crate::imports;
use crate::instance::{HostState, PluginInstance};
use crate::limits::WasmLimits;
use crate::log::{LogLevel, LogLine, LogSink};

/// A running plugin. Share it (it is `Send + Sync`); calls from many threads run on up to
/// `max_instances` instances in parallel.
pub struct WasmPlugin {
    /// Keeps the engine and its epoch ticker alive while the plugin exists.
    _host: Arc<HostShared>,
    pre: InstancePre<HostState>,
    exports: ModuleExports,
    config: Vec<u8>,
    limits: WasmLimits,
    logs: LogSink,
    name: String,
    pool: Mutex<Pool>,
    /// Signalled when an instance becomes idle or a slot frees up.
    returned: Condvar,
}

struct Pool {
    idle: Vec<PluginInstance>,
    /// Instances in existence: idle, busy in a call, or being created.
    live: usize,
    /// `cleanup` is collecting every instance; calls wait until it is done.
    draining: bool,
    /// Threads blocked on `returned`. Signalling a condvar costs a syscall even with nobody
    /// waiting, so the uncontended call path skips it.
    waiters: usize,
}

impl fmt::Debug for WasmPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmPlugin")
            .field("name", &self.name)
            .field("hooks", &self.exports.hooks)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl WasmPlugin {
    pub(crate) fn start(
        host: Arc<HostShared>,
        module: &Module,
        config_json: &[u8],
        mut limits: WasmLimits,
        logs: LogSink,
    ) -> Result<Self, WasmError> {
        limits.max_instances = limits.max_instances.max(1);
        let exports = ModuleExports::inspect(module)?;
        let pre = imports::link(&host.linker, module)?;
        let mut first = PluginInstance::instantiate(&pre, &exports, &limits, Arc::clone(&logs))?;
        let name = first.read_name(&limits)?;
        first.init(config_json, &limits)?;
        tracing::debug!(plugin = %name, hooks = ?exports.hooks, "wasm plugin loaded");
        Ok(Self {
            _host: host,
            pre,
            exports,
            config: config_json.to_vec(),
            limits,
            logs,
            name,
            pool: Mutex::new(Pool {
                idle: vec![first],
                live: 1,
                draining: false,
                waiters: 0,
            }),
            returned: Condvar::new(),
        })
    }

    /// The name the plugin reported from `get_name` at load.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The hooks the module exports, in `Hook::ALL` order.
    pub fn hooks(&self) -> &[Hook] {
        &self.exports.hooks
    }

    /// The limits in force (`max_instances` raised to at least 1).
    pub fn limits(&self) -> &WasmLimits {
        &self.limits
    }

    /// Runs one hook: `input` JSON in, the plugin's output bytes (UTF-8, unparsed) out.
    /// May wait for an instance if all are busy; when a new instance is needed its
    /// start-up (bounded by `init_timeout`) happens in this call.
    pub fn call(&self, hook: Hook, input: &[u8]) -> Result<Vec<u8>, WasmError> {
        if !self.exports.has_hook[hook.index()] {
            return Err(WasmError::NoSuchHook(hook));
        }
        let (mut instance, lease) = self.checkout()?;
        let result = instance.call_hook(hook, input, &self.limits);
        instance.flush_logs();
        match result {
            Ok(output) => {
                lease.give_back(instance);
                Ok(output)
            }
            Err(err) => {
                // Drop the instance before its slot is freed for a fresh one.
                drop(instance);
                drop(lease);
                self.log(
                    LogLevel::Error,
                    format!("{hook} failed: {err}; the instance was discarded"),
                );
                Err(err)
            }
        }
    }

    /// Calls `cleanup` (if exported) on every instance and drops them all. Waits for calls in
    /// progress to finish (each bounded by `call_timeout`), holding new calls until every
    /// instance is collected; a later `call` starts a fresh instance. Returns the first
    /// failure, after trying all.
    pub fn cleanup(&self) -> Result<(), WasmError> {
        let mut pool = self.lock_pool();
        while pool.draining {
            pool = self.wait(pool);
        }
        pool.draining = true;
        let mut collected = Vec::with_capacity(pool.live);
        loop {
            collected.append(&mut pool.idle);
            // Busy instances either come back to `idle` or are discarded (lowering `live`).
            if collected.len() >= pool.live {
                break;
            }
            pool = self.wait(pool);
        }
        // The collected instances are out of the pool, so calls may resume (on fresh instances)
        // while the guests' cleanup runs; a panicking log sink cannot leave the pool draining.
        pool.live = 0;
        pool.draining = false;
        let waiters = pool.waiters;
        drop(pool);
        if waiters > 0 {
            self.returned.notify_all();
        }

        let mut first_error = None;
        let count = collected.len();
        for mut instance in collected {
            if let Err(err) = instance.cleanup(&self.limits) {
                self.log(LogLevel::Error, format!("cleanup failed: {err}"));
                first_error.get_or_insert(err);
            }
        }
        tracing::debug!(plugin = %self.name, instances = count, "wasm plugin cleaned up");
        first_error.map_or(Ok(()), Err)
    }

    /// An idle instance, a newly started one if under the limit, or the next one returned.
    fn checkout(&self) -> Result<(PluginInstance, Lease<'_>), WasmError> {
        let mut pool = self.lock_pool();
        loop {
            if !pool.draining {
                if let Some(instance) = pool.idle.pop() {
                    return Ok((instance, Lease { plugin: self }));
                }
                if pool.live < self.limits.max_instances {
                    pool.live += 1;
                    drop(pool);
                    // From here the slot is ours; the lease frees it if start-up fails.
                    let lease = Lease { plugin: self };
                    let instance = self.spawn()?;
                    return Ok((instance, lease));
                }
            }
            pool = self.wait(pool);
        }
    }

    /// A new instance with `init` called, as at load. The name is not re-read.
    fn spawn(&self) -> Result<PluginInstance, WasmError> {
        let started = PluginInstance::instantiate(
            &self.pre,
            &self.exports,
            &self.limits,
            Arc::clone(&self.logs),
        )
        .and_then(|mut instance| {
            instance.init(&self.config, &self.limits)?;
            Ok(instance)
        });
        if let Err(err) = &started {
            self.log(
                LogLevel::Error,
                format!("starting another instance failed: {err}"),
            );
        }
        started
    }

    fn log(&self, level: LogLevel, message: String) {
        (self.logs)(LogLine { level, message });
    }

    /// The pool holds plain data that every critical section leaves consistent, so a panic
    /// elsewhere (for instance in a log sink) must not make the plugin unusable.
    fn lock_pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, mut guard: MutexGuard<'a, Pool>) -> MutexGuard<'a, Pool> {
        guard.waiters += 1;
        let mut guard = self
            .returned
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner);
        guard.waiters -= 1;
        guard
    }
}

/// One counted slot in the pool. Dropping it without `give_back` (an error, or a panic in a log
/// sink mid-call) releases the slot so the pool cannot leak capacity and deadlock.
struct Lease<'a> {
    plugin: &'a WasmPlugin,
}

impl Lease<'_> {
    fn give_back(self, instance: PluginInstance) {
        let plugin = self.plugin;
        std::mem::forget(self);
        let mut pool = plugin.lock_pool();
        pool.idle.push(instance);
        let (waiters, draining) = (pool.waiters, pool.draining);
        drop(pool);
        // A draining `cleanup` waits on the same condvar as callers; wake everyone so it is
        // not the one left asleep.
        if waiters > 0 && draining {
            plugin.returned.notify_all();
        } else if waiters > 0 {
            plugin.returned.notify_one();
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut pool = self.plugin.lock_pool();
        pool.live = pool.live.saturating_sub(1);
        let waiters = pool.waiters;
        drop(pool);
        if waiters > 0 {
            self.plugin.returned.notify_all();
        }
    }
}
