//! L7 proxying: HTTP/1.1 per client connection, each request forwarded to a backend picked for it over
//! a pooled keep-alive connection, bodies streamed both ways. Heads are parsed and rewritten by `h1.rs`;
//! this module moves the bytes, retries, and keeps the accounting.
//!
//! Retry rules (so a backend that died between two probes fails no client request):
//! - the request was not sent (connect refused or timed out, or the first write of its head failed):
//!   try the next eligible backend — or, when a reused pooled connection turned out closed, a fresh
//!   connection to the same one;
//! - it was sent and the connection failed before a response head: only for idempotent methods without
//!   a body (its head is still in hand), on the next eligible backend;
//! - anything else (a failure after the response started) is the client's to see: 502, or a cut body.
//!
//! A request is in flight on its backend from the pick until the last byte of its response has been
//! handed to the client connection; that is what a drain waits for.
//!
//! Why not hyper: a proxy does not need a request or header map per message. Parsing the head in the
//! read buffer and writing the rewritten one straight into a reused write buffer, on the client
//! connection's own task, with the backend socket held by that task, halves the user-space time per
//! request (profiled against nginx `proxy_pass`; see docs/benchmarks.md). No lock or allocation is taken
//! per request beyond the pool's push/pop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::h1::{self, Answering, Body, Framing, RequestError};
use crate::idle::idle_for;
use crate::listener::Listener;
use crate::metrics::InFlight;
use crate::pick::{Client, MAX_ATTEMPTS, Slot};
use crate::pool::Pool;

/// Read buffers grow by this much at a time (allocated on first use: an idle keep-alive client holds
/// only what it has used, about one chunk per direction).
const READ_CHUNK: usize = 8 * 1024;
/// A response body is written to the client once this much of it is gathered (or it ends).
const FLUSH_AT: usize = 64 * 1024;

/// One client connection: its socket and the buffers every request on it reuses.
struct ClientConn {
    stream: TcpStream,
    who: Client,
    /// The client's address as text, for X-Forwarded-For.
    forwarded_for: Vec<u8>,
    /// The address the client connected to, as text, for a request without `Host`.
    local: Vec<u8>,
    /// Read from the client, not handled yet: a head, a body, the next pipelined request.
    cbuf: BytesMut,
    /// Read from the current request's backend.
    bbuf: BytesMut,
    /// The head the backend gets; kept until an answer came, to send it again.
    head: Vec<u8>,
    /// What goes to the client next.
    out: Vec<u8>,
}

/// What happens to the client connection after a request.
enum Next {
    KeepAlive,
    Close,
}

/// Why an attempt on a backend gave no answer.
enum Failure {
    /// Nothing was written: the request is whole again.
    NotSent,
    /// A reused connection was found closed before anything was written.
    Stale,
    /// Written, then no answer head came.
    Sent(&'static str),
    /// The client went away while its body was being forwarded: nobody to answer.
    ClientGone,
}

/// Serve one client connection until it closes, goes idle, or its listener stops.
pub(crate) async fn serve(listener: Arc<Listener>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let idle = {
        let secs = listener.route.load().frontend.idle_timeout_secs;
        (secs > 0).then(|| std::time::Duration::from_secs(secs))
    };
    let mut stop = listener.stop.subscribe();
    // Counts requests and reads; the watchdog closes the connection once it stands still long enough.
    let activity = AtomicU64::new(0);
    let touch = || activity.store(activity.load(Relaxed).wrapping_add(1), Relaxed);
    let idle_out = idle_for(&activity, idle);
    tokio::pin!(idle_out);
    let local = stream.local_addr().map_or_else(|_| listener.local_addr.to_string(), |a| a.to_string());
    let mut c = ClientConn {
        stream,
        who: Client { ip: peer.ip() },
        forwarded_for: peer.ip().to_string().into_bytes(),
        local: local.into_bytes(),
        cbuf: BytesMut::new(),
        bbuf: BytesMut::new(),
        head: Vec::new(),
        out: Vec::new(),
    };
    loop {
        let req = loop {
            let from = h1::Peer { forwarded_for: &c.forwarded_for, host: &c.local };
            match h1::parse_request(&c.cbuf, from, &mut c.head) {
                Ok(Some(r)) => break r,
                Ok(None) => {}
                Err(e) => {
                    let (status, text) = match e {
                        RequestError::Bad => ("400 Bad Request", "bad request\n"),
                        RequestError::TooLarge => ("431 Request Header Fields Too Large", "request head too large\n"),
                    };
                    h1::own_answer(&mut c.out, status, text, true, false);
                    let _ = c.stream.write_all(&c.out).await;
                    return;
                }
            }
            reserve(&mut c.cbuf);
            let read = if c.cbuf.is_empty() {
                // Between requests: a stopping listener or an idle timeout closes the connection.
                tokio::select! {
                    biased;
                    r = c.stream.read_buf(&mut c.cbuf) => r,
                    _ = stop.wait_for(|s| *s) => return,
                    () = &mut idle_out => return,
                }
            } else {
                tokio::select! {
                    biased;
                    r = c.stream.read_buf(&mut c.cbuf) => r,
                    () = &mut idle_out => return,
                }
            };
            match read {
                Ok(n) if n > 0 => touch(),
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "client connection ended");
                    return;
                }
            }
        };
        c.cbuf.advance(req.head_len);
        match proxy(&mut c, &listener, &req, &stop).await {
            Next::KeepAlive => touch(),
            Next::Close => return,
        }
    }
}

fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
}

/// Forward one request and its answer; answer it ourselves (502, 503) when no backend can.
async fn proxy(c: &mut ClientConn, listener: &Listener, req: &h1::Request, stop: &watch::Receiver<bool>) -> Next {
    let start = Instant::now();
    let mut slot = {
        let route = listener.route.load();
        match route.pick(&listener.rr, c.who) {
            Some(s) => s.clone(),
            None => {
                listener.unavailable.fetch_add(1, Relaxed);
                return answer(c, req, stop, "503 Service Unavailable", "no healthy backend\n").await;
            }
        }
    };
    let mut body = Body::new(req.body);
    let mut tried: Vec<Arc<Slot>> = Vec::new();
    let mut fresh = false;
    let mut continued = false;
    for _attempt in 0..=MAX_ATTEMPTS {
        let in_flight = slot.metrics.start_request();
        let Some(pool) = slot.pool.as_ref() else {
            // A slot of an Http frontend always has a pool; this is a bug, not a backend failure.
            tracing::error!(backend = %slot.backend.key, "http backend without a connection pool");
            break;
        };
        let failure = match pool.checkout(fresh).await {
            Err(e) => {
                tracing::debug!(backend = %slot.backend.key, error = %e, "backend connect failed");
                Failure::NotSent
            }
            Ok(conn) => match exchange(c, conn.stream, conn.reused, req, &mut body, &mut continued, stop).await {
                Ok((resp, backend, sent)) => {
                    return respond(c, resp, backend, pool, start, in_flight, body.done(), sent).await;
                }
                Err(f) => f,
            },
        };
        if !matches!(failure, Failure::Stale | Failure::ClientGone) {
            slot.metrics.error();
        }
        drop(in_flight);
        fresh = false;
        match failure {
            Failure::ClientGone => return Next::Close,
            // The backend closed an idle keep-alive connection: a fresh one to it is the natural retry.
            Failure::Stale => fresh = true,
            Failure::NotSent => tried.push(slot.clone()),
            Failure::Sent(why) if req.idempotent && req.body == Framing::None => {
                tracing::debug!(backend = %slot.backend.key, why, "no answer after sending, retrying");
                tried.push(slot.clone());
            }
            Failure::Sent(why) => {
                tracing::debug!(backend = %slot.backend.key, why, "backend failed after the request was sent");
                break;
            }
        }
        if !fresh {
            let route = listener.route.load();
            match route.pick_untried(&listener.rr, &tried) {
                Some(s) => slot = s.clone(),
                None => break,
            }
        }
    }
    listener.failed.fetch_add(1, Relaxed);
    answer(c, req, stop, "502 Bad Gateway", "bad gateway\n").await
}

/// Send the request on `backend` and read the answer's head (writing the client's head to `c.out`).
/// A body is forwarded while the answer is awaited: a backend may answer before reading it all.
/// Returns the answer, the connection, and the body bytes sent.
async fn exchange(
    c: &mut ClientConn,
    mut backend: TcpStream,
    reused: bool,
    req: &h1::Request,
    body: &mut Body,
    continued: &mut bool,
    stop: &watch::Receiver<bool>,
) -> Result<(h1::Response, TcpStream, u64), Failure> {
    c.bbuf.clear();
    // Only a first write that fails leaves the backend without a byte of the request.
    match backend.write(&c.head).await {
        Ok(n) if n == c.head.len() => {}
        Ok(n) if n > 0 => backend.write_all(&c.head[n..]).await.map_err(|_| Failure::Sent("writing the head"))?,
        _ if reused => return Err(Failure::Stale),
        _ => return Err(Failure::NotSent),
    }
    let to = Answering { is_head: req.is_head, http10: req.http10, keep_client: req.keep_alive && !*stop.borrow() };
    if body.done() {
        let resp = read_head(&mut backend, &mut c.bbuf, &mut c.out, to).await?;
        return Ok((resp, backend, 0));
    }
    if req.expect_continue && !*continued && c.cbuf.is_empty() {
        // The client waits for this before it sends its body.
        *continued = true;
        if c.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
            return Err(Failure::ClientGone);
        }
    }
    let (resp, sent) = {
        let (mut from_backend, mut to_backend) = backend.split();
        let (mut from_client, _) = c.stream.split();
        let send = send_body(&mut from_client, &mut c.cbuf, &mut to_backend, body);
        let recv = read_head(&mut from_backend, &mut c.bbuf, &mut c.out, to);
        tokio::pin!(send, recv);
        tokio::select! {
            biased;
            r = &mut recv => (r?, 0),
            s = &mut send => match s {
                Ok(sent) => (recv.await?, sent),
                Err(BodyFail::Client) => return Err(Failure::ClientGone),
                Err(BodyFail::Backend) => return Err(Failure::Sent("writing the body")),
            },
        }
    };
    if !body.done() {
        // Answered before the body was read: the client connection cannot be read past it, so close.
        let to = Answering { keep_client: false, ..to };
        match h1::parse_response(&c.bbuf, to, &mut c.out) {
            Ok(Some(r)) => return Ok((r, backend, sent)),
            _ => return Err(Failure::Sent("answer head unreadable")),
        }
    }
    Ok((resp, backend, sent))
}

/// Read up to a final answer head (1xx ones are skipped); the head for the client goes to `out`.
async fn read_head<R: AsyncRead + Unpin>(
    from: &mut R,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
    to: Answering,
) -> Result<h1::Response, Failure> {
    loop {
        if !buf.is_empty() {
            match h1::parse_response(buf, to, out) {
                Ok(Some(r)) if r.interim => {
                    buf.advance(r.head_len);
                    continue;
                }
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(()) => return Err(Failure::Sent("not an HTTP/1.x answer")),
            }
        }
        reserve(buf);
        match from.read_buf(buf).await {
            Ok(0) => return Err(Failure::Sent("closed before answering")),
            Ok(_) => {}
            Err(_) => return Err(Failure::Sent("reset before answering")),
        }
    }
}

enum BodyFail {
    Client,
    Backend,
}

/// Forward the request body (its first bytes may be in `buf`) to the backend, as it is framed.
async fn send_body<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    from: &mut R,
    buf: &mut BytesMut,
    to: &mut W,
    body: &mut Body,
) -> Result<u64, BodyFail> {
    let mut sent = 0;
    loop {
        if !buf.is_empty() {
            // Broken chunked framing is the client's fault: nothing sensible can follow on its connection.
            let n = body.take(buf, None).map_err(|_| BodyFail::Client)?;
            if n > 0 {
                to.write_all(&buf[..n]).await.map_err(|_| BodyFail::Backend)?;
                buf.advance(n);
                sent += n as u64;
            }
        }
        if body.done() {
            return Ok(sent);
        }
        reserve(buf);
        match from.read_buf(buf).await {
            Ok(n) if n > 0 => {}
            _ => return Err(BodyFail::Client),
        }
    }
}

/// Forward the answer's body, give the backend connection back if it can carry another request, and
/// hand the last bytes to the client. The request stays in flight until then.
#[allow(clippy::too_many_arguments)]
async fn respond(
    c: &mut ClientConn,
    resp: h1::Response,
    mut backend: TcpStream,
    pool: &Pool,
    start: Instant,
    in_flight: InFlight,
    request_sent_whole: bool,
    request_bytes: u64,
) -> Next {
    let m = in_flight.metrics();
    if resp.status >= 500 {
        m.error();
    }
    c.bbuf.advance(resp.head_len);
    let mut body = Body::new(resp.body);
    let head_len = c.out.len() as u64;
    let mut flushed = 0u64;
    let mut whole = true;
    loop {
        if !c.bbuf.is_empty() {
            let taken = if resp.dechunk {
                body.take(&c.bbuf, Some(&mut c.out))
            } else {
                body.take(&c.bbuf, None).inspect(|n| c.out.extend_from_slice(&c.bbuf[..*n]))
            };
            match taken {
                Ok(n) => c.bbuf.advance(n),
                Err(_) => {
                    whole = false;
                    break;
                }
            }
        }
        if body.done() {
            break;
        }
        if c.out.len() >= FLUSH_AT {
            flushed += c.out.len() as u64;
            if c.stream.write_all(&c.out).await.is_err() {
                m.observe_latency(start.elapsed());
                m.bytes(request_bytes, flushed.saturating_sub(head_len));
                return Next::Close;
            }
            c.out.clear();
        }
        reserve(&mut c.bbuf);
        match backend.read_buf(&mut c.bbuf).await {
            Ok(n) if n > 0 => {}
            // The end of a body framed by the close.
            Ok(_) if body == Body::Close => break,
            _ => {
                whole = false;
                break;
            }
        }
    }
    // Given back before the client's write, so the client's next request finds it.
    if whole && resp.reusable && request_sent_whole && body.done() && c.bbuf.is_empty() {
        pool.checkin(backend);
    } else {
        drop(backend);
    }
    let total = flushed + c.out.len() as u64;
    let wrote = c.stream.write_all(&c.out).await;
    m.observe_latency(start.elapsed());
    m.bytes(request_bytes, total.saturating_sub(head_len));
    // `in_flight` drops after this: the drain sees the request end only once its answer is through.
    drop(in_flight);
    if wrote.is_err() || !whole || resp.close_client { Next::Close } else { Next::KeepAlive }
}

/// The proxy's own answer; the connection is kept only when nothing of the request is left unread.
async fn answer(c: &mut ClientConn, req: &h1::Request, stop: &watch::Receiver<bool>, status: &str, text: &str) -> Next {
    let close = !req.keep_alive || req.body != Framing::None || *stop.borrow();
    h1::own_answer(&mut c.out, status, text, close, req.is_head);
    match c.stream.write_all(&c.out).await {
        Ok(()) if !close => Next::KeepAlive,
        _ => Next::Close,
    }
}
