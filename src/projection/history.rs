//! A case's history as the record has it: every event of its stream in the event log (not the projection), in order,
//! with its actor, its time, the state after it and the policy decision it records. `airlock case history` shows it
//! and takes each decision again with the policies it loaded; `airlock serve` answers it to reviewers and operators
//! (the `history` query), so that they can replay a case with their own key (issue 17).

use crate::core::ids::CaseId;
use crate::core::policy::PolicyDecision;
use crate::core::state::{evolve, initial_state};
use crate::log::envelope::{Decoded, Stream, decode};
use crate::log::{EventLog, LogError};
use serde::{Deserialize, Serialize};

/// One event of a case as its history shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// The event's place in the case (1, 2, ...).
    pub sequence: u64,
    /// When it happened, RFC 3339 in UTC.
    pub at: String,
    pub actor: String,
    pub event: String,
    pub status_after: String,
    /// The policy decision the event records, if it records one.
    pub decision: Option<PolicyDecision>,
    /// For a decision: the operator-attested baselines (issue 18, item 4) its account's destinations were dated by,
    /// each as "attested at <time> by <operator>: <reason>". Empty when none was relied on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relied_on_baselines: Vec<String>,
    /// The words a person recorded with the event (a reviewer's or an operator's reason), as typed: untrusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("the stream of case {0} holds an event it cannot read: {1}")]
    Unreadable(String, String),
}

/// Every event of `case_id` in `log`, oldest first; empty when the log has no such case.
pub async fn case_history<L: EventLog>(log: &L, case_id: &CaseId) -> Result<Vec<HistoryEvent>, HistoryError> {
    let baselines = baselines(log).await?;
    let entries = log.read_stream(&Stream::Case(case_id.clone())).await?;
    let mut state = initial_state();
    let mut events = Vec::new();
    for envelope in entries.iter().flat_map(|entry| entry.envelopes.iter()) {
        let unreadable = |reason: String| HistoryError::Unreadable(case_id.to_string(), reason);
        let Decoded::Case { event, stream_version, .. } =
            decode(envelope).map_err(|error| unreadable(error.to_string()))?
        else {
            return Err(unreadable("an event of another stream".to_string()));
        };
        state = evolve(state, &event);
        let decision = event.body.recorded_decision().cloned();
        let relied_on_baselines = match (&decision, &state.facts) {
            (Some(_), Some(facts)) => relied_on(&baselines, facts, event.at),
            _ => Vec::new(),
        };
        events.push(HistoryEvent {
            sequence: stream_version,
            at: crate::projection::views::rfc3339(event.at),
            actor: event.actor.to_string(),
            event: event.body.kind().name().to_string(),
            status_after: state.status.name().to_string(),
            decision,
            relied_on_baselines,
            reason: event.body.people_words().map(|words| words.as_untrusted_str().to_string()),
        });
    }
    Ok(events)
}

/// Every attested baseline in the control stream, oldest first.
async fn baselines<L: EventLog>(log: &L) -> Result<Vec<crate::core::control::Baseline>, HistoryError> {
    Ok(crate::log::control_state(log).await?.0.baselines)
}

/// The baselines, recorded before the decision at `decided_at`, that dated a destination a code could go to: its age
/// is exactly a baseline's `dated_to` (a destination airlock saw earlier keeps its own, older date).
fn relied_on(
    baselines: &[crate::core::control::Baseline],
    facts: &crate::core::state::CaseFacts,
    decided_at: crate::core::ids::UnixMs,
) -> Vec<String> {
    let settings = crate::core::verification::Settings::default();
    let eligible = crate::core::verification::challengeable_destinations(
        &facts.snapshot,
        &facts.action,
        facts.requested_at,
        &settings,
    );
    let dated: Vec<_> = eligible.iter().map(|destination| destination.trusted_since).collect();
    baselines
        .iter()
        .filter(|baseline| baseline.at <= decided_at && dated.contains(&baseline.dated_to))
        .map(|baseline| {
            format!(
                "attested at {} by {}: {}",
                crate::projection::views::rfc3339(baseline.at),
                baseline.by,
                crate::core::text::for_terminal(baseline.reason.as_untrusted_str())
            )
        })
        .collect()
}
