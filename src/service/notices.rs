//! Notices to the owner's destinations: the code of a challenge, the cancel links of a scheduled change, and word of
//! a change applied or rolled back. The last three are owed by their case until a `NoticesDelivered` event records
//! their delivery (ADR 10): one that could not be sent (a mail server down, a crash between the append and the send)
//! is sent again by the timers, with the same message id, until it is delivered or a week old. A code is sent once:
//! only its hash is kept, and its owner asks again.

use crate::core::account::DestinationKind;
use crate::core::actor::Actor;
use crate::core::command::{Command, CommandEnvelope};
use crate::core::decide::{Context, decide};
use crate::core::event::{Event, EventBody};
use crate::core::ids::{CaseId, CommandId, DestinationId, UnixMs};
use crate::core::limits::{
    NOTICE_REDELIVERY_WINDOW_MS, NOTICE_RESEND_AFTER_MS, NOTICE_RESENDS_PER_TICK_MAX, NOTICE_RETRY_MS_MAX,
    NOTICE_RETRY_MS_MIN,
};
use crate::core::notices::{NoticeKind, owed_by};
use crate::core::state::{CaseFacts, CaseState, fold};
use crate::core::verification::VerificationCode;
use crate::log::EventLog;
use crate::log::envelope::{Decoded, Stream, decode};
use crate::notify::{Message, NotifyError};
use crate::service::repository::{Retries, Round, Written};
use crate::service::{Service, ServiceError};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

tokio::task_local! {
    static DEFERRED: std::cell::RefCell<Vec<Outgoing>>;
}

/// One message on its way, and the owed notice its delivery settles (none for a code).
#[derive(Clone)]
pub(super) struct Outgoing {
    message: Message,
    /// The case version of the event that owes the notice, and its destination.
    owed: Option<(u64, DestinationId)>,
}

/// Notices held back while a front door answers its requester. Not `Debug`: they may hold codes.
#[must_use = "deferred notices must be sent with Service::send_deferred"]
pub struct DeferredNotices(Vec<Outgoing>);

/// Notice batches sent at once in this process, each on a thread of its own (`Service::sent_on_a_thread`): bounds the
/// threads a slow mail server or SMS provider can pile up. Beyond it the next batch waits, holding no thread.
pub const NOTICE_THREADS_MAX: usize = 64;

static NOTICE_THREADS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(NOTICE_THREADS_MAX);

/// Held-back notices being sent in the background, each after its answer went out, for front doors that cannot send
/// them after answering in the same task (an HTTP handler, an MCP tool). `finish` waits for all of them, so a process
/// that stops right after answering still sends the owner's code.
#[derive(Default)]
pub struct Sending(std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>);

impl Sending {
    /// Sends `notices` on their own task.
    pub fn spawn<L: EventLog + 'static>(&self, service: std::sync::Arc<Service<L>>, notices: DeferredNotices) {
        let handle = tokio::spawn(async move { service.send_deferred(notices).await });
        let mut pending = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        pending.retain(|handle| !handle.is_finished());
        pending.push(handle);
    }

    /// Waits until every notice spawned so far has been sent (or failed, which is logged).
    pub async fn finish(&self) {
        let pending = std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for handle in pending {
            let _ = handle.await;
        }
    }
}

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

/// Where an event sits in the log: its commit's sequence and its place in that commit. A message is named after it.
#[derive(Clone, Copy)]
pub(super) struct EventPosition {
    pub(super) commit: u64,
    pub(super) offset: usize,
}

/// This process's memory of notices it failed to send, so that it tries again after a growing pause instead of on
/// every tick, and of cases it looked at and found nothing yet to send. Lost on restart, which only means an early
/// retry. One per `Service`.
#[derive(Default)]
pub struct Redelivery {
    /// (case, message id) -> failed attempts, and when to try again.
    failed: Mutex<HashMap<(CaseId, String), (u32, UnixMs)>>,
    /// Case -> when to look at it again.
    next_look: Mutex<HashMap<CaseId, UnixMs>>,
}

impl Redelivery {
    fn failed(&self, case_id: &CaseId, message_id: &str, now: UnixMs) {
        let mut failed = self.failed.lock().expect("the redelivery map is never poisoned");
        let key = (case_id.clone(), message_id.to_string());
        let attempts = failed.get(&key).map_or(0, |(attempts, _)| *attempts) + 1;
        let pause = NOTICE_RETRY_MS_MIN.saturating_mul(1 << (attempts - 1).min(16)).min(NOTICE_RETRY_MS_MAX);
        failed.insert(key, (attempts, now.plus(pause)));
    }

    fn delivered(&self, case_id: &CaseId, message_id: &str) {
        let key = (case_id.clone(), message_id.to_string());
        self.failed.lock().expect("the redelivery map is never poisoned").remove(&key);
    }

    /// When a notice owed since `owed_at` may be sent again: after its pause if this process failed to send it,
    /// else once the process that owes it has had `NOTICE_RESEND_AFTER_MS` to send and record it.
    fn due_at(&self, case_id: &CaseId, message_id: &str, owed_at: UnixMs) -> UnixMs {
        let key = (case_id.clone(), message_id.to_string());
        match self.failed.lock().expect("the redelivery map is never poisoned").get(&key) {
            Some((_, next)) => *next,
            None => owed_at.plus(NOTICE_RESEND_AFTER_MS),
        }
    }

    fn next_look(&self, case_id: &CaseId) -> Option<UnixMs> {
        self.next_look.lock().expect("the redelivery map is never poisoned").get(case_id).copied()
    }

    fn look_again_at(&self, case_id: &CaseId, at: UnixMs) {
        self.next_look.lock().expect("the redelivery map is never poisoned").insert(case_id.clone(), at);
    }

    /// Forgets what is over an hour past its time: a case still owing notices is looked at, and a failed notice
    /// tried, well within that, so such an entry belongs to notices delivered (perhaps by another process), lapsed or
    /// out of the window.
    fn forget_stale(&self, now: UnixMs) {
        let fresh = |at: &UnixMs| at.plus(NOTICE_RETRY_MS_MAX) > now;
        self.failed.lock().expect("never poisoned").retain(|_, (_, next)| fresh(next));
        self.next_look.lock().expect("never poisoned").retain(|_, at| fresh(at));
    }
}

/// A link to a page of the owners' site: `<public url>/<page>?<name>=<value>&...`, every value form-encoded (`+`, `%`,
/// `&`, `/`, spaces and non-ASCII included), so that every id the schemas allow comes back as it was sent.
pub(crate) fn link(public_url: &str, page: &str, query: &[(&str, &str)]) -> String {
    let mut encoded = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in query {
        encoded.append_pair(name, value);
    }
    format!("{}/{page}?{}", public_url.trim_end_matches('/'), encoded.finish())
}

impl<L: EventLog> Service<L> {
    /// The notices `event` calls for, once appended at `version` of the case and `position` of the log. A code goes
    /// only to the destinations its `ChallengeIssued` event names, which the core chose among the pre-existing,
    /// old-enough ones, each its own; `codes` are the plain codes, known only to the process that drew them.
    pub(super) fn notices_of(
        &self,
        case_id: &CaseId,
        state: &CaseState,
        event: &Event,
        (version, position): (u64, EventPosition),
        codes: &[(DestinationId, VerificationCode)],
    ) -> Vec<Outgoing> {
        let Some(facts) = &state.facts else { return Vec::new() };
        let to = Addressing { case_id, facts, event, version, position };
        if let EventBody::ChallengeIssued { destinations, expires_at, .. } = &event.body {
            return self.code_messages(&to, destinations, *expires_at, codes);
        }
        let Some((kind, destinations)) = owed_by(facts, &event.body) else { return Vec::new() };
        let rolled_back = match (kind, &event.body) {
            (NoticeKind::CancelLink, EventBody::CoolingOffStarted { ends_at, .. }) => {
                return self.cancel_link_messages(&to, &destinations, *ends_at);
            }
            (NoticeKind::Applied, EventBody::ExecutionConfirmed { .. })
                if facts.action == crate::core::action::RecoveryAction::ResetPassword =>
            {
                return self.applied_reset_messages(&to, &destinations, state);
            }
            (NoticeKind::Applied, _) => false,
            (NoticeKind::RolledBack, _) => true,
            (NoticeKind::CancelLink, _) => unreachable!("only a scheduled change owes cancel links"),
        };
        destinations
            .iter()
            .map(|destination| {
                let reset = facts.action == crate::core::action::RecoveryAction::ResetPassword;
                let context = to.context(destination, json!({ "rolled_back": rolled_back, "reset": reset }));
                let body = crate::templates::message("messages/changed.txt", context);
                to.message(destination, "Your account was changed", body, true)
            })
            .collect()
    }

    /// The code of each challenged destination, in a message that names the request.
    fn code_messages(
        &self,
        to: &Addressing<'_>,
        destinations: &[DestinationId],
        expires_at: UnixMs,
        codes: &[(DestinationId, VerificationCode)],
    ) -> Vec<Outgoing> {
        let (case_id, facts) = (to.case_id, to.facts);
        let kind_of = |id: &DestinationId| facts.snapshot.destination(id).map(|destination| destination.kind);
        let email_too = destinations.iter().any(|id| kind_of(id) == Some(DestinationKind::Email));
        destinations
            .iter()
            .filter_map(|destination| {
                let code = codes.iter().find(|(id, _)| id == destination).map(|(_, code)| code)?;
                let prefer_email = email_too && kind_of(destination) == Some(DestinationKind::Phone);
                let context = to.context(
                    destination,
                    json!({
                        "link": link(&self.public_url, "verify", &[("case", case_id.as_str())]),
                        "code": code.reveal_for_delivery(),
                        "expires_at": expires_at.to_string(),
                        "prefer_email": prefer_email,
                    }),
                );
                let body = crate::templates::message("messages/code.txt", context);
                Some(to.message(destination, "Your account recovery code", body, false))
            })
            .collect()
    }

    /// An applied reset's notice: to the destinations the reset may be finished from (those that proved it, or every
    /// pre-existing one when people approved it without a proof), a single-use, short-lived link to set the new
    /// password; to the others, that the password was reset.
    fn applied_reset_messages(
        &self,
        to: &Addressing<'_>,
        destinations: &[DestinationId],
        state: &CaseState,
    ) -> Vec<Outgoing> {
        let case_id = to.case_id;
        let linked = crate::core::decide::set_password_destinations(state, &self.settings);
        let until = to.event.at.plus(crate::core::limits::SET_PASSWORD_LINK_TTL_MS);
        destinations
            .iter()
            .map(|destination| {
                let set_password = linked.contains(destination).then(|| {
                    let token = self.keys.set_password_token(case_id.as_str(), destination.as_str(), until.0);
                    let until_text = until.0.to_string();
                    let query = [
                        ("case", case_id.as_str()),
                        ("destination", destination.as_str()),
                        ("until", until_text.as_str()),
                        ("token", token.as_str()),
                    ];
                    link(&self.public_url, "set-password", &query)
                });
                let context = to.context(destination, json!({ "link": set_password, "until": until.to_string() }));
                let body = crate::templates::message("messages/reset.txt", context);
                to.message(destination, "Your account was changed", body, true)
            })
            .collect()
    }

    /// A scheduled change's cancel link for each destination, each with its own token.
    fn cancel_link_messages(
        &self,
        to: &Addressing<'_>,
        destinations: &[DestinationId],
        ends_at: UnixMs,
    ) -> Vec<Outgoing> {
        let case_id = to.case_id;
        destinations
            .iter()
            .map(|destination| {
                let token = self.keys.cancel_token(case_id.as_str(), destination.as_str());
                let link = link(
                    &self.public_url,
                    "cancel",
                    &[("case", case_id.as_str()), ("destination", destination.as_str()), ("token", &token)],
                );
                let context = to.context(destination, json!({ "ends_at": ends_at.to_string(), "link": link }));
                let body = crate::templates::message("messages/scheduled.txt", context);
                to.message(destination, "A change to your account is scheduled", body, true)
            })
            .collect()
    }

    /// Sends `outgoing` now (on a thread of its own: a mail server may take seconds) and records the owed ones that
    /// were delivered; inside `with_deferred_notices` they wait for the caller to answer first instead. An owed notice
    /// that fails is left owed, for the timers; a code that fails is returned as the error, as it cannot be resent.
    pub(super) async fn deliver(&self, case_id: &CaseId, outgoing: Vec<Outgoing>) -> Result<(), ServiceError> {
        if outgoing.is_empty() {
            return Ok(());
        }
        let queued = DEFERRED.try_with(|queue| queue.borrow_mut().extend(outgoing.iter().cloned())).is_ok();
        if queued {
            return Ok(());
        }
        let (delivered, code_error) = self.send(outgoing).await;
        self.record_delivered(delivered).await;
        match code_error {
            Some(error) => {
                tracing::error!(case = %case_id, %error, "a code was not sent; its owner can ask again once it expires");
                Err(error.into())
            }
            None => Ok(()),
        }
    }

    /// Sends notices a front door held back with `with_deferred_notices`, once its answer is out, and records the
    /// owed ones delivered. A notice that cannot be sent is logged by its id, never its body.
    pub async fn send_deferred(&self, notices: DeferredNotices) {
        if notices.0.is_empty() {
            return;
        }
        let (delivered, code_error) = self.send(notices.0).await;
        self.record_delivered(delivered).await;
        if let Some(error) = code_error {
            tracing::error!(%error, "a code was not sent; its owner can ask again once it expires");
        }
    }

    /// Sends each message on a thread of its own, not on tokio's blocking pool: a mail server or SMS provider that is
    /// slow to answer holds that thread only, never the bounded pool every command's SQLite work runs on
    /// (`cli::BLOCKING_THREADS_MAX`), so a slow notice delays no other command (THREATS 18). At most
    /// `NOTICE_THREADS_MAX` such threads run at once, whichever front door the commands came through; a batch beyond
    /// them waits, holding no thread. Each message's result, in order; every message fails if the thread cannot
    /// start, and `Err` if it ended without an answer (a panic: its messages went with it).
    async fn sent_on_a_thread(
        &self,
        outgoing: Vec<Outgoing>,
    ) -> Result<Vec<(Result<(), NotifyError>, Outgoing)>, String> {
        // The slot goes with the thread, so that it is held until the thread ends even if its caller stops waiting.
        let slot = NOTICE_THREADS.acquire().await.map_err(|error| error.to_string())?;
        let notifier = self.notifier.clone();
        let (batch, taken) = std::sync::mpsc::channel::<Vec<Outgoing>>();
        let (done, sent) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new().name("airlock-notices".into()).spawn(move || {
            let _slot = slot;
            let Ok(outgoing) = taken.recv() else { return };
            let _ = done.send(outgoing.into_iter().map(|item| (notifier.send(&item.message), item)).collect());
        });
        let failed = |outgoing: Vec<Outgoing>, why: String| {
            outgoing.into_iter().map(|item| (Err(NotifyError::Unavailable(why.clone())), item)).collect()
        };
        if let Err(error) = spawned {
            return Ok(failed(outgoing, format!("the notice sender could not start: {error}")));
        }
        if let Err(std::sync::mpsc::SendError(outgoing)) = batch.send(outgoing) {
            return Ok(failed(outgoing, "the notice sender ended before it started".to_string()));
        }
        sent.await.map_err(|_| "it ended without an answer (a panic)".to_string())
    }

    /// Sends each message; returns the owed notices delivered, by case, and the first error sending a code.
    async fn send(&self, outgoing: Vec<Outgoing>) -> (Vec<(CaseId, u64, DestinationId)>, Option<NotifyError>) {
        let results = match self.sent_on_a_thread(outgoing).await {
            Ok(results) => results,
            Err(error) => {
                tracing::error!(%error, "the notice sender stopped");
                return (Vec::new(), Some(NotifyError::Unavailable(format!("the notice sender stopped: {error}"))));
            }
        };
        let now = self.clock.now();
        let (mut delivered, mut code_error) = (Vec::new(), None);
        // Per case with a code: whether it reached at least one of its destinations.
        let mut codes: BTreeMap<CaseId, bool> = BTreeMap::new();
        for (result, item) in results {
            let id = &item.message.message_id;
            if item.owed.is_none() {
                *codes.entry(item.message.case_id.clone()).or_default() |= result.is_ok();
            }
            match (result, item.owed) {
                (Ok(()), Some((version, destination))) => {
                    self.redelivery.delivered(&item.message.case_id, id);
                    delivered.push((item.message.case_id, version, destination));
                }
                (Ok(()), None) => {}
                (Err(error), Some(_)) => {
                    self.redelivery.failed(&item.message.case_id, id, now);
                    tracing::warn!(notice = %id, case = %item.message.case_id, %error, "notice not sent; it will be sent again");
                }
                (Err(error), None) => {
                    tracing::warn!(notice = %id, case = %item.message.case_id, %error, "code not sent");
                    code_error.get_or_insert(error);
                }
            }
        }
        for (case_id, _) in codes.into_iter().filter(|(_, reached)| !reached) {
            self.forget_code(&case_id).await;
        }
        (delivered, code_error)
    }

    /// A code that reached none of its destinations is not outstanding (issue 15, item 6): its case's entry in the
    /// account's request ledger loses its code, so the owner's next request is not kept from a code of its own by
    /// one they never received. Failing to record that is logged; the entry then lapses with the code.
    async fn forget_code(&self, case_id: &CaseId) {
        let account = match self.load(case_id).await {
            Ok((state, _)) => state.facts.map(|facts| facts.account_id),
            Err(error) => {
                tracing::warn!(case = %case_id, %error, "an undelivered code could not be taken off its account");
                return;
            }
        };
        let Some(account) = account else { return };
        let key = crate::log::LedgerKey::Account(account.to_string());
        match super::ledgers::forget_code(&self.log, &key, case_id).await {
            Ok(()) => tracing::info!(case = %case_id, "a code reached none of its destinations: it is not outstanding"),
            Err(error) => {
                tracing::warn!(case = %case_id, %error, "an undelivered code could not be taken off its account")
            }
        }
    }

    /// Records delivered notices on their cases, one event per owing event. A failure to record is logged: the notice
    /// stays owed and is sent again, with the same message id, which the outbox and a mail client recognise.
    async fn record_delivered(&self, delivered: Vec<(CaseId, u64, DestinationId)>) {
        let mut by_event: BTreeMap<(CaseId, u64), Vec<DestinationId>> = BTreeMap::new();
        for (case_id, version, destination) in delivered {
            by_event.entry((case_id, version)).or_default().push(destination);
        }
        for ((case_id, version), destinations) in by_event {
            if let Err(error) = self.confirm_notices(&case_id, version, destinations).await {
                tracing::warn!(case = %case_id, event = version, %error, "a delivered notice was not recorded");
            }
        }
    }

    /// Appends the core's `NoticesDelivered` for notices of the event at case version `for_event`. Decides on the
    /// case alone (no facts to gather, no notices to send), so it is its own small loop rather than `handle`.
    async fn confirm_notices(
        &self,
        case_id: &CaseId,
        for_event: u64,
        destinations: Vec<DestinationId>,
    ) -> Result<(), ServiceError> {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(destinations.iter().map(|id| format!("{id}\n")).collect::<String>());
        let command_id = CommandId::new(format!("notices:{for_event}:{}", hex::encode(&digest[..8])));
        let envelope = CommandEnvelope {
            command_id,
            actor: Actor::system(),
            command: Command::ConfirmNotices { for_event, destinations },
        };
        let what = format!("case {case_id}");
        let mut retries = Retries::new(&what);
        loop {
            let (state, _, last_sequence) = self.load_for_append(case_id, retries.attempt().fresh()).await?;
            let context = Context {
                case_id,
                now: self.clock.now(),
                settings: &self.settings,
                halted: false,
                account: None,
                account_facts: Default::default(),
                policy: None,
                fresh_challenge: None,
            };
            let events = decide(&envelope, &state, &context).map_err(ServiceError::Rejected)?;
            if events.is_empty() {
                return Ok(());
            }
            let key = format!("{case_id}:{}", super::sender_key(&envelope.actor, &envelope.command_id));
            let round = match self.append_case(case_id, &state, last_sequence, &key, &events).await? {
                Written::Conflict => Round::Conflict,
                Written::New { .. } | Written::Duplicate => Round::Done(()),
            };
            if retries.settle(round).await?.is_some() {
                return self.project_if_inline().await;
            }
        }
    }

    /// The timers' share of notices: sends again every owed notice that is due (its process had its chance, or this
    /// one's pause after a failure is over) and at most a week old, up to `NOTICE_RESENDS_PER_TICK_MAX` per tick,
    /// among the cases the projection listed as owing (`owed`, read with the tick's other work). Returns how many
    /// were delivered.
    pub(super) async fn resend_owed_notices(&self, owed: Vec<CaseId>) -> Result<usize, ServiceError> {
        let now = self.clock.now();
        let window_start = UnixMs(now.0.saturating_sub(NOTICE_REDELIVERY_WINDOW_MS));
        let (mut attempted, mut delivered_count) = (0, 0);
        self.redelivery.forget_stale(now);
        for case_id in owed {
            if attempted >= NOTICE_RESENDS_PER_TICK_MAX {
                break;
            }
            if self.redelivery.next_look(&case_id).is_some_and(|at| at > now) {
                continue;
            }
            let (state, events) = self.load_with_positions(&case_id).await?;
            if state.facts.is_none() {
                continue;
            }
            let mut outgoing = Vec::new();
            let mut next_look = now.plus(NOTICE_RESEND_AFTER_MS);
            for notice in state.notices.iter().filter(|notice| notice.owed_at >= window_start) {
                let Some((event, position)) = events.get(notice.event as usize - 1) else {
                    return Err(ServiceError::Corrupt(format!("case {case_id} owes a notice for a missing event")));
                };
                let due = self.notices_of(&case_id, &state, event, (notice.event, *position), &[]);
                for item in due {
                    if item.owed.as_ref().is_some_and(|(_, destination)| destination == &notice.destination) {
                        let at = self.redelivery.due_at(&case_id, &item.message.message_id, notice.owed_at);
                        if at <= now {
                            outgoing.push(item);
                        } else {
                            next_look = next_look.min(at);
                        }
                    }
                }
            }
            outgoing.truncate(NOTICE_RESENDS_PER_TICK_MAX - attempted);
            attempted += outgoing.len();
            self.redelivery.look_again_at(&case_id, next_look);
            if outgoing.is_empty() {
                continue;
            }
            tracing::info!(case = %case_id, notices = outgoing.len(), "sending owed notices again");
            let sent: Vec<(String, UnixMs)> =
                outgoing.iter().map(|item| (item.message.message_id.clone(), item.message.sent_at)).collect();
            let (delivered, _) = self.send(outgoing).await;
            // A notice that failed again is looked at after its new pause, not the usual one.
            for (message_id, owed_at) in &sent {
                next_look = next_look.min(self.redelivery.due_at(&case_id, message_id, *owed_at).max(now));
            }
            self.redelivery.look_again_at(&case_id, next_look);
            delivered_count += delivered.len();
            self.record_delivered(delivered).await;
        }
        Ok(delivered_count)
    }

    /// The case's state and its events, each with its place in the log (which names its messages).
    async fn load_with_positions(
        &self,
        case_id: &CaseId,
    ) -> Result<(CaseState, Vec<(Event, EventPosition)>), ServiceError> {
        let entries = self.log.read_stream(&Stream::Case(case_id.clone())).await?;
        let mut events = Vec::new();
        for entry in &entries {
            for (offset, bytes) in entry.envelopes.iter().enumerate() {
                match decode(bytes).map_err(|error| ServiceError::Corrupt(error.to_string()))? {
                    Decoded::Case { event, .. } => {
                        events.push((event, EventPosition { commit: entry.sequence, offset }));
                    }
                    Decoded::Control { .. } | Decoded::Alert { .. } => {
                        return Err(ServiceError::Corrupt("a control or alert event in a case stream".into()));
                    }
                }
            }
        }
        let state =
            fold(events.iter().map(|(event, _)| event)).map_err(|error| ServiceError::Corrupt(error.to_string()))?;
        Ok((state, events))
    }
}

/// Where one event's notices go and how they are identified.
struct Addressing<'a> {
    case_id: &'a CaseId,
    facts: &'a CaseFacts,
    event: &'a Event,
    version: u64,
    position: EventPosition,
}

impl Addressing<'_> {
    /// What every message's template is told (the request, its case, when, and where this message goes, masked),
    /// with `extra` added.
    fn context(&self, destination: &DestinationId, extra: serde_json::Value) -> serde_json::Value {
        let facts = self.facts;
        let mut context = json!({
            "action": facts.action.describe(),
            "account": facts.account_id.as_str(),
            "case": self.case_id.as_str(),
            "requester": facts.requester.id.as_str(),
            "requested_at": facts.requested_at.to_string(),
            "at": self.event.at.to_string(),
            "to": self.masked(destination),
        });
        if let (Some(context), serde_json::Value::Object(extra)) = (context.as_object_mut(), extra) {
            context.extend(extra);
        }
        context
    }

    /// The destination as a message names it: masked (`v***@example.com`), never in full.
    fn masked(&self, destination: &DestinationId) -> String {
        self.facts
            .snapshot
            .destination(destination)
            .map_or_else(|| "one of your contact methods".into(), |found| found.masked())
    }

    /// A message to `destination`; an `owed` one is recorded as owed until delivered.
    fn message(&self, destination: &DestinationId, subject: &str, body: String, owed: bool) -> Outgoing {
        let target = self.facts.snapshot.destination(destination).expect("events name destinations of the snapshot");
        Outgoing {
            message: Message {
                message_id: format!("{}.{}/{destination}", self.position.commit, self.position.offset),
                case_id: self.case_id.clone(),
                kind: target.kind,
                address: target.address.clone(),
                subject: subject.to_string(),
                body,
                sent_at: self.event.at,
            },
            owed: owed.then(|| (self.version, destination.clone())),
        }
    }
}
