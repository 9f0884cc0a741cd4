//! Health of one backend, from the outcomes of its probe: the hysteresis every consumer shares.
//!
//! The load balancer's eligibility, `list-instances` `healthState`, upgrade gating and repairs all read
//! the state of one `Tracker` per (instance, probe); nothing else decides health (CONTRACT §5):
//! - after the instance (re)starts it is `Initializing` and gets no traffic;
//! - `threshold` consecutive successes make it `Healthy`;
//! - `threshold` consecutive *answers* that are failures (an HTTP status outside 200–299, a Tcp connect
//!   then reset) make it `Unhealthy` at once, grace or not;
//! - silence (refused connections, timeouts) counts only once the grace period is over or the instance
//!   has been `Healthy` since it started; still `Initializing` when the grace ends means `Unhealthy`.
//!
//! Pure: the caller passes `now` and the outcomes; `next_deadline` says when `tick` has work to do.

use std::time::Duration;

use crate::time::Time;

/// The health of one backend as the probe sees it (ARM's `HealthState/…` codes, lower-cased there).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum HealthState {
    /// Started, not yet judged; receives no traffic.
    Initializing,
    Healthy,
    Unhealthy,
    /// No probe watches it, or nothing has been observed since the observer (re)started.
    Unknown,
}

impl HealthState {
    /// The name `list-instances` shows (`healthState`).
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Initializing => "Initializing",
            HealthState::Healthy => "Healthy",
            HealthState::Unhealthy => "Unhealthy",
            HealthState::Unknown => "Unknown",
        }
    }

    /// The ARM instance-view code, `HealthState/healthy` and so on.
    pub fn arm_code(self) -> &'static str {
        match self {
            HealthState::Initializing => "HealthState/initializing",
            HealthState::Healthy => "HealthState/healthy",
            HealthState::Unhealthy => "HealthState/unhealthy",
            HealthState::Unknown => "HealthState/unknown",
        }
    }
}

/// What one probe attempt saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// HTTP 200–299, or a Tcp connection that was accepted and stayed open.
    Success,
    /// An answer that says "not healthy": an HTTP status outside 200–299, a connection accepted then
    /// reset, or an explicit `Unhealthy` from the Application Health extension.
    Failure,
    /// No answer: connection refused, timed out. Counts only after the grace period.
    Silence,
}

/// How a tracker judges: `threshold` consecutive results flip it; `grace` protects slow starters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    pub threshold: u32,
    pub grace: Duration,
}

/// A state change, returned by `observe` and `tick` when one happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: HealthState,
    pub to: HealthState,
    pub at: Time,
}

/// The hysteresis of one backend since its last start.
#[derive(Clone, Debug)]
pub struct Tracker {
    rules: Rules,
    state: HealthState,
    started_at: Time,
    been_healthy: bool,
    successes: u32,
    failures: u32,
}

impl Tracker {
    /// A tracker for a backend that started at `started_at`: `Initializing`.
    pub fn new(rules: Rules, started_at: Time) -> Tracker {
        let rules = Rules { threshold: rules.threshold.max(1), ..rules };
        Tracker { rules, state: HealthState::Initializing, started_at, been_healthy: false, successes: 0, failures: 0 }
    }

    pub fn state(&self) -> HealthState {
        self.state
    }

    pub fn rules(&self) -> Rules {
        self.rules
    }

    pub fn started_at(&self) -> Time {
        self.started_at
    }

    /// Change the rules without forgetting what was seen (a probe edited in place).
    pub fn set_rules(&mut self, rules: Rules) {
        self.rules = Rules { threshold: rules.threshold.max(1), ..rules };
    }

    /// The backend started again: back to `Initializing`, counts and grace start over.
    pub fn restart(&mut self, now: Time) -> Option<Transition> {
        let from = self.state;
        *self = Tracker::new(self.rules, now);
        (from != HealthState::Initializing).then_some(Transition { from, to: HealthState::Initializing, at: now })
    }

    fn grace_over(&self, now: Time) -> bool {
        now.since(self.started_at) >= self.rules.grace
    }

    /// Feed one probe outcome seen at `now`.
    pub fn observe(&mut self, outcome: Outcome, now: Time) -> Option<Transition> {
        let counts_as_failure = match outcome {
            Outcome::Success => false,
            Outcome::Failure => true,
            Outcome::Silence => self.been_healthy || self.grace_over(now),
        };
        match outcome {
            Outcome::Success => {
                self.successes += 1;
                self.failures = 0;
            }
            _ if counts_as_failure => {
                self.failures += 1;
                self.successes = 0;
            }
            // Silence inside the grace period: no verdict, but it breaks a run of successes.
            _ => self.successes = 0,
        }
        let to = if self.successes >= self.rules.threshold {
            HealthState::Healthy
        } else if self.failures >= self.rules.threshold {
            HealthState::Unhealthy
        } else {
            return self.tick(now);
        };
        self.set(to, now)
    }

    /// Let time pass: a backend still `Initializing` when its grace period ends is `Unhealthy`.
    pub fn tick(&mut self, now: Time) -> Option<Transition> {
        if self.state == HealthState::Initializing && self.grace_over(now) {
            return self.set(HealthState::Unhealthy, now);
        }
        None
    }

    /// When `tick` could next change something: the end of the grace period while `Initializing`.
    pub fn next_deadline(&self) -> Option<Time> {
        (self.state == HealthState::Initializing).then(|| self.started_at + self.rules.grace)
    }

    fn set(&mut self, to: HealthState, now: Time) -> Option<Transition> {
        if to == HealthState::Healthy {
            self.been_healthy = true;
        }
        let from = std::mem::replace(&mut self.state, to);
        (from != to).then_some(Transition { from, to, at: now })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{Expect, expect};

    /// Runs a scenario: one step a line, `s` success, `f` failure (an answer), `-` silence, `t` no probe,
    /// each a second apart from t=1 s; prints the state after each step.
    fn check(threshold: u32, grace_s: u64, steps: &str, expected: Expect) {
        let mut t = Tracker::new(Rules { threshold, grace: Duration::from_secs(grace_s) }, Time::ZERO);
        let mut out = String::new();
        for (i, c) in steps.chars().enumerate() {
            let now = Time::from_millis((i as u64 + 1) * 1000);
            match c {
                's' => t.observe(Outcome::Success, now),
                'f' => t.observe(Outcome::Failure, now),
                '-' => t.observe(Outcome::Silence, now),
                't' => t.tick(now),
                _ => panic!("unknown step {c}"),
            };
            out.push_str(&format!("{}s {c} {}\n", i + 1, t.state().as_str()));
        }
        expected.assert_eq(&out);
    }

    #[test]
    fn two_successes_make_healthy() {
        check(
            2,
            30,
            "ss",
            expect![[r#"
            1s s Initializing
            2s s Healthy
        "#]],
        );
    }

    #[test]
    fn failing_answers_judge_at_once_even_in_grace() {
        check(
            2,
            30,
            "ff",
            expect![[r#"
            1s f Initializing
            2s f Unhealthy
        "#]],
        );
    }

    #[test]
    fn silence_waits_for_the_grace_period() {
        check(
            2,
            3,
            "---t",
            expect![[r#"
            1s - Initializing
            2s - Initializing
            3s - Unhealthy
            4s t Unhealthy
        "#]],
        );
        check(
            2,
            10,
            "--ss",
            expect![[r#"
            1s - Initializing
            2s - Initializing
            3s s Initializing
            4s s Healthy
        "#]],
        );
    }

    #[test]
    fn still_initializing_when_grace_ends_is_unhealthy() {
        check(
            2,
            2,
            "tt",
            expect![[r#"
            1s t Initializing
            2s t Unhealthy
        "#]],
        );
    }

    #[test]
    fn a_healthy_backend_that_goes_silent_is_unhealthy_after_threshold() {
        check(
            2,
            30,
            "ss--ss",
            expect![[r#"
            1s s Initializing
            2s s Healthy
            3s - Healthy
            4s - Unhealthy
            5s s Unhealthy
            6s s Healthy
        "#]],
        );
    }

    #[test]
    fn a_single_blip_does_not_flip() {
        check(
            3,
            30,
            "sssfss",
            expect![[r#"
            1s s Initializing
            2s s Initializing
            3s s Healthy
            4s f Healthy
            5s s Healthy
            6s s Healthy
        "#]],
        );
    }

    #[test]
    fn restart_goes_back_to_initializing() {
        let mut t = Tracker::new(Rules { threshold: 1, grace: Duration::from_secs(5) }, Time::ZERO);
        t.observe(Outcome::Success, Time(1000));
        assert_eq!(t.state(), HealthState::Healthy);
        let tr = t.restart(Time(2000)).expect("a transition");
        assert_eq!((tr.from, tr.to), (HealthState::Healthy, HealthState::Initializing));
        // The grace counts from the restart, and being healthy before does not carry over.
        assert_eq!(t.observe(Outcome::Silence, Time(3000)), None);
        assert_eq!(t.next_deadline(), Some(Time(7000)));
    }
}
