//! Between the API and the image store: importing sources, checking entrypoints, collecting garbage.
//!
//! Imports and publishing hold the image lock shared; garbage collection holds it exclusively, so a blob
//! imported for a version not yet recorded in the database is never collected under its feet.

use std::collections::HashSet;
use std::path::PathBuf;

use galleon_core::ids::ResourceId;
use galleon_images::{Digest, GcReport};
use galleon_store::{Kind, Tx};

use crate::App;
use crate::error::{ApiError, ApiResult};

/// What a version or managed image records of its content.
#[derive(Clone, Debug)]
pub struct ImportedImage {
    pub digest: String,
    pub size_bytes: u64,
    pub entrypoint: String,
}

pub const DEFAULT_ENTRYPOINT: &str = "start";

/// A `file://` URI or an absolute path, as a path on this machine.
fn source_path(uri: &str) -> ApiResult<PathBuf> {
    let path = uri.strip_prefix("file://").unwrap_or(uri);
    let path = percent_encoding::percent_decode_str(path).decode_utf8_lossy().into_owned();
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(ApiError::invalid(format!("The image source '{uri}' must be an absolute path or a file:// URI.")));
    }
    if !path.exists() {
        return Err(ApiError::invalid(format!("The image source '{}' does not exist.", path.display())));
    }
    Ok(path)
}

/// Proof that the caller holds the image lock shared: what it imports stays in the store until it is
/// recorded, because garbage collection waits for every lease to end.
pub struct Lease<'a>(#[allow(dead_code)] std::sync::RwLockReadGuard<'a, ()>);

pub fn lease(app: &App) -> Lease<'_> {
    Lease(app.image_lock.read().unwrap_or_else(|p| p.into_inner()))
}

/// Imports a directory or archive into the store and checks its entrypoint. What it imported is
/// unreferenced until the caller records it, so a refused entrypoint is collected soon after.
pub fn import(app: &App, _lease: &Lease<'_>, uri: &str, entrypoint: Option<&str>) -> ApiResult<ImportedImage> {
    let path = source_path(uri)?;
    import_path(app, _lease, &path, entrypoint)
}

/// `import` of a local path (image builds import their working root).
pub fn import_path(
    app: &App,
    _lease: &Lease<'_>,
    path: &std::path::Path,
    entrypoint: Option<&str>,
) -> ApiResult<ImportedImage> {
    let imported = app.images.import(path).map_err(|e| {
        ApiError::bad_request("InvalidImageSource", format!("The image source '{}' was refused: {e}", path.display()))
    })?;
    let entrypoint = entrypoint.unwrap_or(DEFAULT_ENTRYPOINT).trim().to_string();
    if let Err(e) = check_entrypoint(app, &imported.digest, &entrypoint) {
        collect_garbage_soon(app);
        return Err(e);
    }
    Ok(ImportedImage { digest: imported.digest.to_string(), size_bytes: imported.size_bytes, entrypoint })
}

fn check_entrypoint(app: &App, digest: &Digest, entrypoint: &str) -> ApiResult<()> {
    if entrypoint.is_empty() {
        return Err(ApiError::invalid("The entrypoint must not be empty."));
    }
    let manifest = app.images.manifest(digest).map_err(ApiError::internal)?;
    manifest.check_entrypoint(entrypoint).map_err(|e| ApiError::bad_request("InvalidEntrypoint", e.to_string()))
}

/// The content of a managed image, for a version published from it (`--managed-image`).
pub fn from_managed_image(
    app: &App,
    _lease: &Lease<'_>,
    image_id: &str,
    entrypoint: Option<&str>,
) -> ApiResult<ImportedImage> {
    let id = ResourceId::parse(image_id).map_err(|e| ApiError::invalid(e.to_string()))?;
    if !id.is("Microsoft.Compute", &["images"]) {
        return Err(ApiError::invalid(format!(
            "'{image_id}' is not a managed image id (…/Microsoft.Compute/images/NAME)."
        )));
    }
    let row = app.store.read(|tx| crate::resource::require(tx, &id, Kind::Image))?;
    let image: galleon_api::image::Image = row.parse()?;
    let info = image.properties.galleon;
    let digest = info.digest.ok_or_else(|| ApiError::internal("a managed image without a digest"))?;
    let entrypoint = entrypoint.map(str::to_string).or(info.entrypoint).unwrap_or_else(|| DEFAULT_ENTRYPOINT.into());
    let parsed: Digest = digest.parse().map_err(ApiError::internal)?;
    check_entrypoint(app, &parsed, &entrypoint)?;
    let size_bytes = image.properties.storage_profile.os_disk.size_in_bytes.unwrap_or(0);
    Ok(ImportedImage { digest, size_bytes, entrypoint })
}

/// Refuses to delete an image or version that a scale set's model names, or that an instance runs (or
/// would roll back to).
pub fn refuse_if_in_use(app: &App, tx: &Tx<'_>, id: &ResourceId) -> ApiResult<()> {
    let _ = app;
    let key = id.key();
    for (_, instance, doc) in tx.all_instances()? {
        let uses = ["/image/id", "/previousImage/id"]
            .iter()
            .any(|p| doc.pointer(p).and_then(|v| v.as_str()).is_some_and(|v| v.to_ascii_lowercase() == key));
        if uses {
            return Err(ApiError::conflict(
                "ResourceInUse",
                format!(
                    "'{}' is in use by instance {instance} of a scale set; upgrade it to another image first.",
                    id.name()
                ),
            ));
        }
    }
    for row in tx.all(Kind::ScaleSet)? {
        let reference = row.doc.pointer("/properties/virtualMachineProfile/storageProfile/imageReference/id");
        if reference.and_then(|r| r.as_str()).is_some_and(|r| r.to_ascii_lowercase() == key) {
            return Err(ApiError::conflict(
                "ResourceInUse",
                format!("'{}' is in use by the scale set '{}'; point it at another image first.", id.name(), row.name),
            ));
        }
    }
    Ok(())
}

/// Every image digest the database still references: versions, managed images, and what instances run
/// or would roll back to.
pub fn live_digests(tx: &Tx<'_>) -> ApiResult<HashSet<Digest>> {
    let mut live = HashSet::new();
    for (_, _, doc) in tx.all_instances()? {
        for p in ["/image/digest", "/previousImage/digest"] {
            if let Some(d) = doc.pointer(p).and_then(|d| d.as_str()) {
                live.insert(d.parse().map_err(ApiError::internal)?);
            }
        }
    }
    for kind in [Kind::GalleryImageVersion, Kind::Image] {
        for row in tx.all(kind)? {
            if let Some(d) = row.doc.pointer("/properties/galleon/digest").and_then(|d| d.as_str()) {
                live.insert(d.parse().map_err(ApiError::internal)?);
            }
        }
    }
    Ok(live)
}

/// Frees what no version, image or instance references any more.
pub fn collect_garbage(app: &App) -> ApiResult<GcReport> {
    let _exclusive = app.image_lock.write().unwrap_or_else(|p| p.into_inner());
    let live = app.store.read(live_digests)?;
    let report = app.images.gc(&live).map_err(ApiError::internal)?;
    if report.blobs_freed > 0 || report.manifests_freed > 0 {
        tracing::info!(
            "image store: freed {} manifest(s), {} blob(s), {} bytes",
            report.manifests_freed,
            report.blobs_freed,
            report.bytes_freed
        );
    }
    Ok(report)
}

/// Runs `collect_garbage` in the background (after deletes, as CONTRACT §8 asks).
pub fn collect_garbage_soon(app: &App) {
    let app = app.clone();
    std::thread::spawn(move || {
        if let Err(e) = collect_garbage(&app) {
            tracing::warn!("image garbage collection failed: {}", e.message);
        }
    });
}
