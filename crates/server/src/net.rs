//! The control plane's side of the network: which instances are in service, draining them, and the
//! health that gates them. The load balancer itself (listeners, probes, drains) is the data plane's.
//!
//! Without a load balancer or a health probe, an instance has nothing to drain and no health source:
//! draining returns at once and health is `Unknown`.

use std::time::Duration;

use galleon_core::health::HealthState;

use galleon_api::vmss::VirtualMachineScaleSet;
use galleon_core::ids::ResourceId;
use galleon_store::Kind;

use crate::App;
use crate::error::{ApiError, ApiResult};
use crate::fleet::ScaleSet;

/// Default health grace period of a (re)started instance (CONTRACT §5).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Net {}

impl Net {
    /// Pushes the desired data-plane configuration (which instances are in service, probes, rules).
    pub fn sync(&self, _app: &App) {}

    /// Waits until nothing is in flight to `backend` (it was taken out of service by `sync`).
    pub async fn drain(&self, _app: &App, _backend: &str) {}

    /// The health of an instance as its scale set's health source sees it; `None` without a source.
    pub fn health(&self, _app: &App, _set: &ScaleSet, _id: u32) -> Option<HealthState> {
        None
    }

    /// Waits until the instance's `boot` is judged Healthy or Unhealthy (at the latest when its grace
    /// period ends); `None` when the scale set has no health source.
    pub async fn wait_healthy(&self, _app: &App, _set: &ScaleSet, _id: u32, _boot: u64) -> Option<HealthState> {
        None
    }

    /// Takes an instance out of service and drains it before a shutdown stops it.
    pub async fn take_out_for_shutdown(&self, app: &App, set: &ScaleSet, id: u32) {
        self.drain(app, &set.backend_key(id)).await;
    }

    /// Ends the data plane (`galleon shutdown`).
    pub async fn stop_dataplane(&self, _app: &App) {}

    /// What the status shows of the data plane.
    pub fn status(&self, _app: &App) -> serde_json::Value {
        serde_json::json!({"running": false})
    }

    /// Whether the scale set has a health source (a probe or the Application Health extension).
    pub fn has_health_source(&self, _app: &App, _set: &ScaleSet) -> bool {
        false
    }

    /// The health grace period of the scale set's instances.
    pub fn grace(&self, _app: &App, _set: &ScaleSet) -> Duration {
        DEFAULT_GRACE
    }
}

/// The load-balancer pools a scale set's model puts its instances in: (backend pools, NAT pools).
pub fn memberships(doc: &VirtualMachineScaleSet) -> (Vec<String>, Vec<String>) {
    let mut backends = vec![];
    let mut nats = vec![];
    let nics = doc
        .properties
        .virtual_machine_profile
        .as_ref()
        .and_then(|p| p.network_profile.as_ref())
        .and_then(|n| n.network_interface_configurations.as_ref());
    for nic in nics.into_iter().flatten() {
        for ip in nic.properties.ip_configurations.iter().flatten() {
            backends.extend(ip.properties.load_balancer_backend_address_pools.iter().flatten().map(|s| s.id.clone()));
            nats.extend(ip.properties.load_balancer_inbound_nat_pools.iter().flatten().map(|s| s.id.clone()));
        }
    }
    (backends, nats)
}

/// Every pool a scale set names must exist in its load balancer.
pub fn validate_membership(app: &App, doc: &VirtualMachineScaleSet) -> ApiResult<()> {
    let (backends, nats) = memberships(doc);
    for (pool, kind) in
        backends.iter().map(|p| (p, "backendAddressPools")).chain(nats.iter().map(|p| (p, "inboundNatPools")))
    {
        let id = ResourceId::parse(pool).map_err(|e| ApiError::invalid(e.to_string()))?;
        let lb = id.parent().filter(|p| p.is("Microsoft.Network", &["loadBalancers"]));
        let Some(lb) = lb.filter(|_| id.types.last().is_some_and(|t| t.eq_ignore_ascii_case(kind))) else {
            return Err(ApiError::invalid(format!("'{pool}' is not a load balancer {kind} id.")));
        };
        let row = app.store.read(|tx| crate::resource::require(tx, &lb, Kind::LoadBalancer))?;
        let pools =
            row.doc.pointer(&format!("/properties/{kind}")).and_then(|p| p.as_array()).cloned().unwrap_or_default();
        if !pools
            .iter()
            .any(|p| p.get("name").and_then(|n| n.as_str()).is_some_and(|n| n.eq_ignore_ascii_case(id.name())))
        {
            return Err(ApiError::not_found(
                "ResourceNotFound",
                format!("The load balancer '{}' has no {kind} entry '{}'.", lb.name(), id.name()),
            ));
        }
    }
    Ok(())
}
