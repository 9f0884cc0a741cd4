//! Side-by-side load-balancer benchmark (CONTRACT §9), for tuning the data plane by hand:
//!
//!     cargo run --release -p galleon-lb --example lbperf -- [ROUNDS] [SECONDS]
//!
//! Starts three nginx backends serving a small static page, nginx as reverse proxy (keepalive
//! upstreams), HAProxy in `mode http` and `mode tcp`, and galleon's data plane in-process with an Http
//! and a Tcp frontend; then runs `wrk -t1 -c32 -dSECONDSs --latency` against each target, ROUNDS times
//! with the targets alternating, and prints the medians of req/s and p99. Needs `nginx`, `haproxy` and
//! `wrk` (Debian packages). Loopback addresses only.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use galleon_lb::{Backend, Config, Dataplane, DataplaneOptions, Distribution, Frontend, Protocol};

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let seconds: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(6);
    for tool in ["nginx", "haproxy", "wrk"] {
        if which(tool).is_none() {
            return Err(format!("{tool} not found: apt-get install -y nginx haproxy wrk").into());
        }
    }
    let dir = std::env::temp_dir().join(format!("lbperf-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // nginx workers may run as another user: they must read the page.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    let mut children = Children(Vec::new());

    let backends: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect::<Result<_, _>>()?;
    for (i, addr) in backends.iter().enumerate() {
        children.0.push(nginx_backend(&dir.join(format!("backend{i}")), *addr, i)?);
    }
    let nginx_proxy = free_addr()?;
    children.0.push(nginx_proxy_server(&dir.join("proxy"), nginx_proxy, &backends)?);
    let (haproxy_http, haproxy_tcp) = (free_addr()?, free_addr()?);
    children.0.push(haproxy(&dir.join("haproxy"), haproxy_http, haproxy_tcp, &backends)?);

    // LBPERF_WORKERS: the data plane's worker threads, one current-thread runtime each (default one per
    // core, as `galleon dataplane` runs); 0 serves on a multi-thread runtime of LBPERF_THREADS threads.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = std::env::var("LBPERF_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(cores);
    let threads = std::env::var("LBPERF_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let runtime = if workers > 0 {
        // One thread for control and the signal handler below (which must run while main waits on wrk).
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?
    };
    // Interrupted: end the children too (Drop does not run on a signal).
    let pids: Vec<u32> = children.0.iter().map(|c| c.id()).collect();
    let tmp = dir.clone();
    runtime.spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok()?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        terminate(&pids);
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::fs::remove_dir_all(&tmp);
        std::process::exit(130);
        #[allow(unreachable_code)]
        Some(())
    });
    let dp = runtime.block_on(async { Dataplane::new(DataplaneOptions { workers, ..DataplaneOptions::default() }) });
    let frontend = |name: &str, protocol| Frontend {
        name: name.into(),
        address: [127, 0, 0, 1].into(),
        port: 0,
        protocol,
        distribution: Distribution::Default,
        idle_timeout_secs: 240,
        drain_timeout_secs: 30,
        health_gated: true,
        backends: backends
            .iter()
            .enumerate()
            .map(|(i, a)| Backend {
                key: format!("b{i}"),
                address: a.ip(),
                port: a.port(),
                health_check: None,
                in_service: true,
                weight: 1,
            })
            .collect(),
    };
    let config = Config {
        generation: 1,
        frontends: vec![frontend("http", Protocol::Http), frontend("tcp", Protocol::Tcp)],
        health_checks: vec![],
    };
    let report = runtime.block_on(dp.apply(config))?;
    let galleon_http = report.frontends[0].local_addr.ok_or("galleon http frontend not bound")?;
    let galleon_tcp = report.frontends[1].local_addr.ok_or("galleon tcp frontend not bound")?;

    let targets: Vec<(&str, SocketAddr)> = vec![
        ("galleon Http", galleon_http),
        ("nginx proxy_pass", nginx_proxy),
        ("haproxy http", haproxy_http),
        ("galleon Tcp", galleon_tcp),
        ("haproxy tcp", haproxy_tcp),
        ("direct", backends[0]),
    ];
    // LBPERF_ONLY: a comma-separated list of target names to run (e.g. "galleon Http,nginx proxy_pass").
    let targets: Vec<(&str, SocketAddr)> = match std::env::var("LBPERF_ONLY") {
        Ok(only) => targets.into_iter().filter(|(n, _)| only.split(',').any(|o| o.trim() == *n)).collect(),
        Err(_) => targets,
    };
    for (name, addr) in &targets {
        wait_listening(*addr).map_err(|e| format!("{name}: {e}"))?;
        // Warm up: connections, pools, caches.
        wrk(*addr, 1)?;
    }
    // LBPERF_HOLD=SECONDS: print the targets and wait, to measure them with other tools.
    if let Some(hold) = std::env::var("LBPERF_HOLD").ok().and_then(|v| v.parse().ok()) {
        for (name, addr) in &targets {
            println!("{name}: http://{addr}/");
        }
        println!("pid {}", std::process::id());
        std::thread::sleep(Duration::from_secs(hold));
    }
    let mut results: Vec<Vec<(f64, f64)>> = vec![Vec::new(); targets.len()];
    for round in 0..rounds {
        for (i, (name, addr)) in targets.iter().enumerate() {
            let r = wrk(*addr, seconds)?;
            eprintln!("round {} {name:>18}: {:>10.0} req/s  p99 {:>7.2} ms", round + 1, r.0, r.1);
            results[i].push(r);
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "\nmedians of {rounds} rounds, wrk -t1 -c32 -d{seconds}s");
    let _ = writeln!(out, "{:>18} {:>12} {:>10}", "target", "req/s", "p99 ms");
    for (i, (name, _)) in targets.iter().enumerate() {
        let rps = median(results[i].iter().map(|r| r.0).collect());
        let p99 = median(results[i].iter().map(|r| r.1).collect());
        let _ = writeln!(out, "{name:>18} {rps:>12.0} {p99:>10.2}");
    }
    let med = |name: &str| {
        let i = targets.iter().position(|(n, _)| *n == name)?;
        Some(median(results[i].iter().map(|r| r.0).collect()))
    };
    if let (Some(g), Some(n)) = (med("galleon Http"), med("nginx proxy_pass")) {
        let _ = writeln!(out, "galleon Http / nginx = {:.2}   (target ≥ 1.00)", g / n);
    }
    if let (Some(g), Some(h)) = (med("galleon Tcp"), med("haproxy tcp")) {
        let _ = writeln!(out, "galleon Tcp / haproxy tcp = {:.2}   (target ≥ 0.90)", g / h);
    }
    println!("{out}");
    let stats = dp.status();
    for f in &stats.frontends {
        let errors: u64 = f.backends.iter().map(|b| b.metrics.errors).sum();
        println!("galleon {}: {} unavailable, {} failed, {errors} backend errors", f.name, f.unavailable, f.failed);
    }
    drop(children);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Child processes ended on drop. SIGTERM, not SIGKILL: a killed nginx master leaves its workers behind.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        terminate(&self.0.iter().map(|c| c.id()).collect::<Vec<_>>());
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

fn terminate(pids: &[u32]) {
    let mut kill = Command::new("kill");
    kill.arg("-TERM").args(pids.iter().map(|p| p.to_string()));
    let _ = kill.stderr(Stdio::null()).status();
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]).map(|d| d.join(tool)).find(|p| p.exists())
}

fn free_addr() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

fn wait_listening(addr: SocketAddr) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{addr} does not listen").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn spawn(program: &str, args: &[&str]) -> Result<Child, Error> {
    let exe = which(program).ok_or_else(|| format!("{program} not found"))?;
    Ok(Command::new(exe).args(args).stdin(Stdio::null()).stdout(Stdio::null()).spawn()?)
}

fn nginx_common(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "daemon off; pid {d}/nginx.pid; error_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n"
    )
}

fn nginx_http_common(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n"
    )
}

/// One backend: nginx serving a small static page, one worker (like a small instance).
fn nginx_backend(dir: &Path, addr: SocketAddr, i: usize) -> Result<Child, Error> {
    std::fs::create_dir_all(dir.join("html"))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(dir.join("html"), std::fs::Permissions::from_mode(0o755))?;
    let page = format!(
        "<!DOCTYPE html><html><head><title>backend {i}</title></head><body>{}</body></html>\n",
        "x".repeat(512)
    );
    std::fs::write(dir.join("html/index.html"), page)?;
    let conf = format!(
        "worker_processes 1; {}http {{ {} keepalive_requests 100000;\n\
         server {{ listen {addr}; root {}/html; }} }}\n",
        nginx_common(dir),
        nginx_http_common(dir),
        dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    spawn("nginx", &["-p", &dir.display().to_string(), "-c", &path.display().to_string()])
}

/// nginx as the reverse proxy to compare with: keepalive upstreams, HTTP/1.1, `Connection ""`.
fn nginx_proxy_server(dir: &Path, addr: SocketAddr, backends: &[SocketAddr]) -> Result<Child, Error> {
    std::fs::create_dir_all(dir)?;
    let servers: String = backends.iter().map(|b| format!("server {b}; ")).collect();
    let conf = format!(
        "worker_processes auto; {}http {{ {} keepalive_requests 100000;\n\
         upstream backends {{ {servers} keepalive 64; }}\n\
         server {{ listen {addr}; location / {{ proxy_pass http://backends; proxy_http_version 1.1;\n\
         proxy_set_header Connection \"\"; }} }} }}\n",
        nginx_common(dir),
        nginx_http_common(dir)
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    spawn("nginx", &["-p", &dir.display().to_string(), "-c", &path.display().to_string()])
}

/// HAProxy with its default threads, round robin, in `mode http` and `mode tcp`.
fn haproxy(dir: &Path, http: SocketAddr, tcp: SocketAddr, backends: &[SocketAddr]) -> Result<Child, Error> {
    std::fs::create_dir_all(dir)?;
    let servers: String = backends.iter().enumerate().map(|(i, b)| format!("    server b{i} {b}\n")).collect();
    let conf = format!(
        "global\n    maxconn 4096\n\
         defaults\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\
         frontend fh\n    mode http\n    bind {http}\n    default_backend bh\n\
         backend bh\n    mode http\n    balance roundrobin\n    http-reuse always\n{servers}\
         frontend ft\n    mode tcp\n    bind {tcp}\n    default_backend bt\n\
         backend bt\n    mode tcp\n    balance roundrobin\n{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, conf)?;
    spawn("haproxy", &["-db", "-f", &path.display().to_string()])
}

/// (req/s, p99 ms) of one wrk run.
fn wrk(addr: SocketAddr, seconds: u64) -> Result<(f64, f64), Error> {
    let out = Command::new(which("wrk").ok_or("wrk not found")?)
        .args(["-t1", "-c32", &format!("-d{seconds}s"), "--latency", &format!("http://{addr}/")])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec from wrk: {text}"))?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| parse_duration_ms(v.trim()))
        .ok_or_else(|| format!("no 99% from wrk: {text}"))?;
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        eprintln!("wrk against {addr} saw errors:\n{text}");
    }
    Ok((rps, p99))
}

fn parse_duration_ms(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => f64::NAN,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
