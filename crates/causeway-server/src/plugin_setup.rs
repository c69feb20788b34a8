//! Which plugins this build knows: the built-in constructors and the WebAssembly loader,
//! assembled into the `PluginLoader` the registry uses.

use std::sync::Arc;

use causeway_plugins::builtin::mocker::Mocker;
use causeway_plugins::builtin::request_guard::RequestGuard;
use causeway_plugins::{LoadError, Plugin, PluginLoader};

use crate::governance::{Governance, GovernancePlugin};

pub fn plugin_loader(
    governance: Arc<Governance>,
    telemetry: Arc<crate::telemetry::TelemetryHub>,
    log_writer: Option<causeway_logstore::LogWriter>,
) -> PluginLoader {
    let telemetry_hub = telemetry.clone();
    let otel_stats = telemetry.otel.clone();
    let mut loader = PluginLoader::new()
        .with_builtin(
            "governance",
            Arc::new(move |cfg| {
                if cfg.as_object().is_some_and(|m| !m.is_empty()) {
                    return Err(LoadError::InvalidConfig(
                        "the governance plugin takes no config: manage virtual keys, teams and customers under /api/governance".to_owned(),
                    ));
                }
                Ok(Arc::new(GovernancePlugin::new(governance.clone())) as Arc<dyn Plugin>)
            }),
        )
        .with_builtin(
            "mocker",
            Arc::new(|cfg| {
                Mocker::from_config(cfg)
                    .map(|p| Arc::new(p) as Arc<dyn Plugin>)
                    .map_err(|e| LoadError::InvalidConfig(e.to_string()))
            }),
        )
        .with_builtin(
            "telemetry",
            Arc::new(move |cfg| {
                crate::telemetry::TelemetryPlugin::from_config(cfg, &telemetry_hub)
                    .map(|p| Arc::new(p) as Arc<dyn Plugin>)
            }),
        )
        .with_builtin(
            "logging",
            Arc::new(move |cfg| match &log_writer {
                Some(w) => crate::logging::LoggingPlugin::from_config(w.clone(), cfg)
                    .map(|p| Arc::new(p) as Arc<dyn Plugin>),
                None => Err(LoadError::InvalidConfig(
                    "the logs store is disabled (logs_store.enabled: false in config.json); enable it and restart to keep request logs".to_owned(),
                )),
            }),
        )
        .with_builtin(
            "otel",
            Arc::new(move |cfg| {
                crate::otel::OtelPlugin::from_config(cfg, &otel_stats)
                    .map(|p| Arc::new(p) as Arc<dyn Plugin>)
            }),
        )
        .with_builtin(
            "request_guard",
            Arc::new(|cfg| {
                RequestGuard::from_config(cfg)
                    .map(|p| Arc::new(p) as Arc<dyn Plugin>)
                    .map_err(|e| LoadError::InvalidConfig(e.to_string()))
            }),
        );
    match causeway_plugins::wasm::module_loader(causeway_wasm_host::WasmLimits::default()) {
        Ok(modules) => loader = loader.with_module_loader(modules),
        Err(e) => {
            tracing::error!(error = %e, "WebAssembly runtime unavailable: custom plugins cannot load")
        }
    }
    loader
}
