//! JWT verification against real key pairs (fixtures made with the openssl CLI, see
//! tests/fixtures/regen.sh): every algorithm, the classic attacks, claim checks, identity mapping,
//! JWKS lookup and rotation, and configuration errors.

// Test helpers outside #[test] fns are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use causeway_auth::{AuthConfig, AuthError, Authenticator, JwtConfig, JwtKeyConfig};
use causeway_core::secret::Secret;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const HS_SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// A fixed "now" (2026-06-01T00:00:00Z) so time checks do not depend on the test clock.
const NOW: i64 = 1_780_272_000;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixtures().join(name)).unwrap()
}

fn hs_key(alg: &str, kid: Option<&str>) -> JwtKeyConfig {
    JwtKeyConfig {
        alg: alg.into(),
        secret: Some(Secret::new(HS_SECRET)),
        public_key_pem: None,
        kid: kid.map(Into::into),
    }
}

fn pem_key(alg: &str, file: &str, kid: Option<&str>) -> JwtKeyConfig {
    JwtKeyConfig {
        alg: alg.into(),
        secret: None,
        public_key_pem: Some(Secret::new(fixture(file))),
        kid: kid.map(Into::into),
    }
}

fn auth_with(keys: Vec<JwtKeyConfig>, tweak: impl FnOnce(&mut JwtConfig)) -> Authenticator {
    let mut jwt = JwtConfig {
        keys,
        ..JwtConfig::default()
    };
    tweak(&mut jwt);
    Authenticator::new(&AuthConfig {
        jwt: Some(jwt),
        ..AuthConfig::default()
    })
    .unwrap()
}

fn config_error(keys: Vec<JwtKeyConfig>) -> String {
    Authenticator::new(&AuthConfig {
        jwt: Some(JwtConfig {
            keys,
            ..JwtConfig::default()
        }),
        ..AuthConfig::default()
    })
    .unwrap_err()
    .to_string()
}

fn encoding_key(alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(HS_SECRET.as_bytes()).unwrap()
        }
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            EncodingKey::from_rsa_pem(fixture("rsa-private.pem").as_bytes()).unwrap()
        }
        Algorithm::ES256 => {
            EncodingKey::from_ec_pem(fixture("ec256-private.pem").as_bytes()).unwrap()
        }
        Algorithm::ES384 => {
            EncodingKey::from_ec_pem(fixture("ec384-private.pem").as_bytes()).unwrap()
        }
        Algorithm::EdDSA => {
            EncodingKey::from_ed_pem(fixture("ed25519-private.pem").as_bytes()).unwrap()
        }
        other => panic!("no fixture for {other:?}"),
    }
}

fn sign_with(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(Into::into);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    sign_with(alg, &encoding_key(alg), kid, claims)
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// No part of the token (nor the HMAC secret) may appear in an error message.
fn assert_no_leak(err: &AuthError, token: &str) {
    let msg = err.to_string();
    for part in token.split('.').filter(|p| p.len() >= 8) {
        assert!(!msg.contains(part), "error echoes the token: {msg}");
    }
    assert!(!msg.contains(HS_SECRET), "error echoes the secret: {msg}");
}

fn admin_claims() -> Value {
    json!({"sub": "alice", "roles": ["admin"], "exp": NOW + 3600})
}

#[test]
fn every_algorithm_verifies() {
    let cases = [
        (Algorithm::HS256, hs_key("HS256", None)),
        (Algorithm::HS384, hs_key("HS384", None)),
        (Algorithm::HS512, hs_key("HS512", None)),
        (Algorithm::RS256, pem_key("RS256", "rsa-public.pem", None)),
        (Algorithm::RS384, pem_key("RS384", "rsa-public.pem", None)),
        (Algorithm::RS512, pem_key("RS512", "rsa-public.pem", None)),
        (Algorithm::PS256, pem_key("PS256", "rsa-public.pem", None)),
        (Algorithm::ES256, pem_key("ES256", "ec256-public.pem", None)),
        (Algorithm::ES384, pem_key("ES384", "ec384-public.pem", None)),
        (
            Algorithm::EdDSA,
            pem_key("EdDSA", "ed25519-public.pem", None),
        ),
    ];
    for (alg, key) in cases {
        let auth = auth_with(vec![key], |_| {});
        let token = sign(alg, None, &admin_claims());
        let id = auth
            .verify_jwt_at(&token, NOW)
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert!(id.is_admin, "{alg:?}");
        assert_eq!(id.subject.as_deref(), Some("alice"));
        assert_eq!(id.roles, vec!["admin"]);
        assert_eq!(id.expires_at, Some(NOW + 3600));
        assert_eq!(id.claims["sub"], "alice");
    }
}

#[test]
fn verify_jwt_uses_the_real_clock() {
    let auth = auth_with(vec![hs_key("HS256", None)], |_| {});
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ok = sign(
        Algorithm::HS256,
        None,
        &json!({"roles": "admin", "exp": now + 600}),
    );
    assert!(auth.verify_jwt(&ok).unwrap().is_admin);
    let old = sign(
        Algorithm::HS256,
        None,
        &json!({"roles": "admin", "exp": now - 600}),
    );
    assert!(matches!(
        auth.verify_jwt(&old),
        Err(AuthError::Expired { .. })
    ));
}

#[test]
fn one_algorithm_key_rejects_tokens_of_another_algorithm_of_its_family() {
    // An HS256 key must not verify HS512 tokens (and RS256 keys not RS512 ones).
    let auth = auth_with(vec![hs_key("HS256", None)], |_| {});
    let token = sign(Algorithm::HS512, None, &admin_claims());
    assert_eq!(
        auth.verify_jwt_at(&token, NOW).unwrap_err(),
        AuthError::AlgorithmNotAllowed("HS512".into())
    );
}

#[test]
fn unsigned_tokens_are_refused() {
    let auth = auth_with(vec![hs_key("HS256", None)], |_| {});
    for alg in ["none", "None", "NONE"] {
        for sig in ["", "c2ln"] {
            let token = format!(
                "{}.{}.{sig}",
                b64(&json!({"alg": alg, "typ": "JWT"})),
                b64(&admin_claims())
            );
            let err = auth.verify_jwt_at(&token, NOW).unwrap_err();
            assert_eq!(err, AuthError::AlgorithmNotAllowed("none".into()), "{alg}");
            assert!(err.to_string().contains("never accepted"));
            assert!(causeway_auth::looks_like_jwt(&token));
        }
    }
}

#[test]
fn hmac_token_signed_with_the_rsa_public_key_is_refused() {
    // The classic algorithm-confusion attack: the public key (known to everyone) used as an HMAC
    // secret. RS256-only config must not even try it.
    let public_pem = fixture("rsa-public.pem");
    let auth = auth_with(
        vec![pem_key("RS256", "rsa-public.pem", Some("rsa-1"))],
        |_| {},
    );
    let forging_key = EncodingKey::from_secret(public_pem.as_bytes()).unwrap();
    for kid in [None, Some("rsa-1"), Some("other")] {
        let token = sign_with(Algorithm::HS256, &forging_key, kid, &admin_claims());
        let err = auth.verify_jwt_at(&token, NOW).unwrap_err();
        assert_eq!(
            err,
            AuthError::AlgorithmNotAllowed("HS256".into()),
            "kid {kid:?}"
        );
        assert_eq!(
            err.to_string(),
            "token signed with HS256 but no HS256 key is configured for it"
        );
        assert_no_leak(&err, &token);
    }
    // Same through a JWKS whose RSA key has no `alg`: the RSA family only.
    let auth = auth_with(vec![], |j| j.jwks_file = Some(fixtures().join("jwks.json")));
    let token = sign_with(
        Algorithm::HS256,
        &forging_key,
        Some("rsa-1"),
        &admin_claims(),
    );
    assert!(matches!(
        auth.verify_jwt_at(&token, NOW),
        Err(AuthError::AlgorithmNotAllowed(_))
    ));
}

#[test]
fn tampering_breaks_the_signature() {
    for (alg, key) in [
        (Algorithm::HS256, hs_key("HS256", None)),
        (Algorithm::RS256, pem_key("RS256", "rsa-public.pem", None)),
        (Algorithm::ES256, pem_key("ES256", "ec256-public.pem", None)),
        (
            Algorithm::EdDSA,
            pem_key("EdDSA", "ed25519-public.pem", None),
        ),
    ] {
        let auth = auth_with(vec![key], |_| {});
        let token = sign(alg, None, &json!({"vk": "vk-1", "exp": NOW + 60}));
        let parts: Vec<&str> = token.split('.').collect();
        // Payload swapped for one granting admin, signature kept.
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(&json!({"vk": "vk-1", "roles": ["admin"], "exp": NOW + 60})),
            parts[2]
        );
        let err = auth.verify_jwt_at(&forged, NOW).unwrap_err();
        assert_eq!(err, AuthError::BadSignature, "{alg:?}");
        assert_no_leak(&err, &forged);
        // Signature altered in its first character (the last may only carry padding bits).
        let mut sig: Vec<u8> = parts[2].bytes().collect();
        sig[0] = if sig[0] == b'A' { b'B' } else { b'A' };
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            String::from_utf8(sig).unwrap()
        );
        assert_eq!(
            auth.verify_jwt_at(&forged, NOW).unwrap_err(),
            AuthError::BadSignature
        );
        // Signature removed.
        let stripped = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(
            auth.verify_jwt_at(&stripped, NOW).unwrap_err(),
            AuthError::BadSignature
        );
        // Unchanged token still fine.
        assert!(auth.verify_jwt_at(&token, NOW).is_ok());
    }
}

#[test]
fn signed_by_another_key_is_a_bad_signature() {
    let auth = auth_with(vec![pem_key("RS256", "rsa-public.pem", None)], |_| {});
    let other = EncodingKey::from_rsa_pem(fixture("rsa2-private.pem").as_bytes()).unwrap();
    let token = sign_with(Algorithm::RS256, &other, None, &admin_claims());
    assert_eq!(
        auth.verify_jwt_at(&token, NOW).unwrap_err(),
        AuthError::BadSignature
    );
}

#[test]
fn malformed_tokens() {
    let auth = auth_with(vec![hs_key("HS256", None)], |_| {});
    let good = sign(Algorithm::HS256, None, &admin_claims());
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        ("a.b".to_owned(), "three base64url segments"),
        ("a.b.c.d.e".to_owned(), "JWE"),
        (
            format!("%%%.{}.{}", parts[1], parts[2]),
            "header is not base64url",
        ),
        (
            format!("{}.{}.{}", b64(&json!([1])), parts[1], parts[2]),
            "header is not a JSON object",
        ),
        (
            format!("{}.{}.{}", b64(&json!({"typ": "JWT"})), parts[1], parts[2]),
            "no \"alg\"",
        ),
        (
            format!("{}.{}.@@", parts[0], parts[1]),
            "signature is not base64url",
        ),
        (
            format!(
                "{}.{}.{}",
                b64(&json!({"alg": "HS256", "kid": 7})),
                parts[1],
                parts[2]
            ),
            "kid",
        ),
        (
            format!(
                "{}.{}.{}",
                b64(&json!({"alg": "HS256", "crit": ["exp"]})),
                parts[1],
                parts[2]
            ),
            "crit",
        ),
        ("x".repeat(20_000), "longer than"),
    ];
    for (token, expect) in cases {
        let err = auth.verify_jwt_at(&token, NOW).unwrap_err();
        assert!(
            matches!(&err, AuthError::Malformed(m) if m.contains(expect)),
            "{expect}: got {err}"
        );
        assert_no_leak(&err, &token);
    }
    assert_eq!(auth.verify_jwt_at("", NOW).unwrap_err(), AuthError::Missing);
    // A signed payload that is not an object.
    let token = {
        let header = b64(&json!({"alg": "HS256"}));
        let payload = URL_SAFE_NO_PAD.encode(b"[1,2]");
        let sig = jsonwebtoken::crypto::sign(
            format!("{header}.{payload}").as_bytes(),
            &encoding_key(Algorithm::HS256),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{header}.{payload}.{sig}")
    };
    assert_eq!(
        auth.verify_jwt_at(&token, NOW).unwrap_err(),
        AuthError::Malformed("payload is not a JSON object".into())
    );
    // Unknown algorithm names are not echoed unless they are plain identifiers.
    let weird = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "<script>alert(1)</script>"})),
        parts[1],
        parts[2]
    );
    let err = auth.verify_jwt_at(&weird, NOW).unwrap_err();
    assert!(!err.to_string().contains("script"), "{err}");
    let xs = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "XS256"})),
        parts[1],
        parts[2]
    );
    assert!(
        auth.verify_jwt_at(&xs, NOW)
            .unwrap_err()
            .to_string()
            .contains("XS256 is not supported")
    );
}

#[test]
fn expiry_and_not_before_with_leeway() {
    let auth = auth_with(vec![hs_key("HS256", None)], |j| j.leeway_seconds = 30);
    let at = |claims: Value| auth.verify_jwt_at(&sign(Algorithm::HS256, None, &claims), NOW);
    // exp and nbf are optional.
    assert!(at(json!({"roles": "admin"})).is_ok());
    // Expired beyond the leeway.
    let err = at(json!({"roles": "admin", "exp": NOW - 31})).unwrap_err();
    assert_eq!(
        err,
        AuthError::Expired {
            expired_at: NOW - 31
        }
    );
    assert!(
        err.to_string()
            .contains("token expired at 2026-05-31T23:59:29Z"),
        "{err}"
    );
    // Expired, but within the leeway.
    assert!(at(json!({"roles": "admin", "exp": NOW - 29})).is_ok());
    // nbf in the future beyond / within the leeway.
    let err = at(json!({"roles": "admin", "nbf": NOW + 31})).unwrap_err();
    assert_eq!(
        err,
        AuthError::NotYetValid {
            not_before: NOW + 31
        }
    );
    assert!(err.to_string().contains("2026-06-01T00:00:31Z"));
    assert!(at(json!({"roles": "admin", "nbf": NOW + 29})).is_ok());
    // Fractional NumericDate values are allowed; non-numbers are not.
    assert!(at(json!({"roles": "admin", "exp": (NOW + 100) as f64 + 0.5})).is_ok());
    assert!(matches!(
        at(json!({"roles": "admin", "exp": "tomorrow"})),
        Err(AuthError::Malformed(m)) if m.contains("exp")
    ));

    let strict = auth_with(vec![hs_key("HS256", None)], |j| j.leeway_seconds = 0);
    let token = sign(
        Algorithm::HS256,
        None,
        &json!({"roles": "admin", "exp": NOW}),
    );
    assert!(matches!(
        strict.verify_jwt_at(&token, NOW),
        Err(AuthError::Expired { .. })
    ));
    assert!(strict.verify_jwt_at(&token, NOW - 1).is_ok());
}

#[test]
fn issuer_and_audience_are_checked_only_when_configured() {
    let open = auth_with(vec![hs_key("HS256", None)], |_| {});
    let token = sign(
        Algorithm::HS256,
        None,
        &json!({"roles": "admin", "iss": "x", "aud": "y"}),
    );
    assert!(open.verify_jwt_at(&token, NOW).is_ok());

    let auth = auth_with(vec![hs_key("HS256", None)], |j| {
        j.issuer = Some("https://idp.example".into());
        j.audience = Some("causeway".into());
    });
    let at = |claims: Value| auth.verify_jwt_at(&sign(Algorithm::HS256, None, &claims), NOW);
    let base = |iss: Value, aud: Value| json!({"roles": "admin", "iss": iss, "aud": aud});
    assert!(at(base(json!("https://idp.example"), json!("causeway"))).is_ok());
    assert!(
        at(base(
            json!("https://idp.example"),
            json!(["other", "causeway"])
        ))
        .is_ok()
    );
    assert_eq!(
        at(base(json!("https://evil.example"), json!("causeway"))).unwrap_err(),
        AuthError::WrongIssuer
    );
    assert_eq!(
        at(json!({"roles": "admin", "aud": "causeway"})).unwrap_err(),
        AuthError::WrongIssuer
    );
    assert_eq!(
        at(base(json!("https://idp.example"), json!("other"))).unwrap_err(),
        AuthError::WrongAudience
    );
    assert_eq!(
        at(base(json!("https://idp.example"), json!(["a", "b"]))).unwrap_err(),
        AuthError::WrongAudience
    );
    assert_eq!(
        at(json!({"roles": "admin", "iss": "https://idp.example"})).unwrap_err(),
        AuthError::WrongAudience
    );
}

#[test]
fn roles_claim_paths_and_forms() {
    let keycloak = auth_with(vec![hs_key("HS256", None)], |j| {
        j.roles_claim = "realm_access.roles".into();
        j.admin_roles = vec!["gateway-admin".into()];
    });
    let token = sign(
        Algorithm::HS256,
        None,
        &json!({"realm_access": {"roles": ["user", "gateway-admin"]}}),
    );
    let id = keycloak.verify_jwt_at(&token, NOW).unwrap();
    assert!(id.is_admin);
    assert_eq!(id.roles, vec!["user", "gateway-admin"]);

    let token = sign(
        Algorithm::HS256,
        None,
        &json!({"realm_access": {"roles": "gateway-admin"}}),
    );
    assert!(keycloak.verify_jwt_at(&token, NOW).unwrap().is_admin);

    // A string is a single role: "not gateway-admin" must not be split into a match.
    let token = sign(
        Algorithm::HS256,
        None,
        &json!({"realm_access": {"roles": "not gateway-admin"}, "vk": "vk-1"}),
    );
    assert!(!keycloak.verify_jwt_at(&token, NOW).unwrap().is_admin);

    // A role under the top-level `roles` does not count when the path points elsewhere.
    let token = sign(Algorithm::HS256, None, &json!({"roles": ["gateway-admin"]}));
    assert_eq!(
        keycloak.verify_jwt_at(&token, NOW).unwrap_err(),
        AuthError::NoUsableClaims
    );
}

#[test]
fn admin_virtual_key_and_mpilot_claims() {
    let auth = auth_with(vec![hs_key("HS256", None)], |_| {});
    let at = |claims: Value| auth.verify_jwt_at(&sign(Algorithm::HS256, None, &claims), NOW);

    let id = at(json!({"sub": "svc", "vk": "sk-bf-abc"})).unwrap();
    assert!(!id.is_admin);
    assert_eq!(id.virtual_key.as_deref(), Some("sk-bf-abc"));
    assert!(
        !format!("{id:?}").contains("sk-bf-abc"),
        "Debug shows the vk"
    );

    // MPilot tokens carry accessKey even when the configured claim is `vk`.
    let id = at(json!({"accessKey": "9f1c-uuid", "tenantId": "t-42", "userId": 7})).unwrap();
    assert_eq!(id.virtual_key.as_deref(), Some("9f1c-uuid"));
    assert_eq!(id.tenant_id.as_deref(), Some("t-42"));
    assert_eq!(id.user_id.as_deref(), Some("7"));

    // The configured claim wins over accessKey.
    let id = at(json!({"vk": "vk-1", "accessKey": "ak-1"})).unwrap();
    assert_eq!(id.virtual_key.as_deref(), Some("vk-1"));

    let err = at(json!({"sub": "nobody", "roles": ["user"]})).unwrap_err();
    assert_eq!(err, AuthError::NoUsableClaims);
    assert_eq!(
        at(json!({"vk": ""})).unwrap_err(),
        AuthError::NoUsableClaims
    );

    // MPilot admin: TENANTADMIN configured as an admin role.
    let mpilot = auth_with(vec![pem_key("RS256", "rsa-public.pem", None)], |j| {
        j.admin_roles = vec!["TENANTADMIN".into()];
    });
    let token = sign(
        Algorithm::RS256,
        None,
        &json!({"tenantId": "acme", "userId": "u-1", "morgId": "m-1",
                "accessKey": "3b1f0c8e-7d2a-4c1e-9a57-0f6e2b9d4c11", "roles": ["TENANTADMIN"],
                "exp": NOW + 300}),
    );
    let id = mpilot.verify_jwt_at(&token, NOW).unwrap();
    assert!(id.is_admin);
    assert_eq!(id.roles, vec!["TENANTADMIN"]);
    assert_eq!(id.tenant_id.as_deref(), Some("acme"));
    assert_eq!(id.user_id.as_deref(), Some("u-1"));
    assert_eq!(
        id.virtual_key.as_deref(),
        Some("3b1f0c8e-7d2a-4c1e-9a57-0f6e2b9d4c11")
    );
    // Plain `admin` is not an admin role there.
    let token = sign(Algorithm::RS256, None, &json!({"roles": ["admin"]}));
    assert_eq!(
        mpilot.verify_jwt_at(&token, NOW).unwrap_err(),
        AuthError::NoUsableClaims
    );
}

#[test]
fn kid_binds_keys_to_tokens() {
    let auth = auth_with(vec![hs_key("HS256", Some("a"))], |_| {});
    let claims = admin_claims();
    assert!(
        auth.verify_jwt_at(&sign(Algorithm::HS256, Some("a"), &claims), NOW)
            .is_ok()
    );
    assert_eq!(
        auth.verify_jwt_at(&sign(Algorithm::HS256, None, &claims), NOW)
            .unwrap_err(),
        AuthError::UnknownKey
    );
    assert_eq!(
        auth.verify_jwt_at(&sign(Algorithm::HS256, Some("b"), &claims), NOW)
            .unwrap_err(),
        AuthError::UnknownKey
    );

    // Keys without kid serve tokens whose kid matches no key (issuers that always send one).
    let auth = auth_with(vec![hs_key("HS256", None)], |_| {});
    assert!(
        auth.verify_jwt_at(&sign(Algorithm::HS256, Some("zzz"), &claims), NOW)
            .is_ok()
    );

    // Several keys of one algorithm: each is tried.
    let mut other = hs_key("HS256", None);
    other.secret = Some(Secret::new("another-secret-another-secret-another-secret"));
    let auth = auth_with(vec![other, hs_key("HS256", None)], |_| {});
    assert!(
        auth.verify_jwt_at(&sign(Algorithm::HS256, None, &claims), NOW)
            .is_ok()
    );
}

#[test]
fn jwks_file_keys_by_kid() {
    let auth = auth_with(vec![], |j| j.jwks_file = Some(fixtures().join("jwks.json")));
    for (alg, kid) in [
        (Algorithm::RS256, "rsa-1"),
        (Algorithm::ES256, "ec256-1"),
        (Algorithm::ES384, "ec384-1"),
        (Algorithm::EdDSA, "ed-1"),
    ] {
        let token = sign(alg, Some(kid), &admin_claims());
        assert!(auth.verify_jwt_at(&token, NOW).unwrap().is_admin, "{kid}");
    }
    // rsa-1 declares alg RS256 in the JWKS, so the same key cannot verify RS512.
    let token = sign(Algorithm::RS512, Some("rsa-1"), &admin_claims());
    assert_eq!(
        auth.verify_jwt_at(&token, NOW).unwrap_err(),
        AuthError::AlgorithmNotAllowed("RS512".into())
    );
    // Unknown kid.
    let token = sign(Algorithm::RS256, Some("nope"), &admin_claims());
    assert_eq!(
        auth.verify_jwt_at(&token, NOW).unwrap_err(),
        AuthError::UnknownKey
    );
    // The `use: enc` key and the symmetric `oct` key were skipped.
    let enc = EncodingKey::from_rsa_pem(fixture("rsa2-private.pem").as_bytes()).unwrap();
    let token = sign_with(Algorithm::RS256, &enc, Some("enc-1"), &admin_claims());
    assert_eq!(
        auth.verify_jwt_at(&token, NOW).unwrap_err(),
        AuthError::UnknownKey
    );
    let oct = EncodingKey::from_secret(b"not-a-public-key").unwrap();
    let token = sign_with(Algorithm::HS256, &oct, Some("sym-1"), &admin_claims());
    assert!(matches!(
        auth.verify_jwt_at(&token, NOW),
        Err(AuthError::AlgorithmNotAllowed(_))
    ));
}

#[test]
fn jwks_rotation_without_rebuilding() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, fixture("jwks.json")).unwrap();
    let auth = auth_with(vec![], |j| j.jwks_file = Some(path.clone()));
    let old = sign(Algorithm::RS256, Some("rsa-1"), &admin_claims());
    assert!(auth.verify_jwt_at(&old, NOW).is_ok());

    // The identity provider rotates: the file now holds only rsa-2.
    std::fs::write(&path, fixture("jwks-rotated.json")).unwrap();
    let key2 = EncodingKey::from_rsa_pem(fixture("rsa2-private.pem").as_bytes()).unwrap();
    let new = sign_with(Algorithm::RS256, &key2, Some("rsa-2"), &admin_claims());
    assert!(auth.verify_jwt_at(&new, NOW).unwrap().is_admin);
    // The retired key is gone with the file's old contents.
    assert_eq!(
        auth.verify_jwt_at(&old, NOW).unwrap_err(),
        AuthError::UnknownKey
    );

    // A broken file on explicit reload keeps the current keys.
    std::fs::write(&path, "{not json").unwrap();
    let err = auth.reload_jwks().unwrap_err();
    assert!(
        err.to_string().starts_with("auth_config.jwt.jwks_file"),
        "{err}"
    );
    assert!(auth.verify_jwt_at(&new, NOW).is_ok());
}

#[test]
fn rotated_kid_refreshes_even_when_a_kidless_key_was_tried() {
    // A kid-less RS256 key is tried first for an unknown kid (and fails); the JWKS file must
    // still be re-read for the rotated key.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, fixture("jwks.json")).unwrap();
    let auth = auth_with(vec![pem_key("RS256", "rsa-public.pem", None)], |j| {
        j.jwks_file = Some(path.clone());
    });
    std::fs::write(&path, fixture("jwks-rotated.json")).unwrap();
    let key2 = EncodingKey::from_rsa_pem(fixture("rsa2-private.pem").as_bytes()).unwrap();
    let token = sign_with(Algorithm::RS256, &key2, Some("rsa-2"), &admin_claims());
    assert!(auth.verify_jwt_at(&token, NOW).is_ok());
}

#[test]
fn shared_across_threads() {
    let auth = std::sync::Arc::new(auth_with(
        vec![
            hs_key("HS256", None),
            pem_key("ES256", "ec256-public.pem", None),
        ],
        |_| {},
    ));
    let hs = sign(Algorithm::HS256, None, &admin_claims());
    let es = sign(Algorithm::ES256, None, &admin_claims());
    std::thread::scope(|s| {
        for i in 0..8 {
            let (auth, token) = (&auth, if i % 2 == 0 { &hs } else { &es });
            s.spawn(move || {
                for _ in 0..20 {
                    assert!(auth.verify_jwt_at(token, NOW).unwrap().is_admin);
                }
            });
        }
    });
}

#[test]
fn env_reference_as_hmac_secret() {
    // `std::env::set_var` is off limits, so use a variable every test environment has.
    let path = std::env::var("PATH").unwrap();
    let auth = auth_with(
        vec![JwtKeyConfig {
            alg: "HS256".into(),
            secret: Some(Secret::new("env.PATH")),
            public_key_pem: None,
            kid: None,
        }],
        |_| {},
    );
    let token = sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(path.as_bytes()).unwrap(),
        None,
        &admin_claims(),
    );
    assert!(auth.verify_jwt_at(&token, NOW).is_ok());
    // The literal text "env.PATH" is not the secret.
    let token = sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"env.PATH").unwrap(),
        None,
        &admin_claims(),
    );
    assert_eq!(
        auth.verify_jwt_at(&token, NOW).unwrap_err(),
        AuthError::BadSignature
    );
}

#[test]
fn pem_from_env_with_escaped_newlines_is_accepted() {
    let escaped = fixture("ec256-public.pem").replace('\n', "\\n");
    let auth = auth_with(
        vec![JwtKeyConfig {
            alg: "ES256".into(),
            secret: None,
            public_key_pem: Some(Secret::new(escaped)),
            kid: None,
        }],
        |_| {},
    );
    assert!(
        auth.verify_jwt_at(&sign(Algorithm::ES256, None, &admin_claims()), NOW)
            .is_ok()
    );
}

#[test]
fn configuration_errors_name_the_field() {
    let unset = "env.CAUSEWAY_AUTH_TEST_VARIABLE_THAT_IS_NEVER_SET";
    let cases: Vec<(Vec<JwtKeyConfig>, &str)> = vec![
        (
            vec![
                hs_key("HS256", None),
                pem_key("RS256", "rsa-private.pem", None),
            ],
            "auth_config.jwt.keys[1].public_key_pem: is a private key",
        ),
        (
            vec![pem_key("ES256", "rsa-public.pem", None)],
            "auth_config.jwt.keys[0].public_key_pem: is an RSA public key but alg is ES256",
        ),
        (
            vec![pem_key("ES256", "ec384-public.pem", None)],
            "auth_config.jwt.keys[0].public_key_pem: is a P-384 key but alg is ES256",
        ),
        (
            vec![pem_key("RS256", "rsa1024-public.pem", None)],
            "auth_config.jwt.keys[0].public_key_pem: RSA key is 1024 bits",
        ),
        (
            vec![JwtKeyConfig {
                alg: "RS256".into(),
                secret: None,
                public_key_pem: Some(Secret::new("hello")),
                kid: None,
            }],
            "auth_config.jwt.keys[0].public_key_pem: not a PEM public key",
        ),
        (
            vec![JwtKeyConfig {
                alg: "RS256".into(),
                secret: Some(Secret::new(HS_SECRET)),
                public_key_pem: None,
                kid: None,
            }],
            "auth_config.jwt.keys[0].secret: only HS256/HS384/HS512 keys take a secret",
        ),
        (
            vec![JwtKeyConfig {
                alg: "HS256".into(),
                secret: None,
                public_key_pem: None,
                kid: None,
            }],
            "auth_config.jwt.keys[0].secret: required for HS256",
        ),
        (
            vec![JwtKeyConfig {
                alg: "HS256".into(),
                secret: Some(Secret::new(unset)),
                public_key_pem: None,
                kid: None,
            }],
            "auth_config.jwt.keys[0].secret: env.CAUSEWAY_AUTH_TEST_VARIABLE_THAT_IS_NEVER_SET is not set",
        ),
        (
            vec![hs_key("none", None)],
            "auth_config.jwt.keys[0].alg: unsupported algorithm \"none\"",
        ),
        (
            vec![hs_key("HS256", Some(""))],
            "auth_config.jwt.keys[0].kid: is empty",
        ),
        (
            vec![],
            "auth_config.jwt: configure at least one entry in keys",
        ),
    ];
    for (keys, expect) in cases {
        let err = config_error(keys);
        assert!(err.starts_with(expect), "want {expect:?}, got {err:?}");
        // DER key material in PEMs starts with "MI" (SEQUENCE) or "MC" (short Ed25519 SPKI).
        assert!(
            !err.contains("MII") && !err.contains("MCow"),
            "error echoes key material: {err}"
        );
        assert!(!err.contains(HS_SECRET));
    }
    let err = Authenticator::new(&AuthConfig {
        jwt: Some(JwtConfig {
            jwks_file: Some(fixtures().join("missing.json")),
            ..JwtConfig::default()
        }),
        ..AuthConfig::default()
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("auth_config.jwt.jwks_file: cannot open"),
        "{err}"
    );
}

#[test]
fn admin_password_checks() {
    let cfg: AuthConfig = serde_json::from_value(json!({
        "is_enabled": true, "admin_username": "root", "admin_password": "correct horse"
    }))
    .unwrap();
    let auth = Authenticator::new(&cfg).unwrap();
    assert!(auth.enabled());
    assert!(auth.has_admin_password());
    assert!(!auth.has_jwt());
    assert!(auth.check_admin_password("root", "correct horse"));
    assert!(!auth.check_admin_password("root", "correct horsE"));
    assert!(!auth.check_admin_password("admin", "correct horse"));
    assert!(!auth.check_admin_password("", ""));
    assert_eq!(
        auth.verify_jwt_at("a.b.c", NOW).unwrap_err(),
        AuthError::JwtNotConfigured
    );
    assert!(!format!("{auth:?}").contains("correct"));

    // Username defaults to "admin"; no password means no password login.
    let auth = Authenticator::new(&AuthConfig {
        admin_password: Some(Secret::new("pw")),
        ..AuthConfig::default()
    })
    .unwrap();
    assert!(!auth.enabled());
    assert!(auth.check_admin_password("admin", "pw"));
    let none = Authenticator::new(&AuthConfig::default()).unwrap();
    assert!(!none.enabled() && !none.has_admin_password());
    assert!(!none.check_admin_password("admin", ""));

    // A missing env variable stops startup only when auth is on.
    let unset = Secret::new("env.CAUSEWAY_AUTH_TEST_VARIABLE_THAT_IS_NEVER_SET");
    let mut cfg = AuthConfig {
        admin_password: Some(unset),
        ..AuthConfig::default()
    };
    assert!(!Authenticator::new(&cfg).unwrap().has_admin_password());
    cfg.is_enabled = true;
    let err = Authenticator::new(&cfg).unwrap_err();
    assert_eq!(err.field, "auth_config.admin_password");

    // JWT keys alone turn auth on.
    let auth = auth_with(vec![hs_key("HS256", None)], |_| {});
    assert!(auth.enabled() && auth.has_jwt() && !auth.has_admin_password());
}

#[test]
fn config_json_shape() {
    let cfg: AuthConfig = serde_json::from_value(json!({
        "is_enabled": true,
        "jwt": {
            "keys": [
                {"alg": "HS256", "secret": HS_SECRET, "kid": "h1"},
                {"alg": "ES256", "public_key_pem": fixture("ec256-public.pem")}
            ],
            "jwks_file": fixtures().join("jwks.json"),
            "issuer": "https://idp.example",
            "audience": "causeway",
            "roles_claim": "realm_access.roles",
            "admin_roles": ["admin", "TENANTADMIN"],
            "virtual_key_claim": "virtual_key",
            "leeway_seconds": 5
        }
    }))
    .unwrap();
    let auth = Authenticator::new(&cfg).unwrap();
    let token = sign(
        Algorithm::HS256,
        Some("h1"),
        &json!({"iss": "https://idp.example", "aud": "causeway", "virtual_key": "vk-9"}),
    );
    assert_eq!(
        auth.verify_jwt_at(&token, NOW)
            .unwrap()
            .virtual_key
            .as_deref(),
        Some("vk-9")
    );
    assert!(!format!("{auth:?}").contains(HS_SECRET));
}
