//! Defensive import: every way an untrusted source can try to reach outside the image, or hold what an
//! image cannot, is refused with a message naming the entry, and a refused import leaves the store
//! exactly as it was (including the blobs it wrote before the bad entry).

use tar::EntryType;

use super::*;
use crate::Error;

/// Each archive starts with an innocent file whose content is unique to the case, so the import has
/// created a blob by the time it meets the bad entry.
fn refused_archive(case: &str, build: impl FnOnce(&mut RawTar)) -> String {
    let (tmp, store) = new_store();
    // Something already in the store must stay untouched too.
    let kept = tmp.path().join("kept");
    super::build(&kept, &[("keep", file("keep", 0o644))]);
    let kept = store.import(&kept).unwrap();
    let before = snapshot(&store);

    let mut tar = RawTar::new();
    tar.file("innocent", format!("innocent content of {case}").as_bytes());
    build(&mut tar);
    let tar = tar.finish();
    let mut messages = Vec::new();
    for (name, bytes) in [("plain", tar.clone()), ("gz", gzip(&tar)), ("zst", zstd(&tar))] {
        let err = import_bytes(&store, tmp.path(), name, &bytes).unwrap_err();
        assert!(matches!(err, Error::Refused { .. }), "{case} ({name}): {err:?}");
        assert_eq!(snapshot(&store), before, "{case} ({name}) changed the store");
        messages.push(err.to_string());
    }
    assert!(messages.windows(2).all(|w| w[0] == w[1]), "{messages:?}");
    store.manifest(&kept.digest).unwrap();
    messages.remove(0)
}

#[test]
fn paths_that_leave_the_root() {
    let cases: [(&[u8], &str); 6] = [
        (b"../evil", "archive entry '../evil' leaves the image root"),
        (b"./../evil", "archive entry './../evil' leaves the image root"),
        (b"a/../../evil", "archive entry 'a/../../evil' leaves the image root"),
        (b"a/b/../c", "archive entry 'a/b/../c' leaves the image root"),
        (b"/etc/cron.d/evil", "archive entry '/etc/cron.d/evil' has an absolute path"),
        (b"", "archive entry '' has an empty path"),
    ];
    for (name, expected) in cases {
        let msg = refused_archive(expected, |t| {
            t.entry(name, EntryType::Regular, 0o644, b"", b"payload");
        });
        assert_eq!(msg, expected);
    }
}

#[test]
fn long_names_are_checked_too() {
    let name = format!("{}/../../../etc/passwd", "d/".repeat(60));
    let msg = refused_archive("long", |t| {
        t.file(&name, b"payload");
    });
    assert_eq!(msg, format!("archive entry '{name}' leaves the image root"));
}

#[test]
fn bad_names() {
    let msg = refused_archive("utf8", |t| {
        t.entry(b"caf\xe9", EntryType::Regular, 0o644, b"", b"x");
    });
    assert_eq!(msg, "archive entry 'caf\u{fffd}' is not valid UTF-8");
    let msg = refused_archive("root", |t| {
        t.entry(b"./", EntryType::Regular, 0o644, b"", b"x");
    });
    assert_eq!(msg, "archive entry './' names the image root but is not a directory");
}

#[test]
fn writing_through_a_symlink_defined_earlier() {
    // The classic: a link to /etc, then a file "inside" it.
    let msg = refused_archive("etc", |t| {
        t.symlink("etc", "/etc").file("etc/cron.d/evil", b"* * * * * root sh");
    });
    assert_eq!(
        msg,
        "archive entry 'etc' is a symlink to the absolute path '/etc'; only relative links inside the image are allowed"
    );
    // Even a link that stays inside cannot be written through: the path would not be what it says.
    let msg = refused_archive("inside", |t| {
        t.dir("real").symlink("etc", "real").file("etc/x", b"x");
    });
    assert_eq!(msg, "archive entry 'etc/x' passes through the symlink 'etc'");
    let msg = refused_archive("deeper", |t| {
        t.symlink("a/b", "../c").file("a/b/c/d", b"x");
    });
    assert_eq!(msg, "archive entry 'a/b/c/d' passes through the symlink 'a/b'");
    // Or replace a directory by a link after filling it.
    let msg = refused_archive("replace", |t| {
        t.file("d/x", b"x").symlink("d", ".");
    });
    assert_eq!(msg, "archive entry 'd' replaces an earlier directory");
}

#[test]
fn symlinks_that_leave_the_root() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("up", "..")], "archive entry 'up' is a symlink to '..', which leaves the image root"),
        (
            &[("a/b/up", "../../../x")],
            "archive entry 'a/b/up' is a symlink to '../../../x', which leaves the image root",
        ),
        // Lexically harmless, for real one level up: `s` is the root, so `s/..` is above it.
        (&[("s", "."), ("a", "s/..")], "archive entry 'a' is a symlink to 's/..', which leaves the image root"),
        (
            &[("x/l1", "../y/l2"), ("y/l2", "../..")],
            "archive entry 'x/l1' is a symlink to '../y/l2', which leaves the image root",
        ),
        (&[("a", "b"), ("b", "a")], "archive entry 'a' is a symlink to 'b', which loops (more than 40 links deep)"),
    ];
    for (links, expected) in cases {
        let msg = refused_archive(expected, |t| {
            for (path, target) in links {
                t.symlink(path, target);
            }
        });
        assert_eq!(msg, expected);
    }
}

#[test]
fn hard_links_must_name_an_earlier_regular_file() {
    let msg = refused_archive("missing", |t| {
        t.hard_link("h", "nothere");
    });
    assert_eq!(
        msg,
        "archive entry 'h' is a hard link to 'nothere', which is not an earlier regular file in the archive"
    );
    let msg = refused_archive("later", |t| {
        t.hard_link("h", "f").file("f", b"x");
    });
    assert_eq!(msg, "archive entry 'h' is a hard link to 'f', which is not an earlier regular file in the archive");
    for (target, case) in [("/etc/shadow", "absolute"), ("../x", "parent"), ("d", "dir"), ("l", "symlink")] {
        let msg = refused_archive(case, |t| {
            t.dir("d").symlink("l", "innocent").hard_link("h", target);
        });
        assert_eq!(
            msg,
            format!(
                "archive entry 'h' is a hard link to '{target}', which is not an earlier regular file in the archive"
            )
        );
    }
}

const CANNOT_HOLD: &str = "which an image cannot hold (only files, directories and symlinks)";

#[test]
fn devices_fifos_and_unknown_types() {
    let cases = [
        (EntryType::Char, "a character device"),
        (EntryType::Block, "a block device"),
        (EntryType::Fifo, "a fifo"),
        (EntryType::new(b'V'), "a tar entry of type 'V'"),
    ];
    for (kind, what) in cases {
        let msg = refused_archive(what, |t| {
            t.entry(b"dev/null", kind, 0o666, b"", b"");
        });
        assert_eq!(msg, format!("archive entry 'dev/null' is {what}, {CANNOT_HOLD}"));
    }
}

#[test]
fn duplicates_and_files_used_as_directories() {
    let msg = refused_archive("dup", |t| {
        t.file("f", b"1").file("f", b"2");
    });
    assert_eq!(msg, "archive entry 'f' appears twice");
    let msg = refused_archive("under", |t| {
        t.file("f", b"1").file("f/g", b"2");
    });
    assert_eq!(msg, "archive entry 'f/g' is inside 'f', which is not a directory");
}

#[test]
fn a_truncated_archive_is_an_error_and_changes_nothing() {
    let (tmp, store) = new_store();
    let tar = RawTar::new().file("first", b"first file").file("big", &random_bytes(3, 100_000)).finish();
    let cut = &tar[..tar.len() - 60_000];
    for (name, bytes) in [("plain", cut.to_vec()), ("gz", gzip(cut)), ("corrupt-gz", gzip(&tar)[..2000].to_vec())] {
        let err = import_bytes(&store, tmp.path(), name, &bytes).unwrap_err();
        assert!(matches!(err, Error::ArchiveEntry { .. } | Error::Archive { .. }), "{name}: {err:?}");
        assert_eq!(snapshot(&store), Snapshot { usage: 0, blobs: 0, manifests: 0, tmp_files: 0 }, "{name}");
    }
}

/// A directory source obeys the same rules; its links are recorded, never followed.
#[test]
fn directory_sources() {
    let (tmp, store) = new_store();
    let cases: [(&[(&str, Node)], &str); 3] = [
        (
            &[("a/evil", link("/etc"))],
            concat!(
                "directory entry 'a/evil' is a symlink to the absolute path '/etc'; ",
                "only relative links inside the image are allowed"
            ),
        ),
        (&[("a/up", link("../.."))], "directory entry 'a/up' is a symlink to '../..', which leaves the image root"),
        (
            &[("s", link(".")), ("t", link("s/.."))],
            "directory entry 't' is a symlink to 's/..', which leaves the image root",
        ),
    ];
    for (i, (nodes, expected)) in cases.into_iter().enumerate() {
        let src = tmp.path().join(format!("src{i}"));
        let mut nodes = nodes.to_vec();
        nodes.insert(0, ("innocent", file(format!("innocent {i}"), 0o644)));
        build(&src, &nodes);
        let err = store.import(&src).unwrap_err();
        assert_eq!(err.to_string(), expected);
        assert_eq!(snapshot(&store), Snapshot { usage: 0, blobs: 0, manifests: 0, tmp_files: 0 });
    }

    let src = tmp.path().join("special");
    build(&src, &[("innocent", file("x", 0o644))]);
    let _socket = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    let err = store.import(&src).unwrap_err();
    assert_eq!(err.to_string(), format!("directory entry 'sock' is a socket, {CANNOT_HOLD}"));
    fs::remove_file(src.join("sock")).unwrap();
    let status = std::process::Command::new("mkfifo").arg(src.join("pipe")).status().unwrap();
    assert!(status.success());
    let err = store.import(&src).unwrap_err();
    assert_eq!(err.to_string(), format!("directory entry 'pipe' is a fifo, {CANNOT_HOLD}"));
    assert_eq!(snapshot(&store), Snapshot { usage: 0, blobs: 0, manifests: 0, tmp_files: 0 });
}

#[test]
fn links_inside_the_image_are_fine_even_dangling() {
    let (tmp, store) = new_store();
    let tar = RawTar::new()
        .file("lib/libx.so.1", b"elf")
        .symlink("lib/libx.so", "libx.so.1")
        .symlink("lib64", "lib")
        .symlink("bin/sh", "../lib64/libx.so")
        .symlink("self", ".")
        .symlink("later", "nothing/yet")
        .finish();
    import_bytes(&store, tmp.path(), "ok.tar", &tar).unwrap();
}
