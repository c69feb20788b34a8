//! Single-node counters: one map behind one `std::sync::Mutex`.
//!
//! Why a mutex and not atomics: a reservation must be all-or-nothing across several
//! counters (a request limit, a token limit and up to four budgets), and check-then-add on
//! each counter separately would let two requests both pass the last dollar. The lock is
//! held only for a few map lookups and integer additions, never across I/O or `.await`, so
//! contention stays in the microseconds even at thousands of requests per second.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{
    CountersSnapshot, Denied, LimitKind, Nanos, ReservationId, ReserveError, ReserveRequest,
    ScopeKey, ScopeRecord, ScopeUsage, UsageCounters, nanos_to_usd, usd_to_nanos,
};
use crate::calendar::Window;

/// Reservations not settled after this long are treated as abandoned and released (a
/// caller that lost its `Reservation` without dropping it, e.g. `mem::forget`). Long enough
/// for any streaming call.
const DEFAULT_RESERVATION_TTL_MS: u64 = 6 * 60 * 60 * 1000;

#[derive(Debug, Clone, Copy)]
struct Counter {
    window: Window,
    requests: u64,
    tokens: u64,
    spent: Nanos,
    /// In flight across windows: not reset at rollover.
    reserved: Nanos,
}

impl Counter {
    fn new(window: Window) -> Counter {
        Counter {
            window,
            requests: 0,
            tokens: 0,
            spent: 0,
            reserved: 0,
        }
    }

    /// Moves the counter to `window` per the rules on [`UsageCounters`].
    fn roll(&mut self, window: Window) {
        let cur = self.window;
        if window.start_ms > cur.start_ms {
            self.window = window;
            self.requests = 0;
            self.tokens = 0;
            self.spent = 0;
        } else if (window.start_ms == cur.start_ms && window.end_ms != cur.end_ms)
            || (window.start_ms < cur.start_ms && window.end_ms > cur.end_ms)
        {
            self.window = window;
        }
    }
}

#[derive(Debug)]
struct Held {
    reserved_at_ms: u64,
    amount: Nanos,
    budgets: Vec<ScopeKey>,
    token_scopes: Vec<ScopeKey>,
}

#[derive(Debug, Default)]
struct State {
    scopes: HashMap<ScopeKey, Counter>,
    reservations: HashMap<ReservationId, Held>,
    next_id: u64,
    next_reap_ms: u64,
}

impl State {
    fn release(&mut self, held: &Held, charge: Nanos, tokens: u64) {
        for scope in &held.budgets {
            if let Some(c) = self.scopes.get_mut(scope) {
                c.reserved = c.reserved.saturating_sub(held.amount);
                c.spent = c.spent.saturating_add(charge);
            }
        }
        for scope in &held.token_scopes {
            if let Some(c) = self.scopes.get_mut(scope) {
                c.tokens = c.tokens.saturating_add(tokens);
            }
        }
    }

    fn reap(&mut self, now_ms: u64, ttl_ms: u64) {
        if now_ms < self.next_reap_ms {
            return;
        }
        self.next_reap_ms = now_ms.saturating_add((ttl_ms / 4).max(1_000));
        let expired: Vec<ReservationId> = self
            .reservations
            .iter()
            .filter(|(_, h)| h.reserved_at_ms.saturating_add(ttl_ms) <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(held) = self.reservations.remove(&id) {
                tracing::warn!(
                    reservation = %id,
                    "releasing a budget reservation that was never settled"
                );
                self.release(&held, 0, 0);
            }
        }
    }
}

#[derive(Debug)]
pub struct MemoryCounters {
    state: Mutex<State>,
    reservation_ttl_ms: u64,
}

impl Default for MemoryCounters {
    fn default() -> Self {
        MemoryCounters::new()
    }
}

impl MemoryCounters {
    pub fn new() -> MemoryCounters {
        MemoryCounters {
            state: Mutex::new(State {
                next_id: 1,
                ..State::default()
            }),
            reservation_ttl_ms: DEFAULT_RESERVATION_TTL_MS,
        }
    }

    /// How long an unsettled reservation may hold budget before it is released.
    pub fn with_reservation_ttl_ms(mut self, ttl_ms: u64) -> MemoryCounters {
        self.reservation_ttl_ms = ttl_ms.max(1);
        self
    }

    /// Reservations not yet settled.
    pub fn reservations_in_flight(&self) -> usize {
        self.lock().reservations.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock and every critical section leaves the
        // map consistent, so a poisoned lock (a panic elsewhere on that thread) is safe to
        // keep using.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl UsageCounters for MemoryCounters {
    fn reserve(&self, request: &ReserveRequest) -> Result<ReservationId, ReserveError> {
        let estimate = usd_to_nanos(request.estimated_cost_usd);
        let mut st = self.lock();
        st.reap(request.now_ms, self.reservation_ttl_ms);

        // Pass 1: roll windows and check everything; nothing is counted yet.
        for limit in &request.limits {
            let c = st
                .scopes
                .entry(limit.scope.clone())
                .or_insert_with(|| Counter::new(limit.window));
            c.roll(limit.window);
            let used = match limit.kind {
                LimitKind::Requests => c.requests,
                LimitKind::Tokens => c.tokens,
            };
            if used >= limit.max {
                let (scope, max, window) = (limit.scope.clone(), limit.max, c.window);
                return Err(ReserveError::Denied(match limit.kind {
                    LimitKind::Requests => Denied::Requests {
                        scope,
                        used,
                        max,
                        window,
                    },
                    LimitKind::Tokens => Denied::Tokens {
                        scope,
                        used,
                        max,
                        window,
                    },
                }));
            }
        }
        for budget in &request.budgets {
            let max = usd_to_nanos(budget.max_usd);
            let c = st
                .scopes
                .entry(budget.scope.clone())
                .or_insert_with(|| Counter::new(budget.window));
            c.roll(budget.window);
            let committed = c.spent.saturating_add(c.reserved);
            if committed >= max || committed.saturating_add(estimate) > max {
                return Err(ReserveError::Denied(Denied::Budget {
                    scope: budget.scope.clone(),
                    spent_usd: nanos_to_usd(c.spent),
                    reserved_usd: nanos_to_usd(c.reserved),
                    max_usd: budget.max_usd,
                    window: c.window,
                }));
            }
        }

        // Pass 2: everything passed; count and reserve.
        let mut token_scopes = Vec::new();
        for limit in &request.limits {
            match limit.kind {
                LimitKind::Requests => {
                    if let Some(c) = st.scopes.get_mut(&limit.scope) {
                        c.requests = c.requests.saturating_add(1);
                    }
                }
                LimitKind::Tokens => token_scopes.push(limit.scope.clone()),
            }
        }
        for budget in &request.budgets {
            if let Some(c) = st.scopes.get_mut(&budget.scope) {
                c.reserved = c.reserved.saturating_add(estimate);
            }
        }
        let id = ReservationId(st.next_id);
        st.next_id = st.next_id.wrapping_add(1);
        if !request.budgets.is_empty() || !token_scopes.is_empty() {
            st.reservations.insert(
                id,
                Held {
                    reserved_at_ms: request.now_ms,
                    amount: estimate,
                    budgets: request.budgets.iter().map(|b| b.scope.clone()).collect(),
                    token_scopes,
                },
            );
        }
        Ok(id)
    }

    fn settle(&self, id: ReservationId, actual_cost_usd: f64, actual_tokens: u64) {
        let charge = usd_to_nanos(actual_cost_usd);
        let mut st = self.lock();
        if let Some(held) = st.reservations.remove(&id) {
            st.release(&held, charge, actual_tokens);
        }
    }

    fn usage(&self, scope: &ScopeKey, current: Window) -> ScopeUsage {
        let mut c = self
            .lock()
            .scopes
            .get(scope)
            .copied()
            .unwrap_or_else(|| Counter::new(current));
        c.roll(current);
        ScopeUsage {
            window: c.window,
            requests: c.requests,
            tokens: c.tokens,
            spent_usd: nanos_to_usd(c.spent),
            reserved_usd: nanos_to_usd(c.reserved),
        }
    }

    fn snapshot(&self) -> CountersSnapshot {
        let st = self.lock();
        let mut scopes: Vec<ScopeRecord> = st
            .scopes
            .iter()
            .filter(|(_, c)| c.requests > 0 || c.tokens > 0 || c.spent > 0)
            .map(|(scope, c)| ScopeRecord {
                scope: scope.clone(),
                window: c.window,
                requests: c.requests,
                tokens: c.tokens,
                spent_nanos: c.spent,
            })
            .collect();
        drop(st);
        scopes.sort_by(|a, b| a.scope.cmp(&b.scope));
        CountersSnapshot {
            version: CountersSnapshot::VERSION,
            scopes,
        }
    }

    fn restore(&self, snapshot: CountersSnapshot) {
        let mut st = self.lock();
        for rec in snapshot.scopes {
            let c = st
                .scopes
                .entry(rec.scope)
                .or_insert_with(|| Counter::new(rec.window));
            c.window = rec.window;
            c.requests = rec.requests;
            c.tokens = rec.tokens;
            c.spent = rec.spent_nanos;
        }
    }

    fn reset(&self, scope: &ScopeKey) {
        if let Some(c) = self.lock().scopes.get_mut(scope) {
            c.requests = 0;
            c.tokens = 0;
            c.spent = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{BudgetCheck, LimitCheck, Owner};

    const W1: Window = Window {
        start_ms: 0,
        end_ms: 1_000,
    };
    const W2: Window = Window {
        start_ms: 1_000,
        end_ms: 2_000,
    };

    fn budget_scope() -> ScopeKey {
        ScopeKey::budget(Owner::VirtualKey("v"), "b")
    }

    fn req(window: Window, estimate: f64, max_usd: f64, max_requests: u64) -> ReserveRequest {
        ReserveRequest {
            limits: vec![
                LimitCheck {
                    scope: ScopeKey::requests(Owner::VirtualKey("v")),
                    kind: LimitKind::Requests,
                    max: max_requests,
                    window,
                },
                LimitCheck {
                    scope: ScopeKey::tokens(Owner::VirtualKey("v")),
                    kind: LimitKind::Tokens,
                    max: 1_000,
                    window,
                },
            ],
            budgets: vec![BudgetCheck {
                scope: budget_scope(),
                max_usd,
                window,
            }],
            estimated_cost_usd: estimate,
            now_ms: window.start_ms,
        }
    }

    fn denied(r: Result<ReservationId, ReserveError>) -> Denied {
        match r {
            Err(ReserveError::Denied(d)) => d,
            other => panic!("expected denial, got {other:?}"),
        }
    }

    #[test]
    fn reserve_settle_and_deny() {
        let c = MemoryCounters::new();
        let a = c.reserve(&req(W1, 4.0, 10.0, 10)).unwrap();
        let b = c.reserve(&req(W1, 4.0, 10.0, 10)).unwrap();
        // 8 reserved; a third 4.0 would make 12 > 10.
        let d = denied(c.reserve(&req(W1, 4.0, 10.0, 10)));
        assert_eq!(
            d,
            Denied::Budget {
                scope: budget_scope(),
                spent_usd: 0.0,
                reserved_usd: 8.0,
                max_usd: 10.0,
                window: W1
            }
        );
        c.settle(a, 1.0, 100);
        c.settle(a, 1.0, 100); // second settle is a no-op
        let u = c.usage(&budget_scope(), W1);
        assert_eq!((u.spent_usd, u.reserved_usd), (1.0, 4.0));
        assert_eq!(
            c.usage(&ScopeKey::tokens(Owner::VirtualKey("v")), W1)
                .tokens,
            100
        );
        assert_eq!(
            c.usage(&ScopeKey::requests(Owner::VirtualKey("v")), W1)
                .requests,
            2,
            "the denied request was not counted"
        );
        c.settle(b, 0.0, 0);
        assert_eq!(c.reservations_in_flight(), 0);
        assert_eq!(c.usage(&budget_scope(), W1).reserved_usd, 0.0);
    }

    #[test]
    fn exhausted_budget_denies_even_free_requests() {
        let c = MemoryCounters::new();
        let id = c.reserve(&req(W1, 1.0, 1.0, 10)).unwrap();
        c.settle(id, 1.0, 0);
        assert!(matches!(
            denied(c.reserve(&req(W1, 0.0, 1.0, 10))),
            Denied::Budget { .. }
        ));
        // A zero budget blocks everything.
        let z = MemoryCounters::new();
        assert!(matches!(
            denied(z.reserve(&req(W1, 0.0, 0.0, 10))),
            Denied::Budget { .. }
        ));
    }

    #[test]
    fn request_and_token_limits() {
        let c = MemoryCounters::new();
        for _ in 0..2 {
            let id = c.reserve(&req(W1, 0.0, 10.0, 2)).unwrap();
            c.settle(id, 0.0, 600);
        }
        assert_eq!(
            denied(c.reserve(&req(W1, 0.0, 10.0, 2))),
            Denied::Requests {
                scope: ScopeKey::requests(Owner::VirtualKey("v")),
                used: 2,
                max: 2,
                window: W1
            }
        );
        assert_eq!(
            denied(c.reserve(&req(W1, 0.0, 10.0, 5))),
            Denied::Tokens {
                scope: ScopeKey::tokens(Owner::VirtualKey("v")),
                used: 1_200,
                max: 1_000,
                window: W1
            }
        );
        // The next window starts fresh.
        assert!(c.reserve(&req(W2, 0.0, 10.0, 2)).is_ok());
    }

    #[test]
    fn rollover_keeps_in_flight_reservations() {
        let c = MemoryCounters::new();
        let old = c.reserve(&req(W1, 6.0, 10.0, 10)).unwrap();
        // New window: spend resets, but the 6.0 in flight still counts.
        assert!(matches!(
            denied(c.reserve(&req(W2, 5.0, 10.0, 10))),
            Denied::Budget {
                reserved_usd: 6.0,
                spent_usd: 0.0,
                window: W2,
                ..
            }
        ));
        c.settle(old, 2.0, 0);
        let u = c.usage(&budget_scope(), W2);
        assert_eq!((u.spent_usd, u.reserved_usd), (2.0, 0.0));
        // A late caller still in W1 counts in the current window, never rolls back.
        let late = c.reserve(&req(W1, 1.0, 10.0, 10)).unwrap();
        assert_eq!(c.usage(&budget_scope(), W2).reserved_usd, 1.0);
        c.settle(late, 1.0, 0);
        assert_eq!(c.usage(&budget_scope(), W2).spent_usd, 3.0);
    }

    #[test]
    fn usage_of_a_stale_counter_is_zero_in_the_current_window() {
        let c = MemoryCounters::new();
        let id = c.reserve(&req(W1, 1.0, 10.0, 10)).unwrap();
        c.settle(id, 1.0, 5);
        let u = c.usage(&budget_scope(), W2);
        assert_eq!(u.window, W2);
        assert_eq!(u.spent_usd, 0.0);
        let unknown = c.usage(&ScopeKey::budget(Owner::Team("t"), "x"), W1);
        assert_eq!(unknown.window, W1);
        assert_eq!(unknown.requests, 0);
    }

    #[test]
    fn reconfigured_window_keeps_usage() {
        let mut counter = Counter::new(Window {
            start_ms: 100,
            end_ms: 200,
        });
        counter.spent = 7;
        // Widened to a window enclosing the old one (1d → 1M).
        counter.roll(Window {
            start_ms: 0,
            end_ms: 1_000,
        });
        assert_eq!(counter.spent, 7);
        assert_eq!(counter.window.end_ms, 1_000);
        // Same start, shorter end.
        counter.roll(Window {
            start_ms: 0,
            end_ms: 500,
        });
        assert_eq!((counter.spent, counter.window.end_ms), (7, 500));
        // An earlier, non-enclosing window (stale caller) changes nothing.
        counter.roll(W2);
        counter.spent = 3;
        counter.roll(W1);
        assert_eq!((counter.spent, counter.window), (3, W2));
    }

    #[test]
    fn reset_and_reap() {
        let c = MemoryCounters::new().with_reservation_ttl_ms(1_000);
        let id = c.reserve(&req(W1, 2.0, 10.0, 10)).unwrap();
        c.settle(id, 2.0, 0);
        let _forgotten = c.reserve(&req(W1, 3.0, 10.0, 10)).unwrap();
        c.reset(&budget_scope());
        let u = c.usage(&budget_scope(), W1);
        assert_eq!(
            (u.spent_usd, u.reserved_usd),
            (0.0, 3.0),
            "reset keeps in-flight"
        );
        // A reserve well after the TTL releases the forgotten reservation.
        let mut later = req(W1, 0.0, 10.0, 10);
        later.now_ms = 5_000;
        let id = c.reserve(&later).unwrap();
        c.settle(id, 0.0, 0);
        assert_eq!(c.usage(&budget_scope(), W1).reserved_usd, 0.0);
        assert_eq!(c.reservations_in_flight(), 0);
    }

    #[test]
    fn snapshot_restore_round_trip() {
        let c = MemoryCounters::new();
        let id = c.reserve(&req(W1, 2.0, 10.0, 10)).unwrap();
        c.settle(id, 1.25, 42);
        let _in_flight = c.reserve(&req(W1, 2.0, 10.0, 10)).unwrap();
        let snap = c.snapshot();
        let json = serde_json::to_string(&snap).unwrap();
        let back: CountersSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snap);
        let fresh = MemoryCounters::new();
        fresh.restore(back);
        assert_eq!(fresh.snapshot(), snap);
        let u = fresh.usage(&budget_scope(), W1);
        assert_eq!((u.spent_usd, u.reserved_usd), (1.25, 0.0));
        assert_eq!(
            fresh
                .usage(&ScopeKey::requests(Owner::VirtualKey("v")), W1)
                .requests,
            2
        );
        assert!(json.contains("\"budget:vk/v:b\""));
    }
}
