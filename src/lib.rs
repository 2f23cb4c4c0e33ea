//! airlock: an event-sourced account-recovery orchestrator. A conversation may request a recovery; only
//! deterministic services verify, authorize, hold, execute, record and roll back. See ARCHITECTURE.md for the map.

#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
/// The pure core, a crate of its own (`crates/airlock-core`).
pub use airlock_core as core;
pub mod directory;
pub mod http;
pub mod intake;
pub mod keys;
pub mod log;
pub mod mcp;
pub mod nats;
pub mod notify;
pub mod observe;
pub mod oidc;
pub mod outward;
pub mod policy;
pub mod projection;
pub mod server;
pub mod service;
pub mod simulate;
pub mod sqlite;
pub mod templates;
pub mod wire;
