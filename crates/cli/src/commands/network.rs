//! `galleon network lb …`: load balancers, their probes, rules, pools and inbound NAT, with az's flags.
//!
//! Like `az`, changes to a child (a probe, a rule) are a GET of the load balancer, an edit of its
//! document, and a PUT of the whole document; the daemon checks the result as a whole.

use serde_json::{Value, json};

use crate::args::{ChildCmd, LbCmd, LbName, NatPoolCmd, NatRuleCmd, NetworkCmd, ProbeCmd, RuleCmd, RuleSpec};
use crate::commands::{generic_update, required, sig::list};
use crate::context::{Ctx, Out, enc, tags};
use crate::error::{CliError, CliResult};
use galleon_api::schema::Editable;
use galleon_client::Precondition;

async fn lb_path(ctx: &Ctx, group: &crate::args::GroupArg, name: &str) -> CliResult<String> {
    ctx.provider_path(&ctx.group(group)?, "Microsoft.Network", &format!("loadBalancers/{}", enc(name))).await
}

async fn lb_of(ctx: &Ctx, lb: &LbName) -> CliResult<String> {
    lb_path(ctx, &lb.group, required(&lb.lb, "--lb-name")?).await
}

/// The load balancer `name` in `rg`, created as `az vmss create --lb` creates it when missing: one
/// frontend, a backend pool `{name}BEPool` and an inbound NAT pool `{name}NatPool` (frontend ports from
/// 50000, one per instance, to `backend_port`). Returns its path.
pub async fn ensure_lb(ctx: &Ctx, rg: &str, name: &str, backend_port: u16) -> CliResult<String> {
    let path = ctx.provider_path(rg, "Microsoft.Network", &format!("loadBalancers/{}", enc(name))).await?;
    match ctx.client.get_value(&path).await {
        Ok(doc) => {
            // An existing load balancer gets the pools `--lb` needs if it lacks them.
            let has = |k: &str, n: &str| {
                doc["properties"][k]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x["name"].as_str().is_some_and(|x| x.eq_ignore_ascii_case(n))))
            };
            if has("backendAddressPools", &format!("{name}BEPool")) && has("inboundNatPools", &format!("{name}NatPool"))
            {
                return Ok(path);
            }
            edit(ctx, &path, |p| {
                if !has("backendAddressPools", &format!("{name}BEPool")) {
                    push(p, "backendAddressPools", json!({"name": format!("{name}BEPool"), "properties": {}}));
                }
                if !has("inboundNatPools", &format!("{name}NatPool")) {
                    push(
                        p,
                        "inboundNatPools",
                        nat_pool(&path, &format!("{name}NatPool"), 50000, 50119, backend_port, None),
                    );
                }
                Ok(())
            })
            .await?;
            Ok(path)
        }
        Err(e) if e.status().is_some_and(|s| s.as_u16() == 404 && e.code() != Some("ResourceGroupNotFound")) => {
            let body = json!({
                "properties": {
                    "frontendIPConfigurations": [{"name": "loadBalancerFrontEnd", "properties": {}}],
                    "backendAddressPools": [{"name": format!("{name}BEPool"), "properties": {}}],
                    "inboundNatPools": [nat_pool(&path, &format!("{name}NatPool"), 50000, 50119, backend_port, None)],
                },
            });
            ctx.client.put(&path, &body, Precondition::None, true).await?;
            Ok(path)
        }
        Err(e) => Err(e.into()),
    }
}

fn nat_pool(lb: &str, name: &str, start: u16, end: u16, backend: u16, frontend: Option<&str>) -> Value {
    json!({"name": name, "properties": {
        "frontendIPConfiguration": {"id": format!("{lb}/frontendIPConfigurations/{}", frontend.unwrap_or("loadBalancerFrontEnd"))},
        "protocol": "Tcp",
        "frontendPortRangeStart": start,
        "frontendPortRangeEnd": end,
        "backendPort": backend,
    }})
}

fn push(props: &mut Value, key: &str, item: Value) {
    match props.get_mut(key).and_then(Value::as_array_mut) {
        Some(a) => a.push(item),
        None => props[key] = Value::Array(vec![item]),
    }
}

fn find<'a>(props: &'a mut Value, key: &str, name: &str) -> Option<&'a mut Value> {
    props
        .get_mut(key)?
        .as_array_mut()?
        .iter_mut()
        .find(|x| x["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
}

/// GET the load balancer, let `f` edit its `properties`, PUT it back; returns the new document.
async fn edit(ctx: &Ctx, path: &str, f: impl FnOnce(&mut Value) -> CliResult<()>) -> CliResult<Value> {
    let mut doc = ctx.client.get_value(path).await?;
    // Computed parts are not sent back.
    if let Some(p) = doc.get_mut("properties").and_then(Value::as_object_mut) {
        p.remove("inboundNatRules");
    }
    f(&mut doc["properties"])?;
    let resp = ctx.client.put(path, &doc, Precondition::None, true).await?;
    resp.json().map_err(Into::into)
}

/// The child `name` of `key` in a load balancer's document, as `show` prints it.
async fn show_child(ctx: &Ctx, lb: &LbName, key: &str, name: &str) -> CliResult<Out> {
    let path = lb_of(ctx, lb).await?;
    let doc = ctx.client.get_value(&path).await?;
    let found = doc["properties"][key]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name))))
        .cloned();
    let lb_name = lb.lb.clone().unwrap_or_default();
    found.map(Out::Resource).ok_or_else(|| {
        CliError::not_found(format!("(NotFound) the load balancer '{lb_name}' has no {key} entry '{name}'"))
    })
}

async fn list_children(ctx: &Ctx, lb: &LbName, key: &str) -> CliResult<Out> {
    let doc = ctx.client.get_value(&lb_of(ctx, lb).await?).await?;
    Ok(Out::Resource(doc["properties"][key].clone()))
}

async fn delete_child(ctx: &Ctx, lb: &LbName, key: &str, name: &str) -> CliResult<Out> {
    let path = lb_of(ctx, lb).await?;
    edit(ctx, &path, |p| {
        let a = p
            .get_mut(key)
            .and_then(Value::as_array_mut)
            .ok_or_else(|| CliError::not_found(format!("no {key} entry '{name}'")))?;
        let before = a.len();
        a.retain(|x| !x["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)));
        if a.len() == before {
            return Err(CliError::not_found(format!("(NotFound) no {key} entry '{name}'")));
        }
        Ok(())
    })
    .await?;
    Ok(Out::Nothing)
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c.flat_map(char::to_lowercase)).collect()).unwrap_or_default()
}

fn rule_props(lb: &str, spec: &RuleSpec, mut props: Value) -> Value {
    if let Some(p) = &spec.protocol {
        props["protocol"] = json!(cap(p));
    }
    if let Some(p) = spec.frontend_port {
        props["frontendPort"] = json!(p);
    }
    if let Some(p) = spec.backend_port {
        props["backendPort"] = json!(p);
    }
    if let Some(p) = &spec.backend_pool_name {
        props["backendAddressPool"] = json!({"id": format!("{lb}/backendAddressPools/{p}")});
    }
    if let Some(p) = &spec.probe {
        props["probe"] = json!({"id": format!("{lb}/probes/{p}")});
    }
    if let Some(d) = &spec.load_distribution {
        props["loadDistribution"] = json!(d);
    }
    if let Some(t) = spec.idle_timeout {
        props["idleTimeoutInMinutes"] = json!(t);
    }
    if let Some(t) = spec.drain_timeout {
        props["drainTimeoutInSeconds"] = json!(t);
    }
    if let Some(f) = &spec.frontend_ip_name {
        props["frontendIPConfiguration"] = json!({"id": format!("{lb}/frontendIPConfigurations/{f}")});
    }
    props
}

fn probe_props(
    mut props: Value,
    protocol: &Option<String>,
    port: Option<u16>,
    path: &Option<String>,
    interval: Option<u32>,
    threshold: Option<u32>,
    probe_threshold: Option<u32>,
) -> Value {
    if let Some(p) = protocol {
        props["protocol"] = json!(cap(p));
    }
    if let Some(p) = port {
        props["port"] = json!(p);
    }
    if let Some(p) = path {
        props["requestPath"] = json!(p);
    }
    if let Some(i) = interval {
        props["intervalInSeconds"] = json!(i);
    }
    if let Some(t) = threshold {
        props["numberOfProbes"] = json!(t);
    }
    if let Some(t) = probe_threshold {
        props["probeThreshold"] = json!(t);
    }
    props
}

pub async fn run(ctx: &Ctx, cmd: &NetworkCmd) -> CliResult<Out> {
    let NetworkCmd::Lb(cmd) = cmd;
    match cmd {
        LbCmd::Create { group, name, backend_pool_name, frontend_ip_name, common } => {
            let path = lb_path(ctx, group, name).await?;
            let pool = backend_pool_name.clone().unwrap_or_else(|| format!("{name}bepool"));
            let body = json!({
                "location": common.location,
                "tags": tags(common),
                "properties": {
                    "frontendIPConfigurations": [{"name": frontend_ip_name.clone().unwrap_or_else(|| "LoadBalancerFrontEnd".into()), "properties": {}}],
                    "backendAddressPools": [{"name": pool, "properties": {}}],
                },
            });
            let resp = ctx.client.put(&path, &body, Precondition::MustNotExist, true).await?;
            Ok(Out::Resource(resp.json()?))
        }
        LbCmd::List { group } => {
            let path = match &group.resource_group {
                Some(rg) => ctx.provider_path(rg, "Microsoft.Network", "loadBalancers").await?,
                None => format!("/subscriptions/{}/providers/Microsoft.Network/loadBalancers", ctx.sub().await?),
            };
            list(ctx, &path).await
        }
        LbCmd::Show { group, name } => {
            Ok(Out::Resource(ctx.client.get_value(&lb_path(ctx, group, name).await?).await?))
        }
        LbCmd::Delete { group, name } => {
            ctx.client.delete(&lb_path(ctx, group, name).await?, true).await?;
            Ok(Out::Nothing)
        }
        LbCmd::Update { group, name, update } => {
            let path = lb_path(ctx, group, name).await?;
            generic_update(ctx, &path, Editable::LoadBalancer, vec![], update, false).await
        }
        LbCmd::ShowMetrics { group, name } => {
            let path = format!("{}/metrics", lb_path(ctx, group, name).await?);
            let v = ctx.client.get_value(&path).await?;
            Ok(Out::Raw(v["value"].clone()))
        }
        LbCmd::Probe(cmd) => match cmd {
            ProbeCmd::Create { lb, name, protocol, port, path, interval, threshold, probe_threshold } => {
                let lb_path = lb_of(ctx, lb).await?;
                let props = probe_props(
                    json!({}),
                    &Some(protocol.clone()),
                    Some(*port),
                    path,
                    *interval,
                    *threshold,
                    *probe_threshold,
                );
                let doc = edit(ctx, &lb_path, |p| {
                    if find(p, "probes", name).is_some() {
                        return Err(CliError::new(format!("(Conflict) the probe '{name}' already exists")));
                    }
                    push(p, "probes", json!({"name": name, "properties": props}));
                    Ok(())
                })
                .await?;
                Ok(Out::Resource(pick(&doc, "probes", name)))
            }
            ProbeCmd::Update { lb, name, protocol, port, path, interval, threshold, probe_threshold } => {
                let lb_path = lb_of(ctx, lb).await?;
                let doc = edit(ctx, &lb_path, |p| {
                    let probe = find(p, "probes", name)
                        .ok_or_else(|| CliError::not_found(format!("(NotFound) no probe '{name}'")))?;
                    probe["properties"] = probe_props(
                        probe["properties"].clone(),
                        protocol,
                        *port,
                        path,
                        *interval,
                        *threshold,
                        *probe_threshold,
                    );
                    Ok(())
                })
                .await?;
                Ok(Out::Resource(pick(&doc, "probes", name)))
            }
            ProbeCmd::List { lb } => list_children(ctx, lb, "probes").await,
            ProbeCmd::Show { lb, name } => show_child(ctx, lb, "probes", name).await,
            ProbeCmd::Delete { lb, name } => delete_child(ctx, lb, "probes", name).await,
        },
        LbCmd::Rule(cmd) => match cmd {
            RuleCmd::Create { lb, name, spec } => {
                let lb_path = lb_of(ctx, lb).await?;
                let props = rule_props(&lb_path, spec, json!({"protocol": "Tcp"}));
                let doc = edit(ctx, &lb_path, |p| {
                    if find(p, "loadBalancingRules", name).is_some() {
                        return Err(CliError::new(format!("(Conflict) the rule '{name}' already exists")));
                    }
                    push(p, "loadBalancingRules", json!({"name": name, "properties": props}));
                    Ok(())
                })
                .await?;
                Ok(Out::Resource(pick(&doc, "loadBalancingRules", name)))
            }
            RuleCmd::Update { lb, name, spec } => {
                let lb_path = lb_of(ctx, lb).await?;
                let doc = edit(ctx, &lb_path, |p| {
                    let rule = find(p, "loadBalancingRules", name)
                        .ok_or_else(|| CliError::not_found(format!("(NotFound) no rule '{name}'")))?;
                    rule["properties"] = rule_props(&lb_path, spec, rule["properties"].clone());
                    Ok(())
                })
                .await?;
                Ok(Out::Resource(pick(&doc, "loadBalancingRules", name)))
            }
            RuleCmd::List { lb } => list_children(ctx, lb, "loadBalancingRules").await,
            RuleCmd::Show { lb, name } => show_child(ctx, lb, "loadBalancingRules", name).await,
            RuleCmd::Delete { lb, name } => delete_child(ctx, lb, "loadBalancingRules", name).await,
        },
        LbCmd::AddressPool(cmd) => match cmd {
            ChildCmd::Create { lb, name } => {
                let lb_path = lb_of(ctx, lb).await?;
                let doc = edit(ctx, &lb_path, |p| {
                    push(p, "backendAddressPools", json!({"name": name, "properties": {}}));
                    Ok(())
                })
                .await?;
                Ok(Out::Resource(pick(&doc, "backendAddressPools", name)))
            }
            ChildCmd::List { lb } => list_children(ctx, lb, "backendAddressPools").await,
            ChildCmd::Show { lb, name } => show_child(ctx, lb, "backendAddressPools", name).await,
            ChildCmd::Delete { lb, name } => delete_child(ctx, lb, "backendAddressPools", name).await,
        },
        LbCmd::InboundNatPool(cmd) => match cmd {
            NatPoolCmd::Create {
                lb,
                name,
                protocol,
                frontend_port_range_start,
                frontend_port_range_end,
                backend_port,
                frontend_ip_name,
            } => {
                let lb_path = lb_of(ctx, lb).await?;
                let mut pool = nat_pool(
                    &lb_path,
                    name,
                    *frontend_port_range_start,
                    *frontend_port_range_end,
                    *backend_port,
                    frontend_ip_name.as_deref(),
                );
                pool["properties"]["protocol"] = json!(cap(protocol));
                let doc = edit(ctx, &lb_path, |p| {
                    push(p, "inboundNatPools", pool);
                    Ok(())
                })
                .await?;
                Ok(Out::Resource(pick(&doc, "inboundNatPools", name)))
            }
            NatPoolCmd::List { lb } => list_children(ctx, lb, "inboundNatPools").await,
            NatPoolCmd::Show { lb, name } => show_child(ctx, lb, "inboundNatPools", name).await,
            NatPoolCmd::Delete { lb, name } => delete_child(ctx, lb, "inboundNatPools", name).await,
        },
        LbCmd::InboundNatRule(cmd) => match cmd {
            NatRuleCmd::List { lb } => list_children(ctx, lb, "inboundNatRules").await,
            NatRuleCmd::Show { lb, name } => show_child(ctx, lb, "inboundNatRules", name).await,
        },
    }
}

fn pick(doc: &Value, key: &str, name: &str) -> Value {
    doc["properties"][key]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name))))
        .cloned()
        .unwrap_or(Value::Null)
}

/// `az vmss list-instance-connection-info`: `{"instance 0": "127.x.y.z:50000", …}`.
pub async fn connection_info(ctx: &Ctx, vmss_path: &str) -> CliResult<Out> {
    let vmss = ctx.client.get_value(vmss_path).await?;
    let nics = &vmss["properties"]["virtualMachineProfile"]["networkProfile"]["networkInterfaceConfigurations"];
    let mut out = serde_json::Map::new();
    for nic in nics.as_array().into_iter().flatten() {
        for ipc in nic["properties"]["ipConfigurations"].as_array().into_iter().flatten() {
            for pool in ipc["properties"]["loadBalancerInboundNatPools"].as_array().into_iter().flatten() {
                let Some(id) = pool["id"].as_str() else { continue };
                let Some((lb, _)) = id.rsplit_once("/inboundNatPools/") else { continue };
                let lb_doc = ctx.client.get_value(lb).await?;
                let address = lb_doc["properties"]["frontendIPConfigurations"][0]["properties"]["privateIPAddress"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let set = vmss["name"].as_str().unwrap_or_default().to_ascii_lowercase();
                for rule in lb_doc["properties"]["inboundNatRules"].as_array().into_iter().flatten() {
                    let backend = rule["properties"]["backendIPConfiguration"]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    if !backend.contains(&format!("/virtualmachinescalesets/{set}/virtualmachines/")) {
                        continue;
                    }
                    let instance = rule["name"].as_str().and_then(|n| n.rsplit('.').next()).unwrap_or_default();
                    let port = rule["properties"]["frontendPort"].as_u64().unwrap_or(0);
                    out.insert(format!("instance {instance}"), json!(format!("{address}:{port}")));
                }
            }
        }
    }
    Ok(Out::Raw(Value::Object(out)))
}
