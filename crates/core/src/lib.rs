//! galleon's pure core: the decisions, with no I/O and no clock.
//!
//! Everything here is a function of its inputs and a `now` passed in: health hysteresis, names and
//! versions, resource ids, upgrade policies and the rollout planner. Adapters (store, images, runtime,
//! lb) and the server do the I/O and call in here to decide.

pub mod gallery;
pub mod health;
pub mod ids;
pub mod names;
pub mod policy;
pub mod rollout;
pub mod scale;
pub mod time;
pub mod version;
