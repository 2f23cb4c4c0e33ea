//! Old versions of case events, converted to today's `EventBody`. Each old shape is kept here exactly as it was
//! stored, as private structs: postcard writes fields in order with no names, so an old payload decodes only as its
//! own shape. Postcard writes an enum variant's position before its fields; variants are only ever added at the end
//! (the golden fixtures check it), so a kind's position never changes.

use super::envelope::{DecodeError, Envelope};
use crate::core::account::{AccountSnapshot, Destination, RiskClass};
use crate::core::action::{ActionHash, RecoveryAction};
use crate::core::event::{Authorization, EventBody, EventKind, ProofFailure, ReviewReason};
use crate::core::ids::{AccountId, ActorId, ChallengeId, DestinationId, UnixMs};
use crate::core::policy::{Outcome, Phase, PolicyDecision, PolicyFacts, Velocity};
use crate::core::signals::Signals;
use crate::core::text::UntrustedText;
use crate::core::verification::CodeHash;
use serde::Deserialize;

/// `ProofRejected` v1: before `failed` (ADR 11).
#[derive(Deserialize)]
struct ProofRejectedV1 {
    challenge_id: ChallengeId,
    attempts_left: u32,
}

/// The velocity every decision recorded before the registrable domain of a named address was counted (issue 15, item
/// 10): those decisions saw no domain count, so they upcast with 0.
#[derive(Deserialize)]
struct VelocityV1 {
    account_requests_24h: u32,
    source_network_requests_24h: u32,
    requester_requests_24h: u32,
    destination_requests_24h: u32,
}

#[derive(Deserialize)]
struct PolicyFactsV1 {
    phase: Phase,
    action: String,
    adds_destination: bool,
    account_known: bool,
    high_value: bool,
    eligible_destinations: u32,
    has_totp: bool,
    credential_changed_within_7d: bool,
    risk_flags: Vec<String>,
    velocity: VelocityV1,
    signal_friction: u32,
    halted: bool,
}

#[derive(Deserialize)]
struct PolicyDecisionV1 {
    policy_version: String,
    outcome: Outcome,
    cooling_off_ms: u64,
    reviewers_required: u8,
    rules: Vec<String>,
    facts: PolicyFactsV1,
}

impl From<PolicyDecisionV1> for PolicyDecision {
    fn from(old: PolicyDecisionV1) -> PolicyDecision {
        let facts = old.facts;
        let velocity = Velocity {
            account_requests_24h: facts.velocity.account_requests_24h,
            source_network_requests_24h: facts.velocity.source_network_requests_24h,
            requester_requests_24h: facts.velocity.requester_requests_24h,
            destination_requests_24h: facts.velocity.destination_requests_24h,
            destination_domain_requests_24h: 0,
        };
        PolicyDecision {
            policy_version: old.policy_version,
            outcome: old.outcome,
            cooling_off_ms: old.cooling_off_ms,
            reviewers_required: old.reviewers_required,
            rules: old.rules,
            facts: PolicyFacts {
                phase: facts.phase,
                action: facts.action,
                adds_destination: facts.adds_destination,
                account_known: facts.account_known,
                high_value: facts.high_value,
                eligible_destinations: facts.eligible_destinations,
                has_totp: facts.has_totp,
                credential_changed_within_7d: facts.credential_changed_within_7d,
                risk_flags: facts.risk_flags,
                velocity,
                signal_friction: facts.signal_friction,
                halted: facts.halted,
                open_alerts: Vec::new(),
            },
        }
    }
}

/// The facts every decision recorded before campaign alerts (issue 20) had: those decisions saw no open alert.
#[derive(Deserialize)]
struct PolicyFactsV2 {
    phase: Phase,
    action: String,
    adds_destination: bool,
    account_known: bool,
    high_value: bool,
    eligible_destinations: u32,
    has_totp: bool,
    credential_changed_within_7d: bool,
    risk_flags: Vec<String>,
    velocity: Velocity,
    signal_friction: u32,
    halted: bool,
}

#[derive(Deserialize)]
struct PolicyDecisionV2 {
    policy_version: String,
    outcome: Outcome,
    cooling_off_ms: u64,
    reviewers_required: u8,
    rules: Vec<String>,
    facts: PolicyFactsV2,
}

impl From<PolicyDecisionV2> for PolicyDecision {
    fn from(old: PolicyDecisionV2) -> PolicyDecision {
        let facts = old.facts;
        PolicyDecision {
            policy_version: old.policy_version,
            outcome: old.outcome,
            cooling_off_ms: old.cooling_off_ms,
            reviewers_required: old.reviewers_required,
            rules: old.rules,
            facts: PolicyFacts {
                phase: facts.phase,
                action: facts.action,
                adds_destination: facts.adds_destination,
                account_known: facts.account_known,
                high_value: facts.high_value,
                eligible_destinations: facts.eligible_destinations,
                has_totp: facts.has_totp,
                credential_changed_within_7d: facts.credential_changed_within_7d,
                risk_flags: facts.risk_flags,
                velocity: facts.velocity,
                signal_friction: facts.signal_friction,
                halted: facts.halted,
                open_alerts: Vec::new(),
            },
        }
    }
}

/// The account snapshot of `RecoveryRequested` v1 and v2: before `authenticator_unknown` (issue 18, item 6). Every
/// directory then could say whether an account had an authenticator.
#[derive(Deserialize)]
struct AccountSnapshotV2 {
    account_id: AccountId,
    known: bool,
    risk_class: RiskClass,
    destinations: Vec<Destination>,
    totp_enrolled_since: Option<UnixMs>,
    last_credential_change: Option<UnixMs>,
    risk_flags: Vec<String>,
}

impl From<AccountSnapshotV2> for AccountSnapshot {
    fn from(old: AccountSnapshotV2) -> AccountSnapshot {
        AccountSnapshot {
            account_id: old.account_id,
            known: old.known,
            risk_class: old.risk_class,
            destinations: old.destinations,
            totp_enrolled_since: old.totp_enrolled_since,
            authenticator_unknown: false,
            last_credential_change: old.last_credential_change,
            risk_flags: old.risk_flags,
        }
    }
}

/// `RecoveryRequested` before version 4, with the decision and snapshot as they were stored: `PolicyDecisionV1` in
/// version 1 (before the registrable domain was counted), `PolicyDecisionV2` in versions 2 and 3 (before campaign
/// alerts); `AccountSnapshotV2` in versions 1 and 2 (before `authenticator_unknown`), today's in version 3.
#[derive(Deserialize)]
struct RecoveryRequestedOld<Decision, Snapshot> {
    account_id: AccountId,
    action: RecoveryAction,
    action_hash: ActionHash,
    summary: UntrustedText,
    signals: Signals,
    snapshot: Snapshot,
    intake_decision: Decision,
    deadline: UnixMs,
}

/// `ReviewRequired` before version 3: `PolicyDecisionV1` in version 1, `PolicyDecisionV2` in version 2.
#[derive(Deserialize)]
struct ReviewRequiredOld<Decision> {
    decision: Decision,
    reason: ReviewReason,
    deadline: UnixMs,
}

#[derive(Deserialize)]
enum AuthorizationOld<Decision> {
    Policy { decision: Decision },
    Quorum { reviewers: Vec<ActorId> },
}

/// `CoolingOffStarted` before version 3, its decision as `ReviewRequiredOld`'s.
#[derive(Deserialize)]
struct CoolingOffStartedOld<Decision> {
    ends_at: UnixMs,
    deadline: UnixMs,
    notify: Vec<DestinationId>,
    authorization: AuthorizationOld<Decision>,
}

/// `ChallengeIssued` v1: one code for every destination (issue 16 gave each its own).
#[derive(Deserialize)]
struct ChallengeIssuedV1 {
    challenge_id: ChallengeId,
    destinations: Vec<DestinationId>,
    code_hash: CodeHash,
    expires_at: UnixMs,
}

/// The positions of the upcast kinds among `EventBody`'s variants.
const RECOVERY_REQUESTED_VARIANT: u32 = 0;
const CHALLENGE_ISSUED_VARIANT: u32 = 1;
const PROOF_REJECTED_VARIANT: u32 = 3;
const REVIEW_REQUIRED_VARIANT: u32 = 5;
const COOLING_OFF_STARTED_VARIANT: u32 = 7;

/// An old version of `kind`, as today's `EventBody`; a version this airlock never wrote is refused.
pub(super) fn upcast(kind: EventKind, envelope: &Envelope) -> Result<EventBody, DecodeError> {
    match (kind, envelope.version) {
        (EventKind::ProofRejected, 1) => {
            let old: ProofRejectedV1 = old_payload(envelope, PROOF_REJECTED_VARIANT)?;
            Ok(EventBody::ProofRejected {
                challenge_id: old.challenge_id,
                attempts_left: old.attempts_left,
                failed: ProofFailure::NotRecorded,
            })
        }
        (EventKind::ChallengeIssued, 1) => {
            // The one code went to every destination: each destination's code is that code, so a proof with it is
            // from all of them, as version 1 recorded it.
            let old: ChallengeIssuedV1 = old_payload(envelope, CHALLENGE_ISSUED_VARIANT)?;
            Ok(EventBody::ChallengeIssued {
                code_hashes: vec![old.code_hash; old.destinations.len()],
                challenge_id: old.challenge_id,
                destinations: old.destinations,
                expires_at: old.expires_at,
            })
        }
        (EventKind::RecoveryRequested, 1) => {
            let old: RecoveryRequestedOld<PolicyDecisionV1, AccountSnapshotV2> =
                old_payload(envelope, RECOVERY_REQUESTED_VARIANT)?;
            Ok(recovery_requested(old))
        }
        (EventKind::RecoveryRequested, 2) => {
            let old: RecoveryRequestedOld<PolicyDecisionV2, AccountSnapshotV2> =
                old_payload(envelope, RECOVERY_REQUESTED_VARIANT)?;
            Ok(recovery_requested(old))
        }
        (EventKind::RecoveryRequested, 3) => {
            let old: RecoveryRequestedOld<PolicyDecisionV2, AccountSnapshot> =
                old_payload(envelope, RECOVERY_REQUESTED_VARIANT)?;
            Ok(recovery_requested(old))
        }
        (EventKind::ReviewRequired, 1) => {
            Ok(review_required(old_payload::<ReviewRequiredOld<PolicyDecisionV1>>(envelope, REVIEW_REQUIRED_VARIANT)?))
        }
        (EventKind::ReviewRequired, 2) => {
            Ok(review_required(old_payload::<ReviewRequiredOld<PolicyDecisionV2>>(envelope, REVIEW_REQUIRED_VARIANT)?))
        }
        (EventKind::CoolingOffStarted, 1) => Ok(cooling_off_started(old_payload::<
            CoolingOffStartedOld<PolicyDecisionV1>,
        >(envelope, COOLING_OFF_STARTED_VARIANT)?)),
        (EventKind::CoolingOffStarted, 2) => Ok(cooling_off_started(old_payload::<
            CoolingOffStartedOld<PolicyDecisionV2>,
        >(envelope, COOLING_OFF_STARTED_VARIANT)?)),
        _ => Err(DecodeError::UnknownType { event_type: envelope.event_type.clone(), version: envelope.version }),
    }
}

/// Today's `RecoveryRequested` of an old one.
fn recovery_requested<Decision: Into<PolicyDecision>, Snapshot: Into<AccountSnapshot>>(
    old: RecoveryRequestedOld<Decision, Snapshot>,
) -> EventBody {
    EventBody::RecoveryRequested {
        account_id: old.account_id,
        action: old.action,
        action_hash: old.action_hash,
        summary: old.summary,
        signals: old.signals,
        snapshot: old.snapshot.into(),
        intake_decision: old.intake_decision.into(),
        deadline: old.deadline,
    }
}

fn review_required<Decision: Into<PolicyDecision>>(old: ReviewRequiredOld<Decision>) -> EventBody {
    EventBody::ReviewRequired { decision: old.decision.into(), reason: old.reason, deadline: old.deadline }
}

fn cooling_off_started<Decision: Into<PolicyDecision>>(old: CoolingOffStartedOld<Decision>) -> EventBody {
    let authorization = match old.authorization {
        AuthorizationOld::Policy { decision } => Authorization::Policy { decision: decision.into() },
        AuthorizationOld::Quorum { reviewers } => Authorization::Quorum { reviewers },
    };
    EventBody::CoolingOffStarted { ends_at: old.ends_at, deadline: old.deadline, notify: old.notify, authorization }
}

/// An old payload: its variant position, which must be `variant`, then its fields, all of them.
fn old_payload<T: for<'de> Deserialize<'de>>(envelope: &Envelope, variant: u32) -> Result<T, DecodeError> {
    let payload = |reason: String| DecodeError::Payload {
        event_type: envelope.event_type.clone(),
        version: envelope.version,
        reason,
    };
    let ((found, old), rest): ((u32, T), &[u8]) =
        postcard::take_from_bytes(&envelope.payload).map_err(|error| payload(error.to_string()))?;
    if found != variant {
        return Err(payload(format!("variant {found} is not {}", envelope.event_type)));
    }
    if !rest.is_empty() {
        return Err(payload(format!("{} bytes left over", rest.len())));
    }
    Ok(old)
}
