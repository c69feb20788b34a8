//! Provider adapters: one upstream attempt for an OpenAI-shaped request, per wire family
//! (OpenAI-compatible pass-through, Anthropic Messages translation), over one pooled client.
//! Routing, keys and retries are the engine's job, not this crate's.

pub mod anthropic;
pub mod http;
mod messages_api;
mod openai;
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

/// The provider layer: holds the shared HTTP client; cheap to clone.
#[derive(Clone)]
pub struct Providers {
    client: crate::http::HttpClient,
}

impl Providers {
    pub fn new(opts: &ClientOptions) -> Self {
        Providers {
            client: crate::http::build_client(opts),
        }
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
                openai::execute(&self.client, endpoint, api_key, request, model, forward).await
            }
            Family::Anthropic => {
                messages_api::execute(&self.client, endpoint, api_key, request, model, forward)
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
            Family::OpenAi => openai::list_models(&self.client, endpoint, api_key).await,
            Family::Anthropic => messages_api::list_models(&self.client, endpoint, api_key).await,
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
