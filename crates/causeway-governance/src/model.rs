//! Governance records and management-API request bodies, with Bifrost's JSON field names.
//! Records hold configuration only: usage lives in the counters, and a virtual key's secret
//! value is never stored — only its SHA-256 (`value_hash`) and a short display hint.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

fn default_true() -> bool {
    true
}

fn default_weight() -> f64 {
    1.0
}

fn all_models() -> Vec<String> {
    vec!["*".to_owned()]
}

/// A virtual key: who may call which providers and models, within which limits.
///
/// Provider access (decided once, documented here and in the README):
/// - no `provider_configs` → every provider and model is allowed, unless
///   `allow_all_providers` is explicitly `false` (then nothing is);
/// - `provider_configs` present → only the listed providers (Bifrost v1.5 deny-by-default),
///   each restricted by its `allowed_models`, unless `allow_all_providers` is `true`: then
///   unlisted providers are allowed with every model and listed ones keep their restrictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VirtualKey {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Lowercase hex SHA-256 of the `sk-bf-…` value.
    pub value_hash: String,
    /// Display form, e.g. `sk-bf-abcd…wxyz`; never enough to use the key.
    #[serde(default)]
    pub value_hint: String,
    #[serde(default = "default_true")]
    pub is_active: bool,
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_all_providers: Option<bool>,
    /// Tri-state: `Some(true)` keeps request/response content out of the logs for calls
    /// made with this key, `Some(false)` or `None` follow the global setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_content_logging: Option<bool>,
    #[serde(default)]
    pub provider_configs: Vec<ProviderConfig>,
    #[serde(default)]
    pub budgets: Vec<BudgetConfig>,
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Management-API permissions, e.g. `plugins:read`, `governance:write`, `*`.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// RFC 3339; the key stops working at this instant.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Unix milliseconds.
    #[serde(default)]
    pub created_at: u64,
    #[serde(default)]
    pub updated_at: u64,
}

/// Access to one provider through a virtual key, with its own optional limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderConfig {
    pub provider: String,
    /// Routing weight among the key's providers (used by the engine, not by policy).
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Exact names, `*` (all) or `regex:<re>` (full match, case-insensitive). An explicit
    /// empty list allows no model (Bifrost v1.5); an omitted list means `["*"]`.
    #[serde(default = "all_models")]
    pub allowed_models: Vec<String>,
    /// Same patterns; the blacklist wins over the allow-list.
    #[serde(default)]
    pub blacklisted_models: Vec<String>,
    /// Provider key ids this virtual key may use; empty or `["*"]` = all keys.
    #[serde(default)]
    pub key_ids: Vec<String>,
    #[serde(default)]
    pub budgets: Vec<BudgetConfig>,
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
}

/// A spending cap in USD that resets every `reset_duration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetConfig {
    pub id: String,
    /// Dollars.
    pub max_limit: f64,
    /// `<n><unit>`, units `m h d w M Q Y`.
    pub reset_duration: String,
    /// UTC calendar boundaries when true; otherwise periods from `created_at`.
    #[serde(default)]
    pub calendar_aligned: bool,
    /// Unix milliseconds; the anchor of non-aligned windows (0 = use the owner's creation).
    #[serde(default)]
    pub created_at: u64,
}

/// Request and token caps, each with its own window (calendar-aligned in UTC).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitConfig {
    #[serde(default)]
    pub request_max_limit: Option<u64>,
    #[serde(default)]
    pub request_reset_duration: Option<String>,
    #[serde(default)]
    pub token_max_limit: Option<u64>,
    #[serde(default)]
    pub token_reset_duration: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Team {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub budgets: Vec<BudgetConfig>,
    #[serde(default)]
    pub created_at: u64,
    #[serde(default)]
    pub updated_at: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub budgets: Vec<BudgetConfig>,
    #[serde(default)]
    pub created_at: u64,
    #[serde(default)]
    pub updated_at: u64,
}

/// A budget as written in a create/update body. `id` lets an update keep a budget's usage;
/// without it, an existing budget with the same `reset_duration` is kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BudgetInput {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub max_limit: Option<f64>,
    #[serde(default)]
    pub reset_duration: String,
    #[serde(default)]
    pub calendar_aligned: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderConfigInput {
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub weight: Option<f64>,
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    #[serde(default)]
    pub blacklisted_models: Option<Vec<String>>,
    #[serde(default)]
    pub key_ids: Option<Vec<String>>,
    #[serde(default)]
    pub budgets: Option<Vec<BudgetInput>>,
    /// Legacy singular form (pre-v1.5); turned into `budgets: [budget]`.
    #[serde(default)]
    pub budget: Option<BudgetInput>,
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
}

/// `POST /api/governance/virtual-keys`. Unknown fields (`mcp_configs`, …) are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VirtualKeyCreate {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub is_active: Option<bool>,
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub allow_all_providers: Option<bool>,
    #[serde(default)]
    pub disable_content_logging: Option<bool>,
    #[serde(default)]
    pub provider_configs: Option<Vec<ProviderConfigInput>>,
    #[serde(default)]
    pub budgets: Option<Vec<BudgetInput>>,
    /// Legacy singular form (Bifrost silently ignored it after v1.5, #5673); accepted here
    /// and turned into `budgets: [budget]`.
    #[serde(default)]
    pub budget: Option<BudgetInput>,
    /// Default `calendar_aligned` for budgets that do not set their own.
    #[serde(default)]
    pub calendar_aligned: Option<bool>,
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// `PUT /api/governance/virtual-keys/{id}`: every field optional; absent = unchanged.
/// `team_id`/`customer_id`/`expires_at` set to `""` clear the value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VirtualKeyUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub is_active: Option<bool>,
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub allow_all_providers: Option<bool>,
    #[serde(default)]
    pub disable_content_logging: Option<bool>,
    #[serde(default)]
    pub provider_configs: Option<Vec<ProviderConfigInput>>,
    #[serde(default)]
    pub budgets: Option<Vec<BudgetInput>>,
    #[serde(default)]
    pub budget: Option<BudgetInput>,
    #[serde(default)]
    pub calendar_aligned: Option<bool>,
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Zero the spend of every budget of this key (the caller resets the counters).
    #[serde(default)]
    pub reset_budget_usage: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TeamCreate {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub budgets: Option<Vec<BudgetInput>>,
    #[serde(default)]
    pub budget: Option<BudgetInput>,
    #[serde(default)]
    pub calendar_aligned: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TeamUpdate {
    #[serde(default)]
    pub name: Option<String>,
    /// `""` detaches the team from its customer.
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub budgets: Option<Vec<BudgetInput>>,
    #[serde(default)]
    pub budget: Option<BudgetInput>,
    #[serde(default)]
    pub calendar_aligned: Option<bool>,
    #[serde(default)]
    pub reset_budget_usage: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomerCreate {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub budgets: Option<Vec<BudgetInput>>,
    #[serde(default)]
    pub budget: Option<BudgetInput>,
    #[serde(default)]
    pub calendar_aligned: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomerUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub budgets: Option<Vec<BudgetInput>>,
    #[serde(default)]
    pub budget: Option<BudgetInput>,
    #[serde(default)]
    pub calendar_aligned: Option<bool>,
    #[serde(default)]
    pub reset_budget_usage: Option<bool>,
}

/// Lowercase hex SHA-256 of a virtual-key value: the only form in which a value is stored
/// or looked up.
pub fn hash_virtual_key_value(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `sk-bf-abcd…wxyz`: the prefix, four characters and the last four, so an operator can
/// tell keys apart. Short (legacy) values reveal less, down to nothing for under 12 chars.
pub fn virtual_key_value_hint(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let tail: String = chars[n.saturating_sub(4)..].iter().collect();
    let prefix_len = if value.starts_with("sk-bf-") { 6 } else { 0 };
    if n >= prefix_len + 16 {
        let head: String = chars[..prefix_len + 4].iter().collect();
        format!("{head}…{tail}")
    } else if n >= 12 {
        let head: String = chars[..prefix_len.min(n)].iter().collect();
        format!("{head}…{tail}")
    } else {
        "…".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_hints() {
        assert_eq!(
            hash_virtual_key_value("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            virtual_key_value_hint("sk-bf-0123456789abcdefghijwxyz"),
            "sk-bf-0123…wxyz"
        );
        assert_eq!(virtual_key_value_hint("sk-bf-short1234"), "sk-bf-…1234");
        assert_eq!(virtual_key_value_hint("legacykey123"), "…y123");
        assert_eq!(virtual_key_value_hint("tiny"), "…");
    }

    #[test]
    fn defaults_follow_bifrost() {
        let vk: VirtualKey = serde_json::from_str(
            r#"{"id":"v","name":"n","value_hash":"h","provider_configs":[{"provider":"openai"}]}"#,
        )
        .unwrap();
        assert!(vk.is_active);
        let pc = &vk.provider_configs[0];
        assert_eq!(pc.weight, 1.0);
        assert_eq!(pc.allowed_models, ["*"]);
        assert!(pc.key_ids.is_empty());
        let explicit: ProviderConfig =
            serde_json::from_str(r#"{"provider":"openai","allowed_models":[]}"#).unwrap();
        assert!(explicit.allowed_models.is_empty());
    }
}
