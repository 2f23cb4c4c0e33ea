//! Gathering the facts a decision needs, before calling the pure core: the clock, the kill switch, the account
//! snapshot, account-wide counts, the policy's decision for the phase the command reaches, and a fresh code.

use crate::core::account::AccountSnapshot;
use crate::core::action::RecoveryAction;
use crate::core::command::{Command, CommandEnvelope};
use crate::core::decide::{Context, FreshChallenge};
use crate::core::ids::{AccountId, CaseId, ChallengeId, UnixMs};
use crate::core::limits::{DAY_MS, VELOCITY_COUNT_MAX};
use crate::core::policy::{Phase, PolicyDecision, PolicyFacts};
use crate::core::signals::Signals;
use crate::core::state::{CaseState, Status};
use crate::core::verification::{AccountVerificationFacts, Settings, VerificationCode, generate_code};
use crate::log::{EventLog, Ledger, LedgerEntry};
use crate::projection::Projection;
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
    /// For a new request: the account's ledger with this request added, to be written (compare-and-swap) before the
    /// case is appended. `None` when the request is already in the ledger (a retry) or the command opens nothing.
    pub ledger: Option<LedgerWrite>,
}

/// The ledger write a new request needs before its case may be appended.
pub struct LedgerWrite {
    pub account_id: AccountId,
    pub revision: u64,
    pub ledger: Ledger,
}

/// The account's requests in the day before `now`, other than `case_id`'s own, capped as every velocity count is; and
/// the ledger to write: the same day's requests plus this one, when it is not in yet.
fn count_and_admit(ledger: Ledger, case_id: &CaseId, now: UnixMs) -> (u32, Option<Ledger>) {
    let since = now.0.saturating_sub(DAY_MS);
    let mut recent: Vec<LedgerEntry> = ledger.requests.into_iter().filter(|entry| entry.at_ms > since).collect();
    let own = recent.iter().any(|entry| entry.case_id == case_id.as_str());
    let others = recent.iter().filter(|entry| entry.case_id != case_id.as_str()).count();
    let count = (others as u32).min(VELOCITY_COUNT_MAX);
    if own {
        return (count, None);
    }
    recent.push(LedgerEntry { case_id: case_id.to_string(), at_ms: now.0, code_until_ms: None });
    // Only whether a threshold was crossed matters, and counts saturate at VELOCITY_COUNT_MAX: the newest entries
    // beyond that carry no information and would only grow the ledger.
    let excess = recent.len().saturating_sub(VELOCITY_COUNT_MAX as usize + 1);
    recent.drain(..excess);
    (count, Some(Ledger { requests: recent }))
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

/// Runs synchronous work (SQLite) on tokio's blocking pool, so it never stalls the threads that drive NATS.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| ServiceError::Corrupt(format!("a task failed: {error}")))?
}

/// What the policy needs to know about one request, owned so it can move to a blocking thread.
struct PolicyInput {
    phase: Phase,
    case_id: CaseId,
    snapshot: AccountSnapshot,
    action: RecoveryAction,
    signals: Signals,
    requester: String,
    halted: bool,
    at: UnixMs,
}

/// Velocity from the projection (the account's count from its ledger when given), then the policy's decision over
/// the recorded facts.
fn decide_policy(
    engine: &crate::policy::Engine,
    projection: &Projection,
    settings: &Settings,
    input: &PolicyInput,
    account_requests: Option<u32>,
) -> Result<PolicyDecision, ServiceError> {
    let account_id: &AccountId = &input.snapshot.account_id;
    let mut velocity = projection.velocity(
        account_id,
        &input.case_id,
        input.signals.source_network.as_deref(),
        &input.requester,
        new_destination(&input.action),
        input.at,
    )?;
    if let Some(count) = account_requests {
        velocity.account_requests_24h = count;
    }
    let facts = PolicyFacts::gather(
        input.phase,
        &input.snapshot,
        &input.action,
        &input.signals,
        velocity,
        input.halted,
        input.at,
        settings,
    );
    Ok(engine.evaluate(&facts))
}

impl<L: EventLog> Service<L> {
    pub(super) async fn prepare(
        &self,
        case_id: &CaseId,
        envelope: &CommandEnvelope,
        state: &CaseState,
    ) -> Result<Prepared, ServiceError> {
        let now = self.clock.now();
        // Only the timer's decision to execute depends on the kill switch, so only it reads the switch from the log
        // itself. Elsewhere `halted` is a policy fact, taken from the projection (which follows the log closely).
        let halted = match &envelope.command {
            Command::Tick => self.control_state().await?.0.halted,
            Command::RequestRecovery { .. }
            | Command::SubmitProof { .. }
            | Command::ApproveReview { .. }
            | Command::DenyReview { .. }
            | Command::Cancel { .. }
            | Command::ConfirmExecution { .. }
            | Command::RollBack { .. } => {
                let projection = self.projection.clone();
                blocking(move || Ok(projection.halted()?)).await?
            }
        };
        let mut prepared = Prepared {
            now,
            halted,
            snapshot: None,
            account_facts: AccountVerificationFacts::default(),
            policy: None,
            fresh: None,
            code: None,
            ledger: None,
        };
        let (projection, directory, settings) =
            (self.projection.clone(), self.directory.clone(), self.settings.clone());
        let engine = self.policy.clone();
        let case = case_id.clone();
        match &envelope.command {
            Command::RequestRecovery { account_id, action, signals, .. } if state.status == Status::New => {
                // The account's count comes from its ledger, which the append below is conditional on: exact, however
                // many requests race (ADR 7). The other dimensions come from the projection.
                let (revision, ledger) = self.log.ledger(account_id.as_str()).await?;
                // Other requests of the account that were sent a code still valid now: open unless the projection
                // already shows their case past waiting for proof (it may not show the case at all yet).
                let coded: Vec<CaseId> = ledger
                    .requests
                    .iter()
                    .filter(|entry| {
                        entry.case_id != case_id.as_str() && entry.code_until_ms.is_some_and(|until| until > now.0)
                    })
                    .map(|entry| CaseId::new(&entry.case_id))
                    .collect();
                let (account_requests, admitted) = count_and_admit(ledger, case_id, now);
                prepared.ledger =
                    admitted.map(|ledger| LedgerWrite { account_id: account_id.clone(), revision, ledger });
                let (account_id, action, signals) = (account_id.clone(), action.clone(), signals.clone());
                let requester = envelope.actor.to_string();
                let (snapshot, policy, account_facts) = blocking(move || {
                    let snapshot = directory.snapshot(&account_id)?;
                    let input = PolicyInput {
                        phase: Phase::Intake,
                        case_id: case.clone(),
                        snapshot: snapshot.clone(),
                        action,
                        signals,
                        requester,
                        halted,
                        at: now,
                    };
                    let policy = decide_policy(&engine, &projection, &settings, &input, Some(account_requests))?;
                    let mut account_facts = projection.account_facts(&account_id, &case, now)?;
                    for other in &coded {
                        let waiting = projection.case(other)?.is_none_or(|row| row.status == Status::Requested.name());
                        account_facts.outstanding_challenge_elsewhere |= waiting;
                    }
                    Ok((snapshot, policy, account_facts))
                })
                .await?;
                let code = generate_code(&mut rand::rng());
                let challenge_id = ChallengeId::new(new_id("challenge"));
                let code_hash = self.keys.code.hash(&challenge_id, &code);
                prepared.fresh = Some(FreshChallenge { challenge_id, code_hash });
                prepared.code = Some(code);
                prepared.policy = Some(policy);
                prepared.snapshot = Some(snapshot);
                prepared.account_facts = account_facts;
            }
            Command::SubmitProof { .. } if state.status == Status::Requested => {
                let facts = state.facts.clone().expect("a requested case has facts");
                let (policy, account_facts) = blocking(move || {
                    let account_facts = projection.account_facts(&facts.account_id, &case, now)?;
                    let input = PolicyInput {
                        phase: Phase::Authorization,
                        case_id: case,
                        snapshot: facts.snapshot,
                        action: facts.action,
                        signals: facts.signals,
                        requester: facts.requester.to_string(),
                        halted,
                        at: facts.requested_at,
                    };
                    Ok((decide_policy(&engine, &projection, &settings, &input, None)?, account_facts))
                })
                .await?;
                prepared.policy = Some(policy);
                prepared.account_facts = account_facts;
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
}
