//! The operator's commands on an embedded store, driven through the binary: the outbox shows what was sent with every
//! one-time code masked, and the kill switch halts, refuses to halt twice, records who and why, and resumes.

use serde_json::json;
use std::process::Command;

fn airlock(data: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_airlock")).args(args).env("AIRLOCK_DATA_DIR", data).output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code().unwrap(), text(&output.stdout), text(&output.stderr))
}

/// A store with one account and one open case, so that one code has been sent.
fn store_with_a_sent_code() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    let accounts = json!({ "version": 1, "accounts": [{
        "account_id": "lena",
        "destinations": [{ "id": "lena-email", "kind": "email", "address": "lena@example.com",
                           "trusted_since": "2024-01-01T00:00:00Z" }]
    }]});
    let file = data.path().join("accounts.json");
    std::fs::write(&file, accounts.to_string()).unwrap();
    assert_eq!(airlock(data.path(), &["directory", "import", file.to_str().unwrap()]).0, 0);
    let request = json!({ "version": 1, "command_id": "c1", "account_id": "lena",
                          "action": { "type": "reset_password" }, "summary": "hi", "signals": {} });
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["submit", "--actor", "intake:desk", "--command", "request-recovery"])
        .env("AIRLOCK_DATA_DIR", data.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), request.to_string().as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    data
}

// Proves the outbox lists the message sent to the pre-existing destination, with its code masked in both the table
// and the JSON output (the code itself is read from the outbox table to prove it is there and is not printed).
#[test]
fn outbox_lists_messages_with_codes_masked() {
    let data = store_with_a_sent_code();
    let connection = rusqlite::Connection::open(data.path().join("directory.db")).unwrap();
    let body: String = connection.query_row("SELECT body FROM outbox", [], |row| row.get(0)).unwrap();
    let code: String = body
        .split_whitespace()
        .find(|word| word.len() == 8 && word.bytes().all(|b| b.is_ascii_digit()))
        .unwrap()
        .into();
    let (status, table, _) = airlock(data.path(), &["outbox"]);
    assert_eq!(status, 0);
    assert!(table.contains("lena@example.com") && table.contains("[code]") && table.contains("1 messages"), "{table}");
    assert!(!table.contains(&code));
    let (_, listing, _) = airlock(data.path(), &["outbox", "--json", "--to", "lena@example.com"]);
    let rows: serde_json::Value = serde_json::from_str(&listing).unwrap();
    assert_eq!((rows["items"].as_array().unwrap().len(), rows["more"].clone()), (1, serde_json::json!(false)));
    assert!(!listing.contains(&code));
    let (_, nobody, _) = airlock(data.path(), &["outbox", "--json", "--to", "nobody@example.com"]);
    assert_eq!(nobody.trim(), r#"{"items":[],"more":false}"#);
}

// Proves the kill switch from the command line: halt, a refused second halt, resume, a refused second resume, and a
// reason holding a code refused without being recorded.
#[test]
fn halt_and_resume_are_explicit_and_recorded() {
    let data = store_with_a_sent_code();
    let (status, stdout, _) = airlock(data.path(), &["halt", "--reason", "incident 42", "--operator", "sam"]);
    assert_eq!(status, 0, "{stdout}");
    assert!(stdout.contains("halted"));
    let (status, _, stderr) = airlock(data.path(), &["halt", "--reason", "again"]);
    assert_eq!(status, 1);
    assert!(stderr.contains("already halted"), "{stderr}");
    let (status, _, stderr) = airlock(data.path(), &["resume", "--reason", "code 12345678 from the caller"]);
    assert_eq!(status, 1);
    assert!(stderr.contains("verification code"), "{stderr}");
    let (status, stdout, _) = airlock(data.path(), &["resume", "--reason", "incident 42 closed", "--operator", "sam"]);
    assert_eq!(status, 0);
    assert!(stdout.contains("resumed"));
    let (status, _, stderr) = airlock(data.path(), &["resume", "--reason", "again"]);
    assert_eq!((status, stderr.contains("not halted")), (1, true), "{stderr}");
    let projection = rusqlite::Connection::open(data.path().join("projection.db")).unwrap();
    let (halted, reason, version): (bool, String, i64) = projection
        .query_row("SELECT halted, reason, version FROM control", [], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap();
    assert_eq!((halted, reason.as_str(), version), (false, "incident 42 closed", 2));
    let log = std::fs::read(data.path().join("log.db")).unwrap();
    assert!(!log.windows(8).any(|window| window == b"12345678"), "a refused reason was not stored");
}

// Proves a command submitted to an embedded store is decided on a projection brought up to the log first (ADR 30: a
// power loss can take the projection's last commits back; here its file is lost altogether): a request sent after the
// kill switch was pulled records `halted` among its decision's facts. Failed before `submit` caught up, with the
// fact recorded as false.
#[test]
fn a_submitted_command_is_decided_on_a_projection_caught_up_with_the_log() {
    let data = store_with_a_sent_code();
    let (code, _, stderr) = airlock(data.path(), &["halt", "--reason", "incident 9", "--operator", "sam"]);
    assert_eq!(code, 0, "{stderr}");
    for file in ["projection.db", "projection.db-wal", "projection.db-shm"] {
        let _ = std::fs::remove_file(data.path().join(file));
    }
    let request = json!({ "version": 1, "command_id": "c2", "account_id": "lena",
                          "action": { "type": "reset_password" }, "summary": "hi again", "signals": {} });
    let file = data.path().join("request.json");
    std::fs::write(&file, request.to_string()).unwrap();
    let (code, reply, stderr) = airlock(
        data.path(),
        &["submit", "--actor", "intake:desk", "--command", "request-recovery", file.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{reply} {stderr}");
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    let case = reply["case_id"].as_str().expect("the reply names the case");
    let (code, history, stderr) = airlock(data.path(), &["case", "history", case, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(history.contains("\"halted\":true"), "the decision did not see the kill switch: {history}");
    assert!(!history.contains("\"halted\":false"), "{history}");
}
