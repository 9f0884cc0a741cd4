//! The store's errors: `Error` for callers to branch on, `Refusal` for why an untrusted entry was turned
//! away. Every message names the thing it is about; none of them is logged here.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::Digest;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source holds something an image must not: nothing was published.
    #[error("{origin} '{path}' {reason}")]
    Refused { origin: Origin, path: String, reason: Refusal },
    #[error("'{}' is neither a directory nor a tar, tar.gz or tar.zst archive", path.display())]
    UnknownFormat { path: PathBuf },
    /// The archive itself is damaged or truncated (as opposed to holding a forbidden entry).
    #[error("cannot read the archive: {source}")]
    Archive { source: io::Error },
    #[error("cannot read archive entry '{path}': {source}")]
    ArchiveEntry { path: String, source: io::Error },
    #[error("the image {0} is not in the store")]
    NotFound(Digest),
    /// A stored manifest that does not hash to its name or breaks the rules import enforces.
    #[error("the stored image {digest} is damaged: {reason}")]
    Corrupt { digest: Digest, reason: String },
    #[error("cannot materialize into '{}': it exists and is not an empty directory", path.display())]
    DestinationNotEmpty { path: PathBuf },
    /// Any other file-system failure; `action` says what was being done (`"write the blob"`).
    #[error("cannot {action} '{}': {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
}

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { action, path, source }
    }
}

/// Where a refused entry came from, so the message reads naturally for either source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Archive,
    Directory,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Archive => "archive entry",
            Origin::Directory => "directory entry",
        })
    }
}

/// Why an entry was refused. Displayed after "archive entry '<path>' ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("has an empty path")]
    EmptyPath,
    #[error("has an absolute path")]
    AbsolutePath,
    #[error("leaves the image root")]
    LeavesRoot,
    #[error("contains a NUL byte")]
    Nul,
    #[error("is not valid UTF-8")]
    NotUtf8,
    #[error("names the image root but is not a directory")]
    Root,
    #[error("passes through the symlink '{0}'")]
    ThroughSymlink(String),
    #[error("is inside '{0}', which is not a directory")]
    UnderNonDirectory(String),
    #[error("replaces an earlier directory")]
    ReplacesDirectory,
    #[error("appears twice")]
    Duplicate,
    #[error("is a symlink with an empty target")]
    EmptyLinkTarget,
    #[error("is a symlink whose target is not valid UTF-8 or contains a NUL byte")]
    BadLinkTarget,
    #[error("is a symlink to the absolute path '{0}'; only relative links inside the image are allowed")]
    AbsoluteLink(String),
    #[error("is a symlink to '{0}', which leaves the image root")]
    LinkLeavesRoot(String),
    #[error("is a symlink to '{0}', which loops (more than 40 links deep)")]
    LinkLoop(String),
    #[error("is a hard link to '{0}', which is not an earlier regular file in the archive")]
    BadHardLink(String),
    #[error("is a {0}, which an image cannot hold (only files, directories and symlinks)")]
    Unsupported(String),
}
