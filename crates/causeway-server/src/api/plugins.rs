//! `/api/plugins`: define, enable, reconfigure and remove plugins at run time. Definitions
//! persist in the config store (so enabling or disabling a built-in survives restarts); a
//! change rebuilds the plugin and swaps it in without dropping requests in flight.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use causeway_core::GatewayError;
use causeway_plugins::registry::restore_redacted;
use causeway_plugins::{LoadError, PluginSpec};
use causeway_store::PluginRecord;
use http::StatusCode;
use serde_json::{Map, Value, json};

use crate::body::{decode_json, read_limited};
use crate::error::{ApiError, json_response};
use crate::state::{AppState, store_error};

type ApiResult = Result<Response, ApiError>;

const BODY_LIMIT_MB: u64 = 4;

pub fn spec_from_record(r: PluginRecord) -> PluginSpec {
    PluginSpec {
        name: r.name,
        enabled: r.enabled,
        path: r.path,
        config: r.config,
        placement: r.placement,
        order: r.order,
    }
}

fn record_from_spec(s: &PluginSpec) -> PluginRecord {
    PluginRecord {
        name: s.name.clone(),
        enabled: s.enabled,
        path: s.path.clone(),
        config: s.config.clone(),
        placement: s.placement.clone(),
        order: s.order,
    }
}

fn not_found() -> GatewayError {
    GatewayError::not_found("Plugin not found")
}

/// 400 for definitions the caller must fix; 500 (with `prefix`) when a valid plugin fails
/// to start.
fn load_error(e: LoadError, prefix: &str) -> GatewayError {
    match e {
        LoadError::InvalidConfig(_) | LoadError::InvalidModule(_) => {
            GatewayError::bad_request(e.to_string()).with_type("invalid_plugin")
        }
        LoadError::Failed(m) => {
            GatewayError::internal(format!("{prefix}: {m}")).with_type("plugin_load_failed")
        }
    }
}

const CREATE_FAILED: &str =
    "Plugin created in database but failed to load (the definition was rolled back)";
const UPDATE_FAILED: &str =
    "Plugin not updated: the new version failed to load (the running version is unchanged)";

/// Reads an optional field of a JSON body with the expected shape, or a 400 naming it.
fn field<'a>(body: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    body.get(name).filter(|v| !v.is_null())
}

fn opt_string(
    body: &Map<String, Value>,
    name: &str,
) -> Result<Option<Option<String>>, GatewayError> {
    match body.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if s.is_empty() => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(
            GatewayError::bad_request(format!("{name} must be a string"))
                .with_param(name.to_owned()),
        ),
    }
}

fn opt_bool(body: &Map<String, Value>, name: &str) -> Result<Option<bool>, GatewayError> {
    match field(body, name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(
            GatewayError::bad_request(format!("{name} must be true or false"))
                .with_param(name.to_owned()),
        ),
    }
}

fn opt_order(body: &Map<String, Value>) -> Result<Option<Option<i64>>, GatewayError> {
    match body.get("order") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => v.as_i64().map(|n| Some(Some(n))).ok_or_else(|| {
            GatewayError::bad_request("order must be an integer").with_param("order")
        }),
    }
}

fn opt_config(body: &Map<String, Value>) -> Result<Option<Map<String, Value>>, GatewayError> {
    match field(body, "config") {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m.clone())),
        Some(_) => {
            Err(GatewayError::bad_request("config must be a JSON object").with_param("config"))
        }
    }
}

pub async fn list(State(st): State<Arc<AppState>>) -> ApiResult {
    let plugins = st.plugins.list();
    Ok(json_response(
        StatusCode::OK,
        &json!({"plugins": plugins, "count": plugins.len()}),
    ))
}

pub async fn builtins(State(st): State<Arc<AppState>>) -> ApiResult {
    Ok(json_response(
        StatusCode::OK,
        &json!({"plugins": st.plugins.loader().builtin_names()}),
    ))
}

pub async fn get(State(st): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    let view = st.plugins.get(&name).ok_or_else(not_found)?;
    Ok(json_response(StatusCode::OK, &view))
}

pub async fn create(State(st): State<Arc<AppState>>, body: Body) -> ApiResult {
    let bytes = read_limited(body, BODY_LIMIT_MB).await?;
    let body: Map<String, Value> = decode_json(&bytes)?;
    let name = match body.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(GatewayError::bad_request("Plugin name is required")
                .with_param("name")
                .into());
        }
        Some(_) => {
            return Err(GatewayError::bad_request("name must be a string")
                .with_param("name")
                .into());
        }
    };
    let is_builtin = st.plugins.loader().is_builtin(&name);
    let spec = PluginSpec {
        enabled: opt_bool(&body, "enabled")?.unwrap_or(false),
        path: if is_builtin {
            None
        } else {
            opt_string(&body, "path")?.flatten()
        },
        config: Value::Object(opt_config(&body)?.unwrap_or_default()),
        placement: opt_string(&body, "placement")?.flatten(),
        order: opt_order(&body)?.flatten(),
        name,
    };
    st.plugins
        .validate(&spec)
        .map_err(|e| load_error(e, CREATE_FAILED))?;
    let store = st.store.as_ref().ok_or_else(|| {
        GatewayError::bad_request("Plugins creation is not supported when configstore is disabled")
            .with_type("config_store_disabled")
    })?;
    let _guard = st.write_lock.lock().await;
    if st.plugins.get(&spec.name).is_some()
        || store
            .get_plugin(&spec.name)
            .await
            .map_err(store_error)?
            .is_some()
    {
        return Err(GatewayError::conflict("Plugin already exists").into());
    }
    store
        .insert_plugin(&record_from_spec(&spec))
        .await
        .map_err(store_error)?;
    match st.plugins.create(spec.clone()).await {
        Ok(view) => {
            tracing::info!(plugin = %spec.name, enabled = spec.enabled, "plugin created");
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"message": "Plugin created successfully", "plugin": view}),
            ))
        }
        Err(e) => {
            // The definition must not outlive a plugin that cannot load.
            if let Err(del) = store.delete_plugin(&spec.name).await {
                tracing::error!(plugin = %spec.name, error = %del, "rolling back a plugin row failed");
            }
            Err(load_error(e, CREATE_FAILED).into())
        }
    }
}

pub async fn update(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult {
    let bytes = read_limited(body, BODY_LIMIT_MB).await?;
    let body: Map<String, Value> = decode_json(&bytes)?;
    let store = st.store.as_ref().ok_or_else(|| {
        GatewayError::bad_request("Plugin updates are not supported when configstore is disabled")
            .with_type("config_store_disabled")
    })?;
    let _guard = st.write_lock.lock().await;
    let existing = st.plugins.spec(&name);
    // PUT creates a missing definition (Bifrost compatible), starting from a disabled one.
    let old = existing.unwrap_or_else(|| PluginSpec {
        name: name.clone(),
        enabled: false,
        path: None,
        config: Value::Object(Map::new()),
        placement: None,
        order: None,
    });
    let mut config = match &old.config {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    if let Some(mut patch) = opt_config(&body)? {
        let mut patch_value = Value::Object(std::mem::take(&mut patch));
        restore_redacted(&mut patch_value, &old.config);
        if let Value::Object(p) = patch_value {
            for (k, v) in p {
                config.insert(k, v);
            }
        }
    }
    let is_builtin = st.plugins.loader().is_builtin(&name);
    let spec = PluginSpec {
        name: name.clone(),
        // Unlike Bifrost, an omitted `enabled` keeps the stored value.
        enabled: opt_bool(&body, "enabled")?.unwrap_or(old.enabled),
        path: if is_builtin {
            None
        } else {
            opt_string(&body, "path")?.unwrap_or(old.path.clone())
        },
        config: Value::Object(config),
        placement: opt_string(&body, "placement")?.unwrap_or(old.placement.clone()),
        order: opt_order(&body)?.unwrap_or(old.order),
    };
    st.plugins
        .update(spec.clone())
        .await
        .map_err(|e| load_error(e, UPDATE_FAILED))?;
    let record = record_from_spec(&spec);
    // Defaults started at boot (governance, logging) run without a stored row until
    // their first change.
    let stored = match store.get_plugin(&name).await {
        Ok(row) => row.is_some(),
        Err(e) => {
            let _ = st.plugins.update(old).await;
            return Err(store_error(e).into());
        }
    };
    let saved = if stored {
        store.update_plugin(&record).await
    } else {
        store.insert_plugin(&record).await
    };
    if let Err(e) = saved {
        // Keep the running state consistent with what is stored.
        let _ = st.plugins.update(old).await;
        return Err(store_error(e).into());
    }
    let view = st.plugins.get(&name).ok_or_else(not_found)?;
    tracing::info!(plugin = %name, enabled = spec.enabled, "plugin updated");
    Ok(json_response(
        StatusCode::OK,
        &json!({"message": "Plugin updated successfully", "plugin": view}),
    ))
}

pub async fn delete(State(st): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    let store = st.store.as_ref().ok_or_else(|| {
        GatewayError::bad_request("Plugin deletion is not supported when configstore is disabled")
            .with_type("config_store_disabled")
    })?;
    let _guard = st.write_lock.lock().await;
    let in_store = store.delete_plugin(&name).await.map_err(store_error)?;
    let in_registry = st.plugins.remove(&name).await;
    if !in_store && !in_registry {
        return Err(not_found().into());
    }
    tracing::info!(plugin = %name, "plugin deleted");
    Ok(json_response(
        StatusCode::OK,
        &json!({"message": "Plugin deleted successfully"}),
    ))
}
