//! The `config.json` schema (Bifrost's format) as typed structs, with Bifrost's defaults.
//! These same types are what the config store persists and the management API returns
//! (secrets redacted there). Sections of later capabilities are kept as raw JSON for now.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use causeway_core::secret::Secret;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigFile {
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default)]
    pub client: ClientConfig,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_store: Option<StoreConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs_store: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<PluginEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_of_truth: Option<String>,
}

/// `client`: gateway-wide behaviour.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientConfig {
    /// When a provider's queue is full: true answers 503 `request_dropped`, false waits.
    #[serde(default)]
    pub drop_excess_requests: bool,
    #[serde(default = "default_body_mb")]
    pub max_request_body_size_mb: u64,
    /// CORS origins in addition to localhost ones; `*` and `*.example.com` patterns.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    #[serde(default)]
    pub enforce_auth_on_inference: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_pool_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_logging: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_content_logging: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_retention_days: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prometheus_labels: Vec<String>,
}

fn default_body_mb() -> u64 {
    100
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            drop_excess_requests: false,
            max_request_body_size_mb: default_body_mb(),
            allowed_origins: Vec::new(),
            allowed_headers: Vec::new(),
            enforce_auth_on_inference: false,
            initial_pool_size: None,
            enable_logging: None,
            disable_content_logging: None,
            log_retention_days: None,
            prometheus_labels: Vec::new(),
        }
    }
}

/// `providers.<name>` in config.json: settings plus keys. (Not `#[serde(flatten)]`: that
/// would hide unknown keys from the warnings.)
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProviderEntry {
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    #[serde(default)]
    pub network_config: NetworkConfig,
    #[serde(default)]
    pub concurrency_and_buffer_size: ConcurrencyConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_provider_config: Option<CustomProviderConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_config: Option<Value>,
    #[serde(default)]
    pub send_back_raw_request: bool,
    #[serde(default)]
    pub send_back_raw_response: bool,
    #[serde(default)]
    pub store_raw_request_response: bool,
}

impl ProviderEntry {
    pub fn settings(&self) -> ProviderSettings {
        ProviderSettings {
            network_config: self.network_config.clone(),
            concurrency_and_buffer_size: self.concurrency_and_buffer_size,
            custom_provider_config: self.custom_provider_config.clone(),
            proxy_config: self.proxy_config.clone(),
            send_back_raw_request: self.send_back_raw_request,
            send_back_raw_response: self.send_back_raw_response,
            store_raw_request_response: self.store_raw_request_response,
        }
    }
}

/// A provider's settings without its keys (what `/api/providers` manages).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProviderSettings {
    #[serde(default)]
    pub network_config: NetworkConfig,
    #[serde(default)]
    pub concurrency_and_buffer_size: ConcurrencyConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_provider_config: Option<CustomProviderConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_config: Option<Value>,
    #[serde(default)]
    pub send_back_raw_request: bool,
    #[serde(default)]
    pub send_back_raw_response: bool,
    #[serde(default)]
    pub store_raw_request_response: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CustomProviderConfig {
    /// Wire family: `openai` or `anthropic`.
    pub base_provider_type: String,
    #[serde(default)]
    pub is_key_less: bool,
}

/// `network_config`. `base_url` is the origin without `/v1`, as in Bifrost.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default)]
    pub extra_headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout")]
    pub default_request_timeout_in_seconds: u64,
    #[serde(default)]
    pub max_retries: u32,
    #[serde(default = "default_backoff_initial")]
    pub retry_backoff_initial: Millis,
    #[serde(default = "default_backoff_max")]
    pub retry_backoff_max: Millis,
    #[serde(default = "default_stream_idle")]
    pub stream_idle_timeout_in_seconds: u64,
}

fn default_timeout() -> u64 {
    30
}
fn default_backoff_initial() -> Millis {
    Millis(500)
}
fn default_backoff_max() -> Millis {
    Millis(5000)
}
fn default_stream_idle() -> u64 {
    60
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            base_url: None,
            extra_headers: BTreeMap::new(),
            default_request_timeout_in_seconds: default_timeout(),
            max_retries: 0,
            retry_backoff_initial: default_backoff_initial(),
            retry_backoff_max: default_backoff_max(),
            stream_idle_timeout_in_seconds: default_stream_idle(),
        }
    }
}

/// `concurrency_and_buffer_size`: upstream requests in flight, and how many may wait.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct ConcurrencyConfig {
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default = "default_buffer")]
    pub buffer_size: usize,
}

fn default_concurrency() -> usize {
    1000
}
fn default_buffer() -> usize {
    5000
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        ConcurrencyConfig {
            concurrency: default_concurrency(),
            buffer_size: default_buffer(),
        }
    }
}

/// One provider API key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: Secret,
    /// Models this key may serve; `["*"]` = all, `[]` = none (Bifrost v1.5+).
    #[serde(default = "all_models")]
    pub models: Vec<String>,
    #[serde(default)]
    pub blacklisted_models: Vec<String>,
    #[serde(default = "default_weight")]
    pub weight: f64,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn all_models() -> Vec<String> {
    vec!["*".to_owned()]
}
fn default_weight() -> f64 {
    1.0
}
fn default_true() -> bool {
    true
}

impl KeyConfig {
    pub fn allows_model(&self, model: &str) -> bool {
        if self.blacklisted_models.iter().any(|m| m == model) {
            return false;
        }
        self.models.iter().any(|m| m == "*" || m == model)
    }
}

/// `config_store`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoreConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(rename = "type", default = "default_store_type")]
    pub kind: String,
    #[serde(default)]
    pub config: StoreLocation,
}

fn default_store_type() -> String {
    "sqlite".to_owned()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StoreLocation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// `plugins[]` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PluginEntry {
    pub name: String,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Value>,
}

/// A duration in milliseconds; accepts an integer (ms) or a string like `"500ms"`, `"2s"`, `"1m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub u64);

impl Millis {
    pub fn duration(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor = match unit.trim() {
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    let ms = n * factor;
    (ms.is_finite() && ms >= 0.0).then_some(ms as u64)
}

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Millis;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "milliseconds as an integer, or a duration string like \"500ms\" or \"2s\"",
                )
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Millis, E> {
                Ok(Millis(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Millis, E> {
                u64::try_from(v)
                    .map(Millis)
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Millis, E> {
                if v.is_finite() && v >= 0.0 {
                    Ok(Millis(v as u64))
                } else {
                    Err(E::custom("a duration must be a non-negative number"))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Millis, E> {
                if let Ok(n) = v.parse::<u64>() {
                    return Ok(Millis(n));
                }
                parse_duration_ms(v).map(Millis).ok_or_else(|| {
                    E::custom(format!(
                        "invalid duration {v:?}: use milliseconds or a number with ms, s, m or h"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("2s"), Some(2000));
        assert_eq!(parse_duration_ms("1.5s"), Some(1500));
        assert_eq!(parse_duration_ms("5x"), None);
        let m: Millis = serde_json::from_str("\"1m\"").unwrap();
        assert_eq!(m, Millis(60_000));
        let m: Millis = serde_json::from_str("250").unwrap();
        assert_eq!(m, Millis(250));
    }

    #[test]
    fn key_defaults_allow_all() {
        let k: KeyConfig = serde_json::from_str(r#"{"name":"k","value":"sk-x"}"#).unwrap();
        assert!(k.enabled);
        assert_eq!(k.weight, 1.0);
        assert!(k.allows_model("gpt-4o"));
        let k: KeyConfig =
            serde_json::from_str(r#"{"name":"k","value":"sk-x","models":[]}"#).unwrap();
        assert!(!k.allows_model("gpt-4o"));
    }
}
