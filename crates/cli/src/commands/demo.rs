//! `galleon demo`: seed 003's whole story on this machine, narrated with the commands a user would type.
//!
//! It starts a control plane in a temporary home (or `--home`), builds the sample app's v1 and v2 from
//! the templates in `examples/`, runs a scale set of 3 behind a load balancer with an HTTP probe, shows
//! responses through the frontend, upgrades one instance (the canary) and shows v1 and v2 interleaving,
//! then finishes with a rolling upgrade — while a client sends requests throughout and counts failures.
//! Every step is a real `galleon` invocation. At the end, and on Ctrl-C, it stops every process it
//! started (`galleon shutdown`) and removes the temporary home.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::context::Out;
use crate::error::{CliError, CliResult};

const V1_TEMPLATE: &str = include_str!("../../../../examples/sample-app-v1.json");
const V2_TEMPLATE: &str = include_str!("../../../../examples/sample-app-v2.json");
/// The load balancer's frontend port (its address is the home's own, so any port is free).
const PORT: u16 = 8000;

struct Demo {
    exe: PathBuf,
    home: PathBuf,
    work: PathBuf,
    temporary: bool,
    daemon: Option<Child>,
    color: bool,
}

impl Demo {
    fn say(&self, text: &str) {
        println!("{text}");
    }

    fn step(&self, n: u32, title: &str) {
        let t = if self.color { format!("\x1b[1m{n}. {title}\x1b[0m") } else { format!("{n}. {title}") };
        println!("\n{t}");
    }

    /// Runs `galleon ARGS` as a user would, showing the command (and its output when `show`).
    fn run(&self, args: &[&str], show: bool) -> CliResult<String> {
        let shown: Vec<String> = args
            .iter()
            .map(|a| if a.contains(' ') || a.contains('*') || a.is_empty() { format!("'{a}'") } else { a.to_string() })
            .collect();
        let cmd = format!("   $ galleon {}", shown.join(" "));
        println!("{}", if self.color { format!("\x1b[36m{cmd}\x1b[0m") } else { cmd });
        let out = Command::new(&self.exe)
            .args(args)
            .env("GALLEON_HOME", &self.home)
            .stdin(Stdio::null())
            .stderr(if show { Stdio::inherit() } else { Stdio::piped() })
            .stdout(Stdio::piped())
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if show {
            for line in stdout.lines() {
                println!("     {line}");
            }
        }
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(CliError::new(format!("the demo step `galleon {}` failed: {}", args.join(" "), err.trim())));
        }
        Ok(stdout)
    }

    fn start_daemon(&mut self) -> CliResult<()> {
        let log = std::fs::File::create(self.work.join("serve.log"))?;
        let child = Command::new(&self.exe)
            .args(["serve", "--home"])
            .arg(&self.home)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.daemon = Some(child);
        let socket = self.home.join("galleon.sock");
        let start = Instant::now();
        while !(socket.exists() && self.quiet(&["group", "list"]).is_ok()) {
            if start.elapsed() > Duration::from_secs(20) {
                return Err(CliError::new(format!(
                    "the daemon did not start (see {})",
                    self.work.join("serve.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn quiet(&self, args: &[&str]) -> CliResult<String> {
        let out = Command::new(&self.exe).args(args).env("GALLEON_HOME", &self.home).stdin(Stdio::null()).output()?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(CliError::new(String::from_utf8_lossy(&out.stderr).trim().to_string()))
        }
    }

    /// Stops everything of the home, then removes it if it was the demo's own.
    fn clean_up(&mut self) {
        if self.home.join("galleon.sock").exists() {
            let _ = Command::new(&self.exe)
                .arg("shutdown")
                .env("GALLEON_HOME", &self.home)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.home);
            let _ = std::fs::remove_dir_all(&self.work);
        }
    }
}

/// GET `/` through the frontend on a new connection: the page's title, or why not.
fn title(addr: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    write!(s, "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
    if !buf.starts_with("HTTP/1.1 200") {
        return Err(buf.lines().next().unwrap_or("no answer").to_string());
    }
    let page = buf.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    let h1 = page.split("<h1>").nth(1).and_then(|s| s.split("</h1>").next()).unwrap_or("?");
    let version = page.split("<p>").nth(1).and_then(|s| s.split("</p>").next()).unwrap_or("");
    Ok(format!("{h1} ({version})"))
}

/// A client sending requests through the load balancer until stopped, on keep-alive and new connections,
/// counting every failure.
struct Client {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Client {
    fn start(addr: &str) -> Client {
        let (stop, sent, failed) =
            (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let mut threads = vec![];
        for keep in [true, false] {
            let (stop, sent, failed, addr) = (stop.clone(), sent.clone(), failed.clone(), addr.to_string());
            threads.push(std::thread::spawn(move || {
                let mut conn: Option<BufReader<TcpStream>> = None;
                while !stop.load(Ordering::Relaxed) {
                    let ok = (|| -> Result<(), String> {
                        if conn.is_none() || !keep {
                            let s = TcpStream::connect(&addr).map_err(|e| e.to_string())?;
                            s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
                            conn = Some(BufReader::new(s));
                        }
                        let c = conn.as_mut().ok_or("no connection")?;
                        write!(c.get_mut(), "GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n")
                            .map_err(|e| e.to_string())?;
                        let mut status = String::new();
                        c.read_line(&mut status).map_err(|e| e.to_string())?;
                        let mut len = 0usize;
                        loop {
                            let mut h = String::new();
                            c.read_line(&mut h).map_err(|e| e.to_string())?;
                            if h.trim().is_empty() {
                                break;
                            }
                            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0u8; len];
                        c.read_exact(&mut body).map_err(|e| e.to_string())?;
                        if status.starts_with("HTTP/1.1 200") { Ok(()) } else { Err(status) }
                    })();
                    sent.fetch_add(1, Ordering::Relaxed);
                    if ok.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                        conn = None;
                    }
                    std::thread::sleep(Duration::from_millis(40));
                }
            }));
        }
        Client { stop, sent, failed, threads }
    }

    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        (self.sent.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }
}

pub fn run(home: Option<&Path>) -> CliResult<Out> {
    let exe = std::env::current_exe()?;
    let (home, temporary) = match home {
        Some(h) => (h.to_path_buf(), false),
        None => (std::env::temp_dir().join(format!("galleon-demo-{}", std::process::id())), true),
    };
    let work = std::env::temp_dir().join(format!("galleon-demo-{}-files", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let mut demo = Demo { exe, home, work, temporary, daemon: None, color: std::io::stdout().is_terminal() };
    // Ctrl-C: stop everything the demo started, then leave.
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let (home2, exe2, work2, temp2) = (demo.home.clone(), demo.exe.clone(), demo.work.clone(), demo.temporary);
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        if rt.block_on(tokio::signal::ctrl_c()).is_ok() {
            flag.store(true, Ordering::SeqCst);
            eprintln!("\nInterrupted: stopping everything the demo started…");
            let _ = Command::new(&exe2)
                .arg("shutdown")
                .env("GALLEON_HOME", &home2)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if temp2 {
                let _ = std::fs::remove_dir_all(&home2);
                let _ = std::fs::remove_dir_all(&work2);
            }
            std::process::exit(130);
        }
    });
    let result = story(&mut demo);
    if interrupted.load(Ordering::SeqCst) {
        // The interrupt handler is cleaning up and will exit with 130; a step that failed because the
        // home was being stopped is not the demo's error.
        loop {
            std::thread::park();
        }
    }
    {
        demo.step(12, "Clean up: every process the demo started is stopped");
        demo.say(&format!("   $ galleon shutdown --home {}", demo.home.display()));
        demo.clean_up();
    }
    result
}

fn story(demo: &mut Demo) -> CliResult<Out> {
    demo.say("galleon demo: seed 003's canary, then a rolling upgrade, on real processes behind a real load balancer.");
    demo.say(&format!("Home: {}{}", demo.home.display(), if demo.temporary { " (removed at the end)" } else { "" }));

    demo.step(1, "Start the control plane (it starts the data plane; instances outlive both)");
    demo.say(&format!("   $ galleon serve --home {} &", demo.home.display()));
    demo.start_daemon()?;

    demo.step(2, "A resource group, a gallery and an image definition");
    demo.run(&["group", "create", "-n", "rg", "-o", "none"], false)?;
    demo.run(&["configure", "--defaults", "group=rg"], false)?;
    demo.run(&["sig", "create", "--gallery-name", "g", "-o", "none"], false)?;
    demo.run(
        &[
            "sig",
            "image-definition",
            "create",
            "--gallery-name",
            "g",
            "--gallery-image-definition",
            "web",
            "--publisher",
            "galleon",
            "--offer",
            "demo",
            "--sku",
            "v1",
            "--os-type",
            "Linux",
            "-o",
            "none",
        ],
        false,
    )?;

    demo.step(3, "Build version 1.0.0 of the sample app from a Packer-style template, and publish it");
    let (v1, v2) = (demo.work.join("sample-app-v1.json"), demo.work.join("sample-app-v2.json"));
    std::fs::write(&v1, V1_TEMPLATE)?;
    std::fs::write(&v2, V2_TEMPLATE)?;
    let binary = format!("galleon_binary={}", demo.exe.display());
    demo.run(&["image", "build", "--template", &v1.to_string_lossy(), "-var", &binary], false)?;
    demo.run(
        &[
            "sig",
            "image-version",
            "list",
            "-r",
            "g",
            "-i",
            "web",
            "--query",
            "[].{version: name, digest: galleon.digest}",
            "-o",
            "table",
        ],
        true,
    )?;

    demo.step(4, "A scale set of 3 behind a load balancer with an HTTP probe");
    demo.run(
        &[
            "vmss",
            "create",
            "-n",
            "web",
            "--image",
            "g/web/1.0.0",
            "--instance-count",
            "3",
            "--lb",
            "webLB",
            "--backend-port",
            "8080",
            "--data-disk-sizes-gb",
            "1",
            "-o",
            "none",
        ],
        false,
    )?;
    demo.run(
        &[
            "network",
            "lb",
            "probe",
            "create",
            "--lb-name",
            "webLB",
            "-n",
            "health",
            "--protocol",
            "Http",
            "--port",
            "8080",
            "--path",
            "/health",
            "--interval",
            "1",
            "--threshold",
            "2",
            "-o",
            "none",
        ],
        false,
    )?;
    let port = PORT.to_string();
    demo.run(
        &[
            "network",
            "lb",
            "rule",
            "create",
            "--lb-name",
            "webLB",
            "-n",
            "http",
            "--protocol",
            "Http",
            "--frontend-port",
            &port,
            "--backend-port",
            "8080",
            "--backend-pool-name",
            "webLBBEPool",
            "--probe",
            "health",
            "-o",
            "none",
        ],
        false,
    )?;
    let ip = demo
        .quiet(&[
            "network",
            "lb",
            "show",
            "-n",
            "webLB",
            "--query",
            "frontendIPConfigurations[0].privateIPAddress",
            "-o",
            "tsv",
        ])?
        .trim()
        .to_string();
    let addr = format!("{ip}:{PORT}");
    let start = Instant::now();
    while demo
        .quiet(&["vmss", "list-instances", "-n", "web", "--query", "length([?healthState=='Healthy'])", "-o", "tsv"])?
        .trim()
        != "3"
    {
        if start.elapsed() > Duration::from_secs(60) {
            return Err(CliError::new("the instances did not become healthy within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    demo.run(&["vmss", "list-instances", "-n", "web", "--query", "[].{instance: instanceId, address: privateIpAddress, version: storageProfile.imageReference.exactVersion, health: healthState}", "-o", "table"], true)?;

    demo.step(5, &format!("Responses through the load balancer, http://{addr}/"));
    for _ in 0..3 {
        demo.say(&format!(
            "     {}",
            title(&addr).map_err(|e| CliError::new(format!("the frontend did not answer: {e}")))?
        ));
    }
    let client = Client::start(&addr);
    demo.say("   A client now sends requests through the load balancer until the end, counting failures.");

    demo.step(6, "Version 2.0.0: one line of the page changed (seed 003's sed), built from 1.0.0");
    demo.run(&["image", "build", "--template", &v2.to_string_lossy()], false)?;
    let v2_id = demo
        .quiet(&["sig", "image-version", "show", "-r", "g", "-i", "web", "-e", "2.0.0", "--query", "id", "-o", "tsv"])?
        .trim()
        .to_string();

    demo.step(7, "The canary: the model points at 2.0.0, and only instance 0 is upgraded");
    demo.run(
        &[
            "vmss",
            "update",
            "-n",
            "web",
            "--set",
            &format!("virtualMachineProfile.storageProfile.imageReference.id={v2_id}"),
            "-o",
            "none",
        ],
        false,
    )?;
    demo.run(&["vmss", "update-instances", "-n", "web", "--instance-ids", "0"], false)?;
    demo.run(&["vmss", "list-instances", "-n", "web", "--query", "[].{instance: instanceId, latestModelApplied: latestModelApplied, version: storageProfile.imageReference.exactVersion}", "-o", "table"], true)?;

    demo.step(8, "Responses interleave: the canary and the old version answer through the same frontend");
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..9 {
        let t = title(&addr).map_err(|e| CliError::new(format!("the frontend did not answer: {e}")))?;
        demo.say(&format!("     {t}"));
        *seen.entry(t).or_default() += 1;
    }

    demo.step(9, "The rest, in health-gated batches (a rolling upgrade: at most 20% at a time)");
    demo.run(&["vmss", "rolling-upgrade", "start", "-n", "web", "--query", "{status: runningStatus.code, upgraded: progress.successfulInstanceCount, failed: progress.failedInstanceCount}", "-o", "table"], true)?;

    demo.step(10, "Every instance runs 2.0.0");
    demo.run(&["vmss", "list-instances", "-n", "web", "--query", "[].{instance: instanceId, latestModelApplied: latestModelApplied, version: storageProfile.imageReference.exactVersion, health: healthState}", "-o", "table"], true)?;
    for _ in 0..3 {
        demo.say(&format!(
            "     {}",
            title(&addr).map_err(|e| CliError::new(format!("the frontend did not answer: {e}")))?
        ));
    }
    let versions = demo.quiet(&[
        "vmss",
        "list-instances",
        "-n",
        "web",
        "--query",
        "[].storageProfile.imageReference.exactVersion",
        "-o",
        "tsv",
    ])?;

    demo.step(11, "What the client saw");
    let (sent, failed) = client.stop();
    demo.say(&format!(
        "   {sent} requests through the load balancer during the canary and the rolling upgrade: {failed} failed."
    ));
    if failed > 0 {
        return Err(CliError::new(format!("{failed} of {sent} requests failed during the demo")));
    }
    if versions.lines().any(|v| v != "2.0.0") {
        return Err(CliError::new(format!("not every instance runs 2.0.0: {}", versions.replace('\n', " "))));
    }
    if seen.len() < 2 {
        demo.say("   (the canary's responses did not come up in 9 requests this time: round robin is per request)");
    }
    Ok(Out::Nothing)
}
