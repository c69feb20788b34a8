//! The log store: one row per gateway request, written in batches off the hot path
//! ([`LogWriter`]) and read by the `/api/logs` handlers ([`LogStore::query`],
//! [`LogStore::stats`], ...).
//!
//! Layout and why (details in `schema.rs`):
//! - `logs` holds the typed columns every filter and sort reads, each filter with a
//!   `(column, ts)` index so "newest first within X" is an index walk, not a sort;
//! - content (`input`/`output`) lives in `log_content`, so scans of `logs` never drag
//!   kilobytes of prompt text through the page cache, and is indexed by an FTS5 table;
//! - `log_totals` keeps running sums maintained in the same transactions as inserts and
//!   deletes, so the unfiltered count and stats (the dashboard's default view) are O(1).
//!
//! Two backends behind one API ([`Backend`]): SQLite (one file, one gateway) and
//! Postgres (several gateway replicas sharing one store). SQL is written once with `$N`
//! placeholders and portable types; the backend-only pieces (SQLite's FTS5 and
//! `INDEXED BY` plan hints, Postgres' `tsvector` search, `TRUNCATE` and `SKIP LOCKED`)
//! are chosen where they are used.

/// The running-totals table and its seed from existing rows: the same DDL on both
/// backends, the tail of each backend's first migration.
macro_rules! log_totals_ddl {
    () => {
        r#"CREATE TABLE IF NOT EXISTS log_totals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n BIGINT NOT NULL,
    success BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    latency_sum DOUBLE PRECISION NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    total_tokens BIGINT NOT NULL,
    cost_sum DOUBLE PRECISION NOT NULL
);
INSERT INTO log_totals (id, n, success, errors, latency_sum, prompt_tokens, completion_tokens, total_tokens, cost_sum)
SELECT 1, COUNT(*),
       COALESCE(SUM(CASE WHEN status = 'success' THEN 1 ELSE 0 END), 0),
       COALESCE(SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END), 0),
       COALESCE(SUM(latency_ms), 0), COALESCE(SUM(prompt_tokens), 0),
       COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(total_tokens), 0),
       COALESCE(SUM(cost), 0)
FROM logs
WHERE NOT EXISTS (SELECT 1 FROM log_totals);
"#
    };
}

mod postgres;
mod query;
mod retention;
mod schema;
mod store;
mod writer;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use postgres::PgPoolConfig;
pub use retention::spawn_retention;
/// Re-exported so callers can build Postgres connection options without depending on
/// sqlx themselves.
pub use sqlx::postgres::{PgConnectOptions, PgSslMode};
pub use store::{Backend, LogStore};
pub use writer::{LogWriter, WriterConfig, WriterStats};

/// One gateway request as logged; also the JSON shape of one log in `/api/logs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogEntry {
    pub id: String,
    /// Unix milliseconds.
    pub timestamp: i64,
    /// Request type: `chat_completion`, `chat_completion_stream`, `text_completion`,
    /// `embedding`, `list_models`.
    pub object: String,
    /// HTTP path the request came in on.
    pub route: String,
    pub provider: Option<String>,
    /// As requested (`provider/model`).
    pub model: Option<String>,
    pub resolved_provider: Option<String>,
    pub resolved_model: Option<String>,
    pub key_id: Option<String>,
    pub virtual_key_id: Option<String>,
    pub team_id: Option<String>,
    pub customer_id: Option<String>,
    /// `success`, `error` or `cancelled`.
    pub status: String,
    pub status_code: u16,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub total_tokens: u64,
    /// `None` = unpriced.
    pub cost: Option<f64>,
    pub fallback_index: u32,
    pub attempts: u32,
    pub stream: bool,
    /// Content, already truncated by the caller; `None` when content logging is off.
    pub input: Option<String>,
    pub output: Option<String>,
    /// Free-form dimensions, e.g. from `x-bf-dim-*` headers.
    pub metadata: Map<String, Value>,
}

/// What to select. Empty lists and `None` mean "no constraint"; values within one list
/// are alternatives (OR), different fields must all hold (AND).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogFilter {
    pub providers: Vec<String>,
    pub models: Vec<String>,
    pub status: Vec<String>,
    pub objects: Vec<String>,
    pub virtual_key_ids: Vec<String>,
    pub team_ids: Vec<String>,
    pub customer_ids: Vec<String>,
    pub selected_key_ids: Vec<String>,
    /// Unix ms, inclusive.
    pub start_time: Option<i64>,
    /// Unix ms, inclusive.
    pub end_time: Option<i64>,
    pub min_latency: Option<f64>,
    pub max_latency: Option<f64>,
    /// Bounds on `total_tokens`.
    pub min_tokens: Option<u64>,
    pub max_tokens: Option<u64>,
    /// Bounds on `cost`; unpriced rows never match a cost bound.
    pub min_cost: Option<f64>,
    pub max_cost: Option<f64>,
    /// Words matched against input and output: every word must appear, each as a word
    /// prefix, case- and accent-insensitive (FTS5 `unicode61`; Postgres mirrors it, see
    /// `query::search_document` for the small differences).
    pub content_search: Option<String>,
    /// Exact log id. Like Bifrost, it ignores the time range so an id is never hidden
    /// by the selected window.
    pub request_id: Option<String>,
    /// Exact log ids (Bifrost's `DELETE /api/logs {"ids": [...]}`).
    pub ids: Vec<String>,
}

impl LogFilter {
    /// True when the filter selects every row.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
            && self.models.is_empty()
            && self.status.is_empty()
            && self.objects.is_empty()
            && self.virtual_key_ids.is_empty()
            && self.team_ids.is_empty()
            && self.customer_ids.is_empty()
            && self.selected_key_ids.is_empty()
            && self.start_time.is_none()
            && self.end_time.is_none()
            && self.min_latency.is_none()
            && self.max_latency.is_none()
            && self.min_tokens.is_none()
            && self.max_tokens.is_none()
            && self.min_cost.is_none()
            && self.max_cost.is_none()
            && self
                .content_search
                .as_deref()
                .is_none_or(|s| s.trim().is_empty())
            && self.request_id.as_deref().is_none_or(str::is_empty)
            && self.ids.is_empty()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortBy {
    #[default]
    Timestamp,
    Latency,
    Tokens,
    Cost,
}

impl SortBy {
    pub fn as_str(self) -> &'static str {
        match self {
            SortBy::Timestamp => "timestamp",
            SortBy::Latency => "latency",
            SortBy::Tokens => "tokens",
            SortBy::Cost => "cost",
        }
    }

    pub fn parse(s: &str) -> Option<SortBy> {
        match s {
            "timestamp" => Some(SortBy::Timestamp),
            "latency" => Some(SortBy::Latency),
            "tokens" => Some(SortBy::Tokens),
            "cost" => Some(SortBy::Cost),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Asc,
    #[default]
    Desc,
}

impl Order {
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Asc => "asc",
            Order::Desc => "desc",
        }
    }

    pub fn parse(s: &str) -> Option<Order> {
        match s {
            "asc" => Some(Order::Asc),
            "desc" => Some(Order::Desc),
            _ => None,
        }
    }
}

/// Default and maximum page sizes (Bifrost's).
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 1000;

/// Which page. `offset` paging costs O(offset) index steps (never row reads: the page is
/// chosen on the index, then only its rows are fetched); `cursor` (the `next_cursor` of
/// the previous page) makes the next page O(limit) whatever the depth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Page {
    pub limit: u32,
    pub offset: u32,
    pub sort_by: SortBy,
    pub order: Order,
    /// Keyset continuation; when set, `offset` is ignored.
    pub cursor: Option<String>,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            limit: DEFAULT_LIMIT,
            offset: 0,
            sort_by: SortBy::Timestamp,
            order: Order::Desc,
            cursor: None,
        }
    }
}

impl Page {
    /// The limit actually applied: 0 means the default, and at most [`MAX_LIMIT`].
    pub fn effective_limit(&self) -> u32 {
        match self.limit {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        }
    }
}

/// One page of logs and the number of rows the filter matches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogPage {
    pub logs: Vec<LogEntry>,
    pub total_count: u64,
    /// Pass as `Page::cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Aggregates over the rows a filter matches. Serialized with Bifrost's field names
/// (`average_latency` is in milliseconds, as in Bifrost).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogStats {
    pub total_requests: u64,
    pub success_count: u64,
    pub error_count: u64,
    /// Percent (0..=100) of `total_requests` that succeeded.
    pub success_rate: f64,
    #[serde(rename = "average_latency")]
    pub average_latency_ms: f64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub total_cost: f64,
}

/// A page together with the stats of the whole filter: what `GET /api/logs` returns,
/// computed with one aggregate pass instead of a separate count and stats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogSearch {
    pub page: LogPage,
    pub stats: LogStats,
    /// Whether the store holds any log at all (Bifrost's `has_logs`, for the empty state).
    pub has_logs: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error("log store database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("refusing to delete every log: pass a filter, or all=true")]
    EmptyFilter,
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
    #[error("log store holds invalid data in {what}: {err}")]
    Corrupt { what: String, err: String },
    #[error("log store: {0}")]
    Io(#[from] std::io::Error),
    /// The database could not be reached or refused the login. `target` is
    /// `user@host:port/db`: never the password.
    #[error("cannot connect to the log store database {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("log store configuration: {0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, LogStoreError>;

/// Current time in unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
