//! The control plane: `galleon serve`. It owns a home's state and decides; adapters act.
//!
//! `serve` opens the home (lock, database, image store), then answers the ARM API on the home's Unix
//! socket. Requests are parsed into shapes (`request`), routed by `api::handle`, and answered by
//! handlers that change state in one transaction each. See ARCHITECTURE.md for the whole map.

pub mod addresses;
pub mod api;
pub mod clock;
pub mod error;
pub mod events;
pub mod fleet;
pub mod home;
pub mod imaging;
pub mod net;
pub mod ops;
pub mod request;
pub mod resource;
pub mod shutdown;
pub mod upgrade;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use galleon_images::ImageStore;
use galleon_runtime::{ProcessRuntime, Runtime};
use galleon_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ApiError;
use crate::home::Home;
use crate::request::ApiRequest;

/// Everything the handlers share. Cheap to clone (`App` is an `Arc`).
pub struct AppState {
    pub home: Home,
    pub store: Store,
    pub images: ImageStore,
    /// Imports and publishing hold it shared, garbage collection exclusively.
    pub image_lock: RwLock<()>,
    pub subscription: String,
    pub tenant: String,
    pub events: events::Events,
    /// Where instances run.
    pub runtime: Arc<dyn Runtime>,
    /// The home's block of loopback addresses.
    pub block: addresses::Block,
    /// The data plane's configuration and health, as the control plane sees them.
    pub net: net::Net,
    /// Background work (instance actions, upgrades); waited for on a clean shutdown.
    pub tasks: TaskTracker,
    /// The output of image builds.
    pub builds: api::builds::Builds,
    /// Cancelled when `galleon shutdown` starts: actions stop at their next phase, new work is refused.
    pub shutdown: CancellationToken,
    /// Notified when a shutdown has stopped everything; `serve` then exits.
    pub stopped: tokio::sync::Notify,
    /// When this control plane started (RFC 3339).
    pub started_at: String,
}

pub type App = Arc<AppState>;

/// Runs blocking work (SQLite, the runtime, the image store) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&App) -> error::ApiResult<T> + Send + 'static,
) -> error::ApiResult<T> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || f(&app))
        .await
        .map_err(|e| ApiError::internal(format!("blocking work failed: {e}")))?
}

pub struct ServeOptions {
    pub home: PathBuf,
}

/// Opens the home and its state; creates the subscription and claims the address block on first start.
pub fn open(home: Home) -> anyhow::Result<App> {
    let agent = std::env::current_exe().context("cannot find the galleon binary (for instance agents)")?;
    let runtime = Arc::new(ProcessRuntime::new(home.instances_dir(), agent));
    open_with(home, runtime)
}

/// `open`, with the runtime given (tests drive a fake one).
pub fn open_with(home: Home, runtime: Arc<dyn Runtime>) -> anyhow::Result<App> {
    let store = Store::open(&home.database()).context("cannot open the state database")?;
    let images = ImageStore::open(&home.store_dir()).context("cannot open the image store")?;
    let (subscription, tenant) = store.write(|tx| {
        let sub = match tx.meta("subscription")? {
            Some(s) => s,
            None => {
                let s = uuid::Uuid::new_v4().to_string();
                tx.set_meta("subscription", &s)?;
                tx.set_meta("tenant", &uuid::Uuid::new_v4().to_string())?;
                s
            }
        };
        Ok::<_, galleon_store::StoreError>((sub, tx.meta("tenant")?.unwrap_or_default()))
    })?;
    let recorded = store.read(|tx| tx.meta("address_block"))?.and_then(|b| b.parse().ok());
    let block = addresses::claim(home.root(), recorded)?;
    store.write(|tx| tx.set_meta("address_block", &block.0.to_string()))?;
    make_private(&home.database())?;
    Ok(Arc::new(AppState {
        home,
        store,
        images,
        image_lock: RwLock::new(()),
        subscription,
        tenant,
        events: events::Events::default(),
        runtime,
        block,
        net: net::Net::default(),
        tasks: TaskTracker::new(),
        builds: Default::default(),
        shutdown: CancellationToken::new(),
        stopped: tokio::sync::Notify::new(),
        started_at: clock::now_rfc3339(),
    }))
}

/// The database holds the home's state: only its owner reads it (the home is 0700 too).
fn make_private(path: &std::path::Path) -> anyhow::Result<()> {
    for p in [path.to_path_buf(), path.with_extension("db-wal"), path.with_extension("db-shm")] {
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// The API router: every request goes through `dispatch`.
pub fn router(app: App) -> Router {
    Router::new().fallback(dispatch).with_state(app)
}

async fn dispatch(State(app): State<App>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if app.shutdown.is_cancelled() && method != Method::GET {
        return ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "ShuttingDown",
            "The home is shutting down; start it again with `galleon serve`.",
        )
        .into_response();
    }
    if uri.path() == "/metrics" {
        // Prometheus text of every load-balancer frontend and backend (the data plane's).
        let result = tokio::task::spawn_blocking(move || app.net.prometheus()).await;
        return match result {
            Ok(Ok(text)) => ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
            Ok(Err(e)) => e.into_response(),
            Err(e) => ApiError::internal(e).into_response(),
        };
    }
    let Some(req) = ApiRequest::parse(method, uri.path(), uri.query(), headers, body) else {
        return ApiError::not_found("NotFound", format!("'{}' is not an ARM path (/subscriptions/…).", uri.path()))
            .into_response();
    };
    // Handlers use SQLite and the file system directly: run them where blocking is fine.
    match tokio::task::spawn_blocking(move || api::handle(&app, &req)).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::internal(format!("a request handler failed: {e}")).into_response(),
    }
}

/// Runs the control plane until SIGTERM or SIGINT.
pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    let home = Home::prepare(&opts.home)?;
    let _lock = home.lock_control_plane()?;
    let app = open(home.clone())?;
    let socket = home.socket();
    let _ = std::fs::remove_file(&socket);
    let listener =
        tokio::net::UnixListener::bind(&socket).with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(
        "galleon serves the home {} on {} (addresses {}/20)",
        home.root().display(),
        socket.display(),
        app.block.base()
    );
    app.net.start(&app).await.context("cannot start the data plane")?;
    api::builds::fail_interrupted(&app).map_err(|e| anyhow::anyhow!("cannot recover builds: {}", e.message))?;
    fleet::resume(&app).await.map_err(|e| anyhow::anyhow!("cannot resume the fleet: {}", e.message))?;
    upgrade::resume(&app).map_err(|e| anyhow::anyhow!("cannot resume upgrades: {}", e.message))?;
    api::groups::resume(&app).map_err(|e| anyhow::anyhow!("cannot resume group deletions: {}", e.message))?;
    let stopped = {
        let app = app.clone();
        async move { app.stopped.notified().await }
    };
    axum::serve(listener, router(app.clone()))
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = stopped => {}
            }
        })
        .await?;
    // Work in flight is recorded; a restarted control plane resumes it. Give it a moment to reach a
    // phase boundary, then leave (instances keep running, unless `galleon shutdown` stopped the home).
    let whole_home = app.shutdown.is_cancelled();
    app.shutdown.cancel();
    app.tasks.close();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), app.tasks.wait()).await;
    if whole_home {
        tracing::info!("galleon stopped the home: its instances and data plane are stopped");
    } else {
        tracing::info!("galleon stopped; instances and the data plane keep running");
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
