//! OpenAI wire format: `chat.completion`, `text_completion`, embeddings, model list, SSE chunks
//! and the `{"error":{...}}` envelope. Builders only splice prebuilt JSON literals; they never
//! parse or touch the network.

use crate::body::StreamPlan;
use crate::reply::Reply;
use crate::text::json_str;

const DONE: &str = "data: [DONE]\n\n";

fn usage(r: &Reply<'_>) -> String {
    let (p, c) = (r.prompt_tokens, r.completion_tokens());
    format!(
        r#"{{"prompt_tokens":{p},"completion_tokens":{c},"total_tokens":{}}}"#,
        p + c
    )
}

/// Body of a non-streamed `POST /v1/chat/completions`.
pub(crate) fn chat_completion(r: &Reply<'_>) -> String {
    let (id, created, model) = (r.id, r.created, &r.model);
    let (message, finish) = match &r.tool {
        Some(name) => (
            format!(
                r#"{{"role":"assistant","content":null,"tool_calls":[{{"id":"call_mock_1","type":"function","function":{{"name":{name},"arguments":{args}}}}}],"refusal":null}}"#,
                args = r.tool_arguments.json
            ),
            "tool_calls",
        ),
        None => (
            format!(
                r#"{{"role":"assistant","content":{},"refusal":null}}"#,
                r.text.json
            ),
            "stop",
        ),
    };
    format!(
        r#"{{"id":"chatcmpl-mock-{id}","object":"chat.completion","created":{created},"model":{model},"choices":[{{"index":0,"message":{message},"logprobs":null,"finish_reason":"{finish}"}}],"usage":{usage},"system_fingerprint":null}}"#,
        usage = usage(r)
    )
}

/// SSE frames of a streamed chat completion.
pub(crate) fn chat_stream(r: &Reply<'_>, include_usage: bool, plan: &mut StreamPlan) {
    let head = format!(
        r#"data: {{"id":"chatcmpl-mock-{}","object":"chat.completion.chunk","created":{},"model":{},"system_fingerprint":null,"choices":"#,
        r.id, r.created, r.model
    );
    let choice = |delta: &str, finish: &str| {
        format!(
            "{head}[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    match &r.tool {
        Some(name) => {
            plan.event(choice(
                &format!(
                    r#"{{"role":"assistant","content":null,"tool_calls":[{{"index":0,"id":"call_mock_1","type":"function","function":{{"name":{name},"arguments":""}}}}]}}"#
                ),
                "null",
            ));
            for piece in &r.tool_arguments.pieces {
                plan.content(choice(
                    &format!(
                        r#"{{"tool_calls":[{{"index":0,"function":{{"arguments":{piece}}}}}]}}"#
                    ),
                    "null",
                ));
            }
            plan.content_done();
            plan.event(choice("{}", r#""tool_calls""#));
        }
        None => {
            plan.event(choice(
                r#"{"role":"assistant","content":"","refusal":null}"#,
                "null",
            ));
            for piece in &r.text.pieces {
                plan.content(choice(&format!(r#"{{"content":{piece}}}"#), "null"));
            }
            plan.content_done();
            plan.event(choice("{}", r#""stop""#));
        }
    }
    if include_usage {
        plan.event(format!("{head}[],\"usage\":{}}}\n\n", usage(r)));
    }
    plan.event(DONE);
}

/// Body of a non-streamed legacy `POST /v1/completions`.
pub(crate) fn text_completion(r: &Reply<'_>) -> String {
    format!(
        r#"{{"id":"cmpl-mock-{}","object":"text_completion","created":{},"model":{},"choices":[{{"text":{},"index":0,"logprobs":null,"finish_reason":"stop"}}],"usage":{}}}"#,
        r.id,
        r.created,
        r.model,
        r.text.json,
        usage(r)
    )
}

/// SSE frames of a streamed legacy completion.
pub(crate) fn text_completion_stream(r: &Reply<'_>, include_usage: bool, plan: &mut StreamPlan) {
    let head = format!(
        r#"data: {{"id":"cmpl-mock-{}","object":"text_completion","created":{},"model":{},"choices":"#,
        r.id, r.created, r.model
    );
    let choice = |text: &str, finish: &str| {
        format!(
            "{head}[{{\"text\":{text},\"index\":0,\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    for piece in &r.text.pieces {
        plan.content(choice(piece, "null"));
    }
    plan.content_done();
    plan.event(choice(r#""""#, r#""stop""#));
    if include_usage {
        plan.event(format!("{head}[],\"usage\":{}}}\n\n", usage(r)));
    }
    plan.event(DONE);
}

/// Dimensions of every mock embedding.
const EMBEDDING_DIMS: usize = 8;

/// Body of `POST /v1/embeddings`: deterministic vectors, distinct per input index.
pub(crate) fn embeddings(model: &str, inputs: usize, tokens: usize) -> String {
    let mut data = String::with_capacity(inputs * 128);
    for i in 0..inputs {
        if i > 0 {
            data.push(',');
        }
        let vector: Vec<String> = (0..EMBEDDING_DIMS)
            .map(|d| format!("{:.4}", 0.01 * (i as f64) + 0.1 * (d as f64 + 1.0)))
            .collect();
        data.push_str(&format!(
            r#"{{"object":"embedding","index":{i},"embedding":[{}]}}"#,
            vector.join(",")
        ));
    }
    format!(
        r#"{{"object":"list","data":[{data}],"model":{model},"usage":{{"prompt_tokens":{tokens},"total_tokens":{tokens}}}}}"#
    )
}

/// OpenAI error envelope for `status`.
pub(crate) fn error(status: u16, message: &str) -> String {
    let (kind, code) = match status {
        401 => ("invalid_request_error", r#""invalid_api_key""#),
        403 => ("permission_error", "null"),
        404 => ("invalid_request_error", r#""not_found""#),
        429 => ("requests", r#""rate_limit_exceeded""#),
        500..=599 => ("server_error", "null"),
        _ => ("invalid_request_error", "null"),
    };
    format!(
        r#"{{"error":{{"message":{},"type":"{kind}","param":null,"code":{code}}}}}"#,
        json_str(message)
    )
}
