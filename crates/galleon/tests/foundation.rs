//! Issue "Foundation", end to end with the real daemon: the gallery, the image store's deduplication,
//! bad input refused without changing anything, and state kept across a restart and a `kill -9`.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure message

use std::path::Path;
use std::time::Duration;

use galleon_testkit::archive::{Entry, write_tar};
use galleon_testkit::{Home, disk_usage, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_galleon");

/// An app root: an executable `start`, a page, and a large file shared by every version.
fn app_root(dir: &Path, page: &str, big: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let start = dir.join("start");
    std::fs::write(&start, "#!/bin/sh\nexec sleep 1000\n").unwrap();
    std::fs::set_permissions(&start, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("index.html"), page).unwrap();
    std::fs::write(dir.join("blob.bin"), big).unwrap();
}

fn versions(home: &Home) -> String {
    home.ok(&[
        "sig",
        "image-version",
        "list",
        "-g",
        "rg",
        "--gallery-name",
        "g",
        "--gallery-image-definition",
        "web",
        "--query",
        "[].name",
        "-o",
        "tsv",
    ])
}

fn publish(home: &Home, version: &str, src: &Path, extra: &[&str]) -> galleon_testkit::Run {
    let mut args = vec![
        "sig",
        "image-version",
        "create",
        "-g",
        "rg",
        "--gallery-name",
        "g",
        "--gallery-image-definition",
        "web",
        "--gallery-image-version",
        version,
        "--source",
        src.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    home.galleon(&args)
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

#[test]
fn gallery_store_bad_input_and_restarts() {
    let mut home = Home::start(BIN);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    home.ok(&["group", "create", "-n", "rg"]);
    home.ok(&["sig", "create", "-g", "rg", "--gallery-name", "g"]);
    home.ok(&[
        "sig",
        "image-definition",
        "create",
        "-g",
        "rg",
        "--gallery-name",
        "g",
        "--gallery-image-definition",
        "web",
        "--publisher",
        "galleon",
        "--offer",
        "app",
        "--sku",
        "v",
        "--os-type",
        "Linux",
        "--os-state",
        "Generalized",
    ]);
    let big: Vec<u8> = (0..8_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    app_root(&w.join("v1"), "v1.0.0", &big);
    app_root(&w.join("v11"), "v1.1.0 with a longer page", &big);
    app_root(&w.join("v2"), "v2.0.0", &big);

    assert_eq!(publish(&home, "1.0.0", &w.join("v1"), &[]).code, 0);
    let before = disk_usage(home.path());
    assert_eq!(publish(&home, "1.1.0", &w.join("v11"), &[]).code, 0);
    let grew = disk_usage(home.path()) - before;
    // One changed file of a few bytes, an 8 MB file unchanged: the home grows by blocks, not megabytes.
    assert!(grew < 256 * 1024, "publishing a one-file change grew the home by {grew} bytes");
    assert_eq!(publish(&home, "2.0.0", &w.join("v2"), &["--exclude-from-latest"]).code, 0);

    assert_eq!(versions(&home), "1.0.0\n1.1.0\n2.0.0\n");
    let latest = home.ok(&[
        "sig",
        "image-version",
        "show",
        "-g",
        "rg",
        "-r",
        "g",
        "-i",
        "web",
        "-e",
        "latest",
        "--query",
        "name",
        "-o",
        "tsv",
    ]);
    assert_eq!(latest, "1.1.0\n", "g/web must resolve to the highest version not excluded from latest");

    // Bad input: a clear one-line error, a non-zero exit, and nothing changed.
    let store_usage = disk_usage(&home.path().join("store"));
    write_tar(
        &w.join("slip.tar"),
        &[
            Entry::File { path: "start", data: b"#!/bin/sh\n", mode: 0o755 },
            Entry::File { path: "../evil", data: b"x", mode: 0o644 },
        ],
    );
    let outside = w.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let outside_s = s(&outside);
    write_tar(
        &w.join("link.tar"),
        &[
            Entry::File { path: "start", data: b"#!/bin/sh\n", mode: 0o755 },
            Entry::Symlink { path: "etc", target: &outside_s },
            Entry::File { path: "etc/link-marker", data: b"x", mode: 0o644 },
        ],
    );
    let (v1, slip, link) = (s(&w.join("v1")), s(&w.join("slip.tar")), s(&w.join("link.tar")));
    let version = |g: &str, v: &str, src: &str| -> Vec<String> {
        ["sig", "image-version", "create", "-g", "rg", "-r", g, "-i", "web", "-e", v, "--source", src]
            .iter()
            .map(|x| x.to_string())
            .collect()
    };
    let update = |set: &str| -> Vec<String> {
        ["sig", "image-version", "update", "-g", "rg", "-r", "g", "-i", "web", "-e", "1.0.0", "--set", set]
            .iter()
            .map(|x| x.to_string())
            .collect()
    };
    let bad: Vec<(Vec<String>, &str)> = vec![
        (version("g", "1.0", &v1), "not a valid image version"),
        (version("g", "1.0.0", &v1), "already exists"),
        (version("nope", "3.0.0", &v1), "'nope' not found"),
        (version("g", "3.0.1", &slip), "../evil"),
        (version("g", "3.0.2", &link), "etc"),
        (
            ["sig", "image-definition", "delete", "-g", "rg", "-r", "g", "-i", "web"]
                .iter()
                .map(|x| x.to_string())
                .collect(),
            "3 version(s)",
        ),
        (update("publishingProfile..x"), "empty segment"),
        (update("publishingProfile.nope=1"), "not a property"),
        (update("galleon.digest=sha256:00"), "read-only"),
    ];
    for (cmd, says) in &bad {
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let run = home.fails(&cmd);
        assert!(
            run.stderr.contains(says),
            "`galleon {}` said {:?}, expected it to mention {says:?}",
            cmd.join(" "),
            run.stderr
        );
        assert_eq!(versions(&home), "1.0.0\n1.1.0\n2.0.0\n", "`galleon {}` changed the versions", cmd.join(" "));
    }
    assert!(!outside.join("link-marker").exists() && !w.join("evil").exists(), "an archive wrote outside its root");
    wait_until(Duration::from_secs(10), "refused imports leave the store as it was", || {
        disk_usage(&home.path().join("store")) <= store_usage
    });

    // A good update works, and it is kept across a restart and a kill -9.
    home.ok(&[
        "sig",
        "image-version",
        "update",
        "-g",
        "rg",
        "-r",
        "g",
        "-i",
        "web",
        "-e",
        "1.1.0",
        "--set",
        "publishingProfile.endOfLifeDate=2030-01-01",
    ]);
    home.stop_daemon();
    home.start_daemon();
    assert_eq!(versions(&home), "1.0.0\n1.1.0\n2.0.0\n");
    home.kill_daemon();
    home.start_daemon();
    assert_eq!(versions(&home), "1.0.0\n1.1.0\n2.0.0\n");
    let eol = home.ok(&[
        "sig",
        "image-version",
        "show",
        "-g",
        "rg",
        "-r",
        "g",
        "-i",
        "web",
        "-e",
        "1.1.0",
        "--query",
        "publishingProfile.endOfLifeDate",
        "-o",
        "tsv",
    ]);
    assert_eq!(eol, "2030-01-01\n");
}

#[test]
fn defaults_ids_exit_codes_and_no_daemon() {
    let home = Home::start(BIN);
    home.ok(&["group", "create", "-n", "rg"]);
    // -g may be left out once a default group is configured.
    assert_eq!(home.fails(&["sig", "create", "--gallery-name", "g"]).code, 2);
    home.ok(&["configure", "--defaults", "group=rg"]);
    home.ok(&["sig", "create", "--gallery-name", "g"]);
    let id = home.ok(&["sig", "show", "--gallery-name", "g", "--query", "id", "-o", "tsv"]);
    // ARM ids are accepted where names are.
    assert_eq!(home.ok(&["sig", "show", "--ids", id.trim(), "--query", "name", "-o", "tsv"]), "g\n");
    assert_eq!(home.ok(&["sig", "show", "--gallery-name", id.trim(), "--query", "name", "-o", "tsv"]), "g\n");
    // A resource that does not exist: exit 3, as az.
    let missing = home.fails(&["sig", "show", "--gallery-name", "nope"]);
    assert_eq!(missing.code, 3);
    assert!(missing.stderr.contains("(ResourceNotFound)"), "{}", missing.stderr);
    // A usage error: exit 2.
    assert_eq!(home.fails(&["sig", "create", "--no-such-flag"]).code, 2);
    // No daemon: a clear message.
    let nowhere = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN).args(["group", "list", "--home"]).arg(nowhere.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no galleon daemon answers"), "{err}");
    // Output formats.
    let yaml = home.ok(&["sig", "show", "--gallery-name", "g", "-o", "yaml"]);
    assert!(yaml.contains("name: g\n"), "{yaml}");
    let table = home.ok(&["sig", "list", "-o", "table", "--query", "[].{Name:name, Group:resourceGroup}"]);
    assert_eq!(table, "Name  Group\n----  -----\ng     rg\n");
    assert_eq!(home.ok(&["sig", "list", "-o", "none"]), "");
}

#[test]
fn the_home_and_its_socket_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::start(BIN);
    let mode = std::fs::metadata(home.path().join("galleon.sock")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let home_mode = std::fs::metadata(home.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(home_mode & 0o077, 0, "the home must not be open to others");
}
