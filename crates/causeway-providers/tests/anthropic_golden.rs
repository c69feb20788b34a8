//! Golden tests for the OpenAI <-> Anthropic conversions: each fixture in
//! tests/fixtures/anthropic/ is converted and compared with a reviewed insta snapshot.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use causeway_providers::anthropic::convert::{
    chat_request_to_messages, chat_response_to_messages, messages_request_to_chat,
    messages_response_to_chat,
};
use causeway_providers::anthropic::stream::{ChatToMessagesStream, MessagesToChatStream};
use serde_json::{Map, Value, json};

const CREATED: u64 = 1_700_000_000;

fn fixture_text(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/anthropic/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture_text(name)).unwrap_or_else(|e| panic!("parsing {name}: {e}"))
}

fn fixture_map(name: &str) -> Map<String, Value> {
    match fixture_json(name) {
        Value::Object(m) => m,
        other => panic!("{name} is not an object: {other}"),
    }
}

/// Parses recorded SSE text into `(event name, data)` pairs; `[DONE]` is skipped.
fn sse(text: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for frame in text.split("\n\n") {
        let mut name = String::new();
        let mut data = String::new();
        for line in frame.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        if data.is_empty() || data == "[DONE]" {
            continue;
        }
        out.push((name, serde_json::from_str(&data).unwrap()));
    }
    out
}

fn upstream_model(req: &Map<String, Value>) -> String {
    let model = req["model"].as_str().unwrap();
    model.rsplit('/').next().unwrap().to_owned()
}

fn openai_to_anthropic_request(name: &str) -> Value {
    let req = fixture_map(name);
    Value::Object(chat_request_to_messages(&req, &upstream_model(&req)).unwrap())
}

macro_rules! golden {
    ($($test:ident => $value:expr;)*) => {
        $(
            #[test]
            fn $test() {
                insta::assert_json_snapshot!($value);
            }
        )*
    };
}

// Direction A, requests: OpenAI client -> Anthropic upstream.
golden! {
    a_req_system_prompt => openai_to_anthropic_request("req_system_prompt.json");
    a_req_system_parts => openai_to_anthropic_request("req_system_parts.json");
    a_req_multipart_images => openai_to_anthropic_request("req_multipart_images.json");
    a_req_file_document => openai_to_anthropic_request("req_file_document.json");
    a_req_tools_auto => openai_to_anthropic_request("req_tools_auto.json");
    a_req_tools_required => openai_to_anthropic_request("req_tools_required.json");
    a_req_tools_none => openai_to_anthropic_request("req_tools_none.json");
    a_req_tools_named_no_parallel => openai_to_anthropic_request("req_tools_named_no_parallel.json");
    a_req_parallel_off_no_choice => openai_to_anthropic_request("req_parallel_off_no_choice.json");
    a_req_tool_choice_without_tools => openai_to_anthropic_request("req_tool_choice_without_tools.json");
    a_req_tool_round_trip => openai_to_anthropic_request("req_tool_round_trip.json");
    a_req_consecutive_roles => openai_to_anthropic_request("req_consecutive_roles.json");
    a_req_stop_string => openai_to_anthropic_request("req_stop_string.json");
    a_req_stop_array => openai_to_anthropic_request("req_stop_array.json");
    a_req_max_tokens_default => openai_to_anthropic_request("req_max_tokens_default.json");
    a_req_max_completion_tokens_wins => openai_to_anthropic_request("req_max_completion_tokens_wins.json");
    a_req_dropped_and_passthrough => openai_to_anthropic_request("req_dropped_and_passthrough.json");
    a_req_metadata_user_id => openai_to_anthropic_request("req_metadata_user_id.json");
}

fn anthropic_to_openai_response(name: &str) -> Value {
    messages_response_to_chat(&fixture_json(name), CREATED).unwrap()
}

// Direction A, responses: Anthropic upstream -> OpenAI client.
golden! {
    a_resp_text => anthropic_to_openai_response("resp_text.json");
    a_resp_tool_use => anthropic_to_openai_response("resp_tool_use.json");
    a_resp_thinking => anthropic_to_openai_response("resp_thinking.json");
    a_resp_max_tokens => anthropic_to_openai_response("resp_max_tokens.json");
    a_resp_stop_sequence => anthropic_to_openai_response("resp_stop_sequence.json");
    a_resp_refusal => anthropic_to_openai_response("resp_refusal.json");
    a_resp_cache_usage => anthropic_to_openai_response("resp_cache_usage.json");
}

#[test]
fn a_resp_every_stop_reason() {
    let cases = [
        (json!("end_turn"), "stop"),
        (json!("stop_sequence"), "stop"),
        (json!("max_tokens"), "length"),
        (json!("tool_use"), "tool_calls"),
        (json!("refusal"), "content_filter"),
        (json!("pause_turn"), "stop"),
        (json!("model_context_window_exceeded"), "length"),
        (json!("some_future_reason"), "stop"),
        (Value::Null, "stop"),
    ];
    for (stop_reason, expected) in cases {
        let resp = json!({"id": "msg_1", "model": "m", "content": [], "stop_reason": stop_reason});
        let chat = messages_response_to_chat(&resp, CREATED).unwrap();
        assert_eq!(
            chat["choices"][0]["finish_reason"], expected,
            "stop_reason {stop_reason}"
        );
        let back = chat_response_to_messages(&chat).unwrap();
        assert!(back["stop_reason"].is_string());
    }
}

fn anthropic_stream_to_chunks(name: &str, include_usage: bool) -> Value {
    let mut conv = MessagesToChatStream::new(include_usage, CREATED);
    let mut chunks = Vec::new();
    for (event, data) in sse(&fixture_text(name)) {
        chunks.extend(conv.on_event(&event, &data).unwrap());
    }
    Value::Array(chunks)
}

// Direction A, streams: Anthropic SSE events -> OpenAI chunks.
golden! {
    a_stream_text => anthropic_stream_to_chunks("stream_text.sse", false);
    a_stream_text_include_usage => anthropic_stream_to_chunks("stream_text.sse", true);
    a_stream_tool_use => anthropic_stream_to_chunks("stream_tool_use.sse", false);
    a_stream_tool_use_include_usage => anthropic_stream_to_chunks("stream_tool_use.sse", true);
}

#[test]
fn a_stream_event_name_falls_back_to_data_type() {
    // Same recording with the `event:` lines stripped must convert identically.
    let mut named = MessagesToChatStream::new(true, CREATED);
    let mut unnamed = MessagesToChatStream::new(true, CREATED);
    for (event, data) in sse(&fixture_text("stream_tool_use.sse")) {
        assert_eq!(
            named.on_event(&event, &data).unwrap(),
            unnamed.on_event("", &data).unwrap()
        );
    }
    assert_eq!(named.usage(), unnamed.usage());
}

#[test]
fn a_stream_usage_accessor() {
    let mut conv = MessagesToChatStream::new(false, CREATED);
    assert_eq!(conv.usage(), None);
    for (event, data) in sse(&fixture_text("stream_text.sse")) {
        conv.on_event(&event, &data).unwrap();
    }
    assert_eq!(
        conv.usage(),
        Some(json!({
            "prompt_tokens": 35,
            "completion_tokens": 12,
            "total_tokens": 47,
            "prompt_tokens_details": {"cached_tokens": 10},
        }))
    );
}

#[test]
fn a_stream_message_delta_with_cumulative_input_usage() {
    // Newer API versions repeat input and cache counts in message_delta; they replace earlier ones.
    let mut conv = MessagesToChatStream::new(true, CREATED);
    conv.on_event(
        "message_start",
        &json!({"type": "message_start", "message": {"id": "msg_1", "model": "m",
                "usage": {"input_tokens": 5, "output_tokens": 1}}}),
    )
    .unwrap();
    conv.on_event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                "usage": {"input_tokens": 6, "cache_read_input_tokens": 100, "output_tokens": 21}}),
    )
    .unwrap();
    let last = conv
        .on_event("message_stop", &json!({"type": "message_stop"}))
        .unwrap();
    assert_eq!(
        last,
        vec![json!({
            "id": "msg_1", "object": "chat.completion.chunk", "created": CREATED, "model": "m",
            "choices": [],
            "usage": {"prompt_tokens": 106, "completion_tokens": 21, "total_tokens": 127,
                      "prompt_tokens_details": {"cached_tokens": 100}},
        })]
    );
}

#[test]
fn a_stream_error_event_carries_type_and_message() {
    let mut conv = MessagesToChatStream::new(false, CREATED);
    let mut chunks = Vec::new();
    let mut error = None;
    for (event, data) in sse(&fixture_text("stream_error.sse")) {
        match conv.on_event(&event, &data) {
            Ok(c) => chunks.extend(c),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    assert_eq!(
        chunks.len(),
        2,
        "role chunk and one text chunk before the error"
    );
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Partial");
    let error = error.expect("error event must fail the stream");
    assert_eq!(error.message, "Overloaded");
    assert_eq!(error.kind.as_deref(), Some("overloaded_error"));
    assert_eq!(error.param, None);
}

// Direction B: Anthropic client -> OpenAI-shaped core.
fn anthropic_to_openai_request(name: &str) -> Value {
    Value::Object(messages_request_to_chat(&fixture_map(name)).unwrap())
}

fn openai_to_anthropic_response(name: &str) -> Value {
    chat_response_to_messages(&fixture_json(name)).unwrap()
}

fn openai_stream_to_events(name: &str) -> Value {
    let mut conv = ChatToMessagesStream::new();
    let mut events = Vec::new();
    for (_, chunk) in sse(&fixture_text(name)) {
        events.extend(conv.on_chunk(&chunk));
    }
    events.extend(conv.finish());
    assert!(conv.finish().is_empty(), "finish is idempotent");
    Value::Array(
        events
            .into_iter()
            .map(|(event, data)| {
                assert_eq!(
                    data["type"],
                    event.as_str(),
                    "data.type matches the event name"
                );
                json!({"event": event, "data": data})
            })
            .collect(),
    )
}

golden! {
    b_req_basic => anthropic_to_openai_request("b_req_basic.json");
    b_req_tools => anthropic_to_openai_request("b_req_tools.json");
    b_req_tool_choice_tool => anthropic_to_openai_request("b_req_tool_choice_tool.json");
    b_resp_text => openai_to_anthropic_response("b_resp_text.json");
    b_resp_tool_calls => openai_to_anthropic_response("b_resp_tool_calls.json");
    b_resp_reasoning_length => openai_to_anthropic_response("b_resp_reasoning_length.json");
    b_resp_refusal => openai_to_anthropic_response("b_resp_refusal.json");
    b_stream_text => openai_stream_to_events("b_stream_text.sse");
    b_stream_tools => openai_stream_to_events("b_stream_tools.sse");
}

#[test]
fn b_stream_upstream_error_chunk() {
    let mut conv = ChatToMessagesStream::new();
    let first = conv.on_chunk(&json!({"id": "c1", "model": "m",
        "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": null}]}));
    assert_eq!(
        first.len(),
        3,
        "message_start, content_block_start, content_block_delta"
    );
    let err = conv.on_chunk(&json!({"error": {"type": "server_error", "message": "boom"}}));
    assert_eq!(
        err,
        vec![(
            "error".to_owned(),
            json!({"type": "error", "error": {"type": "server_error", "message": "boom"}})
        )]
    );
    assert!(
        conv.finish().is_empty(),
        "an errored stream ends without message_stop"
    );
}

#[test]
fn b_stream_empty_upstream_still_yields_a_valid_message() {
    let mut conv = ChatToMessagesStream::new();
    let names: Vec<String> = conv.finish().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["message_start", "message_delta", "message_stop"]);
}

// Round trips through both directions keep what both formats can express.
#[test]
fn round_trip_response_anthropic_openai_anthropic() {
    let original = fixture_json("resp_tool_use.json");
    let back =
        chat_response_to_messages(&messages_response_to_chat(&original, CREATED).unwrap()).unwrap();
    assert_eq!(back["id"], original["id"]);
    assert_eq!(back["model"], original["model"]);
    assert_eq!(back["stop_reason"], original["stop_reason"]);
    assert_eq!(
        back["content"],
        json!([
            {"type": "text", "text": "I'll check the weather in both cities."},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
             "input": {"city": "Paris", "unit": "celsius"}},
            {"type": "tool_use", "id": "toolu_01B18r81rx81mr826724mr8", "name": "get_time", "input": {}},
        ])
    );
    assert_eq!(back["usage"]["input_tokens"], 412);
    assert_eq!(back["usage"]["output_tokens"], 96);
}

#[test]
fn round_trip_request_anthropic_openai_anthropic() {
    let original = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1000,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "15C"},
                {"type": "text", "text": "And tomorrow?"}
            ]}
        ],
        "tools": [{"name": "get_weather", "description": "Weather",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "auto"},
        "stop_sequences": ["END"],
        "temperature": 0.5
    });
    let Value::Object(original) = original else {
        unreachable!()
    };
    let chat = messages_request_to_chat(&original).unwrap();
    let back = chat_request_to_messages(&chat, "claude-sonnet-4-5").unwrap();
    assert_eq!(back, original);
}
