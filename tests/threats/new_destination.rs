//! THREATS 2 (and 13 and 14 where they follow from it): a new destination is added only with proof from an old one,
//! waits, never receives a code before it has aged, and is removed by a rollback.

use crate::driver::*;
use serde_json::json;

const CLEO_NEW: &str = "cleo.new@elsewhere.example";

/// THREATS 2's first half: a request to add B, an attempt to "confirm B from B" (B's holder has no code, so they
/// make one up), and the owner's proof from A. Returns the deployment and the case, now cooling off.
async fn add_b_and_prove_from_a<D: Driver>() -> (D, String) {
    let airlock = D::start(vec![email_account("cleo")]).await;
    let asked = request_body("add-b", "cleo", add_email(CLEO_NEW), "please add my recovery email", json!({}));
    let case_id = airlock.open(DESK, asked).await;

    // Confirming B from B: whoever holds B types what they have at the verification page. They have no code.
    let reply = airlock.prove(&case_id, "from-b", "12345678").await;
    assert_eq!((&reply["accepted"], &reply["status"]), (&json!(true), &json!("requested")), "{reply}");
    let code_at_a = airlock.code_for(&case_id).await;
    airlock.settle().await;
    assert!(airlock.events(&case_id).contains(&"proof_rejected".to_string()));
    assert!(airlock.outbox(Some(CLEO_NEW)).is_empty(), "B received something before proof from A");
    assert!(airlock.destinations("cleo").iter().all(|(address, _)| address != CLEO_NEW), "B was added unproven");
    assert!(airlock.messages_of(&case_id).iter().all(|message| message.address == "cleo@example.com"));

    let reply = airlock.prove(&case_id, "from-a", &code_at_a).await;
    assert_eq!((&reply["accepted"], &reply["status"]), (&json!(true), &json!("cooling_off")), "{reply}");
    airlock.settle().await;
    (airlock, case_id)
}

/// Once A's code is proven: the change waits at least 72 hours with B still absent from the account, and A gets a
/// notice with a cancel link for this case while B gets none.
fn waits_72_hours_and_only_a_is_told<D: Driver>(airlock: &D, case_id: &str) {
    let waits_ms = airlock.cooling_off_ms(case_id);
    assert!(waits_ms >= 72 * HOUR_MS, "a new destination waited only {} h", waits_ms / HOUR_MS);
    assert_eq!(airlock.case(case_id).notified, json!(["cleo-mail"]));
    assert_eq!(airlock.destinations("cleo"), [("cleo@example.com".to_string(), false)], "B stays pending");
    let notice = airlock.messages_of(case_id).into_iter().find(|message| message.subject == SCHEDULED);
    let notice = notice.expect("A was notified");
    assert_eq!(notice.address, "cleo@example.com");
    assert!(
        notice.body.contains(&format!("/cancel?case={case_id}&destination=cleo-mail&token=")),
        "the notice has no cancel link: {}",
        notice.body
    );
    assert!(code_in(&notice.body).is_none(), "the notice carries a code");
    assert!(airlock.outbox(Some(CLEO_NEW)).is_empty(), "B received: {:?}", airlock.outbox(Some(CLEO_NEW)));
}

// Proves THREATS 2: confirming B from B (a made-up code at the page) proves nothing and B receives nothing; adding B
// needs the code sent to A; once A's code is proven the change waits at least 72 hours with B still absent from the
// account, and A gets a notice with a cancel link for this case while B gets none.
async fn a_new_email_is_added_only_with_proof_from_the_old_one_and_waits_72_hours<D: Driver>() {
    let (airlock, case_id) = add_b_and_prove_from_a::<D>().await;
    waits_72_hours_and_only_a_is_told(&airlock, &case_id);
    airlock.finish(&[]).await;
}

// Proves THREATS 2 from the request to the rollback, and THREATS 13 and 14 along the way: after the first half (as
// above), once airlock's timers (its clock four days ahead) have executed the addition, B is on the account but still
// gets no recovery code, because it has not aged the 7 days a destination needs; the owner objects and an operator
// rolls the change back (`airlock rollback` on the embedded store, the operator's `roll_back` subject over NATS),
// which removes B and tells A (THREATS 13); B never received a message of any kind; `airlock audit verify` finds the
// projection to be what the log implies. Then (THREATS 14) an insider hides how the change was authorized and edits a
// receipt in the projection: the audit against the log finds both, and the receipt chain breaks.
async fn after_cooling_off_the_new_email_gets_no_code_and_a_rollback_removes_it<D: Driver>() {
    let (mut airlock, case_id) = add_b_and_prove_from_a::<D>().await;
    waits_72_hours_and_only_a_is_told(&airlock, &case_id);

    // Four days later the cooling-off is over and serve's timers execute the addition.
    airlock
        .run_ahead("4days", "the executor to apply the change and tell A", async |airlock| {
            airlock.status(&case_id).await == "executed"
                && airlock.messages_of(&case_id).iter().any(|message| message.subject == CHANGED)
        })
        .await;
    airlock.settle().await;
    assert_eq!(airlock.status(&case_id).await, "executed");
    let destinations = airlock.destinations("cleo");
    assert!(destinations.contains(&(CLEO_NEW.to_string(), false)), "B was not added: {destinations:?}");

    let later = airlock.open(DESK, request_body("reset-later", "cleo", reset_password(), "now reset", json!({}))).await;
    airlock.code_for(&later).await;
    airlock.settle().await;
    let sent = airlock.messages_of(&later);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].address, "cleo@example.com", "the code went to a destination younger than 7 days");

    airlock.roll_back(&case_id, "the owner did not ask for this").await;
    airlock.settle().await;
    assert_eq!(airlock.status(&case_id).await, "rolled_back");
    let destinations = airlock.destinations("cleo");
    assert!(!destinations.contains(&(CLEO_NEW.to_string(), false)), "B was not removed: {destinations:?}");
    assert!(destinations.contains(&("cleo@example.com".to_string(), false)), "A was not kept: {destinations:?}");
    let rolled_back = airlock.messages_of(&case_id);
    assert!(
        rolled_back.iter().any(|message| message.address == "cleo@example.com" && message.body.contains("rolled back")),
        "A was not told of the rollback: {rolled_back:?}"
    );
    assert!(airlock.outbox(Some(CLEO_NEW)).is_empty(), "B received: {:?}", airlock.outbox(Some(CLEO_NEW)));
    let audit = airlock.audit_verify();
    assert!(audit.status.success(), "{}", String::from_utf8_lossy(&audit.stdout));

    // THREATS 14: an insider hides how the change was authorized and edits a receipt, in the projection airlock keeps;
    // the audit against the log finds both, and the receipt chain breaks.
    let projection = rusqlite::Connection::open(airlock.data().join("projection.db")).unwrap();
    projection.execute("UPDATE cases SET authorization = NULL WHERE case_id = ?1", [&case_id]).unwrap();
    let edited = projection.execute("UPDATE receipts SET body = body || ' ' WHERE case_id = ?1", [&case_id]).unwrap();
    assert!(edited > 0, "the case has receipts");
    drop(projection);
    let audit = airlock.audit_verify();
    let report = String::from_utf8_lossy(&audit.stdout);
    assert_eq!(audit.status.code(), Some(1), "{report}");
    assert!(report.contains("cases") && report.contains("receipts") && report.contains("chain"), "{report}");
    airlock.finish(&[]).await;
}

on_backends! {
    both: [
        a_new_email_is_added_only_with_proof_from_the_old_one_and_waits_72_hours,
        after_cooling_off_the_new_email_gets_no_code_and_a_rollback_removes_it,
    ],
}
