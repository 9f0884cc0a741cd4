//! A typed client for galleon's ARM API over the home's Unix socket, used by the CLI and the tests.
//!
//! It speaks HTTP/1.1 on a fresh connection per request (a Unix socket connect costs microseconds),
//! adds `api-version`, turns ARM error bodies into `ClientError::Api`, and follows long-running
//! operations (`Azure-AsyncOperation`) to their end. It knows nothing of commands or output formats.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use galleon_api::{API_VERSION, ErrorDetail, ErrorResponse, OperationState, OperationStatus};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no galleon daemon answers at {}: start one with `galleon serve --home {}`", socket.display(), home.display())]
    NoDaemon { socket: PathBuf, home: PathBuf },
    #[error("({}) {}", error.code, error.message)]
    Api { status: StatusCode, error: ErrorDetail },
    #[error("talking to the daemon failed: {0}")]
    Transport(String),
    #[error("the daemon's answer could not be read: {0}")]
    Decode(String),
}

impl ClientError {
    /// The HTTP status of an API error, if this is one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The ARM error code of an API error, if this is one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { error, .. } => Some(&error.code),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// One answer: status, the headers that matter, and the body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub async_operation: Option<String>,
    pub body: Bytes,
}

impl Response {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

/// Extra request headers for a PUT that must not replace an existing resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precondition {
    #[default]
    None,
    /// `If-None-Match: *`: create only.
    MustNotExist,
}

#[derive(Clone, Debug)]
pub struct Client {
    home: PathBuf,
    socket: PathBuf,
}

impl Client {
    /// A client for the daemon of `home` (its socket is `home/galleon.sock`).
    pub fn for_home(home: &Path) -> Client {
        Client { home: home.to_path_buf(), socket: home.join("galleon.sock") }
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Sends one request. `path` is an ARM path, with or without a query; `api-version` is added.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        pre: Precondition,
    ) -> Result<Response> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|_| ClientError::NoDaemon { socket: self.socket.clone(), home: self.home.clone() })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        tokio::spawn(conn);
        let sep = if path.contains('?') { '&' } else { '?' };
        let uri = if path.contains("api-version=") {
            path.to_string()
        } else {
            format!("{path}{sep}api-version={API_VERSION}")
        };
        let mut req = Request::builder().method(method).uri(uri).header(header::HOST, "galleon");
        if pre == Precondition::MustNotExist {
            req = req.header(header::IF_NONE_MATCH, "*");
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v).map_err(|e| ClientError::Decode(e.to_string()))?)
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(body)).map_err(|e| ClientError::Transport(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = resp.status();
        let async_operation =
            resp.headers().get("azure-asyncoperation").and_then(|v| v.to_str().ok()).map(String::from);
        let body = resp.into_body().collect().await.map_err(|e| ClientError::Transport(e.to_string()))?.to_bytes();
        if status.is_client_error() || status.is_server_error() {
            let error = serde_json::from_slice::<ErrorResponse>(&body).map(|e| e.error).unwrap_or_else(|_| {
                ErrorDetail::new(status.as_str(), String::from_utf8_lossy(&body).trim().to_string())
            });
            return Err(ClientError::Api { status, error });
        }
        Ok(Response { status, async_operation, body })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(Method::GET, path, None, Precondition::None).await?.json()
    }

    pub async fn get_value(&self, path: &str) -> Result<serde_json::Value> {
        self.get(path).await
    }

    /// PUT a document; waits for the operation it starts unless `wait` is false.
    pub async fn put<B: Serialize>(&self, path: &str, body: &B, pre: Precondition, wait: bool) -> Result<Response> {
        let body = serde_json::to_value(body).map_err(|e| ClientError::Decode(e.to_string()))?;
        let resp = self.send(Method::PUT, path, Some(&body), pre).await?;
        self.finish(resp, wait).await
    }

    pub async fn patch(&self, path: &str, body: &serde_json::Value, wait: bool) -> Result<Response> {
        let resp = self.send(Method::PATCH, path, Some(body), Precondition::None).await?;
        self.finish(resp, wait).await
    }

    pub async fn post(&self, path: &str, body: Option<&serde_json::Value>, wait: bool) -> Result<Response> {
        let resp = self.send(Method::POST, path, body, Precondition::None).await?;
        self.finish(resp, wait).await
    }

    pub async fn delete(&self, path: &str, wait: bool) -> Result<Response> {
        let resp = self.send(Method::DELETE, path, None, Precondition::None).await?;
        self.finish(resp, wait).await
    }

    async fn finish(&self, resp: Response, wait: bool) -> Result<Response> {
        if wait && let Some(op) = &resp.async_operation {
            self.wait_operation(op, |_| {}).await?;
        }
        Ok(resp)
    }

    /// Polls an operation until it ends; `on_poll` sees every status (for progress). A failed or
    /// canceled operation is returned as `ClientError::Api` with its error.
    pub async fn wait_operation(
        &self,
        url: &str,
        mut on_poll: impl FnMut(&OperationStatus),
    ) -> Result<OperationStatus> {
        let path = url.find("/subscriptions/").map_or(url, |i| &url[i..]);
        let mut delay = Duration::from_millis(50);
        loop {
            let status: OperationStatus = self.get(path).await?;
            on_poll(&status);
            match status.status {
                OperationState::InProgress => {}
                OperationState::Succeeded => return Ok(status),
                OperationState::Failed | OperationState::Canceled => {
                    let error = status.error.clone().unwrap_or_else(|| {
                        ErrorDetail::new("OperationFailed", format!("the operation ended {:?}", status.status))
                    });
                    return Err(ClientError::Api { status: StatusCode::OK, error });
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }
}
