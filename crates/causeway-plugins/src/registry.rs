//! The plugin registry: every defined plugin (built-in or WebAssembly), its lifecycle status
//! and recent log lines, and the live `PluginChain` built from the enabled ones. A change
//! builds a new chain and swaps it in; requests in flight keep the chain they started with,
//! and a replaced instance is cleaned up only after they let go of it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::chain::{ChainEntry, PluginChain, PluginHealth};
use crate::plugin::{HookSet, Plugin};

/// Where a plugin sits in the chain; groups run in this order, then by `order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Placement {
    PreBuiltin,
    Builtin,
    PostBuiltin,
}

impl Placement {
    pub fn parse(s: &str) -> Option<Placement> {
        match s {
            "pre_builtin" => Some(Placement::PreBuiltin),
            "builtin" => Some(Placement::Builtin),
            "post_builtin" => Some(Placement::PostBuiltin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Placement::PreBuiltin => "pre_builtin",
            Placement::Builtin => "builtin",
            Placement::PostBuiltin => "post_builtin",
        }
    }
}

/// A plugin definition as stored and as the API accepts it.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    pub name: String,
    pub enabled: bool,
    pub path: Option<String>,
    pub config: Value,
    pub placement: Option<String>,
    pub order: Option<i64>,
}

/// Why a plugin could not be loaded; decides the HTTP status the API answers with.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadError {
    /// The plugin rejected its config (400).
    InvalidConfig(String),
    /// The path is missing, not a file, native code, or not a WebAssembly module (400).
    InvalidModule(String),
    /// The module is valid but failed to start (init failed, trapped or timed out) (500).
    Failed(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::InvalidConfig(m) => write!(f, "Invalid plugin configuration: {m}"),
            LoadError::InvalidModule(m) | LoadError::Failed(m) => f.write_str(m),
        }
    }
}

/// Builds a built-in plugin from its config.
pub type BuiltinCtor = Arc<dyn Fn(&Value) -> Result<Arc<dyn Plugin>, LoadError> + Send + Sync>;

/// Loads a custom plugin from a path with its config (WebAssembly); may block for a while
/// (compilation), so the registry runs it off the async runtime.
pub type ModuleLoader = Arc<
    dyn Fn(&Path, &Value, Arc<PluginHealth>) -> Result<Arc<dyn Plugin>, LoadError> + Send + Sync,
>;

/// How plugins come to life: the built-in constructors and the custom-module loader.
#[derive(Clone, Default)]
pub struct PluginLoader {
    builtins: BTreeMap<&'static str, BuiltinCtor>,
    modules: Option<ModuleLoader>,
}

impl PluginLoader {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_builtin(mut self, name: &'static str, ctor: BuiltinCtor) -> Self {
        self.builtins.insert(name, ctor);
        self
    }

    pub fn with_module_loader(mut self, loader: ModuleLoader) -> Self {
        self.modules = Some(loader);
        self
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtins.contains_key(name)
    }

    pub fn builtin_names(&self) -> Vec<&'static str> {
        self.builtins.keys().copied().collect()
    }
}

#[derive(Clone)]
enum Runtime {
    Disabled,
    Loading,
    Active {
        plugin: Arc<dyn Plugin>,
        hooks: HookSet,
        actual_name: String,
    },
    Failed,
}

#[derive(Clone)]
struct Slot {
    spec: PluginSpec,
    runtime: Runtime,
    health: Arc<PluginHealth>,
}

/// `status` of the API's plugin object.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PluginStatus {
    pub name: String,
    pub status: &'static str,
    pub logs: Vec<String>,
    pub types: Vec<&'static str>,
}

/// The API's plugin object (the seed's shape).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PluginView {
    pub name: String,
    #[serde(rename = "actualName")]
    pub actual_name: String,
    pub enabled: bool,
    pub config: Value,
    #[serde(rename = "isCustom")]
    pub is_custom: bool,
    pub path: Option<String>,
    pub placement: &'static str,
    pub order: i64,
    pub status: PluginStatus,
}

pub struct PluginRegistry {
    loader: PluginLoader,
    live: Arc<ArcSwap<PluginChain>>,
    slots: tokio::sync::Mutex<Vec<Slot>>,
    /// Read-only copy for listing without waiting behind a slow load.
    snapshot: ArcSwap<Vec<Slot>>,
}

const MAX_NAME: usize = 64;

pub fn validate_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("Plugin name is required".to_owned());
    }
    if name.len() > MAX_NAME
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(format!(
            "Invalid plugin name {name:?}: use letters, digits, '_', '-' and '.' (at most {MAX_NAME})"
        ));
    }
    Ok(())
}

impl PluginRegistry {
    pub fn new(loader: PluginLoader, live: Arc<ArcSwap<PluginChain>>) -> Self {
        PluginRegistry {
            loader,
            live,
            slots: tokio::sync::Mutex::new(Vec::new()),
            snapshot: ArcSwap::from_pointee(Vec::new()),
        }
    }

    pub fn loader(&self) -> &PluginLoader {
        &self.loader
    }

    pub fn chain(&self) -> Arc<PluginChain> {
        self.live.load_full()
    }

    pub fn default_placement(&self, name: &str) -> Placement {
        if self.loader.is_builtin(name) {
            Placement::Builtin
        } else {
            Placement::PostBuiltin
        }
    }

    /// Checks a definition without loading it: name, placement, path shape and existence.
    /// Built-in configs are checked by constructing the plugin, which is cheap.
    pub fn validate(&self, spec: &PluginSpec) -> Result<(), LoadError> {
        validate_name(&spec.name).map_err(LoadError::InvalidConfig)?;
        if let Some(p) = &spec.placement
            && Placement::parse(p).is_none()
        {
            return Err(LoadError::InvalidConfig(format!(
                "Invalid placement value {p:?}. Must be 'pre_builtin', 'builtin' or 'post_builtin'"
            )));
        }
        if !spec.config.is_object() && !spec.config.is_null() {
            return Err(LoadError::InvalidConfig(
                "config must be a JSON object".to_owned(),
            ));
        }
        if self.loader.is_builtin(&spec.name) {
            return Ok(());
        }
        let path = spec.path.as_deref().unwrap_or("");
        if path.is_empty() {
            return Err(LoadError::InvalidModule(format!(
                "{:?} is not a built-in plugin ({}), so it needs a path to a WebAssembly module (.wasm or .wat)",
                spec.name,
                self.loader.builtin_names().join(", ")
            )));
        }
        check_module_path(Path::new(path))
    }

    /// Installs definitions at start-up. A plugin that fails to load is kept with status
    /// `error` (and logged) so the gateway still starts and the API shows why.
    pub async fn load_all(&self, specs: Vec<PluginSpec>) {
        let mut slots = self.slots.lock().await;
        for spec in specs {
            let health = Arc::new(PluginHealth::default());
            let runtime = match self.validate(&spec) {
                Err(e) => {
                    let msg = format!("error loading plugin {}: {e}", spec.name);
                    tracing::error!("{msg}");
                    health.log(msg);
                    Runtime::Failed
                }
                Ok(()) => self.start(&spec, &health, false).await.unwrap_or_else(|e| {
                    tracing::error!(plugin = %spec.name, error = %e, "plugin failed to load at start-up; it stays in status error");
                    Runtime::Failed
                }),
            };
            slots.retain(|s| s.spec.name != spec.name);
            slots.push(Slot {
                spec,
                runtime,
                health,
            });
        }
        self.publish(&slots);
    }

    /// Adds a new plugin (the caller has checked it does not exist and persisted it).
    pub async fn create(&self, spec: PluginSpec) -> Result<PluginView, LoadError> {
        self.validate(&spec)?;
        let mut slots = self.slots.lock().await;
        let health = Arc::new(PluginHealth::default());
        slots.retain(|s| s.spec.name != spec.name);
        // Visible as `loading` while a module compiles; not in the chain yet.
        slots.push(Slot {
            spec: spec.clone(),
            runtime: Runtime::Loading,
            health: health.clone(),
        });
        self.publish(&slots);
        let runtime = match self.start(&spec, &health, false).await {
            Ok(r) => r,
            Err(e) => {
                slots.retain(|s| s.spec.name != spec.name);
                self.publish(&slots);
                return Err(e);
            }
        };
        if let Some(slot) = slots.iter_mut().find(|s| s.spec.name == spec.name) {
            slot.runtime = runtime;
        }
        self.publish(&slots);
        self.view_in(&slots, &spec.name)
            .ok_or_else(|| LoadError::Failed("plugin vanished after creation".to_owned()))
    }

    /// Replaces a plugin's definition and re-initialises it. The new instance is built first
    /// and swapped in only if it starts; the old one keeps serving requests already in flight
    /// and is cleaned up after them. If the new one fails, nothing changes (the failure is
    /// recorded in the plugin's logs) and the error is returned.
    pub async fn update(&self, spec: PluginSpec) -> Result<PluginView, LoadError> {
        self.validate(&spec)?;
        let mut slots = self.slots.lock().await;
        let idx = slots.iter().position(|s| s.spec.name == spec.name);
        let health = idx
            .map(|i| slots[i].health.clone())
            .unwrap_or_else(|| Arc::new(PluginHealth::default()));
        let old = idx.map(|i| slots[i].runtime.clone());
        let runtime = self.start(&spec, &health, old.is_some()).await?;
        let slot = Slot {
            spec: spec.clone(),
            runtime,
            health,
        };
        match idx {
            Some(i) => slots[i] = slot,
            None => slots.push(slot),
        }
        self.publish(&slots);
        if let Some(Runtime::Active { plugin, .. }) = old {
            cleanup_after_drain(spec.name.clone(), plugin);
        }
        self.view_in(&slots, &spec.name)
            .ok_or_else(|| LoadError::Failed("plugin vanished after update".to_owned()))
    }

    /// Removes a plugin; its `cleanup` runs once in-flight requests no longer use it.
    pub async fn remove(&self, name: &str) -> bool {
        let mut slots = self.slots.lock().await;
        let Some(idx) = slots.iter().position(|s| s.spec.name == name) else {
            return false;
        };
        let slot = slots.remove(idx);
        self.publish(&slots);
        if let Runtime::Active { plugin, .. } = slot.runtime {
            cleanup_after_drain(name.to_owned(), plugin);
        }
        true
    }

    pub fn list(&self) -> Vec<PluginView> {
        let slots = self.snapshot.load();
        slots.iter().map(|s| self.view(s)).collect()
    }

    pub fn get(&self, name: &str) -> Option<PluginView> {
        let slots = self.snapshot.load();
        self.view_in(&slots, name)
    }

    /// The stored config of a plugin (unredacted), for merging updates.
    pub fn spec(&self, name: &str) -> Option<PluginSpec> {
        self.snapshot
            .load()
            .iter()
            .find(|s| s.spec.name == name)
            .map(|s| s.spec.clone())
    }

    /// Cleans every plugin up (shutdown).
    pub async fn shutdown(&self) {
        let mut slots = self.slots.lock().await;
        let taken: Vec<Slot> = std::mem::take(&mut *slots);
        self.publish(&slots);
        for s in taken {
            if let Runtime::Active { plugin, .. } = s.runtime
                && let Err(e) = plugin.cleanup().await
            {
                tracing::warn!(plugin = %s.spec.name, error = %e.0, "plugin cleanup failed");
            }
        }
    }

    async fn start(
        &self,
        spec: &PluginSpec,
        health: &Arc<PluginHealth>,
        reload: bool,
    ) -> Result<Runtime, LoadError> {
        if !spec.enabled {
            health.log(format!("plugin {} is disabled", spec.name));
            return Ok(Runtime::Disabled);
        }
        let config = if spec.config.is_null() {
            Value::Object(Map::new())
        } else {
            spec.config.clone()
        };
        let loaded = if let Some(ctor) = self.loader.builtins.get(spec.name.as_str()) {
            ctor(&config)
        } else {
            let Some(loader) = self.loader.modules.clone() else {
                return Err(LoadError::InvalidModule(
                    "custom plugins are not supported in this build".to_owned(),
                ));
            };
            let path = std::path::PathBuf::from(spec.path.clone().unwrap_or_default());
            let h = health.clone();
            tokio::task::spawn_blocking(move || loader(&path, &config, h))
                .await
                .unwrap_or_else(|e| Err(LoadError::Failed(format!("loader panicked: {e}"))))
        };
        match loaded {
            Ok(plugin) => {
                let hooks = plugin.hooks();
                let actual_name = plugin.name().to_owned();
                health.log(format!(
                    "plugin {} {} successfully",
                    spec.name,
                    if reload { "reloaded" } else { "initialized" }
                ));
                health.success();
                Ok(Runtime::Active {
                    plugin,
                    hooks,
                    actual_name,
                })
            }
            Err(e) => {
                health.log(format!("error loading plugin {}: {e}", spec.name));
                Err(e)
            }
        }
    }

    /// Builds the chain from active plugins and swaps it in, then refreshes the snapshot.
    fn publish(&self, slots: &[Slot]) {
        let mut active: Vec<(Placement, i64, usize, ChainEntry)> = Vec::new();
        for (i, s) in slots.iter().enumerate() {
            if let Runtime::Active { plugin, hooks, .. } = &s.runtime {
                active.push((
                    self.placement_of(&s.spec),
                    s.spec.order.unwrap_or(0),
                    i,
                    ChainEntry {
                        name: s.spec.name.clone(),
                        plugin: plugin.clone(),
                        hooks: *hooks,
                        health: s.health.clone(),
                    },
                ));
            }
        }
        active.sort_by_key(|a| (a.0, a.1, a.2));
        self.live.store(Arc::new(PluginChain::new(
            active.into_iter().map(|a| a.3).collect(),
        )));
        self.snapshot.store(Arc::new(slots.to_vec()));
    }

    fn placement_of(&self, spec: &PluginSpec) -> Placement {
        spec.placement
            .as_deref()
            .and_then(Placement::parse)
            .unwrap_or_else(|| self.default_placement(&spec.name))
    }

    fn view_in(&self, slots: &[Slot], name: &str) -> Option<PluginView> {
        slots
            .iter()
            .find(|s| s.spec.name == name)
            .map(|s| self.view(s))
    }

    fn view(&self, s: &Slot) -> PluginView {
        let is_custom = !self.loader.is_builtin(&s.spec.name);
        let (status, types, actual) = match &s.runtime {
            Runtime::Disabled => ("disabled", Vec::new(), None),
            Runtime::Loading => ("loading", Vec::new(), None),
            Runtime::Failed => ("error", Vec::new(), None),
            Runtime::Active {
                hooks, actual_name, ..
            } => (
                if s.health.failing() {
                    "error"
                } else {
                    "active"
                },
                hooks.types(),
                Some(actual_name.clone()),
            ),
        };
        PluginView {
            name: s.spec.name.clone(),
            actual_name: actual.unwrap_or_else(|| s.spec.name.clone()),
            enabled: s.spec.enabled,
            config: redact_config(&s.spec.config),
            is_custom,
            path: if is_custom { s.spec.path.clone() } else { None },
            placement: self.placement_of(&s.spec).as_str(),
            order: s.spec.order.unwrap_or(0),
            status: PluginStatus {
                name: s.spec.name.clone(),
                status,
                logs: if matches!(s.runtime, Runtime::Disabled) {
                    Vec::new()
                } else {
                    s.health.logs()
                },
                types,
            },
        }
    }
}

/// Native plugin extensions we refuse with an explanation.
const NATIVE_EXTENSIONS: &[&str] = &["so", "dylib", "dll"];

fn check_module_path(path: &Path) -> Result<(), LoadError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if NATIVE_EXTENSIONS.contains(&ext.as_str()) {
        return Err(LoadError::InvalidModule(format!(
            "{} is a native plugin: Causeway does not load native (.so/.dylib/.dll) plugins, which break on every version skew; build the plugin as WebAssembly (.wasm) with the ABI in docs/plugins.md",
            path.display()
        )));
    }
    let meta = std::fs::metadata(path).map_err(|e| {
        LoadError::InvalidModule(format!(
            "plugin path {} cannot be read: {e}",
            path.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(LoadError::InvalidModule(format!(
            "plugin path {} is not a file",
            path.display()
        )));
    }
    Ok(())
}

/// Runs `cleanup` once no request holds the instance any more (or after 30 s).
fn cleanup_after_drain(name: String, plugin: Arc<dyn Plugin>) {
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while Arc::strong_count(&plugin) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match plugin.cleanup().await {
            Ok(()) => tracing::debug!(plugin = %name, "plugin cleaned up"),
            Err(e) => tracing::warn!(plugin = %name, error = %e.0, "plugin cleanup failed"),
        }
    });
}

/// Config keys whose string values are secrets.
fn sensitive_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    [
        "key",
        "secret",
        "token",
        "password",
        "authorization",
        "credential",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// The config with secret-looking string values masked (env references stay visible).
pub fn redact_config(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, val)| {
                    let red = match val {
                        Value::String(s) if sensitive_key(k) && !s.starts_with("env.") => {
                            Value::String(causeway_core::secret::redact(s))
                        }
                        other => redact_config(other),
                    };
                    (k.clone(), red)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redact_config).collect()),
        other => other.clone(),
    }
}

pub use causeway_core::secret::restore_redacted;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redaction_round_trip() {
        let stored = json!({"api_key": "sk-1234567890abcdef", "nested": {"token": "abcdefghijkl"}, "mode": "fast", "ref_key": "env.X"});
        let shown = redact_config(&stored);
        assert_eq!(shown["mode"], "fast");
        assert_eq!(shown["ref_key"], "env.X");
        assert_ne!(shown["api_key"], stored["api_key"]);
        let mut sent_back = shown.clone();
        sent_back["mode"] = json!("slow");
        restore_redacted(&mut sent_back, &stored);
        assert_eq!(sent_back["api_key"], stored["api_key"]);
        assert_eq!(sent_back["nested"]["token"], "abcdefghijkl");
        assert_eq!(sent_back["mode"], "slow");
    }

    #[test]
    fn names_and_native_paths() {
        assert!(validate_name("my_plugin-1.0").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a b").is_err());
        let err = check_module_path(Path::new("/plugins/x.so")).unwrap_err();
        assert!(matches!(err, LoadError::InvalidModule(m) if m.contains("WebAssembly")));
        assert!(check_module_path(Path::new("/definitely/missing.wasm")).is_err());
    }
}
