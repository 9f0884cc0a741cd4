//! Managed images (`Microsoft.Compute/images`): an image artifact outside the gallery, from a directory
//! or archive (`galleon image create --source`) or an image build. Immutable but for tags.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use galleon_api::ProvisioningState;
use galleon_api::gallery::{GalleonImageInfo, OsState, OsType};
use galleon_api::image::{Image, ImageOsDisk, ImageProperties, ImageStorageProfile};
use galleon_core::ids::ResourceId;
use galleon_core::names::NameKind;
use galleon_store::Kind;

use crate::App;
use crate::error::{ApiError, ApiResult};
use crate::imaging;
use crate::request::ApiRequest;
use crate::resource::{check_name, json, list, location, new_row, require, require_group, rows_in, updated_row};

fn image_id(app: &App, rg: &str, name: &str) -> ResourceId {
    ResourceId::new(&app.subscription, rg, "Microsoft.Compute", &[("images", name)])
}

pub fn put(app: &App, rg: &str, name: &str, req: &ApiRequest) -> ApiResult<Response> {
    check_name(NameKind::Resource, name)?;
    let body: Image = req.json()?;
    let id = image_id(app, rg, name);
    let existing = app.store.read(|tx| {
        require_group(tx, &app.subscription, rg)?;
        Ok::<_, ApiError>(tx.get(&id.to_string())?)
    })?;
    if let Some(row) = existing {
        if req.create_only() {
            return Err(ApiError::conflict("ResourceExists", format!("The image '{name}' already exists.")));
        }
        let mut doc: Image = row.parse()?;
        let asked = &body.properties;
        let same_source = asked.storage_profile.os_disk.blob_uri.is_none()
            || asked.storage_profile.os_disk.blob_uri == doc.properties.storage_profile.os_disk.blob_uri;
        let same_entrypoint =
            asked.galleon.entrypoint.is_none() || asked.galleon.entrypoint == doc.properties.galleon.entrypoint;
        if !same_source || !same_entrypoint {
            return Err(ApiError::conflict(
                "PropertyChangeNotAllowed",
                "A managed image cannot change its content or entrypoint; create a new image.",
            ));
        }
        doc.tags = body.tags.clone().or(doc.tags);
        let value = serde_json::to_value(&doc).map_err(ApiError::internal)?;
        app.store.write(|tx| tx.upsert(&updated_row(&row, value)).map_err(ApiError::from))?;
        return json(StatusCode::OK, &doc);
    }
    let uri = body.properties.storage_profile.os_disk.blob_uri.clone().filter(|u| !u.is_empty()).ok_or_else(|| {
        ApiError::invalid("A managed image needs a source: give --source DIR_OR_TAR (storageProfile.osDisk.blobUri).")
    })?;
    let lease = imaging::lease(app);
    let image = imaging::import(app, &lease, &uri, body.properties.galleon.entrypoint.as_deref())?;
    publish(app, &lease, &id, &body, image, Some(uri))
}

/// Records a managed image whose content is in the store (imported or built).
pub fn publish(
    app: &App,
    _lease: &imaging::Lease<'_>,
    id: &ResourceId,
    body: &Image,
    image: imaging::ImportedImage,
    uri: Option<String>,
) -> ApiResult<Response> {
    let rg = id.resource_group.clone().unwrap_or_default();
    let name = id.name().to_string();
    let result = app.store.write(|tx| {
        if tx.get(&id.to_string())?.is_some() {
            return Err(ApiError::conflict("ResourceExists", format!("The image '{name}' already exists.")));
        }
        let group = require_group(tx, &app.subscription, &rg)?;
        let doc = Image {
            id: Some(id.to_string()),
            name: Some(name.to_string()),
            kind: Some(id.resource_type()),
            location: Some(location(body.location.clone(), &group)),
            tags: body.tags.clone(),
            properties: ImageProperties {
                storage_profile: ImageStorageProfile {
                    os_disk: ImageOsDisk {
                        os_type: Some(body.properties.storage_profile.os_disk.os_type.unwrap_or(OsType::Linux)),
                        os_state: Some(
                            body.properties.storage_profile.os_disk.os_state.unwrap_or(OsState::Generalized),
                        ),
                        blob_uri: uri.clone(),
                        size_in_bytes: Some(image.size_bytes),
                    },
                    data_disks: vec![],
                },
                hyper_v_generation: Some("V1".into()),
                provisioning_state: Some(ProvisioningState::Succeeded),
                galleon: GalleonImageInfo {
                    digest: Some(image.digest.clone()),
                    entrypoint: Some(image.entrypoint.clone()),
                    revoked: false,
                },
            },
        };
        tx.insert(&new_row(Kind::Image, id, serde_json::to_value(&doc).map_err(ApiError::internal)?))?;
        Ok::<_, ApiError>(doc)
    });
    match result {
        Ok(doc) => json(StatusCode::CREATED, &doc),
        Err(e) => {
            imaging::collect_garbage_soon(app);
            Err(e)
        }
    }
}

pub fn get(app: &App, rg: &str, name: &str) -> ApiResult<Response> {
    let row = app.store.read(|tx| require(tx, &image_id(app, rg, name), Kind::Image))?;
    json(StatusCode::OK, &row.doc)
}

pub fn list_images(app: &App, rg: Option<&str>) -> ApiResult<Response> {
    list(app.store.read(|tx| rows_in(tx, &app.subscription, rg, Kind::Image))?)
}

pub fn delete(app: &App, rg: &str, name: &str) -> ApiResult<Response> {
    let id = image_id(app, rg, name);
    let deleted = app.store.write(|tx| {
        require_group(tx, &app.subscription, rg)?;
        if tx.get(&id.to_string())?.is_none() {
            return Ok(false);
        }
        imaging::refuse_if_in_use(app, tx, &id)?;
        tx.delete(&id.to_string())?;
        Ok::<_, ApiError>(true)
    })?;
    if deleted {
        imaging::collect_garbage_soon(app);
        Ok(StatusCode::OK.into_response())
    } else {
        Ok(StatusCode::NO_CONTENT.into_response())
    }
}
