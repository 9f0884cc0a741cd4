//! Keep-alive HTTP/1.1 connections to one backend address, reused across requests and frontends.
//!
//! A connection is checked out for one request and comes back only when its response body was read to
//! the end (so the next request never waits behind a body). Idle connections are kept LIFO (the warmest
//! first) under a short mutex: push and pop only, never held across an await. A closed pool (backend out
//! of service) drops connections instead of keeping them. It does not pick backends or retry (`http.rs`).
//!
//! Unlike hyper's own pool, a backend connection has no task of its own: whoever holds it (the client
//! connection's task, while it proxies a request) drives it. So a proxied request crosses no task
//! boundary and wakes no other thread; an idle connection is polled once when checked out, which is when
//! a close by the backend is noticed.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::task::Poll;
use std::time::Duration;

use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::http::ProxyBody;

/// Idle connections kept per backend; more are closed when they come back.
const MAX_IDLE: usize = 256;
/// A connection idle longer than this is not reused (backends time out idle keep-alive, nginx at 75 s).
const MAX_IDLE_AGE: Duration = Duration::from_secs(50);
/// A backend that neither accepts nor refuses is given up on after this long.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) type Sender = SendRequest<ProxyBody>;
/// The I/O half of a backend connection: a future that must be polled for bytes to move.
pub(crate) type Driver = Connection<TokioIo<TcpStream>, ProxyBody>;

#[derive(Debug)]
pub(crate) struct Pool {
    addr: SocketAddr,
    idle: Mutex<Vec<Idle>>,
    closed: AtomicBool,
}

#[derive(Debug)]
struct Idle {
    sender: Sender,
    driver: Driver,
    since: Instant,
}

/// A connection taken out of the pool for one request.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) sender: Sender,
    pub(crate) driver: Driver,
    /// It served an earlier request: if it turns out closed, a fresh one is worth a try.
    pub(crate) reused: bool,
}

/// Poll a connection's driver once: false when the connection has ended (closed, or failed).
pub(crate) fn poll_alive(driver: &mut Driver, cx: &mut std::task::Context<'_>) -> bool {
    match Pin::new(driver).poll(cx) {
        Poll::Pending => true,
        Poll::Ready(Ok(())) => false,
        Poll::Ready(Err(e)) => {
            tracing::debug!(error = %e, "backend connection failed");
            false
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connect to {addr}: {source}")]
    Io { addr: SocketAddr, source: std::io::Error },
    #[error("connect to {addr}: timed out")]
    Timeout { addr: SocketAddr },
    #[error("HTTP handshake with {addr}: {source}")]
    Handshake { addr: SocketAddr, source: hyper::Error },
}

impl Pool {
    pub(crate) fn new(addr: SocketAddr) -> Pool {
        Pool { addr, idle: Mutex::new(Vec::new()), closed: AtomicBool::new(false) }
    }

    /// A ready connection: the warmest idle one that is still open, else a new one.
    pub(crate) async fn checkout(&self, fresh: bool) -> Result<Conn, ConnectError> {
        if !fresh {
            while let Some(mut idle) = self.pop() {
                if idle.since.elapsed() > MAX_IDLE_AGE {
                    continue;
                }
                // One poll lets the connection read a close (or finish the previous exchange) and say
                // whether it can take a request now.
                let alive = std::future::poll_fn(|cx| Poll::Ready(poll_alive(&mut idle.driver, cx))).await;
                if alive && idle.sender.is_ready() {
                    return Ok(Conn { sender: idle.sender, driver: idle.driver, reused: true });
                }
            }
        }
        let (sender, driver) = connect(self.addr).await?;
        Ok(Conn { sender, driver, reused: false })
    }

    fn pop(&self) -> Option<Idle> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// A connection whose response was read to the end comes back for the next request.
    pub(crate) fn checkin(&self, sender: Sender, driver: Driver) {
        if self.closed.load(Relaxed) || sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Nobody polls an idle connection, so one the backend closed long ago would sit at the bottom of
        // the stack (LIFO) holding its socket: retire the oldest while they are past reuse.
        while idle.first().is_some_and(|i| now.saturating_duration_since(i.since) > MAX_IDLE_AGE) {
            idle.remove(0);
        }
        if idle.len() < MAX_IDLE {
            idle.push(Idle { sender, driver, since: now });
        }
    }

    /// The backend left service: close what is idle and keep nothing that comes back.
    pub(crate) fn close(&self) {
        self.closed.store(true, Relaxed);
        let drained = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        drop(drained);
    }

    /// Close the idle connections (a drain), without refusing the ones that come back.
    pub(crate) fn close_idle(&self) {
        let drained = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        drop(drained);
    }

    /// The backend is back in service.
    pub(crate) fn open(&self) {
        self.closed.store(false, Relaxed);
    }

    pub(crate) fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A TCP connection with Nagle off, within `CONNECT_TIMEOUT`.
pub(crate) async fn connect_tcp(addr: SocketAddr) -> Result<TcpStream, ConnectError> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
        Err(_) => return Err(ConnectError::Timeout { addr }),
    };
    // Small requests and answers must not wait for an ACK; failing to set it only costs latency.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn connect(addr: SocketAddr) -> Result<(Sender, Driver), ConnectError> {
    let stream = connect_tcp(addr).await?;
    http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ConnectError::Handshake { addr, source })
}
