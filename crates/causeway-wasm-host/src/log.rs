//! Log lines a plugin produces (host `log` imports, WASI stdout/stderr) and host-side events
//! about it, delivered to the caller's sink. Never stores lines: the sink decides.

use std::fmt;
use std::sync::Arc;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(&self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    /// `env.log_level` numbering; unknown numbers count as info rather than failing the guest.
    pub(crate) fn from_guest(level: i32) -> LogLevel {
        match level {
            0 => LogLevel::Debug,
            2 => LogLevel::Warn,
            3 => LogLevel::Error,
            _ => LogLevel::Info,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line from or about a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// Where a plugin's log lines go. Called on the thread running the plugin, so it must be quick.
pub type LogSink = Arc<dyn Fn(LogLine) + Send + Sync>;

/// Longest line passed to the sink; a guest must not be able to make the host hold or forward
/// unbounded text through its logging.
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024;

/// Sends `bytes` as one line (lossy UTF-8, trailing `\r`/`\n` removed, truncated to the cap).
pub(crate) fn emit(sink: &LogSink, level: LogLevel, bytes: &[u8]) {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let (bytes, truncated) = match bytes.get(..MAX_LINE_BYTES) {
        Some(head) if bytes.len() > MAX_LINE_BYTES => (head, true),
        _ => (bytes, false),
    };
    let mut message = String::from_utf8_lossy(bytes).into_owned();
    if truncated {
        message.push_str(" [truncated]");
    }
    sink(LogLine { level, message });
}

/// Assembles WASI `fd_write` output into lines: guests write partial lines and several lines
/// per call, and the sink wants one call per line.
pub(crate) struct LineBuffer {
    level: LogLevel,
    pending: Vec<u8>,
}

impl LineBuffer {
    pub(crate) fn new(level: LogLevel) -> Self {
        Self {
            level,
            pending: Vec::new(),
        }
    }

    pub(crate) fn write(&mut self, mut bytes: &[u8], sink: &LogSink) {
        while let Some(newline) = bytes.iter().position(|&b| b == b'\n') {
            let (line, rest) = bytes.split_at(newline + 1);
            if self.pending.is_empty() {
                emit(sink, self.level, line);
            } else {
                self.pending.extend_from_slice(line);
                emit(sink, self.level, &self.pending);
                self.pending.clear();
            }
            bytes = rest;
        }
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= MAX_LINE_BYTES {
            self.flush(sink);
        }
    }

    /// Emits a pending partial line; called when a guest call ends so lines are not held back.
    pub(crate) fn flush(&mut self, sink: &LogSink) {
        if !self.pending.is_empty() {
            emit(sink, self.level, &self.pending);
            self.pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn collecting_sink() -> (LogSink, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink_lines = Arc::clone(&lines);
        let sink: LogSink = Arc::new(move |line: LogLine| {
            sink_lines.lock().unwrap().push(line.message);
        });
        (sink, lines)
    }

    #[test]
    fn partial_writes_become_whole_lines() {
        let (sink, lines) = collecting_sink();
        let mut buffer = LineBuffer::new(LogLevel::Info);
        buffer.write(b"hel", &sink);
        buffer.write(b"lo\r\nwor", &sink);
        buffer.write(b"ld\nlast", &sink);
        assert_eq!(*lines.lock().unwrap(), vec!["hello", "world"]);
        buffer.flush(&sink);
        assert_eq!(*lines.lock().unwrap(), vec!["hello", "world", "last"]);
        buffer.flush(&sink);
        assert_eq!(lines.lock().unwrap().len(), 3);
    }

    #[test]
    fn long_lines_are_cut() {
        let (sink, lines) = collecting_sink();
        let mut buffer = LineBuffer::new(LogLevel::Info);
        buffer.write(&vec![b'x'; MAX_LINE_BYTES + 10], &sink);
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].ends_with("[truncated]"));
    }
}
