//! End-to-end tests that drive the `airlock` binary as a user would: the demo, the state-machine diagram, and the
//! promise that no one-time code leaves the owner's inbox (not in the output, not in the log, not in the projection).

use airlock::core::table::Table;
use std::process::Command;

fn airlock() -> Command {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
}

/// Every word of exactly eight digits in `text` (the shape of a one-time code). Digits inside a longer word, such as a
/// hex case id in a link (`case-b96156316c60a651`), are not a code.
fn eight_digit_runs(text: &str) -> Vec<String> {
    text.split(|character: char| !character.is_ascii_alphanumeric())
        .filter(|word| word.len() == 8 && word.chars().all(|character| character.is_ascii_digit()))
        .map(str::to_string)
        .collect()
}

// Proves `airlock demo` runs its three stories to the expected ends, exits 0, and leaks no delivered code: every
// code found in the outbox is absent from stdout, stderr, and the raw bytes of the log and projection files.
#[test]
fn demo_succeeds_and_leaks_no_code() {
    let data = tempfile::tempdir().unwrap();
    let output = airlock().args(["demo", "--keep", "--data-dir"]).arg(data.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("checks held"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    for story in ["Story (a)", "Story (b)", "Story (c)", "Receipt #1", "Evidence packet", "Review queue"] {
        assert!(stdout.contains(story), "missing {story:?} in:\n{stdout}");
    }

    let directory = rusqlite::Connection::open(data.path().join("directory.db")).unwrap();
    let mut statement = directory.prepare("SELECT address, body FROM outbox").unwrap();
    let messages: Vec<(String, String)> =
        statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap().map(Result::unwrap).collect();
    let codes: Vec<String> = messages.iter().flat_map(|(_, body)| eight_digit_runs(body)).collect();
    assert!(codes.len() >= 2, "the demo delivers codes to alice and bob: {codes:?}");
    assert!(
        messages.iter().all(|(address, _)| !address.contains("mailbox.example")),
        "nothing may reach the attacker's address"
    );
    let log = std::fs::read(data.path().join("log.db")).unwrap();
    let projection = std::fs::read(data.path().join("projection.db")).unwrap();
    for code in &codes {
        assert!(!stdout.contains(code.as_str()), "code {code} printed on stdout");
        assert!(!stderr.contains(code.as_str()), "code {code} printed on stderr");
        let needle = code.as_bytes();
        assert!(!log.windows(needle.len()).any(|window| window == needle), "code {code} in the event log");
        assert!(!projection.windows(needle.len()).any(|window| window == needle), "code {code} in the projection");
    }
}

// Proves the demo's timeline shows the refused intake attempt and the denial, as a reviewer would read them.
#[test]
fn demo_timeline_records_the_refused_probe() {
    let output = airlock().arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("refused submit_proof from intake:support-bot"), "{stdout}");
    assert!(stdout.contains("denied: too many wrong codes for this account"), "{stdout}");
    assert!(stdout.contains("execution_confirmed"), "{stdout}");
}

// Proves `airlock fsm` draws every transition of the table in both formats.
#[test]
fn fsm_draws_every_transition() {
    let table = Table::embedded();
    let mermaid = airlock().args(["fsm", "--format", "mermaid"]).output().unwrap();
    let dot = airlock().args(["fsm", "--format", "dot"]).output().unwrap();
    assert!(mermaid.status.success() && dot.status.success());
    let mermaid = String::from_utf8(mermaid.stdout).unwrap();
    let dot = String::from_utf8(dot.stdout).unwrap();
    assert!(mermaid.starts_with("stateDiagram-v2"));
    assert!(dot.starts_with("digraph recovery"));
    for edge in table.edges() {
        let from = if edge.from == table.initial { "[*]".to_string() } else { edge.from.clone() };
        assert!(mermaid.contains(&format!("{from} --> {}: {}", edge.to, edge.on)), "mermaid lacks {edge:?}");
        assert!(dot.contains(&format!("{} -> {} [label=\"{}\"]", edge.from, edge.to, edge.on)), "dot lacks {edge:?}");
    }
}

// Proves a usage error exits with code 2 and says what is wrong.
#[test]
fn unknown_format_is_a_usage_error() {
    let output = airlock().args(["fsm", "--format", "svg"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("svg"));
}
