//! One listening socket per frontend, its accept loop, and the route it serves (swapped atomically).
//!
//! A listener outlives configs that keep its (address, port, protocol): applying only swaps its `Route`,
//! so open connections are untouched. Stopping it closes the socket; Tcp connections run on, Http
//! connections finish their request and close. With workers (`workers.rs`) each worker accepts from the
//! same socket; without, the caller's runtime does. Proxying itself is in `tcp.rs` and `http.rs`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::config::{Frontend, Protocol};
use crate::pick::Route;
use crate::workers::{self, WorkerSet};
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
    /// One accept loop per worker (or one on the caller's runtime).
    accept_tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Where connections are served; none: on the caller's runtime.
    workers: Option<Arc<WorkerSet>>,
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
    /// Bind the frontend's address and start accepting with `route`, on every worker of `workers` (on
    /// the caller's runtime when there are none).
    pub(crate) fn start(
        route: Route,
        tracker: &TaskTracker,
        workers: Option<&Arc<WorkerSet>>,
    ) -> io::Result<Arc<Listener>> {
        let f = &route.frontend;
        let std_listener = bind(SocketAddr::new(f.address, f.port))?;
        let local_addr = std_listener.local_addr()?;
        let l = Arc::new(Listener {
            local_addr,
            protocol: f.protocol,
            route: ArcSwap::from_pointee(route),
            rr: AtomicUsize::new(0),
            unavailable: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            stop: watch::Sender::new(false),
            accept_tasks: Mutex::new(Vec::new()),
            workers: workers.cloned(),
        });
        let workers = workers.map_or(&[][..], |w| w.handles());
        let started = (|| {
            let mut tasks = Vec::with_capacity(workers.len().max(1));
            if workers.is_empty() {
                let listener = TcpListener::from_std(std_listener.try_clone()?)?;
                tasks.push(tokio::spawn(accept_loop(l.clone(), listener, tracker.clone())));
            }
            for worker in workers {
                // Registered with that worker's reactor, so its accept loop and connections run there.
                let listener = {
                    let _in_worker = worker.enter();
                    TcpListener::from_std(std_listener.try_clone()?)?
                };
                tasks.push(worker.spawn(accept_loop(l.clone(), listener, tracker.clone())));
            }
            Ok::<_, io::Error>(tasks)
        })();
        match started {
            Ok(tasks) => {
                *l.accept_tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
                Ok(l)
            }
            Err(e) => {
                // The loops already started close their copies of the socket.
                l.stop.send_replace(true);
                Err(e)
            }
        }
    }

    /// Stop accepting; the returned tasks end once the socket is closed.
    pub(crate) fn stop(&self) -> Vec<JoinHandle<()>> {
        self.stop.send_replace(true);
        std::mem::take(&mut *self.accept_tasks.lock().unwrap_or_else(|e| e.into_inner()))
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
            Ok((stream, peer)) => {
                let serving = l.workers.as_ref().map(|w| (w.assign(), w));
                match serving {
                    Some((serving, set)) if serving.worker() != workers::current() => {
                        // Handed over as a plain socket: it is registered again with that worker's reactor.
                        let moved = stream.into_std();
                        let to = serving.worker();
                        let l = l.clone();
                        let serve = async move {
                            match moved.and_then(TcpStream::from_std) {
                                Ok(stream) => serve(l, stream, peer, serving).await,
                                Err(e) => tracing::warn!(%peer, error = %e, "handing a connection over failed"),
                            }
                        };
                        set.handles()[to].spawn(tracker.track_future(serve));
                    }
                    Some((serving, _)) => {
                        tracker.spawn(serve(l.clone(), stream, peer, serving));
                    }
                    None => {
                        tracker.spawn(serve(l.clone(), stream, peer, ()));
                    }
                }
            }
            Err(e) => {
                // Out of file descriptors (or similar): back off instead of spinning on the error.
                tracing::warn!(addr = %l.local_addr, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracing::debug!(addr = %l.local_addr, "listener stopped");
}

/// Serve one accepted connection on the current worker (or runtime); `_load` is what counts it in its
/// worker's load, until it ends.
async fn serve<G>(l: Arc<Listener>, stream: TcpStream, peer: SocketAddr, _load: G) {
    match l.protocol {
        Protocol::Tcp => tcp::serve(l, stream, peer).await,
        Protocol::Http => http::serve(l, stream, peer).await,
    }
}
