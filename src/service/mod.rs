//! The service: wires a front door's command to the core and the log. For each command it loads the case, gathers
//! the facts `decide` needs (clock, kill switch, account snapshot, account-wide counts, policy, a fresh code), asks
//! the core, appends the events with the case's expected version, brings the projection up to date and performs the
//! side effects the appended events call for. A conflict (another writer got there first) re-reads and re-decides.

pub mod alerts;
mod context;
mod effects;
mod first_seen;
pub use first_seen::Synced;
mod ledgers;
mod notices;
mod proof;
mod repository;

pub use proof::Second;

pub use ledgers::Admissions;
use repository::{Attempt, Retries, Round, Written};
pub use repository::{CONFLICT_RETRIES_MAX, LEDGER_RETRIES_MAX};

pub use notices::{DeferredNotices, Redelivery, Sending, with_deferred_notices};

use crate::clock::Clock;
use crate::core::actor::Actor;
use crate::core::command::CommandEnvelope;
use crate::core::control::{ControlCommand, decide_control, evolve_control};
use crate::core::decide::{decide, refusal_event};
use crate::core::event::Event;
use crate::core::ids::{CaseId, CommandId};
use crate::core::rejection::Rejection;
use crate::core::state::{CaseState, Status};
use crate::core::verification::Settings;
use crate::directory::{AccountDirectory, DirectoryError};
use crate::keys::Keys;
use crate::log::{Entry, EventLog, LogError};
use crate::notify::{Notifier, NotifyError};
use crate::projection::{Projection, ProjectionError};
use std::sync::Arc;

/// Where links in notices point unless configured otherwise.
pub const PUBLIC_URL_DEFAULT: &str = "https://recovery.example.com";

/// How many log entries the projection reads per batch while catching up.
const PROJECTION_BATCH_MAX: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The command is not allowed; tell the sender why. The refusal was recorded on the case where there is one.
    #[error("refused: {0}")]
    Rejected(Rejection),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    /// Stored data broke an invariant: stop and investigate.
    #[error("corrupt: {0}")]
    Corrupt(String),
}

/// What a command left behind: the case and the status it is in now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handled {
    pub case_id: CaseId,
    pub status: Status,
    /// How many events the command appended (0 for a retried command or a timer with nothing due).
    pub appended: usize,
    /// Whether the case has an accepted proof now: what an owner's proof answer may say, and nothing more.
    pub proven: bool,
}

impl Handled {
    fn of(case_id: &CaseId, state: &CaseState, appended: usize) -> Handled {
        Handled { case_id: case_id.clone(), status: state.status, appended, proven: !state.proven_by.is_empty() }
    }
}

pub struct Service<L: EventLog> {
    pub log: L,
    pub projection: Arc<Projection>,
    pub directory: Arc<dyn AccountDirectory>,
    pub notifier: Arc<dyn Notifier>,
    pub clock: Arc<dyn Clock>,
    pub keys: Keys,
    pub settings: Settings,
    /// Where links in notices point (the owner's verification and cancel pages).
    pub public_url: String,
    /// The policy engine deciding this service's cases (the shipped policies unless configured).
    pub policy: Arc<crate::policy::Engine>,
    /// Whether `handle` brings the projection up to date itself after each append (embedded mode), or a separate
    /// projector consumes the log (`airlock serve`).
    pub project_inline: bool,
    /// New requests waiting to be counted in a shared ledger (a desk's, a network's), admitted together.
    pub admissions: Admissions,
    /// Owed notices this process failed to send, and when to try again.
    pub redelivery: Redelivery,
    /// Whether owners may prove the account's second factor by signing in at the company's OpenID Connect provider
    /// (`serve --oidc-issuer`, issue 18 item 6). Without, a step-up token is refused.
    pub sign_in_step_up: bool,
    /// The campaign checks' thresholds, and how far this process has reconciled their hits (issue 20).
    pub campaigns: alerts::Campaigns,
}

/// Whether a command's proof was written into its account's failure ledger in some round, and whether the last
/// round decided a refused proof again.
#[derive(Default)]
struct RecordedFailure {
    key: Option<crate::log::LedgerKey>,
    last_round: bool,
}

/// Fresh random id with a readable prefix (`case-3f9a…`). The shell makes ids; the core never does.
pub fn new_id(prefix: &str) -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}-{}", hex::encode(bytes))
}

impl<L: EventLog> Service<L> {
    /// Handles one command for one case, end to end.
    pub async fn handle(&self, case_id: &CaseId, envelope: CommandEnvelope) -> Result<Handled, ServiceError> {
        let mut failure = RecordedFailure::default();
        let command_id = envelope.command_id.clone();
        let outcome = self.handle_rounds(case_id, envelope, &mut failure).await;
        // A proof counted as a wrong code in one round, then decided otherwise once the case moved on (a second tab
        // sending the same proof while the first was accepted), is no wrong code: it leaves the count (issue 15,
        // item 14). An outcome that is an error keeps the count, erring on the side of the cap.
        if let (Some(key), false, Ok(_) | Err(ServiceError::Rejected(_))) = (&failure.key, failure.last_round, &outcome)
            && let Err(error) = ledgers::forget_failure(&self.log, key, case_id, command_id.as_str()).await
        {
            tracing::warn!(case = %case_id, %error, "a proof counted as a wrong code could not be uncounted");
        }
        outcome
    }

    async fn handle_rounds(
        &self,
        case_id: &CaseId,
        envelope: CommandEnvelope,
        failure: &mut RecordedFailure,
    ) -> Result<Handled, ServiceError> {
        let what = format!("case {case_id}");
        let mut retries = Retries::new(&what);
        loop {
            let round = self.command_round(case_id, &envelope, failure, retries.attempt()).await?;
            if let Some(handled) = retries.settle(round).await? {
                return Ok(handled);
            }
        }
    }

    /// One round of a command: load the case, gather the facts, decide, count the decision in its ledgers, append.
    async fn command_round(
        &self,
        case_id: &CaseId,
        envelope: &CommandEnvelope,
        failure: &mut RecordedFailure,
        attempt: Attempt,
    ) -> Result<Round<Handled>, ServiceError> {
        let context::Loaded { state, last_sequence, prepared } =
            self.load_and_prepare(case_id, envelope, attempt.fresh()).await?;
        failure.last_round = false;
        let (events, rejection) = match decide(envelope, &state, &prepared.context(case_id, &self.settings)) {
            Ok(events) => (events, None),
            Err(rejection) => {
                (refusal_event(envelope, &state, &rejection, prepared.now).into_iter().collect(), Some(rejection))
            }
        };
        // A refusal is answered as one once its record is appended (or when there is nothing to record).
        let answer = |handled: Handled, rejection: Option<Rejection>| match rejection {
            Some(rejection) => Err(ServiceError::Rejected(rejection)),
            None => Ok(Round::Done(handled)),
        };
        if events.is_empty() {
            return answer(Handled::of(case_id, &state, 0), rejection);
        }
        if !self.count_in_ledgers(case_id, &prepared, &events, rejection.is_some(), failure).await? {
            return Ok(Round::LedgerConflict);
        }
        self.effects_before_append(case_id, &state, &events).await?;
        // A refusal is keyed by the case version too: the same command may be refused now and, retried once the case
        // has moved on, be accepted (or refused again, and recorded again) later.
        let sent = sender_key(&envelope.actor, &envelope.command_id);
        let key = match rejection {
            Some(_) => format!("refused:{case_id}:{sent}:{}", state.events),
            None => format!("{case_id}:{sent}"),
        };
        match self.append_case(case_id, &state, last_sequence, &key, &events).await? {
            Written::Conflict => {
                // Another writer got there first: bring the projection up to the log before deciding again, so the
                // account-wide facts the next decision reads include what that writer appended.
                self.project_if_inline().await?;
                Ok(Round::Conflict)
            }
            Written::Duplicate if rejection.is_some() => answer(Handled::of(case_id, &state, 0), rejection),
            Written::Duplicate => {
                let (state, _) = self.load(case_id).await?;
                Ok(Round::Done(Handled::of(case_id, &state, 0)))
            }
            Written::New { first_sequence } => {
                self.project_if_inline().await?;
                let new_state = events.iter().fold(state, crate::core::state::evolve);
                self.effects_after_append(case_id, &new_state, &events, first_sequence, &prepared).await?;
                answer(Handled::of(case_id, &new_state, events.len()), rejection)
            }
        }
    }

    /// Counts a decision in its ledgers, each on the revision its decision read, before its events are appended;
    /// false if another command wrote one first (the command is then decided again on the new count). A new request
    /// goes into its account's ledger (ADR 7). A refused proof goes into the account's proof-failure ledger (ADR 9),
    /// even when the ledger already holds it (decided again), so that the other cases' count it was decided on is
    /// still the current one.
    async fn count_in_ledgers(
        &self,
        case_id: &CaseId,
        prepared: &context::Prepared,
        events: &[Event],
        refused: bool,
        failure: &mut RecordedFailure,
    ) -> Result<bool, ServiceError> {
        let mut writes = Vec::with_capacity(1);
        if let (Some(write), false) = (&prepared.account_ledger, refused) {
            let mut ledger = write.ledger.clone();
            let code_until = events.iter().find_map(|event| match &event.body {
                crate::core::event::EventBody::ChallengeIssued { expires_at, .. } => Some(expires_at.0),
                _ => None,
            });
            if let Some(own) = ledger.requests.iter_mut().find(|entry| entry.case_id == case_id.as_str()) {
                own.code_until_ms = code_until;
            }
            if ledger != write.read {
                writes.push((&write.key, write.revision, ledger));
            }
        }
        let refused_proof =
            events.iter().any(|event| matches!(event.body, crate::core::event::EventBody::ProofRejected { .. }));
        if let (Some(write), true) = (&prepared.failure_ledger, refused_proof) {
            writes.push((&write.key, write.revision, write.ledger.clone()));
            failure.key = Some(write.key.clone());
        }
        failure.last_round |= refused_proof;
        for (key, revision, ledger) in &writes {
            match self.log.put_ledger(key, *revision, ledger).await {
                Ok(_) => {}
                Err(LogError::Conflict { .. }) => return Ok(false),
                Err(error) => return Err(error.into()),
            }
        }
        Ok(true)
    }

    /// Records a command refused at the edge (malformed, or invalid before it became a core command) on the case it
    /// names, if that case exists, and returns the refusal. Failing to record is logged, never hidden as success.
    pub async fn refuse(
        &self,
        case_id: &CaseId,
        actor: &Actor,
        command_id: &CommandId,
        command: crate::core::command::CommandKind,
        rejection: Rejection,
    ) -> ServiceError {
        if let Err(error) = self.record_refusal(case_id, actor, command_id, command, &rejection).await {
            tracing::warn!(case = %case_id, %error, "could not record a refused command");
        }
        ServiceError::Rejected(rejection)
    }

    async fn record_refusal(
        &self,
        case_id: &CaseId,
        actor: &Actor,
        command_id: &CommandId,
        command: crate::core::command::CommandKind,
        rejection: &Rejection,
    ) -> Result<(), ServiceError> {
        let what = format!("case {case_id}");
        let mut retries = Retries::new(&what);
        loop {
            let (state, _, last_sequence) = self.load_for_append(case_id, retries.attempt().fresh()).await?;
            let now = self.clock.now();
            let Some(event) = crate::core::decide::refusal_record(actor, command_id, command, &state, rejection, now)
            else {
                return Ok(());
            };
            let key = format!("refused:{case_id}:{}:{}", sender_key(actor, command_id), state.events);
            let round =
                match self.append_case(case_id, &state, last_sequence, &key, std::slice::from_ref(&event)).await? {
                    Written::Conflict => Round::Conflict,
                    Written::New { .. } | Written::Duplicate => Round::Done(()),
                };
            if retries.settle(round).await?.is_some() {
                return self.project_if_inline().await;
            }
        }
    }

    /// Flips the kill switch (operator role), recorded in the control stream.
    pub async fn control(
        &self,
        command_id: CommandId,
        actor: Actor,
        command: ControlCommand,
    ) -> Result<bool, ServiceError> {
        let mut retries = Retries::new("the control stream");
        loop {
            let (state, version, last_sequence) = self.control_state().await?;
            let events = decide_control(&command_id, &actor, &command, &state, self.clock.now())
                .map_err(ServiceError::Rejected)?;
            if events.is_empty() {
                return Ok(state.halted);
            }
            let key = format!("control:{}", sender_key(&actor, &command_id));
            let round = match self.append_control(version, last_sequence, &key, &events).await? {
                Written::Conflict => Round::Conflict,
                Written::New { .. } | Written::Duplicate => Round::Done(events.iter().fold(state, evolve_control)),
            };
            if let Some(state) = retries.settle(round).await? {
                self.project_if_inline().await?;
                return Ok(state.halted);
            }
        }
    }

    async fn project_if_inline(&self) -> Result<(), ServiceError> {
        if self.project_inline {
            self.catch_up_projection().await?;
        }
        Ok(())
    }

    /// Applies every log entry the projection has not seen yet.
    pub async fn catch_up_projection(&self) -> Result<u64, ServiceError> {
        let projection = self.projection.clone();
        let mut last = context::blocking(move || Ok(projection.last_sequence()?)).await?;
        loop {
            let entries: Vec<Entry> = self.log.read_after(last, PROJECTION_BATCH_MAX).await?;
            if entries.is_empty() {
                return Ok(last);
            }
            // A batch shorter than asked for ended at the log's end as it was when read, after this call began:
            // nothing this call must apply is left, and reading again would only find it empty (a hop to the
            // blocking pool and a log read fewer for each inline catch-up, which follows every command).
            let short = entries.len() < PROJECTION_BATCH_MAX;
            let projection = self.projection.clone();
            last = context::blocking(move || Ok(projection.apply(&entries)?)).await?;
            if short {
                return Ok(last);
            }
        }
    }
}

/// A command id as its sender means it: the log's message ids name the sender too, so that two actors who pick the
/// same command id are never taken for one retried command (issue 15, item 2).
pub(crate) fn sender_key(actor: &Actor, command_id: &CommandId) -> String {
    format!("{}.{}:{command_id}", actor.role, actor.id)
}
