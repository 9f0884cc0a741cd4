//! Issue "Day-two operations", end to end: run-command, boot logs, custom data, crash restarts with their
//! exits in the instance view, `galleon shutdown` and `serve` again, store garbage collection, the
//! Application Health extension as a health source, and automatic repairs acting on it.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure message

use std::time::Duration;

use galleon_testkit::fixtures::{sample_image, tls_image};
use galleon_testkit::http::body;
use galleon_testkit::{Home, disk_usage, procs, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_galleon");
const WAIT: Duration = Duration::from_secs(30);

#[test]
fn run_command_boot_log_and_custom_data() {
    let home = Home::start(BIN);
    let work = tempfile::tempdir().unwrap();
    home.gallery();
    home.publish_sample(work.path(), "1.0.0", false);
    let custom = work.path().join("cloud-init.txt");
    std::fs::write(&custom, "#cloud-config\nrole: web\n").unwrap();
    home.ok(&[
        "vmss",
        "create",
        "-n",
        "web",
        "--image",
        "g/web/1.0.0",
        "--instance-count",
        "2",
        "--custom-data",
        custom.to_str().unwrap(),
    ]);
    // run-command: stdout, stderr and the exit status, in the instance's environment.
    let out = home.json(&[
        "vmss",
        "run-command",
        "invoke",
        "-n",
        "web",
        "--instance-id",
        "1",
        "--command-id",
        "RunShellScript",
        "--scripts",
        "echo \"id=$GALLEON_INSTANCE_ID dir=$(pwd) role=$ROLE\"; cat \"$GALLEON_CUSTOM_DATA\"; echo oops >&2",
        "--parameters",
        "ROLE=probe",
    ]);
    let msg = out["value"][0]["message"].as_str().unwrap();
    assert_eq!(out["value"][0]["code"], "ProvisioningState/succeeded", "{out}");
    assert!(msg.contains("id=1 dir=") && msg.contains("/os role=probe"), "{msg}");
    assert!(msg.contains("role: web"), "custom data is at $GALLEON_CUSTOM_DATA: {msg}");
    assert!(msg.contains("[stderr]\noops"), "{msg}");
    let tsv = home.ok(&[
        "vmss",
        "run-command",
        "invoke",
        "-n",
        "web",
        "--instance-id",
        "0",
        "--command-id",
        "RunShellScript",
        "--scripts",
        "echo before; exit 3",
        "--query",
        "value[0].[code, message]",
        "-o",
        "tsv",
    ]);
    // As az's tsv: a list's elements on their own lines.
    assert!(
        tsv.starts_with("ProvisioningState/failed\nEnable failed: the script exited with status 3\n[stdout]\nbefore"),
        "{tsv}"
    );
    home.fails(&[
        "vmss",
        "run-command",
        "invoke",
        "-n",
        "web",
        "--instance-id",
        "9",
        "--command-id",
        "RunShellScript",
        "--scripts",
        "true",
    ]);
    home.fails(&[
        "vmss",
        "run-command",
        "invoke",
        "-n",
        "web",
        "--instance-id",
        "0",
        "--command-id",
        "RunPowerShellScript",
        "--scripts",
        "x",
    ]);
    // Boot diagnostics: what the entrypoint printed.
    let log = home.ok(&["vmss", "get-boot-log", "-n", "web", "--instance-id", "0"]);
    assert!(log.contains("sample-app: instance 0 serving version 1.0.0"), "{log}");
    let tail = home.ok(&["vmss", "get-boot-log", "-n", "web", "--instance-id", "0", "--tail", "1"]);
    assert_eq!(tail.lines().count(), 1, "{tail}");
}

#[test]
fn a_crashing_app_is_restarted_and_its_exits_are_shown() {
    let home = Home::start(BIN);
    let work = tempfile::tempdir().unwrap();
    home.gallery();
    home.publish_sample(work.path(), "1.0.0", false);
    home.ok(&["vmss", "create", "-n", "web", "--image", "g/web/1.0.0", "--instance-count", "3"]);
    let ips: Vec<String> = (0..3).map(|i| home.ip("web", i)).collect();
    for ip in &ips {
        wait_until(WAIT, "every instance serves", || body(&format!("http://{ip}:8080/health")).is_some());
    }
    for round in 1..=3 {
        let roots = procs::instance_roots(home.path());
        let pid = roots.iter().find(|(_, id)| id == "1").map(|(p, _)| *p).unwrap();
        procs::signal(pid, procs::KILL);
        // The others serve throughout; instance 1 comes back with a new process.
        wait_until(WAIT, &format!("instance 1 is restarted after crash {round}"), || {
            assert!(
                body(&format!("http://{}:8080/health", ips[0])).is_some()
                    && body(&format!("http://{}:8080/health", ips[2])).is_some(),
                "another instance stopped serving"
            );
            procs::instance_roots(home.path()).iter().any(|(p, id)| id == "1" && *p != pid)
                && body(&format!("http://{}:8080/health", ips[1])).is_some()
        });
    }
    let view = home.json(&["vmss", "get-instance-view", "-n", "web", "--instance-id", "1"]);
    let exits = view["galleon"]["exits"].as_array().unwrap();
    assert_eq!(exits.len(), 3, "{view}");
    assert!(exits.iter().all(|e| e["signal"] == 9), "{exits:?}");
    assert_eq!(view["galleon"]["starts"], 4, "{view}");
    let others = home.json(&["vmss", "get-instance-view", "-n", "web", "--instance-id", "0"]);
    assert_eq!(others["galleon"]["exits"].as_array().unwrap().len(), 0);
}

#[test]
fn shutdown_leaves_nothing_running_and_serve_brings_instances_back() {
    let mut home = Home::start(BIN);
    let work = tempfile::tempdir().unwrap();
    home.gallery();
    home.publish_sample(work.path(), "1.0.0", false);
    home.ok(&[
        "vmss",
        "create",
        "-n",
        "web",
        "--image",
        "g/web/1.0.0",
        "--instance-count",
        "2",
        "--data-disk-sizes-gb",
        "1",
    ]);
    home.ok(&["vmss", "stop", "-n", "web", "--instance-ids", "1"]);
    let ip0 = home.ip("web", 0);
    wait_until(WAIT, "instance 0 serves", || body(&format!("http://{ip0}:8080/data")).is_some());
    let status = home.json(&["status"]);
    assert_eq!(status["instances"]["byState"]["running"], 1, "{status}");
    assert_eq!(status["instances"]["byState"]["stopped"], 1, "{status}");
    home.ok(&["shutdown"]);
    home.kill_daemon(); // reaps the exited daemon process of the test kit
    assert!(home.processes().is_empty(), "processes of the home remain: {:?}", home.processes());
    home.start_daemon();
    wait_until(WAIT, "instance 0 is back", || {
        body(&format!("http://{ip0}:8080/data")).is_some_and(|d| d.lines().count() == 2)
    });
    let power = || {
        home.ok(&[
            "vmss",
            "list-instances",
            "-n",
            "web",
            "--query",
            "sort_by(@, &to_number(instanceId))[].powerState",
            "-o",
            "tsv",
        ])
    };
    wait_until(WAIT, "instance 0 runs and the stopped instance stays stopped", || {
        power() == "VM running\nVM stopped\n"
    });
}

#[test]
fn store_gc_frees_what_only_deleted_versions_held() {
    let home = Home::start(BIN);
    let work = tempfile::tempdir().unwrap();
    home.gallery();
    for (i, v) in ["1.0.0", "1.1.0", "1.2.0"].iter().enumerate() {
        let dir = work.path().join(v);
        sample_image(&dir, home.bin(), &format!("Welcome v{v}"), false);
        let data: Vec<u8> = (0..20_000_000u32)
            .map(|x| (x.wrapping_mul(2_654_435_761).wrapping_add(i as u32 * 7919) >> 9) as u8)
            .collect();
        std::fs::write(dir.join("data.bin"), data).unwrap();
        home.ok(&[
            "sig",
            "image-version",
            "create",
            "-r",
            "g",
            "-i",
            "web",
            "-e",
            v,
            "--source",
            dir.to_str().unwrap(),
        ]);
    }
    home.ok(&["vmss", "create", "-n", "web", "--image", "g/web/1.0.0", "--instance-count", "1"]);
    // A version in use cannot be deleted.
    let run = home.fails(&["sig", "image-version", "delete", "-r", "g", "-i", "web", "-e", "1.0.0"]);
    assert!(run.stderr.contains("in use"), "{}", run.stderr);
    let before = disk_usage(home.path());
    for v in ["1.1.0", "1.2.0"] {
        home.ok(&["sig", "image-version", "delete", "-r", "g", "-i", "web", "-e", v]);
    }
    home.ok(&["store", "gc"]);
    let freed = before.saturating_sub(disk_usage(home.path()));
    assert!(freed >= 38_000_000, "deleting two versions of 20 MB of their own freed only {freed} bytes");
    home.ok(&["vmss", "reimage", "-n", "web", "--instance-ids", "0"]);
    let ip = home.ip("web", 0);
    wait_until(WAIT, "the remaining version still boots", || {
        body(&format!("http://{ip}:8080/")).is_some_and(|p| p.contains("Welcome v1.0.0"))
    });
}

#[test]
fn application_health_extension_is_a_health_source() {
    let home = Home::start(BIN);
    let work = tempfile::tempdir().unwrap();
    home.gallery();
    home.publish_sample(work.path(), "1.0.0", false);
    home.ok(&["vmss", "create", "-n", "web", "--image", "g/web", "--instance-count", "3"]);
    // Rich health: `/apphealth` answers 200 with {"ApplicationHealthState": "Healthy"|"Unhealthy"}.
    let settings = r#"{"protocol": "http", "port": 8080, "requestPath": "/apphealth", "intervalInSeconds": 1, "numberOfProbes": 2, "gracePeriod": 30}"#;
    assert_eq!(home.set_app_health("web", settings).code, 0);
    home.ok(&["vmss", "update-instances", "-n", "web", "--instance-ids", "*"]);
    let health = |i: u32| home.health_state("web", i);
    wait_until(WAIT, "every instance is Healthy", || (0..3).all(|i| health(i) == "Healthy"));
    let ip1 = home.ip("web", 1);
    body(&format!("http://{ip1}:8080/fail")).unwrap();
    let failed = std::time::Instant::now();
    wait_until(Duration::from_secs(4), "instance 1 is Unhealthy within interval × (threshold + 1)", || {
        health(1) == "Unhealthy"
    });
    assert!(failed.elapsed() <= Duration::from_secs(3) + Duration::from_millis(900), "took {:?}", failed.elapsed());
    let view = home.json(&["vmss", "get-instance-view", "-n", "web", "--instance-id", "1"]);
    assert_eq!(view["vmHealth"]["status"]["code"], "HealthState/unhealthy", "{view}");
    body(&format!("http://{ip1}:8080/recover")).unwrap();
    wait_until(WAIT, "instance 1 is Healthy again", || health(1) == "Healthy");

    // An automatic OS upgrade gated by it: a good version completes, a bad one faults and rolls back.
    home.ok(&[
        "vmss",
        "update",
        "-n",
        "web",
        "--set",
        "upgradePolicy.automaticOSUpgradePolicy.enableAutomaticOSUpgrade=true",
    ]);
    home.publish_sample(work.path(), "1.1.0", false);
    let code = || {
        home.galleon(&[
            "vmss",
            "rolling-upgrade",
            "get-latest",
            "-n",
            "web",
            "--query",
            "[properties.runningStatus.code, runningStatus.code] | [?@] | [0]",
            "-o",
            "tsv",
        ])
        .stdout
        .trim()
        .to_string()
    };
    let exact = || {
        home.ok(&[
            "vmss",
            "list-instances",
            "-n",
            "web",
            "--query",
            "[].storageProfile.imageReference.exactVersion",
            "-o",
            "tsv",
        ])
    };
    wait_until(Duration::from_secs(60), "the OS upgrade to 1.1.0 completes", || {
        code() == "Completed" && exact() == "1.1.0\n1.1.0\n1.1.0\n"
    });
    home.publish_sample(work.path(), "1.2.0", true);
    wait_until(Duration::from_secs(60), "the OS upgrade to 1.2.0 faults", || {
        home.galleon(&[
            "vmss",
            "get-os-upgrade-history",
            "-n",
            "web",
            "--query",
            "[0].properties.[targetImageReference.exactVersion, runningStatus.code]",
            "-o",
            "tsv",
        ])
        .stdout
            == "1.2.0\nFaulted\n"
    });
    wait_until(WAIT, "the failed instance is back on 1.1.0", || exact() == "1.1.0\n1.1.0\n1.1.0\n");
    // With 3 instances a batch is 1: one instance tried 1.2.0 and was rolled back.
    wait_until(WAIT, "the rollback is counted", || {
        home.ok(&[
            "vmss",
            "get-os-upgrade-history",
            "-n",
            "web",
            "--query",
            "[0].properties.rollbackInfo.successfullyRolledbackInstanceCount",
            "-o",
            "tsv",
        ])
        .trim()
            == "1"
    });
}

/// `automaticRepairsPolicy` on the daemon: an instance Unhealthy for the grace period is repaired with
/// the policy's action (Restart, then Replace), the decision is shown with its reason, and the healthy
/// instances are never touched.
#[test]
fn automatic_repairs_restart_then_replace_an_unhealthy_instance() {
    let home = Home::start(BIN);
    let work = tempfile::tempdir().unwrap();
    home.gallery();
    home.publish_sample(work.path(), "1.0.0", false);
    home.ok(&["vmss", "create", "-n", "web", "--image", "g/web", "--instance-count", "3"]);
    let settings =
        r#"{"protocol": "http", "port": 8080, "requestPath": "/health", "intervalInSeconds": 1, "numberOfProbes": 2}"#;
    assert_eq!(home.set_app_health("web", settings).code, 0);
    home.ok(&["vmss", "update-instances", "-n", "web", "--instance-ids", "*"]);
    let health = |i: u32| home.health_state("web", i);
    wait_until(WAIT, "every instance is Healthy", || (0..3).all(|i| health(i) == "Healthy"));
    let reasons = |i: u32| {
        let q = "galleon.decisions[].reason";
        home.ok(&["vmss", "get-instance-view", "-n", "web", "--instance-id", &i.to_string(), "--query", q, "-o", "tsv"])
    };
    // An impossible grace period is refused and changes nothing.
    let refused = home.galleon(&[
        "vmss",
        "update",
        "-n",
        "web",
        "--set",
        "automaticRepairsPolicy.enabled=true",
        "--set",
        "automaticRepairsPolicy.gracePeriod=PT1S",
    ]);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("gracePeriod"), "{}", refused.stderr);
    let policy = || home.ok(&["vmss", "show", "-n", "web", "--query", "automaticRepairsPolicy.enabled", "-o", "tsv"]);
    assert_ne!(policy().trim(), "true");
    home.ok(&[
        "vmss",
        "update",
        "-n",
        "web",
        "--set",
        "automaticRepairsPolicy.enabled=true",
        "--set",
        "automaticRepairsPolicy.gracePeriod=PT5S",
        "--set",
        "automaticRepairsPolicy.repairAction=Restart",
    ]);
    let pids_of = |ids: &[&str]| -> Vec<(i32, String)> {
        let mut roots = procs::instance_roots(home.path());
        roots.retain(|(_, id)| ids.contains(&id.as_str()));
        roots.sort();
        roots
    };
    let healthy_pids = pids_of(&["0", "2"]);

    // Restart: the app forgets its failure when it starts again.
    body(&format!("http://{}:8080/fail", home.ip("web", 1))).unwrap();
    wait_until(Duration::from_secs(5), "instance 1 is Unhealthy", || health(1) == "Unhealthy");
    wait_until(WAIT, "instance 1 is restarted by the repair and Healthy again", || {
        reasons(1).contains("repaired (Restart)") && health(1) == "Healthy"
    });
    assert!(reasons(1).contains("grace 5 s"), "{}", reasons(1));

    // Replace (Azure's default action): a new instance takes the unhealthy one's place.
    home.ok(&["vmss", "update", "-n", "web", "--set", "automaticRepairsPolicy.repairAction=Replace"]);
    body(&format!("http://{}:8080/fail", home.ip("web", 1))).unwrap();
    let ids = || home.ok(&["vmss", "list-instances", "-n", "web", "--query", "[].instanceId", "-o", "tsv"]);
    wait_until(WAIT, "instance 1 is replaced by instance 3", || ids() == "0\n2\n3\n");
    wait_until(WAIT, "the replacement is Healthy", || health(3) == "Healthy");
    assert!(reasons(3).contains("replacement of instance 1"), "{}", reasons(3));
    assert_eq!(pids_of(&["0", "2"]), healthy_pids, "the healthy instances were never touched");
}

/// The Application Health extension over `https`: the app serves TLS with a self-signed certificate
/// (openssl's `s_server`, answering files); the body's state decides, per instance.
#[test]
fn application_health_over_https() {
    let home = Home::start(BIN);
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("tls");
    tls_image(&image);
    home.gallery();
    home.ok(&["image", "create", "-n", "tls", "--source", image.to_str().unwrap()]);
    home.ok(&["vmss", "create", "-n", "web", "--image", "tls", "--instance-count", "2"]);
    let settings = |protocol: &str| {
        format!(
            r#"{{"protocol": "{protocol}", "port": 8443, "requestPath": "/health.json", "intervalInSeconds": 1, "numberOfProbes": 1}}"#
        )
    };
    let set = |protocol: &str| home.set_app_health("web", &settings(protocol));
    let refused = set("ftp");
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("must be http, https or tcp"), "{}", refused.stderr);
    let listed = home.ok(&["vmss", "extension", "list", "--vmss-name", "web", "--query", "length(@)", "-o", "tsv"]);
    assert_eq!(listed.trim(), "0", "a refused extension is not stored");
    assert_eq!(set("https").code, 0);
    home.ok(&["vmss", "update-instances", "-n", "web", "--instance-ids", "*"]);
    let health = |i: u32| home.health_state("web", i);
    wait_until(WAIT, "both instances are Healthy over https", || health(0) == "Healthy" && health(1) == "Healthy");
    home.ok(&[
        "vmss",
        "run-command",
        "invoke",
        "-n",
        "web",
        "--instance-id",
        "0",
        "--command-id",
        "RunShellScript",
        "--scripts",
        r#"echo '{"ApplicationHealthState": "Unhealthy"}' > health.json"#,
    ]);
    wait_until(Duration::from_secs(5), "instance 0 is Unhealthy by its body", || health(0) == "Unhealthy");
    assert_eq!(health(1), "Healthy");
}
