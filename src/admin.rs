//! The admin HTTP API (`ADMIN_PORT`): health, readiness, role endpoints
//! and metrics, served by hyper on the launcher's own runtime.
//!
//! The server never computes anything: each launcher publishes its
//! [`Pages`] about once a second ([`Publisher`]), and a request only looks
//! its path up, so no request, however malformed or slow, can reach
//! ZooKeeper, Redis or the supervision. What keeps a hostile or broken
//! client from costing more than a little memory:
//! - at most [`MAX_CONNECTIONS`] connections at once; more are closed at
//!   once, unanswered (and counted in `rzk_admin_rejected_total`);
//! - a connection lives at most [`CONNECTION_TIMEOUT`], headers included,
//!   and serves one request (no keep-alive);
//! - only `GET` and `HEAD` are answered; request bodies are never read.
//!
//! Pages older than [`STALE_AFTER`] answer 503: a launcher whose look at
//! the world hangs is not healthy, whatever it last saw.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use tokio_rustls::TlsAcceptor;

use crate::metrics::metrics;
use crate::tls::Tls;
use crate::view::health::Pages;

/// Connections served at once; more are closed unanswered.
pub const MAX_CONNECTIONS: usize = 64;
/// The longest one connection lives, reading its request included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Pages this old answer 503.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// The latest pages and when they were made.
#[derive(Debug, Clone)]
struct Published {
    pages: Arc<Pages>,
    at: Instant,
}

/// Where a launcher publishes its pages.
#[derive(Debug, Clone)]
pub struct Publisher(Arc<watch::Sender<Published>>);

impl Publisher {
    /// Replaces the pages.
    pub fn publish(&self, pages: Pages) {
        self.0.send_replace(Published {
            pages: Arc::new(pages),
            at: Instant::now(),
        });
    }
}

/// The addresses to listen on: the task's address, and `127.0.0.1`
/// (Mesos HTTP checks connect over loopback); both the same when the task
/// address is loopback. `None` (the watcher, which has no task address):
/// every address.
pub fn listen_addrs(task: Option<Ipv4Addr>, port: u16) -> Vec<SocketAddr> {
    match task {
        None => vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)],
        Some(ip) if ip == Ipv4Addr::LOCALHOST || ip.is_unspecified() => {
            vec![SocketAddr::new(IpAddr::V4(ip), port)]
        }
        Some(ip) => vec![
            SocketAddr::new(IpAddr::V4(ip), port),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        ],
    }
}

/// Binds `addrs` and serves until the process ends. Returns the publisher
/// for the launcher's pages; an address that cannot be bound is an error
/// (the launcher exits 1 before it starts its child: a task whose checks
/// can never pass would only be killed later).
/// `paths` are the binary's paths besides `/metrics`; any other is 404.
/// With `tls`, every connection is HTTPS, served the certificate in
/// service at its handshake; but for a task that follows its group's move
/// between plain text and TLS (`TLS_TRANSITION=yes`), a connection is
/// HTTPS when its first byte opens a TLS handshake and HTTP otherwise, so
/// that the orchestrator's checks pass before, during and after the move.
pub async fn start(
    addrs: &[SocketAddr],
    paths: &'static [&'static str],
    tls: Option<&Tls>,
) -> std::io::Result<Publisher> {
    let acceptor = match tls {
        None => None,
        Some(t) => Some((
            TlsAcceptor::from(t.server_config().map_err(std::io::Error::other)?),
            t.follows_group(),
        )),
    };
    let (tx, rx) = watch::channel(Published {
        pages: Arc::default(),
        at: Instant::now(),
    });
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    for addr in addrs {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr} for ADMIN_PORT: {e}")))?;
        info!(addr = %addr, "admin API listening");
        tokio::spawn(accept(listener, rx.clone(), limit.clone(), paths, acceptor.clone()));
    }
    Ok(Publisher(Arc::new(tx)))
}

async fn accept(
    listener: TcpListener,
    pages: watch::Receiver<Published>,
    limit: Arc<Semaphore>,
    paths: &'static [&'static str],
    tls: Option<(TlsAcceptor, bool)>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of
                // spinning on the error.
                warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            metrics().admin_rejected.inc();
            debug!(peer = %peer, "admin connection refused: too many at once");
            drop(stream);
            continue;
        };
        // The request is answered with the pages in force now, judged as of
        // now: a connection that waited in the kernel while the launcher
        // was frozen gets the page it had, too old, not whichever the
        // first look after the thaw races it to.
        let pages = (pages.borrow().clone(), Instant::now());
        let tls = tls.clone();
        tokio::spawn(async move {
            let served = async {
                let mut first = [0u8; 1];
                match tls {
                    Some((_, true)) if matches!(stream.peek(&mut first).await, Ok(1) if first[0] != 0x16) => {
                        serve(stream, pages, paths).await
                    }
                    None => serve(stream, pages, paths).await,
                    Some((tls, _)) => match tls.accept(stream).await {
                        Ok(stream) => serve(stream, pages, paths).await,
                        Err(e) => Err(format!("TLS handshake: {e}")),
                    },
                }
            };
            if let Err(e) = tokio::time::timeout(CONNECTION_TIMEOUT, served).await.unwrap_or(Ok(())) {
                debug!(peer = %peer, error = %e, "admin connection ended with an error");
            }
            drop(permit);
        });
    }
}

/// Serves one request on one connection: `pages` as they were when it
/// was accepted, and when that was.
async fn serve<S>(stream: S, pages: (Published, Instant), paths: &'static [&'static str]) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let pages = pages.clone();
        async move { Ok::<_, Infallible>(answer(&req, &pages.0, pages.1, paths)) }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(CONNECTION_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(8192);
    http.serve_connection(TokioIo::new(stream), service)
        .await
        .map_err(|e| e.to_string())
}

fn respond(status: u16, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

const JSON: &str = "application/json";

fn answer(req: &Request<Incoming>, published: &Published, accepted: Instant, paths: &[&str]) -> Response<Full<Bytes>> {
    let age = accepted.saturating_duration_since(published.at);
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = respond(405, JSON, r#"{"error":"only GET and HEAD"}"#.into());
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = req.uri().path();
    if path == "/metrics" {
        return respond(200, "text/plain; version=0.0.4; charset=utf-8", metrics().render());
    }
    if !paths.contains(&path) {
        return respond(404, JSON, r#"{"error":"no such path"}"#.into());
    }
    match published.pages.answer(path, req.uri().query()) {
        Err(why) => respond(400, JSON, serde_json::json!({ "error": why }).to_string()),
        Ok(Some(_)) if age > STALE_AFTER => {
            respond(503, JSON, format!(r#"{{"error":"view is {} s old"}}"#, age.as_secs()))
        }
        Ok(Some(p)) => respond(p.status, JSON, p.body),
        // Before the first look (the child is still starting).
        Ok(None) => respond(503, JSON, r#"{"error":"starting"}"#.into()),
    }
}
