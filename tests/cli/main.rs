//! The command line end to end on the embedded store: every command, the threats on the embedded store, untrusted text.
//!
//! One test binary for the group (issue 21: fewer binaries to link, and their tests run side by side).

#[path = "../common/mod.rs"]
mod common;

mod case_cli;
mod case_history;
mod cli_config;
mod cli_e2e;
mod directory_import;
mod operator_cli;
mod policy_backtest;
mod review_cli;
mod rollback_cli;
mod submit_e2e;
mod threats_embedded;
mod untrusted_text;
