//! Given/when/then tests on the pure case decider (`core::decide`, `core::state`) and the kill-switch decider
//! (`core::control`): every transition of SPEC.md's table, the refusals the domain owes (roles, states, quorum,
//! stale approvals, effects), idempotency of retried commands, the refusal record, and the floors no policy can
//! lower. Histories are built by the decider itself and folded, so every given history is one the core can produce.

use airlock::core::account::{AccountSnapshot, Destination, DestinationKind, HighValueReason, RiskClass};
use airlock::core::action::{ActionHash, RecoveryAction};
use airlock::core::actor::{Actor, Role};
use airlock::core::command::{Change, Command, CommandEnvelope, CommandKind, EffectOutcome, SecondFactorCheck};
use airlock::core::control::{
    ControlCommand, ControlEvent, ControlEventBody, ControlState, decide_control, evolve_control,
};
use airlock::core::decide::{Context, FreshChallenge, decide, effect_id, refusal_event, rollback_effect_id};
use airlock::core::event::{
    Authorization, DenialReason, Event, EventBody, EventKind, ProofFailure, ReviewReason, SecondFactor, WithheldReason,
};
use airlock::core::ids::{AccountId, ActorId, CaseId, ChallengeId, CommandId, DestinationId, EffectId, UnixMs};
use airlock::core::limits::{
    CODE_TTL_MS_DEFAULT, COOLING_OFF_GRACE_MS, COOLING_OFF_MS_MAX, COOLING_OFF_MS_MIN, DAY_MS, HOUR_MS,
    IN_REVIEW_TTL_MS, MINUTE_MS, NEW_DESTINATION_COOLING_OFF_MS_MIN, PROOF_ATTEMPTS_PER_ACCOUNT_MAX,
    PROOF_ATTEMPTS_PER_CASE_MAX, REASON_BYTES_MAX, REFUSALS_RECORDED_PER_CASE_MAX, REQUESTED_TTL_MS,
    REVIEW_APPROVAL_TTL_MS, SUMMARY_BYTES_MAX,
};
use airlock::core::notices::NoticeKind;
use airlock::core::policy::{Outcome, Phase, PolicyDecision, PolicyFacts, Velocity};
use airlock::core::rejection::Rejection;
use airlock::core::signals::Signals;
use airlock::core::state::{CaseState, Status, evolve, fold, initial_state};
use airlock::core::text::UntrustedText;
use airlock::core::verification::{AccountVerificationFacts, CodeHash, CodeKey, Settings, VerificationCode};

// ---------------------------------------------------------------------------------------------------------------
// Fixtures: one standard account, the actors, and the moments every scenario shares.
// ---------------------------------------------------------------------------------------------------------------

const CASE: &str = "case-1";
const CHALLENGE: &str = "challenge-1";
const CODE: &str = "31415926";
const WRONG_CODE: &str = "27182818";
/// The code sent to the phone: every destination gets its own (issue 16); `CODE` is the old email's.
const PHONE_CODE: &str = "16180339";

/// When every case in this file is opened.
const REQUESTED_AT: UnixMs = UnixMs(1_800_000_000_000);
/// When the owner types the code: well inside its lifetime.
const PROVED_AT: UnixMs = UnixMs(REQUESTED_AT.0 + 5 * MINUTE_MS);
/// The cooling-off every test policy asks for unless a test says otherwise: above every floor.
const POLICY_COOLING_OFF_MS: u64 = DAY_MS;

fn before(moment: UnixMs, duration_ms: u64) -> UnixMs {
    UnixMs(moment.0 - duration_ms)
}

fn code_hash(code: &str) -> CodeHash {
    let code = VerificationCode::parse(code).expect("test codes are well formed");
    CodeKey::from_bytes([7; 32]).hash(&ChallengeId::new(CHALLENGE), &code)
}

/// A code of its own for every destination of `account`, as the shell draws them: `CODE` for the old email,
/// `PHONE_CODE` for the phone, others for the rest.
fn fresh_codes(account: &AccountSnapshot) -> FreshChallenge {
    let code_hashes = account
        .destinations
        .iter()
        .enumerate()
        .map(|(index, destination)| {
            let code = match destination.id.as_str() {
                "email-old" => CODE.to_string(),
                "phone-old" => PHONE_CODE.to_string(),
                _ => format!("{:08}", 50_000_000 + index),
            };
            (destination.id.clone(), code_hash(&code))
        })
        .collect();
    FreshChallenge { challenge_id: ChallengeId::new(CHALLENGE), code_hashes }
}

fn intake() -> Actor {
    Actor::new(Role::Intake, "support-agent-7")
}

fn owner() -> Actor {
    Actor::new(Role::Owner, "owner-cancel-link")
}

fn reviewer(number: u8) -> Actor {
    Actor::new(Role::Reviewer, format!("reviewer-{number}"))
}

fn operator() -> Actor {
    Actor::new(Role::Operator, "operator-1")
}

fn text(value: &str) -> UntrustedText {
    UntrustedText::new("reason", value, REASON_BYTES_MAX).expect("test texts are short")
}

fn destination(id: &str, kind: DestinationKind, address: &str, trusted_since: UnixMs, revoked: bool) -> Destination {
    Destination { id: DestinationId::new(id), kind, address: address.to_string(), trusted_since, revoked }
}

fn ids(names: &[&str]) -> Vec<DestinationId> {
    names.iter().map(|name| DestinationId::new(*name)).collect()
}

/// Two destinations old enough for a code, one pre-existing but too young for a code (it still gets notices), one
/// revoked (it gets nothing) and one the directory dates after the request (it gets nothing either).
fn standard_account() -> AccountSnapshot {
    AccountSnapshot {
        account_id: AccountId::new("account-1"),
        known: true,
        risk_class: RiskClass::Standard,
        destinations: vec![
            destination(
                "email-old",
                DestinationKind::Email,
                "alice@example.com",
                before(REQUESTED_AT, 400 * DAY_MS),
                false,
            ),
            destination("phone-old", DestinationKind::Phone, "+15550001234", before(REQUESTED_AT, 30 * DAY_MS), false),
            destination(
                "email-young",
                DestinationKind::Email,
                "young@example.com",
                before(REQUESTED_AT, DAY_MS),
                false,
            ),
            destination(
                "email-lost",
                DestinationKind::Email,
                "lost@example.com",
                before(REQUESTED_AT, 900 * DAY_MS),
                true,
            ),
            destination(
                "email-later",
                DestinationKind::Email,
                "later@example.com",
                REQUESTED_AT.plus(MINUTE_MS),
                false,
            ),
        ],
        totp_enrolled_since: None,
        authenticator_unknown: false,
        last_credential_change: None,
        risk_flags: Vec::new(),
    }
}

const CHALLENGED: [&str; 2] = ["email-old", "phone-old"];
const NOTIFIED: [&str; 3] = ["email-old", "phone-old", "email-young"];

/// Everything outside the case that one decision reads, owned so that a test can tweak one field.
#[derive(Clone)]
struct Env {
    case_id: CaseId,
    now: UnixMs,
    settings: Settings,
    halted: bool,
    account: AccountSnapshot,
    action: RecoveryAction,
    signals: Signals,
    account_facts: AccountVerificationFacts,
    policy: Option<PolicyDecision>,
    fresh: FreshChallenge,
}

impl Env {
    fn standard() -> Env {
        Env {
            case_id: CaseId::new(CASE),
            now: REQUESTED_AT,
            settings: Settings::default(),
            halted: false,
            account: standard_account(),
            action: RecoveryAction::ResetPassword,
            signals: Signals::default(),
            account_facts: AccountVerificationFacts::default(),
            policy: None,
            fresh: fresh_codes(&standard_account()),
        }
    }

    fn high_value() -> Env {
        let mut env = Env::standard();
        env.account.risk_class = RiskClass::HighValue(HighValueReason::Admin);
        env
    }

    fn add_destination() -> Env {
        let mut env = Env::standard();
        env.action = RecoveryAction::AddDestination {
            kind: DestinationKind::Email,
            address: "attacker@evil.example".to_string(),
        };
        env
    }

    fn at(mut self, now: UnixMs) -> Env {
        self.now = now;
        self
    }

    fn halted(mut self, halted: bool) -> Env {
        self.halted = halted;
        self
    }

    fn failed_attempts(mut self, failed_attempts_in_window: u32) -> Env {
        self.account_facts.failed_attempts_in_window = failed_attempts_in_window;
        self
    }

    /// A decision as an honest policy engine would return it: facts gathered from the recorded data, and the
    /// outcome the test wants.
    fn decision(&self, phase: Phase, outcome: Outcome) -> PolicyDecision {
        let facts = PolicyFacts::gather(
            phase,
            &self.account,
            &self.action,
            &self.signals,
            Velocity::default(),
            self.halted,
            REQUESTED_AT,
            &self.settings,
        );
        PolicyDecision {
            policy_version: "test-policy/1".to_string(),
            outcome,
            cooling_off_ms: POLICY_COOLING_OFF_MS,
            reviewers_required: 1,
            rules: vec![format!("test.{outcome:?}")],
            facts,
        }
    }

    fn policy(self, phase: Phase, outcome: Outcome) -> Env {
        let decision = self.decision(phase, outcome);
        self.with_decision(decision)
    }

    fn with_decision(mut self, decision: PolicyDecision) -> Env {
        self.policy = Some(decision);
        self
    }

    fn context(&self) -> Context<'_> {
        Context {
            case_id: &self.case_id,
            now: self.now,
            settings: &self.settings,
            halted: self.halted,
            account: Some(&self.account),
            account_facts: self.account_facts,
            policy: self.policy.as_ref(),
            fresh_challenge: Some(&self.fresh),
        }
    }

    fn request_command(&self) -> Command {
        Command::RequestRecovery {
            account_id: self.account.account_id.clone(),
            action: self.action.clone(),
            summary: UntrustedText::new("summary", "customer says they lost their phone", SUMMARY_BYTES_MAX)
                .expect("short summary"),
            signals: self.signals.clone(),
        }
    }
}

fn envelope(command_id: &str, actor: Actor, command: Command) -> CommandEnvelope {
    CommandEnvelope { command_id: CommandId::new(command_id), actor, command }
}

fn proof(code: &str) -> Command {
    Command::SubmitProof { proof: code_hash(code), second_factor: SecondFactorCheck::NotGiven }
}

fn approve(history: &[Event]) -> Command {
    let action_hash = given(history).facts.expect("a case in review has facts").action_hash;
    Command::ApproveReview { action_hash, reason: text("checked the evidence packet") }
}

fn applied_changes() -> Vec<Change> {
    vec![
        Change { record: "password".to_string(), old: Some("hash-old".to_string()), new: Some("hash-new".to_string()) },
        Change { record: "sessions".to_string(), old: Some("3 open".to_string()), new: Some("0 open".to_string()) },
    ]
}

// ---------------------------------------------------------------------------------------------------------------
// given / when / then
// ---------------------------------------------------------------------------------------------------------------

/// The state of a case after `history`, through the same `fold` the service uses on stored histories.
fn given(history: &[Event]) -> CaseState {
    fold(history).expect("the given history follows the transition table")
}

/// Asks the decider what `command` does to the case after `history`.
fn when(history: &[Event], env: &Env, command: &CommandEnvelope) -> Result<Vec<Event>, Rejection> {
    decide(command, &given(history), &env.context())
}

/// The bodies of the events a decision produced.
fn then_bodies(result: Result<Vec<Event>, Rejection>) -> Vec<EventBody> {
    result
        .unwrap_or_else(|rejection| panic!("expected events, got the rejection {rejection:?}"))
        .into_iter()
        .map(|event| event.body)
        .collect()
}

/// The status of the case once the decision's events are appended to `history`.
fn then_status(history: &[Event], events: &[Event]) -> Status {
    fold(history.iter().chain(events)).expect("decide only produces transitions the table allows").status
}

/// Applies one command that a scenario needs to succeed, and appends its events.
fn step(history: &mut Vec<Event>, env: &Env, command: CommandEnvelope) -> Vec<Event> {
    let events = when(history, env, &command)
        .unwrap_or_else(|rejection| panic!("setup command {} was refused: {rejection}", command.command_id));
    history.extend(events.iter().cloned());
    events
}

// Histories of each state, built by the decider.

/// requested: the intake policy said auto, and a code went to the old-enough destinations.
fn requested(env: &Env) -> Vec<Event> {
    let mut history = Vec::new();
    let intake_env = env.clone().at(REQUESTED_AT).policy(Phase::Intake, Outcome::Auto);
    step(&mut history, &intake_env, envelope("request", intake(), env.request_command()));
    history
}

/// in_review: the intake policy asked for people.
fn in_review(env: &Env) -> Vec<Event> {
    let mut history = Vec::new();
    let intake_env = env.clone().at(REQUESTED_AT).policy(Phase::Intake, Outcome::Review);
    step(&mut history, &intake_env, envelope("request", intake(), env.request_command()));
    history
}

/// cooling_off: the owner proved the code and the authorization policy said auto.
fn cooling_off(env: &Env) -> Vec<Event> {
    let mut history = requested(env);
    let proof_env = env.clone().at(PROVED_AT).policy(Phase::Authorization, Outcome::Auto);
    step(&mut history, &proof_env, envelope("proof", owner(), proof(CODE)));
    history
}

fn cooling_off_ends_at(history: &[Event]) -> UnixMs {
    given(history).cooling_off_ends_at.expect("a case in cooling_off has an end")
}

/// executing: the cooling-off ended and a tick started the first effect.
fn executing(env: &Env) -> Vec<Event> {
    let mut history = cooling_off(env);
    let end = cooling_off_ends_at(&history);
    step(&mut history, &env.clone().at(end), envelope("tick-start", Actor::system(), Command::Tick));
    history
}

/// executed: the executor confirmed the first effect.
fn executed(env: &Env) -> Vec<Event> {
    let mut history = executing(env);
    let now = cooling_off_ends_at(&history).plus(MINUTE_MS);
    let confirm = Command::ConfirmExecution {
        effect_id: effect_id(&env.case_id, 1),
        outcome: EffectOutcome::Applied { changes: applied_changes() },
    };
    step(&mut history, &env.clone().at(now), envelope("confirm", Actor::system(), confirm));
    history
}

fn denied(env: &Env) -> Vec<Event> {
    let mut history = in_review(env);
    let deny = Command::DenyReview { reason: text("story does not hold") };
    step(&mut history, &env.clone().at(PROVED_AT), envelope("deny", reviewer(1), deny));
    history
}

fn cancelled(env: &Env) -> Vec<Event> {
    let mut history = cooling_off(env);
    let cancel = Command::Cancel { reason: text("this was not me") };
    step(&mut history, &env.clone().at(PROVED_AT.plus(HOUR_MS)), envelope("cancel", owner(), cancel));
    history
}

fn expired(env: &Env) -> Vec<Event> {
    let mut history = requested(env);
    let deadline = REQUESTED_AT.plus(REQUESTED_TTL_MS);
    step(&mut history, &env.clone().at(deadline), envelope("tick-expire", Actor::system(), Command::Tick));
    history
}

fn rolled_back(env: &Env) -> Vec<Event> {
    let mut history = executed(env);
    let now = cooling_off_ends_at(&history).plus(DAY_MS);
    let roll_back = Command::RollBack { reason: text("owner reported it from email-old") };
    step(&mut history, &env.clone().at(now), envelope("roll-back", operator(), roll_back));
    history
}

/// One command of every kind of the case decider, each sent by a role that may send it.
fn every_command(history: &[Event]) -> Vec<CommandEnvelope> {
    let action_hash = given(history).facts.map(|facts| facts.action_hash).unwrap_or(ActionHash("none".to_string()));
    vec![
        envelope("any-request", intake(), Env::standard().request_command()),
        envelope("any-proof", owner(), proof(CODE)),
        envelope("any-approve", reviewer(9), Command::ApproveReview { action_hash, reason: text("ok") }),
        envelope("any-deny", reviewer(9), Command::DenyReview { reason: text("no") }),
        envelope("any-cancel", owner(), Command::Cancel { reason: text("stop") }),
        envelope("any-cancel-operator", operator(), Command::Cancel { reason: text("stop") }),
        envelope("any-tick", Actor::system(), Command::Tick),
        envelope(
            "any-confirm",
            Actor::system(),
            Command::ConfirmExecution {
                effect_id: effect_id(&CaseId::new(CASE), 1),
                outcome: EffectOutcome::Applied { changes: Vec::new() },
            },
        ),
        envelope("any-roll-back", operator(), Command::RollBack { reason: text("undo") }),
        envelope(
            "any-notices",
            Actor::system(),
            Command::ConfirmNotices { for_event: 1, destinations: ids(&["email-old"]) },
        ),
        envelope(
            "any-set-password",
            owner(),
            Command::SetPassword { destination: DestinationId::new("email-old"), changes: Vec::new() },
        ),
    ]
}

// ---------------------------------------------------------------------------------------------------------------
// (none) → requested
// ---------------------------------------------------------------------------------------------------------------

// Proves SPEC principle 2 at intake: a request opens the case and a code is issued only to destinations trusted for
// at least the minimum age before the request (not the young, revoked or later ones), each with its own fresh hash,
// the code lifetime and the request deadline; every event carries the time, the actor and the command id.
#[test]
fn request_issues_a_challenge_to_old_enough_destinations_only() {
    let env = Env::standard().policy(Phase::Intake, Outcome::Auto);
    let command = envelope("request", intake(), env.request_command());

    let events = when(&[], &env, &command).expect("an auto intake opens the case");

    assert!(events.iter().all(|event| event.at == REQUESTED_AT && event.actor == intake()));
    assert!(events.iter().all(|event| event.command_id == CommandId::new("request")));
    let bodies: Vec<EventBody> = events.iter().map(|event| event.body.clone()).collect();
    let [EventBody::RecoveryRequested { account_id, action_hash, deadline, intake_decision, snapshot, .. }, issued] =
        &bodies[..]
    else {
        panic!("expected RecoveryRequested then one more event, got {bodies:?}");
    };
    assert_eq!(account_id, &AccountId::new("account-1"));
    assert_eq!(action_hash, &ActionHash::of(&CaseId::new(CASE), account_id, &RecoveryAction::ResetPassword));
    assert_eq!(*deadline, REQUESTED_AT.plus(REQUESTED_TTL_MS));
    assert_eq!(intake_decision.facts.phase, Phase::Intake);
    assert_eq!(snapshot, &standard_account());
    assert_eq!(
        issued,
        &EventBody::ChallengeIssued {
            challenge_id: ChallengeId::new(CHALLENGE),
            destinations: ids(&CHALLENGED),
            code_hashes: vec![code_hash(CODE), code_hash(PHONE_CODE)],
            expires_at: REQUESTED_AT.plus(CODE_TTL_MS_DEFAULT),
        }
    );
    let state = given(&events);
    assert_eq!(state.status, Status::Requested);
    assert_eq!(state.challenge.expect("a code is outstanding").destinations, ids(&CHALLENGED));
}

// Proves that a second request on an existing case opens nothing: the case id is taken.
#[test]
fn request_on_an_existing_case_is_refused() {
    let env = Env::standard().policy(Phase::Intake, Outcome::Auto);
    let history = requested(&env);

    let result = when(&history, &env, &envelope("request-again", intake(), env.request_command()));

    assert_eq!(result, Err(Rejection::CaseExists));
}

// ---------------------------------------------------------------------------------------------------------------
// requested → requested / denied / verified / in_review
// ---------------------------------------------------------------------------------------------------------------

// Proves "requested | proof rejected, attempts left | requested": a wrong code is recorded with the attempts left,
// the fewer of the account's and the case's, and the code stays outstanding.
#[test]
fn wrong_code_with_attempts_left_stays_requested() {
    let env = Env::standard();
    let history = requested(&env);
    for failed_before in 0..PROOF_ATTEMPTS_PER_ACCOUNT_MAX - 1 {
        let proof_env = env.clone().at(PROVED_AT).failed_attempts(failed_before);
        let command = envelope("wrong", owner(), proof(WRONG_CODE));

        let events = when(&history, &proof_env, &command).expect("a wrong code is an event, not a rejection");

        let bodies: Vec<EventBody> = events.iter().map(|event| event.body.clone()).collect();
        let attempts_left = (PROOF_ATTEMPTS_PER_ACCOUNT_MAX - failed_before - 1).min(PROOF_ATTEMPTS_PER_CASE_MAX - 1);
        assert_eq!(
            bodies,
            vec![EventBody::ProofRejected {
                challenge_id: ChallengeId::new(CHALLENGE),
                attempts_left,
                failed: ProofFailure::WrongCode
            }],
            "after {failed_before} earlier failures on the account"
        );
        assert_eq!(then_status(&history, &events), Status::Requested);
        let after: Vec<Event> = history.iter().chain(&events).cloned().collect();
        assert!(given(&after).challenge.is_some(), "the code stays outstanding after a wrong guess");
    }
}

// Proves "requested | proof rejected, no attempts left | denied", counted across the whole account: with four wrong
// codes already recorded on other cases of the account, the first wrong code on this case denies it.
#[test]
fn fifth_wrong_code_across_the_account_denies() {
    let env = Env::standard();
    let history = requested(&env);
    let proof_env = env.at(PROVED_AT).failed_attempts(PROOF_ATTEMPTS_PER_ACCOUNT_MAX - 1);

    let events = when(&history, &proof_env, &envelope("wrong", owner(), proof(WRONG_CODE))).expect("decided");

    assert_eq!(
        events.iter().map(|event| event.body.clone()).collect::<Vec<_>>(),
        vec![
            EventBody::ProofRejected {
                challenge_id: ChallengeId::new(CHALLENGE),
                attempts_left: 0,
                failed: ProofFailure::WrongCode
            },
            EventBody::CaseDenied { reason: DenialReason::AttemptsExhausted },
        ]
    );
    assert_eq!(then_status(&history, &events), Status::Denied);
}

// Proves (ADR 14) that once the account's guessing cap is reached, no code is compared on it, right or wrong: the
// case goes to people, who can still let the owner in, instead of being denied.
#[test]
fn an_account_at_its_guessing_cap_sends_the_case_to_people() {
    let env = Env::standard();
    let history = requested(&env);
    let proof_env =
        env.at(PROVED_AT).failed_attempts(PROOF_ATTEMPTS_PER_ACCOUNT_MAX).policy(Phase::Authorization, Outcome::Auto);
    for (command_id, code) in [("right", CODE), ("wrong", WRONG_CODE)] {
        let bodies = then_bodies(when(&history, &proof_env, &envelope(command_id, owner(), proof(code))));
        assert!(
            matches!(bodies.as_slice(), [EventBody::ReviewRequired { reason: ReviewReason::GuessingCapReached, .. }]),
            "{command_id}: {bodies:?}"
        );
    }
}

// Proves (ADR 14) the third wrong code on one case denies that case alone, however many the account has left: an
// attacker guessing on their own case ends it.
#[test]
fn third_wrong_code_on_one_case_denies_it() {
    let env = Env::standard();
    let mut history = requested(&env);
    let proof_env = env.at(PROVED_AT);
    for attempt in 0..PROOF_ATTEMPTS_PER_CASE_MAX {
        let events = when(&history, &proof_env, &envelope(&format!("wrong-{attempt}"), owner(), proof(WRONG_CODE)))
            .expect("a wrong code is an event");
        history.extend(events);
    }
    assert_eq!(given(&history).status, Status::Denied);
    assert_eq!(history.last().unwrap().body, EventBody::CaseDenied { reason: DenialReason::AttemptsExhausted });
}

// Proves "requested | proof accepted | verified" then "verified | policy auto | cooling_off": the proof names the
// destination whose code it was, the case passes through verified, and the cooling-off notifies every pre-existing
// destination (the young one too, never the revoked one nor the one dated after the request).
#[test]
fn correct_code_with_policy_auto_starts_cooling_off() {
    let env = Env::standard();
    let history = requested(&env);
    let proof_env = env.at(PROVED_AT).policy(Phase::Authorization, Outcome::Auto);
    let decision = proof_env.policy.clone().expect("set above");

    let events = when(&history, &proof_env, &envelope("proof", owner(), proof(CODE))).expect("accepted");

    let bodies: Vec<EventBody> = events.iter().map(|event| event.body.clone()).collect();
    let ends_at = PROVED_AT.plus(POLICY_COOLING_OFF_MS);
    assert_eq!(
        bodies,
        vec![
            EventBody::ProofAccepted { challenge_id: ChallengeId::new(CHALLENGE), destinations: ids(&["email-old"]) },
            EventBody::CoolingOffStarted {
                ends_at,
                deadline: ends_at.plus(COOLING_OFF_GRACE_MS),
                notify: ids(&NOTIFIED),
                authorization: Authorization::Policy { decision },
            },
        ]
    );
    let verified: Vec<Event> = history.iter().chain(&events[..1]).cloned().collect();
    assert_eq!(given(&verified).status, Status::Verified);
    let state = given(&[history, events].concat());
    assert_eq!(state.status, Status::CoolingOff);
    assert_eq!(state.proven_by, ids(&["email-old"]));
    assert_eq!(state.challenge, None, "a used code is single-use");
}

/// A proof with an authenticator code the directory judged `check`.
fn proof_with_totp(code: &str, check: SecondFactorCheck) -> Command {
    Command::SubmitProof { proof: code_hash(code), second_factor: check }
}

fn kinds(events: &[Event]) -> Vec<EventKind> {
    events.iter().map(|event| event.body.kind()).collect()
}

// Proves THREATS 9 at the core: on an account with an authenticator, a factor change proven by the one-time code
// alone is capped there: the policy's "auto" becomes review (reason WeakerProof), never cooling-off.
#[test]
fn factor_change_without_the_authenticator_goes_to_review() {
    for action in [
        RecoveryAction::RemoveTotp,
        RecoveryAction::AddDestination { kind: DestinationKind::Email, address: "new@example.net".into() },
    ] {
        let mut env = Env::standard();
        env.account.totp_enrolled_since = Some(before(REQUESTED_AT, 200 * DAY_MS));
        env.action = action.clone();
        let history = requested(&env);
        let proof_env = env.at(PROVED_AT).policy(Phase::Authorization, Outcome::Auto);

        let events = when(&history, &proof_env, &envelope("proof", owner(), proof(CODE))).expect("accepted");

        assert_eq!(kinds(&events), vec![EventKind::ProofAccepted, EventKind::ReviewRequired], "{action:?}");
        assert!(
            matches!(&events[1].body, EventBody::ReviewRequired { reason: ReviewReason::WeakerProof, .. }),
            "{:?}",
            events[1].body
        );
    }
}

// Proves the other half of THREATS 9: with the authenticator proven too, the same change follows the policy, and the
// proof's strength is recorded before the acceptance; a password reset needs no authenticator.
#[test]
fn factor_change_with_the_authenticator_follows_the_policy() {
    let mut env = Env::standard();
    env.account.totp_enrolled_since = Some(before(REQUESTED_AT, 200 * DAY_MS));
    env.action = RecoveryAction::RemoveTotp;
    let history = requested(&env);
    let proof_env = env.clone().at(PROVED_AT).policy(Phase::Authorization, Outcome::Auto);
    let command = envelope("proof", owner(), proof_with_totp(CODE, SecondFactorCheck::Valid));

    let events = when(&history, &proof_env, &command).expect("accepted");

    assert_eq!(
        kinds(&events),
        vec![EventKind::SecondFactorProven, EventKind::ProofAccepted, EventKind::CoolingOffStarted]
    );
    assert_eq!(given(&[history, events].concat()).second_factor, Some(SecondFactor::Totp));

    let mut reset = env;
    reset.action = RecoveryAction::ResetPassword;
    let history = requested(&reset);
    let proof_env = reset.at(PROVED_AT).policy(Phase::Authorization, Outcome::Auto);
    let events = when(&history, &proof_env, &envelope("proof", owner(), proof(CODE))).expect("accepted");
    assert_eq!(kinds(&events), vec![EventKind::ProofAccepted, EventKind::CoolingOffStarted]);
}

// Proves THREATS 9 where the directory cannot show an authenticator (SCIM, issue 18 item 6): it cannot rule one out
// either, so a factor change proven by the one-time code alone goes to people; a sign-in at the company's identity
// provider with a second factor, as the account, is the stronger proof that lets it follow the policy, and is recorded
// with its time. A reset needs neither.
#[test]
fn a_factor_change_where_the_directory_cannot_show_an_authenticator_needs_a_sign_in() {
    let signed_in = SecondFactorCheck::SignedIn { auth_time: before(PROVED_AT, 30_000) };
    for action in [
        RecoveryAction::RemoveTotp,
        RecoveryAction::AddDestination { kind: DestinationKind::Email, address: "new@example.net".into() },
    ] {
        let mut env = Env::standard();
        env.account.authenticator_unknown = true;
        env.action = action.clone();
        let history = requested(&env);
        let proof_env = env.at(PROVED_AT).policy(Phase::Authorization, Outcome::Auto);

        let events = when(&history, &proof_env, &envelope("proof", owner(), proof(CODE))).expect("accepted");
        assert_eq!(kinds(&events), vec![EventKind::ProofAccepted, EventKind::ReviewRequired], "{action:?}");
        assert!(matches!(&events[1].body, EventBody::ReviewRequired { reason: ReviewReason::WeakerProof, .. }));

        // An authenticator code the shell passed on as valid is not taken: no directory showed one to check.
        let events =
            when(&history, &proof_env, &envelope("totp", owner(), proof_with_totp(CODE, SecondFactorCheck::Valid)))
                .expect("accepted");
        assert_eq!(kinds(&events), vec![EventKind::ProofAccepted, EventKind::ReviewRequired], "{action:?}");

        let events = when(&history, &proof_env, &envelope("signed-in", owner(), proof_with_totp(CODE, signed_in)))
            .expect("accepted");
        assert_eq!(
            kinds(&events),
            vec![EventKind::SecondFactorProven, EventKind::ProofAccepted, EventKind::CoolingOffStarted],
            "{action:?}"
        );
        let factor = SecondFactor::SignIn { auth_time: before(PROVED_AT, 30_000) };
        assert_eq!(given(&[history, events].concat()).second_factor, Some(factor));
    }
    let mut reset = Env::standard();
    reset.account.authenticator_unknown = true;
    let history = requested(&reset);
    let proof_env = reset.at(PROVED_AT).policy(Phase::Authorization, Outcome::Auto);
    let events = when(&history, &proof_env, &envelope("proof", owner(), proof(CODE))).expect("accepted");
    assert_eq!(kinds(&events), vec![EventKind::ProofAccepted, EventKind::CoolingOffStarted]);
}

// Proves a sign-in counts for an account whose authenticator the directory shows, and is no second factor on an
// account the directory says has none: nothing is recorded as proven that did not exist before the request.
#[test]
fn a_sign_in_proves_only_a_factor_the_account_may_have() {
    let signed_in = SecondFactorCheck::SignedIn { auth_time: before(PROVED_AT, 1_000) };
    let mut env = Env::standard();
    env.account.totp_enrolled_since = Some(before(REQUESTED_AT, 200 * DAY_MS));
    env.action = RecoveryAction::RemoveTotp;
    let history = requested(&env);
    let proof_env = env.at(PROVED_AT).policy(Phase::Authorization, Outcome::Auto);
    let events =
        when(&history, &proof_env, &envelope("proof", owner(), proof_with_totp(CODE, signed_in))).expect("accepted");
    assert_eq!(
        kinds(&events),
        vec![EventKind::SecondFactorProven, EventKind::ProofAccepted, EventKind::CoolingOffStarted]
    );

    let mut none = Env::standard();
    none.action = RecoveryAction::AddDestination { kind: DestinationKind::Email, address: "new@example.net".into() };
    let history = requested(&none);
    let proof_env = none.at(PROVED_AT).policy(Phase::Authorization, Outcome::Auto);
    let events =
        when(&history, &proof_env, &envelope("proof", owner(), proof_with_totp(CODE, signed_in))).expect("accepted");
    assert_eq!(kinds(&events), vec![EventKind::ProofAccepted, EventKind::CoolingOffStarted]);
    assert_eq!(given(&[history, events].concat()).second_factor, None);
}

// Proves a wrong authenticator code fails the whole proof, even with the right one-time code, and counts against the
// account's allowance like a wrong code; the event records that the code was right and the authenticator's was not
// (ADR 11), and a wrong code with it is recorded as a wrong code.
#[test]
fn wrong_authenticator_code_rejects_the_proof() {
    let mut env = Env::standard();
    env.account.totp_enrolled_since = Some(before(REQUESTED_AT, 200 * DAY_MS));
    env.action = RecoveryAction::RemoveTotp;
    let history = requested(&env);
    let proof_env = env.at(PROVED_AT).policy(Phase::Authorization, Outcome::Auto);
    let command = envelope("proof", owner(), proof_with_totp(CODE, SecondFactorCheck::Invalid));

    let events = when(&history, &proof_env, &command).expect("recorded");

    assert_eq!(kinds(&events), vec![EventKind::ProofRejected]);
    assert!(matches!(events[0].body, EventBody::ProofRejected { failed: ProofFailure::WrongSecondFactor, .. }));
    assert_eq!(given(&[history.clone(), events].concat()).status, Status::Requested);
    let both_wrong = envelope("proof-2", owner(), proof_with_totp(WRONG_CODE, SecondFactorCheck::Invalid));
    let events = when(&history, &proof_env, &both_wrong).expect("recorded");
    assert!(matches!(events[0].body, EventBody::ProofRejected { failed: ProofFailure::WrongCode, .. }));
}

// Proves the SIM-swap floor (issue 16): every destination gets its own code, and the phone's code alone, while the
// account's email was sent one too, goes to people (`PhoneOnlyProof`) even under an auto policy: that is what a phone
// number taken over without the carrier telling anyone looks like. The acceptance names the phone.
#[test]
fn the_phones_code_alone_goes_to_people_when_an_email_got_one_too() {
    let env = Env::standard();
    let history = requested(&env);
    let proof_env = env.at(PROVED_AT).policy(Phase::Authorization, Outcome::Auto);

    let events = when(&history, &proof_env, &envelope("proof", owner(), proof(PHONE_CODE))).expect("accepted");

    assert_eq!(
        events[0].body,
        EventBody::ProofAccepted { challenge_id: ChallengeId::new(CHALLENGE), destinations: ids(&["phone-old"]) }
    );
    assert!(
        matches!(&events[1].body, EventBody::ReviewRequired { reason: ReviewReason::PhoneOnlyProof, .. }),
        "{:?}",
        events[1].body
    );
    assert_eq!(given(&[history, events].concat()).status, Status::InReview);
}

// Proves (issue 18, item 6) a sign-in at the identity provider does not lift the SIM-swap floor: the provider may have
// let it through with a code sent to that same phone, so the phone's code with a sign-in still goes to people
// (`PhoneOnlyProof`), though the sign-in is recorded.
#[test]
fn a_sign_in_does_not_lift_the_phone_floor() {
    let mut env = Env::standard();
    env.account.authenticator_unknown = true;
    env.fresh = fresh_codes(&env.account);
    let history = requested(&env);
    let proof_env = env.at(PROVED_AT).policy(Phase::Authorization, Outcome::Auto);
    let signed_in = SecondFactorCheck::SignedIn { auth_time: before(PROVED_AT, 1_000) };
    let events = when(&history, &proof_env, &envelope("proof", owner(), proof_with_totp(PHONE_CODE, signed_in)))
        .expect("accepted");
    assert_eq!(
        kinds(&events),
        vec![EventKind::SecondFactorProven, EventKind::ProofAccepted, EventKind::ReviewRequired]
    );
    assert!(matches!(&events[2].body, EventBody::ReviewRequired { reason: ReviewReason::PhoneOnlyProof, .. }));
}

// Proves a sign-in as another account than the case's, with the right code, fails the proof as its own kind of wrong
// second factor: counted against the account like a wrong authenticator code, and recorded as a sign-in as another
// account for reviewers; with a wrong code it is recorded as a wrong code.
#[test]
fn a_sign_in_as_another_account_is_a_counted_wrong_second_factor() {
    let mut env = Env::standard();
    env.account.authenticator_unknown = true;
    env.action = RecoveryAction::RemoveTotp;
    let history = requested(&env);
    let proof_env = env.at(PROVED_AT).policy(Phase::Authorization, Outcome::Auto);
    let other = SecondFactorCheck::SignedInAsAnother;
    let events =
        when(&history, &proof_env, &envelope("proof", owner(), proof_with_totp(CODE, other))).expect("recorded");
    assert_eq!(kinds(&events), vec![EventKind::ProofRejected]);
    let EventBody::ProofRejected { failed, attempts_left, .. } = &events[0].body else { unreachable!() };
    assert_eq!(*failed, ProofFailure::SignedInAsAnother);
    assert_eq!(*attempts_left, PROOF_ATTEMPTS_PER_CASE_MAX - 1, "it counts");
    let events =
        when(&history, &proof_env, &envelope("p-2", owner(), proof_with_totp(WRONG_CODE, other))).expect("recorded");
    assert!(matches!(events[0].body, EventBody::ProofRejected { failed: ProofFailure::WrongCode, .. }));
}

// Proves the floor's limits: on an account whose only eligible destination is a phone, its code follows the policy
// (there is nothing stronger to ask for); with the authenticator proven alongside, the phone's code follows the
// policy too; and a policy that denies still denies.
#[test]
fn the_phones_code_follows_the_policy_without_an_email_or_with_the_authenticator() {
    let mut phone_only = Env::standard();
    phone_only.account.destinations.retain(|destination| destination.kind == DestinationKind::Phone);
    phone_only.fresh = fresh_codes(&phone_only.account);
    let history = requested(&phone_only);
    let proof_env = phone_only.at(PROVED_AT).policy(Phase::Authorization, Outcome::Auto);
    let events = when(&history, &proof_env, &envelope("proof", owner(), proof(PHONE_CODE))).expect("accepted");
    assert_eq!(kinds(&events), vec![EventKind::ProofAccepted, EventKind::CoolingOffStarted]);

    let mut with_totp = Env::standard();
    with_totp.account.totp_enrolled_since = Some(before(REQUESTED_AT, 200 * DAY_MS));
    with_totp.fresh = fresh_codes(&with_totp.account);
    let history = requested(&with_totp);
    let proof_env = with_totp.clone().at(PROVED_AT).policy(Phase::Authorization, Outcome::Auto);
    let command = envelope("proof", owner(), proof_with_totp(PHONE_CODE, SecondFactorCheck::Valid));
    let events = when(&history, &proof_env, &command).expect("accepted");
    assert_eq!(
        kinds(&events),
        vec![EventKind::SecondFactorProven, EventKind::ProofAccepted, EventKind::CoolingOffStarted]
    );

    let proof_env = with_totp.at(PROVED_AT).policy(Phase::Authorization, Outcome::Deny);
    let events = when(&history, &proof_env, &envelope("proof", owner(), proof(PHONE_CODE))).expect("accepted");
    assert_eq!(kinds(&events), vec![EventKind::ProofAccepted, EventKind::CaseDenied]);
}

// Proves "verified | policy review | in_review": the authorization policy can send a proven case to people.
#[test]
fn correct_code_with_policy_review_goes_to_review() {
    let env = Env::standard();
    let history = requested(&env);
    let proof_env = env.at(PROVED_AT).policy(Phase::Authorization, Outcome::Review);
    let decision = proof_env.policy.clone().expect("set above");

    let events = when(&history, &proof_env, &envelope("proof", owner(), proof(CODE))).expect("accepted");

    assert_eq!(
        events.iter().map(|event| event.body.clone()).collect::<Vec<_>>(),
        vec![
            EventBody::ProofAccepted { challenge_id: ChallengeId::new(CHALLENGE), destinations: ids(&["email-old"]) },
            EventBody::ReviewRequired {
                decision,
                reason: ReviewReason::PolicyReview,
                deadline: PROVED_AT.plus(IN_REVIEW_TTL_MS)
            },
        ]
    );
    let state = given(&[history, events].concat());
    assert_eq!(state.status, Status::InReview);
    assert_eq!(state.reviewers_required, 1);
}

// Proves "requested | policy deny | denied" at intake: the case opens (so the history shows the attempt) and is
// denied at once with the rules that decided; no code is sent.
#[test]
fn policy_deny_at_intake_denies_without_a_code() {
    let env = Env::standard().policy(Phase::Intake, Outcome::Deny);

    let events = when(&[], &env, &envelope("request", intake(), env.request_command())).expect("decided");

    let bodies: Vec<EventBody> = events.iter().map(|event| event.body.clone()).collect();
    assert_eq!(bodies[0].kind(), EventKind::RecoveryRequested);
    assert_eq!(
        bodies[1..],
        [EventBody::CaseDenied { reason: DenialReason::Policy { rules: vec!["test.Deny".to_string()] } }]
    );
    assert_eq!(given(&events).status, Status::Denied);
    assert_eq!(given(&events).challenge, None);
}

// Proves "verified | policy deny | denied": a valid proof does not force the change through a denying policy.
#[test]
fn policy_deny_after_proof_denies() {
    let env = Env::standard();
    let history = requested(&env);
    let proof_env = env.at(PROVED_AT).policy(Phase::Authorization, Outcome::Deny);

    let events = when(&history, &proof_env, &envelope("proof", owner(), proof(CODE))).expect("decided");

    assert_eq!(
        events.iter().map(|event| event.body.kind()).collect::<Vec<_>>(),
        vec![EventKind::ProofAccepted, EventKind::CaseDenied]
    );
    assert_eq!(
        events[1].body,
        EventBody::CaseDenied { reason: DenialReason::Policy { rules: vec!["test.Deny".to_string()] } }
    );
    assert_eq!(then_status(&history, &events), Status::Denied);
}

// Proves "requested | no eligible factor | in_review": an account whose destinations are all too young (or revoked)
// gets no code at all and goes to people.
#[test]
fn no_eligible_factor_goes_to_review_without_a_code() {
    let mut env = Env::standard();
    env.account
        .destinations
        .retain(|destination| destination.id.as_str() != "email-old" && destination.id.as_str() != "phone-old");
    let env = env.policy(Phase::Intake, Outcome::Auto);

    let events = when(&[], &env, &envelope("request", intake(), env.request_command())).expect("decided");

    let bodies: Vec<EventBody> = events.iter().map(|event| event.body.clone()).collect();
    assert_eq!(
        bodies[1..],
        [EventBody::ReviewRequired {
            decision: env.policy.clone().expect("set above"),
            reason: ReviewReason::NoEligibleFactor,
            deadline: REQUESTED_AT.plus(IN_REVIEW_TTL_MS),
        }]
    );
    assert_eq!(given(&events).status, Status::InReview);
}

// Proves "requested | policy review | in_review" at intake: people look before any code is sent.
#[test]
fn intake_policy_review_goes_to_review_without_a_code() {
    let history = in_review(&Env::standard());

    assert_eq!(
        history.iter().map(|event| event.body.kind()).collect::<Vec<_>>(),
        vec![EventKind::RecoveryRequested, EventKind::ReviewRequired]
    );
    let EventBody::ReviewRequired { reason, .. } = &history[1].body else { unreachable!("checked above") };
    assert_eq!(*reason, ReviewReason::PolicyReview);
    assert_eq!(given(&history).status, Status::InReview);
}

// Proves THREATS 8 at the core: an unknown account opens a case that looks like any other, but no code is drawn
// and no review is opened, whatever the intake policy said; a proof on it finds no outstanding code.
#[test]
fn unknown_account_withholds_the_challenge() {
    for outcome in [Outcome::Auto, Outcome::Review] {
        let mut env = Env::standard();
        env.account = AccountSnapshot::unknown(AccountId::new("ghost"));
        let env = env.policy(Phase::Intake, outcome);

        let events = when(&[], &env, &envelope("request", intake(), env.request_command())).expect("decided");

        assert_eq!(
            events.iter().map(|event| event.body.clone()).skip(1).collect::<Vec<_>>(),
            vec![EventBody::ChallengeWithheld { reason: WithheldReason::UnknownAccount }],
            "intake outcome {outcome:?}"
        );
        assert_eq!(given(&events).status, Status::Requested);
        assert_eq!(given(&events).challenge, None);
        let proof_env = env.clone().at(PROVED_AT).policy(Phase::Authorization, Outcome::Auto);
        assert_eq!(
            when(&events, &proof_env, &envelope("guess", owner(), proof(CODE))),
            Err(Rejection::NoOutstandingChallenge)
        );
    }
}

// Proves THREATS 7 "one outstanding code at a time": while another case of the account holds a code, this case
// issues none; and (ADR 14) it goes to people instead of waiting for nothing.
#[test]
fn another_outstanding_code_sends_the_case_to_people() {
    let mut env = Env::standard().policy(Phase::Intake, Outcome::Auto);
    env.account_facts.outstanding_challenge_elsewhere = true;

    let events = when(&[], &env, &envelope("request", intake(), env.request_command())).expect("decided");

    assert!(
        matches!(events[1].body, EventBody::ReviewRequired { reason: ReviewReason::AnotherCodeOutstanding, .. }),
        "{:?}",
        events[1].body
    );
    assert_eq!(given(&events).challenge, None);
    assert_eq!(given(&events).status, Status::InReview);
}

// Proves that an account at its guessing cap gets no new code from a new case, and (ADR 14) that the case goes to
// people instead of waiting for nothing.
#[test]
fn an_account_at_its_guessing_cap_gets_no_new_code_but_a_person() {
    let env = Env::standard().policy(Phase::Intake, Outcome::Auto).failed_attempts(PROOF_ATTEMPTS_PER_ACCOUNT_MAX);

    let events = when(&[], &env, &envelope("request", intake(), env.request_command())).expect("decided");

    assert!(
        matches!(events[1].body, EventBody::ReviewRequired { reason: ReviewReason::GuessingCapReached, .. }),
        "{:?}",
        events[1].body
    );
    assert_eq!(given(&events).challenge, None);
}

// Proves that a code is short-lived: once it expired, a proof is refused even if the digits are right.
#[test]
fn expired_code_is_refused() {
    let env = Env::standard();
    let history = requested(&env);
    let late = env.at(REQUESTED_AT.plus(CODE_TTL_MS_DEFAULT)).policy(Phase::Authorization, Outcome::Auto);

    assert_eq!(when(&history, &late, &envelope("late", owner(), proof(CODE))), Err(Rejection::ChallengeExpired));
}

// ---------------------------------------------------------------------------------------------------------------
// High-value accounts and policy floors
// ---------------------------------------------------------------------------------------------------------------

// Proves SPEC principle 6 against a wrong policy: for a high-value account, an authorization decision of Auto
// (built by hand, as a buggy engine might return it) still sends the proven case to review with two reviewers.
#[test]
fn high_value_with_policy_auto_still_goes_to_review() {
    let env = Env::high_value();
    let history = requested(&env);
    let mut wrong = env.decision(Phase::Authorization, Outcome::Auto);
    wrong.rules = vec!["buggy.always-auto".to_string()];
    let proof_env = env.at(PROVED_AT).with_decision(wrong);

    let events = when(&history, &proof_env, &envelope("proof", owner(), proof(CODE))).expect("decided");

    assert_eq!(
        events.iter().map(|event| event.body.kind()).collect::<Vec<_>>(),
        vec![EventKind::ProofAccepted, EventKind::ReviewRequired]
    );
    let EventBody::ReviewRequired { reason, .. } = &events[1].body else { unreachable!("checked above") };
    assert_eq!(*reason, ReviewReason::PolicyReview);
    let state = given(&[history, events].concat());
    assert_eq!(state.status, Status::InReview);
    assert_eq!(state.reviewers_required, 2);
}

// Proves the cooling-off floors of SPEC principle 5: a policy asking for less than the floor gets the floor (one
// hour for any change, 72 hours when the change adds a destination), and one asking for more than the cap gets the
// cap.
#[test]
fn cooling_off_shorter_than_the_floor_gets_the_floor() {
    let cases = [
        (Env::standard(), 0, COOLING_OFF_MS_MIN),
        (Env::standard(), COOLING_OFF_MS_MIN - 1, COOLING_OFF_MS_MIN),
        (Env::add_destination(), 0, NEW_DESTINATION_COOLING_OFF_MS_MIN),
        (Env::add_destination(), HOUR_MS, NEW_DESTINATION_COOLING_OFF_MS_MIN),
        (Env::standard(), u64::MAX, COOLING_OFF_MS_MAX),
    ];
    for (env, asked_ms, applied_ms) in cases {
        let history = requested(&env);
        let mut decision = env.decision(Phase::Authorization, Outcome::Auto);
        decision.cooling_off_ms = asked_ms;
        let proof_env = env.clone().at(PROVED_AT).with_decision(decision);

        let events = when(&history, &proof_env, &envelope("proof", owner(), proof(CODE))).expect("decided");

        let EventBody::CoolingOffStarted { ends_at, .. } = &events[1].body else {
            panic!("expected a cooling-off, got {:?}", events[1].body);
        };
        assert_eq!(*ends_at, PROVED_AT.plus(applied_ms), "{} asking for {asked_ms} ms", env.action.name());
    }
}

// Proves that the floor holds on the quorum path too: a reviewed new-destination change waits 72 hours even if the
// policy asked for none.
#[test]
fn quorum_path_also_gets_the_new_destination_floor() {
    let env = Env::add_destination();
    let mut decision = env.decision(Phase::Intake, Outcome::Review);
    decision.cooling_off_ms = 0;
    let mut history = Vec::new();
    step(&mut history, &env.clone().with_decision(decision), envelope("request", intake(), env.request_command()));
    let approved_at = REQUESTED_AT.plus(HOUR_MS);

    let events =
        when(&history, &env.at(approved_at), &envelope("approve-1", reviewer(1), approve(&history))).expect("ok");

    let EventBody::CoolingOffStarted { ends_at, .. } = &events[1].body else { panic!("expected cooling-off") };
    assert_eq!(*ends_at, approved_at.plus(NEW_DESTINATION_COOLING_OFF_MS_MIN));
}

// ---------------------------------------------------------------------------------------------------------------
// in_review → in_review / cooling_off / denied
// ---------------------------------------------------------------------------------------------------------------

// Proves "in_review | approval, quorum met | cooling_off" with a quorum of one: the approval is recorded against
// the action hash, and the cooling-off is authorized by the named reviewer and notifies every pre-existing
// destination.
#[test]
fn one_approval_meets_a_quorum_of_one() {
    let env = Env::standard();
    let history = in_review(&env);
    let action_hash = given(&history).facts.expect("facts").action_hash;
    let now = REQUESTED_AT.plus(HOUR_MS);

    let bodies =
        then_bodies(when(&history, &env.clone().at(now), &envelope("approve-1", reviewer(1), approve(&history))));

    let ends_at = now.plus(POLICY_COOLING_OFF_MS);
    assert_eq!(
        bodies,
        vec![
            EventBody::ReviewApproved {
                reviewer: ActorId::new("reviewer-1"),
                action_hash,
                approvals: 1,
                required: 1,
                reason: text("checked the evidence packet"),
            },
            EventBody::CoolingOffStarted {
                ends_at,
                deadline: ends_at.plus(COOLING_OFF_GRACE_MS),
                notify: ids(&NOTIFIED),
                authorization: Authorization::Quorum { reviewers: vec![ActorId::new("reviewer-1")] },
            },
        ]
    );
}

// Proves SPEC principle 6 for high-value accounts: the first approval keeps the case in review, the second by a
// distinct reviewer meets the quorum, and the authorization names both.
#[test]
fn high_value_needs_two_distinct_reviewers() {
    let env = Env::high_value();
    let mut history = in_review(&env);
    assert_eq!(given(&history).reviewers_required, 2);

    let approval = envelope("approve-1", reviewer(1), approve(&history));
    let first = step(&mut history, &env.clone().at(PROVED_AT), approval);

    assert_eq!(first.len(), 1);
    let EventBody::ReviewApproved { approvals: 1, required: 2, .. } = &first[0].body else {
        panic!("expected approval 1 of 2, got {:?}", first[0].body);
    };
    assert_eq!(given(&history).status, Status::InReview);

    let second =
        when(&history, &env.at(PROVED_AT), &envelope("approve-2", reviewer(2), approve(&history))).expect("ok");

    let EventBody::ReviewApproved { approvals: 2, required: 2, .. } = &second[0].body else {
        panic!("expected approval 2 of 2, got {:?}", second[0].body);
    };
    let EventBody::CoolingOffStarted { authorization, .. } = &second[1].body else { panic!("expected cooling-off") };
    assert_eq!(
        authorization,
        &Authorization::Quorum { reviewers: vec![ActorId::new("reviewer-1"), ActorId::new("reviewer-2")] }
    );
    assert_eq!(then_status(&history, &second), Status::CoolingOff);
}

// Proves (issue 15, item 13) a command id means one command per sender: a reviewer's denial under the id of their own
// approval is refused as `command_id_reused`, not taken for a retry of the approval; the same approval again is one;
// and another reviewer may use the same id for their own approval.
#[test]
fn a_denial_under_an_approvals_id_is_refused() {
    let env = Env::high_value();
    let mut history = in_review(&env);
    let at = env.clone().at(PROVED_AT);
    let approval = approve(&history);
    step(&mut history, &at, envelope("decision-1", reviewer(1), approval));

    let retry = when(&history, &at, &envelope("decision-1", reviewer(1), approve(&history)));
    assert_eq!(retry, Ok(Vec::new()), "the same approval again is a retry");
    let denial = Command::DenyReview { reason: text("changed my mind") };
    let reused = when(&history, &at, &envelope("decision-1", reviewer(1), denial));
    assert_eq!(reused, Err(Rejection::CommandIdReused));
    let other_action = Command::ApproveReview { action_hash: ActionHash("0".repeat(64)), reason: text("ok") };
    let reused = when(&history, &at, &envelope("decision-1", reviewer(1), other_action));
    assert_eq!(reused, Err(Rejection::CommandIdReused), "an approval of another action under the same id");
    let other = when(&history, &at, &envelope("decision-1", reviewer(2), approve(&history))).expect("decided");
    assert!(matches!(other[0].body, EventBody::ReviewApproved { approvals: 2, .. }), "{:?}", other[0].body);
}

// Proves that an approval expires: a second reviewer agreeing more than REVIEW_APPROVAL_TTL_MS after the first does
// not meet a two-reviewer quorum (the first approval no longer counts), the first reviewer may then approve again,
// and the quorum names only the approvals that counted.
#[test]
fn an_approval_expires_before_a_late_second_one() {
    let env = Env::high_value();
    let mut history = in_review(&env);
    let first = envelope("approve-1", reviewer(1), approve(&history));
    step(&mut history, &env.clone().at(PROVED_AT), first);
    let late = env.clone().at(PROVED_AT.plus(REVIEW_APPROVAL_TTL_MS));

    let second = envelope("approve-2", reviewer(2), approve(&history));
    let second = step(&mut history, &late, second);

    assert_eq!(second.len(), 1, "no quorum from an expired approval: {second:?}");
    let EventBody::ReviewApproved { approvals: 1, required: 2, .. } = &second[0].body else { panic!("{second:?}") };
    assert_eq!(given(&history).status, Status::InReview);
    let again = when(&history, &late, &envelope("approve-1-again", reviewer(1), approve(&history))).expect("ok");
    let EventBody::CoolingOffStarted { authorization, .. } = &again[1].body else { panic!("{again:?}") };
    assert_eq!(
        authorization,
        &Authorization::Quorum { reviewers: vec![ActorId::new("reviewer-2"), ActorId::new("reviewer-1")] }
    );
    let repeat = when(&history, &late, &envelope("approve-2-again", reviewer(2), approve(&history)));
    assert_eq!(repeat, Err(Rejection::DuplicateApproval), "a live approval is not given twice");
}

// Proves (issue 19) that nobody approves a change to their own account: a reviewer whose id is the case's account id
// (the console names people by the identity provider's subject, the account id there) is refused, and another
// reviewer is not.
#[test]
fn approving_a_change_to_ones_own_account_is_refused() {
    let env = Env::standard();
    let history = in_review(&env);
    let account_holder = Actor::new(Role::Reviewer, env.account.account_id.as_str());

    let result = when(&history, &env, &envelope("approve-own", account_holder, approve(&history)));

    assert_eq!(result, Err(Rejection::OwnAccountApproval));
    assert!(when(&history, &env, &envelope("approve-other", reviewer(1), approve(&history))).is_ok());
}

// Proves that nobody approves their own request: a reviewer whose id is the requester's is refused.
#[test]
fn self_approval_is_refused() {
    let env = Env::standard();
    let history = in_review(&env);
    let same_person = Actor::new(Role::Reviewer, intake().id.as_str());

    let result = when(&history, &env, &envelope("approve-self", same_person, approve(&history)));

    assert_eq!(result, Err(Rejection::SelfApproval));
}

// Proves a change that would reach nobody cannot be approved (issue 17): a password reset on an account whose every
// destination is revoked or was dated after the request is refused as nothing_deliverable, and nothing is recorded;
// adding a destination to the same account, which reaches the destination it adds, can still be approved.
#[test]
fn a_reset_nobody_could_receive_cannot_be_approved() {
    let mut env = Env::standard();
    env.account.destinations.retain(|destination| ["email-lost", "email-later"].contains(&destination.id.as_str()));
    env.fresh = fresh_codes(&env.account);
    let history = in_review(&env);
    let result = when(&history, &env, &envelope("approve-nobody", reviewer(1), approve(&history)));
    assert_eq!(result, Err(Rejection::NothingDeliverable));

    let mut adding = Env::add_destination();
    adding.account = env.account.clone();
    adding.fresh = fresh_codes(&adding.account);
    let history = in_review(&adding);
    let result = when(&history, &adding, &envelope("approve-add", reviewer(1), approve(&history)));
    assert!(result.is_ok(), "{result:?}");
}

// Proves that a quorum needs distinct people: the same reviewer approving twice (with a new command id) is refused.
#[test]
fn duplicate_approval_is_refused() {
    let env = Env::high_value();
    let mut history = in_review(&env);
    let approval = envelope("approve-1", reviewer(1), approve(&history));
    step(&mut history, &env, approval);

    let result = when(&history, &env, &envelope("approve-1-again", reviewer(1), approve(&history)));

    assert_eq!(result, Err(Rejection::DuplicateApproval));
}

// Proves that an approval is bound to the exact action: a hash of another action, or of the same action on another
// case, is refused.
#[test]
fn approval_of_another_action_is_refused() {
    let env = Env::standard();
    let history = in_review(&env);
    let account = AccountId::new("account-1");
    let stale_hashes = [
        ActionHash::of(&CaseId::new(CASE), &account, &RecoveryAction::RemoveTotp),
        ActionHash::of(&CaseId::new("case-2"), &account, &RecoveryAction::ResetPassword),
        ActionHash::of(&CaseId::new(CASE), &AccountId::new("account-2"), &RecoveryAction::ResetPassword),
    ];
    for action_hash in stale_hashes {
        let command = Command::ApproveReview { action_hash, reason: text("looks fine") };

        assert_eq!(
            when(&history, &env, &envelope("approve", reviewer(1), command)),
            Err(Rejection::ActionHashMismatch)
        );
    }
}

// Proves "in_review | review denied | denied": the denial names the reviewer and keeps their reason.
#[test]
fn review_deny_denies() {
    let env = Env::standard();
    let history = in_review(&env);
    let command = Command::DenyReview { reason: text("story does not hold") };

    let events = when(&history, &env, &envelope("deny", reviewer(1), command)).expect("decided");

    assert_eq!(
        events[0].body,
        EventBody::CaseDenied {
            reason: DenialReason::Reviewer {
                reviewer: ActorId::new("reviewer-1"),
                reason: text("story does not hold")
            }
        }
    );
    assert_eq!(then_status(&history, &events), Status::Denied);
}

// ---------------------------------------------------------------------------------------------------------------
// cooling_off → cancelled / executing / expired
// ---------------------------------------------------------------------------------------------------------------

// Proves "cooling_off | owner or operator cancels | cancelled" for both roles.
#[test]
fn owner_or_operator_cancels_during_cooling_off() {
    let env = Env::standard();
    let history = cooling_off(&env);
    for actor in [owner(), operator()] {
        let command = Command::Cancel { reason: text("this was not me") };

        let events = when(&history, &env, &envelope("cancel", actor.clone(), command)).expect("decided");

        assert_eq!(
            events.iter().map(|event| event.body.clone()).collect::<Vec<_>>(),
            vec![EventBody::CaseCancelled { reason: text("this was not me") }]
        );
        assert_eq!(then_status(&history, &events), Status::Cancelled, "cancel by {actor}");
    }
}

// Proves that a cancel means something only while a change waits: in requested, in_review, executing and executed
// it is refused as a wrong state.
#[test]
fn cancel_outside_cooling_off_is_refused() {
    let env = Env::standard();
    let histories = [
        (requested(&env), Status::Requested),
        (in_review(&env), Status::InReview),
        (executing(&env), Status::Executing),
        (executed(&env), Status::Executed),
    ];
    for (history, status) in histories {
        for actor in [owner(), operator()] {
            let command = Command::Cancel { reason: text("stop") };

            let result = when(&history, &env, &envelope("cancel", actor, command));

            assert_eq!(result, Err(Rejection::WrongState { status, command: CommandKind::Cancel }));
        }
    }
}

// Proves that the timer never cuts a cooling-off short: a tick one millisecond before the end does nothing.
#[test]
fn tick_before_the_end_of_cooling_off_does_nothing() {
    let env = Env::standard();
    let history = cooling_off(&env);
    let end = cooling_off_ends_at(&history);

    let events = when(&history, &env.at(before(end, 1)), &envelope("tick", Actor::system(), Command::Tick));

    assert_eq!(events, Ok(Vec::new()));
}

// Proves "cooling_off | period elapsed, automation not halted | executing" with an effect id derived from the case
// and the attempt number (so a replay or a retried tick derives the very same id).
#[test]
fn tick_after_the_end_starts_execution_with_a_derived_effect_id() {
    let env = Env::standard();
    let history = cooling_off(&env);
    let end = cooling_off_ends_at(&history);
    for now in [end, end.plus(HOUR_MS)] {
        let events =
            when(&history, &env.clone().at(now), &envelope("tick", Actor::system(), Command::Tick)).expect("ok");

        assert_eq!(
            events.iter().map(|event| event.body.clone()).collect::<Vec<_>>(),
            vec![EventBody::ExecutionStarted { effect_id: effect_id(&CaseId::new(CASE), 1) }]
        );
        assert_eq!(then_status(&history, &events), Status::Executing);
    }
    assert_eq!(effect_id(&CaseId::new(CASE), 1), effect_id(&CaseId::new(CASE), 1));
    assert_ne!(effect_id(&CaseId::new(CASE), 1), effect_id(&CaseId::new(CASE), 2));
    assert_ne!(effect_id(&CaseId::new(CASE), 1), effect_id(&CaseId::new("case-2"), 1));
}

// Proves SPEC principle 11: while the kill switch is on, an elapsed cooling-off does not start execution; once
// automation resumes, the next tick does.
#[test]
fn tick_while_halted_does_nothing() {
    let env = Env::standard();
    let history = cooling_off(&env);
    let now = cooling_off_ends_at(&history).plus(DAY_MS);

    let halted = when(&history, &env.clone().at(now).halted(true), &envelope("tick-1", Actor::system(), Command::Tick));
    let resumed = when(&history, &env.at(now).halted(false), &envelope("tick-2", Actor::system(), Command::Tick));

    assert_eq!(halted, Ok(Vec::new()));
    assert_eq!(then_bodies(resumed).iter().map(EventBody::kind).collect::<Vec<_>>(), vec![EventKind::ExecutionStarted]);
}

// Proves "requested, in_review, cooling_off | time limit passed | expired", each at its own deadline and not a
// millisecond before; a cooling-off held by the kill switch expires after its grace period instead of executing.
#[test]
fn tick_past_the_deadline_expires() {
    let env = Env::standard();
    let cooling = cooling_off(&env);
    let cases = [
        ("requested", requested(&env), REQUESTED_AT.plus(REQUESTED_TTL_MS), false),
        ("in_review", in_review(&env), REQUESTED_AT.plus(IN_REVIEW_TTL_MS), false),
        ("cooling_off halted", cooling.clone(), cooling_off_ends_at(&cooling).plus(COOLING_OFF_GRACE_MS), true),
        ("cooling_off", cooling.clone(), cooling_off_ends_at(&cooling).plus(COOLING_OFF_GRACE_MS), false),
    ];
    for (name, history, deadline, halted) in cases {
        let tick = envelope("tick", Actor::system(), Command::Tick);
        let early = when(&history, &env.clone().at(before(deadline, 1)).halted(halted), &tick).expect("ok");
        assert!(early.iter().all(|event| event.body.kind() != EventKind::CaseExpired), "{name}: expired early");

        let events = when(&history, &env.clone().at(deadline).halted(halted), &tick).expect("ok");

        assert_eq!(
            events.iter().map(|event| event.body.clone()).collect::<Vec<_>>(),
            vec![EventBody::CaseExpired],
            "{name}"
        );
        assert_eq!(then_status(&history, &events), Status::Expired, "{name}");
    }
}

// Proves that a tick in a state that waits on nobody's clock (executing, executed) does nothing.
#[test]
fn tick_without_a_timer_does_nothing() {
    let env = Env::standard().at(REQUESTED_AT.plus(365 * DAY_MS));
    for history in [executing(&env), executed(&env)] {
        assert_eq!(when(&history, &env, &envelope("tick-late", Actor::system(), Command::Tick)), Ok(Vec::new()));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// executing → executed / in_review; executed → rolled_back
// ---------------------------------------------------------------------------------------------------------------

// Proves that the executor can only confirm the effect this case started: another effect id is refused.
#[test]
fn confirm_with_the_wrong_effect_id_is_refused() {
    let env = Env::standard();
    let history = executing(&env);
    let wrong_ids = [effect_id(&CaseId::new(CASE), 2), effect_id(&CaseId::new("case-2"), 1), EffectId::new("made-up")];
    for wrong in wrong_ids {
        let command = Command::ConfirmExecution {
            effect_id: wrong,
            outcome: EffectOutcome::Applied { changes: applied_changes() },
        };

        assert_eq!(
            when(&history, &env, &envelope("confirm", Actor::system(), command)),
            Err(Rejection::EffectMismatch)
        );
    }
}

// Proves "executing | effect confirmed | executed": the applied changes are recorded for receipts and rollback.
#[test]
fn confirm_applied_executes() {
    let env = Env::standard();
    let history = executing(&env);
    let command = Command::ConfirmExecution {
        effect_id: effect_id(&CaseId::new(CASE), 1),
        outcome: EffectOutcome::Applied { changes: applied_changes() },
    };

    let events = when(&history, &env, &envelope("confirm", Actor::system(), command)).expect("decided");

    assert_eq!(
        events[0].body,
        EventBody::ExecutionConfirmed { effect_id: effect_id(&CaseId::new(CASE), 1), changes: applied_changes() }
    );
    let state = given(&[history, events].concat());
    assert_eq!(state.status, Status::Executed);
    assert_eq!(state.executed_changes, applied_changes());
}

// Proves "executing | effect failed | in_review": a failed effect goes to people with a fresh review deadline;
// after a new approval and cooling-off the next tick starts a second effect with a new derived id, never the first.
#[test]
fn confirm_failed_goes_to_review_and_a_retry_gets_a_new_effect_id() {
    let env = Env::standard();
    let mut history = executing(&env);
    let failed_at = cooling_off_ends_at(&history).plus(MINUTE_MS);
    let command = Command::ConfirmExecution {
        effect_id: effect_id(&CaseId::new(CASE), 1),
        outcome: EffectOutcome::Failed { reason: "directory timed out".to_string() },
    };

    let events = step(&mut history, &env.clone().at(failed_at), envelope("confirm", Actor::system(), command));

    assert_eq!(
        events[0].body,
        EventBody::ExecutionFailed {
            effect_id: effect_id(&CaseId::new(CASE), 1),
            reason: "directory timed out".to_string(),
            deadline: failed_at.plus(IN_REVIEW_TTL_MS),
        }
    );
    let state = given(&history);
    assert_eq!(state.status, Status::InReview);
    assert!(state.approvals.is_empty());
    assert_eq!(state.effect, None);

    let approval = envelope("approve-1", reviewer(1), approve(&history));
    let approved = step(&mut history, &env.clone().at(failed_at), approval);
    assert_eq!(approved.last().map(|event| event.body.kind()), Some(EventKind::CoolingOffStarted));
    let end = cooling_off_ends_at(&history);
    let restarted = step(&mut history, &env.at(end), envelope("tick-restart", Actor::system(), Command::Tick));
    assert_eq!(restarted[0].body, EventBody::ExecutionStarted { effect_id: effect_id(&CaseId::new(CASE), 2) });
}

// Proves "executed | rollback completed | rolled_back": an operator's rollback records the reversal of every
// executed change (newest first, old and new swapped) under the case's rollback effect id.
#[test]
fn rollback_by_operator_reverses_the_executed_changes() {
    let env = Env::standard();
    let history = executed(&env);
    let command = Command::RollBack { reason: text("owner reported it") };

    let events = when(&history, &env, &envelope("roll-back", operator(), command)).expect("decided");

    assert_eq!(
        events[0].body,
        EventBody::RolledBack {
            effect_id: rollback_effect_id(&CaseId::new(CASE)),
            reason: text("owner reported it"),
            // Revoked sessions cannot come back, so the reversal does not claim they do (issue 15, item 11).
            reversal: vec![Change {
                record: "password".to_string(),
                old: Some("hash-new".to_string()),
                new: Some("hash-old".to_string())
            },],
        }
    );
    assert_eq!(then_status(&history, &events), Status::RolledBack);
}

// Proves that only an executed change can be rolled back: in cooling_off or executing the rollback is refused.
#[test]
fn rollback_before_execution_is_refused() {
    let env = Env::standard();
    for (history, status) in [(cooling_off(&env), Status::CoolingOff), (executing(&env), Status::Executing)] {
        let command = Command::RollBack { reason: text("undo") };

        let result = when(&history, &env, &envelope("roll-back", operator(), command));

        assert_eq!(result, Err(Rejection::WrongState { status, command: CommandKind::RollBack }));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Terminal states, idempotency, refusal records
// ---------------------------------------------------------------------------------------------------------------

// Proves that every terminal state is final: every command (sent by a role allowed to send it) is refused as a
// wrong state (a new request is refused because the case exists), and a tick, however late, does nothing.
#[test]
fn terminal_states_refuse_every_command() {
    let env = Env::standard();
    let late = env.clone().at(REQUESTED_AT.plus(365 * DAY_MS)).policy(Phase::Authorization, Outcome::Auto);
    let terminals = [
        (denied(&env), Status::Denied),
        (cancelled(&env), Status::Cancelled),
        (expired(&env), Status::Expired),
        (rolled_back(&env), Status::RolledBack),
    ];
    for (history, status) in terminals {
        assert_eq!(given(&history).status, status);
        assert!(status.is_terminal());
        for command in every_command(&history) {
            let kind = command.command.kind();
            let expected = match kind {
                CommandKind::RequestRecovery => Err(Rejection::CaseExists),
                // The opening event owes no notice, so confirming one records nothing.
                CommandKind::Tick | CommandKind::ConfirmNotices => Ok(Vec::new()),
                CommandKind::SubmitProof
                | CommandKind::ApproveReview
                | CommandKind::DenyReview
                | CommandKind::Cancel
                | CommandKind::ConfirmExecution
                | CommandKind::RollBack
                | CommandKind::SetPassword
                | CommandKind::Halt
                | CommandKind::Resume
                | CommandKind::AttestBaseline
                | CommandKind::AcknowledgeAlert => Err(Rejection::WrongState { status, command: kind }),
            };

            let result = when(&history, &late, &command);

            assert_eq!(result, expected, "{} in {}", kind.name(), status.name());
        }
    }
}

// Proves idempotency: a command retried with the same command id appends nothing, whatever it was (a request, a
// wrong guess that must not be counted twice, an approval, a cancel, a tick) and even after the case moved on.
#[test]
fn retried_command_id_appends_nothing() {
    let env = Env::standard();
    let auto = env.clone().at(PROVED_AT).policy(Phase::Authorization, Outcome::Auto);

    let requested = requested(&env);
    let request = envelope("request", intake(), env.request_command());
    assert_eq!(when(&requested, &env, &request), Ok(Vec::new()));

    let mut guessed = requested.clone();
    let wrong = envelope("wrong-1", owner(), proof(WRONG_CODE));
    step(&mut guessed, &auto, wrong.clone());
    assert_eq!(when(&guessed, &auto, &wrong), Ok(Vec::new()));

    let mut reviewed = in_review(&Env::high_value());
    let approval = envelope("approve-1", reviewer(1), approve(&reviewed));
    step(&mut reviewed, &env, approval.clone());
    assert_eq!(when(&reviewed, &env, &approval), Ok(Vec::new()));

    let history = cancelled(&env);
    let cancel = envelope("cancel", owner(), Command::Cancel { reason: text("this was not me") });
    assert_eq!(when(&history, &env, &cancel), Ok(Vec::new()));

    let history = executing(&env);
    let late = env.at(REQUESTED_AT.plus(30 * DAY_MS));
    assert_eq!(when(&history, &late, &envelope("tick-start", Actor::system(), Command::Tick)), Ok(Vec::new()));
}

// Proves that a refused command leaves no idempotency mark: retried with the same id, even after its refusal was
// recorded on the case, it is refused again (and recorded again).
#[test]
fn retried_refused_command_is_refused_again() {
    let env = Env::standard();
    let mut history = requested(&env);
    let early_cancel = envelope("cancel-early", owner(), Command::Cancel { reason: text("stop") });
    let rejection = when(&history, &env, &early_cancel).expect_err("no cancel while requested");
    let refusal = refusal_event(&early_cancel, &given(&history), &rejection, REQUESTED_AT).expect("recordable");
    history.push(refusal);

    let again = when(&history, &env, &early_cancel);

    assert_eq!(again, Err(rejection.clone()));
    assert!(refusal_event(&early_cancel, &given(&history), &rejection, REQUESTED_AT).is_some());
}

// Proves the refusal record: nothing is recorded when there is no case, a refusal on an existing case is recorded
// with the command kind and the rejection and changes no state, and recording stops at
// REFUSALS_RECORDED_PER_CASE_MAX while the case keeps working.
#[test]
fn refusal_event_records_on_existing_cases_up_to_the_cap() {
    let env = Env::standard();
    let probe = envelope("probe-approve", intake(), approve(&requested(&env)));
    let rejection = Rejection::RoleNotAllowed { role: Role::Intake, command: CommandKind::ApproveReview };
    assert_eq!(when(&[], &env, &probe), Err(rejection.clone()));
    assert_eq!(refusal_event(&probe, &initial_state(), &rejection, REQUESTED_AT), None, "no case, no record");

    let mut history = requested(&env);
    let first = refusal_event(&probe, &given(&history), &rejection, PROVED_AT).expect("recorded on a case");
    assert_eq!(first.at, PROVED_AT);
    assert_eq!(first.actor, intake());
    assert_eq!(first.command_id, CommandId::new("probe-approve"));
    assert_eq!(
        first.body,
        EventBody::CommandRefused { command: CommandKind::ApproveReview, rejection: rejection.clone() }
    );

    let before_refusals = given(&history);
    for index in 0..REFUSALS_RECORDED_PER_CASE_MAX {
        let probe = envelope(&format!("probe-{index}"), intake(), approve(&history));
        let refusal = refusal_event(&probe, &given(&history), &rejection, PROVED_AT).expect("below the cap");
        history.push(refusal);
    }
    let state = given(&history);
    assert_eq!(state.refusals, REFUSALS_RECORDED_PER_CASE_MAX);
    assert_eq!(state.status, before_refusals.status);
    assert_eq!(state.challenge, before_refusals.challenge);

    assert_eq!(refusal_event(&probe, &state, &rejection, PROVED_AT), None, "the cap stops recording");
    let proof_env = env.at(PROVED_AT).policy(Phase::Authorization, Outcome::Auto);
    let events = when(&history, &proof_env, &envelope("proof", owner(), proof(CODE))).expect("the case still works");
    assert_eq!(then_status(&history, &events), Status::CoolingOff);
}

// Proves that a refusal can be recorded in a terminal state and leaves it unchanged.
#[test]
fn refusal_in_a_terminal_state_changes_nothing() {
    let env = Env::standard();
    let history = denied(&env);
    let command = envelope("late-cancel", owner(), Command::Cancel { reason: text("stop") });
    let rejection = when(&history, &env, &command).expect_err("denied is final");

    let refusal = refusal_event(&command, &given(&history), &rejection, PROVED_AT).expect("recorded");

    let after = evolve(given(&history), &refusal);
    assert_eq!(after.status, Status::Denied);
    assert_eq!(after.refusals, 1);
}

// ---------------------------------------------------------------------------------------------------------------
// Roles (SPEC principle 1, THREATS 12)
// ---------------------------------------------------------------------------------------------------------------

// Proves that the conversation is never the verifier: an intake actor is refused every command but a request, each
// in a state where the command would otherwise be accepted.
#[test]
fn intake_role_is_refused_everything_but_a_request() {
    let env = Env::standard();
    let auto = env.clone().at(PROVED_AT).policy(Phase::Authorization, Outcome::Auto);
    let executing = executing(&env);
    let review = in_review(&env);
    let cooling = cooling_off(&env);
    let cooling_end = env.clone().at(cooling_off_ends_at(&cooling));
    let attempts: Vec<(Vec<Event>, Env, Command)> = vec![
        (requested(&env), auto, proof(CODE)),
        (review.clone(), env.clone(), approve(&review)),
        (review, env.clone(), Command::DenyReview { reason: text("no") }),
        (cooling.clone(), env.clone(), Command::Cancel { reason: text("stop") }),
        (cooling, cooling_end, Command::Tick),
        (
            executing,
            env.clone(),
            Command::ConfirmExecution {
                effect_id: effect_id(&CaseId::new(CASE), 1),
                outcome: EffectOutcome::Applied { changes: applied_changes() },
            },
        ),
        (executed(&env), env.clone(), Command::RollBack { reason: text("undo") }),
    ];
    for (history, attempt_env, command) in attempts {
        let kind = command.kind();
        let legitimate = [Role::Owner, Role::Reviewer, Role::Operator, Role::System]
            .into_iter()
            .find(|role| kind.allowed_roles().contains(role))
            .expect("every command has a legitimate role");
        let legitimate_actor = Actor::new(legitimate, "legitimate");
        assert!(
            when(&history, &attempt_env, &envelope("legit", legitimate_actor, command.clone())).is_ok(),
            "{} must be valid in this state for its own role",
            kind.name()
        );

        let result = when(&history, &attempt_env, &envelope("from-chat", intake(), command));

        assert_eq!(result, Err(Rejection::RoleNotAllowed { role: Role::Intake, command: kind }));
    }
    let env = env.policy(Phase::Intake, Outcome::Auto);
    assert!(when(&[], &env, &envelope("request", intake(), env.request_command())).is_ok());
}

// Proves the whole role table of the case decider: for every command and every role not allowed to send it, the
// decider refuses with RoleNotAllowed before looking at the state.
#[test]
fn every_role_outside_a_commands_roles_is_refused() {
    let env = Env::standard().policy(Phase::Intake, Outcome::Auto);
    for history in [Vec::new(), requested(&env), cooling_off(&env)] {
        for command in every_command(&history) {
            let kind = command.command.kind();
            for role in Role::ALL.into_iter().filter(|role| !kind.allowed_roles().contains(role)) {
                let attempt = envelope("wrong-role", Actor::new(role, "someone"), command.command.clone());

                assert_eq!(
                    when(&history, &env, &attempt),
                    Err(Rejection::RoleNotAllowed { role, command: kind }),
                    "{role} sending {}",
                    kind.name()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Kill switch (SPEC principle 11)
// ---------------------------------------------------------------------------------------------------------------

fn halt() -> ControlCommand {
    ControlCommand::Halt { reason: text("incident 42") }
}

fn resume() -> ControlCommand {
    ControlCommand::Resume { reason: text("incident 42 closed") }
}

fn control(
    id: &str,
    actor: &Actor,
    command: &ControlCommand,
    state: &ControlState,
) -> Result<Vec<ControlEvent>, Rejection> {
    decide_control(&CommandId::new(id), actor, command, state, REQUESTED_AT)
}

fn control_state(events: &[ControlEvent]) -> ControlState {
    events.iter().fold(ControlState::default(), evolve_control)
}

// Proves that an operator halts and resumes automation, each as a recorded event, and that the state follows.
#[test]
fn operator_halts_and_resumes() {
    let halted = control("halt-1", &operator(), &halt(), &ControlState::default()).expect("halt");
    assert_eq!(halted.len(), 1);
    assert_eq!(halted[0].body, ControlEventBody::AutomationHalted { reason: text("incident 42") });
    assert_eq!((halted[0].at, &halted[0].actor), (REQUESTED_AT, &operator()));
    assert!(control_state(&halted).halted);

    let resumed = control("resume-1", &operator(), &resume(), &control_state(&halted)).expect("resume");

    assert_eq!(resumed[0].body, ControlEventBody::AutomationResumed { reason: text("incident 42 closed") });
    assert!(!control_state(&[halted, resumed].concat()).halted);
}

// Proves an attested baseline (issue 18, item 4): only an operator may record one; it is recorded with who and why,
// leaves the kill switch as it was, dates no later than now, and the state lists it for the decisions that rely on it.
#[test]
fn only_operators_attest_a_baseline_and_it_is_recorded() {
    let attest = |dated_to| ControlCommand::AttestBaseline { reason: text("adopting airlock"), dated_to };
    for role in [Role::Intake, Role::Owner, Role::Reviewer, Role::System] {
        assert_eq!(
            control("baseline-x", &Actor::new(role, "someone"), &attest(REQUESTED_AT), &ControlState::default()),
            Err(Rejection::RoleNotAllowed { role, command: CommandKind::AttestBaseline })
        );
    }
    let future = REQUESTED_AT.plus(DAY_MS);
    let events = control("baseline-1", &operator(), &attest(future), &ControlState::default()).expect("baseline");
    assert_eq!(
        events[0].body,
        ControlEventBody::BaselineAttested { reason: text("adopting airlock"), dated_to: REQUESTED_AT }
    );
    let state = control_state(&events);
    assert!(!state.halted);
    assert_eq!(state.baselines.len(), 1);
    assert_eq!((state.baselines[0].by.clone(), state.baselines[0].dated_to), (operator(), REQUESTED_AT));
    assert_eq!(control("baseline-1", &operator(), &attest(future), &state), Ok(Vec::new()), "a retry records nothing");
    let halted = control_state(&[events, control("halt-1", &operator(), &halt(), &state).expect("halt")].concat());
    assert_eq!(control("baseline-2", &operator(), &attest(REQUESTED_AT), &halted), Err(Rejection::Halted));
}

// Proves that only operators hold the kill switch: every other role is refused both halt and resume.
#[test]
fn only_operators_halt_or_resume() {
    let halted = control_state(&control("halt-1", &operator(), &halt(), &ControlState::default()).expect("halt"));
    for role in [Role::Intake, Role::Owner, Role::Reviewer, Role::System] {
        let actor = Actor::new(role, "someone");

        assert_eq!(
            control("halt-x", &actor, &halt(), &ControlState::default()),
            Err(Rejection::RoleNotAllowed { role, command: CommandKind::Halt })
        );
        assert_eq!(
            control("resume-x", &actor, &resume(), &halted),
            Err(Rejection::RoleNotAllowed { role, command: CommandKind::Resume })
        );
    }
}

// Proves that the switch only records real changes: halting twice, or resuming when not halted, is refused.
#[test]
fn kill_switch_refuses_no_op_changes() {
    let halted = control_state(&control("halt-1", &operator(), &halt(), &ControlState::default()).expect("halt"));

    assert_eq!(control("halt-2", &operator(), &halt(), &halted), Err(Rejection::KillSwitchUnchanged { halted: true }));
    assert_eq!(
        control("resume-1", &operator(), &resume(), &ControlState::default()),
        Err(Rejection::KillSwitchUnchanged { halted: false })
    );
}

// Proves idempotency of control commands: a retried halt (same command id) appends nothing, even after a resume
// (where a fresh halt would be accepted) and while halted (where a fresh halt would be refused).
#[test]
fn retried_control_command_id_appends_nothing() {
    let mut events = control("halt-1", &operator(), &halt(), &ControlState::default()).expect("halt");
    assert_eq!(control("halt-1", &operator(), &halt(), &control_state(&events)), Ok(Vec::new()));

    events.extend(control("resume-1", &operator(), &resume(), &control_state(&events)).expect("resume"));

    assert_eq!(control("halt-1", &operator(), &halt(), &control_state(&events)), Ok(Vec::new()));
    assert_eq!(control("resume-1", &operator(), &resume(), &control_state(&events)), Ok(Vec::new()));
}

// ---------------------------------------------------------------------------------------------------------------
// Regressions found while writing this suite (each failed before its fix).
// ---------------------------------------------------------------------------------------------------------------

// Proves that a review entered after a failed execution asks for a real quorum (it recorded "1 of 0" before).
#[test]
fn review_after_a_failed_execution_requires_a_quorum() {
    let env = Env::standard();
    let mut history = executing(&env);
    let failed = Command::ConfirmExecution {
        effect_id: effect_id(&CaseId::new(CASE), 1),
        outcome: EffectOutcome::Failed { reason: "down".into() },
    };
    let failed_at = cooling_off_ends_at(&history).plus(MINUTE_MS);
    step(&mut history, &env.clone().at(failed_at), envelope("confirm", Actor::system(), failed));
    let events = when(&history, &env.at(failed_at), &envelope("approve-1", reviewer(1), approve(&history))).unwrap();
    let EventBody::ReviewApproved { approvals, required, .. } = &events[0].body else { panic!("{events:?}") };
    assert_eq!((*approvals, *required), (1, 1));
}

// Proves the high-value quorum floor comes from the case's recorded snapshot, not from the policy's own facts.
#[test]
fn high_value_quorum_floor_ignores_a_policy_that_misreads_its_facts() {
    let env = Env::high_value();
    let mut history = requested(&env);
    let mut wrong = env.decision(Phase::Authorization, Outcome::Auto);
    wrong.facts.high_value = false;
    wrong.reviewers_required = 1;
    step(&mut history, &env.clone().at(PROVED_AT).with_decision(wrong), envelope("proof", owner(), proof(CODE)));
    assert_eq!(given(&history).status, Status::InReview);
    assert_eq!(given(&history).reviewers_required, 2);
}

// Proves the new-destination cooling-off floor comes from the case's action, not from the policy's own facts.
#[test]
fn new_destination_floor_ignores_a_policy_that_misreads_its_facts() {
    let env = Env::add_destination();
    let history = requested(&env);
    let mut wrong = env.decision(Phase::Authorization, Outcome::Auto);
    wrong.facts.adds_destination = false;
    wrong.cooling_off_ms = 0;
    let command = envelope("proof", owner(), proof(CODE));
    let events = when(&history, &env.clone().at(PROVED_AT).with_decision(wrong), &command).unwrap();
    let EventBody::CoolingOffStarted { ends_at, .. } = &events[1].body else { panic!("{events:?}") };
    assert_eq!(*ends_at, PROVED_AT.plus(NEW_DESTINATION_COOLING_OFF_MS_MIN));
}

// Proves a probe by the wrong role that reuses a known command id is refused (and so recorded), not a silent no-op.
#[test]
fn wrong_role_reusing_a_known_command_id_is_still_refused() {
    let env = Env::standard();
    let history = in_review(&env);
    let probe = envelope("request", intake(), approve(&history));
    assert_eq!(
        when(&history, &env, &probe),
        Err(Rejection::RoleNotAllowed { role: Role::Intake, command: CommandKind::ApproveReview })
    );
    let halt = ControlCommand::Halt { reason: text("probe") };
    let mut control = ControlState::default();
    let halted = decide_control(&CommandId::new("halt-1"), &operator(), &halt, &control, REQUESTED_AT).unwrap();
    control = halted.iter().fold(control, evolve_control);
    assert_eq!(
        decide_control(&CommandId::new("halt-1"), &intake(), &halt, &control, REQUESTED_AT),
        Err(Rejection::RoleNotAllowed { role: Role::Intake, command: CommandKind::Halt })
    );
}

// Proves a change that keeps failing to apply is denied after EXECUTION_ATTEMPTS_MAX attempts instead of looping
// (before the fix, the loop grew the history until an assertion panicked at 256 events).
#[test]
fn repeated_execution_failures_end_in_denial() {
    let env = Env::standard();
    let mut history = executing(&env);
    for attempt in 1..=airlock::core::limits::EXECUTION_ATTEMPTS_MAX {
        let now = given(&history).cooling_off_ends_at.unwrap().plus(MINUTE_MS);
        let failed = Command::ConfirmExecution {
            effect_id: effect_id(&CaseId::new(CASE), attempt),
            outcome: EffectOutcome::Failed { reason: "down".into() },
        };
        step(&mut history, &env.clone().at(now), envelope(&format!("confirm-{attempt}"), Actor::system(), failed));
        if attempt == airlock::core::limits::EXECUTION_ATTEMPTS_MAX {
            break;
        }
        let approval = approve(&history);
        step(&mut history, &env.clone().at(now), envelope(&format!("approve-{attempt}"), reviewer(1), approval));
        let end = given(&history).cooling_off_ends_at.unwrap();
        step(&mut history, &env.clone().at(end), envelope(&format!("tick-{attempt}"), Actor::system(), Command::Tick));
    }
    let state = given(&history);
    assert_eq!(state.status, Status::Denied);
    assert!(matches!(
        history.last().map(|event| &event.body),
        Some(EventBody::CaseDenied { reason: DenialReason::ExecutionAttemptsExhausted })
    ));
}

// Proves an approval after the review deadline is refused (the timer will expire the case), so the outcome does not
// depend on how late the timer fires.
#[test]
fn approval_after_the_review_deadline_is_refused() {
    let env = Env::standard();
    let history = in_review(&env);
    let late = REQUESTED_AT.plus(IN_REVIEW_TTL_MS);
    let command = envelope("approve-late", reviewer(1), approve(&history));
    assert_eq!(when(&history, &env.at(late), &command), Err(Rejection::DeadlinePassed));
}

// Proves SPEC principle 2 to the letter: a request naming an address the account already has (even a long-trusted
// one) never gets a code sent to that address; with no other eligible destination the case goes to review.
#[test]
fn the_address_named_in_the_request_is_never_challenged() {
    let env = Env::standard();
    let named = env.account.destinations[0].address.to_uppercase();
    let mut env = env.at(REQUESTED_AT).policy(Phase::Intake, Outcome::Auto);
    env.action = RecoveryAction::AddDestination { kind: DestinationKind::Email, address: named.clone() };
    let events = then_bodies(when(&[], &env, &envelope("request", intake(), env.request_command())));
    let EventBody::ChallengeIssued { destinations, .. } = &events[1] else { panic!("{events:?}") };
    for id in destinations {
        let destination = env.account.destination(id).unwrap();
        assert!(!destination.address.eq_ignore_ascii_case(&named), "{named} was challenged");
    }
    assert!(!destinations.is_empty(), "the account's other old destination is still challenged");
}

// ---------------------------------------------------------------------------------------------------------------
// Notices owed until delivered (ADR 10)
// ---------------------------------------------------------------------------------------------------------------

/// The notices a state owes: (owing event's case version, kind, destination).
fn owed(history: &[Event]) -> Vec<(u64, NoticeKind, DestinationId)> {
    given(history).notices.into_iter().map(|notice| (notice.event, notice.kind, notice.destination)).collect()
}

/// The 1-based case version of the last event of `kind` in `history`.
fn version_of(history: &[Event], kind: EventKind) -> u64 {
    history.iter().rposition(|event| event.body.kind() == kind).expect("the history has the event") as u64 + 1
}

fn confirm_notices(command_id: &str, for_event: u64, destinations: &[&str]) -> CommandEnvelope {
    envelope(command_id, Actor::system(), Command::ConfirmNotices { for_event, destinations: ids(destinations) })
}

// Proves that a scheduled change owes a cancel link to every pre-existing destination (not the revoked one, not the
// one dated after the request), from the moment its cooling-off started; that a confirmation records exactly the
// owed destinations it names, with how many stay owed; and that a repeat, a destination never owed, or another
// event's version records nothing.
#[test]
fn cooling_off_owes_cancel_links_until_each_is_confirmed() {
    let env = Env::standard();
    let mut history = cooling_off(&env);
    let version = version_of(&history, EventKind::CoolingOffStarted);
    assert_eq!(owed(&history), NOTIFIED.map(|id| (version, NoticeKind::CancelLink, DestinationId::new(id))).to_vec());
    assert!(given(&history).notices.iter().all(|notice| notice.owed_at == PROVED_AT));
    let later = env.clone().at(PROVED_AT.plus(MINUTE_MS));

    let first = confirm_notices("notices-1", version, &["email-old", "email-lost", "email-later"]);
    let recorded = step(&mut history, &later, first);

    assert_eq!(
        recorded.into_iter().map(|event| event.body).collect::<Vec<_>>(),
        vec![EventBody::NoticesDelivered { for_event: version, destinations: ids(&["email-old"]), outstanding: 2 }]
    );
    assert_eq!(given(&history).status, Status::CoolingOff);
    assert_eq!(owed(&history).len(), 2);
    for (command_id, for_event, names) in [
        ("notices-again", version, &["email-old"][..]),
        ("notices-never-owed", version, &["email-lost"][..]),
        ("notices-other-event", version - 1, &["phone-old"][..]),
    ] {
        assert_eq!(
            when(&history, &later, &confirm_notices(command_id, for_event, names)),
            Ok(Vec::new()),
            "{command_id}"
        );
    }
    step(&mut history, &later, confirm_notices("notices-2", version, &["phone-old", "email-young"]));
    assert_eq!(owed(&history), Vec::new());
    let EventBody::NoticesDelivered { outstanding, .. } = &history.last().unwrap().body else { panic!() };
    assert_eq!(*outstanding, 0);
}

// Proves that cancel links lapse when the case leaves cooling-off (cancelled, or executing), that an applied change
// owes word of it to every pre-existing destination and a rollback owes word of that too, and that delivery can be
// recorded on an executed and on a rolled-back case without changing its state.
#[test]
fn applied_and_rolled_back_changes_owe_notices_and_cancel_links_lapse() {
    let env = Env::standard();
    assert_eq!(owed(&cancelled(&env)), Vec::new());
    assert_eq!(owed(&executing(&env)), Vec::new());

    let mut history = executed(&env);
    let applied = version_of(&history, EventKind::ExecutionConfirmed);
    assert_eq!(owed(&history), NOTIFIED.map(|id| (applied, NoticeKind::Applied, DestinationId::new(id))).to_vec());
    let later = env.clone().at(cooling_off_ends_at(&history).plus(HOUR_MS));
    step(&mut history, &later, confirm_notices("applied-email", applied, &["email-old"]));
    assert_eq!(given(&history).status, Status::Executed);

    let now = cooling_off_ends_at(&history).plus(DAY_MS);
    step(
        &mut history,
        &env.clone().at(now),
        envelope("roll-back", operator(), Command::RollBack { reason: text("x") }),
    );
    let rolled_back = version_of(&history, EventKind::RolledBack);
    let mut expected: Vec<_> =
        ["phone-old", "email-young"].map(|id| (applied, NoticeKind::Applied, DestinationId::new(id))).to_vec();
    expected.extend(NOTIFIED.map(|id| (rolled_back, NoticeKind::RolledBack, DestinationId::new(id))));
    assert_eq!(owed(&history), expected);
    step(&mut history, &env.clone().at(now), confirm_notices("rolled-back", rolled_back, &NOTIFIED));
    assert_eq!(given(&history).status, Status::RolledBack);
    assert_eq!(owed(&history).len(), 2);
}
