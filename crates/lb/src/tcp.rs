//! L4 proxying: one client connection becomes one backend connection, bytes copied both ways.
//!
//! The backend is picked once per connection; if connecting to it fails (it died between two probes),
//! the next eligible backend is tried, a bounded number of times, so the client never sees it. The
//! connection counts as open on its backend (what a drain waits for) from the pick to the close. It does
//! not see requests: a drain of a Tcp backend waits for whole connections (CONTRACT §7).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::idle::{Tracked, idle_for};
use crate::listener::Listener;
use crate::pick::{Client, MAX_ATTEMPTS, Slot};
use crate::pool::connect_tcp;

pub(crate) async fn serve(listener: Arc<Listener>, client: TcpStream, peer: SocketAddr) {
    let _ = client.set_nodelay(true);
    let who = Client { ip: peer.ip() };
    let mut tried: Vec<Arc<Slot>> = Vec::new();
    let (slot, open, backend) = loop {
        let slot = {
            let route = listener.route.load();
            let picked =
                if tried.is_empty() { route.pick(&listener.rr, who) } else { route.pick_untried(&listener.rr, &tried) };
            match picked {
                Some(s) => s.clone(),
                None => {
                    if tried.is_empty() {
                        listener.unavailable.fetch_add(1, Relaxed);
                    }
                    // No backend (left): closing is the only answer L4 has.
                    return;
                }
            }
        };
        // Open from the pick on, so a drain that starts now waits for this connection.
        let open = slot.metrics.start_connection();
        match connect_tcp(slot.addr).await {
            Ok(backend) => break (slot, open, backend),
            Err(e) => {
                slot.metrics.error();
                tracing::debug!(backend = %slot.backend.key, error = %e, "backend connect failed, trying the next");
                drop(open);
                tried.push(slot);
                if tried.len() >= MAX_ATTEMPTS {
                    return;
                }
            }
        }
    };
    let (mut client, activity) = Tracked::new(client);
    let mut backend = backend;
    let idle = listener.route.load().frontend.idle_timeout_secs;
    let idle = (idle > 0).then(|| Duration::from_secs(idle));
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut client, &mut backend) => match r {
            Ok((to_backend, to_client)) => slot.metrics.bytes(to_backend, to_client),
            // A reset by either side ends the connection; nothing to answer at L4.
            Err(e) => tracing::debug!(backend = %slot.backend.key, error = %e, "tcp proxy ended"),
        },
        _ = idle_for(&activity, idle) => tracing::debug!(backend = %slot.backend.key, "tcp connection idle, closed"),
    }
    drop(open);
}
