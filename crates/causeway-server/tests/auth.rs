//! Authentication over real HTTP: admin and virtual-key JWTs (HS256, RS256, ES256, JWKS),
//! every way a token can be wrong (401 + `WWW-Authenticate`, token never echoed), MPilot
//! claims, the management permission matrix for virtual keys, Basic admin auth, Bifrost's
//! session login/logout with brute-force limiting, `is-auth-enabled`,
//! `client.enforce_auth_on_inference`, and binding a non-loopback address.
//!
//! Keys come from `crates/causeway-auth/tests/fixtures` (openssl-made, test-only).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use causeway_server::Gateway;
use common::{Harness, chat_body, create_vk, json_of, options, provider, send};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mock_provider::{MockConfig, MockServer};
use reqwest::Method;
use serde_json::{Value, json};
use tower::ServiceExt;

const HS_SECRET: &str = "causeway-http-test-secret-0123456789abcdef0123456789";
const ADMIN_USER: &str = "admin";
const ADMIN_PASS: &str = "correct horse battery staple";
const ISSUER: &str = "https://idp.example.test";
const AUDIENCE: &str = "causeway";
const UPSTREAM_KEY: &str = "sk-upstream-1111111111111111";
const MODEL: &str = "openai/gpt-4o-mini";

// ---- fixtures and tokens ---------------------------------------------------------------

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../causeway-auth/tests/fixtures")
        .join(name)
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Registered claims valid for an hour, plus `extra`.
fn claims(extra: Value) -> Value {
    let mut c =
        json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now(), "exp": now() + 3600});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn hs256_with(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn hs256(claims: &Value) -> String {
    hs256_with(claims, HS_SECRET)
}

fn rs256_with(claims: &Value, private_pem: &str, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(fixture(private_pem).as_bytes()).unwrap(),
    )
    .unwrap()
}

fn rs256(claims: &Value) -> String {
    rs256_with(claims, "rsa-private.pem", None)
}

fn es256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        claims,
        &EncodingKey::from_ec_pem(fixture("ec256-private.pem").as_bytes()).unwrap(),
    )
    .unwrap()
}

/// An unsigned token (`alg: none`, empty signature).
fn unsigned(claims: &Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let p = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{h}.{p}.")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")))
}

fn admin_basic() -> String {
    basic(ADMIN_USER, ADMIN_PASS)
}

// ---- gateway setup ---------------------------------------------------------------------

fn jwt_block() -> Value {
    json!({
        "keys": [
            {"alg": "HS256", "secret": HS_SECRET},
            {"alg": "RS256", "public_key_pem": fixture("rsa-public.pem")},
            {"alg": "ES256", "public_key_pem": fixture("ec256-public.pem")}
        ],
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "roles_claim": "roles",
        "admin_roles": ["admin"],
        "virtual_key_claim": "vk"
    })
}

fn auth_block() -> Value {
    json!({
        "is_enabled": true,
        "admin_username": ADMIN_USER,
        "admin_password": ADMIN_PASS,
        "jwt": jwt_block()
    })
}

fn config(m: &MockServer, auth: Value, enforce: bool) -> Value {
    json!({
        "client": {"enforce_auth_on_inference": enforce},
        "providers": {"openai": provider(&m.base_url(), &[("k1", UPSTREAM_KEY)])},
        "auth_config": auth,
    })
}

async fn mock() -> MockServer {
    MockServer::start(MockConfig::default()).await.unwrap()
}

async fn start(m: &MockServer) -> Harness {
    Harness::start(Some(config(m, auth_block(), false))).await
}

async fn call(h: &Harness, method: Method, path: &str, auth: Option<&str>) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
    let body = body_for(&method, path);
    json_of(send(h, method, path, body.as_ref(), &headers).await).await
}

/// A plausible body for the write route the permission matrix uses.
fn body_for(method: &Method, path: &str) -> Option<Value> {
    (*method == Method::POST && path == "/api/plugins").then(
        || json!({"name": "no-such-plugin", "enabled": false, "path": "/nonexistent/plugin.wasm"}),
    )
}

/// The secret part of an Authorization value or header.
fn secret_of(cred: &str) -> &str {
    cred.strip_prefix("Bearer ")
        .or_else(|| cred.strip_prefix("Basic "))
        .unwrap_or(cred)
}

async fn get(h: &Harness, path: &str, auth: &str) -> (u16, Value) {
    call(h, Method::GET, path, Some(auth)).await
}

/// A 401 with the challenge header, the Bifrost envelope, and no trace of `secret`.
async fn assert_401(resp: reqwest::Response, secret: &str, what: &str) {
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    assert_eq!(status, 401, "{what}: {text}");
    let challenge = challenge.unwrap_or_else(|| panic!("{what}: 401 without WWW-Authenticate"));
    assert!(
        challenge.contains("Bearer") || challenge.contains("Basic"),
        "{what}: {challenge}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["status_code"], 401, "{what}: {v}");
    assert!(v["error"]["message"].is_string(), "{what}: {v}");
    if !secret.is_empty() {
        assert!(
            !text.contains(secret),
            "{what}: the credential is echoed: {text}"
        );
        // Nor any of its signed parts.
        for part in secret.split('.').filter(|p| p.len() > 8) {
            assert!(
                !text.contains(part),
                "{what}: part of the token is echoed: {text}"
            );
        }
    }
}

async fn mgmt(h: &Harness, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    send(h, Method::GET, path, None, headers).await
}

// ---- JWTs ------------------------------------------------------------------------------

#[tokio::test]
async fn admin_jwts_of_each_algorithm_reach_the_management_api() {
    let m = mock().await;
    let h = start(&m).await;
    let admin = claims(json!({"roles": ["admin"]}));
    for (alg, token) in [
        ("HS256", hs256(&admin)),
        ("RS256", rs256(&admin)),
        ("ES256", es256(&admin)),
    ] {
        let auth = bearer(&token);
        for path in [
            "/api/providers",
            "/api/plugins",
            "/api/governance/virtual-keys",
            "/api/governance/budgets",
        ] {
            let (s, v) = get(&h, path, &auth).await;
            assert_eq!(s, 200, "{alg} {path}: {v}");
        }
        // Writes too.
        let (s, v) = json_of(
            send(
                &h,
                Method::POST,
                "/api/governance/customers",
                Some(&json!({"name": format!("by-{alg}")})),
                &[("authorization", &auth)],
            )
            .await,
        )
        .await;
        assert_eq!(s, 200, "{alg}: {v}");
    }
    // Within the default 30 s leeway an expired token still works.
    let late = hs256(&claims(json!({"roles": ["admin"], "exp": now() - 5})));
    assert_eq!(get(&h, "/api/providers", &bearer(&late)).await.0, 200);
    // A token whose roles are not admin roles and that names no key grants nothing.
    let nobody = hs256(&claims(json!({"roles": ["viewer"]})));
    assert_401(
        mgmt(&h, "/api/providers", &[("authorization", &bearer(&nobody))]).await,
        &nobody,
        "no usable claims",
    )
    .await;
}

#[tokio::test]
async fn bad_credentials_are_401_with_a_challenge_and_never_echoed() {
    let m = mock().await;
    let h = start(&m).await;
    let admin = json!({"roles": ["admin"]});
    let mut cases: Vec<(&str, String)> = vec![
        (
            "expired",
            hs256(&claims(json!({"roles": ["admin"], "exp": now() - 3600}))),
        ),
        (
            "not yet valid",
            hs256(&claims(json!({"roles": ["admin"], "nbf": now() + 3600}))),
        ),
        (
            "HS256 wrong secret",
            hs256_with(
                &claims(admin.clone()),
                "another-secret-0123456789abcdef0123456789",
            ),
        ),
        (
            "RS256 signed by another key",
            rs256_with(&claims(admin.clone()), "rsa2-private.pem", None),
        ),
        ("alg none", unsigned(&claims(admin.clone()))),
        (
            "wrong issuer",
            hs256(&claims(
                json!({"roles": ["admin"], "iss": "https://evil.example"}),
            )),
        ),
        ("no issuer", {
            let mut c = claims(admin.clone());
            c.as_object_mut().unwrap().remove("iss");
            hs256(&c)
        }),
        (
            "wrong audience",
            hs256(&claims(json!({"roles": ["admin"], "aud": "someone-else"}))),
        ),
        (
            "malformed payload",
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
                "bm90LWpzb24tYXQtYWxs",
                "c2lnbmF0dXJlc2lnbmF0dXJl"
            ),
        ),
    ];
    // A tampered payload on a valid signature.
    let good = hs256(&claims(json!({"roles": ["viewer"], "vk": "x"})));
    let parts: Vec<&str> = good.split('.').collect();
    let forged_payload = URL_SAFE_NO_PAD.encode(claims(admin.clone()).to_string());
    cases.push((
        "tampered payload",
        format!("{}.{}.{}", parts[0], forged_payload, parts[2]),
    ));
    // RS256 header on an HMAC signature made with the RSA public key (algorithm confusion).
    let confused = {
        let pem = fixture("rsa-public.pem");
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(admin.clone()),
            &EncodingKey::from_secret(pem.as_bytes()).unwrap(),
        )
        .unwrap();
        let p: Vec<&str> = t.split('.').collect();
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
            p[1],
            p[2]
        )
    };
    cases.push(("algorithm confusion", confused));
    for (what, token) in &cases {
        for path in ["/api/providers", "/api/governance/virtual-keys"] {
            assert_401(
                mgmt(&h, path, &[("authorization", &bearer(token))]).await,
                token,
                what,
            )
            .await;
        }
        // Inference refuses a bad token too (it is never treated as anonymous).
        assert_401(
            send(
                &h,
                Method::POST,
                "/v1/chat/completions",
                Some(&chat_body(MODEL)),
                &[("authorization", &bearer(token))],
            )
            .await,
            token,
            what,
        )
        .await;
    }
    // No credentials, an unknown session token, wrong Basic credentials.
    assert_401(mgmt(&h, "/api/providers", &[]).await, "", "no credentials").await;
    let random = "f3a1c9e0b7d24e55a8c6d4b2e1f09a7c";
    assert_401(
        mgmt(&h, "/api/providers", &[("authorization", &bearer(random))]).await,
        random,
        "unknown session token",
    )
    .await;
    let wrong = basic(ADMIN_USER, "hunter2-wrong-password");
    assert_401(
        mgmt(&h, "/api/providers", &[("authorization", &wrong)]).await,
        "hunter2-wrong-password",
        "wrong basic password",
    )
    .await;
    assert_eq!(m.request_count(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn jwks_file_keys_verify_by_kid() {
    let m = mock().await;
    let mut jwt = jwt_block();
    jwt["keys"] = json!([]);
    jwt["jwks_file"] = json!(fixture_path("jwks.json"));
    let auth = json!({"is_enabled": true, "jwt": jwt});
    let h = Harness::start(Some(config(&m, auth, false))).await;
    let admin = claims(json!({"roles": ["admin"]}));
    let ok = rs256_with(&admin, "rsa-private.pem", Some("rsa-1"));
    assert_eq!(get(&h, "/api/providers", &bearer(&ok)).await.0, 200);
    let wrong_key = rs256_with(&admin, "rsa2-private.pem", Some("rsa-1"));
    assert_401(
        mgmt(
            &h,
            "/api/providers",
            &[("authorization", &bearer(&wrong_key))],
        )
        .await,
        &wrong_key,
        "jwks wrong key",
    )
    .await;
}

#[tokio::test]
async fn virtual_key_jwt_carries_the_keys_policy() {
    let m = mock().await;
    let h = start(&m).await;
    let admin = [("authorization", admin_basic())];
    let admin: Vec<(&str, &str)> = admin.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (id, value) = create_vk(
        &h,
        &json!({"name": "jwt-key",
                "provider_configs": [{"provider": "openai", "allowed_models": ["gpt-4o-mini"]}],
                "rate_limit": {"request_max_limit": 3, "request_reset_duration": "1d"}}),
        &admin,
    )
    .await;
    let by_id = hs256(&claims(json!({"vk": id, "roles": ["user"]})));
    let by_value = rs256(&claims(json!({"vk": value})));
    let infer = |token: String, model: &'static str| {
        let h = &h;
        async move {
            json_of(
                send(
                    h,
                    Method::POST,
                    "/v1/chat/completions",
                    Some(&chat_body(model)),
                    &[("authorization", &bearer(&token))],
                )
                .await,
            )
            .await
        }
    };
    let (s, v) = infer(by_id.clone(), MODEL).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = infer(by_id.clone(), "openai/gpt-4o").await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["type"], "model_blocked", "{v}");
    let (s, v) = infer(by_value.clone(), MODEL).await;
    assert_eq!(s, 200, "{v}");
    // Both tokens count against the key itself: with the raw key that makes 3 of 3.
    let (s, v) = json_of(
        send(
            &h,
            Method::POST,
            "/v1/chat/completions",
            Some(&chat_body(MODEL)),
            &[("x-bf-vk", &value)],
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = infer(by_id.clone(), MODEL).await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["type"], "request_limited", "{v}");
    // The upstream got the provider key, never the token.
    for r in m.requests() {
        assert_eq!(r.api_key.as_deref(), Some(UPSTREAM_KEY));
    }
    // Deactivated: the token stops working the same way.
    let (s, _) = json_of(
        send(
            &h,
            Method::PUT,
            &format!("/api/governance/virtual-keys/{id}"),
            Some(&json!({"is_active": false, "rate_limit": {"request_max_limit": 100, "request_reset_duration": "1d"}})),
            &admin,
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = infer(by_id.clone(), MODEL).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["type"], "virtual_key_blocked", "{v}");
    // A token naming a key that does not exist.
    let ghost = hs256(&claims(
        json!({"vk": "00000000-0000-0000-0000-000000000000"}),
    ));
    let (s, v) = infer(ghost, MODEL).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["type"], "virtual_key_not_found", "{v}");
    // The Anthropic door takes the same token.
    let (s, _) = json_of(
        send(
            &h,
            Method::PUT,
            &format!("/api/governance/virtual-keys/{id}"),
            Some(&json!({"is_active": true})),
            &admin,
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = json_of(
        send(
            &h,
            Method::POST,
            "/anthropic/v1/messages",
            Some(&json!({"model": "openai/gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})),
            &[("authorization", &bearer(&by_id))],
        )
        .await,
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(
        v["extra_fields"]["error_type"], "policy_model_blocked",
        "{v}"
    );
}

#[tokio::test]
async fn mpilot_claims_admin_and_access_key() {
    let m = mock().await;
    // MPilot tokens carry no iss/aud; TENANTADMIN is the admin role.
    let auth = json!({
        "is_enabled": true,
        "jwt": {
            "keys": [
                {"alg": "HS256", "secret": HS_SECRET},
                {"alg": "RS256", "public_key_pem": fixture("rsa-public.pem")}
            ],
            "admin_roles": ["TENANTADMIN"]
        }
    });
    let h = Harness::start(Some(config(&m, auth, true))).await;
    let exp = now() + 600;
    let tenant_admin = json!({"tenantId": "t-42", "userId": "u-7", "morgId": "o-1",
                              "accessKey": "11111111-2222-3333-4444-555555555555",
                              "roles": ["TENANTADMIN"], "exp": exp});
    for token in [hs256(&tenant_admin), rs256(&tenant_admin)] {
        let (s, v) = get(&h, "/api/providers", &bearer(&token)).await;
        assert_eq!(s, 200, "{v}");
    }
    let admin_token = bearer(&rs256(&tenant_admin));
    let (id, _) = create_vk(
        &h,
        &json!({"name": "mpilot",
                "provider_configs": [{"provider": "openai", "allowed_models": ["gpt-4o-mini"]}],
                "permissions": ["plugins:read"]}),
        &[("authorization", &admin_token)],
    )
    .await;
    let user = rs256(
        &json!({"tenantId": "t-42", "userId": "u-8", "accessKey": id,
                             "roles": ["USER"], "exp": exp}),
    );
    let user_auth = bearer(&user);
    // Inference under the key's policy (and enforcement is satisfied by the token).
    let (s, v) = json_of(
        send(
            &h,
            Method::POST,
            "/v1/chat/completions",
            Some(&chat_body(MODEL)),
            &[("authorization", &user_auth)],
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = json_of(
        send(
            &h,
            Method::POST,
            "/v1/chat/completions",
            Some(&chat_body("openai/gpt-4o")),
            &[("authorization", &user_auth)],
        )
        .await,
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["type"], "model_blocked");
    // Management under the key's permissions.
    assert_eq!(get(&h, "/api/plugins", &user_auth).await.0, 200);
    assert_eq!(get(&h, "/api/providers", &user_auth).await.0, 403);
    // A token with neither an admin role nor an access key grants nothing.
    let empty = hs256(&json!({"tenantId": "t-42", "userId": "u-9", "roles": ["USER"], "exp": exp}));
    assert_401(
        mgmt(&h, "/api/plugins", &[("authorization", &bearer(&empty))]).await,
        &empty,
        "mpilot token without accessKey",
    )
    .await;
}

// ---- management permissions ------------------------------------------------------------

/// Who, their credential, and (route, expected status) pairs.
type MatrixRow<'a> = (&'a str, String, Vec<((Method, &'a str), u16)>);

#[tokio::test]
async fn management_permission_matrix() {
    let m = mock().await;
    let h = start(&m).await;
    let admin = admin_basic();
    let admin_h = [("authorization", admin.as_str())];
    let (reader_id, reader) = create_vk(
        &h,
        &json!({"name": "reader", "permissions": ["plugins:read"]}),
        &admin_h,
    )
    .await;
    let (_, nothing) = create_vk(&h, &json!({"name": "nothing"}), &admin_h).await;
    let (_, writer) = create_vk(
        &h,
        &json!({"name": "writer", "permissions": ["providers:write"]}),
        &admin_h,
    )
    .await;
    let (_, star) = create_vk(&h, &json!({"name": "star", "permissions": ["*"]}), &admin_h).await;
    let (_, off) = create_vk(
        &h,
        &json!({"name": "off", "permissions": ["*"], "is_active": false}),
        &admin_h,
    )
    .await;
    let (_, old) = create_vk(
        &h,
        &json!({"name": "old", "permissions": ["*"], "expires_at": "2020-01-01T00:00:00Z"}),
        &admin_h,
    )
    .await;
    let reader_jwt = hs256(&claims(json!({"vk": reader_id})));
    let admin_jwt = rs256(&claims(json!({"roles": ["admin"]})));

    let get_plugins = (Method::GET, "/api/plugins");
    let post_plugins = (Method::POST, "/api/plugins");
    let get_providers = (Method::GET, "/api/providers");
    let get_builtins = (Method::GET, "/api/plugins/builtins");
    let get_vks = (Method::GET, "/api/governance/virtual-keys");
    let rows: Vec<MatrixRow> = vec![
        (
            "reader (raw)",
            bearer(&reader),
            vec![
                (get_plugins.clone(), 200),
                (get_builtins.clone(), 200),
                (post_plugins.clone(), 403),
                (get_providers.clone(), 403),
                (get_vks.clone(), 403),
            ],
        ),
        (
            "reader (x-bf-vk)",
            reader.clone(),
            vec![(get_plugins.clone(), 200), (get_providers.clone(), 403)],
        ),
        (
            "reader (JWT)",
            bearer(&reader_jwt),
            vec![
                (get_plugins.clone(), 200),
                (post_plugins.clone(), 403),
                (get_providers.clone(), 403),
            ],
        ),
        (
            "no permissions",
            bearer(&nothing),
            vec![(get_plugins.clone(), 403), (get_providers.clone(), 403)],
        ),
        (
            "providers:write",
            bearer(&writer),
            vec![(get_providers.clone(), 200), (get_plugins.clone(), 403)],
        ),
        (
            "*",
            bearer(&star),
            vec![(get_providers.clone(), 200), (get_vks.clone(), 200)],
        ),
        (
            "inactive *",
            bearer(&off),
            vec![(get_providers.clone(), 403)],
        ),
        (
            "expired *",
            bearer(&old),
            vec![(get_providers.clone(), 403)],
        ),
        (
            "admin basic",
            admin.clone(),
            vec![
                (get_plugins.clone(), 200),
                (get_providers.clone(), 200),
                (get_vks.clone(), 200),
            ],
        ),
        (
            "admin jwt",
            bearer(&admin_jwt),
            vec![
                (get_plugins.clone(), 200),
                (get_providers.clone(), 200),
                (get_vks.clone(), 200),
            ],
        ),
    ];
    for (who, cred, checks) in rows {
        let header = if cred.starts_with("sk-bf-") {
            "x-bf-vk"
        } else {
            "authorization"
        };
        for ((method, path), want) in checks {
            let body = body_for(&method, path);
            let resp = send(&h, method.clone(), path, body.as_ref(), &[(header, &cred)]).await;
            let (s, v) = json_of(resp).await;
            if want == 200 {
                assert!(
                    s != 401 && s != 403,
                    "{who}: {method} {path} should be allowed, got {s}: {v}"
                );
            } else {
                assert_eq!(s, want, "{who}: {method} {path}: {v}");
                assert_eq!(v["status_code"], 403, "{who}: {v}");
                assert!(
                    !v.to_string().contains(secret_of(&cred)),
                    "{who}: credential echoed: {v}"
                );
            }
        }
    }
    // The plugin POST by the reader was refused before anything happened.
    let (_, v) = get(&h, "/api/plugins", &admin).await;
    assert!(!v.to_string().contains("no-such-plugin"), "{v}");
}

// ---- Basic, sessions -------------------------------------------------------------------

#[tokio::test]
async fn basic_admin_auth() {
    let m = mock().await;
    let h = start(&m).await;
    assert_eq!(get(&h, "/api/providers", &admin_basic()).await.0, 200);
    // Bifrost back-compat: `Bearer base64(user:pass)`.
    let legacy = format!(
        "Bearer {}",
        STANDARD.encode(format!("{ADMIN_USER}:{ADMIN_PASS}"))
    );
    assert_eq!(get(&h, "/api/providers", &legacy).await.0, 200);
    for (user, pass) in [
        (ADMIN_USER, "not-the-password-7f3a"),
        ("root", ADMIN_PASS),
        (ADMIN_USER, ""),
    ] {
        assert_401(
            mgmt(
                &h,
                "/api/providers",
                &[("authorization", &basic(user, pass))],
            )
            .await,
            if pass.is_empty() { "" } else { pass },
            "wrong basic",
        )
        .await;
    }
}

async fn login(h: &Harness, user: &str, pass: &str) -> reqwest::Response {
    h.post(
        "/api/session/login",
        &json!({"username": user, "password": pass}),
    )
    .await
}

#[tokio::test]
async fn session_login_token_cookie_and_logout() {
    let m = mock().await;
    let h = start(&m).await;
    let resp = login(&h, ADMIN_USER, ADMIN_PASS).await;
    assert_eq!(resp.status(), 200);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .expect("login sets a cookie")
        .to_str()
        .unwrap()
        .to_owned();
    let (_, v) = json_of(resp).await;
    assert_eq!(v["message"], "Login successful");
    let token = v["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 32, "{token}");
    assert!(cookie.starts_with(&format!("token={token}")), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    // The token as Bearer, and as the cookie.
    assert_eq!(get(&h, "/api/providers", &bearer(&token)).await.0, 200);
    let (s, v) = json_of(
        mgmt(
            &h,
            "/api/providers",
            &[("cookie", &format!("token={token}"))],
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = json_of(
        mgmt(
            &h,
            "/api/session/is-auth-enabled",
            &[("authorization", &bearer(&token))],
        )
        .await,
    )
    .await;
    assert_eq!(v["has_valid_token"], true, "{v}");
    // Tokens are stored hashed.
    for e in std::fs::read_dir(h.dir.path()).unwrap() {
        let p = e.unwrap().path();
        if let Ok(bytes) = std::fs::read(&p) {
            assert!(
                !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                "session token stored in clear in {}",
                p.display()
            );
        }
    }
    // Logout invalidates it.
    let resp = send(
        &h,
        Method::POST,
        "/api/session/logout",
        None,
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let cleared = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_401(
        mgmt(&h, "/api/providers", &[("authorization", &bearer(&token))]).await,
        &token,
        "after logout",
    )
    .await;
    assert_401(
        mgmt(
            &h,
            "/api/providers",
            &[("cookie", &format!("token={token}"))],
        )
        .await,
        &token,
        "cookie after logout",
    )
    .await;
    // Wrong password.
    let resp = login(&h, ADMIN_USER, "nope-nope").await;
    assert_401(resp, "nope-nope", "wrong login").await;
}

#[tokio::test]
async fn login_brute_force_is_rate_limited() {
    let m = mock().await;
    let h = start(&m).await;
    for i in 0..5 {
        let resp = login(&h, ADMIN_USER, "guess").await;
        assert_eq!(resp.status(), 401, "failure {}", i + 1);
    }
    // The 5th failure locks the address out (1 s, doubling): a 429 must follow at once.
    let mut locked = None;
    for _ in 0..3 {
        let resp = login(&h, ADMIN_USER, "guess").await;
        if resp.status() == 429 {
            locked = Some(resp);
            break;
        }
        assert_eq!(resp.status(), 401);
    }
    let resp = locked.expect("no 429 after 5 failed logins");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "Retry-After {retry}");
    let (_, v) = json_of(resp).await;
    assert_eq!(v["status_code"], 429, "{v}");
    // While locked out, even the right password is refused.
    let resp = login(&h, ADMIN_USER, ADMIN_PASS).await;
    assert_eq!(resp.status(), 429, "locked-out address logged in");
}

#[tokio::test]
async fn is_auth_enabled_shape() {
    let m = mock().await;
    // No auth configured.
    let h = Harness::start(Some(
        json!({"providers": {"openai": provider(&m.base_url(), &[("k1", UPSTREAM_KEY)])}}),
    ))
    .await;
    let (s, v) = json_of(h.get("/api/session/is-auth-enabled").await).await;
    assert_eq!(s, 200);
    assert_eq!(
        v,
        json!({"is_auth_enabled": false, "has_valid_token": false, "auth_type": "none", "inference_auth_enforced": false})
    );
    drop(h);
    // Password + JWT, enforced on inference; no credentials needed to ask.
    let h = Harness::start(Some(config(&m, auth_block(), true))).await;
    let (s, v) = json_of(h.get("/api/session/is-auth-enabled").await).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["is_auth_enabled"], true);
    assert_eq!(v["has_valid_token"], false);
    assert_eq!(v["auth_type"], "password");
    assert_eq!(v["inference_auth_enforced"], true);
    let (_, v) = json_of(
        mgmt(
            &h,
            "/api/session/is-auth-enabled",
            &[("authorization", &admin_basic())],
        )
        .await,
    )
    .await;
    assert_eq!(v["has_valid_token"], true);
    drop(h);
    // JWT only.
    let h = Harness::start(Some(config(
        &m,
        json!({"is_enabled": true, "jwt": jwt_block()}),
        false,
    )))
    .await;
    let (_, v) = json_of(h.get("/api/session/is-auth-enabled").await).await;
    assert_eq!(v["is_auth_enabled"], true);
    assert_eq!(v["auth_type"], "jwt");
    // Login is refused without a password configured.
    let resp = login(&h, ADMIN_USER, ADMIN_PASS).await;
    assert_eq!(resp.status(), 403);
}

// ---- inference enforcement and binding -------------------------------------------------

#[tokio::test]
async fn enforce_auth_on_inference() {
    let m = mock().await;
    let h = Harness::start(Some(config(&m, auth_block(), true))).await;
    let admin = admin_basic();
    let (_, key) = create_vk(&h, &json!({"name": "client"}), &[("authorization", &admin)]).await;
    for path in [
        "/v1/chat/completions",
        "/openai/v1/chat/completions",
        "/anthropic/v1/messages",
    ] {
        let b = json!({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
        assert_401(
            send(&h, Method::POST, path, Some(&b), &[]).await,
            "",
            &format!("{path} without a key"),
        )
        .await;
        // A provider-style key that is not a virtual key does not count.
        assert_401(
            send(
                &h,
                Method::POST,
                path,
                Some(&b),
                &[("authorization", "Bearer sk-openai-client-key-0000")],
            )
            .await,
            "sk-openai-client-key-0000",
            &format!("{path} with a non-virtual key"),
        )
        .await;
        let (s, v) =
            json_of(send(&h, Method::POST, path, Some(&b), &[("x-bf-vk", &key)]).await).await;
        assert_eq!(s, 200, "{path}: {v}");
        let (s, v) = json_of(
            send(
                &h,
                Method::POST,
                path,
                Some(&b),
                &[("x-bf-vk", "sk-bf-NotAKey00000000000000000000000000000000")],
            )
            .await,
        )
        .await;
        assert_eq!(s, 403, "{path}: {v}");
    }
    assert_eq!(m.request_count(), 3);
    // Without enforcement, anonymous inference passes (governance is opt-in per request).
    let m2 = mock().await;
    let h2 = Harness::start(Some(config(&m2, auth_block(), false))).await;
    let (s, v) = json_of(h2.chat(MODEL).await).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn non_loopback_bind_needs_auth() {
    let m = mock().await;
    // Without auth: refused.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(
            &json!({"providers": {"openai": provider(&m.base_url(), &[("k1", UPSTREAM_KEY)])}}),
        )
        .unwrap(),
    )
    .unwrap();
    let mut opts = options(dir.path().to_path_buf());
    opts.host = "0.0.0.0".into();
    match Gateway::start(opts).await {
        Ok(gw) => {
            gw.shutdown().await;
            panic!("bound 0.0.0.0 without auth");
        }
        Err(e) => assert!(e.to_string().contains("without authentication"), "{e}"),
    }
    // With auth: binds, and credentials are required even from loopback.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&config(&m, auth_block(), false)).unwrap(),
    )
    .unwrap();
    let mut opts = options(dir.path().to_path_buf());
    opts.host = "0.0.0.0".into();
    let gw = match Gateway::start(opts).await {
        Ok(gw) => gw,
        Err(e) => panic!("bind 0.0.0.0 with auth: {e}"),
    };
    assert!(gw.addr.ip().is_unspecified(), "{}", gw.addr);
    let url = format!("http://127.0.0.1:{}/api/providers", gw.addr.port());
    let client = reqwest::Client::new();
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client
        .get(&url)
        .header("authorization", admin_basic())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A remote peer (simulated in-process) gets the same treatment.
    let router = causeway_server::router(Arc::clone(&gw.state));
    let remote = SocketAddr::from(([203, 0, 113, 9], 51000));
    for (auth, want) in [(None, 401u16), (Some(admin_basic()), 200)] {
        let mut b = http::Request::builder().method("GET").uri("/api/providers");
        if let Some(a) = &auth {
            b = b.header("authorization", a);
        }
        let mut req = b.body(axum::body::Body::empty()).unwrap();
        req.extensions_mut().insert(ConnectInfo(remote));
        let resp = router.clone().oneshot(req).await.unwrap();
        assert_eq!(
            resp.status().as_u16(),
            want,
            "remote, auth={}",
            auth.is_some()
        );
    }
    gw.shutdown().await;
}

/// Bifrost reads `x-bf-vk` for governance whatever authenticated the caller ("Authorization
/// carries a VK only when it is not used for admin auth"): a key that is sent explicitly
/// must be governed even when admin credentials ride along.
#[tokio::test]
async fn explicit_virtual_key_is_governed_even_next_to_admin_credentials() {
    let m = mock().await;
    let h = start(&m).await;
    let admin = admin_basic();
    let (_, key) = create_vk(
        &h,
        &json!({"name": "narrow", "provider_configs": [{"provider": "openai", "allowed_models": ["gpt-4o-mini"]}]}),
        &[("authorization", &admin)],
    )
    .await;
    let admin_jwt = bearer(&hs256(&claims(json!({"roles": ["admin"]}))));
    for (who, cred) in [("basic", admin.as_str()), ("admin jwt", admin_jwt.as_str())] {
        let (s, v) = json_of(
            send(
                &h,
                Method::POST,
                "/v1/chat/completions",
                Some(&chat_body("openai/gpt-4o")),
                &[("authorization", cred), ("x-bf-vk", &key)],
            )
            .await,
        )
        .await;
        assert_eq!(
            s, 403,
            "{who} + x-bf-vk: the virtual key's model policy was skipped: {v}"
        );
        assert_eq!(v["type"], "model_blocked", "{v}");
    }
}

/// The admin password is also accepted as HTTP Basic on every `/api` route (and as
/// `Bearer base64(user:pass)`), so password guessing there must be limited like the login
/// endpoint, or the login limiter is trivially bypassed.
#[tokio::test]
async fn basic_auth_password_guessing_is_rate_limited_too() {
    let m = mock().await;
    let h = start(&m).await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for i in 0..12 {
        let guess = basic(ADMIN_USER, &format!("guess-{i}"));
        let resp = mgmt(&h, "/api/providers", &[("authorization", &guess)]).await;
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 {
            limited = Some(resp);
            break;
        }
    }
    let resp = limited.unwrap_or_else(|| {
        panic!("12 wrong Basic passwords on /api/providers, never rate limited: {statuses:?}")
    });
    assert!(resp.headers().contains_key("retry-after"));
    assert!(statuses[..5].iter().all(|s| *s == 401), "{statuses:?}");
}

/// `GET /v1/models` (and `/openai/v1/models`) are inference routes: with
/// `enforce_auth_on_inference` an anonymous caller must not list models (the gateway calls
/// every upstream with its provider keys to answer).
#[tokio::test]
async fn enforce_auth_on_inference_covers_model_listing() {
    let m = mock().await;
    let h = Harness::start(Some(config(&m, auth_block(), true))).await;
    let (_, key) = create_vk(
        &h,
        &json!({"name": "lister"}),
        &[("authorization", &admin_basic())],
    )
    .await;
    for path in ["/v1/models", "/openai/v1/models"] {
        let resp = mgmt(&h, path, &[("x-bf-vk", &key)]).await;
        assert_eq!(resp.status(), 200, "{path} with a key");
        assert_401(
            mgmt(&h, path, &[]).await,
            "",
            &format!("{path} without a key"),
        )
        .await;
    }
}

/// No `auth_config` at all, only mandatory virtual keys (a common Bifrost setup).
#[tokio::test]
async fn enforce_auth_on_inference_without_auth_config() {
    let m = mock().await;
    let h = Harness::start(Some(json!({
        "client": {"enforce_auth_on_inference": true},
        "providers": {"openai": provider(&m.base_url(), &[("k1", UPSTREAM_KEY)])},
    })))
    .await;
    let (_, key) = create_vk(&h, &json!({"name": "only-vks"}), &[]).await;
    assert_401(h.chat(MODEL).await, "", "no key").await;
    let (s, v) = json_of(
        send(
            &h,
            Method::POST,
            "/v1/chat/completions",
            Some(&chat_body(MODEL)),
            &[("authorization", &bearer(&key))],
        )
        .await,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(m.request_count(), 1);
}
