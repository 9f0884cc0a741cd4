//! Garbage collection: frees manifests the caller no longer counts as live, blobs no live manifest names,
//! and temp files left by a crash. Which images are live is the caller's knowledge (the database), passed
//! in; this module only knows reachability inside the store.

use std::collections::HashSet;
use std::fs;

use crate::{Digest, Error, ImageStore};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub manifests_freed: usize,
    pub blobs_freed: usize,
    /// Bytes of manifests, blobs and temp files removed.
    pub bytes_freed: u64,
}

impl ImageStore {
    /// Frees everything not reachable from `live`. A blob named by a live manifest is never freed: if any
    /// live manifest cannot be read, nothing is freed at all. Live digests with no manifest here are
    /// ignored. Holds the import lock, so an import is never collected half-way.
    pub fn gc(&self, live: &HashSet<Digest>) -> Result<GcReport, Error> {
        let _guard = self.lock();

        // Decide everything before removing anything.
        let mut referenced = HashSet::new();
        for digest in live {
            match self.manifest(digest) {
                Ok(manifest) => referenced.extend(manifest.files().map(|(blob, _)| *blob)),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }

        let mut report = GcReport::default();
        // Manifests first: a crash between the two passes leaves unreferenced blobs (freed next time),
        // never a manifest whose blobs are gone.
        for stored in self.manifests()? {
            if !live.contains(&stored.digest) && remove(&stored.path)? {
                report.manifests_freed += 1;
                report.bytes_freed += stored.size;
            }
        }
        for stored in self.blobs()? {
            if !referenced.contains(&stored.digest) && remove(&stored.path)? {
                report.blobs_freed += 1;
                report.bytes_freed += stored.size;
            }
        }
        // Prefix directories left empty go too (with the lock held no import is filling one).
        for dir in fs::read_dir(&self.blobs).map_err(Error::io("list", &self.blobs))?.flatten() {
            let _ = fs::remove_dir(dir.path()); // fails, harmlessly, unless it is empty
        }
        // With the lock held no import is running, so whatever is in tmp/ was left by a crash.
        let tmp = self.tmp_dir();
        for entry in fs::read_dir(tmp).map_err(Error::io("list", tmp))? {
            let path = entry.map_err(Error::io("list", tmp))?.path();
            let meta = fs::symlink_metadata(&path).map_err(Error::io("inspect", &path))?;
            if meta.is_dir() {
                fs::remove_dir_all(&path).map_err(Error::io("remove the stale temp directory", &path))?;
            } else {
                fs::remove_file(&path).map_err(Error::io("remove the stale temp file", &path))?;
                report.bytes_freed += meta.len();
            }
        }
        Ok(report)
    }
}

/// Removes a stored file; `false` if it was already gone.
fn remove(path: &std::path::Path) -> Result<bool, Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("remove", path)(e)),
    }
}
