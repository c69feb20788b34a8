//! The typed view of incoming JSON bodies: only the fields the mock answers from (model, stream
//! flags, first tool name, prompt size). Prompt words are counted while deserialising, so message
//! contents are never materialised; everything else is skipped by serde.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::text::words;

/// Fields shared by the OpenAI and Anthropic request bodies the mock serves.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct InferenceRequest {
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) stream: Option<bool>,
    #[serde(default)]
    pub(crate) stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub(crate) tools: Option<Vec<Tool>>,
    /// Chat messages (OpenAI and Anthropic).
    #[serde(default)]
    pub(crate) messages: Words,
    /// Anthropic's top-level system prompt.
    #[serde(default)]
    pub(crate) system: Words,
    /// Legacy completions prompt.
    #[serde(default)]
    pub(crate) prompt: Words,
    /// Embeddings input: a string, strings, a token array or token arrays.
    #[serde(default)]
    pub(crate) input: Option<Value>,
}

impl InferenceRequest {
    pub(crate) fn streaming(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub(crate) fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// Name of the first tool, in either API's shape; `None` when no tools were offered.
    pub(crate) fn first_tool(&self) -> Option<&str> {
        let tool = self.tools.as_ref()?.first()?;
        tool.function
            .as_ref()
            .and_then(|f| f.name.as_deref())
            .or(tool.name.as_deref())
            .or(Some("tool"))
    }

    pub(crate) fn prompt_tokens(&self) -> usize {
        (self.messages.0 + self.system.0 + self.prompt.0).max(1)
    }

    /// (number of inputs, tokens) for an embeddings request.
    pub(crate) fn embedding_inputs(&self) -> (usize, usize) {
        match &self.input {
            Some(Value::String(s)) => (1, words(s)),
            Some(Value::Array(items)) if items.iter().all(Value::is_number) => (1, items.len()),
            Some(Value::Array(items)) => {
                let tokens = items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => words(s),
                        Value::Array(t) => t.len(),
                        _ => 0,
                    })
                    .sum();
                (items.len(), tokens)
            }
            _ => (1, 0),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// An OpenAI (`function.name`) or Anthropic (`name`) tool definition.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Tool {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    function: Option<ToolFunction>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ToolFunction {
    #[serde(default)]
    name: Option<String>,
}

/// Whitespace words found in any JSON value under `text` / `content` keys (or in a bare string),
/// which covers string contents, content-part arrays and Anthropic content blocks alike.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Words(pub(crate) usize);

impl<'de> Deserialize<'de> for Words {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(WordsVisitor)
    }
}

struct WordsVisitor;

impl<'de> Visitor<'de> for WordsVisitor {
    type Value = Words;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E>(self, v: &str) -> Result<Words, E> {
        Ok(Words(words(v)))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Words, E> {
        Ok(Words(0))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Words, E> {
        Ok(Words(0))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Words, E> {
        Ok(Words(0))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Words, E> {
        Ok(Words(0))
    }

    fn visit_unit<E>(self) -> Result<Words, E> {
        Ok(Words(0))
    }

    fn visit_none<E>(self) -> Result<Words, E> {
        Ok(Words(0))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Words, A::Error> {
        let mut total = 0;
        while let Some(Words(n)) = seq.next_element::<Words>()? {
            total += n;
        }
        Ok(Words(total))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Words, A::Error> {
        let mut total = 0;
        while let Some(TextKey(counted)) = map.next_key::<TextKey>()? {
            if counted {
                total += map.next_value::<Words>()?.0;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Words(total))
    }
}

/// A map key, reduced to "does its value hold prompt text".
struct TextKey(bool);

impl<'de> Deserialize<'de> for TextKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = TextKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map key")
            }
            fn visit_str<E>(self, v: &str) -> Result<TextKey, E> {
                Ok(TextKey(v == "text" || v == "content"))
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> InferenceRequest {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn counts_openai_messages() {
        let r = parse(
            r#"{"model":"m","messages":[{"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"hello there you"},{"type":"image_url","image_url":{"url":"x y"}}]}]}"#,
        );
        assert_eq!(r.prompt_tokens(), 5);
        assert_eq!(r.model.as_deref(), Some("m"));
        assert!(!r.streaming());
        assert_eq!(r.first_tool(), None);
    }

    #[test]
    fn counts_anthropic_system_and_blocks() {
        let r = parse(
            r#"{"model":"c","system":[{"type":"text","text":"sys prompt"}],"stream":true,
            "messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"a b c"}]}]}],
            "tools":[{"name":"get_weather","input_schema":{}}]}"#,
        );
        assert_eq!(r.prompt_tokens(), 5);
        assert!(r.streaming());
        assert_eq!(r.first_tool(), Some("get_weather"));
    }

    #[test]
    fn openai_tools_and_usage_flag() {
        let r = parse(
            r#"{"messages":[],"stream":true,"stream_options":{"include_usage":true},
            "tools":[{"type":"function","function":{"name":"lookup","parameters":{}}}]}"#,
        );
        assert_eq!(r.prompt_tokens(), 1);
        assert!(r.include_usage());
        assert_eq!(r.first_tool(), Some("lookup"));
    }

    #[test]
    fn embedding_inputs() {
        assert_eq!(parse(r#"{"input":"a b"}"#).embedding_inputs(), (1, 2));
        assert_eq!(parse(r#"{"input":["a b","c"]}"#).embedding_inputs(), (2, 3));
        assert_eq!(parse(r#"{"input":[1,2,3]}"#).embedding_inputs(), (1, 3));
        assert_eq!(parse(r#"{"input":[[1,2],[3]]}"#).embedding_inputs(), (2, 3));
    }
}
