//! How long one decision takes on a large fleet. Not a pass/fail test: run it by hand, in release:
//! `cargo test -p galleon-core --release plan_speed -- --ignored --nocapture`.

use std::hint::black_box;
use std::time::Duration;

use crate::health::HealthState;
use crate::policy::RollingPolicy;
use crate::rollout::{Busy, Kind, Observed, Snapshot, Upgrade, plan, start};
use crate::time::Time;

fn fleet(n: u32) -> Vec<Observed> {
    (0..n)
        .map(|id| Observed {
            id,
            on_target: false,
            health: HealthState::Healthy,
            health_seen: true,
            busy: None,
            protected: id % 97 == 0,
            started_at: Some(Time::ZERO),
        })
        .collect()
}

/// Mean time of `plan` over `rounds` calls.
fn time(name: &str, instances: &[Observed], upgrade: &Upgrade, policy: RollingPolicy, rounds: u32) -> Duration {
    let snapshot = Snapshot { now: Time(60_000), policy, instances, upgrade };
    // The clock is read here, in a test, never in the planner.
    #[allow(clippy::disallowed_types)]
    let t0 = std::time::Instant::now();
    for _ in 0..rounds {
        black_box(plan(black_box(&snapshot)));
    }
    let mean = t0.elapsed() / rounds;
    eprintln!("{name:<48} {:>8.1} µs", mean.as_secs_f64() * 1e6);
    mean
}

#[test]
#[ignore = "a benchmark: run by hand in release"]
fn plan_speed_for_1000_instances() {
    let n = 1000;
    let mut instances = fleet(n);
    let policy = RollingPolicy { prioritize_unhealthy_instances: true, ..RollingPolicy::default() };
    let fresh = start(Kind::Os, true, &instances, Time::ZERO);
    let mut worst = time("start of batch 1 (200 of 1000)", &instances, &fresh, policy, 200);

    // Mid-upgrade: 600 upgraded and Healthy, batch 4 in flight, half of it done and Initializing.
    let mut u = plan(&Snapshot { now: Time::ZERO, policy, instances: &instances, upgrade: &fresh }).next;
    u.batch_number = 4;
    u.upgraded = (0..600).collect();
    u.batch = (600..800).filter(|id| id % 97 != 0).collect();
    u.skipped = (0..n).filter(|id| id % 97 == 0).collect();
    for o in instances.iter_mut() {
        if o.id < 600 {
            o.on_target = true;
        } else if u.batch.contains(&o.id) && o.id < 700 {
            o.on_target = true;
            o.health = HealthState::Initializing;
            o.started_at = Some(Time(50_000));
        } else if u.batch.contains(&o.id) {
            o.busy = Some(Busy::Upgrading);
        }
    }
    worst = worst.max(time("batch 4 in flight, 600 upgraded", &instances, &u, policy, 200));

    // The batch just ended: after-batch check over 800 upgraded, then the before-batch check and batch 5.
    for o in instances.iter_mut().filter(|o| u.batch.contains(&o.id)) {
        o.busy = None;
        o.on_target = true;
        o.health = HealthState::Healthy;
    }
    worst = worst.max(time("batch 4 ends, batch 5 starts", &instances, &u, policy, 200));

    // Faulted, rolling back 200 (B at a time).
    let mut f = u.clone();
    f.state = crate::rollout::State::Faulted { rolling_back: true };
    f.to_roll_back = u.batch.clone();
    f.batch.clear();
    worst = worst.max(time("rolling back 200", &instances, &f, policy, 200));
    eprintln!("worst {:.1} µs", worst.as_secs_f64() * 1e6);
}
