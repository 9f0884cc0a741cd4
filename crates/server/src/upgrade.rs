//! What a model change does to running instances, by `upgradePolicy.mode` (CONTRACT §6):
//! Manual — nothing until `update-instances` or `reimage`; Automatic — every instance at once (as Azure
//! warns); Rolling — health-gated batches.

use std::sync::Arc;

use galleon_api::vmss::{RollingUpgradePolicy, UpgradeMode, VirtualMachineScaleSet};
use galleon_core::policy::RollingSettings;
use galleon_store::Kind;

use crate::App;
use crate::error::ApiError;
use crate::fleet::record::Action;
use crate::fleet::{self, ScaleSet, Submission};
use crate::ops::Owner;

/// The ARM policy as the core's settings.
pub fn settings(p: &RollingUpgradePolicy) -> RollingSettings {
    RollingSettings {
        max_batch_instance_percent: p.max_batch_instance_percent,
        max_unhealthy_instance_percent: p.max_unhealthy_instance_percent,
        max_unhealthy_upgraded_instance_percent: p.max_unhealthy_upgraded_instance_percent,
        pause_time_between_batches: p.pause_time_between_batches.clone(),
        prioritize_unhealthy_instances: p.prioritize_unhealthy_instances,
        rollback_failed_instances_on_policy_breach: p.rollback_failed_instances_on_policy_breach,
        max_surge: p.max_surge,
        health_grace_period: p.health_grace_period.clone(),
    }
}

/// Called after the model's generation moved.
pub fn on_model_change(app: &App, set: &Arc<ScaleSet>) {
    let result = app.store.write(|tx| {
        let row = crate::resource::require(tx, &set.id, Kind::ScaleSet)?;
        let doc: VirtualMachineScaleSet = row.parse()?;
        let mode = doc.properties.upgrade_policy.as_ref().and_then(|u| u.mode).unwrap_or_default();
        if mode != UpgradeMode::Automatic {
            return Ok::<_, ApiError>(None);
        }
        let ids: Vec<u32> = set
            .records_in(tx)?
            .iter()
            .filter(|r| r.pending.is_none() && !r.protection.protect_from_scale_set_actions)
            .map(|r| r.id)
            .collect();
        let op = fleet::write_ahead(
            tx,
            set,
            &Submission {
                action: Action::Upgrade,
                ids: &ids,
                wait_healthy: false,
                reason: "Automatic upgrade policy: every instance at once".into(),
                owner: Owner::Instances,
                operation: None,
            },
        )?;
        Ok(Some((op, ids)))
    });
    match result {
        Ok(Some((op, ids))) => {
            fleet::spawn(app, set, &ids);
            if ids.is_empty() {
                set.finish_if_done(app, &op);
            }
        }
        Ok(None) => {}
        Err(e) => tracing::error!("{}: cannot apply the new model: {}", set.name, e.message),
    }
}
