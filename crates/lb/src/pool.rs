//! Keep-alive HTTP/1.1 connections to one backend address, reused across requests and frontends.
//!
//! A connection is checked out for one request and comes back only when its response was read to the
//! end (so the next request never waits behind a body). Idle connections are kept LIFO (the warmest
//! first) under a short mutex: push and pop only, never held across an await. With workers, each keeps
//! its own idle list (a socket belongs to the reactor of the worker that opened it), so the mutex is
//! only ever contended by the control side. A closed pool (backend out of service) drops connections
//! instead of keeping them. It does not pick backends or retry (`http.rs`).
//!
//! A pooled connection is a plain socket: the HTTP is spoken by whoever holds it (`http.rs`, with
//! `h1.rs`), on the client connection's task, so a proxied request crosses no task boundary. Nobody
//! polls an idle connection; a close by the backend is noticed when it is checked out.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

/// Idle connections kept per backend; more are closed when they come back.
const MAX_IDLE: usize = 256;
/// A connection idle longer than this is not reused (backends time out idle keep-alive, nginx at 75 s).
const MAX_IDLE_AGE: Duration = Duration::from_secs(50);
/// A backend that neither accepts nor refuses is given up on after this long.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub(crate) struct Pool {
    addr: SocketAddr,
    /// Idle connections, by worker (`workers::current`).
    idle: Box<[Mutex<Vec<Idle>>]>,
    closed: AtomicBool,
}

#[derive(Debug)]
struct Idle {
    stream: TcpStream,
    since: Instant,
}

/// A connection taken out of the pool for one request.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    /// It served an earlier request: if it turns out closed, a fresh one is worth a try.
    pub(crate) reused: bool,
}

/// An idle connection can take a request when reading it would block: a close (0), a reset, or bytes
/// nobody asked for all mean it cannot. Costs a syscall only when the reactor saw it readable.
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connect to {addr}: {source}")]
    Io { addr: SocketAddr, source: std::io::Error },
    #[error("connect to {addr}: timed out")]
    Timeout { addr: SocketAddr },
}

impl Pool {
    /// A pool for `addr`, with idle lists for `workers` workers (at least one).
    pub(crate) fn new(addr: SocketAddr, workers: usize) -> Pool {
        let idle = (0..workers.max(1)).map(|_| Mutex::new(Vec::new())).collect();
        Pool { addr, idle, closed: AtomicBool::new(false) }
    }

    /// This worker's idle connections.
    fn mine(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        let list = &self.idle[crate::workers::current() % self.idle.len()];
        list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection: the warmest idle one that is still open, else a new one.
    pub(crate) async fn checkout(&self, fresh: bool) -> Result<Conn, ConnectError> {
        if !fresh {
            while let Some(idle) = self.pop() {
                if idle.since.elapsed() <= MAX_IDLE_AGE && still_open(&idle.stream) {
                    return Ok(Conn { stream: idle.stream, reused: true });
                }
            }
        }
        let stream = connect_tcp(self.addr).await?;
        Ok(Conn { stream, reused: false })
    }

    fn pop(&self) -> Option<Idle> {
        self.mine().pop()
    }

    /// A connection whose response was read to the end comes back for the next request.
    pub(crate) fn checkin(&self, stream: TcpStream) {
        if self.closed.load(Relaxed) {
            return;
        }
        let now = Instant::now();
        let mut idle = self.mine();
        // Nobody polls an idle connection, so one the backend closed long ago would sit at the bottom of
        // the stack (LIFO) holding its socket: retire the oldest while they are past reuse.
        while idle.first().is_some_and(|i| now.saturating_duration_since(i.since) > MAX_IDLE_AGE) {
            idle.remove(0);
        }
        if idle.len() < MAX_IDLE {
            idle.push(Idle { stream, since: now });
        }
    }

    /// The backend left service: close what is idle and keep nothing that comes back.
    pub(crate) fn close(&self) {
        self.closed.store(true, Relaxed);
        self.close_idle();
    }

    /// Close the idle connections (a drain), without refusing the ones that come back.
    pub(crate) fn close_idle(&self) {
        for list in &self.idle {
            let drained = std::mem::take(&mut *list.lock().unwrap_or_else(|e| e.into_inner()));
            drop(drained);
        }
    }

    /// The backend is back in service.
    pub(crate) fn open(&self) {
        self.closed.store(false, Relaxed);
    }

    pub(crate) fn idle_count(&self) -> usize {
        self.idle.iter().map(|list| list.lock().unwrap_or_else(|e| e.into_inner()).len()).sum()
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
