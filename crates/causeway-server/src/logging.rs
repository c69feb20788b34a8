//! Request logs: the `logs_store` settings of config.json, the log store and batched writer
//! opened at start-up ([`LogsRuntime`]), and the `logging` built-in plugin that turns every
//! finished request's `RequestRecord` into a log entry. Never on the client's clock:
//! `observe` only converts and enqueues; a full queue drops the entry and counts it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use causeway_config::ConfigFile;
use causeway_core::RequestRecord;
use causeway_logstore::{LogEntry, LogStore, LogWriter, WriterConfig};
use causeway_plugins::{HookSet, LoadError, Plugin};
use serde::Deserialize;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::gateway::StartError;

/// Bifrost's default retention (`client.log_retention_days`).
pub const DEFAULT_RETENTION_DAYS: u32 = 365;

/// `logs_store` in config.json (Bifrost's shape).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsStoreConfig {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    config: Option<StoreLocation>,
    #[serde(default)]
    writer: WriterSettings,
    /// Overrides `client.log_retention_days`.
    #[serde(default)]
    retention_days: Option<u32>,
    /// Accepted for compatibility; Causeway keeps content in the database.
    #[serde(default)]
    object_storage: Option<Value>,
    #[serde(default)]
    object_storage_exclude_fields: Option<Value>,
}

fn yes() -> bool {
    true
}

/// `logs_store.config`: a SQLite `path`, or Postgres as a `url` or Bifrost's fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreLocation {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    db_name: Option<String>,
    #[serde(default)]
    ssl_mode: Option<String>,
    #[serde(default)]
    max_idle_conns: Option<u32>,
    #[serde(default)]
    max_open_conns: Option<u32>,
    #[serde(default)]
    conn_max_lifetime: Option<Value>,
}

/// `logs_store.writer` (Bifrost's names; intervals as seconds or `"500ms"`/`"5s"`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriterSettings {
    #[serde(default)]
    max_batch_size: Option<usize>,
    #[serde(default)]
    batch_interval: Option<Value>,
    #[serde(default)]
    write_queue_capacity: Option<usize>,
    #[serde(default)]
    /// Accepted for compatibility: batches are bounded by entry count, and content by
    /// per-direction truncation, so bytes need no separate cap.
    #[serde(rename = "max_batch_bytes")]
    _max_batch_bytes: Option<u64>,
}

/// `"250ms"`, `"5s"`, `"1m"` (config.json's duration strings) or a number of seconds.
fn duration_of(v: &Value) -> Option<Duration> {
    let secs = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.trim().parse::<f64>() {
            Ok(secs) => Some(secs),
            Err(_) => {
                return causeway_config::parse_duration_ms(s).map(Duration::from_millis);
            }
        },
        _ => None,
    };
    secs.filter(|f| f.is_finite() && *f >= 0.0)
        .map(Duration::from_secs_f64)
}

/// `env.NAME` resolves to the variable's value (empty when unset, as in Bifrost).
fn env_ref(s: &str) -> String {
    causeway_core::secret::Secret::new(s).resolve()
}

/// The open log store, its writer and retention task; `None` in `AppState` when disabled.
pub struct LogsRuntime {
    pub store: Arc<LogStore>,
    pub writer: LogWriter,
    writer_task: std::sync::Mutex<Option<JoinHandle<()>>>,
    retention_task: JoinHandle<()>,
    /// Where the logs live, for the start-up log and `/health` (never a password).
    pub location: String,
}

impl LogsRuntime {
    /// Writes what is queued, stops the writer and retention, and closes the store.
    pub async fn shutdown(&self) {
        self.retention_task.abort();
        self.writer.shutdown().await;
        let task = self.writer_task.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = task {
            let _ = t.await;
        }
        self.store.close().await;
    }
}

/// The writer's counters in Prometheus text, appended to `/metrics`.
pub fn render_metrics(s: &causeway_logstore::WriterStats, out: &mut String) {
    use std::fmt::Write as _;
    let _ = write!(
        out,
        "# HELP causeway_logs_written_total Request log entries written to the logs store.\n\
         # TYPE causeway_logs_written_total counter\n\
         causeway_logs_written_total {}\n\
         # HELP causeway_logs_dropped_total Request log entries dropped (queue full or store failure).\n\
         # TYPE causeway_logs_dropped_total counter\n\
         causeway_logs_dropped_total{{reason=\"queue_full\"}} {}\n\
         causeway_logs_dropped_total{{reason=\"store_error\"}} {}\n",
        s.written, s.dropped_queue_full, s.dropped_store_error
    );
}

/// Opens the log store `config.json` asks for (`logs.db` in the app dir by default) and
/// starts its writer and retention task. `Ok(None)` when `logs_store.enabled` is false.
pub async fn open(app_dir: &Path, file: &ConfigFile) -> Result<Option<LogsRuntime>, StartError> {
    // An absent block is an empty one: every field has its default.
    let block = file
        .logs_store
        .clone()
        .unwrap_or_else(|| Value::Object(Default::default()));
    let cfg: LogsStoreConfig = serde_path_to_error::deserialize(block).map_err(|e| {
        let path = e.path().to_string();
        StartError(format!("logs_store.{path}: {}", e.inner()))
    })?;
    if !cfg.enabled {
        tracing::info!("logs store disabled (logs_store.enabled: false): no request logs are kept");
        return Ok(None);
    }
    if cfg.object_storage.is_some() || cfg.object_storage_exclude_fields.is_some() {
        tracing::warn!(
            "logs_store.object_storage is not supported: request content stays in the logs database"
        );
    }
    let retention = match cfg.retention_days {
        Some(d) => d,
        None => match file.client.log_retention_days {
            Some(d) => u32::try_from(d).unwrap_or(u32::MAX),
            None => DEFAULT_RETENTION_DAYS,
        },
    };
    if retention == 0 {
        return Err(StartError(
            "log retention must be at least 1 day (client.log_retention_days / logs_store.retention_days); disable the logs store with logs_store.enabled: false instead".to_owned(),
        ));
    }
    let location = cfg.config.unwrap_or_default();
    let (store, shown) = match cfg.kind.as_deref().unwrap_or("sqlite") {
        "sqlite" => {
            let path = match location.path.as_deref().filter(|p| !p.is_empty()) {
                Some(p) if Path::new(p).is_absolute() => PathBuf::from(p),
                Some(p) => app_dir.join(p),
                None => app_dir.join("logs.db"),
            };
            let store = LogStore::open_sqlite(&path).await.map_err(|e| {
                StartError(format!("opening the logs store {}: {e}", path.display()))
            })?;
            (store, path.display().to_string())
        }
        "postgres" => open_postgres(&location).await?,
        other => {
            return Err(StartError(format!(
                "logs_store.type: {other:?} is not supported; use \"sqlite\" or \"postgres\""
            )));
        }
    };
    let store = Arc::new(store);
    let defaults = WriterConfig::default();
    let writer_cfg = WriterConfig {
        queue_capacity: cfg
            .writer
            .write_queue_capacity
            .filter(|n| *n > 0)
            .unwrap_or(defaults.queue_capacity),
        max_batch: cfg
            .writer
            .max_batch_size
            .filter(|n| *n > 0)
            .unwrap_or(defaults.max_batch),
        flush_interval: match &cfg.writer.batch_interval {
            None => defaults.flush_interval,
            Some(v) => duration_of(v).filter(|d| !d.is_zero()).ok_or_else(|| {
                StartError(format!(
                    "logs_store.writer.batch_interval: {v} is not a duration like \"1s\" or \"500ms\""
                ))
            })?,
        },
    };
    let (writer, writer_task) = LogWriter::spawn(store.clone(), writer_cfg);
    let retention_task = causeway_logstore::spawn_retention(store.clone(), retention);
    tracing::info!(location = %shown, retention_days = retention, "logs store open");
    Ok(Some(LogsRuntime {
        store,
        writer,
        writer_task: std::sync::Mutex::new(Some(writer_task)),
        retention_task,
        location: shown,
    }))
}

async fn open_postgres(loc: &StoreLocation) -> Result<(LogStore, String), StartError> {
    use causeway_logstore::{PgConnectOptions, PgPoolConfig, PgSslMode};
    use std::str::FromStr;
    let field = |name: &str, e: &dyn std::fmt::Display| {
        StartError(format!("logs_store.config.{name}: {e}"))
    };
    let mut options = match loc.url.as_deref().map(env_ref).filter(|u| !u.is_empty()) {
        // The parser's message never echoes the URL (it may hold a password).
        Some(url) => PgConnectOptions::from_str(&url).map_err(|e| field("url", &e))?,
        None => PgConnectOptions::new_without_pgpass(),
    };
    if let Some(h) = loc.host.as_deref().map(env_ref).filter(|h| !h.is_empty()) {
        options = options.host(&h);
    }
    if let Some(p) = loc.port {
        options = options.port(p);
    }
    if let Some(u) = loc.user.as_deref().map(env_ref).filter(|u| !u.is_empty()) {
        options = options.username(&u);
    }
    if let Some(p) = loc
        .password
        .as_deref()
        .map(env_ref)
        .filter(|p| !p.is_empty())
    {
        options = options.password(&p);
    }
    if let Some(d) = loc
        .db_name
        .as_deref()
        .map(env_ref)
        .filter(|d| !d.is_empty())
    {
        options = options.database(&d);
    }
    if let Some(m) = loc.ssl_mode.as_deref().filter(|m| !m.is_empty()) {
        let mode = PgSslMode::from_str(m).map_err(|_| {
            field(
                "ssl_mode",
                &format!("{m:?}; use disable, allow, prefer, require, verify-ca or verify-full"),
            )
        })?;
        options = options.ssl_mode(mode);
    }
    let mut pool = PgPoolConfig::default();
    if let Some(n) = loc.max_open_conns.filter(|n| *n > 0) {
        pool.max_connections = n;
    }
    if let Some(n) = loc.max_idle_conns {
        pool.min_connections = n.min(pool.max_connections);
    }
    if let Some(v) = &loc.conn_max_lifetime {
        pool.max_lifetime = Some(duration_of(v).ok_or_else(|| {
            field(
                "conn_max_lifetime",
                &format!("{v} is not a duration like \"30m\""),
            )
        })?);
    }
    let shown = format!(
        "postgres://{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    );
    let store = LogStore::open_postgres_with(options, pool)
        .await
        .map_err(|e| StartError(format!("opening the logs store {shown}: {e}")))?;
    Ok((store, shown))
}

/// Content kept per direction unless `max_content_bytes` says otherwise.
pub const DEFAULT_MAX_CONTENT_BYTES: usize = 16 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoggingConfig {
    /// Keep no request or response content in the logs (metadata only).
    #[serde(default)]
    disable_content_logging: bool,
    /// Request and response content are each cut to this many bytes (1 to 65536).
    #[serde(default)]
    max_content_bytes: Option<usize>,
}

pub struct LoggingPlugin {
    writer: LogWriter,
    keep_content: bool,
    max_content_bytes: usize,
}

impl LoggingPlugin {
    pub fn from_config(writer: LogWriter, config: &Value) -> Result<Self, LoadError> {
        let cfg: LoggingConfig = if config.is_null() {
            LoggingConfig::default()
        } else {
            serde_json::from_value(config.clone())
                .map_err(|e| LoadError::InvalidConfig(format!("config: {e}")))?
        };
        let max_content_bytes = match cfg.max_content_bytes {
            None => DEFAULT_MAX_CONTENT_BYTES,
            Some(n) if (1..=crate::observe::MAX_CONTENT_BYTES).contains(&n) => n,
            Some(n) => {
                return Err(LoadError::InvalidConfig(format!(
                    "config.max_content_bytes: {n} is out of range; use 1 to {}",
                    crate::observe::MAX_CONTENT_BYTES
                )));
            }
        };
        Ok(LoggingPlugin {
            writer,
            keep_content: !cfg.disable_content_logging,
            max_content_bytes,
        })
    }
}

impl Plugin for LoggingPlugin {
    fn name(&self) -> &str {
        "logging"
    }

    fn hooks(&self) -> HookSet {
        HookSet {
            observe: true,
            ..HookSet::default()
        }
    }

    fn observe(&self, record: &Arc<RequestRecord>) {
        let max_content = self.keep_content.then_some(self.max_content_bytes);
        self.writer.log(entry_from(record, max_content));
    }
}

/// One log entry from a request record, with its content cut to `max_content` bytes per
/// direction (`None`: no content).
fn entry_from(r: &RequestRecord, max_content: Option<usize>) -> LogEntry {
    let content = |text: &Option<String>| {
        let max = max_content?;
        text.as_deref().map(|t| crate::observe::truncate_to(t, max))
    };
    let usage = r.usage.unwrap_or_default();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    LogEntry {
        id: r.request_id.clone(),
        timestamp: r
            .started_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        object: r.request_type.to_owned(),
        route: r.route.clone(),
        provider: r.requested_provider.clone(),
        model: r.requested_model.clone(),
        resolved_provider: r.provider.clone(),
        resolved_model: r.model.clone(),
        key_id: r.key_id.clone(),
        virtual_key_id: r.virtual_key_id.clone(),
        team_id: r.team_id.clone(),
        customer_id: r.customer_id.clone(),
        status: r.outcome.as_str().to_owned(),
        status_code: r.status_code,
        error_type: r.error_type.clone(),
        error_message: r.error_message.clone(),
        latency_ms: ms(r.latency()),
        ttft_ms: r.time_to_first_token().map(ms),
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        cached_tokens: usage.cached_tokens,
        total_tokens: usage.total_tokens,
        cost: r.cost,
        fallback_index: r.fallback_index(),
        attempts: r.trace.attempts.len() as u32,
        stream: r.stream,
        input: content(&r.input),
        output: content(&r.output),
        metadata: r.dimensions.clone(),
    }
}
