//! The behaviour knobs of the mock upstream (`MockConfig`, `KeyBehaviour`) and their compiled
//! form (`Snapshot`), built once per `set_config` so requests only splice prebuilt JSON pieces.
//! No I/O and no per-request work lives here.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;

use crate::text::{json_str, split_even, words};

/// How the mock upstream behaves. Swap it at run time with [`crate::MockServer::set_config`].
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// Delay before the response headers of every API response (errors included).
    pub latency: Duration,
    /// Number of content chunks in a streamed answer (0 is treated as 1).
    pub stream_chunks: usize,
    /// Pause between consecutive content chunks of a stream.
    pub stream_interval: Duration,
    /// The assistant text; split evenly across stream chunks.
    pub content: String,
    /// Fraction (0..=1) of inference requests answered with `failure_status`.
    pub failure_rate: f64,
    /// Status used by `failure_rate` and `fail_first`.
    pub failure_status: u16,
    /// The first N inference requests (across all keys) fail with `failure_status`.
    pub fail_first: usize,
    /// In streams, abort the connection after this many content chunks.
    pub stream_fail_after: Option<usize>,
    /// Per API key overrides, by key value.
    pub key_behaviours: HashMap<String, KeyBehaviour>,
    /// Answer 401 to any key (or no key) not listed in `key_behaviours`.
    pub require_known_key: bool,
    /// Model ids listed by `GET /v1/models`.
    pub models: Vec<String>,
    /// Store every request for [`crate::MockServer::requests`]; counters run either way.
    pub record_requests: bool,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            stream_chunks: 8,
            stream_interval: Duration::ZERO,
            content: "Hello from mock-provider".to_owned(),
            failure_rate: 0.0,
            failure_status: 500,
            fail_first: 0,
            stream_fail_after: None,
            key_behaviours: HashMap::new(),
            require_known_key: false,
            models: ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]
                .map(str::to_owned)
                .to_vec(),
            record_requests: true,
        }
    }
}

/// Overrides applied to requests carrying one specific API key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyBehaviour {
    /// Always answer this error status (in the API's error shape).
    pub status: Option<u16>,
    /// Replaces `MockConfig::latency` for this key.
    pub latency: Option<Duration>,
    /// Replaces `MockConfig::content` for this key.
    pub content: Option<String>,
}

/// A text answer, pre-rendered as JSON string literals.
pub(crate) struct PreparedText {
    /// The whole text as a JSON string literal.
    pub(crate) json: String,
    /// Whitespace word count, the mock's token count.
    pub(crate) words: usize,
    /// One JSON string literal per stream chunk.
    pub(crate) pieces: Vec<String>,
}

impl PreparedText {
    fn new(text: &str, chunks: usize) -> Self {
        Self {
            json: json_str(text),
            words: words(text),
            pieces: split_even(text, chunks).into_iter().map(json_str).collect(),
        }
    }
}

/// The arguments the mock "calls" every tool with.
pub(crate) const TOOL_ARGUMENTS: &str = r#"{"mock":true}"#;

/// `MockConfig` plus everything derivable from it ahead of time.
pub(crate) struct Snapshot {
    pub(crate) config: MockConfig,
    pub(crate) content: PreparedText,
    key_content: HashMap<String, PreparedText>,
    pub(crate) tool_arguments: PreparedText,
    pub(crate) openai_models: Bytes,
    pub(crate) anthropic_models: Bytes,
}

impl Snapshot {
    pub(crate) fn new(config: MockConfig) -> Self {
        let chunks = config.stream_chunks;
        let key_content = config
            .key_behaviours
            .iter()
            .filter_map(|(key, b)| {
                let text = b.content.as_deref()?;
                Some((key.clone(), PreparedText::new(text, chunks)))
            })
            .collect();
        let openai_models = json!({
            "object": "list",
            "data": config.models.iter().map(|id| json!({
                "id": id, "object": "model", "created": 1_700_000_000, "owned_by": "mock"
            })).collect::<Vec<_>>(),
        });
        let anthropic_models = json!({
            "data": config.models.iter().map(|id| json!({
                "type": "model", "id": id, "display_name": id,
                "created_at": "2024-01-01T00:00:00Z"
            })).collect::<Vec<_>>(),
            "has_more": false,
            "first_id": config.models.first(),
            "last_id": config.models.last(),
        });
        Self {
            content: PreparedText::new(&config.content, chunks),
            key_content,
            tool_arguments: PreparedText::new(TOOL_ARGUMENTS, chunks),
            openai_models: Bytes::from(openai_models.to_string()),
            anthropic_models: Bytes::from(anthropic_models.to_string()),
            config,
        }
    }

    /// The answer text for a request made with `key`.
    pub(crate) fn content_for(&self, key: Option<&str>) -> &PreparedText {
        key.and_then(|k| self.key_content.get(k))
            .unwrap_or(&self.content)
    }

    pub(crate) fn behaviour_for(&self, key: Option<&str>) -> Option<&KeyBehaviour> {
        key.and_then(|k| self.config.key_behaviours.get(k))
    }
}
