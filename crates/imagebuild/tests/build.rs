//! Builds run for real: `/bin/sh` provisioners in the sandbox against temporary image roots. These need
//! root (for the mount namespace), as galleon does.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use expect_test::expect;
use galleon_imagebuild::{BuildError, StepFailure, parse, resolve, run, sandbox_available};

struct Build {
    result: Result<(), BuildError>,
    lines: Vec<String>,
}

impl Build {
    fn output(&self) -> String {
        self.lines.join("\n")
    }

    fn error(&self) -> String {
        match &self.result {
            Ok(()) => panic!("the build succeeded; output:\n{}", self.output()),
            Err(e) => e.to_string(),
        }
    }

    fn ok(&self) -> &Self {
        if let Err(e) = &self.result {
            panic!("build failed: {e}\noutput:\n{}", self.output());
        }
        self
    }
}

fn build(json: &str, vars: &[(&str, &str)], root: &Path) -> Build {
    let t = parse(json).unwrap_or_else(|e| panic!("template: {e}"));
    let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let plan = resolve(&t, &vars, &[]).unwrap_or_else(|e| panic!("resolve: {e}"));
    let mut lines = Vec::new();
    let result = run(&plan, root, &mut |l| lines.push(l.to_string()));
    Build { result, lines }
}

/// A template with one galleon builder and these provisioners.
fn template(provisioners: &str) -> String {
    format!(r#"{{"builders": [{{"type": "galleon", "managed_image_name": "img"}}], "provisioners": {provisioners}}}"#)
}

/// A directory on the host outside /tmp (which the sandbox replaces with its own).
/// A host directory the sandbox sees (read-only): in the target directory, unless the checkout lives
/// under a path the sandbox replaces with a private one (`/tmp`, `/run`, `/dev/shm`), then in `/var/tmp`.
fn host_dir() -> tempfile::TempDir {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target = target.canonicalize().unwrap_or_else(|_| target.to_path_buf());
    let private =
        ["/tmp", "/run", "/dev/shm"].iter().any(|p| Path::new(p).canonicalize().is_ok_and(|p| target.starts_with(p)));
    let parent = if private { Path::new("/var/tmp") } else { target.as_path() };
    tempfile::tempdir_in(parent).expect("temp dir the sandbox sees")
}

fn read(p: impl AsRef<Path>) -> String {
    fs::read_to_string(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}

#[test]
fn the_sandbox_is_available_here() {
    sandbox_available().expect("these tests run as root on Linux 6");
}

#[test]
fn seed_003_sed_provisioner_and_file_upload() {
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path().join("root");
    fs::create_dir(&root).expect("root");
    fs::write(root.join("index.html"), "<title>Welcome v1</title>\n").expect("page");
    fs::write(work.path().join("extra.txt"), "extra\n").expect("extra");
    let json = format!(
        r#"{{"variables": {{"title": null}},
            "builders": [{{"type": "galleon", "source_dir": "/unused",
                           "shared_image_gallery_destination": {{"resource_group": "rg", "gallery_name": "g",
                                                                "image_name": "web", "image_version": "2.0.0"}}}}],
            "provisioners": [
              {{"type": "shell", "inline": ["sed -i -e 's/Welcome v1/{{{{user `title`}}}}/' index.html", "echo edited $PACKER_BUILD_NAME"]}},
              {{"type": "file", "source": "{}", "destination": "extra.txt"}}
            ]}}"#,
        work.path().join("extra.txt").display()
    );
    let b = build(&json, &[("title", "Welcome v2")], &root);
    b.ok();
    assert_eq!(read(root.join("index.html")), "<title>Welcome v2</title>\n");
    assert_eq!(read(root.join("extra.txt")), "extra\n");
    let src = work.path().join("extra.txt").display().to_string();
    expect![[r#"
        ==> galleon: [1/2 shell] Provisioning with shell inline script (2 lines)
        ==> galleon: [1/2 shell] edited galleon
        ==> galleon: [2/2 file] Uploading SRC => extra.txt
        ==> galleon: provisioning finished (2 steps)"#]]
    .assert_eq(&b.output().replace(&src, "SRC"));
}

#[test]
fn a_root_outside_tmp_works_too() {
    let root = host_dir();
    build(
        &template(
            r#"[{"type": "shell", "inline": ["echo hi > made-here", "test \"$(pwd)\" = \"$GALLEON_IMAGE_ROOT\""]}]"#,
        ),
        &[],
        root.path(),
    )
    .ok();
    assert_eq!(read(root.path().join("made-here")), "hi\n");
}

#[test]
fn scripts_environment_vars_and_execute_command() {
    let root = tempfile::tempdir().expect("root");
    let scripts = tempfile::tempdir().expect("scripts");
    let (a, b) = (scripts.path().join("a.sh"), scripts.path().join("b.sh"));
    fs::write(&a, "echo \"a sees GREETING=$GREETING\"\necho a >> order\n").expect("a");
    fs::write(&b, "#!/bin/sh\necho \"b sees $QUOTED and $PACKER_BUILDER_TYPE\"\necho b >> order\n").expect("b");
    let json = template(&format!(
        r#"[{{"type": "shell", "script": "{a}", "environment_vars": ["GREETING=hello world"]}},
            {{"type": "shell", "scripts": ["{b}", "{a}"], "environment_vars": ["QUOTED=it's \"fine\"", "GREETING=again"],
              "execute_command": "env -i {{{{.Vars}}}} /bin/sh {{{{.Path}}}}"}}]"#,
        a = a.display(),
        b = b.display()
    ));
    let out = build(&json, &[], root.path());
    out.ok();
    assert_eq!(read(root.path().join("order")), "a\nb\na\n");
    // `env -i` leaves only what {{.Vars}} sets, so what b and a see came through it.
    let shown: Vec<&str> = out.lines.iter().map(|l| l.as_str()).filter(|l| l.contains(" sees ")).collect();
    expect![[r#"
        ==> galleon: [1/2 shell] a sees GREETING=hello world
        ==> galleon: [2/2 shell] b sees it's "fine" and galleon
        ==> galleon: [2/2 shell] a sees GREETING=again"#]]
    .assert_eq(&shown.join("\n"));
}

#[test]
fn inline_runs_under_sh_e_unless_the_shebang_says_otherwise() {
    let root = tempfile::tempdir().expect("root");
    let strict =
        build(&template(r#"[{"type": "shell", "inline": ["false", "touch strict-after"]}]"#), &[], root.path());
    expect!["step 1/1 shell failed: inline script exited with status 1"].assert_eq(&strict.error());
    assert!(!root.path().join("strict-after").exists(), "the first failing command fails the step");

    let lax = r#"[{"type": "shell", "inline_shebang": "/bin/sh", "inline": ["false", "touch lax-after"]}]"#;
    build(&template(lax), &[], root.path()).ok();
    assert!(root.path().join("lax-after").exists());

    let traced = r#"[{"type": "shell", "inline_shebang": "/bin/sh -x", "inline": ["echo traced"]}]"#;
    let b = build(&template(traced), &[], root.path());
    assert!(b.ok().lines.iter().any(|l| l.ends_with("+ echo traced")), "{}", b.output());
}

#[test]
fn valid_exit_codes_and_retries() {
    let root = tempfile::tempdir().expect("root");
    build(&template(r#"[{"type": "shell", "inline": ["exit 3"], "valid_exit_codes": [0, 3]}]"#), &[], root.path()).ok();
    // Fails on the first attempt, succeeds on the second.
    let flaky = r#"[{"type": "shell", "max_retries": 2, "inline": [
        "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; test $n -ge 2"]}]"#;
    let b = build(&template(flaky), &[], root.path());
    b.ok();
    assert_eq!(read(root.path().join("count")), "2\n");
    assert!(b.output().contains("inline script exited with status 1; retrying (attempt 2 of 3)"), "{}", b.output());
}

#[test]
fn file_provisioner_copies_files_and_directories() {
    let root = tempfile::tempdir().expect("root");
    let src = tempfile::tempdir().expect("src");
    let s = src.path();
    fs::write(s.join("one.txt"), "one\n").expect("one");
    fs::create_dir_all(s.join("site/css")).expect("site");
    fs::write(s.join("site/index.html"), "index\n").expect("index");
    fs::write(s.join("site/css/a.css"), "css\n").expect("css");
    fs::write(s.join("site/start"), "#!/bin/sh\n").expect("start");
    fs::set_permissions(s.join("site/start"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::create_dir(root.path().join("existing")).expect("existing dir");
    let json = template(&format!(
        r#"[{{"type": "file", "source": "{s}/one.txt", "destination": "/etc/renamed.txt"}},
            {{"type": "file", "source": "{s}/one.txt", "destination": "into/"}},
            {{"type": "file", "source": "{s}/one.txt", "destination": "existing"}},
            {{"type": "file", "source": "{s}/site", "destination": "/srv"}},
            {{"type": "file", "source": "{s}/site/", "destination": "app"}},
            {{"type": "file", "sources": ["{s}/one.txt", "{s}/site/css"], "destination": "many/"}},
            {{"type": "file", "content": "motd {{{{build_name}}}}\n", "destination": "etc/motd"}}]"#,
        s = s.display()
    ));
    build(&json, &[], root.path()).ok();
    let r = root.path();
    assert_eq!(read(r.join("etc/renamed.txt")), "one\n");
    assert_eq!(read(r.join("into/one.txt")), "one\n");
    assert_eq!(read(r.join("existing/one.txt")), "one\n");
    assert_eq!(read(r.join("srv/site/index.html")), "index\n");
    assert_eq!(read(r.join("srv/site/css/a.css")), "css\n");
    assert_eq!(read(r.join("app/index.html")), "index\n");
    assert_eq!(read(r.join("app/css/a.css")), "css\n");
    assert_eq!(read(r.join("many/one.txt")), "one\n");
    assert_eq!(read(r.join("many/css/a.css")), "css\n");
    assert_eq!(read(r.join("etc/motd")), "motd galleon\n");
    let mode = fs::metadata(r.join("app/start")).expect("start").permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "executable bits survive the copy");
}

#[test]
fn a_failed_step_stops_the_build_there() {
    let root = tempfile::tempdir().expect("root");
    let json = template(
        r#"[{"type": "shell", "inline": ["touch step1"]},
            {"type": "shell", "name": "break it", "inline": ["echo about to fail >&2", "exit 1"]},
            {"type": "shell", "inline": ["touch step3"]}]"#,
    );
    let b = build(&json, &[], root.path());
    expect![[r#"step 2/3 shell "break it" failed: inline script exited with status 1"#]].assert_eq(&b.error());
    match &b.result {
        Err(BuildError::StepFailed { step, failure: StepFailure::Exit { code: 1, .. } }) => {
            assert_eq!((step.index, step.kind, step.name.as_deref()), (2, "shell", Some("break it")));
        }
        other => panic!("{other:?}"),
    }
    assert!(root.path().join("step1").exists());
    assert!(!root.path().join("step3").exists(), "later steps do not run");
    expect![[r#"
        ==> galleon: [1/3 shell] Provisioning with shell inline script (1 line)
        ==> galleon: [2/3 shell "break it"] Provisioning with shell inline script (2 lines)
        ==> galleon: [2/3 shell "break it"] about to fail
        ==> galleon: [2/3 shell "break it"] failed: inline script exited with status 1"#]]
    .assert_eq(&b.output());
}

#[test]
fn a_missing_script_fails_before_anything_runs() {
    let root = tempfile::tempdir().expect("root");
    let json = template(
        r#"[{"type": "shell", "inline": ["touch ran"]}, {"type": "shell", "script": "/nonexistent/setup.sh"}]"#,
    );
    let b = build(&json, &[], root.path());
    expect!["step 2/2 shell: script /nonexistent/setup.sh: No such file or directory (os error 2)"]
        .assert_eq(&b.error());
    assert!(!root.path().join("ran").exists());
}

#[test]
fn provisioners_cannot_change_the_host() {
    let host_file = Path::new("/etc/galleon-escape-test");
    assert!(!host_file.exists(), "left over from an earlier run: {}", host_file.display());
    let root = tempfile::tempdir().expect("root");
    let outside = host_dir();
    let private_tmp_name = format!("galleon-private-{}", std::process::id());

    // Each probe prints its verdict; the step fails only if the shell itself breaks.
    let probes = [
        "touch /etc/galleon-escape-test && echo ESCAPED-etc || echo refused-etc".to_string(),
        format!("touch {}/x && echo ESCAPED-outside || echo refused-outside", outside.path().display()),
        "echo root-ok > in-root && echo wrote-root".to_string(),
        format!("echo tmp-ok > /tmp/{private_tmp_name} && echo wrote-tmp"),
        "echo x > /dev/null && head -c 4 /dev/zero | wc -c && head -c 4 /dev/urandom >/dev/null && echo devices-ok".into(),
        "grep -q '^Pid:' /proc/self/status && echo proc-self-ok".into(),
        // pid 1 is the step's own shell: the host's processes (and their /proc/PID/root) are not visible.
        "grep -q chmod /proc/1/cmdline && echo pid1-is-the-step".into(),
        "(cat /proc/sys/kernel/domainname > /proc/sys/kernel/domainname) 2>/dev/null && echo ESCAPED-procsys || echo refused-procsys".into(),
        "(mount -o remount,rw / || mount -t tmpfs none /mnt) 2>/dev/null && echo ESCAPED-mount || echo refused-mount".into(),
        "(dd if=/dev/zero of=/dev/vda count=0 || dd if=/dev/zero of=/dev/sda count=0) 2>/dev/null && echo ESCAPED-disk || echo refused-disk".into(),
        "(touch /proc/1/root/etc/galleon-escape-test) 2>/dev/null && echo ESCAPED-proc-root || echo refused-proc-root".into(),
        // The host's /run (systemd's and D-Bus's sockets) is replaced by a private one; DNS still resolves.
        "(test -S /run/systemd/private || test -e /run/dbus || test -e /run/user) && echo ESCAPED-run || echo private-run".into(),
        format!("touch /run/{private_tmp_name} && echo wrote-private-run"),
        "cat /etc/resolv.conf >/dev/null && echo resolv-conf-ok".into(),
    ];
    let inline: Vec<String> = probes.iter().map(|p| serde_json::to_string(p).expect("json")).collect();
    let b = build(&template(&format!(r#"[{{"type": "shell", "inline": [{}]}}]"#, inline.join(","))), &[], root.path());
    b.ok();
    let verdicts: Vec<&str> = b.lines.iter().skip(1).filter_map(|l| l.split("] ").nth(1)).collect();
    expect![[r#"
        refused-etc
        refused-outside
        wrote-root
        wrote-tmp
        4
        devices-ok
        proc-self-ok
        pid1-is-the-step
        refused-procsys
        refused-mount
        refused-disk
        refused-proc-root
        private-run
        wrote-private-run
        resolv-conf-ok"#]]
    .assert_eq(
        &verdicts
            .iter()
            .filter(|l| !l.starts_with("touch:") && !l.starts_with("/tmp/"))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
    );
    assert!(!host_file.exists(), "the provisioner created a file on the host");
    assert!(!outside.path().join("x").exists(), "the provisioner wrote outside the root");
    assert!(!Path::new("/tmp").join(&private_tmp_name).exists(), "/tmp is private to the build");
    assert!(!Path::new("/run").join(&private_tmp_name).exists(), "/run is private to the build");
    assert_eq!(read(root.path().join("in-root")), "root-ok\n");

    // And a step that only tries to escape fails, naming the step.
    let b = build(&template(r#"[{"type": "shell", "inline": ["touch /etc/galleon-escape-test"]}]"#), &[], root.path());
    expect!["step 1/1 shell failed: inline script exited with status 1"].assert_eq(&b.error());
    assert!(b.output().contains("Read-only file system"), "{}", b.output());
    assert!(!host_file.exists());
}

#[test]
fn tmp_is_kept_across_steps_of_one_build() {
    let root = tempfile::tempdir().expect("root");
    let json = template(
        r#"[{"type": "shell", "inline": ["echo carried > /tmp/carry"]},
            {"type": "shell", "inline": ["cp /tmp/carry ./carried"]}]"#,
    );
    build(&json, &[], root.path()).ok();
    assert_eq!(read(root.path().join("carried")), "carried\n");
}

#[test]
fn file_uploads_do_not_follow_symlinks_out_of_the_root() {
    let root = tempfile::tempdir().expect("root");
    let outside = host_dir();
    let src = tempfile::tempdir().expect("src");
    fs::write(src.path().join("payload"), "payload\n").expect("payload");
    let escape = Path::new("/etc/galleon-escape-file");
    assert!(!escape.exists());
    fs::write(outside.path().join("existing"), "original\n").expect("existing host file");
    // An earlier step leaves symlinks that point out of the root.
    let json = |dest: &str| {
        template(&format!(
            r#"[{{"type": "shell", "inline": ["ln -sfn /etc etc-link", "ln -sfn {out} out-link", "ln -sfn {out}/existing file-link"]}},
                {{"type": "file", "source": "{src}/payload", "destination": "{dest}"}}]"#,
            out = outside.path().display(),
            src = src.path().display(),
        ))
    };
    for dest in ["etc-link/galleon-escape-file", "out-link/payload", "out-link/", "file-link", "etc-link/sub/x"] {
        let b = build(&json(dest), &[], root.path());
        let err = b.error();
        assert!(err.starts_with("step 2/2 file failed: upload of "), "{dest}: {err}");
        assert!(b.output().contains("Read-only file system"), "{dest}: {}", b.output());
    }
    assert!(!escape.exists(), "a file upload wrote through a symlink into /etc");
    let names: Vec<_> = fs::read_dir(outside.path()).expect("outside").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names, ["existing"], "a file upload wrote outside the root");
    assert_eq!(read(outside.path().join("existing")), "original\n", "a file upload wrote through a symlink");
}

#[test]
fn sensitive_values_are_masked_in_output_and_errors() {
    let root = tempfile::tempdir().expect("root");
    let scripts = tempfile::tempdir().expect("scripts");
    let secret = "hunter2-s3cret";
    let script = scripts.path().join(format!("deploy-{secret}.sh"));
    fs::write(&script, "echo \"token is $TOKEN\"\nexit 4\n").expect("script");
    let json = format!(
        r#"{{"variables": {{"token": null}}, "sensitive-variables": ["token"],
            "builders": [{{"type": "galleon", "managed_image_name": "img"}}],
            "provisioners": [
              {{"type": "shell", "inline_shebang": "/bin/sh -ex", "inline": ["echo {{{{user `token`}}}} >&2"]}},
              {{"type": "shell", "script": "{}", "environment_vars": ["TOKEN={{{{user `token`}}}}"]}}]}}"#,
        script.display()
    );
    let b = build(&json, &[("token", secret)], root.path());
    let err = b.error();
    let out = b.output();
    assert!(!out.contains(secret), "{out}");
    assert!(!err.contains(secret), "{err}");
    let shown: Vec<String> = b.lines.iter().map(|l| l.replace(&scripts.path().display().to_string(), "DIR")).collect();
    expect![[r#"
        ==> galleon: [1/2 shell] Provisioning with shell inline script (1 line)
        ==> galleon: [1/2 shell] + echo <sensitive>
        ==> galleon: [1/2 shell] <sensitive>
        ==> galleon: [2/2 shell] Provisioning with shell script DIR/deploy-<sensitive>.sh
        ==> galleon: [2/2 shell] token is <sensitive>
        ==> galleon: [2/2 shell] failed: script DIR/deploy-<sensitive>.sh exited with status 4"#]]
    .assert_eq(&shown.join("\n"));
    expect!["step 2/2 shell failed: script DIR/deploy-<sensitive>.sh exited with status 4"]
        .assert_eq(&err.replace(&scripts.path().display().to_string(), "DIR"));

    // Also when the step never starts.
    fs::remove_file(&script).expect("rm");
    let err = build(&json, &[("token", secret)], root.path()).error();
    expect!["step 2/2 shell: script DIR/deploy-<sensitive>.sh: No such file or directory (os error 2)"]
        .assert_eq(&err.replace(&scripts.path().display().to_string(), "DIR"));
}

#[test]
fn a_timeout_kills_the_step_and_everything_it_started() {
    let root = tempfile::tempdir().expect("root");
    let started = Instant::now();
    let b = build(
        &template(r#"[{"type": "shell", "timeout": "300ms", "inline": ["sleep 60 & sleep 60"]}]"#),
        &[],
        root.path(),
    );
    expect!["step 1/1 shell failed: inline script timed out after 300ms and was killed"].assert_eq(&b.error());
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}

#[test]
fn background_processes_end_with_their_step_but_a_quiet_step_is_waited_for() {
    let root = tempfile::tempdir().expect("root");
    let started = Instant::now();
    // A daemon left behind holds stdout open; the step still ends when its shell does.
    build(&template(r#"[{"type": "shell", "inline": ["sleep 60 &", "echo left a sleeper"]}]"#), &[], root.path()).ok();
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    // A step that closes its output early is not cut short: it runs to its end.
    let quiet = r#"[{"type": "shell", "inline": ["exec >/dev/null 2>&1", "sleep 0.3", "touch finished"]}]"#;
    build(&template(quiet), &[], root.path()).ok();
    assert!(root.path().join("finished").exists());
}

#[test]
fn roots_that_would_expose_the_host_are_refused() {
    for bad in ["/", "/tmp", "/proc/self", "/dev"] {
        let b = build(&template(r#"[{"type": "shell", "inline": ["true"]}]"#), &[], Path::new(bad));
        assert!(matches!(b.result, Err(BuildError::Root { .. })), "{bad}: {:?}", b.result);
    }
    let b = build(&template("[]"), &[], &PathBuf::from("/nonexistent/root"));
    expect!["image root /nonexistent/root: No such file or directory (os error 2)"].assert_eq(&b.error());
}
