//! How upstream connections are made and pooled (hyper + rustls/ring): TCP_NODELAY, TCP
//! keep-alive, HTTP/1.1 so concurrency scales with connections instead of queueing behind one
//! HTTP/2 connection's stream limit. Provider calls use `crate::pool`; `build_client` is the
//! general-purpose client for sparse side traffic (telemetry export).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;
pub type UpstreamResponse = http::Response<crate::pool::PooledBody>;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// An idle connection unused this long is closed.
    pub pool_idle_timeout: Duration,
    /// Hard cap on idle connections per upstream host (per serve thread: each has its own
    /// pool). High on purpose: a fixed cap below the steady concurrency makes the pool close
    /// connections that the next requests then reopen (measured with hyper's pool: at 512
    /// concurrent requests a cap of 32 closed 14,000 connections in 5 s and cut throughput by
    /// a third). What bounds memory is `pool_demand_window`.
    pub pool_max_idle_per_host: usize,
    /// Idle connections kept per host whatever the recent demand (until `pool_idle_timeout`),
    /// so sparse traffic to a TLS provider does not pay a handshake per request.
    pub pool_min_idle_per_host: usize,
    /// Idle connections beyond the most that were in use at once during this window (whole
    /// seconds) are closed on the next one-second tick: a burst's connections (~26 KB each)
    /// go back within seconds of it ending, steady load keeps all it uses.
    pub pool_demand_window: Duration,
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            pool_idle_timeout: Duration::from_secs(30),
            pool_max_idle_per_host: 1024,
            pool_min_idle_per_host: 4,
            pool_demand_window: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// TCP (+ TLS for `https`) connector with the options every upstream connection gets.
pub fn build_connector(opts: &ClientOptions) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(opts.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let tls = rustls_config();
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

pub fn build_client(opts: &ClientOptions) -> HttpClient {
    Client::builder(TokioExecutor::new())
        // Without a timer the pool never reaps idle connections (and their buffers).
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(opts.pool_idle_timeout)
        .pool_max_idle_per_host(opts.pool_max_idle_per_host)
        .build(build_connector(opts))
}

fn rustls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| rustls::ClientConfig::builder());
    // ALPN is set by the connector builder (http/1.1 only, see `enable_http1`).
    builder.with_root_certificates(roots).with_no_client_auth()
}
