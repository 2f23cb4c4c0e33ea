//! The state of one case, and `evolve`, which folds an event into it. Evolve trusts nothing it is not told: every
//! event must be a transition the table allows from the current status (`transition::target`), or the history is
//! corrupt.

use crate::actor::Actor;
use crate::command::Change;
use crate::event::{Authorization, Event, EventBody, EventKind, SecondFactor};
use crate::ids::{ActorId, ChallengeId, CommandId, DestinationId, EffectId, UnixMs};
use crate::notices::{self, NoticeKind, OwedNotice};
use crate::policy::PolicyDecision;
use crate::transition;
use crate::verification::CodeHash;
use std::collections::BTreeMap;

pub use crate::facts::CaseFacts;
pub use crate::status::Status;

/// One reviewer's approval of the case's action, and when it was given.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Approval {
    pub reviewer: ActorId,
    pub at: UnixMs,
}

impl CaseState {
    /// Whether `actor` already sent the command `command_id` to this case and it produced events.
    pub fn has_seen(&self, actor: &Actor, command_id: &CommandId) -> bool {
        self.seen_as(actor, command_id).is_some()
    }

    /// The kind of the first event `actor`'s command `command_id` produced on this case, if it produced any.
    pub fn seen_as(&self, actor: &Actor, command_id: &CommandId) -> Option<EventKind> {
        self.seen_commands
            .iter()
            .find(|((seen_actor, seen_id), _)| seen_id == command_id && seen_actor == actor)
            .map(|(_, kind)| *kind)
    }

    /// The approvals that still count at `now`: an approval expires `REVIEW_APPROVAL_TTL_MS` after it was given, so
    /// a quorum is made of reviewers who agreed within that time of each other.
    pub fn live_approvals(&self, now: UnixMs) -> impl Iterator<Item = &Approval> {
        self.approvals.iter().filter(move |approval| approval.at.plus(crate::limits::REVIEW_APPROVAL_TTL_MS) > now)
    }
}

/// The one challenge outstanding on a case: a code per destination.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OpenChallenge {
    pub challenge_id: ChallengeId,
    pub destinations: Vec<DestinationId>,
    /// `code_hashes[i]` is the code sent to `destinations[i]`.
    pub code_hashes: Vec<CodeHash>,
    pub expires_at: UnixMs,
}

impl OpenChallenge {
    /// The destinations whose code `proof` is, in their order; empty for a wrong code. Every hash is compared, each
    /// in constant time, so the time taken does not say which destination's code was close.
    pub fn proven_destinations(&self, proof: &CodeHash) -> Vec<DestinationId> {
        let matches: Vec<bool> = self.code_hashes.iter().map(|hash| proof.matches(hash)).collect();
        self.destinations.iter().zip(matches).filter(|(_, matched)| *matched).map(|(id, _)| id.clone()).collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CaseState {
    pub status: Status,
    pub facts: Option<CaseFacts>,
    pub challenge: Option<OpenChallenge>,
    /// Destinations whose code was proven, if any.
    pub proven_by: Vec<DestinationId>,
    /// A second factor proven with the code (the authenticator app), if any.
    pub second_factor: Option<SecondFactor>,
    /// The latest policy decision (intake, then authorization).
    pub decision: Option<PolicyDecision>,
    pub reviewers_required: u8,
    /// The approvals of the current review round, oldest first; each counts for `REVIEW_APPROVAL_TTL_MS`.
    pub approvals: Vec<Approval>,
    pub authorization: Option<Authorization>,
    pub cooling_off_ends_at: Option<UnixMs>,
    /// When the case expires if it stays in its current state.
    pub deadline: Option<UnixMs>,
    pub effect: Option<EffectId>,
    pub effects_started: u32,
    pub executed_changes: Vec<Change>,
    /// When the change was applied: a rollback revokes sessions opened since.
    pub executed_at: Option<UnixMs>,
    pub refusals: u32,
    /// When each wrong code for this case was refused: the case's share of its account's failures (THREATS 7).
    pub proof_failures: Vec<UnixMs>,
    /// Notices owed and not yet delivered, oldest first (`crate::notices`).
    pub notices: Vec<OwedNotice>,
    pub events: usize,
    /// Commands that produced events, by who sent them: a retried one appends nothing (refused commands are not
    /// listed, so a retry of a refused command is refused again). A command id means something only together with
    /// its sender, so another actor's command that happens to reuse the id is a new command (issue 15, item 2).
    /// With the kind of the first event each produced, so that the same id sent for another kind of command is told
    /// from a retry (issue 15, item 13).
    pub seen_commands: BTreeMap<(Actor, CommandId), EventKind>,
    /// The reset's set-password link was used (a link sets a password once).
    pub password_set: bool,
}

pub fn initial_state() -> CaseState {
    CaseState {
        status: Status::New,
        facts: None,
        challenge: None,
        proven_by: Vec::new(),
        second_factor: None,
        decision: None,
        reviewers_required: 0,
        approvals: Vec::new(),
        authorization: None,
        cooling_off_ends_at: None,
        deadline: None,
        effect: None,
        effects_started: 0,
        executed_changes: Vec::new(),
        executed_at: None,
        refusals: 0,
        proof_failures: Vec::new(),
        notices: Vec::new(),
        events: 0,
        seen_commands: BTreeMap::new(),
        password_set: false,
    }
}

/// A history that breaks the transition table: a bug or tampering, never a user error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {index} ({event}) is not allowed from state {status}")]
pub struct CorruptHistory {
    pub index: usize,
    pub event: &'static str,
    pub status: Status,
}

/// Folds a history into a state, refusing any event the table does not allow. Use this on anything read from
/// storage; `evolve` alone asserts.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> Result<CaseState, CorruptHistory> {
    let mut state = initial_state();
    for (index, event) in events.into_iter().enumerate() {
        let kind = event.body.kind();
        if transition::target(state.status, kind).is_none() {
            return Err(CorruptHistory { index, event: kind.name(), status: state.status });
        }
        state = evolve(state, event);
    }
    Ok(state)
}

/// Applies one event. Panics if the event is not a transition from the current status: `decide` never produces
/// such an event, and `fold` checks histories read from storage first.
pub fn evolve(mut state: CaseState, event: &Event) -> CaseState {
    let kind = event.body.kind();
    let to = transition::target(state.status, kind)
        .unwrap_or_else(|| panic!("evolve: {} is not allowed from {}", kind.name(), state.status));
    apply_body(&mut state, event);
    owe_notices(&mut state, event);
    if to != Status::CoolingOff {
        // A cancel link is pointless once the change ran, was cancelled or expired.
        state.notices.retain(|notice| notice.kind != NoticeKind::CancelLink);
    }
    state.status = to;
    state.events += 1;
    if kind != EventKind::CommandRefused {
        state.seen_commands.entry((event.actor.clone(), event.command_id.clone())).or_insert(kind);
    }
    state
}

/// Adds the notices `event` calls for, as owed by it (its case version is the next one).
fn owe_notices(state: &mut CaseState, event: &Event) {
    let Some(facts) = &state.facts else { return };
    let Some((kind, destinations)) = notices::owed_by(facts, &event.body) else { return };
    let version = state.events as u64 + 1;
    state.notices.extend(destinations.into_iter().map(|destination| OwedNotice {
        event: version,
        kind,
        destination,
        owed_at: event.at,
    }));
}

fn apply_body(state: &mut CaseState, event: &Event) {
    match &event.body {
        EventBody::RecoveryRequested {
            account_id,
            action,
            action_hash,
            snapshot,
            intake_decision,
            deadline,
            signals,
            ..
        } => {
            state.facts = Some(CaseFacts {
                account_id: account_id.clone(),
                action: action.clone(),
                action_hash: action_hash.clone(),
                requester: event.actor.clone(),
                requested_at: event.at,
                snapshot: snapshot.clone(),
                signals: signals.clone(),
                velocity: intake_decision.facts.velocity,
                open_alerts: intake_decision.facts.open_alerts.clone(),
            });
            state.decision = Some(intake_decision.clone());
            state.deadline = Some(*deadline);
        }
        EventBody::ChallengeIssued { challenge_id, destinations, code_hashes, expires_at } => {
            state.challenge = Some(OpenChallenge {
                challenge_id: challenge_id.clone(),
                destinations: destinations.clone(),
                code_hashes: code_hashes.clone(),
                expires_at: *expires_at,
            });
        }
        EventBody::ChallengeWithheld { .. } => {}
        EventBody::ProofRejected { .. } => state.proof_failures.push(event.at),
        EventBody::ProofAccepted { destinations, .. } => {
            state.challenge = None;
            state.proven_by = destinations.clone();
        }
        EventBody::ReviewRequired { decision, deadline, .. } => {
            state.challenge = None;
            let facts = state.facts.as_ref().expect("review follows the opening event");
            state.reviewers_required = facts.reviewers_required(decision);
            state.decision = Some(decision.clone());
            state.approvals.clear();
            state.deadline = Some(*deadline);
        }
        EventBody::ReviewApproved { reviewer, .. } => {
            state.approvals.push(Approval { reviewer: reviewer.clone(), at: event.at })
        }
        EventBody::CoolingOffStarted { ends_at, deadline, authorization, .. } => {
            if let Authorization::Policy { decision } = authorization {
                state.decision = Some(decision.clone());
            }
            state.authorization = Some(authorization.clone());
            state.cooling_off_ends_at = Some(*ends_at);
            state.deadline = Some(*deadline);
        }
        EventBody::CaseDenied { .. } | EventBody::CaseCancelled { .. } | EventBody::CaseExpired => {
            state.challenge = None;
            state.deadline = None;
        }
        EventBody::ExecutionStarted { effect_id } => {
            state.effect = Some(effect_id.clone());
            state.effects_started += 1;
            state.deadline = None;
        }
        EventBody::ExecutionConfirmed { changes, .. } => {
            state.executed_changes = changes.clone();
            state.executed_at = Some(event.at);
        }
        EventBody::ExecutionFailed { deadline, .. } => {
            let facts = state.facts.as_ref().expect("execution follows the opening event");
            let decision = state.decision.as_ref().expect("execution follows a decision");
            state.reviewers_required = facts.reviewers_required(decision);
            state.effect = None;
            state.approvals.clear();
            state.authorization = None;
            state.deadline = Some(*deadline);
        }
        EventBody::RolledBack { .. } => {}
        EventBody::CommandRefused { .. } => state.refusals += 1,
        EventBody::SecondFactorProven { factor } => state.second_factor = Some(*factor),
        EventBody::NoticesDelivered { for_event, destinations, .. } => {
            state.notices.retain(|notice| notice.event != *for_event || !destinations.contains(&notice.destination))
        }
        EventBody::PasswordSet { .. } => state.password_set = true,
    }
}
