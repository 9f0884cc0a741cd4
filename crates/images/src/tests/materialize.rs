//! Materializing: an exact, independent copy of the image (modes, exec and setuid bits, symlinks, empty
//! and read-only directories), into a fresh or empty directory only, and never the store's own files.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use super::import::sample_nodes;
use super::*;
use crate::{Digest, Error};

#[test]
fn the_copy_is_exact() {
    let (tmp, store) = new_store();
    let src = tmp.path().join("src");
    let mut nodes = sample_nodes();
    nodes.push(("ro/inside", file("in a read-only directory", 0o444)));
    nodes.push(("ro", dir(0o555)));
    build(&src, &nodes);
    let imported = store.import(&src).unwrap();

    let dest = tmp.path().join("instances/0/os");
    store.materialize(&imported.digest, &dest).unwrap();
    assert_eq!(walk(&dest), walk(&src));
    let manifest = store.manifest(&imported.digest).unwrap();
    let exec = fs::metadata(dest.join("bin/suid")).unwrap().permissions().mode();
    assert_eq!(exec & 0o7777, 0o4755, "setuid survives the copy");
    manifest.check_entrypoint("start").unwrap();
    assert_eq!(fs::read_to_string(dest.join("lib/current")).unwrap(), "data\n", "links resolve in the copy");
}

#[test]
fn the_copy_is_independent_of_the_store() {
    let (tmp, store) = new_store();
    let src = tmp.path().join("src");
    build(&src, &[("data", file("original", 0o644)), ("twin", file("original", 0o600))]);
    let imported = store.import(&src).unwrap();
    let dest = tmp.path().join("os");
    store.materialize(&imported.digest, &dest).unwrap();

    let hex = Digest::of(b"original").hex();
    let blob = store.root().join("blobs/sha256").join(&hex[..2]).join(&hex);
    let (blob_meta, copy_meta) = (fs::metadata(&blob).unwrap(), fs::metadata(dest.join("data")).unwrap());
    assert_ne!((blob_meta.dev(), blob_meta.ino()), (copy_meta.dev(), copy_meta.ino()), "never a hard link");
    assert_eq!(blob_meta.nlink(), 1);

    fs::write(dest.join("data"), "changed by the instance").unwrap();
    fs::OpenOptions::new().append(true).open(dest.join("twin")).unwrap();
    assert_eq!(fs::read(&blob).unwrap(), b"original");
    assert_eq!(fs::metadata(&blob).unwrap().permissions().mode() & 0o7777, 0o444);
    assert_eq!(store.manifest(&imported.digest).unwrap().files().count(), 2);

    // A second instance gets the original again.
    let again = tmp.path().join("os2");
    store.materialize(&imported.digest, &again).unwrap();
    assert_eq!(fs::read(again.join("data")).unwrap(), b"original");
}

#[test]
fn the_destination_must_be_new_or_empty() {
    let (tmp, store) = new_store();
    let src = tmp.path().join("src");
    build(&src, &[("f", file("x", 0o644))]);
    let digest = store.import(&src).unwrap().digest;

    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    store.materialize(&digest, &empty).unwrap();
    assert_eq!(fs::read(empty.join("f")).unwrap(), b"x");

    let err = store.materialize(&digest, &empty).unwrap_err();
    assert!(matches!(err, Error::DestinationNotEmpty { .. }), "{err:?}");
    assert!(err.to_string().ends_with("it exists and is not an empty directory"), "{err}");
    let err = store.materialize(&digest, &src.join("f")).unwrap_err();
    assert!(matches!(err, Error::DestinationNotEmpty { .. }), "{err:?}");

    let unknown = Digest::of(b"no such image");
    let err = store.materialize(&unknown, &tmp.path().join("nowhere")).unwrap_err();
    assert_eq!(err.to_string(), format!("the image {unknown} is not in the store"));
    assert!(!tmp.path().join("nowhere").exists());
}

#[test]
fn damage_in_the_store_is_detected() {
    let (tmp, store) = new_store();
    let src = tmp.path().join("src");
    build(&src, &[("a", file("a", 0o644)), ("b", file("b", 0o644))]);
    let digest = store.import(&src).unwrap().digest;

    // A missing blob: the copy fails and is removed again.
    let hex = Digest::of(b"b").hex();
    fs::remove_file(store.root().join("blobs/sha256").join(&hex[..2]).join(&hex)).unwrap();
    let dest = tmp.path().join("os");
    let err = store.materialize(&digest, &dest).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("the stored image {digest} is damaged: its blob {} is missing", Digest::of(b"b"))
    );
    assert!(!dest.exists());

    // A manifest edited on disk no longer hashes to its name.
    let path = store.root().join(format!("manifests/sha256/{}.json", digest.hex()));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let text = fs::read_to_string(&path).unwrap().replace(r#""path":"a""#, r#""path":"../a""#);
    fs::write(&path, text).unwrap();
    let err = store.manifest(&digest).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().ends_with("its manifest does not hash to its digest"), "{err}");
}

/// CONTRACT §8's target: an instance's OS disk from a 20 MB image in under 100 ms. Timing depends on the
/// machine and its load, so this runs on demand: `cargo test -p galleon-images -- --ignored --nocapture`.
#[test]
#[ignore = "timing; run on an idle machine with --ignored"]
fn materializing_a_20_mb_image_takes_under_100_ms() {
    let (tmp, store) = new_store();
    let src = tmp.path().join("src");
    build(
        &src,
        &[
            ("app", file(random_bytes(1, 12 << 20), 0o755)),
            ("lib/libapp.so", file(random_bytes(2, 6 << 20), 0o644)),
            ("share/assets.bin", file(random_bytes(3, 2 << 20), 0o644)),
            ("etc/config.json", file("{}", 0o644)),
            ("start", link("app")),
        ],
    );
    let digest = store.import(&src).unwrap().digest;
    let mut times = Vec::new();
    for i in 0..5 {
        let dest = tmp.path().join(format!("os{i}"));
        let started = Instant::now();
        store.materialize(&digest, &dest).unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    eprintln!("materialize 20 MB: best {:?}, median {:?}, worst {:?}", times[0], times[2], times[4]);
    assert!(times[2] < Duration::from_millis(100), "median {:?}", times[2]);
}
