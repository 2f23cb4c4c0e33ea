//! The command line end to end on the embedded store: every command, untrusted text (the THREATS scenarios are
//! tests/threats, on both backends).
//!
//! One test binary for the group (issue 21: fewer binaries to link, and their tests run side by side).

#[path = "../common/mod.rs"]
mod common;

mod case_cli;
mod case_history;
mod cli_config;
mod cli_e2e;
mod directory_import;
mod man_pages;
mod operator_cli;
mod policy_backtest;
mod release;
mod review_cli;
mod rollback_cli;
mod submit_e2e;
mod untrusted_text;
