//! Small text helpers shared by the response builders: JSON string literals, even splitting of
//! the assistant text into stream pieces, and the whitespace word count used as "tokens".
//! Pure functions only; no allocation beyond the returned values.

/// Renders `s` as a JSON string literal, quotes included.
///
/// Hand-written so the response builders can splice literals into prebuilt templates without
/// going through `serde_json` (and its `Result`) on every request.
pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let b = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[b >> 4]));
                out.push(char::from(HEX[b & 0xf]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Splits `s` into exactly `n.max(1)` consecutive pieces of roughly equal byte length, never
/// cutting a UTF-8 character. Pieces may be empty when `s` has fewer characters than `n`, so the
/// number of stream chunks always matches the configuration.
pub(crate) fn split_even(s: &str, n: usize) -> Vec<&str> {
    let n = n.max(1);
    let len = s.len();
    let mut pieces = Vec::with_capacity(n);
    let mut start = 0;
    for i in 1..=n {
        let mut end = len * i / n;
        while end < len && !s.is_char_boundary(end) {
            end += 1;
        }
        let end = end.max(start);
        pieces.push(s.get(start..end).unwrap_or_default());
        start = end;
    }
    pieces
}

/// The mock's notion of a token: one whitespace-separated word.
pub(crate) fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

/// Repeats `seed` (space separated) until the result is about `bytes` long, for payload-size
/// benchmarks. Cuts at a character boundary at or below `bytes`.
pub fn repeat_to_bytes(seed: &str, bytes: usize) -> String {
    let seed = if seed.trim().is_empty() {
        "mock"
    } else {
        seed.trim()
    };
    let mut out = String::with_capacity(bytes + seed.len() + 1);
    while out.len() < bytes {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(seed);
    }
    let mut cut = bytes.min(out.len());
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    out.truncate(cut);
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_str_matches_serde() {
        for s in [
            "plain",
            "q\"uote\\",
            "line\nbreak\ttab\r",
            "\u{1}\u{1f}",
            "ünïcödé ✓",
        ] {
            let ours = json_str(s);
            let theirs = serde_json::to_string(s).unwrap();
            assert_eq!(ours, theirs);
            assert_eq!(serde_json::from_str::<String>(&ours).unwrap(), s);
        }
    }

    #[test]
    fn split_even_keeps_text_and_count() {
        for (s, n) in [
            ("Hello from mock-provider", 8),
            ("ab", 5),
            ("", 3),
            ("héllo wörld", 4),
            ("x", 0),
        ] {
            let pieces = split_even(s, n);
            assert_eq!(pieces.len(), n.max(1));
            assert_eq!(pieces.concat(), s);
        }
    }

    #[test]
    fn repeat_to_bytes_is_close() {
        let s = repeat_to_bytes("Hello from mock-provider", 1000);
        assert!(s.len() <= 1000 && s.len() > 970, "{}", s.len());
        assert!(s.starts_with("Hello from mock-provider Hello"));
        assert_eq!(repeat_to_bytes("ab", 0), "");
    }
}
