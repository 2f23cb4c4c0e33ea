//! `airlock mcp`: the tools an AI support agent gets (Model Context Protocol, the `rmcp` crate), and nothing more. The
//! worst any of them can do is open a case: airlock verifies, authorizes, holds and executes it, never the agent.
//!
//! - `request_account_recovery`: an account, an action from a closed list that names no destination, the
//!   customer's words as untrusted text, and what the channel observed. The answer is the same whether or not the
//!   account exists.
//! - `get_recovery_status`: the public status of a case this agent opened, and what to tell the customer next. Any
//!   other case reads like no case.
//! - `explain_recovery_process`: what will happen and why, in plain words.
//!
//! No tool submits proof, approves, cancels, rolls back, halts, or chooses or adds a destination, and each tool's
//! description says so, so the agent can tell the customer. A code or token pasted into any field is refused before
//! anything is stored: codes are entered only at the verification page. The agent is one intake actor
//! (`intake:<requester>`); with `--nats` the server holds only that actor's key, so the broker refuses it everything
//! else too.

use crate::core::actor::{Actor, Role};
use crate::intake::{self, CommandType};
use crate::log::EventLog;
use crate::service::{Sending, Service, new_id, with_deferred_notices};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// How long a tool waits for airlock's answer over NATS.
const ANSWER_WAIT_MS: u64 = 30_000;

/// Where the tools send what they are given.
pub enum Backend<L: EventLog> {
    /// The embedded store of a data directory, through the same code as every front door. The notices a request
    /// calls for go out after its answer; `finish` waits for them, so an agent that hangs up at once loses no code.
    Embedded { service: Arc<Service<L>>, notices: Sending },
    /// `airlock serve` over NATS, as the agent's intake actor.
    Nats(async_nats::Client),
}

impl<L: EventLog + 'static> Backend<L> {
    pub fn embedded(service: Service<L>) -> Self {
        Backend::Embedded { service: Arc::new(service), notices: Default::default() }
    }

    /// Waits until every notice held back for an answer has been sent.
    pub async fn finish(&self) {
        if let Backend::Embedded { notices, .. } = self {
            notices.finish().await;
        }
    }
}

/// The changes an agent may ask for. None of them names a destination: adding one is for people, not agents.
#[derive(Clone, Copy, Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentAction {
    /// The customer cannot sign in: reset the password from a contact method already on the account.
    ResetPassword,
    /// The customer lost the phone with their authenticator app: remove it (needs the strongest proof or review).
    RemoveAuthenticator,
}

/// The arguments of `request_account_recovery`. Read through `quiet` (see its `Deserialize`), so that a refusal never
/// repeats what the agent sent (issue 15, item 13): a code pasted into the wrong place must not come back in an error.
#[derive(Clone, Debug, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RecoveryRequest {
    /// The account as the customer named it (a username or email address on the account).
    pub account: String,
    /// The one change the customer asks for.
    pub action: AgentAction,
    /// The customer's situation in your words. Stored verbatim as untrusted text for reviewers; it never decides
    /// anything. Never put a code, link or token here.
    pub customer_summary: String,
    /// What the channel observed about the customer (the same signals as every front door); each only ever adds
    /// friction.
    #[schemars(default)]
    pub signals: crate::wire::SignalsV1,
    /// Your own reference for this request, to retry it safely: the same reference opens one case, not two.
    #[schemars(default)]
    pub reference: Option<String>,
}

/// `RecoveryRequest` as serde reads it; its errors go through `quiet` before anyone sees them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoveryRequestFields {
    account: String,
    action: AgentAction,
    customer_summary: String,
    #[serde(default)]
    signals: crate::wire::SignalsV1,
    #[serde(default)]
    reference: Option<String>,
}

impl<'de> Deserialize<'de> for RecoveryRequest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields: RecoveryRequestFields = quiet(deserializer)?;
        let RecoveryRequestFields { account, action, customer_summary, signals, reference } = fields;
        Ok(RecoveryRequest { account, action, customer_summary, signals, reference })
    }
}

/// The arguments of `get_recovery_status`, read through `quiet` like `RecoveryRequest`.
#[derive(Clone, Debug, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct StatusRequest {
    /// The case reference `request_account_recovery` returned.
    pub case_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusRequestFields {
    case_id: String,
}

impl<'de> Deserialize<'de> for StatusRequest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let StatusRequestFields { case_id } = quiet(deserializer)?;
        Ok(StatusRequest { case_id })
    }
}

/// Reads `T` from a tool's arguments, and on failure says what is wrong without repeating any value or unknown field
/// name the agent sent: a missing field is named (the name is ours); anything else is described by its kind only.
fn quiet<'de, D: serde::Deserializer<'de>, T: serde::de::DeserializeOwned>(deserializer: D) -> Result<T, D::Error> {
    use serde::de::Error;
    let value = serde_json::Value::deserialize(deserializer)
        .map_err(|_| D::Error::custom("the arguments are not a JSON object"))?;
    serde_json::from_value(value).map_err(|error| D::Error::custom(quiet_reason(&error.to_string())))
}

/// The reason shown for a serde error's text, with nothing the sender wrote in it.
fn quiet_reason(error: &str) -> String {
    if let Some(rest) = error.strip_prefix("missing field `") {
        let field: String = rest.chars().take_while(|character| *character != '`').collect();
        return format!("the field {field} is missing; the fields are in the tool's input schema");
    }
    if error.starts_with("unknown field") {
        return "a field this tool does not take was sent (it is not repeated here); the fields are in the tool's \
                input schema"
            .to_string();
    }
    if error.starts_with("unknown variant") {
        return "a value is not one this tool takes (it is not repeated here); the values are in the tool's input \
                schema"
            .to_string();
    }
    "an argument has the wrong type or value (it is not repeated here); see the tool's input schema".to_string()
}

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {}

/// Why a value looks like something secret: a one-time code in any spelling (`wire::looks_like_code`), a link (with
/// or without a scheme: `https://...`, `www....`, `host.example/path`, `host.example?token=`), or a token (a run of
/// 20 or more letters and digits mixed, also when split into chunks by single spaces or dashes). The text is first
/// normalised the way a reader sees it: fullwidth forms folded to ASCII, invisible characters dropped.
fn looks_secret(text: &str) -> bool {
    let normal: String = text
        .chars()
        .filter(|character| !crate::core::text::invisible(*character))
        .map(|character| match character {
            '\u{ff01}'..='\u{ff5e}' => char::from_u32(character as u32 - 0xfee0).unwrap_or(character),
            other => other,
        })
        .collect();
    crate::wire::looks_like_code(text) || normal.contains("://") || normal.split_whitespace().any(looks_like_link) || {
        let chunks: Vec<&str> =
            normal.split(|character: char| !(character.is_ascii_alphanumeric() || character == '_')).collect();
        let mixed = |word: &str| {
            word.bytes().any(|byte| byte.is_ascii_digit()) && word.bytes().any(|byte| byte.is_ascii_alphabetic())
        };
        // Consecutive chunks of a split token: each mixes letters and digits, or is long; 20 characters in all.
        let mut run = 0;
        chunks.iter().any(|word| {
            run = if word.len() >= 4 && mixed(word) { run + word.len() } else { 0 };
            (word.len() >= 20 && mixed(word)) || run >= 20
        })
    }
}

/// A word that is a link without a scheme: `www.` at its start, or a dotted host name followed by `/` or `?`.
fn looks_like_link(word: &str) -> bool {
    let word = word.trim_matches(|character: char| matches!(character, '(' | ')' | '<' | '>' | '"' | '\'' | ','));
    if word.to_ascii_lowercase().starts_with("www.") {
        return true;
    }
    let Some(split) = word.find(['/', '?']) else { return false };
    let host = &word[..split];
    let labels: Vec<&str> = host.split('.').collect();
    labels.len() >= 2
        && labels
            .iter()
            .all(|label| !label.is_empty() && label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-'))
        && labels.last().is_some_and(|top| top.bytes().all(|byte| byte.is_ascii_alphabetic()))
}

/// The answer when a field holds something that looks like a code or token. Nothing was stored.
pub const SECRET_REFUSAL: &str = "Refused, and nothing was stored: a field looks like a verification code, link or \
     token. Codes are entered only at the verification page by the account owner; never ask a customer for one, and \
     never pass one on.";

const PROCESS: &str = "How account recovery works here, in plain words:\n\
1. You (the support assistant) can only ask for a recovery. You cannot verify anyone, approve anything, cancel, roll \
back, pause the system, or choose or add where messages go. Nobody in a chat can.\n\
2. If the account exists, its owner gets a message at a contact method that was already on the account before the \
request (never a new one). The message has a code and a link to the verification page. The owner enters the code \
there, and only there. Support never sees it, and a customer should never read it out or paste it into a chat.\n\
3. A policy decides what the proof allows. A change goes ahead only after a waiting period, during which every \
contact method on the account is told and can cancel it with one click. Unusual or high-risk requests go to people \
for review instead.\n\
4. Every change can be rolled back by operators, and every step is recorded.\n\
Tell the customer: check the messages at your existing email or phone and follow the link there. If you cannot \
reach any of them, say so; a person will look at it, and it will take longer. That is on purpose: it is what stops \
someone pretending to be you.";

#[derive(Clone)]
pub struct AirlockTools<L: EventLog + 'static> {
    backend: Arc<Backend<L>>,
    actor: Actor,
    tool_router: ToolRouter<Self>,
}

fn text(value: impl Into<String>) -> Vec<ContentBlock> {
    vec![ContentBlock::text(value)]
}

#[tool_router]
impl<L: EventLog + 'static> AirlockTools<L> {
    pub fn new(backend: Arc<Backend<L>>, requester: &str) -> Self {
        AirlockTools { backend, actor: Actor::new(Role::Intake, requester), tool_router: Self::tool_router() }
    }

    #[tool(description = "Ask for an account recovery on the customer's behalf. This only opens a request: the \
        account's owner must then prove it is them at a contact method already on the account, a policy decides, \
        and any change waits while the owner is told and can cancel. This tool cannot verify, approve, cancel, roll \
        back, pause, or choose or add where messages go, and it answers the same whether or not the account exists. \
        Never put a verification code, link or token in any field: such a request is refused.")]
    async fn request_account_recovery(&self, Parameters(request): Parameters<RecoveryRequest>) -> CallToolResult {
        let signals = &request.signals;
        let fields = [Some(&request.account), Some(&request.customer_summary), request.reference.as_ref()];
        let observed = [signals.source_network.as_ref(), signals.region.as_ref()];
        if fields.into_iter().chain(observed).flatten().any(|field| looks_secret(field)) {
            return CallToolResult::error(text(SECRET_REFUSAL));
        }
        let action = match request.action {
            AgentAction::ResetPassword => json!({ "type": "reset_password" }),
            AgentAction::RemoveAuthenticator => json!({ "type": "remove_totp" }),
        };
        let command_id = match &request.reference {
            Some(reference) => format!("mcp-{reference}"),
            None => new_id("mcp"),
        };
        let body = json!({
            "version": 1,
            "command_id": command_id,
            "account_id": request.account,
            "action": action,
            "summary": request.customer_summary,
            "signals": request.signals,
        });
        let reply = match self.send(CommandType::RequestRecovery, body).await {
            Ok(reply) => reply,
            Err(reason) => return CallToolResult::error(text(format!("airlock is unavailable: {reason}"))),
        };
        if reply["accepted"] != json!(true) {
            let code = reply["error"]["code"].as_str().unwrap_or("refused");
            if code == "secret_in_untrusted_field" {
                return CallToolResult::error(text(SECRET_REFUSAL));
            }
            let reason = reply["error"]["reason"].as_str().unwrap_or("refused");
            return CallToolResult::error(text(format!("Refused ({code}): {reason}")));
        }
        let answer = json!({
            "case_id": reply["case_id"],
            "status": "received",
            "message": intake::INTAKE_MESSAGE,
            "next_step": intake::query::next_step("pending"),
        });
        CallToolResult::success(text(answer.to_string()))
    }

    #[tool(description = "The public status of a recovery request this assistant opened (pending, completed, closed \
        or not_found) and what to tell the customer next. It shows no contact details and cannot change anything; \
        a request opened by anyone else reads as not_found.")]
    async fn get_recovery_status(&self, Parameters(request): Parameters<StatusRequest>) -> CallToolResult {
        if crate::core::text::check_identifier("case_id", &request.case_id).is_err() {
            return CallToolResult::error(text("Refused: not a case reference. Use the case_id the request returned."));
        }
        let payload = json!({ "case_id": request.case_id });
        let answer = match self.backend.as_ref() {
            Backend::Embedded { service, .. } => {
                intake::answered_no_sooner(intake::query::answer(service, &self.actor, payload.to_string().as_bytes()))
                    .await
            }
            Backend::Nats(client) => {
                let subject = intake::subjects::query(&intake::nats::IntakeConfig::default().prefix, &self.actor);
                let asked = client.request(subject, payload.to_string().into());
                match tokio::time::timeout(Duration::from_millis(ANSWER_WAIT_MS), asked).await {
                    Ok(Ok(message)) => serde_json::from_slice(&message.payload).unwrap_or(Value::Null),
                    Ok(Err(_)) | Err(_) => Value::Null,
                }
            }
        };
        match answer.get("status") {
            Some(_) => CallToolResult::success(text(answer.to_string())),
            None => CallToolResult::error(text("airlock is unavailable; try again in a minute")),
        }
    }

    #[tool(description = "Explains, in plain words for the customer, how account recovery works here and why: what \
        the assistant can and cannot do, where the code goes, the waiting period, review and rollback. Read-only.")]
    async fn explain_recovery_process(&self, Parameters(_): Parameters<ExplainRequest>) -> CallToolResult {
        CallToolResult::success(text(PROCESS))
    }

    /// Sends one command as the agent's intake actor and returns airlock's reply, the same on both backends.
    async fn send(&self, command: CommandType, body: Value) -> Result<Value, String> {
        let bytes = body.to_string().into_bytes();
        match self.backend.as_ref() {
            Backend::Embedded { service, notices: pending } => {
                let handled = with_deferred_notices(intake::handle_json(service, &self.actor, command, &bytes));
                let (reply, notices) = intake::answered_no_sooner(handled).await;
                pending.spawn(service.clone(), notices);
                Ok(serde_json::to_value(reply).expect("a reply serializes"))
            }
            Backend::Nats(client) => {
                intake::nats::send_command(client, &self.actor, command, bytes, Duration::from_millis(ANSWER_WAIT_MS))
                    .await
            }
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl<L: EventLog + 'static> ServerHandler for AirlockTools<L> {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("airlock", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "airlock's tools let a support assistant open an account-recovery request and follow it, nothing \
                 more. Proof happens only at the verification page, by the account's owner; never ask a customer \
                 for a code. Call explain_recovery_process to tell the customer what happens next.",
            )
    }
}

#[cfg(test)]
mod tests {
    use super::looks_secret;

    // Proves codes, links and tokens are caught in any field, and ordinary words and account names are not.
    #[test]
    fn codes_links_and_tokens_look_secret() {
        for secret in [
            "48213377",
            "my code is 482 133",
            "https://airlock.example/cancel?token=x",
            "ak_3f9a1c22b0de_9d8e7f",
            "token eyJhbGciOiJIUzI1NiJ9abc",
            "0f3c9a7d1e2b4c5d6e7f8a9b",
            // Issue 15, item 13: other spellings.
            "４８２１３３７７",
            "4821.3377",
            "go to airlock.example/verify?case=1",
            "www.evil.example",
            "evil.example?token=abc",
            "ab12cd34 ef56gh78 ij90kl12",
            "ab12-cd34-ef56-gh78-ij90",
            "ｈｔｔｐｓ：／／evil.example",
        ] {
            assert!(looks_secret(secret), "{secret:?}");
        }
        for plain in [
            "alice@example.com",
            "customer lost her phone in Lisbon",
            "user-42",
            "AS64500 residential",
            "born 1987-05-13, order 12345678",
            "she uses example.com and/or example.org",
            "ratio 3/4 of the time",
        ] {
            assert!(!looks_secret(plain), "{plain:?}");
        }
    }
}
