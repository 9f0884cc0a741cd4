//! Test kit for end-to-end tests: a real `galleon serve` in a temporary home, the real CLI, and waits on
//! conditions (never fixed sleeps).
//!
//! `Home::start(bin)` starts the daemon and waits until it answers; `galleon(args)` runs the CLI against
//! it; dropping the `Home` kills every process that belongs to it (the daemon, the data plane, instances)
//! and removes the directory, so a failing test leaves nothing running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod archive;
pub mod fixtures;
pub mod http;
pub mod load;
pub mod procs;

/// A daemon in a temporary home.
pub struct Home {
    dir: tempfile::TempDir,
    bin: PathBuf,
    daemon: Option<Child>,
}

/// The result of a CLI run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Home {
    /// A fresh home with its daemon running. `bin` is the galleon binary (`env!("CARGO_BIN_EXE_galleon")`).
    pub fn start(bin: &str) -> Home {
        // Short paths: the socket path must fit in 107 bytes.
        let dir = tempfile::Builder::new().prefix("gt").tempdir_in("/tmp").expect("a temporary home");
        let mut home = Home { dir, bin: PathBuf::from(bin), daemon: None };
        home.start_daemon();
        home
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Starts `galleon serve` and waits until the API answers.
    pub fn start_daemon(&mut self) {
        assert!(self.daemon.is_none(), "the daemon is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("serve.log"))
            .expect("a log file for the daemon");
        let child = Command::new(&self.bin)
            .args(["serve", "--home"])
            .arg(self.path())
            .env("GALLEON_LOG", "info,galleon=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("galleon serve starts");
        self.daemon = Some(child);
        wait_until(Duration::from_secs(20), "the daemon answers", || self.galleon(&["group", "list"]).code == 0);
    }

    /// `kill -9` of the daemon (instances and the data plane keep running).
    pub fn kill_daemon(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM to the daemon, waiting for it to exit.
    pub fn stop_daemon(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            procs::signal(child.id() as i32, procs::TERM);
            let _ = child.wait();
        }
    }

    /// The daemon's pid, while it runs.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// Runs `galleon ARGS` against this home.
    pub fn galleon(&self, args: &[&str]) -> Run {
        let out = Command::new(&self.bin)
            .args(args)
            .env("GALLEON_HOME", self.path())
            .env_remove("GALLEON_DEFAULTS_GROUP")
            .stdin(Stdio::null())
            .output()
            .expect("the galleon CLI runs");
        Run::from(out)
    }

    /// Runs `galleon ARGS`, which must succeed; returns its stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.galleon(args);
        assert_eq!(r.code, 0, "`galleon {}` failed ({}):\n{}{}", args.join(" "), r.code, r.stderr, self.log_tail());
        r.stdout
    }

    /// Runs `galleon ARGS`, which must fail with one `ERROR:` line on stderr (after any `WARNING:`
    /// lines); returns the run.
    #[track_caller]
    pub fn fails(&self, args: &[&str]) -> Run {
        let r = self.galleon(args);
        assert_ne!(r.code, 0, "`galleon {}` should have failed but printed:\n{}", args.join(" "), r.stdout);
        let lines: Vec<&str> = r.stderr.trim_end().lines().filter(|l| !l.starts_with("WARNING: ")).collect();
        assert_eq!(lines.len(), 1, "`galleon {}` must say one ERROR line: {:?}", args.join(" "), r.stderr);
        assert!(lines[0].starts_with("ERROR: "), "no `ERROR:` line for `galleon {}`: {:?}", args.join(" "), r.stderr);
        r
    }

    /// `galleon ARGS -o json` parsed.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.ok(&all);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("`galleon {}` printed no JSON ({e}): {out}", args.join(" ")))
    }

    /// The last lines of the daemon's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.path().join("serve.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!("\n--- daemon log (tail) ---\n{tail}\n")
    }

    /// Every process that belongs to this home (by environment, command line or working directory).
    pub fn processes(&self) -> Vec<i32> {
        procs::of_home(self.path())
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        self.kill_daemon();
        procs::kill_all_of(self.path());
    }
}

/// Polls `cond` every 50 ms until it holds; panics naming `what` after `timeout`.
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Like `wait_until`, but returns whether the condition came true instead of panicking.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Recursive size in bytes of the blocks a directory uses (like `du`).
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        total += meta.blocks() * 512;
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(&p)
        {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    total
}
