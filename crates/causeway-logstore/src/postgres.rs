//! Postgres specifics of the log store: connecting (a modest pool, and a connect error
//! that names the server but never the password) and the schema, applied under an
//! advisory lock so replicas that start together do not race. It must not hold query
//! logic: filters, sorts and paging are the shared SQL of `query.rs` and `store.rs`.
//!
//! Index choice mirrors `schema.rs` (SQLite), with two Postgres adjustments:
//! - `seq` is spelled out after `ts` in every `(column, ts)` index (SQLite appends the
//!   rowid implicitly), so `ORDER BY ts DESC, seq DESC` is a backward index walk;
//! - the columns stats sum are `INCLUDE`d rather than keyed, and `logs_cost` is built
//!   `NULLS FIRST`, the order the API sorts unpriced rows in (a default b-tree puts
//!   NULLs last, so `ORDER BY cost DESC NULLS LAST` could not walk it).
//!
//! Content is searched through `log_search.search`, a `tsvector` with a GIN index,
//! built from tokens made in Rust (see `query::search_document` for how this mirrors
//! FTS5 and where it differs). It has a table of its own (`log_search`), as FTS5 does:
//! the GIN index yields heap positions, and turning them into `seq`s reads a heap page
//! per match, so the rows there should be only `seq` and the vector (about 850 bytes),
//! not also the content (1.3 KiB). That page-per-match read is what a search matching
//! tens of thousands of rows spends its time on, from the OS cache with Postgres'
//! default 128 MB `shared_buffers`; a server whose `shared_buffers` holds `log_search`
//! should do better (not measured here).
//!
//! Every connection runs with `jit = off`: the store's aggregates are short, and JIT
//! compiling one costs more (up to 130 ms measured) than running it.

use std::time::Duration;

use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::{LogStoreError, Result};

/// Pool settings for [`crate::LogStore::open_postgres_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgPoolConfig {
    /// Most connections one gateway process opens. The writer uses one at a time and
    /// each `/api/logs` request one or two, so 8 serves a busy dashboard; with N
    /// replicas the server sees up to N times this.
    pub max_connections: u32,
    /// Connections kept open while idle.
    pub min_connections: u32,
    /// How long opening the store (and each later checkout) waits for a connection
    /// before failing.
    pub connect_timeout: Duration,
    /// Idle connections above `min_connections` are closed after this long.
    pub idle_timeout: Option<Duration>,
    /// Connections are recycled after this long (lets a failover or a proxy's
    /// rebalancing take effect).
    pub max_lifetime: Option<Duration>,
}

impl Default for PgPoolConfig {
    fn default() -> Self {
        PgPoolConfig {
            max_connections: 8,
            min_connections: 0,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
        }
    }
}

/// `user@host:port/db` (or the socket directory): what a connect error names. Never
/// the password.
pub fn describe(o: &PgConnectOptions) -> String {
    let place = match o.get_socket() {
        Some(dir) => format!("socket {}", dir.display()),
        None => format!("{}:{}", o.get_host(), o.get_port()),
    };
    let db = o.get_database().unwrap_or(o.get_username());
    format!("{}@{place}/{db}", o.get_username())
}

/// Opens the pool and checks out one connection, so a wrong address, password or
/// database fails here with a message naming the server.
pub async fn connect(options: PgConnectOptions, pool: &PgPoolConfig) -> Result<PgPool> {
    let target = describe(&options);
    let options = if options.get_application_name().is_none() {
        options.application_name("causeway-logstore")
    } else {
        options
    };
    // Session setting for this pool only; appended after the caller's own options.
    let options = options.options([("jit", "off")]);
    let max = pool.max_connections.max(1);
    PgPoolOptions::new()
        .max_connections(max)
        .min_connections(pool.min_connections.min(max))
        .acquire_timeout(pool.connect_timeout)
        .idle_timeout(pool.idle_timeout)
        .max_lifetime(pool.max_lifetime)
        .connect_with(options)
        .await
        .map_err(|e| LogStoreError::Connect {
            target,
            reason: match e {
                sqlx::Error::PoolTimedOut => format!(
                    "no connection within {} s (is the server up and reachable?)",
                    pool.connect_timeout.as_secs_f64()
                ),
                other => other.to_string(),
            },
        })
}

/// Migrations, applied in order and recorded in `logstore_migrations` (not the
/// generic `schema_migrations`: the store may share a database or schema with other
/// Causeway stores). Never edit a released migration; append a new one.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "logs, content, totals",
    concat!(
        r#"
CREATE TABLE IF NOT EXISTS logs (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    object TEXT NOT NULL,
    route TEXT NOT NULL,
    provider TEXT,
    model TEXT,
    resolved_provider TEXT,
    resolved_model TEXT,
    key_id TEXT,
    virtual_key_id TEXT,
    team_id TEXT,
    customer_id TEXT,
    status TEXT NOT NULL,
    status_code BIGINT NOT NULL,
    error_type TEXT,
    error_message TEXT,
    latency_ms DOUBLE PRECISION NOT NULL,
    ttft_ms DOUBLE PRECISION,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    total_tokens BIGINT NOT NULL,
    cost DOUBLE PRECISION,
    fallback_index BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    stream BOOLEAN NOT NULL,
    metadata TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS logs_id ON logs (id);
CREATE INDEX IF NOT EXISTS logs_ts ON logs (ts, seq);
CREATE INDEX IF NOT EXISTS logs_provider_ts ON logs (provider, ts, seq) INCLUDE (status, latency_ms, prompt_tokens, completion_tokens, total_tokens, cost);
CREATE INDEX IF NOT EXISTS logs_model_ts ON logs (model, ts, seq) INCLUDE (status, latency_ms, prompt_tokens, completion_tokens, total_tokens, cost);
CREATE INDEX IF NOT EXISTS logs_status_ts ON logs (status, ts, seq) INCLUDE (provider, latency_ms, prompt_tokens, completion_tokens, total_tokens, cost);
CREATE INDEX IF NOT EXISTS logs_vk_ts ON logs (virtual_key_id, ts, seq) INCLUDE (status, latency_ms, prompt_tokens, completion_tokens, total_tokens, cost);
CREATE INDEX IF NOT EXISTS logs_object_ts ON logs (object, ts, seq);
CREATE INDEX IF NOT EXISTS logs_team_ts ON logs (team_id, ts, seq);
CREATE INDEX IF NOT EXISTS logs_customer_ts ON logs (customer_id, ts, seq);
CREATE INDEX IF NOT EXISTS logs_key_ts ON logs (key_id, ts, seq);
CREATE INDEX IF NOT EXISTS logs_latency ON logs (latency_ms, seq) INCLUDE (status, prompt_tokens, completion_tokens, total_tokens, cost);
CREATE INDEX IF NOT EXISTS logs_tokens ON logs (total_tokens, seq) INCLUDE (status, latency_ms, prompt_tokens, completion_tokens, cost);
CREATE INDEX IF NOT EXISTS logs_cost ON logs (cost NULLS FIRST, seq) INCLUDE (status, latency_ms, prompt_tokens, completion_tokens, total_tokens);
CREATE TABLE IF NOT EXISTS log_content (
    seq BIGINT PRIMARY KEY,
    input TEXT,
    output TEXT
);
CREATE TABLE IF NOT EXISTS log_search (
    seq BIGINT PRIMARY KEY,
    search TSVECTOR NOT NULL
);
CREATE INDEX IF NOT EXISTS log_search_search ON log_search USING GIN (search);
"#,
        log_totals_ddl!()
    ),
)];

/// Applies pending migrations in one transaction, holding a transaction-scoped
/// advisory lock keyed by the schema: a second replica starting at the same moment
/// waits, then finds everything applied. DDL is transactional in Postgres, so a failed
/// migration leaves nothing half-built.
pub async fn apply(pool: &PgPool) -> std::result::Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('causeway-logstore:' || COALESCE(current_schema(), '')))",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS logstore_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    for (version, description, sql) in MIGRATIONS {
        let done: Option<i64> =
            sqlx::query_scalar("SELECT version FROM logstore_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
        if done.is_some() {
            continue;
        }
        sqlx::raw_sql(AssertSqlSafe(*sql)).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO logstore_migrations (version, description, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(version)
        .bind(description)
        .bind(crate::now_ms())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
