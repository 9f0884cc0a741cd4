//! Store-level tests, on real temp directories, and the fixtures they share: trees on disk, tar archives
//! built honestly and maliciously, and ways to look at the store from outside (`du`, blob counts).
//! Module-level rules (paths, symlink resolution, entrypoints) are tested next to their code.

mod gc;
mod import;
mod materialize;
mod refusals;
mod roundtrip;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};
use tempfile::TempDir;

use crate::ImageStore;

/// A node of a test tree, on disk or in an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File { content: Vec<u8>, mode: u32 },
    Dir { mode: u32 },
    Link { target: String },
}

pub fn file(content: impl AsRef<[u8]>, mode: u32) -> Node {
    Node::File { content: content.as_ref().to_vec(), mode }
}

pub fn dir(mode: u32) -> Node {
    Node::Dir { mode }
}

pub fn link(target: &str) -> Node {
    Node::Link { target: target.into() }
}

pub fn new_store() -> (TempDir, ImageStore) {
    let tmp = TempDir::new().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    (tmp, store)
}

/// Writes `nodes` below `root` in order. Modes are applied last, deepest first, like `materialize`.
pub fn build(root: &Path, nodes: &[(&str, Node)]) {
    fs::create_dir_all(root).unwrap();
    for (path, node) in nodes {
        let full = root.join(path);
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        match node {
            Node::File { content, .. } => fs::write(&full, content).unwrap(),
            Node::Dir { .. } => fs::create_dir_all(&full).unwrap(),
            Node::Link { target } => std::os::unix::fs::symlink(target, &full).unwrap(),
        }
    }
    for (path, node) in nodes.iter().rev() {
        if let Node::File { mode, .. } | Node::Dir { mode } = node {
            fs::set_permissions(root.join(path), fs::Permissions::from_mode(*mode)).unwrap();
        }
    }
}

/// Everything below `root` as the store sees it: relative path -> node (symlinks not followed).
pub fn walk(root: &Path) -> BTreeMap<String, Node> {
    let mut found = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_str().unwrap().to_string();
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.mode() & 0o7777;
            let node = if meta.is_dir() {
                pending.push(path.clone());
                Node::Dir { mode }
            } else if meta.is_symlink() {
                Node::Link { target: fs::read_link(&path).unwrap().to_str().unwrap().into() }
            } else {
                Node::File { content: fs::read(&path).unwrap(), mode }
            };
            found.insert(rel, node);
        }
    }
    found
}

/// A tar of the tree below `root`, written with ordinary headers (a root `./` entry first, as
/// `tar -C root .` does).
pub fn tar_of(root: &Path) -> Vec<u8> {
    let mut tar = RawTar::new();
    tar.entry(b"./", EntryType::Directory, 0o755, b"", b"");
    for (path, node) in walk(root) {
        let name = if matches!(node, Node::Dir { .. }) { format!("./{path}/") } else { format!("./{path}") };
        tar.node(name.as_bytes(), &node);
    }
    tar.finish()
}

/// A tar archive written header by header, so tests can say things `tar::Builder` refuses to
/// (`..`, absolute paths, devices).
pub struct RawTar(tar::Builder<Vec<u8>>);

impl RawTar {
    pub fn new() -> RawTar {
        RawTar(tar::Builder::new(Vec::new()))
    }

    pub fn node(&mut self, name: &[u8], node: &Node) -> &mut RawTar {
        match node {
            Node::File { content, mode } => self.entry(name, EntryType::Regular, *mode, b"", content),
            Node::Dir { mode } => self.entry(name, EntryType::Directory, *mode, b"", b""),
            Node::Link { target } => self.entry(name, EntryType::Symlink, 0o777, target.as_bytes(), b""),
        }
    }

    pub fn file(&mut self, name: &str, content: &[u8]) -> &mut RawTar {
        self.entry(name.as_bytes(), EntryType::Regular, 0o644, b"", content)
    }

    pub fn dir(&mut self, name: &str) -> &mut RawTar {
        self.entry(name.as_bytes(), EntryType::Directory, 0o755, b"", b"")
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut RawTar {
        self.entry(name.as_bytes(), EntryType::Symlink, 0o777, target.as_bytes(), b"")
    }

    pub fn hard_link(&mut self, name: &str, target: &str) -> &mut RawTar {
        self.entry(name.as_bytes(), EntryType::Link, 0o644, target.as_bytes(), b"")
    }

    /// One header with `name` written as raw bytes (no normalization), then the data. Names longer than a
    /// header holds go in a GNU long-name entry first, as GNU tar writes them.
    pub fn entry(&mut self, name: &[u8], kind: EntryType, mode: u32, link: &[u8], data: &[u8]) -> &mut RawTar {
        if name.len() > 100 {
            let mut long = Vec::from(name);
            long.push(0);
            self.entry(b"././@LongLink", EntryType::GNULongName, 0o644, b"", &long);
        }
        let mut header = Header::new_gnu();
        let slot = &mut header.as_old_mut().name;
        let n = name.len().min(slot.len());
        slot[..n].copy_from_slice(&name[..n]);
        header.set_link_name_literal(link).unwrap();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_cksum();
        self.0.append(&header, data).unwrap();
        self
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
        builder.into_inner().unwrap()
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 1).unwrap()
}

/// Writes `bytes` to a file named `name` in `dir` and returns its path.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

/// Deterministic incompressible bytes (xorshift64*), so sizes on disk are what they claim.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What an outside observer sees of the store: `disk_usage`, blob count, manifest count, and whether
/// the temp area is empty.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub usage: u64,
    pub blobs: usize,
    pub manifests: usize,
    pub tmp_files: usize,
}

pub fn snapshot(store: &ImageStore) -> Snapshot {
    let count = |dir: &Path| files_below(dir).len();
    Snapshot {
        usage: store.disk_usage().unwrap(),
        blobs: count(&store.root().join("blobs")),
        manifests: count(&store.root().join("manifests")),
        tmp_files: count(&store.root().join("tmp")),
    }
}

pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { pending.push(path) } else { files.push(path) }
        }
    }
    files
}

/// Real disk use below `dir`, in bytes of allocated blocks (what `du` reports), directories included.
pub fn du(dir: &Path) -> u64 {
    let mut total = fs::symlink_metadata(dir).unwrap().blocks() * 512;
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        total += if meta.is_dir() { du(&path) } else { meta.blocks() * 512 };
    }
    total
}

pub fn import_bytes(store: &ImageStore, dir: &Path, name: &str, bytes: &[u8]) -> Result<crate::Imported, crate::Error> {
    store.import(&write_file(dir, name, bytes))
}
