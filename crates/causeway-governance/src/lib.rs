//! Governance policy core: virtual keys, teams, customers, budgets, rate limits, pricing and
//! usage counters, as pure functions and an in-memory counter backend. No HTTP and no
//! database: the server stores records, builds a [`GovernanceSnapshot`] after each write,
//! and calls [`authorize`] on every LLM call, then settles the returned reservation.
//! Nothing here reads the clock; every time-dependent function takes `now_ms`.

mod authorize;
pub mod calendar;
pub mod counters;
mod estimate;
mod model;
mod patterns;
mod pricing;
mod reservation;
mod snapshot;
mod validate;

pub use authorize::{
    AccessRequest, BudgetUsage, Grant, LimitUsage, Plan, UsageReport, VkLookup, authorize, plan,
    usage_report,
};
pub use calendar::{ResetDuration, Window, format_rfc3339, parse_rfc3339};
pub use counters::{
    CountersSnapshot, Denied, MemoryCounters, Owner, ReservationId, ReserveError, ReserveRequest,
    ScopeKey, ScopeUsage, UsageCounters,
};
pub use estimate::{DEFAULT_MAX_OUTPUT_TOKENS, Estimate, estimate_from_body};
pub use model::{
    BudgetConfig, BudgetInput, Customer, CustomerCreate, CustomerUpdate, ProviderConfig,
    ProviderConfigInput, RateLimitConfig, Team, TeamCreate, TeamUpdate, VirtualKey,
    VirtualKeyCreate, VirtualKeyUpdate, hash_virtual_key_value, virtual_key_value_hint,
};
pub use patterns::{PERMISSION_RESOURCES, is_known_permission, permits};
pub use pricing::{ModelPrice, PriceOverride, Pricing};
pub use reservation::{Reservation, settle};
pub use snapshot::{
    GovernanceSnapshot, customer_budget_scopes, is_expired, team_budget_scopes,
    virtual_key_budget_scopes,
};
pub use validate::{
    IdSource, Updated, apply_customer_update, apply_team_update, apply_virtual_key_update,
    build_customer, build_team, build_virtual_key, validate_budgets, validate_customer_create,
    validate_customer_update, validate_rate_limit, validate_team_create, validate_team_update,
    validate_virtual_key_create, validate_virtual_key_update,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    /// The snapshot lives in an `ArcSwap`, counters are shared, and a grant crosses `.await`
    /// points and task boundaries until it is settled.
    #[test]
    fn shared_types_are_thread_safe() {
        assert_send_sync::<GovernanceSnapshot>();
        assert_send_sync::<MemoryCounters>();
        assert_send_sync::<Pricing>();
        assert_send::<Grant>();
        assert_send::<Reservation>();
        assert_send::<Plan>();
    }
}
