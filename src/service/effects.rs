//! What appended events set in motion: codes and notices to the owner's destinations, the executor applying an
//! authorized change, the timers, rollback's directory effect, and cancel links. Every effect carries an
//! idempotency id (message id, effect id), so running one twice does nothing the second time.

use crate::core::actor::Actor;
use crate::core::command::{Command, CommandEnvelope, CommandKind, EffectOutcome};
use crate::core::event::{Event, EventBody};
use crate::core::ids::{CaseId, CommandId, DestinationId, UnixMs};
use crate::core::limits::NOTICE_REDELIVERY_WINDOW_MS;
use crate::core::rejection::Rejection;
use crate::core::state::{CaseState, Status};
use crate::core::text::UntrustedText;
use crate::core::verification::VerificationCode;
use crate::directory::DirectoryError;
use crate::log::EventLog;
use crate::service::context::Prepared;
use crate::service::notices::EventPosition;
use crate::service::{Handled, Service, ServiceError};

impl<L: EventLog> Service<L> {
    /// Effects that must happen before their event is recorded. Rollback applies its reversal first (idempotent by
    /// effect id), so that `rolled_back` in the log always means the directory was restored.
    pub(super) async fn effects_before_append(
        &self,
        case_id: &CaseId,
        state: &CaseState,
        events: &[Event],
    ) -> Result<(), ServiceError> {
        for event in events {
            if let EventBody::RolledBack { effect_id, reversal, .. } = &event.body {
                let facts = state.facts.as_ref().expect("an executed case has facts");
                let executed_at = state.executed_at.expect("an executed case has an execution time");
                self.directory.revert(effect_id, &facts.account_id, reversal, executed_at, event.at).await?;
                tracing::info!(case = %case_id, effect = %effect_id, "rollback applied to the directory");
                crate::observe::effect("rollback", "applied");
            }
            // A change is scheduled: the account's other security settings are frozen until the case ends. Held before
            // the append, so a crash can leave a hold for a case that did not move (released when it ends), never a
            // scheduled change without one.
            if let (EventBody::CoolingOffStarted { .. }, true) = (&event.body, self.directory.capabilities().hold) {
                let facts = state.facts.as_ref().expect("a case in cooling-off has facts");
                self.directory.hold(&facts.account_id, case_id.as_str(), event.at).await?;
            }
        }
        Ok(())
    }

    /// What follows the events just appended: an ended case releases its hold on the account, and the notices the
    /// events call for are delivered (`notices`).
    pub(super) async fn effects_after_append(
        &self,
        case_id: &CaseId,
        state: &CaseState,
        events: &[Event],
        first_sequence: u64,
        prepared: &Prepared,
    ) -> Result<(), ServiceError> {
        let facts = state.facts.as_ref().expect("a case with events has facts");
        // One line per step, ids and names only: never a code, token, address or summary.
        let steps: Vec<&str> = events.iter().map(|event| event.body.kind().name()).collect();
        tracing::info!(
            case = %case_id,
            actor = %events.last().map_or_else(String::new, |event| event.actor.to_string()),
            steps = %steps.join(","),
            status = state.status.name(),
            "case step"
        );
        let ended = state.status.is_terminal() || state.status == Status::Executed;
        if ended && self.directory.capabilities().hold {
            self.directory.release(&facts.account_id, case_id.as_str()).await?;
        }
        let first_version = (state.events - events.len()) as u64 + 1;
        let mut outgoing = Vec::new();
        for (offset, event) in events.iter().enumerate() {
            // A commit holds several events under one log sequence, so an event is named by the commit's sequence and
            // its place in the commit: `first_sequence + offset` would collide with the next commit's events.
            let position = EventPosition { commit: first_sequence, offset };
            let codes: &[(DestinationId, VerificationCode)] =
                if let EventBody::ChallengeIssued { challenge_id, .. } = &event.body {
                    let ours = prepared.fresh.as_ref().is_some_and(|fresh| &fresh.challenge_id == challenge_id);
                    assert!(ours, "a challenge is issued with its codes");
                    &prepared.codes
                } else {
                    &[]
                };
            outgoing.extend(self.notices_of(case_id, state, event, (first_version + offset as u64, position), codes));
        }
        self.deliver(case_id, outgoing).await
    }

    /// Runs every timer that is due and every execution that is pending. Returns how many commands appended events.
    /// One case that fails (a directory that keeps refusing, a corrupt stream) is logged and skipped, so it cannot
    /// hold back every case due after it; the first such error is returned once all cases were tried.
    pub async fn run_due(&self) -> Result<usize, ServiceError> {
        let (mut moved, mut first_error) = (0, None);
        let mut outcome = |case_id: &CaseId, result: Result<Handled, ServiceError>| match result {
            Ok(handled) => moved += usize::from(handled.appended > 0),
            Err(error) => {
                tracing::warn!(case = %case_id, %error, "timers: this case will be tried again on the next tick");
                first_error.get_or_insert(error);
            }
        };
        // What is due, executing and owed, in one read (a tick with nothing to do is one hop to the blocking pool).
        // The ticks first, then the executions (a tick may have just started one: then they are read again).
        let mut work = self.timer_work().await?;
        if !work.due.is_empty() {
            for (case_id, result) in self.each_case(std::mem::take(&mut work.due), Timer::Tick).await {
                outcome(&case_id, result);
            }
            work = self.timer_work().await?;
        }
        for (case_id, result) in self.each_case(std::mem::take(&mut work.executing), Timer::Execute).await {
            outcome(&case_id, result);
        }
        if let Err(error) = self.resend_owed_notices(work.owed).await {
            tracing::warn!(%error, "notices: owed notices will be looked at again on the next tick");
            first_error.get_or_insert(error);
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(moved),
        }
    }

    /// The projection's `timer_work` as of now, with the window of owed notices that are sent again.
    async fn timer_work(&self) -> Result<crate::projection::query::TimerWork, ServiceError> {
        let (projection, now) = (self.projection.clone(), self.clock.now());
        let owed_from = UnixMs(now.0.saturating_sub(NOTICE_REDELIVERY_WINDOW_MS));
        super::context::blocking(move || Ok(projection.timer_work(now, owed_from)?)).await
    }

    /// Runs `timer` for each case, a few cases side by side: one case waiting on a slow directory must not hold up
    /// the others'.
    async fn each_case(&self, cases: Vec<CaseId>, timer: Timer) -> Vec<(CaseId, Result<Handled, ServiceError>)> {
        use futures::StreamExt;
        futures::stream::iter(cases)
            .map(|case_id| async move {
                let result = match timer {
                    Timer::Tick => self.tick(&case_id).await,
                    Timer::Execute => self.execute(&case_id).await,
                };
                (case_id, result)
            })
            .buffer_unordered(TIMERS_AT_ONCE)
            .collect()
            .await
    }

    /// The timer's command for one case: a tick named after the case's length, so racing processes send the same one.
    async fn tick(&self, case_id: &CaseId) -> Result<Handled, ServiceError> {
        let (state, _) = self.load(case_id).await?;
        let command_id = CommandId::new(format!("tick:{}", state.events));
        let envelope = CommandEnvelope { command_id, actor: Actor::system(), command: Command::Tick };
        self.handle(case_id, envelope).await
    }

    /// The executor: applies the case's pending effect to the directory (once per effect id) and records the result.
    /// A directory that gives no usable answer for `EXECUTION_UNCONFIRMED_MS` after the execution started ends the
    /// attempt as failed, so the case goes back to people instead of waiting in `executing` for ever.
    pub async fn execute(&self, case_id: &CaseId) -> Result<Handled, ServiceError> {
        let (state, events) = self.load(case_id).await?;
        let (Status::Executing, Some(effect_id), Some(facts)) = (state.status, &state.effect, &state.facts) else {
            return Ok(Handled::of(case_id, &state, 0));
        };
        let outcome = match self.attempt(effect_id, facts).await {
            Ok(outcome) => outcome,
            Err(ServiceError::Directory(error)) if self.unconfirmed_too_long(&events) => {
                let what = match error {
                    DirectoryError::Corrupt(_) => "answers airlock cannot read",
                    _ => "no answer",
                };
                // The last answer goes on the case for the people who look next: bounded (a directory error quotes at
                // most a short, printable start of an answer) and never a password (never quoted at all).
                EffectOutcome::Failed {
                    reason: format!(
                        "the directory gave {what} for this change for over {} minutes; it may or may not have been \
                         applied: check the account in the directory before approving it again (last: {})",
                        crate::core::limits::EXECUTION_UNCONFIRMED_MS / 60_000,
                        bounded(&error.to_string())
                    ),
                }
            }
            Err(error) => {
                crate::observe::effect("execute", "unavailable");
                return Err(error);
            }
        };
        let held = if matches!(outcome, EffectOutcome::Applied { .. }) { "applied" } else { "failed" };
        crate::observe::effect("execute", held);
        self.confirm(case_id, effect_id, outcome).await
    }

    /// Whether the case's latest execution started more than `EXECUTION_UNCONFIRMED_MS` ago.
    fn unconfirmed_too_long(&self, events: &[Event]) -> bool {
        let started = events.iter().rev().find_map(|event| match event.body {
            EventBody::ExecutionStarted { .. } => Some(event.at),
            _ => None,
        });
        started
            .is_some_and(|at| self.clock.now().0 >= at.0.saturating_add(crate::core::limits::EXECUTION_UNCONFIRMED_MS))
    }

    /// One attempt at the case's effect: what the directory did, or the error that says it could not be asked.
    async fn attempt(
        &self,
        effect_id: &crate::core::ids::EffectId,
        facts: &crate::core::state::CaseFacts,
    ) -> Result<EffectOutcome, ServiceError> {
        // A directory that cannot hold the account is trusted no further than a read: the account is read again just
        // before the change, and any factor change since the request sends the case to people (issue 18, item 7),
        // except what this case's own change does (an earlier attempt may have been applied and not recorded).
        if !self.directory.capabilities().hold {
            let now = self.directory.snapshot(&facts.account_id).await?;
            let changed: Vec<String> =
                facts.action.unexplained_changes(&facts.snapshot, &now).iter().map(ToString::to_string).collect();
            if !changed.is_empty() {
                let reason = format!(
                    "the account changed since the decision ({}) and the directory cannot hold it: a person must look \
                     again",
                    changed.join(", ")
                );
                return Ok(EffectOutcome::Failed { reason });
            }
        }
        let executed =
            self.directory.execute(effect_id, &facts.account_id, &facts.action, &facts.snapshot, self.clock.now());
        Ok(match executed.await {
            Ok(changes) => {
                crash_after_effect_if_asked(effect_id);
                EffectOutcome::Applied { changes }
            }
            Err(DirectoryError::Held { case, .. }) => {
                EffectOutcome::Failed { reason: format!("the account is frozen while recovery {case} is pending") }
            }
            Err(DirectoryError::NoSuchAccount(account)) => {
                EffectOutcome::Failed { reason: format!("account {account} no longer exists") }
            }
            Err(DirectoryError::Refused(answer)) => {
                EffectOutcome::Failed { reason: format!("the directory refused the change: {answer}") }
            }
            Err(DirectoryError::Changed(changes)) => EffectOutcome::Failed {
                reason: format!("the account changed since the decision ({changes}): a person must look again"),
            },
            Err(error) => return Err(error.into()),
        })
    }

    /// Records what became of the case's effect.
    async fn confirm(
        &self,
        case_id: &CaseId,
        effect_id: &crate::core::ids::EffectId,
        outcome: EffectOutcome,
    ) -> Result<Handled, ServiceError> {
        let command = Command::ConfirmExecution { effect_id: effect_id.clone(), outcome };
        let command_id = CommandId::new(format!("confirm:{effect_id}"));
        self.handle(case_id, CommandEnvelope { command_id, actor: Actor::system(), command }).await
    }

    /// A cancel from a link in a notice: the token must be the one signed for this case and destination.
    pub async fn cancel_with_link(
        &self,
        case_id: &CaseId,
        destination_id: &DestinationId,
        token: &str,
    ) -> Result<Handled, ServiceError> {
        if !self.keys.cancel_token_valid(case_id.as_str(), destination_id.as_str(), token) {
            return Err(ServiceError::Rejected(Rejection::InvalidValue {
                field: "token".into(),
                expected: "the token from the cancel link".into(),
            }));
        }
        let actor = Actor::new(crate::core::actor::Role::Owner, format!("destination:{destination_id}"));
        let reason = UntrustedText::new("reason", "cancelled from a cancel link", 64).expect("a short constant fits");
        let command_id = CommandId::new(format!("cancel-link:{destination_id}"));
        self.handle(case_id, CommandEnvelope { command_id, actor, command: Command::Cancel { reason } }).await
    }
}

impl<L: EventLog> Service<L> {
    /// The owner's new password from the set-password link an applied reset sent to `destination` (issue 18, item 5).
    /// The link's token must be the one signed for this case, destination and `until_ms`, the case must still let the
    /// link be used (`set_password_allowed`: once, in time, sent there), and then the directory sets the password and
    /// the use is recorded, which spends the link. Two uses at once may both reach the directory (the later one's
    /// password stands); only one is recorded, and every use after that is refused before the directory is asked.
    pub async fn set_password_with_link(
        &self,
        case_id: &CaseId,
        destination: &DestinationId,
        (until_ms, token): (u64, &str),
        password: &crate::directory::Password,
    ) -> Result<Handled, ServiceError> {
        let actor = Actor::new(crate::core::actor::Role::Owner, format!("destination:{destination}"));
        let command_id = CommandId::new(format!("set-password:{destination}"));
        // A real link refused (spent, late, halted, or for a destination gone since) is recorded on the case, as every
        // refused command is: someone else holding the link leaves a trace. A forged one is only logged: anyone can
        // send one, and it must not read as the owner's act nor use up the case's record of refusals.
        let refused = |rejection| self.refuse(case_id, &actor, &command_id, CommandKind::SetPassword, rejection);
        if !self.keys.set_password_token_valid(case_id.as_str(), destination.as_str(), until_ms, token) {
            tracing::warn!(case = %case_id, "set-password link: a token that is not airlock's");
            let expected = "the token from the set-password link".into();
            return Err(ServiceError::Rejected(Rejection::InvalidValue { field: "token".into(), expected }));
        }
        let now = self.clock.now();
        let (state, _) = self.load(case_id).await?;
        let halted = self.control_state().await?.0.halted;
        if let Err(rejection) =
            crate::core::decide::set_password_allowed(&state, destination, (now, &self.settings, halted))
        {
            return Err(refused(rejection).await);
        }
        // The signed time must be the case's own: a token is good only for the link this reset sent.
        if crate::core::decide::set_password_link_until(&state).map(|until| until.0) != Some(until_ms) {
            return Err(refused(Rejection::DeadlinePassed).await);
        }
        let facts = state.facts.as_ref().expect("an executed case has facts");
        // The account is read again: a destination removed (or changed) at the directory since the reset has lost its
        // say, and its link with it.
        let sent_to = facts.snapshot.destination(destination).map(|known| known.address.clone());
        let now_there = self.directory.snapshot(&facts.account_id).await?;
        let still =
            now_there.destination(destination).filter(|current| !current.revoked).map(|current| &current.address);
        if sent_to.is_none() || still != sent_to.as_ref() {
            let expected = "a destination still on the account".into();
            return Err(refused(Rejection::InvalidValue { field: "destination".into(), expected }).await);
        }
        // Each use has its own key: a directory that answers a repeated key with its first answer must not report a
        // second password as set while the first stands.
        let key = format!("{case_id}/set-password/{destination}/{}", crate::service::new_id("use"));
        let mut changes = self.directory.set_password(&key, &facts.account_id, password, now).await?;
        // What the directory says it did goes into the log: never the password, whatever it answered.
        for change in &mut changes {
            for value in [&mut change.old, &mut change.new].into_iter().flatten() {
                if value.contains(password.reveal_to_directory()) {
                    *value = "***".to_string();
                }
            }
        }
        let command = Command::SetPassword { destination: destination.clone(), changes };
        self.handle(case_id, CommandEnvelope { command_id, actor, command }).await
    }
}

/// At most `REASON_QUOTED_CHARS_MAX` characters of `text`, printable.
fn bounded(text: &str) -> String {
    const REASON_QUOTED_CHARS_MAX: usize = 300;
    let start: String = text.chars().take(REASON_QUOTED_CHARS_MAX).collect();
    crate::core::text::for_terminal(&start)
}

/// How many cases the timers move at once.
const TIMERS_AT_ONCE: usize = 8;

/// What the timers do to a case.
#[derive(Clone, Copy)]
enum Timer {
    Tick,
    Execute,
}

/// The environment variable of the test-only crash point below.
#[cfg(debug_assertions)]
const CRASH_AFTER_EFFECT_VARIABLE: &str = "AIRLOCK_CRASH_AFTER_EFFECT";

/// A crash point for tests only: with `AIRLOCK_CRASH_AFTER_EFFECT=1`, the process aborts right after the directory
/// applied an effect and before its confirmation is appended, the one moment where a crash leaves a change made but
/// not recorded. It is how the end-to-end tests prove that a restarted executor confirms that change without
/// applying it again (the effect id makes the directory return what it recorded the first time). `abort` runs no
/// destructor, flushes nothing and acknowledges nothing, like a power cut. It exists only in debug builds
/// (`debug_assertions`), so no environment can make a release binary stop here.
#[cfg(debug_assertions)]
fn crash_after_effect_if_asked(effect_id: &crate::core::ids::EffectId) {
    if std::env::var_os(CRASH_AFTER_EFFECT_VARIABLE).is_some_and(|value| value == "1") {
        eprintln!("{CRASH_AFTER_EFFECT_VARIABLE}=1: aborting after effect {effect_id}, before its confirmation");
        std::process::abort();
    }
}

#[cfg(not(debug_assertions))]
fn crash_after_effect_if_asked(_effect_id: &crate::core::ids::EffectId) {}
