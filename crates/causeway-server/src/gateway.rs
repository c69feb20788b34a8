//! Start-up and serving: load config.json (or the environment), open and seed the config
//! store, build the first routing snapshot, bind the listener (refusing a non-loopback
//! address without auth), and run the accept loop with graceful shutdown.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::ConnectInfo;
use causeway_config::{ConfigFile, parse_config};
use causeway_engine::Engine;
use causeway_plugins::{PluginChain, PluginRegistry, PluginSpec};
use causeway_providers::ClientOptions;
use causeway_store::ConfigStore;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::state::{AppState, ManagementAccess, providers_from_file};

#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub app_dir: PathBuf,
    /// Defaults to `<app_dir>/config.json`; when given explicitly it must exist.
    pub config_path: Option<PathBuf>,
    pub host: String,
    pub port: u16,
    pub insecure_no_auth: bool,
    /// Configure providers from `OPENAI_API_KEY` etc. when there is no config.json.
    pub env_autoconfig: bool,
    /// Threads that accept and serve connections, each running its own single-threaded
    /// runtime (thread per core, like nginx's workers): a request and its upstream
    /// connection stay on one thread, with no cross-thread wake-ups. 0 serves on the
    /// caller's runtime instead.
    pub serve_threads: usize,
    /// Called on a serve thread once a second for the first few seconds in which it starts
    /// no request (see `QuietWatch`): the binary hands the thread's cached free memory back
    /// to the system there, so RSS returns to idle after a burst. Only with serve threads.
    pub on_serve_thread_quiet: Option<fn()>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            app_dir: PathBuf::from("causeway-data"),
            config_path: None,
            host: "127.0.0.1".to_owned(),
            port: 8080,
            insecure_no_auth: false,
            env_autoconfig: true,
            serve_threads: 0,
            on_serve_thread_quiet: None,
        }
    }
}

/// A start-up failure, worded for the operator.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// A running gateway.
pub struct Gateway {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    pub async fn start(opts: GatewayOptions) -> Result<Gateway, StartError> {
        let state = Arc::new(build_state(&opts).await?);
        let listener = bind(&opts, state.auth.authenticator.is_some()).await?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError(format!("reading the listen address: {e}")))?;
        let (tx, rx) = watch::channel(false);
        let app = crate::router(state.clone());
        let task = if opts.serve_threads == 0 {
            tokio::spawn(serve(listener, app, rx.clone()))
        } else {
            spawn_serve_threads(
                listener,
                app,
                rx.clone(),
                opts.serve_threads,
                opts.on_serve_thread_quiet,
            )?
        };
        if let Some(store) = state.store.clone() {
            tokio::spawn(persist_usage_loop(state.governance.clone(), store, rx));
        }
        Ok(Gateway {
            addr,
            state,
            shutdown: tx,
            task,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets in-flight requests finish (up to 10 s), closes the store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        self.state.plugins.shutdown().await;
        // After the plugins: the last requests' entries are queued by now.
        if let Some(logs) = &self.state.logs {
            logs.shutdown().await;
        }
        if let Some(store) = &self.state.store {
            self.state.governance.persist_usage(store).await;
            store.close().await;
        }
    }
}

/// Saves usage counters every few seconds so a crash loses little; stops at shutdown.
async fn persist_usage_loop(
    gov: Arc<crate::governance::Governance>,
    store: ConfigStore,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(crate::governance::PERSIST_EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => gov.persist_usage(&store).await,
            _ = shutdown.changed() => break,
        }
    }
}

async fn bind(opts: &GatewayOptions, auth_enabled: bool) -> Result<TcpListener, StartError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((opts.host.as_str(), opts.port))
        .await
        .map_err(|e| StartError(format!("cannot resolve --host {}: {e}", opts.host)))?
        .collect();
    let all_loopback = !addrs.is_empty() && addrs.iter().all(|a| is_loopback(a.ip()));
    if !all_loopback && !opts.insecure_no_auth && !auth_enabled {
        return Err(StartError(format!(
            "refusing to listen on {} without authentication: the management API would be open to the network. Configure auth_config, use --host 127.0.0.1, or pass --insecure-no-auth on a trusted network",
            opts.host
        )));
    }
    let mut last_err = None;
    for a in &addrs {
        match listen(*a) {
            Ok(l) => return Ok(l),
            Err(e) => last_err = Some((a, e)),
        }
    }
    Err(match last_err {
        Some((a, e)) => StartError(format!(
            "cannot listen on {a}: {e} (is another process using port {}? choose one with --port)",
            opts.port
        )),
        None => StartError(format!("--host {} resolved to no address", opts.host)),
    })
}

/// Runs `serve` on `n` threads, each with its own current-thread runtime, all accepting
/// from the one listening socket (whichever thread is free takes the next connection).
/// The returned task ends when every thread has finished.
fn spawn_serve_threads(
    listener: TcpListener,
    app: axum::Router,
    shutdown: watch::Receiver<bool>,
    n: usize,
    on_quiet: Option<fn()>,
) -> Result<tokio::task::JoinHandle<()>, StartError> {
    let shared = listener
        .into_std()
        .map_err(|e| StartError(format!("preparing the listener for serve threads: {e}")))?;
    let mut finished = Vec::with_capacity(n);
    for i in 0..n {
        let socket = shared
            .try_clone()
            .map_err(|e| StartError(format!("sharing the listener with serve threads: {e}")))?;
        let (app, shutdown) = (app.clone(), shutdown.clone());
        let (done, finished_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("causeway-serve-{i}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, thread = i, "cannot start a serve thread's runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    if let Some(release) = on_quiet {
                        // Ends with the runtime, when `serve` returns.
                        tokio::spawn(call_when_quiet(release));
                    }
                    match TcpListener::from_std(socket) {
                        Ok(listener) => serve(listener, app, shutdown).await,
                        Err(e) => tracing::error!(error = %e, thread = i, "cannot register the listener"),
                    }
                });
                let _ = done.send(());
            })
            .map_err(|e| StartError(format!("starting serve thread {i}: {e}")))?;
        finished.push(finished_rx);
    }
    Ok(tokio::spawn(async move {
        for f in finished {
            let _ = f.await;
        }
    }))
}

/// A listener with a deep accept queue: bursts of new connections (thousands of streams
/// opening at once) queue instead of being dropped and retried a second later.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v| v.is_loopback()),
    }
}

/// Reads config, opens and seeds the store, and builds the first snapshot.
pub async fn build_state(opts: &GatewayOptions) -> Result<AppState, StartError> {
    tokio::fs::create_dir_all(&opts.app_dir)
        .await
        .map_err(|e| {
            StartError(format!(
                "cannot create app dir {}: {e}",
                opts.app_dir.display()
            ))
        })?;
    let file = load_config_file(opts).await?;
    let store = open_store(opts, &file).await?;
    let engine = Arc::new(Engine::new(&ClientOptions::default()));
    let auth = build_auth(&file)?;
    let governance = Arc::new(crate::governance::Governance::new(pricing(&file)?));
    let chain = Arc::new(ArcSwap::from_pointee(PluginChain::empty()));
    let telemetry = Arc::new(crate::telemetry::TelemetryHub::new());
    let logs = crate::logging::open(&opts.app_dir, &file)
        .await?
        .map(Arc::new);
    let plugins = Arc::new(PluginRegistry::new(
        crate::plugin_setup::plugin_loader(
            governance.clone(),
            telemetry.clone(),
            logs.as_ref().map(|l| l.writer.clone()),
        ),
        chain.clone(),
    ));
    let state = AppState {
        engine,
        store,
        chain,
        plugins,
        auth,
        governance,
        client: ArcSwap::from_pointee(file.client.clone()),
        access: if opts.insecure_no_auth {
            ManagementAccess::Open
        } else {
            ManagementAccess::LoopbackOnly
        },
        write_lock: tokio::sync::Mutex::new(()),
        providers: ArcSwap::from_pointee(Vec::new()),
        telemetry,
        logs,
        control: tokio::runtime::Handle::current(),
    };
    match &state.store {
        Some(store) => {
            let report = store.seed_from_file(&file).await.map_err(|e| {
                StartError(format!("seeding the config store from config.json: {e}"))
            })?;
            if !report.imported.is_empty() {
                tracing::info!(entities = ?report.imported, "imported from config.json into the config store");
            }
            if let Some(client) = store
                .client_config()
                .await
                .map_err(|e| StartError(e.to_string()))?
            {
                state.client.store(Arc::new(client));
            }
            let providers = store
                .list_providers()
                .await
                .map_err(|e| StartError(format!("reading providers from the config store: {e}")))?;
            state
                .apply_providers(providers)
                .map_err(|e| StartError(format!("stored provider config is invalid: {e}")))?;
            state.governance.reload(store).await.map_err(|e| {
                StartError(format!("reading virtual keys, teams and customers: {e}"))
            })?;
            state.governance.restore_usage(store).await;
            let specs = store
                .list_plugins()
                .await
                .map_err(|e| StartError(format!("reading plugins from the config store: {e}")))?
                .into_iter()
                .map(crate::api::plugins::spec_from_record)
                .collect();
            state
                .telemetry
                .set_default_labels(&state.client.load().prometheus_labels);
            state.plugins.load_all(specs).await;
        }
        None => {
            state
                .apply_providers(providers_from_file(&file.providers))
                .map_err(|e| StartError(e.to_string()))?;
            let specs = file
                .plugins
                .iter()
                .map(|p| PluginSpec {
                    name: p.name.clone(),
                    enabled: p.enabled,
                    path: p.path.clone().filter(|s| !s.is_empty()),
                    config: p
                        .config
                        .clone()
                        .unwrap_or(serde_json::Value::Object(Default::default())),
                    placement: p.placement.clone(),
                    order: p.order,
                })
                .collect();
            state
                .telemetry
                .set_default_labels(&state.client.load().prometheus_labels);
            state.plugins.load_all(specs).await;
        }
    }
    // Governance and request logging are on unless an operator defined them (and, say,
    // disabled them); logging also stays off with `client.enable_logging: false` or
    // without a logs store.
    let logging_default = state.logs.is_some() && state.client.load().enable_logging != Some(false);
    for (name, wanted) in [("governance", true), ("logging", logging_default)] {
        if wanted
            && state.plugins.get(name).is_none()
            && let Err(e) = state
                .plugins
                .create(PluginSpec {
                    name: name.to_owned(),
                    enabled: true,
                    path: None,
                    config: serde_json::Value::Object(Default::default()),
                    placement: None,
                    order: None,
                })
                .await
        {
            return Err(StartError(format!("starting the {name} plugin: {e}")));
        }
    }
    let loaded: Vec<String> = state
        .plugins
        .list()
        .into_iter()
        .map(|p| format!("{}({})", p.name, p.status.status))
        .collect();
    if !loaded.is_empty() {
        tracing::info!(plugins = %loaded.join(", "), "plugins");
    }
    let names: Vec<String> = state
        .providers
        .load()
        .iter()
        .map(|p| p.name.clone())
        .collect();
    if names.is_empty() {
        tracing::warn!(
            "no providers configured: add one in config.json, set OPENAI_API_KEY (or another provider key variable), or POST /api/providers"
        );
    } else {
        tracing::info!(providers = %names.join(", "), "providers ready");
    }
    Ok(state)
}

/// `auth_config` of config.json; `None` when no authentication is configured.
fn build_auth(file: &ConfigFile) -> Result<crate::auth::AuthSetup, StartError> {
    let authenticator = match &file.auth_config {
        None => None,
        Some(v) => {
            let cfg: causeway_auth::AuthConfig = serde_json::from_value(v.clone())
                .map_err(|e| StartError(format!("auth_config: {e}")))?;
            for w in cfg.warnings() {
                tracing::warn!("auth_config: {w}");
            }
            let a =
                causeway_auth::Authenticator::new(&cfg).map_err(|e| StartError(format!("{e}")))?;
            a.enabled().then(|| Arc::new(a))
        }
    };
    if authenticator.is_some() {
        tracing::info!("authentication enabled for the management API");
    }
    Ok(crate::auth::AuthSetup {
        authenticator,
        login_limiter: causeway_auth::LoginLimiter::new(),
    })
}

/// The bundled price table with `governance.pricing_overrides` from config.json applied.
fn pricing(file: &ConfigFile) -> Result<causeway_governance::Pricing, StartError> {
    let overrides = match file
        .governance
        .as_ref()
        .and_then(|g| g.get("pricing_overrides"))
    {
        None => Vec::new(),
        Some(v) => serde_json::from_value::<Vec<causeway_governance::PriceOverride>>(v.clone())
            .map_err(|e| StartError(format!("governance.pricing_overrides: {e}")))?,
    };
    Ok(causeway_governance::Pricing::bundled().with_overrides(overrides))
}

async fn load_config_file(opts: &GatewayOptions) -> Result<ConfigFile, StartError> {
    let (path, explicit) = match &opts.config_path {
        Some(p) => (p.clone(), true),
        None => (opts.app_dir.join("config.json"), false),
    };
    match tokio::fs::read_to_string(&path).await {
        Ok(text) => {
            let loaded =
                parse_config(&text).map_err(|e| StartError(format!("{}: {e}", path.display())))?;
            for w in &loaded.warnings {
                tracing::warn!("{}: {w}", path.display());
            }
            tracing::info!(path = %path.display(), "loaded config");
            Ok(loaded.file)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            if !opts.env_autoconfig {
                return Ok(ConfigFile::default());
            }
            let file = causeway_config::load::config_from_env(|v| {
                std::env::var_os(v).is_some_and(|s| !s.is_empty())
            });
            let found: Vec<&String> = file.providers.keys().collect();
            if found.is_empty() {
                tracing::info!(path = %path.display(), "no config.json and no provider key variables set");
            } else {
                tracing::info!(
                    path = %path.display(),
                    "no config.json; configured providers from environment variables: {}",
                    found.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
            Ok(file)
        }
        Err(e) => Err(StartError(format!("cannot read {}: {e}", path.display()))),
    }
}

async fn open_store(
    opts: &GatewayOptions,
    file: &ConfigFile,
) -> Result<Option<ConfigStore>, StartError> {
    let (enabled, configured_path) = match &file.config_store {
        Some(c) => (c.enabled, c.config.path.clone()),
        None => (true, None),
    };
    if !enabled {
        tracing::info!(
            "config store disabled: config.json is the only source; management writes are refused"
        );
        return Ok(None);
    }
    let path = match configured_path {
        Some(p) if Path::new(&p).is_absolute() => PathBuf::from(p),
        Some(p) => opts.app_dir.join(p),
        None => opts.app_dir.join("config.db"),
    };
    let store = ConfigStore::open_sqlite(&path)
        .await
        .map_err(|e| StartError(format!("opening config store {}: {e}", path.display())))?;
    tracing::info!(path = %path.display(), "config store open");
    Ok(Some(store))
}

/// The accept loop: one task per connection, HTTP/1.1 and h2c, TCP_NODELAY, peer address
/// recorded for the management guard. On shutdown, in-flight requests get 10 s to finish.
async fn serve(listener: TcpListener, app: axum::Router, mut shutdown: watch::Receiver<bool>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Usually EMFILE: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let service = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    REQUESTS_STARTED.with(|n| n.set(n.get().wrapping_add(1)));
                    req.extensions_mut().insert(ConnectInfo(peer));
                    app.clone().oneshot(req.map(axum::body::Body::new))
                });
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: some connections did not finish within 10 s");
    }
}

thread_local! {
    /// Requests this thread has started serving; read by `call_when_quiet` on serve threads.
    static REQUESTS_STARTED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Runs on each serve thread: every second, asks `QuietWatch` whether to call `release`.
async fn call_when_quiet(release: fn()) {
    let mut tick = tokio::time::interval(QUIET_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch = QuietWatch::default();
    loop {
        tick.tick().await;
        if watch.tick(REQUESTS_STARTED.with(std::cell::Cell::get)) {
            release();
        }
    }
}

const QUIET_TICK: Duration = Duration::from_secs(1);

/// Quiet ticks after a thread's last request on which it releases memory. More than one:
/// a burst's memory comes free over a few seconds after its last request starts (streams
/// end, then the upstream pool closes the connections it no longer needs: its 2 s demand
/// window plus a 1 s tick), and what is freed after a release would stay cached again.
const QUIET_RELEASE_TICKS: u32 = 5;

/// Decides, once per tick, whether a serve thread should release memory: on each of the
/// first `QUIET_RELEASE_TICKS` ticks in which it started no request, then not again until
/// it has served something. A thread that never served anything has nothing to release.
#[derive(Debug)]
struct QuietWatch {
    seen: u64,
    quiet_ticks: u32,
}

impl Default for QuietWatch {
    fn default() -> Self {
        QuietWatch {
            seen: 0,
            quiet_ticks: QUIET_RELEASE_TICKS,
        }
    }
}

impl QuietWatch {
    fn tick(&mut self, requests_started: u64) -> bool {
        if requests_started != self.seen {
            self.seen = requests_started;
            self.quiet_ticks = 0;
            return false;
        }
        if self.quiet_ticks >= QUIET_RELEASE_TICKS {
            return false;
        }
        self.quiet_ticks += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::{QUIET_RELEASE_TICKS, QuietWatch};

    #[test]
    fn quiet_watch_releases_on_the_first_quiet_ticks_after_activity_only() {
        let mut w = QuietWatch::default();
        assert!(!w.tick(0), "nothing served yet: nothing to release");
        assert!(!w.tick(3), "busy tick");
        assert!(!w.tick(7), "still busy");
        let released: Vec<bool> = (0..QUIET_RELEASE_TICKS + 3).map(|_| w.tick(7)).collect();
        let expected: Vec<bool> = (0..QUIET_RELEASE_TICKS + 3)
            .map(|i| i < QUIET_RELEASE_TICKS)
            .collect();
        assert_eq!(released, expected);
        // One more request starts the count again.
        assert!(!w.tick(8));
        assert!(w.tick(8));
    }
}
