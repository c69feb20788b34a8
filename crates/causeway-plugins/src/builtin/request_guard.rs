//! The `request_guard` built-in: a regex guardrail that blocks or redacts caller text before it
//! reaches a provider, and completion text before it reaches the caller (whole responses and
//! stream chunks). Patterns compile once; a `RegexSet` answers the common "nothing matched".

use bytes::Bytes;
use causeway_core::{ErrorClass, GatewayError, LlmRequest, LlmResponse, RequestContext};
use regex::{NoExpand, Regex, RegexSet, RegexSetBuilder};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::builtin::{
    ConfigRejection, parse_config, regex_reason, request_text_field, visit_content,
    visit_request_text,
};
use crate::plugin::{BoxFuture, ChunkOutcome, HookSet, Plugin, PluginFailure, PreLlmOutcome};

/// The name the plugin reports (`actualName`), also its key in `RequestContext::values`.
pub const NAME: &str = "request_guard";

const DEFAULT_BLOCK_MESSAGE: &str = "request blocked by guard rule {rule}";
const DEFAULT_REDACT_WITH: &str = "[REDACTED]";
const DEFAULT_MAX_SCAN_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GuardConfig {
    #[serde(default)]
    rules: Vec<RuleConfig>,
    #[serde(default = "default_block_status")]
    block_status: u16,
    #[serde(default = "default_block_message")]
    block_message: String,
    #[serde(default = "default_redact_with")]
    redact_with: String,
    #[serde(default = "default_max_scan_bytes")]
    max_scan_bytes: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    name: String,
    pattern: String,
    action: Action,
    #[serde(default)]
    applies_to: AppliesTo,
    #[serde(default = "yes")]
    case_insensitive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    Block,
    Redact,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum AppliesTo {
    #[default]
    Request,
    Response,
    Both,
}

fn default_block_status() -> u16 {
    400
}

fn default_block_message() -> String {
    DEFAULT_BLOCK_MESSAGE.to_owned()
}

fn default_redact_with() -> String {
    DEFAULT_REDACT_WITH.to_owned()
}

fn default_max_scan_bytes() -> u64 {
    DEFAULT_MAX_SCAN_BYTES
}

fn yes() -> bool {
    true
}

/// A regex guardrail. Build it with [`RequestGuard::from_config`].
#[derive(Debug)]
pub struct RequestGuard {
    request: RuleSet,
    response: RuleSet,
    redact_with: String,
    max_scan: usize,
}

/// The rules of one direction; `set` pattern `i` is `rules[i]`.
#[derive(Debug)]
struct RuleSet {
    set: RegexSet,
    rules: Vec<GuardRule>,
    has_block: bool,
}

#[derive(Debug)]
struct GuardRule {
    name: String,
    regex: Regex,
    /// Built once for block rules (an `Arc` clone per blocked request).
    block: Option<GatewayError>,
}

/// What scanning one body (or chunk) found.
enum Verdict {
    Clean,
    /// Index of the first block rule (config order) that matched.
    Blocked(usize),
    Redacted {
        count: usize,
        rules: Vec<usize>,
    },
}

type Walk<'w> = &'w dyn Fn(&mut Value, &mut dyn FnMut(&mut String));

impl RequestGuard {
    /// Parses and validates the plugin config; every rejection names the offending JSON path.
    pub fn from_config(config: &Value) -> Result<Self, ConfigRejection> {
        let cfg: GuardConfig = parse_config(config)?;
        if !(400..=499).contains(&cfg.block_status) {
            return Err(ConfigRejection::new(
                "block_status",
                "must be between 400 and 499",
            ));
        }
        if cfg.max_scan_bytes == 0 {
            return Err(ConfigRejection::new("max_scan_bytes", "must be at least 1"));
        }
        let max_scan = usize::try_from(cfg.max_scan_bytes).unwrap_or(usize::MAX);
        let mut request = Vec::new();
        let mut response = Vec::new();
        for (i, rule) in cfg.rules.iter().enumerate() {
            let path = format!("rules[{i}]");
            if rule.name.trim().is_empty() {
                return Err(ConfigRejection::new(
                    format!("{path}.name"),
                    "must not be empty",
                ));
            }
            if cfg.rules[..i].iter().any(|r| r.name == rule.name) {
                // The name is the error `code` callers see; two rules sharing it are ambiguous.
                return Err(ConfigRejection::new(
                    format!("{path}.name"),
                    format!("duplicate rule name {:?}", rule.name),
                ));
            }
            if rule.pattern.is_empty() {
                return Err(ConfigRejection::new(
                    format!("{path}.pattern"),
                    "must not be empty",
                ));
            }
            // Checked on its own first so the error points at the caller's pattern, not ours.
            Regex::new(&rule.pattern)
                .map_err(|e| ConfigRejection::new(format!("{path}.pattern"), regex_reason(&e)))?;
            let source = if rule.case_insensitive {
                format!("(?i){}", rule.pattern)
            } else {
                rule.pattern.clone()
            };
            let regex = Regex::new(&source)
                .map_err(|e| ConfigRejection::new(format!("{path}.pattern"), regex_reason(&e)))?;
            if regex.is_match("") {
                // It would match everywhere: every text would be blocked or filled with markers.
                return Err(ConfigRejection::new(
                    format!("{path}.pattern"),
                    "matches the empty string",
                ));
            }
            let message = cfg.block_message.replace("{rule}", &rule.name);
            let make = |kind: &str| GuardRule {
                name: rule.name.clone(),
                regex: regex.clone(),
                block: (rule.action == Action::Block).then(|| {
                    GatewayError::new(
                        cfg.block_status,
                        ErrorClass::PolicyAccessDenied,
                        message.clone(),
                    )
                    .with_type(kind)
                    .with_code(rule.name.clone())
                    // A blocked request must not be retried on another provider.
                    .without_fallbacks()
                }),
            };
            if matches!(rule.applies_to, AppliesTo::Request | AppliesTo::Both) {
                request.push((source.clone(), make("request_blocked")));
            }
            if matches!(rule.applies_to, AppliesTo::Response | AppliesTo::Both) {
                response.push((source, make("response_blocked")));
            }
        }
        Ok(RequestGuard {
            request: RuleSet::build(request)?,
            response: RuleSet::build(response)?,
            redact_with: cfg.redact_with,
            max_scan,
        })
    }
}

impl RuleSet {
    fn build(rules: Vec<(String, GuardRule)>) -> Result<Self, ConfigRejection> {
        let set = RegexSetBuilder::new(rules.iter().map(|(source, _)| source))
            .build()
            .map_err(|e| ConfigRejection::new("rules", regex_reason(&e)))?;
        let rules: Vec<GuardRule> = rules.into_iter().map(|(_, r)| r).collect();
        Ok(RuleSet {
            set,
            has_block: rules.iter().any(|r| r.block.is_some()),
            rules,
        })
    }

    fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Scans the strings `walk` visits in `value`, at most `max_scan` bytes in total (a longer
    /// text is scanned only up to there). Blocking wins over redaction; redaction rewrites the
    /// strings in place. A clean value is only read.
    fn scan(
        &self,
        max_scan: usize,
        redact_with: &str,
        value: &mut Value,
        walk: Walk<'_>,
    ) -> Verdict {
        // Pass 1, read only: does anything match, and is it a block?
        let mut budget = max_scan;
        let mut hit = false;
        let mut blocked: Option<usize> = None;
        walk(value, &mut |s: &mut String| {
            let Some(head) = take_budget(s, &mut budget) else {
                return;
            };
            if !self.set.is_match(head) {
                return;
            }
            hit = true;
            if self.has_block {
                // Set indices come in ascending (config) order.
                let first_block = self
                    .set
                    .matches(head)
                    .iter()
                    .find(|i| self.rules[*i].block.is_some());
                if let Some(i) = first_block {
                    blocked = Some(blocked.map_or(i, |b| b.min(i)));
                }
            }
        });
        if !hit {
            return Verdict::Clean;
        }
        if let Some(i) = blocked {
            return Verdict::Blocked(i);
        }
        // Pass 2: only redact rules matched; rewrite the scanned part of each matching string.
        let mut budget = max_scan;
        let mut count = 0;
        let mut rules: Vec<usize> = Vec::new();
        walk(value, &mut |s: &mut String| {
            let Some(head) = take_budget(s, &mut budget) else {
                return;
            };
            let matched = self.set.matches(head);
            if !matched.matched_any() {
                return;
            }
            let cut = head.len();
            let mut text = head.to_owned();
            for i in matched.iter() {
                let re = &self.rules[i].regex;
                let n = re.find_iter(&text).count();
                if n == 0 {
                    // An earlier rule's replacement already covered this match.
                    continue;
                }
                count += n;
                if !rules.contains(&i) {
                    rules.push(i);
                }
                text = re.replace_all(&text, NoExpand(redact_with)).into_owned();
            }
            text.push_str(&s[cut..]);
            *s = text;
        });
        Verdict::Redacted { count, rules }
    }
}

/// The part of `s` still within the scan budget (cut at a char boundary), charging the whole
/// string's length so both passes see the same cut points. `None` once the budget is spent.
fn take_budget<'s>(s: &'s str, budget: &mut usize) -> Option<&'s str> {
    if *budget == 0 {
        return None;
    }
    let cut = s.floor_char_boundary((*budget).min(s.len()));
    *budget -= s.len().min(*budget);
    Some(&s[..cut])
}

/// Completion text of a non-stream response: `choices[].message.content` (chat) and
/// `choices[].text` (text completions).
fn walk_response(value: &mut Value, f: &mut dyn FnMut(&mut String)) {
    walk_choices(value, "message", f);
}

/// Completion text of a stream chunk: `choices[].delta.content` and `choices[].text`.
fn walk_chunk(value: &mut Value, f: &mut dyn FnMut(&mut String)) {
    walk_choices(value, "delta", f);
}

fn walk_choices(value: &mut Value, message_key: &str, f: &mut dyn FnMut(&mut String)) {
    let Some(Value::Array(choices)) = value.get_mut("choices") else {
        return;
    };
    for choice in choices {
        if let Some(content) = choice
            .get_mut(message_key)
            .and_then(|m| m.get_mut("content"))
        {
            visit_content(content, f);
        }
        if let Some(Value::String(text)) = choice.get_mut("text") {
            f(text);
        }
    }
}

impl RequestGuard {
    /// Adds to `ctx.values["request_guard"]`: `redactions` (running total), `rules` (names that
    /// redacted), `blocked` (the rule that blocked).
    fn record(&self, ctx: &mut RequestContext, set: &RuleSet, verdict: &Verdict) {
        let entry = ctx
            .values
            .entry(NAME)
            .or_insert_with(|| json!({ "redactions": 0 }));
        if !entry.is_object() {
            *entry = json!({ "redactions": 0 });
        }
        let Value::Object(map) = entry else {
            return;
        };
        match verdict {
            Verdict::Clean => {}
            Verdict::Blocked(i) => {
                if let Some(rule) = set.rules.get(*i) {
                    map.insert("blocked".to_owned(), Value::String(rule.name.clone()));
                }
            }
            Verdict::Redacted { count, rules } => {
                let before = map.get("redactions").and_then(Value::as_u64).unwrap_or(0);
                map.insert("redactions".to_owned(), json!(before + *count as u64));
                let list = map.entry("rules").or_insert_with(|| json!([]));
                if let Value::Array(list) = list {
                    for i in rules {
                        if let Some(rule) = set.rules.get(*i)
                            && !list.iter().any(|v| v.as_str() == Some(rule.name.as_str()))
                        {
                            list.push(Value::String(rule.name.clone()));
                        }
                    }
                }
            }
        }
    }

    fn block_error(set: &RuleSet, i: usize) -> Result<GatewayError, PluginFailure> {
        set.rules
            .get(i)
            .and_then(|r| r.block.clone())
            .ok_or_else(|| PluginFailure("request_guard: blocking rule not found".to_owned()))
    }
}

fn encode(value: &Value) -> Result<Bytes, PluginFailure> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| PluginFailure(format!("request_guard could not re-encode JSON: {e}")))
}

impl Plugin for RequestGuard {
    fn name(&self) -> &str {
        NAME
    }

    /// Only the directions that have rules: a request-only guard costs nothing on responses.
    fn hooks(&self) -> HookSet {
        let response = !self.response.is_empty();
        HookSet {
            pre_llm: !self.request.is_empty(),
            post_llm: response,
            stream_chunk: response,
            ..HookSet::default()
        }
    }

    fn pre_llm<'a>(
        &'a self,
        ctx: &'a mut RequestContext,
        req: &'a mut LlmRequest,
    ) -> BoxFuture<'a, Result<PreLlmOutcome, PluginFailure>> {
        Box::pin(async move {
            if self.request.is_empty() {
                return Ok(PreLlmOutcome::Continue);
            }
            let Some(field) = request_text_field(req.request_type) else {
                return Ok(PreLlmOutcome::Continue);
            };
            // A missing or malformed field carries no text to guard; the provider rejects it.
            let Some(Ok(mut value)) = req.body.get_as::<Value>(field) else {
                return Ok(PreLlmOutcome::Continue);
            };
            let rt = req.request_type;
            let walk = |v: &mut Value, f: &mut dyn FnMut(&mut String)| visit_request_text(rt, v, f);
            let verdict = self
                .request
                .scan(self.max_scan, &self.redact_with, &mut value, &walk);
            match verdict {
                Verdict::Clean => Ok(PreLlmOutcome::Continue),
                Verdict::Blocked(i) => {
                    self.record(ctx, &self.request, &verdict);
                    let err = Self::block_error(&self.request, i)?;
                    Ok(PreLlmOutcome::ShortCircuit(Err(err)))
                }
                Verdict::Redacted { .. } => {
                    // Only this field is re-encoded; every other field stays byte for byte.
                    req.body.set(field, &value).map_err(|e| {
                        PluginFailure(format!("request_guard could not rewrite {field}: {e}"))
                    })?;
                    self.record(ctx, &self.request, &verdict);
                    Ok(PreLlmOutcome::Continue)
                }
            }
        })
    }

    fn post_llm<'a>(
        &'a self,
        ctx: &'a mut RequestContext,
        result: &'a mut Result<LlmResponse, GatewayError>,
    ) -> BoxFuture<'a, Result<(), PluginFailure>> {
        Box::pin(async move {
            if self.response.is_empty() {
                return Ok(());
            }
            // Streams are guarded chunk by chunk in `stream_chunk`.
            let Ok(LlmResponse::Complete { body, .. }) = result else {
                return Ok(());
            };
            let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
                return Ok(());
            };
            let verdict =
                self.response
                    .scan(self.max_scan, &self.redact_with, &mut value, &walk_response);
            match verdict {
                Verdict::Clean => {}
                Verdict::Redacted { .. } => {
                    *body = encode(&value)?;
                    self.record(ctx, &self.response, &verdict);
                }
                Verdict::Blocked(i) => {
                    let err = Self::block_error(&self.response, i)?;
                    self.record(ctx, &self.response, &verdict);
                    *result = Err(err);
                }
            }
            Ok(())
        })
    }

    /// Each chunk is scanned on its own: a match split across two chunks is not caught.
    fn stream_chunk(
        &self,
        ctx: &mut RequestContext,
        chunk: Bytes,
    ) -> Result<ChunkOutcome, PluginFailure> {
        if self.response.is_empty() {
            return Ok(ChunkOutcome::Send(chunk));
        }
        let Ok(mut value) = serde_json::from_slice::<Value>(&chunk) else {
            return Ok(ChunkOutcome::Send(chunk));
        };
        let verdict = self
            .response
            .scan(self.max_scan, &self.redact_with, &mut value, &walk_chunk);
        match verdict {
            Verdict::Clean => Ok(ChunkOutcome::Send(chunk)),
            Verdict::Redacted { .. } => {
                let out = encode(&value)?;
                self.record(ctx, &self.response, &verdict);
                Ok(ChunkOutcome::Send(out))
            }
            Verdict::Blocked(i) => {
                let err = Self::block_error(&self.response, i)?;
                self.record(ctx, &self.response, &verdict);
                Ok(ChunkOutcome::End(err))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_core::{RawObject, RequestType, RouteInfo};

    fn guard(cfg: Value) -> RequestGuard {
        RequestGuard::from_config(&cfg).unwrap()
    }

    fn chat(body: Value) -> LlmRequest {
        LlmRequest {
            request_type: RequestType::ChatCompletion,
            provider: "openai".into(),
            model: "gpt-4o".into(),
            fallbacks: vec![],
            stream: false,
            body: RawObject::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap(),
        }
    }

    fn ctx() -> RequestContext {
        RequestContext::new("req-1", Default::default())
    }

    #[test]
    fn rejections() {
        let cases = [
            (
                json!({"rules":[{"name":"a","pattern":"(","action":"block"}]}),
                "rules[0].pattern",
            ),
            (
                json!({"rules":[{"name":"a","pattern":"x*","action":"block"}]}),
                "rules[0].pattern",
            ),
            (
                json!({"rules":[{"name":"a","pattern":"x","action":"drop"}]}),
                "rules[0].action",
            ),
            (
                json!({"rules":[{"name":"a","pattern":"x","action":"block","applies":"both"}]}),
                "rules[0].applies",
            ),
            (
                json!({"rules":[{"name":"a","pattern":"x","action":"block"},{"name":"a","pattern":"y","action":"redact"}]}),
                "rules[1].name",
            ),
            (
                json!({"rules":[{"name":"","pattern":"x","action":"block"}]}),
                "rules[0].name",
            ),
            (json!({"block_status":200}), "block_status"),
            (json!({"block_status":503}), "block_status"),
            (json!({"max_scan_bytes":0}), "max_scan_bytes"),
            (json!({"redact":"x"}), "redact"),
        ];
        for (cfg, field) in cases {
            let err = RequestGuard::from_config(&cfg).unwrap_err();
            assert_eq!(err.field, field, "{cfg} -> {err}");
        }
    }

    #[test]
    fn hooks_follow_directions() {
        let g = guard(json!({"rules":[{"name":"a","pattern":"x","action":"block"}]}));
        assert_eq!(
            g.hooks(),
            HookSet {
                pre_llm: true,
                ..HookSet::default()
            }
        );
        let g = guard(
            json!({"rules":[{"name":"a","pattern":"x","action":"block","applies_to":"both"}]}),
        );
        let h = g.hooks();
        assert!(h.pre_llm && h.post_llm && h.stream_chunk && !h.http_pre);
    }

    #[tokio::test]
    async fn case_sensitivity_and_literal_replacement() {
        let g = guard(json!({
            "redact_with": "$1 [gone]",
            "rules":[
                {"name":"ci","pattern":"secret","action":"redact"},
                {"name":"cs","pattern":"Token","action":"redact","case_insensitive":false}
            ]
        }));
        let mut r = chat(json!({"messages":[{"role":"user","content":"SECRET token Token"}]}));
        let mut c = ctx();
        let out = g.pre_llm(&mut c, &mut r).await.unwrap();
        assert!(matches!(out, PreLlmOutcome::Continue));
        let v: Value = serde_json::from_slice(&r.body.to_bytes()).unwrap();
        // `$1` is not expanded: the replacement is literal.
        assert_eq!(v["messages"][0]["content"], "$1 [gone] token $1 [gone]");
        assert_eq!(c.values[NAME]["redactions"], 2);
        assert_eq!(c.values[NAME]["rules"], json!(["ci", "cs"]));
    }

    #[tokio::test]
    async fn block_wins_over_redact_and_first_block_rule_is_reported() {
        let g = guard(json!({"rules":[
            {"name":"r","pattern":"foo","action":"redact"},
            {"name":"b1","pattern":"bar","action":"block"},
            {"name":"b2","pattern":"baz","action":"block"}
        ]}));
        let mut r = chat(
            json!({"messages":[{"role":"user","content":"baz"},{"role":"user","content":"foo bar"}]}),
        );
        let mut c = ctx();
        let PreLlmOutcome::ShortCircuit(Err(e)) = g.pre_llm(&mut c, &mut r).await.unwrap() else {
            panic!("expected a block")
        };
        assert_eq!(e.details().code.as_deref(), Some("b1"));
        assert_eq!(c.values[NAME]["blocked"], "b1");
    }

    #[tokio::test]
    async fn scan_limit() {
        let g = guard(json!({"max_scan_bytes": 10, "rules":[
            {"name":"r","pattern":"needle","action":"redact"}
        ]}));
        // The first string uses 8 of 10 bytes, so only "ne" of the second is scanned.
        let mut r = chat(json!({"messages":[
            {"role":"user","content":"12345678"},
            {"role":"user","content":"needle"}
        ]}));
        let before = r.body.to_bytes();
        g.pre_llm(&mut ctx(), &mut r).await.unwrap();
        assert_eq!(r.body.to_bytes(), before);
        // Within the limit it is found; the text beyond the cut is kept as is.
        let mut r = chat(json!({"messages":[{"role":"user","content":"needle needle"}]}));
        g.pre_llm(&mut ctx(), &mut r).await.unwrap();
        let v: Value = serde_json::from_slice(&r.body.to_bytes()).unwrap();
        assert_eq!(v["messages"][0]["content"], "[REDACTED] needle");
    }

    #[tokio::test]
    async fn text_completion_and_embedding_inputs() {
        let g = guard(json!({"rules":[{"name":"r","pattern":"\\d{3}-\\d{4}","action":"redact"}]}));
        for (rt, field, body) in [
            (
                RequestType::TextCompletion,
                "prompt",
                json!({"prompt":"call 555-1234"}),
            ),
            (
                RequestType::Embedding,
                "input",
                json!({"input":["call 555-1234", "x"]}),
            ),
        ] {
            let mut r = chat(body);
            r.request_type = rt;
            g.pre_llm(&mut ctx(), &mut r).await.unwrap();
            let v: Value = serde_json::from_slice(&r.body.to_bytes()).unwrap();
            let text = if v[field].is_array() {
                v[field][0].clone()
            } else {
                v[field].clone()
            };
            assert_eq!(text, "call [REDACTED]");
        }
    }

    #[tokio::test]
    async fn response_text_completion_redaction_and_errors_untouched() {
        let g = guard(
            json!({"rules":[{"name":"r","pattern":"bad","action":"redact","applies_to":"response"}]}),
        );
        let mut result: Result<LlmResponse, GatewayError> = Ok(LlmResponse::Complete {
            body: Bytes::from_static(
                br#"{"object":"text_completion","choices":[{"text":"a bad word","index":0}]}"#,
            ),
            route: RouteInfo::default(),
        });
        g.post_llm(&mut ctx(), &mut result).await.unwrap();
        let Ok(LlmResponse::Complete { body, .. }) = result else {
            panic!()
        };
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["choices"][0]["text"], "a [REDACTED] word");

        let mut result: Result<LlmResponse, GatewayError> = Err(GatewayError::internal("bad"));
        g.post_llm(&mut ctx(), &mut result).await.unwrap();
        assert_eq!(result.unwrap_err().message(), "bad");
    }

    #[test]
    fn take_budget_respects_char_boundaries() {
        let mut budget = 2;
        assert_eq!(take_budget("éa", &mut budget), Some("é"));
        assert_eq!(budget, 0);
        assert_eq!(take_budget("x", &mut budget), None);
        let mut budget = 1;
        assert_eq!(take_budget("é", &mut budget), Some(""));
    }
}
