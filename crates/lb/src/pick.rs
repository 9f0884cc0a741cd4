//! Backend selection: which backend gets the next connection or request of a frontend.
//!
//! A `Route` is an immutable snapshot of one frontend: its backends (`Slot`s) and, precomputed, the
//! eligible ones. It is rebuilt off the hot path whenever the config or a health state changes and
//! swapped in atomically (`listener.rs`), so a pick is one atomic increment and an index: no lock, no
//! allocation, no health lookup. Eligibility rules live here; health itself does not (`health.rs`).

use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use galleon_core::health::HealthState;

use crate::config::{Backend, Distribution, Frontend, Protocol};
use crate::health::HealthCell;
use crate::metrics::BackendMetrics;
use crate::pool::Pool;

/// One backend of one frontend, as long as a config names it. Requests and connections in flight hold
/// their `Arc<Slot>`, so a config swap never changes the backend they picked.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) backend: Backend,
    pub(crate) addr: SocketAddr,
    /// The state of its health check, updated by the prober; none when it has no check.
    pub(crate) health: Option<Arc<HealthCell>>,
    pub(crate) metrics: Arc<BackendMetrics>,
    /// Http frontends: the keep-alive connections to this backend (shared by frontends).
    pub(crate) pool: Option<Arc<Pool>>,
    /// For sticky distributions: a hash of the key, so a client maps to the same backend.
    key_hash: u64,
}

impl Slot {
    pub(crate) fn new(
        backend: Backend,
        health: Option<Arc<HealthCell>>,
        metrics: Arc<BackendMetrics>,
        pool: Option<Arc<Pool>>,
    ) -> Slot {
        let addr = SocketAddr::new(backend.address, backend.port);
        let key_hash = hash_bytes(backend.key.as_bytes(), 0);
        Slot { backend, addr, health, metrics, pool, key_hash }
    }

    pub(crate) fn health(&self) -> Option<HealthState> {
        self.health.as_ref().map(|h| h.get())
    }

    /// In service, weighted, and (when the frontend is health gated) Healthy or unchecked.
    pub(crate) fn eligible(&self, health_gated: bool) -> bool {
        self.backend.in_service
            && self.backend.weight > 0
            && (!health_gated || self.health().is_none_or(|h| h == HealthState::Healthy))
    }
}

/// The most entries a weighted wheel gets; weights are scaled down to fit.
const MAX_WHEEL: u64 = 512;
/// How many backends a single connection or request tries at most.
pub(crate) const MAX_ATTEMPTS: usize = 3;

/// One frontend as the hot path sees it, rebuilt and swapped whole.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) frontend: Arc<Frontend>,
    pub(crate) slots: Arc<[Arc<Slot>]>,
    /// Indexes of eligible slots, each repeated by weight and interleaved (smooth weighted round robin).
    wheel: Box<[u32]>,
    /// Indexes of eligible slots, once each.
    eligible: Box<[u32]>,
}

/// Who is asking: the client's address drives sticky distributions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client {
    pub(crate) ip: IpAddr,
}

impl Route {
    /// Precompute eligibility from the slots and the health states as they are now.
    pub(crate) fn build(frontend: Arc<Frontend>, slots: Arc<[Arc<Slot>]>) -> Route {
        let eligible: Vec<u32> =
            (0..slots.len()).filter(|i| slots[*i].eligible(frontend.health_gated)).map(|i| i as u32).collect();
        let weights: Vec<u64> = eligible.iter().map(|i| u64::from(slots[*i as usize].backend.weight)).collect();
        let wheel = smooth_wheel(&eligible, &weights);
        Route { frontend, slots, wheel: wheel.into(), eligible: eligible.into() }
    }

    pub(crate) fn is_eligible(&self, slot: usize) -> bool {
        self.eligible.contains(&(slot as u32))
    }

    /// The backend for a new connection or request; none when no backend is eligible.
    ///
    /// The wheel was computed when the route was built; a health state may have moved since (the route
    /// is rebuilt right after, off the hot path), so the pick is checked against the live state: a
    /// backend is never picked once its tracker has left Healthy.
    pub(crate) fn pick(&self, rr: &AtomicUsize, client: Client) -> Option<&Arc<Slot>> {
        let gated = self.frontend.health_gated;
        match self.frontend.distribution {
            Distribution::Default => {
                if self.wheel.is_empty() {
                    return None;
                }
                let i = rr.fetch_add(1, Relaxed);
                let slot = &self.slots[self.wheel[i % self.wheel.len()] as usize];
                if slot.eligible(gated) {
                    return Some(slot);
                }
                let n = self.eligible.len();
                (0..n).map(|k| &self.slots[self.eligible[(i + k) % n] as usize]).find(|s| s.eligible(gated))
            }
            Distribution::SourceIp => self.sticky(client.ip, 0),
            Distribution::SourceIpProtocol => {
                let proto = match self.frontend.protocol {
                    Protocol::Tcp => 6,
                    Protocol::Http => 6 << 8,
                };
                self.sticky(client.ip, proto)
            }
        }
    }

    /// A retry: the next eligible backend not yet tried (none when all were).
    pub(crate) fn pick_untried(&self, rr: &AtomicUsize, tried: &[Arc<Slot>]) -> Option<&Arc<Slot>> {
        let n = self.eligible.len();
        if n == 0 {
            return None;
        }
        let start = rr.fetch_add(1, Relaxed);
        (0..n)
            .map(|i| &self.slots[self.eligible[(start + i) % n] as usize])
            .find(|s| s.eligible(self.frontend.health_gated) && !tried.iter().any(|t| t.backend.key == s.backend.key))
    }

    /// Weighted rendezvous hashing: a client keeps its backend, and when one leaves only its clients move.
    fn sticky(&self, ip: IpAddr, salt: u64) -> Option<&Arc<Slot>> {
        let client = match ip {
            IpAddr::V4(v4) => hash_bytes(&v4.octets(), salt),
            IpAddr::V6(v6) => hash_bytes(&v6.octets(), salt),
        };
        let mut best: Option<(f64, &Arc<Slot>)> = None;
        for i in self.eligible.iter() {
            let slot = &self.slots[*i as usize];
            if !slot.eligible(self.frontend.health_gated) {
                continue;
            }
            let h = mix(client ^ slot.key_hash);
            // u in (0, 1]; score = w / -ln(u) is the weighted form of "highest hash wins".
            let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            let score = f64::from(slot.backend.weight) / -u.ln().min(-f64::MIN_POSITIVE);
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, slot));
            }
        }
        best.map(|(_, s)| s)
    }
}

/// nginx's smooth weighted round robin, unrolled once into a fixed sequence.
fn smooth_wheel(ids: &[u32], weights: &[u64]) -> Vec<u32> {
    if ids.is_empty() {
        return Vec::new();
    }
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut w: Vec<u64> = weights.iter().map(|w| w / g).collect();
    let total: u64 = w.iter().sum();
    if total > MAX_WHEEL {
        for x in w.iter_mut() {
            *x = (*x * MAX_WHEEL / total).max(1);
        }
    }
    let total: u64 = w.iter().sum();
    let mut current = vec![0i64; ids.len()];
    let mut wheel = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&w) {
            *c += *w as i64;
        }
        let (best, _) = current.iter().enumerate().max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i))).unwrap_or((0, &0));
        current[best] -= total as i64;
        wheel.push(ids[best]);
    }
    wheel
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn hash_bytes(bytes: &[u8], salt: u64) -> u64 {
    // A fixed hasher (not RandomState): stickiness should survive a data plane restart.
    let mut h = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().build_hasher();
    h.write_u64(salt);
    h.write(bytes);
    h.finish()
}

/// splitmix64's finaliser: spreads the bits of a combined hash.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::BackendMetrics;
    use std::collections::HashMap;
    use tokio::sync::Notify;

    fn frontend(distribution: Distribution) -> Arc<Frontend> {
        Arc::new(Frontend {
            name: "f".into(),
            address: "127.0.0.1".parse().unwrap(),
            port: 0,
            protocol: Protocol::Tcp,
            distribution,
            idle_timeout_secs: 0,
            drain_timeout_secs: 30,
            health_gated: true,
            backends: vec![],
        })
    }

    fn slot(key: &str, weight: u32, in_service: bool) -> Arc<Slot> {
        let b = Backend {
            key: key.into(),
            address: "127.0.0.1".parse().unwrap(),
            port: 1,
            health_check: None,
            in_service,
            weight,
        };
        Arc::new(Slot::new(b, None, Arc::new(BackendMetrics::new("f", key, Arc::new(Notify::new()))), None))
    }

    fn counts(route: &Route, n: usize) -> HashMap<String, usize> {
        let rr = AtomicUsize::new(0);
        let client = Client { ip: "10.0.0.1".parse().unwrap() };
        let mut out = HashMap::new();
        for _ in 0..n {
            *out.entry(route.pick(&rr, client).unwrap().backend.key.clone()).or_default() += 1;
        }
        out
    }

    #[test]
    fn round_robin_is_even_and_skips_ineligible() {
        let slots: Arc<[Arc<Slot>]> =
            vec![slot("a", 1, true), slot("b", 1, false), slot("c", 1, true), slot("d", 0, true)].into();
        let route = Route::build(frontend(Distribution::Default), slots);
        let c = counts(&route, 100);
        assert_eq!((c.get("a"), c.get("c"), c.len()), (Some(&50), Some(&50), 2));
    }

    #[test]
    fn weights_share_traffic_and_interleave() {
        let slots: Arc<[Arc<Slot>]> = vec![slot("a", 1, true), slot("b", 3, true)].into();
        let route = Route::build(frontend(Distribution::Default), slots);
        assert_eq!(&*route.wheel, &[1, 0, 1, 1]);
        let c = counts(&route, 400);
        assert_eq!((c["a"], c["b"]), (100, 300));
    }

    #[test]
    fn sticky_keeps_clients_and_moves_only_the_leavers() {
        let all: Vec<Arc<Slot>> = (0..4).map(|i| slot(&format!("k{i}"), 1, true)).collect();
        let route = Route::build(frontend(Distribution::SourceIp), all.clone().into());
        let rr = AtomicUsize::new(0);
        let ips: Vec<IpAddr> =
            (0..200u32).map(|i| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000u32 + i))).collect();
        let before: Vec<String> =
            ips.iter().map(|ip| route.pick(&rr, Client { ip: *ip }).unwrap().backend.key.clone()).collect();
        let spread: std::collections::HashSet<_> = before.iter().collect();
        assert_eq!(spread.len(), 4, "every backend gets some clients");
        let mut fewer = all.clone();
        fewer[2] = slot("k2", 1, false);
        let route2 = Route::build(frontend(Distribution::SourceIp), fewer.into());
        for (ip, b) in ips.iter().zip(&before) {
            let now = &route2.pick(&rr, Client { ip: *ip }).unwrap().backend.key;
            if b != "k2" {
                assert_eq!(now, b, "a client of a staying backend keeps it");
            } else {
                assert_ne!(now, "k2");
            }
        }
    }

    #[test]
    fn retries_go_to_untried_backends() {
        let slots: Vec<Arc<Slot>> = vec![slot("a", 1, true), slot("b", 1, true)];
        let route = Route::build(frontend(Distribution::Default), slots.clone().into());
        let rr = AtomicUsize::new(0);
        let first = route.pick(&rr, Client { ip: "10.0.0.1".parse().unwrap() }).unwrap().clone();
        let second = route.pick_untried(&rr, std::slice::from_ref(&first)).unwrap().clone();
        assert_ne!(first.backend.key, second.backend.key);
        assert!(route.pick_untried(&rr, &[first, second]).is_none());
    }
}
