//! Pure conversions between OpenAI Chat Completions bodies and Anthropic Messages bodies, both ways,
//! plus Anthropic error bodies. No I/O and no panics on caller input: anything that cannot be
//! translated becomes a `ConvertError` naming the offending field so the caller can fix it.

use std::fmt;

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// Anthropic rejects requests without `max_tokens`; OpenAI clients usually omit it.
const DEFAULT_MAX_TOKENS: u64 = 4096;

/// OpenAI request fields with no Anthropic equivalent. Dropped rather than forwarded because
/// Anthropic rejects unknown top-level fields with a 400.
const OPENAI_ONLY_FIELDS: &[&str] = &[
    "n",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "seed",
    "stream_options",
    "response_format",
    "store",
    "service_tier",
    "modalities",
    "prediction",
    "audio",
    "reasoning_effort",
    "prompt_cache_key",
    "verbosity",
];

/// Anthropic request fields with no OpenAI equivalent (OpenAI rejects unknown arguments).
const ANTHROPIC_ONLY_FIELDS: &[&str] = &[
    "top_k",
    "thinking",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
];

/// Input that cannot be converted. Becomes a 400 to the caller, so `message` says what to fix and
/// starts with the path of the offending field (also in `param`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    pub message: String,
    pub param: Option<String>,
    /// The provider's error type when the error was reported by the upstream itself (an Anthropic
    /// `error` stream event, e.g. `overloaded_error`); `None` for conversion failures.
    pub kind: Option<String>,
}

impl ConvertError {
    /// An error about the field at `path`; the message reads `"<path>: <what>"`.
    pub fn at(path: &str, what: impl fmt::Display) -> Self {
        Self {
            message: format!("{path}: {what}"),
            param: Some(path.to_owned()),
            kind: None,
        }
    }
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConvertError {}

// ---------------------------------------------------------------------------------------------
// Shared pieces (also used by `stream`)
// ---------------------------------------------------------------------------------------------

/// Token counts in Anthropic's terms; OpenAI's `prompt_tokens` is the sum of the three input kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TokenUsage {
    pub(crate) input: u64,
    pub(crate) output: u64,
    pub(crate) cache_read: u64,
    pub(crate) cache_creation: u64,
}

impl TokenUsage {
    /// Overwrites the counts present in an Anthropic `usage` object. Streams report cumulative
    /// counts, so a later value replaces an earlier one rather than adding to it.
    pub(crate) fn merge_anthropic(&mut self, usage: &Value) {
        let get = |key: &str| usage.get(key).and_then(Value::as_u64);
        if let Some(n) = get("input_tokens") {
            self.input = n;
        }
        if let Some(n) = get("output_tokens") {
            self.output = n;
        }
        if let Some(n) = get("cache_read_input_tokens") {
            self.cache_read = n;
        }
        if let Some(n) = get("cache_creation_input_tokens") {
            self.cache_creation = n;
        }
    }

    pub(crate) fn from_anthropic(usage: &Value) -> Self {
        let mut out = Self::default();
        out.merge_anthropic(usage);
        out
    }

    /// OpenAI only reports cached reads; they are carved out of `prompt_tokens` so that the
    /// Anthropic sum (input + cache_read + cache_creation) equals the OpenAI prompt count.
    pub(crate) fn from_openai(usage: &Value) -> Self {
        let prompt = usage
            .get("prompt_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let cached = usage
            .pointer("/prompt_tokens_details/cached_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(prompt);
        Self {
            input: prompt - cached,
            output: usage
                .get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            cache_read: cached,
            cache_creation: 0,
        }
    }

    pub(crate) fn prompt_tokens(&self) -> u64 {
        self.input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_creation)
    }

    pub(crate) fn to_openai(self) -> Value {
        let prompt = self.prompt_tokens();
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": self.output,
            "total_tokens": prompt.saturating_add(self.output),
            "prompt_tokens_details": {"cached_tokens": self.cache_read},
        })
    }

    pub(crate) fn to_anthropic(self) -> Value {
        json!({
            "input_tokens": self.input,
            "cache_creation_input_tokens": self.cache_creation,
            "cache_read_input_tokens": self.cache_read,
            "output_tokens": self.output,
        })
    }
}

/// Anthropic `stop_reason` -> OpenAI `finish_reason`.
pub(crate) fn finish_reason_from_stop(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn, unknown future values, null.
        _ => "stop",
    }
}

/// OpenAI `finish_reason` -> Anthropic `stop_reason`. OpenAI's `stop` covers both a natural end
/// and a matched stop sequence without saying which, so it maps to `end_turn`.
pub(crate) fn stop_reason_from_finish(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls") | Some("function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// A field that is present and not JSON null (clients often send `null` meaning "unset").
fn present<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn text_block(text: &str, from: &Map<String, Value>) -> Value {
    let mut block = Map::new();
    block.insert("type".into(), "text".into());
    block.insert("text".into(), text.into());
    // OpenAI clients that know Anthropic (OpenRouter style) mark cache breakpoints on text parts;
    // keeping the hint keeps their prompt cache working.
    if let Some(cc) = present(from, "cache_control") {
        block.insert("cache_control".into(), cc.clone());
    }
    Value::Object(block)
}

/// `true` for `{"type":"text","text":...}` with nothing else, which can be sent as a bare string.
fn is_plain_text_block(block: &Value) -> bool {
    block.as_object().is_some_and(|b| {
        b.len() == 2
            && b.get("type").and_then(Value::as_str) == Some("text")
            && b.contains_key("text")
    })
}

// ---------------------------------------------------------------------------------------------
// Direction A: OpenAI client -> Anthropic provider
// ---------------------------------------------------------------------------------------------

/// Converts an OpenAI chat completions request into an Anthropic Messages request for `model`
/// (the upstream model id, provider prefix already stripped).
pub fn chat_request_to_messages(
    req: &Map<String, Value>,
    model: &str,
) -> Result<Map<String, Value>, ConvertError> {
    let raw_messages = match present(req, "messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) | None => {
            return Err(ConvertError::at(
                "messages",
                "must contain at least one message",
            ));
        }
        Some(_) => {
            return Err(ConvertError::at(
                "messages",
                "must be an array of message objects",
            ));
        }
    };

    let mut system = SystemPrompt::default();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, msg) in raw_messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let msg = msg
            .as_object()
            .ok_or_else(|| ConvertError::at(&path, "must be an object"))?;
        let role = msg
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| ConvertError::at(&format!("{path}.role"), "must be a string"))?;
        match role {
            "system" | "developer" => system.push(msg.get("content"), &path)?,
            "user" => {
                let blocks = openai_content_to_blocks(msg.get("content"), &path, PartPolicy::User)?;
                push_turn(&mut turns, "user", blocks);
            }
            "assistant" => push_turn(&mut turns, "assistant", assistant_blocks(msg, &path)?),
            // Anthropic carries tool results inside a user turn.
            "tool" => push_turn(&mut turns, "user", vec![tool_result_block(msg, &path)?]),
            other => {
                return Err(ConvertError::at(
                    &format!("{path}.role"),
                    format!(
                        "unsupported role \"{other}\"; expected system, developer, user, assistant or tool"
                    ),
                ));
            }
        }
    }
    if turns.is_empty() {
        return Err(ConvertError::at(
            "messages",
            "must contain at least one user or assistant message with content",
        ));
    }

    let mut out = Map::new();
    out.insert("model".into(), model.into());
    out.insert("max_tokens".into(), max_tokens(req)?.into());
    if let Some(system) = system.into_value() {
        out.insert("system".into(), system);
    }
    out.insert(
        "messages".into(),
        Value::Array(turns.into_iter().map(Turn::into_value).collect()),
    );

    let tools = match present(req, "tools") {
        Some(tools) => openai_tools_to_anthropic(tools)?,
        None => Vec::new(),
    };
    let parallel = present(req, "parallel_tool_calls").and_then(Value::as_bool);
    let tool_choice = openai_tool_choice_to_anthropic(present(req, "tool_choice"), parallel)?;
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        // Anthropic rejects tool_choice without tools, so it only travels with them.
        if let Some(choice) = tool_choice {
            out.insert("tool_choice".into(), choice);
        }
    }

    for key in ["temperature", "top_p"] {
        if let Some(v) = present(req, key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(stop) = present(req, "stop") {
        let sequences = stop_sequences(stop)?;
        if !sequences.is_empty() {
            out.insert("stop_sequences".into(), sequences.into());
        }
    }
    if let Some(stream) = present(req, "stream") {
        out.insert("stream".into(), stream.clone());
    }
    // Anthropic's metadata accepts only user_id; other OpenAI metadata keys are dropped.
    let user_id = present(req, "metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
        .or_else(|| present(req, "user").and_then(Value::as_str))
        .or_else(|| present(req, "safety_identifier").and_then(Value::as_str));
    if let Some(user_id) = user_id {
        out.insert("metadata".into(), json!({ "user_id": user_id }));
    }

    const HANDLED: &[&str] = &[
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "temperature",
        "top_p",
        "stop",
        "stream",
        "metadata",
        "user",
        "safety_identifier",
    ];
    // Anything else (e.g. Anthropic-native `top_k`, `thinking`) is the caller's to pass through.
    for (key, value) in req {
        if value.is_null() || HANDLED.contains(&key.as_str()) {
            continue;
        }
        if OPENAI_ONLY_FIELDS.contains(&key.as_str()) {
            continue;
        }
        out.insert(key.clone(), value.clone());
    }
    Ok(out)
}

fn max_tokens(req: &Map<String, Value>) -> Result<u64, ConvertError> {
    for key in ["max_completion_tokens", "max_tokens"] {
        if let Some(v) = present(req, key) {
            return v
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| ConvertError::at(key, "must be a positive integer"));
        }
    }
    Ok(DEFAULT_MAX_TOKENS)
}

fn stop_sequences(stop: &Value) -> Result<Vec<Value>, ConvertError> {
    match stop {
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s.as_str().into()]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.as_str().into()),
                _ => Err(ConvertError::at(&format!("stop[{i}]"), "must be a string")),
            })
            .collect(),
        _ => Err(ConvertError::at(
            "stop",
            "must be a string or an array of strings",
        )),
    }
}

/// One Anthropic turn being assembled; consecutive same-role OpenAI messages land in one turn
/// because Anthropic requires user and assistant turns to alternate.
struct Turn {
    role: &'static str,
    blocks: Vec<Value>,
}

impl Turn {
    fn into_value(mut self) -> Value {
        if self.role == "user" {
            // Anthropic wants tool_result blocks first in the turn that answers a tool_use;
            // the sort is stable so everything else keeps its order.
            self.blocks
                .sort_by_key(|b| b.get("type").and_then(Value::as_str) != Some("tool_result"));
        }
        let content = match self.blocks.as_slice() {
            [only] if is_plain_text_block(only) => only.get("text").cloned().unwrap_or_default(),
            _ => Value::Array(self.blocks),
        };
        json!({ "role": self.role, "content": content })
    }
}

fn push_turn(turns: &mut Vec<Turn>, role: &'static str, blocks: Vec<Value>) {
    // A message with nothing left (e.g. empty assistant content) would be rejected upstream.
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => last.blocks.extend(blocks),
        _ => turns.push(Turn { role, blocks }),
    }
}

#[derive(Default)]
struct SystemPrompt {
    blocks: Vec<Value>,
    any_parts: bool,
}

impl SystemPrompt {
    fn push(&mut self, content: Option<&Value>, path: &str) -> Result<(), ConvertError> {
        match content {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                if !s.is_empty() {
                    self.blocks.push(text_block(s, &Map::new()));
                }
            }
            Some(Value::Array(parts)) => {
                self.any_parts = true;
                for (j, part) in parts.iter().enumerate() {
                    let part_path = format!("{path}.content[{j}]");
                    let part = part
                        .as_object()
                        .ok_or_else(|| ConvertError::at(&part_path, "must be an object"))?;
                    if part.get("type").and_then(Value::as_str) != Some("text") {
                        return Err(ConvertError::at(
                            &part_path,
                            "system and developer messages may only contain text parts",
                        ));
                    }
                    let text = part.get("text").and_then(Value::as_str).ok_or_else(|| {
                        ConvertError::at(&format!("{part_path}.text"), "must be a string")
                    })?;
                    if !text.is_empty() {
                        self.blocks.push(text_block(text, part));
                    }
                }
            }
            Some(_) => {
                return Err(ConvertError::at(
                    &format!("{path}.content"),
                    "must be a string or an array of text parts",
                ));
            }
        }
        Ok(())
    }

    fn into_value(self) -> Option<Value> {
        if self.blocks.is_empty() {
            return None;
        }
        if self.any_parts {
            return Some(Value::Array(self.blocks));
        }
        let texts: Vec<&str> = self
            .blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect();
        Some(texts.join("\n\n").into())
    }
}

/// Which OpenAI content parts a message may carry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PartPolicy {
    User,
    Assistant,
    Tool,
}

fn openai_content_to_blocks(
    content: Option<&Value>,
    msg_path: &str,
    policy: PartPolicy,
) -> Result<Vec<Value>, ConvertError> {
    let parts = match content {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => return Ok(Vec::new()),
        Some(Value::String(s)) => return Ok(vec![text_block(s, &Map::new())]),
        Some(Value::Array(parts)) => parts,
        Some(_) => {
            return Err(ConvertError::at(
                &format!("{msg_path}.content"),
                "must be a string or an array of content parts",
            ));
        }
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let path = format!("{msg_path}.content[{j}]");
        let part = part
            .as_object()
            .ok_or_else(|| ConvertError::at(&path, "must be an object"))?;
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "text" | "refusal" => {
                let text = part.get(kind).and_then(Value::as_str).ok_or_else(|| {
                    ConvertError::at(&format!("{path}.{kind}"), "must be a string")
                })?;
                if !text.is_empty() {
                    blocks.push(text_block(text, part));
                }
            }
            "image_url" if policy != PartPolicy::Assistant => {
                blocks.push(openai_image_to_block(part, &path)?);
            }
            "file" if policy == PartPolicy::User => blocks.push(openai_file_to_block(part, &path)?),
            "input_audio" => {
                return Err(ConvertError::at(
                    &path,
                    "input_audio parts are not supported by Anthropic models",
                ));
            }
            _ => {
                let allowed = match policy {
                    PartPolicy::User => "text, image_url or file",
                    PartPolicy::Assistant => "text or refusal",
                    PartPolicy::Tool => "text or image_url",
                };
                return Err(ConvertError::at(
                    &path,
                    format!("unsupported content part type \"{kind}\" here; expected {allowed}"),
                ));
            }
        }
    }
    Ok(blocks)
}

/// A parsed `data:<media type>[;params];base64,<data>` URL.
struct DataUrl<'a> {
    media_type: &'a str,
    data: &'a str,
}

/// Returns `None` when `url` is not a `data:` URL at all, `Some(Err)` when it is one but not
/// base64 with a media type.
fn parse_data_url(url: &str) -> Option<Result<DataUrl<'_>, &'static str>> {
    let rest = url.strip_prefix("data:")?;
    let Some((meta, data)) = rest.split_once(',') else {
        return Some(Err("data: URL has no ',' before the data"));
    };
    let Some(meta) = meta.strip_suffix(";base64") else {
        return Some(Err(
            "data: URL must be base64-encoded (data:<media type>;base64,<data>)",
        ));
    };
    let media_type = meta.split(';').next().unwrap_or("");
    if media_type.is_empty() {
        return Some(Err(
            "data: URL must name a media type (data:<media type>;base64,<data>)",
        ));
    }
    if data.is_empty() {
        return Some(Err("data: URL has no data"));
    }
    Some(Ok(DataUrl { media_type, data }))
}

fn is_http_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

fn openai_image_to_block(part: &Map<String, Value>, path: &str) -> Result<Value, ConvertError> {
    // `image_url` is `{url, detail}` per the spec; some clients send the bare string.
    let url = match part.get("image_url") {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Object(o)) => o.get("url").and_then(Value::as_str),
        _ => None,
    }
    .ok_or_else(|| ConvertError::at(&format!("{path}.image_url.url"), "must be a string"))?;
    let source = match parse_data_url(url) {
        Some(Ok(d)) => json!({"type": "base64", "media_type": d.media_type, "data": d.data}),
        Some(Err(why)) => return Err(ConvertError::at(path, format!("image_url {why}"))),
        None if is_http_url(url) => json!({"type": "url", "url": url}),
        None => {
            return Err(ConvertError::at(
                path,
                "image_url must be a data: URL or an http(s) URL",
            ));
        }
    };
    Ok(json!({"type": "image", "source": source}))
}

/// OpenAI `file` parts become Anthropic `document` blocks; Anthropic accepts inline PDFs and
/// plain text, nothing else, and cannot resolve OpenAI file ids.
fn openai_file_to_block(part: &Map<String, Value>, path: &str) -> Result<Value, ConvertError> {
    let file = part
        .get("file")
        .and_then(Value::as_object)
        .ok_or_else(|| ConvertError::at(&format!("{path}.file"), "must be an object"))?;
    let Some(file_data) = present(file, "file_data").and_then(Value::as_str) else {
        return Err(ConvertError::at(
            &format!("{path}.file"),
            "file_id references cannot be sent to Anthropic; inline the file as file_data",
        ));
    };
    let data_path = format!("{path}.file.file_data");
    let d = match parse_data_url(file_data) {
        Some(Ok(d)) => d,
        Some(Err(why)) => return Err(ConvertError::at(&data_path, why)),
        None => {
            return Err(ConvertError::at(
                &data_path,
                "must be a data: URL (data:<media type>;base64,<data>)",
            ));
        }
    };
    let source = match d.media_type {
        "application/pdf" => {
            json!({"type": "base64", "media_type": "application/pdf", "data": d.data})
        }
        "text/plain" => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(d.data)
                .map_err(|_| ConvertError::at(&data_path, "is not valid base64"))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| ConvertError::at(&data_path, "text/plain data is not valid UTF-8"))?;
            json!({"type": "text", "media_type": "text/plain", "data": text})
        }
        other => {
            return Err(ConvertError::at(
                &data_path,
                format!(
                    "media type \"{other}\" is not supported by Anthropic; send application/pdf or text/plain"
                ),
            ));
        }
    };
    let mut block = Map::new();
    block.insert("type".into(), "document".into());
    block.insert("source".into(), source);
    if let Some(name) = present(file, "filename").and_then(Value::as_str) {
        block.insert("title".into(), name.into());
    }
    Ok(Value::Object(block))
}

fn assistant_blocks(msg: &Map<String, Value>, path: &str) -> Result<Vec<Value>, ConvertError> {
    // `reasoning_content` in history is dropped: Anthropic only accepts thinking blocks that
    // carry the signature it issued, which OpenAI-shaped history never has.
    let mut blocks = openai_content_to_blocks(msg.get("content"), path, PartPolicy::Assistant)?;
    let calls = match present(msg, "tool_calls") {
        None => return Ok(blocks),
        Some(Value::Array(calls)) => calls,
        Some(_) => {
            return Err(ConvertError::at(
                &format!("{path}.tool_calls"),
                "must be an array",
            ));
        }
    };
    for (k, call) in calls.iter().enumerate() {
        let call_path = format!("{path}.tool_calls[{k}]");
        let call = call
            .as_object()
            .ok_or_else(|| ConvertError::at(&call_path, "must be an object"))?;
        if let Some(kind) = present(call, "type").and_then(Value::as_str)
            && kind != "function"
        {
            return Err(ConvertError::at(
                &format!("{call_path}.type"),
                format!(
                    "unsupported tool call type \"{kind}\"; only \"function\" converts to Anthropic"
                ),
            ));
        }
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| ConvertError::at(&format!("{call_path}.id"), "must be a string"))?;
        let function = call
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                ConvertError::at(&format!("{call_path}.function"), "must be an object")
            })?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ConvertError::at(&format!("{call_path}.function.name"), "must be a string")
            })?;
        let args_path = format!("{call_path}.function.arguments");
        let input = match present(function, "arguments") {
            None => Value::Object(Map::new()),
            // Models emit "" for functions without parameters.
            Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Map::new()),
            Some(Value::String(s)) => serde_json::from_str::<Value>(s)
                .map_err(|e| ConvertError::at(&args_path, format!("is not valid JSON ({e})")))?,
            // Lenient: some clients send the object itself instead of its serialisation.
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => {
                return Err(ConvertError::at(
                    &args_path,
                    "must be a JSON-encoded string",
                ));
            }
        };
        if !input.is_object() {
            return Err(ConvertError::at(
                &args_path,
                "must encode a JSON object (Anthropic tool input is always an object)",
            ));
        }
        blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }
    Ok(blocks)
}

fn tool_result_block(msg: &Map<String, Value>, path: &str) -> Result<Value, ConvertError> {
    let id = msg
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ConvertError::at(&format!("{path}.tool_call_id"), "must be a string"))?;
    let mut block = Map::new();
    block.insert("type".into(), "tool_result".into());
    block.insert("tool_use_id".into(), id.into());
    match msg.get("content") {
        Some(Value::String(s)) if !s.is_empty() => {
            block.insert("content".into(), s.as_str().into());
        }
        content => {
            let blocks = openai_content_to_blocks(content, path, PartPolicy::Tool)?;
            // Anthropic allows a tool_result without content; it rejects empty text blocks.
            if !blocks.is_empty() {
                block.insert("content".into(), Value::Array(blocks));
            }
        }
    }
    Ok(Value::Object(block))
}

fn openai_tools_to_anthropic(tools: &Value) -> Result<Vec<Value>, ConvertError> {
    let tools = tools
        .as_array()
        .ok_or_else(|| ConvertError::at("tools", "must be an array"))?;
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        let tool = tool
            .as_object()
            .ok_or_else(|| ConvertError::at(&path, "must be an object"))?;
        let kind = tool
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("function");
        if kind != "function" {
            return Err(ConvertError::at(
                &format!("{path}.type"),
                format!(
                    "unsupported tool type \"{kind}\"; only \"function\" tools convert to Anthropic"
                ),
            ));
        }
        let function = tool
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| ConvertError::at(&format!("{path}.function"), "must be an object"))?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ConvertError::at(&format!("{path}.function.name"), "must be a string")
            })?;
        let mut converted = Map::new();
        converted.insert("name".into(), name.into());
        if let Some(desc) = present(function, "description") {
            converted.insert("description".into(), desc.clone());
        }
        let schema = match present(function, "parameters") {
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => {
                return Err(ConvertError::at(
                    &format!("{path}.function.parameters"),
                    "must be a JSON Schema object",
                ));
            }
            None => json!({"type": "object", "properties": {}}),
        };
        converted.insert("input_schema".into(), schema);
        if let Some(cc) = present(tool, "cache_control") {
            converted.insert("cache_control".into(), cc.clone());
        }
        out.push(Value::Object(converted));
    }
    Ok(out)
}

fn openai_tool_choice_to_anthropic(
    choice: Option<&Value>,
    parallel_tool_calls: Option<bool>,
) -> Result<Option<Value>, ConvertError> {
    const EXPECTED: &str = "must be \"auto\", \"required\", \"none\" or {\"type\":\"function\",\"function\":{\"name\":...}}";
    let mut converted = match choice {
        // Without an explicit choice, the only reason to send one is to turn parallel calls off.
        None if parallel_tool_calls == Some(false) => json!({"type": "auto"}),
        None => return Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "required" => json!({"type": "any"}),
            "none" => json!({"type": "none"}),
            _ => return Err(ConvertError::at("tool_choice", EXPECTED)),
        },
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| ConvertError::at("tool_choice.function.name", "must be a string"))?;
            json!({"type": "tool", "name": name})
        }
        Some(_) => return Err(ConvertError::at("tool_choice", EXPECTED)),
    };
    // `none` has no disable_parallel_tool_use field in Anthropic's schema.
    if parallel_tool_calls == Some(false)
        && converted.get("type").and_then(Value::as_str) != Some("none")
        && let Some(obj) = converted.as_object_mut()
    {
        obj.insert("disable_parallel_tool_use".into(), true.into());
    }
    Ok(Some(converted))
}

/// Converts an Anthropic Messages response into an OpenAI `chat.completion`.
pub fn messages_response_to_chat(resp: &Value, created: u64) -> Result<Value, ConvertError> {
    let content = resp
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| ConvertError::at("content", "Anthropic response has no content array"))?;
    let mut text = String::new();
    let mut has_text = false;
    let mut reasoning = String::new();
    let mut has_reasoning = false;
    let mut tool_calls = Vec::new();
    for (i, block) in content.iter().enumerate() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                has_text = true;
                text.push_str(block.get("text").and_then(Value::as_str).unwrap_or(""));
            }
            Some("thinking") => {
                has_reasoning = true;
                reasoning.push_str(block.get("thinking").and_then(Value::as_str).unwrap_or(""));
            }
            Some("tool_use") => {
                let path = format!("content[{i}]");
                let id = block.get("id").and_then(Value::as_str).ok_or_else(|| {
                    ConvertError::at(&format!("{path}.id"), "tool_use block has no id")
                })?;
                let name = block.get("name").and_then(Value::as_str).ok_or_else(|| {
                    ConvertError::at(&format!("{path}.name"), "tool_use block has no name")
                })?;
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                tool_calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": input.to_string()},
                }));
            }
            // redacted_thinking, server tool blocks and future types have no OpenAI place.
            _ => {}
        }
    }

    let mut message = Map::new();
    message.insert("role".into(), "assistant".into());
    message.insert(
        "content".into(),
        if has_text { text.into() } else { Value::Null },
    );
    if has_reasoning {
        message.insert("reasoning_content".into(), reasoning.into());
    }
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    let finish = finish_reason_from_stop(resp.get("stop_reason").and_then(Value::as_str));
    let usage = TokenUsage::from_anthropic(resp.get("usage").unwrap_or(&Value::Null));
    Ok(json!({
        "id": resp.get("id").cloned().unwrap_or_else(|| "".into()),
        "object": "chat.completion",
        "created": created,
        "model": resp.get("model").cloned().unwrap_or_else(|| "".into()),
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish,
        }],
        "usage": usage.to_openai(),
    }))
}

/// Reads an Anthropic error body `{"type":"error","error":{"type":...,"message":...}}`.
pub fn anthropic_error_to_parts(body: &[u8]) -> Option<(String, String)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?;
    let kind = error.get("type")?.as_str()?;
    let message = error.get("message")?.as_str()?;
    Some((kind.to_owned(), message.to_owned()))
}

// ---------------------------------------------------------------------------------------------
// Direction B: Anthropic client -> OpenAI-shaped core
// ---------------------------------------------------------------------------------------------

/// Converts an Anthropic Messages request into an OpenAI chat completions request. The model is
/// kept as given; routing resolves it later.
pub fn messages_request_to_chat(
    req: &Map<String, Value>,
) -> Result<Map<String, Value>, ConvertError> {
    let raw_messages = match present(req, "messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) | None => {
            return Err(ConvertError::at(
                "messages",
                "must contain at least one message",
            ));
        }
        Some(_) => {
            return Err(ConvertError::at(
                "messages",
                "must be an array of message objects",
            ));
        }
    };

    let mut messages = Vec::with_capacity(raw_messages.len() + 1);
    if let Some(system) = present(req, "system")
        && let Some(msg) = anthropic_system_to_message(system)?
    {
        messages.push(msg);
    }
    for (i, msg) in raw_messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let msg = msg
            .as_object()
            .ok_or_else(|| ConvertError::at(&path, "must be an object"))?;
        let role = msg
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| ConvertError::at(&format!("{path}.role"), "must be a string"))?;
        match role {
            "user" => anthropic_user_to_messages(msg.get("content"), &path, &mut messages)?,
            "assistant" => {
                messages.push(anthropic_assistant_to_message(msg.get("content"), &path)?)
            }
            other => {
                return Err(ConvertError::at(
                    &format!("{path}.role"),
                    format!("unsupported role \"{other}\"; expected user or assistant"),
                ));
            }
        }
    }

    let mut out = Map::new();
    if let Some(model) = req.get("model") {
        out.insert("model".into(), model.clone());
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(max) = present(req, "max_tokens") {
        let max = max
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or_else(|| ConvertError::at("max_tokens", "must be a positive integer"))?;
        out.insert("max_completion_tokens".into(), max.into());
    }
    if let Some(tools) = present(req, "tools") {
        let tools = anthropic_tools_to_openai(tools)?;
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(choice) = present(req, "tool_choice") {
        let (choice, parallel) = anthropic_tool_choice_to_openai(choice)?;
        out.insert("tool_choice".into(), choice);
        if let Some(parallel) = parallel {
            out.insert("parallel_tool_calls".into(), parallel.into());
        }
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = present(req, key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(stop) = present(req, "stop_sequences") {
        let stop = stop
            .as_array()
            .filter(|s| s.iter().all(Value::is_string))
            .ok_or_else(|| ConvertError::at("stop_sequences", "must be an array of strings"))?;
        if !stop.is_empty() {
            out.insert("stop".into(), Value::Array(stop.clone()));
        }
    }
    if let Some(stream) = present(req, "stream") {
        out.insert("stream".into(), stream.clone());
        // Anthropic streams always end with usage; OpenAI only sends it when asked.
        if stream.as_bool() == Some(true) {
            out.insert("stream_options".into(), json!({"include_usage": true}));
        }
    }
    if let Some(user_id) = req
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        out.insert("user".into(), user_id.into());
    }

    const HANDLED: &[&str] = &[
        "model",
        "system",
        "messages",
        "max_tokens",
        "tools",
        "tool_choice",
        "temperature",
        "top_p",
        "stop_sequences",
        "stream",
        "metadata",
    ];
    for (key, value) in req {
        if value.is_null()
            || HANDLED.contains(&key.as_str())
            || ANTHROPIC_ONLY_FIELDS.contains(&key.as_str())
        {
            continue;
        }
        out.insert(key.clone(), value.clone());
    }
    Ok(out)
}

/// Anthropic `system` becomes one system message with a plain string: every OpenAI-compatible
/// upstream accepts that, while strict ones reject content parts carrying `cache_control`
/// (which has no OpenAI meaning), so that hint is dropped here.
fn anthropic_system_to_message(system: &Value) -> Result<Option<Value>, ConvertError> {
    let text = match system {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (i, block) in blocks.iter().enumerate() {
                let path = format!("system[{i}]");
                let block = block
                    .as_object()
                    .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                    .ok_or_else(|| ConvertError::at(&path, "must be a text block"))?;
                let text = block
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ConvertError::at(&format!("{path}.text"), "must be a string"))?;
                if !text.is_empty() {
                    texts.push(text);
                }
            }
            texts.join("\n\n")
        }
        _ => {
            return Err(ConvertError::at(
                "system",
                "must be a string or an array of text blocks",
            ));
        }
    };
    if text.is_empty() {
        return Ok(None);
    }
    Ok(Some(json!({"role": "system", "content": text})))
}

fn anthropic_image_to_part(block: &Map<String, Value>, path: &str) -> Result<Value, ConvertError> {
    let source = block
        .get("source")
        .and_then(Value::as_object)
        .ok_or_else(|| ConvertError::at(&format!("{path}.source"), "must be an object"))?;
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = source.get("media_type").and_then(Value::as_str);
            let data = source.get("data").and_then(Value::as_str);
            match (media, data) {
                (Some(media), Some(data)) => format!("data:{media};base64,{data}"),
                _ => {
                    return Err(ConvertError::at(
                        &format!("{path}.source"),
                        "base64 image source needs media_type and data strings",
                    ));
                }
            }
        }
        Some("url") => source
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| ConvertError::at(&format!("{path}.source.url"), "must be a string"))?
            .to_owned(),
        _ => {
            return Err(ConvertError::at(
                &format!("{path}.source.type"),
                "only base64 and url image sources can be sent through the OpenAI format",
            ));
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn anthropic_document_to_part(
    block: &Map<String, Value>,
    path: &str,
) -> Result<Value, ConvertError> {
    let source = block
        .get("source")
        .and_then(Value::as_object)
        .ok_or_else(|| ConvertError::at(&format!("{path}.source"), "must be an object"))?;
    match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = source
                .get("media_type")
                .and_then(Value::as_str)
                .unwrap_or("application/pdf");
            let data = source.get("data").and_then(Value::as_str).ok_or_else(|| {
                ConvertError::at(&format!("{path}.source.data"), "must be a string")
            })?;
            let mut file = Map::new();
            if let Some(title) = present(block, "title").and_then(Value::as_str) {
                file.insert("filename".into(), title.into());
            }
            file.insert(
                "file_data".into(),
                format!("data:{media};base64,{data}").into(),
            );
            Ok(json!({"type": "file", "file": file}))
        }
        Some("text") => {
            let data = source.get("data").and_then(Value::as_str).ok_or_else(|| {
                ConvertError::at(&format!("{path}.source.data"), "must be a string")
            })?;
            Ok(json!({"type": "text", "text": data}))
        }
        _ => Err(ConvertError::at(
            &format!("{path}.source.type"),
            "only base64 and text document sources can be sent through the OpenAI format",
        )),
    }
}

fn blocks_of<'a>(
    content: Option<&'a Value>,
    path: &str,
) -> Result<Vec<&'a Map<String, Value>>, ConvertError> {
    match content {
        Some(Value::Array(blocks)) => blocks
            .iter()
            .enumerate()
            .map(|(j, b)| {
                b.as_object().ok_or_else(|| {
                    ConvertError::at(&format!("{path}.content[{j}]"), "must be an object")
                })
            })
            .collect(),
        _ => Err(ConvertError::at(
            &format!("{path}.content"),
            "must be a string or an array of content blocks",
        )),
    }
}

/// One Anthropic user turn becomes: one `tool` message per tool_result (OpenAI wants them right
/// after the assistant's tool calls), then a user message with whatever else the turn held.
fn anthropic_user_to_messages(
    content: Option<&Value>,
    path: &str,
    out: &mut Vec<Value>,
) -> Result<(), ConvertError> {
    if let Some(Value::String(s)) = content {
        out.push(json!({"role": "user", "content": s}));
        return Ok(());
    }
    let mut parts = Vec::new();
    // Images returned by tools: OpenAI tool messages are text-only, so they ride along in the
    // user message that follows the tool messages.
    let mut tool_images = Vec::new();
    for (j, block) in blocks_of(content, path)?.into_iter().enumerate() {
        let block_path = format!("{path}.content[{j}]");
        match block.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => {
                let text = block.get("text").and_then(Value::as_str).ok_or_else(|| {
                    ConvertError::at(&format!("{block_path}.text"), "must be a string")
                })?;
                // cache_control is dropped, as for the system prompt.
                parts.push(json!({"type": "text", "text": text}));
            }
            "image" => parts.push(anthropic_image_to_part(block, &block_path)?),
            "document" => parts.push(anthropic_document_to_part(block, &block_path)?),
            "tool_result" => out.push(anthropic_tool_result_to_message(
                block,
                &block_path,
                &mut tool_images,
            )?),
            other => {
                return Err(ConvertError::at(
                    &block_path,
                    format!(
                        "unsupported content block type \"{other}\" in a user message; expected text, image, document or tool_result"
                    ),
                ));
            }
        }
    }
    tool_images.extend(parts);
    let parts = tool_images;
    match parts.as_slice() {
        [] => {}
        [only] if is_plain_text_block(only) => out.push(
            json!({"role": "user", "content": only.get("text").cloned().unwrap_or_default()}),
        ),
        _ => out.push(json!({"role": "user", "content": parts})),
    }
    Ok(())
}

fn anthropic_tool_result_to_message(
    block: &Map<String, Value>,
    path: &str,
    images: &mut Vec<Value>,
) -> Result<Value, ConvertError> {
    let id = block
        .get("tool_use_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ConvertError::at(&format!("{path}.tool_use_id"), "must be a string"))?;
    let content = match block.get("content") {
        None | Some(Value::Null) => Value::String(String::new()),
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(Value::Array(inner)) => {
            let mut texts = Vec::new();
            for (k, item) in inner.iter().enumerate() {
                let item_path = format!("{path}.content[{k}]");
                let item = item
                    .as_object()
                    .ok_or_else(|| ConvertError::at(&item_path, "must be an object"))?;
                match item.get("type").and_then(Value::as_str).unwrap_or("") {
                    "text" => {
                        let text = item.get("text").and_then(Value::as_str).ok_or_else(|| {
                            ConvertError::at(&format!("{item_path}.text"), "must be a string")
                        })?;
                        texts.push(json!({"type": "text", "text": text}));
                    }
                    "image" => images.push(anthropic_image_to_part(item, &item_path)?),
                    other => {
                        return Err(ConvertError::at(
                            &item_path,
                            format!(
                                "unsupported block type \"{other}\" inside tool_result; expected text or image"
                            ),
                        ));
                    }
                }
            }
            match texts.as_slice() {
                [] => Value::String(String::new()),
                [only] => only.get("text").cloned().unwrap_or_default(),
                _ => Value::Array(texts),
            }
        }
        Some(_) => {
            return Err(ConvertError::at(
                &format!("{path}.content"),
                "must be a string or an array of text and image blocks",
            ));
        }
    };
    Ok(json!({"role": "tool", "tool_call_id": id, "content": content}))
}

fn anthropic_assistant_to_message(
    content: Option<&Value>,
    path: &str,
) -> Result<Value, ConvertError> {
    if let Some(Value::String(s)) = content {
        return Ok(json!({"role": "assistant", "content": s}));
    }
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for (j, block) in blocks_of(content, path)?.into_iter().enumerate() {
        let block_path = format!("{path}.content[{j}]");
        match block.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => {
                let t = block.get("text").and_then(Value::as_str).ok_or_else(|| {
                    ConvertError::at(&format!("{block_path}.text"), "must be a string")
                })?;
                text.push_str(t);
            }
            "tool_use" => {
                let id = block.get("id").and_then(Value::as_str).ok_or_else(|| {
                    ConvertError::at(&format!("{block_path}.id"), "must be a string")
                })?;
                let name = block.get("name").and_then(Value::as_str).ok_or_else(|| {
                    ConvertError::at(&format!("{block_path}.name"), "must be a string")
                })?;
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                tool_calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": input.to_string()},
                }));
            }
            // Thinking is only meaningful to the Anthropic model that produced its signature.
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(ConvertError::at(
                    &block_path,
                    format!(
                        "unsupported content block type \"{other}\" in an assistant message; expected text, tool_use or thinking"
                    ),
                ));
            }
        }
    }
    let mut msg = Map::new();
    msg.insert("role".into(), "assistant".into());
    if tool_calls.is_empty() {
        msg.insert("content".into(), text.into());
    } else {
        msg.insert(
            "content".into(),
            if text.is_empty() {
                Value::Null
            } else {
                text.into()
            },
        );
        msg.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    Ok(Value::Object(msg))
}

fn anthropic_tools_to_openai(tools: &Value) -> Result<Vec<Value>, ConvertError> {
    let tools = tools
        .as_array()
        .ok_or_else(|| ConvertError::at("tools", "must be an array"))?;
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let path = format!("tools[{i}]");
        let tool = tool
            .as_object()
            .ok_or_else(|| ConvertError::at(&path, "must be an object"))?;
        // Client tools have no type or "custom"; anything else is an Anthropic server tool
        // (web_search_20250305, bash_20250124, ...) that only Anthropic can run.
        if let Some(kind) = present(tool, "type").and_then(Value::as_str)
            && kind != "custom"
        {
            return Err(ConvertError::at(
                &format!("{path}.type"),
                format!(
                    "Anthropic server tool \"{kind}\" cannot be sent through the OpenAI format; define it as a client tool with name and input_schema"
                ),
            ));
        }
        let name = tool
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ConvertError::at(&format!("{path}.name"), "must be a string"))?;
        let mut function = Map::new();
        function.insert("name".into(), name.into());
        if let Some(desc) = present(tool, "description") {
            function.insert("description".into(), desc.clone());
        }
        function.insert(
            "parameters".into(),
            present(tool, "input_schema")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        );
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(out)
}

/// Returns the OpenAI `tool_choice` and, when Anthropic disabled parallel tool use, the
/// `parallel_tool_calls` value.
fn anthropic_tool_choice_to_openai(choice: &Value) -> Result<(Value, Option<bool>), ConvertError> {
    let kind = choice.get("type").and_then(Value::as_str);
    let converted = match kind {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = choice
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| ConvertError::at("tool_choice.name", "must be a string"))?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => {
            return Err(ConvertError::at(
                "tool_choice.type",
                "must be \"auto\", \"any\", \"tool\" or \"none\"",
            ));
        }
    };
    let parallel = (choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        == Some(true))
    .then_some(false);
    Ok((converted, parallel))
}

/// Converts an OpenAI `chat.completion` into an Anthropic Messages response (inverse of
/// [`messages_response_to_chat`]).
pub fn chat_response_to_messages(resp: &Value) -> Result<Value, ConvertError> {
    let choice = resp
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| ConvertError::at("choices", "OpenAI response has no choices"))?;
    let message = choice
        .get("message")
        .and_then(Value::as_object)
        .ok_or_else(|| ConvertError::at("choices[0].message", "must be an object"))?;

    let mut content = Vec::new();
    if let Some(reasoning) = ["reasoning_content", "reasoning"]
        .iter()
        .find_map(|k| present(message, k).and_then(Value::as_str))
        .filter(|r| !r.is_empty())
    {
        // No signature exists for reasoning produced elsewhere; an empty one tells Anthropic
        // clients the block cannot be verified (and it is dropped if sent back).
        content.push(json!({"type": "thinking", "thinking": reasoning, "signature": ""}));
    }
    let text = match present(message, "content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| {
                p.get("text")
                    .or_else(|| p.get("refusal"))
                    .and_then(Value::as_str)
            })
            .collect(),
        _ => String::new(),
    };
    let text = if text.is_empty() {
        // A refusal arrives in its own field with null content.
        present(message, "refusal")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    } else {
        text
    };
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    if let Some(calls) = present(message, "tool_calls").and_then(Value::as_array) {
        for (k, call) in calls.iter().enumerate() {
            let path = format!("choices[0].message.tool_calls[{k}]");
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| ConvertError::at(&format!("{path}.id"), "must be a string"))?;
            let name = call
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ConvertError::at(&format!("{path}.function.name"), "must be a string")
                })?;
            let args_path = format!("{path}.function.arguments");
            let input = match call.pointer("/function/arguments") {
                None | Some(Value::Null) => json!({}),
                Some(Value::String(s)) if s.trim().is_empty() => json!({}),
                Some(Value::String(s)) => serde_json::from_str::<Value>(s).map_err(|e| {
                    ConvertError::at(&args_path, format!("model produced invalid JSON ({e})"))
                })?,
                Some(v) => v.clone(),
            };
            if !input.is_object() {
                return Err(ConvertError::at(
                    &args_path,
                    "model produced arguments that are not a JSON object",
                ));
            }
            content.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
        }
    }

    let stop_reason = stop_reason_from_finish(choice.get("finish_reason").and_then(Value::as_str));
    let usage = TokenUsage::from_openai(resp.get("usage").unwrap_or(&Value::Null));
    Ok(json!({
        "id": resp.get("id").cloned().unwrap_or_else(|| "".into()),
        "type": "message",
        "role": "assistant",
        "model": resp.get("model").cloned().unwrap_or_else(|| "".into()),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": usage.to_anthropic(),
    }))
}

/// An Anthropic error body, as sent to Anthropic clients (also the data of an `error` SSE event).
pub fn error_to_anthropic(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}
