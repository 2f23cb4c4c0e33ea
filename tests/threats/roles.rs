//! THREATS 12: the support agent's credentials can open cases and nothing more. Both scenarios prove it at the domain's
//! role check: the embedded store has no broker, and over NATS the test's connection may publish on every subject (the
//! broker's own refusal of other roles' subjects is tests/nats/nats_permissions.rs's).

use crate::driver::*;
use serde_json::json;

// Proves THREATS 12: the support agent's own credentials, holding the real code and the real action hash, cannot
// submit proof, approve, deny, cancel, roll back, halt or resume: each is refused with role_not_allowed, each refusal
// on the case is recorded on its timeline with the agent named, the kill switch did not move, and the case is where
// it was, so the owner can still prove.
async fn the_support_agents_credentials_can_only_request<D: Driver>() {
    let airlock = D::start(vec![email_account("ola")]).await;
    let bot = "intake:support-bot";
    let case_id =
        airlock.open(bot, request_body("ask", "ola", reset_password(), "customer wants a reset", json!({}))).await;
    let code = airlock.code_for(&case_id).await;
    airlock.settle().await;
    let hash = airlock.case(&case_id).action_hash;
    let deny = json!({ "version": 1, "command_id": "deny", "case_id": case_id, "decision": "deny",
                       "reason": "no" });
    let attempts = [
        ("submit_proof", json!({ "version": 1, "command_id": "proof", "case_id": case_id, "code": code })),
        ("review_decision", approve(&case_id, "approve", &hash)),
        ("review_decision", deny),
        ("cancel", json!({ "version": 1, "command_id": "cancel", "case_id": case_id, "reason": "customer asked" })),
        ("roll_back", json!({ "version": 1, "command_id": "undo", "case_id": case_id, "reason": "customer asked" })),
        ("halt", json!({ "version": 1, "command_id": "halt", "reason": "customer asked" })),
        ("resume", json!({ "version": 1, "command_id": "resume", "reason": "customer asked" })),
    ];
    for (command, body) in &attempts {
        let reply = airlock.send(bot, command, body).await;
        assert_eq!((&reply["accepted"], error_code(&reply)), (&json!(false), "role_not_allowed"), "{command}: {reply}");
    }
    airlock.settle().await;
    let refused: Vec<String> = airlock
        .timeline(&case_id)
        .into_iter()
        .filter(|entry| entry.event_type == "command_refused")
        .map(|entry| {
            assert_eq!(entry.actor, bot);
            entry.detail
        })
        .collect();
    assert_eq!(refused.len(), 5, "{refused:?}");
    for (refusal, command) in
        refused.iter().zip(["submit_proof", "approve_review", "deny_review", "cancel", "roll_back"])
    {
        assert!(refusal.contains(command) && refusal.contains("intake"), "{refusal} is not the {command} refusal");
    }
    assert_eq!(airlock.control(), (false, 0), "the kill switch moved");

    assert_eq!(airlock.status(&case_id).await, "requested");
    let reply = airlock.prove(&case_id, "owner", &code).await;
    assert_eq!(reply["status"], "cooling_off", "the agent's refused attempt spent the owner's code: {reply}");
    let reply = airlock.send(bot, "cancel", &attempts[3].1).await;
    assert_eq!((&reply["accepted"], error_code(&reply)), (&json!(false), "role_not_allowed"), "{reply}");
    assert_eq!(airlock.status(&case_id).await, "cooling_off");
    airlock.finish(&[]).await;
}

// Proves THREATS 12 and ARCHITECTURE.md's "roles are checked before anything else" for proofs: a proof sent with the
// support agent's credentials is refused for its role before the code or the authenticator code is looked at, so a
// malformed code gets role_not_allowed (recorded), and a refused proof carrying the owner's authenticator code does
// not spend it: the owner can still use it.
async fn a_proof_from_the_support_agent_is_refused_before_anything_is_checked_or_spent<D: Driver>() {
    let mut tess = email_account("tess");
    tess["totp_enrolled_since"] = json!(LONG_AGO);
    tess["totp_secret"] = json!(TOTP_SECRET);
    let airlock = D::start(vec![tess]).await;
    let bot = "intake:support-bot";
    let lost_phone = request_body("lost-phone", "tess", json!({ "type": "remove_totp" }), "lost my phone", json!({}));
    let case_id = airlock.open(bot, lost_phone).await;
    let code = airlock.code_for(&case_id).await;
    // What the owner's authenticator app shows now (the customer read it out to the support bot).
    let totp = totp_now();

    let proof = |command_id: &str, code: &str| json!({ "version": 1, "command_id": command_id, "case_id": case_id, "code": code, "totp": totp });
    let reply = airlock.send(bot, "submit_proof", &proof("bot-proof", &code)).await;
    assert_eq!((&reply["accepted"], error_code(&reply)), (&json!(false), "role_not_allowed"), "{reply}");
    let reply = airlock.send(PAGE, "submit_proof", &proof("owner-proof", &code)).await;
    airlock.settle().await;
    assert_eq!(
        (&reply["accepted"], &reply["status"]),
        (&json!(true), &json!("cooling_off")),
        "the support bot's refused proof spent the owner's authenticator code: {reply} {:?}",
        airlock.timeline(&case_id)
    );

    let reply = airlock.send(bot, "submit_proof", &proof("bot-malformed", "12ab")).await;
    assert_eq!((&reply["accepted"], error_code(&reply)), (&json!(false), "role_not_allowed"), "{reply}");
    airlock.settle().await;
    let refusals = airlock.timeline(&case_id).into_iter().filter(|entry| entry.event_type == "command_refused").count();
    assert_eq!(refusals, 2, "{:?}", airlock.timeline(&case_id));
    airlock.finish(&[totp]).await;
}

on_backends! {
    both: [
        the_support_agents_credentials_can_only_request,
        a_proof_from_the_support_agent_is_refused_before_anything_is_checked_or_spent,
    ],
}
