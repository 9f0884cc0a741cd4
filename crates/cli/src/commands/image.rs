//! `galleon image …`: managed images.

use serde_json::json;

use crate::args::{GroupArg, Ids, ImageCmd};
use crate::commands::{file_uri, required, sig::list};
use crate::context::{Ctx, Out, enc, is_id, tags};
use crate::error::{CliError, CliResult};
use galleon_client::Precondition;

async fn image_path(ctx: &Ctx, group: &GroupArg, name: &Option<String>, ids: &Ids) -> CliResult<String> {
    if let Some(id) = ids.ids.as_ref().and_then(|v| v.first()) {
        return Ok(id.clone());
    }
    let name = required(name, "--name/-n")?;
    if is_id(name) {
        return Ok(name.to_string());
    }
    ctx.provider_path(&ctx.group(group)?, "Microsoft.Compute", &format!("images/{}", enc(name))).await
}

pub async fn run(ctx: &Ctx, cmd: &ImageCmd) -> CliResult<Out> {
    match cmd {
        ImageCmd::Create { group, name, source, entrypoint, os_type, common } => {
            let path = image_path(ctx, group, &Some(name.clone()), &Ids::default()).await?;
            let body = json!({
                "location": common.location,
                "tags": tags(common),
                "properties": {
                    "storageProfile": {"osDisk": {"osType": os_type.as_deref().map(|_| "Linux"), "blobUri": file_uri(source)?}},
                    "galleon": {"entrypoint": entrypoint},
                },
            });
            let resp = ctx.client.put(&path, &body, Precondition::MustNotExist, true).await?;
            Ok(Out::Resource(resp.json()?))
        }
        ImageCmd::List { group } => {
            let path = match &group.resource_group {
                Some(rg) => ctx.provider_path(rg, "Microsoft.Compute", "images").await?,
                None => format!("/subscriptions/{}/providers/Microsoft.Compute/images", ctx.sub().await?),
            };
            list(ctx, &path).await
        }
        ImageCmd::Show { group, name, ids } => {
            Ok(Out::Resource(ctx.client.get_value(&image_path(ctx, group, name, ids).await?).await?))
        }
        ImageCmd::Delete { group, name, ids } => {
            ctx.client.delete(&image_path(ctx, group, name, ids).await?, true).await?;
            Ok(Out::Nothing)
        }
        ImageCmd::Build { template, var, var_file, on_error, group, no_wait } => {
            build(ctx, template, var, var_file, on_error.clone(), group, no_wait.no_wait).await
        }
    }
}

/// Sends a build to the daemon, then prints its output as it comes; fails when the build fails.
async fn build(
    ctx: &Ctx,
    template: &std::path::Path,
    vars: &[String],
    var_files: &[std::path::PathBuf],
    on_error: Option<String>,
    group: &GroupArg,
    no_wait: bool,
) -> CliResult<Out> {
    let text = std::fs::read_to_string(template)
        .map_err(|e| CliError::usage(format!("--template {}: {e}", template.display())))?;
    let template_json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CliError::usage(format!("the template {} is not valid JSON: {e}", template.display())))?;
    let mut pairs = vec![];
    for v in vars {
        let (k, val) = v.split_once('=').ok_or_else(|| CliError::usage(format!("-var '{v}' must be NAME=VALUE")))?;
        pairs.push((k.to_string(), val.to_string()));
    }
    let mut files = vec![];
    for f in var_files {
        let content =
            std::fs::read_to_string(f).map_err(|e| CliError::usage(format!("-var-file {}: {e}", f.display())))?;
        let value: serde_json::Value = serde_json::from_str(&content)
            .map_err(|e| CliError::usage(format!("-var-file {} is not valid JSON: {e}", f.display())))?;
        files.push((f.display().to_string(), value));
    }
    let cwd = std::env::current_dir()?;
    let body = galleon_api::build::BuildRequest {
        template: template_json,
        vars: pairs,
        var_files: files,
        env: std::env::vars().collect(),
        cwd: cwd.display().to_string(),
        on_error,
        default_group: group.resource_group.clone().or_else(|| ctx.config.default_value("group").map(String::from)),
    };
    let path = format!("/subscriptions/{}/providers/Galleon.Images/builds", ctx.sub().await?);
    let body = serde_json::to_value(&body).map_err(|e| CliError::new(e.to_string()))?;
    let resp = ctx.client.post(&path, Some(&body), false).await?;
    let op = resp.async_operation.as_deref().and_then(|u| u.rsplit('/').next()).unwrap_or_default().to_string();
    if no_wait {
        return Ok(Out::Raw(serde_json::json!({"build": op})));
    }
    let mut offset = 0;
    loop {
        let log: galleon_api::build::BuildLog = ctx.client.get(&format!("{path}/{op}/log?offset={offset}")).await?;
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            for line in &log.lines {
                let _ = writeln!(out, "{line}");
            }
            let _ = out.flush();
        }
        offset = log.next;
        match log.status {
            Some(galleon_api::OperationState::InProgress) | None => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await
            }
            Some(galleon_api::OperationState::Succeeded) => return Ok(Out::Nothing),
            Some(_) => {
                let e = log
                    .error
                    .map(|e| format!("({}) {}", e.code, e.message))
                    .unwrap_or_else(|| "the build failed".into());
                return Err(CliError::new(e));
            }
        }
    }
}
