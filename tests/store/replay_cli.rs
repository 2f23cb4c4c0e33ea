//! `airlock replay` end to end, driving the binary as an operator would on the embedded store: rebuilding the
//! projection and swapping it in (never under a running `airlock serve`), `--verify` catching a tampered projection,
//! a tampered decision and a decision whose policies are not loaded, and `--as-of` showing what airlock knew at an
//! earlier moment, kept with `--into` for `airlock case list`.

use crate::common;

use airlock::core::event::EventBody;
use airlock::core::ids::ChallengeId;
use airlock::log::envelope::{Decoded, decode};
use common::log_tamper::{rewrite_envelopes, rewrite_event};
use common::serve::airlock;
use common::threats::{LONG_AGO, account, add_email, request_body, reset_password, time_ago, wrong_code};
use common::{code_for, import_accounts, submit, wait_for};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// A store with three cases: jon's proven and cooling off, ivo's in review, kim's waiting for a code.
fn store_with_cases(data: &Path) -> Vec<String> {
    let young = time_ago(24 * 3_600 * 1_000);
    import_accounts(
        data,
        json!([
            account("jon", &[("jon-mail", "email", "jon@example.com", LONG_AGO)]),
            account("ivo", &[("ivo-mail", "email", "ivo@example.com", &young)]),
            account("kim", &[("kim-mail", "email", "kim@example.com", LONG_AGO)]),
        ]),
    );
    let mut cases = Vec::new();
    for (index, (account, action)) in
        [("jon", reset_password()), ("ivo", add_email("new@example.net")), ("kim", reset_password())]
            .into_iter()
            .enumerate()
    {
        let body = request_body(&format!("r-{index}"), account, action, "locked out", json!({}));
        let (code, reply) = submit(data, "intake:desk", "request-recovery", body.to_string().as_bytes());
        assert_eq!(code, 0, "{reply}");
        cases.push(reply["case_id"].as_str().unwrap().to_string());
    }
    let proof =
        json!({ "version": 1, "command_id": "r-proof", "case_id": cases[0], "code": code_for(data, &cases[0]) });
    let (code, reply) = submit(data, "owner:page", "submit-proof", proof.to_string().as_bytes());
    assert_eq!((code, &reply["status"]), (0, &json!("cooling_off")), "{reply}");
    cases
}

/// `airlock replay ARGS --json`: the exit code and the report.
fn replay(data: &Path, args: &[&str]) -> (i32, Value, String) {
    let mut all = vec!["replay"];
    all.extend_from_slice(args);
    all.push("--json");
    let output = airlock(data, &all);
    let report = serde_json::from_str(&stdout(&output)).unwrap_or(Value::Null);
    (output.status.code().unwrap(), report, stderr(&output))
}

fn status_in_projection(path: &Path, case_id: &str) -> String {
    let connection = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    connection.query_row("SELECT status FROM cases WHERE case_id = ?1", [case_id], |row| row.get(0)).unwrap()
}

// Proves the rebuild and swap: a hand-edited projection is caught by --verify (exit 1, the row named) and replaced
// by `replay` (exit 0, with events/s), which keeps the edited file as projection.db.previous and leaves a projection
// that verifies clean and that the other commands read. A data directory without a log is exit 3 and gets nothing.
#[test]
fn replay_rebuilds_the_projection_and_swaps_it_in() {
    let scratch = common::scratch();
    let data = scratch.path().join("data");
    let cases = store_with_cases(&data);
    let (code, report, error) = replay(&data, &["--verify"]);
    assert_eq!(code, 0, "{error} {report}");
    assert_eq!(report["clean"], true, "{report}");
    assert_eq!(report["decisions"]["differing"], json!([]), "{report}");
    assert!(report["decisions"]["same"].as_u64().unwrap() >= 4, "intake decisions and one authorization: {report}");

    let live = data.join("projection.db");
    let connection = rusqlite::Connection::open(&live).unwrap();
    connection.execute("UPDATE cases SET status = 'executed' WHERE case_id = ?1", [&cases[1]]).unwrap();
    drop(connection);
    let (code, report, _) = replay(&data, &["--verify"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        report["projection"]["differences"],
        json!([{ "table": "cases", "key": format!("{:?}", cases[1]), "kind": "altered" }])
    );
    let text = airlock(&data, &["replay", "--verify"]);
    assert_eq!(text.status.code(), Some(1));
    assert!(stdout(&text).contains("replay verification FAILED"), "{}", stdout(&text));

    let (code, report, error) = replay(&data, &[]);
    assert_eq!(code, 0, "{error}");
    assert!(report["events"].as_u64().unwrap() >= 8, "{report}");
    assert!(report["events_per_second"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(status_in_projection(&live, &cases[1]), "in_review", "the rebuild is what the log says");
    let previous = data.join("projection.db.previous");
    assert_eq!(status_in_projection(&previous, &cases[1]), "executed", "the replaced file is kept, as it was");
    assert!(!data.join("projection.db.replay").exists());
    assert_eq!(replay(&data, &["--verify"]).0, 0);
    let shown = airlock(&data, &["case", "show", &cases[0], "--json"]);
    assert_eq!(shown.status.code(), Some(0), "{}", stderr(&shown));
    let text = stdout(&airlock(&data, &["replay"]));
    assert!(text.starts_with("replayed ") && text.contains("events/s; swapped in"), "{text}");

    let nowhere = scratch.path().join("nowhere");
    let (code, _, error) = replay(&nowhere, &[]);
    assert_eq!(code, 3, "{error}");
    assert!(error.contains("no event log"), "{error}");
    assert!(!nowhere.exists());
}

/// `airlock serve` on the embedded store, its stderr in `log`; killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// Proves that replay never swaps a projection a running process writes to: while `airlock serve` has the store open,
// `replay` exits 3 naming the lock and changes nothing, `replay --verify` (which only reads) still runs; once serve
// has stopped, replay swaps.
#[test]
fn replay_refuses_to_swap_under_a_running_serve() {
    let scratch = common::scratch();
    let data = scratch.path().join("data");
    let cases = store_with_cases(&data);
    let log = scratch.path().join("serve.log");
    let child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["serve", "--tick", "200ms", "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let serve = Serve(child);
    wait_for(|| std::fs::read_to_string(&log).unwrap_or_default().contains("airlock serving"), "serve to start");

    let (code, _, error) = replay(&data, &[]);
    assert_eq!(code, 3, "{error}");
    assert!(error.contains("open in another airlock process"), "{error}");
    assert!(!data.join("projection.db.previous").exists(), "nothing was swapped");
    let (code, report, error) = replay(&data, &["--verify"]);
    assert_eq!(code, 0, "{error} {report}");
    drop(serve);

    let (code, _, error) = replay(&data, &[]);
    assert_eq!(code, 0, "{error}");
    assert_eq!(status_in_projection(&data.join("projection.db"), &cases[0]), "cooling_off");
}

// Proves --verify on the decisions (THREATS 15): a recorded decision whose facts were changed in the log no longer
// follows from them, and --verify names the case and both decisions (exit 1); a decision recorded under a policy
// version that is not loaded is reported as not verified (exit 1) until --policies loads the folder of that version.
#[test]
fn replay_verify_takes_every_decision_again() {
    let scratch = common::scratch();
    let data = scratch.path().join("data");
    let cases = store_with_cases(&data);
    rewrite_event(&data, &cases[2], "recovery_requested", |body| {
        if let EventBody::RecoveryRequested { intake_decision, .. } = body {
            intake_decision.facts.velocity.account_requests_24h = 12;
        }
    });
    let (code, report, _) = replay(&data, &["--verify"]);
    assert_eq!(code, 1, "{report}");
    let differing = report["decisions"]["differing"].as_array().unwrap();
    assert_eq!(differing.len(), 1, "{report}");
    assert_eq!((&differing[0]["case_id"], &differing[0]["case_sequence"]), (&json!(cases[2]), &json!(1)));
    assert_eq!(
        (&differing[0]["recorded"]["outcome"], &differing[0]["retaken"]["outcome"]),
        (&json!("Auto"), &json!("Review"))
    );
    let text = stdout(&airlock(&data, &["replay", "--verify"]));
    assert!(text.contains(&format!("DECISION DIFFERS: case {}", cases[2])), "{text}");

    // Policies of another version: the shipped ones with a comment added (the version is a hash of the text).
    let folder = scratch.path().join("policies-v2");
    std::fs::create_dir_all(&folder).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    std::fs::copy(shipped.join("airlock.cedarschema"), folder.join("airlock.cedarschema")).unwrap();
    let text = std::fs::read_to_string(shipped.join("default.cedar")).unwrap();
    std::fs::write(folder.join("default.cedar"), format!("// revised\n{text}")).unwrap();
    let version = airlock::cli::policy::load_dir(&folder).unwrap().version().to_string();
    let other = scratch.path().join("other");
    let cases = store_with_cases(&other);
    rewrite_event(&other, &cases[1], "recovery_requested", |body| {
        if let EventBody::RecoveryRequested { intake_decision, .. } = body {
            intake_decision.policy_version = version.clone();
        }
    });
    std::fs::remove_file(other.join("projection.db")).unwrap();
    assert_eq!(replay(&other, &[]).0, 0, "the projection is rebuilt from the log as it now is");
    let (code, report, _) = replay(&other, &["--verify"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["decisions"]["not_retaken"], json!({ version.clone(): 1 }), "{report}");
    assert_eq!(report["projection"]["differences"], json!([]), "{report}");
    let text = stdout(&airlock(&other, &["replay", "--verify"]));
    assert!(text.contains(&format!("NOT VERIFIED: 1 decision(s) recorded under policy version {version}")), "{text}");
    let (code, report, error) = replay(&other, &["--verify", "--policies", folder.to_str().unwrap()]);
    assert_eq!(code, 0, "{error} {report}");
    assert_eq!(report["decisions"]["not_retaken"], json!({}));
}

// Proves --as-of: what airlock knew at a moment between two requests is the first case only, in the state it was in
// then; a span before now ("0s") is everything; --into keeps that moment's projection for `airlock case list` and
// refuses a directory that already holds one (exit 2); the live projection is untouched; a moment that means nothing
// is exit 2.
#[test]
fn replay_as_of_shows_what_airlock_knew_then() {
    let scratch = common::scratch();
    let data = scratch.path().join("data");
    import_accounts(&data, json!([account("jon", &[("jon-mail", "email", "jon@example.com", LONG_AGO)])]));
    let open = |command_id: &str, action: Value| {
        let body = request_body(command_id, "jon", action, "locked out", json!({}));
        let (code, reply) = submit(&data, "intake:desk", "request-recovery", body.to_string().as_bytes());
        assert_eq!(code, 0, "{reply}");
        reply["case_id"].as_str().unwrap().to_string()
    };
    let first = open("a-1", reset_password());
    // A moment after the first request and before the second (events are timed to the millisecond).
    let moment = std::time::SystemTime::now();
    common::wait_for(|| std::time::SystemTime::now() > moment, "the clock to pass the first request");
    let between = humantime::format_rfc3339_millis(moment).to_string();
    let second_opens = moment + std::time::Duration::from_millis(1);
    common::wait_for(|| std::time::SystemTime::now() > second_opens, "the clock to pass the moment between");
    let second = open("a-2", add_email("new@example.net"));

    let (code, report, error) = replay(&data, &["--as-of", &between]);
    assert_eq!(code, 0, "{error}");
    assert_eq!(report["states"], json!({ "requested": 1 }), "{report}");
    let listed: Vec<&str> =
        report["cases"].as_array().unwrap().iter().map(|case| case["case_id"].as_str().unwrap()).collect();
    assert_eq!(listed, [first.as_str()]);
    let (_, now, _) = replay(&data, &["--as-of", "0s"]);
    // The second case got no code while the first's was out, and waits for people (ADR 14).
    assert_eq!(now["states"], json!({ "in_review": 1, "requested": 1 }), "{now}");

    let kept = scratch.path().join("then");
    let (code, report, error) = replay(&data, &["--as-of", &between, "--into", kept.to_str().unwrap()]);
    assert_eq!(code, 0, "{error}");
    assert_eq!(report["kept_in"], kept.to_str().unwrap());
    let then = stdout(&airlock(&kept, &["case", "list"]));
    assert!(then.contains(&first) && !then.contains(&second), "{then}");
    assert_eq!(airlock(&kept, &["case", "show", &second]).status.code(), Some(1));
    let (code, _, error) = replay(&data, &["--as-of", &between, "--into", kept.to_str().unwrap()]);
    assert_eq!(code, 2, "{error}");
    assert_eq!(
        status_in_projection(&data.join("projection.db"), &second),
        "in_review",
        "the live projection is untouched"
    );
    assert!(!data.join("projection.db.previous").exists());
    let (code, _, error) = replay(&data, &["--as-of", "the day before"]);
    assert_eq!(code, 2, "{error}");
}

// Proves that old event versions replay through the upcasters: a wrong code recorded as a version 1 `proof_rejected`
// (before ADR 11) replays, verifies clean against a projection built from it, and shows in the case's history; an
// event of a version this airlock does not know stops the replay loudly (exit 3, naming it) and nothing is swapped.
#[test]
fn replay_reads_old_event_versions_through_upcasters() {
    let scratch = common::scratch();
    let data = scratch.path().join("data");
    let cases = store_with_cases(&data);
    let guess = wrong_code(&code_for(&data, &cases[2]));
    let wrong = json!({ "version": 1, "command_id": "r-wrong", "case_id": cases[2], "code": guess });
    let (code, reply) = submit(&data, "owner:page", "submit-proof", wrong.to_string().as_bytes());
    assert_eq!((code, &reply["status"]), (0, &json!("requested")), "a wrong code is recorded: {reply}");
    rewrite_envelopes(&data, &cases[2], "proof_rejected", |envelope| {
        assert_eq!(envelope.version, 2, "today's version");
        let Ok(Decoded::Case { event, .. }) = decode(&postcard::to_stdvec(&*envelope).unwrap()) else { panic!() };
        let EventBody::ProofRejected { challenge_id, attempts_left, .. } = event.body else { panic!() };
        // Version 1's bytes: the variant's position, then the two fields it had.
        envelope.version = 1;
        envelope.payload =
            postcard::to_stdvec(&(3u32, ChallengeId::new(challenge_id.as_str()), attempts_left)).unwrap();
    });

    let (code, report, error) = replay(&data, &["--verify"]);
    assert_eq!(code, 0, "{error} {report}");
    let (code, _, error) = replay(&data, &[]);
    assert_eq!(code, 0, "{error}");
    let history = airlock(&data, &["case", "history", &cases[2], "--json"]);
    assert_eq!(history.status.code(), Some(0), "{}", stderr(&history));
    let history: Value = serde_json::from_str(&stdout(&history)).unwrap();
    let events: Vec<&str> =
        history["events"].as_array().unwrap().iter().map(|event| event["event"].as_str().unwrap()).collect();
    assert!(events.contains(&"proof_rejected"), "{events:?}");

    rewrite_envelopes(&data, &cases[2], "proof_rejected", |envelope| envelope.version = 9);
    let (code, _, error) = replay(&data, &[]);
    assert_eq!(code, 3, "{error}");
    assert!(error.contains("unknown event type proof_rejected version 9"), "{error}");
    assert!(!data.join("projection.db.replay").exists(), "the half-built file is thrown away");
    assert_eq!(status_in_projection(&data.join("projection.db"), &cases[2]), "requested");
}
