//! Long-running operations: what `Azure-AsyncOperation` points at (CONTRACT §1).
//!
//! An operation is created in the same transaction as the work it tracks (an instance's pending action,
//! a rolling upgrade), so it can never be lost or orphaned: after a restart the work resumes and
//! finishes its operation. Failures of its parts accumulate in `error.details`.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use galleon_api::{ErrorDetail, OperationState, OperationStatus};
use galleon_store::Tx;
use serde::{Deserialize, Serialize};

use crate::App;
use crate::clock;
use crate::error::{ApiError, ApiResult};

/// Who finishes an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Owner {
    /// Instance actions: it ends when the last instance action naming it ends.
    Instances,
    /// A scale set being created: as `Instances`, and then the scale set's state follows.
    CreateScaleSet,
    /// A scale set being deleted: as `Instances`, and then the scale set goes.
    DeleteScaleSet,
    /// A rolling upgrade: its driver ends it.
    Upgrade,
    /// An image build: its thread ends it (or, after a restart, `builds::fail_interrupted`).
    Build,
    /// A resource group deleted with what it holds: its cascade ends it (`api::groups`).
    DeleteGroup,
}

/// The stored operation: ARM's status document plus what galleon needs to finish it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    #[serde(flatten)]
    pub status: OperationStatus,
    pub owner: Owner,
    /// The resource it acts on (lower-cased id).
    pub target: String,
}

/// Starts an operation on `target`, in the caller's transaction; returns its id.
pub fn start(tx: &Tx<'_>, target: &str, owner: Owner) -> ApiResult<String> {
    let id = uuid::Uuid::new_v4().to_string();
    let now = clock::now_ms();
    let op = Operation {
        status: OperationStatus {
            id: id.clone(),
            name: id.clone(),
            status: OperationState::InProgress,
            start_time: clock::rfc3339(now),
            end_time: None,
            error: None,
        },
        owner,
        target: target.to_ascii_lowercase(),
    };
    tx.put_operation(&id, target, &serde_json::to_value(&op).map_err(ApiError::internal)?, now)?;
    Ok(id)
}

pub fn get(tx: &Tx<'_>, id: &str) -> ApiResult<Option<Operation>> {
    tx.operation(id)?.map(|v| serde_json::from_value(v).map_err(ApiError::internal)).transpose()
}

fn put(tx: &Tx<'_>, op: &Operation) -> ApiResult<()> {
    let created = 0; // kept: ON CONFLICT only updates the document
    tx.put_operation(&op.status.id, &op.target, &serde_json::to_value(op).map_err(ApiError::internal)?, created)?;
    Ok(())
}

/// Records the failure of one part of an operation (it keeps running until `finish`).
pub fn add_failure(tx: &Tx<'_>, id: &str, detail: ErrorDetail) -> ApiResult<()> {
    let Some(mut op) = get(tx, id)? else { return Ok(()) };
    let err = op.status.error.get_or_insert_with(|| ErrorDetail::new("OperationFailed", ""));
    err.details.push(detail);
    put(tx, &op)
}

/// Ends an operation: Failed if any part failed (or `error` is given), Succeeded otherwise.
pub fn finish(tx: &Tx<'_>, id: &str, error: Option<ErrorDetail>, canceled: bool) -> ApiResult<Option<Operation>> {
    let Some(mut op) = get(tx, id)? else { return Ok(None) };
    if op.status.status.is_terminal() {
        return Ok(Some(op));
    }
    if let Some(e) = error {
        op.status.error = Some(e);
    }
    if let Some(e) = op.status.error.as_mut()
        && e.message.is_empty()
    {
        // One line that names every failed part, for the CLI's `ERROR:` line.
        e.message = e.details.iter().map(|d| d.message.clone()).collect::<Vec<_>>().join("; ");
        if e.details.len() == 1 {
            e.code = e.details[0].code.clone();
        }
    }
    op.status.status = match (&op.status.error, canceled) {
        (_, true) => OperationState::Canceled,
        (Some(_), _) => OperationState::Failed,
        (None, _) => OperationState::Succeeded,
    };
    op.status.end_time = Some(clock::now_rfc3339());
    put(tx, &op)?;
    Ok(Some(op))
}

/// `…/providers/Microsoft.Compute/locations/{location}/operations/{id}`.
pub fn url(app: &App, id: &str) -> String {
    format!(
        "/subscriptions/{}/providers/Microsoft.Compute/locations/{}/operations/{id}",
        app.subscription,
        galleon_api::DEFAULT_LOCATION
    )
}

/// ARM's answer for a started long operation: the status (201 for a PUT that creates, 202 for an
/// action), `Azure-AsyncOperation`, and for 202 `Location` and `Retry-After: 1`.
pub fn accepted(app: &App, id: &str, status: StatusCode, body: Option<serde_json::Value>) -> ApiResult<Response> {
    let url = url(app, id);
    let mut headers = HeaderMap::new();
    let value = HeaderValue::from_str(&url).map_err(ApiError::internal)?;
    headers.insert("azure-asyncoperation", value.clone());
    if status == StatusCode::ACCEPTED {
        headers.insert("location", value);
        headers.insert("retry-after", HeaderValue::from_static("1"));
    }
    Ok(match body {
        Some(b) => (status, headers, axum::Json(b)).into_response(),
        None => (status, headers).into_response(),
    })
}
