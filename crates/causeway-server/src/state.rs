//! Shared server state: the engine, the config store, the live plugin chain and client
//! settings (both immutable snapshots behind `ArcSwap`), and how `/api` is protected.

use std::sync::Arc;

use arc_swap::ArcSwap;
use causeway_config::{ClientConfig, ProviderEntry};
use causeway_core::GatewayError;
use causeway_engine::{Engine, ProviderInput};
use causeway_plugins::{PluginChain, PluginRegistry};
use causeway_store::{ConfigStore, StoreError, StoredProvider};

/// Who may call the management API while no real auth is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagementAccess {
    /// Only clients connecting from a loopback address.
    LoopbackOnly,
    /// Anyone who can reach the port (`--insecure-no-auth`).
    Open,
}

pub struct AppState {
    pub engine: Arc<Engine>,
    /// `None` when `config_store.enabled` is false: management writes are refused.
    pub store: Option<ConfigStore>,
    /// The live plugin chain (written by `plugins`, read once per request).
    pub chain: Arc<ArcSwap<PluginChain>>,
    pub plugins: Arc<PluginRegistry>,
    pub auth: crate::auth::AuthSetup,
    pub governance: Arc<crate::governance::Governance>,
    pub client: ArcSwap<ClientConfig>,
    pub access: ManagementAccess,
    /// Serialises management writes so "write, then rebuild the snapshot" never interleaves.
    pub write_lock: tokio::sync::Mutex<()>,
    /// Providers as loaded (file-only mode keeps them here; with a store, a cache of it).
    pub providers: ArcSwap<Vec<StoredProvider>>,
    /// Live metrics of the `telemetry` plugin (and the `otel` exporter's counters).
    pub telemetry: Arc<crate::telemetry::TelemetryHub>,
    /// Request logs (store, writer, retention); `None` when `logs_store.enabled` is false.
    pub logs: Option<Arc<crate::logging::LogsRuntime>>,
    /// The runtime the gateway was started on. Management requests run there, so what they
    /// start (plugin exporters and clean-ups, store connections) outlives the serve threads
    /// and is still running when shutdown flushes it.
    pub control: tokio::runtime::Handle,
}

impl AppState {
    pub fn store(&self) -> Result<&ConfigStore, GatewayError> {
        self.store.as_ref().ok_or_else(|| {
            GatewayError::bad_request(
                "this change needs the config store, which is disabled (config_store.enabled: false in config.json)",
            )
            .with_type("config_store_disabled")
        })
    }

    /// Re-reads providers from the store and swaps in a new routing table.
    pub async fn reload_providers(&self) -> Result<(), GatewayError> {
        let store = self.store()?;
        let providers = store.list_providers().await.map_err(store_error)?;
        self.apply_providers(providers)
    }

    /// Would this provider set work? (Dry run of `apply_providers`.)
    pub fn check_providers(&self, providers: &[StoredProvider]) -> Result<(), GatewayError> {
        let client = self.client.load();
        let inputs = providers.iter().map(|p| {
            (
                &p.name,
                ProviderInput {
                    settings: &p.settings,
                    keys: &p.keys,
                },
            )
        });
        self.engine.check(inputs, &client).map_err(|e| {
            let err = GatewayError::bad_request(e.to_string());
            if e.path.is_empty() {
                err
            } else {
                err.with_param(e.path.clone())
            }
        })
    }

    pub fn apply_providers(&self, providers: Vec<StoredProvider>) -> Result<(), GatewayError> {
        let client = self.client.load();
        let inputs = providers.iter().map(|p| {
            (
                &p.name,
                ProviderInput {
                    settings: &p.settings,
                    keys: &p.keys,
                },
            )
        });
        self.engine
            .apply(inputs, &client)
            .map_err(|e| GatewayError::bad_request(e.to_string()))?;
        self.providers.store(Arc::new(providers));
        Ok(())
    }
}

/// Store failures in API terms: conflicts and misses keep their meaning, the rest is a 500
/// whose message names the store (no SQL, no values).
pub fn store_error(e: StoreError) -> GatewayError {
    match e {
        StoreError::Conflict(what) => GatewayError::conflict(format!("{what} already exists")),
        StoreError::NotFound(what) => GatewayError::not_found(format!("{what} not found")),
        other => {
            tracing::error!(error = %other, "config store failure");
            GatewayError::internal(format!("{other}"))
        }
    }
}

/// Providers from a config file, for file-only mode (no store).
pub fn providers_from_file(
    providers: &std::collections::BTreeMap<String, ProviderEntry>,
) -> Vec<StoredProvider> {
    providers
        .iter()
        .map(|(name, e)| StoredProvider {
            name: name.clone(),
            settings: e.settings(),
            keys: e.keys.clone(),
        })
        .collect()
}
