//! The `mocker` built-in (Bifrost's mocker plugin): answers matching requests with a configured
//! mock completion or error instead of calling the provider, so clients, fallbacks, budgets and
//! streaming can be exercised without upstream traffic. Rules are compiled once at load time.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use causeway_core::{
    ChunkStream, ErrorClass, GatewayError, LlmRequest, LlmResponse, RequestContext, RequestType,
    RouteInfo,
};
use regex::Regex;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::builtin::{
    ConfigRejection, parse_config, regex_reason, request_text_field, visit_request_text,
};
use crate::plugin::{BoxFuture, HookSet, Plugin, PluginFailure, PreLlmOutcome};

/// The name the plugin reports (`actualName`).
pub const NAME: &str = "mocker";

const DEFAULT_SUCCESS_MESSAGE: &str = "This is a mock response from the mocker plugin";
const DEFAULT_ERROR_MESSAGE: &str = "This is a mock error from the mocker plugin";
/// Longer sleeps are almost certainly a unit mistake (Bifrost's integers are nanoseconds,
/// ours are milliseconds), so they are refused instead of hanging requests for days.
const MAX_LATENCY: Duration = Duration::from_secs(600);
const EMBEDDING_DIMENSIONS: usize = 8;
/// Content of a mocked stream is split into at most this many delta chunks.
const MAX_CONTENT_CHUNKS: usize = 4;

// ---------------------------------------------------------------------------------------------
// Config as written (snake_case JSON, Bifrost's field names). Unknown keys are refused.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MockerConfig {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    default_behavior: Option<DefaultBehavior>,
    #[serde(default)]
    global_latency: Option<LatencyConfig>,
    #[serde(default)]
    rules: Vec<RuleConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum DefaultBehavior {
    Passthrough,
    Success,
    Error,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    name: String,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    priority: i64,
    #[serde(default = "one")]
    probability: f64,
    #[serde(default)]
    conditions: ConditionsConfig,
    responses: Vec<ResponseConfig>,
    #[serde(default)]
    latency: Option<LatencyConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionsConfig {
    #[serde(default)]
    providers: Vec<String>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    message_regex: Option<String>,
    #[serde(default)]
    request_size: Option<SizeConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SizeConfig {
    #[serde(default)]
    min: u64,
    #[serde(default)]
    max: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ResponseType {
    Success,
    Error,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseConfig {
    #[serde(rename = "type")]
    kind: ResponseType,
    #[serde(default = "one")]
    weight: f64,
    #[serde(default)]
    content: Option<ContentConfig>,
    #[serde(default)]
    error: Option<ErrorConfig>,
    #[serde(default = "yes")]
    allow_fallbacks: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContentConfig {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    message_template: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<UsageConfig>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageConfig {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorConfig {
    message: String,
    #[serde(rename = "type", default)]
    error_type: Option<String>,
    #[serde(default)]
    code: Option<Code>,
    #[serde(default = "default_status")]
    status_code: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyConfig {
    #[serde(rename = "type")]
    kind: LatencyType,
    #[serde(default)]
    min: Option<LatencyValue>,
    #[serde(default)]
    max: Option<LatencyValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum LatencyType {
    Fixed,
    Uniform,
}

fn yes() -> bool {
    true
}

fn one() -> f64 {
    1.0
}

fn default_status() -> u16 {
    500
}

/// `code` as Bifrost documents it is a string ("429"), but a bare number is an easy slip.
#[derive(Debug)]
struct Code(String);

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CodeVisitor).map(Code)
    }
}

struct CodeVisitor;

impl Visitor<'_> for CodeVisitor {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a number")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// A latency: a number of milliseconds, or a Go-style duration string ("250ms", "1.5s",
/// "1m30s"; units ns, us/µs, ms, s, m, h).
#[derive(Debug, Clone, Copy)]
struct LatencyValue(Duration);

impl<'de> Deserialize<'de> for LatencyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LatencyVisitor).map(LatencyValue)
    }
}

struct LatencyVisitor;

impl Visitor<'_> for LatencyVisitor {
    type Value = Duration;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("milliseconds as a number, or a duration string such as \"250ms\" or \"1s\"")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        bounded(Duration::from_millis(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom("latency cannot be negative")),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        if !v.is_finite() || v < 0.0 {
            return Err(E::custom("latency must be a non-negative number"));
        }
        if v > MAX_LATENCY.as_secs_f64() * 1000.0 {
            return Err(E::custom(too_long()));
        }
        bounded(Duration::from_secs_f64(v / 1000.0))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(E::custom).and_then(bounded)
    }
}

fn too_long() -> String {
    format!(
        "latency is above the {}s limit (plain numbers are milliseconds)",
        MAX_LATENCY.as_secs()
    )
}

fn bounded<E: de::Error>(d: Duration) -> Result<Duration, E> {
    if d > MAX_LATENCY {
        Err(E::custom(too_long()))
    } else {
        Ok(d)
    }
}

/// Parses a Go `time.Duration` string (what Bifrost configs are written with).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with('-') {
        return Err("latency cannot be negative".to_owned());
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return Err(format!("invalid duration {text:?}"));
    }
    let mut nanos = 0.0_f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("duration {text:?} is missing a unit (ms, s, ...)")),
            unit => return Err(format!("unknown unit {unit:?} in duration {text:?}")),
        };
        nanos += number * scale;
        rest = &rest[unit_end..];
    }
    if nanos > MAX_LATENCY.as_nanos() as f64 {
        return Err(too_long());
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

// ---------------------------------------------------------------------------------------------
// Compiled form.

/// Bifrost's mocker as a Causeway plugin. Build it with [`Mocker::from_config`].
#[derive(Debug)]
pub struct Mocker {
    enabled: bool,
    /// Enabled rules, highest priority first (ties keep config order).
    rules: Vec<Rule>,
    global_latency: Option<Latency>,
    /// What to answer when no rule matches; `None` is passthrough.
    default: Option<MockResponse>,
}

#[derive(Debug)]
struct Rule {
    name: String,
    probability: f64,
    providers: Vec<String>,
    models: Vec<ModelMatcher>,
    message_regex: Option<Regex>,
    request_size: Option<(u64, Option<u64>)>,
    responses: Vec<MockResponse>,
    /// Running sums of the response weights, for weighted picking.
    cumulative: Vec<f64>,
    /// Index of the last response with a weight above 0.
    last_weighted: usize,
    latency: Option<Latency>,
}

#[derive(Debug)]
enum ModelMatcher {
    Exact(String),
    Regex(Regex),
}

#[derive(Debug, Clone, Copy)]
enum Latency {
    Fixed(Duration),
    Uniform(Duration, Duration),
}

#[derive(Debug)]
enum MockResponse {
    Success(SuccessSpec),
    /// Built once; `GatewayError` is an `Arc`, so answering costs a clone.
    Error(GatewayError),
}

#[derive(Debug)]
struct SuccessSpec {
    message: String,
    /// `message` holds `{{provider}}` / `{{model}}` placeholders.
    templated: bool,
    model: Option<String>,
    usage: Option<MockUsage>,
    finish_reason: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct MockUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

impl Mocker {
    /// Parses and validates the plugin config; every rejection names the offending JSON path.
    pub fn from_config(config: &Value) -> Result<Self, ConfigRejection> {
        let cfg: MockerConfig = parse_config(config)?;
        let global_latency = cfg
            .global_latency
            .as_ref()
            .map(|l| compile_latency(l, "global_latency"))
            .transpose()?;
        let mut rules = Vec::with_capacity(cfg.rules.len());
        for (i, rule) in cfg.rules.iter().enumerate() {
            let compiled = compile_rule(rule, &format!("rules[{i}]"))?;
            // Disabled rules are still validated so a later enable cannot fail.
            if rule.enabled {
                rules.push((rule.priority, compiled));
            }
        }
        // Stable sort: equal priorities keep their config order.
        rules.sort_by_key(|(priority, _)| std::cmp::Reverse(*priority));
        // Bifrost mocks everything when enabled without rules (its "minimal configuration");
        // an explicit default_behavior wins over that.
        let behavior = cfg.default_behavior.unwrap_or(if cfg.rules.is_empty() {
            DefaultBehavior::Success
        } else {
            DefaultBehavior::Passthrough
        });
        let default = match behavior {
            DefaultBehavior::Passthrough => None,
            DefaultBehavior::Success => Some(MockResponse::Success(SuccessSpec {
                message: DEFAULT_SUCCESS_MESSAGE.to_owned(),
                templated: false,
                model: None,
                usage: None,
                finish_reason: "stop".to_owned(),
            })),
            DefaultBehavior::Error => Some(MockResponse::Error(GatewayError::new(
                500,
                ErrorClass::from_upstream_status(500),
                DEFAULT_ERROR_MESSAGE,
            ))),
        };
        Ok(Mocker {
            enabled: cfg.enabled,
            rules: rules.into_iter().map(|(_, r)| r).collect(),
            global_latency,
            default,
        })
    }
}

fn compile_latency(cfg: &LatencyConfig, path: &str) -> Result<Latency, ConfigRejection> {
    match cfg.kind {
        LatencyType::Fixed => {
            if cfg.max.is_some() {
                return Err(ConfigRejection::new(
                    format!("{path}.max"),
                    "only used with type \"uniform\"",
                ));
            }
            let min = cfg.min.map(|v| v.0).ok_or_else(|| {
                ConfigRejection::new(format!("{path}.min"), "required for type \"fixed\"")
            })?;
            Ok(Latency::Fixed(min))
        }
        LatencyType::Uniform => {
            let min = cfg.min.map_or(Duration::ZERO, |v| v.0);
            let max = cfg.max.map(|v| v.0).ok_or_else(|| {
                ConfigRejection::new(format!("{path}.max"), "required for type \"uniform\"")
            })?;
            if max < min {
                return Err(ConfigRejection::new(
                    format!("{path}.max"),
                    "must not be less than min",
                ));
            }
            Ok(Latency::Uniform(min, max))
        }
    }
}

fn compile_rule(cfg: &RuleConfig, path: &str) -> Result<Rule, ConfigRejection> {
    if cfg.name.trim().is_empty() {
        return Err(ConfigRejection::new(
            format!("{path}.name"),
            "must not be empty",
        ));
    }
    if !(cfg.probability.is_finite() && (0.0..=1.0).contains(&cfg.probability)) {
        return Err(ConfigRejection::new(
            format!("{path}.probability"),
            "must be between 0 and 1",
        ));
    }
    let cond = &cfg.conditions;
    let mut models = Vec::with_capacity(cond.models.len());
    for (k, m) in cond.models.iter().enumerate() {
        models.push(match m.strip_prefix("regex:") {
            Some(pattern) => ModelMatcher::Regex(Regex::new(pattern).map_err(|e| {
                ConfigRejection::new(format!("{path}.conditions.models[{k}]"), regex_reason(&e))
            })?),
            None => ModelMatcher::Exact(m.clone()),
        });
    }
    let message_regex = cond
        .message_regex
        .as_deref()
        .map(|p| {
            Regex::new(p).map_err(|e| {
                ConfigRejection::new(format!("{path}.conditions.message_regex"), regex_reason(&e))
            })
        })
        .transpose()?;
    let request_size = match &cond.request_size {
        None => None,
        Some(size) => {
            if let Some(max) = size.max
                && max < size.min
            {
                return Err(ConfigRejection::new(
                    format!("{path}.conditions.request_size.max"),
                    "must not be less than min",
                ));
            }
            Some((size.min, size.max))
        }
    };
    if cfg.responses.is_empty() {
        return Err(ConfigRejection::new(
            format!("{path}.responses"),
            "at least one response is required",
        ));
    }
    let mut responses = Vec::with_capacity(cfg.responses.len());
    let mut cumulative = Vec::with_capacity(cfg.responses.len());
    let mut total = 0.0;
    let mut last_weighted = 0;
    for (j, r) in cfg.responses.iter().enumerate() {
        let rpath = format!("{path}.responses[{j}]");
        if !(r.weight.is_finite() && r.weight >= 0.0) {
            return Err(ConfigRejection::new(
                format!("{rpath}.weight"),
                "must be a number >= 0",
            ));
        }
        if r.weight > 0.0 {
            last_weighted = j;
        }
        total += r.weight;
        cumulative.push(total);
        responses.push(compile_response(r, &rpath)?);
    }
    if total <= 0.0 {
        return Err(ConfigRejection::new(
            format!("{path}.responses"),
            "at least one response needs a weight above 0",
        ));
    }
    let latency = cfg
        .latency
        .as_ref()
        .map(|l| compile_latency(l, &format!("{path}.latency")))
        .transpose()?;
    Ok(Rule {
        name: cfg.name.clone(),
        probability: cfg.probability,
        providers: cond.providers.clone(),
        models,
        message_regex,
        request_size,
        responses,
        cumulative,
        last_weighted,
        latency,
    })
}

fn compile_response(cfg: &ResponseConfig, path: &str) -> Result<MockResponse, ConfigRejection> {
    match cfg.kind {
        ResponseType::Success => {
            if cfg.error.is_some() {
                return Err(ConfigRejection::new(
                    format!("{path}.error"),
                    "only allowed when type is \"error\"",
                ));
            }
            let content = cfg.content.as_ref().ok_or_else(|| {
                ConfigRejection::new(
                    format!("{path}.content"),
                    "required when type is \"success\"",
                )
            })?;
            compile_content(content, &format!("{path}.content")).map(MockResponse::Success)
        }
        ResponseType::Error => {
            if cfg.content.is_some() {
                return Err(ConfigRejection::new(
                    format!("{path}.content"),
                    "only allowed when type is \"success\"",
                ));
            }
            let e = cfg.error.as_ref().ok_or_else(|| {
                ConfigRejection::new(format!("{path}.error"), "required when type is \"error\"")
            })?;
            if e.message.trim().is_empty() {
                return Err(ConfigRejection::new(
                    format!("{path}.error.message"),
                    "must not be empty",
                ));
            }
            if !(400..=599).contains(&e.status_code) {
                return Err(ConfigRejection::new(
                    format!("{path}.error.status_code"),
                    "must be between 400 and 599",
                ));
            }
            let mut err = GatewayError::new(
                e.status_code,
                ErrorClass::from_upstream_status(e.status_code),
                e.message.clone(),
            );
            if let Some(t) = &e.error_type {
                err = err.with_error_type(t.clone());
            }
            if let Some(Code(c)) = &e.code {
                err = err.with_code(c.clone());
            }
            if !cfg.allow_fallbacks {
                err = err.without_fallbacks();
            }
            Ok(MockResponse::Error(err))
        }
    }
}

fn compile_content(cfg: &ContentConfig, path: &str) -> Result<SuccessSpec, ConfigRejection> {
    // As in Bifrost, a template wins over the static message.
    let (message, templated) = match (&cfg.message_template, &cfg.message) {
        (Some(t), _) => {
            check_template(t).map_err(|reason| {
                ConfigRejection::new(format!("{path}.message_template"), reason)
            })?;
            (t.clone(), t.contains("{{"))
        }
        (None, Some(m)) => (m.clone(), false),
        (None, None) => {
            return Err(ConfigRejection::new(
                format!("{path}.message"),
                "required (or message_template)",
            ));
        }
    };
    if let Some(fr) = &cfg.finish_reason
        && fr.trim().is_empty()
    {
        return Err(ConfigRejection::new(
            format!("{path}.finish_reason"),
            "must not be empty",
        ));
    }
    let usage = cfg.usage.as_ref().map(|u| MockUsage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u
            .total_tokens
            .unwrap_or(u.prompt_tokens.saturating_add(u.completion_tokens)),
    });
    Ok(SuccessSpec {
        message,
        templated,
        model: cfg.model.clone(),
        usage,
        finish_reason: cfg
            .finish_reason
            .clone()
            .unwrap_or_else(|| "stop".to_owned()),
    })
}

/// Only `{{provider}}` and `{{model}}` are supported; Bifrost's `{{faker.*}}` is not.
fn check_template(t: &str) -> Result<(), String> {
    let mut rest = t;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err("unclosed \"{{\"".to_owned());
        };
        let name = after[..end].trim();
        if name != "provider" && name != "model" {
            return Err(format!(
                "unsupported placeholder {{{{{name}}}}} (only {{{{provider}}}} and {{{{model}}}})"
            ));
        }
        rest = &after[end + 2..];
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Per request.

/// Lazily computed facts about a request, so a request pays for text extraction or size only
/// when a rule (or a usage estimate) needs them, and at most once.
struct Probe<'r> {
    req: &'r LlmRequest,
    text: Option<String>,
    size: Option<u64>,
}

impl<'r> Probe<'r> {
    fn new(req: &'r LlmRequest) -> Self {
        Probe {
            req,
            text: None,
            size: None,
        }
    }

    /// All caller-written text, one segment per line.
    fn text(&mut self) -> &str {
        self.text.get_or_insert_with(|| request_text(self.req))
    }

    fn size(&mut self) -> u64 {
        *self.size.get_or_insert_with(|| body_size(self.req))
    }
}

fn request_text(req: &LlmRequest) -> String {
    let Some(field) = request_text_field(req.request_type) else {
        return String::new();
    };
    let Some(Ok(mut value)) = req.body.get_as::<Value>(field) else {
        return String::new();
    };
    let mut out = String::new();
    visit_request_text(req.request_type, &mut value, &mut |s| {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(s);
    });
    out
}

/// Length of the body as `RawObject::to_bytes` would encode it, without encoding it.
fn body_size(req: &LlmRequest) -> u64 {
    let mut size = 2 + req.body.len().saturating_sub(1);
    for (k, v) in req.body.iter() {
        let key_len = if k.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
            serde_json::to_string(k).map_or(k.len() + 2, |s| s.len())
        } else {
            k.len() + 2
        };
        size += key_len + 1 + v.get().len();
    }
    size as u64
}

impl ModelMatcher {
    fn matches(&self, provider: &str, model: &str) -> bool {
        match self {
            // Either the bare model or the caller's `provider/model` spelling.
            ModelMatcher::Exact(m) => {
                m == model
                    || m.strip_prefix(provider)
                        .and_then(|r| r.strip_prefix('/'))
                        .is_some_and(|r| r == model)
            }
            ModelMatcher::Regex(re) => re.is_match(model),
        }
    }
}

impl Rule {
    fn matches(&self, probe: &mut Probe<'_>) -> bool {
        let req = probe.req;
        if !self.providers.is_empty() && !self.providers.contains(&req.provider) {
            return false;
        }
        if !self.models.is_empty()
            && !self
                .models
                .iter()
                .any(|m| m.matches(&req.provider, &req.model))
        {
            return false;
        }
        if let Some((min, max)) = self.request_size {
            let size = probe.size();
            if size < min || max.is_some_and(|max| size > max) {
                return false;
            }
        }
        if let Some(re) = &self.message_regex
            && !re.is_match(probe.text())
        {
            return false;
        }
        true
    }

    fn fires(&self) -> bool {
        if self.probability >= 1.0 {
            true
        } else if self.probability <= 0.0 {
            false
        } else {
            fastrand::f64() < self.probability
        }
    }

    fn pick(&self) -> Option<&MockResponse> {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let roll = fastrand::f64() * total;
        let i = self
            .cumulative
            .iter()
            .position(|c| *c > roll)
            // Rounding can leave the roll at the total; take the last response with weight.
            .unwrap_or(self.last_weighted);
        self.responses.get(i)
    }
}

impl Latency {
    fn sample(self) -> Duration {
        match self {
            Latency::Fixed(d) => d,
            Latency::Uniform(min, max) => {
                let (lo, hi) = (min.as_nanos() as u64, max.as_nanos() as u64);
                Duration::from_nanos(fastrand::u64(lo..=hi))
            }
        }
    }
}

impl Mocker {
    /// Which canned answer (if any) this request gets, and from which rule.
    fn decide(&self, probe: &mut Probe<'_>) -> Option<(Option<&Rule>, &MockResponse)> {
        for rule in &self.rules {
            if rule.matches(probe) {
                // Like Bifrost, a matched rule that does not fire lets the request through
                // (it does not fall to lower-priority rules or the default behaviour).
                if !rule.fires() {
                    return None;
                }
                return rule.pick().map(|r| (Some(rule), r));
            }
        }
        self.default.as_ref().map(|r| (None, r))
    }
}

impl Plugin for Mocker {
    fn name(&self) -> &str {
        NAME
    }

    fn hooks(&self) -> HookSet {
        HookSet {
            pre_llm: true,
            ..HookSet::default()
        }
    }

    fn pre_llm<'a>(
        &'a self,
        ctx: &'a mut RequestContext,
        req: &'a mut LlmRequest,
    ) -> BoxFuture<'a, Result<PreLlmOutcome, PluginFailure>> {
        Box::pin(async move {
            if !self.enabled || req.request_type == RequestType::ListModels {
                return Ok(PreLlmOutcome::Continue);
            }
            let req: &LlmRequest = req;
            let mut probe = Probe::new(req);
            let Some((rule, response)) = self.decide(&mut probe) else {
                return Ok(PreLlmOutcome::Continue);
            };
            let latency = rule.and_then(|r| r.latency).or(self.global_latency);
            if let Some(latency) = latency {
                let delay = latency.sample();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
            let kind = match response {
                MockResponse::Success(_) => "success",
                MockResponse::Error(_) => "error",
            };
            ctx.values.insert(
                NAME.to_owned(),
                json!({ "rule": rule.map(|r| r.name.as_str()), "response": kind }),
            );
            let result = match response {
                MockResponse::Error(err) => Err(err.clone()),
                MockResponse::Success(spec) => Ok(build_success(spec, &mut probe)?),
            };
            Ok(PreLlmOutcome::ShortCircuit(result))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Building OpenAI-shaped bodies and chunks.

fn build_success(spec: &SuccessSpec, probe: &mut Probe<'_>) -> Result<LlmResponse, PluginFailure> {
    let req = probe.req;
    let message: Cow<'_, str> = if spec.templated {
        Cow::Owned(
            spec.message
                .replace("{{provider}}", &req.provider)
                .replace("{{model}}", &req.model),
        )
    } else {
        Cow::Borrowed(&spec.message)
    };
    let usage = match spec.usage {
        Some(u) => u,
        None => {
            // A rough (4 bytes per token) estimate keeps budgets and cost tracking moving in
            // proportion to what was sent, which fixed numbers would not.
            let prompt = estimate_tokens(probe.text());
            let completion = if req.request_type == RequestType::Embedding {
                0
            } else {
                estimate_tokens(&message)
            };
            MockUsage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: prompt + completion,
            }
        }
    };
    let model = spec.model.as_deref().unwrap_or(&req.model);
    let route = RouteInfo {
        provider: req.provider.clone(),
        model: req.model.clone(),
        key_id: None,
        ..RouteInfo::default()
    };
    let reply = Reply {
        created: unix_now(),
        model,
        message: &message,
        finish_reason: &spec.finish_reason,
        usage,
    };
    if req.stream && req.request_type.supports_stream() {
        let chunks = reply.stream_chunks(req.request_type, req.wants_stream_usage())?;
        let stream: ChunkStream = Box::pin(futures_util::stream::iter(chunks.into_iter().map(Ok)));
        return Ok(LlmResponse::Stream {
            chunks: stream,
            route,
        });
    }
    let body = match req.request_type {
        RequestType::TextCompletion => reply.text_completion(),
        RequestType::Embedding => reply.embedding(embedding_inputs(req)),
        _ => reply.chat_completion(),
    };
    Ok(LlmResponse::Complete {
        body: to_bytes(&body)?,
        route,
    })
}

struct Reply<'a> {
    created: u64,
    model: &'a str,
    message: &'a str,
    finish_reason: &'a str,
    usage: MockUsage,
}

impl Reply<'_> {
    fn chat_completion(&self) -> Value {
        json!({
            "id": mock_id("chatcmpl-mock-"),
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": self.message},
                "logprobs": null,
                "finish_reason": self.finish_reason,
            }],
            "usage": self.usage,
        })
    }

    fn text_completion(&self) -> Value {
        json!({
            "id": mock_id("cmpl-mock-"),
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "text": self.message,
                "index": 0,
                "logprobs": null,
                "finish_reason": self.finish_reason,
            }],
            "usage": self.usage,
        })
    }

    fn embedding(&self, inputs: usize) -> Value {
        let data: Vec<Value> = (0..inputs)
            .map(|i| {
                json!({
                    "object": "embedding",
                    "index": i,
                    "embedding": vec![0.0_f64; EMBEDDING_DIMENSIONS],
                })
            })
            .collect();
        json!({
            "object": "list",
            "data": data,
            "model": self.model,
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "total_tokens": self.usage.prompt_tokens,
            },
        })
    }

    /// OpenAI's chunk sequence: (chat only) a role chunk, the content in a few deltas, a chunk
    /// with `finish_reason`, and a usage chunk with empty `choices` when the caller asked.
    fn stream_chunks(
        &self,
        request_type: RequestType,
        with_usage: bool,
    ) -> Result<Vec<Bytes>, PluginFailure> {
        let chat = request_type == RequestType::ChatCompletion;
        let (id, object) = if chat {
            (mock_id("chatcmpl-mock-"), "chat.completion.chunk")
        } else {
            (mock_id("cmpl-mock-"), "text_completion")
        };
        let envelope = |choices: Value, usage: Value| {
            let mut chunk = json!({
                "id": id,
                "object": object,
                "created": self.created,
                "model": self.model,
                "choices": choices,
            });
            if with_usage && let Value::Object(map) = &mut chunk {
                map.insert("usage".to_owned(), usage);
            }
            chunk
        };
        let choice = |piece: &str, finish: Value| {
            if chat {
                let delta = if finish.is_null() {
                    json!({ "content": piece })
                } else {
                    json!({})
                };
                json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }])
            } else {
                json!([{ "text": piece, "index": 0, "logprobs": null, "finish_reason": finish }])
            }
        };
        let mut chunks = Vec::with_capacity(MAX_CONTENT_CHUNKS + 3);
        if chat {
            chunks.push(envelope(
                json!([{
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": null,
                    "finish_reason": null,
                }]),
                Value::Null,
            ));
        }
        for piece in split_pieces(self.message, MAX_CONTENT_CHUNKS) {
            chunks.push(envelope(choice(piece, Value::Null), Value::Null));
        }
        chunks.push(envelope(
            choice("", Value::String(self.finish_reason.to_owned())),
            Value::Null,
        ));
        if with_usage {
            chunks.push(envelope(json!([]), json!(self.usage)));
        }
        chunks.iter().map(to_bytes).collect()
    }
}

/// Splits text at whitespace into at most `max` contiguous pieces of similar word counts.
fn split_pieces(text: &str, max: usize) -> Vec<&str> {
    let words: Vec<&str> = text.split_inclusive(char::is_whitespace).collect();
    if words.is_empty() || max == 0 {
        return Vec::new();
    }
    let per = words.len().div_ceil(max);
    let mut out = Vec::with_capacity(max);
    let mut pos = 0;
    for group in words.chunks(per) {
        let len: usize = group.iter().map(|w| w.len()).sum();
        out.push(&text[pos..pos + len]);
        pos += len;
    }
    out
}

/// How many embeddings the caller asked for: one per string (or token array) in `input`.
fn embedding_inputs(req: &LlmRequest) -> usize {
    match req.body.get_as::<Value>("input") {
        Some(Ok(Value::Array(items))) => {
            if items.iter().all(Value::is_number) {
                // A single token array.
                1
            } else {
                items.len()
            }
        }
        _ => 1,
    }
}

fn estimate_tokens(text: &str) -> u64 {
    if text.is_empty() {
        0
    } else {
        text.len().div_ceil(4).max(1) as u64
    }
}

fn mock_id(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 24);
    id.push_str(prefix);
    id.extend(std::iter::repeat_with(fastrand::alphanumeric).take(24));
    id
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn to_bytes(v: &Value) -> Result<Bytes, PluginFailure> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| PluginFailure(format!("mocker could not encode its response: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_core::RawObject;
    use futures_util::StreamExt;

    fn req(rt: RequestType, provider: &str, model: &str, body: Value) -> LlmRequest {
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        LlmRequest {
            request_type: rt,
            provider: provider.into(),
            model: model.into(),
            fallbacks: vec![],
            stream,
            body: RawObject::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap(),
        }
    }

    fn chat(text: &str) -> LlmRequest {
        req(
            RequestType::ChatCompletion,
            "openai",
            "gpt-4o",
            json!({"messages":[{"role":"user","content":text}]}),
        )
    }

    fn ctx() -> RequestContext {
        RequestContext::new("req-1", Default::default())
    }

    async fn run(m: &Mocker, r: &mut LlmRequest) -> Option<Result<LlmResponse, GatewayError>> {
        match m.pre_llm(&mut ctx(), r).await.unwrap() {
            PreLlmOutcome::Continue => None,
            PreLlmOutcome::ShortCircuit(res) => Some(res),
        }
    }

    fn body_json(resp: LlmResponse) -> Value {
        match resp {
            LlmResponse::Complete { body, .. } => serde_json::from_slice(&body).unwrap(),
            LlmResponse::Stream { .. } => panic!("expected a complete response"),
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10µs").unwrap(), Duration::from_micros(10));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5").unwrap_err().contains("missing a unit"));
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("11m").unwrap_err().contains("limit"));
    }

    #[test]
    fn latency_accepts_numbers_and_strings() {
        let m = Mocker::from_config(&json!({
            "global_latency": {"type":"uniform","min":10,"max":"1s"}
        }))
        .unwrap();
        assert!(matches!(
            m.global_latency,
            Some(Latency::Uniform(a, b)) if a == Duration::from_millis(10) && b == Duration::from_secs(1)
        ));
        // `null` counts as absent (min of a uniform latency defaults to 0).
        let m = Mocker::from_config(&json!({
            "global_latency": {"type":"uniform","min":null,"max":2.5}
        }))
        .unwrap();
        assert!(matches!(
            m.global_latency,
            Some(Latency::Uniform(a, b)) if a.is_zero() && b == Duration::from_micros(2500)
        ));
        // A Bifrost-style nanosecond integer is caught by the limit instead of sleeping for days.
        let err = Mocker::from_config(&json!({
            "global_latency": {"type":"fixed","min":250000000}
        }))
        .unwrap_err();
        assert_eq!(err.field, "global_latency.min");
        let err = Mocker::from_config(&json!({"global_latency": {"type":"uniform","min":5}}))
            .unwrap_err();
        assert_eq!(err.field, "global_latency.max");
        let err = Mocker::from_config(&json!({"global_latency": {"type":"fixed","min":5,"max":6}}))
            .unwrap_err();
        assert_eq!(err.field, "global_latency.max");
    }

    #[test]
    fn rejections_have_paths() {
        let cases = [
            (
                json!({"rules":[{"name":"r","probability":2,"responses":[{"type":"success","content":{"message":"x"}}]}]}),
                "rules[0].probability",
            ),
            (
                json!({"rules":[{"name":"r","responses":[{"type":"success","content":{"message":"x"}},{"type":"success","weight":-1,"content":{"message":"y"}}]}]}),
                "rules[0].responses[1].weight",
            ),
            (
                json!({"rules":[{"name":"r","responses":[{"type":"error","error":{"message":"x","status_code":200}}]}]}),
                "rules[0].responses[0].error.status_code",
            ),
            (
                json!({"rules":[{"name":"r","conditions":{"message_regex":"("},"responses":[{"type":"success","content":{"message":"x"}}]}]}),
                "rules[0].conditions.message_regex",
            ),
            (
                json!({"rules":[{"name":"r","conditions":{"models":["a","regex:["]},"responses":[{"type":"success","content":{"message":"x"}}]}]}),
                "rules[0].conditions.models[1]",
            ),
            (
                json!({"rules":[{"name":"r","responses":[]}]}),
                "rules[0].responses",
            ),
            (
                json!({"rules":[{"name":"r","responses":[{"type":"success"}]}]}),
                "rules[0].responses[0].content",
            ),
            (
                json!({"rules":[{"name":"r","responses":[{"type":"error","content":{"message":"x"}}]}]}),
                "rules[0].responses[0].content",
            ),
            (
                json!({"rules":[{"name":"r","responses":[{"type":"success","weight":0,"content":{"message":"x"}}]}]}),
                "rules[0].responses",
            ),
            (
                json!({"rules":[{"name":"r","responses":[{"type":"success","content":{"message_template":"{{faker.name}}"}}]}]}),
                "rules[0].responses[0].content.message_template",
            ),
            (
                json!({"rules":[{"name":"r","responses":[{"type":"succes","content":{"message":"x"}}]}]}),
                "rules[0].responses[0].type",
            ),
            (
                json!({"rules":[{"name":"r","conditions":{"request_size":{"min":10,"max":5}},"responses":[{"type":"success","content":{"message":"x"}}]}]}),
                "rules[0].conditions.request_size.max",
            ),
            (
                json!({"rules":[{"name":"r","condition":{},"responses":[]}]}),
                "rules[0].condition",
            ),
            (json!({"default_behavior":"mock"}), "default_behavior"),
            (json!({"rules":[{"responses":[]}]}), "rules[0].name"),
        ];
        for (cfg, field) in cases {
            let err = Mocker::from_config(&cfg).unwrap_err();
            assert_eq!(err.field, field, "{cfg} -> {err}");
        }
    }

    #[tokio::test]
    async fn empty_config_mocks_like_bifrost_and_explicit_passthrough_does_not() {
        let m = Mocker::from_config(&json!({})).unwrap();
        let resp = run(&m, &mut chat("hi")).await.unwrap().unwrap();
        let v = body_json(resp);
        assert_eq!(
            v["choices"][0]["message"]["content"],
            DEFAULT_SUCCESS_MESSAGE
        );
        let m = Mocker::from_config(&json!({"default_behavior":"passthrough"})).unwrap();
        assert!(run(&m, &mut chat("hi")).await.is_none());
    }

    #[tokio::test]
    async fn template_and_usage() {
        let m = Mocker::from_config(&json!({"rules":[{"name":"t","responses":[{"type":"success",
            "content":{"message_template":"from {{provider}} / {{ model }}?","usage":{"prompt_tokens":3,"completion_tokens":4}}}]}]}))
        .unwrap();
        // `{{ model }}` with spaces passes validation but only exact spellings are replaced.
        let v = body_json(run(&m, &mut chat("hi")).await.unwrap().unwrap());
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "from openai / {{ model }}?"
        );
        assert_eq!(v["usage"]["total_tokens"], 7);
    }

    #[tokio::test]
    async fn text_completion_and_embedding_shapes() {
        let m = Mocker::from_config(&json!({"default_behavior":"success","rules":[]})).unwrap();
        let mut r = req(
            RequestType::TextCompletion,
            "openai",
            "gpt-3.5-turbo-instruct",
            json!({"prompt":"Say hi"}),
        );
        let v = body_json(run(&m, &mut r).await.unwrap().unwrap());
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], DEFAULT_SUCCESS_MESSAGE);
        assert!(v["id"].as_str().unwrap().starts_with("cmpl-mock-"));

        let mut r = req(
            RequestType::Embedding,
            "openai",
            "text-embedding-3-small",
            json!({"input":["a","b"]}),
        );
        let v = body_json(run(&m, &mut r).await.unwrap().unwrap());
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);
    }

    #[tokio::test]
    async fn text_completion_stream() {
        let m = Mocker::from_config(&json!({"default_behavior":"success","rules":[]})).unwrap();
        let mut r = req(
            RequestType::TextCompletion,
            "openai",
            "m",
            json!({"prompt":"x","stream":true}),
        );
        let Some(Ok(LlmResponse::Stream { chunks, .. })) = run(&m, &mut r).await else {
            panic!("expected a stream")
        };
        let chunks: Vec<Value> = chunks
            .map(|c| serde_json::from_slice(&c.unwrap()).unwrap())
            .collect()
            .await;
        let text: String = chunks
            .iter()
            .map(|c| c["choices"][0]["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, DEFAULT_SUCCESS_MESSAGE);
        assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
        assert_eq!(
            chunks.last().unwrap()["choices"][0]["finish_reason"],
            "stop"
        );
    }

    #[test]
    fn splitting_keeps_all_text() {
        let text = "one two three four five six seven";
        let pieces = split_pieces(text, 4);
        assert_eq!(pieces.len(), 4);
        assert_eq!(pieces.concat(), text);
        assert_eq!(split_pieces("single", 4), ["single"]);
        assert!(split_pieces("", 4).is_empty());
    }

    #[test]
    fn body_size_matches_encoding() {
        let r = req(
            RequestType::ChatCompletion,
            "openai",
            "m",
            json!({"messages":[{"role":"user","content":"hé \"q\""}],"a\"b":1,"n":null}),
        );
        assert_eq!(body_size(&r), r.body.to_bytes().len() as u64);
    }

    #[test]
    fn model_matching() {
        let exact = ModelMatcher::Exact("openai/gpt-4o".into());
        assert!(exact.matches("openai", "gpt-4o"));
        assert!(!exact.matches("azure", "gpt-4o"));
        assert!(ModelMatcher::Exact("gpt-4o".into()).matches("azure", "gpt-4o"));
        let re = ModelMatcher::Regex(Regex::new("^gpt-4").unwrap());
        assert!(re.matches("openai", "gpt-4o-mini"));
        assert!(!re.matches("openai", "o1"));
    }
}
