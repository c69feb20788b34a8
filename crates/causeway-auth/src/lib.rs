//! Who is calling: credential parsing and verification for Causeway, with no HTTP framework and
//! no database. The server extracts `credentials()` from a request and checks each one here (JWTs,
//! admin password) or against its store (virtual keys and session tokens, by `hash_secret`).

mod config;
mod credentials;
mod error;
mod jwt;
mod limiter;
mod tokens;

pub use config::{AuthConfig, AuthConfigError, DEFAULT_SESSION_TTL_HOURS, JwtConfig, JwtKeyConfig};
pub use credentials::{Credential, credentials, looks_like_jwt};
pub use error::AuthError;
pub use jwt::{Authenticator, JwtIdentity};
pub use limiter::LoginLimiter;
pub use tokens::{
    RandomError, VIRTUAL_KEY_PREFIX, constant_time_eq, generate_session_token,
    generate_virtual_key, hash_secret,
};

/// `Authenticator` is shared across request tasks; this fails to compile if that ever breaks.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Authenticator>();
    assert_send_sync::<LoginLimiter>();
};
