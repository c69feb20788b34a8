//! The routing table: an immutable snapshot of providers, their endpoints and keys (secrets
//! resolved once, at build time), swapped in whole when config changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use causeway_config::{ClientConfig, ConfigError, KeyConfig, ProviderSettings, resolve_provider};
use causeway_core::KeyPin;
use causeway_providers::Endpoint;
use causeway_providers::pool::Upstream;
use http::{HeaderName, HeaderValue};

use crate::limiter::Limiter;

/// One provider key, ready to use.
pub struct RouteKey {
    pub id: String,
    pub name: String,
    /// The resolved secret. Never logged or returned.
    pub value: String,
    pub models: Vec<String>,
    pub blacklisted_models: Vec<String>,
    pub weight: f64,
    pub enabled: bool,
}

impl RouteKey {
    pub fn allows(&self, model: &str) -> bool {
        self.enabled
            && !self.blacklisted_models.iter().any(|m| m == model)
            && self.models.iter().any(|m| m == "*" || m == model)
    }
}

impl std::fmt::Debug for RouteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteKey")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct ProviderRoute {
    pub name: String,
    pub endpoint: Endpoint,
    pub keys: Vec<RouteKey>,
    pub keyless: bool,
    pub max_retries: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub limiter: Arc<Limiter>,
}

#[derive(Debug, Default)]
pub struct RoutingTable {
    pub providers: HashMap<String, Arc<ProviderRoute>>,
    pub drop_excess_requests: bool,
}

/// A provider as the router receives it: settings plus keys.
pub struct ProviderInput<'a> {
    pub settings: &'a ProviderSettings,
    pub keys: &'a [KeyConfig],
}

impl RoutingTable {
    /// Builds a table; `limiters` carries queues over from the previous table so in-flight
    /// accounting survives a config change (a queue is rebuilt only if its sizes change).
    pub fn build<'a>(
        providers: impl IntoIterator<Item = (&'a String, ProviderInput<'a>)>,
        client: &ClientConfig,
        limiters: &mut BTreeMap<String, Arc<Limiter>>,
    ) -> Result<RoutingTable, ConfigError> {
        let mut table = RoutingTable {
            providers: HashMap::new(),
            drop_excess_requests: client.drop_excess_requests,
        };
        let mut used = BTreeMap::new();
        for (name, input) in providers {
            let route = build_route(name, input, limiters)?;
            used.insert(name.clone(), route.limiter.clone());
            table.providers.insert(name.clone(), Arc::new(route));
        }
        *limiters = used;
        Ok(table)
    }

    pub fn get(&self, provider: &str) -> Option<&Arc<ProviderRoute>> {
        self.providers.get(provider)
    }

    /// For a model named without provider: the first provider (by name) with a key that
    /// lists the model explicitly.
    pub fn provider_for_bare_model(&self, model: &str) -> Option<String> {
        let mut names: Vec<&String> = self.providers.keys().collect();
        names.sort();
        names.into_iter().find_map(|n| {
            let route = &self.providers[n];
            route
                .keys
                .iter()
                .any(|k| k.enabled && k.models.iter().any(|m| m == model))
                .then(|| n.clone())
        })
    }
}

fn build_route(
    name: &str,
    input: ProviderInput<'_>,
    limiters: &BTreeMap<String, Arc<Limiter>>,
) -> Result<ProviderRoute, ConfigError> {
    let resolved = resolve_provider(name, input.settings)?;
    let net = &input.settings.network_config;
    let mut extra_headers = Vec::new();
    for (k, v) in &net.extra_headers {
        let hn = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
            ConfigError::new(
                format!("providers.{name}.network_config.extra_headers"),
                format!("{k:?} is not a valid header name"),
            )
        })?;
        let hv = HeaderValue::from_str(v).map_err(|_| {
            ConfigError::new(
                format!("providers.{name}.network_config.extra_headers.{k}"),
                "value is not a valid header value",
            )
        })?;
        extra_headers.push((hn, hv));
    }
    let cb = input.settings.concurrency_and_buffer_size;
    let limiter = match limiters.get(name) {
        Some(l) if l.concurrency == cb.concurrency && l.buffer_size == cb.buffer_size => l.clone(),
        _ => Arc::new(Limiter::new(cb.concurrency, cb.buffer_size)),
    };
    let keys = input
        .keys
        .iter()
        .map(|k| RouteKey {
            id: k.id.clone().unwrap_or_default(),
            name: k.name.clone(),
            value: k.value.resolve(),
            models: k.models.clone(),
            blacklisted_models: k.blacklisted_models.clone(),
            weight: k.weight,
            enabled: k.enabled,
        })
        .collect();
    let api_base = format!("{}{}", resolved.base_url, resolved.api_prefix);
    let upstream = Upstream::parse(&api_base).map_err(|_| {
        ConfigError::new(
            format!("providers.{name}.network_config.base_url"),
            format!(
                "{:?} is not a usable URL: give scheme and host, e.g. https://api.openai.com, and no query",
                resolved.base_url
            ),
        )
    })?;
    Ok(ProviderRoute {
        name: name.to_owned(),
        endpoint: Endpoint {
            provider: name.to_owned(),
            family: resolved.family,
            api_base,
            upstream,
            extra_headers,
            timeout: Duration::from_secs(net.default_request_timeout_in_seconds),
            stream_idle_timeout: Duration::from_secs(net.stream_idle_timeout_in_seconds.max(1)),
            stream_usage_option: resolved.stream_usage_option,
        },
        keys,
        keyless: resolved.keyless,
        max_retries: net.max_retries,
        backoff_initial: net.retry_backoff_initial.duration(),
        backoff_max: net.retry_backoff_max.duration(),
        limiter,
    })
}

/// Weighted random choice among keys that may serve `model` and are not excluded.
/// Weight-0 keys are used only when every candidate has weight 0.
pub fn choose_key(
    keys: &[RouteKey],
    model: &str,
    excluded: &[usize],
    pin: Option<&KeyPin>,
    rand01: f64,
) -> Option<usize> {
    if let Some(pin) = pin {
        let found = keys.iter().position(|k| match pin {
            KeyPin::Id(id) => &k.id == id,
            KeyPin::Name(n) => &k.name == n,
        })?;
        return (keys[found].allows(model) && !excluded.contains(&found)).then_some(found);
    }
    let candidates: Vec<usize> = (0..keys.len())
        .filter(|i| !excluded.contains(i) && keys[*i].allows(model))
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let total: f64 = candidates.iter().map(|&i| keys[i].weight.max(0.0)).sum();
    if total <= 0.0 {
        let idx = ((rand01 * candidates.len() as f64) as usize).min(candidates.len() - 1);
        return Some(candidates[idx]);
    }
    let mut point = rand01 * total;
    for &i in &candidates {
        let w = keys[i].weight.max(0.0);
        if point < w {
            return Some(i);
        }
        point -= w;
    }
    candidates
        .iter()
        .rev()
        .find(|&&i| keys[i].weight > 0.0)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, weight: f64, models: &[&str]) -> RouteKey {
        RouteKey {
            id: id.into(),
            name: id.into(),
            value: "v".into(),
            models: models.iter().map(|s| s.to_string()).collect(),
            blacklisted_models: vec![],
            weight,
            enabled: true,
        }
    }

    #[test]
    fn weighted_choice_follows_weights() {
        let keys = vec![key("a", 1.0, &["*"]), key("b", 3.0, &["*"])];
        let mut counts = [0usize; 2];
        for i in 0..1000 {
            let r = (i as f64 + 0.5) / 1000.0;
            counts[choose_key(&keys, "m", &[], None, r).unwrap()] += 1;
        }
        assert_eq!(counts, [250, 750]);
    }

    #[test]
    fn model_allow_lists_and_exclusions() {
        let keys = vec![key("a", 1.0, &["gpt-4o"]), key("b", 1.0, &[])];
        assert_eq!(choose_key(&keys, "gpt-4o", &[], None, 0.9), Some(0));
        assert_eq!(choose_key(&keys, "other", &[], None, 0.1), None);
        assert_eq!(choose_key(&keys, "gpt-4o", &[0], None, 0.1), None);
    }

    #[test]
    fn zero_weights_still_serve() {
        let keys = vec![key("a", 0.0, &["*"]), key("b", 0.0, &["*"])];
        assert!(choose_key(&keys, "m", &[], None, 0.7).is_some());
        let keys = vec![key("a", 0.0, &["*"]), key("b", 1.0, &["*"])];
        for i in 0..10 {
            assert_eq!(choose_key(&keys, "m", &[], None, i as f64 / 10.0), Some(1));
        }
    }

    #[test]
    fn pins() {
        let keys = vec![key("a", 1.0, &["*"]), key("b", 1.0, &["*"])];
        assert_eq!(
            choose_key(&keys, "m", &[], Some(&KeyPin::Name("b".into())), 0.0),
            Some(1)
        );
        assert_eq!(
            choose_key(&keys, "m", &[], Some(&KeyPin::Id("zzz".into())), 0.0),
            None
        );
    }
}
