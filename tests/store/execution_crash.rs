//! Execution is idempotent across a crash (SPEC principle 7, issue 4 item 8): `airlock serve` is made to abort
//! between applying a change to the account directory and recording its confirmation, and a restarted `airlock
//! serve` finishes the case without applying the change a second time. Driven through public interfaces only: the
//! request and the owner's proof over NATS intake subjects, case status over NATS queries, `airlock directory import`
//! and `airlock audit verify`; the owner's mailbox (the embedded outbox), the directory and the projection are read
//! from their SQLite files, read-only, because no command prints a code, a credential version or a timeline.

use crate::common;

use async_nats::jetstream;
use common::serve::Harness;
use common::{WAIT_MS, publish, read_all, wait_for};
use serde_json::{Value, json};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use std::time::{Duration, Instant};

/// The signal `std::process::abort` raises on Linux.
const SIGABRT: i32 = 6;

/// How far ahead of the system clock the restarted processes run: past the default policy's 24-hour cooling-off,
/// well inside the week after which a held cooling-off expires instead of executing.
const CLOCK_AHEAD: &str = "2days";

/// Opens one of airlock's SQLite files read-only: the test looks, and changes nothing.
fn read_only(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

/// One count from a read-only query.
fn count(path: &Path, sql: &str, parameter: &str) -> i64 {
    read_only(path).query_row(sql, [parameter], |row| row.get(0)).unwrap()
}

/// The account's password version in the embedded directory (no command prints it).
fn credential_version(data: &Path) -> i64 {
    count(&data.join("directory.db"), "SELECT credential_version FROM accounts WHERE account_id = ?1", "olga")
}

/// What the owner's mailbox (the embedded outbox) received: (subject, body), oldest first.
fn mailbox(data: &Path) -> Vec<(String, String)> {
    let connection = read_only(&data.join("directory.db"));
    let mut statement =
        connection.prepare("SELECT subject, body FROM outbox WHERE address = ?1 ORDER BY sent_at, rowid").unwrap();
    statement
        .query_map(["olga@example.com"], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The case's status as an operator sees it over NATS.
async fn status(client: &async_nats::Client, case_id: &str) -> String {
    let payload = serde_json::to_vec(&json!({ "case_id": case_id })).unwrap();
    // Right after serve (re)starts its query service may not be listening yet: no answer reads as no status yet.
    let Ok(reply) = client.request("airlock.query.operator.ops", payload.into()).await else { return String::new() };
    let answer: Value = serde_json::from_slice(&reply.payload).unwrap();
    answer["status"].as_str().unwrap_or_default().to_string()
}

async fn wait_for_status(client: &async_nats::Client, case_id: &str, wanted: &str) {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
    loop {
        let now = status(client, case_id).await;
        if now == wanted {
            return;
        }
        assert!(Instant::now() < deadline, "case {case_id} is {now}, never {wanted}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An ordinary account: one email trusted for two years, no authenticator, no flags, one open session.
fn import_directory(harness: &Harness) {
    let file = harness.scratch.path().join("accounts.json");
    let accounts = json!({ "version": 1, "accounts": [{
        "account_id": "olga",
        "destinations": [{ "id": "olga-email", "kind": "email", "address": "olga@example.com",
                           "trusted_since": "2024-05-01T00:00:00Z" }],
        "sessions_opened_at": ["2026-01-10T08:00:00Z"]
    }]});
    std::fs::write(&file, accounts.to_string()).unwrap();
    let output = harness.airlock(&["directory", "import", file.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
}

/// Opens a case as a support desk, reads the code from the owner's mailbox, and proves it as the owner; returns the
/// case id once the case is in cooling-off.
async fn request_and_prove(harness: &Harness, client: &async_nats::Client) -> String {
    let context = jetstream::new(client.clone());
    let request = json!({ "version": 1, "command_id": "forgot-1", "account_id": "olga",
                          "action": { "type": "reset_password" }, "summary": "customer forgot the password",
                          "signals": {} });
    let subject = "airlock.intake.intake.desk.request_recovery";
    publish(&context, subject, "forgot-1", serde_json::to_vec(&request).unwrap()).await;
    let answer = read_all(client, "AIRLOCK_RESULTS", "airlock.result.intake.desk", 1).await;
    let answer: Value = serde_json::from_slice(&answer[0].payload).unwrap();
    let case_id = answer["case_id"].as_str().expect("the request opened a case").to_string();

    wait_for(|| !mailbox(&harness.data()).is_empty(), "the code to reach the owner");
    let (_, body) = mailbox(&harness.data()).remove(0);
    let code = body
        .split_whitespace()
        .find(|word| word.len() == 8 && word.bytes().all(|byte| byte.is_ascii_digit()))
        .expect("the message carries the code")
        .to_string();
    let proof = json!({ "version": 1, "command_id": "proof-1", "case_id": case_id, "code": code });
    publish(&context, "airlock.intake.owner.page.submit_proof", "proof-1", serde_json::to_vec(&proof).unwrap()).await;
    let answer = read_all(client, "AIRLOCK_RESULTS", "airlock.result.owner.page", 1).await;
    let answer: Value = serde_json::from_slice(&answer[0].payload).unwrap();
    assert_eq!(answer["status"], "cooling_off", "{answer}");
    case_id
}

// Proves a crash between the directory effect and its confirmation never applies a change twice: the process aborts
// right after the password was reset; the restarted process confirms the recorded effect instead of resetting again,
// so the credential version went up by exactly one, the case ends `executed` with one confirmation and one receipt,
// the audit is clean, and the owner got each message once.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_the_effect_applies_the_change_once() {
    let mut harness = Harness::new();
    import_directory(&harness);
    assert_eq!(credential_version(&harness.data()), 1);

    harness.start_serve(&[], &[]);
    let client = harness.client().await;
    let case_id = request_and_prove(&harness, &client).await;
    assert_eq!(harness.stop_serve().code(), Some(0));

    // Two days later the cooling-off is over; the executor resets the password and the process dies at once.
    harness.start_serve(&[], &[("AIRLOCK_CLOCK_AHEAD", CLOCK_AHEAD), ("AIRLOCK_CRASH_AFTER_EFFECT", "1")]);
    let crashed = harness.wait_for_exit();
    let log = harness.serve_log();
    assert_eq!(crashed.signal(), Some(SIGABRT), "serve should have aborted: {crashed:?}\n{log}");
    assert!(log.contains(&format!("aborting after effect {case_id}/execute/1")), "{log}");
    assert_eq!(credential_version(&harness.data()), 2, "the effect was applied before the crash");
    let sent_before_restart = mailbox(&harness.data());
    assert_eq!(sent_before_restart.len(), 2, "the code and the cooling-off notice: {sent_before_restart:?}");

    harness.start_serve(&[], &[("AIRLOCK_CLOCK_AHEAD", CLOCK_AHEAD)]);
    wait_for_status(&client, &case_id, "executed").await;
    let projection = harness.data().join("projection.db");
    let receipts = "SELECT COUNT(*) FROM receipts WHERE case_id = ?1";
    wait_for(|| count(&projection, receipts, &case_id) >= 1, "the projector to record the receipt");
    assert_eq!(harness.stop_serve().code(), Some(0));

    assert_eq!(credential_version(&harness.data()), 2, "the password was reset once, not twice");
    let effects = "SELECT COUNT(*) FROM applied_effects WHERE effect_id LIKE ?1 || '/%'";
    assert_eq!(count(&harness.data().join("directory.db"), effects, &case_id), 1);
    let connection = read_only(&projection);
    let mut statement =
        connection.prepare("SELECT event_type FROM timeline WHERE case_id = ?1 ORDER BY case_sequence").unwrap();
    // Deliveries of notices (ADR 10) are left out: they may still be on their way to the projection.
    let timeline: Vec<String> = (statement.query_map([&case_id], |row| row.get(0)).unwrap())
        .map(Result::unwrap)
        .filter(|event_type: &String| event_type != "notices_delivered")
        .collect();
    assert_eq!(
        timeline,
        [
            "recovery_requested",
            "challenge_issued",
            "proof_accepted",
            "cooling_off_started",
            "execution_started",
            "execution_confirmed"
        ],
        "one execution, started once and confirmed once"
    );
    assert_eq!(count(&projection, receipts, &case_id), 1);
    let audit = harness.airlock(&["audit", "verify", "--nats", &harness.nats.url()]);
    let report = String::from_utf8_lossy(&audit.stdout);
    assert_eq!(audit.status.code(), Some(0), "the projection is what the log implies: {report}");

    let sent = mailbox(&harness.data());
    let subjects: Vec<&str> = sent.iter().map(|(subject, _)| subject.as_str()).collect();
    assert_eq!(
        subjects,
        ["Your account recovery code", "A change to your account is scheduled", "Your account was changed"],
        "each message once"
    );
}
