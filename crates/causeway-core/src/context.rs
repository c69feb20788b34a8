//! Per-request state shared by the server, plugins and engine: the request id, the caller's
//! headers, values plugins pass between their hooks, and routing hints from headers.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::{HeaderMap, HeaderName};
use serde_json::{Map, Value};

use crate::llm::Usage;
use crate::record::{RequestTrace, TraceContext};

/// Where the engine records a stream's token usage as it passes by, for whoever needs it
/// when the stream ends (budget settlement, logs), even if the client never asked for it.
pub type UsageCell = Arc<Mutex<Option<Usage>>>;

/// A key the caller pinned with `x-bf-api-key-id` (wins) or `x-bf-api-key` (by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPin {
    Id(String),
    Name(String),
}

#[derive(Debug)]
pub struct RequestContext {
    pub request_id: String,
    pub started: Instant,
    /// The caller's request headers (never forwarded wholesale; plugins may read them).
    pub headers: HeaderMap,
    /// Values set by plugins in one hook and read in later hooks of the same request
    /// (the `context` object of the WASM ABI).
    pub values: Map<String, Value>,
    pub key_pin: Option<KeyPin>,
    /// Provider key ids this request may use (a virtual key's `key_ids`); `None` = any.
    pub key_filter: Option<Vec<String>>,
    /// Headers to send upstream (`x-bf-eh-*`, already filtered).
    pub forward_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Typed values layers attach to the request (e.g. the authenticated caller, a budget
    /// reservation); unlike `values`, never shown to plugins.
    pub extensions: http::Extensions,
    /// Usage of the streamed answer, filled by the engine when the usage chunk passes.
    pub stream_usage: UsageCell,
    /// Timings of attempts and hooks, for observers.
    pub trace: RequestTrace,
    /// Index of the target being tried: 0 = primary, 1.. = fallbacks.
    pub target_index: u32,
    /// W3C trace context (from the caller's `traceparent`, or new).
    pub trace_context: TraceContext,
}

impl RequestContext {
    pub fn new(request_id: impl Into<String>, headers: HeaderMap) -> Self {
        let key_pin = key_pin(&headers);
        let trace_context = TraceContext::from_traceparent(header_str(&headers, &TRACEPARENT));
        RequestContext {
            request_id: request_id.into(),
            started: Instant::now(),
            headers,
            values: Map::new(),
            key_pin,
            key_filter: None,
            forward_headers: Vec::new(),
            extensions: http::Extensions::new(),
            stream_usage: UsageCell::default(),
            trace: RequestTrace::default(),
            target_index: 0,
            trace_context,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header_str(&self.headers, name)
    }

    /// Replaces the request headers (an HTTP pre-hook changed them); routing hints that come
    /// from headers follow.
    pub fn set_headers(&mut self, headers: HeaderMap) {
        self.key_pin = key_pin(&headers);
        self.headers = headers;
    }
}

fn key_pin(headers: &HeaderMap) -> Option<KeyPin> {
    header_str(headers, &API_KEY_ID)
        .map(|s| KeyPin::Id(s.to_owned()))
        .or_else(|| header_str(headers, &API_KEY_NAME).map(|s| KeyPin::Name(s.to_owned())))
}

// Looked up on every request: as `HeaderName`s they are not parsed from text each time.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const API_KEY_ID: HeaderName = HeaderName::from_static("x-bf-api-key-id");
const API_KEY_NAME: HeaderName = HeaderName::from_static("x-bf-api-key");

fn header_str(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<&str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}
