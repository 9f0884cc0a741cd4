//! JSON Schemas of the documents users edit, generated from the wire types themselves, so `--set`
//! paths, types and read-only fields can never drift from what the server accepts.

use serde_json::Value;

/// The resource kinds whose documents the CLI edits generically (`update --set`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Editable {
    ResourceGroup,
    Gallery,
    GalleryImage,
    GalleryImageVersion,
    Image,
    ScaleSet,
    ScaleSetVm,
    LoadBalancer,
}

impl Editable {
    /// What the user calls it, for error messages.
    pub fn noun(self) -> &'static str {
        match self {
            Editable::ResourceGroup => "resource group",
            Editable::Gallery => "gallery",
            Editable::GalleryImage => "image definition",
            Editable::GalleryImageVersion => "image version",
            Editable::Image => "image",
            Editable::ScaleSet => "scale set",
            Editable::ScaleSetVm => "scale set instance",
            Editable::LoadBalancer => "load balancer",
        }
    }
}

/// The schema of a kind's ARM document, as JSON (draft 2020-12, `$defs` and `$ref`).
pub fn of(kind: Editable) -> Value {
    let schema = match kind {
        Editable::ResourceGroup => schemars::schema_for!(crate::group::ResourceGroup),
        Editable::Gallery => schemars::schema_for!(crate::gallery::Gallery),
        Editable::GalleryImage => schemars::schema_for!(crate::gallery::GalleryImage),
        Editable::GalleryImageVersion => schemars::schema_for!(crate::gallery::GalleryImageVersion),
        Editable::Image => schemars::schema_for!(crate::image::Image),
        Editable::ScaleSet => schemars::schema_for!(crate::vmss::VirtualMachineScaleSet),
        Editable::ScaleSetVm => schemars::schema_for!(crate::vmss::VirtualMachineScaleSetVm),
        Editable::LoadBalancer => schemars::schema_for!(crate::lb::LoadBalancer),
    };
    schema.to_value()
}
