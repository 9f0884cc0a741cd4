//! Automatic instance repairs (`automaticRepairsPolicy`): which instances to repair now, a few at a time.
//!
//! An instance continuously Unhealthy for the grace period is repaired; at most max(1, 20% of N) are in
//! repair at once; none while an upgrade runs (Azure suspends repairs then, and the upgrade owns the
//! instances). Protected and busy instances are left alone. Pure, like the rest of `rollout`: it does
//! not carry out the repair (Replace, Reimage or Restart is the shell's), nor track since when an
//! instance is Unhealthy (the health tracker's transitions give that; unknown means "not yet").

use std::time::Duration;

use crate::health::HealthState;
use crate::time::Time;

use super::Busy;

/// One instance as the repair planner needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RepairObserved {
    pub id: u32,
    pub health: HealthState,
    /// Since when it has been Unhealthy without interruption (None: not Unhealthy, or not known since a
    /// restart; then it is not repaired until the shell knows).
    pub unhealthy_since: Option<Time>,
    pub busy: Option<Busy>,
    /// `protectFromScaleSetActions`.
    pub protected: bool,
}

/// What to repair now, and when a not-yet-due instance becomes due.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairPlan {
    /// In repair order: the longest Unhealthy first.
    pub repair: Vec<u32>,
    pub wake_at: Option<Time>,
}

/// At most this many instances in repair at once: max(1, ⌊20% of N⌋).
pub fn repair_limit(total: usize) -> usize {
    (total / 5).max(1)
}

/// The repairs to start now. `upgrade_running`: an upgrade of the scale set is not terminal.
pub fn repairs(instances: &[RepairObserved], grace: Duration, now: Time, upgrade_running: bool) -> RepairPlan {
    if upgrade_running {
        // The upgrade's end is an event; nothing to wake for.
        return RepairPlan::default();
    }
    let in_repair = instances.iter().filter(|o| o.busy == Some(Busy::Repairing)).count();
    let room = repair_limit(instances.len()).saturating_sub(in_repair);
    let mut due = Vec::new();
    let mut wake_at: Option<Time> = None;
    for o in instances.iter().filter(|o| o.health == HealthState::Unhealthy && o.busy.is_none() && !o.protected) {
        let Some(since) = o.unhealthy_since else { continue };
        let at = since + grace;
        if at <= now {
            due.push((since, o.id));
        } else {
            wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
        }
    }
    due.sort_unstable();
    // Due ones left for lack of room start when a repair ends: that is an event, not a time.
    RepairPlan { repair: due.into_iter().take(room).map(|(_, id)| id).collect(), wake_at }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    /// One instance a line: `id health [since=S] [busy=repairing|other] [protected]`, then the plan at
    /// `now` with `grace` and whether an upgrade runs.
    fn check(fleet: &str, grace_s: u64, now_s: u64, upgrade_running: bool, expected: Expect) {
        let instances: Vec<RepairObserved> = fleet
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|line| {
                let mut words = line.split_whitespace();
                let id = words.next().unwrap().parse().unwrap();
                let health = match words.next().unwrap() {
                    "healthy" => HealthState::Healthy,
                    "unhealthy" => HealthState::Unhealthy,
                    "initializing" => HealthState::Initializing,
                    other => panic!("health {other}"),
                };
                let mut o = RepairObserved { id, health, unhealthy_since: None, busy: None, protected: false };
                for w in words {
                    match w.split_once('=') {
                        Some(("since", s)) => o.unhealthy_since = Some(Time(s.parse::<u64>().unwrap() * 1000)),
                        Some(("busy", "repairing")) => o.busy = Some(Busy::Repairing),
                        Some(("busy", "other")) => o.busy = Some(Busy::Other),
                        None if w == "protected" => o.protected = true,
                        _ => panic!("word {w}"),
                    }
                }
                o
            })
            .collect();
        let p = repairs(&instances, Duration::from_secs(grace_s), Time(now_s * 1000), upgrade_running);
        let wake = p.wake_at.map_or("none".to_string(), |t| format!("{}s", t.0 / 1000));
        expected.assert_eq(&format!("repair {:?} wake {wake}\n", p.repair));
    }

    #[test]
    fn unhealthy_for_the_grace_period_is_repaired_longest_first() {
        let fleet = "
            0 healthy
            1 unhealthy since=10
            2 unhealthy since=5
            3 unhealthy since=50
            4 initializing
            5 healthy
            6 healthy
            7 healthy
            8 healthy
            9 healthy
        ";
        // N = 10: two at a time. 3 is not due until 50 + 30 = 80.
        check(
            fleet,
            30,
            60,
            false,
            expect![[r#"
            repair [2, 1] wake 80s
        "#]],
        );
        check(
            fleet,
            30,
            30,
            false,
            expect![[r#"
            repair [] wake 35s
        "#]],
        );
    }

    #[test]
    fn a_few_at_a_time_never_busy_protected_or_during_an_upgrade() {
        let fleet = "
            0 unhealthy since=0 busy=repairing
            1 unhealthy since=0
            2 unhealthy since=0 protected
            3 unhealthy since=0 busy=other
            4 unhealthy
            5 healthy
        ";
        // N = 6: one at a time, and 0 is already in repair.
        check(
            fleet,
            10,
            100,
            false,
            expect![[r#"
            repair [] wake none
        "#]],
        );
        let fleet = fleet.replace("busy=repairing", "");
        check(
            &fleet,
            10,
            100,
            false,
            expect![[r#"
            repair [0] wake none
        "#]],
        );
        check(
            &fleet,
            10,
            100,
            true,
            expect![[r#"
            repair [] wake none
        "#]],
        );
        assert_eq!((repair_limit(1), repair_limit(9), repair_limit(10), repair_limit(1000)), (1, 1, 2, 200));
    }
}
