//! Issue "Scale sets", end to end with real processes: seed 003's canary by instance id, data disks kept,
//! re-adoption after `kill -9` of the daemon, a failing CustomScript, and instance actions.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure message

use std::time::Duration;

use galleon_testkit::http::{body, get};
use galleon_testkit::{Home, procs, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_galleon");
const WAIT: Duration = Duration::from_secs(30);

fn page(home: &Home, id: u32) -> Option<String> {
    body(&format!("http://{}:8080/", home.ip("web", id)))
}

fn serves(home: &Home, id: u32, text: &str) -> bool {
    page(home, id).is_some_and(|p| p.contains(text))
}

#[test]
fn canary_by_instance_id_keeps_data_disks_and_survives_kill_9() {
    let mut home = Home::start(BIN);
    let work = tempfile::tempdir().unwrap();
    home.gallery();
    home.publish_sample(work.path(), "1.0.0", false);
    home.publish_sample(work.path(), "1.1.0", false);
    home.ok(&[
        "vmss",
        "create",
        "-n",
        "web",
        "--image",
        "g/web/1.0.0",
        "--instance-count",
        "3",
        "--data-disk-sizes-gb",
        "1",
    ]);
    for i in 0..3 {
        wait_until(WAIT, &format!("instance {i} serves 1.0.0"), || serves(&home, i, "Welcome v1.0.0"));
    }
    // Each instance has its own address; every one listens on the same port.
    let ips: Vec<String> = (0..3).map(|i| home.ip("web", i)).collect();
    assert_eq!(ips.iter().collect::<std::collections::BTreeSet<_>>().len(), 3, "addresses {ips:?}");
    let boots_before = body(&format!("http://{}:8080/data", ips[0])).unwrap();
    assert!(boots_before.starts_with("1.0.0 "), "the data disk's boot log: {boots_before:?}");
    // A visit counted on the data disk.
    for _ in 0..3 {
        get(&format!("http://{}:8080/", ips[0])).unwrap();
    }
    let visits = body(&format!("http://{}:8080/visits", ips[0])).unwrap();

    // Seed 003: update the model, upgrade one chosen instance.
    let v11 = home.version_id("1.1.0");
    home.ok(&[
        "vmss",
        "update",
        "-n",
        "web",
        "--set",
        &format!("virtualMachineProfile.storageProfile.imageReference.id={v11}"),
    ]);
    assert_eq!(home.latest_model_applied("web"), "false false false");
    home.ok(&["vmss", "update-instances", "-n", "web", "--instance-ids", "0"]);
    assert_eq!(home.latest_model_applied("web"), "true false false");
    // (`/version` and `/visits` do not count as visits; the page does.)
    wait_until(WAIT, "instance 0 runs 1.1.0", || {
        body(&format!("http://{}:8080/version", ips[0])).as_deref() == Some("1.1.0")
    });
    assert_eq!(body(&format!("http://{}:8080/visits", ips[0])).unwrap(), visits, "the visit counter changed");
    assert!(serves(&home, 0, "Welcome v1.1.0"));
    assert!(
        serves(&home, 1, "Welcome v1.0.0") && serves(&home, 2, "Welcome v1.0.0"),
        "1 and 2 changed without being asked"
    );
    assert_eq!(home.ip("web", 0), ips[0], "an in-place upgrade keeps the instance's address");
    let boots_after = body(&format!("http://{}:8080/data", ips[0])).unwrap();
    assert!(boots_after.starts_with(&boots_before), "the data disk lost its content: {boots_after:?}");
    assert!(
        boots_after.lines().nth(1).is_some_and(|l| l.starts_with("1.1.0 ")),
        "no second boot on 1.1.0: {boots_after:?}"
    );
    let exact = home.ok(&[
        "vmss",
        "show",
        "-n",
        "web",
        "--instance-id",
        "0",
        "--query",
        "storageProfile.imageReference.exactVersion",
        "-o",
        "tsv",
    ]);
    assert_eq!(exact.trim(), "1.1.0");

    // kill -9 of the daemon: instances keep serving; the restarted daemon adopts them, no duplicates.
    let before = procs::instance_roots(home.path());
    assert_eq!(before.len(), 3, "instance processes: {before:?}");
    home.kill_daemon();
    for (i, ip) in ips.iter().enumerate() {
        assert!(body(&format!("http://{ip}:8080/")).is_some(), "instance {i} stopped serving when the daemon died");
    }
    home.start_daemon();
    let listed = home.ok(&[
        "vmss",
        "list-instances",
        "-n",
        "web",
        "--query",
        "[].{id: instanceId, ip: privateIpAddress, power: powerState}",
        "-o",
        "tsv",
    ]);
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(listed.lines().all(|l| l.ends_with("VM running")), "{listed}");
    let mut after = procs::instance_roots(home.path());
    let mut before = before;
    after.sort();
    before.sort();
    assert_eq!(after, before, "the restarted daemon must adopt the same processes");

    home.ok(&["vmss", "update-instances", "-n", "web", "--instance-ids", "*"]);
    assert_eq!(home.latest_model_applied("web"), "true true true");
    for i in 0..3 {
        wait_until(WAIT, &format!("instance {i} serves 1.1.0"), || serves(&home, i, "Welcome v1.1.0"));
    }
    assert_eq!(procs::instance_roots(home.path()).len(), 3);
}

#[test]
fn a_failing_custom_script_fails_its_instance_only_and_keeps_secrets() {
    let home = Home::start(BIN);
    let work = tempfile::tempdir().unwrap();
    home.gallery();
    home.publish_sample(work.path(), "1.0.0", false);
    home.ok(&["vmss", "create", "-n", "web", "--image", "g/web/1.0.0", "--instance-count", "3"]);
    // A script delivered by file:// that fails on instance 1 only, and a secret it must never show.
    let script = work.path().join("setup.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"configured $GALLEON_INSTANCE_ID\" > configured.txt\nif [ \"$GALLEON_INSTANCE_ID\" = 1 ]; then echo 'disk full on instance 1' >&2; exit 1; fi\n",
    )
    .unwrap();
    let settings = serde_json::json!({"fileUris": [format!("file://{}", script.display())]}).to_string();
    let protected = serde_json::json!({"commandToExecute": "TOKEN=s3cr3t-t0ken ./setup.sh"}).to_string();
    home.ok(&[
        "vmss",
        "extension",
        "set",
        "--vmss-name",
        "web",
        "--name",
        "CustomScript",
        "--publisher",
        "Microsoft.Azure.Extensions",
        "--version",
        "2.0",
        "--settings",
        &settings,
        "--protected-settings",
        &protected,
    ]);
    let run = home.fails(&["vmss", "update-instances", "-n", "web", "--instance-ids", "*"]);
    assert!(run.stderr.contains("instance 1") && run.stderr.contains("disk full on instance 1"), "{}", run.stderr);
    let view = home.json(&["vmss", "get-instance-view", "-n", "web", "--instance-id", "1"]);
    assert_eq!(view["statuses"][0]["code"], "ProvisioningState/failed", "{view}");
    let ext = &view["extensions"][0]["statuses"][0];
    assert_eq!(ext["code"], "ProvisioningState/failed");
    assert!(ext["message"].as_str().unwrap().contains("disk full on instance 1"), "{ext}");
    let states = home.ok(&[
        "vmss",
        "list-instances",
        "-n",
        "web",
        "--query",
        "sort_by(@, &to_number(instanceId))[].provisioningState",
        "-o",
        "tsv",
    ]);
    assert_eq!(states.split_whitespace().collect::<Vec<_>>(), ["Succeeded", "Failed", "Succeeded"]);
    for i in [0, 2] {
        wait_until(WAIT, &format!("instance {i} serves"), || serves(&home, i, "Welcome"));
    }
    // The secret is never in an answer or a log.
    let shown = home.ok(&["vmss", "show", "-n", "web"])
        + &home.ok(&["vmss", "extension", "show", "--vmss-name", "web", "--name", "CustomScript"]);
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(!home.log_tail().contains("s3cr3t"));
    let leaked = std::process::Command::new("grep").args(["-rl", "s3cr3t"]).arg(home.path()).output().unwrap();
    let files = String::from_utf8_lossy(&leaked.stdout);
    for f in files.lines() {
        let mode = std::fs::metadata(f)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .unwrap_or(0);
        assert_eq!(mode & 0o077, 0, "{f} holds the secret and is readable by others (mode {mode:o})");
        assert!(!f.ends_with(".log") && !f.contains("galleon.db"), "the secret reached {f}");
    }
}

#[test]
fn instance_actions_ids_and_scaling() {
    let home = Home::start(BIN);
    let work = tempfile::tempdir().unwrap();
    home.gallery();
    home.publish_sample(work.path(), "1.0.0", false);
    home.ok(&[
        "vmss",
        "create",
        "-n",
        "web",
        "--image",
        "g/web",
        "--instance-count",
        "2",
        "--data-disk-sizes-gb",
        "1",
        "2",
    ]);
    // A definition means latest: instances record the exact version they run.
    let exact = home.ok(&[
        "vmss",
        "list-instances",
        "-n",
        "web",
        "--query",
        "[].storageProfile.imageReference.exactVersion",
        "-o",
        "tsv",
    ]);
    assert_eq!(exact, "1.0.0\n1.0.0\n");
    wait_until(WAIT, "instance 1 serves", || serves(&home, 1, "Welcome"));
    // Environment: two data disks, an image version, an id.
    let ip1 = home.ip("web", 1);
    assert_eq!(body(&format!("http://{ip1}:8080/whoami")).unwrap(), "1");
    assert_eq!(body(&format!("http://{ip1}:8080/version")).unwrap(), "1.0.0");

    // stop keeps the address; start brings the same disks back; deallocate releases the address.
    home.ok(&["vmss", "stop", "-n", "web", "--instance-ids", "1"]);
    assert_eq!(
        home.ok(&["vmss", "show", "-n", "web", "--instance-id", "1", "--query", "powerState", "-o", "tsv"]).trim(),
        "VM stopped"
    );
    assert!(get(&format!("http://{ip1}:8080/")).is_err(), "a stopped instance still answers");
    assert_eq!(home.ip("web", 1), ip1);
    home.ok(&["vmss", "start", "-n", "web", "--instance-ids", "1"]);
    wait_until(WAIT, "instance 1 serves again", || serves(&home, 1, "Welcome"));
    let boots = body(&format!("http://{ip1}:8080/data")).unwrap();
    assert_eq!(boots.lines().count(), 2, "the data disk kept the first boot: {boots}");
    home.ok(&["vmss", "deallocate", "-n", "web", "--instance-ids", "1"]);
    assert_eq!(home.ip("web", 1), "", "a deallocated instance has no address");
    home.ok(&["vmss", "start", "-n", "web", "--instance-ids", "1"]);
    wait_until(WAIT, "instance 1 serves after deallocation", || serves(&home, 1, "Welcome"));
    home.ok(&["vmss", "restart", "-n", "web", "--instance-ids", "1"]);
    home.ok(&["vmss", "reimage", "-n", "web", "--instance-ids", "1"]);
    let boots = body(&format!("http://{}:8080/data", home.ip("web", 1))).unwrap();
    assert_eq!(boots.lines().count(), 5, "start, start, restart, reimage: each boot kept on the data disk: {boots}");

    // Clear answers for unknown and deleted instances.
    let unknown = home.fails(&["vmss", "restart", "-n", "web", "--instance-ids", "7"]);
    assert!(unknown.stderr.contains("Instance 7 of 'web' does not exist"), "{}", unknown.stderr);
    assert_eq!(unknown.code, 3);
    home.ok(&["vmss", "delete-instances", "-n", "web", "--instance-ids", "0"]);
    let deleted = home.fails(&["vmss", "reimage", "-n", "web", "--instance-ids", "0"]);
    assert!(deleted.stderr.contains("was deleted"), "{}", deleted.stderr);
    assert_eq!(home.ok(&["vmss", "show", "-n", "web", "--query", "sku.capacity", "-o", "tsv"]).trim(), "1");

    // Scale out: new ids, never reused; scale in follows the policy and keeps protected instances.
    home.ok(&["vmss", "scale", "-n", "web", "--new-capacity", "4"]);
    let ids = home.ok(&[
        "vmss",
        "list-instances",
        "-n",
        "web",
        "--query",
        "sort_by(@, &to_number(instanceId))[].instanceId",
        "-o",
        "tsv",
    ]);
    assert_eq!(ids.split_whitespace().collect::<Vec<_>>(), ["1", "2", "3", "4"]);
    home.ok(&["vmss", "update", "-n", "web", "--instance-id", "4", "--protect-from-scale-in"]);
    home.ok(&["vmss", "scale", "-n", "web", "--new-capacity", "2"]);
    let ids = home.ok(&[
        "vmss",
        "list-instances",
        "-n",
        "web",
        "--query",
        "sort_by(@, &to_number(instanceId))[].instanceId",
        "-o",
        "tsv",
    ]);
    assert_eq!(
        ids.split_whitespace().collect::<Vec<_>>(),
        ["1", "4"],
        "Default removes the highest ids, protected 4 stays"
    );

    // Bad input changes nothing.
    home.fails(&[
        "vmss",
        "update",
        "-n",
        "web",
        "--set",
        "virtualMachineProfile.storageProfile.imageReference.id=/subscriptions/x/nope",
    ]);
    home.fails(&[
        "vmss",
        "update",
        "-n",
        "web",
        "--set",
        "upgradePolicy.rollingUpgradePolicy.maxBatchInstancePercent=200",
    ]);
    home.fails(&["vmss", "create", "-n", "bad", "--image", "g/web/9.9.9"]);
    assert_eq!(home.latest_model_applied("web"), "true true");

    // Deleting the scale set stops and removes everything of it.
    home.ok(&["vmss", "delete", "-n", "web"]);
    assert!(procs::instance_roots(home.path()).is_empty());
    assert_eq!(home.fails(&["vmss", "show", "-n", "web"]).code, 3);
}

/// `group delete` takes everything in the group with it, as `az group delete` does: refused while a scale
/// set of another group uses something in it; changes inside are refused while it goes; a `kill -9` of
/// the daemon in the middle is resumed; no process, instance directory or resource of it is left, and a
/// request in flight when it started still gets its answer.
#[test]
fn deleting_a_group_takes_everything_with_it_and_survives_kill_9() {
    let mut home = Home::start(BIN);
    let work = tempfile::tempdir().unwrap();
    home.gallery();
    home.publish_sample(work.path(), "1.0.0", false);
    let lb = home.lb_setup(work.path(), 2, "g/web/1.0.0", &[]);
    home.ok(&["image", "create", "-n", "img", "--source", work.path().join("img-1.0.0").to_str().unwrap()]);
    let count = |home: &Home, what: &[&str]| {
        let mut args = what.to_vec();
        args.extend(["--query", "length(@)", "-o", "tsv"]);
        home.ok(&args).trim().to_string()
    };

    // A scale set of another group uses rg's gallery version: refused, nothing changes.
    home.ok(&["group", "create", "-n", "other"]);
    let v1 = home.version_id("1.0.0");
    home.ok(&["vmss", "create", "-g", "other", "-n", "user", "--image", &v1, "--instance-count", "1"]);
    let refused = home.fails(&["group", "delete", "-n", "rg", "--yes"]);
    assert!(refused.stderr.contains("'user'"), "{}", refused.stderr);
    let state = home.ok(&["group", "show", "-n", "rg", "--query", "properties.provisioningState", "-o", "tsv"]);
    assert_eq!(state.trim(), "Succeeded");
    assert_eq!(count(&home, &["vmss", "list-instances", "-n", "web"]), "2");
    // Without a terminal to ask on, --yes is needed.
    let asked = home.fails(&["group", "delete", "-n", "other"]);
    assert!(asked.stderr.contains("--yes"), "{}", asked.stderr);
    home.ok(&["group", "delete", "-n", "other", "--yes"]);
    assert_eq!(home.ok(&["group", "exists", "-n", "other"]).trim(), "false");

    // A slow request in flight holds its instance's drain: meanwhile the group is Deleting.
    let slow = std::thread::spawn(move || body(&format!("http://{lb}:18081/slow?ms=3000")));
    wait_until(WAIT, "the slow request is in flight", || {
        let metrics = home.json(&["network", "lb", "show-metrics", "-n", "webLB"]);
        metrics.to_string().contains("\"inFlight\":1")
    });
    home.ok(&["group", "delete", "-n", "rg", "--yes", "--no-wait"]);
    let late = home.fails(&["network", "lb", "create", "-n", "late"]);
    assert!(late.stderr.contains("is being deleted"), "{}", late.stderr);
    home.kill_daemon();
    home.start_daemon();
    wait_until(Duration::from_secs(60), "the group is gone", || {
        home.ok(&["group", "exists", "-n", "rg"]).trim() == "false"
    });
    let log = std::fs::read_to_string(home.path().join("serve.log")).unwrap();
    assert!(log.contains("resuming the deletion of the resource group 'rg'"), "the restarted daemon resumed it");
    assert!(slow.join().unwrap().is_some_and(|b| b.contains("slow")), "the request in flight was answered");
    assert!(procs::instance_roots(home.path()).is_empty(), "no instance process is left");
    let dirs = std::fs::read_dir(home.path().join("instances")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(dirs, 0, "no instance directory (OS or data disk) is left");
    for list in [&["sig", "list"][..], &["image", "list"], &["network", "lb", "list"], &["vmss", "list"]] {
        assert_eq!(count(&home, list), "0", "{list:?}");
    }
}
