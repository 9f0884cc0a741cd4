//! Scale sets: `…/Microsoft.Compute/virtualMachineScaleSets/{name}`, its instances
//! (`/virtualMachines[/{id}[/instanceView]]`), instance actions (`/manualupgrade`, `/reimage`, `/restart`,
//! `/poweroff`, `/start`, `/deallocate`, `/delete`) and extensions (`/extensions/{name}`).
//!
//! A PUT changes the model; the generation moves only when instances would be made differently
//! (`fleet::model`). Instances change only through actions, which this module writes ahead and hands to
//! the fleet; answers come back through operations.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use galleon_api::ProvisioningState;
use galleon_api::vmss::{
    Extension, ExtensionProfile, InstanceIds, ScaleInRule, Sku, UpgradeMode, VirtualMachineScaleSet,
    VirtualMachineScaleSetVm,
};
use galleon_core::ids::ResourceId;
use galleon_core::names::NameKind;
use galleon_core::scale;
use galleon_store::{Kind, Tx};

use crate::App;
use crate::clock;
use crate::error::{ApiError, ApiResult};
use crate::fleet::model::{self, Model};
use crate::fleet::record::{Action, InstanceRecord, Power};
use crate::fleet::view::{self, Seen};
use crate::fleet::{self, ScaleSet, Submission, decide};
use crate::ops::{self, Owner};
use crate::request::ApiRequest;
use crate::resource::{check_name, json, list, location, new_row, require, require_group, rows_in, updated_row};

/// The most instances one scale set may have.
const MAX_CAPACITY: u32 = 1000;
const TYPE: &str = "Microsoft.Compute/virtualMachineScaleSets";

pub fn id(app: &App, rg: &str, name: &str) -> ResourceId {
    ResourceId::new(&app.subscription, rg, "Microsoft.Compute", &[("virtualMachineScaleSets", name)])
}

fn to_value<T: serde::Serialize>(v: &T) -> ApiResult<serde_json::Value> {
    serde_json::to_value(v).map_err(ApiError::internal)
}

/// Checks what a model's policies ask for (CONTRACT §6): impossible settings are refused when set.
fn validate_policies(doc: &VirtualMachineScaleSet) -> ApiResult<()> {
    let p = &doc.properties;
    let invalid = |e: galleon_core::policy::PolicyError| ApiError::invalid(e.0);
    if let Some(r) = p.upgrade_policy.as_ref().and_then(|u| u.rolling_upgrade_policy.as_ref()) {
        galleon_core::policy::rolling(&crate::upgrade::settings(r)).map_err(invalid)?;
    }
    if let Some(r) = &p.automatic_repairs_policy
        && r.enabled == Some(true)
    {
        galleon_core::policy::repair_grace(r.grace_period.as_deref()).map_err(invalid)?;
    }
    let capacity = doc.sku.as_ref().and_then(|s| s.capacity).unwrap_or(0);
    if capacity > MAX_CAPACITY {
        return Err(ApiError::invalid(format!("A scale set holds at most {MAX_CAPACITY} instances, not {capacity}.")));
    }
    Ok(())
}

/// The model answers show: secrets removed.
fn public_doc(doc: &VirtualMachineScaleSet) -> VirtualMachineScaleSet {
    let mut d = doc.clone();
    if let Some(p) = d.properties.virtual_machine_profile.as_mut() {
        *p = model::public(p);
    }
    d
}

fn capacity(doc: &VirtualMachineScaleSet) -> u32 {
    doc.sku.as_ref().and_then(|s| s.capacity).unwrap_or(0)
}

pub fn put(app: &App, rg: &str, name: &str, req: &ApiRequest) -> ApiResult<Response> {
    check_name(NameKind::Resource, name)?;
    let body: VirtualMachineScaleSet = req.json()?;
    let sid = id(app, rg, name);
    let existing = app.store.read(|tx| {
        require_group(tx, &app.subscription, rg)?;
        Ok::<_, ApiError>(tx.get(&sid.to_string())?)
    })?;
    match existing {
        Some(_) if req.create_only() => {
            Err(ApiError::conflict("ResourceExists", format!("The scale set '{name}' already exists.")))
        }
        Some(row) => {
            let old: VirtualMachineScaleSet = row.parse()?;
            update(app, &row.id, old, body)
        }
        None => create(app, &sid, body),
    }
}

/// PATCH: a merge patch of the stored model, then as a PUT.
pub fn patch(app: &App, rg: &str, name: &str, req: &ApiRequest) -> ApiResult<Response> {
    let sid = id(app, rg, name);
    let row = app.store.read(|tx| require(tx, &sid, Kind::ScaleSet))?;
    let patch: serde_json::Value = req.json()?;
    let mut merged = row.doc.clone();
    crate::api::gallery::merge_patch(&mut merged, &patch);
    let body: VirtualMachineScaleSet = serde_json::from_value(merged).map_err(|e| {
        ApiError::bad_request("InvalidRequestContent", format!("The patched scale set is not valid: {e}"))
    })?;
    let old: VirtualMachineScaleSet = row.parse()?;
    update(app, &row.id, old, body)
}

fn create(app: &App, sid: &ResourceId, mut body: VirtualMachineScaleSet) -> ApiResult<Response> {
    let count = body.sku.as_ref().and_then(|s| s.capacity).unwrap_or(2);
    body.sku = Some(Sku { capacity: Some(count), ..body.sku.unwrap_or_default() });
    validate_policies(&body)?;
    let model = Model::of(&body, 1);
    model::validate(&model)?;
    let reference = model
        .image_reference()
        .ok_or_else(|| {
            ApiError::invalid(
                "A scale set needs an image: give --image (virtualMachineProfile.storageProfile.imageReference.id).",
            )
        })?
        .to_string();
    app.store.read(|tx| model::resolve_image(tx, &reference, &[]))?;
    crate::net::validate_membership(app, &body)?;
    let uid = uuid::Uuid::new_v4().to_string();
    model::save(app.home.root(), &uid, &model)?;
    let (set, op, ids, doc) = app.store.write(|tx| {
        let group = require_group(tx, &app.subscription, sid.resource_group.as_deref().unwrap_or_default())?;
        if tx.get(&sid.to_string())?.is_some() {
            return Err(ApiError::conflict(
                "ResourceExists",
                format!("The scale set '{}' already exists.", sid.name()),
            ));
        }
        let mut doc = body.clone();
        doc.id = Some(sid.to_string());
        doc.name = Some(sid.name().to_string());
        doc.kind = Some(TYPE.into());
        doc.location = Some(location(body.location.clone(), &group));
        doc.etag = Some("\"1\"".into());
        doc.properties.unique_id = Some(uid.clone());
        doc.properties.time_created = Some(clock::now_rfc3339());
        doc.properties.provisioning_state =
            Some(if count == 0 { ProvisioningState::Succeeded } else { ProvisioningState::Creating });
        doc.properties.upgrade_policy.get_or_insert_with(Default::default).mode.get_or_insert(UpgradeMode::Manual);
        doc.properties.overprovision.get_or_insert(false);
        doc.properties.single_placement_group.get_or_insert(true);
        let stored = public_doc(&doc);
        tx.insert(&new_row(Kind::ScaleSet, sid, to_value(&stored)?))?;
        let set = ScaleSet::of(&doc, &sid.to_string())?;
        tx.next(&set.generation_counter())?;
        let ids = fleet::next_ids(tx, &set, count as usize)?;
        let op = fleet::write_ahead(
            tx,
            &set,
            &Submission {
                action: Action::Create,
                ids: &ids,
                wait_healthy: false,
                reason: "created with the scale set".into(),
                owner: Owner::CreateScaleSet,
                operation: None,
                origin: crate::fleet::record::Origin::User,
            },
        )?;
        Ok((Arc::new(set), op, ids, stored))
    })?;
    fleet::spawn(app, &set, &ids);
    if ids.is_empty() {
        set.finish_if_done(app, &op);
    }
    app.net.sync(app);
    ops::accepted(app, &op, StatusCode::CREATED, Some(to_value(&doc)?))
}

/// Applies a new model to an existing scale set: generation, capacity, and what the upgrade mode does.
fn update(app: &App, id: &str, old: VirtualMachineScaleSet, mut body: VirtualMachineScaleSet) -> ApiResult<Response> {
    let set = Arc::new(ScaleSet::of(&old, id)?);
    if old.properties.provisioning_state == Some(ProvisioningState::Deleting) {
        return Err(ApiError::conflict(
            "OperationNotAllowed",
            format!("The scale set '{}' is being deleted.", set.name),
        ));
    }
    // What the PUT leaves out, it keeps (as ARM: az round-trips documents without secrets or image).
    let generation = set.generation(app)?;
    let current = model::load(app.home.root(), &set.uid, generation)?;
    let mut profile = body
        .properties
        .virtual_machine_profile
        .take()
        .unwrap_or_else(|| old.properties.virtual_machine_profile.clone().unwrap_or_default());
    let storage = profile.storage_profile.get_or_insert_with(Default::default);
    if storage.image_reference.as_ref().and_then(|r| r.id.as_ref()).is_none() {
        storage.image_reference = current.profile.storage_profile.as_ref().and_then(|s| s.image_reference.clone());
    }
    if let Some(r) = storage.image_reference.as_mut() {
        r.exact_version = None;
    }
    model::keep_secrets(&mut profile, &current.profile);
    body.properties.virtual_machine_profile = Some(profile);
    let mut sku = body.sku.take().unwrap_or_default();
    let old_sku = old.sku.clone().unwrap_or_default();
    sku.name = sku.name.or(old_sku.name);
    sku.tier = sku.tier.or(old_sku.tier);
    sku.capacity = sku.capacity.or(old_sku.capacity);
    body.sku = Some(sku);
    validate_policies(&body)?;
    crate::net::validate_membership(app, &body)?;

    let candidate = Model::of(&body, generation + 1);
    let changed = candidate.fingerprint() != current.fingerprint();
    if changed {
        app.store.read(|tx| crate::upgrade::check_model_change(tx, &set, &body, &candidate))?;
        model::validate(&candidate)?;
        let reference =
            candidate.image_reference().ok_or_else(|| ApiError::invalid("The model names no image."))?.to_string();
        let avoid = set.avoid(app)?;
        app.store.read(|tx| model::resolve_image(tx, &reference, &avoid))?;
        model::save(app.home.root(), &set.uid, &candidate)?;
    }
    let want = capacity(&body);
    let (doc, op, spawned) = app.store.write(|tx| {
        let row = require(tx, &set.id, Kind::ScaleSet)?;
        let mut doc = body.clone();
        doc.id = old.id.clone();
        doc.name = old.name.clone();
        doc.kind = old.kind.clone();
        doc.location = old.location.clone();
        doc.properties.unique_id = old.properties.unique_id.clone();
        doc.properties.time_created = old.properties.time_created.clone();
        doc.properties.provisioning_state = old.properties.provisioning_state;
        doc.properties.upgrade_policy.get_or_insert_with(Default::default).mode.get_or_insert(UpgradeMode::Manual);
        let etag = old.etag.as_deref().and_then(|e| e.trim_matches('"').parse::<u64>().ok()).unwrap_or(1) + 1;
        doc.etag = Some(format!("\"{etag}\""));
        if changed {
            tx.next(&set.generation_counter())?;
            decide::log(
                tx,
                &set,
                None,
                "model",
                &format!("model generation {} (instances now run an older model until upgraded)", generation + 1),
                None,
            )?;
        }
        let (op, spawned) = resize(tx, &set, &doc, want)?;
        let stored = public_doc(&doc);
        tx.upsert(&updated_row(&row, to_value(&stored)?))?;
        Ok::<_, ApiError>((stored, op, spawned))
    })?;
    fleet::spawn(app, &set, &spawned);
    app.net.sync(app);
    if changed {
        crate::upgrade::on_model_change(app, &set);
    }
    match op {
        Some(op) => ops::accepted(app, &op, StatusCode::OK, Some(to_value(&doc)?)),
        None => json(StatusCode::OK, &doc),
    }
}

/// Scale out (new instances get the current model) or in (`scaleInPolicy`, protected instances kept),
/// written ahead; returns the operation and the instances to start work on.
fn resize(
    tx: &Tx<'_>,
    set: &ScaleSet,
    doc: &VirtualMachineScaleSet,
    want: u32,
) -> ApiResult<(Option<String>, Vec<u32>)> {
    let records = set.records_in(tx)?;
    let staying: Vec<&InstanceRecord> =
        records.iter().filter(|r| !r.pending.as_ref().is_some_and(|p| p.action == Action::Delete)).collect();
    let have = staying.len() as u32;
    if want > have {
        let ids = fleet::next_ids(tx, set, (want - have) as usize)?;
        let op = fleet::write_ahead(
            tx,
            set,
            &Submission {
                action: Action::Create,
                ids: &ids,
                wait_healthy: false,
                reason: format!("scale-out from {have} to {want}"),
                owner: Owner::Instances,
                operation: None,
                origin: crate::fleet::record::Origin::User,
            },
        )?;
        return Ok((Some(op), ids));
    }
    if want < have {
        let rule = match doc.properties.scale_in_policy.as_ref().and_then(|p| p.rules.as_ref()).and_then(|r| r.first())
        {
            Some(ScaleInRule::OldestVm) => scale::ScaleInRule::OldestVm,
            Some(ScaleInRule::NewestVm) => scale::ScaleInRule::NewestVm,
            _ => scale::ScaleInRule::Default,
        };
        let candidates: Vec<scale::Candidate> = staying
            .iter()
            .filter(|r| r.pending.is_none())
            .map(|r| scale::Candidate {
                id: r.id,
                created_ms: r.created_ms,
                protected: r.protection.protect_from_scale_in,
            })
            .collect();
        let victims = scale::victims(&candidates, (have - want) as usize, rule);
        for r in staying.iter().filter(|r| r.protection.protect_from_scale_in) {
            decide::log(tx, set, Some(r.id), "scale-in", "skipped: protected from scale-in", None)?;
        }
        if victims.is_empty() {
            return Ok((None, vec![]));
        }
        let op = fleet::write_ahead(
            tx,
            set,
            &Submission {
                action: Action::Delete,
                ids: &victims,
                wait_healthy: false,
                reason: format!("scale-in from {have} to {want} ({rule:?} rule)"),
                owner: Owner::Instances,
                operation: None,
                origin: crate::fleet::record::Origin::User,
            },
        )?;
        return Ok((Some(op), victims));
    }
    Ok((None, vec![]))
}

pub fn get(app: &App, rg: &str, name: &str) -> ApiResult<Response> {
    let row = app.store.read(|tx| require(tx, &id(app, rg, name), Kind::ScaleSet))?;
    json(StatusCode::OK, &row.doc)
}

pub fn list_sets(app: &App, rg: Option<&str>) -> ApiResult<Response> {
    list(app.store.read(|tx| rows_in(tx, &app.subscription, rg, Kind::ScaleSet))?)
}

pub fn delete(app: &App, rg: &str, name: &str) -> ApiResult<Response> {
    let sid = id(app, rg, name);
    let found = app.store.write(|tx| {
        require_group(tx, &app.subscription, rg)?;
        let Some(row) = tx.get(&sid.to_string())? else { return Ok::<_, ApiError>(None) };
        let mut doc: VirtualMachineScaleSet = row.parse()?;
        let set = Arc::new(ScaleSet::of(&doc, &row.id)?);
        let ids: Vec<u32> = set.records_in(tx)?.iter().map(|r| r.id).collect();
        if let Some(busy) =
            set.records_in(tx)?.iter().find(|r| r.pending.as_ref().is_some_and(|p| p.action != Action::Delete))
        {
            let p = busy.pending.as_ref().map(|p| p.action.verb()).unwrap_or_default();
            return Err(ApiError::conflict(
                "OperationNotAllowed",
                format!("The scale set '{name}' cannot be deleted while instance {} is busy ({p}).", busy.id),
            ));
        }
        doc.properties.provisioning_state = Some(ProvisioningState::Deleting);
        tx.upsert(&updated_row(&row, to_value(&doc)?))?;
        let op = fleet::write_ahead(
            tx,
            &set,
            &Submission {
                action: Action::Delete,
                ids: &ids,
                wait_healthy: false,
                reason: "deleted with the scale set".into(),
                owner: Owner::DeleteScaleSet,
                operation: None,
                origin: crate::fleet::record::Origin::User,
            },
        )?;
        Ok(Some((set, op, ids)))
    })?;
    let Some((set, op, ids)) = found else {
        return Ok(axum::response::IntoResponse::into_response(StatusCode::NO_CONTENT));
    };
    fleet::spawn(app, &set, &ids);
    if ids.is_empty() {
        set.finish_if_done(app, &op);
    }
    ops::accepted(app, &op, StatusCode::ACCEPTED, None)
}

// ---- instances ----

fn seen_all(
    app: &App,
    rg: &str,
    name: &str,
    only: Option<u32>,
) -> ApiResult<(Arc<ScaleSet>, Vec<VirtualMachineScaleSetVm>)> {
    let sid = id(app, rg, name);
    let (set, doc, records, generation) = app.store.read(|tx| {
        let (set, doc) = ScaleSet::load(tx, &sid)?;
        let records = match only {
            Some(i) => vec![set.record_in(tx, i)?.ok_or(unknown(tx, &set, i)?)?],
            None => set.records_in(tx)?,
        };
        let generation = tx.counter(&set.generation_counter())? as u64;
        Ok::<_, ApiError>((set, doc, records, generation))
    })?;
    let health_source = app.net.has_health_source(app, &set);
    let vms = records
        .iter()
        .map(|rec| {
            let observed = app.runtime.observe(&set.key(rec.id));
            let health = app.net.health(app, &set, rec.id).unwrap_or(galleon_core::health::HealthState::Unknown);
            view::vm(&Seen {
                set: &set,
                location: doc.location.clone(),
                sku: doc.sku.clone(),
                generation,
                rec,
                observed: &observed,
                health,
                health_source,
                address: set.address(app, rec.id),
            })
        })
        .collect();
    Ok((set, vms))
}

fn unknown(tx: &Tx<'_>, set: &ScaleSet, id: u32) -> ApiResult<ApiError> {
    fleet::unknown_instance(tx, set, id)
}

pub fn list_vms(app: &App, rg: &str, name: &str) -> ApiResult<Response> {
    let (_, vms) = seen_all(app, rg, name, None)?;
    json(StatusCode::OK, &galleon_api::List::of(vms))
}

fn parse_instance(s: &str) -> ApiResult<u32> {
    s.parse()
        .map_err(|_| ApiError::invalid(format!("'{s}' is not an instance id (instance ids are numbers: 0, 1, 2, …).")))
}

pub fn get_vm(app: &App, rg: &str, name: &str, instance: &str, req: &ApiRequest) -> ApiResult<Response> {
    let n = parse_instance(instance)?;
    let (_, mut vms) = seen_all(app, rg, name, Some(n))?;
    let mut vm = vms.pop().ok_or_else(|| ApiError::internal("no instance document"))?;
    if req.query.get("$expand").is_some_and(|e| e.eq_ignore_ascii_case("instanceView")) {
        vm.properties.instance_view = Some(build_instance_view(app, rg, name, n)?);
    }
    json(StatusCode::OK, &vm)
}

fn build_instance_view(app: &App, rg: &str, name: &str, n: u32) -> ApiResult<galleon_api::vmss::VmInstanceView> {
    let sid = id(app, rg, name);
    let (set, doc, rec, generation, decisions) = app.store.read(|tx| {
        let (set, doc) = ScaleSet::load(tx, &sid)?;
        let rec = set.record_in(tx, n)?.ok_or(unknown(tx, &set, n)?)?;
        let generation = tx.counter(&set.generation_counter())? as u64;
        let decisions = decide::recent(tx, &set, n, 20)?;
        Ok::<_, ApiError>((set, doc, rec, generation, decisions))
    })?;
    let observed = app.runtime.observe(&set.key(n));
    let health = app.net.health(app, &set, n).unwrap_or(galleon_core::health::HealthState::Unknown);
    let seen = Seen {
        set: &set,
        location: doc.location.clone(),
        sku: doc.sku.clone(),
        generation,
        rec: &rec,
        observed: &observed,
        health,
        health_source: app.net.has_health_source(app, &set),
        address: set.address(app, n),
    };
    Ok(view::instance_view(&seen, decisions))
}

pub fn instance_view(app: &App, rg: &str, name: &str, instance: &str) -> ApiResult<Response> {
    let n = parse_instance(instance)?;
    json(StatusCode::OK, &build_instance_view(app, rg, name, n)?)
}

/// PUT of an instance: only its protection policy may change.
pub fn put_vm(app: &App, rg: &str, name: &str, instance: &str, req: &ApiRequest) -> ApiResult<Response> {
    let n = parse_instance(instance)?;
    let body: VirtualMachineScaleSetVm = req.json()?;
    let sid = id(app, rg, name);
    app.store.write(|tx| {
        let (set, _) = ScaleSet::load(tx, &sid)?;
        let mut rec = set.record_in(tx, n)?.ok_or(unknown(tx, &set, n)?)?;
        if let Some(p) = body.properties.protection_policy.clone() {
            rec.protection = p;
            set.put_in(tx, &rec)?;
        }
        Ok::<_, ApiError>(())
    })?;
    get_vm(app, rg, name, instance, req)
}

// ---- instance actions ----

pub fn act(app: &App, rg: &str, name: &str, verb: &str, req: &ApiRequest) -> ApiResult<Response> {
    let body: InstanceIds = req.json()?;
    let sid = id(app, rg, name);
    let (action, wait_healthy) = match verb {
        "manualupgrade" => (Action::Upgrade, true),
        "reimage" | "reimageall" => (Action::Reimage, true),
        "restart" => (Action::Restart, true),
        "poweroff" => (Action::Stop, false),
        "start" => (Action::Start, true),
        "deallocate" => (Action::Deallocate, false),
        "delete" => (Action::Delete, false),
        other => return Err(ApiError::bad_request("InvalidAction", format!("'{other}' is not an instance action."))),
    };
    let (set, op, ids) = app.store.write(|tx| {
        let (set, doc) = ScaleSet::load(tx, &sid)?;
        if doc.properties.provisioning_state == Some(ProvisioningState::Deleting) {
            return Err(ApiError::conflict("OperationNotAllowed", format!("The scale set '{name}' is being deleted.")));
        }
        let records = set.records_in(tx)?;
        let generation = tx.counter(&set.generation_counter())? as u64;
        // Named instances are acted on as asked; "all" leaves out those protected from scale-set actions.
        let (named, all) = match body.instance_ids.as_ref().filter(|v| !v.is_empty() && !v.iter().any(|i| i == "*")) {
            Some(list) => {
                let mut ids = vec![];
                for s in list {
                    let n = parse_instance(s)?;
                    if !records.iter().any(|r| r.id == n) {
                        return Err(unknown(tx, &set, n)?);
                    }
                    if !ids.contains(&n) {
                        ids.push(n);
                    }
                }
                (ids, false)
            }
            None => (records.iter().map(|r| r.id).collect(), true),
        };
        let mut ids = vec![];
        for n in named {
            let rec = records.iter().find(|r| r.id == n).ok_or_else(|| ApiError::internal("vanished"))?;
            let skip = if all && rec.protection.protect_from_scale_set_actions && action != Action::Delete {
                Some("skipped: protected from scale-set actions")
            } else {
                match (&action, rec.power) {
                    (Action::Upgrade, _)
                        if rec.generation == generation && rec.image.is_some() && rec.pending.is_none() =>
                    {
                        Some("skipped: it already runs the latest model")
                    }
                    (Action::Start, Power::Running) if rec.pending.is_none() => Some("skipped: it is already running"),
                    (Action::Stop, Power::Stopped | Power::Deallocated) if rec.pending.is_none() => {
                        Some("skipped: it is already stopped")
                    }
                    (Action::Deallocate, Power::Deallocated) if rec.pending.is_none() => {
                        Some("skipped: it is already deallocated")
                    }
                    (Action::Restart, Power::Stopped | Power::Deallocated) if rec.pending.is_none() => {
                        return Err(ApiError::conflict(
                            "OperationNotAllowed",
                            format!("Instance {n} is not running; start it instead of restarting it."),
                        ));
                    }
                    _ => None,
                }
            };
            match skip {
                Some(why) => decide::log(tx, &set, Some(n), action.verb(), why, None)?,
                None => ids.push(n),
            }
        }
        let reason = match &action {
            Action::Upgrade => format!("update-instances: brought to model generation {generation}"),
            other => format!("{} requested", other.verb()),
        };
        let op = fleet::write_ahead(
            tx,
            &set,
            &Submission {
                action: action.clone(),
                ids: &ids,
                wait_healthy,
                reason,
                owner: Owner::Instances,
                operation: None,
                origin: crate::fleet::record::Origin::User,
            },
        )?;
        if action == Action::Delete && !ids.is_empty() {
            // delete-instances lowers the capacity, as in Azure.
            let row = require(tx, &set.id, Kind::ScaleSet)?;
            let mut doc: VirtualMachineScaleSet = row.parse()?;
            let sku = doc.sku.get_or_insert_with(Default::default);
            sku.capacity = Some(sku.capacity.unwrap_or(0).saturating_sub(ids.len() as u32));
            tx.upsert(&updated_row(&row, to_value(&doc)?))?;
        }
        Ok::<_, ApiError>((set, op, ids))
    })?;
    fleet::spawn(app, &set, &ids);
    if ids.is_empty() {
        set.finish_if_done(app, &op);
    }
    ops::accepted(app, &op, StatusCode::ACCEPTED, None)
}

// ---- extensions ----

fn extension_doc(set_id: &ResourceId, e: &Extension) -> Extension {
    let mut e = e.clone();
    e.properties.protected_settings = None;
    e.id = Some(set_id.child("extensions", e.name.as_deref().unwrap_or_default()).to_string());
    e.kind = Some(format!("{TYPE}/extensions"));
    e.properties.provisioning_state = Some(ProvisioningState::Succeeded);
    e
}

/// Changes the model's extensions, as a PUT of the scale set would (a new generation).
fn edit_extensions(
    app: &App,
    rg: &str,
    name: &str,
    edit: impl FnOnce(&mut Vec<Extension>) -> ApiResult<()>,
) -> ApiResult<Response> {
    let sid = id(app, rg, name);
    let row = app.store.read(|tx| require(tx, &sid, Kind::ScaleSet))?;
    let old: VirtualMachineScaleSet = row.parse()?;
    let set = ScaleSet::of(&old, &row.id)?;
    let current = model::load(app.home.root(), &set.uid, set.generation(app)?)?;
    // Start from the full current model (with its secrets), not the public document.
    let mut body = old.clone();
    let mut profile = current.profile.clone();
    let exts =
        profile.extension_profile.get_or_insert_with(ExtensionProfile::default).extensions.get_or_insert_with(Vec::new);
    edit(exts)?;
    body.properties.virtual_machine_profile = Some(profile);
    update(app, &row.id, old, body)
}

pub fn put_extension(app: &App, rg: &str, name: &str, ext: &str, req: &ApiRequest) -> ApiResult<Response> {
    let mut body: Extension = req.json()?;
    body.name = Some(ext.to_string());
    body.id = None;
    body.kind = None;
    body.properties.provisioning_state = None;
    let sid = id(app, rg, name);
    let keep = body.clone();
    edit_extensions(app, rg, name, move |exts| {
        match exts.iter_mut().find(|e| e.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(ext))) {
            Some(e) => {
                let old_secret = e.properties.protected_settings.take();
                *e = keep;
                if e.properties.protected_settings.is_none() {
                    e.properties.protected_settings = old_secret;
                }
            }
            None => exts.push(keep),
        }
        Ok(())
    })?;
    json(StatusCode::OK, &extension_doc(&sid, &body))
}

pub fn get_extension(app: &App, rg: &str, name: &str, ext: &str) -> ApiResult<Response> {
    let sid = id(app, rg, name);
    let doc: VirtualMachineScaleSet = app.store.read(|tx| require(tx, &sid, Kind::ScaleSet))?.parse()?;
    let found =
        extensions_of(&doc).into_iter().find(|e| e.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(ext)));
    let e = found
        .ok_or_else(|| ApiError::resource_not_found(&format!("{TYPE}/extensions"), &format!("{name}/{ext}"), rg))?;
    json(StatusCode::OK, &extension_doc(&sid, &e))
}

fn extensions_of(doc: &VirtualMachineScaleSet) -> Vec<Extension> {
    doc.properties
        .virtual_machine_profile
        .as_ref()
        .and_then(|p| p.extension_profile.as_ref())
        .and_then(|e| e.extensions.clone())
        .unwrap_or_default()
}

pub fn list_extensions(app: &App, rg: &str, name: &str) -> ApiResult<Response> {
    let sid = id(app, rg, name);
    let doc: VirtualMachineScaleSet = app.store.read(|tx| require(tx, &sid, Kind::ScaleSet))?.parse()?;
    let all: Vec<Extension> = extensions_of(&doc).iter().map(|e| extension_doc(&sid, e)).collect();
    json(StatusCode::OK, &galleon_api::List::of(all))
}

pub fn delete_extension(app: &App, rg: &str, name: &str, ext: &str) -> ApiResult<Response> {
    edit_extensions(app, rg, name, |exts| {
        let before = exts.len();
        exts.retain(|e| !e.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(ext)));
        if exts.len() == before {
            return Err(ApiError::not_found(
                "ResourceNotFound",
                format!("The scale set '{name}' has no extension '{ext}'."),
            ));
        }
        Ok(())
    })?;
    Ok(axum::response::IntoResponse::into_response(StatusCode::OK))
}
