//! One listening socket per frontend, its accept loop, and the route it serves (swapped atomically).
//!
//! A listener outlives configs that keep its (address, port, protocol): applying only swaps its `Route`,
//! so open connections are untouched. Stopping it closes the socket; Tcp connections run on, Http
//! connections finish their request and close. Proxying itself is in `tcp.rs` and `http.rs`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use socket2::{Domain, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::config::{Frontend, Protocol};
use crate::pick::Route;
use crate::{http, tcp};

/// What identifies a listener across configs. Ephemeral ports (0) are told apart by frontend name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ListenerKey {
    pub(crate) address: IpAddr,
    pub(crate) port: u16,
    pub(crate) protocol: Protocol,
    pub(crate) ephemeral_name: Option<String>,
}

impl ListenerKey {
    pub(crate) fn of(f: &Frontend) -> ListenerKey {
        ListenerKey {
            address: f.address,
            port: f.port,
            protocol: f.protocol,
            ephemeral_name: (f.port == 0).then(|| f.name.clone()),
        }
    }
}

/// A bound frontend.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) local_addr: SocketAddr,
    pub(crate) protocol: Protocol,
    /// What the hot path reads: the frontend and its eligible backends.
    pub(crate) route: ArcSwap<Route>,
    /// The round-robin position; survives route swaps so the spread stays even.
    pub(crate) rr: AtomicUsize,
    /// Requests or connections turned away because no backend was eligible.
    pub(crate) unavailable: AtomicU64,
    /// Http requests answered 502: every backend tried failed.
    pub(crate) failed: AtomicU64,
    /// true: stop accepting, and ask Http connections to close after their current request.
    pub(crate) stop: watch::Sender<bool>,
    accept_task: Mutex<Option<JoinHandle<()>>>,
}

/// Bind with SO_REUSEADDR so a restarted data plane gets its ports back while old connections linger in
/// TIME_WAIT.
fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

impl Listener {
    /// Bind the frontend's address and start accepting with `route`.
    pub(crate) fn start(route: Route, tracker: &TaskTracker) -> io::Result<Arc<Listener>> {
        let f = &route.frontend;
        let std_listener = bind(SocketAddr::new(f.address, f.port))?;
        let listener = TcpListener::from_std(std_listener)?;
        let local_addr = listener.local_addr()?;
        let l = Arc::new(Listener {
            local_addr,
            protocol: f.protocol,
            route: ArcSwap::from_pointee(route),
            rr: AtomicUsize::new(0),
            unavailable: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            stop: watch::Sender::new(false),
            accept_task: Mutex::new(None),
        });
        let task = tokio::spawn(accept_loop(l.clone(), listener, tracker.clone()));
        *l.accept_task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(l)
    }

    /// Stop accepting; the returned task ends once the socket is closed.
    pub(crate) fn stop(&self) -> Option<JoinHandle<()>> {
        self.stop.send_replace(true);
        self.accept_task.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

async fn accept_loop(l: Arc<Listener>, listener: TcpListener, tracker: TaskTracker) {
    let mut stop = l.stop.subscribe();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => match l.protocol {
                Protocol::Tcp => {
                    tracker.spawn(tcp::serve(l.clone(), stream, peer));
                }
                Protocol::Http => {
                    tracker.spawn(http::serve(l.clone(), stream, peer));
                }
            },
            Err(e) => {
                // Out of file descriptors (or similar): back off instead of spinning on the error.
                tracing::warn!(addr = %l.local_addr, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracing::debug!(addr = %l.local_addr, "listener stopped");
}
