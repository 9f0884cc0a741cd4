//! The scenario language of the planner's table tests: a fleet, events, `plan`; prints what was decided.
//!
//! One command a line (`#` starts a comment); `t=SECONDS` at the start of a line sets the clock first.
//! ```text
//! policy batch=20 unhealthy=20 upgraded=20 pause=0 grace=30 prioritize surge   # any subset; Azure's defaults
//! fleet 10                  # instances 0..9: old version, Healthy (seen), idle
//! start os | start os no-rollback | start model | start model rollback
//! plan                      # plan, print, persist `next`, and do the shell's write-ahead: instances
//!                           # asked an action become busy with it; `create n` adds n busy instances
//! plan lost                 # the same, but the actions are lost (a crash before the write-ahead)
//! t=40 0,1 upgraded healthy # ids (`0,1`, `2-5`, `all`) then words, applied in order:
//!                           #   upgraded | rolledback (the action ended: idle, on/off the target,
//!                           #   restarted now, Initializing) | done (idle) | busy=upgrading|rollingback|
//!                           #   deleting|repairing|other | healthy | unhealthy | initializing | unknown |
//!                           #   seen | unseen | target | old | protected | unprotected | gone | new
//! restart                   # the control plane restarted: no health seen
//! cancel | status
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use expect_test::Expect;

use crate::health::HealthState;
use crate::policy::RollingPolicy;
use crate::rollout::{Act, Busy, Kind, Observed, State, Upgrade, cancel, plan, progress, start};
use crate::time::Time;

/// Runs `scenario` and compares what it printed with `expected`.
pub fn check(scenario: &str, expected: Expect) {
    let mut w = World::default();
    for raw in scenario.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if !line.is_empty() {
            w.line(line);
        }
    }
    expected.assert_eq(&w.out);
}

#[derive(Default)]
struct World {
    now: Time,
    policy: RollingPolicy,
    instances: Vec<Observed>,
    upgrade: Option<Upgrade>,
    next_id: u32,
    out: String,
}

fn seconds(s: &str) -> Time {
    let s = s.trim_end_matches('s');
    let secs: f64 = s.parse().unwrap_or_else(|_| panic!("not a number of seconds: {s}"));
    Time((secs * 1000.0).round() as u64)
}

pub fn fmt_time(t: Time) -> String {
    if t.0.is_multiple_of(1000) { format!("{}s", t.0 / 1000) } else { format!("{}.{:03}s", t.0 / 1000, t.0 % 1000) }
}

fn fmt_ids<'a>(ids: impl IntoIterator<Item = &'a u32>) -> String {
    ids.into_iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

impl World {
    fn line(&mut self, line: &str) {
        let mut line = line;
        if let Some(rest) = line.strip_prefix("t=") {
            let (t, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            self.now = seconds(t);
            line = rest.trim();
            if line.is_empty() {
                return;
            }
        }
        let (cmd, args) = line.split_once(' ').unwrap_or((line, ""));
        match cmd {
            "policy" => self.policy(args),
            "fleet" => {
                let n: u32 = args.parse().expect("fleet N");
                self.instances = (0..n).map(|id| self.instance(id, false)).collect();
                self.next_id = n;
            }
            "start" => {
                let (kind, rollback) = match args {
                    "os" => (Kind::Os, true),
                    "os no-rollback" => (Kind::Os, false),
                    "model" => (Kind::Model, false),
                    "model rollback" => (Kind::Model, true),
                    other => panic!("start {other}"),
                };
                self.upgrade = Some(start(kind, rollback, &self.instances, self.now));
            }
            "plan" => self.plan(args == "lost"),
            "cancel" => self.upgrade = self.upgrade.as_ref().map(cancel),
            "restart" => self.instances.iter_mut().for_each(|o| o.health_seen = false),
            "status" => self.status(),
            _ => self.event(cmd, args),
        }
    }

    fn policy(&mut self, args: &str) {
        let mut p = RollingPolicy::default();
        for word in args.split_whitespace() {
            match word.split_once('=') {
                Some(("batch", v)) => p.max_batch_instance_percent = v.parse().unwrap(),
                Some(("unhealthy", v)) => p.max_unhealthy_instance_percent = v.parse().unwrap(),
                Some(("upgraded", v)) => p.max_unhealthy_upgraded_instance_percent = v.parse().unwrap(),
                Some(("pause", v)) => p.pause_time_between_batches = Duration::from_millis(seconds(v).0),
                Some(("grace", v)) => p.health_grace_period = Duration::from_millis(seconds(v).0),
                None if word == "prioritize" => p.prioritize_unhealthy_instances = true,
                None if word == "surge" => p.max_surge = true,
                _ => panic!("policy {word}"),
            }
        }
        self.policy = p;
    }

    fn instance(&self, id: u32, on_target: bool) -> Observed {
        Observed {
            id,
            on_target,
            health: HealthState::Healthy,
            health_seen: true,
            busy: None,
            protected: false,
            started_at: Some(Time::ZERO),
        }
    }

    fn ids(&self, list: &str) -> Vec<u32> {
        if list == "all" {
            return self.instances.iter().map(|o| o.id).collect();
        }
        let mut out = Vec::new();
        for part in list.split(',') {
            match part.split_once('-') {
                Some((a, b)) => out.extend(a.parse::<u32>().unwrap()..=b.parse::<u32>().unwrap()),
                None => out.push(part.parse().unwrap_or_else(|_| panic!("not a command or an id list: {list}"))),
            }
        }
        out
    }

    fn event(&mut self, list: &str, words: &str) {
        for id in self.ids(list) {
            for word in words.split_whitespace() {
                if word == "new" {
                    let mut o = self.instance(id, true);
                    o.health = HealthState::Initializing;
                    o.started_at = Some(self.now);
                    self.instances.push(o);
                    self.instances.sort_by_key(|o| o.id);
                    self.next_id = self.next_id.max(id + 1);
                    continue;
                }
                if word == "gone" {
                    self.instances.retain(|o| o.id != id);
                    continue;
                }
                let now = self.now;
                let o = self.instances.iter_mut().find(|o| o.id == id).unwrap_or_else(|| panic!("no instance {id}"));
                match word {
                    "upgraded" | "rolledback" => {
                        o.busy = None;
                        o.on_target = word == "upgraded";
                        o.started_at = Some(now);
                        o.health = HealthState::Initializing;
                    }
                    "done" => o.busy = None,
                    "healthy" => o.health = HealthState::Healthy,
                    "unhealthy" => o.health = HealthState::Unhealthy,
                    "initializing" => o.health = HealthState::Initializing,
                    "unknown" => o.health = HealthState::Unknown,
                    "seen" => o.health_seen = true,
                    "unseen" => o.health_seen = false,
                    "target" => o.on_target = true,
                    "old" => o.on_target = false,
                    "protected" => o.protected = true,
                    "unprotected" => o.protected = false,
                    "busy=upgrading" => o.busy = Some(Busy::Upgrading),
                    "busy=rollingback" => o.busy = Some(Busy::RollingBack),
                    "busy=deleting" => o.busy = Some(Busy::Deleting),
                    "busy=repairing" => o.busy = Some(Busy::Repairing),
                    "busy=other" => o.busy = Some(Busy::Other),
                    other => panic!("unknown word {other}"),
                }
            }
        }
    }

    fn plan(&mut self, lost: bool) {
        let upgrade = self.upgrade.as_ref().expect("start before plan");
        let p =
            plan(&crate::rollout::Snapshot { now: self.now, policy: self.policy, instances: &self.instances, upgrade });
        let _ = writeln!(self.out, "t={} plan{}", fmt_time(self.now), if lost { " (actions lost)" } else { "" });
        for line in merge_records(&p.actions) {
            let _ = writeln!(self.out, "  {line}");
        }
        let wake = p.wake_at.map(|t| format!(", wake t={}", fmt_time(t))).unwrap_or_default();
        let _ = writeln!(self.out, "  -> {}{wake}", describe(&p.next));
        if !lost {
            self.write_ahead(&p.actions);
        }
        self.upgrade = Some(p.next);
    }

    /// What the shell does before the next event: each asked instance is busy with its action.
    fn write_ahead(&mut self, actions: &[Act]) {
        for a in actions {
            let (ids, busy) = match a {
                Act::Upgrade { ids, .. } => (ids, Busy::Upgrading),
                Act::Rollback { ids } => (ids, Busy::RollingBack),
                Act::Delete { ids } => (ids, Busy::Deleting),
                Act::Create { count, .. } => {
                    for _ in 0..*count {
                        let mut o = self.instance(self.next_id, true);
                        o.busy = Some(Busy::Other);
                        o.health = HealthState::Initializing;
                        o.started_at = Some(self.now);
                        self.instances.push(o);
                        self.next_id += 1;
                    }
                    continue;
                }
                Act::Record { .. } => continue,
            };
            for o in self.instances.iter_mut().filter(|o| ids.contains(&o.id)) {
                o.busy = Some(busy);
            }
        }
    }

    fn status(&mut self) {
        let u = self.upgrade.as_ref().expect("start before status");
        let p = progress(u, &self.instances);
        let r = u.rollback_info();
        let _ = writeln!(
            self.out,
            "t={} status {}: successful {}, failed {}, in progress {}, pending {}; rolled back {}, rollback failed {}",
            fmt_time(self.now),
            u.state.running_status(),
            p.successful,
            p.failed,
            p.in_progress,
            p.pending,
            r.successfully_rolled_back,
            r.failed_rolled_back,
        );
        if let Some(e) = &u.error {
            let _ = writeln!(self.out, "  error: {e}");
        }
    }
}

/// Actions one a line; consecutive records with the same reason merged into one line.
fn merge_records(actions: &[Act]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut last: Option<(Vec<u32>, &str)> = None;
    let flush = |out: &mut Vec<String>, last: &mut Option<(Vec<u32>, &str)>| {
        if let Some((ids, reason)) = last.take() {
            out.push(format!("record {}: {reason}", fmt_ids(&ids)));
        }
    };
    for a in actions {
        match a {
            Act::Record { id: Some(id), reason } => match &mut last {
                Some((ids, r)) if *r == reason.as_str() => ids.push(*id),
                _ => {
                    flush(&mut out, &mut last);
                    last = Some((vec![*id], reason.as_str()));
                }
            },
            other => {
                flush(&mut out, &mut last);
                out.push(other.to_string());
            }
        }
    }
    flush(&mut out, &mut last);
    out
}

pub fn describe(u: &Upgrade) -> String {
    let n = u.batch_number;
    match u.state {
        State::Ready if n == 0 => "Ready".into(),
        State::Ready => format!("Ready after batch {n}"),
        State::Upgrading => format!("Upgrading batch {n} [{}]", fmt_ids(&u.batch)),
        State::Surging => {
            let surge = u.surge.as_ref().map(|s| fmt_ids(&s.ids)).unwrap_or_default();
            format!("Surging batch {n} [{}], surge [{surge}]", fmt_ids(&u.batch))
        }
        State::Replacing => format!("Replacing batch {n} [{}]", fmt_ids(&u.batch)),
        State::Faulted { rolling_back: true } => {
            format!("Faulted, rolling back [{}], deleting [{}]", fmt_ids(&u.to_roll_back), fmt_ids(&u.to_delete))
        }
        State::Faulted { rolling_back: false } => "Faulted".into(),
        State::Cancelled => "Cancelled".into(),
        State::Completed => "Completed".into(),
    }
}
