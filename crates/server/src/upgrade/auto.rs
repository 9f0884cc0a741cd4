//! What happens by itself: automatic OS image upgrades when a newer version is published (seed 000's
//! whole point), and automatic repairs of instances unhealthy for their grace period.
//!
//! One task watches the gallery and the fleet (events, and a periodic look so nothing is missed) and,
//! for each scale set, decides with pure functions: `wants_os_upgrade` (the model follows a definition,
//! automatic OS upgrade is on, an instance runs something older than latest) and `rollout::repair`.

use std::sync::Arc;
use std::time::Duration;

use galleon_api::vmss::{RepairAction, VirtualMachineScaleSet};
use galleon_core::ids::ResourceId;
use galleon_core::rollout::repair::{RepairObserved, repairs};
use galleon_core::rollout::{Busy, Kind};
use galleon_core::time::Time;
use galleon_store::Kind as RowKind;

use super::{StartedBy, Target, active, driver, start_in};
use crate::App;
use crate::clock;
use crate::error::{ApiError, ApiResult};
use crate::fleet::record::{Action, Origin};
use crate::fleet::{self, ScaleSet, Submission};
use crate::ops::Owner;

/// How often everything is looked at even without an event.
const LOOK_EVERY: Duration = Duration::from_secs(2);

pub fn spawn(app: &App) {
    let task_app = app.clone();
    app.tasks.spawn(async move { watch(task_app).await });
}

async fn watch(app: App) {
    let mut gallery = app.events.gallery_changes();
    let mut fleet = app.events.fleet_changes();
    loop {
        let app2 = app.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || look(&app2)).await {
            tracing::warn!("automatic upgrades and repairs: {}", e.message);
        }
        tokio::select! {
            _ = tokio::time::sleep(LOOK_EVERY) => {}
            _ = gallery.changed() => {}
            _ = fleet.changed() => {}
            _ = app.shutdown.cancelled() => return,
        }
    }
}

fn look(app: &App) -> ApiResult<()> {
    let rows = app.store.read(|tx| Ok::<_, ApiError>(tx.all(RowKind::ScaleSet)?))?;
    for row in rows {
        let doc: VirtualMachineScaleSet = row.parse()?;
        if doc.properties.provisioning_state == Some(galleon_api::ProvisioningState::Deleting) {
            continue;
        }
        let set = Arc::new(ScaleSet::of(&doc, &row.id)?);
        if let Err(e) = os_upgrade(app, &set, &doc) {
            tracing::warn!("{}: automatic OS upgrade: {}", set.name, e.message);
        }
        if let Err(e) = repair(app, &set, &doc) {
            tracing::warn!("{}: automatic repairs: {}", set.name, e.message);
        }
    }
    Ok(())
}

/// Starts an OS upgrade when automatic OS upgrade is on, the model names a definition (latest), and an
/// instance runs something other than latest (versions excluded from latest never trigger it).
fn os_upgrade(app: &App, set: &Arc<ScaleSet>, doc: &VirtualMachineScaleSet) -> ApiResult<()> {
    let auto = doc.properties.upgrade_policy.as_ref().and_then(|u| u.automatic_os_upgrade_policy.as_ref());
    if !auto.and_then(|a| a.enable_automatic_os_upgrade).unwrap_or(false) {
        return Ok(());
    }
    let started = app.store.write(|tx| {
        if active(tx, set)?.is_some() {
            return Ok::<_, ApiError>(None);
        }
        let generation = tx.counter(&set.generation_counter())? as u64;
        let model = crate::fleet::model::load(app.home.root(), &set.uid, generation)?;
        let Some(reference) = model.image_reference() else { return Ok(None) };
        let Ok(rid) = ResourceId::parse(reference) else { return Ok(None) };
        let follows_latest = rid.is("Microsoft.Compute", &["galleries", "images"])
            || (rid.is("Microsoft.Compute", &["galleries", "images", "versions"])
                && rid.name().eq_ignore_ascii_case("latest"));
        if !follows_latest {
            return Ok(None);
        }
        let Ok(latest) = crate::fleet::model::resolve_image(tx, reference, &set.avoid_in(tx)?) else { return Ok(None) };
        let behind = set.records_in(tx)?.iter().any(|r| {
            r.image.as_ref().is_some_and(|i| !i.id.eq_ignore_ascii_case(&latest.id))
                && !r.protection.protect_from_scale_set_actions
        });
        if !behind {
            return Ok(None);
        }
        // An attempt that could not start for want of a health source is recorded once per version.
        let last = tx.upgrades(&set.key)?.pop();
        let same_target_failed = last.as_ref().is_some_and(|(_, d, _)| {
            serde_json::from_value::<super::UpgradeRecord>(d.clone()).is_ok_and(|r| {
                r.target == Target::Image { image: latest.clone() }
                    && r.upgrade.error.as_deref().is_some_and(|e| e.starts_with("No health source"))
            })
        });
        match start_in(app, tx, set, doc, Kind::Os, Target::Image { image: latest.clone() }, StartedBy::Platform) {
            Ok(op) => Ok(Some(op)),
            Err(e) if e.code == "NoHealthSource" && !same_target_failed => {
                record_refused(tx, set, &latest, &e.message)?;
                Ok(None)
            }
            Err(e) if e.code == "NoHealthSource" => Ok(None),
            Err(e) => Err(e),
        }
    })?;
    if let Some(op) = started {
        tracing::info!("{}: a newer image version is published; automatic OS upgrade {op} started", set.name);
        driver::spawn(app, set, &op);
    }
    Ok(())
}

/// An automatic OS upgrade that could not start is still history: a Faulted attempt with why.
fn record_refused(
    tx: &galleon_store::Tx<'_>,
    set: &ScaleSet,
    image: &crate::fleet::record::ImageRef,
    why: &str,
) -> ApiResult<()> {
    let now = clock::now();
    let op = crate::ops::start(tx, &set.key, Owner::Upgrade)?;
    let mut upgrade = galleon_core::rollout::start(Kind::Os, false, &[], now);
    upgrade.state = galleon_core::rollout::State::Faulted { rolling_back: false };
    upgrade.ended_at = Some(now);
    upgrade.error = Some(format!("No health source: {why}"));
    let record = super::UpgradeRecord {
        operation: op.clone(),
        upgrade,
        target: Target::Image { image: image.clone() },
        started_by: StartedBy::Platform,
        last_action: "Start".into(),
        last_action_ms: clock::now_ms(),
    };
    tx.put_upgrade(&op, &set.key, &serde_json::to_value(&record).map_err(ApiError::internal)?, false, clock::now_ms())?;
    crate::ops::finish(tx, &op, Some(galleon_api::ErrorDetail::new("NoHealthSource", why)), false)?;
    crate::fleet::decide::log(
        tx,
        set,
        None,
        "upgrade",
        &format!("automatic OS upgrade to {} not started: {why}", image.version_label()),
        Some(&op),
    )?;
    Ok(())
}

/// `automaticRepairsPolicy`: instances Unhealthy for the grace period are repaired, a few at a time,
/// never while an upgrade runs.
fn repair(app: &App, set: &Arc<ScaleSet>, doc: &VirtualMachineScaleSet) -> ApiResult<()> {
    let Some(policy) = doc.properties.automatic_repairs_policy.as_ref().filter(|p| p.enabled == Some(true)) else {
        return Ok(());
    };
    let grace =
        galleon_core::policy::repair_grace(policy.grace_period.as_deref()).map_err(|e| ApiError::invalid(e.0))?;
    let action = policy.repair_action.unwrap_or(RepairAction::Replace);
    let started = app.store.write(|tx| {
        let Some(source) = crate::net::health_source(app, tx, set, doc)? else { return Ok::<_, ApiError>(vec![]) };
        let upgrade_running = active(tx, set)?.is_some();
        let records = set.records_in(tx)?;
        let observed: Vec<RepairObserved> = records
            .iter()
            .filter(|r| r.power == crate::fleet::record::Power::Running)
            .map(|r| RepairObserved {
                id: r.id,
                health: app.net.health_of(set, r, &source),
                unhealthy_since: app.net.unhealthy_since(set, r, &source).map(Time::from_millis),
                busy: r
                    .pending
                    .as_ref()
                    .map(|p| if p.origin == Origin::Repair { Busy::Repairing } else { Busy::Other }),
                protected: r.protection.protect_from_scale_set_actions,
            })
            .collect();
        let now = clock::now();
        let plan = repairs(&observed, grace, now, upgrade_running);
        let mut started = vec![];
        for id in plan.repair {
            let since = observed
                .iter()
                .find(|o| o.id == id)
                .and_then(|o| o.unhealthy_since)
                .map(|s| now.since(s).as_secs())
                .unwrap_or(0);
            let reason = format!("repaired ({action:?}): Unhealthy for {since} s (grace {} s)", grace.as_secs());
            let submit = |tx: &galleon_store::Tx<'_>, action: Action, ids: &[u32], reason: String| {
                fleet::write_ahead(
                    tx,
                    set,
                    &Submission {
                        action,
                        ids,
                        wait_healthy: false,
                        reason,
                        owner: Owner::Instances,
                        operation: None,
                        origin: Origin::Repair,
                    },
                )
            };
            match action {
                RepairAction::Restart => submit(tx, Action::Restart, &[id], reason)?,
                RepairAction::Reimage => submit(tx, Action::Reimage, &[id], reason)?,
                RepairAction::Replace => {
                    // A new instance (new data disks, as Azure) replaces the unhealthy one.
                    let new = fleet::next_ids(tx, set, 1)?;
                    submit(tx, Action::Create, &new, format!("replacement of instance {id}: {reason}"))?;
                    started.extend_from_slice(&new);
                    submit(tx, Action::Delete, &[id], reason)?
                }
            };
            started.push(id);
        }
        Ok(started)
    })?;
    if !started.is_empty() {
        tracing::info!("{}: automatic repair of instances {started:?}", set.name);
        fleet::spawn(app, set, &started);
    }
    Ok(())
}
