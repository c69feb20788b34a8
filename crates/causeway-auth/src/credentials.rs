//! Which credentials a request carries, read from its headers in the order the server should try
//! them. Parsing only: nothing here decides whether a credential is valid.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use causeway_core::secret::redact;
use http::HeaderMap;

use crate::tokens::VIRTUAL_KEY_PREFIX;

/// One credential found on a request.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// `Authorization: Bearer <token>` that is not a virtual key: a JWT or a session token.
    Bearer(String),
    /// HTTP Basic admin credentials (also Bifrost's back-compat `Bearer base64(user:pass)`).
    Basic { user: String, pass: String },
    /// A virtual key from `x-bf-vk`, or an `sk-bf-` value in Authorization / `x-api-key` /
    /// `x-goog-api-key` / `api-key`.
    VirtualKey(String),
}

/// Debug never shows a token or password, so credentials can sit in structs that get logged.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Bearer(t) => write!(f, "Bearer(<{} chars>)", t.len()),
            Credential::Basic { user, .. } => {
                write!(f, "Basic {{ user: {user:?}, pass: <hidden> }}")
            }
            Credential::VirtualKey(k) => write!(f, "VirtualKey({})", redact(k)),
        }
    }
}

/// Headers that carry a virtual key only when the value has the `sk-bf-` prefix: without it they
/// hold the caller's own provider key, which must be left alone.
const PREFIXED_VK_HEADERS: [&str; 3] = ["x-api-key", "x-goog-api-key", "api-key"];

/// Credentials on a request, in the order to try them: Authorization first, then `x-bf-vk`, then
/// the provider-style key headers. A value that appears twice is returned once. Header values that
/// are not visible ASCII, and empty values, are skipped.
pub fn credentials(headers: &HeaderMap) -> Vec<Credential> {
    let mut out: Vec<Credential> = Vec::new();
    let mut push = |c: Credential| {
        if !out.contains(&c) {
            out.push(c);
        }
    };
    for value in header_values(headers, "authorization") {
        let Some((scheme, rest)) = value.split_once(' ') else {
            continue;
        };
        let rest = rest.trim();
        if rest.is_empty() {
            continue;
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            if rest.starts_with(VIRTUAL_KEY_PREFIX) {
                push(Credential::VirtualKey(rest.to_owned()));
                continue;
            }
            push(Credential::Bearer(rest.to_owned()));
            // Bifrost accepts `Bearer base64(user:pass)` too; offered after the bearer reading
            // so a session token is tried first.
            if !looks_like_jwt(rest)
                && let Some((user, pass)) = decode_basic(rest)
            {
                push(Credential::Basic { user, pass });
            }
        } else if scheme.eq_ignore_ascii_case("basic")
            && let Some((user, pass)) = decode_basic(rest)
        {
            push(Credential::Basic { user, pass });
        }
    }
    for value in header_values(headers, "x-bf-vk") {
        push(Credential::VirtualKey(value.to_owned()));
    }
    for name in PREFIXED_VK_HEADERS {
        for value in header_values(headers, name) {
            if value.starts_with(VIRTUAL_KEY_PREFIX) {
                push(Credential::VirtualKey(value.to_owned()));
            }
        }
    }
    out
}

fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// `base64(user:pass)` with standard padding. The user part may be empty (some clients send
/// `:password`); the split is at the first colon because user names cannot contain one (RFC 7617).
fn decode_basic(b64: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(b64).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// True when the token has the shape of a compact JWS: three base64url segments, the first of
/// which decodes to a JSON object. An empty signature still counts so that an unsigned
/// (`alg: none`) token is routed to JWT verification and refused there with a clear reason.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let b64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if header.is_empty() || payload.is_empty() || !b64url(header) || !b64url(payload) {
        return false;
    }
    if !b64url(signature) {
        return false;
    }
    // Headers are small; refusing to decode a huge one keeps this check cheap.
    if header.len() > 4096 {
        return false;
    }
    URL_SAFE_NO_PAD.decode(header).is_ok_and(|h| {
        h.iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'{')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let c = Credential::Basic {
            user: "admin".into(),
            pass: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        let v = Credential::VirtualKey("sk-bf-abcdefghijklmnopqrstuvwxyz".into());
        assert!(!format!("{v:?}").contains("ghijklmnop"));
        let b = Credential::Bearer("secret-session-token".into());
        assert!(!format!("{b:?}").contains("secret"));
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(looks_like_jwt("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."));
        assert!(!looks_like_jwt("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("sk-bf-abc"));
        assert!(!looks_like_jwt("YWRtaW46cGFzcw==")); // base64 user:pass
        assert!(!looks_like_jwt("bm90LWpzb24.eyJ9.c2ln")); // header not JSON
        assert!(!looks_like_jwt("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2l+")); // not url-safe
    }
}
