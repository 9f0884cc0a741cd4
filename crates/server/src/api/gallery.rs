//! The gallery: galleries, image definitions and image versions.
//!
//! Versions are immutable once published (content, source, entrypoint); what may change afterwards is
//! what Azure lets change — `excludeFromLatest`, `endOfLifeDate`, tags — and galleon's `revoked`.
//! A version is published only after its content is safely in the image store: a refused import
//! publishes nothing.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use galleon_api::ProvisioningState;
use galleon_api::gallery::{
    DiskSource, Gallery, GalleryIdentifier, GalleryImage, GalleryImageVersion, GalleryProperties, OsDiskImage, OsState,
    PublishingProfile, VersionSource,
};
use galleon_core::gallery::{Candidate, latest};
use galleon_core::ids::ResourceId;
use galleon_core::names::NameKind;
use galleon_core::version::Version;
use galleon_store::{Kind, Row, Tx};

use crate::App;
use crate::error::{ApiError, ApiResult};
use crate::imaging::{self, ImportedImage};
use crate::request::ApiRequest;
use crate::resource::{
    check_name, created_or_ok, json, list, location, new_row, require, require_group, require_parent, rows_in,
    updated_row,
};

const NS: &str = "Microsoft.Compute";

fn gallery_id(app: &App, rg: &str, g: &str) -> ResourceId {
    ResourceId::new(&app.subscription, rg, NS, &[("galleries", g)])
}

fn definition_id(app: &App, rg: &str, g: &str, d: &str) -> ResourceId {
    gallery_id(app, rg, g).child("images", d)
}

fn version_id(app: &App, rg: &str, g: &str, d: &str, v: &str) -> ResourceId {
    definition_id(app, rg, g, d).child("versions", v)
}

fn to_value<T: serde::Serialize>(doc: &T) -> ApiResult<serde_json::Value> {
    serde_json::to_value(doc).map_err(ApiError::internal)
}

/// The id a stored row was created with (keeping the user's first casing).
fn stored_id(existing: Option<&Row>, id: &ResourceId) -> ApiResult<ResourceId> {
    match existing {
        Some(r) => ResourceId::parse(&r.id).map_err(ApiError::internal),
        None => Ok(id.clone()),
    }
}

// ---- galleries ----

pub fn put_gallery(app: &App, rg: &str, g: &str, req: &ApiRequest) -> ApiResult<Response> {
    check_name(NameKind::Gallery, g)?;
    let body: Gallery = req.json()?;
    let id = gallery_id(app, rg, g);
    let (created, doc) = app.store.write(|tx| {
        let group = require_group(tx, &app.subscription, rg)?;
        let existing = tx.get(&id.to_string())?;
        if existing.is_some() && req.create_only() {
            return Err(ApiError::conflict("ResourceExists", format!("The gallery '{g}' already exists.")));
        }
        let id = stored_id(existing.as_ref(), &id)?;
        let doc = Gallery {
            id: Some(id.to_string()),
            name: Some(id.name().to_string()),
            kind: Some(id.resource_type()),
            location: Some(location(body.location.clone(), &group)),
            tags: body.tags.clone(),
            properties: GalleryProperties {
                description: body.properties.description.clone(),
                identifier: Some(GalleryIdentifier {
                    unique_name: format!("{}-{}", app.subscription, id.name().to_ascii_uppercase()),
                }),
                provisioning_state: Some(ProvisioningState::Succeeded),
            },
        };
        save(tx, existing.as_ref(), Kind::Gallery, &id, to_value(&doc)?)?;
        Ok((existing.is_none(), doc))
    })?;
    json(created_or_ok(created), &doc)
}

/// Creates or replaces a row, keeping the identity of an existing one.
fn save(tx: &Tx<'_>, existing: Option<&Row>, kind: Kind, id: &ResourceId, doc: serde_json::Value) -> ApiResult<()> {
    match existing {
        Some(row) => tx.upsert(&updated_row(row, doc))?,
        None => tx.insert(&new_row(kind, id, doc))?,
    }
    Ok(())
}

pub fn get_gallery(app: &App, rg: &str, g: &str) -> ApiResult<Response> {
    let row = app.store.read(|tx| require(tx, &gallery_id(app, rg, g), Kind::Gallery))?;
    json(StatusCode::OK, &row.doc)
}

pub fn list_galleries(app: &App, rg: Option<&str>) -> ApiResult<Response> {
    list(app.store.read(|tx| rows_in(tx, &app.subscription, rg, Kind::Gallery))?)
}

pub fn delete_gallery(app: &App, rg: &str, g: &str) -> ApiResult<Response> {
    let id = gallery_id(app, rg, g);
    app.store
        .write(|tx| {
            require_group(tx, &app.subscription, rg)?;
            if tx.get(&id.to_string())?.is_none() {
                return Ok(StatusCode::NO_CONTENT);
            }
            refuse_if_children(tx, &id, Kind::GalleryImage, "gallery", "image definition")?;
            tx.delete(&id.to_string())?;
            Ok(StatusCode::OK)
        })
        .map(IntoResponse::into_response)
}

fn refuse_if_children(tx: &Tx<'_>, id: &ResourceId, kind: Kind, what: &str, child: &str) -> ApiResult<()> {
    let kids = tx.children(&id.to_string(), kind)?;
    if kids.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = kids.iter().map(|r| r.name.as_str()).collect();
    Err(ApiError::conflict(
        "CannotDeleteResource",
        format!(
            "Can not delete the {what} '{}' while it has nested resources: {} {child}(s) ({}). Delete them first.",
            id.name(),
            kids.len(),
            names.join(", ")
        ),
    ))
}

// ---- image definitions ----

pub fn put_definition(app: &App, rg: &str, g: &str, d: &str, req: &ApiRequest) -> ApiResult<Response> {
    check_name(NameKind::ImageDefinition, d)?;
    let body: GalleryImage = req.json()?;
    let id = definition_id(app, rg, g, d);
    let (created, doc) = app.store.write(|tx| {
        let gallery = require_parent(tx, &id, Kind::GalleryImage)?;
        let existing = tx.get(&id.to_string())?;
        if existing.is_some() && req.create_only() {
            return Err(ApiError::conflict(
                "ResourceExists",
                format!("The image definition '{g}/{d}' already exists."),
            ));
        }
        let mut props = body.properties.clone();
        match &existing {
            None => {
                let Some(ident) = &props.identifier else {
                    return Err(ApiError::invalid(
                        "An image definition needs an identifier: give --publisher, --offer and --sku.",
                    ));
                };
                if [&ident.publisher, &ident.offer, &ident.sku].iter().any(|s| s.trim().is_empty()) {
                    return Err(ApiError::invalid("The identifier's publisher, offer and sku must not be empty."));
                }
                if props.os_type.is_none() {
                    return Err(ApiError::invalid("An image definition needs an osType: give --os-type Linux."));
                }
                props.os_state = Some(props.os_state.unwrap_or(OsState::Generalized));
            }
            Some(row) => {
                // Azure keeps these fixed for the life of a definition; so do we.
                let old: GalleryImage = row.parse()?;
                let keep = |field: &str, same: bool| {
                    if same {
                        Ok(())
                    } else {
                        Err(ApiError::conflict(
                            "PropertyChangeNotAllowed",
                            format!("Changing property '{field}' of an image definition is not allowed."),
                        ))
                    }
                };
                keep("osType", props.os_type.is_none() || props.os_type == old.properties.os_type)?;
                keep("osState", props.os_state.is_none() || props.os_state == old.properties.os_state)?;
                keep("identifier", props.identifier.is_none() || props.identifier == old.properties.identifier)?;
                props.os_type = old.properties.os_type;
                props.os_state = old.properties.os_state;
                props.identifier = old.properties.identifier;
            }
        }
        props.provisioning_state = Some(ProvisioningState::Succeeded);
        let id = stored_id(existing.as_ref(), &id)?;
        let doc = GalleryImage {
            id: Some(id.to_string()),
            name: Some(id.name().to_string()),
            kind: Some(id.resource_type()),
            location: Some(location(body.location.clone(), &gallery)),
            tags: body.tags.clone(),
            properties: props,
        };
        save(tx, existing.as_ref(), Kind::GalleryImage, &id, to_value(&doc)?)?;
        Ok((existing.is_none(), doc))
    })?;
    json(created_or_ok(created), &doc)
}

pub fn get_definition(app: &App, rg: &str, g: &str, d: &str) -> ApiResult<Response> {
    let row = app.store.read(|tx| require(tx, &definition_id(app, rg, g, d), Kind::GalleryImage))?;
    json(StatusCode::OK, &row.doc)
}

pub fn list_definitions(app: &App, rg: &str, g: &str) -> ApiResult<Response> {
    let id = gallery_id(app, rg, g);
    list(app.store.read(|tx| {
        require(tx, &id, Kind::Gallery)?;
        Ok::<_, ApiError>(tx.children(&id.to_string(), Kind::GalleryImage)?)
    })?)
}

pub fn delete_definition(app: &App, rg: &str, g: &str, d: &str) -> ApiResult<Response> {
    let id = definition_id(app, rg, g, d);
    app.store
        .write(|tx| {
            require_parent(tx, &id, Kind::GalleryImage)?;
            if tx.get(&id.to_string())?.is_none() {
                return Ok(StatusCode::NO_CONTENT);
            }
            refuse_if_children(tx, &id, Kind::GalleryImageVersion, "image definition", "version")?;
            tx.delete(&id.to_string())?;
            Ok(StatusCode::OK)
        })
        .map(IntoResponse::into_response)
}

// ---- image versions ----

fn parse_version(v: &str) -> ApiResult<Version> {
    v.parse().map_err(|e: galleon_core::version::VersionError| ApiError::bad_request("InvalidParameter", e.to_string()))
}

/// The versions of a definition, sorted by version number.
fn versions(tx: &Tx<'_>, definition: &ResourceId) -> ApiResult<Vec<(Version, GalleryImageVersion, Row)>> {
    let mut out = vec![];
    for row in tx.children(&definition.to_string(), Kind::GalleryImageVersion)? {
        let doc: GalleryImageVersion = row.parse()?;
        out.push((parse_version(&row.name)?, doc, row));
    }
    out.sort_by_key(|(v, _, _)| *v);
    Ok(out)
}

/// The version *latest* resolves to under `definition`, avoiding `avoid`.
pub fn resolve_latest(
    tx: &Tx<'_>,
    definition: &ResourceId,
    avoid: &[Version],
) -> ApiResult<Option<(GalleryImageVersion, Row)>> {
    let all = versions(tx, definition)?;
    let candidates: Vec<Candidate> = all
        .iter()
        .map(|(v, doc, _)| Candidate {
            version: *v,
            exclude_from_latest: doc.properties.publishing_profile.exclude_from_latest,
            revoked: doc.properties.galleon.revoked,
        })
        .collect();
    let best = latest(&candidates, avoid);
    Ok(all.into_iter().find(|(v, _, _)| Some(*v) == best).map(|(_, doc, row)| (doc, row)))
}

pub fn put_version(app: &App, rg: &str, g: &str, d: &str, v: &str, req: &ApiRequest) -> ApiResult<Response> {
    parse_version(v)?;
    let body: GalleryImageVersion = req.json()?;
    let id = version_id(app, rg, g, d, v);
    let existing = app.store.read(|tx| {
        require_parent(tx, &id, Kind::GalleryImageVersion)?;
        Ok::<_, ApiError>(tx.get(&id.to_string())?)
    })?;
    match existing {
        Some(_) if req.create_only() => Err(ApiError::conflict(
            "ResourceExists",
            format!(
                "The image version '{v}' of '{g}/{d}' already exists. Image versions are immutable: publish a new \
                 version, or delete this one first."
            ),
        )),
        Some(row) => update_version(app, &row, body),
        None => create_version(app, &id, body),
    }
}

pub fn patch_version(app: &App, rg: &str, g: &str, d: &str, v: &str, req: &ApiRequest) -> ApiResult<Response> {
    let id = version_id(app, rg, g, d, v);
    let row = app.store.read(|tx| require(tx, &id, Kind::GalleryImageVersion))?;
    let patch: serde_json::Value = req.json()?;
    let mut merged = row.doc.clone();
    merge_patch(&mut merged, &patch);
    let body: GalleryImageVersion = serde_json::from_value(merged).map_err(|e| {
        ApiError::bad_request("InvalidRequestContent", format!("The patched version is not valid: {e}"))
    })?;
    update_version(app, &row, body)
}

/// RFC 7396 JSON merge patch.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn check_eol(date: &Option<String>) -> ApiResult<()> {
    let Some(d) = date else { return Ok(()) };
    let ok = d.parse::<jiff::Timestamp>().is_ok() || d.parse::<jiff::civil::Date>().is_ok();
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "The end of life date '{d}' is not a date: use e.g. 2027-12-31 or 2027-12-31T00:00:00Z."
        )))
    }
}

/// Publishes a new version: content first (imported or taken from a managed image), then the row.
fn create_version(app: &App, id: &ResourceId, body: GalleryImageVersion) -> ApiResult<Response> {
    let props = &body.properties;
    check_eol(&props.publishing_profile.end_of_life_date)?;
    let managed = props.storage_profile.source.as_ref().and_then(|s| s.id.clone()).filter(|s| !s.is_empty());
    let uri = props
        .storage_profile
        .os_disk_image
        .as_ref()
        .and_then(|o| o.source.as_ref())
        .and_then(|s| s.uri.clone())
        .filter(|s| !s.is_empty());
    let entrypoint = props.galleon.entrypoint.clone();
    let lease = imaging::lease(app);
    let image: ImportedImage = match (&managed, &uri) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "Give one source for an image version: a directory or archive (--source), or a managed image \
                 (--managed-image), not both.",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "An image version needs a source: a directory or archive (--source DIR_OR_TAR) or a managed image \
                 (--managed-image NAME_OR_ID).",
            ));
        }
        (Some(image_id), None) => imaging::from_managed_image(app, &lease, image_id, entrypoint.as_deref())?,
        (None, Some(uri)) => imaging::import(app, &lease, uri, entrypoint.as_deref())?,
    };
    publish_version(app, &lease, id, &body, image, managed, uri)
}

/// Records a version whose content is in the store (imported, taken from a managed image, or built).
pub fn publish_version(
    app: &App,
    _lease: &imaging::Lease<'_>,
    id: &ResourceId,
    body: &GalleryImageVersion,
    image: ImportedImage,
    managed: Option<String>,
    uri: Option<String>,
) -> ApiResult<Response> {
    let props = &body.properties;
    let doc = app.store.write(|tx| {
        // Checked again inside the transaction: the import ran outside it.
        let definition = require_parent(tx, id, Kind::GalleryImageVersion)?;
        if tx.get(&id.to_string())?.is_some() {
            return Err(ApiError::conflict(
                "ResourceExists",
                format!("The image version '{}' already exists.", id.name()),
            ));
        }
        let doc = GalleryImageVersion {
            id: Some(id.to_string()),
            name: Some(id.name().to_string()),
            kind: Some(id.resource_type()),
            location: Some(location(body.location.clone(), &definition)),
            tags: body.tags.clone(),
            properties: galleon_api::gallery::GalleryImageVersionProperties {
                publishing_profile: PublishingProfile {
                    exclude_from_latest: props.publishing_profile.exclude_from_latest,
                    end_of_life_date: props.publishing_profile.end_of_life_date.clone(),
                    published_date: Some(crate::clock::now_rfc3339()),
                    replica_count: Some(1),
                    storage_account_type: Some("Standard_LRS".into()),
                },
                storage_profile: galleon_api::gallery::VersionStorageProfile {
                    source: Some(VersionSource { id: managed.clone() }),
                    os_disk_image: Some(OsDiskImage {
                        size_in_bytes: Some(image.size_bytes),
                        host_caching: Some("ReadOnly".into()),
                        source: uri.clone().map(|u| DiskSource { uri: Some(u) }),
                    }),
                },
                provisioning_state: Some(ProvisioningState::Succeeded),
                galleon: galleon_api::gallery::GalleonImageInfo {
                    digest: Some(image.digest.clone()),
                    entrypoint: Some(image.entrypoint.clone()),
                    revoked: props.galleon.revoked,
                },
            },
        };
        tx.insert(&new_row(Kind::GalleryImageVersion, id, to_value(&doc)?))?;
        Ok(doc)
    });
    match doc {
        Ok(doc) => {
            app.events.notify_gallery_changed();
            json(StatusCode::CREATED, &doc)
        }
        Err(e) => {
            imaging::collect_garbage_soon(app);
            Err(e)
        }
    }
}

/// Applies what may change on a published version; anything else must stay as it is.
fn update_version(app: &App, row: &Row, body: GalleryImageVersion) -> ApiResult<Response> {
    let old: GalleryImageVersion = row.parse()?;
    let new = &body.properties;
    check_eol(&new.publishing_profile.end_of_life_date)?;
    let fixed = |field: &str| {
        ApiError::conflict(
            "PropertyChangeNotAllowed",
            format!("Changing property '{field}' of a published image version is not allowed; publish a new version."),
        )
    };
    let old_source = old.properties.storage_profile.source.as_ref().and_then(|s| s.id.clone());
    let new_source = new.storage_profile.source.as_ref().and_then(|s| s.id.clone());
    if new_source.is_some() && !same_id(&new_source, &old_source) {
        return Err(fixed("storageProfile.source.id"));
    }
    let uri = |p: &galleon_api::gallery::GalleryImageVersionProperties| {
        p.storage_profile.os_disk_image.as_ref().and_then(|o| o.source.as_ref()).and_then(|s| s.uri.clone())
    };
    if uri(new).is_some() && uri(new) != uri(&old.properties) {
        return Err(fixed("storageProfile.osDiskImage.source.uri"));
    }
    if new.galleon.entrypoint.is_some() && new.galleon.entrypoint != old.properties.galleon.entrypoint {
        return Err(fixed("galleon.entrypoint"));
    }
    if new.galleon.digest.is_some() && new.galleon.digest != old.properties.galleon.digest {
        return Err(fixed("galleon.digest"));
    }
    let mut doc = old.clone();
    doc.tags = body.tags.clone().or(old.tags);
    doc.properties.publishing_profile.exclude_from_latest = new.publishing_profile.exclude_from_latest;
    doc.properties.publishing_profile.end_of_life_date = new.publishing_profile.end_of_life_date.clone();
    doc.properties.galleon.revoked = new.galleon.revoked;
    app.store.write(|tx| tx.upsert(&updated_row(row, to_value(&doc)?)).map_err(ApiError::from))?;
    app.events.notify_gallery_changed();
    json(StatusCode::OK, &doc)
}

fn same_id(a: &Option<String>, b: &Option<String>) -> bool {
    a.as_deref().map(str::to_ascii_lowercase) == b.as_deref().map(str::to_ascii_lowercase)
}

pub fn get_version(app: &App, rg: &str, g: &str, d: &str, v: &str) -> ApiResult<Response> {
    if v.eq_ignore_ascii_case("latest") {
        let definition = definition_id(app, rg, g, d);
        let found = app.store.read(|tx| {
            require(tx, &definition, Kind::GalleryImage)?;
            resolve_latest(tx, &definition, &[])
        })?;
        let (doc, _) = found.ok_or_else(|| {
            ApiError::not_found(
                "ResourceNotFound",
                format!(
                    "No version of '{g}/{d}' is eligible as latest: every version is excluded from latest or revoked."
                ),
            )
        })?;
        return json(StatusCode::OK, &doc);
    }
    let row = app.store.read(|tx| require(tx, &version_id(app, rg, g, d, v), Kind::GalleryImageVersion))?;
    json(StatusCode::OK, &row.doc)
}

pub fn list_versions(app: &App, rg: &str, g: &str, d: &str) -> ApiResult<Response> {
    let id = definition_id(app, rg, g, d);
    let rows = app.store.read(|tx| {
        require(tx, &id, Kind::GalleryImage)?;
        versions(tx, &id)
    })?;
    list(rows.into_iter().map(|(_, _, row)| row).collect())
}

pub fn delete_version(app: &App, rg: &str, g: &str, d: &str, v: &str) -> ApiResult<Response> {
    let id = version_id(app, rg, g, d, v);
    let deleted = app.store.write(|tx| {
        require_parent(tx, &id, Kind::GalleryImageVersion)?;
        if tx.get(&id.to_string())?.is_none() {
            return Ok(false);
        }
        imaging::refuse_if_in_use(app, tx, &id)?;
        tx.delete(&id.to_string())?;
        Ok::<_, ApiError>(true)
    })?;
    if !deleted {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    app.events.notify_gallery_changed();
    imaging::collect_garbage_soon(app);
    Ok(StatusCode::OK.into_response())
}
