//! `galleon vmss …`: scale sets, their instances, instance actions and extensions, with az's flags.

use serde_json::{Value, json};

use crate::args::{ExtensionCmd, InstanceIdsArg, RollingArgs, RunCommandCmd, VmssCmd, VmssName, VmssNameArg};
use crate::commands::{generic_update, required, sig::list};
use crate::context::{Ctx, Out, enc, is_id, tags};
use crate::error::{CliError, CliResult};
use galleon_api::schema::Editable;
use galleon_client::Precondition;

pub async fn vmss_path(ctx: &Ctx, v: &VmssName) -> CliResult<String> {
    let name = required(&v.name, "--name/-n")?;
    if is_id(name) {
        return Ok(name.to_string());
    }
    let rg = ctx.group(&v.group)?;
    ctx.provider_path(&rg, "Microsoft.Compute", &format!("virtualMachineScaleSets/{}", enc(name))).await
}

async fn vmss_path_arg(ctx: &Ctx, v: &VmssNameArg) -> CliResult<String> {
    vmss_path(ctx, &VmssName { group: v.group.clone(), name: v.vmss_name.clone() }).await
}

/// An image given as az users give it: an id, `G/D/V` (a gallery version), `G/D` (its latest), or the
/// name of a managed image in the group. A gallery is looked for in the group first, then anywhere.
pub async fn image_id(ctx: &Ctx, rg: &str, image: &str) -> CliResult<String> {
    if is_id(image) {
        return Ok(image.to_string());
    }
    let parts: Vec<&str> = image.split('/').collect();
    match parts.as_slice() {
        [g, d, v] => Ok(format!("{}/images/{}/versions/{}", gallery_id(ctx, rg, g).await?, enc(d), enc(v))),
        [g, d] => match gallery_id(ctx, rg, g).await {
            Ok(gallery) => Ok(format!("{gallery}/images/{}", enc(d))),
            // `RG/NAME` of a managed image, when no gallery has that name.
            Err(e) => {
                let path = ctx.provider_path(g, "Microsoft.Compute", &format!("images/{}", enc(d))).await?;
                match ctx.client.get_value(&path).await {
                    Ok(_) => Ok(path),
                    Err(_) => Err(e),
                }
            }
        },
        [name] => {
            let path = ctx.provider_path(rg, "Microsoft.Compute", &format!("images/{}", enc(name))).await?;
            ctx.client.get_value(&path).await.map_err(|_| {
                CliError::new(format!(
                    "--image '{image}' is not a managed image in '{rg}'; give GALLERY/DEFINITION[/VERSION] or an id"
                ))
            })?;
            Ok(path)
        }
        _ => Err(CliError::usage(format!("--image '{image}' is not an image reference"))),
    }
}

async fn gallery_id(ctx: &Ctx, rg: &str, gallery: &str) -> CliResult<String> {
    let here = ctx.provider_path(rg, "Microsoft.Compute", &format!("galleries/{}", enc(gallery))).await?;
    if ctx.client.get_value(&here).await.is_ok() {
        return Ok(here);
    }
    let all: galleon_api::List<Value> =
        ctx.client.get(&format!("/subscriptions/{}/providers/Microsoft.Compute/galleries", ctx.sub().await?)).await?;
    let found: Vec<String> = all
        .value
        .iter()
        .filter(|g| g["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(gallery)))
        .filter_map(|g| g["id"].as_str().map(String::from))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(CliError::not_found(format!("no gallery is named '{gallery}'"))),
        _ => Err(CliError::usage(format!("several galleries are named '{gallery}': give the image's full id"))),
    }
}

fn rolling_sets(r: &RollingArgs) -> Vec<String> {
    let p = "upgradePolicy.rollingUpgradePolicy";
    let mut sets = vec![];
    let mut add = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            sets.push(format!("{p}.{k}={v}"));
        }
    };
    add("maxBatchInstancePercent", r.max_batch_instance_percent.map(|v| v.to_string()));
    add("maxUnhealthyInstancePercent", r.max_unhealthy_instance_percent.map(|v| v.to_string()));
    add("maxUnhealthyUpgradedInstancePercent", r.max_unhealthy_upgraded_instance_percent.map(|v| v.to_string()));
    add("pauseTimeBetweenBatches", r.pause_time_between_batches.clone());
    add("prioritizeUnhealthyInstances", r.prioritize_unhealthy_instances.map(|v| v.to_string()));
    add("rollbackFailedInstancesOnPolicyBreach", r.rollback_failed_instances_on_policy_breach.map(|v| v.to_string()));
    add("maxSurge", r.max_surge.map(|v| v.to_string()));
    if let Some(v) = r.enable_auto_os_upgrade {
        sets.push(format!("upgradePolicy.automaticOSUpgradePolicy.enableAutomaticOSUpgrade={v}"));
    }
    sets
}

/// Standard base64, as ARM stores custom data.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A JSON value given inline or as `@file.json`.
fn json_arg(flag: &str, raw: &str) -> CliResult<Value> {
    let text = match raw.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| CliError::usage(format!("{flag} @{path}: {e}")))?,
        None => raw.to_string(),
    };
    serde_json::from_str(&text).map_err(|e| CliError::usage(format!("{flag} is not valid JSON: {e}")))
}

fn ids_body(ids: &Option<Vec<String>>) -> Value {
    match ids.as_ref().filter(|v| !v.iter().any(|i| i == "*")) {
        Some(list) => json!({ "instanceIds": list }),
        None => json!({}),
    }
}

async fn action(ctx: &Ctx, v: &VmssName, verb: &str, ids: &Option<Vec<String>>, no_wait: bool) -> CliResult<Out> {
    if ids.as_ref().is_none_or(|v| v.iter().any(|i| i == "*")) && verb != "delete" {
        ctx.warn(&format!("{verb} of every instance takes them all out of service at once; clients may see failures"));
    }
    let path = format!("{}/{verb}", vmss_path(ctx, v).await?);
    ctx.client.post(&path, Some(&ids_body(ids)), !no_wait).await?;
    Ok(Out::Nothing)
}

pub async fn run(ctx: &Ctx, cmd: &VmssCmd) -> CliResult<Out> {
    match cmd {
        VmssCmd::Create {
            vmss,
            image,
            instance_count,
            upgrade_policy_mode,
            data_disk_sizes_gb,
            lb,
            backend_port,
            custom_data,
            vm_sku,
            scale_in_policy,
            health_probe,
            admin_username,
            computer_name_prefix,
            rolling,
            common,
            no_wait,
        } => {
            let rg = ctx.group(&vmss.group)?;
            let name = required(&vmss.name, "--name/-n")?.to_string();
            let path = vmss_path(ctx, vmss).await?;
            let image = image_id(ctx, &rg, image).await?;
            let mode = upgrade_policy_mode.as_deref().map(|m| {
                let mut c = m.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c.flat_map(char::to_lowercase)).collect::<String>())
                    .unwrap_or_default()
            });
            let data_disks: Vec<Value> = data_disk_sizes_gb
                .iter()
                .enumerate()
                .map(|(lun, gb)| json!({"lun": lun, "diskSizeGB": gb, "createOption": "Empty"}))
                .collect();
            let custom = match custom_data {
                Some(f) => Some(base64(
                    &std::fs::read(f).map_err(|e| CliError::usage(format!("--custom-data {}: {e}", f.display())))?,
                )),
                None => None,
            };
            let mut ip_config = json!({"primary": true});
            let mut probe = health_probe.clone();
            if let Some(lb) = lb {
                let lb_path = crate::commands::network::ensure_lb(ctx, &rg, lb, *backend_port).await?;
                ip_config["loadBalancerBackendAddressPools"] =
                    json!([{"id": format!("{lb_path}/backendAddressPools/{lb}BEPool")}]);
                ip_config["loadBalancerInboundNatPools"] =
                    json!([{"id": format!("{lb_path}/inboundNatPools/{lb}NatPool")}]);
                probe = probe.map(|p| if is_id(&p) { p } else { format!("{lb_path}/probes/{p}") });
            }
            let mut doc = json!({
                "location": common.location,
                "tags": tags(common),
                "sku": {"name": vm_sku.clone().unwrap_or_else(|| "Standard_galleon".into()), "tier": "Standard", "capacity": instance_count},
                "properties": {
                    "upgradePolicy": {"mode": mode.unwrap_or_else(|| "Manual".into())},
                    "scaleInPolicy": {"rules": [scale_in_policy.clone().unwrap_or_else(|| "Default".into())]},
                    "virtualMachineProfile": {
                        "storageProfile": {
                            "imageReference": {"id": image},
                            "osDisk": {"createOption": "FromImage", "caching": "ReadWrite"},
                            "dataDisks": data_disks,
                        },
                        "osProfile": {
                            "computerNamePrefix": computer_name_prefix.clone().unwrap_or_else(|| name.chars().take(9).collect()),
                            "adminUsername": admin_username.clone().unwrap_or_else(|| "azureuser".into()),
                            "customData": custom,
                        },
                        "networkProfile": {
                            "healthProbe": probe.map(|p| json!({"id": p})),
                            "networkInterfaceConfigurations": [{
                                "name": format!("{name}Nic"),
                                "properties": {"primary": true, "ipConfigurations": [{"name": format!("{name}IPConfig"), "properties": ip_config}]},
                            }],
                        },
                    },
                },
            });
            // The rolling flags are `--set` paths applied to the new document.
            let schema = galleon_api::schema::of(Editable::ScaleSet);
            let mut flat = crate::output::flatten(doc.clone());
            for s in rolling_sets(rolling) {
                crate::edit::set(&mut flat, &schema, "scale set", &s)?;
            }
            doc = crate::edit::unflatten(&flat, &schema);
            let resp = ctx.client.put(&path, &doc, Precondition::MustNotExist, !no_wait.no_wait).await?;
            if no_wait.no_wait {
                return Ok(Out::Nothing);
            }
            Ok(Out::Resource(ctx.client.get_value(&path).await.unwrap_or(resp.json()?)))
        }
        VmssCmd::List { group } => {
            let path = match &group.resource_group {
                Some(rg) => ctx.provider_path(rg, "Microsoft.Compute", "virtualMachineScaleSets").await?,
                None => {
                    format!("/subscriptions/{}/providers/Microsoft.Compute/virtualMachineScaleSets", ctx.sub().await?)
                }
            };
            list(ctx, &path).await
        }
        VmssCmd::Show { vmss, instance_id } => {
            let mut path = vmss_path(ctx, vmss).await?;
            if let Some(i) = instance_id {
                path = format!("{path}/virtualMachines/{}", enc(i));
            }
            Ok(Out::Resource(ctx.client.get_value(&path).await?))
        }
        VmssCmd::Delete { vmss, no_wait } => {
            ctx.client.delete(&vmss_path(ctx, vmss).await?, !no_wait.no_wait).await?;
            Ok(Out::Nothing)
        }
        VmssCmd::ListInstances { vmss } => list(ctx, &format!("{}/virtualMachines", vmss_path(ctx, vmss).await?)).await,
        VmssCmd::GetInstanceView { vmss, instance_id } => {
            let path = vmss_path(ctx, vmss).await?;
            match instance_id.as_deref().filter(|i| *i != "*") {
                Some(i) => Ok(Out::Raw(
                    ctx.client.get_value(&format!("{path}/virtualMachines/{}/instanceView", enc(i))).await?,
                )),
                None => {
                    let vms: galleon_api::List<Value> = ctx.client.get(&format!("{path}/virtualMachines")).await?;
                    let mut views = vec![];
                    for vm in vms.value {
                        let id = vm["instanceId"].as_str().unwrap_or_default().to_string();
                        let mut view =
                            ctx.client.get_value(&format!("{path}/virtualMachines/{id}/instanceView")).await?;
                        view["instanceId"] = Value::String(id);
                        views.push(view);
                    }
                    Ok(Out::Raw(Value::Array(views)))
                }
            }
        }
        VmssCmd::Update {
            vmss,
            update,
            instance_id,
            protect_from_scale_in,
            protect_from_scale_set_actions,
            rolling,
            no_wait,
        } => {
            let path = vmss_path(ctx, vmss).await?;
            if let Some(i) = instance_id {
                let vm_path = format!("{path}/virtualMachines/{}", enc(i));
                let mut vm = ctx.client.get_value(&vm_path).await?;
                let policy = &mut vm["properties"]["protectionPolicy"];
                if let Some(v) = protect_from_scale_in {
                    policy["protectFromScaleIn"] = Value::Bool(*v);
                }
                if let Some(v) = protect_from_scale_set_actions {
                    policy["protectFromScaleSetActions"] = Value::Bool(*v);
                }
                let resp = ctx.client.put(&vm_path, &vm, Precondition::None, true).await?;
                return Ok(Out::Resource(resp.json()?));
            }
            generic_update(ctx, &path, Editable::ScaleSet, rolling_sets(rolling), update, no_wait.no_wait).await
        }
        VmssCmd::UpdateInstances { vmss, instance_ids, no_wait } => {
            action(ctx, vmss, "manualupgrade", &Some(instance_ids.clone()), no_wait.no_wait).await
        }
        VmssCmd::Reimage { vmss, ids, no_wait } => {
            action(ctx, vmss, "reimage", &ids.instance_ids, no_wait.no_wait).await
        }
        VmssCmd::Restart { vmss, ids, no_wait } => {
            action(ctx, vmss, "restart", &ids.instance_ids, no_wait.no_wait).await
        }
        VmssCmd::Stop { vmss, ids, no_wait } => action(ctx, vmss, "poweroff", &ids.instance_ids, no_wait.no_wait).await,
        VmssCmd::Start { vmss, ids, no_wait } => action(ctx, vmss, "start", &ids.instance_ids, no_wait.no_wait).await,
        VmssCmd::Deallocate { vmss, ids, no_wait } => {
            action(ctx, vmss, "deallocate", &ids.instance_ids, no_wait.no_wait).await
        }
        VmssCmd::DeleteInstances { vmss, instance_ids, no_wait } => {
            let ids = InstanceIdsArg { instance_ids: Some(instance_ids.clone()) };
            action(ctx, vmss, "delete", &ids.instance_ids, no_wait.no_wait).await
        }
        VmssCmd::Scale { vmss, new_capacity, no_wait } => {
            let path = vmss_path(ctx, vmss).await?;
            let resp = ctx.client.patch(&path, &json!({"sku": {"capacity": new_capacity}}), !no_wait.no_wait).await?;
            if no_wait.no_wait {
                return Ok(Out::Nothing);
            }
            Ok(Out::Resource(ctx.client.get_value(&path).await.unwrap_or(resp.json()?)))
        }
        VmssCmd::Extension(cmd) => extension(ctx, cmd).await,
        VmssCmd::RunCommand(RunCommandCmd::Invoke { vmss, instance_id, command_id, scripts, parameters }) => {
            let mut params = vec![];
            for p in parameters {
                let (k, v) = p
                    .split_once('=')
                    .ok_or_else(|| CliError::usage(format!("--parameters '{p}' must be NAME=VALUE")))?;
                params.push(json!({"name": k, "value": v}));
            }
            let path = format!("{}/virtualmachines/{}/runCommand", vmss_path(ctx, vmss).await?, enc(instance_id));
            let body = json!({"commandId": command_id, "script": scripts, "parameters": params});
            let resp = ctx.client.post(&path, Some(&body), true).await?;
            Ok(Out::Raw(resp.json()?))
        }
        VmssCmd::RollingUpgrade(cmd) => crate::commands::upgrade::run(ctx, cmd).await,
        VmssCmd::GetOsUpgradeHistory { vmss } => crate::commands::upgrade::history(ctx, vmss).await,
        VmssCmd::ListInstanceConnectionInfo { vmss } => {
            let path = vmss_path(ctx, vmss).await?;
            crate::commands::network::connection_info(ctx, &path).await
        }
        VmssCmd::GetBootLog { vmss, instance_id, follow, tail } => {
            boot_log(ctx, vmss, instance_id, *follow, *tail).await
        }
    }
}

/// Prints an instance's stdout log to stdout and its stderr log to stderr; `--follow` keeps going.
async fn boot_log(ctx: &Ctx, vmss: &VmssName, id: &str, follow: bool, tail: Option<usize>) -> CliResult<Out> {
    use std::io::Write;
    let path = format!("{}/virtualMachines/{}/bootLog", vmss_path(ctx, vmss).await?, enc(id));
    let tail_q = tail.map(|t| format!("?tail={t}")).unwrap_or_default();
    let log = ctx.client.get_value(&format!("{path}{tail_q}")).await?;
    let _ = std::io::stdout().write_all(log["stdout"].as_str().unwrap_or_default().as_bytes());
    let _ = std::io::stderr().write_all(log["stderr"].as_str().unwrap_or_default().as_bytes());
    if !follow {
        return Ok(Out::Nothing);
    }
    // Follow from the end of what was printed.
    let mut offsets = [0u64; 2];
    for (i, stream) in ["stdout", "stderr"].iter().enumerate() {
        let v = ctx.client.get_value(&format!("{path}?stream={stream}&offset=end")).await?;
        offsets[i] = v["next"].as_u64().unwrap_or(0);
    }
    loop {
        for (i, stream) in ["stdout", "stderr"].iter().enumerate() {
            let v = ctx.client.get_value(&format!("{path}?stream={stream}&offset={}", offsets[i])).await?;
            let data = v["data"].as_str().unwrap_or_default();
            if i == 0 {
                let _ = std::io::stdout().write_all(data.as_bytes());
                let _ = std::io::stdout().flush();
            } else {
                let _ = std::io::stderr().write_all(data.as_bytes());
            }
            offsets[i] = v["next"].as_u64().unwrap_or(offsets[i]);
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

async fn extension(ctx: &Ctx, cmd: &ExtensionCmd) -> CliResult<Out> {
    match cmd {
        ExtensionCmd::Set {
            vmss,
            name,
            publisher,
            version,
            settings,
            protected_settings,
            force_update,
            extension_instance_name,
            no_wait,
        } => {
            let instance = extension_instance_name.clone().unwrap_or_else(|| name.clone());
            let path = format!("{}/extensions/{}", vmss_path_arg(ctx, vmss).await?, enc(&instance));
            let body = json!({
                "name": instance,
                "properties": {
                    "publisher": publisher,
                    "type": name,
                    "typeHandlerVersion": version.clone().unwrap_or_else(|| "2.0".into()),
                    "autoUpgradeMinorVersion": true,
                    "settings": settings.as_deref().map(|s| json_arg("--settings", s)).transpose()?,
                    "protectedSettings": protected_settings.as_deref().map(|s| json_arg("--protected-settings", s)).transpose()?,
                    "forceUpdateTag": force_update.then(uuid_like),
                },
            });
            let resp = ctx.client.put(&path, &body, Precondition::None, !no_wait.no_wait).await?;
            Ok(Out::Resource(resp.json()?))
        }
        ExtensionCmd::Show { vmss, name } => {
            let path = format!("{}/extensions/{}", vmss_path_arg(ctx, vmss).await?, enc(name));
            Ok(Out::Resource(ctx.client.get_value(&path).await?))
        }
        ExtensionCmd::List { vmss } => list(ctx, &format!("{}/extensions", vmss_path_arg(ctx, vmss).await?)).await,
        ExtensionCmd::Delete { vmss, name, no_wait } => {
            let path = format!("{}/extensions/{}", vmss_path_arg(ctx, vmss).await?, enc(name));
            ctx.client.delete(&path, !no_wait.no_wait).await?;
            Ok(Out::Nothing)
        }
    }
}

/// A value that differs at each call (a new `forceUpdateTag`).
fn uuid_like() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{t:x}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(super::base64(b"hello"), "aGVsbG8=");
        assert_eq!(super::base64(b"hi"), "aGk=");
        assert_eq!(super::base64(b"abc"), "YWJj");
        assert_eq!(super::base64(b""), "");
    }
}
