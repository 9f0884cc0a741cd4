//! Each command group carried out: from parsed arguments to API calls to something to print.

pub mod demo;
pub mod group;
pub mod home;
pub mod image;
pub mod network;
pub mod sig;
pub mod upgrade;
pub mod vmss;

use std::path::Path;

use galleon_api::schema::{self, Editable};
use serde_json::Value;

use crate::args::{Command, GenericUpdate};
use crate::context::{Ctx, Out};
use crate::edit;
use crate::error::{CliError, CliResult};

pub async fn run(ctx: &Ctx, command: &Command) -> CliResult<Out> {
    match command {
        Command::Group(cmd) => group::run(ctx, cmd).await,
        Command::Configure(args) => group::configure(ctx, args),
        Command::Account(cmd) => group::account(ctx, cmd).await,
        Command::Sig(cmd) => sig::run(ctx, cmd).await,
        Command::Image(cmd) => image::run(ctx, cmd).await,
        Command::Vmss(cmd) => vmss::run(ctx, cmd).await,
        Command::Network(cmd) => network::run(ctx, cmd).await,
        Command::Status => home::status(ctx).await,
        Command::Demo => {
            // The demo's home is its own unless --home (or GALLEON_HOME) was given on purpose.
            let explicit = std::env::args().any(|a| a == "--home" || a.starts_with("--home="))
                || std::env::var_os("GALLEON_HOME").is_some();
            let home = ctx.global.home.clone();
            tokio::task::spawn_blocking(move || demo::run(explicit.then_some(home.as_path())))
                .await
                .map_err(|e| CliError::new(e.to_string()))?
        }
        Command::Shutdown => home::shutdown(ctx).await,
        Command::Store(cmd) => home::store(ctx, cmd).await,
        Command::Serve | Command::Agent { .. } | Command::SampleApp | Command::Dataplane => {
            Err(CliError::new("this command is run by the galleon binary, not the CLI library"))
        }
    }
}

/// A flag az requires, as az says it.
pub fn required<'a>(value: &'a Option<String>, flag: &str) -> CliResult<&'a str> {
    value.as_deref().ok_or_else(|| CliError::usage(format!("the following arguments are required: {flag}")))
}

/// A local path as the `file://` URI the API takes (absolute, and it must exist).
pub fn file_uri(path: &Path) -> CliResult<String> {
    let abs = path
        .canonicalize()
        .map_err(|e| CliError::usage(format!("the source '{}' cannot be read: {e}", path.display())))?;
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    Ok(format!("file://{}", percent_encoding::utf8_percent_encode(&abs.to_string_lossy(), SET)))
}

/// az's generic update: GET, apply `sets` then `--set`, `--add`, `--remove` on the flattened document,
/// checked against the schema, then PUT it back.
pub async fn generic_update(
    ctx: &Ctx,
    path: &str,
    kind: Editable,
    sets: Vec<String>,
    update: &GenericUpdate,
    no_wait: bool,
) -> CliResult<Out> {
    let schema = schema::of(kind);
    let noun = kind.noun();
    let current: Value = ctx.client.get_value(path).await?;
    let mut doc = crate::output::flatten(current);
    for s in sets.iter().chain(&update.set) {
        edit::set(&mut doc, &schema, noun, s)?;
    }
    for pair in update.add.chunks(2) {
        let [p, value] = pair else { return Err(CliError::usage("--add needs a path and a value")) };
        edit::add(&mut doc, &schema, noun, p, std::slice::from_ref(value))?;
    }
    // `--remove PATH [INDEX]` values arrive in one list: an index is a number, a path never is.
    let mut removals: Vec<(String, Option<usize>)> = vec![];
    for v in &update.remove {
        match (v.parse::<usize>(), removals.last_mut()) {
            (Ok(i), Some((_, slot @ None))) => *slot = Some(i),
            _ => removals.push((v.clone(), None)),
        }
    }
    for (p, index) in removals {
        edit::remove(&mut doc, &schema, noun, &p, index)?;
    }
    let arm = edit::unflatten(&doc, &schema);
    let resp = ctx.client.put(path, &arm, Default::default(), !no_wait).await?;
    Ok(Out::Resource(resp.json()?))
}
