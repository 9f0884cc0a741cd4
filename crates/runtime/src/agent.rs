//! The per-instance agent (`galleon agent DIR`), galleon's waagent: one process per running instance that
//! runs the CustomScript once per OS disk, then the entrypoint; restarts the entrypoint with backoff when
//! it exits by itself; caps the logs; and on SIGTERM/SIGINT stops the instance's processes (SIGTERM,
//! grace, SIGKILL) and exits. It reports everything in `agent.json`.
//!
//! It does not decide *what* runs (that is `launch.json`, written by the runtime) nor *whether* the
//! instance should run (the control plane decides; the runtime signals).
//!
//! One thread, one loop: SIGTERM, SIGINT and SIGCHLD are blocked and read from a signalfd; the loop
//! polls it (and a pipe the download thread pokes when it is done) with a timeout that is the next
//! deadline (restart, SIGKILL, log check). The agent is a child subreaper, so orphans of the instance are
//! re-parented to it, and it reaps every child with `waitpid(-1)` — nothing is left a zombie while it
//! lives, whatever PID 1 does.
//!
//! The protected command is read from `protected.json`, handed to `/bin/sh -c`, and otherwise never
//! leaves memory: no log line, status or error message contains a command.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill, killpg};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::layout::InstanceDir;
use crate::state::{self, AgentState, Launch, ProcRef, Protected, ScriptStatus};
use crate::{AgentTuning, EXITS_KEPT, Exit, Phase, Provisioned, customscript, logs, now_ms, procfs, spawn};

/// How often a stopping agent looks whether the instance's processes are gone.
const STOP_TICK: Duration = Duration::from_millis(20);
/// How long after SIGKILL the agent waits for the processes to vanish before it gives up.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Runs the agent of the instance in `dir` until it is stopped. Returns the process exit status: 0 after
/// a clean stop, 1 when processes outlived SIGKILL, 2 when the agent could not start at all.
///
/// Call it from the main thread before anything starts another thread (no tokio runtime, no tracing
/// subscriber with a worker): the agent blocks SIGTERM/SIGINT/SIGCHLD in its own thread only, and a
/// thread that existed before would take a SIGTERM with the default action — killing the agent without
/// stopping the instance. It writes its diagnostics to stderr (the runtime points that at `agent.log`).
pub fn agent_main(dir: &Path) -> i32 {
    match Agent::new(InstanceDir::new(dir.to_path_buf())) {
        Ok(agent) => agent.run(),
        Err(e) => {
            log(&format!("cannot start: {e}"));
            2
        }
    }
}

/// One line in `agent.log` (the agent's stderr). Never panics: a full disk must not kill the agent.
fn log(message: &str) {
    let _ = writeln!(io::stderr(), "{} agent[{}]: {message}", jiff::Timestamp::now(), std::process::id());
}

/// A child the agent started: the leader of its own session and process group.
#[derive(Clone, Debug)]
struct Proc {
    pid: u32,
    start_time: u64,
    started: Instant,
    started_ms: i64,
}

impl Proc {
    fn as_ref(&self) -> ProcRef {
        ProcRef { pid: self.pid, start_time: self.start_time }
    }
}

enum Mode {
    Starting,
    /// The fileUris are being fetched on a worker thread, which answers here (and pokes the wake pipe).
    Downloading(Receiver<Result<(), String>>),
    Scripting(Proc),
    ProvisioningFailed,
    Running(Proc),
    BackingOff {
        until: Instant,
    },
    Stopping(Stop),
    Stopped,
}

struct Stop {
    /// What ran when the stop began, kept in agent.json so a runtime that has to SIGKILL a stuck agent
    /// still finds the groups.
    app: Option<Proc>,
    script: Option<Proc>,
    kill_at: Instant,
    give_up_at: Instant,
    killed: bool,
}

impl Stop {
    fn groups(&self) -> Vec<u32> {
        self.app.iter().chain(&self.script).map(|p| p.pid).collect()
    }
}

/// Restart delays: `initial`, doubling per exit up to `max`; a run that lasted `reset_after` starts the
/// sequence again.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    reset_after: Duration,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(tuning: &AgentTuning) -> Self {
        Backoff {
            initial: tuning.backoff_initial,
            max: tuning.backoff_max,
            reset_after: tuning.backoff_reset_after,
            failures: 0,
        }
    }

    /// The delay before the next start, after a run that lasted `uptime`.
    pub(crate) fn next(&mut self, uptime: Duration) -> Duration {
        if uptime >= self.reset_after {
            self.failures = 0;
        }
        let delay = self.initial.saturating_mul(2u32.saturating_pow(self.failures)).min(self.max);
        self.failures = self.failures.saturating_add(1);
        delay
    }
}

/// The shell line that runs `entrypoint` from the OS disk: `start` means `./start` when the OS disk has
/// such a file (a bare word would otherwise be looked up in PATH), and `exec` makes the entrypoint itself
/// the session leader whose exit the agent sees.
pub(crate) fn entry_command(entrypoint: &str, os: &Path) -> String {
    let line = entrypoint.trim();
    let first = line.split_whitespace().next().unwrap_or_default();
    if !first.is_empty() && !first.contains('/') && os.join(first).is_file() {
        format!("exec ./{line}")
    } else {
        format!("exec {line}")
    }
}

struct Agent {
    dir: InstanceDir,
    launch: Launch,
    tuning: AgentTuning,
    /// The CustomScript's command (possibly protected): only ever passed to `/bin/sh -c`.
    command: Option<String>,
    /// The agent's own environment plus the instance's variables: what every child gets.
    env: BTreeMap<OsString, OsString>,
    marker: Option<Vec<u8>>,
    me: ProcRef,
    signals: SignalFd,
    wake_rx: File,
    wake_tx: File,
    mode: Mode,
    backoff: Backoff,
    starts: u64,
    exits: VecDeque<Exit>,
    custom_script: Option<Provisioned>,
    next_log_check: Instant,
}

fn pid_of(pid: u32) -> Option<Pid> {
    // Never 0 or 1: kill(0) would signal our own group, kill(-1) everything we may signal.
    (pid > 1).then(|| Pid::from_raw(pid.cast_signed()))
}

fn signal_group(pgid: u32, sig: Signal) {
    if let Some(p) = pid_of(pgid) {
        let _ = killpg(p, sig);
    }
}

fn signal_pid(pid: u32, sig: Signal) {
    if let Some(p) = pid_of(pid) {
        let _ = kill(p, sig);
    }
}

impl Agent {
    fn new(dir: InstanceDir) -> Result<Agent, String> {
        // First of all: from here on these signals queue for the signalfd instead of killing us or being
        // lost. Children get an empty mask again (`spawn`).
        let mut mask = SigSet::empty();
        for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
            mask.add(sig);
        }
        mask.thread_block().map_err(|e| format!("cannot block signals: {e}"))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| format!("cannot make a signalfd: {e}"))?;
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            // Not fatal: orphans then go to PID 1, and stop still finds them by group and environment.
            log(&format!("cannot become a child subreaper: {e}"));
        }

        let launch: Launch = state::read_json(&dir.launch())
            .map_err(|e| format!("cannot read {}: {e}", dir.launch().display()))?
            .ok_or_else(|| format!("{} is missing", dir.launch().display()))?;
        let command = match &launch.custom_script {
            None => None,
            Some(script) => match &script.command {
                Some(c) => Some(c.clone()),
                None => {
                    let protected: Protected = state::read_json(&dir.protected())
                        .map_err(|e| format!("cannot read {}: {e}", dir.protected().display()))?
                        .ok_or_else(|| format!("{} is missing", dir.protected().display()))?;
                    Some(protected.command)
                }
            },
        };
        let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
        env.extend(launch.env.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))));

        let pid = std::process::id();
        let start_time = procfs::start_time(pid).ok_or("cannot read the agent's own start time")?;
        let (wake_rx, wake_tx) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(|e| format!("cannot make a pipe: {e}"))?;
        std::fs::create_dir_all(dir.logs()).map_err(|e| format!("cannot create {}: {e}", dir.logs().display()))?;

        let tuning = launch.tuning();
        Ok(Agent {
            marker: launch.marker(),
            backoff: Backoff::new(&tuning),
            next_log_check: Instant::now() + tuning.log_check_interval,
            dir,
            launch,
            tuning,
            command,
            env,
            me: ProcRef { pid, start_time },
            signals,
            wake_rx: File::from(wake_rx),
            wake_tx: File::from(wake_tx),
            mode: Mode::Starting,
            starts: 0,
            exits: VecDeque::new(),
            custom_script: None,
        })
    }

    fn run(mut self) -> i32 {
        self.save();
        log("started");
        self.begin();
        loop {
            if let Some(code) = self.step() {
                return code;
            }
        }
    }

    /// One turn of the loop: wait for a signal, a finished download or the next deadline; handle all.
    fn step(&mut self) -> Option<i32> {
        let timeout = self.timeout(Instant::now());
        let mut fds = [
            PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.wake_rx.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                // Cannot happen with valid fds; sleeping keeps a broken poll from spinning.
                log(&format!("poll failed: {e}"));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // Stop requests first, so an app exit that races with SIGTERM is not restarted.
        self.read_signals();
        self.reap();
        self.check_download();
        self.on_time(Instant::now())
    }

    fn timeout(&self, now: Instant) -> PollTimeout {
        let mut wake = self.next_log_check;
        match &self.mode {
            Mode::BackingOff { until } => wake = wake.min(*until),
            Mode::Stopping(_) => wake = wake.min(now + STOP_TICK),
            _ => {}
        }
        // Rounded up: a timeout truncated to 0 ms would spin until the deadline.
        let wait = wake.saturating_duration_since(now) + Duration::from_micros(999);
        PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX)
    }

    fn read_signals(&mut self) {
        let mut stop = false;
        loop {
            match self.signals.read_signal() {
                Ok(Some(info)) => {
                    let signo = i32::try_from(info.ssi_signo).unwrap_or(0);
                    if signo == Signal::SIGTERM as i32 || signo == Signal::SIGINT as i32 {
                        stop = true;
                    }
                    // SIGCHLD needs nothing here: `reap` runs after every wake-up.
                }
                Ok(None) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log(&format!("cannot read signals: {e}"));
                    break;
                }
            }
        }
        if stop {
            self.begin_stop();
        }
    }

    /// Reaps every exited child: ours, and orphans re-parented to us as subreaper.
    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.on_exit(pid.as_raw().cast_unsigned(), Some(code), None),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.on_exit(pid.as_raw().cast_unsigned(), None, Some(sig as i32));
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => {
                    log(&format!("waitpid failed: {e}"));
                    break;
                }
            }
        }
    }

    fn on_exit(&mut self, pid: u32, code: Option<i32>, signal: Option<i32>) {
        match &self.mode {
            Mode::Running(p) if p.pid == pid => {
                let p = p.clone();
                self.app_exited(&p, code, signal);
            }
            Mode::Scripting(p) if p.pid == pid => self.script_exited(code, signal),
            // Stopping: exits are expected and the loop checks what is left. Anything else is an orphan.
            _ => {}
        }
    }

    fn check_download(&mut self) {
        // Empty the wake pipe; the channel says what happened.
        let mut buf = [0u8; 64];
        while matches!(self.wake_rx.read(&mut buf), Ok(n) if n > 0) {}
        let Mode::Downloading(rx) = &self.mode else { return };
        match rx.try_recv() {
            Err(TryRecvError::Empty) => {}
            Ok(Ok(())) => self.run_script(),
            Ok(Err(message)) => self.provisioning_failed(customscript::failed_before_command(message, now_ms())),
            Err(TryRecvError::Disconnected) => self.provisioning_failed(customscript::failed_before_command(
                "the download ended without a result".into(),
                now_ms(),
            )),
        }
    }

    fn on_time(&mut self, now: Instant) -> Option<i32> {
        if now >= self.next_log_check {
            self.check_logs();
            self.next_log_check = now + self.tuning.log_check_interval;
        }
        if matches!(self.mode, Mode::BackingOff { until } if now >= until) {
            self.start_app();
        }
        if matches!(self.mode, Mode::Stopping(_)) {
            return self.stopping_tick(now);
        }
        None
    }

    fn check_logs(&self) {
        for path in [self.dir.stdout_log(), self.dir.stderr_log(), self.dir.agent_log()] {
            match logs::rotate_if_over(&path, self.tuning.log_cap_bytes) {
                Ok(true) => log(&format!("rotated {}", path.display())),
                Ok(false) => {}
                Err(e) => log(&format!("cannot rotate {}: {e}", path.display())),
            }
        }
    }

    /// The first decision: provision, or go straight to the entrypoint.
    fn begin(&mut self) {
        let Some(script) = &self.launch.custom_script else { return self.start_app() };
        let status: Option<ScriptStatus> = state::read_json(&self.dir.script_status()).unwrap_or_else(|e| {
            log(&format!("cannot read the CustomScript status (running it again): {e}"));
            None
        });
        if let Some(s) = &status
            && s.fingerprint == script.fingerprint
        {
            self.custom_script = Some(s.result.clone());
        }
        if customscript::needs_run(status.as_ref(), &script.fingerprint) {
            self.provision();
        } else {
            self.start_app();
        }
    }

    fn provision(&mut self) {
        let Some(script) = &self.launch.custom_script else { return self.start_app() };
        log("provisioning: running the CustomScript");
        self.custom_script = None;
        let uris = script.file_uris.clone();
        let dest = self.dir.script_download();
        let timeout = self.tuning.download_timeout;
        if uris.is_empty() {
            // Nothing to fetch: just a fresh, empty working directory.
            match customscript::download_all(&[], &dest, timeout) {
                Ok(()) => self.run_script(),
                Err(e) => self.provisioning_failed(customscript::failed_before_command(e, now_ms())),
            }
            return;
        }
        let (tx, rx) = mpsc::channel();
        let wake = self.wake_tx.try_clone();
        let spawned = std::thread::Builder::new().name("download".into()).spawn(move || {
            let _ = tx.send(customscript::download_all(&uris, &dest, timeout));
            if let Ok(mut wake) = wake {
                let _ = wake.write_all(&[1]);
            }
        });
        match spawned {
            Ok(_) => {
                self.mode = Mode::Downloading(rx);
                self.save();
            }
            Err(e) => self.provisioning_failed(customscript::failed_before_command(
                format!("cannot start the download: {e}"),
                now_ms(),
            )),
        }
    }

    fn run_script(&mut self) {
        let Some(command) = self.command.clone() else {
            return self.provisioning_failed(customscript::failed_before_command("no command".into(), now_ms()));
        };
        let outputs =
            File::create(self.dir.script_stdout()).and_then(|o| Ok((o, File::create(self.dir.script_stderr())?)));
        let spawned = outputs.and_then(|(out, err)| self.spawn(&command, &self.dir.script_download(), out, err));
        match spawned {
            Ok(p) => {
                log(&format!("provisioning: the command runs as pid {}", p.pid));
                self.mode = Mode::Scripting(p);
                self.save();
            }
            // An io::Error from spawning names no command.
            Err(e) => self.provisioning_failed(customscript::failed_before_command(
                format!("cannot run the command: {e}"),
                now_ms(),
            )),
        }
    }

    fn script_exited(&mut self, code: Option<i32>, signal: Option<i32>) {
        let result = customscript::finished(&self.dir, code, signal, now_ms());
        if result.succeeded {
            log(&format!("provisioning: {}", result.message));
            self.record_script(result);
            self.start_app();
        } else {
            self.provisioning_failed(result);
        }
    }

    fn provisioning_failed(&mut self, result: Provisioned) {
        log(&format!("provisioning: {}; the entrypoint will not start", result.message));
        self.record_script(result);
        self.mode = Mode::ProvisioningFailed;
        self.save();
    }

    fn record_script(&mut self, result: Provisioned) {
        if let Some(script) = &self.launch.custom_script {
            let status = ScriptStatus { fingerprint: script.fingerprint.clone(), result: result.clone() };
            if let Err(e) = state::write_json(&self.dir.script_status(), &status, 0o600) {
                log(&format!("cannot write the CustomScript status: {e}"));
            }
        }
        self.custom_script = Some(result);
    }

    fn start_app(&mut self) {
        let line = entry_command(&self.launch.entrypoint, &self.dir.os());
        let outputs =
            logs::open_append(&self.dir.stdout_log()).and_then(|o| Ok((o, logs::open_append(&self.dir.stderr_log())?)));
        match outputs.and_then(|(out, err)| self.spawn(&line, &self.dir.os(), out, err)) {
            Ok(p) => {
                self.starts += 1;
                log(&format!("started the entrypoint as pid {} (start {})", p.pid, self.starts));
                self.mode = Mode::Running(p);
                self.save();
            }
            Err(e) => {
                log(&format!("cannot start the entrypoint: {e}"));
                self.record_exit(None, None, Duration::ZERO);
            }
        }
    }

    fn app_exited(&mut self, app: &Proc, code: Option<i32>, signal: Option<i32>) {
        // What the entrypoint left behind in its group goes with it (as in a container), so a restart
        // never meets a half-alive old instance holding its port.
        if !procfs::group_members(app.pid).is_empty() {
            signal_group(app.pid, Signal::SIGKILL);
        }
        let how = match (code, signal) {
            (Some(c), _) => format!("with status {c}"),
            (None, Some(s)) => format!("by signal {s}"),
            (None, None) => "without a status".into(),
        };
        log(&format!("the entrypoint (pid {}) exited {how}", app.pid));
        self.record_exit(code, signal, app.started.elapsed());
    }

    fn record_exit(&mut self, code: Option<i32>, signal: Option<i32>, uptime: Duration) {
        self.exits.push_back(Exit { at_ms: now_ms(), code, signal, uptime_ms: crate::millis(uptime) });
        while self.exits.len() > EXITS_KEPT {
            self.exits.pop_front();
        }
        let delay = self.backoff.next(uptime);
        log(&format!("restarting the entrypoint in {delay:?}"));
        self.mode = Mode::BackingOff { until: Instant::now() + delay };
        self.save();
    }

    fn begin_stop(&mut self) {
        let (app, script) = match &self.mode {
            Mode::Stopping(_) | Mode::Stopped => return,
            Mode::Running(p) => (Some(p.clone()), None),
            Mode::Scripting(p) => (None, Some(p.clone())),
            _ => (None, None),
        };
        let now = Instant::now();
        let grace = self.launch.stop_grace();
        let stop = Stop { app, script, kill_at: now + grace, give_up_at: now + grace + KILL_WAIT, killed: false };
        let groups = stop.groups();
        log(&format!("stopping (grace {grace:?})"));
        for &g in &groups {
            signal_group(g, Signal::SIGTERM);
        }
        // Processes that left the groups (their own setsid) but carry the instance's environment. Group
        // members are skipped: they already got their SIGTERM, and a second one means "hurry" to many apps.
        let in_groups = procfs::instance_processes(&groups, None);
        for pid in procfs::instance_processes(&groups, self.marker.as_deref()) {
            if in_groups.binary_search(&pid).is_err() {
                signal_pid(pid, Signal::SIGTERM);
            }
        }
        self.mode = Mode::Stopping(stop);
        self.save();
    }

    fn stopping_tick(&mut self, now: Instant) -> Option<i32> {
        let Mode::Stopping(stop) = &mut self.mode else { return None };
        let groups = stop.groups();
        let left = procfs::instance_processes(&groups, self.marker.as_deref());
        if left.is_empty() {
            return Some(self.finish_stop(0));
        }
        if now < stop.kill_at {
            return None;
        }
        if !stop.killed {
            stop.killed = true;
            log(&format!("processes {left:?} outlived the grace; SIGKILL"));
            // The groups at once, so a member forking right now cannot slip through.
            for &g in &groups {
                signal_group(g, Signal::SIGKILL);
            }
        }
        for &pid in &left {
            signal_pid(pid, Signal::SIGKILL);
        }
        if now >= stop.give_up_at {
            log(&format!("processes {left:?} outlived SIGKILL; giving up"));
            return Some(self.finish_stop(1));
        }
        None
    }

    fn finish_stop(&mut self, code: i32) -> i32 {
        self.mode = Mode::Stopped;
        self.save();
        log("stopped");
        code
    }

    fn spawn(&self, shell_command: &str, cwd: &Path, stdout: File, stderr: File) -> io::Result<Proc> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(shell_command)
            .current_dir(cwd)
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        spawn::new_session(&mut cmd);
        let child = cmd.spawn()?;
        let pid = child.id();
        // Reaped by `reap` (waitpid(-1)), never through `child`; dropping it neither waits nor kills.
        drop(child);
        // Readable even if it already exited: unreaped, it is a zombie that keeps its stat.
        let start_time = procfs::start_time(pid).unwrap_or(0);
        Ok(Proc { pid, start_time, started: Instant::now(), started_ms: now_ms() })
    }

    fn save(&self) {
        let (phase, app, script) = match &self.mode {
            Mode::Starting => (Phase::Starting, None, None),
            Mode::Downloading(_) => (Phase::Provisioning, None, None),
            Mode::Scripting(p) => (Phase::Provisioning, None, Some(p)),
            Mode::ProvisioningFailed => (Phase::ProvisioningFailed, None, None),
            Mode::Running(p) => (Phase::Running, Some(p), None),
            Mode::BackingOff { .. } => (Phase::BackingOff, None, None),
            Mode::Stopping(s) => (Phase::Stopping, s.app.as_ref(), s.script.as_ref()),
            Mode::Stopped => (Phase::Stopped, None, None),
        };
        let state = AgentState {
            agent: self.me,
            phase,
            app: app.map(Proc::as_ref),
            app_started_ms: app.map(|p| p.started_ms),
            script: script.map(Proc::as_ref),
            starts: self.starts,
            exits: self.exits.iter().cloned().collect(),
            custom_script: self.custom_script.clone(),
            updated_ms: now_ms(),
        };
        if let Err(e) = state::write_json(&self.dir.agent_state(), &state, 0o644) {
            log(&format!("cannot write {}: {e}", self.dir.agent_state().display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuning() -> AgentTuning {
        AgentTuning {
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            backoff_reset_after: Duration::from_secs(60),
            ..AgentTuning::default()
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_a_long_run() {
        let mut b = Backoff::new(&tuning());
        let quick = Duration::from_millis(10);
        let delays: Vec<u64> = (0..8).map(|_| b.next(quick).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.next(Duration::from_secs(60)), Duration::from_secs(1));
        assert_eq!(b.next(quick), Duration::from_secs(2));
        for _ in 0..100 {
            b.next(quick);
        }
        assert_eq!(b.next(quick), Duration::from_secs(60));
    }

    #[test]
    fn a_bare_word_naming_a_file_on_the_os_disk_runs_that_file() {
        let os = tempfile::tempdir().expect("tempdir");
        std::fs::write(os.path().join("start"), "").expect("write");
        assert_eq!(entry_command("start --port 80", os.path()), "exec ./start --port 80");
        assert_eq!(entry_command("  start", os.path()), "exec ./start");
        assert_eq!(entry_command("bin/app --x", os.path()), "exec bin/app --x");
        assert_eq!(entry_command("sleep 5", os.path()), "exec sleep 5");
        assert_eq!(entry_command("/usr/bin/env", os.path()), "exec /usr/bin/env");
    }
}
