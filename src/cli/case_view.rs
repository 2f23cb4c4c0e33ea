//! `airlock case show CASE` and `airlock case list`: what the projection knows of cases now. `show` gives one case's
//! state, the timers that will move it, the steps each role may take next (from `CommandKind::accepted_in`, the list
//! `decide` enforces) and its receipts; `list` finds cases by state, account, age and action.

use crate::cli::exit;
use crate::cli::store::{Reader, Store, exit_code_of, failed, now, parse_moment, print_table, span};
use crate::core::ids::CaseId;
use crate::core::state::Status;
use crate::projection::query::CaseFilter;
use crate::projection::views::{self, CaseView, ListedCase};
use serde_json::json;

pub fn show(store: &Store, case_id: &str, json: bool) -> u8 {
    let reader = match store.reader(json) {
        Ok(reader) => reader,
        Err(code) => return code,
    };
    let found: Result<Option<CaseView>, String> = match &reader {
        Reader::Local(projection) => views::case_view(projection, &CaseId::new(case_id), now()),
        Reader::Nats { .. } => reader.ask_for(json!({ "query": "case_view", "case_id": case_id }), "case"),
    };
    let view = match found {
        Ok(Some(view)) => view,
        Ok(None) => return failed(json, "not_found", &format!("no case {case_id} in the projection"), exit::FAILED),
        Err(error) => return failed(json, "unavailable", &error, exit_code_of(&error)),
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

const ACTIONS: [&str; 3] = ["reset_password", "add_destination", "remove_totp"];

pub fn list(store: &Store, filter: &ListFilter, json: bool) -> u8 {
    if let Some(state) = &filter.state
        && Status::from_name(state).is_none_or(|status| status == Status::New)
    {
        let known: Vec<&str> = Status::ALL.iter().skip(1).map(|status| status.name()).collect();
        let reason = format!("--state {state:?} is not a state; one of: {}", known.join(", "));
        return failed(json, "invalid_value", &reason, exit::USAGE);
    }
    if let Some(action) = &filter.action
        && !ACTIONS.contains(&action.as_str())
    {
        let reason = format!("--action {action:?} is not an action; one of: {}", ACTIONS.join(", "));
        return failed(json, "invalid_value", &reason, exit::USAGE);
    }
    let since = match filter.since.as_deref().map(|text| parse_moment(text, now())).transpose() {
        Ok(since) => since,
        Err(error) => {
            return failed(json, "invalid_value", &format!("--since: {error}"), exit::USAGE);
        }
    };
    let wanted = CaseFilter {
        status: filter.state.clone(),
        account_id: filter.account.clone(),
        since,
        action: filter.action.clone(),
        limit: filter.limit,
    };
    let reader = match store.reader(json) {
        Ok(reader) => reader,
        Err(code) => return code,
    };
    let found: Result<(Vec<ListedCase>, bool), String> = match &reader {
        Reader::Local(projection) => views::case_list(projection, &wanted).map_err(|error| error.to_string()),
        Reader::Nats { .. } => reader.ask(json!({ "query": "case_list", "filter": wanted })).and_then(|answer| {
            let items = serde_json::from_value(answer["items"].clone()).map_err(|error| error.to_string())?;
            Ok((items, answer["more"].as_bool().unwrap_or(false)))
        }),
    };
    let (listed, more) = match found {
        Ok(found) => found,
        Err(error) => return failed(json, "unavailable", &error, exit_code_of(&error)),
    };
    if json {
        let answer = serde_json::json!({ "items": listed, "more": more });
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
