//! The config store: providers, their keys and plugin definitions, persisted in SQLite
//! (`config.db`, WAL). config.json seeds it: an entity whose section in the file changed since
//! it was last imported is re-imported; otherwise the stored (API-edited) version wins.
//! SQL is written with `$N` placeholders and portable types so a Postgres backend can share it.

mod migrations;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use causeway_config::load::content_hash;
use causeway_config::{ClientConfig, ConfigFile, KeyConfig, ProviderSettings};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("config store: {0} already exists")]
    Conflict(String),
    #[error("config store: {0} not found")]
    NotFound(String),
    #[error("config store database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("config store holds invalid data in {what}: {err}")]
    Corrupt { what: String, err: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A provider with its keys, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredProvider {
    pub name: String,
    pub settings: ProviderSettings,
    pub keys: Vec<KeyConfig>,
}

/// A plugin definition, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginRecord {
    pub name: String,
    pub enabled: bool,
    pub path: Option<String>,
    pub config: Value,
    pub placement: Option<String>,
    pub order: Option<i64>,
}

/// What seeding from config.json did, for the start-up log.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SeedReport {
    pub imported: Vec<String>,
    pub kept: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct ConfigStore {
    pool: SqlitePool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn corrupt(what: impl Into<String>, err: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        err: err.to_string(),
    }
}

impl ConfigStore {
    /// Opens (creating if needed) a SQLite store and applies pending migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                StoreError::Database(sqlx::Error::Io(std::io::Error::new(
                    e.kind(),
                    format!("creating {}: {e}", dir.display()),
                )))
            })?;
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        migrations::apply(&pool).await?;
        Ok(ConfigStore { pool })
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- providers -------------------------------------------------------------------

    pub async fn list_providers(&self) -> Result<Vec<StoredProvider>> {
        let rows = sqlx::query("SELECT name, settings_json FROM providers ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        let key_rows = sqlx::query(
            "SELECT provider, key_json FROM provider_keys ORDER BY provider, position, id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = row.try_get("name")?;
            let settings: ProviderSettings =
                serde_json::from_str(&row.try_get::<String, _>("settings_json")?)
                    .map_err(|e| corrupt(format!("provider {name}"), e))?;
            out.push(StoredProvider {
                name,
                settings,
                keys: Vec::new(),
            });
        }
        for row in key_rows {
            let provider: String = row.try_get("provider")?;
            let key: KeyConfig = serde_json::from_str(&row.try_get::<String, _>("key_json")?)
                .map_err(|e| corrupt(format!("a key of provider {provider}"), e))?;
            if let Some(p) = out.iter_mut().find(|p| p.name == provider) {
                p.keys.push(key);
            }
        }
        Ok(out)
    }

    pub async fn get_provider(&self, name: &str) -> Result<Option<StoredProvider>> {
        Ok(self
            .list_providers()
            .await?
            .into_iter()
            .find(|p| p.name == name))
    }

    pub async fn insert_provider(&self, name: &str, settings: &ProviderSettings) -> Result<()> {
        let json = serde_json::to_string(settings).map_err(|e| corrupt("provider", e))?;
        let res = sqlx::query(
            "INSERT INTO providers (name, settings_json, created_at, updated_at) VALUES ($1, $2, $3, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(json)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("provider {name}")));
        }
        self.bump_revision().await
    }

    pub async fn update_provider(&self, name: &str, settings: &ProviderSettings) -> Result<()> {
        let json = serde_json::to_string(settings).map_err(|e| corrupt("provider", e))?;
        let res =
            sqlx::query("UPDATE providers SET settings_json = $1, updated_at = $2 WHERE name = $3")
                .bind(json)
                .bind(now_ms())
                .bind(name)
                .execute(&self.pool)
                .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("provider {name}")));
        }
        self.bump_revision().await
    }

    pub async fn delete_provider(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM provider_keys WHERE provider = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let res = sqlx::query("DELETE FROM providers WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if res.rows_affected() > 0 {
            self.bump_revision().await?;
        }
        Ok(res.rows_affected() > 0)
    }

    // ---- keys ------------------------------------------------------------------------

    /// Adds a key; its `id` must be set. Key names are unique within a provider.
    pub async fn insert_key(&self, provider: &str, key: &KeyConfig) -> Result<()> {
        let id = key.id.clone().unwrap_or_default();
        let existing = self.get_provider(provider).await?;
        let Some(p) = existing else {
            return Err(StoreError::NotFound(format!("provider {provider}")));
        };
        if p.keys.iter().any(|k| k.name == key.name) {
            return Err(StoreError::Conflict(format!(
                "key named {:?} in provider {provider}",
                key.name
            )));
        }
        let json = serde_json::to_string(key).map_err(|e| corrupt("key", e))?;
        let res = sqlx::query(
            "INSERT INTO provider_keys (id, provider, position, key_json) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&id)
        .bind(provider)
        .bind(p.keys.len() as i64)
        .bind(json)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("key id {id}")));
        }
        self.bump_revision().await
    }

    pub async fn update_key(&self, provider: &str, key: &KeyConfig) -> Result<()> {
        let id = key.id.clone().unwrap_or_default();
        let json = serde_json::to_string(key).map_err(|e| corrupt("key", e))?;
        let res =
            sqlx::query("UPDATE provider_keys SET key_json = $1 WHERE id = $2 AND provider = $3")
                .bind(json)
                .bind(&id)
                .bind(provider)
                .execute(&self.pool)
                .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "key {id} of provider {provider}"
            )));
        }
        self.bump_revision().await
    }

    pub async fn delete_key(&self, provider: &str, id: &str) -> Result<bool> {
        let res = sqlx::query("DELETE FROM provider_keys WHERE id = $1 AND provider = $2")
            .bind(id)
            .bind(provider)
            .execute(&self.pool)
            .await?;
        if res.rows_affected() > 0 {
            self.bump_revision().await?;
        }
        Ok(res.rows_affected() > 0)
    }

    // ---- plugins ---------------------------------------------------------------------

    pub async fn list_plugins(&self) -> Result<Vec<PluginRecord>> {
        let rows = sqlx::query(
            "SELECT name, enabled, path, config_json, placement, ord FROM plugins ORDER BY created_at, name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(plugin_from_row).collect()
    }

    pub async fn get_plugin(&self, name: &str) -> Result<Option<PluginRecord>> {
        let row = sqlx::query(
            "SELECT name, enabled, path, config_json, placement, ord FROM plugins WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(plugin_from_row).transpose()
    }

    pub async fn insert_plugin(&self, p: &PluginRecord) -> Result<()> {
        let res = sqlx::query(
            "INSERT INTO plugins (name, enabled, path, config_json, placement, ord, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&p.name)
        .bind(p.enabled)
        .bind(&p.path)
        .bind(p.config.to_string())
        .bind(&p.placement)
        .bind(p.order)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("plugin {}", p.name)));
        }
        self.bump_revision().await
    }

    pub async fn update_plugin(&self, p: &PluginRecord) -> Result<()> {
        let res = sqlx::query(
            "UPDATE plugins SET enabled = $1, path = $2, config_json = $3, placement = $4, ord = $5, updated_at = $6 WHERE name = $7",
        )
        .bind(p.enabled)
        .bind(&p.path)
        .bind(p.config.to_string())
        .bind(&p.placement)
        .bind(p.order)
        .bind(now_ms())
        .bind(&p.name)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("plugin {}", p.name)));
        }
        self.bump_revision().await
    }

    pub async fn delete_plugin(&self, name: &str) -> Result<bool> {
        let res = sqlx::query("DELETE FROM plugins WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        if res.rows_affected() > 0 {
            self.bump_revision().await?;
        }
        Ok(res.rows_affected() > 0)
    }

    // ---- client config ---------------------------------------------------------------

    pub async fn client_config(&self) -> Result<Option<ClientConfig>> {
        let row = sqlx::query("SELECT json FROM client_config WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let s: String = r.try_get("json")?;
            serde_json::from_str(&s).map_err(|e| corrupt("client config", e))
        })
        .transpose()
    }

    pub async fn set_client_config(&self, c: &ClientConfig) -> Result<()> {
        let json = serde_json::to_string(c).map_err(|e| corrupt("client config", e))?;
        sqlx::query(
            "INSERT INTO client_config (id, json) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET json = excluded.json",
        )
        .bind(json)
        .execute(&self.pool)
        .await?;
        self.bump_revision().await
    }

    // ---- governance entities (virtual keys, teams, customers) -------------------------

    /// All entities of a kind (`virtual_key`, `team`, `customer`), oldest first.
    pub async fn list_entities<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
    ) -> Result<Vec<T>> {
        let rows = sqlx::query(
            "SELECT id, json FROM governance_entities WHERE kind = $1 ORDER BY created_at, id",
        )
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let json: String = r.try_get("json")?;
                serde_json::from_str(&json).map_err(|e| corrupt(format!("{kind} {id}"), e))
            })
            .collect()
    }

    /// Inserts an entity; `value_hash` (virtual keys) must be unique across all entities.
    pub async fn insert_entity<T: Serialize>(
        &self,
        kind: &str,
        id: &str,
        value_hash: Option<&str>,
        entity: &T,
    ) -> Result<()> {
        let json = serde_json::to_string(entity).map_err(|e| corrupt(kind, e))?;
        let res = sqlx::query(
            "INSERT INTO governance_entities (kind, id, json, value_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING",
        )
        .bind(kind)
        .bind(id)
        .bind(json)
        .bind(value_hash)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("{kind} {id}")));
        }
        self.bump_revision().await
    }

    pub async fn update_entity<T: Serialize>(
        &self,
        kind: &str,
        id: &str,
        entity: &T,
    ) -> Result<()> {
        let json = serde_json::to_string(entity).map_err(|e| corrupt(kind, e))?;
        let res = sqlx::query(
            "UPDATE governance_entities SET json = $1, updated_at = $2 WHERE kind = $3 AND id = $4",
        )
        .bind(json)
        .bind(now_ms())
        .bind(kind)
        .bind(id)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("{kind} {id}")));
        }
        self.bump_revision().await
    }

    pub async fn delete_entity(&self, kind: &str, id: &str) -> Result<bool> {
        let res = sqlx::query("DELETE FROM governance_entities WHERE kind = $1 AND id = $2")
            .bind(kind)
            .bind(id)
            .execute(&self.pool)
            .await?;
        if res.rows_affected() > 0 {
            self.bump_revision().await?;
        }
        Ok(res.rows_affected() > 0)
    }

    // ---- sessions --------------------------------------------------------------------

    /// Stores a session by the hash of its token (the token itself is never stored).
    pub async fn insert_session(&self, token_hash: &str, expires_at_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, created_at, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(token_hash)
        .bind(now_ms())
        .bind(expires_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn session_valid(&self, token_hash: &str, now_ms_: i64) -> Result<bool> {
        let row = sqlx::query("SELECT expires_at FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .and_then(|r| r.try_get::<i64, _>("expires_at").ok())
            .is_some_and(|exp| exp > now_ms_))
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<bool> {
        let res = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() > 0)
    }

    pub async fn purge_expired_sessions(&self, now_ms_: i64) -> Result<u64> {
        let res = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now_ms_)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected())
    }

    // ---- usage counters snapshot -----------------------------------------------------

    pub async fn save_usage_snapshot(&self, json: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO usage_snapshot (id, json, saved_at) VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE SET json = excluded.json, saved_at = excluded.saved_at",
        )
        .bind(json)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn load_usage_snapshot(&self) -> Result<Option<String>> {
        let row = sqlx::query("SELECT json FROM usage_snapshot WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|r| r.try_get("json").ok()))
    }

    // ---- revision and seeding --------------------------------------------------------

    /// Increases with every write; replicas compare it to know when to reload.
    pub async fn revision(&self) -> Result<i64> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = 'revision'")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .and_then(|r| r.try_get::<String, _>("value").ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    async fn bump_revision(&self) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('revision', '1') ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT)",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn seed_hash(&self, entity: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT hash FROM seed_hashes WHERE entity = $1")
            .bind(entity)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|r| r.try_get("hash").ok()))
    }

    async fn set_seed_hash(&self, entity: &str, hash: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO seed_hashes (entity, hash) VALUES ($1, $2) ON CONFLICT (entity) DO UPDATE SET hash = excluded.hash",
        )
        .bind(entity)
        .bind(hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Imports each config.json entity (client settings, each provider with its keys, each
    /// plugin) whose content changed since the last import; unchanged ones keep the stored
    /// version, including API edits and API deletions.
    pub async fn seed_from_file(&self, file: &ConfigFile) -> Result<SeedReport> {
        let mut report = SeedReport::default();
        let client_hash = content_hash(&file.client);
        if self.seed_hash("client").await?.as_deref() != Some(client_hash.as_str()) {
            self.set_client_config(&file.client).await?;
            self.set_seed_hash("client", &client_hash).await?;
            report.imported.push("client".to_owned());
        } else {
            report.kept.push("client".to_owned());
        }
        for (name, entry) in &file.providers {
            let entity = format!("provider:{name}");
            let hash = content_hash(entry);
            if self.seed_hash(&entity).await?.as_deref() == Some(hash.as_str()) {
                report.kept.push(entity);
                continue;
            }
            self.replace_provider(name, &entry.settings(), &entry.keys)
                .await?;
            self.set_seed_hash(&entity, &hash).await?;
            report.imported.push(entity);
        }
        for plugin in &file.plugins {
            let entity = format!("plugin:{}", plugin.name);
            let hash = content_hash(plugin);
            if self.seed_hash(&entity).await?.as_deref() == Some(hash.as_str()) {
                report.kept.push(entity);
                continue;
            }
            let record = PluginRecord {
                name: plugin.name.clone(),
                enabled: plugin.enabled,
                path: plugin.path.clone().filter(|p| !p.is_empty()),
                config: plugin
                    .config
                    .clone()
                    .unwrap_or(Value::Object(Default::default())),
                placement: plugin.placement.clone(),
                order: plugin.order,
            };
            if self.get_plugin(&record.name).await?.is_some() {
                self.update_plugin(&record).await?;
            } else {
                self.insert_plugin(&record).await?;
            }
            self.set_seed_hash(&entity, &hash).await?;
            report.imported.push(entity);
        }
        Ok(report)
    }

    /// Writes a provider and exactly these keys, in one transaction.
    pub async fn replace_provider(
        &self,
        name: &str,
        settings: &ProviderSettings,
        keys: &[KeyConfig],
    ) -> Result<()> {
        let json = serde_json::to_string(settings).map_err(|e| corrupt("provider", e))?;
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO providers (name, settings_json, created_at, updated_at) VALUES ($1, $2, $3, $3) ON CONFLICT (name) DO UPDATE SET settings_json = excluded.settings_json, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(json)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM provider_keys WHERE provider = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        for (i, key) in keys.iter().enumerate() {
            let kj = serde_json::to_string(key).map_err(|e| corrupt("key", e))?;
            sqlx::query(
                "INSERT INTO provider_keys (id, provider, position, key_json) VALUES ($1, $2, $3, $4)",
            )
            .bind(key.id.clone().unwrap_or_default())
            .bind(name)
            .bind(i as i64)
            .bind(kj)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.bump_revision().await
    }
}

fn plugin_from_row(row: sqlx::sqlite::SqliteRow) -> Result<PluginRecord> {
    let name: String = row.try_get("name")?;
    let config_json: String = row.try_get("config_json")?;
    let config =
        serde_json::from_str(&config_json).map_err(|e| corrupt(format!("plugin {name}"), e))?;
    Ok(PluginRecord {
        enabled: row.try_get("enabled")?,
        path: row.try_get("path")?,
        config,
        placement: row.try_get("placement")?,
        order: row.try_get("ord")?,
        name,
    })
}
