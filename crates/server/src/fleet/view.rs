//! Instances as the API shows them: the VM document of `list-instances` and `show`, and the instance
//! view (`get-instance-view`), built from the record, what the runtime observes, and health.

use galleon_api::vmss::{
    DataDisk, DiskInstanceView, ExtensionInstanceView, GalleonInstanceView, ImageReference, InstanceExit,
    InstanceViewStatus, OsDisk, Sku, StorageProfile, VirtualMachineScaleSetVm, VmHealth, VmInstanceView,
    VmNetworkProfile, VmOsProfile, VmProperties,
};
use galleon_api::{ProvisioningState, SubResource};
use galleon_core::health::HealthState;
use galleon_runtime::{Observation, Phase as RtPhase};

use crate::clock;
use crate::fleet::record::{Action, InstanceRecord, Phase, Power};
use crate::fleet::{ScaleSet, model};

/// Everything a VM document is made of.
pub struct Seen<'a> {
    pub set: &'a ScaleSet,
    pub location: Option<String>,
    pub sku: Option<Sku>,
    pub generation: u64,
    pub rec: &'a InstanceRecord,
    pub observed: &'a Observation,
    pub health: HealthState,
    /// Whether the scale set has a health source at all (else `healthState` is null).
    pub health_source: bool,
    pub address: Option<String>,
}

/// `PowerState/…` as ARM names it, and its display form.
pub fn power_state(rec: &InstanceRecord, observed: &Observation) -> (&'static str, &'static str) {
    if let Some(p) = &rec.pending {
        let leaving = p.phase < Phase::Stopped;
        return match (&p.action, leaving) {
            (Action::Create, _) => ("PowerState/starting", "VM starting"),
            (Action::Delete, _) => ("PowerState/stopping", "VM stopping"),
            (Action::Stop, true) => ("PowerState/stopping", "VM stopping"),
            (Action::Stop, false) => ("PowerState/stopped", "VM stopped"),
            (Action::Deallocate, _) => ("PowerState/deallocating", "VM deallocating"),
            (_, true) if p.phase == Phase::Begin && rec.power != Power::Running => {
                ("PowerState/starting", "VM starting")
            }
            (_, true) => ("PowerState/stopping", "VM stopping"),
            (_, false) => ("PowerState/starting", "VM starting"),
        };
    }
    match rec.power {
        Power::Stopped => ("PowerState/stopped", "VM stopped"),
        Power::Deallocated => ("PowerState/deallocated", "VM deallocated"),
        Power::Running => match observed.phase {
            RtPhase::Stopped | RtPhase::Gone => ("PowerState/stopped", "VM stopped"),
            RtPhase::Stopping => ("PowerState/stopping", "VM stopping"),
            _ => ("PowerState/running", "VM running"),
        },
    }
}

fn provisioning_code(s: ProvisioningState) -> &'static str {
    match s {
        ProvisioningState::Creating => "creating",
        ProvisioningState::Updating => "updating",
        ProvisioningState::Succeeded => "succeeded",
        ProvisioningState::Failed => "failed",
        ProvisioningState::Deleting => "deleting",
    }
}

fn status(code: String, display: &str, message: Option<String>, time: Option<String>) -> InstanceViewStatus {
    let level = if code.ends_with("/failed") { "Error" } else { "Info" };
    InstanceViewStatus { code, level: Some(level.into()), display_status: Some(display.into()), message, time }
}

pub fn vm(seen: &Seen<'_>) -> VirtualMachineScaleSetVm {
    let rec = seen.rec;
    let name = rec.name(&seen.set.name);
    let id = seen.set.instance_id(rec.id);
    let (_, power) = power_state(rec, seen.observed);
    VirtualMachineScaleSetVm {
        id: Some(id.clone()),
        name: Some(name.clone()),
        kind: Some("Microsoft.Compute/virtualMachineScaleSets/virtualMachines".into()),
        location: seen.location.clone(),
        tags: None,
        instance_id: Some(rec.id.to_string()),
        sku: seen.sku.clone().map(|s| Sku { capacity: None, ..s }),
        properties: VmProperties {
            latest_model_applied: Some(rec.image.is_some() && rec.generation == seen.generation),
            model_definition_applied: Some("VirtualMachineScaleSet".into()),
            vm_id: Some(rec.vm_id.clone()),
            provisioning_state: Some(rec.provisioning),
            time_created: Some(clock::rfc3339(rec.created_ms)),
            storage_profile: Some(StorageProfile {
                image_reference: rec.image.as_ref().map(|i| ImageReference {
                    id: Some(i.reference.clone()),
                    exact_version: i.exact_version.clone(),
                    ..Default::default()
                }),
                os_disk: Some(OsDisk {
                    name: Some(format!("{name}_OsDisk")),
                    create_option: Some("FromImage".into()),
                    os_type: Some("Linux".into()),
                    ..Default::default()
                }),
                data_disks: Some(
                    rec.data_disks
                        .iter()
                        .map(|d| DataDisk {
                            lun: d.lun,
                            disk_size_gb: Some(d.size_gb),
                            name: Some(format!("{name}_disk{}", d.lun)),
                            create_option: Some("Empty".into()),
                            caching: None,
                        })
                        .collect(),
                ),
            }),
            protection_policy: Some(rec.protection.clone()),
            os_profile: Some(VmOsProfile { computer_name: Some(format!("{}{:06}", seen.set.name, rec.id)) }),
            network_profile: Some(VmNetworkProfile {
                network_interfaces: vec![SubResource { id: format!("{id}/networkInterfaces/{}-nic", seen.set.name) }],
            }),
            private_ip_address: seen.address.clone(),
            power_state: Some(power.into()),
            health_state: seen.health_source.then(|| seen.health.as_str().to_string()),
            instance_view: None,
        },
    }
}

pub fn instance_view(seen: &Seen<'_>, decisions: Vec<galleon_api::vmss::Decision>) -> VmInstanceView {
    let rec = seen.rec;
    let name = rec.name(&seen.set.name);
    let (power_code, power_display) = power_state(rec, seen.observed);
    let prov = provisioning_code(rec.provisioning);
    let mut statuses = vec![status(
        format!("ProvisioningState/{prov}"),
        &format!("Provisioning {prov}"),
        rec.error.clone(),
        rec.started_ms.map(clock::rfc3339),
    )];
    statuses.push(status(power_code.into(), power_display, None, None));
    let extensions = seen.observed.custom_script.as_ref().map(|p| {
        let code = if p.succeeded { "ProvisioningState/succeeded" } else { "ProvisioningState/failed" };
        let message =
            format!("{}\n[stdout]\n{}\n[stderr]\n{}", p.message, p.stdout_tail.trim_end(), p.stderr_tail.trim_end());
        vec![ExtensionInstanceView {
            name: "CustomScript".into(),
            extension_type: Some(format!("{}.{}", model::CUSTOM_SCRIPT.0, model::CUSTOM_SCRIPT.1)),
            type_handler_version: Some("2.1.0".into()),
            statuses: vec![status(
                code.into(),
                if p.succeeded { "Provisioning succeeded" } else { "Provisioning failed" },
                Some(message),
                Some(clock::rfc3339(p.finished_at_ms)),
            )],
        }]
    });
    let vm_health = seen
        .health_source
        .then(|| VmHealth { status: status(seen.health.arm_code().into(), seen.health.as_str(), None, None) });
    VmInstanceView {
        platform_update_domain: 0,
        platform_fault_domain: 0,
        computer_name: Some(format!("{}{:06}", seen.set.name, rec.id)),
        os_name: Some("Linux".into()),
        disks: vec![DiskInstanceView {
            name: format!("{name}_OsDisk"),
            statuses: vec![status("ProvisioningState/succeeded".into(), "Provisioning succeeded", None, None)],
        }],
        extensions,
        vm_health,
        boot_diagnostics: None,
        statuses,
        galleon: Some(GalleonInstanceView {
            exits: seen
                .observed
                .exits
                .iter()
                .map(|e| InstanceExit {
                    time: clock::rfc3339(e.at_ms),
                    exit_code: e.code,
                    signal: e.signal,
                    uptime_seconds: e.uptime_ms as f64 / 1000.0,
                })
                .collect(),
            starts: seen.observed.starts,
            decisions,
        }),
    }
}
