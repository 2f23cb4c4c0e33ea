//! `airlock case show` and `airlock case list` end to end, driving the binary as an operator or a reviewer would on
//! the embedded store: a case's state, its timers (held by the kill switch), the steps each role may take next, its
//! receipts; and the list filtered by state, account, time and action, with its limit and its usage errors.

use crate::common;

use common::serve::airlock;
use common::threats::{LONG_AGO, account, add_email, request_body, reset_password, time_ago};
use common::{code_for, import_accounts, submit};
use serde_json::{Value, json};
use std::path::Path;

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// `airlock ARGS --json`, which must succeed: its JSON.
fn json_of(data: &Path, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let output = airlock(data, &args);
    assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr(&output));
    serde_json::from_str(&stdout(&output)).unwrap_or_else(|_| panic!("{args:?}: not JSON: {}", stdout(&output)))
}

/// (role, command) of each next step `case show` lists.
fn steps(view: &Value) -> Vec<(String, String)> {
    let steps = view["next_steps"].as_array().unwrap();
    steps.iter().map(|step| (step["role"].as_str().unwrap().into(), step["command"].as_str().unwrap().into())).collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(role, command)| (role.to_string(), command.to_string())).collect()
}

/// The timers `case show` lists, as (kind, held by the kill switch).
fn timers(view: &Value) -> Vec<(String, bool)> {
    let timers = view["timers"].as_array().unwrap();
    timers
        .iter()
        .map(|timer| (timer["kind"].as_str().unwrap().into(), timer["held_by_kill_switch"].as_bool().unwrap()))
        .collect()
}

/// The case ids `case list ARGS` prints, newest first, and whether it says more match.
fn listed(data: &Path, filter: &[&str]) -> (Vec<String>, bool) {
    let mut args = vec!["case", "list"];
    args.extend_from_slice(filter);
    let answer = json_of(data, &args);
    let cases = answer["items"].as_array().unwrap();
    (
        cases.iter().map(|case| case["case_id"].as_str().unwrap().to_string()).collect(),
        answer["more"].as_bool().unwrap(),
    )
}

/// jon, whose email is long trusted (a code goes there), and ivo, whose only email is a day old (people decide).
fn import_jon_and_ivo(data: &Path) {
    let young = time_ago(24 * 3_600 * 1_000);
    import_accounts(
        data,
        json!([
            account("jon", &[("jon-mail", "email", "jon@example.com", LONG_AGO)]),
            account("ivo", &[("ivo-mail", "email", "ivo@example.com", &young)]),
        ]),
    );
}

// Proves `case show` along a case's life: a requested case waits for the owner's proof and expires; once proven it
// waits in cooling-off with an execution timer, owner and operator may cancel, and the kill switch holds the timer;
// a case in review names the reviewers' commands with its action hash. The readable form says the same. An unknown
// case exits 1, a data directory without a store exits 3 and creates nothing.
#[test]
fn case_show_gives_the_state_timers_and_next_steps() {
    let scratch = common::scratch();
    let data = scratch.path().join("data");
    import_jon_and_ivo(&data);
    let open = |command_id: &str, account: &str, action: Value| {
        let body = request_body(command_id, account, action, "locked out", json!({}));
        let (code, reply) = submit(&data, "intake:desk", "request-recovery", body.to_string().as_bytes());
        assert_eq!(code, 0, "{reply}");
        reply["case_id"].as_str().unwrap().to_string()
    };
    let jon = open("c-1", "jon", reset_password());

    let requested = json_of(&data, &["case", "show", &jon]);
    assert_eq!((&requested["status"], &requested["account_id"]), (&json!("requested"), &json!("jon")));
    assert_eq!(requested["terminal"], false);
    assert_eq!(timers(&requested), [("expires".to_string(), false)]);
    assert!(requested["timers"][0]["in_ms"].as_u64().unwrap() > 0, "the deadline is ahead: {requested}");
    assert_eq!(steps(&requested), pairs(&[("owner", "submit_proof")]));
    assert_eq!(requested["receipts"], json!([]));

    let proof = json!({ "version": 1, "command_id": "c-2", "case_id": jon, "code": code_for(&data, &jon) });
    let (code, reply) = submit(&data, "owner:page", "submit-proof", proof.to_string().as_bytes());
    assert_eq!((code, &reply["status"]), (0, &json!("cooling_off")), "{reply}");
    let cooling = json_of(&data, &["case", "show", &jon]);
    assert_eq!(cooling["status"], "cooling_off");
    assert_eq!(timers(&cooling), [("executes".to_string(), false), ("expires".to_string(), false)]);
    assert_eq!(steps(&cooling), pairs(&[("owner", "cancel"), ("operator", "cancel")]));
    let shown = stdout(&airlock(&data, &["case", "show", &jon]));
    assert!(shown.starts_with(&format!("case {jon}: cooling_off\n")), "{shown}");
    assert!(shown.lines().any(|line| line.trim_start().starts_with("executes at ")), "{shown}");
    assert!(!shown.contains("held"), "{shown}");

    let halted = airlock(&data, &["halt", "--reason", "incident 7", "--operator", "sam"]);
    assert_eq!(halted.status.code(), Some(0), "{}", stderr(&halted));
    let held = json_of(&data, &["case", "show", &jon]);
    assert_eq!(timers(&held), [("executes".to_string(), true), ("expires".to_string(), false)]);
    assert!(stdout(&airlock(&data, &["case", "show", &jon])).contains("held: the kill switch is on"));

    let ivo = open("c-3", "ivo", add_email("new@example.net"));
    let review = json_of(&data, &["case", "show", &ivo]);
    assert_eq!(review["status"], "in_review");
    assert_eq!(steps(&review), pairs(&[("reviewer", "approve_review"), ("reviewer", "deny_review")]));
    let hash = review["action_hash"].as_str().unwrap();
    assert_eq!(hash.len(), 64, "{review}");
    let approve = review["next_steps"][0]["how"].as_str().unwrap();
    assert!(approve.contains(&format!("--action-hash {hash}")), "{approve}");

    let unknown = airlock(&data, &["case", "show", "case-0000000000000000"]);
    assert_eq!(unknown.status.code(), Some(1), "{}", stderr(&unknown));
    assert!(stderr(&unknown).contains("no case case-0000000000000000"), "{}", stderr(&unknown));
    let nowhere = scratch.path().join("nowhere");
    let missing = airlock(&nowhere, &["case", "show", &jon]);
    assert_eq!(missing.status.code(), Some(3), "{}", stderr(&missing));
    assert!(!nowhere.exists(), "reading a store must not create one");
}

// Proves `case show` of a closed case with receipts, on the demo's kept store: bob's case was executed and rolled back,
// so it is final, has no timers and no next steps, and shows both receipts with their chained hashes.
#[test]
fn case_show_lists_a_closed_cases_receipts() {
    let scratch = common::scratch();
    let data = scratch.path().join("demo");
    let demo = airlock(&data, &["demo", "--keep"]);
    assert_eq!(demo.status.code(), Some(0), "{}", stderr(&demo));
    let (rolled_back, _) = listed(&data, &["--state", "rolled_back", "--account", "bob"]);
    let [bob] = rolled_back.as_slice() else { panic!("one rolled-back case of bob: {rolled_back:?}") };
    let view = json_of(&data, &["case", "show", bob]);
    assert_eq!((&view["status"], &view["terminal"]), (&json!("rolled_back"), &json!(true)));
    assert_eq!((view["timers"].as_array().unwrap().len(), steps(&view).len()), (0, 0), "{view}");
    let receipts = view["receipts"].as_array().unwrap();
    let kinds: Vec<&str> = receipts.iter().map(|receipt| receipt["body"]["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["executed", "rolled_back"]);
    assert_eq!(receipts[1]["previous_hash"], receipts[0]["hash"], "the receipts are chained");
    let shown = stdout(&airlock(&data, &["case", "show", bob]));
    assert!(shown.contains("(none: the case is closed)"), "{shown}");
    assert!(shown.contains(receipts[1]["hash"].as_str().unwrap()), "{shown}");
}

// Proves `case list`: newest first; each filter (state, account, since as a span or a time, action) narrows it and
// they combine; --limit cuts it and says more match; the table shows the same cases; a state, action or time that
// means nothing is a usage error (exit 2) naming what would be accepted.
#[test]
fn case_list_filters_by_state_account_time_and_action() {
    let scratch = common::scratch();
    let data = scratch.path().join("data");
    import_jon_and_ivo(&data);
    let mut opened = Vec::new();
    for (index, (account, action)) in
        [("jon", reset_password()), ("ivo", add_email("new@example.net")), ("ivo", reset_password())]
            .into_iter()
            .enumerate()
    {
        let body = request_body(&format!("l-{index}"), account, action, "locked out", json!({}));
        let (code, reply) = submit(&data, "intake:desk", "request-recovery", body.to_string().as_bytes());
        assert_eq!(code, 0, "{reply}");
        opened.push(reply["case_id"].as_str().unwrap().to_string());
        // Distinct request times (to the millisecond), so that "newest first" is a fact the list must get right.
        let opened_by = std::time::SystemTime::now() + std::time::Duration::from_millis(1);
        common::wait_for(|| std::time::SystemTime::now() > opened_by, "the clock to pass this request");
    }
    let newest_first: Vec<String> = opened.iter().rev().cloned().collect();
    let ids = |indexes: &[usize]| -> Vec<String> { indexes.iter().map(|index| opened[*index].clone()).collect() };

    assert_eq!(listed(&data, &[]), (newest_first.clone(), false));
    assert_eq!(listed(&data, &["--state", "requested"]), (ids(&[0]), false));
    assert_eq!(listed(&data, &["--state", "in_review"]), (ids(&[2, 1]), false));
    assert_eq!(listed(&data, &["--state", "executed"]), (vec![], false));
    assert_eq!(listed(&data, &["--account", "ivo"]), (ids(&[2, 1]), false));
    assert_eq!(listed(&data, &["--action", "add_destination"]), (ids(&[1]), false));
    assert_eq!(listed(&data, &["--account", "ivo", "--action", "reset_password"]), (ids(&[2]), false));
    assert_eq!(listed(&data, &["--since", "1h"]), (newest_first.clone(), false));
    assert_eq!(listed(&data, &["--since", "2020-01-01 00:00:00"]), (newest_first.clone(), false));
    assert_eq!(listed(&data, &["--since", "2999-01-01T00:00:00Z"]), (vec![], false));
    assert_eq!(listed(&data, &["--limit", "2"]), (ids(&[2, 1]), true));

    let table = stdout(&airlock(&data, &["case", "list", "--account", "ivo"]));
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(rows[0].starts_with(&opened[2]) && rows[0].contains("reset_password"), "{table}");
    assert!(rows[1].starts_with(&opened[1]) && rows[1].contains("add_destination"), "{table}");
    let cut = stdout(&airlock(&data, &["case", "list", "--limit", "1"]));
    assert!(cut.contains("more cases match"), "{cut}");

    for (args, names) in [
        (["--state", "approved"], "in_review"),
        (["--action", "delete_account"], "reset_password"),
        (["--since", "last tuesday"], "3d"),
    ] {
        let mut all = vec!["case", "list"];
        all.extend(args);
        let output = airlock(&data, &all);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(names), "{args:?}: {}", stderr(&output));
    }
}
