//! airlock: an event-sourced account-recovery orchestrator. A conversation may request a recovery; only
//! deterministic services verify, authorize, hold, execute, record and roll back. See ARCHITECTURE.md for the map.

#![forbid(unsafe_code)]

pub mod core;
pub mod directory;
pub mod log;
pub mod notify;
pub mod policy;
pub mod projection;
pub mod sqlite;
