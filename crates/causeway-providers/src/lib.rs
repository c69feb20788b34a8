//! Provider adapters: one upstream attempt for an OpenAI-shaped request, per wire family
//! (OpenAI-compatible pass-through, Anthropic Messages translation), over one pooled client.
//! Routing, keys and retries are the engine's job, not this crate's.

pub mod anthropic;
pub mod http;
mod messages_api;
mod openai;
pub mod pool;
pub mod upstream;

use bytes::Bytes;
use causeway_config::Family;
use causeway_core::{ChunkStream, ErrorClass, GatewayError, LlmRequest};

pub use crate::http::ClientOptions;
pub use crate::upstream::Endpoint;

/// What one successful upstream attempt produced, in OpenAI shape.
pub enum ProviderOutput {
    Complete(Bytes),
    Stream(ChunkStream),
}

/// The provider layer: hands each attempt this thread's connection pool; cheap to clone.
#[derive(Clone)]
pub struct Providers {
    id: u64,
    opts: std::sync::Arc<ClientOptions>,
}

thread_local! {
    /// One pool per thread and `Providers`. Each upstream connection runs as its own task on
    /// the runtime that opened it; with a pool per thread, the connection serving a request
    /// lives on the request's own thread, so a round trip needs no cross-thread wake-ups (when
    /// each thread runs its own runtime; see `causeway --threads`).
    static POOLS: std::cell::RefCell<Vec<(u64, crate::pool::Pool)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Providers {
    pub fn new(opts: &ClientOptions) -> Self {
        Providers {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            opts: std::sync::Arc::new(opts.clone()),
        }
    }

    /// This thread's pool (built on first use).
    fn pool(&self) -> crate::pool::Pool {
        POOLS.with(|pools| {
            let mut pools = pools.borrow_mut();
            if let Some((_, p)) = pools.iter().find(|(id, _)| *id == self.id) {
                return p.clone();
            }
            let p = crate::pool::Pool::new(&self.opts);
            pools.push((self.id, p.clone()));
            p
        })
    }

    /// One attempt: `model` is the upstream model id (no provider prefix).
    pub async fn execute(
        &self,
        endpoint: &Endpoint,
        api_key: Option<&str>,
        request: &LlmRequest,
        model: &str,
        forward: &[(::http::HeaderName, ::http::HeaderValue)],
    ) -> Result<ProviderOutput, GatewayError> {
        match endpoint.family {
            Family::OpenAi => {
                openai::execute(&self.pool(), endpoint, api_key, request, model, forward).await
            }
            Family::Anthropic => {
                messages_api::execute(&self.pool(), endpoint, api_key, request, model, forward)
                    .await
            }
        }
    }

    /// Upstream model objects (OpenAI shape, upstream ids).
    pub async fn list_models(
        &self,
        endpoint: &Endpoint,
        api_key: Option<&str>,
    ) -> Result<Vec<serde_json::Value>, GatewayError> {
        match endpoint.family {
            Family::OpenAi => openai::list_models(&self.pool(), endpoint, api_key).await,
            Family::Anthropic => messages_api::list_models(&self.pool(), endpoint, api_key).await,
        }
    }
}

pub(crate) fn invalid_upstream_json(provider: &str) -> GatewayError {
    GatewayError::new(
        502,
        ErrorClass::ProviderServerError,
        format!("provider {provider} returned a body that is not valid JSON"),
    )
    .with_type("invalid_provider_response")
}
