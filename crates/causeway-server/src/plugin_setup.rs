//! Which plugins this build knows: the built-in constructors and the WebAssembly loader,
//! assembled into the `PluginLoader` the registry uses.

use std::sync::Arc;

use causeway_plugins::builtin::mocker::Mocker;
use causeway_plugins::builtin::request_guard::RequestGuard;
use causeway_plugins::{LoadError, Plugin, PluginLoader};

pub fn plugin_loader() -> PluginLoader {
    let mut loader = PluginLoader::new()
        .with_builtin(
            "mocker",
            Arc::new(|cfg| {
                Mocker::from_config(cfg)
                    .map(|p| Arc::new(p) as Arc<dyn Plugin>)
                    .map_err(|e| LoadError::InvalidConfig(e.to_string()))
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
