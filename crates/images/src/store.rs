//! `ImageStore`: the on-disk layout and its write discipline. It owns where things live, atomic
//! publication, import transactions (which undo themselves on failure) and reading manifests back with
//! their integrity checked. It does not parse sources (`import.rs`), copy images out (`materialize.rs`) or
//! decide what is garbage (`gc.rs`).
//!
//! ```text
//! <root>/blobs/sha256/<2 hex>/<64 hex>      file contents, mode 0444
//! <root>/manifests/sha256/<64 hex>.json     canonical manifests, mode 0444
//! <root>/tmp/                               temp files being written; anything left here is from a crash
//! ```
//!
//! Nothing appears under a final name until its content is complete and synced: every write goes to a
//! temp file in `tmp/` (same file system), is fsynced, then renamed. Blobs are synced before the manifest
//! naming them is published, so a published manifest never names a blob that a crash could lose.

use std::collections::BTreeSet;
use std::fs::{self, File, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::digest::{CopyError, copy_hashing};
use crate::{Digest, Error, Manifest};

const READ_ONLY: u32 = 0o444;

/// A content-addressed image store rooted at one directory. One `ImageStore` per root: its lock is what
/// keeps imports and garbage collection apart.
#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
    pub(crate) blobs: PathBuf,
    manifests: PathBuf,
    tmp: PathBuf,
    /// Held by `import` and `gc`: a collection never sees an import half-way, and `gc` may treat every
    /// file in `tmp/` as a crash leftover.
    lock: Mutex<()>,
}

/// What `import` published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub digest: Digest,
    /// Bytes of file content in the image (what a materialized copy holds).
    pub size_bytes: u64,
    pub files: usize,
    /// Bytes this import added to the blob store (0 when every file was already there).
    pub new_blob_bytes: u64,
}

impl ImageStore {
    /// Opens the store at `root`, creating its directories if needed.
    pub fn open(root: &Path) -> Result<ImageStore, Error> {
        let store = ImageStore {
            root: root.to_path_buf(),
            blobs: root.join("blobs").join("sha256"),
            manifests: root.join("manifests").join("sha256"),
            tmp: root.join("tmp"),
            lock: Mutex::new(()),
        };
        for dir in [&store.blobs, &store.manifests, &store.tmp] {
            fs::create_dir_all(dir).map_err(Error::io("create the store directory", dir))?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Imports a directory, or a tar, tar.gz or tar.zst archive (recognized by its first bytes), and
    /// publishes its manifest. Untrusted input: anything that could write outside the image, or that an
    /// image cannot hold, is refused, and then nothing is published and every blob this import created
    /// is removed again.
    ///
    /// The result is only protected from `gc` once the caller counts its digest as live.
    pub fn import(&self, source: &Path) -> Result<Imported, Error> {
        let _guard = self.lock();
        let mut txn = ImportTxn {
            store: self,
            created: Vec::new(),
            touched_dirs: BTreeSet::new(),
            created_dirs: Vec::new(),
            done: false,
        };
        let manifest = crate::import::read_source(source, &mut txn)?;
        txn.sync()?;
        let digest = self.publish_manifest(&manifest)?;
        let imported = Imported {
            digest,
            size_bytes: manifest.size_bytes(),
            files: manifest.file_count(),
            new_blob_bytes: txn.new_bytes(),
        };
        txn.done = true;
        Ok(imported)
    }

    /// Whether the image's manifest is in the store.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.manifest_path(digest).is_file()
    }

    /// Reads a manifest back, checking that it hashes to its name and obeys the import rules, so that
    /// nothing downstream (`materialize` in particular) has to trust the disk.
    pub fn manifest(&self, digest: &Digest) -> Result<Manifest, Error> {
        let path = self.manifest_path(digest);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::NotFound(*digest)),
            Err(e) => return Err(Error::io("read the manifest", path)(e)),
        };
        let corrupt = |reason: String| Error::Corrupt { digest: *digest, reason };
        if Digest::of(&bytes) != *digest {
            return Err(corrupt("its manifest does not hash to its digest".into()));
        }
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("its manifest is not valid: {e}")))?;
        if manifest.canonical_json() != bytes {
            return Err(corrupt("its manifest is not in canonical form".into()));
        }
        manifest.validate().map_err(corrupt)?;
        Ok(manifest)
    }

    /// Bytes of blobs and manifests (file lengths; the temp area is not counted).
    pub fn disk_usage(&self) -> Result<u64, Error> {
        let blobs: u64 = self.blobs()?.iter().map(|s| s.size).sum();
        let manifests: u64 = self.manifests()?.iter().map(|s| s.size).sum();
        Ok(blobs + manifests)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        // The guarded state is on disk, not in the mutex; a panic elsewhere leaves nothing to distrust.
        self.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.blobs.join(&hex[..2]).join(hex)
    }

    pub(crate) fn manifest_path(&self, digest: &Digest) -> PathBuf {
        self.manifests.join(format!("{}.json", digest.hex()))
    }

    pub(crate) fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    fn publish_manifest(&self, manifest: &Manifest) -> Result<Digest, Error> {
        let json = manifest.canonical_json();
        let digest = Digest::of(&json);
        let path = self.manifest_path(&digest);
        if !path.exists() {
            let mut tmp = self.temp_file()?;
            tmp.write_all(&json).map_err(Error::io("write the manifest", tmp.path()))?;
            self.seal(tmp, &path)?;
            sync_dir(&self.manifests)?;
        }
        Ok(digest)
    }

    fn temp_file(&self) -> Result<tempfile::NamedTempFile, Error> {
        tempfile::NamedTempFile::new_in(&self.tmp).map_err(Error::io("create a temp file in", &self.tmp))
    }

    /// Makes a finished temp file read-only, syncs it and renames it to `to`.
    fn seal(&self, tmp: tempfile::NamedTempFile, to: &Path) -> Result<(), Error> {
        let file = tmp.as_file();
        file.set_permissions(Permissions::from_mode(READ_ONLY)).map_err(Error::io("seal", tmp.path()))?;
        file.sync_all().map_err(Error::io("sync", tmp.path()))?;
        tmp.persist(to).map_err(|e| Error::io("publish", to)(e.error))?;
        Ok(())
    }

    /// Every blob file, with its size. Names that are not digests are left out (and left alone).
    pub(crate) fn blobs(&self) -> Result<Vec<Stored>, Error> {
        let mut found = Vec::new();
        for prefix in read_dir(&self.blobs)? {
            if !prefix.is_dir() {
                continue;
            }
            found.extend(stored_files(&prefix, |name| {
                Digest::from_hex(name).ok().filter(|d| prefix.ends_with(&d.hex()[..2]))
            })?);
        }
        Ok(found)
    }

    /// Every manifest file, with its size.
    pub(crate) fn manifests(&self) -> Result<Vec<Stored>, Error> {
        stored_files(&self.manifests, |name| name.strip_suffix(".json").and_then(|hex| Digest::from_hex(hex).ok()))
    }
}

/// A file in the store, named by its digest.
pub(crate) struct Stored {
    pub digest: Digest,
    pub path: PathBuf,
    pub size: u64,
}

/// The blobs one import writes. Until `done` is set, dropping it removes every blob it created: a refused
/// or failed import (or a panic) leaves the store as it found it. Safe only because imports are
/// serialized: no other import can have come to rely on a blob created here.
pub(crate) struct ImportTxn<'s> {
    store: &'s ImageStore,
    created: Vec<(PathBuf, u64)>,
    touched_dirs: BTreeSet<PathBuf>,
    /// Prefix directories this import made, removed again if it fails (a refused import leaves the store
    /// exactly as it was, down to its directories).
    created_dirs: Vec<PathBuf>,
    done: bool,
}

/// Why storing one file's content failed: reading is the source's fault, storing the store's.
pub(crate) enum BlobError {
    Read(io::Error),
    Store(Error),
}

impl ImportTxn<'_> {
    /// Streams `content` into a temp file while hashing it, then moves it to its blob path unless that
    /// blob already exists. Returns the digest and length.
    pub fn add_blob(&mut self, content: &mut dyn Read) -> Result<(Digest, u64), BlobError> {
        let mut tmp = self.store.temp_file().map_err(BlobError::Store)?;
        let (digest, size) = copy_hashing(content, tmp.as_file_mut()).map_err(|e| match e {
            CopyError::Read(e) => BlobError::Read(e),
            CopyError::Write(e) => BlobError::Store(Error::io("write a blob to", self.store.tmp_dir())(e)),
        })?;
        let path = self.store.blob_path(&digest);
        if path.exists() {
            return Ok((digest, size)); // Deduplicated: the temp file is dropped (and deleted) here.
        }
        let dir = path.parent().unwrap_or(&self.store.blobs).to_path_buf();
        if !dir.exists() {
            self.created_dirs.push(dir.clone());
        }
        fs::create_dir_all(&dir).map_err(|e| BlobError::Store(Error::io("create the blob directory", &dir)(e)))?;
        self.store.seal(tmp, &path).map_err(BlobError::Store)?;
        self.created.push((path, size));
        self.touched_dirs.insert(dir);
        Ok((digest, size))
    }

    /// Makes the renames of this import's blobs durable before a manifest can name them.
    fn sync(&self) -> Result<(), Error> {
        if self.touched_dirs.is_empty() {
            return Ok(());
        }
        for dir in &self.touched_dirs {
            sync_dir(dir)?;
        }
        sync_dir(&self.store.blobs) // in case a new prefix directory appeared
    }

    fn new_bytes(&self) -> u64 {
        self.created.iter().map(|(_, size)| size).sum()
    }
}

impl Drop for ImportTxn<'_> {
    fn drop(&mut self) {
        if !self.done {
            for (path, _) in &self.created {
                // Best effort: a blob left behind is unreferenced, and the next gc frees it.
                let _ = fs::remove_file(path);
            }
            for dir in &self.created_dirs {
                let _ = fs::remove_dir(dir); // only if empty: another import's blob may live there
            }
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io("sync the directory", dir))
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(Error::io("list", dir))? {
        paths.push(entry.map_err(Error::io("list", dir))?.path());
    }
    Ok(paths)
}

/// The regular files in `dir` whose names `parse` accepts. Files that vanish while listing (a concurrent
/// gc) are skipped rather than failing the listing.
fn stored_files(dir: &Path, parse: impl Fn(&str) -> Option<Digest>) -> Result<Vec<Stored>, Error> {
    let mut found = Vec::new();
    for path in read_dir(dir)? {
        let Some(digest) = path.file_name().and_then(|n| n.to_str()).and_then(&parse) else { continue };
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => found.push(Stored { digest, path, size: meta.len() }),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("inspect", path)(e)),
        }
    }
    Ok(found)
}
