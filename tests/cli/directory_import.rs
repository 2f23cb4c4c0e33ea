//! `airlock directory import`, driven as an operator would: a good file imports every account; a bad one names the
//! line or the field and imports nothing, not even the accounts before the bad one.

use serde_json::{Value, json};
use std::process::Command;

fn account(id: &str, destination: &str) -> Value {
    json!({
        "account_id": id,
        "high_value": "finance",
        "totp_enrolled_since": "2025-01-31T09:00:00Z",
        "risk_flags": ["sim_swap_reported"],
        "destinations": [
            { "id": destination, "kind": "email", "address": format!("{id}@example.com"), "trusted_since": "2024-05-01T00:00:00Z" },
            { "id": format!("{destination}-phone"), "kind": "phone", "address": "+15550100123", "trusted_since": "2024-06-01T00:00:00Z", "revoked": true }
        ],
        "sessions_opened_at": ["2026-11-20T08:00:00Z"]
    })
}

fn import(data: &std::path::Path, file: &Value) -> (i32, String, String) {
    let path = data.join("import.json");
    std::fs::write(&path, serde_json::to_string_pretty(file).unwrap()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["directory", "import"])
        .arg(&path)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code().unwrap(), text(&output.stdout), text(&output.stderr))
}

fn accounts(data: &std::path::Path) -> Vec<String> {
    let path = data.join("directory.db");
    if !path.exists() {
        return Vec::new();
    }
    let connection = rusqlite::Connection::open(path).unwrap();
    let mut statement = connection.prepare("SELECT account_id FROM accounts ORDER BY account_id").unwrap();
    statement.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect()
}

// Proves a valid file imports every account with its destinations, and the snapshot reads them back.
#[test]
fn a_valid_file_imports_every_account() {
    let data = tempfile::tempdir().unwrap();
    let file = json!({ "version": 1, "accounts": [account("hana", "hana-email"), account("ivan", "ivan-email")] });
    let (code, stdout, stderr) = import(data.path(), &file);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("imported 2 accounts"));
    assert_eq!(accounts(data.path()), ["hana", "ivan"]);
    let directory = airlock::directory::embedded::EmbeddedDirectory::open(&data.path().join("directory.db")).unwrap();
    let snapshot = directory.snapshot(&airlock::core::ids::AccountId::new("hana")).unwrap();
    assert!(snapshot.is_high_value());
    assert_eq!(snapshot.destinations.len(), 2);
    assert!(snapshot.destinations.iter().any(|destination| destination.revoked));
}

// Proves malformed files are refused with the line (JSON errors) or the field path (values), and that nothing of a
// refused file is imported, not even the valid accounts before the bad one.
#[test]
fn a_bad_file_names_the_place_and_imports_nothing() {
    let data = tempfile::tempdir().unwrap();
    let mut unknown = account("kim", "kim-email");
    unknown["favourite_colour"] = json!("blue");
    let (code, _, stderr) =
        import(data.path(), &json!({ "version": 1, "accounts": [account("jon", "jon-email"), unknown] }));
    assert_eq!(code, 1);
    assert!(stderr.contains("line ") && stderr.contains("favourite_colour"), "{stderr}");
    assert!(stderr.contains("nothing was imported"));

    let mut bad_time = account("kim", "kim-email");
    bad_time["destinations"][0]["trusted_since"] = json!("last tuesday");
    let (code, _, stderr) =
        import(data.path(), &json!({ "version": 1, "accounts": [account("jon", "jon-email"), bad_time] }));
    assert_eq!(code, 1);
    assert!(stderr.contains("accounts[1].destinations[0].trusted_since"), "{stderr}");

    let mut bad_phone = account("kim", "kim-email");
    bad_phone["destinations"][1]["address"] = json!("call me maybe");
    let (_, _, stderr) = import(data.path(), &json!({ "version": 1, "accounts": [bad_phone] }));
    assert!(stderr.contains("accounts[0].destinations[1].address"), "{stderr}");

    let (_, _, stderr) =
        import(data.path(), &json!({ "version": 1, "accounts": [account("jon", "same"), account("kim", "same")] }));
    assert!(stderr.contains("accounts[1].destinations[0].id") && stderr.contains("twice"), "{stderr}");

    let (_, _, stderr) = import(data.path(), &json!({ "version": 2, "accounts": [] }));
    assert!(stderr.contains("version"), "{stderr}");
    assert!(accounts(data.path()).is_empty(), "nothing of any refused file was imported");
}
