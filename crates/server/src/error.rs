//! The one mapping from failures to ARM-style HTTP errors: `{"error": {"code", "message", "target"}}`.
//!
//! Handlers return `ApiError`; adapters' errors convert here, once. Internal failures are logged where
//! they are turned into a 500, and their text never includes secrets (callers never put them in).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use galleon_api::{ErrorDetail, ErrorResponse};
use galleon_store::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub target: Option<String>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError { status, code: code.to_string(), message: message.into(), target: None }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::bad_request("InvalidParameter", message)
    }

    pub fn conflict(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// ARM's answer for a resource that does not exist.
    pub fn resource_not_found(resource_type: &str, name: &str, group: &str) -> ApiError {
        ApiError::not_found(
            "ResourceNotFound",
            format!("The Resource '{resource_type}/{name}' under resource group '{group}' was not found."),
        )
    }

    pub fn group_not_found(group: &str) -> ApiError {
        ApiError::not_found("ResourceGroupNotFound", format!("Resource group '{group}' could not be found."))
    }

    pub fn internal(what: impl std::fmt::Display) -> ApiError {
        tracing::error!("internal error: {what}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", what.to_string())
    }

    pub fn with_target(mut self, target: impl Into<String>) -> ApiError {
        self.target = Some(target.into());
        self
    }

    pub fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            code: self.code.clone(),
            message: self.message.clone(),
            target: self.target.clone(),
            details: vec![],
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Exists(id) => ApiError::conflict("Conflict", format!("'{id}' already exists")),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        (status, Json(ErrorResponse { error: self.detail() })).into_response()
    }
}
