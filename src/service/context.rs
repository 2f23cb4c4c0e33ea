//! Gathering the facts a decision needs, before calling the pure core: the clock, the kill switch, the account
//! snapshot, account-wide counts, the policy's decision for the phase the command reaches, and a fresh code.

use crate::core::account::AccountSnapshot;
use crate::core::action::RecoveryAction;
use crate::core::command::{Command, CommandEnvelope};
use crate::core::decide::{Context, FreshChallenge};
use crate::core::ids::{AccountId, CaseId, ChallengeId, DestinationId, UnixMs};
use crate::core::limits::PROOF_ATTEMPT_WINDOW_MS;
use crate::core::policy::{Phase, PolicyDecision, PolicyFacts, Velocity};
use crate::core::signals::Signals;
use crate::core::state::{CaseState, Status};
use crate::core::verification::{AccountVerificationFacts, Settings, VerificationCode, generate_code};
use crate::log::{EventLog, Ledger, LedgerKey};
use crate::service::ledgers::{
    self, count_and_admit, dimension_keys, failures_and_record, failures_in_window, set_count,
};
use crate::service::{Service, ServiceError, new_id};

/// The facts gathered for one decision, and the plain code if one was drawn (kept out of `Context`).
pub struct Prepared {
    pub now: UnixMs,
    pub halted: bool,
    pub snapshot: Option<AccountSnapshot>,
    pub account_facts: AccountVerificationFacts,
    pub policy: Option<PolicyDecision>,
    pub fresh: Option<FreshChallenge>,
    /// The plain code of each destination of a fresh challenge; only the ones its event names are sent.
    pub codes: Vec<(DestinationId, VerificationCode)>,
    /// For a new request: its account's ledger as read and with the request in it, to be written (compare-and-swap)
    /// before the case is appended where the two differ. `None` when the command opens nothing.
    pub account_ledger: Option<LedgerWrite>,
    /// For a proof: the account's proof-failure ledger as read and with this proof recorded as a failure, to be
    /// written (compare-and-swap) before a refusal is appended. `None` for other commands.
    pub failure_ledger: Option<LedgerWrite>,
}

/// A ledger a decision writes before its events are appended: what was read at `revision`, and what to write back.
pub struct LedgerWrite {
    pub key: LedgerKey,
    pub revision: u64,
    pub read: Ledger,
    pub ledger: Ledger,
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

/// Runs synchronous work (SQLite) on tokio's blocking pool, so it never stalls the threads that drive NATS.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| ServiceError::Corrupt(format!("a task failed: {error}")))?
}

/// What the policy needs to know about one request, owned so it can move to a blocking thread.
struct PolicyInput {
    phase: Phase,
    snapshot: AccountSnapshot,
    action: RecoveryAction,
    signals: Signals,
    velocity: Velocity,
    halted: bool,
    at: UnixMs,
    open_alerts: Vec<String>,
}

/// The policy's decision over the recorded facts.
fn decide_policy(engine: &crate::policy::Engine, settings: &Settings, input: &PolicyInput) -> PolicyDecision {
    let facts = PolicyFacts::gather(
        input.phase,
        &input.snapshot,
        &input.action,
        &input.signals,
        input.velocity,
        input.halted,
        input.at,
        settings,
    );
    let facts = PolicyFacts { open_alerts: input.open_alerts.clone(), ..facts };
    let decision = engine.evaluate(&facts);
    crate::observe::decided(input.phase, decision.outcome);
    decision
}

impl Prepared {
    fn new(now: UnixMs, halted: bool) -> Prepared {
        Prepared {
            now,
            halted,
            snapshot: None,
            account_facts: AccountVerificationFacts::default(),
            policy: None,
            fresh: None,
            codes: Vec::new(),
            account_ledger: None,
            failure_ledger: None,
        }
    }
}

/// A new request, as its gathering reads it.
#[derive(Clone, Copy)]
struct NewRequest<'a> {
    case_id: &'a CaseId,
    envelope: &'a CommandEnvelope,
    account_id: &'a AccountId,
    action: &'a RecoveryAction,
    signals: &'a Signals,
    summary: &'a crate::core::text::UntrustedText,
}

/// A new request's counts, from the request ledgers, and its account's ledger to write.
struct RequestCounts {
    velocity: Velocity,
    /// Wrong codes in the window, from the account's proof-failure ledger.
    failed: u32,
    /// Other requests of the account that were sent a code still valid now.
    coded: Vec<CaseId>,
    ledger: LedgerWrite,
}

/// A case as read for an append (its state and the sequence to append after), and the facts gathered for a command
/// on it.
pub(super) struct Loaded {
    pub state: CaseState,
    pub last_sequence: u64,
    pub prepared: Prepared,
}

impl<L: EventLog> Service<L> {
    /// Reads the case `envelope` is for (the authority when `fresh`) and gathers the facts its decision needs.
    ///
    /// A request to open a case reads its counts (the ledgers) while the case itself is read, rather than after: a
    /// round trip less for every new request (ADR 32). The counts write only what a request sent again leaves as it
    /// is, so nothing is lost when the case turns out not to be new (the same command sent again): a request still in
    /// a ledger keeps its entry and count. The account's snapshot is read once the case is known to be new, beside
    /// the counts still under way: a request sent again is answered from the log alone, whatever state the directory
    /// is in (senders retry when things are slow), and dates no destination. The account's ledger, whose write says
    /// which code is out, is only written after the decision, on a case read as new (test
    /// `a_request_sent_again_writes_no_ledger`). A case that is not new drops what was read for it and is taken as any
    /// command on a case that exists.
    pub(super) async fn load_and_prepare(
        &self,
        case_id: &CaseId,
        envelope: &CommandEnvelope,
        fresh: bool,
    ) -> Result<Loaded, ServiceError> {
        if let Command::RequestRecovery { account_id, action, signals, summary } = &envelope.command {
            let now = self.clock.now();
            let request = NewRequest { case_id, envelope, account_id, action, signals, summary };
            let case_then_snapshot = async {
                let loaded = self.load_for_append(case_id, fresh).await?;
                let snapshot = match loaded.0.status {
                    Status::New => Some(self.dated_snapshot(account_id, now).await),
                    _ => None,
                };
                Ok::<_, ServiceError>((loaded, snapshot))
            };
            // Both run to their end (an admission may be writing other requests' counts, which dropping it half way
            // would fail); then the read's error is the command's, and the facts' only if the case is new.
            let (loaded, counts) = futures::join!(case_then_snapshot, self.request_counts(&request, now));
            let ((state, _, last_sequence), snapshot) = loaded?;
            if let Some(snapshot) = snapshot {
                // A new request reads the kill switch with its other projection reads, in one hop to the blocking pool.
                let mut prepared = Prepared::new(now, false);
                self.gather_request(&request, counts, snapshot, &mut prepared).await?;
                return Ok(Loaded { state, last_sequence, prepared });
            }
            let prepared = self.prepare(case_id, envelope, &state).await?;
            return Ok(Loaded { state, last_sequence, prepared });
        }
        let (state, _, last_sequence) = self.load_for_append(case_id, fresh).await?;
        let prepared = self.prepare(case_id, envelope, &state).await?;
        Ok(Loaded { state, last_sequence, prepared })
    }

    /// Gathers the facts `decide` needs for `envelope` on a case in `state` that a request does not open: a proof's
    /// (its own gather); the other commands need only the clock and the kill switch.
    async fn prepare(
        &self,
        case_id: &CaseId,
        envelope: &CommandEnvelope,
        state: &CaseState,
    ) -> Result<Prepared, ServiceError> {
        let now = self.clock.now();
        let mut prepared = Prepared::new(now, self.halted_for(&envelope.command).await?);
        match &envelope.command {
            Command::SubmitProof { .. } if state.status == Status::Requested => {
                self.gather_proof(case_id, envelope, state, &mut prepared).await?
            }
            // These need no gathered facts (or will be refused by the core before using any).
            Command::RequestRecovery { .. }
            | Command::SubmitProof { .. }
            | Command::ApproveReview { .. }
            | Command::DenyReview { .. }
            | Command::Cancel { .. }
            | Command::Tick
            | Command::ConfirmExecution { .. }
            | Command::RollBack { .. }
            | Command::ConfirmNotices { .. }
            | Command::SetPassword { .. } => {}
        }
        Ok(prepared)
    }

    /// Whether the kill switch is on, as the command needs to know it. The timer's decision to execute reads the
    /// switch from the log itself. Elsewhere (a policy fact, and whether a set-password link may still be used) it is
    /// taken from the projection, which follows the log closely, and which every process brings up to the log before
    /// it takes commands (ADR 30).
    async fn halted_for(&self, command: &Command) -> Result<bool, ServiceError> {
        match command {
            Command::Tick => Ok(self.control_state().await?.0.halted),
            // Recording a delivered notice decides nothing the switch could affect.
            Command::ConfirmNotices { .. } => Ok(false),
            Command::RequestRecovery { .. }
            | Command::SubmitProof { .. }
            | Command::ApproveReview { .. }
            | Command::DenyReview { .. }
            | Command::Cancel { .. }
            | Command::ConfirmExecution { .. }
            | Command::RollBack { .. }
            | Command::SetPassword { .. } => {
                let projection = self.projection.clone();
                blocking(move || Ok(projection.halted()?)).await
            }
        }
    }

    /// The account as the directory has it, its destinations dated (`date_by_first_seen`).
    async fn dated_snapshot(&self, account_id: &AccountId, now: UnixMs) -> Result<AccountSnapshot, ServiceError> {
        let snapshot = self.directory.snapshot(account_id).await?;
        self.date_by_first_seen(snapshot, now).await
    }

    /// A new request: from its counts and the account's snapshot (read side by side, `load_and_prepare`; either's
    /// error is the request's), the intake policy's decision, the account-wide facts and a code for every destination.
    async fn gather_request(
        &self,
        request: &NewRequest<'_>,
        counts: Result<RequestCounts, ServiceError>,
        snapshot: Result<AccountSnapshot, ServiceError>,
        prepared: &mut Prepared,
    ) -> Result<(), ServiceError> {
        let NewRequest { case_id, account_id, action, signals, .. } = *request;
        let now = prepared.now;
        let (counts, snapshot) = (counts?, snapshot?);
        let ledger_exists = counts.ledger.revision > 0;
        let (projection, settings) = (self.projection.clone(), self.settings.clone());
        let (engine, case) = (self.policy.clone(), case_id.clone());
        let (account_id, action, signals) = (account_id.clone(), action.clone(), signals.clone());
        let (velocity, coded) = (counts.velocity, counts.coded);
        let read = snapshot.clone();
        let summary = request.summary.as_untrusted_str().to_string();
        let (policy, account_facts, halted) = blocking(move || {
            let halted = projection.halted()?;
            let snapshot = read;
            let phase = Phase::Intake;
            let indicators = crate::core::campaign::request_indicators(&action, &signals, snapshot.is_high_value());
            let signature = crate::core::campaign::summary_signature(&summary);
            let open_alerts = projection.open_alerts_matching(&indicators, signature.as_ref(), now)?;
            let input = PolicyInput {
                phase,
                snapshot: snapshot.clone(),
                action,
                signals,
                velocity,
                halted,
                at: now,
                open_alerts,
            };
            let policy = decide_policy(&engine, &settings, &input);
            let mut account_facts = projection.account_facts(&account_id, &case, now)?;
            // Once the account's ledger exists it alone says which codes are out: it is exact across processes, and
            // it knows a code that reached nobody is not out (issue 15, item 6). The projection's view stands only
            // for an account whose ledger was never written.
            if ledger_exists {
                account_facts.outstanding_challenge_elsewhere = false;
            }
            for other in &coded {
                let waiting = projection.case(other)?.is_none_or(|row| row.status == Status::Requested);
                account_facts.outstanding_challenge_elsewhere |= waiting;
            }
            Ok((policy, account_facts, halted))
        })
        .await?;
        prepared.halted = halted;
        let (fresh, codes) = self.fresh_codes(&snapshot);
        prepared.fresh = Some(fresh);
        prepared.codes = codes;
        prepared.policy = Some(policy);
        prepared.snapshot = Some(snapshot);
        prepared.account_ledger = Some(counts.ledger);
        prepared.account_facts = AccountVerificationFacts {
            failed_attempts_in_window: account_facts.failed_attempts_in_window.max(counts.failed),
            ..account_facts
        };
        Ok(())
    }

    /// Every count of a new request comes from a request ledger, exact however many requests race, in however many
    /// processes (ADR 7, ADR 8). The account's ledger is written after the decision, conditional on the revision read
    /// here, because it also makes "one outstanding code per account" exact; the other dimensions admit the request
    /// now, and it keeps the count it was admitted with.
    async fn request_counts(&self, request: &NewRequest<'_>, now: UnixMs) -> Result<RequestCounts, ServiceError> {
        let NewRequest { case_id, envelope, account_id, action, signals, .. } = *request;
        let requester = envelope.actor.to_string();
        let account_key = LedgerKey::Account(account_id.to_string());
        let failures_key = LedgerKey::ProofFailures(account_id.to_string());
        let (read_account, read_failures, admitted) = futures::future::join3(
            self.log.ledger(&account_key),
            self.log.ledger(&failures_key),
            futures::future::try_join_all(
                dimension_keys(signals, &requester, action)
                    .into_iter()
                    .map(|key| ledgers::admit(&self.admissions, &self.log, key, case_id, now)),
            ),
        )
        .await;
        let (revision, read) = read_account?;
        let (_, failures) = read_failures?;
        let mut velocity = Velocity::default();
        for (key, count) in admitted? {
            set_count(&mut velocity, &key, count);
        }
        // Other requests of the account that were sent a code still valid now: open unless the projection already
        // shows their case past waiting for proof (it may not show the case at all yet).
        let coded = read
            .requests
            .iter()
            .filter(|entry| entry.case_id != case_id.as_str() && entry.code_until_ms.is_some_and(|until| until > now.0))
            .map(|entry| CaseId::new(&entry.case_id))
            .collect();
        let (count, ledger) = count_and_admit(&read, case_id, now);
        set_count(&mut velocity, &account_key, count);
        let ledger = LedgerWrite { key: account_key, revision, read, ledger };
        Ok(RequestCounts { velocity, failed: failures_in_window(&failures, now), coded, ledger })
    }

    /// A code of its own for every destination, all different, so that a proof names the destination it came from
    /// (issue 16). The core sends those of the destinations it challenges.
    fn fresh_codes(&self, snapshot: &AccountSnapshot) -> (FreshChallenge, Vec<(DestinationId, VerificationCode)>) {
        let challenge_id = ChallengeId::new(new_id("challenge"));
        let mut codes: Vec<(DestinationId, VerificationCode)> = Vec::new();
        for destination in &snapshot.destinations {
            let code = loop {
                let code = generate_code(&mut rand::rng());
                if codes.iter().all(|(_, drawn)| drawn.reveal_for_delivery() != code.reveal_for_delivery()) {
                    break code;
                }
            };
            codes.push((destination.id.clone(), code));
        }
        let code_hashes =
            codes.iter().map(|(id, code)| (id.clone(), self.keys.code.hash(&challenge_id, code))).collect();
        (FreshChallenge { challenge_id, code_hashes }, codes)
    }

    /// A proof: the account's wrong codes in the window and the authorization policy's decision on the recorded
    /// facts. Wrong codes are counted per account: this case's from its own events (its appends order them), the
    /// other cases' from a ledger each refusal is written to (compare-and-swap) before it is appended. Exact across
    /// cases and processes, whether or not the projection has caught up.
    async fn gather_proof(
        &self,
        case_id: &CaseId,
        envelope: &CommandEnvelope,
        state: &CaseState,
        prepared: &mut Prepared,
    ) -> Result<(), ServiceError> {
        let now = prepared.now;
        let facts = state.facts.clone().expect("a requested case has facts");
        let failures_key = LedgerKey::ProofFailures(facts.account_id.to_string());
        let (revision, read) = self.log.ledger(&failures_key).await?;
        let window_start = now.0.saturating_sub(PROOF_ATTEMPT_WINDOW_MS);
        let own = state.proof_failures.iter().filter(|at| at.0 > window_start).count() as u32;
        let (failed, ledger) = failures_and_record(&read, case_id, envelope.command_id.as_str(), own, now);
        // A ledger never written (an account whose failures predate it) takes the projection's count as a floor
        // below; once written, the ledger alone counts, so that no two refusals share a count.
        let ledger_is_new = revision == 0;
        prepared.failure_ledger = Some(LedgerWrite { key: failures_key, revision, read, ledger });
        let (projection, settings, engine) = (self.projection.clone(), self.settings.clone(), self.policy.clone());
        let (case, halted) = (case_id.clone(), prepared.halted);
        let (policy, account_facts) = blocking(move || {
            let account_facts = projection.account_facts(&facts.account_id, &case, now)?;
            let input = PolicyInput {
                phase: Phase::Authorization,
                snapshot: facts.snapshot,
                action: facts.action,
                signals: facts.signals,
                velocity: facts.velocity,
                halted,
                at: facts.requested_at,
                open_alerts: facts.open_alerts,
            };
            Ok((decide_policy(&engine, &settings, &input), account_facts))
        })
        .await?;
        prepared.policy = Some(policy);
        let floor = if ledger_is_new { account_facts.failed_attempts_in_window } else { 0 };
        prepared.account_facts =
            AccountVerificationFacts { failed_attempts_in_window: failed.max(floor), ..account_facts };
        Ok(())
    }
}
