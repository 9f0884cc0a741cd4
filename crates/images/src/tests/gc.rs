//! Garbage collection: frees exactly what no live image reaches, keeps shared blobs, clears crash
//! leftovers, and frees nothing when it cannot be sure.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::{Digest, GcReport};

#[test]
fn frees_what_is_not_live_and_keeps_what_is_shared() {
    let (tmp, store) = new_store();
    let (a_src, b_src) = (tmp.path().join("a"), tmp.path().join("b"));
    build(&a_src, &[("shared", file("shared", 0o644)), ("only-a", file("only in a", 0o644))]);
    build(&b_src, &[("shared", file("shared", 0o644)), ("only-b", file("only in b!", 0o644))]);
    let a = store.import(&a_src).unwrap().digest;
    let b = store.import(&b_src).unwrap().digest;
    let manifest_len =
        |d: &Digest| fs::metadata(store.root().join(format!("manifests/sha256/{}.json", d.hex()))).unwrap().len();
    let (a_len, b_len) = (manifest_len(&a), manifest_len(&b));

    // Everything live, plus a digest the store never had: nothing to do.
    let unknown = Digest::of(b"unknown");
    assert_eq!(store.gc(&HashSet::from([a, b, unknown])).unwrap(), GcReport::default());

    let report = store.gc(&HashSet::from([a])).unwrap();
    assert_eq!(report, GcReport { manifests_freed: 1, blobs_freed: 1, bytes_freed: b_len + 10 });
    assert!(!store.contains(&b));
    store.materialize(&a, &tmp.path().join("os")).unwrap();
    assert_eq!(snapshot(&store).blobs, 2);

    let report = store.gc(&HashSet::new()).unwrap();
    assert_eq!(report, GcReport { manifests_freed: 1, blobs_freed: 2, bytes_freed: a_len + 6 + 9 });
    assert_eq!(snapshot(&store), Snapshot { usage: 0, blobs: 0, manifests: 0, tmp_files: 0 });

    // Re-importing after a collection stores the contents again.
    assert_eq!(store.import(&a_src).unwrap().new_blob_bytes, 15);
}

#[test]
fn clears_temp_files_left_by_a_crash() {
    let (_tmp, store) = new_store();
    fs::write(store.root().join("tmp/.tmpCRASH"), vec![0u8; 1000]).unwrap();
    fs::create_dir(store.root().join("tmp/half-made")).unwrap();
    assert_eq!(store.disk_usage().unwrap(), 0, "the temp area is not part of the store's usage");
    let report = store.gc(&HashSet::new()).unwrap();
    assert!(report.bytes_freed >= 1000);
    assert_eq!(snapshot(&store).tmp_files, 0);
    assert!(fs::read_dir(store.root().join("tmp")).unwrap().next().is_none());
}

#[test]
fn a_damaged_live_manifest_stops_the_collection() {
    let (tmp, store) = new_store();
    let src = tmp.path().join("src");
    build(&src, &[("f", file("f", 0o644))]);
    let live = store.import(&src).unwrap().digest;
    build(&tmp.path().join("dead"), &[("g", file("g", 0o644))]);
    store.import(&tmp.path().join("dead")).unwrap();

    let path = store.root().join(format!("manifests/sha256/{}.json", live.hex()));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&path, b"{}").unwrap();
    let before = snapshot(&store);
    let err = store.gc(&HashSet::from([live])).unwrap_err();
    assert!(err.to_string().contains("is damaged"), "{err}");
    assert_eq!(snapshot(&store), before, "nothing freed when a live image cannot be read");
}

#[test]
fn the_store_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<crate::ImageStore>();

    // Imports and collections interleave without a live image ever losing a blob.
    let (tmp, store) = new_store();
    let sources: Vec<_> = (0..4)
        .map(|i| {
            let src = tmp.path().join(format!("src{i}"));
            build(&src, &[("common", file("common", 0o644)), ("own", file(format!("own {i}"), 0o644))]);
            src
        })
        .collect();
    let live = std::sync::Mutex::new(HashSet::new());
    std::thread::scope(|s| {
        for src in &sources {
            let (store, live) = (&store, &live);
            s.spawn(move || {
                for _ in 0..5 {
                    // Counting the digest live and importing must be one step as seen by gc (the
                    // server's lock does this); here the live set's mutex plays that part.
                    let mut live = live.lock().unwrap();
                    let digest = store.import(src).unwrap().digest;
                    live.insert(digest);
                }
            });
        }
        s.spawn(|| {
            for _ in 0..10 {
                let live = live.lock().unwrap();
                store.gc(&live).unwrap();
            }
        });
    });
    for d in live.lock().unwrap().iter() {
        let dest = tmp.path().join(format!("os-{}", d.hex()));
        store.materialize(d, &dest).unwrap();
    }
}
