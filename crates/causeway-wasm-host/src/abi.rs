//! The names and value encodings of the plugin ABI: hook export names and the packed
//! `ptr << 32 | len` result. Pure data, no wasmtime types.

use std::fmt;

/// A plugin hook, one optional export of the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// `http_pre_hook`: HTTP request interception.
    HttpPre,
    /// `http_post_hook`: HTTP response interception (not for streams).
    HttpPost,
    /// `http_stream_chunk_hook`: each streamed chunk, before it is written.
    HttpStreamChunk,
    /// `pre_hook`: before the provider call.
    PreLlm,
    /// `post_hook`: after the provider call.
    PostLlm,
}

impl Hook {
    /// Every hook, in the order `WasmPlugin::hooks` reports them.
    pub const ALL: [Hook; 5] = [
        Hook::HttpPre,
        Hook::HttpPost,
        Hook::HttpStreamChunk,
        Hook::PreLlm,
        Hook::PostLlm,
    ];

    /// The name of the module export that implements this hook.
    pub fn export_name(&self) -> &'static str {
        match self {
            Hook::HttpPre => "http_pre_hook",
            Hook::HttpPost => "http_post_hook",
            Hook::HttpStreamChunk => "http_stream_chunk_hook",
            Hook::PreLlm => "pre_hook",
            Hook::PostLlm => "post_hook",
        }
    }

    /// Position in `ALL`, used to index per-hook arrays without hashing on the hot path.
    pub(crate) fn index(self) -> usize {
        match self {
            Hook::HttpPre => 0,
            Hook::HttpPost => 1,
            Hook::HttpStreamChunk => 2,
            Hook::PreLlm => 3,
            Hook::PostLlm => 4,
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.export_name())
    }
}

/// Required exports, in the order an operator should read them in an error message.
pub(crate) const REQUIRED_EXPORTS: &str = "memory, malloc, free, get_name, init";

/// Splits a packed result into (pointer, length): pointer in the upper 32 bits.
pub(crate) fn unpack(packed: u64) -> (u32, u32) {
    // Truncation is the encoding: each half is exactly 32 bits.
    ((packed >> 32) as u32, packed as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_splits_high_and_low_halves() {
        assert_eq!(unpack(0x0000_1000_0000_0020), (0x1000, 0x20));
        assert_eq!(unpack(u64::MAX), (u32::MAX, u32::MAX));
        assert_eq!(unpack(0), (0, 0));
    }

    #[test]
    fn index_matches_position_in_all() {
        for (i, hook) in Hook::ALL.iter().enumerate() {
            assert_eq!(hook.index(), i);
        }
    }
}
