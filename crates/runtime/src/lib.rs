//! Where instances run: the [`Runtime`] trait the control plane drives, and the process runtime.
//!
//! This crate is the only code that spawns instance processes. It owns an instance's directory (OS disk,
//! data disks, logs, extension state) and its processes (the agent, the entrypoint, the CustomScript,
//! run-command). It knows nothing of scale-set models, upgrades, health or load balancers: the caller
//! decides *what* to run (a [`LaunchSpec`], an [`ImageSource`]) and *when*; this crate makes it so and
//! reports what it [`observe`](Runtime::observe)s.
//!
//! # The process runtime
//!
//! An instance is a supervised process tree. [`ProcessRuntime::start`] writes what to run into the
//! instance directory and starts a detached **agent** (`<galleon> agent <dir>`, see [`agent_main`]), like
//! Azure's VM agent: in its own session, with no parent-death signal and no `GALLEON_*` variables in its
//! own environment, so instances keep running when the control plane dies. The agent runs the
//! CustomScript once per OS disk, then the entrypoint, restarts the entrypoint with backoff, rotates logs
//! and stops everything on SIGTERM. A restarted control plane re-adopts running instances by reading
//! `agent.json` and matching the agent's pid *and* start time, so a reused pid is never taken for ours.
//!
//! ## Instance directory
//!
//! ```text
//! <root>/<scale_set_uid>/<instance_id>/
//!   os/                      the OS disk: a fresh copy of the image root; cwd of the entrypoint
//!   .os-new-<pid>/           a disk being made; after the swap, the old disk being removed
//!   data/<lun>/              data disks: survive stop, start, reimage, upgrade; go only with delete
//!   ext/CustomScript/
//!     download/              fileUris, downloaded afresh on each run; the command's cwd
//!     stdout, stderr         the command's output (of the last run)
//!     status.json            {fingerprint, result} of the last finished run; removed when the OS disk is remade
//!   logs/stdout.log(.1)      the entrypoint's output (boot diagnostics), rotated by copy-truncate
//!   logs/stderr.log(.1)
//!   launch.json    (0600)    what the agent runs: environment, entrypoint, script (never a secret), tuning
//!   protected.json (0600)    protected settings (the secret command); never logged, never in agent.json
//!   custom-data    (0600)    the custom data, exported as GALLEON_CUSTOM_DATA
//!   agent.json               the agent's state (pid + start time, phase, app pid, exits, script result),
//!                            written atomically (temp + rename) by the agent; by the runtime only once the
//!                            agent is dead
//!   agent.log                the agent's own diagnostics (its stderr)
//!   lock                     flock held by the runtime while it changes the instance
//! ```
//!
//! ## The agent's state machine ([`Phase`])
//!
//! ```text
//! Starting ──(script needed)──> Provisioning ──(exit 0)──> Running ──(app exits)──> BackingOff ─┐
//!    │                              │                         ^                                 │
//!    └──(no script / done)──────────┼─────────────────────────┴──────────(delay elapsed)────────┘
//!                                   └──(download fails / exit ≠ 0)──> ProvisioningFailed (idle)
//! any phase ──SIGTERM/SIGINT──> Stopping ──(tree gone, SIGKILL after the grace)──> Stopped (agent exits 0)
//! agent dead while not Stopped (as observed by the runtime) ─────────────────────────> Gone
//! ```

pub mod agent;
mod customscript;
mod layout;
mod logs;
pub mod process;
pub mod procfs;
mod spawn;
mod state;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use agent::agent_main;
pub use process::ProcessRuntime;
pub use spawn::new_session;

/// Names one instance: the scale set's stable uid (a directory name) and the instance id within it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey {
    pub scale_set: String,
    pub instance_id: u32,
}

impl InstanceKey {
    pub fn new(scale_set: impl Into<String>, instance_id: u32) -> Self {
        InstanceKey { scale_set: scale_set.into(), instance_id }
    }
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.scale_set, self.instance_id)
    }
}

/// Where an instance's disks are (paths only; they may not exist yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disks {
    pub os: PathBuf,
    pub data: Vec<(u32, PathBuf)>,
}

/// Makes an OS disk: writes a fresh copy of an image root into `dest` (an empty directory).
pub trait ImageSource {
    fn materialize(&self, dest: &Path) -> Result<(), String>;
    /// For errors and logs, e.g. `g/web/1.2.0 (sha256:…)`.
    fn describe(&self) -> String;
}

/// The CustomScript extension (Microsoft.Azure.Extensions CustomScript 2.0), as resolved by the caller.
#[derive(Clone, PartialEq, Eq)]
pub struct CustomScript {
    /// `file://`, `http://` and `https://` URIs, downloaded into the script's working directory.
    pub file_uris: Vec<String>,
    /// Run as `/bin/sh -c <command>`.
    pub command: String,
    /// The command came from `protectedSettings`: kept only in a 0600 file, never logged or reported.
    pub command_is_secret: bool,
    /// Changes when the settings change; a different fingerprint makes the script run again.
    pub fingerprint: String,
}

impl fmt::Debug for CustomScript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let command: &dyn fmt::Debug = if self.command_is_secret { &"<protected>" } else { &self.command };
        f.debug_struct("CustomScript")
            .field("file_uris", &self.file_uris.iter().map(|u| customscript::redact_uri(u)).collect::<Vec<_>>())
            .field("command", command)
            .field("command_is_secret", &self.command_is_secret)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// The stop grace when the caller has no opinion: SIGTERM, then SIGKILL after this long (CONTRACT §2).
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// What to run in an instance.
#[derive(Clone)]
pub struct LaunchSpec {
    /// The `GALLEON_*` variables the caller computed (INSTANCE_ID, VMSS, PRIVATE_IP, OS_DISK, DATA_DISK,
    /// `DATA_DISK_<lun>`, IMAGE_VERSION). `GALLEON_OS_DISK` is filled in from the instance's disk if absent.
    pub env: BTreeMap<String, String>,
    /// A command line; a first word without `/` that names a file in the OS disk runs that file
    /// (`start` means `./start`), otherwise it is looked up as the shell would.
    pub entrypoint: String,
    pub custom_script: Option<CustomScript>,
    /// Placed at `<dir>/custom-data`, whose path is exported as `GALLEON_CUSTOM_DATA`.
    pub custom_data: Option<Vec<u8>>,
    /// SIGTERM → wait this long → SIGKILL.
    pub stop_grace: Duration,
}

impl LaunchSpec {
    pub fn new(entrypoint: impl Into<String>) -> Self {
        LaunchSpec {
            env: BTreeMap::new(),
            entrypoint: entrypoint.into(),
            custom_script: None,
            custom_data: None,
            stop_grace: DEFAULT_STOP_GRACE,
        }
    }
}

impl fmt::Debug for LaunchSpec {
    // By hand: custom data can be large and may hold credentials (cloud-init often does).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaunchSpec")
            .field("env", &self.env)
            .field("entrypoint", &self.entrypoint)
            .field("custom_script", &self.custom_script)
            .field("custom_data", &self.custom_data.as_ref().map(|d| format!("<{} bytes>", d.len())))
            .field("stop_grace", &self.stop_grace)
            .finish()
    }
}

/// Where an instance is in its life, as its agent reports it (plus `Gone`, which only the runtime sees).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// The agent runs and has not yet decided what to do first.
    Starting,
    /// The CustomScript is downloading its files or running.
    Provisioning,
    /// The CustomScript failed; the entrypoint was not started; the agent idles until stopped.
    ProvisioningFailed,
    /// The entrypoint runs.
    Running,
    /// The entrypoint exited by itself and will be started again after a delay.
    BackingOff,
    /// The agent is stopping the instance's processes.
    Stopping,
    /// Nothing of the instance runs (also: never started).
    #[default]
    Stopped,
    /// The agent died without stopping the instance; its app may still run. `stop` cleans up.
    Gone,
}

/// One exit of the entrypoint that it made by itself (not one caused by `stop`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub uptime_ms: u64,
}

/// The outcome of the last CustomScript run on the current OS disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provisioned {
    pub succeeded: bool,
    /// `None` when the command never ran (a download failed) or was killed by a signal.
    pub exit_code: Option<i32>,
    /// One line for the instance view, e.g. `Enable failed: the command exited with status 1`.
    pub message: String,
    /// The last ~4 KB of the command's output.
    pub stdout_tail: String,
    pub stderr_tail: String,
    pub finished_at_ms: i64,
}

/// How many exits an observation keeps.
pub const EXITS_KEPT: usize = 10;

/// What the runtime sees of an instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    pub phase: Phase,
    /// The agent, when it is alive.
    pub agent_pid: Option<u32>,
    /// The entrypoint (leader of its own session and process group), when it runs.
    pub app_pid: Option<u32>,
    /// When the running entrypoint started, in milliseconds since the Unix epoch.
    pub app_started_ms: Option<i64>,
    /// How often the current agent started the entrypoint.
    pub starts: u64,
    /// The last [`EXITS_KEPT`] exits of the entrypoint, oldest first.
    pub exits: Vec<Exit>,
    pub custom_script: Option<Provisioned>,
}

/// The result of [`Runtime::run_command`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandResult {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

/// An instance's captured output (boot diagnostics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootLog {
    pub stdout: String,
    pub stderr: String,
}

/// What went wrong; callers branch on the variant (e.g. `Running` is a 409 to the user).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid instance key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("invalid launch spec for instance {key}: {reason}")]
    InvalidSpec { key: InstanceKey, reason: String },
    #[error("instance {0} is running; stop it first")]
    Running(InstanceKey),
    #[error("instance {0} has no OS disk; make one first")]
    NoOsDisk(InstanceKey),
    #[error("instance {0} does not exist")]
    NotFound(InstanceKey),
    #[error("instance {0} was never started, so it has no environment to run a command in")]
    NeverStarted(InstanceKey),
    #[error("image {image} could not be copied into the OS disk of instance {key}: {message}")]
    Image { key: InstanceKey, image: String, message: String },
    #[error("the agent of instance {key} did not start: {detail}")]
    AgentStart { key: InstanceKey, detail: String },
    #[error("instance {key}: processes {pids:?} are still alive after SIGKILL")]
    Unkillable { key: InstanceKey, pids: Vec<u32> },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError {
        let path = path.to_path_buf();
        move |source| RuntimeError::Io { action, path, source }
    }
}

/// Makes, starts, stops, reimages and deletes instances, and reports what it observes. Blocking: the
/// server calls it from blocking threads. Dyn-compatible, so tests can drive a fake.
pub trait Runtime: Send + Sync {
    /// Where the disks of an instance are (paths only, no I/O).
    fn disks(&self, key: &InstanceKey, luns: &[u32]) -> Disks;
    /// Creates the data disks that do not exist; never touches existing content.
    fn make_data_disks(&self, key: &InstanceKey, luns: &[u32]) -> Result<(), RuntimeError>;
    /// Makes a fresh OS disk from `image` and swaps it in for the old one; refused while running. A failed
    /// copy leaves the old disk as it was.
    fn make_os_disk(&self, key: &InstanceKey, image: &dyn ImageSource) -> Result<(), RuntimeError>;
    /// Starts the agent; returns once it runs (not waiting for provisioning). Refused while running.
    fn start(&self, key: &InstanceKey, spec: &LaunchSpec) -> Result<(), RuntimeError>;
    /// Idempotent; returns when no process of the instance is left.
    fn stop(&self, key: &InstanceKey) -> Result<(), RuntimeError>;
    fn observe(&self, key: &InstanceKey) -> Observation;
    /// Stops, then removes everything of the instance, data disks included.
    fn delete(&self, key: &InstanceKey) -> Result<(), RuntimeError>;
    /// `az vmss run-command invoke`: `/bin/sh -c script` in the instance's environment, cwd the OS disk,
    /// in its own process group, killed when `timeout` passes.
    fn run_command(
        &self,
        key: &InstanceKey,
        script: &str,
        extra_env: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<CommandResult, RuntimeError>;
    /// The entrypoint's output (rotated part first), or its last `tail_lines` lines.
    fn boot_log(&self, key: &InstanceKey, tail_lines: Option<usize>) -> Result<BootLog, RuntimeError>;
    /// The current stdout and stderr files (for `--follow`).
    fn log_paths(&self, key: &InstanceKey) -> (PathBuf, PathBuf);
    /// Instances that have a directory (for adoption after a restart).
    fn list(&self) -> Vec<InstanceKey>;
}

/// Knobs of the agent, written into `launch.json`. The defaults are CONTRACT §2's; tests shrink them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentTuning {
    /// A log file larger than this is copied to `.1` and truncated.
    pub log_cap_bytes: u64,
    /// How often the agent checks log sizes.
    pub log_check_interval: Duration,
    /// The first restart delay; it doubles with each exit...
    pub backoff_initial: Duration,
    /// ...up to this...
    pub backoff_max: Duration,
    /// ...and starts again from `backoff_initial` after the app stayed up this long.
    pub backoff_reset_after: Duration,
    /// Per fileUri.
    pub download_timeout: Duration,
}

impl Default for AgentTuning {
    fn default() -> Self {
        AgentTuning {
            log_cap_bytes: 10 * 1024 * 1024,
            log_check_interval: Duration::from_secs(1),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            backoff_reset_after: Duration::from_secs(60),
            download_timeout: Duration::from_secs(120),
        }
    }
}

/// Milliseconds since the Unix epoch, as agent.json records times.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
