//! Accounts, commands and reading helpers of the THREATS suite (`tests/threats/`, both backends), used by other tests
//! too: what a support desk, an owner or a reviewer would send, as JSON, and how a test reads what came back.

use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// When the long-standing destinations of the test accounts became trusted: far more than the 7 days a destination
/// must have aged to receive a code.
pub const LONG_AGO: &str = "2024-01-01T00:00:00Z";

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// An RFC 3339 time `ago_ms` before now, as a directory import file writes it.
pub fn time_ago(ago_ms: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis((now_ms() - ago_ms) as u64)).to_string()
}

/// One account of an import file, with its destinations as (id, kind, address, trusted since).
pub fn account(id: &str, destinations: &[(&str, &str, &str, &str)]) -> Value {
    let destinations: Vec<Value> = destinations
        .iter()
        .map(|(destination, kind, address, since)| {
            json!({ "id": destination, "kind": kind, "address": address, "trusted_since": since })
        })
        .collect();
    json!({ "account_id": id, "destinations": destinations })
}

/// An ordinary account with one email trusted long ago.
pub fn email_account(id: &str) -> Value {
    account(id, &[(&format!("{id}-mail"), "email", &format!("{id}@example.com"), LONG_AGO)])
}

pub fn reset_password() -> Value {
    json!({ "type": "reset_password" })
}

pub fn add_email(address: &str) -> Value {
    json!({ "type": "add_destination", "kind": "email", "address": address })
}

pub fn request_body(command_id: &str, account_id: &str, action: Value, summary: &str, signals: Value) -> Value {
    json!({ "version": 1, "command_id": command_id, "account_id": account_id, "action": action,
            "summary": summary, "signals": signals })
}

/// The 8-digit one-time code in a message body, if it carries one: a word of its own, so that a run of digits inside
/// the case id of the link before it is not taken for the code.
pub fn code_in(body: &str) -> Option<String> {
    body.split_whitespace()
        .find(|word| word.len() == 8 && word.bytes().all(|byte| byte.is_ascii_digit()))
        .map(str::to_string)
}

/// A code that is not `right` (the first of two fixed guesses that differs).
pub fn wrong_code(right: &str) -> &'static str {
    if right == "00000000" { "11111111" } else { "00000000" }
}

/// A reply with the ids that differ by construction removed: the case id airlock chose and the sender's command id.
pub fn without_ids(mut reply: Value) -> Value {
    let object = reply.as_object_mut().unwrap();
    object.remove("case_id");
    object.remove("command_id");
    reply
}

pub fn error_code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or("")
}

/// Dozens of rephrasings of one request, each a new case.
pub fn rephrased(index: usize) -> String {
    let openings = ["Hi,", "Hello team,", "URGENT:", "Good morning,", "Please help:", "Quick one:"];
    let asks = [
        "I cannot log in anymore",
        "my password stopped working",
        "I'm locked out of my account",
        "reset needed, lost access",
    ];
    format!("{} {} (attempt {index})", openings[index % openings.len()], asks[index % asks.len()])
}

pub fn approve(case_id: &str, command_id: &str, action_hash: &str) -> Value {
    json!({ "version": 1, "command_id": command_id, "case_id": case_id, "decision": "approve",
            "action_hash": action_hash, "reason": "checked the evidence packet" })
}
