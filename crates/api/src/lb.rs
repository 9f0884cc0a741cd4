//! Load balancers (`Microsoft.Network/loadBalancers`): frontends, backend pools, probes, load-balancing
//! rules and inbound NAT pools live inside the load balancer's one document, as in ARM (a PUT of the
//! whole document is how `az` edits them). Back-references and inbound NAT rules are computed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Child, ProvisioningState, Resource, SubResource};

pub type LoadBalancer = Resource<LoadBalancerProperties>;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerProperties {
    #[serde(default, rename = "frontendIPConfigurations")]
    pub frontend_ip_configurations: Vec<Child<FrontendIpProperties>>,
    #[serde(default)]
    pub backend_address_pools: Vec<Child<BackendPoolProperties>>,
    #[serde(default)]
    pub probes: Vec<Child<ProbeProperties>>,
    #[serde(default)]
    pub load_balancing_rules: Vec<Child<RuleProperties>>,
    #[serde(default)]
    pub inbound_nat_pools: Vec<Child<NatPoolProperties>>,
    /// One per instance of each NAT pool's scale sets (computed).
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub inbound_nat_rules: Vec<Child<NatRuleProperties>>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub provisioning_state: Option<ProvisioningState>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub resource_guid: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FrontendIpProperties {
    /// The frontend's loopback address, from the home's block (read-only: galleon assigns it).
    #[serde(default, rename = "privateIPAddress")]
    #[schemars(extend("readOnly" = true))]
    pub private_ip_address: Option<String>,
    #[serde(default, rename = "privateIPAllocationMethod")]
    pub private_ip_allocation_method: Option<String>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub load_balancing_rules: Option<Vec<SubResource>>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub inbound_nat_pools: Option<Vec<SubResource>>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub provisioning_state: Option<ProvisioningState>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendPoolProperties {
    /// The instances' IP configurations in the pool (computed).
    #[serde(default, rename = "backendIPConfigurations")]
    #[schemars(extend("readOnly" = true))]
    pub backend_ip_configurations: Option<Vec<SubResource>>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub load_balancing_rules: Option<Vec<SubResource>>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub provisioning_state: Option<ProvisioningState>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ProbeProtocol {
    #[default]
    Http,
    Tcp,
    Https,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeProperties {
    #[serde(default)]
    pub protocol: Option<ProbeProtocol>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub request_path: Option<String>,
    /// galleon accepts from 1 s (Azure: 5 s) so tests run fast.
    #[serde(default)]
    pub interval_in_seconds: Option<u32>,
    #[serde(default)]
    pub number_of_probes: Option<u32>,
    /// When set, the consecutive results that flip health (else `numberOfProbes`).
    #[serde(default)]
    pub probe_threshold: Option<u32>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub load_balancing_rules: Option<Vec<SubResource>>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub provisioning_state: Option<ProvisioningState>,
}

/// ARM has Tcp, Udp and All; `Http` is galleon's: L7 proxying, per-request metrics and traffic weights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RuleProtocol {
    #[default]
    Tcp,
    Http,
    Udp,
    All,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LoadDistribution {
    #[default]
    Default,
    #[serde(rename = "SourceIP")]
    SourceIp,
    #[serde(rename = "SourceIPProtocol")]
    SourceIpProtocol,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleProperties {
    #[serde(default, rename = "frontendIPConfiguration")]
    pub frontend_ip_configuration: Option<SubResource>,
    #[serde(default)]
    pub backend_address_pool: Option<SubResource>,
    #[serde(default)]
    pub probe: Option<SubResource>,
    #[serde(default)]
    pub protocol: Option<RuleProtocol>,
    #[serde(default)]
    pub frontend_port: Option<u16>,
    #[serde(default)]
    pub backend_port: Option<u16>,
    #[serde(default)]
    pub load_distribution: Option<LoadDistribution>,
    #[serde(default)]
    pub idle_timeout_in_minutes: Option<u32>,
    #[serde(default, rename = "enableFloatingIP")]
    pub enable_floating_ip: Option<bool>,
    #[serde(default)]
    pub enable_tcp_reset: Option<bool>,
    #[serde(default)]
    pub disable_outbound_snat: Option<bool>,
    /// galleon's: how long a leaving instance's requests and connections get to finish (default 30).
    #[serde(default)]
    pub drain_timeout_in_seconds: Option<u32>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub provisioning_state: Option<ProvisioningState>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NatPoolProperties {
    #[serde(default, rename = "frontendIPConfiguration")]
    pub frontend_ip_configuration: Option<SubResource>,
    #[serde(default)]
    pub protocol: Option<RuleProtocol>,
    #[serde(default)]
    pub frontend_port_range_start: Option<u16>,
    #[serde(default)]
    pub frontend_port_range_end: Option<u16>,
    #[serde(default)]
    pub backend_port: Option<u16>,
    #[serde(default)]
    pub idle_timeout_in_minutes: Option<u32>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub provisioning_state: Option<ProvisioningState>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NatRuleProperties {
    #[serde(default, rename = "frontendIPConfiguration")]
    pub frontend_ip_configuration: Option<SubResource>,
    #[serde(default)]
    pub protocol: Option<RuleProtocol>,
    #[serde(default)]
    pub frontend_port: Option<u16>,
    #[serde(default)]
    pub backend_port: Option<u16>,
    #[serde(default, rename = "backendIPConfiguration")]
    pub backend_ip_configuration: Option<SubResource>,
    #[serde(default)]
    pub provisioning_state: Option<ProvisioningState>,
}
