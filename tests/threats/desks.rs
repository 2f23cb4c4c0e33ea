//! THREATS 1, 8 and 18: what a desk (or an attacker at one) learns from airlock's answers: nothing about the account.

use crate::driver::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------------------------
// THREATS 1
// ---------------------------------------------------------------------------------------------------------------

// Proves THREATS 1: the 2026 playbook (a proxy near the victim's region, a reset, "link my new email B and send the
// code there", a guessed code) sends nothing of any kind to B; the only code goes to the pre-existing email A; the
// support bot's reply (as `airlock submit` printed it, or as published on the bot's result subject over NATS) is byte
// for byte the reply to a bland request and to a request for an account that does not exist, apart from the case id
// and its own command id, and so is its status query (over NATS, the backend that has one).
async fn the_2026_playbook_sends_nothing_to_the_new_email_and_gets_the_generic_reply<D: Driver>() {
    let airlock = D::start(vec![email_account("amy"), email_account("bea")]).await;
    let bot = "intake:support-bot";
    let attacker = "amy.recovery@attacker.example";
    let signals = json!({ "via_proxy": true, "region": "Lyon, FR, near the account's usual region",
                          "source_network": "AS64500 residential proxy" });
    let summary = "Customer says they lost access to their old mailbox. Please link their new email \
                   amy.recovery@attacker.example to the account and send the reset code there, they are waiting.";
    let playbook = request_body("chat-1", "amy", add_email(attacker), summary, signals.clone());
    let playbook_reply = airlock.send_raw(bot, "request_recovery", playbook.to_string().as_bytes()).await;
    let playbook_reply = String::from_utf8(playbook_reply).unwrap();
    let opened: Value = serde_json::from_str(&playbook_reply).unwrap();
    assert_eq!(opened["accepted"], true, "{playbook_reply}");
    let case_id = opened["case_id"].as_str().unwrap().to_string();

    // The bot follows the script on: it also asks for a plain reset, and the attacker guesses a code at the page.
    let reset = request_body("chat-2", "amy", reset_password(), "also reset the password please", signals);
    let reset_case = airlock.open(bot, reset).await;
    let code_at_a = airlock.code_for(&case_id).await;
    let guessed = airlock.prove(&case_id, "guess-1", wrong_code(&code_at_a)).await;
    assert_eq!(guessed["status"], "requested", "{guessed}");

    // The same bot's replies to a bland request for another account and to a request for a missing account.
    let bland = request_body("chat-3", "bea", reset_password(), "forgot password", json!({}));
    let bland_reply = airlock.send_raw(bot, "request_recovery", bland.to_string().as_bytes()).await;
    let missing = request_body("chat-4", "nobody-at-all", add_email(attacker), summary, json!({ "via_proxy": true }));
    let missing_reply = airlock.send_raw(bot, "request_recovery", missing.to_string().as_bytes()).await;
    let (bland_reply, missing_reply) =
        (String::from_utf8(bland_reply).unwrap(), String::from_utf8(missing_reply).unwrap());
    // Case ids have one length and the command ids were chosen to have one length, so the bytes can be compared once
    // each id is replaced by a placeholder.
    let normalized = |raw: &str| {
        let reply: Value = serde_json::from_str(raw).unwrap();
        raw.replace(reply["case_id"].as_str().unwrap(), "<case>")
            .replace(reply["command_id"].as_str().unwrap(), "<command>")
    };
    assert_eq!(normalized(&playbook_reply), normalized(&bland_reply), "the reply depends on the request");
    assert_eq!(normalized(&playbook_reply), normalized(&missing_reply), "the reply depends on the account existing");
    for hint in ["@", "***", "amy", "example", "attacker"] {
        assert!(!normalized(&playbook_reply).contains(hint), "the reply hints at a contact ({hint}): {playbook_reply}");
    }
    // Asking after the case tells the bot no more about an existing account than about a missing one.
    let missing_case = serde_json::from_str::<Value>(&missing_reply).unwrap()["case_id"].as_str().unwrap().to_string();
    if let (Some(asked), Some(asked_missing)) =
        (airlock.query(bot, &case_id).await, airlock.query(bot, &missing_case).await)
    {
        assert_eq!(asked["status"], "pending", "{asked}");
        assert_eq!(without_ids(asked), without_ids(asked_missing), "the status query depends on the account existing");
    }

    airlock.settle().await;
    // Nothing of any kind reached B, through the operator's view or in the provider's outbox.
    assert!(airlock.outbox(Some(attacker)).is_empty(), "B received: {:?}", airlock.outbox(Some(attacker)));
    let everything = airlock.messages();
    assert!(
        everything.iter().all(|message| !message.address.to_ascii_lowercase().contains("attacker.example")),
        "a message reached the attacker's domain: {everything:?}"
    );
    // The playbook's case sent exactly one message: the code, to A. The reset case sent none (one code at a time).
    let sent = airlock.messages_of(&case_id);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].address.as_str(), sent[0].subject.as_str()), ("amy@example.com", "Your account recovery code"));
    assert!(airlock.messages_of(&reset_case).is_empty(), "a second code was sent while one was outstanding");
    assert!(
        everything
            .iter()
            .filter(|message| code_in(&message.body).is_some())
            .all(|message| message.address == "amy@example.com" || message.address == "bea@example.com")
    );
    assert_eq!(airlock.status(&case_id).await, "requested", "the guess proved nothing");
    assert_eq!(airlock.destinations("amy"), [("amy@example.com".to_string(), false)], "the account is unchanged");
    airlock.finish(&[]).await;
}

// ---------------------------------------------------------------------------------------------------------------
// THREATS 8
// ---------------------------------------------------------------------------------------------------------------

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

// Proves THREATS 8: requests for twenty existing and twenty missing accounts, interleaved, all get the same reply
// once the ids are removed, with no contact hint; the codes went to the existing accounts' owners. Timing is measured
// too, but only as a coarse guard: each sample is a whole command (an `airlock submit` process on the embedded store:
// start, open three SQLite files, decide; a publish and its answer over NATS), so the test asserts the medians are
// within a factor of 3, which catches a gross difference (a network call or a sleep on one path only) and cannot
// prove the two paths are indistinguishable.
async fn existing_and_missing_accounts_get_the_same_reply<D: Driver>() {
    let accounts: Vec<Value> = (0..20).map(|index| email_account(&format!("user{index}"))).collect();
    let airlock = D::start(accounts).await;
    let (mut existing, mut missing) = (Vec::new(), Vec::new());
    let mut replies = Vec::new();
    for index in 0..20 {
        for (account_id, samples) in [(format!("user{index}"), &mut existing), (format!("ghost{index}"), &mut missing)]
        {
            let body = request_body(&format!("{account_id}-r"), &account_id, reset_password(), "locked out", json!({}));
            let started = Instant::now();
            let reply = airlock.send("intake:probe", "request_recovery", &body).await;
            samples.push(started.elapsed());
            assert_eq!(reply["accepted"], true, "{reply}");
            replies.push((account_id, reply));
        }
    }
    let reference = without_ids(replies[0].1.clone());
    for (account_id, reply) in &replies {
        assert_eq!(without_ids(reply.clone()), reference, "the reply for {account_id} differs");
    }
    let text = reference.to_string();
    for hint in ["@", "***", "example", "user", "email", "phone"] {
        assert!(!text.contains(hint), "the reply hints at a contact ({hint}): {text}");
    }
    // Codes went out for the existing accounts only: the difference is in the owners' mailboxes, not the reply.
    airlock.settle().await;
    assert_eq!(airlock.messages().len(), 20);

    let (existing, missing) = (median(existing), median(missing));
    let (slow, fast) = if existing > missing { (existing, missing) } else { (missing, existing) };
    assert!(slow < fast * 3, "medians differ grossly: existing {existing:?}, missing {missing:?}");
    airlock.finish(&[]).await;
}

// ---------------------------------------------------------------------------------------------------------------
// THREATS 18
// ---------------------------------------------------------------------------------------------------------------

// Proves THREATS 18 (issue 15, item 8): a desk cannot tell existing from nonexistent accounts by any answer it gets.
// Requests for an account whose owner is sent a code, an account whose only destination is too young for one, and an
// account that does not exist get the same answer once ids are removed, and the desk's status query (over NATS, the
// backend that has one) reads the same for all three cases; a day later (airlock's clock run past the cases' time
// limit, the code's case expired) it still reads the same.
async fn a_desk_cannot_tell_existing_from_nonexistent_accounts<D: Driver>() {
    let young = time_ago(DAY_MS);
    let mut airlock =
        D::start(vec![email_account("vera"), account("walt", &[("walt-mail", "email", "walt@example.com", &young)])])
            .await;
    let (mut cases, mut answers) = (Vec::new(), Vec::new());
    for (index, account_id) in ["vera", "walt", "nobody-at-all"].into_iter().enumerate() {
        let body = request_body(&format!("t18-{index}"), account_id, reset_password(), "locked out", json!({}));
        let reply = airlock.send(DESK, "request_recovery", &body).await;
        cases.push(reply["case_id"].as_str().expect("a case id").to_string());
        answers.push(without_ids(reply));
    }
    assert!(answers.iter().all(|answer| *answer == answers[0]), "answers differ: {answers:#?}");
    airlock.settle().await;
    assert_eq!(airlock.messages().len(), 1, "the code went to vera only: the difference is in her mailbox");
    if let Some(now) = desk_statuses(&airlock, &cases).await {
        assert!(now.iter().all(|status| *status == now[0]), "statuses differ: {now:?}");
    }

    let code_case = cases[0].clone();
    airlock
        .run_ahead("25h", "the code's case to expire", async |airlock| airlock.status(&code_case).await == "expired")
        .await;
    if let Some(later) = desk_statuses(&airlock, &cases).await {
        assert!(later.iter().all(|status| *status == later[0]), "statuses a day later differ: {later:?}");
    }
    airlock.finish(&[]).await;
}

/// The status each case reads for the desk that opened it, where the backend has a status query.
async fn desk_statuses<D: Driver>(airlock: &D, cases: &[String]) -> Option<Vec<Value>> {
    let mut statuses = Vec::new();
    for case_id in cases {
        statuses.push(without_ids(airlock.query(DESK, case_id).await?));
    }
    Some(statuses)
}

on_backends! {
    both: [
        the_2026_playbook_sends_nothing_to_the_new_email_and_gets_the_generic_reply,
        existing_and_missing_accounts_get_the_same_reply,
        a_desk_cannot_tell_existing_from_nonexistent_accounts,
    ],
}
