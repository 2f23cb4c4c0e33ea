//! Proves the safety invariants of SPEC.md's state machine over the pure core, two ways that share one harness: a
//! bounded exhaustive exploration of command sequences against one case, and a seeded random simulation whose every
//! failure prints the seed and the command that replays it exactly.
//!
//! The harness plays the shell: it owns the clock, the kill switch (through `core::control`), the code key and the
//! codes, the policy engine, and the account-wide attempt counts, and it feeds them to `decide` as the service
//! would. Every event is shown to an audit that re-derives what may happen from the root's facts alone, and after
//! every step the whole log is folded again and compared with the state evolved along the way.
//!
//! See the counts: `cargo test -p airlock-invariants -- --nocapture`.

use airlock::core::account::{AccountSnapshot, Destination, DestinationKind, HighValueReason, RiskClass};
use airlock::core::action::{ActionHash, RecoveryAction};
use airlock::core::actor::{Actor, Role};
use airlock::core::command::{Change, Command, CommandEnvelope, CommandKind, EffectOutcome, SecondFactorCheck};
use airlock::core::control::{ControlCommand, ControlState, decide_control, evolve_control};
use airlock::core::decide::{Context, FreshChallenge, decide, refusal_event};
use airlock::core::event::{Authorization, Event, EventBody, EventKind, SecondFactor};
use airlock::core::ids::{AccountId, ActorId, CaseId, ChallengeId, CommandId, DestinationId, EffectId, UnixMs};
use airlock::core::limits::{self, DAY_MS, HOUR_MS, MINUTE_MS};
use airlock::core::policy::{Phase, PolicyDecision, PolicyFacts, Velocity};
use airlock::core::rejection::Rejection;
use airlock::core::signals::Signals;
use airlock::core::state::{Approval, CaseState, Status, evolve, fold, initial_state};
use airlock::core::table::Table;
use airlock::core::text::UntrustedText;
use airlock::core::transition;
use airlock::core::verification::{
    AccountVerificationFacts, CodeHash, CodeKey, Settings, VerificationCode, generate_code,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
// Shared, not counted per thread: the exploration's levels are worked by several threads (issue 21).
use std::sync::Arc as Rc;
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------------------------------
// The universe: one account, the actors around it, and the steps they can take.
// ---------------------------------------------------------------------------------------------------------------

/// 2026-01-01T00:00:00Z: every case of the exploration is requested at this moment.
const REQUESTED_AT: UnixMs = UnixMs(1_767_225_600_000);

/// The clock jumps the exploration tries: inside a code's life, past it, past the shortest cooling-off floor, past
/// the requested deadline and the standard cooling-off, past the new-destination cooling-off, past every deadline.
const WAITS_MS: [u64; 6] = [MINUTE_MS, 11 * MINUTE_MS, HOUR_MS, 25 * HOUR_MS, 73 * HOUR_MS, 8 * DAY_MS];

/// Other requests for the account in the last day, as the exploration varies them: calm, enough for the baseline
/// policy to ask for review (4 with this case), enough for `AUTHORIZATION_DENY_RULE` to deny after proof (10 with
/// this case).
const OTHER_REQUESTS: [u32; 3] = [0, 3, 9];

const CODE_KEY: [u8; 32] = [0x5a; 32];
const NEW_ADDRESS: &str = "new-address@example.net";
const INTAKE_AGENT: &str = "support-agent-7";

/// Everything fixed when a case opens: the account as the directory saw it, the request, and the environment the
/// rest of the account's life contributes (other cases' wrong codes and outstanding codes).
#[derive(Debug)]
struct Root {
    /// Names the root in failure messages.
    label: String,
    case_id: CaseId,
    snapshot: AccountSnapshot,
    action: RecoveryAction,
    signals: Signals,
    requester: Actor,
    requested_at: UnixMs,
    other_requests: u32,
    /// How many other accounts named the same new destination today (velocity for `AddDestination`).
    destination_requests: u32,
    /// Wrong codes typed in this account's other cases, and when: they count against this case's attempts.
    failures_elsewhere: Vec<UnixMs>,
    outstanding_elsewhere: bool,
    challenge_id: ChallengeId,
    right_code: CodeHash,
    wrong_code: CodeHash,
    /// The hash a reviewer is shown, and a stale one: the same action on another case.
    action_hash: ActionHash,
    stale_action_hash: ActionHash,
}

/// Who sends a command. The role comes from the channel; the harness decides which channel each actor uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Who {
    /// An untrusted support agent (the requester of the exploration's cases).
    Intake,
    Owner,
    ReviewerA,
    ReviewerB,
    /// The person who opened the case, signed in as a reviewer.
    RequesterAsReviewer,
    Operator,
    System,
}

impl Who {
    const ALL: [Who; 7] =
        [Who::Intake, Who::Owner, Who::ReviewerA, Who::ReviewerB, Who::RequesterAsReviewer, Who::Operator, Who::System];

    fn actor(self, root: &Root) -> Actor {
        match self {
            Who::Intake => Actor::new(Role::Intake, INTAKE_AGENT),
            Who::Owner => Actor::new(Role::Owner, "owner"),
            Who::ReviewerA => Actor::new(Role::Reviewer, "reviewer-a"),
            Who::ReviewerB => Actor::new(Role::Reviewer, "reviewer-b"),
            Who::RequesterAsReviewer => Actor::new(Role::Reviewer, root.requester.id.as_str()),
            Who::Operator => Actor::new(Role::Operator, "operator-1"),
            Who::System => Actor::system(),
        }
    }
}

/// One thing that can happen to a case between two looks at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// The clock moves on and airlock's timer fires (a tick from the system), unless the timer is late.
    Wait {
        ms: u64,
        timer_fires: bool,
    },
    Tick {
        by: Who,
    },
    /// The owner types a code; `other_requests` is the account's other requests the shell counts at that moment, and
    /// `totp` what the directory said of an authenticator code typed with it.
    SubmitProof {
        by: Who,
        right_code: bool,
        other_requests: u32,
        totp: SecondFactorCheck,
    },
    Approve {
        by: Who,
        right_hash: bool,
    },
    Deny {
        by: Who,
    },
    Cancel {
        by: Who,
    },
    Confirm {
        by: Who,
        applied: bool,
        current_effect: bool,
    },
    RollBack {
        by: Who,
    },
    RequestAgain {
        by: Who,
    },
    /// The notifier reports the case's oldest owed notices delivered (ADR 10).
    ConfirmNotices {
        by: Who,
    },
    /// The owner sets a password through an applied reset's link, sent to a destination that proved the case
    /// (`sent_there`) or another one.
    SetPassword {
        by: Who,
        sent_there: bool,
    },
    KillSwitch {
        by: Who,
        halt: bool,
    },
    /// The last command is delivered again with the same id, by its sender or (`Some`) by someone else.
    Retry {
        by: Option<Who>,
    },
}

// ---------------------------------------------------------------------------------------------------------------
// Building roots.
// ---------------------------------------------------------------------------------------------------------------

fn destination(id: &str, address: &str, trusted_since: UnixMs) -> Destination {
    let kind = if address.contains('@') { DestinationKind::Email } else { DestinationKind::Phone };
    Destination { id: DestinationId::new(id), kind, address: address.to_string(), trusted_since, revoked: false }
}

fn known_account(risk_class: RiskClass, destinations: Vec<Destination>) -> AccountSnapshot {
    AccountSnapshot {
        account_id: AccountId::new("account-1"),
        known: true,
        risk_class,
        destinations,
        totp_enrolled_since: None,
        authenticator_unknown: false,
        last_credential_change: None,
        risk_flags: Vec::new(),
    }
}

/// The account with an authenticator app enrolled long before the request.
fn with_totp(mut snapshot: AccountSnapshot) -> AccountSnapshot {
    snapshot.totp_enrolled_since = Some(UnixMs(REQUESTED_AT.0 - 90 * DAY_MS));
    snapshot
}

fn add_destination(address: &str) -> RecoveryAction {
    RecoveryAction::AddDestination { kind: DestinationKind::Email, address: address.to_string() }
}

/// A code different from `code`: its first digit moved on by one.
fn other_code(code: &VerificationCode) -> VerificationCode {
    let digits = code.reveal_for_delivery();
    let first = digits.as_bytes()[0];
    let changed = if first == b'9' { '0' } else { char::from(first + 1) };
    VerificationCode::parse(&format!("{changed}{}", &digits[1..])).expect("eight digits stay eight digits")
}

/// The parts of a root every shape shares; the code is drawn from `rng` and hashed under the harness's key.
fn root(label: String, snapshot: AccountSnapshot, action: RecoveryAction, rng: &mut StdRng) -> Root {
    let case_id = CaseId::new("case-1");
    let challenge_id = ChallengeId::new("case-1/challenge-1");
    let key = CodeKey::from_bytes(CODE_KEY);
    let code = generate_code(rng);
    Root {
        label,
        signals: Signals::default(),
        requester: Actor::new(Role::Intake, INTAKE_AGENT),
        requested_at: REQUESTED_AT,
        other_requests: 0,
        destination_requests: 0,
        failures_elsewhere: Vec::new(),
        outstanding_elsewhere: false,
        right_code: key.hash(&challenge_id, &code),
        wrong_code: key.hash(&challenge_id, &other_code(&code)),
        challenge_id,
        action_hash: ActionHash::of(&case_id, &snapshot.account_id, &action),
        stale_action_hash: ActionHash::of(&CaseId::new("case-0"), &snapshot.account_id, &action),
        case_id,
        snapshot,
        action,
    }
}

/// The exploration's accounts: standard and high-value with two old destinations, each with or without a young
/// one; a standard account whose only destination is young (lost all factors); an account the directory does
/// not know. Each asks for both actions, under each level of velocity.
fn exploration_roots() -> Vec<Root> {
    let old = |id: &str, address: &str| destination(id, address, UnixMs(REQUESTED_AT.0 - 30 * DAY_MS));
    let young = || destination("email-young", "young@example.org", UnixMs(REQUESTED_AT.0 - DAY_MS));
    let pair = || vec![old("email-1", "owner@example.com"), old("phone-1", "+15550100")];
    let with_young = || pair().into_iter().chain([young()]).collect::<Vec<_>>();
    let high_value = RiskClass::HighValue(HighValueReason::Admin);
    let shapes = [
        ("standard", known_account(RiskClass::Standard, pair())),
        ("standard+young", known_account(RiskClass::Standard, with_young())),
        ("high-value", known_account(high_value, pair())),
        ("high-value+young", known_account(high_value, with_young())),
        ("lost-all-factors", known_account(RiskClass::Standard, vec![young()])),
        ("standard+totp", with_totp(known_account(RiskClass::Standard, pair()))),
        ("unknown", AccountSnapshot::unknown(AccountId::new("account-1"))),
    ];
    let mut rng = StdRng::seed_from_u64(2026);
    let mut roots = Vec::new();
    for (shape, snapshot) in shapes {
        for action in [RecoveryAction::ResetPassword, add_destination(NEW_ADDRESS)] {
            for other_requests in OTHER_REQUESTS {
                let label = format!("{shape}/{}/others={other_requests}", action.name());
                let mut root = root(label, snapshot.clone(), action.clone(), &mut rng);
                root.other_requests = other_requests;
                roots.push(root);
            }
        }
    }
    roots
}

/// Every step the exploration tries from every state: each command from the role it belongs to, and the same
/// command from roles that must be refused.
fn exploration_steps() -> Vec<Step> {
    let mut steps: Vec<Step> = WAITS_MS.iter().map(|&ms| Step::Wait { ms, timer_fires: true }).collect();
    steps.extend([
        // A timer that has not fired yet when everything's deadline has passed.
        Step::Wait { ms: 8 * DAY_MS, timer_fires: false },
        Step::Tick { by: Who::Intake },
        Step::SubmitProof { by: Who::Owner, right_code: false, other_requests: 0, totp: SecondFactorCheck::NotGiven },
        Step::SubmitProof { by: Who::Intake, right_code: true, other_requests: 0, totp: SecondFactorCheck::NotGiven },
        Step::SubmitProof { by: Who::Owner, right_code: true, other_requests: 0, totp: SecondFactorCheck::Valid },
        Step::SubmitProof { by: Who::Owner, right_code: true, other_requests: 0, totp: SecondFactorCheck::Invalid },
        Step::Approve { by: Who::ReviewerA, right_hash: true },
        Step::Approve { by: Who::ReviewerB, right_hash: true },
        Step::Approve { by: Who::RequesterAsReviewer, right_hash: true },
        Step::Approve { by: Who::ReviewerA, right_hash: false },
        Step::Approve { by: Who::Intake, right_hash: true },
        Step::Deny { by: Who::ReviewerA },
        Step::Deny { by: Who::Intake },
        Step::Cancel { by: Who::Owner },
        Step::Cancel { by: Who::Operator },
        Step::Cancel { by: Who::Intake },
        Step::Confirm { by: Who::System, applied: true, current_effect: true },
        Step::Confirm { by: Who::System, applied: false, current_effect: true },
        Step::Confirm { by: Who::System, applied: true, current_effect: false },
        Step::Confirm { by: Who::Intake, applied: true, current_effect: true },
        Step::RollBack { by: Who::Operator },
        Step::RollBack { by: Who::Intake },
        Step::RequestAgain { by: Who::Intake },
        Step::ConfirmNotices { by: Who::System },
        Step::SetPassword { by: Who::Owner, sent_there: true },
        Step::SetPassword { by: Who::Owner, sent_there: false },
        Step::SetPassword { by: Who::Intake, sent_there: true },
        Step::KillSwitch { by: Who::Operator, halt: true },
        Step::KillSwitch { by: Who::Operator, halt: false },
        Step::KillSwitch { by: Who::Intake, halt: true },
    ]);
    steps.extend(OTHER_REQUESTS.iter().map(|&other_requests| Step::SubmitProof {
        by: Who::Owner,
        right_code: true,
        other_requests,
        totp: SecondFactorCheck::NotGiven,
    }));
    steps
}

// ---------------------------------------------------------------------------------------------------------------
// The case under test, and its history as a persistent list (the exploration's states share their prefixes).
// ---------------------------------------------------------------------------------------------------------------

/// An event as appended, with whether the kill switch was on when it was decided.
#[derive(Debug)]
struct Recorded {
    event: Event,
    halted: bool,
}

#[derive(Clone, Default)]
struct Trail(Option<Rc<Link>>);

struct Link {
    record: Recorded,
    previous: Trail,
}

impl Trail {
    fn push(&self, record: Recorded) -> Trail {
        Trail(Some(Rc::new(Link { record, previous: self.clone() })))
    }

    /// The history, oldest first.
    fn records(&self) -> Vec<&Recorded> {
        let mut records = Vec::new();
        let mut cursor = self.0.as_deref();
        while let Some(link) = cursor {
            records.push(&link.record);
            cursor = link.previous.0.as_deref();
        }
        records.reverse();
        records
    }
}

/// (from, event, to): one transition the harness saw the core take.
type Edge = (Status, EventKind, Status);

#[derive(Clone)]
struct Case {
    root: Rc<Root>,
    now: UnixMs,
    control: ControlState,
    /// The account's other requests in the last day as the shell counts them for the next decision; set by each
    /// proof step, so it is an input of that step rather than part of the state.
    other_requests: u32,
    state: CaseState,
    trail: Trail,
    /// The invariant checker, fed every event as it is appended.
    audit: Audit,
    /// When this case's wrong codes were typed: the account-wide attempt count includes them.
    rejections: Vec<UnixMs>,
    /// The steps taken since the root, for failure messages; its length also numbers the command ids.
    path: Vec<Step>,
    last_envelope: Option<Rc<CommandEnvelope>>,
}

fn reason(text: &str) -> UntrustedText {
    UntrustedText::new("reason", text, limits::REASON_BYTES_MAX).expect("a short reason fits")
}

/// What the executor reports having changed for each action.
fn changes_of(action: &RecoveryAction) -> Vec<Change> {
    let change = |record: &str, old: Option<&str>, new: Option<&str>| Change {
        record: record.to_string(),
        old: old.map(str::to_string),
        new: new.map(str::to_string),
    };
    match action {
        RecoveryAction::ResetPassword => {
            vec![change("password", Some("hash-1"), Some("hash-2")), change("sessions", Some("3"), Some("0"))]
        }
        RecoveryAction::AddDestination { address, .. } => vec![change("destination:new", None, Some(address))],
        RecoveryAction::RemoveTotp => vec![change("totp", Some("enrolled"), None)],
    }
}

impl Case {
    /// Opens a case: the requester's `RequestRecovery`, decided and checked like any other step.
    fn open(root: Root, edges: &mut BTreeSet<Edge>) -> Result<Case, String> {
        let mut case = Case {
            now: root.requested_at,
            other_requests: root.other_requests,
            root: Rc::new(root),
            control: ControlState::default(),
            state: initial_state(),
            trail: Trail::default(),
            audit: Audit::default(),
            rejections: Vec::new(),
            path: Vec::new(),
            last_envelope: None,
        };
        let command = case.request_command();
        let envelope =
            CommandEnvelope { command_id: CommandId::new("command-0"), actor: case.root.requester.clone(), command };
        case.send(envelope, edges)?;
        check_invariants(&case)?;
        if case.state.status == Status::New {
            return Err("a request by an allowed role did not open the case".to_string());
        }
        Ok(case)
    }

    fn request_command(&self) -> Command {
        let summary = UntrustedText::new("summary", "locked out, please help", limits::SUMMARY_BYTES_MAX)
            .expect("a short summary fits");
        Command::RequestRecovery {
            account_id: self.root.snapshot.account_id.clone(),
            action: self.root.action.clone(),
            summary,
            signals: self.root.signals.clone(),
        }
    }

    /// Takes one step and checks every invariant on the result. The error is a violated invariant.
    fn perform(&self, step: Step, edges: &mut BTreeSet<Edge>) -> Result<Case, String> {
        let mut next = self.clone();
        next.path.push(step);
        let command_id = CommandId::new(format!("command-{}", next.path.len()));
        let outcome = match step {
            Step::KillSwitch { by, halt } => next.switch(by, halt, command_id),
            Step::Retry { by } => match next.last_envelope.clone() {
                Some(envelope) => {
                    let mut envelope = CommandEnvelope::clone(&envelope);
                    if let Some(who) = by {
                        envelope.actor = who.actor(&next.root);
                    }
                    next.send(envelope, edges)
                }
                None => Ok(()),
            },
            Step::Wait { ms, timer_fires } => {
                next.now = next.now.plus(ms);
                match timer_fires {
                    true => next.send_command(Who::System, Command::Tick, command_id, edges),
                    false => Ok(()),
                }
            }
            Step::SubmitProof { other_requests, .. } => {
                next.other_requests = other_requests;
                let (who, command) = next.command_of(step);
                next.send_command(who, command, command_id, edges)
            }
            Step::Tick { .. }
            | Step::Approve { .. }
            | Step::Deny { .. }
            | Step::Cancel { .. }
            | Step::Confirm { .. }
            | Step::RollBack { .. }
            | Step::RequestAgain { .. }
            | Step::ConfirmNotices { .. }
            | Step::SetPassword { .. } => {
                let (who, command) = next.command_of(step);
                next.send_command(who, command, command_id, edges)
            }
        };
        outcome
            .and_then(|()| check_invariants(&next))
            .map_err(|violation| format!("{violation}\n  root: {}\n  steps: {:?}", next.root.label, next.path))?;
        Ok(next)
    }

    fn command_of(&self, step: Step) -> (Who, Command) {
        let root = &self.root;
        match step {
            Step::Tick { by } => (by, Command::Tick),
            Step::SubmitProof { by, right_code, totp, .. } => {
                let proof = if right_code { root.right_code.clone() } else { root.wrong_code.clone() };
                (by, Command::SubmitProof { proof, second_factor: totp })
            }
            Step::Approve { by, right_hash } => {
                let action_hash = if right_hash { root.action_hash.clone() } else { root.stale_action_hash.clone() };
                (by, Command::ApproveReview { action_hash, reason: reason("checked the evidence") })
            }
            Step::Deny { by } => (by, Command::DenyReview { reason: reason("not convinced") }),
            Step::Cancel { by } => (by, Command::Cancel { reason: reason("this was not me") }),
            Step::Confirm { by, applied, current_effect } => {
                let effect_id = match (&self.state.effect, current_effect) {
                    (Some(effect), true) => effect.clone(),
                    (None, true) | (_, false) => EffectId::new("case-1/execute/stale"),
                };
                let outcome = if applied {
                    EffectOutcome::Applied { changes: changes_of(&root.action) }
                } else {
                    EffectOutcome::Failed { reason: "directory unavailable".to_string() }
                };
                (by, Command::ConfirmExecution { effect_id, outcome })
            }
            Step::RollBack { by } => (by, Command::RollBack { reason: reason("incident 42") }),
            Step::SetPassword { by, sent_there } => {
                let proven = self.state.proven_by.first().cloned();
                let destination = match (sent_there, proven) {
                    (true, Some(destination)) => destination,
                    (true, None) => (root.snapshot.destinations.first())
                        .map_or_else(|| DestinationId::new("none"), |destination| destination.id.clone()),
                    (false, _) => DestinationId::new("a-destination-the-link-never-went-to"),
                };
                (by, Command::SetPassword { destination, changes: Vec::new() })
            }
            Step::RequestAgain { by } => (by, self.request_command()),
            Step::ConfirmNotices { by } => {
                let for_event = self.state.notices.first().map_or(1, |notice| notice.event);
                let destinations = (self.state.notices.iter())
                    .filter(|notice| notice.event == for_event)
                    .map(|notice| notice.destination.clone())
                    .collect();
                (by, Command::ConfirmNotices { for_event, destinations })
            }
            Step::Wait { .. } | Step::KillSwitch { .. } | Step::Retry { .. } => {
                unreachable!("{step:?} is not a case command")
            }
        }
    }

    fn send_command(
        &mut self,
        who: Who,
        command: Command,
        command_id: CommandId,
        edges: &mut BTreeSet<Edge>,
    ) -> Result<(), String> {
        let envelope = CommandEnvelope { command_id, actor: who.actor(&self.root), command };
        self.send(envelope, edges)
    }

    /// Decides one command as the shell would, checks the answer, and appends what it produced (the events, or the
    /// record of the refusal).
    fn send(&mut self, envelope: CommandEnvelope, edges: &mut BTreeSet<Edge>) -> Result<(), String> {
        let settings = Settings::default();
        let decision = self.policy_for(&envelope.command);
        // One right code for every destination, as a version 1 challenge had: which destination a proof came from is
        // the core's floor (tests/core/core_decide.rs), not a path this exploration needs to branch on.
        let code_hashes = (self.root.snapshot.destinations.iter())
            .map(|destination| (destination.id.clone(), self.root.right_code.clone()))
            .collect();
        let fresh = FreshChallenge { challenge_id: self.root.challenge_id.clone(), code_hashes };
        let opening = matches!(envelope.command, Command::RequestRecovery { .. });
        let context = Context {
            case_id: &self.root.case_id,
            now: self.now,
            settings: &settings,
            halted: self.control.halted,
            account: opening.then_some(&self.root.snapshot),
            account_facts: self.account_facts(),
            policy: decision.as_ref(),
            fresh_challenge: opening.then_some(&fresh),
        };
        let result = decide(&envelope, &self.state, &context);
        check_answer(&envelope, &self.state, &result)?;
        let events = match result {
            Ok(events) => events,
            Err(rejection) => refusal_event(&envelope, &self.state, &rejection, self.now).into_iter().collect(),
        };
        for event in events {
            self.append(event, edges)?;
        }
        self.last_envelope = Some(Rc::new(envelope));
        Ok(())
    }

    /// Appends one event: evolves the state, shows the event to the audit, and keeps it in the history.
    fn append(&mut self, event: Event, edges: &mut BTreeSet<Edge>) -> Result<(), String> {
        let from = self.state.status;
        self.state = evolve(std::mem::replace(&mut self.state, initial_state()), &event);
        edges.insert((from, event.body.kind(), self.state.status));
        if let EventBody::ProofRejected { .. } = event.body {
            self.rejections.push(event.at);
        }
        let record = Recorded { event, halted: self.control.halted };
        self.audit
            .observe(&self.root, &record)
            .map_err(|violation| format!("{violation} ({:?})", record.event.body))?;
        self.trail = self.trail.push(record);
        Ok(())
    }

    /// The kill switch, through its own decider. Refusals there are checked, not recorded on the case.
    fn switch(&mut self, who: Who, halt: bool, command_id: CommandId) -> Result<(), String> {
        let actor = who.actor(&self.root);
        let command = if halt {
            ControlCommand::Halt { reason: reason("incident") }
        } else {
            ControlCommand::Resume { reason: reason("all clear") }
        };
        let allowed = spec_allows(actor.role, command.kind());
        match decide_control(&command_id, &actor, &command, &self.control, self.now) {
            Ok(_) if !allowed => Err(format!("{actor} was allowed to {}", command.kind().name())),
            Ok(events) => {
                for event in &events {
                    self.control = evolve_control(std::mem::take(&mut self.control), event);
                }
                if self.control.halted != halt {
                    return Err(format!("the kill switch is not {} after {}", halt, command.kind().name()));
                }
                Ok(())
            }
            Err(Rejection::RoleNotAllowed { .. }) if !allowed => Ok(()),
            Err(Rejection::KillSwitchUnchanged { halted }) if halted == halt && self.control.halted == halt => Ok(()),
            Err(rejection) => Err(format!("the kill switch refused {actor} unexpectedly: {rejection}")),
        }
    }

    /// The policy's decision for the phase a command reaches, from facts the harness gathers as the shell does.
    fn policy_for(&self, command: &Command) -> Option<PolicyDecision> {
        let phase = match command {
            Command::RequestRecovery { .. } => Phase::Intake,
            Command::SubmitProof { .. } => Phase::Authorization,
            Command::ApproveReview { .. }
            | Command::DenyReview { .. }
            | Command::Cancel { .. }
            | Command::Tick
            | Command::ConfirmExecution { .. }
            | Command::RollBack { .. }
            | Command::ConfirmNotices { .. }
            | Command::SetPassword { .. } => return None,
        };
        let root = &self.root;
        let velocity = Velocity {
            account_requests_24h: 1 + self.other_requests,
            destination_requests_24h: if root.action.adds_destination() { root.destination_requests } else { 0 },
            ..Velocity::default()
        };
        let (snapshot, halted) = (&root.snapshot, self.control.halted);
        let facts = PolicyFacts::gather(
            phase,
            snapshot,
            &root.action,
            &root.signals,
            velocity,
            halted,
            self.now,
            &Settings::default(),
        );
        Some(evaluate_policy(&facts))
    }

    /// The account-wide facts, counted from this case's own history plus what the root says of other cases.
    fn account_facts(&self) -> AccountVerificationFacts {
        let in_window = |at: UnixMs| at.plus(limits::PROOF_ATTEMPT_WINDOW_MS) > self.now;
        let here = self.rejections.iter().filter(|&&at| in_window(at)).count();
        let elsewhere = self.root.failures_elsewhere.iter().filter(|&&at| in_window(at)).count();
        AccountVerificationFacts {
            failed_attempts_in_window: (here + elsewhere) as u32,
            outstanding_challenge_elsewhere: self.root.outstanding_elsewhere,
        }
    }

    fn events(&self) -> Vec<Event> {
        self.trail.records().into_iter().map(|record| record.event.clone()).collect()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The invariants.
// ---------------------------------------------------------------------------------------------------------------

/// SPEC principle 1, written out independently of `CommandKind::allowed_roles` so that a change there fails here.
fn spec_allows(role: Role, kind: CommandKind) -> bool {
    match kind {
        CommandKind::RequestRecovery => matches!(role, Role::Intake | Role::Owner),
        CommandKind::SubmitProof | CommandKind::SetPassword => role == Role::Owner,
        CommandKind::ApproveReview | CommandKind::DenyReview => role == Role::Reviewer,
        CommandKind::Cancel => matches!(role, Role::Owner | Role::Operator),
        CommandKind::Tick | CommandKind::ConfirmExecution | CommandKind::ConfirmNotices => role == Role::System,
        CommandKind::RollBack
        | CommandKind::Halt
        | CommandKind::Resume
        | CommandKind::AttestBaseline
        | CommandKind::AcknowledgeAlert => role == Role::Operator,
    }
}

/// Checks `decide`'s answer itself: a role that may not send a command is refused for exactly that reason, even
/// under a command id the case has seen (intake actors submitting proof, approving, cancelling, rolling back...),
/// and a retried command from an allowed role appends nothing.
fn check_answer(
    envelope: &CommandEnvelope,
    before: &CaseState,
    result: &Result<Vec<Event>, Rejection>,
) -> Result<(), String> {
    let kind = envelope.command.kind();
    if !spec_allows(envelope.actor.role, kind) {
        return match result {
            Err(Rejection::RoleNotAllowed { .. }) => Ok(()),
            other => Err(format!("principle 1: {} sent {} and got {other:?}", envelope.actor, kind.name())),
        };
    }
    if before.has_seen(&envelope.actor, &envelope.command_id) {
        return match result {
            Ok(events) if events.is_empty() => Ok(()),
            // The same id with another body is refused (issue 15, item 13), never taken for a retry.
            Err(Rejection::CommandIdReused) => Ok(()),
            other => Err(format!("a retried {} was not a no-op: {other:?}", kind.name())),
        };
    }
    Ok(())
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(Table::embedded)
}

/// Terminal by the code or by the table: either is enough to demand finality (their agreement is its own test).
fn is_terminal(status: Status) -> bool {
    status.is_terminal() || table().is_terminal(status.name())
}

fn check_invariants(case: &Case) -> Result<(), String> {
    let records = case.trail.records();
    let folded = fold(records.iter().map(|record| &record.event))
        .map_err(|corrupt| format!("invariant 6: the history does not fold: {corrupt}"))?;
    if folded != case.state {
        return Err(format!(
            "invariant 6: fold of the log differs from the evolved state\n  folded: {folded:?}\n  evolved: {:?}",
            case.state
        ));
    }
    if records.len() > limits::EVENTS_PER_CASE_MAX {
        return Err(format!("the case has {} events, over EVENTS_PER_CASE_MAX", records.len()));
    }
    if case.audit.status != case.state.status {
        return Err(format!("the audit reached {} but the state is {}", case.audit.status, case.state.status));
    }
    Ok(())
}

/// The authorization a cooling-off carries, as the audit verified it.
#[derive(Clone)]
struct CoolingOff {
    ends_at: UnixMs,
}

/// Reads a history event by event from the start and fails at the first event that breaks an invariant. It trusts
/// nothing the core computed: eligibility, quorums and floors are recomputed from the root.
#[derive(Clone)]
struct Audit {
    status: Status,
    /// Whether a proof from eligible destinations was accepted.
    proof_accepted: bool,
    /// Whether the authenticator app was proven with it.
    totp_proven: bool,
    /// The reviewers who approved since the case last entered review, and when.
    round: Vec<(ActorId, UnixMs)>,
    /// The cooling-off in force, if a valid authorization started one and no failure revoked it since.
    cooling_off: Option<CoolingOff>,
    started: Option<EffectId>,
    /// How many times execution started: a change that keeps failing is given up, not retried forever.
    attempts: u32,
    confirmed: Option<Vec<Change>>,
    /// When the change was confirmed, and whether a reset's link set a password since.
    confirmed_at: Option<UnixMs>,
    password_set: bool,
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            status: Status::New,
            proof_accepted: false,
            totp_proven: false,
            round: Vec::new(),
            cooling_off: None,
            started: None,
            attempts: 0,
            confirmed: None,
            confirmed_at: None,
            password_set: false,
        }
    }
}

impl Audit {
    fn observe(&mut self, root: &Root, record: &Recorded) -> Result<(), String> {
        let (event, before) = (&record.event, self.status);
        let kind = event.body.kind();
        let after = transition::target(before, kind).ok_or_else(|| format!("{} from {before}", kind.name()))?;
        if is_terminal(before) && after != before {
            return Err(format!("invariant 5: {} moved terminal {before} to {after}", kind.name()));
        }
        self.check_body(root, record)?;
        if after == Status::Executed && self.cooling_off.is_none() {
            return Err("invariant 1: executed without a valid authorization".to_string());
        }
        self.status = after;
        Ok(())
    }

    fn check_body(&mut self, root: &Root, record: &Recorded) -> Result<(), String> {
        let event = &record.event;
        match &event.body {
            EventBody::RecoveryRequested { .. } if event.at != root.requested_at => {
                Err(format!("the request is recorded at {} instead of {}", event.at, root.requested_at))
            }
            EventBody::ChallengeIssued { destinations, .. } => self
                .check_addressable(root, destinations)
                .map_err(|violation| format!("invariant 4: a code was addressed to {violation}")),
            EventBody::ProofAccepted { destinations, .. } => {
                self.check_addressable(root, destinations)
                    .map_err(|violation| format!("invariant 1: a proof counted from {violation}"))?;
                self.proof_accepted = true;
                Ok(())
            }
            EventBody::ReviewRequired { .. } => {
                self.round.clear();
                Ok(())
            }
            EventBody::ReviewApproved { reviewer, action_hash, .. } => {
                self.check_approval(root, reviewer, action_hash, event.at)
            }
            EventBody::CoolingOffStarted { ends_at, notify, authorization, .. } => {
                self.check_authorization(root, authorization, event.at)?;
                self.check_cooling_off(root, event.at, *ends_at, notify)?;
                self.cooling_off = Some(CoolingOff { ends_at: *ends_at });
                Ok(())
            }
            EventBody::ExecutionStarted { effect_id } => {
                self.check_start(record)?;
                self.started = Some(effect_id.clone());
                self.attempts += 1;
                if self.attempts > limits::EXECUTION_ATTEMPTS_MAX {
                    return Err(format!("execution attempt {} is over the limit", self.attempts));
                }
                Ok(())
            }
            EventBody::ExecutionConfirmed { effect_id, changes } => {
                self.check_effect(effect_id)?;
                self.confirmed = Some(changes.clone());
                self.confirmed_at = Some(event.at);
                Ok(())
            }
            // Issue 18, item 5: a reset's link sets a password once, in time, from a destination the account had
            // before the request.
            EventBody::PasswordSet { destination, .. } => {
                let before = root.snapshot.pre_existing(root.requested_at);
                if root.action != RecoveryAction::ResetPassword {
                    return Err(format!("a password was set through a {} case", root.action.name()));
                }
                if self.password_set {
                    return Err("a set-password link was used twice".to_string());
                }
                let old_enough = |known: &airlock::core::account::Destination| {
                    known.trusted_since.plus(limits::DESTINATION_AGE_MS_MIN_DEFAULT) <= root.requested_at
                };
                if !before.iter().any(|known| old_enough(known) && &known.id == destination) {
                    return Err(format!("a password was set from {destination}, which was not old enough before"));
                }
                let until = self.confirmed_at.map(|at| at.plus(limits::SET_PASSWORD_LINK_TTL_MS));
                if until.is_none_or(|until| event.at >= until) {
                    return Err("a set-password link was used after its time".to_string());
                }
                self.password_set = true;
                Ok(())
            }
            EventBody::ExecutionFailed { effect_id, .. } => {
                self.check_effect(effect_id)?;
                self.round.clear();
                self.cooling_off = None;
                Ok(())
            }
            EventBody::RolledBack { reversal, .. } => self.check_rollback(reversal),
            EventBody::SecondFactorProven { factor: SecondFactor::Totp }
                if root.snapshot.totp_enrolled_since.is_none() =>
            {
                Err("THREATS 9: an authenticator was counted for an account the directory shows without one"
                    .to_string())
            }
            EventBody::SecondFactorProven { factor: SecondFactor::SignIn { .. } }
                if !root.snapshot.may_have_authenticator() =>
            {
                Err("THREATS 9: a sign-in was counted for an account without a second factor".to_string())
            }
            EventBody::SecondFactorProven { .. } => {
                self.totp_proven = true;
                Ok(())
            }
            EventBody::RecoveryRequested { .. }
            | EventBody::ChallengeWithheld { .. }
            | EventBody::ProofRejected { .. }
            | EventBody::CaseDenied { .. }
            | EventBody::CaseCancelled { .. }
            | EventBody::CaseExpired
            | EventBody::CommandRefused { .. } => Ok(()),
            // Notices go only to destinations the account had before the request (SPEC principle 5).
            EventBody::NoticesDelivered { destinations, .. } => {
                let before = root.snapshot.pre_existing(root.requested_at);
                match destinations.iter().find(|id| !before.iter().any(|destination| &destination.id == *id)) {
                    Some(id) => Err(format!("a notice was delivered to {id}, which did not exist before the request")),
                    None => Ok(()),
                }
            }
        }
    }

    /// Invariant 4 (and the proof half of invariant 1): every destination is one the account had when the case was
    /// requested, trusted at least the minimum age before it, and not revoked; and none is the address the request
    /// names, even one the account has trusted for long (SPEC principle 2: "a destination named in the request ...
    /// never receives a code").
    fn check_addressable(&self, root: &Root, destinations: &[DestinationId]) -> Result<(), String> {
        let (snapshot, requested_at) = (&root.snapshot, root.requested_at);
        if destinations.is_empty() {
            return Err("no destination at all".to_string());
        }
        for id in destinations {
            let Some(destination) = snapshot.destinations.iter().find(|destination| &destination.id == id) else {
                return Err(format!("{id}, which is not a destination of the account"));
            };
            let old_enough = destination.trusted_since.0 + limits::DESTINATION_AGE_MS_MIN_DEFAULT <= requested_at.0;
            if !snapshot.known || destination.revoked || !old_enough {
                return Err(format!("{id}, which was not eligible when the case was requested"));
            }
            if let RecoveryAction::AddDestination { address, .. } = &root.action
                && address.eq_ignore_ascii_case(&destination.address)
            {
                return Err(format!("{id}, whose address the request itself named"));
            }
        }
        Ok(())
    }

    /// The reviewers whose approval still counts at `now` (issue 5: an approval expires).
    fn live_round(&self, now: UnixMs) -> BTreeSet<&ActorId> {
        let live = |at: &UnixMs| at.0 + limits::REVIEW_APPROVAL_TTL_MS > now.0;
        self.round.iter().filter(|(_, at)| live(at)).map(|(reviewer, _)| reviewer).collect()
    }

    fn check_approval(
        &mut self,
        root: &Root,
        reviewer: &ActorId,
        action_hash: &ActionHash,
        at: UnixMs,
    ) -> Result<(), String> {
        if action_hash != &root.action_hash {
            return Err("principle 6: an approval of a different action was counted".to_string());
        }
        if reviewer == &root.requester.id {
            return Err("principle 6: the requester approved their own request".to_string());
        }
        if self.live_round(at).contains(reviewer) {
            return Err(format!("principle 6: {reviewer} approved twice in one review"));
        }
        self.round.push((reviewer.clone(), at));
        Ok(())
    }

    /// Invariant 1: a change is authorized by an accepted proof (never for a high-value account) or by a quorum of
    /// distinct reviewers, none of them the requester, two for a high-value account.
    fn check_authorization(&self, root: &Root, authorization: &Authorization, at: UnixMs) -> Result<(), String> {
        let high_value = root.snapshot.is_high_value();
        match authorization {
            Authorization::Policy { .. } if high_value => {
                Err("principle 6: a high-value account reached cooling_off by policy".to_string())
            }
            Authorization::Policy { .. } if !self.proof_accepted => {
                Err("invariant 1: cooling_off by policy without an accepted proof".to_string())
            }
            Authorization::Policy { .. }
                if root.action.changes_factors() && root.snapshot.may_have_authenticator() && !self.totp_proven =>
            {
                Err("THREATS 9: a factor change went ahead by policy without the account's authenticator".to_string())
            }
            Authorization::Policy { .. } => Ok(()),
            Authorization::Quorum { reviewers } => {
                let required = if high_value { limits::HIGH_VALUE_REVIEWERS_MIN as usize } else { 1 };
                let listed: BTreeSet<&ActorId> = reviewers.iter().collect();
                let approved = self.live_round(at);
                if approved.len() < required || listed != approved {
                    return Err(format!(
                        "invariant 1: quorum of {reviewers:?} with approvals {:?}, {required} required",
                        self.round
                    ));
                }
                Ok(())
            }
        }
    }

    /// Principle 5: the wait is at least the floor (longer for a new destination) and every pre-existing
    /// destination is told.
    fn check_cooling_off(
        &self,
        root: &Root,
        at: UnixMs,
        ends_at: UnixMs,
        notify: &[DestinationId],
    ) -> Result<(), String> {
        let floor_ms = if root.action.adds_destination() {
            limits::NEW_DESTINATION_COOLING_OFF_MS_MIN
        } else {
            limits::COOLING_OFF_MS_MIN
        };
        if ends_at.0 < at.0 + floor_ms {
            return Err(format!("principle 5: cooling-off of {} ms is under {floor_ms} ms", ends_at.0 - at.0));
        }
        let expected: BTreeSet<&DestinationId> = (root.snapshot.destinations.iter())
            .filter(|destination| !destination.revoked && destination.trusted_since <= root.requested_at)
            .map(|destination| &destination.id)
            .collect();
        let notified: BTreeSet<&DestinationId> = notify.iter().collect();
        if notified != expected {
            return Err(format!("principle 5: notified {notified:?}, pre-existing {expected:?}"));
        }
        Ok(())
    }

    /// Invariants 2 and 3: execution starts only under a valid authorization, after its cooling-off, unhalted.
    fn check_start(&self, record: &Recorded) -> Result<(), String> {
        let Some(cooling_off) = &self.cooling_off else {
            return Err("invariant 1: execution started without a valid authorization".to_string());
        };
        if record.event.at < cooling_off.ends_at {
            return Err(format!(
                "invariant 2: execution started at {} before {}",
                record.event.at, cooling_off.ends_at
            ));
        }
        if record.halted {
            return Err("invariant 3: execution started while automation was halted".to_string());
        }
        Ok(())
    }

    fn check_effect(&self, effect_id: &EffectId) -> Result<(), String> {
        match &self.started {
            Some(started) if started == effect_id => Ok(()),
            other => Err(format!("principle 7: effect {effect_id} reported, {other:?} started")),
        }
    }

    /// Principle 9: a rollback undoes exactly what was executed and can be undone, newest change first. Revoked
    /// sessions cannot come back (principle 9 revokes the sessions opened since instead), so a reversal never claims
    /// them (issue 15, item 11).
    fn check_rollback(&self, reversal: &[Change]) -> Result<(), String> {
        let Some(changes) = &self.confirmed else {
            return Err("principle 9: rolled back a change that was never executed".to_string());
        };
        let expected: Vec<Change> = (changes.iter().rev())
            .filter(|change| change.record != "sessions" && !change.record.starts_with("session:"))
            .map(|change| Change { record: change.record.clone(), old: change.new.clone(), new: change.old.clone() })
            .collect();
        if reversal != expected.as_slice() {
            return Err(format!("principle 9: reversal {reversal:?} does not undo {changes:?}"));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The exploration.
// ---------------------------------------------------------------------------------------------------------------

/// Steps from each root (each a command: a tick, a case command, or a kill-switch command), after the request
/// that opened the case: every sequence explored is up to nine commands long.
const EXPLORATION_DEPTH: usize = 8;

/// At most this many threads explore one level.
const EXPLORATION_WORKERS_MAX: usize = 8;

/// Floors well under what the exploration reaches today (about 80,000 states and 1.5 million steps), so that a
/// change that makes it explore next to nothing (a visited key that merges everything, a step that stops working)
/// fails the test instead of passing it vacuously.
const EXPLORATION_STATES_MIN: usize = 40_000;
const EXPLORATION_STEPS_MIN: u64 = 800_000;

/// What the future of a case depends on, and nothing that only grows: command ids and counters are left out, and
/// every moment is taken relative to now (a moment already passed is as good as any other passed moment). Any other
/// field, including one added to `CaseState` later, is hashed as it is, which can only make the key finer.
fn visited_key(case: &mut Case) -> u128 {
    let now = case.now;
    let relative = |at: UnixMs| UnixMs(at.0.saturating_sub(now.0));
    let open_challenge = case.state.challenge.as_ref().is_some_and(|challenge| challenge.expires_at > now);
    // Wrong codes matter only while a code can still be tried, and a code lives far less than the attempt window.
    let failures = if open_challenge { case.account_facts().failed_attempts_in_window } else { 0 };
    // The state is normalized in place and restored, because cloning it for every step would dominate the run.
    let state = &mut case.state;
    let seen_commands = std::mem::take(&mut state.seen_commands);
    let facts = state.facts.take();
    let counters = (std::mem::take(&mut state.events), std::mem::take(&mut state.refusals));
    let moments = (state.deadline, state.cooling_off_ends_at, state.challenge.as_ref().map(|c| c.expires_at));
    // Owed notices change no decision but their own confirmation (which a step from any state still tries), so two
    // states that differ only in them lead to the same places: exploring both would double the run for nothing.
    let notices = std::mem::take(&mut state.notices);
    // An approval matters only until it expires: an expired one is dropped, a live one keeps its remaining life.
    let approvals = std::mem::take(&mut state.approvals);
    state.approvals = (approvals.iter())
        .map(|approval| Approval {
            reviewer: approval.reviewer.clone(),
            at: relative(approval.at.plus(limits::REVIEW_APPROVAL_TTL_MS)),
        })
        .filter(|approval| approval.at.0 > 0)
        .collect();
    state.deadline = state.deadline.map(relative);
    state.cooling_off_ends_at = state.cooling_off_ends_at.map(relative);
    if let Some(challenge) = state.challenge.as_mut() {
        challenge.expires_at = relative(challenge.expires_at);
    }
    let mut hasher = WideHasher::default();
    // The facts are fixed by the root, which its address identifies within one exploration.
    (Rc::as_ptr(&case.root) as usize, &*state, case.control.halted, failures).hash(&mut hasher);
    state.seen_commands = seen_commands;
    state.facts = facts;
    state.notices = notices;
    state.approvals = approvals;
    (state.events, state.refusals) = counters;
    (state.deadline, state.cooling_off_ends_at) = (moments.0, moments.1);
    if let (Some(challenge), Some(expires_at)) = (state.challenge.as_mut(), moments.2) {
        challenge.expires_at = expires_at;
    }
    hasher.finish_wide()
}

/// Two FxHash lanes with different constants, for a 128-bit key: fast in the debug profile, where SipHash would
/// take a third of the exploration's time. 128 bits make a false "already visited" (two states
/// colliding in both lanes) negligible.
#[derive(Default)]
struct WideHasher {
    lanes: [u64; 2],
}

impl WideHasher {
    fn add(&mut self, word: u64) {
        self.lanes[0] = (self.lanes[0].rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
        self.lanes[1] = (self.lanes[1].rotate_left(29) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish_wide(&self) -> u128 {
        (u128::from(self.lanes[0]) << 64) | u128::from(self.lanes[1])
    }
}

impl Hasher for WideHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("chunks_exact yields 8 bytes")));
        }
        let mut tail = [0_u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.add(u64::from_le_bytes(tail) ^ (bytes.len() as u64) << 56);
    }

    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        self.lanes[0]
    }
}

struct Exploration {
    roots: usize,
    states: usize,
    steps: u64,
    /// How many new states each depth reached: the sequences the exploration carried on with.
    frontiers: Vec<usize>,
    edges: BTreeSet<Edge>,
    statuses: BTreeMap<Status, usize>,
}

/// What one thread made of its share of a level: the children not seen at an earlier level (with their keys), the
/// transitions taken, and the steps.
type LevelPart = (Vec<(u128, Case)>, BTreeSet<Edge>, u64);

fn explore(depth: usize) -> Exploration {
    let mut edges = BTreeSet::new();
    let roots = exploration_roots();
    let root_count = roots.len();
    let mut frontier: Vec<Case> = roots
        .into_iter()
        .map(|root| Case::open(root, &mut edges).unwrap_or_else(|violation| panic!("opening a case: {violation}")))
        .collect();
    let mut visited: HashSet<u128> = frontier.iter_mut().map(visited_key).collect();
    let mut statuses = BTreeMap::new();
    let steps = exploration_steps();
    let (mut taken, mut frontiers) = (0_u64, Vec::new());
    for case in &frontier {
        *statuses.entry(case.state.status).or_insert(0) += 1;
    }
    // Each level's cases are shared out among the machine's cores; their children are merged back in the order of
    // the cases, so that the states kept (the first of each key) and every count are the same as on one core.
    let workers = std::thread::available_parallelism().map_or(1, usize::from).min(EXPLORATION_WORKERS_MAX);
    for _ in 0..depth {
        let share = frontier.len().div_ceil(workers).max(1);
        let parts: Vec<LevelPart> = std::thread::scope(|scope| {
            let (visited, steps) = (&visited, &steps);
            let handles: Vec<_> = frontier
                .chunks(share)
                .map(|cases| {
                    scope.spawn(move || {
                        let (mut children, mut edges, mut taken) = (Vec::new(), BTreeSet::new(), 0_u64);
                        for case in cases {
                            for &step in steps.iter().filter(|&&step| worth_trying(case, step)) {
                                taken += 1;
                                let place = || format!("{:?} then {step:?}", case.path);
                                let mut child = guarded(|| case.perform(step, &mut edges), place)
                                    .unwrap_or_else(|violation| panic!("exploration found a violation: {violation}"));
                                let key = visited_key(&mut child);
                                if !visited.contains(&key) {
                                    children.push((key, child));
                                }
                            }
                        }
                        (children, edges, taken)
                    })
                })
                .collect();
            let joined = handles.into_iter().map(|handle| handle.join());
            joined.map(|part| part.unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
        });
        let mut next = Vec::new();
        for (children, part_edges, part_taken) in parts {
            edges.extend(part_edges);
            taken += part_taken;
            for (key, child) in children {
                if visited.insert(key) {
                    *statuses.entry(child.state.status).or_insert(0) += 1;
                    next.push(child);
                }
            }
        }
        frontiers.push(next.len());
        frontier = next;
    }
    Exploration { roots: root_count, states: visited.len(), steps: taken, frontiers, edges, statuses }
}

/// Whether the exploration tries `step` on `case`. Every step is tried everywhere except the operator's switch,
/// which is thrown only while a case is cooling off: the kill switch changes nothing but the timer's tick in
/// cooling_off, so throwing it there reaches every behaviour that throwing it earlier would, in as many steps,
/// without doubling every other state of the case.
fn worth_trying(case: &Case, step: Step) -> bool {
    match step {
        Step::KillSwitch { by: Who::Operator, .. } => case.state.status == Status::CoolingOff,
        // Only a case that owes notices has any to confirm.
        Step::ConfirmNotices { .. } => !case.state.notices.is_empty(),
        // Only an executed case has a link to use.
        Step::SetPassword { .. } => case.state.status == Status::Executed,
        Step::KillSwitch { .. }
        | Step::Wait { .. }
        | Step::Tick { .. }
        | Step::SubmitProof { .. }
        | Step::Approve { .. }
        | Step::Deny { .. }
        | Step::Cancel { .. }
        | Step::Confirm { .. }
        | Step::RollBack { .. }
        | Step::RequestAgain { .. }
        | Step::Retry { .. } => true,
    }
}

/// Runs `work`, turning a panic inside the core into a failure that says where it happened.
fn guarded<T>(work: impl FnOnce() -> T, place: impl FnOnce() -> String) -> T {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(value) => value,
        Err(payload) => {
            let message = (payload.downcast_ref::<String>().map(String::as_str))
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("a non-string panic");
            panic!("the core panicked ({message}) at {}", place())
        }
    }
}

fn table_edges() -> BTreeSet<Edge> {
    let name = |text: &str| Status::from_name(text).unwrap_or_else(|| panic!("the table names unknown state {text}"));
    table()
        .edges()
        .into_iter()
        .map(|edge| {
            let kind = EventKind::from_name(&edge.on).unwrap_or_else(|| panic!("unknown event {}", edge.on));
            (name(&edge.from), kind, name(&edge.to))
        })
        .collect()
}

fn show(edges: &BTreeSet<Edge>) -> String {
    let lines: Vec<String> =
        edges.iter().map(|(from, kind, to)| format!("  {from} --{}--> {to}", kind.name())).collect();
    lines.join("\n")
}

// Proves, over every sequence of up to EXPLORATION_DEPTH steps from every exploration root (up to the visited-state
// dedup), that each SPEC invariant holds after every step, and that the transitions the core actually takes are
// exactly the rows of state-machines/recovery.toml: every row is reachable, nothing unlisted happens.
// Run with `cargo test -p airlock-invariants exploration -- --nocapture` to see the counts.
#[test]
fn exploration_upholds_every_invariant_and_walks_exactly_the_table() {
    let exploration = explore(EXPLORATION_DEPTH);
    println!(
        "exploration: {} roots, {EXPLORATION_DEPTH} steps deep, {} distinct states, {} steps executed, {} edges",
        exploration.roots,
        exploration.states,
        exploration.steps,
        exploration.edges.len()
    );
    println!("exploration: new states per depth {:?}", exploration.frontiers);
    println!("exploration: distinct states by status {:?}", exploration.statuses);
    assert!(exploration.states > EXPLORATION_STATES_MIN, "the exploration reached only {} states", exploration.states);
    assert!(exploration.steps > EXPLORATION_STEPS_MIN, "the exploration took only {} steps", exploration.steps);
    let listed = table_edges();
    let unreached: BTreeSet<Edge> = listed.difference(&exploration.edges).copied().collect();
    let unlisted: BTreeSet<Edge> = exploration.edges.difference(&listed).copied().collect();
    assert!(
        unreached.is_empty() && unlisted.is_empty(),
        "the table and the core disagree\nlisted but never taken:\n{}\ntaken but not listed:\n{}",
        show(&unreached),
        show(&unlisted)
    );
}

// Proves that the transition function in code and the table in state-machines/recovery.toml give the same answer
// for every (state, event) pair, including "not allowed", and agree on the states, the initial state and which
// states are terminal.
#[test]
fn transition_function_agrees_with_the_table_for_every_pair() {
    let table = table();
    let names: Vec<&str> = Status::ALL.iter().map(|status| status.name()).collect();
    assert_eq!(table.states, names, "the table's states are Status::ALL, in order");
    assert_eq!(table.initial, Status::New.name());
    for status in Status::ALL {
        assert_eq!(status.is_terminal(), table.is_terminal(status.name()), "terminal disagreement on {status}");
        for kind in EventKind::ALL {
            let by_code = transition::target(status, kind).map(|to| to.name().to_string());
            let by_table = table.target(status.name(), kind.name());
            assert_eq!(by_code, by_table, "{status} --{}-->", kind.name());
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The simulation.
// ---------------------------------------------------------------------------------------------------------------

/// The base seed when `AIRLOCK_SIM_SEED` is not set ("AIRLOCK" and a 1, in ASCII).
const SIMULATION_SEED_DEFAULT: u64 = 0x41_49_52_4c_4f_43_4b_01;
/// Runs when `AIRLOCK_SIM_RUNS` is not set: enough to take every reachable row of the table, a few seconds long.
const SIMULATION_RUNS_DEFAULT: u64 = 20_000;
/// Steps per run after the request: short runs end in every state, long ones go round the retry loops.
const SIMULATION_STEPS_MIN: usize = 5;
const SIMULATION_STEPS_MAX: usize = 60;
/// A run ends this many steps after reaching a terminal state: enough to knock on the closed door a few times,
/// without spending most of the simulation on refusals.
const SIMULATION_STEPS_AFTER_TERMINAL: usize = 3;
/// Seeds the replay test runs twice each.
const REPLAY_RUNS: u64 = 50;

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(text.trim().parse().unwrap_or_else(|_| panic!("{name} must be an unsigned integer, not {text:?}")))
}

/// The seed of run `index`. Run 0 uses the base seed itself, so a failing run's seed replays it as a single run.
fn run_seed(base: u64, index: u64) -> u64 {
    base.wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// An account of random shape: known or not, standard or high-value, zero to three destinations of random ages
/// (some young, some exactly at the minimum age, some revoked, rarely one trusted after the request).
fn random_snapshot(rng: &mut StdRng) -> AccountSnapshot {
    if rng.random_bool(0.08) {
        return AccountSnapshot::unknown(AccountId::new("account-1"));
    }
    let reasons = [HighValueReason::Admin, HighValueReason::Creator, HighValueReason::Finance, HighValueReason::Vip];
    let risk_class = if rng.random_bool(0.3) { RiskClass::HighValue(pick(rng, &reasons)) } else { RiskClass::Standard };
    let ages_ms = [DAY_MS, 6 * DAY_MS, 7 * DAY_MS, 7 * DAY_MS + 1, 30 * DAY_MS, 400 * DAY_MS];
    let count = rng.random_range(0..=3);
    let destinations = (0..count)
        .map(|index| {
            let trusted_since = if rng.random_bool(0.04) {
                REQUESTED_AT.plus(HOUR_MS)
            } else {
                UnixMs(REQUESTED_AT.0 - pick(rng, &ages_ms))
            };
            let address = if index % 2 == 0 { format!("owner{index}@example.com") } else { format!("+1555010{index}") };
            let mut destination = destination(&format!("destination-{index}"), &address, trusted_since);
            destination.revoked = rng.random_bool(0.08);
            destination
        })
        .collect();
    let mut snapshot = known_account(risk_class, destinations);
    snapshot.totp_enrolled_since = rng.random_bool(0.3).then_some(UnixMs(REQUESTED_AT.0 - 90 * DAY_MS));
    // A directory that cannot show an authenticator (SCIM, issue 18 item 6).
    snapshot.authenticator_unknown = snapshot.totp_enrolled_since.is_none() && rng.random_bool(0.3);
    snapshot.last_credential_change = rng.random_bool(0.2).then_some(UnixMs(REQUESTED_AT.0 - 3 * DAY_MS));
    if rng.random_bool(0.1) {
        snapshot.risk_flags.push("sim_swap_reported".to_string());
    }
    snapshot
}

fn random_action(rng: &mut StdRng, snapshot: &AccountSnapshot) -> RecoveryAction {
    match rng.random_range(0..4) {
        0 => RecoveryAction::ResetPassword,
        1 => RecoveryAction::RemoveTotp,
        // SPEC.md's attack: the request names an address already on the account (slipped in shortly before, or
        // long trusted).
        2 if !snapshot.destinations.is_empty() => {
            let named = rng.random_range(0..snapshot.destinations.len());
            add_destination(&snapshot.destinations[named].address)
        }
        _ => add_destination(NEW_ADDRESS),
    }
}

fn random_root(rng: &mut StdRng, seed: u64) -> Root {
    let snapshot = random_snapshot(rng);
    let action = random_action(rng, &snapshot);
    let mut root = root(format!("seed {seed}"), snapshot, action, rng);
    root.signals = Signals {
        source_network: Some("AS64500".to_string()),
        region: None,
        via_proxy: rng.random_bool(0.3),
        claims_urgency: rng.random_bool(0.3),
        offered_knowledge_facts: rng.random_bool(0.2),
    };
    if rng.random_bool(0.2) {
        root.requester = Actor::new(Role::Owner, "owner");
    }
    root.other_requests = pick(rng, &[0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 5, 9, 12]);
    root.destination_requests = pick(rng, &[0, 0, 0, 0, 0, 0, 0, 0, 1, 3]);
    let failures = pick(rng, &[0, 0, 0, 0, 0, 1, 3, 4, 5]);
    root.failures_elsewhere =
        (0..failures).map(|_| UnixMs(REQUESTED_AT.0 - rng.random_range(0..30 * HOUR_MS))).collect();
    root.outstanding_elsewhere = rng.random_bool(0.05);
    root.label = format!("seed {seed}: {}", describe(&root));
    root
}

/// The root in a line, for failure messages: who asked for what, on which account.
fn describe(root: &Root) -> String {
    let snapshot = &root.snapshot;
    let destinations: Vec<String> = (snapshot.destinations.iter())
        .map(|destination| {
            let age_ms = root.requested_at.0 as i64 - destination.trusted_since.0 as i64;
            let revoked = if destination.revoked { ", revoked" } else { "" };
            format!("{} trusted {:.2} days before{revoked}", destination.address, age_ms as f64 / DAY_MS as f64)
        })
        .collect();
    format!(
        "{} asks to {} on a {} {:?} account with destinations {destinations:?}; {} other requests, {} wrong codes \
         elsewhere, code outstanding elsewhere: {}",
        root.requester,
        root.action.describe(),
        if snapshot.known { "known" } else { "unknown" },
        snapshot.risk_class,
        root.other_requests,
        root.failures_elsewhere.len(),
        root.outstanding_elsewhere
    )
}

/// A random step, biased towards the actor each command belongs to so that runs get deep into the machine, with
/// one step in ten sent by a random role instead. `applied` is how often the executor manages to apply a change.
fn random_step(rng: &mut StdRng, applied: f64) -> Step {
    let reviewers = [Who::ReviewerA, Who::ReviewerB, Who::RequesterAsReviewer];
    let mut step = match rng.random_range(0..100) {
        0..20 => Step::Wait {
            ms: match rng.random_range(0..10) {
                0 => 8 * DAY_MS,
                1..4 => rng.random_range(0..4 * DAY_MS),
                _ => pick(rng, &WAITS_MS[..5]),
            },
            timer_fires: rng.random_bool(0.8),
        },
        20..36 => Step::SubmitProof {
            by: Who::Owner,
            right_code: rng.random_bool(0.75),
            other_requests: pick(rng, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 9]),
            totp: pick(
                rng,
                &[
                    SecondFactorCheck::NotGiven,
                    SecondFactorCheck::NotGiven,
                    SecondFactorCheck::Valid,
                    SecondFactorCheck::Invalid,
                    SecondFactorCheck::SignedIn { auth_time: UnixMs(REQUESTED_AT.0 + 60_000) },
                ],
            ),
        },
        36..55 => Step::Approve { by: pick(rng, &reviewers), right_hash: rng.random_bool(0.9) },
        55..57 => Step::Deny { by: Who::ReviewerA },
        57..61 => Step::Cancel { by: pick(rng, &[Who::Owner, Who::Operator]) },
        61..79 => {
            Step::Confirm { by: Who::System, applied: rng.random_bool(applied), current_effect: rng.random_bool(0.9) }
        }
        79..84 => Step::RollBack { by: Who::Operator },
        84..92 => Step::KillSwitch { by: Who::Operator, halt: rng.random_bool(0.5) },
        92..95 => Step::Retry { by: rng.random_bool(0.5).then(|| pick(rng, &Who::ALL)) },
        95..97 => Step::ConfirmNotices { by: Who::System },
        97 => Step::SetPassword { by: Who::Owner, sent_there: rng.random_bool(0.8) },
        _ => Step::RequestAgain { by: pick(rng, &[Who::Intake, Who::Owner]) },
    };
    if rng.random_bool(0.1) {
        step = with_sender(step, pick(rng, &Who::ALL));
    }
    step
}

fn with_sender(step: Step, who: Who) -> Step {
    match step {
        Step::Tick { .. } | Step::Wait { .. } => Step::Tick { by: who },
        Step::SubmitProof { right_code, other_requests, totp, .. } => {
            Step::SubmitProof { by: who, right_code, other_requests, totp }
        }
        Step::Approve { right_hash, .. } => Step::Approve { by: who, right_hash },
        Step::Deny { .. } => Step::Deny { by: who },
        Step::Cancel { .. } => Step::Cancel { by: who },
        Step::Confirm { applied, current_effect, .. } => Step::Confirm { by: who, applied, current_effect },
        Step::RollBack { .. } => Step::RollBack { by: who },
        Step::RequestAgain { .. } => Step::RequestAgain { by: who },
        Step::ConfirmNotices { .. } => Step::ConfirmNotices { by: who },
        Step::SetPassword { sent_there, .. } => Step::SetPassword { by: who, sent_there },
        Step::KillSwitch { halt, .. } => Step::KillSwitch { by: who, halt },
        Step::Retry { .. } => Step::Retry { by: Some(who) },
    }
}

/// One run: a random root and a random sequence of steps, every invariant checked after each.
fn simulate(seed: u64, edges: &mut BTreeSet<Edge>) -> Result<Case, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let root = random_root(&mut rng, seed);
    let mut case = Case::open(root, edges)?;
    // One run in five has a flaky executor, so that changes fail again and again until the case gives up.
    let applied = if rng.random_bool(0.2) { 0.1 } else { 0.7 };
    let mut steps_after_terminal = 0;
    for _ in 0..rng.random_range(SIMULATION_STEPS_MIN..=SIMULATION_STEPS_MAX) {
        if steps_after_terminal == SIMULATION_STEPS_AFTER_TERMINAL {
            break;
        }
        case = case.perform(random_step(&mut rng, applied), edges)?;
        if is_terminal(case.state.status) {
            steps_after_terminal += 1;
        }
    }
    Ok(case)
}

// Proves every invariant over AIRLOCK_SIM_RUNS (default 20,000) random runs derived from AIRLOCK_SIM_SEED (default
// a fixed seed). A failure names the run's seed and the command that replays exactly that run.
#[test]
fn simulation() {
    let base = env_u64("AIRLOCK_SIM_SEED").unwrap_or(SIMULATION_SEED_DEFAULT);
    let runs = env_u64("AIRLOCK_SIM_RUNS").unwrap_or(SIMULATION_RUNS_DEFAULT);
    let mut edges = BTreeSet::new();
    let (mut steps, mut events) = (0, 0);
    let mut finals: BTreeMap<Status, u64> = BTreeMap::new();
    for index in 0..runs {
        let seed = run_seed(base, index);
        let reproduce =
            format!("AIRLOCK_SIM_SEED={seed} AIRLOCK_SIM_RUNS=1 cargo test -p airlock-invariants simulation");
        let case = guarded(|| simulate(seed, &mut edges), || format!("seed {seed}; reproduce: {reproduce}"))
            .unwrap_or_else(|violation| {
                panic!("simulation run {index} (seed {seed}): {violation}\n  reproduce: {reproduce}")
            });
        steps += case.path.len() as u64;
        events += case.state.events as u64;
        *finals.entry(case.state.status).or_insert(0) += 1;
    }
    println!("simulation: base seed {base}, {runs} runs, {steps} steps, {events} events, {} edges", edges.len());
    println!("simulation: final statuses {finals:?}");
    assert!(steps >= runs * SIMULATION_STEPS_AFTER_TERMINAL as u64, "the runs took only {steps} steps");
    // A full simulation must get everywhere the exploration gets: every row of the table that can be taken.
    if runs >= SIMULATION_RUNS_DEFAULT {
        let missed: BTreeSet<Edge> = table_edges().difference(&edges).copied().collect();
        assert!(missed.is_empty(), "the simulation never took these rows:\n{}", show(&missed));
    }
}

// Proves that a seed replays exactly: two runs from the same seed produce identical histories, paths and states,
// so the seed a failure prints is all anyone needs to reproduce it.
#[test]
fn replaying_a_seed_reproduces_the_same_history() {
    let base = env_u64("AIRLOCK_SIM_SEED").unwrap_or(SIMULATION_SEED_DEFAULT);
    for index in 0..REPLAY_RUNS {
        let seed = run_seed(base, index);
        let first = simulate(seed, &mut BTreeSet::new()).unwrap_or_else(|violation| panic!("seed {seed}: {violation}"));
        let second =
            simulate(seed, &mut BTreeSet::new()).unwrap_or_else(|violation| panic!("seed {seed}: {violation}"));
        assert_eq!(first.path, second.path, "seed {seed} chose different steps");
        assert_eq!(first.events(), second.events(), "seed {seed} produced different histories");
        assert_eq!(first.state, second.state, "seed {seed} reached different states");
    }
}

/// A rule an operator may add to the shipped policies: deny after proof when the account is very busy. The shipped
/// policies never deny by account velocity (ADR 14: anyone can raise that count), so without it no policy would deny
/// at the authorization phase, and the core's `verified | policy deny | denied` row, which a deployment's own policy
/// can take, would go unexplored.
const AUTHORIZATION_DENY_RULE: &str = r#"
@id("test.authorization.busy-account.deny")
permit (principal, action == Airlock::Action::"deny", resource)
when { context.phase == "authorization" && context.velocity.account >= 10 };
"#;

/// The shipped Cedar policies plus `AUTHORIZATION_DENY_RULE`, memoised by their facts: the policy is a pure function
/// of its facts (tests/core/policy.rs checks it), and the exploration asks the same few questions hundreds of
/// thousands of times.
fn evaluate_policy(facts: &PolicyFacts) -> airlock::core::policy::PolicyDecision {
    thread_local! {
        static DECISIONS: std::cell::RefCell<HashMap<PolicyFacts, airlock::core::policy::PolicyDecision>> =
            std::cell::RefCell::new(HashMap::new());
        static ENGINE: airlock::policy::Engine = airlock::policy::Engine::load(
            include_str!("../../../policies/airlock.cedarschema"),
            &format!("{}\n{AUTHORIZATION_DENY_RULE}", include_str!("../../../policies/default.cedar")),
        )
        .expect("the shipped policies with one more rule load");
    }
    DECISIONS.with(|decisions| {
        decisions
            .borrow_mut()
            .entry(facts.clone())
            .or_insert_with(|| ENGINE.with(|engine| engine.evaluate(facts)))
            .clone()
    })
}
