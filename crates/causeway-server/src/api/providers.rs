//! `/api/providers`, `/api/providers/{provider}/keys` and `/api/keys`: provider settings and
//! keys, persisted in the config store and applied to the next request without a restart.
//! Every response redacts secrets; a redacted value sent back unchanged keeps the original.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use causeway_config::load::{validate_key, validate_provider};
use causeway_config::{KeyConfig, ProviderSettings, resolve_provider};
use causeway_core::GatewayError;
use causeway_core::secret::{Secret, looks_redacted};
use causeway_store::StoredProvider;
use http::StatusCode;
use serde_json::{Map, Value, json};

use crate::body::{decode_json, read_limited};
use crate::error::{ApiError, json_response};
use crate::state::{AppState, store_error};

type ApiResult = Result<Response, ApiError>;

const MGMT_BODY_LIMIT_MB: u64 = 4;

/// Header names whose configured values are secrets in practice.
fn sensitive_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "authorization",
        "key",
        "token",
        "secret",
        "password",
        "cookie",
    ]
    .iter()
    .any(|s| n.contains(s))
}

pub fn provider_json(p: &StoredProvider) -> Value {
    let mut v = serde_json::to_value(&p.settings).unwrap_or_else(|_| json!({}));
    if let Some(headers) = v
        .pointer_mut("/network_config/extra_headers")
        .and_then(Value::as_object_mut)
    {
        for (k, val) in headers.iter_mut() {
            if sensitive_header(k)
                && let Some(s) = val.as_str()
            {
                *val = Value::String(causeway_core::secret::redact(s));
            }
        }
    }
    if let Some(Value::String(pw)) = v.pointer_mut("/proxy_config/password")
        && !pw.is_empty()
        && !pw.starts_with("env.")
    {
        *pw = causeway_core::secret::redact(pw);
    }
    if let Some(obj) = v.as_object_mut() {
        obj.insert("name".into(), Value::String(p.name.clone()));
        obj.insert("provider_status".into(), Value::String("active".into()));
        obj.insert("key_count".into(), Value::from(p.keys.len()));
    }
    v
}

pub fn key_json(k: &KeyConfig, provider: Option<&str>) -> Value {
    let mut v = serde_json::to_value(k).unwrap_or_else(|_| json!({}));
    if let Some(obj) = v.as_object_mut() {
        obj.insert("value".into(), Value::String(k.value.redacted()));
        if let Some(p) = provider {
            obj.insert("provider".into(), Value::String(p.to_owned()));
        }
    }
    v
}

fn providers_snapshot(st: &AppState) -> Arc<Vec<StoredProvider>> {
    st.providers.load_full()
}

fn find_provider(st: &AppState, name: &str) -> Result<StoredProvider, GatewayError> {
    providers_snapshot(st)
        .iter()
        .find(|p| p.name == name)
        .cloned()
        .ok_or_else(|| provider_not_found(name))
}

fn provider_not_found(name: &str) -> GatewayError {
    GatewayError::not_found(format!("Provider not found: {name}"))
}

pub async fn list(State(st): State<Arc<AppState>>) -> ApiResult {
    let providers = providers_snapshot(&st);
    let list: Vec<Value> = providers.iter().map(provider_json).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"providers": list, "total": list.len()}),
    ))
}

pub async fn get(State(st): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    let p = find_provider(&st, &name)?;
    Ok(json_response(StatusCode::OK, &provider_json(&p)))
}

/// Settings fields a client may send; anything else in the body is ignored (the dashboard
/// sends back whole objects including read-only fields).
const SETTINGS_FIELDS: &[&str] = &[
    "network_config",
    "concurrency_and_buffer_size",
    "custom_provider_config",
    "proxy_config",
    "send_back_raw_request",
    "send_back_raw_response",
    "store_raw_request_response",
];

fn settings_from_patch(
    base: &ProviderSettings,
    patch: &Map<String, Value>,
) -> Result<ProviderSettings, GatewayError> {
    let mut merged = match serde_json::to_value(base) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for field in SETTINGS_FIELDS {
        match patch.get(*field) {
            None => {}
            Some(Value::Null) => {
                merged.remove(*field);
            }
            Some(Value::Object(patch)) => {
                // Blocks merge field by field, so `{"network_config":{"max_retries":2}}`
                // keeps the stored base_url; a field set to null returns to its default.
                let mut block = match merged.remove(*field) {
                    Some(Value::Object(b)) => b,
                    _ => Map::new(),
                };
                for (k, v) in patch {
                    if v.is_null() {
                        block.remove(k);
                    } else {
                        block.insert(k.clone(), v.clone());
                    }
                }
                merged.insert((*field).to_owned(), Value::Object(block));
            }
            Some(v) => {
                merged.insert((*field).to_owned(), v.clone());
            }
        }
    }
    let bytes = serde_json::to_vec(&Value::Object(merged)).unwrap_or_default();
    decode_json::<ProviderSettings>(&bytes)
}

pub async fn create(State(st): State<Arc<AppState>>, body: Body) -> ApiResult {
    let bytes = read_limited(body, MGMT_BODY_LIMIT_MB).await?;
    let obj: Map<String, Value> = decode_json(&bytes)?;
    let name = match obj.get("provider").or_else(|| obj.get("name")) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(
                GatewayError::bad_request("provider is required (e.g. \"openai\")")
                    .with_param("provider")
                    .into(),
            );
        }
    };
    let settings = settings_from_patch(&ProviderSettings::default(), &obj)?;
    validate_provider(&name, &settings, "").map_err(|e| bad_config(&e))?;
    let inline: Vec<KeyConfig> = match obj.get("keys") {
        Some(v) if !v.is_null() => decode_json(&serde_json::to_vec(v).unwrap_or_default())?,
        _ => Vec::new(),
    };
    let store = st.store()?;
    let _guard = st.write_lock.lock().await;
    let snapshot = providers_snapshot(&st);
    if snapshot.iter().any(|p| p.name == name)
        || store
            .get_provider(&name)
            .await
            .map_err(store_error)?
            .is_some()
    {
        return Err(GatewayError::conflict(format!("Provider {name} already exists")).into());
    }
    let keyless = resolve_provider(&name, &settings)
        .map(|r| r.keyless)
        .unwrap_or(false);
    let mut keys: Vec<KeyConfig> = Vec::with_capacity(inline.len());
    for key in inline {
        let key = prepare_new_key(&name, keyless, key, &keys, &snapshot)?;
        keys.push(key);
    }
    let candidate = with_provider(
        &snapshot,
        StoredProvider {
            name: name.clone(),
            settings: settings.clone(),
            keys: keys.clone(),
        },
    );
    st.check_providers(&candidate)?;
    // Provider and keys land together or not at all.
    store
        .replace_provider(&name, &settings, &keys)
        .await
        .map_err(store_error)?;
    st.reload_providers().await?;
    let p = find_provider(&st, &name)?;
    tracing::info!(provider = %name, "provider added through the API");
    Ok(json_response(StatusCode::OK, &provider_json(&p)))
}

/// The provider list with `p` added or replaced.
fn with_provider(list: &[StoredProvider], p: StoredProvider) -> Vec<StoredProvider> {
    let mut out: Vec<StoredProvider> = list.iter().filter(|x| x.name != p.name).cloned().collect();
    out.push(p);
    out
}

/// Checks and completes a key about to be added: a real value (not a mask), allowed on
/// this provider, a generated id and a free generated name when missing, no duplicates.
fn prepare_new_key(
    provider: &str,
    keyless: bool,
    mut key: KeyConfig,
    siblings: &[KeyConfig],
    all: &[StoredProvider],
) -> Result<KeyConfig, GatewayError> {
    if keyless {
        return Err(GatewayError::bad_request(format!(
            "provider {provider} is keyless; keys cannot be created on it"
        )));
    }
    if key.value.is_empty() {
        return Err(GatewayError::bad_request(
            "value is required (the API key or \"env.VAR_NAME\")",
        )
        .with_param("value"));
    }
    if looks_redacted(key.value.raw()) {
        return Err(GatewayError::bad_request(
            "value looks like a redacted key; send the real key or an env.VAR_NAME reference",
        )
        .with_param("value"));
    }
    let all_ids: Vec<&str> = all
        .iter()
        .flat_map(|p| p.keys.iter())
        .chain(siblings)
        .filter_map(|k| k.id.as_deref())
        .collect();
    match key.id.as_deref() {
        None | Some("") => key.id = Some(uuid::Uuid::new_v4().to_string()),
        Some(id) if all_ids.contains(&id) => {
            return Err(GatewayError::conflict(format!(
                "a key with id {id:?} already exists"
            )));
        }
        Some(_) => {}
    }
    let existing: Vec<&str> = all
        .iter()
        .filter(|p| p.name == provider)
        .flat_map(|p| p.keys.iter())
        .chain(siblings)
        .map(|k| k.name.as_str())
        .collect();
    if key.name.trim().is_empty() {
        key.name = (1..)
            .map(|n| format!("{provider}-key-{n}"))
            .find(|n| !existing.contains(&n.as_str()))
            .unwrap_or_default();
    } else if existing.contains(&key.name.as_str()) {
        return Err(GatewayError::conflict(format!(
            "a key named {:?} already exists in provider {provider}",
            key.name
        )));
    }
    validate_key(&key, "").map_err(|e| bad_config(&e))?;
    Ok(key)
}

pub async fn update(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult {
    let bytes = read_limited(body, MGMT_BODY_LIMIT_MB).await?;
    let patch: Map<String, Value> = decode_json(&bytes)?;
    let store = st.store()?;
    let _guard = st.write_lock.lock().await;
    let current = store
        .get_provider(&name)
        .await
        .map_err(store_error)?
        .ok_or_else(|| provider_not_found(&name))?;
    let mut settings = settings_from_patch(&current.settings, &patch)?;
    restore_redacted_headers(&current.settings, &mut settings);
    validate_provider(&name, &settings, "").map_err(|e| bad_config(&e))?;
    store
        .update_provider(&name, &settings)
        .await
        .map_err(store_error)?;
    st.reload_providers().await?;
    let p = find_provider(&st, &name)?;
    Ok(json_response(StatusCode::OK, &provider_json(&p)))
}

/// Redacted extra-header values and proxy passwords sent back unchanged keep their stored
/// originals.
fn restore_redacted_headers(old: &ProviderSettings, new: &mut ProviderSettings) {
    if let (Some(n), Some(o)) = (&mut new.proxy_config, &old.proxy_config) {
        causeway_core::secret::restore_redacted(n, o);
    }
    for (k, v) in new.network_config.extra_headers.iter_mut() {
        if looks_redacted(v)
            && let Some(orig) = old.network_config.extra_headers.get(k)
            && causeway_core::secret::redact(orig) == *v
        {
            *v = orig.clone();
        }
    }
}

pub async fn delete(State(st): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    let store = st.store()?;
    let _guard = st.write_lock.lock().await;
    let current = store
        .get_provider(&name)
        .await
        .map_err(store_error)?
        .ok_or_else(|| provider_not_found(&name))?;
    store.delete_provider(&name).await.map_err(store_error)?;
    st.reload_providers().await?;
    tracing::info!(provider = %name, "provider deleted through the API");
    Ok(json_response(StatusCode::OK, &provider_json(&current)))
}

// ---- keys ----------------------------------------------------------------------------

pub async fn list_keys(State(st): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    let p = find_provider(&st, &name)?;
    let keys: Vec<Value> = p.keys.iter().map(|k| key_json(k, None)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"keys": keys, "total": keys.len()}),
    ))
}

pub async fn all_keys(State(st): State<Arc<AppState>>) -> ApiResult {
    let providers = providers_snapshot(&st);
    let keys: Vec<Value> = providers
        .iter()
        .flat_map(|p| p.keys.iter().map(move |k| key_json(k, Some(&p.name))))
        .collect();
    Ok(json_response(StatusCode::OK, &keys))
}

pub async fn get_key(
    State(st): State<Arc<AppState>>,
    Path((name, key_id)): Path<(String, String)>,
) -> ApiResult {
    let p = find_provider(&st, &name)?;
    let k = p
        .keys
        .iter()
        .find(|k| k.id.as_deref() == Some(key_id.as_str()))
        .ok_or_else(|| key_not_found(&name, &key_id))?;
    Ok(json_response(StatusCode::OK, &key_json(k, None)))
}

fn key_not_found(provider: &str, id: &str) -> GatewayError {
    GatewayError::not_found(format!("Key not found: {id} (provider {provider})"))
}

fn bad_config(e: &causeway_config::ConfigError) -> GatewayError {
    let err = GatewayError::bad_request(e.to_string());
    if e.path.is_empty() {
        err
    } else {
        err.with_param(e.path.trim_start_matches('.').to_owned())
    }
}

pub async fn create_key(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult {
    let bytes = read_limited(body, MGMT_BODY_LIMIT_MB).await?;
    let key: KeyConfig = decode_json(&bytes)?;
    let store = st.store()?;
    let _guard = st.write_lock.lock().await;
    let provider = store
        .get_provider(&name)
        .await
        .map_err(store_error)?
        .ok_or_else(|| provider_not_found(&name))?;
    let keyless = resolve_provider(&name, &provider.settings)
        .map(|r| r.keyless)
        .unwrap_or(false);
    let snapshot = providers_snapshot(&st);
    let key = prepare_new_key(&name, keyless, key, &[], &snapshot)?;
    let mut updated = provider.clone();
    updated.keys.push(key.clone());
    st.check_providers(&with_provider(&snapshot, updated))?;
    store.insert_key(&name, &key).await.map_err(store_error)?;
    st.reload_providers().await?;
    Ok(json_response(StatusCode::OK, &key_json(&key, None)))
}

pub async fn update_key(
    State(st): State<Arc<AppState>>,
    Path((name, key_id)): Path<(String, String)>,
    body: Body,
) -> ApiResult {
    let bytes = read_limited(body, MGMT_BODY_LIMIT_MB).await?;
    let patch: Map<String, Value> = decode_json(&bytes)?;
    let store = st.store()?;
    let _guard = st.write_lock.lock().await;
    let provider = store
        .get_provider(&name)
        .await
        .map_err(store_error)?
        .ok_or_else(|| provider_not_found(&name))?;
    let current = provider
        .keys
        .iter()
        .find(|k| k.id.as_deref() == Some(key_id.as_str()))
        .cloned()
        .ok_or_else(|| key_not_found(&name, &key_id))?;
    // Merge over the stored key so omitted fields are kept.
    let mut merged = match serde_json::to_value(&current) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for (k, v) in patch {
        if k == "id" || k == "provider" {
            continue;
        }
        merged.insert(k, v);
    }
    let mut key: KeyConfig =
        decode_json(&serde_json::to_vec(&Value::Object(merged)).unwrap_or_default())?;
    key.id = Some(key_id.clone());
    if current.value.is_redaction_of(key.value.raw()) {
        key.value = current.value.clone();
    } else if looks_redacted(key.value.raw()) {
        return Err(GatewayError::bad_request(
            "value looks redacted but does not match the stored key; send the real key, an env.VAR_NAME reference, or the unchanged redacted value",
        )
        .with_param("value")
        .into());
    } else if key.value.is_empty() {
        key.value = Secret::new(current.value.raw());
    }
    if key.name != current.name && provider.keys.iter().any(|k| k.name == key.name) {
        return Err(GatewayError::conflict(format!(
            "a key named {:?} already exists in provider {name}",
            key.name
        ))
        .into());
    }
    validate_key(&key, "").map_err(|e| bad_config(&e))?;
    let mut updated = provider.clone();
    if let Some(slot) = updated.keys.iter_mut().find(|k| k.id == key.id) {
        *slot = key.clone();
    }
    st.check_providers(&with_provider(&providers_snapshot(&st), updated))?;
    store.update_key(&name, &key).await.map_err(store_error)?;
    st.reload_providers().await?;
    Ok(json_response(StatusCode::OK, &key_json(&key, None)))
}

pub async fn delete_key(
    State(st): State<Arc<AppState>>,
    Path((name, key_id)): Path<(String, String)>,
) -> ApiResult {
    let store = st.store()?;
    let _guard = st.write_lock.lock().await;
    let provider = store
        .get_provider(&name)
        .await
        .map_err(store_error)?
        .ok_or_else(|| provider_not_found(&name))?;
    let current = provider
        .keys
        .iter()
        .find(|k| k.id.as_deref() == Some(key_id.as_str()))
        .cloned()
        .ok_or_else(|| key_not_found(&name, &key_id))?;
    store
        .delete_key(&name, &key_id)
        .await
        .map_err(store_error)?;
    st.reload_providers().await?;
    Ok(json_response(StatusCode::OK, &key_json(&current, None)))
}
