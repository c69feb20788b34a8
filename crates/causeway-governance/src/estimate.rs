//! A pre-call guess of a request's size, used to reserve budget before the provider is
//! called: prompt tokens ≈ characters / 4 of the text the model reads, output = the
//! request's own cap or 1024. It walks the JSON without building a tree, and ignores
//! inline images and audio (base64 would otherwise count as hundreds of thousands of
//! "tokens" and block the request).

use std::fmt;

use causeway_core::RawObject;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Output tokens assumed when the request sets no cap.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 1024;

/// Top-level fields whose text the model reads (chat, completions, embeddings, Responses,
/// Anthropic, Gemini shapes).
const PROMPT_FIELDS: &[&str] = &[
    "messages",
    "prompt",
    "input",
    "system",
    "instructions",
    "contents",
    "tools",
];

/// Keys whose values are binary payloads, not text.
const SKIPPED_KEYS: &[&str] = &["image_url", "input_audio", "file", "inline_data", "source"];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    pub prompt_tokens: u64,
    pub max_output_tokens: u64,
}

pub fn estimate_from_body(body: &RawObject) -> Estimate {
    let mut chars = 0u64;
    for field in PROMPT_FIELDS {
        if let Some(raw) = body.get(field) {
            let mut de = serde_json::Deserializer::from_str(raw.get());
            // A malformed field counts as what was read before the error: the estimate is a
            // guess, and the provider will reject the body anyway.
            let _ = CharCount { total: &mut chars }.deserialize(&mut de);
        }
    }
    let max_output = ["max_completion_tokens", "max_tokens", "max_output_tokens"]
        .iter()
        .find_map(|k| match body.get_as::<u64>(k) {
            Some(Ok(n)) => Some(n),
            _ => None,
        })
        .unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS);
    Estimate {
        prompt_tokens: chars.div_ceil(4),
        max_output_tokens: max_output,
    }
}

/// Adds the character count of every string in a JSON value to `total`.
struct CharCount<'a> {
    total: &'a mut u64,
}

impl<'de> DeserializeSeed<'de> for CharCount<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CharCount<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        if !s.starts_with("data:") {
            *self.total = self.total.saturating_add(s.chars().count() as u64);
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(CharCount {
                total: &mut *self.total,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if SKIPPED_KEYS.contains(&key.as_str()) {
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(CharCount {
                    total: &mut *self.total,
                })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(json: &str) -> Estimate {
        estimate_from_body(&RawObject::from_slice(json.as_bytes()).unwrap())
    }

    #[test]
    fn chat_messages() {
        // "user" (4) + "abcdefgh" (8) + "system" (6) + "xy" (2) = 20 chars → 5 tokens.
        let e = est(
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"abcdefgh"},{"role":"system","content":"xy"}],"max_tokens":50}"#,
        );
        assert_eq!(
            e,
            Estimate {
                prompt_tokens: 5,
                max_output_tokens: 50
            }
        );
    }

    #[test]
    fn parts_images_and_caps() {
        let e = est(
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":"hello"},{"type":"image_url","image_url":{"url":"https://x/y.png"}},{"type":"image","data":"data:image/png;base64,AAAA"}]}],"max_completion_tokens":7,"max_tokens":99}"#,
        );
        // user(4) text(4) hello(5) image_url(9) image(5) = 27 → 7 tokens.
        assert_eq!(e.prompt_tokens, 7);
        assert_eq!(e.max_output_tokens, 7, "max_completion_tokens wins");
    }

    #[test]
    fn prompt_input_and_defaults() {
        assert_eq!(
            est(r#"{"prompt":["abcd","ef"]}"#),
            Estimate {
                prompt_tokens: 2,
                max_output_tokens: DEFAULT_MAX_OUTPUT_TOKENS
            }
        );
        assert_eq!(est(r#"{"input":"héllo wörld"}"#).prompt_tokens, 3);
        assert_eq!(est(r#"{"model":"x"}"#).prompt_tokens, 0);
        // A non-numeric cap falls back to the default.
        assert_eq!(
            est(r#"{"max_tokens":"lots"}"#).max_output_tokens,
            DEFAULT_MAX_OUTPUT_TOKENS
        );
        assert_eq!(est(r#"{"max_output_tokens":12}"#).max_output_tokens, 12);
    }
}
