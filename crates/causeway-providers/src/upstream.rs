//! One attempt against one upstream: the endpoint description the router hands in, sending
//! with deadlines, turning HTTP failures into `GatewayError`s with the right retry hint, and
//! reading SSE bodies into event streams with a per-chunk idle timeout.

use std::time::Duration;

use bytes::Bytes;
use causeway_config::Family;
use causeway_core::sse::{SseDecoder, SseEvent};
use causeway_core::{ErrorClass, GatewayError, RetryHint};
use futures_util::Stream;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::http::UpstreamResponse;
use crate::pool::{Pool, PoolError, PooledBody, Upstream};

/// Where and how to reach a provider; built from config when a snapshot is made.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub provider: String,
    pub family: Family,
    /// Origin plus api prefix, e.g. `https://api.openai.com/v1` (no trailing slash).
    pub api_base: String,
    /// `api_base` parsed (`Upstream::parse(&api_base)`): what requests are built against.
    pub upstream: Upstream,
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    pub timeout: Duration,
    pub stream_idle_timeout: Duration,
    /// The upstream accepts `stream_options.include_usage` (see the provider catalog).
    pub stream_usage_option: bool,
}

/// Largest non-streaming upstream body we accept (protects memory from a broken upstream).
const MAX_UPSTREAM_BODY: usize = 256 * 1024 * 1024;

/// Sends a request and waits for the response head, under the endpoint's timeout.
pub async fn send(
    pool: &Pool,
    endpoint: &Endpoint,
    req: Request<Full<Bytes>>,
) -> Result<UpstreamResponse, GatewayError> {
    match tokio::time::timeout(endpoint.timeout, pool.send(&endpoint.upstream, req)).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(connection_error(endpoint, &e)),
        Err(_) => Err(timeout_error(endpoint)),
    }
}

/// Reads a whole body under a deadline.
pub async fn read_body(
    endpoint: &Endpoint,
    body: PooledBody,
    deadline: tokio::time::Instant,
) -> Result<Bytes, GatewayError> {
    let limited = http_body_util::Limited::new(body, MAX_UPSTREAM_BODY);
    match tokio::time::timeout_at(deadline, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) => Err(GatewayError::new(
            502,
            ErrorClass::ProviderConnectionFailed,
            format!(
                "reading the response from {} failed: {e}",
                endpoint.provider
            ),
        )
        .with_type("provider_connection_failed")
        .with_retry(RetryHint::Backoff)),
        Err(_) => Err(timeout_error(endpoint)),
    }
}

pub fn connection_error(endpoint: &Endpoint, err: &PoolError) -> GatewayError {
    use std::error::Error as _;
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    GatewayError::new(
        502,
        ErrorClass::ProviderConnectionFailed,
        format!(
            "could not reach provider {} at {}: {msg}",
            endpoint.provider, endpoint.api_base
        ),
    )
    .with_type("provider_connection_failed")
    .with_retry(RetryHint::Backoff)
}

/// An upstream request to `path` under the endpoint's base URL. Headers, later ones winning:
/// the caller-forwarded ones, `Content-Type` when there is a body, the wire family's own
/// (`family_headers`: auth, version), then the operator's `extra_headers`.
pub fn build_request(
    endpoint: &Endpoint,
    method: Method,
    path: &str,
    body: Option<Bytes>,
    forward: &[(HeaderName, HeaderValue)],
    family_headers: impl FnOnce(&mut HeaderMap) -> Result<(), GatewayError>,
) -> Result<Request<Full<Bytes>>, GatewayError> {
    let uri = endpoint.upstream.uri(path).map_err(|_| {
        // The path is the gateway's own, so this is a gateway bug, not the caller's.
        GatewayError::internal(format!(
            "cannot build an upstream URL from {}{path}",
            endpoint.api_base
        ))
    })?;
    let has_body = body.is_some();
    let mut req = Request::new(Full::new(body.unwrap_or_default()));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    for (name, value) in forward {
        headers.insert(name.clone(), value.clone());
    }
    if has_body {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    family_headers(headers)?;
    for (name, value) in &endpoint.extra_headers {
        headers.insert(name.clone(), value.clone());
    }
    Ok(req)
}

/// A credential as a header value, marked sensitive so it is never logged.
pub fn secret_header(endpoint: &Endpoint, value: &str) -> Result<HeaderValue, GatewayError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        GatewayError::internal(format!(
            "an API key of provider {} contains characters not allowed in an HTTP header",
            endpoint.provider
        ))
    })?;
    v.set_sensitive(true);
    Ok(v)
}

pub fn timeout_error(endpoint: &Endpoint) -> GatewayError {
    GatewayError::new(
        504,
        ErrorClass::ProviderTimeout,
        format!(
            "request timed out after {} seconds waiting for provider {} (network_config.default_request_timeout_in_seconds)",
            endpoint.timeout.as_secs(),
            endpoint.provider
        ),
    )
    .with_type("request_timed_out")
    .with_retry(RetryHint::Backoff)
}

/// The fields of an upstream error body worth keeping: type, code, message, param.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorParts {
    pub kind: Option<String>,
    pub code: Option<String>,
    pub message: String,
    pub param: Option<String>,
}

/// The retry hint an upstream status implies.
pub fn retry_hint_for(status: u16) -> RetryHint {
    match status {
        401..=403 => RetryHint::RetireKey,
        429 => RetryHint::RotateKey,
        408 | 409 | 500..=599 => RetryHint::Backoff,
        _ => RetryHint::Never,
    }
}

/// Builds the error for a non-2xx upstream answer, keeping the upstream's type/code/message.
pub fn upstream_error(
    endpoint: &Endpoint,
    status: StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
    parts: Option<ErrorParts>,
) -> GatewayError {
    let code = status.as_u16();
    let ErrorParts {
        kind: etype,
        code: ecode,
        message,
        param,
    } = parts.unwrap_or_else(|| {
        let snippet = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        let msg = if snippet.trim().is_empty() {
            format!("provider {} answered HTTP {code}", endpoint.provider)
        } else {
            format!(
                "provider {} answered HTTP {code}: {}",
                endpoint.provider,
                snippet.trim()
            )
        };
        ErrorParts {
            message: msg,
            ..ErrorParts::default()
        }
    });
    let mut err = GatewayError::new(code, ErrorClass::from_upstream_status(code), message)
        .with_retry(retry_hint_for(code));
    if let Some(t) = etype {
        err = err.with_error_type(t);
    }
    if let Some(c) = ecode {
        err = err.with_code(c);
    }
    if let Some(p) = param {
        err = err.with_param(p);
    }
    if let Some(secs) = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        err = err.with_retry_after(secs);
    }
    err
}

/// OpenAI's `{"error":{"message","type","param","code"}}`, with `code` stringified.
pub fn openai_error_parts(body: &[u8]) -> Option<ErrorParts> {
    #[derive(serde::Deserialize)]
    struct Inner {
        message: Option<serde_json::Value>,
        #[serde(rename = "type")]
        kind: Option<String>,
        code: Option<serde_json::Value>,
        param: Option<serde_json::Value>,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum ErrorField {
        Obj(Box<Inner>),
        Text(String),
    }
    #[derive(serde::Deserialize)]
    struct Body {
        error: ErrorField,
    }
    let b: Body = serde_json::from_slice(body).ok()?;
    match b.error {
        ErrorField::Text(t) => Some(ErrorParts {
            message: t,
            ..ErrorParts::default()
        }),
        ErrorField::Obj(i) => Some(ErrorParts {
            kind: i.kind,
            code: i.code.and_then(value_to_string),
            message: i
                .message
                .and_then(value_to_string)
                .unwrap_or_else(|| "provider returned an error".to_owned()),
            param: i.param.and_then(value_to_string),
        }),
    }
}

fn value_to_string(v: serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// An upstream SSE body as a stream of events; a chunk gap longer than `idle` ends it with
/// a timeout error. Dropping the stream before the upstream's body ended closes the connection,
/// which cancels the upstream.
pub fn sse_events(
    body: PooledBody,
    idle: Duration,
    provider: String,
) -> impl Stream<Item = Result<SseEvent, GatewayError>> + Send {
    struct State {
        body: PooledBody,
        decoder: SseDecoder,
        pending: std::collections::VecDeque<SseEvent>,
        scratch: Vec<SseEvent>,
        done: bool,
        idle: Duration,
        provider: String,
    }
    let state = State {
        body,
        decoder: SseDecoder::new(),
        pending: std::collections::VecDeque::new(),
        scratch: Vec::new(),
        done: false,
        idle,
        provider,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop_front() {
                return Some((Ok(ev), st));
            }
            if st.done {
                return None;
            }
            match tokio::time::timeout(st.idle, st.body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        st.decoder.push(&data, &mut st.scratch);
                        st.pending.extend(st.scratch.drain(..));
                    }
                }
                Ok(None) => {
                    st.decoder.finish(&mut st.scratch);
                    st.pending.extend(st.scratch.drain(..));
                    st.done = true;
                }
                Ok(Some(Err(e))) => {
                    st.done = true;
                    let err = GatewayError::new(
                        502,
                        ErrorClass::ProviderConnectionFailed,
                        format!("stream from provider {} broke: {e}", st.provider),
                    )
                    .with_type("provider_connection_failed");
                    return Some((Err(err), st));
                }
                Err(_) => {
                    st.done = true;
                    let err = GatewayError::new(
                        504,
                        ErrorClass::ProviderTimeout,
                        format!(
                            "stream from provider {} sent nothing for {} seconds (network_config.stream_idle_timeout_in_seconds)",
                            st.provider,
                            st.idle.as_secs()
                        ),
                    )
                    .with_type("request_timed_out");
                    return Some((Err(err), st));
                }
            }
        }
    })
}
