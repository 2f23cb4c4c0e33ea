//! Case events for the company's other systems (issue 20, item 2): each event of the log as one JSON document, in the
//! Standard Webhooks payload shape (`type`, `timestamp`, `data`), redacted for systems outside airlock. It carries
//! ids, kinds, states, times, decision outcomes and rule ids; never a code or its hash, a link or token, a full
//! address or phone number (a new destination only masked, an account's destinations only counted), a requester's
//! summary or signals, or a person's reason (free text that may hold anything).
//!
//! Who may read it: systems trusted like reviewers (a SIEM, a ticketing back end with its own access rules). It tells
//! which requests named existing accounts (a code went out, or not), which a support desk must never learn (THREATS
//! 8): a desk-facing view shows the requester's status (`intake::query::requester_status`), not these events.
//!
//! Delivery (ADR 27): `nats` publishes each document on a public subject of its own stream for the `integrator` keys
//! of `airlock nats-config`; `webhook` posts it, signed, to the company's endpoints; `feed` reads the log for both,
//! at least once, in log order, never losing an event to a crash.

pub mod feed;
pub mod nats;
pub mod webhook;

use crate::core::account::mask_address;
use crate::core::campaign::{AlertEvent, AlertEventBody};
use crate::core::event::{Authorization, DenialReason, Event, EventBody, ProofFailure, SecondFactor};
use crate::core::ids::CaseId;
use crate::core::state::Status;
use crate::log::envelope::{Decoded, Stream, decode};
use crate::log::{Entry, EventLog, LogError};
use crate::projection::views::rfc3339;
use serde_json::{Value, json};
use std::collections::HashMap;

/// One outward event: its id (stable: the same on every delivery of the same event), its type, and the document.
#[derive(Clone, Debug, PartialEq)]
pub struct Outward {
    /// `<log sequence>.<place in the commit>`, behind the log's identity once `Statuses::documents` built it
    /// (`<log>.<sequence>.<place>`): unique, and the same however often it is sent.
    pub id: String,
    /// The event's place in the log: its commit's global sequence and its place in the commit.
    pub position: (u64, usize),
    /// `case.<event kind>` or `alert.<event kind>`.
    pub event_type: String,
    pub case_id: Option<CaseId>,
    pub document: Value,
}

fn proof_failure(failed: ProofFailure) -> &'static str {
    match failed {
        ProofFailure::WrongCode | ProofFailure::NotRecorded => "wrong_code",
        ProofFailure::WrongSecondFactor => "wrong_second_factor",
        ProofFailure::SignedInAsAnother => "signed_in_as_another",
    }
}

/// The facts of one case event, redacted.
fn case_data(event: &Event) -> Value {
    match &event.body {
        EventBody::RecoveryRequested { account_id, action, intake_decision, deadline, snapshot, .. } => {
            let mut data = json!({
                "account_id": account_id.as_str(),
                "action": action.name(),
                "high_value": snapshot.is_high_value(),
                "intake": { "outcome": intake_decision.outcome.name(), "rules": intake_decision.rules,
                            "open_alerts": intake_decision.facts.open_alerts },
                "deadline": rfc3339(*deadline),
            });
            if let crate::core::action::RecoveryAction::AddDestination { kind, address } = action {
                data["new_destination"] = json!({ "kind": kind.name(), "masked": mask_address(*kind, address) });
            }
            data
        }
        // A code went out, or not: which is which tells whether the account exists (see the module's note).
        EventBody::ChallengeIssued { destinations, expires_at, .. } => {
            json!({ "destinations": destinations.len(), "expires_at": rfc3339(*expires_at) })
        }
        EventBody::ChallengeWithheld { .. } => json!({}),
        EventBody::ProofRejected { attempts_left, failed, .. } => {
            json!({ "failed": proof_failure(*failed), "attempts_left": attempts_left })
        }
        EventBody::ProofAccepted { destinations, .. } => json!({ "destinations": destinations.len() }),
        EventBody::SecondFactorProven { factor } => json!({ "factor": match factor {
            SecondFactor::Totp => "authenticator_app",
            SecondFactor::SignIn { .. } => "identity_provider_sign_in",
        } }),
        EventBody::ReviewRequired { decision, reason, deadline } => json!({
            "reason": reason.name(),
            "outcome": decision.outcome.name(),
            "rules": decision.rules,
            "reviewers_required": decision.reviewers_required,
            "deadline": rfc3339(*deadline),
        }),
        EventBody::ReviewApproved { reviewer, approvals, required, .. } => {
            json!({ "reviewer": reviewer.as_str(), "approvals": approvals, "required": required })
        }
        EventBody::CoolingOffStarted { ends_at, authorization, notify, .. } => json!({
            "ends_at": rfc3339(*ends_at),
            "authorized_by": match authorization {
                Authorization::Policy { .. } => json!("policy"),
                Authorization::Quorum { reviewers } => {
                    json!(reviewers.iter().map(|reviewer| reviewer.as_str()).collect::<Vec<_>>())
                }
            },
            "notified": notify.len(),
        }),
        EventBody::CaseDenied { reason } => match reason {
            DenialReason::AttemptsExhausted => json!({ "reason": "attempts_exhausted" }),
            DenialReason::Policy { rules } => json!({ "reason": "policy", "rules": rules }),
            DenialReason::Reviewer { reviewer, .. } => json!({ "reason": "reviewer", "reviewer": reviewer.as_str() }),
            DenialReason::ExecutionAttemptsExhausted => json!({ "reason": "execution_attempts_exhausted" }),
        },
        EventBody::CaseCancelled { .. } | EventBody::CaseExpired | EventBody::PasswordSet { .. } => json!({}),
        EventBody::ExecutionStarted { effect_id } => json!({ "effect_id": effect_id.as_str() }),
        EventBody::ExecutionConfirmed { effect_id, changes } => {
            json!({ "effect_id": effect_id.as_str(), "changes": changes.len() })
        }
        EventBody::ExecutionFailed { effect_id, deadline, .. } => {
            json!({ "effect_id": effect_id.as_str(), "deadline": rfc3339(*deadline) })
        }
        EventBody::RolledBack { effect_id, reversal, .. } => {
            json!({ "effect_id": effect_id.as_str(), "changes": reversal.len() })
        }
        EventBody::CommandRefused { command, rejection } => {
            json!({ "command": command.name(), "rejection": rejection.code() })
        }
        EventBody::NoticesDelivered { destinations, outstanding, .. } => {
            json!({ "destinations": destinations.len(), "outstanding": outstanding })
        }
    }
}

/// A case event as the company's other systems get it; `status_after` is the case's state after it.
pub fn case_event(
    (sequence, offset): (u64, usize),
    case_id: &CaseId,
    case_version: u64,
    event: &Event,
    status_after: Status,
) -> Outward {
    let kind = event.body.kind().name();
    let mut data = case_data(event);
    data["case_id"] = json!(case_id.as_str());
    data["case_version"] = json!(case_version);
    data["status"] = json!(status_after.name());
    data["actor"] = json!(event.actor.to_string());
    let event_type = format!("case.{kind}");
    Outward {
        id: format!("{sequence}.{offset}"),
        position: (sequence, offset),
        document: json!({ "type": event_type, "timestamp": rfc3339(event.at), "data": data }),
        event_type,
        case_id: Some(case_id.clone()),
    }
}

/// An event of the alerts stream as the company's other systems get it: the check, the indicator as written (an
/// address masked), the counts and the case ids.
pub fn alert_event((sequence, offset): (u64, usize), event: &AlertEvent) -> Outward {
    let data = match &event.body {
        AlertEventBody::AlertRaised {
            alert_id, check, shown, threshold, accounts, cases, first_at, last_at, ..
        } => {
            let shown = match check {
                crate::core::campaign::Check::Destination => {
                    mask_address(crate::core::account::DestinationKind::Email, shown)
                }
                _ => shown.clone(),
            };
            json!({
                "alert_id": alert_id, "check": check.name(), "indicator": shown, "accounts": accounts,
                "cases": cases, "first_at": rfc3339(*first_at), "last_at": rfc3339(*last_at),
                "accounts_min": threshold.accounts_min, "window_ms": threshold.window_ms,
            })
        }
        AlertEventBody::AlertCasesAdded { alert_id, accounts, cases, last_at } => {
            json!({ "alert_id": alert_id, "accounts": accounts, "cases": cases, "last_at": rfc3339(*last_at) })
        }
        AlertEventBody::AlertAcknowledged { alert_id, benign, .. } => {
            json!({ "alert_id": alert_id, "benign": benign, "by": event.actor.to_string() })
        }
    };
    let event_type = format!("alert.{}", event.body.type_name());
    Outward {
        id: format!("{sequence}.{offset}"),
        position: (sequence, offset),
        document: json!({ "type": event_type, "timestamp": rfc3339(event.at), "data": data }),
        event_type,
        case_id: None,
    }
}

/// How many cases' latest status `Statuses` remembers; past it, it starts afresh (a case it forgot is read again).
const STATUSES_KEPT_MAX: usize = 10_000;

/// The status of the cases seen lately, so that a document can say a case's state after its event without reading
/// the case again: the case stream is read only when the event before this one was not seen here (another process
/// took it, or this one started since).
#[derive(Default)]
pub struct Statuses {
    known: HashMap<CaseId, (u64, Status)>,
    /// The log's identity (`log_identity`), read once.
    log_id: Option<String>,
}

/// A log's identity: the start of the SHA-256 of its first commit. A document's id starts with it, so that a new log
/// (a data directory started afresh, a stream recreated) never reuses the ids of an old one, which a receiver that
/// deduplicates would drop.
async fn log_identity<L: EventLog>(log: &L) -> Result<String, LogError> {
    use sha2::{Digest, Sha256};
    let first = log.read_after(0, 1).await?;
    let first = first.first().ok_or_else(|| LogError::Unavailable("the log has no commit yet".into()))?;
    Ok(hex::encode(Sha256::digest(crate::log::encode_commit(&first.envelopes)))[..12].to_string())
}

impl Statuses {
    /// The documents of one commit of the log, in order: one per case or alert event (the kill switch's events stay
    /// inside airlock). A commit that does not decode is an error: the log is the authority, and it is corrupt.
    pub async fn documents<L: EventLog>(&mut self, log: &L, entry: &Entry) -> Result<Vec<Outward>, LogError> {
        let log_id = match &self.log_id {
            Some(log_id) => log_id.clone(),
            None => self.log_id.insert(log_identity(log).await?).clone(),
        };
        let mut documents = Vec::with_capacity(entry.envelopes.len());
        for (offset, bytes) in entry.envelopes.iter().enumerate() {
            let position = (entry.sequence, offset);
            match decode(bytes).map_err(|error| LogError::Corrupt(format!("commit {}: {error}", entry.sequence)))? {
                Decoded::Case { case_id, stream_version, event } => {
                    let before = match self.known.get(&case_id) {
                        _ if stream_version <= 1 => Status::New,
                        Some((version, status)) if version + 1 == stream_version => *status,
                        _ => status_at(log, &case_id, stream_version - 1).await?,
                    };
                    let kind = event.body.kind();
                    let after = crate::core::transition::target(before, kind).ok_or_else(|| {
                        LogError::Corrupt(format!("case {case_id}: {} is not allowed from {before}", kind.name()))
                    })?;
                    if self.known.len() >= STATUSES_KEPT_MAX && !self.known.contains_key(&case_id) {
                        self.known.clear();
                    }
                    self.known.insert(case_id.clone(), (stream_version, after));
                    documents.push(case_event(position, &case_id, stream_version, &event, after));
                }
                Decoded::Alert { event, .. } => documents.push(alert_event(position, &event)),
                Decoded::Control { .. } => {}
            }
        }
        for document in &mut documents {
            document.id = format!("{log_id}.{}", document.id);
        }
        Ok(documents)
    }
}

/// A case's status after its first `version` events, read from the log.
async fn status_at<L: EventLog>(log: &L, case_id: &CaseId, version: u64) -> Result<Status, LogError> {
    let mut status = Status::New;
    let mut seen = 0;
    for entry in log.read_stream_fast(&Stream::Case(case_id.clone())).await? {
        for bytes in &entry.envelopes {
            let Ok(Decoded::Case { event, .. }) = decode(bytes) else {
                return Err(LogError::Corrupt(format!("case {case_id}: an event that does not decode")));
            };
            if seen == version {
                return Ok(status);
            }
            let kind = event.body.kind();
            status = crate::core::transition::target(status, kind).ok_or_else(|| {
                LogError::Corrupt(format!("case {case_id}: {} is not allowed from {status}", kind.name()))
            })?;
            seen += 1;
        }
    }
    if seen == version {
        Ok(status)
    } else {
        // A fast read from a replica that lags: the caller tries the commit again.
        Err(LogError::Unavailable(format!("case {case_id} has {seen} events here, {version} expected")))
    }
}
