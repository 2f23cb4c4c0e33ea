//! Conversion at the edge: every wire field is checked here and becomes a core value, or the whole command is
//! refused with a `Rejection` a client can show. The core never sees an unchecked string. The sender's `Actor` is
//! not part of any conversion: it comes from the authenticated channel, and core commands do not carry it.

use crate::core::account::DestinationKind;
use crate::core::action::{ActionHash, RecoveryAction};
use crate::core::command::Command;
use crate::core::control::ControlCommand;
use crate::core::ids::{AccountId, CaseId, CommandId};
use crate::core::limits;
use crate::core::rejection::Rejection;
use crate::core::signals::Signals;
use crate::core::text::{UntrustedText, check_identifier, check_length};
use crate::core::verification::VerificationCode;
use crate::wire::COMMAND_VERSION_CURRENT;
use crate::wire::commands::{
    AcknowledgeAlertV1, ActionV1, CancelV1, DecisionV1, DestinationKindV1, HaltV1, RequestRecoveryV1, ResumeV1,
    ReviewDecisionV1, RollBackV1, SignalsV1, SubmitProofV1,
};
use crate::wire::secret::looks_like_code;
use std::fmt;

/// E.164: a country code and subscriber number of at most 15 digits; fewer than 7 is no real phone number.
const PHONE_DIGITS_MIN: usize = 7;
const PHONE_DIGITS_MAX: usize = 15;

/// An action hash is a hex-encoded SHA-256 digest (see `ActionHash::of`).
const ACTION_HASH_HEX_CHARS: usize = 64;

/// A case command ready for `Service::handle`: the case it targets (`None` for a new case, whose id airlock makes),
/// the idempotency key, and the command.
pub type CaseCommand = (Option<CaseId>, CommandId, Command);

/// A validated proof submission for `Service::submit_code`, which hashes the code. `Debug` is redacted and the code
/// is reachable only through `reveal_typed_code`, whose name says what it does.
#[derive(Clone, PartialEq, Eq)]
pub struct SubmittedProof {
    pub case_id: CaseId,
    pub command_id: CommandId,
    typed_code: String,
    typed_totp: Option<String>,
    step_up: Option<String>,
}

/// The longest sealed sign-in accepted (`crate::oidc::StepUp`, a few hundred bytes).
pub const STEP_UP_BYTES_MAX: usize = 1024;

impl SubmittedProof {
    /// The code as the owner typed it, for the one place that must see it: `Service::submit_code`.
    pub fn reveal_typed_code(&self) -> &str {
        &self.typed_code
    }

    /// The authenticator app's code, if the owner typed one, for the directory's check alone.
    pub fn reveal_typed_totp(&self) -> Option<&str> {
        self.typed_totp.as_deref()
    }

    /// The sealed sign-in, if the owner signed in at the identity provider, for the service to open.
    pub fn reveal_step_up(&self) -> Option<&str> {
        self.step_up.as_deref()
    }
}

impl fmt::Debug for SubmittedProof {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SubmittedProof")
            .field("case_id", &self.case_id)
            .field("command_id", &self.command_id)
            .field("typed_code", &"<redacted>")
            .field("typed_totp", &self.typed_totp.as_ref().map(|_| "<redacted>"))
            .field("step_up", &self.step_up.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl RequestRecoveryV1 {
    /// Validates the request and converts it. The case id is always `None`: airlock makes the id, so a sender can
    /// never aim a request at a case that already exists.
    pub fn to_core(&self) -> Result<CaseCommand, Rejection> {
        check_version(self.version)?;
        let command_id = CommandId::new(identifier("command_id", &self.command_id)?);
        let account_id = AccountId::new(identifier("account_id", &self.account_id)?);
        let action = self.action.to_core()?;
        let summary = untrusted_text("summary", &self.summary, limits::SUMMARY_BYTES_MAX)?;
        let signals = self.signals.to_core()?;
        Ok((None, command_id, Command::RequestRecovery { account_id, action, summary, signals }))
    }
}

impl ActionV1 {
    pub fn to_core(&self) -> Result<RecoveryAction, Rejection> {
        match self {
            ActionV1::ResetPassword {} => Ok(RecoveryAction::ResetPassword),
            ActionV1::RemoveTotp {} => Ok(RecoveryAction::RemoveTotp),
            ActionV1::AddDestination { kind, address } => {
                let field = "action.address";
                check_length(field, address, limits::ADDRESS_BYTES_MAX)?;
                let kind = match kind {
                    DestinationKindV1::Email => {
                        check_email(field, address)?;
                        DestinationKind::Email
                    }
                    DestinationKindV1::Phone => {
                        check_phone(field, address)?;
                        DestinationKind::Phone
                    }
                };
                Ok(RecoveryAction::AddDestination { kind, address: address.clone() })
            }
        }
    }
}

impl SignalsV1 {
    pub fn to_core(&self) -> Result<Signals, Rejection> {
        Ok(Signals {
            source_network: signal("signals.source_network", self.source_network.as_deref())?,
            region: signal("signals.region", self.region.as_deref())?,
            via_proxy: self.via_proxy,
            claims_urgency: self.claims_urgency,
            offered_knowledge_facts: self.offered_knowledge_facts,
        })
    }
}

impl SubmitProofV1 {
    /// Validates the ids and the shape of the code (not its value: only the service, holding the key, can check
    /// that). The code is not turned into a core command here because hashing it needs the case's challenge.
    pub fn to_core(&self) -> Result<SubmittedProof, Rejection> {
        check_version(self.version)?;
        let command_id = CommandId::new(identifier("command_id", &self.command_id)?);
        let case_id = CaseId::new(identifier("case_id", &self.case_id)?);
        if VerificationCode::parse(&self.code).is_none() {
            return Err(Rejection::InvalidValue {
                field: "code".to_string(),
                expected: format!("{} digits", limits::CODE_DIGITS),
            });
        }
        let typed_totp = match self.totp.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(typed) if typed.len() == limits::TOTP_DIGITS && typed.bytes().all(|byte| byte.is_ascii_digit()) => {
                Some(typed.to_string())
            }
            Some(_) => {
                return Err(Rejection::InvalidValue {
                    field: "totp".to_string(),
                    expected: format!("the {} digits your authenticator app shows", limits::TOTP_DIGITS),
                });
            }
        };
        let step_up = match self.step_up.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(_) if typed_totp.is_some() => {
                return Err(Rejection::InvalidValue {
                    field: "step_up".to_string(),
                    expected: "either an authenticator code (totp) or a sign-in (step_up), not both".to_string(),
                });
            }
            Some(sealed) if sealed.len() <= STEP_UP_BYTES_MAX && sealed.bytes().all(|byte| byte.is_ascii_graphic()) => {
                Some(sealed.to_string())
            }
            Some(_) => {
                return Err(Rejection::InvalidValue {
                    field: "step_up".to_string(),
                    expected: "the sign-in exactly as the page gave it".to_string(),
                });
            }
        };
        Ok(SubmittedProof { case_id, command_id, typed_code: self.code.clone(), typed_totp, step_up })
    }
}

impl ReviewDecisionV1 {
    /// Validates the decision. An approval without an action hash is refused: approving "whatever the case is now"
    /// is exactly the stale approval SPEC principle 6 forbids. A hash sent with a denial is checked, then ignored.
    pub fn to_core(&self) -> Result<CaseCommand, Rejection> {
        check_version(self.version)?;
        let command_id = CommandId::new(identifier("command_id", &self.command_id)?);
        let case_id = CaseId::new(identifier("case_id", &self.case_id)?);
        let action_hash = self.action_hash.as_deref().map(action_hash).transpose()?;
        let reason = reason(&self.reason)?;
        let command = match (self.decision, action_hash) {
            (DecisionV1::Approve, Some(action_hash)) => Command::ApproveReview { action_hash, reason },
            (DecisionV1::Approve, None) => {
                return Err(Rejection::InvalidValue {
                    field: "action_hash".to_string(),
                    expected: "the action hash from the evidence packet: an approval is bound to it".to_string(),
                });
            }
            (DecisionV1::Deny, _) => Command::DenyReview { reason },
        };
        Ok((Some(case_id), command_id, command))
    }
}

impl CancelV1 {
    pub fn to_core(&self) -> Result<CaseCommand, Rejection> {
        let (case_id, command_id, reason) = case_reason(self.version, &self.case_id, &self.command_id, &self.reason)?;
        Ok((Some(case_id), command_id, Command::Cancel { reason }))
    }
}

impl RollBackV1 {
    pub fn to_core(&self) -> Result<CaseCommand, Rejection> {
        let (case_id, command_id, reason) = case_reason(self.version, &self.case_id, &self.command_id, &self.reason)?;
        Ok((Some(case_id), command_id, Command::RollBack { reason }))
    }
}

impl HaltV1 {
    /// Converts to the kill-switch command and its idempotency key, for `Service::control`.
    pub fn to_core(&self) -> Result<(CommandId, ControlCommand), Rejection> {
        let (command_id, reason) = control_reason(self.version, &self.command_id, &self.reason)?;
        Ok((command_id, ControlCommand::Halt { reason }))
    }
}

impl AcknowledgeAlertV1 {
    /// Converts to its idempotency key, the alert id, the reason and whether it is benign.
    pub fn to_core(&self) -> Result<(CommandId, String, UntrustedText, bool), Rejection> {
        let (command_id, reason) = control_reason(self.version, &self.command_id, &self.reason)?;
        let alert_id = identifier("alert_id", &self.alert_id)?;
        Ok((command_id, alert_id, reason, self.benign))
    }
}

impl ResumeV1 {
    /// Converts to the kill-switch command and its idempotency key, for `Service::control`.
    pub fn to_core(&self) -> Result<(CommandId, ControlCommand), Rejection> {
        let (command_id, reason) = control_reason(self.version, &self.command_id, &self.reason)?;
        Ok((command_id, ControlCommand::Resume { reason }))
    }
}

/// `parse` already refuses other versions; this catches a struct built in code with the wrong one.
fn check_version(version: u16) -> Result<(), Rejection> {
    if version != COMMAND_VERSION_CURRENT {
        return Err(Rejection::InvalidValue {
            field: "version".to_string(),
            expected: COMMAND_VERSION_CURRENT.to_string(),
        });
    }
    Ok(())
}

fn identifier(field: &'static str, value: &str) -> Result<String, Rejection> {
    check_identifier(field, value)?;
    Ok(value.to_string())
}

/// Free text from outside: refused if it looks like it carries a code (checked first, so that the refusal says
/// why even when the text is also too long), then bounded.
fn untrusted_text(field: &'static str, value: &str, bytes_max: usize) -> Result<UntrustedText, Rejection> {
    if looks_like_code(value) {
        return Err(Rejection::SecretInUntrustedField { field: field.to_string() });
    }
    UntrustedText::new(field, value, bytes_max)
}

/// A person's reason for a decision, a cancel, a rollback or the kill switch: it goes on the receipt, so it must say
/// something (not only spaces), within the limit, and hold no code.
fn reason(value: &str) -> Result<UntrustedText, Rejection> {
    if value.trim().is_empty() {
        return Err(Rejection::InvalidValue {
            field: "reason".to_string(),
            expected: "why, in your own words: it goes on the receipt".to_string(),
        });
    }
    untrusted_text("reason", value, limits::REASON_BYTES_MAX)
}

fn signal(field: &'static str, value: Option<&str>) -> Result<Option<String>, Rejection> {
    let Some(value) = value else { return Ok(None) };
    if looks_like_code(value) {
        return Err(Rejection::SecretInUntrustedField { field: field.to_string() });
    }
    check_length(field, value, limits::SIGNAL_BYTES_MAX)?;
    Ok(Some(value.to_string()))
}

fn case_reason(
    version: u16,
    case_id: &str,
    command_id: &str,
    reason: &str,
) -> Result<(CaseId, CommandId, UntrustedText), Rejection> {
    check_version(version)?;
    let command_id = CommandId::new(identifier("command_id", command_id)?);
    let case_id = CaseId::new(identifier("case_id", case_id)?);
    let reason = self::reason(reason)?;
    Ok((case_id, command_id, reason))
}

fn control_reason(version: u16, command_id: &str, reason: &str) -> Result<(CommandId, UntrustedText), Rejection> {
    check_version(version)?;
    let command_id = CommandId::new(identifier("command_id", command_id)?);
    let reason = self::reason(reason)?;
    Ok((command_id, reason))
}

/// Exactly one `@` with text on both sides, and no whitespace or control characters (which could break a header
/// line when a notice is mailed). Deliverability is proven later, by the owner, not guessed here.
fn check_email(field: &'static str, address: &str) -> Result<(), Rejection> {
    let one_at = match address.split_once('@') {
        Some((local, domain)) => !local.is_empty() && !domain.is_empty() && !domain.contains('@'),
        None => false,
    };
    let printable = !address.chars().any(|character| character.is_whitespace() || character.is_control());
    if !(one_at && printable) {
        return Err(Rejection::InvalidValue {
            field: field.to_string(),
            expected: "an email address: one '@' with text on both sides, no spaces".to_string(),
        });
    }
    // The domain must be a host name whose labels each keep to one script: a look-alike mixing Latin and Cyrillic,
    // or a "domain" with a path or query in it, is no address anyone honest has (issue 15, items 10 and 12).
    if let Err(problem) = crate::core::address::canonical_email(address) {
        let expected = match problem {
            crate::core::address::AddressProblem::MixedScript(_) => {
                "an email address whose domain keeps to one script in each label (look-alike domains are refused)"
            }
            crate::core::address::AddressProblem::NotAnEmail | crate::core::address::AddressProblem::BadDomain => {
                "an email address whose domain is a host name (letters, digits, hyphens and dots)"
            }
        };
        return Err(Rejection::InvalidValue { field: field.to_string(), expected: expected.to_string() });
    }
    Ok(())
}

/// E.164 without formatting: `+` and 7 to 15 digits.
fn check_phone(field: &'static str, address: &str) -> Result<(), Rejection> {
    let digits = address.strip_prefix('+').unwrap_or("");
    let valid = (PHONE_DIGITS_MIN..=PHONE_DIGITS_MAX).contains(&digits.len())
        && digits.bytes().all(|byte| byte.is_ascii_digit());
    if !valid {
        return Err(Rejection::InvalidValue {
            field: field.to_string(),
            expected: format!("a phone number: '+' then {PHONE_DIGITS_MIN} to {PHONE_DIGITS_MAX} digits"),
        });
    }
    Ok(())
}

fn action_hash(value: &str) -> Result<ActionHash, Rejection> {
    let valid =
        value.len() == ACTION_HASH_HEX_CHARS && value.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
    if !valid {
        return Err(Rejection::InvalidValue {
            field: "action_hash".to_string(),
            expected: format!("{ACTION_HASH_HEX_CHARS} lowercase hexadecimal characters"),
        });
    }
    Ok(ActionHash(value.to_string()))
}
