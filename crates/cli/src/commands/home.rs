//! `galleon status`, `galleon shutdown`, `galleon store gc`: the home as a whole.

use std::time::{Duration, Instant};

use crate::args::StoreCmd;
use crate::context::{Ctx, Out};
use crate::error::{CliError, CliResult};

async fn galleon_path(ctx: &Ctx, rest: &str) -> CliResult<String> {
    Ok(format!("/subscriptions/{}/providers/Galleon/{rest}", ctx.sub().await?))
}

pub async fn status(ctx: &Ctx) -> CliResult<Out> {
    Ok(Out::Raw(ctx.client.get_value(&galleon_path(ctx, "status").await?).await?))
}

pub async fn store(ctx: &Ctx, cmd: &StoreCmd) -> CliResult<Out> {
    match cmd {
        StoreCmd::Gc => {
            let resp = ctx.client.post(&galleon_path(ctx, "collectGarbage").await?, None, true).await?;
            Ok(Out::Raw(resp.json()?))
        }
    }
}

/// Asks the control plane to stop everything, then waits until no process of the home is left.
pub async fn shutdown(ctx: &Ctx) -> CliResult<Out> {
    let resp = ctx.client.post(&galleon_path(ctx, "shutdown").await?, None, false).await?;
    let answer: serde_json::Value = resp.json()?;
    let home = ctx.global.home.canonicalize().unwrap_or_else(|_| ctx.global.home.clone());
    let started = Instant::now();
    loop {
        let left = processes_of(&home);
        if left.is_empty() {
            return Ok(Out::Raw(serde_json::json!({"home": home, "stopped": true, "controlPlanePid": answer["pid"]})));
        }
        if started.elapsed() > Duration::from_secs(90) {
            return Err(CliError::new(format!("the home {} still runs processes {left:?} after 90 s", home.display())));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Live processes (not this one) whose environment or command line names the home, or whose working
/// directory is under it: what `shutdown` waits for.
fn processes_of(home: &std::path::Path) -> Vec<i32> {
    let needle = home.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    let mut out = vec![];
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid == me {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if stat.is_empty() || zombie {
            continue;
        }
        let mentions = |f: &str| {
            std::fs::read(format!("/proc/{pid}/{f}"))
                .map(|b| String::from_utf8_lossy(&b).contains(&needle))
                .unwrap_or(false)
        };
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c.starts_with(home));
        if mentions("environ") || mentions("cmdline") || cwd {
            out.push(pid);
        }
    }
    out
}
