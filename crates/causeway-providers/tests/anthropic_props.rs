//! Property tests for the Anthropic stream converters: whatever way the upstream splits text or
//! tool arguments into deltas, the client sees exactly the same text, in a well-formed sequence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use causeway_providers::anthropic::stream::{ChatToMessagesStream, MessagesToChatStream};
use proptest::prelude::*;
use serde_json::{Value, json};

fn anthropic_text_stream(pieces: &[String]) -> Vec<Value> {
    let mut events = vec![
        json!({"type": "message_start", "message": {"id": "msg_p", "type": "message", "role": "assistant",
               "model": "claude", "content": [], "stop_reason": null, "stop_sequence": null,
               "usage": {"input_tokens": 3, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ];
    for piece in pieces {
        events.push(json!({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "text_delta", "text": piece}}));
    }
    events.push(json!({"type": "content_block_stop", "index": 0}));
    events.push(
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                       "usage": {"output_tokens": 9}}),
    );
    events.push(json!({"type": "message_stop"}));
    events
}

fn openai_text_chunk(text: &str) -> Value {
    json!({"id": "chatcmpl-p", "object": "chat.completion.chunk", "created": 1, "model": "gpt",
           "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
}

proptest! {
    #[test]
    fn anthropic_text_deltas_concatenate_to_the_same_content(
        pieces in prop::collection::vec(any::<String>(), 0..24),
        include_usage in any::<bool>(),
        name_events in any::<bool>(),
    ) {
        let mut conv = MessagesToChatStream::new(include_usage, 7);
        let mut content = String::new();
        let mut finishes = 0;
        for event in anthropic_text_stream(&pieces) {
            let name = if name_events { event["type"].as_str().unwrap().to_owned() } else { String::new() };
            for chunk in conv.on_event(&name, &event).unwrap() {
                prop_assert_eq!(&chunk["object"], "chat.completion.chunk");
                prop_assert_eq!(&chunk["id"], "msg_p");
                if let Some(choice) = chunk["choices"].get(0) {
                    if let Some(text) = choice["delta"]["content"].as_str() {
                        content.push_str(text);
                    }
                    if !choice["finish_reason"].is_null() {
                        finishes += 1;
                    }
                }
            }
        }
        prop_assert_eq!(content, pieces.concat());
        prop_assert_eq!(finishes, 1);
    }

    #[test]
    fn openai_text_chunks_concatenate_to_the_same_text_deltas(
        pieces in prop::collection::vec(any::<String>(), 0..24),
    ) {
        let mut conv = ChatToMessagesStream::new();
        let mut events = Vec::new();
        for piece in &pieces {
            events.extend(conv.on_chunk(&openai_text_chunk(piece)));
        }
        events.extend(conv.on_chunk(&json!({"id": "chatcmpl-p", "model": "gpt",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})));
        events.extend(conv.finish());

        let text: String = events
            .iter()
            .filter_map(|(_, d)| d["delta"]["text"].as_str())
            .collect();
        prop_assert_eq!(text, pieces.concat());

        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        prop_assert_eq!(names.first().copied(), Some("message_start"));
        prop_assert_eq!(&names[names.len() - 2..], &["message_delta", "message_stop"]);
        prop_assert_eq!(names.iter().filter(|n| **n == "message_start").count(), 1);
        let starts = names.iter().filter(|n| **n == "content_block_start").count();
        let stops = names.iter().filter(|n| **n == "content_block_stop").count();
        prop_assert_eq!(starts, stops);
        prop_assert!(starts <= 1, "text deltas share one block");
    }

    #[test]
    fn tool_argument_fragments_survive_both_directions(
        args in "\\{\"[a-z]{1,8}\": \"[ -~]{0,40}\"\\}",
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        // Split the argument JSON at arbitrary char boundaries.
        let chars: Vec<char> = args.chars().collect();
        let mut bounds: Vec<usize> = cuts.iter().map(|i| i.index(chars.len() + 1)).collect();
        bounds.extend([0, chars.len()]);
        bounds.sort_unstable();
        bounds.dedup();
        let fragments: Vec<String> = bounds
            .windows(2)
            .map(|w| chars[w[0]..w[1]].iter().collect())
            .collect();

        // Anthropic -> OpenAI.
        let mut a = MessagesToChatStream::new(false, 0);
        let mut events = vec![
            json!({"type": "message_start", "message": {"id": "m", "model": "c", "usage": {"input_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}}),
        ];
        for f in &fragments {
            events.push(json!({"type": "content_block_delta", "index": 0,
                               "delta": {"type": "input_json_delta", "partial_json": f}}));
        }
        let mut chunks = Vec::new();
        for e in &events {
            chunks.extend(a.on_event("", e).unwrap());
        }
        let openai_args: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
            .collect();
        prop_assert_eq!(&openai_args, &args);

        // OpenAI -> Anthropic, feeding the chunks just produced.
        let mut b = ChatToMessagesStream::new();
        let mut out = Vec::new();
        for c in &chunks {
            out.extend(b.on_chunk(c));
        }
        out.extend(b.finish());
        let anthropic_args: String = out
            .iter()
            .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
            .collect();
        prop_assert_eq!(&anthropic_args, &args);
        let tool_starts = out
            .iter()
            .filter(|(n, d)| n == "content_block_start" && d["content_block"]["type"] == "tool_use")
            .count();
        prop_assert_eq!(tool_starts, 1);
    }
}
