//! Resource limits for plugin instances and the store limiter that enforces the memory cap.
//! Time is enforced by epoch interruption (see `host`), not here.

use std::time::Duration;

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// Per-plugin limits; every instance of the plugin gets the same ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmLimits {
    /// Cap on the guest's linear memory (default 64 MiB).
    pub memory_bytes: usize,
    /// Time limit for one hook call, including the host's `malloc`/`free` calls (default 100 ms).
    pub call_timeout: Duration,
    /// Time limit for start-up (`_initialize`/`_start`, `get_name`, `init`) and for `cleanup` (default 5 s).
    pub init_timeout: Duration,
    /// Instances kept per plugin; calls beyond this wait for a free one (default 4, at least 1).
    pub max_instances: usize,
    /// Largest output a hook may return (default 16 MiB).
    pub max_output_bytes: usize,
}

impl Default for WasmLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 * 1024 * 1024,
            call_timeout: Duration::from_millis(100),
            init_timeout: Duration::from_secs(5),
            max_instances: 4,
            max_output_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Function-pointer tables of real guests (TinyGo, AssemblyScript, Rust) hold a few thousand
/// entries; the cap stops `table.grow` from being a second way to exhaust host memory.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// `StoreLimits` plus a record of whether the memory cap refused a growth, so a trap that
/// follows a refused `memory.grow` is reported as `MemoryLimit` rather than an opaque trap.
pub(crate) struct GuestLimiter {
    limits: StoreLimits,
    memory_bytes: usize,
    /// Set when a growth past `memory_bytes` was refused; the caller resets it per call.
    pub(crate) memory_refused: bool,
}

impl GuestLimiter {
    pub(crate) fn new(memory_bytes: usize) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_bytes)
            .table_elements(MAX_TABLE_ELEMENTS)
            // One store holds exactly one plugin instance, and the ABI exchanges data
            // through a single memory.
            .instances(1)
            .memories(1)
            .tables(16)
            // `memory.grow` returns -1 as the spec says; guests handle that themselves.
            .trap_on_grow_failure(false)
            .build();
        Self {
            limits,
            memory_bytes,
            memory_refused: false,
        }
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if !allowed && desired > self.memory_bytes {
            self.memory_refused = true;
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// Epoch ticks for a time limit: the host ticks every millisecond, and one extra tick makes sure
/// a call gets at least its whole budget even when it starts just before a tick.
pub(crate) fn deadline_ticks(timeout: Duration) -> u64 {
    let millis = u64::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
    millis.max(1).saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_up_and_add_one() {
        assert_eq!(deadline_ticks(Duration::from_millis(100)), 101);
        assert_eq!(deadline_ticks(Duration::from_micros(1500)), 3);
        assert_eq!(deadline_ticks(Duration::ZERO), 2);
        assert_eq!(deadline_ticks(Duration::MAX), u64::MAX);
    }

    #[test]
    fn refusal_past_the_cap_is_recorded() {
        let mut limiter = GuestLimiter::new(2 * 65536);
        assert!(limiter.memory_growing(0, 65536, None).unwrap_or(false));
        assert!(!limiter.memory_refused);
        assert!(
            !limiter
                .memory_growing(65536, 3 * 65536, None)
                .unwrap_or(true)
        );
        assert!(limiter.memory_refused);
    }

    #[test]
    fn refusal_by_the_module_maximum_is_not_the_cap() {
        let mut limiter = GuestLimiter::new(64 * 65536);
        assert!(
            !limiter
                .memory_growing(65536, 3 * 65536, Some(2 * 65536))
                .unwrap_or(true)
        );
        assert!(!limiter.memory_refused);
    }
}
