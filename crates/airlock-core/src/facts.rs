//! What the first event of a case fixed for its whole life: read by the notices a case owes and by its state.

use crate::account::AccountSnapshot;
use crate::action::{ActionHash, RecoveryAction};
use crate::actor::Actor;
use crate::ids::{AccountId, UnixMs};
use crate::policy::{PolicyDecision, Velocity};
use crate::signals::Signals;

/// What the first event of a case fixed for its whole life.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CaseFacts {
    pub account_id: AccountId,
    pub action: RecoveryAction,
    pub action_hash: ActionHash,
    pub requester: Actor,
    pub requested_at: UnixMs,
    pub snapshot: AccountSnapshot,
    /// What the front door observed; recorded so the authorization phase sees the same signals.
    pub signals: Signals,
    /// The request counts the intake decision was taken on, exact at the time of the request (ADR 8); the
    /// authorization phase decides on the same counts.
    pub velocity: Velocity,
    /// The campaign alerts open at the request that it matched (issue 20): the authorization phase sees them too.
    pub open_alerts: Vec<String>,
}

impl CaseFacts {
    /// The cooling-off this case waits under `decision`, with the floors taken from the case itself.
    pub fn cooling_off_ms(&self, decision: &PolicyDecision) -> u64 {
        decision.effective_cooling_off_ms(self.action.adds_destination())
    }

    /// The reviewer quorum this case needs under `decision`, with the floor taken from the recorded snapshot.
    pub fn reviewers_required(&self, decision: &PolicyDecision) -> u8 {
        decision.effective_reviewers_required(self.snapshot.is_high_value())
    }
}
