//! The `causeway` binary: parses flags, sets up logging, starts the gateway and waits for
//! Ctrl-C or SIGTERM to shut it down gracefully.

use std::path::PathBuf;
use std::process::ExitCode;

use causeway_server::{Gateway, GatewayOptions};
use clap::Parser;

mod allocator;

/// Causeway: an AI gateway. One OpenAI-compatible endpoint in front of many LLM providers,
/// with key rotation, retries, fallbacks, streaming and a management API.
///
/// With no config.json in the app dir, providers whose usual key variable is set
/// (OPENAI_API_KEY, ANTHROPIC_API_KEY, GROQ_API_KEY, MISTRAL_API_KEY, DEEPSEEK_API_KEY,
/// OPENROUTER_API_KEY, XAI_API_KEY, CEREBRAS_API_KEY, FIREWORKS_API_KEY, PERPLEXITY_API_KEY,
/// TOGETHER_API_KEY) are configured automatically.
#[derive(Debug, Parser)]
#[command(name = "causeway", version, about, long_about)]
struct Args {
    /// Directory for config.json, config.db and logs.db (created if missing).
    #[arg(long, env = "CAUSEWAY_APP_DIR", default_value = "./causeway-data")]
    app_dir: PathBuf,

    /// Address to listen on. A non-loopback address needs --insecure-no-auth until
    /// authentication is configured.
    #[arg(long, env = "CAUSEWAY_HOST", default_value = "127.0.0.1")]
    host: String,

    /// Port to listen on (0 picks a free port; the chosen URL is printed).
    #[arg(long, env = "CAUSEWAY_PORT", default_value_t = 8080)]
    port: u16,

    /// Config file to use instead of <app-dir>/config.json (Bifrost's config.json format;
    /// see docs/config.md). It must exist when given.
    #[arg(long, env = "CAUSEWAY_CONFIG")]
    config: Option<PathBuf>,

    /// Log level: error, warn, info, debug or trace; or a tracing filter such as
    /// "info,causeway_engine=debug". RUST_LOG, when set, wins.
    #[arg(long, env = "CAUSEWAY_LOG_LEVEL", default_value = "info")]
    log_level: String,

    /// Log format: "pretty" (human-readable) or "json".
    #[arg(long, env = "CAUSEWAY_LOG_STYLE", default_value = "pretty", value_parser = ["pretty", "json"])]
    log_style: String,

    /// Threads that serve connections, each with its own event loop (thread per core: a
    /// request and its upstream connection stay on one thread). 0 = one per CPU core.
    #[arg(long, env = "CAUSEWAY_THREADS", default_value_t = 0)]
    threads: usize,

    /// Serve the management API to any client that can reach the port, without
    /// authentication, and allow binding a non-loopback address. Only on trusted networks.
    #[arg(long, env = "CAUSEWAY_INSECURE_NO_AUTH")]
    insecure_no_auth: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args);
    tracing::debug!(allocator = %allocator::describe(), "memory allocator");
    // The serve threads run their own runtimes; this one runs start-up and background work
    // (log writer, retention, usage persistence, exporters), which needs little.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("causeway-control")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let opts = GatewayOptions {
        app_dir: args.app_dir,
        config_path: args.config,
        host: args.host,
        port: args.port,
        insecure_no_auth: args.insecure_no_auth,
        env_autoconfig: true,
        serve_threads: match args.threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        },
        on_serve_thread_quiet: Some(allocator::release_thread_memory),
    };
    let gateway = match Gateway::start(opts).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("Causeway listening on {}", gateway.url());
    tracing::info!(url = %gateway.url(), "listening");
    wait_for_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    gateway.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_logging(args: &Args) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&args.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_style == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
