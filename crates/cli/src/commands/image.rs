//! `galleon image …`: managed images.

use serde_json::json;

use crate::args::{GroupArg, Ids, ImageCmd};
use crate::commands::{file_uri, required, sig::list};
use crate::context::{Ctx, Out, enc, is_id, tags};
use crate::error::CliResult;
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
    }
}
