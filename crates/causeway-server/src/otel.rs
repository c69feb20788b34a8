//! The `otel` built-in: OpenTelemetry traces of every request, exported as OTLP/HTTP JSON to a
//! collector, with the GenAI semantic conventions.
//!
//! Per request: a SERVER span for the request (its ids come from the request's W3C trace
//! context, so it continues the caller's `traceparent`, and it is the parent the provider sees
//! in the `traceparent` Causeway forwards), a CLIENT child span per upstream attempt and an
//! INTERNAL child span per plugin hook call. Requests whose caller sent an unsampled
//! `traceparent` (flags `00`) are not exported.
//!
//! Off the hot path: `observe` only puts the record on a bounded queue (`try_send`; when full
//! the record is dropped and counted). A background task turns records into spans, batches
//! them (`batch_size` spans or every `flush_interval_ms`) and POSTs them with a timeout. A
//! collector that is down or slow costs requests nothing: failed batches are counted (see
//! [`OtelStats`], shown in `/metrics` while the telemetry plugin is on) and logged at most
//! once a minute.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use causeway_core::record::hex;
use causeway_core::{Outcome, RequestRecord};
use causeway_plugins::{BoxFuture, HookSet, LoadError, Plugin, PluginFailure};
use causeway_providers::http::{HttpClient, build_client};
use http::{HeaderName, HeaderValue, Uri};
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::telemetry::parse_config;

/// How long `cleanup` waits for the final flush before abandoning it.
const CLEANUP_WAIT: Duration = Duration::from_secs(5);
/// Export failures are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

const SPAN_KIND_INTERNAL: u8 = 1;
const SPAN_KIND_SERVER: u8 = 2;
const SPAN_KIND_CLIENT: u8 = 3;
const STATUS_ERROR: u8 = 2;

/// Exporter counters, in spans. Owned by the gateway's `TelemetryHub`, so they keep growing
/// across reloads of the `otel` plugin.
#[derive(Debug, Default)]
pub struct OtelStats {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    /// Live exporter instances (normally 0 or 1; 2 briefly during a reload).
    exporters: AtomicUsize,
}

impl OtelStats {
    /// Spans the collector accepted.
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    /// Spans dropped because the export queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Spans in batches the collector refused or that could not be delivered.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Appends the counters to a Prometheus text exposition, once an exporter ran.
    pub fn render_into(&self, out: &mut String) {
        let (e, d, f) = (self.exported(), self.dropped(), self.failed());
        if self.exporters.load(Ordering::Relaxed) == 0 && e == 0 && d == 0 && f == 0 {
            return;
        }
        for (name, help, v) in [
            (
                "causeway_otel_spans_exported_total",
                "Spans accepted by the OTLP collector.",
                e,
            ),
            (
                "causeway_otel_spans_dropped_total",
                "Spans dropped because the export queue was full.",
                d,
            ),
            (
                "causeway_otel_spans_failed_total",
                "Spans whose export to the OTLP collector failed.",
                f,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            ));
        }
    }
}

// ---- configuration --------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtelConfig {
    collector_url: String,
    #[serde(default = "default_service_name")]
    service_name: String,
    /// Sent with every export; a value `env.NAME` is read from the environment.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "default_protocol")]
    protocol: String,
    #[serde(default = "default_batch_size")]
    batch_size: usize,
    #[serde(default = "default_flush_interval_ms")]
    flush_interval_ms: u64,
    /// Requests waiting to be exported (each becomes 1 + attempts + hooks spans).
    #[serde(default = "default_queue_capacity")]
    queue_capacity: usize,
    #[serde(default = "default_trace_type")]
    trace_type: String,
    #[serde(default = "default_export_timeout_ms")]
    export_timeout_ms: u64,
}

fn default_service_name() -> String {
    "causeway".to_owned()
}
fn default_protocol() -> String {
    "http/json".to_owned()
}
fn default_batch_size() -> usize {
    256
}
fn default_flush_interval_ms() -> u64 {
    1000
}
fn default_queue_capacity() -> usize {
    4096
}
fn default_trace_type() -> String {
    "genai_extension".to_owned()
}
fn default_export_timeout_ms() -> u64 {
    5000
}

fn invalid(field: &str, reason: impl std::fmt::Display) -> LoadError {
    LoadError::InvalidConfig(format!("{field}: {reason}"))
}

/// `http(s)://host[:port][/base]` -> the traces endpoint (`/v1/traces` appended unless present).
fn traces_endpoint(url: &str) -> Result<Uri, LoadError> {
    let uri: Uri = url
        .trim()
        .parse()
        .map_err(|e| invalid("collector_url", format!("not a URL ({e})")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(invalid(
                "collector_url",
                "must start with http:// or https:// (OTLP over HTTP, e.g. http://localhost:4318)",
            ));
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(invalid("collector_url", "has no host"));
    };
    let path = uri.path().trim_end_matches('/');
    let path = if path.ends_with("/v1/traces") {
        path.to_owned()
    } else {
        format!("{path}/v1/traces")
    };
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    Uri::builder()
        .scheme(uri.scheme_str().unwrap_or("http"))
        .authority(authority.as_str())
        .path_and_query(pq)
        .build()
        .map_err(|e| invalid("collector_url", e))
}

/// The settings the export task runs with.
struct Exporter {
    endpoint: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    service_name: String,
    batch_size: usize,
    flush_interval: Duration,
    timeout: Duration,
    client: HttpClient,
    stats: Arc<OtelStats>,
    last_logged: Option<Instant>,
}

// ---- the plugin -------------------------------------------------------------------------------

/// The `otel` built-in.
pub struct OtelPlugin {
    queue: mpsc::Sender<Arc<RequestRecord>>,
    stats: Arc<OtelStats>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl OtelPlugin {
    /// Checks the config and starts the export task (needs a Tokio runtime).
    pub fn from_config(config: &Value, stats: &Arc<OtelStats>) -> Result<Self, LoadError> {
        let cfg: OtelConfig = parse_config(config)?;
        let endpoint = traces_endpoint(&cfg.collector_url)?;
        match cfg.protocol.as_str() {
            "http" | "http/json" | "json" => {}
            other => {
                return Err(invalid(
                    "protocol",
                    format!(
                        "{other:?} is not supported: Causeway exports OTLP over HTTP with JSON encoding; use \"http/json\" (collectors accept it on /v1/traces)"
                    ),
                ));
            }
        }
        match cfg.trace_type.as_str() {
            "genai_extension" => {}
            "vercel" | "open_inference" => tracing::warn!(
                trace_type = %cfg.trace_type,
                "otel: only the genai_extension trace type is implemented; exporting GenAI semantic conventions"
            ),
            other => {
                return Err(invalid(
                    "trace_type",
                    format!("{other:?} is unknown (genai_extension, vercel, open_inference)"),
                ));
            }
        }
        if cfg.service_name.trim().is_empty() {
            return Err(invalid("service_name", "must not be empty"));
        }
        for (field, v) in [
            ("batch_size", cfg.batch_size as u64),
            ("flush_interval_ms", cfg.flush_interval_ms),
            ("queue_capacity", cfg.queue_capacity as u64),
            ("export_timeout_ms", cfg.export_timeout_ms),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        let mut headers = Vec::with_capacity(cfg.headers.len());
        for (name, value) in &cfg.headers {
            let field = format!("headers.{name}");
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(&field, "not a valid header name"))?;
            let value = match value.strip_prefix("env.") {
                Some(var) => std::env::var(var).map_err(|_| {
                    invalid(&field, format!("environment variable {var} is not set"))
                })?,
                None => value.clone(),
            };
            let v = HeaderValue::from_str(&value)
                .map_err(|_| invalid(&field, "not a valid header value"))?;
            headers.push((n, v));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            LoadError::Failed("the otel plugin must be started inside the server".to_owned())
        })?;
        let exporter = Exporter {
            endpoint,
            headers,
            service_name: cfg.service_name,
            batch_size: cfg.batch_size,
            flush_interval: Duration::from_millis(cfg.flush_interval_ms),
            timeout: Duration::from_millis(cfg.export_timeout_ms),
            client: build_client(&causeway_providers::ClientOptions {
                pool_max_idle_per_host: 4,
                connect_timeout: Duration::from_millis(cfg.export_timeout_ms),
                ..causeway_providers::ClientOptions::default()
            }),
            stats: stats.clone(),
            last_logged: None,
        };
        let (queue, rx) = mpsc::channel(cfg.queue_capacity);
        let (stop, stopped) = oneshot::channel();
        stats.exporters.fetch_add(1, Ordering::Relaxed);
        let task = runtime.spawn(export_loop(exporter, rx, stopped));
        Ok(OtelPlugin {
            queue,
            stats: stats.clone(),
            stop: Mutex::new(Some(stop)),
            task: Mutex::new(Some(task)),
        })
    }
}

impl Drop for OtelPlugin {
    fn drop(&mut self) {
        self.stats.exporters.fetch_sub(1, Ordering::Relaxed);
    }
}

fn span_count(r: &RequestRecord) -> u64 {
    1 + r.trace.attempts.len() as u64 + r.trace.hooks.len() as u64
}

impl Plugin for OtelPlugin {
    fn name(&self) -> &str {
        "otel"
    }

    fn hooks(&self) -> HookSet {
        HookSet {
            observe: true,
            ..HookSet::default()
        }
    }

    fn observe(&self, record: &Arc<RequestRecord>) {
        if !record.trace_context.sampled {
            return;
        }
        if self.queue.try_send(record.clone()).is_err() {
            self.stats
                .dropped
                .fetch_add(span_count(record), Ordering::Relaxed);
        }
    }

    /// Asks the export task for a final flush and waits for it (bounded).
    fn cleanup(&self) -> BoxFuture<'_, Result<(), PluginFailure>> {
        Box::pin(async move {
            if let Some(stop) = self
                .stop
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            {
                let _ = stop.send(());
            }
            let task = self
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(mut task) = task
                && tokio::time::timeout(CLEANUP_WAIT, &mut task).await.is_err()
            {
                task.abort();
                return Err(PluginFailure(
                    "otel: the final export did not finish in time; spans were dropped".to_owned(),
                ));
            }
            Ok(())
        })
    }
}

// ---- the export task --------------------------------------------------------------------------

/// Collects records into spans and exports them in batches until stopped (or until the plugin
/// is dropped), then flushes what is left.
async fn export_loop(
    mut ex: Exporter,
    mut rx: mpsc::Receiver<Arc<RequestRecord>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut spans: Vec<Value> = Vec::new();
    let mut tick = tokio::time::interval(ex.flush_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // A dropped sender also ends the loop: the plugin is gone.
            _ = &mut stopped => break,
            got = rx.recv() => match got {
                Some(r) => {
                    spans.extend(record_spans(&r));
                    if spans.len() >= ex.batch_size {
                        ex.flush(&mut spans).await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                if !spans.is_empty() {
                    ex.flush(&mut spans).await;
                }
            }
        }
    }
    rx.close();
    while let Ok(r) = rx.try_recv() {
        spans.extend(record_spans(&r));
    }
    ex.flush(&mut spans).await;
}

impl Exporter {
    /// Exports `spans` (in batches of `batch_size`) and empties it.
    async fn flush(&mut self, spans: &mut Vec<Value>) {
        while !spans.is_empty() {
            let n = spans.len().min(self.batch_size);
            let batch: Vec<Value> = spans.drain(..n).collect();
            let count = batch.len() as u64;
            match self.post(batch).await {
                Ok(()) => {
                    self.stats.exported.fetch_add(count, Ordering::Relaxed);
                }
                Err(e) => {
                    self.stats.failed.fetch_add(count, Ordering::Relaxed);
                    let now = Instant::now();
                    if self
                        .last_logged
                        .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
                    {
                        self.last_logged = Some(now);
                        tracing::warn!(endpoint = %self.endpoint, error = %e, "otel: exporting spans failed (logged at most once a minute; see causeway_otel_spans_failed_total)");
                    }
                }
            }
        }
    }

    async fn post(&self, spans: Vec<Value>) -> Result<(), String> {
        let payload = json!({
            "resourceSpans": [{
                "resource": {"attributes": [
                    attr_str("service.name", &self.service_name),
                    attr_str("telemetry.sdk.name", "causeway"),
                    attr_str("telemetry.sdk.language", "rust"),
                ]},
                "scopeSpans": [{
                    "scope": {"name": "causeway", "version": env!("CARGO_PKG_VERSION")},
                    "spans": spans,
                }],
            }],
        });
        let body = serde_json::to_vec(&payload).map_err(|e| e.to_string())?;
        let mut req = http::Request::post(self.endpoint.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        for (n, v) in &self.headers {
            req.headers_mut().insert(n.clone(), v.clone());
        }
        let send = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            // Read the answer so the connection can be reused.
            let answer = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if status.is_success() {
                Ok(())
            } else {
                let text = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
                Err(format!("collector answered {status}: {text}"))
            }
        };
        match tokio::time::timeout(self.timeout, send).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }
}

// ---- records to OTLP spans --------------------------------------------------------------------

fn attr_str(key: &str, v: &str) -> Value {
    json!({"key": key, "value": {"stringValue": v}})
}

/// OTLP/JSON carries 64-bit integers as strings.
fn attr_int(key: &str, v: i64) -> Value {
    json!({"key": key, "value": {"intValue": v.to_string()}})
}

fn attr_f64(key: &str, v: f64) -> Value {
    json!({"key": key, "value": {"doubleValue": v}})
}

fn attr_bool(key: &str, v: bool) -> Value {
    json!({"key": key, "value": {"boolValue": v}})
}

/// Wall-clock nanoseconds of an `Instant` of this request (records keep both clocks at start).
fn unix_nanos(r: &RequestRecord, t: Instant) -> String {
    let base = r.started_at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let at = if t >= r.started {
        base + t.duration_since(r.started)
    } else {
        base.saturating_sub(r.started.duration_since(t))
    };
    at.as_nanos().to_string()
}

fn new_span_id() -> [u8; 8] {
    let mut id = [0u8; 8];
    id.copy_from_slice(&uuid::Uuid::new_v4().into_bytes()[..8]);
    if id == [0u8; 8] {
        id[7] = 1;
    }
    id
}

/// GenAI `gen_ai.operation.name` of a request type.
fn operation(request_type: &str) -> &'static str {
    if request_type.starts_with("chat_completion") {
        "chat"
    } else if request_type.starts_with("text_completion") {
        "text_completion"
    } else if request_type == "embedding" {
        "embeddings"
    } else if request_type == "list_models" {
        "list_models"
    } else {
        "unknown"
    }
}

/// One span of a request, before encoding.
struct SpanParts<'a> {
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: String,
    kind: u8,
    start: Instant,
    end: Instant,
    attributes: Vec<Value>,
    error: Option<&'a str>,
}

fn span(r: &RequestRecord, p: SpanParts<'_>) -> Value {
    let SpanParts {
        span_id,
        parent,
        name,
        kind,
        start,
        end,
        attributes,
        error,
    } = p;
    let mut s = json!({
        "traceId": hex(&r.trace_context.trace_id),
        "spanId": hex(&span_id),
        "name": name,
        "kind": kind,
        "startTimeUnixNano": unix_nanos(r, start),
        "endTimeUnixNano": unix_nanos(r, end),
        "attributes": attributes,
    });
    if let Some(p) = parent {
        s["parentSpanId"] = Value::String(hex(&p));
    }
    if let Some(msg) = error {
        s["status"] = json!({"code": STATUS_ERROR, "message": msg});
    }
    s
}

/// The request span, one span per upstream attempt and one per plugin hook call.
fn record_spans(r: &RequestRecord) -> Vec<Value> {
    let op = operation(r.request_type);
    let root_id = r.trace_context.span_id;
    let mut out = Vec::with_capacity(1 + r.trace.attempts.len() + r.trace.hooks.len());

    let requested = r.requested_model.clone().unwrap_or_default();
    let mut attrs = vec![
        attr_str("gen_ai.operation.name", op),
        attr_str("gen_ai.request.model", &requested),
        attr_str("causeway.request_id", &r.request_id),
        attr_str("causeway.request_type", r.request_type),
        attr_str("causeway.outcome", r.outcome.as_str()),
        attr_str("url.path", &r.route),
        attr_bool("causeway.stream", r.stream),
        attr_int("http.response.status_code", i64::from(r.status_code)),
        attr_int("causeway.retries", i64::from(r.retries())),
        attr_int("causeway.fallback_index", i64::from(r.fallback_index())),
    ];
    if let Some(p) = r.provider.as_deref().or(r.requested_provider.as_deref()) {
        attrs.push(attr_str("gen_ai.system", p));
        attrs.push(attr_str("gen_ai.provider.name", p));
    }
    if let Some(m) = &r.model {
        attrs.push(attr_str("gen_ai.response.model", m));
    }
    if let Some(u) = &r.usage {
        attrs.push(attr_int(
            "gen_ai.usage.input_tokens",
            u.prompt_tokens as i64,
        ));
        attrs.push(attr_int(
            "gen_ai.usage.output_tokens",
            u.completion_tokens as i64,
        ));
    }
    if let Some(e) = &r.error_type {
        attrs.push(attr_str("error.type", e));
    }
    for (k, v) in [
        ("causeway.virtual_key_id", &r.virtual_key_id),
        ("causeway.team_id", &r.team_id),
        ("causeway.customer_id", &r.customer_id),
        ("causeway.key_id", &r.key_id),
    ] {
        if let Some(v) = v {
            attrs.push(attr_str(k, v));
        }
    }
    if let Some(c) = r.cost {
        attrs.push(attr_f64("causeway.cost_usd", c));
    }
    if let Some(t) = r.time_to_first_token() {
        attrs.push(attr_f64("causeway.ttft_ms", t.as_secs_f64() * 1000.0));
    }
    for (k, v) in &r.dimensions {
        if let Some(v) = v.as_str() {
            attrs.push(attr_str(&format!("causeway.dim.{k}"), v));
        }
    }
    let root_error = (r.outcome == Outcome::Error).then(|| {
        r.error_message
            .as_deref()
            .or(r.error_type.as_deref())
            .unwrap_or("error")
    });
    out.push(span(
        r,
        SpanParts {
            span_id: root_id,
            parent: r.trace_context.parent_span_id,
            name: format!("{op} {requested}"),
            kind: SPAN_KIND_SERVER,
            start: r.started,
            end: r.ended,
            attributes: attrs,
            error: root_error,
        },
    ));

    for (i, a) in r.trace.attempts.iter().enumerate() {
        let mut attrs = vec![
            attr_str("gen_ai.operation.name", op),
            attr_str("gen_ai.system", &a.provider),
            attr_str("gen_ai.provider.name", &a.provider),
            attr_str("gen_ai.request.model", &a.model),
            attr_int("causeway.attempt", i as i64 + 1),
            attr_int("causeway.fallback_index", i64::from(a.target_index)),
        ];
        if a.status != 0 {
            attrs.push(attr_int("http.response.status_code", i64::from(a.status)));
        }
        if let Some(k) = &a.key_id {
            attrs.push(attr_str("causeway.key_id", k));
        }
        if let Some(e) = &a.error_type {
            attrs.push(attr_str("error.type", e));
        }
        out.push(span(
            r,
            SpanParts {
                span_id: new_span_id(),
                parent: Some(root_id),
                name: format!("{op} {}", a.model),
                kind: SPAN_KIND_CLIENT,
                start: a.start,
                end: a.end,
                attributes: attrs,
                error: a.error_type.as_deref(),
            },
        ));
    }

    for h in &r.trace.hooks {
        let attrs = vec![
            attr_str("causeway.plugin.name", &h.plugin),
            attr_str("causeway.plugin.hook", h.hook),
        ];
        out.push(span(
            r,
            SpanParts {
                span_id: new_span_id(),
                parent: Some(root_id),
                name: format!("{}.{}", h.plugin, h.hook),
                kind: SPAN_KIND_INTERNAL,
                start: h.start,
                end: h.end,
                attributes: attrs,
                error: h.failed.then_some("plugin hook failed"),
            },
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collector_url_gets_the_traces_path() {
        for (given, want) in [
            ("http://localhost:4318", "http://localhost:4318/v1/traces"),
            ("http://localhost:4318/", "http://localhost:4318/v1/traces"),
            (
                "https://otel.example.com/v1/traces",
                "https://otel.example.com/v1/traces",
            ),
            ("http://c:1/base?x=1", "http://c:1/base/v1/traces?x=1"),
        ] {
            assert_eq!(traces_endpoint(given).unwrap().to_string(), want);
        }
        assert!(traces_endpoint("grpc://c:4317").is_err());
        assert!(traces_endpoint("localhost:4318").is_err());
    }

    #[test]
    fn config_errors_name_the_field() {
        let stats = Arc::new(OtelStats::default());
        for (cfg, field) in [
            (json!({}), "collector_url"),
            (
                json!({"collector_url": "http://c:1", "protocol": "grpc"}),
                "protocol",
            ),
            (
                json!({"collector_url": "http://c:1", "batch_size": 0}),
                "batch_size",
            ),
            (json!({"collector_url": "http://c:1", "nope": 1}), "nope"),
            (
                json!({"collector_url": "http://c:1", "headers": {"x-key": "env.CAUSEWAY_TEST_UNSET_VAR_X"}}),
                "headers.x-key",
            ),
        ] {
            match OtelPlugin::from_config(&cfg, &stats) {
                Err(LoadError::InvalidConfig(m)) => assert!(m.starts_with(field), "{m}"),
                Err(e) => panic!("{cfg}: {e:?}"),
                Ok(_) => panic!("{cfg} accepted"),
            }
        }
    }
}
