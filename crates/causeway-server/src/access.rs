//! Who may reach `/api/*`. Until real auth is configured the management API answers only
//! loopback clients, unless the operator started the server with `--insecure-no-auth`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use causeway_core::GatewayError;

use crate::error::error_response;
use crate::state::{AppState, ManagementAccess};

pub async fn management_guard(
    State(st): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    if st.access == ManagementAccess::LoopbackOnly {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let allowed = peer.is_some_and(|ip| ip.is_loopback() || is_mapped_loopback(&ip));
        if !allowed {
            let err = GatewayError::forbidden(
                "the management API answers loopback clients only while no authentication is configured; call it from the gateway host, or start with --insecure-no-auth on a trusted network",
            )
            .with_type("management_forbidden");
            return error_response(&err, None);
        }
    }
    next.run(req).await
}

fn is_mapped_loopback(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        std::net::IpAddr::V4(_) => false,
    }
}
