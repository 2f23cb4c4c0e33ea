//! airlock against the real systems around it: HTTP front doors, MCP, SMTP and SMS, directory adapters and SCIM, identity providers and the console in a browser.
//!
//! One test binary for the group (issue 21: fewer binaries to link, and their tests run side by side).

#[path = "../common/mod.rs"]
mod common;

mod directory_adapter;
mod directory_scim;
mod http_intake;
mod http_verify;
mod mcp_server;
mod smtp_notify;
