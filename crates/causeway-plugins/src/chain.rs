//! `PluginChain`: the ordered, immutable list of enabled plugins one request runs through.
//! Pre hooks run in order, post hooks in reverse and only for plugins whose pre hook ran;
//! a plugin failure is recorded in its health and skipped, never surfaced to the caller.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;

use bytes::Bytes;
use causeway_core::{GatewayError, LlmRequest, LlmResponse, RequestContext};

use crate::plugin::{
    ChunkOutcome, HookSet, HttpPreOutcome, HttpRequest, HttpResponse, Plugin, PluginFailure,
    PreLlmOutcome,
};

/// Recent lifecycle lines and failure streak of one plugin; shared by the chain (writer) and
/// the registry (reader, for `status.logs` / `status.status`).
#[derive(Debug, Default)]
pub struct PluginHealth {
    inner: Mutex<HealthInner>,
}

#[derive(Debug, Default)]
struct HealthInner {
    logs: VecDeque<String>,
    consecutive_failures: u32,
}

const MAX_LOG_LINES: usize = 50;
/// Failures in a row after which the plugin's status shows `error`.
pub const ERROR_AFTER_FAILURES: u32 = 3;

impl PluginHealth {
    pub fn log(&self, line: impl Into<String>) {
        if let Ok(mut h) = self.inner.lock() {
            if h.logs.len() >= MAX_LOG_LINES {
                h.logs.pop_front();
            }
            h.logs.push_back(line.into());
        }
    }

    pub fn failure(&self, line: impl Into<String>) {
        let line = line.into();
        tracing::warn!(target: "causeway::plugins", "{line}");
        if let Ok(mut h) = self.inner.lock() {
            h.consecutive_failures = h.consecutive_failures.saturating_add(1);
            if h.logs.len() >= MAX_LOG_LINES {
                h.logs.pop_front();
            }
            h.logs.push_back(line);
        }
    }

    pub fn success(&self) {
        if let Ok(mut h) = self.inner.lock()
            && h.consecutive_failures != 0
        {
            h.consecutive_failures = 0;
        }
    }

    pub fn logs(&self) -> Vec<String> {
        self.inner
            .lock()
            .map(|h| h.logs.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn failing(&self) -> bool {
        self.inner
            .lock()
            .map(|h| h.consecutive_failures >= ERROR_AFTER_FAILURES)
            .unwrap_or(false)
    }
}

/// Hook timings feed traces; kept bounded so a long chain cannot grow a request's memory.
fn record_span(
    ctx: &mut RequestContext,
    e: &ChainEntry,
    hook: &'static str,
    start: std::time::Instant,
    failed: bool,
) {
    if ctx.trace.hooks.len() < 256 {
        ctx.trace.hooks.push(causeway_core::HookSpan {
            plugin: e.name.clone(),
            hook,
            start,
            end: std::time::Instant::now(),
            failed,
        });
    }
}

#[derive(Clone)]
pub struct ChainEntry {
    /// The configured (display) name.
    pub name: String,
    pub plugin: Arc<dyn Plugin>,
    pub hooks: HookSet,
    pub health: Arc<PluginHealth>,
}

#[derive(Clone, Default)]
pub struct PluginChain {
    entries: Vec<ChainEntry>,
    any: HookSet,
}

impl PluginChain {
    pub fn new(entries: Vec<ChainEntry>) -> Self {
        let mut any = HookSet::default();
        for e in &entries {
            any.http_pre |= e.hooks.http_pre;
            any.http_post |= e.hooks.http_post;
            any.stream_chunk |= e.hooks.stream_chunk;
            any.pre_llm |= e.hooks.pre_llm;
            any.post_llm |= e.hooks.post_llm;
            any.observe |= e.hooks.observe;
        }
        PluginChain { entries, any }
    }

    pub fn empty() -> Self {
        Self::default()
    }

    pub fn entries(&self) -> &[ChainEntry] {
        &self.entries
    }

    /// Which hooks at least one plugin has (lets the server skip work nobody needs).
    pub fn hooks(&self) -> HookSet {
        self.any
    }

    pub async fn run_http_pre(
        &self,
        ctx: &mut RequestContext,
        req: &mut HttpRequest,
    ) -> Result<Option<HttpResponse>, GatewayError> {
        for e in self.entries.iter().filter(|e| e.hooks.http_pre) {
            let (method, path) = (req.method.clone(), req.path.clone());
            let start = std::time::Instant::now();
            let out = e.plugin.http_pre(ctx, req).await;
            record_span(ctx, e, "http_pre_hook", start, out.is_err());
            match out {
                Ok(HttpPreOutcome::Continue) => e.health.success(),
                Ok(HttpPreOutcome::Respond(resp)) => {
                    e.health.success();
                    return Ok(Some(resp));
                }
                Ok(HttpPreOutcome::Reject(err)) => {
                    e.health.success();
                    return Err(err);
                }
                Err(PluginFailure(msg)) => {
                    e.health
                        .failure(format!("plugin {} http_pre_hook failed: {msg}", e.name));
                }
            }
            if req.method != method || req.path != path {
                // Routing already happened on method/path; a change would be silently ignored.
                return Err(GatewayError::conflict(format!(
                    "request method/path was modified by plugin {}",
                    e.name
                )));
            }
        }
        Ok(None)
    }

    pub async fn run_http_post(
        &self,
        ctx: &mut RequestContext,
        req: &HttpRequest,
        resp: &mut HttpResponse,
    ) {
        for e in self.entries.iter().rev().filter(|e| e.hooks.http_post) {
            let start = std::time::Instant::now();
            let out = e.plugin.http_post(ctx, req, resp).await;
            record_span(ctx, e, "http_post_hook", start, out.is_err());
            match out {
                Ok(()) => e.health.success(),
                Err(PluginFailure(msg)) => e
                    .health
                    .failure(format!("plugin {} http_post_hook failed: {msg}", e.name)),
            }
        }
    }

    /// Runs PreLLM hooks in order. Returns a short-circuit result if a plugin produced one,
    /// and how many plugins ran (the post hooks of exactly those run later).
    pub async fn run_pre_llm(
        &self,
        ctx: &mut RequestContext,
        req: &mut LlmRequest,
    ) -> (Option<Result<LlmResponse, GatewayError>>, usize) {
        for (i, e) in self.entries.iter().enumerate() {
            if !e.hooks.pre_llm {
                continue;
            }
            let start = std::time::Instant::now();
            let out = e.plugin.pre_llm(ctx, req).await;
            record_span(ctx, e, "pre_hook", start, out.is_err());
            match out {
                Ok(PreLlmOutcome::Continue) => e.health.success(),
                Ok(PreLlmOutcome::ShortCircuit(result)) => {
                    e.health.success();
                    return (Some(result), i + 1);
                }
                Err(PluginFailure(msg)) => e
                    .health
                    .failure(format!("plugin {} pre_hook failed: {msg}", e.name)),
            }
        }
        (None, self.entries.len())
    }

    /// Runs PostLLM hooks in reverse over the first `ran` plugins.
    pub async fn run_post_llm(
        &self,
        ctx: &mut RequestContext,
        ran: usize,
        mut result: Result<LlmResponse, GatewayError>,
    ) -> Result<LlmResponse, GatewayError> {
        let ran = ran.min(self.entries.len());
        for e in self.entries[..ran].iter().rev() {
            if !e.hooks.post_llm {
                continue;
            }
            let start = std::time::Instant::now();
            let out = e.plugin.post_llm(ctx, &mut result).await;
            record_span(ctx, e, "post_hook", start, out.is_err());
            match out {
                Ok(()) => e.health.success(),
                Err(PluginFailure(msg)) => e
                    .health
                    .failure(format!("plugin {} post_hook failed: {msg}", e.name)),
            }
        }
        result
    }

    /// Hands the finished record to every observer plugin.
    pub fn run_observe(&self, record: &Arc<causeway_core::RequestRecord>) {
        for e in self.entries.iter().filter(|e| e.hooks.observe) {
            e.plugin.observe(record);
        }
    }

    /// Runs stream-chunk hooks in reverse order (as post hooks do).
    pub fn run_stream_chunk(
        &self,
        ctx: &mut RequestContext,
        chunk: Bytes,
    ) -> Result<Option<Bytes>, GatewayError> {
        let mut chunk = chunk;
        for e in self.entries.iter().rev().filter(|e| e.hooks.stream_chunk) {
            match e.plugin.stream_chunk(ctx, chunk.clone()) {
                Ok(ChunkOutcome::Send(c)) => {
                    e.health.success();
                    chunk = c;
                }
                Ok(ChunkOutcome::Skip) => {
                    e.health.success();
                    return Ok(None);
                }
                Ok(ChunkOutcome::End(err)) => {
                    e.health.success();
                    return Err(err);
                }
                Err(PluginFailure(msg)) => e.health.failure(format!(
                    "plugin {} http_stream_chunk_hook failed: {msg}",
                    e.name
                )),
            }
        }
        Ok(Some(chunk))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;
    use causeway_core::{RawObject, RequestType, RouteInfo};

    use super::*;
    use crate::plugin::{BoxFuture, PreLlmOutcome};

    /// Records its hook calls into a shared journal; optionally short-circuits.
    struct Probe {
        name: &'static str,
        journal: Arc<Mutex<Vec<String>>>,
        short_circuit: bool,
        fail: bool,
    }

    impl Plugin for Probe {
        fn name(&self) -> &str {
            self.name
        }
        fn hooks(&self) -> HookSet {
            HookSet {
                pre_llm: true,
                post_llm: true,
                ..HookSet::default()
            }
        }
        fn pre_llm<'a>(
            &'a self,
            _ctx: &'a mut RequestContext,
            _req: &'a mut LlmRequest,
        ) -> BoxFuture<'a, Result<PreLlmOutcome, PluginFailure>> {
            Box::pin(async move {
                self.journal
                    .lock()
                    .unwrap()
                    .push(format!("pre:{}", self.name));
                if self.fail {
                    return Err(PluginFailure("boom".into()));
                }
                if self.short_circuit {
                    return Ok(PreLlmOutcome::ShortCircuit(Ok(LlmResponse::Complete {
                        body: Bytes::from_static(b"{}"),
                        route: RouteInfo::default(),
                    })));
                }
                Ok(PreLlmOutcome::Continue)
            })
        }
        fn post_llm<'a>(
            &'a self,
            _ctx: &'a mut RequestContext,
            _result: &'a mut Result<LlmResponse, GatewayError>,
        ) -> BoxFuture<'a, Result<(), PluginFailure>> {
            Box::pin(async move {
                self.journal
                    .lock()
                    .unwrap()
                    .push(format!("post:{}", self.name));
                Ok(())
            })
        }
    }

    fn chain(
        specs: &[(&'static str, bool, bool)],
        journal: &Arc<Mutex<Vec<String>>>,
    ) -> PluginChain {
        PluginChain::new(
            specs
                .iter()
                .map(|(name, short, fail)| {
                    let p = Probe {
                        name,
                        journal: journal.clone(),
                        short_circuit: *short,
                        fail: *fail,
                    };
                    ChainEntry {
                        name: (*name).to_owned(),
                        hooks: p.hooks(),
                        plugin: Arc::new(p),
                        health: Arc::default(),
                    }
                })
                .collect(),
        )
    }

    fn request() -> LlmRequest {
        LlmRequest {
            request_type: RequestType::ChatCompletion,
            provider: "openai".into(),
            model: "m".into(),
            fallbacks: vec![],
            stream: false,
            body: RawObject::new(),
        }
    }

    #[tokio::test]
    async fn post_hooks_run_in_reverse_for_plugins_whose_pre_ran() {
        let journal = Arc::new(Mutex::new(Vec::new()));
        let c = chain(
            &[("a", false, false), ("b", true, false), ("c", false, false)],
            &journal,
        );
        let mut ctx = RequestContext::new("r", http::HeaderMap::new());
        let mut req = request();
        let (short, ran) = c.run_pre_llm(&mut ctx, &mut req).await;
        assert!(short.is_some());
        let result = c.run_post_llm(&mut ctx, ran, short.unwrap()).await;
        assert!(result.is_ok());
        // c never saw the request, so its post hook does not run.
        assert_eq!(
            *journal.lock().unwrap(),
            ["pre:a", "pre:b", "post:b", "post:a"]
        );
    }

    #[tokio::test]
    async fn a_failing_plugin_is_skipped_and_recorded() {
        let journal = Arc::new(Mutex::new(Vec::new()));
        let c = chain(&[("a", false, true), ("b", false, false)], &journal);
        let mut ctx = RequestContext::new("r", http::HeaderMap::new());
        let mut req = request();
        for _ in 0..ERROR_AFTER_FAILURES {
            let (short, ran) = c.run_pre_llm(&mut ctx, &mut req).await;
            assert!(short.is_none());
            assert_eq!(ran, 2);
        }
        let health = &c.entries()[0].health;
        assert!(health.failing());
        assert!(health.logs().iter().any(|l| l.contains("boom")));
        assert!(!c.entries()[1].health.failing());
    }
}
