//! What appended events set in motion: codes and notices to the owner's destinations, the executor applying an
//! authorized change, the timers, rollback's directory effect, and cancel links. Every effect carries an
//! idempotency id (message id, effect id), so running one twice does nothing the second time.

use crate::core::actor::Actor;
use crate::core::command::{Command, CommandEnvelope, EffectOutcome};
use crate::core::event::{Event, EventBody};
use crate::core::ids::{CaseId, CommandId, DestinationId, UnixMs};
use crate::core::rejection::Rejection;
use crate::core::state::{CaseState, Status};
use crate::core::text::UntrustedText;
use crate::directory::DirectoryError;
use crate::log::EventLog;
use crate::notify::Message;
use crate::service::context::Prepared;
use crate::service::{Handled, Service, ServiceError};

tokio::task_local! {
    static DEFERRED: std::cell::RefCell<Vec<Message>>;
}

/// Notices held back while a front door answers its requester. Not `Debug`: they may hold codes.
#[must_use = "deferred notices must be sent with Service::send_deferred"]
pub struct DeferredNotices(Vec<Message>);

/// Runs `work` (a front door handling one command) with its notices held back instead of sent, and returns them with
/// its result, for `Service::send_deferred` after the answer has gone out. A requester must not be able to tell a
/// known account from an unknown one by how long the answer takes, and only a known account's request sends a code
/// (THREATS 8); with a mail server on the path, sending first made that difference seconds long.
pub async fn with_deferred_notices<T>(work: impl std::future::Future<Output = T>) -> (T, DeferredNotices) {
    DEFERRED
        .scope(std::cell::RefCell::new(Vec::new()), async move {
            let output = work.await;
            let notices = DEFERRED.with(|queue| queue.take());
            (output, DeferredNotices(notices))
        })
        .await
}

/// Where an event sits in the log: its commit's sequence and its place in that commit.
#[derive(Clone, Copy)]
struct EventPosition {
    commit: u64,
    offset: usize,
}

impl<L: EventLog> Service<L> {
    /// Effects that must happen before their event is recorded. Rollback applies its reversal first (idempotent by
    /// effect id), so that `rolled_back` in the log always means the directory was restored.
    pub(super) fn effects_before_append(
        &self,
        case_id: &CaseId,
        state: &CaseState,
        events: &[Event],
    ) -> Result<(), ServiceError> {
        for event in events {
            if let EventBody::RolledBack { effect_id, reversal, .. } = &event.body {
                let facts = state.facts.as_ref().expect("an executed case has facts");
                let executed_at = state.executed_at.expect("an executed case has an execution time");
                self.directory.revert(effect_id, &facts.account_id, reversal, executed_at, event.at)?;
                tracing::info!(case = %case_id, effect = %effect_id, "rollback applied to the directory");
            }
            // A change is scheduled: the account's other security settings are frozen until the case ends. Held before
            // the append, so a crash can leave a hold for a case that did not move (released when it ends), never a
            // scheduled change without one.
            if let EventBody::CoolingOffStarted { .. } = &event.body {
                let facts = state.facts.as_ref().expect("a case in cooling-off has facts");
                self.directory.hold(&facts.account_id, case_id.as_str(), event.at)?;
            }
        }
        Ok(())
    }

    /// Notifications for the events just appended. A code goes only to the destinations its `ChallengeIssued` event
    /// names, which the core chose among the pre-existing, old-enough ones.
    pub(super) fn effects_after_append(
        &self,
        case_id: &CaseId,
        state: &CaseState,
        events: &[Event],
        first_sequence: u64,
        prepared: &Prepared,
    ) -> Result<(), ServiceError> {
        let facts = state.facts.as_ref().expect("a case with events has facts");
        if state.status.is_terminal() || state.status == Status::Executed {
            self.directory.release(&facts.account_id, case_id.as_str())?;
        }
        for (offset, event) in events.iter().enumerate() {
            // A commit holds several events under one log sequence, so an event is named by the commit's sequence and
            // its place in the commit: `first_sequence + offset` would collide with the next commit's events.
            let sequence = EventPosition { commit: first_sequence, offset };
            match &event.body {
                EventBody::ChallengeIssued { challenge_id, destinations, expires_at, .. } => {
                    let ours = prepared.fresh.as_ref().is_some_and(|fresh| &fresh.challenge_id == challenge_id);
                    let code = prepared.code.as_ref().filter(|_| ours).expect("a challenge is issued with its code");
                    let body = format!(
                        "Someone asked to {} on your account {}.\n\nIf it was you, enter this code at {}/verify?case={case_id} : {}\nIt expires at {expires_at}.\n\nNobody from support, and no assistant, will ever ask you for this code. If it was not you, ignore this message: nothing changes without the code.",
                        facts.action.describe(),
                        facts.account_id,
                        self.public_url,
                        code.reveal_for_delivery()
                    );
                    self.send_each(
                        case_id,
                        sequence,
                        destinations,
                        state,
                        "Your account recovery code",
                        &body,
                        event.at,
                    )?;
                }
                EventBody::CoolingOffStarted { ends_at, notify, .. } => {
                    for destination in notify {
                        let link = format!(
                            "{}/cancel?case={case_id}&destination={destination}&token={}",
                            self.public_url,
                            self.keys.cancel_token(case_id.as_str(), destination.as_str())
                        );
                        let body = format!(
                            "A request to {} on your account {} was authorized. It takes effect at {ends_at} unless it is cancelled.\n\nIf this was not you, cancel it now: {link}",
                            facts.action.describe(),
                            facts.account_id
                        );
                        let subject = "A change to your account is scheduled";
                        self.send_each(
                            case_id,
                            sequence,
                            std::slice::from_ref(destination),
                            state,
                            subject,
                            &body,
                            event.at,
                        )?;
                    }
                }
                EventBody::ExecutionConfirmed { .. } | EventBody::RolledBack { .. } => {
                    let done = if matches!(event.body, EventBody::RolledBack { .. }) {
                        "was rolled back"
                    } else {
                        "was applied"
                    };
                    let body = format!(
                        "The request to {} on your account {} {done} at {}. If you did not expect this, contact support from this address.",
                        facts.action.describe(),
                        facts.account_id,
                        event.at
                    );
                    let notify: Vec<DestinationId> = facts
                        .snapshot
                        .pre_existing(facts.requested_at)
                        .iter()
                        .map(|destination| destination.id.clone())
                        .collect();
                    self.send_each(case_id, sequence, &notify, state, "Your account was changed", &body, event.at)?;
                }
                EventBody::RecoveryRequested { .. }
                | EventBody::ChallengeWithheld { .. }
                | EventBody::ProofRejected { .. }
                | EventBody::ProofAccepted { .. }
                | EventBody::SecondFactorProven { .. }
                | EventBody::ReviewRequired { .. }
                | EventBody::ReviewApproved { .. }
                | EventBody::CaseDenied { .. }
                | EventBody::CaseCancelled { .. }
                | EventBody::ExecutionStarted { .. }
                | EventBody::ExecutionFailed { .. }
                | EventBody::CaseExpired
                | EventBody::CommandRefused { .. } => {}
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn send_each(
        &self,
        case_id: &CaseId,
        sequence: EventPosition,
        destinations: &[DestinationId],
        state: &CaseState,
        subject: &str,
        body: &str,
        at: UnixMs,
    ) -> Result<(), ServiceError> {
        let facts = state.facts.as_ref().expect("a case with events has facts");
        for id in destinations {
            let destination =
                facts.snapshot.destination(id).expect("events name destinations of the recorded snapshot");
            let message = Message {
                message_id: format!("{}.{}/{id}", sequence.commit, sequence.offset),
                case_id: case_id.clone(),
                kind: destination.kind,
                address: destination.address.clone(),
                subject: subject.to_string(),
                body: body.to_string(),
                sent_at: at,
            };
            // Inside `with_deferred_notices` the message waits for the caller to answer first.
            let deferred = DEFERRED.try_with(|queue| queue.borrow_mut().push(message.clone())).is_ok();
            if !deferred {
                self.notifier.send(&message)?;
            }
        }
        Ok(())
    }

    /// Sends notices a front door held back with `with_deferred_notices`, once its answer is out. The sending runs on
    /// the blocking pool (a mail server may take seconds). A notice that cannot be sent is logged by its id, never
    /// its body.
    pub async fn send_deferred(&self, notices: DeferredNotices) {
        if notices.0.is_empty() {
            return;
        }
        let notifier = self.notifier.clone();
        let sent = tokio::task::spawn_blocking(move || {
            for message in &notices.0 {
                if let Err(error) = notifier.send(message) {
                    tracing::error!(message = %message.message_id, case = %message.case_id, %error, "notice not sent");
                }
            }
        });
        if let Err(error) = sent.await {
            tracing::error!(%error, "the notice sender stopped");
        }
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
        for case_id in self.projection.due_cases(self.clock.now())? {
            outcome(&case_id, self.tick(&case_id).await);
        }
        for case_id in self.projection.case_ids(Some(Status::Executing.name()))? {
            outcome(&case_id, self.execute(&case_id).await);
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(moved),
        }
    }

    /// The timer's command for one case: a tick named after the case's length, so racing processes send the same one.
    async fn tick(&self, case_id: &CaseId) -> Result<Handled, ServiceError> {
        let (state, _) = self.load(case_id).await?;
        let command_id = CommandId::new(format!("tick:{}", state.events));
        let envelope = CommandEnvelope { command_id, actor: Actor::system(), command: Command::Tick };
        self.handle(case_id, envelope).await
    }

    /// The executor: applies the case's pending effect to the directory (once per effect id) and records the result.
    pub async fn execute(&self, case_id: &CaseId) -> Result<Handled, ServiceError> {
        let (state, _) = self.load(case_id).await?;
        let (Status::Executing, Some(effect_id), Some(facts)) = (state.status, &state.effect, &state.facts) else {
            return Ok(Handled { case_id: case_id.clone(), status: state.status, appended: 0 });
        };
        let outcome = match self.directory.execute(effect_id, &facts.account_id, &facts.action, self.clock.now()) {
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
            Err(error) => return Err(error.into()),
        };
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
