//! The notices a case owes its owner until they are delivered: the cancel links of a scheduled change, and word that
//! a change was applied or rolled back. Each is owed by the event that calls for it, to each pre-existing destination
//! it names, and stays owed until a `NoticesDelivered` event records its delivery (ADR 10). A code is not among them:
//! only its hash is kept, so a code that could not be sent cannot be sent again; its owner asks again.

use crate::event::EventBody;
use crate::facts::CaseFacts;
use crate::ids::{DestinationId, UnixMs};

/// What a notice tells its destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// A change is scheduled; the notice holds a link that cancels it. Owed only while the case is cooling off.
    CancelLink,
    /// The change was applied.
    Applied,
    /// The change was rolled back.
    RolledBack,
}

/// One notice a case owes one destination.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OwedNotice {
    /// The case version (1-based place in the case's stream) of the event that owes it.
    pub event: u64,
    pub kind: NoticeKind,
    pub destination: DestinationId,
    /// When that event happened.
    pub owed_at: UnixMs,
}

/// The notices an event makes its case owe, and to whom: the destinations a scheduled change names, and every
/// destination that existed when the case was opened for a change applied or rolled back. `None` for the other
/// events.
pub fn owed_by(facts: &CaseFacts, body: &EventBody) -> Option<(NoticeKind, Vec<DestinationId>)> {
    let pre_existing =
        || facts.snapshot.pre_existing(facts.requested_at).iter().map(|destination| destination.id.clone()).collect();
    match body {
        EventBody::CoolingOffStarted { notify, .. } => Some((NoticeKind::CancelLink, notify.clone())),
        EventBody::ExecutionConfirmed { .. } => Some((NoticeKind::Applied, pre_existing())),
        EventBody::RolledBack { .. } => Some((NoticeKind::RolledBack, pre_existing())),
        EventBody::RecoveryRequested { .. }
        | EventBody::ChallengeIssued { .. }
        | EventBody::ChallengeWithheld { .. }
        | EventBody::ProofRejected { .. }
        | EventBody::ProofAccepted { .. }
        | EventBody::ReviewRequired { .. }
        | EventBody::ReviewApproved { .. }
        | EventBody::CaseDenied { .. }
        | EventBody::CaseCancelled { .. }
        | EventBody::ExecutionStarted { .. }
        | EventBody::ExecutionFailed { .. }
        | EventBody::CaseExpired
        | EventBody::CommandRefused { .. }
        | EventBody::SecondFactorProven { .. }
        | EventBody::NoticesDelivered { .. }
        | EventBody::PasswordSet { .. } => None,
    }
}
