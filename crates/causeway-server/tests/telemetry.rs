//! The `telemetry` plugin over real HTTP: `GET /metrics` is a 404 until the plugin is on;
//! after known traffic against mock upstreams the Prometheus text (parsed here) holds exact
//! counts, label sets, token totals, cost and histogram counts; dimension labels appear only
//! when configured and their values are capped; disabling the plugin turns metrics off.
//!
//! The mock counts whitespace words as tokens: the prompt "hello there" is 2 input tokens and
//! the answer "Hello from mock-provider" 3 output tokens. `governance.pricing_overrides`
//! prices openai/gpt-4o at 1000 USD per 1M input and 2000 USD per 1M output tokens, so one
//! call costs (2 * 1000 + 3 * 2000) / 1e6 = 0.008 USD.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::{Harness, assert_envelope, chat_body, eventually, json_of, provider, send, sse_data};
use mock_provider::{KeyBehaviour, MockConfig, MockServer};
use reqwest::Method;
use serde_json::{Value, json};

// ---- a tiny Prometheus text parser ------------------------------------------------------------

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

struct Metrics {
    samples: Vec<Sample>,
    types: HashMap<String, String>,
}

fn parse(text: &str) -> Metrics {
    let mut samples = Vec::new();
    let mut types = HashMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find('{') {
            Some(i) => (&line[..i], &line[i..]),
            None => line.split_at(line.find(' ').unwrap()),
        };
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            let mut end = 0;
            loop {
                // name="value" pairs, comma separated, values with \\ \" \n escapes.
                let mut key = String::new();
                for (i, c) in chars.by_ref() {
                    if c == '}' {
                        end = i + 1;
                        break;
                    }
                    if c == '=' {
                        break;
                    }
                    if c != ',' {
                        key.push(c);
                    }
                }
                if end > 0 {
                    break;
                }
                assert_eq!(chars.next().map(|c| c.1), Some('"'), "{line}");
                let mut value = String::new();
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next().unwrap().1 {
                            'n' => value.push('\n'),
                            other => value.push(other),
                        },
                        '"' => break,
                        c => value.push(c),
                    }
                }
                labels.insert(key, value);
            }
            rest = &body[end..];
        }
        let value: f64 = match rest.trim() {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Metrics { samples, types }
}

impl Metrics {
    /// The sample with exactly this label set.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| {
            let same: Vec<&Sample> = self.samples.iter().filter(|s| s.name == name).collect();
            panic!("no {name}{labels:?}; series of that name: {same:#?}")
        })
    }

    fn all(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }
}

async fn scrape(h: &Harness) -> Metrics {
    let resp = h.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    parse(&resp.text().await.unwrap())
}

/// Scrapes until `check` holds (in-flight counts settle just after the client has its answer).
async fn scrape_until(h: &Harness, check: impl Fn(&Metrics) -> bool) -> Metrics {
    let got = eventually(Duration::from_secs(5), || async {
        let m = scrape(h).await;
        check(&m).then_some(m)
    })
    .await;
    match got {
        Some(m) => m,
        None => panic!("metrics never reached the expected state"),
    }
}

async fn mock(cfg: MockConfig) -> MockServer {
    MockServer::start(cfg).await.unwrap()
}

async fn enable(h: &Harness, config: Value) {
    let (s, v) = json_of(
        h.post(
            "/api/plugins",
            &json!({"name": "telemetry", "enabled": true, "config": config}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["plugin"]["status"]["status"], "active", "{v}");
}

async fn chat_as(h: &Harness, model: &str, headers: &[(&str, &str)]) -> u16 {
    send(
        h,
        Method::POST,
        "/v1/chat/completions",
        Some(&chat_body(model)),
        headers,
    )
    .await
    .status()
    .as_u16()
}

// ---- tests ------------------------------------------------------------------------------------

#[tokio::test]
async fn metrics_after_known_traffic() {
    let good = mock(MockConfig::default()).await;
    let limited = mock(MockConfig {
        key_behaviours: HashMap::from([(
            "sk-limited-11111111".to_owned(),
            KeyBehaviour {
                status: Some(429),
                ..KeyBehaviour::default()
            },
        )]),
        ..MockConfig::default()
    })
    .await;
    let flaky = mock(MockConfig {
        fail_first: 1,
        failure_status: 500,
        ..MockConfig::default()
    })
    .await;
    let mut groq = provider(&limited.base_url(), &[("k", "sk-limited-11111111")]);
    groq["network_config"]["max_retries"] = json!(0);
    let mut mistral = provider(&flaky.base_url(), &[("k", "sk-flaky-111111111111")]);
    mistral["network_config"]["max_retries"] = json!(1);
    let h = Harness::start(Some(json!({
        "providers": {
            "openai": provider(&good.base_url(), &[("k", "sk-good-11111111111")]),
            "groq": groq,
            "mistral": mistral,
        },
        "governance": {"pricing_overrides": [
            {"provider": "openai", "model": "gpt-4o", "input": 1000.0, "output": 2000.0}
        ]},
    })))
    .await;

    // Off until enabled.
    let (s, v) = json_of(h.get("/metrics").await).await;
    assert_eq!(s, 404, "{v}");
    assert_envelope(&v, 404);
    enable(&h, json!({"custom_labels": ["team"]})).await;

    // 3 plain successes for team alpha (with a dimension that is not configured).
    let alpha = [("x-bf-dim-team", "alpha"), ("x-bf-dim-region", "eu")];
    for _ in 0..3 {
        assert_eq!(chat_as(&h, "openai/gpt-4o", &alpha).await, 200);
    }
    // An upstream 429 (one key, no retries).
    assert_eq!(chat_as(&h, "groq/llama-3.1-8b", &[]).await, 429);
    // A stream with usage.
    let mut body = chat_body("openai/gpt-4o");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = send(
        &h,
        Method::POST,
        "/v1/chat/completions",
        Some(&body),
        &alpha,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let events = sse_data(resp).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    // A retry: the first attempt gets a 500, the second succeeds.
    assert_eq!(chat_as(&h, "mistral/mistral-small", &[]).await, 200);
    assert_eq!(flaky.request_count(), 2);
    // Not a route.
    assert_eq!(h.get("/no/such/route").await.status(), 404);

    let m = scrape_until(&h, |m| m.get("bifrost_active_requests", &[]) == Some(1.0)).await;

    assert_eq!(m.types["bifrost_upstream_requests_total"], "counter");
    assert_eq!(m.types["bifrost_cost_total"], "counter");
    assert_eq!(m.types["bifrost_upstream_latency_seconds"], "histogram");
    assert_eq!(m.types["bifrost_active_requests"], "gauge");

    let openai = |method: &'static str| {
        [
            ("provider", "openai"),
            ("model", "gpt-4o"),
            ("method", method),
            ("team", "alpha"),
        ]
    };
    let chat = openai("chat_completion");
    let stream = openai("chat_completion_stream");
    let groq = [
        ("provider", "groq"),
        ("model", "llama-3.1-8b"),
        ("method", "chat_completion"),
        ("team", ""),
    ];
    let mistral = [
        ("provider", "mistral"),
        ("model", "mistral-small"),
        ("method", "chat_completion"),
        ("team", ""),
    ];

    // One upstream request per attempt; each a success or an error.
    assert_eq!(m.value("bifrost_upstream_requests_total", &chat), 3.0);
    assert_eq!(m.value("bifrost_upstream_requests_total", &stream), 1.0);
    assert_eq!(m.value("bifrost_upstream_requests_total", &groq), 1.0);
    assert_eq!(m.value("bifrost_upstream_requests_total", &mistral), 2.0);
    assert_eq!(m.all("bifrost_upstream_requests_total").len(), 4);
    assert_eq!(m.value("bifrost_success_requests_total", &chat), 3.0);
    assert_eq!(m.value("bifrost_success_requests_total", &stream), 1.0);
    assert_eq!(m.value("bifrost_success_requests_total", &mistral), 1.0);
    assert_eq!(m.get("bifrost_success_requests_total", &groq), None);
    let err = |base: &[(&'static str, &'static str); 4], status, kind| {
        let mut l = base.to_vec();
        l.push(("status_code", status));
        l.push(("error_type", kind));
        l
    };
    assert_eq!(
        m.value(
            "bifrost_error_requests_total",
            &err(&groq, "429", "provider_rate_limited")
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "bifrost_error_requests_total",
            &err(&mistral, "500", "provider_server_error")
        ),
        1.0
    );
    assert_eq!(m.all("bifrost_error_requests_total").len(), 2);

    // Latency per attempt; overhead per non-streamed request with an attempt.
    assert_eq!(
        m.value("bifrost_upstream_latency_seconds_count", &chat),
        3.0
    );
    assert_eq!(
        m.value("bifrost_upstream_latency_seconds_count", &mistral),
        2.0
    );
    let mut inf = chat.to_vec();
    inf.push(("le", "+Inf"));
    assert_eq!(
        m.value("bifrost_upstream_latency_seconds_bucket", &inf),
        3.0
    );
    assert_eq!(
        m.value("bifrost_overhead_latency_microseconds_count", &chat),
        3.0
    );
    assert_eq!(
        m.value("bifrost_overhead_latency_microseconds_count", &groq),
        1.0
    );
    assert_eq!(
        m.value("bifrost_overhead_latency_microseconds_count", &mistral),
        1.0
    );
    assert_eq!(
        m.get("bifrost_overhead_latency_microseconds_count", &stream),
        None,
        "overhead is for non-streamed requests only"
    );

    // Tokens and cost equal the mock's usage and the override price.
    assert_eq!(m.value("bifrost_input_tokens_total", &chat), 6.0);
    assert_eq!(m.value("bifrost_output_tokens_total", &chat), 9.0);
    assert_eq!(m.value("bifrost_input_tokens_total", &stream), 2.0);
    assert_eq!(m.value("bifrost_output_tokens_total", &stream), 3.0);
    assert!((m.value("bifrost_cost_total", &chat) - 0.024).abs() < 1e-9);
    assert!((m.value("bifrost_cost_total", &stream) - 0.008).abs() < 1e-9);
    assert_eq!(m.get("bifrost_input_tokens_total", &groq), None);

    // Retries per request.
    assert_eq!(m.value("bifrost_request_retries_count", &mistral), 1.0);
    assert_eq!(m.value("bifrost_request_retries_sum", &mistral), 1.0);
    let mut le0 = mistral.to_vec();
    le0.push(("le", "0"));
    assert_eq!(m.value("bifrost_request_retries_bucket", &le0), 0.0);
    let mut le1 = mistral.to_vec();
    le1.push(("le", "1"));
    assert_eq!(m.value("bifrost_request_retries_bucket", &le1), 1.0);
    assert_eq!(m.value("bifrost_request_retries_sum", &chat), 0.0);

    // Stream timings: one observation per stream.
    assert_eq!(
        m.value("bifrost_stream_first_token_latency_seconds_count", &stream),
        1.0
    );
    assert_eq!(
        m.value("bifrost_stream_inter_token_latency_seconds_count", &stream),
        1.0
    );
    assert_eq!(
        m.value(
            "causeway_stream_max_inter_token_latency_seconds_count",
            &stream
        ),
        1.0
    );
    assert!(
        m.all("bifrost_stream_first_token_latency_seconds_count")
            .len()
            == 1
    );
    assert!(m.all("causeway_requests_cancelled_total").is_empty());

    // HTTP level: route templates, statuses, the configured dimension.
    let http = |method, path, status, team| {
        vec![
            ("method", method),
            ("path", path),
            ("status", status),
            ("team", team),
        ]
    };
    assert_eq!(
        m.value(
            "http_requests_total",
            &http("POST", "/v1/chat/completions", "200", "alpha")
        ),
        4.0
    );
    assert_eq!(
        m.value(
            "http_requests_total",
            &http("POST", "/v1/chat/completions", "429", "")
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "http_requests_total",
            &http("POST", "/v1/chat/completions", "200", "")
        ),
        1.0
    );
    assert_eq!(
        m.value("http_requests_total", &http("GET", "unmatched", "404", "")),
        1.0
    );
    assert_eq!(
        m.value(
            "http_request_duration_seconds_count",
            &http("POST", "/v1/chat/completions", "200", "alpha")
        ),
        4.0
    );

    // The dimension that is not configured is no label anywhere.
    assert!(
        m.samples.iter().all(|s| !s.labels.contains_key("region")),
        "region must not be a label"
    );

    // Scrapes count as HTTP requests too (after they are answered).
    let m = scrape(&h).await;
    assert!(m.value("http_requests_total", &http("GET", "/metrics", "200", "")) >= 1.0);
}

#[tokio::test]
async fn dimension_values_are_capped_and_disabling_turns_metrics_off() {
    let good = mock(MockConfig::default()).await;
    let h = Harness::start(Some(json!({"providers": {
        "openai": provider(&good.base_url(), &[("k", "sk-good-11111111111")]),
    }})))
    .await;
    enable(
        &h,
        json!({"custom_labels": ["team"], "max_label_values": 2}),
    )
    .await;
    for team in ["t1", "t2", "t3", "t4", "t1"] {
        assert_eq!(
            chat_as(&h, "openai/gpt-4o", &[("x-bf-dim-team", team)]).await,
            200
        );
    }
    let m = scrape(&h).await;
    let labels = |team| {
        [
            ("provider", "openai"),
            ("model", "gpt-4o"),
            ("method", "chat_completion"),
            ("team", team),
        ]
    };
    assert_eq!(
        m.value("bifrost_upstream_requests_total", &labels("t1")),
        2.0
    );
    assert_eq!(
        m.value("bifrost_upstream_requests_total", &labels("t2")),
        1.0
    );
    assert_eq!(
        m.value("bifrost_upstream_requests_total", &labels("other")),
        2.0
    );
    assert_eq!(m.all("bifrost_upstream_requests_total").len(), 3);

    // Disabled: /metrics is a 404 again (the old instance is withdrawn once it drains).
    let (s, v) = json_of(
        h.put("/api/plugins/telemetry", &json!({"enabled": false}))
            .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let off = eventually(Duration::from_secs(5), || async {
        (h.get("/metrics").await.status() == 404).then_some(())
    })
    .await;
    assert!(off.is_some(), "metrics still served after disabling");

    // Enabled with metrics_enabled false: still a 404.
    let (s, v) = json_of(
        h.put(
            "/api/plugins/telemetry",
            &json!({"enabled": true, "config": {"metrics_enabled": false}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(h.get("/metrics").await.status(), 404);

    // Back on: a fresh registry.
    let (s, v) = json_of(
        h.put(
            "/api/plugins/telemetry",
            &json!({"enabled": true, "config": {"metrics_enabled": true}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let m = scrape(&h).await;
    assert!(m.all("bifrost_upstream_requests_total").is_empty());
    assert_eq!(chat_as(&h, "openai/gpt-4o", &[]).await, 200);
    let m = scrape(&h).await;
    assert_eq!(m.value("bifrost_upstream_requests_total", &labels("")), 1.0);
}

#[tokio::test]
async fn labels_default_to_client_prometheus_labels() {
    let good = mock(MockConfig::default()).await;
    let h = Harness::start(Some(json!({
        "client": {"prometheus_labels": ["tenant"]},
        "providers": {"openai": provider(&good.base_url(), &[("k", "sk-good-11111111111")])},
        "plugins": [{"name": "telemetry", "enabled": true}],
    })))
    .await;
    assert_eq!(
        chat_as(&h, "openai/gpt-4o", &[("x-bf-dim-tenant", "acme")]).await,
        200
    );
    let m = scrape(&h).await;
    assert_eq!(
        m.value(
            "bifrost_upstream_requests_total",
            &[
                ("provider", "openai"),
                ("model", "gpt-4o"),
                ("method", "chat_completion"),
                ("tenant", "acme"),
            ]
        ),
        1.0
    );
}

#[tokio::test]
async fn bad_config_is_a_400_naming_the_field() {
    let h = Harness::start(None).await;
    for (config, field) in [
        (json!({"bogus": true}), "bogus: unknown field"),
        (json!({"custom_labels": ["provider"]}), "custom_labels:"),
        (json!({"max_label_values": 0}), "max_label_values:"),
        (json!({"metrics_enabled": "yes"}), "metrics_enabled:"),
        (
            json!({"push_gateway": {"enabled": true}}),
            "push_gateway.enabled:",
        ),
    ] {
        let (s, v) = json_of(
            h.post(
                "/api/plugins",
                &json!({"name": "telemetry", "enabled": true, "config": config}),
            )
            .await,
        )
        .await;
        assert_eq!(s, 400, "{config}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(field), "{config}: {msg}");
    }
    assert_eq!(h.get("/metrics").await.status(), 404);
}
