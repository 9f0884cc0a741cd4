//! The sample app (`galleon sample-app`), a real one used by the demo and the tests: it serves its
//! image's page on `GALLEON_PRIVATE_IP`, has a health endpoint whose answer can be made to fail, and
//! keeps a visit counter and a boot log on its data disk.
//!
//! Endpoints: `/` the page (`index.html` of the OS disk, with the version), `/health` 200 or 500,
//! `/apphealth` the Application Health extension's rich form, `/fail` and `/recover` flip health,
//! `/slow` answers after 2 s, `/whoami` the instance id, `/version` the image version, `/visits` the
//! counter, `/data` the boot log. A file `UNHEALTHY` in the image root makes it start failing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

struct App {
    root: PathBuf,
    data: Option<PathBuf>,
    failing: AtomicBool,
    id: String,
    version: String,
    visits: std::sync::Mutex<()>,
}

pub fn main() -> i32 {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let ip = env("GALLEON_PRIVATE_IP").unwrap_or_else(|| "127.0.0.1".into());
    let port: u16 = env("APP_PORT").and_then(|p| p.parse().ok()).unwrap_or(8080);
    let root = env("GALLEON_OS_DISK").map(PathBuf::from).unwrap_or_else(|| std::env::current_dir().unwrap_or_default());
    let data = env("GALLEON_DATA_DISK").map(PathBuf::from);
    let version = env("GALLEON_IMAGE_VERSION").unwrap_or_else(|| "?".into());
    let app = Arc::new(App {
        failing: AtomicBool::new(root.join("UNHEALTHY").exists()),
        root,
        data,
        id: env("GALLEON_INSTANCE_ID").unwrap_or_else(|| "?".into()),
        version,
        visits: std::sync::Mutex::new(()),
    });
    if let Some(d) = &app.data {
        let line = format!("{} {}\n", app.version, now_secs());
        if let Err(e) = append(&d.join("boots"), &line) {
            eprintln!("sample-app: cannot write the boot log on the data disk: {e}");
        }
    }
    let addr: SocketAddr = match format!("{ip}:{port}").parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sample-app: bad address {ip}:{port}: {e}");
            return 2;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sample-app: {e}");
            return 1;
        }
    };
    rt.block_on(serve(app, addr))
}

async fn serve(app: Arc<App>, addr: SocketAddr) -> i32 {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sample-app: cannot listen on {addr}: {e}");
            return 1;
        }
    };
    println!("sample-app: instance {} serving version {} on http://{addr}/", app.id, app.version);
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sample-app: {e}");
            return 1;
        }
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(app.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            _ = term.recv() => {
                println!("sample-app: stopping");
                return 0;
            }
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    Ok(match path {
        "/health" | "/healthz" => {
            if app.failing.load(Ordering::Relaxed) {
                text(StatusCode::INTERNAL_SERVER_ERROR, "bad")
            } else {
                text(StatusCode::OK, "ok")
            }
        }
        "/apphealth" => {
            let state = if app.failing.load(Ordering::Relaxed) { "Unhealthy" } else { "Healthy" };
            text(StatusCode::OK, format!("{{\"ApplicationHealthState\": \"{state}\"}}"))
        }
        "/fail" => {
            app.failing.store(true, Ordering::Relaxed);
            text(StatusCode::OK, "failing")
        }
        "/recover" => {
            app.failing.store(false, Ordering::Relaxed);
            text(StatusCode::OK, "recovered")
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            text(StatusCode::OK, "slow")
        }
        "/whoami" => text(StatusCode::OK, app.id.clone()),
        "/version" => text(StatusCode::OK, app.version.clone()),
        "/data" => {
            let boots =
                app.data.as_ref().and_then(|d| std::fs::read_to_string(d.join("boots")).ok()).unwrap_or_default();
            text(StatusCode::OK, boots)
        }
        "/visits" => text(StatusCode::OK, visits(&app, false).to_string()),
        _ => {
            let n = visits(&app, true);
            let page = std::fs::read_to_string(app.root.join("index.html"))
                .unwrap_or_else(|_| format!("<html><body>galleon sample app {}</body></html>\n", app.version));
            let mut r = text(StatusCode::OK, page);
            if let Ok(v) = n.to_string().parse() {
                r.headers_mut().insert("x-visits", v);
            }
            if let Ok(v) = app.id.parse() {
                r.headers_mut().insert("x-instance-id", v);
            }
            r
        }
    })
}

/// The visit counter on the data disk (kept across upgrades, reimages and restarts).
fn visits(app: &App, count: bool) -> u64 {
    let Some(d) = &app.data else { return 0 };
    let _one_at_a_time = app.visits.lock().unwrap_or_else(|p| p.into_inner());
    let file = d.join("visits");
    let n: u64 = std::fs::read_to_string(&file).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    if !count {
        return n;
    }
    let tmp = d.join("visits.tmp");
    if std::fs::write(&tmp, (n + 1).to_string()).and_then(|_| std::fs::rename(&tmp, &file)).is_err() {
        return n;
    }
    n + 1
}

fn append(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new().create(true).append(true).open(path)?.write_all(line.as_bytes())
}

fn now_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}
