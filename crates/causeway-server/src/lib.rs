//! Causeway's HTTP server. The request path, outermost first:
//!
//! 1. `serve` accepts a TCP connection, sets TCP_NODELAY and records the peer address
//!    (`ConnectInfo`), then hands requests to the axum `Router`.
//! 2. `/api/*` moves to the control runtime (`on_control_runtime`: what a management call
//!    starts must not live on a serve thread), goes through `auth::management_guard` (admin
//!    or a virtual key with the route's permission; loopback-only while no auth is configured),
//!    then the management handlers in `api/`, which write the config store and swap in a new
//!    routing snapshot.
//! 3. Inference routes (`/v1/*`, `/openai/v1/*`) run `inference::run_llm`: body limit, plugin
//!    HTTP pre-hooks, decode, `Engine::execute` (PreLLM hooks, key choice, retries,
//!    fallbacks, PostLLM hooks), then JSON (HTTP post-hooks) or SSE (chunk hooks).
//! 4. Anything else is a 404/405 in the error envelope (`fallback`).

pub mod anthropic_route;
pub mod api;
pub mod auth;
pub mod body;
pub mod error;
pub mod gateway;
pub mod governance;
pub mod inference;
pub mod logging;
pub mod observe;
pub mod otel;
pub mod plugin_setup;
pub mod state;
pub mod telemetry;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use causeway_core::GatewayError;
use http::StatusCode;

pub use gateway::{Gateway, GatewayOptions};
pub use state::{AppState, ManagementAccess};

use crate::error::{error_response, json_response};

pub fn router(state: Arc<AppState>) -> Router {
    let management = Router::new()
        .route(
            "/providers",
            get(api::providers::list).post(api::providers::create),
        )
        .route(
            "/providers/{provider}",
            get(api::providers::get)
                .put(api::providers::update)
                .delete(api::providers::delete),
        )
        .route(
            "/providers/{provider}/keys",
            get(api::providers::list_keys).post(api::providers::create_key),
        )
        .route(
            "/providers/{provider}/keys/{key_id}",
            get(api::providers::get_key)
                .put(api::providers::update_key)
                .delete(api::providers::delete_key),
        )
        .route("/keys", get(api::providers::all_keys))
        .route(
            "/plugins",
            get(api::plugins::list).post(api::plugins::create),
        )
        .route("/plugins/builtins", get(api::plugins::builtins))
        .route(
            "/plugins/{name}",
            get(api::plugins::get)
                .put(api::plugins::update)
                .delete(api::plugins::delete),
        )
        .route("/session/login", post(api::session::login))
        .route("/session/logout", post(api::session::logout))
        .route(
            "/session/is-auth-enabled",
            get(api::session::is_auth_enabled),
        )
        .route(
            "/governance/virtual-keys",
            get(api::governance::list_virtual_keys).post(api::governance::create_virtual_key),
        )
        .route(
            "/governance/virtual-keys/{id}",
            get(api::governance::get_virtual_key)
                .put(api::governance::update_virtual_key)
                .delete(api::governance::delete_virtual_key),
        )
        .route(
            "/governance/teams",
            get(api::governance::list_teams).post(api::governance::create_team),
        )
        .route(
            "/governance/teams/{id}",
            get(api::governance::get_team)
                .put(api::governance::update_team)
                .delete(api::governance::delete_team),
        )
        .route(
            "/governance/customers",
            get(api::governance::list_customers).post(api::governance::create_customer),
        )
        .route(
            "/governance/customers/{id}",
            get(api::governance::get_customer)
                .put(api::governance::update_customer)
                .delete(api::governance::delete_customer),
        )
        .route("/governance/budgets", get(api::governance::budgets))
        .route("/governance/rate-limits", get(api::governance::rate_limits))
        .merge(api::logs::router(state.logs.as_ref().map(|l| {
            Arc::new(api::logs::LogsApi {
                store: l.store.clone(),
                dropped: l.writer.dropped_counter(),
            })
        })))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::management_guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            on_control_runtime,
        ));

    // The OpenAI routes are registered under each prefix rather than nested: a nested router
    // rewrites every request's URI to strip its prefix (a format, an allocation and a parse).
    let mut inference = Router::new();
    for prefix in ["/v1", "/openai/v1"] {
        inference = inference
            .route(
                &format!("{prefix}/chat/completions"),
                post(inference::chat_completions),
            )
            .route(
                &format!("{prefix}/completions"),
                post(inference::completions),
            )
            .route(&format!("{prefix}/embeddings"), post(inference::embeddings))
            .route(&format!("{prefix}/models"), get(inference::list_models));
    }

    inference
        .route("/anthropic/v1/messages", post(anthropic_route::messages))
        .nest("/api", management)
        .route("/health", get(health))
        .route("/metrics", get(telemetry::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            telemetry::http_metrics,
        ))
        .with_state(state)
}

/// Runs a management request on the control runtime (see `AppState::control`) rather than
/// on the serve thread that accepted it. Management traffic is light; the hop is cheap.
async fn on_control_runtime(
    State(st): State<Arc<AppState>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    match st.control.spawn(next.run(req)).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::error!(error = %e, "management request failed on the control runtime");
            error_response(
                &GatewayError::internal(
                    "the management request did not complete; see the gateway log",
                ),
                None,
            )
        }
    }
}

async fn not_found(req: Request) -> Response {
    // Nested routers see a stripped path; report the one the client sent.
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.0.path().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    error_response(
        &GatewayError::not_found(format!("Route not found: {path}")).with_type("route_not_found"),
        None,
    )
}

async fn method_not_allowed(req: Request) -> Response {
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.0.path().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let msg = format!("Method {} is not allowed on {path}", req.method());
    error_response(
        &GatewayError::new(405, causeway_core::ErrorClass::CallerInvalidRequest, msg)
            .with_type("method_not_allowed"),
        None,
    )
}

/// Liveness plus store reachability: 200 when every configured store answers, else 503.
async fn health(State(st): State<Arc<AppState>>) -> Response {
    let store_state = match &st.store {
        None => "disabled".to_owned(),
        Some(s) => match s.ping().await {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("error: {e}"),
        },
    };
    let healthy = store_state == "ok" || store_state == "disabled";
    // Informational only: requests never depend on the logs store.
    let logs_state = match &st.logs {
        None => "disabled".to_owned(),
        Some(l) => match l.store.ping().await {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("error: {e}"),
        },
    };
    let body = serde_json::json!({
        "status": if healthy { "ok" } else { "degraded" },
        "components": {"config_store": store_state, "logs_store": logs_state},
        "providers": st.providers.load().len(),
    });
    if healthy {
        json_response(StatusCode::OK, &body)
    } else {
        let err = GatewayError::new(
            503,
            causeway_core::ErrorClass::GatewayInternal,
            format!("config store unreachable: {store_state}"),
        )
        .with_type("store_unavailable");
        error_response(&err, None)
    }
}
