//! Upgrades of a scale set's instances, by `upgradePolicy.mode` (CONTRACT §6): Manual — nothing until
//! `update-instances` or `reimage`; Automatic — every instance at once (as Azure warns); Rolling — the
//! planner's health-gated batches. Also OS image upgrades (`rolling-upgrade start`, and automatic ones when
//! a newer version is published) and automatic repairs.
//!
//! A rolling upgrade is a persisted record (`UpgradeRecord`: the planner's `Upgrade`, its target, its
//! operation) driven by one task (`driver`), which calls the pure planner and persists what it decided,
//! with the instance actions it asked for, in one transaction, before anything happens.

pub mod auto;
pub mod driver;
pub mod views;

use std::sync::Arc;

use galleon_api::vmss::{RollingUpgradePolicy, UpgradeMode, VirtualMachineScaleSet};
use galleon_core::policy::{RollingPolicy, RollingSettings};
use galleon_core::rollout::{self, Kind};
use galleon_store::{Kind as RowKind, Tx};
use serde::{Deserialize, Serialize};

use crate::App;
use crate::clock;
use crate::error::{ApiError, ApiResult};
use crate::fleet::record::{Action, ImageRef, Origin};
use crate::fleet::{self, ScaleSet, Submission};
use crate::ops::{self, Owner};

/// What an upgrade brings instances to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Target {
    /// A model change in Rolling mode: the model generation.
    Model { generation: u64 },
    /// An OS image upgrade: this image (the instances keep their models).
    Image { image: ImageRef },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartedBy {
    User,
    Platform,
}

/// One rolling upgrade, as persisted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeRecord {
    pub operation: String,
    pub upgrade: rollout::Upgrade,
    pub target: Target,
    pub started_by: StartedBy,
    /// ARM's `lastAction`: Start or Cancel, and when.
    pub last_action: String,
    pub last_action_ms: i64,
}

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

/// The policy an upgrade of `kind` follows: the scale set's rolling policy, except for an OS upgrade of a
/// scale set that is not in Rolling mode and does not ask for it (`useRollingUpgradePolicy`): Azure's
/// defaults then.
pub fn policy_of(doc: &VirtualMachineScaleSet, kind: Kind) -> RollingPolicy {
    let up = doc.properties.upgrade_policy.clone().unwrap_or_default();
    let use_own = kind == Kind::Model
        || up.mode == Some(UpgradeMode::Rolling)
        || up.automatic_os_upgrade_policy.as_ref().and_then(|a| a.use_rolling_upgrade_policy).unwrap_or(false);
    let given = if use_own {
        up.rolling_upgrade_policy.map(|r| settings(&r)).unwrap_or_default()
    } else {
        RollingSettings::default()
    };
    let mut p = galleon_core::policy::rolling(&given).unwrap_or_default();
    // The grace period is the scale set's own even under default batch settings.
    if let Some(g) = doc
        .properties
        .upgrade_policy
        .as_ref()
        .and_then(|u| u.rolling_upgrade_policy.as_ref())
        .and_then(|r| r.health_grace_period.as_deref())
        .and_then(|g| galleon_core::policy::parse_duration("healthGracePeriod", g).ok())
    {
        p.health_grace_period = g;
    }
    p
}

/// Whether failed instances are restored when an upgrade of `kind` faults (CONTRACT §6).
pub fn rollback_of(doc: &VirtualMachineScaleSet, kind: Kind) -> bool {
    let up = doc.properties.upgrade_policy.clone().unwrap_or_default();
    match kind {
        Kind::Os => !up.automatic_os_upgrade_policy.and_then(|a| a.disable_automatic_rollback).unwrap_or(false),
        Kind::Model => {
            up.rolling_upgrade_policy.and_then(|r| r.rollback_failed_instances_on_policy_breach).unwrap_or(false)
        }
    }
}

/// The active upgrade of a scale set: its id and record.
pub fn active(tx: &Tx<'_>, set: &ScaleSet) -> ApiResult<Option<(String, UpgradeRecord)>> {
    for (id, doc, active) in tx.upgrades(&set.key)?.into_iter().rev() {
        if active {
            return Ok(Some((id, serde_json::from_value(doc).map_err(ApiError::internal)?)));
        }
    }
    Ok(None)
}

/// Starts a rolling upgrade (in the caller's transaction): refuses a second one, and one without a health
/// source. Returns its id (its operation's); the caller spawns the driver after the commit.
pub fn start_in(
    app: &App,
    tx: &Tx<'_>,
    set: &ScaleSet,
    doc: &VirtualMachineScaleSet,
    kind: Kind,
    target: Target,
    by: StartedBy,
) -> ApiResult<String> {
    if let Some((id, _)) = active(tx, set)? {
        return Err(ApiError::conflict(
            "RollingUpgradeInProgress",
            format!("A rolling upgrade of '{}' is in progress (operation {id}); wait for it or cancel it.", set.name),
        ));
    }
    if crate::net::health_source(app, tx, set, doc)?.is_none() {
        return Err(ApiError::conflict(
            "NoHealthSource",
            format!(
                "A rolling upgrade of '{}' needs a health source: set virtualMachineProfile.networkProfile.healthProbe, \
                 put its instances behind a load-balancing rule with a probe, or add the ApplicationHealthLinux extension.",
                set.name
            ),
        ));
    }
    let observed = driver::observe(app, tx, set, doc, &target)?;
    let now = clock::now();
    let upgrade = rollout::start(kind, rollback_of(doc, kind), &observed, now);
    let op = ops::start(tx, &set.key, Owner::Upgrade)?;
    let record = UpgradeRecord {
        operation: op.clone(),
        upgrade,
        target,
        started_by: by,
        last_action: "Start".into(),
        last_action_ms: clock::now_ms(),
    };
    tx.put_upgrade(&op, &set.key, &serde_json::to_value(&record).map_err(ApiError::internal)?, true, clock::now_ms())?;
    let what = match &record.target {
        Target::Model { generation } => format!("rolling upgrade to model generation {generation}"),
        Target::Image { image } => format!("OS upgrade to {}", image.version_label()),
    };
    crate::fleet::decide::log(tx, set, None, "upgrade", &format!("{what} started by {by:?}"), Some(&op))?;
    Ok(op)
}

/// `rolling-upgrade start` (ARM `osRollingUpgrade`): every instance whose image differs from the model's
/// image resolved now is brought to it, in rolling batches, in any upgrade mode.
pub fn start_os(app: &App, set: &Arc<ScaleSet>, by: StartedBy) -> ApiResult<String> {
    let op = app.store.write(|tx| {
        let (_, doc) = ScaleSet::load(tx, &set.id)?;
        let model =
            crate::fleet::model::load(app.home.root(), &set.uid, tx.counter(&set.generation_counter())? as u64)?;
        let reference = model
            .image_reference()
            .ok_or_else(|| ApiError::invalid("The scale set's model names no image."))?
            .to_string();
        let image = crate::fleet::model::resolve_image(tx, &reference, &set.avoid_in(tx)?)?;
        start_in(app, tx, set, &doc, Kind::Os, Target::Image { image }, by)
    })?;
    driver::spawn(app, set, &op);
    Ok(op)
}

/// `rolling-upgrade cancel`: no new batch starts; instances mid-upgrade finish; then Cancelled.
pub fn cancel(app: &App, set: &ScaleSet) -> ApiResult<String> {
    let id = app.store.write(|tx| {
        let Some((id, mut record)) = active(tx, set)? else {
            return Err(ApiError::conflict(
                "NoRollingUpgrade",
                format!("No rolling upgrade of '{}' is in progress.", set.name),
            ));
        };
        record.upgrade = rollout::cancel(&record.upgrade);
        record.last_action = "Cancel".into();
        record.last_action_ms = clock::now_ms();
        tx.put_upgrade(
            &id,
            &set.key,
            &serde_json::to_value(&record).map_err(ApiError::internal)?,
            true,
            record.upgrade.started_at.as_millis() as i64,
        )?;
        crate::fleet::decide::log(tx, set, None, "upgrade", "cancel requested", Some(&id))?;
        Ok::<_, ApiError>(id)
    })?;
    app.events.notify_fleet_changed();
    Ok(id)
}

/// Called after the model's generation moved: Automatic applies it to every instance now, Rolling starts
/// a rolling upgrade, Manual waits for `update-instances`.
pub fn on_model_change(app: &App, set: &Arc<ScaleSet>) {
    let result = app.store.write(|tx| {
        let row = crate::resource::require(tx, &set.id, RowKind::ScaleSet)?;
        let doc: VirtualMachineScaleSet = row.parse()?;
        let generation = tx.counter(&set.generation_counter())? as u64;
        match doc.properties.upgrade_policy.as_ref().and_then(|u| u.mode).unwrap_or_default() {
            UpgradeMode::Manual => Ok::<_, ApiError>(Change::None),
            UpgradeMode::Rolling => {
                let op = start_in(app, tx, set, &doc, Kind::Model, Target::Model { generation }, StartedBy::User)?;
                Ok(Change::Rolling(op))
            }
            UpgradeMode::Automatic => {
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
                        origin: Origin::Upgrade,
                    },
                )?;
                Ok(Change::All(op, ids))
            }
        }
    });
    match result {
        Ok(Change::All(op, ids)) => {
            fleet::spawn(app, set, &ids);
            if ids.is_empty() {
                set.finish_if_done(app, &op);
            }
        }
        Ok(Change::Rolling(op)) => driver::spawn(app, set, &op),
        Ok(Change::None) => {}
        Err(e) => tracing::error!("{}: cannot apply the new model: {}", set.name, e.message),
    }
}

enum Change {
    None,
    All(String, Vec<u32>),
    Rolling(String),
}

/// Whether a model change may be made now: not while a rolling upgrade runs, and in Rolling mode only
/// with a health source (the change would start an upgrade that needs one).
pub fn check_model_change(
    tx: &Tx<'_>,
    set: &ScaleSet,
    doc: &VirtualMachineScaleSet,
    model: &crate::fleet::model::Model,
) -> ApiResult<()> {
    if let Some((id, _)) = active(tx, set)? {
        return Err(ApiError::conflict(
            "RollingUpgradeInProgress",
            format!(
                "A rolling upgrade of '{}' is in progress (operation {id}); cancel it or wait before changing the model.",
                set.name
            ),
        ));
    }
    let mode = doc.properties.upgrade_policy.as_ref().and_then(|u| u.mode).unwrap_or_default();
    if mode == UpgradeMode::Rolling && crate::net::health_source_with(tx, doc, Some(model))?.is_none() {
        return Err(ApiError::conflict(
            "NoHealthSource",
            format!(
                "'{}' is in Rolling mode but has no health source, so the upgrade this change starts could not be \
                 health-gated: add a load-balancer probe or the ApplicationHealthLinux extension first.",
                set.name
            ),
        ));
    }
    Ok(())
}

/// After a restart: every active upgrade is driven again from its persisted state.
pub fn resume(app: &App) -> ApiResult<()> {
    let active = app.store.read(|tx| Ok::<_, ApiError>(tx.active_upgrades()?))?;
    for (id, key) in active {
        let set = app.store.read(|tx| {
            let row = tx.get(&key)?.ok_or_else(|| ApiError::internal("an upgrade of a vanished scale set"))?;
            let doc: VirtualMachineScaleSet = row.parse()?;
            Ok::<_, ApiError>(Arc::new(ScaleSet::of(&doc, &row.id)?))
        });
        match set {
            Ok(set) => {
                tracing::info!("{}: resuming the rolling upgrade {id}", set.name);
                driver::spawn(app, &set, &id);
            }
            Err(e) => tracing::warn!("cannot resume the upgrade {id}: {}", e.message),
        }
    }
    auto::spawn(app);
    Ok(())
}
