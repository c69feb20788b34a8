//! Anthropic as an upstream: translates the OpenAI-shaped request with the pure functions of
//! `anthropic::convert`, calls the Messages API, and translates answers and stream events back.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use causeway_core::{ErrorClass, GatewayError, LlmRequest, RequestType};
use futures_util::StreamExt;
use http::{HeaderValue, Method, Request};
use http_body_util::Full;

use crate::anthropic::{convert, stream::MessagesToChatStream};
use crate::pool::Pool;
use crate::upstream::{self, Endpoint};
use crate::{ProviderOutput, invalid_upstream_json};

pub const ANTHROPIC_VERSION: &str = "2023-06-01";

pub async fn execute(
    pool: &Pool,
    endpoint: &Endpoint,
    api_key: Option<&str>,
    request: &LlmRequest,
    model: &str,
    forward: &[(http::HeaderName, HeaderValue)],
) -> Result<ProviderOutput, GatewayError> {
    if request.request_type != RequestType::ChatCompletion {
        return Err(GatewayError::bad_request(format!(
            "provider {} (Anthropic Messages API) does not support {} requests",
            endpoint.provider,
            request.request_type.as_str(false)
        ))
        .with_type("unsupported_operation"));
    }
    let mut map = request.body.to_map();
    if request.stream {
        map.insert("stream".into(), serde_json::Value::Bool(true));
    }
    let converted = convert::chat_request_to_messages(&map, model).map_err(|e| {
        let err = GatewayError::bad_request(e.message.clone());
        match e.param.clone() {
            Some(p) => err.with_param(p),
            None => err,
        }
    })?;
    let body = serde_json::to_vec(&converted)
        .map_err(|e| GatewayError::internal(format!("encoding Anthropic request: {e}")))?;
    let req = build(
        endpoint,
        Method::POST,
        "/messages",
        api_key,
        Some(Bytes::from(body)),
        forward,
    )?;
    let started = tokio::time::Instant::now();
    let resp = upstream::send(pool, endpoint, req).await?;
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    if !status.is_success() {
        let bytes = upstream::read_body(endpoint, body, started + endpoint.timeout)
            .await
            .unwrap_or_default();
        let parts_err =
            convert::anthropic_error_to_parts(&bytes).map(|(t, m)| upstream::ErrorParts {
                kind: Some(t),
                message: m,
                ..Default::default()
            });
        return Err(upstream::upstream_error(
            endpoint,
            status,
            &parts.headers,
            &bytes,
            parts_err,
        ));
    }
    let created = now_secs();
    if request.stream {
        // Always emit the usage chunk: the engine records it and hides it from clients that
        // did not ask for it.
        let mut conv = MessagesToChatStream::new(true, created);
        let events = upstream::sse_events(
            body,
            endpoint.stream_idle_timeout,
            endpoint.provider.clone(),
        );
        let chunks = events
            .map(move |ev| -> Vec<Result<Bytes, GatewayError>> {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => return vec![Err(e)],
                };
                let data: serde_json::Value = match serde_json::from_slice(&ev.data) {
                    Ok(v) => v,
                    Err(_) => return vec![Err(stream_decode_error())],
                };
                match conv.on_event(ev.event.as_deref().unwrap_or(""), &data) {
                    Ok(out) => out
                        .into_iter()
                        .map(|c| {
                            serde_json::to_vec(&c)
                                .map(Bytes::from)
                                .map_err(|_| stream_decode_error())
                        })
                        .collect(),
                    Err(e) => vec![Err(GatewayError::new(
                        502,
                        ErrorClass::ProviderServerError,
                        e.message,
                    )
                    .with_error_type(e.kind.unwrap_or_else(|| "api_error".to_owned())))],
                }
            })
            .flat_map(futures_util::stream::iter);
        return Ok(ProviderOutput::Stream(Box::pin(chunks)));
    }
    let bytes = upstream::read_body(endpoint, body, started + endpoint.timeout).await?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| invalid_upstream_json(&endpoint.provider))?;
    let chat = convert::messages_response_to_chat(&value, created).map_err(|e| {
        GatewayError::new(502, ErrorClass::ProviderServerError, e.message)
            .with_type("invalid_provider_response")
    })?;
    let out = serde_json::to_vec(&chat)
        .map_err(|e| GatewayError::internal(format!("encoding response: {e}")))?;
    Ok(ProviderOutput::Complete(Bytes::from(out)))
}

fn stream_decode_error() -> GatewayError {
    GatewayError::new(
        502,
        ErrorClass::ProviderServerError,
        "Anthropic sent a stream event that is not valid JSON",
    )
    .with_type("invalid_provider_response")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn build(
    endpoint: &Endpoint,
    method: Method,
    path: &str,
    api_key: Option<&str>,
    body: Option<Bytes>,
    forward: &[(http::HeaderName, HeaderValue)],
) -> Result<Request<Full<Bytes>>, GatewayError> {
    upstream::build_request(endpoint, method, path, body, forward, |headers| {
        headers.insert(
            "anthropic-version",
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        if let Some(key) = api_key.filter(|k| !k.is_empty()) {
            headers.insert("x-api-key", upstream::secret_header(endpoint, key)?);
        }
        Ok(())
    })
}

/// Anthropic's model list, reshaped as OpenAI model objects.
pub async fn list_models(
    pool: &Pool,
    endpoint: &Endpoint,
    api_key: Option<&str>,
) -> Result<Vec<serde_json::Value>, GatewayError> {
    let req = build(
        endpoint,
        Method::GET,
        "/models?limit=1000",
        api_key,
        None,
        &[],
    )?;
    let started = tokio::time::Instant::now();
    let resp = upstream::send(pool, endpoint, req).await?;
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    let bytes = upstream::read_body(endpoint, body, started + endpoint.timeout).await?;
    if !status.is_success() {
        let p = convert::anthropic_error_to_parts(&bytes).map(|(t, m)| upstream::ErrorParts {
            kind: Some(t),
            message: m,
            ..Default::default()
        });
        return Err(upstream::upstream_error(
            endpoint,
            status,
            &parts.headers,
            &bytes,
            p,
        ));
    }
    #[derive(serde::Deserialize)]
    struct Model {
        id: String,
        #[serde(default)]
        display_name: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct List {
        #[serde(default)]
        data: Vec<Model>,
    }
    let list: List =
        serde_json::from_slice(&bytes).map_err(|_| invalid_upstream_json(&endpoint.provider))?;
    Ok(list
        .data
        .into_iter()
        .map(|m| {
            serde_json::json!({
                "id": m.id,
                "object": "model",
                "created": 0,
                "owned_by": "anthropic",
                "name": m.display_name,
            })
        })
        .collect())
}
