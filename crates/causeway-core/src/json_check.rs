//! `is_json`: whether bytes are exactly one JSON value, checked without building anything.
//! Every complete upstream answer is checked this way before it is passed on, so it must be
//! cheap on long strings (answers are mostly text). It accepts exactly what
//! `serde_json::from_slice::<IgnoredAny>` accepts; the tests compare the two.

/// True when `b` is one JSON value with optional surrounding whitespace. Like serde_json's
/// ignoring parser, the bytes inside strings are not checked to be UTF-8.
pub fn is_json(b: &[u8]) -> bool {
    check(b).is_some()
}

fn check(b: &[u8]) -> Option<()> {
    // Containers open around the current position, innermost last: b'[' or b'{'. Not
    // allocated until something nests; iterative, so deep nesting cannot overflow the stack.
    let mut open: Vec<u8> = Vec::new();
    let mut i = 0;
    'value: loop {
        i = whitespace(b, i);
        match *b.get(i)? {
            bracket @ (b'{' | b'[') => {
                i = whitespace(b, i + 1);
                let close = if bracket == b'{' { b'}' } else { b']' };
                if *b.get(i)? == close {
                    i += 1;
                } else {
                    open.push(bracket);
                    if bracket == b'{' {
                        i = member_name(b, i)?;
                    }
                    continue 'value;
                }
            }
            b'"' => i = string(b, i + 1)?,
            b't' => i = literal(b, i, b"true")?,
            b'f' => i = literal(b, i, b"false")?,
            b'n' => i = literal(b, i, b"null")?,
            b'-' | b'0'..=b'9' => i = number(b, i)?,
            _ => return None,
        }
        // A value ends at `i`: go on to the next element, or close what it completes.
        loop {
            let Some(&frame) = open.last() else {
                return (whitespace(b, i) == b.len()).then_some(());
            };
            i = whitespace(b, i);
            match (*b.get(i)?, frame) {
                (b',', b'[') => {
                    i += 1;
                    continue 'value;
                }
                (b',', _) => {
                    i = member_name(b, whitespace(b, i + 1))?;
                    continue 'value;
                }
                (b']', b'[') | (b'}', b'{') => {
                    i += 1;
                    open.pop();
                }
                _ => return None,
            }
        }
    }
}

fn whitespace(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// `"name" :` from its opening quote; returns the index after the colon.
fn member_name(b: &[u8], i: usize) -> Option<usize> {
    if *b.get(i)? != b'"' {
        return None;
    }
    let i = whitespace(b, string(b, i + 1)?);
    (*b.get(i)? == b':').then_some(i + 1)
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    (b.get(i..i + word.len())? == word).then_some(i + word.len())
}

fn number(b: &[u8], mut i: usize) -> Option<usize> {
    if b[i] == b'-' {
        i += 1;
    }
    match *b.get(i)? {
        // A digit after a leading zero is left unread, and nothing may follow a value directly.
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(b, i + 1),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        i = some_digits(b, i + 1)?;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        i = some_digits(b, i)?;
    }
    Some(i)
}

fn digits(b: &[u8], mut i: usize) -> usize {
    while let Some(b'0'..=b'9') = b.get(i) {
        i += 1;
    }
    i
}

fn some_digits(b: &[u8], i: usize) -> Option<usize> {
    let end = digits(b, i);
    (end > i).then_some(end)
}

/// A string's body from just after its opening quote; returns the index after the closing one.
/// Long text is scanned with vector instructions: `memchr2` finds the next quote or backslash,
/// and the minimum byte before it (a loop the compiler vectorises) rules out control
/// characters, which must be escaped.
fn string(b: &[u8], mut i: usize) -> Option<usize> {
    // Most strings of an answer are short (names, roles, ids): the first bytes are looked at
    // one by one before a vector scan is worth setting up.
    let short_end = b.len().min(i + 24);
    while i < short_end {
        match b[i] {
            b'"' => return Some(i + 1),
            b'\\' => break,
            c if c < 0x20 => return None,
            _ => i += 1,
        }
    }
    loop {
        let rest = b.get(i..)?;
        let n = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[..n].iter().copied().min().is_some_and(|c| c < 0x20) {
            return None;
        }
        i += n;
        if b[i] == b'"' {
            return Some(i + 1);
        }
        match *b.get(i + 1)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
            b'u' if b.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) => i += 6,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_json;
    use proptest::prelude::*;

    fn serde_accepts(b: &[u8]) -> bool {
        serde_json::from_slice::<serde::de::IgnoredAny>(b).is_ok()
    }

    #[test]
    fn agrees_with_serde_json_on_chosen_cases() {
        let cases: &[&[u8]] = &[
            b"",
            b" ",
            b"{}",
            b" {} ",
            b"[]",
            b"[ ]",
            b"{ }",
            b"0",
            b"-0",
            b"01",
            b"-",
            b"1.",
            b"1.5",
            b"1e",
            b"1e+",
            b"1e+5",
            b"1E-5",
            b"1.5e3",
            b"-1.0E+2",
            b".5",
            b"+1",
            b"00",
            b"true",
            b"tru",
            b"truex",
            b"null",
            b"nul",
            b"false",
            b"\"\"",
            b"\"a",
            b"\"\\u00e9\"",
            b"\"\\u00g9\"",
            b"\"\\u00\"",
            b"\"\\x\"",
            b"\"\\/\"",
            b"\"a\tb\"",
            b"\"a\x7fb\"",
            b"\"\xff\xfe\"",
            b"\xff",
            b"[1,]",
            b"[,1]",
            b"[1 2]",
            b"[1,2]",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"{\"a\":}",
            b"{a:1}",
            b"{\"a\":1 \"b\":2}",
            b"{\"a\":[{\"b\":{}}]}",
            b"[[[[]]]]",
            b"[[[[]]]",
            b"[]]",
            b"{}}",
            b"1 2",
            b"{} {}",
            b"[1]x",
            b"\"a\"\"b\"",
            b"{\"a\":{\"b\":[1,{\"c\":null}]},\"d\":\"\\\"\"}",
            b"[\"\\\\\"]",
            b"\"\\\"",
            b"\n[1]\r\n",
            b"[1\t,\t2]",
            b"[\"0123456789abcdef0123456789abcdef\\n0123456789abcdef\"]",
            b"\"0123456789abcdef0123456789abcdef\x01\"",
            b"{\"\":\"\"}",
            b"[1e5,-0.0,0e0]",
        ];
        for case in cases {
            assert_eq!(
                is_json(case),
                serde_accepts(case),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn nesting_far_deeper_than_any_answer_is_fine() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(is_json(deep.as_bytes()));
        assert!(!is_json(&deep.as_bytes()[..deep.len() - 1]));
    }

    /// JSON-ish text: valid pieces and the characters that break them, in any order.
    fn jsonish() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"{".to_vec()),
            Just(b"}".to_vec()),
            Just(b"[".to_vec()),
            Just(b"]".to_vec()),
            Just(b",".to_vec()),
            Just(b":".to_vec()),
            Just(b" ".to_vec()),
            Just(b"\"".to_vec()),
            Just(b"\\".to_vec()),
            Just(b"\"k\":".to_vec()),
            Just(b"\"text with \\\"escapes\\\" and \\u00e9\"".to_vec()),
            Just(b"\"0123456789abcdef0123456789abcdef0123\"".to_vec()),
            Just(b"true".to_vec()),
            Just(b"null".to_vec()),
            Just(b"-12.5e+3".to_vec()),
            Just(b"0".to_vec()),
            prop::collection::vec(any::<u8>(), 1..4),
            "[0-9eE.+-]{1,4}".prop_map(String::into_bytes),
        ];
        prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
    }

    /// A valid document, then one byte changed, removed or inserted.
    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        let doc = br#"{"id":"chatcmpl-1","choices":[{"index":0,"message":{"role":"assistant","content":"Hello \"there\"\n\u00e9 0123456789abcdef0123456789abcdef"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":-3.5e2,"ok":true,"none":null,"list":[1,[2,[]],{}]}}"#;
        (0..doc.len(), any::<u8>(), 0..3u8).prop_map(move |(at, byte, how)| {
            let mut d = doc.to_vec();
            match how {
                0 => d[at] = byte,
                1 => {
                    d.remove(at);
                }
                _ => d.insert(at, byte),
            }
            d
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn agrees_with_serde_json_on_jsonish_text(b in jsonish()) {
            prop_assert_eq!(is_json(&b), serde_accepts(&b), "{:?}", String::from_utf8_lossy(&b));
        }

        #[test]
        fn agrees_with_serde_json_on_mutated_answers(b in mutated()) {
            prop_assert_eq!(is_json(&b), serde_accepts(&b), "{:?}", String::from_utf8_lossy(&b));
        }
    }
}
