//! Helpers shared by the integration tests: scratch directories, waiting with a deadline, publishing to JetStream
//! through restarts and reading a stream back, importing accounts, a one-email account record, and dumping a
//! projection; `serve` runs `airlock serve` against a real nats-server.

#![allow(dead_code)]

pub mod adapter;
pub mod http;
pub mod log_tamper;
pub mod mcp;
pub mod serve;
pub mod threats;

use airlock::core::account::{Destination, DestinationKind};
use airlock::core::ids::{DestinationId, UnixMs};
use airlock::directory::embedded::AccountRecord;
use async_nats::jetstream;
use futures::StreamExt;
use rusqlite::OptionalExtension;
use std::path::Path;
use std::time::{Duration, Instant};

/// Generous: the end-to-end tests run in parallel on a 2-core machine, each with its own servers.
pub const WAIT_MS: u64 = 120_000;

/// A temporary directory, in memory where the machine has /dev/shm (nats-server's fsyncs are then cheap).
pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm).unwrap() } else { tempfile::tempdir().unwrap() }
}

/// Polls `done` until it holds, failing the test after `WAIT_MS`.
pub fn wait_for(mut done: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `wait_for` for a condition that must be awaited (reading a stream, publishing): polls `done` until it holds,
/// failing the test after `WAIT_MS`.
pub async fn wait_until<F: std::future::Future<Output = bool>>(mut done: impl FnMut() -> F, what: &str) {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes to JetStream until the server acknowledges (through server restarts), with the command id as the
/// message id, so a retried publish is stored once.
pub async fn publish(context: &jetstream::Context, subject: &str, message_id: &str, body: Vec<u8>) {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
    loop {
        let message = jetstream::message::PublishMessage::build().payload(body.clone().into()).message_id(message_id);
        let acknowledged = match context.send_publish(subject.to_string(), message).await {
            Ok(pending) => pending.await.map(|_| ()).map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match acknowledged {
            Ok(()) => return,
            Err(error) => {
                assert!(Instant::now() < deadline, "publish of {message_id} never acknowledged: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Every message on `subject` in `stream`, from the start, waiting until there are at least `count`.
pub async fn read_all(
    client: &async_nats::Client,
    stream: &str,
    subject: &str,
    count: usize,
) -> Vec<jetstream::Message> {
    let context = jetstream::new(client.clone());
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
    loop {
        let stream = context.get_stream(stream).await.unwrap();
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: subject.to_string(),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut messages = consumer.messages().await.unwrap();
        let mut found = Vec::new();
        while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_millis(500), messages.next()).await {
            found.push(message);
        }
        if found.len() >= count {
            return found;
        }
        assert!(Instant::now() < deadline, "only {} of {count} messages on {subject}", found.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Loads `accounts` (the `accounts` array of a directory import file) into the embedded directory of `data` through
/// `airlock directory import`, as an operator would, failing the test if the import is refused.
pub fn import_accounts(data: &Path, accounts: serde_json::Value) {
    std::fs::create_dir_all(data).unwrap();
    let path = data.join("accounts.json");
    std::fs::write(&path, serde_json::json!({ "version": 1, "accounts": accounts }).to_string()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["directory", "import"])
        .arg(&path)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    assert!(output.status.success(), "import refused: {}", String::from_utf8_lossy(&output.stderr));
}

/// Every row of the projection's tables at `path`, rendered, in key order: for comparing a live projection with one
/// rebuilt from the log.
pub fn dump_projection(path: &Path) -> Vec<String> {
    let connection = rusqlite::Connection::open(path).unwrap();
    let mut rows = Vec::new();
    for table in ["cases", "timeline", "review_queue", "receipts", "proof_failures", "control", "checkpoint"] {
        let mut statement = connection.prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2")).unwrap();
        let columns = statement.column_count();
        let mut query = statement.query([]).unwrap();
        while let Some(row) = query.next().unwrap() {
            let values: Vec<String> = (0..columns).map(|index| format!("{:?}", row.get_ref(index).unwrap())).collect();
            rows.push(format!("{table}: {}", values.join(" | ")));
        }
    }
    rows
}

/// An account with one email destination, `<account>@example.com` (id `<account>-email`), trusted since
/// `trusted_since`, and no second factor, sessions, recent credential change or risk flag. Tests change what they
/// need with struct update syntax.
pub fn email_account(account: &str, trusted_since: UnixMs) -> AccountRecord {
    AccountRecord {
        account_id: account.into(),
        high_value_reason: None,
        totp_enrolled_since: None,
        totp_secret: None,
        last_credential_change: None,
        risk_flags: Vec::new(),
        destinations: vec![Destination {
            id: DestinationId::new(format!("{account}-email")),
            kind: DestinationKind::Email,
            address: format!("{account}@example.com"),
            trusted_since,
            revoked: false,
        }],
        sessions_opened_at: Vec::new(),
    }
}

/// Runs `airlock submit --actor ACTOR --command COMMAND` on `data` with `input` on stdin, as a local front door
/// would: the exit code and the JSON reply.
pub fn submit(data: &Path, actor: &str, command: &str, input: &[u8]) -> (i32, serde_json::Value) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["submit", "--actor", actor, "--command", command, "--data-dir"])
        .arg(data)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The child may stop reading early (oversized input); a broken pipe is expected then.
    let _ = std::io::Write::write_all(&mut child.stdin.take().unwrap(), input);
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let reply = serde_json::from_str(&stdout)
        .unwrap_or_else(|_| panic!("not a JSON reply: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code().unwrap(), reply)
}

/// The one-time code the owner received for a case, read-only from the embedded outbox (the mail provider's view:
/// `airlock outbox` masks it, as it should).
pub fn code_for(data: &Path, case_id: &str) -> String {
    try_code_for(data, case_id).expect("an 8-digit code in the outbox")
}

/// `code_for`, or `None` when this data directory's outbox holds no code for the case (another process sent it).
pub fn try_code_for(data: &Path, case_id: &str) -> Option<String> {
    let connection =
        rusqlite::Connection::open_with_flags(data.join("directory.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let body: String = connection
        .query_row("SELECT body FROM outbox WHERE case_id = ?1", [case_id], |row| row.get(0))
        .optional()
        .unwrap()?;
    threats::code_in(&body)
}

/// The set-password links an applied reset sent for a case, read from the embedded outbox, with the address each went
/// to.
pub fn set_password_links(data: &Path, case_id: &str) -> Vec<(String, String)> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let connection = rusqlite::Connection::open_with_flags(data.join("directory.db"), flags).unwrap();
    let mut statement = connection.prepare("SELECT address, body FROM outbox WHERE case_id = ?1").unwrap();
    let rows = statement.query_map([case_id], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))).unwrap();
    rows.map(Result::unwrap)
        .filter_map(|(address, body)| {
            let link = body.split_whitespace().find(|word| word.contains("/set-password?"))?;
            Some((address, link.to_string()))
        })
        .collect()
}

/// Opens a set-password `link` at the owners' page on `page` (host:port) and sends `password` twice through its form,
/// optionally with the link's token replaced: the answer's status and body.
pub fn use_set_password_link(page: &str, link: &str, password: &str, token: Option<&str>) -> (u16, String) {
    let query = link.split_once('?').expect("a link has a query").1;
    let (status, _, form) = http::http(page, "GET", &format!("/set-password?{query}"), "text/plain", b"");
    assert_eq!(status, 200, "{form}");
    assert!(form.contains("type=\"password\"") && !form.contains(password), "{form}");
    let mut fields: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    if let Some(token) = token {
        fields.iter_mut().filter(|(name, _)| name == "token").for_each(|(_, value)| *value = token.to_string());
    }
    let mut body = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in &fields {
        body.append_pair(name, value);
    }
    body.append_pair("password", password).append_pair("again", password);
    let (status, _, answer) =
        http::http(page, "POST", "/set-password", "application/x-www-form-urlencoded", body.finish().as_bytes());
    (status, answer)
}

/// Starts a receiver script of `tests/receivers` (`python3 SCRIPT ARGS`) that prints `listening on URL` once it
/// listens on a loopback port, and returns the process and that URL.
pub fn start_receiver(script: &str, args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let first = std::io::BufReader::new(child.stdout.take().unwrap()).lines().next().unwrap().unwrap();
    let url = first.strip_prefix("listening on ").unwrap_or_else(|| panic!("{script} said {first:?}")).to_string();
    (child, url)
}

/// `command` without any AIRLOCK_* variable of the caller's: what it is given is all it reads.
pub fn without_airlock_variables(command: &mut std::process::Command) -> &mut std::process::Command {
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("AIRLOCK_")) {
        command.env_remove(name);
    }
    command
}
