//! The management API (`/api/*`), one module per resource.

pub mod plugins;
pub mod providers;
