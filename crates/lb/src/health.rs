//! Probers, the health trackers they feed, and the log of transitions the control plane reads.
//!
//! One `galleon_core::health::Tracker` per health check id is the only judge of health (the same
//! hysteresis the control plane's gating uses); this module only feeds it outcomes and `tick`s, on
//! tokio's clock so tests can pause time. Each tracker publishes its state in a `HealthCell` (one atomic)
//! that backend selection reads when routes are rebuilt; a transition triggers that rebuild through
//! the `on_change` hook. Probing itself is in `probe.rs`; eligibility in `pick.rs`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use galleon_core::health::{HealthState, Outcome, Rules, Tracker, Transition};
use galleon_core::time::Time;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::HealthCheck;
use crate::probe::{self, Seen};
use crate::wire::{CheckHealth, EventsReport, HealthEvent, HealthReport, ProbeOutcome};

/// Transitions kept for `/events`; a reader further behind is told to re-read `/health`.
const MAX_EVENTS: usize = 4096;

/// The state of one check, readable without a lock.
#[derive(Debug)]
pub(crate) struct HealthCell(AtomicU8);

impl HealthCell {
    fn new(state: HealthState) -> HealthCell {
        HealthCell(AtomicU8::new(encode(state)))
    }

    pub(crate) fn get(&self) -> HealthState {
        match self.0.load(Ordering::Acquire) {
            0 => HealthState::Initializing,
            1 => HealthState::Healthy,
            2 => HealthState::Unhealthy,
            _ => HealthState::Unknown,
        }
    }

    fn set(&self, state: HealthState) {
        self.0.store(encode(state), Ordering::Release);
    }
}

fn encode(state: HealthState) -> u8 {
    match state {
        HealthState::Initializing => 0,
        HealthState::Healthy => 1,
        HealthState::Unhealthy => 2,
        HealthState::Unknown => 3,
    }
}

/// Time for the trackers: milliseconds since the data plane started, on tokio's (pausable) clock;
/// reported to the control plane as Unix milliseconds.
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    base: Instant,
    base_unix_ms: u64,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        let base_unix_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default();
        Clock { base: Instant::now(), base_unix_ms }
    }

    pub(crate) fn now(&self) -> Time {
        Time::from_millis(self.base.elapsed().as_millis() as u64)
    }

    pub(crate) fn unix_ms(&self, t: Time) -> u64 {
        self.base_unix_ms + t.as_millis()
    }
}

struct Entry {
    spec: HealthCheck,
    tracker: Tracker,
    cell: Arc<HealthCell>,
    since: Time,
    last: Option<(Outcome, Time, String)>,
    /// Which prober may report: results of a replaced prober are dropped.
    token: u64,
    task: AbortHandle,
}

#[derive(Default)]
struct HubState {
    checks: HashMap<String, Entry>,
    events: VecDeque<HealthEvent>,
    next_token: u64,
}

/// Every health check of the data plane.
pub(crate) struct HealthHub {
    clock: Clock,
    boot_id: String,
    state: Mutex<HubState>,
    /// The last sequence number given out; long polls wait on it.
    seq: watch::Sender<u64>,
    on_change: OnceLock<Box<dyn Fn() + Send + Sync>>,
    me: Weak<HealthHub>,
}

impl std::fmt::Debug for HealthHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthHub").field("seq", &*self.seq.borrow()).finish_non_exhaustive()
    }
}

fn rules(c: &HealthCheck) -> Rules {
    Rules { threshold: c.threshold, grace: Duration::from_millis(c.grace_ms) }
}

/// What makes a prober probe differently (the rules are the tracker's business).
/// Whether two specs probe alike (what a prober was started with); the rest is the tracker's rules.
fn same_probe(a: &HealthCheck, b: &HealthCheck) -> bool {
    let probe = |c: &HealthCheck| (c.address, c.port, c.protocol, c.path.clone(), c.tls, c.interval_ms);
    probe(a) == probe(b)
}

fn wire_outcome(o: Outcome) -> ProbeOutcome {
    match o {
        Outcome::Success => ProbeOutcome::Success,
        Outcome::Failure => ProbeOutcome::Failure,
        Outcome::Silence => ProbeOutcome::Silence,
    }
}

impl HealthHub {
    pub(crate) fn new(clock: Clock, boot_id: String) -> Arc<HealthHub> {
        Arc::new_cyclic(|me| HealthHub {
            clock,
            boot_id,
            state: Mutex::new(HubState::default()),
            seq: watch::Sender::new(0),
            on_change: OnceLock::new(),
            me: me.clone(),
        })
    }

    /// Called after a prober changed a state (never while applying a config: the applier rebuilds).
    pub(crate) fn set_on_change(&self, f: Box<dyn Fn() + Send + Sync>) {
        let _ = self.on_change.set(f);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cell of a check, for the backends it gates.
    pub(crate) fn cell(&self, id: &str) -> Option<Arc<HealthCell>> {
        self.lock().checks.get(id).map(|e| e.cell.clone())
    }

    /// Make the checks those of the config: new ones start (Initializing, probed at once), a bumped
    /// epoch restarts its tracker and prober, a changed probe restarts only the prober, removed ones stop.
    pub(crate) fn apply(&self, checks: &[HealthCheck]) {
        let now = self.clock.now();
        let mut st = self.lock();
        let st = &mut *st;
        let wanted: HashMap<&str, &HealthCheck> = checks.iter().map(|c| (c.id.as_str(), c)).collect();
        let gone: Vec<String> = st.checks.keys().filter(|id| !wanted.contains_key(id.as_str())).cloned().collect();
        for id in gone {
            if let Some(e) = st.checks.remove(&id) {
                e.task.abort();
                let from = e.tracker.state();
                e.cell.set(HealthState::Unknown);
                self.log(&mut st.events, &id, e.spec.epoch, Transition { from, to: HealthState::Unknown, at: now });
            }
        }
        for spec in checks {
            match st.checks.get_mut(&spec.id) {
                Some(e) if e.spec == *spec => {}
                Some(e) => {
                    e.tracker.set_rules(rules(spec));
                    let restart = e.spec.epoch != spec.epoch;
                    let reprobe = restart || !same_probe(&e.spec, spec);
                    e.spec = spec.clone();
                    if restart {
                        e.since = now;
                        e.last = None;
                        if let Some(t) = e.tracker.restart(now) {
                            self.log(&mut st.events, &spec.id, spec.epoch, t);
                        }
                        e.cell.set(e.tracker.state());
                    }
                    if reprobe {
                        e.task.abort();
                        st.next_token += 1;
                        e.token = st.next_token;
                        e.task = self.spawn_prober(spec.clone(), e.token);
                    }
                }
                None => {
                    st.next_token += 1;
                    let token = st.next_token;
                    let tracker = Tracker::new(rules(spec), now);
                    let cell = Arc::new(HealthCell::new(tracker.state()));
                    let t = Transition { from: HealthState::Unknown, to: tracker.state(), at: now };
                    self.log(&mut st.events, &spec.id, spec.epoch, t);
                    let task = self.spawn_prober(spec.clone(), token);
                    st.checks.insert(
                        spec.id.clone(),
                        Entry { spec: spec.clone(), tracker, cell, since: now, last: None, token, task },
                    );
                }
            }
        }
    }

    fn spawn_prober(&self, spec: HealthCheck, token: u64) -> AbortHandle {
        tokio::spawn(prober(self.me.clone(), spec, token)).abort_handle()
    }

    fn log(&self, events: &mut VecDeque<HealthEvent>, check: &str, epoch: u64, t: Transition) {
        let seq = *self.seq.borrow() + 1;
        if events.len() >= MAX_EVENTS {
            events.pop_front();
        }
        events.push_back(HealthEvent {
            seq,
            check: check.to_owned(),
            epoch,
            from: t.from,
            to: t.to,
            at: self.clock.unix_ms(t.at),
        });
        tracing::info!(check, epoch, from = t.from.as_str(), to = t.to.as_str(), seq, "health transition");
        self.seq.send_replace(seq);
    }

    /// A prober's report: feed the tracker; rebuild routes if the state moved.
    fn record(&self, id: &str, token: u64, seen: Option<Seen>) {
        let now = self.clock.now();
        let changed = {
            let mut st = self.lock();
            let st = &mut *st;
            let Some(e) = st.checks.get_mut(id).filter(|e| e.token == token) else { return };
            let transition = match seen {
                Some(seen) => {
                    let t = e.tracker.observe(seen.outcome, now);
                    e.last = Some((seen.outcome, now, seen.detail));
                    t
                }
                None => e.tracker.tick(now),
            };
            match transition {
                Some(t) => {
                    e.since = now;
                    e.cell.set(t.to);
                    let epoch = e.spec.epoch;
                    self.log(&mut st.events, id, epoch, t);
                    true
                }
                None => false,
            }
        };
        if changed && let Some(f) = self.on_change.get() {
            f();
        }
    }

    pub(crate) fn report(&self) -> HealthReport {
        let st = self.lock();
        let mut checks: Vec<CheckHealth> = st
            .checks
            .iter()
            .map(|(id, e)| CheckHealth {
                id: id.clone(),
                epoch: e.spec.epoch,
                state: e.tracker.state(),
                since: self.clock.unix_ms(e.since),
                last_outcome: e.last.as_ref().map(|l| wire_outcome(l.0)),
                last_probe_at: e.last.as_ref().map(|l| self.clock.unix_ms(l.1)),
                last_detail: e.last.as_ref().map(|l| l.2.clone()),
            })
            .collect();
        checks.sort_by(|a, b| a.id.cmp(&b.id));
        HealthReport { boot_id: self.boot_id.clone(), seq: *self.seq.borrow(), checks }
    }

    /// Transitions after `after`, waiting up to `wait` for one when there is none yet.
    pub(crate) async fn events(&self, after: u64, wait: Duration) -> EventsReport {
        let mut rx = self.seq.subscribe();
        let deadline = Instant::now() + wait;
        loop {
            let seq = *rx.borrow_and_update();
            if seq != after || wait.is_zero() {
                break;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => break,
            }
        }
        let st = self.lock();
        let seq = *self.seq.borrow();
        let oldest = st.events.front().map_or(seq + 1, |e| e.seq);
        // A reader ahead of us talks to an earlier boot; one behind the log missed events.
        let truncated = after > seq || (after + 1 < oldest && after < seq);
        let events = st.events.iter().filter(|e| e.seq > after).cloned().collect();
        EventsReport { boot_id: self.boot_id.clone(), seq, truncated, events }
    }

    /// Stop every prober (shutdown).
    pub(crate) fn stop(&self) {
        for e in self.lock().checks.values() {
            e.task.abort();
        }
    }
}

/// Probe one check every interval, for as long as the hub wants it.
async fn prober(hub: Weak<HealthHub>, spec: HealthCheck, token: u64) {
    let mut every = tokio::time::interval(Duration::from_millis(spec.interval_ms));
    // A slow probe delays the next one rather than firing a burst to catch up.
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        // Grace expiry needs no probe outcome: a backend that never answers still becomes Unhealthy.
        match hub.upgrade() {
            Some(h) => h.record(&spec.id, token, None),
            None => return,
        }
        let seen = probe::probe(&spec).await;
        match hub.upgrade() {
            Some(h) => h.record(&spec.id, token, Some(seen)),
            None => return,
        }
    }
}
