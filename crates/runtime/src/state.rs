//! The files the runtime and the agent exchange — `launch.json`, `protected.json`, `agent.json`, the
//! CustomScript's `status.json` — their shapes, and how they are written (atomically: temp + rename, so a
//! reader never sees half a file). What goes *in* them is decided by `process` and `agent`.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{AgentTuning, Exit, Phase, Provisioned};

/// What the agent runs; written by `start`, read by the agent and by `run_command`. Holds no secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Launch {
    /// The instance's `GALLEON_*` variables (and `GALLEON_CUSTOM_DATA`).
    pub env: BTreeMap<String, String>,
    pub entrypoint: String,
    pub custom_script: Option<LaunchScript>,
    pub stop_grace_ms: u64,
    pub log_cap_bytes: u64,
    pub log_check_ms: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub backoff_reset_ms: u64,
    pub download_timeout_ms: u64,
}

impl Launch {
    pub(crate) fn tuning(&self) -> AgentTuning {
        AgentTuning {
            log_cap_bytes: self.log_cap_bytes,
            log_check_interval: Duration::from_millis(self.log_check_ms.max(1)),
            backoff_initial: Duration::from_millis(self.backoff_initial_ms),
            backoff_max: Duration::from_millis(self.backoff_max_ms),
            backoff_reset_after: Duration::from_millis(self.backoff_reset_ms),
            download_timeout: Duration::from_millis(self.download_timeout_ms),
        }
    }

    pub(crate) fn stop_grace(&self) -> Duration {
        Duration::from_millis(self.stop_grace_ms)
    }

    /// The environment entry every process of the instance carries and nothing else does: how a process
    /// that left the instance's process groups is still found at stop.
    pub(crate) fn marker(&self) -> Option<Vec<u8>> {
        self.env.get(OS_DISK_VAR).map(|v| format!("{OS_DISK_VAR}={v}").into_bytes())
    }
}

pub(crate) const OS_DISK_VAR: &str = "GALLEON_OS_DISK";
pub(crate) const CUSTOM_DATA_VAR: &str = "GALLEON_CUSTOM_DATA";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LaunchScript {
    pub file_uris: Vec<String>,
    /// `None` when the command is protected: it is then in `protected.json` only.
    pub command: Option<String>,
    pub fingerprint: String,
}

/// `protected.json`: the protected settings. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Protected {
    pub command: String,
}

impl fmt::Debug for Protected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Protected { .. }")
    }
}

/// A process named so that a reused pid is never taken for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcRef {
    pub pid: u32,
    pub start_time: u64,
}

impl ProcRef {
    pub(crate) fn is_alive(&self) -> bool {
        crate::procfs::is_alive(self.pid, self.start_time)
    }
}

/// `agent.json`: the agent's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AgentState {
    pub agent: ProcRef,
    pub phase: Phase,
    /// The entrypoint while it runs: leader of its own session, so its pid is also its process group.
    pub app: Option<ProcRef>,
    pub app_started_ms: Option<i64>,
    /// The CustomScript while it runs (also a session leader).
    pub script: Option<ProcRef>,
    pub starts: u64,
    pub exits: Vec<Exit>,
    pub custom_script: Option<Provisioned>,
    pub updated_ms: i64,
}

/// `ext/CustomScript/status.json`: the last finished run on the current OS disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ScriptStatus {
    pub fingerprint: String,
    pub result: Provisioned,
}

/// Reads a JSON file; `Ok(None)` when it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `value` as JSON to `path` atomically, with file mode `mode`.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T, mode: u32) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    write_atomic(path, &bytes, mode)
}

/// Writes `bytes` to a temporary file next to `path` (created with `mode`, so a secret is never readable
/// by others, not even for a moment), syncs it and renames it over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp =
        path.with_file_name(format!(".{name}.tmp-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    let result = (|| {
        let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes a file; a file that is not there is fine.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_replaces_with_the_given_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("protected.json");
        write_json(&path, &Protected { command: "one".into() }, 0o600).expect("write");
        write_json(&path, &Protected { command: "two".into() }, 0o600).expect("rewrite");
        let back: Protected = read_json(&path).expect("read").expect("exists");
        assert_eq!(back.command, "two");
        assert_eq!(fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
        assert_eq!(format!("{back:?}"), "Protected { .. }");
    }

    #[test]
    fn a_missing_file_reads_as_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_json::<Protected>(&dir.path().join("nope.json")).expect("read"), None);
    }
}
