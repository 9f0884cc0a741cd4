//! Image builds (galleon's own endpoint, `…/providers/Galleon.Images/builds`): a Packer-style template run
//! by the control plane, and the log a client follows while it runs.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ErrorDetail, OperationState};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildRequest {
    /// The template, Packer's JSON shape.
    pub template: serde_json::Value,
    /// `-var NAME=VALUE`, in command-line order.
    #[serde(default)]
    pub vars: Vec<(String, String)>,
    /// `-var-file`s in command-line order: (path, content).
    #[serde(default)]
    pub var_files: Vec<(String, serde_json::Value)>,
    /// The client's environment, for `{{env}}` in variable defaults; used for this build only, never kept.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The client's working directory: relative paths in the template are relative to it, as in Packer.
    pub cwd: String,
    /// `cleanup` (default) removes the working root of a failed build; `abort` keeps it to look at.
    #[serde(default)]
    pub on_error: Option<String>,
    /// The group a managed image goes to when the template names none.
    #[serde(default)]
    pub default_group: Option<String>,
}

/// `GET …/builds/{id}/log?offset=N`: the lines from `offset`, and where the build stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildLog {
    pub lines: Vec<String>,
    /// The offset to ask for next.
    pub next: usize,
    pub status: Option<OperationState>,
    #[serde(default)]
    pub error: Option<ErrorDetail>,
}
