//! Test backends, clients and config builders for the data plane's tests: real sockets on 127.0.0.1,
//! ephemeral ports, no fixed sleeps (conditions are awaited with a deadline).
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use galleon_lb::{
    Backend, Config, Dataplane, Distribution, Frontend, HealthCheck, HealthState, ProbeProtocol, Protocol,
};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1 as client_http1;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

pub const LOCAL: &str = "127.0.0.1";

/// A tiny HTTP backend: `/whoami` and `/` answer its name, `/health` 200 or 500, `/apphealth` a
/// configurable status and body, `/slow?ms=N` its name after N ms, `/echo` the request body.
pub struct TestBackend {
    pub name: String,
    pub addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    app_health: Arc<Mutex<(u16, String)>>,
    pub hits: Arc<AtomicU64>,
    /// Connections accepted: keep-alive reuse shows here.
    pub accepted: Arc<AtomicU64>,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl TestBackend {
    pub async fn start(name: &str) -> TestBackend {
        TestBackend::start_on(name, format!("{LOCAL}:0").parse().unwrap()).await
    }

    /// Bind `addr` (SO_REUSEADDR, so a restarted backend gets its port back).
    pub async fn start_on(name: &str, addr: SocketAddr) -> TestBackend {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).unwrap();
        let listener = socket.listen(1024).unwrap();
        let addr = listener.local_addr().unwrap();
        let healthy = Arc::new(AtomicBool::new(true));
        let app_health = Arc::new(Mutex::new((200, r#"{"ApplicationHealthState": "Healthy"}"#.to_owned())));
        let hits = Arc::new(AtomicU64::new(0));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let state = Handler {
            name: name.to_owned(),
            healthy: healthy.clone(),
            app_health: app_health.clone(),
            hits: hits.clone(),
        };
        let c = conns.clone();
        let accepted = Arc::new(AtomicU64::new(0));
        let counted = accepted.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                counted.fetch_add(1, SeqCst);
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let task = tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.answer(req).await) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
                let mut conns = c.lock().unwrap();
                conns.retain(|h| !h.is_finished());
                conns.push(task);
            }
        });
        TestBackend { name: name.to_owned(), addr, healthy, app_health, hits, accepted, accept: Some(accept), conns }
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, SeqCst);
    }

    pub fn set_app_health(&self, status: u16, body: &str) {
        *self.app_health.lock().unwrap() = (status, body.to_owned());
    }

    /// Die like a crashed process: once this returns, the listening socket and every connection are
    /// closed.
    pub async fn kill(&mut self) {
        let accept = self.accept.take();
        let conns: Vec<JoinHandle<()>> = self.conns.lock().unwrap().drain(..).collect();
        for t in accept.into_iter().chain(conns) {
            t.abort();
            let _ = t.await;
        }
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(SeqCst)
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        for t in self.accept.take().into_iter().chain(self.conns.lock().unwrap().drain(..)) {
            t.abort();
        }
    }
}

#[derive(Clone)]
struct Handler {
    name: String,
    healthy: Arc<AtomicBool>,
    app_health: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicU64>,
}

impl Handler {
    async fn answer(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let query: HashMap<String, String> = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let reply = |status: u16, body: String| {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            r
        };
        match path.as_str() {
            "/health" => {
                if self.healthy.load(SeqCst) {
                    reply(200, "ok".into())
                } else {
                    reply(500, "failing".into())
                }
            }
            "/apphealth" => {
                let (s, b) = self.app_health.lock().unwrap().clone();
                reply(s, b)
            }
            "/echo" => {
                self.hits.fetch_add(1, SeqCst);
                let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                reply(200, format!("{} {}", self.name, String::from_utf8_lossy(&body)))
            }
            "/slow" => {
                self.hits.fetch_add(1, SeqCst);
                let ms = query.get("ms").and_then(|v| v.parse().ok()).unwrap_or(1000);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                reply(200, self.name.clone())
            }
            _ => {
                self.hits.fetch_add(1, SeqCst);
                reply(200, self.name.clone())
            }
        }
    }
}

/// One request on a new connection: (status, body).
pub async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    request(addr, "GET", path, None).await
}

pub async fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = client_http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    send(&mut sender, addr, method, path, body).await
}

async fn send(
    sender: &mut client_http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
        .unwrap();
    sender.ready().await.map_err(|e| format!("ready: {e}"))?;
    let resp = sender.send_request(req).await.map_err(|e| format!("send: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A client that keeps one connection open across requests, as browsers and load generators do.
pub struct KeepAlive {
    addr: SocketAddr,
    sender: Option<client_http1::SendRequest<Full<Bytes>>>,
    pub connects: u32,
}

impl KeepAlive {
    pub fn new(addr: SocketAddr) -> KeepAlive {
        KeepAlive { addr, sender: None, connects: 0 }
    }

    pub async fn get(&mut self, path: &str) -> Result<(u16, String), String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(self.addr).await.map_err(|e| format!("connect: {e}"))?;
            let (sender, conn) = client_http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            self.sender = Some(sender);
            self.connects += 1;
        }
        let sender = self.sender.as_mut().unwrap();
        let r = send(sender, self.addr, "GET", path, None).await;
        if r.is_err() {
            self.sender = None;
        }
        r
    }
}

pub fn be(key: &str, addr: SocketAddr, check: Option<&str>) -> Backend {
    Backend {
        key: key.into(),
        address: addr.ip(),
        port: addr.port(),
        health_check: check.map(str::to_owned),
        in_service: true,
        weight: 1,
    }
}

pub fn fe(name: &str, protocol: Protocol, backends: Vec<Backend>) -> Frontend {
    Frontend {
        name: name.into(),
        address: LOCAL.parse().unwrap(),
        port: 0,
        protocol,
        distribution: Distribution::Default,
        idle_timeout_secs: 240,
        drain_timeout_secs: 30,
        health_gated: true,
        backends,
    }
}

pub fn check(
    id: &str,
    addr: SocketAddr,
    protocol: ProbeProtocol,
    path: &str,
    interval_ms: u64,
    threshold: u32,
) -> HealthCheck {
    HealthCheck {
        id: id.into(),
        address: addr.ip(),
        port: addr.port(),
        protocol,
        path: Some(path.into()),
        tls: false,
        interval_ms,
        threshold,
        grace_ms: 10_000,
        epoch: 0,
    }
}

/// Apply and return the bound address of each frontend, in order.
pub async fn apply(dp: &Dataplane, config: Config) -> Vec<SocketAddr> {
    let report = dp.apply(config).await.unwrap();
    report
        .frontends
        .iter()
        .map(|f| f.local_addr.unwrap_or_else(|| panic!("{} not bound: {:?}", f.name, f.error)))
        .collect()
}

/// Wait (on the event log, no polling) until `check` is in `state`.
pub async fn wait_state(dp: &Dataplane, check: &str, state: HealthState, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut after = 0;
    loop {
        let now = dp.health();
        if now.checks.iter().any(|c| c.id == check && c.state == state) {
            return;
        }
        after = after.max(now.seq);
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "{check} not {state:?} within {within:?}: {:?}", now.checks);
        let ev = dp.events(after, left).await;
        after = ev.seq;
    }
}

/// Poll a condition every 10 ms until it holds, or fail after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if f().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Count bodies of `n` requests, each on a new connection.
pub async fn spread(addr: SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let key = match get(addr, "/whoami").await {
            Ok((200, body)) => body,
            Ok((status, _)) => format!("status-{status}"),
            Err(e) => format!("error: {e}"),
        };
        *seen.entry(key).or_default() += 1;
    }
    seen
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// An HTTPS backend with a fresh self-signed certificate: every request is answered 200 with `body`
/// (read at each request), then the connection is closed.
pub async fn tls_backend(body: Arc<Mutex<String>>) -> (SocketAddr, JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let signed = rcgen::generate_simple_self_signed(vec![LOCAL.to_owned()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(signed.signing_key.serialize_der()));
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![signed.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(format!("{LOCAL}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else { return };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = body.lock().unwrap().clone();
                let answer =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, task)
}
