//! Issue 18, item 3: airlock governs the accounts of an identity provider that speaks SCIM 2.0, through
//! `airlock serve --nats --directory scim`, against two real SCIM servers from PyPI that nobody here wrote: canaille
//! (an identity provider) and scim2-server. Each test asserts what the identity provider holds afterwards, read through
//! its own SCIM API, not what airlock believes. scripts/idp-venvs.sh installs both (scripts/test.sh runs it). The
//! same scenario also runs through the reference HTTP adapter, read back from its own user table.

use airlock::core::actor::{Actor, Role};
use airlock::intake::CommandType;
use airlock::intake::nats::send_command;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;

use common::serve::Harness;

const CANAILLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/idp/canaille_server.py");

fn venvs() -> PathBuf {
    let root = std::env::var_os("AIRLOCK_IDP_VENVS").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
        cache.join("airlock/idp")
    });
    assert!(
        root.join("canaille/bin/python").exists(),
        "no identity providers in {}: run scripts/idp-venvs.sh",
        root.display()
    );
    root
}

/// A SCIM server on a loopback port, stopped by its PID when dropped.
struct Idp {
    child: Child,
    /// The SCIM base URL (`.../Users` is below it).
    base: String,
    token: String,
    /// Each user's SCIM id, by user name.
    ids: HashMap<String, String>,
    http: reqwest::Client,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Users as (user name, emails).
type Users<'a> = &'a [(&'a str, &'a [&'a str])];

/// canaille, in memory, with `users`; its SCIM API takes an OAuth token it issued to a client made for airlock.
fn canaille(scratch: &Path, users: Users<'_>) -> Idp {
    let file = scratch.join("canaille-users.json");
    let records: Vec<Value> = users
        .iter()
        .map(|(name, emails)| json!({ "user_name": name, "emails": emails, "password": "Correct-horse-1" }))
        .collect();
    std::fs::write(&file, Value::from(records).to_string()).unwrap();
    let mut child = Command::new(venvs().join("canaille/bin/python"))
        .args([CANAILLE, "--users", file.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("canaille says where it listens").unwrap();
    let words: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(words[..2], ["listening", "on"], "canaille said {first:?}");
    let (url, token) = (words[2].to_string(), words[4].to_string());
    let mut ids = HashMap::new();
    for _ in users {
        let line = lines.next().unwrap().unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        ids.insert(words[1].to_string(), words[2].to_string());
    }
    Idp { child, base: format!("{url}/scim/v2"), token, ids, http: reqwest::Client::new() }
}

/// scim2-server, in memory, with a tenant of its own and `users` created through its SCIM API.
async fn scim2_server(users: Users<'_>) -> Idp {
    let token = format!("t{}", hex::encode(rand::random::<[u8; 16]>()));
    let (child, port) = (0..5)
        .find_map(|_| {
            // The server takes a port number, not 0: a free one is picked, and another if it was taken meanwhile.
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut child = Command::new(venvs().join("scim2-server/bin/scim2-server"))
                .args(["--hostname", "127.0.0.1", "--port", &port.to_string(), "--bearer-token", &token])
                .arg("--dynamic-tenants")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
            if line.starts_with("Serving SCIM") {
                Some((child, port))
            } else {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        })
        .expect("scim2-server starts");
    let mut idp = Idp {
        child,
        base: format!("http://127.0.0.1:{port}/airlock-test/v2"),
        token,
        ids: HashMap::new(),
        http: reqwest::Client::new(),
    };
    for (name, emails) in users {
        let emails: Vec<Value> = emails.iter().map(|email| json!({ "value": email })).collect();
        let user = json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name,
                           "emails": emails, "password": "Correct-horse-1" });
        let created: Value = idp
            .http
            .post(format!("{}/Users", idp.base))
            .bearer_auth(&idp.token)
            .header("Content-Type", "application/scim+json")
            .body(user.to_string())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .map(|bytes| serde_json::from_slice(&bytes).unwrap())
            .unwrap();
        idp.ids.insert(name.to_string(), created["id"].as_str().unwrap_or_else(|| panic!("{created}")).to_string());
    }
    idp
}

impl Idp {
    fn id(&self, name: &str) -> String {
        self.ids[name].clone()
    }

    /// Whether the identity provider holds `password` for the user: canaille's own password check (its launcher's test
    /// route); `None` for a server that offers no way to tell (SCIM never returns a password).
    async fn holds_password(&self, name: &str, password: &str) -> Option<bool> {
        let root = self.base.strip_suffix("/scim/v2")?;
        let body = json!({ "user_name": name, "password": password }).to_string();
        let answer = self.http.post(format!("{root}/airlock-test/check-password")).body(body).send().await.unwrap();
        let checked: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
        checked["valid"].as_bool()
    }

    /// The user as the identity provider holds it, read through its own SCIM API.
    async fn user(&self, name: &str) -> Value {
        let url = format!("{}/Users/{}", self.base, self.id(name));
        let answer = self.http.get(url).bearer_auth(&self.token).send().await.unwrap();
        serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap()
    }

    async fn emails(&self, name: &str) -> Vec<String> {
        let user = self.user(name).await;
        let emails = user["emails"].as_array().cloned().unwrap_or_default();
        emails.iter().map(|email| email["value"].as_str().unwrap().to_string()).collect()
    }

    /// A change made at the identity provider, not through airlock (an administrator, another tool).
    async fn add(&self, name: &str, attribute: &str, value: &str) {
        let patch = json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                            "Operations": [{ "op": "add", "path": attribute, "value": [{ "value": value }] }] });
        let answer = self
            .http
            .patch(format!("{}/Users/{}", self.base, self.id(name)))
            .bearer_auth(&self.token)
            .header("Content-Type", "application/scim+json")
            .body(patch.to_string())
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{}", answer.text().await.unwrap());
    }

    /// The `serve` options that point airlock at this server, with the token in an owner-only file.
    fn serve_options(&self, scratch: &Path) -> Vec<String> {
        let file = scratch.join("scim-token");
        std::fs::write(&file, format!("# airlock's SCIM token\n{}\n", self.token)).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        ["--directory", "scim", "--directory-url", &self.base, "--directory-token", file.to_str().unwrap()]
            .map(str::to_string)
            .to_vec()
    }
}

/// The company directory a scenario runs against: a SCIM server, or the reference HTTP adapter (its own SQLite user
/// table, read back by the test; it keeps no age per address here, so airlock dates them as it does for SCIM).
enum Under {
    Scim(Idp),
    Adapter { adapter: common::adapter::Adapter, secrets: PathBuf },
}

impl Under {
    fn id(&self, name: &str) -> String {
        match self {
            Under::Scim(idp) => idp.id(name),
            Under::Adapter { .. } => name.to_string(),
        }
    }

    /// A change made at the company's directory, not through airlock.
    async fn add(&self, name: &str, attribute: &str, value: &str) {
        match self {
            Under::Scim(idp) => idp.add(name, attribute, value).await,
            Under::Adapter { adapter, .. } => {
                let kind = if attribute == "emails" { "email" } else { "phone" };
                let id = format!("{name}-{kind}-{}", hex::encode(rand::random::<[u8; 3]>()));
                let writer = rusqlite::Connection::open(&adapter.db).unwrap();
                let insert = "INSERT INTO destinations VALUES (?1, ?2, ?3, ?4, NULL)";
                writer.execute(insert, rusqlite::params![name, id, kind, value]).unwrap();
            }
        }
    }

    /// What changes whenever the user's password or addresses change.
    async fn version(&self, name: &str) -> String {
        match self {
            Under::Scim(idp) => idp.user(name).await["meta"]["version"].to_string(),
            Under::Adapter { adapter, .. } => {
                let addresses = self_emails(adapter, name, None).join(",");
                format!("{}:{addresses}", common::adapter::password_version(adapter, name))
            }
        }
    }

    async fn emails(&self, name: &str) -> Vec<String> {
        match self {
            Under::Scim(idp) => idp.emails(name).await,
            Under::Adapter { adapter, .. } => self_emails(adapter, name, Some("email")),
        }
    }

    async fn holds_password(&self, name: &str, password: &str) -> Option<bool> {
        match self {
            Under::Scim(idp) => idp.holds_password(name, password).await,
            Under::Adapter { adapter, .. } => Some(common::adapter::holds_password(adapter, name, password)),
        }
    }

    fn serve_options(&self, scratch: &Path) -> Vec<String> {
        match self {
            Under::Scim(idp) => idp.serve_options(scratch),
            Under::Adapter { adapter, secrets } => [
                "--directory",
                "http",
                "--directory-url",
                &adapter.url,
                "--directory-secrets",
                secrets.to_str().unwrap(),
            ]
            .map(str::to_string)
            .to_vec(),
        }
    }

    /// Whether the directory ends sessions (the adapter does; SCIM cannot, and its receipts say so).
    fn ends_sessions(&self) -> bool {
        matches!(self, Under::Adapter { .. })
    }
}

/// A user's addresses at the adapter, of one kind or all, oldest first.
fn self_emails(adapter: &common::adapter::Adapter, name: &str, kind: Option<&str>) -> Vec<String> {
    let connection = common::adapter::users(adapter);
    let mut statement = connection
        .prepare("SELECT address FROM destinations WHERE account_id = ?1 AND (?2 IS NULL OR kind = ?2) ORDER BY rowid")
        .unwrap();
    statement.query_map(rusqlite::params![name, kind], |row| row.get(0)).unwrap().map(Result::unwrap).collect()
}

fn outbox_addresses(data: &Path, case_id: &str) -> Vec<String> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let Ok(connection) = rusqlite::Connection::open_with_flags(data.join("directory.db"), flags) else {
        return Vec::new();
    };
    let Ok(mut statement) = connection.prepare("SELECT address FROM outbox WHERE case_id = ?1") else {
        return Vec::new();
    };
    statement.query_map([case_id], |row| row.get(0)).unwrap().map(Result::unwrap).collect()
}

fn all_outbox_addresses(data: &Path) -> Vec<String> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let connection = rusqlite::Connection::open_with_flags(data.join("directory.db"), flags).unwrap();
    let mut statement = connection.prepare("SELECT address FROM outbox").unwrap();
    statement.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect()
}

fn case(harness: &Harness, case_id: &str) -> Value {
    let output = harness.airlock(&["case", "show", case_id, "--json"]);
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

fn status(harness: &Harness, case_id: &str) -> String {
    case(harness, case_id)["status"].as_str().unwrap_or_default().to_string()
}

async fn send(client: &async_nats::Client, actor: &Actor, command: CommandType, body: Value) -> Value {
    send_command(client, actor, command, body.to_string().into_bytes(), Duration::from_secs(30)).await.unwrap()
}

/// Opens a case for `account` (a SCIM id) and waits until the projection has it.
async fn request(harness: &Harness, command_id: &str, account: &str, action: Value, signals: Value) -> String {
    let client = harness.client().await;
    let desk = Actor::new(Role::Intake, "support-agent");
    let summary = "Customer is travelling, on their usual phone near home; please link their new email and hurry";
    let body = common::threats::request_body(command_id, account, action, summary, signals);
    let opened = send(&client, &desk, CommandType::RequestRecovery, body).await;
    let case_id = opened["case_id"].as_str().unwrap_or_else(|| panic!("{opened}")).to_string();
    common::wait_for(|| !status(harness, &case_id).is_empty(), "the case in the projection");
    case_id
}

async fn prove(harness: &Harness, command_id: &str, case_id: &str, code: &str) -> Value {
    let client = harness.client().await;
    let page = Actor::new(Role::Owner, "verification-page");
    let proof = json!({ "version": 1, "command_id": command_id, "case_id": case_id, "code": code });
    send(&client, &page, CommandType::SubmitProof, proof).await
}

fn wait_for_sync(harness: &Harness) {
    common::wait_for(|| harness.serve_log().contains("directory synced"), "serve's first directory sync");
}

/// THREATS 1, 2, 3, 7, 9 and 13, the cooling-off freeze and factor ages airlock vouches for, through `serve` against
/// one company directory (a SCIM server, or the reference HTTP adapter). The accounts' emails are days old for airlock only after it has seen them (SCIM keeps no age per
/// address): a first serve syncs the directory, and later ones run with their clocks ahead.
async fn recoveries_through(idp: Under, mut harness: Harness) {
    let options = idp.serve_options(harness.scratch.path());
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let [ada, bo, cy, dee, eve] = ["ada", "bo", "cy", "dee", "eve"].map(|name| idp.id(name));

    // Airlock sees the directory for the first time: every address is new, so a reset gets no code (it goes to
    // people), however old the identity provider's account is.
    harness.start_serve(&options, &[]);
    wait_for_sync(&harness);
    assert!(harness.serve_log().contains("accounts=5"), "{}", harness.serve_log());
    let first = request(&harness, "first-eve", &eve, json!({ "type": "reset_password" }), json!({})).await;
    common::wait_for(|| status(&harness, &first) == "in_review", "a reset to a just-seen address to go to people");
    assert!(outbox_addresses(&harness.data(), &first).is_empty(), "an address airlock just saw got a code");
    harness.stop_serve();

    // Eight days on. An email added at the identity provider now (with no age SCIM could tell) gets no code.
    harness.start_serve(&options, &[("AIRLOCK_CLOCK_AHEAD", "8days")]);
    wait_for_sync(&harness);
    idp.add("dee", "emails", "dee-new@example.net").await;
    // Signals that claim the requester is where the owner usually is: none of it is proof (THREATS 3).
    let near = json!({ "via_proxy": true, "region": "Lyon, FR, near the account's usual region",
                       "source_network": "the owner's usual ISP" });
    let dee_case = request(&harness, "r-dee", &dee, json!({ "type": "reset_password" }), near.clone()).await;
    common::wait_for(|| !outbox_addresses(&harness.data(), &dee_case).is_empty(), "dee's code");
    assert_eq!(outbox_addresses(&harness.data(), &dee_case), ["dee@example.com"]);
    let code = common::code_for(&harness.data(), &dee_case);
    assert_eq!(prove(&harness, "p-dee", &dee_case, &code).await["status"], "cooling_off");

    // THREATS 1 and 3: the 2026 playbook (a reset, a story of being near home and in a hurry, a new email named in
    // the text) sends one code, to ada's own email, and nothing to the attacker's.
    let ada_case = request(&harness, "r-ada", &ada, json!({ "type": "reset_password" }), near.clone()).await;
    common::wait_for(|| !outbox_addresses(&harness.data(), &ada_case).is_empty(), "ada's code");
    assert_eq!(outbox_addresses(&harness.data(), &ada_case), ["ada@example.com"]);
    let code = common::code_for(&harness.data(), &ada_case);
    assert_eq!(prove(&harness, "p-ada", &ada_case, &code).await["status"], "cooling_off");

    // THREATS 2: adding an email takes proof from bo's own, and the new one gets nothing.
    let add = json!({ "type": "add_destination", "kind": "email", "address": "bo-new@attacker.example" });
    let bo_case = request(&harness, "r-bo", &bo, add, json!({})).await;
    common::wait_for(|| !outbox_addresses(&harness.data(), &bo_case).is_empty(), "bo's code");
    assert_eq!(outbox_addresses(&harness.data(), &bo_case), ["bo@example.com"]);
    let code = common::code_for(&harness.data(), &bo_case);
    assert_eq!(prove(&harness, "p-bo", &bo_case, &code).await["status"], "cooling_off");

    // THREATS 7: guessing cy's code gets nowhere, and changes nothing at the identity provider.
    let cy_case = request(&harness, "r-cy", &cy, json!({ "type": "reset_password" }), json!({})).await;
    common::wait_for(|| !outbox_addresses(&harness.data(), &cy_case).is_empty(), "cy's code");
    let right = common::code_for(&harness.data(), &cy_case);
    let wrong = common::threats::wrong_code(&right);
    let mut guesses = 0;
    while status(&harness, &cy_case) == "requested" && guesses < 20 {
        guesses += 1;
        prove(&harness, &format!("guess-{guesses}"), &cy_case, wrong).await;
    }
    assert!(guesses < 20, "wrong codes were never limited");
    assert_ne!(status(&harness, &cy_case), "cooling_off");
    let late = prove(&harness, "late-right", &cy_case, &right).await;
    assert_ne!(late["status"], "cooling_off", "the right code after the limit: {late}");

    // THREATS 9: SCIM shows no authenticator, so eve's email is the strongest factor airlock can see; but nothing a
    // SCIM directory holds can remove one: the change is refused when it is due and goes to people.
    let totp = request(&harness, "r-eve-totp", &eve, json!({ "type": "remove_totp" }), json!({})).await;
    common::wait_for(|| !outbox_addresses(&harness.data(), &totp).is_empty(), "eve's code");
    assert_eq!(outbox_addresses(&harness.data(), &totp), ["eve@example.com"]);
    let code = common::code_for(&harness.data(), &totp);
    prove(&harness, "p-eve-totp", &totp, &code).await;
    let eve_before = idp.version("eve").await;

    // The freeze without trust: during ada's cooling-off someone adds a phone to her account at the identity provider.
    idp.add("ada", "phoneNumbers", "+15550123").await;
    let ada_after_change = idp.version("ada").await;
    let dee_before = idp.version("dee").await;
    let cy_before = idp.version("cy").await;
    harness.stop_serve();

    // After the cooling-off, serve dies right after the identity provider applied the first change and before airlock
    // recorded it; the restarted executor confirms it without applying it twice.
    harness.start_serve(&options, &[("AIRLOCK_CLOCK_AHEAD", "12days"), ("AIRLOCK_CRASH_AFTER_EFFECT", "1")]);
    let crashed = harness.wait_for_exit();
    assert!(!crashed.success(), "serve was to abort after the effect:\n{}", harness.serve_log());
    let with_page = [&options[..], &["--http", "127.0.0.1:0"]].concat();
    harness.start_serve(&with_page, &[("AIRLOCK_CLOCK_AHEAD", "12days")]);
    common::wait_for(|| status(&harness, &bo_case) == "executed", "bo's new email to be added");
    common::wait_for(|| status(&harness, &dee_case) == "executed", "dee's reset to be applied");
    common::wait_for(|| status(&harness, &ada_case) == "in_review", "ada's changed account to go back to people");
    assert_eq!(idp.emails("bo").await, ["bo@example.com", "bo-new@attacker.example"], "added once, at the IdP");
    // canaille's version changes only once a second, so its own password check says it there.
    match idp.holds_password("dee", "Correct-horse-1").await {
        Some(held) => assert!(!held, "dee's old password still works at the IdP"),
        None => assert_ne!(idp.version("dee").await, dee_before, "dee's password was not replaced"),
    }
    assert_eq!(idp.emails("dee").await, ["dee@example.com", "dee-new@example.net"], "a reset changed an address");
    assert_eq!(idp.version("ada").await, ada_after_change, "ada's account changed after all");
    assert_eq!(idp.version("cy").await, cy_before, "guessing changed cy's account");
    assert_ne!(status(&harness, &totp), "executed");
    assert_eq!(idp.version("eve").await, eve_before, "eve's account changed");
    let evidence = harness.airlock(&["review", "show", &ada_case, "--json"]);
    let ada_reason = String::from_utf8_lossy(&evidence.stdout).to_string();
    assert!(ada_reason.contains("core:") && ada_reason.contains("phone"), "the change is not named: {ada_reason}");
    assert!(!ada_reason.contains("+15550123"), "a reason names an address: {ada_reason}");
    let dee_receipt = case(&harness, &dee_case).to_string();
    match idp.ends_sessions() {
        true => assert!(dee_receipt.contains("session"), "the receipt says nothing of sessions: {dee_receipt}"),
        false => assert!(dee_receipt.contains("not revoked"), "the receipt hides that sessions live on: {dee_receipt}"),
    }

    // Issue 18, item 5: dee chooses a new password through the single-use link the reset sent to the email it was
    // proven from (never to the address added at the IdP since); the IdP's user changes, and the link is then spent.
    common::wait_for(|| !common::set_password_links(&harness.data(), &dee_case).is_empty(), "dee's set-password link");
    let links = common::set_password_links(&harness.data(), &dee_case);
    assert_eq!(links.iter().map(|(to, _)| to.as_str()).collect::<Vec<_>>(), ["dee@example.com"], "{links:?}");
    let page = harness.page_address();
    let chosen = "a long passphrase of dee's own";
    assert_ne!(idp.holds_password("dee", chosen).await, Some(true));
    assert_ne!(idp.holds_password("dee", "Correct-horse-1").await, Some(true), "the reset kept the old password");
    let (code, answer) = common::use_set_password_link(&page, &links[0].1, chosen, None);
    assert_eq!(code, 200, "{answer}");
    assert_ne!(idp.holds_password("dee", chosen).await, Some(false), "the IdP's password was not set");
    assert_eq!(common::use_set_password_link(&page, &links[0].1, chosen, None).0, 409, "a link used twice");
    assert!(!harness.serve_log().contains(chosen), "the password is in serve's log");
    assert!(case(&harness, &dee_case).to_string().contains("password_set"), "{}", case(&harness, &dee_case));

    // THREATS 13: the owner objects and an operator rolls the change back: the added email is gone at the IdP.
    let url = harness.nats.url();
    let rollback =
        harness.airlock(&["rollback", &bo_case, "--reason", "owner objected", "--nats", &url, "--operator", "ops-1"]);
    assert_eq!(rollback.status.code(), Some(0), "{}", String::from_utf8_lossy(&rollback.stderr));
    common::wait_for(|| status(&harness, &bo_case) == "rolled_back", "bo's case to be rolled back");
    assert_eq!(idp.emails("bo").await, ["bo@example.com"], "the added email is still at the IdP");

    // No message of any kind went to an address the attacker named.
    let sent = all_outbox_addresses(&harness.data());
    assert!(sent.iter().all(|address| !address.contains("attacker")), "{sent:?}");
}

const USERS: Users<'static> = &[
    ("ada", &["ada@example.com"]),
    ("bo", &["bo@example.com"]),
    ("cy", &["cy@example.com"]),
    ("dee", &["dee@example.com"]),
    ("eve", &["eve@example.com"]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recoveries_through_canaille_scim() {
    let harness = Harness::new();
    let idp = canaille(harness.scratch.path(), USERS);
    recoveries_through(Under::Scim(idp), harness).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recoveries_through_scim2_server() {
    let harness = Harness::new();
    let idp = scim2_server(USERS).await;
    recoveries_through(Under::Scim(idp), harness).await;
}

// The same scenario through the reference HTTP adapter (holding accounts, checking authenticator codes, ending
// sessions, but keeping no age per address): eve has an authenticator there, which an email code alone never removes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recoveries_through_the_reference_http_adapter() {
    let harness = Harness::new();
    let secrets = common::adapter::secrets_file(harness.scratch.path());
    let accounts: Vec<Value> = USERS
        .iter()
        .map(|(name, emails)| {
            let destinations: Vec<Value> = (emails.iter().enumerate())
                .map(|(n, email)| json!({ "id": format!("{name}-email-{n}"), "kind": "email", "address": email }))
                .collect();
            let mut account = json!({ "account_id": name, "sessions": 1, "destinations": destinations });
            if *name == "eve" {
                account["totp_secret"] = json!("JBSWY3DPEHPK3PXP");
                account["totp_enrolled_at"] = json!(common::adapter::rfc3339_ago(400 * 24));
            }
            account
        })
        .collect();
    let adapter =
        common::adapter::start_adapter(harness.scratch.path(), &secrets, Value::from(accounts), &["--no-ages"]);
    recoveries_through(Under::Adapter { adapter, secrets }, harness).await;
}

// Proves the SCIM directory's own guards, called directly against scim2-server: a change is written only if the user
// still has the factors the decision saw (an address added at the identity provider since fails it, naming the
// destination by id, never by address); applying it again (a retry after a crash) adds nothing twice; its rollback
// removes only what it added, and again is a no-op; a reset replaces the password without it ever appearing in what
// airlock returns; and a user that does not exist is said so, never created.
#[tokio::test]
async fn scim_changes_are_conditional_and_ensure_state() {
    use airlock::core::account::DestinationKind;
    use airlock::core::action::RecoveryAction;
    use airlock::core::ids::{AccountId, EffectId, UnixMs};
    use airlock::directory::scim::{ScimDirectory, Token};
    use airlock::directory::{AccountDirectory, DirectoryError};
    let idp = scim2_server(&[("fay", &["fay@example.com"])]).await;
    let scratch = common::scratch();
    let file = scratch.path().join("token");
    std::fs::write(&file, &idp.token).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let clock: std::sync::Arc<dyn airlock::clock::Clock> = std::sync::Arc::new(airlock::clock::SystemClock);
    let wrong = scratch.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-token\n").unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let refused = ScimDirectory::connect(&idp.base, Token::load_file(&wrong).unwrap(), clock.clone()).await.err();
    let refused = refused.expect("a wrong token is refused at connect");
    assert!(refused.contains("token") && !refused.contains("not-the-token"), "{refused}");
    let directory = ScimDirectory::connect(&idp.base, Token::load_file(&file).unwrap(), clock).await.unwrap();
    let fay = AccountId::new(idp.id("fay"));
    let now = UnixMs(common::threats::now_ms() as u64);
    let add = RecoveryAction::AddDestination { kind: DestinationKind::Email, address: "fay-new@example.org".into() };

    let seen = directory.snapshot(&fay).await.unwrap();
    assert_eq!(seen.destinations.len(), 1);
    idp.add("fay", "phoneNumbers", "+15550199").await;
    let effect = EffectId::new("case-1/effect-1");
    let refused = directory.execute(&effect, &fay, &add, &seen, now).await.unwrap_err();
    assert!(matches!(refused, DirectoryError::Changed(_)), "{refused}");
    assert!(refused.to_string().contains("phone-") && !refused.to_string().contains("15550199"), "{refused}");
    assert_eq!(idp.emails("fay").await, ["fay@example.com"], "a change written over one made since the decision");

    let seen = directory.snapshot(&fay).await.unwrap();
    let first = directory.execute(&effect, &fay, &add, &seen, now).await.unwrap();
    let again = directory.execute(&effect, &fay, &add, &seen, now).await.unwrap();
    assert_eq!(first, again, "a retry answers what the first attempt did");
    assert_eq!(idp.emails("fay").await, ["fay@example.com", "fay-new@example.org"]);
    assert!(
        first
            .iter()
            .any(|change| change.record == "sessions" && change.new.as_deref().unwrap().contains("not revoked"))
    );

    let reversal = airlock::core::decide::reversal_of(&first);
    let undo = EffectId::new("case-1/rollback-1");
    directory.revert(&undo, &fay, &reversal, now, now).await.unwrap();
    directory.revert(&undo, &fay, &reversal, now, now).await.unwrap();
    assert_eq!(idp.emails("fay").await, ["fay@example.com"], "the rollback left the added email");
    assert_eq!(idp.user("fay").await["phoneNumbers"][0]["value"], "+15550199", "the rollback removed another change");

    let before = idp.user("fay").await["meta"]["version"].clone();
    let seen = directory.snapshot(&fay).await.unwrap();
    let reset = directory
        .execute(&EffectId::new("case-2/effect-1"), &fay, &RecoveryAction::ResetPassword, &seen, now)
        .await
        .unwrap();
    assert_ne!(idp.user("fay").await["meta"]["version"], before, "the password was not replaced");
    assert!(format!("{reset:?}").len() < 400 && !format!("{reset:?}").contains("aA1!"), "{reset:?}");

    let nobody = AccountId::new("no-such-user");
    assert!(!directory.snapshot(&nobody).await.unwrap().known);
    let missing = directory.execute(&EffectId::new("case-3/effect-1"), &nobody, &add, &seen, now).await.unwrap_err();
    assert!(matches!(missing, DirectoryError::NoSuchAccount(_)), "{missing}");
}

// Proves issue 18, item 4's adoption path: on a SCIM directory airlock has just met, every address is new, so a reset
// gets no code. An operator then attests a baseline (`airlock directory sync --baseline --attest REASON`): it is
// recorded with the operator's identity, every address the directory holds is dated as old enough, a reset gets its
// code at once, and the case's history shows the decision relied on that baseline. A plain sync finds nothing new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attested_baseline_is_recorded_and_shown_in_the_decisions_that_rely_on_it() {
    let mut harness = Harness::new();
    let idp = scim2_server(&[("gil", &["gil@example.com"]), ("hal", &["hal@example.com"])]).await;
    let options = idp.serve_options(harness.scratch.path());
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    harness.start_serve(&options, &[]);
    wait_for_sync(&harness);
    let reset = json!({ "type": "reset_password" });
    let before = request(&harness, "r-gil", &idp.id("gil"), reset.clone(), json!({})).await;
    common::wait_for(|| status(&harness, &before) == "in_review", "a reset to a just-seen address to go to people");
    // An address added at the IdP after airlock's first read: airlock saw it appear, and no baseline vouches for it.
    idp.add("hal", "emails", "hal-new@example.net").await;
    let synced =
        harness.airlock(&["directory", "sync", "--json", "--nats", &harness.nats.url(), "--operator", "ops-1"]);
    assert_eq!(synced.status.code(), Some(0), "{}", String::from_utf8_lossy(&synced.stderr));

    let url = harness.nats.url();
    let sync = |extra: &[&str]| {
        let base = ["directory", "sync", "--json", "--nats", &url, "--operator", "ops-1"];
        harness.airlock(&[&base[..], extra].concat())
    };
    let missing_reason = sync(&["--baseline"]);
    assert_eq!(missing_reason.status.code(), Some(2), "{}", String::from_utf8_lossy(&missing_reason.stderr));
    let attested = sync(&["--baseline", "--attest", "adopting airlock; IdP audited (TICKET-1234)"]);
    assert_eq!(attested.status.code(), Some(0), "{}", String::from_utf8_lossy(&attested.stderr));
    let answer: Value = serde_json::from_slice(&attested.stdout).unwrap();
    assert_eq!(answer["baseline"]["by"], "operator:ops-1", "{answer}");
    assert_eq!(answer["synced"]["accounts"], 2, "{answer}");
    assert_eq!(answer["synced"]["dated_by_baseline"], 2, "only the addresses found on the first read: {answer}");

    let after = request(&harness, "r-hal", &idp.id("hal"), reset, json!({})).await;
    common::wait_for(|| !outbox_addresses(&harness.data(), &after).is_empty(), "hal's code after the baseline");
    assert_eq!(outbox_addresses(&harness.data(), &after), ["hal@example.com"]);
    let history = harness.airlock(&["case", "history", &after, "--json", "--nats", &url]);
    let history: Value = serde_json::from_slice(&history.stdout).unwrap();
    let relied: Vec<&Value> =
        history["events"].as_array().unwrap().iter().filter_map(|event| event.get("relied_on_baselines")).collect();
    assert!(!relied.is_empty(), "no decision says it relied on the baseline: {history}");
    assert!(relied[0].to_string().contains("operator:ops-1") && relied[0].to_string().contains("TICKET-1234"));
    let earlier = harness.airlock(&["case", "history", &before, "--json", "--nats", &url]);
    assert!(!String::from_utf8_lossy(&earlier.stdout).contains("relied_on_baselines"), "a decision taken before it");

    let plain = sync(&[]);
    assert_eq!(plain.status.code(), Some(0), "{}", String::from_utf8_lossy(&plain.stderr));
    let answer: Value = serde_json::from_slice(&plain.stdout).unwrap();
    assert_eq!(answer["synced"]["first_seen"], 0, "{answer}");
    assert!(answer.get("baseline").is_none(), "{answer}");
}
