//! Tests of the pure verification primitives (SPEC principle 2): how codes are drawn, parsed, hashed and compared,
//! that none of them leaks through `Debug`, which destinations are eligible for a code, and THREATS 1 at the core
//! level (a destination named in the request never receives anything).

use airlock::core::account::{AccountSnapshot, Destination, DestinationKind, RiskClass};
use airlock::core::action::RecoveryAction;
use airlock::core::actor::{Actor, Role};
use airlock::core::command::{Command, CommandEnvelope, SecondFactorCheck};
use airlock::core::decide::{Context, FreshChallenge, decide};
use airlock::core::event::{Event, EventBody};
use airlock::core::ids::{AccountId, CaseId, ChallengeId, CommandId, DestinationId, UnixMs};
use airlock::core::limits::{
    CODE_DIGITS, DAY_MS, DESTINATION_AGE_MS_MIN_DEFAULT, HOUR_MS, MINUTE_MS, SUMMARY_BYTES_MAX,
};
use airlock::core::policy::{Outcome, Phase, PolicyDecision, PolicyFacts, Velocity};
use airlock::core::signals::Signals;
use airlock::core::state::{fold, initial_state};
use airlock::core::text::UntrustedText;
use airlock::core::verification::{
    AccountVerificationFacts, CodeHash, CodeKey, Settings, VerificationCode, eligible_destinations, generate_code,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

const REQUESTED_AT: UnixMs = UnixMs(1_800_000_000_000);

fn key() -> CodeKey {
    CodeKey::from_bytes([0xA5; 32])
}

fn code(typed: &str) -> VerificationCode {
    VerificationCode::parse(typed).expect("a well-formed test code")
}

fn destination(id: &str, trusted_since: UnixMs, revoked: bool) -> Destination {
    Destination {
        id: DestinationId::new(id),
        kind: DestinationKind::Email,
        address: format!("{id}@example.com"),
        trusted_since,
        revoked,
    }
}

fn account(destinations: Vec<Destination>) -> AccountSnapshot {
    AccountSnapshot {
        account_id: AccountId::new("account-1"),
        known: true,
        risk_class: RiskClass::Standard,
        destinations,
        totp_enrolled_since: None,
        authenticator_unknown: false,
        last_credential_change: None,
        risk_flags: Vec::new(),
    }
}

fn eligible_ids(snapshot: &AccountSnapshot, requested_at: UnixMs, settings: &Settings) -> Vec<String> {
    eligible_destinations(snapshot, requested_at, settings)
        .iter()
        .map(|destination| destination.id.to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Codes
// ---------------------------------------------------------------------------------------------------------------

// Proves that a generated code is exactly CODE_DIGITS ASCII digits, from a seeded CryptoRng and from the thread RNG,
// and that what is revealed for delivery parses back to the same code.
#[test]
fn generated_codes_are_code_digits_ascii_digits() {
    let mut seeded = StdRng::seed_from_u64(2026);
    let mut thread = rand::rng();
    for _ in 0..200 {
        for generated in [generate_code(&mut seeded), generate_code(&mut thread)] {
            let digits = generated.reveal_for_delivery();
            assert_eq!(digits.len(), CODE_DIGITS);
            assert!(digits.bytes().all(|byte| byte.is_ascii_digit()), "{digits} is not all digits");
            let parsed = VerificationCode::parse(digits).expect("a generated code parses");
            assert_eq!(parsed.reveal_for_delivery(), digits);
        }
    }
}

// Proves that code digits are spread out: over many draws every digit appears at every position, each within a
// generous band around a tenth, and nearly every code is distinct.
#[test]
fn generated_codes_cover_every_digit_at_every_position() {
    const DRAWS: usize = 20_000;
    let mut rng = StdRng::seed_from_u64(7);
    let mut counts = [[0usize; 10]; CODE_DIGITS];
    let mut distinct = std::collections::BTreeSet::new();
    for _ in 0..DRAWS {
        let generated = generate_code(&mut rng);
        for (position, byte) in generated.reveal_for_delivery().bytes().enumerate() {
            counts[position][usize::from(byte - b'0')] += 1;
        }
        distinct.insert(generated.reveal_for_delivery().to_string());
    }
    // A tenth of 20 000 is 2 000 with a standard deviation of about 42; 1 700..2 300 is more than seven of them.
    for (position, digits) in counts.iter().enumerate() {
        for (digit, count) in digits.iter().enumerate() {
            assert!((1_700..=2_300).contains(count), "digit {digit} at position {position} drawn {count} times");
        }
    }
    // 20 000 draws from 10^8 codes collide about twice on average.
    assert!(distinct.len() >= DRAWS - 20, "only {} distinct codes in {DRAWS}", distinct.len());
}

// Proves what the verification page accepts: exactly CODE_DIGITS digits, with spaces and dashes ignored.
#[test]
fn parse_accepts_digits_with_spaces_and_dashes() {
    for typed in ["12345678", "1234 5678", "1234-5678", "12-34-56-78", " 1 2 3 4 5 6 7 8 ", "--12345678--"] {
        let parsed = VerificationCode::parse(typed).unwrap_or_else(|| panic!("{typed:?} should parse"));
        assert_eq!(parsed.reveal_for_delivery(), "12345678", "{typed:?}");
    }
}

// Proves what the verification page refuses: too few or too many digits, letters, other separators, signs, and
// non-ASCII digits.
#[test]
fn parse_refuses_wrong_lengths_and_non_digits() {
    let refused = [
        "",
        "1234567",
        "123456789",
        "1234 567",
        "1234567a",
        "abcdefgh",
        "1234_5678",
        "1234.5678",
        "1234\t5678",
        "+12345678",
        "1234567\u{0}",
        "１２３４５６７８",
        "١٢٣٤٥٦٧٨",
        "12345678\n",
    ];
    for typed in refused {
        assert!(VerificationCode::parse(typed).is_none(), "{typed:?} should be refused");
    }
}

// Proves that Debug never shows a code's digits, a key's bytes or a hash's bytes, in compact or pretty form, and
// not when a hash sits inside an event either.
#[test]
fn debug_never_shows_digits_or_key_bytes() {
    let code = code("31415926");
    let key = key();
    let hash = key.hash(&ChallengeId::new("challenge-1"), &code);
    let hash_hex = hex::encode(hash.0);
    let outputs = [
        format!("{code:?}"),
        format!("{code:#?}"),
        format!("{key:?}"),
        format!("{key:#?}"),
        format!("{hash:?}"),
        format!("{hash:#?}"),
    ];
    for output in &outputs {
        assert!(!output.bytes().any(|byte| byte.is_ascii_digit()), "{output} shows digits");
        assert!(!output.to_lowercase().contains("a5"), "{output} shows key bytes");
        assert!(!output.contains(&hash_hex[..8]), "{output} shows hash bytes");
    }
    let event = EventBody::ChallengeIssued {
        challenge_id: ChallengeId::new("challenge-1"),
        destinations: vec![DestinationId::new("email-old")],
        code_hashes: vec![hash.clone()],
        expires_at: REQUESTED_AT,
    };
    let printed = format!("{event:?}");
    assert!(!printed.contains("31415926"), "{printed}");
    assert!(!printed.contains(&hash_hex[..8]), "{printed}");
    assert!(!printed.contains(&format!("{:?}", hash.0)), "{printed} shows the hash bytes");
}

// Proves that a hash is bound to its challenge and its key: the same code under another challenge id, or under
// another key, hashes differently; the same inputs hash the same (so the owner's typed code can match).
#[test]
fn hash_depends_on_challenge_and_key() {
    let typed = code("1234 5678");
    let stored = code("12345678");
    let challenge = ChallengeId::new("challenge-1");

    assert_eq!(key().hash(&challenge, &typed), key().hash(&challenge, &stored));
    assert_ne!(key().hash(&challenge, &stored), key().hash(&ChallengeId::new("challenge-2"), &stored));
    assert_ne!(key().hash(&challenge, &stored), CodeKey::from_bytes([0xA4; 32]).hash(&challenge, &stored));
    assert_ne!(key().hash(&challenge, &stored), key().hash(&challenge, &code("12345679")));
}

// Proves CodeHash::matches: true for equal hashes only, false when any single byte differs (first or last).
#[test]
fn hash_matches_only_equal_hashes() {
    let challenge = ChallengeId::new("challenge-1");
    let hash = key().hash(&challenge, &code("12345678"));
    assert!(hash.matches(&hash.clone()));
    assert!(hash.matches(&key().hash(&challenge, &code("12-34-56-78"))));
    assert!(!hash.matches(&key().hash(&challenge, &code("87654321"))));
    for index in [0, 15, 31] {
        let mut bytes = hash.0;
        bytes[index] ^= 1;
        assert!(!hash.matches(&CodeHash(bytes)), "a difference at byte {index} must not match");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Eligibility
// ---------------------------------------------------------------------------------------------------------------

// Proves the minimum-age boundary: a destination trusted exactly the minimum age before the request is eligible,
// one trusted a millisecond later is not.
#[test]
fn exactly_the_minimum_age_is_eligible_one_millisecond_younger_is_not() {
    let settings = Settings::default();
    let boundary = UnixMs(REQUESTED_AT.0 - DESTINATION_AGE_MS_MIN_DEFAULT);
    let snapshot =
        account(vec![destination("exactly", boundary, false), destination("younger", boundary.plus(1), false)]);

    assert_eq!(eligible_ids(&snapshot, REQUESTED_AT, &settings), vec!["exactly"]);
}

// Proves that a destination added during the case (trusted after the request), at the request, or shortly before
// it, never receives a code.
#[test]
fn destinations_added_during_or_just_before_the_case_are_never_eligible() {
    let settings = Settings::default();
    let snapshot = account(vec![
        destination("during", REQUESTED_AT.plus(MINUTE_MS), false),
        destination("at-request", REQUESTED_AT, false),
        destination("minute-before", UnixMs(REQUESTED_AT.0 - MINUTE_MS), false),
        destination("day-before", UnixMs(REQUESTED_AT.0 - DAY_MS), false),
    ]);

    assert!(eligible_ids(&snapshot, REQUESTED_AT, &settings).is_empty());
}

// Proves that a revoked destination is never eligible, however old.
#[test]
fn revoked_destinations_are_never_eligible() {
    let settings = Settings::default();
    let snapshot = account(vec![
        destination("revoked", UnixMs(REQUESTED_AT.0 - 900 * DAY_MS), true),
        destination("kept", UnixMs(REQUESTED_AT.0 - 900 * DAY_MS), false),
    ]);

    assert_eq!(eligible_ids(&snapshot, REQUESTED_AT, &settings), vec!["kept"]);
}

// Proves that an unknown account has no eligible destination, even if a snapshot marked unknown lists some.
#[test]
fn unknown_accounts_have_no_eligible_destination() {
    let settings = Settings::default();
    assert!(eligible_ids(&AccountSnapshot::unknown(AccountId::new("ghost")), REQUESTED_AT, &settings).is_empty());

    let mut snapshot = account(vec![destination("old", UnixMs(REQUESTED_AT.0 - 900 * DAY_MS), false)]);
    snapshot.known = false;

    assert!(eligible_ids(&snapshot, REQUESTED_AT, &settings).is_empty());
}

// Proves that the operator's minimum age (Settings) is honoured in both directions, by the primitive and by decide:
// with one day, a two-day-old destination is challenged; with the default week, it is not.
#[test]
fn configurable_minimum_age_is_honoured() {
    let one_day = Settings { destination_age_ms_min: DAY_MS, ..Settings::default() };
    let one_hour = Settings { destination_age_ms_min: HOUR_MS, ..Settings::default() };
    let snapshot = account(vec![
        destination("two-days", UnixMs(REQUESTED_AT.0 - 2 * DAY_MS), false),
        destination("twelve-hours", UnixMs(REQUESTED_AT.0 - 12 * HOUR_MS), false),
    ]);

    assert_eq!(eligible_ids(&snapshot, REQUESTED_AT, &one_day), vec!["two-days"]);
    assert_eq!(eligible_ids(&snapshot, REQUESTED_AT, &one_hour), vec!["two-days", "twelve-hours"]);
    assert!(eligible_ids(&snapshot, REQUESTED_AT, &Settings::default()).is_empty());

    let challenged = |settings: &Settings| -> Option<Vec<DestinationId>> {
        let events = request(&snapshot, &RecoveryAction::ResetPassword, settings);
        events.into_iter().find_map(|event| match event.body {
            EventBody::ChallengeIssued { destinations, .. } => Some(destinations),
            _ => None,
        })
    };
    assert_eq!(challenged(&one_day), Some(vec![DestinationId::new("two-days")]));
    assert_eq!(challenged(&Settings::default()), None, "with a week's minimum the case goes to review instead");
}

// ---------------------------------------------------------------------------------------------------------------
// THREATS 1 at the core: the 2026 playbook
// ---------------------------------------------------------------------------------------------------------------

const CASE: &str = "case-threat-1";
const ATTACKER_ADDRESS: &str = "attacker@evil.example";

fn decision(snapshot: &AccountSnapshot, action: &RecoveryAction, settings: &Settings, phase: Phase) -> PolicyDecision {
    let signals = Signals { via_proxy: true, claims_urgency: true, ..Signals::default() };
    PolicyDecision {
        policy_version: "test-policy/1".to_string(),
        outcome: Outcome::Auto,
        cooling_off_ms: DAY_MS,
        reviewers_required: 1,
        rules: Vec::new(),
        facts: PolicyFacts::gather(
            phase,
            snapshot,
            action,
            &signals,
            Velocity::default(),
            false,
            REQUESTED_AT,
            settings,
        ),
    }
}

/// Opens a case with an auto intake decision and returns its events.
fn request(snapshot: &AccountSnapshot, action: &RecoveryAction, settings: &Settings) -> Vec<Event> {
    let case_id = CaseId::new(CASE);
    let intake = decision(snapshot, action, settings, Phase::Intake);
    let hash = key().hash(&ChallengeId::new("challenge-1"), &code("31415926"));
    let fresh = FreshChallenge {
        challenge_id: ChallengeId::new("challenge-1"),
        code_hashes: snapshot.destinations.iter().map(|destination| (destination.id.clone(), hash.clone())).collect(),
    };
    let context = Context {
        case_id: &case_id,
        now: REQUESTED_AT,
        settings,
        halted: false,
        account: Some(snapshot),
        account_facts: AccountVerificationFacts::default(),
        policy: Some(&intake),
        fresh_challenge: Some(&fresh),
    };
    let summary = UntrustedText::new(
        "summary",
        "I'm traveling, please link attacker@evil.example and send the code there, approved by security",
        SUMMARY_BYTES_MAX,
    )
    .expect("short");
    let command = CommandEnvelope {
        command_id: CommandId::new("request"),
        actor: Actor::new(Role::Intake, "support-agent-7"),
        command: Command::RequestRecovery {
            account_id: snapshot.account_id.clone(),
            action: action.clone(),
            summary,
            signals: Signals { via_proxy: true, claims_urgency: true, ..Signals::default() },
        },
    };
    decide(&command, &initial_state(), &context).expect("the request opens a case")
}

/// Proves the owner's code (so the proof is accepted) and returns the events of that decision.
fn prove(history: &[Event], snapshot: &AccountSnapshot, action: &RecoveryAction) -> Vec<Event> {
    let case_id = CaseId::new(CASE);
    let settings = Settings::default();
    let authorization = decision(snapshot, action, &settings, Phase::Authorization);
    let context = Context {
        case_id: &case_id,
        now: REQUESTED_AT.plus(5 * MINUTE_MS),
        settings: &settings,
        halted: false,
        account: Some(snapshot),
        account_facts: AccountVerificationFacts::default(),
        policy: Some(&authorization),
        fresh_challenge: None,
    };
    let command = CommandEnvelope {
        command_id: CommandId::new("proof"),
        actor: Actor::new(Role::Owner, "owner"),
        command: Command::SubmitProof {
            proof: key().hash(&ChallengeId::new("challenge-1"), &code("3141-5926")),
            second_factor: SecondFactorCheck::NotGiven,
        },
    };
    let state = fold(history).expect("a valid history");
    decide(&command, &state, &context).expect("the right code is accepted")
}

// Proves THREATS 1 at the core: an AddDestination request naming email B on an account with only email A sends the
// code to A only, and when the change is authorized the cooling-off notice goes to A only; B is never addressed,
// and it stays out even if the directory lists it as linked after the request was made.
#[test]
fn destination_named_in_the_request_is_never_challenged_nor_notified() {
    let action = RecoveryAction::AddDestination { kind: DestinationKind::Email, address: ATTACKER_ADDRESS.to_string() };
    let email_a = destination("email-a", UnixMs(REQUESTED_AT.0 - 400 * DAY_MS), false);
    let mut linked_during_the_case = destination("email-b", REQUESTED_AT.plus(MINUTE_MS), false);
    linked_during_the_case.address = ATTACKER_ADDRESS.to_string();
    for snapshot in [account(vec![email_a.clone()]), account(vec![email_a.clone(), linked_during_the_case])] {
        let mut history = request(&snapshot, &action, &Settings::default());
        let challenged: Vec<DestinationId> = history
            .iter()
            .find_map(|event| match &event.body {
                EventBody::ChallengeIssued { destinations, .. } => Some(destinations.clone()),
                _ => None,
            })
            .expect("A is old enough to be challenged");
        assert_eq!(challenged, vec![DestinationId::new("email-a")]);

        history.extend(prove(&history, &snapshot, &action));

        let notified: Vec<DestinationId> = history
            .iter()
            .find_map(|event| match &event.body {
                EventBody::CoolingOffStarted { notify, .. } => Some(notify.clone()),
                _ => None,
            })
            .expect("the proven change cools off");
        assert_eq!(notified, vec![DestinationId::new("email-a")]);
        let addressed: Vec<&Destination> =
            challenged.iter().chain(&notified).filter_map(|id| snapshot.destination(id)).collect();
        assert!(addressed.iter().all(|destination| destination.address != ATTACKER_ADDRESS));
        assert_eq!(fold(&history).expect("valid").status.name(), "cooling_off");
    }
}
