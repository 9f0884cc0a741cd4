//! Image builds: `POST …/providers/Galleon.Images/builds` runs a Packer-style template, and
//! `GET …/builds/{id}/log?offset=N` streams its output while it runs.
//!
//! Everything that can be checked before a provisioner runs is checked in the request — template shape,
//! variables, the sandbox, the outputs' parents and names — and refused with a 400/404/409 that names the
//! problem. A build then runs on its own thread: source into a working root, provisioners in the sandbox
//! (`galleon-imagebuild`), the root imported and published. A failed step publishes nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::response::Response;
use galleon_api::ErrorDetail;
use galleon_api::build::{BuildLog, BuildRequest};
use galleon_api::gallery::GalleryImageVersion;
use galleon_api::image::Image;
use galleon_core::ids::ResourceId;
use galleon_imagebuild::{Outputs, Plan, ResolveInputs, Source};
use galleon_store::Kind;

use crate::App;
use crate::error::{ApiError, ApiResult};
use crate::imaging::{self, Lease};
use crate::ops::{self, Owner};
use crate::request::ApiRequest;
use crate::resource::{json, require_parent};

/// The output of builds in progress (and recently finished), by operation id.
#[derive(Default)]
pub struct Builds {
    logs: Mutex<HashMap<String, Arc<Mutex<Vec<String>>>>>,
}

impl Builds {
    fn open(&self, id: &str) -> Arc<Mutex<Vec<String>>> {
        let log = Arc::new(Mutex::new(Vec::new()));
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), log.clone());
        log
    }

    fn get(&self, id: &str) -> Option<Arc<Mutex<Vec<String>>>> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }
}

/// Where an output goes, checked before the build runs.
struct Target {
    managed: Option<ResourceId>,
    version: Option<ResourceId>,
}

pub fn start(app: &App, req: &ApiRequest) -> ApiResult<Response> {
    let body: BuildRequest = req.json()?;
    let text = body.template.to_string();
    let template = galleon_imagebuild::parse(&text)
        .map_err(|e| ApiError::bad_request("InvalidTemplate", format!("The template is not valid: {e}")))?;
    let env = body.env.clone();
    let lookup = move |k: &str| env.get(k).cloned();
    let inputs = ResolveInputs {
        vars: &body.vars,
        var_files: &body.var_files,
        env: &lookup,
        timestamp: u64::try_from(crate::clock::now_ms() / 1000).unwrap_or(0),
    };
    let mut plan = galleon_imagebuild::resolve_with(&template, &inputs)
        .map_err(|e| ApiError::bad_request("InvalidTemplate", format!("The template cannot be built: {e}")))?;
    plan.make_paths_absolute(Path::new(&body.cwd));
    let on_error_abort = match body.on_error.as_deref() {
        None | Some("cleanup") => false,
        Some("abort") => true,
        Some(other) => return Err(ApiError::invalid(format!("--on-error '{other}' must be cleanup or abort."))),
    };
    let target = check_outputs(app, &plan.outputs, body.default_group.as_deref())?;
    check_source(app, &plan.source)?;
    galleon_imagebuild::sandbox_available()
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "SandboxUnavailable", plan.mask(&e.to_string())))?;
    let op = app.store.write(|tx| ops::start(tx, "galleon.images/builds", Owner::Build))?;
    let log = app.builds.open(&op);
    let (app2, op2) = (app.clone(), op.clone());
    std::thread::Builder::new()
        .name(format!("build-{op}"))
        .spawn(move || build(&app2, &op2, &plan, &target, on_error_abort, &log))
        .map_err(ApiError::internal)?;
    ops::accepted(app, &op, StatusCode::ACCEPTED, None)
}

/// The lines of a build's output from `offset`, and how it stands.
pub fn log(app: &App, id: &str, req: &ApiRequest) -> ApiResult<Response> {
    let offset: usize = req.query.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
    let op = app.store.read(|tx| ops::get(tx, id))?;
    let op = op
        .filter(|o| o.owner == Owner::Build)
        .ok_or_else(|| ApiError::not_found("BuildNotFound", format!("The build '{id}' was not found.")))?;
    let lines = app
        .builds
        .get(id)
        .map(|l| l.lock().unwrap_or_else(|p| p.into_inner()).iter().skip(offset).cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    let next = offset + lines.len();
    json(StatusCode::OK, &BuildLog { lines, next, status: Some(op.status.status), error: op.status.error })
}

fn check_outputs(app: &App, outputs: &Outputs, default_group: Option<&str>) -> ApiResult<Target> {
    let mut target = Target { managed: None, version: None };
    if let Some(m) = &outputs.managed_image {
        let rg = m.resource_group.as_deref().or(default_group).ok_or_else(|| {
            ApiError::invalid(
                "The template's managed_image_name needs a group: set managed_image_resource_group_name, or give -g.",
            )
        })?;
        let id = ResourceId::new(&app.subscription, rg, "Microsoft.Compute", &[("images", &m.name)]);
        crate::resource::check_name(galleon_core::names::NameKind::Resource, &m.name)?;
        app.store.read(|tx| {
            crate::resource::require_group(tx, &app.subscription, rg)?;
            if tx.get(&id.to_string())?.is_some() {
                return Err(ApiError::conflict(
                    "ResourceExists",
                    format!("The managed image '{}' already exists.", m.name),
                ));
            }
            Ok(())
        })?;
        target.managed = Some(id);
    }
    if let Some(g) = &outputs.gallery {
        let id = ResourceId::new(
            &app.subscription,
            &g.resource_group,
            "Microsoft.Compute",
            &[("galleries", &g.gallery_name), ("images", &g.image_name), ("versions", &g.image_version)],
        );
        app.store.read(|tx| {
            require_parent(tx, &id, Kind::GalleryImageVersion)?;
            if tx.get(&id.to_string())?.is_some() {
                return Err(ApiError::conflict(
                    "ResourceExists",
                    format!(
                        "The image version '{}' of '{}/{}' already exists; versions are immutable.",
                        g.image_version, g.gallery_name, g.image_name
                    ),
                ));
            }
            Ok(())
        })?;
        target.version = Some(id);
    }
    Ok(target)
}

/// The digest a source names (managed images and gallery versions), checked before anything runs.
fn source_digest(app: &App, source: &Source) -> ApiResult<Option<String>> {
    let reference = match source {
        Source::None | Source::Dir(_) => return Ok(None),
        Source::ManagedImage(r) | Source::GalleryVersion(r) => r,
    };
    let id = match source {
        _ if reference.starts_with('/') => reference.clone(),
        Source::GalleryVersion(short) => {
            let parts: Vec<&str> = short.split('/').collect();
            let [g, d, v] = parts.as_slice() else {
                return Err(ApiError::invalid(format!(
                    "source_image_version '{short}' must be an id or GALLERY/IMAGE/VERSION."
                )));
            };
            find_version(app, g, d, v)?
        }
        _ => {
            // A managed image by name: the one image of that name in any group.
            let rows = app.store.read(|tx| Ok::<_, ApiError>(tx.all(Kind::Image)?))?;
            let found: Vec<_> = rows.into_iter().filter(|r| r.name.eq_ignore_ascii_case(reference)).collect();
            match found.as_slice() {
                [one] => one.id.clone(),
                [] => {
                    return Err(ApiError::not_found(
                        "ResourceNotFound",
                        format!("No managed image is named '{reference}'."),
                    ));
                }
                _ => {
                    return Err(ApiError::invalid(format!(
                        "Several managed images are named '{reference}': give its id."
                    )));
                }
            }
        }
    };
    let image = app.store.read(|tx| crate::fleet::model::resolve_image(tx, &id, &[]))?;
    Ok(Some(image.digest))
}

fn find_version(app: &App, g: &str, d: &str, v: &str) -> ApiResult<String> {
    let galleries = app.store.read(|tx| Ok::<_, ApiError>(tx.all(Kind::Gallery)?))?;
    let found: Vec<_> = galleries.into_iter().filter(|r| r.name.eq_ignore_ascii_case(g)).collect();
    match found.as_slice() {
        [one] => Ok(format!("{}/images/{d}/versions/{v}", one.id)),
        [] => Err(ApiError::not_found("ResourceNotFound", format!("No gallery is named '{g}'."))),
        _ => Err(ApiError::invalid(format!("Several galleries are named '{g}': give the version's id."))),
    }
}

fn check_source(app: &App, source: &Source) -> ApiResult<()> {
    if let Source::Dir(dir) = source
        && !dir.is_dir()
    {
        return Err(ApiError::invalid(format!("source_dir '{}' is not a directory.", dir.display())));
    }
    source_digest(app, source).map(|_| ())
}

/// Runs a build to its end and finishes its operation; publishes only if every step succeeded.
fn build(app: &App, op: &str, plan: &Plan, target: &Target, keep_on_error: bool, log: &Mutex<Vec<String>>) {
    let workdir = app.home.root().join("builds").join(op);
    let root = workdir.join("root");
    let say = |line: String| {
        log.lock().unwrap_or_else(|p| p.into_inner()).push(plan.mask(&line));
    };
    let result = run_build(app, plan, target, &root, &say);
    let error = match &result {
        Ok(()) => None,
        Err(e) => {
            say(format!("==> galleon: build failed: {}", e.message));
            Some(ErrorDetail::new(e.code.clone(), plan.mask(&e.message)))
        }
    };
    if error.is_some() && keep_on_error {
        say(format!("==> galleon: --on-error abort: the working root is kept at {}", root.display()));
    } else {
        let _ = std::fs::remove_dir_all(&workdir);
    }
    if let Err(e) = app.store.write(|tx| ops::finish(tx, op, error.clone(), false)) {
        tracing::error!("cannot finish the build {op}: {}", e.message);
    }
}

fn run_build(app: &App, plan: &Plan, target: &Target, root: &PathBuf, say: &dyn Fn(String)) -> ApiResult<()> {
    let _ = std::fs::remove_dir_all(root);
    if let Some(parent) = root.parent() {
        std::fs::create_dir_all(parent).map_err(ApiError::internal)?;
    }
    // The source, as a fresh working copy: a directory goes through the store's import rules too.
    {
        let lease = imaging::lease(app);
        match &plan.source {
            Source::None => {
                say("==> galleon: starting from an empty root".into());
                std::fs::create_dir_all(root).map_err(ApiError::internal)?;
            }
            Source::Dir(dir) => {
                say(format!("==> galleon: starting from the directory {}", dir.display()));
                let imported =
                    app.images.import(dir).map_err(|e| ApiError::invalid(format!("source_dir was refused: {e}")))?;
                app.images.materialize(&imported.digest, root).map_err(ApiError::internal)?;
                drop(lease);
                imaging::collect_garbage_soon(app);
            }
            other => {
                let digest =
                    source_digest(app, other)?.ok_or_else(|| ApiError::internal("a source without a digest"))?;
                say(format!("==> galleon: starting from {digest}"));
                let digest = digest.parse().map_err(ApiError::internal)?;
                app.images.materialize(&digest, root).map_err(ApiError::internal)?;
            }
        }
    }
    let mut sink = |line: &str| say(line.to_string());
    galleon_imagebuild::run(plan, root, &mut sink).map_err(|e| ApiError::conflict("BuildFailed", e.to_string()))?;
    let lease = imaging::lease(app);
    let image = imaging::import_path(app, &lease, root, plan.entrypoint.as_deref())?;
    say(format!("==> galleon: image {} ({} bytes)", image.digest, image.size_bytes));
    publish(app, &lease, target, image, say)
}

fn publish(
    app: &App,
    lease: &Lease<'_>,
    target: &Target,
    image: imaging::ImportedImage,
    say: &dyn Fn(String),
) -> ApiResult<()> {
    if let Some(id) = &target.managed {
        crate::api::images::publish(app, lease, id, &Image::default(), image.clone(), None)?;
        say(format!("==> galleon: published the managed image {}", id.name()));
    }
    if let Some(id) = &target.version {
        // Built along with a managed image, the version names it as its source, as Azure's would.
        let managed = target.managed.as_ref().map(|m| m.to_string());
        crate::api::gallery::publish_version(app, lease, id, &GalleryImageVersion::default(), image, managed, None)?;
        say(format!("==> galleon: published the image version {}", id.names.join("/")));
    }
    Ok(())
}

/// Builds still running when the control plane stopped cannot be resumed (their processes are gone):
/// their operations fail, nothing was published.
pub fn fail_interrupted(app: &App) -> ApiResult<()> {
    let open = app.store.read(|tx| Ok::<_, ApiError>(tx.operations_in_progress()?))?;
    for (id, doc) in open {
        if doc.get("owner").and_then(|o| o.as_str()) == Some("build") {
            let e = ErrorDetail::new(
                "BuildInterrupted",
                "The control plane stopped during the build; nothing was published.",
            );
            app.store.write(|tx| ops::finish(tx, &id, Some(e.clone()), false))?;
            let _ = std::fs::remove_dir_all(app.home.root().join("builds").join(&id));
        }
    }
    Ok(())
}
