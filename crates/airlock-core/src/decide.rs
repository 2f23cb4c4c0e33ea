//! `decide`: given a command, the case's state and the facts the shell gathered, return the events to append or a
//! rejection. Pure: no clock (the time is `Context::now`), no randomness (a fresh challenge is prepared by the
//! shell), no I/O. Control flow lives here; each command's rules are a short function below.

use crate::account::{AccountSnapshot, DestinationKind};
use crate::action::{ActionHash, RecoveryAction};
use crate::actor::Actor;
use crate::command::CommandKind;
use crate::command::{Change, Command, CommandEnvelope, EffectOutcome, SecondFactorCheck};
use crate::event::{
    Authorization, DenialReason, Event, EventBody, EventKind, ProofFailure, ReviewReason, SecondFactor, WithheldReason,
};
use crate::ids::{ActorId, CaseId, ChallengeId, CommandId, DestinationId, EffectId, UnixMs};
use crate::limits;
use crate::policy::{Outcome, Phase, PolicyDecision};
use crate::rejection::Rejection;
use crate::state::{CaseState, Status};
use crate::text::UntrustedText;
use crate::verification::{AccountVerificationFacts, CodeHash, Settings, challengeable_destinations};

/// A code the shell drew and hashed before calling `decide`, used only if the decision issues a challenge. The
/// plain code stays with the shell, which sends it only to the destinations the resulting event names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreshChallenge {
    pub challenge_id: ChallengeId,
    /// A code's hash for every destination of the account: the core picks those of the destinations it challenges,
    /// each of which gets its own code.
    pub code_hashes: Vec<(DestinationId, CodeHash)>,
}

impl FreshChallenge {
    fn hash_for(&self, destination: &DestinationId) -> CodeHash {
        self.code_hashes
            .iter()
            .find(|(id, _)| id == destination)
            .map(|(_, hash)| hash.clone())
            .expect("the shell draws a code for every destination of the snapshot")
    }
}

/// Everything outside the case that a decision may depend on, gathered by the shell.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    pub case_id: &'a CaseId,
    pub now: UnixMs,
    pub settings: &'a Settings,
    /// Whether the kill switch is on.
    pub halted: bool,
    /// The directory's snapshot of the account; required for `RequestRecovery`.
    pub account: Option<&'a AccountSnapshot>,
    pub account_facts: AccountVerificationFacts,
    /// The policy's decision for the phase this command reaches: intake for `RequestRecovery`, authorization for
    /// `SubmitProof`.
    pub policy: Option<&'a PolicyDecision>,
    pub fresh_challenge: Option<&'a FreshChallenge>,
}

pub fn decide(envelope: &CommandEnvelope, state: &CaseState, context: &Context) -> Result<Vec<Event>, Rejection> {
    // The role is checked before idempotency, so that reusing a known command id cannot turn a probe by the wrong
    // role into a silent no-op: the refusal is always returned, and recorded.
    let kind = envelope.command.kind();
    if !kind.allowed_roles().contains(&envelope.actor.role) {
        return Err(Rejection::RoleNotAllowed { role: envelope.actor.role, command: kind });
    }
    if state.has_seen(&envelope.actor, &envelope.command_id) {
        // A command id means one command (issue 15, item 13): the same id with another account, action or signals
        // is refused, never answered as if it were the request that opened the case. (The summary may be reworded
        // on a retry.)
        if let (Command::RequestRecovery { account_id, action, signals, .. }, Some(facts)) =
            (&envelope.command, &state.facts)
            && (facts.account_id != *account_id || facts.action != *action || facts.signals != *signals)
        {
            return Err(Rejection::CommandIdReused);
        }
        // An approval under the same id naming another action is not a retry of the approval that was counted.
        if let (Command::ApproveReview { action_hash, .. }, Some(facts)) = (&envelope.command, &state.facts)
            && *action_hash != facts.action_hash
        {
            return Err(Rejection::CommandIdReused);
        }
        // Another kind of command under the same id (a denial under an approval's id, say) is not a retry either.
        if let (Some(first), Some(expected)) =
            (state.seen_as(&envelope.actor, &envelope.command_id), first_event_kinds(kind))
            && !expected.contains(&first)
        {
            return Err(Rejection::CommandIdReused);
        }
        return Ok(Vec::new());
    }
    let bodies = match &envelope.command {
        Command::RequestRecovery { .. } => request_recovery(envelope, state, context)?,
        Command::SubmitProof { proof, second_factor } => submit_proof(proof, *second_factor, state, context)?,
        Command::ApproveReview { action_hash, reason } => {
            approve_review(envelope, action_hash, reason, state, context)?
        }
        Command::DenyReview { reason } => deny_review(envelope, reason, state)?,
        Command::Cancel { reason } => cancel(reason, state)?,
        Command::Tick => tick(state, context),
        Command::ConfirmExecution { effect_id, outcome } => confirm_execution(effect_id, outcome, state, context)?,
        Command::RollBack { reason } => roll_back(reason, state, context)?,
        Command::ConfirmNotices { for_event, destinations } => confirm_notices(*for_event, destinations, state),
        Command::SetPassword { destination, changes } => {
            set_password_allowed(state, destination, (context.now, context.settings, context.halted))?;
            vec![EventBody::PasswordSet { destination: destination.clone(), changes: changes.clone() }]
        }
    };
    assert!(state.events + bodies.len() <= limits::EVENTS_PER_CASE_MAX, "a case outgrew EVENTS_PER_CASE_MAX");
    Ok(bodies
        .into_iter()
        .map(|body| Event {
            at: context.now,
            actor: envelope.actor.clone(),
            command_id: envelope.command_id.clone(),
            body,
        })
        .collect())
}

/// The event that records a refused command on its case, if one should be recorded: there must be a case, and the
/// per-case cap on recorded refusals must not be reached.
pub fn refusal_event(
    envelope: &CommandEnvelope,
    state: &CaseState,
    rejection: &Rejection,
    now: UnixMs,
) -> Option<Event> {
    refusal_record(&envelope.actor, &envelope.command_id, envelope.command.kind(), state, rejection, now)
}

/// `refusal_event` for a command that never became a `Command` (it was refused at the edge, malformed).
pub fn refusal_record(
    actor: &Actor,
    command_id: &CommandId,
    command: CommandKind,
    state: &CaseState,
    rejection: &Rejection,
    now: UnixMs,
) -> Option<Event> {
    let recordable = state.status != Status::New && state.refusals < limits::REFUSALS_RECORDED_PER_CASE_MAX;
    recordable.then(|| Event {
        at: now,
        actor: actor.clone(),
        command_id: command_id.clone(),
        body: EventBody::CommandRefused { command, rejection: rejection.clone() },
    })
}

fn expect_status(state: &CaseState, command: CommandKind) -> Result<(), Rejection> {
    if !command.accepted_in().contains(&state.status) {
        return Err(Rejection::WrongState { status: state.status, command });
    }
    Ok(())
}

fn request_recovery(
    envelope: &CommandEnvelope,
    state: &CaseState,
    context: &Context,
) -> Result<Vec<EventBody>, Rejection> {
    let Command::RequestRecovery { account_id, action, summary, signals } = &envelope.command else {
        unreachable!("request_recovery is called only for RequestRecovery");
    };
    if state.status != Status::New {
        return Err(Rejection::CaseExists);
    }
    let snapshot = context.account.expect("the shell passes the account snapshot with RequestRecovery");
    let decision = context.policy.expect("the shell passes the intake decision with RequestRecovery");
    assert_eq!(&snapshot.account_id, account_id, "the snapshot is of the requested account");
    assert_eq!(decision.facts.phase, Phase::Intake, "RequestRecovery is decided by the intake phase");

    let mut bodies = vec![EventBody::RecoveryRequested {
        account_id: account_id.clone(),
        action: action.clone(),
        action_hash: ActionHash::of(context.case_id, account_id, action),
        summary: summary.clone(),
        signals: signals.clone(),
        snapshot: snapshot.clone(),
        intake_decision: decision.clone(),
        deadline: context.now.plus(limits::REQUESTED_TTL_MS),
    }];
    let eligible = challengeable_destinations(snapshot, action, context.now, context.settings);
    let next = match decision.outcome {
        Outcome::Deny => EventBody::CaseDenied { reason: DenialReason::Policy { rules: decision.rules.clone() } },
        Outcome::Review | Outcome::Auto if !snapshot.known => {
            EventBody::ChallengeWithheld { reason: WithheldReason::UnknownAccount }
        }
        Outcome::Review => review_required(decision, ReviewReason::PolicyReview, context.now),
        Outcome::Auto if eligible.is_empty() => review_required(decision, ReviewReason::NoEligibleFactor, context.now),
        // Limits the attacker can trip send the case to people; they never leave the owner waiting for nothing
        // (SPEC principle 13, ADR 14).
        Outcome::Auto if context.account_facts.failed_attempts_in_window >= limits::PROOF_ATTEMPTS_PER_ACCOUNT_MAX => {
            review_required(decision, ReviewReason::GuessingCapReached, context.now)
        }
        Outcome::Auto if context.account_facts.outstanding_challenge_elsewhere => {
            review_required(decision, ReviewReason::AnotherCodeOutstanding, context.now)
        }
        Outcome::Auto => {
            let fresh = context.fresh_challenge.expect("the shell prepares a challenge with RequestRecovery");
            EventBody::ChallengeIssued {
                challenge_id: fresh.challenge_id.clone(),
                destinations: eligible.iter().map(|destination| destination.id.clone()).collect(),
                code_hashes: eligible.iter().map(|destination| fresh.hash_for(&destination.id)).collect(),
                expires_at: context.now.plus(context.settings.code_ttl_ms),
            }
        }
    };
    bodies.push(next);
    Ok(bodies)
}

/// The kinds of event a command of `kind` can record first, to tell a retry from another command under the same id;
/// `None` for airlock's own commands, whose ids airlock derives.
fn first_event_kinds(kind: CommandKind) -> Option<&'static [EventKind]> {
    match kind {
        CommandKind::RequestRecovery => Some(&[EventKind::RecoveryRequested]),
        CommandKind::SubmitProof => Some(&[
            EventKind::SecondFactorProven,
            EventKind::ProofAccepted,
            EventKind::ProofRejected,
            EventKind::ReviewRequired,
            EventKind::CaseDenied,
        ]),
        CommandKind::ApproveReview => Some(&[EventKind::ReviewApproved, EventKind::CoolingOffStarted]),
        CommandKind::DenyReview => Some(&[EventKind::CaseDenied]),
        CommandKind::Cancel => Some(&[EventKind::CaseCancelled]),
        CommandKind::RollBack => Some(&[EventKind::RolledBack]),
        CommandKind::SetPassword => Some(&[EventKind::PasswordSet]),
        // Not case commands: the control stream tells its own (`control::decide_control`).
        CommandKind::Tick
        | CommandKind::ConfirmExecution
        | CommandKind::ConfirmNotices
        | CommandKind::Halt
        | CommandKind::Resume
        | CommandKind::AttestBaseline
        | CommandKind::AcknowledgeAlert => None,
    }
}

/// A case whose time limit has passed takes no more proofs or approvals; the timer will expire it. Without this, the
/// outcome would depend on how late the timer happened to fire.
fn refuse_past_deadline(state: &CaseState, context: &Context) -> Result<(), Rejection> {
    match state.deadline {
        Some(deadline) if context.now >= deadline => Err(Rejection::DeadlinePassed),
        Some(_) | None => Ok(()),
    }
}

fn review_required(decision: &PolicyDecision, reason: ReviewReason, now: UnixMs) -> EventBody {
    EventBody::ReviewRequired { decision: decision.clone(), reason, deadline: now.plus(limits::IN_REVIEW_TTL_MS) }
}

fn submit_proof(
    proof: &CodeHash,
    second_factor: SecondFactorCheck,
    state: &CaseState,
    context: &Context,
) -> Result<Vec<EventBody>, Rejection> {
    expect_status(state, CommandKind::SubmitProof)?;
    let challenge = state.challenge.as_ref().ok_or(Rejection::NoOutstandingChallenge)?;
    refuse_past_deadline(state, context)?;
    if context.now >= challenge.expires_at {
        return Err(Rejection::ChallengeExpired);
    }
    let failed_attempts = context.account_facts.failed_attempts_in_window;
    if failed_attempts >= limits::PROOF_ATTEMPTS_PER_ACCOUNT_MAX {
        // The guessing cap is reached: no code is compared on this account any more, and people decide (ADR 14).
        let decision = context.policy.expect("the shell passes the authorization decision with SubmitProof");
        return Ok(vec![review_required(decision, ReviewReason::GuessingCapReached, context.now)]);
    }
    let case_failed = state.proof_failures.len() as u32;
    // A wrong authenticator code fails the whole proof and counts against the account like a wrong code, so the
    // authenticator cannot be guessed at more cheaply than the code. A "valid" one counts only for an account whose
    // recorded snapshot has an authenticator: the core does not take the shell's word for a factor that did not exist.
    // A sign-in at the company's identity provider counts for an account that has an authenticator or may have one
    // the directory cannot show (SCIM): the provider asked for whatever second factor the account has.
    let snapshot = state.facts.as_ref().map(|facts| &facts.snapshot);
    let has_totp = snapshot.is_some_and(|snapshot| snapshot.totp_enrolled_since.is_some());
    let proven_factor = match second_factor {
        SecondFactorCheck::Valid if has_totp => Some(SecondFactor::Totp),
        SecondFactorCheck::SignedIn { auth_time }
            if snapshot.is_some_and(crate::account::AccountSnapshot::may_have_authenticator) =>
        {
            Some(SecondFactor::SignIn { auth_time })
        }
        SecondFactorCheck::Valid
        | SecondFactorCheck::SignedIn { .. }
        | SecondFactorCheck::SignedInAsAnother
        | SecondFactorCheck::NotGiven
        | SecondFactorCheck::Invalid
        | SecondFactorCheck::AlreadyUsed => None,
    };
    let second_factor_proven = proven_factor.is_some();
    let proven = challenge.proven_destinations(proof);
    if second_factor == SecondFactorCheck::AlreadyUsed && !proven.is_empty() {
        return Err(Rejection::SecondFactorAlreadyUsed);
    }
    let wrong = if proven.is_empty() {
        Some(ProofFailure::WrongCode)
    } else if second_factor == SecondFactorCheck::Invalid {
        Some(ProofFailure::WrongSecondFactor)
    } else if second_factor == SecondFactorCheck::SignedInAsAnother {
        Some(ProofFailure::SignedInAsAnother)
    } else {
        None
    };
    if let Some(failed) = wrong {
        let account_left = limits::PROOF_ATTEMPTS_PER_ACCOUNT_MAX - failed_attempts - 1;
        let case_left = limits::PROOF_ATTEMPTS_PER_CASE_MAX.saturating_sub(case_failed + 1);
        let attempts_left = account_left.min(case_left);
        let mut bodies =
            vec![EventBody::ProofRejected { challenge_id: challenge.challenge_id.clone(), attempts_left, failed }];
        if attempts_left == 0 {
            bodies.push(EventBody::CaseDenied { reason: DenialReason::AttemptsExhausted });
        }
        return Ok(bodies);
    }
    let decision = context.policy.expect("the shell passes the authorization decision with SubmitProof");
    assert_eq!(decision.facts.phase, Phase::Authorization, "a proof is followed by the authorization phase");
    let facts = state.facts.as_ref().expect("a requested case has facts");
    // A phone's code alone, while an email of the account got one too, is what a SIM swap the carrier did not report
    // looks like: people decide, unless the authenticator was proven with it (issue 16).
    let kind_of = |id: &DestinationId| facts.snapshot.destination(id).map(|destination| destination.kind);
    // A sign-in at the identity provider does not lift it: the provider may have let the sign-in through with a code
    // sent to that same phone.
    let phone_only = proven_factor != Some(SecondFactor::Totp)
        && proven.iter().all(|id| kind_of(id) == Some(DestinationKind::Phone))
        && challenge.destinations.iter().any(|id| kind_of(id) == Some(DestinationKind::Email));
    let accepted = EventBody::ProofAccepted { challenge_id: challenge.challenge_id.clone(), destinations: proven };
    // Proof is capped at what was shown: a change to the account's factors needs its strongest factor, the
    // authenticator where it has one; without it, people decide (THREATS 9).
    // A directory that cannot show an authenticator (SCIM) cannot rule one out either: the same holds there.
    let weaker_proof =
        facts.action.changes_factors() && facts.snapshot.may_have_authenticator() && !second_factor_proven;
    // High-value accounts are never automated, whatever the policy returned (SPEC principle 6).
    let (outcome, reason) = match decision.outcome {
        Outcome::Auto if weaker_proof => (Outcome::Review, ReviewReason::WeakerProof),
        Outcome::Auto if phone_only => (Outcome::Review, ReviewReason::PhoneOnlyProof),
        Outcome::Auto if facts.snapshot.is_high_value() => (Outcome::Review, ReviewReason::PolicyReview),
        Outcome::Auto | Outcome::Review | Outcome::Deny => (decision.outcome, ReviewReason::PolicyReview),
    };
    let next = match outcome {
        Outcome::Auto => cooling_off_started(
            state,
            context.now,
            facts.cooling_off_ms(decision),
            Authorization::Policy { decision: decision.clone() },
        ),
        Outcome::Review => review_required(decision, reason, context.now),
        Outcome::Deny => EventBody::CaseDenied { reason: DenialReason::Policy { rules: decision.rules.clone() } },
    };
    let mut bodies = Vec::with_capacity(3);
    if let Some(factor) = proven_factor {
        bodies.push(EventBody::SecondFactorProven { factor });
    }
    bodies.extend([accepted, next]);
    Ok(bodies)
}

fn cooling_off_started(state: &CaseState, now: UnixMs, cooling_off_ms: u64, authorization: Authorization) -> EventBody {
    let facts = state.facts.as_ref().expect("a case past intake has facts");
    let ends_at = now.plus(cooling_off_ms);
    EventBody::CoolingOffStarted {
        ends_at,
        deadline: ends_at.plus(limits::COOLING_OFF_GRACE_MS),
        notify: facts
            .snapshot
            .pre_existing(facts.requested_at)
            .iter()
            .map(|destination| destination.id.clone())
            .collect(),
        authorization,
    }
}

fn approve_review(
    envelope: &CommandEnvelope,
    action_hash: &ActionHash,
    reason: &UntrustedText,
    state: &CaseState,
    context: &Context,
) -> Result<Vec<EventBody>, Rejection> {
    expect_status(state, CommandKind::ApproveReview)?;
    refuse_past_deadline(state, context)?;
    let facts = state.facts.as_ref().expect("a case in review has facts");
    let reviewer = &envelope.actor.id;
    if action_hash != &facts.action_hash {
        return Err(Rejection::ActionHashMismatch);
    }
    if reviewer == &facts.requester.id {
        return Err(Rejection::SelfApproval);
    }
    if reviewer.as_str() == facts.account_id.as_str() {
        return Err(Rejection::OwnAccountApproval);
    }
    // A reset sends the owner where to set the new password, and the notices of the change go to the destinations
    // that existed before the request: with none, the change reaches nobody but whoever asked (issue 17).
    if facts.action == RecoveryAction::ResetPassword && facts.snapshot.pre_existing(facts.requested_at).is_empty() {
        return Err(Rejection::NothingDeliverable);
    }
    let live: Vec<ActorId> = state.live_approvals(context.now).map(|approval| approval.reviewer.clone()).collect();
    if live.contains(reviewer) {
        return Err(Rejection::DuplicateApproval);
    }
    let approvals = live.len() as u8 + 1;
    let required = state.reviewers_required;
    let mut bodies = vec![EventBody::ReviewApproved {
        reviewer: reviewer.clone(),
        action_hash: action_hash.clone(),
        approvals,
        required,
        reason: reason.clone(),
    }];
    if approvals >= required {
        let decision = state.decision.as_ref().expect("a case in review has a decision");
        let mut reviewers = live;
        reviewers.push(reviewer.clone());
        bodies.push(cooling_off_started(
            state,
            context.now,
            facts.cooling_off_ms(decision),
            Authorization::Quorum { reviewers },
        ));
    }
    Ok(bodies)
}

fn deny_review(
    envelope: &CommandEnvelope,
    reason: &UntrustedText,
    state: &CaseState,
) -> Result<Vec<EventBody>, Rejection> {
    expect_status(state, CommandKind::DenyReview)?;
    Ok(vec![EventBody::CaseDenied {
        reason: DenialReason::Reviewer { reviewer: envelope.actor.id.clone(), reason: reason.clone() },
    }])
}

fn cancel(reason: &UntrustedText, state: &CaseState) -> Result<Vec<EventBody>, Rejection> {
    expect_status(state, CommandKind::Cancel)?;
    Ok(vec![EventBody::CaseCancelled { reason: reason.clone() }])
}

/// The timer. A tick for a case that is not waiting on a time does nothing: timers may fire late, twice, or for a
/// case that has moved on.
fn tick(state: &CaseState, context: &Context) -> Vec<EventBody> {
    let expired = state.deadline.is_some_and(|deadline| context.now >= deadline);
    match state.status {
        Status::Requested | Status::InReview if expired => vec![EventBody::CaseExpired],
        Status::CoolingOff if expired => vec![EventBody::CaseExpired],
        Status::CoolingOff => {
            let ends_at = state.cooling_off_ends_at.expect("a cooling-off case has an end");
            if context.now >= ends_at && !context.halted {
                vec![EventBody::ExecutionStarted { effect_id: effect_id(context.case_id, state.effects_started + 1) }]
            } else {
                Vec::new()
            }
        }
        Status::New
        | Status::Requested
        | Status::Verified
        | Status::InReview
        | Status::Executing
        | Status::Executed
        | Status::RolledBack
        | Status::Denied
        | Status::Cancelled
        | Status::Expired => Vec::new(),
    }
}

/// The idempotency id of the `attempt`-th execution of a case: derived, not drawn, so a replay derives the same.
pub fn effect_id(case_id: &CaseId, attempt: u32) -> EffectId {
    EffectId::new(format!("{case_id}/execute/{attempt}"))
}

/// Where an applied reset sends its set-password link: the destinations that proved the request, or, for a case
/// people approved without a proof, the destinations a code could have gone to (old enough before the request, not
/// the one it named). Never a destination added shortly before the request, one it named, or one added since: the
/// link finishes the recovery, so it goes only where a code may.
pub fn set_password_destinations(state: &CaseState, settings: &Settings) -> Vec<DestinationId> {
    let Some(facts) = &state.facts else { return Vec::new() };
    if facts.action != RecoveryAction::ResetPassword {
        return Vec::new();
    }
    let eligible = challengeable_destinations(&facts.snapshot, &facts.action, facts.requested_at, settings);
    let proven: Vec<DestinationId> = eligible
        .iter()
        .filter(|destination| state.proven_by.contains(&destination.id))
        .map(|destination| destination.id.clone())
        .collect();
    if proven.is_empty() { eligible.iter().map(|destination| destination.id.clone()).collect() } else { proven }
}

/// When an applied reset's set-password link stops working.
pub fn set_password_link_until(state: &CaseState) -> Option<UnixMs> {
    state.executed_at.map(|at| at.plus(limits::SET_PASSWORD_LINK_TTL_MS))
}

/// Whether the set-password link sent to `destination` may set a password at `now`: the case's reset was applied, the
/// link was sent there, it is in time, and it was not used. The shell asks before writing to the directory, and
/// `decide` asks again when the use is recorded (a concurrent use loses there).
pub fn set_password_allowed(
    state: &CaseState,
    destination: &DestinationId,
    (now, settings, halted): (UnixMs, &Settings, bool),
) -> Result<(), Rejection> {
    expect_status(state, CommandKind::SetPassword)?;
    // The kill switch stops the owners' links too: in an incident (a mail provider taken over, say) nothing changes
    // an account until an operator resumes.
    if halted {
        return Err(Rejection::Halted);
    }
    if !set_password_destinations(state, settings).contains(destination) {
        return Err(Rejection::InvalidValue {
            field: "destination".into(),
            expected: "a destination this reset sent its set-password link to".into(),
        });
    }
    if state.password_set {
        return Err(Rejection::PasswordAlreadySet);
    }
    match set_password_link_until(state) {
        Some(until) if now < until => Ok(()),
        _ => Err(Rejection::DeadlinePassed),
    }
}

/// The idempotency id of a case's rollback.
pub fn rollback_effect_id(case_id: &CaseId) -> EffectId {
    EffectId::new(format!("{case_id}/rollback"))
}

fn confirm_execution(
    effect_id: &crate::ids::EffectId,
    outcome: &EffectOutcome,
    state: &CaseState,
    context: &Context,
) -> Result<Vec<EventBody>, Rejection> {
    expect_status(state, CommandKind::ConfirmExecution)?;
    if state.effect.as_ref() != Some(effect_id) {
        return Err(Rejection::EffectMismatch);
    }
    Ok(match outcome {
        EffectOutcome::Applied { changes } => {
            vec![EventBody::ExecutionConfirmed { effect_id: effect_id.clone(), changes: changes.clone() }]
        }
        EffectOutcome::Failed { reason } => {
            let mut bodies = vec![EventBody::ExecutionFailed {
                effect_id: effect_id.clone(),
                reason: reason.clone(),
                deadline: context.now.plus(limits::IN_REVIEW_TTL_MS),
            }];
            // Each failure sends the case back to review; after the last allowed attempt it is denied instead, so
            // a change that keeps failing cannot loop (and grow its history) forever.
            if state.effects_started >= limits::EXECUTION_ATTEMPTS_MAX {
                bodies.push(EventBody::CaseDenied { reason: DenialReason::ExecutionAttemptsExhausted });
            }
            bodies
        }
    })
}

fn roll_back(reason: &UntrustedText, state: &CaseState, context: &Context) -> Result<Vec<EventBody>, Rejection> {
    expect_status(state, CommandKind::RollBack)?;
    Ok(vec![EventBody::RolledBack {
        effect_id: rollback_effect_id(context.case_id),
        reason: reason.clone(),
        reversal: reversal_of(&state.executed_changes),
    }])
}

/// The changes that undo `changes`, newest first.
/// Records the delivery of notices the case still owes; notices it does not owe (delivered already, or a cancel link
/// whose case has moved on) are left out, and nothing is recorded if none is left.
fn confirm_notices(for_event: u64, destinations: &[DestinationId], state: &CaseState) -> Vec<EventBody> {
    let delivered: Vec<DestinationId> = state
        .notices
        .iter()
        .filter(|notice| notice.event == for_event && destinations.contains(&notice.destination))
        .map(|notice| notice.destination.clone())
        .collect();
    if delivered.is_empty() {
        return Vec::new();
    }
    let outstanding = (state.notices.len() - delivered.len()) as u32;
    vec![EventBody::NoticesDelivered { for_event, destinations: delivered, outstanding }]
}

pub fn reversal_of(changes: &[Change]) -> Vec<Change> {
    // A revoked session cannot come back: a rollback restores what it can and says no more (issue 15, item 11).
    // (`sessions` is the single summary record of executions before per-session records.)
    changes
        .iter()
        .rev()
        .filter(|change| change.record != "sessions" && !change.record.starts_with("session:"))
        .map(|change| Change { record: change.record.clone(), old: change.new.clone(), new: change.old.clone() })
        .collect()
}
