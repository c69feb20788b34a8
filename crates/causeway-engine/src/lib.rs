//! The engine: routes one LLM request to a provider key with retries, key rotation and
//! fallbacks, running the plugin chain's PreLLM/PostLLM hooks around every attempt target.
//! It reads the routing table lock-free; config changes swap in a new table.

pub mod backoff;
pub mod limiter;
pub mod table;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use causeway_config::{ClientConfig, ConfigError};
use causeway_core::{
    ErrorClass, GatewayError, LlmRequest, LlmResponse, ModelRef, RequestContext, RetryHint,
    RouteInfo,
};
use causeway_plugins::PluginChain;
use causeway_providers::{ClientOptions, ProviderOutput, Providers};
use futures_util::StreamExt;

pub use table::{ProviderInput, ProviderRoute, RouteKey, RoutingTable};

use crate::limiter::Limiter;

pub struct Engine {
    providers: Providers,
    table: ArcSwap<RoutingTable>,
    /// Queues kept across table swaps; only touched when a table is built.
    limiters: Mutex<BTreeMap<String, Arc<Limiter>>>,
}

impl Engine {
    pub fn new(opts: &ClientOptions) -> Self {
        Engine {
            providers: Providers::new(opts),
            table: ArcSwap::from_pointee(RoutingTable::default()),
            limiters: Mutex::new(BTreeMap::new()),
        }
    }

    /// Builds and swaps in a new routing table. Requests in flight keep the old one.
    pub fn apply<'a>(
        &self,
        providers: impl IntoIterator<Item = (&'a String, ProviderInput<'a>)>,
        client: &ClientConfig,
    ) -> Result<(), ConfigError> {
        let mut limiters = self
            .limiters
            .lock()
            .map_err(|_| ConfigError::new("", "internal: limiter registry poisoned"))?;
        let mut next = limiters.clone();
        let table = RoutingTable::build(providers, client, &mut next)?;
        *limiters = next;
        self.table.store(Arc::new(table));
        Ok(())
    }

    /// Builds a table from these providers without applying it: the dry run the management
    /// API does before writing, so nothing unusable is ever stored.
    pub fn check<'a>(
        &self,
        providers: impl IntoIterator<Item = (&'a String, ProviderInput<'a>)>,
        client: &ClientConfig,
    ) -> Result<(), ConfigError> {
        let mut scratch = BTreeMap::new();
        RoutingTable::build(providers, client, &mut scratch).map(|_| ())
    }

    pub fn table(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    /// Runs one request: the primary target, then each fallback as a fresh attempt (PreLLM
    /// re-runs for each). If all fail, the primary's error is returned.
    pub async fn execute(
        &self,
        ctx: &mut RequestContext,
        chain: &PluginChain,
        request: LlmRequest,
    ) -> Result<LlmResponse, GatewayError> {
        let table = self.table.load_full();
        let original = format!("{}/{}", request.provider, request.model);
        let fallbacks = request.fallbacks.clone();
        let mut primary_error: Option<GatewayError> = None;
        let mut pending = Some(request);
        let targets = std::iter::once(None).chain(fallbacks.iter().map(Some));
        let total = 1 + fallbacks.len();
        for (i, target) in targets.enumerate() {
            let mut req = match (&pending, i + 1 < total) {
                // Keep the original for later fallbacks only when there are any.
                (Some(r), true) => r.clone(),
                _ => match pending.take() {
                    Some(r) => r,
                    None => break,
                },
            };
            if let Some(t) = target {
                req.provider = t.provider.clone();
                req.model = t.model.clone();
            }
            let is_fallback = i > 0;
            ctx.target_index = i as u32;
            let (short, ran) = chain.run_pre_llm(ctx, &mut req).await;
            let result = match short {
                Some(r) => r,
                None => self.call_target(ctx, &table, &req, is_fallback).await,
            };
            let result = chain.run_post_llm(ctx, ran, result).await;
            match result {
                Ok(resp) => return Ok(resp),
                Err(e) => {
                    let e =
                        e.with_request_info(req.type_str(), &req.provider, &original, &req.model);
                    if is_fallback {
                        tracing::debug!(provider = %req.provider, model = %req.model, error = %e, "fallback failed");
                    }
                    let stop =
                        !e.details().allow_fallbacks || e.class() == ErrorClass::CallerCancelled;
                    match &primary_error {
                        None => primary_error = Some(e),
                        Some(_) if stop => return Err(e),
                        Some(_) => {}
                    }
                    if stop {
                        break;
                    }
                }
            }
        }
        Err(primary_error.unwrap_or_else(|| GatewayError::internal("no attempt was made")))
    }

    /// One target (provider/model): key choice, retries with backoff, key rotation on 429
    /// and key retirement on 401/402/403, all under the provider's concurrency limit.
    async fn call_target(
        &self,
        ctx: &mut RequestContext,
        table: &RoutingTable,
        req: &LlmRequest,
        is_fallback: bool,
    ) -> Result<LlmResponse, GatewayError> {
        let route = table.get(&req.provider).ok_or_else(|| {
            GatewayError::bad_request(format!(
                "provider {:?} is not configured; add it in config.json or POST /api/providers",
                req.provider
            ))
            .with_type("provider_not_configured")
            .with_param("model")
        })?;
        let slot = route
            .limiter
            .acquire(table.drop_excess_requests, &route.name)
            .await?;
        // Keys outside the caller's allowed set count as retired from the start.
        let mut retired: Vec<usize> = match &ctx.key_filter {
            Some(allowed) => (0..route.keys.len())
                .filter(|&i| !allowed.iter().any(|a| a == "*" || *a == route.keys[i].id))
                .collect(),
            None => Vec::new(),
        };
        let filtered = retired.len();
        let mut rate_limited: Vec<usize> = Vec::new();
        let mut retries = 0u32;
        let mut attempts = 0u32;
        let mut key_idx: Option<usize> = None;
        let mut last_error: Option<GatewayError> = None;
        loop {
            if !route.keyless && key_idx.is_none() {
                let mut excluded = retired.clone();
                excluded.extend(rate_limited.iter().copied());
                key_idx = table::choose_key(
                    &route.keys,
                    &req.model,
                    &excluded,
                    ctx.key_pin.as_ref(),
                    fastrand::f64(),
                );
                if key_idx.is_none() && !rate_limited.is_empty() {
                    // Every usable key is rate limited: back off and try them again.
                    match &last_error {
                        Some(e) if retries < route.max_retries => {
                            retries += 1;
                            self.sleep_backoff(route, retries, e).await;
                            rate_limited.clear();
                            continue;
                        }
                        Some(e) => return Err(e.clone()),
                        None => {}
                    }
                }
                if key_idx.is_none() {
                    return Err(no_key_error(
                        route,
                        req,
                        &retired[filtered..],
                        ctx,
                        last_error,
                    ));
                }
            }
            let key = key_idx.map(|i| &route.keys[i]);
            attempts += 1;
            let attempt_start = std::time::Instant::now();
            let result = self
                .providers
                .execute(
                    &route.endpoint,
                    key.map(|k| k.value.as_str()),
                    req,
                    &req.model,
                    &ctx.forward_headers,
                )
                .await;
            ctx.trace.attempts.push(causeway_core::AttemptSpan {
                provider: route.name.clone(),
                model: req.model.clone(),
                key_id: key.map(|k| k.id.clone()),
                target_index: ctx.target_index,
                start: attempt_start,
                end: std::time::Instant::now(),
                status: match &result {
                    Ok(_) => 200,
                    Err(e)
                        if e.class() == ErrorClass::ProviderConnectionFailed
                            || e.class() == ErrorClass::ProviderTimeout =>
                    {
                        0
                    }
                    Err(e) => e.status(),
                },
                error_type: result.as_ref().err().map(|e| e.class().as_str().to_owned()),
            });
            let route_info = || RouteInfo {
                provider: route.name.clone(),
                model: req.model.clone(),
                key_id: key.map(|k| k.id.clone()),
                is_fallback,
                attempts,
            };
            match result {
                Ok(ProviderOutput::Complete(body)) => {
                    return Ok(LlmResponse::Complete {
                        body,
                        route: route_info(),
                    });
                }
                Ok(ProviderOutput::Stream(chunks)) => {
                    let cell = ctx.stream_usage.clone();
                    let hide_usage = !req.wants_stream_usage();
                    // The slot stays taken until the stream ends or the client goes away.
                    let chunks = chunks.filter_map(move |c| {
                        let _hold = &slot;
                        std::future::ready(match c {
                            Ok(bytes) => observe_usage(bytes, &cell, hide_usage).map(Ok),
                            Err(e) => Some(Err(e)),
                        })
                    });
                    return Ok(LlmResponse::Stream {
                        chunks: Box::pin(chunks),
                        route: route_info(),
                    });
                }
                Err(e) => {
                    tracing::debug!(provider = %route.name, key = key.map(|k| k.name.as_str()).unwrap_or("-"), attempt = attempts, error = %e, "upstream attempt failed");
                    match e.retry() {
                        RetryHint::Never => return Err(e),
                        RetryHint::RetireKey => {
                            let Some(i) = key_idx.take() else {
                                return Err(e);
                            };
                            retired.push(i);
                            last_error = Some(e);
                        }
                        RetryHint::RotateKey => {
                            if let Some(i) = key_idx.take() {
                                rate_limited.push(i);
                            } else if retries < route.max_retries {
                                retries += 1;
                                self.sleep_backoff(route, retries, &e).await;
                            } else {
                                return Err(e);
                            }
                            last_error = Some(e);
                        }
                        RetryHint::Backoff => {
                            if retries >= route.max_retries {
                                return Err(e);
                            }
                            retries += 1;
                            self.sleep_backoff(route, retries, &e).await;
                            last_error = Some(e);
                        }
                    }
                }
            }
        }
    }

    async fn sleep_backoff(&self, route: &ProviderRoute, retry: u32, err: &GatewayError) {
        let mut d = backoff::delay(
            retry,
            route.backoff_initial,
            route.backoff_max,
            backoff::jitter(),
        );
        if let Some(secs) = err.details().retry_after_secs {
            d = d.max(std::time::Duration::from_secs(secs).min(route.backoff_max));
        }
        tokio::time::sleep(d).await;
    }

    /// Models of one provider or of all, ids as `provider/model`. With all providers, a
    /// provider that fails is skipped (and logged) so one outage does not hide the rest.
    pub async fn list_models(
        &self,
        provider: Option<&str>,
    ) -> Result<Vec<serde_json::Value>, GatewayError> {
        let table = self.table.load_full();
        match provider {
            Some(p) => {
                if table.get(p).is_none() {
                    return Err(GatewayError::bad_request(format!(
                        "provider {p:?} is not configured"
                    ))
                    .with_param("provider"));
                }
                self.list_models_in(table, vec![p.to_owned()], true).await
            }
            None => {
                let names = table.providers.keys().cloned().collect();
                self.list_models_in(table, names, false).await
            }
        }
    }

    /// Models of the given providers (unknown names are skipped), failures skipped.
    pub async fn list_models_of(
        &self,
        providers: &[String],
    ) -> Result<Vec<serde_json::Value>, GatewayError> {
        let table = self.table.load_full();
        let names = providers
            .iter()
            .filter(|p| table.get(p).is_some())
            .cloned()
            .collect();
        self.list_models_in(table, names, false).await
    }

    async fn list_models_in(
        &self,
        table: Arc<RoutingTable>,
        mut names: Vec<String>,
        strict: bool,
    ) -> Result<Vec<serde_json::Value>, GatewayError> {
        names.sort();
        let calls = names.iter().map(|name| {
            let table = table.clone();
            async move {
                let route = table
                    .get(name)
                    .ok_or_else(|| GatewayError::internal("provider vanished"))?;
                let key = route
                    .keys
                    .iter()
                    .find(|k| k.enabled)
                    .map(|k| k.value.as_str());
                if key.is_none() && !route.keyless {
                    return Ok(Vec::new());
                }
                let models = self.providers.list_models(&route.endpoint, key).await?;
                Ok::<_, GatewayError>(
                    models
                        .into_iter()
                        .map(|mut m| {
                            if let Some(id) = m.get("id").and_then(|v| v.as_str()) {
                                let full = format!("{name}/{id}");
                                m["id"] = serde_json::Value::String(full);
                            }
                            m
                        })
                        .collect::<Vec<_>>(),
                )
            }
        });
        let results = futures_util::future::join_all(calls).await;
        let mut out = Vec::new();
        for (name, r) in names.iter().zip(results) {
            match r {
                Ok(mut models) => out.append(&mut models),
                Err(e) if strict => return Err(e),
                Err(e) => tracing::warn!(provider = %name, error = %e, "listing models failed"),
            }
        }
        Ok(out)
    }

    /// `provider/model`, or a bare model resolved through the keys' explicit model lists.
    pub fn resolve_model(&self, model: &str) -> Result<ModelRef, GatewayError> {
        if let Some(m) = ModelRef::parse(model) {
            return Ok(m);
        }
        let table = self.table.load();
        match table.provider_for_bare_model(model) {
            Some(provider) => Ok(ModelRef {
                provider,
                model: model.to_owned(),
            }),
            None => Err(GatewayError::bad_request(format!(
                "provider is required in model field (format: provider/model), e.g. \"openai/{model}\""
            ))
            .with_param("model")),
        }
    }
}

/// Records the usage a chunk carries; drops the usage-only chunk (`choices: []`) when the
/// client did not ask for usage (the gateway asked on its behalf).
fn observe_usage(
    chunk: bytes::Bytes,
    cell: &causeway_core::UsageCell,
    hide: bool,
) -> Option<bytes::Bytes> {
    static USAGE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage\":{"));
    if USAGE.find(&chunk).is_none() {
        return Some(chunk);
    }
    if let Some(usage) = causeway_core::Usage::from_openai_body(&chunk)
        && let Ok(mut slot) = cell.lock()
    {
        *slot = Some(usage);
    }
    if hide {
        #[derive(serde::Deserialize)]
        struct Probe {
            #[serde(default)]
            choices: Vec<serde::de::IgnoredAny>,
        }
        if let Ok(p) = serde_json::from_slice::<Probe>(&chunk)
            && p.choices.is_empty()
        {
            return None;
        }
    }
    Some(chunk)
}

fn no_key_error(
    route: &ProviderRoute,
    req: &LlmRequest,
    retired: &[usize],
    ctx: &RequestContext,
    last_error: Option<GatewayError>,
) -> GatewayError {
    if !retired.is_empty() {
        let detail = last_error
            .map(|e| format!(": last error: {}", e.message()))
            .unwrap_or_default();
        return GatewayError::new(
            502,
            ErrorClass::ProviderCredentialsExhausted,
            format!(
                "all keys of provider {} were rejected by the provider{detail}",
                route.name
            ),
        )
        .with_type("upstream_credentials_exhausted");
    }
    if let Some(pin) = &ctx.key_pin {
        return GatewayError::bad_request(format!(
            "the pinned key {pin:?} does not exist in provider {} or does not serve model {}",
            route.name, req.model
        ))
        .with_type("no_key_supports_model");
    }
    GatewayError::new(
        400,
        ErrorClass::CallerModelNotAvailable,
        format!(
            "no keys found that support model: {} (provider {})",
            req.model, route.name
        ),
    )
    .with_type("no_key_supports_model")
    .with_param("model")
}
