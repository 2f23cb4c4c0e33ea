//! The whole recovery workflow on the JetStream backend (a real nats-server), with a manual clock so that cooling-off
//! passes at once: a code to the pre-existing destination, proof, cooling-off with cancel links, the kill switch
//! holding the change, the timers executing it after resume, a receipt, and a projection equal to a rebuild.

use crate::common;

use airlock::clock::ManualClock;
use airlock::core::action::RecoveryAction;
use airlock::core::actor::{Actor, Role};
use airlock::core::command::{Command, CommandEnvelope};
use airlock::core::control::ControlCommand;
use airlock::core::ids::{AccountId, CaseId, CommandId, UnixMs};
use airlock::core::limits::{DAY_MS, HOUR_MS};
use airlock::core::signals::Signals;
use airlock::core::state::Status;
use airlock::core::text::UntrustedText;
use airlock::core::verification::Settings;
use airlock::directory::embedded::{AccountRecord, EmbeddedDirectory};
use airlock::keys::Keys;
use airlock::log::jetstream::{JetStreamConfig, JetStreamLog};
use airlock::nats::server::{NatsServer, Options};
use airlock::notify::outbox::Outbox;
use airlock::projection::Projection;
use airlock::service::Service;
use std::sync::Arc;

fn text(value: &str) -> UntrustedText {
    UntrustedText::new("test", value, 1_000).unwrap()
}

// Proves the workflow of story (b), and the kill switch, hold on JetStream exactly as on the embedded log.
#[tokio::test(flavor = "multi_thread")]
async fn recovery_workflow_on_jetstream() {
    let shm = std::path::Path::new("/dev/shm");
    let scratch = if shm.is_dir() { tempfile::tempdir_in(shm).unwrap() } else { tempfile::tempdir().unwrap() };
    let server = NatsServer::start(&scratch.path().join("nats"), &Options::default()).unwrap();
    let client = airlock::nats::connect(&server.url(), "workflow").await.unwrap();
    let start = UnixMs(1_780_304_400_000);
    let clock = Arc::new(ManualClock::starting_at(start));
    let directory = Arc::new(EmbeddedDirectory::open(&scratch.path().join("directory.db")).unwrap());
    directory
        .put_account(&AccountRecord {
            sessions_opened_at: vec![UnixMs(start.0 - DAY_MS)],
            ..common::email_account("gina", UnixMs(start.0 - 200 * DAY_MS))
        })
        .unwrap();
    let outbox = Arc::new(Outbox::new(directory.clone()));
    let service = Service {
        log: JetStreamLog::open(client.clone(), JetStreamConfig::default()).await.unwrap(),
        projection: Arc::new(Projection::open(&scratch.path().join("projection.db")).unwrap()),
        directory: directory.clone(),
        notifier: outbox.clone(),
        clock: clock.clone(),
        keys: Keys::generate(),
        settings: Settings::default(),
        public_url: airlock::service::PUBLIC_URL_DEFAULT.into(),
        project_inline: true,
        admissions: Default::default(),
        redelivery: Default::default(),
        sign_in_step_up: false,
        campaigns: Default::default(),
        policy: airlock::policy::Engine::shared(),
    };
    let case_id = CaseId::new("case-gina");
    let request = Command::RequestRecovery {
        account_id: AccountId::new("gina"),
        action: RecoveryAction::ResetPassword,
        summary: text("forgot the password"),
        signals: Signals::default(),
    };
    let desk = Actor::new(Role::Intake, "desk");
    let opened = service
        .handle(&case_id, CommandEnvelope { command_id: CommandId::new("open"), actor: desk, command: request })
        .await
        .unwrap();
    assert_eq!(opened.status, Status::Requested);
    let message = outbox.messages(Some("gina@example.com")).unwrap().pop().expect("the code reached gina");
    let code = message.body.split_whitespace().find(|word| word.len() == 8 && word.bytes().all(|b| b.is_ascii_digit()));
    let owner = Actor::new(Role::Owner, "page");
    let proved = service.submit_code(&case_id, CommandId::new("proof"), owner, code.unwrap(), None).await.unwrap();
    assert_eq!(proved.status, Status::CoolingOff);

    let operator = Actor::new(Role::Operator, "ops");
    let halt = ControlCommand::Halt { reason: text("incident") };
    service.control(CommandId::new("halt"), operator.clone(), halt).await.unwrap();
    clock.advance(2 * DAY_MS);
    service.run_due().await.unwrap();
    assert_eq!(service.load(&case_id).await.unwrap().0.status, Status::CoolingOff, "halted: nothing executes");
    let resume = ControlCommand::Resume { reason: text("resolved") };
    service.control(CommandId::new("resume"), operator, resume).await.unwrap();
    clock.advance(HOUR_MS);
    service.run_due().await.unwrap();
    assert_eq!(service.load(&case_id).await.unwrap().0.status, Status::Executed);
    assert_eq!(directory.credential_version(&AccountId::new("gina")).unwrap(), 2);
    assert_eq!(directory.active_sessions(&AccountId::new("gina")).unwrap(), 0);
    let receipts = service.projection.receipts(Some(&case_id)).unwrap();
    assert_eq!(receipts.len(), 1);
    assert!(service.projection.verify_receipts().unwrap().is_empty());
    let timeline: Vec<String> =
        service.projection.timeline(&case_id).unwrap().into_iter().map(|row| row.event_type).collect();
    assert_eq!(
        timeline,
        [
            "recovery_requested",
            "challenge_issued",
            "proof_accepted",
            "cooling_off_started",
            "notices_delivered",
            "execution_started",
            "execution_confirmed",
            "notices_delivered"
        ]
    );
    let rebuilt = scratch.path().join("rebuilt.db");
    let stats = airlock::projection::replay::rebuild(&service.log, &rebuilt, |_, _| {}).await.unwrap();
    assert_eq!(stats.last_sequence, service.projection.last_sequence().unwrap());
    let rebuilt_receipts = Projection::open(&rebuilt).unwrap().receipts(Some(&case_id)).unwrap();
    assert_eq!(rebuilt_receipts, receipts, "receipts, hashes included, follow from the log alone");
}
