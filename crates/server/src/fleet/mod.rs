//! The fleet: scale sets' instances and the actions that change them.
//!
//! The database is the source of truth and the lock: an action is written into its instance's record
//! (with its operation) before anything happens, a busy instance refuses a second one, and the task
//! that carries an action out (`actions::run`) records each phase as it goes. On start-up `resume`
//! picks up every recorded action and re-adopts running instances.

pub mod actions;
pub mod decide;
pub mod model;
pub mod record;
pub mod view;

use std::sync::Arc;

use galleon_api::ProvisioningState;
use galleon_api::vmss::{ProtectionPolicy, VirtualMachineScaleSet};
use galleon_core::ids::ResourceId;
use galleon_core::version::Version;
use galleon_runtime::{InstanceKey, Phase as RtPhase};
use galleon_store::{Kind, Tx};

use crate::App;
use crate::clock;
use crate::error::{ApiError, ApiResult};
use crate::ops::{self, Owner};
use record::{Action, InstanceRecord, Origin, Pending, Phase, Power};

/// A scale set as the fleet addresses it.
#[derive(Clone, Debug)]
pub struct ScaleSet {
    /// The lower-cased id (the store's key).
    pub key: String,
    pub id: ResourceId,
    /// The stable unique id (`uniqueId`): names its directories and models.
    pub uid: String,
    pub name: String,
}

impl ScaleSet {
    pub fn of(doc: &VirtualMachineScaleSet, id: &str) -> ApiResult<ScaleSet> {
        let rid = ResourceId::parse(id).map_err(ApiError::internal)?;
        let uid =
            doc.properties.unique_id.clone().ok_or_else(|| ApiError::internal("a scale set without a uniqueId"))?;
        Ok(ScaleSet { key: id.to_ascii_lowercase(), name: rid.name().to_string(), id: rid, uid })
    }

    /// Loads the scale set with this id.
    pub fn load(tx: &Tx<'_>, id: &ResourceId) -> ApiResult<(Arc<ScaleSet>, VirtualMachineScaleSet)> {
        let row = crate::resource::require(tx, id, Kind::ScaleSet)?;
        let doc: VirtualMachineScaleSet = row.parse()?;
        Ok((Arc::new(ScaleSet::of(&doc, &row.id)?), doc))
    }

    pub fn key(&self, id: u32) -> InstanceKey {
        InstanceKey::new(self.uid.clone(), id)
    }

    /// The instance's ARM id: how the data plane and the decision log name it.
    pub fn instance_id(&self, id: u32) -> String {
        self.id.child("virtualMachines", &id.to_string()).to_string()
    }

    pub fn backend_key(&self, id: u32) -> String {
        self.instance_id(id)
    }

    fn counter(&self) -> String {
        format!("instances/{}", self.uid)
    }

    pub fn generation_counter(&self) -> String {
        format!("generation/{}", self.uid)
    }

    /// The current model generation.
    pub fn generation(&self, app: &App) -> ApiResult<u64> {
        Ok(app.store.read(|tx| tx.counter(&self.generation_counter()))? as u64)
    }

    /// Versions that faulted on this scale set and must not be tried again (CONTRACT §6).
    pub fn avoid(&self, app: &App) -> ApiResult<Vec<Version>> {
        app.store.read(|tx| self.avoid_in(tx))
    }

    pub fn avoid_in(&self, tx: &Tx<'_>) -> ApiResult<Vec<Version>> {
        let raw = tx.meta(&format!("faulted/{}", self.uid))?.unwrap_or_default();
        Ok(raw.split(',').filter_map(|v| v.parse().ok()).collect())
    }

    pub fn record_in(&self, tx: &Tx<'_>, id: u32) -> ApiResult<Option<InstanceRecord>> {
        tx.instance(&self.key, id)?.map(|v| serde_json::from_value(v).map_err(ApiError::internal)).transpose()
    }

    pub fn record(&self, app: &App, id: u32) -> Option<InstanceRecord> {
        app.store.read(|tx| self.record_in(tx, id)).ok().flatten()
    }

    pub fn records_in(&self, tx: &Tx<'_>) -> ApiResult<Vec<InstanceRecord>> {
        tx.instances(&self.key)?
            .into_iter()
            .map(|(_, v)| serde_json::from_value(v).map_err(ApiError::internal))
            .collect()
    }

    pub fn records(&self, app: &App) -> ApiResult<Vec<InstanceRecord>> {
        app.store.read(|tx| self.records_in(tx))
    }

    pub fn put_in(&self, tx: &Tx<'_>, rec: &InstanceRecord) -> ApiResult<()> {
        tx.put_instance(&self.key, rec.id, &rec.to_value())?;
        Ok(())
    }

    pub fn save_phase(&self, app: &App, id: u32, phase: Phase) -> ApiResult<()> {
        app.store.write(|tx| {
            let mut rec =
                self.record_in(tx, id)?.ok_or_else(|| ApiError::internal(format!("instance {id} vanished")))?;
            if let Some(p) = rec.pending.as_mut() {
                p.phase = phase;
            }
            self.put_in(tx, &rec)
        })
    }

    /// Writes a record, moving its pending action to `phase` in the same write.
    pub fn save_record(&self, app: &App, rec: &InstanceRecord, phase: Option<Phase>) -> ApiResult<()> {
        let mut rec = rec.clone();
        if let (Some(p), Some(phase)) = (rec.pending.as_mut(), phase) {
            p.phase = phase;
        }
        app.store.write(|tx| self.put_in(tx, &rec))
    }

    pub fn mark_provisioned(&self, app: &App, id: u32) -> ApiResult<()> {
        app.store.write(|tx| {
            let Some(mut rec) = self.record_in(tx, id)? else { return Ok(()) };
            rec.provisioning = ProvisioningState::Succeeded;
            rec.error = None;
            self.put_in(tx, &rec)
        })?;
        app.events.notify_fleet_changed();
        Ok(())
    }

    fn owner(&self, id: u32) -> String {
        format!("vm:{}/{id}", self.uid)
    }

    /// The instance's private IP, allocating one from the home's block if it has none (created, deallocated).
    pub fn ensure_address(&self, app: &App, id: u32) -> ApiResult<String> {
        let (first, last) = (app.block.first(), app.block.last());
        let a = app.store.write(|tx| tx.allocate_address(&self.owner(id), first, last).map_err(ApiError::from))?;
        a.map(|a| a.to_string()).ok_or_else(|| {
            ApiError::conflict("AddressSpaceExhausted", "The home's loopback block has no free address.")
        })
    }

    pub fn address(&self, app: &App, id: u32) -> Option<String> {
        app.store.read(|tx| tx.address_of(&self.owner(id))).ok().flatten().map(|a| a.to_string())
    }

    pub fn release_address(&self, app: &App, id: u32) -> ApiResult<()> {
        app.store.write(|tx| tx.release_address(&self.owner(id)).map_err(ApiError::from))
    }

    /// Ends an instance's action: it is now `power`; its operation learns it finished.
    pub fn settle(&self, app: &App, id: u32, power: Power, error: Option<String>) -> ApiResult<()> {
        let op = app.store.write(|tx| {
            let Some(mut rec) = self.record_in(tx, id)? else { return Ok::<_, ApiError>(None) };
            let Some(pending) = rec.pending.take() else { return Ok(None) };
            rec.power = power;
            if error.is_none() && rec.provisioning != ProvisioningState::Failed {
                rec.provisioning = ProvisioningState::Succeeded;
            }
            if let Some(e) = &error {
                rec.error = Some(e.clone());
            }
            self.put_in(tx, &rec)?;
            decide::log(tx, self, Some(id), pending.action.verb(), &pending.reason, Some(&pending.operation))?;
            // `ms` is read by `cargo xtask bench upgrade`: the time an action took, out of service to back.
            let ms = clock::now_ms() - pending.started_ms;
            tracing::info!(set = %self.name, instance = id, action = pending.action.verb(), ms, "action done");
            Ok(Some(pending.operation))
        })?;
        if let Some(op) = op {
            self.finish_if_done(app, &op);
        }
        app.net.sync(app);
        app.events.notify_fleet_changed();
        Ok(())
    }

    /// Deletes an instance's record once its processes and disks are gone.
    pub fn remove(&self, app: &App, id: u32) -> ApiResult<()> {
        let op = app.store.write(|tx| {
            let rec = self.record_in(tx, id)?;
            tx.delete_instance(&self.key, id)?;
            tx.release_address(&self.owner(id))?;
            let pending = rec.and_then(|r| r.pending);
            if let Some(p) = &pending {
                decide::log(tx, self, Some(id), "delete", &p.reason, Some(&p.operation))?;
            }
            Ok::<_, ApiError>(pending.map(|p| p.operation))
        })?;
        if let Some(op) = op {
            self.finish_if_done(app, &op);
        }
        app.net.sync(app);
        app.events.notify_fleet_changed();
        Ok(())
    }

    /// Finishes an instance operation when no instance still works on it.
    pub fn finish_if_done(&self, app: &App, op: &str) {
        let result = app.store.write(|tx| {
            let Some(o) = ops::get(tx, op)? else { return Ok::<_, ApiError>(()) };
            if o.owner == Owner::Upgrade || o.status.status.is_terminal() {
                return Ok(());
            }
            let busy = self.records_in(tx)?.iter().any(|r| r.pending.as_ref().is_some_and(|p| p.operation == op));
            if busy {
                return Ok(());
            }
            let done = ops::finish(tx, op, None, false)?;
            if let Some(done) = done {
                self.after_operation(tx, &done)?;
            }
            Ok(())
        });
        if let Err(e) = result {
            tracing::error!("cannot finish operation {op}: {}", e.message);
        }
        if let Ok(true) = app.store.read(|tx| Ok::<_, ApiError>(tx.get(&self.key)?.is_none())) {
            model::forget(app.home.root(), &self.uid);
        }
    }

    /// What follows an operation on the scale set itself: its provisioning state, or its removal.
    fn after_operation(&self, tx: &Tx<'_>, op: &ops::Operation) -> ApiResult<()> {
        match op.owner {
            Owner::CreateScaleSet => {
                if let Some(row) = tx.get(&self.key)? {
                    let mut doc: VirtualMachineScaleSet = row.parse()?;
                    doc.properties.provisioning_state = Some(match op.status.status {
                        galleon_api::OperationState::Succeeded => ProvisioningState::Succeeded,
                        _ => ProvisioningState::Failed,
                    });
                    tx.upsert(&crate::resource::updated_row(
                        &row,
                        serde_json::to_value(&doc).map_err(ApiError::internal)?,
                    ))?;
                }
            }
            Owner::DeleteScaleSet => {
                if self.records_in(tx)?.is_empty() {
                    tx.delete(&self.key)?;
                    tx.forget_scale_set(&self.key)?;
                    tx.forget_upgrades(&self.key)?;
                }
            }
            Owner::Instances | Owner::Upgrade | Owner::Build | Owner::DeleteGroup => {}
        }
        Ok(())
    }
}

/// A request to act on instances, checked and written ahead in one transaction.
pub struct Submission<'a> {
    pub action: Action,
    pub ids: &'a [u32],
    pub wait_healthy: bool,
    pub reason: String,
    pub owner: Owner,
    /// An operation to join instead of starting one (a rolling upgrade's batches).
    pub operation: Option<String>,
    pub origin: Origin,
}

/// Records the action on each instance (refusing busy ones) and its operation; returns the operation.
pub fn write_ahead(tx: &Tx<'_>, set: &ScaleSet, s: &Submission<'_>) -> ApiResult<String> {
    let op = match &s.operation {
        Some(op) => op.clone(),
        None => ops::start(tx, &set.key, s.owner)?,
    };
    let now = clock::now_ms();
    for id in s.ids {
        let mut rec = match set.record_in(tx, *id)? {
            Some(r) => r,
            None if s.action == Action::Create => new_record(*id, now),
            None => return Err(unknown_instance(tx, set, *id)?),
        };
        if let Some(p) = &rec.pending {
            return Err(ApiError::conflict(
                "OperationNotAllowed",
                format!(
                    "Instance {id} of '{}' is busy: {} in progress (operation {}). Wait for it to finish.",
                    set.name,
                    p.action.verb(),
                    p.operation
                ),
            ));
        }
        rec.provisioning = match s.action {
            Action::Create => ProvisioningState::Creating,
            Action::Delete => ProvisioningState::Deleting,
            _ if rec.provisioning == ProvisioningState::Failed
                && !s.action.remakes_os_disk()
                && s.action != Action::Restart =>
            {
                ProvisioningState::Failed
            }
            _ => ProvisioningState::Updating,
        };
        rec.pending = Some(Pending {
            operation: op.clone(),
            action: s.action.clone(),
            phase: Phase::Begin,
            started_ms: now,
            wait_healthy: s.wait_healthy && s.action.ends_running(),
            reason: s.reason.clone(),
            origin: s.origin,
        });
        set.put_in(tx, &rec)?;
    }
    Ok(op)
}

fn new_record(id: u32, now: i64) -> InstanceRecord {
    InstanceRecord {
        id,
        vm_id: uuid::Uuid::new_v4().to_string(),
        created_ms: now,
        generation: 0,
        image: None,
        previous_image: None,
        previous_generation: None,
        power: Power::Running,
        provisioning: ProvisioningState::Creating,
        error: None,
        protection: ProtectionPolicy::default(),
        data_disks: vec![],
        boot: 0,
        started_ms: None,
        pending: None,
    }
}

/// The clear answer for an instance id that is not there: never was, or was deleted (ids are not reused).
pub fn unknown_instance(tx: &Tx<'_>, set: &ScaleSet, id: u32) -> ApiResult<ApiError> {
    let issued = tx.counter(&set.counter())?;
    let existing: Vec<String> = set.records_in(tx)?.iter().map(|r| r.id.to_string()).collect();
    let list = if existing.is_empty() { "none".to_string() } else { existing.join(", ") };
    let msg = if i64::from(id) < issued {
        format!("Instance {id} of '{}' was deleted; instance ids are never reused (instances: {list}).", set.name)
    } else {
        format!("Instance {id} of '{}' does not exist (instances: {list}).", set.name)
    };
    Ok(ApiError::not_found("InstanceNotFound", msg))
}

/// Hands out the next instance ids (0, 1, 2, …, never reused).
pub fn next_ids(tx: &Tx<'_>, set: &ScaleSet, n: usize) -> ApiResult<Vec<u32>> {
    (0..n).map(|_| u32::try_from(tx.next(&set.counter())? - 1).map_err(ApiError::internal)).collect()
}

/// Starts the tasks that carry out the recorded actions of these instances.
pub fn spawn(app: &App, set: &Arc<ScaleSet>, ids: &[u32]) {
    for id in ids {
        let (task_app, set, id) = (app.clone(), set.clone(), *id);
        app.tasks.spawn(async move { actions::run(task_app, set, id).await });
    }
}

/// After a restart: resume every recorded action, re-adopt running instances, start the ones that died
/// while the control plane was away, and finish operations whose work is done.
pub async fn resume(app: &App) -> ApiResult<()> {
    let sets: Vec<(Arc<ScaleSet>, VirtualMachineScaleSet)> = app.store.read(|tx| {
        tx.all(Kind::ScaleSet)?
            .into_iter()
            .map(|row| {
                let doc: VirtualMachineScaleSet = row.parse()?;
                Ok((Arc::new(ScaleSet::of(&doc, &row.id)?), doc))
            })
            .collect::<ApiResult<Vec<_>>>()
    })?;
    for (set, _) in &sets {
        let records = set.records(app)?;
        let mut resumed = vec![];
        let mut dead = vec![];
        for rec in &records {
            if rec.pending.is_some() {
                resumed.push(rec.id);
            } else if rec.power == Power::Running {
                let key = set.key(rec.id);
                let app2 = app.clone();
                let observed = tokio::task::spawn_blocking(move || app2.runtime.observe(&key))
                    .await
                    .map_err(ApiError::internal)?;
                if matches!(observed.phase, RtPhase::Stopped | RtPhase::Gone) {
                    dead.push(rec.id);
                }
            }
        }
        if !resumed.is_empty() {
            tracing::info!("{}: resuming the actions of instances {resumed:?}", set.name);
            spawn(app, set, &resumed);
        }
        if !dead.is_empty() {
            tracing::warn!(
                "{}: instances {dead:?} were not running when the control plane started; starting them",
                set.name
            );
            let s = Submission {
                action: Action::Restart,
                ids: &dead,
                wait_healthy: false,
                reason: "started again: it was not running when the control plane started".into(),
                owner: Owner::Instances,
                operation: None,
                origin: Origin::User,
            };
            app.store.write(|tx| write_ahead(tx, set, &s))?;
            spawn(app, set, &dead);
        }
    }
    // Operations whose every part ended before the restart finish now.
    let open = app.store.read(|tx| Ok::<_, ApiError>(tx.operations_in_progress()?))?;
    for (id, doc) in open {
        let Ok(op) = serde_json::from_value::<ops::Operation>(doc) else { continue };
        if matches!(op.owner, Owner::Upgrade | Owner::Build | Owner::DeleteGroup) {
            continue;
        }
        if let Some((set, _)) = sets.iter().find(|(s, _)| s.key == op.target) {
            set.finish_if_done(app, &id);
        } else {
            app.store.write(|tx| ops::finish(tx, &id, None, false).map(|_| ()))?;
        }
    }
    Ok(())
}
