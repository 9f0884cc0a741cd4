//! Preparing a child between fork and exec: the one place this crate needs `unsafe`.
//!
//! Every process this crate starts gets an empty signal mask: a child inherits its parent's blocked
//! signals across exec, `std` does not reset them, and the agent blocks SIGTERM, SIGINT and SIGCHLD (it
//! reads them from a signalfd) — an app started with SIGTERM blocked could never be stopped gracefully.
//! The agent, the entrypoint and the CustomScript also lead a new session (and so a new process group):
//! a terminal's Ctrl-C or hang-up aimed at the control plane never reaches them, and a whole tree can be
//! signalled with one `killpg`. Both must run in the child, i.e. in a `pre_exec` hook, which is unsafe.
#![allow(unsafe_code)]

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};

fn errno(e: nix::errno::Errno) -> io::Error {
    // `from_raw_os_error` does not allocate, so this is fine between fork and exec.
    io::Error::from_raw_os_error(e as i32)
}

/// Makes the child of `cmd` start with no blocked signals, in a session of its own. The control plane
/// starts the data plane this way too (CONTRACT §2), so that this stays the one `unsafe` of the workspace's
/// process starting.
pub fn new_session(cmd: &mut Command) {
    // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe calls are
    // allowed: sigemptyset and sigprocmask (on a set on the stack) and setsid are. It allocates nothing
    // and touches no lock or shared state.
    unsafe {
        cmd.pre_exec(|| {
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).map_err(errno)?;
            nix::unistd::setsid().map(drop).map_err(errno)
        });
    }
}

/// Makes the child of `cmd` start with no blocked signals, leading a process group of its own (in the
/// caller's session).
pub(crate) fn new_group(cmd: &mut Command) {
    cmd.process_group(0);
    // SAFETY: as in `new_session`: only sigemptyset and sigprocmask, on the stack.
    unsafe {
        cmd.pre_exec(|| sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).map_err(errno));
    }
}
