//! Random bearer secrets (virtual keys, session tokens), how they are stored (SHA-256), and the
//! constant-time comparison every secret check goes through.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of every virtual key (Bifrost's `VirtualKeyPrefix`); also how headers are recognised.
pub const VIRTUAL_KEY_PREFIX: &str = "sk-bf-";

/// 43 base62 characters carry 256 bits (43 × log2 62 ≈ 256.03).
const TOKEN_CHARS: usize = 43;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The operating system's random source failed. Secrets are never made from a weaker source, so
/// the caller must fail the request instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(String);

/// A new virtual key: `sk-bf-` followed by 43 base62 characters (256 bits from the OS CSPRNG).
pub fn generate_virtual_key() -> Result<String, RandomError> {
    Ok(format!(
        "{VIRTUAL_KEY_PREFIX}{}",
        random_base62(TOKEN_CHARS)?
    ))
}

/// A new login session token: 43 base62 characters (256 bits from the OS CSPRNG). Store only
/// `hash_secret(token)`.
pub fn generate_session_token() -> Result<String, RandomError> {
    random_base62(TOKEN_CHARS)
}

/// Lower-case hex SHA-256. Virtual keys and session tokens carry 256 random bits, so a fast
/// unsalted hash is enough to make a leaked table useless; passwords must never go through this.
pub fn hash_secret(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Equality whose running time does not depend on where the inputs differ. Only the lengths can
/// be learned, which for hashes and fixed-format tokens reveals nothing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Uniform base62 by rejection sampling: bytes ≥ 248 (= 4 × 62) are discarded so every character
/// is equally likely (a plain `% 62` would favour the first eight).
fn random_base62(len: usize) -> Result<String, RandomError> {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).map_err(|e| RandomError(e.to_string()))?;
        for &b in &buf {
            if b < 248 {
                out.push(char::from(BASE62[usize::from(b % 62)]));
                if out.len() == len {
                    break;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn base62_is_roughly_uniform() {
        // 62 × 1000 expected per symbol over 62 000 draws; a `% 62` bias or a stuck byte would
        // push some symbol far outside this generous band.
        let s = random_base62(62_000).unwrap();
        let mut counts = [0u32; 256];
        for b in s.bytes() {
            counts[usize::from(b)] += 1;
        }
        for &c in BASE62 {
            let n = counts[usize::from(c)];
            assert!(
                (700..1300).contains(&n),
                "symbol {} drawn {n} times",
                c as char
            );
        }
    }
}
