//! Day-two operations: run a command in an instance (`runCommand`), read its boot log, collect the
//! image store's garbage, say what a home runs (`status`), and stop everything (`shutdown`).

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use galleon_api::vmss::{InstanceViewStatus, RunCommandInput, RunCommandResult};
use galleon_store::Kind;
use serde_json::json;

use crate::App;
use crate::error::{ApiError, ApiResult};
use crate::fleet::ScaleSet;
use crate::fleet::record::Power;
use crate::request::ApiRequest;
use crate::resource::json;

/// How long a run-command script may run (Azure's is 90 minutes; a local one needs less).
const RUN_COMMAND_TIMEOUT: Duration = Duration::from_secs(600);

fn instance(app: &App, rg: &str, name: &str, instance: &str) -> ApiResult<(std::sync::Arc<ScaleSet>, u32)> {
    let n: u32 = instance.parse().map_err(|_| ApiError::invalid(format!("'{instance}' is not an instance id.")))?;
    let sid = crate::api::vmss::id(app, rg, name);
    app.store.read(|tx| {
        let (set, _) = ScaleSet::load(tx, &sid)?;
        let rec = set.record_in(tx, n)?.ok_or(crate::fleet::unknown_instance(tx, &set, n)?)?;
        if rec.power != Power::Running || rec.pending.as_ref().is_some_and(|p| !p.action.ends_running()) {
            return Err(ApiError::conflict(
                "OperationNotAllowed",
                format!("Instance {n} of '{name}' is not running; start it first."),
            ));
        }
        Ok((set, n))
    })
}

/// `az vmss run-command invoke --command-id RunShellScript --scripts … [--parameters k=v …]`: the script in
/// the instance's environment, with the answer Azure gives for Linux (one status, `[stdout]`/`[stderr]`).
pub fn run_command(app: &App, rg: &str, name: &str, id: &str, req: &ApiRequest) -> ApiResult<Response> {
    let body: RunCommandInput = req.json()?;
    if !body.command_id.eq_ignore_ascii_case("RunShellScript") {
        return Err(ApiError::invalid(format!(
            "The command id '{}' is not one galleon runs on Linux instances: use RunShellScript.",
            body.command_id
        )));
    }
    if body.script.iter().all(|l| l.trim().is_empty()) {
        return Err(ApiError::invalid("RunShellScript needs a script: give --scripts."));
    }
    let mut env = std::collections::BTreeMap::new();
    for p in &body.parameters {
        let ok = !p.name.is_empty()
            && p.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !p.name.starts_with(|c: char| c.is_ascii_digit());
        if !ok {
            return Err(ApiError::invalid(format!(
                "The parameter name '{}' is not a valid environment variable name.",
                p.name
            )));
        }
        env.insert(p.name.clone(), p.value.clone());
    }
    let (set, n) = instance(app, rg, name, id)?;
    let script = body.script.join("\n");
    let result = app
        .runtime
        .run_command(&set.key(n), &script, &env, RUN_COMMAND_TIMEOUT)
        .map_err(|e| ApiError::conflict("RunCommandFailed", e.to_string()))?;
    let (code, display, summary) = match (result.exit_code, result.signal, result.timed_out) {
        (_, _, true) => (
            "failed",
            "Provisioning failed",
            format!("Enable failed: the script timed out after {} s", RUN_COMMAND_TIMEOUT.as_secs()),
        ),
        (Some(0), _, _) => ("succeeded", "Provisioning succeeded", "Enable succeeded: ".to_string()),
        (Some(c), _, _) => {
            ("failed", "Provisioning failed", format!("Enable failed: the script exited with status {c}"))
        }
        (None, Some(s), _) => {
            ("failed", "Provisioning failed", format!("Enable failed: the script was killed by signal {s}"))
        }
        (None, None, _) => ("failed", "Provisioning failed", "Enable failed: the script did not finish".to_string()),
    };
    let message = format!("{summary}\n[stdout]\n{}\n[stderr]\n{}", result.stdout.trim_end(), result.stderr.trim_end());
    json(
        StatusCode::OK,
        &RunCommandResult {
            value: vec![InstanceViewStatus {
                code: format!("ProvisioningState/{code}"),
                level: Some(if code == "failed" { "Error" } else { "Info" }.into()),
                display_status: Some(display.into()),
                message: Some(message),
                time: None,
            }],
        },
    )
}

/// `GET …/virtualMachines/{id}/bootLog`: the entrypoint's output. With `stream=stdout|stderr&offset=N`,
/// the bytes from N (for `--follow`; a rotated file starts again from 0); else both, or their last
/// `tail` lines.
pub fn boot_log(app: &App, rg: &str, name: &str, id: &str, req: &ApiRequest) -> ApiResult<Response> {
    let n: u32 = id.parse().map_err(|_| ApiError::invalid(format!("'{id}' is not an instance id.")))?;
    let sid = crate::api::vmss::id(app, rg, name);
    let set = app.store.read(|tx| {
        let (set, _) = ScaleSet::load(tx, &sid)?;
        set.record_in(tx, n)?.ok_or(crate::fleet::unknown_instance(tx, &set, n)?)?;
        Ok::<_, ApiError>(set)
    })?;
    let key = set.key(n);
    if let Some(stream) = req.query.get("stream") {
        let (out, err) = app.runtime.log_paths(&key);
        let path = match stream.as_str() {
            "stdout" => out,
            "stderr" => err,
            other => return Err(ApiError::invalid(format!("stream '{other}' must be stdout or stderr."))),
        };
        if req.query.get("offset").is_some_and(|o| o == "end") {
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            return json(StatusCode::OK, &json!({"data": "", "next": len, "rotated": false}));
        }
        let offset: u64 = req.query.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
        let (data, next, rotated) = read_from(&path, offset).map_err(ApiError::internal)?;
        return json(StatusCode::OK, &json!({"data": data, "next": next, "rotated": rotated}));
    }
    let tail: Option<usize> = req.query.get("tail").and_then(|t| t.parse().ok());
    let log = app.runtime.boot_log(&key, tail).map_err(|e| ApiError::conflict("BootLogUnavailable", e.to_string()))?;
    json(StatusCode::OK, &json!({"stdout": log.stdout, "stderr": log.stderr}))
}

/// The bytes of `path` from `offset`, at most 1 MB; a file shorter than `offset` was rotated: from 0.
fn read_from(path: &std::path::Path, offset: u64) -> std::io::Result<(String, u64, bool)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((String::new(), 0, false)),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let (start, rotated) = if len < offset { (0, true) } else { (offset, false) };
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.take(1024 * 1024).read_to_end(&mut buf)?;
    let next = start + buf.len() as u64;
    Ok((String::from_utf8_lossy(&buf).into_owned(), next, rotated))
}

/// `galleon store gc`: frees what no version, image or instance references; says what it freed.
pub fn gc(app: &App) -> ApiResult<Response> {
    let before = app.images.disk_usage().map_err(ApiError::internal)?;
    let report = crate::imaging::collect_garbage(app)?;
    let after = app.images.disk_usage().map_err(ApiError::internal)?;
    json(
        StatusCode::OK,
        &json!({
            "manifestsFreed": report.manifests_freed,
            "blobsFreed": report.blobs_freed,
            "bytesFreed": report.bytes_freed,
            "storeBytesBefore": before,
            "storeBytesAfter": after,
        }),
    )
}

/// `galleon status`: the control plane, the data plane and the instances of this home.
pub fn status(app: &App) -> ApiResult<Response> {
    let (sets, records) = app.store.read(|tx| {
        let sets = tx.all(Kind::ScaleSet)?.len();
        Ok::<_, ApiError>((sets, tx.all_instances()?))
    })?;
    let mut by_state = std::collections::BTreeMap::<String, u64>::new();
    for (_, _, doc) in &records {
        let rec: crate::fleet::record::InstanceRecord =
            serde_json::from_value(doc.clone()).map_err(ApiError::internal)?;
        let state = match (&rec.pending, rec.power, rec.provisioning) {
            (Some(p), _, _) => format!("busy ({})", p.action.verb()),
            (None, _, galleon_api::ProvisioningState::Failed) => "failed".into(),
            (None, Power::Running, _) => "running".into(),
            (None, Power::Stopped, _) => "stopped".into(),
            (None, Power::Deallocated, _) => "deallocated".into(),
        };
        *by_state.entry(state).or_default() += 1;
    }
    json(
        StatusCode::OK,
        &json!({
            "home": app.home.root(),
            "subscription": app.subscription,
            "controlPlane": {"pid": std::process::id(), "startedAt": app.started_at, "version": env!("CARGO_PKG_VERSION")},
            "dataPlane": app.net.status(app),
            "addresses": format!("{}/20", app.block.base()),
            "scaleSets": sets,
            "instances": {"total": records.len(), "byState": by_state},
            "storeBytes": app.images.disk_usage().map_err(ApiError::internal)?,
        }),
    )
}

/// `galleon shutdown`: stops everything of the home (instances drained and stopped, the data plane, the
/// control plane). Instances keep their desired state, so `galleon serve` brings them back.
pub fn shutdown(app: &App) -> ApiResult<Response> {
    if app.shutdown.is_cancelled() {
        return json(StatusCode::ACCEPTED, &json!({"pid": std::process::id(), "state": "already stopping"}));
    }
    app.shutdown.cancel();
    let app2 = app.clone();
    app.tasks.spawn(async move { crate::shutdown::run(&app2).await });
    json(StatusCode::ACCEPTED, &json!({"pid": std::process::id(), "state": "stopping"}))
}
