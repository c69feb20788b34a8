//! OpenAI and every OpenAI-compatible provider: the body is forwarded as sent (only `model`
//! is rewritten), responses and stream chunks pass through without re-encoding.

use bytes::Bytes;
use causeway_core::{GatewayError, LlmRequest, RawObject};
use futures_util::StreamExt;
use http::{HeaderValue, Method, Request, header};
use http_body_util::Full;

use crate::pool::Pool;
use crate::upstream::{self, Endpoint};
use crate::{ProviderOutput, invalid_upstream_json};

pub async fn execute(
    pool: &Pool,
    endpoint: &Endpoint,
    api_key: Option<&str>,
    request: &LlmRequest,
    model: &str,
    forward: &[(http::HeaderName, HeaderValue)],
) -> Result<ProviderOutput, GatewayError> {
    let force_usage = request.stream
        && endpoint.stream_usage_option
        && request.request_type != causeway_core::RequestType::Embedding
        && !request.wants_stream_usage();
    let body = encode_body(&request.body, model, request.stream, force_usage)?;
    let req = build(
        endpoint,
        Method::POST,
        request_path(request),
        api_key,
        Some(body),
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
        return Err(upstream::upstream_error(
            endpoint,
            status,
            &parts.headers,
            &bytes,
            upstream::openai_error_parts(&bytes),
        ));
    }
    if request.stream {
        let events = upstream::sse_events(
            body,
            endpoint.stream_idle_timeout,
            endpoint.provider.clone(),
        );
        let chunks = events
            .take_while(|ev| {
                let done = matches!(ev, Ok(e) if e.data.as_ref() == b"[DONE]");
                std::future::ready(!done)
            })
            .map(|ev| {
                let ev = ev?;
                if is_error_chunk(&ev.data) {
                    return Err(stream_error(&ev.data));
                }
                Ok(ev.data)
            });
        return Ok(ProviderOutput::Stream(Box::pin(chunks)));
    }
    let bytes = upstream::read_body(endpoint, body, started + endpoint.timeout).await?;
    if !causeway_core::json_check::is_json(&bytes) {
        return Err(invalid_upstream_json(&endpoint.provider));
    }
    Ok(ProviderOutput::Complete(bytes))
}

fn request_path(request: &LlmRequest) -> &'static str {
    // `api_base` already carries the `/v1` prefix, so strip it from the canonical path.
    let p = request.request_type.openai_path();
    p.strip_prefix("/v1").unwrap_or(p)
}

/// The upstream body: the caller's fields in their order, `model` first.
/// `force_usage` asks the upstream for stream usage the client did not request (the engine
/// hides that chunk from the client again).
fn encode_body(
    body: &RawObject,
    model: &str,
    stream: bool,
    force_usage: bool,
) -> Result<Bytes, GatewayError> {
    let encode_err =
        |e: serde_json::Error| GatewayError::internal(format!("encoding request: {e}"));
    let model = serde_json::to_string(model).map_err(encode_err)?;
    let stream_options = if force_usage {
        let mut opts = match body.get_as::<serde_json::Value>("stream_options") {
            Some(Ok(serde_json::Value::Object(m))) => m,
            _ => serde_json::Map::new(),
        };
        opts.insert("include_usage".into(), serde_json::Value::Bool(true));
        Some(serde_json::to_string(&opts).map_err(encode_err)?)
    } else {
        None
    };
    let options = stream_options.as_deref();
    // The caller's fields in place (keys are unique: parsing keeps the last of duplicates),
    // then what the gateway adds.
    let passed = body
        .iter()
        .filter(|(k, _)| *k != "model" && *k != "fallbacks")
        .map(|(k, v)| match (k, options) {
            ("stream_options", Some(o)) => (k, o),
            _ => (k, v.get()),
        });
    let add_stream = (stream && !body.contains_key("stream")).then_some(("stream", "true"));
    let add_options = options
        .filter(|_| !body.contains_key("stream_options"))
        .map(|o| ("stream_options", o));
    Ok(causeway_core::raw::encode_object(
        std::iter::once(("model", model.as_str()))
            .chain(passed)
            .chain(add_stream)
            .chain(add_options),
    ))
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
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        if let Some(key) = api_key.filter(|k| !k.is_empty()) {
            let mut bearer = String::with_capacity(7 + key.len());
            bearer.push_str("Bearer ");
            bearer.push_str(key);
            let value = upstream::secret_header(endpoint, &bearer)?;
            headers.insert(header::AUTHORIZATION, value);
        }
        Ok(())
    })
}

fn is_error_chunk(data: &[u8]) -> bool {
    let trimmed = data.trim_ascii_start();
    trimmed.starts_with(b"{\"error\"")
}

fn stream_error(data: &[u8]) -> GatewayError {
    let parts = upstream::openai_error_parts(data).unwrap_or_else(|| upstream::ErrorParts {
        message: "provider sent an error in the stream".to_owned(),
        ..Default::default()
    });
    let (t, c, m) = (parts.kind, parts.code, parts.message);
    let mut e = GatewayError::new(502, causeway_core::ErrorClass::ProviderServerError, m);
    if let Some(t) = t {
        e = e.with_error_type(t);
    }
    if let Some(c) = c {
        e = e.with_code(c);
    }
    e
}

/// `GET /v1/models` against an OpenAI-shaped upstream; ids are returned as the upstream has them.
pub async fn list_models(
    pool: &Pool,
    endpoint: &Endpoint,
    api_key: Option<&str>,
) -> Result<Vec<serde_json::Value>, GatewayError> {
    let req = build(endpoint, Method::GET, "/models", api_key, None, &[])?;
    let started = tokio::time::Instant::now();
    let resp = upstream::send(pool, endpoint, req).await?;
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    let bytes = upstream::read_body(endpoint, body, started + endpoint.timeout).await?;
    if !status.is_success() {
        return Err(upstream::upstream_error(
            endpoint,
            status,
            &parts.headers,
            &bytes,
            upstream::openai_error_parts(&bytes),
        ));
    }
    #[derive(serde::Deserialize)]
    struct List {
        #[serde(default)]
        data: Vec<serde_json::Value>,
    }
    let list: List =
        serde_json::from_slice(&bytes).map_err(|_| invalid_upstream_json(&endpoint.provider))?;
    Ok(list.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_rewrites_model_and_drops_fallbacks() {
        let body = RawObject::from_slice(
            br#"{"messages":[],"fallbacks":["a/b"],"model":"openai/x","temperature":0.2,"custom_field":{"a":1}}"#,
        )
        .unwrap();
        let out = encode_body(&body, "gpt-4o", false, false).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "gpt-4o");
        assert!(v.get("fallbacks").is_none());
        assert_eq!(v["custom_field"]["a"], 1);
        assert!(out.starts_with(br#"{"model":"gpt-4o""#));
    }

    #[test]
    fn body_adds_stream_and_usage_option_keeping_the_callers_order() {
        let body = RawObject::from_slice(
            br#"{"model":"o/x","messages":[ {"role":"user"} ],"stream_options":{"a":1},"n":2}"#,
        )
        .unwrap();
        let out = encode_body(&body, "gpt-4o", true, true).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"model":"gpt-4o","messages":[ {"role":"user"} ],"stream_options":{"a":1,"include_usage":true},"n":2,"stream":true}"#
        );
        let body = RawObject::from_slice(br#"{"messages":[],"stream":true}"#).unwrap();
        let out = encode_body(&body, "m\"q", true, true).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"model":"m\"q","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#
        );
        let out = encode_body(&body, "m", false, false).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"model":"m","messages":[],"stream":true}"#
        );
    }

    #[test]
    fn error_chunk_detection() {
        assert!(is_error_chunk(br#" {"error":{"message":"x"}}"#));
        assert!(!is_error_chunk(br#"{"id":"c","choices":[]}"#));
    }
}
