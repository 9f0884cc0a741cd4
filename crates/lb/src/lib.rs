//! galleon's data plane: listeners, L4 and L7 proxying, probing and health, draining, per-backend
//! metrics, and the control API through which the control plane configures it.
//!
//! It knows backends, not scale sets: frontends, backends (an address and a stable key), health checks
//! and their epochs. Which instance a backend is, and when it should leave service, is decided by the
//! control plane; health is judged by `galleon_core::health::Tracker`, the one hysteresis every
//! consumer shares.
//!
//! Entry points: `run` (the `galleon dataplane` process), `Dataplane` (in-process, for tests and
//! benchmarks), `ControlClient` (the control plane's side of the socket).
//!
//! Codemap: `config` (desired state and its validation) → `dataplane` (applies it) → `listener`
//! (sockets, route swaps) → `tcp` / `http` (proxying; `h1` parses and rewrites HTTP/1.1 heads and
//! frames bodies, `pool` keeps backend connections, `pick` chooses backends, `idle` closes idle
//! connections) · `workers` (the per-core threads that serve connections) · `health` + `probe`
//! (trackers and probers) · `metrics` (counters, drains' in-flight accounting, Prometheus text) ·
//! `control` / `client` (the API) · `run` (lock, persistence, signals) · `wire` (the API's answers).

mod client;
mod config;
mod control;
mod dataplane;
mod h1;
mod health;
mod http;
mod idle;
mod listener;
mod metrics;
mod pick;
mod pool;
mod probe;
mod run;
mod tcp;
mod wire;
mod workers;

pub use client::{ClientError, ControlClient};
pub use config::{Backend, Config, ConfigError, Distribution, Frontend, HealthCheck, ProbeProtocol, Protocol};
pub use control::serve_control;
pub use dataplane::{ApplyError, Dataplane, DataplaneOptions, PersistError, load_persisted};
pub use galleon_core::health::HealthState;
pub use metrics::LATENCY_BOUNDS_US;
pub use run::{CONFIG_FILE, LOCK_FILE, RunError, RunOptions, run};
pub use wire::{
    ApplyReport, BackendStatus, CheckHealth, DrainRemaining, DrainReport, DrainRequest, ErrorBody, ErrorDetail,
    EventsReport, FrontendBind, FrontendStatus, HealthEvent, HealthReport, LatencySnapshot, MetricsSnapshot,
    ProbeOutcome, StatusReport,
};
