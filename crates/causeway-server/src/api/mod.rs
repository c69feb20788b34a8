//! The management API (`/api/*`), one module per resource.

pub mod governance;
pub mod logs;
pub mod plugins;
pub mod providers;
pub mod session;
