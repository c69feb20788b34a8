//! The listening socket and its connections: accepts with TCP_NODELAY, serves HTTP/1.1 and h2c
//! through hyper, and tears every connection down when the `MockServer` handle is dropped.
//! Also the public handle tests use to steer the mock and read what it saw.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::MockConfig;
use crate::handler;
use crate::state::{RecordedRequest, Shared};

/// A running mock upstream. Dropping it stops accepting and closes every open connection.
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
    // Never sent on: dropping it is the shutdown signal every connection task waits for.
    _shutdown: watch::Sender<()>,
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockServer {
    /// Starts on an ephemeral loopback port (`127.0.0.1:0`).
    pub async fn start(config: MockConfig) -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts on `addr`. Must be called inside a Tokio runtime; the server runs on it.
    pub async fn start_on(addr: SocketAddr, config: MockConfig) -> std::io::Result<Self> {
        // A deep accept queue: benchmarks open thousands of streams at once.
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let listener: TcpListener = socket.listen(4096)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let (shutdown, stopped) = watch::channel(());
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stopped));
        Ok(Self {
            addr,
            shared,
            accept_task,
            _shutdown: shutdown,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Origin of the server, e.g. `http://127.0.0.1:41234` (no `/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the behaviour for requests that arrive from now on; requests in flight finish
    /// with the config they started with. Also restarts the `fail_first` window.
    pub fn set_config(&self, config: MockConfig) {
        self.shared.set_config(config);
    }

    /// Every API request received since start (or the last `clear_requests`), in arrival order.
    /// Empty when `record_requests` is off. `/_mock/*` control routes are not recorded.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Number of API requests received, counted even when recording is off.
    pub fn request_count(&self) -> usize {
        self.shared.request_count()
    }

    /// TCP connections accepted since start: shows whether a client reuses connections.
    pub fn connections_accepted(&self) -> usize {
        self.shared.connections_accepted()
    }

    /// Forgets recorded requests and resets `request_count`.
    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }

    pub fn streams_started(&self) -> usize {
        self.shared.streams.started()
    }

    /// Streams whose body was written to the end.
    pub fn streams_completed(&self) -> usize {
        self.shared.streams.completed()
    }

    /// Streams dropped before completion because the client went away.
    pub fn streams_cancelled(&self) -> usize {
        self.shared.streams.cancelled()
    }

    /// Streams deliberately broken by `stream_fail_after` (not counted as cancelled).
    pub fn streams_aborted(&self) -> usize {
        self.shared.streams.aborted()
    }

    /// Waits until at least `n` streams were cancelled; false if `timeout` passes first.
    pub async fn wait_for_cancelled_streams(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let streams = &self.shared.streams;
        loop {
            let ended = streams.ended.notified();
            tokio::pin!(ended);
            // Registered before the check, so a cancellation between the two is not missed.
            ended.as_mut().enable();
            if streams.cancelled() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return streams.cancelled() >= n;
            }
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stopped: watch::Receiver<()>) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let mut stop = stopped.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                shared.connection_accepted();
                tokio::spawn(serve_connection(
                    stream,
                    Arc::clone(&builder),
                    Arc::clone(&shared),
                    stopped.clone(),
                ));
            }
            Err(e) => {
                // Usually EMFILE under load: back off briefly instead of spinning on accept.
                tracing::warn!(error = %e, "mock-provider: accept failed");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    builder: Arc<auto::Builder<TokioExecutor>>,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<()>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "mock-provider: could not set TCP_NODELAY");
    }
    let service = service_fn(move |req| handler::handle(Arc::clone(&shared), req));
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = connection => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "mock-provider: connection ended with an error");
            }
        }
        // Dropping the connection closes the socket and drops any stream body in flight.
        _ = stopped.changed() => {}
    }
}
