//! Who is calling, for the management API and for inference. Credentials are tried in the
//! order the caller sent them: JWTs (admin or virtual-key), raw `sk-bf-` virtual keys, session
//! tokens, Basic admin password. Failures are 401 with `WWW-Authenticate`; an authenticated
//! caller without the needed permission is 403. Messages never echo a credential.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use causeway_auth::{
    AuthError, Authenticator, Credential, LoginLimiter, credentials, looks_like_jwt,
};
use causeway_core::{ErrorClass, GatewayError};
use http::{HeaderMap, HeaderValue, Method};

use crate::error::error_response;
use crate::governance::{VkRef, now_ms};
use crate::state::{AppState, ManagementAccess};

/// The authentication setup of a running gateway.
pub struct AuthSetup {
    /// `None` when no authentication is configured.
    pub authenticator: Option<Arc<Authenticator>>,
    pub login_limiter: LoginLimiter,
}

/// The authenticated caller of one request: admin rights (admin JWT, session, password)
/// and, independently, the virtual key it presented. A virtual key is governed whoever
/// else the caller proved to be (Bifrost reads `x-bf-vk` for governance regardless).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub admin: bool,
    pub virtual_key: Option<VkRef>,
}

impl Caller {
    pub fn anonymous(&self) -> bool {
        !self.admin && self.virtual_key.is_none()
    }
}

pub const WWW_AUTHENTICATE: &str = r#"Bearer realm="causeway", Basic realm="causeway""#;

pub fn unauthorized(message: impl Into<String>) -> GatewayError {
    GatewayError::unauthorized(message).with_type("unauthorized")
}

/// Adds `WWW-Authenticate` to 401 answers.
pub fn with_challenge(mut resp: Response) -> Response {
    if resp.status() == http::StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(WWW_AUTHENTICATE),
        );
    }
    resp
}

fn jwt_error(e: &AuthError) -> GatewayError {
    unauthorized(format!("invalid token: {e}"))
}

/// Resolves the caller from request headers. Every credential sent is checked: one that
/// is wrong is an error (a bad credential never silently becomes anonymous), including when
/// another one is fine. Password attempts count against the login limiter of `peer`.
pub async fn identify(
    st: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Caller, GatewayError> {
    let mut creds = credentials(headers);
    if let Some(cookie) = crate::api::session::cookie_token(headers) {
        creds.push(Credential::Bearer(cookie));
    }
    let auth = st.auth.authenticator.as_ref();
    let mut caller = Caller::default();
    for cred in creds {
        match cred {
            Credential::VirtualKey(value) => set_vk(st, &mut caller, VkRef::Value(value))?,
            Credential::Bearer(token) if looks_like_jwt(&token) => {
                // Without JWT config a JWT-shaped bearer may be meant for the provider.
                let Some(a) = auth.filter(|a| a.has_jwt()) else {
                    continue;
                };
                let id = a.verify_jwt(&token).map_err(|e| jwt_error(&e))?;
                if id.is_admin {
                    caller.admin = true;
                } else {
                    match id.virtual_key {
                        Some(vk) if vk.starts_with(causeway_auth::VIRTUAL_KEY_PREFIX) => {
                            set_vk(st, &mut caller, VkRef::Value(vk))?
                        }
                        Some(vk) => set_vk(st, &mut caller, VkRef::Id(vk))?,
                        None => return Err(jwt_error(&AuthError::NoUsableClaims)),
                    }
                }
            }
            Credential::Bearer(token) => {
                if let (Some(store), Some(_)) = (&st.store, auth) {
                    let hash = causeway_auth::hash_secret(&token);
                    if store
                        .session_valid(&hash, now_ms() as i64)
                        .await
                        .map_err(crate::state::store_error)?
                    {
                        caller.admin = true;
                    }
                }
            }
            Credential::Basic { user, pass } => {
                let Some(a) = auth.filter(|a| a.has_admin_password()) else {
                    continue;
                };
                let now = std::time::Instant::now();
                if let Some(ip) = peer
                    && let Err(wait) = st.auth.login_limiter.check(ip, now)
                {
                    let secs = wait.as_secs().max(1);
                    return Err(GatewayError::new(
                        429,
                        ErrorClass::PolicyRateLimited,
                        format!("too many failed logins from this address; try again in {secs} s"),
                    )
                    .with_type("login_rate_limited")
                    .with_retry_after(secs));
                }
                if a.check_admin_password(&user, &pass) {
                    if let Some(ip) = peer {
                        st.auth.login_limiter.record_success(ip);
                    }
                    caller.admin = true;
                } else {
                    if let Some(ip) = peer {
                        st.auth.login_limiter.record_failure(ip, now);
                    }
                    return Err(unauthorized("wrong username or password"));
                }
            }
        }
    }
    Ok(caller)
}

fn set_vk(st: &AppState, caller: &mut Caller, vk: VkRef) -> Result<(), GatewayError> {
    check_vk(st, &vk)?;
    caller.virtual_key.get_or_insert(vk);
    Ok(())
}

/// A presented virtual key must exist; its policy (active, expiry, limits) is the
/// governance plugin's job so decisions stay in one place.
fn check_vk(st: &AppState, vk: &VkRef) -> Result<(), GatewayError> {
    let snap = st.governance.snapshot.load();
    let found = match vk {
        VkRef::Value(v) => snap.virtual_key_by_value(v).is_some(),
        VkRef::Id(id) => snap.virtual_key(id).is_some(),
    };
    if found {
        Ok(())
    } else {
        Err(
            GatewayError::new(403, ErrorClass::PolicyAccessDenied, "Virtual key not found")
                .with_type("virtual_key_not_found"),
        )
    }
}

/// Routes anyone may call (login needs no login).
fn public_management_route(path: &str) -> bool {
    matches!(
        path,
        "/api/session/login" | "/api/session/is-auth-enabled" | "/api/session/logout"
    )
}

/// The permission a virtual key needs for a management route: `<resource>:read` for GET
/// and HEAD, `<resource>:write` otherwise.
pub fn required_permission(method: &Method, path: &str) -> String {
    let rest = path.trim_start_matches("/api/");
    let resource = rest.split('/').next().unwrap_or("");
    let resource = match resource {
        "keys" => "keys",
        "" => "config",
        other => other,
    };
    let action = if method == Method::GET || method == Method::HEAD {
        "read"
    } else {
        "write"
    };
    format!("{resource}:{action}")
}

pub async fn management_guard(
    State(st): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.0.path().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    if public_management_route(&path) {
        return next.run(req).await;
    }
    if st.auth.authenticator.is_none() {
        // No authentication configured: loopback clients only, unless told otherwise.
        if st.access == ManagementAccess::LoopbackOnly && !peer_is_loopback(&req) {
            let err = GatewayError::forbidden(
                "the management API answers loopback clients only while no authentication is configured; call it from the gateway host, configure auth_config, or start with --insecure-no-auth on a trusted network",
            )
            .with_type("management_forbidden");
            return error_response(&err, None);
        }
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let caller = match identify(&st, req.headers(), peer).await {
        Ok(c) => c,
        Err(e) => return with_challenge(error_response(&e, None)),
    };
    if caller.admin {
        return next.run(req).await;
    }
    let Some(vk) = caller.virtual_key else {
        return with_challenge(error_response(
            &unauthorized(
                "authentication required: send an admin JWT, a virtual key with permissions, a session token, or Basic credentials",
            ),
            None,
        ));
    };
    let permission = required_permission(req.method(), &path);
    let snap = st.governance.snapshot.load();
    let vk_record = match &vk {
        VkRef::Value(v) => snap.virtual_key_by_value(v),
        VkRef::Id(id) => snap.virtual_key(id),
    };
    // A key must not widen its own access: changing virtual keys or the governance plugin
    // takes the `*` permission.
    let escalating = req.method() != Method::GET
        && req.method() != Method::HEAD
        && (path.starts_with("/api/governance/virtual-keys")
            || path.starts_with("/api/plugins/governance"));
    let allowed = vk_record.is_some_and(|k| {
        !causeway_governance::is_expired(k, now_ms())
            && causeway_governance::permits(k, &permission)
            && (!escalating || causeway_governance::permits(k, "*"))
    });
    if allowed {
        next.run(req).await
    } else {
        let needed = if escalating {
            "*".to_owned()
        } else {
            permission
        };
        error_response(
            &GatewayError::forbidden(format!("this virtual key lacks the permission {needed:?}"))
                .with_type("permission_denied"),
            None,
        )
    }
}

fn peer_is_loopback(req: &Request) -> bool {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .is_some_and(is_loopback)
}

pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v| v.is_loopback()),
    }
}

/// Inference: identify the caller and enforce `client.enforce_auth_on_inference`.
pub async fn inference_caller(
    st: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Caller, GatewayError> {
    let caller = identify(st, headers, peer).await?;
    if caller.anonymous() && st.client.load().enforce_auth_on_inference {
        return Err(unauthorized(
            "a virtual key is required: send it as Authorization: Bearer sk-bf-..., x-bf-vk, x-api-key or x-goog-api-key",
        ));
    }
    Ok(caller)
}
