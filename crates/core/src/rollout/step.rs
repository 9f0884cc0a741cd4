//! The step function: one `match` on `State`, one method per state, each a few rules in order.
//!
//! Owns every change of the `Upgrade` and every action. Does not compute the limits (`limits`) nor
//! index the snapshot (`fleet`). Each call may pass through a few states (a batch judged, the next one
//! started), but stops as soon as it asks the shell for an instance action: the snapshot no longer
//! shows everything then. A record always goes with a change of the `Upgrade`, so planning again on the
//! same snapshot changes nothing and says nothing (the idempotence the shell relies on after a crash).

use std::collections::BTreeSet;

use crate::health::HealthState;
use crate::policy::RollingPolicy;
use crate::time::Time;

use super::fleet::{Fleet, Seen, out_of_service, seen};
use super::limits::{
    MAX_ATTEMPTS, RECHECK, RESEND_AFTER, batch_size, health_deadline, ids, stall_limit, unhealthy_allowance,
    upgraded_allowance,
};
use super::{Act, Kind, Observed, Plan, Sent, Snapshot, State, Surge, Upgrade};

/// The next state, the actions, and when to look again.
pub fn plan(s: &Snapshot<'_>) -> Plan {
    let mut step = Step {
        now: s.now,
        policy: s.policy,
        fleet: Fleet::new(s.instances),
        u: s.upgrade.clone(),
        actions: Vec::new(),
        acted: false,
    };
    let wake_at = step.run();
    Plan { next: step.u, actions: step.actions, wake_at }
}

/// More transitions than any path takes in one call (Upgrading → Ready → Faulted → rolling back → done).
const MAX_TRANSITIONS: usize = 8;

struct Step<'a> {
    now: Time,
    policy: RollingPolicy,
    fleet: Fleet<'a>,
    /// The next `Upgrade`, changed in place.
    u: Upgrade,
    actions: Vec<Act>,
    /// An instance action was asked in this call.
    acted: bool,
}

/// What a state's method says to do next.
enum Flow {
    /// The state changed: decide again in the new one.
    Next,
    /// Nothing more now: look again at this time (None: on the next event; the stall deadline still holds).
    Wait(Option<Time>),
}

/// A check before or after a batch.
enum Check {
    Pass,
    /// Health not settled yet decides it (see `Step::settled`): wait until this time.
    Undecided(Option<Time>),
    Fail(String),
}

/// Health as a check counts it.
enum Settled {
    Healthy,
    NotHealthy,
    /// Not yet; settled at the latest at this time.
    Not(Time),
}

/// Whether an instance's health settles a batch.
enum Verdict {
    Healthy,
    NotHealthy(&'static str),
    Pending(Option<Time>),
}

/// An instance action, for `Step::ask`.
#[derive(Clone, Copy)]
enum Ask {
    Upgrade(u32),
    Rollback,
    Delete,
}

/// Whether to ask an action again.
enum Resend {
    Now,
    At(Time),
    GiveUp,
}

/// What a state waits for, and the earliest time worth looking again.
#[derive(Default)]
struct Waiting {
    any: bool,
    at: Option<Time>,
}

impl Waiting {
    fn on(&mut self, at: Option<Time>) {
        self.any = true;
        self.at = earliest(self.at, at);
    }
}

fn earliest(a: Option<Time>, b: Option<Time>) -> Option<Time> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

fn usize_of(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Step<'_> {
    /// The step loop; returns `wake_at`.
    fn run(&mut self) -> Option<Time> {
        if self.u.state.is_terminal() {
            return None;
        }
        // Health not seen means the control plane just (re)started: its downtime is not the upgrade's
        // stall, so the stall clock starts over (and nothing is judged until health is seen).
        if self.fleet.all().any(|o| !o.health_seen) {
            self.u.progress_at = self.u.progress_at.max(self.now);
        }
        if self.u.state.is_rolling_forward() {
            self.skip_protected();
        }
        for _ in 0..MAX_TRANSITIONS {
            let (mark, acted) = (self.actions.len(), self.acted);
            let flow = match self.u.state {
                State::Ready => self.ready(),
                State::Upgrading => self.upgrading(),
                State::Surging => self.surging(),
                State::Replacing => self.replacing(),
                State::Faulted { rolling_back: true } => self.rolling_back(),
                State::Faulted { rolling_back: false } | State::Cancelled | State::Completed => return None,
            };
            let Flow::Wait(at) = flow else { continue };
            let deadline = self.u.progress_at + stall_limit(&self.policy);
            if self.now < deadline {
                // Look again when an action that does not show would be asked again.
                let at = if self.acted { earliest(at, Some(self.now + RESEND_AFTER)) } else { at };
                return earliest(at, Some(deadline));
            }
            // Stalled. A state that waits made no progress in this call, so all it did was ask again
            // for actions that did not show: moot now, it faults (or gives its rollback up) instead.
            // Dropping them keeps a second call on the same snapshot from deciding differently.
            self.actions.truncate(mark);
            self.acted = acted;
            self.stalled();
        }
        Some(self.now + RECHECK)
    }

    // ---- Rolling forward ------------------------------------------------------------------------

    /// Protected instances are never touched: recorded once, kept out of every batch.
    fn skip_protected(&mut self) {
        let fresh: Vec<u32> = self
            .fleet
            .all()
            .filter(|o| o.protected && !o.on_target && !self.u.batch.contains(&o.id))
            .filter(|o| {
                !self.u.skipped.contains(&o.id) && !self.u.upgraded.contains(&o.id) && !self.u.failed.contains(&o.id)
            })
            .map(|o| o.id)
            .collect();
        for id in fresh {
            self.u.skipped.insert(id);
            self.record(Some(id), "skipped: protected from scale-set actions".into());
        }
    }

    /// Between batches: cancel, pause, complete, or check and start the next batch.
    fn ready(&mut self) -> Flow {
        let number = self.u.batch_number + 1;
        if self.u.cancel_requested {
            return self.finish(State::Cancelled, format!("Cancelled before batch {number}"));
        }
        if let Some(ended) = self.u.batch_ended_at {
            let resume = ended + self.policy.pause_time_between_batches;
            if self.now < resume {
                return Flow::Wait(Some(resume));
            }
        }
        let candidates = self.fleet.candidates(&self.u, &self.policy);
        if candidates.is_empty() {
            let reason = format!(
                "Completed: {} upgraded, {} failed, {} skipped",
                self.u.upgraded.len() + self.u.replaced.len(),
                self.u.failed.len(),
                self.u.skipped.len()
            );
            return self.finish(State::Completed, reason);
        }
        let room = usize_of(self.b()).saturating_sub(self.fleet.busy_by_upgrade());
        let batch: Vec<u32> = candidates.iter().filter(|o| o.busy.is_none()).take(room).map(|o| o.id).collect();
        if batch.is_empty() {
            // Every candidate left is busy with someone else's action; its end is an event.
            return Flow::Wait(None);
        }
        match self.before_batch(number, &batch) {
            Check::Pass => self.start_batch(number, batch),
            Check::Undecided(at) => Flow::Wait(at),
            Check::Fail(reason) => {
                self.fault(reason);
                Flow::Next
            }
        }
    }

    /// CONTRACT §6: |not Healthy now ∪ the batch| ≤ A. Health not settled yet (not seen since the
    /// restart, or Initializing inside its grace period, as after a scale-out) counts against the batch:
    /// it passes if it would pass however that health settles, and otherwise waits until it has.
    fn before_batch(&self, number: u32, batch: &[u32]) -> Check {
        let allowed = unhealthy_allowance(self.u.total, &self.policy);
        let members: BTreeSet<u32> = batch.iter().copied().collect();
        let mut not_healthy = Vec::new();
        let mut undecided = Waiting::default();
        let mut unsettled = 0usize;
        for o in self.fleet.all().filter(|o| !members.contains(&o.id)) {
            match self.settled(o) {
                Settled::Healthy => {}
                Settled::NotHealthy => not_healthy.push(o.id),
                Settled::Not(until) => {
                    unsettled += 1;
                    undecided.on(Some(until));
                }
            }
        }
        let union = members.len() + not_healthy.len();
        if union + unsettled <= usize_of(allowed) {
            Check::Pass
        } else if undecided.any {
            Check::Undecided(undecided.at)
        } else {
            Check::Fail(format!(
                "before batch {number}, {union} instances would be unhealthy or upgrading (allowed {allowed}): \
                 not Healthy {}; batch {}",
                if not_healthy.is_empty() { "none".into() } else { ids(not_healthy.iter()) },
                ids(members.iter())
            ))
        }
    }

    /// Health as a check may count it now. Never judged: health not seen since the restart (CONTRACT
    /// §6), and Initializing inside its grace period (a scale-out, a user's restart): both settle soon.
    fn settled(&self, o: &Observed) -> Settled {
        match (seen(o), o.health, o.started_at) {
            (Seen::Unseen, _, _) => Settled::Not(self.now + RECHECK),
            (Seen::Healthy, _, _) => Settled::Healthy,
            (Seen::NotHealthy, HealthState::Initializing, Some(started)) => {
                let deadline = health_deadline(started, &self.policy);
                if self.now < deadline { Settled::Not(deadline) } else { Settled::NotHealthy }
            }
            (Seen::NotHealthy, _, _) => Settled::NotHealthy,
        }
    }

    fn start_batch(&mut self, number: u32, mut batch: Vec<u32>) -> Flow {
        batch.sort_unstable();
        self.u.batch_number = number;
        self.u.batch = batch.iter().copied().collect();
        self.u.batch_started_at = Some(self.now);
        self.u.sent.clear();
        self.progressed();
        if self.policy.max_surge {
            let count = u32_of(batch.len());
            self.u.surge = Some(Surge {
                floor: self.fleet.next_id(),
                count,
                ids: BTreeSet::new(),
                sent: Sent { at: self.now, attempts: 1 },
            });
            self.u.state = State::Surging;
            self.actions.push(Act::Create { count, batch: number });
            self.record(
                None,
                format!("batch {number}: creating {count} surge instances to replace {}", ids(batch.iter())),
            );
        } else {
            self.u.state = State::Upgrading;
            let fresh = batch.into_iter().map(|id| (id, format!("batch {number}: upgrading in place"))).collect();
            self.ask(Ask::Upgrade(number), fresh, Vec::new());
        }
        self.acted = true;
        Flow::Wait(None)
    }

    /// A batch upgraded in place: wait until every member is off its action, on the target and judged.
    fn upgrading(&mut self) -> Flow {
        let number = self.u.batch_number;
        let base = self.batch_base();
        let mut waiting = Waiting::default();
        let mut resend = Vec::new();
        let mut verdicts: Vec<(u32, Option<&'static str>)> = Vec::new();
        for id in self.u.batch.clone() {
            let Some(o) = self.fleet.get(id) else {
                // Scaled in or deleted mid-upgrade: never waited for.
                self.u.batch.remove(&id);
                self.u.sent.remove(&id);
                self.progressed();
                self.record(Some(id), format!("batch {number}: gone from the scale set"));
                continue;
            };
            if o.busy.is_some() {
                waiting.on(None);
                continue;
            }
            if !o.on_target && o.protected {
                // Protected after it was asked, and the action did not take: it is not touched again.
                self.u.batch.remove(&id);
                self.u.sent.remove(&id);
                self.u.skipped.insert(id);
                self.progressed();
                self.record(Some(id), format!("batch {number}: skipped: protected from scale-set actions"));
                continue;
            }
            if !o.on_target {
                match self.resend_due(self.u.sent.get(&id).copied()) {
                    Resend::Now => {
                        resend.push(id);
                        waiting.on(None);
                    }
                    Resend::At(t) => waiting.on(Some(t)),
                    Resend::GiveUp => {
                        if self.u.failed.insert(id) {
                            self.progressed();
                            self.record(
                                Some(id),
                                format!(
                                    "batch {number}: upgrade failed: not on the target after {MAX_ATTEMPTS} attempts"
                                ),
                            );
                        }
                    }
                }
                continue;
            }
            if self.u.upgraded.insert(id) {
                self.progressed();
            }
            match self.judge(o, base) {
                Verdict::Healthy => verdicts.push((id, None)),
                Verdict::NotHealthy(why) => verdicts.push((id, Some(why))),
                Verdict::Pending(at) => waiting.on(at),
            }
        }
        self.ask(Ask::Upgrade(number), Vec::new(), resend);
        if waiting.any {
            return Flow::Wait(waiting.at);
        }
        self.end_batch(number, verdicts)
    }

    /// maxSurge, first half: claim the new instances, wait until each is judged; all Healthy → delete
    /// the old ones, any not → Faulted (the surge instances are deleted, the old ones never touched).
    fn surging(&mut self) -> Flow {
        let number = self.u.batch_number;
        let base = self.batch_base();
        let Some(mut surge) = self.u.surge.take() else {
            // Never written that way; asking for a new Create could double the surge, so stop safely.
            self.fault(format!("batch {number}: the surge of the batch was not recorded"));
            return Flow::Next;
        };
        let wanted = usize_of(surge.count);
        if surge.ids.len() < wanted {
            let fresh: Vec<u32> = self
                .fleet
                .all()
                .filter(|o| o.id >= surge.floor && o.on_target && !surge.ids.contains(&o.id))
                .map(|o| o.id)
                .take(wanted - surge.ids.len())
                .collect();
            let old = ids(self.u.batch.iter());
            for id in fresh {
                surge.ids.insert(id);
                self.progressed();
                self.record(Some(id), format!("batch {number}: surge instance, to replace {old}"));
            }
        }
        let mut waiting = Waiting::default();
        let mut bad: Vec<(u32, &'static str)> = Vec::new();
        for &id in &surge.ids {
            let Some(o) = self.fleet.get(id) else {
                bad.push((id, "gone"));
                continue;
            };
            if o.busy.is_some() {
                waiting.on(None);
                continue;
            }
            match self.judge(o, base) {
                Verdict::Healthy => {}
                Verdict::NotHealthy(why) => bad.push((id, why)),
                Verdict::Pending(at) => waiting.on(at),
            }
        }
        let mut missing = None;
        if surge.ids.len() < wanted {
            let creating = surge.ids.iter().any(|id| self.fleet.get(*id).is_some_and(|o| o.busy.is_some()));
            match self.resend_due(Some(surge.sent)) {
                _ if creating => waiting.on(None),
                Resend::At(t) => waiting.on(Some(t)),
                Resend::Now => {
                    surge.sent = Sent { at: self.now, attempts: surge.sent.attempts + 1 };
                    self.actions.push(Act::Create { count: surge.count, batch: number });
                    self.record(None, format!("batch {number}: surge asked again (attempt {})", surge.sent.attempts));
                    self.acted = true;
                    waiting.on(None);
                }
                Resend::GiveUp => missing = Some(wanted - surge.ids.len()),
            }
        }
        self.u.surge = Some(surge);
        if waiting.any {
            return Flow::Wait(waiting.at);
        }
        if bad.is_empty() && missing.is_none() {
            let made: Vec<u32> = self.u.surge.iter().flat_map(|s| s.ids.iter().copied()).collect();
            for id in made {
                self.u.created.insert(id);
                self.record(Some(id), format!("batch {number}: surge instance Healthy"));
            }
            self.u.state = State::Replacing;
            self.progressed();
            return Flow::Next;
        }
        let mut why: Vec<String> = bad.iter().map(|(id, why)| format!("{id} {why}")).collect();
        for &(id, _) in &bad {
            if self.u.failed.insert(id) {
                self.record(Some(id), format!("batch {number}: surge instance not Healthy"));
            }
        }
        if let Some(n) = missing {
            why.push(format!("{n} never created"));
        }
        self.fault(format!("batch {number}: surge instances not Healthy: {}", why.join(", ")));
        Flow::Next
    }

    /// maxSurge, second half: delete the batch's old instances, at most B at a time; then the batch ends.
    fn replacing(&mut self) -> Flow {
        let number = self.u.batch_number;
        let by = ids(self.u.surge.iter().flat_map(|s| s.ids.iter()));
        let mut waiting = Waiting::default();
        let mut fresh = Vec::new();
        let mut resend = Vec::new();
        for id in self.u.batch.clone() {
            let asked = self.u.sent.get(&id).copied();
            let Some(o) = self.fleet.get(id) else {
                // Deleted, by us or by a scale-in: either way its replacement stands in for it.
                self.u.batch.remove(&id);
                self.u.sent.remove(&id);
                self.u.replaced.insert(id);
                self.progressed();
                let how = if asked.is_some() { "deleted" } else { "gone from the scale set" };
                self.record(Some(id), format!("batch {number}: {how}, replaced by {by}"));
                continue;
            };
            if o.busy.is_some() {
                waiting.on(None);
                continue;
            }
            if o.protected {
                self.u.batch.remove(&id);
                self.u.skipped.insert(id);
                self.progressed();
                self.record(Some(id), format!("batch {number}: kept: protected from scale-set actions"));
                continue;
            }
            match asked.map(|s| self.resend_due(Some(s))) {
                None => fresh.push(id),
                Some(Resend::Now) => resend.push(id),
                Some(Resend::At(t)) => waiting.on(Some(t)),
                Some(Resend::GiveUp) => {
                    self.u.batch.remove(&id);
                    self.u.sent.remove(&id);
                    self.progressed();
                    self.record(Some(id), format!("batch {number}: not deleted after {MAX_ATTEMPTS} attempts; kept"));
                }
            }
        }
        fresh.truncate(self.room());
        let fresh = fresh.into_iter().map(|id| (id, format!("batch {number}: deleting: replaced by {by}"))).collect();
        self.ask(Ask::Delete, fresh, resend);
        if !self.u.batch.is_empty() {
            return Flow::Wait(waiting.at);
        }
        self.end_batch(number, Vec::new())
    }

    /// Every member judged: the after-batch check (CONTRACT §6), then the pause, or Faulted.
    fn end_batch(&mut self, number: u32, verdicts: Vec<(u32, Option<&'static str>)>) -> Flow {
        let check = self.after_batch(number);
        if let Check::Undecided(at) = check {
            return Flow::Wait(at);
        }
        for (id, why) in verdicts {
            match why {
                None => self.record(Some(id), format!("batch {number}: upgraded, Healthy")),
                Some(why) => {
                    self.u.failed.insert(id);
                    self.record(Some(id), format!("batch {number}: upgraded, then {why}"));
                }
            }
        }
        match check {
            Check::Pass | Check::Undecided(_) => {
                self.u.batch.clear();
                self.u.sent.clear();
                self.u.surge = None;
                self.u.batch_ended_at = Some(self.now);
                self.u.state = State::Ready;
                self.progressed();
            }
            Check::Fail(reason) => self.fault(reason),
        }
        Flow::Next
    }

    /// Upgraded instances (this batch and earlier ones) not Healthy now ≤ ⌊N × maxUnhealthyUpgraded%⌋;
    /// health not settled counts as in `before_batch`.
    fn after_batch(&self, number: u32) -> Check {
        let allowed = upgraded_allowance(self.u.total, &self.policy);
        let touched = self.u.upgraded.iter().chain(self.u.created.iter()).chain(self.u.failed.iter());
        let touched: BTreeSet<u32> = touched.copied().collect();
        let mut bad = Vec::new();
        let mut undecided = Waiting::default();
        let mut unsettled = 0usize;
        for o in touched.iter().filter_map(|id| self.fleet.get(*id)) {
            match self.settled(o) {
                Settled::Healthy => {}
                Settled::NotHealthy => bad.push(o.id),
                Settled::Not(until) => {
                    unsettled += 1;
                    undecided.on(Some(until));
                }
            }
        }
        if bad.len() + unsettled <= usize_of(allowed) {
            Check::Pass
        } else if undecided.any {
            Check::Undecided(undecided.at)
        } else {
            Check::Fail(format!(
                "after batch {number}, {} not Healthy (allowed {allowed}): {}",
                match bad.len() {
                    1 => "1 upgraded instance is".to_string(),
                    n => format!("{n} upgraded instances are"),
                },
                ids(bad.iter())
            ))
        }
    }

    /// Is this instance's health settled? Initializing (or Unknown) settles as not Healthy at its
    /// grace period's end plus a margin, whatever the tracker said: no wait without a deadline.
    fn judge(&self, o: &Observed, base: Time) -> Verdict {
        match (seen(o), o.health) {
            (Seen::Unseen, _) => Verdict::Pending(Some(self.now + RECHECK)),
            (Seen::Healthy, _) => Verdict::Healthy,
            (Seen::NotHealthy, HealthState::Unhealthy) => Verdict::NotHealthy("Unhealthy"),
            (Seen::NotHealthy, health) => {
                let deadline = health_deadline(o.started_at.unwrap_or(base).max(base), &self.policy);
                if self.now < deadline {
                    Verdict::Pending(Some(deadline))
                } else if health == HealthState::Unknown {
                    Verdict::NotHealthy("health Unknown past its grace period")
                } else {
                    Verdict::NotHealthy("still Initializing past its grace period")
                }
            }
        }
    }

    // ---- Faulted ----------------------------------------------------------------------------------

    /// A check failed: Faulted now and for good. Decides what the rollback restores.
    fn fault(&mut self, reason: String) {
        let was = self.u.state;
        self.record(None, format!("Faulted: {reason}"));
        self.u.error = Some(reason);
        self.u.sent.clear();
        // Surge instances of a failed batch are extra capacity, not replacements: they go whatever the
        // rollback setting, and the old instances were never touched.
        if was == State::Surging {
            let present: Vec<u32> = self
                .u
                .surge
                .iter()
                .flat_map(|s| s.ids.iter().copied())
                .filter(|id| self.fleet.get(*id).is_some())
                .collect();
            self.u.to_delete.extend(present);
        }
        // Only instances this upgrade put on the target (or is putting there) and that are not Healthy:
        // a Healthy old-version instance is never stopped.
        let batch: Vec<u32> = if was == State::Upgrading { self.u.batch.iter().copied().collect() } else { Vec::new() };
        let touched: BTreeSet<u32> =
            self.u.upgraded.iter().chain(self.u.failed.iter()).chain(batch.iter()).copied().collect();
        let failed: Vec<u32> = touched
            .into_iter()
            .filter(|id| {
                self.fleet.get(*id).is_some_and(|o| o.busy.is_some() || (o.on_target && seen(o) != Seen::Healthy))
            })
            .filter(|id| !self.u.to_delete.contains(id))
            .collect();
        if self.u.rollback {
            self.u.to_roll_back.extend(failed);
        } else if !failed.is_empty() {
            let setting = match self.u.kind {
                Kind::Os => "disableAutomaticRollback is set",
                Kind::Model => "rollbackFailedInstancesOnPolicyBreach is off",
            };
            self.record(None, format!("not rolling back {}: {setting}", ids(failed.iter())));
        }
        self.u.batch.clear();
        let rolling_back = !self.u.to_roll_back.is_empty() || !self.u.to_delete.is_empty();
        self.u.state = State::Faulted { rolling_back };
        if !rolling_back {
            self.u.ended_at = Some(self.now);
        }
        self.progressed();
    }

    /// Restore failed instances to their previous image and delete failed surge instances, at most B
    /// out of service at a time; then Faulted for good.
    fn rolling_back(&mut self) -> Flow {
        let mut waiting = Waiting::default();
        let mut fresh = Vec::new();
        let mut resend = Vec::new();
        for id in self.u.to_roll_back.clone() {
            let asked = self.u.sent.get(&id).copied();
            let Some(o) = self.fleet.get(id) else {
                self.drop_target(id, "gone from the scale set during the rollback");
                continue;
            };
            if o.busy.is_some() {
                waiting.on(None);
                continue;
            }
            match asked {
                _ if o.protected && o.on_target => {
                    self.drop_target(id, "not rolled back: protected from scale-set actions");
                    self.u.rollback_failed.insert(id);
                }
                Some(_) if !o.on_target => {
                    self.drop_target(id, "rolled back");
                    self.u.rolled_back.insert(id);
                }
                Some(s) => match self.resend_due(Some(s)) {
                    Resend::Now => resend.push(id),
                    Resend::At(t) => waiting.on(Some(t)),
                    Resend::GiveUp => {
                        self.drop_target(
                            id,
                            &format!("rollback failed: still on the new version after {MAX_ATTEMPTS} attempts"),
                        );
                        self.u.rollback_failed.insert(id);
                    }
                },
                // Checked again when its turn comes: it may have recovered, or never reached the target.
                None if !o.on_target => self.drop_target(id, "not rolled back: not on the new version"),
                None => match seen(o) {
                    Seen::Healthy => self.drop_target(id, "not rolled back: Healthy"),
                    Seen::Unseen => waiting.on(Some(self.now + RECHECK)),
                    Seen::NotHealthy => fresh.push(id),
                },
            }
        }
        let mut fresh_deletes = Vec::new();
        let mut resend_deletes = Vec::new();
        for id in self.u.to_delete.clone() {
            let asked = self.u.sent.get(&id).copied();
            let Some(o) = self.fleet.get(id) else {
                self.u.to_delete.remove(&id);
                self.u.sent.remove(&id);
                self.progressed();
                self.record(Some(id), "deleted: surge instance of the failed batch".into());
                continue;
            };
            if o.busy.is_some() {
                waiting.on(None);
                continue;
            }
            if o.protected {
                self.u.to_delete.remove(&id);
                self.u.sent.remove(&id);
                self.progressed();
                self.record(Some(id), "kept: protected from scale-set actions".into());
                continue;
            }
            match asked.map(|s| self.resend_due(Some(s))) {
                None => fresh_deletes.push(id),
                Some(Resend::Now) => resend_deletes.push(id),
                Some(Resend::At(t)) => waiting.on(Some(t)),
                Some(Resend::GiveUp) => {
                    self.u.to_delete.remove(&id);
                    self.u.sent.remove(&id);
                    self.progressed();
                    self.record(Some(id), format!("not deleted after {MAX_ATTEMPTS} attempts"));
                }
            }
        }
        // Room is what is left of B once the instances already out (or asked out) are counted.
        let mut room = self.room();
        fresh.truncate(room);
        room -= fresh.len();
        fresh_deletes.truncate(room);
        let fresh: Vec<(u32, String)> = fresh
            .into_iter()
            .map(|id| {
                (
                    id,
                    format!(
                        "rolling back: {} after the fault",
                        self.fleet.get(id).map_or("gone", |o| o.health.as_str())
                    ),
                )
            })
            .collect();
        self.ask(Ask::Rollback, fresh, resend);
        let fresh_deletes =
            fresh_deletes.into_iter().map(|id| (id, "deleting: surge instance of the failed batch".into()));
        self.ask(Ask::Delete, fresh_deletes.collect(), resend_deletes);
        if self.u.to_roll_back.is_empty() && self.u.to_delete.is_empty() {
            self.end_rollback("Rollback finished");
            return Flow::Next;
        }
        Flow::Wait(waiting.at)
    }

    fn drop_target(&mut self, id: u32, why: &str) {
        self.u.to_roll_back.remove(&id);
        self.u.sent.remove(&id);
        self.progressed();
        self.record(Some(id), why.to_string());
    }

    fn end_rollback(&mut self, why: &str) {
        let info = self.u.rollback_info();
        self.u.state = State::Faulted { rolling_back: false };
        self.u.ended_at = Some(self.now);
        self.progressed();
        self.record(
            None,
            format!(
                "{why}: {} rolled back, {} failed to roll back",
                info.successfully_rolled_back, info.failed_rolled_back
            ),
        );
    }

    // ---- Stalls, endings, bookkeeping ---------------------------------------------------------------

    /// Nothing moved for `stall_limit`: rolling forward faults; a rollback gives up what is left.
    fn stalled(&mut self) {
        let waited = self.now.since(self.u.progress_at).as_secs();
        let number = self.u.batch_number;
        match self.u.state {
            State::Ready => {
                let busy: Vec<u32> = self
                    .fleet
                    .candidates(&self.u, &self.policy)
                    .iter()
                    .filter(|o| o.busy.is_some())
                    .map(|o| o.id)
                    .collect();
                self.fault(format!(
                    "no progress for {waited}s: batch {} waits on busy {}",
                    number + 1,
                    ids(busy.iter())
                ));
            }
            State::Upgrading | State::Replacing => {
                let members = ids(self.u.batch.iter());
                self.fault(format!("no progress for {waited}s: batch {number} waits on {members}"));
            }
            State::Surging => {
                self.fault(format!("no progress for {waited}s: batch {number} waits on its surge instances"));
            }
            State::Faulted { rolling_back: true } => {
                let left: Vec<u32> = self.u.to_roll_back.iter().copied().collect();
                for id in left {
                    self.drop_target(id, &format!("rollback failed: not done after {waited}s"));
                    self.u.rollback_failed.insert(id);
                }
                for id in std::mem::take(&mut self.u.to_delete) {
                    self.record(Some(id), format!("not deleted: not done after {waited}s"));
                }
                self.u.sent.clear();
                self.end_rollback(&format!("Rollback stopped after {waited}s without progress"));
            }
            State::Faulted { rolling_back: false } | State::Cancelled | State::Completed => {}
        }
    }

    fn finish(&mut self, state: State, reason: String) -> Flow {
        self.u.state = state;
        self.u.ended_at = Some(self.now);
        self.u.batch.clear();
        self.u.sent.clear();
        self.progressed();
        self.record(None, reason);
        Flow::Next
    }

    /// B for this upgrade: N is fixed at the start, the percentage is the policy's now.
    fn b(&self) -> u32 {
        batch_size(self.u.total, &self.policy)
    }

    /// How many more instances may go out of service now: B less those already out because of an
    /// upgrade-like action, or asked one that does not show yet.
    fn room(&self) -> usize {
        let asked = self.u.sent.keys().filter(|id| self.fleet.get(**id).is_some_and(|o| !out_of_service(o))).count();
        usize_of(self.b()).saturating_sub(self.fleet.busy_by_upgrade() + asked)
    }

    /// Initializing is judged from the later of the instance's start and the batch's start.
    fn batch_base(&self) -> Time {
        self.u.batch_started_at.unwrap_or(self.u.started_at)
    }

    fn resend_due(&self, sent: Option<Sent>) -> Resend {
        match sent {
            None => Resend::Now,
            Some(s) if self.now < s.at + RESEND_AFTER => Resend::At(s.at + RESEND_AFTER),
            Some(s) if s.attempts >= MAX_ATTEMPTS => Resend::GiveUp,
            Some(_) => Resend::Now,
        }
    }

    /// Asks one action of `fresh` instances (each with the reason to record) and again of `resend`.
    fn ask(&mut self, kind: Ask, fresh: Vec<(u32, String)>, resend: Vec<u32>) {
        let ids: BTreeSet<u32> = fresh.iter().map(|(id, _)| *id).chain(resend.iter().copied()).collect();
        if ids.is_empty() {
            return;
        }
        let ids: Vec<u32> = ids.into_iter().collect();
        self.actions.push(match kind {
            Ask::Upgrade(batch) => Act::Upgrade { ids, batch },
            Ask::Rollback => Act::Rollback { ids },
            Ask::Delete => Act::Delete { ids },
        });
        self.acted = true;
        for (id, why) in fresh {
            self.mark_sent(id);
            self.record(Some(id), why);
        }
        for id in resend {
            let attempt = self.mark_sent(id);
            let what = match kind {
                Ask::Upgrade(batch) => format!("batch {batch}: upgrade"),
                Ask::Rollback => "rollback".into(),
                Ask::Delete => "delete".into(),
            };
            self.record(Some(id), format!("{what} asked again (attempt {attempt}): its effect did not show"));
        }
    }

    /// Notes an action asked of `id` now; returns which attempt it is.
    fn mark_sent(&mut self, id: u32) -> u32 {
        let s = self.u.sent.entry(id).or_insert(Sent { at: self.now, attempts: 0 });
        s.at = self.now;
        s.attempts += 1;
        s.attempts
    }

    fn progressed(&mut self) {
        self.u.progress_at = self.now;
    }

    fn record(&mut self, id: Option<u32>, reason: String) {
        self.actions.push(Act::Record { id, reason });
    }
}
