//! Secret values from config: literal strings or `env.NAME` references, and the one
//! redaction rule used by every API response. A secret's Debug output never shows it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A configured secret: the text as written (`sk-...` or `env.NAME`) and its resolved value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret {
    raw: String,
}

impl Secret {
    pub fn new(raw: impl Into<String>) -> Self {
        Secret { raw: raw.into() }
    }

    /// The text as written in config (`env.NAME` stays a reference). Store this, never `resolve`.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// `Some("NAME")` when the secret is an `env.NAME` reference.
    pub fn env_name(&self) -> Option<&str> {
        self.raw.strip_prefix("env.").filter(|n| !n.is_empty())
    }

    /// The value to send upstream. An unset variable resolves to an empty string.
    pub fn resolve(&self) -> String {
        match self.env_name() {
            Some(name) => std::env::var(name).unwrap_or_default(),
            None => self.raw.clone(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// What API responses show: references as written, literals masked.
    pub fn redacted(&self) -> String {
        if self.env_name().is_some() {
            return self.raw.clone();
        }
        redact(&self.raw)
    }

    /// True when `shown` is what `redacted()` would print for this secret, i.e. a client sent
    /// back the masked value unchanged and means "keep the stored one".
    pub fn is_redaction_of(&self, shown: &str) -> bool {
        shown == self.redacted() && self.env_name().is_none()
    }
}

/// First 4 + 24 `*` + last 4 characters; 8 characters or fewer become all `*`.
pub fn redact(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len().max(1));
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(24))
}

/// True if a string looks like output of `redact` (so it must not be stored as a new secret).
pub fn looks_redacted(value: &str) -> bool {
    value.contains("************************")
        || (!value.is_empty() && value.chars().all(|c| c == '*'))
}

/// Replaces strings in `new` that are exactly the redaction of the stored value at the same
/// place in `old` with the stored value, so a client that sends back what it read does not
/// overwrite secrets with their masks.
pub fn restore_redacted(new: &mut serde_json::Value, old: &serde_json::Value) {
    use serde_json::Value;
    match (new, old) {
        (Value::Object(n), Value::Object(o)) => {
            for (k, nv) in n.iter_mut() {
                if let Some(ov) = o.get(k) {
                    restore_redacted(nv, ov);
                }
            }
        }
        (Value::Array(n), Value::Array(o)) => {
            for (nv, ov) in n.iter_mut().zip(o) {
                restore_redacted(nv, ov);
            }
        }
        (n @ Value::String(_), Value::String(os)) => {
            if let Value::String(ns) = &*n
                && looks_redacted(ns)
                && *ns == redact(os)
            {
                *n = Value::String(os.clone());
            }
        }
        _ => {}
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.redacted())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for Secret {
    /// Accepts a string or Bifrost's `{"value": "...", "env_var": "...", "from_env": bool}`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Text(String),
            Object {
                #[serde(default)]
                value: Option<String>,
                #[serde(default)]
                env_var: Option<String>,
            },
        }
        Ok(match Wire::deserialize(d)? {
            Wire::Text(s) => Secret::new(s),
            Wire::Object { value, env_var } => match env_var.filter(|e| !e.is_empty()) {
                Some(env) if env.starts_with("env.") => Secret::new(env),
                Some(env) => Secret::new(format!("env.{env}")),
                None => Secret::new(value.unwrap_or_default()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_rule() {
        assert_eq!(
            redact("sk-1234567890abcdef"),
            "sk-1************************cdef"
        );
        assert_eq!(redact("short"), "*****");
        assert!(looks_redacted(&redact("sk-1234567890abcdef")));
        let s = Secret::new("sk-1234567890abcdef");
        assert!(s.is_redaction_of(&s.redacted()));
        assert!(!format!("{s:?}").contains("567890"));
    }

    #[test]
    fn env_references_stay_references() {
        let s = Secret::new("env.CAUSEWAY_TEST_UNSET_VAR_X");
        assert_eq!(s.redacted(), "env.CAUSEWAY_TEST_UNSET_VAR_X");
        assert_eq!(s.resolve(), "");
        let o: Secret =
            serde_json::from_str(r#"{"value":"","env_var":"env.FOO","from_env":true}"#).unwrap();
        assert_eq!(o.raw(), "env.FOO");
    }
}
