//! `/api/governance/*`: virtual keys, teams and customers (CRUD with Bifrost's shapes) and
//! read-only budget and rate-limit usage. Writes go to the config store, then the live
//! governance snapshot is rebuilt. A virtual key's value is shown once, when it is created.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use causeway_core::GatewayError;
use causeway_governance::{
    Customer, CustomerCreate, CustomerUpdate, Owner, Team, TeamCreate, TeamUpdate, UsageReport,
    VirtualKey, VirtualKeyCreate, VirtualKeyUpdate, apply_customer_update, apply_team_update,
    apply_virtual_key_update, build_customer, build_team, build_virtual_key,
    customer_budget_scopes, team_budget_scopes, usage_report, virtual_key_budget_scopes,
};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::body::{decode_json, read_limited};
use crate::error::{ApiError, json_response};
use crate::governance::{CUSTOMER_KIND, TEAM_KIND, VK_KIND, now_ms};
use crate::state::{AppState, store_error};

type ApiResult = Result<Response, ApiError>;

const BODY_LIMIT_MB: u64 = 4;

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A virtual key as the API shows it: no hash; `value` is the masked hint.
fn vk_json(vk: &VirtualKey, st: &AppState) -> Value {
    let mut v = serde_json::to_value(vk).unwrap_or_else(|_| json!({}));
    if let Some(obj) = v.as_object_mut() {
        obj.remove("value_hash");
        obj.insert("value".into(), Value::String(vk.value_hint.clone()));
        let report = usage_report(
            &st.governance.snapshot.load(),
            st.governance.counters.as_ref(),
            Owner::VirtualKey(&vk.id),
            now_ms(),
        );
        if let Some(r) = report {
            obj.insert(
                "usage".into(),
                serde_json::to_value(r).unwrap_or(Value::Null),
            );
        }
    }
    v
}

fn owner_usage(st: &AppState, owner: Owner<'_>) -> Value {
    usage_report(
        &st.governance.snapshot.load(),
        st.governance.counters.as_ref(),
        owner,
        now_ms(),
    )
    .and_then(|r| serde_json::to_value(r).ok())
    .unwrap_or(Value::Null)
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    offset: Option<usize>,
    search: Option<String>,
    team_id: Option<String>,
    customer_id: Option<String>,
}

async fn reload(st: &AppState) -> Result<(), GatewayError> {
    let store = st.store()?;
    st.governance.reload(store).await
}

fn check_owner_refs(
    st: &AppState,
    team_id: Option<&str>,
    customer_id: Option<&str>,
) -> Result<(), GatewayError> {
    let snap = st.governance.snapshot.load();
    if let Some(t) = team_id.filter(|t| !t.is_empty())
        && snap.team(t).is_none()
    {
        return Err(GatewayError::bad_request(format!("Team not found: {t}")).with_param("team_id"));
    }
    if let Some(c) = customer_id.filter(|c| !c.is_empty())
        && snap.customer(c).is_none()
    {
        return Err(
            GatewayError::bad_request(format!("Customer not found: {c}")).with_param("customer_id"),
        );
    }
    Ok(())
}

// ---- virtual keys ----------------------------------------------------------------------

pub async fn list_virtual_keys(
    State(st): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let snap = st.governance.snapshot.load();
    let mut keys: Vec<&VirtualKey> = snap
        .virtual_keys()
        .filter(|k| {
            q.team_id
                .as_deref()
                .is_none_or(|t| k.team_id.as_deref() == Some(t))
        })
        .filter(|k| {
            q.customer_id
                .as_deref()
                .is_none_or(|c| k.customer_id.as_deref() == Some(c))
        })
        .filter(|k| {
            q.search.as_deref().is_none_or(|s| {
                let s = s.to_ascii_lowercase();
                k.name.to_ascii_lowercase().contains(&s)
                    || k.description.to_ascii_lowercase().contains(&s)
            })
        })
        .collect();
    keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let total = keys.len();
    let limit = q.limit.unwrap_or(25).clamp(1, 100);
    let offset = q.offset.unwrap_or(0);
    let page: Vec<Value> = keys
        .iter()
        .skip(offset)
        .take(limit)
        .map(|k| vk_json(k, &st))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"virtual_keys": page, "count": page.len(), "total_count": total, "limit": limit, "offset": offset}),
    ))
}

pub async fn get_virtual_key(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let snap = st.governance.snapshot.load();
    let vk = snap
        .virtual_key(&id)
        .ok_or_else(|| GatewayError::not_found("Virtual key not found"))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"virtual_key": vk_json(vk, &st)}),
    ))
}

pub async fn create_virtual_key(State(st): State<Arc<AppState>>, body: Body) -> ApiResult {
    let bytes = read_limited(body, BODY_LIMIT_MB).await?;
    let create: VirtualKeyCreate = decode_json(&bytes)?;
    let store = st.store()?;
    let _guard = st.write_lock.lock().await;
    let value = causeway_auth::generate_virtual_key()
        .map_err(|e| GatewayError::internal(format!("cannot generate a key: {e}")))?;
    let mut ids = new_id;
    let vk = build_virtual_key(create, new_id(), &value, now_ms(), &mut ids)?;
    check_owner_refs(&st, vk.team_id.as_deref(), vk.customer_id.as_deref())?;
    store
        .insert_entity(VK_KIND, &vk.id, Some(&vk.value_hash), &vk)
        .await
        .map_err(store_error)?;
    reload(&st).await?;
    let mut shown = vk_json(&vk, &st);
    if let Some(obj) = shown.as_object_mut() {
        // The only time the full value is ever returned.
        obj.insert("value".into(), Value::String(value));
    }
    tracing::info!(virtual_key = %vk.id, name = %vk.name, "virtual key created");
    Ok(json_response(
        StatusCode::OK,
        &json!({"message": "Virtual key created successfully", "virtual_key": shown}),
    ))
}

pub async fn update_virtual_key(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult {
    let bytes = read_limited(body, BODY_LIMIT_MB).await?;
    let update: VirtualKeyUpdate = decode_json(&bytes)?;
    let store = st.store()?;
    let _guard = st.write_lock.lock().await;
    let current = st
        .governance
        .snapshot
        .load()
        .virtual_key(&id)
        .cloned()
        .ok_or_else(|| GatewayError::not_found("Virtual key not found"))?;
    let mut ids = new_id;
    let updated = apply_virtual_key_update(&current, update, now_ms(), &mut ids)?;
    let vk = updated.record;
    check_owner_refs(&st, vk.team_id.as_deref(), vk.customer_id.as_deref())?;
    store
        .update_entity(VK_KIND, &id, &vk)
        .await
        .map_err(store_error)?;
    if updated.reset_budget_usage {
        for scope in virtual_key_budget_scopes(&vk) {
            st.governance.counters.reset(&scope);
        }
    }
    reload(&st).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"message": "Virtual key updated successfully", "virtual_key": vk_json(&vk, &st)}),
    ))
}

pub async fn delete_virtual_key(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult {
    let store = st.store()?;
    let _guard = st.write_lock.lock().await;
    if !store
        .delete_entity(VK_KIND, &id)
        .await
        .map_err(store_error)?
    {
        return Err(GatewayError::not_found("Virtual key not found").into());
    }
    reload(&st).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"message": "Virtual key deleted successfully"}),
    ))
}

// ---- teams -----------------------------------------------------------------------------

fn team_json(t: &Team, st: &AppState) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or_else(|_| json!({}));
    if let Some(obj) = v.as_object_mut() {
        obj.insert("usage".into(), owner_usage(st, Owner::Team(&t.id)));
    }
    v
}

pub async fn list_teams(State(st): State<Arc<AppState>>, Query(q): Query<ListQuery>) -> ApiResult {
    let snap = st.governance.snapshot.load();
    let mut teams: Vec<&Team> = snap
        .teams()
        .filter(|t| {
            q.customer_id
                .as_deref()
                .is_none_or(|c| t.customer_id.as_deref() == Some(c))
        })
        .filter(|t| {
            q.search.as_deref().is_none_or(|s| {
                t.name
                    .to_ascii_lowercase()
                    .contains(&s.to_ascii_lowercase())
            })
        })
        .collect();
    teams.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let list: Vec<Value> = teams.iter().map(|t| team_json(t, &st)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"teams": list, "count": list.len(), "total_count": list.len()}),
    ))
}

pub async fn get_team(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let snap = st.governance.snapshot.load();
    let t = snap
        .team(&id)
        .ok_or_else(|| GatewayError::not_found("Team not found"))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"team": team_json(t, &st)}),
    ))
}

pub async fn create_team(State(st): State<Arc<AppState>>, body: Body) -> ApiResult {
    let bytes = read_limited(body, BODY_LIMIT_MB).await?;
    let create: TeamCreate = decode_json(&bytes)?;
    let store = st.store()?;
    let _guard = st.write_lock.lock().await;
    let mut ids = new_id;
    let team = build_team(create, new_id(), now_ms(), &mut ids)?;
    check_owner_refs(&st, None, team.customer_id.as_deref())?;
    store
        .insert_entity(TEAM_KIND, &team.id, None, &team)
        .await
        .map_err(store_error)?;
    reload(&st).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"message": "Team created successfully", "team": team_json(&team, &st)}),
    ))
}

pub async fn update_team(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult {
    let bytes = read_limited(body, BODY_LIMIT_MB).await?;
    let update: TeamUpdate = decode_json(&bytes)?;
    let store = st.store()?;
    let _guard = st.write_lock.lock().await;
    let current = st
        .governance
        .snapshot
        .load()
        .team(&id)
        .cloned()
        .ok_or_else(|| GatewayError::not_found("Team not found"))?;
    let mut ids = new_id;
    let updated = apply_team_update(&current, update, now_ms(), &mut ids)?;
    let team = updated.record;
    check_owner_refs(&st, None, team.customer_id.as_deref())?;
    store
        .update_entity(TEAM_KIND, &id, &team)
        .await
        .map_err(store_error)?;
    if updated.reset_budget_usage {
        for scope in team_budget_scopes(&team) {
            st.governance.counters.reset(&scope);
        }
    }
    reload(&st).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"message": "Team updated successfully", "team": team_json(&team, &st)}),
    ))
}

pub async fn delete_team(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let store = st.store()?;
    let _guard = st.write_lock.lock().await;
    let users: Vec<String> = st
        .governance
        .snapshot
        .load()
        .virtual_keys()
        .filter(|k| k.team_id.as_deref() == Some(id.as_str()))
        .map(|k| k.name.clone())
        .collect();
    if !users.is_empty() {
        return Err(GatewayError::conflict(format!(
            "Team is used by virtual keys ({}); detach or delete them first",
            users.join(", ")
        ))
        .into());
    }
    if !store
        .delete_entity(TEAM_KIND, &id)
        .await
        .map_err(store_error)?
    {
        return Err(GatewayError::not_found("Team not found").into());
    }
    reload(&st).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"message": "Team deleted successfully"}),
    ))
}

// ---- customers -------------------------------------------------------------------------

fn customer_json(c: &Customer, st: &AppState) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or_else(|_| json!({}));
    if let Some(obj) = v.as_object_mut() {
        obj.insert("usage".into(), owner_usage(st, Owner::Customer(&c.id)));
    }
    v
}

pub async fn list_customers(
    State(st): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let snap = st.governance.snapshot.load();
    let mut customers: Vec<&Customer> = snap
        .customers()
        .filter(|c| {
            q.search.as_deref().is_none_or(|s| {
                c.name
                    .to_ascii_lowercase()
                    .contains(&s.to_ascii_lowercase())
            })
        })
        .collect();
    customers.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let list: Vec<Value> = customers.iter().map(|c| customer_json(c, &st)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"customers": list, "count": list.len(), "total_count": list.len()}),
    ))
}

pub async fn get_customer(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let snap = st.governance.snapshot.load();
    let c = snap
        .customer(&id)
        .ok_or_else(|| GatewayError::not_found("Customer not found"))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"customer": customer_json(c, &st)}),
    ))
}

pub async fn create_customer(State(st): State<Arc<AppState>>, body: Body) -> ApiResult {
    let bytes = read_limited(body, BODY_LIMIT_MB).await?;
    let create: CustomerCreate = decode_json(&bytes)?;
    let store = st.store()?;
    let _guard = st.write_lock.lock().await;
    let mut ids = new_id;
    let c = build_customer(create, new_id(), now_ms(), &mut ids)?;
    store
        .insert_entity(CUSTOMER_KIND, &c.id, None, &c)
        .await
        .map_err(store_error)?;
    reload(&st).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"message": "Customer created successfully", "customer": customer_json(&c, &st)}),
    ))
}

pub async fn update_customer(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult {
    let bytes = read_limited(body, BODY_LIMIT_MB).await?;
    let update: CustomerUpdate = decode_json(&bytes)?;
    let store = st.store()?;
    let _guard = st.write_lock.lock().await;
    let current = st
        .governance
        .snapshot
        .load()
        .customer(&id)
        .cloned()
        .ok_or_else(|| GatewayError::not_found("Customer not found"))?;
    let mut ids = new_id;
    let updated = apply_customer_update(&current, update, now_ms(), &mut ids)?;
    let c = updated.record;
    store
        .update_entity(CUSTOMER_KIND, &id, &c)
        .await
        .map_err(store_error)?;
    if updated.reset_budget_usage {
        for scope in customer_budget_scopes(&c) {
            st.governance.counters.reset(&scope);
        }
    }
    reload(&st).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"message": "Customer updated successfully", "customer": customer_json(&c, &st)}),
    ))
}

pub async fn delete_customer(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let store = st.store()?;
    let _guard = st.write_lock.lock().await;
    let snap = st.governance.snapshot.load();
    let mut users: Vec<String> = snap
        .virtual_keys()
        .filter(|k| k.customer_id.as_deref() == Some(id.as_str()))
        .map(|k| format!("virtual key {}", k.name))
        .collect();
    users.extend(
        snap.teams()
            .filter(|t| t.customer_id.as_deref() == Some(id.as_str()))
            .map(|t| format!("team {}", t.name)),
    );
    drop(snap);
    if !users.is_empty() {
        return Err(GatewayError::conflict(format!(
            "Customer is used by {}; detach or delete them first",
            users.join(", ")
        ))
        .into());
    }
    if !store
        .delete_entity(CUSTOMER_KIND, &id)
        .await
        .map_err(store_error)?
    {
        return Err(GatewayError::not_found("Customer not found").into());
    }
    reload(&st).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"message": "Customer deleted successfully"}),
    ))
}

// ---- read-only usage -------------------------------------------------------------------

fn all_usage(st: &AppState) -> UsageReport {
    let snap = st.governance.snapshot.load();
    let counters = st.governance.counters.as_ref();
    let now = now_ms();
    let mut all = UsageReport::default();
    let owners: Vec<(String, u8)> = snap
        .customers()
        .map(|c| (c.id.clone(), 0))
        .chain(snap.teams().map(|t| (t.id.clone(), 1)))
        .chain(snap.virtual_keys().map(|k| (k.id.clone(), 2)))
        .collect();
    for (id, kind) in &owners {
        let owner = match kind {
            0 => Owner::Customer(id),
            1 => Owner::Team(id),
            _ => Owner::VirtualKey(id),
        };
        if let Some(mut r) = usage_report(&snap, counters, owner, now) {
            all.budgets.append(&mut r.budgets);
            all.rate_limits.append(&mut r.rate_limits);
        }
    }
    all
}

pub async fn budgets(State(st): State<Arc<AppState>>) -> ApiResult {
    let r = all_usage(&st);
    Ok(json_response(
        StatusCode::OK,
        &json!({"budgets": r.budgets, "count": r.budgets.len()}),
    ))
}

pub async fn rate_limits(State(st): State<Arc<AppState>>) -> ApiResult {
    let r = all_usage(&st);
    Ok(json_response(
        StatusCode::OK,
        &json!({"rate_limits": r.rate_limits, "count": r.rate_limits.len()}),
    ))
}
