//! Pure tests of the core, the policies and the wire: no process, no server.
//!
//! One test binary for the group (issue 21: fewer binaries to link, and their tests run side by side).

#[path = "../common/mod.rs"]
mod common;

mod core_decide;
mod core_purity;
mod core_units;
mod docs;
mod golden;
mod policy;
mod schemas;
mod verification;
mod wire;
