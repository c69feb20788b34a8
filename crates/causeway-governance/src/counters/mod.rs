//! Usage counters: request and token counts per rate-limit window, and spend per budget
//! window, with reservations so concurrent requests cannot overspend. The trait is shaped
//! for a networked backend (Redis with one atomic Lua script per operation): every
//! operation is one round trip whose inputs — scopes, windows, limits, the current time —
//! are all in the call, and the backend keeps no policy and reads no clock.

mod memory;

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::calendar::Window;

pub use memory::MemoryCounters;

/// Money is counted in integer nano-dollars so sums are exact (no float drift between
/// reserve and settle) and map to Redis `INCRBY`; `u64` nano-dollars cap at ~18 billion USD.
pub type Nanos = u64;

pub fn usd_to_nanos(usd: f64) -> Nanos {
    if usd.is_nan() || usd <= 0.0 {
        0
    } else {
        // Saturating float-to-int `as` is the intent: absurd amounts clamp to u64::MAX.
        (usd * 1e9).round() as Nanos
    }
}

pub fn nanos_to_usd(n: Nanos) -> f64 {
    n as f64 / 1e9
}

/// Names one counter: `budget:<owner>:<budget-id>`, `requests:<owner>` or `tokens:<owner>`,
/// owners being `customer/<id>`, `team/<id>`, `vk/<id>` or `vk/<id>/provider/<name>`.
/// Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeKey(Arc<str>);

// By hand: serde's `Arc` support needs its `rc` feature, which the workspace does not enable.
impl Serialize for ScopeKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ScopeKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|s| ScopeKey(s.into()))
    }
}

/// Who a limit or budget belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    Customer(&'a str),
    Team(&'a str),
    VirtualKey(&'a str),
    ProviderConfig { vk_id: &'a str, provider: &'a str },
}

impl fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Customer(id) => write!(f, "customer/{id}"),
            Owner::Team(id) => write!(f, "team/{id}"),
            Owner::VirtualKey(id) => write!(f, "vk/{id}"),
            Owner::ProviderConfig { vk_id, provider } => {
                write!(f, "vk/{vk_id}/provider/{}", provider.to_ascii_lowercase())
            }
        }
    }
}

impl ScopeKey {
    pub fn budget(owner: Owner<'_>, budget_id: &str) -> ScopeKey {
        ScopeKey(format!("budget:{owner}:{budget_id}").into())
    }

    pub fn requests(owner: Owner<'_>) -> ScopeKey {
        ScopeKey(format!("requests:{owner}").into())
    }

    pub fn tokens(owner: Owner<'_>) -> ScopeKey {
        ScopeKey(format!("tokens:{owner}").into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// Check `requests < max`, then count this request.
    Requests,
    /// Check `tokens < max`; the tokens are counted at settle.
    Tokens,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitCheck {
    pub scope: ScopeKey,
    pub kind: LimitKind,
    pub max: u64,
    pub window: Window,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BudgetCheck {
    pub scope: ScopeKey,
    pub max_usd: f64,
    pub window: Window,
}

/// One atomic, all-or-nothing reservation: limits are checked in order, then budgets in
/// order; the first that fails is reported and nothing is counted. Scopes must be distinct.
#[derive(Debug, Clone, PartialEq)]
pub struct ReserveRequest {
    pub limits: Vec<LimitCheck>,
    pub budgets: Vec<BudgetCheck>,
    /// Reserved against every budget until settle.
    pub estimated_cost_usd: f64,
    pub now_ms: u64,
}

impl ReserveRequest {
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty() && self.budgets.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReservationId(pub u64);

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The first check that failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Denied {
    Requests {
        scope: ScopeKey,
        used: u64,
        max: u64,
        window: Window,
    },
    Tokens {
        scope: ScopeKey,
        used: u64,
        max: u64,
        window: Window,
    },
    Budget {
        scope: ScopeKey,
        spent_usd: f64,
        reserved_usd: f64,
        max_usd: f64,
        window: Window,
    },
}

impl Denied {
    pub fn scope(&self) -> &ScopeKey {
        match self {
            Denied::Requests { scope, .. }
            | Denied::Tokens { scope, .. }
            | Denied::Budget { scope, .. } => scope,
        }
    }

    pub fn window(&self) -> Window {
        match self {
            Denied::Requests { window, .. }
            | Denied::Tokens { window, .. }
            | Denied::Budget { window, .. } => *window,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReserveError {
    #[error("limit reached for {}", .0.scope())]
    Denied(Denied),
    /// The backend could not be asked (e.g. Redis down): callers fail closed.
    #[error("usage counters unavailable: {0}")]
    Unavailable(String),
}

/// What one counter holds in its current window (for the read-only API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopeUsage {
    pub window: Window,
    pub requests: u64,
    pub tokens: u64,
    pub spent_usd: f64,
    /// Estimates of calls in flight, not yet settled.
    pub reserved_usd: f64,
}

/// Persisted per-window usage (not in-flight reservations: after a restart nothing is in
/// flight any more, and restoring them would hold budget forever).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeRecord {
    pub scope: ScopeKey,
    pub window: Window,
    pub requests: u64,
    pub tokens: u64,
    pub spent_nanos: Nanos,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersSnapshot {
    pub version: u32,
    /// Sorted by scope, so equal states serialize identically.
    pub scopes: Vec<ScopeRecord>,
}

impl CountersSnapshot {
    pub const VERSION: u32 = 1;
}

/// Rate-limit and budget counters.
///
/// Windows: each counter remembers the window it counts in. A call passing a later window
/// starts a new one (counts and spend to zero; in-flight reservations carry over, since
/// those calls will be charged when they settle); a call passing an earlier window (a
/// caller that read the clock just before a rollover) counts in the current one; a window
/// with the same start but another end, or one that encloses the current (the duration was
/// reconfigured), is adopted keeping the counts.
///
/// Settling charges the actual cost and tokens to each counter's current window and
/// releases exactly what was reserved, even if the window rolled over in between.
pub trait UsageCounters: Send + Sync {
    /// Atomically checks every limit and budget and, only if all pass, counts the request
    /// against each request limit and reserves `estimated_cost_usd` against each budget.
    /// A budget passes when `spent + reserved < max` and `spent + reserved + estimate <= max`.
    fn reserve(&self, request: &ReserveRequest) -> Result<ReservationId, ReserveError>;

    /// Releases a reservation and charges what the call really cost: `actual_cost_usd` to
    /// each of its budgets, `actual_tokens` to each of its token limits. Unknown or expired
    /// ids are ignored, so settling twice is harmless. Called from `Drop`, so it must not
    /// block: a networked backend should queue the work.
    fn settle(&self, id: ReservationId, actual_cost_usd: f64, actual_tokens: u64);

    /// Usage of one counter as of `current` (the window the caller computes for now): a
    /// counter last used in an earlier window reports zero usage in `current`.
    fn usage(&self, scope: &ScopeKey, current: Window) -> ScopeUsage;

    fn snapshot(&self) -> CountersSnapshot;

    /// Replaces the usage of every scope in `snapshot`; other scopes and in-flight
    /// reservations are left alone.
    fn restore(&self, snapshot: CountersSnapshot);

    /// Zeroes the usage of one counter in its current window (`reset_budget_usage`).
    fn reset(&self, scope: &ScopeKey);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_keys() {
        assert_eq!(
            ScopeKey::budget(Owner::Team("eng"), "b1").as_str(),
            "budget:team/eng:b1"
        );
        assert_eq!(
            ScopeKey::requests(Owner::ProviderConfig {
                vk_id: "v",
                provider: "OpenAI"
            })
            .as_str(),
            "requests:vk/v/provider/openai"
        );
        assert_eq!(
            ScopeKey::tokens(Owner::VirtualKey("v")).to_string(),
            "tokens:vk/v"
        );
        assert_eq!(
            ScopeKey::budget(Owner::Customer("c"), "b").as_str(),
            "budget:customer/c:b"
        );
    }

    #[test]
    fn nanos() {
        assert_eq!(usd_to_nanos(1.5), 1_500_000_000);
        assert_eq!(usd_to_nanos(-1.0), 0);
        assert_eq!(usd_to_nanos(f64::NAN), 0);
        assert_eq!(usd_to_nanos(f64::INFINITY), u64::MAX);
        assert_eq!(nanos_to_usd(2_500_000_000), 2.5);
    }
}
