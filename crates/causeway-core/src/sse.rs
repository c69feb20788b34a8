//! Server-sent events decoder: bytes in, events out, in one linear pass (every byte is
//! scanned once, however the stream is split). Used for every upstream stream.

use bytes::{Buf, Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: Bytes,
}

#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: BytesMut,
    /// Bytes of `buf` already known to hold no line terminator.
    scanned: usize,
    /// A `\r` ended the previous line; a `\n` right after it belongs to the same terminator.
    skip_lf: bool,
    event: Option<String>,
    data: BytesMut,
    has_data: bool,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; complete events are appended to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        let mut chunk = chunk;
        if self.skip_lf && !chunk.is_empty() {
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
            self.skip_lf = false;
        }
        self.buf.extend_from_slice(chunk);
        loop {
            let Some(pos) = memchr::memchr2(b'\n', b'\r', &self.buf[self.scanned..]) else {
                self.scanned = self.buf.len();
                return;
            };
            let end = self.scanned + pos;
            let line = self.buf.split_to(end).freeze();
            let term = self.buf[0];
            let mut consumed = 1;
            if term == b'\r' {
                if self.buf.len() > 1 {
                    if self.buf[1] == b'\n' {
                        consumed = 2;
                    }
                } else {
                    self.skip_lf = true;
                }
            }
            self.buf.advance(consumed);
            self.scanned = 0;
            self.line(&line, out);
            if self.skip_lf {
                return;
            }
        }
    }

    /// End of input: a trailing line without terminator and a pending event are flushed
    /// (lenient: some servers end without the final blank line).
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if !self.buf.is_empty() {
            let line = self.buf.split().freeze();
            self.line(&line, out);
        }
        self.dispatch(out);
        self.scanned = 0;
        self.skip_lf = false;
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.extend_from_slice(b"\n");
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if self.has_data {
            out.push(SseEvent {
                event: self.event.take(),
                data: self.data.split().freeze(),
            });
        }
        self.event = None;
        self.has_data = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(parts: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        for p in parts {
            d.push(p, &mut out);
        }
        d.finish(&mut out);
        out
    }

    #[test]
    fn basic_events() {
        let ev = decode_all(&[
            b"data: {\"a\":1}\n\nevent: message_stop\ndata: {}\n\n: comment\ndata: [DONE]\n\n",
        ]);
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].data, Bytes::from_static(b"{\"a\":1}"));
        assert_eq!(ev[1].event.as_deref(), Some("message_stop"));
        assert_eq!(ev[2].data, Bytes::from_static(b"[DONE]"));
    }

    #[test]
    fn multi_line_data_and_crlf() {
        let ev = decode_all(&[b"data: a\r\ndata: b\r\n\r\ndata:c\r", b"\n\r\n"]);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].data, Bytes::from_static(b"a\nb"));
        assert_eq!(ev[1].data, Bytes::from_static(b"c"));
    }

    #[test]
    fn trailing_event_without_blank_line() {
        let ev = decode_all(&[b"data: x"]);
        assert_eq!(ev.len(), 1);
    }

    #[test]
    fn large_stream_is_linear_enough() {
        // 20k events fed one byte at a time: quadratic rescanning would take seconds.
        let mut body = Vec::new();
        for i in 0..20_000 {
            body.extend_from_slice(format!("data: {{\"i\":{i}}}\n\n").as_bytes());
        }
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        for b in &body {
            d.push(std::slice::from_ref(b), &mut out);
        }
        assert_eq!(out.len(), 20_000);
    }

    proptest! {
        #[test]
        fn any_split_gives_same_events(
            events in prop::collection::vec(("[a-z_]{0,8}", "[ -~]{0,40}"), 0..20),
            crlf in any::<bool>(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut text = String::new();
            for (name, data) in &events {
                if !name.is_empty() {
                    text.push_str(&format!("event: {name}{nl}"));
                }
                text.push_str(&format!("data: {data}{nl}{nl}"));
            }
            let bytes = text.as_bytes();
            let whole = decode_all(&[bytes]);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut parts: Vec<&[u8]> = Vec::new();
            let mut last = 0;
            for p in points {
                parts.push(&bytes[last..p]);
                last = p;
            }
            parts.push(&bytes[last..]);
            let split = decode_all(&parts);
            prop_assert_eq!(&whole, &split);
            prop_assert_eq!(whole.len(), events.len());
            for (ev, (name, data)) in whole.iter().zip(&events) {
                prop_assert_eq!(ev.data.as_ref(), data.as_bytes());
                prop_assert_eq!(ev.event.as_deref(), if name.is_empty() { None } else { Some(name.as_str()) });
            }
        }
    }
}
