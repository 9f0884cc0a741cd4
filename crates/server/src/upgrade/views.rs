//! ARM's views of upgrades: `rollingUpgrades/latest` (get-latest), `osUpgradeHistory`, and the endpoints
//! that start and cancel (`osRollingUpgrade`, `rollingUpgrades/cancel`).

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use galleon_api::vmss::VirtualMachineScaleSet;
use galleon_core::rollout;
use serde_json::{Value, json};

use super::{StartedBy, Target, UpgradeRecord, driver, policy_of};
use crate::App;
use crate::clock;
use crate::error::{ApiError, ApiResult};
use crate::fleet::ScaleSet;
use crate::resource::json;

fn load(app: &App, rg: &str, name: &str) -> ApiResult<(Arc<ScaleSet>, VirtualMachineScaleSet)> {
    let sid = crate::api::vmss::id(app, rg, name);
    app.store.read(|tx| ScaleSet::load(tx, &sid))
}

fn rfc(ms: u64) -> String {
    clock::rfc3339(i64::try_from(ms).unwrap_or(0))
}

fn error_of(u: &rollout::Upgrade) -> Value {
    match &u.error {
        Some(e) => {
            json!({"code": "RollingUpgradeFaulted", "message": e, "target": null, "details": [], "innererror": null})
        }
        None => Value::Null,
    }
}

fn target_reference(t: &Target, app: &App, set: &ScaleSet) -> Value {
    match t {
        Target::Image { image } => json!({"id": image.reference, "exactVersion": image.exact_version}),
        Target::Model { generation } => {
            let reference = crate::fleet::model::load(app.home.root(), &set.uid, *generation)
                .ok()
                .and_then(|m| m.image_reference().map(String::from));
            json!({"id": reference, "exactVersion": null, "modelGeneration": generation})
        }
    }
}

/// `GET …/rollingUpgrades/latest`: the latest rolling upgrade's status, as ARM's GetLatest.
pub fn latest(app: &App, rg: &str, name: &str) -> ApiResult<Response> {
    let (set, doc) = load(app, rg, name)?;
    let (id, record, instances) = app.store.read(|tx| {
        let Some((id, v, _)) = tx.upgrades(&set.key)?.pop() else {
            return Err(ApiError::not_found("NotFound", format!("No rolling upgrade has run on '{name}'.")));
        };
        let record: UpgradeRecord = serde_json::from_value(v).map_err(ApiError::internal)?;
        let instances = driver::observe(app, tx, &set, &doc, &record.target)?;
        Ok((id, record, instances))
    })?;
    let u = &record.upgrade;
    let p = rollout::progress(u, &instances);
    let policy = policy_of(&doc, u.kind);
    let body = json!({
        "id": format!("{}/rollingUpgrades/latest", set.id),
        "name": "latest",
        "type": "Microsoft.Compute/virtualMachineScaleSets/rollingUpgrades",
        "location": doc.location,
        "properties": {
            "policy": {
                "maxBatchInstancePercent": policy.max_batch_instance_percent,
                "maxUnhealthyInstancePercent": policy.max_unhealthy_instance_percent,
                "maxUnhealthyUpgradedInstancePercent": policy.max_unhealthy_upgraded_instance_percent,
                "pauseTimeBetweenBatches": format!("PT{}S", policy.pause_time_between_batches.as_secs()),
                "prioritizeUnhealthyInstances": policy.prioritize_unhealthy_instances,
                "rollbackFailedInstancesOnPolicyBreach": policy.rollback_failed_instances_on_policy_breach,
                "maxSurge": policy.max_surge,
            },
            "runningStatus": {
                "code": u.state.running_status(),
                "startTime": rfc(u.started_at.as_millis()),
                "endTime": u.ended_at.map(|t| rfc(t.as_millis())),
                "lastAction": record.last_action,
                "lastActionTime": clock::rfc3339(record.last_action_ms),
            },
            "progress": {
                "successfulInstanceCount": p.successful,
                "failedInstanceCount": p.failed,
                "inProgressInstanceCount": p.in_progress,
                "pendingInstanceCount": p.pending,
            },
            "error": error_of(u),
            "galleon": {
                "operation": id,
                "kind": u.kind,
                "state": format!("{:?}", u.state),
                "batch": u.batch_number,
                "batchInstances": u.batch,
                "upgraded": u.upgraded,
                "failed": u.failed,
                "rolledBack": u.rolled_back,
                "skipped": u.skipped,
                "target": target_reference(&record.target, app, &set),
            },
        },
    });
    json(StatusCode::OK, &body)
}

/// `GET …/osUpgradeHistory`: every OS upgrade (automatic or started), newest first, as ARM's.
pub fn history(app: &App, rg: &str, name: &str) -> ApiResult<Response> {
    let (set, doc) = load(app, rg, name)?;
    let all = app.store.read(|tx| Ok::<_, ApiError>(tx.upgrades(&set.key)?))?;
    let mut value = vec![];
    for (_, v, _) in all.into_iter().rev() {
        let record: UpgradeRecord = serde_json::from_value(v).map_err(ApiError::internal)?;
        if record.upgrade.kind != rollout::Kind::Os {
            continue;
        }
        let u = &record.upgrade;
        let rb = u.rollback_info();
        let instances = app.store.read(|tx| driver::observe(app, tx, &set, &doc, &record.target))?;
        let p = rollout::progress(u, &instances);
        value.push(json!({
            "type": "Microsoft.Compute/virtualMachineScaleSets/rollingUpgrades",
            "location": doc.location,
            "properties": {
                "runningStatus": {
                    "code": u.state.running_status(),
                    "startTime": rfc(u.started_at.as_millis()),
                    "endTime": u.ended_at.map(|t| rfc(t.as_millis())),
                },
                "progress": {
                    "successfulInstanceCount": p.successful,
                    "failedInstanceCount": p.failed,
                    "inProgressInstanceCount": p.in_progress,
                    "pendingInstanceCount": p.pending,
                },
                "error": error_of(u),
                "startedBy": match record.started_by { StartedBy::User => "User", StartedBy::Platform => "Platform" },
                "targetImageReference": target_reference(&record.target, app, &set),
                "rollbackInfo": {
                    "successfullyRolledbackInstanceCount": rb.successfully_rolled_back,
                    "failedRolledbackInstanceCount": rb.failed_rolled_back,
                    "rollbackError": if rb.failed_rolled_back > 0 { json!({"code": "RollbackFailed", "message": format!("{} instance(s) could not be rolled back", rb.failed_rolled_back)}) } else { Value::Null },
                },
            },
        }));
    }
    json(StatusCode::OK, &galleon_api::List::of(value))
}

/// `POST …/osRollingUpgrade`.
pub fn start(app: &App, rg: &str, name: &str) -> ApiResult<Response> {
    let (set, _) = load(app, rg, name)?;
    let op = super::start_os(app, &set, StartedBy::User)?;
    crate::ops::accepted(app, &op, StatusCode::ACCEPTED, None)
}

/// `POST …/rollingUpgrades/cancel`.
pub fn cancel(app: &App, rg: &str, name: &str) -> ApiResult<Response> {
    let (set, _) = load(app, rg, name)?;
    let op = super::cancel(app, &set)?;
    crate::ops::accepted(app, &op, StatusCode::ACCEPTED, None)
}
