//! galleon's wire types: the Azure Resource Manager documents the API speaks, and nothing else.
//!
//! Serde and JSON Schema only — no I/O, no logic beyond small constructors. The server converts these
//! to and from its own state at the edge; the CLI and the tests read them through `galleon-client`.
//! Shapes follow ARM (`design/arm-examples/`): `id`, `name`, `type`, `location`, `tags`, the rest under
//! `properties`; camelCase; `provisioningState` PascalCase. Fields the server sets are marked read-only in
//! the schema (`readOnly`), which is how `--set` knows to refuse them.

pub mod build;
pub mod common;
pub mod gallery;
pub mod group;
pub mod image;
pub mod lb;
pub mod schema;
pub mod vmss;

pub use common::*;
