//! Shapes shared by every resource: errors, lists, long-running operations, references.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The api-version galleon answers with; requests may send any date-shaped version (CONTRACT §1).
pub const API_VERSION: &str = "2025-04-01";

/// The location every resource gets unless the user names one.
pub const DEFAULT_LOCATION: &str = "local";

/// ARM's error envelope: `{"error": {"code", "message", "target", "details"}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub details: Vec<ErrorDetail>,
}

impl ErrorDetail {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ErrorDetail {
        ErrorDetail { code: code.into(), message: message.into(), target: None, details: vec![] }
    }
}

/// A page of a list: `{"value": [...], "nextLink": null}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct List<T> {
    pub value: Vec<T>,
    #[serde(default)]
    pub next_link: Option<String>,
}

impl<T> List<T> {
    pub fn of(value: Vec<T>) -> List<T> {
        List { value, next_link: None }
    }
}

/// A reference to another resource: `{"id": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubResource {
    pub id: String,
}

/// Where a long-running operation stands (`Azure-AsyncOperation` points here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OperationState {
    InProgress,
    Succeeded,
    Failed,
    Canceled,
}

impl OperationState {
    pub fn is_terminal(self) -> bool {
        self != OperationState::InProgress
    }
}

/// The body of `GET …/locations/{location}/operations/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationStatus {
    pub id: String,
    pub name: String,
    pub status: OperationState,
    pub start_time: String,
    #[serde(default)]
    pub end_time: Option<String>,
    #[serde(default)]
    pub error: Option<ErrorDetail>,
}

/// `provisioningState`, PascalCase on every resource (CONTRACT §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ProvisioningState {
    Creating,
    Updating,
    Succeeded,
    Failed,
    Deleting,
}

/// `GET /subscriptions/{id}`: the home's one subscription.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    pub subscription_id: String,
    pub display_name: String,
    pub state: String,
    pub tenant_id: String,
}

/// The envelope every ARM resource shares, around its own `properties`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resource<P: Default> {
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub id: Option<String>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    #[schemars(extend("readOnly" = true))]
    pub kind: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub tags: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub properties: P,
}

/// A named child inside another resource's document (a probe of a load balancer, an extension of a
/// scale set): `id`, `name`, `type` and its own `properties`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Child<P: Default> {
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    #[schemars(extend("readOnly" = true))]
    pub kind: Option<String>,
    #[serde(default)]
    pub properties: P,
}
