//! What a simulation reports: owners (self-service, after review, never; time to recovery), attackers (takeovers and
//! what stopped the rest, by playbook) and reviewers (cases per 1,000 requests, the queue, the work), as JSON and as a
//! table that sets several policies side by side.

use super::agents::Playbook;
use serde::Serialize;
use std::collections::BTreeMap;

/// Who opened a case, as the simulation knows it (airlock does not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Who {
    Owner(usize),
    Attacker(usize, Playbook),
}

impl Who {
    pub fn label(self) -> String {
        match self {
            Who::Owner(_) => "owner".to_string(),
            Who::Attacker(_, playbook) => format!("attacker ({})", playbook.name()),
        }
    }
}

/// How one case ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseOutcome {
    pub who: Who,
    pub account: String,
    pub status: String,
    pub stopped_by: String,
    /// Review decisions taken on it.
    pub reviewed: u32,
    /// Why it first went to people, if it did (the review reason; for a policy review, its rules).
    pub review_reason: Option<String>,
    /// When its change was applied, if it was (and not cancelled before).
    pub executed_at: Option<crate::core::ids::UnixMs>,
}

/// One run's figures.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub population: String,
    pub scenario: String,
    pub spread_days: u32,
    pub seed: u64,
    pub policies: String,
    pub policy_version: String,
    pub owners: OwnerFigures,
    pub attackers: AttackerFigures,
    pub reviewers: ReviewerFigures,
    /// Every case's outcome, by case id, for comparing runs; not printed.
    #[serde(skip)]
    pub outcomes: BTreeMap<String, CaseOutcome>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct OwnerFigures {
    pub owners: u32,
    pub self_service: u32,
    pub after_review: u32,
    pub never: u32,
    /// Owners who still hold a pre-existing eligible factor and whose account needs no person (not high-value, no
    /// risk flag, no recent credential change): the owners self-service is for.
    pub holding_a_factor: u32,
    pub holding_a_factor_self_service_share: f64,
    /// Owners with no eligible factor left, and the share of them whose request reached a person.
    pub factorless: u32,
    pub factorless_reached_a_person_share: f64,
    pub by_profile: BTreeMap<String, ProfileFigures>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ProfileFigures {
    pub owners: u32,
    pub self_service: u32,
    pub after_review: u32,
    pub never: u32,
    /// Hours from the owner's first request to the change applied, among those who recovered.
    pub hours_to_recovery: Percentiles,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values` (hours), rounded to a tenth; zeros when there are none.
    pub fn of(mut values: Vec<f64>) -> Percentiles {
        if values.is_empty() {
            return Percentiles::default();
        }
        values.sort_by(f64::total_cmp);
        let rank = |share: f64| {
            let index = ((share * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            round(values[index], 1)
        };
        Percentiles { p50: rank(0.5), p90: rank(0.9), p99: rank(0.99) }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct AttackerFigures {
    pub attacks: u32,
    pub cases: u32,
    /// Attacks with a change of theirs applied to the account and not cancelled, which the attacker proved, a person
    /// approved, or which adds an address the attacker holds.
    pub takeovers: u32,
    /// Attackers' requests applied because the owner, waiting for a code of their own, proved them: no access for
    /// the attacker, but the owner was misled.
    pub proven_by_owners: u32,
    pub by_playbook: BTreeMap<String, PlaybookFigures>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PlaybookFigures {
    pub attacks: u32,
    pub cases: u32,
    pub takeovers: u32,
    /// How the playbook's cases ended.
    pub stopped_by: BTreeMap<String, u32>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ReviewerFigures {
    pub requests: u32,
    /// Cases that entered the review queue, and those a person decided (the others expired there or were still
    /// waiting at the end).
    pub entered_review: u32,
    pub cases_reviewed: u32,
    pub per_1000_requests: f64,
    pub owner_cases_reviewed: u32,
    pub attacker_cases_reviewed: u32,
    /// Why the cases a person decided went to people, owners' and attackers'.
    pub owner_review_reasons: BTreeMap<String, u32>,
    pub attacker_review_reasons: BTreeMap<String, u32>,
    pub decisions: u32,
    pub decisions_per_case: f64,
    pub queue_max: u32,
    /// The longest the queue was on each simulated day.
    pub queue_max_by_day: Vec<u32>,
}

pub fn round(value: f64, places: i32) -> f64 {
    let factor = 10f64.powi(places);
    (value * factor).round() / factor
}

pub fn share(part: u32, whole: u32) -> f64 {
    if whole == 0 { 0.0 } else { round(f64::from(part) / f64::from(whole), 4) }
}

/// The headline figures of several runs side by side, one column per run.
pub fn table(runs: &[Run]) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |label: String, cell: &dyn Fn(&Run) -> String| rows.push((label, runs.iter().map(cell).collect()));
    let percent = |value: f64| format!("{:.1}%", value * 100.0);
    row("policies".into(), &|run| run.policies.clone());
    row("policy version".into(), &|run| run.policy_version.clone());
    row("owners asking".into(), &|run| run.owners.owners.to_string());
    row("self-service, owners holding a factor".into(), &|run| percent(run.owners.holding_a_factor_self_service_share));
    row("factor-less owners who reached a person".into(), &|run| {
        if run.owners.factorless == 0 {
            "no such owner".to_string()
        } else {
            percent(run.owners.factorless_reached_a_person_share)
        }
    });
    row("owners recovered without a person".into(), &|run| run.owners.self_service.to_string());
    row("owners recovered after review".into(), &|run| run.owners.after_review.to_string());
    row("owners never recovered".into(), &|run| run.owners.never.to_string());
    row("attacks".into(), &|run| run.attackers.attacks.to_string());
    row("TAKEOVERS".into(), &|run| run.attackers.takeovers.to_string());
    row("attackers' requests the owner proved".into(), &|run| run.attackers.proven_by_owners.to_string());
    row("cases reaching a person per 1,000 requests".into(), &|run| format!("{:.0}", run.reviewers.per_1000_requests));
    row("cases entering the review queue".into(), &|run| run.reviewers.entered_review.to_string());
    row("review decisions".into(), &|run| run.reviewers.decisions.to_string());
    row("longest review queue".into(), &|run| run.reviewers.queue_max.to_string());

    let keys = |names: &dyn Fn(&Run) -> Vec<String>| {
        let mut all: Vec<String> = runs.iter().flat_map(names).collect();
        all.sort();
        all.dedup();
        all
    };
    for profile in keys(&|run| run.owners.by_profile.keys().cloned().collect()) {
        let figures = |run: &Run| run.owners.by_profile.get(&profile).cloned();
        row(format!("  {profile}: self-service / review / never"), &|run| {
            figures(run).map_or("-".into(), |it| format!("{} / {} / {}", it.self_service, it.after_review, it.never))
        });
        row(format!("  {profile}: hours to recovery p50 / p90 / p99"), &|run| {
            figures(run).map_or("-".into(), |it| {
                let hours = it.hours_to_recovery;
                format!("{} / {} / {}", hours.p50, hours.p90, hours.p99)
            })
        });
    }
    for playbook in keys(&|run| run.attackers.by_playbook.keys().cloned().collect()) {
        let figures = |run: &Run| run.attackers.by_playbook.get(&playbook).cloned();
        row(format!("  {playbook}: attacks / takeovers"), &|run| {
            figures(run).map_or("-".into(), |it| format!("{} / {}", it.attacks, it.takeovers))
        });
        for ending in keys(&|run| figures(run).map(|it| it.stopped_by.into_keys().collect()).unwrap_or_default()) {
            row(format!("    cases ended: {ending}"), &|run| {
                figures(run).and_then(|it| it.stopped_by.get(&ending).copied()).unwrap_or(0).to_string()
            });
        }
    }
    type Reasons = fn(&Run) -> &BTreeMap<String, u32>;
    let owners: Reasons = |run| &run.reviewers.owner_review_reasons;
    let attackers: Reasons = |run| &run.reviewers.attacker_review_reasons;
    for (heading, reasons) in
        [("owners' cases went to people for", owners), ("attackers' cases went to people for", attackers)]
    {
        row(heading.to_string(), &|_| String::new());
        for reason in keys(&|run| reasons(run).keys().cloned().collect()) {
            row(format!("  {reason}"), &|run| reasons(run).get(&reason).copied().unwrap_or(0).to_string());
        }
    }
    let label_width = rows.iter().map(|(label, _)| label.chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..runs.len())
        .map(|column| rows.iter().map(|(_, cells)| cells[column].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (label, cells) in rows {
        let mut line = format!("{label:<label_width$}");
        for (cell, width) in cells.iter().zip(&widths) {
            line.push_str(&format!("  {cell:>width$}", width = *width));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Cases whose outcome differs between the first run and each other, as lines (at most `limit` per pair).
pub fn differences(runs: &[Run], limit: usize) -> Vec<String> {
    let Some((first, others)) = runs.split_first() else { return Vec::new() };
    let mut lines = Vec::new();
    for other in others {
        let differing: Vec<(&String, &CaseOutcome, Option<&CaseOutcome>)> = first
            .outcomes
            .iter()
            .map(|(case, outcome)| (case, outcome, other.outcomes.get(case)))
            .filter(|(_, outcome, then)| {
                then.is_none_or(|then| then.status != outcome.status || then.stopped_by != outcome.stopped_by)
            })
            .collect();
        lines.push(format!(
            "{} case(s) end differently under {} than under {}:",
            differing.len() + other.outcomes.keys().filter(|case| !first.outcomes.contains_key(*case)).count(),
            other.policies,
            first.policies
        ));
        for (case, outcome, then) in differing.iter().take(limit) {
            let then = then.map_or("not opened".to_string(), |then| format!("{} ({})", then.status, then.stopped_by));
            lines.push(format!(
                "  {case}  {}  account {}: {} ({}) -> {then}",
                outcome.who.label(),
                outcome.account,
                outcome.status,
                outcome.stopped_by
            ));
        }
        if differing.len() > limit {
            lines.push(format!("  ... and {} more", differing.len() - limit));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the percentiles are nearest-rank: of 1..=100 hours, p50 is 50, p90 is 90 and p99 is 99; none gives zeros.
    #[test]
    fn percentiles_are_nearest_rank() {
        let hours: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(Percentiles::of(hours), Percentiles { p50: 50.0, p90: 90.0, p99: 99.0 });
        assert_eq!(Percentiles::of(vec![7.25]), Percentiles { p50: 7.3, p90: 7.3, p99: 7.3 });
        assert_eq!(Percentiles::of(Vec::new()), Percentiles::default());
    }
}
