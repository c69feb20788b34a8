//! Built-in plugins compiled into the gateway (`mocker`, `request_guard`) and what they share:
//! strict config parsing that names the offending JSON path (`ConfigRejection`), and walking the
//! caller-written text of an OpenAI-shaped request body.

pub mod mocker;
pub mod request_guard;

use std::fmt;

use causeway_core::RequestType;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why a plugin config was refused; the registry turns it into a 400
/// `Invalid plugin configuration: <field>: <reason>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRejection {
    /// JSON path of the offending value, e.g. `rules[0].responses[1].weight`
    /// (`config` when the whole value is wrong).
    pub field: String,
    pub reason: String,
}

impl ConfigRejection {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigRejection {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigRejection {}

/// Deserializes a plugin config, reporting shape errors with the path of the bad value.
/// `null` counts as `{}` (a plugin entry without a `config`).
pub(crate) fn parse_config<T: DeserializeOwned>(config: &Value) -> Result<T, ConfigRejection> {
    let empty = Value::Object(serde_json::Map::new());
    let config = if config.is_null() { &empty } else { config };
    serde_path_to_error::deserialize(config).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = err.inner().to_string();
        // serde reports a missing key at the enclosing object; the caller wants the key itself,
        // so move the name from the message into the path.
        if let Some((name, rest)) = backticked(&message, "unknown field `") {
            let expected = rest.trim_start_matches(',').trim();
            let reason = if expected.is_empty() {
                "unknown field".to_owned()
            } else {
                format!("unknown field ({expected})")
            };
            // The path usually already ends at the unknown key; append it only when not.
            let field = if path == name || path.ends_with(&format!(".{name}")) {
                path
            } else {
                join_path(&path, name)
            };
            return ConfigRejection::new(field, reason);
        }
        if let Some((name, _)) = backticked(&message, "missing field `") {
            return ConfigRejection::new(join_path(&path, name), "required field is missing");
        }
        let field = if path.is_empty() {
            "config".to_owned()
        } else {
            path
        };
        ConfigRejection::new(field, message)
    })
}

/// For `prefix` + name + "`" + rest, returns (name, rest).
fn backticked<'a>(message: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let tail = message.strip_prefix(prefix)?;
    let end = tail.find('`')?;
    Some((&tail[..end], &tail[end + 1..]))
}

pub(crate) fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// A regex error on one line (the library's message draws a caret diagram over several).
pub(crate) fn regex_reason(err: &regex::Error) -> String {
    let text = err.to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    format!("invalid regex: {}", parts.join(" "))
}

/// The body field that holds the caller's text for a request type.
pub(crate) fn request_text_field(request_type: RequestType) -> Option<&'static str> {
    match request_type {
        RequestType::ChatCompletion => Some("messages"),
        RequestType::TextCompletion => Some("prompt"),
        RequestType::Embedding => Some("input"),
        RequestType::ListModels => None,
    }
}

/// Visits every caller-written string inside the value of `request_text_field`: for chat, each
/// message's string `content` and the `text` of its text parts (all roles); for completions and
/// embeddings, the string or the strings of an array (token arrays carry no text).
pub(crate) fn visit_request_text(
    request_type: RequestType,
    value: &mut Value,
    f: &mut dyn FnMut(&mut String),
) {
    match request_type {
        RequestType::ChatCompletion => {
            if let Value::Array(messages) = value {
                for message in messages {
                    if let Some(content) = message.get_mut("content") {
                        visit_content(content, f);
                    }
                }
            }
        }
        RequestType::TextCompletion | RequestType::Embedding => match value {
            Value::String(s) => f(s),
            Value::Array(items) => {
                for item in items {
                    if let Value::String(s) = item {
                        f(s);
                    }
                }
            }
            _ => {}
        },
        RequestType::ListModels => {}
    }
}

/// A message `content`: a string, or an array of parts of which `text` parts carry text.
pub(crate) fn visit_content(content: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match content {
        Value::String(s) => f(s),
        Value::Array(parts) => {
            for part in parts {
                let is_text = match part.get("type") {
                    None => true,
                    Some(t) => t.as_str() == Some("text"),
                };
                if is_text && let Some(Value::String(s)) = part.get_mut("text") {
                    f(s);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        rules: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        name: String,
        #[serde(default)]
        weight: f64,
    }

    #[test]
    fn unknown_key_is_named_in_the_path() {
        let err = parse_config::<Outer>(&json!({"rules":[{"name":"a","wieght":1}]})).unwrap_err();
        assert_eq!(err.field, "rules[0].wieght");
        assert!(err.reason.starts_with("unknown field"), "{}", err.reason);
    }

    #[test]
    fn missing_and_mistyped_fields() {
        let err = parse_config::<Outer>(&json!({"rules":[{}]})).unwrap_err();
        assert_eq!(err.field, "rules[0].name");
        assert_eq!(err.reason, "required field is missing");
        let err = parse_config::<Outer>(&json!({"rules":[{"name":"a","weight":"x"}]})).unwrap_err();
        assert_eq!(err.field, "rules[0].weight");
        assert!(err.reason.contains("invalid type"), "{}", err.reason);
        let err = parse_config::<Outer>(&json!("x")).unwrap_err();
        assert_eq!(err.field, "config");
        assert_eq!(
            err.to_string(),
            format!("config: {}", err.reason),
            "Display is <field>: <reason>"
        );
    }

    #[test]
    fn null_is_an_empty_object() {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Empty {
            #[serde(default)]
            rules: Vec<Inner>,
        }
        let cfg: Empty = parse_config(&Value::Null).unwrap();
        assert!(cfg.rules.is_empty());
    }

    #[test]
    fn visits_all_message_text() {
        let mut v = json!([
            {"role":"system","content":"s"},
            {"role":"user","content":[{"type":"text","text":"t1"},{"type":"image_url","image_url":{"url":"u"}},{"type":"text","text":"t2"}]},
            {"role":"assistant","content":null,"tool_calls":[]},
            {"role":"tool","content":"tool out","tool_call_id":"x"}
        ]);
        let mut seen = Vec::new();
        visit_request_text(RequestType::ChatCompletion, &mut v, &mut |s| {
            seen.push(s.clone())
        });
        assert_eq!(seen, ["s", "t1", "t2", "tool out"]);

        let mut p = json!(["a", [1, 2], "b"]);
        let mut seen = Vec::new();
        visit_request_text(RequestType::Embedding, &mut p, &mut |s| {
            seen.push(s.clone())
        });
        assert_eq!(seen, ["a", "b"]);
    }
}
