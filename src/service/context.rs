//! Gathering the facts a decision needs, before calling the pure core: the clock, the kill switch, the account
//! snapshot, account-wide counts, the policy's decision for the phase the command reaches, and a fresh code.

use crate::core::account::AccountSnapshot;
use crate::core::action::RecoveryAction;
use crate::core::command::{Command, CommandEnvelope};
use crate::core::decide::{Context, FreshChallenge};
use crate::core::ids::{AccountId, CaseId, ChallengeId, UnixMs};
use crate::core::policy::{Phase, PolicyDecision, PolicyFacts};
use crate::core::signals::Signals;
use crate::core::state::{CaseState, Status};
use crate::core::verification::{AccountVerificationFacts, Settings, VerificationCode, generate_code};
use crate::log::EventLog;
use crate::service::{Service, ServiceError, new_id};

/// The facts gathered for one decision, and the plain code if one was drawn (kept out of `Context`).
pub struct Prepared {
    pub now: UnixMs,
    pub halted: bool,
    pub snapshot: Option<AccountSnapshot>,
    pub account_facts: AccountVerificationFacts,
    pub policy: Option<PolicyDecision>,
    pub fresh: Option<FreshChallenge>,
    pub code: Option<VerificationCode>,
}

impl Prepared {
    pub fn context<'a>(&'a self, case_id: &'a CaseId, settings: &'a Settings) -> Context<'a> {
        Context {
            case_id,
            now: self.now,
            settings,
            halted: self.halted,
            account: self.snapshot.as_ref(),
            account_facts: self.account_facts,
            policy: self.policy.as_ref(),
            fresh_challenge: self.fresh.as_ref(),
        }
    }
}

fn new_destination(action: &RecoveryAction) -> Option<&str> {
    match action {
        RecoveryAction::AddDestination { address, .. } => Some(address),
        RecoveryAction::ResetPassword | RecoveryAction::RemoveTotp => None,
    }
}

impl<L: EventLog> Service<L> {
    pub(super) async fn prepare(
        &self,
        case_id: &CaseId,
        envelope: &CommandEnvelope,
        state: &CaseState,
    ) -> Result<Prepared, ServiceError> {
        let now = self.clock.now();
        let halted = self.control_state().await?.0.halted;
        let mut prepared = Prepared {
            now,
            halted,
            snapshot: None,
            account_facts: AccountVerificationFacts::default(),
            policy: None,
            fresh: None,
            code: None,
        };
        let requester = envelope.actor.to_string();
        match &envelope.command {
            Command::RequestRecovery { account_id, action, signals, .. } if state.status == Status::New => {
                let snapshot = self.directory.snapshot(account_id)?;
                let policy =
                    self.policy(Phase::Intake, case_id, &snapshot, action, signals, &requester, halted, now)?;
                prepared.account_facts = self.projection.account_facts(account_id, case_id, now)?;
                let code = generate_code(&mut rand::rng());
                let challenge_id = ChallengeId::new(new_id("challenge"));
                let code_hash = self.keys.code.hash(&challenge_id, &code);
                prepared.fresh = Some(FreshChallenge { challenge_id, code_hash });
                prepared.code = Some(code);
                prepared.policy = Some(policy);
                prepared.snapshot = Some(snapshot);
            }
            Command::SubmitProof { .. } if state.status == Status::Requested => {
                let facts = state.facts.as_ref().expect("a requested case has facts");
                prepared.account_facts = self.projection.account_facts(&facts.account_id, case_id, now)?;
                let requester = facts.requester.to_string();
                prepared.policy = Some(self.policy(
                    Phase::Authorization,
                    case_id,
                    &facts.snapshot,
                    &facts.action,
                    &facts.signals,
                    &requester,
                    halted,
                    facts.requested_at,
                )?);
            }
            // These need no gathered facts (or will be refused by the core before using any).
            Command::RequestRecovery { .. }
            | Command::SubmitProof { .. }
            | Command::ApproveReview { .. }
            | Command::DenyReview { .. }
            | Command::Cancel { .. }
            | Command::Tick
            | Command::ConfirmExecution { .. }
            | Command::RollBack { .. } => {}
        }
        Ok(prepared)
    }

    #[allow(clippy::too_many_arguments)]
    fn policy(
        &self,
        phase: Phase,
        case_id: &CaseId,
        snapshot: &AccountSnapshot,
        action: &RecoveryAction,
        signals: &Signals,
        requester: &str,
        halted: bool,
        at: UnixMs,
    ) -> Result<PolicyDecision, ServiceError> {
        let account_id: &AccountId = &snapshot.account_id;
        let velocity = self.projection.velocity(
            account_id,
            case_id,
            signals.source_network.as_deref(),
            requester,
            new_destination(action),
            at,
        )?;
        let facts = PolicyFacts::gather(phase, snapshot, action, signals, velocity, halted, at, &self.settings);
        Ok(crate::policy::evaluate(&facts))
    }
}
