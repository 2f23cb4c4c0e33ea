//! The event log, the projection and the storage around them: both log backends, migrations, the embedded service, crash safety, audits, replays and the benchmark.
//!
//! One test binary for the group (issue 21: fewer binaries to link, and their tests run side by side).

#[path = "../common/mod.rs"]
mod common;

mod audit_cli;
mod bench_smoke;
mod durable_notices;
mod embedded_service;
mod execution_crash;
mod log_conformance;
mod projection_migration;
mod replay_cli;
mod slow_notices;
