//! galleon's automation, in Rust rather than Makefiles: `cargo xtask ci | layering | …`.
//!
//! `ci` is what `.ci/run` and the README's test command run: formatting, clippy with warnings as errors,
//! the layering rules of ARCHITECTURE.md checked with `cargo tree`, and every test.

use std::process::Command;

use anyhow::{Context, bail};

mod bench;
mod bench_lb;
mod bench_upgrade;
mod codegen;
mod layering;
mod tools;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = || args.iter().skip(1).map(String::as_str).collect::<Vec<_>>();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("layering") => layering::check(),
        Some("test") => test(&rest()),
        Some("bench") => bench::main(&rest()),
        Some("codegen") => codegen::main(&rest()),
        _ => {
            eprintln!("usage: cargo xtask <ci | layering | codegen [--check] | test [ARGS…] | bench NAME>");
            bail!("unknown task")
        }
    }
}

/// Runs a command from the workspace root, failing with its name if it fails.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    eprintln!("xtask: {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(|p| p.to_path_buf()).unwrap_or_default()
}

fn ci() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    // The walkthroughs run the README's blocks in bash, and they use curl; a test's app serves TLS with
    // openssl's s_server.
    tools::ensure_packages(&[("bash", "bash"), ("curl", "curl"), ("openssl", "openssl")])?;
    tools::ensure_components(&[("fmt", "rustfmt"), ("clippy", "clippy")])?;
    run("cargo", &["fmt", "--all", "--", "--check"])?;
    run("cargo", &["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"])?;
    layering::check()?;
    codegen::main(&["--check"])?;
    test(&[])?;
    eprintln!("xtask: ci passed in {:.0?}", started.elapsed());
    Ok(())
}

fn test(extra: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["test", "--workspace", "--locked"];
    args.extend_from_slice(extra);
    run("cargo", &args)
}
