//! The upstream connection pool against a loopback HTTP/1.1 server that counts connections:
//! reuse, the request line and Host it sends, closing a burst's connections on demand,
//! keeping a steady load's, and never reusing a connection that cannot be reused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use causeway_providers::ClientOptions;
use causeway_providers::pool::{Pool, PoolError, Upstream};
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;

#[derive(Default)]
struct Seen {
    accepted: AtomicUsize,
    open: AtomicUsize,
    /// (request target, Host) of the last request.
    last: Mutex<Option<(String, String)>>,
}

async fn server() -> (SocketAddr, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            s.accepted.fetch_add(1, Ordering::SeqCst);
            s.open.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            tokio::spawn(async move {
                let per_conn = s.clone();
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let s = per_conn.clone();
                    async move { Ok::<_, Infallible>(answer(&s, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                s.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, seen)
}

async fn answer(
    seen: &Seen,
    req: Request<hyper::body::Incoming>,
) -> Response<BoxBody<Bytes, Infallible>> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let target = req.uri().to_string();
    *seen.last.lock().unwrap() = Some((target, host));
    let full = |s: &'static str| Full::new(Bytes::from_static(s.as_bytes())).boxed();
    match req.uri().path().trim_start_matches("/base") {
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Response::new(full("slow"))
        }
        "/close" => Response::builder()
            .header(http::header::CONNECTION, "close")
            .body(full("bye"))
            .unwrap(),
        "/stream" => {
            let chunks = futures_util::stream::iter(0..50).then(|i| async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok::<_, Infallible>(Frame::data(Bytes::from(format!("chunk {i}\n"))))
            });
            Response::new(BodyExt::boxed(StreamBody::new(chunks)))
        }
        "/sse" => {
            let events = ["data: 1\n\n", "data: 2\n\n", "data: [DONE]\n\n"]
                .map(|e| Ok::<_, Infallible>(Frame::data(Bytes::from_static(e.as_bytes()))));
            Response::new(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
                events,
            ))))
        }
        _ => Response::new(full("hello")),
    }
}

fn upstream(addr: SocketAddr) -> Upstream {
    Upstream::parse(&format!("http://{addr}/base/")).unwrap()
}

fn request(addr: SocketAddr, path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method("POST")
        .uri(upstream(addr).uri(path).unwrap())
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

async fn fetch(pool: &Pool, addr: SocketAddr, path: &str) -> String {
    let resp = pool
        .send(&upstream(addr), request(addr, path))
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

fn options(window_secs: u64, min_idle: usize) -> ClientOptions {
    ClientOptions {
        pool_demand_window: Duration::from_secs(window_secs),
        pool_min_idle_per_host: min_idle,
        pool_idle_timeout: Duration::from_secs(60),
        ..ClientOptions::default()
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sequential_requests_share_one_connection_with_origin_form_and_host() {
    let (addr, seen) = server().await;
    let pool = Pool::new(&options(3, 4));
    for _ in 0..5 {
        assert_eq!(fetch(&pool, addr, "/v1/chat?x=1").await, "hello");
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
    let (target, host) = seen.last.lock().unwrap().clone().unwrap();
    assert_eq!(target, "/base/v1/chat?x=1");
    assert_eq!(host, addr.to_string());
    assert_eq!(pool.stats(&upstream(addr)).idle, 1);
    assert_eq!(pool.stats(&upstream(addr)).in_use, 0);
}

#[tokio::test]
async fn a_burst_s_connections_close_once_demand_is_gone() {
    let (addr, seen) = server().await;
    let pool = Pool::new(&options(1, 2));
    let burst = (0..16).map(|_| fetch(&pool, addr, "/slow"));
    let answers = futures_util::future::join_all(burst).await;
    assert!(answers.iter().all(|a| a == "slow"));
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 16);
    assert_eq!(pool.stats(&upstream(addr)).idle, 16);
    let started = tokio::time::Instant::now();
    // Well before the 60 s idle timeout: only the floor of 2 stays.
    wait_until("the server sees 2 open connections", || {
        seen.open.load(Ordering::SeqCst) == 2
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(pool.stats(&upstream(addr)).idle, 2);
    // And what stayed is still usable.
    assert_eq!(fetch(&pool, addr, "/").await, "hello");
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 16);
}

#[tokio::test]
async fn steady_load_keeps_its_connections() {
    let (addr, seen) = server().await;
    let pool = Pool::new(&options(1, 0));
    // Rounds of 8 concurrent requests (100 ms each) with 600 ms of quiet between them: the
    // pool ticks while all 8 connections sit idle, and must keep them for the next round.
    for _ in 0..5 {
        let round = (0..8).map(|_| fetch(&pool, addr, "/slow"));
        let answers = futures_util::future::join_all(round).await;
        assert!(answers.iter().all(|a| a == "slow"));
        assert_eq!(pool.stats(&upstream(addr)).idle, 8);
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 8);
}

#[tokio::test]
async fn a_connection_the_server_closes_is_not_reused() {
    let (addr, seen) = server().await;
    let pool = Pool::new(&options(3, 4));
    assert_eq!(fetch(&pool, addr, "/close").await, "bye");
    wait_until("the server closed it", || {
        seen.open.load(Ordering::SeqCst) == 0
    })
    .await;
    assert_eq!(fetch(&pool, addr, "/close").await, "bye");
    assert_eq!(fetch(&pool, addr, "/").await, "hello");
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_body_dropped_midway_closes_its_connection() {
    let (addr, seen) = server().await;
    let pool = Pool::new(&options(3, 4));
    let resp = pool
        .send(&upstream(addr), request(addr, "/stream"))
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first.as_ref(), b"chunk 0\n");
    drop(body);
    assert_eq!(fetch(&pool, addr, "/").await, "hello");
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 2);
    wait_until("the abandoned connection is closed", || {
        seen.open.load(Ordering::SeqCst) == 1
    })
    .await;
    // A stream read to its end is reused.
    let streamed = fetch(&pool, addr, "/stream").await;
    assert!(streamed.ends_with("chunk 49\n"));
    assert_eq!(fetch(&pool, addr, "/").await, "hello");
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_stream_dropped_at_its_last_event_keeps_its_connection() {
    let (addr, seen) = server().await;
    let pool = Pool::new(&options(3, 4));
    for _ in 0..3 {
        let resp = pool
            .send(&upstream(addr), request(addr, "/sse"))
            .await
            .unwrap();
        let mut body = resp.into_body();
        let mut text = Vec::new();
        // Read up to `[DONE]` and stop there, as the OpenAI adapter does.
        while !text.ends_with(b"data: [DONE]\n\n") {
            let frame = body.frame().await.unwrap().unwrap();
            text.extend_from_slice(frame.data_ref().unwrap());
        }
        drop(body);
        // hyper reads the stream's terminating chunk on its own turn.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_connect_error() {
    let pool = Pool::new(&options(3, 4));
    let unused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    match pool.send(&upstream(unused), request(unused, "/")).await {
        Err(PoolError::Connect(_)) => {}
        other => panic!("expected a connect error, got {:?}", other.map(|_| ())),
    }
    assert_eq!(pool.stats(&upstream(unused)).in_use, 0);
}

#[test]
fn base_urls_parse_into_origin_host_and_prefix() {
    let up = Upstream::parse("https://api.example.com/v1").unwrap();
    assert_eq!(up.uri("/chat/completions").unwrap(), "/v1/chat/completions");
    let up = Upstream::parse("http://127.0.0.1:8080").unwrap();
    assert_eq!(up.uri("/models?limit=5").unwrap(), "/models?limit=5");
    for bad in [
        "ftp://x",
        "/relative",
        "http://",
        "https://h/v1?q=1",
        "not a url",
    ] {
        assert!(
            matches!(Upstream::parse(bad), Err(PoolError::InvalidUrl)),
            "{bad} should be refused"
        );
    }
}

#[tokio::test]
async fn host_is_name_and_port_without_user_info() {
    let (addr, seen) = server().await;
    let pool = Pool::new(&options(3, 4));
    for (base, want) in [
        (format!("http://{addr}"), addr.to_string()),
        (format!("http://user:secret@{addr}"), addr.to_string()),
    ] {
        let up = Upstream::parse(&base).unwrap();
        let req = Request::builder()
            .uri(up.uri("/").unwrap())
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = pool.send(&up, req).await.unwrap();
        resp.into_body().collect().await.unwrap();
        let (_, host) = seen.last.lock().unwrap().clone().unwrap();
        assert_eq!(host, want, "{base}");
    }
}
