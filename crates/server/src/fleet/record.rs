//! An instance as the control plane records it: what it runs, what it should be doing, and the action
//! in flight. The record is written before each step of an action (write-ahead), so a control plane
//! restarted after `kill -9` resumes the step it was in and never redoes a finished one.

use galleon_api::ProvisioningState;
use galleon_api::vmss::ProtectionPolicy;
use serde::{Deserialize, Serialize};

/// The content an instance's OS disk was made from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRef {
    /// The model's reference when the disk was made: a definition (latest), a version, a managed image.
    pub reference: String,
    /// What it resolved to: a version id or a managed image id.
    pub id: String,
    /// The gallery version (`1.1.0`), or `None` for a managed image.
    pub exact_version: Option<String>,
    pub digest: String,
    pub entrypoint: String,
}

impl ImageRef {
    /// What `GALLEON_IMAGE_VERSION` says: the exact version, or the managed image's name.
    pub fn version_label(&self) -> String {
        self.exact_version.clone().unwrap_or_else(|| self.id.rsplit('/').next().unwrap_or_default().to_string())
    }
}

/// What the instance should be doing when no action is in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Power {
    Running,
    Stopped,
    Deallocated,
}

/// The instance actions, as ARM names them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Action {
    /// A new instance: disks, address, first boot.
    Create,
    /// `manualupgrade`: the scale set's current model, on a fresh OS disk.
    Upgrade,
    /// `reimage`: a fresh OS disk of the instance's own model.
    Reimage,
    /// An OS image upgrade: a fresh OS disk of this image, the instance's own model kept.
    OsUpgrade {
        to: ImageRef,
    },
    /// Back to the image it ran before (rollback), on a fresh OS disk.
    Rollback {
        to: ImageRef,
    },
    Restart,
    /// `poweroff`: stopped, disks and address kept.
    Stop,
    /// Stopped and its address released.
    Deallocate,
    Start,
    Delete,
}

impl Action {
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Upgrade => "upgrade",
            Action::OsUpgrade { .. } => "os-upgrade",
            Action::Reimage => "reimage",
            Action::Rollback { .. } => "rollback",
            Action::Restart => "restart",
            Action::Stop => "stop",
            Action::Deallocate => "deallocate",
            Action::Start => "start",
            Action::Delete => "delete",
        }
    }

    /// Whether the action makes a fresh OS disk.
    pub fn remakes_os_disk(&self) -> bool {
        matches!(
            self,
            Action::Create | Action::Upgrade | Action::OsUpgrade { .. } | Action::Reimage | Action::Rollback { .. }
        )
    }

    /// Whether the instance runs at the end of it.
    pub fn ends_running(&self) -> bool {
        !matches!(self, Action::Stop | Action::Deallocate | Action::Delete)
    }
}

/// How far an action got; each phase is recorded before the next begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Phase {
    Begin,
    /// Out of service and drained.
    Drained,
    /// No process of the instance runs.
    Stopped,
    /// The fresh OS disk (if any) is in place and recorded.
    DiskReady,
    /// The agent was started (provisioning, then the entrypoint).
    Started,
}

/// Who asked for an action.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    #[default]
    User,
    Upgrade,
    Repair,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// The operation it belongs to (its `Azure-AsyncOperation`).
    pub operation: String,
    pub action: Action,
    pub phase: Phase,
    pub started_ms: i64,
    /// Return only once the instance is Healthy (update-instances, reimage, restart, start; CONTRACT §7).
    pub wait_healthy: bool,
    /// Why, for the decision log ("upgraded in batch 2").
    pub reason: String,
    #[serde(default)]
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataDiskRecord {
    pub lun: u32,
    pub size_gb: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRecord {
    pub id: u32,
    pub vm_id: String,
    pub created_ms: i64,
    /// The model generation it runs (`latestModelApplied` compares it with the scale set's).
    pub generation: u64,
    /// What its OS disk holds; `None` until the first disk is made.
    pub image: Option<ImageRef>,
    /// What it ran before its last upgrade, for rollback.
    pub previous_image: Option<ImageRef>,
    /// The generation it ran before its last upgrade, for rollback.
    pub previous_generation: Option<u64>,
    pub power: Power,
    pub provisioning: ProvisioningState,
    /// Why provisioning failed (the CustomScript's exit and stderr tail).
    pub error: Option<String>,
    pub protection: ProtectionPolicy,
    pub data_disks: Vec<DataDiskRecord>,
    /// Bumped at each (re)start galleon makes: the health tracker starts over (its epoch).
    pub boot: u64,
    /// When galleon last (re)started it: the health grace period counts from here.
    pub started_ms: Option<i64>,
    pub pending: Option<Pending>,
}

impl InstanceRecord {
    pub fn name(&self, scale_set: &str) -> String {
        format!("{scale_set}_{}", self.id)
    }

    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}
