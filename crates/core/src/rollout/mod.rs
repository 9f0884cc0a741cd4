//! The rolling-upgrade planner: which instances to upgrade, roll back, create or delete next, and why
//! (CONTRACT §6, SPEC "Upgrades"). Also the planner of automatic repairs (`repair`).
//!
//! Owns the decisions of one upgrade of one scale set, as a pure step: `plan(&Snapshot) -> Plan`. The
//! snapshot is the persisted `Upgrade`, the policy, every instance as observed now, and `now`; the plan
//! is the next `Upgrade` to persist, the actions to carry out and when to be called again. It does no
//! I/O, reads no clock and keeps no state of its own: after a `kill -9` the shell reloads the last
//! persisted `Upgrade`, calls `plan` with fresh observations and the upgrade carries on.
//!
//! It does not carry out anything (the shell drains, stops, makes disks, creates and deletes), resolve
//! images (`on_target` says whether an instance already runs the upgrade's target), track health (the
//! one tracker of `health` does; an instance's health arrives here as observed), or decide whether an
//! upgrade may start (one at a time, a health source exists: the shell answers 409 or refuses).
//!
//! # What the shell promises
//! 1. It persists `Plan::next` before it carries out `Plan::actions`, and calls `plan` again on every
//!    event (an action finished, a health change, a cancel, its own restart) and at `Plan::wake_at`.
//! 2. An instance action it was given is visible in the next snapshot: the instance is `busy` with it
//!    (`Upgrading`, `RollingBack`, `Deleting`) until it ends, so the write-ahead of the action must
//!    happen before the next call. The planner asks again for an action whose effect it does not see
//!    (a crash between persisting `next` and the write-ahead loses it), at most `MAX_ATTEMPTS` times and
//!    `RESEND_AFTER` apart; the shell treats an action it already has in flight, or has done, as a no-op.
//! 3. `Act::Create` is keyed by (upgrade, batch): it makes sure `count` instances were created for that
//!    batch, with the target, ids above every existing one; they show up at once (busy while created).
//! 4. `health_seen` is false for an instance whose health it has not observed since it (re)started:
//!    the planner never judges such health, it waits (CONTRACT §6).
//!
//! # Where the rules live
//! `limits` (B, A, the after-batch allowance, deadlines), `fleet` (the snapshot bucketed once per call),
//! `step` (the state machine: one `match` on `State`, one method per state), `repair`. `docs/rollout.md`
//! charts the states. Tests: `tests/cases.rs` (table tests in the scenario language of
//! `tests/scenario.rs`), `tests/props.rs` (the safety rules over random fleets and events).

mod fleet;
pub mod limits;
pub mod repair;
mod step;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::health::HealthState;
use crate::policy::RollingPolicy;
use crate::time::Time;

pub use step::plan;

/// What the planner sees: the persisted upgrade, the policy now, every instance now, and `now`.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot<'a> {
    pub now: Time,
    /// Already validated (`policy::rolling`). Read on every call: a policy edited mid-upgrade applies
    /// from the next decision on (CONTRACT §1: upgrade policy changes apply at once).
    pub policy: RollingPolicy,
    /// Every instance of the scale set now, in any order. One that is gone is simply absent.
    pub instances: &'a [Observed],
    pub upgrade: &'a Upgrade,
}

/// One instance as the shell observes it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub id: u32,
    /// Its OS disk already holds the upgrade's target (image version or model).
    pub on_target: bool,
    /// From the one health tracker (`health::Tracker`).
    pub health: HealthState,
    /// Observed since the control plane (re)started; `health` means nothing when false.
    pub health_seen: bool,
    /// An action in flight on it.
    pub busy: Option<Busy>,
    /// `protectFromScaleSetActions`: never touched by an upgrade, recorded as skipped.
    pub protected: bool,
    /// When galleon last (re)started it: its health grace period counts from here.
    pub started_at: Option<Time>,
}

/// The action in flight on an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Busy {
    /// An in-place upgrade (`Act::Upgrade`, or `update-instances`).
    Upgrading,
    /// A rollback (`Act::Rollback`).
    RollingBack,
    /// A delete (`Act::Delete`, or `delete-instances`).
    Deleting,
    /// An automatic repair.
    Repairing,
    /// Anything else: a user's restart, stop, reimage; a create.
    Other,
}

/// What started the upgrade; it decides the words of the records and which setting turns rollback off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// An automatic OS upgrade or `rolling-upgrade start`: rolls back unless `disableAutomaticRollback`.
    Os,
    /// A model change in Rolling mode: rolls back only with `rollbackFailedInstancesOnPolicyBreach`.
    Model,
}

/// The state machine of one upgrade. One enum, one `match` in `step`: every combination is visible.
///
/// `Ready`, `Upgrading`, `Surging` and `Replacing` are ARM's `RollingForward`; the terminal states are
/// `Completed`, `Cancelled` and `Faulted { rolling_back: false }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum State {
    /// No batch in flight: the next one starts when the pause after the last one is over.
    Ready,
    /// A batch is upgraded in place; waits until every member is judged Healthy or not.
    Upgrading,
    /// maxSurge: the batch's replacements are being created; waits until every one is judged.
    Surging,
    /// maxSurge: the replacements are Healthy; the batch's old instances are being deleted.
    Replacing,
    /// A check failed. `rolling_back` while failed instances are restored (or failed surge instances
    /// deleted); then `false`, for good.
    Faulted { rolling_back: bool },
    /// Cancelled by the user: no batch started after the cancel.
    Cancelled,
    /// Every instance that needed the target has been through a batch, and the last check passed.
    Completed,
}

impl State {
    /// ARM's `runningStatus.code`.
    pub fn running_status(self) -> &'static str {
        match self {
            State::Ready | State::Upgrading | State::Surging | State::Replacing => "RollingForward",
            State::Faulted { .. } => "Faulted",
            State::Cancelled => "Cancelled",
            State::Completed => "Completed",
        }
    }

    /// Nothing will ever happen again: `plan` returns no action and no wake-up.
    pub fn is_terminal(self) -> bool {
        match self {
            State::Completed | State::Cancelled | State::Faulted { rolling_back: false } => true,
            State::Ready | State::Upgrading | State::Surging | State::Replacing => false,
            State::Faulted { rolling_back: true } => false,
        }
    }

    /// A new-version instance may still be started (no fault, no cancel taken effect).
    pub fn is_rolling_forward(self) -> bool {
        matches!(self, State::Ready | State::Upgrading | State::Surging | State::Replacing)
    }
}

/// An action asked of instances, and when and how often, so that a lost one is asked again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sent {
    pub at: Time,
    pub attempts: u32,
}

/// The surge of the batch in flight (maxSurge).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Surge {
    /// Instances created for this batch have ids from here on (ids grow and are never reused).
    pub floor: u32,
    /// How many were asked for (the batch's size).
    pub count: u32,
    /// The ones claimed so far, in id order. A scale-out at the same moment also makes new instances
    /// with the target, so one may be taken for a surge instance: both are new-version instances, and
    /// the counts stay right.
    pub ids: BTreeSet<u32>,
    pub sent: Sent,
}

/// The persisted state of one upgrade of one scale set (JSON in the store).
///
/// The sets are the per-instance history ARM's counts come from; they never shrink, except `batch`,
/// `to_roll_back` and `to_delete`, which are work lists.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Upgrade {
    pub kind: Kind,
    /// Restore failed instances when the upgrade faults (Os: `!disableAutomaticRollback`; Model:
    /// `rollbackFailedInstancesOnPolicyBreach`).
    pub rollback: bool,
    pub state: State,
    pub started_at: Time,
    /// When it reached a terminal state.
    pub ended_at: Option<Time>,
    /// N: instances in the scale set when the upgrade started. B and A come from it.
    pub total: u32,
    /// The batch in flight, or the last one; 0 before the first.
    pub batch_number: u32,
    /// Members of the batch in flight: upgraded in place, or (maxSurge) replaced.
    pub batch: BTreeSet<u32>,
    pub batch_started_at: Option<Time>,
    pub batch_ended_at: Option<Time>,
    /// Instance actions asked of the batch in flight or of the rollback, by instance.
    pub sent: BTreeMap<u32, Sent>,
    pub surge: Option<Surge>,
    /// Upgraded in place by this upgrade.
    pub upgraded: BTreeSet<u32>,
    /// Surge instances that were Healthy and replaced old ones.
    pub created: BTreeSet<u32>,
    /// Old instances deleted once their surge replacement was Healthy.
    pub replaced: BTreeSet<u32>,
    /// Not Healthy when their batch was judged, or their upgrade never took.
    pub failed: BTreeSet<u32>,
    /// Protected from scale-set actions: never touched.
    pub skipped: BTreeSet<u32>,
    /// Faulted: failed instances still to restore to their previous image.
    pub to_roll_back: BTreeSet<u32>,
    /// Faulted: surge instances of the failed batch still to delete.
    pub to_delete: BTreeSet<u32>,
    pub rolled_back: BTreeSet<u32>,
    pub rollback_failed: BTreeSet<u32>,
    pub cancel_requested: bool,
    /// The last time something moved; an upgrade that waits longer than `limits::stall_limit` faults.
    pub progress_at: Time,
    /// Why it faulted.
    pub error: Option<String>,
}

/// The next state to persist, what to do, and when to call `plan` again if nothing else happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub next: Upgrade,
    pub actions: Vec<Act>,
    /// None only in a terminal state: every wait has a deadline.
    pub wake_at: Option<Time>,
}

/// One thing for the shell to do, or to write in the per-instance decision log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Act {
    /// In place: drain, stop, fresh OS disk of the target, start; data disks kept.
    Upgrade { ids: Vec<u32>, batch: u32 },
    /// In place, back to the image each ran before the upgrade; data disks kept.
    Rollback { ids: Vec<u32> },
    /// maxSurge: make sure `count` new instances with the target were created for `batch`.
    Create { count: u32, batch: u32 },
    /// maxSurge: old instances replaced by Healthy surge ones, or surge instances of a failed batch.
    Delete { ids: Vec<u32> },
    /// A decision for the log: of one instance (`id`) or of the whole upgrade.
    Record { id: Option<u32>, reason: String },
}

impl fmt::Display for Act {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Act::Upgrade { ids, batch } => write!(f, "upgrade {} (batch {batch})", limits::ids(ids.iter())),
            Act::Rollback { ids } => write!(f, "rollback {}", limits::ids(ids.iter())),
            Act::Create { count, batch } => write!(f, "create {count} (batch {batch})"),
            Act::Delete { ids } => write!(f, "delete {}", limits::ids(ids.iter())),
            Act::Record { id: Some(id), reason } => write!(f, "record {id}: {reason}"),
            Act::Record { id: None, reason } => write!(f, "record: {reason}"),
        }
    }
}

/// ARM's `progress` of `rolling-upgrade get-latest`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    pub successful: u32,
    pub failed: u32,
    pub in_progress: u32,
    pub pending: u32,
}

/// ARM's `rollbackInfo` of `osUpgradeHistory`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RollbackInfo {
    pub successfully_rolled_back: u32,
    pub failed_rolled_back: u32,
}

/// A new upgrade of the scale set whose instances are `instances` now. `plan` does everything else,
/// including recording protected instances as skipped and completing at once when nothing needs it.
pub fn start(kind: Kind, rollback: bool, instances: &[Observed], now: Time) -> Upgrade {
    Upgrade {
        kind,
        rollback,
        state: State::Ready,
        started_at: now,
        ended_at: None,
        total: u32::try_from(instances.len()).unwrap_or(u32::MAX),
        batch_number: 0,
        batch: BTreeSet::new(),
        batch_started_at: None,
        batch_ended_at: None,
        sent: BTreeMap::new(),
        surge: None,
        upgraded: BTreeSet::new(),
        created: BTreeSet::new(),
        replaced: BTreeSet::new(),
        failed: BTreeSet::new(),
        skipped: BTreeSet::new(),
        to_roll_back: BTreeSet::new(),
        to_delete: BTreeSet::new(),
        rolled_back: BTreeSet::new(),
        rollback_failed: BTreeSet::new(),
        cancel_requested: false,
        progress_at: now,
        error: None,
    }
}

/// `rolling-upgrade cancel`: marks the request; `plan` lets the batch in flight finish, starts no other,
/// and ends Cancelled. A no-op once the upgrade no longer rolls forward (Faulted stays Faulted).
pub fn cancel(u: &Upgrade) -> Upgrade {
    let mut next = u.clone();
    if u.state.is_rolling_forward() {
        next.cancel_requested = true;
    }
    next
}

/// ARM's counts. `successful`: upgraded (in place, or replaced by a Healthy surge instance) and not
/// failed; `in_progress`: the batch in flight; `pending`: instances that still need the target.
pub fn progress(u: &Upgrade, instances: &[Observed]) -> Progress {
    let in_flight = if u.state.is_rolling_forward() { &u.batch } else { &BTreeSet::new() };
    let successful =
        u.upgraded.iter().filter(|id| !u.failed.contains(id) && !in_flight.contains(id)).count() + u.replaced.len();
    let pending = instances.iter().filter(|o| fleet::needs_target(u, o) && !in_flight.contains(&o.id)).count();
    Progress {
        successful: count(successful),
        failed: count(u.failed.len()),
        in_progress: count(in_flight.len()),
        pending: count(pending),
    }
}

impl Upgrade {
    /// ARM's `rollbackInfo`.
    pub fn rollback_info(&self) -> RollbackInfo {
        RollbackInfo {
            successfully_rolled_back: count(self.rolled_back.len()),
            failed_rolled_back: count(self.rollback_failed.len()),
        }
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
