//! NATS as a THREATS backend: a real nats-server on loopback and `airlock serve --nats`, driven the way a support
//! system, the owner's verification page, a review console and an operator's console would drive it. Each command is
//! JSON published on its intake subject `airlock.intake.<role>.<actor>.<command>`; each answer is read from
//! `airlock.result.<role>.<actor>` (matched to its command by the `Airlock-Intake-Sequence` header); refused input is
//! also read back from the dead-letter stream; a case's status comes from the `airlock.query.<role>.<actor>`
//! request/reply. Time moves forward by restarting `airlock serve` with the debug-only `AIRLOCK_CLOCK_AHEAD`; an
//! executed change is rolled back through the operator's `roll_back` subject (`airlock rollback` serves only the
//! embedded store); `airlock outbox` and `airlock audit verify --nats` run as an operator would run them.
//!
//! airlock works in the background here: notices go out after the answer and the projector follows the log a moment
//! behind, so a scenario settles before it reads airlock's files. A test ends by searching everything airlock
//! published or printed (answers, dead letters, the event stream, serve's log, `airlock outbox`, the projection file)
//! for every code an owner received: a code reaches the owner's outbox and nothing else.

use crate::common::serve::Harness;
use crate::driver::*;
use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Every answer airlock published on `airlock.result.>`, by the intake stream sequence of the message it answers.
type Answers = Arc<Mutex<HashMap<u64, Vec<u8>>>>;

/// One nats-server, one `airlock serve --nats` on its data directory, and the ways the test talks to them.
pub struct Airlock {
    harness: Harness,
    client: async_nats::Client,
    context: jetstream::Context,
    answers: Answers,
    /// How many messages the test has published, for their broker message ids.
    published: AtomicU64,
}

impl Airlock {
    /// Publishes `body` as `sender` ("role:actor") on the intake subject of `command`, and returns the intake
    /// stream's sequence of the message, which airlock's answer carries.
    async fn publish(&self, sender: &str, command: &str, body: &[u8]) -> u64 {
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
    async fn answer(&self, sequence: u64) -> Vec<u8> {
        let what = format!("an answer to intake message {sequence}");
        eventually(&what, || self.answers.lock().unwrap().get(&sequence).cloned()).await
    }

    /// Every message a stream holds, oldest first.
    async fn stream_messages(&self, name: &str) -> Vec<jetstream::message::StreamMessage> {
        let stream = self.context.get_stream(name).await.unwrap();
        let state = stream.get_info().await.unwrap().state;
        let mut messages = Vec::new();
        for sequence in state.first_sequence.max(1)..=state.last_sequence {
            messages.push(stream.get_raw_message(sequence).await.unwrap());
        }
        messages
    }
}

impl Driver for Airlock {
    /// Imports `accounts` and starts `airlock serve --nats`, with an answer collector subscribed to every result.
    async fn start(accounts: Vec<Value>) -> Airlock {
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

    fn data(&self) -> PathBuf {
        self.harness.data()
    }

    fn airlock(&self, args: &[&str]) -> Output {
        self.harness.airlock(args)
    }

    async fn send_raw(&self, sender: &str, command: &str, body: &[u8]) -> Vec<u8> {
        let sequence = self.publish(sender, command, body).await;
        self.answer(sequence).await
    }

    /// Publishes every body at once, then waits for all the answers.
    async fn burst(&self, sender: &str, command: &str, bodies: &[Value]) -> Vec<Value> {
        let payloads: Vec<Vec<u8>> = bodies.iter().map(|body| body.to_string().into_bytes()).collect();
        let sequences =
            futures::future::join_all(payloads.iter().map(|payload| self.publish(sender, command, payload))).await;
        let mut answers = Vec::new();
        for sequence in sequences {
            answers.push(serde_json::from_slice(&self.answer(sequence).await).unwrap());
        }
        answers
    }

    /// Over the operator's status query (read from the event log, not the projection).
    async fn status(&self, case_id: &str) -> String {
        let answer = self.query(OPERATOR, case_id).await.unwrap();
        answer["status"].as_str().unwrap_or_else(|| panic!("no status: {answer}")).to_string()
    }

    async fn query(&self, asker: &str, case_id: &str) -> Option<Value> {
        let (role, actor) = asker.split_once(':').expect("an asker is role:actor");
        let payload = serde_json::to_vec(&json!({ "case_id": case_id })).unwrap();
        let reply = self.client.request(format!("airlock.query.{role}.{actor}"), payload.into()).await.unwrap();
        Some(serde_json::from_slice(&reply.payload).unwrap())
    }

    async fn dead_letters(&self) -> Option<Vec<DeadLetter>> {
        let header = |message: &jetstream::message::StreamMessage, name: &str| {
            message.headers.get(name).map_or(String::new(), |value| value.as_str().to_string())
        };
        let letters = self.stream_messages("AIRLOCK_DEADLETTER").await.into_iter().map(|message| DeadLetter {
            subject: message.subject.to_string(),
            reason_code: header(&message, "Airlock-Reason-Code"),
            original_subject: header(&message, "Airlock-Original-Subject"),
            payload: message.payload.to_vec(),
        });
        Some(letters.collect())
    }

    /// Every intake message acknowledged (which airlock does only once the message's notices went out) and every
    /// event of the event stream projected into projection.db.
    async fn settle(&self) {
        crate::common::wait_until(|| self.settled(), "airlock to settle").await;
    }

    /// Once it arrived: notices go out after the answer.
    async fn code_for(&self, case_id: &str) -> String {
        let what = format!("a code for {case_id}");
        eventually(&what, || self.messages_of(case_id).iter().rev().find_map(|message| code_in(&message.body))).await
    }

    /// Stops `airlock serve` gracefully and starts it again with its clock run ahead, which it keeps from then on.
    async fn run_ahead(&mut self, clock_ahead: &str, what: &str, done: impl AsyncFn(&Self) -> bool) {
        let stopped = self.harness.stop_serve();
        assert_eq!(stopped.code(), Some(0), "serve did not stop cleanly:\n{}", self.harness.serve_log());
        self.harness.start_serve(&[], &[("AIRLOCK_CLOCK_AHEAD", clock_ahead)]);
        let this = &*self;
        crate::common::wait_until(|| done(this), what).await;
    }

    /// On the operator's `roll_back` subject.
    async fn roll_back(&self, case_id: &str, reason: &str) {
        let undo = json!({ "version": 1, "command_id": "undo-1", "case_id": case_id, "reason": reason });
        let reply = self.send(OPERATOR, "roll_back", &undo).await;
        assert_eq!((&reply["accepted"], &reply["status"]), (&json!(true), &json!("rolled_back")), "{reply}");
    }

    /// `airlock audit verify --nats URL`: the projection `airlock serve` keeps against the JetStream log.
    fn audit_verify(&self) -> Output {
        self.harness.airlock(&["audit", "verify", "--nats", &self.harness.nats.url()])
    }

    fn log(&self) -> String {
        self.harness.serve_log()
    }

    async fn finish(mut self, secrets: &[String]) {
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
        assert_only_in_mailbox(&secrets, &places, &mailbox);
    }
}

impl Airlock {
    /// Whether every intake message is acknowledged and every event projected.
    async fn settled(&self) -> bool {
        {
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
            pending == 0 && ack_pending == 0 && projected as u64 >= events.state.last_sequence
        }
    }
}
