//! The policy engine: recorded facts in, a decision and the ids of the policies that decided out (SPEC principle 4).
//! Policies are Cedar, in `policies/` (schema, policies and their test cases), validated strictly against the
//! schema when loaded, and versioned by a hash of their content, so a replay can tell which text decided. Pure: the
//! text is handed in (the defaults are embedded in the binary); nothing here reads files or clocks.

pub mod backtest;
pub mod cases;
pub mod retake;

use crate::core::policy::{Outcome, PolicyDecision, PolicyFacts};
use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision, Entities, EntityUid, PolicyId, PolicySet, Request,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::OnceLock;

/// The shipped schema, policies and policy test cases.
pub const DEFAULT_SCHEMA: &str = include_str!("../../policies/airlock.cedarschema");
pub const DEFAULT_POLICIES: &str = include_str!("../../policies/default.cedar");
pub const DEFAULT_CASES: &str = include_str!("../../policies/tests.toml");

/// The longest hold a policy may ask for in one annotation; more is a typo or a denial in disguise.
const COOLING_OFF_HOURS_MAX: u64 = 24 * 30;

/// A policy text airlock refuses to run, with the policy and the place named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// A loaded, validated policy set.
pub struct Engine {
    schema: Schema,
    /// Per action (`actions`, in order): the policies that can apply to it. A policy scoped to another action
    /// (`action == ...`) never applies, so it is left out of that action's set rather than evaluated with it: Cedar
    /// builds and evaluates every policy of the set it is given for every request (issue 21, item 6).
    by_action: [PolicySet; 3],
    version: String,
    /// Per policy id: its @cooling_off_hours, @extra_hours_per_signal and @reviewers, parsed once.
    hold: BTreeMap<String, HoldAnnotations>,
    /// The request's parts, parsed once: the `deny`, `review` and `hold` actions, the requester and the case.
    actions: [EntityUid; 3],
    principal: EntityUid,
    resource: EntityUid,
    /// Whether the schema declares `velocity.destination_domain` (issue 15, item 10). A policy folder written before
    /// that fact existed is still loaded (to take its old decisions again, or to keep running it): its requests
    /// leave the fact out, as Cedar's records are closed.
    domain_fact: bool,
    /// Whether the schema declares `open_alerts` (issue 20): left out for a folder written before it, likewise.
    alerts_fact: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct HoldAnnotations {
    cooling_off_hours: Option<u64>,
    extra_hours_per_signal: Option<u64>,
    reviewers: Option<u8>,
}

fn number(policy: &str, key: &str, value: &str, max: u64) -> Result<u64, PolicyError> {
    match value.parse::<u64>() {
        Ok(number) if number <= max => Ok(number),
        Ok(_) | Err(_) => {
            Err(PolicyError(format!("policy {policy}: @{key}(\"{value}\") must be a whole number up to {max}")))
        }
    }
}

/// Line and column of a byte offset, for error messages.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |newline| newline + 1) + 1;
    (line, column)
}

fn located(what: &str, text: &str, error: &dyn miette::Diagnostic, message: String) -> String {
    let place = error
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| {
            let (line, column) = line_column(text, label.offset());
            format!(" at line {line}, column {column}")
        })
        .unwrap_or_default();
    format!("{what}{place}: {message}")
}

impl Engine {
    /// Parses and validates a schema and a policy set. Every policy must carry a unique @id, every hold annotation a
    /// sane number, and every policy must validate strictly against the schema.
    pub fn load(schema_text: &str, policies_text: &str) -> Result<Engine, PolicyError> {
        let (schema, _) = Schema::from_cedarschema_str(schema_text)
            .map_err(|error| PolicyError(located("the policy schema", schema_text, &error, error.to_string())))?;
        let parsed = PolicySet::from_str(policies_text)
            .map_err(|error| PolicyError(located("the policies", policies_text, &error, error.to_string())))?;
        let mut policies = PolicySet::new();
        let mut hold = BTreeMap::new();
        for (index, policy) in parsed.policies().enumerate() {
            let Some(id) = policy.annotation("id") else {
                let text = policy.to_string();
                let start = text.lines().find(|line| !line.trim_start().starts_with('@')).unwrap_or_default().trim();
                return Err(PolicyError(format!(
                    "policy number {} ({start:?}) has no @id(\"...\"); every policy needs a unique id",
                    index + 1
                )));
            };
            let mut annotations = HoldAnnotations::default();
            if let Some(value) = policy.annotation("cooling_off_hours") {
                annotations.cooling_off_hours = Some(number(id, "cooling_off_hours", value, COOLING_OFF_HOURS_MAX)?);
            }
            if let Some(value) = policy.annotation("extra_hours_per_signal") {
                annotations.extra_hours_per_signal =
                    Some(number(id, "extra_hours_per_signal", value, COOLING_OFF_HOURS_MAX)?);
            }
            if let Some(value) = policy.annotation("reviewers") {
                let max = u64::from(crate::core::limits::REVIEWERS_MAX);
                annotations.reviewers = Some(number(id, "reviewers", value, max)? as u8);
            }
            hold.insert(id.to_string(), annotations);
            policies
                .add(policy.new_id(PolicyId::new(id)))
                .map_err(|_| PolicyError(format!("two policies share the @id {id:?}")))?;
        }
        let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        if let Some(error) = validation.validation_errors().next() {
            return Err(PolicyError(located("the policies", policies_text, error, error.to_string())));
        }
        let mut digest = Sha256::new();
        digest.update(schema_text.as_bytes());
        digest.update([0]);
        digest.update(policies_text.as_bytes());
        let version = format!("cedar-{}", &hex::encode(digest.finalize())[..16]);
        let uid = |text: &str| EntityUid::from_str(text).expect("a valid entity uid");
        let actions =
            [uid(r#"Airlock::Action::"deny""#), uid(r#"Airlock::Action::"review""#), uid(r#"Airlock::Action::"hold""#)];
        let by_action = actions.clone().map(|action| applicable_to(&policies, &action));
        let mut engine = Engine {
            schema,
            by_action,
            version,
            hold,
            actions,
            principal: uid(r#"Airlock::Requester::"requester""#),
            resource: uid(r#"Airlock::Case::"case""#),
            domain_fact: true,
            alerts_fact: true,
        };
        // Every request must match the schema: checked here once, for the facts airlock sends today and, failing
        // that, for those it sent before the open alerts, and before the domain count, so that a schema that fits
        // none is refused at load rather than at the first decision.
        for (domain_fact, alerts_fact) in [(true, true), (true, false), (false, true), (false, false)] {
            (engine.domain_fact, engine.alerts_fact) = (domain_fact, alerts_fact);
            if engine.fits_schema() {
                return Ok(engine);
            }
        }
        Err(PolicyError(
            "the policy schema does not declare the facts airlock decides on: start from the shipped \
             policies/airlock.cedarschema"
                .into(),
        ))
    }

    /// Whether this engine's policies can see campaign alerts (its schema declares `open_alerts`): a folder written
    /// before them cannot, and the alerts then hold no request back.
    pub fn sees_open_alerts(&self) -> bool {
        self.alerts_fact
    }

    /// Whether a request with this engine's facts matches its schema.
    fn fits_schema(&self) -> bool {
        // Every set with a member, so that the members' type is checked too.
        let facts = PolicyFacts {
            risk_flags: vec!["flag".into()],
            open_alerts: vec!["phrasing".into()],
            ..cases::plain_facts()
        };
        let context = facts_context(&facts, self.domain_fact, self.alerts_fact);
        self.actions.iter().all(|action| {
            Request::new(
                self.principal.clone(),
                action.clone(),
                self.resource.clone(),
                context.clone(),
                Some(&self.schema),
            )
            .is_ok()
        })
    }

    /// The shipped policies. They are checked by the test suite, so failing here is a build defect.
    pub fn embedded() -> &'static Engine {
        Engine::shared_embedded_arc()
    }

    /// The shipped policies, shared, for services that hold their engine.
    pub fn shared() -> std::sync::Arc<Engine> {
        Engine::shared_embedded_arc().clone()
    }

    fn shared_embedded_arc() -> &'static std::sync::Arc<Engine> {
        static ENGINE: OnceLock<std::sync::Arc<Engine>> = OnceLock::new();
        ENGINE.get_or_init(|| {
            std::sync::Arc::new(Engine::load(DEFAULT_SCHEMA, DEFAULT_POLICIES).expect("the shipped policies are valid"))
        })
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// The ids of the policies that permit `action` for these facts, sorted (Cedar reports them as a set). Facts of a
    /// shape the schema does not declare are refused at load (`fits_schema`), not here.
    fn matching(&self, (action, policies): (&EntityUid, &PolicySet), context: &Context) -> Vec<String> {
        // Not checked against the schema again (`None`): `fits_schema` checked the one shape `facts_context` builds at
        // load, for every action, and only its values change (numbers, flags, strings, sets of strings), never a
        // type. The check cost about half of a decision (issue 21).
        let request =
            Request::new(self.principal.clone(), action.clone(), self.resource.clone(), context.clone(), None)
                .expect("a request without a schema to check is always built");
        let response = Authorizer::new().is_authorized(&request, policies, &Entities::empty());
        if response.decision() != Decision::Allow {
            return Vec::new();
        }
        let mut ids: Vec<String> = response.diagnostics().reason().map(ToString::to_string).collect();
        ids.sort();
        ids
    }

    /// Decides: `deny` wins over `review`, which wins over automation; the cooling-off is the longest matching hold
    /// plus the per-signal extra; the quorum is the largest matching @reviewers (at least one).
    pub fn evaluate(&self, facts: &PolicyFacts) -> PolicyDecision {
        let context = facts_context(facts, self.domain_fact, self.alerts_fact);
        let [deny, review, hold] = [0, 1, 2].map(|index| (&self.actions[index], &self.by_action[index]));
        let (deny, review, hold) =
            (self.matching(deny, &context), self.matching(review, &context), self.matching(hold, &context));
        let outcome = if !deny.is_empty() {
            Outcome::Deny
        } else if !review.is_empty() {
            Outcome::Review
        } else {
            Outcome::Auto
        };
        let annotations: Vec<HoldAnnotations> = hold.iter().filter_map(|id| self.hold.get(id).copied()).collect();
        let base_hours = annotations.iter().filter_map(|a| a.cooling_off_hours).max().unwrap_or(0);
        let extra_hours = annotations.iter().filter_map(|a| a.extra_hours_per_signal).max().unwrap_or(0);
        let hours = base_hours + extra_hours * u64::from(facts.signal_friction);
        let reviewers = annotations.iter().filter_map(|a| a.reviewers).max().unwrap_or(1).max(1);
        PolicyDecision {
            policy_version: self.version.clone(),
            outcome,
            cooling_off_ms: hours * crate::core::limits::HOUR_MS,
            reviewers_required: reviewers,
            rules: deny.into_iter().chain(review).chain(hold).collect(),
            facts: facts.clone(),
        }
    }
}

/// The policies of `policies` that can apply to a request for `action`: all but those scoped to another action by
/// `action == ...`. Those scoped by `action in [...]` or not at all stay, whatever their list names: with no entities
/// given, whether an action is `in` another is Cedar's to say, not ours.
fn applicable_to(policies: &PolicySet, action: &EntityUid) -> PolicySet {
    let mut applicable = PolicySet::new();
    for policy in policies.policies() {
        let elsewhere = matches!(policy.action_constraint(), ActionConstraint::Eq(only) if only != *action);
        if !elsewhere {
            applicable.add(policy.clone()).expect("ids are unique in the set they come from");
        }
    }
    applicable
}

/// The facts as the Cedar context record the schema declares, built directly rather than parsed from JSON: deciding
/// runs for every request, and the JSON route cost more than the evaluation itself.
fn facts_context(facts: &PolicyFacts, domain_fact: bool, alerts_fact: bool) -> Context {
    let long = |value: u32| RestrictedExpression::new_long(i64::from(value));
    let text = |value: &str| RestrictedExpression::new_string(value.to_string());
    let record = |fields: Vec<(&str, RestrictedExpression)>| {
        RestrictedExpression::new_record(fields.into_iter().map(|(name, value)| (name.to_string(), value)))
            .expect("field names are distinct")
    };
    let velocity = &facts.velocity;
    let phase = match facts.phase {
        crate::core::policy::Phase::Intake => "intake",
        crate::core::policy::Phase::Authorization => "authorization",
    };
    let mut fields = vec![
        ("phase", text(phase)),
        ("action", text(&facts.action)),
        ("adds_destination", RestrictedExpression::new_bool(facts.adds_destination)),
        ("account_known", RestrictedExpression::new_bool(facts.account_known)),
        ("high_value", RestrictedExpression::new_bool(facts.high_value)),
        ("eligible_destinations", long(facts.eligible_destinations)),
        ("has_totp", RestrictedExpression::new_bool(facts.has_totp)),
        ("credential_changed_within_7d", RestrictedExpression::new_bool(facts.credential_changed_within_7d)),
        ("risk_flags", RestrictedExpression::new_set(facts.risk_flags.iter().map(|flag| text(flag)))),
        (
            "velocity",
            record(
                [
                    ("account", long(velocity.account_requests_24h)),
                    ("source_network", long(velocity.source_network_requests_24h)),
                    ("requester", long(velocity.requester_requests_24h)),
                    ("destination", long(velocity.destination_requests_24h)),
                ]
                .into_iter()
                .chain(domain_fact.then(|| ("destination_domain", long(velocity.destination_domain_requests_24h))))
                .collect(),
            ),
        ),
        ("signal_friction", long(facts.signal_friction)),
        ("halted", RestrictedExpression::new_bool(facts.halted)),
    ];
    if alerts_fact {
        fields.push(("open_alerts", RestrictedExpression::new_set(facts.open_alerts.iter().map(|check| text(check)))));
    }
    Context::from_pairs(fields.into_iter().map(|(name, value)| (name.to_string(), value)))
        .expect("field names are distinct")
}

/// Decides with the shipped policies.
pub fn evaluate(facts: &PolicyFacts) -> PolicyDecision {
    Engine::embedded().evaluate(facts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::policy::{Phase, Velocity};
    use rand::{Rng, SeedableRng};

    // Proves that splitting the policies by action changes no decision: for random facts, the policies each action
    // matches with its own set are those it matches with the whole set, for the shipped policies and for policies
    // scoped by `action in [...]` and not scoped at all, which belong to more than one action's set. Fails if a policy
    // is left out of a set it can apply to (shown by keeping only the policies scoped by `==` to the action).
    #[test]
    fn each_action_matches_with_its_own_policies_what_it_matches_with_all() {
        let extra = r#"
            @id("in.review-or-hold")
            permit (principal, action in [Airlock::Action::"review", Airlock::Action::"hold"], resource)
            when { context.velocity.account >= 2 };
            @id("any.action")
            permit (principal, action, resource) when { context.has_totp };
            @id("in.deny")
            permit (principal, action in [Airlock::Action::"deny"], resource) when { context.halted };
            @id("forbid.review")
            forbid (principal, action == Airlock::Action::"review", resource)
            when { context.high_value && context.halted };
        "#;
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        for text in [DEFAULT_POLICIES.to_string(), format!("{DEFAULT_POLICIES}\n{extra}")] {
            let engine = Engine::load(DEFAULT_SCHEMA, &text).expect("the policies load");
            let whole = PolicySet::from_str(&text).expect("the policies parse");
            let sizes = engine.by_action.each_ref().map(|set| set.policies().count());
            // The extras scoped by `in` and the unscoped one stay in every set; the forbid goes to review's alone.
            let expected = if text == DEFAULT_POLICIES { [1, 8, 4] } else { [4, 12, 7] };
            assert_eq!(sizes, expected, "each action's own policies (deny, review, hold)");
            let mut matched = 0;
            for _ in 0..400 {
                let facts = PolicyFacts {
                    has_totp: rng.random(),
                    halted: rng.random_bool(0.2),
                    adds_destination: rng.random(),
                    high_value: rng.random(),
                    velocity: Velocity {
                        account_requests_24h: rng.random_range(0..6),
                        source_network_requests_24h: rng.random_range(0..30),
                        destination_requests_24h: rng.random_range(0..4),
                        destination_domain_requests_24h: rng.random_range(0..30),
                        ..Velocity::default()
                    },
                    open_alerts: if rng.random() { vec!["phrasing".into()] } else { Vec::new() },
                    ..cases::plain_facts()
                };
                let context = facts_context(&facts, engine.domain_fact, engine.alerts_fact);
                for (index, action) in engine.actions.iter().enumerate() {
                    let own = engine.matching((action, &engine.by_action[index]), &context);
                    let request = Request::new(
                        engine.principal.clone(),
                        action.clone(),
                        engine.resource.clone(),
                        context.clone(),
                        None,
                    )
                    .expect("a request");
                    let response = Authorizer::new().is_authorized(&request, &whole, &Entities::empty());
                    // As `matching` reads a response: the permits that allowed it, nothing when a forbid denied it.
                    let allowed = response.decision() == Decision::Allow;
                    let mut all: Vec<String> = response
                        .diagnostics()
                        .reason()
                        .filter(|_| allowed)
                        .map(|id| {
                            whole.policy(id).and_then(|policy| policy.annotation("id")).expect("an @id").to_string()
                        })
                        .collect();
                    all.sort();
                    matched += all.len();
                    assert_eq!(own, all, "{action} for {facts:?}");
                }
            }
            assert!(matched > 400, "the facts drawn match few policies ({matched}): the comparison says little");
        }
    }

    // Proves what lets a decision skip the schema check: every context `facts_context` builds, whatever the facts'
    // values (both phases, every flag, the largest counts, empty and many-membered sets, any text), fits the shipped
    // schema for every action. A field added only for some facts would fail here.
    #[test]
    fn every_context_a_decision_builds_fits_the_schema() {
        let engine = Engine::embedded();
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        let text = |rng: &mut rand::rngs::StdRng| {
            let length = rng.random_range(0..12);
            (0..length).map(|_| char::from_u32(rng.random_range(0x20..0x2000)).unwrap_or('?')).collect::<String>()
        };
        for round in 0..300 {
            let count = |rng: &mut rand::rngs::StdRng| if round % 3 == 0 { u32::MAX } else { rng.random_range(0..50) };
            let facts = PolicyFacts {
                phase: if rng.random() { Phase::Intake } else { Phase::Authorization },
                action: text(&mut rng),
                adds_destination: rng.random(),
                account_known: rng.random(),
                high_value: rng.random(),
                eligible_destinations: count(&mut rng),
                has_totp: rng.random(),
                credential_changed_within_7d: rng.random(),
                risk_flags: (0..rng.random_range(0..4)).map(|_| text(&mut rng)).collect(),
                velocity: Velocity {
                    account_requests_24h: count(&mut rng),
                    source_network_requests_24h: count(&mut rng),
                    requester_requests_24h: count(&mut rng),
                    destination_requests_24h: count(&mut rng),
                    destination_domain_requests_24h: count(&mut rng),
                },
                signal_friction: count(&mut rng),
                halted: rng.random(),
                open_alerts: (0..rng.random_range(0..4)).map(|_| text(&mut rng)).collect(),
            };
            let context = facts_context(&facts, engine.domain_fact, engine.alerts_fact);
            for action in &engine.actions {
                let checked = Request::new(
                    engine.principal.clone(),
                    action.clone(),
                    engine.resource.clone(),
                    context.clone(),
                    Some(&engine.schema),
                );
                assert!(checked.is_ok(), "{facts:?} for {action}: {checked:?}");
            }
        }
    }
}
