//! A capability-free WASI preview1 shim for guests built with `-target=wasi` (TinyGo): stdout and
//! stderr become log lines, clocks and randomness are real, and there is no filesystem, network,
//! environment or argument list. Bad guest pointers return EFAULT rather than trapping.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};

use super::{WASI_MODULE, bytes, bytes_mut, guest_memory, read_u32, write_le};
use crate::error::GuestExit;
use crate::instance::HostState;

pub(super) const NAMES: &[&str] = &[
    "fd_write",
    "fd_read",
    "fd_close",
    "fd_seek",
    "fd_fdstat_get",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "path_open",
    "environ_sizes_get",
    "environ_get",
    "args_sizes_get",
    "args_get",
    "clock_time_get",
    "clock_res_get",
    "random_get",
    "sched_yield",
    "proc_exit",
    "poll_oneoff",
];

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
const ERRNO_IO: i32 = 29;
pub(super) const ERRNO_NOSYS: i32 = 52;

const STDOUT: i32 = 1;
const STDERR: i32 = 2;

/// `filetype::character_device`: what a terminal reports, so wasi-libc line-buffers stdio
/// instead of holding log output until exit.
const FILETYPE_CHARACTER_DEVICE: u8 = 2;
/// `rights::fd_write`.
const RIGHT_FD_WRITE: u64 = 1 << 6;

pub(super) fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(WASI_MODULE, "fd_write", fd_write)?;
    linker.func_wrap(WASI_MODULE, "fd_fdstat_get", fd_fdstat_get)?;

    // No descriptor other than stdout/stderr exists; BADF from `fd_prestat_get` tells wasi-libc
    // and TinyGo there are no preopened directories.
    linker.func_wrap(WASI_MODULE, "fd_read", |_: i32, _: u32, _: u32, _: u32| {
        ERRNO_BADF
    })?;
    linker.func_wrap(WASI_MODULE, "fd_close", |_: i32| ERRNO_BADF)?;
    linker.func_wrap(WASI_MODULE, "fd_seek", |_: i32, _: i64, _: i32, _: u32| {
        ERRNO_BADF
    })?;
    linker.func_wrap(WASI_MODULE, "fd_prestat_get", |_: i32, _: u32| ERRNO_BADF)?;
    linker.func_wrap(
        WASI_MODULE,
        "fd_prestat_dir_name",
        |_: i32, _: u32, _: u32| ERRNO_BADF,
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "path_open",
        |_: i32, _: i32, _: u32, _: u32, _: i32, _: i64, _: i64, _: i32, _: u32| ERRNO_BADF,
    )?;

    linker.func_wrap(WASI_MODULE, "environ_sizes_get", write_two_zeros)?;
    linker.func_wrap(WASI_MODULE, "args_sizes_get", write_two_zeros)?;
    // With zero entries reported there is nothing to write.
    linker.func_wrap(WASI_MODULE, "environ_get", |_: u32, _: u32| ERRNO_SUCCESS)?;
    linker.func_wrap(WASI_MODULE, "args_get", |_: u32, _: u32| ERRNO_SUCCESS)?;

    let epoch = Instant::now();
    linker.func_wrap(
        WASI_MODULE,
        "clock_time_get",
        move |mut caller: Caller<'_, HostState>,
              clock: i32,
              _precision: i64,
              out: u32|
              -> wasmtime::Result<i32> {
            let Some(now) = clock_now(clock, epoch) else {
                return Ok(ERRNO_INVAL);
            };
            write_guest(&mut caller, out, &now.to_le_bytes())
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "clock_res_get",
        |mut caller: Caller<'_, HostState>, clock: i32, out: u32| -> wasmtime::Result<i32> {
            if !(0..=3).contains(&clock) {
                return Ok(ERRNO_INVAL);
            }
            // Instant and SystemTime are nanosecond types; claim microseconds, which every
            // supported platform delivers.
            write_guest(&mut caller, out, &1_000u64.to_le_bytes())
        },
    )?;
    linker.func_wrap(
        WASI_MODULE,
        "random_get",
        |mut caller: Caller<'_, HostState>, buf: u32, len: u32| -> wasmtime::Result<i32> {
            let memory = guest_memory(&mut caller)?;
            let Some(target) = bytes_mut(memory.data_mut(&mut caller), buf, len) else {
                return Ok(ERRNO_FAULT);
            };
            Ok(getrandom::fill(target).map_or(ERRNO_IO, |()| ERRNO_SUCCESS))
        },
    )?;
    linker.func_wrap(WASI_MODULE, "sched_yield", || ERRNO_SUCCESS)?;
    linker.func_wrap(
        WASI_MODULE,
        "proc_exit",
        |code: i32| -> wasmtime::Result<()> { Err(GuestExit(code).into()) },
    )?;
    // Sleeping or waiting on descriptors would hold a pooled instance past its time budget
    // without the epoch being able to interrupt host code.
    linker.func_wrap(
        WASI_MODULE,
        "poll_oneoff",
        |_: u32, _: u32, _: u32, _: u32| ERRNO_NOSYS,
    )?;
    Ok(())
}

/// `fd_write`: stdout lines are logged at info, stderr at warn; other descriptors do not exist.
fn fd_write(
    mut caller: Caller<'_, HostState>,
    fd: i32,
    iovs: u32,
    iovs_len: u32,
    nwritten: u32,
) -> wasmtime::Result<i32> {
    if fd != STDOUT && fd != STDERR {
        return Ok(ERRNO_BADF);
    }
    let memory = guest_memory(&mut caller)?;
    let (data, state) = memory.data_and_store_mut(&mut caller);
    let Some(table) = iovs_len
        .checked_mul(8)
        .and_then(|size| bytes(data, iovs, size))
    else {
        return Ok(ERRNO_FAULT);
    };
    // Check every iovec before logging any, so a fault leaves no half-written output.
    let mut total: u32 = 0;
    for iov in table.chunks_exact(8) {
        let (Some(base), Some(len)) = (read_u32(iov, 0), read_u32(iov, 4)) else {
            return Ok(ERRNO_FAULT);
        };
        if bytes(data, base, len).is_none() {
            return Ok(ERRNO_FAULT);
        }
        let Some(sum) = total.checked_add(len) else {
            return Ok(ERRNO_INVAL);
        };
        total = sum;
    }
    let buffer = if fd == STDOUT {
        &mut state.stdout
    } else {
        &mut state.stderr
    };
    for iov in table.chunks_exact(8) {
        if let (Some(base), Some(len)) = (read_u32(iov, 0), read_u32(iov, 4))
            && let Some(chunk) = bytes(data, base, len)
        {
            buffer.write(chunk, &state.logs);
        }
    }
    Ok(write_le(data, nwritten, &total.to_le_bytes()).map_or(ERRNO_FAULT, |()| ERRNO_SUCCESS))
}

/// `fd_fdstat_get`: stdout and stderr are write-only character devices.
fn fd_fdstat_get(mut caller: Caller<'_, HostState>, fd: i32, out: u32) -> wasmtime::Result<i32> {
    if fd != STDOUT && fd != STDERR {
        return Ok(ERRNO_BADF);
    }
    // Layout: filetype u8 @0, flags u16 @2, rights_base u64 @8, rights_inheriting u64 @16.
    let mut fdstat = [0u8; 24];
    fdstat[0] = FILETYPE_CHARACTER_DEVICE;
    fdstat[8..16].copy_from_slice(&RIGHT_FD_WRITE.to_le_bytes());
    write_guest(&mut caller, out, &fdstat)
}

fn write_two_zeros(
    mut caller: Caller<'_, HostState>,
    count: u32,
    size: u32,
) -> wasmtime::Result<i32> {
    let memory = guest_memory(&mut caller)?;
    let data = memory.data_mut(&mut caller);
    let written = write_le(data, count, &0u32.to_le_bytes())
        .and_then(|()| write_le(data, size, &0u32.to_le_bytes()));
    Ok(written.map_or(ERRNO_FAULT, |()| ERRNO_SUCCESS))
}

fn write_guest(
    caller: &mut Caller<'_, HostState>,
    ptr: u32,
    value: &[u8],
) -> wasmtime::Result<i32> {
    let memory = guest_memory(caller)?;
    let data = memory.data_mut(caller);
    Ok(write_le(data, ptr, value).map_or(ERRNO_FAULT, |()| ERRNO_SUCCESS))
}

/// Nanoseconds for a WASI clock id: 0 realtime, 1 monotonic, 2 and 3 (process and thread CPU
/// time) approximated by the monotonic clock, which only has to be non-decreasing.
fn clock_now(clock: i32, epoch: Instant) -> Option<u64> {
    let nanos = match clock {
        0 => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_nanos(),
        1..=3 => epoch.elapsed().as_nanos(),
        _ => return None,
    };
    Some(u64::try_from(nanos).unwrap_or(u64::MAX))
}
