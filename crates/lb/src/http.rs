//! L7 proxying: an HTTP/1.1 server per client connection, each request forwarded to a backend picked for
//! it over a pooled keep-alive connection, bodies streamed both ways.
//!
//! Retry rules (so a backend that died between two probes fails no client request):
//! - the request was not sent (connect refused or timed out, or the connection closed before it was
//!   written, which hyper reports by handing the request back): try the next eligible backend — or, when
//!   a reused pooled connection turned out closed, a fresh connection to the same one;
//! - it was sent and the connection failed before any response byte: only for idempotent methods
//!   without a body, rebuilt from a copy of its head, on the next eligible backend;
//! - anything else (a failure after the response started) is the client's to see: 502, or a cut body.
//!
//! A request is in flight on its backend from the pick until the last byte of its response has been
//! handed to the client connection; that is what a drain waits for. No lock or allocation is taken per
//! request beyond hyper's own, the pool's push/pop and, for retryable requests, the copied head.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::idle::{Tracked, idle_for};
use crate::listener::Listener;
use crate::metrics::InFlight;
use crate::pick::{Client, MAX_ATTEMPTS, Slot};
use crate::pool::{Conn, Driver, Pool, Sender, poll_alive};

/// The body type of both directions: a streamed body, nothing, a small answer of our own, or a backend's
/// response carrying what must happen when it ends (connection back to the pool, request done).
// The backend variant carries its connection inline: boxing it would cost an allocation per request,
// and the body is built once and moved a handful of times.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum ProxyBody {
    Incoming(Incoming),
    Empty,
    Full(Option<Bytes>),
    Backend(BackendBody),
}

/// A backend's response body on its way to the client.
#[derive(Debug)]
pub(crate) struct BackendBody {
    body: Incoming,
    ended: bool,
    bytes: u64,
    sender: Option<Sender>,
    /// Drives the backend connection from this (the client connection's) task; none once it ended.
    driver: Option<Driver>,
    pool: Arc<Pool>,
    start: Instant,
    in_flight: InFlight,
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Incoming(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            ProxyBody::Backend(b) => {
                // The bytes of this body move only while its connection is driven.
                if let Some(d) = b.driver.as_mut()
                    && !poll_alive(d, cx)
                {
                    b.driver = None;
                }
                let r = Pin::new(&mut b.body).poll_frame(cx);
                match &r {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(d) = frame.data_ref() {
                            b.bytes += d.len() as u64;
                        }
                    }
                    Poll::Ready(None) => b.ended = true,
                    _ => {}
                }
                r
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Incoming(b) => b.is_end_stream(),
            ProxyBody::Empty => true,
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Backend(b) => b.ended || b.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Incoming(b) => b.size_hint(),
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ProxyBody::Backend(b) => b.body.size_hint(),
        }
    }
}

impl Drop for BackendBody {
    fn drop(&mut self) {
        let m = self.in_flight.metrics();
        m.observe_latency(self.start.elapsed());
        m.bytes(0, self.bytes);
        // Only a connection whose response was read to the end can carry the next request; one dropped
        // half-way (the client left) still has bytes coming and is closed with its sender.
        if (self.ended || self.body.is_end_stream())
            && let (Some(sender), Some(driver)) = (self.sender.take(), self.driver.take())
        {
            self.pool.checkin(sender, driver);
        }
        // `in_flight` drops after this: the drain sees the request end only once its body is through.
    }
}

/// What every request of one client connection shares.
struct ConnCtx {
    listener: Arc<Listener>,
    client: Client,
    forwarded_for: Option<HeaderValue>,
}

/// Serve one client connection until it closes, goes idle, or its listener stops.
pub(crate) async fn serve(listener: Arc<Listener>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let idle = {
        let secs = listener.route.load().frontend.idle_timeout_secs;
        (secs > 0).then(|| std::time::Duration::from_secs(secs))
    };
    let mut stop = listener.stop.subscribe();
    let ctx = Arc::new(ConnCtx {
        listener,
        client: Client { ip: peer.ip() },
        forwarded_for: HeaderValue::from_str(&peer.ip().to_string()).ok(),
    });
    let (io, activity) = Tracked::new(stream);
    let service = service_fn(move |req| handle(ctx.clone(), req));
    let conn = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "client connection ended");
                }
                return;
            }
            // Finish the request in progress, then close (keep-alive clients reconnect elsewhere).
            _ = stop.wait_for(|s| *s), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = idle_for(&activity, idle), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// A copy of a bodiless idempotent request's head, to send it again after a reset.
struct Replay {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Replay {
    fn request(&self) -> Request<ProxyBody> {
        let mut r = Request::new(ProxyBody::Empty);
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.version_mut() = Version::HTTP_11;
        *r.headers_mut() = self.headers.clone();
        r
    }
}

enum Failure {
    /// Not written: the request is whole again.
    NotSent(Request<ProxyBody>),
    /// A reused connection was found closed; the request is whole again.
    Stale(Request<ProxyBody>),
    /// Written, then the connection failed before an answer.
    Sent(hyper::Error),
}

async fn handle(ctx: Arc<ConnCtx>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let listener = &ctx.listener;
    let (mut parts, body) = req.into_parts();
    prepare_request(&mut parts, ctx.forwarded_for.as_ref());
    let replay = (is_idempotent(&parts.method) && body.is_end_stream()).then(|| Replay {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        headers: parts.headers.clone(),
    });
    let mut req = Request::from_parts(parts, ProxyBody::Incoming(body));

    let mut slot = {
        let route = listener.route.load();
        match route.pick(&listener.rr, ctx.client) {
            Some(s) => s.clone(),
            None => {
                listener.unavailable.fetch_add(1, Relaxed);
                return Ok(answer(StatusCode::SERVICE_UNAVAILABLE, "no healthy backend\n"));
            }
        }
    };
    let mut tried: Vec<Arc<Slot>> = Vec::new();
    let mut fresh = false;
    for _attempt in 0..=MAX_ATTEMPTS {
        let in_flight = slot.metrics.start_request();
        let Some(pool) = slot.pool.clone() else {
            // A slot of an Http frontend always has a pool; this is a bug, not a backend failure.
            tracing::error!(backend = %slot.backend.key, "http backend without a connection pool");
            break;
        };
        let failure = match pool.checkout(fresh).await {
            Err(e) => {
                tracing::debug!(backend = %slot.backend.key, error = %e, "backend connect failed");
                Failure::NotSent(req)
            }
            Ok(Conn { mut sender, driver, reused }) => {
                let sent = sender.try_send_request(req);
                tokio::pin!(sent);
                let mut driver = Some(driver);
                // Drive the connection here until the answer's head is in: no other task is involved.
                let result = std::future::poll_fn(|cx| {
                    if let Some(d) = driver.as_mut()
                        && !poll_alive(d, cx)
                    {
                        driver = None;
                    }
                    sent.as_mut().poll(cx)
                })
                .await;
                match result {
                    Ok(response) => return Ok(respond(response, sender, driver, pool, start, in_flight)),
                    Err(mut e) => match e.take_message() {
                        Some(r) if reused => Failure::Stale(r),
                        Some(r) => Failure::NotSent(r),
                        None => Failure::Sent(e.into_error()),
                    },
                }
            }
        };
        if !matches!(failure, Failure::Stale(_)) {
            slot.metrics.error();
        }
        drop(in_flight);
        fresh = false;
        req = match failure {
            Failure::Stale(r) => {
                // The backend closed an idle keep-alive connection: a fresh one to it is the natural retry.
                fresh = true;
                r
            }
            Failure::NotSent(r) => {
                tried.push(slot.clone());
                r
            }
            Failure::Sent(e) => match &replay {
                Some(replay) => {
                    tracing::debug!(backend = %slot.backend.key, error = %e, "reset before an answer, retrying");
                    tried.push(slot.clone());
                    replay.request()
                }
                None => {
                    tracing::debug!(backend = %slot.backend.key, error = %e, "backend failed after the request was sent");
                    break;
                }
            },
        };
        if !fresh {
            let route = listener.route.load();
            match route.pick_untried(&listener.rr, &tried) {
                Some(s) => slot = s.clone(),
                None => break,
            }
        }
    }
    listener.failed.fetch_add(1, Relaxed);
    Ok(answer(StatusCode::BAD_GATEWAY, "bad gateway\n"))
}

fn respond(
    response: Response<Incoming>,
    sender: Sender,
    driver: Option<Driver>,
    pool: Arc<Pool>,
    start: Instant,
    in_flight: InFlight,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    if parts.status.is_server_error() {
        in_flight.metrics().error();
    }
    strip_hop_by_hop(&mut parts.headers);
    let body = BackendBody { body, ended: false, bytes: 0, sender: Some(sender), driver, pool, start, in_flight };
    Response::from_parts(parts, ProxyBody::Backend(body))
}

fn answer(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::Full(Some(Bytes::from_static(text.as_bytes()))));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn is_idempotent(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE)
}

static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The head a backend gets: origin-form URI, HTTP/1.1, no hop-by-hop headers, X-Forwarded-*.
fn prepare_request(parts: &mut Parts, forwarded_for: Option<&HeaderValue>) {
    if parts.uri.scheme().is_some() {
        // Absolute-form (a client talking to us as a proxy): the backend wants origin-form and a Host.
        if let Some(authority) = parts.uri.authority()
            && !parts.headers.contains_key(header::HOST)
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            parts.headers.insert(header::HOST, host);
        }
        let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        if let Ok(uri) = pq.parse() {
            parts.uri = uri;
        }
    }
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    if let Some(ip) = forwarded_for {
        parts.headers.append(&X_FORWARDED_FOR, ip.clone());
    }
    parts.headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1). `Upgrade` goes too: this
/// proxy does not tunnel protocol switches.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    if let Some(connection) = h.remove(header::CONNECTION) {
        // Headers named by `Connection` are hop-by-hop too.
        if let Ok(list) = connection.to_str() {
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                    h.remove(name);
                }
            }
        }
    }
    if h.contains_key(header::UPGRADE) {
        h.remove(header::UPGRADE);
    }
    if h.contains_key(header::TE) {
        h.remove(header::TE);
    }
    if h.contains_key(header::TRAILER) {
        h.remove(header::TRAILER);
    }
    if h.contains_key(&PROXY_CONNECTION) {
        h.remove(&PROXY_CONNECTION);
    }
    if h.contains_key("keep-alive") {
        h.remove("keep-alive");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_forwarded_headers_come() {
        let mut req = Request::get("http://example.test/a?b=1")
            .header("connection", "close, x-private")
            .header("x-private", "1")
            .header("keep-alive", "timeout=5")
            .header("x-forwarded-for", "10.0.0.9")
            .header("x-forwarded-proto", "https")
            .header("accept", "*/*")
            .body(())
            .unwrap();
        *req.version_mut() = Version::HTTP_10;
        let (mut parts, ()) = req.into_parts();
        prepare_request(&mut parts, Some(&HeaderValue::from_static("127.0.0.1")));
        assert_eq!(parts.uri, "/a?b=1");
        assert_eq!(parts.version, Version::HTTP_11);
        assert_eq!(parts.headers["host"], "example.test");
        for gone in ["connection", "x-private", "keep-alive"] {
            assert!(!parts.headers.contains_key(gone), "{gone}");
        }
        let xff: Vec<_> = parts.headers.get_all("x-forwarded-for").iter().collect();
        assert_eq!(xff, ["10.0.0.9", "127.0.0.1"]);
        assert_eq!(parts.headers["x-forwarded-proto"], "http");
        assert_eq!(parts.headers["accept"], "*/*");
    }
}
