//! `RawObject`: a JSON object kept as ordered (key, raw value) pairs, so the gateway can read
//! and rewrite a few top-level fields (`model`, `fallbacks`, `stream`) without parsing or
//! re-encoding the rest (messages can be megabytes). Unknown fields pass through untouched.

use std::borrow::Cow;
use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

#[derive(Clone, Default)]
pub struct RawObject {
    fields: Vec<(String, Box<RawValue>)>,
}

impl PartialEq for RawObject {
    /// Textual equality of keys and raw values (not semantic JSON equality).
    fn eq(&self, other: &Self) -> bool {
        self.fields.len() == other.fields.len()
            && self
                .fields
                .iter()
                .zip(&other.fields)
                .all(|((ka, va), (kb, vb))| ka == kb && va.get() == vb.get())
    }
}

impl RawObject {
    pub fn new() -> Self {
        RawObject { fields: Vec::new() }
    }

    /// Parses a JSON object; any other JSON value is an error.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        // UTF-8 checked once up front: parsing a `str`, serde_json then skips checking each
        // raw value it copies out. Invalid UTF-8 takes the byte path for serde_json's error
        // and its position.
        match std::str::from_utf8(bytes) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(bytes),
        }
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| &**v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Decodes one field; `None` when absent, `Some(Err)` when present but of the wrong shape.
    pub fn get_as<T: DeserializeOwned>(&self, key: &str) -> Option<Result<T, serde_json::Error>> {
        self.get(key).map(|raw| serde_json::from_str(raw.get()))
    }

    /// A field that is a JSON string (`None` if absent or not a string).
    pub fn get_str(&self, key: &str) -> Option<String> {
        match self.get_as::<Value>(key) {
            Some(Ok(Value::String(s))) => Some(s),
            _ => None,
        }
    }

    /// A field that is a JSON boolean; absent or `null` is `None`.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        let raw = self.get(key)?.get();
        match raw {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(k, _)| k.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &RawValue)> + Clone {
        self.fields.iter().map(|(k, v)| (k.as_str(), &**v))
    }

    pub fn set_raw(&mut self, key: &str, value: Box<RawValue>) {
        self.put(Cow::Borrowed(key), value);
    }

    /// A repeated key keeps its first place and takes the new value; a new key goes last
    /// (owned as given: the parser hands over keys it already allocated).
    fn put(&mut self, key: Cow<'_, str>, value: Box<RawValue>) {
        if let Some(slot) = self.fields.iter_mut().find(|(k, _)| *k == *key) {
            slot.1 = value;
        } else {
            self.fields.push((key.into_owned(), value));
        }
    }

    pub fn set<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        let raw = serde_json::value::to_raw_value(value)?;
        self.set_raw(key, raw);
        Ok(())
    }

    pub fn remove(&mut self, key: &str) -> Option<Box<RawValue>> {
        let mut removed = None;
        self.fields.retain_mut(|(k, v)| {
            if k == key {
                removed = Some(std::mem::replace(v, empty_raw()));
                false
            } else {
                true
            }
        });
        removed
    }

    /// Encodes back to JSON bytes. Field order is preserved.
    pub fn to_bytes(&self) -> Bytes {
        encode_object(self.iter().map(|(k, v)| (k, v.get())))
    }

    /// Fully parsed copy, for code that needs to walk the structure (conversions, plugins).
    pub fn to_map(&self) -> Map<String, Value> {
        let mut map = Map::with_capacity(self.fields.len());
        for (k, v) in &self.fields {
            let value = serde_json::from_str(v.get()).unwrap_or(Value::Null);
            map.insert(k.clone(), value);
        }
        map
    }

    pub fn from_map(map: &Map<String, Value>) -> Result<Self, serde_json::Error> {
        let mut fields = Vec::with_capacity(map.len());
        for (k, v) in map {
            fields.push((k.clone(), serde_json::value::to_raw_value(v)?));
        }
        Ok(RawObject { fields })
    }
}

fn empty_raw() -> Box<RawValue> {
    Box::<RawValue>::default()
}

/// Writes (key, raw JSON text) pairs as one JSON object, for callers that assemble a body from
/// an existing object plus a few changes without copying it into a new `RawObject` first.
/// The values must already be valid JSON (from a `RawValue` or serde_json); keys are escaped.
pub fn encode_object<'a>(fields: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> Bytes {
    let cap = 2 + fields
        .clone()
        .map(|(k, v)| k.len() + v.len() + 4)
        .sum::<usize>();
    let mut out = BytesMut::with_capacity(cap);
    out.put_u8(b'{');
    for (i, (k, v)) in fields.enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        write_json_string(&mut out, k);
        out.put_u8(b':');
        out.put_slice(v.as_bytes());
    }
    out.put_u8(b'}');
    out.freeze()
}

fn write_json_string(out: &mut BytesMut, s: &str) {
    let needs_escape = s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
    if needs_escape && let Ok(encoded) = serde_json::to_string(s) {
        out.put_slice(encoded.as_bytes());
        return;
    }
    out.put_u8(b'"');
    out.put_slice(s.as_bytes());
    out.put_u8(b'"');
}

impl fmt::Debug for RawObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.fields.iter().map(|(k, v)| (k, v.get())))
            .finish()
    }
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjVisitor;
        impl<'de> Visitor<'de> for ObjVisitor {
            type Value = RawObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut obj = RawObject {
                    fields: Vec::with_capacity(map.size_hint().unwrap_or(8)),
                };
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    obj.put(Cow::Owned(k), v);
                }
                Ok(obj)
            }
        }
        deserializer.deserialize_map(ObjVisitor)
    }
}

impl Serialize for RawObject {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = serializer.serialize_map(Some(self.fields.len()))?;
        for (k, v) in &self.fields {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Error for a body that is not a JSON object, in words a caller can act on.
pub fn describe_json_error(err: &serde_json::Error) -> String {
    match err.classify() {
        serde_json::error::Category::Eof => "request body is empty or truncated JSON".to_owned(),
        serde_json::error::Category::Data => {
            format!("request body must be a JSON object: {err}")
        }
        _ => format!("request body is not valid JSON: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_keeps_its_first_place_and_its_last_value() {
        let o = RawObject::from_slice(br#"{"a":1,"b":2,"a":3}"#).unwrap();
        assert_eq!(o.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(o.get("a").unwrap().get(), "3");
    }

    #[test]
    fn invalid_utf8_is_an_error_with_a_position() {
        let err = RawObject::from_slice(b"{\"a\":\"\xff\"}").unwrap_err();
        assert_eq!((err.line(), err.column() > 0), (1, true), "{err}");
        let ok = RawObject::from_slice("{\"a\":\"h\u{e9}llo\"}".as_bytes()).unwrap();
        assert_eq!(ok.get("a").unwrap().get(), "\"h\u{e9}llo\"");
    }

    #[test]
    fn round_trips_and_rewrites() {
        let mut o = RawObject::from_slice(
            br#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi \"x\""}],"fallbacks":["a/b"],"x-y":{"z":1}}"#,
        )
        .unwrap();
        assert_eq!(o.get_str("model").as_deref(), Some("openai/gpt-4o"));
        o.set("model", "gpt-4o").unwrap();
        assert!(o.remove("fallbacks").is_some());
        let out = o.to_bytes();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "gpt-4o");
        assert!(v.get("fallbacks").is_none());
        assert_eq!(v["messages"][0]["content"], "hi \"x\"");
        assert_eq!(v["x-y"]["z"], 1);
        let keys: Vec<_> = o.keys().collect();
        assert_eq!(keys, ["model", "messages", "x-y"]);
    }

    #[test]
    fn rejects_non_objects() {
        assert!(RawObject::from_slice(b"[1,2]").is_err());
        assert!(RawObject::from_slice(b"").is_err());
        assert!(RawObject::from_slice(b"{").is_err());
    }

    #[test]
    fn escapes_keys() {
        let mut o = RawObject::new();
        o.set("a\"b", &1).unwrap();
        let v: Value = serde_json::from_slice(&o.to_bytes()).unwrap();
        assert_eq!(v["a\"b"], 1);
    }

    #[test]
    fn bools() {
        let o = RawObject::from_slice(br#"{"stream":true,"n":null}"#).unwrap();
        assert_eq!(o.get_bool("stream"), Some(true));
        assert_eq!(o.get_bool("n"), None);
        assert_eq!(o.get_bool("missing"), None);
    }
}
