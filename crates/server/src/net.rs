//! The control plane's side of the network: it starts (or re-adopts) the data plane, tells it the whole
//! desired configuration, drains instances through it, and mirrors the health it observes.
//!
//! - `sync` asks for the configuration to be rebuilt from the database and pushed; a single pusher task
//!   coalesces requests, so a burst of changes is one push. `drain` first waits until a configuration
//!   with the instance out of service is live, then waits for its requests and connections to finish.
//! - In service is derived, never stored: an instance is in service when it should run, its provisioning
//!   succeeded, and no action is taking it out (`in_service`). The data plane adds health on top.
//! - Health: one check per (instance, probe) and per instance with the Application Health extension,
//!   its epoch the instance's boot counter. The mirror is filled from the data plane's `/health` at start
//!   (CONTRACT §6: nothing is judged on health not seen since the control plane started) and kept by
//!   following its transition log. A scale set's health source is resolved as CONTRACT §5 says.
//!
//! The data plane knows backends, not scale sets: everything about instances and load balancers is
//! translated here, in `build`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::Duration;

use galleon_api::ProvisioningState;
use galleon_api::lb::{LoadBalancer, ProbeProtocol as ArmProbe, RuleProtocol};
use galleon_api::vmss::VirtualMachineScaleSet;
use galleon_core::health::HealthState;
use galleon_core::ids::ResourceId;
use galleon_lb::{Backend, Config, ControlClient, Distribution, Frontend, HealthCheck, ProbeProtocol, Protocol};
use galleon_store::{Kind, Tx};

use crate::App;
use crate::error::{ApiError, ApiResult};
use crate::fleet::ScaleSet;
use crate::fleet::model::{APP_HEALTH, Model};
use crate::fleet::record::{InstanceRecord, Phase, Power};

/// Default health grace period of a (re)started instance (CONTRACT §5).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Net {
    client: OnceLock<ControlClient>,
    /// Bumped by `sync`; the pusher pushes until `applied` catches up.
    wanted: AtomicU64,
    applied: OnceLock<tokio::sync::watch::Sender<u64>>,
    wake: tokio::sync::Notify,
    /// The generation of the last configuration pushed.
    generation: AtomicU64,
    /// check id → what the data plane last reported of it.
    health: RwLock<HashMap<String, Seen>>,
    /// Whether the mirror holds the data plane's view since this control plane started.
    seen: AtomicBool,
    /// Bind errors already reported, so a broken frontend is logged once, not at every push.
    reported: Mutex<Vec<String>>,
}

/// One check as the data plane last reported it.
#[derive(Clone, Copy, Debug)]
struct Seen {
    state: HealthState,
    epoch: u64,
    /// When it entered `state` (Unix ms).
    since: u64,
}

/// Where a scale set's health comes from (CONTRACT §5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSource {
    /// The suffix of its checks' ids: `probe:<lb id>/<probe>` or `apphealth`.
    pub check: String,
    pub grace: Duration,
}

fn check_id(instance: &str, suffix: &str) -> String {
    format!("{}|{suffix}", instance.to_ascii_lowercase())
}

fn probe_suffix(lb: &str, probe: &str) -> String {
    format!("probe:{}/{}", lb.to_ascii_lowercase(), probe.to_ascii_lowercase())
}

/// Whether an instance should get traffic (before health): running, provisioned, not being taken out.
pub fn in_service(rec: &InstanceRecord) -> bool {
    rec.power == Power::Running
        && rec.provisioning == ProvisioningState::Succeeded
        && rec.pending.as_ref().is_none_or(|p| p.phase >= Phase::Started && p.action.ends_running())
}

impl Net {
    fn client(&self) -> Option<&ControlClient> {
        self.client.get()
    }

    /// Starts the data plane of the home unless one already runs, reads its health, and starts the tasks
    /// that push configurations and follow health.
    pub async fn start(&self, app: &App) -> anyhow::Result<()> {
        let socket = app.home.root().join("dataplane.sock");
        let client = ControlClient::new(&socket).with_timeout(Duration::from_secs(10));
        if client.health().await.is_err() {
            spawn_dataplane(app)?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            while client.health().await.is_err() {
                if tokio::time::Instant::now() > deadline {
                    anyhow::bail!(
                        "the data plane did not answer on {} (see {})",
                        socket.display(),
                        app.home.logs_dir().join("dataplane.log").display()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } else {
            tracing::info!("re-adopted the running data plane on {}", socket.display());
        }
        let current = client.config().await.map(|c| c.generation).unwrap_or(0);
        self.generation.store(current, Ordering::SeqCst);
        let _ = self.client.set(client);
        let _ = self.applied.set(tokio::sync::watch::channel(0).0);
        self.resync_health().await;
        let (a, b) = (app.clone(), app.clone());
        app.tasks.spawn(async move { a.net.push_loop(&a).await });
        app.tasks.spawn(async move { b.net.follow_health(&b).await });
        let w = self.sync(app);
        self.wait_applied(w, Duration::from_secs(10)).await;
        Ok(())
    }

    /// Asks for the configuration to be rebuilt and pushed; returns the request's number.
    pub fn sync(&self, _app: &App) -> u64 {
        let w = self.wanted.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake.notify_one();
        w
    }

    async fn wait_applied(&self, w: u64, timeout: Duration) -> bool {
        let Some(tx) = self.applied.get() else { return false };
        let mut rx = tx.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= w)).await.is_ok_and(|r| r.is_ok())
    }

    async fn push_loop(&self, app: &App) {
        loop {
            let w = self.wanted.load(Ordering::SeqCst);
            let applied = self.applied.get().map(|a| *a.borrow()).unwrap_or(0);
            if applied >= w {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = app.shutdown.cancelled() => return,
                }
                continue;
            }
            match self.push(app).await {
                Ok(()) => {
                    if let Some(a) = self.applied.get() {
                        a.send_replace(w);
                    }
                }
                Err(e) => {
                    tracing::warn!("cannot configure the data plane: {e}");
                    if app.shutdown.is_cancelled() {
                        return;
                    }
                    if self.client().is_some_and(|_| !Path::new(&app.home.root().join("dataplane.sock")).exists()) {
                        let _ = spawn_dataplane(app);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn push(&self, app: &App) -> anyhow::Result<()> {
        let client = self.client().ok_or_else(|| anyhow::anyhow!("no data plane"))?;
        let app2 = app.clone();
        let built = tokio::task::spawn_blocking(move || app2.store.read(|tx| build(&app2, tx))).await?;
        let mut config = built.map_err(|e| anyhow::anyhow!("cannot build the configuration: {}", e.message))?;
        config.generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        match client.put_config(&config).await {
            Ok(report) => {
                let errors: Vec<String> = report
                    .bind_errors()
                    .map(|b| format!("{} ({}:{}): {}", b.name, b.address, b.port, b.error.clone().unwrap_or_default()))
                    .collect();
                let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
                for e in errors.iter().filter(|e| !reported.contains(e)) {
                    tracing::error!("a load balancer frontend cannot listen: {e}");
                }
                *reported = errors;
                Ok(())
            }
            Err(e) => {
                if let Some(current) = e.stale_generation() {
                    // The data plane holds a newer generation (another control plane pushed it): go past it.
                    self.generation.fetch_max(current, Ordering::SeqCst);
                }
                Err(anyhow::anyhow!("{e}"))
            }
        }
    }

    async fn resync_health(&self) {
        let Some(client) = self.client() else { return };
        if let Ok(report) = client.health().await {
            let mut map = self.health.write().unwrap_or_else(|p| p.into_inner());
            map.clear();
            for c in report.checks {
                map.insert(c.id, Seen { state: c.state, epoch: c.epoch, since: c.since });
            }
            self.seen.store(true, Ordering::SeqCst);
        }
    }

    /// Mirrors the data plane's health transitions until the home shuts down (`galleon shutdown` waits for
    /// the control plane's tasks, this one included).
    async fn follow_health(&self, app: &App) {
        let Some(client) = self.client() else { return };
        let mut after = 0;
        let mut boot = String::new();
        loop {
            let events = tokio::select! {
                e = client.events(after, Duration::from_secs(10)) => e,
                _ = app.shutdown.cancelled() => return,
            };
            match events {
                Ok(report) => {
                    if report.boot_id != boot || report.truncated {
                        boot = report.boot_id.clone();
                        self.resync_health().await;
                        after = report.seq;
                        continue;
                    }
                    let changed = !report.events.is_empty();
                    {
                        let mut map = self.health.write().unwrap_or_else(|p| p.into_inner());
                        for e in report.events {
                            map.insert(e.check, Seen { state: e.to, epoch: e.epoch, since: e.at });
                        }
                    }
                    after = report.seq;
                    if changed {
                        app.events.notify_fleet_changed();
                    }
                }
                Err(_) => {
                    self.seen.store(false, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    self.resync_health().await;
                }
            }
        }
    }

    /// Waits until nothing is in flight to `backend`: first a configuration with it out of service must
    /// be live, then its requests and connections finish (up to the rule's drain timeout).
    pub async fn drain(&self, app: &App, backend: &str) {
        let Some(client) = self.client() else { return };
        let w = self.sync(app);
        if !self.wait_applied(w, Duration::from_secs(10)).await {
            tracing::warn!("draining {backend}: the data plane did not take the new configuration in 10 s");
        }
        match client.drain(&[backend.to_string()], None).await {
            Ok(r) if !r.drained => {
                tracing::warn!("{backend}: still {:?} in flight when the drain timeout passed", r.remaining)
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot drain {backend}: {e}"),
        }
    }

    /// The health of an instance as its scale set's health source sees it; `None` without a source.
    pub fn health(&self, app: &App, set: &ScaleSet, id: u32) -> Option<HealthState> {
        let (source, rec) = app
            .store
            .read(|tx| {
                let doc: VirtualMachineScaleSet = crate::resource::require(tx, &set.id, Kind::ScaleSet)?.parse()?;
                Ok::<_, ApiError>((health_source(app, tx, set, &doc)?, set.record_in(tx, id)?))
            })
            .ok()?;
        let (source, rec) = (source?, rec?);
        Some(self.health_of(set, &rec, &source))
    }

    /// The state of the instance's check for its current boot.
    pub fn health_of(&self, set: &ScaleSet, rec: &InstanceRecord, source: &HealthSource) -> HealthState {
        if rec.power != Power::Running {
            return HealthState::Unknown;
        }
        if !self.seen.load(Ordering::SeqCst) {
            return HealthState::Unknown;
        }
        let map = self.health.read().unwrap_or_else(|p| p.into_inner());
        match map.get(&check_id(&set.instance_id(rec.id), &source.check)) {
            Some(seen) if seen.epoch == rec.boot => seen.state,
            // A check of an older boot, or none yet: the new boot is still being judged.
            _ => HealthState::Initializing,
        }
    }

    /// Since when (Unix ms) the instance has been Unhealthy, if it is and that is known.
    pub fn unhealthy_since(&self, set: &ScaleSet, rec: &InstanceRecord, source: &HealthSource) -> Option<u64> {
        if !self.seen.load(Ordering::SeqCst) {
            return None;
        }
        let map = self.health.read().unwrap_or_else(|p| p.into_inner());
        map.get(&check_id(&set.instance_id(rec.id), &source.check))
            .filter(|s| s.epoch == rec.boot && s.state == HealthState::Unhealthy)
            .map(|s| s.since)
    }

    /// Whether the mirror holds the data plane's health since this control plane started.
    pub fn seen(&self) -> bool {
        self.seen.load(Ordering::SeqCst)
    }

    pub fn has_health_source(&self, app: &App, set: &ScaleSet) -> bool {
        app.store
            .read(|tx| {
                let doc: VirtualMachineScaleSet = crate::resource::require(tx, &set.id, Kind::ScaleSet)?.parse()?;
                health_source(app, tx, set, &doc)
            })
            .ok()
            .flatten()
            .is_some()
    }

    /// Waits until the instance's `boot` is judged Healthy or Unhealthy, at the latest when its grace
    /// period ends (plus a probe interval of margin); `None` when the scale set has no health source.
    pub async fn wait_healthy(&self, app: &App, set: &ScaleSet, id: u32, boot: u64) -> Option<HealthState> {
        let source = app
            .store
            .read(|tx| {
                let doc: VirtualMachineScaleSet = crate::resource::require(tx, &set.id, Kind::ScaleSet)?.parse()?;
                health_source(app, tx, set, &doc)
            })
            .ok()
            .flatten()?;
        let deadline = tokio::time::Instant::now() + source.grace + Duration::from_secs(5);
        loop {
            let rec = set.record(app, id)?;
            if rec.boot != boot {
                return None;
            }
            let state = self.health_of(set, &rec, &source);
            if matches!(state, HealthState::Healthy | HealthState::Unhealthy) {
                return Some(state);
            }
            if tokio::time::Instant::now() > deadline || app.shutdown.is_cancelled() {
                return Some(if state == HealthState::Initializing { HealthState::Unhealthy } else { state });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The health grace period of the scale set's instances.
    pub fn grace(&self, app: &App, set: &ScaleSet) -> Duration {
        app.store
            .read(|tx| {
                let doc: VirtualMachineScaleSet = crate::resource::require(tx, &set.id, Kind::ScaleSet)?.parse()?;
                Ok::<_, ApiError>(health_source(app, tx, set, &doc)?.map(|s| s.grace))
            })
            .ok()
            .flatten()
            .unwrap_or(DEFAULT_GRACE)
    }

    /// Takes an instance out of service and drains it before a shutdown stops it.
    pub async fn take_out_for_shutdown(&self, app: &App, set: &ScaleSet, id: u32) {
        if let Some(client) = self.client() {
            let _ = client.drain(&[set.backend_key(id)], Some(Duration::from_secs(10))).await;
        }
        let _ = app;
    }

    /// Ends the data plane (`galleon shutdown`) and waits until it is gone.
    pub async fn stop_dataplane(&self, app: &App) {
        let Some(client) = self.client() else { return };
        let _ = client.shutdown().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while client.health().await.is_ok() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = app;
    }

    /// What `galleon status` shows of the data plane.
    pub fn status(&self, _app: &App) -> serde_json::Value {
        let handle = tokio::runtime::Handle::current();
        let Some(client) = self.client() else { return serde_json::json!({"running": false}) };
        match handle.block_on(client.status()) {
            Ok(s) => serde_json::json!({
                "running": true,
                "generation": s.generation,
                "frontends": s.frontends.len(),
                "listening": s.frontends.iter().filter(|f| f.error.is_none()).count(),
            }),
            Err(e) => serde_json::json!({"running": false, "error": e.to_string()}),
        }
    }

    /// The data plane's full status (for load-balancer metrics); from a blocking thread.
    pub fn dataplane_status(&self) -> ApiResult<galleon_lb::StatusReport> {
        let client = self.connected()?;
        tokio::runtime::Handle::current().block_on(client.status()).map_err(unavailable)
    }

    /// Prometheus text of every frontend and backend; from a blocking thread.
    pub fn prometheus(&self) -> ApiResult<String> {
        let client = self.connected()?;
        tokio::runtime::Handle::current().block_on(client.metrics()).map_err(unavailable)
    }

    fn connected(&self) -> ApiResult<&ControlClient> {
        self.client().ok_or_else(|| unavailable("The data plane is not running."))
    }
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "DataPlaneUnavailable", e.to_string())
}

/// Starts `galleon dataplane --home H` detached (its own session, no parent-death signal: CONTRACT §2), its
/// output in `logs/dataplane.log`; a thread reaps it if it exits while this control plane runs.
fn spawn_dataplane(app: &App) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(app.home.logs_dir().join("dataplane.log"))?;
    let mut command = std::process::Command::new(exe);
    command
        .args(["dataplane", "--home"])
        .arg(app.home.root())
        .env_remove("GALLEON_HOME")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    galleon_runtime::new_session(&mut command);
    let mut child = command.spawn()?;
    tracing::info!("started the data plane (pid {})", child.id());
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(())
}

/// The health source of a scale set (CONTRACT §5): its `healthProbe`, else the one probe of the rules whose
/// pools hold it, else its Application Health extension.
pub fn health_source(
    app: &App,
    tx: &Tx<'_>,
    set: &ScaleSet,
    doc: &VirtualMachineScaleSet,
) -> ApiResult<Option<HealthSource>> {
    let generation = tx.counter(&set.generation_counter())? as u64;
    let model = crate::fleet::model::load(app.home.root(), &set.uid, generation).ok();
    health_source_with(tx, doc, model.as_ref())
}

/// `health_source`, with the model given (a model about to be set).
pub fn health_source_with(
    tx: &Tx<'_>,
    doc: &VirtualMachineScaleSet,
    model: Option<&Model>,
) -> ApiResult<Option<HealthSource>> {
    let grace = doc
        .properties
        .upgrade_policy
        .as_ref()
        .and_then(|u| u.rolling_upgrade_policy.as_ref())
        .and_then(|r| r.health_grace_period.as_deref())
        .and_then(|g| galleon_core::policy::parse_duration("healthGracePeriod", g).ok())
        .unwrap_or(DEFAULT_GRACE);
    let explicit = doc
        .properties
        .virtual_machine_profile
        .as_ref()
        .and_then(|v| v.network_profile.as_ref())
        .and_then(|n| n.health_probe.as_ref())
        .and_then(|p| ResourceId::parse(&p.id).ok());
    if let Some(probe) = explicit
        && let Some(lb) = probe.parent()
    {
        return Ok(Some(HealthSource { check: probe_suffix(&lb.to_string(), probe.name()), grace }));
    }
    let (backends, _) = memberships(doc);
    let mut probes = std::collections::BTreeSet::new();
    for pool in &backends {
        let Ok(pid) = ResourceId::parse(pool) else { continue };
        let Some(lb_id) = pid.parent() else { continue };
        let Some(row) = tx.get(&lb_id.to_string())? else { continue };
        let lb: LoadBalancer = row.parse()?;
        for r in &lb.properties.load_balancing_rules {
            let pool_matches =
                r.properties.backend_address_pool.as_ref().is_some_and(|b| b.id.eq_ignore_ascii_case(&pid.to_string()));
            if let (true, Some(p)) = (pool_matches, &r.properties.probe) {
                let name = p.id.rsplit('/').next().unwrap_or_default();
                probes.insert(probe_suffix(&row.id, name));
            }
        }
    }
    if probes.len() == 1 {
        return Ok(probes.pop_first().map(|check| HealthSource { check, grace }));
    }
    if let Some(ext) = model.and_then(|m| m.extension(APP_HEALTH)) {
        let settings = app_health(ext)?;
        return Ok(Some(HealthSource { check: "apphealth".into(), grace: settings.grace }));
    }
    Ok(None)
}

/// The Application Health extension's settings (Azure's v2 shape), checked.
pub struct AppHealth {
    pub protocol: ProbeProtocol,
    /// `https`: the Http exchange over TLS.
    pub tls: bool,
    pub port: u16,
    pub path: Option<String>,
    pub interval: Duration,
    pub probes: u32,
    pub grace: Duration,
}

pub fn app_health(ext: &galleon_api::vmss::Extension) -> ApiResult<AppHealth> {
    let s = ext.properties.settings.clone().unwrap_or_default();
    let bad = |m: &str| ApiError::invalid(format!("The ApplicationHealthLinux settings: {m}"));
    let (protocol, tls) =
        match s.get("protocol").and_then(|p| p.as_str()).unwrap_or("http").to_ascii_lowercase().as_str() {
            "http" => (ProbeProtocol::AppHealthHttp, false),
            "https" => (ProbeProtocol::AppHealthHttp, true),
            "tcp" => (ProbeProtocol::Tcp, false),
            other => return Err(bad(&format!("protocol '{other}' must be http, https or tcp"))),
        };
    let port = s.get("port").and_then(|p| p.as_u64()).and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0);
    let port = port.ok_or_else(|| bad("a port from 1 to 65535 is needed"))?;
    let path = match protocol {
        ProbeProtocol::Tcp => None,
        _ => Some(s.get("requestPath").and_then(|p| p.as_str()).unwrap_or("/").to_string()),
    };
    let interval = s.get("intervalInSeconds").and_then(|v| v.as_u64()).unwrap_or(5);
    let probes = s.get("numberOfProbes").and_then(|v| v.as_u64()).unwrap_or(1);
    let grace = s.get("gracePeriod").and_then(|v| v.as_u64()).unwrap_or(interval * probes);
    if !(1..=3600).contains(&interval) || !(1..=24).contains(&probes) || grace > 7200 {
        return Err(bad("intervalInSeconds 1-3600, numberOfProbes 1-24, gracePeriod at most 7200"));
    }
    Ok(AppHealth {
        protocol,
        tls,
        port,
        path,
        interval: Duration::from_secs(interval),
        probes: probes as u32,
        grace: Duration::from_secs(grace),
    })
}

/// The whole data-plane configuration, from the database (its generation is set when it is pushed).
fn build(app: &App, tx: &Tx<'_>) -> ApiResult<Config> {
    let mut config = Config::default();
    let mut checks: HashMap<String, HealthCheck> = HashMap::new();
    for row in tx.all(Kind::LoadBalancer)? {
        let lb: LoadBalancer = row.parse()?;
        let lid = ResourceId::parse(&row.id).map_err(ApiError::internal)?;
        let label = format!("{}/{}", lid.resource_group.as_deref().unwrap_or_default(), lid.name());
        let members = crate::api::lb::members(tx, &lid)?;
        let address_of = |fe: Option<&galleon_api::SubResource>| -> ApiResult<Option<IpAddr>> {
            let name = fe.map(|f| f.id.rsplit('/').next().unwrap_or_default().to_string()).unwrap_or_else(|| {
                lb.properties.frontend_ip_configurations.first().and_then(|f| f.name.clone()).unwrap_or_default()
            });
            let owner = format!("lb:{}/{}", row.id.to_ascii_lowercase(), name.to_ascii_lowercase());
            Ok(tx.address_of(&owner)?.map(IpAddr::V4))
        };
        let addr_of = |m: &crate::api::lb::Member| -> ApiResult<Option<IpAddr>> {
            Ok(tx.address_of(&format!("vm:{}/{}", m.set.uid, m.rec.id))?.map(IpAddr::V4))
        };
        for r in &lb.properties.load_balancing_rules {
            let q = &r.properties;
            let Some(address) = address_of(q.frontend_ip_configuration.as_ref())? else { continue };
            let pool = q
                .backend_address_pool
                .as_ref()
                .map(|p| p.id.rsplit('/').next().unwrap_or_default().to_ascii_lowercase())
                .unwrap_or_default();
            let probe = q.probe.as_ref().and_then(|p| {
                let name = p.id.rsplit('/').next()?;
                lb.properties.probes.iter().find(|x| x.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            });
            let mut backends = vec![];
            for m in members.iter().filter(|m| m.pools.contains(&pool)) {
                let Some(ip) = addr_of(m)? else { continue };
                let instance = m.set.instance_id(m.rec.id);
                let health_check = match probe {
                    Some(p) => {
                        let id = check_id(&instance, &probe_suffix(&row.id, p.name.as_deref().unwrap_or_default()));
                        checks.entry(id.clone()).or_insert_with(|| probe_check(&id, ip, p, m, app, tx));
                        Some(id)
                    }
                    None => None,
                };
                backends.push(Backend {
                    key: instance,
                    address: ip,
                    port: q.backend_port.unwrap_or(0),
                    health_check,
                    in_service: in_service(&m.rec),
                    weight: 1,
                });
            }
            config.frontends.push(Frontend {
                name: format!("{label}/{}", r.name.as_deref().unwrap_or_default()),
                address,
                port: q.frontend_port.unwrap_or(0),
                protocol: if q.protocol == Some(RuleProtocol::Http) { Protocol::Http } else { Protocol::Tcp },
                distribution: match q.load_distribution.unwrap_or_default() {
                    galleon_api::lb::LoadDistribution::Default => Distribution::Default,
                    galleon_api::lb::LoadDistribution::SourceIp => Distribution::SourceIp,
                    galleon_api::lb::LoadDistribution::SourceIpProtocol => Distribution::SourceIpProtocol,
                },
                idle_timeout_secs: u64::from(q.idle_timeout_in_minutes.unwrap_or(4)) * 60,
                drain_timeout_secs: u64::from(q.drain_timeout_in_seconds.unwrap_or(30)),
                health_gated: true,
                backends,
            });
        }
        for n in &lb.properties.inbound_nat_pools {
            let q = &n.properties;
            let Some(address) = address_of(q.frontend_ip_configuration.as_ref())? else { continue };
            let pool = n.name.clone().unwrap_or_default().to_ascii_lowercase();
            let (start, end) = (q.frontend_port_range_start.unwrap_or(0), q.frontend_port_range_end.unwrap_or(0));
            for m in members.iter().filter(|m| m.nat_pools.contains(&pool)) {
                let (Some(ip), Some(port)) = (addr_of(m)?, crate::api::lb::nat_port(start, end, m.rec.id)) else {
                    continue;
                };
                config.frontends.push(Frontend {
                    name: format!("{label}/{}.{}", n.name.as_deref().unwrap_or_default(), m.rec.id),
                    address,
                    port,
                    protocol: Protocol::Tcp,
                    distribution: Distribution::Default,
                    idle_timeout_secs: u64::from(q.idle_timeout_in_minutes.unwrap_or(4)) * 60,
                    drain_timeout_secs: 30,
                    health_gated: false,
                    backends: vec![Backend {
                        key: m.set.instance_id(m.rec.id),
                        address: ip,
                        port: q.backend_port.unwrap_or(0),
                        health_check: None,
                        in_service: in_service(&m.rec),
                        weight: 1,
                    }],
                });
            }
        }
    }
    // Health probes that gate scale sets but no rule (a scale set's `healthProbe`), and the Application
    // Health extension.
    for row in tx.all(Kind::ScaleSet)? {
        let doc: VirtualMachineScaleSet = row.parse()?;
        let set = ScaleSet::of(&doc, &row.id)?;
        let Some(source) = health_source(app, tx, &set, &doc)? else { continue };
        let generation = tx.counter(&set.generation_counter())? as u64;
        let model = crate::fleet::model::load(app.home.root(), &set.uid, generation).ok();
        for rec in set.records_in(tx)? {
            let Some(ip) = tx.address_of(&format!("vm:{}/{}", set.uid, rec.id))?.map(IpAddr::V4) else { continue };
            let id = check_id(&set.instance_id(rec.id), &source.check);
            if checks.contains_key(&id) {
                continue;
            }
            if source.check == "apphealth" {
                let Some(ext) = model.as_ref().and_then(|m: &Model| m.extension(APP_HEALTH)) else { continue };
                let h = app_health(ext)?;
                checks.insert(
                    id.clone(),
                    HealthCheck {
                        id,
                        address: ip,
                        port: h.port,
                        protocol: h.protocol,
                        path: h.path,
                        tls: h.tls,
                        interval_ms: h.interval.as_millis() as u64,
                        threshold: h.probes,
                        grace_ms: h.grace.as_millis() as u64,
                        epoch: rec.boot,
                    },
                );
            } else if let Some((lb_key, probe)) = source.check.strip_prefix("probe:").and_then(|s| s.rsplit_once('/')) {
                let Some(lb_row) = tx.get(lb_key)? else { continue };
                let lb: LoadBalancer = lb_row.parse()?;
                let Some(p) = lb
                    .properties
                    .probes
                    .iter()
                    .find(|p| p.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(probe)))
                else {
                    continue;
                };
                checks.insert(id.clone(), lb_probe(id, ip, &p.properties, source.grace, rec.boot));
            }
        }
    }
    let mut checks: Vec<HealthCheck> = checks.into_values().collect();
    checks.sort_by(|a, b| a.id.cmp(&b.id));
    config.health_checks = checks;
    Ok(config)
}

fn probe_check(
    id: &str,
    ip: IpAddr,
    p: &galleon_api::Child<galleon_api::lb::ProbeProperties>,
    m: &crate::api::lb::Member,
    app: &App,
    tx: &Tx<'_>,
) -> HealthCheck {
    let grace = tx
        .get(&m.set.key)
        .ok()
        .flatten()
        .and_then(|row| row.parse::<VirtualMachineScaleSet>().ok())
        .and_then(|doc| health_source(app, tx, &m.set, &doc).ok().flatten())
        .map(|s| s.grace)
        .unwrap_or(DEFAULT_GRACE);
    lb_probe(id.to_string(), ip, &p.properties, grace, m.rec.boot)
}

/// A load balancer's probe against one backend.
fn lb_probe(id: String, ip: IpAddr, q: &galleon_api::lb::ProbeProperties, grace: Duration, epoch: u64) -> HealthCheck {
    HealthCheck {
        id,
        address: ip,
        port: q.port.unwrap_or(0),
        protocol: if q.protocol == Some(ArmProbe::Tcp) { ProbeProtocol::Tcp } else { ProbeProtocol::Http },
        path: q.request_path.clone(),
        tls: q.protocol == Some(ArmProbe::Https),
        interval_ms: u64::from(q.interval_in_seconds.unwrap_or(15)) * 1000,
        threshold: q.probe_threshold.or(q.number_of_probes).unwrap_or(2),
        grace_ms: grace.as_millis() as u64,
        epoch,
    }
}

/// The load-balancer pools a scale set's model puts its instances in: (backend pools, NAT pools).
pub fn memberships(doc: &VirtualMachineScaleSet) -> (Vec<String>, Vec<String>) {
    let mut backends = vec![];
    let mut nats = vec![];
    let nics = doc
        .properties
        .virtual_machine_profile
        .as_ref()
        .and_then(|p| p.network_profile.as_ref())
        .and_then(|n| n.network_interface_configurations.as_ref());
    for nic in nics.into_iter().flatten() {
        for ip in nic.properties.ip_configurations.iter().flatten() {
            backends.extend(ip.properties.load_balancer_backend_address_pools.iter().flatten().map(|s| s.id.clone()));
            nats.extend(ip.properties.load_balancer_inbound_nat_pools.iter().flatten().map(|s| s.id.clone()));
        }
    }
    (backends, nats)
}

/// Every pool a scale set names must exist in its load balancer.
pub fn validate_membership(app: &App, doc: &VirtualMachineScaleSet) -> ApiResult<()> {
    let (backends, nats) = memberships(doc);
    for (pool, kind) in
        backends.iter().map(|p| (p, "backendAddressPools")).chain(nats.iter().map(|p| (p, "inboundNatPools")))
    {
        let id = ResourceId::parse(pool).map_err(|e| ApiError::invalid(e.to_string()))?;
        let lb = id.parent().filter(|p| p.is("Microsoft.Network", &["loadBalancers"]));
        let Some(lb) = lb.filter(|_| id.types.last().is_some_and(|t| t.eq_ignore_ascii_case(kind))) else {
            return Err(ApiError::invalid(format!("'{pool}' is not a load balancer {kind} id.")));
        };
        let row = app.store.read(|tx| crate::resource::require(tx, &lb, Kind::LoadBalancer))?;
        let pools =
            row.doc.pointer(&format!("/properties/{kind}")).and_then(|p| p.as_array()).cloned().unwrap_or_default();
        if !pools
            .iter()
            .any(|p| p.get("name").and_then(|n| n.as_str()).is_some_and(|n| n.eq_ignore_ascii_case(id.name())))
        {
            return Err(ApiError::not_found(
                "ResourceNotFound",
                format!("The load balancer '{}' has no {kind} entry '{}'.", lb.name(), id.name()),
            ));
        }
    }
    let probe = doc
        .properties
        .virtual_machine_profile
        .as_ref()
        .and_then(|v| v.network_profile.as_ref())
        .and_then(|n| n.health_probe.as_ref());
    if let Some(p) = probe {
        let id = ResourceId::parse(&p.id).map_err(|e| ApiError::invalid(e.to_string()))?;
        let lb = id.parent().filter(|l| {
            l.is("Microsoft.Network", &["loadBalancers"])
                && id.types.last().is_some_and(|t| t.eq_ignore_ascii_case("probes"))
        });
        let lb =
            lb.ok_or_else(|| ApiError::invalid(format!("healthProbe '{}' is not a load balancer probe id.", p.id)))?;
        let row = app.store.read(|tx| crate::resource::require(tx, &lb, Kind::LoadBalancer))?;
        let lbdoc: LoadBalancer = row.parse()?;
        if !lbdoc.properties.probes.iter().any(|x| x.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(id.name())))
        {
            return Err(ApiError::not_found(
                "ResourceNotFound",
                format!("The load balancer '{}' has no probe '{}'.", lb.name(), id.name()),
            ));
        }
    }
    Ok(())
}
