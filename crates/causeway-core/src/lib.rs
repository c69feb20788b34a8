//! Causeway's shared vocabulary: the error envelope, the internal LLM request/response,
//! the raw JSON object that forwards unknown fields untouched, the JSON validity check of
//! upstream answers, and the SSE decoder.
//! No I/O lives here.

pub mod context;
pub mod error;
pub mod json_check;
pub mod llm;
pub mod raw;
pub mod record;
pub mod secret;
pub mod sse;

pub use context::{KeyPin, RequestContext, UsageCell};
pub use error::{ErrorClass, ExtraFields, GatewayError, RetryHint};
pub use llm::{
    ChunkStream, LlmRequest, LlmResponse, ModelRef, OpenAiUsage, RequestType, RouteInfo, Usage,
};
pub use raw::RawObject;
pub use record::{AttemptSpan, HookSpan, Outcome, RequestRecord, RequestTrace, TraceContext};
