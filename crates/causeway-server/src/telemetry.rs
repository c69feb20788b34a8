//! The `telemetry` built-in: Prometheus metrics with Bifrost's metric names, served as text
//! at `GET /metrics`.
//!
//! Three pieces, one per gateway (several gateways may share a process, so nothing here is
//! global):
//! - [`Telemetry`]: the metric registry of one enabled `telemetry` plugin instance.
//! - [`TelemetryHub`]: the switchboard the HTTP layer reads. The plugin's constructor publishes
//!   its `Telemetry` there and its cleanup withdraws it, so enabling, reconfiguring or
//!   disabling the plugin through `/api/plugins` turns `/metrics` and the HTTP metrics on and
//!   off without a restart. The hub also carries the `otel` exporter's counters.
//! - [`TelemetryPlugin`]: the observer that turns each finished `RequestRecord` into metric
//!   updates (a few short lock-protected map updates; no I/O).
//!
//! Definitions (label values are bounded: past `max_label_values` distinct values of one
//! label, further values are reported as `other`):
//! - `bifrost_upstream_requests_total{provider,model,method}`: one per upstream attempt
//!   (retries and fallbacks count separately). Each attempt also counts once in
//!   `bifrost_success_requests_total` or in
//!   `bifrost_error_requests_total{…,status_code,error_type}` (`status_code` 0: no answer).
//!   A stream that started fine and then failed counts its last attempt as an error.
//!   Requests refused before any upstream call (auth, budgets, bad bodies) are not upstream
//!   requests; they show in `http_requests_total{status}`.
//! - `bifrost_upstream_latency_seconds`: per attempt, from sending the request until the
//!   upstream's answer (for streams: until the response head, not the end of the stream).
//! - `bifrost_overhead_latency_microseconds`: non-streamed requests with at least one
//!   attempt: the request's time in the gateway minus the span from the first attempt's
//!   start to the last attempt's end. That is decoding, plugin hooks, key choice and
//!   response handling; retry back-off waits fall inside the upstream span and are excluded.
//! - `bifrost_input_tokens_total`, `bifrost_output_tokens_total`, `bifrost_cost_total` (USD):
//!   per request, by the provider and model that served it.
//! - `bifrost_request_retries`: histogram of attempts beyond the first, per request
//!   (`_sum` is the total number of retries).
//! - `bifrost_stream_first_token_latency_seconds`: from the request's arrival to the first
//!   chunk sent to the client. `bifrost_stream_inter_token_latency_seconds`: one observation
//!   per stream, the average gap between consecutive chunks;
//!   `causeway_stream_max_inter_token_latency_seconds` observes the largest gap.
//! - `causeway_requests_cancelled_total`: clients that went away before the answer ended.
//! - `http_requests_total{method,path,status}`, `http_request_duration_seconds` (until the
//!   response head; for streams that is before the body) and `bifrost_active_requests`
//!   (in-flight HTTP requests, streams until their body ends; includes the scrape itself).
//!   `path` is the route template (`/v1/chat/completions`, `/api/plugins/{name}`) or
//!   `unmatched`.
//!
//! Configured dimension names (`custom_labels`, by default `client.prometheus_labels`) add
//! one label each, filled from the `x-bf-dim-<name>` header (empty when absent).
//!
//! Metrics are kept by a small registry here rather than the `metrics` facade: the facade's
//! counters are integers, so `bifrost_cost_total` (fractional USD) would have to be a gauge;
//! its Prometheus recorder needs a periodic upkeep task without its HTTP listener; and the
//! label-cardinality cap has to be applied before values reach any registry anyway.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use causeway_core::{GatewayError, Outcome, RequestRecord};
use causeway_plugins::{HookSet, LoadError, Plugin};
use http::{HeaderMap, HeaderValue, Method, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::error_response;
use crate::otel::OtelStats;
use crate::state::AppState;

/// Label value that replaces new values of a label once it has `max_label_values` of them.
pub const OTHER: &str = "other";

const DEFAULT_MAX_LABEL_VALUES: usize = 500;

/// Labels Causeway sets itself; a dimension may not take one of these names.
const RESERVED_LABELS: &[&str] = &[
    "provider",
    "model",
    "method",
    "status_code",
    "error_type",
    "path",
    "status",
    "le",
];

const HTTP_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Model calls take from milliseconds to minutes.
const UPSTREAM_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 45.0, 60.0, 90.0,
];
const OVERHEAD_MICROS: &[f64] = &[
    10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 25000.0, 50000.0,
    100000.0,
];
const FIRST_TOKEN_SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const INTER_TOKEN_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const RETRIES: &[f64] = &[0.0, 1.0, 2.0, 3.0, 5.0, 10.0];

// ---- configuration --------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TelemetryConfig {
    #[serde(default = "yes")]
    metrics_enabled: bool,
    /// Dimension names (`x-bf-dim-<name>`) that become labels.
    #[serde(default, alias = "prometheus_labels")]
    custom_labels: Option<Vec<String>>,
    #[serde(default = "default_max_label_values")]
    max_label_values: usize,
    /// Bifrost's push-gateway block: accepted when disabled so Bifrost configs load.
    #[serde(default)]
    push_gateway: Option<Value>,
}

fn yes() -> bool {
    true
}

fn default_max_label_values() -> usize {
    DEFAULT_MAX_LABEL_VALUES
}

/// Decodes a built-in plugin's config, naming the offending field (`x.y: reason`, `config`
/// for the whole value, as the other built-ins do) so the 400 the API returns tells the
/// operator what to fix. `null` counts as `{}`.
pub(crate) fn parse_config<T: DeserializeOwned>(config: &Value) -> Result<T, LoadError> {
    let empty = Value::Object(serde_json::Map::new());
    let config = if config.is_null() { &empty } else { config };
    serde_path_to_error::deserialize(config).map_err(|err| {
        let path = err.path().to_string();
        let mut field = if path == "." { String::new() } else { path };
        let message = err.inner().to_string();
        // serde names an unknown or missing key in the message, at the enclosing object.
        for prefix in ["unknown field `", "missing field `"] {
            if let Some(name) = message
                .strip_prefix(prefix)
                .and_then(|t| t.split('`').next())
                && field != name
                && !field.ends_with(&format!(".{name}"))
            {
                field = if field.is_empty() {
                    name.to_owned()
                } else {
                    format!("{field}.{name}")
                };
            }
        }
        if field.is_empty() {
            field = "config".to_owned();
        }
        LoadError::InvalidConfig(format!("{field}: {message}"))
    })
}

/// A dimension name as a Prometheus label name (`team-name` -> `team_name`).
fn label_name(dim: &str) -> Result<String, String> {
    let mut name: String = dim
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        return Err("a dimension name must not be empty".to_owned());
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    if name.starts_with("__") || RESERVED_LABELS.contains(&name.as_str()) {
        return Err(format!(
            "{dim:?} cannot be a label: it clashes with a label Causeway sets ({}) or a reserved name",
            RESERVED_LABELS.join(", ")
        ));
    }
    Ok(name)
}

// ---- the registry ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Histogram(&'static [f64]),
}

#[derive(Debug)]
struct Hist {
    /// Per bucket (not cumulative); the `+Inf` bucket is `count`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Debug)]
enum Series {
    Value(f64),
    Hist(Hist),
}

/// One metric name with a fixed label set; series by label values.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: Vec<String>,
    series: Mutex<BTreeMap<Vec<String>, Series>>,
}

impl Family {
    fn new(
        name: &'static str,
        help: &'static str,
        kind: Kind,
        base: &[&str],
        custom: &[String],
    ) -> Family {
        let labels = base
            .iter()
            .map(|s| (*s).to_owned())
            .chain(custom.iter().cloned())
            .collect();
        Family {
            name,
            help,
            kind,
            labels,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<String>, Series>> {
        // Updates are single arithmetic steps; a panic elsewhere cannot leave one half-done.
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, values: Vec<String>, v: f64) {
        if !v.is_finite() {
            return;
        }
        let mut series = self.lock();
        match series.entry(values).or_insert(Series::Value(0.0)) {
            Series::Value(x) => *x += v,
            Series::Hist(_) => {}
        }
    }

    fn observe(&self, values: Vec<String>, v: f64) {
        let Kind::Histogram(buckets) = self.kind else {
            return;
        };
        if !v.is_finite() {
            return;
        }
        let mut series = self.lock();
        let entry = series.entry(values).or_insert_with(|| {
            Series::Hist(Hist {
                counts: vec![0; buckets.len()],
                sum: 0.0,
                count: 0,
            })
        });
        if let Series::Hist(h) = entry {
            if let Some(i) = buckets.iter().position(|b| v <= *b)
                && let Some(c) = h.counts.get_mut(i)
            {
                *c += 1;
            }
            h.sum += v;
            h.count += 1;
        }
    }

    fn render(&self, out: &mut String) {
        let series = self.lock();
        if series.is_empty() {
            return;
        }
        let kind = match self.kind {
            Kind::Counter => "counter",
            Kind::Histogram(_) => "histogram",
        };
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {kind}", self.name);
        for (values, s) in series.iter() {
            match s {
                Series::Value(v) => {
                    out.push_str(self.name);
                    write_labels(out, &self.labels, values, None);
                    let _ = writeln!(out, " {v}");
                }
                Series::Hist(h) => {
                    let Kind::Histogram(buckets) = self.kind else {
                        continue;
                    };
                    let mut cumulative = 0u64;
                    for (b, c) in buckets.iter().zip(&h.counts) {
                        cumulative += c;
                        let le = format!("{b}");
                        let _ = write!(out, "{}_bucket", self.name);
                        write_labels(out, &self.labels, values, Some(("le", &le)));
                        let _ = writeln!(out, " {cumulative}");
                    }
                    let _ = write!(out, "{}_bucket", self.name);
                    write_labels(out, &self.labels, values, Some(("le", "+Inf")));
                    let _ = writeln!(out, " {}", h.count);
                    let _ = write!(out, "{}_sum", self.name);
                    write_labels(out, &self.labels, values, None);
                    let _ = writeln!(out, " {}", h.sum);
                    let _ = write!(out, "{}_count", self.name);
                    write_labels(out, &self.labels, values, None);
                    let _ = writeln!(out, " {}", h.count);
                }
            }
        }
    }
}

fn write_labels(
    out: &mut String,
    names: &[String],
    values: &[String],
    extra: Option<(&str, &str)>,
) {
    if names.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    let pairs = names
        .iter()
        .map(String::as_str)
        .zip(values.iter().map(String::as_str))
        .chain(extra);
    for (n, v) in pairs {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(n);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

/// The metrics of one enabled `telemetry` plugin instance.
#[derive(Debug)]
pub struct Telemetry {
    /// (dimension name as sent in `x-bf-dim-<name>`, label name).
    dims: Vec<(String, String)>,
    max_label_values: usize,
    /// Distinct values seen per label name, for the cardinality cap.
    seen: Mutex<HashMap<String, HashSet<String>>>,
    active: AtomicI64,
    http_requests: Family,
    http_duration: Family,
    upstream_requests: Family,
    success_requests: Family,
    error_requests: Family,
    upstream_latency: Family,
    overhead: Family,
    input_tokens: Family,
    output_tokens: Family,
    cost: Family,
    retries: Family,
    first_token: Family,
    inter_token: Family,
    max_inter_token: Family,
    cancelled: Family,
}

const BASE: &[&str] = &["provider", "model", "method"];
const ERROR_BASE: &[&str] = &["provider", "model", "method", "status_code", "error_type"];
const HTTP_BASE: &[&str] = &["method", "path", "status"];

impl Telemetry {
    /// `dims`: dimension names that become labels; `max_label_values` ≥ 1.
    pub fn new(dims: &[String], max_label_values: usize) -> Result<Telemetry, String> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for d in dims {
            let label = label_name(d)?;
            if pairs.iter().any(|(_, l)| *l == label) {
                return Err(format!("dimension {d:?} is listed twice"));
            }
            pairs.push((d.trim().to_ascii_lowercase(), label));
        }
        let custom: Vec<String> = pairs.iter().map(|(_, l)| l.clone()).collect();
        let c = &custom;
        let f = |name, help, kind, base| Family::new(name, help, kind, base, c);
        Ok(Telemetry {
            max_label_values: max_label_values.max(1),
            seen: Mutex::new(HashMap::new()),
            active: AtomicI64::new(0),
            http_requests: f(
                "http_requests_total",
                "Total number of HTTP requests.",
                Kind::Counter,
                HTTP_BASE,
            ),
            http_duration: f(
                "http_request_duration_seconds",
                "Duration of HTTP requests until the response head.",
                Kind::Histogram(HTTP_SECONDS),
                HTTP_BASE,
            ),
            upstream_requests: f(
                "bifrost_upstream_requests_total",
                "Total number of requests forwarded to upstream providers (one per attempt).",
                Kind::Counter,
                BASE,
            ),
            success_requests: f(
                "bifrost_success_requests_total",
                "Total number of successful upstream attempts.",
                Kind::Counter,
                BASE,
            ),
            error_requests: f(
                "bifrost_error_requests_total",
                "Total number of failed upstream attempts.",
                Kind::Counter,
                ERROR_BASE,
            ),
            upstream_latency: f(
                "bifrost_upstream_latency_seconds",
                "Latency of upstream attempts.",
                Kind::Histogram(UPSTREAM_SECONDS),
                BASE,
            ),
            overhead: f(
                "bifrost_overhead_latency_microseconds",
                "Time spent in the gateway outside upstream calls (non-streamed requests).",
                Kind::Histogram(OVERHEAD_MICROS),
                BASE,
            ),
            input_tokens: f(
                "bifrost_input_tokens_total",
                "Total number of input tokens.",
                Kind::Counter,
                BASE,
            ),
            output_tokens: f(
                "bifrost_output_tokens_total",
                "Total number of output tokens.",
                Kind::Counter,
                BASE,
            ),
            cost: f(
                "bifrost_cost_total",
                "Total cost in USD of requests to upstream providers.",
                Kind::Counter,
                BASE,
            ),
            retries: f(
                "bifrost_request_retries",
                "Upstream attempts beyond the first, per request.",
                Kind::Histogram(RETRIES),
                BASE,
            ),
            first_token: f(
                "bifrost_stream_first_token_latency_seconds",
                "Time from the request to the first streamed chunk.",
                Kind::Histogram(FIRST_TOKEN_SECONDS),
                BASE,
            ),
            inter_token: f(
                "bifrost_stream_inter_token_latency_seconds",
                "Average gap between streamed chunks, one observation per stream.",
                Kind::Histogram(INTER_TOKEN_SECONDS),
                BASE,
            ),
            max_inter_token: f(
                "causeway_stream_max_inter_token_latency_seconds",
                "Largest gap between streamed chunks, one observation per stream.",
                Kind::Histogram(INTER_TOKEN_SECONDS),
                BASE,
            ),
            cancelled: f(
                "causeway_requests_cancelled_total",
                "Requests whose client went away before the answer ended.",
                Kind::Counter,
                BASE,
            ),
            dims: pairs,
        })
    }

    /// In-flight HTTP requests.
    pub fn active_requests(&self) -> i64 {
        self.active.load(Ordering::Relaxed)
    }

    /// `value`, or `other` once `label` already has `max_label_values` distinct values.
    fn bounded(
        &self,
        seen: &mut HashMap<String, HashSet<String>>,
        label: &str,
        value: &str,
    ) -> String {
        if value.is_empty() {
            return String::new();
        }
        let set = match seen.get_mut(label) {
            Some(s) => s,
            None => seen.entry(label.to_owned()).or_default(),
        };
        if set.contains(value) {
            return value.to_owned();
        }
        if set.len() < self.max_label_values {
            set.insert(value.to_owned());
            return value.to_owned();
        }
        OTHER.to_owned()
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<String>>> {
        // Inserting into a set cannot be left half-done by a panic elsewhere.
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record_http(
        &self,
        method: &str,
        path: &str,
        status: u16,
        dims: Vec<String>,
        elapsed: Duration,
    ) {
        let mut labels = Vec::with_capacity(3 + dims.len());
        labels.push(method.to_owned());
        labels.push(path.to_owned());
        labels.push(status.to_string());
        labels.extend(dims);
        self.http_duration
            .observe(labels.clone(), elapsed.as_secs_f64());
        self.http_requests.add(labels, 1.0);
    }

    /// Dimension label values from `x-bf-dim-<name>` (or the older `x-bf-prom-<name>`).
    fn header_dims(&self, headers: &HeaderMap) -> Vec<String> {
        if self.dims.is_empty() {
            return Vec::new();
        }
        let mut seen = self.seen();
        self.dims
            .iter()
            .map(|(dim, label)| {
                let v = headers
                    .get(format!("x-bf-dim-{dim}"))
                    .or_else(|| headers.get(format!("x-bf-prom-{dim}")))
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let v: String = v.chars().take(256).collect();
                self.bounded(&mut seen, label, &v)
            })
            .collect()
    }

    /// Turns a finished request into metric updates.
    pub fn record(&self, r: &RequestRecord) {
        let method = r.request_type.to_owned();
        let (attempt_labels, request_labels) = {
            let mut seen = self.seen();
            let dims: Vec<String> = self
                .dims
                .iter()
                .map(|(dim, label)| {
                    let v = r.dimensions.get(dim).and_then(Value::as_str).unwrap_or("");
                    self.bounded(&mut seen, label, v)
                })
                .collect();
            let mut labels = |provider: &str, model: &str| {
                let mut l = Vec::with_capacity(3 + dims.len());
                l.push(self.bounded(&mut seen, "provider", provider));
                l.push(self.bounded(&mut seen, "model", model));
                l.push(method.clone());
                l.extend(dims.iter().cloned());
                l
            };
            let attempts: Vec<Vec<String>> = r
                .trace
                .attempts
                .iter()
                .map(|a| labels(&a.provider, &a.model))
                .collect();
            let request = labels(
                r.provider.as_deref().unwrap_or(""),
                r.model.as_deref().unwrap_or(""),
            );
            (attempts, request)
        };

        let last = r.trace.attempts.len().saturating_sub(1);
        for (i, (a, labels)) in r.trace.attempts.iter().zip(attempt_labels).enumerate() {
            self.upstream_requests.add(labels.clone(), 1.0);
            self.upstream_latency.observe(
                labels.clone(),
                a.end.saturating_duration_since(a.start).as_secs_f64(),
            );
            // The upstream answered, but the stream broke afterwards: the attempt failed.
            let failed_late =
                i == last && r.stream && r.outcome == Outcome::Error && a.error_type.is_none();
            let (status, error_type) = if failed_late {
                (r.status_code, r.error_type.clone())
            } else {
                (a.status, a.error_type.clone())
            };
            match error_type {
                None => self.success_requests.add(labels, 1.0),
                Some(et) => {
                    let mut l = labels;
                    let dims = l.split_off(3);
                    l.push(status.to_string());
                    l.push(self.bounded(&mut self.seen(), "error_type", &et));
                    l.extend(dims);
                    self.error_requests.add(l, 1.0);
                }
            }
        }

        if let (Some(first), Some(last)) = (r.trace.attempts.first(), r.trace.attempts.last()) {
            self.retries
                .observe(request_labels.clone(), f64::from(r.retries()));
            if !r.stream && r.outcome != Outcome::Cancelled {
                let upstream = last.end.saturating_duration_since(first.start);
                let overhead = r.latency().saturating_sub(upstream);
                self.overhead
                    .observe(request_labels.clone(), overhead.as_secs_f64() * 1e6);
            }
        }
        if let Some(u) = &r.usage {
            self.input_tokens
                .add(request_labels.clone(), u.prompt_tokens as f64);
            self.output_tokens
                .add(request_labels.clone(), u.completion_tokens as f64);
        }
        if let Some(c) = r.cost {
            self.cost.add(request_labels.clone(), c);
        }
        if r.stream {
            if let Some(t) = r.time_to_first_token() {
                self.first_token
                    .observe(request_labels.clone(), t.as_secs_f64());
            }
            if let (Some(first), Some(last)) = (r.trace.first_chunk, r.trace.last_chunk)
                && r.trace.chunks >= 2
            {
                let span = last.saturating_duration_since(first).as_secs_f64();
                self.inter_token
                    .observe(request_labels.clone(), span / (r.trace.chunks - 1) as f64);
            }
            if let Some(gap) = r.trace.max_chunk_gap {
                self.max_inter_token
                    .observe(request_labels.clone(), gap.as_secs_f64());
            }
        }
        if r.outcome == Outcome::Cancelled {
            self.cancelled.add(request_labels, 1.0);
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        for f in [
            &self.http_requests,
            &self.http_duration,
            &self.upstream_requests,
            &self.success_requests,
            &self.error_requests,
            &self.upstream_latency,
            &self.overhead,
            &self.input_tokens,
            &self.output_tokens,
            &self.cost,
            &self.retries,
            &self.first_token,
            &self.inter_token,
            &self.max_inter_token,
            &self.cancelled,
        ] {
            f.render(&mut out);
        }
        out.push_str("# HELP bifrost_active_requests In-flight HTTP requests (streams until their body ends).\n");
        out.push_str("# TYPE bifrost_active_requests gauge\n");
        let _ = writeln!(out, "bifrost_active_requests {}", self.active_requests());
        out
    }
}

// ---- the hub ----------------------------------------------------------------------------------

/// Where the HTTP layer finds the live telemetry of its gateway (one per gateway).
pub struct TelemetryHub {
    current: ArcSwapOption<Telemetry>,
    /// `client.prometheus_labels`: the dimension labels when the plugin config names none.
    default_labels: ArcSwap<Vec<String>>,
    /// Counters of the `otel` exporter; shared across its instances so they only grow.
    pub otel: Arc<OtelStats>,
}

impl Default for TelemetryHub {
    fn default() -> Self {
        TelemetryHub {
            current: ArcSwapOption::empty(),
            default_labels: ArcSwap::from_pointee(Vec::new()),
            otel: Arc::new(OtelStats::default()),
        }
    }
}

impl TelemetryHub {
    pub fn new() -> Self {
        Self::default()
    }

    /// The metrics of the enabled `telemetry` plugin; `None` when it is off.
    pub fn current(&self) -> Option<Arc<Telemetry>> {
        self.current.load_full()
    }

    /// Sets `client.prometheus_labels`; read when a `telemetry` plugin instance is built, so
    /// call it before plugins load (a change needs the plugin reloaded, as in Bifrost).
    pub fn set_default_labels(&self, labels: &[String]) {
        self.default_labels.store(Arc::new(labels.to_vec()));
    }

    fn publish(&self, t: Arc<Telemetry>) {
        self.current.store(Some(t));
    }

    /// Withdraws `t` unless a newer instance replaced it already (an update builds the new
    /// instance before the old one is cleaned up).
    fn withdraw(&self, t: &Arc<Telemetry>) {
        self.current.rcu(|cur| match cur {
            Some(c) if Arc::ptr_eq(c, t) => None,
            other => other.clone(),
        });
    }
}

// ---- the plugin -------------------------------------------------------------------------------

/// The `telemetry` built-in.
pub struct TelemetryPlugin {
    hub: Arc<TelemetryHub>,
    /// `None` when `metrics_enabled` is false.
    telemetry: Option<Arc<Telemetry>>,
}

impl TelemetryPlugin {
    /// Builds the plugin and makes its metrics live (`/metrics`, HTTP metrics).
    pub fn from_config(config: &Value, hub: &Arc<TelemetryHub>) -> Result<Self, LoadError> {
        let cfg: TelemetryConfig = parse_config(config)?;
        if let Some(pg) = &cfg.push_gateway
            && pg.get("enabled").and_then(Value::as_bool) == Some(true)
        {
            return Err(LoadError::InvalidConfig(
                "push_gateway.enabled: pushing to a Prometheus push gateway is not supported; scrape GET /metrics instead".to_owned(),
            ));
        }
        if cfg.max_label_values == 0 {
            return Err(LoadError::InvalidConfig(
                "max_label_values: must be at least 1".to_owned(),
            ));
        }
        let (dims, field) = match &cfg.custom_labels {
            Some(d) => (d.clone(), "custom_labels"),
            None => (
                hub.default_labels.load().as_ref().clone(),
                "client.prometheus_labels",
            ),
        };
        let telemetry = if cfg.metrics_enabled {
            let t = Telemetry::new(&dims, cfg.max_label_values)
                .map_err(|e| LoadError::InvalidConfig(format!("{field}: {e}")))?;
            let t = Arc::new(t);
            hub.publish(t.clone());
            Some(t)
        } else {
            None
        };
        Ok(TelemetryPlugin {
            hub: hub.clone(),
            telemetry,
        })
    }
}

impl Plugin for TelemetryPlugin {
    fn name(&self) -> &str {
        "telemetry"
    }

    fn hooks(&self) -> HookSet {
        HookSet {
            // With metrics off there is nothing to record; not observing spares every request
            // the record building.
            observe: self.telemetry.is_some(),
            ..HookSet::default()
        }
    }

    fn observe(&self, record: &Arc<RequestRecord>) {
        if let Some(t) = &self.telemetry {
            t.record(record);
        }
    }

    fn cleanup(
        &self,
    ) -> causeway_plugins::BoxFuture<'_, Result<(), causeway_plugins::PluginFailure>> {
        if let Some(t) = &self.telemetry {
            self.hub.withdraw(t);
        }
        Box::pin(async { Ok(()) })
    }
}

// ---- HTTP -------------------------------------------------------------------------------------

/// `GET /metrics`: Prometheus text. A 404 in the error envelope while the telemetry plugin
/// is off (or `metrics_enabled` is false), as in Bifrost.
///
/// Public like `/health` (Bifrost documents it as public and scrapers rarely carry
/// credentials): it exposes aggregate counts, provider and model names and the configured
/// dimension values, never request content or keys. Operators who must hide it keep the
/// port private or leave the plugin off.
pub async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let Some(t) = st.telemetry.current() else {
        return error_response(
            &GatewayError::not_found(
                "Metrics are disabled: enable the telemetry plugin (POST /api/plugins {\"name\":\"telemetry\",\"enabled\":true})",
            )
            .with_type("metrics_disabled"),
            None,
        );
    };
    let mut body = t.render();
    st.telemetry.otel.render_into(&mut body);
    if let Some(logs) = &st.logs {
        crate::logging::render_metrics(&logs.writer.stats(), &mut body);
    }
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// Methods outside this list are one label value, so a client cannot mint series.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => OTHER,
    }
}

/// Middleware for the whole router: HTTP request counts, durations and in-flight requests
/// while the telemetry plugin is on (a no-op otherwise).
pub async fn http_metrics(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(t) = st.telemetry.current() else {
        return next.run(req).await;
    };
    let start = Instant::now();
    let method = method_label(req.method());
    // The route template, not the path: paths carry ids and arbitrary 404 URLs.
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let dims = t.header_dims(req.headers());
    let guard = ActiveGuard::new(t.clone());
    let resp = next.run(req).await;
    t.record_http(method, &path, resp.status().as_u16(), dims, start.elapsed());
    let (parts, body) = resp.into_parts();
    Response::from_parts(
        parts,
        Body::new(TrackedBody {
            inner: body,
            guard: Some(guard),
        }),
    )
}

/// Counts one in-flight request until dropped.
struct ActiveGuard(Arc<Telemetry>);

impl ActiveGuard {
    fn new(t: Arc<Telemetry>) -> Self {
        t.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(t)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The response body, holding the in-flight count until it ends or is dropped (a stream
/// stays in flight while it streams).
struct TrackedBody {
    inner: Body,
    guard: Option<ActiveGuard>,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_are_sanitised_and_reserved_names_refused() {
        assert_eq!(label_name("Team-Name").as_deref(), Ok("team_name"));
        assert_eq!(label_name("1x").as_deref(), Ok("_1x"));
        assert!(label_name("provider").is_err());
        assert!(label_name("").is_err());
        assert!(label_name("__x").is_err());
    }

    #[test]
    fn cardinality_cap_folds_new_values_into_other() {
        let t = Telemetry::new(&[], 2).unwrap();
        let mut seen = HashMap::new();
        assert_eq!(t.bounded(&mut seen, "model", "a"), "a");
        assert_eq!(t.bounded(&mut seen, "model", "b"), "b");
        assert_eq!(t.bounded(&mut seen, "model", "c"), OTHER);
        assert_eq!(t.bounded(&mut seen, "model", "a"), "a");
        assert_eq!(t.bounded(&mut seen, "provider", "c"), "c");
    }

    #[test]
    fn histogram_renders_cumulative_buckets() {
        let f = Family::new("h", "help", Kind::Histogram(&[1.0, 2.0]), &["a"], &[]);
        f.observe(vec!["x\"y".into()], 0.5);
        f.observe(vec!["x\"y".into()], 1.5);
        f.observe(vec!["x\"y".into()], 9.0);
        let mut out = String::new();
        f.render(&mut out);
        assert!(out.contains("h_bucket{a=\"x\\\"y\",le=\"1\"} 1\n"), "{out}");
        assert!(out.contains("h_bucket{a=\"x\\\"y\",le=\"2\"} 2\n"), "{out}");
        assert!(
            out.contains("h_bucket{a=\"x\\\"y\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("h_sum{a=\"x\\\"y\"} 11\n"), "{out}");
        assert!(out.contains("h_count{a=\"x\\\"y\"} 3\n"), "{out}");
    }

    #[test]
    fn unknown_config_keys_are_refused_with_their_path() {
        let hub = Arc::new(TelemetryHub::new());
        let err = TelemetryPlugin::from_config(&serde_json::json!({"bogus": 1}), &hub)
            .err()
            .unwrap();
        assert!(
            matches!(&err, LoadError::InvalidConfig(m) if m.starts_with("bogus:")),
            "{err:?}"
        );
        assert!(hub.current().is_none());
    }
}
