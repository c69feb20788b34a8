//! `auth_config` of config.json: Bifrost's admin-password block plus Causeway's `jwt` extension.
//! Only shapes, defaults and advisory warnings live here; `Authenticator::new` resolves `env.NAME`
//! references and rejects what cannot work.

use std::path::PathBuf;
use std::time::Duration;

use causeway_core::secret::Secret;
use serde::{Deserialize, Serialize};

/// Sessions live 30 days unless configured otherwise (Bifrost's session cookie lifetime).
pub const DEFAULT_SESSION_TTL_HOURS: u64 = 720;

/// A leeway above this mostly disables `exp`/`nbf`, so it is worth a warning.
const LARGE_LEEWAY_SECONDS: u64 = 300;

/// `auth_config` (Bifrost's fields plus Causeway's `jwt` and `session_ttl_hours`).
///
/// Unknown fields are tolerated here because newer Bifrost versions add fields to this block and a
/// Bifrost config.json must load unchanged. `Serialize` writes secrets as configured (literal or
/// `env.NAME`), so it is for persisting config, never for API responses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    pub is_enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_username: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_password: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfig>,
    /// Deprecated in Bifrost v2: accepted so old files load, otherwise ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_auth_on_inference: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_ttl_hours: Option<u64>,
}

/// `auth_config.jwt`: how bearer JWTs are verified and mapped to an identity.
///
/// Unknown fields are rejected: this block is Causeway's own, and a misspelt `issuer` or
/// `audience` would otherwise silently turn a check off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    pub keys: Vec<JwtKeyConfig>,
    /// A JWKS JSON file, re-read when a token names an unknown `kid` (at most once per 10 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Claim holding the roles; a dotted path (`realm_access.roles`) walks nested objects.
    pub roles_claim: String,
    pub admin_roles: Vec<String>,
    /// Claim holding a virtual key (id or `sk-bf-` value); MPilot's `accessKey` is always checked too.
    pub virtual_key_claim: String,
    pub leeway_seconds: u64,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            keys: Vec::new(),
            jwks_file: None,
            issuer: None,
            audience: None,
            roles_claim: "roles".to_owned(),
            admin_roles: vec!["admin".to_owned()],
            virtual_key_claim: "vk".to_owned(),
            leeway_seconds: 30,
        }
    }
}

/// One configured verification key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// `HS256`/`HS384`/`HS512`, `RS256`/`RS384`/`RS512`, `PS256`/`PS384`/`PS512`,
    /// `ES256`/`ES384` or `EdDSA`. A key verifies tokens of exactly this algorithm.
    pub alg: String,
    /// Shared secret for HS* (may be `env.NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// PEM public key for RS/PS/ES/EdDSA (may be `env.NAME` holding the PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_pem: Option<Secret>,
    /// When set, the key verifies only tokens whose header carries this `kid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

/// A configuration mistake, naming the field (`auth_config.jwt.keys[1].public_key_pem`) and what
/// is wrong with it. Never contains a secret's value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct AuthConfigError {
    pub field: String,
    pub reason: String,
}

impl AuthConfigError {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        AuthConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl AuthConfig {
    /// How long a login session lives (`session_ttl_hours`, default 30 days; 0 means default).
    pub fn session_ttl(&self) -> Duration {
        let hours = match self.session_ttl_hours {
            Some(h) if h > 0 => h,
            _ => DEFAULT_SESSION_TTL_HOURS,
        };
        Duration::from_secs(hours.saturating_mul(3600))
    }

    /// Things that load but are probably not what the operator meant; the server logs them at
    /// startup. None of them contain a secret's value.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.disable_auth_on_inference.is_some() {
            out.push(
                "auth_config.disable_auth_on_inference is deprecated (Bifrost v2) and ignored; \
                 inference auth is governed by client.enforce_auth_on_inference"
                    .to_owned(),
            );
        }
        let has_password = self
            .admin_password
            .as_ref()
            .is_some_and(|p| !p.resolve().is_empty());
        let has_jwt = self
            .jwt
            .as_ref()
            .is_some_and(|j| !j.keys.is_empty() || j.jwks_file.is_some());
        if self.is_enabled && !has_password && !has_jwt {
            out.push(
                "auth_config.is_enabled is true but neither admin_password nor jwt keys are \
                 configured: no credential can log in to the management API"
                    .to_owned(),
            );
        }
        if let Some(p) = &self.admin_password
            && looks_like_bcrypt(&p.resolve())
        {
            out.push(
                "auth_config.admin_password looks like a bcrypt hash; Causeway compares the \
                 configured value as the plain password (use env.NAME to keep it out of the file)"
                    .to_owned(),
            );
        }
        if self.session_ttl_hours == Some(0) {
            out.push(format!(
                "auth_config.session_ttl_hours is 0; using the default of {DEFAULT_SESSION_TTL_HOURS}"
            ));
        }
        if let Some(jwt) = &self.jwt {
            jwt_warnings(jwt, &mut out);
        }
        out
    }
}

fn jwt_warnings(jwt: &JwtConfig, out: &mut Vec<String>) {
    if jwt.leeway_seconds > LARGE_LEEWAY_SECONDS {
        out.push(format!(
            "auth_config.jwt.leeway_seconds is {}; more than {LARGE_LEEWAY_SECONDS} s keeps expired \
             tokens usable for that long",
            jwt.leeway_seconds
        ));
    }
    if jwt.jwks_file.is_some() && jwt.audience.is_none() {
        out.push(
            "auth_config.jwt.audience is not set: every token signed by the jwks_file keys is \
             accepted, including tokens the identity provider issued for other applications"
                .to_owned(),
        );
    }
    for (i, key) in jwt.keys.iter().enumerate() {
        // RFC 7518 §3.2: an HMAC key must be at least as long as the hash output, otherwise a
        // captured token lets an attacker guess the secret offline.
        let min = match key.alg.as_str() {
            "HS256" => 32,
            "HS384" => 48,
            "HS512" => 64,
            _ => continue,
        };
        if let Some(secret) = &key.secret {
            let len = secret.resolve().len();
            if len > 0 && len < min {
                out.push(format!(
                    "auth_config.jwt.keys[{i}].secret is {len} bytes; {} wants at least {min} \
                     random bytes",
                    key.alg
                ));
            }
        }
    }
}

/// `$2a$`/`$2b$`/`$2y$` + cost + 53 characters: what Bifrost stores for admin passwords.
fn looks_like_bcrypt(value: &str) -> bool {
    value.len() == 60
        && (value.starts_with("$2a$") || value.starts_with("$2b$") || value.starts_with("$2y$"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_from_empty_object() {
        let cfg: AuthConfig = serde_json::from_str("{}").unwrap();
        assert!(!cfg.is_enabled);
        assert!(cfg.jwt.is_none());
        assert_eq!(cfg.session_ttl(), Duration::from_secs(720 * 3600));
        let jwt: JwtConfig = serde_json::from_str(r#"{"keys":[]}"#).unwrap();
        assert_eq!(jwt.roles_claim, "roles");
        assert_eq!(jwt.admin_roles, vec!["admin"]);
        assert_eq!(jwt.virtual_key_claim, "vk");
        assert_eq!(jwt.leeway_seconds, 30);
    }

    #[test]
    fn bifrost_block_loads_and_deprecated_flag_warns() {
        let cfg: AuthConfig = serde_json::from_str(
            r#"{"is_enabled":true,"admin_username":"env.BIFROST_ADMIN_USERNAME",
                "admin_password":{"value":"","env_var":"BIFROST_ADMIN_PASSWORD","from_env":true},
                "disable_auth_on_inference":true,"some_future_field":1}"#,
        )
        .unwrap();
        assert_eq!(
            cfg.admin_password.as_ref().map(|s| s.raw()),
            Some("env.BIFROST_ADMIN_PASSWORD")
        );
        let w = cfg.warnings();
        assert!(w.iter().any(|w| w.contains("disable_auth_on_inference")));
    }

    #[test]
    fn jwt_block_rejects_misspelt_fields() {
        // `isuer` instead of `issuer` must not silently disable the issuer check.
        let err = serde_json::from_str::<JwtConfig>(r#"{"isuer":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("isuer"));
    }

    #[test]
    fn warns_about_short_hmac_secret_and_bcrypt_without_echoing_them() {
        let cfg = AuthConfig {
            is_enabled: true,
            admin_password: Some(Secret::new(
                "$2b$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234",
            )),
            jwt: Some(JwtConfig {
                keys: vec![JwtKeyConfig {
                    alg: "HS256".into(),
                    secret: Some(Secret::new("short-secret")),
                    public_key_pem: None,
                    kid: None,
                }],
                ..JwtConfig::default()
            }),
            ..AuthConfig::default()
        };
        let w = cfg.warnings().join("\n");
        assert!(w.contains("bcrypt"), "{w}");
        assert!(w.contains("keys[0].secret is 12 bytes"), "{w}");
        assert!(!w.contains("short-secret"));
        assert!(!w.contains("$2b$10$"));
    }

    #[test]
    fn enabled_without_credentials_warns() {
        let cfg = AuthConfig {
            is_enabled: true,
            ..AuthConfig::default()
        };
        assert!(cfg.warnings().iter().any(|w| w.contains("no credential")));
    }
}
