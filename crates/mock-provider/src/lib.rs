//! mock-provider: a fake OpenAI and Anthropic upstream for Causeway's integration tests and load
//! benchmarks, with latency, streaming and fault injection. Owns only the fake; it must never
//! depend on the gateway crates, so tests exercise the gateway over real HTTP.

mod anthropic;
mod body;
mod config;
mod handler;
mod openai;
mod reply;
mod request;
mod server;
mod state;
mod text;

pub use config::{KeyBehaviour, MockConfig};
pub use server::MockServer;
pub use state::RecordedRequest;
pub use text::repeat_to_bytes;
