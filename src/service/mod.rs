//! The service: wires a front door's command to the core and the log. For each command it loads the case, gathers
//! the facts `decide` needs (clock, kill switch, account snapshot, account-wide counts, policy, a fresh code), asks
//! the core, appends the events with the case's expected version, brings the projection up to date and performs the
//! side effects the appended events call for. A conflict (another writer got there first) re-reads and re-decides.

mod context;
mod effects;
mod ledgers;
mod notices;

pub use ledgers::Admissions;

pub use notices::{DeferredNotices, Redelivery, Sending, with_deferred_notices};

use crate::clock::Clock;
use crate::core::actor::Actor;
use crate::core::command::{Command, CommandEnvelope, SecondFactorCheck};
use crate::core::control::{ControlCommand, ControlState, decide_control, evolve_control};
use crate::core::decide::{decide, refusal_event};
use crate::core::event::Event;
use crate::core::ids::{CaseId, CommandId};
use crate::core::rejection::Rejection;
use crate::core::state::{CaseState, Status, fold};
use crate::core::verification::{Settings, VerificationCode};
use crate::directory::{AccountDirectory, DirectoryError};
use crate::keys::Keys;
use crate::log::envelope::{Decoded, Stream, decode, encode_case_event, encode_control_event};
use crate::log::{Appended, Entry, EventLog, LogError};
use crate::notify::{Notifier, NotifyError};
use crate::projection::{Projection, ProjectionError};
use std::sync::Arc;

/// Where links in notices point unless configured otherwise.
pub const PUBLIC_URL_DEFAULT: &str = "https://recovery.example.com";

/// How often one command is re-decided after losing a race before the caller is told to retry later.
const CONFLICT_RETRIES_MAX: u32 = 8;

/// How often a new request is re-decided after another request of the same account updated the ledger first. Each
/// round one racing request wins, so this bounds the burst one account can absorb without a caller being told to
/// retry; the pause between rounds is random, up to `LEDGER_BACKOFF_MS_MAX`.
pub(crate) const LEDGER_RETRIES_MAX: u32 = 256;
const LEDGER_BACKOFF_MS_MAX: u64 = 32;

/// The random pause before the `round`th retry of a ledger write that lost a race: it doubles up to
/// `LEDGER_BACKOFF_MS_MAX`, so that racing processes stop meeting at the same instant.
pub(crate) async fn ledger_backoff(round: u32) {
    let pause_ms = rand::random_range(1..=LEDGER_BACKOFF_MS_MAX.min(1 << round.min(5)));
    tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
}

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
    /// Loads a case's history and folds it, refusing a history that breaks the transition table.
    pub async fn load(&self, case_id: &CaseId) -> Result<(CaseState, Vec<Event>), ServiceError> {
        let (state, events, _) = self.load_for_append(case_id, true).await?;
        Ok((state, events))
    }

    /// `load`, plus the global sequence of the case's last commit: the expected position of the next append. The
    /// first attempt may read a fast copy; after a conflict (`fresh`) the authority is read.
    async fn load_for_append(
        &self,
        case_id: &CaseId,
        fresh: bool,
    ) -> Result<(CaseState, Vec<Event>, u64), ServiceError> {
        let stream = Stream::Case(case_id.clone());
        let entries =
            if fresh { self.log.read_stream(&stream).await? } else { self.log.read_stream_fast(&stream).await? };
        let mut events = Vec::with_capacity(entries.len());
        for bytes in entries.iter().flat_map(|entry| &entry.envelopes) {
            match decode(bytes).map_err(|error| ServiceError::Corrupt(error.to_string()))? {
                Decoded::Case { event, .. } => events.push(event),
                Decoded::Control { .. } => return Err(ServiceError::Corrupt("control event in a case stream".into())),
            }
        }
        let state = fold(&events).map_err(|error| ServiceError::Corrupt(error.to_string()))?;
        Ok((state, events, entries.last().map_or(0, |entry| entry.sequence)))
    }

    /// The kill switch's state, its number of events, and the sequence of its last commit.
    pub async fn control_state(&self) -> Result<(ControlState, u64, u64), ServiceError> {
        let entries = self.log.read_stream(&Stream::Control).await?;
        let mut state = ControlState::default();
        let mut events = 0;
        for bytes in entries.iter().flat_map(|entry| &entry.envelopes) {
            match decode(bytes).map_err(|error| ServiceError::Corrupt(error.to_string()))? {
                Decoded::Control { event, .. } => state = evolve_control(state, &event),
                Decoded::Case { .. } => return Err(ServiceError::Corrupt("case event in the control stream".into())),
            }
            events += 1;
        }
        Ok((state, events, entries.last().map_or(0, |entry| entry.sequence)))
    }

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
        let (mut conflicts, mut ledger_conflicts) = (0, 0);
        while conflicts < CONFLICT_RETRIES_MAX {
            let (state, _, last_sequence) = self.load_for_append(case_id, conflicts + ledger_conflicts > 0).await?;
            let prepared = self.prepare(case_id, &envelope, &state).await?;
            failure.last_round = false;
            let decided = decide(&envelope, &state, &prepared.context(case_id, &self.settings));
            let (events, rejection) = match decided {
                Ok(events) => (events, None),
                Err(rejection) => {
                    let now = prepared.now;
                    (refusal_event(&envelope, &state, &rejection, now).into_iter().collect(), Some(rejection))
                }
            };
            if events.is_empty() {
                return match rejection {
                    Some(rejection) => Err(ServiceError::Rejected(rejection)),
                    None => Ok(Handled::of(case_id, &state, 0)),
                };
            }
            // Counted first, each on the revision its decision read; if another command got to a ledger first, this
            // one is decided again on the new count. A new request goes into its account's ledger (ADR 7). A refused
            // proof goes into the account's proof-failure ledger (ADR 9), even when the ledger already holds it
            // (decided again), so that the other cases' count it was decided on is still the current one.
            let mut ledger_writes = Vec::with_capacity(1);
            if let (Some(write), None) = (&prepared.account_ledger, &rejection) {
                let mut ledger = write.ledger.clone();
                let code_until = events.iter().find_map(|event| {
                    if let crate::core::event::EventBody::ChallengeIssued { expires_at, .. } = &event.body {
                        Some(expires_at.0)
                    } else {
                        None
                    }
                });
                if let Some(own) = ledger.requests.iter_mut().find(|entry| entry.case_id == case_id.as_str()) {
                    own.code_until_ms = code_until;
                }
                if ledger != write.read {
                    ledger_writes.push((&write.key, write.revision, ledger));
                }
            }
            let refused_proof =
                events.iter().any(|event| matches!(event.body, crate::core::event::EventBody::ProofRejected { .. }));
            if let (Some(write), true) = (&prepared.failure_ledger, refused_proof) {
                ledger_writes.push((&write.key, write.revision, write.ledger.clone()));
                failure.key = Some(write.key.clone());
            }
            failure.last_round |= refused_proof;
            let mut lost_race = false;
            for (key, revision, ledger) in &ledger_writes {
                match self.log.put_ledger(key, *revision, ledger).await {
                    Ok(()) => {}
                    Err(LogError::Conflict { .. }) if ledger_conflicts < LEDGER_RETRIES_MAX => {
                        lost_race = true;
                        break;
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            if lost_race {
                ledger_conflicts += 1;
                ledger_backoff(ledger_conflicts).await;
                continue;
            }
            self.effects_before_append(case_id, &state, &events)?;
            let encoded = events
                .iter()
                .enumerate()
                .map(|(offset, event)| encode_case_event(case_id, state.events as u64 + offset as u64 + 1, event))
                .collect();
            let stream = Stream::Case(case_id.clone());
            // A refusal is keyed by the case version too: the same command may be refused now and, retried once the
            // case has moved on, be accepted (or refused again, and recorded again) later.
            let sent = sender_key(&envelope.actor, &envelope.command_id);
            let command_key = match rejection {
                Some(_) => format!("refused:{case_id}:{sent}:{}", state.events),
                None => format!("{case_id}:{sent}"),
            };
            match self.log.append(&stream, last_sequence, &command_key, encoded).await {
                Err(LogError::Conflict { .. }) => {
                    conflicts += 1;
                    // Another writer got there first: bring the projection up to the log before deciding again, so
                    // the account-wide facts the next decision reads include what that writer appended.
                    self.project_if_inline().await?;
                    continue;
                }
                Err(error) => return Err(error.into()),
                Ok(Appended::Duplicate) => {
                    if let Some(rejection) = rejection {
                        return Err(ServiceError::Rejected(rejection));
                    }
                    let (state, _) = self.load(case_id).await?;
                    return Ok(Handled::of(case_id, &state, 0));
                }
                Ok(Appended::New { first_sequence }) => {
                    self.project_if_inline().await?;
                    let new_state = events.iter().fold(state, crate::core::state::evolve);
                    self.effects_after_append(case_id, &new_state, &events, first_sequence, &prepared).await?;
                    return match rejection {
                        Some(rejection) => Err(ServiceError::Rejected(rejection)),
                        None => Ok(Handled::of(case_id, &new_state, events.len())),
                    };
                }
            }
        }
        Err(LogError::Unavailable(format!("case {case_id} kept changing under {CONFLICT_RETRIES_MAX} attempts")).into())
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
        for attempt in 0..CONFLICT_RETRIES_MAX {
            let (state, _, last_sequence) = self.load_for_append(case_id, attempt > 0).await?;
            let now = self.clock.now();
            let Some(event) = crate::core::decide::refusal_record(actor, command_id, command, &state, rejection, now)
            else {
                return Ok(());
            };
            let key = format!("refused:{case_id}:{}:{}", sender_key(actor, command_id), state.events);
            let bytes = vec![encode_case_event(case_id, state.events as u64 + 1, &event)];
            match self.log.append(&Stream::Case(case_id.clone()), last_sequence, &key, bytes).await {
                Err(LogError::Conflict { .. }) => continue,
                Err(error) => return Err(error.into()),
                Ok(_) => return self.project_if_inline().await,
            }
        }
        Err(LogError::Unavailable(format!("case {case_id} kept changing")).into())
    }

    /// The owner's code, as typed at the verification page. It is hashed here, under the challenge's id, and the
    /// plain digits go no further. An authenticator code typed with it is checked by the directory, which holds the
    /// secret; the core learns only whether it was valid.
    pub async fn submit_code(
        &self,
        case_id: &CaseId,
        command_id: CommandId,
        actor: Actor,
        typed: &str,
        typed_totp: Option<&str>,
    ) -> Result<Handled, ServiceError> {
        let (state, _) = self.load(case_id).await?;
        let code = VerificationCode::parse(typed).ok_or_else(|| {
            ServiceError::Rejected(Rejection::InvalidValue {
                field: "code".into(),
                expected: format!("{} digits", crate::core::limits::CODE_DIGITS),
            })
        })?;
        // Without an open challenge any hash will do: decide refuses the command before comparing.
        let challenge_id = state
            .challenge
            .as_ref()
            .map(|challenge| challenge.challenge_id.clone())
            .unwrap_or_else(|| crate::core::ids::ChallengeId::new("none"));
        let proof = self.keys.code.hash(&challenge_id, &code);
        // The message's code is compared first (in constant time, as `decide` compares it again): a mistyped code
        // must not use up the authenticator code typed with it, or the owner who retypes both within the same
        // 30-second step is refused for a code they typed right (issue 15, item 17).
        let code_right = state.challenge.as_ref().is_some_and(|challenge| {
            !challenge.proven_destinations(&proof).is_empty() && self.clock.now() < challenge.expires_at
        });
        let second_factor = match (typed_totp, &state.facts) {
            // Only a proof `decide` will look at spends an authenticator code: from a role allowed to prove, for a case
            // waiting for proof, with the right code. Anything else is refused by `decide` without the authenticator
            // code being used up.
            (Some(typed), Some(facts))
                if crate::core::command::CommandKind::SubmitProof.allowed_roles().contains(&actor.role)
                    && state.status == crate::core::state::Status::Requested
                    && facts.snapshot.totp_enrolled_since.is_some()
                    && code_right
                    && !state.has_seen(&actor, &command_id) =>
            {
                let (directory, account, typed, now) =
                    (self.directory.clone(), facts.account_id.clone(), typed.to_string(), self.clock.now());
                tokio::task::spawn_blocking(move || directory.verify_totp(&account, &typed, now))
                    .await
                    .map_err(|error| ServiceError::Corrupt(format!("the directory check stopped: {error}")))??
            }
            (Some(_), _) | (None, _) => SecondFactorCheck::NotGiven,
        };
        let command = Command::SubmitProof { proof, second_factor };
        self.handle(case_id, CommandEnvelope { command_id, actor, command }).await
    }

    /// Flips the kill switch (operator role), recorded in the control stream.
    pub async fn control(
        &self,
        command_id: CommandId,
        actor: Actor,
        command: ControlCommand,
    ) -> Result<bool, ServiceError> {
        for _ in 0..CONFLICT_RETRIES_MAX {
            let (state, version, last_sequence) = self.control_state().await?;
            let events = decide_control(&command_id, &actor, &command, &state, self.clock.now())
                .map_err(ServiceError::Rejected)?;
            if events.is_empty() {
                return Ok(state.halted);
            }
            let encoded = events
                .iter()
                .enumerate()
                .map(|(offset, event)| encode_control_event(version + offset as u64 + 1, event))
                .collect();
            match self
                .log
                .append(
                    &Stream::Control,
                    last_sequence,
                    &format!("control:{}", sender_key(&actor, &command_id)),
                    encoded,
                )
                .await
            {
                Err(LogError::Conflict { .. }) => continue,
                Err(error) => return Err(error.into()),
                Ok(_) => {
                    self.project_if_inline().await?;
                    return Ok(events.iter().fold(state, evolve_control).halted);
                }
            }
        }
        Err(LogError::Unavailable("the control stream kept changing".into()).into())
    }

    async fn project_if_inline(&self) -> Result<(), ServiceError> {
        if self.project_inline {
            self.catch_up_projection().await?;
        }
        Ok(())
    }

    /// Applies every log entry the projection has not seen yet.
    pub async fn catch_up_projection(&self) -> Result<u64, ServiceError> {
        let mut last = self.projection.last_sequence()?;
        loop {
            let entries: Vec<Entry> = self.log.read_after(last, PROJECTION_BATCH_MAX).await?;
            if entries.is_empty() {
                return Ok(last);
            }
            last = self.projection.apply(&entries)?;
        }
    }
}

/// A command id as its sender means it: the log's message ids name the sender too, so that two actors who pick the
/// same command id are never taken for one retried command (issue 15, item 2).
pub(crate) fn sender_key(actor: &Actor, command_id: &CommandId) -> String {
    format!("{}.{}:{command_id}", actor.role, actor.id)
}
