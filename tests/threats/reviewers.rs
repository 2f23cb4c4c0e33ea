//! THREATS 10 and 11: what reviewers decide, and what they cannot decide.

use crate::driver::*;
use serde_json::json;

// ---------------------------------------------------------------------------------------------------------------
// THREATS 10
// ---------------------------------------------------------------------------------------------------------------

// Proves THREATS 10: on a high-value account a proven code is not enough: the case goes to reviewers and needs two
// distinct ones (the same reviewer twice, or a reviewer with the requester's id, does not count); then it waits the
// longest cooling-off, 168 hours, and every destination that existed before the request is told, with a cancel link,
// including one too young to have received the code.
async fn a_high_value_account_needs_two_reviewers_and_the_longest_wait<D: Driver>() {
    let young = time_ago(2 * DAY_MS);
    let mut vip = account(
        "vera",
        &[
            ("vera-mail", "email", "vera@example.com", LONG_AGO),
            ("vera-phone", "phone", "+15550100200", LONG_AGO),
            ("vera-work", "email", "vera@work.example", &young),
        ],
    );
    vip["high_value"] = json!("admin");
    let airlock = D::start(vec![vip]).await;
    let asked = request_body("vip-1", "vera", reset_password(), "the CEO is locked out, urgent", json!({}));
    let case_id = airlock.open(DESK, asked).await;
    let code = airlock.code_for(&case_id).await;
    airlock.settle().await;
    let with_code: Vec<String> = airlock
        .messages_of(&case_id)
        .into_iter()
        .filter(|message| code_in(&message.body).is_some())
        .map(|message| message.address)
        .collect();
    assert_eq!(with_code, ["vera@example.com", "+15550100200"], "the code went to a destination under 7 days old");

    let reply = airlock.prove(&case_id, "p-1", &code).await;
    assert_eq!(reply["status"], "in_review", "a high-value account was automated: {reply}");
    airlock.settle().await;
    let review = airlock.timeline(&case_id).into_iter().find(|entry| entry.event_type == "review_required").unwrap();
    assert!(review.detail.contains("by 2 reviewer(s)"), "{}", review.detail);

    let hash = airlock.case(&case_id).action_hash;
    let reply = airlock.review("rita", approve(&case_id, "a-1", &hash)).await;
    assert_eq!(
        (&reply["accepted"], &reply["status"]),
        (&json!(true), &json!("in_review")),
        "one approval was enough: {reply}"
    );
    let reply = airlock.review("rita", approve(&case_id, "a-2", &hash)).await;
    assert_eq!((&reply["accepted"], error_code(&reply)), (&json!(false), "duplicate_approval"), "{reply}");
    let reply = airlock.review("desk", approve(&case_id, "a-3", &hash)).await;
    assert_eq!((&reply["accepted"], error_code(&reply)), (&json!(false), "self_approval"), "{reply}");
    assert_eq!(airlock.status(&case_id).await, "in_review");
    let reply = airlock.review("sam", approve(&case_id, "a-4", &hash)).await;
    assert_eq!((&reply["accepted"], &reply["status"]), (&json!(true), &json!("cooling_off")), "{reply}");

    airlock.settle().await;
    let case = airlock.case(&case_id);
    assert_eq!(case.authorization.as_deref(), Some("quorum"));
    let waits_ms = airlock.cooling_off_ms(&case_id);
    assert!(waits_ms >= 168 * HOUR_MS, "waits only {} h", waits_ms / HOUR_MS);
    let mut notified: Vec<String> =
        case.notified.as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_string()).collect();
    notified.sort();
    assert_eq!(notified, ["vera-mail", "vera-phone", "vera-work"]);
    let mut noticed: Vec<String> = airlock
        .messages_of(&case_id)
        .into_iter()
        .filter(|message| message.subject == SCHEDULED && message.body.contains("/cancel?"))
        .map(|message| message.address)
        .collect();
    noticed.sort();
    assert_eq!(noticed, ["+15550100200", "vera@example.com", "vera@work.example"]);
    airlock.finish(&[]).await;
}

// ---------------------------------------------------------------------------------------------------------------
// THREATS 11
// ---------------------------------------------------------------------------------------------------------------

// Proves THREATS 11: a pressured reviewer cannot pick a destination or skip the wait: a decision carrying a
// destination, a shorter cooling-off or a skip flag is refused as malformed, naming the field, recorded on the case
// under the reviewer and (over NATS) kept in the dead-letter stream under the reviewer; an approval of a different
// action (a made-up hash, or the hash of another case of the same account) is refused; the approval of the action
// shown goes ahead with the request's own address and the policy's full wait, and the reviewer's address receives
// nothing.
async fn a_reviewer_approves_only_the_exact_action_and_cannot_shorten_the_wait<D: Driver>() {
    let young = time_ago(DAY_MS);
    let airlock = D::start(vec![account("noa", &[("noa-mail", "email", "noa@example.com", &young)])]).await;
    let asked = "noa.backup@example.org";
    let picked = "reviewer.pick@attacker.example";
    let case_id = airlock
        .open(DESK, request_body("rv-1", "noa", add_email(asked), "add my backup address, it is urgent", json!({})))
        .await;
    let other =
        airlock.open(DESK, request_body("rv-2", "noa", add_email("other@example.net"), "or this one", json!({}))).await;
    assert_eq!(airlock.status(&case_id).await, "in_review", "no destination is old enough, so people decide");
    airlock.settle().await;
    let hash = airlock.case(&case_id).action_hash;

    let fields = [
        ("destination", json!(picked)),
        ("new_address", json!(picked)),
        ("cooling_off_hours", json!(0)),
        ("skip_cooling_off", json!(true)),
    ];
    for (field, value) in &fields {
        let mut body = approve(&case_id, &format!("x-{field}"), &hash);
        body[field] = value.clone();
        let reply = airlock.review("rita", body).await;
        assert_eq!((&reply["accepted"], error_code(&reply)), (&json!(false), "malformed_command"), "{field}: {reply}");
        assert!(reply["error"]["reason"].as_str().unwrap().contains(field), "{reply}");
    }
    airlock.settle().await;
    let refusals = airlock.timeline(&case_id).into_iter().filter(|entry| entry.event_type == "command_refused");
    let refusals: Vec<Entry> = refusals.collect();
    assert_eq!(refusals.len(), 4, "the refused decisions were not recorded: {refusals:?}");
    assert!(refusals.iter().all(|entry| entry.actor == "reviewer:rita"), "{refusals:?}");
    if let Some(dead) = airlock.dead_letters().await {
        for (field, _) in &fields {
            assert!(
                dead.iter().any(|letter| letter.subject == "airlock.deadletter.reviewer.rita"
                    && letter.reason_code == "malformed_command"
                    && letter.original_subject == "airlock.intake.reviewer.rita.review_decision"
                    && String::from_utf8_lossy(&letter.payload).contains(&format!("\"{field}\""))),
                "the decision with {field} was not kept: {dead:?}"
            );
        }
    }

    let made_up = "ab".repeat(32);
    let other_hash = airlock.case(&other).action_hash;
    for (command_id, wrong_hash) in [("made-up", made_up.as_str()), ("other-case", other_hash.as_str())] {
        let reply = airlock.review("rita", approve(&case_id, command_id, wrong_hash)).await;
        assert_eq!((&reply["accepted"], error_code(&reply)), (&json!(false), "action_hash_mismatch"), "{reply}");
    }
    assert_eq!(airlock.status(&case_id).await, "in_review");

    let reply = airlock.review("rita", approve(&case_id, "right", &hash)).await;
    assert_eq!((&reply["accepted"], &reply["status"]), (&json!(true), &json!("cooling_off")), "{reply}");
    airlock.settle().await;
    assert_eq!(airlock.case(&case_id).new_destination.as_deref(), Some(asked), "the destination changed on approval");
    assert!(airlock.cooling_off_ms(&case_id) >= 72 * HOUR_MS, "a reviewed new destination waited under 72 h");
    assert!(airlock.outbox(Some(picked)).is_empty());
    assert!(airlock.messages().iter().all(|message| message.address != picked));
    airlock.finish(&[]).await;
}

on_backends! {
    both: [
        a_high_value_account_needs_two_reviewers_and_the_longest_wait,
        a_reviewer_approves_only_the_exact_action_and_cannot_shorten_the_wait,
    ],
}
