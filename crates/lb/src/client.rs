//! `ControlClient`: the typed client of the control API, for the control plane and tests.
//!
//! One short HTTP/1.1 connection per call over the Unix socket, so a data plane that restarted between
//! two calls is simply reached again. Errors say whether the data plane is not running at all
//! (`is_not_running`) or refused a stale generation (`ApiError` with `current_generation`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::config::Config;
use crate::wire::{ApplyReport, DrainReport, DrainRequest, ErrorBody, EventsReport, HealthReport, StatusReport};

/// A call's time limit beyond what it asks to wait for (long polls, drains).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the data plane at {path}: {source}")]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("talking to the data plane: {0}")]
    Http(#[from] hyper::Error),
    #[error("the data plane did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the data plane answered {status}: ({code}) {message}")]
    Api { status: u16, code: String, message: String, current_generation: Option<u64> },
    #[error("the data plane's answer is not what was expected: {0}")]
    Decode(String),
}

impl ClientError {
    /// No data plane listens on the socket (absent, or left behind by a dead one).
    pub fn is_not_running(&self) -> bool {
        matches!(self, ClientError::Connect { source, .. }
            if matches!(source.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused))
    }

    /// The generation pushed was older than the one served: the served one, if so.
    pub fn stale_generation(&self) -> Option<u64> {
        match self {
            ClientError::Api { status: 409, current_generation, .. } => *current_generation,
            _ => None,
        }
    }
}

/// A client of one data plane's control socket.
#[derive(Debug, Clone)]
pub struct ControlClient {
    socket: PathBuf,
    timeout: Duration,
}

impl ControlClient {
    pub fn new(socket: impl Into<PathBuf>) -> ControlClient {
        ControlClient { socket: socket.into(), timeout: DEFAULT_TIMEOUT }
    }

    /// Each call's time limit, on top of the wait it asks for.
    pub fn with_timeout(mut self, timeout: Duration) -> ControlClient {
        self.timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Push the whole desired config; see `ApplyReport` for per-frontend bind results.
    pub async fn put_config(&self, config: &Config) -> Result<ApplyReport, ClientError> {
        let body = serde_json::to_vec(config).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.call_json(Method::PUT, "/config", Some(body), Duration::ZERO).await
    }

    pub async fn config(&self) -> Result<Config, ClientError> {
        self.call_json(Method::GET, "/config", None, Duration::ZERO).await
    }

    pub async fn health(&self) -> Result<HealthReport, ClientError> {
        self.call_json(Method::GET, "/health", None, Duration::ZERO).await
    }

    /// Transitions after `after`, waiting up to `wait` for one.
    pub async fn events(&self, after: u64, wait: Duration) -> Result<EventsReport, ClientError> {
        let path = format!("/events?after={after}&wait_ms={}", wait.as_millis());
        self.call_json(Method::GET, &path, None, wait).await
    }

    /// Wait for what is in flight to `keys` to end (take them out of service first).
    pub async fn drain(&self, keys: &[String], timeout: Option<Duration>) -> Result<DrainReport, ClientError> {
        let req = DrainRequest { keys: keys.to_vec(), timeout_ms: timeout.map(|t| t.as_millis() as u64) };
        let body = serde_json::to_vec(&req).map_err(|e| ClientError::Decode(e.to_string()))?;
        // Without a timeout the data plane uses its frontends' (default 30 s).
        let wait = timeout.unwrap_or(Duration::from_secs(3600));
        self.call_json(Method::POST, "/drain", Some(body), wait).await
    }

    pub async fn status(&self) -> Result<StatusReport, ClientError> {
        self.call_json(Method::GET, "/status", None, Duration::ZERO).await
    }

    /// Prometheus text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let (_, body) = self.call(Method::GET, "/metrics", None, Duration::ZERO).await?;
        String::from_utf8(body.to_vec()).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Ask the data plane to stop its listeners and exit.
    pub async fn shutdown(&self) -> Result<(), ClientError> {
        self.call(Method::POST, "/shutdown", None, Duration::ZERO).await.map(|_| ())
    }

    async fn call_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        wait: Duration,
    ) -> Result<T, ClientError> {
        let (_, bytes) = self.call(method, path, body, wait).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        wait: Duration,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let limit = self.timeout + wait;
        match tokio::time::timeout(limit, self.exchange(method, path, body)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout(limit)),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ClientError::Connect { path: self.socket.clone(), source })?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        let conn = tokio::spawn(conn);
        let mut req = Request::builder().method(method).uri(path).header(HOST, "dataplane");
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Decode(format!("request: {e}")))?;
        let response = sender.send_request(req).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        conn.abort();
        if status.is_success() {
            return Ok((status, bytes));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) => Err(ClientError::Api {
                status: status.as_u16(),
                code: e.error.code,
                message: e.error.message,
                current_generation: e.current_generation,
            }),
            Err(_) => Err(ClientError::Api {
                status: status.as_u16(),
                code: "Unknown".into(),
                message: String::from_utf8_lossy(&bytes).into_owned(),
                current_generation: None,
            }),
        }
    }
}
