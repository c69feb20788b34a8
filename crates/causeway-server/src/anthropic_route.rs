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
    ChunkStream, GatewayError, LlmRequest, RawObject, RequestContext, RequestType,
};
use causeway_plugins::PluginChain;
use causeway_providers::anthropic::convert::{
    chat_response_to_messages, error_to_anthropic, messages_request_to_chat,
};
use causeway_providers::anthropic::stream::ChatToMessagesStream;
use futures_util::StreamExt;
use http::{HeaderValue, header};
use serde_json::{Map, Value};

use crate::inference::{Door, decode_object, run_llm};
use crate::observe::StreamTap;
use crate::state::AppState;

pub async fn messages(State(st): State<Arc<AppState>>, req: axum::extract::Request) -> Response {
    run_llm(st, Door::Anthropic, req).await
}

/// A Messages API body to the internal request (via the OpenAI shape).
pub fn decode(st: &AppState, bytes: &[u8]) -> Result<LlmRequest, GatewayError> {
    let req: Map<String, Value> = serde_json::from_slice(bytes)
        .map_err(|e| GatewayError::bad_request(format!("Invalid request body: {e}")))?;
    let chat = messages_request_to_chat(&req).map_err(|e| {
        let err = GatewayError::bad_request(e.message.clone());
        match e.param {
            Some(p) => err.with_param(p),
            None => err,
        }
    })?;
    let raw = RawObject::from_map(&chat).map_err(|e| GatewayError::internal(e.to_string()))?;
    decode_object(st, RequestType::ChatCompletion, raw)
}

/// An OpenAI chat completion body to a Messages API body.
pub fn encode_complete(body: &[u8]) -> Result<Bytes, GatewayError> {
    let converted = serde_json::from_slice::<Value>(body)
        .map_err(|e| e.to_string())
        .and_then(|v| chat_response_to_messages(&v).map_err(|e| e.message));
    match converted {
        Ok(v) => Ok(Bytes::from(v.to_string())),
        Err(msg) => Err(GatewayError::new(
            502,
            causeway_core::ErrorClass::ProviderServerError,
            format!("could not translate the provider's answer: {msg}"),
        )),
    }
}

pub fn stream_response(
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
        conv: ChatToMessagesStream,
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
        conv: ChatToMessagesStream::new(),
        done: false,
        tap,
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
                                st.tap.error(&mut st.ctx, &e);
                                return Some((Ok::<Bytes, std::io::Error>(error_event(&e)), st));
                            }
                        }
                    } else {
                        chunk
                    };
                    st.tap.chunk(&mut st.ctx, &chunk);
                    match serde_json::from_slice::<Value>(&chunk) {
                        Ok(v) => st.conv.on_chunk(&v),
                        Err(_) => continue,
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    st.tap.error(&mut st.ctx, &e);
                    return Some((Ok(error_event(&e)), st));
                }
                None => {
                    st.done = true;
                    st.tap.end(&mut st.ctx);
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
pub fn error_body(e: &GatewayError, request_id: &str) -> Bytes {
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
    Bytes::from(v.to_string())
}
