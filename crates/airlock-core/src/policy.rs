//! The shapes a policy engine reads and returns. The engine itself lives in `airlock::policy`; the core only builds
//! the facts (purely, from recorded data) and enforces floors no policy can lower.

use crate::account::AccountSnapshot;
use crate::action::RecoveryAction;
use crate::ids::UnixMs;
use crate::limits;
use crate::signals::Signals;
use crate::verification::{Settings, challengeable_destinations};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
/// Stored by name in the projection's decision JSON: each name is fixed (`serde(rename)`), not the variant's.
pub enum Outcome {
    #[serde(rename = "Auto")]
    Auto,
    #[serde(rename = "Review")]
    Review,
    #[serde(rename = "Deny")]
    Deny,
}

impl Outcome {
    /// The outcome's name in documents and answers (`auto`, `review`, `deny`).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Auto => "auto",
            Outcome::Review => "review",
            Outcome::Deny => "deny",
        }
    }

    /// The outcome as the projection records it in timelines and in the receipts it hashes (`Auto`, `Review`,
    /// `Deny`): fixed here, never derived from the variant's name, so that renaming a variant cannot change the hash
    /// of a receipt written before (tests/core/golden.rs pins every one).
    pub fn recorded(self) -> &'static str {
        match self {
            Outcome::Auto => "Auto",
            Outcome::Review => "Review",
            Outcome::Deny => "Deny",
        }
    }
}

/// When the policy is asked: when a case is opened (may it proceed to proof at all?) and after proof (may the
/// change go ahead automatically?).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
/// Stored by name in the projection's decision JSON: each name is fixed (`serde(rename)`), not the variant's.
pub enum Phase {
    #[serde(rename = "Intake")]
    Intake,
    #[serde(rename = "Authorization")]
    Authorization,
}

/// Request counts over the last day, per dimension (SPEC principle 10), counted by the shell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Velocity {
    pub account_requests_24h: u32,
    pub source_network_requests_24h: u32,
    pub requester_requests_24h: u32,
    pub destination_requests_24h: u32,
    /// Requests naming a new email address at the same registrable domain, whichever account or desk sent them
    /// (issue 15, item 10). Decisions recorded before it was counted saw none: their events upcast with 0, and the
    /// projection's JSON of them, which has no such field, reads as 0.
    #[serde(default)]
    pub destination_domain_requests_24h: u32,
}

/// Everything a policy may look at. Recorded in every decision event so a replay can re-run the decision.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PolicyFacts {
    pub phase: Phase,
    pub action: String,
    pub adds_destination: bool,
    pub account_known: bool,
    pub high_value: bool,
    pub eligible_destinations: u32,
    pub has_totp: bool,
    pub credential_changed_within_7d: bool,
    pub risk_flags: Vec<String>,
    pub velocity: Velocity,
    pub signal_friction: u32,
    pub halted: bool,
    /// The checks of the campaign alerts open when the request came that it matches (issue 20, ADR 25), by name
    /// (`destination_domain`, `phrasing`, ...): a campaign in progress sends its new requests to people. Decisions
    /// recorded before alerts existed saw none: their events upcast with none, and the projection's JSON of them,
    /// which has no such field, reads as none.
    #[serde(default)]
    pub open_alerts: Vec<String>,
}

impl PolicyFacts {
    /// Builds the facts from recorded data only. `at` is the request time for the intake phase and the time of the
    /// proof for the authorization phase.
    #[expect(clippy::too_many_arguments, reason = "a flat record of recorded facts, each named at the call site")]
    pub fn gather(
        phase: Phase,
        snapshot: &AccountSnapshot,
        action: &RecoveryAction,
        signals: &Signals,
        velocity: Velocity,
        halted: bool,
        requested_at: UnixMs,
        settings: &Settings,
    ) -> PolicyFacts {
        let credential_changed_within_7d =
            snapshot.last_credential_change.is_some_and(|changed| changed.until(requested_at) < 7 * limits::DAY_MS);
        PolicyFacts {
            phase,
            action: action.name().to_string(),
            adds_destination: action.adds_destination(),
            account_known: snapshot.known,
            high_value: snapshot.is_high_value(),
            eligible_destinations: challengeable_destinations(snapshot, action, requested_at, settings).len() as u32,
            has_totp: snapshot.totp_enrolled_since.is_some(),
            credential_changed_within_7d,
            risk_flags: snapshot.risk_flags.clone(),
            velocity,
            signal_friction: signals.friction(),
            halted,
            open_alerts: Vec::new(),
        }
    }
}

/// What a policy returned, with the facts it saw and the version of the policy that saw them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PolicyDecision {
    pub policy_version: String,
    pub outcome: Outcome,
    pub cooling_off_ms: u64,
    pub reviewers_required: u8,
    /// The ids of the rules that decided, in the order they matched.
    pub rules: Vec<String>,
    pub facts: PolicyFacts,
}

impl PolicyDecision {
    /// The cooling-off the core will actually apply: the policy's value, raised to the floors that no policy may
    /// go under (SPEC principle 5) and capped at the longest hold a case can wait. `adds_destination` comes from the
    /// case itself, so a policy that misreads its facts cannot lower the floor.
    pub fn effective_cooling_off_ms(&self, adds_destination: bool) -> u64 {
        let mut floor = limits::COOLING_OFF_MS_MIN;
        if adds_destination || self.facts.adds_destination {
            floor = floor.max(limits::NEW_DESTINATION_COOLING_OFF_MS_MIN);
        }
        self.cooling_off_ms.clamp(floor, limits::COOLING_OFF_MS_MAX)
    }

    /// The reviewer quorum the core will actually require: at least one, at least two for high-value accounts.
    /// `high_value` comes from the case's recorded snapshot, not from the policy's copy of the facts.
    pub fn effective_reviewers_required(&self, high_value: bool) -> u8 {
        let floor = if high_value || self.facts.high_value { limits::HIGH_VALUE_REVIEWERS_MIN } else { 1 };
        self.reviewers_required.clamp(floor, limits::REVIEWERS_MAX)
    }
}
