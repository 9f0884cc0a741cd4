//! Signals between the API and the reconcilers: "something changed, look again".
//!
//! Each signal is a counter in a `watch` channel: a reconciler that missed several changes wakes once
//! and reads the current state, which is all it needs (level-triggered, as kube-rs reconcilers are).

use tokio::sync::watch;

pub struct Events {
    gallery: watch::Sender<u64>,
    fleet: watch::Sender<u64>,
}

impl Default for Events {
    fn default() -> Self {
        Events { gallery: watch::channel(0).0, fleet: watch::channel(0).0 }
    }
}

impl Events {
    /// A version was published, updated or deleted.
    pub fn notify_gallery_changed(&self) {
        self.gallery.send_modify(|n| *n += 1);
    }

    pub fn gallery_changes(&self) -> watch::Receiver<u64> {
        self.gallery.subscribe()
    }

    /// An instance action ended, an instance was provisioned, or a health state changed.
    pub fn notify_fleet_changed(&self) {
        self.fleet.send_modify(|n| *n += 1);
    }

    pub fn fleet_changes(&self) -> watch::Receiver<u64> {
        self.fleet.subscribe()
    }
}
