//! Running a [`Plan`]'s steps against an image root: [`run`].
//!
//! Owns step order, Packer's shell semantics (inline lines written to a script that starts with
//! `#!<inline_shebang>`, run by `/bin/sh -c <execute_command>` with `{{.Path}}` and `{{.Vars}}` filled in),
//! the `file` provisioner (copied by `cp` *inside* the sandbox, so a symlink in the root that points outside
//! lands on the read-only host and fails), retries, pauses and timeouts, live output with a step prefix, and
//! masking of sensitive values in everything it emits. Every host input (scripts, file sources) is checked
//! before the first step runs. Each process of a step runs in `sandbox.rs`; when it ends, times out or fails,
//! its whole process group is killed (and, being pid 1 of its own pid namespace, everything it started dies
//! with it). Does not materialize the source or publish the result: the caller does, and publishes nothing
//! when this returns an error.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};

use crate::error::{BuildError, StepFailure, StepRef};
use crate::mask::Masker;
use crate::plan::{Action, Destination, FileSource, Plan, Script, ShellStep, Step};
use crate::sandbox::{self, Seed, Spec, Upload};
use crate::vars::ExecPiece;

/// Runs every step of `plan` in order against `root`, streaming each output line (already prefixed with its
/// step and masked) to `sink`. Stops at the first step that fails; the error says which and how.
///
/// Blocks until the build ends (call it from a blocking thread, e.g. `spawn_blocking`, which must live until
/// it returns: the step processes are tied to it and die with it). Checks the sandbox and every host input
/// before the first step runs.
pub fn run(plan: &Plan, root: &Path, sink: &mut dyn FnMut(&str)) -> Result<(), BuildError> {
    let masker = plan.masker();
    sandbox::sandbox_available()?;
    let root = check_root(root)?;
    let total = plan.steps.len();
    let refs: Vec<StepRef> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| StepRef { index: i + 1, total, kind: s.kind(), name: s.name.as_ref().map(|n| masker.mask(n)) })
        .collect();
    let inputs = plan
        .steps
        .iter()
        .zip(&refs)
        .map(|(step, r)| {
            gather_inputs(step).map_err(|m| BuildError::Input { step: r.clone(), message: masker.mask(&m) })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let scratch = Scratch::new()?;
    let mut out = Out { sink, masker: &masker, build: &plan.build_name };
    let mut cx = StepCx { root: &root, scratch: &scratch, plan, uploads: 0 };
    for ((step, sref), inputs) in plan.steps.iter().zip(&refs).zip(&inputs) {
        run_step(&mut cx, step, sref, inputs, &mut out)?;
    }
    out.line(None, &format!("provisioning finished ({total} step{})", if total == 1 { "" } else { "s" }));
    Ok(())
}

/// Where output goes: every line prefixed `==> BUILD: [i/n kind] ` and masked.
struct Out<'a> {
    sink: &'a mut dyn FnMut(&str),
    masker: &'a Masker,
    build: &'a str,
}

impl Out<'_> {
    fn line(&mut self, step: Option<&StepRef>, text: &str) {
        let line = match step {
            Some(s) => format!("==> {}: [{}] {text}", self.build, s.label()),
            None => format!("==> {}: {text}", self.build),
        };
        (self.sink)(&self.masker.mask(&line));
    }
}

fn check_root(root: &Path) -> Result<PathBuf, BuildError> {
    let err = |message: String| BuildError::Root { path: root.to_path_buf(), message };
    let canon = root.canonicalize().map_err(|e| err(e.to_string()))?;
    if !canon.is_dir() {
        return Err(err("not a directory".into()));
    }
    // The root becomes writable inside the sandbox: it must be a directory of its own, never a place that
    // would hand the host (or the sandbox's own /tmp, /dev, /proc) back to the provisioners.
    let tmp = sandbox::tmp_target();
    let forbidden = canon.parent().is_none()
        || canon == tmp
        || ["/proc", "/sys", "/dev", sandbox::RUN].iter().any(|p| canon.starts_with(p))
        || tmp.starts_with(&canon);
    if forbidden {
        return Err(err(format!(
            "{} cannot be an image root (not /, /tmp, /run, /proc, /sys or /dev); use a directory of its own",
            canon.display()
        )));
    }
    Ok(canon)
}

/// A step's host inputs, read or checked before any step runs.
enum Inputs {
    Shell(Vec<ScriptInput>),
    File(Vec<SourceInput>),
}

struct ScriptInput {
    /// `inline script` or `script PATH`, for messages.
    what: String,
    /// How it is announced: `inline script (3 lines)` or `script PATH`.
    announce: String,
    contents: Vec<u8>,
}

enum SourceInput {
    Host { path: PathBuf, name: OsString, is_dir: bool, contents_only: bool },
    Content(Vec<u8>),
}

fn gather_inputs(step: &Step) -> Result<Inputs, String> {
    match &step.action {
        Action::Shell(s) => s
            .scripts
            .iter()
            .map(|script| match script {
                Script::Inline { shebang, lines } => {
                    // As Packer writes it: the shebang line, then each command on its own line.
                    let mut text = format!("#!{shebang}\n");
                    for l in lines {
                        text.push_str(l);
                        text.push('\n');
                    }
                    let n = lines.len();
                    let announce = format!("inline script ({n} line{})", if n == 1 { "" } else { "s" });
                    Ok(ScriptInput { what: "inline script".into(), announce, contents: text.into_bytes() })
                }
                Script::File(path) => {
                    let contents = std::fs::read(path).map_err(|e| format!("script {}: {e}", path.display()))?;
                    let what = format!("script {}", path.display());
                    Ok(ScriptInput { announce: what.clone(), what, contents })
                }
            })
            .collect::<Result<_, String>>()
            .map(Inputs::Shell),
        Action::File(f) => f
            .sources
            .iter()
            .map(|src| match src {
                FileSource::Content(c) => Ok(SourceInput::Content(c.clone().into_bytes())),
                FileSource::Path { path, contents_only } => {
                    let canon = path.canonicalize().map_err(|e| format!("source {}: {e}", path.display()))?;
                    let meta = std::fs::metadata(&canon).map_err(|e| format!("source {}: {e}", path.display()))?;
                    if !meta.is_dir() && !meta.is_file() {
                        return Err(format!("source {}: not a file or directory", path.display()));
                    }
                    if *contents_only && !meta.is_dir() {
                        return Err(format!("source {}: ends with / but is not a directory", path.display()));
                    }
                    let name = canon.file_name().map(OsString::from).unwrap_or_else(|| "source".into());
                    Ok(SourceInput::Host { path: canon, name, is_dir: meta.is_dir(), contents_only: *contents_only })
                }
            })
            .collect::<Result<_, String>>()
            .map(Inputs::File),
    }
}

/// The build's private `/tmp`, kept across its steps (as a VM's is in a Packer build) and removed after.
struct Scratch {
    _dir: tempfile::TempDir,
    tmp: PathBuf,
}

impl Scratch {
    fn new() -> Result<Scratch, BuildError> {
        use std::os::unix::fs::PermissionsExt;
        let err = |e: std::io::Error| BuildError::Scratch(e.to_string());
        let dir = tempfile::Builder::new().prefix("galleon-build-").tempdir().map_err(err)?;
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).map_err(err)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).map_err(err)?;
        Ok(Scratch { _dir: dir, tmp })
    }
}

struct StepCx<'a> {
    root: &'a Path,
    scratch: &'a Scratch,
    plan: &'a Plan,
    /// Numbers the upload directories of the build: each must be new.
    uploads: usize,
}

fn run_step(
    cx: &mut StepCx<'_>,
    step: &Step,
    sref: &StepRef,
    inputs: &Inputs,
    out: &mut Out<'_>,
) -> Result<(), BuildError> {
    if let Some(p) = step.pause_before {
        out.line(Some(sref), &format!("Pausing {} before this step", crate::duration::display(p)));
        thread::sleep(p);
    }
    let attempts = step.max_retries + 1;
    for attempt in 1..=attempts {
        let deadline = step.timeout.map(|t| (Instant::now() + t, t));
        let result = match (&step.action, inputs) {
            (Action::Shell(s), Inputs::Shell(scripts)) => run_shell(cx, s, scripts, sref, deadline, out),
            (Action::File(f), Inputs::File(sources)) => run_file(cx, &f.destination, sources, sref, deadline, out),
            _ => Err(StepFailure::Start { what: "step".into(), message: "inputs do not match the step".into() }),
        };
        match result {
            Ok(()) => break,
            Err(failure) if attempt < attempts => {
                out.line(Some(sref), &format!("{failure}; retrying (attempt {} of {attempts})", attempt + 1));
            }
            Err(failure) => {
                out.line(Some(sref), &format!("failed: {failure}"));
                return Err(BuildError::StepFailed { step: sref.clone(), failure: mask_failure(out.masker, failure) });
            }
        }
    }
    if let Action::Shell(ShellStep { pause_after: Some(p), .. }) = &step.action {
        out.line(Some(sref), &format!("Pausing {} after this step", crate::duration::display(*p)));
        thread::sleep(*p);
    }
    Ok(())
}

fn show_destination(d: &Destination) -> String {
    let p = d.path.display().to_string();
    if p.is_empty() {
        "/ (the image root)".into()
    } else if d.is_dir {
        format!("{p}/")
    } else {
        p
    }
}

fn mask_failure(m: &Masker, f: StepFailure) -> StepFailure {
    match f {
        StepFailure::Exit { what, code } => StepFailure::Exit { what: m.mask(&what), code },
        StepFailure::Signal { what, signal } => StepFailure::Signal { what: m.mask(&what), signal },
        StepFailure::TimedOut { what, after } => StepFailure::TimedOut { what: m.mask(&what), after },
        StepFailure::Start { what, message } => StepFailure::Start { what: m.mask(&what), message: m.mask(&message) },
    }
}

/// The environment of every step process: the host's is not passed on (it may hold galleon's own secrets).
fn base_env(cx: &StepCx<'_>) -> Vec<(OsString, OsString)> {
    vec![
        ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
        // The host's home directories are read-only in the sandbox; tools that keep caches under $HOME
        // (git, npm, pip) work in the private /tmp instead.
        ("HOME".into(), sandbox::tmp_target().into_os_string()),
        ("PACKER_BUILD_NAME".into(), cx.plan.build_name.clone().into()),
        ("PACKER_BUILDER_TYPE".into(), crate::BUILDER_TYPE.into()),
        ("GALLEON_IMAGE_ROOT".into(), cx.root.as_os_str().to_owned()),
    ]
}

/// Packer's `{{.Vars}}`: `KEY='value' ` for each variable, sorted by name, later settings winning, with the
/// build name and type included.
pub(crate) fn flatten_vars(build_name: &str, env: &[(String, String)]) -> String {
    let mut all = std::collections::BTreeMap::new();
    all.insert("PACKER_BUILD_NAME".to_string(), build_name.to_string());
    all.insert("PACKER_BUILDER_TYPE".to_string(), crate::BUILDER_TYPE.to_string());
    for (k, v) in env {
        all.insert(k.clone(), v.clone());
    }
    all.iter().map(|(k, v)| format!("{k}='{}' ", v.replace('\'', r#"'"'"'"#))).collect()
}

fn run_shell(
    cx: &mut StepCx<'_>,
    shell: &ShellStep,
    scripts: &[ScriptInput],
    sref: &StepRef,
    deadline: Option<(Instant, Duration)>,
    out: &mut Out<'_>,
) -> Result<(), StepFailure> {
    let vars = flatten_vars(&cx.plan.build_name, &shell.env);
    let mut env = base_env(cx);
    env.extend(shell.env.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))));
    for (k, script) in scripts.iter().enumerate() {
        out.line(Some(sref), &format!("Provisioning with shell {}", script.announce));
        // Packer's remote name, numbered so each script of a build has its own.
        let path = sandbox::tmp_target().join(format!("script_{}_{}.sh", sref.index, k + 1));
        let path_text = path.display().to_string();
        let command: String = shell
            .execute_command
            .iter()
            .map(|p| match p {
                ExecPiece::Lit(s) => s.as_str(),
                ExecPiece::Path => path_text.as_str(),
                ExecPiece::Vars => vars.as_str(),
            })
            .collect();
        let argv = [OsString::from("/bin/sh"), "-c".into(), command.into()];
        let seeds = [Seed { path: path.clone(), contents: script.contents.clone(), mode: 0o755 }];
        let spec = Spec { root: cx.root, tmp: &cx.scratch.tmp, seeds: &seeds, uploads: &[], argv: &argv, env: &env };
        let outcome = supervise(&spec, deadline, sref, out)
            .map_err(|m| StepFailure::Start { what: script.what.clone(), message: m })?;
        judge(outcome, &script.what, deadline, &shell.valid_exit_codes)?;
    }
    Ok(())
}

/// Copies sources into the root with `cp`, inside the sandbox: the copy can write only where a provisioner
/// could, so a destination that goes through a symlink to the host fails instead of writing there.
const COPY_SH: &str = r#"set -e
src=$1 dst=$2
case $3 in
  file)
    if [ -d "$dst" ]; then exec cp -- "$src" "$dst/"; fi
    mkdir -p -- "$(dirname -- "$dst")"
    exec cp -- "$src" "$dst" ;;
  into)
    mkdir -p -- "$dst"
    exec cp -- "$src" "$dst/" ;;
  dir)
    mkdir -p -- "$dst"
    exec cp -R -P -- "$src" "$dst/" ;;
  contents)
    mkdir -p -- "$dst"
    exec cp -R -P -- "$src/." "$dst/" ;;
  content)
    mkdir -p -- "$(dirname -- "$dst")"
    cat -- "$src" > "$dst" ;;
esac
"#;

fn run_file(
    cx: &mut StepCx<'_>,
    dest: &Destination,
    sources: &[SourceInput],
    sref: &StepRef,
    deadline: Option<(Instant, Duration)>,
    out: &mut Out<'_>,
) -> Result<(), StepFailure> {
    let target = cx.root.join(&dest.path);
    let env = base_env(cx);
    for src in sources {
        let from = match src {
            SourceInput::Host { path, contents_only, .. } => {
                format!("{}{}", path.display(), if *contents_only { "/" } else { "" })
            }
            SourceInput::Content(_) => "content".into(),
        };
        out.line(Some(sref), &format!("Uploading {from} => {}", show_destination(dest)));
        cx.uploads += 1;
        let staging = sandbox::tmp_target().join(format!(".galleon-upload-{}", cx.uploads));
        let (seeds, uploads, inside, mode, what) = match src {
            SourceInput::Host { path, name, is_dir, contents_only } => {
                let mode = match (is_dir, contents_only, dest.is_dir) {
                    (true, true, _) => "contents",
                    (true, false, _) => "dir",
                    (false, _, true) => "into",
                    (false, _, false) => "file",
                };
                let up = Upload { host: path.clone(), dir: staging.clone(), name: name.clone(), is_dir: *is_dir };
                (Vec::new(), vec![up], staging.join(name), mode, format!("upload of {}", path.display()))
            }
            SourceInput::Content(bytes) => {
                let seed = Seed { path: staging.clone(), contents: bytes.clone(), mode: 0o644 };
                (vec![seed], Vec::new(), staging.clone(), "content", "upload of content".to_string())
            }
        };
        let argv = [
            OsString::from("/bin/sh"),
            "-c".into(),
            COPY_SH.into(),
            "galleon-file".into(),
            inside.into_os_string(),
            target.clone().into_os_string(),
            mode.into(),
        ];
        let spec =
            Spec { root: cx.root, tmp: &cx.scratch.tmp, seeds: &seeds, uploads: &uploads, argv: &argv, env: &env };
        let outcome =
            supervise(&spec, deadline, sref, out).map_err(|m| StepFailure::Start { what: what.clone(), message: m })?;
        judge(outcome, &what, deadline, &[0])?;
    }
    Ok(())
}

struct Outcome {
    status: std::process::ExitStatus,
    timed_out: bool,
}

fn judge(o: Outcome, what: &str, deadline: Option<(Instant, Duration)>, valid: &[i32]) -> Result<(), StepFailure> {
    if o.timed_out {
        let after = deadline.map(|(_, t)| t).unwrap_or_default();
        return Err(StepFailure::TimedOut { what: what.to_string(), after });
    }
    match (o.status.code(), o.status.signal()) {
        (Some(code), _) if valid.contains(&code) => Ok(()),
        (Some(code), _) => Err(StepFailure::Exit { what: what.to_string(), code }),
        (None, Some(signal)) => Err(StepFailure::Signal { what: what.to_string(), signal }),
        (None, None) => Err(StepFailure::Exit { what: what.to_string(), code: -1 }),
    }
}

enum Event {
    Line(String),
    Closed,
    Exited,
}

/// The longest line passed on whole; longer output without a newline is cut into pieces of this size.
const MAX_LINE: usize = 16 * 1024;

/// How long output may keep arriving after a step's process exited. Its namespace is dead by then, so the
/// pipes close at once unless something outside the step was handed a copy.
const DRAIN: Duration = Duration::from_secs(2);

/// Starts one sandboxed process, streams its stdout and stderr line by line, enforces the deadline, and
/// kills its process group once it ends (or on the deadline). Returns how it exited.
fn supervise(
    spec: &Spec<'_>,
    deadline: Option<(Instant, Duration)>,
    sref: &StepRef,
    out: &mut Out<'_>,
) -> Result<Outcome, String> {
    let mut sb = sandbox::spawn(spec).map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel::<Event>();
    let mut threads = Vec::new();
    if let Some(stdout) = sb.child.stdout.take() {
        threads.push(read_lines(stdout, tx.clone()));
    }
    if let Some(stderr) = sb.child.stderr.take() {
        threads.push(read_lines(stderr, tx.clone()));
    }
    let streams = threads.len();
    let pid = sb.pgid;
    // Waits for the exit without reaping, so the process group id stays ours until we kill the group.
    threads.push(thread::spawn({
        let tx = tx.clone();
        move || {
            let _ = waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT);
            let _ = tx.send(Event::Exited);
        }
    }));
    drop(tx);

    let (mut open, mut timed_out) = (streams, false);
    // Once the process has exited, how long its output may still take to drain.
    let mut drain_until: Option<Instant> = None;
    while open > 0 || drain_until.is_none() {
        let wake = match (drain_until, deadline) {
            (Some(at), _) => Some(at),
            (None, Some((at, _))) if !timed_out => Some(at),
            _ => None,
        };
        let event = match wake {
            Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(e) => e,
                Err(mpsc::RecvTimeoutError::Timeout) if drain_until.is_some() => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    timed_out = true;
                    let _ = killpg(sb.pgid, Signal::SIGKILL);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(e) => e,
                Err(_) => break,
            },
        };
        match event {
            Event::Line(l) => out.line(Some(sref), &l),
            Event::Closed => open -= 1,
            Event::Exited => {
                // The step's pid 1 is gone, so the kernel has killed its namespace; this also catches anything
                // left in its process group. The group leader is not reaped yet, so the id cannot be reused.
                let _ = killpg(sb.pgid, Signal::SIGKILL);
                drain_until = Some(Instant::now() + DRAIN);
            }
        }
    }
    let _ = killpg(sb.pgid, Signal::SIGKILL);
    let status = sb.child.wait().map_err(|e| format!("waiting for the step: {e}"))?;
    // Reader threads end by themselves when their pipe closes or this receiver is gone; not joined, so a
    // pipe kept open by something outside the step cannot hang the build.
    drop(threads);
    Ok(Outcome { status, timed_out })
}

fn read_lines(stream: impl Read + Send + 'static, tx: mpsc::Sender<Event>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match (&mut reader).take(MAX_LINE as u64).read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf);
                    let line = text.strip_suffix('\n').unwrap_or(&text);
                    let line = line.strip_suffix('\r').unwrap_or(line);
                    if tx.send(Event::Line(line.to_string())).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = tx.send(Event::Closed);
    })
}
