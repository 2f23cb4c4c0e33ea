//! `airlock case show CASE` and `airlock case list`: what the projection knows of cases now. `show` gives one case's
//! state, the timers that will move it, the steps each role may take next (from `CommandKind::accepted_in`, the list
//! `decide` enforces) and its receipts; `list` finds cases by state, account, age and action.

use crate::cli::exit;
use crate::cli::store::{Store, now, parse_moment, print_table, projection, rfc3339, span};
use crate::core::action::RecoveryAction;
use crate::core::actor::Role;
use crate::core::command::CommandKind;
use crate::core::ids::{CaseId, UnixMs};
use crate::core::state::Status;
use crate::projection::query::{CaseFilter, CaseRow};
use crate::projection::receipts::Receipt;
use serde::Serialize;

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
#[derive(Debug, Serialize)]
pub struct Step {
    pub role: &'static str,
    pub command: &'static str,
    /// How, in words or as the command line to use.
    pub how: String,
}

/// A timer that will move the case if nobody does.
#[derive(Debug, Serialize)]
pub struct Timer {
    /// `expires` (the case ends, nothing changes) or `executes` (the change is applied).
    pub kind: &'static str,
    pub at: String,
    /// Milliseconds from now (0 when already due: the next timer pass acts).
    pub in_ms: u64,
    /// The kill switch is on: nothing executes until an operator resumes.
    pub held_by_kill_switch: bool,
}

#[derive(Debug, Serialize)]
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
        (CommandKind::Cancel, _) => format!(
            "echo '{{\"version\":1,\"command_id\":\"...\",\"case_id\":\"{case_id}\",\"reason\":\"...\"}}' | \
             airlock submit --actor operator:ID --command cancel"
        ),
        (CommandKind::RollBack, _) => format!("airlock rollback {case_id} --reason TEXT"),
        (CommandKind::ConfirmExecution, _) => "airlock's executor reports the change it applied".to_string(),
        (
            CommandKind::RequestRecovery
            | CommandKind::Tick
            | CommandKind::Halt
            | CommandKind::Resume
            | CommandKind::ConfirmNotices,
            _,
        ) => String::new(),
    }
}

fn timers(row: &CaseRow, status: Status, halted: bool, now: UnixMs) -> Vec<Timer> {
    let timer = |kind, at: UnixMs, held| Timer {
        kind,
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

pub fn view(store: &Store, case_id: &CaseId) -> Result<Option<CaseView>, String> {
    let projection = projection(&store.data_dir).map_err(|_| String::new())?;
    let failed = |error: crate::projection::ProjectionError| error.to_string();
    let Some(row) = projection.case(case_id).map_err(failed)? else { return Ok(None) };
    let status =
        Status::from_name(&row.status).ok_or_else(|| format!("unknown status {} in the projection", row.status))?;
    let halted = projection.halted().map_err(failed)?;
    let next_steps = STEPS
        .into_iter()
        .filter(|kind| kind.accepted_in().contains(&status))
        .flat_map(|kind| kind.allowed_roles().iter().map(move |role| (kind, *role)))
        .map(|(kind, role)| Step {
            role: role.name(),
            command: kind.name(),
            how: how(kind, role, &row.case_id, &row.action_hash),
        })
        .collect();
    Ok(Some(CaseView {
        timers: timers(&row, status, halted, now()),
        next_steps,
        notices_owed_since: projection.notices_owed_since(case_id).map_err(failed)?.map(rfc3339),
        receipts: projection.receipts(Some(case_id)).map_err(failed)?,
        approvers: serde_json::from_str(&row.approvers).unwrap_or_default(),
        terminal: status.is_terminal(),
        case_id: row.case_id,
        account_id: row.account_id,
        status: row.status,
        action: row.action,
        action_hash: row.action_hash,
        requester: row.requester,
        high_value: row.high_value,
        requested_at: rfc3339(row.requested_at),
        updated_at: rfc3339(row.updated_at),
        events: row.events,
    }))
}

pub fn show(store: &Store, case_id: &str, json: bool) -> u8 {
    let view = match view(store, &CaseId::new(case_id)) {
        Ok(Some(view)) => view,
        Ok(None) => {
            eprintln!("error: no case {case_id} in the projection");
            return exit::FAILED;
        }
        Err(error) => {
            if !error.is_empty() {
                eprintln!("error: {error}");
            }
            return exit::UNAVAILABLE;
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&view).expect("plain data serializes"));
        return exit::OK;
    }
    let risk = if view.high_value { "high-value" } else { "standard" };
    println!("case {}: {}{}", view.case_id, view.status, if view.terminal { " (final)" } else { "" });
    println!("  account:    {} ({risk})", view.account_id);
    println!("  action:     {}", crate::core::text::for_terminal(&view.action));
    println!("  hash:       {}", view.action_hash);
    println!("  requested:  {} by {}", view.requested_at, view.requester);
    println!(
        "  updated:    {} ({} events; `airlock case history {}` shows them)",
        view.updated_at, view.events, view.case_id
    );
    if !view.approvers.is_empty() {
        println!("  approved by: {}", view.approvers.join(", "));
    }
    if let Some(since) = &view.notices_owed_since {
        println!("  notices:    owed since {since}, being sent again by the timers");
    }
    println!("\ntimers:");
    if view.timers.is_empty() {
        println!("  (none)");
    }
    for timer in &view.timers {
        let when = if timer.in_ms == 0 { "due now".to_string() } else { format!("in {}", span(timer.in_ms)) };
        let held = if timer.held_by_kill_switch { " (held: the kill switch is on)" } else { "" };
        println!("  {} at {} ({when}){held}", timer.kind, timer.at);
    }
    println!("\nnext steps:");
    if view.next_steps.is_empty() {
        println!("  (none: {})", if view.terminal { "the case is closed" } else { "only airlock's timers move it" });
    }
    for step in &view.next_steps {
        println!("  {:<9} {:<18} {}", step.role, step.command, step.how);
    }
    println!("\nreceipts:");
    if view.receipts.is_empty() {
        println!("  (none)");
    }
    for receipt in &view.receipts {
        println!(
            "  #{} {} at {}: {} (hash {})",
            receipt.receipt_sequence,
            receipt.body.kind,
            receipt.body.recorded_at,
            crate::core::text::for_terminal(&receipt.body.changes.join("; ")),
            receipt.hash
        );
    }
    exit::OK
}

/// What `case list` filters on.
#[derive(Debug, clap::Args)]
pub struct ListFilter {
    /// Only cases in this state (requested, verified, in_review, cooling_off, executing, executed, rolled_back,
    /// denied, cancelled, expired).
    #[arg(long)]
    pub state: Option<String>,
    /// Only cases of this account.
    #[arg(long)]
    pub account: Option<String>,
    /// Only cases requested since then: a time (`2026-06-01 12:00:00` UTC, or RFC 3339) or a span before now (`3d`).
    #[arg(long)]
    pub since: Option<String>,
    /// Only cases asking for this action (reset_password, add_destination, remove_totp).
    #[arg(long)]
    pub action: Option<String>,
    /// At most this many cases, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// One case as `case list` shows it.
#[derive(Debug, Serialize)]
pub struct ListedCase {
    pub case_id: String,
    pub account_id: String,
    pub status: String,
    pub action: String,
    pub requester: String,
    pub requested_at: String,
    pub updated_at: String,
}

const ACTIONS: [&str; 3] = ["reset_password", "add_destination", "remove_totp"];

pub fn list(store: &Store, filter: &ListFilter, json: bool) -> u8 {
    if let Some(state) = &filter.state
        && Status::from_name(state).is_none_or(|status| status == Status::New)
    {
        let known: Vec<&str> = Status::ALL.iter().skip(1).map(|status| status.name()).collect();
        eprintln!("error: --state {state:?} is not a state; one of: {}", known.join(", "));
        return exit::USAGE;
    }
    if let Some(action) = &filter.action
        && !ACTIONS.contains(&action.as_str())
    {
        eprintln!("error: --action {action:?} is not an action; one of: {}", ACTIONS.join(", "));
        return exit::USAGE;
    }
    let since = match filter.since.as_deref().map(|text| parse_moment(text, now())).transpose() {
        Ok(since) => since,
        Err(error) => {
            eprintln!("error: --since: {error}");
            return exit::USAGE;
        }
    };
    let projection = match projection(&store.data_dir) {
        Ok(projection) => projection,
        Err(code) => return code,
    };
    let wanted = CaseFilter {
        status: filter.state.clone(),
        account_id: filter.account.clone(),
        since,
        action: filter.action.clone(),
        limit: filter.limit,
    };
    let (rows, more) = match projection.cases(&wanted) {
        Ok(found) => found,
        Err(error) => {
            eprintln!("error: {error}");
            return exit::UNAVAILABLE;
        }
    };
    let listed: Vec<ListedCase> = rows
        .into_iter()
        .map(|row| ListedCase {
            action: serde_json::from_str::<RecoveryAction>(&row.action_json)
                .map_or_else(|_| "unknown".to_string(), |action| action.name().to_string()),
            case_id: row.case_id,
            account_id: row.account_id,
            status: row.status,
            requester: row.requester,
            requested_at: rfc3339(row.requested_at),
            updated_at: rfc3339(row.updated_at),
        })
        .collect();
    if json {
        let answer = serde_json::json!({ "cases": listed, "more": more });
        println!("{}", serde_json::to_string_pretty(&answer).expect("plain data serializes"));
        return exit::OK;
    }
    if listed.is_empty() {
        println!("no case matches");
        return exit::OK;
    }
    let mut table = vec![["CASE", "ACCOUNT", "STATE", "ACTION", "REQUESTED", "UPDATED", "REQUESTER"].map(String::from)];
    for case in &listed {
        table.push([
            case.case_id.clone(),
            case.account_id.clone(),
            case.status.clone(),
            case.action.clone(),
            case.requested_at.clone(),
            case.updated_at.clone(),
            case.requester.clone(),
        ]);
    }
    print_table(&table);
    if more {
        println!("(more cases match: raise --limit, or narrow with --state, --account, --since, --action)");
    }
    exit::OK
}
