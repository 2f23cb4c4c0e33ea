//! `airlock serve` on real nats-servers: faults, clusters, least privilege at the broker, velocity across processes, events out, the shipped deployment files.
//!
//! One test binary for the group (issue 21: fewer binaries to link, and their tests run side by side).

#[path = "../common/mod.rs"]
mod common;

mod deploy;
mod events_out;
mod nats_cluster;
mod nats_permissions;
mod nats_serve;
mod nats_workflow;
mod velocity_burst;
