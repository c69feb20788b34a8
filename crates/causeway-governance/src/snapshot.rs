//! The immutable governance state the request path reads: virtual keys indexed by id and by
//! value hash, teams and customers, with every pattern, duration and expiry parsed once
//! when the snapshot is built (the server swaps a new one in after each write). Stored data
//! that fails to parse (it skipped validation) is logged here once and handled fail-closed.

use std::collections::HashMap;
use std::sync::Arc;

use crate::calendar::{DurationUse, ResetDuration, Window, parse_rfc3339};
use crate::counters::{LimitKind, Owner, ScopeKey};
use crate::model::{
    BudgetConfig, Customer, RateLimitConfig, Team, VirtualKey, hash_virtual_key_value,
};
use crate::patterns::{ModelList, key_filter};

/// Whether a key's `expires_at` has passed. An unparseable value counts as expired.
pub fn is_expired(vk: &VirtualKey, now_ms: u64) -> bool {
    expiry_ms(vk).is_some_and(|at| i128::from(now_ms) >= i128::from(at))
}

fn expiry_ms(vk: &VirtualKey) -> Option<i64> {
    let s = vk.expires_at.as_deref().filter(|s| !s.is_empty())?;
    Some(parse_rfc3339(s).unwrap_or(i64::MIN))
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledBudget {
    pub id: String,
    pub max_usd: f64,
    pub label: String,
    pub calendar_aligned: bool,
    duration: Option<ResetDuration>,
    anchor_ms: u64,
}

impl CompiledBudget {
    pub fn window(&self, now_ms: u64) -> Window {
        self.duration.map_or(Window::FOREVER, |d| {
            d.window(now_ms, self.calendar_aligned, self.anchor_ms)
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledLimit {
    pub kind: LimitKind,
    pub max: u64,
    pub label: String,
    duration: Option<ResetDuration>,
}

impl CompiledLimit {
    /// Rate-limit windows are calendar-aligned in UTC (`1m` = each clock minute).
    pub fn window(&self, now_ms: u64) -> Window {
        self.duration
            .map_or(Window::FOREVER, |d| d.window(now_ms, true, 0))
    }
}

#[derive(Debug)]
pub(crate) struct CompiledProvider {
    pub name: String,
    pub allowed: ModelList,
    pub blacklisted: ModelList,
    /// A stored blacklist pattern does not compile: block every model of this provider
    /// rather than let the one it was meant to block through.
    pub blacklist_broken: bool,
    pub key_ids: Option<Vec<String>>,
    pub budgets: Vec<CompiledBudget>,
    pub limits: Vec<CompiledLimit>,
}

#[derive(Debug)]
pub(crate) struct VkEntry {
    pub vk: VirtualKey,
    pub expires_at_ms: Option<i64>,
    pub all_providers: bool,
    /// Keyed by lowercase provider name.
    pub providers: HashMap<String, CompiledProvider>,
    pub budgets: Vec<CompiledBudget>,
    pub limits: Vec<CompiledLimit>,
}

#[derive(Debug)]
pub(crate) struct OwnerEntry {
    pub name: String,
    pub customer_id: Option<String>,
    pub budgets: Vec<CompiledBudget>,
}

fn compile_budgets(
    budgets: &[BudgetConfig],
    owner_created_at: u64,
    what: &str,
) -> Vec<CompiledBudget> {
    budgets
        .iter()
        .map(|b| {
            let duration = ResetDuration::parse(&b.reset_duration, DurationUse::Budget);
            if duration.is_none() {
                tracing::warn!(
                    owner = what,
                    budget = %b.id,
                    reset_duration = %b.reset_duration,
                    "stored budget has an invalid reset_duration; it will never reset"
                );
            }
            CompiledBudget {
                id: b.id.clone(),
                max_usd: b.max_limit,
                label: b.reset_duration.clone(),
                calendar_aligned: b.calendar_aligned,
                duration,
                anchor_ms: if b.created_at > 0 {
                    b.created_at
                } else {
                    owner_created_at
                },
            }
        })
        .collect()
}

fn compile_limits(rl: Option<&RateLimitConfig>, what: &str) -> Vec<CompiledLimit> {
    let Some(rl) = rl else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (kind, max, duration) in [
        (
            LimitKind::Requests,
            rl.request_max_limit,
            rl.request_reset_duration.as_deref(),
        ),
        (
            LimitKind::Tokens,
            rl.token_max_limit,
            rl.token_reset_duration.as_deref(),
        ),
    ] {
        let Some(max) = max else { continue };
        let label = duration.unwrap_or_default().to_owned();
        let parsed = duration.and_then(|d| ResetDuration::parse(d, DurationUse::RateLimit));
        if parsed.is_none() {
            tracing::warn!(
                owner = what,
                reset_duration = %label,
                "stored rate limit has an invalid reset duration; it will never reset"
            );
        }
        out.push(CompiledLimit {
            kind,
            max,
            label,
            duration: parsed,
        });
    }
    out
}

fn compile_vk(vk: VirtualKey) -> VkEntry {
    let what = format!("virtual key {}", vk.id);
    let mut providers = HashMap::new();
    for pc in &vk.provider_configs {
        let (allowed, broken_allow) = ModelList::compile(&pc.allowed_models);
        let (blacklisted, broken_block) = ModelList::compile(&pc.blacklisted_models);
        for p in broken_allow.iter().chain(&broken_block) {
            tracing::warn!(
                virtual_key = %vk.id,
                provider = %pc.provider,
                pattern = %p,
                "stored model pattern does not compile"
            );
        }
        let key = pc.provider.to_ascii_lowercase();
        if providers.contains_key(&key) {
            tracing::warn!(virtual_key = %vk.id, provider = %pc.provider,
                "duplicate provider config; the first one applies");
            continue;
        }
        providers.insert(
            key,
            CompiledProvider {
                name: pc.provider.clone(),
                allowed,
                blacklisted,
                blacklist_broken: !broken_block.is_empty(),
                key_ids: key_filter(&pc.key_ids),
                budgets: compile_budgets(&pc.budgets, vk.created_at, &what),
                limits: compile_limits(pc.rate_limit.as_ref(), &what),
            },
        );
    }
    let expires_at_ms = expiry_ms(&vk);
    if expires_at_ms == Some(i64::MIN) {
        tracing::warn!(virtual_key = %vk.id, "stored expires_at does not parse; the key is treated as expired");
    }
    VkEntry {
        all_providers: vk
            .allow_all_providers
            .unwrap_or(vk.provider_configs.is_empty()),
        budgets: compile_budgets(&vk.budgets, vk.created_at, &what),
        limits: compile_limits(vk.rate_limit.as_ref(), &what),
        expires_at_ms,
        providers,
        vk,
    }
}

#[derive(Debug, Default)]
pub struct GovernanceSnapshot {
    by_id: HashMap<String, Arc<VkEntry>>,
    by_hash: HashMap<String, Arc<VkEntry>>,
    pub(crate) teams: HashMap<String, OwnerEntry>,
    pub(crate) customers: HashMap<String, OwnerEntry>,
    team_records: HashMap<String, Team>,
    customer_records: HashMap<String, Customer>,
}

impl GovernanceSnapshot {
    pub fn new(
        virtual_keys: Vec<VirtualKey>,
        teams: Vec<Team>,
        customers: Vec<Customer>,
    ) -> GovernanceSnapshot {
        let mut snap = GovernanceSnapshot::default();
        for c in customers {
            let what = format!("customer {}", c.id);
            snap.customers.insert(
                c.id.clone(),
                OwnerEntry {
                    name: c.name.clone(),
                    customer_id: None,
                    budgets: compile_budgets(&c.budgets, c.created_at, &what),
                },
            );
            snap.customer_records.insert(c.id.clone(), c);
        }
        for t in teams {
            let what = format!("team {}", t.id);
            if let Some(c) = &t.customer_id
                && !snap.customers.contains_key(c)
            {
                tracing::warn!(team = %t.id, customer = %c, "team refers to a missing customer; its budgets are not enforced");
            }
            snap.teams.insert(
                t.id.clone(),
                OwnerEntry {
                    name: t.name.clone(),
                    customer_id: t.customer_id.clone(),
                    budgets: compile_budgets(&t.budgets, t.created_at, &what),
                },
            );
            snap.team_records.insert(t.id.clone(), t);
        }
        for vk in virtual_keys {
            if let Some(t) = &vk.team_id
                && !snap.teams.contains_key(t)
            {
                tracing::warn!(virtual_key = %vk.id, team = %t, "virtual key refers to a missing team");
            }
            if let Some(c) = &vk.customer_id
                && !snap.customers.contains_key(c)
            {
                tracing::warn!(virtual_key = %vk.id, customer = %c, "virtual key refers to a missing customer");
            }
            let entry = Arc::new(compile_vk(vk));
            let (id, hash) = (
                entry.vk.id.clone(),
                entry.vk.value_hash.to_ascii_lowercase(),
            );
            if let Some(old) = snap.by_hash.insert(hash, Arc::clone(&entry))
                && old.vk.id != id
            {
                tracing::warn!(virtual_key = %id, other = %old.vk.id, "two virtual keys share a value hash; the later one wins");
            }
            snap.by_id.insert(id, entry);
        }
        snap
    }

    pub fn empty() -> GovernanceSnapshot {
        GovernanceSnapshot::default()
    }

    pub(crate) fn entry_by_id(&self, id: &str) -> Option<&Arc<VkEntry>> {
        self.by_id.get(id)
    }

    pub(crate) fn entry_by_value(&self, value: &str) -> Option<&Arc<VkEntry>> {
        self.by_hash.get(&hash_virtual_key_value(value))
    }

    pub fn virtual_key(&self, id: &str) -> Option<&VirtualKey> {
        self.by_id.get(id).map(|e| &e.vk)
    }

    /// Whether a virtual key may use a provider at all (for model listings); `None` when the
    /// key does not exist. Model rules still apply per request.
    pub fn provider_allowed(&self, vk: crate::VkLookup<'_>, provider: &str) -> Option<bool> {
        let entry = match vk {
            crate::VkLookup::ByValue(v) => self.entry_by_value(v),
            crate::VkLookup::ById(id) => self.entry_by_id(id),
        }?;
        Some(entry.all_providers || entry.providers.contains_key(&provider.to_ascii_lowercase()))
    }

    /// Looks a raw `sk-bf-…` value up by its hash.
    pub fn virtual_key_by_value(&self, value: &str) -> Option<&VirtualKey> {
        self.entry_by_value(value).map(|e| &e.vk)
    }

    pub fn virtual_keys(&self) -> impl Iterator<Item = &VirtualKey> {
        self.by_id.values().map(|e| &e.vk)
    }

    pub fn team(&self, id: &str) -> Option<&Team> {
        self.team_records.get(id)
    }

    pub fn customer(&self, id: &str) -> Option<&Customer> {
        self.customer_records.get(id)
    }

    pub fn teams(&self) -> impl Iterator<Item = &Team> {
        self.team_records.values()
    }

    pub fn customers(&self) -> impl Iterator<Item = &Customer> {
        self.customer_records.values()
    }
}

/// Counter scopes of a key's budgets, its provider configs' included (for
/// `reset_budget_usage`).
pub fn virtual_key_budget_scopes(vk: &VirtualKey) -> Vec<ScopeKey> {
    let mut out: Vec<ScopeKey> = vk
        .budgets
        .iter()
        .map(|b| ScopeKey::budget(Owner::VirtualKey(&vk.id), &b.id))
        .collect();
    for pc in &vk.provider_configs {
        let owner = Owner::ProviderConfig {
            vk_id: &vk.id,
            provider: &pc.provider,
        };
        out.extend(pc.budgets.iter().map(|b| ScopeKey::budget(owner, &b.id)));
    }
    out
}

pub fn team_budget_scopes(team: &Team) -> Vec<ScopeKey> {
    team.budgets
        .iter()
        .map(|b| ScopeKey::budget(Owner::Team(&team.id), &b.id))
        .collect()
}

pub fn customer_budget_scopes(customer: &Customer) -> Vec<ScopeKey> {
    customer
        .budgets
        .iter()
        .map(|b| ScopeKey::budget(Owner::Customer(&customer.id), &b.id))
        .collect()
}
