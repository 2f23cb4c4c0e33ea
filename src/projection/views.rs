//! What the read commands show, built from the projection alone, so that the command line (from a data directory)
//! and the query service of `airlock serve` (over NATS, issue 17) give one and the same answer: a case now
//! (`case show`), cases by filter (`case list`), the review queue (`review list`). Each type serialises to the JSON the
//! commands print and reads back from it.

use crate::core::actor::Role;
use crate::core::command::CommandKind;
use crate::core::ids::{CaseId, UnixMs};
use crate::core::state::Status;
use crate::projection::query::{CaseFilter, CaseRow};
use crate::projection::receipts::Receipt;
use crate::projection::{Projection, ProjectionError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A moment as RFC 3339 in UTC, to the second.
pub fn rfc3339(at: UnixMs) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(at.0)).to_string()
}

/// The people's commands, in the order `case show` lists them. The timers and the executor's reports are shown as
/// timers, not steps; the kill switch acts on no case.
const STEPS: [CommandKind; 6] = [
    CommandKind::SubmitProof,
    CommandKind::ApproveReview,
    CommandKind::DenyReview,
    CommandKind::Cancel,
    CommandKind::RollBack,
    CommandKind::ConfirmExecution,
];

/// A step someone may take next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub role: String,
    pub command: String,
    /// How, in words or as the command line to use.
    pub how: String,
}

/// A timer that will move the case if nobody does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timer {
    /// `expires` (the case ends, nothing changes) or `executes` (the change is applied).
    pub kind: String,
    pub at: String,
    /// Milliseconds from now (0 when already due: the next timer pass acts).
    pub in_ms: u64,
    /// The kill switch is on: nothing executes until an operator resumes.
    pub held_by_kill_switch: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseView {
    pub case_id: String,
    pub account_id: String,
    pub status: String,
    pub terminal: bool,
    pub action: String,
    pub action_hash: String,
    pub requester: String,
    pub high_value: bool,
    pub requested_at: String,
    pub updated_at: String,
    pub events: u64,
    pub approvers: Vec<String>,
    pub timers: Vec<Timer>,
    pub next_steps: Vec<Step>,
    /// Since when the case has owed its owner a notice not yet delivered (ADR 10), if it does.
    pub notices_owed_since: Option<String>,
    pub receipts: Vec<Receipt>,
}

fn how(kind: CommandKind, role: Role, case_id: &str, action_hash: &str) -> String {
    match (kind, role) {
        (CommandKind::SubmitProof, _) => {
            "enters the code sent to a pre-existing destination at the verification page".to_string()
        }
        (CommandKind::ApproveReview, _) => {
            format!("airlock review approve {case_id} --action-hash {action_hash} --reviewer ID --reason TEXT")
        }
        (CommandKind::DenyReview, _) => format!("airlock review deny {case_id} --reviewer ID --reason TEXT"),
        (CommandKind::Cancel, Role::Owner) => "follows the cancel link sent to a pre-existing destination".to_string(),
        (CommandKind::Cancel, _) => format!("airlock cancel {case_id} --reason TEXT"),
        (CommandKind::RollBack, _) => format!("airlock rollback {case_id} --reason TEXT"),
        (CommandKind::ConfirmExecution, _) => "airlock's executor reports the change it applied".to_string(),
        (
            CommandKind::RequestRecovery
            | CommandKind::Tick
            | CommandKind::Halt
            | CommandKind::Resume
            | CommandKind::ConfirmNotices
            | CommandKind::SetPassword
            | CommandKind::AttestBaseline
            | CommandKind::AcknowledgeAlert,
            _,
        ) => String::new(),
    }
}

fn timers(row: &CaseRow, status: Status, halted: bool, now: UnixMs) -> Vec<Timer> {
    let timer = |kind: &str, at: UnixMs, held| Timer {
        kind: kind.to_string(),
        at: rfc3339(at),
        in_ms: at.0.saturating_sub(now.0),
        held_by_kill_switch: held,
    };
    let mut timers = Vec::new();
    if status == Status::CoolingOff
        && let Some(ends_at) = row.cooling_off_ends_at
    {
        timers.push(timer("executes", ends_at, halted));
    }
    if CommandKind::Tick.accepted_in().contains(&status)
        && let Some(deadline) = row.deadline
    {
        timers.push(timer("expires", deadline, false));
    }
    timers
}

/// One case now, as `case show` and the `case` read over NATS give it; `None` for a case the projection lacks.
pub fn case_view(projection: &Projection, case_id: &CaseId, now: UnixMs) -> Result<Option<CaseView>, String> {
    let failed = |error: crate::projection::ProjectionError| error.to_string();
    let Some(row) = projection.case(case_id).map_err(failed)? else { return Ok(None) };
    let status = row.status;
    let halted = projection.halted().map_err(failed)?;
    let next_steps = STEPS
        .into_iter()
        .filter(|kind| kind.accepted_in().contains(&status))
        .flat_map(|kind| kind.allowed_roles().iter().map(move |role| (kind, *role)))
        .map(|(kind, role)| Step {
            role: role.name().to_string(),
            command: kind.name().to_string(),
            how: how(kind, role, &row.case_id, &row.action_hash),
        })
        .collect();
    Ok(Some(CaseView {
        timers: timers(&row, status, halted, now),
        next_steps,
        notices_owed_since: projection.notices_owed_since(case_id).map_err(failed)?.map(rfc3339),
        receipts: projection.receipts(Some(case_id)).map_err(failed)?,
        approvers: serde_json::from_str(&row.approvers).unwrap_or_default(),
        terminal: status.is_terminal(),
        case_id: row.case_id,
        account_id: row.account_id,
        status: status.name().to_string(),
        action: row.action,
        action_hash: row.action_hash,
        requester: row.requester,
        high_value: row.high_value,
        requested_at: rfc3339(row.requested_at),
        updated_at: rfc3339(row.updated_at),
        events: row.events,
    }))
}

/// One case as `case list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedCase {
    pub case_id: String,
    pub account_id: String,
    pub status: String,
    pub action: String,
    pub requester: String,
    pub requested_at: String,
    pub updated_at: String,
}

/// The cases matching `filter`, newest first, and whether more match than its limit.
pub fn case_list(projection: &Projection, filter: &CaseFilter) -> Result<(Vec<ListedCase>, bool), ProjectionError> {
    let (rows, more) = projection.cases(filter)?;
    let listed = rows
        .into_iter()
        .map(|row| ListedCase {
            action: row.action.name().to_string(),
            case_id: row.case_id,
            account_id: row.account_id,
            status: row.status.name().to_string(),
            requester: row.requester,
            requested_at: rfc3339(row.requested_at),
            updated_at: rfc3339(row.updated_at),
        })
        .collect();
    Ok((listed, more))
}

/// One case of the queue as `review list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub case_id: String,
    pub account_id: String,
    /// The account is high-value (admin, creator, finance, government, VIP): two reviewers.
    pub high_value: bool,
    /// Why the case needs people (`NoEligibleFactor`, `PolicyReview`, `ExecutionFailed`, `WeakerProof`).
    pub reason: String,
    /// When it entered review, RFC 3339 in UTC.
    pub entered_at: String,
    pub waiting_ms: u64,
    pub approvals: u32,
    pub reviewers_required: u32,
    pub action: String,
}

/// The most cases one read of the review queue gives (the oldest): a flood of requests (THREATS 17) must not make
/// every reviewer's page read and show them all. `review_queue` says when there are more.
pub const REVIEW_QUEUE_PAGE_MAX: usize = 200;

/// The cases waiting for reviewers, oldest first: at most `REVIEW_QUEUE_PAGE_MAX`, and whether more wait.
pub fn review_queue(projection: &Projection, now: UnixMs) -> Result<(Vec<QueueEntry>, bool), ProjectionError> {
    let mut entries = review_queue_rows(projection, now)?;
    let more = entries.len() > REVIEW_QUEUE_PAGE_MAX;
    entries.truncate(REVIEW_QUEUE_PAGE_MAX);
    Ok((entries, more))
}

fn review_queue_rows(projection: &Projection, now: UnixMs) -> Result<Vec<QueueEntry>, ProjectionError> {
    projection.review_queue_first(REVIEW_QUEUE_PAGE_MAX + 1).and_then(|rows| {
        rows.into_iter()
            .map(|row| {
                let case = projection.case(&CaseId::new(&row.case_id))?;
                Ok(QueueEntry {
                    high_value: case.as_ref().is_some_and(|case| case.high_value),
                    action: case.map(|case| case.action).unwrap_or_default(),
                    case_id: row.case_id,
                    account_id: row.account_id,
                    reason: row.reason,
                    entered_at: rfc3339(row.entered_at),
                    waiting_ms: now.0.saturating_sub(row.entered_at.0),
                    approvals: row.approvals,
                    reviewers_required: row.reviewers_required,
                })
            })
            .collect()
    })
}
