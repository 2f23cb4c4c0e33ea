//! `Driver`: what a THREATS scenario does to airlock and what it observes, whichever backend runs it (the embedded
//! store in `embedded.rs`, NATS in `nats.rs`), and what the scenarios share: constants, the rows they read, and the
//! leak search's helpers.
//!
//! A backend implements how a command reaches airlock and how its answer comes back, how a case's status is read, how
//! time is run ahead, how a change is rolled back and audited, and how a test ends. Everything read from airlock's
//! SQLite files (read-only, as a mail provider or an auditor's query would) is the same on both backends and is
//! provided here. What only one backend can show (the desk's status query and the dead-letter stream, on NATS) is an
//! `Option`, `None` where the backend has no such interface: a scenario checks it where it is `Some`.

pub use crate::common::threats::*;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Output;

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The authenticator secret of the TOTP account (RFC 4648's example), as a phone app would be enrolled with it.
pub const TOTP_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// The support desk, the owner's verification page and an operator's console, as they name themselves.
pub const DESK: &str = "intake:desk";
pub const PAGE: &str = "owner:page";
pub const OPERATOR: &str = "operator:ops";

/// What the owners are told when a change is scheduled, and when it was applied.
pub const SCHEDULED: &str = "A change to your account is scheduled";
pub const CHANGED: &str = "Your account was changed";

/// What the owner's authenticator app shows now (`airlock::directory::totp` only computes what the app would show).
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

/// A log without the time at the start of each line, whose microseconds could read as a 6-digit secret.
pub fn without_timestamps(log: &str) -> String {
    log.lines()
        .map(|line| match line.split_once(' ') {
            Some((first, rest)) if first.contains('T') && first.contains('Z') => rest,
            Some(_) | None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls `probe` until it returns something, failing the test after `WAIT_MS`.
pub async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let mut found = None;
    let look = || {
        found = probe();
        std::future::ready(found.is_some())
    };
    crate::common::wait_until(look, what).await;
    found.expect("wait_until returns once the probe found something")
}

/// Searches `places` for every secret (none may be there) and `mailbox` for every 8-digit code (each must be there:
/// the search must be able to find what it looks for). How each backend ends a test (`Driver::finish`).
pub fn assert_only_in_mailbox(secrets: &[String], places: &[(String, Vec<u8>)], mailbox: &[u8]) {
    for secret in secrets {
        for (place, bytes) in places {
            assert!(!holds_number(bytes, secret), "a secret the owner received is in {place}");
        }
    }
    for code in secrets.iter().filter(|secret| secret.len() == 8) {
        assert!(holds_number(mailbox, code), "the search cannot find a code even in the outbox");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// What a test reads.
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
    pub status: String,
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

/// A refusal kept in the dead-letter stream (NATS).
#[derive(Clone, Debug)]
pub struct DeadLetter {
    pub subject: String,
    pub reason_code: String,
    pub original_subject: String,
    pub payload: Vec<u8>,
}

// ---------------------------------------------------------------------------------------------------------------
// The driver.
// ---------------------------------------------------------------------------------------------------------------

/// One deployment of airlock with its accounts, driven only through public interfaces. Commands are named as on the
/// NATS intake subjects (`request_recovery`, `submit_proof`, ...) and senders as `role:actor`.
pub trait Driver: Sized {
    /// Imports `accounts` (the `accounts` array of a directory import file) with `airlock directory import` and makes
    /// airlock ready to take commands.
    async fn start(accounts: Vec<Value>) -> Self;

    /// The data directory, whose SQLite files the test reads read-only.
    fn data(&self) -> PathBuf;

    /// Runs the `airlock` binary on this deployment's data directory, as an operator would.
    fn airlock(&self, args: &[&str]) -> Output;

    /// Sends `body` as `sender` ("role:actor"): airlock's answer exactly as it wrote it.
    async fn send_raw(&self, sender: &str, command: &str, body: &[u8]) -> Vec<u8>;

    /// Sends every body at once, then returns all the answers, in the order of `bodies`.
    async fn burst(&self, sender: &str, command: &str, bodies: &[Value]) -> Vec<Value>;

    /// A case's state, as an operator sees it.
    async fn status(&self, case_id: &str) -> String;

    /// A case's status as `asker` ("role:actor") gets it from the status query, where the backend has one.
    async fn query(&self, asker: &str, case_id: &str) -> Option<Value>;

    /// Every refusal kept in the dead-letter stream, where the backend keeps them.
    async fn dead_letters(&self) -> Option<Vec<DeadLetter>>;

    /// Waits until airlock is done with everything sent so far (its notices sent, its projection caught up).
    async fn settle(&self);

    /// The one-time code the owner received for a case (from the last message that carries one).
    async fn code_for(&self, case_id: &str) -> String;

    /// Runs airlock's timers with its clock `clock_ahead` (a humantime duration, debug builds' `AIRLOCK_CLOCK_AHEAD`)
    /// until `done` holds (`what` says what the test waits for).
    async fn run_ahead(&mut self, clock_ahead: &str, what: &str, done: impl AsyncFn(&Self) -> bool);

    /// An operator rolls back an executed case, with `reason`, and airlock says it is rolled back.
    async fn roll_back(&self, case_id: &str, reason: &str);

    /// `airlock audit verify` against this deployment's log.
    fn audit_verify(&self) -> Output;

    /// What airlock wrote about itself (serve's log), for failure messages.
    fn log(&self) -> String;

    /// Ends the test: waits for airlock to settle, checks that no code an owner received (nor any of `secrets`)
    /// appears anywhere but the owner's outbox, and stops what runs, which must exit cleanly.
    async fn finish(self, secrets: &[String]);

    // -----------------------------------------------------------------------------------------------------------
    // Provided: commands as the desk, the owner's page and reviewers send them.
    // -----------------------------------------------------------------------------------------------------------

    async fn send(&self, sender: &str, command: &str, body: &Value) -> Value {
        serde_json::from_slice(&self.send_raw(sender, command, body.to_string().as_bytes()).await).unwrap()
    }

    /// Opens a case as `sender` and returns its id.
    async fn open(&self, sender: &str, body: Value) -> String {
        let reply = self.send(sender, "request_recovery", &body).await;
        assert_eq!((&reply["accepted"], &reply["status"]), (&json!(true), &json!("received")), "{reply}");
        reply["case_id"].as_str().expect("the request opened a case").to_string()
    }

    /// The owner's answer at the verification page, sent the way the page sends it.
    async fn prove(&self, case_id: &str, command_id: &str, code: &str) -> Value {
        let proof = json!({ "version": 1, "command_id": command_id, "case_id": case_id, "code": code });
        self.send(PAGE, "submit_proof", &proof).await
    }

    async fn prove_with_totp(&self, case_id: &str, command_id: &str, code: &str, totp: &str) -> Value {
        let proof = json!({ "version": 1, "command_id": command_id, "case_id": case_id, "code": code, "totp": totp });
        self.send(PAGE, "submit_proof", &proof).await
    }

    /// A reviewer's decision, the way a review console sends it.
    async fn review(&self, reviewer: &str, body: Value) -> Value {
        self.send(&format!("reviewer:{reviewer}"), "review_decision", &body).await
    }

    async fn wait_for_status(&self, case_id: &str, wanted: &str) {
        let what = format!("case {case_id} to be {wanted}");
        crate::common::wait_until(|| async { self.status(case_id).await == wanted }, &what).await;
    }

    // -----------------------------------------------------------------------------------------------------------
    // Provided: what the operator's tools and airlock's files show (call `settle` first where airlock works in the
    // background).
    // -----------------------------------------------------------------------------------------------------------

    /// `airlock outbox --json [--to ADDRESS]`: what was sent, codes masked (an operator's view).
    fn outbox(&self, to: Option<&str>) -> Vec<Value> {
        let mut args = vec!["outbox", "--json"];
        if let Some(address) = to {
            args.extend(["--to", address]);
        }
        let output = self.airlock(&args);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<Value>(&output.stdout).unwrap()["items"].as_array().unwrap().clone()
    }

    fn read_only(&self, file: &str) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(self.data().join(file), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap()
    }

    /// Every message in the outbox with its full body, oldest first (read-only: what the mail provider receives;
    /// `airlock outbox` masks the code, as it should).
    fn messages(&self) -> Vec<Message> {
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

    fn messages_of(&self, case_id: &str) -> Vec<Message> {
        self.messages().into_iter().filter(|message| message.case_id == case_id).collect()
    }

    /// A case as the projection shows it.
    fn case(&self, case_id: &str) -> Case {
        let connection = self.read_only("projection.db");
        connection
            .query_row(
                "SELECT status, summary, action_hash, new_destination, decision, cooling_off_ends_at, notified,
                        authorization
                 FROM cases WHERE case_id = ?1",
                [case_id],
                |row| {
                    let decision: Option<String> = row.get(4)?;
                    let notified: String = row.get(6)?;
                    Ok(Case {
                        status: row.get(0)?,
                        summary: row.get(1)?,
                        action_hash: row.get(2)?,
                        new_destination: row.get(3)?,
                        decision: decision.map(|text| serde_json::from_str(&text).unwrap()),
                        cooling_off_ends_at: row.get(5)?,
                        notified: serde_json::from_str(&notified).unwrap(),
                        authorization: row.get(7)?,
                    })
                },
            )
            .unwrap_or_else(|error| panic!("case {case_id} is not in the projection: {error}"))
    }

    fn timeline(&self, case_id: &str) -> Vec<Entry> {
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

    fn events(&self, case_id: &str) -> Vec<String> {
        self.timeline(case_id).into_iter().map(|entry| entry.event_type).collect()
    }

    /// How long the case's cooling-off lasts: from the event that started it to the end it set.
    fn cooling_off_ms(&self, case_id: &str) -> i64 {
        let started = self.timeline(case_id).into_iter().find(|entry| entry.event_type == "cooling_off_started");
        let started =
            started.unwrap_or_else(|| panic!("{case_id} never started cooling off: {:?}", self.events(case_id)));
        self.case(case_id).cooling_off_ends_at.expect("a cooling-off end") - started.at
    }

    /// The account's destinations in the directory as (address, revoked), read-only: what a change did.
    fn destinations(&self, account_id: &str) -> Vec<(String, bool)> {
        let connection = self.read_only("directory.db");
        let mut statement = connection
            .prepare("SELECT address, revoked FROM destinations WHERE account_id = ?1 ORDER BY rowid")
            .unwrap();
        statement.query_map([account_id], |row| Ok((row.get(0)?, row.get(1)?))).unwrap().map(Result::unwrap).collect()
    }

    /// The kill switch as the projection shows it: (halted, version).
    fn control(&self) -> (bool, i64) {
        let control = self.read_only("projection.db").query_row("SELECT halted, version FROM control", [], |row| {
            Ok((row.get::<_, bool>(0)?, row.get::<_, i64>(1)?))
        });
        control.unwrap()
    }
}
