//! HTTP intake (issue 6, item 3): `airlock serve --http` takes `POST /v1/recovery-requests` and answers
//! `GET /v1/recovery-requests/{id}` for requesters holding an API key from `airlock api-key`, with the rules of NATS
//! intake, and the answer documented in `schemas/http_intake.openapi.json`.

use crate::common;

use common::http::{http_with, serve};
use common::threats::{email_account, request_body, reset_password};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

fn airlock(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_airlock")).args(args).arg("--data-dir").arg(data).output().unwrap()
}

/// Makes a key for `requester` with `airlock api-key create --json` and returns (key id, key).
fn make_key(data: &Path, requester: &str) -> (String, String) {
    let output = airlock(data, &["api-key", "create", "--requester", requester, "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let made: Value = serde_json::from_slice(&output.stdout).unwrap();
    (made["key_id"].as_str().unwrap().to_string(), made["key"].as_str().unwrap().to_string())
}

fn post(address: &str, key: Option<&str>, body: &[u8]) -> (u16, String, Value) {
    let bearer = key.map(|key| format!("Bearer {key}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer));
    }
    let (status, head, body) = http_with(address, "POST", "/v1/recovery-requests", &headers, body);
    (status, head, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

fn get(address: &str, key: &str, case_id: &str) -> (u16, Value) {
    let bearer = format!("Bearer {key}");
    let target = format!("/v1/recovery-requests/{case_id}");
    let (status, _, body) = http_with(address, "GET", &target, &[("Authorization", &bearer)], b"");
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

fn documented(path: &str, method: &str) -> Vec<u16> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/http_intake.openapi.json"));
    let document: Value = serde_json::from_str(&text.unwrap()).unwrap();
    let responses = document["paths"][path][method]["responses"].as_object().expect("documented responses");
    responses.keys().map(|code| code.parse().unwrap()).collect()
}

// Proves a support desk with a key opens a case (202, the intake message, a Location) and reads its public status;
// that the same command id lands on the same case; that without a live key (none, wrong, revoked) nothing is taken
// (401 with WWW-Authenticate); that another requester's case reads like no case; that bad input gets the same
// specific errors as NATS intake (malformed, unknown field, a pasted code, too large); that every status answered is
// documented in the OpenAPI file; and that the key appears in no answer, log or file.
#[test]
fn http_intake_takes_requests_only_with_a_live_key_and_the_rules_of_nats_intake() {
    let directory = common::scratch();
    let data = directory.path().join("data");
    common::import_accounts(&data, json!([email_account("acct-1")]));
    let (_, desk_key) = make_key(&data, "helpdesk");
    let (other_id, other_key) = make_key(&data, "other-desk");
    let server = serve(&data);
    let address = server.address.clone();
    let mut answered = Vec::new();

    let body = request_body("http-1", "acct-1", reset_password(), "customer on the phone", json!({})).to_string();
    let (status, head, reply) = post(&address, Some(&desk_key), body.as_bytes());
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["accepted"], true);
    assert_eq!(reply["status"], "received");
    assert_eq!(reply["message"], airlock::intake::INTAKE_MESSAGE);
    let case_id = reply["case_id"].as_str().unwrap().to_string();
    assert!(head.contains(&format!("location: /v1/recovery-requests/{case_id}")), "{head}");
    answered.push(("post", status));
    let (again, _, reply_again) = post(&address, Some(&desk_key), body.as_bytes());
    assert_eq!((again, &reply_again["case_id"]), (202, &json!(case_id)), "a retry lands on the same case");
    // The case is recorded as the key's requester's, and its code goes out after the answer.
    let shown = airlock(&data, &["case", "history", &case_id, "--json"]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("intake:helpdesk"), "recorded as the key's requester");
    common::wait_for(
        || String::from_utf8_lossy(&airlock(&data, &["outbox", "--json"]).stdout).contains(&case_id),
        "the owner's code to go out",
    );

    let (status, answer) = get(&address, &desk_key, &case_id);
    assert_eq!((status, &answer["status"]), (200, &json!("pending")), "{answer}");
    answered.push(("get", status));
    let (status, others) = get(&address, &other_key, &case_id);
    let (unknown_status, unknown) = get(&address, &other_key, "case-000000000000000000000000");
    assert_eq!((status, unknown_status), (404, 404));
    assert_eq!(others["status"], "not_found");
    assert_eq!(others["next_step"], unknown["next_step"], "another's case reads like no case");
    answered.push(("get", status));
    let (status, _) = get(&address, &desk_key, "not%20an%20id");
    assert_eq!(status, 400);
    answered.push(("get", status));

    // Without a live key nothing is taken.
    let revoked = airlock(&data, &["api-key", "revoke", &other_id]);
    assert!(revoked.status.success());
    let fresh = request_body("http-2", "acct-1", reset_password(), "x", json!({})).to_string();
    let mut wrong = desk_key.clone();
    wrong.replace_range(wrong.len() - 4.., "0000");
    for key in [None, Some(wrong.as_str()), Some(other_key.as_str()), Some("ak_short")] {
        let (status, head, reply) = post(&address, key, fresh.as_bytes());
        assert_eq!(status, 401, "{key:?}: {reply}");
        assert!(head.contains("www-authenticate: bearer"), "{head}");
        assert_eq!(reply["error"]["code"], "unauthorized");
        answered.push(("post", status));
    }
    let (status, _) = get(&address, &other_key, &case_id);
    assert_eq!(status, 401, "a revoked key reads nothing");

    // Bad input: the same specific errors as NATS intake.
    let pasted = request_body("http-3", "acct-1", reset_password(), "my code is 48213377", json!({})).to_string();
    let mut unknown_field = request_body("http-4", "acct-1", reset_password(), "x", json!({}));
    unknown_field["destination"] = json!("attacker@evil.example");
    let oversized = request_body("http-5", "acct-1", reset_password(), &"a".repeat(20_000), json!({})).to_string();
    for (body, expected_status, expected_code) in [
        (b"{not json".to_vec(), 400, Some("malformed_command")),
        (unknown_field.to_string().into_bytes(), 400, Some("malformed_command")),
        (pasted.into_bytes(), 422, Some("secret_in_untrusted_field")),
        (oversized.into_bytes(), 413, None),
    ] {
        let (status, _, reply) = post(&address, Some(&desk_key), &body);
        assert_eq!(status, expected_status, "{reply}");
        if let Some(code) = expected_code {
            assert_eq!(reply["error"]["code"], code, "{reply}");
        }
        answered.push(("post", status));
    }

    // The curl example, as a desk would run it.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/http/curl_session.sh");
    let output = Command::new("bash")
        .args([example, "acct-1"])
        .env("AIRLOCK_URL", format!("http://{address}"))
        .env("AIRLOCK_KEY", &desk_key)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{printed}{}", String::from_utf8_lossy(&output.stderr));
    assert!(printed.contains("\"status\":\"received\"") && printed.contains("\"status\":\"pending\""), "{printed}");
    assert!(printed.trim_end().ends_with("401"), "{printed}");

    for (method, status) in answered {
        let (path, method) = match method {
            "post" => ("/v1/recovery-requests", "post"),
            _ => ("/v1/recovery-requests/{id}", "get"),
        };
        assert!(documented(path, method).contains(&status), "{method} {path} answered {status}, not documented");
    }
    let secret = desk_key.rsplit('_').next().unwrap();
    assert!(!server.stderr.lock().unwrap().contains(secret), "the key is in serve's log");
    drop(server);
    for file in ["access.db", "log.db", "projection.db", "directory.db"] {
        let bytes = std::fs::read(data.join(file)).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&bytes).contains(secret), "the key is in {file}");
    }
    let listed = airlock(&data, &["api-key", "list", "--json"]);
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(listed.contains("helpdesk") && !listed.contains(secret), "{listed}");
}

/// The owner's page's JSON proof endpoint, with a code that was never sent anywhere.
fn dummy_proof(address: &str, case_id: &str, command_id: &str) -> (u16, Value) {
    let body = json!({ "version": 1, "command_id": command_id, "case_id": case_id, "code": "00000000" });
    let (status, _, answer) =
        http_with(address, "POST", "/v1/proofs", &[("Content-Type", "application/json")], body.to_string().as_bytes());
    (status, common::threats::without_ids(serde_json::from_str(&answer).unwrap()))
}

// Proves THREATS 18 (issue 15, item 8): no public answer tells an existing account from a nonexistent one. A dummy
// code on the owners' page gets one answer for a case whose owner was sent a code, a case in review, a case of an
// unknown account and a case that does not exist; and a day later (the clock run ahead past the code's case's time
// limit) the requester reads the same status for the existing and the unknown account's cases. Every answer about a
// request takes at least the answer floor.
#[test]
fn threat_18_no_answer_tells_existing_from_nonexistent_accounts() {
    let scratch = common::scratch();
    let data = scratch.path().join("data");
    let young = common::threats::time_ago(24 * 3_600 * 1_000);
    common::import_accounts(
        &data,
        json!([
            email_account("vera"),
            common::threats::account("walt", &[("walt-mail", "email", "walt@example.com", &young)]),
        ]),
    );
    let (_, key) = make_key(&data, "desk");
    let server = serve(&data);
    let mut cases = Vec::new();
    for (index, account) in ["vera", "walt", "nobody-at-all"].into_iter().enumerate() {
        let body = request_body(&format!("t18-{index}"), account, reset_password(), "locked out", json!({}));
        let started = std::time::Instant::now();
        let (status, _, reply) = post(&server.address, Some(&key), body.to_string().as_bytes());
        assert!(started.elapsed() >= std::time::Duration::from_millis(airlock::intake::ANSWER_FLOOR_MS));
        assert_eq!(status, 202, "{reply}");
        cases.push(reply["case_id"].as_str().unwrap().to_string());
    }
    let mut answers: Vec<(u16, Value)> = cases
        .iter()
        .enumerate()
        .map(|(index, case)| dummy_proof(&server.address, case, &format!("p{index}")))
        .collect();
    answers.push(dummy_proof(&server.address, "case-000000000000000000000000", "p-none"));
    assert!(answers.iter().all(|answer| *answer == answers[0]), "proof answers differ: {answers:#?}");
    assert_eq!(answers[0].0, 422, "{answers:?}");
    drop(server);

    let later = common::http::serve_with(&data, &[("AIRLOCK_CLOCK_AHEAD", "25h")]);
    common::wait_for(
        || {
            String::from_utf8_lossy(&airlock(&data, &["case", "show", &cases[0], "--json"]).stdout)
                .contains("\"expired\"")
        },
        "the code's case to pass its time limit",
    );
    let statuses: Vec<Value> = cases
        .iter()
        .map(|case| {
            let (status, answer) = get(&later.address, &key, case);
            assert_eq!(status, 200, "{answer}");
            answer["status"].clone()
        })
        .collect();
    assert!(statuses.iter().all(|status| *status == statuses[0]), "statuses a day later differ: {statuses:?}");
}

/// The rows of `docs/answers.md`'s table: (route, status, code, checked).
fn documented_answers() -> Vec<(String, u16, String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/answers.md")).unwrap();
    let table = text.split("<!-- answers-table").nth(1).unwrap().split("<!-- end of answers-table").next().unwrap();
    table
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let unquote = |cell: &str| cell.trim_matches('`').to_string();
            (unquote(cells[0]), cells[1].parse().unwrap(), unquote(cells[2]), cells[4].to_string())
        })
        .collect()
}

/// The `error.code` of a JSON answer, or `-`.
fn answer_code(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|value| value["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_else(|| "-".to_string())
}

/// The last message the embedded outbox holds for `case_id`.
fn last_message(data: &Path, case_id: &str) -> String {
    let connection =
        rusqlite::Connection::open_with_flags(data.join("directory.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    connection
        .query_row("SELECT body FROM outbox WHERE case_id = ?1 ORDER BY rowid DESC LIMIT 1", [case_id], |row| {
            row.get(0)
        })
        .unwrap()
}

// Proves (issue 15, item 19) the answers match the documentation: every answer a running server gives to every
// situation below is a row of `docs/answers.md`, and every row marked `tested` is given by one of them.
#[test]
fn every_answer_is_in_the_documented_table() {
    let scratch = common::scratch();
    let data = scratch.path().join("data");
    common::import_accounts(&data, json!([email_account("vera"), email_account("uma"), email_account("walt")]));
    let (_, key) = make_key(&data, "desk");
    let server = serve(&data);
    let address = server.address.clone();
    let bearer = format!("Bearer {key}");
    let json_with_key = [("Content-Type", "application/json"), ("Authorization", bearer.as_str())];
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let mut seen: Vec<(String, u16, String)> = Vec::new();
    let mut ask = |route: &str, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]| {
        let (status, _, answer) = http_with(&address, method, target, headers, body);
        seen.push((route.to_string(), status, answer_code(&answer)));
        answer
    };
    let open = |command_id: &str, account: &str| {
        request_body(command_id, account, reset_password(), "locked out", json!({})).to_string().into_bytes()
    };

    let requests = "POST /v1/recovery-requests";
    let answer = ask(requests, "POST", "/v1/recovery-requests", &json_with_key, &open("r1", "vera"));
    let vera_case = serde_json::from_str::<Value>(&answer).unwrap()["case_id"].as_str().unwrap().to_string();
    let answer = ask(requests, "POST", "/v1/recovery-requests", &json_with_key, &open("r2", "uma"));
    let uma_case = serde_json::from_str::<Value>(&answer).unwrap()["case_id"].as_str().unwrap().to_string();
    ask(requests, "POST", "/v1/recovery-requests", &json_with_key, b"not json");
    ask(requests, "POST", "/v1/recovery-requests", &[("Content-Type", "application/json")], &open("r3", "walt"));
    ask(requests, "POST", "/v1/recovery-requests", &json_with_key, &vec![b' '; 20_000]);
    ask(requests, "POST", "/v1/recovery-requests", &json_with_key, &open("r4", "bad id!"));
    let long = request_body("r5", "walt", reset_password(), &"x".repeat(5_000), json!({}));
    ask(requests, "POST", "/v1/recovery-requests", &json_with_key, long.to_string().as_bytes());
    let secret = request_body("r6", "walt", reset_password(), "the code is 48151623", json!({}));
    ask(requests, "POST", "/v1/recovery-requests", &json_with_key, secret.to_string().as_bytes());
    ask(requests, "POST", "/v1/recovery-requests", &json_with_key, &open("r1", "walt"));

    let status = "GET /v1/recovery-requests/{id}";
    ask(status, "GET", &format!("/v1/recovery-requests/{vera_case}"), &json_with_key, b"");
    ask(status, "GET", "/v1/recovery-requests/bad!id", &json_with_key, b"");
    ask(status, "GET", &format!("/v1/recovery-requests/{vera_case}"), &[], b"");
    ask(status, "GET", "/v1/recovery-requests/case-000000000000000000000000", &json_with_key, b"");

    let proofs = "POST /v1/proofs";
    let json = [("Content-Type", "application/json")];
    let proof = |command_id: &str, case_id: &str, code: &str| {
        json!({ "version": 1, "command_id": command_id, "case_id": case_id, "code": code }).to_string().into_bytes()
    };
    let vera_code = common::threats::code_in(&last_message(&data, &vera_case)).unwrap();
    ask(proofs, "POST", "/v1/proofs", &json, &proof("p1", &uma_case, "00000000"));
    ask(proofs, "POST", "/v1/proofs", &json, &proof("p2", &vera_case, "12"));
    ask(proofs, "POST", "/v1/proofs", &json, b"not json");
    ask(proofs, "POST", "/v1/proofs", &json, &vec![b' '; 20_000]);
    ask(proofs, "POST", "/v1/proofs", &json, &proof("p3", &vera_case, &vera_code));

    ask("GET /verify", "GET", &format!("/verify?case={uma_case}"), &[], b"");
    ask("GET /verify", "GET", "/verify", &[], b"");
    let wrong = format!("case_id={uma_case}&command_id=f1&code=00000000");
    ask("POST /verify", "POST", "/verify", &form, wrong.as_bytes());
    let uma_code = common::threats::code_in(&last_message(&data, &uma_case)).unwrap();
    let right = format!("case_id={uma_case}&command_id=f2&code={uma_code}");
    ask("POST /verify", "POST", "/verify", &form, right.as_bytes());

    let notice = last_message(&data, &vera_case);
    let link = notice.split_whitespace().find(|word| word.contains("/cancel?")).expect("a cancel link");
    let target = &link[link.find("/cancel?").unwrap()..];
    ask("GET /cancel", "GET", target, &[], b"");
    ask("GET /cancel", "GET", "/cancel", &[], b"");
    let query = &target["/cancel?".len()..];
    let forged = query.rsplit_once("token=").map(|(head, _)| format!("{head}token={}", "ab".repeat(32))).unwrap();
    ask("POST /cancel", "POST", "/cancel", &form, forged.as_bytes());
    ask("POST /cancel", "POST", "/cancel", &form, query.as_bytes());
    ask("GET /healthz", "GET", "/healthz", &[], b"");

    let documented = documented_answers();
    for (route, status, code) in &seen {
        assert!(
            documented.iter().any(|(r, s, c, _)| r == route && s == status && c == code),
            "{route} answered {status} {code}, which docs/answers.md does not list"
        );
    }
    for (route, status, code, checked) in documented.iter().filter(|row| row.3 == "tested") {
        assert!(
            seen.iter().any(|(r, s, c)| r == route && s == status && c == code),
            "docs/answers.md says {route} answers {status} {code} ({checked}), and no situation here produced it"
        );
    }
}

// Proves (issue 15, item 6) a code that reached none of its destinations is not outstanding: with the mail server
// unreachable, the owner's first request's code fails, and their next request is challenged with a code of its own
// instead of waiting behind the one they never received.
#[test]
fn a_code_that_was_never_delivered_is_not_outstanding() {
    let scratch = common::scratch();
    let data = scratch.path().join("data");
    common::import_accounts(&data, json!([email_account("vera")]));
    let (_, key) = make_key(&data, "desk");
    let closed = airlock::nats::server::free_port().unwrap();
    let smtp = format!("smtp://127.0.0.1:{closed}?from=recovery@example.com");
    let server = common::http::serve_with(&data, &[("AIRLOCK_SMTP_URL", smtp.as_str())]);
    let open = |command_id: &str| {
        let body = request_body(command_id, "vera", reset_password(), "locked out", json!({}));
        let (status, _, reply) = post(&server.address, Some(&key), body.to_string().as_bytes());
        assert_eq!(status, 202, "{reply}");
        reply["case_id"].as_str().unwrap().to_string()
    };
    open("first");
    common::wait_for(
        || server.stderr.lock().unwrap().contains("it is not outstanding"),
        "the undelivered code to be taken off the account",
    );
    let second = open("second");
    let shown: Value =
        serde_json::from_slice(&airlock(&data, &["case", "show", &second, "--json"]).stdout).unwrap_or(Value::Null);
    assert_eq!(shown["status"], "requested", "the second request waited behind a code nobody received: {shown}");
}
