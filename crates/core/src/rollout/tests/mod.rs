//! Tests of the planner: table tests in a scenario language, property tests of the safety rules.

mod bench;
mod cases;
mod props;
mod scenario;
