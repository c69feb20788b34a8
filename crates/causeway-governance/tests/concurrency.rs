//! Counters under contention and as a state machine.
//!
//! The overspend rule under test: a request is admitted only if `spent + reserved +
//! estimate <= max`, and settling replaces its estimate with its actual cost. So when every
//! call costs at most its estimate, `spent + reserved` never exceeds `max` — at any instant,
//! whatever the interleaving. When a call costs more than its estimate, the excess is still
//! charged (the money is gone), so spend can exceed `max` by at most the sum of the
//! overshoots, and every later request is refused until the window resets.

// Test helpers outside #[test] fns are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use causeway_core::Usage;
use causeway_governance::calendar::DurationUse;
use causeway_governance::counters::{BudgetCheck, LimitCheck, LimitKind};
use causeway_governance::{
    AccessRequest, BudgetConfig, Estimate, GovernanceSnapshot, MemoryCounters, Owner,
    PriceOverride, Pricing, RateLimitConfig, ReservationId, ReserveRequest, ResetDuration,
    ScopeKey, UsageCounters, VirtualKey, VkLookup, authorize, hash_virtual_key_value, usage_report,
};
use proptest::prelude::*;

const NOW: u64 = 1_773_568_830_000; // 2026-03-15T10:00:30Z
const MAX_USD: f64 = 10.0;
const REQUEST_LIMIT: u64 = 400;
const THREADS: usize = 8;
const PER_THREAD: usize = 150;

fn snapshot() -> GovernanceSnapshot {
    let vk = VirtualKey {
        id: "v".into(),
        name: "load".into(),
        description: String::new(),
        value_hash: hash_virtual_key_value("sk-bf-load"),
        value_hint: String::new(),
        is_active: true,
        team_id: None,
        customer_id: None,
        allow_all_providers: None,
        disable_content_logging: None,
        provider_configs: vec![],
        budgets: vec![BudgetConfig {
            id: "b".into(),
            max_limit: MAX_USD,
            reset_duration: "1d".into(),
            calendar_aligned: true,
            created_at: 0,
        }],
        rate_limit: Some(RateLimitConfig {
            request_max_limit: Some(REQUEST_LIMIT),
            request_reset_duration: Some("1h".into()),
            token_max_limit: None,
            token_reset_duration: None,
        }),
        permissions: vec![],
        expires_at: None,
        created_at: 0,
        updated_at: 0,
    };
    GovernanceSnapshot::new(vec![vk], vec![], vec![])
}

/// One cent per prompt token, so an estimate of n tokens reserves n cents.
fn pricing() -> Pricing {
    Pricing::empty().with_overrides(vec![PriceOverride {
        provider: "openai".into(),
        model: "m".into(),
        input: 10_000.0,
        output: 0.0,
        cached_input: None,
    }])
}

fn nanos(usd: f64) -> u64 {
    (usd * 1e9).round() as u64
}

struct Outcome {
    granted: u64,
    charged_nanos: u64,
    overshoot_nanos: u64,
}

/// N threads doing authorize + settle with random estimates and actual costs, while a
/// monitor checks `spent + reserved <= max` (when `overshoot` is false) at every sample.
fn hammer(overshoot: bool, seed: u64) -> (Arc<MemoryCounters>, Outcome) {
    let concrete = Arc::new(MemoryCounters::new());
    let counters: Arc<dyn UsageCounters> = concrete.clone();
    let snap = Arc::new(snapshot());
    let pricing = Arc::new(pricing());
    let granted = Arc::new(AtomicU64::new(0));
    let charged = Arc::new(AtomicU64::new(0));
    let over = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));

    let monitor = {
        let (counters, snap, done, violations) = (
            Arc::clone(&counters),
            Arc::clone(&snap),
            Arc::clone(&done),
            Arc::clone(&violations),
        );
        thread::spawn(move || {
            let mut samples = 0u64;
            while !done.load(Ordering::Acquire) || samples == 0 {
                let r =
                    usage_report(&snap, counters.as_ref(), Owner::VirtualKey("v"), NOW).unwrap();
                let b = &r.budgets[0];
                let committed = nanos(b.current_usage) + nanos(b.reserved);
                if !overshoot && committed > nanos(MAX_USD) {
                    violations.lock().unwrap().push(format!(
                        "spent {} + reserved {} > max",
                        b.current_usage, b.reserved
                    ));
                }
                if r.rate_limits[0].current_usage > REQUEST_LIMIT {
                    violations.lock().unwrap().push(format!(
                        "requests {} > limit",
                        r.rate_limits[0].current_usage
                    ));
                }
                samples += 1;
            }
            samples
        })
    };

    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (counters, snap, pricing, granted, charged, over) = (
                Arc::clone(&counters),
                Arc::clone(&snap),
                Arc::clone(&pricing),
                Arc::clone(&granted),
                Arc::clone(&charged),
                Arc::clone(&over),
            );
            thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(t as u64));
                for _ in 0..PER_THREAD {
                    let tokens = rng.u64(1..=60);
                    let req = AccessRequest {
                        vk: VkLookup::ByValue("sk-bf-load"),
                        provider: "openai",
                        model: "m",
                        estimate: Estimate {
                            prompt_tokens: tokens,
                            max_output_tokens: 0,
                        },
                        now_ms: NOW,
                    };
                    let Ok(grant) = authorize(&snap, &counters, &pricing, &req) else {
                        continue;
                    };
                    granted.fetch_add(1, Ordering::Relaxed);
                    let estimate = grant.reservation.estimated_cost_usd();
                    let factor = if overshoot {
                        rng.f64() * 2.0
                    } else {
                        rng.f64()
                    };
                    let actual = (estimate * factor * 100.0).round() / 100.0;
                    if rng.u8(0..10) == 0 {
                        // A failed or abandoned call: dropped without settling.
                        drop(grant);
                        continue;
                    }
                    charged.fetch_add(nanos(actual), Ordering::Relaxed);
                    over.fetch_add(
                        nanos(actual).saturating_sub(nanos(estimate)),
                        Ordering::Relaxed,
                    );
                    thread::yield_now();
                    grant.reservation.settle(Some((Usage::default(), actual)));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Release);
    assert!(monitor.join().unwrap() > 0);
    let v = violations.lock().unwrap();
    assert!(
        v.is_empty(),
        "invariant violations: {:?}",
        &v[..v.len().min(5)]
    );
    (
        concrete,
        Outcome {
            granted: granted.load(Ordering::Relaxed),
            charged_nanos: charged.load(Ordering::Relaxed),
            overshoot_nanos: over.load(Ordering::Relaxed),
        },
    )
}

fn budget_state(c: &MemoryCounters) -> (u64, u64) {
    let r = usage_report(&snapshot(), c, Owner::VirtualKey("v"), NOW).unwrap();
    (
        nanos(r.budgets[0].current_usage),
        nanos(r.budgets[0].reserved),
    )
}

#[test]
fn never_overspends_when_actual_is_within_estimate() {
    for seed in [1, 2, 3] {
        let (c, out) = hammer(false, seed);
        let (spent, reserved) = budget_state(&c);
        assert_eq!(reserved, 0, "everything settled or dropped");
        assert_eq!(c.reservations_in_flight(), 0);
        assert!(spent <= nanos(MAX_USD), "spent {spent}");
        assert_eq!(spent, out.charged_nanos, "exact integer accounting");
        assert!(out.granted <= REQUEST_LIMIT);
        assert!(out.granted > 0);
        // The budget, not the request limit, is what stopped the load.
        assert!(out.granted < (THREADS * PER_THREAD) as u64);
    }
}

#[test]
fn overshoot_is_bounded_and_blocks_later_requests() {
    for seed in [7, 8, 9] {
        let (c, out) = hammer(true, seed);
        let (spent, reserved) = budget_state(&c);
        assert_eq!(reserved, 0);
        assert_eq!(spent, out.charged_nanos);
        assert!(
            spent <= nanos(MAX_USD) + out.overshoot_nanos,
            "spent {spent} > max + overshoot {}",
            out.overshoot_nanos
        );
        if spent >= nanos(MAX_USD) {
            let counters: Arc<dyn UsageCounters> = c;
            let req = AccessRequest {
                vk: VkLookup::ByValue("sk-bf-load"),
                provider: "openai",
                model: "m",
                estimate: Estimate::default(),
                now_ms: NOW,
            };
            let e = authorize(&snapshot(), &counters, &pricing(), &req).unwrap_err();
            assert_eq!(e.status(), 402);
        }
    }
}

#[test]
fn request_limit_is_exact_under_contention() {
    let counters = Arc::new(MemoryCounters::new());
    let window = ResetDuration::parse("1m", DurationUse::RateLimit)
        .unwrap()
        .window(NOW, true, 0);
    let request = Arc::new(ReserveRequest {
        limits: vec![LimitCheck {
            scope: ScopeKey::requests(Owner::VirtualKey("v")),
            kind: LimitKind::Requests,
            max: 50,
            window,
        }],
        budgets: vec![],
        estimated_cost_usd: 0.0,
        now_ms: NOW,
    });
    let granted = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (c, r, g) = (
                Arc::clone(&counters),
                Arc::clone(&request),
                Arc::clone(&granted),
            );
            thread::spawn(move || {
                for _ in 0..20 {
                    if let Ok(id) = c.reserve(&r) {
                        g.fetch_add(1, Ordering::Relaxed);
                        c.settle(id, 0.0, 0);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(granted.load(Ordering::Relaxed), 50);
    assert_eq!(
        counters
            .usage(&ScopeKey::requests(Owner::VirtualKey("v")), window)
            .requests,
        50
    );
}

#[derive(Debug, Clone)]
enum Op {
    Reserve { cents: u64 },
    Settle { pick: usize, percent: u64 },
    Drop { pick: usize },
    Advance { ms: u64 },
    Reset,
    SnapshotRestore,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..400).prop_map(|cents| Op::Reserve { cents }),
        3 => (any::<usize>(), 0u64..=100).prop_map(|(pick, percent)| Op::Settle { pick, percent }),
        1 => any::<usize>().prop_map(|pick| Op::Drop { pick }),
        1 => (0u64..90_000).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Reset),
        1 => Just(Op::SnapshotRestore),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any sequence of reserve / settle (actual ≤ estimate) / abandon / time passing /
    /// reset / snapshot+restore keeps: reserved == the sum of in-flight estimates,
    /// spent + reserved <= max, requests in the window <= limit, and snapshots round-trip.
    #[test]
    fn counters_state_machine(ops in proptest::collection::vec(op(), 1..80)) {
        let mut counters = MemoryCounters::new();
        let budget_scope = ScopeKey::budget(Owner::VirtualKey("v"), "b");
        let req_scope = ScopeKey::requests(Owner::VirtualKey("v"));
        let minute = ResetDuration::parse("1m", DurationUse::RateLimit).unwrap();
        let max_usd = 20.0;
        let limit = 7;
        let mut now = NOW;
        let mut in_flight: Vec<(ReservationId, u64)> = Vec::new();
        for op in ops {
            let window = minute.window(now, true, 0);
            match op {
                Op::Reserve { cents } => {
                    let r = ReserveRequest {
                        limits: vec![LimitCheck { scope: req_scope.clone(), kind: LimitKind::Requests, max: limit, window }],
                        budgets: vec![BudgetCheck { scope: budget_scope.clone(), max_usd, window }],
                        estimated_cost_usd: cents as f64 / 100.0,
                        now_ms: now,
                    };
                    if let Ok(id) = counters.reserve(&r) {
                        in_flight.push((id, cents));
                    }
                }
                Op::Settle { pick, percent } if !in_flight.is_empty() => {
                    let (id, cents) = in_flight.swap_remove(pick % in_flight.len());
                    let actual_cents = cents * percent / 100;
                    counters.settle(id, actual_cents as f64 / 100.0, actual_cents);
                    // Settling twice changes nothing.
                    counters.settle(id, 99.0, 99);
                }
                Op::Drop { pick } if !in_flight.is_empty() => {
                    let (id, _) = in_flight.swap_remove(pick % in_flight.len());
                    counters.settle(id, 0.0, 0);
                }
                Op::Advance { ms } => now += ms,
                Op::Reset => counters.reset(&budget_scope),
                Op::SnapshotRestore => {
                    let snap = counters.snapshot();
                    let json = serde_json::to_string(&snap).unwrap();
                    let fresh = MemoryCounters::new();
                    fresh.restore(serde_json::from_str(&json).unwrap());
                    prop_assert_eq!(fresh.snapshot(), snap);
                    // Carry on with the restored counters: in-flight reservations are not
                    // persisted, so they are released as a restart would.
                    counters = fresh;
                    in_flight.clear();
                }
                _ => {}
            }
            let window = minute.window(now, true, 0);
            let b = counters.usage(&budget_scope, window);
            let expected_reserved: u64 = in_flight.iter().map(|(_, c)| c * 10_000_000).sum();
            prop_assert_eq!(nanos(b.reserved_usd), expected_reserved);
            prop_assert!(nanos(b.spent_usd) + nanos(b.reserved_usd) <= nanos(max_usd));
            prop_assert!(counters.usage(&req_scope, window).requests <= limit);
            prop_assert_eq!(counters.reservations_in_flight(), in_flight.len());
        }
    }
}
