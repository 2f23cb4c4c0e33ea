//! The transition function in code: for each event kind, the states it may follow and the state it leads to.
//! `state-machines/recovery.toml` holds the same table as data; `crates/airlock-invariants/tests/invariants.rs` proves
//! the two agree.

use crate::event::EventKind;
use crate::status::Status;

/// The state an event of `kind` leads to from `from`, or `None` if the table does not allow it.
pub fn target(from: Status, kind: EventKind) -> Option<Status> {
    use Status::{CoolingOff, Denied, Executed, Executing, Expired, InReview, New, Requested, RolledBack, Verified};
    let (sources, to): (&[Status], Status) = match kind {
        EventKind::RecoveryRequested => (&[New], Requested),
        EventKind::ChallengeIssued
        | EventKind::ChallengeWithheld
        | EventKind::ProofRejected
        | EventKind::SecondFactorProven => (&[Requested], Requested),
        EventKind::ProofAccepted => (&[Requested], Verified),
        EventKind::ReviewRequired => (&[Requested, Verified], InReview),
        EventKind::ReviewApproved => (&[InReview], InReview),
        EventKind::CoolingOffStarted => (&[Verified, InReview], CoolingOff),
        EventKind::CaseDenied => (&[Requested, Verified, InReview], Denied),
        EventKind::CaseCancelled => (&[CoolingOff], Status::Cancelled),
        EventKind::ExecutionStarted => (&[CoolingOff], Executing),
        EventKind::ExecutionConfirmed => (&[Executing], Executed),
        EventKind::ExecutionFailed => (&[Executing], InReview),
        EventKind::RolledBack => (&[Executed], RolledBack),
        EventKind::CaseExpired => (&[Requested, InReview, CoolingOff], Expired),
        // A refusal is recorded in any state of an existing case and changes nothing; `verified` is transient (proof
        // and its authorization are one decision), so nothing is ever refused there.
        EventKind::CommandRefused => return (from != New && from != Verified).then_some(from),
        // Delivering a notice changes nothing either; notices are owed only in these states (`crate::notices`).
        EventKind::NoticesDelivered => return matches!(from, CoolingOff | Executed | RolledBack).then_some(from),
        // The owner setting a password through a reset's link changes no state: the case stays executed.
        EventKind::PasswordSet => return (from == Executed).then_some(from),
    };
    sources.contains(&from).then_some(to)
}
