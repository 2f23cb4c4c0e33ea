//! Notices a case owes are durable (ADR 10): a cancel link or word of an applied change that could not be sent is
//! sent again by the timers, with the same message id, until a `NoticesDelivered` event records it; a process that
//! did not try it itself waits `NOTICE_RESEND_AFTER_MS` first; nothing older than `NOTICE_REDELIVERY_WINDOW_MS` is
//! sent. Runs the embedded service (real SQLite files) on a manual clock, with the outbox behind a switch that
//! makes the notifier fail as a mail server that is down would.

use airlock::clock::{Clock, ManualClock};
use airlock::core::action::RecoveryAction;
use airlock::core::actor::{Actor, Role};
use airlock::core::command::{Command, CommandEnvelope};
use airlock::core::event::EventBody;
use airlock::core::ids::{AccountId, CaseId, CommandId, DestinationId, UnixMs};
use airlock::core::limits::{
    DAY_MS, NOTICE_REDELIVERY_WINDOW_MS, NOTICE_RESEND_AFTER_MS, NOTICE_RETRY_MS_MIN, SECOND_MS,
};
use airlock::core::signals::Signals;
use airlock::core::state::Status;
use airlock::core::text::UntrustedText;
use airlock::keys::Keys;
use airlock::notify::outbox::Outbox;
use airlock::notify::{Message, Notifier, NotifyError};
use airlock::server::embedded::{self, Embedded};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::common;

const START: UnixMs = UnixMs(1_780_304_400_000);
const SCHEDULED: &str = "A change to your account is scheduled";
const CHANGED: &str = "Your account was changed";

/// The outbox behind a switch: while `down`, every send fails (and is counted) as it would with the mail server down.
struct Switchable {
    outbox: Arc<Outbox>,
    down: AtomicBool,
    failed: Mutex<Vec<String>>,
}

impl Notifier for Switchable {
    fn send(&self, message: &Message) -> Result<(), NotifyError> {
        if self.down.load(Ordering::SeqCst) {
            self.failed.lock().unwrap().push(message.message_id.clone());
            return Err(NotifyError::Unavailable("connection refused".to_string()));
        }
        self.outbox.send(message)
    }
}

struct World {
    data: tempfile::TempDir,
    clock: Arc<ManualClock>,
    keys: Keys,
    embedded: Embedded,
    notifier: Arc<Switchable>,
}

impl World {
    fn new() -> World {
        let data = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::starting_at(START));
        let keys = Keys::generate();
        let embedded = embedded::open(data.path(), clock.clone(), keys.clone()).unwrap();
        for account in ["dana", "erin"] {
            embedded.directory.put_account(&common::email_account(account, UnixMs(START.0 - 100 * DAY_MS))).unwrap();
        }
        let mut world = World { notifier: switchable(&embedded), data, clock, keys, embedded };
        world.embedded.service.notifier = world.notifier.clone();
        world
    }

    /// The same data directory opened by another process (or this one, restarted): it shares the log, the projection
    /// and the outbox, and remembers nothing of what this one failed to send.
    fn restarted(&mut self) {
        self.embedded = embedded::open(self.data.path(), self.clock.clone(), self.keys.clone()).unwrap();
        self.notifier = switchable(&self.embedded);
        self.embedded.service.notifier = self.notifier.clone();
    }

    fn set_down(&self, down: bool) {
        self.notifier.down.store(down, Ordering::SeqCst);
    }

    fn failed(&self) -> Vec<String> {
        self.notifier.failed.lock().unwrap().clone()
    }

    /// Messages with `subject` in the outbox, to any account.
    fn outbox(&self, subject: &str) -> Vec<Message> {
        let messages = self.embedded.outbox.messages(None).unwrap();
        messages.into_iter().filter(|message| message.subject == subject).collect()
    }

    /// The `NoticesDelivered` events of the case, as (owing event, destinations, still owed).
    async fn deliveries(&self, case_id: &CaseId) -> Vec<(u64, Vec<DestinationId>, u32)> {
        let (_, events) = self.embedded.service.load(case_id).await.unwrap();
        events
            .into_iter()
            .filter_map(|event| match event.body {
                EventBody::NoticesDelivered { for_event, destinations, outstanding } => {
                    Some((for_event, destinations, outstanding))
                }
                _ => None,
            })
            .collect()
    }

    /// Cases the projection lists as owing notices (over any time).
    fn owing(&self) -> Vec<CaseId> {
        self.embedded.service.projection.notices_owed(UnixMs(0), UnixMs(u64::MAX >> 1)).unwrap()
    }

    /// Opens a reset for `account`; its code goes to the outbox (with the notifier up).
    async fn opened_case(&self, account: &str) -> (CaseId, String) {
        let case_id = CaseId::new(format!("case-{account}"));
        let request = Command::RequestRecovery {
            account_id: AccountId::new(account),
            action: RecoveryAction::ResetPassword,
            summary: UntrustedText::new("summary", "locked out", 100).unwrap(),
            signals: Signals::default(),
        };
        let actor = Actor::new(Role::Intake, "desk");
        let envelope = CommandEnvelope { command_id: CommandId::new("open"), actor, command: request };
        self.embedded.service.handle(&case_id, envelope).await.unwrap();
        let body = self.outbox("Your account recovery code").pop().expect("the code was sent").body;
        (case_id, common::threats::code_in(&body).expect("a code in the message"))
    }

    /// Proves the case with its code: it enters cooling-off, which owes the account's one destination a cancel link.
    async fn prove(&self, case_id: &CaseId, code: &str) -> Status {
        let owner = Actor::new(Role::Owner, "page");
        let proven = self.embedded.service.submit_code(case_id, CommandId::new("proof"), owner, code, None).await;
        proven.expect("a notice that fails does not fail the command").status
    }

    async fn proven_case(&self, account: &str) -> CaseId {
        let (case_id, code) = self.opened_case(account).await;
        assert_eq!(self.prove(&case_id, &code).await, Status::CoolingOff);
        case_id
    }

    /// Moves the clock to the end of the case's cooling-off and lets the timers start and apply the change.
    async fn executed(&self, case_id: &CaseId) {
        let service = &self.embedded.service;
        let ends = service.load(case_id).await.unwrap().0.cooling_off_ends_at.expect("the case is cooling off");
        self.clock.advance(ends.0 - self.clock.now().0);
        service.run_due().await.unwrap();
        service.run_due().await.unwrap();
        assert_eq!(service.load(case_id).await.unwrap().0.status, Status::Executed);
    }
}

fn switchable(embedded: &Embedded) -> Arc<Switchable> {
    Arc::new(Switchable { outbox: embedded.outbox.clone(), down: AtomicBool::new(false), failed: Mutex::default() })
}

// Proves that a cancel link the notifier failed to send is not lost: the command that scheduled the change still
// succeeds, the case and the projection show the notice owed, the timers retry it after a pause that grows while the
// notifier stays down, and once it is up deliver it exactly once, under the message id of the first attempt, and
// record the delivery; the link then cancels the change.
#[tokio::test]
async fn a_cancel_link_that_failed_is_sent_again_until_it_is_delivered() {
    let world = World::new();
    let service = &world.embedded.service;
    let (case_id, code) = world.opened_case("dana").await;
    world.set_down(true);
    assert_eq!(world.prove(&case_id, &code).await, Status::CoolingOff);
    let first_attempt = world.failed();
    assert_eq!(first_attempt.len(), 1, "one cancel link was tried: {first_attempt:?}");
    assert!(world.outbox(SCHEDULED).is_empty());
    assert_eq!(service.load(&case_id).await.unwrap().0.notices.len(), 1);
    assert_eq!(world.owing(), vec![case_id.clone()]);

    // Not before the pause; after it, tried again (and failing again, the pause doubles).
    service.run_due().await.unwrap();
    assert_eq!(world.failed().len(), 1, "retried before its pause");
    world.clock.advance(NOTICE_RETRY_MS_MIN);
    service.run_due().await.unwrap();
    assert_eq!(world.failed().len(), 2, "not retried after its pause");
    world.clock.advance(NOTICE_RETRY_MS_MIN);
    service.run_due().await.unwrap();
    assert_eq!(world.failed().len(), 2, "the pause did not grow");

    world.set_down(false);
    world.clock.advance(NOTICE_RETRY_MS_MIN);
    service.run_due().await.unwrap();
    let delivered = world.outbox(SCHEDULED);
    assert_eq!(delivered.len(), 1);
    assert!(world.failed().iter().all(|id| id == &delivered[0].message_id), "the same message id every time");
    assert_eq!(delivered[0].message_id, first_attempt[0]);
    let version = service.load(&case_id).await.unwrap().1.len() as u64 - 1;
    assert_eq!(world.deliveries(&case_id).await, vec![(version, vec![DestinationId::new("dana-email")], 0)]);
    assert!(service.load(&case_id).await.unwrap().0.notices.is_empty());
    assert_eq!(world.owing(), Vec::<CaseId>::new());

    world.clock.advance(NOTICE_RESEND_AFTER_MS + SECOND_MS);
    service.run_due().await.unwrap();
    assert_eq!(world.outbox(SCHEDULED).len(), 1, "a delivered notice is not sent again");
    let token = delivered[0].body.split("token=").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let cancelled = service.cancel_with_link(&case_id, &DestinationId::new("dana-email"), &token).await.unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
}

// Proves what another process (or this one after a restart) does with a notice it never tried: it leaves it to the
// process that owes it for NOTICE_RESEND_AFTER_MS, then sends it; and that word of an applied change is owed and
// recovered the same way, while one owed for longer than NOTICE_REDELIVERY_WINDOW_MS is given up.
#[tokio::test]
async fn another_process_sends_owed_notices_after_the_grace_and_not_after_the_window() {
    let mut world = World::new();
    let case_id = world.proven_case("dana").await;
    assert_eq!(world.outbox(SCHEDULED).len(), 1, "the cancel link went out at once");

    // The change runs while the notifier is down: word of it is owed.
    world.set_down(true);
    world.executed(&case_id).await;
    assert_eq!(world.failed().len(), 1, "{:?}", world.failed());

    world.restarted();
    let service = &world.embedded.service;
    service.run_due().await.unwrap();
    world.clock.advance(NOTICE_RESEND_AFTER_MS - SECOND_MS);
    service.run_due().await.unwrap();
    assert!(world.outbox(CHANGED).is_empty(), "sent before the owing process had its chance");
    world.clock.advance(SECOND_MS);
    service.run_due().await.unwrap();
    assert_eq!(world.outbox(CHANGED).len(), 1);
    assert!(world.owing().is_empty());

    // A second case whose word of the change is owed for longer than the window is not sent.
    world.set_down(false);
    let late = world.proven_case("erin").await;
    world.set_down(true);
    world.executed(&late).await;
    world.set_down(false);
    world.clock.advance(NOTICE_REDELIVERY_WINDOW_MS + SECOND_MS);
    service.run_due().await.unwrap();
    assert_eq!(world.outbox(CHANGED).len(), 1, "a notice owed for over a week was sent");
    assert_eq!(service.load(&late).await.unwrap().0.notices.len(), 1, "it stays owed in the case's events");
}

// Proves the projection lists a case as owing notices exactly when the case's own events do: word of a change applied
// or rolled back goes to the destinations that existed when the case was opened, so a case opened for an owner who
// had lost them all (every destination revoked: a person linked a new email after review) owes nothing when its
// change runs or is rolled back. The projection used to list such a case as owing after each, so every tick of every
// process loaded the whole case again for the week of the redelivery window, to send nothing.
#[tokio::test]
async fn a_case_with_nobody_to_tell_is_not_listed_as_owing_notices() {
    let world = World::new();
    let service = &world.embedded.service;
    let mut lost = common::email_account("fay", UnixMs(START.0 - 100 * DAY_MS));
    lost.destinations[0].revoked = true;
    world.embedded.directory.put_account(&lost).unwrap();
    let case_id = CaseId::new("case-fay");
    let request = Command::RequestRecovery {
        account_id: AccountId::new("fay"),
        action: RecoveryAction::AddDestination {
            kind: airlock::core::account::DestinationKind::Email,
            address: "fay.new@example.net".to_string(),
        },
        summary: UntrustedText::new("summary", "lost every contact method", 100).unwrap(),
        signals: Signals::default(),
    };
    let desk = Actor::new(Role::Intake, "desk");
    service
        .handle(&case_id, CommandEnvelope { command_id: CommandId::new("open"), actor: desk, command: request })
        .await
        .unwrap();
    let state = service.load(&case_id).await.unwrap().0;
    assert_eq!(state.status, Status::InReview, "nobody to send a code to: people decide");
    let approve = Command::ApproveReview {
        action_hash: state.facts.unwrap().action_hash,
        reason: UntrustedText::new("reason", "called the owner back", 100).unwrap(),
    };
    let reviewer = Actor::new(Role::Reviewer, "reviewer-1");
    let envelope = CommandEnvelope { command_id: CommandId::new("approve"), actor: reviewer, command: approve };
    assert_eq!(service.handle(&case_id, envelope).await.unwrap().status, Status::CoolingOff);
    assert!(world.owing().is_empty(), "no cancel link is owed to nobody");

    world.executed(&case_id).await;
    assert!(service.load(&case_id).await.unwrap().0.notices.is_empty(), "the case owes nobody word of the change");
    assert!(world.owing().is_empty(), "the projection lists a case that owes nothing after its change ran");

    let rollback = Command::RollBack { reason: UntrustedText::new("reason", "not the owner", 100).unwrap() };
    let operator = Actor::new(Role::Operator, "ops-1");
    let envelope = CommandEnvelope { command_id: CommandId::new("rollback"), actor: operator, command: rollback };
    assert_eq!(service.handle(&case_id, envelope).await.unwrap().status, Status::RolledBack);
    assert!(service.load(&case_id).await.unwrap().0.notices.is_empty());
    assert!(world.owing().is_empty(), "the projection lists a case that owes nothing after its rollback");
    assert!(world.outbox(CHANGED).is_empty() && world.failed().is_empty(), "nothing was sent to anybody");
}
