//! Issue 18: airlock governs accounts it does not hold. `airlock serve --nats` with `--directory http` reads and
//! changes the accounts of the reference directory adapter (examples/directory-adapter/adapter.py, Python, standard
//! library, its own SQLite user table), and each test asserts what that directory holds afterwards, read from its own
//! file, not what airlock believes.

use airlock::core::actor::{Actor, Role};
use airlock::intake::CommandType;
use airlock::intake::nats::send_command;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;

use common::serve::Harness;

const ADAPTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/directory-adapter/adapter.py");

/// The reference adapter, running on a loopback port of its own choosing; stopped by its PID when dropped.
struct Adapter {
    child: Child,
    url: String,
    db: PathBuf,
}

impl Drop for Adapter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rfc3339_ago(hours: u64) -> String {
    let at = std::time::SystemTime::now() - Duration::from_secs(hours * 3_600);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// A secrets file (owner-only) with one fresh secret, and the secret.
fn secrets_file(directory: &Path) -> PathBuf {
    use base64::Engine as _;
    let secret: [u8; 32] = rand::random();
    let path = directory.join("directory-secrets");
    let text =
        format!("# airlock signs with this\nwhsec_{}\n", base64::engine::general_purpose::STANDARD.encode(secret));
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    path
}

fn start_adapter(directory: &Path, secrets: &Path, accounts: Value) -> Adapter {
    let seed = directory.join("seed.json");
    std::fs::write(&seed, accounts.to_string()).unwrap();
    let db = directory.join("users.db");
    let mut child = Command::new("python3")
        .args([ADAPTER, "--db", db.to_str().unwrap(), "--secrets", secrets.to_str().unwrap()])
        .args(["--seed", seed.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("the adapter said {line:?}"));
    Adapter { url: url.to_string(), db, child }
}

fn users(adapter: &Adapter) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(&adapter.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

fn password_version(adapter: &Adapter, account: &str) -> i64 {
    users(adapter)
        .query_row("SELECT password_version FROM users WHERE account_id = ?1", [account], |row| row.get(0))
        .unwrap()
}

fn count(adapter: &Adapter, sql: &str, account: &str) -> i64 {
    users(adapter).query_row(sql, [account], |row| row.get(0)).unwrap()
}

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

/// One raw HTTP/1.1 request to the adapter, with these headers; its status code.
fn raw_status(url: &str, path: &str, headers: &[(&str, String)]) -> u16 {
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
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
    let adapter = start_adapter(harness.scratch.path(), &secrets, accounts);
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
    harness.start_serve(&directory, &[("AIRLOCK_CLOCK_AHEAD", "25h")]);
    common::wait_for(|| case_status(&harness, &ada_case) == "\"executed\"", "the restarted executor to confirm");
    assert_eq!(password_version(&adapter, "ada"), 2, "the reset was applied twice");
    let open_sessions = "SELECT count(*) FROM sessions WHERE account_id = ?1 AND revoked_at IS NULL";
    assert_eq!(count(&adapter, open_sessions, "ada"), 0, "sessions opened before the reset are still open");
    common::wait_for(
        || count(&adapter, "SELECT count(*) FROM holds WHERE account_id = ?1", "ada") == 0,
        "the hold to be released",
    );
    assert_eq!(count(&adapter, "SELECT count(*) FROM effects WHERE idempotency_key LIKE ?1", "effects:%"), 1);

    // The adapter's side of the signature: a wrong one and a stale one are refused.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let secret = airlock::directory::http::Secret::load_file(&secrets).unwrap();
    let signed = |timestamp: u64| {
        let signature = airlock::directory::http::signature(&secret, "probe-1", timestamp, b"");
        vec![
            ("webhook-id", "probe-1".to_string()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ]
    };
    assert_eq!(raw_status(&adapter.url, "/v1/accounts/ada", &signed(now)), 200);
    assert_eq!(raw_status(&adapter.url, "/v1/accounts/ada", &signed(now - 600)), 401, "a stale timestamp");
    let mut forged = signed(now);
    forged[2].1 = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_string();
    assert_eq!(raw_status(&adapter.url, "/v1/accounts/ada", &forged), 401, "a forged signature");
    assert_eq!(raw_status(&adapter.url, "/v1/accounts/ada", &[]), 401, "no signature");
}
