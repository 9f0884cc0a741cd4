//! Issue "Load balancer", end to end: spread over Tcp and Http rules, probe-driven removal and return,
//! NAT to exactly one instance, zero failed requests while instances are upgraded and reimaged one by one,
//! the data plane serving through a `kill -9` of the control plane, and metrics.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure message

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use galleon_testkit::fixtures::tls_image;
use galleon_testkit::http::{body, get};
use galleon_testkit::load::Load;
use galleon_testkit::{Home, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_galleon");

/// `n` requests on new connections; instance id → how many it answered.
fn spread(url: &str, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let key = match get(url) {
            Ok((200, b)) => b,
            Ok((code, _)) => format!("status {code}"),
            Err(e) => format!("error {e}"),
        };
        *seen.entry(key).or_default() += 1;
    }
    seen
}

fn ids(seen: &BTreeMap<String, usize>) -> Vec<&str> {
    seen.keys().map(String::as_str).collect()
}

#[test]
fn spread_health_nat_and_metrics() {
    let home = Home::start(BIN);
    let work = tempfile::tempdir().unwrap();
    home.gallery();
    home.publish_sample(work.path(), "1.0.0", false);
    let lb = home.lb_setup(work.path(), 3, "g/web/1.0.0", &[]);
    for port in [18080, 18081] {
        let seen = spread(&format!("http://{lb}:{port}/whoami"), 300);
        assert_eq!(ids(&seen), ["0", "1", "2"], "300 requests on port {port}: {seen:?}");
    }
    // list-instances shows the health the load balancer uses.
    let health = home.ok(&["vmss", "list-instances", "-n", "web", "--query", "[].healthState", "-o", "tsv"]);
    assert_eq!(health, "Healthy\nHealthy\nHealthy\n");

    // An instance whose health endpoint fails stops getting requests within interval × (threshold + 1).
    let ip1 = home.ip("web", 1);
    body(&format!("http://{ip1}:8080/fail")).unwrap();
    let failed_at = Instant::now();
    wait_until(Duration::from_secs(3), "instance 1 is out within 1 s × (2 + 1)", || {
        ids(&spread(&format!("http://{lb}:18081/whoami"), 30)) == ["0", "2"]
    });
    assert!(failed_at.elapsed() <= Duration::from_secs(3));
    let seen = spread(&format!("http://{lb}:18080/whoami"), 60);
    assert_eq!(ids(&seen), ["0", "2"], "the Tcp rule follows the same health: {seen:?}");
    let state = home.ok(&["vmss", "show", "-n", "web", "--instance-id", "1", "--query", "healthState", "-o", "tsv"]);
    assert_eq!(state.trim(), "Unhealthy");
    body(&format!("http://{ip1}:8080/recover")).unwrap();
    wait_until(Duration::from_secs(3), "instance 1 is back once healthy", || {
        ids(&spread(&format!("http://{lb}:18081/whoami"), 30)) == ["0", "1", "2"]
    });

    // A NAT frontend port reaches exactly its instance.
    for i in 0..3u32 {
        let port = home.ok(&[
            "network",
            "lb",
            "inbound-nat-rule",
            "show",
            "--lb-name",
            "webLB",
            "-n",
            &format!("webLBNatPool.{i}"),
            "--query",
            "frontendPort",
            "-o",
            "tsv",
        ]);
        let port: u16 = port.trim().parse().unwrap();
        assert!(port >= 50000);
        let seen = spread(&format!("http://{lb}:{port}/whoami"), 10);
        assert_eq!(ids(&seen), [i.to_string().as_str()], "NAT port {port}");
    }
    let info = home.json(&["vmss", "list-instance-connection-info", "-n", "web"]);
    assert_eq!(info["instance 2"], format!("{lb}:50002"));

    // Metrics: in the API and CLI, and as Prometheus text.
    let metrics = home.json(&["network", "lb", "show-metrics", "-n", "webLB"]);
    let http = metrics.as_array().unwrap().iter().find(|r| r["name"] == "http").unwrap();
    let requests: u64 = http["backends"].as_array().unwrap().iter().map(|b| b["requests"].as_u64().unwrap()).sum();
    assert!(requests >= 300, "{http}");
    let (status, text) = galleon_testkit::http::unix_get(&home.path().join("galleon.sock"), "/metrics").unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("galleon_lb_requests_total"), "{text}");
}

#[test]
fn zero_failed_requests_while_instances_are_upgraded_and_reimaged() {
    let mut home = Home::start(BIN);
    let work = tempfile::tempdir().unwrap();
    home.gallery();
    home.publish_sample(work.path(), "1.0.0", false);
    home.publish_sample(work.path(), "1.1.0", false);
    let lb = home.lb_setup(work.path(), 3, "g/web/1.0.0", &[]);
    let v11 = home.version_id("1.1.0");
    home.ok(&[
        "vmss",
        "update",
        "-n",
        "web",
        "--set",
        &format!("virtualMachineProfile.storageProfile.imageReference.id={v11}"),
    ]);
    // About 200 requests/s, some of them slow (2 s), from another process than galleon's.
    let load = Load::start(&format!("{lb}:18081"), "/", 200.0, Some("/slow"));
    std::thread::sleep(Duration::from_millis(500));
    for i in ["0", "1", "2"] {
        home.ok(&["vmss", "update-instances", "-n", "web", "--instance-ids", i]);
    }
    for i in ["0", "1", "2"] {
        home.ok(&["vmss", "reimage", "-n", "web", "--instance-ids", i]);
    }
    // The control plane dies: the data plane keeps serving with the backends and health it has.
    home.kill_daemon();
    std::thread::sleep(Duration::from_secs(1));
    home.start_daemon();
    home.ok(&["vmss", "restart", "-n", "web", "--instance-ids", "1"]);
    std::thread::sleep(Duration::from_millis(500));
    let stats = load.stop();
    assert_eq!(stats.failed, 0, "requests failed while instances were taken out of service: {stats}");
    assert!(stats.sent > 1000, "too little load to prove anything: {stats}");
    assert!(stats.bodies.keys().any(|b| b.contains("Welcome v1.1.0")), "{:?}", stats.bodies.keys());
    assert_eq!(home.latest_model_applied("web"), "true true true");
}

/// An Https probe speaks TLS to the backend (its self-signed certificate accepted); the same port probed
/// as plain Http gets no HTTP answer and the instances are Unhealthy.
#[test]
fn an_https_probe_speaks_tls() {
    let home = Home::start(BIN);
    let work = tempfile::tempdir().unwrap();
    home.gallery();
    let image = work.path().join("tls");
    tls_image(&image);
    home.ok(&["image", "create", "-n", "tls", "--source", image.to_str().unwrap()]);
    home.ok(&["vmss", "create", "-n", "web", "--image", "tls", "--instance-count", "2", "--lb", "webLB"]);
    let probe = |verb: &str, protocol: &str| {
        let mut args = vec!["network", "lb", "probe", verb, "--lb-name", "webLB", "-n", "tls", "--protocol", protocol];
        if verb == "create" {
            args.extend(["--port", "8443", "--path", "/health.json", "--interval", "1", "--threshold", "1"]);
        }
        home.ok(&args);
    };
    probe("create", "Https");
    home.ok(&[
        "network",
        "lb",
        "rule",
        "create",
        "--lb-name",
        "webLB",
        "-n",
        "tls",
        "--protocol",
        "Tcp",
        "--frontend-port",
        "18443",
        "--backend-port",
        "8443",
        "--backend-pool-name",
        "webLBBEPool",
        "--probe",
        "tls",
    ]);
    let both = |state: &str| (0..2).all(|i| home.health_state("web", i) == state);
    wait_until(Duration::from_secs(30), "both instances are Healthy by the Https probe", || both("Healthy"));
    probe("update", "Http");
    wait_until(Duration::from_secs(10), "plain Http to a TLS port fails", || both("Unhealthy"));
    probe("update", "Https");
    wait_until(Duration::from_secs(10), "Https again: Healthy", || both("Healthy"));
}
