//! Golden fixtures: the exact bytes of every event type at its current version are committed under
//! `tests/golden/v1/`. Decoding them must give the sample back, and encoding the sample must give the same bytes,
//! so an incompatible change to an event's shape fails here until its version is bumped and an upcaster added.
//! Regenerate (only for a NEW version, never to paper over a change): `AIRLOCK_WRITE_GOLDEN=1 cargo test --test core golden::`.

use airlock::core::account::{AccountSnapshot, Destination, DestinationKind, HighValueReason, RiskClass};
use airlock::core::action::{ActionHash, RecoveryAction};
use airlock::core::actor::{Actor, Role};
use airlock::core::command::{Change, CommandKind};
use airlock::core::control::{ControlEvent, ControlEventBody};
use airlock::core::event::{
    Authorization, DenialReason, Event, EventBody, EventKind, ProofFailure, ReviewReason, SecondFactor, WithheldReason,
};
use airlock::core::ids::{AccountId, ActorId, CaseId, ChallengeId, CommandId, DestinationId, EffectId, UnixMs};
use airlock::core::policy::{Outcome, Phase, PolicyDecision, PolicyFacts, Velocity};
use airlock::core::rejection::Rejection;
use airlock::core::signals::Signals;
use airlock::core::state::Status;
use airlock::core::text::UntrustedText;
use airlock::core::verification::CodeHash;
use airlock::log::envelope::{Decoded, case_event_version, decode, encode_case_event, encode_control_event};
use std::path::PathBuf;

const AT: UnixMs = UnixMs(1_780_304_400_000);

fn text(value: &str) -> UntrustedText {
    UntrustedText::new("golden", value, 1_000).unwrap()
}

/// The sample decision today: a domain count, and an open campaign alert (issue 20).
fn decision() -> PolicyDecision {
    let mut decision = decision_with_domain_count(4);
    decision.facts.open_alerts = vec!["destination_domain".into()];
    decision
}

/// The sample decision; version 1 of the events that record one had no domain count (it upcasts as 0).
fn decision_with_domain_count(domain: u32) -> PolicyDecision {
    PolicyDecision {
        policy_version: "airlock-baseline/1".into(),
        outcome: Outcome::Review,
        cooling_off_ms: 86_400_000,
        reviewers_required: 2,
        rules: vec!["account.high-value.review".into()],
        facts: PolicyFacts {
            phase: Phase::Authorization,
            action: "reset_password".into(),
            adds_destination: false,
            account_known: true,
            high_value: true,
            eligible_destinations: 1,
            has_totp: true,
            credential_changed_within_7d: false,
            risk_flags: vec!["sim_swap_reported".into()],
            velocity: Velocity {
                account_requests_24h: 1,
                source_network_requests_24h: 2,
                requester_requests_24h: 3,
                destination_requests_24h: 0,
                destination_domain_requests_24h: domain,
            },
            signal_friction: 1,
            halted: false,
            open_alerts: Vec::new(),
        },
    }
}

fn snapshot() -> AccountSnapshot {
    AccountSnapshot {
        account_id: AccountId::new("golden-account"),
        known: true,
        risk_class: RiskClass::HighValue(HighValueReason::Finance),
        destinations: vec![Destination {
            id: DestinationId::new("d-1"),
            kind: DestinationKind::Email,
            address: "owner@example.com".into(),
            trusted_since: UnixMs(1_700_000_000_000),
            revoked: false,
        }],
        totp_enrolled_since: Some(UnixMs(1_710_000_000_000)),
        authenticator_unknown: true,
        last_credential_change: None,
        risk_flags: vec!["sim_swap_reported".into()],
    }
}

/// One sample payload per event kind. The match is exhaustive: a new kind cannot be added without a fixture.
fn sample(kind: EventKind) -> EventBody {
    let destinations = vec![DestinationId::new("d-1")];
    match kind {
        EventKind::RecoveryRequested => EventBody::RecoveryRequested {
            account_id: AccountId::new("golden-account"),
            action: RecoveryAction::AddDestination { kind: DestinationKind::Email, address: "new@example.net".into() },
            action_hash: ActionHash("ab".repeat(32)),
            summary: text("please link my new email"),
            signals: Signals {
                source_network: Some("AS64500".into()),
                region: Some("EU".into()),
                via_proxy: true,
                claims_urgency: true,
                offered_knowledge_facts: false,
            },
            snapshot: snapshot(),
            intake_decision: decision(),
            deadline: AT.plus(86_400_000),
        },
        EventKind::ChallengeIssued => EventBody::ChallengeIssued {
            challenge_id: ChallengeId::new("challenge-1"),
            destinations: vec![DestinationId::new("d-1"), DestinationId::new("d-2")],
            code_hashes: vec![CodeHash([7; 32]), CodeHash([8; 32])],
            expires_at: AT.plus(600_000),
        },
        EventKind::ChallengeWithheld => EventBody::ChallengeWithheld { reason: WithheldReason::AnotherCodeOutstanding },
        EventKind::ProofRejected => EventBody::ProofRejected {
            challenge_id: ChallengeId::new("challenge-1"),
            attempts_left: 3,
            failed: ProofFailure::WrongSecondFactor,
        },
        EventKind::ProofAccepted => {
            EventBody::ProofAccepted { challenge_id: ChallengeId::new("challenge-1"), destinations }
        }
        EventKind::ReviewRequired => EventBody::ReviewRequired {
            decision: decision(),
            reason: ReviewReason::PolicyReview,
            deadline: AT.plus(604_800_000),
        },
        EventKind::ReviewApproved => EventBody::ReviewApproved {
            reviewer: ActorId::new("reviewer-1"),
            action_hash: ActionHash("ab".repeat(32)),
            approvals: 1,
            required: 2,
            reason: text("matches the account history"),
        },
        EventKind::CoolingOffStarted => EventBody::CoolingOffStarted {
            ends_at: AT.plus(259_200_000),
            deadline: AT.plus(864_000_000),
            notify: destinations,
            authorization: Authorization::Policy { decision: decision() },
        },
        EventKind::CaseDenied => EventBody::CaseDenied {
            reason: DenialReason::Reviewer {
                reviewer: ActorId::new("reviewer-1"),
                reason: text("story does not hold"),
            },
        },
        EventKind::CaseCancelled => EventBody::CaseCancelled { reason: text("not me") },
        EventKind::ExecutionStarted => EventBody::ExecutionStarted { effect_id: EffectId::new("case-1/execute/1") },
        EventKind::ExecutionConfirmed => EventBody::ExecutionConfirmed {
            effect_id: EffectId::new("case-1/execute/1"),
            changes: vec![Change { record: "password".into(), old: Some("v1".into()), new: Some("v2".into()) }],
        },
        EventKind::ExecutionFailed => EventBody::ExecutionFailed {
            effect_id: EffectId::new("case-1/execute/1"),
            reason: "directory timeout".into(),
            deadline: AT.plus(604_800_000),
        },
        EventKind::RolledBack => EventBody::RolledBack {
            effect_id: EffectId::new("case-1/rollback"),
            reason: text("owner objected"),
            reversal: vec![Change {
                record: "destination:d-2".into(),
                old: Some("email:new@example.net".into()),
                new: None,
            }],
        },
        EventKind::CaseExpired => EventBody::CaseExpired,
        EventKind::CommandRefused => EventBody::CommandRefused {
            command: CommandKind::ApproveReview,
            rejection: Rejection::WrongState { status: Status::Requested, command: CommandKind::ApproveReview },
        },
        EventKind::SecondFactorProven => {
            EventBody::SecondFactorProven { factor: airlock::core::event::SecondFactor::Totp }
        }
        EventKind::NoticesDelivered => EventBody::NoticesDelivered {
            for_event: 7,
            destinations: vec![DestinationId::new("d-1"), DestinationId::new("d-2")],
            outstanding: 1,
        },
        EventKind::PasswordSet => EventBody::PasswordSet {
            destination: DestinationId::new("d-1"),
            changes: vec![Change {
                record: "password".into(),
                old: Some("v2".into()),
                new: Some("v3 (set by the owner)".into()),
            }],
        },
    }
}

/// The fixtures of one version: `tests/golden/v<N>/`.
fn golden_dir(version: u16) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/v{version}"))
}

fn check_fixture(name: &str, version: u16, encoded: &[u8]) -> Decoded {
    let path = golden_dir(version).join(format!("{name}.hex"));
    if std::env::var_os("AIRLOCK_WRITE_GOLDEN").is_some() {
        std::fs::write(&path, format!("{}\n", hex::encode(encoded))).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let committed = hex::decode(committed.trim()).unwrap();
    let decoded =
        decode(&committed).unwrap_or_else(|error| panic!("{name}: committed fixture no longer decodes: {error}"));
    assert_eq!(committed, encoded, "{name}: the encoding changed; bump the event version and add an upcaster");
    decoded
}

// Proves every case event type still decodes from the committed bytes of its current version to the same value, and
// encodes to them.
#[test]
fn every_case_event_type_matches_its_golden_fixture() {
    let case_id = CaseId::new("case-golden");
    for (index, kind) in EventKind::ALL.into_iter().enumerate() {
        let event = Event {
            at: AT,
            actor: Actor::new(Role::System, "airlock"),
            command_id: CommandId::new(format!("command-{index}")),
            body: sample(kind),
        };
        let encoded = encode_case_event(&case_id, index as u64 + 1, &event);
        let decoded = check_fixture(kind.name(), case_event_version(kind), &encoded);
        let expected = Decoded::Case { case_id: case_id.clone(), stream_version: index as u64 + 1, event };
        assert_eq!(decoded, expected, "{}: decoded value differs", kind.name());
    }
}

// Proves the kill-switch events still decode from their committed v1 bytes.
#[test]
fn control_events_match_their_golden_fixtures() {
    let bodies = [
        ("automation_halted", ControlEventBody::AutomationHalted { reason: text("incident 42") }),
        ("automation_resumed", ControlEventBody::AutomationResumed { reason: text("incident 42 closed") }),
        (
            "baseline_attested",
            ControlEventBody::BaselineAttested {
                reason: text("adopting airlock; IdP audited (TICKET-1234)"),
                dated_to: UnixMs(1_709_000_000_000),
            },
        ),
    ];
    for (index, (name, body)) in bodies.into_iter().enumerate() {
        let event = ControlEvent {
            at: AT,
            actor: Actor::new(Role::Operator, "operator-1"),
            command_id: CommandId::new(format!("control-{index}")),
            body,
        };
        let encoded = encode_control_event(index as u64 + 1, &event);
        let decoded = check_fixture(name, 1, &encoded);
        assert_eq!(decoded, Decoded::Control { stream_version: index as u64 + 1, event });
    }
}

// Proves that a fixture with a changed byte is refused rather than silently misread: the check can fail.
#[test]
fn a_tampered_fixture_does_not_decode_to_the_sample() {
    let path = golden_dir(1).join("case_denied.hex");
    let mut bytes = hex::decode(std::fs::read_to_string(path).unwrap().trim()).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let case_id = CaseId::new("case-golden");
    let original = Event {
        at: AT,
        actor: Actor::new(Role::System, "airlock"),
        command_id: CommandId::new("command-8"),
        body: sample(EventKind::CaseDenied),
    };
    match decode(&bytes) {
        Err(_) => {}
        Ok(decoded) => assert_ne!(decoded, Decoded::Case { case_id, stream_version: 9, event: original }),
    }
}

// Proves an envelope naming an unknown event type or version is refused with that reason.
#[test]
fn unknown_type_and_version_are_refused() {
    let event = Event { at: AT, actor: Actor::system(), command_id: CommandId::new("c"), body: EventBody::CaseExpired };
    let bytes = encode_case_event(&CaseId::new("case-x"), 1, &event);
    let mut envelope: airlock::log::envelope::Envelope = postcard::from_bytes(&bytes).unwrap();
    envelope.version = 99;
    let error = decode(&postcard::to_stdvec(&envelope).unwrap()).unwrap_err();
    assert!(error.to_string().contains("version 99"), "{error}");
    envelope.version = 1;
    envelope.event_type = "case_teleported".into();
    let error = decode(&postcard::to_stdvec(&envelope).unwrap()).unwrap_err();
    assert!(error.to_string().contains("case_teleported"), "{error}");
}

// Proves the upcaster of ProofRejected v1 (before ADR 11 recorded which part of a proof was wrong): the committed v1
// bytes decode to today's event, with the same metadata and `failed: NotRecorded`, and are stored again as v2.
#[test]
fn a_version_1_proof_rejected_is_upcast() {
    let path = golden_dir(1).join("proof_rejected.hex");
    let old = hex::decode(std::fs::read_to_string(path).unwrap().trim()).unwrap();
    let envelope: airlock::log::envelope::Envelope = postcard::from_bytes(&old).unwrap();
    assert_eq!((envelope.event_type.as_str(), envelope.version), ("proof_rejected", 1));
    let Decoded::Case { case_id, stream_version, event } = decode(&old).unwrap() else { panic!("a case event") };
    let index = EventKind::ALL.iter().position(|kind| *kind == EventKind::ProofRejected).unwrap();
    assert_eq!((case_id.as_str(), stream_version), ("case-golden", index as u64 + 1));
    assert_eq!((event.at, event.command_id.as_str()), (AT, format!("command-{index}").as_str()));
    assert_eq!(
        event.body,
        EventBody::ProofRejected {
            challenge_id: ChallengeId::new("challenge-1"),
            attempts_left: 3,
            failed: ProofFailure::NotRecorded
        }
    );
    let again: airlock::log::envelope::Envelope =
        postcard::from_bytes(&encode_case_event(&case_id, stream_version, &event)).unwrap();
    assert_eq!(again.version, 2);
    // A v1 envelope around a payload of another variant is refused, not misread.
    let mut wrong = envelope.clone();
    wrong.payload[0] = 4;
    let error = decode(&postcard::to_stdvec(&wrong).unwrap()).unwrap_err();
    assert!(error.to_string().contains("not proof_rejected"), "{error}");
}

/// A committed version 1 fixture, its envelope checked, decoded through the upcaster; and today's encoding of it.
fn upcast_v1(name: &str, old: Vec<u8>) -> (Event, u16) {
    let envelope: airlock::log::envelope::Envelope = postcard::from_bytes(&old).unwrap();
    assert_eq!((envelope.event_type.as_str(), envelope.version), (name, 1));
    let Decoded::Case { case_id, stream_version, event } = decode(&old).unwrap() else { panic!("a case event") };
    let again: airlock::log::envelope::Envelope =
        postcard::from_bytes(&encode_case_event(&case_id, stream_version, &event)).unwrap();
    (event, again.version)
}

fn v1_fixture(name: &str) -> Vec<u8> {
    hex::decode(std::fs::read_to_string(golden_dir(1).join(format!("{name}.hex"))).unwrap().trim()).unwrap()
}

// Proves the events that record a policy decision, stored as version 1 before the registrable domain of a named
// address was counted (issue 15, item 10), decode to today's event with a domain count of 0 and are stored again as
// version 2: the committed v1 bytes of `recovery_requested` and `review_required`, the committed v1 `cooling_off_started`
// authorized by a quorum, and a v1 `cooling_off_started` authorized by the policy, written here field by field in
// the old order. A payload of another variant, or with bytes left over, is refused.
#[test]
fn version_1_decisions_are_upcast_with_no_domain_count() {
    let old_decision = decision_with_domain_count(0);
    let (event, version) = upcast_v1("recovery_requested", v1_fixture("recovery_requested"));
    let EventBody::RecoveryRequested { intake_decision, snapshot, .. } = &event.body else { panic!("{event:?}") };
    assert_eq!((intake_decision, version), (&old_decision, 4));
    assert!(!snapshot.authenticator_unknown, "a version 1 snapshot came from a directory that could tell");
    let (event, version) = upcast_v1("review_required", v1_fixture("review_required"));
    let EventBody::ReviewRequired { decision, .. } = &event.body else { panic!("{event:?}") };
    assert_eq!((decision, version), (&old_decision, 3));
    let (event, version) = upcast_v1("cooling_off_started", v1_fixture("cooling_off_started"));
    let EventBody::CoolingOffStarted { authorization, .. } = &event.body else { panic!("{event:?}") };
    let quorum = Authorization::Quorum { reviewers: vec![ActorId::new("reviewer-1"), ActorId::new("reviewer-2")] };
    assert_eq!((authorization, version), (&quorum, 3));

    // Version 1 of a cooling-off authorized by the policy: variant 7, ends_at, deadline, notify, then the
    // authorization (variant 0, Policy) and its decision with four velocity counts.
    let facts = &old_decision.facts;
    let velocity = &facts.velocity;
    let old_facts = (
        (facts.phase, facts.action.clone(), facts.adds_destination, facts.account_known, facts.high_value),
        (facts.eligible_destinations, facts.has_totp, facts.credential_changed_within_7d, facts.risk_flags.clone()),
        (
            velocity.account_requests_24h,
            velocity.source_network_requests_24h,
            velocity.requester_requests_24h,
            velocity.destination_requests_24h,
        ),
        (facts.signal_friction, facts.halted),
    );
    let old_policy = (
        old_decision.policy_version.clone(),
        old_decision.outcome,
        old_decision.cooling_off_ms,
        old_decision.reviewers_required,
        old_decision.rules.clone(),
        old_facts,
    );
    let payload = |variant: u32, extra: &[u8]| {
        let mut bytes = postcard::to_stdvec(&(
            variant,
            AT.plus(259_200_000),
            AT.plus(864_000_000),
            vec![DestinationId::new("d-1")],
            0_u32,
            old_policy.clone(),
        ))
        .unwrap();
        bytes.extend_from_slice(extra);
        bytes
    };
    let mut envelope: airlock::log::envelope::Envelope =
        postcard::from_bytes(&v1_fixture("cooling_off_started")).unwrap();
    envelope.payload = payload(7, &[]);
    let (event, version) = upcast_v1("cooling_off_started", postcard::to_stdvec(&envelope).unwrap());
    let EventBody::CoolingOffStarted { authorization, .. } = &event.body else { panic!("{event:?}") };
    assert_eq!((authorization, version), (&Authorization::Policy { decision: old_decision.clone() }, 3));
    for (variant, extra, refusal) in [(8, &[][..], "not cooling_off_started"), (7, &[0][..], "left over")] {
        envelope.payload = payload(variant, extra);
        let error = decode(&postcard::to_stdvec(&envelope).unwrap()).unwrap_err();
        assert!(error.to_string().contains(refusal), "{error}");
    }
}

// Proves the upcaster of ChallengeIssued v1 (one code for every destination, before issue 16 gave each its own): the
// committed v1 bytes decode to today's event with that one code's hash for each destination, and are stored again as
// version 2; a v1 envelope around another variant is refused.
#[test]
fn a_version_1_challenge_gives_every_destination_the_one_code() {
    let (event, version) = upcast_v1("challenge_issued", v1_fixture("challenge_issued"));
    assert_eq!(
        (event.body, version),
        (
            EventBody::ChallengeIssued {
                challenge_id: ChallengeId::new("challenge-1"),
                destinations: vec![DestinationId::new("d-1")],
                code_hashes: vec![CodeHash([7; 32])],
                expires_at: AT.plus(600_000),
            },
            2
        )
    );
    let mut envelope: airlock::log::envelope::Envelope = postcard::from_bytes(&v1_fixture("challenge_issued")).unwrap();
    envelope.payload[0] = 2;
    let error = decode(&postcard::to_stdvec(&envelope).unwrap()).unwrap_err();
    assert!(error.to_string().contains("not challenge_issued"), "{error}");
}

// Proves the upcaster of RecoveryRequested v2 (before issue 18, item 6, when every directory could say whether an
// account had an authenticator): the committed v2 bytes decode to today's event with `authenticator_unknown: false`
// and everything else as the sample, and are stored again as version 3. Another variant under a v2 envelope is
// refused.
#[test]
fn a_version_2_recovery_request_is_upcast_with_a_known_authenticator() {
    let old =
        hex::decode(std::fs::read_to_string(golden_dir(2).join("recovery_requested.hex")).unwrap().trim()).unwrap();
    let envelope: airlock::log::envelope::Envelope = postcard::from_bytes(&old).unwrap();
    assert_eq!((envelope.event_type.as_str(), envelope.version), ("recovery_requested", 2));
    let Decoded::Case { case_id, stream_version, event } = decode(&old).unwrap() else { panic!("a case event") };
    let EventBody::RecoveryRequested { snapshot, .. } = &event.body else { panic!("{event:?}") };
    assert_eq!(snapshot, &AccountSnapshot { authenticator_unknown: false, ..self::snapshot() });
    let mut today = sample(EventKind::RecoveryRequested);
    if let EventBody::RecoveryRequested { snapshot, intake_decision, .. } = &mut today {
        snapshot.authenticator_unknown = false;
        intake_decision.facts.open_alerts = Vec::new();
    }
    assert_eq!(event.body, today);
    let again: airlock::log::envelope::Envelope =
        postcard::from_bytes(&encode_case_event(&case_id, stream_version, &event)).unwrap();
    assert_eq!(again.version, 4);
    let mut wrong = envelope.clone();
    wrong.payload[0] = 2;
    let error = decode(&postcard::to_stdvec(&wrong).unwrap()).unwrap_err();
    assert!(error.to_string().contains("not recovery_requested"), "{error}");
}

// Proves the upcasters of the decisions recorded before campaign alerts (issue 20): the committed bytes of
// RecoveryRequested v3 and of ReviewRequired and CoolingOffStarted v2 decode to today's events with no open alert and
// everything else as the sample, and are stored again as the current versions (4, 3, 3).
#[test]
fn decisions_recorded_before_campaign_alerts_are_upcast_with_none_open() {
    for (name, old_version, new_version) in
        [("recovery_requested", 3, 4), ("review_required", 2, 3), ("cooling_off_started", 2, 3)]
    {
        let old =
            hex::decode(std::fs::read_to_string(golden_dir(old_version).join(format!("{name}.hex"))).unwrap().trim())
                .unwrap();
        let envelope: airlock::log::envelope::Envelope = postcard::from_bytes(&old).unwrap();
        assert_eq!((envelope.event_type.as_str(), envelope.version), (name, old_version));
        let Decoded::Case { case_id, stream_version, event } = decode(&old).unwrap() else { panic!("a case event") };
        let kind = EventKind::from_name(name).unwrap();
        let mut today = sample(kind);
        match &mut today {
            EventBody::RecoveryRequested { intake_decision: decision, .. }
            | EventBody::ReviewRequired { decision, .. }
            | EventBody::CoolingOffStarted { authorization: Authorization::Policy { decision }, .. } => {
                decision.facts.open_alerts = Vec::new();
            }
            other => panic!("{other:?}"),
        }
        if let (EventBody::RecoveryRequested { snapshot: old, .. }, EventBody::RecoveryRequested { snapshot, .. }) =
            (&event.body, &mut today)
        {
            snapshot.authenticator_unknown = old.authenticator_unknown;
        }
        assert_eq!(event.body, today, "{name}");
        let again: airlock::log::envelope::Envelope =
            postcard::from_bytes(&encode_case_event(&case_id, stream_version, &event)).unwrap();
        assert_eq!(again.version, new_version, "{name}");
    }
}

// Proves the second factor proven by a sign-in at the identity provider (issue 18, item 6), a variant added to
// `SecondFactor` after `Totp`, has its own committed bytes, and that adding it left `Totp`'s unchanged (the per-kind
// fixture above).
#[test]
fn a_second_factor_proven_by_sign_in_matches_its_golden_fixture() {
    let event = Event {
        at: AT,
        actor: Actor::new(Role::Owner, "verification-page"),
        command_id: CommandId::new("command-sign-in"),
        body: EventBody::SecondFactorProven {
            factor: airlock::core::event::SecondFactor::SignIn { auth_time: UnixMs(AT.0 - 90_000) },
        },
    };
    let encoded = encode_case_event(&CaseId::new("case-golden"), 7, &event);
    let decoded = check_fixture("second_factor_proven_sign_in", 1, &encoded);
    assert_eq!(decoded, Decoded::Case { case_id: CaseId::new("case-golden"), stream_version: 7, event });
}

// Proves the failure of a proof whose sign-in was as another account (issue 18, item 6), a variant added to
// `ProofFailure` after `NotRecorded`, has its own committed bytes; the per-kind fixture keeps the older ones.
#[test]
fn a_proof_rejected_for_a_sign_in_as_another_account_matches_its_golden_fixture() {
    let event = Event {
        at: AT,
        actor: Actor::new(Role::Owner, "verification-page"),
        command_id: CommandId::new("command-other-account"),
        body: EventBody::ProofRejected {
            challenge_id: ChallengeId::new("challenge-1"),
            attempts_left: 2,
            failed: ProofFailure::SignedInAsAnother,
        },
    };
    let encoded = encode_case_event(&CaseId::new("case-golden"), 4, &event);
    let decoded = check_fixture("proof_rejected_signed_in_as_another", 2, &encoded);
    assert_eq!(decoded, Decoded::Case { case_id: CaseId::new("case-golden"), stream_version: 4, event });
}

// Proves (issue 20, item 2) the outward document of every case event kind carries nothing a system outside airlock
// must not see: no code hash, no full address (of the account or a new destination: masked only), no summary or
// signals, no person's reason, no change's values; and that its id, type and case are what was sent.
#[test]
fn every_outward_case_event_is_redacted() {
    let case_id = CaseId::new("case-golden");
    let hidden = [
        "new@example.net",
        "owner@example.com",
        "please link my new email",
        "AS64500",
        "matches the account history",
        "story does not hold",
        "not me",
        "directory timeout",
        "owner objected",
        "\"v1\"",
        "\"v2\"",
        &hex::encode([7u8; 32]),
        &hex::encode([8u8; 32]),
    ];
    for (index, kind) in EventKind::ALL.into_iter().enumerate() {
        let event = Event {
            at: AT,
            actor: Actor::new(Role::Reviewer, "rita"),
            command_id: CommandId::new(format!("command-{index}")),
            body: sample(kind),
        };
        let outward = airlock::outward::case_event(
            (40 + index as u64, 1),
            &case_id,
            index as u64 + 1,
            &event,
            airlock::core::state::Status::InReview,
        );
        let text = outward.document.to_string();
        for secret in hidden {
            assert!(!text.contains(secret), "{}: {secret} in {text}", kind.name());
        }
        assert_eq!(outward.id, format!("{}.1", 40 + index));
        assert_eq!(outward.document["type"], format!("case.{}", kind.name()));
        assert_eq!(outward.document["data"]["case_id"], "case-golden");
        assert_eq!(outward.document["data"]["status"], "in_review");
    }
    let requested = airlock::outward::case_event(
        (1, 0),
        &case_id,
        1,
        &Event {
            at: AT,
            actor: Actor::new(Role::Intake, "desk"),
            command_id: CommandId::new("c"),
            body: sample(EventKind::RecoveryRequested),
        },
        airlock::core::state::Status::Requested,
    );
    assert_eq!(requested.document["data"]["new_destination"]["masked"], "n***@example.net", "{}", requested.document);
}

/// Every variant of every enum stored inside a case event, each inside the event that carries it. The matches are
/// exhaustive: a variant cannot be added without its fixture (postcard stores a variant by its place, so a variant
/// inserted or moved would change the bytes of every stored event after it).
fn nested_variants() -> Vec<(String, EventBody)> {
    let mut variants: Vec<(String, EventBody)> = Vec::new();
    let mut add = |name: String, body: EventBody| variants.push((name, body));
    for reason in
        [WithheldReason::UnknownAccount, WithheldReason::AnotherCodeOutstanding, WithheldReason::AttemptsExhausted]
    {
        match reason {
            WithheldReason::UnknownAccount
            | WithheldReason::AnotherCodeOutstanding
            | WithheldReason::AttemptsExhausted => {}
        }
        add(format!("withheld_reason-{reason:?}"), EventBody::ChallengeWithheld { reason });
    }
    for reason in [
        ReviewReason::NoEligibleFactor,
        ReviewReason::PolicyReview,
        ReviewReason::ExecutionFailed,
        ReviewReason::WeakerProof,
        ReviewReason::GuessingCapReached,
        ReviewReason::AnotherCodeOutstanding,
        ReviewReason::PhoneOnlyProof,
    ] {
        match reason {
            ReviewReason::NoEligibleFactor
            | ReviewReason::PolicyReview
            | ReviewReason::ExecutionFailed
            | ReviewReason::WeakerProof
            | ReviewReason::GuessingCapReached
            | ReviewReason::AnotherCodeOutstanding
            | ReviewReason::PhoneOnlyProof => {}
        }
        add(
            format!("review_reason-{reason:?}"),
            EventBody::ReviewRequired { decision: decision(), reason, deadline: AT.plus(1) },
        );
    }
    for (outcome, phase) in
        [(Outcome::Auto, Phase::Intake), (Outcome::Review, Phase::Authorization), (Outcome::Deny, Phase::Intake)]
    {
        match (outcome, phase) {
            (Outcome::Auto | Outcome::Review | Outcome::Deny, Phase::Intake | Phase::Authorization) => {}
        }
        let mut decision = decision();
        decision.outcome = outcome;
        decision.facts.phase = phase;
        add(
            format!("outcome-{outcome:?}-phase-{phase:?}"),
            EventBody::ReviewRequired { decision, reason: ReviewReason::PolicyReview, deadline: AT.plus(1) },
        );
    }
    let denials = [
        DenialReason::AttemptsExhausted,
        DenialReason::Policy { rules: vec!["rule.one".into()] },
        DenialReason::Reviewer { reviewer: ActorId::new("rita"), reason: text("no") },
        DenialReason::ExecutionAttemptsExhausted,
    ];
    for reason in denials {
        let name = match &reason {
            DenialReason::AttemptsExhausted => "AttemptsExhausted",
            DenialReason::Policy { .. } => "Policy",
            DenialReason::Reviewer { .. } => "Reviewer",
            DenialReason::ExecutionAttemptsExhausted => "ExecutionAttemptsExhausted",
        };
        add(format!("denial_reason-{name}"), EventBody::CaseDenied { reason });
    }
    for failed in [
        ProofFailure::WrongCode,
        ProofFailure::WrongSecondFactor,
        ProofFailure::NotRecorded,
        ProofFailure::SignedInAsAnother,
    ] {
        match failed {
            ProofFailure::WrongCode
            | ProofFailure::WrongSecondFactor
            | ProofFailure::NotRecorded
            | ProofFailure::SignedInAsAnother => {}
        }
        add(
            format!("proof_failure-{failed:?}"),
            EventBody::ProofRejected { challenge_id: ChallengeId::new("challenge-1"), attempts_left: 2, failed },
        );
    }
    let authorizations = [
        Authorization::Policy { decision: decision() },
        Authorization::Quorum { reviewers: vec![ActorId::new("rita"), ActorId::new("ravi")] },
    ];
    for authorization in authorizations {
        let name = match &authorization {
            Authorization::Policy { .. } => "Policy",
            Authorization::Quorum { .. } => "Quorum",
        };
        add(
            format!("authorization-{name}"),
            EventBody::CoolingOffStarted {
                ends_at: AT.plus(1),
                deadline: AT.plus(2),
                notify: vec![DestinationId::new("d-1")],
                authorization,
            },
        );
    }
    for factor in [SecondFactor::Totp, SecondFactor::SignIn { auth_time: AT.plus(5) }] {
        let name = match &factor {
            SecondFactor::Totp => "Totp",
            SecondFactor::SignIn { .. } => "SignIn",
        };
        add(format!("second_factor-{name}"), EventBody::SecondFactorProven { factor });
    }
    let risk_classes = [
        RiskClass::Standard,
        RiskClass::HighValue(HighValueReason::Admin),
        RiskClass::HighValue(HighValueReason::Creator),
        RiskClass::HighValue(HighValueReason::Finance),
        RiskClass::HighValue(HighValueReason::Government),
        RiskClass::HighValue(HighValueReason::Vip),
    ];
    let actions = [
        RecoveryAction::ResetPassword,
        RecoveryAction::AddDestination { kind: DestinationKind::Email, address: "new@example.net".into() },
        RecoveryAction::AddDestination { kind: DestinationKind::Phone, address: "+15550001111".into() },
        RecoveryAction::RemoveTotp,
    ];
    for (index, (risk_class, action)) in risk_classes.into_iter().zip(actions.into_iter().cycle()).enumerate() {
        let risk = match &risk_class {
            RiskClass::Standard => "Standard".to_string(),
            RiskClass::HighValue(
                reason @ (HighValueReason::Admin
                | HighValueReason::Creator
                | HighValueReason::Finance
                | HighValueReason::Government
                | HighValueReason::Vip),
            ) => format!("HighValue-{reason:?}"),
        };
        let action_name = match &action {
            RecoveryAction::ResetPassword => "ResetPassword".to_string(),
            RecoveryAction::AddDestination {
                kind: kind @ (DestinationKind::Email | DestinationKind::Phone), ..
            } => {
                format!("AddDestination-{kind:?}")
            }
            RecoveryAction::RemoveTotp => "RemoveTotp".to_string(),
        };
        let EventBody::RecoveryRequested {
            account_id,
            action_hash,
            summary,
            signals,
            mut snapshot,
            intake_decision,
            deadline,
            ..
        } = sample(EventKind::RecoveryRequested)
        else {
            unreachable!()
        };
        snapshot.risk_class = risk_class;
        if index == 2 {
            snapshot.destinations[0].kind = DestinationKind::Phone;
        }
        add(
            format!("request-{risk}-{action_name}"),
            EventBody::RecoveryRequested {
                account_id,
                action,
                action_hash,
                summary,
                signals,
                snapshot,
                intake_decision,
                deadline,
            },
        );
    }
    for rejection in every_rejection() {
        let code = rejection.code();
        add(format!("rejection-{code}"), EventBody::CommandRefused { command: CommandKind::Cancel, rejection });
    }
    for command in every_command_kind() {
        add(format!("command_kind-{command:?}"), EventBody::CommandRefused { command, rejection: Rejection::Halted });
    }
    for status in Status::ALL {
        add(
            format!("status-{}", status.name()),
            EventBody::CommandRefused {
                command: CommandKind::ApproveReview,
                rejection: Rejection::WrongState { status, command: CommandKind::ApproveReview },
            },
        );
    }
    variants
}

fn every_rejection() -> Vec<Rejection> {
    let all = vec![
        Rejection::RoleNotAllowed { role: Role::Intake, command: CommandKind::Halt },
        Rejection::WrongState { status: Status::Denied, command: CommandKind::Cancel },
        Rejection::CaseExists,
        Rejection::NoOutstandingChallenge,
        Rejection::ChallengeExpired,
        Rejection::ActionHashMismatch,
        Rejection::SelfApproval,
        Rejection::DuplicateApproval,
        Rejection::EffectMismatch,
        Rejection::KillSwitchUnchanged { halted: true },
        Rejection::DeadlinePassed,
        Rejection::TooLong { field: "summary".into(), bytes_max: 4_096 },
        Rejection::InvalidValue { field: "account_id".into(), expected: "an id".into() },
        Rejection::MalformedCommand { reason: "not JSON".into() },
        Rejection::SecretInUntrustedField { field: "summary".into() },
        Rejection::SecondFactorAlreadyUsed,
        Rejection::NothingDeliverable,
        Rejection::CommandIdReused,
        Rejection::PasswordAlreadySet,
        Rejection::Halted,
        Rejection::OwnAccountApproval,
        Rejection::NoSuchAlert,
        Rejection::AlertAlreadyAcknowledged,
    ];
    for rejection in &all {
        match rejection {
            Rejection::RoleNotAllowed { .. }
            | Rejection::WrongState { .. }
            | Rejection::CaseExists
            | Rejection::NoOutstandingChallenge
            | Rejection::ChallengeExpired
            | Rejection::ActionHashMismatch
            | Rejection::SelfApproval
            | Rejection::DuplicateApproval
            | Rejection::EffectMismatch
            | Rejection::KillSwitchUnchanged { .. }
            | Rejection::DeadlinePassed
            | Rejection::TooLong { .. }
            | Rejection::InvalidValue { .. }
            | Rejection::MalformedCommand { .. }
            | Rejection::SecretInUntrustedField { .. }
            | Rejection::SecondFactorAlreadyUsed
            | Rejection::NothingDeliverable
            | Rejection::CommandIdReused
            | Rejection::PasswordAlreadySet
            | Rejection::Halted
            | Rejection::OwnAccountApproval
            | Rejection::NoSuchAlert
            | Rejection::AlertAlreadyAcknowledged => {}
        }
    }
    all
}

fn every_command_kind() -> Vec<CommandKind> {
    use CommandKind::*;
    let all = vec![
        RequestRecovery,
        SubmitProof,
        ApproveReview,
        DenyReview,
        Cancel,
        Tick,
        ConfirmExecution,
        RollBack,
        Halt,
        Resume,
        ConfirmNotices,
        SetPassword,
        AttestBaseline,
        AcknowledgeAlert,
    ];
    for command in &all {
        match command {
            RequestRecovery | SubmitProof | ApproveReview | DenyReview | Cancel | Tick | ConfirmExecution
            | RollBack | Halt | Resume | ConfirmNotices | SetPassword | AttestBaseline | AcknowledgeAlert => {}
        }
    }
    all
}

// Proves (issue 21, item 2) every variant of every enum stored inside a case event still encodes to the committed
// bytes and decodes to the same value: today's fixtures pin one variant of each; a variant moved, inserted or renamed
// in a way that changes the encoding fails here first.
#[test]
fn every_variant_of_every_stored_enum_matches_its_golden_fixture() {
    let case_id = CaseId::new("case-golden");
    let variants = nested_variants();
    let names: std::collections::BTreeSet<&String> = variants.iter().map(|(name, _)| name).collect();
    assert_eq!(names.len(), variants.len(), "every fixture has its own name");
    for (name, body) in variants {
        let kind = body.kind();
        let event = Event { at: AT, actor: Actor::new(Role::System, "airlock"), command_id: CommandId::new("c"), body };
        let encoded = encode_case_event(&case_id, 3, &event);
        let decoded = check_fixture(&format!("variant-{name}"), case_event_version(kind), &encoded);
        assert_eq!(decoded, Decoded::Case { case_id: case_id.clone(), stream_version: 3, event }, "{name}");
    }
}

// Proves the same of the alerts stream (issue 20's events): every event type and every campaign check.
#[test]
fn every_alert_event_and_check_matches_its_golden_fixture() {
    use airlock::core::campaign::{ALERT_EVENT_VERSION, AlertEvent, AlertEventBody, Check, Threshold};
    let mut bodies = Vec::new();
    for check in Check::ALL {
        bodies.push((
            format!("alert_raised-{}", check.name()),
            AlertEventBody::AlertRaised {
                alert_id: format!("alert-{}", check.name()),
                check,
                indicator: "attacker.example".into(),
                shown: "attacker.example".into(),
                threshold: Threshold { accounts_min: 20, window_ms: 3_600_000 },
                accounts: 21,
                cases: vec!["case-1".into(), "case-2".into()],
                first_at: AT,
                last_at: AT.plus(60_000),
            },
        ));
    }
    bodies.push((
        "alert_cases_added".into(),
        AlertEventBody::AlertCasesAdded {
            alert_id: "alert-1".into(),
            accounts: 22,
            cases: vec!["case-3".into()],
            last_at: AT.plus(120_000),
        },
    ));
    bodies.push((
        "alert_acknowledged".into(),
        AlertEventBody::AlertAcknowledged {
            alert_id: "alert-1".into(),
            reason: text("a known bulk import"),
            benign: true,
        },
    ));
    for body in &bodies {
        match &body.1 {
            AlertEventBody::AlertRaised { .. }
            | AlertEventBody::AlertCasesAdded { .. }
            | AlertEventBody::AlertAcknowledged { .. } => {}
        }
    }
    for (index, (name, body)) in bodies.into_iter().enumerate() {
        let event =
            AlertEvent { at: AT, actor: Actor::new(Role::System, "airlock"), command_id: CommandId::new("a"), body };
        let encoded = airlock::log::envelope::encode_alert_event(index as u64 + 1, &event);
        let decoded = check_fixture(&format!("alert-{name}"), ALERT_EVENT_VERSION, &encoded);
        assert_eq!(decoded, Decoded::Alert { stream_version: index as u64 + 1, event }, "{name}");
    }
}

// Proves (issue 21, item 2) the names the projection records for stored enums (timelines, the review queue, and the
// receipts it hashes) and the names in its decision JSON are fixed text, each pinned here: renaming a variant in the
// code changes no stored row and no receipt's hash.
#[test]
fn the_recorded_names_of_stored_enums_are_pinned() {
    let outcomes =
        [(Outcome::Auto, "Auto", "auto"), (Outcome::Review, "Review", "review"), (Outcome::Deny, "Deny", "deny")];
    for (outcome, recorded, name) in outcomes {
        assert_eq!((outcome.recorded(), outcome.name()), (recorded, name));
        assert_eq!(serde_json::to_string(&outcome).unwrap(), format!("\"{recorded}\""));
    }
    for (phase, recorded) in [(Phase::Intake, "Intake"), (Phase::Authorization, "Authorization")] {
        assert_eq!(serde_json::to_string(&phase).unwrap(), format!("\"{recorded}\""));
    }
    let reviews = [
        (ReviewReason::NoEligibleFactor, "NoEligibleFactor", "no_eligible_factor"),
        (ReviewReason::PolicyReview, "PolicyReview", "policy"),
        (ReviewReason::ExecutionFailed, "ExecutionFailed", "execution_failed"),
        (ReviewReason::WeakerProof, "WeakerProof", "weaker_proof"),
        (ReviewReason::GuessingCapReached, "GuessingCapReached", "guessing_cap_reached"),
        (ReviewReason::AnotherCodeOutstanding, "AnotherCodeOutstanding", "another_code_outstanding"),
        (ReviewReason::PhoneOnlyProof, "PhoneOnlyProof", "phone_only_proof"),
    ];
    for (reason, recorded, name) in reviews {
        assert_eq!((reason.recorded(), reason.name()), (recorded, name));
    }
    let withheld = [
        (WithheldReason::UnknownAccount, "UnknownAccount"),
        (WithheldReason::AnotherCodeOutstanding, "AnotherCodeOutstanding"),
        (WithheldReason::AttemptsExhausted, "AttemptsExhausted"),
    ];
    for (reason, recorded) in withheld {
        assert_eq!(reason.recorded(), recorded);
    }
}
