//! The shell around the rollout planner: one task per active upgrade.
//!
//! Each round it gathers a snapshot (the persisted upgrade, the policy now, every instance as observed),
//! asks `rollout::plan`, and in ONE transaction persists the planner's next state together with the
//! write-ahead of every instance action it asked for — so after a `kill -9` either both happened or
//! neither, and the next round (of this control plane or the next) sees the actions as busy instances.
//! Then it starts the action tasks and sleeps until the planner's wake-up or the next fleet event.

use std::sync::Arc;
use std::time::Duration;

use galleon_api::ErrorDetail;
use galleon_api::vmss::VirtualMachineScaleSet;
use galleon_core::health::HealthState;
use galleon_core::rollout::{self, Act, Busy, Observed, Snapshot, State};
use galleon_core::time::Time;
use galleon_store::Tx;

use super::{Target, UpgradeRecord, policy_of};
use crate::App;
use crate::clock;
use crate::error::{ApiError, ApiResult};
use crate::fleet::record::{Action, InstanceRecord, Origin, Pending};
use crate::fleet::{self, ScaleSet, Submission, decide};
use crate::ops::{self, Owner};

/// Longest sleep between rounds when nothing happens (a safety net; events wake the driver sooner).
const IDLE: Duration = Duration::from_secs(1);

pub fn spawn(app: &App, set: &Arc<ScaleSet>, id: &str) {
    let (task_app, set, id) = (app.clone(), set.clone(), id.to_string());
    app.tasks.spawn(async move { drive(task_app, set, id).await });
}

async fn drive(app: App, set: Arc<ScaleSet>, id: String) {
    let mut events = app.events.fleet_changes();
    loop {
        if app.shutdown.is_cancelled() {
            return;
        }
        let app2 = app.clone();
        let (set2, id2) = (set.clone(), id.clone());
        let round = tokio::task::spawn_blocking(move || round(&app2, &set2, &id2)).await;
        let wake = match round {
            Ok(Ok(Some(wake))) => wake,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                tracing::error!("{}: upgrade {id}: {}", set.name, e.message);
                Some(clock::now() + Duration::from_secs(1))
            }
            Err(e) => {
                tracing::error!("{}: upgrade {id}: {e}", set.name);
                return;
            }
        };
        let sleep = wake.map_or(IDLE, |w| w.since(clock::now()).min(IDLE));
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = events.changed() => {}
            _ = app.shutdown.cancelled() => return,
        }
    }
}

fn busy_of(p: &Pending) -> Busy {
    match (&p.action, p.origin) {
        (Action::Upgrade | Action::OsUpgrade { .. }, _) => Busy::Upgrading,
        (Action::Rollback { .. }, _) => Busy::RollingBack,
        (Action::Delete, _) => Busy::Deleting,
        (_, Origin::Repair) => Busy::Repairing,
        _ => Busy::Other,
    }
}

/// Whether an instance's OS disk holds the upgrade's target.
pub fn on_target(rec: &InstanceRecord, target: &Target) -> bool {
    match target {
        Target::Model { generation } => rec.image.is_some() && rec.generation == *generation,
        Target::Image { image } => rec.image.as_ref().is_some_and(|i| i.id.eq_ignore_ascii_case(&image.id)),
    }
}

/// Every instance as the planner sees it.
pub fn observe(
    app: &App,
    tx: &Tx<'_>,
    set: &ScaleSet,
    doc: &VirtualMachineScaleSet,
    target: &Target,
) -> ApiResult<Vec<Observed>> {
    let source = crate::net::health_source(app, tx, set, doc)?;
    let seen = app.net.seen();
    Ok(set
        .records_in(tx)?
        .iter()
        .map(|rec| Observed {
            id: rec.id,
            on_target: on_target(rec, target),
            health: source.as_ref().map_or(HealthState::Unknown, |s| app.net.health_of(set, rec, s)),
            health_seen: seen,
            busy: rec.pending.as_ref().map(busy_of),
            protected: rec.protection.protect_from_scale_set_actions,
            started_at: rec.started_ms.and_then(|ms| u64::try_from(ms).ok()).map(Time::from_millis),
        })
        .collect())
}

/// One decision: plan, persist it with its actions' write-ahead, start them. `None` once the upgrade
/// ended; else the planner's wake-up.
fn round(app: &App, set: &Arc<ScaleSet>, id: &str) -> ApiResult<Option<Option<Time>>> {
    let (plan, record) = app.store.read(|tx| {
        let doc_v = tx.upgrade(id)?.ok_or_else(|| ApiError::internal(format!("the upgrade {id} vanished")))?;
        let record: UpgradeRecord = serde_json::from_value(doc_v).map_err(ApiError::internal)?;
        let (_, doc) = ScaleSet::load(tx, &set.id)?;
        let instances = observe(app, tx, set, &doc, &record.target)?;
        let policy = policy_of(&doc, record.upgrade.kind);
        let plan =
            rollout::plan(&Snapshot { now: clock::now(), policy, instances: &instances, upgrade: &record.upgrade });
        Ok::<_, ApiError>((plan, record))
    })?;
    if record.upgrade.state.is_terminal() {
        return Ok(None);
    }
    if plan.next == record.upgrade && plan.actions.is_empty() {
        return Ok(Some(plan.wake_at));
    }
    let terminal = plan.next.state.is_terminal();
    let started = app.store.write(|tx| {
        let mut record = record.clone();
        record.upgrade = plan.next.clone();
        let mut started = vec![];
        for act in &plan.actions {
            apply(app, tx, set, &record, act, &mut started)?;
        }
        if terminal {
            finish(tx, set, &record)?;
        }
        let value = serde_json::to_value(&record).map_err(ApiError::internal)?;
        tx.put_upgrade(id, &set.key, &value, !terminal, record.upgrade.started_at.as_millis() as i64)?;
        Ok::<_, ApiError>(started)
    })?;
    fleet::spawn(app, set, &started);
    if terminal {
        tracing::info!("{}: upgrade {id} ended {}", set.name, plan.next.state.running_status());
        app.events.notify_fleet_changed();
        return Ok(None);
    }
    Ok(Some(plan.wake_at))
}

/// Writes one planner action ahead (idempotent: what is in flight or done is not asked twice).
fn apply(
    app: &App,
    tx: &Tx<'_>,
    set: &ScaleSet,
    record: &UpgradeRecord,
    act: &Act,
    started: &mut Vec<u32>,
) -> ApiResult<()> {
    let records = set.records_in(tx)?;
    let free = |ids: &[u32]| -> Vec<u32> {
        ids.iter().copied().filter(|i| records.iter().any(|r| r.id == *i && r.pending.is_none())).collect()
    };
    let submit = |tx: &Tx<'_>, action: Action, ids: &[u32], reason: String, started: &mut Vec<u32>| -> ApiResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        fleet::write_ahead(
            tx,
            set,
            &Submission {
                action,
                ids,
                wait_healthy: false,
                reason,
                owner: Owner::Upgrade,
                operation: Some(record.operation.clone()),
                origin: Origin::Upgrade,
            },
        )?;
        started.extend_from_slice(ids);
        Ok(())
    };
    match act {
        Act::Upgrade { ids, batch } => {
            let ids = free(ids);
            let action = match &record.target {
                Target::Model { .. } => Action::Upgrade,
                Target::Image { image } => Action::OsUpgrade { to: image.clone() },
            };
            submit(tx, action, &ids, format!("upgraded in batch {batch}"), started)?;
        }
        Act::Rollback { ids } => {
            for i in free(ids) {
                let rec = records.iter().find(|r| r.id == i).ok_or_else(|| ApiError::internal("vanished"))?;
                match rec.previous_image.clone() {
                    Some(to) => submit(
                        tx,
                        Action::Rollback { to: to.clone() },
                        &[i],
                        format!("rolled back to {}: not healthy after the upgrade", to.version_label()),
                        started,
                    )?,
                    None => decide::log(
                        tx,
                        set,
                        Some(i),
                        "rollback",
                        "cannot roll back: no previous image is recorded",
                        Some(&record.operation),
                    )?,
                }
            }
        }
        Act::Create { count, batch } => {
            // Make sure `count` instances exist for this batch: those already made are not made again.
            let floor = record.upgrade.surge.as_ref().map_or(0, |s| s.floor);
            let made = records.iter().filter(|r| r.id >= floor).count() as u32;
            let need = count.saturating_sub(made) as usize;
            if need > 0 {
                let ids = fleet::next_ids(tx, set, need)?;
                submit(tx, Action::Create, &ids, format!("surge instance of batch {batch}"), started)?;
            }
        }
        Act::Delete { ids } => {
            let ids = free(ids);
            let why = if record.upgrade.state.is_rolling_forward() {
                "replaced by a healthy surge instance"
            } else {
                "surge instance of the failed batch"
            };
            submit(tx, Action::Delete, &ids, why.to_string(), started)?;
        }
        Act::Record { id, reason } => decide::log(tx, set, *id, "upgrade", reason, Some(&record.operation))?,
    }
    let _ = app;
    Ok(())
}

/// The end of an upgrade: its operation, and for a faulted OS upgrade, the version is not tried again
/// by this scale set (CONTRACT §6).
fn finish(tx: &Tx<'_>, set: &ScaleSet, record: &UpgradeRecord) -> ApiResult<()> {
    let u = &record.upgrade;
    match u.state {
        State::Completed => {
            ops::finish(tx, &record.operation, None, false)?;
        }
        State::Cancelled => {
            ops::finish(
                tx,
                &record.operation,
                Some(ErrorDetail::new("RollingUpgradeCancelled", "The rolling upgrade was cancelled.")),
                true,
            )?;
        }
        State::Faulted { .. } => {
            let message = u.error.clone().unwrap_or_else(|| "The rolling upgrade faulted.".into());
            ops::finish(tx, &record.operation, Some(ErrorDetail::new("RollingUpgradeFaulted", message)), false)?;
            if let Target::Image { image } = &record.target
                && let Some(v) = &image.exact_version
            {
                let key = format!("faulted/{}", set.uid);
                let mut list: Vec<String> =
                    tx.meta(&key)?.unwrap_or_default().split(',').filter(|s| !s.is_empty()).map(String::from).collect();
                if !list.contains(v) {
                    list.push(v.clone());
                }
                tx.set_meta(&key, &list.join(","))?;
            }
        }
        State::Ready | State::Upgrading | State::Surging | State::Replacing => {}
    }
    Ok(())
}
