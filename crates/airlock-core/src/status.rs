//! The states of a case, by themselves: what every other module may name (a rejection, a command's accepted states,
//! the transition table) without reaching for the case's whole state.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The states of SPEC.md's machine. `New` is "(none)": no event yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Status {
    New,
    Requested,
    Verified,
    InReview,
    CoolingOff,
    Executing,
    Executed,
    RolledBack,
    Denied,
    Cancelled,
    Expired,
}

impl Status {
    pub const ALL: [Status; 11] = [
        Status::New,
        Status::Requested,
        Status::Verified,
        Status::InReview,
        Status::CoolingOff,
        Status::Executing,
        Status::Executed,
        Status::RolledBack,
        Status::Denied,
        Status::Cancelled,
        Status::Expired,
    ];

    /// The name used in `state-machines/recovery.toml`, the projection and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Status::New => "none",
            Status::Requested => "requested",
            Status::Verified => "verified",
            Status::InReview => "in_review",
            Status::CoolingOff => "cooling_off",
            Status::Executing => "executing",
            Status::Executed => "executed",
            Status::RolledBack => "rolled_back",
            Status::Denied => "denied",
            Status::Cancelled => "cancelled",
            Status::Expired => "expired",
        }
    }

    pub fn from_name(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|status| status.name() == name)
    }

    /// Terminal states accept no transition to another state, ever (only refusals are recorded in them).
    pub fn is_terminal(self) -> bool {
        match self {
            Status::RolledBack | Status::Denied | Status::Cancelled | Status::Expired => true,
            Status::New
            | Status::Requested
            | Status::Verified
            | Status::InReview
            | Status::CoolingOff
            | Status::Executing
            | Status::Executed => false,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}
