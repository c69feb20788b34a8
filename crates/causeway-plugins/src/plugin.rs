//! The `Plugin` trait: Bifrost's hook points as methods that default to "do nothing", so a
//! plugin implements only what it needs; `hooks()` says which ones it has (that gives `types`).

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use causeway_core::{GatewayError, LlmRequest, LlmResponse, RequestContext, RequestRecord};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which hooks a plugin implements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookSet {
    pub http_pre: bool,
    pub http_post: bool,
    pub stream_chunk: bool,
    pub pre_llm: bool,
    pub post_llm: bool,
    /// Receives the finished `RequestRecord` (logs, metrics, traces).
    pub observe: bool,
}

impl HookSet {
    /// `status.types`: `llm` for pre/post LLM hooks, `http` for the HTTP hooks.
    pub fn types(&self) -> Vec<&'static str> {
        let mut t = Vec::new();
        if self.pre_llm || self.post_llm || self.observe {
            t.push("llm");
        }
        if self.http_pre || self.http_post || self.stream_chunk {
            t.push("http");
        }
        t
    }
}

/// The HTTP request as HTTP hooks see it (before decoding).
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    /// Header names keep the client's casing where known (lower-case from HTTP/2).
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub body: Bytes,
}

/// A response produced by a plugin or about to be sent to the client.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

pub enum HttpPreOutcome {
    Continue,
    /// Answer the client directly; later plugins and the provider are skipped.
    Respond(HttpResponse),
    /// Reject the request on purpose (e.g. a guard).
    Reject(GatewayError),
}

pub enum PreLlmOutcome {
    Continue,
    /// Skip the provider: answer with this response or error.
    ShortCircuit(Result<LlmResponse, GatewayError>),
}

pub enum ChunkOutcome {
    /// Send this chunk (possibly modified).
    Send(Bytes),
    /// Drop this chunk.
    Skip,
    /// End the stream with this error.
    End(GatewayError),
}

/// An unexpected plugin failure: logged and ignored, never turned into a caller error.
#[derive(Debug, Clone)]
pub struct PluginFailure(pub String);

pub trait Plugin: Send + Sync {
    /// The name the plugin reports for itself (`actualName`).
    fn name(&self) -> &str;

    fn hooks(&self) -> HookSet;

    fn http_pre<'a>(
        &'a self,
        _ctx: &'a mut RequestContext,
        _req: &'a mut HttpRequest,
    ) -> BoxFuture<'a, Result<HttpPreOutcome, PluginFailure>> {
        Box::pin(async { Ok(HttpPreOutcome::Continue) })
    }

    fn http_post<'a>(
        &'a self,
        _ctx: &'a mut RequestContext,
        _req: &'a HttpRequest,
        _resp: &'a mut HttpResponse,
    ) -> BoxFuture<'a, Result<(), PluginFailure>> {
        Box::pin(async { Ok(()) })
    }

    fn pre_llm<'a>(
        &'a self,
        _ctx: &'a mut RequestContext,
        _req: &'a mut LlmRequest,
    ) -> BoxFuture<'a, Result<PreLlmOutcome, PluginFailure>> {
        Box::pin(async { Ok(PreLlmOutcome::Continue) })
    }

    /// May replace the response or the error, or recover an error into a response.
    fn post_llm<'a>(
        &'a self,
        _ctx: &'a mut RequestContext,
        _result: &'a mut Result<LlmResponse, GatewayError>,
    ) -> BoxFuture<'a, Result<(), PluginFailure>> {
        Box::pin(async { Ok(()) })
    }

    /// Called per stream chunk (OpenAI chunk JSON); synchronous because it is on the
    /// per-chunk hot path.
    fn stream_chunk(
        &self,
        _ctx: &mut RequestContext,
        chunk: Bytes,
    ) -> Result<ChunkOutcome, PluginFailure> {
        Ok(ChunkOutcome::Send(chunk))
    }

    /// Called once per request after the answer (or the stream) is over, with what happened.
    /// Must return quickly: copy what is needed and hand it to a background task.
    fn observe(&self, _record: &std::sync::Arc<RequestRecord>) {}

    /// Called when the plugin is removed or replaced.
    fn cleanup(&self) -> BoxFuture<'_, Result<(), PluginFailure>> {
        Box::pin(async { Ok(()) })
    }
}
