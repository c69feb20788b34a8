//! One request, top to bottom: route, read the body, record it, decide whether it fails, wait
//! the configured latency, then answer in the right API dialect. Nothing here holds a lock
//! across an `.await`; the config is an `Arc` snapshot taken once per request.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use crate::body::{MockBody, StreamPlan};
use crate::config::Snapshot;
use crate::reply::Reply;
use crate::request::InferenceRequest;
use crate::state::{RecordedRequest, Shared};
use crate::text::json_str;
use crate::{anthropic, openai};

/// Bodies above this are refused with 413; large enough for any realistic benchmark prompt.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
const ONE_SECOND: HeaderValue = HeaderValue::from_static("1");

/// The hyper service entry point.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, Infallible> {
    Ok(answer(&shared, req).await)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Api {
    OpenAi,
    Anthropic,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Chat,
    Completions,
    Embeddings,
    Messages,
    Models(Api),
    Health,
    Stats,
    NotFound(Api),
    WrongMethod(Api),
}

impl Route {
    fn resolve(method: &Method, path: &str, headers: &HeaderMap) -> Self {
        let api = if headers.contains_key("anthropic-version") {
            Api::Anthropic
        } else {
            Api::OpenAi
        };
        let (expected, route) = match path {
            "/v1/chat/completions" => (Method::POST, Self::Chat),
            "/v1/completions" => (Method::POST, Self::Completions),
            "/v1/embeddings" => (Method::POST, Self::Embeddings),
            "/v1/messages" => (Method::POST, Self::Messages),
            "/v1/models" => (Method::GET, Self::Models(api)),
            "/_mock/health" => (Method::GET, Self::Health),
            "/_mock/stats" => (Method::GET, Self::Stats),
            _ => return Self::NotFound(api),
        };
        if *method == expected {
            route
        } else {
            Self::WrongMethod(route.api())
        }
    }

    fn api(self) -> Api {
        match self {
            Self::Messages => Api::Anthropic,
            Self::Models(api) | Self::NotFound(api) | Self::WrongMethod(api) => api,
            Self::Chat | Self::Completions | Self::Embeddings | Self::Health | Self::Stats => {
                Api::OpenAi
            }
        }
    }

    /// Routes that `fail_first` and `failure_rate` apply to. Model listing is exempt so a
    /// gateway probing models at start-up does not consume a test's failure budget.
    fn is_inference(self) -> bool {
        matches!(
            self,
            Self::Chat | Self::Completions | Self::Embeddings | Self::Messages
        )
    }
}

async fn answer(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<MockBody> {
    let (parts, body) = req.into_parts();
    let route = Route::resolve(&parts.method, parts.uri.path(), &parts.headers);
    match route {
        Route::Health => return response(StatusCode::OK, TEXT, Bytes::from_static(b"ok")),
        Route::Stats => return response(StatusCode::OK, JSON, stats(shared)),
        _ => {}
    }
    let api = route.api();
    let (body, too_large) = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => (collected.to_bytes(), false),
        Err(e) => (Bytes::new(), e.is::<LengthLimitError>()),
    };

    let snapshot = shared.config.load_full();
    let key = api_key(&parts.headers, api);
    let seq = shared.begin_request();
    if snapshot.config.record_requests {
        shared.record(RecordedRequest {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| {
                    let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    (k.as_str().to_owned(), v)
                })
                .collect(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            api_key: key.map(str::to_owned),
        });
    }

    let behaviour = snapshot.behaviour_for(key);
    let latency = behaviour
        .and_then(|b| b.latency)
        .unwrap_or(snapshot.config.latency);
    // Decided before the latency wait so `fail_first` counts requests in arrival order.
    let verdict = judge(shared, &snapshot, route, key, &body, too_large);
    if latency > Duration::ZERO {
        tokio::time::sleep(latency).await;
    }
    match verdict {
        Err((status, message)) => error_response(api, status, &message),
        Ok(request) => success(shared, &snapshot, route, key, seq, &request),
    }
}

type Failure = (u16, String);

/// Applies the failure rules in their documented order: route, key status, unknown key,
/// body validity, `fail_first`, `failure_rate`.
fn judge(
    shared: &Shared,
    snapshot: &Snapshot,
    route: Route,
    key: Option<&str>,
    body: &[u8],
    too_large: bool,
) -> Result<InferenceRequest, Failure> {
    let config = &snapshot.config;
    match route {
        Route::NotFound(_) => return Err((404, "mock-provider: unknown route".to_owned())),
        Route::WrongMethod(_) => {
            return Err((405, "mock-provider: method not allowed".to_owned()));
        }
        _ => {}
    }
    let behaviour = snapshot.behaviour_for(key);
    if let Some(status) = behaviour.and_then(|b| b.status) {
        return Err((
            status,
            format!("mock-provider: status {status} configured for this API key"),
        ));
    }
    if config.require_known_key && behaviour.is_none() {
        let message = match key {
            Some(_) => "mock-provider: incorrect API key provided",
            None => "mock-provider: no API key provided",
        };
        return Err((401, message.to_owned()));
    }
    if !route.is_inference() {
        return Ok(InferenceRequest::default());
    }
    if too_large {
        return Err((413, "mock-provider: request body too large".to_owned()));
    }
    let request = serde_json::from_slice::<InferenceRequest>(body)
        .map_err(|e| (400, format!("mock-provider: invalid JSON body: {e}")))?;
    if shared.take_fail_first(config.fail_first) {
        return Err((
            config.failure_status,
            "mock-provider: injected failure (fail_first)".to_owned(),
        ));
    }
    if config.failure_rate > 0.0 && fastrand::f64() < config.failure_rate {
        return Err((
            config.failure_status,
            "mock-provider: injected failure (failure_rate)".to_owned(),
        ));
    }
    Ok(request)
}

fn success(
    shared: &Arc<Shared>,
    snapshot: &Snapshot,
    route: Route,
    key: Option<&str>,
    seq: u64,
    request: &InferenceRequest,
) -> Response<MockBody> {
    let model = json_str(request.model.as_deref().unwrap_or("mock-model"));
    let reply = Reply {
        id: seq,
        created: unix_now(),
        model,
        prompt_tokens: request.prompt_tokens(),
        text: snapshot.content_for(key),
        tool: match route {
            Route::Chat | Route::Messages => request.first_tool().map(json_str),
            _ => None,
        },
        tool_arguments: &snapshot.tool_arguments,
    };
    let config = &snapshot.config;
    let stream = || {
        StreamPlan::new(
            config.stream_chunks.max(1) + 6,
            config.stream_interval,
            config.stream_fail_after,
        )
    };
    match route {
        Route::Chat if request.streaming() => {
            let mut plan = stream();
            openai::chat_stream(&reply, request.include_usage(), &mut plan);
            sse(plan, config.stream_interval, shared)
        }
        Route::Chat => json(openai::chat_completion(&reply)),
        Route::Completions if request.streaming() => {
            let mut plan = stream();
            openai::text_completion_stream(&reply, request.include_usage(), &mut plan);
            sse(plan, config.stream_interval, shared)
        }
        Route::Completions => json(openai::text_completion(&reply)),
        Route::Embeddings => {
            let (inputs, tokens) = request.embedding_inputs();
            json(openai::embeddings(&reply.model, inputs, tokens))
        }
        Route::Messages if request.streaming() => {
            let mut plan = stream();
            anthropic::message_stream(&reply, &mut plan);
            sse(plan, config.stream_interval, shared)
        }
        Route::Messages => json(anthropic::message(&reply)),
        Route::Models(Api::Anthropic) => json(snapshot.anthropic_models.clone()),
        Route::Models(Api::OpenAi) => json(snapshot.openai_models.clone()),
        Route::Health | Route::Stats | Route::NotFound(_) | Route::WrongMethod(_) => {
            error_response(route.api(), 404, "mock-provider: unknown route")
        }
    }
}

/// The key the real API would authenticate: `Authorization: Bearer` for OpenAI,
/// `x-api-key` for Anthropic. Deliberately strict so a gateway sending the wrong header is caught.
fn api_key(headers: &HeaderMap, api: Api) -> Option<&str> {
    match api {
        Api::OpenAi => {
            let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
            let (scheme, key) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
        }
        Api::Anthropic => headers.get("x-api-key")?.to_str().ok().map(str::trim),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn stats(shared: &Shared) -> Bytes {
    let s = &shared.streams;
    Bytes::from(format!(
        r#"{{"requests":{},"streams_started":{},"streams_completed":{},"streams_cancelled":{},"streams_aborted":{}}}"#,
        shared.request_count(),
        s.started(),
        s.completed(),
        s.cancelled(),
        s.aborted()
    ))
}

fn response(status: StatusCode, content_type: HeaderValue, body: Bytes) -> Response<MockBody> {
    let mut res = Response::new(MockBody::full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, content_type);
    res
}

fn json(body: impl Into<Bytes>) -> Response<MockBody> {
    response(StatusCode::OK, JSON, body.into())
}

fn sse(plan: StreamPlan, interval: Duration, shared: &Arc<Shared>) -> Response<MockBody> {
    let mut res = Response::new(MockBody::Stream(
        plan.into_stream(interval, Arc::clone(shared)),
    ));
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, EVENT_STREAM);
    headers.insert(CACHE_CONTROL, NO_CACHE);
    res
}

fn error_response(api: Api, status: u16, message: &str) -> Response<MockBody> {
    let body = match api {
        Api::OpenAi => openai::error(status, message),
        Api::Anthropic => anthropic::error(status, message),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = response(status, JSON, Bytes::from(body));
    if status == StatusCode::TOO_MANY_REQUESTS {
        res.headers_mut().insert(RETRY_AFTER, ONE_SECOND);
    }
    res
}
