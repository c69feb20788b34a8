//! Every decision branch of `authorize`, with the exact status, type, class and message a
//! client sees, plus grants, settlement and the usage report.

// Test helpers outside #[test] fns are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use causeway_core::{GatewayError, Usage};
use causeway_governance::{
    AccessRequest, BudgetConfig, Customer, Estimate, GovernanceSnapshot, MemoryCounters, Owner,
    PriceOverride, Pricing, ProviderConfig, RateLimitConfig, ReservationId, ReserveError,
    ReserveRequest, ScopeKey, ScopeUsage, Team, UsageCounters, VirtualKey, VkLookup, Window,
    authorize, hash_virtual_key_value, parse_rfc3339, plan, usage_report,
};

const CI: &str = "sk-bf-ci-0123456789abcdef";

fn now() -> u64 {
    parse_rfc3339("2026-03-15T10:00:30Z").unwrap() as u64
}

fn budget(id: &str, max: f64, reset: &str) -> BudgetConfig {
    BudgetConfig {
        id: id.into(),
        max_limit: max,
        reset_duration: reset.into(),
        calendar_aligned: true,
        created_at: 0,
    }
}

fn pc(provider: &str, allowed: &[&str], blocked: &[&str], keys: &[&str]) -> ProviderConfig {
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    ProviderConfig {
        provider: provider.into(),
        weight: 1.0,
        allowed_models: strings(allowed),
        blacklisted_models: strings(blocked),
        key_ids: strings(keys),
        budgets: vec![],
        rate_limit: None,
    }
}

fn vk(id: &str, name: &str, value: &str) -> VirtualKey {
    VirtualKey {
        id: id.into(),
        name: name.into(),
        description: String::new(),
        value_hash: hash_virtual_key_value(value),
        value_hint: String::new(),
        is_active: true,
        team_id: None,
        customer_id: None,
        allow_all_providers: None,
        disable_content_logging: None,
        provider_configs: vec![],
        budgets: vec![],
        rate_limit: None,
        permissions: vec![],
        expires_at: None,
        created_at: 0,
        updated_at: 0,
    }
}

fn snapshot() -> GovernanceSnapshot {
    let mut ci = vk("v1", "ci", CI);
    ci.team_id = Some("t1".into());
    let mut openai = pc(
        "openai",
        &["gpt-4o", "gpt-4o-mini", "regex:o[34].*"],
        &["o3-pro"],
        &["k1", "k2"],
    );
    openai.budgets = vec![budget("pb", 50.0, "1d")];
    ci.provider_configs = vec![openai, pc("anthropic", &["*"], &["regex:.*opus.*"], &["*"])];
    ci.budgets = vec![budget("vb", 40.0, "1d")];
    ci.rate_limit = Some(RateLimitConfig {
        request_max_limit: Some(3),
        request_reset_duration: Some("1m".into()),
        token_max_limit: Some(1_000),
        token_reset_duration: Some("1h".into()),
    });

    let mut inactive = vk("v2", "off", "sk-bf-off");
    inactive.is_active = false;
    let mut expired = vk("v3", "old", "sk-bf-old");
    expired.expires_at = Some("2026-03-15T10:00:00Z".into());
    let mut later = vk("v4", "later", "sk-bf-later");
    later.expires_at = Some("2026-03-15T10:01:00+00:00".into());
    let open = vk("v5", "open", "sk-bf-open");
    let mut closed = vk("v6", "closed", "sk-bf-closed");
    closed.allow_all_providers = Some(false);
    let mut mixed = vk("v7", "mixed", "sk-bf-mixed");
    mixed.allow_all_providers = Some(true);
    mixed.provider_configs = vec![pc("openai", &["gpt-4o"], &[], &[])];
    let mut spender = vk("v8", "spender", "sk-bf-spender");
    spender.team_id = Some("t1".into());
    let mut direct = vk("v9", "direct", "sk-bf-direct");
    direct.customer_id = Some("c1".into());
    let mut empty_models = vk("v10", "nomodels", "sk-bf-nomodels");
    empty_models.provider_configs = vec![pc("openai", &[], &[], &[])];

    GovernanceSnapshot::new(
        vec![
            ci,
            inactive,
            expired,
            later,
            open,
            closed,
            mixed,
            spender,
            direct,
            empty_models,
        ],
        vec![Team {
            id: "t1".into(),
            name: "eng".into(),
            customer_id: Some("c1".into()),
            budgets: vec![budget("tb", 10.0, "1M")],
            created_at: 0,
            updated_at: 0,
        }],
        vec![Customer {
            id: "c1".into(),
            name: "acme".into(),
            budgets: vec![budget("cb", 100.0, "1Y")],
            created_at: 0,
            updated_at: 0,
        }],
    )
}

/// $1 per token in and out, so costs are easy to read.
fn pricing() -> Pricing {
    Pricing::empty().with_overrides(
        ["openai", "anthropic", "groq"]
            .iter()
            .flat_map(|p| {
                [
                    "gpt-4o",
                    "gpt-4o-mini",
                    "o4-mini",
                    "claude-3-5-haiku",
                    "llama",
                ]
                .map(|m| PriceOverride {
                    provider: (*p).into(),
                    model: m.into(),
                    input: 1e6,
                    output: 1e6,
                    cached_input: None,
                })
            })
            .collect(),
    )
}

fn counters() -> Arc<dyn UsageCounters> {
    Arc::new(MemoryCounters::new())
}

fn request<'a>(vk: VkLookup<'a>, provider: &'a str, model: &'a str) -> AccessRequest<'a> {
    AccessRequest {
        vk,
        provider,
        model,
        estimate: Estimate {
            prompt_tokens: 0,
            max_output_tokens: 0,
        },
        now_ms: now(),
    }
}

fn denied(
    counters: &Arc<dyn UsageCounters>,
    req: &AccessRequest<'_>,
) -> (u16, String, String, String) {
    let e = authorize(&snapshot(), counters, &pricing(), req).unwrap_err();
    describe(&e)
}

fn describe(e: &GatewayError) -> (u16, String, String, String) {
    let env = e.to_envelope(None);
    assert_eq!(env["type"], env["error"]["type"]);
    assert_eq!(env["is_bifrost_error"], false);
    (
        e.status(),
        e.kind().unwrap_or_default().to_owned(),
        env["extra_fields"]["error_type"]
            .as_str()
            .unwrap()
            .to_owned(),
        e.message().to_owned(),
    )
}

fn expect(got: (u16, String, String, String), status: u16, kind: &str, class: &str, message: &str) {
    assert_eq!(
        got,
        (
            status,
            kind.to_owned(),
            class.to_owned(),
            message.to_owned()
        )
    );
}

#[test]
fn unknown_key() {
    let c = counters();
    expect(
        denied(
            &c,
            &request(VkLookup::ByValue("sk-bf-nope"), "openai", "gpt-4o"),
        ),
        403,
        "virtual_key_not_found",
        "policy_access_denied",
        "Virtual key not found",
    );
    expect(
        denied(&c, &request(VkLookup::ById("nope"), "openai", "gpt-4o")),
        403,
        "virtual_key_not_found",
        "policy_access_denied",
        "Virtual key not found",
    );
}

#[test]
fn inactive_key() {
    let e = authorize(
        &snapshot(),
        &counters(),
        &pricing(),
        &request(VkLookup::ByValue("sk-bf-off"), "openai", "gpt-4o"),
    )
    .unwrap_err();
    expect(
        describe(&e),
        403,
        "virtual_key_blocked",
        "policy_access_denied",
        "Virtual key is inactive",
    );
    assert!(!e.details().allow_fallbacks);
}

#[test]
fn expired_key() {
    let c = counters();
    expect(
        denied(
            &c,
            &request(VkLookup::ByValue("sk-bf-old"), "groq", "llama"),
        ),
        403,
        "virtual_key_expired",
        "policy_access_denied",
        "virtual key has expired",
    );
    // Expires in 30 s: still fine now.
    assert!(
        authorize(
            &snapshot(),
            &c,
            &pricing(),
            &request(VkLookup::ByValue("sk-bf-later"), "groq", "llama")
        )
        .is_ok()
    );
}

#[test]
fn provider_access() {
    let c = counters();
    let e = authorize(
        &snapshot(),
        &c,
        &pricing(),
        &request(VkLookup::ByValue(CI), "groq", "llama"),
    )
    .unwrap_err();
    expect(
        describe(&e),
        403,
        "provider_blocked",
        "policy_provider_blocked",
        "Provider 'groq' is not allowed for this virtual key",
    );
    assert!(
        e.details().allow_fallbacks,
        "another provider may be allowed"
    );
    expect(
        denied(
            &c,
            &request(VkLookup::ByValue("sk-bf-closed"), "openai", "gpt-4o"),
        ),
        403,
        "provider_blocked",
        "policy_provider_blocked",
        "Provider 'openai' is not allowed for this virtual key",
    );
    // No provider configs: everything is allowed, and nothing needs a reservation.
    let g = authorize(
        &snapshot(),
        &c,
        &pricing(),
        &request(VkLookup::ByValue("sk-bf-open"), "anything", "any-model"),
    )
    .unwrap();
    assert_eq!(g.reservation.id(), None);
    assert_eq!(g.allowed_key_ids, None);
    // allow_all_providers with a config: unlisted providers are open, listed ones restricted.
    let mixed = VkLookup::ByValue("sk-bf-mixed");
    assert!(
        authorize(
            &snapshot(),
            &c,
            &pricing(),
            &request(mixed, "groq", "whatever")
        )
        .is_ok()
    );
    assert!(
        authorize(
            &snapshot(),
            &c,
            &pricing(),
            &request(mixed, "OpenAI", "gpt-4o")
        )
        .is_ok()
    );
    expect(
        denied(&c, &request(mixed, "openai", "gpt-4o-mini")),
        403,
        "model_blocked",
        "policy_model_blocked",
        "Model 'gpt-4o-mini' is not allowed for this virtual key",
    );
}

#[test]
fn model_access() {
    let c = counters();
    let ci = VkLookup::ByValue(CI);
    expect(
        denied(&c, &request(ci, "openai", "gpt-4.1")),
        403,
        "model_blocked",
        "policy_model_blocked",
        "Model 'gpt-4.1' is not allowed for this virtual key",
    );
    // Allowed by regex but blacklisted: the blacklist wins.
    expect(
        denied(&c, &request(ci, "openai", "o3-pro")),
        403,
        "model_blocked",
        "policy_model_blocked",
        "Model 'o3-pro' is not allowed for this virtual key",
    );
    expect(
        denied(&c, &request(ci, "anthropic", "claude-opus-4")),
        403,
        "model_blocked",
        "policy_model_blocked",
        "Model 'claude-opus-4' is not allowed for this virtual key",
    );
    // An explicit empty allow-list allows nothing.
    expect(
        denied(
            &c,
            &request(VkLookup::ByValue("sk-bf-nomodels"), "openai", "gpt-4o"),
        ),
        403,
        "model_blocked",
        "policy_model_blocked",
        "Model 'gpt-4o' is not allowed for this virtual key",
    );
    let g = authorize(
        &snapshot(),
        &c,
        &pricing(),
        &request(ci, "openai", "O4-mini"),
    )
    .unwrap();
    assert_eq!(
        g.allowed_key_ids,
        Some(vec!["k1".to_owned(), "k2".to_owned()])
    );
    assert_eq!(g.vk_id, "v1");
    assert_eq!(g.vk_name, "ci");
    assert_eq!(g.team_id.as_deref(), Some("t1"));
    assert_eq!(g.customer_id.as_deref(), Some("c1"), "the team's customer");
    g.reservation.settle(None);
    let g = authorize(
        &snapshot(),
        &c,
        &pricing(),
        &request(VkLookup::ById("v1"), "anthropic", "Claude-3-5-Haiku"),
    )
    .unwrap();
    assert_eq!(g.allowed_key_ids, None, "[\"*\"] = any key");
}

#[test]
fn request_limit() {
    let c = counters();
    let req = request(VkLookup::ByValue(CI), "openai", "gpt-4o");
    for _ in 0..3 {
        authorize(&snapshot(), &c, &pricing(), &req)
            .unwrap()
            .reservation
            .settle(None);
    }
    let e = authorize(&snapshot(), &c, &pricing(), &req).unwrap_err();
    expect(
        describe(&e),
        429,
        "request_limited",
        "policy_rate_limited",
        "request limit exceeded for virtual key 'ci' (3 of 3 requests in the current 1m window)",
    );
    // 10:00:30 → the minute resets at 10:01:00.
    assert_eq!(e.details().retry_after_secs, Some(30));
    assert!(!e.details().allow_fallbacks);
    // Next minute: allowed again.
    let mut next = req;
    next.now_ms += 30_000;
    assert!(authorize(&snapshot(), &c, &pricing(), &next).is_ok());
}

#[test]
fn token_limit() {
    let c = counters();
    let req = request(VkLookup::ByValue(CI), "openai", "gpt-4o");
    let usage = Usage {
        prompt_tokens: 600,
        completion_tokens: 400,
        total_tokens: 1_000,
        cached_tokens: 0,
    };
    authorize(&snapshot(), &c, &pricing(), &req)
        .unwrap()
        .reservation
        .settle(Some((usage, 0.0)));
    let e = authorize(&snapshot(), &c, &pricing(), &req).unwrap_err();
    expect(
        describe(&e),
        429,
        "token_limited",
        "policy_rate_limited",
        "token limit exceeded for virtual key 'ci' (1000 of 1000 tokens in the current 1h window)",
    );
    // 10:00:30 → the hour resets at 11:00:00.
    assert_eq!(e.details().retry_after_secs, Some(3_570));
}

fn spend(c: &Arc<dyn UsageCounters>, value: &str, provider: &str, model: &str, usd: f64) {
    let g = authorize(
        &snapshot(),
        c,
        &pricing(),
        &request(VkLookup::ByValue(value), provider, model),
    )
    .unwrap();
    g.reservation.settle(Some((Usage::default(), usd)));
}

#[test]
fn budget_hierarchy_order() {
    let c = counters();
    // Another key of the same team spends the team budget.
    spend(&c, "sk-bf-spender", "openai", "gpt-4o", 10.0);
    let e = authorize(
        &snapshot(),
        &c,
        &pricing(),
        &request(VkLookup::ByValue(CI), "openai", "gpt-4o"),
    )
    .unwrap_err();
    expect(
        describe(&e),
        402,
        "budget_exceeded",
        "policy_budget_exceeded",
        "budget exceeded for team 'eng' (10.00 of 10.00 USD in the current 1M window)",
    );
    assert!(!e.details().allow_fallbacks);
    assert_eq!(e.details().retry_after_secs, None);
    // Exhaust the customer too (via a key attached to the customer directly): the customer
    // is checked first.
    spend(&c, "sk-bf-direct", "groq", "llama", 90.0);
    expect(
        denied(&c, &request(VkLookup::ByValue(CI), "openai", "gpt-4o")),
        402,
        "budget_exceeded",
        "policy_budget_exceeded",
        "budget exceeded for customer 'acme' (100.00 of 100.00 USD in the current 1Y window)",
    );
}

#[test]
fn key_and_provider_budgets() {
    let c = counters();
    let ci = VkLookup::ByValue(CI);
    // The key's own 40 USD/day, spent through anthropic.
    spend(&c, CI, "anthropic", "claude-3-5-haiku", 9.0); // team: 9 of 10
    // Estimate 2 USD (1 prompt + 1 output token at $1) exceeds the team's last dollar.
    let mut req = request(ci, "openai", "gpt-4o");
    req.estimate = Estimate {
        prompt_tokens: 1,
        max_output_tokens: 1,
    };
    expect(
        denied(&c, &req),
        402,
        "budget_exceeded",
        "policy_budget_exceeded",
        "budget exceeded for team 'eng' (9.00 of 10.00 USD in the current 1M window); this request may cost up to 2.0000 USD",
    );
    // Provider-config budget: the denial allows fallbacks to another provider.
    let snap = {
        let mut v = vk("p1", "perprov", "sk-bf-pp");
        let mut openai = pc("openai", &["*"], &[], &[]);
        openai.budgets = vec![budget("ob", 1.0, "1d")];
        v.provider_configs = vec![openai, pc("groq", &["*"], &[], &[])];
        GovernanceSnapshot::new(vec![v], vec![], vec![])
    };
    let r = request(VkLookup::ByValue("sk-bf-pp"), "openai", "gpt-4o");
    authorize(&snap, &c, &pricing(), &r)
        .unwrap()
        .reservation
        .settle(Some((Usage::default(), 1.0)));
    let e = authorize(&snap, &c, &pricing(), &r).unwrap_err();
    assert_eq!(
        e.message(),
        "budget exceeded for provider 'openai' of virtual key 'perprov' (1.00 of 1.00 USD in the current 1d window)"
    );
    assert!(e.details().allow_fallbacks);
    assert!(
        authorize(
            &snap,
            &c,
            &pricing(),
            &request(VkLookup::ByValue("sk-bf-pp"), "groq", "llama")
        )
        .is_ok()
    );
}

#[test]
fn reservation_is_held_until_settled_or_dropped() {
    let concrete = Arc::new(MemoryCounters::new());
    let c: Arc<dyn UsageCounters> = concrete.clone();
    let mut req = request(VkLookup::ByValue(CI), "openai", "gpt-4o");
    req.estimate = Estimate {
        prompt_tokens: 2,
        max_output_tokens: 1,
    };
    let g = authorize(&snapshot(), &c, &pricing(), &req).unwrap();
    assert_eq!(g.reservation.estimated_cost_usd(), 3.0);
    let team_budget = |c: &Arc<dyn UsageCounters>| {
        usage_report(&snapshot(), c.as_ref(), Owner::Team("t1"), now())
            .unwrap()
            .budgets[0]
            .clone()
    };
    assert_eq!(team_budget(&c).reserved, 3.0);
    assert_eq!(concrete.reservations_in_flight(), 1);
    drop(g);
    assert_eq!(team_budget(&c).reserved, 0.0);
    assert_eq!(team_budget(&c).current_usage, 0.0);
    assert_eq!(concrete.reservations_in_flight(), 0);

    let g = authorize(&snapshot(), &c, &pricing(), &req).unwrap();
    g.reservation.settle(Some((Usage::default(), 1.5)));
    let b = team_budget(&c);
    assert_eq!((b.current_usage, b.reserved), (1.5, 0.0));
    assert_eq!(b.window_start, "2026-03-01T00:00:00Z");
    assert_eq!(b.resets_at, "2026-04-01T00:00:00Z");
}

#[test]
fn usage_report_of_a_key() {
    let c = counters();
    let g = authorize(
        &snapshot(),
        &c,
        &pricing(),
        &request(VkLookup::ByValue(CI), "openai", "gpt-4o"),
    )
    .unwrap();
    g.reservation.settle(Some((
        Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
            total_tokens: 0,
            cached_tokens: 0,
        },
        0.25,
    )));
    let r = usage_report(&snapshot(), c.as_ref(), Owner::VirtualKey("v1"), now()).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["rate_limits"][0]["kind"], "requests");
    assert_eq!(v["rate_limits"][0]["current_usage"], 1);
    assert_eq!(v["rate_limits"][0]["resets_at"], "2026-03-15T10:01:00Z");
    assert_eq!(v["rate_limits"][1]["kind"], "tokens");
    assert_eq!(
        v["rate_limits"][1]["current_usage"], 15,
        "prompt + completion"
    );
    assert_eq!(v["budgets"][0]["scope"], "budget:vk/v1:vb");
    assert_eq!(v["budgets"][0]["current_usage"], 0.25);
    assert_eq!(
        v["budgets"][1]["owner"],
        "provider 'openai' of virtual key 'ci'"
    );
    assert_eq!(v["budgets"][1]["current_usage"], 0.25);
    assert!(usage_report(&snapshot(), c.as_ref(), Owner::Team("nope"), now()).is_none());
}

/// A backend that cannot be reached.
struct Down;

impl UsageCounters for Down {
    fn reserve(&self, _: &ReserveRequest) -> Result<ReservationId, ReserveError> {
        Err(ReserveError::Unavailable("connection refused".into()))
    }
    fn settle(&self, _: ReservationId, _: f64, _: u64) {}
    fn usage(&self, _: &ScopeKey, current: Window) -> ScopeUsage {
        ScopeUsage {
            window: current,
            requests: 0,
            tokens: 0,
            spent_usd: 0.0,
            reserved_usd: 0.0,
        }
    }
    fn snapshot(&self) -> causeway_governance::CountersSnapshot {
        causeway_governance::CountersSnapshot::default()
    }
    fn restore(&self, _: causeway_governance::CountersSnapshot) {}
    fn reset(&self, _: &ScopeKey) {}
}

#[test]
fn unavailable_counters_fail_closed() {
    let c: Arc<dyn UsageCounters> = Arc::new(Down);
    let e = authorize(
        &snapshot(),
        &c,
        &pricing(),
        &request(VkLookup::ByValue(CI), "openai", "gpt-4o"),
    )
    .unwrap_err();
    assert_eq!(e.status(), 503);
    assert_eq!(e.kind(), Some("governance_unavailable"));
    assert!(e.details().gateway_fault);
}

#[test]
fn plan_exposes_the_reserve_request() {
    let p = plan(
        &snapshot(),
        &pricing(),
        &request(VkLookup::ByValue(CI), "openai", "gpt-4o"),
    )
    .unwrap();
    let scopes: Vec<&str> = p
        .reserve_request()
        .limits
        .iter()
        .map(|l| l.scope.as_str())
        .chain(p.reserve_request().budgets.iter().map(|b| b.scope.as_str()))
        .collect();
    assert_eq!(
        scopes,
        [
            "requests:vk/v1",
            "tokens:vk/v1",
            "budget:customer/c1:cb",
            "budget:team/t1:tb",
            "budget:vk/v1:vb",
            "budget:vk/v1/provider/openai:pb",
        ]
    );
}
