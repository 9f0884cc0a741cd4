//! `galleon group …` and `galleon configure`, `galleon account show`.

use serde_json::json;

use crate::args::{AccountCmd, ConfigureArgs, GroupCmd};
use crate::context::{Ctx, Out, enc, tags};
use crate::error::{CliError, CliResult};

pub async fn run(ctx: &Ctx, cmd: &GroupCmd) -> CliResult<Out> {
    let sub = ctx.sub().await?;
    let path = |name: &str| format!("/subscriptions/{sub}/resourceGroups/{}", enc(name));
    match cmd {
        GroupCmd::Create { name, common } => {
            let body = json!({
                "location": common.location.clone().unwrap_or_else(|| galleon_api::DEFAULT_LOCATION.into()),
                "tags": tags(common),
            });
            let resp = ctx.client.put(&path(name), &body, Default::default(), true).await?;
            // Resource groups keep `properties` nested in az's output.
            Ok(Out::Raw(resp.json()?))
        }
        GroupCmd::List => {
            let list: galleon_api::List<serde_json::Value> =
                ctx.client.get(&format!("/subscriptions/{sub}/resourceGroups")).await?;
            Ok(Out::Raw(serde_json::Value::Array(list.value)))
        }
        GroupCmd::Show { name } => Ok(Out::Raw(ctx.client.get_value(&path(name)).await?)),
        GroupCmd::Exists { name } => {
            let found = match ctx.client.send(http::Method::HEAD, &path(name), None, Default::default()).await {
                Ok(_) => true,
                Err(e) if e.status().is_some_and(|s| s.as_u16() == 404) => false,
                Err(e) => return Err(e.into()),
            };
            Ok(Out::Raw(serde_json::Value::Bool(found)))
        }
        GroupCmd::Delete { name, yes, no_wait } => {
            if !yes && !confirm()? {
                return Err(CliError::usage("Operation cancelled."));
            }
            ctx.client.delete(&path(name), !no_wait.no_wait).await?;
            Ok(Out::Nothing)
        }
    }
}

pub fn configure(ctx: &Ctx, args: &ConfigureArgs) -> CliResult<Out> {
    let mut config = ctx.config.clone();
    for kv in &args.defaults {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(CliError::usage(format!("--defaults '{kv}' must be KEY=VALUE, e.g. group=rg")));
        };
        if !["group", "location", "vmss", "lb"].contains(&k) {
            return Err(CliError::usage(format!("'{k}' is not a default galleon knows (group, location, vmss, lb)")));
        }
        config.set_default(k, v);
    }
    if !args.defaults.is_empty() {
        config.save(&ctx.global.home)?;
    }
    if args.list_defaults || args.defaults.is_empty() {
        let defaults: Vec<serde_json::Value> = config
            .sections
            .get("defaults")
            .map(|d| {
                d.iter()
                    .map(|(k, v)| json!({"name": k, "source": ctx.global.home.join("config"), "value": v}))
                    .collect()
            })
            .unwrap_or_default();
        return Ok(Out::Raw(serde_json::Value::Array(defaults)));
    }
    Ok(Out::Nothing)
}

pub async fn account(ctx: &Ctx, cmd: &AccountCmd) -> CliResult<Out> {
    match cmd {
        AccountCmd::Show => {
            let sub = ctx.sub().await?.to_string();
            let s: galleon_api::Subscription = ctx.client.get(&format!("/subscriptions/{sub}")).await?;
            Ok(Out::Raw(json!({
                "environmentName": "galleon",
                "home": ctx.global.home,
                "id": s.subscription_id,
                "isDefault": true,
                "name": s.display_name,
                "state": s.state,
                "tenantId": s.tenant_id,
            })))
        }
    }
}

/// az's question before deleting a group with everything in it; without a terminal to ask, `--yes` is
/// needed.
fn confirm() -> CliResult<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage("Unable to prompt for confirmation as no tty is available. Use --yes."));
    }
    eprint!("Are you sure you want to perform this operation? (y/n): ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}
