//! `cargo xtask codegen [--check]`: docs/cli.md, the command reference, generated from the CLI's own
//! definitions (clap), so it always says what the binary accepts. `--check` (run by `ci`) fails when the
//! file is not what the definitions give.

use std::fmt::Write as _;

use anyhow::bail;
use clap::CommandFactory;

use crate::root;

fn flag(a: &clap::Arg) -> String {
    let mut names = vec![];
    if let Some(s) = a.get_short() {
        names.push(format!("-{s}"));
    }
    if let Some(l) = a.get_long() {
        names.push(format!("--{l}"));
    }
    if names.is_empty() {
        names.push(a.get_id().to_string().to_uppercase());
    }
    let takes_value = a.get_num_args().is_some_and(|n| n.takes_values());
    let value = match (takes_value, a.get_value_names()) {
        (true, Some(v)) => format!(" <{}>", v.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("> <")),
        (true, None) if a.get_long().is_some() || a.get_short().is_some() => {
            format!(" <{}>", a.get_id().as_str().to_uppercase())
        }
        _ => String::new(),
    };
    format!("`{}{value}`", names.join(", "))
}

fn help(a: &clap::Arg) -> String {
    let mut h = a.get_help().map(|h| h.to_string()).unwrap_or_default().replace('\n', " ").replace('|', "\\|");
    // clap drops a help text's final period; the table reads as sentences.
    if !h.is_empty() && !h.ends_with(['.', ':']) {
        h.push('.');
    }
    let values: Vec<String> =
        a.get_possible_values().iter().filter(|v| !v.is_hide_set()).map(|v| v.get_name().to_string()).collect();
    if !values.is_empty() && a.get_num_args().is_some_and(|n| n.takes_values()) {
        let _ = write!(h, " One of: {}.", values.join(", "));
    }
    let defaults: Vec<String> = a.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
    let is_flag = !a.get_num_args().is_some_and(|n| n.takes_values());
    if !defaults.is_empty() && !a.is_hide_default_value_set() && !is_flag {
        let _ = write!(h, " Default: `{}`.", defaults.join(" "));
    }
    if a.is_required_set() {
        h.push_str(" Required.");
    }
    h.trim().to_string()
}

fn walk(cmd: &clap::Command, path: &str, out: &mut String) {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let full = format!("{path} {}", sub.get_name());
        if sub.has_subcommands() {
            walk(sub, &full, out);
            continue;
        }
        let _ = writeln!(out, "## {full}\n");
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            let about = about.to_string();
            let about = about.trim();
            let _ = writeln!(out, "{about}{}\n", if about.ends_with(['.', ')']) { "" } else { "." });
        }
        let args: Vec<&clap::Arg> =
            sub.get_arguments().filter(|a| !a.is_hide_set() && !a.is_global_set() && a.get_id() != "help").collect();
        if !args.is_empty() {
            let _ = writeln!(out, "| option | meaning |\n|---|---|");
            for a in args {
                let _ = writeln!(out, "| {} | {} |", flag(a), help(a));
            }
            out.push('\n');
        }
    }
}

pub fn render() -> String {
    let mut cmd = galleon_cli::Cli::command();
    cmd.build();
    let mut out = String::from(
        "# Command reference\n\n\
         Generated from the CLI's definitions by `cargo xtask codegen`; `cargo xtask ci` checks it is fresh.\n\
         Every command also takes `--help`.\n\n## Global options\n\n| option | meaning |\n|---|---|\n",
    );
    for a in cmd.get_arguments().filter(|a| a.is_global_set() && !a.is_hide_set()) {
        let _ = writeln!(out, "| {} | {} |", flag(a), help(a));
    }
    out.push('\n');
    walk(&cmd, "galleon", &mut out);
    out
}

pub fn main(args: &[&str]) -> anyhow::Result<()> {
    let path = root().join("docs/cli.md");
    let fresh = render();
    if args.contains(&"--check") {
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != fresh {
            bail!("docs/cli.md is stale: run `cargo xtask codegen` and commit it");
        }
        eprintln!("xtask: docs/cli.md is fresh");
        return Ok(());
    }
    std::fs::write(&path, fresh)?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}
