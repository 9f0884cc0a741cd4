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
pub mod home;
pub mod imaging;
pub mod request;
pub mod resource;

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
use galleon_store::Store;

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
}

pub type App = Arc<AppState>;

pub struct ServeOptions {
    pub home: PathBuf,
}

/// Opens the home and its state; creates the subscription on first start.
pub fn open(home: Home) -> anyhow::Result<App> {
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
    Ok(Arc::new(AppState {
        home,
        store,
        images,
        image_lock: RwLock::new(()),
        subscription,
        tenant,
        events: events::Events::default(),
    }))
}

/// The API router: every request goes through `dispatch`.
pub fn router(app: App) -> Router {
    Router::new().fallback(dispatch).with_state(app)
}

async fn dispatch(State(app): State<App>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
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
    tracing::info!("galleon serves the home {} on {}", home.root().display(), socket.display());
    axum::serve(listener, router(app)).with_graceful_shutdown(shutdown_signal()).await?;
    tracing::info!("galleon stopped; instances and the data plane keep running");
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
