//! The `Authenticator`: built once from `auth_config`, it checks admin passwords and verifies
//! bearer JWTs (HMAC secrets, PEM public keys, a JWKS file re-read when keys rotate) and maps
//! their claims to a `JwtIdentity`.
//!
//! Algorithm confusion is ruled out structurally: every key carries the algorithms it may verify
//! (one for a configured key; the key type's family for a JWKS key without `alg`), a token is only
//! tried against keys that allow the algorithm its header names, and jsonwebtoken's verifier
//! additionally refuses a key of another family. `alg: none` has no key and is refused up front.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use causeway_core::secret::Secret;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AuthConfig, AuthConfigError, JwtConfig, JwtKeyConfig};
use crate::error::AuthError;

/// Real JWTs are well under 8 KiB; the cap bounds the work an unauthenticated caller can cause.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// A JWKS re-read is triggered by tokens with unknown `kid`s, which anyone can send.
const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
const MAX_JWKS_BYTES: u64 = 1024 * 1024;
/// Below 2048 bits RSA is considered breakable (NIST SP 800-131A); above 8192 the RSA backend
/// refuses the key at verification time, so both are rejected when the key is loaded.
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;
const MAX_RSA_EXPONENT: u64 = (1 << 33) - 1;
/// A leeway beyond a day is a configuration mistake, and capping it keeps the arithmetic small.
const MAX_LEEWAY_SECONDS: u64 = 86_400;

pub(crate) const SUPPORTED_ALGS: &str =
    "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";

const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Who a verified JWT says the caller is.
#[derive(Clone, PartialEq)]
pub struct JwtIdentity {
    pub subject: Option<String>,
    /// True when one of `roles` is in `auth_config.jwt.admin_roles`.
    pub is_admin: bool,
    pub roles: Vec<String>,
    /// The virtual key claim (`vk` by default, else MPilot's `accessKey`): an id or an `sk-bf-` value.
    pub virtual_key: Option<String>,
    /// `tenantId` (MPilot) or `tenant_id`.
    pub tenant_id: Option<String>,
    /// `userId` (MPilot) or `user_id`.
    pub user_id: Option<String>,
    /// `exp` as Unix seconds, when present.
    pub expires_at: Option<i64>,
    /// Every claim, for plugins and logging decisions made elsewhere.
    pub claims: Value,
}

/// Debug hides the virtual key and the raw claims, which may hold one.
impl fmt::Debug for JwtIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtIdentity")
            .field("subject", &self.subject)
            .field("is_admin", &self.is_admin)
            .field("roles", &self.roles)
            .field(
                "virtual_key",
                &self
                    .virtual_key
                    .as_deref()
                    .map(causeway_core::secret::redact),
            )
            .field("tenant_id", &self.tenant_id)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .field(
                "claims",
                &format_args!("<{} claims>", self.claims.as_object().map_or(0, Map::len)),
            )
            .finish()
    }
}

/// Verifies credentials against `auth_config`. Build once; `Send + Sync`, share it in an `Arc`.
pub struct Authenticator {
    is_enabled: bool,
    admin: Option<AdminDigest>,
    jwt: Option<JwtVerifier>,
    session_ttl: Duration,
}

/// SHA-256 of the admin user and password: fixed-length values make the comparison constant-time
/// regardless of input length, and the plain password does not stay in memory.
struct AdminDigest {
    user: [u8; 32],
    pass: [u8; 32],
}

struct VerifyKey {
    kid: Option<String>,
    algs: Vec<Algorithm>,
    key: DecodingKey,
    /// Where the key came from, for logs (`auth_config.jwt.keys[1]`, `jwks_file kid rsa-1`).
    origin: String,
}

struct JwksSource {
    path: PathBuf,
    keys: RwLock<Arc<Vec<VerifyKey>>>,
    /// Last refresh triggered by an unknown `kid`; the load at startup does not count, so a key
    /// rotated in right after start is picked up by the first token that needs it.
    last_refresh: Mutex<Option<Instant>>,
}

struct JwtVerifier {
    keys: Vec<VerifyKey>,
    jwks: Option<JwksSource>,
    issuer: Option<String>,
    audience: Option<String>,
    roles_claim: String,
    admin_roles: Vec<String>,
    vk_claim: String,
    leeway: i64,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<String> = Vec::new();
        if let Some(jwt) = &self.jwt {
            keys.extend(jwt.keys.iter().map(describe_key));
            if let Some(src) = &jwt.jwks {
                keys.extend(src.snapshot().iter().map(describe_key));
            }
        }
        f.debug_struct("Authenticator")
            .field("is_enabled", &self.is_enabled)
            .field("has_admin_password", &self.admin.is_some())
            .field("jwt_keys", &keys)
            .finish()
    }
}

fn describe_key(k: &VerifyKey) -> String {
    format!("{} {:?}", k.origin, k.algs)
}

impl Authenticator {
    /// Resolves `env.NAME` references, parses PEM keys and the JWKS file, and rejects settings
    /// that cannot work; errors name the field (`auth_config.jwt.keys[1].public_key_pem: ...`).
    pub fn new(cfg: &AuthConfig) -> Result<Self, AuthConfigError> {
        let admin = admin_digest(cfg)?;
        let jwt = cfg.jwt.as_ref().map(JwtVerifier::new).transpose()?;
        Ok(Authenticator {
            is_enabled: cfg.is_enabled,
            admin,
            jwt,
            session_ttl: cfg.session_ttl(),
        })
    }

    /// Auth is on when `is_enabled` is set or any JWT key source is configured.
    pub fn enabled(&self) -> bool {
        self.is_enabled || self.jwt.is_some()
    }

    pub fn has_admin_password(&self) -> bool {
        self.admin.is_some()
    }

    /// True when JWT keys (configured or from `jwks_file`) are available.
    pub fn has_jwt(&self) -> bool {
        self.jwt.is_some()
    }

    pub fn session_ttl(&self) -> Duration {
        self.session_ttl
    }

    /// Compares both user name and password in constant time (neither their length nor the
    /// position of a difference shows in the timing). False when no admin password is configured.
    pub fn check_admin_password(&self, user: &str, pass: &str) -> bool {
        let Some(admin) = &self.admin else {
            return false;
        };
        let user = Sha256::digest(user.as_bytes());
        let pass = Sha256::digest(pass.as_bytes());
        // `&` on `Choice`, not `&&`: both comparisons always run.
        bool::from(user.as_slice().ct_eq(&admin.user) & pass.as_slice().ct_eq(&admin.pass))
    }

    /// Verifies a compact JWS at the current time. May re-read `jwks_file` synchronously (a
    /// small file, at most once per 10 s) when the token names an unknown `kid`.
    pub fn verify_jwt(&self, token: &str) -> Result<JwtIdentity, AuthError> {
        self.verify_jwt_at(token, unix_now())
    }

    /// `verify_jwt` as of `now_unix` (seconds since the epoch), for callers with their own clock.
    pub fn verify_jwt_at(&self, token: &str, now_unix: i64) -> Result<JwtIdentity, AuthError> {
        self.verify_inner(token, now_unix, Instant::now())
    }

    /// Re-reads `jwks_file` now, ignoring the rate limit (e.g. on SIGHUP). Returns the number of
    /// usable keys; on error the previous keys stay in force.
    pub fn reload_jwks(&self) -> Result<usize, AuthConfigError> {
        match self.jwt.as_ref().and_then(|j| j.jwks.as_ref()) {
            Some(src) => src.reload(),
            None => Ok(0),
        }
    }

    fn verify_inner(
        &self,
        token: &str,
        now_unix: i64,
        now: Instant,
    ) -> Result<JwtIdentity, AuthError> {
        let jwt = self.jwt.as_ref().ok_or(AuthError::JwtNotConfigured)?;
        jwt.verify(token, now_unix, now)
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn admin_digest(cfg: &AuthConfig) -> Result<Option<AdminDigest>, AuthConfigError> {
    let Some(password) = &cfg.admin_password else {
        return Ok(None);
    };
    let pass = password.resolve();
    if pass.is_empty() {
        // An explicit reference to a missing variable is a mistake worth stopping for, but only
        // when auth is on: Bifrost files often carry the references with auth disabled.
        if let Some(name) = password.env_name()
            && cfg.is_enabled
        {
            return Err(AuthConfigError::new(
                "auth_config.admin_password",
                format!("env.{name} is not set or is empty"),
            ));
        }
        return Ok(None);
    }
    let user = match &cfg.admin_username {
        Some(u) => {
            let resolved = u.resolve();
            match (resolved.is_empty(), u.env_name()) {
                (true, Some(name)) if cfg.is_enabled => {
                    return Err(AuthConfigError::new(
                        "auth_config.admin_username",
                        format!("env.{name} is not set or is empty"),
                    ));
                }
                (true, Some(_)) => return Ok(None),
                (true, None) => "admin".to_owned(),
                (false, _) => resolved,
            }
        }
        None => "admin".to_owned(),
    };
    Ok(Some(AdminDigest {
        user: Sha256::digest(user.as_bytes()).into(),
        pass: Sha256::digest(pass.as_bytes()).into(),
    }))
}

impl JwtVerifier {
    fn new(cfg: &JwtConfig) -> Result<Self, AuthConfigError> {
        if cfg.keys.is_empty() && cfg.jwks_file.is_none() {
            return Err(AuthConfigError::new(
                "auth_config.jwt",
                "configure at least one entry in keys, or a jwks_file",
            ));
        }
        if cfg.roles_claim.is_empty() {
            return Err(AuthConfigError::new(
                "auth_config.jwt.roles_claim",
                "is empty",
            ));
        }
        if cfg.virtual_key_claim.is_empty() {
            return Err(AuthConfigError::new(
                "auth_config.jwt.virtual_key_claim",
                "is empty",
            ));
        }
        for (field, value) in [("issuer", &cfg.issuer), ("audience", &cfg.audience)] {
            if value.as_deref() == Some("") {
                return Err(AuthConfigError::new(
                    format!("auth_config.jwt.{field}"),
                    "is empty; remove it to skip the check, or set the expected value",
                ));
            }
        }
        let keys = cfg
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| load_configured_key(i, k))
            .collect::<Result<Vec<_>, _>>()?;
        let jwks = match &cfg.jwks_file {
            Some(path) => {
                let keys = load_jwks(path)?;
                tracing::info!(path = %path.display(), keys = keys.len(), "loaded jwks_file");
                Some(JwksSource {
                    path: path.clone(),
                    keys: RwLock::new(Arc::new(keys)),
                    last_refresh: Mutex::new(None),
                })
            }
            None => None,
        };
        let leeway = i64::try_from(cfg.leeway_seconds.min(MAX_LEEWAY_SECONDS)).unwrap_or(0);
        Ok(JwtVerifier {
            keys,
            jwks,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            roles_claim: cfg.roles_claim.clone(),
            admin_roles: cfg.admin_roles.clone(),
            vk_claim: cfg.virtual_key_claim.clone(),
            leeway,
        })
    }

    fn verify(&self, token: &str, now_unix: i64, now: Instant) -> Result<JwtIdentity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(malformed(format!("longer than {MAX_TOKEN_BYTES} bytes")));
        }
        let parts: Vec<&str> = token.splitn(6, '.').collect();
        let [header_b64, payload_b64, signature_b64] = parts[..] else {
            return Err(if parts.len() == 5 {
                malformed("encrypted JWTs (JWE) are not supported; send a signed JWT (JWS)")
            } else {
                malformed("a JWT is three base64url segments separated by '.'")
            });
        };
        let header = decode_json_object(header_b64, "header")?;
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("header has no \"alg\" string"))?;
        if alg_name.eq_ignore_ascii_case("none") {
            return Err(AuthError::AlgorithmNotAllowed("none".to_owned()));
        }
        let alg = parse_alg(alg_name)
            .ok_or_else(|| AuthError::AlgorithmNotAllowed(sanitize_alg(alg_name)))?;
        // RFC 7515 §4.1.11: extensions listed in `crit` must be understood; this verifier
        // understands none, and `b64: false` (RFC 7797) changes what the signature covers.
        if header.contains_key("crit") {
            return Err(malformed(
                "header lists critical extensions (crit), which are not supported",
            ));
        }
        if header.get("b64").is_some_and(|v| v != &Value::Bool(true)) {
            return Err(malformed(
                "unencoded payloads (b64: false) are not supported",
            ));
        }
        // Key-carrying headers (`jwk`, `jku`, `x5u`, `x5c`) are ignored on purpose: a token must
        // never choose the key that verifies it.
        let kid = match header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(malformed("header \"kid\" is not a string")),
        };
        if URL_SAFE_NO_PAD.decode(signature_b64).is_err() {
            return Err(malformed("signature is not base64url"));
        }
        let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
        self.verify_signature(kid, alg, signed.as_bytes(), signature_b64, now)?;
        // Only now, with the signature checked, do the claims mean anything.
        let claims = decode_json_object(payload_b64, "payload")?;
        self.identity(claims, now_unix)
    }

    fn verify_signature(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        signed: &[u8],
        signature_b64: &str,
        now: Instant,
    ) -> Result<(), AuthError> {
        let jwks = self.jwks_snapshot();
        let first = self.try_keys(&jwks, kid, alg, signed, signature_b64);
        let (Err(_), Some(kid), Some(src)) = (&first, kid, &self.jwks) else {
            return first;
        };
        // A `kid` no key carries may be a key the identity provider has just rotated in. This
        // also covers a failed try against kid-less keys (BadSignature), which the new key
        // might have verified.
        if self
            .keys
            .iter()
            .chain(jwks.iter())
            .any(|k| k.kid.as_deref() == Some(kid))
        {
            return first;
        }
        src.refresh(now);
        // Compared by pointer rather than by `refresh`'s answer: another request may have
        // installed new keys while this one waited for the refresh lock.
        let fresh = src.snapshot();
        if Arc::ptr_eq(&fresh, &jwks) {
            return first;
        }
        self.try_keys(&fresh, Some(kid), alg, signed, signature_b64)
    }

    fn jwks_snapshot(&self) -> Arc<Vec<VerifyKey>> {
        match &self.jwks {
            Some(src) => src.snapshot(),
            None => Arc::new(Vec::new()),
        }
    }

    fn try_keys(
        &self,
        jwks: &[VerifyKey],
        kid: Option<&str>,
        alg: Algorithm,
        signed: &[u8],
        signature_b64: &str,
    ) -> Result<(), AuthError> {
        let candidates = select_keys(self.keys.iter().chain(jwks.iter()), kid, alg)?;
        for key in candidates {
            match jsonwebtoken::crypto::verify(signature_b64, signed, &key.key, alg) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                // Keys are validated when loaded, so this means a library/key mismatch worth an
                // operator's attention; the message names the key, never the token.
                Err(e) => {
                    tracing::error!(key = %key.origin, error = %e, "JWT key unusable");
                }
            }
        }
        Err(AuthError::BadSignature)
    }

    fn identity(
        &self,
        claims: Map<String, Value>,
        now_unix: i64,
    ) -> Result<JwtIdentity, AuthError> {
        let exp = numeric_date(&claims, "exp")?;
        let nbf = numeric_date(&claims, "nbf")?;
        // RFC 7519 §4.1.4: the token is valid only *before* exp.
        if let Some(exp) = exp
            && now_unix >= exp.saturating_add(self.leeway)
        {
            return Err(AuthError::Expired { expired_at: exp });
        }
        if let Some(nbf) = nbf
            && now_unix.saturating_add(self.leeway) < nbf
        {
            return Err(AuthError::NotYetValid { not_before: nbf });
        }
        if let Some(issuer) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err(AuthError::WrongIssuer);
        }
        if let Some(audience) = &self.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => a == audience,
                Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
                _ => false,
            };
            if !ok {
                return Err(AuthError::WrongAudience);
            }
        }
        let roles = string_list(claim_at(&claims, &self.roles_claim));
        let is_admin = roles.iter().any(|r| self.admin_roles.contains(r));
        let virtual_key = id_claim(claim_at(&claims, &self.vk_claim))
            .or_else(|| id_claim(claims.get("accessKey")));
        if !is_admin && virtual_key.is_none() {
            return Err(AuthError::NoUsableClaims);
        }
        Ok(JwtIdentity {
            subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
            is_admin,
            roles,
            virtual_key,
            tenant_id: id_claim(claims.get("tenantId"))
                .or_else(|| id_claim(claims.get("tenant_id"))),
            user_id: id_claim(claims.get("userId")).or_else(|| id_claim(claims.get("user_id"))),
            expires_at: exp,
            claims: Value::Object(claims),
        })
    }
}

impl JwksSource {
    fn snapshot(&self) -> Arc<Vec<VerifyKey>> {
        // Poisoning cannot leave a half-written key list: the write is a single Arc swap.
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Re-reads the file unless a refresh happened within the last 10 s.
    fn refresh(&self, now: Instant) {
        // Held across the read so concurrent unknown-kid tokens cause one read, not many.
        let mut last = self
            .last_refresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = *last
            && now.saturating_duration_since(t) < JWKS_REFRESH_INTERVAL
        {
            return;
        }
        *last = Some(now);
        match self.install() {
            Ok(n) => {
                tracing::info!(path = %self.path.display(), keys = n, "re-read jwks_file for an unknown kid");
            }
            Err(e) => {
                tracing::warn!(error = %e, "jwks_file re-read failed; keeping the previous keys");
            }
        }
    }

    fn reload(&self) -> Result<usize, AuthConfigError> {
        let mut last = self
            .last_refresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *last = Some(Instant::now());
        self.install()
    }

    fn install(&self) -> Result<usize, AuthConfigError> {
        let keys = load_jwks(&self.path)?;
        let n = keys.len();
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        Ok(n)
    }
}

/// The keys a token may be checked with. A key with a `kid` serves only tokens naming that
/// `kid`; keys without one serve tokens whose `kid` matches no key (or who have none). Within
/// that set only keys allowing the token's algorithm count.
fn select_keys<'a>(
    keys: impl Iterator<Item = &'a VerifyKey> + Clone,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Vec<&'a VerifyKey>, AuthError> {
    if let Some(kid) = kid {
        let exact: Vec<&VerifyKey> = keys
            .clone()
            .filter(|k| k.kid.as_deref() == Some(kid))
            .collect();
        if !exact.is_empty() {
            let usable: Vec<&VerifyKey> = exact
                .into_iter()
                .filter(|k| k.algs.contains(&alg))
                .collect();
            return if usable.is_empty() {
                Err(AuthError::AlgorithmNotAllowed(alg_name(alg).to_owned()))
            } else {
                Ok(usable)
            };
        }
    }
    let usable: Vec<&VerifyKey> = keys
        .clone()
        .filter(|k| k.kid.is_none() && k.algs.contains(&alg))
        .collect();
    if !usable.is_empty() {
        return Ok(usable);
    }
    if keys.clone().any(|k| k.algs.contains(&alg)) {
        Err(AuthError::UnknownKey)
    } else {
        Err(AuthError::AlgorithmNotAllowed(alg_name(alg).to_owned()))
    }
}

fn malformed(what: impl Into<String>) -> AuthError {
    AuthError::Malformed(what.into())
}

fn decode_json_object(segment: &str, what: &str) -> Result<Map<String, Value>, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| malformed(format!("{what} is not base64url")))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(malformed(format!("{what} is not a JSON object"))),
    }
}

/// A NumericDate claim (RFC 7519 §2): a JSON number of seconds, fractions allowed.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, AuthError> {
    let Some(v) = claims.get(name) else {
        return Ok(None);
    };
    let n = v
        .as_number()
        .ok_or_else(|| malformed(format!("claim \"{name}\" is not a number")))?;
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    if n.as_u64().is_some() {
        return Ok(Some(i64::MAX));
    }
    match n.as_f64() {
        // `as` saturates, which is exactly what is wanted for absurd dates.
        Some(f) if f.is_finite() => Ok(Some(f.floor() as i64)),
        _ => Err(malformed(format!("claim \"{name}\" is not a number"))),
    }
}

/// The claim at `path`: a top-level claim of that exact name first (namespaced claims such as
/// `https://example.com/roles` contain dots), else a walk through nested objects.
fn claim_at<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut segments = path.split('.');
    let mut current = claims.get(segments.next()?)?;
    for seg in segments {
        current = current.as_object()?.get(seg)?;
    }
    Some(current)
}

/// A string is one role (never split: splitting "not admin" would grant "admin"); an array
/// contributes its strings.
fn string_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// An identifier claim: a non-empty string, or an integer (some issuers use numeric ids).
fn id_claim(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

pub(crate) fn parse_alg(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        // RFC 9864 gives Ed25519 its own fully-specified name; same verification as EdDSA here,
        // since Ed25519 is the only EdDSA curve supported.
        "EdDSA" | "Ed25519" => Algorithm::EdDSA,
        _ => return None,
    })
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => "an unsupported algorithm",
    }
}

/// The header's `alg` is caller-controlled text; it is repeated in errors only when it is a short
/// plain identifier, so error bodies and logs cannot be stuffed with arbitrary content.
fn sanitize_alg(alg: &str) -> String {
    if !alg.is_empty() && alg.len() <= 16 && alg.bytes().all(|b| b.is_ascii_alphanumeric()) {
        alg.to_owned()
    } else {
        "unrecognised".to_owned()
    }
}

fn family_name(f: AlgorithmFamily) -> &'static str {
    match f {
        AlgorithmFamily::Hmac => "HMAC",
        AlgorithmFamily::Rsa => "RSA",
        AlgorithmFamily::Ec => "EC",
        AlgorithmFamily::Ed => "Ed25519",
    }
}

fn resolve_secret(secret: &Secret, field: &str) -> Result<String, AuthConfigError> {
    let value = secret.resolve();
    if value.is_empty() {
        return Err(AuthConfigError::new(
            field,
            match secret.env_name() {
                Some(name) => format!("env.{name} is not set or is empty"),
                None => "is empty".to_owned(),
            },
        ));
    }
    Ok(value)
}

fn load_configured_key(i: usize, k: &JwtKeyConfig) -> Result<VerifyKey, AuthConfigError> {
    let field = format!("auth_config.jwt.keys[{i}]");
    let alg = parse_alg(&k.alg).ok_or_else(|| {
        AuthConfigError::new(
            format!("{field}.alg"),
            format!(
                "unsupported algorithm {:?}; use one of {SUPPORTED_ALGS}",
                k.alg
            ),
        )
    })?;
    if k.kid.as_deref() == Some("") {
        return Err(AuthConfigError::new(
            format!("{field}.kid"),
            "is empty; remove it or set the key id tokens carry",
        ));
    }
    let key = if alg.family() == AlgorithmFamily::Hmac {
        if k.public_key_pem.is_some() {
            return Err(AuthConfigError::new(
                format!("{field}.public_key_pem"),
                format!("{} keys use `secret`, not a public key", k.alg),
            ));
        }
        let secret = k.secret.as_ref().ok_or_else(|| {
            AuthConfigError::new(format!("{field}.secret"), format!("required for {}", k.alg))
        })?;
        let value = resolve_secret(secret, &format!("{field}.secret"))?;
        DecodingKey::from_secret(value.as_bytes()).map_err(|_| {
            AuthConfigError::new(format!("{field}.secret"), "is not a usable secret")
        })?
    } else {
        if k.secret.is_some() {
            return Err(AuthConfigError::new(
                format!("{field}.secret"),
                format!(
                    "only HS256/HS384/HS512 keys take a secret; {} needs public_key_pem",
                    k.alg
                ),
            ));
        }
        let pem = k.public_key_pem.as_ref().ok_or_else(|| {
            AuthConfigError::new(
                format!("{field}.public_key_pem"),
                format!("required for {}", k.alg),
            )
        })?;
        let field = format!("{field}.public_key_pem");
        let text = resolve_secret(pem, &field)?;
        parse_public_pem(alg, &text).map_err(|reason| AuthConfigError::new(field, reason))?
    };
    Ok(VerifyKey {
        kid: k.kid.clone(),
        algs: vec![alg],
        key,
        origin: field,
    })
}

/// Parses a PEM public key for `alg` and checks it fits (curve, size). The reasons name the
/// problem and the fix, never the key material.
fn parse_public_pem(alg: Algorithm, text: &str) -> Result<DecodingKey, String> {
    // Environment variables often carry PEMs with literal `\n` instead of line breaks.
    let text = if text.contains('\n') {
        text.to_owned()
    } else {
        text.replace("\\n", "\n")
    };
    if text.contains("PRIVATE KEY") {
        return Err(
            "is a private key; configure the public half (openssl pkey -in key.pem -pubout)"
                .to_owned(),
        );
    }
    if text.contains("BEGIN CERTIFICATE") {
        return Err("is a certificate; configure its public key \
                    (openssl x509 -in cert.pem -pubkey -noout)"
            .to_owned());
    }
    if !text.contains("-----BEGIN") {
        return Err("not a PEM public key (expected -----BEGIN PUBLIC KEY-----)".to_owned());
    }
    let family = alg.family();
    let parsed = match family {
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(text.as_bytes()),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(text.as_bytes()),
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(text.as_bytes()),
        AlgorithmFamily::Hmac => return Err("HMAC keys are secrets, not PEMs".to_owned()),
    };
    let key = match parsed {
        Ok(k) => k,
        Err(_) => {
            let bytes = text.as_bytes();
            let actual = [
                (
                    AlgorithmFamily::Rsa,
                    DecodingKey::from_rsa_pem(bytes).is_ok(),
                ),
                (AlgorithmFamily::Ec, DecodingKey::from_ec_pem(bytes).is_ok()),
                (AlgorithmFamily::Ed, DecodingKey::from_ed_pem(bytes).is_ok()),
            ]
            .into_iter()
            .find(|(_, ok)| *ok)
            .map(|(f, _)| f);
            return Err(match actual {
                Some(f) => format!(
                    "is an {} public key but alg is {}",
                    family_name(f),
                    alg_name(alg)
                ),
                None => format!("not a PEM {} public key", family_name(family)),
            });
        }
    };
    checked_key(key, alg)
}

/// Validates a decoded public key for `alg`, returning the key to store. RSA keys come back as
/// (n, e) components so PEM and JWKS keys take the same verification path.
fn checked_key(key: DecodingKey, alg: Algorithm) -> Result<DecodingKey, String> {
    let invalid = || format!("not a valid {} public key", family_name(alg.family()));
    // Extracting the public parameters parses the key fully and checks its length; it must run
    // before any verification attempt (the Ed25519 verifier assumes 32 bytes).
    let jwk = Jwk::from_decoding_key(&key, None).map_err(|_| invalid())?;
    let key = match (&jwk.algorithm, alg.family()) {
        (AlgorithmParameters::RSA(p), AlgorithmFamily::Rsa) => {
            let n = URL_SAFE_NO_PAD.decode(&p.n).map_err(|_| invalid())?;
            let e = URL_SAFE_NO_PAD.decode(&p.e).map_err(|_| invalid())?;
            check_rsa(&n, &e)?;
            DecodingKey::from_rsa_raw_components(&n, &e)
        }
        (AlgorithmParameters::EllipticCurve(p), AlgorithmFamily::Ec) => {
            let want = if alg == Algorithm::ES256 {
                EllipticCurve::P256
            } else {
                EllipticCurve::P384
            };
            if p.curve != want {
                return Err(format!(
                    "is a {} key but alg is {}; ES256 needs P-256, ES384 needs P-384",
                    curve_name(&p.curve),
                    alg_name(alg)
                ));
            }
            key
        }
        (AlgorithmParameters::OctetKeyPair(p), AlgorithmFamily::Ed)
            if p.curve == EllipticCurve::Ed25519 =>
        {
            key
        }
        _ => return Err(invalid()),
    };
    probe(&key, alg).map_err(|()| invalid())?;
    Ok(key)
}

/// Building a verifier decodes the EC point / Ed25519 point and fails on an invalid one; the
/// result of verifying a dummy signature is irrelevant.
fn probe(key: &DecodingKey, alg: Algorithm) -> Result<(), ()> {
    jsonwebtoken::crypto::verify("AA", b"probe", key, alg)
        .map(|_| ())
        .map_err(|_| ())
}

fn curve_name(c: &EllipticCurve) -> &'static str {
    match c {
        EllipticCurve::P256 => "P-256",
        EllipticCurve::P384 => "P-384",
        EllipticCurve::P521 => "P-521",
        EllipticCurve::Ed25519 => "Ed25519",
        _ => "another curve",
    }
}

fn check_rsa(n: &[u8], e: &[u8]) -> Result<(), String> {
    let bits = bit_length(n);
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "RSA key is {bits} bits; at least {MIN_RSA_BITS} are required"
        ));
    }
    if bits > MAX_RSA_BITS {
        return Err(format!(
            "RSA key is {bits} bits; at most {MAX_RSA_BITS} are supported"
        ));
    }
    let e_trimmed: &[u8] = &e[e.iter().take_while(|&&b| b == 0).count()..];
    let exponent = if e_trimmed.len() > 8 {
        u64::MAX
    } else {
        e_trimmed
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    };
    if exponent < 3 || exponent % 2 == 0 || exponent > MAX_RSA_EXPONENT {
        return Err(
            "RSA public exponent is invalid (expected an odd value such as 65537)".to_owned(),
        );
    }
    Ok(())
}

fn bit_length(n: &[u8]) -> usize {
    let n = &n[n.iter().take_while(|&&b| b == 0).count()..];
    match n.first() {
        Some(&top) => n.len() * 8 - top.leading_zeros() as usize,
        None => 0,
    }
}

fn load_jwks(path: &Path) -> Result<Vec<VerifyKey>, AuthConfigError> {
    let field = "auth_config.jwt.jwks_file";
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| AuthConfigError::new(field, format!("cannot open {shown}: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_JWKS_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| AuthConfigError::new(field, format!("cannot read {shown}: {e}")))?;
    if bytes.len() as u64 > MAX_JWKS_BYTES {
        return Err(AuthConfigError::new(
            field,
            format!("{shown} is larger than {MAX_JWKS_BYTES} bytes"),
        ));
    }
    // serde_json's messages give a position, not content.
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| AuthConfigError::new(field, format!("{shown} is not JSON: {e}")))?;
    let entries = doc.get("keys").and_then(Value::as_array).ok_or_else(|| {
        AuthConfigError::new(
            field,
            format!("{shown} is not a JWKS document (expected {{\"keys\": [...]}})"),
        )
    })?;
    let mut keys = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match jwk_to_key(entry) {
            Ok(JwkOutcome::Key(k)) => keys.push(k),
            Ok(JwkOutcome::Skipped(reason)) => {
                tracing::warn!(path = %shown, index = i, reason, "jwks_file key skipped");
            }
            Err(reason) => {
                return Err(AuthConfigError::new(
                    format!("{field} ({shown}) keys[{i}]"),
                    reason,
                ));
            }
        }
    }
    if keys.is_empty() {
        return Err(AuthConfigError::new(
            field,
            format!("{shown} has no usable signing keys (RSA, EC P-256/P-384 or OKP Ed25519)"),
        ));
    }
    Ok(keys)
}

enum JwkOutcome {
    Key(VerifyKey),
    /// Not an error: a JWKS legitimately holds keys for other uses or algorithms.
    Skipped(String),
}

/// One JWKS entry. Malformed data for a supported key type is an error (the file is broken);
/// keys this verifier does not use are skipped with the reason.
fn jwk_to_key(entry: &Value) -> Result<JwkOutcome, String> {
    let obj = entry.as_object().ok_or("not a JSON object")?;
    let skip = |why: &str| Ok(JwkOutcome::Skipped(why.to_owned()));
    let kid = match obj.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => return Err("kid is not a non-empty string".to_owned()),
    };
    if let Some(u) = obj.get("use").and_then(Value::as_str)
        && u != "sig"
    {
        return skip("use is not \"sig\"");
    }
    if let Some(ops) = obj.get("key_ops").and_then(Value::as_array)
        && !ops.iter().any(|o| o.as_str() == Some("verify"))
    {
        return skip("key_ops does not include \"verify\"");
    }
    let hint = match obj.get("alg") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match parse_alg(s) {
            Some(a) => Some(a),
            None => return skip("alg is not a supported signature algorithm"),
        },
        Some(_) => return Err("alg is not a string".to_owned()),
    };
    let kty = obj
        .get("kty")
        .and_then(Value::as_str)
        .ok_or("kty is missing")?;
    let text = |name: &str| -> Result<&str, String> {
        obj.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{kty} key has no \"{name}\""))
    };
    let bytes = |name: &str| -> Result<Vec<u8>, String> {
        URL_SAFE_NO_PAD
            .decode(text(name)?)
            .map_err(|_| format!("\"{name}\" is not base64url"))
    };
    let (family, algs, key) = match kty {
        "RSA" => {
            let (n, e) = (bytes("n")?, bytes("e")?);
            if let Err(reason) = check_rsa(&n, &e) {
                // Legacy small keys in an identity provider's set should not break the others.
                return Ok(JwkOutcome::Skipped(reason));
            }
            let algs = match hint {
                Some(a) => vec![a],
                None => RSA_ALGS.to_vec(),
            };
            (
                AlgorithmFamily::Rsa,
                algs,
                DecodingKey::from_rsa_raw_components(&n, &e),
            )
        }
        "EC" => {
            let (alg, size) = match obj.get("crv").and_then(Value::as_str) {
                Some("P-256") => (Algorithm::ES256, 32),
                Some("P-384") => (Algorithm::ES384, 48),
                _ => return skip("EC curve is not P-256 or P-384"),
            };
            if bytes("x")?.len() != size || bytes("y")?.len() != size {
                return Err(format!("EC coordinates are not {size} bytes"));
            }
            let key = DecodingKey::from_ec_components(text("x")?, text("y")?)
                .map_err(|_| "EC coordinates are not base64url".to_owned())?;
            (AlgorithmFamily::Ec, vec![alg], key)
        }
        "OKP" => {
            if obj.get("crv").and_then(Value::as_str) != Some("Ed25519") {
                return skip("OKP curve is not Ed25519");
            }
            // Length checked before the key reaches the verifier, which assumes 32 bytes.
            if bytes("x")?.len() != 32 {
                return Err("Ed25519 \"x\" is not 32 bytes".to_owned());
            }
            let key = DecodingKey::from_ed_components(text("x")?)
                .map_err(|_| "\"x\" is not base64url".to_owned())?;
            (AlgorithmFamily::Ed, vec![Algorithm::EdDSA], key)
        }
        "oct" => {
            return skip(
                "symmetric (oct) keys are not read from jwks_file; configure HS secrets in \
                 auth_config.jwt.keys",
            );
        }
        _ => return skip("unsupported kty"),
    };
    if let Some(a) = hint
        && !algs.contains(&a)
    {
        return Err(format!("alg {} does not match kty {kty}", alg_name(a)));
    }
    for &alg in &algs {
        probe(&key, alg).map_err(|()| format!("not a valid {} public key", family_name(family)))?;
    }
    let origin = match &kid {
        Some(k) => format!("jwks_file kid {k}"),
        None => "jwks_file key without kid".to_owned(),
    };
    Ok(JwkOutcome::Key(VerifyKey {
        kid,
        algs,
        key,
        origin,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JwtConfig;
    use jsonwebtoken::{EncodingKey, Header};

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn jwks_refresh_is_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, fixture("jwks.json")).unwrap();
        let auth = Authenticator::new(&AuthConfig {
            jwt: Some(JwtConfig {
                jwks_file: Some(path.clone()),
                ..JwtConfig::default()
            }),
            ..AuthConfig::default()
        })
        .unwrap();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-2".into());
        let key = EncodingKey::from_rsa_pem(fixture("rsa2-private.pem").as_bytes()).unwrap();
        let token =
            jsonwebtoken::encode(&header, &serde_json::json!({"roles": ["admin"]}), &key).unwrap();
        let t0 = Instant::now();
        // First unknown kid: the file is re-read (still the old set), then refreshes pause.
        assert_eq!(
            auth.verify_inner(&token, 0, t0).unwrap_err(),
            AuthError::UnknownKey
        );
        std::fs::write(&path, fixture("jwks-rotated.json")).unwrap();
        assert_eq!(
            auth.verify_inner(&token, 0, t0 + Duration::from_secs(5))
                .unwrap_err(),
            AuthError::UnknownKey
        );
        let id = auth
            .verify_inner(&token, 0, t0 + Duration::from_secs(11))
            .unwrap();
        assert!(id.is_admin);
    }

    #[test]
    fn rsa_bit_length() {
        assert_eq!(bit_length(&[0, 0x01]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(bit_length(&[]), 0);
    }

    #[test]
    fn dotted_claim_prefers_literal_name() {
        let claims: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "https://example.com/roles": ["a"],
            "realm_access": {"roles": ["b"]}
        }))
        .unwrap();
        assert_eq!(
            string_list(claim_at(&claims, "https://example.com/roles")),
            vec!["a"]
        );
        assert_eq!(
            string_list(claim_at(&claims, "realm_access.roles")),
            vec!["b"]
        );
        assert!(claim_at(&claims, "realm_access.missing").is_none());
    }
}
