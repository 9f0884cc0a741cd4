//! `GET …/locations/{location}/operations/{id}`: where a long-running operation stands.

use axum::http::StatusCode;
use axum::response::Response;

use crate::App;
use crate::error::{ApiError, ApiResult};
use crate::resource::json;

pub fn get(app: &App, id: &str) -> ApiResult<Response> {
    let doc = app.store.read(|tx| tx.operation(id))?;
    let doc =
        doc.ok_or_else(|| ApiError::not_found("OperationNotFound", format!("The operation '{id}' was not found.")))?;
    json(StatusCode::OK, &doc)
}
