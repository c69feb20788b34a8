//! `loadgen`: the load client of `bench/run.sh`, the same for every contender.
//!
//! It owns request generation and timing only; starting servers and writing results is the
//! orchestrator's job (`bench/bench.py`). It runs on one thread (a current-thread runtime), so
//! on the 2-core benchmark machine it takes at most one core away from the server under test.
//! Every run is bounded in time (and `load` also in count); the result is one JSON object on stdout.
//!
//! ```text
//! loadgen load   --url URL --body FILE [--header 'K: V']... --concurrency N --duration S
//!                [--warmup S] [--max-requests N] [--watch-pid PID]
//! loadgen stream --url URL --body FILE [--header 'K: V']... --streams N [--spawn-interval-ms MS]
//!                [--expect-chunks N] [--stall-ms MS] [--timeout S] [--watch-pid PID]
//! loadgen rss    PID          # VmRSS in kB of PID and all its descendants
//! ```

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::LocalSet;

type Sender = SendRequest<Full<Bytes>>;
type Error = Box<dyn std::error::Error>;

/// Longest a single non-streaming request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the memory watcher samples the watched process tree.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(50);

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("load") => run(load(Opts::parse(&args[1..]))),
        Some("stream") => run(stream(Opts::parse(&args[1..]))),
        Some("rss") => match args.get(1).and_then(|p| p.parse::<u32>().ok()) {
            Some(pid) => {
                println!("{}", tree_rss_kb(&process_tree(pid)));
                Ok(())
            }
            None => Err("usage: loadgen rss PID".into()),
        },
        _ => Err(
            "usage: loadgen load|stream|rss ... (see the header of bench/loadgen/src/main.rs)"
                .into(),
        ),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(fut: impl std::future::Future<Output = Result<Value, Error>>) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let value = LocalSet::new().block_on(&rt, fut)?;
    println!("{value}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Options and the request template

struct Opts {
    flags: HashMap<String, Vec<String>>,
}

impl Opts {
    fn parse(args: &[String]) -> Self {
        let mut flags: HashMap<String, Vec<String>> = HashMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                let value = it.next().cloned().unwrap_or_default();
                flags.entry(name.to_owned()).or_default().push(value);
            }
        }
        Self { flags }
    }
    fn str(&self, name: &str) -> Option<&str> {
        self.flags
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }
    fn all(&self, name: &str) -> &[String] {
        self.flags.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
    fn num(&self, name: &str, default: f64) -> Result<f64, Error> {
        match self.str(name) {
            None => Ok(default),
            Some(s) => s
                .parse()
                .map_err(|_| format!("--{name}: not a number: {s}").into()),
        }
    }
    fn required(&self, name: &str) -> Result<&str, Error> {
        self.str(name)
            .ok_or_else(|| format!("--{name} is required").into())
    }
}

/// One prepared request: where it goes and what it carries. Cloned per request cheaply.
struct Target {
    addr: SocketAddr,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl Target {
    fn from_opts(o: &Opts) -> Result<Self, Error> {
        let url = o.required("url")?;
        let rest = url
            .strip_prefix("http://")
            .ok_or("--url must start with http://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr: SocketAddr = authority
            .parse()
            .map_err(|_| format!("--url needs a numeric host:port, got {authority}"))?;
        let mut headers = vec![
            (http::header::HOST, HeaderValue::from_str(authority)?),
            (
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
        ];
        for h in o.all("header") {
            let (k, v) = h
                .split_once(':')
                .ok_or_else(|| format!("bad --header {h}"))?;
            headers.push((
                HeaderName::from_bytes(k.trim().as_bytes())?,
                HeaderValue::from_str(v.trim())?,
            ));
        }
        let body = Bytes::from(std::fs::read(o.required("body")?)?);
        Ok(Self {
            addr,
            path: path.to_owned(),
            headers,
            body,
        })
    }

    fn request(&self) -> Result<Request<Full<Bytes>>, Error> {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(self.path.as_str());
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        Ok(b.body(Full::new(self.body.clone()))?)
    }
}

async fn connect(addr: SocketAddr) -> Result<Sender, Error> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

// ---------------------------------------------------------------------------------------------
// `load`: closed-loop, one keep-alive connection per worker (wrk's model)

struct LoadState {
    measure_start: Instant,
    end: Instant,
    max_requests: u64,
    issued: Cell<u64>,
    last_done: Cell<Instant>,
}

#[derive(Default)]
struct LoadTally {
    latencies_ns: Vec<u64>,
    /// Successful requests of the warm-up, not timed; with `latencies_ns` they give the CPU
    /// cost per request over the whole run.
    warmup_ok: u64,
    errors: u64,
    status_errors: u64,
    reconnects: u64,
    last_error: Option<String>,
}

async fn load(o: Opts) -> Result<Value, Error> {
    let target = Rc::new(Target::from_opts(&o)?);
    let concurrency = o.num("concurrency", 1.0)? as usize;
    let duration = Duration::from_secs_f64(o.num("duration", 5.0)?);
    let warmup = Duration::from_secs_f64(o.num("warmup", 0.5)?);
    let max_requests = o.num("max-requests", 1e12)? as u64;
    let watcher = TreeWatcher::start(&o)?;

    let start = Instant::now();
    let state = Rc::new(LoadState {
        measure_start: start + warmup,
        end: start + warmup + duration,
        max_requests,
        issued: Cell::new(0),
        last_done: Cell::new(start + warmup),
    });
    let tally = Rc::new(RefCell::new(LoadTally::default()));
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        workers.push(tokio::task::spawn_local(load_worker(
            Rc::clone(&target),
            Rc::clone(&state),
            Rc::clone(&tally),
        )));
    }
    for w in workers {
        w.await?;
    }
    let rss = watcher.stop().await;
    let mut t = tally.take();
    let elapsed = state
        .last_done
        .get()
        .saturating_duration_since(state.measure_start)
        .as_secs_f64()
        .max(1e-9);
    t.latencies_ns.sort_unstable();
    let n = t.latencies_ns.len();
    Ok(json!({
        "concurrency": concurrency,
        "requests": n,
        "errors": t.errors,
        "status_errors": t.status_errors,
        "reconnects": t.reconnects,
        "last_error": t.last_error,
        "elapsed_s": elapsed,
        "rps": n as f64 / elapsed,
        "latency_us": summary_us(&t.latencies_ns),
        "rss_peak_kb": rss.peak_kb,
        "cpu_s": rss.cpu_s,
        "cpu_us_per_request": rss.cpu_s.map(|c| c * 1e6 / (n as u64 + t.warmup_ok).max(1) as f64),
    }))
}

async fn load_worker(target: Rc<Target>, state: Rc<LoadState>, tally: Rc<RefCell<LoadTally>>) {
    let mut sender: Option<Sender> = None;
    let mut local = LoadTally::default();
    loop {
        let now = Instant::now();
        if now >= state.end {
            break;
        }
        let measuring = now >= state.measure_start;
        if measuring {
            if state.issued.get() >= state.max_requests {
                break;
            }
            state.issued.set(state.issued.get() + 1);
        }
        let mut s = match sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => {
                local.reconnects += 1;
                match connect(target.addr).await {
                    Ok(s) => s,
                    Err(e) => {
                        if measuring {
                            local.errors += 1;
                            local.last_error = Some(format!("connect: {e}"));
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                }
            }
        };
        let t0 = Instant::now();
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, one_request(&mut s, &target)).await;
        let done = Instant::now();
        match outcome {
            Ok(Ok(200)) => {
                sender = Some(s);
                if measuring {
                    local.latencies_ns.push((done - t0).as_nanos() as u64);
                    state.last_done.set(state.last_done.get().max(done));
                } else {
                    local.warmup_ok += 1;
                }
            }
            Ok(Ok(status)) => {
                sender = Some(s);
                if measuring {
                    local.status_errors += 1;
                    local.last_error = Some(format!("HTTP {status}"));
                    state.last_done.set(state.last_done.get().max(done));
                }
            }
            Ok(Err(e)) => {
                if measuring {
                    local.errors += 1;
                    local.last_error = Some(e.to_string());
                }
            }
            Err(_) => {
                if measuring {
                    local.errors += 1;
                    local.last_error = Some("timeout".to_owned());
                }
            }
        }
    }
    let mut t = tally.borrow_mut();
    t.latencies_ns.append(&mut local.latencies_ns);
    t.warmup_ok += local.warmup_ok;
    t.errors += local.errors;
    t.status_errors += local.status_errors;
    t.reconnects += local.reconnects.saturating_sub(1);
    if local.last_error.is_some() {
        t.last_error = local.last_error;
    }
}

async fn one_request(s: &mut Sender, target: &Target) -> Result<u16, Error> {
    s.ready().await?;
    let resp = s.send_request(target.request()?).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

// ---------------------------------------------------------------------------------------------
// `stream`: N streaming requests, each on its own connection, all at once or on a schedule

#[derive(Default)]
struct StreamOutcome {
    /// Request written to first content chunk.
    ttft_ns: Option<u64>,
    /// Gaps between consecutive content chunks.
    gaps_us: Vec<u64>,
    /// Longest silence of the stream: request to first event, or between any two events, or
    /// from the last event to the deadline of a stream that timed out.
    max_silence_ns: u64,
    /// When the request was written, and when the last event arrived.
    sent: Option<Instant>,
    last_event: Option<Instant>,
    content_chunks: usize,
    done_marker: bool,
    error: Option<String>,
    timed_out: bool,
}

async fn stream(o: Opts) -> Result<Value, Error> {
    let target = Rc::new(Target::from_opts(&o)?);
    let streams = o.num("streams", 1.0)? as usize;
    let interval = Duration::from_secs_f64(o.num("spawn-interval-ms", 0.0)? / 1000.0);
    let expect = o.num("expect-chunks", 1.0)? as usize;
    let stall = Duration::from_secs_f64(o.num("stall-ms", 1000.0)? / 1000.0);
    let timeout = Duration::from_secs_f64(o.num("timeout", 30.0)?);
    let watcher = TreeWatcher::start(&o)?;

    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + timeout);
    let mut tasks = Vec::with_capacity(streams);
    for i in 0..streams {
        if !interval.is_zero() {
            tokio::time::sleep_until(tokio::time::Instant::from_std(start + interval * i as u32))
                .await;
        }
        let target = Rc::clone(&target);
        tasks.push(tokio::task::spawn_local(async move {
            let out = Rc::new(RefCell::new(StreamOutcome::default()));
            let run = one_stream(&target, Rc::clone(&out));
            match tokio::time::timeout_at(deadline, run).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => out.borrow_mut().error = Some(e.to_string()),
                Err(_) => {
                    let mut o = out.borrow_mut();
                    o.timed_out = true;
                    if let Some(since) = o.last_event.or(o.sent) {
                        let silence = (Instant::now() - since).as_nanos() as u64;
                        o.max_silence_ns = o.max_silence_ns.max(silence);
                    }
                }
            }
            out.take()
        }));
    }
    let mut outcomes = Vec::with_capacity(streams);
    for t in tasks {
        outcomes.push(t.await?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rss = watcher.stop().await;

    let mut ttft: Vec<u64> = outcomes.iter().filter_map(|s| s.ttft_ns).collect();
    ttft.sort_unstable();
    let mut gaps: Vec<u64> = outcomes
        .iter()
        .flat_map(|s| s.gaps_us.iter().copied())
        .collect();
    gaps.sort_unstable();
    let complete =
        |s: &StreamOutcome| s.error.is_none() && !s.timed_out && s.content_chunks >= expect;
    let stall_ns = stall.as_nanos() as u64;
    let held = outcomes
        .iter()
        .filter(|s| complete(s) && s.max_silence_ns <= stall_ns)
        .count();
    let mut silences: Vec<u64> = outcomes.iter().map(|s| s.max_silence_ns).collect();
    silences.sort_unstable();
    let bunched = gaps.iter().filter(|&&g| g < 5_000).count();
    Ok(json!({
        "streams": streams,
        "expect_chunks": expect,
        "complete": outcomes.iter().filter(|s| complete(s)).count(),
        "held": held,
        "errors": outcomes.iter().filter(|s| s.error.is_some()).count(),
        "timed_out": outcomes.iter().filter(|s| s.timed_out).count(),
        "done_marker": outcomes.iter().filter(|s| s.done_marker).count(),
        "last_error": outcomes.iter().rev().find_map(|s| s.error.clone()),
        "chunks_min": outcomes.iter().map(|s| s.content_chunks).min().unwrap_or(0),
        "chunks_max": outcomes.iter().map(|s| s.content_chunks).max().unwrap_or(0),
        "ttft_us": summary_us(&ttft),
        "gap_ms": {
            "count": gaps.len(),
            "p50": pct(&gaps, 50.0) as f64 / 1000.0,
            "p99": pct(&gaps, 99.0) as f64 / 1000.0,
            "max": gaps.last().copied().unwrap_or(0) as f64 / 1000.0,
            "under_5ms": bunched,
        },
        "max_silence_ms": {
            "p50": pct(&silences, 50.0) as f64 / 1e6,
            "max": silences.last().copied().unwrap_or(0) as f64 / 1e6,
        },
        "elapsed_s": elapsed,
        "rss_peak_kb": rss.peak_kb,
        "cpu_s": rss.cpu_s,
    }))
}

async fn one_stream(target: &Target, out: Rc<RefCell<StreamOutcome>>) -> Result<(), Error> {
    let mut s = connect(target.addr).await?;
    s.ready().await?;
    let t0 = Instant::now();
    out.borrow_mut().sent = Some(t0);
    let resp = s.send_request(target.request()?).await?;
    if resp.status() != 200 {
        return Err(format!("HTTP {}", resp.status()).into());
    }
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut last_event = t0;
    let mut last_content: Option<Instant> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let now = Instant::now();
        buf.extend_from_slice(&data);
        let mut consumed = 0;
        while let Some(nl) = buf[consumed..].iter().position(|&b| b == b'\n') {
            let line = &buf[consumed..consumed + nl];
            consumed += nl + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(payload) = line.strip_prefix(b"data:") else {
                continue;
            };
            let payload = payload.trim_ascii();
            let mut o = out.borrow_mut();
            o.max_silence_ns = o.max_silence_ns.max((now - last_event).as_nanos() as u64);
            o.last_event = Some(now);
            last_event = now;
            if payload == b"[DONE]" {
                o.done_marker = true;
            } else if has_error(payload) {
                return Err(format!("error event: {}", String::from_utf8_lossy(payload)).into());
            } else if has_content(payload) {
                o.content_chunks += 1;
                match last_content {
                    None => o.ttft_ns = Some((now - t0).as_nanos() as u64),
                    Some(prev) => o.gaps_us.push((now - prev).as_micros() as u64),
                }
                last_content = Some(now);
            }
        }
        buf.drain(..consumed);
    }
    Ok(())
}

/// Whether an SSE payload carries a non-empty `"content"` string (a token), without parsing JSON:
/// tolerant of the spacing any JSON serializer may use.
fn has_content(p: &[u8]) -> bool {
    let key = b"\"content\"";
    let mut from = 0;
    while let Some(i) = find(&p[from..], key) {
        let mut j = from + i + key.len();
        while p.get(j).is_some_and(u8::is_ascii_whitespace) {
            j += 1;
        }
        if p.get(j) == Some(&b':') {
            j += 1;
            while p.get(j).is_some_and(u8::is_ascii_whitespace) {
                j += 1;
            }
            if p.get(j) == Some(&b'"') && p.get(j + 1).is_some_and(|&c| c != b'"') {
                return true;
            }
        }
        from += i + key.len();
    }
    false
}

fn has_error(p: &[u8]) -> bool {
    p.starts_with(b"{\"error\"") || p.starts_with(b"{ \"error\"")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary_us(sorted_ns: &[u64]) -> Value {
    let us = |ns: u64| (ns as f64 / 1000.0 * 10.0).round() / 10.0;
    let mean = if sorted_ns.is_empty() {
        0
    } else {
        sorted_ns.iter().sum::<u64>() / sorted_ns.len() as u64
    };
    json!({
        "count": sorted_ns.len(),
        "p50": us(pct(sorted_ns, 50.0)),
        "p90": us(pct(sorted_ns, 90.0)),
        "p99": us(pct(sorted_ns, 99.0)),
        "p999": us(pct(sorted_ns, 99.9)),
        "max": us(sorted_ns.last().copied().unwrap_or(0)),
        "mean": us(mean),
    })
}

// ---------------------------------------------------------------------------------------------
// Memory of a process tree, from /proc

/// Samples the resident memory of the watched process tree during a run (peak) and takes its
/// CPU time (user + system) at the start and the end.
struct TreeWatcher {
    stop: Rc<Cell<bool>>,
    task: Option<tokio::task::JoinHandle<u64>>,
    pid: Option<u32>,
    cpu_start: f64,
}

struct TreeUsage {
    peak_kb: Option<u64>,
    /// CPU seconds the watched tree used during the run.
    cpu_s: Option<f64>,
}

impl TreeWatcher {
    fn start(o: &Opts) -> Result<Self, Error> {
        let stop = Rc::new(Cell::new(false));
        let Some(pid) = o.str("watch-pid") else {
            return Ok(Self {
                stop,
                task: None,
                pid: None,
                cpu_start: 0.0,
            });
        };
        let pid: u32 = pid.parse().map_err(|_| "--watch-pid: not a pid")?;
        let cpu_start = tree_cpu_s(&process_tree(pid));
        let flag = Rc::clone(&stop);
        let task = tokio::task::spawn_local(async move {
            let mut tree = process_tree(pid);
            let mut rescanned = Instant::now();
            let mut peak = 0;
            while !flag.get() {
                if rescanned.elapsed() > Duration::from_secs(1) {
                    tree = process_tree(pid);
                    rescanned = Instant::now();
                }
                peak = peak.max(tree_rss_kb(&tree));
                tokio::time::sleep(RSS_SAMPLE_EVERY).await;
            }
            peak.max(tree_rss_kb(&tree))
        });
        Ok(Self {
            stop,
            task: Some(task),
            pid: Some(pid),
            cpu_start,
        })
    }

    async fn stop(self) -> TreeUsage {
        self.stop.set(true);
        let cpu_s = self
            .pid
            .map(|pid| tree_cpu_s(&process_tree(pid)) - self.cpu_start);
        let peak_kb = match self.task {
            Some(t) => t.await.ok(),
            None => None,
        };
        TreeUsage { peak_kb, cpu_s }
    }
}

/// User + system CPU seconds of the processes (`/proc/PID/stat` fields 14 and 15, in clock
/// ticks of 1/100 s on Linux).
fn tree_cpu_s(tree: &[u32]) -> f64 {
    let ticks: u64 = tree
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            let after = &stat[stat.rfind(')')? + 1..];
            let f: Vec<&str> = after.split_whitespace().collect();
            // After the command name: state is field 3, utime 14 and stime 15 (1-based).
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    ticks as f64 / 100.0
}

/// `pid` and all its descendants.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            // The command name may contain spaces and parentheses: fields start after the last ')'.
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
                .and_then(|s| s.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                children.entry(ppid).or_default().push(child);
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        if let Some(c) = children.get(&tree[i]) {
            tree.extend_from_slice(c);
        }
        i += 1;
    }
    tree
}

fn tree_rss_kb(tree: &[u32]) -> u64 {
    tree.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_detection() {
        assert!(has_content(br#"{"choices":[{"delta":{"content":"Hi"}}]}"#));
        assert!(has_content(
            br#"{"choices": [{"delta": {"content": "Hi"}}]}"#
        ));
        assert!(!has_content(
            br#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#
        ));
        assert!(!has_content(br#"{"choices":[{"delta":{"content":null}}]}"#));
        assert!(!has_content(
            br#"{"choices":[{"delta":{}}],"usage":{"prompt_tokens":1}}"#
        ));
    }

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(pct(&v, 50.0), 50);
        assert_eq!(pct(&v, 99.0), 99);
        assert_eq!(pct(&v, 100.0), 100);
        assert_eq!(pct(&[], 50.0), 0);
    }
}
