//! `airlock policy backtest` end to end, on both modes: the decisions recorded in the log taken again under a candidate
//! policy folder, counted by change with their cases; `--since` limits them; a candidate that does not load is refused.

use crate::common;

use async_nats::jetstream;
use common::serve::{Harness, airlock};
use common::threats::{LONG_AGO, account, add_email, request_body, reset_password};
use common::{import_accounts, publish, read_all, submit};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A candidate policy folder: the shipped policies with `from` replaced by `to` (and `extra` appended).
fn candidate(dir: &Path, from: &str, to: &str, extra: &str) -> PathBuf {
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(shipped.join("airlock.cedarschema"), dir.join("airlock.cedarschema")).unwrap();
    let policies = std::fs::read_to_string(shipped.join("default.cedar")).unwrap();
    assert!(policies.contains(from), "{from}");
    std::fs::write(dir.join("default.cedar"), format!("{}\n{extra}", policies.replacen(from, to, 1))).unwrap();
    dir.to_path_buf()
}

fn backtest(data: &Path, args: &[&str]) -> (i32, Value, String) {
    let mut all = vec!["policy", "backtest"];
    all.extend_from_slice(args);
    all.push("--json");
    let output = airlock(data, &all);
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap(), report, String::from_utf8_lossy(&output.stderr).to_string())
}

/// Six requests for six accounts from one source network (decided on network counts 0 to 5), one naming a new email
/// for kim, and two for vera (the second gets no code while the first's is out, so the core sends it to people
/// although the policy said auto).
fn requests() -> Vec<Value> {
    let network = json!({ "source_network": "AS64500" });
    let mut bodies: Vec<Value> = (0..6)
        .map(|index| {
            request_body(
                &format!("n-{index}"),
                &format!("net-{index}"),
                reset_password(),
                "locked out",
                network.clone(),
            )
        })
        .collect();
    bodies.push(request_body("k-0", "kim", add_email("kim.new@example.net"), "new email please", json!({})));
    bodies.push(request_body("v-0", "vera", reset_password(), "locked out", json!({})));
    bodies.push(request_body("v-1", "vera", reset_password(), "still locked out", json!({})));
    bodies
}

fn accounts() -> Value {
    let mut accounts: Vec<Value> = (0..6)
        .map(|index| {
            let id = format!("net-{index}");
            account(&id, &[(&format!("{id}-mail"), "email", &format!("{id}@example.com"), LONG_AGO)])
        })
        .collect();
    accounts.push(account("vera", &[("vera-mail", "email", "vera@example.com", LONG_AGO)]));
    accounts.push(account("kim", &[("kim-mail", "email", "kim@example.com", LONG_AGO)]));
    Value::Array(accounts)
}

/// Checks a backtest of `requests()` against the two candidates, and `--since` after them all.
fn check(data: &Path, scratch: &Path, mode: &[&str]) {
    // A backtest of `candidate` with `extra` arguments in this mode, which must succeed: its report.
    let run = |candidate: &Path, extra: &[&str]| {
        let candidate = candidate.display().to_string();
        let mut args = vec!["--policies", candidate.as_str()];
        args.extend_from_slice(extra);
        args.extend_from_slice(mode);
        let (code, report, stderr) = backtest(data, &args);
        assert_eq!(code, 0, "{stderr}");
        report
    };
    // Stricter on a source network: from the third request of a day on, people look; four intake decisions change
    // auto → review and nothing else.
    let stricter = candidate(
        &scratch.join("stricter"),
        "when { context.velocity.source_network >= 20 };",
        "when { context.velocity.source_network >= 2 };",
        "",
    );
    let report = run(&stricter, &[]);
    assert_eq!(report["decisions"], 9, "{report}");
    assert_eq!(report["unchanged"], 5, "{report}");
    let changes = report["changes"].as_object().unwrap();
    assert_eq!(changes.keys().collect::<Vec<_>>(), ["auto → review"], "{report}");
    let changed = &changes["auto → review"];
    assert_eq!(changed["count"], 4);
    for decision in changed["decisions"].as_array().unwrap() {
        assert_eq!(decision["phase"], "intake");
        assert_eq!(decision["candidate_rules"][0], "velocity.network.review", "{decision}");
    }

    // Stricter on the account from its second request: vera's second request already went to people (the core's
    // one-outstanding-code floor), so nothing would change, and nothing is reported.
    let floor = candidate(
        &scratch.join("floor"),
        "when { context.velocity.account >= 4 };",
        "when { context.velocity.account >= 1 };",
        "",
    );
    let report = run(&floor, &[]);
    assert_eq!((&report["decisions"], &report["unchanged"]), (&json!(9), &json!(9)), "{report}");

    // A candidate that denies every new destination: kim's request changes auto → deny.
    let deny = candidate(
        &scratch.join("deny"),
        "@id(\"velocity.account.review\")",
        "@id(\"velocity.account.review\")",
        "@id(\"no-new-destinations\")\npermit (principal, action == Airlock::Action::\"deny\", resource)\nwhen { context.adds_destination };\n",
    );
    let report = run(&deny, &[]);
    assert_eq!(report["changes"]["auto → deny"]["count"], 1, "{report}");
    assert_eq!(report["changes"].as_object().unwrap().len(), 1, "{report}");

    let report = run(&deny, &["--since", "2099-01-01 00:00:00"]);
    assert_eq!(report["decisions"], json!(0), "{report}");
}

// Proves the backtest on the embedded store: nine recorded intake decisions taken again under a stricter candidate
// change exactly where the candidate differs (four auto → review), under a denying one (one auto → deny), under one
// whose difference the core's floors already made (none), none after `--since`; and a candidate folder that does not
// load is refused with exit 2 before anything is read.
#[test]
fn a_backtest_counts_the_decisions_a_candidate_would_change() {
    let scratch = common::scratch();
    let data = scratch.path().join("data");
    import_accounts(&data, accounts());
    for body in requests() {
        let (code, reply) = submit(&data, "intake:desk", "request-recovery", body.to_string().as_bytes());
        assert_eq!(code, 0, "{reply}");
    }
    check(&data, scratch.path(), &[]);

    let broken = scratch.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("airlock.cedarschema"), "not a schema").unwrap();
    std::fs::write(broken.join("default.cedar"), "").unwrap();
    let (code, _, stderr) = backtest(&data, &["--policies", &broken.display().to_string()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("schema"), "{stderr}");
}

// Proves the backtest reads the NATS log the same way: the same nine requests sent to `airlock serve --nats`, the
// same changes counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_backtest_reads_the_nats_log() {
    let mut harness = Harness::new();
    import_accounts(&harness.data(), accounts());
    harness.start_serve(&[], &[]);
    let client = harness.client().await;
    let context = jetstream::new(client.clone());
    for body in requests() {
        let id = body["command_id"].as_str().unwrap().to_string();
        publish(&context, "airlock.intake.intake.desk.request_recovery", &id, body.to_string().into_bytes()).await;
    }
    read_all(&client, "AIRLOCK_RESULTS", "airlock.result.intake.desk", requests().len()).await;
    let url = harness.nats.url();
    check(&harness.data(), harness.data().parent().unwrap(), &["--nats", &url]);
    assert_eq!(harness.stop_serve().code(), Some(0));
}
