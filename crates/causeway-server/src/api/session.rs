//! `/api/session/*` (Bifrost compatible): password login that issues a session token (as a
//! cookie and in the body, usable as `Authorization: Bearer`), logout, and whether auth is
//! on. Logins are rate limited per client address; tokens are stored only as hashes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use causeway_core::{ErrorClass, GatewayError};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{identify, unauthorized, with_challenge};
use crate::body::{decode_json, read_limited};
use crate::error::{ApiError, error_response, json_response};
use crate::governance::now_ms;
use crate::state::{AppState, store_error};

#[derive(Deserialize)]
struct Login {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

pub async fn login(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(auth) = st
        .auth
        .authenticator
        .clone()
        .filter(|a| a.has_admin_password())
    else {
        return Err(GatewayError::forbidden(
            "authentication is not enabled: set auth_config.is_enabled with admin_username and admin_password",
        )
        .with_type("auth_disabled")
        .into());
    };
    let bytes = read_limited(body, 1).await?;
    let creds: Login = decode_json(&bytes)?;
    let now = Instant::now();
    if let Err(wait) = st.auth.login_limiter.check(peer.ip(), now) {
        let secs = wait.as_secs().max(1);
        return Err(GatewayError::new(
            429,
            ErrorClass::PolicyRateLimited,
            format!("too many failed logins from this address; try again in {secs} s"),
        )
        .with_type("login_rate_limited")
        .with_retry_after(secs)
        .into());
    }
    if !auth.check_admin_password(&creds.username, &creds.password) {
        st.auth.login_limiter.record_failure(peer.ip(), now);
        return Ok(with_challenge(error_response(
            &unauthorized("Invalid username or password"),
            None,
        )));
    }
    st.auth.login_limiter.record_success(peer.ip());
    let token = causeway_auth::generate_session_token()
        .map_err(|e| GatewayError::internal(format!("cannot create a session: {e}")))?;
    let ttl = auth.session_ttl();
    let store = st.store()?;
    store
        .insert_session(
            &causeway_auth::hash_secret(&token),
            now_ms() as i64 + ttl.as_millis() as i64,
        )
        .await
        .map_err(store_error)?;
    let mut resp = json_response(
        StatusCode::OK,
        &json!({"message": "Login successful", "token": token}),
    );
    let cookie = format!(
        "token={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
        ttl.as_secs()
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// The session token of a request: `Authorization: Bearer` or the `token` cookie.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    if let Some(b) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(b.trim().to_owned());
    }
    cookie_token(headers)
}

/// The `token` cookie the dashboard's login sets.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("token=").map(str::to_owned))
}

pub async fn logout(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let (Some(token), Some(store)) = (session_token(&headers), &st.store) {
        store
            .delete_session(&causeway_auth::hash_secret(&token))
            .await
            .map_err(store_error)?;
    }
    let mut resp = json_response(StatusCode::OK, &json!({"message": "Logout successful"}));
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("token=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    Ok(resp)
}

pub async fn is_auth_enabled(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let auth = st.auth.authenticator.as_ref();
    let enabled = auth.is_some();
    let has_valid_token = enabled && identify(&st, &headers, None).await.is_ok_and(|c| c.admin);
    let auth_type = match auth {
        Some(a) if a.has_admin_password() => "password",
        Some(_) => "jwt",
        None => "none",
    };
    json_response(
        StatusCode::OK,
        &json!({
            "is_auth_enabled": enabled,
            "has_valid_token": has_valid_token,
            "auth_type": auth_type,
            "inference_auth_enforced": st.client.load().enforce_auth_on_inference,
        }),
    )
}
