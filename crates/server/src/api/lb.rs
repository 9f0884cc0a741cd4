//! Load balancers: `…/Microsoft.Network/loadBalancers/{name}` (one document holding frontends, pools,
//! probes, rules and NAT pools, PUT whole as `az` does), its children read one by one
//! (`/probes/{p}`, `/loadBalancingRules/{r}`, …, `/inboundNatRules/{pool}.{instance}`), and `/metrics`.
//!
//! The stored document is what the user asked for, normalised (ids, defaults, references checked);
//! answers add what is computed: each frontend's address, back-references, the pools' members and the
//! inbound NAT rules of the scale sets in its NAT pools. The data plane's configuration is built from
//! the same membership (`members`).

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use galleon_api::lb::{LoadBalancer, LoadBalancerProperties, NatRuleProperties, ProbeProtocol, RuleProtocol};
use galleon_api::vmss::VirtualMachineScaleSet;
use galleon_api::{Child, ProvisioningState, SubResource};
use galleon_core::ids::ResourceId;
use galleon_core::names::NameKind;
use galleon_store::{Kind, Tx};

use crate::App;
use crate::error::{ApiError, ApiResult};
use crate::fleet::ScaleSet;
use crate::fleet::record::InstanceRecord;
use crate::request::ApiRequest;
use crate::resource::{
    check_name, created_or_ok, json, location, new_row, require, require_group, rows_in, updated_row,
};

const TYPE: &str = "Microsoft.Network/loadBalancers";

pub fn id(app: &App, rg: &str, name: &str) -> ResourceId {
    ResourceId::new(&app.subscription, rg, "Microsoft.Network", &[("loadBalancers", name)])
}

fn frontend_owner(lb: &str, frontend: &str) -> String {
    format!("lb:{}/{}", lb.to_ascii_lowercase(), frontend.to_ascii_lowercase())
}

/// An instance in one of a load balancer's pools.
pub struct Member {
    pub set: std::sync::Arc<ScaleSet>,
    pub rec: InstanceRecord,
    /// The backend pools (names, lower-cased) and NAT pools it is in.
    pub pools: BTreeSet<String>,
    pub nat_pools: BTreeSet<String>,
    /// Its NIC IP configuration's id, as ARM names it.
    pub ip_config: String,
}

/// The instances of every scale set whose model puts them in a pool of load balancer `lb` (an id).
pub fn members(tx: &Tx<'_>, lb: &ResourceId) -> ApiResult<Vec<Member>> {
    let lb_key = lb.key();
    let mut out = vec![];
    for row in tx.all(Kind::ScaleSet)? {
        let doc: VirtualMachineScaleSet = row.parse()?;
        let (backends, nats) = crate::net::memberships(&doc);
        let in_lb = |ids: &[String]| -> BTreeSet<String> {
            ids.iter()
                .filter_map(|p| ResourceId::parse(p).ok())
                .filter(|p| p.parent().is_some_and(|l| l.key() == lb_key))
                .map(|p| p.name().to_ascii_lowercase())
                .collect()
        };
        let (pools, nat_pools) = (in_lb(&backends), in_lb(&nats));
        if pools.is_empty() && nat_pools.is_empty() {
            continue;
        }
        let set = std::sync::Arc::new(ScaleSet::of(&doc, &row.id)?);
        let (nic, ipc) = nic_names(&doc, &set.name);
        for rec in set.records_in(tx)? {
            let ip_config = format!("{}/networkInterfaces/{nic}/ipConfigurations/{ipc}", set.instance_id(rec.id));
            out.push(Member { set: set.clone(), rec, pools: pools.clone(), nat_pools: nat_pools.clone(), ip_config });
        }
    }
    Ok(out)
}

fn nic_names(doc: &VirtualMachineScaleSet, set: &str) -> (String, String) {
    let nic = doc
        .properties
        .virtual_machine_profile
        .as_ref()
        .and_then(|p| p.network_profile.as_ref())
        .and_then(|n| n.network_interface_configurations.as_ref())
        .and_then(|n| n.first());
    let nic_name = nic.and_then(|n| n.name.clone()).unwrap_or_else(|| format!("{set}Nic"));
    let ipc = nic
        .and_then(|n| n.properties.ip_configurations.as_ref())
        .and_then(|i| i.first())
        .and_then(|i| i.name.clone())
        .unwrap_or_else(|| format!("{set}IPConfig"));
    (nic_name, ipc)
}

/// The NAT frontend port of an instance in a pool: the range's start plus its instance id (stable, as
/// ids are never reused); `None` past the range's end.
pub fn nat_port(start: u16, end: u16, instance: u32) -> Option<u16> {
    let port = u32::from(start) + instance;
    (port <= u32::from(end)).then(|| u16::try_from(port).ok()).flatten()
}

fn child_id(lb: &ResourceId, collection: &str, name: &str) -> String {
    format!("{lb}/{collection}/{name}")
}

/// A reference to a child of this load balancer, by id (or by name, as some clients send), made canonical.
fn reference(
    lb: &ResourceId,
    collection: &str,
    names: &[String],
    r: &SubResource,
    what: &str,
) -> ApiResult<SubResource> {
    let name = r.id.rsplit('/').next().unwrap_or_default();
    let same_lb = r.id.to_ascii_lowercase().starts_with(&format!("{}/{}/", lb.key(), collection.to_ascii_lowercase()))
        || !r.id.contains('/');
    match names.iter().find(|n| n.eq_ignore_ascii_case(name)) {
        Some(n) if same_lb => Ok(SubResource { id: child_id(lb, collection, n) }),
        _ => Err(ApiError::invalid(format!(
            "{what} refers to '{}', which is not one of this load balancer's {collection}.",
            r.id
        ))),
    }
}

fn names<P: Default>(children: &[Child<P>], collection: &str) -> ApiResult<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut out = vec![];
    for c in children {
        let name = c
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::invalid(format!("Every entry of {collection} needs a name.")))?;
        check_name(NameKind::Resource, &name)?;
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(ApiError::invalid(format!("The name '{name}' is used twice in {collection}.")));
        }
        out.push(name);
    }
    Ok(out)
}

/// Checks and completes a load balancer document: ids, defaults, references, ports that do not clash.
fn normalize(lb: &ResourceId, mut p: LoadBalancerProperties) -> ApiResult<LoadBalancerProperties> {
    if p.frontend_ip_configurations.is_empty() {
        p.frontend_ip_configurations.push(Child { name: Some("loadBalancerFrontEnd".into()), ..Default::default() });
    }
    let fe = names(&p.frontend_ip_configurations, "frontendIPConfigurations")?;
    let pools = names(&p.backend_address_pools, "backendAddressPools")?;
    let probes = names(&p.probes, "probes")?;
    names(&p.load_balancing_rules, "loadBalancingRules")?;
    names(&p.inbound_nat_pools, "inboundNatPools")?;
    let first_fe = SubResource { id: child_id(lb, "frontendIPConfigurations", &fe[0]) };
    let stamp = |c: &mut Option<String>, k: &mut Option<String>, collection: &str, name: &str| {
        *c = Some(child_id(lb, collection, name));
        *k = Some(format!("{TYPE}/{collection}"));
    };
    for f in &mut p.frontend_ip_configurations {
        let name = f.name.clone().unwrap_or_default();
        stamp(&mut f.id, &mut f.kind, "frontendIPConfigurations", &name);
        f.properties.private_ip_allocation_method = Some("Static".into());
        f.properties.provisioning_state = Some(ProvisioningState::Succeeded);
        f.properties.load_balancing_rules = None;
        f.properties.inbound_nat_pools = None;
    }
    for b in &mut p.backend_address_pools {
        let name = b.name.clone().unwrap_or_default();
        stamp(&mut b.id, &mut b.kind, "backendAddressPools", &name);
        b.properties.backend_ip_configurations = None;
        b.properties.load_balancing_rules = None;
        b.properties.provisioning_state = Some(ProvisioningState::Succeeded);
    }
    for pr in &mut p.probes {
        let name = pr.name.clone().unwrap_or_default();
        stamp(&mut pr.id, &mut pr.kind, "probes", &name);
        let q = &mut pr.properties;
        let protocol = q.protocol.unwrap_or_default();
        q.protocol = Some(protocol);
        let port = q.port.ok_or_else(|| ApiError::invalid(format!("The probe '{name}' needs a port.")))?;
        if port == 0 {
            return Err(ApiError::invalid(format!("The probe '{name}' needs a port from 1 to 65535.")));
        }
        if protocol != ProbeProtocol::Tcp {
            let path = q.request_path.get_or_insert_with(|| "/".into());
            if !path.starts_with('/') {
                return Err(ApiError::invalid(format!(
                    "The probe '{name}': requestPath '{path}' must start with '/'."
                )));
            }
        } else {
            q.request_path = None;
        }
        let interval = *q.interval_in_seconds.get_or_insert(15);
        if !(1..=3600).contains(&interval) {
            return Err(ApiError::invalid(format!(
                "The probe '{name}': intervalInSeconds must be from 1 to 3600 (galleon allows 1 s so tests run fast)."
            )));
        }
        let n = *q.number_of_probes.get_or_insert(2);
        if n == 0 || n > 100 || q.probe_threshold.is_some_and(|t| t == 0 || t > 100) {
            return Err(ApiError::invalid(format!(
                "The probe '{name}': numberOfProbes and probeThreshold must be from 1 to 100."
            )));
        }
        q.load_balancing_rules = None;
        q.provisioning_state = Some(ProvisioningState::Succeeded);
    }
    // Every listening port of a frontend is used once.
    let mut ports: BTreeMap<(String, u16), String> = BTreeMap::new();
    let mut claim = |fe: &str, port: u16, by: &str| -> ApiResult<()> {
        match ports.insert((fe.to_ascii_lowercase(), port), by.to_string()) {
            Some(other) => Err(ApiError::invalid(format!(
                "Port {port} of the frontend '{fe}' is used by both '{other}' and '{by}'."
            ))),
            None => Ok(()),
        }
    };
    for r in &mut p.load_balancing_rules {
        let name = r.name.clone().unwrap_or_default();
        stamp(&mut r.id, &mut r.kind, "loadBalancingRules", &name);
        let q = &mut r.properties;
        let what = format!("The rule '{name}'");
        let protocol = q.protocol.unwrap_or_default();
        if matches!(protocol, RuleProtocol::Udp | RuleProtocol::All) {
            return Err(ApiError::invalid(format!(
                "{what}: galleon forwards Tcp (L4) and Http (L7), not {protocol:?}."
            )));
        }
        q.protocol = Some(protocol);
        let fp = q
            .frontend_port
            .filter(|p| *p > 0)
            .ok_or_else(|| ApiError::invalid(format!("{what} needs a frontendPort from 1 to 65535.")))?;
        q.backend_port
            .filter(|p| *p > 0)
            .ok_or_else(|| ApiError::invalid(format!("{what} needs a backendPort from 1 to 65535.")))?;
        let f = q.frontend_ip_configuration.clone().unwrap_or_else(|| first_fe.clone());
        let f = reference(lb, "frontendIPConfigurations", &fe, &f, &what)?;
        let pool = q
            .backend_address_pool
            .clone()
            .ok_or_else(|| ApiError::invalid(format!("{what} needs a backendAddressPool.")))?;
        q.backend_address_pool = Some(reference(lb, "backendAddressPools", &pools, &pool, &what)?);
        if let Some(probe) = q.probe.clone() {
            q.probe = Some(reference(lb, "probes", &probes, &probe, &what)?);
        }
        claim(f.id.rsplit('/').next().unwrap_or_default(), fp, &name)?;
        q.frontend_ip_configuration = Some(f);
        q.load_distribution.get_or_insert_default();
        let idle = *q.idle_timeout_in_minutes.get_or_insert(4);
        if !(4..=100).contains(&idle) {
            return Err(ApiError::invalid(format!("{what}: idleTimeoutInMinutes must be from 4 to 100, as in Azure.")));
        }
        let drain = *q.drain_timeout_in_seconds.get_or_insert(30);
        if drain > 3600 {
            return Err(ApiError::invalid(format!("{what}: drainTimeoutInSeconds must be at most 3600.")));
        }
        q.enable_floating_ip.get_or_insert(false);
        q.enable_tcp_reset.get_or_insert(false);
        q.provisioning_state = Some(ProvisioningState::Succeeded);
    }
    for n in &mut p.inbound_nat_pools {
        let name = n.name.clone().unwrap_or_default();
        stamp(&mut n.id, &mut n.kind, "inboundNatPools", &name);
        let q = &mut n.properties;
        let what = format!("The inbound NAT pool '{name}'");
        let protocol = q.protocol.unwrap_or_default();
        if protocol != RuleProtocol::Tcp {
            return Err(ApiError::invalid(format!("{what}: galleon's NAT pools forward Tcp.")));
        }
        q.protocol = Some(protocol);
        let (Some(start), Some(end)) = (q.frontend_port_range_start, q.frontend_port_range_end) else {
            return Err(ApiError::invalid(format!("{what} needs frontendPortRangeStart and frontendPortRangeEnd.")));
        };
        if start == 0 || end < start {
            return Err(ApiError::invalid(format!(
                "{what}: the frontend port range {start}-{end} is empty or invalid."
            )));
        }
        q.backend_port.filter(|p| *p > 0).ok_or_else(|| ApiError::invalid(format!("{what} needs a backendPort.")))?;
        let f = q.frontend_ip_configuration.clone().unwrap_or_else(|| first_fe.clone());
        let f = reference(lb, "frontendIPConfigurations", &fe, &f, &what)?;
        for port in start..=end {
            claim(f.id.rsplit('/').next().unwrap_or_default(), port, &name)?;
        }
        q.frontend_ip_configuration = Some(f);
        q.idle_timeout_in_minutes.get_or_insert(4);
        q.provisioning_state = Some(ProvisioningState::Succeeded);
    }
    p.inbound_nat_rules = vec![];
    p.provisioning_state = Some(ProvisioningState::Succeeded);
    Ok(p)
}

/// The pools and probes scale sets use must stay (they are removed from the scale set first).
fn refuse_removing_used(tx: &Tx<'_>, lb: &ResourceId, p: &LoadBalancerProperties) -> ApiResult<()> {
    let lb_key = lb.key();
    let has = |collection: &str, name: &str| -> bool {
        let lower = name.to_ascii_lowercase();
        match collection {
            "backendAddressPools" => p
                .backend_address_pools
                .iter()
                .any(|b| b.name.as_deref().is_some_and(|n| n.to_ascii_lowercase() == lower)),
            "inboundNatPools" => {
                p.inbound_nat_pools.iter().any(|b| b.name.as_deref().is_some_and(|n| n.to_ascii_lowercase() == lower))
            }
            _ => p.probes.iter().any(|b| b.name.as_deref().is_some_and(|n| n.to_ascii_lowercase() == lower)),
        }
    };
    for row in tx.all(Kind::ScaleSet)? {
        let doc: VirtualMachineScaleSet = row.parse()?;
        let (backends, nats) = crate::net::memberships(&doc);
        let probe = doc
            .properties
            .virtual_machine_profile
            .as_ref()
            .and_then(|v| v.network_profile.as_ref())
            .and_then(|n| n.health_probe.as_ref())
            .map(|h| h.id.clone());
        let uses = backends
            .iter()
            .map(|b| (b, "backendAddressPools"))
            .chain(nats.iter().map(|n| (n, "inboundNatPools")))
            .chain(probe.iter().map(|p| (p, "probes")));
        for (used, collection) in uses {
            let Ok(rid) = ResourceId::parse(used) else { continue };
            if rid.parent().is_some_and(|l| l.key() == lb_key) && !has(collection, rid.name()) {
                return Err(ApiError::conflict(
                    "InUseByScaleSet",
                    format!(
                        "The {collection} entry '{}' is used by the scale set '{}'; change the scale set first.",
                        rid.name(),
                        row.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

pub fn put(app: &App, rg: &str, name: &str, req: &ApiRequest) -> ApiResult<Response> {
    check_name(NameKind::Resource, name)?;
    let body: LoadBalancer = req.json()?;
    let lid = id(app, rg, name);
    let props = normalize(&lid, body.properties.clone())?;
    let (created, lid) = app.store.write(|tx| {
        let group = require_group(tx, &app.subscription, rg)?;
        let existing = tx.get(&lid.to_string())?;
        if existing.is_some() && req.create_only() {
            return Err(ApiError::conflict("ResourceExists", format!("The load balancer '{name}' already exists.")));
        }
        let lid = match &existing {
            Some(r) => ResourceId::parse(&r.id).map_err(ApiError::internal)?,
            None => lid.clone(),
        };
        let props = normalize(&lid, props.clone())?;
        refuse_removing_used(tx, &lid, &props)?;
        // Each frontend gets its own loopback address, kept while it exists.
        for f in &props.frontend_ip_configurations {
            let owner = frontend_owner(&lid.to_string(), f.name.as_deref().unwrap_or_default());
            tx.allocate_address(&owner, app.block.first(), app.block.last())?.ok_or_else(|| {
                ApiError::conflict("AddressSpaceExhausted", "The home's loopback block has no free address.")
            })?;
        }
        let old: Option<LoadBalancer> = existing.as_ref().map(|r| r.parse()).transpose()?;
        for f in old.iter().flat_map(|o| o.properties.frontend_ip_configurations.iter()) {
            let fname = f.name.as_deref().unwrap_or_default();
            if !props
                .frontend_ip_configurations
                .iter()
                .any(|n| n.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(fname)))
            {
                tx.release_address(&frontend_owner(&lid.to_string(), fname))?;
            }
        }
        let doc = LoadBalancer {
            id: Some(lid.to_string()),
            name: Some(lid.name().to_string()),
            kind: Some(TYPE.into()),
            location: Some(location(body.location.clone().or(old.as_ref().and_then(|o| o.location.clone())), &group)),
            tags: body.tags.clone(),
            properties: LoadBalancerProperties {
                resource_guid: old
                    .as_ref()
                    .and_then(|o| o.properties.resource_guid.clone())
                    .or_else(|| Some(uuid::Uuid::new_v4().to_string())),
                ..props
            },
        };
        let value = serde_json::to_value(&doc).map_err(ApiError::internal)?;
        match &existing {
            Some(row) => tx.upsert(&updated_row(row, value))?,
            None => tx.insert(&new_row(Kind::LoadBalancer, &lid, value))?,
        }
        Ok::<_, ApiError>((existing.is_none(), lid))
    })?;
    app.net.sync(app);
    let doc = app.store.read(|tx| view(app, tx, &lid))?;
    json(created_or_ok(created), &doc)
}

/// The document as answers show it: stored, plus addresses, back-references, members and NAT rules.
pub fn view(app: &App, tx: &Tx<'_>, lid: &ResourceId) -> ApiResult<LoadBalancer> {
    let row = require(tx, lid, Kind::LoadBalancer)?;
    let mut doc: LoadBalancer = row.parse()?;
    let lid_s = row.id.clone();
    let p = &mut doc.properties;
    let refs =
        |ids: Vec<String>| -> Option<Vec<SubResource>> { Some(ids.into_iter().map(|id| SubResource { id }).collect()) };
    let rule_ids = |pred: &dyn Fn(&galleon_api::lb::RuleProperties) -> bool,
                    rules: &[Child<galleon_api::lb::RuleProperties>]| {
        rules.iter().filter(|r| pred(&r.properties)).filter_map(|r| r.id.clone()).collect::<Vec<_>>()
    };
    let rules = p.load_balancing_rules.clone();
    for f in &mut p.frontend_ip_configurations {
        let owner = frontend_owner(&lid_s, f.name.as_deref().unwrap_or_default());
        f.properties.private_ip_address = tx.address_of(&owner)?.map(|a| a.to_string());
        let fid = f.id.clone().unwrap_or_default();
        f.properties.load_balancing_rules =
            refs(rule_ids(&|r| r.frontend_ip_configuration.as_ref().is_some_and(|x| x.id == fid), &rules));
        f.properties.inbound_nat_pools = refs(
            p.inbound_nat_pools
                .iter()
                .filter(|n| n.properties.frontend_ip_configuration.as_ref().is_some_and(|x| x.id == fid))
                .filter_map(|n| n.id.clone())
                .collect(),
        );
    }
    for pr in &mut p.probes {
        let pid = pr.id.clone().unwrap_or_default();
        pr.properties.load_balancing_rules = refs(rule_ids(&|r| r.probe.as_ref().is_some_and(|x| x.id == pid), &rules));
    }
    let members = members(tx, lid)?;
    for b in &mut p.backend_address_pools {
        let bid = b.id.clone().unwrap_or_default();
        let name = b.name.clone().unwrap_or_default().to_ascii_lowercase();
        b.properties.load_balancing_rules =
            refs(rule_ids(&|r| r.backend_address_pool.as_ref().is_some_and(|x| x.id == bid), &rules));
        b.properties.backend_ip_configurations =
            refs(members.iter().filter(|m| m.pools.contains(&name)).map(|m| m.ip_config.clone()).collect());
    }
    let mut nat_rules = vec![];
    for n in &p.inbound_nat_pools {
        let pool = n.name.clone().unwrap_or_default();
        let q = &n.properties;
        let (start, end) = (q.frontend_port_range_start.unwrap_or(0), q.frontend_port_range_end.unwrap_or(0));
        for m in members.iter().filter(|m| m.nat_pools.contains(&pool.to_ascii_lowercase())) {
            let Some(port) = nat_port(start, end, m.rec.id) else { continue };
            let rule = format!("{pool}.{}", m.rec.id);
            nat_rules.push(Child {
                id: Some(child_id(lid, "inboundNatRules", &rule)),
                name: Some(rule),
                kind: Some(format!("{TYPE}/inboundNatRules")),
                properties: NatRuleProperties {
                    frontend_ip_configuration: q.frontend_ip_configuration.clone(),
                    protocol: q.protocol,
                    frontend_port: Some(port),
                    backend_port: q.backend_port,
                    backend_ip_configuration: Some(SubResource { id: m.ip_config.clone() }),
                    provisioning_state: Some(ProvisioningState::Succeeded),
                },
            });
        }
    }
    p.inbound_nat_rules = nat_rules;
    let _ = app;
    Ok(doc)
}

pub fn get(app: &App, rg: &str, name: &str) -> ApiResult<Response> {
    let doc = app.store.read(|tx| view(app, tx, &id(app, rg, name)))?;
    json(StatusCode::OK, &doc)
}

pub fn list(app: &App, rg: Option<&str>) -> ApiResult<Response> {
    let docs = app.store.read(|tx| {
        let rows = rows_in(tx, &app.subscription, rg, Kind::LoadBalancer)?;
        rows.iter()
            .map(|r| view(app, tx, &ResourceId::parse(&r.id).map_err(ApiError::internal)?))
            .collect::<ApiResult<Vec<_>>>()
    })?;
    json(StatusCode::OK, &galleon_api::List::of(docs))
}

pub fn delete(app: &App, rg: &str, name: &str) -> ApiResult<Response> {
    let lid = id(app, rg, name);
    let deleted = app.store.write(|tx| {
        require_group(tx, &app.subscription, rg)?;
        let Some(row) = tx.get(&lid.to_string())? else { return Ok::<_, ApiError>(false) };
        let lid = ResourceId::parse(&row.id).map_err(ApiError::internal)?;
        refuse_removing_used(tx, &lid, &LoadBalancerProperties::default())?;
        let doc: LoadBalancer = row.parse()?;
        for f in &doc.properties.frontend_ip_configurations {
            tx.release_address(&frontend_owner(&row.id, f.name.as_deref().unwrap_or_default()))?;
        }
        tx.delete(&row.id)?;
        Ok(true)
    })?;
    app.net.sync(app);
    Ok(if deleted { StatusCode::OK } else { StatusCode::NO_CONTENT }.into_response())
}

/// One child, as ARM's child GET answers it (`…/probes/{name}`).
pub fn child(app: &App, rg: &str, name: &str, collection: &str, child: Option<&str>) -> ApiResult<Response> {
    let doc = app.store.read(|tx| view(app, tx, &id(app, rg, name)))?;
    let value = serde_json::to_value(&doc.properties).map_err(ApiError::internal)?;
    let key = match collection {
        "probes" => "probes",
        "loadbalancingrules" => "loadBalancingRules",
        "backendaddresspools" => "backendAddressPools",
        "inboundnatpools" => "inboundNatPools",
        "inboundnatrules" => "inboundNatRules",
        "frontendipconfigurations" => "frontendIPConfigurations",
        other => {
            return Err(ApiError::bad_request("InvalidResourceType", format!("A load balancer has no '{other}'.")));
        }
    };
    let items = value.get(key).and_then(|v| v.as_array()).cloned().unwrap_or_default();
    match child {
        None => json(StatusCode::OK, &galleon_api::List::of(items)),
        Some(c) => {
            let found = items
                .into_iter()
                .find(|i| i.get("name").and_then(|n| n.as_str()).is_some_and(|n| n.eq_ignore_ascii_case(c)));
            let found = found.ok_or_else(|| {
                ApiError::not_found("NotFound", format!("The load balancer '{name}' has no {key} entry '{c}'."))
            })?;
            json(StatusCode::OK, &found)
        }
    }
}

/// `…/loadBalancers/{name}/metrics`: requests, errors, latency and connections per rule and backend.
pub fn metrics(app: &App, rg: &str, name: &str) -> ApiResult<Response> {
    let lid = id(app, rg, name);
    app.store.read(|tx| require(tx, &lid, Kind::LoadBalancer))?;
    let prefix = format!("{rg}/{name}/").to_ascii_lowercase();
    let status = app.net.dataplane_status()?;
    let rules: Vec<serde_json::Value> = status
        .frontends
        .iter()
        .filter(|f| f.name.to_ascii_lowercase().starts_with(&prefix))
        .map(|f| {
            serde_json::json!({
                "name": f.name.rsplit('/').next().unwrap_or_default(),
                "frontend": format!("{}:{}", f.address, f.port),
                "protocol": f.protocol,
                "unavailable": f.unavailable,
                "failed": f.failed,
                "backends": f.backends.iter().map(|b| serde_json::json!({
                    "instance": b.key,
                    "address": format!("{}:{}", b.address, b.port),
                    "inService": b.in_service,
                    "health": b.health,
                    "eligible": b.eligible,
                    "requests": b.metrics.requests,
                    "errors": b.metrics.errors,
                    "inFlight": b.metrics.in_flight,
                    "openConnections": b.metrics.open_connections,
                    "latencyP50Ms": b.metrics.latency.quantile_upper_ms(0.5),
                    "latencyP99Ms": b.metrics.latency.quantile_upper_ms(0.99),
                    "latency": b.metrics.latency,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json(StatusCode::OK, &serde_json::json!({"value": rules}))
}
