//! Per (frontend, backend key) counters, and the in-flight accounting that drains wait on.
//!
//! The hot path only touches relaxed atomics of one `BackendMetrics` (no lock, no allocation). The
//! registry that maps names to counters is locked only when a config is applied or a report is made.
//! Rendering to the status JSON and to Prometheus text lives here too; reading health does not.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::Notify;

use crate::wire::{LatencySnapshot, MetricsSnapshot};

/// Upper bounds of the latency buckets, in microseconds (a last, unbounded bucket follows).
pub const LATENCY_BOUNDS_US: [u64; 16] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000, 30_000_000,
];
const BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// The counters of one backend as one frontend sees it.
#[derive(Debug)]
pub(crate) struct BackendMetrics {
    pub(crate) frontend: String,
    pub(crate) key: String,
    requests: AtomicU64,
    errors: AtomicU64,
    /// Http requests in flight, and Tcp connections open: what a drain waits for.
    in_flight: AtomicU64,
    open_connections: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    latency: [AtomicU64; BUCKETS],
    latency_sum_us: AtomicU64,
    /// How many drains are waiting on this backend; only then does leaving wake anyone.
    draining: AtomicU32,
    drained: Arc<Notify>,
}

impl BackendMetrics {
    pub(crate) fn new(frontend: &str, key: &str, drained: Arc<Notify>) -> BackendMetrics {
        BackendMetrics {
            frontend: frontend.to_owned(),
            key: key.to_owned(),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            open_connections: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_sum_us: AtomicU64::new(0),
            draining: AtomicU32::new(0),
            drained: drained.clone(),
        }
    }

    /// A request starts: counted at once, in flight until the guard drops.
    pub(crate) fn start_request(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Relaxed);
        self.in_flight.fetch_add(1, Relaxed);
        InFlight { metrics: self.clone(), kind: Kind::Request }
    }

    /// A Tcp connection to this backend is being made: open until the guard drops.
    pub(crate) fn start_connection(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Relaxed);
        self.open_connections.fetch_add(1, Relaxed);
        InFlight { metrics: self.clone(), kind: Kind::Connection }
    }

    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Relaxed);
    }

    pub(crate) fn bytes(&self, to_backend: u64, to_client: u64) {
        if to_backend != 0 {
            self.bytes_in.fetch_add(to_backend, Relaxed);
        }
        if to_client != 0 {
            self.bytes_out.fetch_add(to_client, Relaxed);
        }
    }

    pub(crate) fn observe_latency(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_US.iter().position(|b| us <= *b).unwrap_or(BUCKETS - 1);
        self.latency[bucket].fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(us, Relaxed);
    }

    /// Requests in flight plus connections open.
    pub(crate) fn active(&self) -> u64 {
        self.in_flight.load(Relaxed) + self.open_connections.load(Relaxed)
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Relaxed)
    }

    pub(crate) fn open_connections(&self) -> u64 {
        self.open_connections.load(Relaxed)
    }

    pub(crate) fn begin_drain(&self) {
        self.draining.fetch_add(1, Relaxed);
    }

    pub(crate) fn end_drain(&self) {
        self.draining.fetch_sub(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let counts: Vec<u64> = self.latency.iter().map(|c| c.load(Relaxed)).collect();
        MetricsSnapshot {
            requests: self.requests.load(Relaxed),
            errors: self.errors.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            open_connections: self.open_connections.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            latency: LatencySnapshot {
                bounds_ms: LATENCY_BOUNDS_US.iter().map(|us| *us as f64 / 1000.0).collect(),
                count: counts.iter().sum(),
                counts,
                sum_ms: self.latency_sum_us.load(Relaxed) as f64 / 1000.0,
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Request,
    Connection,
}

/// Something in flight to a backend; dropping it is what lets a drain finish.
#[derive(Debug)]
pub(crate) struct InFlight {
    metrics: Arc<BackendMetrics>,
    kind: Kind,
}

impl InFlight {
    pub(crate) fn metrics(&self) -> &Arc<BackendMetrics> {
        &self.metrics
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let m = &self.metrics;
        let counter = match self.kind {
            Kind::Request => &m.in_flight,
            Kind::Connection => &m.open_connections,
        };
        counter.fetch_sub(1, Relaxed);
        // Only a drain cares when a count reaches zero; without one this stays a relaxed load.
        if m.draining.load(Relaxed) != 0 {
            m.drained.notify_waiters();
        }
    }
}

/// The counters of every (frontend name, backend key) in the current config, plus those of removed
/// backends that still have something in flight.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    by_name: HashMap<(String, String), Arc<BackendMetrics>>,
    /// Woken whenever a draining backend loses a request or connection.
    pub(crate) drained: Arc<Notify>,
}

impl Registry {
    pub(crate) fn get_or_create(&mut self, frontend: &str, key: &str) -> Arc<BackendMetrics> {
        if let Some(m) = self.by_name.get(&(frontend.to_owned(), key.to_owned())) {
            return m.clone();
        }
        let m = Arc::new(BackendMetrics::new(frontend, key, self.drained.clone()));
        self.by_name.insert((frontend.to_owned(), key.to_owned()), m.clone());
        m
    }

    /// Forget counters that the config no longer names and that have nothing in flight.
    pub(crate) fn retain(&mut self, keep: impl Fn(&str, &str) -> bool) {
        self.by_name.retain(|(f, k), m| keep(f, k) || m.active() > 0);
    }

    pub(crate) fn for_key<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Arc<BackendMetrics>> + 'a {
        self.by_name.values().filter(move |m| m.key == key)
    }

    pub(crate) fn get(&self, frontend: &str, key: &str) -> Option<&Arc<BackendMetrics>> {
        self.by_name.get(&(frontend.to_owned(), key.to_owned()))
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<BackendMetrics>> {
        self.by_name.values()
    }
}

/// Prometheus text exposition (version 0.0.4), built by hand: a handful of families, no registry crate.
#[derive(Default)]
pub(crate) struct PromText {
    out: String,
}

/// One metric family: name (without the `galleon_lb_` prefix), type, help, samples as (labels, value).
pub(crate) struct Family<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub help: &'a str,
}

impl PromText {
    pub(crate) fn family(&mut self, f: &Family<'_>) {
        let _ = writeln!(self.out, "# HELP galleon_lb_{} {}", f.name, f.help);
        let _ = writeln!(self.out, "# TYPE galleon_lb_{} {}", f.name, f.kind);
    }

    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.out, "galleon_lb_{name}");
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"");
                escape_label(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        if value.is_infinite() {
            let _ = writeln!(self.out, " {}", if value > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = writeln!(self.out, " {value}");
        }
    }

    /// Every counter of every backend, one family at a time as the format wants.
    pub(crate) fn backends(&mut self, metrics: &[(Arc<BackendMetrics>, MetricsSnapshot)]) {
        type Get = fn(&MetricsSnapshot) -> u64;
        let simple: [(&str, &str, &str, Get); 6] = [
            ("requests_total", "counter", "Requests (Http) or connections (Tcp) sent to a backend.", |s| s.requests),
            ("errors_total", "counter", "Attempts that ended in a 5xx answer or a proxy failure.", |s| s.errors),
            ("in_flight", "gauge", "Http requests in flight to a backend.", |s| s.in_flight),
            ("open_connections", "gauge", "Tcp connections open to a backend.", |s| s.open_connections),
            ("bytes_received_total", "counter", "Bytes from clients forwarded to a backend.", |s| s.bytes_in),
            ("bytes_sent_total", "counter", "Bytes from a backend forwarded to clients.", |s| s.bytes_out),
        ];
        for (name, kind, help, get) in simple {
            self.family(&Family { name, kind, help });
            for (m, s) in metrics {
                self.sample(name, &[("frontend", &m.frontend), ("backend", &m.key)], get(s) as f64);
            }
        }
        let name = "request_duration_seconds";
        self.family(&Family { name, kind: "histogram", help: "Http request duration through the load balancer." });
        for (m, s) in metrics {
            let labels = [("frontend", m.frontend.as_str()), ("backend", m.key.as_str())];
            let mut cumulative = 0;
            for (i, count) in s.latency.counts.iter().enumerate() {
                cumulative += count;
                let le = match LATENCY_BOUNDS_US.get(i) {
                    Some(us) => format!("{}", *us as f64 / 1e6),
                    None => "+Inf".to_owned(),
                };
                self.sample(&format!("{name}_bucket"), &[labels[0], labels[1], ("le", &le)], cumulative as f64);
            }
            self.sample(&format!("{name}_sum"), &labels, s.latency.sum_ms / 1000.0);
            self.sample(&format!("{name}_count"), &labels, s.latency.count as f64);
        }
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_its_bucket_and_guards_count_down() {
        let m = Arc::new(BackendMetrics::new("f", "k", Arc::new(Notify::new())));
        m.observe_latency(Duration::from_micros(300));
        m.observe_latency(Duration::from_secs(100));
        let g = m.start_request();
        let c = m.start_connection();
        assert_eq!(m.active(), 2);
        drop((g, c));
        let s = m.snapshot();
        assert_eq!((s.requests, s.in_flight, s.open_connections), (2, 0, 0));
        assert_eq!(s.latency.counts[1], 1);
        assert_eq!(s.latency.counts[BUCKETS - 1], 1);
        assert_eq!(s.latency.quantile_upper_ms(0.5), Some(0.5));
        assert_eq!(s.latency.quantile_upper_ms(1.0), Some(f64::INFINITY));
    }

    #[test]
    fn labels_are_escaped() {
        let mut p = PromText::default();
        p.sample("x", &[("frontend", "a\"b\\c\nd")], 1.0);
        assert_eq!(p.finish(), "galleon_lb_x{frontend=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
