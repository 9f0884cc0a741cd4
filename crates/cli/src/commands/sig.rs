//! `galleon sig …`: galleries, image definitions and image versions, with az's flags.

use serde_json::{Value, json};

use crate::args::{DefinitionArgs, DefinitionCmd, GalleryArgs, Ids, SigCmd, VersionArgs, VersionCmd};
use crate::commands::{file_uri, generic_update, required};
use crate::context::{Ctx, Out, enc, is_id, tags};
use crate::error::{CliError, CliResult};
use galleon_api::schema::Editable;
use galleon_client::Precondition;

/// The first `--ids` value, checked to be of the expected type.
fn given_id(ids: &Ids, kind: &str) -> CliResult<Option<String>> {
    let Some(first) = ids.ids.as_ref().and_then(|v| v.first()) else { return Ok(None) };
    let id = galleon_core::ids::ResourceId::parse(first).map_err(|e| CliError::usage(e.to_string()))?;
    if !id.resource_type().eq_ignore_ascii_case(kind) {
        return Err(CliError::usage(format!("'{first}' is not the id of a {kind}")));
    }
    Ok(Some(first.clone()))
}

pub async fn gallery_path(ctx: &Ctx, a: &GalleryArgs) -> CliResult<String> {
    let g = required(&a.gallery, "--gallery-name/-r")?;
    if is_id(g) {
        return Ok(g.to_string());
    }
    ctx.provider_path(&ctx.group(&a.group)?, "Microsoft.Compute", &format!("galleries/{}", enc(g))).await
}

pub async fn definition_path(ctx: &Ctx, a: &DefinitionArgs) -> CliResult<String> {
    let d = required(&a.definition, "--gallery-image-definition/-i")?;
    if is_id(d) {
        return Ok(d.to_string());
    }
    Ok(format!("{}/images/{}", gallery_path(ctx, &a.gallery).await?, enc(d)))
}

pub async fn version_path(ctx: &Ctx, a: &VersionArgs) -> CliResult<String> {
    let v = required(&a.version, "--gallery-image-version/-e")?;
    if is_id(v) {
        return Ok(v.to_string());
    }
    Ok(format!("{}/versions/{}", definition_path(ctx, &a.definition).await?, enc(v)))
}

async fn or_ids(
    ids: &Ids,
    kind: &str,
    named: impl std::future::Future<Output = CliResult<String>>,
) -> CliResult<String> {
    match given_id(ids, kind)? {
        Some(id) => Ok(id),
        None => named.await,
    }
}

const GALLERY: &str = "Microsoft.Compute/galleries";
const DEFINITION: &str = "Microsoft.Compute/galleries/images";
const VERSION: &str = "Microsoft.Compute/galleries/images/versions";

pub async fn run(ctx: &Ctx, cmd: &SigCmd) -> CliResult<Out> {
    match cmd {
        SigCmd::Create { gallery, description, common } => {
            let body = json!({
                "location": common.location,
                "tags": tags(common),
                "properties": {"description": description},
            });
            let resp = ctx.client.put(&gallery_path(ctx, gallery).await?, &body, Precondition::None, true).await?;
            Ok(Out::Resource(resp.json()?))
        }
        SigCmd::List { group } => {
            let path = match &group.resource_group {
                Some(rg) => ctx.provider_path(rg, "Microsoft.Compute", "galleries").await?,
                None => format!("/subscriptions/{}/providers/Microsoft.Compute/galleries", ctx.sub().await?),
            };
            list(ctx, &path).await
        }
        SigCmd::Show { gallery, ids } => {
            let path = or_ids(ids, GALLERY, gallery_path(ctx, gallery)).await?;
            Ok(Out::Resource(ctx.client.get_value(&path).await?))
        }
        SigCmd::Delete { gallery, ids } => {
            let path = or_ids(ids, GALLERY, gallery_path(ctx, gallery)).await?;
            ctx.client.delete(&path, true).await?;
            Ok(Out::Nothing)
        }
        SigCmd::ImageDefinition(cmd) => definition(ctx, cmd).await,
        SigCmd::ImageVersion(cmd) => version(ctx, cmd).await,
    }
}

/// Prints the `value` of a list.
pub async fn list(ctx: &Ctx, path: &str) -> CliResult<Out> {
    let list: galleon_api::List<Value> = ctx.client.get(path).await?;
    Ok(Out::Resource(Value::Array(list.value)))
}

async fn definition(ctx: &Ctx, cmd: &DefinitionCmd) -> CliResult<Out> {
    match cmd {
        DefinitionCmd::Create {
            definition,
            publisher,
            offer,
            sku,
            os_type,
            os_state,
            hyper_v_generation,
            description,
            end_of_life_date,
            common,
        } => {
            let cap = |s: &str| {
                let mut c = s.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c.flat_map(char::to_lowercase)).collect::<String>())
                    .unwrap_or_default()
            };
            let body = json!({
                "location": common.location,
                "tags": tags(common),
                "properties": {
                    "osType": cap(os_type),
                    "osState": os_state.as_deref().map(cap).unwrap_or_else(|| "Generalized".into()),
                    "hyperVGeneration": hyper_v_generation,
                    "identifier": {"publisher": publisher, "offer": offer, "sku": sku},
                    "description": description,
                    "endOfLifeDate": end_of_life_date,
                },
            });
            let path = definition_path(ctx, definition).await?;
            let resp = ctx.client.put(&path, &body, Precondition::None, true).await?;
            Ok(Out::Resource(resp.json()?))
        }
        DefinitionCmd::List { gallery } => list(ctx, &format!("{}/images", gallery_path(ctx, gallery).await?)).await,
        DefinitionCmd::Show { definition, ids } => {
            let path = or_ids(ids, DEFINITION, definition_path(ctx, definition)).await?;
            Ok(Out::Resource(ctx.client.get_value(&path).await?))
        }
        DefinitionCmd::Delete { definition, ids } => {
            let path = or_ids(ids, DEFINITION, definition_path(ctx, definition)).await?;
            ctx.client.delete(&path, true).await?;
            Ok(Out::Nothing)
        }
    }
}

/// `--managed-image`: a name (in the version's group), `RG/NAME`, or an id.
async fn managed_image_id(ctx: &Ctx, version: &VersionArgs, image: &str) -> CliResult<String> {
    if is_id(image) {
        return Ok(image.to_string());
    }
    let (rg, name) = match image.split_once('/') {
        Some((rg, name)) => (rg.to_string(), name.to_string()),
        None => (ctx.group(&version.definition.gallery.group)?, image.to_string()),
    };
    ctx.provider_path(&rg, "Microsoft.Compute", &format!("images/{}", enc(&name))).await
}

async fn version(ctx: &Ctx, cmd: &VersionCmd) -> CliResult<Out> {
    match cmd {
        VersionCmd::Create {
            version,
            source,
            managed_image,
            exclude_from_latest,
            end_of_life_date,
            entrypoint,
            common,
            no_wait,
        } => {
            let path = version_path(ctx, version).await?;
            let mut storage = json!({});
            match (source, managed_image) {
                (Some(src), None) => storage["osDiskImage"] = json!({"source": {"uri": file_uri(src)?}}),
                (None, Some(image)) => storage["source"] = json!({"id": managed_image_id(ctx, version, image).await?}),
                _ => {
                    return Err(CliError::usage(
                        "give the content of the version: --source DIR_OR_TAR or --managed-image NAME_OR_ID",
                    ));
                }
            }
            let body = json!({
                "location": common.location,
                "tags": tags(common),
                "properties": {
                    "publishingProfile": {
                        "excludeFromLatest": exclude_from_latest.unwrap_or(false),
                        "endOfLifeDate": end_of_life_date,
                    },
                    "storageProfile": storage,
                    "galleon": {"entrypoint": entrypoint},
                },
            });
            let resp = ctx.client.put(&path, &body, Precondition::MustNotExist, !no_wait.no_wait).await?;
            Ok(Out::Resource(resp.json()?))
        }
        VersionCmd::List { definition } => {
            list(ctx, &format!("{}/versions", definition_path(ctx, definition).await?)).await
        }
        VersionCmd::Show { version, ids } => {
            let path = or_ids(ids, VERSION, version_path(ctx, version)).await?;
            Ok(Out::Resource(ctx.client.get_value(&path).await?))
        }
        VersionCmd::Update { version, ids, exclude_from_latest, end_of_life_date, update, no_wait } => {
            let path = or_ids(ids, VERSION, version_path(ctx, version)).await?;
            let mut sets = vec![];
            if let Some(x) = exclude_from_latest {
                sets.push(format!("publishingProfile.excludeFromLatest={x}"));
            }
            if let Some(d) = end_of_life_date {
                sets.push(format!("publishingProfile.endOfLifeDate={d}"));
            }
            generic_update(ctx, &path, Editable::GalleryImageVersion, sets, update, no_wait.no_wait).await
        }
        VersionCmd::Delete { version, ids, no_wait } => {
            let path = or_ids(ids, VERSION, version_path(ctx, version)).await?;
            ctx.client.delete(&path, !no_wait.no_wait).await?;
            Ok(Out::Nothing)
        }
    }
}
