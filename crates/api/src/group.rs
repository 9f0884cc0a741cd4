//! Resource groups (`Microsoft.Resources/resourceGroups`): namespaces for everything else.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ProvisioningState, Resource};

pub type ResourceGroup = Resource<ResourceGroupProperties>;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceGroupProperties {
    #[serde(default)]
    #[schemars(extend("readOnly" = true))]
    pub provisioning_state: Option<ProvisioningState>,
}
