//! `cargo xtask bench lb`: galleon's load balancer against nginx and HAProxy, exactly as CONTRACT §9
//! says, into the `lb` section of docs/benchmarks.md.
//!
//! Three backends are nginx serving a small static page, run as galleon instances (a scale set of 3 of
//! an image whose `start` runs nginx on `$GALLEON_PRIVATE_IP:8080`) behind a galleon load balancer with
//! an Http probe, an Http rule and a Tcp rule (`Home::lb_setup`), in a release `galleon serve` in a
//! temporary home. nginx (`proxy_pass`, keepalive upstream) and HAProxy (`mode http`, `mode tcp`) run as
//! foreground processes of ours, with their files in a temporary directory, in front of the same three
//! backends; "direct" is one backend alone. `wrk -t1 -c32 -d6s --latency` runs against each target,
//! five rounds with the targets alternating in each (the machine is noisy: medians, and the order
//! rotates so no target always follows the same one). Everything listens on loopback addresses. The
//! processes started here are ended on every way out (a Drop guard); the home's go with its `Home`.
//! `BENCH_LB_HOLD=SECONDS` prints the targets and waits that long before measuring (for profiling).

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use galleon_testkit::{Home, procs};

use crate::bench::{machine, write_section};
use crate::tools::which;

const ROUNDS: usize = 5;
const SECONDS: u64 = 6;
const WRK: [&str; 3] = ["-t1", "-c32", "--latency"];

/// The page each backend serves (small, like a health or landing page).
fn page() -> String {
    format!("<!DOCTYPE html><html><head><title>bench</title></head><body>{}</body></html>\n", "x".repeat(512))
}

/// The instance's `start`: nginx on the instance's own address, its config and files in the OS disk
/// (the shell fills in the `GALLEON_*` values when the instance starts). `/whoami` answers the instance
/// id, which `Home::lb_setup` uses to see every instance behind the Http frontend.
const START: &str = r#"#!/bin/sh
cat >"$GALLEON_OS_DISK/nginx.conf" <<CONF
user root; worker_processes 1; daemon off; pid $GALLEON_OS_DISK/nginx.pid; error_log stderr;
events { worker_connections 4096; }
http { access_log off;
  client_body_temp_path $GALLEON_OS_DISK/body; proxy_temp_path $GALLEON_OS_DISK/proxy;
  fastcgi_temp_path $GALLEON_OS_DISK/fastcgi; uwsgi_temp_path $GALLEON_OS_DISK/uwsgi; scgi_temp_path $GALLEON_OS_DISK/scgi;
  server { listen $GALLEON_PRIVATE_IP:8080;
    location / { root $GALLEON_OS_DISK/www; }
    location /health { return 200 ok; }
    location /whoami { return 200 "$GALLEON_INSTANCE_ID"; } } }
CONF
exec nginx -p "$GALLEON_OS_DISK" -e stderr -c "$GALLEON_OS_DISK/nginx.conf"
"#;

pub fn main() -> anyhow::Result<()> {
    ensure_tools()?;
    let (_, home, work) = crate::bench::release_home()?;
    let started = Instant::now();
    // nginx workers of the proxy run as nobody: they must be able to enter their directory.
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755))?;

    // The backends: three galleon instances running nginx, behind galleon's Http and Tcp rules.
    let image = work.path().join("image");
    std::fs::create_dir_all(image.join("www"))?;
    std::fs::write(image.join("www/index.html"), page())?;
    std::fs::write(image.join("start"), START)?;
    std::fs::set_permissions(image.join("start"), std::fs::Permissions::from_mode(0o755))?;
    home.gallery();
    home.ok(&[
        "sig",
        "image-version",
        "create",
        "--gallery-name",
        "g",
        "--gallery-image-definition",
        "web",
        "--gallery-image-version",
        "1.0.0",
        "--source",
        image.to_str().context("a UTF-8 path")?,
    ]);
    let lb = home.lb_setup(work.path(), 3, "g/web/1.0.0", &[]);
    let backends: Vec<SocketAddr> = (0..3)
        .map(|i| format!("{}:8080", home.ip("web", i)).parse().context("an instance address"))
        .collect::<anyhow::Result<_>>()?;

    // The others, in front of the same backends, scheduled as the data plane is.
    let own_session = dataplane_has_own_session(&home)?;
    let mut guard = Procs(Vec::new());
    let nginx_addr = free_addr()?;
    guard.0.push(nginx_proxy(&work.path().join("nginx"), nginx_addr, &backends, own_session)?);
    let (haproxy_http, haproxy_tcp) = (free_addr()?, free_addr()?);
    guard.0.push(haproxy(&work.path().join("haproxy"), haproxy_http, haproxy_tcp, &backends, own_session)?);

    let targets: Vec<(&str, SocketAddr)> = vec![
        ("galleon Http", format!("{lb}:18081").parse()?),
        ("nginx proxy_pass", nginx_addr),
        ("HAProxy mode http", haproxy_http),
        ("galleon Tcp", format!("{lb}:18080").parse()?),
        ("HAProxy mode tcp", haproxy_tcp),
        ("direct (one backend)", backends[0]),
    ];
    for (name, addr) in &targets {
        wait_listening(*addr).with_context(|| format!("{name} at {addr}"))?;
        // Warm up: connections, pools, caches.
        wrk(*addr, 1).with_context(|| format!("warming up {name}"))?;
    }
    // BENCH_LB_HOLD=SECONDS: print the targets and wait before measuring, to look at them with other tools.
    if let Some(hold) = std::env::var("BENCH_LB_HOLD").ok().and_then(|v| v.parse().ok()) {
        for (name, addr) in &targets {
            println!("{name}: http://{addr}/");
        }
        println!("home {}", home.path().display());
        std::thread::sleep(Duration::from_secs(hold));
    }
    let load_before = loadavg();
    let mut runs: Vec<Vec<Wrk>> = vec![Vec::new(); targets.len()];
    for round in 0..ROUNDS {
        for k in 0..targets.len() {
            let i = (round + k) % targets.len();
            let (name, addr) = targets[i];
            let r = wrk(addr, SECONDS).with_context(|| format!("wrk against {name}"))?;
            eprintln!("round {} {name:>22}: {:>9.0} req/s  p99 {:>7.2} ms", round + 1, r.rps, r.p99_ms);
            runs[i].push(r);
        }
    }
    let load_after = loadavg();
    let versions = format!("{}, {}", tool_version("nginx", &["-v"]), tool_version("haproxy", &["-v"]));
    drop(guard);
    let _ = home.galleon(&["shutdown"]);

    let med = |i: usize| Summary {
        rps: median(runs[i].iter().map(|r| r.rps).collect()),
        p99: median(runs[i].iter().map(|r| r.p99_ms).collect()),
        errors: runs[i].iter().map(|r| r.errors).sum(),
    };
    let summary: Vec<Summary> = (0..targets.len()).map(med).collect();
    let (g_http, nginx, g_tcp, h_tcp) = (&summary[0], &summary[1], &summary[3], &summary[4]);
    let http_ratio = g_http.rps / nginx.rps;
    let tcp_ratio = g_tcp.rps / h_tcp.rps;
    let http_met = http_ratio >= 1.0 && g_http.p99 <= nginx.p99;
    let tcp_met = tcp_ratio >= 0.9;
    let verdict = |met: bool| if met { "**met**" } else { "**MISSED**" };

    let mut body = String::new();
    let _ = write!(
        body,
        "## Load balancer: galleon against nginx and HAProxy (CONTRACT §9)\n\n\
         Command: `cargo xtask bench lb` (release build; {machine}; {versions}). Load average (1 min) \
         {load_before} when the first round started, {load_after} when the last ended: the cores are shared.\n\n\
         Three backends are nginx (one worker, `access_log off`) serving a {page} byte page, run as galleon \
         instances of a scale set behind a galleon load balancer with an Http probe. Each target gets \
         `wrk -t1 -c32 -d{SECONDS}s --latency`, {ROUNDS} rounds with the targets alternating in each; the \
         table has the medians. nginx proxies with `worker_processes auto`, an upstream with `keepalive 64`, \
         `proxy_http_version 1.1`, `proxy_set_header Connection \"\"`, `access_log off`; HAProxy runs its \
         default threads with `balance roundrobin` (and its default `http-reuse`). nginx and HAProxy run in \
         {session}, as galleon's data plane does, so the kernel's autogroup scheduling treats the proxies \
         alike.\n\n\
         | target | req/s (median) | p99 ms (median) | req/s of each round | errors |\n|---|---:|---:|---|---:|\n",
        machine = machine(),
        page = page().len(),
        session = if own_session { "sessions of their own" } else { "the bench's session (with wrk)" },
    );
    for (i, (name, _)) in targets.iter().enumerate() {
        let rounds: Vec<String> = runs[i].iter().map(|r| format!("{:.0}", r.rps)).collect();
        let _ = writeln!(
            body,
            "| {name} | {:.0} | {:.2} | {} | {} |",
            summary[i].rps,
            summary[i].p99,
            rounds.join(" · "),
            summary[i].errors
        );
    }
    let _ = write!(
        body,
        "\n| target | ratio | result |\n|---|---|---|\n\
         | galleon Http ≥ nginx `proxy_pass` (req/s), p99 no worse | {http_ratio:.2} × nginx; p99 {gp:.2} ms vs \
         {np:.2} ms | {} |\n\
         | galleon Tcp ≥ 0.9 × HAProxy `mode tcp` (req/s) | {tcp_ratio:.2} × HAProxy | {} |\n\n\
         errors: non-2xx answers and socket errors wrk counted, over all rounds. The run took {secs:.0} s after the build.",
        verdict(http_met),
        verdict(tcp_met),
        gp = g_http.p99,
        np = nginx.p99,
        secs = started.elapsed().as_secs_f64(),
    );
    println!("{body}");
    write_section("lb", &body)?;
    println!(
        "galleon Http / nginx = {http_ratio:.2}, p99 {:.2} vs {:.2} ms: target {}",
        g_http.p99,
        nginx.p99,
        if http_met { "met" } else { "MISSED" }
    );
    println!("galleon Tcp / HAProxy tcp = {tcp_ratio:.2}: target {}", if tcp_met { "met" } else { "MISSED" });
    if !http_met || !tcp_met {
        bail!("a load balancer target was missed (see above and docs/benchmarks.md)");
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct Wrk {
    rps: f64,
    p99_ms: f64,
    errors: u64,
}

struct Summary {
    rps: f64,
    p99: f64,
    errors: u64,
}

/// Processes of ours, ended however `main` leaves: SIGTERM (a killed nginx master would leave its
/// workers behind), then SIGKILL for whatever still runs after a few seconds.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &self.0 {
            procs::signal(c.id() as i32, procs::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in &mut self.0 {
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// nginx, HAProxy and wrk, from Debian's packages when one is missing.
fn ensure_tools() -> anyhow::Result<()> {
    crate::tools::ensure_packages(&[("nginx", "nginx"), ("haproxy", "haproxy"), ("wrk", "wrk")])
}

fn tool_version(tool: &str, args: &[&str]) -> String {
    let Some(exe) = which(tool) else { return format!("{tool} ?") };
    let out = Command::new(exe).args(args).output().map(|o| {
        let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        text.lines().next().unwrap_or_default().trim().to_owned()
    });
    match out {
        // "nginx version: nginx/1.22.1", "HAProxy version 2.6.12-1+deb12u1 2023/…"
        Ok(line) => line.replace("nginx version: ", "").split(' ').take(3).collect::<Vec<_>>().join(" "),
        Err(_) => format!("{tool} ?"),
    }
}

/// The session of a process (`/proc/PID/stat` field 6), if it can be read.
fn session_of(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After "pid (comm) ", whose comm may hold spaces: state, ppid, pgrp, session.
    stat.rsplit_once(')')?.1.split_whitespace().nth(3).map(str::to_owned)
}

/// Whether the home's data plane runs in a session other than ours.
fn dataplane_has_own_session(home: &Home) -> anyhow::Result<bool> {
    let dataplane = home
        .processes()
        .into_iter()
        .map(|p| p.to_string())
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).nth(1).is_some_and(|arg| arg == b"dataplane"))
        })
        .context("the home's data plane is not running")?;
    let (theirs, ours) = (session_of(&dataplane), session_of("self"));
    Ok(theirs.is_some() && theirs != ours)
}

/// The 1-minute load average.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
        if Instant::now() > deadline {
            bail!("{addr} does not listen");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Start a proxy in the same kind of session as galleon's data plane: a session of its own when the data
/// plane has one, else the bench's. With the kernel's autogroup scheduling a session shares one CPU
/// share, so a proxy in wrk's session competes with wrk while one in its own does not. (`setsid` execs
/// in place, so the child is the proxy itself.)
fn spawn(program: &str, args: &[&str], dir: &Path, own_session: bool) -> anyhow::Result<Child> {
    let exe = which(program).with_context(|| format!("{program} not found"))?;
    let log = std::fs::File::create(dir.join("output.log"))?;
    let mut cmd = match which("setsid").filter(|_| own_session) {
        Some(setsid) => {
            let mut c = Command::new(setsid);
            c.arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {program}"))
}

/// nginx as the reverse proxy to compare with (CONTRACT §9), in the foreground, files in `dir`.
fn nginx_proxy(dir: &Path, addr: SocketAddr, backends: &[SocketAddr], own_session: bool) -> anyhow::Result<Child> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let d = dir.display();
    let servers: String = backends.iter().map(|b| format!("server {b}; ")).collect();
    let conf = format!(
        "daemon off; worker_processes auto; pid {d}/nginx.pid; error_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
         upstream backends {{ {servers}keepalive 64; }}\n\
         server {{ listen {addr}; location / {{ proxy_pass http://backends; proxy_http_version 1.1;\n\
         proxy_set_header Connection \"\"; }} }} }}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let (prefix, conf, log) = (dir.display().to_string(), path.display().to_string(), format!("{d}/error.log"));
    spawn("nginx", &["-p", &prefix, "-e", &log, "-c", &conf], dir, own_session)
}

/// HAProxy with its default threads and `http-reuse`, round robin, `mode http` and `mode tcp`.
fn haproxy(
    dir: &Path,
    http: SocketAddr,
    tcp: SocketAddr,
    backends: &[SocketAddr],
    own_session: bool,
) -> anyhow::Result<Child> {
    std::fs::create_dir_all(dir)?;
    let servers: String = backends.iter().enumerate().map(|(i, b)| format!("    server b{i} {b}\n")).collect();
    let conf = format!(
        "global\n    maxconn 4096\n\
         defaults\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\
         frontend fh\n    mode http\n    bind {http}\n    default_backend bh\n\
         backend bh\n    mode http\n    balance roundrobin\n{servers}\
         frontend ft\n    mode tcp\n    bind {tcp}\n    default_backend bt\n\
         backend bt\n    mode tcp\n    balance roundrobin\n{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, conf)?;
    let (conf, pid) = (path.display().to_string(), dir.join("haproxy.pid").display().to_string());
    spawn("haproxy", &["-db", "-f", &conf, "-p", &pid], dir, own_session)
}

/// One wrk run: req/s, p99 and the errors it counted.
fn wrk(addr: SocketAddr, seconds: u64) -> anyhow::Result<Wrk> {
    let exe = which("wrk").context("wrk not found")?;
    let out = Command::new(exe).args(WRK).arg(format!("-d{seconds}s")).arg(format!("http://{addr}/")).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed ({}): {text}{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec from wrk: {text}"))?;
    let p99_ms = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .and_then(|v| duration_ms(v.trim()))
        .with_context(|| format!("no 99% latency from wrk: {text}"))?;
    // "Non-2xx or 3xx responses: N" and "Socket errors: connect A, read B, write C, timeout D".
    let non_2xx: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let socket: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map(|v| v.split(',').filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    Ok(Wrk { rps, p99_ms, errors: non_2xx + socket })
}

/// wrk's durations: `812.00us`, `2.31ms`, `1.02s`, `1.50m`.
fn duration_ms(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    match unit {
        "us" => Some(n / 1000.0),
        "ms" => Some(n),
        "s" => Some(n * 1000.0),
        "m" => Some(n * 60_000.0),
        _ => None,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
