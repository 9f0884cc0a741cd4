//! Carrying out one instance action, phase by phase (CONTRACT §4, §7):
//! out of service and drained → stopped → fresh OS disk (if the action makes one) → started →
//! provisioned (CustomScript) → back in service → healthy (when the caller waits for it).
//!
//! Each phase is recorded before the next starts. A control plane killed half-way resumes from the
//! recorded phase: a disk already made is not made again, an instance already started is not started
//! again — no instance is upgraded twice, none is skipped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use galleon_api::{ErrorDetail, ProvisioningState};
use galleon_core::health::HealthState;
use galleon_runtime::{CustomScript, ImageSource, LaunchSpec, Phase as RtPhase};

use crate::clock;
use crate::error::{ApiError, ApiResult};
use crate::fleet::model::{self, CUSTOM_SCRIPT, Model};
use crate::fleet::record::{Action, DataDiskRecord, ImageRef, InstanceRecord, Phase, Power};
use crate::fleet::{ScaleSet, decide};
use crate::ops;
use crate::{App, blocking};

/// How long provisioning (downloads and the CustomScript) may take before the instance is failed.
const PROVISIONING_TIMEOUT: Duration = Duration::from_secs(600);

/// An image in the store, as the runtime's `ImageSource`.
struct StoredImage {
    app: App,
    image: ImageRef,
}

impl ImageSource for StoredImage {
    fn materialize(&self, dest: &std::path::Path) -> Result<(), String> {
        // Shared: garbage collection waits until the copy is done.
        let _shared = self.app.image_lock.read().unwrap_or_else(|p| p.into_inner());
        let digest = self.image.digest.parse().map_err(|e| format!("{e}"))?;
        self.app.images.materialize(&digest, dest).map_err(|e| e.to_string())
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.image.version_label(), self.image.digest)
    }
}

/// Runs the pending action of instance `id` to its end; safe to call again after a crash.
pub async fn run(app: App, set: Arc<ScaleSet>, id: u32) {
    loop {
        // A shutdown stops actions between phases; the recorded phase resumes at the next `serve`.
        if app.shutdown.is_cancelled() {
            return;
        }
        let Some(rec) = set.record(&app, id) else { return };
        let Some(pending) = rec.pending.clone() else { return };
        let step = step(&app, &set, rec, pending.phase).await;
        match step {
            Ok(true) => continue,
            Ok(false) => return,
            Err(e) => {
                fail(&app, &set, id, &e);
                return;
            }
        }
    }
}

/// Does the work of one phase; `Ok(true)` to go on with the next.
async fn step(app: &App, set: &Arc<ScaleSet>, mut rec: InstanceRecord, phase: Phase) -> ApiResult<bool> {
    let Some(pending) = rec.pending.clone() else { return Ok(false) };
    let key = set.key(rec.id);
    match phase {
        Phase::Begin => {
            // Out of service first (the data plane stops sending it anything new), then drained.
            app.net.sync(app);
            app.net.drain(app, &set.backend_key(rec.id)).await;
            set.save_phase(app, rec.id, Phase::Drained)?;
        }
        Phase::Drained => {
            blocking(app, move |app| app.runtime.stop(&key).map_err(runtime_error)).await?;
            if pending.action == Action::Delete {
                let key = set.key(rec.id);
                blocking(app, move |app| app.runtime.delete(&key).map_err(runtime_error)).await?;
                set.remove(app, rec.id)?;
                return Ok(false);
            }
            set.save_phase(app, rec.id, Phase::Stopped)?;
        }
        Phase::Stopped => {
            match &pending.action {
                Action::Stop => return set.settle(app, rec.id, Power::Stopped, None).map(|_| false),
                Action::Deallocate => {
                    set.release_address(app, rec.id)?;
                    return set.settle(app, rec.id, Power::Deallocated, None).map(|_| false);
                }
                a if a.remakes_os_disk() => {
                    let (model, image) = target(app, set, &rec, a)?;
                    let luns: Vec<u32> = model.data_luns().iter().map(|(l, _)| *l).collect();
                    let source = StoredImage { app: app.clone(), image: image.clone() };
                    blocking(app, move |app| {
                        app.runtime.make_data_disks(&key, &luns).map_err(runtime_error)?;
                        app.runtime.make_os_disk(&key, &source).map_err(runtime_error)
                    })
                    .await?;
                    // Record what the disk now holds in the same write as the phase.
                    if matches!(a, Action::Upgrade | Action::Create | Action::OsUpgrade { .. })
                        && rec.image.as_ref() != Some(&image)
                    {
                        rec.previous_image = rec.image.take();
                        rec.previous_generation = Some(rec.generation);
                    }
                    rec.generation = match a {
                        Action::Rollback { .. } => rec.previous_generation.unwrap_or(rec.generation),
                        // An OS upgrade to the current model's own image, on a model that differs from the
                        // current one only in its image, leaves the instance on the current model.
                        Action::OsUpgrade { to } => {
                            promoted_generation(app, set, &model, to).unwrap_or(model.generation)
                        }
                        _ => model.generation,
                    };
                    rec.image = Some(image);
                    rec.data_disks =
                        model.data_luns().into_iter().map(|(lun, size_gb)| DataDiskRecord { lun, size_gb }).collect();
                    rec.error = None;
                    set.save_record(app, &rec, Some(Phase::DiskReady))?;
                }
                _ => set.save_phase(app, rec.id, Phase::DiskReady)?,
            }
        }
        Phase::DiskReady => {
            let observed = {
                let key = key.clone();
                blocking(app, move |app| Ok(app.runtime.observe(&key))).await?
            };
            // Started before a crash: do not start twice.
            if !matches!(observed.phase, RtPhase::Stopped | RtPhase::Gone) {
                set.save_phase(app, rec.id, Phase::Started)?;
                return Ok(true);
            }
            let address = set.ensure_address(app, rec.id)?;
            let model = model::load(app.home.root(), &set.uid, rec.generation)?;
            let image =
                rec.image.clone().ok_or_else(|| ApiError::internal(format!("instance {} has no OS disk", rec.id)))?;
            let spec = launch_spec(app, set, &rec, &model, &image, &address)?;
            blocking(app, move |app| {
                if observed.phase == RtPhase::Gone {
                    app.runtime.stop(&key).map_err(runtime_error)?;
                }
                app.runtime.start(&key, &spec).map_err(runtime_error)
            })
            .await?;
            rec.boot += 1;
            rec.started_ms = Some(clock::now_ms());
            rec.power = Power::Running;
            set.save_record(app, &rec, Some(Phase::Started))?;
        }
        Phase::Started => {
            let key2 = key.clone();
            let deadline = tokio::time::Instant::now() + PROVISIONING_TIMEOUT;
            let observed = loop {
                let k = key2.clone();
                let o = blocking(app, move |app| Ok(app.runtime.observe(&k))).await?;
                match o.phase {
                    RtPhase::Running
                    | RtPhase::BackingOff
                    | RtPhase::ProvisioningFailed
                    | RtPhase::Gone
                    | RtPhase::Stopped => break o,
                    _ if tokio::time::Instant::now() > deadline => {
                        return Err(ApiError::conflict(
                            "ProvisioningTimedOut",
                            format!(
                                "instance {} was still provisioning after {} s",
                                rec.id,
                                PROVISIONING_TIMEOUT.as_secs()
                            ),
                        ));
                    }
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            if observed.phase == RtPhase::ProvisioningFailed {
                let script = observed.custom_script.clone();
                let message = match &script {
                    Some(p) => format!(
                        "the CustomScript of instance {} failed: {}{}",
                        rec.id,
                        p.message,
                        last_line(&p.stderr_tail).map(|l| format!(": {l}")).unwrap_or_default()
                    ),
                    None => format!("the CustomScript of instance {} failed", rec.id),
                };
                return Err(ApiError::conflict("VMExtensionProvisioningError", message));
            }
            if matches!(observed.phase, RtPhase::Gone | RtPhase::Stopped) {
                return Err(ApiError::conflict(
                    "InstanceStartFailed",
                    format!("the agent of instance {} stopped right after it started", rec.id),
                ));
            }
            // Provisioned: back in service (the load balancer still waits for its probe to say Healthy).
            set.mark_provisioned(app, rec.id)?;
            app.net.sync(app);
            if pending.wait_healthy
                && let Some(outcome) = app.net.wait_healthy(app, set, rec.id, rec.boot).await
                && outcome != HealthState::Healthy
            {
                let grace = app.net.grace(app, set).as_secs();
                set.settle(app, rec.id, Power::Running, None)?;
                return Err(ApiError::conflict(
                    "InstanceUnhealthy",
                    format!(
                        "instance {} is {} {grace} s after it started (it runs the new model)",
                        rec.id,
                        outcome.as_str()
                    ),
                ));
            }
            set.settle(app, rec.id, Power::Running, None)?;
            return Ok(false);
        }
    }
    Ok(true)
}

/// The model and image an action makes the OS disk from.
fn target(app: &App, set: &ScaleSet, rec: &InstanceRecord, action: &Action) -> ApiResult<(Model, ImageRef)> {
    match action {
        Action::Create | Action::Upgrade => {
            let generation = set.generation(app)?;
            let model = model::load(app.home.root(), &set.uid, generation)?;
            let reference =
                model.image_reference().ok_or_else(|| ApiError::invalid("The scale set's model names no image."))?;
            let avoid = set.avoid(app)?;
            let image = app.store.read(|tx| model::resolve_image(tx, reference, &avoid))?;
            Ok((model, image))
        }
        Action::Reimage => {
            // The instance's own model, its reference resolved again (a definition means latest now).
            let model = model::load(app.home.root(), &set.uid, rec.generation)?;
            let reference = rec
                .image
                .as_ref()
                .map(|i| i.reference.clone())
                .or_else(|| model.image_reference().map(String::from))
                .ok_or_else(|| ApiError::invalid("The instance's model names no image."))?;
            let avoid = set.avoid(app)?;
            let image = app.store.read(|tx| model::resolve_image(tx, &reference, &avoid))?;
            Ok((model, image))
        }
        Action::Rollback { to } => {
            let generation = rec.previous_generation.unwrap_or(rec.generation);
            Ok((model::load(app.home.root(), &set.uid, generation)?, to.clone()))
        }
        // The image changes, the instance's own model stays (an OS image upgrade).
        Action::OsUpgrade { to } => Ok((model::load(app.home.root(), &set.uid, rec.generation)?, to.clone())),
        other => Err(ApiError::internal(format!("{} makes no OS disk", other.verb()))),
    }
}

/// The current generation, if an instance of `model` given the image `to` runs exactly the current model.
fn promoted_generation(app: &App, set: &ScaleSet, model: &Model, to: &ImageRef) -> Option<u64> {
    let current = model::load(app.home.root(), &set.uid, set.generation(app).ok()?).ok()?;
    if current.generation == model.generation
        || current.fingerprint_without_image() != model.fingerprint_without_image()
    {
        return None;
    }
    let reference = current.image_reference()?;
    let resolved = app.store.read(|tx| model::resolve_image(tx, reference, &set.avoid_in(tx)?)).ok()?;
    resolved.id.eq_ignore_ascii_case(&to.id).then_some(current.generation)
}

/// What the agent runs: the instance's environment, entrypoint, CustomScript and custom data.
fn launch_spec(
    app: &App,
    set: &ScaleSet,
    rec: &InstanceRecord,
    model: &Model,
    image: &ImageRef,
    address: &str,
) -> ApiResult<LaunchSpec> {
    let luns: Vec<u32> = rec.data_disks.iter().map(|d| d.lun).collect();
    let disks = app.runtime.disks(&set.key(rec.id), &luns);
    let mut env = BTreeMap::new();
    env.insert("GALLEON_INSTANCE_ID".into(), rec.id.to_string());
    env.insert("GALLEON_VMSS".into(), set.name.clone());
    env.insert("GALLEON_PRIVATE_IP".into(), address.to_string());
    env.insert("GALLEON_OS_DISK".into(), disks.os.to_string_lossy().into_owned());
    env.insert("GALLEON_IMAGE_VERSION".into(), image.version_label());
    for (lun, path) in &disks.data {
        let path = path.to_string_lossy().into_owned();
        if *lun == 0 {
            env.insert("GALLEON_DATA_DISK".into(), path.clone());
        }
        env.insert(format!("GALLEON_DATA_DISK_{lun}"), path);
    }
    let custom_script = match model.extension(CUSTOM_SCRIPT) {
        None => None,
        Some(ext) => {
            let s = model::custom_script_settings(ext)?;
            // The fingerprint covers protected settings without revealing them.
            let fingerprint =
                galleon_images::Digest::of(serde_json::to_string(&ext.properties).unwrap_or_default().as_bytes()).hex();
            Some(CustomScript {
                file_uris: s.file_uris,
                command: s.command,
                command_is_secret: s.command_is_secret,
                fingerprint,
            })
        }
    };
    let custom_data = match model.custom_data() {
        Some(b64) => {
            Some(model::base64_decode(b64).ok_or_else(|| ApiError::invalid("osProfile.customData must be base64."))?)
        }
        None => None,
    };
    let mut spec = LaunchSpec::new(image.entrypoint.clone());
    spec.env = env;
    spec.custom_script = custom_script;
    spec.custom_data = custom_data;
    Ok(spec)
}

fn last_line(s: &str) -> Option<&str> {
    s.lines().rev().find(|l| !l.trim().is_empty()).map(str::trim)
}

fn runtime_error(e: galleon_runtime::RuntimeError) -> ApiError {
    ApiError::internal(e)
}

/// An action that cannot finish: the instance is recorded Failed with why, its operation learns of it.
fn fail(app: &App, set: &ScaleSet, id: u32, e: &ApiError) {
    tracing::warn!("{} instance {id}: {}", set.name, e.message);
    let detail =
        ErrorDetail { code: e.code.clone(), message: e.message.clone(), target: Some(id.to_string()), details: vec![] };
    let result = app.store.write(|tx| {
        let Some(mut rec) = set.record_in(tx, id)? else { return Ok::<_, ApiError>(None) };
        let Some(pending) = rec.pending.take() else { return Ok(None) };
        // An unhealthy instance after its upgrade still runs; only provisioning failures mark it Failed.
        if e.code != "InstanceUnhealthy" {
            rec.provisioning = ProvisioningState::Failed;
            rec.error = Some(e.message.clone());
        }
        set.put_in(tx, &rec)?;
        decide::log(
            tx,
            set,
            Some(id),
            pending.action.verb(),
            &format!("failed: {}", e.message),
            Some(&pending.operation),
        )?;
        ops::add_failure(tx, &pending.operation, detail.clone())?;
        Ok(Some(pending.operation))
    });
    match result {
        Ok(Some(op)) => {
            set.finish_if_done(app, &op);
            app.events.notify_fleet_changed();
        }
        Ok(None) => {}
        Err(err) => tracing::error!("cannot record the failure of instance {id}: {}", err.message),
    }
}
