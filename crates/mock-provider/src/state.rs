//! State shared by every connection of one mock server: the live config snapshot, the request
//! log and the counters tests assert on. Locks here are std mutexes held for a push or a clone
//! only, never across an `.await`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::config::{MockConfig, Snapshot};

/// One request as the mock received it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Header names are lower-case; values are lossily decoded as UTF-8.
    pub headers: Vec<(String, String)>,
    /// The JSON body, or `Null` when there was none or it was not valid JSON.
    pub body: serde_json::Value,
    /// The key the API would authenticate with (`Authorization: Bearer` for OpenAI routes,
    /// `x-api-key` for Anthropic routes).
    pub api_key: Option<String>,
}

impl RecordedRequest {
    /// First value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub(crate) struct Shared {
    pub(crate) config: ArcSwap<Snapshot>,
    requests: Mutex<Vec<RecordedRequest>>,
    request_count: AtomicUsize,
    connections: AtomicUsize,
    next_id: AtomicU64,
    fail_first_seen: AtomicUsize,
    pub(crate) streams: StreamStats,
}

impl Shared {
    pub(crate) fn new(config: MockConfig) -> Self {
        Self {
            config: ArcSwap::from_pointee(Snapshot::new(config)),
            requests: Mutex::new(Vec::new()),
            request_count: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            fail_first_seen: AtomicUsize::new(0),
            streams: StreamStats::default(),
        }
    }

    pub(crate) fn set_config(&self, config: MockConfig) {
        self.config.store(Arc::new(Snapshot::new(config)));
        // A new config starts a new `fail_first` window, so tests can arm it mid-run.
        self.fail_first_seen.store(0, Ordering::Relaxed);
    }

    /// Counts the request and returns its sequence number (1-based), used in response ids.
    pub(crate) fn begin_request(&self) -> u64 {
        self.request_count.fetch_add(1, Ordering::Relaxed);
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn record(&self, request: RecordedRequest) {
        self.lock_requests().push(request);
    }

    /// True while this request falls inside the configured `fail_first` window.
    pub(crate) fn take_fail_first(&self, fail_first: usize) -> bool {
        fail_first > 0 && self.fail_first_seen.fetch_add(1, Ordering::Relaxed) < fail_first
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.lock_requests().clone()
    }

    pub(crate) fn connection_accepted(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connections_accepted(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    pub(crate) fn request_count(&self) -> usize {
        self.request_count.load(Ordering::Relaxed)
    }

    pub(crate) fn clear_requests(&self) {
        let mut log = self.lock_requests();
        log.clear();
        self.request_count.store(0, Ordering::Relaxed);
    }

    fn lock_requests(&self) -> std::sync::MutexGuard<'_, Vec<RecordedRequest>> {
        // A panic while holding this lock cannot leave the Vec half-written, so poison is moot.
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Lifecycle counters of streamed responses.
#[derive(Default)]
pub(crate) struct StreamStats {
    started: AtomicUsize,
    completed: AtomicUsize,
    cancelled: AtomicUsize,
    aborted: AtomicUsize,
    /// Woken whenever a stream ends, however it ends.
    pub(crate) ended: Notify,
}

impl StreamStats {
    pub(crate) fn started(&self) -> usize {
        self.started.load(Ordering::Acquire)
    }
    pub(crate) fn completed(&self) -> usize {
        self.completed.load(Ordering::Acquire)
    }
    pub(crate) fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::Acquire)
    }
    pub(crate) fn aborted(&self) -> usize {
        self.aborted.load(Ordering::Acquire)
    }

    pub(crate) fn on_start(&self) {
        self.started.fetch_add(1, Ordering::AcqRel);
    }
    pub(crate) fn on_complete(&self) {
        self.completed.fetch_add(1, Ordering::AcqRel);
        self.ended.notify_waiters();
    }
    pub(crate) fn on_cancel(&self) {
        self.cancelled.fetch_add(1, Ordering::AcqRel);
        self.ended.notify_waiters();
    }
    pub(crate) fn on_abort(&self) {
        self.aborted.fetch_add(1, Ordering::AcqRel);
        self.ended.notify_waiters();
    }
}
