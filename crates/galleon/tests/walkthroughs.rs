//! The README's walkthroughs, run as written: every ```sh block that follows a `<!-- walkthrough: NAME -->`
//! marker is part of walkthrough NAME; each walkthrough runs in bash (`-euo pipefail`) against a real
//! daemon in its own home, from the repository's root, with this build's `galleon` first on PATH. A
//! walkthrough's own checks (`grep`) fail it, so the docs cannot drift from what galleon does. It runs
//! in a scratch directory holding a copy of `examples/`, as if from the repository's root.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure message

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use galleon_testkit::Home;

const BIN: &str = env!("CARGO_BIN_EXE_galleon");

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Walkthrough name → its script, in README order.
fn walkthroughs() -> BTreeMap<String, String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.trim().strip_prefix("<!-- walkthrough:").and_then(|l| l.strip_suffix("-->")) else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert_eq!(fence.trim(), "```sh", "a walkthrough marker must be followed by a ```sh block");
        let script = out.entry(name.trim().to_string()).or_default();
        for l in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            script.push_str(l);
            script.push('\n');
        }
    }
    out
}

fn run(name: &str) {
    let script = walkthroughs().remove(name).unwrap_or_else(|| panic!("the README has no walkthrough {name}"));
    let home = Home::start(BIN);
    let work = tempfile::tempdir().unwrap();
    // As from the repository's root, but in a scratch copy: the walkthroughs write files where they run.
    std::fs::create_dir_all(work.path().join("examples")).unwrap();
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), work.path().join("examples").join(entry.file_name())).unwrap();
    }
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("GALLEON_HOME", home.path())
        .env("PATH", path)
        .env("TMPDIR", work.path())
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the README's walkthrough {name} failed:\n--- stdout\n{}\n--- stderr\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        home.log_tail()
    );
}

#[test]
fn the_readme_has_the_walkthroughs() {
    let names: Vec<String> = walkthroughs().into_keys().collect();
    assert_eq!(names, ["seed000", "seed003-extension", "seed003-image"]);
}

#[test]
fn seed_003_canary_with_the_custom_script_extension() {
    run("seed003-extension");
}

#[test]
fn seed_003_canary_with_images() {
    run("seed003-image");
}

#[test]
fn seed_000_the_fleet_upgrades_itself() {
    run("seed000");
}
