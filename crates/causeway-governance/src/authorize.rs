//! The governance decision for one LLM call, in Bifrost's order: the key exists → is
//! active → has not expired → may use the provider → may use the model → rate limits →
//! budgets (customer → team → key → provider config). Limits and budgets are checked and
//! reserved in one atomic counter operation, so a granted request already holds its slot
//! and its estimated cost; the caller settles the [`Reservation`] after the call.
//!
//! [`plan`] does everything that needs no counters and yields the [`ReserveRequest`]; an
//! async caller (a networked counter backend) can send that itself and finish with
//! [`Plan::into_grant`]. [`authorize`] is the two steps with a synchronous backend.

use std::collections::HashMap;
use std::sync::Arc;

use causeway_core::{ErrorClass, GatewayError};
use serde::Serialize;

use crate::calendar::format_rfc3339;
use crate::counters::{
    BudgetCheck, Denied, LimitCheck, LimitKind, Owner, ReservationId, ReserveError, ReserveRequest,
    ScopeKey, UsageCounters,
};
use crate::estimate::Estimate;
use crate::pricing::Pricing;
use crate::reservation::Reservation;
use crate::snapshot::{CompiledBudget, CompiledLimit, GovernanceSnapshot, OwnerEntry, VkEntry};

/// How the caller identified its virtual key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VkLookup<'a> {
    /// The raw `sk-bf-…` value (header or bearer token); looked up by its hash.
    ByValue(&'a str),
    /// The key id (from a verified virtual-key JWT).
    ById(&'a str),
}

/// One LLM call to decide on.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    pub vk: VkLookup<'a>,
    pub provider: &'a str,
    pub model: &'a str,
    pub estimate: Estimate,
    pub now_ms: u64,
}

/// A granted call.
#[derive(Debug)]
pub struct Grant {
    pub vk_id: String,
    pub vk_name: String,
    pub team_id: Option<String>,
    pub customer_id: Option<String>,
    /// The provider keys this call may use; `None` = any.
    pub allowed_key_ids: Option<Vec<String>>,
    /// The key asks for no request/response content in the logs.
    pub disable_content_logging: bool,
    pub reservation: Reservation,
}

/// What a counter scope is, for error messages.
#[derive(Debug, Clone)]
struct ScopeLabel {
    scope: ScopeKey,
    owner: String,
    duration: String,
    /// Limited to this provider: another provider (a fallback) may still pass.
    provider_scoped: bool,
}

/// A decision that passed every check not needing counters.
#[derive(Debug)]
pub struct Plan {
    vk_id: String,
    vk_name: String,
    team_id: Option<String>,
    customer_id: Option<String>,
    allowed_key_ids: Option<Vec<String>>,
    disable_content_logging: bool,
    reserve: ReserveRequest,
    labels: Vec<ScopeLabel>,
}

fn access_denied(kind: &str, message: impl Into<String>, class: ErrorClass) -> GatewayError {
    GatewayError::new(403, class, message).with_type(kind)
}

fn vk_desc(entry: &VkEntry) -> String {
    format!("virtual key '{}'", entry.vk.name)
}

/// Everything before the counters: identity, status, expiry, provider and model access,
/// and the list of limits and budgets to reserve against.
pub fn plan(
    snapshot: &GovernanceSnapshot,
    pricing: &Pricing,
    request: &AccessRequest<'_>,
) -> Result<Plan, GatewayError> {
    let entry = match request.vk {
        VkLookup::ByValue(v) => snapshot.entry_by_value(v),
        VkLookup::ById(id) => snapshot.entry_by_id(id),
    };
    let Some(entry) = entry else {
        return Err(access_denied(
            "virtual_key_not_found",
            "Virtual key not found",
            ErrorClass::PolicyAccessDenied,
        )
        .without_fallbacks());
    };
    let vk = &entry.vk;
    if !vk.is_active {
        return Err(access_denied(
            "virtual_key_blocked",
            "Virtual key is inactive",
            ErrorClass::PolicyAccessDenied,
        )
        .without_fallbacks());
    }
    if entry
        .expires_at_ms
        .is_some_and(|at| i128::from(request.now_ms) >= i128::from(at))
    {
        return Err(access_denied(
            "virtual_key_expired",
            "virtual key has expired",
            ErrorClass::PolicyAccessDenied,
        )
        .without_fallbacks());
    }
    let provider_config = entry.providers.get(&request.provider.to_ascii_lowercase());
    if provider_config.is_none() && !entry.all_providers {
        return Err(access_denied(
            "provider_blocked",
            format!(
                "Provider '{}' is not allowed for this virtual key",
                request.provider
            ),
            ErrorClass::PolicyProviderBlocked,
        ));
    }
    if let Some(pc) = provider_config
        && (pc.blacklist_broken
            || pc.blacklisted.matches(request.model)
            || !pc.allowed.matches(request.model))
    {
        return Err(access_denied(
            "model_blocked",
            format!(
                "Model '{}' is not allowed for this virtual key",
                request.model
            ),
            ErrorClass::PolicyModelBlocked,
        ));
    }

    let now = request.now_ms;
    let mut limits = Vec::new();
    let mut budgets = Vec::new();
    let mut labels = Vec::new();
    let mut add_limits =
        |owner: Owner<'_>, desc: &str, compiled: &[CompiledLimit], scoped: bool| {
            for l in compiled {
                let scope = match l.kind {
                    LimitKind::Requests => ScopeKey::requests(owner),
                    LimitKind::Tokens => ScopeKey::tokens(owner),
                };
                labels.push(ScopeLabel {
                    scope: scope.clone(),
                    owner: desc.to_owned(),
                    duration: l.label.clone(),
                    provider_scoped: scoped,
                });
                limits.push(LimitCheck {
                    scope,
                    kind: l.kind,
                    max: l.max,
                    window: l.window(now),
                });
            }
        };
    let vk_owner = Owner::VirtualKey(&vk.id);
    let vk_label = vk_desc(entry);
    add_limits(vk_owner, &vk_label, &entry.limits, false);
    let pc_label = provider_config.map(|pc| format!("provider '{}' of {vk_label}", pc.name));
    let pc_owner = provider_config.map(|pc| Owner::ProviderConfig {
        vk_id: &vk.id,
        provider: &pc.name,
    });
    if let (Some(pc), Some(owner), Some(desc)) = (provider_config, pc_owner, &pc_label) {
        add_limits(owner, desc, &pc.limits, true);
    }

    let (team, customer) = hierarchy(snapshot, entry);
    let mut add_budgets =
        |owner: Owner<'_>, desc: &str, compiled: &[CompiledBudget], scoped: bool| {
            for b in compiled {
                let scope = ScopeKey::budget(owner, &b.id);
                labels.push(ScopeLabel {
                    scope: scope.clone(),
                    owner: desc.to_owned(),
                    duration: b.label.clone(),
                    provider_scoped: scoped,
                });
                budgets.push(BudgetCheck {
                    scope,
                    max_usd: b.max_usd,
                    window: b.window(now),
                });
            }
        };
    if let Some((id, c)) = customer {
        add_budgets(
            Owner::Customer(id),
            &format!("customer '{}'", c.name),
            &c.budgets,
            false,
        );
    }
    if let Some((id, t)) = team {
        add_budgets(
            Owner::Team(id),
            &format!("team '{}'", t.name),
            &t.budgets,
            false,
        );
    }
    add_budgets(vk_owner, &vk_label, &entry.budgets, false);
    if let (Some(pc), Some(owner), Some(desc)) = (provider_config, pc_owner, &pc_label) {
        add_budgets(owner, desc, &pc.budgets, true);
    }

    let estimated_cost_usd = if budgets.is_empty() {
        0.0
    } else {
        pricing.estimate(request.provider, request.model, request.estimate)
    };
    let (team_id, customer_id) = (
        team.map(|(id, _)| id.to_owned()),
        customer.map(|(id, _)| id.to_owned()),
    );
    Ok(Plan {
        vk_id: vk.id.clone(),
        vk_name: vk.name.clone(),
        team_id,
        customer_id,
        allowed_key_ids: provider_config.and_then(|pc| pc.key_ids.clone()),
        disable_content_logging: vk.disable_content_logging == Some(true),
        reserve: ReserveRequest {
            limits,
            budgets,
            estimated_cost_usd,
            now_ms: now,
        },
        labels,
    })
}

/// A team or customer found in the snapshot, with its id.
type Found<'s> = Option<(&'s str, &'s OwnerEntry)>;

/// The key's team (if any) and the customer above it: the key's own customer, or its
/// team's. A key has a team or a customer, never both (validation enforces it).
fn hierarchy<'s>(snapshot: &'s GovernanceSnapshot, entry: &'s VkEntry) -> (Found<'s>, Found<'s>) {
    let lookup = |map: &'s HashMap<String, OwnerEntry>, id: &'s str| map.get(id).map(|e| (id, e));
    let team = entry
        .vk
        .team_id
        .as_deref()
        .and_then(|t| lookup(&snapshot.teams, t));
    let customer_id = match (&entry.vk.customer_id, team) {
        (Some(c), _) => Some(c.as_str()),
        (None, Some((_, t))) => t.customer_id.as_deref(),
        (None, None) => None,
    };
    let customer = customer_id.and_then(|c| lookup(&snapshot.customers, c));
    (team, customer)
}

impl Plan {
    /// What to send to the counters.
    pub fn reserve_request(&self) -> &ReserveRequest {
        &self.reserve
    }

    /// Whether the call needs the counters at all (no limits or budgets apply otherwise).
    pub fn needs_reservation(&self) -> bool {
        !self.reserve.is_empty()
    }

    /// Turns the counters' answer into a grant or the error the caller sees.
    pub fn into_grant(
        self,
        counters: Arc<dyn UsageCounters>,
        outcome: Result<ReservationId, ReserveError>,
    ) -> Result<Grant, GatewayError> {
        match outcome {
            Ok(id) => {
                let reservation = Reservation::held(id, counters, self.reserve.estimated_cost_usd);
                Ok(self.grant(reservation))
            }
            Err(ReserveError::Denied(denied)) => Err(self.denial(&denied)),
            Err(ReserveError::Unavailable(why)) => {
                tracing::error!(error = %why, "governance counters unavailable; refusing the request");
                Err(GatewayError::new(
                    503,
                    ErrorClass::GatewayInternal,
                    "governance counters are unavailable; the request was not sent",
                )
                .with_type("governance_unavailable")
                .without_fallbacks())
            }
        }
    }

    fn grant(self, reservation: Reservation) -> Grant {
        Grant {
            vk_id: self.vk_id,
            vk_name: self.vk_name,
            team_id: self.team_id,
            customer_id: self.customer_id,
            allowed_key_ids: self.allowed_key_ids,
            disable_content_logging: self.disable_content_logging,
            reservation,
        }
    }

    fn denial(&self, denied: &Denied) -> GatewayError {
        let label = self.labels.iter().find(|l| &l.scope == denied.scope());
        let owner = label.map_or_else(|| denied.scope().to_string(), |l| l.owner.clone());
        let duration = label.map_or("", |l| l.duration.as_str());
        let now = self.reserve.now_ms;
        let err = match denied {
            Denied::Requests {
                used, max, window, ..
            } => GatewayError::new(
                429,
                ErrorClass::PolicyRateLimited,
                format!(
                    "request limit exceeded for {owner} ({used} of {max} requests in the current {duration} window)"
                ),
            )
            .with_type("request_limited")
            .with_retry_after(window.seconds_until_reset(now)),
            Denied::Tokens {
                used, max, window, ..
            } => GatewayError::new(
                429,
                ErrorClass::PolicyRateLimited,
                format!(
                    "token limit exceeded for {owner} ({used} of {max} tokens in the current {duration} window)"
                ),
            )
            .with_type("token_limited")
            .with_retry_after(window.seconds_until_reset(now)),
            Denied::Budget {
                spent_usd,
                reserved_usd,
                max_usd,
                ..
            } => {
                let used = spent_usd + reserved_usd;
                let mut message = format!(
                    "budget exceeded for {owner} ({used:.2} of {max_usd:.2} USD in the current {duration} window)"
                );
                if used < *max_usd {
                    message.push_str(&format!(
                        "; this request may cost up to {:.4} USD",
                        self.reserve.estimated_cost_usd
                    ));
                }
                GatewayError::new(402, ErrorClass::PolicyBudgetExceeded, message)
                    .with_type("budget_exceeded")
            }
        };
        if label.is_some_and(|l| l.provider_scoped) {
            err
        } else {
            // Limits of the key, its team or its customer hold for every provider: a
            // fallback would be refused the same way.
            err.without_fallbacks()
        }
    }
}

/// Decides on one call and reserves its slot and estimated cost.
pub fn authorize(
    snapshot: &GovernanceSnapshot,
    counters: &Arc<dyn UsageCounters>,
    pricing: &Pricing,
    request: &AccessRequest<'_>,
) -> Result<Grant, GatewayError> {
    let plan = plan(snapshot, pricing, request)?;
    if !plan.needs_reservation() {
        return Ok(plan.grant(Reservation::none()));
    }
    let outcome = counters.reserve(&plan.reserve);
    plan.into_grant(Arc::clone(counters), outcome)
}

/// One budget's state, for `GET /api/governance/budgets` and the quota view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetUsage {
    pub scope: ScopeKey,
    pub owner: String,
    pub budget_id: String,
    pub reset_duration: String,
    pub calendar_aligned: bool,
    pub max_limit: f64,
    pub current_usage: f64,
    pub reserved: f64,
    pub window_start: String,
    pub resets_at: String,
}

/// One rate limit's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitUsage {
    pub scope: ScopeKey,
    pub owner: String,
    pub kind: LimitKind,
    pub max_limit: u64,
    pub current_usage: u64,
    pub reset_duration: String,
    pub resets_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageReport {
    pub budgets: Vec<BudgetUsage>,
    pub rate_limits: Vec<LimitUsage>,
}

impl UsageReport {
    fn add_budgets(
        &mut self,
        counters: &dyn UsageCounters,
        owner: Owner<'_>,
        desc: &str,
        budgets: &[CompiledBudget],
        now_ms: u64,
    ) {
        for b in budgets {
            let scope = ScopeKey::budget(owner, &b.id);
            let u = counters.usage(&scope, b.window(now_ms));
            self.budgets.push(BudgetUsage {
                owner: desc.to_owned(),
                budget_id: b.id.clone(),
                reset_duration: b.label.clone(),
                calendar_aligned: b.calendar_aligned,
                max_limit: b.max_usd,
                current_usage: u.spent_usd,
                reserved: u.reserved_usd,
                window_start: format_rfc3339(u.window.start_ms),
                resets_at: format_rfc3339(u.window.end_ms),
                scope,
            });
        }
    }

    fn add_limits(
        &mut self,
        counters: &dyn UsageCounters,
        owner: Owner<'_>,
        desc: &str,
        limits: &[CompiledLimit],
        now_ms: u64,
    ) {
        for l in limits {
            let scope = match l.kind {
                LimitKind::Requests => ScopeKey::requests(owner),
                LimitKind::Tokens => ScopeKey::tokens(owner),
            };
            let u = counters.usage(&scope, l.window(now_ms));
            self.rate_limits.push(LimitUsage {
                owner: desc.to_owned(),
                kind: l.kind,
                max_limit: l.max,
                current_usage: match l.kind {
                    LimitKind::Requests => u.requests,
                    LimitKind::Tokens => u.tokens,
                },
                reset_duration: l.label.clone(),
                resets_at: format_rfc3339(u.window.end_ms),
                scope,
            });
        }
    }
}

/// Current usage of an owner's budgets and rate limits (a key's includes its provider
/// configs'); `None` when the owner is unknown.
pub fn usage_report(
    snapshot: &GovernanceSnapshot,
    counters: &dyn UsageCounters,
    owner: Owner<'_>,
    now_ms: u64,
) -> Option<UsageReport> {
    let mut report = UsageReport::default();
    match owner {
        Owner::Customer(id) => {
            let c = snapshot.customers.get(id)?;
            let desc = format!("customer '{}'", c.name);
            report.add_budgets(counters, owner, &desc, &c.budgets, now_ms);
        }
        Owner::Team(id) => {
            let t = snapshot.teams.get(id)?;
            let desc = format!("team '{}'", t.name);
            report.add_budgets(counters, owner, &desc, &t.budgets, now_ms);
        }
        Owner::VirtualKey(id) => {
            let e = snapshot.entry_by_id(id)?;
            let desc = vk_desc(e);
            report.add_limits(counters, owner, &desc, &e.limits, now_ms);
            report.add_budgets(counters, owner, &desc, &e.budgets, now_ms);
            let mut providers: Vec<_> = e.providers.values().collect();
            providers.sort_by(|a, b| a.name.cmp(&b.name));
            for pc in providers {
                let pc_owner = Owner::ProviderConfig {
                    vk_id: id,
                    provider: &pc.name,
                };
                let pc_desc = format!("provider '{}' of {desc}", pc.name);
                report.add_limits(counters, pc_owner, &pc_desc, &pc.limits, now_ms);
                report.add_budgets(counters, pc_owner, &pc_desc, &pc.budgets, now_ms);
            }
        }
        Owner::ProviderConfig { vk_id, provider } => {
            let e = snapshot.entry_by_id(vk_id)?;
            let pc = e.providers.get(&provider.to_ascii_lowercase())?;
            let desc = format!("provider '{}' of {}", pc.name, vk_desc(e));
            let pc_owner = Owner::ProviderConfig {
                vk_id,
                provider: &pc.name,
            };
            report.add_limits(counters, pc_owner, &desc, &pc.limits, now_ms);
            report.add_budgets(counters, pc_owner, &desc, &pc.budgets, now_ms);
        }
    }
    Some(report)
}
