//! `airlock audit verify` (THREATS 14), driven through the binary on the demo's data: clean data passes; an approval
//! hidden by editing the projection, an added row, a removed row and a rewritten receipt are each reported, and the
//! command exits 1.

use std::process::Command;

fn airlock(args: &[&str], data: &std::path::Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_airlock")).args(args).arg("--data-dir").arg(data).output().unwrap();
    (output.status.code().unwrap(), String::from_utf8_lossy(&output.stdout).into_owned())
}

// Proves the audit passes on untouched data and reports each kind of tampering with the table and the key.
#[test]
fn tampering_with_the_projection_is_detected() {
    let data = tempfile::tempdir().unwrap();
    assert_eq!(airlock(&["demo", "--keep"], data.path()).0, 0);
    let (code, clean) = airlock(&["audit", "verify"], data.path());
    assert_eq!(code, 0, "{clean}");
    assert!(clean.contains("audit clean"));

    let projection = rusqlite::Connection::open(data.path().join("projection.db")).unwrap();
    // An insider hides how a change was authorized, invents a case, deletes a timeline row, and rewrites a receipt.
    projection
        .execute("UPDATE cases SET approvers = '[]', authorization = NULL WHERE executed_at IS NOT NULL", [])
        .unwrap();
    projection
        .execute(
            "INSERT INTO review_queue (case_id, account_id, reason, entered_at, reviewers_required, approvals)
             VALUES ('case-invented', 'mallory', 'PolicyReview', 0, 1, 0)",
            [],
        )
        .unwrap();
    projection.execute("DELETE FROM timeline WHERE event_type = 'command_refused'", []).unwrap();
    projection.execute("UPDATE receipts SET body = replace(body, 'bob', 'mallory')", []).unwrap();
    drop(projection);

    let (code, report) = airlock(&["audit", "verify", "--json"], data.path());
    assert_eq!(code, 1, "{report}");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let differences = report["differences"].as_array().unwrap();
    let has = |table: &str, kind: &str| differences.iter().any(|d| d["table"] == table && d["kind"] == kind);
    assert!(has("cases", "altered"), "{report}");
    assert!(has("review_queue", "added"), "{report}");
    assert!(has("timeline", "removed"), "{report}");
    assert!(has("receipts", "altered"), "{report}");
    assert!(
        differences.iter().any(|d| d["table"] == "review_queue" && d["key"] == "\"case-invented\""),
        "keys read as the values they are: {report}"
    );
    assert!(!report["chain_breaks"].as_array().unwrap().is_empty(), "the chain breaks too: {report}");
}
