//! The Cedar policy engine: the shipped policies pass their test cases, the test runner can fail, bad policy text is
//! refused with the policy and the place named, versions follow the text, and signals only ever add friction.

use airlock::core::policy::{Outcome, Phase, PolicyFacts, Velocity};
use airlock::policy::{DEFAULT_CASES, DEFAULT_POLICIES, DEFAULT_SCHEMA, Engine, cases};

fn facts() -> PolicyFacts {
    PolicyFacts {
        phase: Phase::Intake,
        action: "reset_password".into(),
        adds_destination: false,
        account_known: true,
        high_value: false,
        eligible_destinations: 1,
        has_totp: false,
        credential_changed_within_7d: false,
        risk_flags: Vec::new(),
        velocity: Velocity::default(),
        signal_friction: 0,
        halted: false,
        open_alerts: Vec::new(),
    }
}

fn refused(policies: &str) -> String {
    match Engine::load(DEFAULT_SCHEMA, policies) {
        Ok(_) => panic!("accepted:\n{policies}"),
        Err(error) => error.to_string(),
    }
}

// Proves every shipped policy test case passes.
#[test]
fn shipped_policies_pass_their_cases() {
    let results = cases::run(Engine::embedded(), DEFAULT_CASES).unwrap();
    assert!(results.len() >= 10);
    let failed: Vec<_> = results.iter().filter(|result| !result.problems.is_empty()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

// Proves the case runner reports a wrong expectation (it can fail).
#[test]
fn a_wrong_expectation_fails() {
    let text = "[[case]]\nname = \"wrong\"\n[case.expect]\noutcome = \"deny\"\ncooling_off_hours = 1\n";
    let results = cases::run(Engine::embedded(), text).unwrap();
    assert_eq!(results[0].problems.len(), 2, "{results:?}");
}

// Proves unparseable, invalid, unnamed, duplicated and mis-annotated policies are refused, naming what and where.
#[test]
fn bad_policies_are_refused_with_the_policy_and_place() {
    let syntax = refused("@id(\"a\")\npermit (principal, action, resource)\nwhen { context.velocity.account >= };");
    assert!(syntax.contains("line 3"), "{syntax}");
    let invalid = refused(
        "@id(\"typo.rule\")\npermit (principal, action == Airlock::Action::\"deny\", resource)\nwhen { context.velocity.acount >= 3 };",
    );
    assert!(invalid.contains("typo.rule") && invalid.contains("acount"), "{invalid}");
    let unnamed = refused("permit (principal, action == Airlock::Action::\"deny\", resource);");
    assert!(unnamed.contains("no @id"), "{unnamed}");
    let twice = refused(
        "@id(\"same\") permit (principal, action == Airlock::Action::\"deny\", resource);\n\
         @id(\"same\") permit (principal, action == Airlock::Action::\"review\", resource);",
    );
    assert!(twice.contains("same"), "{twice}");
    let hours = refused(
        "@id(\"h\") @cooling_off_hours(\"soon\") permit (principal, action == Airlock::Action::\"hold\", resource);",
    );
    assert!(hours.contains("h") && hours.contains("cooling_off_hours"), "{hours}");
}

// Proves the version is a hash of the policy text: the same text gives the same version, any change another.
#[test]
fn versions_follow_the_text() {
    let again = Engine::load(DEFAULT_SCHEMA, DEFAULT_POLICIES).unwrap();
    assert_eq!(again.version(), Engine::embedded().version());
    assert!(again.version().starts_with("cedar-"));
    let changed = Engine::load(DEFAULT_SCHEMA, &format!("{DEFAULT_POLICIES}\n// a comment\n")).unwrap();
    assert_ne!(changed.version(), again.version());
    assert_eq!(airlock::policy::evaluate(&facts()).policy_version, again.version());
}

// Proves signals only add friction under the shipped policies: more risk signals never shorten the wait, never
// lower the quorum, and never turn review or deny into automation, whatever else the facts say.
#[test]
fn signals_only_add_friction() {
    let rank = |outcome: Outcome| match outcome {
        Outcome::Auto => 0,
        Outcome::Review => 1,
        Outcome::Deny => 2,
    };
    for high_value in [false, true] {
        for account in [0, 4, 10] {
            for phase in [Phase::Intake, Phase::Authorization] {
                let mut base = facts();
                base.high_value = high_value;
                base.phase = phase;
                base.velocity.account_requests_24h = account;
                let calm = airlock::policy::evaluate(&base);
                for friction in 1..=3 {
                    let mut risky = base.clone();
                    risky.signal_friction = friction;
                    let decision = airlock::policy::evaluate(&risky);
                    assert!(decision.cooling_off_ms >= calm.cooling_off_ms);
                    assert!(decision.reviewers_required >= calm.reviewers_required);
                    assert!(rank(decision.outcome) >= rank(calm.outcome));
                }
            }
        }
    }
}

// Proves a policy folder written before the registrable-domain count (issue 15, item 10) still loads and decides:
// its schema has no `velocity.destination_domain`, so its requests leave that fact out (Cedar's records are closed,
// and a context with an undeclared attribute used to panic at the first decision, in `serve --policies` and in
// `replay --verify --policies` of old decisions alike); and that a schema fitting neither shape is refused at load.
#[test]
fn a_policy_folder_from_before_the_domain_count_still_decides() {
    let old_schema = DEFAULT_SCHEMA.replace("    destination_domain: Long,\n", "");
    assert_ne!(old_schema, DEFAULT_SCHEMA, "the shipped schema declares the domain count");
    let old_policies: String = DEFAULT_POLICIES
        .split("\n\n")
        .filter(|block| !block.contains("velocity.destination_domain"))
        .collect::<Vec<_>>()
        .join("\n\n");
    let engine = Engine::load(&old_schema, &old_policies).expect("an older folder loads");
    let mut busy = facts();
    busy.velocity.account_requests_24h = 4;
    busy.velocity.destination_domain_requests_24h = 25;
    let decision = engine.evaluate(&busy);
    assert_eq!(decision.outcome, Outcome::Review);
    assert_eq!(decision.rules[0], "velocity.account.review");

    let broken = DEFAULT_SCHEMA.replace("    destination: Long,\n", "");
    let error = match Engine::load(&broken, &old_policies.replace("context.velocity.destination >= 3", "true")) {
        Ok(_) => panic!("a schema without the facts airlock sends was accepted"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("does not declare the facts"), "{error}");
}

// Proves a policy folder written before campaign alerts (issue 20) still loads and decides, its requests without the
// `open_alerts` fact; and that the shipped folder sends a request matching an open alert to people.
#[test]
fn a_policy_folder_from_before_campaign_alerts_still_decides() {
    let start = DEFAULT_SCHEMA
        .find("    // The checks of the campaign alerts")
        .expect("the shipped schema declares open_alerts");
    let end = DEFAULT_SCHEMA[start..].find("open_alerts: Set<String>,\n").unwrap()
        + start
        + "open_alerts: Set<String>,\n".len();
    let old_schema = format!("{}{}", &DEFAULT_SCHEMA[..start], &DEFAULT_SCHEMA[end..]);
    let old_policies: String =
        DEFAULT_POLICIES.split("\n\n").filter(|block| !block.contains("open_alerts")).collect::<Vec<_>>().join("\n\n");
    let engine = Engine::load(&old_schema, &old_policies).expect("an older folder loads");
    let mut campaign = facts();
    campaign.open_alerts = vec!["destination_domain".into()];
    assert_eq!(engine.evaluate(&campaign).outcome, Outcome::Auto, "the old folder knows no alerts");
    let shipped = Engine::load(DEFAULT_SCHEMA, DEFAULT_POLICIES).unwrap().evaluate(&campaign);
    assert_eq!(shipped.outcome, Outcome::Review);
    assert_eq!(shipped.rules[0], "campaign.open-alert.review");
}
