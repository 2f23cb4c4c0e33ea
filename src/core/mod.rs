//! The pure core: commands, events, states, `decide`, `evolve`, the transition table, verification primitives and
//! limits. Architecture invariant: nothing under `core/` does I/O, reads a clock, draws randomness of its own, or
//! imports tokio, async-nats or rusqlite (`tests/core/core_purity.rs` fails the build if it does).

pub mod account;
pub mod action;
pub mod actor;
pub mod address;
pub mod campaign;
pub mod command;
pub mod control;
pub mod decide;
pub mod event;
pub mod ids;
pub mod limits;
pub mod notices;
pub mod policy;
pub mod rejection;
pub mod signals;
pub mod state;
pub mod table;
pub mod text;
pub mod transition;
pub mod verification;
