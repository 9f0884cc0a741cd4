//! The rules of an image tree, checked in memory before anything is published: path syntax, what may sit
//! under what, and where symlinks lead. Import builds a `Tree` entry by entry; a stored manifest is checked
//! by rebuilding it, so one set of rules decides both. It never touches the file system.
//!
//! The invariant `finish` guarantees: every proper ancestor of every entry is a directory entry, and every
//! symlink, resolved the way the kernel would (component by component, following chains), stays inside the
//! root. So writing the entries below a fresh directory can never be redirected outside it.

use std::collections::BTreeMap;

use crate::Digest;
use crate::error::Refusal;
use crate::manifest::{Entry, EntryKind, Manifest};

/// Linux's limit on symlinks followed while resolving one path (`MAXSYMLINKS`).
pub(crate) const MAX_LINK_HOPS: usize = 40;

/// Mode given to directories that only appear as parents of other entries, and recorded for every symlink
/// (Linux ignores a symlink's own mode; fixing it keeps a directory and its tarball one digest).
const IMPLIED_DIR_MODE: u32 = 0o755;
const SYMLINK_MODE: u32 = 0o777;

/// Turns a path as written in a source into the store's form: `/`-separated, without `.` or empty
/// components. `Ok(None)` is the image root itself (`.`, `./`), which an archive may list.
pub(crate) fn normalize(raw: &[u8]) -> Result<Option<String>, Refusal> {
    if raw.is_empty() {
        return Err(Refusal::EmptyPath);
    }
    if raw.contains(&0) {
        return Err(Refusal::Nul);
    }
    let s = std::str::from_utf8(raw).map_err(|_| Refusal::NotUtf8)?;
    if s.starts_with('/') {
        return Err(Refusal::AbsolutePath);
    }
    let mut parts = Vec::new();
    for component in s.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(Refusal::LeavesRoot),
            name => parts.push(name),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// An image tree under construction, keyed by normalized path (so it is always in canonical order).
#[derive(Default)]
pub(crate) struct Tree {
    entries: BTreeMap<String, Entry>,
}

/// An entry that broke a rule only visible once the whole tree is known.
#[derive(Debug)]
pub(crate) struct Rejected {
    pub path: String,
    pub reason: Refusal,
}

impl Tree {
    pub fn add_dir(&mut self, path: String, mode: u32) -> Result<(), Refusal> {
        self.insert(Entry { path, mode, kind: EntryKind::Dir })
    }

    pub fn add_file(&mut self, path: String, mode: u32, digest: Digest, size: u64) -> Result<(), Refusal> {
        self.insert(Entry { path, mode, kind: EntryKind::File { digest, size } })
    }

    /// Absolute targets are refused at once; where a relative target leads is checked by `finish`, since
    /// it may depend on entries that come later.
    pub fn add_symlink(&mut self, path: String, target: String) -> Result<(), Refusal> {
        if target.is_empty() {
            return Err(Refusal::EmptyLinkTarget);
        }
        if target.contains('\0') {
            return Err(Refusal::BadLinkTarget);
        }
        if target.starts_with('/') {
            return Err(Refusal::AbsoluteLink(target));
        }
        self.insert(Entry { path, mode: SYMLINK_MODE, kind: EntryKind::Symlink { target } })
    }

    /// A hard link becomes a second file entry with the same content; its target must already be a
    /// regular file, which is what keeps a link from reaching anything outside the archive.
    pub fn add_hard_link(&mut self, path: String, target: &str) -> Result<(), Refusal> {
        match self.entries.get(target) {
            Some(Entry { mode, kind: kind @ EntryKind::File { .. }, .. }) => {
                let (mode, kind) = (*mode, kind.clone());
                self.insert(Entry { path, mode, kind })
            }
            _ => Err(Refusal::BadHardLink(target.to_string())),
        }
    }

    /// Checks that an entry (a directory or not) may be added at `path`, without adding it. Import asks
    /// before streaming a file's content, so a refused entry costs no disk.
    pub fn check(&self, path: &str, is_dir: bool) -> Result<(), Refusal> {
        // Every ancestor must be a directory (or not exist yet, and be implied): an earlier symlink there
        // is the "link to /etc, then write through it" attack; an earlier file there is nonsense.
        for (end, _) in path.match_indices('/') {
            let parent = &path[..end];
            match self.entries.get(parent).map(|e| &e.kind) {
                None | Some(EntryKind::Dir) => {}
                Some(EntryKind::Symlink { .. }) => return Err(Refusal::ThroughSymlink(parent.to_string())),
                Some(EntryKind::File { .. }) => return Err(Refusal::UnderNonDirectory(parent.to_string())),
            }
        }
        // A directory listed after its contents (or twice) only sets its mode; anything else is a clash.
        match self.entries.get(path).map(|e| &e.kind) {
            None => Ok(()),
            Some(EntryKind::Dir) if is_dir => Ok(()),
            Some(EntryKind::Dir) => Err(Refusal::ReplacesDirectory),
            Some(_) => Err(Refusal::Duplicate),
        }
    }

    fn insert(&mut self, entry: Entry) -> Result<(), Refusal> {
        self.check(&entry.path, entry.kind == EntryKind::Dir)?;
        for (end, _) in entry.path.match_indices('/') {
            let parent = &entry.path[..end];
            if !self.entries.contains_key(parent) {
                let implied = Entry { path: parent.to_string(), mode: IMPLIED_DIR_MODE, kind: EntryKind::Dir };
                self.entries.insert(implied.path.clone(), implied);
            }
        }
        self.entries.insert(entry.path.clone(), entry);
        Ok(())
    }

    /// Checks every symlink against the complete tree and returns the canonical manifest.
    pub fn finish(self) -> Result<Manifest, Rejected> {
        let lookup = |p: &str| self.entries.get(p);
        for entry in self.entries.values() {
            let EntryKind::Symlink { target } = &entry.kind else { continue };
            // Resolving the link's own path follows the link itself as the first hop, as the kernel counts.
            let reason = match resolve(lookup, &entry.path) {
                Ok(_) => continue,
                Err(Unresolvable::Absolute) => Refusal::AbsoluteLink(target.clone()),
                Err(Unresolvable::LeavesRoot) => Refusal::LinkLeavesRoot(target.clone()),
                Err(Unresolvable::Loop) => Refusal::LinkLoop(target.clone()),
            };
            return Err(Rejected { path: entry.path.clone(), reason });
        }
        Ok(Manifest { entries: self.entries.into_values().collect() })
    }
}

/// Where a path resolved to: its normalized path (`""` is the root) and the entry there, if any.
#[derive(Debug)]
pub(crate) struct Resolution<'a> {
    pub path: String,
    pub entry: Option<&'a Entry>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unresolvable {
    Absolute,
    LeavesRoot,
    Loop,
}

/// Resolves `path` (relative to the image root) the way the kernel would inside a chroot at the root,
/// except that it refuses instead of clamping at the root. Every symlink met on the way, including the
/// last component, is followed. A component that does not exist (or is a file) does not stop the walk:
/// the rest is applied lexically, which can only refuse more than the kernel would, never less, because
/// the kernel cannot get past a missing component.
pub(crate) fn resolve<'a>(
    lookup: impl Fn(&str) -> Option<&'a Entry>,
    path: &str,
) -> Result<Resolution<'a>, Unresolvable> {
    if path.starts_with('/') {
        return Err(Unresolvable::Absolute);
    }
    let mut at: Vec<String> = Vec::new();
    // Components still to walk, next one last; following a link pushes the link's target in front.
    let mut pending: Vec<String> = path.split('/').rev().map(String::from).collect();
    let mut hops = 0;
    while let Some(component) = pending.pop() {
        match component.as_str() {
            "" | "." => {}
            ".." => {
                at.pop().ok_or(Unresolvable::LeavesRoot)?;
            }
            _ => {
                at.push(component);
                if let Some(Entry { kind: EntryKind::Symlink { target }, .. }) = lookup(&at.join("/")) {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Err(Unresolvable::Loop);
                    }
                    if target.starts_with('/') {
                        return Err(Unresolvable::Absolute);
                    }
                    at.pop();
                    pending.extend(target.split('/').rev().map(String::from));
                }
            }
        }
    }
    let path = at.join("/");
    let entry = if path.is_empty() { None } else { lookup(&path) };
    Ok(Resolution { path, entry })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::of(b"content")
    }

    #[test]
    fn normalize_strips_dots_and_refuses_escapes() {
        assert_eq!(normalize(b"./a//b/./c/").unwrap().as_deref(), Some("a/b/c"));
        assert_eq!(normalize(b"./").unwrap(), None);
        assert_eq!(normalize(b".").unwrap(), None);
        assert_eq!(normalize(b""), Err(Refusal::EmptyPath));
        assert_eq!(normalize(b"/etc/passwd"), Err(Refusal::AbsolutePath));
        assert_eq!(normalize(b"../evil"), Err(Refusal::LeavesRoot));
        assert_eq!(normalize(b"a/../b"), Err(Refusal::LeavesRoot));
        assert_eq!(normalize(b"a\0b"), Err(Refusal::Nul));
        assert_eq!(normalize(b"a\xffb"), Err(Refusal::NotUtf8));
    }

    #[test]
    fn parents_are_implied_and_symlinks_cannot_be_passed_through() {
        let mut tree = Tree::default();
        tree.add_file("a/b/c".into(), 0o644, digest(), 7).unwrap();
        tree.add_dir("a".into(), 0o700).unwrap();
        tree.add_symlink("etc".into(), "a".into()).unwrap();
        assert_eq!(tree.add_file("etc/x".into(), 0o644, digest(), 7), Err(Refusal::ThroughSymlink("etc".into())));
        assert_eq!(
            tree.add_file("a/b/c/d".into(), 0o644, digest(), 7),
            Err(Refusal::UnderNonDirectory("a/b/c".into()))
        );
        assert_eq!(tree.add_symlink("a".into(), ".".into()), Err(Refusal::ReplacesDirectory));
        assert_eq!(tree.add_file("a/b/c".into(), 0o644, digest(), 7), Err(Refusal::Duplicate));
        let manifest = tree.finish().unwrap();
        let listed: Vec<_> = manifest.entries.iter().map(|e| (e.path.as_str(), e.mode)).collect();
        assert_eq!(listed, [("a", 0o700), ("a/b", 0o755), ("a/b/c", 0o644), ("etc", 0o777)]);
    }

    #[test]
    fn hard_links_need_an_earlier_file() {
        let mut tree = Tree::default();
        tree.add_file("f".into(), 0o750, digest(), 7).unwrap();
        tree.add_dir("d".into(), 0o755).unwrap();
        tree.add_symlink("l".into(), "f".into()).unwrap();
        tree.add_hard_link("g".into(), "f").unwrap();
        for bad in ["d", "l", "missing"] {
            assert_eq!(tree.add_hard_link("h".into(), bad), Err(Refusal::BadHardLink(bad.into())));
        }
        let manifest = tree.finish().unwrap();
        let g = manifest.entries.iter().find(|e| e.path == "g").unwrap();
        assert_eq!((g.mode, &g.kind), (0o750, &EntryKind::File { digest: digest(), size: 7 }));
    }

    fn check_links(links: &[(&str, &str)]) -> Result<(), Rejected> {
        let mut tree = Tree::default();
        tree.add_dir("d/e".into(), 0o755).unwrap();
        tree.add_file("d/f".into(), 0o644, digest(), 7).unwrap();
        for (path, target) in links {
            tree.add_symlink(path.to_string(), target.to_string()).unwrap();
        }
        tree.finish().map(|_| ())
    }

    #[test]
    fn symlinks_are_resolved_for_real() {
        // Inside, including dangling links and links that climb and come back down.
        check_links(&[("l", "d/f"), ("d/e/up", "../../d/f"), ("dangling", "nowhere/at/all"), ("d/self", ".")]).unwrap();
        check_links(&[("d/e/chain1", "chain2"), ("d/e/chain2", "../f")]).unwrap();

        let refused = |links: &[(&str, &str)]| check_links(links).unwrap_err();
        let r = refused(&[("d/up", "../..")]);
        assert_eq!((r.path.as_str(), r.reason), ("d/up", Refusal::LinkLeavesRoot("../..".into())));
        // Lexically `s/..` is the root; for real, `s` is `.` so `s/..` is the root's parent.
        let r = refused(&[("s", "."), ("a", "s/..")]);
        assert_eq!((r.path.as_str(), r.reason), ("a", Refusal::LinkLeavesRoot("s/..".into())));
        // A chain where each link looks harmless on its own.
        let r = refused(&[("d/e/x", "../y"), ("d/y", "../../z")]);
        assert_eq!(r.reason, Refusal::LinkLeavesRoot("../y".into()));
        let r = refused(&[("a", "b"), ("b", "a")]);
        assert_eq!(r.reason, Refusal::LinkLoop("b".into()));
        // A missing component does not hide an escape after it.
        let r = refused(&[("m", "missing/../../x")]);
        assert_eq!(r.reason, Refusal::LinkLeavesRoot("missing/../../x".into()));
    }

    #[test]
    fn absolute_and_empty_link_targets_are_refused_at_once() {
        let mut tree = Tree::default();
        assert_eq!(tree.add_symlink("etc".into(), "/etc".into()), Err(Refusal::AbsoluteLink("/etc".into())));
        assert_eq!(tree.add_symlink("e".into(), String::new()), Err(Refusal::EmptyLinkTarget));
    }

    #[test]
    fn resolve_follows_the_last_component_and_counts_hops() {
        let mut tree = Tree::default();
        tree.add_file("real/app".into(), 0o755, digest(), 7).unwrap();
        tree.add_symlink("bin".into(), "real".into()).unwrap();
        tree.add_symlink("start".into(), "bin/app".into()).unwrap();
        let manifest = tree.finish().unwrap();
        let lookup = |p: &str| manifest.entries.iter().find(|e| e.path == p);
        let r = resolve(lookup, "./start").unwrap();
        assert_eq!((r.path.as_str(), r.entry.map(|e| e.mode)), ("real/app", Some(0o755)));
        assert_eq!(resolve(lookup, "/bin/sh").unwrap_err(), Unresolvable::Absolute);
        assert_eq!(resolve(lookup, "..").unwrap_err(), Unresolvable::LeavesRoot);

        let mut deep = Tree::default();
        for i in 0..MAX_LINK_HOPS {
            deep.add_symlink(format!("l{i}"), format!("l{}", i + 1)).unwrap();
        }
        assert!(deep.finish().is_ok(), "40 links are allowed, as in Linux");
        let mut deeper = Tree::default();
        for i in 0..=MAX_LINK_HOPS {
            deeper.add_symlink(format!("l{i}"), format!("l{}", i + 1)).unwrap();
        }
        assert_eq!(deeper.finish().unwrap_err().reason, Refusal::LinkLoop("l1".into()));
    }
}
