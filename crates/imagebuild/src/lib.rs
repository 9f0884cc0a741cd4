//! Image builds from Packer-style JSON templates (`galleon image build --template FILE.json`).
//!
//! Three stages, split so the first two are pure:
//! - [`parse`]: JSON text to a shape-checked [`Template`] (`template.rs`, with `{{ }}` expressions from
//!   `vars.rs`). Unknown keys, wrong types, unknown builder or provisioner types, several sources: all
//!   reported at once, each with its JSON path.
//! - [`resolve`] / [`resolve_with`]: variables (defaults, var-files, `-var`; later wins) substituted into a
//!   [`Plan`] (`plan.rs`). Missing required and undeclared variables are named; sensitive values are masked
//!   in every message.
//! - [`run`]: the plan's steps against an image root directory, each process in a sandbox where only the
//!   root and a private `/tmp` are writable (`sandbox.rs`, CONTRACT §4), output streamed line by line with
//!   its step (`run.rs`).
//!
//! This crate does not materialize the source (`source_dir`, `source_image`, `source_image_version`) into the
//! root, and does not import or publish the result: its caller does both, and publishes nothing when
//! [`run`] fails. It does not parse the command line either (`-var`, `-var-file` are the CLI's).

mod duration;
mod error;
mod mask;
mod plan;
mod run;
mod sandbox;
mod template;
mod vars;

pub use error::{BuildError, Problem, StepFailure, StepRef, TemplateError, UnknownVariable};
pub use mask::MASK;
pub use plan::{
    Action, DEFAULT_INLINE_SHEBANG, Destination, FileSource, FileStep, GalleryOut, ManagedImageOut, Outputs, Plan,
    ResolveInputs, Script, ShellStep, Source, Step, resolve, resolve_with,
};
pub use run::run;
pub use sandbox::sandbox_available;
pub use template::{Template, parse};
pub use vars::ExecPiece;

/// The builder `type` galleon implements, and the value of `PACKER_BUILDER_TYPE`.
pub const BUILDER_TYPE: &str = "galleon";
