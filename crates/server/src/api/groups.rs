//! Resource groups: `PUT|GET|HEAD|DELETE /subscriptions/{s}/resourcegroups/{rg}` and the list.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use galleon_api::group::{ResourceGroup, ResourceGroupProperties};
use galleon_api::{DEFAULT_LOCATION, ProvisioningState};
use galleon_core::ids::ResourceId;
use galleon_core::names::NameKind;
use galleon_store::Kind;

use crate::App;
use crate::error::{ApiError, ApiResult};
use crate::request::ApiRequest;
use crate::resource::{check_name, created_or_ok, json, list as list_rows, new_row, updated_row};

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

/// Deletes an empty group. A group that still holds resources is refused, naming them: deleting
/// running scale sets by accident is worse than one more command.
pub fn delete(app: &App, name: &str) -> ApiResult<Response> {
    let id = ResourceId::group(&app.subscription, name);
    app.store.write(|tx| {
        if tx.get(&id.to_string())?.is_none() {
            return Err(ApiError::group_not_found(name));
        }
        let inside = tx.all_in_group(name)?;
        if !inside.is_empty() {
            let names: Vec<String> =
                inside.iter().take(5).map(|r| format!("{} '{}'", r.kind.as_str(), r.name)).collect();
            return Err(ApiError::conflict(
                "ResourceGroupNotEmpty",
                format!(
                    "Resource group '{name}' still holds {} resource(s) ({}{}); delete them first.",
                    inside.len(),
                    names.join(", "),
                    if inside.len() > 5 { ", …" } else { "" }
                ),
            ));
        }
        tx.delete(&id.to_string())?;
        Ok(())
    })?;
    Ok(StatusCode::OK.into_response())
}
