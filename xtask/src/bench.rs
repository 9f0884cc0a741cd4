//! `cargo xtask bench <name>`: measurements that go into docs/benchmarks.md, each with the command that
//! produced it. This machine has 2 noisy cores: report medians and ratios, not single runs.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{root, run};

pub fn main(args: &[&str]) -> anyhow::Result<()> {
    match args.first().copied() {
        Some("instances") => instances(),
        _ => bail!("usage: cargo xtask bench instances"),
    }
}

fn release_binary() -> anyhow::Result<std::path::PathBuf> {
    run("cargo", &["build", "--release", "--quiet", "-p", "galleon"])?;
    Ok(root().join("target/release/galleon"))
}

/// Replaces the section `name` of docs/benchmarks.md (between its markers) with `body`.
pub fn write_section(name: &str, body: &str) -> anyhow::Result<()> {
    let path = root().join("docs/benchmarks.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let (start, end) = (format!("<!-- bench:{name} -->"), format!("<!-- /bench:{name} -->"));
    let section = format!("{start}\n{body}\n{end}");
    let new = match (text.find(&start), text.find(&end)) {
        (Some(a), Some(b)) if b > a => format!("{}{}{}", &text[..a], section, &text[b + end.len()..]),
        _ => format!("{}\n{}\n", text.trim_end(), section),
    };
    std::fs::write(&path, new)?;
    eprintln!("xtask: wrote the '{name}' section of {}", path.display());
    Ok(())
}

pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let fs = std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpus} cores, Linux {}, {fs} file system", kernel.trim())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// 50 instances of a 20 MB image: every instance running; OS disk ready per instance.
fn instances() -> anyhow::Result<()> {
    const COUNT: u32 = 50;
    let bin = release_binary()?;
    let home = galleon_testkit::Home::start(bin.to_str().context("a UTF-8 path")?);
    let work = tempfile::tempdir()?;
    // The image: the sample app (the galleon binary, copied in) plus data up to 20 MB, a few files.
    let image = work.path().join("image");
    std::fs::create_dir_all(image.join("bin"))?;
    std::fs::copy(&bin, image.join("bin/galleon"))?;
    let have = std::fs::metadata(image.join("bin/galleon"))?.len();
    let filler: Vec<u8> =
        (0..(20 * 1024 * 1024u64).saturating_sub(have)).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    std::fs::write(image.join("assets.bin"), &filler)?;
    std::fs::write(image.join("index.html"), "<h1>bench</h1>\n")?;
    std::fs::write(image.join("start"), "#!/bin/sh\nexec ./bin/galleon sample-app\n")?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(image.join("start"), std::fs::Permissions::from_mode(0o755))?;
    let size: u64 = ["bin/galleon", "assets.bin", "index.html", "start"]
        .iter()
        .map(|f| std::fs::metadata(image.join(f)).map(|m| m.len()).unwrap_or(0))
        .sum();
    home.gallery();
    home.ok(&[
        "sig",
        "image-version",
        "create",
        "-r",
        "g",
        "-i",
        "web",
        "-e",
        "1.0.0",
        "--source",
        image.to_str().context("utf-8")?,
    ]);

    let count = COUNT.to_string();
    let t = Instant::now();
    home.ok(&[
        "vmss",
        "create",
        "-n",
        "bench",
        "--image",
        "g/web/1.0.0",
        "--instance-count",
        &count,
        "--data-disk-sizes-gb",
        "1",
    ]);
    let created = t.elapsed();
    // Every instance running: each answers on its own address.
    let ips = home.ok(&["vmss", "list-instances", "-n", "bench", "--query", "[].privateIpAddress", "-o", "tsv"]);
    let ips: Vec<&str> = ips.split_whitespace().collect();
    if ips.len() != COUNT as usize {
        bail!("{} instances listed, not {COUNT}", ips.len());
    }
    for ip in &ips {
        let url = format!("http://{ip}:8080/health");
        galleon_testkit::wait_until(Duration::from_secs(60), &format!("{url} answers"), || {
            galleon_testkit::http::get(&url).is_ok_and(|(s, _)| s == 200)
        });
    }
    let serving = t.elapsed();
    let running = home.ok(&[
        "vmss",
        "list-instances",
        "-n",
        "bench",
        "--query",
        "length([?powerState=='VM running'])",
        "-o",
        "tsv",
    ]);
    // OS disk ready, per instance, from the runtime's own measurement.
    let log = std::fs::read_to_string(home.path().join("serve.log"))?;
    let mut disk_ms: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("made a fresh OS disk"))
        .filter_map(|l| l.split("ms=").nth(1)?.split_whitespace().next()?.trim_matches('"').parse().ok())
        .collect();
    disk_ms.sort_by(|a, b| a.total_cmp(b));
    if disk_ms.len() != COUNT as usize {
        bail!("found {} OS disk timings in the daemon's log, not {COUNT}", disk_ms.len());
    }
    let median = percentile(&disk_ms, 0.5);
    let body = format!(
        "## Instances: 50 instances of a 20 MB image\n\n\
         Command: `cargo xtask bench instances` (release build; {machine}).\n\n\
         | measure | value |\n|---|---|\n\
         | image | {size_mb:.1} MB in 4 files (the sample app's binary, its data, a page, `start`) |\n\
         | instances running (answering `/health`) | {running} of {COUNT} |\n\
         | `vmss create --instance-count 50` returned after | {created:.2} s ({per_create:.0} ms per instance) |\n\
         | every instance answering after | {serving:.2} s ({per_serve:.0} ms per instance) |\n\
         | OS disk ready per instance (copy out of the store + swap), median | **{median:.1} ms** (target < 100 ms) |\n\
         | OS disk ready, p90 / max | {p90:.1} ms / {max:.1} ms |\n\n\
         The OS disk is a fresh copy of the image's files out of the content-addressed store (`copy_file_range`; \
         this file system cannot reflink), never hard links. Instances are created concurrently, so the \
         per-instance wall time is below the sum of its parts.",
        machine = machine(),
        size_mb = size as f64 / 1e6,
        running = running.trim(),
        created = created.as_secs_f64(),
        per_create = created.as_secs_f64() * 1000.0 / f64::from(COUNT),
        serving = serving.as_secs_f64(),
        per_serve = serving.as_secs_f64() * 1000.0 / f64::from(COUNT),
        p90 = percentile(&disk_ms, 0.9),
        max = disk_ms.last().copied().unwrap_or(0.0),
    );
    println!("{body}");
    home.ok(&["vmss", "delete", "-n", "bench"]);
    write_section("instances", &body)?;
    if median >= 100.0 {
        bail!("the median OS disk took {median:.1} ms, above the 100 ms target");
    }
    Ok(())
}
