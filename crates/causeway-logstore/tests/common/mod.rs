//! The behavioural checks of `LogStore`, shared by every backend: each takes an open,
//! empty store and compares it with an in-memory oracle (every filter, sort, paging
//! mode, stats, the delete guard, retention and content search). `tests/store.rs` runs
//! them on SQLite, `tests/store_services.rs` on Postgres.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::collections::HashSet;
use std::sync::Arc;

use causeway_logstore::{
    LogEntry, LogFilter, LogStore, LogStoreError, Order, Page, SortBy, spawn_retention,
};
use serde_json::json;

pub const PROVIDERS: [&str; 4] = ["openai", "anthropic", "groq", "bedrock"];
const MODELS: [&str; 5] = ["gpt-4o", "gpt-4o-mini", "claude-3-5", "llama-3", "titan"];
const OBJECTS: [&str; 3] = ["chat_completion", "chat_completion_stream", "embedding"];
const WORDS: [&str; 8] = [
    "weather",
    "invoice",
    "Zürich",
    "kubernetes",
    "banana",
    "refund",
    "poem",
    "database",
];

/// Deterministic pseudo-random numbers (no dependency, same data every run).
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub const BASE_TS: i64 = 1_700_000_000_000;

pub fn fixture(n: usize) -> Vec<LogEntry> {
    let mut r = Lcg(42);
    (0..n)
        .map(|i| {
            let provider = PROVIDERS[r.below(4) as usize];
            let status = match r.below(10) {
                0 => "error",
                1 => "cancelled",
                _ => "success",
            };
            let prompt = r.below(2000);
            let completion = r.below(500);
            let with_content = i % 3 != 0;
            let w1 = WORDS[r.below(8) as usize];
            let w2 = WORDS[r.below(8) as usize];
            LogEntry {
                id: format!("req-{i:05}"),
                // Some equal timestamps, to exercise the seq tie-break.
                timestamp: BASE_TS + (i as i64 / 2) * 1000,
                object: OBJECTS[r.below(3) as usize].into(),
                route: "/v1/chat/completions".into(),
                provider: Some(provider.into()),
                model: Some(format!("{provider}/{}", MODELS[r.below(5) as usize])),
                resolved_provider: Some(provider.into()),
                resolved_model: Some(MODELS[r.below(5) as usize].into()),
                key_id: Some(format!("key-{}", r.below(6))),
                virtual_key_id: if r.below(5) == 0 {
                    None
                } else {
                    Some(format!("vk-{}", r.below(20)))
                },
                team_id: Some(format!("team-{}", r.below(3))),
                customer_id: Some(format!("cust-{}", r.below(4))),
                status: status.into(),
                status_code: if status == "success" { 200 } else { 502 },
                error_type: (status == "error").then(|| "upstream_error".into()),
                error_message: (status == "error").then(|| "bad gateway".into()),
                latency_ms: r.below(5000) as f64 / 3.0,
                ttft_ms: Some(r.below(300) as f64),
                prompt_tokens: prompt,
                completion_tokens: completion,
                cached_tokens: prompt / 4,
                total_tokens: prompt + completion,
                cost: if r.below(6) == 0 {
                    None
                } else {
                    Some((prompt + completion) as f64 * 1e-6 * (1 + r.below(3)) as f64)
                },
                fallback_index: r.below(2) as u32,
                attempts: 1 + r.below(2) as u32,
                stream: r.below(2) == 0,
                input: with_content.then(|| format!("please tell me about {w1} and more")),
                output: with_content.then(|| format!("here is something on {w2}.")),
                metadata: if i % 7 == 0 {
                    json!({"env": "prod", "n": i}).as_object().unwrap().clone()
                } else {
                    Default::default()
                },
            }
        })
        .collect()
}

pub fn oracle_matches(e: &LogEntry, f: &LogFilter) -> bool {
    let in_list = |v: &Option<String>, list: &Vec<String>| {
        list.is_empty() || v.as_ref().is_some_and(|v| list.contains(v))
    };
    let words_ok = |s: &str| {
        let hay = format!(
            "{} {}",
            e.input.as_deref().unwrap_or(""),
            e.output.as_deref().unwrap_or("")
        )
        .to_lowercase()
        // unicode61 folds diacritics; the fixture's only one is ü.
        .replace('ü', "u");
        let tokens: Vec<&str> = hay
            .split(|c: char| !c.is_alphanumeric())
            .filter(|t| !t.is_empty())
            .collect();
        s.split_whitespace().all(|w| {
            let w = w.to_lowercase().replace('ü', "u");
            tokens.iter().any(|t| t.starts_with(&w))
        })
    };
    in_list(&e.provider, &f.providers)
        && in_list(&e.model, &f.models)
        && (f.status.is_empty() || f.status.contains(&e.status))
        && (f.objects.is_empty() || f.objects.contains(&e.object))
        && in_list(&e.virtual_key_id, &f.virtual_key_ids)
        && in_list(&e.team_id, &f.team_ids)
        && in_list(&e.customer_id, &f.customer_ids)
        && in_list(&e.key_id, &f.selected_key_ids)
        && (f.ids.is_empty() || f.ids.contains(&e.id))
        && match &f.request_id {
            Some(id) => &e.id == id,
            None => {
                f.start_time.is_none_or(|t| e.timestamp >= t)
                    && f.end_time.is_none_or(|t| e.timestamp <= t)
            }
        }
        && f.min_latency.is_none_or(|v| e.latency_ms >= v)
        && f.max_latency.is_none_or(|v| e.latency_ms <= v)
        && f.min_tokens.is_none_or(|v| e.total_tokens >= v)
        && f.max_tokens.is_none_or(|v| e.total_tokens <= v)
        && f.min_cost.is_none_or(|v| e.cost.is_some_and(|c| c >= v))
        && f.max_cost.is_none_or(|v| e.cost.is_some_and(|c| c <= v))
        && f.content_search.as_deref().is_none_or(words_ok)
}

/// Oracle order: sort key, then insertion order (seq), both in the page's direction;
/// unpriced rows are the lowest costs.
pub fn oracle_sorted(all: &[LogEntry], f: &LogFilter, sort: SortBy, order: Order) -> Vec<String> {
    let mut rows: Vec<(usize, &LogEntry)> = all
        .iter()
        .enumerate()
        .filter(|(_, e)| oracle_matches(e, f))
        .collect();
    rows.sort_by(|(ia, a), (ib, b)| {
        let key = match sort {
            SortBy::Timestamp => a.timestamp.cmp(&b.timestamp),
            SortBy::Latency => a.latency_ms.total_cmp(&b.latency_ms),
            SortBy::Tokens => a.total_tokens.cmp(&b.total_tokens),
            SortBy::Cost => match (a.cost, b.cost) {
                (None, None) => std::cmp::Ordering::Equal,
                (None, Some(_)) => std::cmp::Ordering::Less,
                (Some(_), None) => std::cmp::Ordering::Greater,
                (Some(x), Some(y)) => x.total_cmp(&y),
            },
        }
        .then(ia.cmp(ib));
        if order == Order::Desc {
            key.reverse()
        } else {
            key
        }
    });
    rows.into_iter().map(|(_, e)| e.id.clone()).collect()
}

/// Inserts `fixture(n)` in several batches, as the writer would send them.
pub async fn fill(store: &LogStore, n: usize) -> Vec<LogEntry> {
    let data = fixture(n);
    for chunk in data.chunks(700) {
        store.insert_batch(chunk).await.unwrap();
    }
    data
}

pub fn ids(page: &[LogEntry]) -> Vec<String> {
    page.iter().map(|e| e.id.clone()).collect()
}

pub fn filters() -> Vec<(&'static str, LogFilter)> {
    let t = |i: i64| BASE_TS + i * 1000;
    vec![
        ("none", LogFilter::default()),
        (
            "provider",
            LogFilter {
                providers: vec!["openai".into()],
                ..Default::default()
            },
        ),
        (
            "providers",
            LogFilter {
                providers: vec!["openai".into(), "groq".into()],
                ..Default::default()
            },
        ),
        (
            "model",
            LogFilter {
                models: vec!["anthropic/claude-3-5".into()],
                ..Default::default()
            },
        ),
        (
            "status",
            LogFilter {
                status: vec!["error".into()],
                ..Default::default()
            },
        ),
        (
            "statuses",
            LogFilter {
                status: vec!["error".into(), "cancelled".into()],
                ..Default::default()
            },
        ),
        (
            "objects",
            LogFilter {
                objects: vec!["embedding".into()],
                ..Default::default()
            },
        ),
        (
            "vk",
            LogFilter {
                virtual_key_ids: vec!["vk-3".into()],
                ..Default::default()
            },
        ),
        (
            "vks",
            LogFilter {
                virtual_key_ids: vec!["vk-3".into(), "vk-7".into()],
                ..Default::default()
            },
        ),
        (
            "team",
            LogFilter {
                team_ids: vec!["team-1".into()],
                ..Default::default()
            },
        ),
        (
            "customer",
            LogFilter {
                customer_ids: vec!["cust-2".into()],
                ..Default::default()
            },
        ),
        (
            "key",
            LogFilter {
                selected_key_ids: vec!["key-5".into()],
                ..Default::default()
            },
        ),
        (
            "time",
            LogFilter {
                start_time: Some(t(100)),
                end_time: Some(t(400)),
                ..Default::default()
            },
        ),
        (
            "start",
            LogFilter {
                start_time: Some(t(900)),
                ..Default::default()
            },
        ),
        (
            "latency",
            LogFilter {
                min_latency: Some(500.0),
                max_latency: Some(900.0),
                ..Default::default()
            },
        ),
        (
            "min_latency",
            LogFilter {
                min_latency: Some(1600.0),
                ..Default::default()
            },
        ),
        (
            "tokens",
            LogFilter {
                min_tokens: Some(1000),
                max_tokens: Some(1500),
                ..Default::default()
            },
        ),
        (
            "cost",
            LogFilter {
                min_cost: Some(0.001),
                max_cost: Some(0.003),
                ..Default::default()
            },
        ),
        (
            "max_cost",
            LogFilter {
                max_cost: Some(0.0005),
                ..Default::default()
            },
        ),
        (
            "search",
            LogFilter {
                content_search: Some("banana".into()),
                ..Default::default()
            },
        ),
        (
            "search2",
            LogFilter {
                content_search: Some("ZURICH kube".into()),
                ..Default::default()
            },
        ),
        (
            "request_id",
            LogFilter {
                request_id: Some("req-00123".into()),
                start_time: Some(t(900)),
                ..Default::default()
            },
        ),
        (
            "ids",
            LogFilter {
                ids: vec!["req-00001".into(), "req-00500".into(), "nope".into()],
                ..Default::default()
            },
        ),
        (
            "combo",
            LogFilter {
                providers: vec!["openai".into(), "anthropic".into()],
                status: vec!["success".into()],
                start_time: Some(t(50)),
                min_tokens: Some(300),
                ..Default::default()
            },
        ),
        (
            "combo_search",
            LogFilter {
                providers: vec!["bedrock".into()],
                content_search: Some("poem".into()),
                ..Default::default()
            },
        ),
        (
            "nothing",
            LogFilter {
                providers: vec!["nobody".into()],
                ..Default::default()
            },
        ),
        (
            "search_window",
            LogFilter {
                content_search: Some("banana".into()),
                start_time: Some(t(100)),
                end_time: Some(t(300)),
                ..Default::default()
            },
        ),
        (
            "search_window_provider",
            LogFilter {
                providers: vec!["groq".into()],
                content_search: Some("please ref".into()),
                start_time: Some(t(600)),
                ..Default::default()
            },
        ),
    ]
}

pub async fn insert_get_round_trip_and_duplicates(store: LogStore) {
    let data = fixture(30);
    assert_eq!(store.insert_batch(&data).await.unwrap(), 30);
    // A retried batch (and a duplicate inside one) does not duplicate rows.
    let mut again = data[..5].to_vec();
    again.push(data[0].clone());
    assert_eq!(store.insert_batch(&again).await.unwrap(), 0);
    assert_eq!(store.count().await.unwrap(), 30);
    for e in &data {
        let got = store.get(&e.id).await.unwrap().unwrap();
        assert_eq!(&got, e);
    }
    assert!(store.get("missing").await.unwrap().is_none());
    assert!(
        store.has_fulltext_index(),
        "bundled SQLite ships FTS5; Postgres has tsvector"
    );
    // JSON shape: the fields the API promises.
    let v = serde_json::to_value(&data[0]).unwrap();
    for k in [
        "id",
        "timestamp",
        "object",
        "status",
        "latency_ms",
        "cost",
        "metadata",
        "input",
    ] {
        assert!(v.get(k).is_some(), "{k}");
    }
}

pub async fn every_filter_and_sort_matches_the_oracle(store: LogStore) {
    let data = fill(&store, 2000).await;
    let sorts = [
        SortBy::Timestamp,
        SortBy::Latency,
        SortBy::Tokens,
        SortBy::Cost,
    ];
    for (name, f) in filters() {
        let expected_count = data.iter().filter(|e| oracle_matches(e, &f)).count() as u64;
        assert_eq!(
            store.count_matching(&f).await.unwrap(),
            expected_count,
            "count {name}"
        );
        for sort in sorts {
            for order in [Order::Asc, Order::Desc] {
                let want = oracle_sorted(&data, &f, sort, order);
                let page = Page {
                    limit: 40,
                    offset: 0,
                    sort_by: sort,
                    order,
                    cursor: None,
                };
                let got = store.query(&f, &page).await.unwrap();
                assert_eq!(got.total_count, expected_count, "{name} {sort:?} {order:?}");
                let n = want.len().min(40);
                assert_eq!(ids(&got.logs), want[..n], "{name} {sort:?} {order:?}");
                // A deep page too (exercises OFFSET and the plan choice).
                let off = (want.len() / 2) as u32;
                let page = Page {
                    offset: off,
                    ..page
                };
                let got = store.query(&f, &page).await.unwrap();
                let end = (off as usize + 40).min(want.len());
                assert_eq!(
                    ids(&got.logs),
                    want[off as usize..end],
                    "{name} {sort:?} {order:?} offset"
                );
            }
        }
    }
}

pub async fn cursor_paging_walks_every_row_once(store: LogStore) {
    let data = fill(&store, 1500).await;
    for (name, f) in [
        filters()[0].clone(),
        filters()[2].clone(),
        filters()[15].clone(),
        filters()[19].clone(),
    ] {
        for sort in [
            SortBy::Timestamp,
            SortBy::Latency,
            SortBy::Tokens,
            SortBy::Cost,
        ] {
            for order in [Order::Asc, Order::Desc] {
                let want = oracle_sorted(&data, &f, sort, order);
                let mut got = Vec::new();
                let mut page = Page {
                    limit: 97,
                    offset: 0,
                    sort_by: sort,
                    order,
                    cursor: None,
                };
                loop {
                    let p = store.query(&f, &page).await.unwrap();
                    got.extend(ids(&p.logs));
                    match p.next_cursor {
                        Some(c) => page.cursor = Some(c),
                        None => break,
                    }
                    assert!(got.len() <= want.len(), "runaway {name}");
                }
                assert_eq!(got, want, "{name} {sort:?} {order:?}");
            }
        }
    }
    // A cursor from another sort, or garbage, is refused.
    let p = store
        .query(&LogFilter::default(), &Page::default())
        .await
        .unwrap();
    let c = p.next_cursor.unwrap();
    let wrong = Page {
        sort_by: SortBy::Latency,
        cursor: Some(c),
        ..Default::default()
    };
    assert!(matches!(
        store.query(&LogFilter::default(), &wrong).await,
        Err(LogStoreError::InvalidCursor(_))
    ));
    let garbage = Page {
        cursor: Some("x".into()),
        ..Default::default()
    };
    assert!(matches!(
        store.query(&LogFilter::default(), &garbage).await,
        Err(LogStoreError::InvalidCursor(_))
    ));
}

pub async fn limits_are_clamped(store: LogStore) {
    let _data = fill(&store, 1200).await;
    let f = LogFilter::default();
    let p = store
        .query(
            &f,
            &Page {
                limit: 0,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(p.logs.len(), 50);
    let p = store
        .query(
            &f,
            &Page {
                limit: 5000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(p.logs.len(), 1000);
    let p = store
        .query(
            &f,
            &Page {
                offset: 1190,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(p.logs.len(), 10);
    assert_eq!(p.next_cursor, None);
    let p = store
        .query(
            &f,
            &Page {
                offset: 5000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(p.logs.is_empty());
    assert_eq!(p.total_count, 1200);
}

pub fn oracle_stats(data: &[LogEntry], f: &LogFilter) -> (u64, u64, u64, f64, u64, f64) {
    let m: Vec<&LogEntry> = data.iter().filter(|e| oracle_matches(e, f)).collect();
    let n = m.len() as u64;
    let ok = m.iter().filter(|e| e.status == "success").count() as u64;
    let err = m.iter().filter(|e| e.status == "error").count() as u64;
    let lat = m.iter().map(|e| e.latency_ms).sum::<f64>();
    let tok = m.iter().map(|e| e.total_tokens).sum::<u64>();
    let cost = m.iter().filter_map(|e| e.cost).sum::<f64>();
    (
        n,
        ok,
        err,
        if n > 0 { lat / n as f64 } else { 0.0 },
        tok,
        cost,
    )
}

pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

pub async fn stats_match_the_oracle_and_follow_deletes(store: LogStore) {
    let mut data = fill(&store, 1000).await;
    for (name, f) in filters() {
        let s = store.stats(&f).await.unwrap();
        let (n, ok, err, avg, tok, cost) = oracle_stats(&data, &f);
        assert_eq!(
            (
                s.total_requests,
                s.success_count,
                s.error_count,
                s.total_tokens
            ),
            (n, ok, err, tok),
            "{name}"
        );
        assert!(close(s.average_latency_ms, avg), "{name} latency");
        assert!(close(s.total_cost, cost), "{name} cost");
        let rate = if n > 0 {
            ok as f64 * 100.0 / n as f64
        } else {
            0.0
        };
        assert!(close(s.success_rate, rate), "{name} rate");
        let search = store.query_with_stats(&f, &Page::default()).await.unwrap();
        assert_eq!(search.stats, s, "{name}");
        assert_eq!(search.page.total_count, n, "{name}");
        assert!(search.has_logs);
    }
    // The O(1) totals stay right after a filtered delete.
    let f = LogFilter {
        providers: vec!["groq".into()],
        ..Default::default()
    };
    let before = data.len();
    data.retain(|e| !oracle_matches(e, &f));
    assert_eq!(
        store.delete(&f, false).await.unwrap(),
        (before - data.len()) as u64
    );
    let s = store.stats(&LogFilter::default()).await.unwrap();
    let (n, ok, err, avg, tok, cost) = oracle_stats(&data, &LogFilter::default());
    assert_eq!(
        (
            s.total_requests,
            s.success_count,
            s.error_count,
            s.total_tokens
        ),
        (n, ok, err, tok)
    );
    assert!(close(s.average_latency_ms, avg) && close(s.total_cost, cost));
    assert_eq!(
        s.prompt_tokens,
        data.iter().map(|e| e.prompt_tokens).sum::<u64>()
    );
}

pub async fn delete_refuses_an_empty_filter_unless_all(store: LogStore) {
    let data = fill(&store, 300).await;
    assert!(matches!(
        store.delete(&LogFilter::default(), false).await,
        Err(LogStoreError::EmptyFilter)
    ));
    // Blank values are no filter either.
    let blank = LogFilter {
        content_search: Some("  ".into()),
        request_id: Some(String::new()),
        ..Default::default()
    };
    assert!(matches!(
        store.delete(&blank, false).await,
        Err(LogStoreError::EmptyFilter)
    ));
    assert_eq!(store.count().await.unwrap(), 300);

    // A filtered delete removes rows, content and the search index entries.
    let f = LogFilter {
        content_search: Some("banana".into()),
        ..Default::default()
    };
    let hits = data.iter().filter(|e| oracle_matches(e, &f)).count() as u64;
    assert!(hits > 0);
    assert_eq!(store.delete(&f, false).await.unwrap(), hits);
    assert_eq!(store.count_matching(&f).await.unwrap(), 0);
    assert_eq!(store.count().await.unwrap(), 300 - hits);

    assert_eq!(
        store.delete(&LogFilter::default(), true).await.unwrap(),
        300 - hits
    );
    assert_eq!(store.count().await.unwrap(), 0);
    let s = store
        .query_with_stats(&LogFilter::default(), &Page::default())
        .await
        .unwrap();
    assert!(!s.has_logs && s.page.logs.is_empty());
    // The store is usable after a wipe, and search starts clean.
    store.insert_batch(&data[..10]).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 10);
    let f = LogFilter {
        content_search: Some("please".into()),
        ..Default::default()
    };
    let want = data[..10].iter().filter(|e| e.input.is_some()).count() as u64;
    assert_eq!(store.count_matching(&f).await.unwrap(), want);
}

pub async fn purge_and_retention_delete_old_logs(store: LogStore) {
    let now = causeway_logstore::now_ms();
    let day = 86_400_000;
    let mut data = fixture(12_000);
    for (i, e) in data.iter_mut().enumerate() {
        // 10,000 rows older than 3 days (more than one delete chunk), the rest recent.
        e.timestamp = if i < 10_000 {
            now - 3 * day - i as i64
        } else {
            now - i as i64
        };
    }
    store.insert_batch(&data).await.unwrap();
    assert_eq!(store.purge_older_than(now - 5 * day).await.unwrap(), 0);
    let store = Arc::new(store);
    let handle = spawn_retention(store.clone(), 2);
    // The first purge runs at start; wait for its effect (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.count().await.unwrap() != 2_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "retention did not purge"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    handle.abort();
    let left = store
        .query(
            &LogFilter::default(),
            &Page {
                limit: 1000,
                order: Order::Asc,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(left.logs.iter().all(|e| e.timestamp > now - 2 * day));
    assert_eq!(
        store
            .stats(&LogFilter::default())
            .await
            .unwrap()
            .total_requests,
        2_000
    );
    // days = 0 keeps everything.
    spawn_retention(store.clone(), 0).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 2_000);
}

pub async fn content_search_semantics(store: LogStore) {
    let mk = |id: &str, input: Option<&str>, output: Option<&str>| LogEntry {
        id: id.into(),
        timestamp: BASE_TS,
        object: "chat_completion".into(),
        status: "success".into(),
        input: input.map(Into::into),
        output: output.map(Into::into),
        ..Default::default()
    };
    store
        .insert_batch(&[
            mk(
                "a",
                Some("What's the Weather in Zürich?"),
                Some("Sunny, 21°C"),
            ),
            mk("b", Some("write a poem about gpt-4o"), None),
            mk("c", None, Some("error: \"quota\" OR limits")),
            mk("d", None, None),
        ])
        .await
        .unwrap();
    let search = |q: &str| {
        let store = store.clone();
        let q = q.to_owned();
        async move {
            let f = LogFilter {
                content_search: Some(q),
                ..Default::default()
            };
            let mut v = ids(&store.query(&f, &Page::default()).await.unwrap().logs);
            v.sort();
            v
        }
    };
    assert_eq!(search("weather").await, ["a"]);
    assert_eq!(search("WEATH").await, ["a"], "prefix, case-insensitive");
    assert_eq!(search("zurich").await, ["a"], "accent-insensitive");
    assert_eq!(
        search("sunny zürich").await,
        ["a"],
        "words across input and output"
    );
    assert_eq!(
        search("sunny poem").await,
        Vec::<String>::new(),
        "all words required"
    );
    assert_eq!(search("gpt-4o").await, ["b"], "punctuated word as a phrase");
    assert_eq!(
        search("\"quota\" OR").await,
        ["c"],
        "syntax characters are inert"
    );
    assert_eq!(search("NEAR( *").await, Vec::<String>::new());
    assert_eq!(search("-- !!").await, Vec::<String>::new());
    assert_eq!(
        search("e").await,
        ["c"],
        "prefix of a word, not a substring"
    );
}

pub async fn concurrent_reads_during_writes(store: LogStore) {
    let store = Arc::new(store);
    let data = fixture(3000);
    let writer = {
        let store = store.clone();
        let data = data.clone();
        tokio::spawn(async move {
            for chunk in data.chunks(100) {
                store.insert_batch(chunk).await.unwrap();
            }
        })
    };
    let mut seen = HashSet::new();
    while !writer.is_finished() {
        let p = store
            .query(&LogFilter::default(), &Page::default())
            .await
            .unwrap();
        seen.insert(p.total_count);
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    assert_eq!(store.count().await.unwrap(), 3000);
}

/// Calls `$m!(check, ...)` with every shared check, so each backend's test file runs
/// the same list and a new check cannot be forgotten on one of them.
macro_rules! for_each_check {
    ($m:ident) => {
        $m!(
            insert_get_round_trip_and_duplicates,
            every_filter_and_sort_matches_the_oracle,
            cursor_paging_walks_every_row_once,
            limits_are_clamped,
            stats_match_the_oracle_and_follow_deletes,
            delete_refuses_an_empty_filter_unless_all,
            purge_and_retention_delete_old_logs,
            content_search_semantics,
            concurrent_reads_during_writes
        );
    };
}
