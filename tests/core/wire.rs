//! The JSON front door, from bytes to core commands: every command's sample parses and converts, and every kind of
//! bad input is refused with its own specific error, without echoing a code anywhere.

use airlock::core::account::DestinationKind;
use airlock::core::action::{ActionHash, RecoveryAction};
use airlock::core::command::Command;
use airlock::core::control::ControlCommand;
use airlock::core::ids::{AccountId, CaseId, CommandId};
use airlock::core::limits;
use airlock::core::rejection::Rejection;
use airlock::wire::{
    CancelV1, HaltV1, RequestRecoveryV1, ResumeV1, ReviewDecisionV1, RollBackV1, SubmitProofV1, WireError, parse,
};
use serde_json::{Value, json};

const HASH: &str = "3f1c6a0b9e2d4c5a7b8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c";

fn request_json() -> Value {
    json!({
        "version": 1,
        "command_id": "cmd-1",
        "account_id": "acct-42",
        "action": { "type": "add_destination", "kind": "email", "address": "new@example.net" },
        "summary": "Customer says they lost access after travelling and wants a new email added.",
        "signals": { "source_network": "AS13335", "region": "eu-west", "via_proxy": true, "claims_urgency": true }
    })
}

fn review_json() -> Value {
    json!({
        "version": 1, "command_id": "cmd-2", "case_id": "case-7", "decision": "approve",
        "action_hash": HASH, "reason": "owner confirmed on a video call"
    })
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("test JSON serializes")
}

fn request(value: &Value) -> Result<RequestRecoveryV1, WireError> {
    parse::<RequestRecoveryV1>(&bytes(value))
}

fn request_rejection(value: &Value) -> Rejection {
    request(value).expect("parses").to_core().expect_err("conversion refuses")
}

fn review_rejection(value: &Value) -> Rejection {
    parse::<ReviewDecisionV1>(&bytes(value)).expect("parses").to_core().expect_err("conversion refuses")
}

// Proves that a full recovery request parses and converts into the core command, with no case id (airlock makes
// it), the sender's command id, a checked destination, the summary verbatim and every signal carried over.
#[test]
fn request_recovery_sample_converts() {
    let (case_id, command_id, command) = request(&request_json()).expect("parses").to_core().expect("converts");
    assert_eq!(case_id, None);
    assert_eq!(command_id, CommandId::new("cmd-1"));
    let Command::RequestRecovery { account_id, action, summary, signals } = command else {
        panic!("expected RequestRecovery, got {command:?}");
    };
    assert_eq!(account_id, AccountId::new("acct-42"));
    let expected_action =
        RecoveryAction::AddDestination { kind: DestinationKind::Email, address: "new@example.net".to_string() };
    assert_eq!(action, expected_action);
    assert!(summary.as_untrusted_str().starts_with("Customer says"));
    assert_eq!(signals.source_network.as_deref(), Some("AS13335"));
    assert_eq!(signals.region.as_deref(), Some("eu-west"));
    assert!(signals.via_proxy && signals.claims_urgency && !signals.offered_knowledge_facts);
}

// Proves that the fieldless actions and a phone destination convert, and that every signal field may be omitted.
#[test]
fn other_actions_and_empty_signals_convert() {
    let cases = [
        (json!({ "type": "reset_password" }), RecoveryAction::ResetPassword),
        (json!({ "type": "remove_totp" }), RecoveryAction::RemoveTotp),
        (
            json!({ "type": "add_destination", "kind": "phone", "address": "+447700900123" }),
            RecoveryAction::AddDestination { kind: DestinationKind::Phone, address: "+447700900123".to_string() },
        ),
    ];
    for (action, expected) in cases {
        let mut value = request_json();
        value["action"] = action;
        value["signals"] = json!({});
        let (_, _, command) = request(&value).expect("parses").to_core().expect("converts");
        let Command::RequestRecovery { action, signals, .. } = command else { panic!("expected RequestRecovery") };
        assert_eq!(action, expected);
        assert_eq!(signals, Default::default());
    }
}

// Proves that a proof submission converts into the case, the command id and the code as typed (for the service to
// hash), and that neither the wire struct's nor the result's Debug output shows the code.
#[test]
fn submit_proof_sample_converts_and_debug_hides_the_code() {
    let value = json!({ "version": 1, "command_id": "cmd-3", "case_id": "case-7", "code": "0123 4567" });
    let wire = parse::<SubmitProofV1>(&bytes(&value)).expect("parses");
    let proof = wire.to_core().expect("converts");
    assert_eq!(proof.case_id, CaseId::new("case-7"));
    assert_eq!(proof.command_id, CommandId::new("cmd-3"));
    assert_eq!(proof.reveal_typed_code(), "0123 4567");
    for debug in [format!("{wire:?}"), format!("{proof:?}")] {
        assert!(!debug.contains("0123") && !debug.contains("4567"), "Debug shows the code: {debug}");
    }
}

// Proves that a code of the wrong shape is refused at the edge with a message that does not repeat it.
#[test]
fn submit_proof_with_a_malformed_code_is_refused() {
    let value = json!({ "version": 1, "command_id": "cmd-3", "case_id": "case-7", "code": "1234567x" });
    let rejection = parse::<SubmitProofV1>(&bytes(&value)).expect("parses").to_core().expect_err("refused");
    assert_eq!(rejection, Rejection::InvalidValue { field: "code".into(), expected: "8 digits".into() });
    assert!(!rejection.to_string().contains("1234567"));
}

// Proves that an approval converts into ApproveReview bound to the given hash, and a denial into DenyReview.
#[test]
fn review_decision_samples_convert() {
    let (case_id, command_id, command) =
        parse::<ReviewDecisionV1>(&bytes(&review_json())).expect("parses").to_core().expect("converts");
    assert_eq!(case_id, Some(CaseId::new("case-7")));
    assert_eq!(command_id, CommandId::new("cmd-2"));
    let Command::ApproveReview { action_hash, reason } = command else { panic!("expected ApproveReview") };
    assert_eq!(action_hash, ActionHash(HASH.to_string()));
    assert_eq!(reason.as_untrusted_str(), "owner confirmed on a video call");

    let mut deny = review_json();
    deny["decision"] = json!("deny");
    deny.as_object_mut().expect("an object").remove("action_hash");
    let (_, _, command) = parse::<ReviewDecisionV1>(&bytes(&deny)).expect("parses").to_core().expect("converts");
    assert!(matches!(command, Command::DenyReview { .. }), "got {command:?}");
}

// Proves that an approval without an action hash is refused: it would approve whatever the case had become.
#[test]
fn approve_without_action_hash_is_refused() {
    let mut value = review_json();
    value.as_object_mut().expect("an object").remove("action_hash");
    let rejection = review_rejection(&value);
    assert!(matches!(&rejection, Rejection::InvalidValue { field, .. } if field == "action_hash"), "{rejection:?}");
    value["action_hash"] = Value::Null;
    assert!(matches!(review_rejection(&value), Rejection::InvalidValue { field, .. } if field == "action_hash"));
}

// Proves that an action hash that is not 64 lowercase hex characters is refused, even on a denial.
#[test]
fn malformed_action_hash_is_refused() {
    for decision in ["approve", "deny"] {
        let mut value = review_json();
        value["decision"] = json!(decision);
        value["action_hash"] = json!(HASH.to_uppercase());
        assert!(matches!(review_rejection(&value), Rejection::InvalidValue { field, .. } if field == "action_hash"));
    }
}

// Proves that cancel and rollback convert into their case commands, and halt and resume into kill-switch commands.
#[test]
fn cancel_roll_back_halt_and_resume_samples_convert() {
    let case_body =
        json!({ "version": 1, "command_id": "cmd-4", "case_id": "case-7", "reason": "owner clicked cancel" });
    let (case_id, _, cancel) = parse::<CancelV1>(&bytes(&case_body)).expect("parses").to_core().expect("converts");
    assert_eq!(case_id, Some(CaseId::new("case-7")));
    assert!(matches!(cancel, Command::Cancel { .. }));
    let (_, _, roll_back) = parse::<RollBackV1>(&bytes(&case_body)).expect("parses").to_core().expect("converts");
    assert!(matches!(roll_back, Command::RollBack { .. }));

    let control_body = json!({ "version": 1, "command_id": "cmd-5", "reason": "incident 7: proxy wave" });
    let (command_id, halt) = parse::<HaltV1>(&bytes(&control_body)).expect("parses").to_core().expect("converts");
    assert_eq!(command_id, CommandId::new("cmd-5"));
    assert!(matches!(halt, ControlCommand::Halt { .. }));
    let (_, resume) = parse::<ResumeV1>(&bytes(&control_body)).expect("parses").to_core().expect("converts");
    assert!(matches!(resume, ControlCommand::Resume { .. }));
}

// Proves that what the wire types serialize parses back to the same value, so a Rust sender and airlock agree.
#[test]
fn serialized_commands_parse_back_unchanged() {
    let original = request(&request_json()).expect("parses");
    let reparsed: RequestRecoveryV1 = parse(&serde_json::to_vec(&original).expect("serializes")).expect("parses");
    assert_eq!(reparsed, original);
}

// Proves that an unknown field is refused by name, at the top level and inside the action and the signals.
#[test]
fn unknown_fields_are_refused_by_name() {
    let mut top = request_json();
    top["case_id"] = json!("case-chosen-by-sender");
    let mut in_action = request_json();
    in_action["action"] = json!({ "type": "reset_password", "address": "evil@example.org" });
    let mut in_signals = request_json();
    in_signals["signals"]["verified_by_agent"] = json!(true);
    for (value, expected) in [(top, "case_id"), (in_action, "address"), (in_signals, "verified_by_agent")] {
        match request(&value) {
            Err(WireError::UnknownField { field, .. }) => assert_eq!(field, expected),
            other => panic!("expected unknown field {expected}, got {other:?}"),
        }
    }
}

// Proves that an unknown field whose name looks like a code is refused without repeating the name.
#[test]
fn unknown_field_names_that_look_like_codes_are_withheld() {
    let mut value = request_json();
    value["12345678"] = json!(true);
    let error = request(&value).expect_err("refused");
    assert!(matches!(&error, WireError::UnknownField { field, .. } if field == "(name withheld)"), "{error:?}");
    assert!(!error.to_string().contains("12345678"));
}

// Proves that a missing required field is refused by name, including the action's tag.
#[test]
fn missing_fields_are_refused_by_name() {
    let mut no_summary = request_json();
    no_summary.as_object_mut().expect("an object").remove("summary");
    let mut no_tag = request_json();
    no_tag["action"] = json!({ "kind": "email", "address": "new@example.net" });
    for (value, expected) in [(no_summary, "summary"), (no_tag, "type")] {
        match request(&value) {
            Err(WireError::MissingField { field }) => assert_eq!(field, expected),
            other => panic!("expected missing field {expected}, got {other:?}"),
        }
    }
}

// Proves that any version but 1 is refused as unsupported, before unknown fields are looked at (a version 2 command
// may have fields version 1 does not know), and that a missing version is a missing field.
#[test]
fn other_versions_are_refused_as_unsupported() {
    for version in [0, 2, 70_000] {
        let mut value = request_json();
        value["version"] = json!(version);
        value["added_in_a_later_version"] = json!(true);
        assert_eq!(request(&value), Err(WireError::UnsupportedVersion { version }));
    }
    let mut value = request_json();
    value.as_object_mut().expect("an object").remove("version");
    assert_eq!(request(&value), Err(WireError::MissingField { field: "version".to_string() }));
}

// Proves that a struct built in code with another version is refused by the conversion too, not only by parse.
#[test]
fn conversion_refuses_a_struct_with_another_version() {
    let mut wire = request(&request_json()).expect("parses");
    wire.version = 2;
    assert!(matches!(wire.to_core(), Err(Rejection::InvalidValue { field, .. }) if field == "version"));
}

// Proves that input over the command limit is refused before parsing, with its size and the limit, even when it is
// not JSON at all.
#[test]
fn oversized_input_is_refused_before_parsing() {
    let oversized = vec![b'{'; limits::COMMAND_BYTES_MAX + 1];
    let error = parse::<RequestRecoveryV1>(&oversized).expect_err("refused");
    assert_eq!(
        error,
        WireError::TooLarge { bytes: limits::COMMAND_BYTES_MAX + 1, bytes_max: limits::COMMAND_BYTES_MAX }
    );
    let message = error.to_string();
    assert!(message.contains(&(limits::COMMAND_BYTES_MAX + 1).to_string()) && message.contains("16384"), "{message}");
}

// Proves that bytes that are not UTF-8, and text that is not JSON or ends early, get their own errors.
#[test]
fn non_utf8_and_non_json_input_are_refused() {
    assert_eq!(parse::<HaltV1>(b"{\"reason\": \"\xff\"}"), Err(WireError::NotUtf8 { valid_up_to: 12 }));
    assert!(matches!(parse::<HaltV1>(b"version=1"), Err(WireError::NotJson { line: 1, .. })));
    assert!(matches!(parse::<HaltV1>(b"{\"version\": 1,"), Err(WireError::NotJson { .. })));
}

// Proves that a value of the wrong type, or an unknown enum value, is refused with its line and column and what was
// expected, without repeating the value.
#[test]
fn wrong_types_are_refused_with_their_position() {
    let text = "{\n  \"version\": \"1\",\n  \"command_id\": \"cmd-5\",\n  \"reason\": \"r\"\n}";
    match parse::<HaltV1>(text.as_bytes()) {
        Err(WireError::WrongType { expected, line, column }) => {
            assert_eq!((line, column), (2, 16));
            assert_eq!(expected, "u16");
        }
        other => panic!("expected a wrong type, got {other:?}"),
    }
    let mut value = review_json();
    value["decision"] = json!("maybe");
    match parse::<ReviewDecisionV1>(&bytes(&value)) {
        Err(WireError::WrongType { expected, .. }) => assert!(expected.contains("approve"), "{expected}"),
        other => panic!("expected a wrong value, got {other:?}"),
    }
    value["decision"] = json!("48217730");
    let error = parse::<ReviewDecisionV1>(&bytes(&value)).expect_err("refused");
    assert!(!error.to_string().contains("48217730"), "an unknown value is repeated: {error}");
}

// Proves that a code sent with the wrong JSON type is refused without the error (or its message) repeating it.
#[test]
fn wrong_typed_code_is_never_echoed() {
    let codes = [json!(12345678), json!([1, 2, 3, 4, 5, 6, 7, 8]), json!({ "digits": "12345678" }), json!(12345678.5)];
    for code in codes {
        let value = json!({ "version": 1, "command_id": "cmd-3", "case_id": "case-7", "code": code });
        let error = parse::<SubmitProofV1>(&bytes(&value)).expect_err("refused");
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("12345678") && !shown.contains("1234"), "the error repeats the code: {shown}");
    }
}

// Proves that a code pasted into any free-text field (summary, reason, signals) is refused, naming the field.
#[test]
fn codes_in_untrusted_fields_are_refused() {
    let secret = |field: &str| Rejection::SecretInUntrustedField { field: field.to_string() };
    let mut summary = request_json();
    summary["summary"] = json!("the customer read me the code 4821-7730, please hurry");
    assert_eq!(request_rejection(&summary), secret("summary"));
    let mut region = request_json();
    region["signals"]["region"] = json!("48217730");
    assert_eq!(request_rejection(&region), secret("signals.region"));
    let mut network = request_json();
    network["signals"]["source_network"] = json!("code 482 177");
    assert_eq!(request_rejection(&network), secret("signals.source_network"));
    let mut reason = review_json();
    reason["reason"] = json!("verified with 48217730");
    assert_eq!(review_rejection(&reason), secret("reason"));
    let halt = json!({ "version": 1, "command_id": "cmd-5", "reason": "1 2 3 4 5 6" });
    let rejection = parse::<HaltV1>(&bytes(&halt)).expect("parses").to_core().expect_err("refused");
    assert_eq!(rejection, secret("reason"));
}

// Proves that malformed email addresses and phone numbers are refused for the new destination.
#[test]
fn invalid_destinations_are_refused() {
    let emails = ["no-at.example.net", "two@@example.net", "a@b@example.net", "@example.net", "new@", "new @x.net"];
    let phones = ["447700900123", "+44 7700 900123", "+123456", "+1234567890123456", "+44770090012a", "+"];
    let cases = emails.iter().map(|address| ("email", address)).chain(phones.iter().map(|address| ("phone", address)));
    for (kind, address) in cases {
        let mut value = request_json();
        value["action"] = json!({ "type": "add_destination", "kind": kind, "address": address });
        let rejection = request_rejection(&value);
        assert!(
            matches!(&rejection, Rejection::InvalidValue { field, .. } if field == "action.address"),
            "{kind} {address:?} gave {rejection:?}"
        );
    }
}

// Proves that text over its limit is refused with the field and the limit, for each kind of free text.
#[test]
fn over_long_text_is_refused() {
    let too_long = |field: &str, bytes_max: usize| Rejection::TooLong { field: field.to_string(), bytes_max };
    let mut summary = request_json();
    summary["summary"] = json!("a".repeat(limits::SUMMARY_BYTES_MAX + 1));
    assert_eq!(request_rejection(&summary), too_long("summary", limits::SUMMARY_BYTES_MAX));
    let mut region = request_json();
    region["signals"]["region"] = json!("r".repeat(limits::SIGNAL_BYTES_MAX + 1));
    assert_eq!(request_rejection(&region), too_long("signals.region", limits::SIGNAL_BYTES_MAX));
    let mut address = request_json();
    address["action"]["address"] = json!(format!("{}@example.net", "a".repeat(limits::ADDRESS_BYTES_MAX)));
    assert_eq!(request_rejection(&address), too_long("action.address", limits::ADDRESS_BYTES_MAX));
    let mut reason = review_json();
    reason["reason"] = json!("é".repeat(limits::REASON_BYTES_MAX / 2 + 1));
    assert_eq!(review_rejection(&reason), too_long("reason", limits::REASON_BYTES_MAX));
}

// Proves that identifiers are checked: an empty or spaced id, or one with a path separator, is refused by field.
#[test]
fn invalid_identifiers_are_refused() {
    for (field, bad) in [("command_id", ""), ("account_id", "acct 42"), ("account_id", "../etc")] {
        let mut value = request_json();
        value[field] = json!(bad);
        let rejection = request_rejection(&value);
        assert!(matches!(&rejection, Rejection::InvalidValue { field: named, .. } if named == field), "{rejection:?}");
    }
    let mut value = review_json();
    value["case_id"] = json!("case/7");
    assert!(matches!(review_rejection(&value), Rejection::InvalidValue { field, .. } if field == "case_id"));
}

// Proves that serde's positional form of a struct (a list in place of an object) is refused, at the top level and
// nested, with the list's position: no command has a list field, and the schemas allow only objects.
#[test]
fn lists_in_place_of_objects_are_refused() {
    let top = br#"[1, "cmd-3", "case-7", "12345678"]"#;
    match parse::<SubmitProofV1>(top) {
        Err(WireError::WrongType { line: 1, column: 1, expected }) => assert!(!expected.contains("1234")),
        other => panic!("expected a refused list, got {other:?}"),
    }
    let mut nested = request_json();
    nested["signals"] = json!([null, null, true, false, false]);
    assert!(matches!(request(&nested), Err(WireError::WrongType { .. })));
}

// Proves a person's reason is required on every command that records one (review decisions, cancel, rollback, halt,
// resume): empty or only spaces is refused as invalid, naming the field, whichever front door sends it (the console's
// form says "required", but a hand-made POST or NATS message must not get past it).
#[test]
fn a_blank_reason_is_refused_everywhere() {
    let case = json!({ "version": 1, "command_id": "c-1", "case_id": "case-1" });
    let with = |base: &Value, extra: Value| {
        let mut body = base.clone();
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        bytes(&body)
    };
    let hash = "ab".repeat(32);
    for reason in ["", "   ", "\t\n"] {
        let refusals = [
            parse::<ReviewDecisionV1>(&with(
                &case,
                json!({ "decision": "approve", "action_hash": hash, "reason": reason }),
            ))
            .unwrap()
            .to_core()
            .err(),
            parse::<ReviewDecisionV1>(&with(&case, json!({ "decision": "deny", "reason": reason })))
                .unwrap()
                .to_core()
                .err(),
            parse::<CancelV1>(&with(&case, json!({ "reason": reason }))).unwrap().to_core().err(),
            parse::<RollBackV1>(&with(&case, json!({ "reason": reason }))).unwrap().to_core().err(),
        ];
        let control = json!({ "version": 1, "command_id": "c-2", "reason": reason });
        let controls = [
            parse::<HaltV1>(&bytes(&control)).unwrap().to_core().err(),
            parse::<ResumeV1>(&bytes(&control)).unwrap().to_core().err(),
        ];
        for refusal in refusals.into_iter().chain(controls) {
            match refusal {
                Some(Rejection::InvalidValue { field, .. }) => assert_eq!(field, "reason", "{reason:?}"),
                other => panic!("a blank reason {reason:?} was not refused as invalid: {other:?}"),
            }
        }
    }
    let kept = parse::<CancelV1>(&with(&case, json!({ "reason": " owner called " }))).unwrap().to_core();
    assert!(kept.is_ok(), "{kept:?}");
}
