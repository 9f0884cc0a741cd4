//! `run`: the data plane process of one home, from lock to exit.
//!
//! Takes `state_dir/dataplane.lock` (one data plane per home), serves the last persisted config at once
//! (so a restarted data plane serves before the control plane says anything), serves the control
//! socket (mode 0600), and exits on SIGTERM, SIGINT or `POST /shutdown`. Detaching from the control plane
//! (session, no parent-death signal) is the caller's job; so is the runtime `run` is called on, which
//! carries only control and probes: client connections are served by `workers` threads of their own
//! (one current-thread runtime per core by default, see `workers.rs`), so a current-thread runtime is
//! enough for the caller.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::control::serve_control;
use crate::dataplane::{Dataplane, DataplaneOptions, load_persisted};

/// The file holding the last accepted config, in the state directory.
pub const CONFIG_FILE: &str = "dataplane.json";
/// The file whose exclusive lock marks the home's data plane as running.
pub const LOCK_FILE: &str = "dataplane.lock";
/// The longest path a Unix socket address holds (sun_path less its NUL).
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where the lock and the persisted config live (e.g. `<home>/dataplane`).
    pub state_dir: PathBuf,
    /// The control socket.
    pub socket_path: PathBuf,
    /// At exit, how long open client connections get to finish.
    pub shutdown_grace: Duration,
    /// Threads serving client connections (`DataplaneOptions::workers`); default one per core.
    pub workers: usize,
}

impl RunOptions {
    pub fn new(state_dir: impl Into<PathBuf>, socket_path: impl Into<PathBuf>) -> RunOptions {
        RunOptions {
            state_dir: state_dir.into(),
            socket_path: socket_path.into(),
            shutdown_grace: Duration::from_secs(5),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("state directory {path}: {source}")]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error("a data plane already runs for this home (pid {pid}, lock {path}); stop it first")]
    AlreadyRunning { path: PathBuf, pid: String },
    #[error("lock {path}: {source}")]
    Lock { path: PathBuf, source: std::io::Error },
    #[error(
        "control socket path {path} is longer than a Unix socket allows ({MAX_SOCKET_PATH} bytes); use a shorter home"
    )]
    SocketPathTooLong { path: PathBuf },
    #[error("control socket {path}: {source}")]
    Socket { path: PathBuf, source: std::io::Error },
    #[error("installing signal handlers: {0}")]
    Signal(std::io::Error),
}

/// Run the data plane until SIGTERM, SIGINT or `POST /shutdown`.
pub async fn run(opts: RunOptions) -> Result<(), RunError> {
    let dir = &opts.state_dir;
    std::fs::create_dir_all(dir).map_err(|source| RunError::StateDir { path: dir.clone(), source })?;
    let _lock = lock_home(&dir.join(LOCK_FILE))?;
    if opts.socket_path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(RunError::SocketPathTooLong { path: opts.socket_path.clone() });
    }
    // Installed before anything serves, so an early SIGTERM still ends us cleanly.
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signal)?;

    let config_path = dir.join(CONFIG_FILE);
    let dp = Dataplane::new(DataplaneOptions { persist_path: Some(config_path.clone()), workers: opts.workers });
    match load_persisted(&config_path) {
        Ok(Some(config)) => match dp.apply(config).await {
            Ok(report) => {
                for f in report.bind_errors() {
                    tracing::warn!(frontend = %f.name, error = ?f.error, "persisted frontend not bound");
                }
            }
            Err(e) => tracing::error!(error = %e, "persisted config refused; waiting for the control plane"),
        },
        Ok(None) => {}
        // A damaged file must not keep the data plane down: start empty, the control plane pushes again.
        Err(e) => tracing::error!(error = %e, "persisted config unreadable; waiting for the control plane"),
    }

    let listener = bind_socket(&opts.socket_path)?;
    let (shutdown, mut stopped) = watch::channel(false);
    let control = tokio::spawn(serve_control(dp.clone(), listener, shutdown.clone()));
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        _ = stopped.wait_for(|s| *s) => tracing::info!("shutdown requested"),
    }
    shutdown.send_replace(true);
    dp.shutdown(opts.shutdown_grace).await;
    let _ = control.await;
    let _ = std::fs::remove_file(&opts.socket_path);
    Ok(())
}

/// Hold an exclusive lock for as long as the returned file lives; write our pid in it for the message a
/// second data plane gets.
fn lock_home(path: &std::path::Path) -> Result<File, RunError> {
    let lock_err = |source| RunError::Lock { path: path.to_owned(), source };
    let mut f = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(lock_err)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(RunError::AlreadyRunning {
                path: path.to_owned(),
                pid: if pid.is_empty() { "unknown".into() } else { pid.to_owned() },
            });
        }
        Err(TryLockError::Error(e)) => return Err(lock_err(e)),
    }
    f.set_len(0).map_err(lock_err)?;
    f.rewind().map_err(lock_err)?;
    write!(f, "{}", std::process::id()).map_err(lock_err)?;
    Ok(f)
}

/// Bind the control socket, replacing a stale one (we hold the lock, so nobody else serves it), and make
/// it the owner's only.
fn bind_socket(path: &std::path::Path) -> Result<UnixListener, RunError> {
    let err = |source| RunError::Socket { path: path.to_owned(), source };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}
