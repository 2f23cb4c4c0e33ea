//! Events: what happened to a case, in the past tense. An event is a fact; the state of a case is a fold of its
//! events (`evolve`). Events are persisted in a versioned envelope (`airlock::log::envelope`); a change to any
//! payload here must bump that version and add an upcaster, and the golden fixtures under `tests/golden/` fail the
//! build until it does.

use crate::account::AccountSnapshot;
use crate::action::{ActionHash, RecoveryAction};
use crate::actor::Actor;
use crate::command::{Change, CommandKind};
use crate::ids::{AccountId, ActorId, ChallengeId, CommandId, DestinationId, EffectId, UnixMs};
use crate::policy::PolicyDecision;
use crate::rejection::Rejection;
use crate::signals::Signals;
use crate::text::UntrustedText;
use crate::verification::CodeHash;
use serde::{Deserialize, Serialize};

/// One event with its metadata: when, by whom, and which command caused it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Event {
    pub at: UnixMs,
    pub actor: Actor,
    /// The command that caused this event. Kept in the case state so that a command retried at any later time
    /// appends nothing (idempotency that outlives any broker's duplicate window).
    pub command_id: CommandId,
    pub body: EventBody,
}

#[expect(
    clippy::large_enum_variant,
    reason = "events are handled one at a time; boxing the opening event would only complicate every match on it"
)]
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventBody {
    RecoveryRequested {
        account_id: AccountId,
        action: RecoveryAction,
        action_hash: ActionHash,
        summary: UntrustedText,
        signals: Signals,
        snapshot: AccountSnapshot,
        /// The decision of the intake phase (velocity, risk flags), recorded with its facts.
        intake_decision: PolicyDecision,
        /// When the case expires if nobody proves possession.
        deadline: UnixMs,
    },
    /// Codes were sent to these destinations; each was trusted long enough before the request. Version 2 (issue
    /// 16): each destination gets its own code, `code_hashes[i]` for `destinations[i]`, so a proof says which
    /// destination it came from (a version 1 challenge sent one code to all of them).
    ChallengeIssued {
        challenge_id: ChallengeId,
        destinations: Vec<DestinationId>,
        code_hashes: Vec<CodeHash>,
        expires_at: UnixMs,
    },
    /// No code was sent, and why; the case waits (and expires) without revealing this to the requester.
    ChallengeWithheld {
        reason: WithheldReason,
    },
    /// Version 2 (ADR 11): `failed` says which part of the proof was wrong.
    ProofRejected {
        challenge_id: ChallengeId,
        attempts_left: u32,
        failed: ProofFailure,
    },
    ProofAccepted {
        challenge_id: ChallengeId,
        destinations: Vec<DestinationId>,
    },
    /// The case needs people. The decision says why and how many reviewers.
    ReviewRequired {
        decision: PolicyDecision,
        reason: ReviewReason,
        deadline: UnixMs,
    },
    ReviewApproved {
        reviewer: ActorId,
        action_hash: ActionHash,
        approvals: u8,
        required: u8,
        reason: UntrustedText,
    },
    /// The change is authorized and waits; every pre-existing destination is notified with a cancel link.
    CoolingOffStarted {
        ends_at: UnixMs,
        deadline: UnixMs,
        notify: Vec<DestinationId>,
        authorization: Authorization,
    },
    CaseDenied {
        reason: DenialReason,
    },
    CaseCancelled {
        reason: UntrustedText,
    },
    ExecutionStarted {
        effect_id: EffectId,
    },
    ExecutionConfirmed {
        effect_id: EffectId,
        changes: Vec<Change>,
    },
    ExecutionFailed {
        effect_id: EffectId,
        reason: String,
        deadline: UnixMs,
    },
    RolledBack {
        effect_id: EffectId,
        reason: UntrustedText,
        reversal: Vec<Change>,
    },
    CaseExpired,
    /// A command was refused. Recorded so that probing (an intake actor trying to approve, say) leaves a trace.
    CommandRefused {
        command: CommandKind,
        rejection: Rejection,
    },
    /// The owner also proved the account's authenticator app (TOTP) with the code. Appended just before
    /// `ProofAccepted`, in the same commit: the proof's strength is the one-time code plus this.
    SecondFactorProven {
        factor: SecondFactor,
    },
    /// Notices the case owed (`crate::notices`) were delivered: those of the event at case version `for_event`,
    /// to these destinations. `outstanding` is how many notices the case still owes after this one.
    NoticesDelivered {
        for_event: u64,
        destinations: Vec<DestinationId>,
        outstanding: u32,
    },
    /// The owner set a new password through the single-use link an applied reset sent to `destination`; the link is
    /// spent (issue 18, item 5). `changes` are what the directory did, in its words (never the password).
    PasswordSet {
        destination: DestinationId,
        changes: Vec<Change>,
    },
}

/// Which part of a proof was wrong. Kept for reviewers and investigators, never told to whoever typed it: that the
/// code was right but the authenticator's was not is the sign of a read mailbox (or phone) in the wrong hands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProofFailure {
    /// The one-time code did not match.
    WrongCode,
    /// The one-time code matched, but the authenticator code typed with it was refused.
    WrongSecondFactor,
    /// Recorded by an airlock that did not keep which (a version 1 event, upcast).
    NotRecorded,
    /// The one-time code matched, but the sign-in at the identity provider sent with it was as another account
    /// (issue 18, item 6).
    SignedInAsAnother,
}

/// A second factor an owner can prove besides a one-time code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SecondFactor {
    Totp,
    /// A sign-in at the company's OpenID Connect provider, as the account and with a second factor, at `auth_time`
    /// (issue 18, item 6).
    SignIn {
        auth_time: UnixMs,
    },
}

/// What authorized a change: the policy after proof, or a reviewer quorum.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Authorization {
    Policy { decision: PolicyDecision },
    Quorum { reviewers: Vec<ActorId> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WithheldReason {
    /// The directory does not know the account. The requester is told nothing different.
    UnknownAccount,
    /// Another case of this account holds an unused code (one outstanding code per account).
    AnotherCodeOutstanding,
    /// The account used up its wrong-code allowance for the window.
    AttemptsExhausted,
}

impl WithheldReason {
    /// The reason as the projection records it in a case's timeline (fixed text, never the variant's `Debug`).
    pub fn recorded(self) -> &'static str {
        match self {
            WithheldReason::UnknownAccount => "UnknownAccount",
            WithheldReason::AnotherCodeOutstanding => "AnotherCodeOutstanding",
            WithheldReason::AttemptsExhausted => "AttemptsExhausted",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReviewReason {
    NoEligibleFactor,
    PolicyReview,
    ExecutionFailed,
    /// The change touches the account's factors and the proof did not include the strongest factor the account has
    /// (an authenticator app): people decide (THREATS 9).
    WeakerProof,
    /// The account reached its guessing cap (`PROOF_ATTEMPTS_PER_ACCOUNT_MAX` wrong codes in a day): no code is
    /// compared on it, and people decide instead of the owner being shut out (ADR 14).
    GuessingCapReached,
    /// Another case of the account holds an unused code (one outstanding code per account): people decide instead of
    /// the owner waiting for nothing (ADR 14).
    AnotherCodeOutstanding,
    /// Only a phone's code was typed while the account's email also got one: a phone number can be taken over
    /// without its owner knowing (a SIM swap the carrier does not report), so people decide (issue 16, ADR 16).
    PhoneOnlyProof,
}

impl ReviewReason {
    /// The reason's name in documents and answers (`no_eligible_factor`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ReviewReason::NoEligibleFactor => "no_eligible_factor",
            ReviewReason::PolicyReview => "policy",
            ReviewReason::ExecutionFailed => "execution_failed",
            ReviewReason::WeakerProof => "weaker_proof",
            ReviewReason::GuessingCapReached => "guessing_cap_reached",
            ReviewReason::AnotherCodeOutstanding => "another_code_outstanding",
            ReviewReason::PhoneOnlyProof => "phone_only_proof",
        }
    }

    /// The reason as the projection records it (the review queue's reason column, the timeline): fixed text, never
    /// the variant's `Debug`, so that renaming a variant changes no stored row (tests/core/golden.rs pins every one).
    pub fn recorded(self) -> &'static str {
        match self {
            ReviewReason::NoEligibleFactor => "NoEligibleFactor",
            ReviewReason::PolicyReview => "PolicyReview",
            ReviewReason::ExecutionFailed => "ExecutionFailed",
            ReviewReason::WeakerProof => "WeakerProof",
            ReviewReason::GuessingCapReached => "GuessingCapReached",
            ReviewReason::AnotherCodeOutstanding => "AnotherCodeOutstanding",
            ReviewReason::PhoneOnlyProof => "PhoneOnlyProof",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DenialReason {
    AttemptsExhausted,
    Policy {
        rules: Vec<String>,
    },
    Reviewer {
        reviewer: ActorId,
        reason: UntrustedText,
    },
    /// The change failed to apply `EXECUTION_ATTEMPTS_MAX` times.
    ExecutionAttemptsExhausted,
}

/// The event kinds, by the names the transition table uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventKind {
    RecoveryRequested,
    ChallengeIssued,
    ChallengeWithheld,
    ProofRejected,
    ProofAccepted,
    ReviewRequired,
    ReviewApproved,
    CoolingOffStarted,
    CaseDenied,
    CaseCancelled,
    ExecutionStarted,
    ExecutionConfirmed,
    ExecutionFailed,
    RolledBack,
    CaseExpired,
    CommandRefused,
    SecondFactorProven,
    NoticesDelivered,
    PasswordSet,
}

impl EventKind {
    pub const ALL: [EventKind; 19] = [
        EventKind::RecoveryRequested,
        EventKind::ChallengeIssued,
        EventKind::ChallengeWithheld,
        EventKind::ProofRejected,
        EventKind::ProofAccepted,
        EventKind::ReviewRequired,
        EventKind::ReviewApproved,
        EventKind::CoolingOffStarted,
        EventKind::CaseDenied,
        EventKind::CaseCancelled,
        EventKind::ExecutionStarted,
        EventKind::ExecutionConfirmed,
        EventKind::ExecutionFailed,
        EventKind::RolledBack,
        EventKind::CaseExpired,
        EventKind::CommandRefused,
        EventKind::SecondFactorProven,
        EventKind::NoticesDelivered,
        EventKind::PasswordSet,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventKind::RecoveryRequested => "recovery_requested",
            EventKind::ChallengeIssued => "challenge_issued",
            EventKind::ChallengeWithheld => "challenge_withheld",
            EventKind::ProofRejected => "proof_rejected",
            EventKind::ProofAccepted => "proof_accepted",
            EventKind::ReviewRequired => "review_required",
            EventKind::ReviewApproved => "review_approved",
            EventKind::CoolingOffStarted => "cooling_off_started",
            EventKind::CaseDenied => "case_denied",
            EventKind::CaseCancelled => "case_cancelled",
            EventKind::ExecutionStarted => "execution_started",
            EventKind::ExecutionConfirmed => "execution_confirmed",
            EventKind::ExecutionFailed => "execution_failed",
            EventKind::RolledBack => "rolled_back",
            EventKind::CaseExpired => "case_expired",
            EventKind::CommandRefused => "command_refused",
            EventKind::SecondFactorProven => "second_factor_proven",
            EventKind::NoticesDelivered => "notices_delivered",
            EventKind::PasswordSet => "password_set",
        }
    }

    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl EventBody {
    /// The words a person recorded with this event (a reviewer's, an operator's), as they typed them: untrusted text,
    /// shown inert. `None` for an event that records none.
    pub fn people_words(&self) -> Option<&UntrustedText> {
        match self {
            EventBody::ReviewApproved { reason, .. }
            | EventBody::CaseDenied { reason: DenialReason::Reviewer { reason, .. } }
            | EventBody::CaseCancelled { reason }
            | EventBody::RolledBack { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// The policy decision this event records, with the facts it was taken on, if it records one.
    pub fn recorded_decision(&self) -> Option<&PolicyDecision> {
        match self {
            EventBody::RecoveryRequested { intake_decision, .. } => Some(intake_decision),
            EventBody::ReviewRequired { decision, .. } => Some(decision),
            EventBody::CoolingOffStarted { authorization: Authorization::Policy { decision }, .. } => Some(decision),
            EventBody::CoolingOffStarted { authorization: Authorization::Quorum { .. }, .. }
            | EventBody::ChallengeIssued { .. }
            | EventBody::ChallengeWithheld { .. }
            | EventBody::ProofRejected { .. }
            | EventBody::ProofAccepted { .. }
            | EventBody::SecondFactorProven { .. }
            | EventBody::ReviewApproved { .. }
            | EventBody::CaseDenied { .. }
            | EventBody::CaseExpired
            | EventBody::CaseCancelled { .. }
            | EventBody::ExecutionStarted { .. }
            | EventBody::ExecutionConfirmed { .. }
            | EventBody::ExecutionFailed { .. }
            | EventBody::RolledBack { .. }
            | EventBody::CommandRefused { .. }
            | EventBody::NoticesDelivered { .. }
            | EventBody::PasswordSet { .. } => None,
        }
    }

    pub fn kind(&self) -> EventKind {
        match self {
            EventBody::RecoveryRequested { .. } => EventKind::RecoveryRequested,
            EventBody::ChallengeIssued { .. } => EventKind::ChallengeIssued,
            EventBody::ChallengeWithheld { .. } => EventKind::ChallengeWithheld,
            EventBody::ProofRejected { .. } => EventKind::ProofRejected,
            EventBody::ProofAccepted { .. } => EventKind::ProofAccepted,
            EventBody::ReviewRequired { .. } => EventKind::ReviewRequired,
            EventBody::ReviewApproved { .. } => EventKind::ReviewApproved,
            EventBody::CoolingOffStarted { .. } => EventKind::CoolingOffStarted,
            EventBody::CaseDenied { .. } => EventKind::CaseDenied,
            EventBody::CaseCancelled { .. } => EventKind::CaseCancelled,
            EventBody::ExecutionStarted { .. } => EventKind::ExecutionStarted,
            EventBody::ExecutionConfirmed { .. } => EventKind::ExecutionConfirmed,
            EventBody::ExecutionFailed { .. } => EventKind::ExecutionFailed,
            EventBody::RolledBack { .. } => EventKind::RolledBack,
            EventBody::CaseExpired => EventKind::CaseExpired,
            EventBody::CommandRefused { .. } => EventKind::CommandRefused,
            EventBody::SecondFactorProven { .. } => EventKind::SecondFactorProven,
            EventBody::NoticesDelivered { .. } => EventKind::NoticesDelivered,
            EventBody::PasswordSet { .. } => EventKind::PasswordSet,
        }
    }
}
