//! Policy test cases (`policies/tests.toml`): facts in, the decision expected out. Run by `airlock policy test` and by
//! the test suite, so a policy change that alters a decision is seen before it ships.

use crate::core::policy::{Outcome, Phase, PolicyFacts, Velocity};
use crate::policy::{Engine, PolicyError};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    facts: Facts,
    expect: Expect,
}

/// Facts with defaults: an ordinary, known, standard account at intake, with nothing unusual.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Facts {
    phase: String,
    action: String,
    adds_destination: bool,
    account_known: bool,
    high_value: bool,
    eligible_destinations: u32,
    has_totp: bool,
    credential_changed_within_7d: bool,
    risk_flags: Vec<String>,
    velocity: VelocityFacts,
    signal_friction: u32,
    halted: bool,
    open_alerts: Vec<String>,
}

impl Default for Facts {
    fn default() -> Self {
        Facts {
            phase: "intake".into(),
            action: "reset_password".into(),
            adds_destination: false,
            account_known: true,
            high_value: false,
            eligible_destinations: 1,
            has_totp: false,
            credential_changed_within_7d: false,
            risk_flags: Vec::new(),
            velocity: VelocityFacts::default(),
            signal_friction: 0,
            halted: false,
            open_alerts: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct VelocityFacts {
    account: u32,
    source_network: u32,
    requester: u32,
    destination: u32,
    destination_domain: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    outcome: String,
    cooling_off_hours: Option<u64>,
    reviewers: Option<u8>,
    /// When given, exactly these rule ids (in the decision's order).
    rules: Option<Vec<String>>,
}

/// One case's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub name: String,
    /// Empty when the case passed.
    pub problems: Vec<String>,
}

/// The facts of the plainest request: a password reset at intake for a known account with one eligible destination
/// and nothing unusual (what a test case states nothing else about).
pub fn plain_facts() -> PolicyFacts {
    facts("plain", &Facts::default()).expect("the default phase is intake")
}

fn facts(name: &str, facts: &Facts) -> Result<PolicyFacts, PolicyError> {
    let phase = match facts.phase.as_str() {
        "intake" => Phase::Intake,
        "authorization" => Phase::Authorization,
        other => {
            return Err(PolicyError(format!("case {name:?}: phase {other:?} is not intake or authorization")));
        }
    };
    Ok(PolicyFacts {
        phase,
        action: facts.action.clone(),
        adds_destination: facts.adds_destination,
        account_known: facts.account_known,
        high_value: facts.high_value,
        eligible_destinations: facts.eligible_destinations,
        has_totp: facts.has_totp,
        credential_changed_within_7d: facts.credential_changed_within_7d,
        risk_flags: facts.risk_flags.clone(),
        velocity: Velocity {
            account_requests_24h: facts.velocity.account,
            source_network_requests_24h: facts.velocity.source_network,
            requester_requests_24h: facts.velocity.requester,
            destination_requests_24h: facts.velocity.destination,
            destination_domain_requests_24h: facts.velocity.destination_domain,
        },
        signal_friction: facts.signal_friction,
        halted: facts.halted,
        open_alerts: facts.open_alerts.clone(),
    })
}

/// Runs every case of `text` against `engine`.
pub fn run(engine: &Engine, text: &str) -> Result<Vec<CaseResult>, PolicyError> {
    let file: File = toml::from_str(text).map_err(|error| PolicyError(format!("the policy test cases: {error}")))?;
    let mut results = Vec::with_capacity(file.case.len());
    for case in &file.case {
        let decision = engine.evaluate(&facts(&case.name, &case.facts)?);
        let mut problems = Vec::new();
        let outcome = match decision.outcome {
            Outcome::Auto => "auto",
            Outcome::Review => "review",
            Outcome::Deny => "deny",
        };
        if outcome != case.expect.outcome {
            problems.push(format!("outcome {outcome}, expected {}", case.expect.outcome));
        }
        let hours = decision.cooling_off_ms / crate::core::limits::HOUR_MS;
        if let Some(expected) = case.expect.cooling_off_hours.filter(|expected| *expected != hours) {
            problems.push(format!("cooling-off {hours} h, expected {expected} h"));
        }
        if let Some(expected) = case.expect.reviewers.filter(|expected| *expected != decision.reviewers_required) {
            problems.push(format!("{} reviewers, expected {expected}", decision.reviewers_required));
        }
        if let Some(expected) = case.expect.rules.as_ref().filter(|expected| **expected != decision.rules) {
            problems.push(format!("rules {:?}, expected {expected:?}", decision.rules));
        }
        results.push(CaseResult { name: case.name.clone(), problems });
    }
    Ok(results)
}
