//! The data plane process as the control plane sees it: `run` with its lock and persisted config, and
//! every control endpoint through `ControlClient`.
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use galleon_lb::{Config, ControlClient, HealthState, ProbeProtocol, Protocol, RunError, RunOptions, run};
use support::*;

const WITHIN: Duration = Duration::from_secs(10);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start(dir: &Path) -> (tokio::task::JoinHandle<Result<(), RunError>>, ControlClient) {
    let opts = RunOptions::new(dir.join("state"), dir.join("dp.sock"));
    let client = ControlClient::new(&opts.socket_path);
    let task = tokio::spawn(run(opts));
    eventually(WITHIN, "control socket answers", || async { client.health().await.is_ok() }).await;
    (task, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_api_answers_in_its_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let (task, client) = start(dir.path()).await;
    let mode = std::fs::metadata(dir.path().join("dp.sock")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let b = TestBackend::start("b0").await;
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut taken = fe("taken", Protocol::Tcp, vec![be("b0", b.addr, None)]);
    taken.port = occupied.local_addr().unwrap().port();
    let config = Config {
        generation: 5,
        frontends: vec![fe("rg/webLB/http", Protocol::Http, vec![be("b0", b.addr, Some("h0"))]), taken],
        health_checks: vec![check("h0", b.addr, ProbeProtocol::Http, "/health", 20, 1)],
    };
    let seq0 = client.health().await.unwrap().seq;

    // PUT /config: applied, with one bind result per frontend; a port in use fails only its frontend.
    let report = client.put_config(&config).await.unwrap();
    assert_eq!(report.generation, 5);
    let lb = report.frontends[0].local_addr.unwrap();
    assert!(report.frontends[1].local_addr.is_none());
    assert!(report.frontends[1].error.as_deref().unwrap().contains("in use"), "{report:?}");
    assert_eq!(client.config().await.unwrap(), config);

    // Stale and invalid configs change nothing.
    let stale = client.put_config(&Config { generation: 4, ..config.clone() }).await.unwrap_err();
    assert_eq!(stale.stale_generation(), Some(5), "{stale}");
    let mut invalid = config.clone();
    invalid.generation = 6;
    invalid.frontends[0].backends[0].health_check = Some("nope".into());
    match client.put_config(&invalid).await.unwrap_err() {
        galleon_lb::ClientError::Api { status: 400, code, .. } => assert_eq!(code, "InvalidConfig"),
        e => panic!("{e}"),
    }
    assert_eq!(client.config().await.unwrap().generation, 5);

    // GET /events long-polls until the check turns Healthy; /health agrees.
    let mut after = seq0;
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &galleon_lb::HealthEvent| e.to == HealthState::Healthy) {
        let ev = client.events(after, WITHIN).await.unwrap();
        assert!(!ev.truncated);
        after = ev.seq;
        seen.extend(ev.events);
    }
    assert_eq!(
        (seen[0].check.as_str(), seen[0].from, seen[0].to),
        ("h0", HealthState::Unknown, HealthState::Initializing)
    );
    assert!(seen.windows(2).all(|w| w[0].seq < w[1].seq));
    let health = client.health().await.unwrap();
    assert_eq!(health.seq, after);
    let h0 = &health.checks[0];
    assert_eq!((h0.id.as_str(), h0.state, h0.epoch), ("h0", HealthState::Healthy, 0));
    assert_eq!(h0.last_outcome, Some(galleon_lb::ProbeOutcome::Success));
    // Nothing new: the long poll ends empty at its deadline.
    let quiet = client.events(after, Duration::from_millis(100)).await.unwrap();
    assert!(quiet.events.is_empty() && quiet.seq == after);
    // A reader ahead of the log (another boot's sequence) is told to re-read.
    assert!(client.events(after + 1000, Duration::ZERO).await.unwrap().truncated);

    // Traffic, then /status and /metrics.
    assert_eq!(get(lb, "/whoami").await.unwrap(), (200, "b0".to_owned()));
    let status = client.status().await.unwrap();
    assert_eq!(status.generation, 5);
    let f = &status.frontends[0];
    assert_eq!((f.name.as_str(), f.local_addr, f.error.as_deref()), ("rg/webLB/http", Some(lb), None));
    let b0 = &f.backends[0];
    assert_eq!((b0.eligible, b0.health, b0.metrics.requests), (true, Some(HealthState::Healthy), 1));
    assert!(status.frontends[1].error.is_some());
    let text = client.metrics().await.unwrap();
    for line in [
        "# TYPE galleon_lb_requests_total counter",
        "galleon_lb_requests_total{frontend=\"rg/webLB/http\",backend=\"b0\"} 1",
        "galleon_lb_request_duration_seconds_count{frontend=\"rg/webLB/http\",backend=\"b0\"} 1",
        "galleon_lb_request_duration_seconds_bucket{frontend=\"rg/webLB/http\",backend=\"b0\",le=\"+Inf\"} 1",
        "galleon_lb_backend_eligible{frontend=\"rg/webLB/http\",backend=\"b0\"} 1",
        "galleon_lb_frontend_up{frontend=\"taken\"} 0",
        "galleon_lb_health_state{check=\"h0\",state=\"Healthy\"} 1",
        "galleon_lb_config_generation 5",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }

    // POST /drain of a key with nothing in flight returns at once.
    let drained = client.drain(&["b0".to_owned()], Some(Duration::from_secs(5))).await.unwrap();
    assert!(drained.drained && drained.remaining.is_empty());
    assert_eq!(drained.still_in_service, ["rg/webLB/http", "taken"]);

    // POST /shutdown ends `run`, and the socket goes with it.
    client.shutdown().await.unwrap();
    tokio::time::timeout(WITHIN, task).await.unwrap().unwrap().unwrap();
    assert!(!dir.path().join("dp.sock").exists());
    assert!(client.health().await.unwrap_err().is_not_running());
}

/// One data plane per home; a restarted one serves its last config before anyone pushes it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_data_plane_serves_its_persisted_config() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBackend::start("b0").await;
    let (task, client) = start(dir.path()).await;

    let second = run(RunOptions::new(dir.path().join("state"), dir.path().join("other.sock"))).await;
    assert!(matches!(second, Err(RunError::AlreadyRunning { .. })), "{second:?}");

    let mut front = fe("web", Protocol::Http, vec![be("b0", b.addr, Some("h0"))]);
    front.port = free_port();
    let config = Config {
        generation: 7,
        frontends: vec![front],
        health_checks: vec![check("h0", b.addr, ProbeProtocol::Http, "/health", 20, 1)],
    };
    let lb = client.put_config(&config).await.unwrap().frontends[0].local_addr.unwrap();
    eventually(WITHIN, "served", || async { matches!(get(lb, "/whoami").await, Ok((200, _))) }).await;
    client.shutdown().await.unwrap();
    tokio::time::timeout(WITHIN, task).await.unwrap().unwrap().unwrap();
    assert!(get(lb, "/whoami").await.is_err(), "listener closed with the data plane");
    let saved: Config =
        serde_json::from_slice(&std::fs::read(dir.path().join("state").join(galleon_lb::CONFIG_FILE)).unwrap())
            .unwrap();
    assert_eq!(saved, config);

    // Nobody pushes anything: it serves again by itself once the probe passes.
    let (task, client) = start(dir.path()).await;
    assert_eq!(client.config().await.unwrap().generation, 7);
    eventually(WITHIN, "served after restart", || async { matches!(get(lb, "/whoami").await, Ok((200, _))) }).await;
    // Generations keep counting from the persisted one.
    assert_eq!(
        client.put_config(&Config { generation: 6, ..config.clone() }).await.unwrap_err().stale_generation(),
        Some(7)
    );
    client.shutdown().await.unwrap();
    tokio::time::timeout(WITHIN, task).await.unwrap().unwrap().unwrap();
}
