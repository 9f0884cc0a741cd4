//! The numbers of an upgrade: batch size B, unhealthy allowance A, the after-batch allowance, and the
//! deadlines that make every wait end (CONTRACT §6). Small named functions, so each rule reads once.
//!
//! Does not decide anything: `step` compares observations with these.

use std::time::Duration;

use crate::policy::RollingPolicy;
use crate::time::Time;

/// After a restart, how soon to look again for health not yet observed.
pub const RECHECK: Duration = Duration::from_secs(1);
/// An action whose effect is not visible (lost in a crash, or ended without effect) is asked again after
/// this long; never at the same `now`, so that planning twice on one snapshot asks nothing twice.
pub const RESEND_AFTER: Duration = Duration::from_secs(5);
/// How many times one action is asked of one instance before it counts as failed.
pub const MAX_ATTEMPTS: u32 = 3;
/// Beyond the health grace period, how long an instance may stay Initializing before the planner
/// counts it not Healthy by itself (the tracker should have turned it Unhealthy at grace end; this covers
/// a lost transition).
pub const HEALTH_MARGIN: Duration = Duration::from_secs(10);
/// Beyond grace and pause, how long the upgrade may wait without anything moving before it faults.
/// Generous: it covers drains, stops, disk copies, CustomScripts.
pub const ACTION_LIMIT: Duration = Duration::from_secs(30 * 60);

/// `p` percent of `total`, rounded down.
fn percent(total: u32, p: u32) -> u32 {
    u32::try_from(u64::from(total) * u64::from(p) / 100).unwrap_or(u32::MAX)
}

/// B = max(1, ⌊N × maxBatchInstancePercent / 100⌋).
pub fn batch_size(total: u32, p: &RollingPolicy) -> u32 {
    percent(total, p.max_batch_instance_percent).max(1)
}

/// A = max(B, ⌊N × maxUnhealthyInstancePercent / 100⌋): before a batch, instances not Healthy or in
/// the batch (a union) must be at most A.
pub fn unhealthy_allowance(total: u32, p: &RollingPolicy) -> u32 {
    percent(total, p.max_unhealthy_instance_percent).max(batch_size(total, p))
}

/// After a batch, upgraded instances not Healthy must be at most ⌊N × maxUnhealthyUpgradedInstancePercent
/// / 100⌋ (0 is allowed: then a single failure faults).
pub fn upgraded_allowance(total: u32, p: &RollingPolicy) -> u32 {
    percent(total, p.max_unhealthy_upgraded_instance_percent)
}

/// When an instance (re)started at `started` is counted not Healthy if it is still Initializing.
pub fn health_deadline(started: Time, p: &RollingPolicy) -> Time {
    started + p.health_grace_period + HEALTH_MARGIN
}

/// How long the upgrade may go without progress before it faults: no wait is without a deadline.
pub fn stall_limit(p: &RollingPolicy) -> Duration {
    p.health_grace_period + p.pause_time_between_batches + ACTION_LIMIT
}

/// Instance ids for messages: "0, 1, 2", cut after a dozen so that a fleet of 1000 stays one line.
pub fn ids<'a>(ids: impl Iterator<Item = &'a u32>) -> String {
    const SHOWN: usize = 12;
    let mut out = String::new();
    let mut n = 0usize;
    for id in ids {
        if n < SHOWN {
            if n > 0 {
                out.push_str(", ");
            }
            out.push_str(&id.to_string());
        }
        n += 1;
    }
    if n > SHOWN {
        out.push_str(&format!(" and {} more", n - SHOWN));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(batch: u32, unhealthy: u32, upgraded: u32) -> RollingPolicy {
        RollingPolicy {
            max_batch_instance_percent: batch,
            max_unhealthy_instance_percent: unhealthy,
            max_unhealthy_upgraded_instance_percent: upgraded,
            ..RollingPolicy::default()
        }
    }

    #[test]
    fn the_contracts_arithmetic() {
        let d = RollingPolicy::default();
        // The worked example: N = 10, defaults.
        assert_eq!((batch_size(10, &d), unhealthy_allowance(10, &d), upgraded_allowance(10, &d)), (2, 2, 2));
        // Small fleets: a batch is at least one instance, and A is at least B.
        assert_eq!((batch_size(1, &d), unhealthy_allowance(1, &d), upgraded_allowance(1, &d)), (1, 1, 0));
        assert_eq!((batch_size(3, &d), unhealthy_allowance(3, &d)), (1, 1));
        assert_eq!((batch_size(0, &d), unhealthy_allowance(0, &d)), (1, 1));
        assert_eq!((batch_size(1000, &policy(5, 50, 0)), unhealthy_allowance(1000, &policy(5, 50, 0))), (50, 500));
        assert_eq!(upgraded_allowance(1000, &policy(5, 50, 0)), 0);
        assert_eq!(batch_size(u32::MAX, &policy(100, 100, 100)), u32::MAX, "no overflow");
    }

    #[test]
    fn id_lists_stay_short() {
        assert_eq!(ids([0, 1].iter()), "0, 1");
        let many: Vec<u32> = (0..20).collect();
        assert_eq!(ids(many.iter()), "0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 8 more");
    }
}
