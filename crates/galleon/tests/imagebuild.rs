//! Issue "Image builds", end to end: the examples' templates build the sample app's v1 and v2 and
//! publish them; a failing provisioner publishes nothing; a missing variable runs nothing.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure message

use std::time::Duration;

use galleon_testkit::http::body;
use galleon_testkit::{Home, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_galleon");

fn example(name: &str) -> String {
    format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn versions(home: &Home) -> String {
    home.ok(&["sig", "image-version", "list", "-r", "g", "-i", "web", "--query", "[].name", "-o", "tsv"])
}

#[test]
fn the_examples_build_v1_and_v2_and_publish_them() {
    let home = Home::start(BIN);
    home.gallery();
    let out = home.ok(&[
        "image",
        "build",
        "--template",
        &example("sample-app-v1.json"),
        "-var",
        &format!("galleon_binary={BIN}"),
    ]);
    assert!(
        out.contains("[3/3 shell \"start and page\"]") || out.contains("3/3"),
        "the output names its steps:\n{out}"
    );
    assert!(out.contains("published the image version g/web/1.0.0"), "{out}");
    let out = home.ok(&["image", "build", "--template", &example("sample-app-v2.json")]);
    assert!(out.contains("published the image version g/web/2.0.0"), "{out}");
    assert_eq!(versions(&home), "1.0.0\n2.0.0\n");
    // v2 shares v1's binary: the store keeps it once.
    let d1 = home.ok(&[
        "sig",
        "image-version",
        "show",
        "-r",
        "g",
        "-i",
        "web",
        "-e",
        "1.0.0",
        "--query",
        "galleon.digest",
        "-o",
        "tsv",
    ]);
    let d2 = home.ok(&[
        "sig",
        "image-version",
        "show",
        "-r",
        "g",
        "-i",
        "web",
        "-e",
        "2.0.0",
        "--query",
        "galleon.digest",
        "-o",
        "tsv",
    ]);
    assert_ne!(d1, d2);
    // The built image runs: v2's page says what its sed made of it.
    home.ok(&["vmss", "create", "-n", "web", "--image", "g/web/2.0.0", "--instance-count", "1"]);
    let ip = home.ip("web", 0);
    wait_until(Duration::from_secs(30), "the built v2 serves its page", || {
        body(&format!("http://{ip}:8080/"))
            .is_some_and(|p| p.contains("Welcome to galleon on a scale set") && p.contains("version 2.0.0"))
    });
}

#[test]
fn failed_builds_publish_nothing_and_bad_templates_run_nothing() {
    let home = Home::start(BIN);
    home.gallery();
    let work = tempfile::tempdir().unwrap();
    let template = |extra_step: &str, version: &str| {
        format!(
            r#"{{"variables": {{"title": null}},
               "builders": [{{"type": "galleon", "shared_image_gallery_destination":
                   {{"resource_group": "rg", "gallery_name": "g", "image_name": "web", "image_version": "{version}"}}}}],
               "provisioners": [
                   {{"type": "shell", "inline": ["echo '{{{{user `title`}}}}' > index.html", "printf '#!/bin/sh\\nsleep 100\\n' > start", "chmod +x start"]}},
                   {extra_step}
               ]}}"#
        )
    };
    // A provisioner that exits 1: the build fails at that step, nothing is published.
    let failing = work.path().join("fail.json");
    std::fs::write(
        &failing,
        template(r#"{"type": "shell", "inline": ["echo about to fail", "false", "echo never"]}"#, "1.0.0"),
    )
    .unwrap();
    let run = home.galleon(&["image", "build", "--template", failing.to_str().unwrap(), "-var", "title=x"]);
    assert_ne!(run.code, 0);
    assert!(run.stdout.contains("about to fail") && !run.stdout.contains("never"), "{}", run.stdout);
    assert!(run.stderr.contains("2/2"), "the error names the step: {}", run.stderr);
    assert_eq!(versions(&home), "");
    // A missing required variable: refused before anything runs, naming it.
    let touching = work.path().join("touch.json");
    std::fs::write(&touching, template(r#"{"type": "shell", "inline": ["touch ran"]}"#, "1.0.1")).unwrap();
    let run = home.fails(&["image", "build", "--template", touching.to_str().unwrap()]);
    assert!(run.stderr.contains("title"), "{}", run.stderr);
    assert_eq!(run.stdout, "", "a refused template printed build output: nothing may run");
    // Unknown keys and provisioner types: refused before anything runs.
    let typo = work.path().join("typo.json");
    std::fs::write(&typo, template(r#"{"type": "shell", "inlin": ["true"]}"#, "1.0.2")).unwrap();
    let run = home.fails(&["image", "build", "--template", typo.to_str().unwrap(), "-var", "title=x"]);
    assert!(run.stderr.contains("inlin"), "{}", run.stderr);
    let unknown = work.path().join("unknown.json");
    std::fs::write(&unknown, template(r#"{"type": "ansible", "playbook_file": "x"}"#, "1.0.3")).unwrap();
    let run = home.fails(&["image", "build", "--template", unknown.to_str().unwrap(), "-var", "title=x"]);
    assert!(run.stderr.contains("ansible"), "{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert_eq!(versions(&home), "");
    // The same template with the variable builds and publishes.
    let ok = home.ok(&["image", "build", "--template", touching.to_str().unwrap(), "-var", "title=hello"]);
    assert!(ok.contains("published the image version g/web/1.0.1"), "{ok}");
    assert_eq!(versions(&home), "1.0.1\n");
}
