//! The pure core of airlock: commands, events, states, `decide`, `evolve`, the transition table, verification
//! primitives and limits. Architecture invariant: nothing here does I/O, reads a clock, draws randomness of its own,
//! or imports tokio, async-nats, rusqlite or an HTTP stack. It is a crate of its own (issue 21, item 4) so that the
//! compiler enforces the imports: its Cargo.toml has no such dependency (`tests/core/core_purity.rs` checks that list,
//! that no module reaches for the standard library's clock, files, network, environment or processes, and that the
//! modules import each other without a cycle). The airlock crate re-exports it as `airlock::core`.

pub mod account;
pub mod action;
pub mod actor;
pub mod address;
pub mod campaign;
pub mod command;
pub mod control;
pub mod decide;
pub mod event;
pub mod facts;
pub mod ids;
pub mod kind;
pub mod limits;
pub mod notices;
pub mod policy;
pub mod rejection;
pub mod signals;
pub mod state;
pub mod status;
pub mod table;
pub mod text;
pub mod transition;
pub mod verification;
