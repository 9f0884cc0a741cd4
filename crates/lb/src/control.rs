//! The control API: HTTP/1.1 with JSON over a Unix socket, a thin layer over `Dataplane`.
//!
//! Routes: `PUT /config`, `GET /config`, `GET /health`, `GET /events?after=SEQ&wait_ms=N`,
//! `POST /drain`, `GET /status`, `GET /metrics` (Prometheus text), `POST /shutdown`. Errors are ARM-style
//! `{"error": {"code", "message"}}`. Who may connect is the socket file's mode (0600, set by `run.rs`);
//! this module does no authentication and owns no state.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::UnixListener;
use tokio::sync::watch;

use crate::dataplane::{ApplyError, Dataplane};
use crate::wire::{DrainRequest, ErrorBody, ErrorDetail};

/// A config larger than this is refused (thousands of backends fit in far less).
const MAX_BODY: usize = 16 * 1024 * 1024;
/// The longest a long poll (`/events`) may wait.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Serve the control API on `listener` until `shutdown` turns true; `POST /shutdown` turns it true.
pub async fn serve_control(dp: Dataplane, listener: UnixListener, shutdown: watch::Sender<bool>) {
    let mut stop = shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let dp = dp.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let dp = dp.clone();
                let shutdown = shutdown.clone();
                async move { Ok::<_, Infallible>(route(&dp, &shutdown, req).await) }
            });
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(error = %e, "control connection ended");
            }
        });
    }
}

type Answer = Response<Full<Bytes>>;

async fn route(dp: &Dataplane, shutdown: &watch::Sender<bool>, req: Request<Incoming>) -> Answer {
    let path = req.uri().path().to_owned();
    let query = parse_query(req.uri().query());
    match (req.method().clone(), path.as_str()) {
        (Method::PUT, "/config") => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(a) => return *a,
            };
            let config = match serde_json::from_slice(&body) {
                Ok(c) => c,
                Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidConfig", &format!("config JSON: {e}"), None),
            };
            match dp.apply(config).await {
                Ok(report) => json(StatusCode::OK, &report),
                Err(e @ ApplyError::Invalid(_)) => {
                    error(StatusCode::BAD_REQUEST, "InvalidConfig", &e.to_string(), None)
                }
                Err(e @ ApplyError::StaleGeneration { current, .. }) => {
                    error(StatusCode::CONFLICT, "StaleGeneration", &e.to_string(), Some(current))
                }
                Err(e @ ApplyError::ShuttingDown) => {
                    error(StatusCode::SERVICE_UNAVAILABLE, "ShuttingDown", &e.to_string(), None)
                }
            }
        }
        (Method::GET, "/config") => json(StatusCode::OK, &*dp.config()),
        (Method::GET, "/health") => json(StatusCode::OK, &dp.health()),
        (Method::GET, "/events") => {
            let after = match number(&query, "after") {
                Ok(n) => n.unwrap_or(0),
                Err(a) => return *a,
            };
            let wait = match number(&query, "wait_ms") {
                Ok(n) => Duration::from_millis(n.unwrap_or(0)).min(MAX_WAIT),
                Err(a) => return *a,
            };
            json(StatusCode::OK, &dp.events(after, wait).await)
        }
        (Method::POST, "/drain") => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(a) => return *a,
            };
            let drain: DrainRequest = match serde_json::from_slice(&body) {
                Ok(d) => d,
                Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidRequest", &format!("drain JSON: {e}"), None),
            };
            let report = dp.drain(&drain.keys, drain.timeout_ms.map(Duration::from_millis)).await;
            json(StatusCode::OK, &report)
        }
        (Method::GET, "/status") => json(StatusCode::OK, &dp.status()),
        (Method::GET, "/metrics") => {
            let mut r = Response::new(Full::new(Bytes::from(dp.metrics_text())));
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            r
        }
        (Method::POST, "/shutdown") => {
            shutdown.send_replace(true);
            json(StatusCode::ACCEPTED, &serde_json::json!({"shutting_down": true}))
        }
        (_, "/config" | "/health" | "/events" | "/drain" | "/status" | "/metrics" | "/shutdown") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", &format!("{} {path}", req.method()), None)
        }
        _ => error(StatusCode::NOT_FOUND, "NotFound", &format!("no route {path}"), None),
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Box<Answer>> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(Box::new(error(StatusCode::BAD_REQUEST, "InvalidRequest", &format!("request body: {e}"), None))),
    }
}

fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn number(q: &HashMap<String, String>, name: &str) -> Result<Option<u64>, Box<Answer>> {
    match q.get(name) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            Box::new(error(StatusCode::BAD_REQUEST, "InvalidRequest", &format!("{name}={v:?} is not a number"), None))
        }),
    }
}

fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Answer {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = status;
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => {
            let mut r = Response::new(Full::new(Bytes::from(format!("serialising the answer: {e}"))));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
    }
}

fn error(status: StatusCode, code: &str, message: &str, current_generation: Option<u64>) -> Answer {
    let body =
        ErrorBody { error: ErrorDetail { code: code.to_owned(), message: message.to_owned() }, current_generation };
    json(status, &body)
}
