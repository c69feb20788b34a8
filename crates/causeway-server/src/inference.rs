//! OpenAI-compatible inference routes (`/v1/*`, also under `/openai`): the request lifecycle
//! top to bottom in `run_llm` — read body, HTTP pre-hooks, decode, engine (PreLLM, provider,
//! PostLLM), then either a JSON answer (HTTP post-hooks) or an SSE stream (chunk hooks).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use causeway_core::{
    ChunkStream, GatewayError, LlmRequest, LlmResponse, ModelRef, RawObject, RequestContext,
    RequestType,
};
use causeway_plugins::{HttpRequest, HttpResponse, PluginChain};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};

use crate::body::read_limited;
use crate::error::{error_response, json_response};
use crate::observe::{End, Observation, StreamTap};
use crate::state::AppState;

pub async fn chat_completions(
    State(st): State<Arc<AppState>>,
    req: axum::extract::Request,
) -> Response {
    run_llm(st, Door::OpenAi(RequestType::ChatCompletion), req).await
}

pub async fn completions(State(st): State<Arc<AppState>>, req: axum::extract::Request) -> Response {
    run_llm(st, Door::OpenAi(RequestType::TextCompletion), req).await
}

pub async fn embeddings(State(st): State<Arc<AppState>>, req: axum::extract::Request) -> Response {
    run_llm(st, Door::OpenAi(RequestType::Embedding), req).await
}

#[derive(serde::Deserialize)]
pub struct ModelsQuery {
    provider: Option<String>,
}

pub async fn list_models(
    State(st): State<Arc<AppState>>,
    Query(q): Query<ModelsQuery>,
    req: axum::extract::Request,
) -> Response {
    let headers = req.headers();
    let request_id = request_id(headers);
    let caller = match crate::auth::inference_caller(&st, headers, peer_of(&req)).await {
        Ok(c) => c,
        Err(e) => return crate::auth::with_challenge(error_response(&e, Some(&request_id))),
    };
    let result = match &caller.virtual_key {
        // A virtual key sees only the providers it may use.
        Some(vk) => {
            let snap = st.governance.snapshot.load();
            let allowed: Vec<String> = st
                .providers
                .load()
                .iter()
                .map(|p| p.name.clone())
                .filter(|p| snap.provider_allowed(vk.lookup(), p).unwrap_or(false))
                .collect();
            match q.provider.as_deref().filter(|p| !p.is_empty()) {
                Some(p) if !allowed.iter().any(|a| a == p) => Err(GatewayError::forbidden(
                    format!("Provider '{p}' is not allowed for this virtual key"),
                )
                .with_type("provider_blocked")),
                Some(p) => st.engine.list_models(Some(p)).await,
                None => st.engine.list_models_of(&allowed).await,
            }
        }
        None => {
            st.engine
                .list_models(q.provider.as_deref().filter(|p| !p.is_empty()))
                .await
        }
    };
    match result {
        Ok(data) => json_response(
            StatusCode::OK,
            &serde_json::json!({"object": "list", "data": data}),
        ),
        Err(e) => error_response(
            &e.with_request_info("list_models", q.provider.as_deref().unwrap_or(""), "", ""),
            Some(&request_id),
        ),
    }
}

/// The client's address, recorded by the accept loop.
pub fn peer_of(req: &axum::extract::Request) -> Option<std::net::IpAddr> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// `x-request-id` from the caller, else a fresh UUID.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            // A v4 UUID from a thread-local PRNG: unique enough for ids, no syscall per request.
            // Encoded directly: `to_string` would go through the formatting machinery.
            let mut buf = uuid::Uuid::encode_buffer();
            uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes())
                .into_uuid()
                .hyphenated()
                .encode_lower(&mut buf)
                .to_owned()
        })
}

/// The API a request came in through: decides how the body is decoded and how answers,
/// streams and errors are encoded. Everything in between is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    OpenAi(RequestType),
    Anthropic,
}

impl Door {
    fn decode(self, st: &AppState, bytes: &[u8]) -> Result<LlmRequest, GatewayError> {
        match self {
            Door::OpenAi(kind) => decode(st, kind, bytes),
            Door::Anthropic => crate::anthropic_route::decode(st, bytes),
        }
    }

    fn encode_complete(self, body: Bytes) -> Result<Bytes, GatewayError> {
        match self {
            Door::OpenAi(_) => Ok(body),
            Door::Anthropic => crate::anthropic_route::encode_complete(&body),
        }
    }

    fn stream(
        self,
        ctx: RequestContext,
        chain: Arc<PluginChain>,
        chunks: ChunkStream,
        tap: StreamTap,
    ) -> Response {
        match self {
            Door::OpenAi(_) => sse_response(ctx, chain, chunks, tap),
            Door::Anthropic => crate::anthropic_route::stream_response(ctx, chain, chunks, tap),
        }
    }

    fn error_body(self, e: &GatewayError, request_id: &str) -> Bytes {
        match self {
            Door::OpenAi(_) => Bytes::from(e.to_envelope_bytes(Some(request_id))),
            Door::Anthropic => crate::anthropic_route::error_body(e, request_id),
        }
    }

    fn error(self, e: &GatewayError, request_id: &str) -> Response {
        let mut resp = Response::new(Body::from(self.error_body(e, request_id)));
        *resp.status_mut() =
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        set_error_headers(h, e, request_id);
        resp
    }
}

fn set_error_headers(h: &mut HeaderMap, e: &GatewayError, request_id: &str) {
    if let Some(secs) = e.details().retry_after_secs
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        h.insert(header::RETRY_AFTER, v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
}

/// One LLM request through the whole pipeline, for any front door.
pub async fn run_llm(st: Arc<AppState>, door: Door, req: axum::extract::Request) -> Response {
    let peer = peer_of(&req);
    let (parts, body) = req.into_parts();
    // Inference routes are not nested (see `router`): `uri` is the path as sent.
    let (method, headers, uri) = (parts.method, parts.headers, parts.uri);
    let request_id = request_id(&headers);
    let limit_mb = st.client.load().max_request_body_size_mb;
    let bytes = match read_limited(body, limit_mb).await {
        Ok(b) => b,
        Err(e) => return door.error(&e, &request_id),
    };
    let caller = match crate::auth::inference_caller(&st, &headers, peer).await {
        Ok(c) => c,
        Err(e) => return crate::auth::with_challenge(door.error(&e, &request_id)),
    };
    let chain = st.chain.load_full();
    let mut ctx = RequestContext::new(request_id.clone(), headers);
    ctx.forward_headers = forward_headers(&ctx.headers);
    push_traceparent(&mut ctx, chain.hooks().observe);
    if let Some(vk) = caller.virtual_key {
        ctx.extensions.insert(vk);
    }

    let hooks = chain.hooks();
    let mut http_req = None;
    let mut bytes = bytes;
    if hooks.http_pre || hooks.http_post || hooks.stream_chunk {
        let mut hr = to_hook_request(&method, &uri, &ctx.headers, bytes);
        if hooks.http_pre {
            match chain.run_http_pre(&mut ctx, &mut hr).await {
                Ok(Some(resp)) => return hook_response(resp, &request_id),
                Ok(None) => {}
                Err(e) => return door.error(&e, &request_id),
            }
            // Header changes made by plugins count for routing and forwarding.
            let mut changed = HeaderMap::with_capacity(hr.headers.len());
            for (k, v) in &hr.headers {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(v),
                ) {
                    changed.append(n, v);
                }
            }
            ctx.set_headers(changed);
            ctx.forward_headers = forward_headers(&ctx.headers);
            push_traceparent(&mut ctx, chain.hooks().observe);
        }
        bytes = hr.body.clone();
        http_req = Some(hr);
    }

    let mut obs = Observation::start(&st, &chain, uri.path(), &ctx);
    let request = match door.decode(&st, &bytes) {
        Ok(r) => r,
        Err(e) => {
            if let Some(o) = obs {
                o.finish(&mut ctx, End::Error(&e));
            }
            return door.error(&e, &request_id);
        }
    };
    if let Some(o) = &mut obs {
        o.request(&request);
    }
    let result = st.engine.execute(&mut ctx, &chain, request).await;
    match (&result, obs.is_some()) {
        (Ok(LlmResponse::Complete { body, route }), true) => {
            if let Some(o) = obs.take() {
                o.finish(&mut ctx, End::Complete { route, body });
            }
        }
        (Err(e), true) => {
            if let Some(o) = obs.take() {
                o.finish(&mut ctx, End::Error(e));
            }
        }
        _ => {}
    }
    let (mut resp, error) = match result {
        Ok(LlmResponse::Stream { chunks, route }) => {
            return door.stream(ctx, chain, chunks, StreamTap::new(obs, route));
        }
        Ok(LlmResponse::Complete { body, .. }) => match door.encode_complete(body) {
            Ok(body) => (
                HttpResponse {
                    status: 200,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body,
                },
                None,
            ),
            Err(e) => return door.error(&e, &request_id),
        },
        Err(e) => {
            if !(http_req.is_some() && hooks.http_post) {
                return door.error(&e, &request_id);
            }
            (
                HttpResponse {
                    status: e.status(),
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: door.error_body(&e, &request_id),
                },
                Some(e),
            )
        }
    };
    if let (Some(hr), true) = (&http_req, hooks.http_post) {
        chain.run_http_post(&mut ctx, hr, &mut resp).await;
    }
    let mut out = hook_response(resp, &request_id);
    if let Some(e) = error {
        set_error_headers(out.headers_mut(), &e, &request_id);
    }
    out
}

/// Body to `LlmRequest`: checks the fields the operation needs, takes out `model`,
/// `fallbacks` and reads `stream`; everything else stays raw and is forwarded as sent.
pub fn decode(st: &AppState, kind: RequestType, bytes: &[u8]) -> Result<LlmRequest, GatewayError> {
    let body = RawObject::from_slice(bytes).map_err(|e| {
        GatewayError::bad_request(format!(
            "Invalid request body: {}",
            causeway_core::raw::describe_json_error(&e)
        ))
    })?;
    decode_object(st, kind, body)
}

/// The checks of `decode` on an already-parsed body (integration routes convert first).
pub fn decode_object(
    st: &AppState,
    kind: RequestType,
    mut body: RawObject,
) -> Result<LlmRequest, GatewayError> {
    let model = match body.get_as::<String>("model") {
        Some(Ok(m)) if !m.trim().is_empty() => m,
        Some(Ok(_)) | None => {
            return Err(GatewayError::bad_request(
                "model is required (format: provider/model, e.g. \"openai/gpt-4o-mini\")",
            )
            .with_param("model"));
        }
        Some(Err(_)) => {
            return Err(GatewayError::bad_request(
                "model must be a string like \"openai/gpt-4o-mini\"",
            )
            .with_param("model"));
        }
    };
    let required = match kind {
        RequestType::ChatCompletion => Some("messages"),
        RequestType::TextCompletion => Some("prompt"),
        RequestType::Embedding => Some("input"),
        RequestType::ListModels => None,
    };
    if let Some(field) = required {
        check_required(&body, field)?;
    }
    let fallbacks = match body.remove("fallbacks") {
        None => Vec::new(),
        Some(raw) => parse_fallbacks(raw.get())?,
    };
    body.remove("model");
    let stream = kind.supports_stream() && body.get_bool("stream") == Some(true);
    let target = st.engine.resolve_model(&model)?;
    Ok(LlmRequest {
        request_type: kind,
        provider: target.provider,
        model: target.model,
        fallbacks,
        stream,
        body,
    })
}

fn check_required(body: &RawObject, field: &str) -> Result<(), GatewayError> {
    let missing =
        || GatewayError::bad_request(format!("{field} is required")).with_param(field.to_owned());
    let raw = body.get(field).ok_or_else(missing)?;
    let text = raw.get().trim();
    if text == "null" || text == "\"\"" {
        return Err(missing());
    }
    if field == "messages" {
        // `text` is already-validated JSON, so its first byte says whether it is an array and
        // its second whether it is empty: no second pass over the conversation.
        let Some(inner) = text.strip_prefix('[') else {
            return Err(
                GatewayError::bad_request("messages must be an array of message objects")
                    .with_param("messages"),
            );
        };
        if inner.trim_start().starts_with(']') {
            return Err(
                GatewayError::bad_request("messages must contain at least one message")
                    .with_param("messages"),
            );
        }
    }
    Ok(())
}

fn parse_fallbacks(raw: &str) -> Result<Vec<ModelRef>, GatewayError> {
    let bad = || {
        GatewayError::bad_request(
            "fallbacks must be an array of \"provider/model\" strings, e.g. [\"anthropic/claude-3-5-haiku-latest\"]",
        )
        .with_param("fallbacks")
    };
    let list: Vec<String> = serde_json::from_str(raw).map_err(|_| bad())?;
    list.iter()
        .map(|s| ModelRef::parse(s).ok_or_else(bad))
        .collect()
}

/// Propagates the W3C trace to the provider, with the gateway's request span as parent,
/// when tracing is in play (the caller sent a `traceparent`, or an observer is active).
fn push_traceparent(ctx: &mut RequestContext, observed: bool) {
    if !observed && ctx.header("traceparent").is_none() {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.trace_context.traceparent()) {
        ctx.forward_headers
            .push((HeaderName::from_static("traceparent"), v));
    }
}

/// Headers never forwarded upstream, even if asked with `x-bf-eh-`.
const DENIED_FORWARD: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "x-api-key",
    "x-goog-api-key",
    "x-bf-api-key",
    "x-bf-api-key-id",
    "x-bf-vk",
];

/// `x-bf-eh-<name>: v` becomes `<name>: v` on the upstream request.
pub fn forward_headers(headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let Some(rest) = name.as_str().strip_prefix("x-bf-eh-") else {
            continue;
        };
        if rest.is_empty() || DENIED_FORWARD.contains(&rest) {
            continue;
        }
        if let Ok(n) = HeaderName::from_bytes(rest.as_bytes()) {
            out.push((n, value.clone()));
        }
    }
    out
}

fn to_hook_request(method: &Method, uri: &Uri, headers: &HeaderMap, body: Bytes) -> HttpRequest {
    HttpRequest {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        query: uri
            .query()
            .map(|q| {
                q.split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| match p.split_once('=') {
                        Some((k, v)) => (k.to_owned(), v.to_owned()),
                        None => (p.to_owned(), String::new()),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        body,
    }
}

fn hook_response(resp: HttpResponse, request_id: &str) -> Response {
    let mut out = Response::new(Body::from(resp.body));
    *out.status_mut() = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::OK);
    let h = out.headers_mut();
    for (k, v) in resp.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            h.append(n, v);
        }
    }
    if !h.contains_key(header::CONTENT_TYPE) {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    out
}

/// The SSE answer: one `data:` frame per chunk as soon as it arrives, `[DONE]` at the end,
/// or one error event if the upstream fails mid-stream. Dropping the body (client gone)
/// drops the upstream stream, which cancels the provider request.
pub fn sse_response(
    ctx: RequestContext,
    chain: Arc<PluginChain>,
    chunks: ChunkStream,
    tap: StreamTap,
) -> Response {
    let request_id = ctx.request_id.clone();
    let run_hooks = chain.hooks().stream_chunk;
    struct St {
        chunks: ChunkStream,
        ctx: RequestContext,
        chain: Arc<PluginChain>,
        done: bool,
        tap: StreamTap,
    }
    impl Drop for St {
        fn drop(&mut self) {
            self.tap.cancel(&mut self.ctx);
        }
    }
    let st = St {
        chunks,
        ctx,
        chain,
        done: false,
        tap,
    };
    let frames = futures_util::stream::unfold(st, move |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            match st.chunks.next().await {
                Some(Ok(chunk)) => {
                    let chunk = if run_hooks {
                        match st.chain.run_stream_chunk(&mut st.ctx, chunk) {
                            Ok(Some(c)) => c,
                            Ok(None) => continue,
                            Err(e) => {
                                st.done = true;
                                st.tap.error(&mut st.ctx, &e);
                                let frame = error_frame(&e, &st.ctx.request_id);
                                return Some((Ok::<Bytes, std::io::Error>(frame), st));
                            }
                        }
                    } else {
                        chunk
                    };
                    st.tap.chunk(&mut st.ctx, &chunk);
                    return Some((Ok(data_frame(&chunk)), st));
                }
                Some(Err(e)) => {
                    st.done = true;
                    st.tap.error(&mut st.ctx, &e);
                    let frame = error_frame(&e, &st.ctx.request_id);
                    return Some((Ok(frame), st));
                }
                None => {
                    st.done = true;
                    st.tap.end(&mut st.ctx);
                    return Some((Ok(Bytes::from_static(b"data: [DONE]\n\n")), st));
                }
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(frames));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-request-id", v);
    }
    resp
}

pub(crate) fn data_frame(chunk: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(chunk.len() + 8);
    b.put_slice(b"data: ");
    b.put_slice(chunk);
    b.put_slice(b"\n\n");
    b.freeze()
}

/// `data: {"error": <envelope + message>}`: the envelope for Bifrost clients, plus a
/// top-level `message` so OpenAI SDKs show the real reason.
fn error_frame(e: &GatewayError, request_id: &str) -> Bytes {
    let mut env = e.to_envelope(Some(request_id));
    if let Some(obj) = env.as_object_mut() {
        obj.insert(
            "message".into(),
            serde_json::Value::String(e.message().to_owned()),
        );
    }
    let payload = serde_json::json!({ "error": env });
    data_frame(payload.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_request_id_is_a_lowercase_v4_uuid_and_a_given_one_is_kept() {
        let a = request_id(&HeaderMap::new());
        let b = request_id(&HeaderMap::new());
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(a, parsed.hyphenated().to_string());
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("req-1"));
        assert_eq!(request_id(&h), "req-1");
    }

    #[test]
    fn forwards_only_prefixed_allowed_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-bf-eh-anthropic-beta", HeaderValue::from_static("x"));
        h.insert(
            "x-bf-eh-authorization",
            HeaderValue::from_static("Bearer y"),
        );
        h.insert("x-other", HeaderValue::from_static("z"));
        let f = forward_headers(&h);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].0.as_str(), "anthropic-beta");
    }

    #[test]
    fn fallbacks_must_be_provider_model() {
        assert_eq!(parse_fallbacks(r#"["a/b","c/d/e"]"#).unwrap().len(), 2);
        assert!(parse_fallbacks(r#"["nope"]"#).is_err());
        assert!(parse_fallbacks(r#""a/b""#).is_err());
    }
}
