#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Server lifecycle over real HTTP: request recording, run-time config swaps, stream
//! cancellation detection, concurrency and shutdown on drop.

mod common;

use std::time::Duration;

use common::{Harness, chat_body, messages_body};
use mock_provider::{MockConfig, MockServer};
use serde_json::{Value, json};

#[tokio::test]
async fn records_requests_in_order() {
    let h = Harness::start(MockConfig::default()).await;
    h.client
        .post(h.url("/v1/chat/completions?trace=1"))
        .bearer_auth("sk-one")
        .header("X-Custom", "yes")
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    h.anthropic(Some("sk-two"), messages_body(false)).await;
    h.client.get(h.url("/v1/models")).send().await.unwrap();

    let reqs = h.server.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(h.server.request_count(), 3);
    let first = &reqs[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/v1/chat/completions");
    assert_eq!(first.api_key.as_deref(), Some("sk-one"));
    assert_eq!(first.header("x-custom"), Some("yes"));
    assert_eq!(first.header("authorization"), Some("Bearer sk-one"));
    assert!(first.headers.iter().all(|(k, _)| *k == k.to_lowercase()));
    assert_eq!(first.body, chat_body(false));
    assert_eq!(reqs[1].path, "/v1/messages");
    assert_eq!(reqs[1].api_key.as_deref(), Some("sk-two"));
    assert_eq!(reqs[1].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(reqs[2].method, "GET");
    assert_eq!(reqs[2].body, Value::Null);
    assert_eq!(reqs[2].api_key, None);

    h.server.clear_requests();
    assert!(h.server.requests().is_empty());
    assert_eq!(h.server.request_count(), 0);
}

#[tokio::test]
async fn record_requests_off_keeps_only_counters() {
    let h = Harness::start(MockConfig {
        record_requests: false,
        ..MockConfig::default()
    })
    .await;
    for _ in 0..3 {
        h.openai("/v1/chat/completions", None, chat_body(false))
            .await;
    }
    assert!(h.server.requests().is_empty());
    assert_eq!(h.server.request_count(), 3);
}

#[tokio::test]
async fn invalid_body_is_recorded_as_null() {
    let h = Harness::start(MockConfig::default()).await;
    h.client
        .post(h.url("/v1/embeddings"))
        .body("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(h.server.requests()[0].body, Value::Null);
}

#[tokio::test]
async fn set_config_swaps_behaviour() {
    let h = Harness::start(MockConfig::default()).await;
    let v: Value = h
        .openai("/v1/chat/completions", None, chat_body(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from mock-provider"
    );

    h.server.set_config(MockConfig {
        content: "swapped at run time".to_owned(),
        ..MockConfig::default()
    });
    let v: Value = h
        .openai("/v1/chat/completions", None, chat_body(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "swapped at run time");
    assert_eq!(v["usage"]["completion_tokens"], 4);

    h.server.set_config(MockConfig {
        failure_rate: 1.0,
        failure_status: 502,
        ..MockConfig::default()
    });
    let res = h
        .openai("/v1/chat/completions", None, chat_body(false))
        .await;
    assert_eq!(res.status(), 502);
}

#[tokio::test]
async fn client_dropping_a_stream_is_counted_as_cancelled() {
    let h = Harness::start(MockConfig {
        stream_chunks: 10_000,
        stream_interval: Duration::from_millis(5),
        ..MockConfig::default()
    })
    .await;
    let mut res = h
        .openai("/v1/chat/completions", None, chat_body(true))
        .await;
    let first = res.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(res);
    assert!(
        h.server
            .wait_for_cancelled_streams(1, Duration::from_secs(10))
            .await
    );
    assert_eq!(h.server.streams_started(), 1);
    assert_eq!(h.server.streams_cancelled(), 1);
    assert_eq!(h.server.streams_completed(), 0);
    // Nothing else is pending, so waiting for a second cancellation times out.
    assert!(
        !h.server
            .wait_for_cancelled_streams(2, Duration::from_millis(50))
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serves_concurrent_requests() {
    let h = Harness::start(MockConfig {
        record_requests: false,
        ..MockConfig::default()
    })
    .await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let client = h.client.clone();
        let url = h.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            let body = json!({"model": format!("m{i}"), "stream": i % 2 == 0, "messages": []});
            let res = client.post(url).json(&body).send().await.unwrap();
            assert_eq!(res.status(), 200);
            res.text().await.unwrap()
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let text = t.await.unwrap();
        assert!(text.contains(&format!("\"model\":\"m{i}\"")));
    }
    assert_eq!(h.server.request_count(), 64);
    assert_eq!(h.server.streams_completed(), 32);
}

#[tokio::test]
async fn dropping_the_server_closes_open_streams() {
    let server = MockServer::start(MockConfig {
        stream_chunks: 10_000,
        stream_interval: Duration::from_millis(5),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let mut res = client
        .post(format!("{}/v1/chat/completions", server.base_url()))
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    res.chunk().await.unwrap().unwrap();
    drop(server);
    let end = loop {
        match res.chunk().await {
            Ok(Some(_)) => continue,
            other => break other,
        }
    };
    assert!(end.is_err(), "an unfinished stream must end in an error");
}

#[tokio::test]
async fn start_on_binds_the_given_address() {
    let server = MockServer::start_on("127.0.0.1:0".parse().unwrap(), MockConfig::default())
        .await
        .unwrap();
    assert!(server.addr().ip().is_loopback());
    assert_ne!(server.addr().port(), 0);
    assert_eq!(
        server.base_url(),
        format!("http://127.0.0.1:{}", server.addr().port())
    );
}
