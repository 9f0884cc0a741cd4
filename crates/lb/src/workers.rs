//! The data path's threads: one current-thread tokio runtime per core (nginx's worker model).
//!
//! Every listener is registered in every worker (the same socket, dup'd: the kernel hands each new
//! connection to one of the workers waiting on it). A worker that accepts while it serves more
//! connections than another hands the new one over (`place`), since whoever is awake first would
//! otherwise take a whole burst; after that a connection lives on its worker, with its backend
//! connections: a request crosses no thread, wakes no other thread, and takes no lock shared with
//! another core. Backend sockets are registered with one worker's
//! reactor, so pools keep idle connections per worker (`current`). Control, probes and health stay on
//! the caller's runtime. Workers end when the `Workers` is dropped; their connections end with them
//! (shut down gracefully first: `Dataplane::shutdown`).

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use tokio::runtime::Handle;
use tokio::sync::watch;

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker running this thread; 0 on any other thread (a caller's runtime, which then
/// is the only one serving).
pub(crate) fn current() -> usize {
    CURRENT.with(Cell::get)
}

/// The running workers; they stop when this is dropped.
#[derive(Debug)]
pub(crate) struct Workers {
    set: Arc<WorkerSet>,
    stop: watch::Sender<bool>,
}

/// What listeners need of the workers: where to run, and how loaded each is.
#[derive(Debug)]
pub(crate) struct WorkerSet {
    handles: Vec<Handle>,
    /// Client connections each worker serves.
    load: Box<[AtomicUsize]>,
}

impl WorkerSet {
    pub(crate) fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// The worker that is to serve a connection accepted on this one, counted in its load at once (so a
    /// burst of accepts sees each one): this worker, unless it serves more than one connection beyond
    /// the least loaded (the slack keeps connections from moving on every accept when the spread is
    /// even).
    pub(crate) fn assign(self: &Arc<Self>) -> Serving {
        let me = current() % self.load.len();
        let mine = self.load[me].load(Relaxed);
        let (least, fewest) = self
            .load
            .iter()
            .enumerate()
            .map(|(i, l)| (i, l.load(Relaxed)))
            .min_by_key(|(_, n)| *n)
            .unwrap_or((me, mine));
        let worker = if mine > fewest + 1 { least } else { me };
        self.load[worker].fetch_add(1, Relaxed);
        Serving { set: self.clone(), worker }
    }
}

/// A connection being served by a worker: counted in its load until dropped.
#[derive(Debug)]
pub(crate) struct Serving {
    set: Arc<WorkerSet>,
    worker: usize,
}

impl Serving {
    pub(crate) fn worker(&self) -> usize {
        self.worker
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.set.load[self.worker].fetch_sub(1, Relaxed);
    }
}

impl Workers {
    /// Start `n` workers (threads named `galleon-lb-N`).
    pub(crate) fn start(n: usize) -> std::io::Result<Workers> {
        let (stop, _) = watch::channel(false);
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            handles.push(rt.handle().clone());
            let mut stopped = stop.subscribe();
            std::thread::Builder::new().name(format!("galleon-lb-{i}")).spawn(move || {
                CURRENT.with(|c| c.set(i));
                rt.block_on(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                });
            })?;
        }
        let load = (0..n).map(|_| AtomicUsize::new(0)).collect();
        Ok(Workers { set: Arc::new(WorkerSet { handles, load }), stop })
    }

    pub(crate) fn set(&self) -> &Arc<WorkerSet> {
        &self.set
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}
