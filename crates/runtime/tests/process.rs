//! The process runtime against real processes: `/bin/sh` scripts as entrypoints in temp dirs, the real
//! agent (this crate's `galleon-test-agent` binary). Every wait is on a condition with a deadline, never
//! a fixed sleep.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use galleon_runtime::procfs;
use galleon_runtime::{
    AgentTuning, CustomScript, ImageSource, InstanceKey, LaunchSpec, Observation, Phase, ProcessRuntime, Runtime,
    RuntimeError,
};

const DEADLINE: Duration = Duration::from_secs(30);

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An image whose root holds one executable `start` script.
struct ScriptImage(String);

impl ImageSource for ScriptImage {
    fn materialize(&self, dest: &Path) -> Result<(), String> {
        let start = dest.join("start");
        fs::write(&start, format!("#!/bin/sh\n{}\n", self.0)).map_err(|e| e.to_string())?;
        fs::set_permissions(&start, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())
    }
    fn describe(&self) -> String {
        "test-image".into()
    }
}

/// An image that fails half-way through the copy.
struct BrokenImage;

impl ImageSource for BrokenImage {
    fn materialize(&self, dest: &Path) -> Result<(), String> {
        fs::write(dest.join("half"), "half a disk").map_err(|e| e.to_string())?;
        Err("the blob store is on fire".into())
    }
    fn describe(&self) -> String {
        "broken-image".into()
    }
}

struct Fixture {
    tmp: tempfile::TempDir,
    rt: ProcessRuntime,
}

fn fast_tuning() -> AgentTuning {
    AgentTuning {
        log_check_interval: Duration::from_millis(20),
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        ..AgentTuning::default()
    }
}

impl Fixture {
    fn new() -> Self {
        Self::with_tuning(fast_tuning())
    }

    fn with_tuning(tuning: AgentTuning) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let rt =
            ProcessRuntime::new(tmp.path().join("instances"), PathBuf::from(env!("CARGO_BIN_EXE_galleon-test-agent")))
                .with_tuning(tuning);
        Fixture { tmp, rt }
    }

    fn key(&self, id: u32) -> InstanceKey {
        InstanceKey::new("ss-0f3a", id)
    }

    /// Data disk 0 and an OS disk whose `start` runs `script`.
    fn prepare(&self, key: &InstanceKey, script: &str) {
        self.rt.make_data_disks(key, &[0]).expect("data disks");
        self.rt.make_os_disk(key, &ScriptImage(script.into())).expect("os disk");
    }

    fn spec(&self, key: &InstanceKey) -> LaunchSpec {
        let disks = self.rt.disks(key, &[0]);
        let mut spec = LaunchSpec::new("start");
        let env = [
            ("GALLEON_INSTANCE_ID", key.instance_id.to_string()),
            ("GALLEON_VMSS", "web".to_string()),
            ("GALLEON_PRIVATE_IP", "127.77.0.5".to_string()),
            ("GALLEON_OS_DISK", disks.os.display().to_string()),
            ("GALLEON_DATA_DISK", disks.data[0].1.display().to_string()),
            ("GALLEON_DATA_DISK_0", disks.data[0].1.display().to_string()),
            ("GALLEON_IMAGE_VERSION", "1.0.0".to_string()),
        ];
        spec.env = env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        spec.stop_grace = Duration::from_secs(5);
        spec
    }

    fn data(&self, key: &InstanceKey) -> PathBuf {
        self.rt.disks(key, &[0]).data[0].1.clone()
    }

    fn dir(&self, key: &InstanceKey) -> PathBuf {
        self.rt.root().join(&key.scale_set).join(key.instance_id.to_string())
    }

    fn wait_phase(&self, key: &InstanceKey, phase: Phase) -> Observation {
        let mut last = None;
        wait_until(&format!("phase {phase:?} of {key}"), || {
            let o = self.rt.observe(key);
            let done = o.phase == phase;
            last = Some(o);
            done
        });
        last.expect("observed")
    }

    fn wait_file(&self, path: &Path) -> String {
        wait_until(&format!("{}", path.display()), || path.exists());
        let mut text = String::new();
        wait_until(&format!("content of {}", path.display()), || {
            text = fs::read_to_string(path).unwrap_or_default();
            text.ends_with('\n')
        });
        text
    }
}

impl Drop for Fixture {
    // Never leave instances running after a failed test.
    fn drop(&mut self) {
        for key in self.rt.list() {
            let _ = self.rt.stop(&key);
        }
    }
}

fn pid_file(path: &Path, f: &Fixture) -> (u32, u64) {
    let pid: u32 = f.wait_file(path).trim().parse().expect("pid");
    let start = procfs::start_time(pid).expect("running");
    (pid, start)
}

#[test]
fn start_runs_the_entrypoint_with_its_environment_cwd_and_own_session() {
    let f = Fixture::new();
    let key = f.key(0);
    f.prepare(&key, r#"env > "$GALLEON_DATA_DISK/env"; pwd > "$GALLEON_DATA_DISK/pwd"; echo $$ > "$GALLEON_DATA_DISK/pid"; exec sleep 1000"#);
    let mut spec = f.spec(&key);
    spec.custom_data = Some(b"#cloud-config\n".to_vec());
    f.rt.start(&key, &spec).expect("start");

    let (pid, _) = pid_file(&f.data(&key).join("pid"), &f);
    let o = f.wait_phase(&key, Phase::Running);
    assert_eq!(o.app_pid, Some(pid));
    assert_eq!(o.starts, 1);
    assert!(o.app_started_ms.is_some());
    let app = procfs::stat(pid).expect("app stat");
    assert_eq!((app.pgrp, app.session), (pid.cast_signed(), pid.cast_signed()), "own session and group");

    let env = fs::read_to_string(f.data(&key).join("env")).expect("env");
    let os = f.rt.disks(&key, &[]).os;
    for line in ["GALLEON_INSTANCE_ID=0", "GALLEON_VMSS=web", "GALLEON_IMAGE_VERSION=1.0.0", "PATH="] {
        assert!(env.lines().any(|l| l.starts_with(line)), "{line} missing from\n{env}");
    }
    assert!(env.contains(&format!("GALLEON_OS_DISK={}", os.display())));
    let custom = env.lines().find_map(|l| l.strip_prefix("GALLEON_CUSTOM_DATA=")).expect("custom data var");
    assert_eq!(fs::read_to_string(custom).expect("custom data"), "#cloud-config\n");
    let pwd = fs::read_to_string(f.data(&key).join("pwd")).expect("pwd");
    assert_eq!(fs::canonicalize(pwd.trim()).expect("pwd"), fs::canonicalize(&os).expect("os"));

    // The agent is no instance: no GALLEON_* in its environment; its own session.
    let agent = o.agent_pid.expect("agent pid");
    let agent_env = fs::read(format!("/proc/{agent}/environ")).expect("agent environ");
    assert!(!agent_env.split(|&b| b == 0).any(|e| e.starts_with(b"GALLEON_")), "agent env has GALLEON_*");
    assert_eq!(procfs::stat(agent).expect("agent stat").session, agent.cast_signed());

    assert!(matches!(f.rt.start(&key, &spec), Err(RuntimeError::Running(_))), "a running instance cannot start");

    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(status.contains("SigBlk:\t0000000000000000"), "the app starts with blocked signals:\n{status}");
    let began = Instant::now();
    f.rt.stop(&key).expect("stop");
    assert!(began.elapsed() < spec.stop_grace, "an app that obeys SIGTERM waited for SIGKILL");
    assert_eq!(f.rt.observe(&key).phase, Phase::Stopped);
    assert!(procfs::stat(pid).is_none_or(|s| s.is_dead()), "app still alive after stop");
    assert!(procfs::stat(agent).is_none_or(|s| s.is_dead()), "agent still alive after stop");
    f.rt.stop(&key).expect("stop is idempotent");
}

#[test]
fn stop_kills_a_tree_that_ignores_sigterm_after_the_grace() {
    let f = Fixture::new();
    let key = f.key(1);
    f.prepare(
        &key,
        r#"trap '' TERM; sleep 1000 & echo $! > "$GALLEON_DATA_DISK/child"; echo $$ > "$GALLEON_DATA_DISK/pid"; while :; do sleep 1; done"#,
    );
    let mut spec = f.spec(&key);
    spec.stop_grace = Duration::from_millis(300);
    f.rt.start(&key, &spec).expect("start");
    let (shell, shell_start) = pid_file(&f.data(&key).join("pid"), &f);
    let (child, child_start) = pid_file(&f.data(&key).join("child"), &f);

    let began = Instant::now();
    f.rt.stop(&key).expect("stop");
    assert!(began.elapsed() >= Duration::from_millis(300), "SIGKILL came before the grace");
    assert!(!procfs::is_alive(shell, shell_start), "the TERM-ignoring shell survived");
    assert!(!procfs::is_alive(child, child_start), "its child survived");
    assert!(procfs::group_members(shell).is_empty(), "members of the group survived");
    assert_eq!(f.rt.observe(&key).phase, Phase::Stopped);
}

#[test]
fn stop_also_kills_processes_that_left_the_group() {
    if !Path::new("/usr/bin/setsid").exists() {
        eprintln!("skipped: no /usr/bin/setsid");
        return;
    }
    let f = Fixture::new();
    let key = f.key(2);
    f.prepare(&key, r#"/usr/bin/setsid sleep 1000 & echo $! > "$GALLEON_DATA_DISK/escaped"; exec sleep 1000"#);
    f.rt.start(&key, &f.spec(&key)).expect("start");
    let (pid, start) = pid_file(&f.data(&key).join("escaped"), &f);
    wait_until("the escapee's own session", || procfs::stat(pid).is_some_and(|s| s.session == pid.cast_signed()));
    f.rt.stop(&key).expect("stop");
    assert!(!procfs::is_alive(pid, start), "a process that left the group survived stop");
}

#[test]
fn a_crashing_entrypoint_is_restarted_with_backoff_and_its_exits_recorded() {
    let f = Fixture::new();
    let key = f.key(3);
    f.prepare(&key, "echo crash >&2; exit 3");
    f.rt.start(&key, &f.spec(&key)).expect("start");
    let mut o = Observation::default();
    wait_until("four exits", || {
        o = f.rt.observe(&key);
        o.exits.len() >= 4
    });
    assert!(matches!(o.phase, Phase::BackingOff | Phase::Running), "{:?}", o.phase);
    assert!(o.starts >= 4);
    assert!(o.exits.iter().all(|e| e.code == Some(3) && e.signal.is_none()), "{:?}", o.exits);
    // Delays 100, 200, 400 (the cap) ms between one exit and the next start.
    let gaps: Vec<i64> = o.exits.windows(2).map(|w| w[1].at_ms - w[0].at_ms).collect();
    for (gap, delay) in gaps.iter().zip([100, 200, 400]) {
        assert!(*gap >= delay - 5, "gaps {gaps:?} shorter than the backoff");
    }
    let log = f.rt.boot_log(&key, None).expect("boot log");
    assert!(log.stderr.matches("crash").count() >= 4, "{log:?}");
    f.rt.stop(&key).expect("stop");
    assert_eq!(f.rt.observe(&key).phase, Phase::Stopped);
}

fn script(command: &str) -> CustomScript {
    CustomScript { file_uris: vec![], command: command.into(), command_is_secret: false, fingerprint: "v1".into() }
}

#[test]
fn custom_script_runs_once_per_os_disk_and_again_when_its_settings_change() {
    let f = Fixture::new();
    let key = f.key(4);
    f.prepare(&key, r#"test -f "$GALLEON_OS_DISK/provisioned" && exec sleep 1000; exit 9"#);
    let mut spec = f.spec(&key);
    spec.custom_script = Some(script(
        r#"echo run >> "$GALLEON_DATA_DISK/runs"; pwd > "$GALLEON_DATA_DISK/script-pwd"; echo out-line; echo err-line >&2; touch "$GALLEON_OS_DISK/provisioned""#,
    ));
    let runs = || fs::read_to_string(f.data(&key).join("runs")).unwrap_or_default().lines().count();

    f.rt.start(&key, &spec).expect("start");
    let o = f.wait_phase(&key, Phase::Running);
    let result = o.custom_script.expect("script result");
    assert!(result.succeeded);
    assert_eq!(result.exit_code, Some(0));
    assert_eq!(result.stdout_tail, "out-line\n");
    assert_eq!(result.stderr_tail, "err-line\n");
    assert_eq!(o.starts, 1);
    assert!(o.exits.is_empty(), "the entrypoint ran before provisioning finished: {:?}", o.exits);
    assert!(
        fs::read_to_string(f.data(&key).join("script-pwd")).expect("pwd").trim().ends_with("ext/CustomScript/download")
    );
    assert_eq!(runs(), 1);

    // Restart on the same OS disk: not again, and the result is still reported.
    f.rt.stop(&key).expect("stop");
    f.rt.start(&key, &spec).expect("start");
    assert!(f.wait_phase(&key, Phase::Running).custom_script.is_some_and(|r| r.succeeded));
    assert_eq!(runs(), 1);

    // A fresh OS disk (reimage, upgrade): again.
    f.rt.stop(&key).expect("stop");
    f.rt.make_os_disk(
        &key,
        &ScriptImage(r#"test -f "$GALLEON_OS_DISK/provisioned" && exec sleep 1000; exit 9"#.into()),
    )
    .expect("reimage");
    f.rt.start(&key, &spec).expect("start");
    f.wait_phase(&key, Phase::Running);
    assert_eq!(runs(), 2);

    // New settings: again.
    f.rt.stop(&key).expect("stop");
    spec.custom_script.as_mut().expect("script").fingerprint = "v2".into();
    f.rt.start(&key, &spec).expect("start");
    f.wait_phase(&key, Phase::Running);
    assert_eq!(runs(), 3);
}

#[test]
fn a_failed_custom_script_keeps_the_agent_up_and_the_entrypoint_down() {
    let f = Fixture::new();
    let key = f.key(5);
    f.prepare(&key, r#"touch "$GALLEON_DATA_DISK/app-started"; exec sleep 1000"#);
    let mut spec = f.spec(&key);
    spec.custom_script = Some(script("echo working; echo boom >&2; exit 1"));
    f.rt.start(&key, &spec).expect("start");
    let o = f.wait_phase(&key, Phase::ProvisioningFailed);
    let result = o.custom_script.expect("script result");
    assert!(!result.succeeded);
    assert_eq!(result.exit_code, Some(1));
    assert_eq!(result.stderr_tail, "boom\n");
    assert_eq!(result.stdout_tail, "working\n");
    assert!(result.message.contains("status 1"), "{}", result.message);
    assert_eq!(o.starts, 0);
    assert_eq!(o.app_pid, None);
    assert!(o.agent_pid.is_some(), "the agent stays up: running but failed");
    assert!(!f.data(&key).join("app-started").exists(), "the entrypoint ran");
    f.rt.stop(&key).expect("stop");
    assert_eq!(f.rt.observe(&key).phase, Phase::Stopped);
}

/// Serves `body` over HTTP/1.1 for one request on a loopback port; returns the port.
fn serve_once(body: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ =
                write!(conn, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    port
}

#[test]
fn custom_script_file_uris_are_fetched_from_file_and_http() {
    let f = Fixture::new();
    let key = f.key(6);
    f.prepare(&key, "exec sleep 1000");
    let local = f.tmp.path().join("setup.sh");
    fs::write(&local, "#!/bin/sh\necho local >> \"$GALLEON_DATA_DISK/fetched\"\n").expect("write");
    let port = serve_once("#!/bin/sh\necho remote >> \"$GALLEON_DATA_DISK/fetched\"\n");
    let mut spec = f.spec(&key);
    let mut s = script("./setup.sh && ./remote.sh");
    s.file_uris = vec![format!("file://{}", local.display()), format!("http://127.0.0.1:{port}/dl/remote.sh?sv=token")];
    spec.custom_script = Some(s);
    f.rt.start(&key, &spec).expect("start");
    let o = f.wait_phase(&key, Phase::Running);
    assert!(o.custom_script.is_some_and(|r| r.succeeded));
    assert_eq!(fs::read_to_string(f.data(&key).join("fetched")).expect("fetched"), "local\nremote\n");
    f.rt.stop(&key).expect("stop");
}

#[test]
fn a_failed_download_is_a_provisioning_failure_naming_the_uri() {
    let f = Fixture::new();
    let key = f.key(7);
    f.prepare(&key, "exec sleep 1000");
    let mut spec = f.spec(&key);
    let mut s = script("true");
    s.file_uris = vec!["file:///no/such/dir/setup.sh".into()];
    spec.custom_script = Some(s);
    f.rt.start(&key, &spec).expect("start");
    let o = f.wait_phase(&key, Phase::ProvisioningFailed);
    let result = o.custom_script.expect("script result");
    assert_eq!(result.exit_code, None);
    assert!(result.message.contains("file:///no/such/dir/setup.sh"), "{}", result.message);
    assert_eq!(o.starts, 0);
    f.rt.stop(&key).expect("stop");
}

#[test]
fn a_protected_command_stays_in_its_0600_file() {
    const SECRET: &str = "s3cr3t-token-4711";
    let f = Fixture::new();
    let key = f.key(8);
    f.prepare(&key, "exec sleep 1000");
    let mut spec = f.spec(&key);
    let mut s = script(&format!("echo provisioned # {SECRET}"));
    s.command_is_secret = true;
    spec.custom_script = Some(s);
    assert!(!format!("{spec:?}").contains(SECRET), "Debug shows the secret");
    f.rt.start(&key, &spec).expect("start");
    let o = f.wait_phase(&key, Phase::Running);
    assert!(o.custom_script.is_some_and(|r| r.succeeded));
    f.rt.stop(&key).expect("stop");

    let dir = f.dir(&key);
    let protected = dir.join("protected.json");
    assert!(fs::read_to_string(&protected).expect("protected").contains(SECRET));
    assert_eq!(fs::metadata(&protected).expect("meta").permissions().mode() & 0o777, 0o600);
    assert_eq!(fs::metadata(dir.join("launch.json")).expect("meta").permissions().mode() & 0o777, 0o600);
    for file in ["agent.json", "launch.json", "agent.log", "ext/CustomScript/status.json"] {
        let text = fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(!text.contains(SECRET), "{file} holds the secret:\n{text}");
    }
}

#[test]
fn data_disks_survive_reimage_and_restart_and_a_failed_reimage_changes_nothing() {
    let f = Fixture::new();
    let key = f.key(9);
    f.rt.make_data_disks(&key, &[0, 1]).expect("data disks");
    f.rt.make_os_disk(&key, &ScriptImage(r#"touch "$GALLEON_OS_DISK/scratch"; exec sleep 1000"#.into())).expect("os");
    let disks = f.rt.disks(&key, &[0, 1]);
    fs::write(disks.data[0].1.join("keep"), "precious").expect("write");
    fs::write(disks.data[1].1.join("keep"), "also").expect("write");
    let os = disks.os.clone();

    f.rt.start(&key, &f.spec(&key)).expect("start");
    wait_until("scratch on the OS disk", || os.join("scratch").exists());
    assert!(matches!(f.rt.make_os_disk(&key, &ScriptImage("true".into())), Err(RuntimeError::Running(_))));
    f.rt.stop(&key).expect("stop");
    f.rt.start(&key, &f.spec(&key)).expect("start again");
    f.wait_phase(&key, Phase::Running);
    f.rt.stop(&key).expect("stop");
    assert!(os.join("scratch").exists(), "stop/start keeps the OS disk");

    // Reimage: a fresh OS disk, the same data disks.
    f.rt.make_os_disk(&key, &ScriptImage("exec sleep 1000".into())).expect("reimage");
    assert!(!os.join("scratch").exists(), "the OS disk was not fresh");
    assert!(fs::read_to_string(os.join("start")).expect("start").contains("exec sleep 1000"));
    f.rt.make_data_disks(&key, &[0, 1]).expect("data disks again");
    assert_eq!(fs::read_to_string(disks.data[0].1.join("keep")).expect("keep"), "precious");
    assert_eq!(fs::read_to_string(disks.data[1].1.join("keep")).expect("keep"), "also");

    // A copy that fails half-way leaves the old disk, and nothing else.
    let err = f.rt.make_os_disk(&key, &BrokenImage).expect_err("broken image");
    assert!(matches!(&err, RuntimeError::Image { message, .. } if message.contains("on fire")), "{err}");
    assert!(os.join("start").exists() && !os.join("half").exists(), "half a disk was swapped in");
    let extra: Vec<_> = fs::read_dir(f.dir(&key))
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".os"))
        .collect();
    assert!(extra.is_empty(), "leftover copies: {extra:?}");
    assert_eq!(fs::read_to_string(disks.data[0].1.join("keep")).expect("keep"), "precious");
}

#[test]
fn a_new_runtime_value_adopts_a_running_instance() {
    let f = Fixture::new();
    let key = f.key(10);
    f.prepare(&key, "exec sleep 1000");
    f.rt.start(&key, &f.spec(&key)).expect("start");
    let before = f.wait_phase(&key, Phase::Running);

    // As after a control-plane restart: nothing in memory, same directory.
    let again = ProcessRuntime::new(f.rt.root().to_path_buf(), PathBuf::from(env!("CARGO_BIN_EXE_galleon-test-agent")));
    assert_eq!(again.list(), vec![key.clone()]);
    let after = again.observe(&key);
    assert_eq!(after.phase, Phase::Running);
    assert_eq!((after.agent_pid, after.app_pid), (before.agent_pid, before.app_pid));
    assert!(matches!(again.start(&key, &f.spec(&key)), Err(RuntimeError::Running(_))));
    again.stop(&key).expect("stop");
    assert_eq!(f.rt.observe(&key).phase, Phase::Stopped);
}

#[test]
fn a_killed_agent_is_gone_and_stop_cleans_up_its_app() {
    let f = Fixture::new();
    let key = f.key(11);
    f.prepare(&key, "exec sleep 1000");
    f.rt.start(&key, &f.spec(&key)).expect("start");
    let o = f.wait_phase(&key, Phase::Running);
    let (agent, app) = (o.agent_pid.expect("agent"), o.app_pid.expect("app"));
    let app_start = procfs::start_time(app).expect("app start");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent.cast_signed()), nix::sys::signal::Signal::SIGKILL)
        .expect("kill agent");

    let gone = f.wait_phase(&key, Phase::Gone);
    assert_eq!(gone.agent_pid, None);
    assert_eq!(gone.app_pid, Some(app), "the app outlives its agent");
    assert!(procfs::is_alive(app, app_start));

    f.rt.stop(&key).expect("stop");
    assert!(!procfs::is_alive(app, app_start), "stop left the orphaned app running");
    assert_eq!(f.rt.observe(&key).phase, Phase::Stopped);
    f.rt.start(&key, &f.spec(&key)).expect("start after re-adoption");
    f.wait_phase(&key, Phase::Running);
}

#[test]
fn start_after_a_dead_agent_never_runs_two_copies() {
    let f = Fixture::new();
    let key = f.key(12);
    f.prepare(&key, "exec sleep 1000");
    f.rt.start(&key, &f.spec(&key)).expect("start");
    let o = f.wait_phase(&key, Phase::Running);
    let app = o.app_pid.expect("app");
    let app_start = procfs::start_time(app).expect("app start");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(o.agent_pid.expect("agent").cast_signed()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill agent");
    f.wait_phase(&key, Phase::Gone);
    f.rt.start(&key, &f.spec(&key)).expect("start");
    assert!(!procfs::is_alive(app, app_start), "the old app still runs beside the new one");
    let new = f.wait_phase(&key, Phase::Running);
    assert_ne!(new.app_pid, Some(app));
}

#[test]
fn run_command_runs_in_the_instance_environment_and_honours_its_timeout() {
    let f = Fixture::new();
    let key = f.key(13);
    f.prepare(&key, "exec sleep 1000");
    assert!(matches!(
        f.rt.run_command(&key, "true", &BTreeMap::new(), Duration::from_secs(5)),
        Err(RuntimeError::NeverStarted(_))
    ));
    f.rt.start(&key, &f.spec(&key)).expect("start");
    f.wait_phase(&key, Phase::Running);

    let extra = BTreeMap::from([("EXTRA".to_string(), "x y".to_string())]);
    let r =
        f.rt.run_command(
            &key,
            r#"echo "$GALLEON_INSTANCE_ID $EXTRA"; pwd; echo err >&2; exit 3"#,
            &extra,
            Duration::from_secs(20),
        )
        .expect("run");
    let os = fs::canonicalize(f.rt.disks(&key, &[]).os).expect("os");
    assert_eq!(r.stdout, format!("13 x y\n{}\n", os.display()));
    assert_eq!(r.stderr, "err\n");
    assert_eq!((r.exit_code, r.signal, r.timed_out), (Some(3), None, false));

    let began = Instant::now();
    let r =
        f.rt.run_command(
            &key,
            r#"echo started; echo $$ > "$GALLEON_DATA_DISK/rc-pid"; exec sleep 1000"#,
            &BTreeMap::new(),
            Duration::from_millis(300),
        )
        .expect("run");
    assert!(r.timed_out);
    assert_eq!(r.signal, Some(9));
    assert_eq!(r.stdout, "started\n");
    assert!(began.elapsed() < Duration::from_secs(10));
    let pid: u32 = fs::read_to_string(f.data(&key).join("rc-pid")).expect("pid").trim().parse().expect("pid");
    assert!(procfs::stat(pid).is_none_or(|s| s.is_dead()), "the timed-out command still runs");
    assert_eq!(f.rt.observe(&key).phase, Phase::Running, "the instance is untouched");
    f.rt.stop(&key).expect("stop");
}

#[test]
fn logs_are_rotated_when_they_pass_the_cap() {
    let f = Fixture::with_tuning(AgentTuning { log_cap_bytes: 4096, ..fast_tuning() });
    let key = f.key(14);
    f.prepare(
        &key,
        r#"i=0; while [ $i -lt 400 ]; do echo "line $i padding padding padding"; i=$((i+1)); done; touch "$GALLEON_DATA_DISK/written"; exec sleep 1000"#,
    );
    f.rt.start(&key, &f.spec(&key)).expect("start");
    let (stdout, _) = f.rt.log_paths(&key);
    let rotated = stdout.with_file_name("stdout.log.1");
    wait_until("the log written", || f.data(&key).join("written").exists());
    wait_until("rotation below the cap", || rotated.exists() && fs::metadata(&stdout).is_ok_and(|m| m.len() <= 4096));
    let old = fs::read_to_string(&rotated).expect("rotated");
    assert!(old.len() > 4096 && old.contains("line "), "rotated part: {} bytes", old.len());
    let log = f.rt.boot_log(&key, Some(1)).expect("boot log");
    assert_eq!(log.stdout, "line 399 padding padding padding\n");
    f.rt.stop(&key).expect("stop");
}

#[test]
fn boot_log_returns_the_tail_of_each_stream() {
    let f = Fixture::new();
    let key = f.key(15);
    f.prepare(
        &key,
        r#"echo one; echo two; echo three; echo oops >&2; touch "$GALLEON_DATA_DISK/done"; exec sleep 1000"#,
    );
    f.rt.start(&key, &f.spec(&key)).expect("start");
    wait_until("output", || f.data(&key).join("done").exists());
    let tail = f.rt.boot_log(&key, Some(2)).expect("boot log");
    assert_eq!(tail.stdout, "two\nthree\n");
    assert_eq!(tail.stderr, "oops\n");
    let all = f.rt.boot_log(&key, None).expect("boot log");
    assert_eq!(all.stdout, "one\ntwo\nthree\n");
    let (out, err) = f.rt.log_paths(&key);
    assert!(out.ends_with("logs/stdout.log") && err.ends_with("logs/stderr.log"));
    f.rt.stop(&key).expect("stop");
}

#[test]
fn delete_stops_and_removes_everything() {
    let f = Fixture::new();
    let key = f.key(16);
    f.prepare(&key, "exec sleep 1000");
    f.rt.start(&key, &f.spec(&key)).expect("start");
    let o = f.wait_phase(&key, Phase::Running);
    let app = o.app_pid.expect("app");
    let app_start = procfs::start_time(app).expect("start");
    f.rt.delete(&key).expect("delete");
    assert!(!procfs::is_alive(app, app_start));
    assert!(!f.dir(&key).exists());
    assert!(f.rt.list().is_empty());
    assert_eq!(f.rt.observe(&key), Observation::default());
    f.rt.delete(&key).expect("delete is idempotent");
    assert!(matches!(f.rt.boot_log(&key, None), Err(RuntimeError::NotFound(_))));
}

#[test]
fn keys_that_would_escape_the_root_are_refused() {
    let f = Fixture::new();
    for bad in ["", "..", "../x", "a/b", ".hidden"] {
        let key = InstanceKey::new(bad, 0);
        assert!(matches!(f.rt.make_data_disks(&key, &[0]), Err(RuntimeError::InvalidKey { .. })), "{bad:?}");
    }
    assert!(matches!(f.rt.start(&f.key(17), &f.spec(&f.key(17))), Err(RuntimeError::NoOsDisk(_))));
}

#[test]
fn list_finds_every_instance_directory() {
    let f = Fixture::new();
    for (ss, id) in [("b", 2), ("a", 10), ("a", 1)] {
        f.rt.make_data_disks(&InstanceKey::new(ss, id), &[0]).expect("disk");
    }
    fs::create_dir_all(f.rt.root().join("a").join("+3")).expect("stray dir");
    let keys = f.rt.list();
    assert_eq!(keys, vec![InstanceKey::new("a", 1), InstanceKey::new("a", 10), InstanceKey::new("b", 2)]);
}

#[test]
fn stop_during_provisioning_kills_the_script_and_it_runs_again_next_start() {
    let f = Fixture::new();
    let key = f.key(18);
    f.prepare(&key, "exec sleep 1000");
    let mut spec = f.spec(&key);
    spec.custom_script = Some(script(
        r#"n=$(cat "$GALLEON_DATA_DISK/n" 2>/dev/null || echo 0); echo $((n+1)) > "$GALLEON_DATA_DISK/n"; echo $$ > "$GALLEON_DATA_DISK/script-pid-$n"; exec sleep 1000"#,
    ));

    // Stopped through the agent.
    f.rt.start(&key, &spec).expect("start");
    let (first, first_start) = pid_file(&f.data(&key).join("script-pid-0"), &f);
    assert_eq!(f.rt.observe(&key).phase, Phase::Provisioning);
    f.rt.stop(&key).expect("stop");
    assert!(!procfs::is_alive(first, first_start), "the script survived stop");

    // Not finished, so it runs again; this time its agent dies and `stop` finds the script by agent.json.
    f.rt.start(&key, &spec).expect("start");
    let (second, second_start) = pid_file(&f.data(&key).join("script-pid-1"), &f);
    let agent = f.rt.observe(&key).agent_pid.expect("agent");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent.cast_signed()), nix::sys::signal::Signal::SIGKILL)
        .expect("kill agent");
    f.wait_phase(&key, Phase::Gone);
    assert!(procfs::is_alive(second, second_start));
    f.rt.stop(&key).expect("stop");
    assert!(!procfs::is_alive(second, second_start), "the script of a dead agent survived stop");
    assert_eq!(f.rt.observe(&key).phase, Phase::Stopped);
}
