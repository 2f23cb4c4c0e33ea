//! `airlock policy backtest`: every decision recorded in the log taken again under a candidate policy, on its
//! recorded facts (as `replay --verify` takes it again under its own version), and the decisions that would change,
//! counted by change (`auto → review`, `review → deny`, a longer hold) with the cases they belong to.

use crate::core::event::Event;
use crate::core::ids::CaseId;
use crate::core::ids::UnixMs;
use crate::core::policy::{Outcome, Phase, PolicyDecision};
use crate::policy::Engine;
use serde::Serialize;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

/// How many changed decisions are listed per change (all are counted).
pub const LISTED_PER_CHANGE_MAX: usize = 50;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Backtest {
    /// The candidate's version (`cedar-...`).
    pub candidate: String,
    /// Decisions recorded at or after `--since` that were taken again.
    pub decisions: u64,
    pub unchanged: u64,
    /// By change, how many decisions and the first few of them.
    pub changes: BTreeMap<String, Change>,
    /// Recorded decisions by the policy version they were taken under.
    pub recorded_versions: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Change {
    pub count: u64,
    pub decisions: Vec<ChangedDecision>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChangedDecision {
    pub case_id: String,
    pub case_sequence: u64,
    pub at: UnixMs,
    pub phase: &'static str,
    pub recorded_rules: Vec<String>,
    pub candidate_rules: Vec<String>,
}

fn outcome(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Auto => "auto",
        Outcome::Review => "review",
        Outcome::Deny => "deny",
    }
}

/// What changes between a recorded decision and the candidate's on the same facts, if anything: the outcome first,
/// else the hold (cooling-off, reviewers).
pub fn change(recorded: &PolicyDecision, candidate: &PolicyDecision) -> Option<String> {
    if recorded.outcome != candidate.outcome {
        return Some(format!("{} → {}", outcome(recorded.outcome), outcome(candidate.outcome)));
    }
    let hours = |decision: &PolicyDecision| decision.cooling_off_ms / crate::core::limits::HOUR_MS;
    if recorded.cooling_off_ms != candidate.cooling_off_ms {
        return Some(format!(
            "{}: cooling-off {}h → {}h",
            outcome(recorded.outcome),
            hours(recorded),
            hours(candidate)
        ));
    }
    if recorded.reviewers_required != candidate.reviewers_required {
        return Some(format!(
            "{}: reviewers {} → {}",
            outcome(recorded.outcome),
            recorded.reviewers_required,
            candidate.reviewers_required
        ));
    }
    None
}

/// Takes recorded decisions again under a candidate, one at a time, in log order (the caller reads the log: this
/// module does no I/O).
pub struct Backtester<'a> {
    candidate: &'a Engine,
    since: UnixMs,
    report: Backtest,
    /// A decision is recorded again by the events that act on it (a review it calls for, a cooling-off it starts):
    /// each case's last decision, by digest, so that each decision is taken again once.
    last_of_case: HashMap<String, u64>,
}

impl<'a> Backtester<'a> {
    /// Takes the decisions recorded at or after `since` again under `candidate`.
    pub fn new(candidate: &'a Engine, since: UnixMs) -> Backtester<'a> {
        let report = Backtest { candidate: candidate.version().to_string(), ..Backtest::default() };
        Backtester { candidate, since, report, last_of_case: HashMap::new() }
    }

    /// One case event of the log, at `stream_version` of its case.
    pub fn visit(&mut self, case_id: &CaseId, stream_version: u64, event: &Event) {
        let Some(recorded) = event.body.recorded_decision() else { return };
        let digest = {
            let mut hasher = DefaultHasher::new();
            recorded.hash(&mut hasher);
            hasher.finish()
        };
        if self.last_of_case.insert(case_id.to_string(), digest) == Some(digest) || event.at < self.since {
            return;
        }
        let report = &mut self.report;
        report.decisions += 1;
        *report.recorded_versions.entry(recorded.policy_version.clone()).or_default() += 1;
        let again = self.candidate.evaluate(&recorded.facts);
        let Some(change) = change(recorded, &again) else {
            report.unchanged += 1;
            return;
        };
        let listed = report.changes.entry(change).or_default();
        listed.count += 1;
        if listed.decisions.len() < LISTED_PER_CHANGE_MAX {
            listed.decisions.push(ChangedDecision {
                case_id: case_id.to_string(),
                case_sequence: stream_version,
                at: event.at,
                phase: match recorded.facts.phase {
                    Phase::Intake => "intake",
                    Phase::Authorization => "authorization",
                },
                recorded_rules: recorded.rules.clone(),
                candidate_rules: again.rules,
            });
        }
    }

    pub fn finish(self) -> Backtest {
        self.report
    }
}
