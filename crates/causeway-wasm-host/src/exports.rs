//! Checks a compiled module's exports against the ABI once, at load, and records what it offers
//! (free arity, hooks, cleanup, WASI entry point) so instances never re-inspect the module.

use std::fmt::Write as _;

use wasmtime::{ExternType, FuncType, Module, ValType};

use crate::abi::{Hook, REQUIRED_EXPORTS};
use crate::error::WasmError;

/// What a validated module exports.
#[derive(Debug, Clone)]
pub(crate) struct ModuleExports {
    /// `free(ptr, size)` rather than `free(ptr)`.
    pub(crate) free_takes_size: bool,
    /// Exported hooks, in `Hook::ALL` order.
    pub(crate) hooks: Vec<Hook>,
    pub(crate) has_hook: [bool; Hook::ALL.len()],
    pub(crate) has_cleanup: bool,
    /// WASI start-up export to run once per instance before anything else: `_initialize`
    /// (reactor) or `_start` (command; TinyGo `-target=wasi` sets up its heap there).
    pub(crate) entry: Option<&'static str>,
}

/// Wasm value kinds as the ABI sees them; anything else never matches a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    I32,
    I64,
    F32,
    F64,
    Other,
}

fn kind(ty: &ValType) -> Kind {
    match ty {
        ValType::I32 => Kind::I32,
        ValType::I64 => Kind::I64,
        ValType::F32 => Kind::F32,
        ValType::F64 => Kind::F64,
        _ => Kind::Other,
    }
}

fn signature(ty: &FuncType) -> (Vec<Kind>, Vec<Kind>) {
    (
        ty.params().map(|t| kind(&t)).collect(),
        ty.results().map(|t| kind(&t)).collect(),
    )
}

/// `(i32, i32) -> i64` style, the notation WAT authors and the ABI table use.
fn render(params: &[Kind], results: &[Kind]) -> String {
    fn list(kinds: &[Kind]) -> String {
        let mut out = String::from("(");
        for (i, kind) in kinds.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let name = match kind {
                Kind::I32 => "i32",
                Kind::I64 => "i64",
                Kind::F32 => "f32",
                Kind::F64 => "f64",
                Kind::Other => "<reference>",
            };
            out.push_str(name);
        }
        out.push(')');
        out
    }
    let mut out = list(params);
    match results {
        [] => {}
        [one] => {
            let _ = write!(out, " -> {}", list(&[*one]).trim_matches(['(', ')']));
        }
        many => {
            let _ = write!(out, " -> {}", list(many));
        }
    }
    out
}

const I32: Kind = Kind::I32;
const I64: Kind = Kind::I64;

impl ModuleExports {
    pub(crate) fn inspect(module: &Module) -> Result<Self, WasmError> {
        let mut exports = ModuleExports {
            free_takes_size: false,
            hooks: Vec::new(),
            has_hook: [false; Hook::ALL.len()],
            has_cleanup: false,
            entry: None,
        };

        match module.get_export("memory") {
            Some(ExternType::Memory(memory)) if memory.is_64() => {
                return Err(WasmError::Load(
                    "export `memory` is a 64-bit memory; the ABI passes 32-bit pointers".into(),
                ));
            }
            Some(ExternType::Memory(_)) => {}
            Some(_) => {
                return Err(WasmError::Load(
                    "export `memory` is not a linear memory".into(),
                ));
            }
            None => return Err(missing("memory")),
        }

        expect_func(module, "malloc", &[I32], &[I32])?;
        expect_func(module, "get_name", &[], &[I64])?;
        expect_func(module, "init", &[I32, I32], &[I32])?;

        let free = func_type(module, "free")?.ok_or_else(|| missing("free"))?;
        exports.free_takes_size = match signature(&free) {
            (params, results) if results.is_empty() && params == [I32] => false,
            (params, results) if results.is_empty() && params == [I32, I32] => true,
            (params, results) => {
                return Err(WasmError::Load(format!(
                    "export `free` has type {}; expected (i32) or (i32, i32) with no result",
                    render(&params, &results)
                )));
            }
        };

        for hook in Hook::ALL {
            if optional_func(module, hook.export_name(), &[I32, I32], &[I64])? {
                exports.hooks.push(hook);
                exports.has_hook[hook.index()] = true;
            }
        }
        exports.has_cleanup = optional_func(module, "cleanup", &[], &[I32])?;

        // Only a `() -> ()` function follows the WASI convention; anything else under these
        // names is the plugin's own business and is left alone.
        for entry in ["_initialize", "_start"] {
            let is_entry = func_type(module, entry)?
                .is_some_and(|ty| signature(&ty) == (Vec::new(), Vec::new()));
            if is_entry {
                exports.entry = Some(entry);
                break;
            }
        }
        Ok(exports)
    }
}

fn missing(name: &str) -> WasmError {
    WasmError::Load(format!(
        "module does not export `{name}` (required exports: {REQUIRED_EXPORTS})"
    ))
}

/// The type of a function export, `None` if absent, an error if it is not a function.
fn func_type(module: &Module, name: &str) -> Result<Option<FuncType>, WasmError> {
    match module.get_export(name) {
        None => Ok(None),
        Some(ExternType::Func(ty)) => Ok(Some(ty)),
        Some(_) => Err(WasmError::Load(format!(
            "export `{name}` is not a function"
        ))),
    }
}

fn expect_func(
    module: &Module,
    name: &str,
    params: &[Kind],
    results: &[Kind],
) -> Result<(), WasmError> {
    if optional_func(module, name, params, results)? {
        Ok(())
    } else {
        Err(missing(name))
    }
}

/// Whether the export exists; an error if it exists with the wrong signature, because a
/// mistyped hook silently ignored would look like a plugin that does nothing.
fn optional_func(
    module: &Module,
    name: &str,
    params: &[Kind],
    results: &[Kind],
) -> Result<bool, WasmError> {
    let Some(ty) = func_type(module, name)? else {
        return Ok(false);
    };
    let (actual_params, actual_results) = signature(&ty);
    if actual_params == params && actual_results == results {
        Ok(true)
    } else {
        Err(WasmError::Load(format!(
            "export `{name}` has type {}; expected {}",
            render(&actual_params, &actual_results),
            render(params, results)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_the_abi_table() {
        assert_eq!(render(&[I32, I32], &[I64]), "(i32, i32) -> i64");
        assert_eq!(render(&[], &[]), "()");
        assert_eq!(render(&[Kind::F64], &[I32, I32]), "(f64) -> (i32, i32)");
    }
}
