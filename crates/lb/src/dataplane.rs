//! The data plane as one object: applies configs, and answers for health, drains, status and metrics.
//!
//! `Dataplane` owns the listeners (by (address, port, protocol)), the backend connection pools (by key
//! and address), the metrics registry and the health hub, and keeps them consistent with the last
//! accepted `Config`. Applying diffs listeners and swaps routes atomically; the hot path never takes its
//! lock. It speaks no HTTP (`control.rs`) and knows no files but the one it persists configs to.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use galleon_core::health::HealthState;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::config::{Backend, Config, ConfigError, Protocol};
use crate::health::{Clock, HealthHub};
use crate::listener::{Listener, ListenerKey};
use crate::metrics::{BackendMetrics, Family, PromText, Registry};
use crate::pick::{Route, Slot};
use crate::pool::Pool;
use crate::wire::{
    ApplyReport, BackendStatus, DrainRemaining, DrainReport, EventsReport, FrontendBind, FrontendStatus, HealthReport,
    MetricsSnapshot, StatusReport,
};
use crate::workers::{WorkerSet, Workers};

/// The drain timeout when no frontend names the keys.
const DEFAULT_DRAIN: Duration = Duration::from_secs(30);

/// Why a config was not applied; the previous one keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("invalid config: {0}")]
    Invalid(#[from] ConfigError),
    #[error("config generation {offered} is older than the one served, {current}")]
    StaleGeneration { offered: u64, current: u64 },
    #[error("the data plane is shutting down")]
    ShuttingDown,
}

/// Why the persisted config could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a data plane config: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
}

#[derive(Debug, Clone, Default)]
pub struct DataplaneOptions {
    /// Where every accepted config is saved (atomically), for the next start.
    pub persist_path: Option<PathBuf>,
    /// Worker threads serving client connections, each with a current-thread runtime (`workers.rs`);
    /// one per core is nginx's model. 0: connections are served on the caller's runtime (tests).
    pub workers: usize,
}

/// Listeners, probers, health, drains and metrics of one home. Cheap to clone (shared).
#[derive(Clone)]
pub struct Dataplane {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane").field("boot_id", &self.shared.boot_id).finish_non_exhaustive()
    }
}

struct Shared {
    boot_id: String,
    health: Arc<HealthHub>,
    state: Mutex<State>,
    /// Applies run one at a time, from validation to the file on disk.
    apply_lock: tokio::sync::Mutex<()>,
    /// Every client connection, so shutdown can wait for them.
    connections: TaskTracker,
    persist_path: Option<PathBuf>,
    /// None: connections are served on the runtime that applies configs.
    workers: Option<Workers>,
}

impl Shared {
    fn worker_set(&self) -> Option<&Arc<WorkerSet>> {
        self.workers.as_ref().map(Workers::set)
    }
}

#[derive(Default)]
struct State {
    config: Arc<Config>,
    listeners: HashMap<ListenerKey, Arc<Listener>>,
    bind_errors: HashMap<String, String>,
    pools: HashMap<(String, SocketAddr), Arc<Pool>>,
    metrics: Registry,
    shutting_down: bool,
}

impl Dataplane {
    /// A data plane serving nothing yet. Needs a tokio runtime: for control and probes only when it has
    /// workers, else for the traffic too (multi-thread then).
    pub fn new(options: DataplaneOptions) -> Dataplane {
        let workers = match options.workers {
            0 => None,
            n => match Workers::start(n) {
                Ok(w) => Some(w),
                Err(e) => {
                    // Threads are a resource like any other: serve anyway, on the caller's runtime.
                    tracing::error!(error = %e, workers = n, "cannot start data path workers; serving on the main runtime");
                    None
                }
            },
        };
        let clock = Clock::new();
        let boot_id = format!("{}-{}", std::process::id(), clock.unix_ms(clock.now()));
        let health = HealthHub::new(clock, boot_id.clone());
        let shared = Arc::new(Shared {
            boot_id,
            health: health.clone(),
            state: Mutex::new(State::default()),
            apply_lock: tokio::sync::Mutex::new(()),
            connections: TaskTracker::new(),
            persist_path: options.persist_path,
            workers,
        });
        let weak = Arc::downgrade(&shared);
        health.set_on_change(Box::new(move || {
            if let Some(shared) = weak.upgrade() {
                refresh_routes(&lock(&shared.state));
            }
        }));
        Dataplane { shared }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }

    /// Changes at every start: sequence numbers and counters of another boot do not compare.
    pub fn boot_id(&self) -> &str {
        &self.shared.boot_id
    }

    /// The config being served (generation 0 and empty before the first).
    pub fn config(&self) -> Arc<Config> {
        self.lock().config.clone()
    }

    /// Make `config` the served one. Listeners it keeps are untouched; backend sets swap atomically
    /// (what is in flight keeps its backend); frontends that cannot bind are reported, not fatal.
    pub async fn apply(&self, config: Config) -> Result<ApplyReport, ApplyError> {
        config.validate()?;
        let _one_at_a_time = self.shared.apply_lock.lock().await;
        let stopping: Vec<JoinHandle<()>> = {
            let mut st = self.lock();
            if st.shutting_down {
                return Err(ApplyError::ShuttingDown);
            }
            if config.generation < st.config.generation {
                return Err(ApplyError::StaleGeneration { offered: config.generation, current: st.config.generation });
            }
            let wanted: HashSet<ListenerKey> = config.frontends.iter().map(ListenerKey::of).collect();
            let gone: Vec<ListenerKey> = st.listeners.keys().filter(|k| !wanted.contains(k)).cloned().collect();
            gone.iter().filter_map(|k| st.listeners.remove(k)).flat_map(|l| l.stop()).collect()
        };
        // A removed listener's socket must be closed before a new one binds its port (protocol change).
        for task in stopping {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        let config = Arc::new(config);
        let mut report = self.swap_in(&config);
        if let Some(path) = self.shared.persist_path.clone() {
            let c = config.clone();
            let saved = tokio::task::spawn_blocking(move || persist(&path, &c)).await;
            report.persist_error = match saved {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(format!("saving the config: {e}")),
            };
            if let Some(e) = &report.persist_error {
                tracing::error!(error = %e, "config applied but not persisted");
            }
        }
        tracing::info!(generation = config.generation, frontends = config.frontends.len(), "config applied");
        Ok(report)
    }

    /// The synchronous part of `apply`: health checks, slots, routes, listeners, pools, counters.
    fn swap_in(&self, config: &Arc<Config>) -> ApplyReport {
        let mut guard = self.lock();
        let st = &mut *guard;
        let health = &self.shared.health;
        health.apply(&config.health_checks);
        let mut binds = Vec::with_capacity(config.frontends.len());
        let mut pools_in_service = HashSet::new();
        let mut pools_used = HashSet::new();
        let per_worker = self.shared.worker_set().map_or(1, |w| w.handles().len());
        st.bind_errors.clear();
        for f in &config.frontends {
            let slots: Vec<Arc<Slot>> = f
                .backends
                .iter()
                .map(|b| {
                    let cell = b.health_check.as_deref().and_then(|id| health.cell(id));
                    let metrics = st.metrics.get_or_create(&f.name, &b.key);
                    let pool = (f.protocol == Protocol::Http).then(|| {
                        let addr = SocketAddr::new(b.address, b.port);
                        let k = (b.key.clone(), addr);
                        if b.in_service {
                            pools_in_service.insert(k.clone());
                        }
                        pools_used.insert(k.clone());
                        st.pools.entry(k).or_insert_with(|| Arc::new(Pool::new(addr, per_worker))).clone()
                    });
                    Arc::new(Slot::new(b.clone(), cell, metrics, pool))
                })
                .collect();
            let route = Route::build(Arc::new(f.clone()), slots.into());
            let key = ListenerKey::of(f);
            let bound = match st.listeners.get(&key) {
                Some(l) => {
                    l.route.store(Arc::new(route));
                    Ok(l.local_addr)
                }
                None => match Listener::start(route, &self.shared.connections, self.shared.worker_set()) {
                    Ok(l) => {
                        let addr = l.local_addr;
                        tracing::info!(frontend = %f.name, %addr, protocol = ?f.protocol, "listening");
                        st.listeners.insert(key, l);
                        Ok(addr)
                    }
                    Err(e) => {
                        let msg = format!("cannot listen on {}:{}: {e}", f.address, f.port);
                        tracing::warn!(frontend = %f.name, error = %msg, "bind failed");
                        st.bind_errors.insert(f.name.clone(), msg.clone());
                        Err(msg)
                    }
                },
            };
            binds.push(FrontendBind {
                name: f.name.clone(),
                address: f.address,
                port: f.port,
                protocol: f.protocol,
                local_addr: bound.as_ref().ok().copied(),
                error: bound.err(),
            });
        }
        // Idle keep-alive connections to a backend out of service everywhere are closed now, and those
        // still carrying a request are closed when it ends.
        for (k, pool) in &st.pools {
            if pools_in_service.contains(k) {
                pool.open();
            } else {
                pool.close();
            }
        }
        st.pools.retain(|k, _| pools_used.contains(k));
        let named: HashSet<(&str, &str)> = config
            .frontends
            .iter()
            .flat_map(|f| f.backends.iter().map(move |b| (f.name.as_str(), b.key.as_str())))
            .collect();
        st.metrics.retain(|f, k| named.contains(&(f, k)));
        st.config = config.clone();
        ApplyReport { generation: config.generation, frontends: binds, persist_error: None }
    }

    /// Every check's state now.
    pub fn health(&self) -> HealthReport {
        self.shared.health.report()
    }

    /// Health transitions after `after`, waiting up to `wait` for the first.
    pub async fn events(&self, after: u64, wait: Duration) -> EventsReport {
        self.shared.health.events(after, wait).await
    }

    /// Wait until nothing is in flight to `keys` on any frontend (Http requests, Tcp connections), or
    /// `timeout` (default: the longest drain timeout of their frontends) passes. Take the keys out of
    /// service first: a drain does not stop new traffic, it waits for the old.
    pub async fn drain(&self, keys: &[String], timeout: Option<Duration>) -> DrainReport {
        let started = Instant::now();
        let (watched, timeout, still_in_service, wake) = {
            let st = self.lock();
            let watched: Vec<Arc<BackendMetrics>> =
                keys.iter().flat_map(|k| st.metrics.for_key(k).cloned().collect::<Vec<_>>()).collect();
            for m in &watched {
                m.begin_drain();
            }
            let mut longest = None;
            let mut still = Vec::new();
            for f in &st.config.frontends {
                for b in f.backends.iter().filter(|b| keys.contains(&b.key)) {
                    longest = longest.max(Some(Duration::from_secs(f.drain_timeout_secs)));
                    if b.in_service && !still.contains(&f.name) {
                        still.push(f.name.clone());
                    }
                }
            }
            for ((key, _), pool) in &st.pools {
                if keys.contains(key) {
                    pool.close_idle();
                }
            }
            (watched, timeout.or(longest).unwrap_or(DEFAULT_DRAIN), still, st.metrics.drained.clone())
        };
        let deadline = started + timeout;
        loop {
            let woken = wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if watched.iter().all(|m| m.active() == 0) {
                break;
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep_until(deadline) => break,
                // A safety net: the wake-up is best effort (relaxed flags), this bounds a missed one.
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        for m in &watched {
            m.end_drain();
        }
        let remaining: Vec<DrainRemaining> = watched
            .iter()
            .filter(|m| m.active() > 0)
            .map(|m| DrainRemaining {
                key: m.key.clone(),
                frontend: m.frontend.clone(),
                in_flight: m.in_flight(),
                open_connections: m.open_connections(),
            })
            .collect();
        if !remaining.is_empty() {
            tracing::warn!(?keys, remaining = remaining.len(), "drain timed out");
        }
        DrainReport {
            drained: remaining.is_empty(),
            waited_ms: started.elapsed().as_millis() as u64,
            remaining,
            still_in_service,
        }
    }

    /// Frontends (bound or not), backends with eligibility, health and counters.
    pub fn status(&self) -> StatusReport {
        let st = self.lock();
        let frontends = st
            .config
            .frontends
            .iter()
            .map(|f| {
                let listener = st.listeners.get(&ListenerKey::of(f));
                let backends = match listener {
                    Some(l) => {
                        let route = l.route.load();
                        route
                            .slots
                            .iter()
                            .enumerate()
                            .map(|(i, s)| {
                                let mut b =
                                    backend_status(&s.backend, s.health(), route.is_eligible(i), s.metrics.snapshot());
                                b.pooled_idle = s.pool.as_ref().map_or(0, |p| p.idle_count() as u64);
                                b
                            })
                            .collect()
                    }
                    None => f
                        .backends
                        .iter()
                        .map(|b| {
                            let metrics = st.metrics.get(&f.name, &b.key).map(|m| m.snapshot()).unwrap_or_default();
                            let health = b.health_check.as_deref().and_then(|id| self.shared.health.cell(id));
                            backend_status(b, health.map(|h| h.get()), false, metrics)
                        })
                        .collect(),
                };
                FrontendStatus {
                    name: f.name.clone(),
                    address: f.address,
                    port: f.port,
                    protocol: f.protocol,
                    distribution: f.distribution,
                    health_gated: f.health_gated,
                    local_addr: listener.map(|l| l.local_addr),
                    error: st.bind_errors.get(&f.name).cloned(),
                    unavailable: listener.map_or(0, |l| l.unavailable.load(Relaxed)),
                    failed: listener.map_or(0, |l| l.failed.load(Relaxed)),
                    backends,
                }
            })
            .collect();
        StatusReport { boot_id: self.shared.boot_id.clone(), generation: st.config.generation, frontends }
    }

    /// Everything in Prometheus text format 0.0.4, names prefixed `galleon_lb_`.
    pub fn metrics_text(&self) -> String {
        let health = self.health();
        let st = self.lock();
        let mut p = PromText::default();
        p.family(&Family { name: "config_generation", kind: "gauge", help: "Generation of the config served." });
        p.sample("config_generation", &[], st.config.generation as f64);
        let mut counters: Vec<(Arc<BackendMetrics>, MetricsSnapshot)> =
            st.metrics.all().map(|m| (m.clone(), m.snapshot())).collect();
        counters.sort_by(|a, b| (&a.0.frontend, &a.0.key).cmp(&(&b.0.frontend, &b.0.key)));
        p.backends(&counters);
        let listeners: Vec<(&str, Option<&Arc<Listener>>)> =
            st.config.frontends.iter().map(|f| (f.name.as_str(), st.listeners.get(&ListenerKey::of(f)))).collect();
        p.family(&Family { name: "frontend_up", kind: "gauge", help: "1 when the frontend's listener is bound." });
        for (name, l) in &listeners {
            p.sample("frontend_up", &[("frontend", name)], if l.is_some() { 1.0 } else { 0.0 });
        }
        p.family(&Family {
            name: "unavailable_total",
            kind: "counter",
            help: "Requests answered 503 (Http) or connections closed (Tcp): no eligible backend.",
        });
        for (name, l) in &listeners {
            p.sample("unavailable_total", &[("frontend", name)], l.map_or(0, |l| l.unavailable.load(Relaxed)) as f64);
        }
        p.family(&Family { name: "bad_gateway_total", kind: "counter", help: "Http requests answered 502." });
        for (name, l) in &listeners {
            p.sample("bad_gateway_total", &[("frontend", name)], l.map_or(0, |l| l.failed.load(Relaxed)) as f64);
        }
        p.family(&Family { name: "backend_eligible", kind: "gauge", help: "1 when a backend may get new traffic." });
        for f in &st.config.frontends {
            if let Some(l) = st.listeners.get(&ListenerKey::of(f)) {
                let route = l.route.load();
                for (i, s) in route.slots.iter().enumerate() {
                    let v = if route.is_eligible(i) { 1.0 } else { 0.0 };
                    p.sample("backend_eligible", &[("frontend", &f.name), ("backend", &s.backend.key)], v);
                }
            }
        }
        p.family(&Family { name: "health_state", kind: "gauge", help: "1 for the current state of a health check." });
        for c in &health.checks {
            for s in [HealthState::Initializing, HealthState::Healthy, HealthState::Unhealthy, HealthState::Unknown] {
                let v = if c.state == s { 1.0 } else { 0.0 };
                p.sample("health_state", &[("check", &c.id), ("state", s.as_str())], v);
            }
        }
        p.finish()
    }

    /// Stop accepting, stop probing, ask Http connections to close after their request, and wait up to
    /// `grace` for connections to end. New configs are refused from here on.
    pub async fn shutdown(&self, grace: Duration) {
        let stopping: Vec<JoinHandle<()>> = {
            let mut st = self.lock();
            st.shutting_down = true;
            st.listeners.drain().flat_map(|(_, l)| l.stop()).collect()
        };
        self.shared.health.stop();
        for task in stopping {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        self.shared.connections.close();
        if tokio::time::timeout(grace, self.shared.connections.wait()).await.is_err() {
            tracing::warn!(left = self.shared.connections.len(), "connections still open at shutdown");
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Recompute every route's eligible backends from the health cells as they are now.
fn refresh_routes(st: &State) {
    for l in st.listeners.values() {
        let old = l.route.load();
        l.route.store(Arc::new(Route::build(old.frontend.clone(), old.slots.clone())));
    }
}

fn backend_status(b: &Backend, health: Option<HealthState>, eligible: bool, metrics: MetricsSnapshot) -> BackendStatus {
    BackendStatus {
        key: b.key.clone(),
        address: b.address,
        port: b.port,
        in_service: b.in_service,
        weight: b.weight,
        health_check: b.health_check.clone(),
        health,
        eligible,
        pooled_idle: 0,
        metrics,
    }
}

/// Save `config` so that a crash at any moment leaves the old file or the new one, never half of one.
pub(crate) fn persist(path: &Path, config: &Config) -> Result<(), PersistError> {
    let io = |source| PersistError::Io { path: path.to_owned(), source };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or_default();
    let tmp = path.with_extension(format!("json.tmp-{}-{nanos}", std::process::id()));
    let json = serde_json::to_vec_pretty(config).map_err(|e| io(std::io::Error::other(e)))?;
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            // The rename is durable only once the directory is.
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io)
}

/// The config saved by the last data plane of this home, if any.
pub fn load_persisted(path: &Path) -> Result<Option<Config>, PersistError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| PersistError::Parse { path: path.to_owned(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PersistError::Io { path: path.to_owned(), source }),
    }
}
