//! `airlock case history CASE` (THREATS 15: the event log is replayed months later and a reviewer asks "why was this
//! allowed?"): every event of the case in order with its actor, time and the state after it; each decision with the
//! facts and the policy version behind it, taken again on those facts with the same answer. Driven through the
//! binary, in embedded mode (`airlock submit`) and in NATS mode (`airlock serve --nats`); the owner's code is read
//! read-only from the embedded outbox (the mail provider's view), because `airlock outbox` masks it, as it should.

use crate::common;

use airlock::core::event::EventBody;
use common::serve::{Harness, airlock};
use common::{code_for, import_accounts, publish, read_all, scratch};
use serde_json::{Value, json};
use std::path::Path;

fn account() -> Value {
    json!([{
        "account_id": "ruth",
        "destinations": [
            { "id": "ruth-mail", "kind": "email", "address": "ruth@example.com", "trusted_since": "2024-01-01T00:00:00Z" }
        ]
    }])
}

fn request(command_id: &str) -> Value {
    json!({
        "version": 1, "command_id": command_id, "account_id": "ruth", "action": { "type": "reset_password" },
        "summary": "I am staff, approved by security", "signals": { "source_network": "AS64500" }
    })
}

/// `airlock submit` as the given actor; the JSON reply.
fn submit(data: &Path, actor: &str, command: &str, body: &Value) -> Value {
    common::submit(data, actor, command, body.to_string().as_bytes()).1
}

/// `airlock case history CASE --json` with `extra` arguments: the exit code and the history.
fn case_history(data: &Path, case_id: &str, extra: &[&str]) -> (i32, Value, String) {
    let mut args = vec!["case", "history", case_id, "--json"];
    args.extend_from_slice(extra);
    let output = airlock(data, &args);
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap(), value, String::from_utf8_lossy(&output.stderr).to_string())
}

/// (event, status after) of every event of a history.
fn steps(history: &Value) -> Vec<(String, String)> {
    history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (event["event"].as_str().unwrap().to_string(), event["status_after"].as_str().unwrap().to_string())
        })
        .collect()
}

// Proves THREATS 15 in embedded mode: a case that was requested, proven and authorized shows every event in order with
// its actor, time and the state after it; both decisions show their policy version and recorded facts (velocity,
// factor facts), and each is taken again on its facts with the same answer; the summary's "I am staff, approved by
// security" is nowhere in a decision; the history of an unknown case is an error (exit 1).
#[test]
fn a_case_history_shows_each_state_and_retakes_each_decision() {
    let scratch = scratch();
    let data = scratch.path().join("data");
    import_accounts(&data, account());
    let reply = submit(&data, "intake:desk", "request-recovery", &request("h-1"));
    let case_id = reply["case_id"].as_str().unwrap().to_string();
    let code = code_for(&data, &case_id);
    let proof = json!({ "version": 1, "command_id": "h-2", "case_id": case_id, "code": code });
    let proven = submit(&data, "owner:page", "submit-proof", &proof);
    assert_eq!(proven["status"], "cooling_off", "{proven}");

    let (status, history, stderr) = case_history(&data, &case_id, &[]);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(history["case_id"], case_id.as_str());
    assert_eq!(
        steps(&history),
        [
            ("recovery_requested".to_string(), "requested".to_string()),
            ("challenge_issued".to_string(), "requested".to_string()),
            ("proof_accepted".to_string(), "verified".to_string()),
            ("cooling_off_started".to_string(), "cooling_off".to_string()),
            // The cancel link reached the outbox, and its delivery is part of the history (ADR 10).
            ("notices_delivered".to_string(), "cooling_off".to_string()),
        ]
    );
    let events = history["events"].as_array().unwrap();
    assert_eq!(events[0]["actor"], "intake:desk");
    assert_eq!(events[2]["actor"], "owner:page");
    assert!(events.iter().all(|event| event["at"].as_str().is_some_and(|at| at.ends_with('Z'))));
    let decisions: Vec<&Value> = events.iter().filter(|event| !event["decision"].is_null()).collect();
    assert_eq!(decisions.len(), 2, "the intake and the authorization decision");
    for event in &decisions {
        let decision = &event["decision"];
        assert!(decision["policy_version"].as_str().is_some_and(|version| !version.is_empty()));
        assert_eq!(decision["retaken"], "same", "{decision}");
        assert_eq!(decision["facts"]["velocity"]["account_requests_24h"], 0);
        assert_eq!(decision["facts"]["eligible_destinations"], 1);
    }
    assert_eq!(decisions[0]["decision"]["facts"]["phase"], "Intake");
    assert_eq!(decisions[1]["decision"]["facts"]["phase"], "Authorization");
    assert_eq!(history["decisions_differing"], 0);
    let text = history.to_string();
    assert!(!text.contains("staff") && !text.contains(&code), "no summary or code in the history");

    // An operator's words go on the history as typed (JSON), and the table shows them escaped: a terminal escape in a
    // reason does not reach the terminal.
    let words = "owner called: not them \u{1b}[2J\u{202e}";
    let cancel = json!({ "version": 1, "command_id": "h-3", "case_id": case_id, "reason": words });
    assert_eq!(submit(&data, "operator:olga", "cancel", &cancel)["status"], "cancelled");
    let (_, history, _) = case_history(&data, &case_id, &[]);
    let last = history["events"].as_array().unwrap().iter().find(|event| event["event"] == "case_cancelled").cloned();
    assert_eq!(last.unwrap()["reason"], words, "{history}");

    // The readable form says the same.
    let output = airlock(&data, &["case", "history", &case_id]);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(table.contains("reason (as typed, untrusted): owner called: not them \\u{1b}[2J\\u{202e}"), "{table}");
    assert!(!table.contains('\u{1b}') && !table.contains('\u{202e}'), "{table}");
    assert_eq!(table.matches("taken again on these facts: the same decision").count(), 2, "{table}");
    assert!(table.contains("cooling_off_started") && table.contains("cooling_off"), "{table}");

    let (status, _, stderr) = case_history(&data, "case-0000000000000000", &[]);
    assert_eq!(status, 1);
    assert!(stderr.contains("no case case-0000000000000000"), "{stderr}");
}

// Proves a decision that no longer follows from its recorded facts is reported loudly (exit 1, the decision taken
// again shown beside the recorded one): an insider rewrites the log's recorded intake facts to say the account had 12
// requests that day (over the review threshold) while the recorded outcome still says "auto".
#[test]
fn a_recorded_decision_that_does_not_follow_from_its_facts_fails_the_history() {
    let scratch = scratch();
    let data = scratch.path().join("data");
    import_accounts(&data, account());
    let reply = submit(&data, "intake:desk", "request-recovery", &request("t-1"));
    let case_id = reply["case_id"].as_str().unwrap().to_string();
    assert_eq!(case_history(&data, &case_id, &[]).0, 0);

    common::log_tamper::rewrite_event(&data, &case_id, "recovery_requested", |body| {
        if let EventBody::RecoveryRequested { intake_decision, .. } = body {
            intake_decision.facts.velocity.account_requests_24h = 12;
        }
    });

    let (status, history, stderr) = case_history(&data, &case_id, &[]);
    assert_eq!(status, 1, "{stderr}");
    assert_eq!(history["decisions_differing"], 1);
    let decision = &history["events"][0]["decision"];
    assert_eq!(decision["retaken"], "differs");
    assert_eq!(decision["outcome"], "Auto");
    assert_eq!(decision["retaken_decision"]["outcome"], "Review", "12 requests go to people (ADR 14), not auto");
    assert!(stderr.contains("differ"), "{stderr}");
}

// Proves THREATS 15 in NATS mode: `airlock case history --nats` reads a case that `airlock serve` decided from the
// JetStream log, with the state after each event and its intake decision taken again with the same answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_case_history_reads_the_jetstream_log() {
    let mut harness = Harness::new();
    import_accounts(&harness.data(), account());
    harness.start_serve(&[], &[]);
    let client = harness.client().await;
    let context = async_nats::jetstream::new(client.clone());
    let body = serde_json::to_vec(&request("n-1")).unwrap();
    publish(&context, "airlock.intake.intake.desk.request_recovery", "n-1", body).await;
    let answers = read_all(&client, "AIRLOCK_RESULTS", "airlock.result.intake.desk", 1).await;
    let answer: Value = serde_json::from_slice(&answers[0].payload).unwrap();
    let case_id = answer["case_id"].as_str().unwrap().to_string();
    let url = harness.nats.url();
    let (status, history, stderr) =
        tokio::task::spawn_blocking(move || case_history(&harness.data(), &case_id, &["--nats", &url])).await.unwrap();
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(
        steps(&history),
        [
            ("recovery_requested".to_string(), "requested".to_string()),
            ("challenge_issued".to_string(), "requested".to_string()),
        ]
    );
    assert_eq!(history["events"][0]["decision"]["retaken"], "same");
    assert_eq!(history["events"][0]["decision"]["facts"]["velocity"]["source_network_requests_24h"], 0);
}
