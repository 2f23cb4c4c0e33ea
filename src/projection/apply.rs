//! How each event changes the projection's rows. One function per concern; all run inside the caller's transaction.

use crate::core::account::AccountSnapshot;
use crate::core::control::{ControlEvent, ControlEventBody};
use crate::core::event::{Authorization, Event, EventBody};
use crate::core::ids::{CaseId, UnixMs};
use crate::core::state::Status;
use crate::core::transition;
use crate::log::Entry;
use crate::log::envelope::{Decoded, decode};
use crate::projection::ProjectionError;
use crate::projection::receipts::{GENESIS_HASH, ReceiptBody, canonical, chain_hash};
use rusqlite::{OptionalExtension, Transaction, params};
use std::collections::BTreeMap;

/// Runs one statement through the connection's statement cache: the projection runs the same few statements for
/// every event, and preparing them each time was most of the cost of a replay.
fn query_row<T>(
    transaction: &Transaction,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    transaction.prepare_cached(sql)?.query_row(params, map)
}

fn exec(transaction: &Transaction, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    transaction.prepare_cached(sql)?.execute(params)
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes to JSON")
}

/// The status of each case touched in the current batch, so that a case's later events in the batch need not read it
/// back from the table.
pub(super) type Statuses = std::collections::HashMap<String, Status>;

/// Applies every event of one commit.
pub(super) fn entry(transaction: &Transaction, statuses: &mut Statuses, entry: &Entry) -> Result<(), ProjectionError> {
    let corrupt = |reason: String| ProjectionError::Corrupt { sequence: entry.sequence, reason };
    for bytes in &entry.envelopes {
        match decode(bytes).map_err(|error| corrupt(error.to_string()))? {
            Decoded::Case { case_id, stream_version, event } => {
                case_event(transaction, statuses, entry.sequence, &case_id, stream_version, &event)?
            }
            Decoded::Control { stream_version, event } => control_event(transaction, stream_version, &event)?,
        }
    }
    Ok(())
}

fn control_event(transaction: &Transaction, stream_version: u64, event: &ControlEvent) -> Result<(), ProjectionError> {
    let (halted, reason) = match &event.body {
        ControlEventBody::AutomationHalted { reason } => (true, reason),
        ControlEventBody::AutomationResumed { reason } => (false, reason),
    };
    exec(
        transaction,
        "UPDATE control SET halted = ?1, reason = ?2, changed_at = ?3, version = ?4",
        params![halted, reason.as_untrusted_str(), event.at.0 as i64, stream_version as i64],
    )?;
    Ok(())
}

fn current_status(transaction: &Transaction, case_id: &CaseId) -> Result<Status, ProjectionError> {
    let name: Option<String> =
        query_row(transaction, "SELECT status FROM cases WHERE case_id = ?1", [case_id.as_str()], |row| row.get(0))
            .optional()?;
    Ok(name.as_deref().and_then(Status::from_name).unwrap_or(Status::New))
}

fn case_event(
    transaction: &Transaction,
    statuses: &mut Statuses,
    sequence: u64,
    case_id: &CaseId,
    stream_version: u64,
    event: &Event,
) -> Result<(), ProjectionError> {
    // An opening event can only follow "none" (a second one for the same case fails the insert, as corruption), so
    // only later events need the current status, from this batch or from the table.
    let from = match (statuses.get(case_id.as_str()), &event.body) {
        (Some(status), _) => *status,
        (None, EventBody::RecoveryRequested { .. }) => Status::New,
        (None, _) => current_status(transaction, case_id)?,
    };
    let kind = event.body.kind();
    let to = transition::target(from, kind).ok_or_else(|| ProjectionError::Corrupt {
        sequence,
        reason: format!("{} is not allowed from {from}", kind.name()),
    })?;
    let detail = if let EventBody::RecoveryRequested { .. } = &event.body {
        // The opening event creates the row with its status, decision and event count in one statement.
        insert_case(transaction, case_id, event, to)?;
        update_case(transaction, sequence, case_id, event)?
    } else {
        let detail = update_case(transaction, sequence, case_id, event)?;
        exec(
            transaction,
            "UPDATE cases SET status = ?2, updated_at = ?3, events = events + 1 WHERE case_id = ?1",
            params![case_id.as_str(), to.name(), event.at.0 as i64],
        )?;
        detail
    };
    statuses.insert(case_id.to_string(), to);
    exec(
        transaction,
        "INSERT INTO timeline (case_id, case_sequence, log_sequence, at, actor, event_type, status_after, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            case_id.as_str(),
            stream_version as i64,
            sequence as i64,
            event.at.0 as i64,
            event.actor.to_string(),
            kind.name(),
            to.name(),
            detail
        ],
    )?;
    if to != from && (to.is_terminal() || to == Status::CoolingOff || to == Status::Executing) {
        exec(transaction, "DELETE FROM review_queue WHERE case_id = ?1", [case_id.as_str()])?;
    }
    Ok(())
}

fn masked_destinations(snapshot: &AccountSnapshot) -> BTreeMap<String, String> {
    snapshot.destinations.iter().map(|destination| (destination.id.to_string(), destination.masked())).collect()
}

fn insert_case(
    transaction: &Transaction,
    case_id: &CaseId,
    event: &Event,
    status: Status,
) -> Result<(), ProjectionError> {
    let EventBody::RecoveryRequested {
        account_id,
        action,
        action_hash,
        summary,
        signals,
        snapshot,
        deadline,
        intake_decision,
        ..
    } = &event.body
    else {
        unreachable!("insert_case is called for RecoveryRequested");
    };
    let new_destination = match action {
        crate::core::action::RecoveryAction::AddDestination { address, .. } => Some(address.clone()),
        crate::core::action::RecoveryAction::ResetPassword | crate::core::action::RecoveryAction::RemoveTotp => None,
    };
    exec(
        transaction,
        "INSERT INTO cases (case_id, account_id, action, action_description, action_hash, status, requester, summary,
             signals, source_network, new_destination, high_value, destinations, requested_at, updated_at, deadline,
             decision, events)
         VALUES (?1, ?2, ?3, ?4, ?5, ?15, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?14, ?16, 1)",
        params![
            case_id.as_str(),
            account_id.as_str(),
            json(action),
            action.describe(),
            action_hash.0,
            event.actor.to_string(),
            summary.as_untrusted_str(),
            json(signals),
            signals.source_network,
            new_destination,
            snapshot.is_high_value(),
            json(&masked_destinations(snapshot)),
            event.at.0 as i64,
            deadline.0 as i64,
            status.name(),
            json(intake_decision)
        ],
    )?;
    exec(
        transaction,
        "INSERT INTO requests (case_id, account_id, source_network, requester, new_destination, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            case_id.as_str(),
            account_id.as_str(),
            signals.source_network,
            event.actor.to_string(),
            new_destination,
            event.at.0 as i64
        ],
    )?;
    Ok(())
}

fn masked_list(
    transaction: &Transaction,
    case_id: &CaseId,
    ids: &[crate::core::ids::DestinationId],
) -> Result<String, ProjectionError> {
    let text: String =
        query_row(transaction, "SELECT destinations FROM cases WHERE case_id = ?1", [case_id.as_str()], |row| {
            row.get(0)
        })?;
    let map: BTreeMap<String, String> = serde_json::from_str(&text).unwrap_or_default();
    let shown: Vec<String> =
        ids.iter().map(|id| map.get(id.as_str()).cloned().unwrap_or_else(|| id.to_string())).collect();
    Ok(shown.join(", "))
}

/// Updates the case row for one event and returns the timeline's one-line detail. No detail ever holds a code, a
/// code hash, or a full address.
fn update_case(
    transaction: &Transaction,
    sequence: u64,
    case_id: &CaseId,
    event: &Event,
) -> Result<String, ProjectionError> {
    let id = case_id.as_str();
    let at = event.at.0 as i64;
    let detail = match &event.body {
        EventBody::RecoveryRequested { action, signals, intake_decision, .. } => {
            let proxy = if signals.via_proxy { ", via proxy" } else { "" };
            format!(
                "asked to {}{proxy}; intake policy {:?} ({})",
                action.describe(),
                intake_decision.outcome,
                intake_decision.rules.join(", ")
            )
        }
        EventBody::ChallengeIssued { destinations, expires_at, .. } => {
            exec(
                transaction,
                "UPDATE cases SET challenge_expires_at = ?2 WHERE case_id = ?1",
                params![id, expires_at.0 as i64],
            )?;
            format!(
                "one-time code sent to {} (valid until {expires_at})",
                masked_list(transaction, case_id, destinations)?
            )
        }
        EventBody::ChallengeWithheld { reason } => format!("no code sent: {reason:?}"),
        EventBody::ProofRejected { attempts_left, .. } => {
            let account: String =
                query_row(transaction, "SELECT account_id FROM cases WHERE case_id = ?1", [id], |row| row.get(0))?;
            exec(
                transaction,
                "INSERT INTO proof_failures (account_id, case_id, at) VALUES (?1, ?2, ?3)",
                params![account, id, at],
            )?;
            format!("wrong code; {attempts_left} attempts left for this account")
        }
        EventBody::ProofAccepted { destinations, .. } => {
            exec(
                transaction,
                "UPDATE cases SET verified_by = ?2, challenge_expires_at = NULL WHERE case_id = ?1",
                params![id, json(destinations)],
            )?;
            format!("code proven from {}", masked_list(transaction, case_id, destinations)?)
        }
        EventBody::ReviewRequired { decision, reason, deadline } => {
            let account = account_of(transaction, case_id)?;
            let required = reviewers_required(transaction, case_id, Some(decision))?;
            exec(
                transaction,
                "UPDATE cases SET decision = ?2, deadline = ?3, approvers = '[]', challenge_expires_at = NULL WHERE case_id = ?1",
                params![id, json(decision), deadline.0 as i64],
            )?;
            enqueue_review(transaction, case_id, &account, &format!("{reason:?}"), at, required)?;
            format!("needs review ({reason:?}) by {required} reviewer(s); rules: {}", decision.rules.join(", "))
        }
        EventBody::ReviewApproved { reviewer, approvals, required, .. } => {
            let approvers: String =
                query_row(transaction, "SELECT approvers FROM cases WHERE case_id = ?1", [id], |row| row.get(0))?;
            let mut list: Vec<String> = serde_json::from_str(&approvers).unwrap_or_default();
            list.push(reviewer.to_string());
            exec(transaction, "UPDATE cases SET approvers = ?2 WHERE case_id = ?1", params![id, json(&list)])?;
            exec(
                transaction,
                "UPDATE review_queue SET approvals = ?2 WHERE case_id = ?1",
                params![id, *approvals as i64],
            )?;
            format!("approved by {reviewer} ({approvals} of {required})")
        }
        EventBody::CoolingOffStarted { ends_at, deadline, notify, authorization } => {
            let (kind, decision) = match authorization {
                Authorization::Policy { decision } => ("policy", Some(json(decision))),
                Authorization::Quorum { .. } => ("quorum", None),
            };
            exec(
                transaction,
                "UPDATE cases SET cooling_off_ends_at = ?2, deadline = ?3, notified = ?4, authorization = ?5,
                     decision = COALESCE(?6, decision) WHERE case_id = ?1",
                params![id, ends_at.0 as i64, deadline.0 as i64, json(notify), kind, decision],
            )?;
            format!(
                "authorized by {kind}; waits until {ends_at}; cancel links sent to {}",
                masked_list(transaction, case_id, notify)?
            )
        }
        EventBody::CaseDenied { reason } => {
            exec(
                transaction,
                "UPDATE cases SET deadline = NULL, challenge_expires_at = NULL WHERE case_id = ?1",
                [id],
            )?;
            format!("denied: {}", denial_text(reason))
        }
        EventBody::CaseCancelled { reason } => {
            exec(transaction, "UPDATE cases SET deadline = NULL WHERE case_id = ?1", [id])?;
            format!("cancelled: {}", reason.escaped())
        }
        EventBody::ExecutionStarted { effect_id } => {
            exec(
                transaction,
                "UPDATE cases SET effect_id = ?2, deadline = NULL WHERE case_id = ?1",
                params![id, effect_id.as_str()],
            )?;
            format!("executing effect {effect_id}")
        }
        EventBody::ExecutionConfirmed { changes, .. } => {
            exec(
                transaction,
                "UPDATE cases SET changes = ?2, executed_at = ?3 WHERE case_id = ?1",
                params![id, json(changes), at],
            )?;
            insert_receipt(
                transaction,
                case_id,
                "executed",
                event,
                &change_lines(changes),
                "available: airlock rollback",
            )?;
            format!("executed: {}", change_lines(changes).join("; "))
        }
        EventBody::ExecutionFailed { reason, deadline, .. } => {
            let account = account_of(transaction, case_id)?;
            let required = reviewers_required(transaction, case_id, None)?;
            exec(
                transaction,
                "UPDATE cases SET deadline = ?2, approvers = '[]' WHERE case_id = ?1",
                params![id, deadline.0 as i64],
            )?;
            enqueue_review(transaction, case_id, &account, "ExecutionFailed", at, required)?;
            format!("execution failed: {reason}")
        }
        EventBody::RolledBack { reason, reversal, .. } => {
            let lines = change_lines(reversal);
            insert_receipt(transaction, case_id, "rolled_back", event, &lines, "done")?;
            format!("rolled back ({}): {}", reason.escaped(), lines.join("; "))
        }
        EventBody::CaseExpired => {
            exec(
                transaction,
                "UPDATE cases SET deadline = NULL, challenge_expires_at = NULL WHERE case_id = ?1",
                [id],
            )?;
            "expired: time limit passed".to_string()
        }
        EventBody::CommandRefused { command, rejection } => {
            format!("refused {} from {}: {rejection}", command.name(), event.actor)
        }
        EventBody::SecondFactorProven { factor } => {
            let name = match factor {
                crate::core::event::SecondFactor::Totp => "totp",
            };
            exec(transaction, "UPDATE cases SET second_factor = ?2 WHERE case_id = ?1", params![id, name])?;
            "authenticator app code proven as well".to_string()
        }
    };
    let _ = sequence;
    Ok(detail)
}

fn account_of(transaction: &Transaction, case_id: &CaseId) -> Result<String, ProjectionError> {
    Ok(query_row(transaction, "SELECT account_id FROM cases WHERE case_id = ?1", [case_id.as_str()], |row| row.get(0))?)
}

/// The quorum the core requires for this case: the decision's, with the high-value floor from the case's snapshot.
/// Without a new decision, the case's latest recorded one applies (as in the core's `evolve`).
fn reviewers_required(
    transaction: &Transaction,
    case_id: &CaseId,
    decision: Option<&crate::core::policy::PolicyDecision>,
) -> Result<u8, ProjectionError> {
    let (high_value, recorded): (bool, Option<String>) = query_row(
        transaction,
        "SELECT high_value, decision FROM cases WHERE case_id = ?1",
        [case_id.as_str()],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let recorded = recorded.and_then(|text| serde_json::from_str::<crate::core::policy::PolicyDecision>(&text).ok());
    Ok(decision.or(recorded.as_ref()).map_or(1, |decision| decision.effective_reviewers_required(high_value)))
}

fn enqueue_review(
    transaction: &Transaction,
    case_id: &CaseId,
    account: &str,
    reason: &str,
    at: i64,
    required: u8,
) -> Result<(), ProjectionError> {
    exec(
        transaction,
        "INSERT OR REPLACE INTO review_queue (case_id, account_id, reason, entered_at, reviewers_required, approvals)
         VALUES (?1, ?2, ?3, ?4, ?5, 0)",
        params![case_id.as_str(), account, reason, at, required],
    )?;
    Ok(())
}

fn denial_text(reason: &crate::core::event::DenialReason) -> String {
    match reason {
        crate::core::event::DenialReason::AttemptsExhausted => "too many wrong codes for this account".to_string(),
        crate::core::event::DenialReason::Policy { rules } => format!("policy ({})", rules.join(", ")),
        crate::core::event::DenialReason::ExecutionAttemptsExhausted => {
            "the change failed to apply too many times".to_string()
        }
        crate::core::event::DenialReason::Reviewer { reviewer, reason } => {
            format!("by {reviewer}: {}", reason.escaped())
        }
    }
}

fn change_lines(changes: &[crate::core::command::Change]) -> Vec<String> {
    let show = |value: &Option<String>| value.clone().unwrap_or_else(|| "(none)".to_string());
    changes.iter().map(|change| format!("{}: {} -> {}", change.record, show(&change.old), show(&change.new))).collect()
}

fn insert_receipt(
    transaction: &Transaction,
    case_id: &CaseId,
    kind: &str,
    event: &Event,
    changes: &[String],
    rollback: &str,
) -> Result<(), ProjectionError> {
    let body = query_row(
        transaction,
        "SELECT account_id, requester, action_description, action_hash, verified_by, decision, summary, action,
                approvers, requested_at, notified, authorization, destinations, second_factor
         FROM cases WHERE case_id = ?1",
        [case_id.as_str()],
        |row| {
            let masked: BTreeMap<String, String> = serde_json::from_str(&row.get::<_, String>(12)?).unwrap_or_default();
            let show = |ids: Vec<String>| -> Vec<String> {
                ids.iter().map(|id| masked.get(id).cloned().unwrap_or_else(|| id.clone())).collect()
            };
            let verified: Vec<String> = serde_json::from_str(&row.get::<_, String>(4)?).unwrap_or_default();
            let authorization: Option<String> = row.get(11)?;
            let decision: Option<String> = row.get(5)?;
            let policy = decision
                .and_then(|text| serde_json::from_str::<crate::core::policy::PolicyDecision>(&text).ok())
                .map(|decision| {
                    format!("{} {:?}: {}", decision.policy_version, decision.outcome, decision.rules.join(", "))
                })
                .unwrap_or_default();
            let second_factor: Option<String> = row.get(13)?;
            let with_totp = if second_factor.as_deref() == Some("totp") { " and the authenticator app" } else { "" };
            let verification = match (verified.is_empty(), authorization.as_deref()) {
                (false, _) => format!("one-time code proven from {}{with_totp}", show(verified).join(", ")),
                (true, Some("quorum")) => "reviewer quorum (no factor proven)".to_string(),
                (true, _) => "none".to_string(),
            };
            Ok(ReceiptBody {
                case_id: case_id.to_string(),
                kind: kind.to_string(),
                account_id: row.get(0)?,
                requester: row.get(1)?,
                action: row.get(2)?,
                action_hash: row.get(3)?,
                changes: changes.to_vec(),
                verification,
                policy,
                conversation_summary: row.get(6)?,
                tool_call: format!("request_recovery(action = {})", row.get::<_, String>(7)?),
                approvers: serde_json::from_str(&row.get::<_, String>(8)?).unwrap_or_default(),
                requested_at: UnixMs(row.get::<_, i64>(9)? as u64).to_string(),
                recorded_at: event.at.to_string(),
                notifications: show(serde_json::from_str(&row.get::<_, String>(10)?).unwrap_or_default()),
                rollback: rollback.to_string(),
            })
        },
    )?;
    let previous_hash: String =
        query_row(transaction, "SELECT hash FROM receipts ORDER BY receipt_sequence DESC LIMIT 1", [], |row| {
            row.get(0)
        })
        .optional()?
        .unwrap_or_else(|| GENESIS_HASH.to_string());
    let text = canonical(&body);
    let hash = chain_hash(&previous_hash, &text);
    exec(
        transaction,
        "INSERT INTO receipts (case_id, kind, body, previous_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![case_id.as_str(), kind, text, previous_hash, hash],
    )?;
    Ok(())
}
