//! Schema migrations: an ordered list applied once each, recorded in `schema_migrations`.
//! Never edit a released migration; append a new one.

use sqlx::sqlite::SqlitePool;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "providers, keys, plugins, client config, seed hashes",
        r#"
CREATE TABLE IF NOT EXISTS providers (
    name TEXT PRIMARY KEY,
    settings_json TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS provider_keys (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL REFERENCES providers(name) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    key_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS provider_keys_by_provider ON provider_keys(provider, position);
CREATE TABLE IF NOT EXISTS plugins (
    name TEXT PRIMARY KEY,
    enabled BOOLEAN NOT NULL,
    path TEXT,
    config_json TEXT NOT NULL,
    placement TEXT,
    ord BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS client_config (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seed_hashes (
    entity TEXT PRIMARY KEY,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    ),
    (
        2,
        "governance entities, sessions, usage snapshot",
        r#"
CREATE TABLE IF NOT EXISTS governance_entities (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    json TEXT NOT NULL,
    value_hash TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS governance_entities_by_hash ON governance_entities(value_hash) WHERE value_hash IS NOT NULL;
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS usage_snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    json TEXT NOT NULL,
    saved_at BIGINT NOT NULL
);
"#,
    ),
];

pub async fn apply(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(pool)
    .await?;
    for (version, description, sql) in MIGRATIONS {
        let done: Option<(i64,)> =
            sqlx::query_as("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(pool)
                .await?;
        if done.is_some() {
            continue;
        }
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(version)
        .bind(description)
        .bind(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(version, description, "applied config store migration");
    }
    Ok(())
}
