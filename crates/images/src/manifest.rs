//! `Manifest`: what an image is (paths, kinds, modes and content digests), its canonical JSON (whose
//! sha256 is the image's identity), and the questions asked of one (size, entrypoint). It does not read
//! or write the store.

use serde::{Deserialize, Serialize};

use crate::Digest;
use crate::tree::{self, Tree, Unresolvable};

/// An image: every entry below its root, sorted by path (byte order, so parents come before children).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub entries: Vec<Entry>,
}

/// One path in an image. `path` is relative and `/`-separated with no `.`, `..` or empty components;
/// `mode` holds the permission bits including setuid, setgid and sticky (`0o7777`). Owners are not kept:
/// an instance's files belong to whoever runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    pub mode: u32,
    #[serde(flatten)]
    pub kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum EntryKind {
    Dir,
    File { digest: Digest, size: u64 },
    Symlink { target: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntrypointError {
    #[error("the entrypoint is empty; give --entrypoint")]
    Empty,
    #[error("the image has no executable '{0}' at its root; give --entrypoint")]
    MissingAtRoot(String),
    #[error("the image has no executable '{0}'; give --entrypoint")]
    Missing(String),
    #[error("'{path}' in the image is not executable (mode {mode:04o}); make it executable or give --entrypoint")]
    NotExecutable { path: String, mode: u32 },
    #[error("'{0}' in the image is a directory, not an executable; give --entrypoint")]
    Directory(String),
    #[error("the entrypoint '{0}' leads outside the image")]
    LeavesImage(String),
    #[error("the entrypoint '{0}' is a symlink loop")]
    Loop(String),
}

impl Manifest {
    /// Bytes of file content an instance's copy of the image holds (hard links count once per path,
    /// since each becomes its own file there).
    pub fn size_bytes(&self) -> u64 {
        self.files().map(|(_, size)| size).sum()
    }

    pub fn file_count(&self) -> usize {
        self.files().count()
    }

    /// The digests and sizes of every file entry (repeats included).
    pub fn files(&self) -> impl Iterator<Item = (&Digest, u64)> {
        self.entries.iter().filter_map(|e| match &e.kind {
            EntryKind::File { digest, size } => Some((digest, *size)),
            _ => None,
        })
    }

    pub fn entry(&self, path: &str) -> Option<&Entry> {
        // Canonical manifests are sorted by path, so this is a binary search.
        self.entries.binary_search_by(|e| e.path.as_str().cmp(path)).ok().map(|i| &self.entries[i])
    }

    /// The canonical JSON: compact, fields in declaration order, entries sorted. Its sha256 is the digest.
    pub fn canonical_json(&self) -> Vec<u8> {
        // Serializing these plain types cannot fail: no maps, no non-string keys, no fallible Serialize impls.
        serde_json::to_vec(self).expect("a manifest always serializes to JSON")
    }

    pub fn digest(&self) -> Digest {
        Digest::of(&self.canonical_json())
    }

    /// Checks that this manifest is one import could have produced: canonical order, valid paths and modes,
    /// parents present as directories, symlinks that stay inside. Returns the reason it is not.
    pub fn validate(&self) -> Result<(), String> {
        let mut tree = Tree::default();
        for e in &self.entries {
            if tree::normalize(e.path.as_bytes()) != Ok(Some(e.path.clone())) {
                return Err(format!("'{}' is not a valid entry path", e.path));
            }
            if e.mode & !0o7777 != 0 {
                return Err(format!("'{}' has mode {:o}, beyond the permission bits", e.path, e.mode));
            }
            let added = match &e.kind {
                EntryKind::Dir => tree.add_dir(e.path.clone(), e.mode),
                EntryKind::File { digest, size } => tree.add_file(e.path.clone(), e.mode, *digest, *size),
                EntryKind::Symlink { target } => tree.add_symlink(e.path.clone(), target.clone()),
            };
            added.map_err(|reason| format!("'{}' {reason}", e.path))?;
        }
        let rebuilt = tree.finish().map_err(|r| format!("'{}' {}", r.path, r.reason))?;
        if rebuilt != *self {
            return Err("the entries are not in canonical form (sorted, unique, parents listed)".into());
        }
        Ok(())
    }

    /// Checks that `cmd` can start an instance of this image. Its first word is either an absolute path,
    /// meaning a program on the host (the process runtime has no chroot), accepted without looking, or a
    /// path relative to the image root, which must lead (following symlinks inside the image) to a
    /// regular file with an executable bit.
    pub fn check_entrypoint(&self, cmd: &str) -> Result<(), EntrypointError> {
        let first = cmd.split_whitespace().next().ok_or(EntrypointError::Empty)?;
        if first.starts_with('/') {
            return Ok(());
        }
        let resolved = tree::resolve(|p| self.entry(p), first).map_err(|e| match e {
            Unresolvable::Loop => EntrypointError::Loop(first.to_string()),
            Unresolvable::Absolute | Unresolvable::LeavesRoot => EntrypointError::LeavesImage(first.to_string()),
        })?;
        let missing = || match first.contains('/') {
            true => EntrypointError::Missing(first.to_string()),
            false => EntrypointError::MissingAtRoot(first.to_string()),
        };
        let Some(entry) = resolved.entry else {
            return Err(match resolved.path.is_empty() {
                true => EntrypointError::Directory(first.to_string()),
                false => missing(),
            });
        };
        match entry.kind {
            EntryKind::File { .. } if entry.mode & 0o111 != 0 => Ok(()),
            EntryKind::File { .. } => Err(EntrypointError::NotExecutable { path: first.to_string(), mode: entry.mode }),
            EntryKind::Dir => Err(EntrypointError::Directory(first.to_string())),
            // `resolve` follows every symlink it meets, so a symlink here cannot happen; treat it as absent.
            EntryKind::Symlink { .. } => Err(missing()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut tree = Tree::default();
        let app = Digest::of(b"app");
        tree.add_file("start".into(), 0o755, app, 3).unwrap();
        tree.add_file("real/app".into(), 0o750, app, 3).unwrap();
        tree.add_file("real/data".into(), 0o644, Digest::of(b"data"), 4).unwrap();
        tree.add_symlink("bin".into(), "real".into()).unwrap();
        tree.add_symlink("run".into(), "bin/app".into()).unwrap();
        tree.add_symlink("gone".into(), "real/nothing".into()).unwrap();
        tree.finish().unwrap()
    }

    #[test]
    fn sizes_and_counts() {
        let m = sample();
        assert_eq!((m.size_bytes(), m.file_count()), (10, 3));
        assert_eq!(m.entry("real/data").map(|e| e.mode), Some(0o644));
        assert!(m.entry("nope").is_none());
    }

    #[test]
    fn canonical_json_is_stable_and_validates() {
        let m = sample();
        let json = String::from_utf8(m.canonical_json()).unwrap();
        assert!(
            json.starts_with(r#"{"entries":[{"path":"bin","mode":511,"type":"symlink","target":"real"}"#),
            "{json}"
        );
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.digest(), m.digest());
        m.validate().unwrap();

        let mut unsorted = m.clone();
        unsorted.entries.swap(0, 1);
        assert!(unsorted.validate().unwrap_err().contains("canonical"));
        let mut escaping = m.clone();
        escaping.entries[0].kind = EntryKind::Symlink { target: "../..".into() };
        assert!(escaping.validate().unwrap_err().contains("leaves the image root"));
        let mut bad_path = m.clone();
        bad_path.entries[0].path = "../bin".into();
        assert!(bad_path.validate().unwrap_err().contains("not a valid entry path"));
        let mut bad_mode = m;
        bad_mode.entries[1].mode = 0o100644;
        assert!(bad_mode.validate().unwrap_err().contains("beyond the permission bits"));
    }

    #[test]
    fn entrypoints() {
        let m = sample();
        for ok in ["start", "./start --port 8080", "real/app", "bin/app", "run", "/bin/sh -c 'exit 0'", "  start "] {
            assert_eq!(m.check_entrypoint(ok), Ok(()), "{ok}");
        }
        let err = |cmd: &str| m.check_entrypoint(cmd).unwrap_err().to_string();
        assert_eq!(err("app"), "the image has no executable 'app' at its root; give --entrypoint");
        assert_eq!(err("bin/nope -v"), "the image has no executable 'bin/nope'; give --entrypoint");
        assert_eq!(err("gone"), "the image has no executable 'gone' at its root; give --entrypoint");
        assert_eq!(
            err("real/data"),
            "'real/data' in the image is not executable (mode 0644); make it executable or give --entrypoint"
        );
        assert_eq!(err("bin"), "'bin' in the image is a directory, not an executable; give --entrypoint");
        assert_eq!(err("."), "'.' in the image is a directory, not an executable; give --entrypoint");
        assert_eq!(err("../start"), "the entrypoint '../start' leads outside the image");
        assert_eq!(err("   "), "the entrypoint is empty; give --entrypoint");
    }
}
