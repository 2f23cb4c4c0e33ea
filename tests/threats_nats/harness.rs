//! The harness of the NATS-mode THREATS tests: accounts and commands as JSON, and `Airlock`, a nats-server with
//! `airlock serve` that the scenarios drive and observe only through public interfaces (see `main.rs`).

use crate::common::WAIT_MS;
use crate::common::serve::Harness;
pub use crate::common::threats::*;
use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The authenticator secret of the TOTP account (RFC 4648's example), as a phone app would be enrolled with it.
pub const TOTP_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// The support desk, the owner's verification page and an operator's console, as their subjects name them.
pub const DESK: &str = "intake:desk";
pub const PAGE: &str = "owner:page";
pub const OPERATOR: &str = "operator:ops";

/// What the owners are told when a change is scheduled, and when it was applied.
pub const SCHEDULED: &str = "A change to your account is scheduled";
pub const CHANGED: &str = "Your account was changed";

// ---------------------------------------------------------------------------------------------------------------
// Accounts and commands.
// ---------------------------------------------------------------------------------------------------------------

/// What the owner's authenticator app shows now.
pub fn totp_now() -> String {
    use airlock::directory::totp::{TotpSecret, hotp, step_at};
    let secret = TotpSecret::from_base32(TOTP_SECRET).unwrap();
    hotp(&secret, step_at(airlock::core::ids::UnixMs(now_ms() as u64)), 6)
}

/// Whether `haystack` holds `number` as a number of its own (no digit right before or after it), so that a longer
/// number (a timestamp in milliseconds) that happens to contain the digits does not count.
pub fn holds_number(haystack: &[u8], number: &str) -> bool {
    let needle = number.as_bytes();
    haystack.windows(needle.len()).enumerate().any(|(start, window)| {
        let before = start.checked_sub(1).map(|index| haystack[index]);
        let after = haystack.get(start + needle.len());
        window == needle
            && !before.is_some_and(|byte| byte.is_ascii_digit())
            && !after.is_some_and(|byte| byte.is_ascii_digit())
    })
}

/// Polls `probe` until it returns something, failing the test after `WAIT_MS`.
pub async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// What the test observes.
// ---------------------------------------------------------------------------------------------------------------

/// A message the embedded notifier handed to its "provider".
#[derive(Clone, Debug)]
pub struct Message {
    pub case_id: String,
    pub address: String,
    pub subject: String,
    pub body: String,
}

/// A case as the projection shows it.
#[derive(Clone, Debug)]
pub struct Case {
    pub summary: String,
    pub action_hash: String,
    pub new_destination: Option<String>,
    pub decision: Option<Value>,
    pub cooling_off_ends_at: Option<i64>,
    pub notified: Value,
    pub authorization: Option<String>,
}

/// One row of a case's timeline.
#[derive(Clone, Debug)]
pub struct Entry {
    pub at: i64,
    pub actor: String,
    pub event_type: String,
    pub detail: String,
}

/// A refusal kept in the dead-letter stream.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    pub subject: String,
    pub reason_code: String,
    pub original_subject: String,
    pub payload: Vec<u8>,
}

/// Every answer airlock published on `airlock.result.>`, by the intake stream sequence of the message it answers.
type Answers = Arc<Mutex<HashMap<u64, Vec<u8>>>>;

/// One nats-server, one `airlock serve --nats` on its data directory, and the ways the test talks to them.
pub struct Airlock {
    pub harness: Harness,
    pub client: async_nats::Client,
    pub context: jetstream::Context,
    pub answers: Answers,
    /// How many messages the test has published, for their broker message ids.
    pub published: AtomicU64,
}

impl Airlock {
    /// Imports `accounts` and starts `airlock serve --nats`, with an answer collector subscribed to every result.
    pub async fn start(accounts: Vec<Value>) -> Airlock {
        let mut harness = Harness::new();
        crate::common::import_accounts(&harness.data(), Value::Array(accounts));
        harness.start_serve(&[], &[]);
        let client = harness.client().await;
        let mut results = client.subscribe("airlock.result.>").await.unwrap();
        client.flush().await.unwrap();
        let answers = Answers::default();
        let collected = answers.clone();
        tokio::spawn(async move {
            while let Some(message) = results.next().await {
                let sequence = message
                    .headers
                    .as_ref()
                    .and_then(|headers| headers.get("Airlock-Intake-Sequence"))
                    .and_then(|value| value.as_str().parse::<u64>().ok());
                if let Some(sequence) = sequence {
                    collected.lock().unwrap().insert(sequence, message.payload.to_vec());
                }
            }
        });
        let context = jetstream::new(client.clone());
        Airlock { harness, client, context, answers, published: AtomicU64::new(0) }
    }

    pub fn data(&self) -> PathBuf {
        self.harness.data()
    }

    /// Stops `airlock serve` gracefully and starts it again with `environment`.
    pub fn restart(&mut self, environment: &[(&str, &str)]) {
        let stopped = self.harness.stop_serve();
        assert_eq!(stopped.code(), Some(0), "serve did not stop cleanly:\n{}", self.harness.serve_log());
        self.harness.start_serve(&[], environment);
    }

    /// Publishes `body` as `sender` ("role:actor") on the intake subject of `command`, and returns the intake
    /// stream's sequence of the message, which airlock's answer carries.
    pub async fn publish(&self, sender: &str, command: &str, body: &[u8]) -> u64 {
        let (role, actor) = sender.split_once(':').expect("a sender is role:actor");
        // Each publish is a new message to the broker (its own message id), even when it repeats a command id: a
        // sender retrying a command is what airlock, not the broker, must recognize.
        let message_id = format!("test-{}", self.published.fetch_add(1, Ordering::Relaxed));
        let message = jetstream::message::PublishMessage::build().payload(body.to_vec().into()).message_id(message_id);
        let subject = format!("airlock.intake.{role}.{actor}.{command}");
        let acknowledged = self.context.send_publish(subject, message).await.unwrap().await.unwrap();
        assert!(!acknowledged.duplicate, "the broker took a test message for a duplicate");
        acknowledged.sequence
    }

    /// Airlock's answer to the intake message at `sequence`, exactly as published.
    pub async fn answer(&self, sequence: u64) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
        loop {
            if let Some(answer) = self.answers.lock().unwrap().get(&sequence).cloned() {
                return answer;
            }
            assert!(Instant::now() < deadline, "no answer to intake message {sequence}:\n{}", self.harness.serve_log());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn send_raw(&self, sender: &str, command: &str, body: &[u8]) -> Vec<u8> {
        let sequence = self.publish(sender, command, body).await;
        self.answer(sequence).await
    }

    pub async fn send(&self, sender: &str, command: &str, body: &Value) -> Value {
        serde_json::from_slice(&self.send_raw(sender, command, body.to_string().as_bytes()).await).unwrap()
    }

    /// Publishes every body at once, then waits for all the answers, in the order of `bodies`.
    pub async fn burst(&self, sender: &str, command: &str, bodies: &[Value]) -> Vec<Value> {
        let payloads: Vec<Vec<u8>> = bodies.iter().map(|body| body.to_string().into_bytes()).collect();
        let sequences =
            futures::future::join_all(payloads.iter().map(|payload| self.publish(sender, command, payload))).await;
        let mut answers = Vec::new();
        for sequence in sequences {
            answers.push(serde_json::from_slice(&self.answer(sequence).await).unwrap());
        }
        answers
    }

    /// Opens a case as `sender` and returns its id.
    pub async fn open(&self, sender: &str, body: Value) -> String {
        let reply = self.send(sender, "request_recovery", &body).await;
        assert_eq!((&reply["accepted"], &reply["status"]), (&json!(true), &json!("received")), "{reply}");
        reply["case_id"].as_str().expect("the request opened a case").to_string()
    }

    /// The owner's answer at the verification page, sent on the subject the page publishes on.
    pub async fn prove(&self, case_id: &str, command_id: &str, code: &str) -> Value {
        let proof = json!({ "version": 1, "command_id": command_id, "case_id": case_id, "code": code });
        self.send(PAGE, "submit_proof", &proof).await
    }

    pub async fn prove_with_totp(&self, case_id: &str, command_id: &str, code: &str, totp: &str) -> Value {
        let proof = json!({ "version": 1, "command_id": command_id, "case_id": case_id, "code": code, "totp": totp });
        self.send(PAGE, "submit_proof", &proof).await
    }

    /// A reviewer's decision, on the subject a review console publishes on.
    pub async fn review(&self, reviewer: &str, body: Value) -> Value {
        self.send(&format!("reviewer:{reviewer}"), "review_decision", &body).await
    }

    /// A case's status over the NATS query, as `asker` ("role:actor") sees it.
    pub async fn query(&self, asker: &str, case_id: &str) -> Value {
        let (role, actor) = asker.split_once(':').expect("an asker is role:actor");
        let payload = serde_json::to_vec(&json!({ "case_id": case_id })).unwrap();
        let reply = self.client.request(format!("airlock.query.{role}.{actor}"), payload.into()).await.unwrap();
        serde_json::from_slice(&reply.payload).unwrap()
    }

    /// A case's state, as an operator sees it (read from the event log, not the projection).
    pub async fn status(&self, case_id: &str) -> String {
        let answer = self.query(OPERATOR, case_id).await;
        answer["status"].as_str().unwrap_or_else(|| panic!("no status: {answer}")).to_string()
    }

    pub async fn wait_for_status(&self, case_id: &str, wanted: &str) {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
        loop {
            let now = self.status(case_id).await;
            if now == wanted {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "case {case_id} is {now}, never {wanted}:\n{}",
                self.harness.serve_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until airlock is done with everything sent so far: every intake message acknowledged (which airlock does
    /// only once the message's notices went out) and every event of the event stream projected into projection.db.
    pub async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
        loop {
            let intake = self.context.get_stream("AIRLOCK_INTAKE").await.unwrap();
            // One consumer per sending role (issue 15, item 1): all of them must be idle.
            let (mut pending, mut ack_pending) = (0, 0);
            for role in ["intake", "owner", "reviewer", "operator"] {
                let consumer = intake.consumer_info(format!("airlock-intake-{role}")).await.unwrap();
                pending += consumer.num_pending;
                ack_pending += consumer.num_ack_pending;
            }
            let events = self.context.get_stream("AIRLOCK_EVENTS").await.unwrap().get_info().await.unwrap();
            let projected: i64 = self
                .read_only("projection.db")
                .query_row("SELECT last_sequence FROM checkpoint", [], |row| row.get(0))
                .unwrap();
            if pending == 0 && ack_pending == 0 && projected as u64 >= events.state.last_sequence {
                return;
            }
            assert!(Instant::now() < deadline, "airlock never settled:\n{}", self.harness.serve_log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `airlock outbox --json [--to ADDRESS]`: what was sent, codes masked (an operator's view).
    pub fn outbox(&self, to: Option<&str>) -> Vec<Value> {
        let mut args = vec!["outbox", "--json"];
        if let Some(address) = to {
            args.extend(["--to", address]);
        }
        let output = self.harness.airlock(&args);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<Value>(&output.stdout).unwrap()["items"].as_array().unwrap().clone()
    }

    pub fn read_only(&self, file: &str) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(self.data().join(file), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap()
    }

    /// Every message in the outbox with its full body, oldest first (read-only: what the mail provider receives).
    pub fn messages(&self) -> Vec<Message> {
        let connection = self.read_only("directory.db");
        let mut statement =
            connection.prepare("SELECT case_id, address, subject, body FROM outbox ORDER BY sent_at, rowid").unwrap();
        statement
            .query_map([], |row| {
                Ok(Message { case_id: row.get(0)?, address: row.get(1)?, subject: row.get(2)?, body: row.get(3)? })
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    pub fn messages_of(&self, case_id: &str) -> Vec<Message> {
        self.messages().into_iter().filter(|message| message.case_id == case_id).collect()
    }

    /// The one-time code the owner received for a case (from the last message that carries one), once it arrived:
    /// notices go out after the answer.
    pub async fn code_for(&self, case_id: &str) -> String {
        let what = format!("a code for {case_id}");
        eventually(&what, || self.messages_of(case_id).iter().rev().find_map(|message| code_in(&message.body))).await
    }

    /// A case as the projection shows it (call `settle` first: the projector follows the log).
    pub fn case(&self, case_id: &str) -> Case {
        let connection = self.read_only("projection.db");
        connection
            .query_row(
                "SELECT summary, action_hash, new_destination, decision, cooling_off_ends_at, notified, authorization
                 FROM cases WHERE case_id = ?1",
                [case_id],
                |row| {
                    let decision: Option<String> = row.get(3)?;
                    let notified: String = row.get(5)?;
                    Ok(Case {
                        summary: row.get(0)?,
                        action_hash: row.get(1)?,
                        new_destination: row.get(2)?,
                        decision: decision.map(|text| serde_json::from_str(&text).unwrap()),
                        cooling_off_ends_at: row.get(4)?,
                        notified: serde_json::from_str(&notified).unwrap(),
                        authorization: row.get(6)?,
                    })
                },
            )
            .unwrap_or_else(|error| panic!("case {case_id} is not in the projection: {error}"))
    }

    pub fn timeline(&self, case_id: &str) -> Vec<Entry> {
        let connection = self.read_only("projection.db");
        let mut statement = connection
            .prepare("SELECT at, actor, event_type, detail FROM timeline WHERE case_id = ?1 ORDER BY case_sequence")
            .unwrap();
        statement
            .query_map([case_id], |row| {
                Ok(Entry { at: row.get(0)?, actor: row.get(1)?, event_type: row.get(2)?, detail: row.get(3)? })
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    pub fn events(&self, case_id: &str) -> Vec<String> {
        self.timeline(case_id).into_iter().map(|entry| entry.event_type).collect()
    }

    /// How long the case's cooling-off lasts: from the event that started it to the end it set.
    pub fn cooling_off_ms(&self, case_id: &str) -> i64 {
        let started = self.timeline(case_id).into_iter().find(|entry| entry.event_type == "cooling_off_started");
        let started =
            started.unwrap_or_else(|| panic!("{case_id} never started cooling off: {:?}", self.events(case_id)));
        self.case(case_id).cooling_off_ends_at.expect("a cooling-off end") - started.at
    }

    /// The account's destinations in the directory as (address, revoked), read-only: what a change did.
    pub fn destinations(&self, account_id: &str) -> Vec<(String, bool)> {
        let connection = self.read_only("directory.db");
        let mut statement = connection
            .prepare("SELECT address, revoked FROM destinations WHERE account_id = ?1 ORDER BY rowid")
            .unwrap();
        statement.query_map([account_id], |row| Ok((row.get(0)?, row.get(1)?))).unwrap().map(Result::unwrap).collect()
    }

    /// Every message a stream holds, oldest first.
    pub async fn stream_messages(&self, name: &str) -> Vec<jetstream::message::StreamMessage> {
        let stream = self.context.get_stream(name).await.unwrap();
        let state = stream.get_info().await.unwrap().state;
        let mut messages = Vec::new();
        for sequence in state.first_sequence.max(1)..=state.last_sequence {
            messages.push(stream.get_raw_message(sequence).await.unwrap());
        }
        messages
    }

    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        let header = |message: &jetstream::message::StreamMessage, name: &str| {
            message.headers.get(name).map_or(String::new(), |value| value.as_str().to_string())
        };
        self.stream_messages("AIRLOCK_DEADLETTER")
            .await
            .into_iter()
            .map(|message| DeadLetter {
                subject: message.subject.to_string(),
                reason_code: header(&message, "Airlock-Reason-Code"),
                original_subject: header(&message, "Airlock-Original-Subject"),
                payload: message.payload.to_vec(),
            })
            .collect()
    }

    /// Ends the test: waits for airlock to settle, checks that no code an owner received (nor any of `secrets`)
    /// appears anywhere but the owner's outbox, and stops `airlock serve`, which must exit cleanly.
    pub async fn finish(mut self, secrets: &[String]) {
        self.settle().await;
        let mut secrets = secrets.to_vec();
        secrets.extend(self.messages().iter().filter_map(|message| code_in(&message.body)));
        let mut places: Vec<(String, Vec<u8>)> = Vec::new();
        for stream in ["AIRLOCK_RESULTS", "AIRLOCK_DEADLETTER", "AIRLOCK_EVENTS"] {
            for message in self.stream_messages(stream).await {
                let mut bytes = format!("{} {:?} ", message.subject, message.headers).into_bytes();
                bytes.extend_from_slice(&message.payload);
                places.push((format!("{stream} message {}", message.sequence), bytes));
            }
        }
        // The search must be able to fail: every answer the test read is among the places searched.
        let answered = self.answers.lock().unwrap().len();
        let results = places.iter().filter(|(place, _)| place.starts_with("AIRLOCK_RESULTS")).count();
        assert!(results >= answered, "the results stream holds {results} answers, the test read {answered}");
        let outbox = self.harness.airlock(&["outbox", "--json"]);
        assert!(outbox.status.success(), "{}", String::from_utf8_lossy(&outbox.stderr));
        places.push(("airlock outbox".into(), outbox.stdout));
        let stopped = self.harness.stop_serve();
        assert_eq!(stopped.code(), Some(0), "serve did not stop cleanly:\n{}", self.harness.serve_log());
        for file in ["projection.db", "projection.db-wal"] {
            if let Ok(bytes) = std::fs::read(self.data().join(file)) {
                places.push((file.into(), bytes));
            }
        }
        for entry in std::fs::read_dir(self.harness.scratch.path()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("serve-") && name.ends_with(".log") {
                places.push((name, without_timestamps(&std::fs::read_to_string(&path).unwrap()).into_bytes()));
            }
        }
        // And the search finds a code where it is: in the owner's outbox, in directory.db (or its write-ahead log).
        let mut mailbox = std::fs::read(self.data().join("directory.db")).unwrap();
        mailbox.extend(std::fs::read(self.data().join("directory.db-wal")).unwrap_or_default());
        for secret in &secrets {
            for (place, bytes) in &places {
                assert!(!holds_number(bytes, secret), "a secret the owner received is in {place}");
            }
        }
        for code in secrets.iter().filter(|secret| secret.len() == 8) {
            assert!(holds_number(&mailbox, code), "the search cannot find a code even in the outbox");
        }
    }
}

/// serve's log without the time at the start of each line, whose microseconds could read as a 6-digit secret.
pub fn without_timestamps(log: &str) -> String {
    log.lines()
        .map(|line| match line.split_once(' ') {
            Some((first, rest)) if first.contains('T') && first.contains('Z') => rest,
            Some(_) | None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}
