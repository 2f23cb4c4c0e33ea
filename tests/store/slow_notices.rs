//! A notice waiting on a slow mail server holds no thread that another command's SQLite work needs: the blocking
//! pool is bounded (`cli::BLOCKING_THREADS_MAX`), and notices go out on threads of their own. Otherwise a slow mail
//! server would delay other commands, and how soon one is answered would say something about another's account
//! (THREATS 18). Runs the embedded service (real SQLite files) on a runtime whose blocking pool has one thread.

use airlock::clock::ManualClock;
use airlock::core::action::RecoveryAction;
use airlock::core::actor::{Actor, Role};
use airlock::core::command::{Command, CommandEnvelope};
use airlock::core::ids::{AccountId, CaseId, CommandId, UnixMs};
use airlock::core::limits::DAY_MS;
use airlock::core::signals::Signals;
use airlock::core::text::UntrustedText;
use airlock::keys::Keys;
use airlock::notify::outbox::Outbox;
use airlock::notify::{Message, Notifier, NotifyError};
use airlock::server::embedded;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common;

const START: UnixMs = UnixMs(1_780_304_400_000);

/// How long the test waits for what should happen at once; only a failing test waits this long.
const BOUND: Duration = Duration::from_secs(10);

/// The outbox behind a mail server that answers only when the test lets it: it says when a message is in its hands,
/// then holds it until released (or for a bound, so that a failing test leaves no thread behind for long).
struct Slow {
    outbox: Arc<Outbox>,
    entered: tokio::sync::mpsc::UnboundedSender<()>,
    release: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Notifier for Slow {
    fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let _ = self.entered.send(());
        let _ = self.release.lock().unwrap().recv_timeout(BOUND * 3);
        self.outbox.send(message)
    }
}

// Proves that while a code's message waits on the mail server, a read of the log (SQLite work on the blocking pool)
// still completes at once on a runtime whose blocking pool has a single thread; and that the message then goes out.
#[test]
fn a_notice_waiting_on_a_slow_mail_server_holds_no_thread_of_the_blocking_pool() {
    let runtime = tokio::runtime::Builder::new_multi_thread().max_blocking_threads(1).enable_all().build().unwrap();
    runtime.block_on(async {
        let data = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::starting_at(START));
        let mut embedded = embedded::open(data.path(), clock, Keys::generate()).unwrap();
        embedded.directory.put_account(&common::email_account("dana", UnixMs(START.0 - 100 * DAY_MS))).unwrap();
        let (entered, mut in_hands) = tokio::sync::mpsc::unbounded_channel();
        let (release, released) = std::sync::mpsc::channel();
        let outbox = embedded.outbox.clone();
        embedded.service.notifier = Arc::new(Slow { outbox: outbox.clone(), entered, release: Mutex::new(released) });
        let service = Arc::new(embedded.service);

        let case_id = CaseId::new("case-dana");
        let request = Command::RequestRecovery {
            account_id: AccountId::new("dana"),
            action: RecoveryAction::ResetPassword,
            summary: UntrustedText::new("summary", "locked out", 100).unwrap(),
            signals: Signals::default(),
        };
        let envelope = CommandEnvelope {
            command_id: CommandId::new("open"),
            actor: Actor::new(Role::Intake, "desk"),
            command: request,
        };
        let opening = tokio::spawn({
            let (service, case_id) = (service.clone(), case_id.clone());
            async move { service.handle(&case_id, envelope).await }
        });
        tokio::time::timeout(BOUND, in_hands.recv()).await.expect("the code's message reached the mail server");

        let read = tokio::time::timeout(BOUND, service.load(&case_id)).await;
        let (state, _) = read.expect("a read of the log waited for the slow mail server").unwrap();
        assert!(state.facts.is_some(), "the case was opened before its code went out: {:?}", state.status);

        release.send(()).unwrap();
        tokio::time::timeout(BOUND, opening)
            .await
            .expect("the command ends once its message is sent")
            .unwrap()
            .unwrap();
        let sent = outbox.messages(None).unwrap();
        assert!(sent.iter().any(|message| message.subject == "Your account recovery code"), "{sent:?}");
    });
}
