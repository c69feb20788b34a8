//! Validation of management-API bodies (400s with Bifrost's messages where it has them) and
//! the turning of valid bodies into records. Updates keep a budget's id — and so its usage —
//! when the body names the id or keeps the same `reset_duration`, as Bifrost does.
//! Nothing here checks that referenced teams, customers or provider keys exist: that needs
//! the store.

use causeway_core::GatewayError;

use crate::calendar::{DurationUse, ResetDuration, parse_rfc3339};
use crate::model::{
    BudgetConfig, BudgetInput, Customer, CustomerCreate, CustomerUpdate, ProviderConfig,
    ProviderConfigInput, RateLimitConfig, Team, TeamCreate, TeamUpdate, VirtualKey,
    VirtualKeyCreate, VirtualKeyUpdate, hash_virtual_key_value, virtual_key_value_hint,
};
use crate::patterns::{check_list, is_known_permission};

/// Generates ids for new budgets (the server passes its UUID generator).
pub type IdSource<'a> = &'a mut dyn FnMut() -> String;

/// A record after an update, plus what the caller must do besides storing it.
#[derive(Debug, Clone, PartialEq)]
pub struct Updated<T> {
    pub record: T,
    /// `reset_budget_usage` was set: reset the counters of every budget of the record
    /// (see [`crate::virtual_key_budget_scopes`]).
    pub reset_budget_usage: bool,
}

fn bad(message: impl Into<String>, param: &str) -> GatewayError {
    GatewayError::bad_request(message).with_param(param)
}

/// Folds the legacy singular `budget` into `budgets` (Bifrost ignored it silently, #5673).
fn budget_inputs(
    budgets: Option<&Vec<BudgetInput>>,
    budget: Option<&BudgetInput>,
    param: &str,
) -> Result<Option<Vec<BudgetInput>>, GatewayError> {
    match (budgets, budget) {
        (Some(_), Some(_)) => Err(bad(
            "Use either budget or budgets, not both (budget is the legacy single-budget form)",
            param,
        )),
        (Some(list), None) => Ok(Some(list.clone())),
        (None, Some(one)) => Ok(Some(vec![one.clone()])),
        (None, None) => Ok(None),
    }
}

/// Budgets: non-negative finite limits, parseable and distinct reset durations.
pub fn validate_budgets(budgets: &[BudgetInput]) -> Result<(), GatewayError> {
    let mut seen: Vec<ResetDuration> = Vec::with_capacity(budgets.len());
    for b in budgets {
        let Some(max) = b.max_limit else {
            return Err(bad("Budget max_limit is required", "budgets"));
        };
        if max.is_nan() || max.is_infinite() {
            return Err(bad("Budget max_limit must be a finite number", "budgets"));
        }
        if max < 0.0 {
            return Err(bad(
                format!("Budget max_limit cannot be negative: {max:.2}"),
                "budgets",
            ));
        }
        let Some(d) = ResetDuration::parse(&b.reset_duration, DurationUse::Budget) else {
            return Err(bad(
                format!("Invalid reset duration format: {}", b.reset_duration),
                "budgets",
            ));
        };
        if seen.contains(&d) {
            return Err(bad(
                format!("Duplicate reset_duration in budgets: {}", b.reset_duration),
                "budgets",
            ));
        }
        seen.push(d);
    }
    Ok(())
}

/// A limit needs both its max and its duration; durations use `m h d w M Y` (no `Q`).
pub fn validate_rate_limit(rl: &RateLimitConfig) -> Result<(), GatewayError> {
    for (kind, max, duration) in [
        (
            "request",
            rl.request_max_limit.is_some(),
            rl.request_reset_duration.as_deref(),
        ),
        (
            "token",
            rl.token_max_limit.is_some(),
            rl.token_reset_duration.as_deref(),
        ),
    ] {
        match (max, duration) {
            (true, None) => {
                return Err(bad(
                    format!("{kind}_reset_duration is required when {kind}_max_limit is set"),
                    "rate_limit",
                ));
            }
            (false, Some(_)) => {
                return Err(bad(
                    format!("{kind}_max_limit is required when {kind}_reset_duration is set"),
                    "rate_limit",
                ));
            }
            (true, Some(d)) if ResetDuration::parse(d, DurationUse::RateLimit).is_none() => {
                return Err(bad(
                    format!("Invalid reset duration format: {d}"),
                    "rate_limit",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn validate_provider_configs(configs: &[ProviderConfigInput]) -> Result<(), GatewayError> {
    let mut seen: Vec<String> = Vec::with_capacity(configs.len());
    for pc in configs {
        let provider = pc.provider.trim();
        if provider.is_empty() {
            return Err(bad("provider name is required", "provider_configs"));
        }
        let folded = provider.to_ascii_lowercase();
        if seen.contains(&folded) {
            return Err(bad(
                format!("Duplicate provider in provider_configs: {provider}"),
                "provider_configs",
            ));
        }
        seen.push(folded);
        if let Some(w) = pc.weight
            && !(w.is_finite() && w >= 0.0)
        {
            return Err(bad(
                format!("invalid weight for provider {provider}: must be a non-negative number"),
                "provider_configs",
            ));
        }
        for (field, list, regex) in [
            ("allowed_models", &pc.allowed_models, true),
            ("blacklisted_models", &pc.blacklisted_models, true),
            ("key_ids", &pc.key_ids, false),
        ] {
            if let Some(values) = list
                && let Err(why) = check_list(values, regex)
            {
                return Err(bad(
                    format!("invalid {field} for provider {provider}: {why}"),
                    "provider_configs",
                ));
            }
        }
        if let Some(budgets) =
            budget_inputs(pc.budgets.as_ref(), pc.budget.as_ref(), "provider_configs")?
        {
            validate_budgets(&budgets).map_err(|e| e.with_param("provider_configs"))?;
        }
        if let Some(rl) = &pc.rate_limit {
            validate_rate_limit(rl).map_err(|e| e.with_param("provider_configs"))?;
        }
    }
    Ok(())
}

fn validate_permissions(permissions: &[String]) -> Result<(), GatewayError> {
    for p in permissions {
        if !is_known_permission(p) {
            return Err(bad(format!("Unknown permission: {p}"), "permissions"));
        }
    }
    Ok(())
}

fn validate_expires_at(expires_at: Option<&str>) -> Result<(), GatewayError> {
    match expires_at {
        Some(s) if !s.is_empty() && parse_rfc3339(s).is_none() => Err(bad(
            format!(
                "Invalid expires_at: {s} (expected an RFC3339 timestamp such as 2026-12-31T23:59:59Z)"
            ),
            "expires_at",
        )),
        _ => Ok(()),
    }
}

fn attached(value: Option<&String>) -> Option<&str> {
    value.map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn check_attachment(team: Option<&str>, customer: Option<&str>) -> Result<(), GatewayError> {
    if team.is_some() && customer.is_some() {
        return Err(bad(
            "VirtualKey cannot be attached to both Team and Customer",
            "team_id",
        ));
    }
    Ok(())
}

pub fn validate_virtual_key_create(body: &VirtualKeyCreate) -> Result<(), GatewayError> {
    if body.name.trim().is_empty() {
        return Err(bad("Virtual key name is required", "name"));
    }
    check_attachment(
        attached(body.team_id.as_ref()),
        attached(body.customer_id.as_ref()),
    )?;
    if let Some(budgets) = budget_inputs(body.budgets.as_ref(), body.budget.as_ref(), "budgets")? {
        validate_budgets(&budgets)?;
    }
    if let Some(rl) = &body.rate_limit {
        validate_rate_limit(rl)?;
    }
    if let Some(pcs) = &body.provider_configs {
        validate_provider_configs(pcs)?;
    }
    validate_permissions(body.permissions.as_deref().unwrap_or_default())?;
    validate_expires_at(body.expires_at.as_deref())
}

/// Validates an update against the key it changes (the Team/Customer rule applies to the
/// result: attaching a team to a key that has a customer is refused unless the same body
/// clears the customer).
pub fn validate_virtual_key_update(
    current: &VirtualKey,
    body: &VirtualKeyUpdate,
) -> Result<(), GatewayError> {
    if body.name.as_ref().is_some_and(|n| n.trim().is_empty()) {
        return Err(bad("Virtual key name is required", "name"));
    }
    let team = resolve_link(body.team_id.as_ref(), current.team_id.as_ref());
    let customer = resolve_link(body.customer_id.as_ref(), current.customer_id.as_ref());
    check_attachment(team.as_deref(), customer.as_deref())?;
    if let Some(budgets) = budget_inputs(body.budgets.as_ref(), body.budget.as_ref(), "budgets")? {
        validate_budgets(&budgets)?;
    }
    if let Some(rl) = &body.rate_limit {
        validate_rate_limit(rl)?;
    }
    if let Some(pcs) = &body.provider_configs {
        validate_provider_configs(pcs)?;
    }
    validate_permissions(body.permissions.as_deref().unwrap_or_default())?;
    validate_expires_at(body.expires_at.as_deref())
}

pub fn validate_team_create(body: &TeamCreate) -> Result<(), GatewayError> {
    if body.name.trim().is_empty() {
        return Err(bad("Team name is required", "name"));
    }
    if let Some(budgets) = budget_inputs(body.budgets.as_ref(), body.budget.as_ref(), "budgets")? {
        validate_budgets(&budgets)?;
    }
    Ok(())
}

pub fn validate_team_update(body: &TeamUpdate) -> Result<(), GatewayError> {
    if body.name.as_ref().is_some_and(|n| n.trim().is_empty()) {
        return Err(bad("Team name is required", "name"));
    }
    if let Some(budgets) = budget_inputs(body.budgets.as_ref(), body.budget.as_ref(), "budgets")? {
        validate_budgets(&budgets)?;
    }
    Ok(())
}

pub fn validate_customer_create(body: &CustomerCreate) -> Result<(), GatewayError> {
    if body.name.trim().is_empty() {
        return Err(bad("Customer name is required", "name"));
    }
    if let Some(budgets) = budget_inputs(body.budgets.as_ref(), body.budget.as_ref(), "budgets")? {
        validate_budgets(&budgets)?;
    }
    Ok(())
}

pub fn validate_customer_update(body: &CustomerUpdate) -> Result<(), GatewayError> {
    if body.name.as_ref().is_some_and(|n| n.trim().is_empty()) {
        return Err(bad("Customer name is required", "name"));
    }
    if let Some(budgets) = budget_inputs(body.budgets.as_ref(), body.budget.as_ref(), "budgets")? {
        validate_budgets(&budgets)?;
    }
    Ok(())
}

/// An update's link field: absent keeps the current value, `""` clears it.
fn resolve_link(update: Option<&String>, current: Option<&String>) -> Option<String> {
    match update {
        Some(v) => attached(Some(v)).map(str::to_owned),
        None => current.cloned(),
    }
}

/// Budgets from validated inputs, keeping the id and creation time (hence the usage and the
/// window anchor) of an existing budget named by id or, failing that, with the same reset
/// duration. Each existing budget is matched at most once, ids first.
fn build_budgets(
    inputs: Vec<BudgetInput>,
    existing: &[BudgetConfig],
    default_aligned: Option<bool>,
    now_ms: u64,
    new_id: IdSource<'_>,
) -> Vec<BudgetConfig> {
    let mut taken = vec![false; existing.len()];
    let mut matches: Vec<Option<usize>> = inputs
        .iter()
        .map(|input| {
            let i = existing
                .iter()
                .enumerate()
                .position(|(i, b)| !taken[i] && input.id.as_deref() == Some(b.id.as_str()))?;
            taken[i] = true;
            Some(i)
        })
        .collect();
    for (input, slot) in inputs.iter().zip(matches.iter_mut()) {
        if slot.is_some() {
            continue;
        }
        let duration = ResetDuration::parse(&input.reset_duration, DurationUse::Budget);
        *slot = existing.iter().enumerate().position(|(i, b)| {
            !taken[i]
                && duration.is_some()
                && ResetDuration::parse(&b.reset_duration, DurationUse::Budget) == duration
        });
        if let Some(i) = *slot {
            taken[i] = true;
        }
    }
    inputs
        .into_iter()
        .zip(matches)
        .map(|(input, slot)| {
            let matched = slot.and_then(|i| existing.get(i));
            BudgetConfig {
                id: matched.map_or_else(&mut *new_id, |m| m.id.clone()),
                max_limit: input.max_limit.unwrap_or(0.0),
                reset_duration: input.reset_duration,
                calendar_aligned: input
                    .calendar_aligned
                    .or(default_aligned)
                    .or(matched.map(|m| m.calendar_aligned))
                    .unwrap_or(false),
                created_at: matched.map_or(now_ms, |m| m.created_at),
            }
        })
        .collect()
}

fn build_provider_configs(
    inputs: Vec<ProviderConfigInput>,
    existing: &[ProviderConfig],
    default_aligned: Option<bool>,
    now_ms: u64,
    new_id: IdSource<'_>,
) -> Result<Vec<ProviderConfig>, GatewayError> {
    let mut out = Vec::with_capacity(inputs.len());
    for pc in inputs {
        let provider = pc.provider.trim().to_owned();
        let previous = existing
            .iter()
            .find(|e| e.provider.eq_ignore_ascii_case(&provider));
        let budgets = budget_inputs(pc.budgets.as_ref(), pc.budget.as_ref(), "provider_configs")?;
        let prev_budgets = previous.map_or(&[][..], |p| &p.budgets[..]);
        out.push(ProviderConfig {
            weight: pc.weight.unwrap_or(1.0),
            allowed_models: pc.allowed_models.unwrap_or_else(|| vec!["*".to_owned()]),
            blacklisted_models: pc.blacklisted_models.unwrap_or_default(),
            key_ids: pc.key_ids.unwrap_or_default(),
            budgets: match budgets {
                Some(list) => build_budgets(list, prev_budgets, default_aligned, now_ms, new_id),
                None => Vec::new(),
            },
            rate_limit: pc.rate_limit,
            provider,
        });
    }
    Ok(out)
}

/// A new virtual key from a create body. `value` is the freshly generated `sk-bf-…` secret
/// (generate it with a CSPRNG); only its hash and hint are kept.
pub fn build_virtual_key(
    body: VirtualKeyCreate,
    id: String,
    value: &str,
    now_ms: u64,
    new_id: IdSource<'_>,
) -> Result<VirtualKey, GatewayError> {
    validate_virtual_key_create(&body)?;
    let budgets = budget_inputs(body.budgets.as_ref(), body.budget.as_ref(), "budgets")?;
    Ok(VirtualKey {
        id,
        name: body.name.trim().to_owned(),
        description: body.description.unwrap_or_default(),
        value_hash: hash_virtual_key_value(value),
        value_hint: virtual_key_value_hint(value),
        is_active: body.is_active.unwrap_or(true),
        team_id: attached(body.team_id.as_ref()).map(str::to_owned),
        customer_id: attached(body.customer_id.as_ref()).map(str::to_owned),
        allow_all_providers: body.allow_all_providers,
        disable_content_logging: body.disable_content_logging,
        provider_configs: build_provider_configs(
            body.provider_configs.unwrap_or_default(),
            &[],
            body.calendar_aligned,
            now_ms,
            &mut *new_id,
        )?,
        budgets: build_budgets(
            budgets.unwrap_or_default(),
            &[],
            body.calendar_aligned,
            now_ms,
            new_id,
        ),
        rate_limit: body.rate_limit,
        permissions: body.permissions.unwrap_or_default(),
        expires_at: body.expires_at.filter(|s| !s.is_empty()),
        created_at: now_ms,
        updated_at: now_ms,
    })
}

/// The key after a partial update. Lists that are present replace the old ones; budgets
/// keep their ids (and usage) when matched by id or reset duration.
pub fn apply_virtual_key_update(
    current: &VirtualKey,
    body: VirtualKeyUpdate,
    now_ms: u64,
    new_id: IdSource<'_>,
) -> Result<Updated<VirtualKey>, GatewayError> {
    validate_virtual_key_update(current, &body)?;
    let mut vk = current.clone();
    if let Some(name) = &body.name {
        vk.name = name.trim().to_owned();
    }
    if let Some(d) = body.description {
        vk.description = d;
    }
    if let Some(active) = body.is_active {
        vk.is_active = active;
    }
    vk.team_id = resolve_link(body.team_id.as_ref(), current.team_id.as_ref());
    vk.customer_id = resolve_link(body.customer_id.as_ref(), current.customer_id.as_ref());
    if body.allow_all_providers.is_some() {
        vk.allow_all_providers = body.allow_all_providers;
    }
    if body.disable_content_logging.is_some() {
        vk.disable_content_logging = body.disable_content_logging;
    }
    if let Some(pcs) = body.provider_configs {
        vk.provider_configs = build_provider_configs(
            pcs,
            &current.provider_configs,
            body.calendar_aligned,
            now_ms,
            &mut *new_id,
        )?;
    }
    if let Some(budgets) = budget_inputs(body.budgets.as_ref(), body.budget.as_ref(), "budgets")? {
        vk.budgets = build_budgets(
            budgets,
            &current.budgets,
            body.calendar_aligned,
            now_ms,
            new_id,
        );
    }
    if let Some(rl) = body.rate_limit {
        // An empty object removes the limits.
        vk.rate_limit = (rl != RateLimitConfig::default()).then_some(rl);
    }
    if let Some(p) = body.permissions {
        vk.permissions = p;
    }
    if let Some(e) = body.expires_at {
        vk.expires_at = (!e.is_empty()).then_some(e);
    }
    vk.updated_at = now_ms;
    Ok(Updated {
        record: vk,
        reset_budget_usage: body.reset_budget_usage.unwrap_or(false),
    })
}

pub fn build_team(
    body: TeamCreate,
    id: String,
    now_ms: u64,
    new_id: IdSource<'_>,
) -> Result<Team, GatewayError> {
    validate_team_create(&body)?;
    let budgets = budget_inputs(body.budgets.as_ref(), body.budget.as_ref(), "budgets")?;
    Ok(Team {
        id,
        name: body.name.trim().to_owned(),
        customer_id: attached(body.customer_id.as_ref()).map(str::to_owned),
        budgets: build_budgets(
            budgets.unwrap_or_default(),
            &[],
            body.calendar_aligned,
            now_ms,
            new_id,
        ),
        created_at: now_ms,
        updated_at: now_ms,
    })
}

pub fn apply_team_update(
    current: &Team,
    body: TeamUpdate,
    now_ms: u64,
    new_id: IdSource<'_>,
) -> Result<Updated<Team>, GatewayError> {
    validate_team_update(&body)?;
    let mut team = current.clone();
    if let Some(name) = &body.name {
        team.name = name.trim().to_owned();
    }
    team.customer_id = resolve_link(body.customer_id.as_ref(), current.customer_id.as_ref());
    if let Some(budgets) = budget_inputs(body.budgets.as_ref(), body.budget.as_ref(), "budgets")? {
        team.budgets = build_budgets(
            budgets,
            &current.budgets,
            body.calendar_aligned,
            now_ms,
            new_id,
        );
    }
    team.updated_at = now_ms;
    Ok(Updated {
        record: team,
        reset_budget_usage: body.reset_budget_usage.unwrap_or(false),
    })
}

pub fn build_customer(
    body: CustomerCreate,
    id: String,
    now_ms: u64,
    new_id: IdSource<'_>,
) -> Result<Customer, GatewayError> {
    validate_customer_create(&body)?;
    let budgets = budget_inputs(body.budgets.as_ref(), body.budget.as_ref(), "budgets")?;
    Ok(Customer {
        id,
        name: body.name.trim().to_owned(),
        budgets: build_budgets(
            budgets.unwrap_or_default(),
            &[],
            body.calendar_aligned,
            now_ms,
            new_id,
        ),
        created_at: now_ms,
        updated_at: now_ms,
    })
}

pub fn apply_customer_update(
    current: &Customer,
    body: CustomerUpdate,
    now_ms: u64,
    new_id: IdSource<'_>,
) -> Result<Updated<Customer>, GatewayError> {
    validate_customer_update(&body)?;
    let mut customer = current.clone();
    if let Some(name) = &body.name {
        customer.name = name.trim().to_owned();
    }
    if let Some(budgets) = budget_inputs(body.budgets.as_ref(), body.budget.as_ref(), "budgets")? {
        customer.budgets = build_budgets(
            budgets,
            &current.budgets,
            body.calendar_aligned,
            now_ms,
            new_id,
        );
    }
    customer.updated_at = now_ms;
    Ok(Updated {
        record: customer,
        reset_budget_usage: body.reset_budget_usage.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create(v: serde_json::Value) -> VirtualKeyCreate {
        serde_json::from_value(v).unwrap()
    }

    fn err_of(r: Result<(), GatewayError>) -> (u16, String) {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), Some("invalid_request_error"));
        assert_eq!(e.class().as_str(), "caller_invalid_request");
        (e.status(), e.message().to_owned())
    }

    fn vk_msg(v: serde_json::Value) -> String {
        let (status, msg) = err_of(validate_virtual_key_create(&create(v)));
        assert_eq!(status, 400);
        msg
    }

    fn counter() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("b{n}")
        }
    }

    #[test]
    fn virtual_key_messages() {
        assert_eq!(vk_msg(json!({})), "Virtual key name is required");
        assert_eq!(
            vk_msg(json!({"name": "  "})),
            "Virtual key name is required"
        );
        assert_eq!(
            vk_msg(json!({"name": "k", "team_id": "t", "customer_id": "c"})),
            "VirtualKey cannot be attached to both Team and Customer"
        );
        assert_eq!(
            vk_msg(json!({"name": "k", "budgets": [{"max_limit": -1, "reset_duration": "1d"}]})),
            "Budget max_limit cannot be negative: -1.00"
        );
        assert_eq!(
            vk_msg(json!({"name": "k", "budgets": [{"reset_duration": "1d"}]})),
            "Budget max_limit is required"
        );
        assert_eq!(
            vk_msg(json!({"name": "k", "budgets": [{"max_limit": 1, "reset_duration": "1 day"}]})),
            "Invalid reset duration format: 1 day"
        );
        assert_eq!(
            vk_msg(json!({"name": "k", "budgets": [
                {"max_limit": 1, "reset_duration": "1d"},
                {"max_limit": 2, "reset_duration": "1d"}]})),
            "Duplicate reset_duration in budgets: 1d"
        );
        assert_eq!(
            vk_msg(
                json!({"name": "k", "budget": {"max_limit": 1, "reset_duration": "1d"},
                "budgets": []})
            ),
            "Use either budget or budgets, not both (budget is the legacy single-budget form)"
        );
        assert_eq!(
            vk_msg(json!({"name": "k", "budget": {"max_limit": 1, "reset_duration": "2x"}})),
            "Invalid reset duration format: 2x"
        );
        assert_eq!(
            vk_msg(json!({"name": "k", "rate_limit": {"request_max_limit": 5}})),
            "request_reset_duration is required when request_max_limit is set"
        );
        assert_eq!(
            vk_msg(json!({"name": "k", "rate_limit": {"token_reset_duration": "1h"}})),
            "token_max_limit is required when token_reset_duration is set"
        );
        assert_eq!(
            vk_msg(
                json!({"name": "k", "rate_limit": {"token_max_limit": 5, "token_reset_duration": "1Q"}})
            ),
            "Invalid reset duration format: 1Q"
        );
        assert_eq!(
            vk_msg(json!({"name": "k", "provider_configs": [{"provider": " "}]})),
            "provider name is required"
        );
        assert_eq!(
            vk_msg(
                json!({"name": "k", "provider_configs": [{"provider": "openai"}, {"provider": "OpenAI"}]})
            ),
            "Duplicate provider in provider_configs: OpenAI"
        );
        assert_eq!(
            vk_msg(
                json!({"name": "k", "provider_configs": [{"provider": "openai", "weight": -1}]})
            ),
            "invalid weight for provider openai: must be a non-negative number"
        );
        assert_eq!(
            vk_msg(
                json!({"name": "k", "provider_configs": [{"provider": "openai", "allowed_models": ["*", "gpt-4o"]}]})
            ),
            "invalid allowed_models for provider openai: \"*\" cannot be combined with other values"
        );
        assert_eq!(
            vk_msg(
                json!({"name": "k", "provider_configs": [{"provider": "openai", "blacklisted_models": ["a", "a"]}]})
            ),
            "invalid blacklisted_models for provider openai: duplicate value 'a'"
        );
        assert_eq!(
            vk_msg(
                json!({"name": "k", "provider_configs": [{"provider": "openai", "allowed_models": ["regex:gpt-[4"]}]})
            ),
            "invalid allowed_models for provider openai: invalid regex 'regex:gpt-[4': unclosed character class"
        );
        assert_eq!(
            vk_msg(
                json!({"name": "k", "provider_configs": [{"provider": "openai", "key_ids": ["*", "k1"]}]})
            ),
            "invalid key_ids for provider openai: \"*\" cannot be combined with other values"
        );
        assert_eq!(
            vk_msg(
                json!({"name": "k", "provider_configs": [{"provider": "openai",
                "budgets": [{"max_limit": 1, "reset_duration": "1h"}, {"max_limit": 1, "reset_duration": "1h"}]}]})
            ),
            "Duplicate reset_duration in budgets: 1h"
        );
        assert_eq!(
            vk_msg(json!({"name": "k", "permissions": ["plugins:read", "plugins:delete"]})),
            "Unknown permission: plugins:delete"
        );
        assert_eq!(
            vk_msg(json!({"name": "k", "expires_at": "tomorrow"})),
            "Invalid expires_at: tomorrow (expected an RFC3339 timestamp such as 2026-12-31T23:59:59Z)"
        );
        // JSON cannot carry NaN or infinity, but a body built in code can.
        let mut body = create(json!({"name": "k"}));
        body.budgets = Some(vec![BudgetInput {
            max_limit: Some(f64::NAN),
            reset_duration: "1d".into(),
            ..BudgetInput::default()
        }]);
        assert_eq!(
            err_of(validate_virtual_key_create(&body)).1,
            "Budget max_limit must be a finite number"
        );
    }

    #[test]
    fn params_name_the_field() {
        let e = validate_virtual_key_create(&create(json!({"name": "k", "expires_at": "x"})))
            .unwrap_err();
        assert_eq!(e.details().param.as_deref(), Some("expires_at"));
    }

    #[test]
    fn valid_create_builds_a_key() {
        let body = create(json!({
            "name": " ci ",
            "team_id": "",
            "customer_id": "acme",
            "calendar_aligned": true,
            "budget": {"max_limit": 10, "reset_duration": "1M"},
            "provider_configs": [{"provider": "openai", "allowed_models": ["gpt-4o", "regex:o[34].*"],
                "budget": {"max_limit": 1, "reset_duration": "1d", "calendar_aligned": false}}],
            "rate_limit": {"request_max_limit": 100, "request_reset_duration": "1m"},
            "permissions": ["plugins:read"],
            "expires_at": "2027-01-01T00:00:00Z"
        }));
        let mut ids = counter();
        let vk = build_virtual_key(
            body,
            "vk1".into(),
            "sk-bf-0123456789abcdefwxyz",
            5,
            &mut ids,
        )
        .unwrap();
        assert_eq!(vk.name, "ci");
        assert_eq!(vk.team_id, None);
        assert_eq!(vk.customer_id.as_deref(), Some("acme"));
        assert_eq!(
            vk.value_hash,
            hash_virtual_key_value("sk-bf-0123456789abcdefwxyz")
        );
        assert_eq!(vk.value_hint, "sk-bf-0123…wxyz");
        assert_eq!(vk.budgets.len(), 1);
        assert_eq!(vk.budgets[0].id, "b2");
        assert!(vk.budgets[0].calendar_aligned);
        assert_eq!(vk.budgets[0].created_at, 5);
        let pc = &vk.provider_configs[0];
        assert_eq!(pc.budgets[0].id, "b1");
        assert!(!pc.budgets[0].calendar_aligned);
        assert_eq!(pc.weight, 1.0);
        assert!(pc.key_ids.is_empty());
        assert!(vk.is_active);
    }

    fn existing() -> VirtualKey {
        let body = create(json!({
            "name": "ci",
            "team_id": "eng",
            "budgets": [{"max_limit": 10, "reset_duration": "1M"}, {"max_limit": 1, "reset_duration": "1d"}]
        }));
        build_virtual_key(body, "vk1".into(), "sk-bf-x", 1, &mut counter()).unwrap()
    }

    #[test]
    fn update_keeps_budget_ids_and_checks_attachment() {
        let vk = existing();
        assert_eq!(
            err_of(validate_virtual_key_update(
                &vk,
                &serde_json::from_value(json!({"customer_id": "acme"})).unwrap()
            ))
            .1,
            "VirtualKey cannot be attached to both Team and Customer"
        );
        let mut ids = || "new".to_owned();
        let upd: VirtualKeyUpdate = serde_json::from_value(json!({
            "team_id": "", "customer_id": "acme",
            "budgets": [{"max_limit": 20, "reset_duration": "1M"}, {"max_limit": 5, "reset_duration": "1w"}],
            "reset_budget_usage": true,
            "expires_at": ""
        }))
        .unwrap();
        let out = apply_virtual_key_update(&vk, upd, 9, &mut ids).unwrap();
        assert!(out.reset_budget_usage);
        let v = out.record;
        assert_eq!(v.team_id, None);
        assert_eq!(v.customer_id.as_deref(), Some("acme"));
        assert_eq!(v.budgets[0].id, vk.budgets[0].id, "kept by duration");
        assert_eq!(v.budgets[0].max_limit, 20.0);
        assert_eq!(v.budgets[0].created_at, 1);
        assert_eq!(v.budgets[1].id, "new");
        assert_eq!(v.budgets[1].created_at, 9);
        assert_eq!(v.updated_at, 9);

        // Matching by id survives a duration change.
        let upd: VirtualKeyUpdate = serde_json::from_value(json!({
            "budget": {"id": vk.budgets[1].id, "max_limit": 3, "reset_duration": "1w"},
            "name": "renamed"
        }))
        .unwrap();
        let v = apply_virtual_key_update(&vk, upd, 9, &mut ids)
            .unwrap()
            .record;
        assert_eq!(v.budgets.len(), 1);
        assert_eq!(v.budgets[0].id, vk.budgets[1].id);
        assert_eq!(v.name, "renamed");
        assert_eq!(
            err_of(validate_virtual_key_update(
                &vk,
                &serde_json::from_value(json!({"name": ""})).unwrap()
            ))
            .1,
            "Virtual key name is required"
        );
    }

    #[test]
    fn an_existing_budget_is_matched_once() {
        let vk = existing();
        let month = vk.budgets[0].id.clone();
        // The first input matches the monthly budget by duration, the second names it by id:
        // the id wins and the first input gets a fresh budget.
        let upd: VirtualKeyUpdate = serde_json::from_value(json!({"budgets": [
            {"max_limit": 1, "reset_duration": "1M"},
            {"id": month, "max_limit": 2, "reset_duration": "1w"},
        ]}))
        .unwrap();
        let v = apply_virtual_key_update(&vk, upd, 9, &mut || "fresh".to_owned())
            .unwrap()
            .record;
        assert_eq!(v.budgets[0].id, "fresh");
        assert_eq!(v.budgets[1].id, month);
    }

    #[test]
    fn teams_and_customers() {
        assert_eq!(
            err_of(validate_team_create(&TeamCreate::default())).1,
            "Team name is required"
        );
        assert_eq!(
            err_of(validate_customer_create(&CustomerCreate::default())).1,
            "Customer name is required"
        );
        assert_eq!(
            err_of(validate_team_update(
                &serde_json::from_value(
                    json!({"budget": {"max_limit": -5, "reset_duration": "1d"}})
                )
                .unwrap()
            ))
            .1,
            "Budget max_limit cannot be negative: -5.00"
        );
        assert_eq!(
            err_of(validate_customer_update(
                &serde_json::from_value(json!({"name": " "})).unwrap()
            ))
            .1,
            "Customer name is required"
        );
        let team = build_team(
            serde_json::from_value(json!({"name": "eng", "customer_id": "acme",
                "budget": {"max_limit": 10, "reset_duration": "1M"}}))
            .unwrap(),
            "t1".into(),
            3,
            &mut counter(),
        )
        .unwrap();
        assert_eq!(team.budgets.len(), 1);
        assert_eq!(team.customer_id.as_deref(), Some("acme"));
        let upd = apply_team_update(
            &team,
            serde_json::from_value(json!({"customer_id": ""})).unwrap(),
            4,
            &mut counter(),
        )
        .unwrap();
        assert_eq!(upd.record.customer_id, None);
        assert_eq!(
            upd.record.budgets, team.budgets,
            "absent budgets are unchanged"
        );
        let customer = build_customer(
            serde_json::from_value(
                json!({"name": "acme", "budgets": [{"max_limit": 100, "reset_duration": "1Y"}]}),
            )
            .unwrap(),
            "c1".into(),
            3,
            &mut counter(),
        )
        .unwrap();
        let upd = apply_customer_update(
            &customer,
            serde_json::from_value(json!({"budgets": [], "reset_budget_usage": true})).unwrap(),
            4,
            &mut counter(),
        )
        .unwrap();
        assert!(upd.record.budgets.is_empty());
        assert!(upd.reset_budget_usage);
    }
}
