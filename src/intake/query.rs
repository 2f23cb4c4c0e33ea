//! A case's status for whoever asks through a front door. Intake actors see one coarse public status that reveals
//! neither whether the account exists nor how it is protected (THREATS 8, 18): every case reads `pending` for
//! `PUBLIC_PENDING_MS` and `closed` after, unless it completed, and an unknown case id, or a case another requester
//! opened, has the same answer as no case at all.
//! Owners, reviewers and operators see the state.

use crate::core::actor::{Actor, Role};
use crate::core::ids::{CaseId, CommandId, UnixMs};
use crate::core::limits;
use crate::core::state::Status;
use crate::core::text::check_identifier;
use crate::log::EventLog;
use crate::projection::query::CaseFilter;
use crate::projection::views;
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

/// Answers a query from `actor`: `{"case_id": "..."}` (a case's status, scoped by role as above), or
/// `{"query": "kill_switch"}` (reviewers and operators: whether automation is halted, read from the log itself, so
/// that `airlock halt` can say "halted" only once the live service holds it).
pub async fn answer<L: EventLog>(service: &Service<L>, actor: &Actor, payload: &[u8]) -> Value {
    let request = serde_json::from_slice::<Value>(payload).ok();
    match request.as_ref().and_then(|value| value.get("query")).and_then(Value::as_str) {
        None | Some("case") => {}
        Some("kill_switch") => return kill_switch(service, actor).await,
        Some("executed_matching") => return executed_matching(service, actor, request.as_ref()).await,
        Some(kind @ ("case_view" | "case_list" | "review_queue" | "evidence")) => {
            return staff_read(service, actor, kind, request.as_ref()).await;
        }
        Some("history") => return history(service, actor, request.as_ref()).await,
        Some("verify") => return verify(service, actor).await,
        Some("directory_sync") => return directory_sync(service, actor, request.as_ref()).await,
        Some(kind @ ("alerts" | "alert")) => return alerts(service, actor, kind, request.as_ref()).await,
        Some(other) => {
            let other = crate::core::text::for_terminal(&other.chars().take(64).collect::<String>());
            return json!({ "error": { "code": "malformed_command", "reason": format!("no query {other:?}: ask for \"case\" (with case_id), \"case_view\", \"case_list\", \"review_queue\", \"evidence\", \"history\", \"kill_switch\", \"executed_matching\", \"verify\", \"directory_sync\", \"alerts\" or \"alert\" (with alert_id)") } });
        }
    }
    let case_id = request
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

/// The most alerts one answer lists.
pub const ALERTS_PAGE_MAX: usize = 200;
/// The most case ids one alert's answer lists (`more` says when it has more): an answer fits one NATS message.
pub const ALERT_CASES_SHOWN_MAX: usize = 1_000;

/// Campaign alerts (issue 20), for reviewers and operators: `{"query": "alerts", "all": bool}` lists the active ones
/// (every one with `all`), newest first; `{"query": "alert", "alert_id": "..."}` one alert with its case ids.
async fn alerts<L: EventLog>(service: &Service<L>, actor: &Actor, kind: &str, request: Option<&Value>) -> Value {
    if !matches!(actor.role, Role::Reviewer | Role::Operator | Role::System) {
        return json!({ "error": { "code": "role_not_allowed", "reason": format!("campaign alerts are for reviewers and operators, not the {} role", actor.role) } });
    }
    let (projection, now) = (service.projection.clone(), service.clock.now());
    let field = |name: &str| request.and_then(|value| value.get(name));
    let answer = match kind {
        "alerts" => {
            let all = field("all").and_then(Value::as_bool).unwrap_or(false);
            tokio::task::spawn_blocking(move || {
                projection.alerts(all, now, ALERTS_PAGE_MAX + 1).map(|mut alerts| {
                    let more = alerts.len() > ALERTS_PAGE_MAX;
                    alerts.truncate(ALERTS_PAGE_MAX);
                    json!({ "alerts": alerts, "more": more })
                })
            })
            .await
        }
        _ => {
            let Some(alert_id) =
                field("alert_id").and_then(Value::as_str).filter(|id| check_identifier("alert_id", id).is_ok())
            else {
                return json!({ "error": { "code": "malformed_command", "reason": "send {\"query\": \"alert\", \"alert_id\": \"...\"}" } });
            };
            let alert_id = alert_id.to_string();
            tokio::task::spawn_blocking(move || {
                projection.alert(&alert_id, now, ALERT_CASES_SHOWN_MAX + 1).map(|found| match found {
                    Some((alert, mut cases)) => {
                        let more = cases.len() > ALERT_CASES_SHOWN_MAX;
                        cases.truncate(ALERT_CASES_SHOWN_MAX);
                        json!({ "alert": alert, "case_ids": cases, "more_cases": more })
                    }
                    None => json!({ "alert": null, "case_ids": [], "more_cases": false }),
                })
            })
            .await
        }
    };
    match answer {
        Ok(Ok(answer)) => answer,
        Ok(Err(error)) => {
            tracing::warn!(%error, "could not read the alerts");
            json!({ "error": { "code": "unavailable", "reason": "try again later" } })
        }
        Err(_) => json!({ "error": { "code": "unavailable", "reason": "try again later" } }),
    }
}

/// Whether automation is halted, for reviewers and operators; everyone else is told the query is not theirs.
async fn kill_switch<L: EventLog>(service: &Service<L>, actor: &Actor) -> Value {
    match actor.role {
        Role::Reviewer | Role::Operator | Role::System => match service.control_state().await {
            Ok((state, events, _)) => {
                // The switch's changes: the control stream also records baselines, which flip nothing.
                let changes = events - state.baselines.len() as u64;
                json!({ "halted": state.halted, "changes": changes })
            }
            Err(_) => json!({ "error": { "code": "unavailable", "reason": "try again later" } }),
        },
        Role::Intake | Role::Owner => {
            json!({ "error": { "code": "role_not_allowed", "reason": format!("the kill switch is not for the {} role", actor.role) } })
        }
    }
}

/// Operators only: the executed cases a bulk rollback would undo, `{"match": "destination-domain=DOMAIN", "since_ms":
/// N}`, as `[{"case_id", "changes"}]`, so that `airlock rollback --match --nats` lists them before changing anything.
async fn executed_matching<L: EventLog>(service: &Service<L>, actor: &Actor, request: Option<&Value>) -> Value {
    if actor.role != Role::Operator {
        return json!({ "error": { "code": "role_not_allowed", "reason": format!("rollback candidates are for operators, not the {} role", actor.role) } });
    }
    let indicator = request.and_then(|value| value.get("match")).and_then(Value::as_str).unwrap_or_default();
    let since = request.and_then(|value| value.get("since_ms")).and_then(Value::as_u64).unwrap_or_default();
    let indicator = match crate::projection::query::Indicator::parse(indicator) {
        Ok(indicator) => indicator,
        Err(reason) => return json!({ "error": { "code": "malformed_command", "reason": reason } }),
    };
    let projection = service.projection.clone();
    let found = tokio::task::spawn_blocking(move || projection.executed_matching(&indicator, UnixMs(since))).await;
    match found {
        Ok(Ok(cases)) => {
            let cases: Vec<Value> = cases
                .iter()
                .map(|(case_id, changes)| json!({ "case_id": case_id.as_str(), "changes": changes }))
                .collect();
            json!({ "cases": cases })
        }
        Ok(Err(_)) | Err(_) => json!({ "error": { "code": "unavailable", "reason": "try again later" } }),
    }
}

/// Reviewers' and operators' reads of the projection, the same the command line shows from a data directory:
/// `case_view` and `evidence` (with `case_id`; `null` for a case the projection lacks), `case_list` (with a
/// `filter`: status, account_id, since, action, limit), `review_queue`. Intake actors and owners are refused.
async fn staff_read<L: EventLog>(service: &Service<L>, actor: &Actor, kind: &str, request: Option<&Value>) -> Value {
    if !matches!(actor.role, Role::Reviewer | Role::Operator | Role::System) {
        return json!({ "error": { "code": "role_not_allowed", "reason": format!("{kind} is for reviewers and operators, not the {} role", actor.role) } });
    }
    let case_id = request
        .and_then(|value| value.get("case_id"))
        .and_then(Value::as_str)
        .filter(|case_id| check_identifier("case_id", case_id).is_ok())
        .map(CaseId::new);
    let filter = request.and_then(|value| value.get("filter")).cloned().map(serde_json::from_value::<CaseFilter>);
    // The evidence packet's account facts come from the case's own events, which the service reads from the log.
    let state = match (kind, &case_id) {
        ("evidence", Some(case_id)) => service.load(case_id).await.ok().map(|(state, _)| state),
        _ => None,
    };
    let (kind, projection, now) = (kind.to_string(), service.projection.clone(), service.clock.now());
    let read = tokio::task::spawn_blocking(move || -> Result<Value, String> {
        let failed = |error: crate::projection::ProjectionError| error.to_string();
        let need_case = || case_id.clone().ok_or_else(|| "send a case_id".to_string());
        Ok(match kind.as_str() {
            "case_view" => json!({ "case": views::case_view(&projection, &need_case()?, now)? }),
            "evidence" => {
                let packet = projection.evidence(&need_case()?).map_err(failed)?.map(|mut packet| {
                    packet.account =
                        state.as_ref().and_then(|state| crate::projection::evidence::account_evidence(state, now));
                    packet
                });
                json!({ "evidence": packet })
            }
            "case_list" => {
                let filter = filter.unwrap_or(Ok(CaseFilter { limit: 50, ..CaseFilter::default() }));
                let filter = filter.map_err(|error| format!("filter: {error}"))?;
                let filter = CaseFilter { limit: filter.limit.min(CASE_LIST_MAX), ..filter };
                let (items, more) = views::case_list(&projection, &filter).map_err(failed)?;
                json!({ "items": items, "more": more })
            }
            _ => {
                let (items, more) = views::review_queue(&projection, now).map_err(failed)?;
                json!({ "items": items, "more": more })
            }
        })
    })
    .await;
    match read {
        Ok(Ok(answer)) => answer,
        Ok(Err(reason)) if reason.starts_with("send") || reason.starts_with("filter") => {
            json!({ "error": { "code": "malformed_command", "reason": reason } })
        }
        Ok(Err(_)) | Err(_) => json!({ "error": { "code": "unavailable", "reason": "try again later" } }),
    }
}

/// The most cases one `case_list` answer holds: a reply stays well under NATS's message size.
pub const CASE_LIST_MAX: usize = 500;

/// Reviewers and operators: a case's history from the log, `{"case_id"}` → `{"case_id", "events": [...]}` (events
/// empty for a case the log lacks), each decision as recorded; the caller takes them again with its own policies.
async fn history<L: EventLog>(service: &Service<L>, actor: &Actor, request: Option<&Value>) -> Value {
    if !matches!(actor.role, Role::Reviewer | Role::Operator | Role::System) {
        return json!({ "error": { "code": "role_not_allowed", "reason": format!("a case's history is for reviewers and operators, not the {} role", actor.role) } });
    }
    let case_id = request
        .and_then(|value| value.get("case_id"))
        .and_then(Value::as_str)
        .filter(|case_id| check_identifier("case_id", case_id).is_ok());
    let Some(case_id) = case_id else {
        return json!({ "error": { "code": "malformed_command", "reason": "send {\"query\": \"history\", \"case_id\": \"...\"}" } });
    };
    match crate::projection::history::case_history(&service.log, &CaseId::new(case_id)).await {
        Ok(events) => json!({ "case_id": case_id, "events": events }),
        Err(error) => {
            tracing::warn!(%error, "could not read a case's history");
            json!({ "error": { "code": "unavailable", "reason": "try again later" } })
        }
    }
}

/// Operators only: read the whole directory now and date the destinations airlock has not seen (`airlock directory
/// sync`); with `"baseline": {"reason"}` and a `command_id`, first record the operator's attested baseline and date
/// every destination the directory holds no later than it (issue 18, item 4). One at a time.
async fn directory_sync<L: EventLog>(service: &Service<L>, actor: &Actor, request: Option<&Value>) -> Value {
    if actor.role != Role::Operator {
        return json!({ "error": { "code": "role_not_allowed", "reason": format!("a directory sync is for operators, not the {} role", actor.role) } });
    }
    static RUNNING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    let Ok(_running) = RUNNING.try_acquire() else {
        return json!({ "error": { "code": "busy", "reason": "a directory sync is already running on the service; ask again when it has ended" } });
    };
    let unavailable = |error: crate::service::ServiceError| match error {
        crate::service::ServiceError::Rejected(rejection) => {
            json!({ "error": { "code": rejection.code(), "reason": rejection.to_string() } })
        }
        error => {
            tracing::warn!(%error, "directory sync failed");
            json!({ "error": { "code": "unavailable", "reason": format!("the directory sync failed: {error}") } })
        }
    };
    let Some(baseline) = request.and_then(|request| request.get("baseline")).filter(|value| !value.is_null()) else {
        return match service.sync_directory().await {
            Ok(synced) => json!({ "synced": synced.map(synced_json) }),
            Err(error) => unavailable(error),
        };
    };
    let reason = baseline.get("reason").and_then(Value::as_str).unwrap_or_default();
    let command_id = request.and_then(|request| request.get("command_id")).and_then(Value::as_str).unwrap_or_default();
    let checked = check_identifier("command_id", command_id)
        .and_then(|()| crate::core::text::UntrustedText::new("reason", reason, crate::core::limits::REASON_BYTES_MAX));
    let reason = match checked {
        Ok(reason)
            if !reason.as_untrusted_str().chars().all(|c| c.is_whitespace() || crate::core::text::invisible(c)) =>
        {
            reason
        }
        Ok(_) => {
            return json!({ "error": { "code": "invalid_value", "reason": "a baseline needs a reason: say why these destinations are the owners' own" } });
        }
        Err(rejection) => return json!({ "error": { "code": rejection.code(), "reason": rejection.to_string() } }),
    };
    match service.attest_baseline(CommandId::new(command_id), actor.clone(), reason).await {
        Ok((baseline, synced)) => json!({
            "synced": synced_json(synced),
            "baseline": {
                "at": crate::projection::views::rfc3339(baseline.at),
                "by": baseline.by.to_string(),
                "reason": baseline.reason.as_untrusted_str(),
                "dated_to": crate::projection::views::rfc3339(baseline.dated_to),
            },
        }),
        Err(error) => unavailable(error),
    }
}

fn synced_json(synced: crate::service::Synced) -> Value {
    json!({ "accounts": synced.accounts, "destinations": synced.destinations, "first_seen": synced.first_seen,
            "dated_by_baseline": synced.dated_by_baseline })
}

/// Operators only: the audit of the live projection and of every recorded decision (`airlock audit verify` and
/// `airlock replay --verify` over NATS), taken with the policies this service has loaded.
async fn verify<L: EventLog>(service: &Service<L>, actor: &Actor) -> Value {
    if actor.role != Role::Operator {
        return json!({ "error": { "code": "role_not_allowed", "reason": format!("the audit is for operators, not the {} role", actor.role) } });
    }
    // One audit at a time: each copies the projection and rebuilds the whole log, and a second one asked while the
    // first runs (a retry after a timeout) would only double the work and the disk it takes.
    static RUNNING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    let Ok(_running) = RUNNING.try_acquire() else {
        return json!({ "error": { "code": "busy", "reason": "an audit is already running on the service; ask again when it has ended" } });
    };
    let engines = crate::policy::retake::Engines::with(vec![service.policy.clone()]);
    let report =
        crate::projection::verify::verify_live(&service.log, service.projection.path(), &engines, |_| {}).await;
    match report {
        Ok(report) => json!({ "report": report }),
        Err(error) => {
            tracing::warn!(%error, "could not verify the projection");
            json!({ "error": { "code": "unavailable", "reason": "the audit could not run; try again later" } })
        }
    }
}
