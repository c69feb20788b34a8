//! Causeway configuration: the `config.json` schema (Bifrost's format), its loading and
//! validation, and the catalog of built-in providers. Pure: reads no files itself.

pub mod catalog;
pub mod load;
pub mod schema;

pub use catalog::{Family, ProviderSpec};
pub use load::{ConfigError, LoadedConfig, ResolvedProvider, parse_config, resolve_provider};
pub use schema::*;
