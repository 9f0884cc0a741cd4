//! Issue "Newcomer": `galleon demo` runs seed 003's story to the end and exits 0 with no failed request,
//! and, interrupted half-way with Ctrl-C, leaves no process behind.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure message

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use galleon_testkit::{procs, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_galleon");

fn demo_home(pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("galleon-demo-{pid}"))
}

#[test]
fn the_demo_runs_to_the_end_and_cleans_up() {
    let child = Command::new(BIN)
        .arg("demo")
        .env_remove("GALLEON_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for step in [
        "$ galleon vmss create",
        "The canary",
        "$ galleon vmss update-instances -n web --instance-ids 0",
        "version 2.0.0",
        "rolling-upgrade start",
        ": 0 failed.",
    ] {
        assert!(stdout.contains(step), "the demo's narration lacks {step:?}:\n{stdout}");
    }
    let home = demo_home(pid);
    assert!(!home.exists(), "the demo's temporary home is still there");
    assert!(procs::of_home(&home).is_empty(), "processes of the demo remain: {:?}", procs::of_home(&home));
}

#[test]
fn ctrl_c_half_way_leaves_no_process_behind() {
    let mut child = Command::new(BIN)
        .arg("demo")
        .env_remove("GALLEON_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let home = demo_home(pid);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Half-way: once the scale set is up and serving.
    for line in lines.by_ref() {
        if line.unwrap().starts_with("5. Responses through the load balancer") {
            break;
        }
    }
    assert!(!procs::of_home(&home).is_empty(), "the demo should be running instances by now");
    procs::signal(pid as i32, 2);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "a Ctrl-C'd demo exits 130");
    wait_until(Duration::from_secs(30), "no process of the demo's home is left", || procs::of_home(&home).is_empty());
    assert!(!home.exists(), "the demo's temporary home is still there");
}
