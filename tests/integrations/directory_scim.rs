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
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common;

use common::serve::Harness;

const CANAILLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/idp/canaille_server.py");
const SIGN_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/idp/oidc_sign_in.py");

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
    /// canaille's OpenID Connect client for airlock's page (id, secret), where users sign in with a password and an
    /// authenticator code; none for a SCIM server that is no identity provider.
    oidc: Option<(String, String)>,
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
    canaille_with_groups(scratch, users, &[])
}

/// canaille with `users`, each a member of the groups `memberships` pairs them with (user name, group).
fn canaille_with_groups(scratch: &Path, users: Users<'_>, memberships: &[(&str, &str)]) -> Idp {
    let file = scratch.join("canaille-users.json");
    let records: Vec<Value> = users
        .iter()
        .map(|(name, emails)| {
            let groups: Vec<&str> =
                memberships.iter().filter(|(member, _)| member == name).map(|(_, group)| *group).collect();
            json!({ "user_name": name, "emails": emails, "password": "Correct-horse-1", "totp_secret": totp_secret(name),
                    "groups": groups })
        })
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
    let oidc = Some((words[6].to_string(), words[7].to_string()));
    Idp { child, base: format!("{url}/scim/v2"), token, ids, http: reqwest::Client::new(), oidc }
}

/// The secret of a canaille user's authenticator app (canaille keys its TOTP with the text itself).
fn totp_secret(name: &str) -> String {
    format!("{name}-authenticator-secret")
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
        oidc: None,
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

    /// The `serve` options that point airlock at this server, with the token in an owner-only file; for canaille,
    /// also at its OpenID Connect provider, with the owners' page the sign-in starts from.
    fn serve_options(&self, scratch: &Path) -> Vec<String> {
        let file = scratch.join("scim-token");
        std::fs::write(&file, format!("# airlock's SCIM token\n{}\n", self.token)).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let mut options: Vec<String> =
            ["--directory", "scim", "--directory-url", &self.base, "--directory-token", file.to_str().unwrap()]
                .map(str::to_string)
                .to_vec();
        if let (Some((client, secret)), Some(issuer)) = (&self.oidc, self.base.strip_suffix("/scim/v2")) {
            let file = scratch.join("oidc-client-secret");
            std::fs::write(&file, format!("{secret}\n")).unwrap();
            std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
            let flags = ["--http", "127.0.0.1:0", "--oidc-issuer", issuer, "--oidc-client-id", client];
            options.extend(flags.map(str::to_string));
            options.extend(["--oidc-client-secret".to_string(), file.to_str().unwrap().to_string()]);
        }
        options
    }

    /// Registers the page of the `serve` just started as where canaille sends a signed-in user back to.
    async fn allow_redirect(&self, harness: &Harness) {
        let Some(root) = self.base.strip_suffix("/scim/v2").filter(|_| self.oidc.is_some()) else { return };
        let uri = format!("http://{}/oidc/callback", harness.page_address());
        let body = json!({ "uri": uri }).to_string();
        let answer = self.http.post(format!("{root}/airlock-test/redirect-uri")).body(body).send().await.unwrap();
        assert!(answer.status().is_success(), "{}", answer.text().await.unwrap());
    }
}

/// `name` signs in at canaille from airlock's page (`/oidc/start` for `case_id`, with the password and the
/// authenticator code of `as_user`) and types `code` on the form airlock shows after it, as a browser would
/// (tests/idp/oidc_sign_in.py); `step_up` replaces the sealed sign-in on the form. What the script saw.
fn sign_in(harness: &Harness, case_id: &str, as_user: &str, code: &str, step_up: Option<&str>) -> Value {
    let start = format!("http://{}/oidc/start?case={case_id}", harness.page_address());
    let secret = totp_secret(as_user);
    let mut args =
        vec![SIGN_IN, "--start", &start, "--user", as_user, "--password", "Correct-horse-1", "--totp-secret", &secret];
    args.extend(["--code", code]);
    if let Some(step_up) = step_up {
        args.extend(["--step-up", step_up]);
    }
    let output = Command::new(venvs().join("canaille/bin/python")).args(&args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stdout)))
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

    /// Whether owners can sign in at the company's identity provider from airlock's page (canaille).
    fn signs_in(&self) -> bool {
        matches!(self, Under::Scim(Idp { oidc: Some(_), .. }))
    }

    /// Starts `serve` with `options` and `environment` and, where owners sign in, registers its page at the provider.
    async fn start_serve(&self, harness: &mut Harness, options: &[&str], environment: &[(&str, &str)]) {
        harness.start_serve(options, environment);
        if let Under::Scim(idp) = self {
            idp.allow_redirect(harness).await;
        }
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
    idp.start_serve(&mut harness, &options, &[]).await;
    wait_for_sync(&harness);
    assert!(harness.serve_log().contains("accounts=5"), "{}", harness.serve_log());
    let first = request(&harness, "first-eve", &eve, json!({ "type": "reset_password" }), json!({})).await;
    common::wait_for(|| status(&harness, &first) == "in_review", "a reset to a just-seen address to go to people");
    assert!(outbox_addresses(&harness.data(), &first).is_empty(), "an address airlock just saw got a code");
    harness.stop_serve();

    // Eight days on. An email added at the identity provider now (with no age SCIM could tell) gets no code.
    idp.start_serve(&mut harness, &options, &[("AIRLOCK_CLOCK_AHEAD", "8days")]).await;
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
    match &idp {
        // THREATS 9 where the directory cannot show an authenticator: bo proves hers by signing in at the identity
        // provider (issue 18, item 6).
        _ if idp.signs_in() => bo_signs_in(&harness, &bo_case, &code),
        // A SCIM server that is no identity provider: SCIM cannot show whether bo has an authenticator, so her email's
        // code alone is not enough to change her factors. People decide; a reviewer approves.
        Under::Scim(_) => {
            assert_eq!(prove(&harness, "p-bo", &bo_case, &code).await["status"], "in_review");
            let packet = harness.airlock(&["review", "show", &bo_case, "--json"]);
            let packet: Value = serde_json::from_slice(&packet.stdout).unwrap();
            let hash = packet["action_hash"].as_str().unwrap_or_else(|| panic!("{packet}"));
            let url = harness.nats.url();
            let approve = ["review", "approve", &bo_case, "--action-hash", hash, "--reason", "called bo back"];
            let approved = harness.airlock(&[&approve[..], &["--nats", &url, "--reviewer", "rev-1"]].concat());
            assert_eq!(approved.status.code(), Some(0), "{}", String::from_utf8_lossy(&approved.stderr));
            common::wait_for(|| status(&harness, &bo_case) == "cooling_off", "bo's approved case to cool off");
        }
        // The adapter shows bo has no authenticator: her email is her strongest factor.
        Under::Adapter { .. } => assert_eq!(prove(&harness, "p-bo", &bo_case, &code).await["status"], "cooling_off"),
    }

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

    // THREATS 9: eve's email code alone never removes an authenticator: the adapter shows she has one, and SCIM
    // cannot show she has none. People decide.
    let totp = request(&harness, "r-eve-totp", &eve, json!({ "type": "remove_totp" }), json!({})).await;
    common::wait_for(|| !outbox_addresses(&harness.data(), &totp).is_empty(), "eve's code");
    assert_eq!(outbox_addresses(&harness.data(), &totp), ["eve@example.com"]);
    let code = common::code_for(&harness.data(), &totp);
    assert_eq!(prove(&harness, "p-eve-totp", &totp, &code).await["status"], "in_review");
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
    let page: &[&str] = if options.contains(&"--http") { &[] } else { &["--http", "127.0.0.1:0"] };
    let with_page = [&options[..], page].concat();
    idp.start_serve(&mut harness, &with_page, &[("AIRLOCK_CLOCK_AHEAD", "12days")]).await;
    common::wait_for(|| status(&harness, &bo_case) == "executed", "bo's new email to be added");
    common::wait_for(|| status(&harness, &dee_case) == "executed", "dee's reset to be applied");
    common::wait_for(|| status(&harness, &ada_case) == "in_review", "ada's changed account to go back to people");
    assert_eq!(idp.emails("bo").await, ["bo@example.com", "bo-new@attacker.example"], "added once, at the IdP");
    if idp.signs_in() {
        // The receipt says how the change was proven: the email's code and the sign-in (SPEC principle 8).
        let receipt = case(&harness, &bo_case)["receipts"].to_string();
        assert!(receipt.contains("and a sign-in at the identity provider with a second factor"), "{receipt}");
    }
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

/// bo proves her second factor by signing in at canaille from airlock's page, with the code of her email (issue 18,
/// item 6). A sign-in as another user (eve, with eve's own authenticator) is a wrong second factor: refused and counted.
/// A sealed sign-in airlock did not make is refused and counts for nothing. bo's own sign-in lets the change follow the
/// policy, and the case's history says how her second factor was proven; no token or code is in serve's log.
fn bo_signs_in(harness: &Harness, bo_case: &str, code: &str) {
    let as_eve = sign_in(harness, bo_case, "eve", code, None);
    assert_eq!(as_eve["callback"]["status"], 200, "{as_eve}");
    assert_eq!(as_eve["verify"]["status"], 422, "{as_eve}");
    assert!(as_eve["verify"]["text"].as_str().unwrap().contains("as another account"), "{as_eve}");
    assert_eq!(status(harness, bo_case), "requested", "{as_eve}");
    // Neither a forged sign-in nor bo's genuine one made for another case proves anything here, nor is counted.
    let forged = sign_in(harness, bo_case, "bo", code, Some("eyJjYXNlIjoiZm9yZ2VkIn0.00ff"));
    assert_eq!(forged["verify"]["status"], 422, "{forged}");
    assert!(forged["verify"]["text"].as_str().unwrap().contains("sign in again"), "{forged}");
    let elsewhere = sign_in(harness, "case-elsewhere", "bo", code, None);
    let replayed = sign_in(harness, bo_case, "bo", code, elsewhere["step_up"].as_str());
    assert_eq!(replayed["verify"]["status"], 422, "{replayed}");
    assert!(replayed["verify"]["text"].as_str().unwrap().contains("sign in again"), "{replayed}");
    let as_bo = sign_in(harness, bo_case, "bo", code, None);
    assert_eq!(as_bo["verify"]["status"], 200, "{as_bo}");
    assert!(as_bo["verify"]["text"].as_str().unwrap().contains("The change is scheduled"), "{as_bo}");
    assert_eq!(status(harness, bo_case), "cooling_off");
    // The reviewers' evidence says how: eve's sign-in as a wrong second factor, bo's as proven.
    let packet = harness.airlock(&["review", "show", bo_case, "--json"]);
    let packet: Value = serde_json::from_slice(&packet.stdout).unwrap_or_default();
    let verification = packet["verification"].to_string();
    assert!(verification.contains("with a sign-in at the identity provider as another account"), "{packet}");
    assert!(verification.contains("sign-in at the identity provider with a second factor"), "{packet}");
    let url = harness.nats.url();
    let history = harness.airlock(&["case", "history", bo_case, "--nats", &url, "--json"]);
    let history: Value = serde_json::from_slice(&history.stdout).unwrap_or_default();
    let events: Vec<&str> =
        history["events"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    // eve's sign-in was refused and counted; the forged one left no trace; bo's own proved her second factor.
    assert_eq!(
        events[2..6],
        ["proof_rejected", "second_factor_proven", "proof_accepted", "cooling_off_started"],
        "{history}"
    );
    let log = harness.serve_log();
    assert!(!log.contains(code) && !log.contains("Correct-horse-1"), "a code or password in serve's log");
    for signed in [&as_eve, &elsewhere, &as_bo] {
        let step_up = signed["step_up"].as_str().unwrap();
        assert!(!log.contains(step_up) && !log.contains(&step_up[..20]), "a signed sign-in in serve's log");
    }
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

/// A GET of airlock's page without following redirects: status, headers (lower-case names) and body.
async fn get_raw(url: &str, cookie: Option<&str>) -> (u16, HashMap<String, Vec<String>>, String) {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut request = client.get(url);
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    let answer = request.send().await.unwrap();
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for (name, value) in answer.headers() {
        headers.entry(name.as_str().to_string()).or_default().push(value.to_str().unwrap().to_string());
    }
    (answer.status().as_u16(), headers, answer.text().await.unwrap())
}

// Proves the sign-in is refused, saying why, whenever airlock cannot use it (issue 18, item 6), against canaille:
// `/oidc/start` sends the browser to the provider with PKCE (S256), state, nonce, `prompt=login` and `max_age`, in an
// HttpOnly, SameSite=Lax cookie scoped to /oidc/ (not Secure behind an http:// loopback page); the callback refuses no
// cookie, another state, the provider's error (its code only, never its free text), and a code the provider does not
// know, and removes the cookie each time; a sign-in the provider made with a password and an authenticator code is
// refused when the deployment asks for a hardware key (`--oidc-step-up amr:hwk`). Misconfigured flags stop `serve`
// with the flag to fix; no secret reaches serve's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_airlock_cannot_use_is_refused_with_the_reason() {
    let mut harness = Harness::new();
    let idp = canaille(harness.scratch.path(), &[("bo", &["bo@example.com"])]);
    let mut options = idp.serve_options(harness.scratch.path());
    let issuer = idp.base.strip_suffix("/scim/v2").unwrap().to_string();
    let secret_file = options[options.iter().position(|flag| flag == "--oidc-client-secret").unwrap() + 1].clone();

    // Misconfigurations are refused before anything is served.
    let refused = |extra: &[&str], expected: &str| {
        let output = harness.airlock(&[&["serve"][..], extra].concat());
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(!output.status.success(), "{extra:?}: {stderr}");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    };
    let client = ["--oidc-client-id", "airlock-owners", "--oidc-client-secret", &secret_file];
    refused(&[&["--oidc-issuer", &issuer][..], &client].concat(), "needs --http");
    refused(&["--http", "127.0.0.1:0", "--oidc-issuer", &issuer], "go together");
    let remote = [&["--http", "127.0.0.1:0", "--oidc-issuer", "http://idp.example"][..], &client].concat();
    refused(&remote, "https://");
    let bad_rule = [&["--http", "127.0.0.1:0", "--oidc-issuer", &issuer, "--oidc-step-up", "mfa"][..], &client];
    refused(&bad_rule.concat(), "amr:VALUE or acr:VALUE");
    let nobody = [&["--http", "127.0.0.1:0", "--oidc-issuer", "http://127.0.0.1:9/none"][..], &client].concat();
    refused(&nobody, "--oidc-issuer refused");

    options.extend(["--oidc-step-up".to_string(), "amr:hwk".to_string()]);
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let under = Under::Scim(idp);
    under.start_serve(&mut harness, &options, &[]).await;
    let page = format!("http://{}", harness.page_address());

    let (status, headers, _) = get_raw(&format!("{page}/oidc/start?case=case-1"), None).await;
    assert_eq!(status, 303);
    let location = url::Url::parse(&headers["location"][0]).unwrap();
    assert!(location.as_str().starts_with(&issuer), "{location}");
    let query: HashMap<String, String> = location.query_pairs().into_owned().collect();
    for (name, value) in [("response_type", "code"), ("prompt", "login"), ("max_age", "60")] {
        assert_eq!(query.get(name).map(String::as_str), Some(value), "{location}");
    }
    assert_eq!(query["code_challenge_method"], "S256", "{location}");
    assert_eq!(query["redirect_uri"], format!("{page}/oidc/callback"), "{location}");
    assert!(query["state"].len() >= 16 && query["nonce"].len() >= 16 && query.contains_key("code_challenge"));
    let set_cookie = &headers["set-cookie"][0];
    for part in ["HttpOnly", "SameSite=Lax", "Path=/;", "Max-Age=600"] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "an http:// loopback page: {set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();

    let callback = |query: String, cookie: Option<String>| {
        let url = format!("{page}/oidc/callback?{query}");
        async move { get_raw(&url, cookie.as_deref()).await }
    };
    // A fresh flow for each answer, since a flow is finished once: its cookie, and its state.
    let fresh = || async {
        let (_, headers, _) = get_raw(&format!("{page}/oidc/start?case=case-1"), None).await;
        let location = url::Url::parse(&headers["location"][0]).unwrap();
        let state = location.query_pairs().find(|(name, _)| name == "state").unwrap().1.to_string();
        (headers["set-cookie"][0].split(';').next().unwrap().to_string(), state)
    };
    let cases: [(&str, bool, &str); 6] = [
        ("code=abc", false, "start again"),
        // Two flow cookies of one name: one was planted (a sibling subdomain can set one); neither is trusted.
        ("code=abc", true, "start again"),
        ("another", true, "does not belong to this sign-in"),
        ("error=access_denied", true, "refused the sign-in (access_denied)"),
        ("error=%3Cscript%3E", true, "refused the sign-in (an error)"),
        ("code=not-a-code-it-issued", true, "refused the sign-in"),
    ];
    for (index, (answer, with_cookie, expected)) in cases.into_iter().enumerate() {
        let (flow_cookie, flow_state) = fresh().await;
        let query = match answer {
            "another" => "state=another&code=abc".to_string(),
            answer => format!("state={flow_state}&{answer}"),
        };
        let sent = match (with_cookie, index) {
            (false, _) => None,
            (true, 1) => Some(format!("{flow_cookie}; {flow_cookie}")),
            (true, _) => Some(flow_cookie.clone()),
        };
        let (status, headers, body) = callback(query.clone(), sent.clone()).await;
        assert!(status == 400 || status == 502, "{query}: {status} {body}");
        assert!(body.contains(expected), "{query}: {body}");
        assert!(!body.contains("<script>"), "{query}: {body}");
        assert!(headers["set-cookie"][0].contains("Max-Age=0"), "{query}: the flow cookie stays");
        // The same answer again, with the same cookie, asks the provider nothing: the flow was finished.
        if index == 5 {
            let (_, _, again) = callback(query.clone(), sent).await;
            assert!(again.contains("start again"), "a finished flow was used again: {again}");
        }
    }
    let (status, _, _) = get_raw(&format!("{page}/oidc/start?case=%3Cscript%3E"), None).await;
    assert_eq!(status, 400);
    // The flow's cookie is no sign-in: sent as one with a proof, it is refused as invalid.
    let flow = cookie.split_once('=').unwrap().1.to_string();
    let proof =
        json!({ "version": 1, "command_id": "p-flow", "case_id": "case-1", "code": "12345678", "step_up": flow });
    let answer = reqwest::Client::new()
        .post(format!("{page}/v1/proofs"))
        .header("Content-Type", "application/json")
        .body(proof.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 422);
    let reply: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    assert!(reply["message"].as_str().unwrap().contains("sign in again"), "{reply}");

    // A real sign-in, with a password and an authenticator code: not the hardware key this deployment asks for.
    let signed = sign_in(&harness, "case-1", "bo", "12345678", None);
    assert_eq!(signed["callback"]["status"], 400, "{signed}");
    let text = signed["callback"]["text"].as_str().unwrap();
    assert!(
        text.contains("did not use a second factor this airlock accepts (it asks for one of: amr:hwk)"),
        "{signed}"
    );

    let log = harness.serve_log();
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    assert!(!log.contains(secret.trim()) && !log.contains("Correct-horse-1"), "a secret in serve's log:\n{log}");
}

// Proves (issue 18, item 6) a sign-in at the identity provider never stands in for an authenticator airlock's own
// directory shows and checks by its code (here the embedded directory, which holds the secret): the owner who signs in
// instead is told to type the app's code, nothing is counted, and the code with the app's code then proves the case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_does_not_stand_in_for_an_authenticator_the_directory_checks() {
    let mut harness = Harness::new();
    let idp = canaille(harness.scratch.path(), &[("tess", &["tess@example.com"])]);
    let tess = idp.id("tess");
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let mut account = common::threats::email_account(&tess);
    account["totp_enrolled_since"] = json!("2024-01-01T00:00:00Z");
    account["totp_secret"] = json!(secret);
    common::import_accounts(&harness.data(), json!([account]));
    // The embedded directory, and canaille only as the OpenID Connect provider.
    let options = idp.serve_options(harness.scratch.path());
    let oidc = &options[options.iter().position(|flag| flag == "--http").unwrap()..];
    let oidc: Vec<&str> = oidc.iter().map(String::as_str).collect();
    let under = Under::Scim(idp);
    under.start_serve(&mut harness, &oidc, &[]).await;

    let case_id = request(&harness, "r-tess", &tess, json!({ "type": "remove_totp" }), json!({})).await;
    common::wait_for(|| !outbox_addresses(&harness.data(), &case_id).is_empty(), "tess's code");
    let code = common::code_for(&harness.data(), &case_id);
    let signed = sign_in(&harness, &case_id, "tess", &code, None);
    assert_eq!(signed["callback"]["status"], 200, "{signed}");
    assert_eq!(signed["verify"]["status"], 422, "{signed}");
    assert!(signed["verify"]["text"].as_str().unwrap().contains("authenticator app's code instead"), "{signed}");
    assert_eq!(status(&harness, &case_id), "requested");

    use airlock::directory::totp::{TotpSecret, hotp, step_at};
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let typed = hotp(&TotpSecret::from_base32(secret).unwrap(), step_at(airlock::core::ids::UnixMs(now)), 6);
    let client = harness.client().await;
    let page = Actor::new(Role::Owner, "verification-page");
    let proof = json!({ "version": 1, "command_id": "p-tess", "case_id": case_id, "code": code, "totp": typed });
    let proven = send(&client, &page, CommandType::SubmitProof, proof).await;
    assert_eq!(proven["status"], "cooling_off", "{proven}");
}

const BROWSER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/idp/console_browser.py");

/// One headless Chromium (tests/idp/console_browser.py), driven step by step; stopped when dropped.
struct Browser {
    child: Option<Child>,
    input: Option<std::process::ChildStdin>,
    output: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Browser {
    fn open(console: &str, screenshots: &Path) -> Browser {
        // A process group of its own, so that Chromium and its driver can be stopped with the script if it hangs.
        let mut child = Command::new("python3")
            .args([BROWSER, "--console", console, "--screenshots", screenshots.to_str().unwrap()])
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let input = child.stdin.take();
        let output = BufReader::new(child.stdout.take().unwrap()).lines();
        Browser { child: Some(child), input, output }
    }

    /// One step (see the script), and what the browser then shows.
    fn step(&mut self, step: Value) -> Value {
        use std::io::Write;
        writeln!(self.input.as_mut().unwrap(), "{step}").unwrap();
        let line = self.output.next().unwrap_or_else(|| panic!("the browser stopped at {step}")).unwrap();
        let answer: Value = serde_json::from_str(&line).unwrap();
        assert!(answer.get("error").is_none(), "{step}: {answer}");
        answer
    }

    fn sign_in(&mut self, user: &str) -> Value {
        let secret = totp_secret(user);
        self.step(json!({ "sign_in": { "user": user, "password": "Correct-horse-1", "totp_secret": secret } }))
    }

    fn open_page(&mut self, path: &str) -> String {
        self.step(json!({ "open": path }))["text"].as_str().unwrap().to_string()
    }
}

impl Drop for Browser {
    /// Closes the script's input, so that it quits Chromium itself (a killed script would leave Chromium running),
    /// and waits for it to end, at most 30 seconds; then kills its whole process group.
    fn drop(&mut self) {
        drop(self.input.take());
        let Some(mut child) = self.child.take() else { return };
        let group = format!("-{}", child.id());
        let (ended, waited) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = child.wait();
            let _ = ended.send(());
        });
        if waited.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        }
    }
}

// Proves the console (issue 19) in headless Chromium against canaille: a person in neither group is told so and gets
// no session; a reviewer signs in (password and authenticator code at the provider), sees the queue oldest first with
// risk and approvals, reads a case's evidence (the requester's words inert: no markup, no reordering), approves the
// high-value one (1 of 2; approving again is refused, saying why), denies another; a second reviewer completes the
// high-value case (cooling off); an operator halts and resumes automation, and the kill switch names them; a POST
// without the session's CSRF token, or from another origin, changes nothing; signing out ends the session.
// Screenshots of the queue and a case page are saved (AIRLOCK_SCREENSHOTS=DIR keeps them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let mut harness = Harness::new();
    let people: Users<'static> = &[("rita", &[]), ("rob", &[]), ("olga", &[]), ("nina", &[])];
    let idp = canaille_with_groups(
        harness.scratch.path(),
        people,
        &[("rita", "airlock-reviewers"), ("rob", "airlock-reviewers"), ("olga", "airlock-operators")],
    );
    // Cases for people: a high-value account (two reviewers), and one whose only address is too young for a code.
    let young = (chrono_like_days_ago(2), "email");
    common::import_accounts(
        &harness.data(),
        json!([
            { "account_id": "vip-1", "high_value": "finance", "destinations": [
                { "id": "vip-1-mail", "kind": "email", "address": "vip@example.com", "trusted_since": common::threats::LONG_AGO } ] },
            { "account_id": "new-1", "destinations": [
                { "id": "new-1-mail", "kind": young.1, "address": "new@example.com", "trusted_since": young.0 } ] },
        ]),
    );
    let options = idp.serve_options(harness.scratch.path());
    let oidc = &options[options.iter().position(|flag| flag == "--http").unwrap()..];
    let mut oidc: Vec<&str> = oidc.iter().map(String::as_str).collect();
    oidc.extend(["--console-reviewer-group", "airlock-reviewers", "--console-operator-group", "airlock-operators"]);
    let under = Under::Scim(idp);
    under.start_serve(&mut harness, &oidc, &[]).await;
    let console = format!("http://{}", harness.page_address());
    let screenshots = std::env::var_os("AIRLOCK_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| harness.scratch.path().join("screenshots"));

    let summary = format!("Owner locked out {TRAP} desrever");
    let client = harness.client().await;
    let desk = Actor::new(Role::Intake, "support-agent");
    let open = |command_id: &'static str, account: &'static str| {
        let signals = json!({ "region": TRAP, "source_network": TRAP });
        let body =
            common::threats::request_body(command_id, account, json!({ "type": "reset_password" }), &summary, signals);
        let (client, desk) = (client.clone(), desk.clone());
        async move {
            send(&client, &desk, CommandType::RequestRecovery, body).await["case_id"].as_str().unwrap().to_string()
        }
    };
    let vip = open("r-vip", "vip-1").await;
    common::wait_for(|| !outbox_addresses(&harness.data(), &vip).is_empty(), "the high-value owner's code");
    let code = common::code_for(&harness.data(), &vip);
    assert_eq!(
        prove(&harness, "p-vip", &vip, &code).await["status"],
        "in_review",
        "a high-value account goes to people"
    );
    let new = open("r-new", "new-1").await;
    common::wait_for(|| status(&harness, &new) == "in_review", "a case with no address old enough to go to people");

    // Someone in neither group is refused, with the reason, and has no session.
    let mut nina = Browser::open(&console, &screenshots);
    let refused = nina.sign_in("nina");
    assert!(
        refused["text"].as_str().unwrap().contains("neither airlock's reviewer nor its operator group"),
        "{refused}"
    );
    assert!(nina.open_page("/console").contains("Sign in at"), "nina got a session");
    drop(nina);

    // A reviewer works the queue.
    let mut rita = Browser::open(&console, &screenshots);
    let signed = rita.sign_in("rita");
    assert!(signed["text"].as_str().unwrap().contains("Review queue"), "{signed}\n{}", harness.serve_log());
    let queue = rita.open_page("/console");
    assert!(queue.contains(&vip) && queue.contains(&new), "{queue}");
    assert!(queue.contains("high-value (two reviewers)") && queue.contains("0 of 2"), "{queue}");
    assert!(queue.find(&vip) < queue.find(&new), "not oldest first: {queue}");
    rita.step(json!({ "screenshot": "queue" }));
    accessible_and_inert(&mut rita, "the queue");
    let page = rita.open_page(&format!("/console/cases/{vip}"));
    assert!(
        page.contains("The requester's words") && page.contains("<script>document.title='owned'</script>"),
        "{page}"
    );
    assert!(page.contains("\\u{202e}gnirts"), "a bidirectional override was not made visible: {page}");
    assert!(!page.contains("\\\\u{202e}") && !page.contains('\u{202e}'), "shown escaped twice, or not at all: {page}");
    let shown = rita.step(json!({ "screenshot": "case" }));
    assert_ne!(shown["title"], "owned", "the requester's script ran");
    assert!(page.contains("v***@example.com") && !page.contains("vip@example.com"), "{page}");
    accessible_and_inert(&mut rita, "a case page");
    // A reviewer's words are outside text too: pasted, they show inert on the timeline.
    let words = format!("called the owner back on the number on file {TRAP}");
    rita.step(json!({ "fill": { "name": "reason", "value": words, "set": true } }));
    let approved = rita.step(json!({ "click": "Approve this action" }))["text"].as_str().unwrap().to_string();
    assert!(approved.contains("Approved. The case is now in_review"), "{approved}\n{}", harness.serve_log());
    assert!(
        approved.contains("review_approved: called the owner back"),
        "the reason is not on the timeline: {approved}"
    );
    accessible_and_inert(&mut rita, "a case page with a reviewer's words");
    rita.step(json!({ "fill": { "name": "reason", "value": "again" } }));
    let again = rita.step(json!({ "click": "Approve this action" }))["text"].as_str().unwrap().to_string();
    assert!(again.contains("Refused:"), "a second approval by the same reviewer: {again}");
    // The keyboard alone decides a case.
    rita.open_page(&format!("/console/cases/{new}"));
    let by_keys = json!({ "fill": { "name": "reason", "value": "no contact method old enough; owner to visit a branch" },
                          "press": "Deny" });
    let denied = rita.step(json!({ "keyboard": by_keys }))["text"].as_str().unwrap().to_string();
    assert!(denied.contains("Denied. The case is now denied"), "{denied}");
    assert_eq!(status(&harness, &new), "denied");

    // A POST without the session's CSRF token, or from another origin, changes nothing.
    let cookies = rita.step(json!({ "cookies": true }))["cookies"].clone();
    let session = cookies.as_array().unwrap().iter().find(|cookie| cookie["name"] == "airlock_console").unwrap();
    let cookie = format!("airlock_console={}", session["value"].as_str().unwrap());
    let forged_with = |headers: &'static [(&'static str, &'static str)], csrf: &'static str| {
        let (url, cookie) = (format!("{console}/console/cases/{vip}/decision"), cookie.clone());
        async move {
            let mut request = reqwest::Client::new()
                .post(url)
                .header("Cookie", cookie)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(format!("csrf={csrf}&command_id=forged-1&decision=deny&reason=forged"));
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let answer = request.send().await.unwrap();
            (answer.status().as_u16(), answer.text().await.unwrap())
        }
    };
    let forged = |_: Option<&'static str>, csrf: &'static str| forged_with(&[], csrf);
    let (code, body) = forged(None, "").await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("did not come from a console page"), "{body}");
    // With the session's own token, a browser that says the POST comes from elsewhere is refused too.
    let token = rita.step(json!({ "value": "csrf" }))["value"].as_str().unwrap().to_string();
    let token: &'static str = Box::leak(token.into_boxed_str());
    for headers in [
        &[("Origin", "https://evil.example")][..],
        &[("Sec-Fetch-Site", "cross-site")],
        &[("Origin", "null"), ("Sec-Fetch-Site", "same-site")],
    ] {
        let (code, body) = forged_with(headers, token).await;
        assert_eq!(code, 403, "{headers:?}: {body}");
    }
    assert_eq!(status(&harness, &vip), "in_review", "a forged POST changed the case");
    // The token is right and the request is the console's own, but a reviewer is no operator.
    let (code, body) = post_as(&cookie, &format!("{console}/console/operators/halt"), token).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("This is for operators"), "{body}");

    // The second reviewer completes the high-value case.
    let mut rob = Browser::open(&console, &screenshots);
    rob.sign_in("rob");
    let page = rob.open_page(&format!("/console/cases/{vip}"));
    assert!(page.contains("Approvals so far:"), "{page}");
    rob.step(json!({ "fill": { "name": "reason", "value": "second look: the owner confirmed on the phone on file" } }));
    let done = rob.step(json!({ "click": "Approve this action" }))["text"].as_str().unwrap().to_string();
    assert!(done.contains("The case is now cooling_off"), "{done}");

    // An operator pulls the kill switch and releases it; the page names who and why.
    let mut olga = Browser::open(&console, &screenshots);
    olga.sign_in("olga");
    assert!(olga.open_page("/console/operators").contains("Automation runs."));
    accessible_and_inert(&mut olga, "the operators' page");
    let words = format!("incident 42: suspicious burst {TRAP}");
    olga.step(json!({ "fill": { "name": "reason", "value": words, "set": true } }));
    let halted = olga.step(json!({ "click": "Halt automation" }))["text"].as_str().unwrap().to_string();
    assert!(halted.contains("Automation is halted.") && halted.contains("incident 42"), "{halted}");
    let olga_id = under.id("olga");
    assert!(halted.contains(&format!("operator:{olga_id}")), "the page does not name who: {halted}");
    accessible_and_inert(&mut olga, "the operators' page with an operator's words");
    // While halted, the high-value case's change is due to wait: its page says it is held.
    let held = olga.open_page(&format!("/console/cases/{vip}"));
    assert!(held.contains("held: the kill switch is pulled"), "{held}");
    olga.open_page("/console/operators");
    let olga_cookies = olga.step(json!({ "cookies": true }))["cookies"].clone();
    let olga_session =
        olga_cookies.as_array().unwrap().iter().find(|cookie| cookie["name"] == "airlock_console").unwrap();
    let olga_cookie = format!("airlock_console={}", olga_session["value"].as_str().unwrap());
    let olga_token = olga.step(json!({ "value": "csrf" }))["value"].as_str().unwrap().to_string();
    let (code, body) = post_as(&olga_cookie, &format!("{console}/console/cases/{vip}/decision"), &olga_token).await;
    assert_eq!(code, 403, "an operator decided a case: {body}");
    assert!(body.contains("This is for reviewers"), "{body}");
    olga.step(json!({ "fill": { "name": "reason", "value": "incident 42 closed" } }));
    let resumed = olga.step(json!({ "click": "Resume automation" }))["text"].as_str().unwrap().to_string();
    assert!(resumed.contains("Automation runs again."), "{resumed}");
    // The audit, and a rollback by indicator shown before anything changes (nothing was applied yet).
    let audited = olga.step(json!({ "click": "Run the audit now" }))["text"].as_str().unwrap().to_string();
    assert!(audited.contains("Clean:"), "{audited}");
    olga.step(json!({ "fill": { "name": "indicator", "value": "destination-domain=attacker.example" } }));
    let preview = olga.step(json!({ "click": "Show what would be rolled back" }))["text"].as_str().unwrap().to_string();
    assert!(
        preview.contains("Would be rolled back (0)") && preview.contains("No applied change matches."),
        "{preview}"
    );
    olga.step(json!({ "fill": { "name": "indicator", "value": "everything" } }));
    let refused = olga.step(json!({ "click": "Show what would be rolled back" }))["text"].as_str().unwrap().to_string();
    assert!(refused.contains("Nothing to show"), "{refused}");
    // An operator cancels the high-value change during its cooling-off, with a reason.
    olga.open_page(&format!("/console/cases/{vip}"));
    olga.step(json!({ "fill": { "name": "reason", "value": "owner called: not them" } }));
    let cancelled = olga.step(json!({ "click": "Cancel this change" }))["text"].as_str().unwrap().to_string();
    assert!(cancelled.contains("Cancelled. The case is now cancelled"), "{cancelled}");

    // The receipts and the log name the people; signing out ends the session.
    let url = harness.nats.url();
    let history = harness.airlock(&["case", "history", &vip, "--nats", &url, "--json"]);
    let history = String::from_utf8_lossy(&history.stdout).to_string();
    for person in ["rita", "rob"] {
        assert!(history.contains(&format!("reviewer:{}", under.id(person))), "{person} is not in the log: {history}");
    }
    rita.open_page("/console");
    let out = rita.step(json!({ "click": "Sign out" }))["text"].as_str().unwrap().to_string();
    assert!(out.contains("You are signed out"), "{out}");
    assert!(rita.open_page("/console").contains("Sign in at"));
    let (code, body) = forged(None, "").await;
    assert_eq!(code, 401, "the ended session still acts: {body}");
    assert!(body.contains("Your session has ended") && body.contains("Nothing was changed"), "{body}");
    assert!(screenshots.join("queue.png").is_file() && screenshots.join("case.png").is_file());
}

/// Outside text that would run, hide or reorder what a person reads if a page printed it as it is: markup and script,
/// a bidirectional override, a terminal escape and a bell.
const TRAP: &str = "<script>document.title='owned'</script><img src=x onerror=\"document.title='owned'\"> \u{202e}gnirts \u{1b}[31mred\u{7}";

/// Proves the page the browser shows runs nothing it was sent (no script, handler, image or javascript: URL; the
/// console has none of its own), shows every trap character as an escape, names every control, reaches every control
/// by Tab, and needs no sideways scrolling at 200% zoom.
fn accessible_and_inert(browser: &mut Browser, what: &str) {
    let answer = browser.step(json!({ "check": true }));
    let (check, text) = (&answer["check"], answer["text"].as_str().unwrap());
    assert_ne!(answer["title"], "owned", "{what}: a script ran");
    assert_eq!(check["scripts"], 0, "{what}: {check}");
    for list in ["handlers", "unlabelled", "unreachable", "overflow_at_200"] {
        assert_eq!(check[list], json!([]), "{what}: {list}: {check}");
    }
    assert_eq!(check["javascript_urls"], 0, "{what}: {check}");
    for raw in ['\u{202e}', '\u{1b}', '\u{7}'] {
        assert!(!text.contains(raw), "{what}: {raw:?} reached the page as it is: {text}");
    }
}

/// A console POST with a session cookie and a CSRF token, as a script (no browser headers) would send it.
async fn post_as(cookie: &str, url: &str, csrf: &str) -> (u16, String) {
    let answer = reqwest::Client::new()
        .post(url)
        .header("Cookie", cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&command_id=role-probe&reason=probing&decision=approve"))
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

/// An RFC 3339 time `days` ago.
fn chrono_like_days_ago(days: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let at = chrono::DateTime::from_timestamp((now - days * 86_400) as i64, 0).unwrap();
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

const HOSTILE_OIDC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/idp/hostile_oidc.py");

/// tests/idp/hostile_oidc.py on a loopback port: an OpenID Connect provider that makes its ID tokens wrong on request
/// and honours a code any number of times. Stopped by its PID when dropped.
struct Hostile {
    child: Child,
    issuer: String,
    secret_file: PathBuf,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hostile_provider(scratch: &Path) -> Hostile {
    let secret_file = scratch.join("hostile-client-secret");
    std::fs::write(&secret_file, "a-console-client-secret\n").unwrap();
    std::fs::set_permissions(&secret_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut child = Command::new(venvs().join("canaille/bin/python"))
        .args([HOSTILE_OIDC, "--client-id", "airlock-console", "--client-secret-file", secret_file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let first = BufReader::new(child.stdout.take().unwrap()).lines().next().expect("the provider says where").unwrap();
    let issuer = first.strip_prefix("listening on ").unwrap_or_else(|| panic!("the provider said {first:?}"));
    Hostile { issuer: issuer.to_string(), child, secret_file }
}

/// The first cookie a response sets by `name`, as `name=value`.
fn set_cookie(headers: &HashMap<String, Vec<String>>, name: &str) -> Option<String> {
    let all = headers.get("set-cookie")?;
    let line = all.iter().find(|line| line.starts_with(&format!("{name}=")))?;
    Some(line.split(';').next().unwrap().to_string())
}

/// A console sign-in at the hostile provider as `user` in `groups`, its ID token made wrong as `mode` says: the
/// provider's redirect back to airlock (the callback URL), the flow cookie, and airlock's answer to that callback.
async fn console_sign_in(
    page: &str,
    user: &str,
    groups: &str,
    mode: &str,
) -> (String, String, (u16, HashMap<String, Vec<String>>, String)) {
    let (status, headers, body) = get_raw(&format!("{page}/console/sign-in"), None).await;
    assert_eq!(status, 303, "{body}");
    let flow = set_cookie(&headers, "airlock_console_flow").expect("a flow cookie");
    let encoded = |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let authorize = format!(
        "{}&airlock_test_user={}&airlock_test_groups={}&airlock_test_mode={mode}",
        headers["location"][0],
        encoded(user),
        encoded(groups)
    );
    let (status, headers, body) = get_raw(&authorize, None).await;
    assert_eq!(status, 302, "{body}");
    let callback = headers["location"][0].clone();
    let answer = get_raw(&callback, Some(&flow)).await;
    (callback, flow, answer)
}

/// A console POST as a browser on the console's own page sends it (same origin, the session's CSRF token in `form`).
async fn console_post(page: &str, path: &str, cookie: &str, form: &[(&str, &str)]) -> (u16, String) {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let answer = reqwest::Client::new()
        .post(format!("{page}{path}"))
        .header("Cookie", cookie)
        .header("Origin", page)
        .header("Sec-Fetch-Site", "same-origin")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

/// The value of the hidden field `name` on a page.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no {name} on the page: {page}")) + marker.len();
    page[start..].split('"').next().unwrap().to_string()
}

// Proves (issue 19) the console takes only a sign-in it can verify, against a provider that tries every wrong ID
// token: a tampered one (claims changed under the signature, to make a reviewer an operator), one for another client,
// from another issuer, expired, for another sign-in (nonce), unsigned, signed with a key the provider does not
// publish; and a replayed authorization code, in the same sign-in or carried into a new one. Each is refused with the
// reason and leaves no session. A forged session cookie reads nothing and acts on nothing. And the console works in
// embedded mode (no NATS): a reviewer signed in there decides a case, recorded as that person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_refuses_every_sign_in_it_cannot_verify_in_embedded_mode_too() {
    let mut harness = Harness::new();
    let provider = hostile_provider(harness.scratch.path());
    common::import_accounts(
        &harness.data(),
        json!([{ "account_id": "new-1", "destinations": [
            { "id": "new-1-mail", "kind": "email", "address": "new@example.com", "trusted_since": chrono_like_days_ago(2) } ] },
            { "account_id": "camp-1", "destinations": [] }, { "account_id": "camp-2", "destinations": [] },
            { "account_id": "camp-3", "destinations": [] }]),
    );
    let secret = provider.secret_file.to_str().unwrap();
    harness.start_embedded_serve(
        &[
            "--http",
            "127.0.0.1:0",
            "--oidc-issuer",
            &provider.issuer,
            "--oidc-client-id",
            "airlock-console",
            "--oidc-client-secret",
            secret,
            "--console-reviewer-group",
            "airlock-reviewers",
            "--console-operator-group",
            "airlock-operators",
        ],
        &[],
    );
    let page = format!("http://{}", harness.page_address());
    // A case for people, requested through the embedded store while serve runs.
    let submit = |request: Value| {
        let requested = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(["submit", "--actor", "intake:desk", "--command", "request-recovery", "-", "--data-dir"])
            .arg(harness.data())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(request.to_string().as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        serde_json::from_slice::<Value>(&requested.stdout).unwrap()
    };
    let request =
        common::threats::request_body("r-new", "new-1", json!({ "type": "reset_password" }), "locked out", json!({}));
    let reply = submit(request);
    let case_id = reply["case_id"].as_str().unwrap_or_else(|| panic!("{reply}")).to_string();
    common::wait_for(
        || harness.airlock(&["case", "show", &case_id]).stdout.windows(9).any(|w| w == b"in_review"),
        "the case to wait for people",
    );

    // Every wrong ID token is refused, saying so, and leaves no session.
    let wrong: [(&str, &str); 7] = [
        ("tampered", "signature"),
        ("other_audience", "audience"),
        ("other_issuer", "issuer"),
        ("expired", "expired"),
        ("wrong_nonce", "nonce"),
        ("unsigned", "does not verify"),
        ("foreign_key", "signature"),
    ];
    for (mode, reason) in wrong {
        let (_, _, (status, headers, body)) = console_sign_in(&page, "rita", "airlock-reviewers", mode).await;
        assert_eq!(status, 403, "{mode}: {body}");
        assert!(body.contains("does not verify") && body.to_lowercase().contains(reason), "{mode}: {body}");
        assert!(set_cookie(&headers, "airlock_console").is_none(), "{mode}: a session was made");
    }

    // A verified sign-in whose person id airlock could not record as it is (markup, a bidirectional override) is
    // refused, and the id is not shown back as markup.
    let (_, _, (status, headers, body)) =
        console_sign_in(&page, "<b>rita</b>\u{202e}", "airlock-reviewers", "good").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("does not name you in a way airlock can record") && !body.contains("<b>"), "{body}");
    assert!(set_cookie(&headers, "airlock_console").is_none());

    // An honest sign-in makes a session; the same answer again, or its code in a new sign-in, is refused.
    let (callback, flow, (status, headers, body)) = console_sign_in(&page, "rita", "airlock-reviewers", "good").await;
    assert_eq!(status, 200, "{body}");
    let session = set_cookie(&headers, "airlock_console").expect("a session for an honest sign-in");
    let (status, headers, body) = get_raw(&callback, Some(&flow)).await;
    assert_eq!(status, 400, "the same callback twice: {body}");
    assert!(body.contains("start again") && set_cookie(&headers, "airlock_console").is_none(), "{body}");
    let (status, headers, _) = get_raw(&format!("{page}/console/sign-in"), None).await;
    assert_eq!(status, 303);
    let new_flow = set_cookie(&headers, "airlock_console_flow").unwrap();
    let new_state = url::Url::parse(&headers["location"][0])
        .unwrap()
        .query_pairs()
        .find(|(name, _)| name == "state")
        .unwrap()
        .1
        .to_string();
    let old_code =
        url::Url::parse(&callback).unwrap().query_pairs().find(|(name, _)| name == "code").unwrap().1.to_string();
    let carried = format!("{page}/oidc/callback?code={old_code}&state={new_state}");
    let (status, headers, body) = get_raw(&carried, Some(&new_flow)).await;
    assert_eq!(status, 403, "an old code in a new sign-in: {body}");
    assert!(body.contains("does not verify") && body.contains("nonce"), "{body}");
    assert!(set_cookie(&headers, "airlock_console").is_none());

    // A forged session cookie (the right shape, no session behind it) reads nothing and acts on nothing.
    let forged = format!("airlock_console={}", "ab".repeat(32));
    let (status, _, body) = get_raw(&format!("{page}/console/cases/{case_id}"), Some(&forged)).await;
    assert_eq!(status, 200);
    assert!(body.contains("Sign in at") && !body.contains("locked out"), "{body}");
    let form = [("csrf", "x"), ("command_id", "c-forged"), ("decision", "deny"), ("reason", "forged")];
    let (status, body) = console_post(&page, &format!("/console/cases/{case_id}/decision"), &forged, &form).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Nothing was changed"), "{body}");

    // In embedded mode, the reviewer reads the case and decides it; the log names her. First the page refuses what
    // the core refuses, saying why: an approval of another action than the page showed, the requester approving, and
    // an approval of one's own account.
    let (_, _, case_page) = get_raw(&format!("{page}/console/cases/{case_id}"), Some(&session)).await;
    assert!(case_page.contains("locked out"), "{case_page}");
    let csrf = hidden(&case_page, "csrf");
    let other_action = "0".repeat(64);
    let approve = |csrf: String, hash: String| {
        vec![
            ("csrf", csrf),
            ("command_id", format!("c-{}", &hash[..8])),
            ("decision", "approve".to_string()),
            ("reason", "looks fine".to_string()),
            ("action_hash", hash),
        ]
    };
    let pairs = approve(csrf.clone(), other_action);
    let form: Vec<(&str, &str)> = pairs.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let (status, body) = console_post(&page, &format!("/console/cases/{case_id}/decision"), &session, &form).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Refused: the approval names a different action than this case"), "{body}");
    let action_hash = hidden(&case_page, "action_hash");
    for (person, expected) in [
        ("desk", "nobody may approve a case they requested"),
        ("new-1", "nobody may approve a change to their own account"),
    ] {
        let (_, _, (status, headers, body)) = console_sign_in(&page, person, "airlock-reviewers", "good").await;
        assert_eq!(status, 200, "{body}");
        let theirs = set_cookie(&headers, "airlock_console").unwrap();
        let (_, _, their_page) = get_raw(&format!("{page}/console/cases/{case_id}"), Some(&theirs)).await;
        let pairs = approve(hidden(&their_page, "csrf"), action_hash.clone());
        let form: Vec<(&str, &str)> = pairs.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let (_, body) = console_post(&page, &format!("/console/cases/{case_id}/decision"), &theirs, &form).await;
        assert!(body.contains(&format!("Refused: {expected}")), "{person}: {body}");
        assert!(body.contains("State: <strong>in_review</strong>"), "{person}: {body}");
    }
    let form = [
        ("csrf", csrf.as_str()),
        ("command_id", "c-deny"),
        ("decision", "deny"),
        ("reason", "no contact method old enough"),
    ];
    let (status, body) = console_post(&page, &format!("/console/cases/{case_id}/decision"), &session, &form).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Denied. The case is now denied"), "{body}");
    let history = harness.airlock(&["case", "history", &case_id, "--json"]);
    let history = String::from_utf8_lossy(&history.stdout).to_string();
    assert!(history.contains("reviewer:rita"), "{history}");

    // Three accounts asked to take one new address: the embedded serve raises a campaign alert, which the operators'
    // page shows (with its indicator inert) and an operator acknowledges there.
    for index in 1..=3 {
        let action = json!({ "type": "add_destination", "kind": "email", "address": "<b>drop</b>@evil.example" });
        let body =
            common::threats::request_body(&format!("camp-{index}"), &format!("camp-{index}"), action, "hi", json!({}));
        assert!(submit(body)["accepted"].as_bool().is_some(), "the request was answered");
    }
    let (_, _, (_, headers, _)) = console_sign_in(&page, "olga", "airlock-operators", "good").await;
    let olga = set_cookie(&headers, "airlock_console").expect("an operator's session");
    // The alert is in the store once `airlock alerts list` on the embedded store shows it (both modes' CLI).
    common::wait_for(
        || {
            let listed = harness.airlock(&["alerts", "list", "--json", "--operator", "ops"]);
            let listed: Value = serde_json::from_slice(&listed.stdout).unwrap_or_default();
            listed["alerts"].as_array().is_some_and(|alerts| alerts.iter().any(|alert| alert["check"] == "destination"))
        },
        "the campaign alert",
    );
    let (_, _, shown) = get_raw(&format!("{page}/console/operators"), Some(&olga)).await;
    assert!(shown.contains("one new destination named for many accounts"), "no alert on the operators' page: {shown}");
    assert!(shown.contains("&lt;b&gt;drop&lt;&#x2f;b&gt;@evil.example") && !shown.contains("<b>drop"), "{shown}");
    assert!(shown.contains("not acknowledged"), "{shown}");
    let alert_id = shown.split("/console/alerts/").nth(1).unwrap().split('"').next().unwrap().to_string();
    let (_, _, alert_page) = get_raw(&format!("{page}/console/alerts/{alert_id}"), Some(&olga)).await;
    assert!(alert_page.contains("3 accounts in 3 cases"), "{alert_page}");
    let csrf = hidden(&alert_page, "csrf");
    let form = [("csrf", csrf.as_str()), ("command_id", "ack-1"), ("reason", "incident 43 opened")];
    let (status, acknowledged) =
        console_post(&page, &format!("/console/alerts/{alert_id}/acknowledge"), &olga, &form).await;
    assert_eq!(status, 200, "{acknowledged}");
    assert!(
        acknowledged.contains("Acknowledged.") && acknowledged.contains("Acknowledged by operator:olga"),
        "{acknowledged}"
    );
    // A reviewer reads it but cannot acknowledge it.
    let (status, body) = console_post(&page, &format!("/console/alerts/{alert_id}/acknowledge"), &session, &form).await;
    assert_eq!(status, 403, "{body}");

    let log = harness.serve_log();
    assert!(!log.contains("a-console-client-secret"), "the client secret in serve's log:\n{log}");
}
