//! Helpers every resource handler shares: finding groups, parents and rows with ARM's errors, and
//! turning stored rows into answers.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use galleon_core::ids::ResourceId;
use galleon_store::{Kind, Row, Tx};
use serde::Serialize;

use crate::clock;
use crate::error::{ApiError, ApiResult};

/// The group row, or ARM's `ResourceGroupNotFound`.
pub fn require_group(tx: &Tx<'_>, sub: &str, group: &str) -> ApiResult<Row> {
    tx.get(&ResourceId::group(sub, group).to_string())?.ok_or_else(|| ApiError::group_not_found(group))
}

/// The rows of `kind` in a group (which must exist), or in the whole subscription: what a list answers.
pub fn rows_in(tx: &Tx<'_>, sub: &str, group: Option<&str>, kind: Kind) -> ApiResult<Vec<Row>> {
    match group {
        Some(group) => {
            require_group(tx, sub, group)?;
            Ok(tx.in_group(group, kind)?)
        }
        None => Ok(tx.all(kind)?),
    }
}

/// The row of `id`, which must be of `kind`; otherwise the precise ARM error: the group, then each
/// parent, then the resource itself.
pub fn require(tx: &Tx<'_>, id: &ResourceId, kind: Kind) -> ApiResult<Row> {
    let group = id.resource_group.as_deref().unwrap_or_default();
    require_group(tx, &id.subscription, group)?;
    if let Some(parent) = id.parent() {
        let parent_kind = parent_kind(kind);
        if tx.get(&parent.to_string())?.filter(|r| Some(r.kind) == parent_kind).is_none() {
            return Err(ApiError::not_found(
                "ParentResourceNotFound",
                format!(
                    "Can not perform requested operation on nested resource. Parent resource '{}' not found.",
                    parent.names.join("/")
                ),
            ));
        }
    }
    tx.get(&id.to_string())?
        .filter(|r| r.kind == kind)
        .ok_or_else(|| ApiError::resource_not_found(&id.resource_type(), &id.names.join("/"), group))
}

/// The parent row of a nested id (which must exist), found as `require` would.
pub fn require_parent(tx: &Tx<'_>, id: &ResourceId, kind: Kind) -> ApiResult<Row> {
    let parent = id.parent().ok_or_else(|| ApiError::internal("a nested resource without a parent"))?;
    let pk = parent_kind(kind).ok_or_else(|| ApiError::internal("a nested kind without a parent kind"))?;
    require(tx, &parent, pk)
}

fn parent_kind(kind: Kind) -> Option<Kind> {
    match kind {
        Kind::GalleryImage => Some(Kind::Gallery),
        Kind::GalleryImageVersion => Some(Kind::GalleryImage),
        _ => None,
    }
}

/// A new row for `id` (its group and parent derived from the id).
pub fn new_row(kind: Kind, id: &ResourceId, doc: serde_json::Value) -> Row {
    let now = clock::now_ms();
    Row {
        kind,
        id: id.to_string(),
        group: id.resource_group.clone().unwrap_or_default(),
        parent: id.parent().map(|p| p.to_string()),
        name: id.name().to_string(),
        doc,
        created_ms: now,
        updated_ms: now,
    }
}

/// Replaces the document of an existing row, keeping its identity and creation time.
pub fn updated_row(existing: &Row, doc: serde_json::Value) -> Row {
    Row { doc, updated_ms: clock::now_ms(), ..existing.clone() }
}

/// A JSON answer with a status.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> ApiResult<Response> {
    let value = serde_json::to_value(body).map_err(ApiError::internal)?;
    Ok((status, Json(value)).into_response())
}

/// `{"value": [...]}` of the rows' documents.
pub fn list(rows: Vec<Row>) -> ApiResult<Response> {
    let value: Vec<serde_json::Value> = rows.into_iter().map(|r| r.doc).collect();
    json(StatusCode::OK, &galleon_api::List::of(value))
}

/// 201 for a resource just made, 200 for one replaced (ARM's PUT answers).
pub fn created_or_ok(created: bool) -> StatusCode {
    if created { StatusCode::CREATED } else { StatusCode::OK }
}

/// Checks a name and maps its error to ARM's `InvalidResourceName`.
pub fn check_name(kind: galleon_core::names::NameKind, name: &str) -> ApiResult<()> {
    galleon_core::names::validate(kind, name).map_err(|e| ApiError::bad_request("InvalidResourceName", e.to_string()))
}

/// The location a new resource gets: the one asked for, else its group's.
pub fn location(asked: Option<String>, group: &Row) -> String {
    asked.filter(|l| !l.is_empty()).unwrap_or_else(|| {
        group.doc.get("location").and_then(|l| l.as_str()).unwrap_or(galleon_api::DEFAULT_LOCATION).to_string()
    })
}
