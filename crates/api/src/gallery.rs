//! The gallery: galleries, image definitions and image versions (`Microsoft.Compute/galleries/…`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ProvisioningState, Resource, SubResource};

pub type Gallery = Resource<GalleryProperties>;
pub type GalleryImage = Resource<GalleryImageProperties>;
pub type GalleryImageVersion = Resource<GalleryImageVersionProperties>;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GalleryProperties {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub identifier: Option<GalleryIdentifier>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub provisioning_state: Option<ProvisioningState>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GalleryIdentifier {
    pub unique_name: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OsType {
    #[default]
    Linux,
    Windows,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OsState {
    #[default]
    Generalized,
    Specialized,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GalleryImageProperties {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub os_type: Option<OsType>,
    #[serde(default)]
    pub os_state: Option<OsState>,
    #[serde(default, rename = "hyperVGeneration")]
    pub hyper_v_generation: Option<String>,
    #[serde(default)]
    pub identifier: Option<GalleryImageIdentifier>,
    #[serde(default)]
    pub end_of_life_date: Option<String>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub provisioning_state: Option<ProvisioningState>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GalleryImageIdentifier {
    pub publisher: String,
    pub offer: String,
    pub sku: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GalleryImageVersionProperties {
    #[serde(default)]
    pub publishing_profile: PublishingProfile,
    #[serde(default)]
    pub storage_profile: VersionStorageProfile,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub provisioning_state: Option<ProvisioningState>,
    /// What galleon adds to ARM's version: the content digest, the entrypoint, and revocation.
    #[serde(default)]
    pub galleon: GalleonImageInfo,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishingProfile {
    #[serde(default)]
    pub exclude_from_latest: bool,
    #[serde(default)]
    pub end_of_life_date: Option<String>,
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub published_date: Option<String>,
    #[serde(default)]
    pub replica_count: Option<u32>,
    #[serde(default)]
    pub storage_account_type: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionStorageProfile {
    /// A managed image to publish (`…/Microsoft.Compute/images/{name}`).
    #[serde(default)]
    pub source: Option<VersionSource>,
    #[serde(default)]
    pub os_disk_image: Option<OsDiskImage>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionSource {
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OsDiskImage {
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub size_in_bytes: Option<u64>,
    #[serde(default)]
    pub host_caching: Option<String>,
    /// Where the content came from: `file:///path/to/dir-or-archive` (ARM's VHD `source.uri`).
    #[serde(default)]
    pub source: Option<DiskSource>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskSource {
    #[serde(default)]
    pub uri: Option<String>,
}

/// galleon's own fields on images and versions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GalleonImageInfo {
    /// `sha256:…` of the image manifest: equal digests are the same content.
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub digest: Option<String>,
    /// The command an instance runs, relative to the image root; `start` unless given.
    #[serde(default)]
    pub entrypoint: Option<String>,
    /// A revoked version is never resolved as latest and never started again.
    #[serde(default)]
    pub revoked: bool,
}

impl From<&str> for SubResource {
    fn from(id: &str) -> SubResource {
        SubResource { id: id.to_string() }
    }
}
