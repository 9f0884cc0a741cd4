//! `galleon vmss rolling-upgrade start|cancel|get-latest` and `vmss get-os-upgrade-history`.
//!
//! `start` follows the upgrade to its end, showing its progress batch by batch on a terminal (nothing
//! but the result when piped), and fails unless it Completed — fit for a CI step.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde_json::Value;

use crate::args::{RollingUpgradeCmd, VmssName};
use crate::commands::vmss::vmss_path;
use crate::context::{Ctx, Out};
use crate::error::{CliError, CliResult};

pub async fn run(ctx: &Ctx, cmd: &RollingUpgradeCmd) -> CliResult<Out> {
    match cmd {
        RollingUpgradeCmd::Start { vmss, no_wait } => {
            let path = vmss_path(ctx, vmss).await?;
            ctx.client.post(&format!("{path}/osRollingUpgrade"), None, false).await?;
            if no_wait.no_wait {
                return Ok(Out::Nothing);
            }
            follow(ctx, &path).await
        }
        RollingUpgradeCmd::Cancel { vmss, no_wait } => {
            let path = vmss_path(ctx, vmss).await?;
            ctx.client.post(&format!("{path}/rollingUpgrades/cancel"), None, false).await?;
            if no_wait.no_wait {
                return Ok(Out::Nothing);
            }
            let latest = until_done(ctx, &path, false).await?;
            Ok(Out::Resource(latest))
        }
        RollingUpgradeCmd::GetLatest { vmss } => {
            let path = vmss_path(ctx, vmss).await?;
            Ok(Out::Resource(ctx.client.get_value(&format!("{path}/rollingUpgrades/latest")).await?))
        }
    }
}

pub async fn history(ctx: &Ctx, vmss: &VmssName) -> CliResult<Out> {
    let path = vmss_path(ctx, vmss).await?;
    let list: galleon_api::List<Value> = ctx.client.get(&format!("{path}/osUpgradeHistory")).await?;
    // As az prints it: the elements keep ARM's `properties` nesting.
    Ok(Out::Raw(Value::Array(list.value)))
}

/// Waits for the latest upgrade to end; shows progress when stderr is a terminal.
async fn until_done(ctx: &Ctx, path: &str, show: bool) -> CliResult<Value> {
    let show = show && std::io::stderr().is_terminal() && !ctx.global.only_show_errors;
    let mut last = String::new();
    loop {
        let latest = ctx.client.get_value(&format!("{path}/rollingUpgrades/latest")).await?;
        let p = &latest["properties"];
        let code = p["runningStatus"]["code"].as_str().unwrap_or_default().to_string();
        if show {
            let g = &p["galleon"];
            let line = format!(
                "{code}: batch {} [{}] · succeeded {} · in progress {} · pending {} · failed {}",
                g["batch"],
                g["batchInstances"]
                    .as_array()
                    .map(|a| a.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" "))
                    .unwrap_or_default(),
                p["progress"]["successfulInstanceCount"],
                p["progress"]["inProgressInstanceCount"],
                p["progress"]["pendingInstanceCount"],
                p["progress"]["failedInstanceCount"],
            );
            if line != last {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K{line}");
                let _ = err.flush();
                last = line;
            }
        }
        if code != "RollingForward" {
            if show {
                eprintln!();
            }
            return Ok(latest);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Follows a started upgrade: its end state printed, a failure unless Completed.
async fn follow(ctx: &Ctx, path: &str) -> CliResult<Out> {
    let latest = until_done(ctx, path, true).await?;
    let p = &latest["properties"];
    match p["runningStatus"]["code"].as_str().unwrap_or_default() {
        "Completed" => Ok(Out::Resource(latest)),
        code => {
            let why = p["error"]["message"].as_str().unwrap_or("no error was recorded").to_string();
            Err(CliError::new(format!("(RollingUpgrade{code}) the rolling upgrade ended {code}: {why}")))
        }
    }
}
