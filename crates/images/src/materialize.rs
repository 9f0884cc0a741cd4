//! Making an instance's OS disk: a fresh, writable copy of an image in a new directory. It owns the
//! order of writes that keeps the copy inside its directory, and nothing about which images exist.
//!
//! Files are copied out of the blob store, never hard-linked: an instance writing to its disk must not
//! change the store. The copy goes through `copy_file_range` (std's `io::copy` between two files), which
//! reflinks on file systems that can and copies in the kernel elsewhere, so a 20 MB image takes
//! milliseconds.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::manifest::{EntryKind, Manifest};
use crate::{Digest, Error, ImageStore};

impl ImageStore {
    /// Copies the image `digest` into `dest`, which must not exist or be an empty directory. On failure
    /// what was written is removed again (best effort).
    ///
    /// The caller must keep `digest` live while this runs: `gc` does not wait for it.
    pub fn materialize(&self, digest: &Digest, dest: &Path) -> Result<(), Error> {
        let manifest = self.manifest(digest)?;
        let created = prepare(dest)?;
        let result = self.fill(digest, &manifest, dest);
        if result.is_err() {
            clean_up(dest, created);
        }
        result
    }

    /// `manifest` has been validated, so every path is relative with no `..` and no entry sits below a
    /// symlink. Writing in three passes keeps every write inside `dest` even so: directories and files
    /// first (parents before children, files opened with `O_EXCL`), symlinks only once nothing more is
    /// written through paths, and directory modes last, deepest first, so a read-only directory does not
    /// stop its own filling.
    fn fill(&self, digest: &Digest, manifest: &Manifest, dest: &Path) -> Result<(), Error> {
        for entry in &manifest.entries {
            let to = dest.join(&entry.path);
            match &entry.kind {
                EntryKind::Dir => fs::create_dir(&to).map_err(Error::io("create the directory", &to))?,
                EntryKind::File { digest: blob, .. } => self.copy_blob(digest, blob, &to, entry.mode)?,
                EntryKind::Symlink { .. } => {}
            }
        }
        for entry in &manifest.entries {
            if let EntryKind::Symlink { target } = &entry.kind {
                let to = dest.join(&entry.path);
                std::os::unix::fs::symlink(target, &to).map_err(Error::io("create the symlink", &to))?;
            }
        }
        for entry in manifest.entries.iter().rev() {
            if let EntryKind::Dir = entry.kind {
                let to = dest.join(&entry.path);
                fs::set_permissions(&to, Permissions::from_mode(entry.mode))
                    .map_err(Error::io("set the mode of", &to))?;
            }
        }
        Ok(())
    }

    fn copy_blob(&self, image: &Digest, blob: &Digest, to: &Path, mode: u32) -> Result<(), Error> {
        let from = self.blob_path(blob);
        let mut src = match File::open(&from) {
            Ok(src) => src,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::Corrupt { digest: *image, reason: format!("its blob {blob} is missing") });
            }
            Err(e) => return Err(Error::io("read the blob", from)(e)),
        };
        // create_new: never follow or reuse anything already at `to`. Owner-only until the real mode is set.
        let mut dst =
            OpenOptions::new().write(true).create_new(true).mode(0o600).open(to).map_err(Error::io("create", to))?;
        io::copy(&mut src, &mut dst).map_err(Error::io("copy the image file to", to))?;
        // After the copy: writing to a file clears its setuid and setgid bits.
        dst.set_permissions(Permissions::from_mode(mode)).map_err(Error::io("set the mode of", to))
    }
}

/// Makes sure `dest` is an empty directory; returns whether it was created here.
fn prepare(dest: &Path) -> Result<bool, Error> {
    match fs::symlink_metadata(dest) {
        Ok(meta) if meta.is_dir() => {
            let mut entries = fs::read_dir(dest).map_err(Error::io("read the destination", dest))?;
            match entries.next() {
                None => Ok(false),
                Some(_) => Err(Error::DestinationNotEmpty { path: dest.to_path_buf() }),
            }
        }
        Ok(_) => Err(Error::DestinationNotEmpty { path: dest.to_path_buf() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dest).map_err(Error::io("create the destination", dest))?;
            Ok(true)
        }
        Err(e) => Err(Error::io("inspect the destination", dest)(e)),
    }
}

/// Removes a failed copy. Directory modes are only applied after every write succeeded, so everything
/// here is still writable by us.
fn clean_up(dest: &Path, created: bool) {
    if created {
        let _ = fs::remove_dir_all(dest);
        return;
    }
    if let Ok(entries) = fs::read_dir(dest) {
        for entry in entries.flatten() {
            let path = entry.path();
            let removed = match entry.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
            let _ = removed;
        }
    }
}
