//! The SMTP notifier against a real SMTP server: Python's aiosmtpd on an ephemeral loopback port, with a handler
//! that writes every message it accepts (envelope and raw content, plus the parsed headers and body) to a file the
//! test reads. Covers delivery, retries (at-least-once, same Message-ID), refusals, a server that is down or
//! silent, STARTTLS that is required really being required, AUTH, and that no error or `Debug` shows a secret.

use crate::common;

use airlock::core::account::DestinationKind;
use airlock::core::ids::{CaseId, UnixMs};
use airlock::notify::smtp::{SmtpConfig, SmtpConfigError, SmtpCredentials, SmtpNotifier, SmtpSecurity};
use airlock::notify::{Message, Notifier, NotifyError};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generous: the tests of this file start Python in parallel on a 2-core machine.
const START_TIMEOUT_MS: u64 = 30_000;

/// The notifier's per-step timeout in these tests: short, so a hung server fails the test quickly.
const SEND_TIMEOUT_MS: u64 = 500;

/// What "quickly" means for a failed send: the timeout above several times over, far below lettre's default minute.
const FAILED_SEND_MS_MAX: u64 = 5_000;

const CODE: &str = "48213957";
const TOKEN: &str = "c4ncel70ken9f8e7d6c5b4a3";
const SENDER: &str = "airlock@airlock.test";
const PASSWORD: &str = "hunter2-correct-horse";

/// The server: `python3 -c SERVER OUT_DIR PORT MODE`. Modes: `accept` records and accepts every message; `auth`
/// also requires AUTH as `airlock`/`PASSWORD` (over plaintext, allowed here because it is loopback); `reject-echo`
/// rejects every message with a 554 that echoes the whole body, as a careless server might. It prints READY once
/// it listens, and exits when its standard input closes, so it cannot outlive a test process that died.
const SERVER: &str = r#"
import email, email.policy, itertools, json, os, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

out_dir, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
counter = itertools.count(1)

class Recorder:
    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        # SMTP carries lines ending in CRLF; the message was written with LF.
        body = parsed.get_content().replace("\r\n", "\n")
        if mode == "reject-echo":
            return "554 5.7.1 rejected: " + " ".join(body.split())
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "subject": str(parsed["subject"]),
            "message_id": str(parsed["message-id"]),
            "body": body,
            "raw": raw.decode("utf-8", "replace"),
        }
        path = os.path.join(out_dir, "message-%04d.json" % next(counter))
        with open(path + ".part", "w") as file:
            json.dump(record, file)
        os.rename(path + ".part", path)
        return "250 2.0.0 recorded"

def authenticator(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=auth_data.login == b"airlock" and auth_data.password == PASSWORD.encode())

PASSWORD = os.environ["SMTP_TEST_PASSWORD"]
options = {}
if mode == "auth":
    options = dict(authenticator=authenticator, auth_required=True, auth_require_tls=False)
controller = Controller(Recorder(), hostname="127.0.0.1", port=port, ready_timeout=30, **options)
controller.start()
print("READY", flush=True)
sys.stdin.read()
controller.stop()
"#;

/// A running aiosmtpd. Dropping it kills the process by its PID.
struct SmtpServer {
    child: Child,
    /// Held open: the server exits when it closes.
    _stdin: ChildStdin,
    port: u16,
    scratch: tempfile::TempDir,
}

impl SmtpServer {
    fn start(mode: &str) -> SmtpServer {
        SmtpServer::start_on(free_port(), mode)
    }

    /// Starts the server on `port`, one a test reserved earlier (with `free_port`) to point airlock at first.
    fn start_on(port: u16, mode: &str) -> SmtpServer {
        require_aiosmtpd();
        let scratch = tempfile::tempdir().unwrap();
        let stderr = std::fs::File::create(scratch.path().join("server.log")).unwrap();
        let mut child = Command::new("python3")
            .args(["-c", SERVER])
            .arg(scratch.path())
            .args([&port.to_string(), mode])
            .env("SMTP_TEST_PASSWORD", PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("python3 starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut server = SmtpServer { child, _stdin: stdin, port, scratch };
        let (ready, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = ready.send(line);
            }
        });
        match lines.recv_timeout(Duration::from_millis(START_TIMEOUT_MS)) {
            Ok(line) if line == "READY" => server,
            outcome => {
                let log = std::fs::read_to_string(server.scratch.path().join("server.log")).unwrap_or_default();
                server.stop();
                panic!("aiosmtpd did not start on 127.0.0.1:{port} ({outcome:?}): {log}");
            }
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every message the server accepted, in order. The handler writes each file before it answers 250, so
    /// everything a successful `send` delivered is already here.
    fn received(&self) -> Vec<Value> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.scratch.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|extension| extension == "json"))
            .collect();
        paths.sort();
        paths.iter().map(|path| serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()).collect()
    }

    fn config(&self) -> SmtpConfig {
        plaintext_config(self.port)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Fails, not skips, when the server cannot run: a skipped test proves nothing.
fn require_aiosmtpd() {
    let found = Command::new("python3").args(["-c", "import aiosmtpd"]).stderr(Stdio::null()).status();
    assert!(
        found.is_ok_and(|status| status.success()),
        "python3 cannot import aiosmtpd, which these tests use as a real SMTP server: run ./scripts/test.sh \
         (it installs it with pip), or `python3 -m pip install aiosmtpd`"
    );
}

/// A port that was free a moment ago (bind to port 0, read it, release it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn plaintext_config(port: u16) -> SmtpConfig {
    let mut config = SmtpConfig::new("127.0.0.1", SmtpSecurity::Plaintext, SENDER);
    config.port = port;
    config.timeout = Duration::from_millis(SEND_TIMEOUT_MS);
    config
}

fn message(kind: DestinationKind, address: &str) -> Message {
    Message {
        message_id: "42/dest-email".to_string(),
        case_id: CaseId::new("case-3f9a0c".to_string()),
        kind,
        address: address.to_string(),
        subject: "Your account recovery code".to_string(),
        body: format!("Enter this code: {CODE}\nIf it was not you, cancel: https://airlock.test/cancel?token={TOKEN}"),
        sent_at: UnixMs(1_700_000_000_000),
    }
}

fn unavailable(result: Result<(), NotifyError>) -> String {
    match result {
        Ok(()) => panic!("the send succeeded"),
        Err(NotifyError::Unavailable(text)) => text,
    }
}

fn assert_no_secret(text: &str) {
    for secret in [CODE, TOKEN, PASSWORD, "Enter this code"] {
        assert!(!text.contains(secret), "{secret:?} leaked into {text:?}");
    }
}

#[test]
fn a_message_arrives_with_its_recipient_subject_body_and_message_id() {
    // Proves a real SMTP server receives the message from the configured sender, for the destination's address,
    // with the subject and body unchanged and the Message-ID derived from the case and the message id.
    let server = SmtpServer::start("accept");
    let notifier = SmtpNotifier::new(server.config()).unwrap();
    let sent = message(DestinationKind::Email, "owner@example.com");
    notifier.send(&sent).unwrap();

    let received = server.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let email = &received[0];
    assert_eq!(email["mail_from"], SENDER);
    assert_eq!(email["rcpt_tos"], serde_json::json!(["owner@example.com"]));
    assert_eq!(email["subject"], sent.subject);
    assert_eq!(email["body"].as_str().unwrap().trim_end(), sent.body);
    let expected_id = "<case-3f9a0c.42/dest-email@airlock.test>";
    assert_eq!(email["message_id"], expected_id);
    let raw = email["raw"].as_str().unwrap();
    assert!(raw.lines().any(|line| line == format!("Message-ID: {expected_id}")), "{raw}");
}

#[test]
fn a_retried_message_is_delivered_again_with_the_same_message_id() {
    // Proves the at-least-once contract: sending the same message twice (as a retry after an unanswered attempt
    // does) delivers it twice, and both copies carry the same Message-ID so the receiver can recognise the repeat.
    // A different message id gives a different Message-ID, so the header is not simply constant.
    let server = SmtpServer::start("accept");
    let notifier = SmtpNotifier::new(server.config()).unwrap();
    let sent = message(DestinationKind::Email, "owner@example.com");
    notifier.send(&sent).unwrap();
    notifier.send(&sent).unwrap();
    let other = Message { message_id: "43/dest-email".to_string(), ..sent.clone() };
    notifier.send(&other).unwrap();

    let received = server.received();
    assert_eq!(received.len(), 3, "{received:?}");
    assert_eq!(received[0]["message_id"], received[1]["message_id"]);
    assert_eq!(received[0]["raw"], received[1]["raw"], "a retry sends the very same email, date included");
    assert_ne!(received[0]["message_id"], received[2]["message_id"]);
}

#[test]
fn a_phone_destination_and_an_invalid_address_are_refused_before_connecting() {
    // Proves SMTP sends only to email destinations, with an error that says so, and that a malformed address is
    // refused with the address masked; nothing reaches the server in either case.
    let server = SmtpServer::start("accept");
    let notifier = SmtpNotifier::new(server.config()).unwrap();

    let text = unavailable(notifier.send(&message(DestinationKind::Phone, "+15550001234")));
    assert!(text.contains("only to email destinations"), "{text}");
    assert!(!text.contains("15550001234"), "{text}");

    let text = unavailable(notifier.send(&message(DestinationKind::Email, "not-an-address")));
    assert!(text.contains("not a valid email address"), "{text}");
    assert_no_secret(&text);
    assert!(server.received().is_empty());
}

#[test]
fn plaintext_is_refused_to_any_host_but_loopback() {
    // Proves plaintext SMTP (which would expose codes and the password) is refused for a remote host, whether the
    // configuration was parsed or built field by field, and allowed for each loopback spelling.
    let from = format!("?from={SENDER}");
    let refused = SmtpConfig::parse(&format!("smtp://mail.example.com{from}")).unwrap_err();
    assert!(matches!(refused, SmtpConfigError::PlaintextToRemoteHost { .. }), "{refused:?}");
    assert!(refused.to_string().contains("refusing plaintext SMTP to mail.example.com"), "{refused}");

    for host in ["mail.example.com", "10.0.0.1", "::ffff:127.0.0.1", "localhost.example.com"] {
        let built = SmtpConfig::new(host, SmtpSecurity::Plaintext, SENDER);
        let refused = SmtpNotifier::new(built).unwrap_err();
        assert!(matches!(refused, SmtpConfigError::PlaintextToRemoteHost { .. }), "{host}: {refused:?}");
    }
    for url in ["smtp://127.0.0.1:2525", "smtp://[::1]:2525", "smtp://localhost", "smtp://LOCALHOST:25"] {
        let config = SmtpConfig::parse(&format!("{url}{from}")).unwrap_or_else(|error| panic!("{url}: {error}"));
        SmtpNotifier::new(config).unwrap();
    }
    for url in ["smtps://mail.example.com", "smtp+starttls://mail.example.com"] {
        SmtpNotifier::new(SmtpConfig::parse(&format!("{url}{from}")).unwrap()).unwrap();
    }
}

#[test]
fn a_server_that_is_down_fails_fast_without_the_body() {
    // Proves a send to a port where nothing listens returns Unavailable at once, naming the server but not the
    // body, the code or the cancel link.
    let notifier = SmtpNotifier::new(plaintext_config(free_port())).unwrap();
    let started = Instant::now();
    let text = unavailable(notifier.send(&message(DestinationKind::Email, "owner@example.com")));
    assert!(started.elapsed() < Duration::from_millis(FAILED_SEND_MS_MAX), "took {:?}", started.elapsed());
    assert!(text.contains("42/dest-email") && text.contains("127.0.0.1"), "{text}");
    assert_no_secret(&text);
}

#[test]
fn a_server_that_never_answers_times_out_quickly() {
    // Proves the configured timeout bounds a send to a server that accepts the connection but never speaks
    // (lettre's own default would wait a minute per step).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let notifier = SmtpNotifier::new(plaintext_config(silent.local_addr().unwrap().port())).unwrap();
    let started = Instant::now();
    let text = unavailable(notifier.send(&message(DestinationKind::Email, "owner@example.com")));
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(SEND_TIMEOUT_MS / 2), "failed before timing out: {text}");
    assert!(elapsed < Duration::from_millis(FAILED_SEND_MS_MAX), "took {elapsed:?}");
    assert!(text.contains(&format!("no answer within {SEND_TIMEOUT_MS} ms")), "{text}");
    assert_no_secret(&text);
    drop(silent);
}

#[test]
fn a_server_that_echoes_the_body_in_its_refusal_does_not_leak_it() {
    // Proves that when a server's rejection quotes the message, the error keeps the server's status but withholds
    // the quote, so neither the code nor the cancel link reaches a log.
    let server = SmtpServer::start("reject-echo");
    let notifier = SmtpNotifier::new(server.config()).unwrap();
    let text = unavailable(notifier.send(&message(DestinationKind::Email, "owner@example.com")));
    assert!(text.contains("554"), "the server's status is kept: {text}");
    assert!(text.contains("withheld"), "{text}");
    assert_no_secret(&text);
}

#[test]
fn required_starttls_sends_nothing_to_a_server_without_it() {
    // Proves smtp+starttls means TLS or nothing: a server that does not offer STARTTLS (but would accept these
    // credentials over plaintext) receives no message, instead of the notifier falling back to plaintext.
    let server = SmtpServer::start("auth");
    let mut config = server.config();
    config.security = SmtpSecurity::StartTls;
    config.credentials = Some(SmtpCredentials { username: "airlock".to_string(), password: PASSWORD.to_string() });
    let notifier = SmtpNotifier::new(config).unwrap();
    let text = unavailable(notifier.send(&message(DestinationKind::Email, "owner@example.com")));
    assert_no_secret(&text);
    assert!(server.received().is_empty());
}

#[test]
fn credentials_are_used_and_a_wrong_password_is_not_echoed() {
    // Proves the username and password reach a server that requires AUTH (delivery succeeds), and that a refused
    // login fails with an error that contains neither password.
    let server = SmtpServer::start("auth");
    let mut config = server.config();
    config.credentials = Some(SmtpCredentials { username: "airlock".to_string(), password: PASSWORD.to_string() });
    SmtpNotifier::new(config.clone()).unwrap().send(&message(DestinationKind::Email, "owner@example.com")).unwrap();
    assert_eq!(server.received().len(), 1);

    let wrong = "wrong-battery-staple";
    config.credentials = Some(SmtpCredentials { username: "airlock".to_string(), password: wrong.to_string() });
    let text = unavailable(SmtpNotifier::new(config).unwrap().send(&message(DestinationKind::Email, "a@example.com")));
    assert!(!text.contains(wrong), "{text}");
    assert_no_secret(&text);
    assert_eq!(server.received().len(), 1);
}

#[test]
fn debug_of_the_config_and_the_notifier_hides_the_password() {
    // Proves the password appears in no Debug output, while the rest of the configuration does.
    let config = SmtpConfig::parse(&format!("smtps://airlock:{PASSWORD}@mail.example.com?from={SENDER}")).unwrap();
    assert_eq!(config.credentials.as_ref().unwrap().password, PASSWORD);
    let notifier = SmtpNotifier::new(config.clone()).unwrap();
    for shown in [format!("{config:?}"), format!("{config:#?}"), format!("{notifier:?}")] {
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert!(shown.contains("<redacted>") && shown.contains("mail.example.com") && shown.contains("airlock"));
    }
}

#[test]
fn urls_parse_into_configurations() {
    // Proves each scheme maps to its security and conventional port, and that ports, brackets, percent-encoding
    // and the timeout parameter are read as documented (and that `FromStr` agrees with `parse`).
    let expected = |host: &str, port: u16, security: SmtpSecurity| SmtpConfig {
        port,
        ..SmtpConfig::new(host, security, "a@b.test")
    };
    let credentials = SmtpCredentials { username: "u@x".to_string(), password: "p:w@d".to_string() };
    let cases = [
        ("smtp://127.0.0.1:2525?from=a@b.test", expected("127.0.0.1", 2525, SmtpSecurity::Plaintext)),
        ("smtp://localhost/?from=a@b.test", expected("localhost", 25, SmtpSecurity::Plaintext)),
        ("smtp://[::1]:2525?from=a@b.test", expected("::1", 2525, SmtpSecurity::Plaintext)),
        ("smtps://mx.test?from=a@b.test", expected("mx.test", 465, SmtpSecurity::ImplicitTls)),
        (
            "SMTP+STARTTLS://mx.test?from=a@b.test&timeout_ms=2500",
            SmtpConfig { timeout: Duration::from_millis(2_500), ..expected("mx.test", 587, SmtpSecurity::StartTls) },
        ),
        (
            "smtps://u%40x:p%3Aw@d@mx.test:1465?from=a%40b.test",
            SmtpConfig { credentials: Some(credentials), ..expected("mx.test", 1465, SmtpSecurity::ImplicitTls) },
        ),
    ];
    for (url, expected) in cases {
        assert_eq!(SmtpConfig::parse(url).unwrap_or_else(|error| panic!("{url}: {error}")), expected, "{url}");
        assert_eq!(url.parse::<SmtpConfig>().unwrap(), expected, "{url}");
    }
}

#[test]
fn bad_urls_get_specific_errors_that_never_quote_the_password() {
    // Proves each malformed URL is refused with a reason naming what is wrong, and that no error repeats the
    // password even when the rest of the URL is broken.
    let cases = [
        ("mail.example.com", "no scheme"),
        ("http://s3cret-pass@mx.test?from=a@b.test", "unknown scheme"),
        ("smtps://u:s3cret-pass@mx.test", "no sender"),
        ("smtps://u:s3cret-pass@mx.test:99999?from=a@b.test", "not a number from 1 to 65535"),
        ("smtps://u:s3cret-pass@mx.test:0?from=a@b.test", "not a number from 1 to 65535"),
        ("smtps://u:s3cret-pass@?from=a@b.test", "no host"),
        ("smtps://u:s3cret-pass@::1?from=a@b.test", "in brackets"),
        ("smtps://u:s3cret-pass@[::1?from=a@b.test", "unclosed"),
        ("smtps://u:s3cret-pass@mx.test/inbox?from=a@b.test", "a path is not allowed"),
        ("smtps://u:s3cret-pass@mx.test?from=a@b.test&tls=off", "unknown parameter \"tls\""),
        ("smtps://u:s3cret-pass@mx.test?from=a@b.test&from=c@d.test", "given twice"),
        ("smtps://u:s3cret-pass@mx.test?from=a@b.test&timeout_ms=5", "between 100 and 60000 ms"),
        ("smtps://u:s3cret-pass@mx.test?from=a@b.test&timeout_ms=soon", "not a number"),
        ("smtps://u:s3cret-pass@mx.test?from=nobody", "not an email address"),
        ("smtps://:s3cret-pass@mx.test?from=a@b.test", "user name is empty"),
        ("smtps://u:s3cret-pass%zz@mx.test?from=a@b.test", "badly percent-encoded"),
    ];
    for (url, reason) in cases {
        let error = SmtpConfig::parse(url).expect_err(url).to_string();
        assert!(error.contains(reason), "{url}: {error}");
        assert!(!error.contains("s3cret-pass"), "{url}: {error}");
    }
    let long = format!("smtps://mx.test?from=a@b.test&x={}", "y".repeat(airlock::notify::smtp::SMTP_URL_BYTES_MAX));
    assert!(SmtpConfig::parse(&long).unwrap_err().to_string().contains("longer than"));
}

// Proves `airlock serve --smtp URL` sends owners' email through the mail server: a request published on NATS intake
// reaches the account's email as a message with the one-time code, and nothing for that address is left in the
// embedded outbox (which would otherwise hold the code at rest).
#[test]
fn serve_with_smtp_sends_the_code_by_email_and_keeps_none_in_the_outbox() {
    let server = SmtpServer::start("accept");
    let scratch = tempfile::tempdir().unwrap();
    let nats = airlock::nats::server::NatsServer::start(
        &scratch.path().join("nats"),
        &airlock::nats::server::Options::default(),
    )
    .unwrap();
    let data = scratch.path().join("data");
    common::import_accounts(
        &data,
        serde_json::json!([{
            "account_id": "wes",
            "destinations": [
                { "id": "wes-mail", "kind": "email", "address": "wes@example.com", "trusted_since": "2024-01-01T00:00:00Z" }
            ]
        }]),
    );
    let log = scratch.path().join("serve.log");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["serve", "--nats", &nats.url(), "--data-dir"])
        .arg(&data)
        .env("AIRLOCK_SMTP_URL", format!("smtp://127.0.0.1:{}?from={SENDER}", server.port))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_millis(START_TIMEOUT_MS);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("airlock serving") {
        assert!(Instant::now() < deadline, "serve did not start: {}", std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = airlock::nats::connect(&nats.url(), "test").await.unwrap();
        let body = serde_json::json!({
            "version": 1, "command_id": "mail-1", "account_id": "wes",
            "action": { "type": "reset_password" }, "summary": "locked out", "signals": {}
        });
        let context = async_nats::jetstream::new(client);
        let subject = "airlock.intake.intake.desk.request_recovery";
        context.publish(subject, body.to_string().into()).await.unwrap().await.unwrap();
    });
    while server.received().is_empty() {
        if Instant::now() > deadline + Duration::from_millis(START_TIMEOUT_MS) {
            let _ = serve.kill();
            panic!("no email arrived: {}", std::fs::read_to_string(&log).unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let email = &server.received()[0];
    assert_eq!(email["rcpt_tos"], serde_json::json!(["wes@example.com"]));
    let text = email["body"].as_str().unwrap();
    assert!(text.split(|c: char| !c.is_ascii_digit()).any(|word| word.len() == 8), "the code is in the email");
    let outbox =
        rusqlite::Connection::open_with_flags(data.join("directory.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM outbox WHERE address = 'wes@example.com'", [], |row| row.get::<_, i64>(0))
            .unwrap();
    assert_eq!(outbox, 0, "an email sent by SMTP is not also kept in the outbox");
    let _ = serve.kill();
    let _ = serve.wait();
}

// Proves ADR 10 end to end: a cancel link that `airlock serve --smtp` could not email while the mail server was down
// is not lost. Once a server listens on that address, airlock sends it again by itself, once, with the Message-ID of
// the first attempt, and the case's history records both cancel links delivered (the phone's through the outbox at
// once, the email's later). The email is a day old: it gets a cancel link but no code, so the owner proves the phone's
// code alone and the policy, not the SIM-swap floor, decides (issue 16).
#[test]
fn serve_emails_a_cancel_link_again_once_the_mail_server_is_back() {
    let port = free_port();
    let scratch = tempfile::tempdir().unwrap();
    let nats = airlock::nats::server::NatsServer::start(
        &scratch.path().join("nats"),
        &airlock::nats::server::Options::default(),
    )
    .unwrap();
    let data = scratch.path().join("data");
    common::import_accounts(
        &data,
        serde_json::json!([{
            "account_id": "vic",
            "destinations": [
                // The email was added yesterday: too young for a code, old enough for a cancel link; so the phone's
                // code is the account's only one and follows the policy (issue 16).
                { "id": "vic-mail", "kind": "email", "address": "vic@example.com", "trusted_since": common::threats::time_ago(86_400_000) },
                { "id": "vic-phone", "kind": "phone", "address": "+15550001111", "trusted_since": "2024-01-01T00:00:00Z" }
            ]
        }]),
    );
    let log = scratch.path().join("serve.log");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["serve", "--nats", &nats.url(), "--tick", "200ms", "--sms-outbox", "--data-dir"])
        .arg(&data)
        .env("AIRLOCK_SMTP_URL", format!("smtp://127.0.0.1:{port}?from={SENDER}&timeout_ms={SEND_TIMEOUT_MS}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let serve_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let wait = |what: &str, done: &mut dyn FnMut() -> bool| {
        let deadline = Instant::now() + Duration::from_millis(START_TIMEOUT_MS);
        while !done() {
            assert!(Instant::now() < deadline, "{what} did not happen:\n{}", serve_log());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait("serve starting", &mut || serve_log().contains("airlock serving"));
    let outbox = |subject: &str| -> Vec<(String, String)> {
        let connection = rusqlite::Connection::open_with_flags(
            data.join("directory.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut statement = connection
            .prepare("SELECT case_id, body FROM outbox WHERE address = '+15550001111' AND subject = ?1")
            .unwrap();
        statement.query_map([subject], |row| Ok((row.get(0)?, row.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let context = runtime
        .block_on(async { async_nats::jetstream::new(airlock::nats::connect(&nats.url(), "test").await.unwrap()) });
    let publish = |subject: &str, body: serde_json::Value| {
        runtime.block_on(async {
            context.publish(subject.to_string(), body.to_string().into()).await.unwrap().await.unwrap()
        });
    };
    publish(
        "airlock.intake.intake.desk.request_recovery",
        serde_json::json!({
            "version": 1, "command_id": "down-1", "account_id": "vic",
            "action": { "type": "reset_password" }, "summary": "locked out", "signals": {}
        }),
    );
    wait("the code reaching the phone", &mut || !outbox("Your account recovery code").is_empty());
    let (case_id, body) = outbox("Your account recovery code").remove(0);
    let code = common::threats::code_in(&body).unwrap();
    publish(
        "airlock.intake.owner.page.submit_proof",
        serde_json::json!({ "version": 1, "command_id": "down-2", "case_id": case_id, "code": code }),
    );
    wait("the phone's cancel link", &mut || !outbox("A change to your account is scheduled").is_empty());
    wait("the email's cancel link failing", &mut || {
        serve_log().lines().any(|line| line.contains("notice not sent") && line.contains("vic-mail"))
    });
    let failed = serve_log();
    let failed_id = failed
        .lines()
        .find(|line| line.contains("notice not sent") && line.contains("vic-mail"))
        .and_then(|line| line.split("notice=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the failed notice is logged by its id:\n{failed}"))
        .to_string();
    assert!(!failed.contains(&code), "the code is in the log");

    let server = SmtpServer::start_on(port, "accept");
    wait("the cancel link arriving by email", &mut || !server.received().is_empty());
    // Once the delivery is recorded the case owes nothing, and nothing is sent again: then count what arrived.
    let owes = || {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let Ok(connection) = rusqlite::Connection::open_with_flags(data.join("projection.db"), flags) else {
            return true;
        };
        let owed = "SELECT count(*) FROM notices_owed WHERE case_id = ?1";
        connection.query_row(owed, [&case_id], |row| row.get::<_, i64>(0)).map_or(true, |count| count > 0)
    };
    wait("the delivery to be recorded", &mut || !owes());
    let received = server.received();
    assert_eq!(received.len(), 1, "one email, the cancel link, once: {received:?}");
    assert_eq!(received[0]["rcpt_tos"], serde_json::json!(["vic@example.com"]));
    assert_eq!(received[0]["subject"], "A change to your account is scheduled");
    assert!(received[0]["body"].as_str().unwrap().contains(&format!("/cancel?case={case_id}&destination=vic-mail")));
    let same_id = format!("{}@", failed_id.replace('.', "=2E"));
    assert!(
        received[0]["message_id"].as_str().unwrap().contains(&same_id),
        "{} vs {failed_id}",
        received[0]["message_id"]
    );

    let history = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["case", "history", &case_id, "--json", "--nats", &nats.url(), "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let history: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    let delivered: Vec<&serde_json::Value> =
        history["events"].as_array().unwrap().iter().filter(|event| event["event"] == "notices_delivered").collect();
    assert_eq!(delivered.len(), 2, "{history}");
    let _ = serve.kill();
    let _ = serve.wait();
}

const SMS_PROVIDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/receivers/sms_provider.py");

/// tests/receivers/sms_provider.py on a loopback port, verifying with `secret`, down for its first `down` messages;
/// killed when dropped. Returns the process, its URL and the file it records every attempt in.
struct SmsProvider {
    child: Child,
    url: String,
    record: PathBuf,
}

impl Drop for SmsProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmsProvider {
    fn start(scratch: &std::path::Path, secret: &str, down: u32) -> SmsProvider {
        let record = scratch.join("sms-record.jsonl");
        let down = down.to_string();
        let args = ["--secret", secret, "--record", record.to_str().unwrap(), "--down", &down];
        let (child, url) = common::start_receiver(SMS_PROVIDER, &args);
        SmsProvider { child, url, record }
    }

    /// Every attempt it saw, oldest first.
    fn attempts(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

// Proves text messages go through the SMS provider interface (issue 20, item 3): against a stand-in provider that
// verifies every request with the Standard Webhooks reference library, a recovery of an account with an old phone and
// a phone added yesterday sends its code to the old phone only; the provider being down for the first attempt costs
// nothing (each attempt carries the same webhook-id, the case's and the message's, so it is sent once); the code is in
// no log; a forged or replayed signature is refused by the provider. `config check` says which channel each kind
// uses, and flags a provider without secrets; a URL with a token in its query is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_messages_go_through_the_sms_provider_signed_and_only_to_old_phones() {
    use base64::Engine as _;
    let mut harness = common::serve::Harness::new();
    let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
    let secrets = harness.scratch.path().join("sms-secrets");
    std::fs::write(&secrets, format!("# the SMS provider's secret\n{secret}\n")).unwrap();
    std::fs::set_permissions(&secrets, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let provider = SmsProvider::start(harness.scratch.path(), &secret, 1);
    let yesterday = chrono::Utc::now() - chrono::Duration::days(1);
    common::import_accounts(
        &harness.data(),
        serde_json::json!([{ "account_id": "pat", "destinations": [
            { "id": "pat-old", "kind": "phone", "address": "+15550001111", "trusted_since": "2024-01-01T00:00:00Z" },
            { "id": "pat-new", "kind": "phone", "address": "+15550002222", "trusted_since": yesterday.to_rfc3339() } ] }]),
    );
    harness.start_serve(&["--sms-url", &provider.url, "--sms-secrets", secrets.to_str().unwrap()], &[]);
    let client = harness.client().await;
    let desk = airlock::core::actor::Actor::new(airlock::core::actor::Role::Intake, "desk");
    let body = serde_json::json!({ "version": 1, "command_id": "sms-1", "account_id": "pat",
                                   "action": { "type": "reset_password" }, "summary": "lost access", "signals": {} });
    let answer = airlock::intake::nats::send_command(
        &client,
        &desk,
        airlock::intake::CommandType::RequestRecovery,
        body.to_string().into_bytes(),
        Duration::from_millis(common::WAIT_MS),
    )
    .await
    .unwrap();
    assert_eq!(answer["accepted"], true, "{answer}");
    common::wait_for(|| provider.attempts().iter().any(|attempt| attempt["status"] == 200), "the text message");
    let attempts = provider.attempts();
    assert_eq!(attempts.len(), 2, "refused while down, then taken: {attempts:#?}");
    assert!(attempts.iter().all(|attempt| attempt["verified"] == true), "{attempts:#?}");
    let ids: std::collections::BTreeSet<&str> =
        attempts.iter().map(|attempt| attempt["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1, "every attempt of one message carries its one id: {attempts:#?}");
    let message = &attempts[1]["message"];
    assert_eq!(message["to"], "+15550001111", "only the phone that existed well before the request");
    let text = message["text"].as_str().unwrap();
    let code = text.split_whitespace().find(|word| word.len() == 8 && word.bytes().all(|b| b.is_ascii_digit()));
    let code = code.expect("the code in the text message");
    assert!(text.contains("This message went to") && !text.contains("+15550002222"), "{text}");
    assert!(!harness.serve_log().contains(code), "the code in serve's log");

    // The provider refuses what airlock did not sign, and a signed request replayed late.
    let post = |signature: String, timestamp: u64| {
        let url = provider.url.clone();
        async move {
            reqwest::Client::new()
                .post(url)
                .header("webhook-id", "msg-forged")
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature)
                .body(r#"{"to":"+15559999999","text":"forged"}"#)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let wrong = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode([9u8; 32]));
    let sign = |secret: &str, timestamp: u64| {
        let secret = airlock::directory::http::Secret::parse(secret).unwrap();
        airlock::directory::http::signature(
            &[secret],
            "msg-forged",
            timestamp,
            br#"{"to":"+15559999999","text":"forged"}"#,
        )
    };
    assert_eq!(post(sign(&wrong, now), now).await, 401, "a forged signature");
    assert_eq!(post(sign(&secret, now - 3_600), now - 3_600).await, 401, "a replay an hour late");
    assert_eq!(post(sign(&secret, now), now).await, 200, "the check can pass");

    // Which channel each kind uses, as `config check` says it.
    let check = |environment: &[(&str, &str)]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(["config", "check", "--json"])
            .env_remove("AIRLOCK_SMS_URL")
            .env_remove("AIRLOCK_SMS_OUTBOX")
            .env_remove("AIRLOCK_SMS_SECRETS")
            .envs(environment.iter().copied())
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        let channels = report["channels"].as_array().unwrap().clone();
        let phone = channels.iter().find(|channel| channel["kind"] == "phone").unwrap()["channel"].clone();
        (phone.as_str().unwrap().to_string(), report["problems"].to_string())
    };
    assert!(check(&[]).0.contains("nowhere"), "no SMS channel");
    assert!(check(&[("AIRLOCK_SMS_OUTBOX", "true")]).0.contains("outbox"));
    let secrets_path = secrets.to_str().unwrap();
    let configured = check(&[("AIRLOCK_SMS_URL", &provider.url), ("AIRLOCK_SMS_SECRETS", secrets_path)]);
    assert!(configured.0.contains("SMS provider at 127.0.0.1") && configured.1 == "[]", "{configured:?}");
    assert!(check(&[("AIRLOCK_SMS_URL", &provider.url)]).1.contains("sms_url needs sms_secrets"));
    let token = format!("{}?api_key=abc", provider.url);
    let refused = check(&[("AIRLOCK_SMS_URL", &token), ("AIRLOCK_SMS_SECRETS", secrets_path)]);
    assert!(refused.1.contains("a query (a token?)") && !refused.1.contains("api_key=abc"), "{refused:?}");
}
