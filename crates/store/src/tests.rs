use super::*;

fn row(kind: Kind, id: &str, parent: Option<&str>, t: i64) -> Row {
    Row {
        kind,
        id: id.to_string(),
        group: "RG".into(),
        parent: parent.map(String::from),
        name: id.rsplit('/').next().unwrap_or_default().to_string(),
        doc: serde_json::json!({"id": id}),
        created_ms: t,
        updated_ms: t,
    }
}

#[test]
fn migrations_run_from_zero_and_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("galleon.db");
    Store::open(&path).unwrap();
    let store = Store::open(&path).unwrap(); // a second open finds the schema current
    let n: i64 = store.read(|tx| Ok::<_, StoreError>(tx.all(Kind::Gallery)?.len() as i64)).unwrap();
    assert_eq!(n, 0);
}

#[test]
fn a_failed_write_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let r: Result<()> = store.write(|tx| {
        tx.insert(&row(Kind::Gallery, "/x/G", None, 1))?;
        tx.insert(&row(Kind::Gallery, "/x/g", None, 2)) // the same id in another casing
    });
    assert!(matches!(r, Err(StoreError::Exists(_))));
    assert!(store.read(|tx| tx.get("/X/G")).unwrap().is_none());
}

#[test]
fn children_and_groups_are_found_case_insensitively() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    store
        .write(|tx| {
            tx.insert(&row(Kind::GalleryImage, "/g/Web", None, 1))?;
            tx.insert(&row(Kind::GalleryImageVersion, "/g/Web/versions/1.0.0", Some("/g/Web"), 2))?;
            tx.insert(&row(Kind::GalleryImageVersion, "/g/Web/versions/0.9.0", Some("/g/Web"), 3))?;
            tx.set_meta("subscription", "abc")
        })
        .unwrap();
    let kids = store.read(|tx| tx.children("/G/WEB", Kind::GalleryImageVersion)).unwrap();
    assert_eq!(kids.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["1.0.0", "0.9.0"]);
    assert_eq!(store.read(|tx| tx.in_group("rg", Kind::GalleryImage)).unwrap().len(), 1);
    assert_eq!(store.read(|tx| tx.meta("subscription")).unwrap().as_deref(), Some("abc"));
    assert!(store.write(|tx| tx.delete("/G/web/VERSIONS/1.0.0")).unwrap());
    assert_eq!(store.read(|tx| tx.children("/g/web", Kind::GalleryImageVersion)).unwrap().len(), 1);
}

#[test]
fn upsert_keeps_the_first_casing_and_creation_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    store.write(|tx| tx.upsert(&row(Kind::Gallery, "/x/Gal", None, 1))).unwrap();
    let mut again = row(Kind::Gallery, "/x/GAL", None, 5);
    again.doc = serde_json::json!({"v": 2});
    store.write(|tx| tx.upsert(&again)).unwrap();
    let got = store.read(|tx| tx.get("/x/gal")).unwrap().unwrap();
    assert_eq!((got.id.as_str(), got.created_ms, got.updated_ms), ("/x/Gal", 1, 5));
    assert_eq!(got.doc, serde_json::json!({"v": 2}));
}

#[test]
fn instances_addresses_counters_and_events() {
    use std::net::Ipv4Addr;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    store
        .write(|tx| {
            assert_eq!(tx.next("vmss/web")?, 1);
            assert_eq!(tx.next("vmss/web")?, 2);
            tx.put_instance("/X/Web", 1, &serde_json::json!({"a": 1}))?;
            tx.put_instance("/x/web", 0, &serde_json::json!({"a": 0}))?;
            let (first, last) = (Ipv4Addr::new(127, 64, 0, 1), Ipv4Addr::new(127, 64, 0, 3));
            assert_eq!(tx.allocate_address("i0", first, last)?, Some(Ipv4Addr::new(127, 64, 0, 1)));
            assert_eq!(tx.allocate_address("i1", first, last)?, Some(Ipv4Addr::new(127, 64, 0, 2)));
            assert_eq!(
                tx.allocate_address("i0", first, last)?,
                Some(Ipv4Addr::new(127, 64, 0, 1)),
                "an owner keeps its address"
            );
            tx.release_address("i0")?;
            assert_eq!(
                tx.allocate_address("i2", first, last)?,
                Some(Ipv4Addr::new(127, 64, 0, 1)),
                "freed addresses are reused"
            );
            assert_eq!(tx.allocate_address("i3", first, last)?, Some(Ipv4Addr::new(127, 64, 0, 3)));
            assert_eq!(tx.allocate_address("i4", first, last)?, None, "the range is exhausted");
            for i in 0..5 {
                tx.log_event("/x/web", Some(i % 2), i64::from(i), &serde_json::json!({"n": i}))?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    let ids: Vec<u32> = store.read(|tx| tx.instances("/x/WEB")).unwrap().into_iter().map(|(i, _)| i).collect();
    assert_eq!(ids, [0, 1]);
    let events = store.read(|tx| tx.events("/x/web", Some(0), 2)).unwrap();
    assert_eq!(events.iter().map(|e| e.doc["n"].as_i64().unwrap()).collect::<Vec<_>>(), [2, 4]);
    assert_eq!(store.read(|tx| tx.counter("vmss/web")).unwrap(), 2);
}
