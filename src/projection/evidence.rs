//! The evidence packet a reviewer sees for a case in review (SPEC principle 6): what was asked, which records would
//! change, which verification signals passed or failed, which rules blocked automation, the requester's summary as
//! untrusted text, the exact action and its hash, and the rollback path.

use crate::core::action::RecoveryAction;
use crate::core::ids::{CaseId, UnixMs};
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
    /// What airlock knows about the account and the case beyond the request (issue 17, item 3), from the case's own
    /// events; absent where only a projection could be read (a NATS deployment's data directory: ask over NATS).
    #[serde(default)]
    pub account: Option<AccountEvidence>,
    /// The account's other cases of the last 30 days, newest first.
    #[serde(default)]
    pub other_cases: Vec<crate::projection::views::ListedCase>,
}

/// What airlock recorded about the account when the request came in, and what has been shown since: the facts a
/// reviewer tells an owner from an attacker by, none of them written by the requester.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountEvidence {
    /// The account's destinations at the time of the request (addresses masked).
    pub destinations: Vec<DestinationEvidence>,
    /// When an authenticator app was enrolled, if one was.
    pub totp_enrolled_at: Option<String>,
    /// The directory cannot show whether the account has an authenticator (SCIM): a factor change needed a sign-in
    /// at the identity provider, or people (issue 18, item 6).
    pub authenticator_unknown: bool,
    /// The last password or factor change before the request, if any.
    pub credential_changed_at: Option<String>,
    pub risk_flags: Vec<String>,
    /// The requests the decision counted in the day before it: per account, source network, requester, named
    /// address and its registrable domain.
    pub velocity: crate::core::policy::Velocity,
    /// What the owner proved so far: the destinations whose code was typed, and the authenticator; empty when
    /// nothing was proven (or no code could be sent).
    pub proven: Vec<String>,
    /// Reviewers whose approval still counts, and how many approvals the case needs.
    pub approved_by: Vec<String>,
    pub approvals_required: u8,
    /// Who may still approve: any reviewer but these (the ones whose approval counts, and the requester).
    pub may_not_approve: Vec<String>,
    /// Whether any destination that existed before the request is left to receive the owner's notices and what the
    /// change sends; false means an approval would change an account nobody can be told about, and the core refuses
    /// to approve a password reset then (`nothing_deliverable`).
    pub deliverable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationEvidence {
    pub id: String,
    pub kind: String,
    pub masked: String,
    /// Whole days between the destination being trusted and the request.
    pub age_days: u64,
    /// Whether a code could go to it for this request (old enough, not revoked, not the address named).
    pub eligible: bool,
    pub revoked: bool,
}

/// The account's evidence from a case's folded events: its recorded snapshot, the decision's facts, the proofs and
/// the approvals.
pub fn account_evidence(state: &crate::core::state::CaseState, now: UnixMs) -> Option<AccountEvidence> {
    use crate::core::verification::{Settings, challengeable_destinations};
    let facts = state.facts.as_ref()?;
    let snapshot = &facts.snapshot;
    let at = |moment: crate::core::ids::UnixMs| crate::projection::views::rfc3339(moment);
    let eligible: Vec<&crate::core::ids::DestinationId> =
        challengeable_destinations(snapshot, &facts.action, facts.requested_at, &Settings::default())
            .into_iter()
            .map(|destination| &destination.id)
            .collect();
    let destinations = snapshot
        .destinations
        .iter()
        .map(|destination| DestinationEvidence {
            id: destination.id.to_string(),
            kind: destination.kind.name().to_string(),
            masked: destination.masked(),
            age_days: facts.requested_at.0.saturating_sub(destination.trusted_since.0) / crate::core::limits::DAY_MS,
            eligible: eligible.contains(&&destination.id),
            revoked: destination.revoked,
        })
        .collect();
    let mut proven: Vec<String> = state
        .proven_by
        .iter()
        .map(|id| match snapshot.destination(id) {
            Some(destination) => format!("{} {} ({})", destination.kind.name(), destination.masked(), id),
            None => id.to_string(),
        })
        .collect();
    match state.second_factor {
        Some(crate::core::event::SecondFactor::Totp) => proven.push("authenticator app".to_string()),
        Some(crate::core::event::SecondFactor::SignIn { auth_time }) => {
            proven.push(format!("sign-in at the identity provider with a second factor, at {}", at(auth_time)))
        }
        None => {}
    }
    // The approvals that still count (an approval lapses after a day), and who the core would refuse: whoever gave
    // one of them, and the requester, by id, whatever role they asked in.
    let approved_by: Vec<String> = state.live_approvals(now).map(|approval| approval.reviewer.to_string()).collect();
    let mut may_not_approve = approved_by.clone();
    if !may_not_approve.contains(&facts.requester.id.to_string()) {
        may_not_approve.push(facts.requester.id.to_string());
    }
    Some(AccountEvidence {
        destinations,
        totp_enrolled_at: snapshot.totp_enrolled_since.map(at),
        authenticator_unknown: snapshot.authenticator_unknown,
        credential_changed_at: snapshot.last_credential_change.map(at),
        risk_flags: snapshot.risk_flags.clone(),
        velocity: facts.velocity,
        proven,
        approved_by,
        approvals_required: state.reviewers_required,
        may_not_approve,
        deliverable: !snapshot.pre_existing(facts.requested_at).is_empty(),
    })
}

/// The window of the account's other cases an evidence packet shows.
pub const OTHER_CASES_MS: u64 = 30 * crate::core::limits::DAY_MS;

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
    /// The account's cases requested since `since`, newest first, but `except`.
    fn other_cases(
        &self,
        account_id: &str,
        except: &CaseId,
        since: UnixMs,
    ) -> Result<Vec<crate::projection::views::ListedCase>, ProjectionError> {
        let filter = crate::projection::query::CaseFilter {
            account_id: Some(account_id.to_string()),
            since: Some(since),
            limit: 20,
            ..Default::default()
        };
        let (cases, _) = crate::projection::views::case_list(self, &filter)?;
        Ok(cases.into_iter().filter(|case| case.case_id != except.as_str()).collect())
    }

    /// The evidence packet of a case from the projection; `account` is filled by whoever can read the case's events
    /// (`account_evidence`).
    pub fn evidence(&self, case_id: &CaseId) -> Result<Option<EvidencePacket>, ProjectionError> {
        let Some(case) = self.case(case_id)? else { return Ok(None) };
        let timeline = self.timeline(case_id)?;
        let decision: Option<PolicyDecision> =
            case.decision.as_deref().and_then(|text| serde_json::from_str(text).ok());
        let verification: Vec<String> = timeline
            .iter()
            .filter(|row| {
                [
                    "challenge_issued",
                    "challenge_withheld",
                    "proof_rejected",
                    "second_factor_proven",
                    "proof_accepted",
                    "review_required",
                ]
                .contains(&row.event_type.as_str())
            })
            .map(|row| format!("{}: {}", row.event_type, row.detail))
            .collect();
        let summary = UntrustedText::new("summary", &case.summary, usize::MAX).expect("no limit to exceed");
        let would_change = match &case.requested {
            RecoveryAction::ResetPassword => vec![
                "password: current credential -> one nobody knows, until the owner sets a new one through the \
                 single-use link sent to the destination the reset was proven from (approved without a proof: to \
                 those a code could go to)"
                    .to_string(),
                "sessions: all active -> none, where the directory can end them (the receipt says which)".to_string(),
            ],
            RecoveryAction::AddDestination { .. } => vec![format!(
                "destinations: (none) -> {} (usable for recovery only after its own cooling-off and minimum age)",
                case.action
            )],
            RecoveryAction::RemoveTotp => vec![format!("{}: enrolled -> (none)", case.action)],
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
            rollback_path: "airlock rollback CASE restores what the directory can (added destinations removed, a \
                            password it keeps no earlier one of replaced again) and revokes sessions opened since where \
                            it can; the receipt says exactly what"
                .into(),
            account: None,
            other_cases: self.other_cases(
                &case.account_id,
                case_id,
                UnixMs(case.requested_at.0.saturating_sub(OTHER_CASES_MS)),
            )?,
        }))
    }
}
