//! Why a credential was refused. Messages tell the caller what to fix and never contain the token,
//! a claim value chosen by the caller, or any configured secret, so they are safe to return in a
//! 401 body and to log.

/// A JWT (or other credential) was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no credentials: send `Authorization: Bearer <token>`, HTTP Basic admin credentials, \
         or a virtual key in x-bf-vk"
    )]
    Missing,
    /// The text describes which part is wrong (never its content).
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token expired at {}; obtain a new token", format_unix(*expired_at))]
    Expired { expired_at: i64 },
    #[error(
        "token is not valid before {}; check the issuer's and this server's clocks",
        format_unix(*not_before)
    )]
    NotYetValid { not_before: i64 },
    #[error(
        "token signature does not verify with the configured key for its algorithm and key id: \
         the token was altered or signed by a different key"
    )]
    BadSignature,
    #[error(
        "no configured key matches the token's key id (kid); add the signing key to \
         auth_config.jwt.keys or auth_config.jwt.jwks_file"
    )]
    UnknownKey,
    /// Holds the algorithm name from the token header when it is a known name, else a description.
    #[error("{}", algorithm_message(.0))]
    AlgorithmNotAllowed(String),
    #[error("token issuer (iss) does not match auth_config.jwt.issuer")]
    WrongIssuer,
    #[error("token audience (aud) does not include auth_config.jwt.audience")]
    WrongAudience,
    #[error(
        "token is valid but grants nothing: it carries no admin role (auth_config.jwt.roles_claim \
         / admin_roles) and no virtual key claim (auth_config.jwt.virtual_key_claim or accessKey)"
    )]
    NoUsableClaims,
    #[error("JWT authentication is not configured: add keys or jwks_file to auth_config.jwt")]
    JwtNotConfigured,
}

impl AuthError {
    /// A stable machine-readable code for error envelopes and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_credentials",
            AuthError::Malformed(_) => "malformed_token",
            AuthError::Expired { .. } => "token_expired",
            AuthError::NotYetValid { .. } => "token_not_yet_valid",
            AuthError::BadSignature => "bad_signature",
            AuthError::UnknownKey => "unknown_key",
            AuthError::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::NoUsableClaims => "no_usable_claims",
            AuthError::JwtNotConfigured => "jwt_not_configured",
        }
    }
}

fn algorithm_message(alg: &str) -> String {
    if alg.eq_ignore_ascii_case("none") {
        "unsigned tokens (alg \"none\") are never accepted".to_owned()
    } else if crate::jwt::parse_alg(alg).is_some() {
        format!("token signed with {alg} but no {alg} key is configured for it")
    } else {
        // `alg` is either a short plain identifier from the token or "unrecognised".
        format!(
            "token algorithm {alg} is not supported; use one of {}",
            crate::jwt::SUPPORTED_ALGS
        )
    }
}

/// `2026-01-02T03:04:05Z`, computed by hand so the crate needs no date library.
pub(crate) fn format_unix(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-since-1970 to proleptic Gregorian date conversion.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_timestamps() {
        assert_eq!(format_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_unix(1_798_761_599), "2026-12-31T23:59:59Z");
        assert_eq!(format_unix(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn messages_say_what_to_fix() {
        assert_eq!(
            AuthError::AlgorithmNotAllowed("HS256".into()).to_string(),
            "token signed with HS256 but no HS256 key is configured for it"
        );
        assert!(
            AuthError::AlgorithmNotAllowed("none".into())
                .to_string()
                .contains("never accepted")
        );
        assert!(
            AuthError::Expired {
                expired_at: 1_798_761_599
            }
            .to_string()
            .contains("2026-12-31T23:59:59Z")
        );
    }
}
