//! [`ProcessRuntime`]: the control plane's side of the process runtime. It makes disks, writes
//! `launch.json` and starts the detached agent, signals it, observes it through `agent.json` plus
//! `/proc`, cleans up after an agent that died, runs `run-command` scripts and reads boot logs.
//!
//! It never supervises the entrypoint itself (the agent does), and keeps no state in memory: everything
//! it knows is re-read from the instance directory and `/proc`, so a new `ProcessRuntime` after a
//! control-plane restart sees exactly what the old one saw.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::layout::{InstanceDir, OS_NEW_PREFIX};
use crate::state::{self, AgentState, Launch, LaunchScript, Protected};
use crate::{
    AgentTuning, BootLog, CommandResult, Disks, ImageSource, InstanceKey, LaunchSpec, Observation, Phase, Runtime,
    RuntimeError, logs, millis, procfs, spawn,
};

/// How long `start` waits for the agent to report in.
const AGENT_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How much longer than the stop grace `stop` gives the agent before it kills the agent itself.
const STOP_MARGIN: Duration = Duration::from_secs(5);
/// How long processes may take to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How often waits look again.
const POLL: Duration = Duration::from_millis(10);
/// How much of a run-command's output is returned.
const COMMAND_OUTPUT_MAX: u64 = 1024 * 1024;
/// The variables of the control plane's environment that the agent (and so every instance) inherits.
const INHERITED_ENV: [&str; 3] = ["PATH", "HOME", "LANG"];
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs instances as supervised process trees under `root` (see the crate doc for the layout).
#[derive(Clone, Debug)]
pub struct ProcessRuntime {
    root: PathBuf,
    agent_program: PathBuf,
    tuning: AgentTuning,
}

impl ProcessRuntime {
    /// `agent_program` is the galleon binary; agents run as `<agent_program> agent <instance dir>`.
    pub fn new(root: PathBuf, agent_program: PathBuf) -> Self {
        ProcessRuntime { root, agent_program, tuning: AgentTuning::default() }
    }

    /// Agent knobs for instances started from now on (tests shrink log caps and backoff).
    pub fn with_tuning(mut self, tuning: AgentTuning) -> Self {
        self.tuning = tuning;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The instance's directory. Unchecked: only for the infallible, read-only calls.
    fn paths(&self, key: &InstanceKey) -> InstanceDir {
        InstanceDir::new(self.root.join(&key.scale_set).join(key.instance_id.to_string()))
    }

    /// The instance's directory, after checking that the scale-set uid is one plain path component.
    fn dir(&self, key: &InstanceKey) -> Result<InstanceDir, RuntimeError> {
        let s = key.scale_set.as_str();
        let reason = if s.is_empty() {
            Some("the scale set uid is empty")
        } else if s.len() > 200 {
            Some("the scale set uid is longer than 200 bytes")
        } else if s.starts_with('.') {
            Some("the scale set uid starts with '.'")
        } else if s.contains(['/', '\0']) {
            Some("the scale set uid contains '/' or NUL")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(RuntimeError::InvalidKey { key: key.to_string(), reason }),
            None => Ok(self.paths(key)),
        }
    }

    /// Serialises changes to one instance (between threads and between `ProcessRuntime` values).
    fn lock(&self, dir: &InstanceDir) -> Result<Flock<File>, RuntimeError> {
        let path = dir.lock();
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(RuntimeError::io("open", &path))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| RuntimeError::io("lock", &path)(io::Error::from_raw_os_error(e as i32)))
    }

    fn read_state(dir: &InstanceDir) -> Option<AgentState> {
        state::read_json(&dir.agent_state()).unwrap_or_else(|e| {
            tracing::warn!(path = %dir.agent_state().display(), "unreadable agent state, taken as none: {e}");
            None
        })
    }

    fn read_launch(dir: &InstanceDir) -> Option<Launch> {
        state::read_json(&dir.launch()).unwrap_or_else(|e| {
            tracing::warn!(path = %dir.launch().display(), "unreadable launch file, taken as none: {e}");
            None
        })
    }

    /// The instance's processes that are not its (dead) agent: the app and script groups recorded in
    /// `state`, and anything carrying the instance's environment marker.
    fn leftovers(state: Option<&AgentState>, launch: Option<&Launch>) -> (Vec<u32>, Vec<u32>) {
        let groups: Vec<u32> = state
            .into_iter()
            .flat_map(|s| s.app.iter().chain(&s.script))
            .filter(|p| procfs::group_is_ours(p.pid, p.start_time))
            .map(|p| p.pid)
            .collect();
        let marker = launch.and_then(Launch::marker);
        if groups.is_empty() && marker.is_none() {
            return (groups, Vec::new());
        }
        let pids = procfs::instance_processes(&groups, marker.as_deref());
        (groups, pids)
    }

    /// SIGKILLs whatever of the instance outlived its agent and waits until it is gone.
    fn kill_leftovers(&self, key: &InstanceKey, dir: &InstanceDir) -> Result<(), RuntimeError> {
        let state = Self::read_state(dir);
        let launch = Self::read_launch(dir);
        let (groups, pids) = Self::leftovers(state.as_ref(), launch.as_ref());
        if pids.is_empty() {
            return Ok(());
        }
        tracing::warn!(instance = %key, ?pids, "killing processes that outlived the agent");
        for &g in &groups {
            if let Some(p) = pid_of(g) {
                let _ = killpg(p, Signal::SIGKILL);
            }
        }
        let deadline = Instant::now() + KILL_WAIT;
        loop {
            let (_, left) = Self::leftovers(state.as_ref(), launch.as_ref());
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RuntimeError::Unkillable { key: key.clone(), pids: left });
            }
            for &pid in &left {
                if let Some(p) = pid_of(pid) {
                    let _ = kill(p, Signal::SIGKILL);
                }
            }
            std::thread::sleep(POLL);
        }
    }

    fn agent_alive(state: Option<&AgentState>) -> bool {
        state.is_some_and(|s| s.agent.is_alive())
    }

    fn write_launch_files(&self, key: &InstanceKey, dir: &InstanceDir, spec: &LaunchSpec) -> Result<(), RuntimeError> {
        let invalid = |reason: String| RuntimeError::InvalidSpec { key: key.clone(), reason };
        if spec.entrypoint.trim().is_empty() {
            return Err(invalid("the entrypoint is empty".into()));
        }
        for (k, v) in &spec.env {
            if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
                return Err(invalid(format!("environment variable {k:?} is not a valid name or value")));
            }
        }
        let mut env = spec.env.clone();
        env.entry(state::OS_DISK_VAR.into()).or_insert_with(|| dir.os().to_string_lossy().into_owned());
        match &spec.custom_data {
            Some(data) => {
                state::write_atomic(&dir.custom_data(), data, 0o600)
                    .map_err(RuntimeError::io("write", &dir.custom_data()))?;
                env.insert(state::CUSTOM_DATA_VAR.into(), dir.custom_data().to_string_lossy().into_owned());
            }
            None => {
                env.remove(state::CUSTOM_DATA_VAR);
                state::remove_if_exists(&dir.custom_data()).map_err(RuntimeError::io("remove", &dir.custom_data()))?;
            }
        }
        let script = spec.custom_script.as_ref().map(|s| LaunchScript {
            file_uris: s.file_uris.clone(),
            command: (!s.command_is_secret).then(|| s.command.clone()),
            fingerprint: s.fingerprint.clone(),
        });
        match &spec.custom_script {
            Some(s) if s.command_is_secret => {
                state::write_json(&dir.protected(), &Protected { command: s.command.clone() }, 0o600)
                    .map_err(RuntimeError::io("write", &dir.protected()))?;
            }
            _ => state::remove_if_exists(&dir.protected()).map_err(RuntimeError::io("remove", &dir.protected()))?,
        }
        let t = &self.tuning;
        let launch = Launch {
            env,
            entrypoint: spec.entrypoint.clone(),
            custom_script: script,
            stop_grace_ms: millis(spec.stop_grace),
            log_cap_bytes: t.log_cap_bytes,
            log_check_ms: millis(t.log_check_interval),
            backoff_initial_ms: millis(t.backoff_initial),
            backoff_max_ms: millis(t.backoff_max),
            backoff_reset_ms: millis(t.backoff_reset_after),
            download_timeout_ms: millis(t.download_timeout),
        };
        state::write_json(&dir.launch(), &launch, 0o600).map_err(RuntimeError::io("write", &dir.launch()))
    }

    /// `stop`, with the instance's lock held.
    fn stop_locked(&self, key: &InstanceKey, dir: &InstanceDir) -> Result<(), RuntimeError> {
        let launch = Self::read_launch(dir);
        let grace = launch.as_ref().map_or(crate::DEFAULT_STOP_GRACE, Launch::stop_grace);
        if let Some(agent) = Self::read_state(dir).map(|s| s.agent)
            && agent.is_alive()
            && let Some(pid) = pid_of(agent.pid)
        {
            let _ = kill(pid, Signal::SIGTERM);
            if !wait_for(grace + STOP_MARGIN, || !agent.is_alive()) {
                tracing::warn!(instance = %key, pid = agent.pid, "the agent did not stop in time; killing it");
                let _ = kill(pid, Signal::SIGKILL);
                if !wait_for(KILL_WAIT, || !agent.is_alive()) {
                    return Err(RuntimeError::Unkillable { key: key.clone(), pids: vec![agent.pid] });
                }
            }
        }
        // Whatever the agent did not (or could not, being dead) stop.
        self.kill_leftovers(key, dir)?;
        if let Some(mut state) = Self::read_state(dir)
            && state.phase != Phase::Stopped
        {
            // The agent is dead, so this write races with nobody.
            state.phase = Phase::Stopped;
            state.app = None;
            state.app_started_ms = None;
            state.script = None;
            state.updated_ms = crate::now_ms();
            state::write_json(&dir.agent_state(), &state, 0o644)
                .map_err(RuntimeError::io("write", &dir.agent_state()))?;
        }
        tracing::info!(instance = %key, "stopped");
        Ok(())
    }

    fn spawn_agent(&self, key: &InstanceKey, dir: &InstanceDir) -> Result<(), RuntimeError> {
        let log_path = dir.agent_log();
        let log = logs::open_append(&log_path).map_err(RuntimeError::io("open", &log_path))?;
        let log2 = log.try_clone().map_err(RuntimeError::io("open", &log_path))?;
        let mut cmd = Command::new(&self.agent_program);
        cmd.arg("agent")
            .arg(dir.root())
            .current_dir(dir.root())
            .env_clear()
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // A clean environment: the agent must not look like an instance (no GALLEON_*), nor inherit the
        // control plane's configuration.
        for name in INHERITED_ENV {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        if std::env::var_os("PATH").is_none() {
            cmd.env("PATH", DEFAULT_PATH);
        }
        spawn::new_session(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| RuntimeError::AgentStart {
            key: key.clone(),
            detail: format!("cannot run {}: {e}", self.agent_program.display()),
        })?;
        let pid = child.id();
        let deadline = Instant::now() + AGENT_START_TIMEOUT;
        loop {
            if Self::read_state(dir).is_some_and(|s| s.agent.pid == pid) {
                break;
            }
            let failed = match child.try_wait() {
                Ok(Some(status)) => Some(format!("it exited ({status})")),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    Some(format!("it did not report within {AGENT_START_TIMEOUT:?}"))
                }
                Ok(None) => None,
                Err(e) => Some(format!("cannot wait for it: {e}")),
            };
            if let Some(why) = failed {
                let tail = logs::tail_text(&log_path, 1024).unwrap_or_default();
                return Err(RuntimeError::AgentStart {
                    key: key.clone(),
                    detail: format!("{why}; agent.log: {}", tail.trim()),
                });
            }
            std::thread::sleep(POLL);
        }
        // The agent is our child until it exits; reap it then, so it does not stay a zombie (after a
        // control-plane restart, its parent is whoever adopted it).
        let reaper = std::thread::Builder::new().name(format!("agent-reaper-{pid}")).spawn(move || {
            let _ = child.wait();
        });
        if let Err(e) = reaper {
            tracing::warn!(instance = %key, "cannot start a reaper thread; the agent will stay a zombie after it exits: {e}");
        }
        Ok(())
    }
}

fn pid_of(pid: u32) -> Option<Pid> {
    // Never 0 or 1: kill(0) would signal our own group, kill(-1) everything we may signal.
    (pid > 1).then(|| Pid::from_raw(pid.cast_signed()))
}

/// Waits until `done` or `timeout`; returns whether `done`.
fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

fn remove_dir_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Puts the directory `new` in place of `current`, with no moment without one: an atomic exchange where
/// the platform has it. Afterwards `new` holds the old content (if there was any).
fn swap_in(new: &Path, current: &Path) -> io::Result<()> {
    if !current.exists() {
        return fs::rename(new, current);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
        renameat2(AT_FDCWD, new, AT_FDCWD, current, RenameFlags::RENAME_EXCHANGE)
            .map_err(|e| io::Error::from_raw_os_error(e as i32))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let old = new.with_extension("old");
        fs::rename(current, &old)?;
        fs::rename(new, current)?;
        fs::rename(&old, new)
    }
}

impl Runtime for ProcessRuntime {
    fn disks(&self, key: &InstanceKey, luns: &[u32]) -> Disks {
        let dir = self.paths(key);
        Disks { os: dir.os(), data: luns.iter().map(|&lun| (lun, dir.data(lun))).collect() }
    }

    fn make_data_disks(&self, key: &InstanceKey, luns: &[u32]) -> Result<(), RuntimeError> {
        let dir = self.dir(key)?;
        for &lun in luns {
            let path = dir.data(lun);
            // create_dir_all leaves an existing disk (and its content) alone.
            fs::create_dir_all(&path).map_err(RuntimeError::io("create", &path))?;
        }
        Ok(())
    }

    fn make_os_disk(&self, key: &InstanceKey, image: &dyn ImageSource) -> Result<(), RuntimeError> {
        let started = std::time::Instant::now();
        let dir = self.dir(key)?;
        fs::create_dir_all(dir.root()).map_err(RuntimeError::io("create", dir.root()))?;
        let _lock = self.lock(&dir)?;
        let state = Self::read_state(&dir);
        if Self::agent_alive(state.as_ref())
            || !Self::leftovers(state.as_ref(), Self::read_launch(&dir).as_ref()).1.is_empty()
        {
            return Err(RuntimeError::Running(key.clone()));
        }
        // Leftovers of a copy or swap interrupted by a crash.
        let entries = fs::read_dir(dir.root()).map_err(RuntimeError::io("list", dir.root()))?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(OS_NEW_PREFIX) {
                remove_dir_if_exists(&entry.path()).map_err(RuntimeError::io("remove", &entry.path()))?;
            }
        }
        let tmp = dir.root().join(format!("{OS_NEW_PREFIX}{}", std::process::id()));
        fs::create_dir(&tmp).map_err(RuntimeError::io("create", &tmp))?;
        if let Err(message) = image.materialize(&tmp) {
            if let Err(e) = remove_dir_if_exists(&tmp) {
                tracing::warn!(path = %tmp.display(), "cannot remove a failed OS disk copy: {e}");
            }
            return Err(RuntimeError::Image { key: key.clone(), image: image.describe(), message });
        }
        // A new disk has not run the CustomScript. Forgotten before the swap: a crash in between at worst
        // runs it again on the old disk, never skips it on the new one.
        let status = dir.script_status();
        state::remove_if_exists(&status).map_err(RuntimeError::io("remove", &status))?;
        let os = dir.os();
        swap_in(&tmp, &os).map_err(RuntimeError::io("swap in", &os))?;
        // `tmp` now holds the old disk (or nothing). Failing to remove it only wastes space until the next
        // disk is made, which removes it first.
        if let Err(e) = remove_dir_if_exists(&tmp) {
            tracing::warn!(path = %tmp.display(), "cannot remove the old OS disk: {e}");
        }
        // `ms` is what `cargo xtask bench instances` reads: OS disk ready, copy and swap included.
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(instance = %key, image = %image.describe(), ms = format!("{ms:.1}"), "made a fresh OS disk");
        Ok(())
    }

    fn start(&self, key: &InstanceKey, spec: &LaunchSpec) -> Result<(), RuntimeError> {
        let dir = self.dir(key)?;
        if !dir.os().is_dir() {
            return Err(RuntimeError::NoOsDisk(key.clone()));
        }
        let _lock = self.lock(&dir)?;
        if Self::agent_alive(Self::read_state(&dir).as_ref()) {
            return Err(RuntimeError::Running(key.clone()));
        }
        // An agent that died may have left its app running: never run two copies side by side.
        self.kill_leftovers(key, &dir)?;
        fs::create_dir_all(dir.logs()).map_err(RuntimeError::io("create", &dir.logs()))?;
        self.write_launch_files(key, &dir, spec)?;
        self.spawn_agent(key, &dir)?;
        tracing::info!(instance = %key, "started");
        Ok(())
    }

    fn stop(&self, key: &InstanceKey) -> Result<(), RuntimeError> {
        let dir = self.dir(key)?;
        if !dir.root().is_dir() {
            return Ok(());
        }
        let _lock = self.lock(&dir)?;
        self.stop_locked(key, &dir)
    }

    fn observe(&self, key: &InstanceKey) -> Observation {
        let Some(state) = Self::read_state(&self.paths(key)) else { return Observation::default() };
        let alive = state.agent.is_alive();
        let phase = match state.phase {
            Phase::Stopped => Phase::Stopped,
            phase if alive => phase,
            _ => Phase::Gone,
        };
        // A Gone instance's app may still run (it is in its own session); report it while it does.
        let app = state.app.filter(|a| phase != Phase::Stopped && a.is_alive());
        Observation {
            phase,
            agent_pid: alive.then_some(state.agent.pid),
            app_pid: app.map(|a| a.pid),
            app_started_ms: app.and(state.app_started_ms),
            starts: state.starts,
            exits: state.exits,
            custom_script: state.custom_script,
        }
    }

    fn delete(&self, key: &InstanceKey) -> Result<(), RuntimeError> {
        let dir = self.dir(key)?;
        if !dir.root().is_dir() {
            return Ok(());
        }
        // Under one lock, so nothing can start the instance between the stop and the removal.
        let lock = self.lock(&dir)?;
        self.stop_locked(key, &dir)?;
        remove_dir_if_exists(dir.root()).map_err(RuntimeError::io("remove", dir.root()))?;
        // The scale set's directory goes with its last instance; failing (not empty) is the normal case.
        drop(lock);
        let _ = fs::remove_dir(self.root.join(&key.scale_set));
        tracing::info!(instance = %key, "deleted");
        Ok(())
    }

    fn run_command(
        &self,
        key: &InstanceKey,
        script: &str,
        extra_env: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<CommandResult, RuntimeError> {
        let dir = self.dir(key)?;
        if !dir.root().is_dir() {
            return Err(RuntimeError::NotFound(key.clone()));
        }
        let launch = Self::read_launch(&dir).ok_or_else(|| RuntimeError::NeverStarted(key.clone()))?;
        let os = dir.os();
        if !os.is_dir() {
            return Err(RuntimeError::NoOsDisk(key.clone()));
        }
        // Output goes to unnamed files, not pipes: a background process left by the script would hold a
        // pipe open and make reading it hang.
        let out = tempfile::tempfile_in(dir.root()).map_err(RuntimeError::io("create a file in", dir.root()))?;
        let err = tempfile::tempfile_in(dir.root()).map_err(RuntimeError::io("create a file in", dir.root()))?;
        let clone = |f: &File| f.try_clone().map_err(RuntimeError::io("create a file in", dir.root()));
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(script)
            .current_dir(&os)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(clone(&out)?)
            .stderr(clone(&err)?);
        // The same environment the agent gives the entrypoint.
        for name in INHERITED_ENV {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        if std::env::var_os("PATH").is_none() {
            cmd.env("PATH", DEFAULT_PATH);
        }
        cmd.envs(&launch.env).envs(extra_env);
        spawn::new_group(&mut cmd);
        let mut child = cmd.spawn().map_err(RuntimeError::io("run /bin/sh in", &os))?;
        let pgid = child.id();
        let (tx, rx) = mpsc::channel::<io::Result<ExitStatus>>();
        std::thread::Builder::new()
            .name(format!("run-command-{pgid}"))
            .spawn(move || {
                let _ = tx.send(child.wait());
            })
            .map_err(RuntimeError::io("wait for /bin/sh in", &os))?;
        let (status, timed_out) = match rx.recv_timeout(timeout) {
            Ok(status) => (status, false),
            Err(_) => {
                if let Some(p) = pid_of(pgid) {
                    let _ = killpg(p, Signal::SIGKILL);
                }
                let status =
                    rx.recv_timeout(KILL_WAIT).unwrap_or_else(|_| Err(io::Error::other("did not exit after SIGKILL")));
                (status, true)
            }
        };
        let status = status.map_err(RuntimeError::io("wait for /bin/sh in", &os))?;
        let read = |mut f: File| -> Result<String, RuntimeError> {
            use std::io::{Read, Seek, SeekFrom};
            let len = f.seek(SeekFrom::End(0)).map_err(RuntimeError::io("read output in", dir.root()))?;
            f.seek(SeekFrom::Start(len.saturating_sub(COMMAND_OUTPUT_MAX)))
                .map_err(RuntimeError::io("read output in", dir.root()))?;
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).map_err(RuntimeError::io("read output in", dir.root()))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        };
        use std::os::unix::process::ExitStatusExt;
        Ok(CommandResult {
            exit_code: status.code(),
            signal: status.signal(),
            timed_out,
            stdout: read(out)?,
            stderr: read(err)?,
        })
    }

    fn boot_log(&self, key: &InstanceKey, tail_lines: Option<usize>) -> Result<BootLog, RuntimeError> {
        let dir = self.dir(key)?;
        if !dir.root().is_dir() {
            return Err(RuntimeError::NotFound(key.clone()));
        }
        let read = |p: PathBuf| logs::read_log(&p, tail_lines).map_err(RuntimeError::io("read", &p));
        Ok(BootLog { stdout: read(dir.stdout_log())?, stderr: read(dir.stderr_log())? })
    }

    fn log_paths(&self, key: &InstanceKey) -> (PathBuf, PathBuf) {
        let dir = self.paths(key);
        (dir.stdout_log(), dir.stderr_log())
    }

    fn list(&self) -> Vec<InstanceKey> {
        let mut keys = Vec::new();
        let Ok(sets) = fs::read_dir(&self.root) else { return keys };
        for set in sets.flatten() {
            let Ok(scale_set) = set.file_name().into_string() else { continue };
            if scale_set.starts_with('.') || !set.path().is_dir() {
                continue;
            }
            let Ok(instances) = fs::read_dir(set.path()) else { continue };
            for instance in instances.flatten() {
                // Canonical numbers only (`parse` also takes `+5` and `05`, which name other directories).
                let id =
                    instance.file_name().to_str().and_then(|n| n.parse::<u32>().ok().filter(|id| id.to_string() == n));
                if let Some(instance_id) = id
                    && instance.path().is_dir()
                {
                    keys.push(InstanceKey { scale_set: scale_set.clone(), instance_id });
                }
            }
        }
        keys.sort();
        keys
    }
}
