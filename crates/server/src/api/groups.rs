//! Resource groups: `PUT|GET|HEAD|DELETE /subscriptions/{s}/resourcegroups/{rg}` and the list.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use galleon_api::group::{ResourceGroup, ResourceGroupProperties};
use galleon_api::{DEFAULT_LOCATION, ProvisioningState};
use galleon_core::ids::ResourceId;
use galleon_core::names::NameKind;
use galleon_store::Kind;

use crate::error::{ApiError, ApiResult};
use crate::ops::{self, Owner};
use crate::request::ApiRequest;
use crate::resource::{check_name, created_or_ok, json, list as list_rows, new_row, updated_row};
use crate::{App, blocking};

pub fn put(app: &App, name: &str, req: &ApiRequest) -> ApiResult<Response> {
    check_name(NameKind::ResourceGroup, name)?;
    let body: ResourceGroup = req.json()?;
    let id = ResourceId::group(&app.subscription, name);
    let (created, doc) = app.store.write(|tx| {
        let existing = tx.get(&id.to_string())?;
        if existing.is_some() && req.create_only() {
            return Err(ApiError::conflict("ResourceGroupExists", format!("Resource group '{name}' already exists.")));
        }
        let stored_name = existing.as_ref().map_or(name.to_string(), |r| r.name.clone());
        let location = body
            .location
            .clone()
            .or_else(|| existing.as_ref().and_then(|r| r.doc["location"].as_str().map(String::from)))
            .unwrap_or_else(|| DEFAULT_LOCATION.to_string());
        let doc = ResourceGroup {
            id: Some(ResourceId::group(&app.subscription, &stored_name).to_string()),
            name: Some(stored_name),
            kind: Some("Microsoft.Resources/resourceGroups".into()),
            location: Some(location),
            tags: body.tags.clone(),
            properties: ResourceGroupProperties { provisioning_state: Some(ProvisioningState::Succeeded) },
        };
        let value = serde_json::to_value(&doc).map_err(ApiError::internal)?;
        match &existing {
            Some(row) => tx.upsert(&updated_row(row, value))?,
            None => tx.insert(&new_row(Kind::ResourceGroup, &id, value))?,
        }
        Ok::<_, ApiError>((existing.is_none(), doc))
    })?;
    json(created_or_ok(created), &doc)
}

pub fn get(app: &App, name: &str) -> ApiResult<Response> {
    let row = app.store.read(|tx| tx.get(&ResourceId::group(&app.subscription, name).to_string()))?;
    let row = row.ok_or_else(|| ApiError::group_not_found(name))?;
    json(StatusCode::OK, &row.doc)
}

/// `az group exists`: 204 when it exists, 404 when not.
pub fn head(app: &App, name: &str) -> ApiResult<Response> {
    let row = app.store.read(|tx| tx.get(&ResourceId::group(&app.subscription, name).to_string()))?;
    Ok(if row.is_some() { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }.into_response())
}

pub fn list(app: &App) -> ApiResult<Response> {
    list_rows(app.store.read(|tx| tx.all(Kind::ResourceGroup))?)
}

/// Deletes a group with everything in it, as `az group delete` does. An empty group goes at once (200).
/// One that holds resources is marked Deleting and emptied by a persisted operation (202): scale sets
/// first (their instances drained and stopped, data disks deleted), then load balancers, gallery
/// versions, definitions, galleries and managed images, then the group itself; a restarted control plane
/// resumes it. Refused with nothing changed (409) while something outside the group uses something in it.
pub fn delete(app: &App, name: &str) -> ApiResult<Response> {
    let id = ResourceId::group(&app.subscription, name);
    let op = app.store.write(|tx| {
        let row = tx.get(&id.to_string())?.ok_or_else(|| ApiError::group_not_found(name))?;
        if tx.all_in_group(name)?.is_empty() {
            tx.delete(&id.to_string())?;
            return Ok(None);
        }
        if is_deleting(&row) {
            return Err(being_deleted(name));
        }
        refuse_outside_users(tx, &id)?;
        set_state(tx, &row, ProvisioningState::Deleting)?;
        Ok::<_, ApiError>(Some(ops::start(tx, &id.to_string(), Owner::DeleteGroup)?))
    })?;
    let Some(op) = op else { return Ok(StatusCode::OK.into_response()) };
    tracing::info!("deleting the resource group '{name}' with everything in it");
    spawn_cascade(app, name, &op);
    ops::accepted(app, &op, StatusCode::ACCEPTED, None)
}

/// Azure's answer to a change inside a group that is being deleted.
pub fn being_deleted(name: &str) -> ApiError {
    ApiError::conflict(
        "ResourceGroupBeingDeleted",
        format!("The resource group '{name}' is being deleted and cannot take this operation."),
    )
}

/// Whether a resource (a group, a scale set) is being deleted, by its document's provisioningState.
pub fn is_deleting(row: &galleon_store::Row) -> bool {
    row.doc.pointer("/properties/provisioningState").and_then(|s| s.as_str()) == Some("Deleting")
}

fn set_state(tx: &galleon_store::Tx<'_>, row: &galleon_store::Row, state: ProvisioningState) -> ApiResult<()> {
    let mut doc: ResourceGroup = row.parse()?;
    doc.properties.provisioning_state = Some(state);
    tx.upsert(&updated_row(row, serde_json::to_value(&doc).map_err(ApiError::internal)?))?;
    Ok(())
}

/// A scale set (or one of its instances) in another group that uses an image, a gallery version or a
/// load balancer of this one would break: refuse, naming it.
fn refuse_outside_users(tx: &galleon_store::Tx<'_>, group: &ResourceId) -> ApiResult<()> {
    let inside = format!("{}/", group.key());
    let name = group.name();
    let refuse = |user: &str| {
        Err(ApiError::conflict(
            "ResourceGroupInUse",
            format!("Resource group '{name}' holds what {user} uses; delete or repoint it first."),
        ))
    };
    for row in tx.all(Kind::ScaleSet)? {
        let key = row.id.to_ascii_lowercase();
        if !key.starts_with(&inside) && row.doc.to_string().to_ascii_lowercase().contains(&inside) {
            return refuse(&format!("the scale set '{}' (in another group)", row.name));
        }
    }
    for (set, instance, doc) in tx.all_instances()? {
        if !set.to_ascii_lowercase().starts_with(&inside) && doc.to_string().to_ascii_lowercase().contains(&inside) {
            let set_name = set.rsplit('/').next().unwrap_or_default().to_string();
            return refuse(&format!("instance {instance} of the scale set '{set_name}' (in another group)"));
        }
    }
    Ok(())
}

fn spawn_cascade(app: &App, name: &str, op: &str) {
    let (task_app, name, op) = (app.clone(), name.to_string(), op.to_string());
    app.tasks.spawn(async move { cascade(task_app, name, op).await });
}

/// Groups whose deletion the control plane stopped in the middle: go on with it.
pub fn resume(app: &App) -> ApiResult<()> {
    let (groups, open) =
        app.store.read(|tx| Ok::<_, ApiError>((tx.all(Kind::ResourceGroup)?, tx.operations_in_progress()?)))?;
    for row in groups.into_iter().filter(is_deleting) {
        let target = row.id.to_ascii_lowercase();
        let op = open.iter().find_map(|(id, doc)| {
            let op: ops::Operation = serde_json::from_value(doc.clone()).ok()?;
            (op.owner == Owner::DeleteGroup && op.target == target).then(|| id.clone())
        });
        let op = match op {
            Some(op) => op,
            None => app.store.write(|tx| ops::start(tx, &row.id, Owner::DeleteGroup))?,
        };
        tracing::info!("resuming the deletion of the resource group '{}'", row.name);
        spawn_cascade(app, &row.name, &op);
    }
    Ok(())
}

/// Empties the group, then deletes it and ends the operation. A failure ends the operation with its
/// error and leaves the group (with what is left in it) as it was before the delete.
async fn cascade(app: App, name: String, op: String) {
    let result = empty_group(&app, &name).await;
    if app.shutdown.is_cancelled() && result.is_ok() {
        return; // Interrupted: `resume` goes on after a restart.
    }
    let finished = blocking(&app, move |app| {
        let id = ResourceId::group(&app.subscription, &name);
        app.store.write(|tx| {
            match &result {
                Ok(()) => {
                    tx.delete(&id.to_string())?;
                    ops::finish(tx, &op, None, false)?;
                }
                Err(e) => {
                    if let Some(row) = tx.get(&id.to_string())? {
                        set_state(tx, &row, ProvisioningState::Succeeded)?;
                    }
                    let detail = galleon_api::ErrorDetail::new(&e.code, e.message.clone());
                    ops::finish(tx, &op, Some(detail), false)?;
                }
            }
            Ok::<_, ApiError>(())
        })?;
        match result {
            Ok(()) => tracing::info!("deleted the resource group '{name}'"),
            Err(e) => tracing::warn!("the deletion of the resource group '{name}' failed: {}", e.message),
        }
        Ok::<_, ApiError>(())
    })
    .await;
    if let Err(e) = finished {
        tracing::warn!("cannot finish deleting a resource group: {}", e.message);
    }
}

/// Deletes what the group holds, in dependency order. `Ok` once it is empty, or when the home shuts down.
async fn empty_group(app: &App, name: &str) -> ApiResult<()> {
    // Scale sets: each delete is an operation of its own; wait until they are all gone. One whose
    // instances are busy (an upgrade's batch) is asked again.
    loop {
        if app.shutdown.is_cancelled() {
            return Ok(());
        }
        let group = name.to_string();
        let left = blocking(app, move |app| {
            let sets = app.store.read(|tx| Ok::<_, ApiError>(tx.in_group(&group, Kind::ScaleSet)?))?;
            for set in sets.iter().filter(|s| !is_deleting(s)) {
                match crate::api::vmss::delete(app, &group, &set.name) {
                    Err(e) if e.status == StatusCode::CONFLICT => {}
                    other => {
                        other?;
                    }
                }
            }
            Ok(sets.len())
        })
        .await?;
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let group = name.to_string();
    blocking(app, move |app| {
        let rows = |kind| app.store.read(|tx| Ok::<_, ApiError>(tx.in_group(&group, kind)?));
        for lb in rows(Kind::LoadBalancer)? {
            crate::api::lb::delete(app, &group, &lb.name)?;
        }
        for v in rows(Kind::GalleryImageVersion)? {
            let id = ResourceId::parse(&v.id).map_err(ApiError::internal)?;
            let [g, d, v] = [0, 1, 2].map(|i| id.names.get(i).cloned().unwrap_or_default());
            crate::api::gallery::delete_version(app, &group, &g, &d, &v)?;
        }
        for d in rows(Kind::GalleryImage)? {
            let id = ResourceId::parse(&d.id).map_err(ApiError::internal)?;
            let [g, d] = [0, 1].map(|i| id.names.get(i).cloned().unwrap_or_default());
            crate::api::gallery::delete_definition(app, &group, &g, &d)?;
        }
        for g in rows(Kind::Gallery)? {
            crate::api::gallery::delete_gallery(app, &group, &g.name)?;
        }
        for i in rows(Kind::Image)? {
            crate::api::images::delete(app, &group, &i.name)?;
        }
        Ok(())
    })
    .await
}
