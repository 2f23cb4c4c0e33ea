//! The owners' web endpoint, driven as an owner's browser and a mail scanner would: `airlock serve --http` in the
//! embedded mode (no NATS), requests opened with `airlock submit`, codes read from the outbox the embedded notifier
//! writes. Covers the verification page and its JSON endpoint, TOTP as a second proof (THREATS 9), and cancel links
//! (opened by a scanner, used, reused and forged).

use crate::common;

use common::http::{http, serve};

use airlock::core::ids::UnixMs;
use airlock::core::limits::DAY_MS;
use airlock::directory::totp::{TotpSecret, hotp, step_at};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// RFC 4648's example secret, as an authenticator app would be enrolled with it.
const TOTP_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

fn airlock() -> Command {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    let encode = |text: &str| {
        text.bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (byte as char).to_string(),
                other => format!("%{other:02X}"),
            })
            .collect::<String>()
    };
    pairs.iter().map(|(name, value)| format!("{name}={}", encode(value))).collect::<Vec<_>>().join("&").into_bytes()
}

fn import(data: &Path) {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let long_ago =
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(now_ms - 90 * DAY_MS))
            .to_string();
    common::import_accounts(
        data,
        json!([
            {
                "account_id": "tess",
                "totp_enrolled_since": long_ago,
                "totp_secret": TOTP_SECRET,
                "destinations": [
                    { "id": "tess-mail", "kind": "email", "address": "tess@example.com", "trusted_since": long_ago }
                ]
            },
            {
                "account_id": "uma",
                "destinations": [
                    { "id": "uma-mail", "kind": "email", "address": "uma@example.com", "trusted_since": long_ago }
                ]
            }
        ]),
    );
}

/// Opens a case through `airlock submit` as a support desk and returns its id.
fn request(data: &Path, command_id: &str, account: &str, action: Value) -> String {
    let body = json!({
        "version": 1, "command_id": command_id, "account_id": account, "action": action,
        "summary": "customer on chat", "signals": {}
    });
    let mut child = airlock()
        .args(["submit", "--actor", "intake:desk", "--command", "request-recovery", "--data-dir"])
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let reply: Value = serde_json::from_slice(&output.stdout).unwrap();
    reply["case_id"].as_str().expect("a case id").to_string()
}

/// The bodies of the outbox messages of a case, oldest first (read-only, as an email provider would see them).
fn messages(data: &Path, case_id: &str) -> Vec<String> {
    let connection =
        rusqlite::Connection::open_with_flags(data.join("directory.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut statement = connection.prepare("SELECT body FROM outbox WHERE case_id = ?1 ORDER BY rowid").unwrap();
    statement.query_map([case_id], |row| row.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

fn messages_all(data: &Path) -> Vec<(String, String)> {
    let connection =
        rusqlite::Connection::open_with_flags(data.join("directory.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut statement = connection.prepare("SELECT case_id, address FROM outbox").unwrap();
    statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

fn timeline(data: &Path, case_id: &str) -> Vec<(String, String)> {
    let connection =
        rusqlite::Connection::open_with_flags(data.join("projection.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut statement = connection
        .prepare("SELECT event_type, detail FROM timeline WHERE case_id = ?1 ORDER BY case_sequence")
        .unwrap();
    statement.query_map([case_id], |row| Ok((row.get(0)?, row.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

/// The code in a message: the whitespace-separated word of exactly eight digits (a case id in a link may hold a run
/// of eight digits too, so runs inside words do not count).
fn code_in(body: &str) -> String {
    body.split_whitespace()
        .find(|word| word.len() == 8 && word.bytes().all(|byte| byte.is_ascii_digit()))
        .expect("an 8-digit code")
        .to_string()
}

fn status_of(data: &Path, case_id: &str) -> String {
    let connection =
        rusqlite::Connection::open_with_flags(data.join("projection.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    connection.query_row("SELECT status FROM cases WHERE case_id = ?1", [case_id], |row| row.get(0)).unwrap()
}

fn totp_now() -> String {
    let secret = TotpSecret::from_base32(TOTP_SECRET).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    hotp(&secret, step_at(UnixMs(now)), 6)
}

// Proves the verification page: opening the link shows a form and changes nothing; every answer carries the
// hardening headers; a wrong code through the JSON endpoint is refused (and counted), the right one through the form
// verifies; the code never appears in what airlock prints, and the answer never echoes it.
#[test]
fn the_verification_page_takes_a_code_and_never_echoes_it() {
    let data = common::scratch();
    import(data.path());
    let server = serve(data.path());
    let case_id = request(data.path(), "r-1", "uma", json!({ "type": "reset_password" }));
    let code = code_in(&messages(data.path(), &case_id)[0]);

    let (status, head, page) = http(&server.address, "GET", &format!("/verify?case={case_id}"), "text/plain", b"");
    assert_eq!(status, 200, "{page}");
    for header in ["cache-control: no-store", "referrer-policy: no-referrer", "x-frame-options: deny"] {
        assert!(head.contains(header), "{header} missing in {head}");
    }
    assert!(head.contains("content-security-policy: default-src 'none'"), "{head}");
    assert!(page.contains("name=\"code\"") && page.contains(&case_id), "{page}");
    assert_eq!(status_of(data.path(), &case_id), "requested", "opening the page changes nothing");
    let (status, _, _) = http(&server.address, "GET", "/verify?case=<script>", "text/plain", b"");
    assert_eq!(status, 400, "a malformed case id in a link is refused");

    let wrong = if code == "00000000" { "11111111" } else { "00000000" };
    let body = json!({ "version": 1, "command_id": "web-1", "case_id": case_id, "code": wrong });
    let (status, _, reply) =
        http(&server.address, "POST", "/v1/proofs", "application/json", body.to_string().as_bytes());
    assert_eq!(status, 422, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    // Issue 15, item 8: the answer says only that the code was not accepted, never the case's state.
    assert_eq!(reply["error"]["code"], "code_not_accepted", "{reply}");
    assert!(reply.get("status").is_none(), "{reply}");
    assert_eq!(status_of(data.path(), &case_id), "requested", "the wrong code was counted, the case still waits");

    let fields = [("case_id", case_id.as_str()), ("command_id", "web-2"), ("code", code.as_str()), ("totp", "")];
    let (status, _, page) =
        http(&server.address, "POST", "/verify", "application/x-www-form-urlencoded", &form(&fields));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Verified") && !page.contains(&code), "{page}");
    assert_eq!(status_of(data.path(), &case_id), "cooling_off");

    let (status, _, _) = http(&server.address, "POST", "/v1/proofs", "application/json", &vec![b' '; 20_000]);
    assert_eq!(status, 413, "an oversized body is refused before it is read");
    let printed = server.stderr.lock().unwrap().clone();
    assert!(!printed.contains(&code) && !printed.contains(wrong), "a code reached serve's output:\n{printed}");
}

// Proves (issue 18, item 6) a serve with no identity provider configured offers no sign-in and takes none: the page
// links to no /oidc/start, which is not served; a proof carrying a sealed sign-in is refused as invalid, saying why,
// and so is one carrying both an authenticator code and a sign-in; neither is counted as a wrong code, and the case
// still takes the right code afterwards.
#[test]
fn without_an_identity_provider_no_sign_in_is_offered_or_taken() {
    let data = common::scratch();
    import(data.path());
    let server = serve(data.path());
    let case_id = request(data.path(), "r-1", "uma", json!({ "type": "reset_password" }));
    let code = code_in(&messages(data.path(), &case_id)[0]);
    let (_, _, page) = http(&server.address, "GET", &format!("/verify?case={case_id}"), "text/plain", b"");
    assert!(!page.contains("/oidc/start"), "{page}");
    let (status, _, _) = http(&server.address, "GET", &format!("/oidc/start?case={case_id}"), "text/plain", b"");
    assert_eq!(status, 404);

    let proof = |command_id: &str, extra: Value| {
        let mut body = json!({ "version": 1, "command_id": command_id, "case_id": case_id, "code": code });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let (status, _, reply) =
            http(&server.address, "POST", "/v1/proofs", "application/json", body.to_string().as_bytes());
        (status, serde_json::from_str::<Value>(&reply).unwrap())
    };
    let (status, reply) = proof("p-1", json!({ "step_up": "eyJjYXNlIjoieCJ9.00ff" }));
    assert_eq!((status, &reply["error"]["code"]), (422, &json!("invalid_value")), "{reply}");
    assert!(reply["message"].as_str().unwrap().contains("no sign-in"), "{reply}");
    let (status, reply) = proof("p-2", json!({ "step_up": "eyJjYXNlIjoieCJ9.00ff", "totp": "123456" }));
    assert_eq!((status, &reply["error"]["code"]), (422, &json!("invalid_value")), "{reply}");
    assert!(reply["message"].as_str().unwrap().contains("not both"), "{reply}");
    assert_eq!(status_of(data.path(), &case_id), "requested");
    let (status, reply) = proof("p-3", json!({}));
    assert_eq!((status, &reply["status"]), (200, &json!("cooling_off")), "{reply}");
}

// Proves THREATS 9 through the page: on an account with an authenticator, removing it with the one-time code alone
// goes to people; with the authenticator's current code as well it goes ahead by policy; the same authenticator code
// cannot be used twice, and a wrong one fails the proof.
#[test]
fn a_factor_change_needs_the_authenticator_where_the_account_has_one() {
    let data = common::scratch();
    import(data.path());
    let server = serve(data.path());
    let verify = |case_id: &str, command_id: &str, totp: &str| {
        let sent = messages(data.path(), case_id);
        let code = code_in(sent.last().unwrap_or_else(|| {
            panic!("no message for {case_id}: {:?} {:?}", timeline(data.path(), case_id), messages_all(data.path()))
        }));
        let fields = [("case_id", case_id), ("command_id", command_id), ("code", code.as_str()), ("totp", totp)];
        http(&server.address, "POST", "/verify", "application/x-www-form-urlencoded", &form(&fields))
    };

    let weak = request(data.path(), "r-weak", "tess", json!({ "type": "remove_totp" }));
    let (status, _, page) = verify(&weak, "p-weak", "");
    assert_eq!(status, 200, "{page}");
    assert_eq!(status_of(data.path(), &weak), "in_review", "code alone: people decide");

    let strong = request(data.path(), "r-strong", "tess", json!({ "type": "remove_totp" }));
    let totp = totp_now();
    let (status, _, page) = verify(&strong, "p-strong", &totp);
    assert_eq!(status, 200, "{page}");
    assert_eq!(status_of(data.path(), &strong), "cooling_off", "code and authenticator: the policy decides");
    assert!(!page.contains(&totp), "{page}");

    let replay = request(data.path(), "r-replay", "tess", json!({ "type": "remove_totp" }));
    let (status, _, page) = verify(&replay, "p-replay", &totp);
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("Not verified"), "a used authenticator code is refused: {page}");
    assert_eq!(status_of(data.path(), &replay), "requested");
    let (status, _, page) = verify(&replay, "p-letters", "12ab56");
    assert_eq!(status, 422, "{page}");
}

// Proves (issue 15, item 17) a typo in the message's code does not use up the authenticator code typed with it: the
// owner who retypes the right code with the same authenticator code (same 30-second step) is verified.
#[test]
fn a_mistyped_code_does_not_use_up_the_authenticator_code() {
    let data = common::scratch();
    import(data.path());
    let server = serve(data.path());
    let case_id = request(data.path(), "r-typo", "tess", json!({ "type": "remove_totp" }));
    let code = code_in(&messages(data.path(), &case_id)[0]);
    let first_digit = if code.starts_with('1') { '2' } else { '1' };
    let typo: String = std::iter::once(first_digit).chain(code.chars().skip(1)).collect();
    let totp = totp_now();
    let first = [("case_id", case_id.as_str()), ("command_id", "p-typo"), ("code", typo.as_str()), ("totp", &totp)];
    let (status, _, page) =
        http(&server.address, "POST", "/verify", "application/x-www-form-urlencoded", &form(&first));
    assert_eq!(status, 422, "{page}");
    let again = [("case_id", case_id.as_str()), ("command_id", "p-right"), ("code", code.as_str()), ("totp", &totp)];
    let (status, _, page) =
        http(&server.address, "POST", "/verify", "application/x-www-form-urlencoded", &form(&again));
    assert_eq!(status, 200, "the authenticator code was used up by the typo: {page}");
    assert_eq!(status_of(data.path(), &case_id), "cooling_off");
}

// Proves (issue 15, item 17) the owner is told which part to retype, and only someone with the message's code learns
// anything: a wrong message code with any authenticator code gets the one answer for every failed proof; the right
// message code with a wrong authenticator code is told the authenticator code was the wrong part.
#[test]
fn the_owner_is_told_which_part_to_retype() {
    let data = common::scratch();
    import(data.path());
    let server = serve(data.path());
    let case_id = request(data.path(), "r-part", "tess", json!({ "type": "remove_totp" }));
    let code = code_in(&messages(data.path(), &case_id)[0]);
    let wrong = if code.starts_with('1') { "20000000" } else { "10000000" };
    let right_totp = totp_now();
    let wrong_totp = if right_totp == "000000" { "111111" } else { "000000" };
    let prove = |command_id: &str, code: &str, totp: &str| {
        let body = json!({ "version": 1, "command_id": command_id, "case_id": case_id, "code": code, "totp": totp });
        let (status, _, reply) =
            http(&server.address, "POST", "/v1/proofs", "application/json", body.to_string().as_bytes());
        (status, serde_json::from_str::<Value>(&reply).unwrap())
    };
    let (status, reply) = prove("p1", wrong, &right_totp);
    assert_eq!((status, reply["error"]["code"].as_str()), (422, Some("code_not_accepted")), "{reply}");
    let (status, reply) = prove("p2", &code, wrong_totp);
    assert_eq!((status, reply["error"]["code"].as_str()), (422, Some("second_factor_not_accepted")), "{reply}");
    assert!(reply["message"].as_str().unwrap().contains("authenticator"), "{reply}");
    let (status, reply) = prove("p3", &code, &right_totp);
    assert_eq!(status, 200, "{reply}");
}

// Proves the cancel link: a scanner fetching it cancels nothing; the owner's button cancels the scheduled change; a
// forged token cancels nothing and says so without detail; using the link again changes nothing more.
#[test]
fn a_cancel_link_cancels_once_and_only_with_its_token() {
    let data = common::scratch();
    import(data.path());
    let server = serve(data.path());
    let case_id = request(data.path(), "r-c", "uma", json!({ "type": "reset_password" }));
    let code = code_in(&messages(data.path(), &case_id)[0]);
    let fields = [("case_id", case_id.as_str()), ("command_id", "p-c"), ("code", code.as_str())];
    let (status, _, _) = http(&server.address, "POST", "/verify", "application/x-www-form-urlencoded", &form(&fields));
    assert_eq!(status, 200);
    let notice = messages(data.path(), &case_id).into_iter().find(|body| body.contains("/cancel?")).expect("a notice");
    let link = notice.split_whitespace().find(|word| word.contains("/cancel?")).unwrap();
    let target = &link[link.find("/cancel?").unwrap()..];
    assert!(link.starts_with(&format!("http://{}", server.address)), "links point at the page: {link}");

    let (status, _, page) = http(&server.address, "GET", target, "text/plain", b"");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("method=\"post\""), "{page}");
    assert_eq!(status_of(data.path(), &case_id), "cooling_off", "fetching the link cancels nothing");

    let query = &target["/cancel?".len()..];
    let forged = query.rsplit_once("token=").map(|(head, _)| format!("{head}token={}", "ab".repeat(32))).unwrap();
    let (status, _, page) =
        http(&server.address, "POST", "/cancel", "application/x-www-form-urlencoded", forged.as_bytes());
    assert_eq!(status, 422, "{page}");
    assert_eq!(status_of(data.path(), &case_id), "cooling_off", "a forged token cancels nothing");

    let (status, _, page) =
        http(&server.address, "POST", "/cancel", "application/x-www-form-urlencoded", query.as_bytes());
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Cancelled"), "{page}");
    assert_eq!(status_of(data.path(), &case_id), "cancelled");
    let (status, _, page) =
        http(&server.address, "POST", "/cancel", "application/x-www-form-urlencoded", query.as_bytes());
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Already cancelled"), "a used link cancels nothing more: {page}");
}

// Proves a pending change freezes the account's security settings: once a verified reset waits in cooling-off, the
// directory refuses to replace the account (an import stands for the identity system's own settings page), says
// which case holds it, and changes nothing; when the owner cancels, the account can change again.
#[test]
fn a_scheduled_change_freezes_the_account_until_it_ends() {
    let data = common::scratch();
    import(data.path());
    let server = serve(data.path());
    let case_id = request(data.path(), "r-f", "uma", json!({ "type": "reset_password" }));
    let code = code_in(&messages(data.path(), &case_id)[0]);
    let fields = [("case_id", case_id.as_str()), ("command_id", "p-f"), ("code", code.as_str())];
    let (status, _, _) = http(&server.address, "POST", "/verify", "application/x-www-form-urlencoded", &form(&fields));
    assert_eq!(status, 200);
    assert_eq!(status_of(data.path(), &case_id), "cooling_off");

    let change = json!({ "version": 1, "accounts": [{ "account_id": "uma", "destinations": [
        { "id": "uma-new", "kind": "email", "address": "uma.new@example.net", "trusted_since": "2026-01-01T00:00:00Z" }
    ]}]});
    let path = data.path().join("change.json");
    std::fs::write(&path, change.to_string()).unwrap();
    let refused =
        airlock().args(["directory", "import"]).arg(&path).arg("--data-dir").arg(data.path()).output().unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(said.contains(&case_id) && said.contains("frozen"), "{said}");

    let notice = messages(data.path(), &case_id).into_iter().find(|body| body.contains("/cancel?")).unwrap();
    let link = notice.split_whitespace().find(|word| word.contains("/cancel?")).unwrap();
    let query = &link[link.find("/cancel?").unwrap() + "/cancel?".len()..];
    let (status, _, _) =
        http(&server.address, "POST", "/cancel", "application/x-www-form-urlencoded", query.as_bytes());
    assert_eq!(status, 200);
    let accepted =
        airlock().args(["directory", "import"]).arg(&path).arg("--data-dir").arg(data.path()).output().unwrap();
    assert!(accepted.status.success(), "{}", String::from_utf8_lossy(&accepted.stderr));
}

/// The value of the hidden form field `name` in `page`, as the browser would send it (the page escapes `&<>"'`).
fn hidden_field(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no field {name} in {page}")) + marker.len();
    let raw = &page[start..start + page[start..].find('"').unwrap()];
    raw.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

// Proves (THREATS 20, issue 15 item 9) that the links airlock sends work for every character the schemas allow in an
// id: an account and a destination whose ids use `+`, `.`, `@`, `-`, `_`, digits and both cases get a verification
// link that opens the case's page and a cancel link whose page and button cancel the change.
#[test]
fn links_work_for_every_character_an_id_may_hold() {
    let data = common::scratch();
    let long_ago = humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_millis(90 * DAY_MS))
        .to_string();
    let (account, destination) = ("Uma+2.x_y-Z@example", "Mail+tag.1_2-3@Home");
    common::import_accounts(
        data.path(),
        json!([{ "account_id": account, "destinations": [
            { "id": destination, "kind": "email", "address": "uma2@example.com", "trusted_since": long_ago }
        ]}]),
    );
    let server = serve(data.path());
    let case_id = request(data.path(), "r-l", account, json!({ "type": "reset_password" }));
    let first = &messages(data.path(), &case_id)[0];
    let verify = first.split_whitespace().find(|word| word.contains("/verify?")).expect("a verification link");
    let (status, _, page) =
        http(&server.address, "GET", &verify[verify.find("/verify?").unwrap()..], "text/plain", b"");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&case_id), "the verification link names its case: {page}");

    let code = code_in(first);
    let fields = [("case_id", case_id.as_str()), ("command_id", "p-l"), ("code", code.as_str())];
    let (status, _, _) = http(&server.address, "POST", "/verify", "application/x-www-form-urlencoded", &form(&fields));
    assert_eq!(status, 200);
    let notice = messages(data.path(), &case_id).into_iter().find(|body| body.contains("/cancel?")).expect("a notice");
    let link = notice.split_whitespace().find(|word| word.contains("/cancel?")).unwrap();
    let (status, _, page) = http(&server.address, "GET", &link[link.find("/cancel?").unwrap()..], "text/plain", b"");
    assert_eq!(status, 200, "the cancel link opens its page: {page}");
    assert_eq!(hidden_field(&page, "destination"), destination);
    let button: Vec<(&str, String)> =
        ["case", "destination", "token"].into_iter().map(|name| (name, hidden_field(&page, name))).collect();
    let pairs: Vec<(&str, &str)> = button.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let (status, _, page) =
        http(&server.address, "POST", "/cancel", "application/x-www-form-urlencoded", &form(&pairs));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Cancelled"), "{page}");
    assert_eq!(status_of(data.path(), &case_id), "cancelled");
}

// Proves (issue 15, item 14) two tabs are not an attack: the owner's right code and authenticator code sent twice at
// once (one is accepted, the other loses the race or finds the authenticator code used) count as no wrong code, so
// the account still has its five attempts afterwards: four wrong codes on a later case leave it waiting for proof.
// Several accounts race at once, each in the same 30-second step, so that a lost race happens in some of them.
#[test]
fn the_same_proof_from_two_tabs_counts_as_no_wrong_code() {
    let data = common::scratch();
    let long_ago = humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_millis(90 * DAY_MS))
        .to_string();
    let owners: Vec<String> = (0..6).map(|index| format!("tab{index}")).collect();
    let accounts: Vec<Value> = owners
        .iter()
        .map(|owner| {
            json!({ "account_id": owner, "totp_enrolled_since": long_ago, "totp_secret": TOTP_SECRET, "destinations": [
                { "id": format!("{owner}-mail"), "kind": "email", "address": format!("{owner}@example.com"),
                  "trusted_since": long_ago }
            ]})
        })
        .collect();
    common::import_accounts(data.path(), Value::Array(accounts));
    let server = serve(data.path());
    let cases: Vec<String> = owners
        .iter()
        .map(|owner| request(data.path(), &format!("r-{owner}"), owner, json!({ "type": "reset_password" })))
        .collect();
    let totp = totp_now();
    std::thread::scope(|scope| {
        for case_id in &cases {
            let code = code_in(&messages(data.path(), case_id)[0]);
            for tab in ["a", "b"] {
                let (address, case_id, code, totp) = (&server.address, case_id.clone(), code.clone(), totp.clone());
                scope.spawn(move || {
                    let command_id = format!("tab-{tab}-{case_id}");
                    let fields =
                        [("case_id", case_id.as_str()), ("command_id", &command_id), ("code", &code), ("totp", &totp)];
                    http(address, "POST", "/verify", "application/x-www-form-urlencoded", &form(&fields))
                });
            }
        }
    });
    // Two later cases of two wrong codes each (one case takes three, ADR 14), the first proven in between so the
    // second gets a code: four wrong codes in all leave the second case waiting only if the tab counted none.
    let post = |case_id: &str, command_id: &str, code: &str| {
        let fields = [("case_id", case_id), ("command_id", command_id), ("code", code), ("totp", "")];
        http(&server.address, "POST", "/verify", "application/x-www-form-urlencoded", &form(&fields))
    };
    for (owner, case_id) in owners.iter().zip(&cases) {
        assert_ne!(status_of(data.path(), case_id), "requested", "{owner}: one tab's proof was accepted");
        for round in 0..2 {
            let later = request(data.path(), &format!("r{round}-{owner}"), owner, json!({ "type": "reset_password" }));
            let code = code_in(messages(data.path(), &later).last().expect("a code for the later case"));
            let wrong = if code.starts_with('1') { "20000000" } else { "10000000" };
            for attempt in 0..2 {
                post(&later, &format!("w{round}{attempt}-{owner}"), wrong);
            }
            assert_eq!(
                status_of(data.path(), &later),
                "requested",
                "{owner}: the second tab was counted as a wrong code"
            );
            if round == 0 {
                post(&later, &format!("right-{owner}"), &code);
            }
        }
    }
}
