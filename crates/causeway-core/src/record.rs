//! What happened to one request, for observers (request logs, metrics, traces): timings of
//! the request, of every upstream attempt and of every plugin hook, filled in as the request
//! runs, and the finished `RequestRecord` handed to observer plugins once the answer (or the
//! stream) is over. Observers must not slow the request: they copy and enqueue.

use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};

use crate::llm::Usage;

/// One upstream attempt (a try of one key of one target; retries are separate attempts).
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptSpan {
    pub provider: String,
    pub model: String,
    pub key_id: Option<String>,
    /// Index of the target: 0 = primary, 1.. = fallbacks.
    pub target_index: u32,
    pub start: Instant,
    pub end: Instant,
    /// HTTP status the upstream answered (0 = no answer: connection error, timeout).
    pub status: u16,
    pub error_type: Option<String>,
}

/// One plugin hook call.
#[derive(Debug, Clone, PartialEq)]
pub struct HookSpan {
    pub plugin: String,
    pub hook: &'static str,
    pub start: Instant,
    pub end: Instant,
    pub failed: bool,
}

/// Timings collected while the request runs (kept in the request context).
#[derive(Debug, Clone, Default)]
pub struct RequestTrace {
    pub attempts: Vec<AttemptSpan>,
    pub hooks: Vec<HookSpan>,
    /// When the first streamed chunk reached the client.
    pub first_chunk: Option<Instant>,
    /// Chunks sent to the client (streams).
    pub chunks: u64,
    /// Largest gap between two streamed chunks.
    pub max_chunk_gap: Option<Duration>,
    pub last_chunk: Option<Instant>,
}

impl RequestTrace {
    pub fn chunk_sent(&mut self, now: Instant) {
        if self.first_chunk.is_none() {
            self.first_chunk = Some(now);
        }
        if let Some(last) = self.last_chunk {
            let gap = now.saturating_duration_since(last);
            if self.max_chunk_gap.is_none_or(|g| gap > g) {
                self.max_chunk_gap = Some(gap);
            }
        }
        self.last_chunk = Some(now);
        self.chunks += 1;
    }
}

/// W3C trace context of one request: continued from the caller's `traceparent` when it sent
/// one, else a new trace. `span_id` is the gateway's request span; it is what the provider
/// sees as parent in the `traceparent` Causeway forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub sampled: bool,
}

impl TraceContext {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; anything else starts a new trace.
    pub fn from_traceparent(header: Option<&str>) -> TraceContext {
        // Trace ids must be unique, not secret: a thread-local PRNG avoids a syscall per
        // request.
        let fresh = fastrand::u128(1..).to_be_bytes();
        let span_id = fastrand::u64(1..).to_be_bytes();
        if let Some((trace_id, parent, flags)) = header.and_then(parse_traceparent) {
            return TraceContext {
                trace_id,
                span_id,
                parent_span_id: Some(parent),
                sampled: flags & 1 == 1,
            };
        }
        TraceContext {
            trace_id: fresh,
            span_id,
            parent_span_id: None,
            sampled: true,
        }
    }

    /// The `traceparent` to send upstream (the gateway's span as parent).
    pub fn traceparent(&self) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        out.push_str(&hex(&self.trace_id));
        out.push('-');
        out.push_str(&hex(&self.span_id));
        out.push_str(if self.sampled { "-01" } else { "-00" });
        out
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

fn parse_traceparent(h: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let mut parts = h.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let parent = parts.next()?;
    let flags = parts.next()?;
    if version.len() != 2
        || version == "ff"
        || trace.len() != 32
        || parent.len() != 16
        || flags.len() != 2
    {
        return None;
    }
    let mut t = [0u8; 16];
    let mut p = [0u8; 8];
    for (i, b) in t.iter_mut().enumerate() {
        *b = u8::from_str_radix(trace.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    for (i, b) in p.iter_mut().enumerate() {
        *b = u8::from_str_radix(parent.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    if t.iter().all(|b| *b == 0) || p.iter().all(|b| *b == 0) {
        return None;
    }
    Some((t, p, u8::from_str_radix(flags, 16).ok()?))
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Error,
    /// The client went away before the answer was complete.
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// The finished request, as observers receive it.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub request_id: String,
    pub started_at: SystemTime,
    pub started: Instant,
    pub ended: Instant,
    /// HTTP path of the front door (`/v1/chat/completions`, `/anthropic/v1/messages`, ...).
    pub route: String,
    /// `chat_completion`, `chat_completion_stream`, ...
    pub request_type: &'static str,
    pub stream: bool,
    /// As requested: `provider/model`.
    pub requested_provider: Option<String>,
    pub requested_model: Option<String>,
    /// What served the request (or failed last).
    pub provider: Option<String>,
    pub model: Option<String>,
    pub key_id: Option<String>,
    pub virtual_key_id: Option<String>,
    pub team_id: Option<String>,
    pub customer_id: Option<String>,
    pub outcome: Outcome,
    pub status_code: u16,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub usage: Option<Usage>,
    /// USD; `None` when the model has no price.
    pub cost: Option<f64>,
    pub trace: RequestTrace,
    /// Request and response content, when content logging is on (already truncated).
    pub input: Option<String>,
    pub output: Option<String>,
    /// `x-bf-dim-<name>` header values, by name.
    pub dimensions: Map<String, Value>,
    /// W3C trace context of the request (continues the caller's trace when it sent one).
    pub trace_context: TraceContext,
}

impl RequestRecord {
    pub fn latency(&self) -> Duration {
        self.ended.saturating_duration_since(self.started)
    }

    pub fn time_to_first_token(&self) -> Option<Duration> {
        self.trace
            .first_chunk
            .map(|t| t.saturating_duration_since(self.started))
    }

    /// Upstream attempts beyond the first.
    pub fn retries(&self) -> u32 {
        (self.trace.attempts.len() as u32).saturating_sub(1)
    }

    /// Index of the target that served (or failed last): 0 = primary.
    pub fn fallback_index(&self) -> u32 {
        self.trace.attempts.last().map_or(0, |a| a.target_index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_a_valid_traceparent() {
        let t = TraceContext::from_traceparent(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
        assert_eq!(hex(&t.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            t.parent_span_id.map(|p| hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(t.sampled);
        let out = t.traceparent();
        assert!(out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(
            !out.contains("00f067aa0ba902b7"),
            "the gateway's own span is the parent upstream"
        );
    }

    #[test]
    fn malformed_traceparent_starts_a_new_trace() {
        for bad in [
            "",
            "garbage",
            "00-0000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let t = TraceContext::from_traceparent(Some(bad));
            assert!(t.parent_span_id.is_none(), "{bad}");
        }
    }
}
