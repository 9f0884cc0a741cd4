//! Scale sets (`Microsoft.Compute/virtualMachineScaleSets`), their instances (`…/virtualMachines`),
//! instance views, extensions, and the bodies of instance actions.
//!
//! Secrets follow ARM: `protectedSettings` and `osProfile.customData` are accepted on PUT and never
//! returned; a PUT that leaves them out keeps what is stored (that is how `az vmss update` round-trips).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Child, ProvisioningState, SubResource};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineScaleSet {
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub id: Option<String>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    #[schemars(extend("readOnly" = true))]
    pub kind: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub sku: Option<Sku>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub etag: Option<String>,
    #[serde(default)]
    pub properties: ScaleSetProperties,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sku {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub capacity: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSetProperties {
    #[serde(default)]
    pub upgrade_policy: Option<UpgradePolicy>,
    #[serde(default)]
    pub automatic_repairs_policy: Option<AutomaticRepairsPolicy>,
    #[serde(default)]
    pub scale_in_policy: Option<ScaleInPolicy>,
    #[serde(default)]
    pub virtual_machine_profile: Option<VmProfile>,
    #[serde(default)]
    pub overprovision: Option<bool>,
    #[serde(default)]
    pub single_placement_group: Option<bool>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub provisioning_state: Option<ProvisioningState>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub unique_id: Option<String>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub time_created: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum UpgradeMode {
    Automatic,
    #[default]
    Manual,
    Rolling,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradePolicy {
    #[serde(default)]
    pub mode: Option<UpgradeMode>,
    #[serde(default)]
    pub rolling_upgrade_policy: Option<RollingUpgradePolicy>,
    #[serde(default, rename = "automaticOSUpgradePolicy")]
    pub automatic_os_upgrade_policy: Option<AutomaticOsUpgradePolicy>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpgradePolicy {
    #[serde(default)]
    pub max_batch_instance_percent: Option<u32>,
    #[serde(default)]
    pub max_unhealthy_instance_percent: Option<u32>,
    #[serde(default)]
    pub max_unhealthy_upgraded_instance_percent: Option<u32>,
    /// ISO 8601 duration, e.g. `PT0S`.
    #[serde(default)]
    pub pause_time_between_batches: Option<String>,
    #[serde(default)]
    pub enable_cross_zone_upgrade: Option<bool>,
    #[serde(default)]
    pub prioritize_unhealthy_instances: Option<bool>,
    #[serde(default)]
    pub rollback_failed_instances_on_policy_breach: Option<bool>,
    #[serde(default)]
    pub max_surge: Option<bool>,
    /// galleon's: how long a (re)started instance may take to become healthy (default `PT30S`).
    #[serde(default)]
    pub health_grace_period: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutomaticOsUpgradePolicy {
    #[serde(default, rename = "enableAutomaticOSUpgrade")]
    pub enable_automatic_os_upgrade: Option<bool>,
    #[serde(default)]
    pub disable_automatic_rollback: Option<bool>,
    #[serde(default)]
    pub use_rolling_upgrade_policy: Option<bool>,
    #[serde(default)]
    pub os_rolling_upgrade_deferral: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RepairAction {
    Replace,
    Restart,
    Reimage,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutomaticRepairsPolicy {
    #[serde(default)]
    pub enabled: Option<bool>,
    /// ISO 8601 duration; galleon accepts from `PT5S` (Azure: `PT10M`).
    #[serde(default)]
    pub grace_period: Option<String>,
    #[serde(default)]
    pub repair_action: Option<RepairAction>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ScaleInRule {
    Default,
    #[serde(rename = "OldestVM")]
    OldestVm,
    #[serde(rename = "NewestVM")]
    NewestVm,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleInPolicy {
    #[serde(default)]
    pub rules: Option<Vec<ScaleInRule>>,
    #[serde(default)]
    pub force_deletion: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmProfile {
    #[serde(default)]
    pub storage_profile: Option<StorageProfile>,
    #[serde(default)]
    pub os_profile: Option<OsProfile>,
    #[serde(default)]
    pub network_profile: Option<NetworkProfile>,
    #[serde(default)]
    pub extension_profile: Option<ExtensionProfile>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageProfile {
    #[serde(default)]
    pub image_reference: Option<ImageReference>,
    #[serde(default)]
    pub os_disk: Option<OsDisk>,
    #[serde(default)]
    pub data_disks: Option<Vec<DataDisk>>,
}

/// An image: a gallery definition (latest), a gallery version, or a managed image, by `id`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageReference {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub publisher: Option<String>,
    #[serde(default)]
    pub offer: Option<String>,
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    /// The version an instance actually runs (instances only).
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub exact_version: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OsDisk {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub create_option: Option<String>,
    #[serde(default)]
    pub caching: Option<String>,
    #[serde(default, rename = "diskSizeGB")]
    pub disk_size_gb: Option<u32>,
    #[serde(default)]
    pub os_type: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataDisk {
    pub lun: u32,
    #[serde(default, rename = "diskSizeGB")]
    pub disk_size_gb: Option<u32>,
    #[serde(default)]
    pub create_option: Option<String>,
    #[serde(default)]
    pub caching: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OsProfile {
    #[serde(default)]
    pub computer_name_prefix: Option<String>,
    #[serde(default)]
    pub admin_username: Option<String>,
    /// Base64, as ARM stores it; never returned.
    #[serde(default)]
    pub custom_data: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkProfile {
    /// The probe whose health gates upgrades and repairs (CONTRACT §5).
    #[serde(default)]
    pub health_probe: Option<SubResource>,
    #[serde(default)]
    pub network_interface_configurations: Option<Vec<Child<NicConfigProperties>>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NicConfigProperties {
    #[serde(default)]
    pub primary: Option<bool>,
    #[serde(default)]
    pub ip_configurations: Option<Vec<Child<IpConfigProperties>>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpConfigProperties {
    #[serde(default)]
    pub primary: Option<bool>,
    #[serde(default)]
    pub load_balancer_backend_address_pools: Option<Vec<SubResource>>,
    #[serde(default)]
    pub load_balancer_inbound_nat_pools: Option<Vec<SubResource>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionProfile {
    #[serde(default)]
    pub extensions: Option<Vec<Extension>>,
}

pub type Extension = Child<ExtensionProperties>;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionProperties {
    #[serde(default)]
    pub publisher: Option<String>,
    #[serde(default, rename = "type")]
    pub extension_type: Option<String>,
    #[serde(default)]
    pub type_handler_version: Option<String>,
    #[serde(default)]
    pub auto_upgrade_minor_version: Option<bool>,
    #[serde(default)]
    pub settings: Option<serde_json::Value>,
    /// Never returned; kept only in the home (mode 0600).
    #[serde(default)]
    pub protected_settings: Option<serde_json::Value>,
    #[serde(default)]
    pub force_update_tag: Option<String>,
    #[serde(default)]
    pub provision_after_extensions: Option<Vec<String>>,
    #[serde(default)]
    pub suppress_failures: Option<bool>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub provisioning_state: Option<ProvisioningState>,
}

// ---- instances ----

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineScaleSetVm {
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub id: Option<String>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    #[schemars(extend("readOnly" = true))]
    pub kind: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub sku: Option<Sku>,
    #[serde(default)]
    pub properties: VmProperties,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmProperties {
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub latest_model_applied: Option<bool>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub model_definition_applied: Option<String>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub vm_id: Option<String>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub provisioning_state: Option<ProvisioningState>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub time_created: Option<String>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub storage_profile: Option<StorageProfile>,
    #[serde(default)]
    pub protection_policy: Option<ProtectionPolicy>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub os_profile: Option<VmOsProfile>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub network_profile: Option<VmNetworkProfile>,
    /// galleon's conveniences (ARM has them only in the instance view).
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub private_ip_address: Option<String>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub power_state: Option<String>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub health_state: Option<String>,
    /// With `$expand=instanceView`.
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub instance_view: Option<VmInstanceView>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProtectionPolicy {
    #[serde(default)]
    pub protect_from_scale_in: bool,
    #[serde(default)]
    pub protect_from_scale_set_actions: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmOsProfile {
    #[serde(default)]
    pub computer_name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmNetworkProfile {
    #[serde(default)]
    pub network_interfaces: Vec<SubResource>,
}

/// `…/virtualMachines/{id}/instanceView`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmInstanceView {
    #[serde(default)]
    pub platform_update_domain: u32,
    #[serde(default)]
    pub platform_fault_domain: u32,
    #[serde(default)]
    pub computer_name: Option<String>,
    #[serde(default)]
    pub os_name: Option<String>,
    #[serde(default)]
    pub disks: Vec<DiskInstanceView>,
    #[serde(default)]
    pub extensions: Option<Vec<ExtensionInstanceView>>,
    #[serde(default)]
    pub vm_health: Option<VmHealth>,
    #[serde(default)]
    pub boot_diagnostics: Option<serde_json::Value>,
    #[serde(default)]
    pub statuses: Vec<InstanceViewStatus>,
    /// galleon's: what the instance did (exits of its entrypoint) and what was decided for it.
    #[serde(default)]
    pub galleon: Option<GalleonInstanceView>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceViewStatus {
    pub code: String,
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default)]
    pub display_status: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskInstanceView {
    pub name: String,
    #[serde(default)]
    pub statuses: Vec<InstanceViewStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionInstanceView {
    pub name: String,
    #[serde(default, rename = "type")]
    pub extension_type: Option<String>,
    #[serde(default)]
    pub type_handler_version: Option<String>,
    #[serde(default)]
    pub statuses: Vec<InstanceViewStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmHealth {
    pub status: InstanceViewStatus,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GalleonInstanceView {
    /// The entrypoint's recent exits (the agent restarts it with backoff).
    #[serde(default)]
    pub exits: Vec<InstanceExit>,
    /// How many times the entrypoint started since the instance was last (re)started by galleon.
    #[serde(default)]
    pub starts: u64,
    /// What galleon decided for this instance, newest last, with why.
    #[serde(default)]
    pub decisions: Vec<Decision>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceExit {
    pub time: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    pub uptime_seconds: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub time: String,
    pub action: String,
    pub reason: String,
    #[serde(default)]
    pub operation: Option<String>,
}

// ---- action bodies ----

/// `manualupgrade`, `reimage`, `restart`, `poweroff`, `start`, `deallocate`, `delete`: `{"instanceIds": [...]}`
/// (absent or empty = every instance, as ARM).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceIds {
    #[serde(default)]
    pub instance_ids: Option<Vec<String>>,
}

/// `…/virtualmachines/{id}/runCommand`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunCommandInput {
    pub command_id: String,
    #[serde(default)]
    pub script: Vec<String>,
    #[serde(default)]
    pub parameters: Vec<RunCommandParameter>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunCommandParameter {
    pub name: String,
    pub value: String,
}

/// `{"value": [{"code", "level", "displayStatus", "message"}]}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunCommandResult {
    pub value: Vec<InstanceViewStatus>,
}
