//! The snapshot's instances, indexed and bucketed once per call (Nomad's reconciler does the same
//! before it computes anything): by id, the candidates in upgrade order, health counts.
//!
//! Only reads: every decision and every change of the `Upgrade` is in `step`.

use crate::health::HealthState;
use crate::policy::RollingPolicy;

use super::{Busy, Observed, Upgrade};

/// The instances of the snapshot by id. Lookups are O(log N), so a call is O(N log N) at worst.
pub(super) struct Fleet<'a> {
    by_id: Vec<&'a Observed>,
}

/// Health as the planner may use it: judged only when seen since the control plane (re)started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Seen {
    Healthy,
    NotHealthy,
    Unseen,
}

impl<'a> Fleet<'a> {
    pub(super) fn new(instances: &'a [Observed]) -> Fleet<'a> {
        let mut by_id: Vec<&Observed> = instances.iter().collect();
        by_id.sort_by_key(|o| o.id);
        // A duplicate id would be the shell's bug; keeping the first makes the answer deterministic.
        by_id.dedup_by_key(|o| o.id);
        Fleet { by_id }
    }

    pub(super) fn get(&self, id: u32) -> Option<&'a Observed> {
        self.by_id.binary_search_by_key(&id, |o| o.id).ok().and_then(|i| self.by_id.get(i).copied())
    }

    pub(super) fn all(&self) -> impl Iterator<Item = &'a Observed> + '_ {
        self.by_id.iter().copied()
    }

    /// The first id above every instance: where the ids of instances created next begin.
    pub(super) fn next_id(&self) -> u32 {
        self.by_id.last().map_or(0, |o| o.id.saturating_add(1))
    }

    /// Instances out of service because of an upgrade-like action: at most B at once.
    pub(super) fn busy_by_upgrade(&self) -> usize {
        self.all().filter(|o| out_of_service(o)).count()
    }

    /// Instances that still need the target, in the order batches take them: ascending id, those not
    /// Healthy first with `prioritizeUnhealthyInstances` (unseen health counts as not Healthy there).
    pub(super) fn candidates(&self, u: &Upgrade, p: &RollingPolicy) -> Vec<&'a Observed> {
        let mut c: Vec<&Observed> = self.all().filter(|o| needs_target(u, o) && !u.batch.contains(&o.id)).collect();
        if p.prioritize_unhealthy_instances {
            // Stable: ids stay ascending within each group.
            c.sort_by_key(|o| seen(o) == Seen::Healthy);
        }
        c
    }
}

/// Needs the target and may get it: not on it, not protected, not already through a batch.
pub(super) fn needs_target(u: &Upgrade, o: &Observed) -> bool {
    !o.on_target
        && !o.protected
        && !u.upgraded.contains(&o.id)
        && !u.failed.contains(&o.id)
        && !u.skipped.contains(&o.id)
}

/// Busy with an action that takes it out of service on an upgrade's behalf.
pub(super) fn out_of_service(o: &Observed) -> bool {
    matches!(o.busy, Some(Busy::Upgrading | Busy::RollingBack | Busy::Deleting))
}

pub(super) fn seen(o: &Observed) -> Seen {
    match (o.health_seen, o.health) {
        (false, _) => Seen::Unseen,
        (true, HealthState::Healthy) => Seen::Healthy,
        (true, HealthState::Unhealthy | HealthState::Initializing | HealthState::Unknown) => Seen::NotHealthy,
    }
}
