//! The JSON shapes of version 1 of every command an outside system may send. They describe bytes, not decisions:
//! nothing here is trusted until `wire::convert` has checked it and turned it into a core value. Every `///` comment
//! on a field is copied by schemars into the published schema, so it is written for the sender.

use crate::core::limits;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Ask airlock to open a recovery case for one account. This is all an intake system (a support desk, an AI agent)
/// can do: the request is verified, authorized, held and executed by airlock, never by the conversation. airlock
/// chooses the new case's id and returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestRecoveryV1 {
    /// The shape of this command. It must be 1, so that a sender built for another version is refused instead of
    /// having its fields guessed at.
    #[schemars(extend("const" = 1))]
    pub version: u16,
    /// The sender's idempotency key: a retried publish with the same id opens one case, not two.
    #[schemars(length(min = 1, max = limits::ID_BYTES_MAX), pattern(r"^[A-Za-z0-9_.@+-]+$"))]
    pub command_id: String,
    /// The account to recover, as the account directory names it. The reply is the same whether or not the account
    /// exists, so this field cannot be used to probe for accounts.
    #[schemars(length(min = 1, max = limits::ID_BYTES_MAX), pattern(r"^[A-Za-z0-9_.@+-]+$"))]
    pub account_id: String,
    /// The one change asked for, from a closed list, so that nothing a conversation invents can ever be executed.
    pub action: ActionV1,
    /// The requester's summary of the conversation (at most 4096 bytes of UTF-8). Reviewers see it verbatim and
    /// receipts keep it, but no decision reads it. A run of six or more digits is refused: verification codes are
    /// entered only at the verification page, never pasted into a request.
    #[schemars(length(max = limits::SUMMARY_BYTES_MAX))]
    pub summary: String,
    /// What the sender's channel observed about the request. Signals can only add friction (a longer cooling-off,
    /// a review, a denial); they never replace proof.
    pub signals: SignalsV1,
}

// The fieldless actions are written `ResetPassword {}`, not `ResetPassword`: serde lets a unit variant of an
// internally tagged enum ignore extra fields even under `deny_unknown_fields`, and an empty struct variant does not.
/// The change a recovery case asks for, tagged by `type`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionV1 {
    /// Reset the password and end every session; the owner sets a new password from a pre-existing destination.
    ResetPassword {},
    /// Add a new recovery destination. It never receives a code, never counts as proof, and becomes usable only
    /// after its own cooling-off, so naming an attacker's address here cannot take over the account.
    AddDestination {
        /// Whether the address is an email address or a phone number, so it can be checked and masked correctly.
        kind: DestinationKindV1,
        /// The new address: an email address with exactly one `@` and text on both sides, or a phone number as
        /// `+` followed by 7 to 15 digits (E.164). At most 254 bytes.
        #[schemars(length(min = 1, max = limits::ADDRESS_BYTES_MAX))]
        address: String,
    },
    /// Remove the TOTP authenticator (a lost phone). A factor change, so it needs the account's strongest proof.
    RemoveTotp {},
}

/// The kind of a destination named in a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKindV1 {
    /// An email address.
    Email,
    /// A phone number that receives text messages.
    Phone,
}

/// What the sender's channel observed. Every field is optional and only ever raises risk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalsV1 {
    /// The source network as the channel saw it (an ASN, a /24, a proxy label), so bursts from one network can be
    /// noticed and rolled back together. At most 128 bytes; a run of six or more digits is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::SIGNAL_BYTES_MAX))]
    pub source_network: Option<String>,
    /// Where the request appears to come from, because attackers route through proxies near the victim's region.
    /// At most 128 bytes; a run of six or more digits is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::SIGNAL_BYTES_MAX))]
    pub region: Option<String>,
    /// Whether the channel saw an anonymising proxy, VPN or hosting network. Raises friction.
    #[serde(default)]
    pub via_proxy: bool,
    /// Whether the requester pushed for speed ("urgent", "travelling"). Pressure is a classic social-engineering
    /// move, so it raises friction.
    #[serde(default)]
    pub claims_urgency: bool,
    /// Whether the requester offered knowledge facts (birth date, address, card digits). They are never proof, and
    /// offering them raises friction.
    #[serde(default)]
    pub offered_knowledge_facts: bool,
}

/// The owner's answer to a challenge, sent by airlock's verification page and nowhere else. The code is hashed as
/// soon as it arrives and never stored, logged or echoed in an error.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitProofV1 {
    /// The shape of this command. It must be 1, so that a sender built for another version is refused instead of
    /// having its fields guessed at.
    #[schemars(extend("const" = 1))]
    pub version: u16,
    /// The page's idempotency key: a resubmitted form counts as one attempt, not two.
    #[schemars(length(min = 1, max = limits::ID_BYTES_MAX), pattern(r"^[A-Za-z0-9_.@+-]+$"))]
    pub command_id: String,
    /// The case whose challenge this answers; the code is checked only against that case's challenge.
    #[schemars(length(min = 1, max = limits::ID_BYTES_MAX), pattern(r"^[A-Za-z0-9_.@+-]+$"))]
    pub case_id: String,
    /// The code exactly as the owner typed it: 8 digits, spaces and dashes allowed between them. It is a string so
    /// that leading zeros survive.
    pub code: String,
    /// The 6 digits the account's authenticator app (TOTP) shows, when it has one. Changing the account's factors
    /// needs it; without it such a change goes to people.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub totp: Option<String>,
    /// What a sign-in at the company's identity provider proved, as airlock's page sealed it after the sign-in
    /// (`/oidc/start`), instead of `totp`: it counts as the account's second factor when the provider named the
    /// account. Never both.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub step_up: Option<String>,
}

impl fmt::Debug for SubmitProofV1 {
    /// Redacted, so that a stray `{:?}` in a log line or a panic message cannot leak a code (SPEC principle 2).
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SubmitProofV1")
            .field("version", &self.version)
            .field("command_id", &self.command_id)
            .field("case_id", &self.case_id)
            .field("code", &"<redacted>")
            .field("totp", &self.totp.as_ref().map(|_| "<redacted>"))
            .field("step_up", &self.step_up.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A reviewer's decision on a case in review. An approval is bound to the hash of the exact action the reviewer
/// was shown, so a stale or swapped approval is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend(
    "if" = { "properties": { "decision": { "const": "approve" } }, "required": ["decision"] },
    "then" = { "properties": { "action_hash": { "type": "string" } }, "required": ["action_hash"] }
))]
pub struct ReviewDecisionV1 {
    /// The shape of this command. It must be 1, so that a sender built for another version is refused instead of
    /// having its fields guessed at.
    #[schemars(extend("const" = 1))]
    pub version: u16,
    /// The console's idempotency key: a double-clicked approval counts once.
    #[schemars(length(min = 1, max = limits::ID_BYTES_MAX), pattern(r"^[A-Za-z0-9_.@+-]+$"))]
    pub command_id: String,
    /// The case being decided.
    #[schemars(length(min = 1, max = limits::ID_BYTES_MAX), pattern(r"^[A-Za-z0-9_.@+-]+$"))]
    pub case_id: String,
    /// Approve or deny the action (not the conversation).
    pub decision: DecisionV1,
    /// The action hash shown in the evidence packet (64 lowercase hex characters). Required to approve, so that an
    /// approval applies only to the action the reviewer actually saw; ignored when denying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9a-f]{64}$"))]
    pub action_hash: Option<String>,
    /// Why, in the reviewer's words, for the receipt and for the next reviewer. Required (not only spaces); at most
    /// 1024 bytes; a run of six or more digits is refused.
    #[schemars(length(min = 1, max = limits::REASON_BYTES_MAX))]
    pub reason: String,
}

/// A reviewer's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionV1 {
    /// Let the action proceed to cooling-off (once enough distinct reviewers have approved).
    Approve,
    /// Refuse the action; the case ends denied.
    Deny,
}

/// Stop a change that is cooling off, from the owner's cancel link or an operator's console.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelV1 {
    /// The shape of this command. It must be 1, so that a sender built for another version is refused instead of
    /// having its fields guessed at.
    #[schemars(extend("const" = 1))]
    pub version: u16,
    /// The sender's idempotency key: a cancel link clicked twice cancels once.
    #[schemars(length(min = 1, max = limits::ID_BYTES_MAX), pattern(r"^[A-Za-z0-9_.@+-]+$"))]
    pub command_id: String,
    /// The case to cancel.
    #[schemars(length(min = 1, max = limits::ID_BYTES_MAX), pattern(r"^[A-Za-z0-9_.@+-]+$"))]
    pub case_id: String,
    /// Why, for the receipt. Required (not only spaces); at most 1024 bytes; a run of six or more digits is refused.
    #[schemars(length(min = 1, max = limits::REASON_BYTES_MAX))]
    pub reason: String,
}

/// Undo an executed change (operators only): restore the previous destinations, remove added ones, end sessions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollBackV1 {
    /// The shape of this command. It must be 1, so that a sender built for another version is refused instead of
    /// having its fields guessed at.
    #[schemars(extend("const" = 1))]
    pub version: u16,
    /// The operator's idempotency key: a retried rollback is applied once.
    #[schemars(length(min = 1, max = limits::ID_BYTES_MAX), pattern(r"^[A-Za-z0-9_.@+-]+$"))]
    pub command_id: String,
    /// The executed case to roll back.
    #[schemars(length(min = 1, max = limits::ID_BYTES_MAX), pattern(r"^[A-Za-z0-9_.@+-]+$"))]
    pub case_id: String,
    /// Why, for the receipt and the incident record. Required; at most 1024 bytes; a run of six or more digits is
    /// refused.
    #[schemars(length(min = 1, max = limits::REASON_BYTES_MAX))]
    pub reason: String,
}

/// Pull the kill switch (operators only): all automated execution stops at once and cases wait in cooling-off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HaltV1 {
    /// The shape of this command. It must be 1, so that a sender built for another version is refused instead of
    /// having its fields guessed at.
    #[schemars(extend("const" = 1))]
    pub version: u16,
    /// The operator's idempotency key: a retried halt is recorded once.
    #[schemars(length(min = 1, max = limits::ID_BYTES_MAX), pattern(r"^[A-Za-z0-9_.@+-]+$"))]
    pub command_id: String,
    /// Why automation was halted, for the record. Required; at most 1024 bytes; a run of six or more digits is refused.
    #[schemars(length(min = 1, max = limits::REASON_BYTES_MAX))]
    pub reason: String,
}

/// Acknowledge a campaign alert (operators only, issue 20): recorded with who and why. A benign one (no campaign: a
/// desk's canned wording, a partner's network) stops sending matching requests to people; otherwise they keep going
/// to people while the alert is active.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgeAlertV1 {
    /// The shape of this command. It must be 1, so that a sender built for another version is refused instead of
    /// having its fields guessed at.
    #[schemars(extend("const" = 1))]
    pub version: u16,
    /// The operator's idempotency key: a retried acknowledgement is recorded once.
    #[schemars(length(min = 1, max = limits::ID_BYTES_MAX), pattern(r"^[A-Za-z0-9_.@+-]+$"))]
    pub command_id: String,
    /// The alert, as `airlock alerts list` shows it (`alert-...`).
    #[schemars(length(min = 1, max = limits::ID_BYTES_MAX), pattern(r"^[A-Za-z0-9_.@+-]+$"))]
    pub alert_id: String,
    /// What the operator found, for the record. Required; at most 1024 bytes; a run of six or more digits is refused.
    #[schemars(length(min = 1, max = limits::REASON_BYTES_MAX))]
    pub reason: String,
    /// Whether it is no campaign at all. Absent means false.
    #[serde(default)]
    pub benign: bool,
}

/// Release the kill switch (operators only). Resuming is explicit and recorded, never a timeout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeV1 {
    /// The shape of this command. It must be 1, so that a sender built for another version is refused instead of
    /// having its fields guessed at.
    #[schemars(extend("const" = 1))]
    pub version: u16,
    /// The operator's idempotency key: a retried resume is recorded once.
    #[schemars(length(min = 1, max = limits::ID_BYTES_MAX), pattern(r"^[A-Za-z0-9_.@+-]+$"))]
    pub command_id: String,
    /// Why automation may run again, for the record. Required; at most 1024 bytes; a run of six or more digits is
    /// refused.
    #[schemars(length(min = 1, max = limits::REASON_BYTES_MAX))]
    pub reason: String,
}
