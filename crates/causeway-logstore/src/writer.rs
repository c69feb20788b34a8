//! The hot-path side of logging: `LogWriter::log` hands an entry to a bounded queue and
//! returns at once; one background task drains the queue into `insert_batch`.
//!
//! Request handling must never wait on the database, so every failure ends in a counted
//! drop rather than back-pressure: a full queue drops the new entry, and a batch the
//! store rejects is dropped after a (rate-limited) warning. `dropped()` feeds
//! `GET /api/logs/dropped`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{LogEntry, LogStore};

/// How the writer batches.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Entries (and control messages) the queue holds before `log` starts dropping.
    pub queue_capacity: usize,
    /// Most entries written per transaction.
    pub max_batch: usize,
    /// Longest an entry waits in a partial batch.
    pub flush_interval: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue_capacity: 10_000,
            max_batch: 1_000,
            flush_interval: Duration::from_secs(1),
        }
    }
}

/// Counters of what happened to logged entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Entries persisted.
    pub written: u64,
    /// Entries dropped because the queue was full (or the writer had stopped).
    pub dropped_queue_full: u64,
    /// Entries dropped because the store failed to write their batch.
    pub dropped_store_error: u64,
    /// Batches the store failed to write.
    pub failed_batches: u64,
}

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    queue_full: AtomicU64,
    store_error: AtomicU64,
    failed_batches: AtomicU64,
}

enum Msg {
    Entry(Box<LogEntry>),
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// Cheap to clone; every clone feeds the same queue.
#[derive(Debug, Clone)]
pub struct LogWriter {
    tx: mpsc::Sender<Msg>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Entry(e) => write!(f, "Entry({})", e.id),
            Msg::Flush(_) => f.write_str("Flush"),
            Msg::Shutdown(_) => f.write_str("Shutdown"),
        }
    }
}

/// Logs a store failure at most once per this interval (with how many were folded in),
/// so a dead disk does not turn into a warning per batch.
const WARN_EVERY: Duration = Duration::from_secs(30);

impl LogWriter {
    /// Starts the background task. The handle finishes after `shutdown`, or once every
    /// `LogWriter` clone is dropped and the queue is drained.
    pub fn spawn(store: Arc<LogStore>, config: WriterConfig) -> (LogWriter, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let task = Task {
            store,
            max_batch: config.max_batch.max(1),
            flush_interval: config.flush_interval.max(Duration::from_millis(1)),
            counters: counters.clone(),
            last_warn: None,
            suppressed: 0,
        };
        let handle = tokio::spawn(task.run(rx));
        (LogWriter { tx, counters }, handle)
    }

    /// Queues `entry` for writing. Never blocks and never fails: when the queue is full
    /// (or the writer has stopped) the entry is dropped and counted.
    pub fn log(&self, entry: LogEntry) {
        if self.tx.try_send(Msg::Entry(Box::new(entry))).is_err() {
            self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Entries that will never be stored (queue full, or their batch failed).
    pub fn dropped(&self) -> u64 {
        self.counters.queue_full.load(Ordering::Relaxed)
            + self.counters.store_error.load(Ordering::Relaxed)
    }

    /// A `dropped()` reader that outlives no one: for `LogsApi`.
    pub fn dropped_counter(&self) -> Arc<dyn Fn() -> u64 + Send + Sync> {
        let counters = self.counters.clone();
        Arc::new(move || {
            counters.queue_full.load(Ordering::Relaxed)
                + counters.store_error.load(Ordering::Relaxed)
        })
    }

    pub fn stats(&self) -> WriterStats {
        WriterStats {
            written: self.counters.written.load(Ordering::Relaxed),
            dropped_queue_full: self.counters.queue_full.load(Ordering::Relaxed),
            dropped_store_error: self.counters.store_error.load(Ordering::Relaxed),
            failed_batches: self.counters.failed_batches.load(Ordering::Relaxed),
        }
    }

    /// Waits until everything queued before this call has been written (or dropped).
    /// Returns at once if the writer has stopped.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Drains the queue, writes it, and stops the background task. Entries logged
    /// afterwards are counted as dropped.
    pub async fn shutdown(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

struct Task {
    store: Arc<LogStore>,
    max_batch: usize,
    flush_interval: Duration,
    counters: Arc<Counters>,
    last_warn: Option<Instant>,
    suppressed: u64,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut batch: Vec<LogEntry> = Vec::with_capacity(self.max_batch);
        let mut msgs: Vec<Msg> = Vec::with_capacity(self.max_batch);
        // The deadline of the oldest entry in `batch`; none while it is empty, so an
        // idle writer does not wake up every interval.
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let received = match deadline {
                Some(d) => tokio::select! {
                    n = rx.recv_many(&mut msgs, self.max_batch) => Some(n),
                    _ = tokio::time::sleep_until(d) => None,
                },
                None => Some(rx.recv_many(&mut msgs, self.max_batch).await),
            };
            let n = match received {
                Some(n) => n,
                None => {
                    self.write(&mut batch).await;
                    deadline = None;
                    continue;
                }
            };
            if n == 0 {
                // Every sender is gone: write what is left and stop.
                self.write(&mut batch).await;
                return;
            }
            let mut stop: Option<oneshot::Sender<()>> = None;
            for msg in msgs.drain(..) {
                match msg {
                    Msg::Entry(e) => {
                        if batch.is_empty() {
                            deadline = Some(tokio::time::Instant::now() + self.flush_interval);
                        }
                        batch.push(*e);
                        if batch.len() >= self.max_batch {
                            self.write(&mut batch).await;
                            deadline = None;
                        }
                    }
                    Msg::Flush(ack) => {
                        self.write(&mut batch).await;
                        deadline = None;
                        let _ = ack.send(());
                    }
                    Msg::Shutdown(ack) => {
                        // Entries after the shutdown in this same receive are still
                        // written: they were queued before the channel closed.
                        stop = Some(ack);
                    }
                }
            }
            if let Some(ack) = stop {
                rx.close();
                while let Some(msg) = rx.recv().await {
                    match msg {
                        Msg::Entry(e) => {
                            batch.push(*e);
                            if batch.len() >= self.max_batch {
                                self.write(&mut batch).await;
                            }
                        }
                        Msg::Flush(a) | Msg::Shutdown(a) => {
                            self.write(&mut batch).await;
                            let _ = a.send(());
                        }
                    }
                }
                self.write(&mut batch).await;
                let _ = ack.send(());
                return;
            }
        }
    }

    async fn write(&mut self, batch: &mut Vec<LogEntry>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        match self.store.insert_batch_keeping_duplicates(batch).await {
            Ok(_) => {
                self.counters.written.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                self.counters.store_error.fetch_add(n, Ordering::Relaxed);
                self.counters.failed_batches.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                if self
                    .last_warn
                    .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
                {
                    tracing::warn!(
                        error = %e,
                        dropped = n,
                        suppressed_warnings = self.suppressed,
                        "log store write failed; batch dropped"
                    );
                    self.last_warn = Some(now);
                    self.suppressed = 0;
                } else {
                    self.suppressed += 1;
                }
            }
        }
        batch.clear();
    }
}
