//! The gateway's internal request and response for one LLM operation, in OpenAI wire shape:
//! what plugins see and modify, what the engine routes, what providers translate. The body
//! stays a `RawObject` so untouched fields are forwarded byte for byte.

use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use crate::error::GatewayError;
use crate::raw::RawObject;

/// Which operation a request performs; also the `extra_fields.request_type` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestType {
    ChatCompletion,
    TextCompletion,
    Embedding,
    ListModels,
}

impl RequestType {
    pub fn as_str(self, stream: bool) -> &'static str {
        match (self, stream) {
            (RequestType::ChatCompletion, false) => "chat_completion",
            (RequestType::ChatCompletion, true) => "chat_completion_stream",
            (RequestType::TextCompletion, false) => "text_completion",
            (RequestType::TextCompletion, true) => "text_completion_stream",
            (RequestType::Embedding, _) => "embedding",
            (RequestType::ListModels, _) => "list_models",
        }
    }

    /// Path under the provider's `/v1` for OpenAI-shaped upstreams.
    pub fn openai_path(self) -> &'static str {
        match self {
            RequestType::ChatCompletion => "/v1/chat/completions",
            RequestType::TextCompletion => "/v1/completions",
            RequestType::Embedding => "/v1/embeddings",
            RequestType::ListModels => "/v1/models",
        }
    }

    pub fn supports_stream(self) -> bool {
        matches!(
            self,
            RequestType::ChatCompletion | RequestType::TextCompletion
        )
    }
}

/// `provider/model` as written by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelRef {
    pub provider: String,
    pub model: String,
}

impl ModelRef {
    /// Splits at the first `/`: `openrouter/anthropic/claude` is provider `openrouter`.
    pub fn parse(s: &str) -> Option<ModelRef> {
        let (provider, model) = s.split_once('/')?;
        if provider.is_empty() || model.is_empty() {
            return None;
        }
        Some(ModelRef {
            provider: provider.to_owned(),
            model: model.to_owned(),
        })
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)
    }
}

/// One LLM request after decoding: routing target plus the OpenAI-shaped body.
/// `body` never contains `model` or `fallbacks`; providers add the upstream model name.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    pub request_type: RequestType,
    pub provider: String,
    pub model: String,
    pub fallbacks: Vec<ModelRef>,
    pub stream: bool,
    pub body: RawObject,
}

impl LlmRequest {
    pub fn type_str(&self) -> &'static str {
        self.request_type.as_str(self.stream)
    }

    /// `stream_options.include_usage` as the client asked.
    pub fn wants_stream_usage(&self) -> bool {
        #[derive(Deserialize)]
        struct StreamOptions {
            include_usage: Option<bool>,
        }
        matches!(
            self.body.get_as::<Option<StreamOptions>>("stream_options"),
            Some(Ok(Some(StreamOptions {
                include_usage: Some(true)
            })))
        )
    }
}

/// Token usage in OpenAI terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    /// Reads `usage` from an OpenAI-shaped body without parsing the rest of it.
    pub fn from_openai_body(body: &[u8]) -> Option<Usage> {
        #[derive(Deserialize)]
        struct Body {
            usage: Option<OpenAiUsage>,
        }
        let b: Body = serde_json::from_slice(body).ok()?;
        b.usage.map(Usage::from)
    }
}

/// The `usage` object of an OpenAI body as sent, for parsers that read it together with other
/// fields of the same body (one pass instead of two).
#[derive(Debug, Deserialize)]
pub struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
    prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Debug, Deserialize)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: u64,
}

impl From<OpenAiUsage> for Usage {
    fn from(u: OpenAiUsage) -> Usage {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: if u.total_tokens == 0 {
                u.prompt_tokens + u.completion_tokens
            } else {
                u.total_tokens
            },
            cached_tokens: u.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
        }
    }
}

/// Which provider, model and key served a request (or failed it last).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteInfo {
    pub provider: String,
    pub model: String,
    pub key_id: Option<String>,
    pub is_fallback: bool,
    /// Upstream attempts made for this target, retries included.
    pub attempts: u32,
}

/// A stream of OpenAI-shaped chunk JSON objects (no SSE framing, no `[DONE]`).
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Bytes, GatewayError>> + Send>>;

pub enum LlmResponse {
    /// A complete OpenAI-shaped JSON body.
    Complete { body: Bytes, route: RouteInfo },
    Stream {
        chunks: ChunkStream,
        route: RouteInfo,
    },
}

impl LlmResponse {
    pub fn route(&self) -> &RouteInfo {
        match self {
            LlmResponse::Complete { route, .. } | LlmResponse::Stream { route, .. } => route,
        }
    }
}

impl fmt::Debug for LlmResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LlmResponse::Complete { body, route } => f
                .debug_struct("Complete")
                .field("bytes", &body.len())
                .field("route", route)
                .finish(),
            LlmResponse::Stream { route, .. } => {
                f.debug_struct("Stream").field("route", route).finish()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ref_splits_at_first_slash() {
        let m = ModelRef::parse("openrouter/anthropic/claude-3").unwrap();
        assert_eq!(m.provider, "openrouter");
        assert_eq!(m.model, "anthropic/claude-3");
        assert!(ModelRef::parse("gpt-4o").is_none());
        assert!(ModelRef::parse("/gpt").is_none());
        assert!(ModelRef::parse("openai/").is_none());
    }

    #[test]
    fn usage_reads_only_usage() {
        let u = Usage::from_openai_body(
            br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":1}}}"#,
        )
        .unwrap();
        assert_eq!(u.total_tokens, 5);
        assert_eq!(u.cached_tokens, 1);
        assert!(Usage::from_openai_body(br#"{"id":"x"}"#).is_none());
    }

    #[test]
    fn include_usage() {
        let body = RawObject::from_slice(br#"{"stream_options":{"include_usage":true}}"#).unwrap();
        let req = LlmRequest {
            request_type: RequestType::ChatCompletion,
            provider: "openai".into(),
            model: "m".into(),
            fallbacks: vec![],
            stream: true,
            body,
        };
        assert!(req.wants_stream_usage());
    }
}
