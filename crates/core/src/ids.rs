//! ARM resource ids: `/subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}/{type}/{name}[/{type}/{name}]…`.
//!
//! Parsing is case-insensitive (as ARM's); formatting uses the canonical casing of each segment, so an id
//! printed by galleon is always the same string for the same resource. `key()` is the identity to compare.

use std::fmt;

/// A parsed resource id. `types` and `names` pair up: `galleries/g/images/web` is types
/// `[galleries, images]`, names `[g, web]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourceId {
    pub subscription: String,
    pub resource_group: Option<String>,
    pub namespace: Option<String>,
    pub types: Vec<String>,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{input}' is not a resource id: {why}")]
pub struct IdError {
    pub input: String,
    pub why: &'static str,
}

/// Canonical casing of the namespaces and types galleon serves.
const CANONICAL: &[&str] = &[
    "subscriptions",
    "resourceGroups",
    "providers",
    "Microsoft.Compute",
    "Microsoft.Network",
    "galleries",
    "images",
    "versions",
    "virtualMachineScaleSets",
    "virtualMachines",
    "extensions",
    "loadBalancers",
    "frontendIPConfigurations",
    "backendAddressPools",
    "loadBalancingRules",
    "probes",
    "inboundNatPools",
    "inboundNatRules",
    "networkInterfaces",
    "ipConfigurations",
    "locations",
    "operations",
];

/// The canonical spelling of a namespace or type segment (unknown ones are kept as given).
pub fn canonical(segment: &str) -> &str {
    CANONICAL.iter().find(|c| c.eq_ignore_ascii_case(segment)).copied().unwrap_or(segment)
}

impl ResourceId {
    /// A resource in a group: `resource(sub, rg, "Microsoft.Compute", &[("galleries", "g")])`.
    pub fn new(subscription: &str, resource_group: &str, namespace: &str, parts: &[(&str, &str)]) -> ResourceId {
        ResourceId {
            subscription: subscription.to_string(),
            resource_group: Some(resource_group.to_string()),
            namespace: Some(canonical(namespace).to_string()),
            types: parts.iter().map(|(t, _)| canonical(t).to_string()).collect(),
            names: parts.iter().map(|(_, n)| n.to_string()).collect(),
        }
    }

    /// A resource group's id.
    pub fn group(subscription: &str, resource_group: &str) -> ResourceId {
        ResourceId {
            subscription: subscription.to_string(),
            resource_group: Some(resource_group.to_string()),
            namespace: None,
            types: vec![],
            names: vec![],
        }
    }

    /// The id of a child: `self/{type}/{name}`.
    pub fn child(&self, ty: &str, name: &str) -> ResourceId {
        let mut id = self.clone();
        id.types.push(canonical(ty).to_string());
        id.names.push(name.to_string());
        id
    }

    /// The parent resource (`…/images/web` for `…/images/web/versions/1.0.0`), if any.
    pub fn parent(&self) -> Option<ResourceId> {
        if self.types.len() < 2 {
            return None;
        }
        let mut id = self.clone();
        id.types.pop();
        id.names.pop();
        Some(id)
    }

    /// The resource's own name (the group's name for a group id).
    pub fn name(&self) -> &str {
        self.names.last().or(self.resource_group.as_ref()).map(String::as_str).unwrap_or(&self.subscription)
    }

    /// ARM's `type`: `Microsoft.Compute/galleries/images/versions`.
    pub fn resource_type(&self) -> String {
        match &self.namespace {
            Some(ns) => {
                std::iter::once(ns.as_str()).chain(self.types.iter().map(String::as_str)).collect::<Vec<_>>().join("/")
            }
            None => "Microsoft.Resources/resourceGroups".to_string(),
        }
    }

    /// Whether the types chain is exactly `types` (case-insensitive), in namespace `ns`.
    pub fn is(&self, ns: &str, types: &[&str]) -> bool {
        self.namespace.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(ns))
            && self.types.len() == types.len()
            && self.types.iter().zip(types).all(|(a, b)| a.eq_ignore_ascii_case(b))
    }

    /// The case-insensitive identity.
    pub fn key(&self) -> String {
        self.to_string().to_ascii_lowercase()
    }

    pub fn parse(input: &str) -> Result<ResourceId, IdError> {
        let err = |why| IdError { input: input.to_string(), why };
        let rest = input.strip_prefix('/').ok_or_else(|| err("it must start with '/subscriptions/'"))?;
        let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        if segs.iter().any(|s| s.is_empty()) {
            return Err(err("it has an empty segment"));
        }
        let mut it = segs.into_iter();
        match (it.next(), it.next()) {
            (Some(s), Some(sub)) if s.eq_ignore_ascii_case("subscriptions") => {
                let mut id = ResourceId {
                    subscription: sub.to_string(),
                    resource_group: None,
                    namespace: None,
                    types: vec![],
                    names: vec![],
                };
                let Some(next) = it.next() else { return Ok(id) };
                if next.eq_ignore_ascii_case("resourceGroups") {
                    id.resource_group = Some(it.next().ok_or_else(|| err("it names no resource group"))?.to_string());
                    let Some(p) = it.next() else { return Ok(id) };
                    if !p.eq_ignore_ascii_case("providers") {
                        return Err(err("expected 'providers' after the resource group"));
                    }
                } else if !next.eq_ignore_ascii_case("providers") {
                    return Err(err("expected 'resourceGroups' or 'providers' after the subscription"));
                }
                id.namespace =
                    Some(canonical(it.next().ok_or_else(|| err("it names no provider namespace"))?).to_string());
                let rest: Vec<&str> = it.collect();
                if rest.is_empty() || !rest.len().is_multiple_of(2) {
                    return Err(err("types and names must come in pairs after the namespace"));
                }
                for pair in rest.chunks(2) {
                    id.types.push(canonical(pair[0]).to_string());
                    id.names.push(pair[1].to_string());
                }
                Ok(id)
            }
            _ => Err(err("it must start with '/subscriptions/'")),
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/subscriptions/{}", self.subscription)?;
        if let Some(rg) = &self.resource_group {
            write!(f, "/resourceGroups/{rg}")?;
        }
        if let Some(ns) = &self.namespace {
            write!(f, "/providers/{ns}")?;
            for (t, n) in self.types.iter().zip(&self.names) {
                write!(f, "/{t}/{n}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively_and_prints_canonically() {
        let id = ResourceId::parse(
            "/subscriptions/S/resourcegroups/RG/providers/microsoft.compute/Galleries/g/IMAGES/web/versions/1.0.0",
        )
        .unwrap();
        assert_eq!(
            id.to_string(),
            "/subscriptions/S/resourceGroups/RG/providers/Microsoft.Compute/galleries/g/images/web/versions/1.0.0"
        );
        assert_eq!(id.resource_type(), "Microsoft.Compute/galleries/images/versions");
        assert!(id.is("Microsoft.Compute", &["galleries", "images", "versions"]));
        assert_eq!(id.name(), "1.0.0");
        assert_eq!(id.parent().unwrap().name(), "web");
        assert_eq!(id.key(), id.to_string().to_lowercase());
    }

    #[test]
    fn refuses_what_is_not_an_id() {
        for bad in [
            "",
            "g/web",
            "/subscriptions",
            "/subscriptions/S/resourceGroups/RG/providers/NS/galleries",
            "/subscriptions/S/foo/x",
            "/subscriptions//resourceGroups/x",
        ] {
            assert!(ResourceId::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn groups_and_subscription_level_ids() {
        let g = ResourceId::parse("/subscriptions/S/resourceGroups/rg").unwrap();
        assert_eq!(g, ResourceId::group("S", "rg"));
        assert_eq!(g.resource_type(), "Microsoft.Resources/resourceGroups");
        let op =
            ResourceId::parse("/subscriptions/S/providers/Microsoft.Compute/locations/local/operations/x").unwrap();
        assert_eq!(op.resource_group, None);
        assert_eq!(op.name(), "x");
    }
}
