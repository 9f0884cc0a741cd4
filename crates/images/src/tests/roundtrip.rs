//! Property: any small tree of files, directories and inside links survives import -> materialize
//! exactly (paths, contents, modes, link targets), and its tarball is the same image as the directory.

use proptest::prelude::*;

use super::*;

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "x y", "é"]).prop_map(String::from)
}

fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        // Owner read/write always set, so the test does not depend on running as root.
        (prop::collection::vec(any::<u8>(), 0..200), 0u32..0o1000)
            .prop_map(|(content, bits)| Node::File { content, mode: 0o600 | bits }),
        (0u32..0o100).prop_map(|bits| Node::Dir { mode: 0o700 | bits }),
        prop::sample::select(vec![".", "a", "b/c", "..", "../a", "missing"])
            .prop_map(|t| Node::Link { target: t.into() }),
    ]
}

fn tree() -> impl Strategy<Value = Vec<(String, Node)>> {
    prop::collection::vec((prop::collection::vec(name(), 1..4), node()), 1..12)
        .prop_map(|entries| entries.into_iter().map(|(parts, node)| (parts.join("/"), node)).collect())
}

/// Keeps the entries that make a valid tree when written in order: no path twice, nothing below a file or
/// link, and links that cannot leave the root or loop (`..` only below the root; no other link targets
/// a name that may itself be a link).
fn valid(entries: Vec<(String, Node)>) -> Vec<(String, Node)> {
    let mut kept: Vec<(String, Node)> = Vec::new();
    for (path, node) in entries {
        let clashes = kept.iter().any(|(other, other_node)| {
            *other == path
                || path.starts_with(&format!("{other}/")) && !matches!(other_node, Node::Dir { .. })
                || other.starts_with(&format!("{path}/")) && !matches!(node, Node::Dir { .. })
        });
        let node = match node {
            Node::Link { target } if target.starts_with("..") && !path.contains('/') => continue,
            Node::Link { target } if target != "." && target != ".." && target != "missing" => {
                // `a`, `b/c` and `../a` could name another link; point them at a name never generated.
                Node::Link { target: target.replace('a', "z").replace('b', "y").replace('c', "w") }
            }
            other => other,
        };
        if !clashes {
            kept.push((path, node));
        }
    }
    kept
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn import_then_materialize_round_trips(entries in tree().prop_map(valid)) {
        let (tmp, store) = new_store();
        let src = tmp.path().join("src");
        let nodes: Vec<(&str, Node)> = entries.iter().map(|(p, n)| (p.as_str(), n.clone())).collect();
        build(&src, &nodes);

        let imported = store.import(&src).unwrap();
        let dest = tmp.path().join("os");
        store.materialize(&imported.digest, &dest).unwrap();
        prop_assert_eq!(walk(&dest), walk(&src));

        let from_tar = import_bytes(&store, tmp.path(), "image.tar", &tar_of(&src)).unwrap();
        prop_assert_eq!(from_tar.digest, imported.digest);
        prop_assert_eq!(from_tar.new_blob_bytes, 0);
    }
}
