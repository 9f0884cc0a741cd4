//! The data plane's desired state: frontends, their backends and the health checks that gate them.
//!
//! Owns the wire shape the control plane pushes (`PUT /config`) and the rules a config must obey before
//! it is applied (`Config::validate`). It knows backends, not scale sets: a backend is an address and a
//! stable key; which instance it is, and why it is in or out of service, is the control plane's business.
//! It does not apply anything (see `dataplane.rs`).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// The whole desired configuration of one data plane, versioned by the control plane.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Grows with every change the control plane makes; an older one is refused (409).
    pub generation: u64,
    #[serde(default)]
    pub frontends: Vec<Frontend>,
    #[serde(default)]
    pub health_checks: Vec<HealthCheck>,
}

/// One listener and the pool of backends it spreads traffic over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frontend {
    /// A label for status and metrics, e.g. `rg/webLB/http`; unique in a config.
    pub name: String,
    pub address: IpAddr,
    /// 0 binds an ephemeral port (tests, benchmarks); status and the apply answer tell which.
    pub port: u16,
    pub protocol: Protocol,
    #[serde(default)]
    pub distribution: Distribution,
    /// Tcp: a connection with no byte either way for this long is closed. Http: a client keep-alive
    /// connection idle this long is closed. 0 disables it.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// How long `drain` waits by default for the requests and connections of a leaving backend.
    #[serde(default = "default_drain_timeout_secs")]
    pub drain_timeout_secs: u64,
    /// false for inbound NAT rules: their backend gets traffic whatever its health.
    #[serde(default = "default_true")]
    pub health_gated: bool,
    #[serde(default)]
    pub backends: Vec<Backend>,
}

/// Where a frontend sends traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// A stable id (e.g. an instance's ARM id): metrics, drain and status are keyed by it.
    pub key: String,
    pub address: IpAddr,
    pub port: u16,
    /// The `HealthCheck::id` gating this backend; none means "always healthy".
    #[serde(default)]
    pub health_check: Option<String>,
    /// false: no new connections or requests (the first step of a drain).
    #[serde(default = "default_true")]
    pub in_service: bool,
    /// Relative share of new traffic; 0 means none (in service, but not picked).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

/// A probe, and the tracker its outcomes feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub id: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: ProbeProtocol,
    /// Http and AppHealthHttp: the request path, default `/`.
    #[serde(default)]
    pub path: Option<String>,
    /// Http and AppHealthHttp over TLS (Azure's `Https`). The certificate is not verified: the probe asks
    /// whether the app answers, not who it is (apps behind a probe commonly serve self-signed ones).
    #[serde(default)]
    pub tls: bool,
    pub interval_ms: u64,
    /// Consecutive results of the other kind that flip the state (CONTRACT §5).
    pub threshold: u32,
    /// Silence (refused, timeout) counts only after this long since the backend started.
    #[serde(default)]
    pub grace_ms: u64,
    /// Bumped by the control plane when the backend (re)starts: the tracker starts over (Initializing).
    #[serde(default)]
    pub epoch: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// L4: connections are forwarded byte for byte.
    Tcp,
    /// L7: HTTP/1.1 requests are proxied one by one over pooled keep-alive backend connections.
    Http,
}

/// Azure's `loadDistribution`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Distribution {
    /// Round robin over eligible backends (new connections for Tcp, requests for Http).
    #[default]
    Default,
    /// The same client address goes to the same backend while the eligible set does not change.
    SourceIp,
    /// As `SourceIp`, hashed with the protocol too.
    SourceIpProtocol,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProbeProtocol {
    /// Connect succeeds: healthy.
    Tcp,
    /// GET `path`: 2xx healthy, any other status unhealthy.
    Http,
    /// Azure's Application Health extension v2: as Http, but a JSON body
    /// `{"ApplicationHealthState": "Healthy"|"Unhealthy"}` decides over the status code.
    AppHealthHttp,
}

fn default_true() -> bool {
    true
}
fn default_weight() -> u32 {
    1
}
fn default_idle_timeout_secs() -> u64 {
    240
}
fn default_drain_timeout_secs() -> u64 {
    30
}

/// Probes faster than this would only load the backends; tests use 20–50 ms.
pub const MIN_INTERVAL_MS: u64 = 10;

/// Why a config was refused; nothing of it was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("frontend #{index} has an empty name")]
    EmptyFrontendName { index: usize },
    #[error("frontend name {0:?} is used twice")]
    DuplicateFrontendName(String),
    #[error("frontends {first:?} and {second:?} both listen on {address}")]
    DuplicateListener { first: String, second: String, address: SocketAddr },
    #[error("frontend {frontend:?}: backend #{index} has an empty key")]
    EmptyBackendKey { frontend: String, index: usize },
    #[error("frontend {frontend:?}: backend key {key:?} is used twice")]
    DuplicateBackendKey { frontend: String, key: String },
    #[error("frontend {frontend:?}: backend {key:?} has port 0")]
    BackendPortZero { frontend: String, key: String },
    #[error("frontend {frontend:?}: backend {key:?} names health check {check:?}, which the config does not have")]
    UnknownHealthCheck { frontend: String, key: String, check: String },
    #[error("health check #{index} has an empty id")]
    EmptyCheckId { index: usize },
    #[error("health check id {0:?} is used twice")]
    DuplicateCheckId(String),
    #[error("health check {id:?}: {problem}")]
    BadCheck { id: String, problem: String },
}

impl Config {
    /// Every problem that would make this config unsafe or ambiguous to apply; the first one found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut checks = HashSet::new();
        for (index, c) in self.health_checks.iter().enumerate() {
            if c.id.is_empty() {
                return Err(ConfigError::EmptyCheckId { index });
            }
            if !checks.insert(c.id.as_str()) {
                return Err(ConfigError::DuplicateCheckId(c.id.clone()));
            }
            let bad = |problem: &str| Err(ConfigError::BadCheck { id: c.id.clone(), problem: problem.to_owned() });
            if c.port == 0 {
                return bad("port 0");
            }
            if c.interval_ms < MIN_INTERVAL_MS {
                return bad(&format!("interval_ms {} is below {MIN_INTERVAL_MS}", c.interval_ms));
            }
            if c.threshold == 0 {
                return bad("threshold must be at least 1");
            }
            if c.tls && c.protocol == ProbeProtocol::Tcp {
                return bad("tls is for Http probes; a Tcp probe only connects");
            }
            if let Some(path) = &c.path
                && (!path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err())
            {
                return bad(&format!("path {path:?} is not an absolute request path"));
            }
        }
        let mut names = HashSet::new();
        let mut listeners: Vec<(SocketAddr, Protocol, &str)> = Vec::new();
        for (index, f) in self.frontends.iter().enumerate() {
            if f.name.is_empty() {
                return Err(ConfigError::EmptyFrontendName { index });
            }
            if !names.insert(f.name.as_str()) {
                return Err(ConfigError::DuplicateFrontendName(f.name.clone()));
            }
            let address = SocketAddr::new(f.address, f.port);
            // Port 0 asks for an ephemeral port, so two of them never collide.
            if f.port != 0
                && let Some((_, _, first)) = listeners.iter().find(|(a, _, _)| *a == address)
            {
                return Err(ConfigError::DuplicateListener {
                    first: (*first).to_owned(),
                    second: f.name.clone(),
                    address,
                });
            }
            listeners.push((address, f.protocol, &f.name));
            let mut keys = HashSet::new();
            for (index, b) in f.backends.iter().enumerate() {
                if b.key.is_empty() {
                    return Err(ConfigError::EmptyBackendKey { frontend: f.name.clone(), index });
                }
                if !keys.insert(b.key.as_str()) {
                    return Err(ConfigError::DuplicateBackendKey { frontend: f.name.clone(), key: b.key.clone() });
                }
                if b.port == 0 {
                    return Err(ConfigError::BackendPortZero { frontend: f.name.clone(), key: b.key.clone() });
                }
                if let Some(check) = &b.health_check
                    && !checks.contains(check.as_str())
                {
                    return Err(ConfigError::UnknownHealthCheck {
                        frontend: f.name.clone(),
                        key: b.key.clone(),
                        check: check.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Config {
        serde_json::from_str(
            r#"{"generation": 3,
                "frontends": [{"name": "rg/webLB/http", "address": "127.0.0.1", "port": 18081, "protocol": "Http",
                               "backends": [{"key": "i0", "address": "127.0.0.2", "port": 8080, "health_check": "h0"}]}],
                "health_checks": [{"id": "h0", "address": "127.0.0.2", "port": 8080, "protocol": "Http",
                                   "path": "/health", "interval_ms": 1000, "threshold": 2}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn defaults_fill_in() {
        let c = sample();
        let f = &c.frontends[0];
        assert_eq!(
            (f.distribution, f.idle_timeout_secs, f.drain_timeout_secs, f.health_gated),
            (Distribution::Default, 240, 30, true)
        );
        let b = &f.backends[0];
        assert_eq!((b.in_service, b.weight), (true, 1));
        assert_eq!((c.health_checks[0].grace_ms, c.health_checks[0].epoch), (0, 0));
        c.validate().unwrap();
    }

    #[test]
    fn refuses_dangling_and_duplicate_names() {
        let mut c = sample();
        c.frontends[0].backends[0].health_check = Some("nope".into());
        assert!(matches!(c.validate(), Err(ConfigError::UnknownHealthCheck { .. })));
        let mut c = sample();
        let mut twin = c.frontends[0].clone();
        twin.name = "other".into();
        c.frontends.push(twin);
        assert!(matches!(c.validate(), Err(ConfigError::DuplicateListener { .. })));
        let mut c = sample();
        c.health_checks[0].interval_ms = 1;
        assert!(matches!(c.validate(), Err(ConfigError::BadCheck { .. })));
        let mut c = sample();
        c.health_checks[0].path = Some("health".into());
        assert!(matches!(c.validate(), Err(ConfigError::BadCheck { .. })));
        let mut c = sample();
        c.health_checks[0].tls = true;
        assert_eq!(c.validate(), Ok(()), "Https");
        c.health_checks[0].protocol = ProbeProtocol::Tcp;
        assert!(matches!(c.validate(), Err(ConfigError::BadCheck { .. })), "tls on a Tcp probe");
    }

    #[test]
    fn ephemeral_ports_never_collide() {
        let mut c = sample();
        c.frontends[0].port = 0;
        let mut twin = c.frontends[0].clone();
        twin.name = "other".into();
        c.frontends.push(twin);
        c.validate().unwrap();
    }
}
