//! Case events out (issue 20, item 2; ADR 27): signed webhooks to a real HTTP receiver written in Python that verifies
//! every request with the Standard Webhooks reference library (tests/receivers/webhook_receiver.py), in NATS mode and
//! in the embedded store. The stream `AIRLOCK_NOTIFY` is read by an integrator in tests/nats/nats_permissions.rs and with
//! two publishing processes in tests/nats/velocity_burst.rs.

use crate::common;

use airlock::core::actor::{Actor, Role};
use airlock::intake::CommandType;
use common::serve::Harness;
use common::threats::{email_account, request_body, reset_password};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

const RECEIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/receivers/webhook_receiver.py");

/// The receiver on a loopback port; killed when dropped.
struct Receiver {
    child: Child,
    url: String,
    record: PathBuf,
    mode: PathBuf,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start(scratch: &Path, secret: &str) -> Receiver {
        let (record, mode) = (scratch.join("webhook-record.jsonl"), scratch.join("webhook-mode"));
        let args = ["--secret", secret, "--record", record.to_str().unwrap(), "--mode", mode.to_str().unwrap()];
        let (child, url) = common::start_receiver(RECEIVER, &args);
        Receiver { child, url, record, mode }
    }

    /// How it answers from now on: up, down, slow, garbage or redirect.
    fn set_mode(&self, mode: &str) {
        std::fs::write(&self.mode, mode).unwrap();
    }

    /// Every attempt it saw, oldest first.
    fn attempts(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The documents it took (answered 200 in time), oldest first, with their webhook-id.
    fn taken(&self) -> Vec<(String, Value)> {
        self.attempts()
            .into_iter()
            .filter(|attempt| attempt["status"] == 200 && attempt["mode"] != "slow")
            .map(|attempt| (attempt["id"].as_str().unwrap().to_string(), attempt["message"].clone()))
            .collect()
    }
}

fn secrets_file(directory: &Path) -> (String, PathBuf) {
    use base64::Engine as _;
    let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode([9u8; 32]));
    let path = directory.join("webhook-secrets");
    std::fs::write(&path, format!("# the receiver's secret\n{secret}\n")).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    (secret, path)
}

/// Every case of the log and its number of events, read straight from the JetStream stream.
async fn cases_in_log(client: &async_nats::Client) -> BTreeMap<String, u64> {
    let messages = common::read_all(client, "AIRLOCK_EVENTS", "airlock.event.case.>", 1).await;
    let mut cases = BTreeMap::new();
    for message in messages {
        for bytes in airlock::log::decode_commit(&message.payload).unwrap() {
            if let airlock::log::envelope::Decoded::Case { case_id, stream_version, .. } =
                airlock::log::envelope::decode(&bytes).unwrap()
            {
                let versions = cases.entry(case_id.as_str().to_string()).or_insert(0);
                *versions = stream_version.max(*versions);
            }
        }
    }
    cases
}

/// Case documents the receiver took: per case, its versions in the order they first arrived, and each (case,
/// version)'s webhook-ids.
type Arrivals = (BTreeMap<String, Vec<u64>>, BTreeMap<(String, u64), BTreeSet<String>>);

fn by_case(taken: &[(String, Value)]) -> Arrivals {
    let mut order: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut ids: BTreeMap<(String, u64), BTreeSet<String>> = BTreeMap::new();
    for (id, document) in taken {
        let Some(case_id) = document["data"]["case_id"].as_str() else { continue };
        let version = document["data"]["case_version"].as_u64().unwrap();
        let seen = order.entry(case_id.to_string()).or_default();
        if !seen.contains(&version) {
            seen.push(version);
        }
        ids.entry((case_id.to_string(), version)).or_default().insert(id.clone());
    }
    (order, ids)
}

async fn request(client: &async_nats::Client, command_id: &str, account: &str) -> Value {
    let body = request_body(command_id, account, reset_password(), "customer locked out", json!({}));
    let desk = Actor::new(Role::Intake, "desk");
    let answer = airlock::intake::nats::send_command(
        client,
        &desk,
        CommandType::RequestRecovery,
        body.to_string().into_bytes(),
        Duration::from_millis(common::WAIT_MS),
    )
    .await
    .unwrap();
    assert_eq!(answer["accepted"], true, "{answer}");
    answer
}

async fn prove(client: &async_nats::Client, data: &Path, case_id: &str) -> Value {
    common::wait_for(|| common::try_code_for(data, case_id).is_some(), "the code to reach the outbox");
    let code = common::code_for(data, case_id);
    let body = json!({ "version": 1, "command_id": format!("proof-{case_id}"), "case_id": case_id, "code": code });
    let page = Actor::new(Role::Owner, "verification-page");
    airlock::intake::nats::send_command(
        client,
        &page,
        CommandType::SubmitProof,
        body.to_string().into_bytes(),
        Duration::from_millis(common::WAIT_MS),
    )
    .await
    .unwrap()
}

// Proves the webhook delivery of NATS mode is at least once, from the log, in case order, with stable ids: ten cases
// (some proven, so cooling off) reach a receiver that verifies every signature; while the receiver is down, requests
// are still answered at once (delivery never holds intake back) and airlock keeps trying; airlock is then killed
// (SIGKILL) in the middle of it, the receiver comes back, and a new airlock process delivers everything that was
// left: every event of every case in the log, each (case, version) under exactly one webhook-id however often it was
// sent, each case's versions first arriving in order. No document holds a code or an owner's address; a replayed
// request, a forged body under a real signature and a request signed ten minutes ago are refused by the receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_the_webhook_in_case_order_across_a_crash_and_a_receiver_that_is_down() {
    let mut harness = Harness::new();
    let (secret, secrets) = secrets_file(harness.scratch.path());
    let receiver = Receiver::start(harness.scratch.path(), &secret);
    let accounts: Vec<Value> = (0..11).map(|index| email_account(&format!("acct-{index}"))).collect();
    common::import_accounts(&harness.data(), Value::Array(accounts));
    let mut options = vec![
        "--webhook",
        &receiver.url,
        "--webhook-secrets",
        secrets.to_str().unwrap(),
        "--webhook-attempts",
        "100",
        "--webhook-backoff-max",
        "300ms",
        "--webhook-timeout",
        "2s",
    ];
    harness.start_serve(&options, &[]);
    let client = harness.client().await;
    let data = harness.data();

    // Five cases while the receiver is up; two of them proven.
    let mut case_ids = Vec::new();
    for index in 0..5 {
        let answer = request(&client, &format!("up-{index}"), &format!("acct-{index}")).await;
        case_ids.push(answer["case_id"].as_str().unwrap().to_string());
    }
    for case_id in &case_ids[..2] {
        let answer = prove(&client, &data, case_id).await;
        assert_eq!(answer["status"], "cooling_off", "{answer}");
    }
    common::wait_for(
        || by_case(&receiver.taken()).0.get(&case_ids[1]).is_some_and(|versions| versions.len() >= 4),
        "the proven case's events at the receiver",
    );

    // The receiver goes down: five more cases are answered all the same, and airlock keeps trying.
    receiver.set_mode("down");
    for index in 5..10 {
        let answer = request(&client, &format!("down-{index}"), &format!("acct-{index}")).await;
        case_ids.push(answer["case_id"].as_str().unwrap().to_string());
    }
    let answer = prove(&client, &data, &case_ids[5]).await;
    assert_eq!(answer["status"], "cooling_off", "{answer}");
    common::wait_for(
        || receiver.attempts().iter().filter(|attempt| attempt["status"] == 503).count() >= 3,
        "airlock to try the receiver again while it is down",
    );
    let delivered_while_down = by_case(&receiver.taken()).0;
    assert!(
        case_ids[5..].iter().all(|case_id| !delivered_while_down.contains_key(case_id)),
        "the receiver took nothing while it was down, yet every request was answered"
    );

    // airlock dies in the middle of it; the receiver comes back; a new process goes on from the log.
    harness.kill_serve();
    receiver.set_mode("up");
    harness.start_serve(&options, &[]);
    let every_event_arrived = || async {
        let expected = cases_in_log(&client).await;
        let (order, _) = by_case(&receiver.taken());
        expected.len() == 10
            && expected.iter().all(|(case_id, versions)| {
                order.get(case_id).is_some_and(|seen| seen.iter().collect::<BTreeSet<_>>().len() as u64 == *versions)
            })
    };
    common::wait_until(every_event_arrived, "every event of the log at the receiver").await;
    let expected = cases_in_log(&client).await;
    let taken = receiver.taken();
    let (order, ids) = by_case(&taken);
    for (case_id, versions) in &expected {
        let seen = &order[case_id];
        assert_eq!(seen, &(1..=*versions).collect::<Vec<_>>(), "case {case_id}: first arrivals in case order");
        for version in 1..=*versions {
            let ids = &ids[&(case_id.clone(), version)];
            assert_eq!(ids.len(), 1, "case {case_id} version {version} under one webhook-id: {ids:?}");
        }
    }
    let all_ids: BTreeSet<&String> = taken.iter().map(|(id, _)| id).collect();
    let all_events: usize = expected.values().map(|versions| *versions as usize).sum();
    assert_eq!(all_ids.len(), all_events, "one id per event, and no other");
    assert!(taken.len() >= all_events);
    for (_, document) in &taken {
        let kind = document["type"].as_str().unwrap();
        assert!(kind.starts_with("case.") || kind.starts_with("alert."), "{document}");
    }

    // Nothing an outside system must not hold: no code, no owner's address.
    let codes: Vec<String> = case_ids.iter().filter_map(|case_id| common::try_code_for(&data, case_id)).collect();
    let record = std::fs::read_to_string(&receiver.record).unwrap();
    for code in &codes {
        assert!(!record.contains(code.as_str()), "a code reached the receiver");
    }
    assert!(!record.contains("@example.com"), "an owner's address reached the receiver");
    assert!(!record.contains("customer locked out"), "a requester's summary reached the receiver");

    // The receiver refuses what airlock did not send: a replay, a forged body, a stale signature.
    let attempts = receiver.attempts();
    let sent = attempts.iter().find(|attempt| attempt["status"] == 200).unwrap();
    let http = reqwest::Client::new();
    let post = |body: String, timestamp: String, signature: String| {
        http.post(&receiver.url)
            .header("webhook-id", sent["id"].as_str().unwrap())
            .header("webhook-timestamp", timestamp)
            .header("webhook-signature", signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (body, timestamp, signature) = (
        sent["body"].as_str().unwrap().to_string(),
        sent["timestamp"].as_str().unwrap().to_string(),
        sent["signature"].as_str().unwrap().to_string(),
    );
    let replayed = post(body.clone(), timestamp.clone(), signature.clone()).await.unwrap();
    assert_eq!(replayed.status(), 409, "a replayed request is refused");
    let forged = body.replace("\"status\":", "\"status\":\"executed\",\"was\":");
    let forged = post(forged, timestamp.clone(), signature.clone()).await.unwrap();
    assert_eq!(forged.status(), 401, "a forged body is refused");
    let stale = timestamp.parse::<u64>().unwrap() - 600;
    let secrets = airlock::directory::http::Secret::load_file(&harness.scratch.path().join("webhook-secrets")).unwrap();
    let id = sent["id"].as_str().unwrap();
    let stale_signature = airlock::directory::http::signature(&secrets, id, stale, body.as_bytes());
    let stale = post(body, stale.to_string(), stale_signature).await.unwrap();
    assert_eq!(stale.status(), 401, "a request signed ten minutes ago is refused");
    let log = harness.serve_log();
    assert!(!log.contains(&secret), "the signing secret is in the log");

    // An endpoint that keeps redirecting: after the last attempt each event is a dead letter in the dead-letter stream,
    // with the reason and the attempts, never the document.
    assert!(harness.stop_serve().success());
    receiver.set_mode("redirect");
    options[5] = "2";
    harness.start_serve(&options, &[]);
    let answer = request(&client, "redirected-1", "acct-10").await;
    let redirected = answer["case_id"].as_str().unwrap().to_string();
    let letters = common::read_all(&client, "AIRLOCK_DEADLETTER", "airlock.deadletter.webhook.>", 2).await;
    let letters: Vec<Value> = letters.iter().map(|letter| serde_json::from_slice(&letter.payload).unwrap()).collect();
    assert_eq!(letters.len(), 2, "the case's two events given up: {letters:#?}");
    for letter in &letters {
        assert_eq!(letter["case_id"], redirected.as_str(), "{letter}");
        assert_eq!(letter["attempts"], 2, "{letter}");
        assert!(letter["reason"].as_str().unwrap().contains("redirected (302 Found)"), "{letter}");
    }
    assert!(!serde_json::to_string(&letters).unwrap().contains("acct-10"), "a dead letter holds the document");
    harness.stop_serve();
}

/// The dead letters of the embedded store's webhooks, oldest first.
fn dead_letters(data: &Path) -> Vec<Value> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let Ok(connection) = rusqlite::Connection::open_with_flags(data.join("outward.db"), flags) else { return vec![] };
    let Ok(mut statement) = connection.prepare("SELECT record FROM webhook_dead_letters ORDER BY id") else {
        return vec![];
    };
    let records = statement.query_map([], |row| row.get::<_, String>(0)).unwrap();
    records.map(|record| serde_json::from_str(&record.unwrap()).unwrap()).collect()
}

fn submit_request(data: &Path, command_id: &str, account: &str) -> String {
    let body = request_body(command_id, account, reset_password(), "customer locked out", json!({}));
    let (code, reply) = common::submit(data, "intake:desk", "request-recovery", body.to_string().as_bytes());
    assert_eq!(code, 0, "{reply}");
    reply["case_id"].as_str().unwrap().to_string()
}

// Proves, in the embedded store, that a receiver that answers with garbage, too slowly, or with a redirect is tried
// again (each event exactly the configured two attempts) and then given up: each of its events a dead letter in
// outward.db with the reason and the attempts, never the document; and that the endpoint's next events follow at
// once (nothing stalls behind a bad receiver). The position lives in the data directory: events appended while
// airlock was stopped are delivered when it starts again, and nothing delivered before is sent again.
#[test]
fn a_receiver_answering_garbage_slowly_or_with_a_redirect_is_retried_then_dead_lettered_and_stalls_nothing() {
    let mut harness = Harness::new();
    let (secret, secrets) = secrets_file(harness.scratch.path());
    let receiver = Receiver::start(harness.scratch.path(), &secret);
    let accounts: Vec<Value> = (0..6).map(|index| email_account(&format!("acct-{index}"))).collect();
    common::import_accounts(&harness.data(), Value::Array(accounts));
    let options = [
        "--webhook",
        &receiver.url,
        "--webhook-secrets",
        secrets.to_str().unwrap(),
        "--webhook-attempts",
        "2",
        "--webhook-backoff-max",
        "100ms",
        "--webhook-timeout",
        "1s",
    ];
    harness.start_embedded_serve(&options, &[]);
    let data = harness.data();
    common::wait_for(|| data.join("outward.db").exists(), "the webhook's position to be kept");

    let mut given_up = 0;
    for (index, (mode, reason)) in
        [("garbage", "request failed"), ("slow", "timed out"), ("redirect", "redirected (302 Found)")]
            .into_iter()
            .enumerate()
    {
        receiver.set_mode(mode);
        let case_id = submit_request(&data, &format!("bad-{index}"), &format!("acct-{index}"));
        // Each case of a reset is two events: requested, and its code sent.
        given_up += 2;
        common::wait_for(|| dead_letters(&data).len() >= given_up, &format!("the {mode} receiver's dead letters"));
        let letters = dead_letters(&data);
        assert_eq!(letters.len(), given_up, "{letters:#?}");
        for letter in &letters[given_up - 2..] {
            assert_eq!(letter["case_id"], case_id.as_str(), "{letter}");
            assert_eq!(letter["attempts"], 2, "{letter}");
            assert!(letter["reason"].as_str().unwrap().contains(reason), "{mode}: {letter}");
            let attempts = receiver.attempts();
            let tried: Vec<&Value> = attempts.iter().filter(|attempt| attempt["id"] == letter["event_id"]).collect();
            assert_eq!(tried.len(), 2, "{mode}: tried twice: {tried:?}");
            assert!(tried.iter().all(|attempt| attempt["mode"] == mode && attempt["verified"] == true));
        }
        let text = serde_json::to_string(&letters).unwrap();
        assert!(!text.contains("acct-") && !text.contains("@example.com"), "a dead letter holds the document: {text}");
    }

    // Good again: the next case's events arrive, nothing waits behind the ones given up.
    receiver.set_mode("up");
    let good = submit_request(&data, "good-1", "acct-3");
    common::wait_for(|| by_case(&receiver.taken()).0.get(&good).is_some_and(|v| v.len() == 2), "the next events");

    // Stopped, a case opened meanwhile, started again: it arrives, and nothing taken before is sent again.
    assert!(harness.stop_serve().success());
    let later = submit_request(&data, "later-1", "acct-4");
    harness.start_embedded_serve(&options, &[]);
    common::wait_for(|| by_case(&receiver.taken()).0.get(&later).is_some_and(|v| v.len() == 2), "the later events");
    let taken = receiver.taken();
    let ids: BTreeSet<&String> = taken.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), taken.len(), "nothing was sent twice: {taken:#?}");
    assert_eq!(taken.len(), 4);
    assert!(dead_letters(&data).len() == given_up);
    harness.stop_serve();
}
