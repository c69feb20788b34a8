//! The `mock-provider` binary: runs the fake upstream standalone for load benchmarks and manual
//! testing. Parses flags (or `MOCK_*` env vars), starts the server, waits for Ctrl-C.
//! Records no requests, so memory stays flat under any load.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use mock_provider::{MockConfig, MockServer, repeat_to_bytes};

/// Fake OpenAI and Anthropic upstream with latency, streaming and fault injection.
///
/// Serves POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/messages,
/// GET /v1/models, GET /_mock/health and GET /_mock/stats over HTTP/1.1 and h2c.
#[derive(Debug, Parser)]
#[command(name = "mock-provider", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "MOCK_HOST", default_value = "127.0.0.1")]
    host: IpAddr,

    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "MOCK_PORT", default_value_t = 8000)]
    port: u16,

    /// Delay in milliseconds before the response headers of every API response.
    #[arg(long, env = "MOCK_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,

    /// Number of content chunks in a streamed answer.
    #[arg(long, env = "MOCK_STREAM_CHUNKS", default_value_t = 8)]
    stream_chunks: usize,

    /// Pause in milliseconds between consecutive content chunks of a stream.
    #[arg(long, env = "MOCK_STREAM_INTERVAL_MS", default_value_t = 0)]
    stream_interval_ms: u64,

    /// Fraction (0 to 1) of inference requests answered with --failure-status.
    #[arg(long, env = "MOCK_FAILURE_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    failure_rate: f64,

    /// HTTP status used for injected failures.
    #[arg(long, env = "MOCK_FAILURE_STATUS", default_value_t = 500,
          value_parser = clap::value_parser!(u16).range(100..=599))]
    failure_status: u16,

    /// Fail the first N inference requests with --failure-status, then succeed.
    #[arg(long, env = "MOCK_FAIL_FIRST", default_value_t = 0)]
    fail_first: usize,

    /// In streams, break the connection after this many content chunks.
    #[arg(long, env = "MOCK_STREAM_FAIL_AFTER")]
    stream_fail_after: Option<usize>,

    /// Assistant text returned by every answer [default: "Hello from mock-provider"].
    #[arg(long, env = "MOCK_CONTENT")]
    content: Option<String>,

    /// Repeat the content text until the answer is about this many bytes.
    #[arg(long, env = "MOCK_CONTENT_BYTES")]
    content_bytes: Option<usize>,

    /// Do not record requests. This is already the binary's default (it has no way to read
    /// recordings back); accepted so benchmark scripts can be explicit.
    #[arg(long, env = "MOCK_NO_RECORD")]
    no_record: bool,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s.parse().map_err(|e| format!("not a number: {e}"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err("must be between 0 and 1".to_owned())
    }
}

impl Args {
    fn config(&self) -> MockConfig {
        let defaults = MockConfig::default();
        let mut content = self.content.clone().unwrap_or(defaults.content.clone());
        if let Some(bytes) = self.content_bytes {
            content = repeat_to_bytes(&content, bytes);
        }
        MockConfig {
            latency: Duration::from_millis(self.latency_ms),
            stream_chunks: self.stream_chunks,
            stream_interval: Duration::from_millis(self.stream_interval_ms),
            content,
            failure_rate: self.failure_rate,
            failure_status: self.failure_status,
            fail_first: self.fail_first,
            stream_fail_after: self.stream_fail_after,
            record_requests: false,
            ..defaults
        }
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    let server = MockServer::start_on(SocketAddr::new(args.host, args.port), args.config()).await?;
    println!("mock-provider listening on {}", server.base_url());
    tokio::signal::ctrl_c().await?;
    drop(server);
    Ok(())
}
