#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Fault injection over real HTTP: fail_first, per-key statuses, require_known_key,
//! failure_rate, stream_fail_after, latency, and the order the rules apply in.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Harness, chat_body, messages_body};
use mock_provider::{KeyBehaviour, MockConfig};
use serde_json::Value;

fn status(code: u16) -> KeyBehaviour {
    KeyBehaviour {
        status: Some(code),
        ..KeyBehaviour::default()
    }
}

#[tokio::test]
async fn fail_first_then_succeed() {
    let h = Harness::start(MockConfig {
        fail_first: 2,
        ..MockConfig::default()
    })
    .await;
    for key in ["a", "b"] {
        let res = h
            .openai("/v1/chat/completions", Some(key), chat_body(false))
            .await;
        assert_eq!(res.status(), 500);
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"]["type"], "server_error");
    }
    let res = h
        .openai("/v1/chat/completions", Some("a"), chat_body(false))
        .await;
    assert_eq!(res.status(), 200);
    // Listing models does not consume the failure budget.
    h.server.set_config(MockConfig {
        fail_first: 1,
        ..MockConfig::default()
    });
    let res = h.client.get(h.url("/v1/models")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = h.anthropic(Some("a"), messages_body(false)).await;
    assert_eq!(res.status(), 500);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["type"],
        "api_error"
    );
}

#[tokio::test]
async fn key_behaviours_pick_status_per_key() {
    let h = Harness::start(MockConfig {
        key_behaviours: HashMap::from([
            ("revoked".to_owned(), status(401)),
            ("limited".to_owned(), status(429)),
            (
                "custom".to_owned(),
                KeyBehaviour {
                    content: Some("custom words here".to_owned()),
                    ..KeyBehaviour::default()
                },
            ),
        ]),
        ..MockConfig::default()
    })
    .await;

    let res = h
        .openai("/v1/chat/completions", Some("revoked"), chat_body(false))
        .await;
    assert_eq!(res.status(), 401);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["code"], "invalid_api_key");

    let res = h
        .openai("/v1/chat/completions", Some("limited"), chat_body(false))
        .await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "1");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");

    let v: Value = h
        .openai("/v1/chat/completions", Some("custom"), chat_body(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "custom words here");

    let res = h
        .openai("/v1/chat/completions", Some("anyone"), chat_body(false))
        .await;
    assert_eq!(res.status(), 200);
    let res = h
        .openai("/v1/chat/completions", None, chat_body(false))
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn require_known_key_rejects_strangers() {
    let h = Harness::start(MockConfig {
        require_known_key: true,
        key_behaviours: HashMap::from([("known".to_owned(), KeyBehaviour::default())]),
        ..MockConfig::default()
    })
    .await;
    let res = h
        .openai("/v1/chat/completions", Some("known"), chat_body(false))
        .await;
    assert_eq!(res.status(), 200);
    let res = h
        .openai("/v1/chat/completions", Some("stranger"), chat_body(false))
        .await;
    assert_eq!(res.status(), 401);
    let res = h
        .openai("/v1/chat/completions", None, chat_body(false))
        .await;
    assert_eq!(res.status(), 401);
    let res = h.anthropic(Some("stranger"), messages_body(false)).await;
    assert_eq!(res.status(), 401);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "authentication_error");
    let res = h.anthropic(Some("known"), messages_body(false)).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn failure_rate_one_fails_everything() {
    let h = Harness::start(MockConfig {
        failure_rate: 1.0,
        failure_status: 503,
        ..MockConfig::default()
    })
    .await;
    for _ in 0..20 {
        let res = h
            .openai("/v1/chat/completions", None, chat_body(false))
            .await;
        assert_eq!(res.status(), 503);
    }
    let res = h.anthropic(None, messages_body(true)).await;
    assert_eq!(res.status(), 503);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "overloaded_error");
    assert_eq!(h.server.streams_started(), 0);
}

#[tokio::test]
async fn rules_apply_in_order() {
    let h = Harness::start(MockConfig {
        fail_first: 1,
        key_behaviours: HashMap::from([("revoked".to_owned(), status(401))]),
        ..MockConfig::default()
    })
    .await;
    // A key status wins, and does not use up fail_first.
    let res = h
        .openai("/v1/chat/completions", Some("revoked"), chat_body(false))
        .await;
    assert_eq!(res.status(), 401);
    // Bad JSON is rejected before fail_first too.
    let res = h
        .client
        .post(h.url("/v1/chat/completions"))
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = h
        .openai("/v1/chat/completions", Some("k"), chat_body(false))
        .await;
    assert_eq!(res.status(), 500);
    let res = h
        .openai("/v1/chat/completions", Some("k"), chat_body(false))
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn stream_fail_after_breaks_the_body() {
    let h = Harness::start(MockConfig {
        stream_fail_after: Some(2),
        ..MockConfig::default()
    })
    .await;
    for api in ["openai", "anthropic"] {
        let mut res = if api == "openai" {
            h.openai("/v1/chat/completions", None, chat_body(true))
                .await
        } else {
            h.anthropic(None, messages_body(true)).await
        };
        assert_eq!(res.status(), 200, "{api}");
        let mut received = Vec::new();
        let error = loop {
            match res.chunk().await {
                Ok(Some(bytes)) => received.extend_from_slice(&bytes),
                Ok(None) => panic!("{api}: stream ended cleanly"),
                Err(e) => break e,
            }
        };
        assert!(
            error.is_body() || error.is_decode() || error.is_request(),
            "{error:?}"
        );
        let text = String::from_utf8(received).unwrap();
        assert!(
            !text.contains("[DONE]") && !text.contains("message_stop"),
            "{text}"
        );
        // Everything before the break is delivered: the opening event and two content chunks.
        let (opening, deltas) = if api == "openai" {
            ("\"role\":\"assistant\"", "\"delta\":{\"content\":")
        } else {
            ("event: message_start", "event: content_block_delta")
        };
        assert!(text.contains(opening), "{text}");
        assert_eq!(text.matches(deltas).count(), 2, "{text}");
    }
    assert_eq!(h.server.streams_started(), 2);
    assert_eq!(h.server.streams_aborted(), 2);
    assert_eq!(h.server.streams_completed(), 0);
    assert_eq!(h.server.streams_cancelled(), 0);
}

#[tokio::test]
async fn latency_delays_and_key_latency_overrides() {
    let h = Harness::start(MockConfig {
        latency: Duration::from_millis(150),
        key_behaviours: HashMap::from([(
            "fast".to_owned(),
            KeyBehaviour {
                latency: Some(Duration::ZERO),
                ..KeyBehaviour::default()
            },
        )]),
        ..MockConfig::default()
    })
    .await;
    let t = Instant::now();
    let res = h
        .openai("/v1/chat/completions", Some("slow"), chat_body(false))
        .await;
    assert_eq!(res.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(150));

    let t = Instant::now();
    let res = h
        .openai("/v1/chat/completions", Some("fast"), chat_body(false))
        .await;
    assert_eq!(res.status(), 200);
    assert!(t.elapsed() < Duration::from_millis(150));
}
