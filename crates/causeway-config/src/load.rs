//! Reading and checking config: `config.json` text to a validated `ConfigFile` (errors name
//! the JSON path of the bad field; unknown keys become warnings), the no-config default from
//! provider key variables, and the per-provider checks the management API reuses.

use std::collections::HashSet;
use std::fmt;

use causeway_core::secret::Secret;
use sha2::{Digest, Sha256};

use crate::catalog::{self, Family};
use crate::schema::{ConfigFile, KeyConfig, ProviderEntry, ProviderSettings};

/// A config problem with the JSON path of the offending field.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub file: ConfigFile,
    /// Unknown keys and suspicious values, one line each, for the start-up log.
    pub warnings: Vec<String>,
}

/// Parses and validates config.json text.
pub fn parse_config(text: &str) -> Result<LoadedConfig, ConfigError> {
    let mut warnings = Vec::new();
    let mut de = serde_json::Deserializer::from_str(text);
    let mut on_unknown = |path: serde_ignored::Path<'_>| {
        warnings.push(format!(
            "unknown key {} is ignored (check its spelling against docs/config.md)",
            json_path(&path.to_string())
        ));
    };
    let ignored = serde_ignored::Deserializer::new(&mut de, &mut on_unknown);
    let file: ConfigFile = serde_path_to_error::deserialize(ignored).map_err(|e| {
        let path = json_path(&e.path().to_string());
        ConfigError::new(path, e.inner().to_string())
    })?;
    de.end()
        .map_err(|e| ConfigError::new("", format!("trailing characters after the JSON: {e}")))?;
    let mut file = file;
    warnings.extend(normalise_and_validate(&mut file)?);
    Ok(LoadedConfig { file, warnings })
}

fn json_path(p: &str) -> String {
    if p.is_empty() || p == "." {
        "(root)".to_owned()
    } else {
        p.to_owned()
    }
}

/// Fills derived values (key ids, default names) and checks cross-field rules.
pub fn normalise_and_validate(file: &mut ConfigFile) -> Result<Vec<String>, ConfigError> {
    let mut warnings = Vec::new();
    if file.client.max_request_body_size_mb == 0 {
        return Err(ConfigError::new(
            "client.max_request_body_size_mb",
            "must be at least 1",
        ));
    }
    if let Some(store) = &file.config_store
        && store.enabled
        && store.kind != "sqlite"
    {
        return Err(ConfigError::new(
            "config_store.type",
            format!(
                "unsupported config store type {:?}: this build supports \"sqlite\"",
                store.kind
            ),
        ));
    }
    for (name, entry) in file.providers.iter_mut() {
        let path = format!("providers.{name}");
        validate_provider(name, &entry.settings(), &path)?;
        warnings.extend(provider_warnings(name, entry, &path));
        normalise_keys(
            name,
            &mut entry.keys,
            &format!("{path}.keys"),
            &mut warnings,
        )?;
    }
    let mut seen = HashSet::new();
    for (i, p) in file.plugins.iter().enumerate() {
        if p.name.trim().is_empty() {
            return Err(ConfigError::new(
                format!("plugins[{i}].name"),
                "plugin name is required",
            ));
        }
        if !seen.insert(p.name.clone()) {
            return Err(ConfigError::new(
                format!("plugins[{i}].name"),
                format!("duplicate plugin name {:?}", p.name),
            ));
        }
    }
    Ok(warnings)
}

fn provider_warnings(name: &str, entry: &ProviderEntry, path: &str) -> Vec<String> {
    let mut w = Vec::new();
    if let Some(url) = &entry.network_config.base_url
        && url.trim_end_matches('/').ends_with("/v1")
    {
        w.push(format!(
            "{path}.network_config.base_url ends with /v1: Causeway (like Bifrost) appends /v1 itself, so requests will go to .../v1/v1/..."
        ));
    }
    let keyless = resolve_provider(name, &entry.settings())
        .map(|r| r.keyless)
        .unwrap_or(false);
    if !keyless && entry.keys.is_empty() {
        w.push(format!(
            "{path} has no keys: requests to it will fail until a key is added"
        ));
    }
    w
}

/// `base.field`, or just `field` when `base` is empty (API bodies have no enclosing path).
fn join(base: &str, field: &str) -> String {
    if base.is_empty() {
        field.to_owned()
    } else {
        format!("{base}.{field}")
    }
}

/// A value that can be sent as an HTTP header value (visible ASCII, space and tab).
fn header_value_invalid(v: &str) -> bool {
    v.bytes()
        .any(|b| !(b == b'\t' || (0x20..0x7f).contains(&b)))
}

/// Checks a provider's settings; used at load time and by the management API.
pub fn validate_provider(
    name: &str,
    settings: &ProviderSettings,
    path: &str,
) -> Result<(), ConfigError> {
    validate_provider_name(name).map_err(|m| ConfigError::new(path, m))?;
    resolve_provider(name, settings)?;
    let net = &settings.network_config;
    if let Some(url) = &net.base_url
        && let Err(why) = check_base_url(url)
    {
        return Err(ConfigError::new(
            join(path, "network_config.base_url"),
            format!("{url:?} {why}"),
        ));
    }
    if net.retry_backoff_initial.0 > net.retry_backoff_max.0 {
        return Err(ConfigError::new(
            join(path, "network_config.retry_backoff_initial"),
            "must not be larger than retry_backoff_max",
        ));
    }
    if net.default_request_timeout_in_seconds == 0 {
        return Err(ConfigError::new(
            join(path, "network_config.default_request_timeout_in_seconds"),
            "must be at least 1",
        ));
    }
    for (h, v) in &net.extra_headers {
        if http_header_name_invalid(h) {
            return Err(ConfigError::new(
                join(path, "network_config.extra_headers"),
                format!("{h:?} is not a valid HTTP header name"),
            ));
        }
        if header_value_invalid(v) {
            return Err(ConfigError::new(
                join(path, &format!("network_config.extra_headers.{h}")),
                "the value contains characters not allowed in an HTTP header (control characters or non-ASCII)",
            ));
        }
    }
    if settings.concurrency_and_buffer_size.concurrency == 0 {
        return Err(ConfigError::new(
            join(path, "concurrency_and_buffer_size.concurrency"),
            "must be at least 1",
        ));
    }
    Ok(())
}

fn http_header_name_invalid(h: &str) -> bool {
    h.is_empty()
        || !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub fn validate_provider_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("provider name is required".to_owned());
    }
    if name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "invalid provider name {name:?}: use lower-case letters, digits, '-' and '_' (at most 64)"
        ));
    }
    Ok(())
}

/// What the router needs to know about a provider's wire protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedProvider {
    pub family: Family,
    /// See `ProviderSpec::stream_usage_option` (false for custom providers: unknown servers
    /// may reject the field).
    pub stream_usage_option: bool,
    /// Origin without a trailing slash.
    pub base_url: String,
    pub api_prefix: &'static str,
    pub keyless: bool,
}

/// A base URL requests can be built on: scheme, host, optional path prefix, nothing else.
fn check_base_url(url: &str) -> Result<(), &'static str> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err("is not an http:// or https:// URL");
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|_| "is not a valid URL (e.g. https://api.openai.com)")?;
    if uri.host().is_none_or(str::is_empty) {
        // `http::Uri` refuses an empty authority already; kept for what it might accept.
        return Err("has no host (e.g. https://api.openai.com)");
    }
    if uri.query().is_some() {
        return Err("must not carry a query: give scheme, host and an optional path prefix");
    }
    Ok(())
}

/// Resolves a provider name + settings to its family and URL, or explains what is missing.
pub fn resolve_provider(
    name: &str,
    settings: &ProviderSettings,
) -> Result<ResolvedProvider, ConfigError> {
    let configured_url = settings
        .network_config
        .base_url
        .as_deref()
        .map(|u| u.trim_end_matches('/').to_owned())
        .filter(|u| !u.is_empty());
    if let Some(custom) = &settings.custom_provider_config {
        let family = Family::parse(&custom.base_provider_type).ok_or_else(|| {
            ConfigError::new(
                format!("providers.{name}.custom_provider_config.base_provider_type"),
                format!(
                    "unsupported base_provider_type {:?}: use \"openai\" or \"anthropic\"",
                    custom.base_provider_type
                ),
            )
        })?;
        let spec = catalog::builtin_spec(name);
        let base_url = configured_url
            .or_else(|| spec.and_then(|s| s.default_base_url).map(str::to_owned))
            .ok_or_else(|| {
                ConfigError::new(
                    format!("providers.{name}.network_config.base_url"),
                    "a custom provider needs network_config.base_url",
                )
            })?;
        return Ok(ResolvedProvider {
            family,
            stream_usage_option: false,
            base_url,
            api_prefix: "/v1",
            keyless: custom.is_key_less,
        });
    }
    let spec = catalog::builtin_spec(name).ok_or_else(|| {
        ConfigError::new(
            format!("providers.{name}"),
            format!(
                "unknown provider {name:?}: use one of {} or set custom_provider_config.base_provider_type",
                catalog::builtin_names()
            ),
        )
    })?;
    let base_url = configured_url
        .or_else(|| spec.default_base_url.map(str::to_owned))
        .ok_or_else(|| {
            ConfigError::new(
                format!("providers.{name}.network_config.base_url"),
                format!("provider {name:?} has no default URL: set network_config.base_url"),
            )
        })?;
    Ok(ResolvedProvider {
        family: spec.family,
        stream_usage_option: spec.stream_usage_option,
        base_url,
        api_prefix: spec.api_prefix,
        keyless: spec.keyless,
    })
}

/// Gives every key a name and a stable id and checks uniqueness and weights.
pub fn normalise_keys(
    provider: &str,
    keys: &mut [KeyConfig],
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    let mut ids = HashSet::new();
    for (i, key) in keys.iter_mut().enumerate() {
        let kpath = format!("{path}[{i}]");
        if key.name.trim().is_empty() {
            key.name = format!("{provider}-key-{}", i + 1);
        }
        validate_key(key, &kpath)?;
        if key.id.as_deref().is_none_or(str::is_empty) {
            key.id = Some(stable_key_id(provider, &key.name));
        }
        if !names.insert(key.name.clone()) {
            return Err(ConfigError::new(
                format!("{kpath}.name"),
                format!("duplicate key name {:?} in provider {provider}", key.name),
            ));
        }
        if let Some(id) = &key.id
            && !ids.insert(id.clone())
        {
            return Err(ConfigError::new(
                format!("{kpath}.id"),
                format!("duplicate key id {id:?}"),
            ));
        }
        if key.models.is_empty() {
            warnings.push(format!(
                "{kpath} ({}) has models: [] and serves no model; use [\"*\"] for all",
                key.name
            ));
        }
        if let Some(env) = key.value.env_name()
            && std::env::var_os(env).is_none()
        {
            warnings.push(format!(
                "{kpath}.value refers to environment variable {env}, which is not set"
            ));
        }
    }
    Ok(())
}

/// Checks one key (also used by the management API).
pub fn validate_key(key: &KeyConfig, path: &str) -> Result<(), ConfigError> {
    if !key.weight.is_finite() || key.weight < 0.0 {
        return Err(ConfigError::new(
            join(path, "weight"),
            "must be a number >= 0",
        ));
    }
    if key.value.raw() == "env." {
        return Err(ConfigError::new(
            join(path, "value"),
            "\"env.\" needs a variable name, e.g. \"env.OPENAI_API_KEY\"",
        ));
    }
    if key.value.env_name().is_none() && header_value_invalid(key.value.raw()) {
        return Err(ConfigError::new(
            join(path, "value"),
            "the key contains characters that cannot be sent in an HTTP header (control characters or non-ASCII)",
        ));
    }
    Ok(())
}

/// A key id derived from provider and key name, so config.json keys keep their ids across
/// restarts without the file having to spell them out.
pub fn stable_key_id(provider: &str, key_name: &str) -> String {
    let digest = Sha256::digest(format!("{provider}\u{0}{key_name}").as_bytes());
    let h: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The config used when there is no config.json: every built-in provider whose usual key
/// variable is set, with that variable as an `env.` reference (the secret is never copied).
pub fn config_from_env(is_set: impl Fn(&str) -> bool) -> ConfigFile {
    let mut file = ConfigFile::default();
    for spec in catalog::PROVIDERS {
        let Some(var) = spec.env_key else { continue };
        if !is_set(var) {
            continue;
        }
        let name = format!("{}-env", spec.name);
        let key = KeyConfig {
            id: Some(stable_key_id(spec.name, &name)),
            name,
            value: Secret::new(format!("env.{var}")),
            models: vec!["*".to_owned()],
            blacklisted_models: Vec::new(),
            weight: 1.0,
            enabled: true,
            description: Some(format!("from ${var}")),
        };
        file.providers.insert(
            spec.name.to_owned(),
            ProviderEntry {
                keys: vec![key],
                ..ProviderEntry::default()
            },
        );
    }
    file
}

/// Hash of a JSON-serialisable entity, used to notice config.json edits between starts.
pub fn content_hash<T: serde::Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_field_reports_json_path() {
        let err = parse_config(
            r#"{"providers":{"openai":{"keys":[{"name":"a","value":"x","weight":"heavy"}]}}}"#,
        )
        .unwrap_err();
        assert_eq!(err.path, "providers.openai.keys[0].weight");
    }

    #[test]
    fn unknown_keys_warn() {
        let loaded = parse_config(
            r#"{"client":{"drop_excess_requestz":true},"providers":{"openai":{"keys":[{"name":"a","value":"x"}],"network_config":{"base_urll":"x"}}}}"#,
        )
        .unwrap();
        let w = loaded.warnings.join("\n");
        assert!(w.contains("client.drop_excess_requestz"), "{w}");
        assert!(
            w.contains("providers.openai.network_config.base_urll"),
            "{w}"
        );
    }

    #[test]
    fn unknown_provider_needs_custom_config() {
        let err = parse_config(r#"{"providers":{"acme":{"keys":[]}}}"#).unwrap_err();
        assert_eq!(err.path, "providers.acme");
        assert!(err.message.contains("custom_provider_config"));
        let ok = parse_config(
            r#"{"providers":{"acme":{"keys":[],"custom_provider_config":{"base_provider_type":"openai"},"network_config":{"base_url":"http://127.0.0.1:9"}}}}"#,
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn vllm_requires_base_url() {
        let err = parse_config(r#"{"providers":{"vllm":{}}}"#).unwrap_err();
        assert_eq!(err.path, "providers.vllm.network_config.base_url");
    }

    #[test]
    fn keys_get_stable_ids_and_names() {
        let a = parse_config(r#"{"providers":{"openai":{"keys":[{"value":"x"}]}}}"#).unwrap();
        let b = parse_config(r#"{"providers":{"openai":{"keys":[{"value":"y"}]}}}"#).unwrap();
        let ka = &a.file.providers["openai"].keys[0];
        let kb = &b.file.providers["openai"].keys[0];
        assert_eq!(ka.name, "openai-key-1");
        assert_eq!(ka.id, kb.id);
    }

    #[test]
    fn duplicate_key_names_rejected() {
        let err = parse_config(
            r#"{"providers":{"openai":{"keys":[{"name":"a","value":"x"},{"name":"a","value":"y"}]}}}"#,
        )
        .unwrap_err();
        assert_eq!(err.path, "providers.openai.keys[1].name");
    }

    #[test]
    fn syntax_error_is_reported() {
        let err = parse_config(r#"{"providers": {"#).unwrap_err();
        assert!(!err.message.is_empty());
    }

    #[test]
    fn env_autoconfig_uses_references() {
        let f = config_from_env(|v| v == "OPENAI_API_KEY" || v == "GROQ_API_KEY");
        assert_eq!(f.providers.len(), 2);
        assert_eq!(
            f.providers["openai"].keys[0].value.raw(),
            "env.OPENAI_API_KEY"
        );
    }

    #[test]
    fn backoff_order_checked() {
        let err = parse_config(
            r#"{"providers":{"openai":{"keys":[],"network_config":{"retry_backoff_initial":"10s","retry_backoff_max":"1s"}}}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.path,
            "providers.openai.network_config.retry_backoff_initial"
        );
    }
}
