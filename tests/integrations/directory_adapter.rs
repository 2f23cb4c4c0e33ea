//! Issue 18: airlock governs accounts it does not hold. `airlock serve --nats` with `--directory http` reads and
//! changes the accounts of the reference directory adapter (examples/directory-adapter/adapter.py, Python, standard
//! library, its own SQLite user table), and each test asserts what that directory holds afterwards, read from its own
//! file, not what airlock believes.

use airlock::core::actor::{Actor, Role};
use airlock::intake::CommandType;
use airlock::intake::nats::send_command;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use crate::common;

use common::adapter::{count, password_version, rfc3339_ago, secrets_file, start_adapter};
use common::serve::Harness;

fn code_sent(data: &Path, case_id: &str) -> bool {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let Ok(connection) = rusqlite::Connection::open_with_flags(data.join("directory.db"), flags) else { return false };
    let count = connection.query_row("SELECT count(*) FROM outbox WHERE case_id = ?1", [case_id], |row| row.get(0));
    count.unwrap_or(0) > 0
}

fn case_status(harness: &Harness, case_id: &str) -> String {
    let output = harness.airlock(&["case", "show", case_id, "--json"]);
    serde_json::from_slice::<Value>(&output.stdout).map(|case| case["status"].to_string()).unwrap_or_default()
}

async fn send(client: &async_nats::Client, actor: &Actor, command: CommandType, body: Value) -> Value {
    send_command(client, actor, command, body.to_string().into_bytes(), Duration::from_secs(30)).await.unwrap()
}

/// One raw HTTP/1.1 POST of `body` to the adapter, with these headers; its status code.
fn raw_status(url: &str, path: &str, headers: &[(&str, String)], body: &str) -> u16 {
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let mut request = format!("POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split_whitespace().nth(1).unwrap().parse().unwrap()
}

// Proves THREATS 2 and the executor against a directory airlock does not hold, through `serve`: a reset for an
// account whose email the adapter says was verified 400 days ago sends a code there; the proof starts the cooling-off
// and the adapter holds the account for that case; a destination the adapter says was added an hour ago gets no code
// and its case goes to people. After the cooling-off (a restarted `serve` whose clock runs 25 h ahead, and which is
// killed right after the adapter applied the change, before airlock recorded it), the restarted executor confirms the
// change without applying it twice: the adapter's password version went up once, the sessions it had are revoked and
// the hold is gone. And the adapter refuses a request whose signature is wrong or whose timestamp is stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_recovers_an_account_held_by_the_company_directory() {
    let mut harness = Harness::new();
    let secrets = secrets_file(harness.scratch.path());
    let accounts = json!([
        { "account_id": "ada", "sessions": 2,
          "destinations": [{ "id": "ada-mail", "kind": "email", "address": "ada@example.com", "verified_at": rfc3339_ago(400 * 24) }] },
        { "account_id": "bo",
          "destinations": [{ "id": "bo-mail", "kind": "email", "address": "bo@example.com", "verified_at": rfc3339_ago(1) }] },
    ]);
    let adapter = start_adapter(harness.scratch.path(), &secrets, accounts, &[]);
    let directory = ["--directory", "http", "--directory-url", &adapter.url, "--directory-secrets"];
    let directory = [&directory[..], &[secrets.to_str().unwrap()]].concat();
    harness.start_serve(&directory, &[]);
    let client = harness.client().await;
    let desk = Actor::new(Role::Intake, "desk");
    let page = Actor::new(Role::Owner, "verification-page");

    let request = |command_id: &str, account: &str| {
        json!({ "version": 1, "command_id": command_id, "account_id": account,
                "action": { "type": "reset_password" }, "summary": "locked out", "signals": {} })
    };
    let opened = send(&client, &desk, CommandType::RequestRecovery, request("r-ada", "ada")).await;
    let ada_case = opened["case_id"].as_str().unwrap_or_else(|| panic!("{opened}")).to_string();
    common::wait_for(|| code_sent(&harness.data(), &ada_case), "the code to reach ada's email");
    let code = common::code_for(&harness.data(), &ada_case);
    let proof = json!({ "version": 1, "command_id": "p-ada", "case_id": ada_case, "code": code });
    let proven = send(&client, &page, CommandType::SubmitProof, proof).await;
    assert_eq!(proven["status"], "cooling_off", "{proven}");
    assert_eq!(count(&adapter, "SELECT count(*) FROM holds WHERE account_id = ?1", "ada"), 1, "the account is held");

    let opened = send(&client, &desk, CommandType::RequestRecovery, request("r-bo", "bo")).await;
    let bo_case = opened["case_id"].as_str().unwrap().to_string();
    common::wait_for(|| case_status(&harness, &bo_case) == "\"in_review\"", "bo's case to go to people");
    assert!(!code_sent(&harness.data(), &bo_case), "a destination verified an hour ago got a code");

    // The cooling-off is over; the executor applies the reset and this process dies before recording it.
    harness.stop_serve();
    harness.start_serve(&directory, &[("AIRLOCK_CLOCK_AHEAD", "25h"), ("AIRLOCK_CRASH_AFTER_EFFECT", "1")]);
    let crashed = harness.wait_for_exit();
    assert!(!crashed.success(), "serve was to abort after the effect:\n{}", harness.serve_log());
    assert_eq!(password_version(&adapter, "ada"), 2, "the adapter applied the reset before the crash");
    let with_page = [&directory[..], &["--http", "127.0.0.1:0"]].concat();
    harness.start_serve(&with_page, &[("AIRLOCK_CLOCK_AHEAD", "25h")]);
    common::wait_for(|| case_status(&harness, &ada_case) == "\"executed\"", "the restarted executor to confirm");
    assert_eq!(password_version(&adapter, "ada"), 2, "the reset was applied twice");
    let open_sessions = "SELECT count(*) FROM sessions WHERE account_id = ?1 AND revoked_at IS NULL";
    assert_eq!(count(&adapter, open_sessions, "ada"), 0, "sessions opened before the reset are still open");
    common::wait_for(
        || count(&adapter, "SELECT count(*) FROM holds WHERE account_id = ?1", "ada") == 0,
        "the hold to be released",
    );
    assert_eq!(count(&adapter, "SELECT count(*) FROM effects WHERE idempotency_key LIKE ?1", "effects:%"), 1);

    // Issue 18, item 5: the reset sent a single-use set-password link to the email the reset was proven from. A
    // forged token sets nothing; the link sets the owner's password at the adapter (a salted hash there, never the
    // text), and cannot be used again.
    common::wait_for(|| !common::set_password_links(&harness.data(), &ada_case).is_empty(), "the set-password link");
    let links = common::set_password_links(&harness.data(), &ada_case);
    assert_eq!(links.iter().map(|(to, _)| to.as_str()).collect::<Vec<_>>(), ["ada@example.com"], "{links:?}");
    let page = harness.page_address();
    let chosen = "correct horse battery staple";
    let short = common::use_set_password_link(&page, &links[0].1, "too short", None);
    assert!(short.0 == 422 && short.1.contains("at least 12"), "{short:?}");
    let forged = common::use_set_password_link(&page, &links[0].1, chosen, Some(&"0".repeat(64)));
    assert_eq!(forged.0, 422, "{}", forged.1);
    assert_eq!(password_version(&adapter, "ada"), 2, "a forged link set a password");
    let (status, answer) = common::use_set_password_link(&page, &links[0].1, chosen, None);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(password_version(&adapter, "ada"), 3);
    assert!(common::adapter::holds_password(&adapter, "ada", chosen), "the adapter does not hold the owner's password");
    let again = common::use_set_password_link(&page, &links[0].1, "another password entirely", None);
    assert_eq!(again.0, 409, "{}", again.1);
    assert_eq!(password_version(&adapter, "ada"), 3, "a used link set a password again");
    assert!(!harness.serve_log().contains(chosen), "the password is in serve's log");

    // The adapter's side of the signature: a wrong one, a stale one, none, and a signed request replayed at another
    // path (its body names where it was sent) are refused.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let secret = airlock::directory::http::Secret::load_file(&secrets).unwrap();
    let body = r#"{"target":"/v1/accounts/ada/read"}"#;
    let signed = |timestamp: u64| {
        let signature = airlock::directory::http::signature(&secret, "probe-1", timestamp, body.as_bytes());
        let headers = [("webhook-id", "probe-1".to_string()), ("webhook-timestamp", timestamp.to_string())];
        [&headers[..], &[("webhook-signature", signature)]].concat()
    };
    assert_eq!(raw_status(&adapter.url, "/v1/accounts/ada/read", &signed(now), body), 200);
    assert_eq!(raw_status(&adapter.url, "/v1/accounts/bo/read", &signed(now), body), 401, "replayed at another path");
    assert_eq!(raw_status(&adapter.url, "/v1/accounts/ada/read", &signed(now - 600), body), 401, "a stale timestamp");
    let mut forged = signed(now);
    forged[2].1 = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_string();
    assert_eq!(raw_status(&adapter.url, "/v1/accounts/ada/read", &forged, body), 401, "a forged signature");
    assert_eq!(raw_status(&adapter.url, "/v1/accounts/ada/read", &[], body), 401, "no signature");
}

/// A stand-in for a broken or hostile adapter: answers `/v1/capabilities` properly and every other request with
/// `answer` (a whole HTTP response), counting the requests and keeping their headers.
struct Broken {
    url: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn broken_adapter(answer: &'static str) -> Broken {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let length = head
                .lines()
                .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_string))
                .and_then(|value| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            let _ = stream.read_exact(&mut body);
            let head = format!("{head}{}", String::from_utf8_lossy(&body));
            let capabilities = head.starts_with("POST /v1/capabilities ");
            let body = r#"{"version":1,"hold":true,"verify_second_factor":true,"revoke_sessions":true,"per_factor_ages":true}"#;
            let reply = if capabilities {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                seen.lock().unwrap().push(head);
                answer.to_string()
            };
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    Broken { url, requests }
}

fn secret() -> Vec<airlock::directory::http::Secret> {
    vec![airlock::directory::http::Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()]
}

// Proves a broken or hostile adapter can change nothing and crash nothing (issue 18, bad input): an answer that is not
// the documented JSON, a redirect, an account other than the one asked for and an endless answer are each an error
// that quotes at most a bounded part of the answer; a 503 with Retry-After is sent again, four times in all, and then
// reported unavailable; every request is signed with the configured secret (the signature verifies here); a plain
// http:// URL to another host and a world-readable secrets file are refused before anything is sent.
#[tokio::test]
async fn a_broken_adapter_is_an_error_never_a_change() {
    use airlock::directory::AccountDirectory;
    use airlock::directory::http::HttpDirectory;
    let clock: std::sync::Arc<dyn airlock::clock::Clock> = std::sync::Arc::new(airlock::clock::SystemClock);
    let ada = airlock::core::ids::AccountId::new("ada");
    let garbage = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 32\r\nConnection: close\r\n\r\n<html>not json at all</html>    ";
    let redirect =
        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let other = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 45\r\nConnection: close\r\n\r\n{\"account_id\": \"mallory\", \"destinations\": []}";
    let busy = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    for (answer, expected) in [
        (garbage, "not the documented JSON"),
        (redirect, "redirected"),
        (other, "answered another account"),
        (busy, "after 4 attempts"),
    ] {
        let adapter = broken_adapter(answer);
        let directory = HttpDirectory::connect(&adapter.url, secret(), clock.clone()).await.unwrap();
        let error = directory.snapshot(&ada).await.unwrap_err().to_string();
        assert!(error.contains(expected), "{expected}: {error}");
        assert!(error.len() < 600, "an unbounded error: {error}");
        let requests = adapter.requests.lock().unwrap().clone();
        assert_eq!(requests.len(), if answer == busy { 4 } else { 1 }, "{expected}: {requests:?}");
        // Each request is signed: the signature verifies with the secret, over id.timestamp.body, and the body names
        // the path it was sent to.
        let header = |name: &str| {
            requests[0].lines().find_map(|line| line.strip_prefix(&format!("{name}: "))).unwrap().trim().to_string()
        };
        let (id, timestamp) = (header("webhook-id"), header("webhook-timestamp").parse::<u64>().unwrap());
        let body = requests[0].split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(serde_json::from_str::<Value>(body).unwrap()["target"], "/v1/accounts/ada/read", "{body}");
        let expected_signature = airlock::directory::http::signature(&secret(), &id, timestamp, body.as_bytes());
        assert_eq!(header("webhook-signature"), expected_signature);
    }
    let endless = broken_adapter(Box::leak(
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}", 400_000, "x".repeat(400_000))
            .into_boxed_str(),
    ));
    let directory = HttpDirectory::connect(&endless.url, secret(), clock.clone()).await.unwrap();
    let error = directory.snapshot(&ada).await.unwrap_err().to_string();
    assert!(error.contains("longer than"), "{error}");

    let refused = HttpDirectory::connect("http://adapter.example.com", secret(), clock.clone()).await.err().unwrap();
    assert!(refused.contains("https://"), "{refused}");
    let scratch = common::scratch();
    let file = scratch.path().join("secrets");
    std::fs::write(&file, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let refused = airlock::directory::http::Secret::load_file(&file).unwrap_err();
    assert!(refused.contains("chmod 600") && !refused.contains("MfKQ"), "{refused}");
}

// Proves an adapter can say its identity provider cannot tell whether an account has an authenticator (issue 18,
// item 6): the snapshot says so, so the core cannot take the account for one without; an enrolment time with it
// is kept as the stricter reading (there is one); an adapter that says nothing is read as knowing.
#[tokio::test]
async fn an_adapter_can_say_it_cannot_tell_whether_there_is_an_authenticator() {
    use airlock::directory::AccountDirectory;
    use airlock::directory::http::HttpDirectory;
    let clock: std::sync::Arc<dyn airlock::clock::Clock> = std::sync::Arc::new(airlock::clock::SystemClock);
    let ada = airlock::core::ids::AccountId::new("ada");
    let answer = |fields: &str| -> &'static str {
        let body = format!(r#"{{"account_id": "ada", "destinations": []{fields}}}"#);
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        Box::leak(reply.into_boxed_str())
    };
    for (fields, unknown, enrolled) in [
        (r#", "authenticator_unknown": true"#, true, false),
        (r#", "authenticator_unknown": true, "totp_enrolled_at": "2024-01-01T00:00:00Z""#, false, true),
        ("", false, false),
    ] {
        let adapter = broken_adapter(answer(fields));
        let directory = HttpDirectory::connect(&adapter.url, secret(), clock.clone()).await.unwrap();
        let snapshot = directory.snapshot(&ada).await.unwrap();
        assert_eq!(snapshot.authenticator_unknown, unknown, "{fields}");
        assert_eq!(snapshot.totp_enrolled_since.is_some(), enrolled, "{fields}");
        assert_eq!(snapshot.may_have_authenticator(), unknown || enrolled, "{fields}");
    }
}

// Proves issue 18, item 4, through `serve`: an adapter that keeps no age per destination (`per_factor_ages: false`)
// cannot make an email old by saying so. The first request for cy, whose adapter claims its email was verified 400
// days ago, sends no code and goes to people: airlock has only just seen that email. Eight days on (a restarted serve
// whose clock runs ahead), cy's email has been known to airlock for long enough and gets a code, and so has fin's,
// which airlock saw only by reading the whole directory when serve started (directory sync); dee's, whose address
// changed at the adapter in between, is new again and gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_a_directory_cannot_date_are_dated_by_airlock() {
    let mut harness = Harness::new();
    let secrets = secrets_file(harness.scratch.path());
    let old = rfc3339_ago(400 * 24);
    let accounts = json!([
        { "account_id": "cy", "destinations": [{ "id": "cy-mail", "kind": "email", "address": "cy@example.com", "verified_at": old }] },
        { "account_id": "dee", "destinations": [{ "id": "dee-mail", "kind": "email", "address": "dee@example.com", "verified_at": old }] },
        { "account_id": "fin", "destinations": [{ "id": "fin-mail", "kind": "email", "address": "fin@example.com", "verified_at": old }] },
    ]);
    let adapter = start_adapter(harness.scratch.path(), &secrets, accounts, &["--no-ages"]);
    let directory = ["--directory", "http", "--directory-url", &adapter.url, "--directory-secrets"];
    let directory = [&directory[..], &[secrets.to_str().unwrap()]].concat();
    let desk = Actor::new(Role::Intake, "desk");
    let request = |command_id: &str, account: &str| {
        json!({ "version": 1, "command_id": command_id, "account_id": account,
                "action": { "type": "reset_password" }, "summary": "locked out", "signals": {} })
    };
    let open = async |harness: &Harness, command_id: &str, account: &str| {
        let client = harness.client().await;
        let opened = send(&client, &desk, CommandType::RequestRecovery, request(command_id, account)).await;
        let case_id = opened["case_id"].as_str().unwrap_or_else(|| panic!("{opened}")).to_string();
        common::wait_for(|| !case_status(harness, &case_id).is_empty(), "the case in the projection");
        case_id
    };

    harness.start_serve(&directory, &[]);
    // serve reads the whole directory when it starts (/v1/accounts/list): fin, never asked about, is dated too.
    common::wait_for(|| harness.serve_log().contains("directory synced"), "serve's first directory sync");
    assert!(harness.serve_log().contains("accounts=3"), "{}", harness.serve_log());
    for account in ["cy", "dee"] {
        let case_id = open(&harness, &format!("first-{account}"), account).await;
        common::wait_for(|| case_status(&harness, &case_id) == "\"in_review\"", "the first case to go to people");
        assert!(!code_sent(&harness.data(), &case_id), "{account}: a destination airlock just saw got a code");
    }
    let writer = rusqlite::Connection::open(&adapter.db).unwrap();
    writer.execute("UPDATE destinations SET address = 'dee-new@example.com' WHERE account_id = 'dee'", []).unwrap();
    harness.stop_serve();

    harness.start_serve(&directory, &[("AIRLOCK_CLOCK_AHEAD", "8days")]);
    let cy_case = open(&harness, "later-cy", "cy").await;
    common::wait_for(|| code_sent(&harness.data(), &cy_case), "a code to the email airlock has known for 8 days");
    let fin_case = open(&harness, "later-fin", "fin").await;
    common::wait_for(|| code_sent(&harness.data(), &fin_case), "a code to the email airlock synced 8 days ago");
    let dee_case = open(&harness, "later-dee", "dee").await;
    common::wait_for(|| case_status(&harness, &dee_case) == "\"in_review\"", "dee's case to go to people");
    assert!(!code_sent(&harness.data(), &dee_case), "a changed address kept its first sight");
}

// Proves the protocol's precondition (issue 18, item 2): an effect carries the factors the decision saw, and the
// reference adapter applies it only while the account still has them. A phone added at the company's directory after
// the decision makes it answer 409 `changed`, naming the destination by id (never its number), which airlock reports
// as a changed account for people to look at; nothing is applied and nothing recorded under the effect id, so the
// same effect with what the account holds now applies, once.
#[tokio::test]
async fn an_effect_on_an_account_that_changed_since_the_decision_is_refused_by_the_adapter() {
    use airlock::core::action::RecoveryAction;
    use airlock::core::ids::{AccountId, EffectId, UnixMs};
    use airlock::directory::http::{HttpDirectory, Secret};
    use airlock::directory::{AccountDirectory, DirectoryError};
    let scratch = common::scratch();
    let secrets = secrets_file(scratch.path());
    let accounts = json!([{ "account_id": "kai",
        "destinations": [{ "id": "kai-mail", "kind": "email", "address": "kai@example.com", "verified_at": rfc3339_ago(400 * 24) }] }]);
    let adapter = start_adapter(scratch.path(), &secrets, accounts, &[]);
    let clock: std::sync::Arc<dyn airlock::clock::Clock> = std::sync::Arc::new(airlock::clock::SystemClock);
    let directory = HttpDirectory::connect(&adapter.url, Secret::load_file(&secrets).unwrap(), clock).await.unwrap();
    let kai = AccountId::new("kai");
    let now = UnixMs(common::threats::now_ms() as u64);
    let seen = directory.snapshot(&kai).await.unwrap();
    let writer = rusqlite::Connection::open(&adapter.db).unwrap();
    writer.execute("INSERT INTO destinations VALUES ('kai', 'kai-phone', 'phone', '+15550100', NULL)", []).unwrap();

    let effect = EffectId::new("case-kai/execute/1");
    let refused = directory.execute(&effect, &kai, &RecoveryAction::ResetPassword, &seen, now).await.unwrap_err();
    assert!(matches!(refused, DirectoryError::Changed(_)), "{refused}");
    assert!(refused.to_string().contains("kai-phone") && !refused.to_string().contains("5550100"), "{refused}");
    assert_eq!(password_version(&adapter, "kai"), 1, "a change was applied to an account that changed");
    assert_eq!(count(&adapter, "SELECT count(*) FROM effects WHERE idempotency_key LIKE ?1", "effects:%"), 0);

    let fresh = directory.snapshot(&kai).await.unwrap();
    directory.execute(&effect, &kai, &RecoveryAction::ResetPassword, &fresh, now).await.unwrap();
    directory.execute(&effect, &kai, &RecoveryAction::ResetPassword, &fresh, now).await.unwrap();
    assert_eq!(password_version(&adapter, "kai"), 2);
}
