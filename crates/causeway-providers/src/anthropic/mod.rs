//! Anthropic Messages API support: pure conversions to and from the OpenAI Chat Completions shape.
//! `convert` owns whole requests, responses and error bodies; `stream` owns SSE event conversion.

pub mod convert;
pub mod stream;
