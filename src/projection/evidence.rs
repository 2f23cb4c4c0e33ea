//! The evidence packet a reviewer sees for a case in review (SPEC principle 6): what was asked, which records would
//! change, which verification signals passed or failed, which rules blocked automation, the requester's summary as
//! untrusted text, the exact action and its hash, and the rollback path.

use crate::core::ids::CaseId;
use crate::core::policy::PolicyDecision;
use crate::core::text::UntrustedText;
use crate::projection::{Projection, ProjectionError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidencePacket {
    pub case_id: String,
    pub account_id: String,
    pub requested_by: String,
    pub asked: String,
    pub would_change: Vec<String>,
    pub verification: Vec<String>,
    pub blocking_rules: Vec<String>,
    pub policy_version: String,
    /// The requester's summary, escaped: shown as data, never as instructions.
    pub requester_summary_untrusted: String,
    pub signals: String,
    pub action_to_approve: String,
    pub action_hash: String,
    pub reviewers_required: u8,
    pub rollback_path: String,
}

/// The rules that kept the case from automation: the core's own reason for review (for example "no eligible
/// factor"), then the policy rules that matched.
fn blocking_rules(
    timeline: &[crate::projection::query::TimelineRow],
    decision: Option<&PolicyDecision>,
) -> Vec<String> {
    let mut rules: Vec<String> = timeline
        .iter()
        .filter(|row| row.event_type == "review_required" || row.event_type == "execution_failed")
        .map(|row| match row.detail.split_once('(').and_then(|(_, rest)| rest.split_once(')')) {
            Some((reason, _)) => format!("core: {reason}"),
            None => format!("core: {}", row.event_type),
        })
        .collect();
    rules.extend(decision.map(|decision| decision.rules.clone()).unwrap_or_default());
    rules
}

impl Projection {
    pub fn evidence(&self, case_id: &CaseId) -> Result<Option<EvidencePacket>, ProjectionError> {
        let Some(case) = self.case(case_id)? else { return Ok(None) };
        let timeline = self.timeline(case_id)?;
        let decision: Option<PolicyDecision> =
            case.decision.as_deref().and_then(|text| serde_json::from_str(text).ok());
        let verification: Vec<String> = timeline
            .iter()
            .filter(|row| {
                ["challenge_issued", "challenge_withheld", "proof_rejected", "proof_accepted", "review_required"]
                    .contains(&row.event_type.as_str())
            })
            .map(|row| format!("{}: {}", row.event_type, row.detail))
            .collect();
        let summary = UntrustedText::new("summary", &case.summary, usize::MAX).expect("no limit to exceed");
        let would_change = match case.action.split_whitespace().next().unwrap_or_default() {
            "reset" => vec![
                "password: current credential -> a new one set by the owner at a pre-existing destination".to_string(),
                "sessions: all active -> none".to_string(),
            ],
            "add" => vec![format!(
                "destinations: (none) -> {} (usable for recovery only after its own cooling-off and minimum age)",
                case.action
            )],
            _ => vec![format!("{}: enrolled -> (none)", case.action)],
        };
        Ok(Some(EvidencePacket {
            case_id: case.case_id.clone(),
            account_id: case.account_id.clone(),
            requested_by: case.requester.clone(),
            asked: case.action.clone(),
            would_change,
            verification,
            blocking_rules: blocking_rules(&timeline, decision.as_ref()),
            policy_version: decision.as_ref().map(|decision| decision.policy_version.clone()).unwrap_or_default(),
            requester_summary_untrusted: summary.escaped(),
            signals: case.signals.clone(),
            action_to_approve: case.action.clone(),
            action_hash: case.action_hash.clone(),
            reviewers_required: decision
                .as_ref()
                .map_or(1, |decision| decision.effective_reviewers_required(case.high_value)),
            rollback_path: "airlock rollback CASE restores the previous records and revokes sessions opened since"
                .into(),
        }))
    }
}
