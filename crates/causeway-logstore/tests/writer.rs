//! LogWriter: batching, timed flushes, queue-full drops, store failures and shutdown.
//! Tests run on tokio's current-thread runtime, so the writer task only runs when the
//! test awaits: queue contents are deterministic without sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_logstore::{LogEntry, LogFilter, LogStore, LogWriter, Page, WriterConfig};

fn entry(i: usize) -> LogEntry {
    LogEntry {
        id: format!("w-{i}"),
        timestamp: 1_700_000_000_000 + i as i64,
        object: "chat_completion".into(),
        route: "/v1/chat/completions".into(),
        provider: Some("openai".into()),
        status: "success".into(),
        status_code: 200,
        latency_ms: 12.5,
        total_tokens: 10,
        input: Some(format!("hello {i}")),
        ..Default::default()
    }
}

async fn open() -> (tempfile::TempDir, Arc<LogStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open_sqlite(&dir.path().join("logs.db"))
        .await
        .unwrap();
    (dir, Arc::new(store))
}

fn config(queue: usize, batch: usize, interval: Duration) -> WriterConfig {
    WriterConfig {
        queue_capacity: queue,
        max_batch: batch,
        flush_interval: interval,
    }
}

#[tokio::test]
async fn batches_and_flushes() {
    let (_d, store) = open().await;
    let (w, handle) = LogWriter::spawn(store.clone(), config(1000, 10, Duration::from_secs(3600)));
    for i in 0..95 {
        w.log(entry(i));
    }
    w.flush().await;
    assert_eq!(store.count().await.unwrap(), 95);
    let s = w.stats();
    assert_eq!((s.written, w.dropped()), (95, 0));
    // Newest first, content kept.
    let p = store
        .query(&LogFilter::default(), &Page::default())
        .await
        .unwrap();
    assert_eq!(p.logs[0].id, "w-94");
    assert_eq!(p.logs[0].input.as_deref(), Some("hello 94"));
    w.shutdown().await;
    handle.await.unwrap();
}

#[tokio::test]
async fn partial_batch_is_written_after_the_interval() {
    let (_d, store) = open().await;
    let (w, _h) = LogWriter::spawn(store.clone(), config(100, 1000, Duration::from_millis(30)));
    for i in 0..3 {
        w.log(entry(i));
    }
    // No flush(): only the interval timer can write these (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.count().await.unwrap() < 3 {
        assert!(Instant::now() < deadline, "interval flush never happened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(w.stats().written, 3);
}

#[tokio::test]
async fn full_queue_drops_and_counts() {
    let (_d, store) = open().await;
    let (w, _h) = LogWriter::spawn(store.clone(), config(4, 100, Duration::from_secs(3600)));
    // The writer task cannot run until we await, so exactly 4 entries fit.
    let started = Instant::now();
    for i in 0..100 {
        w.log(entry(i));
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(w.dropped(), 96);
    assert_eq!(w.stats().dropped_queue_full, 96);
    w.flush().await;
    assert_eq!(store.count().await.unwrap(), 4);
    let counter = w.dropped_counter();
    assert_eq!(counter(), 96);
}

#[tokio::test]
async fn store_failure_drops_batches_without_blocking() {
    let (_d, store) = open().await;
    let (w, handle) = LogWriter::spawn(store.clone(), config(1000, 10, Duration::from_secs(3600)));
    // A closed pool: every insert fails at once.
    store.close().await;
    let started = Instant::now();
    for i in 0..55 {
        w.log(entry(i));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "log() must not wait"
    );
    w.flush().await;
    let s = w.stats();
    assert_eq!(s.dropped_store_error, 55);
    assert_eq!(s.failed_batches, 6);
    assert_eq!(s.written, 0);
    assert_eq!(w.dropped(), 55);
    // The writer is still alive and still answers.
    w.log(entry(99));
    w.flush().await;
    assert_eq!(w.dropped(), 56);
    w.shutdown().await;
    handle.await.unwrap();
}

#[tokio::test]
async fn shutdown_drains_the_queue() {
    let (_d, store) = open().await;
    let (w, handle) = LogWriter::spawn(store.clone(), config(10_000, 7, Duration::from_secs(3600)));
    let other = w.clone();
    for i in 0..500 {
        if i % 2 == 0 {
            w.log(entry(i))
        } else {
            other.log(entry(i))
        }
    }
    w.shutdown().await;
    assert_eq!(store.count().await.unwrap(), 500);
    handle.await.unwrap();
    // After shutdown entries are dropped, counted, and nothing hangs.
    w.log(entry(1000));
    assert_eq!(w.dropped(), 1);
    w.flush().await;
    w.shutdown().await;
}

#[tokio::test]
async fn dropping_every_writer_drains_and_stops() {
    let (_d, store) = open().await;
    let (w, handle) = LogWriter::spawn(store.clone(), config(100, 1000, Duration::from_secs(3600)));
    for i in 0..20 {
        w.log(entry(i));
    }
    drop(w);
    handle.await.unwrap();
    assert_eq!(store.count().await.unwrap(), 20);
}

#[tokio::test]
async fn reused_ids_are_kept_under_suffixed_ids() {
    let (_d, store) = open().await;
    store.insert_batch(&[entry(1)]).await.unwrap();
    let (w, handle) = LogWriter::spawn(store.clone(), config(1000, 10, Duration::from_secs(3600)));
    // The same id again, twice in one batch: every request still leaves a log.
    w.log(entry(1));
    w.log(LogEntry {
        input: Some("the third one".into()),
        ..entry(1)
    });
    w.log(entry(2));
    w.flush().await;
    assert_eq!(store.count().await.unwrap(), 4);
    for id in ["w-1", "w-1~2", "w-1~3", "w-2"] {
        assert!(store.get(id).await.unwrap().is_some(), "{id} stored");
    }
    let third = store.get("w-1~3").await.unwrap().unwrap();
    assert_eq!(third.input.as_deref(), Some("the third one"));
    let stats = store.stats(&LogFilter::default()).await.unwrap();
    assert_eq!(stats.total_requests, 4, "totals count every row");
    assert_eq!((w.stats().written, w.dropped()), (3, 0));
    w.shutdown().await;
    handle.await.unwrap();
}
