//! `airlock policy backtest`: every decision recorded in the log taken again under a candidate policy, on its
//! recorded facts (as `replay --verify` takes it again under its own version), and the decisions that would change,
//! counted by change (`auto → review`, `review → deny`, a longer hold) with the cases they belong to.

use crate::core::event::{Event, EventBody};
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

fn rank(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Auto => 0,
        Outcome::Review => 1,
        Outcome::Deny => 2,
    }
}

/// What the case actually did after a decision: the policy's outcome, or more where the core's floors raised it
/// (no eligible factor, the guessing cap, another code outstanding, a weaker proof, a high-value account).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Effective {
    pub outcome: Outcome,
    /// The decision was the intake's: its hold is decided again after the proof, so only its outcome counts.
    pub intake: bool,
}

/// What changes between a recorded decision, which led to `effective`, and the candidate's on the same facts, if
/// anything. The candidate is held to the same floors: where the core raised the recorded outcome, it raises the
/// candidate's too, so a change is reported only where the case would have gone elsewhere. Then the hold (the
/// cooling-off and the quorum the core would apply), for a decision that set one.
pub fn change(recorded: &PolicyDecision, effective: Effective, candidate: &PolicyDecision) -> Option<String> {
    let floor = if rank(effective.outcome) > rank(recorded.outcome) { effective.outcome } else { Outcome::Auto };
    let mut would = if rank(candidate.outcome) >= rank(floor) { candidate.outcome } else { floor };
    if !recorded.facts.account_known && would != Outcome::Deny {
        // An unknown account gets no code and no review, whatever the outcome short of a denial.
        would = effective.outcome;
    }
    if would != effective.outcome {
        return Some(format!("{} → {}", outcome(effective.outcome), outcome(would)));
    }
    if effective.intake || would == Outcome::Deny {
        return None;
    }
    let facts = &recorded.facts;
    let hours = |decision: &PolicyDecision| {
        let ms = decision.effective_cooling_off_ms(facts.adds_destination);
        format!("{}h", ms as f64 / crate::core::limits::HOUR_MS as f64)
    };
    if would == Outcome::Auto && hours(recorded) != hours(candidate) {
        return Some(format!("auto: cooling-off {} → {}", hours(recorded), hours(candidate)));
    }
    let quorum = |decision: &PolicyDecision| decision.effective_reviewers_required(facts.high_value);
    if would == Outcome::Review && quorum(recorded) != quorum(candidate) {
        return Some(format!("review: reviewers {} → {}", quorum(recorded), quorum(candidate)));
    }
    None
}

/// An intake decision waiting for the event that says what the case did with it.
struct Pending {
    stream_version: u64,
    at: UnixMs,
    decision: PolicyDecision,
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
    /// Intake decisions whose case's next event has not been seen yet.
    pending: HashMap<String, Pending>,
}

impl<'a> Backtester<'a> {
    /// Takes the decisions recorded at or after `since` again under `candidate`.
    pub fn new(candidate: &'a Engine, since: UnixMs) -> Backtester<'a> {
        let report = Backtest { candidate: candidate.version().to_string(), ..Backtest::default() };
        Backtester { candidate, since, report, last_of_case: HashMap::new(), pending: HashMap::new() }
    }

    /// One case event of the log, at `stream_version` of its case.
    pub fn visit(&mut self, case_id: &CaseId, stream_version: u64, event: &Event) {
        // What the case did after a pending intake decision: this event says.
        if let Some(pending) = self.pending.remove(case_id.as_str()) {
            let effective = match &event.body {
                EventBody::ReviewRequired { .. } => Outcome::Review,
                EventBody::CaseDenied { .. } => Outcome::Deny,
                _ => Outcome::Auto,
            };
            self.take_again(case_id, pending, Effective { outcome: effective, intake: true });
        }
        let Some(recorded) = event.body.recorded_decision() else { return };
        let digest = {
            let mut hasher = DefaultHasher::new();
            recorded.hash(&mut hasher);
            hasher.finish()
        };
        if self.last_of_case.insert(case_id.to_string(), digest) == Some(digest) || event.at < self.since {
            return;
        }
        let pending = Pending { stream_version, at: event.at, decision: recorded.clone() };
        match &event.body {
            EventBody::RecoveryRequested { .. } => {
                self.pending.insert(case_id.to_string(), pending);
            }
            EventBody::ReviewRequired { .. } => {
                self.take_again(case_id, pending, Effective { outcome: Outcome::Review, intake: false })
            }
            _ => self.take_again(case_id, pending, Effective { outcome: Outcome::Auto, intake: false }),
        }
    }

    fn take_again(&mut self, case_id: &CaseId, pending: Pending, effective: Effective) {
        let Pending { stream_version, at, decision: recorded } = pending;
        let report = &mut self.report;
        report.decisions += 1;
        *report.recorded_versions.entry(recorded.policy_version.clone()).or_default() += 1;
        let again = self.candidate.evaluate(&recorded.facts);
        let Some(change) = change(&recorded, effective, &again) else {
            report.unchanged += 1;
            return;
        };
        let listed = report.changes.entry(change).or_default();
        listed.count += 1;
        if listed.decisions.len() < LISTED_PER_CHANGE_MAX {
            listed.decisions.push(ChangedDecision {
                case_id: case_id.to_string(),
                case_sequence: stream_version,
                at,
                phase: match recorded.facts.phase {
                    Phase::Intake => "intake",
                    Phase::Authorization => "authorization",
                },
                recorded_rules: recorded.rules.clone(),
                candidate_rules: again.rules,
            });
        }
    }

    /// The report; an intake decision whose case has no later event yet is taken as its policy decided it.
    pub fn finish(mut self) -> Backtest {
        let mut pending: Vec<(String, Pending)> = self.pending.drain().collect();
        pending.sort_by(|a, b| (a.1.at, &a.0).cmp(&(b.1.at, &b.0)));
        for (case_id, pending) in pending {
            let effective = Effective { outcome: pending.decision.outcome, intake: true };
            self.take_again(&CaseId::new(case_id), pending, effective);
        }
        self.report
    }
}
