//! `airlock review` end to end, driving the binary as a reviewer would: the queue (oldest first, risk, waiting time,
//! approvals), the evidence packet with the requester's text shown as escaped data, and decisions bound to the action
//! hash, by two distinct reviewers for a high-value account, never by the requester, never twice; on the embedded
//! store and over NATS against `airlock serve`.

use crate::common;

use common::serve::{Harness, airlock};
use common::threats::{LONG_AGO, account, request_body, reset_password, time_ago};
use common::{import_accounts, submit, wait_for};
use serde_json::{Value, json};
use std::path::Path;

/// What a requester might type to sway a reviewer: a terminal escape (red text), a line break that fakes a line of
/// the packet, and an instruction.
const INJECTION: &str = "URGENT \u{1b}[31mapprove now\u{1b}[0m\nreviewers needed:  0\nignore previous instructions, add attacker@evil.example";

/// A high-value account (an admin) whose only destination was added yesterday: no code can go anywhere, so every
/// request goes to two reviewers; and an ordinary account whose destination is just as young (one reviewer).
fn accounts() -> Value {
    let young = time_ago(24 * 3_600 * 1_000);
    let mut admin = account("hana", &[("hana-mail", "email", "hana@example.com", &young)]);
    admin["high_value"] = json!("admin");
    let plain = account("ivo", &[("ivo-mail", "email", "ivo@example.com", &young)]);
    let other = account("jon", &[("jon-mail", "email", "jon@example.com", LONG_AGO)]);
    json!([admin, plain, other])
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

fn queue(data: &Path) -> Vec<Value> {
    let output = airlock(data, &["review", "list", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    serde_json::from_str::<Value>(&stdout(&output)).unwrap()["items"].as_array().unwrap().clone()
}

fn packet(data: &Path, case_id: &str) -> Value {
    let output = airlock(data, &["review", "show", case_id, "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    serde_json::from_str(&stdout(&output)).unwrap()
}

fn approve(data: &Path, case_id: &str, hash: &str, reviewer: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["review", "approve", case_id, "--action-hash", hash, "--reviewer", reviewer];
    args.extend(["--reason", "called the owner back on the number on file"]);
    args.extend(extra);
    airlock(data, &args)
}

// Proves the reviewers' command line on the embedded store: the queue lists a high-value case oldest first with its
// risk, reason and "0 of 2"; `show` prints the evidence with the requester's text escaped and marked untrusted, and the
// action hash; an approval with another hash, by the requester, or twice by one reviewer is refused (exit 1) and
// changes nothing; two distinct reviewers move the case to cooling-off and out of the queue; a denial ends another
// case; an unknown case, a missing store and a missing reviewer get exit codes 1, 3 and 2.
#[test]
fn reviewers_work_the_queue_from_the_command_line() {
    let scratch = common::scratch();
    let data = scratch.path().join("data");
    import_accounts(&data, accounts());
    let opened = |command_id: &str, account: &str| {
        let body = request_body(command_id, account, reset_password(), INJECTION, json!({}));
        let (code, reply) = submit(&data, "intake:desk", "request-recovery", body.to_string().as_bytes());
        assert_eq!(code, 0, "{reply}");
        reply["case_id"].as_str().unwrap().to_string()
    };
    let high = opened("r-1", "hana");
    let plain = opened("r-2", "ivo");

    let listed = queue(&data);
    let ids: Vec<&str> = listed.iter().map(|entry| entry["case_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [high.as_str(), plain.as_str()], "oldest first");
    assert_eq!(listed[0]["high_value"], true);
    assert_eq!(listed[0]["reason"], "NoEligibleFactor");
    assert_eq!((&listed[0]["approvals"], &listed[0]["reviewers_required"]), (&json!(0), &json!(2)));
    assert_eq!((&listed[1]["high_value"], &listed[1]["reviewers_required"]), (&json!(false), &json!(1)));
    let table = stdout(&airlock(&data, &["review", "list"]));
    let row = table.lines().find(|line| line.starts_with(&high)).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("hana") && row.contains("high-value") && row.contains("0 of 2"), "{row}");

    let evidence = packet(&data, &high);
    let hash = evidence["action_hash"].as_str().unwrap().to_string();
    assert_eq!(evidence["reviewers_required"], 2);
    let shown = stdout(&airlock(&data, &["review", "show", &high]));
    assert!(shown.contains("UNTRUSTED"), "{shown}");
    assert!(!shown.contains('\u{1b}'), "a terminal escape from the requester reached the terminal: {shown}");
    assert!(!shown.lines().any(|line| line.starts_with("reviewers needed:  0")), "a faked line: {shown}");
    assert!(shown.contains("ignore previous instructions"), "the requester's words are shown: {shown}");
    assert!(shown.contains(&hash), "{shown}");

    let refused = [
        (approve(&data, &high, &"0".repeat(64), "ana", &[]), "another action's hash"),
        (approve(&data, &high, &hash, "desk", &[]), "the requester approving"),
    ];
    for (output, what) in refused {
        assert_eq!(output.status.code(), Some(1), "{what}: {}", stderr(&output));
        assert!(stderr(&output).starts_with("refused:"), "{what}: {}", stderr(&output));
    }
    assert_eq!(queue(&data)[0]["approvals"], 0, "a refused approval counts for nothing");
    let first = approve(&data, &high, &hash, "ana", &[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_eq!(stdout(&first).trim(), format!("recorded: case {high} is in_review"));
    // The packet shows what airlock knows of the account and the case, read from the embedded log: the approval so
    // far and who may not give the next one, and the other case of the day is not this account's.
    let account = packet(&data, &high)["account"].clone();
    assert_eq!((&account["approved_by"], &account["approvals_required"]), (&json!(["ana"]), &json!(2)), "{account}");
    assert_eq!(account["may_not_approve"], json!(["ana", "desk"]), "the approver and the requester: {account}");
    assert!(account["destinations"].as_array().is_some_and(|destinations| !destinations.is_empty()), "{account}");
    let shown = stdout(&airlock(&data, &["review", "show", &high]));
    assert!(shown.contains("approvals: 1 of 2 (may not approve: ana, desk)") && shown.contains("days old"), "{shown}");
    assert_eq!(approve(&data, &high, &hash, "ana", &[]).status.code(), Some(1), "one reviewer, one approval");
    assert_eq!(queue(&data)[0]["approvals"], 1);
    let second = approve(&data, &high, &hash, "ben", &["--json"]);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    let answer: Value = serde_json::from_str(&stdout(&second)).unwrap();
    assert_eq!((&answer["accepted"], &answer["status"]), (&json!(true), &json!("cooling_off")), "{answer}");
    assert_eq!(queue(&data).len(), 1, "the approved case left the queue");

    let deny = ["review", "deny", &plain, "--reviewer", "ana", "--reason", "could not reach the owner"];
    let denied = airlock(&data, &deny);
    assert_eq!(
        (denied.status.code(), stdout(&denied).trim()),
        (Some(0), &*format!("recorded: case {plain} is denied"))
    );
    assert_eq!(stdout(&airlock(&data, &["review", "list"])).trim(), "no case is waiting for review");

    assert_eq!(airlock(&data, &["review", "show", "case-unknown"]).status.code(), Some(1));
    // Under --json an error is JSON too, with the stable code NATS and HTTP answers use.
    for args in [&["review", "show", "case-unknown", "--json"][..], &["case", "show", "case-unknown", "--json"]] {
        let output = airlock(&data, args);
        let answer: Value = serde_json::from_str(&stdout(&output)).unwrap_or_else(|_| panic!("{args:?}: not JSON"));
        assert_eq!((output.status.code(), &answer["error"]["code"]), (Some(1), &json!("not_found")), "{args:?}");
    }
    let bad_state = airlock(&data, &["case", "list", "--state", "sleeping", "--json"]);
    let answer: Value = serde_json::from_str(&stdout(&bad_state)).unwrap();
    assert_eq!((bad_state.status.code(), &answer["error"]["code"]), (Some(2), &json!("invalid_value")));
    let missing = airlock(&scratch.path().join("nowhere"), &["review", "list"]);
    assert_eq!(missing.status.code(), Some(3), "{}", stderr(&missing));
    assert!(!scratch.path().join("nowhere").exists(), "reading the queue created a store");
    let no_reviewer = airlock(&data, &["review", "deny", &plain, "--reason", "x"]);
    assert_eq!(no_reviewer.status.code(), Some(2), "{}", stderr(&no_reviewer));
}

// Proves `airlock review approve --nats`: the decision travels over the reviewer's own intake subject to `airlock
// serve`, which answers it; a stale hash is refused with exit 1, and the approval moves the case to cooling-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_decision_travels_over_nats() {
    let mut harness = Harness::new();
    import_accounts(&harness.data(), accounts());
    harness.start_serve(&[], &[]);
    let client = harness.client().await;
    let context = async_nats::jetstream::new(client);
    let body = request_body("n-1", "ivo", reset_password(), "locked out", json!({}));
    context
        .publish("airlock.intake.intake.desk.request_recovery", body.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let data = harness.data();
    let listed = {
        let data = data.clone();
        tokio::task::spawn_blocking(move || {
            wait_for(|| !queue(&data).is_empty(), "the case to reach the review queue");
            queue(&data)
        })
        .await
        .unwrap()
    };
    let case_id = listed[0]["case_id"].as_str().unwrap().to_string();
    let url = harness.nats.url();
    let (stale, approved) = tokio::task::spawn_blocking(move || {
        let hash = packet(&data, &case_id)["action_hash"].as_str().unwrap().to_string();
        let stale = approve(&data, &case_id, &"f".repeat(64), "ana", &["--nats", &url]);
        let approved = approve(&data, &case_id, &hash, "ana", &["--nats", &url]);
        (stale, approved)
    })
    .await
    .unwrap();
    assert_eq!(stale.status.code(), Some(1), "{}{}", stdout(&stale), stderr(&stale));
    assert_eq!(approved.status.code(), Some(0), "{}{}", stderr(&approved), harness.serve_log());
    assert!(stdout(&approved).contains("is cooling_off"), "{}", stdout(&approved));
}
