//! End-to-end tests of `airlock submit`, the embedded mode's JSON front door, driven as a user would: bad input is
//! refused with a specific, typed reason, a refusal that names an existing case is recorded on it, intake actors
//! get one generic answer whatever the account, and a code pasted into free text is never stored.

use crate::common;

use common::submit;

use airlock::clock::{Clock, SystemClock};
use airlock::core::ids::{CaseId, UnixMs};
use airlock::core::limits::{COMMAND_BYTES_MAX, DAY_MS};
use airlock::directory::embedded::EmbeddedDirectory;
use airlock::projection::Projection;
use serde_json::{Value, json};
use std::path::Path;

fn seeded() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    let directory = EmbeddedDirectory::open(&data.path().join("directory.db")).unwrap();
    let now = SystemClock.now();
    directory.put_account(&common::email_account("frank", UnixMs(now.0 - 100 * DAY_MS))).unwrap();
    data
}

/// Runs `airlock submit` with `input` on standard input; returns the exit code and the parsed reply.
fn request(command_id: &str, account: &str, summary: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "version": 1,
        "command_id": command_id,
        "account_id": account,
        "action": { "type": "reset_password" },
        "summary": summary,
        "signals": { "via_proxy": true }
    }))
    .unwrap()
}

fn timeline_events(data: &Path, case_id: &str) -> Vec<(String, String)> {
    let projection = Projection::open(&data.join("projection.db")).unwrap();
    projection.timeline(&CaseId::new(case_id)).unwrap().into_iter().map(|row| (row.event_type, row.detail)).collect()
}

// Proves an intake actor gets the same reply (apart from the new case id) for an existing and a missing account
// (THREATS 8), and that the reply names no destination.
#[test]
fn intake_gets_one_generic_answer() {
    let data = seeded();
    let (known_code, known) = submit(data.path(), "intake:desk", "request-recovery", &request("c-1", "frank", "hi"));
    let (missing_code, missing) =
        submit(data.path(), "intake:desk", "request-recovery", &request("c-2", "nobody", "hi"));
    assert_eq!((known_code, missing_code), (0, 0));
    // The new case id and the sender's own command id differ by construction; everything else must be identical.
    let strip = |mut reply: Value| {
        reply.as_object_mut().unwrap().remove("case_id");
        reply.as_object_mut().unwrap().remove("command_id");
        reply
    };
    assert_eq!(strip(known.clone()), strip(missing));
    assert_eq!(known["status"], "received");
    assert!(!known.to_string().contains("frank@"), "{known}");
}

// Proves commands from the wrong role and malformed commands are refused with specific codes, and each refusal that
// names an existing case is recorded on that case's timeline.
#[test]
fn bad_input_is_refused_specifically_and_recorded() {
    let data = seeded();
    let (_, opened) = submit(data.path(), "intake:desk", "request-recovery", &request("c-1", "frank", "hi"));
    let case_id = opened["case_id"].as_str().unwrap().to_string();

    let cancel = json!({ "version": 1, "command_id": "bot-cancel", "case_id": case_id, "reason": "customer asked" });
    let (code, reply) = submit(data.path(), "intake:desk", "cancel", &serde_json::to_vec(&cancel).unwrap());
    assert_eq!((code, reply["error"]["code"].as_str()), (1, Some("role_not_allowed")), "{reply}");

    let unknown_field =
        json!({ "version": 1, "command_id": "ops-1", "case_id": case_id, "reason": "x", "force": true });
    let (code, reply) = submit(data.path(), "operator:sam", "cancel", &serde_json::to_vec(&unknown_field).unwrap());
    assert_eq!((code, reply["error"]["code"].as_str()), (1, Some("malformed_command")), "{reply}");
    assert!(reply["error"]["reason"].as_str().unwrap().contains("force"), "{reply}");

    let wrong_state = json!({ "version": 1, "command_id": "ops-2", "case_id": case_id, "reason": "not now" });
    let (code, reply) = submit(data.path(), "operator:sam", "roll-back", &serde_json::to_vec(&wrong_state).unwrap());
    assert_eq!((code, reply["error"]["code"].as_str()), (1, Some("wrong_state")), "{reply}");

    let refusals: Vec<String> = timeline_events(data.path(), &case_id)
        .into_iter()
        .filter(|(event, _)| event == "command_refused")
        .map(|(_, detail)| detail)
        .collect();
    assert_eq!(refusals.len(), 3, "{refusals:?}");
    assert!(refusals[0].contains("intake:desk"));
    assert!(refusals[1].contains("malformed") && refusals[1].contains("force"));
    assert!(refusals[2].contains("roll_back"));
}

// Proves oversized and unparseable input get their own specific reasons and the process does not crash.
#[test]
fn oversized_and_unparseable_input_are_refused() {
    let data = seeded();
    let huge = vec![b'{'; COMMAND_BYTES_MAX + 10];
    let (code, reply) = submit(data.path(), "intake:desk", "request-recovery", &huge);
    assert_eq!(code, 1);
    assert_eq!(reply["error"]["code"], "malformed_command");
    assert!(reply["error"]["reason"].as_str().unwrap().contains(&COMMAND_BYTES_MAX.to_string()), "{reply}");
    let (code, reply) = submit(data.path(), "intake:desk", "request-recovery", b"not json at all");
    assert_eq!((code, reply["error"]["code"].as_str()), (1, Some("malformed_command")), "{reply}");
}

// Proves a code pasted into the requester's summary is refused and stored nowhere.
#[test]
fn a_code_in_free_text_is_refused_and_not_stored() {
    let data = seeded();
    let summary = "the customer read me their code 48151623, please use it";
    let (code, reply) = submit(data.path(), "intake:desk", "request-recovery", &request("c-9", "frank", summary));
    assert_eq!((code, reply["error"]["code"].as_str()), (1, Some("secret_in_untrusted_field")), "{reply}");
    assert!(!reply.to_string().contains("48151623"));
    for file in ["log.db", "projection.db"] {
        let bytes = std::fs::read(data.path().join(file)).unwrap_or_default();
        assert!(!bytes.windows(8).any(|window| window == b"48151623"), "{file} holds the pasted code");
    }
}

// Proves the owner's proof goes through the same door: a wrong code is counted, a malformed code is refused at the
// edge, and neither echoes the digits.
#[test]
fn owner_proof_through_the_front_door() {
    let data = seeded();
    let (_, opened) = submit(data.path(), "intake:desk", "request-recovery", &request("c-1", "frank", "hi"));
    let case_id = opened["case_id"].as_str().unwrap().to_string();
    let proof = json!({ "version": 1, "command_id": "p-1", "case_id": case_id, "code": "00000000" });
    let (code, reply) = submit(data.path(), "owner:page", "submit-proof", &serde_json::to_vec(&proof).unwrap());
    assert_eq!((code, reply["status"].as_str()), (0, Some("requested")), "{reply}");
    let bad = json!({ "version": 1, "command_id": "p-2", "case_id": case_id, "code": "9876x543" });
    let (code, reply) = submit(data.path(), "owner:page", "submit-proof", &serde_json::to_vec(&bad).unwrap());
    assert_eq!(code, 1, "{reply}");
    assert!(!reply.to_string().contains("9876"), "{reply}");
    let events: Vec<String> = timeline_events(data.path(), &case_id).into_iter().map(|(event, _)| event).collect();
    assert!(events.contains(&"proof_rejected".to_string()), "{events:?}");
}
