//! `cargo xtask bench <name>`: measurements that go into docs/benchmarks.md, each with the command that
//! produced it. This machine has 2 noisy cores: report medians and ratios, not single runs.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{root, run};

pub fn main(args: &[&str]) -> anyhow::Result<()> {
    stop_on_interrupt();
    match args.first().copied() {
        Some("instances") => instances(),
        Some("lb") => crate::bench_lb::main(),
        Some("upgrade") => crate::bench_upgrade::upgrade(),
        Some("planner") => crate::bench_upgrade::planner(),
        _ => bail!("usage: cargo xtask bench instances|upgrade|planner|lb"),
    }
}

/// The directories (homes, work directories) under which a bench started processes: what Ctrl-C stops.
static STARTED_UNDER: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Ctrl-C stops what the bench started under `dir` and removes `dir`, as the destructors that an exit
/// on a signal skips would have. (Instances, the data plane, nginx and HAProxy lead sessions of their
/// own, so the terminal's SIGINT never reaches them.)
fn clean_on_interrupt(dir: &Path) {
    STARTED_UNDER.lock().unwrap_or_else(|e| e.into_inner()).push(dir.to_path_buf());
}

fn stop_on_interrupt() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        if rt.block_on(tokio::signal::ctrl_c()).is_ok() {
            eprintln!("\nxtask: interrupted: stopping what the bench started…");
            for dir in STARTED_UNDER.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                galleon_testkit::procs::kill_all_of(dir);
                let _ = std::fs::remove_dir_all(dir);
            }
            std::process::exit(130);
        }
    });
}

/// A release build of galleon, a home with its daemon on it, and a work directory: what every bench with
/// a daemon starts from. Ctrl-C cleans both directories up.
pub fn release_home() -> anyhow::Result<(PathBuf, galleon_testkit::Home, tempfile::TempDir)> {
    run("cargo", &["build", "--release", "--quiet", "-p", "galleon"])?;
    let bin = root().join("target/release/galleon");
    let home = galleon_testkit::Home::start(bin.to_str().context("a UTF-8 path to the galleon binary")?);
    let work = tempfile::tempdir()?;
    clean_on_interrupt(home.path());
    clean_on_interrupt(work.path());
    Ok((bin, home, work))
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

/// The OS-disk timings the runtime logged so far, in log order; there must be `expected` of them.
fn disk_timings(home: &galleon_testkit::Home, expected: u32) -> anyhow::Result<Vec<f64>> {
    let log = std::fs::read_to_string(home.path().join("serve.log"))?;
    let ms: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("made a fresh OS disk"))
        .filter_map(|l| l.split("ms=").nth(1)?.split_whitespace().next()?.trim_matches('"').parse().ok())
        .collect();
    if ms.len() != expected as usize {
        bail!("found {} OS disk timings in the daemon's log, not {expected}", ms.len());
    }
    Ok(ms)
}

/// Waits until every instance of `vmss` answers `/health` on its own address; returns how many run.
fn check_running(home: &galleon_testkit::Home, vmss: &str, count: u32) -> anyhow::Result<String> {
    let ips = home.ok(&["vmss", "list-instances", "-n", vmss, "--query", "[].privateIpAddress", "-o", "tsv"]);
    let ips: Vec<&str> = ips.split_whitespace().collect();
    if ips.len() != count as usize {
        bail!("{} instances listed, not {count}", ips.len());
    }
    for ip in &ips {
        let url = format!("http://{ip}:8080/health");
        galleon_testkit::wait_until(Duration::from_secs(60), &format!("{url} answers"), || {
            galleon_testkit::http::get(&url).is_ok_and(|(s, _)| s == 200)
        });
    }
    let q = "length([?powerState=='VM running'])";
    Ok(home.ok(&["vmss", "list-instances", "-n", vmss, "--query", q, "-o", "tsv"]).trim().to_string())
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
    let (bin, home, work) = release_home()?;
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

    // One at a time: each `scale` returns once its new instance runs, so each OS disk is made alone.
    home.ok(&[
        "vmss",
        "create",
        "-n",
        "seq",
        "--image",
        "g/web/1.0.0",
        "--instance-count",
        "0",
        "--data-disk-sizes-gb",
        "1",
    ]);
    let t = Instant::now();
    for n in 1..=COUNT {
        home.ok(&["vmss", "scale", "-n", "seq", "--new-capacity", &n.to_string()]);
    }
    let sequential = t.elapsed();
    let one_at_a_time = disk_timings(&home, COUNT)?;
    check_running(&home, "seq", COUNT)?;
    home.ok(&["vmss", "delete", "-n", "seq"]);

    // All at once: 50 OS disks copied concurrently on this machine's cores.
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
    let running = check_running(&home, "bench", COUNT)?;
    let serving = t.elapsed();
    let all = disk_timings(&home, 2 * COUNT)?;
    let concurrent: Vec<f64> = all.iter().copied().skip(COUNT as usize).collect();
    let mut sorted = one_at_a_time.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mut conc = concurrent.clone();
    conc.sort_by(|a, b| a.total_cmp(b));
    let median = percentile(&sorted, 0.5);
    let body = format!(
        "## Instances: 50 instances of a 20 MB image\n\n\
         Command: `cargo xtask bench instances` (release build; {machine}).\n\n\
         | measure | value |\n|---|---|\n\
         | image | {size_mb:.1} MB in 4 files (the sample app's binary, its data, a page, `start`) |\n\
         | OS disk ready, one instance at a time (copy out of the store + swap), median | **{median:.1} ms** (target < 100 ms) |\n\
         | the same, p90 / max | {p90:.1} ms / {max:.1} ms |\n\
         | 50 instances added one by one (`vmss scale` +1, each returning once it runs) | {seq:.2} s ({per_seq:.0} ms per instance) |\n\
         | 50 instances at once: `vmss create --instance-count 50` returned after | {created:.2} s ({per_create:.0} ms per instance) |\n\
         | 50 at once: every instance answering `/health` after | {serving:.2} s; {running} of {COUNT} running |\n\
         | 50 at once: OS disk per instance, median (50 copies sharing 2 cores) | {conc_median:.1} ms |\n\n\
         The OS disk is a fresh copy of the image's files out of the content-addressed store (`copy_file_range`; \
         this file system cannot reflink), never hard links. The OS-disk times are the runtime's own, from its log.",
        machine = machine(),
        size_mb = size as f64 / 1e6,
        p90 = percentile(&sorted, 0.9),
        max = sorted.last().copied().unwrap_or(0.0),
        seq = sequential.as_secs_f64(),
        per_seq = sequential.as_secs_f64() * 1000.0 / f64::from(COUNT),
        created = created.as_secs_f64(),
        per_create = created.as_secs_f64() * 1000.0 / f64::from(COUNT),
        serving = serving.as_secs_f64(),
        conc_median = percentile(&conc, 0.5),
    );
    println!("{body}");
    home.ok(&["vmss", "delete", "-n", "bench"]);
    write_section("instances", &body)?;
    if median >= 100.0 {
        bail!("the median OS disk took {median:.1} ms, above the 100 ms target");
    }
    Ok(())
}
