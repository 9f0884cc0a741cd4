//! The provisioner sandbox: starts one process that can write only to the image root and a private `/tmp`
//! (CONTRACT §4), and [`sandbox_available`], which proves that sandbox can be built here.
//!
//! How, in the forked child before `exec` (all raw system calls on data prepared beforehand):
//! 1. `setsid` (own process group, no controlling terminal), `unshare(NEWNS|NEWPID|NEWIPC)`, then `fork`:
//!    the grandchild is pid 1 of a new pid namespace, so when it exits the kernel kills everything the step
//!    started, and `/proc` shows none of the host's processes (no `/proc/<host pid>/root` into the host's
//!    writable mounts). The intermediate process only waits and passes the exit status on.
//! 2. All mounts private; detached copies (`open_tree`) of the image root, the build's `/tmp` directory,
//!    the harmless device nodes (`null`, `zero`, `full`, `random`, `urandom`, `tty`) and any upload source
//!    are taken first, because the next steps cover the paths they are found at.
//! 3. `mount_setattr("/", AT_RECURSIVE, RDONLY|NOSUID|NODEV)`: the whole host tree read-only, and no device
//!    node usable (a read-only mount does not stop writes *through* a device node, such as a disk's).
//! 4. The copies are attached: the build's directory on `/tmp`, fresh tmpfs on `/dev/shm` and on `/run` (the
//!    host's `/run` holds control sockets: systemd's, D-Bus's, docker's; a ported `systemctl enable nginx`
//!    must not reach the host's systemd), with `/etc/resolv.conf` kept working when it points into `/run`;
//!    the root at its own path (read-write, nosuid, nodev), the device nodes over themselves, uploads
//!    read-only under `/tmp`, and a fresh read-only `/proc` of the new pid namespace (so `/proc/sys` and
//!    `/proc/sysrq-trigger` are not writable).
//! 5. Script files are written into `/tmp`, the working directory becomes the root, every inherited file
//!    descriptor above stderr is marked close-on-exec (a stray directory descriptor of the caller's would
//!    be a way back into the writable host tree), and capabilities are
//!    cut to Docker's default set minus `MKNOD` and `SETPCAP`: no `SYS_ADMIN` (so no remount, no new
//!    namespaces, no `setns`), no `SYS_PTRACE`, `SYS_MODULE`, `SYS_RAWIO`, `DAC_READ_SEARCH`
//!    (`open_by_handle_at`), `NET_ADMIN`; then `no_new_privs`.
//!
//! Does not isolate the network (downloads must work), abstract or out-of-`/run` Unix sockets, or CPU and
//! memory use: the guarantee is about the host's *file system* and services reached through `/run`. Does not
//! read the step's output or enforce its timeout (`run.rs` does).
#![allow(unsafe_code)] // Mount namespaces need raw system calls in the forked child; all unsafe code lives here.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use libc::{c_int, c_long, c_uint};

use crate::error::BuildError;

/// One sandboxed process to start.
pub(crate) struct Spec<'a> {
    /// The image root: absolute and canonical. Writable, and visible at this same path inside.
    pub root: &'a Path,
    /// A host directory that becomes the sandbox's `/tmp` (private to the build, kept across its steps).
    pub tmp: &'a Path,
    pub seeds: &'a [Seed],
    pub uploads: &'a [Upload],
    pub argv: &'a [OsString],
    pub env: &'a [(OsString, OsString)],
}

/// A file written into the sandbox's `/tmp` before the program starts (scripts, `content`).
pub(crate) struct Seed {
    /// Absolute, under [`tmp_target`].
    pub path: PathBuf,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// A host file or directory shown read-only inside the sandbox at `dir/name`.
pub(crate) struct Upload {
    pub host: PathBuf,
    /// A fresh directory under [`tmp_target`]; must not exist yet.
    pub dir: PathBuf,
    pub name: OsString,
    pub is_dir: bool,
}

pub(crate) struct Sandboxed {
    pub child: Child,
    /// The intermediate process's pid, which is also the process group (and session) of the step.
    pub pgid: nix::unistd::Pid,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SandboxError {
    #[error("could not set up the provisioner sandbox ({stage}): {source}{hint}")]
    Setup { stage: &'static str, source: io::Error, hint: &'static str },
    #[error("could not start {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("{0}")]
    Prepare(String),
}

const HINT: &str = "; provisioners run in a private mount namespace with the host file system read-only, which \
                    needs root (CAP_SYS_ADMIN) on Linux 5.12 or later";

/// The sandbox's `/tmp`: the host's `/tmp` path, resolved (in case it is a symlink).
pub(crate) fn tmp_target() -> PathBuf {
    Path::new("/tmp").canonicalize().unwrap_or_else(|_| PathBuf::from("/tmp"))
}

/// Proves, once per process, that a sandbox can be built here by running `/bin/sh -c 'exit 0'` in one.
pub fn sandbox_available() -> Result<(), BuildError> {
    static OK: OnceLock<()> = OnceLock::new();
    if OK.get().is_some() {
        return Ok(());
    }
    probe().map_err(BuildError::SandboxUnavailable)?;
    let _ = OK.set(());
    Ok(())
}

fn probe() -> Result<(), String> {
    let dir = tempfile::Builder::new().prefix("galleon-sandbox-probe-").tempdir().map_err(|e| e.to_string())?;
    let (root, tmp) = (dir.path().join("root"), dir.path().join("tmp"));
    for d in [&root, &tmp] {
        std::fs::create_dir(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let root = root.canonicalize().map_err(|e| e.to_string())?;
    let argv = ["/bin/sh", "-c", "exit 0"].map(OsString::from);
    let spec = Spec { root: &root, tmp: &tmp, seeds: &[], uploads: &[], argv: &argv, env: &[] };
    let mut sb = spawn(&spec).map_err(|e| e.to_string())?;
    let status = sb.child.wait().map_err(|e| e.to_string())?;
    if status.success() { Ok(()) } else { Err(format!("a trial sandboxed /bin/sh ended with {status}")) }
}

/// Host paths that lead into `/run` and must keep resolving in the private one.
const KEPT_IN_RUN: [&str; 2] = ["/etc/resolv.conf", "/dev/shm"];

/// Starts `spec.argv` in a fresh sandbox, stdin from `/dev/null`, stdout and stderr piped.
pub(crate) fn spawn(spec: &Spec<'_>) -> Result<Sandboxed, SandboxError> {
    spawn_keeping(spec, &KEPT_IN_RUN.map(Path::new))
}

fn spawn_keeping(spec: &Spec<'_>, kept_in_run: &[&Path]) -> Result<Sandboxed, SandboxError> {
    let Some(program) = spec.argv.first() else {
        return Err(SandboxError::Prepare("nothing to run".into()));
    };
    let mut prepared = Prepared::new(spec, kept_in_run)?;
    let mut cmd = Command::new(program);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the child between fork and exec. `Prepared::enter` only makes
    // async-signal-safe system calls (setsid, unshare, fork, mount and friends, open/write/close, prctl,
    // capset, waitpid, _exit) on memory prepared above: it does not allocate, lock or unwind.
    unsafe {
        cmd.pre_exec(move || prepared.enter());
    }
    let child = cmd.spawn().map_err(|e| decode_spawn_error(e, program))?;
    let pgid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    Ok(Sandboxed { child, pgid })
}

/// Failures in the child reach the parent only as the `i32` std passes back from a failed `pre_exec`; the
/// stage is folded into it (stage × STAGE_BASE + errno) so the message can say which step of the set-up
/// failed. errno values are far below STAGE_BASE.
const STAGE_BASE: i32 = 1 << 16;

#[derive(Clone, Copy)]
enum Stage {
    NewSession = 1,
    DeathSignal,
    Unshare,
    Fork,
    PrivateMounts,
    CloneRoot,
    CloneTmp,
    CloneDevice,
    CloneUpload,
    CloneRunFile,
    ReadOnly,
    MountTmp,
    MountRun,
    MountShm,
    MountRoot,
    MountDevice,
    MountUpload,
    MountProc,
    SeedFile,
    Chdir,
    Capabilities,
    NoNewPrivs,
    CloseFiles,
}

const STAGE_NAMES: [&str; 24] = [
    "?",
    "setsid",
    "parent-death signal",
    "unshare of mount and pid namespaces",
    "fork into the pid namespace",
    "making mounts private",
    "open_tree of the image root",
    "open_tree of the build's /tmp",
    "open_tree of a device node",
    "open_tree of an upload source",
    "open_tree of a file kept in /run",
    "making the host file system read-only (mount_setattr)",
    "mounting the private /tmp",
    "mounting the private /run",
    "mounting /dev/shm",
    "mounting the image root",
    "mounting a device node",
    "mounting an upload source",
    "mounting /proc",
    "writing a script into /tmp",
    "changing to the image root",
    "dropping capabilities",
    "setting no_new_privs",
    "closing inherited file descriptors",
];

fn decode_spawn_error(e: io::Error, program: &OsStr) -> SandboxError {
    match e.raw_os_error() {
        Some(code) if code >= STAGE_BASE => {
            let stage = usize::try_from(code / STAGE_BASE).ok().and_then(|i| STAGE_NAMES.get(i)).unwrap_or(&"?");
            let source = io::Error::from_raw_os_error(code % STAGE_BASE);
            let hint = match source.raw_os_error() {
                Some(libc::EPERM | libc::ENOSYS | libc::EINVAL | libc::EACCES) => HINT,
                _ => "",
            };
            SandboxError::Setup { stage, source, hint }
        }
        _ => SandboxError::Spawn { program: program.to_string_lossy().into_owned(), source: e },
    }
}

/// The host's `/run`, replaced by a private tmpfs in the sandbox.
pub(crate) const RUN: &str = "/run";

/// What the private `/run` must keep so that `path` resolves inside the sandbox as it does on the host: the
/// symlinks of its chain that live under `run`, their parent directories, and the final file (bound
/// read-only) or directory (made empty). Nothing when the chain never enters `run`.
fn kept_in_run(path: &Path, run: &Path) -> Vec<RunEntry> {
    let mut entries = Vec::new();
    let mut p = path.to_path_buf();
    // A chain longer than the kernel's own limit would not resolve anyway.
    for _ in 0..40 {
        let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else { break };
        let Ok(parent) = parent.canonicalize() else { break };
        let here = parent.join(name);
        let Ok(meta) = here.symlink_metadata() else { break };
        let inside = here.starts_with(run) && here != run;
        if inside {
            let mut dir = run.to_path_buf();
            if let Ok(rel) = parent.strip_prefix(run) {
                for c in rel.components() {
                    dir.push(c);
                    entries.push(RunEntry::Dir(dir.clone()));
                }
            }
        }
        if meta.file_type().is_symlink() {
            let Ok(target) = std::fs::read_link(&here) else { break };
            if inside {
                entries.push(RunEntry::Symlink { path: here.clone(), target: target.clone() });
            }
            p = parent.join(target);
            continue;
        }
        if inside {
            entries.push(if meta.is_dir() { RunEntry::Dir(here) } else { RunEntry::File(here) });
        }
        break;
    }
    entries
}

/// The device nodes a build may use. Everything else under `/dev` stays unusable (nodev).
const DEVICES: [&str; 6] = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"];

/// Capabilities kept: Docker's default set without MKNOD and SETPCAP. Enough for chown/chmod of any file
/// in the root, `su`, binding low ports; not enough to mount, trace, load modules or reach raw devices.
const KEEP_CAPS: u64 = (1 << 0) // CHOWN
    | (1 << 1) // DAC_OVERRIDE
    | (1 << 3) // FOWNER
    | (1 << 4) // FSETID
    | (1 << 5) // KILL (only processes of the step's own pid namespace are visible)
    | (1 << 6) // SETGID
    | (1 << 7) // SETUID
    | (1 << 10) // NET_BIND_SERVICE
    | (1 << 13) // NET_RAW
    | (1 << 18) // SYS_CHROOT
    | (1 << 29) // AUDIT_WRITE
    | (1 << 31); // SETFCAP

/// What the intermediate process exits with if it loses track of the step's process.
const REAPER_LOST_CHILD: c_int = 125;

struct PreparedUpload {
    host: CString,
    dir: CString,
    mountpoint: CString,
    is_dir: bool,
}

/// What the private `/run` keeps of the host's, so that `/etc/resolv.conf` (often a symlink into `/run`)
/// and `/dev/shm` (sometimes one) still resolve.
#[derive(Debug, PartialEq)]
enum RunEntry {
    Dir(PathBuf),
    Symlink {
        path: PathBuf,
        target: PathBuf,
    },
    /// A host file shown read-only at the same path.
    File(PathBuf),
}

enum PreparedRunEntry {
    Dir(CString),
    Symlink { path: CString, target: CString },
    File(CString),
}

struct PreparedSeed {
    path: CString,
    contents: Vec<u8>,
    mode: libc::mode_t,
}

/// Everything the child needs, as C strings made before fork: the child must not allocate.
struct Prepared {
    root: CString,
    /// Directories to create inside the private `/tmp` so the root can be mounted at its own path when that
    /// path is under `/tmp` (tests; homes under `/tmp`).
    root_mkdirs: Vec<CString>,
    tmp_src: CString,
    tmp_target: CString,
    devices: Vec<CString>,
    shm: Option<CString>,
    run: Option<CString>,
    run_entries: Vec<PreparedRunEntry>,
    uploads: Vec<PreparedUpload>,
    seeds: Vec<PreparedSeed>,
    cap_last: u32,
    /// Slots for the detached mount copies of devices and uploads, filled in the child.
    device_fds: Vec<c_int>,
    upload_fds: Vec<c_int>,
    /// One slot per run entry; used by `File` entries only.
    run_fds: Vec<c_int>,
}

fn cstring(p: &OsStr) -> Result<CString, SandboxError> {
    CString::new(p.as_bytes()).map_err(|_| SandboxError::Prepare(format!("path with a NUL byte: {p:?}")))
}

impl Prepared {
    fn new(spec: &Spec<'_>, kept_in_run: &[&Path]) -> Result<Prepared, SandboxError> {
        let tmp_target = tmp_target();
        let mut root_mkdirs = Vec::new();
        if let Ok(under) = spec.root.strip_prefix(&tmp_target) {
            let mut p = tmp_target.clone();
            for c in under.components() {
                p.push(c);
                root_mkdirs.push(cstring(p.as_os_str())?);
            }
        }
        let devices = DEVICES
            .iter()
            .filter(|d| std::fs::symlink_metadata(d).is_ok_and(|m| m.file_type().is_char_device()))
            .map(|d| cstring(OsStr::new(d)))
            .collect::<Result<Vec<_>, _>>()?;
        let run_dir = Path::new(RUN);
        let run = run_dir.symlink_metadata().is_ok_and(|m| m.is_dir());
        let mut run_entries = Vec::new();
        if run {
            for kept in kept_in_run {
                run_entries.extend(self::kept_in_run(kept, run_dir));
            }
        }
        // A /dev/shm that is a symlink into /run is served by the private /run (its directory is kept there).
        let shm_is_dir = Path::new("/dev/shm").symlink_metadata().is_ok_and(|m| m.is_dir());
        let shm = if shm_is_dir { Some(cstring(OsStr::new("/dev/shm"))?) } else { None };
        let run_entries = run_entries
            .into_iter()
            .map(|e| {
                Ok(match e {
                    RunEntry::Dir(p) => PreparedRunEntry::Dir(cstring(p.as_os_str())?),
                    RunEntry::Symlink { path, target } => PreparedRunEntry::Symlink {
                        path: cstring(path.as_os_str())?,
                        target: cstring(target.as_os_str())?,
                    },
                    RunEntry::File(p) => PreparedRunEntry::File(cstring(p.as_os_str())?),
                })
            })
            .collect::<Result<Vec<_>, SandboxError>>()?;
        let uploads = spec
            .uploads
            .iter()
            .map(|u| {
                Ok(PreparedUpload {
                    host: cstring(u.host.as_os_str())?,
                    dir: cstring(u.dir.as_os_str())?,
                    mountpoint: cstring(u.dir.join(&u.name).as_os_str())?,
                    is_dir: u.is_dir,
                })
            })
            .collect::<Result<Vec<_>, SandboxError>>()?;
        let seeds = spec
            .seeds
            .iter()
            .map(|s| {
                Ok(PreparedSeed { path: cstring(s.path.as_os_str())?, contents: s.contents.clone(), mode: s.mode })
            })
            .collect::<Result<Vec<_>, SandboxError>>()?;
        let cap_last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(40)
            .min(63);
        Ok(Prepared {
            root: cstring(spec.root.as_os_str())?,
            root_mkdirs,
            tmp_src: cstring(spec.tmp.as_os_str())?,
            tmp_target: cstring(tmp_target.as_os_str())?,
            device_fds: vec![-1; devices.len()],
            upload_fds: vec![-1; uploads.len()],
            run_fds: vec![-1; run_entries.len()],
            devices,
            shm,
            run: if run { Some(cstring(OsStr::new(RUN))?) } else { None },
            run_entries,
            uploads,
            seeds,
            cap_last,
        })
    }

    /// Runs in the forked child (see the SAFETY note in [`spawn`] and the module docs for the steps).
    fn enter(&mut self) -> io::Result<()> {
        // SAFETY (whole function): plain system calls on valid, NUL-terminated buffers owned by `self`.
        unsafe {
            check(Stage::NewSession, libc::setsid().into())?;
            check(Stage::DeathSignal, libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0).into())?;
            // An inherited SIG_IGN for SIGCHLD would make the kernel reap the grandchild behind our back.
            libc::signal(libc::SIGCHLD, libc::SIG_DFL);
            check(Stage::Unshare, libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC).into())?;
            let pid = libc::fork();
            if pid < 0 {
                return Err(stage_error(Stage::Fork));
            }
            if pid > 0 {
                relay_exit(pid);
            }
            // From here on: the grandchild, pid 1 of the new pid namespace.
            check(Stage::DeathSignal, libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0).into())?;
            check(
                Stage::PrivateMounts,
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                )
                .into(),
            )?;
            let root_fd = check(Stage::CloneRoot, open_tree(&self.root))? as c_int;
            let tmp_fd = check(Stage::CloneTmp, open_tree(&self.tmp_src))? as c_int;
            for (slot, dev) in self.device_fds.iter_mut().zip(&self.devices) {
                *slot = check(Stage::CloneDevice, open_tree(dev))? as c_int;
            }
            for (slot, up) in self.upload_fds.iter_mut().zip(&self.uploads) {
                *slot = check(Stage::CloneUpload, open_tree(&up.host))? as c_int;
            }
            for (slot, entry) in self.run_fds.iter_mut().zip(&self.run_entries) {
                if let PreparedRunEntry::File(path) = entry {
                    *slot = check(Stage::CloneRunFile, open_tree(path))? as c_int;
                }
            }

            let host_ro = libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV;
            check(Stage::ReadOnly, mount_setattr(libc::AT_FDCWD, c"/", libc::AT_RECURSIVE as c_uint, host_ro, 0))?;

            let writable = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV;
            check(Stage::MountTmp, attach(tmp_fd, &self.tmp_target, writable, libc::MOUNT_ATTR_RDONLY))?;
            if let Some(run) = &self.run {
                check(
                    Stage::MountRun,
                    libc::mount(
                        c"tmpfs".as_ptr(),
                        run.as_ptr(),
                        c"tmpfs".as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV,
                        c"mode=0755".as_ptr().cast(),
                    )
                    .into(),
                )?;
                for (fd, entry) in self.run_fds.iter().zip(&self.run_entries) {
                    match entry {
                        // Shared parents are listed once per kept path: an existing one is fine.
                        PreparedRunEntry::Dir(p) => {
                            libc::mkdir(p.as_ptr(), 0o755);
                        }
                        PreparedRunEntry::Symlink { path, target } => {
                            check(Stage::MountRun, libc::symlink(target.as_ptr(), path.as_ptr()).into())?;
                        }
                        PreparedRunEntry::File(p) => {
                            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC;
                            let f = check(Stage::MountRun, libc::open(p.as_ptr(), flags, 0o644 as c_uint).into())?;
                            libc::close(f as c_int);
                            check(Stage::MountRun, attach(*fd, p, host_ro, 0))?;
                        }
                    }
                }
            }
            if let Some(shm) = &self.shm {
                check(
                    Stage::MountShm,
                    libc::mount(
                        c"tmpfs".as_ptr(),
                        shm.as_ptr(),
                        c"tmpfs".as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV,
                        c"mode=1777".as_ptr().cast(),
                    )
                    .into(),
                )?;
            }
            for dir in &self.root_mkdirs {
                // Errors are fine: the directory may exist (or the path not be under /tmp at all);
                // attaching the root below fails clearly if the mount point is missing.
                libc::mkdir(dir.as_ptr(), 0o755);
            }
            check(Stage::MountRoot, attach(root_fd, &self.root, writable, libc::MOUNT_ATTR_RDONLY))?;
            for (fd, dev) in self.device_fds.iter().zip(&self.devices) {
                // Copied before the tree went nodev, so these few nodes keep working.
                check(Stage::MountDevice, attach(*fd, dev, libc::MOUNT_ATTR_NOSUID, libc::MOUNT_ATTR_RDONLY))?;
            }
            for (fd, up) in self.upload_fds.iter().zip(&self.uploads) {
                // A fresh directory: mkdir must create it, so nothing a previous step left in /tmp is reused.
                check(Stage::MountUpload, libc::mkdir(up.dir.as_ptr(), 0o755).into())?;
                if up.is_dir {
                    check(Stage::MountUpload, libc::mkdir(up.mountpoint.as_ptr(), 0o755).into())?;
                } else {
                    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
                    let f =
                        check(Stage::MountUpload, libc::open(up.mountpoint.as_ptr(), flags, 0o644 as c_uint).into())?;
                    libc::close(f as c_int);
                }
                check(Stage::MountUpload, attach(*fd, &up.mountpoint, host_ro, 0))?;
            }
            check(
                Stage::MountProc,
                libc::mount(
                    c"proc".as_ptr(),
                    c"/proc".as_ptr(),
                    c"proc".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY,
                    std::ptr::null(),
                )
                .into(),
            )?;
            for seed in &self.seeds {
                write_seed(seed)?;
            }
            libc::umask(0o022);
            check(Stage::Chdir, libc::chdir(self.root.as_ptr()).into())?;
            // std's error pipe is close-on-exec already, so marking (not closing) keeps it working until exec.
            check(
                Stage::CloseFiles,
                libc::syscall(libc::SYS_close_range, 3 as c_uint, c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as c_uint),
            )?;
            self.drop_capabilities()?;
            check(Stage::NoNewPrivs, libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).into())?;
        }
        Ok(())
    }

    fn drop_capabilities(&self) -> io::Result<()> {
        // SAFETY: prctl and capget/capset on stack values of the kernel's v3 layout.
        unsafe {
            for cap in 0..=self.cap_last {
                if KEEP_CAPS & (1u64 << cap) == 0 {
                    let r = libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
                    if r < 0 && errno() != libc::EINVAL {
                        return Err(stage_error(Stage::Capabilities));
                    }
                }
            }
            // Old kernels have no ambient set: nothing to clear there.
            libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0);
            let mut header = CapHeader { version: CAP_VERSION_3, pid: 0 };
            let mut data = [CapData::default(); 2];
            check(
                Stage::Capabilities,
                libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, data.as_mut_ptr()),
            )?;
            let keep = [KEEP_CAPS as u32, (KEEP_CAPS >> 32) as u32];
            for (d, k) in data.iter_mut().zip(keep) {
                d.effective &= k;
                d.permitted &= k;
                d.inheritable &= k;
            }
            check(Stage::Capabilities, libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()))?;
        }
        Ok(())
    }
}

const CAP_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn errno() -> c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn stage_error(stage: Stage) -> io::Error {
    io::Error::from_raw_os_error(stage as i32 * STAGE_BASE + errno())
}

fn check(stage: Stage, r: c_long) -> io::Result<c_long> {
    if r < 0 { Err(stage_error(stage)) } else { Ok(r) }
}

/// A detached copy of the mount at `path` (a bind mount not attached anywhere yet).
unsafe fn open_tree(path: &CStr) -> c_long {
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    // SAFETY: `path` is NUL-terminated.
    unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) }
}

unsafe fn mount_setattr(dirfd: c_int, path: &CStr, flags: c_uint, set: u64, clear: u64) -> c_long {
    let attr = libc::mount_attr { attr_set: set, attr_clr: clear, propagation: 0, userns_fd: 0 };
    // SAFETY: `attr` outlives the call and its size is passed with it.
    unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    }
}

/// Sets the attributes of a detached copy and attaches it at `target` (not following a symlink there).
unsafe fn attach(fd: c_int, target: &CStr, set: u64, clear: u64) -> c_long {
    // SAFETY: plain system calls on a file descriptor we own and NUL-terminated strings.
    unsafe {
        let r = mount_setattr(fd, c"", libc::AT_EMPTY_PATH as c_uint, set, clear);
        if r < 0 {
            return r;
        }
        let r = libc::syscall(
            libc::SYS_move_mount,
            fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        );
        libc::close(fd);
        r
    }
}

/// Writes a seed file inside the sandbox (after the host went read-only, so a symlink planted in `/tmp`
/// by an earlier step can only point at places the sandbox may write anyway).
unsafe fn write_seed(seed: &PreparedSeed) -> io::Result<()> {
    // SAFETY: plain system calls on NUL-terminated strings and a buffer we own.
    unsafe {
        libc::unlink(seed.path.as_ptr());
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let fd = check(Stage::SeedFile, libc::open(seed.path.as_ptr(), flags, 0o600 as c_uint).into())? as c_int;
        let mut rest: &[u8] = &seed.contents;
        while !rest.is_empty() {
            let n = libc::write(fd, rest.as_ptr().cast(), rest.len());
            if n < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                return Err(stage_error(Stage::SeedFile));
            }
            rest = &rest[n as usize..];
        }
        check(Stage::SeedFile, libc::fchmod(fd, seed.mode).into())?;
        libc::close(fd);
    }
    Ok(())
}

/// The intermediate process: waits for the sandboxed pid 1 and exits the same way, so the parent sees the
/// step's own status. Holds no file descriptors, so pipes close when the step's processes are gone.
fn relay_exit(child: libc::pid_t) -> ! {
    // SAFETY: system calls on our own process; never returns.
    unsafe {
        libc::syscall(libc::SYS_close_range, 0 as c_uint, c_uint::MAX, 0 as c_uint);
        let mut status: c_int = 0;
        loop {
            let r = libc::waitpid(child, &mut status, 0);
            if r == child {
                break;
            }
            if r < 0 && errno() != libc::EINTR {
                libc::_exit(REAPER_LOST_CHILD);
            }
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            // Re-raise the signal so the parent sees "killed by", without leaving a core file of ours.
            let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
            libc::_exit(128 + sig);
        }
        libc::_exit(REAPER_LOST_CHILD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_symlink_chain_of_a_path_that_leads_into_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().canonicalize().expect("canonical");
        let run = base.join("run");
        std::fs::create_dir_all(run.join("systemd/resolve")).expect("dirs");
        std::fs::create_dir_all(run.join("resolvconf")).expect("dirs");
        std::fs::create_dir_all(run.join("shm")).expect("dirs");
        std::fs::create_dir_all(base.join("etc")).expect("etc");
        std::fs::create_dir_all(base.join("dev")).expect("dev");
        std::fs::write(run.join("systemd/resolve/stub.conf"), "nameserver 127.0.0.53\n").expect("stub");
        let link = |target: &str, at: &str| std::os::unix::fs::symlink(target, base.join(at)).expect("symlink");
        link("../run/resolvconf/resolv.conf", "etc/resolv.conf");
        link(&format!("{}/systemd/resolve/stub.conf", run.display()), "run/resolvconf/resolv.conf");
        link("../run/shm", "dev/shm");
        std::fs::write(base.join("etc/hosts"), "").expect("hosts");

        let show = |p: &str| {
            kept_in_run(&base.join(p), &run)
                .into_iter()
                .map(|e| format!("{e:?}").replace(&base.display().to_string(), "B"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        expect_test::expect![[r#"
            Dir("B/run/resolvconf")
            Symlink { path: "B/run/resolvconf/resolv.conf", target: "B/run/systemd/resolve/stub.conf" }
            Dir("B/run/systemd")
            Dir("B/run/systemd/resolve")
            File("B/run/systemd/resolve/stub.conf")"#]]
        .assert_eq(&show("etc/resolv.conf"));
        expect_test::expect![[r#"Dir("B/run/shm")"#]].assert_eq(&show("dev/shm"));
        expect_test::expect![""].assert_eq(&show("etc/hosts"));
    }

    /// The private /run really serves a kept chain (this host's resolv.conf is a plain file, so the normal
    /// path would not exercise it): root/link -> /run/T/link -> /run/T/real/file.
    #[test]
    fn a_kept_chain_resolves_inside_the_private_run() {
        let tag = Path::new(RUN).join(format!("galleon-imagebuild-test-{}", std::process::id()));
        std::fs::create_dir_all(tag.join("real")).expect("host /run test dir");
        let cleanup = Cleanup(tag.clone());
        std::fs::write(tag.join("real/file"), "kept\n").expect("file");
        std::os::unix::fs::symlink(tag.join("real/file"), tag.join("link")).expect("symlink");
        std::fs::write(tag.join("hidden"), "not kept\n").expect("hidden");
        let work = tempfile::tempdir().expect("work");
        let root = work.path().join("root");
        let tmp = work.path().join("tmp");
        std::fs::create_dir(&root).expect("root");
        std::fs::create_dir(&tmp).expect("tmp");
        std::os::unix::fs::symlink(tag.join("link"), root.join("link")).expect("symlink");
        let root = root.canonicalize().expect("canonical");
        let script = format!("cat link; test -e {}/hidden || echo hidden-is-hidden", tag.display());
        let argv = [OsString::from("/bin/sh"), "-c".into(), script.into()];
        let spec = Spec { root: &root, tmp: &tmp, seeds: &[], uploads: &[], argv: &argv, env: &[] };
        let kept = root.join("link");
        let sb = spawn_keeping(&spec, &[&kept]).expect("spawn");
        let out = sb.child.wait_with_output().expect("wait");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "kept\nhidden-is-hidden\n", "{out:?}");
        drop(cleanup);
    }

    struct Cleanup(PathBuf);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
