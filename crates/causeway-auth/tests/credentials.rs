//! Credential extraction from headers, random token generation and hashing, constant-time
//! comparison, and the login limiter.

// Test helpers outside #[test] fns are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use causeway_auth::{
    Credential, LoginLimiter, VIRTUAL_KEY_PREFIX, constant_time_eq, credentials,
    generate_session_token, generate_virtual_key, hash_secret, looks_like_jwt,
};
use http::{HeaderMap, HeaderValue};

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")))
}

const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";

#[test]
fn authorization_comes_first_then_vk_headers() {
    let h = headers(&[
        ("x-goog-api-key", "sk-bf-goog"),
        ("x-api-key", "sk-bf-anthropic"),
        ("x-bf-vk", "legacy-unprefixed-vk"),
        ("authorization", &format!("Bearer {JWT}")),
        ("api-key", "sk-bf-azure"),
    ]);
    assert_eq!(
        credentials(&h),
        vec![
            Credential::Bearer(JWT.into()),
            Credential::VirtualKey("legacy-unprefixed-vk".into()),
            Credential::VirtualKey("sk-bf-anthropic".into()),
            Credential::VirtualKey("sk-bf-goog".into()),
            Credential::VirtualKey("sk-bf-azure".into()),
        ]
    );
}

#[test]
fn bearer_virtual_keys_and_provider_keys() {
    // A Bearer sk-bf- value is a virtual key, not a JWT/session token.
    assert_eq!(
        credentials(&headers(&[("authorization", "Bearer sk-bf-abc")])),
        vec![Credential::VirtualKey("sk-bf-abc".into())]
    );
    // The scheme is case-insensitive.
    assert_eq!(
        credentials(&headers(&[("authorization", "bearer sk-bf-abc")])),
        vec![Credential::VirtualKey("sk-bf-abc".into())]
    );
    // Provider keys in x-api-key / x-goog-api-key / api-key are the caller's own: ignored.
    let h = headers(&[
        ("x-api-key", "sk-ant-api03-provider"),
        ("x-goog-api-key", "AIzaSyProviderKey"),
        ("api-key", "azure-provider-key"),
    ]);
    assert!(credentials(&h).is_empty());
    // x-bf-vk takes any value.
    assert_eq!(
        credentials(&headers(&[("x-bf-vk", "sk-bf-x")])),
        vec![Credential::VirtualKey("sk-bf-x".into())]
    );
    // The same key in several headers is reported once.
    let h = headers(&[
        ("authorization", "Bearer sk-bf-same"),
        ("x-bf-vk", "sk-bf-same"),
        ("x-api-key", "sk-bf-same"),
    ]);
    assert_eq!(
        credentials(&h),
        vec![Credential::VirtualKey("sk-bf-same".into())]
    );
}

#[test]
fn basic_and_bifrost_bearer_basic() {
    assert_eq!(
        credentials(&headers(&[("authorization", &basic("admin", "p:a:ss"))])),
        vec![Credential::Basic {
            user: "admin".into(),
            pass: "p:a:ss".into()
        }]
    );
    // Bifrost back-compat: Bearer base64(user:pass) is offered as a bearer token, then as Basic.
    let b64 = STANDARD.encode("admin:secret");
    assert_eq!(
        credentials(&headers(&[("authorization", &format!("Bearer {b64}"))])),
        vec![
            Credential::Bearer(b64.clone()),
            Credential::Basic {
                user: "admin".into(),
                pass: "secret".into()
            }
        ]
    );
    // Garbage Basic values and empty bearers yield nothing.
    for bad in [
        "Basic !!!",
        "Basic bm9jb2xvbg==",
        "Bearer ",
        "Bearer",
        "Token abc",
        "",
    ] {
        assert!(
            credentials(&headers(&[("authorization", bad)])).is_empty(),
            "{bad:?}"
        );
    }
    // A session token is just a bearer.
    let session = generate_session_token().unwrap();
    assert_eq!(
        credentials(&headers(&[("authorization", &format!("Bearer {session}"))])),
        vec![Credential::Bearer(session)]
    );
}

#[test]
fn jwt_detection() {
    assert!(looks_like_jwt(JWT));
    assert!(!looks_like_jwt("sk-bf-abc"));
    assert!(!looks_like_jwt(&generate_session_token().unwrap()));
    assert!(!looks_like_jwt(""));
}

#[test]
fn virtual_keys_are_prefixed_random_and_unique() {
    let mut seen = HashSet::new();
    for _ in 0..1000 {
        let k = generate_virtual_key().unwrap();
        assert!(k.starts_with(VIRTUAL_KEY_PREFIX));
        let body = &k[VIRTUAL_KEY_PREFIX.len()..];
        assert_eq!(body.len(), 43, "256 bits of base62");
        assert!(body.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(seen.insert(k));
    }
    let s = generate_session_token().unwrap();
    assert_eq!(s.len(), 43);
    assert_ne!(s, generate_session_token().unwrap());
}

#[test]
fn hashing_and_constant_time_eq() {
    let k = generate_virtual_key().unwrap();
    let h = hash_secret(&k);
    assert_eq!(h.len(), 64);
    assert!(
        h.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(h, hash_secret(&k));
    assert_ne!(h, hash_secret(&format!("{k}x")));
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"abcd"));
    assert!(constant_time_eq(b"", b""));
    assert!(constant_time_eq(h.as_bytes(), hash_secret(&k).as_bytes()));
}

#[test]
fn login_limiter_locks_out_with_growing_delays() {
    let limiter = LoginLimiter::new();
    let ip: IpAddr = "203.0.113.7".parse().unwrap();
    let other: IpAddr = "203.0.113.8".parse().unwrap();
    let t0 = Instant::now();
    for i in 0..4 {
        limiter.record_failure(ip, t0);
        assert_eq!(limiter.check(ip, t0), Ok(()), "after {} failures", i + 1);
    }
    limiter.record_failure(ip, t0);
    assert_eq!(limiter.check(ip, t0), Err(Duration::from_secs(1)));
    assert_eq!(
        limiter.check(other, t0),
        Ok(()),
        "other addresses unaffected"
    );
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(limiter.check(ip, t1), Ok(()));
    limiter.record_failure(ip, t1);
    assert_eq!(limiter.check(ip, t1), Err(Duration::from_secs(2)));
    let mut t = t1;
    for _ in 0..20 {
        t += Duration::from_secs(301);
        limiter.record_failure(ip, t);
    }
    assert_eq!(
        limiter.check(ip, t),
        Err(Duration::from_secs(300)),
        "capped at 5 min"
    );
    // Success clears the history.
    limiter.record_success(ip);
    assert_eq!(limiter.check(ip, t), Ok(()));
    // Quiet for long enough, old failures are forgotten.
    for _ in 0..4 {
        limiter.record_failure(other, t0);
    }
    let later = t0 + Duration::from_secs(16 * 60);
    limiter.record_failure(other, later);
    assert_eq!(limiter.check(other, later), Ok(()));
}

#[test]
fn login_limiter_memory_is_bounded() {
    let limiter = LoginLimiter::with_max_entries(100);
    let t0 = Instant::now();
    for i in 0..10_000u32 {
        let ip = IpAddr::from(i.to_be_bytes());
        limiter.record_failure(ip, t0 + Duration::from_millis(u64::from(i)));
        assert!(limiter.tracked() <= 100);
    }
    // The newest addresses are the ones kept.
    let newest = IpAddr::from(9_999u32.to_be_bytes());
    for _ in 0..4 {
        limiter.record_failure(newest, t0 + Duration::from_secs(20));
    }
    assert!(limiter.check(newest, t0 + Duration::from_secs(20)).is_err());
    // IPv6 addresses in one /64 share an entry.
    let limiter = LoginLimiter::new();
    for i in 0..5u16 {
        let ip = IpAddr::from([0x2001, 0xdb8, 0, 1, i, i, i, i]);
        limiter.record_failure(ip, t0);
    }
    assert_eq!(limiter.tracked(), 1);
    assert!(
        limiter
            .check("2001:db8:0:1::99".parse().unwrap(), t0)
            .is_err()
    );
}
