//! The functions a plugin may import, and linking a module against them.
//! Anything a module imports that is not listed here fails the load by name, except unknown
//! WASI preview1 functions, which are linked to stubs returning ENOSYS.

mod env;
mod wasi;

use wasmtime::{Caller, Extern, ExternType, InstancePre, Linker, Memory, Module, Val, ValType};

use crate::error::WasmError;
use crate::instance::HostState;

pub(crate) const ENV_MODULE: &str = "env";
pub(crate) const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// Adds every host import to `linker`; done once per engine.
pub(crate) fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    env::define(linker)?;
    wasi::define(linker)?;
    Ok(())
}

/// Whether `define` provides `module.name`; kept beside the definitions and checked by a test.
fn provided(module: &str, name: &str) -> bool {
    match module {
        ENV_MODULE => env::NAMES.contains(&name),
        WASI_MODULE => wasi::NAMES.contains(&name),
        _ => false,
    }
}

/// Resolves the module's imports against `base` and pre-instantiates it. The base linker is
/// cloned only when the module needs ENOSYS stubs for WASI functions the host does not offer.
pub(crate) fn link(
    base: &Linker<HostState>,
    module: &Module,
) -> Result<InstancePre<HostState>, WasmError> {
    let mut extended: Option<Linker<HostState>> = None;
    for import in module.imports() {
        let (from, name) = (import.module(), import.name());
        if provided(from, name) {
            continue;
        }
        if from != WASI_MODULE {
            return Err(WasmError::Load(format!(
                "module imports `{from}.{name}`, which the host does not provide (it provides \
                 env.log, env.log_level, env.abort, env.trace, env.seed and WASI preview1 \
                 functions without filesystem, network or environment access)"
            )));
        }
        let ExternType::Func(ty) = import.ty() else {
            return Err(WasmError::Load(format!(
                "module imports `{from}.{name}` as something other than a function; the host \
                 only provides WASI functions"
            )));
        };
        let stub_results = ty
            .results()
            .enumerate()
            .map(|(i, result)| match result {
                ValType::I32 if i == 0 => Ok(Val::I32(wasi::ERRNO_NOSYS)),
                ValType::I32 => Ok(Val::I32(0)),
                ValType::I64 => Ok(Val::I64(0)),
                ValType::F32 => Ok(Val::F32(0)),
                ValType::F64 => Ok(Val::F64(0)),
                _ => Err(WasmError::Load(format!(
                    "module imports `{from}.{name}` with a reference-typed result, which no \
                     WASI preview1 function has"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let linker = extended.get_or_insert_with(|| base.clone());
        linker
            .func_new(from, name, ty, move |_caller, _params, results| {
                results.clone_from_slice(&stub_results);
                Ok(())
            })
            .map_err(|e| {
                WasmError::Load(format!("cannot define a stub for `{from}.{name}`: {e:#}"))
            })?;
    }
    extended
        .as_ref()
        .unwrap_or(base)
        .instantiate_pre(module)
        .map_err(|e| WasmError::Load(format!("cannot link the module's imports: {e:#}")))
}

/// The guest's exported memory. Looked up per host call rather than cached because host
/// functions may run from the start function, before the instance is fully set up.
fn guest_memory(caller: &mut Caller<'_, HostState>) -> wasmtime::Result<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => Err(wasmtime::Error::msg(
            "plugin called a host function but exports no `memory`",
        )),
    }
}

/// `len` bytes at `ptr`, or `None` when any of them lies outside memory.
fn bytes(data: &[u8], ptr: u32, len: u32) -> Option<&[u8]> {
    let start = usize::try_from(ptr).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    data.get(start..end)
}

fn bytes_mut(data: &mut [u8], ptr: u32, len: u32) -> Option<&mut [u8]> {
    let start = usize::try_from(ptr).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    data.get_mut(start..end)
}

fn read_u32(data: &[u8], ptr: u32) -> Option<u32> {
    let raw: [u8; 4] = bytes(data, ptr, 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

fn write_le(data: &mut [u8], ptr: u32, value: &[u8]) -> Option<()> {
    let len = u32::try_from(value.len()).ok()?;
    bytes_mut(data, ptr, len)?.copy_from_slice(value);
    Some(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use wasmtime::{Engine, Store};

    use super::*;
    use crate::instance::HostState;

    #[test]
    fn provided_lists_exactly_what_define_defines() {
        let engine = Engine::default();
        let mut linker = Linker::new(&engine);
        define(&mut linker).unwrap();
        let mut store = Store::new(&engine, HostState::new(1 << 20, Arc::new(|_| {})));
        let defined: Vec<(String, String)> = linker
            .iter(&mut store)
            .map(|(module, name, _)| (module.to_owned(), name.to_owned()))
            .collect();
        for (module, name) in &defined {
            assert!(
                provided(module, name),
                "{module}.{name} defined but not listed"
            );
        }
        for (module, names) in [(ENV_MODULE, env::NAMES), (WASI_MODULE, wasi::NAMES)] {
            for name in names {
                assert!(
                    defined.iter().any(|(m, n)| m == module && n == name),
                    "{module}.{name} listed but not defined"
                );
            }
        }
    }

    #[test]
    fn byte_ranges_are_bounds_checked() {
        let data = [1u8, 2, 3, 4, 5];
        assert_eq!(bytes(&data, 1, 3), Some(&data[1..4]));
        assert_eq!(bytes(&data, 5, 0), Some(&data[5..5]));
        assert_eq!(bytes(&data, 4, 2), None);
        assert_eq!(bytes(&data, u32::MAX, u32::MAX), None);
        assert_eq!(read_u32(&data, 1), Some(u32::from_le_bytes([2, 3, 4, 5])));
        assert_eq!(read_u32(&data, 2), None);
    }
}
