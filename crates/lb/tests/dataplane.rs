//! The data plane in-process, against real backends on 127.0.0.1: spread, health gating, drain, retries,
//! config swaps.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use galleon_lb::{Config, Dataplane, DataplaneOptions, HealthState, ProbeProtocol, Protocol};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const WITHIN: Duration = Duration::from_secs(10);

async fn three() -> Vec<TestBackend> {
    vec![TestBackend::start("b0").await, TestBackend::start("b1").await, TestBackend::start("b2").await]
}

fn plain(backends: &[TestBackend]) -> Vec<galleon_lb::Backend> {
    backends.iter().map(|b| be(&b.name, b.addr, None)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spreads_evenly_over_three_backends_on_tcp_and_http() {
    let bs = three().await;
    let dp = Dataplane::new(DataplaneOptions::default());
    let addrs = apply(
        &dp,
        Config {
            generation: 1,
            frontends: vec![fe("tcp", Protocol::Tcp, plain(&bs)), fe("http", Protocol::Http, plain(&bs))],
            health_checks: vec![],
        },
    )
    .await;
    for addr in addrs {
        let seen = spread(addr, 30).await;
        assert_eq!(seen, HashMap::from([("b0".into(), 10), ("b1".into(), 10), ("b2".into(), 10)]), "{addr}");
    }
    let st = dp.status();
    for f in &st.frontends {
        for b in &f.backends {
            assert_eq!(b.metrics.requests, 10, "{} {}", f.name, b.key);
            assert!(b.eligible);
        }
    }
    let http = &st.frontends[1].backends[0].metrics;
    assert_eq!(http.latency.count, 10);
    assert!(http.bytes_out >= 20, "{http:?}");
    // Backend connections are kept alive: Tcp made one per client connection, Http reused its pool.
    let accepted: Vec<u64> = bs.iter().map(|b| b.accepted.load(SeqCst)).collect();
    assert_eq!(accepted, [11, 11, 11], "10 Tcp connections and 1 pooled Http connection each");
    assert!(st.frontends[1].backends.iter().all(|b| b.pooled_idle == 1));
}

/// A backend whose probe starts failing stops receiving within interval × (threshold + 1), and returns
/// once it passes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_probe_removes_a_backend_and_passing_returns_it() {
    let bs = three().await;
    let dp = Dataplane::new(DataplaneOptions::default());
    let (interval, threshold) = (50, 2);
    let checks = bs
        .iter()
        .map(|b| check(&format!("h-{}", b.name), b.addr, ProbeProtocol::Http, "/health", interval, threshold))
        .collect();
    let backends = bs.iter().map(|b| be(&b.name, b.addr, Some(&format!("h-{}", b.name)))).collect();
    let addrs = apply(
        &dp,
        Config { generation: 1, frontends: vec![fe("http", Protocol::Http, backends)], health_checks: checks },
    )
    .await;
    for b in &bs {
        wait_state(&dp, &format!("h-{}", b.name), HealthState::Healthy, WITHIN).await;
    }
    assert_eq!(spread(addrs[0], 30).await.len(), 3);

    let seq = dp.health().seq;
    let failed_at = Instant::now();
    bs[1].set_healthy(false);
    wait_state(&dp, "h-b1", HealthState::Unhealthy, WITHIN).await;
    let took = failed_at.elapsed();
    // interval × (threshold + 1), with room for a loaded test machine.
    assert!(took <= Duration::from_millis(interval * (threshold as u64 + 1) + 250), "took {took:?}");
    let ev = dp.events(seq, Duration::ZERO).await;
    assert!(
        ev.events.iter().any(|e| e.check == "h-b1" && e.from == HealthState::Healthy && e.to == HealthState::Unhealthy),
        "{ev:?}"
    );
    let seen = spread(addrs[0], 30).await;
    assert_eq!(seen, HashMap::from([("b0".into(), 15), ("b2".into(), 15)]));
    let st = dp.status();
    assert!(!st.frontends[0].backends[1].eligible);
    assert_eq!(st.frontends[0].backends[1].health, Some(HealthState::Unhealthy));

    bs[1].set_healthy(true);
    wait_state(&dp, "h-b1", HealthState::Healthy, WITHIN).await;
    assert_eq!(spread(addrs[0], 30).await.len(), 3);
}

/// A backend still Initializing (its probe has not passed yet) gets nothing; no eligible backend at all
/// means 503 on Http and a closed connection on Tcp. Health-ungated frontends (NAT) ignore health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initializing_backends_receive_nothing() {
    initializing_backends_receive_nothing_with(0).await;
}

/// The same, served by two worker threads of their own (as `galleon dataplane` runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initializing_backends_receive_nothing_on_workers() {
    initializing_backends_receive_nothing_with(2).await;
}

async fn initializing_backends_receive_nothing_with(workers: usize) {
    let bs = three().await;
    let dp = Dataplane::new(DataplaneOptions { workers, ..DataplaneOptions::default() });
    // Its probe port refuses: silence inside a long grace keeps it Initializing.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut slow = check("h-slow", refused, ProbeProtocol::Tcp, "/", 20, 2);
    slow.grace_ms = 60_000;
    let ok = check("h-ok", bs[0].addr, ProbeProtocol::Tcp, "/", 20, 1);
    let mut nat = fe("nat", Protocol::Tcp, vec![be("b2", bs[2].addr, Some("h-slow"))]);
    nat.health_gated = false;
    let config = Config {
        generation: 1,
        frontends: vec![
            fe("mixed", Protocol::Http, vec![be("b0", bs[0].addr, Some("h-ok")), be("b1", bs[1].addr, Some("h-slow"))]),
            fe("none", Protocol::Http, vec![be("b1", bs[1].addr, Some("h-slow"))]),
            fe("none-tcp", Protocol::Tcp, vec![be("b1", bs[1].addr, Some("h-slow"))]),
            nat,
        ],
        health_checks: vec![slow, ok],
    };
    let addrs = apply(&dp, config).await;
    wait_state(&dp, "h-ok", HealthState::Healthy, WITHIN).await;
    // Several probes of h-slow have run by now, all silent.
    let before = dp.health().checks.iter().find(|c| c.id == "h-slow").unwrap().clone();
    assert_eq!(before.state, HealthState::Initializing);
    assert_eq!(spread(addrs[0], 10).await, HashMap::from([("b0".into(), 10)]));
    assert_eq!(spread(addrs[1], 3).await, HashMap::from([("status-503".into(), 3)]));
    let mut s = TcpStream::connect(addrs[2]).await.unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(s.read(&mut buf).await.unwrap_or(0), 0, "closed without a backend");
    assert_eq!(spread(addrs[3], 2).await, HashMap::from([("b2".into(), 2)]));
    assert_eq!(bs[1].hits(), 0);
    let st = dp.status();
    assert_eq!(st.frontends[1].unavailable, 3);
    assert_eq!(st.frontends[2].unavailable, 1);
}

/// In-flight slow requests finish on the drained backend, new ones go elsewhere, and `drain` returns only
/// once they are done; its idle pooled connections are closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_in_flight_requests_while_new_ones_go_elsewhere() {
    drain_waits_for_in_flight_requests_while_new_ones_go_elsewhere_with(0).await;
}

/// The same, served by two worker threads of their own (as `galleon dataplane` runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_in_flight_requests_while_new_ones_go_elsewhere_on_workers() {
    drain_waits_for_in_flight_requests_while_new_ones_go_elsewhere_with(2).await;
}

async fn drain_waits_for_in_flight_requests_while_new_ones_go_elsewhere_with(workers: usize) {
    let bs = three().await;
    let dp = Dataplane::new(DataplaneOptions { workers, ..DataplaneOptions::default() });
    let backends = |b0_in: bool| {
        let mut v: Vec<_> = bs.iter().map(|b| be(&b.name, b.addr, None)).collect();
        v[0].in_service = b0_in;
        v
    };
    let addrs = apply(
        &dp,
        Config { generation: 1, frontends: vec![fe("http", Protocol::Http, backends(true))], health_checks: vec![] },
    )
    .await;
    let lb = addrs[0];
    // Warm the pools, then three slow requests: round robin puts one on each backend.
    spread(lb, 6).await;
    let slow: Vec<_> = (0..3).map(|_| tokio::spawn(async move { get(lb, "/slow?ms=1000").await })).collect();
    eventually(WITHIN, "three slow requests in flight", || async {
        dp.status().frontends[0].backends.iter().all(|b| b.metrics.in_flight == 1)
    })
    .await;
    let report = dp
        .apply(Config {
            generation: 2,
            frontends: vec![fe("http", Protocol::Http, backends(false))],
            health_checks: vec![],
        })
        .await
        .unwrap();
    assert!(report.bind_errors().next().is_none());
    let started = Instant::now();
    let drain = {
        let dp = dp.clone();
        tokio::spawn(async move { dp.drain(&["b0".to_owned()], Some(Duration::from_secs(10))).await })
    };
    // New requests meanwhile never reach b0.
    let seen = spread(lb, 10).await;
    assert!(!seen.contains_key("b0") && seen.values().sum::<usize>() == 10, "{seen:?}");
    let drained = drain.await.unwrap();
    assert!(drained.drained, "{drained:?}");
    assert!(started.elapsed() >= Duration::from_millis(500), "drain returned before the slow request ended");
    let mut bodies: Vec<String> = Vec::new();
    for s in slow {
        let (status, body) = s.await.unwrap().unwrap();
        assert_eq!(status, 200);
        bodies.push(body);
    }
    bodies.sort();
    assert_eq!(bodies, ["b0", "b1", "b2"]);
    let b0 = &dp.status().frontends[0].backends[0];
    assert_eq!((b0.metrics.in_flight, b0.pooled_idle, b0.eligible), (0, 0, false));
}

/// A drain that times out says what was left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_reports_what_remains() {
    let b = TestBackend::start("b0").await;
    let dp = Dataplane::new(DataplaneOptions::default());
    let addrs = apply(
        &dp,
        Config {
            generation: 1,
            frontends: vec![fe("tcp", Protocol::Tcp, vec![be("b0", b.addr, None)])],
            health_checks: vec![],
        },
    )
    .await;
    let mut held = TcpStream::connect(addrs[0]).await.unwrap();
    held.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 256];
    assert!(held.read(&mut buf).await.unwrap() > 0);
    let report = dp.drain(&["b0".to_owned()], Some(Duration::from_millis(200))).await;
    assert!(!report.drained);
    assert_eq!(report.remaining.len(), 1);
    assert_eq!((report.remaining[0].open_connections, report.still_in_service.clone()), (1, vec!["tcp".to_owned()]));
    drop(held);
    let report = dp.drain(&["b0".to_owned()], Some(Duration::from_secs(10))).await;
    assert!(report.drained, "{report:?}");
}

/// The whole upgrade of one backend under concurrent keep-alive load: out of service, drained, killed,
/// restarted (epoch bump: Initializing, then Healthy), back in service. Not one request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_while_a_backend_is_drained_stopped_and_restarted() {
    no_request_fails_while_a_backend_is_drained_stopped_and_restarted_with(0).await;
}

/// The same, served by two worker threads of their own (as `galleon dataplane` runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_while_a_backend_is_drained_stopped_and_restarted_on_workers() {
    no_request_fails_while_a_backend_is_drained_stopped_and_restarted_with(2).await;
}

async fn no_request_fails_while_a_backend_is_drained_stopped_and_restarted_with(workers: usize) {
    let mut bs = three().await;
    let dp = Dataplane::new(DataplaneOptions { workers, ..DataplaneOptions::default() });
    let config = |b1_in: bool, epoch: u64, bs: &[TestBackend], generation: u64| {
        let mut checks: Vec<_> =
            bs.iter().map(|b| check(&format!("h-{}", b.name), b.addr, ProbeProtocol::Http, "/health", 30, 2)).collect();
        checks[1].epoch = epoch;
        let mut backends: Vec<_> = bs.iter().map(|b| be(&b.name, b.addr, Some(&format!("h-{}", b.name)))).collect();
        backends[1].in_service = b1_in;
        Config { generation, frontends: vec![fe("http", Protocol::Http, backends)], health_checks: checks }
    };
    let lb = apply(&dp, config(true, 0, &bs, 1)).await[0];
    for b in &bs {
        wait_state(&dp, &format!("h-{}", b.name), HealthState::Healthy, WITHIN).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load: Vec<_> = (0..8)
        .map(|i| {
            let (stop, sent, failed, failures) = (stop.clone(), sent.clone(), failed.clone(), failures.clone());
            tokio::spawn(async move {
                let mut c = KeepAlive::new(lb);
                let path = if i % 4 == 0 { "/slow?ms=100" } else { "/whoami" };
                while !stop.load(SeqCst) {
                    sent.fetch_add(1, SeqCst);
                    match c.get(path).await {
                        Ok((200, _)) => {}
                        other => {
                            failed.fetch_add(1, SeqCst);
                            failures.lock().unwrap().push(format!("{other:?}"));
                        }
                    }
                }
            })
        })
        .collect();
    let warm = sent.load(SeqCst);
    eventually(WITHIN, "load running", || async { sent.load(SeqCst) > warm + 200 }).await;

    dp.apply(config(false, 0, &bs, 2)).await.unwrap();
    let drained = dp.drain(&["b1".to_owned()], Some(Duration::from_secs(10))).await;
    assert!(drained.drained, "{drained:?}");
    let addr = bs[1].addr;
    bs[1].kill().await;
    let before_restart = sent.load(SeqCst);
    eventually(WITHIN, "load continues without b1", || async { sent.load(SeqCst) > before_restart + 200 }).await;
    bs[1] = TestBackend::start_on("b1", addr).await;
    dp.apply(config(true, 1, &bs, 3)).await.unwrap();
    wait_state(&dp, "h-b1", HealthState::Healthy, WITHIN).await;
    eventually(WITHIN, "b1 serves again", || async { bs[1].hits() > 20 }).await;

    stop.store(true, SeqCst);
    for l in load {
        l.await.unwrap();
    }
    assert_eq!(
        failed.load(SeqCst),
        0,
        "{} of {} failed: {:?}",
        failed.load(SeqCst),
        sent.load(SeqCst),
        failures.lock().unwrap()
    );
}

/// A backend that dies between two probes (no drain, still "Healthy") fails no client request: Tcp tries
/// the next backend when the connect is refused, Http when the pooled connection is closed or the
/// connect refused — for a POST with a body too, since nothing was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_on_another_backend_when_one_dies_unannounced() {
    retries_on_another_backend_when_one_dies_unannounced_with(0).await;
}

/// The same, served by two worker threads of their own (as `galleon dataplane` runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_on_another_backend_when_one_dies_unannounced_on_workers() {
    retries_on_another_backend_when_one_dies_unannounced_with(2).await;
}

async fn retries_on_another_backend_when_one_dies_unannounced_with(workers: usize) {
    let mut bs = three().await;
    let dp = Dataplane::new(DataplaneOptions { workers, ..DataplaneOptions::default() });
    let addrs = apply(
        &dp,
        Config {
            generation: 1,
            frontends: vec![fe("tcp", Protocol::Tcp, plain(&bs)), fe("http", Protocol::Http, plain(&bs))],
            health_checks: vec![],
        },
    )
    .await;
    // Pooled connections to every backend exist.
    let mut ka = KeepAlive::new(addrs[1]);
    for _ in 0..9 {
        ka.get("/whoami").await.unwrap();
    }
    bs[1].kill().await;
    for addr in &addrs {
        let seen = spread(*addr, 30).await;
        assert_eq!(seen.values().sum::<usize>(), 30);
        assert!(seen.keys().all(|k| k == "b0" || k == "b2"), "{addr}: {seen:?}");
    }
    for _ in 0..9 {
        assert_eq!(ka.get("/whoami").await.unwrap().0, 200);
    }
    for i in 0..6 {
        let (status, body) = request(addrs[1], "POST", "/echo", Some(&format!("payload {i}"))).await.unwrap();
        assert_eq!(status, 200);
        assert!(body.ends_with(&format!("payload {i}")), "{body}");
    }
    let st = dp.status();
    assert!(st.frontends.iter().all(|f| f.backends[1].metrics.errors > 0));
    assert_eq!(st.frontends[1].failed, 0);
}

/// Applying a new config keeps open connections: a Tcp connection stays on its backend even when the
/// backend leaves the config; an Http keep-alive client keeps its connection; a removed frontend stops
/// accepting while its open connection finishes the request in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_swap_keeps_open_connections() {
    config_swap_keeps_open_connections_with(0).await;
}

/// The same, served by two worker threads of their own (as `galleon dataplane` runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_swap_keeps_open_connections_on_workers() {
    config_swap_keeps_open_connections_with(2).await;
}

async fn config_swap_keeps_open_connections_with(workers: usize) {
    let bs = three().await;
    let dp = Dataplane::new(DataplaneOptions { workers, ..DataplaneOptions::default() });
    let config1 = Config {
        generation: 1,
        frontends: vec![
            fe("tcp", Protocol::Tcp, vec![be("b0", bs[0].addr, None)]),
            fe("http", Protocol::Http, vec![be("b0", bs[0].addr, None)]),
            fe("old", Protocol::Http, vec![be("b0", bs[0].addr, None)]),
        ],
        health_checks: vec![],
    };
    let addrs = apply(&dp, config1).await;
    let mut tcp = TcpStream::connect(addrs[0]).await.unwrap();
    let mut ka = KeepAlive::new(addrs[1]);
    assert_eq!(ka.get("/whoami").await.unwrap().1, "b0");
    let http_get = b"GET /whoami HTTP/1.1\r\nhost: x\r\n\r\n";
    tcp.write_all(http_get).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).ends_with("b0"));
    let old = addrs[2];
    let in_flight_on_old = tokio::spawn(async move { get(old, "/slow?ms=500").await });
    eventually(WITHIN, "slow request in flight on the old frontend", || async {
        dp.status().frontends[2].backends[0].metrics.in_flight == 1
    })
    .await;

    let config2 = Config {
        generation: 2,
        frontends: vec![
            fe("tcp", Protocol::Tcp, vec![be("b1", bs[1].addr, None), be("b2", bs[2].addr, None)]),
            fe("http", Protocol::Http, vec![be("b1", bs[1].addr, None)]),
            fe("new", Protocol::Tcp, vec![be("b2", bs[2].addr, None)]),
        ],
        health_checks: vec![],
    };
    let report = dp.apply(config2).await.unwrap();
    assert_eq!(report.frontends[0].local_addr, Some(addrs[0]), "kept listener keeps its socket");
    // The open Tcp connection still talks to b0.
    tcp.write_all(http_get).await.unwrap();
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).ends_with("b0"));
    // The keep-alive Http client keeps its connection and now reaches b1.
    assert_eq!(ka.get("/whoami").await.unwrap().1, "b1");
    assert_eq!(ka.connects, 1);
    // The removed frontend refuses new connections but finished its request.
    assert!(TcpStream::connect(addrs[2]).await.is_err());
    assert_eq!(in_flight_on_old.await.unwrap().unwrap(), (200, "b0".to_owned()));
    // New connections on the kept Tcp frontend go to the new backends.
    let seen = spread(addrs[0], 4).await;
    assert_eq!(seen, HashMap::from([("b1".into(), 2), ("b2".into(), 2)]));
    assert!(dp.apply(Config { generation: 1, ..Config::default() }).await.is_err(), "older generation refused");
}

/// Application Health extension v2: the JSON body decides over the status code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_health_json_body_decides_over_the_status() {
    let b = TestBackend::start("b0").await;
    let dp = Dataplane::new(DataplaneOptions::default());
    let h = check("app", b.addr, ProbeProtocol::AppHealthHttp, "/apphealth", 20, 1);
    b.set_app_health(500, r#"{"ApplicationHealthState": "Healthy"}"#);
    apply(
        &dp,
        Config {
            generation: 1,
            frontends: vec![fe("http", Protocol::Http, vec![be("b0", b.addr, Some("app"))])],
            health_checks: vec![h],
        },
    )
    .await;
    wait_state(&dp, "app", HealthState::Healthy, WITHIN).await;
    b.set_app_health(200, r#"{"ApplicationHealthState": "Unhealthy"}"#);
    wait_state(&dp, "app", HealthState::Unhealthy, WITHIN).await;
    let c = dp.health().checks.into_iter().find(|c| c.id == "app").unwrap();
    assert!(c.last_detail.unwrap().contains("Unhealthy"));
    // Without a verdict in the body, the status decides.
    b.set_app_health(200, "fine");
    wait_state(&dp, "app", HealthState::Healthy, WITHIN).await;
}

/// Https probes (`tls`): the Http exchange over TLS with a self-signed certificate accepted, the
/// Application Health body still deciding; a backend that does not speak TLS fails the probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_probes_speak_tls_and_fail_a_backend_that_does_not() {
    let body = Arc::new(std::sync::Mutex::new(r#"{"ApplicationHealthState": "Healthy"}"#.to_owned()));
    let (tls_addr, _server) = tls_backend(body.clone()).await;
    let plain = TestBackend::start("plain").await;
    let dp = Dataplane::new(DataplaneOptions::default());
    let mut over_tls = check("tls", tls_addr, ProbeProtocol::AppHealthHttp, "/apphealth", 20, 1);
    over_tls.tls = true;
    let mut not_tls = check("plain", plain.addr, ProbeProtocol::Http, "/health", 20, 1);
    not_tls.tls = true;
    apply(
        &dp,
        Config {
            generation: 1,
            frontends: vec![fe(
                "http",
                Protocol::Http,
                vec![be("tls", tls_addr, Some("tls")), be("plain", plain.addr, Some("plain"))],
            )],
            health_checks: vec![over_tls, not_tls],
        },
    )
    .await;
    wait_state(&dp, "tls", HealthState::Healthy, WITHIN).await;
    wait_state(&dp, "plain", HealthState::Unhealthy, WITHIN).await;
    let detail = |id: &str| dp.health().checks.into_iter().find(|c| c.id == id).unwrap().last_detail.unwrap();
    assert!(detail("plain").contains("TLS handshake"), "{}", detail("plain"));
    *body.lock().unwrap() = r#"{"ApplicationHealthState": "Unhealthy"}"#.to_owned();
    wait_state(&dp, "tls", HealthState::Unhealthy, WITHIN).await;
    assert!(detail("tls").contains("ApplicationHealthState Unhealthy"), "{}", detail("tls"));
}

/// Pure timing on tokio's paused clock: a backend that never answers stays Initializing through its grace
/// period, then is Unhealthy; a bumped epoch starts it over.
#[tokio::test(start_paused = true)]
async fn silence_counts_only_after_the_grace_period() {
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dp = Dataplane::new(DataplaneOptions::default());
    let mut h = check("h", refused, ProbeProtocol::Tcp, "/", 1000, 2);
    h.grace_ms = 30_000;
    let mut config = Config { generation: 1, frontends: vec![], health_checks: vec![h] };
    dp.apply(config.clone()).await.unwrap();
    let start = Instant::now();
    wait_state(&dp, "h", HealthState::Unhealthy, Duration::from_secs(120)).await;
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(30) && took <= Duration::from_secs(32), "{took:?}");
    config.generation = 2;
    config.health_checks[0].epoch = 1;
    dp.apply(config).await.unwrap();
    let c = &dp.health().checks[0];
    assert_eq!((c.state, c.epoch), (HealthState::Initializing, 1));
}

/// What a client writes on one connection, and everything it reads until the proxy closes it.
async fn raw_exchange(addr: std::net::SocketAddr, chunks: &[&str]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut seen = Vec::new();
    for c in chunks {
        s.write_all(c.as_bytes()).await.unwrap();
        if c.contains("expect: 100-continue") {
            // The body goes only once the proxy said to send it.
            let mut buf = [0u8; 64];
            let n = tokio::time::timeout(WITHIN, s.read(&mut buf)).await.unwrap().unwrap();
            seen.extend_from_slice(&buf[..n]);
        }
    }
    tokio::time::timeout(WITHIN, s.read_to_end(&mut seen)).await.unwrap().unwrap();
    String::from_utf8_lossy(&seen).into_owned()
}

/// HTTP/1.1 framing through the Http proxy: a chunked body and a pipelined request after it, a body
/// sent only after `100 Continue`, an HTTP/1.0 client without `Host` kept alive on request, hop-by-hop
/// headers gone; backend connections are reused throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_framing_survives_the_proxy() {
    let b = TestBackend::start("b0").await;
    let dp = Dataplane::new(DataplaneOptions { workers: 2, ..DataplaneOptions::default() });
    let config = Config {
        generation: 1,
        frontends: vec![fe("http", Protocol::Http, vec![be("b0", b.addr, None)])],
        health_checks: vec![],
    };
    let lb = apply(&dp, config).await[0];
    let out = raw_exchange(
        lb,
        &[
            "POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
            "lo\r\n0\r\n\r\n\
           GET /whoami HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        ],
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n") && out.contains("b0 hello"), "{out}");
    assert!(out.ends_with("\r\nconnection: close\r\n\r\nb0") || out.ends_with("b0"), "{out}");
    assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out}");

    let out = raw_exchange(
        lb,
        &[
            "PUT /echo HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 4\r\nconnection: close\r\n\r\n",
            "body",
        ],
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n") && out.ends_with("b0 body"), "{out}");

    let out = raw_exchange(
        lb,
        &["GET /whoami HTTP/1.0\r\nconnection: keep-alive\r\nkeep-alive: timeout=5\r\n\r\nGET /whoami HTTP/1.0\r\n\r\n"],
    )
    .await;
    let heads: Vec<&str> = out.split("HTTP/1.1 200 OK\r\n").skip(1).collect();
    assert_eq!(heads.len(), 2, "{out}");
    assert!(heads[0].contains("connection: keep-alive\r\n") && heads[1].contains("connection: close\r\n"), "{out}");
    assert!(!out.to_ascii_lowercase().contains("keep-alive: timeout"), "{out}");
    // Pools are per worker: at most one backend connection each carried all of it.
    assert!(b.accepted.load(SeqCst) <= 2, "{} backend connections", b.accepted.load(SeqCst));
}
