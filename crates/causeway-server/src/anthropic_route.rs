//! `/anthropic/v1/messages`: the Anthropic Messages API as a front door, so the official
//! Anthropic SDKs work against the gateway with any provider behind it. The request is
//! translated into the OpenAI shape, runs the same engine and plugins as `/v1`, and the
//! answer (or stream) is translated back. Errors use Anthropic's error shape.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use causeway_core::{
    ChunkStream, GatewayError, LlmResponse, RawObject, RequestContext, RequestType,
};
use causeway_plugins::PluginChain;
use causeway_providers::anthropic::convert::{
    chat_response_to_messages, error_to_anthropic, messages_request_to_chat,
};
use causeway_providers::anthropic::stream::ChatToMessagesStream;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value};

use crate::body::read_limited;
use crate::inference::{decode_object, forward_headers, request_id};
use crate::state::AppState;

pub async fn messages(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let request_id = request_id(&headers);
    let limit_mb = st.client.load().max_request_body_size_mb;
    let bytes = match read_limited(body, limit_mb).await {
        Ok(b) => b,
        Err(e) => return anthropic_error(&e, &request_id),
    };
    let req: Map<String, Value> = match serde_json::from_slice(&bytes) {
        Ok(m) => m,
        Err(e) => {
            return anthropic_error(
                &GatewayError::bad_request(format!("Invalid request body: {e}")),
                &request_id,
            );
        }
    };
    let chat = match messages_request_to_chat(&req) {
        Ok(c) => c,
        Err(e) => {
            let mut err = GatewayError::bad_request(e.message.clone());
            if let Some(p) = e.param {
                err = err.with_param(p);
            }
            return anthropic_error(&err, &request_id);
        }
    };
    let raw = match RawObject::from_map(&chat) {
        Ok(r) => r,
        Err(e) => return anthropic_error(&GatewayError::internal(e.to_string()), &request_id),
    };
    let request = match decode_object(&st, RequestType::ChatCompletion, raw) {
        Ok(r) => r,
        Err(e) => return anthropic_error(&e, &request_id),
    };
    let chain = st.chain.load_full();
    let mut ctx = RequestContext::new(request_id.clone(), headers);
    ctx.forward_headers = forward_headers(&ctx.headers);
    match st.engine.execute(&mut ctx, &chain, request).await {
        Ok(LlmResponse::Complete { body, .. }) => {
            let converted = serde_json::from_slice::<Value>(&body)
                .map_err(|e| e.to_string())
                .and_then(|v| chat_response_to_messages(&v).map_err(|e| e.message));
            match converted {
                Ok(v) => json(StatusCode::OK, &v, &request_id),
                Err(msg) => anthropic_error(
                    &GatewayError::new(
                        502,
                        causeway_core::ErrorClass::ProviderServerError,
                        format!("could not translate the provider's answer: {msg}"),
                    ),
                    &request_id,
                ),
            }
        }
        Ok(LlmResponse::Stream { chunks, .. }) => stream_response(ctx, chain, chunks),
        Err(e) => anthropic_error(&e, &request_id),
    }
}

fn stream_response(ctx: RequestContext, chain: Arc<PluginChain>, chunks: ChunkStream) -> Response {
    let request_id = ctx.request_id.clone();
    let run_hooks = chain.hooks().stream_chunk;
    struct St {
        chunks: ChunkStream,
        ctx: RequestContext,
        chain: Arc<PluginChain>,
        conv: ChatToMessagesStream,
        done: bool,
    }
    let st = St {
        chunks,
        ctx,
        chain,
        conv: ChatToMessagesStream::new(),
        done: false,
    };
    let frames = futures_util::stream::unfold(st, move |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let next = st.chunks.next().await;
            let events = match next {
                Some(Ok(chunk)) => {
                    let chunk = if run_hooks {
                        match st.chain.run_stream_chunk(&mut st.ctx, chunk) {
                            Ok(Some(c)) => c,
                            Ok(None) => continue,
                            Err(e) => {
                                st.done = true;
                                return Some((Ok::<Bytes, std::io::Error>(error_event(&e)), st));
                            }
                        }
                    } else {
                        chunk
                    };
                    match serde_json::from_slice::<Value>(&chunk) {
                        Ok(v) => st.conv.on_chunk(&v),
                        Err(_) => continue,
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Ok(error_event(&e)), st));
                }
                None => {
                    st.done = true;
                    st.conv.finish()
                }
            };
            if events.is_empty() {
                if st.done {
                    return None;
                }
                continue;
            }
            let mut out = BytesMut::new();
            for (name, data) in events {
                out.put_slice(b"event: ");
                out.put_slice(name.as_bytes());
                out.put_slice(b"\ndata: ");
                out.put_slice(data.to_string().as_bytes());
                out.put_slice(b"\n\n");
            }
            return Some((Ok(out.freeze()), st));
        }
    });
    let mut resp = Response::new(Body::from_stream(frames));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("request-id", v.clone());
        h.insert("x-request-id", v);
    }
    resp
}

fn error_event(e: &GatewayError) -> Bytes {
    let data = error_to_anthropic(anthropic_error_type(e.status()), e.message());
    let mut out = BytesMut::new();
    out.put_slice(b"event: error\ndata: ");
    out.put_slice(data.to_string().as_bytes());
    out.put_slice(b"\n\n");
    out.freeze()
}

fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 409 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 | 503 => "overloaded_error",
        _ => "api_error",
    }
}

/// Anthropic's `{"type":"error","error":{"type","message"}}`, plus the Bifrost envelope's
/// `status_code`, `is_bifrost_error` and `extra_fields` for gateway-aware clients.
fn anthropic_error(e: &GatewayError, request_id: &str) -> Response {
    let mut v = error_to_anthropic(anthropic_error_type(e.status()), e.message());
    let env = e.to_envelope(Some(request_id));
    if let (Some(obj), Some(env)) = (v.as_object_mut(), env.as_object()) {
        for k in [
            "status_code",
            "is_bifrost_error",
            "extra_fields",
            "event_id",
        ] {
            if let Some(val) = env.get(k) {
                obj.insert(k.to_owned(), val.clone());
            }
        }
    }
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json(status, &v, request_id);
    if let Some(secs) = e.details().retry_after_secs
        && let Ok(hv) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, hv);
    }
    resp
}

fn json(status: StatusCode, v: &Value, request_id: &str) -> Response {
    let mut resp = Response::new(Body::from(v.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("request-id", v.clone());
        h.insert("x-request-id", v);
    }
    resp
}
