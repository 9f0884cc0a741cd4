//! Reading an untrusted source (a directory, or a tar, tar.gz or tar.zst archive) into blobs and a
//! manifest. Nothing is ever extracted to a path: each file's content is streamed into the store as a
//! blob, and everything else becomes an entry in an in-memory `Tree`, which holds the rules. It does not
//! publish anything or clean up after a refusal; the import transaction in `store.rs` does both.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use tar::EntryType;

use crate::error::{Origin, Refusal};
use crate::store::{BlobError, ImportTxn};
use crate::tree::{self, Tree};
use crate::{Error, Manifest};

const PERMISSION_BITS: u32 = 0o7777;
const READ_BUFFER: usize = 128 * 1024;

enum Format {
    Tar,
    Gzip,
    Zstd,
}

impl Format {
    /// By magic bytes, never by file name: a `.tar.gz` that is really zstd still imports.
    fn detect(head: &[u8]) -> Option<Format> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Format::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Format::Zstd)
        } else if head.get(257..262) == Some(b"ustar") {
            // Both POSIX ("ustar\0") and GNU ("ustar  ") headers; pre-POSIX v7 tars have no magic.
            Some(Format::Tar)
        } else {
            None
        }
    }
}

/// Stores the content of every file in `source` through `txn` and returns the checked manifest.
pub(crate) fn read_source(source: &Path, txn: &mut ImportTxn<'_>) -> Result<Manifest, Error> {
    // The source path itself may be a symlink (a `current` link to a build directory); only what is
    // inside it is untrusted.
    let meta = fs::metadata(source).map_err(Error::io("read the image source", source))?;
    if meta.is_dir() {
        return read_dir_tree(source, txn);
    }
    if !meta.is_file() {
        return Err(Error::UnknownFormat { path: source.to_path_buf() });
    }
    let mut file = File::open(source).map_err(Error::io("read the image source", source))?;
    let mut head = Vec::with_capacity(512);
    (&mut file).take(512).read_to_end(&mut head).map_err(Error::io("read the image source", source))?;
    file.rewind().map_err(Error::io("read the image source", source))?;
    let file = BufReader::with_capacity(READ_BUFFER, file);
    match Format::detect(&head) {
        Some(Format::Tar) => read_tar(file, txn),
        Some(Format::Gzip) => read_tar(flate2::bufread::MultiGzDecoder::new(file), txn),
        Some(Format::Zstd) => {
            let decoder = zstd::stream::read::Decoder::with_buffer(file).map_err(|source| Error::Archive { source })?;
            read_tar(decoder, txn)
        }
        None => Err(Error::UnknownFormat { path: source.to_path_buf() }),
    }
}

/// Reads archive entries one by one (never `unpack`), so the archive's idea of paths never reaches the
/// file system.
fn read_tar(reader: impl Read, txn: &mut ImportTxn<'_>) -> Result<Manifest, Error> {
    let mut archive = tar::Archive::new(reader);
    let mut tree = Tree::default();
    for entry in archive.entries().map_err(|source| Error::Archive { source })? {
        let mut entry = entry.map_err(|source| Error::Archive { source })?;
        let raw_path = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_path).into_owned();
        let refused = |reason| Error::Refused { origin: Origin::Archive, path: name.clone(), reason };
        let unreadable = |source| Error::ArchiveEntry { path: name.clone(), source };

        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            continue; // Archive-wide metadata (git archive puts the commit id here), not a file.
        }
        let mode = entry.header().mode().map_err(unreadable)? & PERMISSION_BITS;
        let Some(path) = tree::normalize(&raw_path).map_err(refused)? else {
            // `./` is listed by `tar -C dir .`; the root's own mode is not part of an image.
            match kind {
                EntryType::Directory => continue,
                _ => return Err(refused(Refusal::Root)),
            }
        };
        let added = match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                tree.check(&path, false).map_err(refused)?;
                let expected = entry.size();
                let (digest, size) = txn.add_blob(&mut entry).map_err(|e| match e {
                    BlobError::Read(source) => unreadable(source),
                    BlobError::Store(e) => e,
                })?;
                if size != expected {
                    let why = format!("the archive ends inside it ({size} of {expected} bytes)");
                    return Err(unreadable(io::Error::new(io::ErrorKind::UnexpectedEof, why)));
                }
                tree.add_file(path, mode, digest, size)
            }
            EntryType::Directory => tree.add_dir(path, mode),
            EntryType::Symlink => match entry.link_name_bytes() {
                None => Err(Refusal::EmptyLinkTarget),
                Some(target) => match String::from_utf8(target.into_owned()) {
                    Ok(target) => tree.add_symlink(path, target),
                    Err(_) => Err(Refusal::BadLinkTarget),
                },
            },
            EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default();
                match tree::normalize(&target) {
                    Ok(Some(target)) => tree.add_hard_link(path, &target),
                    _ => Err(Refusal::BadHardLink(String::from_utf8_lossy(&target).into_owned())),
                }
            }
            EntryType::Char => Err(Refusal::Unsupported("character device".into())),
            EntryType::Block => Err(Refusal::Unsupported("block device".into())),
            EntryType::Fifo => Err(Refusal::Unsupported("fifo".into())),
            other => {
                let code = (other.as_byte() as char).escape_default();
                Err(Refusal::Unsupported(format!("tar entry of type '{code}'")))
            }
        };
        added.map_err(refused)?;
    }
    tree.finish().map_err(|r| Error::Refused { origin: Origin::Archive, path: r.path, reason: r.reason })
}

/// Walks a directory without following any symlink inside it (`symlink_metadata`, `O_NOFOLLOW`), so a
/// link in the source is recorded as a link, never read through.
fn read_dir_tree(root: &Path, txn: &mut ImportTxn<'_>) -> Result<Manifest, Error> {
    let mut tree = Tree::default();
    // Explicit stack rather than recursion: depth is the source's to choose.
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = pending.pop() {
        for dir_entry in fs::read_dir(&dir).map_err(Error::io("read the directory", &dir))? {
            let dir_entry = dir_entry.map_err(Error::io("read the directory", &dir))?;
            let full = dir_entry.path();
            let file_name = dir_entry.file_name();
            let join = |name: &str| if rel.is_empty() { name.to_string() } else { format!("{rel}/{name}") };
            let shown = join(&file_name.to_string_lossy());
            let refused = |reason| Error::Refused { origin: Origin::Directory, path: shown.clone(), reason };
            // read_dir never yields "", ".", ".." or names with '/', so the joined path is already normal.
            let path = join(file_name.to_str().ok_or_else(|| refused(Refusal::NotUtf8))?);

            let meta = fs::symlink_metadata(&full).map_err(Error::io("inspect", &full))?;
            let file_type = meta.file_type();
            let added = if file_type.is_dir() {
                pending.push((full.clone(), path.clone()));
                tree.add_dir(path, meta.mode() & PERMISSION_BITS)
            } else if file_type.is_file() {
                let (mode, digest, size) = store_file(&full, txn)?;
                tree.add_file(path, mode, digest, size)
            } else if file_type.is_symlink() {
                let target = fs::read_link(&full).map_err(Error::io("read the symlink", &full))?;
                match target.into_os_string().into_string() {
                    Ok(target) => tree.add_symlink(path, target),
                    Err(_) => Err(Refusal::BadLinkTarget),
                }
            } else {
                Err(Refusal::Unsupported(describe(file_type).into()))
            };
            added.map_err(refused)?;
        }
    }
    tree.finish().map_err(|r| Error::Refused { origin: Origin::Directory, path: r.path, reason: r.reason })
}

/// Stores one regular file of a directory source. `O_NOFOLLOW` and the check on the opened file close the
/// window where the path is swapped for a link or a fifo after it was inspected.
fn store_file(full: &Path, txn: &mut ImportTxn<'_>) -> Result<(u32, crate::Digest, u64), Error> {
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(full)
        .map_err(Error::io("read", full))?;
    let meta = file.metadata().map_err(Error::io("inspect", full))?;
    if !meta.is_file() {
        let io = io::Error::other("it stopped being a regular file while being imported");
        return Err(Error::io("read", full)(io));
    }
    let (digest, size) = txn.add_blob(&mut file).map_err(|e| match e {
        BlobError::Read(source) => Error::io("read", full)(source),
        BlobError::Store(e) => e,
    })?;
    Ok((meta.mode() & PERMISSION_BITS, digest, size))
}

fn describe(file_type: fs::FileType) -> &'static str {
    if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else if file_type.is_fifo() {
        "fifo"
    } else if file_type.is_socket() {
        "socket"
    } else {
        "special file"
    }
}
