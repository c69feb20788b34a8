//! Conversion failures: every input the Anthropic conversions reject, with the exact message and
//! param the caller will see in its 400.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use causeway_providers::anthropic::convert::{
    ConvertError, anthropic_error_to_parts, chat_request_to_messages, chat_response_to_messages,
    error_to_anthropic, messages_request_to_chat, messages_response_to_chat,
};
use serde_json::{Map, Value, json};

fn map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// Converts an OpenAI request that must fail; returns (message, param).
fn a_err(req: Value) -> (String, Option<String>) {
    let e = chat_request_to_messages(&map(req), "claude-x").unwrap_err();
    assert_eq!(e.kind, None);
    (e.message, e.param)
}

fn b_err(req: Value) -> (String, Option<String>) {
    let e = messages_request_to_chat(&map(req)).unwrap_err();
    (e.message, e.param)
}

fn user(content: Value) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": content}]})
}

fn p(s: &str) -> Option<String> {
    Some(s.to_owned())
}

#[test]
fn messages_missing_empty_or_not_an_array() {
    let expected = (
        "messages: must contain at least one message".to_owned(),
        p("messages"),
    );
    assert_eq!(a_err(json!({"model": "m"})), expected);
    assert_eq!(a_err(json!({"model": "m", "messages": []})), expected);
    assert_eq!(a_err(json!({"model": "m", "messages": null})), expected);
    assert_eq!(
        a_err(json!({"model": "m", "messages": "hi"})),
        (
            "messages: must be an array of message objects".into(),
            p("messages")
        )
    );
    assert_eq!(b_err(json!({"model": "m", "max_tokens": 5})), expected);
}

#[test]
fn only_system_messages() {
    assert_eq!(
        a_err(
            json!({"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": ""}]})
        ),
        (
            "messages: must contain at least one user or assistant message with content".into(),
            p("messages")
        )
    );
}

#[test]
fn bad_roles() {
    assert_eq!(
        a_err(json!({"messages": [{"role": "user", "content": "a"}, {"role": "function", "name": "f", "content": "x"}]})),
        (
            "messages[1].role: unsupported role \"function\"; expected system, developer, user, assistant or tool".into(),
            p("messages[1].role")
        )
    );
    assert_eq!(
        a_err(json!({"messages": [{"content": "a"}]})),
        (
            "messages[0].role: must be a string".into(),
            p("messages[0].role")
        )
    );
    assert_eq!(
        a_err(json!({"messages": ["hello"]})),
        ("messages[0]: must be an object".into(), p("messages[0]"))
    );
    assert_eq!(
        b_err(json!({"messages": [{"role": "system", "content": "a"}]})),
        (
            "messages[0].role: unsupported role \"system\"; expected user or assistant".into(),
            p("messages[0].role")
        )
    );
}

#[test]
fn image_url_must_be_data_or_http() {
    let req = json!({"messages": [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://example.com/x.png"}}]}
    ]});
    assert_eq!(
        a_err(req),
        (
            "messages[2].content[0]: image_url must be a data: URL or an http(s) URL".into(),
            p("messages[2].content[0]")
        )
    );
    assert_eq!(
        a_err(user(json!([{"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}]))),
        (
            "messages[0].content[0]: image_url data: URL must be base64-encoded (data:<media type>;base64,<data>)".into(),
            p("messages[0].content[0]")
        )
    );
    assert_eq!(
        a_err(user(json!([{"type": "image_url", "image_url": {"url": "data:;base64,AAAA"}}]))),
        (
            "messages[0].content[0]: image_url data: URL must name a media type (data:<media type>;base64,<data>)".into(),
            p("messages[0].content[0]")
        )
    );
    assert_eq!(
        a_err(user(json!([{"type": "image_url", "image_url": {}}]))),
        (
            "messages[0].content[0].image_url.url: must be a string".into(),
            p("messages[0].content[0].image_url.url")
        )
    );
}

#[test]
fn unsupported_parts() {
    assert_eq!(
        a_err(user(
            json!([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}])
        )),
        (
            "messages[0].content[0]: input_audio parts are not supported by Anthropic models"
                .into(),
            p("messages[0].content[0]")
        )
    );
    assert_eq!(
        a_err(user(json!([{"type": "video", "url": "x"}]))),
        (
            "messages[0].content[0]: unsupported content part type \"video\" here; expected text, image_url or file".into(),
            p("messages[0].content[0]")
        )
    );
    assert_eq!(
        a_err(json!({"messages": [{"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]})),
        (
            "messages[0].content[0]: unsupported content part type \"image_url\" here; expected text or refusal".into(),
            p("messages[0].content[0]")
        )
    );
    assert_eq!(
        a_err(
            json!({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}, {"role": "user", "content": "hi"}]})
        ),
        (
            "messages[0].content[0]: system and developer messages may only contain text parts"
                .into(),
            p("messages[0].content[0]")
        )
    );
    assert_eq!(
        a_err(user(json!(42))),
        (
            "messages[0].content: must be a string or an array of content parts".into(),
            p("messages[0].content")
        )
    );
    assert_eq!(
        a_err(user(json!([{"type": "text"}]))),
        (
            "messages[0].content[0].text: must be a string".into(),
            p("messages[0].content[0].text")
        )
    );
}

#[test]
fn file_parts() {
    assert_eq!(
        a_err(user(json!([{"type": "file", "file": {"file_id": "file-abc"}}]))),
        (
            "messages[0].content[0].file: file_id references cannot be sent to Anthropic; inline the file as file_data".into(),
            p("messages[0].content[0].file")
        )
    );
    assert_eq!(
        a_err(user(json!([{"type": "file", "file": {"file_data": "data:application/zip;base64,UEsDBA=="}}]))),
        (
            "messages[0].content[0].file.file_data: media type \"application/zip\" is not supported by Anthropic; send application/pdf or text/plain".into(),
            p("messages[0].content[0].file.file_data")
        )
    );
    assert_eq!(
        a_err(user(
            json!([{"type": "file", "file": {"file_data": "data:text/plain;base64,!!!"}}])
        )),
        (
            "messages[0].content[0].file.file_data: is not valid base64".into(),
            p("messages[0].content[0].file.file_data")
        )
    );
}

fn assistant_call(arguments: Value) -> Value {
    json!({"messages": [
        {"role": "user", "content": "a"},
        {"role": "assistant", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": arguments}}
        ]}
    ]})
}

#[test]
fn tool_call_arguments() {
    assert_eq!(
        a_err(assistant_call(json!("{\"city\": "))),
        (
            "messages[1].tool_calls[1].function.arguments: is not valid JSON (EOF while parsing a value at line 1 column 9)".into(),
            p("messages[1].tool_calls[1].function.arguments")
        )
    );
    assert_eq!(
        a_err(assistant_call(json!("[1, 2]"))),
        (
            "messages[1].tool_calls[1].function.arguments: must encode a JSON object (Anthropic tool input is always an object)".into(),
            p("messages[1].tool_calls[1].function.arguments")
        )
    );
    assert_eq!(
        a_err(assistant_call(json!(7))),
        (
            "messages[1].tool_calls[1].function.arguments: must be a JSON-encoded string".into(),
            p("messages[1].tool_calls[1].function.arguments")
        )
    );
    assert_eq!(
        a_err(
            json!({"messages": [{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}]})
        ),
        (
            "messages[0].tool_calls[0].id: must be a string".into(),
            p("messages[0].tool_calls[0].id")
        )
    );
    assert_eq!(
        a_err(json!({"messages": [{"role": "tool", "content": "x"}]})),
        (
            "messages[0].tool_call_id: must be a string".into(),
            p("messages[0].tool_call_id")
        )
    );
}

#[test]
fn request_scalars() {
    let base = |extra: Value| {
        let mut m = map(json!({"messages": [{"role": "user", "content": "a"}]}));
        m.extend(map(extra));
        Value::Object(m)
    };
    assert_eq!(
        a_err(base(json!({"max_tokens": 0}))),
        (
            "max_tokens: must be a positive integer".into(),
            p("max_tokens")
        )
    );
    assert_eq!(
        a_err(base(json!({"max_completion_tokens": "lots"}))),
        (
            "max_completion_tokens: must be a positive integer".into(),
            p("max_completion_tokens")
        )
    );
    assert_eq!(
        a_err(base(json!({"stop": 5}))),
        (
            "stop: must be a string or an array of strings".into(),
            p("stop")
        )
    );
    assert_eq!(
        a_err(base(json!({"stop": ["a", 1]}))),
        ("stop[1]: must be a string".into(), p("stop[1]"))
    );
}

#[test]
fn tools_and_tool_choice() {
    let with_tools = |extra: Value| {
        let mut m = map(json!({"messages": [{"role": "user", "content": "a"}],
            "tools": [{"type": "function", "function": {"name": "f"}}]}));
        m.extend(map(extra));
        Value::Object(m)
    };
    assert_eq!(
        a_err(with_tools(json!({"tool_choice": "sometimes"}))),
        (
            "tool_choice: must be \"auto\", \"required\", \"none\" or {\"type\":\"function\",\"function\":{\"name\":...}}".into(),
            p("tool_choice")
        )
    );
    assert_eq!(
        a_err(with_tools(
            json!({"tool_choice": {"type": "function", "function": {}}})
        )),
        (
            "tool_choice.function.name: must be a string".into(),
            p("tool_choice.function.name")
        )
    );
    assert_eq!(
        a_err(with_tools(json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]}))),
        (
            "tools[0].type: unsupported tool type \"custom\"; only \"function\" tools convert to Anthropic".into(),
            p("tools[0].type")
        )
    );
    assert_eq!(
        a_err(with_tools(
            json!({"tools": [{"type": "function", "function": {"description": "no name"}}]})
        )),
        (
            "tools[0].function.name: must be a string".into(),
            p("tools[0].function.name")
        )
    );
    assert_eq!(
        a_err(with_tools(
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]})
        )),
        (
            "tools[0].function.parameters: must be a JSON Schema object".into(),
            p("tools[0].function.parameters")
        )
    );
}

#[test]
fn direction_b_request_errors() {
    let msgs = |content: Value| json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": content}]});
    assert_eq!(
        b_err(json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "a"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]})),
        (
            "tools[0].type: Anthropic server tool \"web_search_20250305\" cannot be sent through the OpenAI format; define it as a client tool with name and input_schema".into(),
            p("tools[0].type")
        )
    );
    assert_eq!(
        b_err(msgs(json!([{"type": "image", "source": {"type": "file", "file_id": "file_1"}}]))),
        (
            "messages[0].content[0].source.type: only base64 and url image sources can be sent through the OpenAI format".into(),
            p("messages[0].content[0].source.type")
        )
    );
    assert_eq!(
        b_err(msgs(json!([{"type": "server_tool_use", "id": "x", "name": "web_search", "input": {}}]))),
        (
            "messages[0].content[0]: unsupported content block type \"server_tool_use\" in a user message; expected text, image, document or tool_result".into(),
            p("messages[0].content[0]")
        )
    );
    assert_eq!(
        b_err(msgs(json!([{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "document", "source": {}}]}]))),
        (
            "messages[0].content[0].content[0]: unsupported block type \"document\" inside tool_result; expected text or image".into(),
            p("messages[0].content[0].content[0]")
        )
    );
    assert_eq!(
        b_err(msgs(json!(12))),
        (
            "messages[0].content: must be a string or an array of content blocks".into(),
            p("messages[0].content")
        )
    );
    assert_eq!(
        b_err(
            json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "a"}],
            "tool_choice": {"type": "sometimes"}})
        ),
        (
            "tool_choice.type: must be \"auto\", \"any\", \"tool\" or \"none\"".into(),
            p("tool_choice.type")
        )
    );
    assert_eq!(
        b_err(
            json!({"model": "m", "max_tokens": -1, "messages": [{"role": "user", "content": "a"}]})
        ),
        (
            "max_tokens: must be a positive integer".into(),
            p("max_tokens")
        )
    );
    assert_eq!(
        b_err(
            json!({"model": "m", "system": [{"type": "image"}], "messages": [{"role": "user", "content": "a"}]})
        ),
        ("system[0]: must be a text block".into(), p("system[0]"))
    );
}

#[test]
fn response_errors() {
    let e = messages_response_to_chat(&json!({"type": "message", "id": "msg_1"}), 0).unwrap_err();
    assert_eq!(
        e.message,
        "content: Anthropic response has no content array"
    );
    let e = chat_response_to_messages(&json!({"id": "x", "choices": []})).unwrap_err();
    assert_eq!(e.message, "choices: OpenAI response has no choices");
    let e = chat_response_to_messages(
        &json!({"choices": [{"message": {"role": "assistant", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    ]}, "finish_reason": "tool_calls"}]}),
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        "choices[0].message.tool_calls[0].function.arguments: model produced invalid JSON (key must be a string at line 1 column 2)"
    );
}

#[test]
fn error_display_and_std_error() {
    let e = ConvertError::at("messages[0].content", "must be a string");
    assert_eq!(e.to_string(), "messages[0].content: must be a string");
    let boxed: Box<dyn std::error::Error> = Box::new(e);
    assert_eq!(boxed.to_string(), "messages[0].content: must be a string");
}

#[test]
fn anthropic_error_bodies() {
    let body = br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}"#;
    assert_eq!(
        anthropic_error_to_parts(body),
        Some((
            "invalid_request_error".into(),
            "max_tokens: Field required".into()
        ))
    );
    assert_eq!(
        anthropic_error_to_parts(b"<html>502 Bad Gateway</html>"),
        None
    );
    assert_eq!(
        anthropic_error_to_parts(br#"{"error":{"message":"no type"}}"#),
        None
    );
    assert_eq!(anthropic_error_to_parts(br#"{"type":"error"}"#), None);
    assert_eq!(
        error_to_anthropic(
            "rate_limit_error",
            "Number of requests has exceeded your rate limit"
        ),
        json!({"type": "error", "error": {"type": "rate_limit_error",
               "message": "Number of requests has exceeded your rate limit"}})
    );
}
