//! galleon's command line, shaped like `az`: the same groups, verbs, flags, output and exit codes.
//!
//! `parse` turns arguments into the command tree (`args`); `run` carries a command out against the home's
//! daemon through `galleon-client` and prints the result (`output`). The CLI holds no state and no domain
//! logic: it names resources, edits documents (`edit`) and shows answers.

pub mod args;
pub mod commands;
pub mod config;
pub mod context;
pub mod edit;
pub mod error;
pub mod output;

use std::ffi::OsString;

use clap::Parser;

pub use args::{Cli, Command};
use context::Ctx;
use error::CliError;

/// What parsing gave: a command to run, or an exit (help, version, a usage error already printed).
pub enum Parsed {
    Run(Box<Cli>),
    Exit(i32),
}

/// Parses arguments as galleon takes them. Packer's single-dash `-var k=v` and `-var-file f` are
/// rewritten to their long forms first (CONTRACT §10). Usage errors print one line and give exit 2.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Parsed {
    let args: Vec<OsString> = args
        .into_iter()
        .map(|a| match a.to_str() {
            Some("-var") => OsString::from("--var"),
            Some("-var-file") => OsString::from("--var-file"),
            Some(s) if s.starts_with("-var=") || s.starts_with("-var-file=") => OsString::from(format!("-{s}")),
            _ => a,
        })
        .collect();
    match Cli::try_parse_from(args) {
        Ok(cli) => Parsed::Run(Box::new(cli)),
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                let code = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand { 2 } else { 0 };
                return Parsed::Exit(code);
            }
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            eprintln!("ERROR: {first} (see --help)");
            Parsed::Exit(2)
        }
    }
}

/// Runs a CLI command against the daemon and prints its result; returns the exit status.
pub fn run(cli: Box<Cli>) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return report(CliError::new(format!("cannot start: {e}"))),
    };
    let result = rt.block_on(async {
        let ctx = Ctx::new(cli.global.clone())?;
        let out = commands::run(&ctx, &cli.command).await?;
        ctx.print(out)
    });
    match result {
        Ok(()) => 0,
        Err(e) => report(e),
    }
}

fn report(e: CliError) -> i32 {
    let msg = e.message.replace('\n', " ");
    eprintln!("ERROR: {msg}");
    e.exit
}
