//! What the tasks need beyond the Rust toolchain, installed when missing: Debian packages through
//! `apt-get`, rustup components through `rustup`. Both commands of the README install what they need.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

/// Where `tool` is on `PATH` (or in the sbin directories, where nginx and HAProxy live).
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]).map(|d| d.join(tool)).find(|p| p.exists())
}

/// Installs the Debian packages of the `(command, package)` pairs whose command is missing.
pub fn ensure_packages(needs: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> =
        needs.iter().filter(|(tool, _)| which(tool).is_none()).map(|(_, package)| *package).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    eprintln!("xtask: installing {list}");
    let status = Command::new("sh")
        .args(["-c", &format!("apt-get update && apt-get install -y {list}")])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("cannot run apt-get")?;
    if !status.success() {
        bail!("`apt-get install -y {list}` failed ({status})");
    }
    Ok(())
}

/// Adds the rustup components (`rustfmt`, `clippy`) whose cargo subcommand does not answer.
pub fn ensure_components(needs: &[(&str, &str)]) -> anyhow::Result<()> {
    for (subcommand, component) in needs {
        let answers = Command::new("cargo").args([subcommand, "--version"]).output().is_ok_and(|o| o.status.success());
        if !answers {
            crate::run("rustup", &["component", "add", component])?;
        }
    }
    Ok(())
}
