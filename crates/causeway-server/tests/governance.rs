//! Governance over real HTTP: virtual-key decisions and their statuses on the OpenAI and
//! Anthropic front doors, the header forms a key may arrive in, provider-key restriction,
//! the `/api/governance/*` CRUD shapes and validation, budgets and rate limits charged with
//! the real usage (complete, streamed, abandoned, failed), concurrency, and persistence of
//! usage across a restart.
//!
//! Prices: `governance.pricing_overrides` gives the mock's models 1000 USD per 1M input
//! tokens and 2000 USD per 1M output tokens. The mock counts whitespace words: the prompt
//! "hello there" is 2 tokens and its answer "Hello from mock-provider" 3, so one call costs
//! (2 * 1000 + 3 * 2000) / 1e6 = 0.008 USD and 5 tokens. With `max_tokens: 3` the
//! pre-call estimate is ceil(len("user" + "hello there") / 4) = 4 prompt tokens and 3 output
//! tokens: (4 * 1000 + 3 * 2000) / 1e6 = 0.010 USD.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{
    Harness, assert_envelope, create_vk, eventually, json_of, provider_with_key_ids, send,
};
use futures_util::StreamExt;
use mock_provider::{MockConfig, MockServer};
use reqwest::Method;
use serde_json::{Value, json};

const OPENAI_KEY: &str = "sk-upstream-openai-1111111111";
const OPENAI_KEY_2: &str = "sk-upstream-openai-2222222222";
const ANTHROPIC_KEY: &str = "sk-ant-upstream-1111111111";
/// USD for one mock call (2 prompt + 3 completion tokens).
const COST: f64 = 0.008;
/// USD reserved before a call with `max_tokens: 3` on the OpenAI door.
const ESTIMATE: f64 = 0.010;
const TOKENS_PER_CALL: u64 = 5;
const MODEL: &str = "openai/gpt-4o-mini";

// ---- setup -----------------------------------------------------------------------------

async fn mock(cfg: MockConfig) -> MockServer {
    MockServer::start(cfg).await.unwrap()
}

fn prices() -> Value {
    json!({"pricing_overrides": [
        {"provider": "openai", "model": "gpt-4o-mini", "input": 1000.0, "output": 2000.0},
        {"provider": "openai", "model": "gpt-4o", "input": 1000.0, "output": 2000.0},
        {"provider": "anthropic", "model": "claude-3-5-haiku-latest", "input": 1000.0, "output": 2000.0}
    ]})
}

/// openai and anthropic both served by `m`, with prices.
fn config(m: &MockServer) -> Value {
    json!({
        "providers": {
            "openai": provider_with_key_ids(&m.base_url(), &[("oa-1", OPENAI_KEY, 1.0)]),
            "anthropic": provider_with_key_ids(&m.base_url(), &[("an-1", ANTHROPIC_KEY, 1.0)]),
        },
        "governance": prices(),
    })
}

async fn start(m: &MockServer) -> Harness {
    Harness::start(Some(config(m))).await
}

async fn vk(h: &Harness, body: Value) -> (String, String) {
    create_vk(h, &body, &[]).await
}

/// The two front doors every decision is checked on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Door {
    OpenAi,
    Anthropic,
}

const DOORS: [Door; 2] = [Door::OpenAi, Door::Anthropic];

impl Door {
    fn path(self) -> &'static str {
        match self {
            Door::OpenAi => "/v1/chat/completions",
            Door::Anthropic => "/anthropic/v1/messages",
        }
    }

    /// How that door's SDK sends its key.
    fn key_header(self, key: &str) -> (&'static str, String) {
        match self {
            Door::OpenAi => ("authorization", format!("Bearer {key}")),
            Door::Anthropic => ("x-api-key", key.to_owned()),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Door::OpenAi => "openai",
            Door::Anthropic => "anthropic",
        }
    }
}

fn body(model: &str) -> Value {
    json!({"model": model, "max_tokens": 3, "messages": [{"role": "user", "content": "hello there"}]})
}

struct Reply {
    status: u16,
    body: Value,
    retry_after: Option<String>,
    text: String,
}

async fn reply_of(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        body,
        retry_after,
        text,
    }
}

/// One call through `door` with `key` sent the way that door's SDK sends it.
async fn infer(h: &Harness, door: Door, model: &str, key: &str) -> Reply {
    let (name, value) = door.key_header(key);
    reply_of(
        send(
            h,
            Method::POST,
            door.path(),
            Some(&body(model)),
            &[(name, &value)],
        )
        .await,
    )
    .await
}

fn assert_ok(door: Door, r: &Reply) {
    assert_eq!(r.status, 200, "{door:?}: {}", r.text);
    match door {
        Door::OpenAi => assert_eq!(
            r.body["choices"][0]["message"]["content"], "Hello from mock-provider",
            "{}",
            r.text
        ),
        Door::Anthropic => assert_eq!(
            r.body["content"][0]["text"], "Hello from mock-provider",
            "{}",
            r.text
        ),
    }
}

/// A governance refusal: status, decision name, `extra_fields.error_type` and message, in
/// the door's error shape (Bifrost envelope on /v1, Anthropic's shape on /anthropic).
fn assert_denied(door: Door, r: &Reply, status: u16, decision: &str, class: &str, msg: &str) {
    let v = &r.body;
    assert_eq!(r.status, status, "{door:?} {decision}: {}", r.text);
    assert_eq!(v["status_code"], status, "{door:?}: {v}");
    assert_eq!(v["extra_fields"]["error_type"], class, "{door:?}: {v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(msg),
        "{door:?} {decision}: message {message:?} lacks {msg:?}"
    );
    match door {
        Door::OpenAi => {
            assert_envelope(v, status);
            assert_eq!(v["type"], decision, "{v}");
            assert_eq!(v["error"]["type"], decision, "{v}");
        }
        Door::Anthropic => {
            assert_eq!(v["type"], "error", "{v}");
            let anthropic_type = match status {
                402 => "billing_error",
                403 => "permission_error",
                429 => "rate_limit_error",
                _ => unreachable!(),
            };
            assert_eq!(v["error"]["type"], anthropic_type, "{v}");
        }
    }
}

/// One entry of `GET /api/governance/budgets` whose scope starts with `prefix`.
async fn budget(h: &Harness, prefix: &str) -> Value {
    let (s, v) = json_of(h.get("/api/governance/budgets").await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["count"].as_u64().unwrap() as usize,
        v["budgets"].as_array().unwrap().len()
    );
    v["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["scope"].as_str().unwrap().starts_with(prefix))
        .cloned()
        .unwrap_or_else(|| panic!("no budget with scope {prefix}*: {v}"))
}

async fn vk_budget(h: &Harness, vk_id: &str) -> Value {
    budget(h, &format!("budget:vk/{vk_id}:")).await
}

async fn rate_limit(h: &Harness, scope: &str) -> Value {
    let (s, v) = json_of(h.get("/api/governance/rate-limits").await).await;
    assert_eq!(s, 200, "{v}");
    v["rate_limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["scope"] == scope)
        .cloned()
        .unwrap_or_else(|| panic!("no rate limit {scope}: {v}"))
}

fn usd(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn assert_usd(got: &Value, want: f64, what: &str) {
    let g = usd(got);
    assert!((g - want).abs() < 1e-9, "{what}: got {g}, want {want}");
}

fn past() -> &'static str {
    "2020-01-01T00:00:00Z"
}

// ---- decisions -------------------------------------------------------------------------

#[tokio::test]
async fn unknown_inactive_and_expired_keys_are_403_on_both_doors() {
    let m = mock(MockConfig::default()).await;
    let h = start(&m).await;
    let (_, inactive) = vk(&h, json!({"name": "off", "is_active": false})).await;
    let (_, expired) = vk(&h, json!({"name": "old", "expires_at": past()})).await;
    let (_, live) = vk(
        &h,
        json!({"name": "live", "expires_at": "2999-01-01T00:00:00Z"}),
    )
    .await;
    let unknown = "sk-bf-ThisKeyWasNeverIssuedByTheGateway0000000000";
    for door in DOORS {
        let r = infer(&h, door, MODEL, unknown).await;
        assert_denied(
            door,
            &r,
            403,
            "virtual_key_not_found",
            "policy_access_denied",
            "Virtual key not found",
        );
        assert!(!r.text.contains(unknown), "the key is echoed: {}", r.text);
        let r = infer(&h, door, MODEL, &inactive).await;
        assert_denied(
            door,
            &r,
            403,
            "virtual_key_blocked",
            "policy_access_denied",
            "inactive",
        );
        let r = infer(&h, door, MODEL, &expired).await;
        assert_denied(
            door,
            &r,
            403,
            "virtual_key_expired",
            "policy_access_denied",
            "expired",
        );
        assert_ok(door, &infer(&h, door, MODEL, &live).await);
    }
    // Only the two successful calls reached the upstream, with the provider's key.
    let reqs = m.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert!(
        reqs.iter()
            .all(|r| r.api_key.as_deref() == Some(OPENAI_KEY))
    );
}

#[tokio::test]
async fn provider_and_model_allow_lists_on_both_doors() {
    let m = mock(MockConfig::default()).await;
    let h = start(&m).await;
    let (_, exact) = vk(
        &h,
        json!({"name": "exact", "provider_configs": [{"provider": "openai", "allowed_models": ["GPT-4o-mini"]}]}),
    )
    .await;
    let (_, star) = vk(
        &h,
        json!({"name": "star", "provider_configs": [{"provider": "openai", "allowed_models": ["*"], "blacklisted_models": ["gpt-4o"]}]}),
    )
    .await;
    let (_, regex) = vk(
        &h,
        json!({"name": "regex", "provider_configs": [{"provider": "openai", "allowed_models": ["regex:gpt-4o-m.*"]}]}),
    )
    .await;
    let (_, none) = vk(
        &h,
        json!({"name": "none", "provider_configs": [{"provider": "openai", "allowed_models": []}]}),
    )
    .await;
    for door in DOORS {
        // Provider not in provider_configs.
        for key in [&exact, &star, &regex] {
            let r = infer(&h, door, "anthropic/claude-3-5-haiku-latest", key).await;
            assert_denied(
                door,
                &r,
                403,
                "provider_blocked",
                "policy_provider_blocked",
                "Provider 'anthropic' is not allowed for this virtual key",
            );
        }
        // Exact (case-insensitive).
        assert_ok(door, &infer(&h, door, "openai/gpt-4o-mini", &exact).await);
        let r = infer(&h, door, "openai/gpt-4o", &exact).await;
        assert_denied(
            door,
            &r,
            403,
            "model_blocked",
            "policy_model_blocked",
            "Model 'gpt-4o' is not allowed for this virtual key",
        );
        // `*` with a blacklist that wins.
        assert_ok(door, &infer(&h, door, "openai/gpt-4o-mini", &star).await);
        let r = infer(&h, door, "openai/gpt-4o", &star).await;
        assert_denied(
            door,
            &r,
            403,
            "model_blocked",
            "policy_model_blocked",
            "gpt-4o",
        );
        // regex: full match.
        assert_ok(door, &infer(&h, door, "openai/gpt-4o-mini", &regex).await);
        let r = infer(&h, door, "openai/gpt-4o", &regex).await;
        assert_denied(
            door,
            &r,
            403,
            "model_blocked",
            "policy_model_blocked",
            "gpt-4o",
        );
        let r = infer(&h, door, "openai/xgpt-4o-mini", &regex).await;
        assert_denied(
            door,
            &r,
            403,
            "model_blocked",
            "policy_model_blocked",
            "xgpt-4o-mini",
        );
        // Explicit empty list: nothing.
        let r = infer(&h, door, "openai/gpt-4o-mini", &none).await;
        assert_denied(
            door,
            &r,
            403,
            "model_blocked",
            "policy_model_blocked",
            "gpt-4o-mini",
        );
    }
    assert_eq!(
        m.request_count(),
        6,
        "only allowed calls reach the upstream"
    );
}

#[tokio::test]
async fn provider_blocked_falls_back_to_an_allowed_provider_but_unknown_key_does_not() {
    let m = mock(MockConfig::default()).await;
    let h = start(&m).await;
    let (_, key) = vk(
        &h,
        json!({"name": "anthropic-only", "provider_configs": [{"provider": "anthropic"}]}),
    )
    .await;
    let mut b = body("openai/gpt-4o-mini");
    b["fallbacks"] = json!(["anthropic/claude-3-5-haiku-latest"]);
    let auth = format!("Bearer {key}");
    let r = reply_of(
        send(
            &h,
            Method::POST,
            "/v1/chat/completions",
            Some(&b),
            &[("authorization", &auth)],
        )
        .await,
    )
    .await;
    assert_ok(Door::OpenAi, &r);
    let reqs = m.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/v1/messages", "served by the fallback");
}

#[tokio::test]
async fn request_limit_is_429_with_retry_after_on_both_doors() {
    let m = mock(MockConfig::default()).await;
    let h = start(&m).await;
    for door in DOORS {
        let name = format!("limited-{}", door.label());
        let (id, key) = vk(
            &h,
            json!({"name": name, "rate_limit": {"request_max_limit": 2, "request_reset_duration": "1h"}}),
        )
        .await;
        assert_ok(door, &infer(&h, door, MODEL, &key).await);
        assert_ok(door, &infer(&h, door, MODEL, &key).await);
        let r = infer(&h, door, MODEL, &key).await;
        assert_denied(
            door,
            &r,
            429,
            "request_limited",
            "policy_rate_limited",
            &format!("request limit exceeded for virtual key '{name}' (2 of 2 requests"),
        );
        let secs: u64 = r
            .retry_after
            .as_deref()
            .unwrap_or_else(|| panic!("{door:?}: 429 without Retry-After"))
            .parse()
            .unwrap();
        assert!((1..=3600).contains(&secs), "Retry-After {secs}");
        let rl = rate_limit(&h, &format!("requests:vk/{id}")).await;
        assert_eq!(rl["current_usage"], 2, "{rl}");
        assert_eq!(rl["max_limit"], 2, "{rl}");
    }
    assert_eq!(m.request_count(), 4);
}

#[tokio::test]
async fn token_limit_counts_the_real_tokens_on_both_doors() {
    let m = mock(MockConfig::default()).await;
    let h = start(&m).await;
    for door in DOORS {
        let name = format!("tokens-{}", door.label());
        let (id, key) = vk(
            &h,
            json!({"name": name, "rate_limit": {"token_max_limit": 2 * TOKENS_PER_CALL, "token_reset_duration": "1d"}}),
        )
        .await;
        assert_ok(door, &infer(&h, door, MODEL, &key).await);
        let rl = rate_limit(&h, &format!("tokens:vk/{id}")).await;
        assert_eq!(rl["current_usage"], TOKENS_PER_CALL, "{rl}");
        assert_ok(door, &infer(&h, door, MODEL, &key).await);
        let r = infer(&h, door, MODEL, &key).await;
        assert_denied(
            door,
            &r,
            429,
            "token_limited",
            "policy_rate_limited",
            "token limit exceeded",
        );
        assert!(r.retry_after.is_some(), "429 without Retry-After");
        let rl = rate_limit(&h, &format!("tokens:vk/{id}")).await;
        assert_eq!(rl["current_usage"], 2 * TOKENS_PER_CALL, "{rl}");
    }
}

/// Budget 0.01: the first call (estimate 0.010) fits, spends 0.008; the second cannot.
#[tokio::test]
async fn budget_exhausted_at_customer_team_or_key_is_402_naming_the_level() {
    let m = mock(MockConfig::default()).await;
    let h = start(&m).await;
    let small = json!([{"max_limit": 0.01, "reset_duration": "1M"}]);
    let large = json!([{"max_limit": 100.0, "reset_duration": "1M"}]);
    for door in DOORS {
        let d = door.label();
        // Customer level: customer small, team and key large.
        let (_, c) = json_of(
            h.post(
                "/api/governance/customers",
                &json!({"name": format!("acme-{d}"), "budgets": small}),
            )
            .await,
        )
        .await;
        let cid = c["customer"]["id"].as_str().unwrap().to_owned();
        let (_, t) = json_of(
            h.post(
                "/api/governance/teams",
                &json!({"name": format!("eng-{d}"), "customer_id": cid, "budgets": large}),
            )
            .await,
        )
        .await;
        let tid = t["team"]["id"].as_str().unwrap().to_owned();
        let (_, key) = vk(
            &h,
            json!({"name": format!("k1-{d}"), "team_id": tid, "budgets": large}),
        )
        .await;
        assert_ok(door, &infer(&h, door, MODEL, &key).await);
        let r = infer(&h, door, MODEL, &key).await;
        assert_denied(
            door,
            &r,
            402,
            "budget_exceeded",
            "policy_budget_exceeded",
            &format!("budget exceeded for customer 'acme-{d}'"),
        );
        // The cost was charged at every level.
        assert_usd(
            &budget(&h, &format!("budget:customer/{cid}:")).await["current_usage"],
            COST,
            "customer",
        );
        assert_usd(
            &budget(&h, &format!("budget:team/{tid}:")).await["current_usage"],
            COST,
            "team",
        );

        // Team level, and the team is checked before the key: both small.
        let (_, t) = json_of(
            h.post(
                "/api/governance/teams",
                &json!({"name": format!("ops-{d}"), "budgets": small}),
            )
            .await,
        )
        .await;
        let tid = t["team"]["id"].as_str().unwrap().to_owned();
        let (_, key) = vk(
            &h,
            json!({"name": format!("k2-{d}"), "team_id": tid, "budgets": small}),
        )
        .await;
        assert_ok(door, &infer(&h, door, MODEL, &key).await);
        let r = infer(&h, door, MODEL, &key).await;
        assert_denied(
            door,
            &r,
            402,
            "budget_exceeded",
            "policy_budget_exceeded",
            &format!("budget exceeded for team 'ops-{d}'"),
        );

        // Key level, directly under a customer with room.
        let (_, c) = json_of(
            h.post(
                "/api/governance/customers",
                &json!({"name": format!("big-{d}"), "budgets": large}),
            )
            .await,
        )
        .await;
        let cid = c["customer"]["id"].as_str().unwrap().to_owned();
        let (_, key) = vk(
            &h,
            json!({"name": format!("k3-{d}"), "customer_id": cid, "budgets": small}),
        )
        .await;
        assert_ok(door, &infer(&h, door, MODEL, &key).await);
        let r = infer(&h, door, MODEL, &key).await;
        assert_denied(
            door,
            &r,
            402,
            "budget_exceeded",
            "policy_budget_exceeded",
            &format!("budget exceeded for virtual key 'k3-{d}'"),
        );

        // Rate limits are checked before budgets.
        let (_, key) = vk(
            &h,
            json!({"name": format!("k4-{d}"), "budgets": small,
                   "rate_limit": {"request_max_limit": 1, "request_reset_duration": "1d"}}),
        )
        .await;
        assert_ok(door, &infer(&h, door, MODEL, &key).await);
        let r = infer(&h, door, MODEL, &key).await;
        assert_eq!(r.status, 429, "{}", r.text);
    }
}

#[tokio::test]
async fn provider_config_budget_and_limit_apply_to_that_provider_only() {
    let m = mock(MockConfig::default()).await;
    let h = start(&m).await;
    let (id, key) = vk(
        &h,
        json!({"name": "pc", "provider_configs": [
            {"provider": "openai", "rate_limit": {"request_max_limit": 1, "request_reset_duration": "1d"}},
            {"provider": "anthropic", "budgets": [{"max_limit": 0.01, "reset_duration": "1M"}]}
        ]}),
    )
    .await;
    assert_ok(Door::OpenAi, &infer(&h, Door::OpenAi, MODEL, &key).await);
    let r = infer(&h, Door::OpenAi, MODEL, &key).await;
    assert_denied(
        Door::OpenAi,
        &r,
        429,
        "request_limited",
        "policy_rate_limited",
        "provider 'openai' of virtual key 'pc'",
    );
    let anth = "anthropic/claude-3-5-haiku-latest";
    assert_ok(Door::OpenAi, &infer(&h, Door::OpenAi, anth, &key).await);
    let r = infer(&h, Door::OpenAi, anth, &key).await;
    assert_denied(
        Door::OpenAi,
        &r,
        402,
        "budget_exceeded",
        "policy_budget_exceeded",
        "provider 'anthropic' of virtual key 'pc'",
    );
    let b = budget(&h, &format!("budget:vk/{id}/provider/anthropic:")).await;
    assert_usd(&b["current_usage"], COST, "provider-config budget");
}

// ---- how the key arrives -------------------------------------------------------------

#[tokio::test]
async fn virtual_key_is_read_from_every_header_form_and_never_forwarded() {
    let m = mock(MockConfig::default()).await;
    let h = start(&m).await;
    let (id, key) = vk(
        &h,
        json!({"name": "hdr", "provider_configs": [{"provider": "openai", "allowed_models": ["gpt-4o-mini"]}]}),
    )
    .await;
    let bearer = format!("Bearer {key}");
    let forms: [(&str, &str); 5] = [
        ("authorization", &bearer),
        ("x-bf-vk", &key),
        ("x-api-key", &key),
        ("x-goog-api-key", &key),
        ("api-key", &key),
    ];
    let routes = [
        "/v1/chat/completions",
        "/openai/v1/chat/completions",
        "/anthropic/v1/messages",
    ];
    let mut allowed = 0;
    for (name, value) in forms {
        for route in routes {
            // The key's policy applies: its model is served, another is refused.
            let r = reply_of(
                send(
                    &h,
                    Method::POST,
                    route,
                    Some(&body("openai/gpt-4o-mini")),
                    &[(name, value)],
                )
                .await,
            )
            .await;
            assert_eq!(r.status, 200, "{name} on {route}: {}", r.text);
            allowed += 1;
            let r = reply_of(
                send(
                    &h,
                    Method::POST,
                    route,
                    Some(&body("openai/gpt-4o")),
                    &[(name, value)],
                )
                .await,
            )
            .await;
            assert_eq!(r.status, 403, "{name} on {route}: {}", r.text);
            assert_eq!(r.body["extra_fields"]["error_type"], "policy_model_blocked");
        }
    }
    // Each allowed call was counted against this key.
    let (_, v) = json_of(h.get(&format!("/api/governance/virtual-keys/{id}")).await).await;
    assert_eq!(v["virtual_key"]["id"], id.as_str());
    // The upstream only ever saw the provider key, never the virtual key.
    let reqs = m.requests();
    assert_eq!(reqs.len(), allowed);
    for r in &reqs {
        assert_eq!(r.api_key.as_deref(), Some(OPENAI_KEY));
        for (k, v) in &r.headers {
            assert!(!v.contains(&key), "virtual key forwarded upstream in {k}");
        }
    }
    // A non-`sk-bf-` x-api-key is the caller's provider key, not a virtual key: no policy.
    let r = reply_of(
        send(
            &h,
            Method::POST,
            "/v1/chat/completions",
            Some(&body("openai/gpt-4o")),
            &[("x-api-key", "sk-ant-not-a-virtual-key")],
        )
        .await,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn governance_applies_to_completions_and_embeddings_routes() {
    let m = mock(MockConfig::default()).await;
    let h = start(&m).await;
    let (_, key) = vk(
        &h,
        json!({"name": "chat-only", "provider_configs": [{"provider": "openai", "allowed_models": ["gpt-4o-mini"]}]}),
    )
    .await;
    let auth = format!("Bearer {key}");
    for (path, b) in [
        (
            "/v1/completions",
            json!({"model": "openai/gpt-3.5-turbo-instruct", "prompt": "hi"}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "openai/text-embedding-3-small", "input": "hi"}),
        ),
        (
            "/openai/v1/embeddings",
            json!({"model": "openai/text-embedding-3-small", "input": "hi"}),
        ),
    ] {
        let (s, v) = json_of(
            send(
                &h,
                Method::POST,
                path,
                Some(&b),
                &[("authorization", &auth)],
            )
            .await,
        )
        .await;
        assert_eq!(s, 403, "{path}: {v}");
        assert_eq!(v["type"], "model_blocked", "{path}: {v}");
    }
    assert_eq!(m.request_count(), 0);
}

#[tokio::test]
async fn key_ids_restrict_which_provider_key_is_used() {
    let m = mock(MockConfig::default()).await;
    // key-one would take ~99% of unrestricted traffic.
    let h = Harness::start(Some(json!({
        "providers": {"openai": provider_with_key_ids(&m.base_url(), &[
            ("key-one", OPENAI_KEY, 100.0), ("key-two", OPENAI_KEY_2, 1.0)
        ])},
        "governance": prices(),
    })))
    .await;
    let (s, v) = json_of(h.get("/api/providers/openai/keys").await).await;
    assert_eq!(s, 200, "{v}");
    let text = v.to_string();
    assert!(text.contains("key-one") && text.contains("key-two"), "{v}");
    let (_, pinned) = vk(
        &h,
        json!({"name": "pinned", "provider_configs": [{"provider": "openai", "key_ids": ["key-two"]}]}),
    )
    .await;
    let (_, any) = vk(
        &h,
        json!({"name": "any", "provider_configs": [{"provider": "openai", "key_ids": ["*"]}]}),
    )
    .await;
    for door in DOORS {
        for _ in 0..10 {
            m.clear_requests();
            assert_ok(door, &infer(&h, door, MODEL, &pinned).await);
            assert_eq!(
                m.requests()[0].api_key.as_deref(),
                Some(OPENAI_KEY_2),
                "{door:?}: a key outside key_ids was used"
            );
        }
    }
    m.clear_requests();
    for _ in 0..10 {
        assert_ok(Door::OpenAi, &infer(&h, Door::OpenAi, MODEL, &any).await);
    }
    assert!(
        m.requests()
            .iter()
            .any(|r| r.api_key.as_deref() == Some(OPENAI_KEY)),
        "`*` allows every key"
    );
}

// ---- CRUD ------------------------------------------------------------------------------

/// Every file of the app dir (config store, WAL, …) as bytes.
fn app_dir_bytes(h: &Harness) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![h.dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p.display().to_string(), b));
            }
        }
    }
    out
}

fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn virtual_key_crud_shapes_and_value_shown_only_at_creation() {
    let m = mock(MockConfig::default()).await;
    let h = start(&m).await;
    let create = json!({
        "name": "ci",
        "description": "for CI",
        "provider_configs": [{"provider": "openai", "allowed_models": ["gpt-4o-mini"], "weight": 1.0, "key_ids": ["*"]}],
        "budgets": [{"max_limit": 5.0, "reset_duration": "1M"}],
        "rate_limit": {"request_max_limit": 100, "request_reset_duration": "1h", "token_max_limit": 10000, "token_reset_duration": "1d"},
        "permissions": ["plugins:read"],
        "expires_at": "2999-12-31T23:59:59Z",
        "mcp_configs": []
    });
    let resp = h.post("/api/governance/virtual-keys", &create).await;
    let (s, v) = json_of(resp).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message"], "Virtual key created successfully");
    let k = &v["virtual_key"];
    let id = k["id"].as_str().unwrap().to_owned();
    let value = k["value"].as_str().unwrap().to_owned();
    assert!(value.starts_with("sk-bf-") && value.len() > 30, "{value}");
    assert_eq!(k["name"], "ci");
    assert_eq!(k["description"], "for CI");
    assert_eq!(k["is_active"], true);
    assert_eq!(k["provider_configs"][0]["provider"], "openai");
    assert_eq!(
        k["provider_configs"][0]["allowed_models"],
        json!(["gpt-4o-mini"])
    );
    assert_eq!(k["budgets"][0]["max_limit"], 5.0);
    assert!(k["budgets"][0]["id"].is_string(), "{k}");
    assert_eq!(k["rate_limit"]["request_max_limit"], 100);
    assert_eq!(k["permissions"], json!(["plugins:read"]));
    assert_eq!(k["expires_at"], "2999-12-31T23:59:59Z");
    assert!(k.get("value_hash").is_none(), "hash exposed: {k}");
    // The key works.
    assert_ok(Door::OpenAi, &infer(&h, Door::OpenAi, MODEL, &value).await);

    let secret_part = &value["sk-bf-".len()..];
    let mut seen = Vec::new();
    let (s, one) = json_of(h.get(&format!("/api/governance/virtual-keys/{id}")).await).await;
    assert_eq!(s, 200, "{one}");
    let shown = one["virtual_key"]["value"].as_str().unwrap();
    assert_ne!(shown, value);
    assert!(
        shown.starts_with("sk-bf-"),
        "masked value keeps the prefix: {shown}"
    );
    assert!(shown.len() < value.len(), "{shown}");
    assert_eq!(one["virtual_key"]["name"], "ci");
    assert!(one["virtual_key"].get("value_hash").is_none());
    seen.push(one.to_string());
    let (s, list) = json_of(h.get("/api/governance/virtual-keys").await).await;
    assert_eq!(s, 200);
    assert_eq!(list["count"], 1);
    assert_eq!(list["total_count"], 1);
    assert_eq!(list["limit"], 25);
    assert_eq!(list["offset"], 0);
    assert_eq!(list["virtual_keys"][0]["id"], id.as_str());
    assert_eq!(list["virtual_keys"][0]["value"], shown);
    seen.push(list.to_string());
    let (s, upd) = json_of(
        h.put(
            &format!("/api/governance/virtual-keys/{id}"),
            &json!({"description": "x"}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{upd}");
    seen.push(upd.to_string());
    for p in [
        "/api/governance/budgets",
        "/api/governance/rate-limits",
        "/api/governance/virtual-keys?search=ci",
    ] {
        let (s, v) = json_of(h.get(p).await).await;
        assert_eq!(s, 200, "{p}: {v}");
        seen.push(v.to_string());
    }
    for text in &seen {
        assert!(
            !text.contains(secret_part),
            "full virtual key value shown again: {text}"
        );
    }
    // Stored hashed: the value is nowhere in the app dir (config store, WAL).
    for (path, bytes) in app_dir_bytes(&h) {
        assert!(
            !contains_bytes(&bytes, secret_part.as_bytes()),
            "virtual key value stored in clear in {path}"
        );
    }
    // Unknown id.
    let (s, v) = json_of(h.get("/api/governance/virtual-keys/nope").await).await;
    assert_eq!(s, 404, "{v}");
    assert_envelope(&v, 404);
    assert_eq!(v["error"]["message"], "Virtual key not found");
    // Paging and filters.
    vk(&h, json!({"name": "second"})).await;
    let (_, page) = json_of(h.get("/api/governance/virtual-keys?limit=1&offset=1").await).await;
    assert_eq!(page["count"], 1);
    assert_eq!(page["total_count"], 2);
    assert_eq!(page["virtual_keys"][0]["name"], "second");
    let (_, found) = json_of(h.get("/api/governance/virtual-keys?search=SEC").await).await;
    assert_eq!(found["total_count"], 1);
}

async fn expect_400(h: &Harness, method: Method, path: &str, body: &Value, msg: &str) {
    let (s, v) = json_of(send(h, method, path, Some(body), &[]).await).await;
    assert_eq!(s, 400, "{body} -> {v}");
    assert_envelope(&v, 400);
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains(msg), "{body}: message {m:?} lacks {msg:?}");
}

#[tokio::test]
async fn virtual_key_validation_errors_are_400_and_persist_nothing() {
    let m = mock(MockConfig::default()).await;
    let h = start(&m).await;
    let (_, t) = json_of(h.post("/api/governance/teams", &json!({"name": "t"})).await).await;
    let tid = t["team"]["id"].as_str().unwrap().to_owned();
    let (_, c) = json_of(
        h.post("/api/governance/customers", &json!({"name": "c"}))
            .await,
    )
    .await;
    let cid = c["customer"]["id"].as_str().unwrap().to_owned();
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "Virtual key name is required"),
        (json!({"name": "   "}), "Virtual key name is required"),
        (
            json!({"name": "x", "team_id": tid, "customer_id": cid}),
            "VirtualKey cannot be attached to both Team and Customer",
        ),
        (
            json!({"name": "x", "budgets": [{"max_limit": 1.0, "reset_duration": "1x"}]}),
            "Invalid reset duration format: 1x",
        ),
        (
            json!({"name": "x", "budgets": [{"max_limit": 1.0, "reset_duration": "1d"}, {"max_limit": 2.0, "reset_duration": "1d"}]}),
            "Duplicate reset_duration in budgets: 1d",
        ),
        (
            json!({"name": "x", "budgets": [{"max_limit": -1.0, "reset_duration": "1d"}]}),
            "Budget max_limit cannot be negative",
        ),
        (
            json!({"name": "x", "provider_configs": [{"provider": "openai", "allowed_models": ["regex:(unclosed"]}]}),
            "invalid regex",
        ),
        (
            json!({"name": "x", "provider_configs": [{"provider": "openai", "allowed_models": ["*", "gpt-4o"]}]}),
            "cannot be combined",
        ),
        (
            json!({"name": "x", "provider_configs": [{"provider": "openai"}, {"provider": "openai"}]}),
            "Duplicate provider in provider_configs: openai",
        ),
        (
            json!({"name": "x", "permissions": ["plugins:fly"]}),
            "Unknown permission: plugins:fly",
        ),
        (
            json!({"name": "x", "rate_limit": {"request_max_limit": 5}}),
            "request_reset_duration is required when request_max_limit is set",
        ),
        (
            json!({"name": "x", "rate_limit": {"request_max_limit": 5, "request_reset_duration": "soon"}}),
            "Invalid reset duration format: soon",
        ),
        (
            json!({"name": "x", "expires_at": "tomorrow"}),
            "Invalid expires_at: tomorrow",
        ),
        (
            json!({"name": "x", "team_id": "nope"}),
            "Team not found: nope",
        ),
        (
            json!({"name": "x", "customer_id": "nope"}),
            "Customer not found: nope",
        ),
    ];
    for (b, msg) in &cases {
        expect_400(&h, Method::POST, "/api/governance/virtual-keys", b, msg).await;
    }
    // Malformed JSON.
    let resp = h
        .http
        .post(h.url("/api/governance/virtual-keys"))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    let (s, v) = json_of(resp).await;
    assert_eq!(s, 400, "{v}");
    assert_envelope(&v, 400);
    let (_, list) = json_of(h.get("/api/governance/virtual-keys").await).await;
    assert_eq!(
        list["total_count"], 0,
        "a refused create was stored: {list}"
    );

    // The same rules on update; a refused update changes nothing.
    let (id, _) = vk(&h, json!({"name": "ok", "team_id": tid})).await;
    let path = format!("/api/governance/virtual-keys/{id}");
    expect_400(
        &h,
        Method::PUT,
        &path,
        &json!({"customer_id": cid}),
        "VirtualKey cannot be attached to both Team and Customer",
    )
    .await;
    expect_400(
        &h,
        Method::PUT,
        &path,
        &json!({"permissions": ["nope"]}),
        "Unknown permission: nope",
    )
    .await;
    expect_400(
        &h,
        Method::PUT,
        &path,
        &json!({"name": ""}),
        "Virtual key name is required",
    )
    .await;
    expect_400(
        &h,
        Method::PUT,
        &path,
        &json!({"team_id": "gone"}),
        "Team not found: gone",
    )
    .await;
    let (_, v) = json_of(h.get(&path).await).await;
    assert_eq!(v["virtual_key"]["name"], "ok");
    assert_eq!(v["virtual_key"]["team_id"], tid.as_str());
    assert_eq!(v["virtual_key"]["permissions"], json!([]));
    let (s, _) = json_of(
        h.put("/api/governance/virtual-keys/nope", &json!({"name": "y"}))
            .await,
    )
    .await;
    assert_eq!(s, 404);

    // Teams and customers.
    expect_400(
        &h,
        Method::POST,
        "/api/governance/teams",
        &json!({}),
        "Team name is required",
    )
    .await;
    expect_400(
        &h,
        Method::POST,
        "/api/governance/teams",
        &json!({"name": "t2", "customer_id": "nope"}),
        "Customer not found: nope",
    )
    .await;
    expect_400(
        &h,
        Method::POST,
        "/api/governance/teams",
        &json!({"name": "t2", "budgets": [{"max_limit": 1.0, "reset_duration": "1w"}, {"max_limit": 1.0, "reset_duration": "1w"}]}),
        "Duplicate reset_duration in budgets: 1w",
    )
    .await;
    expect_400(
        &h,
        Method::POST,
        "/api/governance/customers",
        &json!({"name": ""}),
        "Customer name is required",
    )
    .await;
    expect_400(
        &h,
        Method::POST,
        "/api/governance/customers",
        &json!({"name": "c2", "budgets": [{"max_limit": 1.0, "reset_duration": "7x"}]}),
        "Invalid reset duration format: 7x",
    )
    .await;
}

#[tokio::test]
async fn virtual_key_update_is_partial_and_can_reset_budget_usage() {
    let m = mock(MockConfig::default()).await;
    let h = start(&m).await;
    let (id, key) = vk(
        &h,
        json!({"name": "upd", "description": "d1",
               "provider_configs": [{"provider": "openai", "allowed_models": ["gpt-4o-mini"]}],
               "budgets": [{"max_limit": 1.0, "reset_duration": "1M"}],
               "rate_limit": {"request_max_limit": 100, "request_reset_duration": "1d"}}),
    )
    .await;
    let path = format!("/api/governance/virtual-keys/{id}");
    for _ in 0..2 {
        assert_ok(Door::OpenAi, &infer(&h, Door::OpenAi, MODEL, &key).await);
    }
    let before = vk_budget(&h, &id).await;
    assert_usd(&before["current_usage"], 2.0 * COST, "after 2 calls");

    // Partial: only the description changes; budgets keep their id and usage.
    let (s, v) = json_of(h.put(&path, &json!({"description": "d2"})).await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message"], "Virtual key updated successfully");
    let k = &v["virtual_key"];
    assert_eq!(k["description"], "d2");
    assert_eq!(k["name"], "upd");
    assert_eq!(
        k["provider_configs"][0]["allowed_models"],
        json!(["gpt-4o-mini"])
    );
    assert_eq!(k["rate_limit"]["request_max_limit"], 100);
    assert_eq!(k["budgets"][0]["id"], before["budget_id"]);
    assert!(!v.to_string().contains(&key[6..]), "value shown on update");
    let after = vk_budget(&h, &id).await;
    assert_usd(
        &after["current_usage"],
        2.0 * COST,
        "usage kept by a partial update",
    );
    let r = infer(&h, Door::OpenAi, "openai/gpt-4o", &key).await;
    assert_eq!(r.status, 403, "model policy kept: {}", r.text);

    // reset_budget_usage zeroes the spend.
    let (s, v) = json_of(h.put(&path, &json!({"reset_budget_usage": true})).await).await;
    assert_eq!(s, 200, "{v}");
    assert_usd(
        &vk_budget(&h, &id).await["current_usage"],
        0.0,
        "after reset",
    );

    // is_active, provider configs and expiry take effect at once; the value stays the same.
    let (s, _) = json_of(h.put(&path, &json!({"is_active": false})).await).await;
    assert_eq!(s, 200);
    let r = infer(&h, Door::OpenAi, MODEL, &key).await;
    assert_denied(
        Door::OpenAi,
        &r,
        403,
        "virtual_key_blocked",
        "policy_access_denied",
        "inactive",
    );
    let (s, _) = json_of(h.put(&path, &json!({"is_active": true})).await).await;
    assert_eq!(s, 200);
    assert_ok(Door::OpenAi, &infer(&h, Door::OpenAi, MODEL, &key).await);
    let (s, _) = json_of(
        h.put(
            &path,
            &json!({"provider_configs": [{"provider": "openai", "allowed_models": ["gpt-4o"]}]}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(infer(&h, Door::OpenAi, MODEL, &key).await.status, 403);
    assert_ok(
        Door::OpenAi,
        &infer(&h, Door::OpenAi, "openai/gpt-4o", &key).await,
    );
    let (s, _) = json_of(h.put(&path, &json!({"expires_at": past()})).await).await;
    assert_eq!(s, 200);
    let r = infer(&h, Door::OpenAi, "openai/gpt-4o", &key).await;
    assert_denied(
        Door::OpenAi,
        &r,
        403,
        "virtual_key_expired",
        "policy_access_denied",
        "expired",
    );
    let (s, v) = json_of(h.put(&path, &json!({"expires_at": ""})).await).await;
    assert_eq!(s, 200, "{v}");
    assert_ok(
        Door::OpenAi,
        &infer(&h, Door::OpenAi, "openai/gpt-4o", &key).await,
    );
}

#[tokio::test]
async fn virtual_key_delete() {
    let m = mock(MockConfig::default()).await;
    let h = start(&m).await;
    let (id, key) = vk(&h, json!({"name": "gone"})).await;
    assert_ok(Door::OpenAi, &infer(&h, Door::OpenAi, MODEL, &key).await);
    let path = format!("/api/governance/virtual-keys/{id}");
    let (s, v) = json_of(h.delete(&path).await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message"], "Virtual key deleted successfully");
    let (s, _) = json_of(h.get(&path).await).await;
    assert_eq!(s, 404);
    let r = infer(&h, Door::OpenAi, MODEL, &key).await;
    assert_denied(
        Door::OpenAi,
        &r,
        403,
        "virtual_key_not_found",
        "policy_access_denied",
        "Virtual key not found",
    );
    let (s, v) = json_of(h.delete(&path).await).await;
    assert_eq!(s, 404, "{v}");
    assert_envelope(&v, 404);
}

#[tokio::test]
async fn teams_and_customers_crud_with_delete_refused_while_referenced() {
    let m = mock(MockConfig::default()).await;
    let h = start(&m).await;
    let (s, v) = json_of(
        h.post(
            "/api/governance/customers",
            &json!({"name": "acme", "budgets": [{"max_limit": 50.0, "reset_duration": "1M"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message"], "Customer created successfully");
    let cid = v["customer"]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["customer"]["name"], "acme");
    assert_eq!(v["customer"]["budgets"][0]["max_limit"], 50.0);

    let (s, v) = json_of(
        h.post(
            "/api/governance/teams",
            &json!({"name": "eng", "customer_id": cid, "budget": {"max_limit": 10.0, "reset_duration": "1w"}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message"], "Team created successfully");
    let tid = v["team"]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["team"]["customer_id"], cid.as_str());
    assert_eq!(
        v["team"]["budgets"][0]["reset_duration"], "1w",
        "legacy `budget` becomes budgets[0]"
    );

    let (s, v) = json_of(h.get("/api/governance/teams").await).await;
    assert_eq!(s, 200);
    assert_eq!(v["count"], 1);
    assert_eq!(v["teams"][0]["id"], tid.as_str());
    let (s, v) = json_of(
        h.get(&format!("/api/governance/teams?customer_id={cid}"))
            .await,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["count"], 1);
    let (s, v) = json_of(h.get(&format!("/api/governance/teams/{tid}")).await).await;
    assert_eq!(s, 200);
    assert_eq!(v["team"]["name"], "eng");
    let (s, v) = json_of(h.get("/api/governance/customers").await).await;
    assert_eq!(s, 200);
    assert_eq!(v["customers"][0]["id"], cid.as_str());
    let (s, v) = json_of(h.get(&format!("/api/governance/customers/{cid}")).await).await;
    assert_eq!(s, 200);
    assert_eq!(v["customer"]["name"], "acme");
    for p in [
        "/api/governance/teams/nope",
        "/api/governance/customers/nope",
    ] {
        let (s, v) = json_of(h.get(p).await).await;
        assert_eq!(s, 404, "{p}: {v}");
    }

    // Partial update keeps the rest.
    let (s, v) = json_of(
        h.put(
            &format!("/api/governance/teams/{tid}"),
            &json!({"name": "platform"}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message"], "Team updated successfully");
    assert_eq!(v["team"]["name"], "platform");
    assert_eq!(v["team"]["customer_id"], cid.as_str());
    assert_eq!(v["team"]["budgets"][0]["max_limit"], 10.0);
    let (s, v) = json_of(
        h.put(
            &format!("/api/governance/customers/{cid}"),
            &json!({"name": "acme inc"}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message"], "Customer updated successfully");
    assert_eq!(v["customer"]["name"], "acme inc");
    assert_eq!(v["customer"]["budgets"][0]["max_limit"], 50.0);

    // Referenced: a key uses the team, the team uses the customer.
    let (vid, _) = vk(&h, json!({"name": "member", "team_id": tid})).await;
    let (s, v) = json_of(h.delete(&format!("/api/governance/teams/{tid}")).await).await;
    assert_eq!(s, 409, "{v}");
    assert_envelope(&v, 409);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("member"),
        "{v}"
    );
    let (s, v) = json_of(h.delete(&format!("/api/governance/customers/{cid}")).await).await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("platform"),
        "{v}"
    );
    // A key directly under the customer also blocks it.
    let (vid2, _) = vk(&h, json!({"name": "direct", "customer_id": cid})).await;

    // Detach and delete.
    let (s, v) = json_of(
        h.put(
            &format!("/api/governance/virtual-keys/{vid}"),
            &json!({"team_id": ""}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["virtual_key"]["team_id"].is_null(), "{v}");
    let (s, v) = json_of(h.delete(&format!("/api/governance/teams/{tid}")).await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message"], "Team deleted successfully");
    let (s, _) = json_of(h.get(&format!("/api/governance/teams/{tid}")).await).await;
    assert_eq!(s, 404);
    let (s, v) = json_of(h.delete(&format!("/api/governance/customers/{cid}")).await).await;
    assert_eq!(s, 409, "still used by key 'direct': {v}");
    let (s, _) = json_of(
        h.delete(&format!("/api/governance/virtual-keys/{vid2}"))
            .await,
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = json_of(h.delete(&format!("/api/governance/customers/{cid}")).await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message"], "Customer deleted successfully");
    let (s, _) = json_of(h.delete(&format!("/api/governance/customers/{cid}")).await).await;
    assert_eq!(s, 404);
}

// ---- usage accounting ------------------------------------------------------------------

#[tokio::test]
async fn budgets_and_rate_limits_reflect_known_traffic() {
    let m = mock(MockConfig::default()).await;
    let h = start(&m).await;
    let (_, c) = json_of(
        h.post(
            "/api/governance/customers",
            &json!({"name": "acme", "budgets": [{"max_limit": 10.0, "reset_duration": "1M"}]}),
        )
        .await,
    )
    .await;
    let cid = c["customer"]["id"].as_str().unwrap().to_owned();
    let (_, t) = json_of(
        h.post(
            "/api/governance/teams",
            &json!({"name": "eng", "customer_id": cid, "budgets": [{"max_limit": 10.0, "reset_duration": "1M"}]}),
        )
        .await,
    )
    .await;
    let tid = t["team"]["id"].as_str().unwrap().to_owned();
    let (id, key) = vk(
        &h,
        json!({"name": "meter", "team_id": tid,
               "budgets": [{"max_limit": 10.0, "reset_duration": "1M"}, {"max_limit": 5.0, "reset_duration": "1d"}],
               "rate_limit": {"request_max_limit": 100, "request_reset_duration": "1h", "token_max_limit": 1000, "token_reset_duration": "1d"}}),
    )
    .await;
    const N: u64 = 3;
    for _ in 0..N {
        assert_ok(Door::OpenAi, &infer(&h, Door::OpenAi, MODEL, &key).await);
    }
    for _ in 0..N {
        assert_ok(
            Door::Anthropic,
            &infer(&h, Door::Anthropic, MODEL, &key).await,
        );
    }
    let want = (2 * N) as f64 * COST;
    let (_, all) = json_of(h.get("/api/governance/budgets").await).await;
    let vk_budgets: Vec<&Value> = all["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| {
            b["scope"]
                .as_str()
                .unwrap()
                .starts_with(&format!("budget:vk/{id}:"))
        })
        .collect();
    assert_eq!(vk_budgets.len(), 2, "{all}");
    for b in &vk_budgets {
        assert_usd(&b["current_usage"], want, "vk budget");
        assert_usd(&b["reserved"], 0.0, "vk reserved");
        assert_eq!(b["owner"], "virtual key 'meter'");
        assert!(
            b["resets_at"].is_string() && b["window_start"].is_string(),
            "{b}"
        );
    }
    let tb = budget(&h, &format!("budget:team/{tid}:")).await;
    assert_usd(&tb["current_usage"], want, "team");
    assert_eq!(tb["owner"], "team 'eng'");
    let cb = budget(&h, &format!("budget:customer/{cid}:")).await;
    assert_usd(&cb["current_usage"], want, "customer");
    let rl = rate_limit(&h, &format!("requests:vk/{id}")).await;
    assert_eq!(rl["current_usage"], 2 * N);
    assert_eq!(rl["kind"], "requests");
    assert_eq!(rl["reset_duration"], "1h");
    let tl = rate_limit(&h, &format!("tokens:vk/{id}")).await;
    assert_eq!(tl["current_usage"], 2 * N * TOKENS_PER_CALL);
    // The key's own view carries the same usage.
    let (_, v) = json_of(h.get(&format!("/api/governance/virtual-keys/{id}")).await).await;
    let u = &v["virtual_key"]["usage"];
    assert_usd(&u["budgets"][0]["current_usage"], want, "vk view");
    // An unpriced model costs nothing but still counts requests.
    let (fid, free) = vk(
        &h,
        json!({"name": "free", "budgets": [{"max_limit": 1.0, "reset_duration": "1M"}]}),
    )
    .await;
    assert_ok(
        Door::OpenAi,
        &infer(&h, Door::OpenAi, "openai/some-unpriced-model", &free).await,
    );
    assert_usd(&vk_budget(&h, &fid).await["current_usage"], 0.0, "unpriced");
}

#[tokio::test]
async fn completed_stream_is_charged_its_real_usage() {
    // 5 chunks: a chunk-count fallback would charge 0.004 + 5 * 0.002 = 0.014, not 0.008.
    let m = mock(MockConfig {
        stream_chunks: 5,
        ..MockConfig::default()
    })
    .await;
    let h = start(&m).await;
    let (id, key) = vk(
        &h,
        json!({"name": "s", "budgets": [{"max_limit": 1.0, "reset_duration": "1M"}],
               "rate_limit": {"token_max_limit": 1000, "token_reset_duration": "1d"}}),
    )
    .await;
    for door in DOORS {
        let mut b = body(MODEL);
        b["stream"] = json!(true);
        let (name, value) = door.key_header(&key);
        let resp = send(&h, Method::POST, door.path(), Some(&b), &[(name, &value)]).await;
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        if door == Door::OpenAi {
            assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
            assert!(!text.contains("\"usage\":{"), "usage shown unasked: {text}");
        } else {
            assert!(text.contains("message_stop"), "{text}");
        }
    }
    let b = eventually(Duration::from_secs(5), || async {
        let b = vk_budget(&h, &id).await;
        (usd(&b["reserved"]) == 0.0).then_some(b)
    })
    .await
    .expect("reservations released after the streams ended");
    assert_usd(&b["current_usage"], 2.0 * COST, "two streams");
    let tl = rate_limit(&h, &format!("tokens:vk/{id}")).await;
    assert_eq!(tl["current_usage"], 2 * TOKENS_PER_CALL);
}

#[tokio::test]
async fn failed_upstream_call_charges_nothing() {
    let m = mock(MockConfig {
        failure_rate: 1.0,
        failure_status: 500,
        ..MockConfig::default()
    })
    .await;
    let h = start(&m).await;
    let (id, key) = vk(
        &h,
        json!({"name": "f", "budgets": [{"max_limit": 1.0, "reset_duration": "1M"}],
               "rate_limit": {"token_max_limit": 1000, "token_reset_duration": "1d"}}),
    )
    .await;
    for door in DOORS {
        let r = infer(&h, door, MODEL, &key).await;
        assert!(r.status >= 500, "{door:?}: {}", r.text);
        let mut b = body(MODEL);
        b["stream"] = json!(true);
        let (name, value) = door.key_header(&key);
        let resp = send(&h, Method::POST, door.path(), Some(&b), &[(name, &value)]).await;
        assert!(resp.status().as_u16() >= 500, "stream: {}", resp.status());
        let _ = resp.text().await;
    }
    assert!(m.request_count() >= 4);
    let b = vk_budget(&h, &id).await;
    assert_usd(&b["current_usage"], 0.0, "spend after failures");
    assert_usd(&b["reserved"], 0.0, "reserved after failures");
    let tl = rate_limit(&h, &format!("tokens:vk/{id}")).await;
    assert_eq!(tl["current_usage"], 0);
}

#[tokio::test]
async fn abandoned_stream_is_settled_with_partial_usage() {
    // One chunk, then the upstream would wait a minute: the client leaves first.
    let m = mock(MockConfig {
        stream_chunks: 3,
        stream_interval: Duration::from_secs(60),
        ..MockConfig::default()
    })
    .await;
    let h = start(&m).await;
    let (id, key) = vk(
        &h,
        json!({"name": "leaver", "budgets": [{"max_limit": 1.0, "reset_duration": "1M"}]}),
    )
    .await;
    for (i, door) in DOORS.into_iter().enumerate() {
        let mut b = body(MODEL);
        b["stream"] = json!(true);
        let (name, value) = door.key_header(&key);
        let resp = send(&h, Method::POST, door.path(), Some(&b), &[(name, &value)]).await;
        assert_eq!(resp.status(), 200);
        let mut stream = resp.bytes_stream();
        let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("first chunk")
            .unwrap()
            .unwrap();
        assert!(!first.is_empty());
        // While the stream is open its estimate is held.
        let held = vk_budget(&h, &id).await;
        assert!(
            usd(&held["reserved"]) > 0.0,
            "{door:?}: nothing reserved mid-stream: {held}"
        );
        drop(stream);
        assert!(
            m.wait_for_cancelled_streams(i + 1, Duration::from_secs(10))
                .await,
            "upstream stream cancelled"
        );
        let settled = eventually(Duration::from_secs(5), || async {
            let b = vk_budget(&h, &id).await;
            (usd(&b["reserved"]) == 0.0).then_some(b)
        })
        .await
        .unwrap_or_else(|| panic!("{door:?}: reservation never released after the client left"));
        let spent = usd(&settled["current_usage"]);
        assert!(
            spent > 0.0,
            "{door:?}: an abandoned stream must be charged what it used"
        );
        assert!(
            spent <= (i + 1) as f64 * 2.0 * ESTIMATE,
            "{door:?}: charged {spent}, more than the estimate"
        );
    }
}

#[tokio::test]
async fn parallel_requests_respect_the_request_limit_exactly() {
    let m = mock(MockConfig {
        latency: Duration::from_millis(50),
        ..MockConfig::default()
    })
    .await;
    let h = start(&m).await;
    let (id, key) = vk(
        &h,
        json!({"name": "burst", "rate_limit": {"request_max_limit": 5, "request_reset_duration": "1d"}}),
    )
    .await;
    let calls = (0..20).map(|i| {
        let http = h.http.clone();
        let url = h.url(if i % 2 == 0 {
            "/v1/chat/completions"
        } else {
            "/anthropic/v1/messages"
        });
        let key = key.clone();
        async move {
            http.post(url)
                .header("x-bf-vk", key)
                .json(&body(MODEL))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(calls).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, limited), (5, 15), "{statuses:?}");
    assert_eq!(m.request_count(), 5);
    let rl = rate_limit(&h, &format!("requests:vk/{id}")).await;
    assert_eq!(rl["current_usage"], 5);
}

#[tokio::test]
async fn parallel_requests_never_overspend_a_budget() {
    // Calls overlap (200 ms upstream latency), so admission rests on the reservations.
    let m = mock(MockConfig {
        latency: Duration::from_millis(200),
        ..MockConfig::default()
    })
    .await;
    let h = start(&m).await;
    let max = 0.05;
    let (id, key) = vk(
        &h,
        json!({"name": "tight", "budgets": [{"max_limit": max, "reset_duration": "1M"}]}),
    )
    .await;
    let calls = (0..20).map(|_| {
        let http = h.http.clone();
        let url = h.url("/v1/chat/completions");
        let key = key.clone();
        async move {
            http.post(url)
                .bearer_auth(key)
                .json(&body(MODEL))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(calls).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 402).count();
    assert_eq!(ok + refused, 20, "{statuses:?}");
    // floor(0.05 / 0.010) = 5 estimates fit at once. A 6th fits only if a request arrived
    // after all 5 had settled (5 x 0.008 spent + 0.010 = 0.05), which the latency makes rare.
    assert!((5..=6).contains(&ok), "{statuses:?}");
    let b = vk_budget(&h, &id).await;
    let spent = usd(&b["current_usage"]);
    assert!(spent <= max + 1e-9, "overspent: {spent} > {max}");
    assert_usd(
        &b["current_usage"],
        ok as f64 * COST,
        "spend = successes x cost",
    );
    assert_usd(&b["reserved"], 0.0, "nothing left reserved");
    // Sequentially: one more call fits while spend + 0.010 <= 0.05, then 402.
    let mut more = 0;
    loop {
        let r = infer(&h, Door::OpenAi, MODEL, &key).await;
        if r.status == 402 {
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text);
        more += 1;
        assert!(more <= 1, "budget admitted too many calls");
    }
    assert_eq!(
        ok + more,
        6,
        "0.05 USD admits 6 calls of 0.008 with 0.010 estimates"
    );
    assert!(usd(&vk_budget(&h, &id).await["current_usage"]) <= max + 1e-9);
}

#[tokio::test]
async fn usage_survives_a_restart() {
    let m = mock(MockConfig::default()).await;
    let h = start(&m).await;
    let (id, key) = vk(
        &h,
        json!({"name": "durable", "budgets": [{"max_limit": 1.0, "reset_duration": "1M"}],
               "rate_limit": {"request_max_limit": 3, "request_reset_duration": "1d", "token_max_limit": 1000, "token_reset_duration": "1d"}}),
    )
    .await;
    assert_ok(Door::OpenAi, &infer(&h, Door::OpenAi, MODEL, &key).await);
    assert_ok(
        Door::Anthropic,
        &infer(&h, Door::Anthropic, MODEL, &key).await,
    );
    let h = h.restart().await;
    let b = vk_budget(&h, &id).await;
    assert_usd(&b["current_usage"], 2.0 * COST, "spend after restart");
    assert_eq!(
        rate_limit(&h, &format!("requests:vk/{id}")).await["current_usage"],
        2
    );
    assert_eq!(
        rate_limit(&h, &format!("tokens:vk/{id}")).await["current_usage"],
        2 * TOKENS_PER_CALL
    );
    // The key still works with the same value, and the limit counts on from 2.
    assert_ok(Door::OpenAi, &infer(&h, Door::OpenAi, MODEL, &key).await);
    let r = infer(&h, Door::OpenAi, MODEL, &key).await;
    assert_eq!(r.status, 429, "{}", r.text);
}

#[tokio::test]
async fn team_and_customer_reset_budget_usage_and_budget_edits_keep_usage() {
    let m = mock(MockConfig::default()).await;
    let h = start(&m).await;
    let (_, c) = json_of(
        h.post(
            "/api/governance/customers",
            &json!({"name": "acme", "budgets": [{"max_limit": 10.0, "reset_duration": "1M"}]}),
        )
        .await,
    )
    .await;
    let cid = c["customer"]["id"].as_str().unwrap().to_owned();
    let (_, t) = json_of(
        h.post(
            "/api/governance/teams",
            &json!({"name": "eng", "customer_id": cid, "budgets": [{"max_limit": 10.0, "reset_duration": "1M"}]}),
        )
        .await,
    )
    .await;
    let tid = t["team"]["id"].as_str().unwrap().to_owned();
    let (id, key) = vk(
        &h,
        json!({"name": "k", "team_id": tid, "budgets": [{"max_limit": 10.0, "reset_duration": "1M"}]}),
    )
    .await;
    assert_ok(Door::OpenAi, &infer(&h, Door::OpenAi, MODEL, &key).await);
    // Raising a limit (same reset duration) keeps the spend.
    let (s, v) = json_of(
        h.put(
            &format!("/api/governance/virtual-keys/{id}"),
            &json!({"budgets": [{"max_limit": 20.0, "reset_duration": "1M"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let b = vk_budget(&h, &id).await;
    assert_eq!(b["max_limit"], 20.0);
    assert_usd(
        &b["current_usage"],
        COST,
        "usage kept across a limit change",
    );
    // Team reset: only the team's spend goes.
    let (s, v) = json_of(
        h.put(
            &format!("/api/governance/teams/{tid}"),
            &json!({"reset_budget_usage": true}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_usd(
        &budget(&h, &format!("budget:team/{tid}:")).await["current_usage"],
        0.0,
        "team after reset",
    );
    assert_usd(
        &budget(&h, &format!("budget:customer/{cid}:")).await["current_usage"],
        COST,
        "customer untouched",
    );
    assert_usd(
        &vk_budget(&h, &id).await["current_usage"],
        COST,
        "key untouched",
    );
    let (s, v) = json_of(
        h.put(
            &format!("/api/governance/customers/{cid}"),
            &json!({"reset_budget_usage": true}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_usd(
        &budget(&h, &format!("budget:customer/{cid}:")).await["current_usage"],
        0.0,
        "customer after reset",
    );
}

/// A fallback that succeeds after a failed primary is charged once, at its own cost.
#[tokio::test]
async fn fallback_after_a_failed_primary_is_charged_once() {
    let bad = mock(MockConfig {
        failure_rate: 1.0,
        failure_status: 500,
        ..MockConfig::default()
    })
    .await;
    let good = mock(MockConfig::default()).await;
    let h = Harness::start(Some(json!({
        "providers": {
            "openai": provider_with_key_ids(&bad.base_url(), &[("oa-1", OPENAI_KEY, 1.0)]),
            "anthropic": provider_with_key_ids(&good.base_url(), &[("an-1", ANTHROPIC_KEY, 1.0)]),
        },
        "governance": prices(),
    })))
    .await;
    let (id, key) = vk(
        &h,
        json!({"name": "fb", "budgets": [{"max_limit": 1.0, "reset_duration": "1M"}]}),
    )
    .await;
    let mut b = body(MODEL);
    b["fallbacks"] = json!(["anthropic/claude-3-5-haiku-latest"]);
    let auth = format!("Bearer {key}");
    let r = reply_of(
        send(
            &h,
            Method::POST,
            "/v1/chat/completions",
            Some(&b),
            &[("authorization", &auth)],
        )
        .await,
    )
    .await;
    assert_ok(Door::OpenAi, &r);
    assert!(bad.request_count() >= 1);
    assert_eq!(good.request_count(), 1);
    let b = vk_budget(&h, &id).await;
    assert_usd(&b["current_usage"], COST, "charged once");
    assert_usd(&b["reserved"], 0.0, "nothing held");
}

/// Resetting usage while a call holds a reservation: settling it afterwards must neither
/// drive the counter negative nor leave anything reserved.
#[tokio::test]
async fn reset_while_a_stream_is_in_flight_never_goes_negative() {
    let m = mock(MockConfig {
        stream_chunks: 3,
        stream_interval: Duration::from_secs(60),
        ..MockConfig::default()
    })
    .await;
    let h = start(&m).await;
    let (id, key) = vk(
        &h,
        json!({"name": "r", "budgets": [{"max_limit": 1.0, "reset_duration": "1M"}]}),
    )
    .await;
    assert_ok(Door::OpenAi, &infer(&h, Door::OpenAi, MODEL, &key).await);
    let mut b = body(MODEL);
    b["stream"] = json!(true);
    let auth = format!("Bearer {key}");
    let resp = send(
        &h,
        Method::POST,
        "/v1/chat/completions",
        Some(&b),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("first chunk")
        .unwrap()
        .unwrap();
    let (s, v) = json_of(
        h.put(
            &format!("/api/governance/virtual-keys/{id}"),
            &json!({"reset_budget_usage": true}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_usd(
        &vk_budget(&h, &id).await["current_usage"],
        0.0,
        "after reset",
    );
    drop(stream);
    assert!(
        m.wait_for_cancelled_streams(1, Duration::from_secs(10))
            .await
    );
    let settled = eventually(Duration::from_secs(5), || async {
        let b = vk_budget(&h, &id).await;
        (usd(&b["reserved"]) == 0.0).then_some(b)
    })
    .await
    .expect("reservation released");
    let spent = usd(&settled["current_usage"]);
    assert!(
        spent > 0.0 && spent <= 2.0 * ESTIMATE,
        "after reset + partial settle: {spent}"
    );
}

/// A refusal counts nothing: a call refused for its budget does not use up a request.
#[tokio::test]
async fn a_refused_call_consumes_no_request_slot() {
    let m = mock(MockConfig::default()).await;
    let h = start(&m).await;
    let (id, key) = vk(
        &h,
        json!({"name": "aon", "budgets": [{"max_limit": 0.01, "reset_duration": "1M"}],
               "rate_limit": {"request_max_limit": 3, "request_reset_duration": "1d"}}),
    )
    .await;
    assert_ok(Door::OpenAi, &infer(&h, Door::OpenAi, MODEL, &key).await);
    for _ in 0..3 {
        let r = infer(&h, Door::OpenAi, MODEL, &key).await;
        assert_eq!(r.status, 402, "{}", r.text);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("this request may cost up to 0.0100 USD"),
            "{}",
            r.text
        );
    }
    assert_eq!(
        rate_limit(&h, &format!("requests:vk/{id}")).await["current_usage"],
        1
    );
    let (s, _) = json_of(
        h.put(
            &format!("/api/governance/virtual-keys/{id}"),
            &json!({"reset_budget_usage": true}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    assert_ok(Door::OpenAi, &infer(&h, Door::OpenAi, MODEL, &key).await);
    assert_eq!(
        rate_limit(&h, &format!("requests:vk/{id}")).await["current_usage"],
        2
    );
}

/// A stream the upstream breaks part way is settled too: nothing stays reserved.
#[tokio::test]
async fn a_stream_broken_by_the_upstream_is_settled() {
    let m = mock(MockConfig {
        stream_chunks: 6,
        stream_fail_after: Some(2),
        ..MockConfig::default()
    })
    .await;
    let h = start(&m).await;
    let (id, key) = vk(
        &h,
        json!({"name": "broken", "budgets": [{"max_limit": 1.0, "reset_duration": "1M"}]}),
    )
    .await;
    for door in DOORS {
        let mut b = body(MODEL);
        b["stream"] = json!(true);
        let (name, value) = door.key_header(&key);
        let resp = send(&h, Method::POST, door.path(), Some(&b), &[(name, &value)]).await;
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(text.contains("error"), "{door:?}: {text}");
    }
    let b = eventually(Duration::from_secs(5), || async {
        let b = vk_budget(&h, &id).await;
        (usd(&b["reserved"]) == 0.0).then_some(b)
    })
    .await
    .expect("reservations of broken streams released");
    let spent = usd(&b["current_usage"]);
    assert!(spent <= 2.0 * 2.0 * ESTIMATE, "charged {spent}");
}

/// Bifrost: `GET /v1/models` with a virtual key lists only the providers that key allows; an
/// unknown key is refused like on every other inference route.
#[tokio::test]
async fn model_listing_respects_the_virtual_key() {
    let m = mock(MockConfig::default()).await;
    let h = start(&m).await;
    let (_, key) = vk(
        &h,
        json!({"name": "openai-only", "provider_configs": [{"provider": "openai"}]}),
    )
    .await;
    let (s, all) = json_of(h.get("/v1/models").await).await;
    assert_eq!(s, 200, "{all}");
    let ids = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        ids(&all).iter().any(|i| i.starts_with("anthropic/")),
        "{all}"
    );
    let (s, v) =
        json_of(send(&h, Method::GET, "/v1/models", None, &[("x-bf-vk", &key)]).await).await;
    assert_eq!(s, 200, "{v}");
    let listed = ids(&v);
    assert!(!listed.is_empty());
    assert!(
        listed.iter().all(|i| i.starts_with("openai/")),
        "a key limited to openai lists {listed:?}"
    );
    let (s, v) = json_of(
        send(
            &h,
            Method::GET,
            "/v1/models",
            None,
            &[(
                "x-bf-vk",
                "sk-bf-UnknownUnknownUnknownUnknownUnknown0000000",
            )],
        )
        .await,
    )
    .await;
    assert_eq!(s, 403, "unknown key listed models: {v}");
}
