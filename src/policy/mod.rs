//! The policy engine: recorded facts in, a decision and the ids of the rules that decided out. This is the built-in
//! baseline that encodes SPEC.md's defaults as plain, deterministic rules; the Cedar engine (issue 4) replaces it
//! behind the same function shape. Pure: it reads nothing but its argument.

use crate::core::limits::{DAY_MS, HOUR_MS, NEW_DESTINATION_COOLING_OFF_MS_MIN};
use crate::core::policy::{Outcome, Phase, PolicyDecision, PolicyFacts};

/// Changing any rule below changes this version, so a replay can tell which rules a recorded decision came from.
pub const BASELINE_VERSION: &str = "airlock-baseline/1";

/// Requests for one account in a day above which the case is denied outright (THREATS 6).
pub const ACCOUNT_REQUESTS_24H_DENY: u32 = 10;
/// Requests for one account in a day above which people look first.
pub const ACCOUNT_REQUESTS_24H_REVIEW: u32 = 4;
/// Requests from one source network in a day above which people look first.
pub const NETWORK_REQUESTS_24H_REVIEW: u32 = 20;
/// Requests by one requester in a day above which people look first.
pub const REQUESTER_REQUESTS_24H_REVIEW: u32 = 50;
/// One new destination named for this many accounts in a day is an attack, not a coincidence.
pub const DESTINATION_REQUESTS_24H_DENY: u32 = 3;

const _: () = assert!(ACCOUNT_REQUESTS_24H_DENY < crate::core::limits::VELOCITY_COUNT_MAX);
const _: () = assert!(NETWORK_REQUESTS_24H_REVIEW < crate::core::limits::VELOCITY_COUNT_MAX);
const _: () = assert!(REQUESTER_REQUESTS_24H_REVIEW < crate::core::limits::VELOCITY_COUNT_MAX);
const _: () = assert!(DESTINATION_REQUESTS_24H_DENY < crate::core::limits::VELOCITY_COUNT_MAX);

const COOLING_OFF_BASE_MS: u64 = 24 * HOUR_MS;
const COOLING_OFF_HIGH_VALUE_MS: u64 = 7 * DAY_MS;
const COOLING_OFF_PER_SIGNAL_MS: u64 = 24 * HOUR_MS;

/// Evaluates the baseline rules. Rules only add friction: each matched rule can raise the outcome (auto → review
/// → deny) or lengthen the wait, never lower them.
pub fn evaluate(facts: &PolicyFacts) -> PolicyDecision {
    let mut outcome = Outcome::Auto;
    let mut rules = Vec::new();
    let mut raise = |to: Outcome, rule: &str, rules: &mut Vec<String>| {
        rules.push(rule.to_string());
        outcome = stricter(outcome, to);
    };
    let velocity = facts.velocity;
    if velocity.account_requests_24h >= ACCOUNT_REQUESTS_24H_DENY {
        raise(Outcome::Deny, "velocity.account.deny", &mut rules);
    } else if velocity.account_requests_24h >= ACCOUNT_REQUESTS_24H_REVIEW {
        raise(Outcome::Review, "velocity.account.review", &mut rules);
    }
    if velocity.destination_requests_24h >= DESTINATION_REQUESTS_24H_DENY {
        raise(Outcome::Deny, "velocity.destination.deny", &mut rules);
    }
    if velocity.source_network_requests_24h >= NETWORK_REQUESTS_24H_REVIEW {
        raise(Outcome::Review, "velocity.network.review", &mut rules);
    }
    if velocity.requester_requests_24h >= REQUESTER_REQUESTS_24H_REVIEW {
        raise(Outcome::Review, "velocity.requester.review", &mut rules);
    }
    if !facts.risk_flags.is_empty() {
        raise(Outcome::Review, "account.risk-flag.review", &mut rules);
    }
    if facts.phase == Phase::Authorization {
        if facts.high_value {
            raise(Outcome::Review, "account.high-value.review", &mut rules);
        }
        if facts.credential_changed_within_7d {
            raise(Outcome::Review, "credential.recent-change.review", &mut rules);
        }
    }
    let cooling_off_ms = cooling_off_ms(facts, &mut rules);
    PolicyDecision {
        policy_version: BASELINE_VERSION.to_string(),
        outcome,
        cooling_off_ms,
        reviewers_required: if facts.high_value { 2 } else { 1 },
        rules,
        facts: facts.clone(),
    }
}

fn cooling_off_ms(facts: &PolicyFacts, rules: &mut Vec<String>) -> u64 {
    let mut wait_ms = COOLING_OFF_BASE_MS;
    if facts.adds_destination {
        rules.push("cooling-off.new-destination".to_string());
        wait_ms = wait_ms.max(NEW_DESTINATION_COOLING_OFF_MS_MIN);
    }
    if facts.high_value {
        rules.push("cooling-off.high-value".to_string());
        wait_ms = wait_ms.max(COOLING_OFF_HIGH_VALUE_MS);
    }
    if facts.signal_friction > 0 {
        rules.push("cooling-off.risky-signals".to_string());
        wait_ms += u64::from(facts.signal_friction) * COOLING_OFF_PER_SIGNAL_MS;
    }
    wait_ms
}

fn stricter(current: Outcome, candidate: Outcome) -> Outcome {
    let rank = |outcome: Outcome| match outcome {
        Outcome::Auto => 0,
        Outcome::Review => 1,
        Outcome::Deny => 2,
    };
    if rank(candidate) > rank(current) { candidate } else { current }
}
