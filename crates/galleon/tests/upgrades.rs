//! Issue "Upgrades", end to end: seed 000's automatic OS upgrade on publish in batches of 20% with no
//! failed request and never more than a batch out of service; a bad version Faulted after its first batch
//! and rolled back; `kill -9` of the control plane at several points of batch 2, after which the upgrade
//! ends as an uninterrupted one would (every instance upgraded exactly once).

#![allow(clippy::unwrap_used)] // test code: a panic is the failure message

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use galleon_testkit::http::body;
use galleon_testkit::load::Load;
use galleon_testkit::{Home, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_galleon");

/// Samples every instance's `/health` directly every 100 ms; an instance counts as down after two
/// misses in a row (as the acceptance check does). Keeps the most seen down at once.
struct Watch {
    stop: Arc<AtomicBool>,
    max_down: Arc<AtomicUsize>,
    handle: std::thread::JoinHandle<()>,
}

impl Watch {
    fn start(ips: Vec<String>) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let max_down = Arc::new(AtomicUsize::new(0));
        let (s, m) = (stop.clone(), max_down.clone());
        let handle = std::thread::spawn(move || {
            let mut misses = vec![0u32; ips.len()];
            while !s.load(Ordering::Relaxed) {
                let up: Vec<bool> = std::thread::scope(|sc| {
                    let hs: Vec<_> = ips
                        .iter()
                        .map(|ip| sc.spawn(move || body(&format!("http://{ip}:8080/health")).is_some()))
                        .collect();
                    hs.into_iter().map(|h| h.join().unwrap_or(false)).collect()
                });
                for (miss, up) in misses.iter_mut().zip(up) {
                    *miss = if up { 0 } else { *miss + 1 };
                }
                let down = misses.iter().filter(|m| **m >= 2).count();
                m.fetch_max(down, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Watch { stop, max_down, handle }
    }

    fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
        self.max_down.load(Ordering::Relaxed)
    }
}

fn versions(home: &Home) -> String {
    let v = home.ok(&[
        "vmss",
        "list-instances",
        "-n",
        "web",
        "--query",
        "[].storageProfile.imageReference.exactVersion",
        "-o",
        "tsv",
    ]);
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for l in v.lines() {
        *counts.entry(l.to_string()).or_default() += 1;
    }
    counts.iter().map(|(k, n)| format!("{n}x{k}")).collect::<Vec<_>>().join(" ")
}

fn latest(home: &Home, query: &str) -> String {
    home.galleon(&["vmss", "rolling-upgrade", "get-latest", "-n", "web", "--query", query, "-o", "tsv"])
        .stdout
        .trim()
        .to_string()
}

/// 10 (or `n`) instances in Rolling mode following `g/web` (latest), behind a load balancer whose probe
/// is the health source, with automatic OS upgrade on.
fn fleet(home: &Home, work: &std::path::Path, n: u32) -> (String, Vec<String>) {
    home.gallery();
    home.publish_sample(work, "1.0.0", false);
    let lb = home.lb_setup(work, n, "g/web", &["--upgrade-policy-mode", "Rolling"]);
    home.ok(&[
        "vmss",
        "update",
        "-n",
        "web",
        "--set",
        "upgradePolicy.automaticOSUpgradePolicy.enableAutomaticOSUpgrade=true",
    ]);
    let ips = (0..n).map(|i| home.ip("web", i)).collect();
    (lb, ips)
}

#[test]
fn publishing_a_version_upgrades_the_fleet_by_itself_and_a_bad_one_is_rolled_back() {
    let home = Home::start(BIN);
    let work = tempfile::tempdir().unwrap();
    let (lb, ips) = fleet(&home, work.path(), 10);
    let boots_before: Vec<String> = ips.iter().map(|ip| body(&format!("http://{ip}:8080/data")).unwrap()).collect();
    let watch = Watch::start(ips.clone());
    let load = Load::start(&format!("{lb}:18081"), "/", 200.0, Some("/slow"));
    std::thread::sleep(Duration::from_millis(300));

    // Seed 000: a new version is published; the fleet upgrades itself, 20% at a time.
    home.publish_sample(work.path(), "1.1.0", false);
    wait_until(Duration::from_secs(120), "the automatic OS upgrade completes", || {
        latest(&home, "runningStatus.code") == "Completed" && versions(&home) == "10x1.1.0"
    });
    let down = watch.stop();
    assert!(down <= 2, "{down} of 10 instances were out of service at once; a batch is 2");
    for (i, ip) in ips.iter().enumerate() {
        let after = body(&format!("http://{ip}:8080/data")).unwrap();
        assert!(after.starts_with(&boots_before[i]), "instance {i}'s data disk changed: {after:?}");
        assert_eq!(after.lines().count(), 2, "instance {i} was restarted more than once: {after:?}");
        assert!(after.lines().nth(1).unwrap().starts_with("1.1.0 "), "{after}");
    }
    let history = home.json(&["vmss", "get-os-upgrade-history", "-n", "web"]);
    assert_eq!(history[0]["properties"]["startedBy"], "Platform", "{history}");
    assert_eq!(history[0]["properties"]["targetImageReference"]["exactVersion"], "1.1.0");
    assert_eq!(history[0]["properties"]["runningStatus"]["code"], "Completed");

    // A version whose health endpoint fails: Faulted after its first batch, that batch restored.
    home.publish_sample(work.path(), "1.2.0", true);
    wait_until(Duration::from_secs(120), "the bad upgrade faults and rolls back", || {
        latest(&home, "[runningStatus.code, galleon.state]") == "Faulted\nFaulted { rolling_back: false }"
    });
    assert_eq!(versions(&home), "10x1.1.0", "the failed batch is back on 1.1.0");
    let touched: Vec<usize> = ips
        .iter()
        .enumerate()
        .filter(|(_, ip)| body(&format!("http://{ip}:8080/data")).unwrap().lines().any(|l| l.starts_with("1.2.0 ")))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(touched, [0, 1], "the bad version reached only the first batch");
    let error = latest(&home, "error.message");
    assert!(error.contains("before batch 2") && error.contains("allowed 2"), "{error}");
    let history = home.json(&["vmss", "get-os-upgrade-history", "-n", "web"]);
    assert_eq!(history[0]["properties"]["rollbackInfo"]["successfullyRolledbackInstanceCount"], 2, "{history}");
    // The faulted version is not tried again by this scale set.
    home.ok(&["vmss", "scale", "-n", "web", "--new-capacity", "11"]);
    assert_eq!(versions(&home), "11x1.1.0", "a scale-out does not pick the version that faulted here");
    let decisions = home.ok(&[
        "vmss",
        "get-instance-view",
        "-n",
        "web",
        "--instance-id",
        "0",
        "--query",
        "galleon.decisions[].reason",
        "-o",
        "tsv",
    ]);
    assert!(decisions.contains("upgraded in batch 1") && decisions.contains("rolled back to 1.1.0"), "{decisions}");

    let stats = load.stop();
    assert_eq!(stats.failed, 0, "clients saw failures during the upgrades: {stats}");
}

#[test]
fn rolling_policy_cancel_and_refusals() {
    let home = Home::start(BIN);
    let work = tempfile::tempdir().unwrap();
    home.gallery();
    home.publish_sample(work.path(), "1.0.0", false);
    home.publish_sample(work.path(), "1.1.0", false);
    // Rolling mode with no health source: a model change that would start an upgrade is refused.
    home.ok(&[
        "vmss",
        "create",
        "-n",
        "web",
        "--image",
        "g/web/1.0.0",
        "--instance-count",
        "4",
        "--upgrade-policy-mode",
        "Rolling",
        "--pause-time-between-batches",
        "PT2S",
    ]);
    let v11 = home.version_id("1.1.0");
    let refused = home.fails(&[
        "vmss",
        "update",
        "-n",
        "web",
        "--set",
        &format!("virtualMachineProfile.storageProfile.imageReference.id={v11}"),
    ]);
    assert!(refused.stderr.contains("health source"), "{}", refused.stderr);
    assert_eq!(home.fails(&["vmss", "rolling-upgrade", "start", "-n", "web"]).code, 1);
    // Impossible policies are refused when set.
    let bad = home.fails(&[
        "vmss",
        "update",
        "-n",
        "web",
        "--max-batch-instance-percent",
        "50",
        "--max-unhealthy-instance-percent",
        "20",
    ]);
    assert!(bad.stderr.contains("could never start"), "{}", bad.stderr);
    // The Application Health extension is a health source; then a model change starts a rolling upgrade.
    home.ok(&["vmss", "extension", "set", "--vmss-name", "web", "--name", "ApplicationHealthLinux", "--publisher", "Microsoft.ManagedServices", "--version", "2.0", "--settings", r#"{"protocol": "http", "port": 8080, "requestPath": "/apphealth", "intervalInSeconds": 1, "numberOfProbes": 2, "gracePeriod": 20}"#]);
    // Adding the extension is a model change too: in Rolling mode it rolls out first.
    wait_until(Duration::from_secs(60), "the extension rolls out", || {
        latest(&home, "runningStatus.code") == "Completed"
    });
    assert_eq!(home.latest_model_applied("web"), "true true true true");
    home.ok(&[
        "vmss",
        "update",
        "-n",
        "web",
        "--set",
        &format!("virtualMachineProfile.storageProfile.imageReference.id={v11}"),
    ]);
    wait_until(Duration::from_secs(30), "the first batch starts", || {
        latest(&home, "[runningStatus.code, galleon.batch]") == "RollingForward\n1"
    });
    // A second upgrade is refused while one runs; cancel lets the batch in flight finish.
    assert!(home.fails(&["vmss", "rolling-upgrade", "start", "-n", "web"]).stderr.contains("in progress"));
    home.ok(&["vmss", "rolling-upgrade", "cancel", "-n", "web"]);
    assert_eq!(latest(&home, "runningStatus.code"), "Cancelled");
    let lma = home.latest_model_applied("web");
    assert_eq!(lma.matches("true").count(), 1, "only the first batch (1 of 4) was upgraded: {lma}");
    // `rolling-upgrade start` brings every instance to the model's image, and returns at the end.
    home.ok(&["vmss", "rolling-upgrade", "start", "-n", "web"]);
    assert_eq!(latest(&home, "runningStatus.code"), "Completed");
    assert_eq!(versions(&home), "4x1.1.0");
}

/// `kill -9` of the control plane at a moment of batch 2; the upgrade must end as an uninterrupted one.
fn kill_during_batch_2(moment: &str, when: impl Fn(&Home) -> bool) {
    let mut home = Home::start(BIN);
    let work = tempfile::tempdir().unwrap();
    let (lb, ips) = fleet(&home, work.path(), 5);
    let load = Load::start(&format!("{lb}:18081"), "/", 100.0, None);
    home.publish_sample(work.path(), "1.1.0", false);
    wait_until(Duration::from_secs(60), &format!("batch 2 reaches: {moment}"), || when(&home));
    home.kill_daemon();
    std::thread::sleep(Duration::from_millis(300));
    home.start_daemon();
    wait_until(Duration::from_secs(120), "the upgrade completes after the restart", || {
        latest(&home, "runningStatus.code") == "Completed"
    });
    assert_eq!(versions(&home), "5x1.1.0", "{moment}");
    for (i, ip) in ips.iter().enumerate() {
        let boots = body(&format!("http://{ip}:8080/data")).unwrap();
        let on_new = boots.lines().filter(|l| l.starts_with("1.1.0 ")).count();
        assert_eq!(on_new, 1, "{moment}: instance {i} was upgraded {on_new} times: {boots:?}");
    }
    let progress = latest(&home, "[progress.successfulInstanceCount, progress.failedInstanceCount]");
    assert_eq!(progress, "5\n0", "{moment}");
    let stats = load.stop();
    assert_eq!(stats.failed, 0, "{moment}: {stats}");
}

fn batch2(home: &Home) -> bool {
    latest(home, "galleon.batch") == "2"
}

#[test]
fn kill_9_as_batch_2_starts() {
    kill_during_batch_2("the batch was just asked for", batch2);
}

#[test]
fn kill_9_while_batch_2_restarts() {
    kill_during_batch_2("its instance is being replaced", |h| {
        batch2(h)
            && h.ok(&[
                "vmss",
                "list-instances",
                "-n",
                "web",
                "--query",
                "[?powerState!='VM running'] | length(@)",
                "-o",
                "tsv",
            ])
            .trim()
                != "0"
    });
}

#[test]
fn kill_9_while_batch_2_is_judged() {
    kill_during_batch_2("its instance runs the new version, not yet healthy", |h| {
        batch2(h)
            && h.ok(&[
                "vmss",
                "list-instances",
                "-n",
                "web",
                "--query",
                "[?storageProfile.imageReference.exactVersion=='1.1.0' && healthState!='Healthy'] | length(@)",
                "-o",
                "tsv",
            ])
            .trim()
                != "0"
    });
}
