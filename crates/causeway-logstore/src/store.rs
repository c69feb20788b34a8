//! `LogStore`: batched inserts, filtered queries, stats and deletes, on SQLite
//! (`logs.db`) or Postgres. Both run the same SQL (`query.rs`); what differs is spelled
//! out where it happens: SQLite's FTS5 table and `INDEXED BY` hints, Postgres' `tsvector`
//! column, `TRUNCATE` and `SKIP LOCKED`.
//!
//! Query shape, and why:
//! - a page is chosen on an index first (`SELECT seq ... ORDER BY ... LIMIT/OFFSET`) and
//!   only its rows are then read with their content, so a deep offset costs index
//!   steps, never row or content reads;
//! - the unfiltered count and stats come from `log_totals` (O(1)); filtered ones from
//!   one aggregate pass over the matching index range. Inserts and deletes adjust the
//!   totals with `UPDATE ... SET n = n + $1` in their own transaction, so concurrent
//!   writers (several gateway replicas on one Postgres) never lose a count;
//! - with the match count known, the SQLite page query picks its plan: walk the sort
//!   index and test rows (cheap when matches are dense) or gather the matches through
//!   the filter's index and sort them (cheap when they are sparse). SQLite's planner has
//!   no statistics to make that call itself, so it gets an `INDEXED BY` hint; Postgres'
//!   planner has them and gets no hint.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde_json::{Map, Value};
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Row, Type};

use crate::postgres::PgPoolConfig;
use crate::query::{self, Bind, ContentIndex, Cursor, Sql};
use crate::{
    LogEntry, LogFilter, LogPage, LogSearch, LogStats, LogStoreError, Page, Result, SortBy,
};

/// Rows per multi-row `INSERT`: 27 binds each stays far below SQLite's 32,766-variable
/// limit (and Postgres' 65,535).
const INSERT_ROWS_PER_STATEMENT: usize = 500;
/// Largest time window (in estimated rows) read in order while probing content-search
/// matches, rather than looking each match up: reading 100,000 consecutive rows costs
/// about what 15,000 scattered lookups do.
const PROBE_WINDOW_ROWS: i128 = 100_000;
/// Rows per delete transaction, so retention never holds the write lock for long and
/// the writer keeps flushing while a large purge runs.
const DELETE_CHUNK: i64 = 5_000;

const LOG_COLUMNS: &str = "id, ts, object, route, provider, model, resolved_provider, resolved_model, key_id, virtual_key_id, team_id, customer_id, status, status_code, error_type, error_message, latency_ms, ttft_ms, prompt_tokens, completion_tokens, cached_tokens, total_tokens, cost, fallback_index, attempts, stream, metadata";
const LOG_COLUMN_COUNT: usize = 27;

/// The database behind a [`LogStore`]. Both run the SQL in `query.rs`; each has its
/// own DDL (`schema.rs`, `postgres.rs`) and content index (FTS5, `tsvector` + GIN).
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the backend's pool: the body is compiled once per
/// backend, so one text serves both while each gets its own concrete types.
macro_rules! on_pool {
    ($backend:expr, $pool:ident => $body:expr) => {
        match $backend {
            Backend::Sqlite($pool) => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}

#[derive(Debug, Clone)]
pub struct LogStore {
    backend: Backend,
    content: ContentIndex,
}

/// Per-batch sums that keep `log_totals` in step with inserts and deletes.
#[derive(Debug, Default, Clone, Copy)]
struct Delta {
    n: i64,
    success: i64,
    errors: i64,
    latency: f64,
    prompt: i64,
    completion: i64,
    total: i64,
    cost: f64,
}

impl Delta {
    fn add(
        &mut self,
        status: &str,
        latency: f64,
        prompt: i64,
        completion: i64,
        total: i64,
        cost: Option<f64>,
    ) {
        self.n += 1;
        match status {
            "success" => self.success += 1,
            "error" => self.errors += 1,
            _ => {}
        }
        self.latency += latency;
        self.prompt += prompt;
        self.completion += completion;
        self.total += total;
        self.cost += cost.unwrap_or(0.0);
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

type Args<DB> = <DB as Database>::Arguments;

/// `sql` as a query with its binds, for any backend.
fn prepared<DB>(sql: Sql) -> Query<'static, DB, Args<DB>>
where
    DB: Database,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> f64: Encode<'t, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> Option<String>: Encode<'t, DB> + Type<DB>,
    for<'t> Option<f64>: Encode<'t, DB> + Type<DB>,
{
    let mut q = sqlx::query(AssertSqlSafe(sql.text));
    for b in sql.binds {
        q = match b {
            Bind::Text(s) => q.bind(s),
            Bind::OptText(s) => q.bind(s),
            Bind::Int(i) => q.bind(i),
            Bind::Real(f) => q.bind(f),
            Bind::OptReal(f) => q.bind(f),
            Bind::Bool(b) => q.bind(b),
        };
    }
    q
}

fn stats_from(d: &Delta) -> LogStats {
    let (success_rate, average_latency_ms) = if d.n > 0 {
        (
            d.success as f64 * 100.0 / d.n as f64,
            d.latency / d.n as f64,
        )
    } else {
        (0.0, 0.0)
    };
    LogStats {
        total_requests: to_u64(d.n),
        success_count: to_u64(d.success),
        error_count: to_u64(d.errors),
        success_rate,
        average_latency_ms,
        prompt_tokens: to_u64(d.prompt),
        completion_tokens: to_u64(d.completion),
        total_tokens: to_u64(d.total),
        total_cost: d.cost,
    }
}

const STATS_SELECT: &str = "SELECT COUNT(*) AS n, \
    CAST(SUM(CASE WHEN status = 'success' THEN 1 ELSE 0 END) AS BIGINT) AS success, \
    CAST(SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END) AS BIGINT) AS errors, \
    CAST(SUM(latency_ms) AS DOUBLE PRECISION) AS latency, \
    CAST(SUM(prompt_tokens) AS BIGINT) AS prompt, \
    CAST(SUM(completion_tokens) AS BIGINT) AS completion, \
    CAST(SUM(total_tokens) AS BIGINT) AS total, \
    CAST(SUM(cost) AS DOUBLE PRECISION) AS cost FROM logs";

fn stats_row<R: Row>(row: &R) -> Result<LogStats>
where
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
{
    let get_i =
        |name: &str| -> Result<i64> { Ok(row.try_get::<Option<i64>, _>(name)?.unwrap_or(0)) };
    let get_f =
        |name: &str| -> Result<f64> { Ok(row.try_get::<Option<f64>, _>(name)?.unwrap_or(0.0)) };
    Ok(stats_from(&Delta {
        n: get_i("n")?,
        success: get_i("success")?,
        errors: get_i("errors")?,
        latency: get_f("latency")?,
        prompt: get_i("prompt")?,
        completion: get_i("completion")?,
        total: get_i("total")?,
        cost: get_f("cost")?,
    }))
}

/// Decodes a `logs` row (plus optional `input`/`output`) into `(seq, entry)`.
fn entry_row<R: Row>(row: &R) -> Result<(i64, LogEntry)>
where
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let seq: i64 = row.try_get("seq")?;
    let id: String = row.try_get("id")?;
    let metadata = match row.try_get::<Option<String>, _>("metadata")? {
        Some(s) if !s.is_empty() => {
            serde_json::from_str::<Map<String, Value>>(&s).map_err(|e| LogStoreError::Corrupt {
                what: format!("metadata of log {id}"),
                err: e.to_string(),
            })?
        }
        _ => Map::new(),
    };
    let entry = LogEntry {
        timestamp: row.try_get("ts")?,
        object: row.try_get("object")?,
        route: row.try_get("route")?,
        provider: row.try_get("provider")?,
        model: row.try_get("model")?,
        resolved_provider: row.try_get("resolved_provider")?,
        resolved_model: row.try_get("resolved_model")?,
        key_id: row.try_get("key_id")?,
        virtual_key_id: row.try_get("virtual_key_id")?,
        team_id: row.try_get("team_id")?,
        customer_id: row.try_get("customer_id")?,
        status: row.try_get("status")?,
        status_code: u16::try_from(row.try_get::<i64, _>("status_code")?).unwrap_or(0),
        error_type: row.try_get("error_type")?,
        error_message: row.try_get("error_message")?,
        latency_ms: row.try_get("latency_ms")?,
        ttft_ms: row.try_get("ttft_ms")?,
        prompt_tokens: to_u64(row.try_get("prompt_tokens")?),
        completion_tokens: to_u64(row.try_get("completion_tokens")?),
        cached_tokens: to_u64(row.try_get("cached_tokens")?),
        total_tokens: to_u64(row.try_get("total_tokens")?),
        cost: row.try_get("cost")?,
        fallback_index: u32::try_from(row.try_get::<i64, _>("fallback_index")?).unwrap_or(0),
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
        stream: row.try_get("stream")?,
        input: row.try_get("input")?,
        output: row.try_get("output")?,
        metadata,
        id,
    };
    Ok((seq, entry))
}

fn push_entry_values(sql: &mut Sql, e: &LogEntry) {
    let finite = |v: Option<f64>| v.filter(|f| f.is_finite());
    let metadata = if e.metadata.is_empty() {
        None
    } else {
        serde_json::to_string(&e.metadata).ok()
    };
    let values = [
        Bind::Text(e.id.clone()),
        Bind::Int(e.timestamp),
        Bind::Text(e.object.clone()),
        Bind::Text(e.route.clone()),
        Bind::OptText(e.provider.clone()),
        Bind::OptText(e.model.clone()),
        Bind::OptText(e.resolved_provider.clone()),
        Bind::OptText(e.resolved_model.clone()),
        Bind::OptText(e.key_id.clone()),
        Bind::OptText(e.virtual_key_id.clone()),
        Bind::OptText(e.team_id.clone()),
        Bind::OptText(e.customer_id.clone()),
        Bind::Text(e.status.clone()),
        Bind::Int(i64::from(e.status_code)),
        Bind::OptText(e.error_type.clone()),
        Bind::OptText(e.error_message.clone()),
        Bind::Real(finite(Some(e.latency_ms)).unwrap_or(0.0)),
        Bind::OptReal(finite(e.ttft_ms)),
        Bind::Int(to_i64(e.prompt_tokens)),
        Bind::Int(to_i64(e.completion_tokens)),
        Bind::Int(to_i64(e.cached_tokens)),
        Bind::Int(to_i64(e.total_tokens)),
        Bind::OptReal(finite(e.cost)),
        Bind::Int(i64::from(e.fallback_index)),
        Bind::Int(i64::from(e.attempts)),
        Bind::Bool(e.stream),
        Bind::OptText(metadata),
    ];
    debug_assert_eq!(values.len(), LOG_COLUMN_COUNT);
    sql.push("(");
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(v);
    }
    sql.push(")");
}

/// Is walking the sort index (testing each row against the filter) cheaper than
/// collecting every match through the filter's own index and sorting them?
fn prefer_sort_index(filter: &LogFilter, page: &Page, total_rows: u64, matched: u64) -> bool {
    if filter.is_empty() || matched == 0 {
        return false;
    }
    if page.sort_by == SortBy::Timestamp && query::has_ordered_equality(filter) {
        return false;
    }
    let need = if page.cursor.is_some() {
        u64::from(page.effective_limit())
    } else {
        u64::from(page.offset) + u64::from(page.effective_limit())
    };
    // Rows the walk reads before it has `need` matches, if matches are spread evenly.
    let walk = need.saturating_mul(total_rows) / matched;
    walk < matched
}

impl LogStore {
    /// Opens (creating if needed) `logs.db` in WAL mode and applies migrations.
    pub async fn open_sqlite(path: &Path) -> Result<LogStore> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(dir).await?;
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode: a power loss may lose the last commits, never corrupt;
            // logs are not worth an fsync per batch.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            // Sorting and IN-subquery materialization stay in memory.
            .pragma("temp_store", "memory")
            // 16 MiB page cache per connection (grows only when used).
            .pragma("cache_size", "-16384")
            // Keeps the WAL from growing without bound after a burst of writes.
            .pragma("journal_size_limit", "67108864");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        let fts = crate::schema::apply(&pool).await?;
        Ok(LogStore {
            backend: Backend::Sqlite(pool),
            content: if fts {
                ContentIndex::Fts5
            } else {
                ContentIndex::Like
            },
        })
    }

    /// Connects to Postgres (`postgres://user:password@host:5432/db?sslmode=...`) with
    /// the default [`PgPoolConfig`] (8 connections, 10 s connect timeout) and applies
    /// migrations. Tables go in the connection's default schema (`search_path`).
    pub async fn open_postgres(url: &str) -> Result<LogStore> {
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            // The parser's messages do not echo the URL; neither do we (it may hold a
            // password).
            LogStoreError::Config(format!("invalid Postgres URL: {e}"))
        })?;
        LogStore::open_postgres_with(options, PgPoolConfig::default()).await
    }

    /// [`LogStore::open_postgres`] with connection options built by the caller (host,
    /// credentials, TLS, or `.options([("search_path", "my_schema")])` to keep the
    /// tables in a schema of their own) and explicit pool settings.
    pub async fn open_postgres_with(
        options: PgConnectOptions,
        pool: PgPoolConfig,
    ) -> Result<LogStore> {
        let target = crate::postgres::describe(&options);
        let pool = crate::postgres::connect(options, &pool).await?;
        if let Err(e) = crate::postgres::apply(&pool).await {
            pool.close().await;
            return Err(LogStoreError::Config(format!(
                "applying the log store schema on {target}: {e}"
            )));
        }
        Ok(LogStore {
            backend: Backend::Postgres(pool),
            content: ContentIndex::TsVector,
        })
    }

    /// A statement builder with this backend's placeholder style.
    fn sql(&self) -> Sql {
        Sql {
            positional: self.is_sqlite(),
            nul_free: !self.is_sqlite(),
            ..Sql::default()
        }
    }

    fn is_sqlite(&self) -> bool {
        matches!(self.backend, Backend::Sqlite(_))
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Whether content search uses a full-text index (FTS5 or Postgres `tsvector`);
    /// false: the LIKE scan fallback of a SQLite built without FTS5.
    pub fn has_fulltext_index(&self) -> bool {
        self.content != ContentIndex::Like
    }

    pub async fn close(&self) {
        on_pool!(&self.backend, pool => pool.close().await)
    }

    pub async fn ping(&self) -> Result<()> {
        on_pool!(&self.backend, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Inserts `entries` in one transaction (multi-row statements). An id that already
    /// exists is skipped (`ON CONFLICT DO NOTHING`; on Postgres also against a replica
    /// inserting the same id concurrently), so a retried batch does not duplicate.
    /// Returns rows inserted.
    pub async fn insert_batch(&self, entries: &[LogEntry]) -> Result<u64> {
        self.insert_rows(entries).await.map(|(n, _)| n)
    }

    /// Like [`LogStore::insert_batch`], but an entry whose id is already taken (a caller
    /// reused an `x-request-id`) is stored under `<id>~2`, `<id>~3`, ... instead of being
    /// skipped: the writer's path, where every request must leave a log. Returns rows
    /// inserted.
    pub async fn insert_batch_keeping_duplicates(&self, entries: &[LogEntry]) -> Result<u64> {
        let (mut total, mut skipped) = self.insert_rows(entries).await?;
        let mut pending: Vec<(String, LogEntry)> = skipped
            .iter()
            .filter_map(|&i| entries.get(i))
            .map(|e| (e.id.clone(), e.clone()))
            .collect();
        let mut suffix = 2;
        while !pending.is_empty() && suffix <= 10 {
            let batch: Vec<LogEntry> = pending
                .iter()
                .map(|(orig, e)| LogEntry {
                    id: format!("{orig}~{suffix}"),
                    ..e.clone()
                })
                .collect();
            let (n, again) = self.insert_rows(&batch).await?;
            total += n;
            skipped = again;
            pending = skipped
                .iter()
                .filter_map(|&i| pending.get(i).cloned())
                .collect();
            suffix += 1;
        }
        Ok(total)
    }

    /// Inserts what it can; returns rows inserted and the indexes (into `entries`) of the
    /// entries skipped because their id was taken.
    async fn insert_rows(&self, entries: &[LogEntry]) -> Result<(u64, Vec<usize>)> {
        if entries.is_empty() {
            return Ok((0, Vec::new()));
        }
        let mut skipped = Vec::new();
        let inserted = on_pool!(&self.backend, pool => {
            let mut tx = pool.begin().await?;
            let mut delta = Delta::default();
            // (seq, entry) of the inserted rows that carry content.
            let mut content: Vec<(i64, &LogEntry)> = Vec::new();
            for (chunk_no, chunk) in entries.chunks(INSERT_ROWS_PER_STATEMENT).enumerate() {
                let base = chunk_no * INSERT_ROWS_PER_STATEMENT;
                let mut sql = self.sql();
                sql.push("INSERT INTO logs (")
                    .push(LOG_COLUMNS)
                    .push(") VALUES ");
                for (i, e) in chunk.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    push_entry_values(&mut sql, e);
                }
                sql.push(" ON CONFLICT (id) DO NOTHING RETURNING seq, id");
                let rows = prepared(sql).fetch_all(&mut *tx).await?;
                let mut seq_of: HashMap<String, i64> = HashMap::with_capacity(rows.len());
                for row in &rows {
                    seq_of.insert(row.try_get("id")?, row.try_get("seq")?);
                }
                // RETURNING order is unspecified, so match by id; `remove` hands a seq to
                // the first entry with that id only (a later one is reported as skipped).
                for (i, e) in chunk.iter().enumerate() {
                    let Some(seq) = seq_of.remove(&e.id) else {
                        skipped.push(base + i);
                        continue;
                    };
                    delta.add(
                        &e.status,
                        if e.latency_ms.is_finite() {
                            e.latency_ms
                        } else {
                            0.0
                        },
                        to_i64(e.prompt_tokens),
                        to_i64(e.completion_tokens),
                        to_i64(e.total_tokens),
                        e.cost.filter(|c| c.is_finite()),
                    );
                    if e.input.is_some() || e.output.is_some() {
                        content.push((seq, e));
                    }
                }
            }
            for chunk in content.chunks(INSERT_ROWS_PER_STATEMENT) {
                let mut sql = self.sql();
                sql.push("INSERT INTO log_content (seq, input, output) VALUES ");
                push_content_values(&mut sql, chunk);
                prepared(sql).execute(&mut *tx).await?;
                match self.content {
                    ContentIndex::Fts5 | ContentIndex::Fts5Probe => {
                        let mut sql = self.sql();
                        sql.push("INSERT INTO logs_fts (rowid, input, output) VALUES ");
                        push_content_values(&mut sql, chunk);
                        prepared(sql).execute(&mut *tx).await?;
                    }
                    ContentIndex::TsVector => {
                        let mut sql = self.sql();
                        sql.push("INSERT INTO log_search (seq, search) VALUES ");
                        push_search_values(&mut sql, chunk);
                        prepared(sql).execute(&mut *tx).await?;
                    }
                    ContentIndex::Like => {}
                }
            }
            if let Some(sql) = self.delta_sql(&delta, 1) {
                prepared(sql).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            delta.n
        });
        Ok((to_u64(inserted), skipped))
    }

    /// Number of logs stored (O(1), from the running totals).
    pub async fn count(&self) -> Result<u64> {
        Ok(self.totals().await?.total_requests)
    }

    /// The running totals: stats of every row, O(1).
    async fn totals(&self) -> Result<LogStats> {
        on_pool!(&self.backend, pool => {
            let row = sqlx::query(TOTALS_SELECT).fetch_optional(pool).await?;
            match row {
                Some(row) => stats_row(&row),
                None => Ok(LogStats::default()),
            }
        })
    }

    /// Number of logs `filter` matches.
    pub async fn count_matching(&self, filter: &LogFilter) -> Result<u64> {
        if filter.is_empty() {
            return self.count().await;
        }
        let content = self.content_plan(filter).await?;
        let mut sql = self.sql();
        sql.push("SELECT COUNT(*) FROM logs");
        query::push_where(&mut sql, filter, content, "");
        let n: i64 = on_pool!(&self.backend, pool => {
            prepared(sql).fetch_one(pool).await?.try_get(0)?
        });
        Ok(to_u64(n))
    }

    /// Aggregates over the logs `filter` matches.
    pub async fn stats(&self, filter: &LogFilter) -> Result<LogStats> {
        if filter.is_empty() {
            return self.totals().await;
        }
        let content = self.content_plan(filter).await?;
        let mut sql = self.sql();
        sql.push(STATS_SELECT);
        query::push_where(&mut sql, filter, content, "");
        on_pool!(&self.backend, pool => {
            let row = prepared(sql).fetch_one(pool).await?;
            stats_row(&row)
        })
    }

    /// One page of logs matching `filter`, with the total match count.
    pub async fn query(&self, filter: &LogFilter, page: &Page) -> Result<LogPage> {
        let matched = self.count_matching(filter).await?;
        self.page_with_count(filter, page, matched).await
    }

    /// A page plus the stats of the whole filter (what `GET /api/logs` shows): the
    /// stats pass also yields the count, so the filter is aggregated once.
    pub async fn query_with_stats(&self, filter: &LogFilter, page: &Page) -> Result<LogSearch> {
        let stats = self.stats(filter).await?;
        let has_logs = if filter.is_empty() {
            stats.total_requests > 0
        } else {
            self.count().await? > 0
        };
        let page = self
            .page_with_count(filter, page, stats.total_requests)
            .await?;
        Ok(LogSearch {
            page,
            stats,
            has_logs,
        })
    }

    async fn page_with_count(
        &self,
        filter: &LogFilter,
        page: &Page,
        matched: u64,
    ) -> Result<LogPage> {
        let limit = page.effective_limit();
        let cursor = match page.cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => {
                let cur = Cursor::decode(c)?;
                if cur.sort != page.sort_by || cur.order != page.order {
                    return Err(LogStoreError::InvalidCursor(format!(
                        "{c} was issued for sort_by={} order={}",
                        cur.sort.as_str(),
                        cur.order.as_str()
                    )));
                }
                Some(cur)
            }
            None => None,
        };
        if matched == 0 {
            return Ok(LogPage {
                logs: Vec::new(),
                total_count: 0,
                next_cursor: None,
            });
        }
        // SQLite: whether to hint the sort index. Postgres plans well from its statistics
        // except with content search, whose match estimates are rough: when matches are
        // sparse it may still walk the sort index, testing each row's vector (1 s for 382
        // matches in 1M rows). There the sort key is fenced (`ts + 0`), so the matches
        // are gathered through the GIN index and sorted (70 ms).
        let searching = filter
            .content_search
            .as_deref()
            .is_some_and(|s| !s.trim().is_empty());
        let (hint, fence) = if self.is_sqlite() {
            let walk = prefer_sort_index(filter, page, self.count().await?, matched);
            (walk, false)
        } else if searching {
            let walk = prefer_sort_index(filter, page, self.count().await?, matched);
            (false, !walk)
        } else {
            (false, false)
        };

        let content = self.content_plan(filter).await?;
        let mut sql = self.sql();
        sql.push("SELECT l.seq, l.")
            .push(&LOG_COLUMNS.replace(", ", ", l."))
            .push(", c.input, c.output FROM logs l LEFT JOIN log_content c ON c.seq = l.seq WHERE l.seq IN (SELECT seq FROM logs");
        if hint {
            sql.push(" INDEXED BY ")
                .push(query::sort_index(page.sort_by));
        }
        let before = sql.binds.len();
        let where_start = sql.text.len();
        query::push_where(&mut sql, filter, content, "");
        let has_where = sql.text.len() > where_start || sql.binds.len() > before;
        if let Some(cur) = &cursor {
            query::push_after(&mut sql, cur, has_where, "");
        }
        if fence {
            sql.push(&query::order_by_unindexed(page));
        } else {
            sql.push(&query::order_by(page, ""));
        }
        sql.push(" LIMIT ").bind(Bind::Int(i64::from(limit)));
        if cursor.is_none() && page.offset > 0 {
            sql.push(" OFFSET ").bind(Bind::Int(i64::from(page.offset)));
        }
        sql.push(")");
        sql.push(&query::order_by(page, "l."));

        let (logs, last_seq) = on_pool!(&self.backend, pool => {
            let rows = prepared(sql).fetch_all(pool).await?;
            let mut logs = Vec::with_capacity(rows.len());
            let mut last_seq = 0;
            for row in &rows {
                let (seq, entry) = entry_row(row)?;
                last_seq = seq;
                logs.push(entry);
            }
            (logs, last_seq)
        });
        let next_cursor = match logs.last() {
            Some(last) if logs.len() == limit as usize => {
                let value = match page.sort_by {
                    SortBy::Timestamp => Some(Bind::Int(last.timestamp)),
                    SortBy::Latency => Some(Bind::Real(last.latency_ms)),
                    SortBy::Tokens => Some(Bind::Int(to_i64(last.total_tokens))),
                    SortBy::Cost => last.cost.map(Bind::Real),
                };
                Some(
                    Cursor {
                        sort: page.sort_by,
                        order: page.order,
                        value,
                        seq: last_seq,
                    }
                    .encode(),
                )
            }
            _ => None,
        };
        Ok(LogPage {
            logs,
            total_count: matched,
            next_cursor,
        })
    }

    /// One log with its content.
    pub async fn get(&self, id: &str) -> Result<Option<LogEntry>> {
        let mut sql = self.sql();
        sql.push("SELECT l.seq, l.")
            .push(&LOG_COLUMNS.replace(", ", ", l."))
            .push(", c.input, c.output FROM logs l LEFT JOIN log_content c ON c.seq = l.seq WHERE l.id = ")
            .bind(Bind::Text(id.to_owned()));
        on_pool!(&self.backend, pool => {
            match prepared(sql).fetch_optional(pool).await? {
                Some(r) => Ok(Some(entry_row(&r)?.1)),
                None => Ok(None),
            }
        })
    }

    /// Deletes the logs `filter` matches. An empty filter is refused unless `all` is
    /// true, so a forgotten query string cannot wipe the store. Returns rows deleted.
    pub async fn delete(&self, filter: &LogFilter, all: bool) -> Result<u64> {
        if filter.is_empty() {
            if !all {
                return Err(LogStoreError::EmptyFilter);
            }
            return self.delete_everything().await;
        }
        self.delete_chunked(filter).await
    }

    /// Deletes logs with a timestamp strictly before `ts` (unix ms). Returns rows deleted.
    pub async fn purge_older_than(&self, ts: i64) -> Result<u64> {
        let filter = LogFilter {
            end_time: Some(ts.saturating_sub(1)),
            ..Default::default()
        };
        self.delete_chunked(&filter).await
    }

    async fn delete_everything(&self) -> Result<u64> {
        let n = match &self.backend {
            Backend::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let n: i64 = sqlx::query_scalar("SELECT n FROM log_totals WHERE id = 1")
                    .fetch_optional(&mut *tx)
                    .await?
                    .unwrap_or(0);
                // Unqualified DELETEs: SQLite drops whole b-trees instead of visiting rows.
                sqlx::query("DELETE FROM logs").execute(&mut *tx).await?;
                sqlx::query("DELETE FROM log_content")
                    .execute(&mut *tx)
                    .await?;
                if self.content == ContentIndex::Fts5 {
                    sqlx::query("DELETE FROM logs_fts")
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(TOTALS_RESET).execute(&mut *tx).await?;
                tx.commit().await?;
                n
            }
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                // The table lock comes first, as in every writer (rows, then content, then
                // totals): it waits for in-flight batches of other replicas to commit, and
                // holds back new ones until the wipe commits, so the totals read next are
                // exactly the rows truncated.
                sqlx::query("LOCK TABLE logs, log_content, log_search IN ACCESS EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await?;
                let n: i64 = sqlx::query_scalar("SELECT n FROM log_totals WHERE id = 1")
                    .fetch_optional(&mut *tx)
                    .await?
                    .unwrap_or(0);
                sqlx::query("TRUNCATE logs, log_content, log_search")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(TOTALS_RESET).execute(&mut *tx).await?;
                tx.commit().await?;
                n
            }
        };
        Ok(to_u64(n))
    }

    async fn delete_chunked(&self, filter: &LogFilter) -> Result<u64> {
        let mut deleted: u64 = 0;
        loop {
            let mut sql = self.sql();
            sql.push("DELETE FROM logs WHERE seq IN (SELECT seq FROM logs");
            query::push_where(&mut sql, filter, self.content, "");
            // No ORDER BY: any DELETE_CHUNK matches will do, and an ordered pick would
            // sort every match on each round.
            sql.push(" LIMIT ").bind(Bind::Int(DELETE_CHUNK));
            if !self.is_sqlite() {
                // Replicas purging at the same time take disjoint chunks instead of
                // queueing on (or deadlocking over) each other's rows.
                sql.push(" FOR UPDATE SKIP LOCKED");
            }
            sql.push(") RETURNING seq, status, latency_ms, prompt_tokens, completion_tokens, total_tokens, cost");
            let (n, returned) = on_pool!(&self.backend, pool => {
                let mut tx = pool.begin().await?;
                let rows = prepared(sql).fetch_all(&mut *tx).await?;
                let mut delta = Delta::default();
                let mut seqs = Vec::with_capacity(rows.len());
                for row in &rows {
                    seqs.push(row.try_get::<i64, _>("seq")?);
                    let status: String = row.try_get("status")?;
                    delta.add(
                        &status,
                        row.try_get("latency_ms")?,
                        row.try_get("prompt_tokens")?,
                        row.try_get("completion_tokens")?,
                        row.try_get("total_tokens")?,
                        row.try_get("cost")?,
                    );
                }
                if !seqs.is_empty() {
                    let tables: &[(&str, &str)] = match self.content {
                        ContentIndex::Fts5 | ContentIndex::Fts5Probe => {
                            &[("log_content", "seq"), ("logs_fts", "rowid")]
                        }
                        ContentIndex::TsVector => &[("log_content", "seq"), ("log_search", "seq")],
                        ContentIndex::Like => &[("log_content", "seq")],
                    };
                    for (table, key) in tables {
                        let mut sql = self.sql();
                        sql.push("DELETE FROM ")
                            .push(table)
                            .push(" WHERE ")
                            .push(key)
                            .push(" IN (");
                        for (i, s) in seqs.iter().enumerate() {
                            if i > 0 {
                                sql.push(", ");
                            }
                            sql.bind(Bind::Int(*s));
                        }
                        sql.push(")");
                        prepared(sql).execute(&mut *tx).await?;
                    }
                    if let Some(sql) = self.delta_sql(&delta, -1) {
                        prepared(sql).execute(&mut *tx).await?;
                    }
                }
                tx.commit().await?;
                (delta.n, rows.len())
            });
            deleted += to_u64(n);
            // A short chunk is the last on SQLite (one writer at a time). On Postgres
            // rows skipped as locked by another deleter may still be there if that one
            // rolls back, so only an empty round ends the loop.
            let short = (returned as i64) < DELETE_CHUNK;
            if returned == 0 || (short && self.is_sqlite()) {
                break;
            }
            // Lets the writer's batch in between chunks of a large purge.
            tokio::task::yield_now().await;
        }
        Ok(deleted)
    }

    /// Recomputes `log_totals` from the rows (a full scan). Only needed if the table
    /// was edited outside this store.
    pub async fn rebuild_totals(&self) -> Result<()> {
        on_pool!(&self.backend, pool => {
            let mut tx = pool.begin().await?;
            if !self.is_sqlite() {
                // Taken before the scan: a concurrent batch then either committed before
                // (and is counted by the scan) or adds its delta after this commit.
                sqlx::query("SELECT id FROM log_totals WHERE id = 1 FOR UPDATE")
                    .execute(&mut *tx)
                    .await?;
            }
            let row = sqlx::query(STATS_SELECT).fetch_one(&mut *tx).await?;
            let s = stats_row(&row)?;
            sqlx::query(
                "UPDATE log_totals SET n = $1, success = $2, errors = $3, latency_sum = $4, prompt_tokens = $5, completion_tokens = $6, total_tokens = $7, cost_sum = $8 WHERE id = 1",
            )
            .bind(to_i64(s.total_requests))
            .bind(to_i64(s.success_count))
            .bind(to_i64(s.error_count))
            .bind(s.average_latency_ms * s.total_requests as f64)
            .bind(to_i64(s.prompt_tokens))
            .bind(to_i64(s.completion_tokens))
            .bind(to_i64(s.total_tokens))
            .bind(s.total_cost)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// How this query should use the content index: on SQLite, a content search within
    /// a time window of (by a uniform estimate over the stored span) at most
    /// [`PROBE_WINDOW_ROWS`] rows probes the matches instead of starting from them.
    async fn content_plan(&self, filter: &LogFilter) -> Result<ContentIndex> {
        let windowed = filter.start_time.is_some() || filter.end_time.is_some();
        let searching = filter
            .content_search
            .as_deref()
            .is_some_and(|s| !s.trim().is_empty());
        let by_id = filter.request_id.as_deref().is_some_and(|s| !s.is_empty());
        let Backend::Sqlite(pool) = &self.backend else {
            return Ok(self.content);
        };
        if self.content != ContentIndex::Fts5 || !windowed || !searching || by_id {
            return Ok(self.content);
        }
        let (min, max): (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT (SELECT MIN(ts) FROM logs), (SELECT MAX(ts) FROM logs)")
                .fetch_one(pool)
                .await?;
        let (Some(min), Some(max)) = (min, max) else {
            return Ok(self.content);
        };
        let lo = filter.start_time.unwrap_or(min).max(min);
        let hi = filter.end_time.unwrap_or(max).min(max);
        let span = (i128::from(max) - i128::from(min)).max(0) + 1;
        let window = (i128::from(hi) - i128::from(lo) + 1).max(0);
        let rows = i128::from(to_i64(self.totals().await?.total_requests));
        Ok(if rows * window / span <= PROBE_WINDOW_ROWS {
            ContentIndex::Fts5Probe
        } else {
            ContentIndex::Fts5
        })
    }

    /// The `log_totals` adjustment for a batch (`sign` 1) or a deleted chunk (-1), as a
    /// relative update: concurrent writers' adjustments add up, none is lost.
    fn delta_sql(&self, d: &Delta, sign: i64) -> Option<Sql> {
        if d.n == 0 {
            return None;
        }
        let s = sign as f64;
        let mut sql = self.sql();
        sql.push("UPDATE log_totals SET n = n + ")
            .bind(Bind::Int(sign * d.n))
            .push(", success = success + ")
            .bind(Bind::Int(sign * d.success))
            .push(", errors = errors + ")
            .bind(Bind::Int(sign * d.errors))
            .push(", latency_sum = latency_sum + ")
            .bind(Bind::Real(s * d.latency))
            .push(", prompt_tokens = prompt_tokens + ")
            .bind(Bind::Int(sign * d.prompt))
            .push(", completion_tokens = completion_tokens + ")
            .bind(Bind::Int(sign * d.completion))
            .push(", total_tokens = total_tokens + ")
            .bind(Bind::Int(sign * d.total))
            .push(", cost_sum = cost_sum + ")
            .bind(Bind::Real(s * d.cost))
            .push(" WHERE id = 1");
        Some(sql)
    }
}

const TOTALS_SELECT: &str = "SELECT n, success, errors, latency_sum AS latency, prompt_tokens AS prompt, completion_tokens AS completion, total_tokens AS total, cost_sum AS cost FROM log_totals WHERE id = 1";
const TOTALS_RESET: &str = "UPDATE log_totals SET n = 0, success = 0, errors = 0, latency_sum = 0, prompt_tokens = 0, completion_tokens = 0, total_tokens = 0, cost_sum = 0 WHERE id = 1";

/// `(seq, input, output)` rows.
fn push_content_values(sql: &mut Sql, rows: &[(i64, &LogEntry)]) {
    for (i, (seq, e)) in rows.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.push("(")
            .bind(Bind::Int(*seq))
            .push(", ")
            .bind(Bind::OptText(e.input.clone()))
            .push(", ")
            .bind(Bind::OptText(e.output.clone()))
            .push(")");
    }
}

/// `(seq, tsvector)` rows for Postgres' `log_search`.
fn push_search_values(sql: &mut Sql, rows: &[(i64, &LogEntry)]) {
    for (i, (seq, e)) in rows.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        let doc = query::search_document(e.input.as_deref(), e.output.as_deref());
        sql.push("(")
            .bind(Bind::Int(*seq))
            .push(", to_tsvector('simple', ")
            .bind(Bind::Text(doc))
            .push("))");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_choice() {
        let page = Page::default();
        let dense = LogFilter {
            providers: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        // Half the rows match: walking the ts index finds 50 matches in ~100 rows.
        assert!(prefer_sort_index(&dense, &page, 1_000_000, 500_000));
        // 20 matches in a million: gather them through their own index.
        assert!(!prefer_sort_index(&dense, &page, 1_000_000, 20));
        // A deep offset makes the walk long.
        let deep = Page {
            offset: 400_000,
            ..Page::default()
        };
        assert!(!prefer_sort_index(&dense, &deep, 1_000_000, 500_000));
        // One provider: its (provider, ts) index is already in order.
        let one = LogFilter {
            providers: vec!["a".into()],
            ..Default::default()
        };
        assert!(!prefer_sort_index(&one, &page, 1_000_000, 500_000));
        let by_cost = Page {
            sort_by: SortBy::Cost,
            ..Page::default()
        };
        assert!(prefer_sort_index(&one, &by_cost, 1_000_000, 500_000));
        assert!(!prefer_sort_index(&LogFilter::default(), &page, 10, 10));
    }

    #[tokio::test]
    async fn like_fallback_matches_substrings_literally() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open_sqlite(&dir.path().join("logs.db"))
            .await
            .unwrap();
        // What a SQLite without FTS5 gets.
        store.content = ContentIndex::Like;
        let mk = |id: &str, input: &str| LogEntry {
            id: id.into(),
            status: "success".into(),
            input: Some(input.into()),
            ..Default::default()
        };
        store
            .insert_batch(&[mk("a", "the weather today"), mk("b", "100% sure_thing")])
            .await
            .unwrap();
        let count = |q: &str| {
            let f = LogFilter {
                content_search: Some(q.into()),
                ..Default::default()
            };
            let store = store.clone();
            async move { store.count_matching(&f).await.unwrap() }
        };
        assert_eq!(count("eathe").await, 1);
        assert_eq!(
            count("WEATHER").await,
            1,
            "LIKE is case-insensitive for ASCII"
        );
        assert_eq!(count("0% s").await, 1);
        assert_eq!(count("%").await, 1, "% is literal");
        assert_eq!(
            count("r_t").await,
            0,
            "_ is literal (unescaped it would match \"r t\")"
        );
        assert_eq!(
            store
                .delete(
                    &LogFilter {
                        ids: vec!["a".into()],
                        ..Default::default()
                    },
                    false
                )
                .await
                .unwrap(),
            1
        );
        assert_eq!(count("weather").await, 0);
    }
}
