//! Managed images (`Microsoft.Compute/images`): an image artifact outside the gallery.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::gallery::{GalleonImageInfo, OsState, OsType};
use crate::{ProvisioningState, Resource};

pub type Image = Resource<ImageProperties>;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageProperties {
    #[serde(default)]
    pub storage_profile: ImageStorageProfile,
    #[serde(default, rename = "hyperVGeneration")]
    pub hyper_v_generation: Option<String>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub provisioning_state: Option<ProvisioningState>,
    #[serde(default)]
    pub galleon: GalleonImageInfo,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageStorageProfile {
    #[serde(default)]
    pub os_disk: ImageOsDisk,
    #[serde(default)]
    pub data_disks: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageOsDisk {
    #[serde(default)]
    pub os_type: Option<OsType>,
    #[serde(default)]
    pub os_state: Option<OsState>,
    /// Where the content came from: `file:///path/to/dir-or-archive`.
    #[serde(default)]
    pub blob_uri: Option<String>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub size_in_bytes: Option<u64>,
}
