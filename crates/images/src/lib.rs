//! galleon's image store: content-addressed storage of application root directories.
//!
//! An image is a manifest (every path below the root with its kind, permission bits and, for files, the
//! sha256 of the content); its identity is the sha256 of the manifest's canonical JSON. File contents are
//! stored once each, as read-only blobs, so a version that changes one file adds about that file to the
//! disk. Images come in from untrusted directories and tar archives (`import`, which refuses anything that
//! could reach outside the image and then publishes nothing), go out as fresh writable copies for instances
//! (`materialize`), and are freed when no longer live (`gc`).
//!
//! Not here: which images exist or are in use (the database, via the server), entrypoint defaults, OCI
//! layouts, image builds.
//!
//! Codemap: `digest` names things, `manifest` is the image format, `tree` holds the safety rules,
//! `import` reads sources, `store` owns the disk layout and atomic writes, `materialize` copies out,
//! `gc` frees.

mod digest;
mod error;
mod gc;
mod import;
mod manifest;
mod materialize;
mod store;
mod tree;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.
mod tests;

pub use digest::{Digest, DigestError};
pub use error::{Error, Origin, Refusal};
pub use gc::GcReport;
pub use manifest::{Entry, EntryKind, EntrypointError, Manifest};
pub use store::{ImageStore, Imported};
