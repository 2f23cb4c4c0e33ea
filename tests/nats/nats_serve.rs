//! `airlock serve` against real nats-server processes on loopback, driven the way a support system would drive it:
//! JSON commands published to the intake stream, answers read from the results stream. Covers poison input, a
//! SIGKILL of airlock mid-stream (the projector loses and duplicates nothing), a restart of the NATS server
//! mid-stream (no accepted request is lost), graceful shutdown, clear startup errors, and answers that do not wait
//! for the mail server.

use crate::common;

use airlock::core::limits::COMMAND_BYTES_MAX;
use airlock::log::EventLog;
use airlock::log::jetstream::{JetStreamConfig, JetStreamLog};

use airlock::projection::Projection;
use async_nats::jetstream;
use common::serve::Harness;
use common::{WAIT_MS, publish, read_all, wait_for};
use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn control(command_id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "version": 1, "command_id": command_id, "reason": "the customer insists" })).unwrap()
}

fn request(command_id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "version": 1, "command_id": command_id, "account_id": "nobody",
        "action": { "type": "reset_password" }, "summary": "customer asked", "signals": {}
    }))
    .unwrap()
}

fn body(message: &jetstream::Message) -> Value {
    serde_json::from_slice(&message.payload).unwrap()
}

fn header<'a>(message: &'a jetstream::Message, name: &str) -> &'a str {
    message.headers.as_ref().and_then(|headers| headers.get(name)).map_or("", |value| value.as_str())
}

/// Answers by command id (a redelivered message may be answered twice; the answer is the same).
async fn results_by_command(client: &async_nats::Client, actor: &str, count: usize) -> BTreeMap<String, Value> {
    let messages = read_all(client, "AIRLOCK_RESULTS", &format!("airlock.result.intake.{actor}"), count).await;
    messages.iter().map(|message| (header(message, "Airlock-Command-Id").to_string(), body(message))).collect()
}

/// Rebuilds a projection from the JetStream log into `path` and returns the log's last sequence.
async fn rebuild(client: &async_nats::Client, path: &Path) -> u64 {
    let log = JetStreamLog::open(client.clone(), JetStreamConfig::default()).await.unwrap();
    let projection = Projection::open(path).unwrap();
    let mut after = 0;
    loop {
        let entries = log.read_after(after, 1_000).await.unwrap();
        let Some(last) = entries.last() else { break };
        after = last.sequence;
        projection.apply(&entries).unwrap();
    }
    after
}

// Proves each kind of poison input is answered with its specific reason and kept in the dead-letter stream with
// the original bytes, and that the consumer goes on to the next command.
#[tokio::test(flavor = "multi_thread")]
async fn poison_is_answered_kept_and_never_stalls_the_consumer() {
    let mut harness = Harness::new();
    harness.start_serve(&[], &[]);
    let client = harness.client().await;
    let context = jetstream::new(client.clone());
    let intake = "airlock.intake.intake.desk-1";
    let oversized = {
        let mut value = json!({ "version": 1, "command_id": "big", "account_id": "a", "action": { "type": "reset_password" },
                                "signals": {} });
        value["summary"] = Value::String("x".repeat(COMMAND_BYTES_MAX));
        serde_json::to_vec(&value).unwrap()
    };
    let unknown_field = serde_json::to_vec(&json!({
        "version": 1, "command_id": "extra", "account_id": "a", "action": { "type": "reset_password" },
        "summary": "s", "signals": {}, "approved_by_security": true
    }))
    .unwrap();
    let wrong_role =
        serde_json::to_vec(&json!({ "version": 1, "command_id": "proof", "case_id": "case-1", "code": "12345678" }))
            .unwrap();
    let unknown_command = serde_json::to_vec(&json!({ "version": 1, "command_id": "teleport" })).unwrap();
    // Input airlock never reads as a command may hold a code too: a proof sent to a misspelt subject, a summary with a
    // code in a body that is not JSON. Their bodies are withheld like a proof's.
    let misaddressed_proof =
        serde_json::to_vec(&json!({ "version": 1, "command_id": "typo", "case_id": "case-1", "code": "48213377" }))
            .unwrap();
    let broken_with_code = br#"{ "summary": "the code they sent me is 4821 3377", "#.to_vec();
    // A command airlock read holds ids and hashes with digit runs: they are no code, and its body is kept.
    let hash = "0123456789abcdef".repeat(4);
    let not_a_reviewer = serde_json::to_vec(&json!({ "version": 1, "command_id": "decision-20261206-123456",
        "case_id": "case-0123456789ab", "decision": "approve", "action_hash": hash, "reason": "looks fine" }))
    .unwrap();
    let poison: Vec<(String, Vec<u8>, &str)> = vec![
        (format!("{intake}.request_recovery"), b"{ not json".to_vec(), "malformed_command"),
        (format!("{intake}.request_recovery"), oversized.clone(), "malformed_command"),
        (format!("{intake}.request_recovery"), unknown_field.clone(), "malformed_command"),
        (format!("{intake}.submit_proof"), wrong_role, "role_not_allowed"),
        (format!("{intake}.teleport"), unknown_command, "bad_subject"),
        (format!("{intake}.submit-proof"), misaddressed_proof, "bad_subject"),
        (format!("{intake}.request_recovery"), broken_with_code, "malformed_command"),
        (format!("{intake}.review_decision"), not_a_reviewer, "role_not_allowed"),
        // THREATS 12: a support desk's credentials cannot halt or resume; the attempt is kept with its actor.
        (format!("{intake}.halt"), control("halt-attempt"), "role_not_allowed"),
        (format!("{intake}.resume"), control("resume-attempt"), "role_not_allowed"),
    ];
    for (index, (subject, bytes, _)) in poison.iter().enumerate() {
        // One message id reads as a code: the headers kept with its dead letter withhold it.
        let message_id = if index == 0 { "otp-4821-3377".to_string() } else { format!("poison-{index}") };
        publish(&context, subject, &message_id, bytes.clone()).await;
    }
    publish(&context, &format!("{intake}.request_recovery"), "good", request("good")).await;

    let results = results_by_command(&client, "desk-1", poison.len() + 1).await;
    // Issue 15, item 15: an unknown command from a known sender is answered to that sender, naming the commands.
    let unknown = &results[""];
    assert_eq!(unknown["error"]["code"], "bad_subject", "{results:?}");
    assert!(unknown["error"]["reason"].as_str().unwrap().contains("request_recovery"), "{unknown}");
    assert_eq!(results["good"]["accepted"], true, "{results:?}");
    assert_eq!(results["good"]["status"], "received");
    assert_eq!(results["extra"]["error"]["code"], "malformed_command");
    assert!(results["extra"]["error"]["reason"].as_str().unwrap().contains("approved_by_security"));
    assert_eq!(results["proof"]["error"]["code"], "role_not_allowed");
    assert_eq!(results["halt-attempt"]["error"]["code"], "role_not_allowed");
    assert_eq!(results["resume-attempt"]["error"]["code"], "role_not_allowed");
    let too_large = results.values().find(|reply| reply["message"].as_str().is_some_and(|text| text.contains("bytes")));
    assert!(too_large.is_some(), "an oversized command is answered with its size: {results:?}");

    let dead = read_all(&client, "AIRLOCK_DEADLETTER", "airlock.deadletter.>", poison.len()).await;
    assert_eq!(dead.len(), poison.len());
    // Commands are decided concurrently, so dead letters are matched to their input (by its digest), not to their
    // order. A body larger than any command is kept as a prefix (bounded), every other one verbatim.
    for (index, (subject, bytes, code)) in poison.iter().enumerate() {
        let withheld = subject.ends_with("submit_proof") || String::from_utf8_lossy(bytes).contains("4821");
        let digest = hex::encode(Sha256::digest(bytes));
        let kept = dead
            .iter()
            .find(|kept| {
                header(kept, "Airlock-Original-Subject") == subject && header(kept, "Airlock-Original-Sha256") == digest
            })
            .unwrap_or_else(|| panic!("no dead letter for {subject}"));
        assert_eq!(header(kept, "Airlock-Original-Bytes"), bytes.len().to_string());
        match header(kept, "Airlock-Body") {
            "verbatim" => assert_eq!(kept.payload[..], bytes[..], "{subject}"),
            "prefix" => {
                assert!(bytes.len() > COMMAND_BYTES_MAX, "only an oversized body is cut: {subject}");
                assert!(kept.payload.len() < bytes.len() && bytes.starts_with(&kept.payload), "{subject}");
            }
            other => assert!(withheld && other == "withheld", "{subject}: body kept as {other:?}"),
        }
        assert_eq!(header(kept, "Airlock-Reason-Code"), *code, "{subject}");
        assert!(!header(kept, "Airlock-Reason").is_empty());
        if withheld {
            for code in [&b"12345678"[..], b"48213377", b"4821 3377"] {
                assert!(!kept.payload.windows(code.len()).any(|window| window == code), "a code was kept: {subject}");
            }
            assert!(String::from_utf8_lossy(&kept.payload).starts_with("withheld"), "{subject}");
        }
        let headers = kept.headers.as_ref().and_then(|headers| headers.get("Airlock-Original-Headers"));
        let headers = headers.map_or(String::new(), |value| value.as_str().to_string());
        assert!(!headers.contains("4821"), "a code in a header was kept: {headers}");
        if index == 0 {
            assert!(headers.contains("Nats-Msg-Id: (withheld)"), "{headers}");
        }
    }
    assert_eq!(harness.stop_serve().code(), Some(0));
}

// Proves SIGKILL of airlock in the middle of a stream of requests loses nothing and applies nothing twice: after a
// restart every request is answered, and the projection equals one rebuilt from the log.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_stream_loses_nothing_and_projects_nothing_twice() {
    let mut harness = Harness::new();
    harness.start_serve(&[], &[]);
    let client = harness.client().await;
    let context = jetstream::new(client.clone());
    const REQUESTS: usize = 300;
    for index in 0..REQUESTS {
        publish(
            &context,
            "airlock.intake.intake.desk-2.request_recovery",
            &format!("r{index}"),
            request(&format!("r{index}")),
        )
        .await;
    }
    // Kill once some, but not all, commands have been decided.
    let events = async_nats::jetstream::new(client.clone());
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
    loop {
        let last = events.get_stream("AIRLOCK_EVENTS").await.unwrap().get_info().await.unwrap().state.last_sequence;
        if last >= 20 {
            break;
        }
        assert!(Instant::now() < deadline, "nothing was decided");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    harness.kill_serve();
    harness.start_serve(&[], &[]);
    let results = results_by_command(&client, "desk-2", REQUESTS).await;
    assert_eq!(results.len(), REQUESTS);
    assert!(results.values().all(|reply| reply["accepted"] == true), "{results:?}");
    let cases: std::collections::BTreeSet<&str> =
        results.values().map(|reply| reply["case_id"].as_str().unwrap()).collect();
    assert_eq!(cases.len(), REQUESTS, "one case per request, none opened twice");

    let rebuilt = harness.scratch.path().join("rebuilt.db");
    let last = rebuild(&client, &rebuilt).await;
    let live = harness.data().join("projection.db");
    wait_for(|| Projection::open(&live).unwrap().last_sequence().unwrap() == last, "the projector to catch up");
    assert_eq!(harness.stop_serve().code(), Some(0));
    let live_rows = common::dump_projection(&live);
    assert!(live_rows.iter().filter(|row| row.starts_with("cases:")).count() == REQUESTS);
    assert_eq!(common::dump_projection(&rebuilt), live_rows);
}

// Proves NATS server restarts in the middle of a stream of requests, one a crash (SIGKILL) and one graceful (SIGTERM),
// lose no accepted request, that airlock reconnects by itself, and (issue 15, item 4) that the running serve's
// projection misses no event appended around a restart: it equals one rebuilt from the log.
#[tokio::test(flavor = "multi_thread")]
async fn nats_restart_mid_stream_loses_no_accepted_request() {
    let mut harness = Harness::new();
    harness.start_serve(&[], &[]);
    let client = harness.client().await;
    let context = jetstream::new(client.clone());
    const REQUESTS: usize = 300;
    for index in 0..REQUESTS {
        if index == REQUESTS / 3 {
            harness.nats.restart().expect("nats-server restarts");
        }
        if index == 2 * REQUESTS / 3 {
            harness.nats.restart_gracefully().expect("nats-server restarts");
        }
        publish(
            &context,
            "airlock.intake.intake.desk-3.request_recovery",
            &format!("n{index}"),
            request(&format!("n{index}")),
        )
        .await;
    }
    let found =
        tokio::time::timeout(Duration::from_millis(WAIT_MS), results_by_command(&client, "desk-3", REQUESTS)).await;
    let Ok(results) = found else {
        panic!("not every request was answered:\n{}", diagnose(&client, &harness).await);
    };
    assert_eq!(results.len(), REQUESTS);
    assert!(results.values().all(|reply| reply["accepted"] == true));
    assert!(harness.serve_running(), "serve survived the restart:\n{}", harness.serve_log());
    let rebuilt = harness.scratch.path().join("rebuilt.db");
    let last = rebuild(&client, &rebuilt).await;
    let live = harness.data().join("projection.db");
    wait_for(|| Projection::open(&live).unwrap().last_sequence().unwrap() == last, "the projector to catch up");
    assert_eq!(harness.stop_serve().code(), Some(0));
    assert_eq!(common::dump_projection(&rebuilt), common::dump_projection(&live), "the live projection missed events");
}

// Proves (issue 15, item 4) a projection file deleted under a running serve is noticed at once and rebuilt from the
// log: the cases opened before and after the deletion are all listed, without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_projection_deleted_under_serve_is_rebuilt_at_once() {
    let mut harness = Harness::new();
    harness.start_serve(&[], &[]);
    let client = harness.client().await;
    let context = jetstream::new(client.clone());
    publish(&context, "airlock.intake.intake.desk-5.request_recovery", "before", request("before")).await;
    results_by_command(&client, "desk-5", 1).await;
    let live = harness.data().join("projection.db");
    wait_for(|| Projection::open(&live).unwrap().last_sequence().unwrap() >= 1, "the first case to be projected");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", live.display()));
    }
    publish(&context, "airlock.intake.intake.desk-5.request_recovery", "after", request("after")).await;
    results_by_command(&client, "desk-5", 2).await;
    wait_for(
        || {
            let listed = harness.airlock(&["case", "list", "--json"]);
            let cases: Value = serde_json::from_slice(&listed.stdout).unwrap_or(Value::Null);
            cases["items"].as_array().is_some_and(|cases| cases.len() == 2)
        },
        "both cases to be listed again",
    );
    assert!(harness.serve_log().contains("deleted or replaced"), "{}", harness.serve_log());
    assert_eq!(harness.stop_serve().code(), Some(0));
}

/// What the streams and the intake consumer hold, and the end of serve's log: printed when a test times out, so
/// that a stall can be told from a loss.
async fn diagnose(client: &async_nats::Client, harness: &Harness) -> String {
    let context = jetstream::new(client.clone());
    let mut lines = Vec::new();
    for name in ["AIRLOCK_INTAKE", "AIRLOCK_EVENTS", "AIRLOCK_RESULTS", "AIRLOCK_DEADLETTER"] {
        if let Ok(stream) = context.get_stream(name).await {
            let info = stream.get_info().await.map(|info| format!("{:?}", info.state)).unwrap_or_default();
            lines.push(format!("{name}: {info}"));
            if name == "AIRLOCK_INTAKE"
                && let Ok(mut consumer) =
                    stream.get_consumer::<jetstream::consumer::pull::Config>("airlock-intake-intake").await
                && let Ok(info) = consumer.info().await
            {
                lines.push(format!(
                    "intake consumer: pending {} ack_pending {} redelivered {} delivered {:?} ack_floor {:?}",
                    info.num_pending, info.num_ack_pending, info.num_redelivered, info.delivered, info.ack_floor
                ));
            }
        }
    }
    let log = harness.serve_log();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    lines.push(format!("serve log (last lines, newest first):\n{}", tail.join("\n")));
    lines.join("\n")
}

// Proves startup errors are clear: an unreachable NATS server, and an event stream whose configuration would allow
// deleting events.
#[tokio::test(flavor = "multi_thread")]
async fn startup_errors_name_the_problem() {
    let harness = Harness::new();
    let unused = airlock::nats::server::free_port().unwrap();
    let unreachable = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["serve", "--nats", &format!("nats://127.0.0.1:{unused}"), "--data-dir"])
        .arg(harness.data())
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach NATS"), "{unreachable:?}");

    // Issue 15, item 3: every setting that could discard, expire or delete an event is refused, by name, by serve
    // and by the commands that read the log (after a first run has made the projection they compare with).
    let mut harness = harness;
    harness.start_serve(&[], &[]);
    assert_eq!(harness.stop_serve().code(), Some(0));
    let context = jetstream::new(harness.client().await);
    type Weaken = fn(&mut jetstream::stream::Config);
    let variants: [(&str, Weaken); 8] = [
        ("deny_delete", |config| config.deny_delete = false),
        ("deny_purge", |config| config.deny_purge = false),
        ("allow_rollup", |config| {
            config.allow_rollup = true;
            config.deny_purge = false;
        }),
        ("max_msgs_per_subject", |config| config.max_messages_per_subject = 1),
        ("max_age", |config| config.max_age = Duration::from_secs(3600)),
        ("max_bytes", |config| config.max_bytes = 1 << 30),
        ("max_msgs", |config| config.max_messages = 1_000_000),
        ("TTL", |config| config.allow_message_ttl = true),
    ];
    for (setting, weaken) in variants {
        let mut unsafe_config = JetStreamConfig::default().stream_config();
        weaken(&mut unsafe_config);
        let _ = context.delete_stream("AIRLOCK_EVENTS").await;
        context.create_stream(unsafe_config).await.unwrap();
        for command in [&["serve"][..], &["audit", "verify"][..], &["case", "history", "case-1"][..]] {
            let refused = Command::new(env!("CARGO_BIN_EXE_airlock"))
                .args(command)
                .args(["--nats", &harness.nats.url(), "--data-dir"])
                .arg(harness.data())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&refused.stderr);
            assert_ne!(refused.status.code(), Some(0), "{command:?} ran on a log with {setting} weakened: {stderr}");
            assert!(stderr.contains("incompatible configuration") && stderr.contains(setting), "{command:?}: {stderr}");
        }
    }
}

// Proves cases can be queried over NATS request/reply: an intake actor sees the coarse public status, a reviewer the
// state, and an unknown case id gets the same answer shape.
#[tokio::test(flavor = "multi_thread")]
async fn cases_are_queried_over_request_reply() {
    let mut harness = Harness::new();
    harness.start_serve(&[], &[]);
    let client = harness.client().await;
    let context = jetstream::new(client.clone());
    publish(&context, "airlock.intake.intake.desk-4.request_recovery", "q1", request("q1")).await;
    let results = results_by_command(&client, "desk-4", 1).await;
    let case_id = results["q1"]["case_id"].as_str().unwrap().to_string();
    let ask = |subject: &'static str, case_id: String| {
        let client = client.clone();
        async move {
            let payload = serde_json::to_vec(&json!({ "case_id": case_id })).unwrap();
            let reply = client.request(subject, payload.into()).await.unwrap();
            serde_json::from_slice::<Value>(&reply.payload).unwrap()
        }
    };
    let public = ask("airlock.query.intake.desk-4", case_id.clone()).await;
    assert_eq!(public["status"], "pending", "{public}");
    let internal = ask("airlock.query.reviewer.ana", case_id.clone()).await;
    assert_eq!(internal["status"], "requested", "{internal}");
    let unknown = ask("airlock.query.intake.desk-4", "case-000000000000".to_string()).await;
    assert_eq!(unknown["status"], "not_found");
    let keys = |value: &Value| value.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&public), keys(&unknown), "the same answer shape");
    assert_eq!(harness.stop_serve().code(), Some(0));
}

// Proves a projection database locked by another process is a clear startup error, not a hang or a crash.
#[test]
fn a_locked_database_is_a_clear_startup_error() {
    let harness = Harness::new();
    std::fs::create_dir_all(harness.data()).unwrap();
    let holder = rusqlite::Connection::open(harness.data().join("projection.db")).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE; CREATE TABLE held (x);").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["serve", "--nats", &harness.nats.url(), "--data-dir"])
        .arg(harness.data())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("projection.db") && stderr.contains("locked"), "{stderr}");
    holder.execute_batch("ROLLBACK").unwrap();
}

// Proves `serve --policies DIR` refuses to start on a policy that does not validate, naming the policy and the line,
// and starts (and decides) with a valid custom folder.
#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_bad_policies_and_runs_good_ones() {
    let mut harness = Harness::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let folder = harness.scratch.path().join("policies");
    std::fs::create_dir_all(&folder).unwrap();
    for name in ["airlock.cedarschema", "default.cedar", "tests.toml"] {
        std::fs::copy(root.join(name), folder.join(name)).unwrap();
    }
    let good = std::fs::read_to_string(folder.join("default.cedar")).unwrap();
    std::fs::write(
        folder.join("default.cedar"),
        good.replace("context.velocity.account >= 4", "context.velocity.acount >= 4"),
    )
    .unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["serve", "--nats", &harness.nats.url(), "--policies"])
        .arg(&folder)
        .arg("--data-dir")
        .arg(harness.data())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("velocity.account.review") && stderr.contains("line "), "{stderr}");

    // A valid custom policy that denies every request outright.
    let strict =
        format!("{good}\n@id(\"lockdown.deny\")\npermit (principal, action == Airlock::Action::\"deny\", resource);\n");
    std::fs::write(folder.join("default.cedar"), strict).unwrap();
    harness.start_serve(&["--policies", folder.to_str().unwrap()], &[]);
    let client = harness.client().await;
    publish(&jetstream::new(client.clone()), "airlock.intake.owner.self.request_recovery", "p1", request("p1")).await;
    let messages = read_all(&client, "AIRLOCK_RESULTS", "airlock.result.owner.self", 1).await;
    let case_id = body(&messages[0])["case_id"].as_str().unwrap().to_string();
    let reply = client
        .request("airlock.query.operator.ops", serde_json::to_vec(&json!({ "case_id": case_id })).unwrap().into())
        .await
        .unwrap();
    let status: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(status["status"], "denied", "the custom policy decided: {status}");
    assert_eq!(harness.stop_serve().code(), Some(0));
}

/// Publishes one request for `account` as `desk-5` and returns how long its answer took to appear.
async fn time_to_answer(client: &async_nats::Client, command_id: &str, account: &str) -> Duration {
    let mut answers = client.subscribe("airlock.result.intake.desk-5").await.unwrap();
    client.flush().await.unwrap();
    let body = serde_json::to_vec(&json!({
        "version": 1, "command_id": command_id, "account_id": account,
        "action": { "type": "reset_password" }, "summary": "customer asked", "signals": {}
    }))
    .unwrap();
    let started = Instant::now();
    let context = jetstream::new(client.clone());
    publish(&context, "airlock.intake.intake.desk-5.request_recovery", command_id, body).await;
    loop {
        let answer = tokio::time::timeout(Duration::from_millis(WAIT_MS), answers.next()).await.unwrap().unwrap();
        let id = answer.headers.as_ref().and_then(|headers| headers.get("Airlock-Command-Id")).map(|id| id.to_string());
        if id.as_deref() == Some(command_id) {
            return started.elapsed();
        }
    }
}

// Proves the answer to a requester does not wait for the mail server (THREATS 8, timing): with a mail server that
// accepts connections and never speaks, a request for a known account (whose code goes out by email) is answered long
// before the mailer gives up, like one for an unknown account, and the code's sending is still attempted afterwards.
#[tokio::test]
async fn a_silent_mail_server_does_not_delay_the_answer() {
    const MAILER_TIMEOUT_MS: u64 = 6_000;
    let mut harness = Harness::new();
    common::import_accounts(
        &harness.data(),
        json!([{
            "account_id": "kim",
            "destinations": [
                { "id": "kim-mail", "kind": "email", "address": "kim@example.com", "trusted_since": "2024-01-01T00:00:00Z" }
            ]
        }]),
    );
    // Connections complete in the kernel's backlog; nobody ever reads or writes on them.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let smtp = format!(
        "smtp://127.0.0.1:{}?from=recovery@airlock.test&timeout_ms={MAILER_TIMEOUT_MS}",
        silent.local_addr().unwrap().port()
    );
    harness.start_serve(&["--smtp", &smtp], &[]);
    let client = harness.client().await;
    let unknown = time_to_answer(&client, "t-unknown", "nobody").await;
    let known = time_to_answer(&client, "t-known", "kim").await;
    let limit = Duration::from_millis(MAILER_TIMEOUT_MS / 2);
    assert!(unknown < limit, "the unknown account's answer took {unknown:?}");
    assert!(known < limit, "the known account's answer took {known:?}: it waited for the mail server");
    // The code was still sent for (and, the server being silent, failed after the mailer's timeout), by its id only.
    wait_for(|| harness.serve_log().contains("code not sent"), "the code to be attempted after the answer");
    drop(silent);
}

/// Publishes `body` on `subject` with `message_id`, once, and returns the server's answer: the acknowledgement or the
/// refusal's text.
async fn publish_once(
    context: &jetstream::Context,
    subject: &str,
    message_id: &str,
    body: Vec<u8>,
) -> Result<jetstream::publish::PublishAck, String> {
    let message = jetstream::message::PublishMessage::build().payload(body.into()).message_id(message_id);
    match context.send_publish(subject.to_string(), message).await {
        Ok(pending) => pending.await.map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    }
}

// Proves (THREATS 16, issue 15 item 1) that the intake stream refuses at publish time what airlock would refuse as too
// large, and anything on a subject no consumer takes; that one desk can queue only a bounded backlog (the rest of its
// flood is refused by the broker, naming the limit); and that an operator's halt sent behind a desk's flood is
// answered without waiting for it.
#[tokio::test(flavor = "multi_thread")]
async fn one_desk_cannot_stall_the_intake_or_the_operator() {
    let mut harness = Harness::new();
    harness.start_serve(&[], &[]);
    assert_eq!(harness.stop_serve().code(), Some(0));
    let client = harness.client().await;
    let context = jetstream::new(client.clone());

    let huge = vec![b'x'; 64 * 1024];
    let refused = publish_once(&context, "airlock.intake.intake.flood.request_recovery", "huge", huge).await;
    assert!(refused.as_ref().is_err_and(|error| error.contains("maximum")), "{refused:?}");
    let nobody_takes = publish_once(&context, "airlock.intake.admin.flood.cancel", "admin", b"{}".to_vec()).await;
    assert!(nobody_takes.is_err(), "a subject no consumer takes is not stored: {nobody_takes:?}");

    let (mut queued, mut turned_away) = (0, Vec::new());
    for index in 0..300 {
        let id = format!("f{index}");
        match publish_once(&context, "airlock.intake.intake.flood.request_recovery", &id, request(&id)).await {
            Ok(_) => queued += 1,
            Err(error) => turned_away.push(error),
        }
    }
    assert_eq!(queued, 256, "one desk queues a bounded backlog");
    assert_eq!(turned_away.len(), 44);
    assert!(turned_away.iter().all(|error| error.contains("maximum messages per subject")), "{turned_away:?}");
    publish(&context, "airlock.intake.intake.calm.request_recovery", "calm-1", request("calm-1")).await;
    publish(&context, "airlock.intake.operator.ops.halt", "halt-1", control("halt-1")).await;

    harness.start_serve(&[], &[]);
    let answers = read_all(&client, "AIRLOCK_RESULTS", "airlock.result.>", queued + 2).await;
    let position = |subject: &str| answers.iter().position(|answer| answer.subject.as_str() == subject).unwrap();
    let halt = position("airlock.result.operator.ops");
    assert_eq!(body(&answers[halt])["status"], "halted");
    let flood_before_halt =
        answers[..halt].iter().filter(|answer| answer.subject.as_str() == "airlock.result.intake.flood").count();
    assert!(flood_before_halt < 128, "the operator's halt waited behind {flood_before_halt} of the flood's commands");
    assert!(answers.iter().any(|answer| answer.subject.as_str() == "airlock.result.intake.calm"));
    assert_eq!(harness.stop_serve().code(), Some(0));
}

// Proves (THREATS 16, issue 15 item 2) that a message id or command id means something only with its sender: a desk
// reusing another desk's `Nats-Msg-Id` is neither dropped by the broker nor taken for a retry, and an operator's
// resume that reuses another operator's command id is a new command, not a no-op.
#[tokio::test(flavor = "multi_thread")]
async fn message_and_command_ids_are_scoped_to_their_sender() {
    let mut harness = Harness::new();
    harness.start_serve(&[], &[]);
    let client = harness.client().await;
    let context = jetstream::new(client.clone());
    let first = publish_once(&context, "airlock.intake.intake.desk-a.request_recovery", "shared", request("a-1")).await;
    assert!(!first.unwrap().duplicate);
    // The broker drops a message whose id it stored within its duplicate window (the intake's is 100 ms, the shortest
    // it allows), whatever the subject: what is tested is any later reuse (the finding's came two minutes later,
    // inside the default window), so the other desk sends until the broker stores it, and airlock must take it.
    let stored = || async {
        let sent = publish_once(&context, "airlock.intake.intake.desk-b.request_recovery", "shared", request("b-1"));
        !sent.await.unwrap().duplicate
    };
    common::wait_until(stored, "the broker to store the other desk's message").await;
    let a = results_by_command(&client, "desk-a", 1).await;
    let b = results_by_command(&client, "desk-b", 1).await;
    assert_eq!(a["a-1"]["accepted"], true);
    assert_eq!(b["b-1"]["accepted"], true, "{b:?}");
    assert_ne!(a["a-1"]["case_id"], b["b-1"]["case_id"]);

    let answer = |actor: &'static str, count: usize| {
        let client = client.clone();
        async move {
            let subject = format!("airlock.result.operator.{actor}");
            let answers = read_all(&client, "AIRLOCK_RESULTS", &subject, count).await;
            body(&answers[count - 1])
        }
    };
    publish(&context, "airlock.intake.operator.op-1.halt", "h-1", control("same-id")).await;
    assert_eq!(answer("op-1", 1).await["status"], "halted");
    publish(&context, "airlock.intake.operator.op-2.resume", "r-1", control("same-id")).await;
    let resumed = answer("op-2", 1).await;
    assert_eq!(resumed["status"], "running", "another operator's command id turned a resume into a no-op: {resumed}");
    assert_eq!(harness.stop_serve().code(), Some(0));
}

// Proves (issue 15, item 4) serve heals a projection that lost a case instead of crash-looping: the next event on that
// case cannot be placed, so the projection is set aside and rebuilt from the log, serve keeps running, and the case
// is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_projection_that_lost_a_case_is_rebuilt_not_crash_looped() {
    let mut harness = Harness::new();
    harness.start_serve(&[], &[]);
    let client = harness.client().await;
    let context = jetstream::new(client.clone());
    publish(&context, "airlock.intake.intake.desk-6.request_recovery", "lost", request("lost")).await;
    let case_id = results_by_command(&client, "desk-6", 1).await["lost"]["case_id"].as_str().unwrap().to_string();
    let live = harness.data().join("projection.db");
    wait_for(|| Projection::open(&live).unwrap().last_sequence().unwrap() >= 1, "the case to be projected");
    assert_eq!(harness.stop_serve().code(), Some(0));
    let dropped =
        rusqlite::Connection::open(&live).unwrap().execute("DELETE FROM cases WHERE case_id = ?1", [&case_id]);
    assert_eq!(dropped.unwrap(), 1, "the test removed the case's row");

    harness.start_serve(&[], &[]);
    let wrong = json!({ "version": 1, "command_id": "typo", "case_id": case_id, "code": "00000000" });
    publish(&context, "airlock.intake.owner.verify-page.submit_proof", "typo", serde_json::to_vec(&wrong).unwrap())
        .await;
    wait_for(|| harness.airlock(&["case", "show", &case_id]).status.success(), "the case to be back in the projection");
    assert!(harness.serve_running(), "serve stopped instead of healing:\n{}", harness.serve_log());
    assert!(harness.serve_log().contains("set aside"), "{}", harness.serve_log());
    assert_eq!(harness.stop_serve().code(), Some(0));
}

/// A request for `account` under `command_id`.
fn request_for(command_id: &str, account: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "version": 1, "command_id": command_id, "account_id": account,
        "action": { "type": "reset_password" }, "summary": "customer asked", "signals": {}
    }))
    .unwrap()
}

// Proves (issue 15, item 13) a command id means one command: a desk's retry of a request (same body, reworded
// summary) lands on its case, but the same id with another account is refused with `command_id_reused`, names no
// case, and is kept in the dead letters; an operator's resume under the id of its own halt is refused the same way.
#[tokio::test(flavor = "multi_thread")]
async fn a_command_id_means_one_command() {
    let mut harness = Harness::new();
    harness.start_serve(&[], &[]);
    let client = harness.client().await;
    let context = jetstream::new(client.clone());
    let subject = "airlock.intake.intake.desk-7.request_recovery";
    // One at a time: commands are decided concurrently, and the first decides which body the id means.
    for (count, (message_id, account)) in [("m1", "alice"), ("m2", "alice"), ("m3", "bob")].into_iter().enumerate() {
        publish(&context, subject, message_id, request_for("same", account)).await;
        read_all(&client, "AIRLOCK_RESULTS", "airlock.result.intake.desk-7", count + 1).await;
    }
    let answers = read_all(&client, "AIRLOCK_RESULTS", "airlock.result.intake.desk-7", 3).await;
    let by_sequence: Vec<Value> = answers.iter().map(body).collect();
    let accepted: Vec<&Value> = by_sequence.iter().filter(|answer| answer["accepted"] == true).collect();
    assert_eq!(accepted.len(), 2, "{by_sequence:?}");
    assert_eq!(accepted[0]["case_id"], accepted[1]["case_id"], "a retry lands on its case");
    let reused = by_sequence.iter().find(|answer| answer["accepted"] == false).expect("the reuse is refused");
    assert_eq!(reused["error"]["code"], "command_id_reused", "{reused}");
    assert!(reused.get("case_id").is_none(), "the refusal names no case: {reused}");
    let dead = read_all(&client, "AIRLOCK_DEADLETTER", "airlock.deadletter.intake.desk-7", 1).await;
    assert_eq!(header(&dead[0], "Airlock-Reason-Code"), "command_id_reused");
    assert_eq!(dead[0].payload[..], request_for("same", "bob")[..], "the refused body is kept");

    publish(&context, "airlock.intake.operator.op-3.halt", "h", control("op-id")).await;
    read_all(&client, "AIRLOCK_RESULTS", "airlock.result.operator.op-3", 1).await;
    publish(&context, "airlock.intake.operator.op-3.resume", "r", control("op-id")).await;
    let answers = read_all(&client, "AIRLOCK_RESULTS", "airlock.result.operator.op-3", 2).await;
    let codes: Vec<Value> = answers.iter().map(|answer| body(answer)["error"]["code"].clone()).collect();
    assert!(codes.contains(&json!("command_id_reused")), "a resume under its halt's id was not refused: {codes:?}");
    assert_eq!(harness.stop_serve().code(), Some(0));
}

// Proves (THREATS 16, issue 15 item 1) one desk cannot fill the dead letters or evict another's: 600 junk messages
// from one desk leave at most DEAD_LETTERS_PER_ACTOR_MAX of its own dead letters (the oldest go first), and another
// desk's dead letter, kept before the flood, is still there.
#[tokio::test(flavor = "multi_thread")]
async fn one_desk_cannot_fill_the_dead_letters_or_evict_another_desks() {
    let mut harness = Harness::new();
    harness.start_serve(&[], &[]);
    let client = harness.client().await;
    let context = jetstream::new(client.clone());
    publish(&context, "airlock.intake.intake.calm.request_recovery", "calm-junk", b"{ not json".to_vec()).await;
    read_all(&client, "AIRLOCK_DEADLETTER", "airlock.deadletter.intake.calm", 1).await;
    const JUNK: usize = 600;
    for batch in 0..3 {
        for index in 0..JUNK / 3 {
            let id = format!("junk-{batch}-{index}");
            publish(&context, "airlock.intake.intake.junk.request_recovery", &id, b"{ junk".to_vec()).await;
        }
        // The desk's backlog is bounded too: wait for this batch to be answered before sending the next.
        read_all(&client, "AIRLOCK_RESULTS", "airlock.result.intake.junk", (batch + 1) * JUNK / 3).await;
    }
    let kept = read_all(&client, "AIRLOCK_DEADLETTER", "airlock.deadletter.intake.junk", 1).await;
    let bound = airlock::intake::nats::DEAD_LETTERS_PER_ACTOR_MAX as usize;
    assert!(kept.len() <= bound, "one desk kept {} dead letters, over {bound}", kept.len());
    assert!(kept.len() >= bound / 2, "the desk's recent dead letters are kept: {}", kept.len());
    let calm = read_all(&client, "AIRLOCK_DEADLETTER", "airlock.deadletter.intake.calm", 1).await;
    assert_eq!(calm.len(), 1, "another desk's dead letter was evicted by the flood");
    assert_eq!(harness.stop_serve().code(), Some(0));
}

// Proves (THREATS 16, issue 15 item 1) a command airlock cannot take is never redelivered forever: a request for an
// account whose request ledger does not decode (a value airlock did not write) is left for redelivery with backoff
// (shortened here by the debug-only AIRLOCK_INTAKE_RETRY_MS), and after INTAKE_DELIVERIES_MAX deliveries it is
// answered `gave_up`, kept in the dead letters with that code, and delivered no more; the same desk's next request for
// another account is answered meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_command_airlock_cannot_take_is_given_up_not_redelivered_forever() {
    let mut harness = Harness::new();
    harness.start_serve(&[], &[("AIRLOCK_INTAKE_RETRY_MS", "20")]);
    let client = harness.client().await;
    let context = jetstream::new(client.clone());
    let ledgers = context.get_key_value(airlock::log::jetstream::LEDGER_BUCKET).await.unwrap();
    ledgers.put(hex::encode("nobody"), b"not a ledger".to_vec().into()).await.unwrap();

    publish(&context, "airlock.intake.intake.desk-9.request_recovery", "stuck", request("stuck")).await;
    publish(&context, "airlock.intake.intake.desk-9.request_recovery", "other", request_for("other", "someone")).await;
    let results = results_by_command(&client, "desk-9", 2).await;
    assert_eq!(results["other"]["status"], "received", "{results:?}");
    let stuck = &results["stuck"];
    assert_eq!(stuck["error"]["code"], "gave_up", "{stuck}");
    let reason = stuck["error"]["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("{} attempts", airlock::intake::nats::INTAKE_DELIVERIES_MAX)), "{reason}");
    let dead = read_all(&client, "AIRLOCK_DEADLETTER", "airlock.deadletter.>", 1).await;
    assert_eq!(header(&dead[0], "Airlock-Reason-Code"), "gave_up");
    assert_eq!(dead[0].payload[..], request("stuck")[..], "the command is kept verbatim");

    // Nothing is left to deliver: the consumer has no message pending or waiting for an acknowledgement.
    let intake = context.get_stream("AIRLOCK_INTAKE").await.unwrap();
    let mut consumer: jetstream::consumer::PullConsumer = intake.get_consumer("airlock-intake-intake").await.unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0), "{info:?}");
    assert_eq!(harness.stop_serve().code(), Some(0));
}

/// `GET http://address/path` with curl: the status and the body.
fn get(address: &str, path: &str) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-s", "--max-time", "5", "-w", "\n%{http_code}", &format!("http://{address}{path}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// The samples of a Prometheus text page, read by the Prometheus project's own Python parser: (name, labels, value).
fn parse_metrics(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let script = "import sys, json\nfrom prometheus_client.parser import text_string_to_metric_families as parse\n\
                  print(json.dumps([[s.name, s.labels, s.value] for f in parse(sys.stdin.read()) for s in f.samples]))";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the Prometheus parser refused the page: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn sample(samples: &[(String, BTreeMap<String, String>, f64)], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(found, found_labels, _)| {
            found == name
                && labels.iter().all(|(key, value)| found_labels.get(*key).map(String::as_str) == Some(*value))
        })
        .map(|(_, _, value)| *value)
}

// Proves issue 17's probes and logs on a real server: `serve --metrics 127.0.0.1:0 --log-format json` answers /readyz
// 200 and /metrics in the Prometheus text format that the Prometheus project's own parser reads, with the command
// counter and the cases gauge moving when a request is handled; killing nats-server turns /readyz 503 naming NATS
// within seconds, and it is ready again once the server is back. Every log line is one JSON object; losing NATS is a
// WARN, each case step an INFO with ids, and no line holds the code that was sent.
#[tokio::test(flavor = "multi_thread")]
async fn probes_metrics_and_json_logs() {
    let mut harness = Harness::new();
    common::import_accounts(&harness.data(), json!([common::threats::email_account("acct-1")]));
    harness.start_serve(&["--metrics", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-format", "json"], &[]);
    let address_after = |announced: &str| {
        wait_for(|| harness.serve_log().contains(announced), announced);
        let log = harness.serve_log();
        log.split(announced).nth(1).unwrap().split(['"', ' ', '\n']).next().unwrap().to_string()
    };
    let address = address_after("airlock probes and metrics on http://");
    let page = address_after("airlock verification page on http://");
    wait_for(|| get(&address, "/readyz").0 == 200, "/readyz to say ready");
    assert_eq!(get(&address, "/healthz"), (200, "ok\n".to_string()));
    // The owners' page faces the internet: it says it is alive and nothing more (ADR 19).
    assert_eq!(get(&page, "/healthz").0, 200);
    assert_eq!((get(&page, "/metrics").0, get(&page, "/readyz").0), (404, 404));

    let client = harness.client().await;
    let context = jetstream::new(client.clone());
    let body = serde_json::to_vec(&json!({
        "version": 1, "command_id": "m-1", "account_id": "acct-1",
        "action": { "type": "reset_password" }, "summary": "customer asked", "signals": {}
    }))
    .unwrap();
    publish(&context, "airlock.intake.intake.desk.request_recovery", "m-1", body).await;
    let mut samples = Vec::new();
    wait_for(
        || {
            samples = parse_metrics(&get(&address, "/metrics").1);
            // The projector may show the case before the intake has counted its command: both, then.
            let commands = [("command", "request_recovery"), ("outcome", "accepted")];
            sample(&samples, "airlock_cases", &[("state", "requested")]) == Some(1.0)
                && sample(&samples, "airlock_commands_total", &commands).is_some()
        },
        "the request in the metrics",
    );
    let commands = [("command", "request_recovery"), ("outcome", "accepted")];
    assert_eq!(sample(&samples, "airlock_commands_total", &commands), Some(1.0), "{samples:?}");
    assert_eq!(sample(&samples, "airlock_decisions_total", &[("phase", "intake"), ("outcome", "auto")]), Some(1.0));
    assert!(sample(&samples, "airlock_command_seconds_count", &[("command", "request_recovery")]).is_some());
    assert_eq!(sample(&samples, "airlock_kill_switch_on", &[]), Some(0.0));
    assert_eq!(sample(&samples, "airlock_nats_connected", &[]), Some(1.0));

    harness.nats.kill();
    wait_for(
        || {
            let (status, body) = get(&address, "/readyz");
            status == 503 && body.contains("nats")
        },
        "/readyz to say not ready, naming NATS",
    );
    harness.nats.restart().expect("nats-server restarts");
    wait_for(|| get(&address, "/readyz").0 == 200, "/readyz to say ready again");

    let code = common::code_for(&harness.data(), &{
        let log = harness.serve_log();
        let line = log.lines().find(|line| line.contains("\"case step\"")).expect("a case step line").to_string();
        let step: Value = serde_json::from_str(&line).unwrap();
        step["case"].as_str().unwrap().to_string()
    });
    let log = harness.serve_log();
    for line in log.lines() {
        let event: Value = serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}"));
        assert!(event["level"].is_string() && event["message"].is_string(), "{line}");
        assert!(!line.contains(&code), "the code is in the log: {line}");
    }
    assert!(log.lines().any(|line| line.contains("\"WARN\"") && line.contains("NATS connection lost")), "{log}");
    assert!(log.lines().any(|line| line.contains("\"case step\"") && line.contains("challenge_issued")), "{log}");
}
