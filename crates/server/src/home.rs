//! A home: the directory that holds one galleon installation's state, and the facts about its layout.
//!
//! `<home>/galleon.sock` (the API, mode 0600), `galleon.db` (SQLite), `store/` (images), `instances/`
//! (OS and data disks, boot logs), `config` (CLI defaults), `serve.lock` (one control plane per home).

use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};

/// The longest path a Unix socket address holds (`sun_path` is 108 bytes with its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

#[derive(Clone, Debug)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// Creates the home directory (mode 0700) if needed and checks that its socket path fits.
    pub fn prepare(root: &Path) -> anyhow::Result<Home> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .with_context(|| format!("cannot create the home {}", root.display()))?;
        let root = root.canonicalize().with_context(|| format!("cannot resolve {}", root.display()))?;
        // The home holds the API socket, secrets and every instance's disks: only its owner gets in.
        let mode = fs::metadata(&root)?.permissions().mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot make the home {} private (mode 0700)", root.display()))?;
        }
        let home = Home { root };
        check_socket_path(&home.socket())?;
        for dir in [home.store_dir(), home.instances_dir(), home.logs_dir()] {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        }
        Ok(home)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn socket(&self) -> PathBuf {
        self.root.join("galleon.sock")
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("galleon.db")
    }
    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }
    pub fn instances_dir(&self) -> PathBuf {
        self.root.join("instances")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Takes the home's control-plane lock: one `galleon serve` per home.
    pub fn lock_control_plane(&self) -> anyhow::Result<Flock<File>> {
        let path = self.root.join("serve.lock");
        let file = File::options().create(true).truncate(false).write(true).open(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(lock),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                bail!("another `galleon serve` already runs for the home {}", self.root.display())
            }
            Err((_, e)) => Err(e).context("cannot lock the home"),
        }
    }
}

/// Refuses a socket path the kernel cannot bind, with the way out.
pub fn check_socket_path(socket: &Path) -> anyhow::Result<()> {
    let len = socket.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        bail!(
            "the socket path {} is {len} bytes, longer than a Unix socket allows ({MAX_SOCKET_PATH}); use a shorter --home",
            socket.display()
        );
    }
    Ok(())
}
