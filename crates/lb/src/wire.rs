//! The answers of the control API, shared by the server (`control.rs`) and `ControlClient`.
//!
//! Serde types only: no behaviour. Times are Unix milliseconds; `boot_id` changes each time a data plane
//! starts, so a reader can tell that sequence numbers and counters started over.

use std::net::{IpAddr, SocketAddr};

use galleon_core::health::HealthState;
use serde::{Deserialize, Serialize};

use crate::config::{Distribution, Protocol};

/// The answer to `PUT /config`: the config is live; each frontend says whether it listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    pub generation: u64,
    pub frontends: Vec<FrontendBind>,
    /// Set when the config is live but could not be saved for the next start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persist_error: Option<String>,
}

impl ApplyReport {
    /// The frontends whose listener could not be bound.
    pub fn bind_errors(&self) -> impl Iterator<Item = &FrontendBind> {
        self.frontends.iter().filter(|f| f.error.is_some())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontendBind {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    /// Where it listens (the real port when `port` was 0); none when the bind failed.
    #[serde(default)]
    pub local_addr: Option<SocketAddr>,
    #[serde(default)]
    pub error: Option<String>,
}

/// What a probe attempt saw (the wire form of `galleon_core::health::Outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeOutcome {
    Success,
    Failure,
    Silence,
}

/// `GET /health`: every check's state, and the sequence number of the last transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub boot_id: String,
    pub seq: u64,
    pub checks: Vec<CheckHealth>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckHealth {
    pub id: String,
    pub epoch: u64,
    pub state: HealthState,
    /// When the state last changed (or the tracker started).
    pub since: u64,
    #[serde(default)]
    pub last_outcome: Option<ProbeOutcome>,
    #[serde(default)]
    pub last_probe_at: Option<u64>,
    /// Why the last probe ended the way it did ("HTTP 500", "connection refused", …).
    #[serde(default)]
    pub last_detail: Option<String>,
}

/// One health transition of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthEvent {
    pub seq: u64,
    pub check: String,
    pub epoch: u64,
    pub from: HealthState,
    pub to: HealthState,
    pub at: u64,
}

/// `GET /events?after=SEQ&wait_ms=N`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsReport {
    pub boot_id: String,
    /// The last sequence number given out; pass it as `after` next time.
    pub seq: u64,
    /// Events after `after` were dropped from the bounded log: re-read `/health`.
    pub truncated: bool,
    pub events: Vec<HealthEvent>,
}

/// `POST /drain`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainRequest {
    pub keys: Vec<String>,
    /// Default: the longest `drain_timeout_secs` of the frontends that have one of the keys.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// What a drain saw: `drained` when nothing was left in flight to the keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainReport {
    pub drained: bool,
    pub waited_ms: u64,
    pub remaining: Vec<DrainRemaining>,
    /// Frontends on which a drained key is still in service (so it may still get new traffic).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub still_in_service: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainRemaining {
    pub key: String,
    pub frontend: String,
    pub in_flight: u64,
    pub open_connections: u64,
}

/// `GET /status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub boot_id: String,
    pub generation: u64,
    pub frontends: Vec<FrontendStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrontendStatus {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub distribution: Distribution,
    pub health_gated: bool,
    #[serde(default)]
    pub local_addr: Option<SocketAddr>,
    #[serde(default)]
    pub error: Option<String>,
    /// Requests answered 503 (Http) or connections closed (Tcp) because no backend was eligible.
    pub unavailable: u64,
    /// Http requests answered 502: every backend tried failed.
    pub failed: u64,
    pub backends: Vec<BackendStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub key: String,
    pub address: IpAddr,
    pub port: u16,
    pub in_service: bool,
    pub weight: u32,
    #[serde(default)]
    pub health_check: Option<String>,
    /// The state of its check; none when it has no check.
    #[serde(default)]
    pub health: Option<HealthState>,
    pub eligible: bool,
    /// Http: idle keep-alive connections pooled to this backend (none once it is out of service).
    #[serde(default)]
    pub pooled_idle: u64,
    pub metrics: MetricsSnapshot,
}

/// Counters of one (frontend, backend key). For Tcp, a "request" is a connection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Requests (Http) or connections (Tcp) sent to the backend, retried attempts included.
    pub requests: u64,
    /// Attempts that ended in a 5xx answer or a proxy failure (connect refused, reset, …).
    pub errors: u64,
    pub in_flight: u64,
    pub open_connections: u64,
    /// Bytes from clients to the backend, and back (Http: bodies only).
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub latency: LatencySnapshot,
}

/// A fixed-bucket histogram of Http request durations (first byte in to last byte out).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySnapshot {
    /// Upper bounds of the buckets, in milliseconds; a last bucket above them is implied.
    pub bounds_ms: Vec<f64>,
    /// Count per bucket (not cumulative), one more than `bounds_ms`.
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum_ms: f64,
}

impl LatencySnapshot {
    /// The upper bound (ms) of the bucket holding quantile `q` (0..=1); none without samples.
    pub fn quantile_upper_ms(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(self.bounds_ms.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }
}

/// The body of every error answer, in ARM's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    /// On 409 (stale generation): the generation the data plane serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_generation: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}
