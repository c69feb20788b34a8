//! The upstream connection pool: HTTP/1.1 connections per origin, most recently used first,
//! one pool per serve thread (see `Providers`). Idle connections beyond recent demand are closed
//! on a one-second tick, so a burst's connections and their buffers go back within seconds
//! instead of lingering until the idle timeout, while steady load never churns connections.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::http::ClientOptions;

type Sender = http1::SendRequest<Full<Bytes>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request did not get a response head.
#[derive(Debug)]
pub enum PoolError {
    /// The URL has no `http`/`https` scheme or no host.
    InvalidUrl,
    /// TCP connect or TLS handshake failed (or timed out: `connect_timeout`).
    Connect(BoxError),
    /// The connection failed while sending the request or reading the response head.
    Send(hyper::Error),
}

impl std::fmt::Display for PoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoolError::InvalidUrl => f.write_str("the URL needs an http:// or https:// origin"),
            PoolError::Connect(_) => f.write_str("connecting failed"),
            PoolError::Send(_) => f.write_str("the connection failed"),
        }
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PoolError::InvalidUrl => None,
            PoolError::Connect(e) => Some(e.as_ref()),
            PoolError::Send(e) => Some(e),
        }
    }
}

/// What connections are pooled by: scheme and authority, built once per endpoint and cloned
/// per request (one reference count). Compared and hashed by `key` (scheme and lower-cased
/// authority), as two lookups per request hashing `Authority` itself (byte by byte,
/// case-folded) cost more than the rest of the pool.
#[derive(Debug, Clone)]
struct Origin(Arc<OriginParts>);

#[derive(Debug)]
struct OriginParts {
    key: Box<str>,
    /// Scheme and authority as a URI, for the connector.
    uri: Uri,
}

impl Origin {
    fn new(scheme: Scheme, authority: Authority) -> Result<Self, PoolError> {
        let key = format!("{scheme}://{}", authority.as_str().to_ascii_lowercase()).into();
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(PathAndQuery::from_static("/"))
            .build()
            .map_err(|_| PoolError::InvalidUrl)?;
        Ok(Origin(Arc::new(OriginParts { key, uri })))
    }
}

impl PartialEq for Origin {
    fn eq(&self, other: &Self) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for Origin {}

impl std::hash::Hash for Origin {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.key.hash(state);
    }
}

/// A pool of upstream connections; cheap to clone (clones share the connections).
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    connector: HttpsConnector<HttpConnector>,
    idle_timeout: Duration,
    max_idle: usize,
    min_idle: usize,
    demand_ticks: usize,
}

#[derive(Default)]
struct State {
    hosts: HashMap<Origin, Host>,
    reaper_running: bool,
}

#[derive(Default)]
struct Host {
    /// Oldest first: checkout takes from the back, so the busiest connections stay warm and
    /// the ones at the front are the first to go.
    idle: Vec<Idle>,
    in_use: usize,
    /// Most connections in use at once since the last tick.
    peak: usize,
    /// `peak` of each of the last `demand_ticks` ticks.
    recent_peaks: VecDeque<usize>,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// Counts for one origin, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OriginStats {
    pub idle: usize,
    pub in_use: usize,
}

const TICK: Duration = Duration::from_secs(1);

impl Pool {
    pub fn new(opts: &ClientOptions) -> Self {
        let demand_ticks = opts.pool_demand_window.as_secs().max(1) as usize;
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                connector: crate::http::build_connector(opts),
                idle_timeout: opts.pool_idle_timeout,
                max_idle: opts.pool_max_idle_per_host,
                min_idle: opts.pool_min_idle_per_host.min(opts.pool_max_idle_per_host),
                demand_ticks,
            }),
        }
    }

    /// Sends `req` (its URI from `upstream.uri`) to `upstream` on a pooled connection, or a
    /// new one. A request that never left because a reused connection had just closed is sent
    /// again on another one.
    pub async fn send(
        &self,
        upstream: &Upstream,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<PooledBody>, PoolError> {
        if !req.headers().contains_key(header::HOST) {
            req.headers_mut()
                .insert(header::HOST, upstream.host.clone());
        }
        let origin = &upstream.origin;
        loop {
            let mut lease = self.checkout(origin);
            let reused = lease.sender.is_some();
            let sender = match lease.sender.as_mut() {
                Some(s) => s,
                // Boxed: connecting (TCP, TLS, HTTP handshake) is a large future that most
                // requests never run, and unboxed it made every send's future that large,
                // copied each time it is moved (into the timeout, into the caller's state).
                None => lease.sender.insert(Box::pin(self.connect(origin)).await?),
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    return Ok(resp.map(|inner| PooledBody {
                        inner,
                        lease: Some(lease),
                    }));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(PoolError::Send(e.into_error())),
                },
            }
        }
    }

    /// Idle and in-use connection counts for `upstream`'s origin.
    pub fn stats(&self, upstream: &Upstream) -> OriginStats {
        let state = self.shared.lock();
        state
            .hosts
            .get(&upstream.origin)
            .map(|h| OriginStats {
                idle: h.idle.len(),
                in_use: h.in_use,
            })
            .unwrap_or_default()
    }

    /// Takes the most recently used ready connection, if any, and counts the request as in use.
    fn checkout(&self, origin: &Origin) -> Lease {
        let mut closed = Vec::new();
        let (sender, start_reaper) = {
            let mut state = self.shared.lock();
            let start_reaper = !state.reaper_running;
            state.reaper_running = true;
            let host = state.hosts.entry(origin.clone()).or_default();
            host.in_use += 1;
            host.peak = host.peak.max(host.in_use);
            let mut found = None;
            let mut i = host.idle.len();
            while i > 0 {
                i -= 1;
                let s = &host.idle[i].sender;
                if s.is_closed() {
                    closed.push(host.idle.remove(i));
                } else if s.is_ready() {
                    found = Some(host.idle.remove(i).sender);
                    break;
                }
                // Neither: its connection is still finishing the last response (reading
                // its end, or draining what its reader dropped); it stays for a later one.
            }
            (found, start_reaper)
        };
        drop(closed);
        if start_reaper {
            tokio::spawn(reap(Arc::downgrade(&self.shared)));
        }
        Lease {
            shared: self.shared.clone(),
            origin: origin.clone(),
            sender,
            reusable: false,
        }
    }

    async fn connect(&self, origin: &Origin) -> Result<Sender, PoolError> {
        let io = self
            .shared
            .connector
            .clone()
            .oneshot(origin.0.uri.clone())
            .await
            .map_err(PoolError::Connect)?;
        let (sender, conn) = http1::handshake(io).await.map_err(PoolError::Send)?;
        // The connection runs as its own task on this thread; it ends when the last `Sender`
        // is dropped (pool closed it) or the peer closes.
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the counts inconsistent in a way that
        // matters more than losing the pool, so recover the guard.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One tick: close what expired, closed, or exceeds recent demand. Returns false once the
    /// pool is empty, which stops the reaper (the next checkout starts it again).
    fn tick(&self, now: Instant) -> bool {
        let mut dropped: Vec<Idle> = Vec::new();
        let mut state = self.lock();
        state.hosts.retain(|_, host| {
            host.recent_peaks.push_back(host.peak);
            while host.recent_peaks.len() > self.demand_ticks {
                host.recent_peaks.pop_front();
            }
            host.peak = host.in_use;
            let demand = host.recent_peaks.iter().copied().max().unwrap_or(0);
            let keep = demand
                .saturating_sub(host.in_use)
                .max(self.min_idle)
                .min(self.max_idle);
            let mut i = 0;
            while i < host.idle.len() {
                let c = &host.idle[i];
                if c.sender.is_closed() || now.duration_since(c.since) >= self.idle_timeout {
                    dropped.push(host.idle.remove(i));
                } else {
                    i += 1;
                }
            }
            if host.idle.len() > keep {
                let excess = host.idle.len() - keep;
                dropped.extend(host.idle.drain(..excess));
            }
            !(host.idle.is_empty() && host.in_use == 0 && demand == 0)
        });
        let running = !state.hosts.is_empty();
        state.reaper_running = running;
        drop(state);
        drop(dropped);
        running
    }
}

async fn reap(shared: Weak<Shared>) {
    let mut interval = tokio::time::interval_at(Instant::now() + TICK, TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = interval.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if !shared.tick(now) {
            return;
        }
    }
}

/// One request's hold on a connection; puts it back when the response body ended.
struct Lease {
    shared: Arc<Shared>,
    origin: Origin,
    sender: Option<Sender>,
    reusable: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let Some(host) = state.hosts.get_mut(&self.origin) else {
            return;
        };
        host.in_use = host.in_use.saturating_sub(1);
        if !self.reusable || host.idle.len() >= self.shared.max_idle {
            return;
        }
        if let Some(sender) = self.sender.take().filter(|s| !s.is_closed()) {
            host.idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}

/// A response body that hands its connection back to the pool when it has been read to the end
/// or dropped (hyper then reuses the connection if it can), not after a read error.
pub struct PooledBody {
    inner: Incoming,
    lease: Option<Lease>,
}

impl PooledBody {
    fn release(&mut self, reusable: bool) {
        if let Some(mut lease) = self.lease.take() {
            lease.reusable = reusable;
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(true),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(true),
            Poll::Ready(Some(Err(_))) => this.release(false),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Not necessarily the end: a stream is dropped at `[DONE]`, usually after hyper has
        // read the final chunk too, and hyper drains a short unread rest. Such a connection
        // turns ready and checkout takes it; one hyper has to close is dropped once closed.
        self.release(true);
    }
}

/// Where one endpoint's requests go, parsed once when the configuration is loaded: the origin
/// connections are pooled by, its `Host` header, and the path prefix (e.g. `/v1`).
#[derive(Debug, Clone)]
pub struct Upstream {
    origin: Origin,
    host: HeaderValue,
    prefix: String,
}

impl Upstream {
    /// `base` is an absolute `http`/`https` URL, optionally with a path prefix; no query.
    pub fn parse(base: &str) -> Result<Upstream, PoolError> {
        let uri: Uri = base.parse().map_err(|_| PoolError::InvalidUrl)?;
        let (scheme, https) = match uri.scheme_str() {
            Some("https") => (Scheme::HTTPS, true),
            Some("http") => (Scheme::HTTP, false),
            _ => return Err(PoolError::InvalidUrl),
        };
        let authority = uri.authority().cloned().ok_or(PoolError::InvalidUrl)?;
        if uri.query().is_some() {
            return Err(PoolError::InvalidUrl);
        }
        let default_port = if https { 443 } else { 80 };
        // From host and port, never the whole authority: user info is not a header's business.
        let host = match authority.port_u16() {
            Some(p) if p != default_port => {
                HeaderValue::from_str(&format!("{}:{p}", authority.host()))
            }
            _ => HeaderValue::from_str(authority.host()),
        }
        .map_err(|_| PoolError::InvalidUrl)?;
        Ok(Upstream {
            origin: Origin::new(scheme, authority)?,
            host,
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The request line's target for `path` (which starts with `/`, may carry a query).
    pub fn uri(&self, path: &str) -> Result<Uri, PoolError> {
        let mut target = String::with_capacity(self.prefix.len() + path.len());
        target.push_str(&self.prefix);
        target.push_str(path);
        Uri::try_from(target).map_err(|_| PoolError::InvalidUrl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_the_same_whatever_the_case_of_the_host_but_not_the_scheme() {
        let a = Upstream::parse("http://API.example:8080/v1").unwrap();
        let b = Upstream::parse("http://api.EXAMPLE:8080/other").unwrap();
        let c = Upstream::parse("https://api.example:8080/v1").unwrap();
        let d = Upstream::parse("http://api.example:8081/v1").unwrap();
        assert_eq!(a.origin, b.origin);
        assert_ne!(a.origin, c.origin);
        assert_ne!(a.origin, d.origin);
        let mut hosts = HashMap::new();
        hosts.insert(a.origin.clone(), 1);
        assert_eq!(hosts.get(&b.origin), Some(&1));
        assert_eq!(hosts.get(&c.origin), None);
    }

    #[test]
    fn host_leaves_out_the_scheme_s_default_port() {
        for (base, want) in [
            ("http://h.example:80/v1", "h.example"),
            ("https://h.example:443", "h.example"),
            ("https://h.example:80", "h.example:80"),
            ("http://h.example:8080", "h.example:8080"),
        ] {
            let host = Upstream::parse(base).map(|u| u.host).ok();
            assert_eq!(host, Some(HeaderValue::from_static(want)), "{base}");
        }
    }
}
