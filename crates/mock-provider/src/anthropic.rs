//! Anthropic Messages wire format: the `message` object, the SSE event sequence
//! (`message_start` … `message_stop`) and the `{"type":"error",...}` envelope.
//! Builders only splice prebuilt JSON literals; they never parse or touch the network.

use crate::body::StreamPlan;
use crate::reply::Reply;
use crate::text::json_str;

const PING: &str = "event: ping\ndata: {\"type\":\"ping\"}\n\n";
const BLOCK_STOP: &str =
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n";
const MESSAGE_STOP: &str = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

fn stop_reason(r: &Reply<'_>) -> &'static str {
    if r.tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    }
}

/// Body of a non-streamed `POST /v1/messages`.
pub(crate) fn message(r: &Reply<'_>) -> String {
    let block = match &r.tool {
        Some(name) => format!(
            r#"{{"type":"tool_use","id":"toolu_mock_1","name":{name},"input":{}}}"#,
            crate::config::TOOL_ARGUMENTS
        ),
        None => format!(r#"{{"type":"text","text":{}}}"#, r.text.json),
    };
    format!(
        r#"{{"id":"msg_mock_{}","type":"message","role":"assistant","model":{},"content":[{block}],"stop_reason":"{}","stop_sequence":null,"usage":{{"input_tokens":{},"output_tokens":{}}}}}"#,
        r.id,
        r.model,
        stop_reason(r),
        r.prompt_tokens,
        r.completion_tokens()
    )
}

/// SSE events of a streamed `POST /v1/messages`, in the order the real API sends them.
pub(crate) fn message_stream(r: &Reply<'_>, plan: &mut StreamPlan) {
    plan.event(format!(
        "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_mock_{}\",\"type\":\"message\",\"role\":\"assistant\",\"model\":{},\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{{\"input_tokens\":{},\"output_tokens\":1}}}}}}\n\n",
        r.id, r.model, r.prompt_tokens
    ));
    let (block, delta_type, delta_field, pieces) = match &r.tool {
        Some(name) => (
            format!(r#"{{"type":"tool_use","id":"toolu_mock_1","name":{name},"input":{{}}}}"#),
            "input_json_delta",
            "partial_json",
            &r.tool_arguments.pieces,
        ),
        None => (
            r#"{"type":"text","text":""}"#.to_owned(),
            "text_delta",
            "text",
            &r.text.pieces,
        ),
    };
    plan.event(format!(
        "event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{block}}}\n\n"
    ));
    plan.event(PING);
    for piece in pieces {
        plan.content(format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"{delta_type}\",\"{delta_field}\":{piece}}}}}\n\n"
        ));
    }
    plan.content_done();
    plan.event(BLOCK_STOP);
    plan.event(format!(
        "event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"{}\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{}}}}}\n\n",
        stop_reason(r),
        r.completion_tokens()
    ));
    plan.event(MESSAGE_STOP);
}

/// Anthropic error envelope for `status`.
pub(crate) fn error(status: u16, message: &str) -> String {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    };
    format!(
        r#"{{"type":"error","error":{{"type":"{kind}","message":{}}}}}"#,
        json_str(message)
    )
}
