//! Builds the `RequestRecord` of a finished request and hands it to observer plugins
//! (logging, telemetry, otel). Runs after the answer is written (for streams: when the
//! stream ends or the client goes away), never on the client's clock.

use std::sync::Arc;
use std::time::SystemTime;

use causeway_core::{
    GatewayError, LlmRequest, Outcome, RequestContext, RequestRecord, RouteInfo, Usage,
};
use causeway_plugins::PluginChain;
use serde_json::{Map, Value};

use crate::state::AppState;

/// Content kept per request and direction (bytes).
pub const MAX_CONTENT_BYTES: usize = 16 * 1024;

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
                let usage = Usage::from_openai_body(body);
                let output = self.keep_content.then(|| completion_text(body)).flatten();
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
    if s.len() <= MAX_CONTENT_BYTES {
        return s.to_owned();
    }
    let mut end = MAX_CONTENT_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[truncated {} bytes]", &s[..end], s.len() - end)
}

/// The assistant text of a chat/text completion body (for content logs).
fn completion_text(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let choice = v.get("choices")?.get(0)?;
    let text = choice
        .pointer("/message/content")
        .or_else(|| choice.get("text"))
        .and_then(Value::as_str)?;
    Some(truncate(text))
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
        let Ok(v) = serde_json::from_slice::<Value>(chunk) else {
            return;
        };
        let Some(choice) = v.get("choices").and_then(|c| c.get(0)) else {
            return;
        };
        let piece = choice
            .pointer("/delta/content")
            .or_else(|| choice.get("text"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if self.text.len() + piece.len() > MAX_CONTENT_BYTES {
            self.truncated = true;
            self.text.push_str("…[truncated]");
        } else {
            self.text.push_str(piece);
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
