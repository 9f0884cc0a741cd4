//! The architecture's dependency rules, checked on the real dependency graph (`cargo tree`), so a
//! layering mistake fails CI instead of waiting for a reviewer to notice it.

use std::process::Command;

use anyhow::{Context, bail};

/// (crate, crates it must never depend on, even indirectly, why).
const RULES: &[(&str, &[&str], &str)] = &[
    (
        "galleon-core",
        &["tokio", "rusqlite", "hyper", "galleon-store", "galleon-api"],
        "the core is pure: no I/O, no wire types",
    ),
    ("galleon-api", &["tokio", "rusqlite", "hyper", "galleon-core", "galleon-store"], "wire types are serde only"),
    (
        "galleon-store",
        &["tokio", "hyper", "axum", "galleon-images", "galleon-runtime", "galleon-lb"],
        "the store only persists",
    ),
    (
        "galleon-images",
        &["tokio", "rusqlite", "galleon-store", "galleon-api"],
        "the image store knows files, not resources",
    ),
    (
        "galleon-imagebuild",
        &["tokio", "rusqlite", "galleon-store", "galleon-api", "galleon-images"],
        "builds know templates and a root",
    ),
    (
        "galleon-runtime",
        &["rusqlite", "galleon-store", "galleon-api", "galleon-lb", "axum"],
        "the runtime runs instances, nothing else",
    ),
    (
        "galleon-lb",
        &["rusqlite", "galleon-store", "galleon-api", "galleon-runtime", "galleon-images", "axum"],
        "the load balancer knows backends, not scale sets",
    ),
    (
        "galleon-client",
        &["rusqlite", "galleon-store", "galleon-core", "axum"],
        "the client speaks the wire format only",
    ),
    (
        "galleon-cli",
        &["rusqlite", "galleon-store", "galleon-server", "galleon-images", "galleon-runtime", "galleon-lb", "axum"],
        "the CLI compiles no SQL and no domain logic",
    ),
];

/// Only this crate may depend on the SQL driver directly.
const SQL_OWNER: &str = "galleon-store";

fn deps(krate: &str) -> anyhow::Result<Vec<String>> {
    let out = Command::new("cargo")
        .args(["tree", "--quiet", "-e", "normal", "--prefix", "none", "--format", "{p}", "-p", krate])
        .current_dir(crate::root())
        .output()
        .context("cannot run cargo tree")?;
    if !out.status.success() {
        bail!("cargo tree -p {krate} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .skip(1)
        .collect())
}

pub fn check() -> anyhow::Result<()> {
    eprintln!("xtask: layering rules (cargo tree)");
    let mut broken = vec![];
    for (krate, forbidden, why) in RULES {
        let found = deps(krate)?;
        for f in *forbidden {
            if found.iter().any(|d| d == f) {
                broken.push(format!("{krate} depends on {f}: {why}"));
            }
        }
    }
    // `cargo tree -i rusqlite` lists who pulls the driver in; only the store may use it directly.
    let out = Command::new("cargo")
        .args([
            "tree", "--quiet", "-e", "normal", "-i", "rusqlite", "--depth", "1", "--prefix", "none", "--format", "{p}",
        ])
        .current_dir(crate::root())
        .output()
        .context("cannot run cargo tree -i")?;
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        let name = line.split_whitespace().next().unwrap_or_default();
        if name.starts_with("galleon") && name != SQL_OWNER {
            broken.push(format!("{name} uses rusqlite directly: only {SQL_OWNER} runs SQL"));
        }
    }
    if !broken.is_empty() {
        bail!("layering rules broken:\n  {}", broken.join("\n  "));
    }
    Ok(())
}
