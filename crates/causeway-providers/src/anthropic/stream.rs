//! Streaming conversion between Anthropic Messages SSE events and OpenAI `chat.completion.chunk`s,
//! both ways. Each converter holds only per-stream state (ids, block indexes, usage so far); SSE
//! framing and I/O belong to the caller, and nothing here buffers a whole response.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::convert::{
    ConvertError, TokenUsage, error_to_anthropic, finish_reason_from_stop, stop_reason_from_finish,
};

// ---------------------------------------------------------------------------------------------
// Direction A: Anthropic upstream events -> OpenAI chunks
// ---------------------------------------------------------------------------------------------

/// Turns the events of one Anthropic Messages stream into OpenAI chunks.
#[derive(Debug, Clone)]
pub struct MessagesToChatStream {
    include_usage: bool,
    created: u64,
    id: String,
    model: String,
    usage: Option<TokenUsage>,
    /// Anthropic content block index -> OpenAI tool call index (tool blocks counted from 0).
    tool_indexes: HashMap<u64, u64>,
    next_tool_index: u64,
}

impl MessagesToChatStream {
    /// `include_usage` mirrors the client's `stream_options.include_usage`; `created` is the unix
    /// time stamped on every chunk.
    pub fn new(include_usage: bool, created: u64) -> Self {
        Self {
            include_usage,
            created,
            id: String::new(),
            model: String::new(),
            usage: None,
            tool_indexes: HashMap::new(),
            next_tool_index: 0,
        }
    }

    /// Final usage in OpenAI shape, once the upstream has reported any.
    pub fn usage(&self) -> Option<Value> {
        self.usage.map(TokenUsage::to_openai)
    }

    /// Converts one SSE event (`event` is its name; when empty, `data.type` is used). An upstream
    /// `error` event becomes `Err` with the upstream error type in `kind`.
    pub fn on_event(&mut self, event: &str, data: &Value) -> Result<Vec<Value>, ConvertError> {
        if !data.is_object() {
            return Err(ConvertError {
                message: format!("Anthropic stream event \"{event}\" has non-object data"),
                param: None,
                kind: None,
            });
        }
        let name = if event.is_empty() {
            data.get("type").and_then(Value::as_str).unwrap_or("")
        } else {
            event
        };
        let chunks = match name {
            "message_start" => {
                let message = data.get("message").unwrap_or(&Value::Null);
                if let Some(id) = message.get("id").and_then(Value::as_str) {
                    self.id = id.to_owned();
                }
                if let Some(model) = message.get("model").and_then(Value::as_str) {
                    self.model = model.to_owned();
                }
                if let Some(usage) = message.get("usage") {
                    self.usage = Some(TokenUsage::from_anthropic(usage));
                }
                vec![self.chunk(json!({"role": "assistant", "content": ""}), None)]
            }
            "content_block_start" => self.on_block_start(data),
            "content_block_delta" => self.on_block_delta(data),
            "message_delta" => {
                if let Some(usage) = data.get("usage") {
                    self.usage
                        .get_or_insert_with(TokenUsage::default)
                        .merge_anthropic(usage);
                }
                let stop = data.pointer("/delta/stop_reason").and_then(Value::as_str);
                vec![self.chunk(json!({}), Some(finish_reason_from_stop(stop)))]
            }
            "message_stop" if self.include_usage => vec![self.usage_chunk()],
            "error" => {
                let error = data.get("error").unwrap_or(&Value::Null);
                return Err(ConvertError {
                    message: error
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("upstream stream error")
                        .to_owned(),
                    param: None,
                    kind: error.get("type").and_then(Value::as_str).map(str::to_owned),
                });
            }
            // ping, content_block_stop, message_stop without usage, and event types added later.
            _ => Vec::new(),
        };
        Ok(chunks)
    }

    fn on_block_start(&mut self, data: &Value) -> Vec<Value> {
        let block = data.get("content_block").unwrap_or(&Value::Null);
        match block.get("type").and_then(Value::as_str) {
            Some("tool_use") => {
                let Some(block_index) = data.get("index").and_then(Value::as_u64) else {
                    return Vec::new();
                };
                let index = self.next_tool_index;
                self.next_tool_index += 1;
                self.tool_indexes.insert(block_index, index);
                let call = json!({
                    "index": index,
                    "id": block.get("id").and_then(Value::as_str).unwrap_or(""),
                    "type": "function",
                    "function": {
                        "name": block.get("name").and_then(Value::as_str).unwrap_or(""),
                        "arguments": "",
                    },
                });
                vec![self.chunk(json!({"tool_calls": [call]}), None)]
            }
            // Starts normally carry empty text; anything already present must not be lost.
            Some("text") => self.text_chunk("content", block.get("text")),
            Some("thinking") => self.text_chunk("reasoning_content", block.get("thinking")),
            _ => Vec::new(),
        }
    }

    fn on_block_delta(&mut self, data: &Value) -> Vec<Value> {
        let delta = data.get("delta").unwrap_or(&Value::Null);
        match delta.get("type").and_then(Value::as_str) {
            Some("text_delta") => self.text_chunk("content", delta.get("text")),
            Some("thinking_delta") => self.text_chunk("reasoning_content", delta.get("thinking")),
            Some("input_json_delta") => {
                let partial = delta
                    .get("partial_json")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let index = data
                    .get("index")
                    .and_then(Value::as_u64)
                    .and_then(|i| self.tool_indexes.get(&i).copied());
                match index {
                    Some(index) if !partial.is_empty() => {
                        let call = json!({"index": index, "function": {"arguments": partial}});
                        vec![self.chunk(json!({"tool_calls": [call]}), None)]
                    }
                    // Server-tool input and the empty opening delta have nothing to forward.
                    _ => Vec::new(),
                }
            }
            // signature_delta, citations_delta: no OpenAI counterpart.
            _ => Vec::new(),
        }
    }

    fn text_chunk(&self, field: &str, text: Option<&Value>) -> Vec<Value> {
        match text.and_then(Value::as_str) {
            Some(text) if !text.is_empty() => {
                let mut delta = Map::new();
                delta.insert(field.to_owned(), text.into());
                vec![self.chunk(Value::Object(delta), None)]
            }
            _ => Vec::new(),
        }
    }

    fn envelope(&self, choices: Value) -> Map<String, Value> {
        let mut chunk = Map::new();
        chunk.insert("id".into(), self.id.as_str().into());
        chunk.insert("object".into(), "chat.completion.chunk".into());
        chunk.insert("created".into(), self.created.into());
        chunk.insert("model".into(), self.model.as_str().into());
        chunk.insert("choices".into(), choices);
        chunk
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        let mut chunk = self.envelope(json!([{
            "index": 0,
            "delta": delta,
            "logprobs": null,
            "finish_reason": finish_reason,
        }]));
        // OpenAI puts `usage: null` on every chunk but the last when usage was requested.
        if self.include_usage {
            chunk.insert("usage".into(), Value::Null);
        }
        Value::Object(chunk)
    }

    fn usage_chunk(&self) -> Value {
        let mut chunk = self.envelope(json!([]));
        chunk.insert("usage".into(), self.usage.unwrap_or_default().to_openai());
        Value::Object(chunk)
    }
}

// ---------------------------------------------------------------------------------------------
// Direction B: OpenAI-shaped chunks from the core -> Anthropic events for Anthropic clients
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text { index: u64 },
    Thinking { index: u64 },
    Tool { index: u64, call_index: u64 },
}

impl OpenBlock {
    fn index(self) -> u64 {
        match self {
            Self::Text { index } | Self::Thinking { index } | Self::Tool { index, .. } => index,
        }
    }
}

/// Turns OpenAI chunks into the Anthropic event sequence: `message_start` once, then
/// `content_block_start`/`_delta`/`_stop` per block, then `message_delta` and `message_stop`
/// from [`finish`](Self::finish) (OpenAI reports usage after the finish reason, so the closing
/// events wait for the end of the stream).
#[derive(Debug, Clone, Default)]
pub struct ChatToMessagesStream {
    started: bool,
    done: bool,
    id: String,
    model: String,
    open: Option<OpenBlock>,
    next_block: u64,
    /// OpenAI tool call indexes already given a block; Anthropic blocks cannot be reopened.
    seen_calls: Vec<u64>,
    stop_reason: Option<&'static str>,
    usage: Option<TokenUsage>,
}

type Event = (String, Value);

fn event(name: &str, data: Value) -> Event {
    (name.to_owned(), data)
}

impl ChatToMessagesStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Converts one OpenAI chunk into zero or more `(event name, data)` pairs.
    pub fn on_chunk(&mut self, chunk: &Value) -> Vec<Event> {
        if self.done {
            return Vec::new();
        }
        let mut out = Vec::new();
        // OpenAI-compatible upstreams report mid-stream failures as `{"error": {...}}`.
        if let Some(error) = chunk.get("error").filter(|e| e.is_object()) {
            self.done = true;
            let kind = error
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("api_error");
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("upstream stream error");
            out.push(event("error", error_to_anthropic(kind, message)));
            return out;
        }
        if self.id.is_empty()
            && let Some(id) = chunk.get("id").and_then(Value::as_str)
        {
            self.id = id.to_owned();
        }
        if self.model.is_empty()
            && let Some(model) = chunk.get("model").and_then(Value::as_str)
        {
            self.model = model.to_owned();
        }
        self.start(&mut out);
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(TokenUsage::from_openai(usage));
        }
        // Only the first choice exists for Anthropic clients (they cannot ask for n > 1).
        let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| {
                c.iter()
                    .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            })
        else {
            return out;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);

        let reasoning = ["reasoning_content", "reasoning"]
            .iter()
            .find_map(|k| delta.get(*k).and_then(Value::as_str))
            .unwrap_or("");
        if !reasoning.is_empty() {
            let index = self.ensure_block(&mut out, BlockKind::Thinking);
            out.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                       "delta": {"type": "thinking_delta", "thinking": reasoning}}),
            ));
        }
        for field in ["content", "refusal"] {
            let text = delta.get(field).and_then(Value::as_str).unwrap_or("");
            if !text.is_empty() {
                let index = self.ensure_block(&mut out, BlockKind::Text);
                out.push(event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index,
                           "delta": {"type": "text_delta", "text": text}}),
                ));
            }
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for (position, call) in calls.iter().enumerate() {
                self.on_tool_call(&mut out, call, position as u64);
            }
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop_reason = Some(stop_reason_from_finish(Some(finish)));
        }
        out
    }

    /// Closes the stream: the open block, `message_delta` (stop reason and usage) and
    /// `message_stop`. Call once the upstream ends; later calls return nothing.
    pub fn finish(&mut self) -> Vec<Event> {
        if self.done {
            return Vec::new();
        }
        self.done = true;
        let mut out = Vec::new();
        self.start(&mut out);
        self.close_block(&mut out);
        let usage = match self.usage {
            Some(u) => u.to_anthropic(),
            None => json!({"output_tokens": 0}),
        };
        out.push(event(
            "message_delta",
            json!({
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null},
                "usage": usage,
            }),
        ));
        out.push(event("message_stop", json!({"type": "message_stop"})));
        out
    }

    fn start(&mut self, out: &mut Vec<Event>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(event(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                // OpenAI reports usage only at the end; the final message_delta carries it.
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
        ));
    }

    fn close_block(&mut self, out: &mut Vec<Event>) {
        if let Some(block) = self.open.take() {
            out.push(event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": block.index()}),
            ));
        }
    }

    /// Returns the index of an open block of `kind`, opening one (and closing the previous
    /// block) when needed.
    fn ensure_block(&mut self, out: &mut Vec<Event>, kind: BlockKind) -> u64 {
        match (self.open, kind) {
            (Some(OpenBlock::Text { index }), BlockKind::Text)
            | (Some(OpenBlock::Thinking { index }), BlockKind::Thinking) => return index,
            _ => {}
        }
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        let (block, open) = match kind {
            BlockKind::Text => (
                json!({"type": "text", "text": ""}),
                OpenBlock::Text { index },
            ),
            BlockKind::Thinking => (
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                OpenBlock::Thinking { index },
            ),
        };
        self.open = Some(open);
        out.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        index
    }

    fn on_tool_call(&mut self, out: &mut Vec<Event>, call: &Value, position: u64) {
        let call_index = call
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position);
        let index = match self.open {
            Some(OpenBlock::Tool {
                index,
                call_index: open,
            }) if open == call_index => index,
            // Arguments for a call whose block was already closed cannot be delivered:
            // Anthropic blocks never reopen. OpenAI-style upstreams stream calls in order.
            _ if self.seen_calls.contains(&call_index) => return,
            _ => {
                self.close_block(out);
                self.seen_calls.push(call_index);
                let index = self.next_block;
                self.next_block += 1;
                let id = call
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("toolu_{}_{call_index}", self.id));
                let name = call
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                self.open = Some(OpenBlock::Tool { index, call_index });
                out.push(event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": index,
                           "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
                ));
                index
            }
        };
        let args = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !args.is_empty() {
            out.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                       "delta": {"type": "input_json_delta", "partial_json": args}}),
            ));
        }
    }
}

#[derive(Clone, Copy)]
enum BlockKind {
    Text,
    Thinking,
}
