//! `cargo xtask bench upgrade` and `cargo xtask bench planner`: the figures of issue "Upgrades".
//!
//! - upgrade: the wall time of a 10-instance rolling upgrade against its ideal, CONTRACT §6's formula
//!   batches × (drain + stop + OS disk + start + time to healthy = interval × (threshold + 1)) + pauses,
//!   with drain..start taken from the actions' own measured durations.
//! - planner: the time of one decision for 1000 instances (the core's benchmark scenarios, in release).

use std::time::Instant;

use anyhow::{Context, bail};

use crate::bench::{machine, write_section};
use crate::root;

pub fn upgrade() -> anyhow::Result<()> {
    const N: u32 = 10;
    const INTERVAL_S: f64 = 1.0;
    const THRESHOLD: f64 = 2.0;
    let (_, home, work) = crate::bench::release_home()?;
    home.gallery();
    home.publish_sample(work.path(), "1.0.0", false);
    home.publish_sample(work.path(), "1.1.0", false);
    home.lb_setup(work.path(), N, "g/web/1.0.0", &[]);
    let v11 = home.version_id("1.1.0");
    home.ok(&[
        "vmss",
        "update",
        "-n",
        "web",
        "--set",
        &format!("virtualMachineProfile.storageProfile.imageReference.id={v11}"),
    ]);
    let t = Instant::now();
    home.ok(&["vmss", "rolling-upgrade", "start", "-n", "web"]);
    let actual = t.elapsed().as_secs_f64();
    let batches =
        home.ok(&["vmss", "rolling-upgrade", "get-latest", "-n", "web", "--query", "galleon.batch", "-o", "tsv"]);
    let batches: f64 = batches.trim().parse().context("the batch count")?;
    let log = std::fs::read_to_string(home.path().join("serve.log"))?;
    let mut replace: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("action done") && l.contains("os-upgrade"))
        .filter_map(|l| l.split(" ms=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    if replace.len() != N as usize {
        bail!("found {} upgrade action timings in the log, not {N}", replace.len());
    }
    replace.sort_by(|a, b| a.total_cmp(b));
    let replace_s = replace[replace.len() / 2] / 1000.0;
    let healthy_s = INTERVAL_S * (THRESHOLD + 1.0);
    let ideal = batches * (replace_s + healthy_s);
    let ratio = actual / ideal;
    let body = format!(
        "## Upgrades: a 10-instance rolling upgrade against its ideal\n\n\
         Command: `cargo xtask bench upgrade` (release build; {machine}).\n\n\
         10 instances behind an Http probe (interval 1 s, threshold 2), default policy (batches of 20%), \
         `rolling-upgrade start` to a new image version, timed until it returns Completed.\n\n\
         | measure | value |\n|---|---|\n\
         | batches | {batches} |\n\
         | replace one instance (drain + stop + OS disk + start), median of the 10 | {replace_ms:.0} ms |\n\
         | time to healthy, interval × (threshold + 1) | {healthy_s:.1} s |\n\
         | ideal: batches × (replace + time to healthy) | {ideal:.1} s |\n\
         | actual | **{actual:.1} s** |\n\
         | actual / ideal | **{ratio:.2}** (target: within 10%, ≤ 1.10) |\n\n\
         The ideal counts interval × (threshold + 1) for health, as CONTRACT §6 does: the longest a change \
         takes to be seen. A restarted instance is probed at once, so its two successes come about one \
         interval apart and each batch takes about replace + 1 s: the actual is under the ideal, never over.",
        machine = machine(),
        replace_ms = replace_s * 1000.0,
    );
    println!("{body}");
    write_section("upgrade", &body)?;
    if ratio > 1.10 {
        bail!("the rolling upgrade took {ratio:.2} × its ideal, above 1.10");
    }
    Ok(())
}

pub fn planner() -> anyhow::Result<()> {
    let out = std::process::Command::new("cargo")
        .args([
            "test",
            "--quiet",
            "--release",
            "-p",
            "galleon-core",
            "plan_speed_for_1000_instances",
            "--",
            "--ignored",
            "--nocapture",
        ])
        .current_dir(root())
        .output()
        .context("cannot run the planner benchmark")?;
    if !out.status.success() {
        bail!("the planner benchmark failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let rows: Vec<(String, f64)> = text
        .lines()
        .filter(|l| l.trim_end().ends_with("µs"))
        .filter_map(|l| {
            let (name, rest) = l.rsplit_once("  ")?;
            let us: f64 = rest.trim().trim_end_matches("µs").trim().parse().ok()?;
            Some((name.trim().to_string(), us))
        })
        .collect();
    if rows.is_empty() {
        bail!("no timings in the planner benchmark's output:\n{text}");
    }
    let worst = rows.iter().map(|(_, us)| *us).fold(0.0, f64::max);
    let table: String = rows.iter().map(|(n, us)| format!("| {n} | {us:.1} µs |\n")).collect();
    let body = format!(
        "## Planner: one decision for 1000 instances\n\n\
         Command: `cargo xtask bench planner` (release build; {machine}); it runs the core's scenarios \
         (`cargo test -p galleon-core --release plan_speed_for_1000_instances -- --ignored`), each the mean of \
         its rounds.\n\n| scenario | time per `plan` |\n|---|---|\n{table}\n\
         Worst: **{worst:.1} µs** per decision (target < 1 ms).",
        machine = machine(),
    );
    println!("{body}");
    write_section("planner", &body)?;
    if worst >= 1000.0 {
        bail!("a decision took {worst:.1} µs, above 1 ms");
    }
    Ok(())
}
