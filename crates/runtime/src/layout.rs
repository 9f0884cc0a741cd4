//! The names of things in an instance directory (see the crate doc for the layout). Paths only: no I/O,
//! so the runtime and the agent cannot disagree on where something lives.

use std::path::{Path, PathBuf};

/// Prefix of the directory a new OS disk is made in, next to `os/`.
pub(crate) const OS_NEW_PREFIX: &str = ".os-new-";

#[derive(Clone, Debug)]
pub(crate) struct InstanceDir {
    root: PathBuf,
}

impl InstanceDir {
    pub(crate) fn new(root: PathBuf) -> Self {
        InstanceDir { root }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn os(&self) -> PathBuf {
        self.root.join("os")
    }

    pub(crate) fn data(&self, lun: u32) -> PathBuf {
        self.root.join("data").join(lun.to_string())
    }

    fn ext(&self) -> PathBuf {
        self.root.join("ext").join("CustomScript")
    }

    pub(crate) fn script_download(&self) -> PathBuf {
        self.ext().join("download")
    }

    pub(crate) fn script_stdout(&self) -> PathBuf {
        self.ext().join("stdout")
    }

    pub(crate) fn script_stderr(&self) -> PathBuf {
        self.ext().join("stderr")
    }

    pub(crate) fn script_status(&self) -> PathBuf {
        self.ext().join("status.json")
    }

    pub(crate) fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    pub(crate) fn stdout_log(&self) -> PathBuf {
        self.logs().join("stdout.log")
    }

    pub(crate) fn stderr_log(&self) -> PathBuf {
        self.logs().join("stderr.log")
    }

    pub(crate) fn launch(&self) -> PathBuf {
        self.root.join("launch.json")
    }

    pub(crate) fn protected(&self) -> PathBuf {
        self.root.join("protected.json")
    }

    pub(crate) fn custom_data(&self) -> PathBuf {
        self.root.join("custom-data")
    }

    pub(crate) fn agent_state(&self) -> PathBuf {
        self.root.join("agent.json")
    }

    pub(crate) fn agent_log(&self) -> PathBuf {
        self.root.join("agent.log")
    }

    pub(crate) fn lock(&self) -> PathBuf {
        self.root.join("lock")
    }
}

/// `stdout.log` → `stdout.log.1`: where copy-truncate rotation keeps the previous part.
pub(crate) fn rotated(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".1");
    path.with_file_name(name)
}
