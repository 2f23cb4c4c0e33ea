//! THREATS 6, 7 and 17: requests and wrong codes are counted per account, exactly, whether they come one after another
//! or all at once, and the counting cannot be turned against the owner.

use crate::driver::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------------------------------
// THREATS 6
// ---------------------------------------------------------------------------------------------------------------

// Proves THREATS 6: two dozen rephrased requests for one account, from several requesters, one after another, are
// counted per account and escalate exactly as policies/default.cedar says: the intake policy lets the first four
// through (one code in all; the others wait for people, since a code is out) and sends every later one to reviewers
// (velocity.account.review at 4 earlier requests); none is denied, since anyone can send requests for an account
// (ADR 14). A decided request sent again (over NATS, a new message to the broker) gets the same reply and changes
// nothing, and a case with reviewers takes no proof.
async fn rephrased_requests_are_counted_and_escalate_and_a_denial_sticks<D: Driver>() {
    let airlock = D::start(vec![email_account("kim")]).await;
    let mut cases = Vec::new();
    for index in 0..24 {
        let requester = format!("intake:agent-{}", index % 3);
        let body = request_body(&format!("ask-{index}"), "kim", reset_password(), &rephrased(index), json!({}));
        let case_id = airlock.open(&requester, body.clone()).await;
        cases.push((requester, body, case_id));
    }
    let mut statuses = Vec::new();
    for (_, _, case_id) in &cases {
        statuses.push(airlock.status(case_id).await);
    }
    let expected: Vec<&str> = (0..24).map(|index| if index == 0 { "requested" } else { "in_review" }).collect();
    assert_eq!(statuses, expected);
    airlock.settle().await;
    let intake: Vec<bool> = cases
        .iter()
        .map(|(_, _, case_id)| {
            airlock.timeline(case_id).iter().any(|entry| entry.detail.contains("intake policy Auto"))
        })
        .collect();
    assert_eq!(intake, (0..24).map(|index| index < 4).collect::<Vec<_>>(), "the count escalated at the wrong request");
    let review = airlock.timeline(&cases[4].2);
    assert!(review.iter().any(|entry| entry.detail.contains("velocity.account.review")), "{review:?}");
    let waiting = airlock.timeline(&cases[1].2);
    assert!(waiting.iter().any(|entry| entry.detail.contains("AnotherCodeOutstanding")), "{waiting:?}");
    let codes = airlock.messages().iter().filter(|message| code_in(&message.body).is_some()).count();
    assert_eq!(codes, 1, "one code for the account, whatever was asked");

    // The decision sticks: the same command again, the same answer, no new event, still with reviewers.
    let (requester, body, case_id) = &cases[20];
    let events_before = airlock.events(case_id);
    let first = airlock.send(requester, "request_recovery", body).await;
    let again = airlock.send(requester, "request_recovery", body).await;
    assert_eq!(first, again);
    assert_eq!(
        (&first["accepted"], first["case_id"].as_str()),
        (&json!(true), Some(case_id.as_str())),
        "a retry opened another case: {first}"
    );
    airlock.settle().await;
    assert_eq!(airlock.events(case_id), events_before);
    assert_eq!(airlock.status(case_id).await, "in_review");
    // And a case with reviewers takes no proof, not even a correct-looking one from the owner's page.
    let reply = airlock.prove(case_id, "late-proof", "12345678").await;
    assert_eq!((&reply["accepted"], error_code(&reply)), (&json!(false), "wrong_state"), "{reply}");
    airlock.finish(&[]).await;
}

// Proves THREATS 6 and SPEC principle 10 under concurrency: a burst of a dozen requests for one account sent at once
// (parallel `airlock submit` processes on the embedded store, published at once over NATS) is counted as if they had
// come one after another: the intake policy lets exactly four through and sends eight to reviewers; one code goes
// out, and every other case waits for people.
async fn a_parallel_burst_of_requests_is_counted_like_a_sequence<D: Driver>() {
    let airlock = D::start(vec![email_account("lou")]).await;
    let bodies: Vec<Value> = (0..12)
        .map(|index| request_body(&format!("burst-{index}"), "lou", reset_password(), &rephrased(index), json!({})))
        .collect();
    let replies = airlock.burst(DESK, "request_recovery", &bodies).await;
    let mut counts = BTreeMap::new();
    for reply in &replies {
        assert_eq!(reply["accepted"], true, "{reply}");
        *counts.entry(airlock.status(reply["case_id"].as_str().unwrap()).await).or_insert(0) += 1;
    }
    let expected = BTreeMap::from([("in_review".to_string(), 11), ("requested".to_string(), 1)]);
    assert_eq!(counts, expected, "more than one code went out for one account");
    airlock.settle().await;
    let automated = replies
        .iter()
        .filter(|reply| {
            let case_id = reply["case_id"].as_str().unwrap();
            airlock.timeline(case_id).iter().any(|entry| entry.detail.contains("intake policy Auto"))
        })
        .count();
    assert_eq!(automated, 4, "a parallel burst slipped past the per-account velocity limit");
    airlock.finish(&[]).await;
}

// ---------------------------------------------------------------------------------------------------------------
// THREATS 7
// ---------------------------------------------------------------------------------------------------------------

// Proves THREATS 7: one command after another, one code is outstanding per account (a second case opened meanwhile
// gets none and goes to people, and the first case's code does not work on it); wrong codes are counted per account
// across cases (two on the first case leave two on the next); the fifth wrong code denies the case, after which even
// the right code is refused; and (THREATS 17, ADR 14) a new case of the account gets no code but goes to people, who
// can still let the owner in.
async fn wrong_codes_are_counted_per_account_across_cases<D: Driver>() {
    let airlock = D::start(vec![email_account("max")]).await;
    let first = airlock.open(DESK, request_body("g-1", "max", reset_password(), "locked out", json!({}))).await;
    let second = airlock.open(DESK, request_body("g-2", "max", reset_password(), "locked out, again", json!({}))).await;
    let first_code = airlock.code_for(&first).await;
    airlock.settle().await;
    assert_eq!(airlock.messages().len(), 1, "two codes were outstanding for one account");
    assert!(airlock.timeline(&second).iter().any(|entry| entry.detail.contains("AnotherCodeOutstanding")));
    let reply = airlock.prove(&second, "cross", &first_code).await;
    assert_eq!((&reply["accepted"], error_code(&reply)), (&json!(false), "wrong_state"), "{reply}");
    assert_eq!(airlock.status(&second).await, "in_review", "the second case waits for people, not for nothing");

    let wrong = wrong_code(&first_code);
    for attempt in 0..2 {
        let reply = airlock.prove(&first, &format!("w1-{attempt}"), wrong).await;
        assert_eq!(reply["status"], "requested", "{reply}");
    }
    // The owner's proof ends the first case's code; only then can another case of the account get one.
    let reply = airlock.prove(&first, "owner", &first_code).await;
    assert_eq!(reply["status"], "cooling_off", "{reply}");
    // A request counts another case's code as outstanding until the projection shows that case proven, and over NATS
    // the projector follows the log a moment behind: wait for it, as an owner taking a breath would.
    airlock.settle().await;
    let third = airlock.open(DESK, request_body("g-3", "max", reset_password(), "still locked out", json!({}))).await;
    let third_code = airlock.code_for(&third).await;
    assert_ne!(third_code, first_code);

    let wrong = wrong_code(&third_code);
    let mut left = Vec::new();
    for attempt in 0..3 {
        let reply = airlock.prove(&third, &format!("w3-{attempt}"), wrong).await;
        left.push(reply["status"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(left, ["requested", "requested", "denied"], "the account's five wrong codes were not counted");
    airlock.settle().await;
    let details: Vec<String> = airlock
        .timeline(&third)
        .into_iter()
        .filter(|entry| entry.event_type == "proof_rejected")
        .map(|entry| entry.detail)
        .collect();
    assert_eq!(
        details,
        [
            "wrong code; 2 attempts left for this account",
            "wrong code; 1 attempts left for this account",
            "wrong code; 0 attempts left for this account"
        ]
    );
    let reply = airlock.prove(&third, "right-too-late", &third_code).await;
    assert_eq!(
        (&reply["accepted"], error_code(&reply)),
        (&json!(false), "wrong_state"),
        "the right code after five wrong ones: {reply}"
    );
    assert_eq!(airlock.status(&third).await, "denied");

    let fourth = airlock.open(DESK, request_body("g-4", "max", reset_password(), "one more try", json!({}))).await;
    airlock.settle().await;
    assert!(airlock.messages_of(&fourth).is_empty(), "a new code after the account's attempts ran out");
    assert!(airlock.timeline(&fourth).iter().any(|entry| entry.detail.contains("GuessingCapReached")));
    assert_eq!(airlock.status(&fourth).await, "in_review", "the owner's next request reaches a person");
    airlock.finish(&[]).await;
}

// Proves THREATS 7 under concurrency: a burst of parallel requests for one account sends one code, not one per case;
// then a burst of parallel wrong guesses at that case is counted one by one: exactly three are compared and recorded
// (the per-case cap, ADR 14), with three distinct counts left (2 down to 0), and the case ends denied. (When the
// account's wrong codes were read from the projection, which the NATS projector fills a moment after each append,
// about one run in ten recorded two guesses with the same count left: ADR 9.)
async fn parallel_cases_and_parallel_guesses_get_one_code_and_five_guesses<D: Driver>() {
    let airlock = D::start(vec![email_account("ned")]).await;
    let bodies: Vec<Value> = (0..6)
        .map(|index| request_body(&format!("p-{index}"), "ned", reset_password(), &rephrased(index), json!({})))
        .collect();
    let replies = airlock.burst(DESK, "request_recovery", &bodies).await;
    airlock.settle().await;
    let codes: Vec<Message> =
        airlock.messages().into_iter().filter(|message| code_in(&message.body).is_some()).collect();
    assert_eq!(codes.len(), 1, "parallel cases each got a code: {codes:?}");
    let case_id = codes[0].case_id.clone();
    assert!(replies.iter().any(|reply| reply["case_id"] == case_id.as_str()));

    let wrong = wrong_code(code_in(&codes[0].body).as_deref().unwrap());
    let guesses: Vec<Value> = (0..16)
        .map(|index| json!({ "version": 1, "command_id": format!("guess-{index}"), "case_id": case_id, "code": wrong }))
        .collect();
    airlock.burst(PAGE, "submit_proof", &guesses).await;
    airlock.settle().await;
    assert_eq!(airlock.status(&case_id).await, "denied");
    let mut left: Vec<String> = airlock
        .timeline(&case_id)
        .into_iter()
        .filter(|entry| entry.event_type == "proof_rejected")
        .map(|entry| entry.detail)
        .collect();
    left.sort();
    assert_eq!(left.len(), 3, "more than three wrong codes were compared on one case: {left:?}");
    let expected: Vec<String> =
        (0..3).map(|count| format!("wrong code; {count} attempts left for this account")).collect();
    assert_eq!(left, expected, "parallel guesses were counted on stale facts");
    airlock.finish(&[]).await;
}

// Proves THREATS 7 while the projection lags (NATS only: there the projector is a consumer of its own, a moment behind
// the log; on the embedded store each command writes the projection itself): with the projector held back (another
// connection holds projection.db's write lock, as a slow disk or a projector catching up after a restart would), eight
// wrong codes sent one after the other are still counted exactly: the first two leave the case waiting, the third
// denies it (the per-case cap of ADR 14), the rest are refused, and the right code afterwards changes nothing. The
// count lives in the account's proof-failure ledger, written before each refusal is appended; read from the
// projection, all eight were compared and the right code then accepted.
async fn wrong_codes_are_counted_exactly_while_the_projection_lags<D: Driver>() {
    let airlock = D::start(vec![email_account("lea")]).await;
    let case_id = airlock.open(DESK, request_body("l-1", "lea", reset_password(), "locked out", json!({}))).await;
    let code = airlock.code_for(&case_id).await;
    airlock.settle().await;
    let wrong = wrong_code(&code);
    let holder = rusqlite::Connection::open(airlock.data().join("projection.db")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut outcomes = Vec::new();
    for attempt in 0..8 {
        let reply = airlock.prove(&case_id, &format!("lag-{attempt}"), wrong).await;
        let outcome = match reply["status"].as_str() {
            Some(status) => status.to_string(),
            None => error_code(&reply).to_string(),
        };
        outcomes.push(outcome);
    }
    let right = airlock.prove(&case_id, "lag-right", &code).await;
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    // One case takes three wrong codes (the per-case cap, ADR 14): the third denies it.
    let expected = ["requested", "requested", "denied"]
        .into_iter()
        .chain(std::iter::repeat_n("wrong_state", 5))
        .collect::<Vec<_>>();
    assert_eq!(outcomes, expected, "wrong codes compared while the projection lagged");
    assert_eq!(error_code(&right), "wrong_state", "the right code after five wrong ones: {right}");
    airlock.settle().await;
    assert_eq!(airlock.status(&case_id).await, "denied");
    airlock.finish(&[]).await;
}

// ---------------------------------------------------------------------------------------------------------------
// THREATS 17
// ---------------------------------------------------------------------------------------------------------------

// Proves THREATS 17 (issue 15, item 7; ADR 14): an attacker who knows the owner's account id types wrong codes on its
// own cases and floods requests for the account from its desk. Guessing stays capped (three wrong codes end a case,
// five end the comparing for the account: no more than five are ever compared), no request is denied for the flood,
// and the owner's own request, from another desk, reaches a person whose approval lets the change go ahead.
async fn an_attacker_cannot_lock_the_owner_out<D: Driver>() {
    let airlock = D::start(vec![email_account("ora")]).await;
    let attacker = "intake:chat-bot";
    let first = airlock.open(attacker, request_body("a-1", "ora", reset_password(), "it is me", json!({}))).await;
    let guess = wrong_code(&airlock.code_for(&first).await);
    let mut outcomes = Vec::new();
    for index in 0..3 {
        let reply = airlock.prove(&first, &format!("a1-{index}"), guess).await;
        outcomes.push(reply["status"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(outcomes, ["requested", "requested", "denied"], "three wrong codes end the attacker's case");
    airlock.settle().await;
    let second = airlock.open(attacker, request_body("a-2", "ora", reset_password(), "again", json!({}))).await;
    let guess = wrong_code(&airlock.code_for(&second).await);
    for index in 0..4 {
        airlock.prove(&second, &format!("a2-{index}"), guess).await;
    }
    let mut flood = Vec::new();
    for index in 0..10 {
        let body = request_body(&format!("f-{index}"), "ora", reset_password(), &rephrased(index), json!({}));
        flood.push(airlock.open(attacker, body).await);
    }
    airlock.settle().await;
    let compared: usize = [&first, &second]
        .iter()
        .map(|case_id| airlock.timeline(case_id).iter().filter(|entry| entry.event_type == "proof_rejected").count())
        .sum();
    assert_eq!(compared, 5, "guessing is capped at five wrong codes for the account");
    for case_id in &flood {
        assert_eq!(airlock.status(case_id).await, "in_review", "a flood of requests denied or stranded {case_id}");
    }

    let body = request_body("owner-1", "ora", reset_password(), "I am locked out, please help", json!({}));
    let own = airlock.open("intake:helpdesk", body).await;
    airlock.wait_for_status(&own, "in_review").await;
    assert_eq!(airlock.status(&own).await, "in_review", "the owner's request reached nobody");
    airlock.settle().await;
    let hash = airlock.case(&own).action_hash;
    let reply = airlock.review("ana", approve(&own, "ok-1", &hash)).await;
    assert_eq!(
        (&reply["accepted"], &reply["status"]),
        (&json!(true), &json!("cooling_off")),
        "a person let the owner's change go ahead: {reply}"
    );
    airlock.finish(&[]).await;
}

on_backends! {
    both: [
        rephrased_requests_are_counted_and_escalate_and_a_denial_sticks,
        a_parallel_burst_of_requests_is_counted_like_a_sequence,
        wrong_codes_are_counted_per_account_across_cases,
        parallel_cases_and_parallel_guesses_get_one_code_and_five_guesses,
        an_attacker_cannot_lock_the_owner_out,
    ],
    nats: [wrong_codes_are_counted_exactly_while_the_projection_lags],
}
