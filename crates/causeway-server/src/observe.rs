//! Builds the `RequestRecord` of a finished request and hands it to observer plugins
//! (logging, telemetry, otel). Runs after the answer is written (for streams: when the
//! stream ends or the client goes away), never on the client's clock.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use causeway_core::{
    GatewayError, LlmRequest, OpenAiUsage, Outcome, RequestContext, RequestRecord, RouteInfo, Usage,
};
use causeway_plugins::PluginChain;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::state::AppState;

/// Content captured per request and direction (bytes): the ceiling of what an observer may
/// keep (the `logging` plugin keeps 16 KiB unless configured otherwise).
pub const MAX_CONTENT_BYTES: usize = 64 * 1024;

/// What is known about a request before it runs; completed when it ends.
pub struct Observation {
    st: Arc<AppState>,
    chain: Arc<PluginChain>,
    route: String,
    started_at: SystemTime,
    request_type: &'static str,
    stream: bool,
    requested_provider: Option<String>,
    requested_model: Option<String>,
    input: Option<String>,
    keep_content: bool,
}

impl Observation {
    /// `None` when no observer plugin is active (nothing is collected then).
    pub fn start(
        st: &Arc<AppState>,
        chain: &Arc<PluginChain>,
        route: &str,
        ctx: &RequestContext,
    ) -> Option<Self> {
        if !chain.hooks().observe {
            return None;
        }
        let keep_content = !st.client.load().disable_content_logging.unwrap_or(false)
            && !ctx
                .header("x-bf-disable-content-logging")
                .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        Some(Observation {
            st: st.clone(),
            chain: chain.clone(),
            route: route.to_owned(),
            started_at: SystemTime::now() - ctx.started.elapsed(),
            request_type: "unknown",
            stream: false,
            requested_provider: None,
            requested_model: None,
            input: None,
            keep_content,
        })
    }

    /// Records the decoded request (before the engine may change it).
    pub fn request(&mut self, req: &LlmRequest) {
        self.request_type = req.type_str();
        self.stream = req.stream;
        self.requested_provider = Some(req.provider.clone());
        self.requested_model = Some(format!("{}/{}", req.provider, req.model));
        if self.keep_content {
            let field = match req.request_type {
                causeway_core::RequestType::ChatCompletion => "messages",
                causeway_core::RequestType::TextCompletion => "prompt",
                causeway_core::RequestType::Embedding => "input",
                causeway_core::RequestType::ListModels => "",
            };
            self.input = req.body.get(field).map(|raw| truncate(raw.get()));
        }
    }

    pub fn keeps_content(&self) -> bool {
        self.keep_content
    }

    /// Completes the record and hands it to the observers.
    pub fn finish(self, ctx: &mut RequestContext, end: End<'_>) {
        let (outcome, status, error, route, usage, output) = match end {
            End::Complete { route, body } => {
                let (usage, output) = if self.keep_content {
                    completion_usage_and_text(body)
                } else {
                    (Usage::from_openai_body(body), None)
                };
                (
                    Outcome::Success,
                    200,
                    None,
                    Some(route.clone()),
                    usage,
                    output,
                )
            }
            End::Stream {
                route,
                cancelled,
                output,
            } => {
                let usage = ctx.stream_usage.lock().ok().and_then(|u| *u);
                let outcome = if cancelled {
                    Outcome::Cancelled
                } else {
                    Outcome::Success
                };
                (
                    outcome,
                    200,
                    None,
                    Some(route.clone()),
                    usage,
                    output.filter(|_| self.keep_content),
                )
            }
            End::StreamError {
                route,
                error,
                output,
            } => (
                Outcome::Error,
                error.status(),
                Some(error.clone()),
                Some(route.clone()),
                ctx.stream_usage.lock().ok().and_then(|u| *u),
                output.filter(|_| self.keep_content),
            ),
            End::Error(e) => (
                Outcome::Error,
                e.status(),
                Some(e.clone()),
                None,
                None,
                None,
            ),
        };
        let last_attempt = ctx.trace.attempts.last();
        let provider = route
            .as_ref()
            .map(|r| r.provider.clone())
            .or_else(|| last_attempt.map(|a| a.provider.clone()))
            .or_else(|| {
                error
                    .as_ref()
                    .and_then(|e| e.details().extra.provider.clone())
            })
            .or(self.requested_provider.clone());
        let model = route
            .as_ref()
            .map(|r| r.model.clone())
            .or_else(|| last_attempt.map(|a| a.model.clone()))
            .or_else(|| {
                error
                    .as_ref()
                    .and_then(|e| e.details().extra.resolved_model_used.clone())
            });
        let key_id = route
            .as_ref()
            .and_then(|r: &RouteInfo| r.key_id.clone())
            .or_else(|| last_attempt.and_then(|a| a.key_id.clone()));
        let cost = match (&usage, &provider, &model) {
            (Some(u), Some(p), Some(m)) => self.st.governance.pricing.cost(p, m, u),
            _ => None,
        };
        // A virtual key may turn content logging off for its calls (known only after the
        // governance pre-hook ran, so it is applied here rather than in `start`).
        let keep_content = self.keep_content
            && ctx
                .values
                .get(crate::governance::DISABLE_CONTENT_LOGGING)
                .and_then(Value::as_bool)
                != Some(true);
        let (input, output) = if keep_content {
            (self.input, output)
        } else {
            (None, None)
        };
        let value_str = |k: &str| ctx.values.get(k).and_then(Value::as_str).map(str::to_owned);
        let record = RequestRecord {
            request_id: ctx.request_id.clone(),
            started_at: self.started_at,
            started: ctx.started,
            ended: std::time::Instant::now(),
            route: self.route,
            request_type: self.request_type,
            stream: self.stream,
            requested_provider: self.requested_provider,
            requested_model: self.requested_model,
            provider,
            model,
            key_id,
            virtual_key_id: value_str("virtual_key_id"),
            team_id: value_str("team_id"),
            customer_id: value_str("customer_id"),
            outcome,
            status_code: status,
            error_type: error.as_ref().map(|e| {
                e.kind()
                    .map(str::to_owned)
                    .unwrap_or_else(|| e.class().as_str().to_owned())
            }),
            error_message: error.as_ref().map(|e| e.message().to_owned()),
            usage,
            cost,
            trace: std::mem::take(&mut ctx.trace),
            input,
            output,
            dimensions: dimensions(ctx),
            trace_context: ctx.trace_context,
        };
        self.chain.run_observe(&Arc::new(record));
    }
}

/// How a request ended.
pub enum End<'a> {
    Complete {
        route: &'a RouteInfo,
        body: &'a [u8],
    },
    Stream {
        route: &'a RouteInfo,
        cancelled: bool,
        output: Option<String>,
    },
    StreamError {
        route: &'a RouteInfo,
        error: &'a GatewayError,
        output: Option<String>,
    },
    Error(&'a GatewayError),
}

/// `x-bf-dim-<name>` (and the deprecated `x-bf-prom-<name>`) headers as dimensions.
fn dimensions(ctx: &RequestContext) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, value) in &ctx.headers {
        let n = name.as_str();
        let Some(dim) = n
            .strip_prefix("x-bf-dim-")
            .or_else(|| n.strip_prefix("x-bf-prom-"))
        else {
            continue;
        };
        if let Ok(v) = value.to_str()
            && !dim.is_empty()
            && out.len() < 32
        {
            out.insert(dim.to_owned(), Value::String(v.chars().take(256).collect()));
        }
    }
    out
}

pub fn truncate(s: &str) -> String {
    truncate_to(s, MAX_CONTENT_BYTES)
}

/// `s` cut to at most `max` bytes (on a character boundary) plus a marker saying how much
/// was cut.
pub fn truncate_to(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[truncated {} bytes]", &s[..end], s.len() - end)
}

/// Usage and the assistant text (cut for content logs) of a chat/text completion body, read
/// in one pass. A body whose `choices` cannot be read still gives its usage.
fn completion_usage_and_text(body: &[u8]) -> (Option<Usage>, Option<String>) {
    match parse_answer(body) {
        Some(a) => {
            let usage = a
                .usage
                .and_then(|raw| serde_json::from_str::<OpenAiUsage>(raw.get()).ok());
            (usage.map(Usage::from), a.text.map(|t| truncate(&t)))
        }
        None => (Usage::from_openai_body(body), None),
    }
}

/// The first choice's text (`message.content`, `delta.content` or `text`) of an OpenAI body
/// or stream chunk. Only those fields are parsed, and the text is borrowed when it has no
/// escapes: this runs for every logged request and every streamed chunk.
fn first_choice_text(json: &[u8]) -> Option<Cow<'_, str>> {
    parse_answer(json)?.text
}

struct Answer<'a> {
    text: Option<Cow<'a, str>>,
    /// Read apart, so a malformed `usage` loses only itself, as in `Usage::from_openai_body`.
    usage: Option<&'a RawValue>,
}

fn parse_answer(json: &[u8]) -> Option<Answer<'_>> {
    #[derive(Deserialize)]
    struct Body<'a> {
        #[serde(borrow, default)]
        choices: Vec<Choice<'a>>,
        #[serde(borrow, default)]
        usage: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Choice<'a> {
        #[serde(borrow, default)]
        message: Option<Message<'a>>,
        #[serde(borrow, default)]
        delta: Option<Message<'a>>,
        #[serde(borrow, default)]
        text: Option<MaybeText<'a>>,
    }
    #[derive(Deserialize)]
    struct Message<'a> {
        #[serde(borrow, default)]
        content: Option<MaybeText<'a>>,
    }
    let body: Body<'_> = serde_json::from_slice(json).ok()?;
    let text = body.choices.into_iter().next().and_then(|choice| {
        choice
            .message
            .and_then(|m| m.content)
            .or_else(|| choice.delta.and_then(|m| m.content))
            .or(choice.text)
            .and_then(|t| t.0)
    });
    Some(Answer {
        text,
        usage: body.usage,
    })
}

/// A JSON value that is kept when it is a string and skipped (as `None`) otherwise, so an
/// array of content parts or a `null` does not fail the whole parse.
struct MaybeText<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for MaybeText<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = MaybeText<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MaybeText(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MaybeText(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(MaybeText(Some(Cow::Owned(v))))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(MaybeText(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MaybeText(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(MaybeText(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(MaybeText(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MaybeText(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(MaybeText(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(MaybeText(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Accumulates streamed delta text for content logs, bounded.
#[derive(Default)]
pub struct StreamText {
    text: String,
    truncated: bool,
}

impl StreamText {
    pub fn push_chunk(&mut self, chunk: &[u8]) {
        if self.truncated {
            return;
        }
        let Some(piece) = first_choice_text(chunk) else {
            return;
        };
        if self.text.len() + piece.len() > MAX_CONTENT_BYTES {
            self.truncated = true;
            self.text.push_str("…[truncated]");
        } else {
            self.text.push_str(&piece);
        }
    }

    pub fn finish(self) -> Option<String> {
        (!self.text.is_empty()).then_some(self.text)
    }
}

/// Observation of a streamed answer: counts chunks and timings as they pass, keeps the text
/// for content logs, and completes the record when the stream ends, fails, or is dropped.
pub struct StreamTap {
    obs: Option<(Observation, RouteInfo)>,
    text: Option<StreamText>,
}

impl StreamTap {
    pub fn new(obs: Option<Observation>, route: RouteInfo) -> Self {
        let text = obs
            .as_ref()
            .filter(|o| o.keeps_content())
            .map(|_| StreamText::default());
        StreamTap {
            obs: obs.map(|o| (o, route)),
            text,
        }
    }

    pub fn chunk(&mut self, ctx: &mut RequestContext, chunk: &[u8]) {
        if self.obs.is_none() {
            return;
        }
        ctx.trace.chunk_sent(std::time::Instant::now());
        if let Some(t) = &mut self.text {
            t.push_chunk(chunk);
        }
    }

    pub fn error(&mut self, ctx: &mut RequestContext, error: &GatewayError) {
        if let Some((o, route)) = self.obs.take() {
            let output = self.text.take().and_then(StreamText::finish);
            o.finish(
                ctx,
                End::StreamError {
                    route: &route,
                    error,
                    output,
                },
            );
        }
    }

    pub fn end(&mut self, ctx: &mut RequestContext) {
        self.close(ctx, false);
    }

    /// The client went away (the stream is dropped before its end).
    pub fn cancel(&mut self, ctx: &mut RequestContext) {
        self.close(ctx, true);
    }

    fn close(&mut self, ctx: &mut RequestContext, cancelled: bool) {
        if let Some((o, route)) = self.obs.take() {
            let output = self.text.take().and_then(StreamText::finish);
            o.finish(
                ctx,
                End::Stream {
                    route: &route,
                    cancelled,
                    output,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn usage_and_text_come_from_one_pass_and_fail_apart() {
        let usage = |p, c| Usage {
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: p + c,
            cached_tokens: 0,
        };
        assert_eq!(
            completion_usage_and_text(
                br#"{"choices":[{"message":{"content":"Hi"}}],"usage":{"prompt_tokens":2,"completion_tokens":1}}"#
            ),
            (Some(usage(2, 1)), Some("Hi".to_owned()))
        );
        // A malformed usage loses only the usage; unreadable choices lose only the text.
        assert_eq!(
            completion_usage_and_text(br#"{"choices":[{"text":"t"}],"usage":"lots"}"#),
            (None, Some("t".to_owned()))
        );
        assert_eq!(
            completion_usage_and_text(
                br#"{"choices":null,"usage":{"prompt_tokens":4,"completion_tokens":5}}"#
            ),
            (Some(usage(4, 5)), None)
        );
    }

    #[test]
    fn first_choice_text_reads_only_what_it_needs() {
        let t = |s: &str| first_choice_text(s.as_bytes()).map(|c| c.into_owned());
        assert_eq!(
            t(
                r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"Hi \"you\""},"finish_reason":"stop"}],"usage":{"total_tokens":3}}"#
            ),
            Some("Hi \"you\"".to_owned())
        );
        assert_eq!(
            t(r#"{"choices":[{"delta":{"content":"piece"}}]}"#),
            Some("piece".to_owned())
        );
        assert_eq!(
            t(r#"{"choices":[{"text":"legacy"}]}"#),
            Some("legacy".to_owned())
        );
        // Tool calls, null content, content parts, no choices, not JSON: no text, no error.
        assert_eq!(
            t(r#"{"choices":[{"message":{"content":null,"tool_calls":[{"id":"1"}]}}]}"#),
            None
        );
        assert_eq!(
            t(r#"{"choices":[{"message":{"content":[{"type":"text","text":"a"}]}}]}"#),
            None
        );
        assert_eq!(t(r#"{"choices":[]}"#), None);
        assert_eq!(t(r#"{"usage":{"total_tokens":3}}"#), None);
        assert_eq!(t("not json"), None);
    }

    #[test]
    fn stream_text_accumulates_and_caps() {
        let mut st = StreamText::default();
        st.push_chunk(br#"{"choices":[{"delta":{"role":"assistant"}}]}"#);
        st.push_chunk(br#"{"choices":[{"delta":{"content":"Hello "}}]}"#);
        st.push_chunk(br#"{"choices":[{"delta":{"content":"world"}}]}"#);
        st.push_chunk(br#"{"choices":[],"usage":{"total_tokens":3}}"#);
        assert_eq!(st.finish().as_deref(), Some("Hello world"));
        let mut st = StreamText::default();
        let big = "x".repeat(MAX_CONTENT_BYTES / 2 + 1);
        for _ in 0..3 {
            st.push_chunk(
                format!(r#"{{"choices":[{{"delta":{{"content":"{big}"}}}}]}}"#).as_bytes(),
            );
        }
        let out = st.finish().unwrap();
        assert!(out.ends_with("…[truncated]") && out.len() < MAX_CONTENT_BYTES + 32);
    }
}
