//! `env` imports: plugin logging (`log`, `log_level`) and the AssemblyScript runtime's `abort`,
//! `trace` and `seed`. Reads guest memory only within bounds and never writes it.

use wasmtime::{Caller, Linker};

use super::{ENV_MODULE, bytes, guest_memory, read_u32};
use crate::error::GuestAbort;
use crate::instance::HostState;
use crate::log::{LogLevel, emit};

pub(super) const NAMES: &[&str] = &["log", "log_level", "abort", "trace", "seed"];

/// Longest AssemblyScript string read for `abort`/`trace`; a corrupt length must not make the
/// host copy megabytes into an error message.
const MAX_AS_STRING_BYTES: u32 = 8 * 1024;

pub(super) fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        ENV_MODULE,
        "log",
        |mut caller: Caller<'_, HostState>, ptr: u32, len: u32| {
            guest_log(&mut caller, LogLevel::Info, ptr, len, "env.log")
        },
    )?;
    linker.func_wrap(
        ENV_MODULE,
        "log_level",
        |mut caller: Caller<'_, HostState>, level: i32, ptr: u32, len: u32| {
            guest_log(
                &mut caller,
                LogLevel::from_guest(level),
                ptr,
                len,
                "env.log_level",
            )
        },
    )?;
    linker.func_wrap(
        ENV_MODULE,
        "abort",
        |mut caller: Caller<'_, HostState>,
         message: u32,
         file: u32,
         line: u32,
         column: u32|
         -> wasmtime::Result<()> {
            let memory = guest_memory(&mut caller)?;
            let data = memory.data(&caller);
            let text = format!(
                "{} at {}:{line}:{column}",
                as_string(data, message),
                as_string(data, file)
            );
            Err(GuestAbort(text).into())
        },
    )?;
    linker.func_wrap(
        ENV_MODULE,
        "trace",
        |mut caller: Caller<'_, HostState>,
         message: u32,
         count: i32,
         a0: f64,
         a1: f64,
         a2: f64,
         a3: f64,
         a4: f64|
         -> wasmtime::Result<()> {
            let memory = guest_memory(&mut caller)?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let mut text = format!("trace: {}", as_string(data, message));
            let count = usize::try_from(count.clamp(0, 5)).unwrap_or(0);
            for (i, value) in [a0, a1, a2, a3, a4].iter().take(count).enumerate() {
                text.push_str(if i == 0 { " " } else { ", " });
                text.push_str(&value.to_string());
            }
            emit(&state.logs, LogLevel::Info, text.as_bytes());
            Ok(())
        },
    )?;
    linker.func_wrap(ENV_MODULE, "seed", seed)?;
    Ok(())
}

fn guest_log(
    caller: &mut Caller<'_, HostState>,
    level: LogLevel,
    ptr: u32,
    len: u32,
    import: &str,
) -> wasmtime::Result<()> {
    let memory = guest_memory(caller)?;
    let (data, state) = memory.data_and_store_mut(caller);
    match bytes(data, ptr, len) {
        Some(message) => {
            emit(&state.logs, level, message);
            Ok(())
        }
        None => Err(wasmtime::Error::msg(format!(
            "{import} was given a message at {ptr} of {len} bytes, outside the plugin's memory"
        ))),
    }
}

/// AssemblyScript strings are UTF-16LE, with their byte length stored as a u32 just before them.
fn as_string(data: &[u8], ptr: u32) -> String {
    if ptr == 0 {
        return "null".into();
    }
    let Some(size) = ptr.checked_sub(4).and_then(|header| read_u32(data, header)) else {
        return "<invalid string>".into();
    };
    let Some(raw) = bytes(data, ptr, size.min(MAX_AS_STRING_BYTES)) else {
        return "<invalid string>".into();
    };
    let units = raw
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]));
    let mut text: String = char::decode_utf16(units)
        .map(|unit| unit.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    if size > MAX_AS_STRING_BYTES {
        text.push_str(" [truncated]");
    }
    text
}

/// Seed for AssemblyScript's `Math.random`. Any bit pattern works; an odd integer-valued float
/// avoids NaN and the zero seed some runtimes replace.
fn seed() -> f64 {
    let bits = getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_nanos() as u64)
    });
    ((bits >> 11) | 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_bytes(text: &str, at: usize) -> Vec<u8> {
        let mut data = vec![0u8; at - 4];
        let units: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        data.extend_from_slice(&(units.len() as u32).to_le_bytes());
        data.extend_from_slice(&units);
        data
    }

    #[test]
    fn reads_assemblyscript_strings() {
        let data = as_bytes("héllo ✓", 16);
        assert_eq!(as_string(&data, 16), "héllo ✓");
        assert_eq!(as_string(&data, 0), "null");
        assert_eq!(as_string(&data, 2), "<invalid string>");
        assert_eq!(as_string(&data, 1000), "<invalid string>");
    }
}
