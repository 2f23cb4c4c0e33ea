//! `airlock rollback` through the binary (SPEC principle 9, THREATS 13): a dry run lists the cases an indicator
//! matches and changes nothing; the bulk rollback then removes exactly the destinations added from the attacker's
//! domain; a single case rolls back by id; a second rollback of the same case is refused.

use crate::common;

use airlock::clock::{Clock, ManualClock, SystemClock};
use airlock::core::account::DestinationKind;
use airlock::core::action::RecoveryAction;
use airlock::core::actor::{Actor, Role};
use airlock::core::command::{Command, CommandEnvelope};
use airlock::core::ids::{AccountId, CaseId, CommandId, UnixMs};
use airlock::core::limits::DAY_MS;
use airlock::core::signals::Signals;
use airlock::core::text::UntrustedText;
use airlock::keys::Keys;
use airlock::server::embedded;
use std::process::Command as Process;
use std::sync::Arc;

/// Three executed "add destination" cases, executed about a day ago: two to evil.example, one to good.example.
fn store() -> (tempfile::TempDir, Vec<CaseId>) {
    store_with(&[("ada", "a@evil.example"), ("ben", "b@Evil.Example"), ("cy", "c@good.example")])
}

/// Executed "add destination" cases, one per (account, new address), executed about a day ago.
fn store_with(additions: &[(&str, &str)]) -> (tempfile::TempDir, Vec<CaseId>) {
    let data = tempfile::tempdir().unwrap();
    let start = UnixMs(SystemClock.now().0 - 5 * DAY_MS);
    let clock = Arc::new(ManualClock::starting_at(start));
    let keys = Keys::load_or_create(&data.path().join("airlock.key")).unwrap();
    let store = embedded::open(data.path(), clock.clone(), keys).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut cases = Vec::new();
    for (account, new_address) in additions.iter().copied() {
        store.directory.put_account(&common::email_account(account, UnixMs(start.0 - 100 * DAY_MS))).unwrap();
        let case_id = CaseId::new(format!("case-{account}"));
        let request = Command::RequestRecovery {
            account_id: AccountId::new(account),
            action: RecoveryAction::AddDestination { kind: DestinationKind::Email, address: new_address.into() },
            summary: UntrustedText::new("summary", "add my new email", 100).unwrap(),
            signals: Signals::default(),
        };
        let envelope = CommandEnvelope {
            command_id: CommandId::new("open"),
            actor: Actor::new(Role::Intake, "desk"),
            command: request,
        };
        runtime.block_on(store.service.handle(&case_id, envelope)).unwrap();
        let body = store.outbox.messages(Some(&format!("{account}@example.com"))).unwrap().pop().unwrap().body;
        let code = body
            .split_whitespace()
            .find(|word| word.len() == 8 && word.bytes().all(|b| b.is_ascii_digit()))
            .unwrap()
            .to_string();
        runtime
            .block_on(store.service.submit_code(
                &case_id,
                CommandId::new("proof"),
                Actor::new(Role::Owner, "page"),
                &code,
                None,
            ))
            .unwrap();
        cases.push(case_id);
    }
    clock.advance(4 * DAY_MS);
    runtime.block_on(store.service.run_due()).unwrap();
    for case_id in &cases {
        assert_eq!(runtime.block_on(store.service.load(case_id)).unwrap().0.status.name(), "executed");
    }
    (data, cases)
}

fn rollback(data: &std::path::Path, args: &[&str]) -> (i32, String) {
    let output = Process::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("rollback")
        .args(args)
        .env("AIRLOCK_DATA_DIR", data)
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    )
}

fn active_destinations(data: &std::path::Path, account: &str) -> usize {
    let directory = airlock::directory::embedded::EmbeddedDirectory::open(&data.join("directory.db")).unwrap();
    let snapshot = directory.snapshot(&AccountId::new(account)).unwrap();
    snapshot.destinations.iter().filter(|destination| !destination.revoked).count()
}

// Proves a dry run lists exactly the matching cases and changes nothing, and the real run removes exactly the
// destinations added from that domain (case-insensitively), leaving the other case alone.
#[test]
fn bulk_rollback_by_destination_domain() {
    let (data, _) = store();
    let (code, output) =
        rollback(data.path(), &["--match", "destination-domain=evil.example", "--since", "48h", "--dry-run"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("case-ada") && output.contains("case-ben") && !output.contains("case-cy"), "{output}");
    assert!(output.contains("2 cases would be rolled back"));
    let (code, output) =
        rollback(data.path(), &["--match", "destination-domain=evil.example", "--since", "48h", "--dry-run", "--json"]);
    assert_eq!(code, 0, "{output}");
    let listed: serde_json::Value = serde_json::from_str(&output).unwrap_or_else(|_| panic!("not JSON: {output}"));
    let mut ids: Vec<&str> =
        listed["cases"].as_array().unwrap().iter().map(|case| case["case_id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!((ids, &listed["dry_run"]), (vec!["case-ada", "case-ben"], &serde_json::json!(true)), "{output}");
    assert_eq!(active_destinations(data.path(), "ada"), 2, "a dry run changes nothing");

    let (code, output) = rollback(data.path(), &["--match", "destination-domain=evil.example"]);
    assert_eq!(code, 2, "a real rollback needs a reason: {output}");

    let (code, output) =
        rollback(data.path(), &["--match", "destination-domain=evil.example", "--reason", "incident 42"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("2 rolled back, 0 refused"), "{output}");
    assert_eq!(active_destinations(data.path(), "ada"), 1);
    assert_eq!(active_destinations(data.path(), "ben"), 1);
    assert_eq!(active_destinations(data.path(), "cy"), 2, "the other domain was not touched");
}

// Proves one case rolls back by its id, and a second rollback of it is refused (it is no longer executed).
#[test]
fn single_case_rollback_and_a_refused_repeat() {
    let (data, _) = store();
    let (code, output) = rollback(data.path(), &["case-cy", "--reason", "owner objected"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("case-cy: rolled_back"), "{output}");
    assert_eq!(active_destinations(data.path(), "cy"), 1);
    let (code, output) = rollback(data.path(), &["case-cy", "--reason", "again"]);
    assert_eq!(code, 1);
    assert!(output.contains("refused"), "{output}");
}

// Proves (THREATS 19, issue 15 item 10) a bulk rollback by domain takes every spelling of it: letter case, a trailing
// dot, a plus-tag, a subdomain, and punycode for an internationalised domain named either way; and nothing that only
// resembles it in text (`notevil.example`, `evil.example.com`).
#[test]
fn bulk_rollback_takes_every_spelling_of_the_domain() {
    let (data, _) = store_with(&[
        ("ada", "a@mail.evil.example"),
        ("ben", "b@EVIL.example."),
        ("dee", "d+x@Evil.Example"),
        ("cy", "c@notevil.example"),
        ("fay", "f@evil.example.com"),
        ("gus", "g@bücher.example"),
    ]);
    let listed = |domain: &str| {
        let (code, output) = rollback(
            data.path(),
            &["--match", &format!("destination-domain={domain}"), "--since", "48h", "--dry-run", "--json"],
        );
        assert_eq!(code, 0, "{output}");
        let listed: serde_json::Value = serde_json::from_str(&output).unwrap_or_else(|_| panic!("not JSON: {output}"));
        let mut ids: Vec<String> = listed["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|case| case["case_id"].as_str().unwrap().to_string())
            .collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(listed("Evil.Example."), ["case-ada", "case-ben", "case-dee"]);
    assert_eq!(listed("evil.example"), ["case-ada", "case-ben", "case-dee"]);
    assert_eq!(listed("xn--bcher-kva.example"), ["case-gus"]);
    assert_eq!(listed("BÜCHER.example"), ["case-gus"]);
}
