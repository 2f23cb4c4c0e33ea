//! A case's status for whoever asks through a front door. Intake actors see one coarse public status that reveals
//! neither whether the account exists nor how it is protected (THREATS 8, 18): every case reads `pending` for
//! `PUBLIC_PENDING_MS` and `closed` after, unless it completed, and an unknown case id, or a case another requester
//! opened, has the same answer as no case at all.
//! Owners, reviewers and operators see the state.

use crate::core::actor::{Actor, Role};
use crate::core::ids::{CaseId, UnixMs};
use crate::core::limits;
use crate::core::state::Status;
use crate::core::text::check_identifier;
use crate::log::EventLog;
use crate::service::Service;
use serde_json::{Value, json};

/// How long an intake actor's case reads `pending` unless it completed: as long as the longest a case can wait for
/// anything (review), so that when and whether a case closed (which differs with the account: a code's case expires
/// after a day, a review after a week, an unknown account's case never has anything to wait for) says nothing about
/// the account (THREATS 18).
pub const PUBLIC_PENDING_MS: u64 = limits::IN_REVIEW_TTL_MS + limits::DAY_MS;

/// The word for a state as owners, reviewers and operators see it, coarsened: the public word of each state.
pub fn public_status(status: Status) -> &'static str {
    match status {
        Status::New => "not_found",
        Status::Requested | Status::Verified | Status::InReview | Status::CoolingOff | Status::Executing => "pending",
        Status::Executed => "completed",
        Status::RolledBack | Status::Denied | Status::Cancelled | Status::Expired => "closed",
    }
}

/// The public word for a case as its requester sees it: `completed` once the change was applied (only an owner's
/// proof or reviewers get a case there), otherwise `pending` for `PUBLIC_PENDING_MS` after the request and `closed`
/// after that, whatever happened in between.
pub fn requester_status(status: Status, requested_at: UnixMs, now: UnixMs) -> &'static str {
    match status {
        Status::New => "not_found",
        Status::Executed => "completed",
        Status::Requested
        | Status::Verified
        | Status::InReview
        | Status::CoolingOff
        | Status::Executing
        | Status::RolledBack
        | Status::Denied
        | Status::Cancelled
        | Status::Expired => {
            if now.0 < requested_at.0.saturating_add(PUBLIC_PENDING_MS) {
                "pending"
            } else {
                "closed"
            }
        }
    }
}

/// What the customer should be told next, in plain words, for a public status.
pub fn next_step(public: &str) -> &'static str {
    match public {
        "pending" => {
            "If the account exists, its owner has been contacted at a contact method already on file and must act \
             there. Support cannot speed this up or change where messages go."
        }
        "completed" => "The change was applied after a waiting period; the owner was notified at their old contacts.",
        "closed" => "This request is closed. A new request can be made; it starts from the beginning.",
        _ => "No such request. Check the reference, or make a new request.",
    }
}

/// Answers `{"case_id": "..."}` from `actor`.
pub async fn answer<L: EventLog>(service: &Service<L>, actor: &Actor, payload: &[u8]) -> Value {
    let case_id = serde_json::from_slice::<Value>(payload)
        .ok()
        .and_then(|value| value.get("case_id").and_then(Value::as_str).map(str::to_string))
        .filter(|case_id| check_identifier("case_id", case_id).is_ok());
    let Some(case_id) = case_id else {
        return json!({ "error": { "code": "malformed_command", "reason": "send {\"case_id\": \"...\"}" } });
    };
    let (status, facts) = match service.load(&CaseId::new(&case_id)).await {
        Ok((state, _)) => (state.status, state.facts),
        Err(_) => return json!({ "error": { "code": "unavailable", "reason": "try again later" } }),
    };
    match actor.role {
        Role::Intake => {
            // A requester sees only the cases it opened; anyone else's reads exactly like a case that does not exist.
            let public = match facts {
                Some(facts) if facts.requester == *actor => {
                    requester_status(status, facts.requested_at, service.clock.now())
                }
                Some(_) | None => "not_found",
            };
            json!({ "case_id": case_id, "status": public, "next_step": next_step(public) })
        }
        Role::Owner | Role::Reviewer | Role::Operator | Role::System => {
            json!({ "case_id": case_id, "status": status.name(), "next_step": next_step(public_status(status)) })
        }
    }
}
