//! Integration tests of the service on the embedded backend (real SQLite files): the workflow across the log, the
//! projection, the directory and the outbox, including the kill switch, cancel links, rollback, retries, two
//! writers racing, a projection rebuilt from the log, and tampering with receipts.

use airlock::clock::ManualClock;
use airlock::core::account::{DestinationKind, HighValueReason};
use airlock::core::action::RecoveryAction;
use airlock::core::actor::{Actor, Role};
use airlock::core::command::{Command, CommandEnvelope};
use airlock::core::control::ControlCommand;
use airlock::core::ids::{AccountId, CaseId, CommandId, DestinationId, UnixMs};
use airlock::core::limits::{DAY_MS, HOUR_MS};
use airlock::core::rejection::Rejection;
use airlock::core::signals::Signals;
use airlock::core::state::Status;
use airlock::core::text::UntrustedText;
use airlock::directory::AccountDirectory;
use airlock::directory::embedded::AccountRecord;
use airlock::keys::Keys;
use airlock::log::EventLog;
use airlock::projection::Projection;
use airlock::server::embedded::{self, Embedded};
use airlock::service::ServiceError;
use std::sync::Arc;

use crate::common;

const START: UnixMs = UnixMs(1_780_304_400_000);

struct World {
    _data: tempfile::TempDir,
    path: std::path::PathBuf,
    clock: Arc<ManualClock>,
    keys: Keys,
    embedded: Embedded,
}

fn world() -> World {
    let data = tempfile::tempdir().unwrap();
    let path = data.path().to_path_buf();
    let clock = Arc::new(ManualClock::starting_at(START));
    let keys = Keys::generate();
    let embedded = embedded::open(&path, clock.clone(), keys.clone()).unwrap();
    for (account, high_value) in [("dana", None), ("erin", Some(HighValueReason::Admin))] {
        embedded
            .directory
            .put_account(&AccountRecord {
                high_value_reason: high_value,
                sessions_opened_at: vec![UnixMs(START.0 - DAY_MS)],
                ..common::email_account(account, UnixMs(START.0 - 100 * DAY_MS))
            })
            .unwrap();
    }
    World { _data: data, path, clock, keys, embedded }
}

fn text(value: &str) -> UntrustedText {
    UntrustedText::new("test", value, 1_000).unwrap()
}

fn command(id: &str, actor: Actor, command: Command) -> CommandEnvelope {
    CommandEnvelope { command_id: CommandId::new(id), actor, command }
}

fn request(account: &str, action: RecoveryAction) -> Command {
    Command::RequestRecovery {
        account_id: AccountId::new(account),
        action,
        summary: text("customer asked for help"),
        signals: Signals::default(),
    }
}

fn latest_code(world: &World, address: &str) -> String {
    let message = world.embedded.outbox.messages(Some(address)).unwrap().into_iter().last().expect("a message");
    message
        .body
        .split_whitespace()
        .find(|word| word.len() == 8 && word.chars().all(|c| c.is_ascii_digit()))
        .expect("a code in the message")
        .to_string()
}

/// Opens a case for `account` and proves the code, leaving it in cooling-off.
async fn proven_case(world: &World, account: &str, action: RecoveryAction) -> CaseId {
    let case_id = CaseId::new(format!("case-{account}-{}", world.clock.now_ms()));
    let service = &world.embedded.service;
    service
        .handle(&case_id, command("open", Actor::new(Role::Intake, "desk"), request(account, action)))
        .await
        .unwrap();
    let code = latest_code(world, &format!("{account}@example.com"));
    let owner = Actor::new(Role::Owner, "page");
    service.submit_code(&case_id, CommandId::new("proof"), owner, &code, None).await.unwrap();
    case_id
}

trait NowMs {
    fn now_ms(&self) -> u64;
}

impl NowMs for ManualClock {
    fn now_ms(&self) -> u64 {
        airlock::clock::Clock::now(self).0
    }
}

// Proves the SIM-swap defence of issue 16 through the service: an account with an email and a phone gets a different
// code at each; every code message names the request's reference and desk, and the text message says to prefer the
// email's; the phone's code alone sends the case to people (`PhoneOnlyProof`, as a phone number taken over without
// the carrier reporting it would), while on the next case the email's code starts the cooling-off. No code is in any
// event or timeline row.
#[tokio::test]
async fn each_destination_gets_its_own_code_and_the_phones_alone_goes_to_people() {
    let world = world();
    let mut record = common::email_account("fay", UnixMs(START.0 - 100 * DAY_MS));
    record.destinations.push(airlock::core::account::Destination {
        id: DestinationId::new("fay-phone"),
        kind: DestinationKind::Phone,
        address: "+15550007777".into(),
        trusted_since: UnixMs(START.0 - 100 * DAY_MS),
        revoked: false,
    });
    world.embedded.directory.put_account(&record).unwrap();
    let service = &world.embedded.service;
    let owner = Actor::new(Role::Owner, "page");
    let mut codes = Vec::new();
    for (case, typed_at) in [("case-fay-1", "+15550007777"), ("case-fay-2", "fay@example.com")] {
        let case_id = CaseId::new(case);
        service
            .handle(
                &case_id,
                command(
                    &format!("open-{case}"),
                    Actor::new(Role::Intake, "desk-9"),
                    request("fay", RecoveryAction::ResetPassword),
                ),
            )
            .await
            .unwrap();
        let (email, phone) = (latest_code(&world, "fay@example.com"), latest_code(&world, "+15550007777"));
        assert_ne!(email, phone, "each destination gets its own code");
        let messages = world.embedded.outbox.messages(None).unwrap();
        let sent: Vec<_> = messages.iter().filter(|message| message.case_id == case_id).collect();
        assert_eq!(sent.len(), 2, "{sent:?}");
        for message in &sent {
            assert!(message.body.contains(&format!("Reference {case}, asked through desk-9")), "{}", message.body);
            let prefers_email = message.body.contains("use its code instead");
            assert_eq!(prefers_email, message.kind == DestinationKind::Phone, "{}", message.body);
        }
        let typed = if typed_at == "fay@example.com" { email.clone() } else { phone.clone() };
        codes.extend([email, phone]);
        service
            .submit_code(&case_id, CommandId::new(format!("proof-{case}")), owner.clone(), &typed, None)
            .await
            .unwrap();
        if case == "case-fay-1" {
            let (state, _) = service.load(&case_id).await.unwrap();
            assert_eq!(state.status, Status::InReview);
            assert_eq!(state.proven_by, vec![DestinationId::new("fay-phone")]);
            let timeline = service.projection.timeline(&case_id).unwrap();
            assert!(timeline.iter().any(|row| row.detail.contains("PhoneOnlyProof")), "{timeline:?}");
        } else {
            let (state, _) = service.load(&case_id).await.unwrap();
            assert_eq!(state.status, Status::CoolingOff);
            assert_eq!(state.proven_by, vec![DestinationId::new("fay-email")]);
        }
    }
    let mut recorded = String::new();
    for case in ["case-fay-1", "case-fay-2"] {
        let case_id = CaseId::new(case);
        let (_, events) = service.load(&case_id).await.unwrap();
        recorded.push_str(&format!("{events:?}"));
        recorded.push_str(&format!("{:?}", service.projection.timeline(&case_id).unwrap()));
    }
    for code in &codes {
        assert!(!recorded.contains(code.as_str()), "a code is recorded");
    }
}

// Proves the kill switch: while halted a due change waits in cooling-off, and only an explicit resume lets it run.
#[tokio::test]
async fn kill_switch_holds_execution_until_resumed() {
    let world = world();
    let service = &world.embedded.service;
    let case_id = proven_case(&world, "dana", RecoveryAction::ResetPassword).await;
    let operator = Actor::new(Role::Operator, "ops-1");
    service
        .control(CommandId::new("halt"), operator.clone(), ControlCommand::Halt { reason: text("incident") })
        .await
        .unwrap();
    world.clock.advance(2 * DAY_MS);
    service.run_due().await.unwrap();
    assert_eq!(service.load(&case_id).await.unwrap().0.status, Status::CoolingOff);
    let intake = Actor::new(Role::Intake, "desk");
    let refused =
        service.control(CommandId::new("resume-bot"), intake, ControlCommand::Resume { reason: text("x") }).await;
    assert!(matches!(refused, Err(ServiceError::Rejected(Rejection::RoleNotAllowed { .. }))));
    service
        .control(CommandId::new("resume"), operator, ControlCommand::Resume { reason: text("resolved") })
        .await
        .unwrap();
    service.run_due().await.unwrap();
    assert_eq!(service.load(&case_id).await.unwrap().0.status, Status::Executed);
}

// Proves a cancel link from a notice cancels the pending change, and a forged token is refused and changes nothing.
#[tokio::test]
async fn cancel_link_cancels_and_a_forged_token_does_not() {
    let world = world();
    let service = &world.embedded.service;
    let case_id = proven_case(&world, "dana", RecoveryAction::ResetPassword).await;
    let destination = DestinationId::new("dana-email");
    let forged = service.cancel_with_link(&case_id, &destination, &"0".repeat(64)).await;
    assert!(matches!(forged, Err(ServiceError::Rejected(Rejection::InvalidValue { .. }))));
    assert_eq!(service.load(&case_id).await.unwrap().0.status, Status::CoolingOff);
    let notice = world.embedded.outbox.messages(Some("dana@example.com")).unwrap().into_iter().last().unwrap();
    let token = notice.body.split("token=").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    assert_eq!(token, world.keys.cancel_token(case_id.as_str(), "dana-email"));
    let cancelled = service.cancel_with_link(&case_id, &destination, &token).await.unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    world.clock.advance(2 * DAY_MS);
    service.run_due().await.unwrap();
    assert_eq!(world.embedded.directory.credential_version(&AccountId::new("dana")).unwrap(), 1);
}

// Proves issue 18, item 5 on the embedded directory: an applied reset sends a set-password link to the destination
// it was proven from; the link sets the password once (recorded as its own event and receipt), a forged token or a
// destination the link was not sent to sets nothing, and a link past its two hours is refused.
#[tokio::test]
async fn an_applied_reset_sends_a_single_use_set_password_link() {
    use airlock::directory::Password;
    let world = world();
    let service = &world.embedded.service;
    let dana = AccountId::new("dana");
    let case_id = proven_case(&world, "dana", RecoveryAction::ResetPassword).await;
    world.clock.advance(2 * DAY_MS);
    service.run_due().await.unwrap();
    assert_eq!(service.load(&case_id).await.unwrap().0.status, Status::Executed);
    let notice = world.embedded.outbox.messages(Some("dana@example.com")).unwrap().into_iter().last().unwrap();
    assert_eq!(notice.subject, "Your account was changed");
    let link = notice.body.split_whitespace().find(|word| word.contains("/set-password?")).unwrap().to_string();
    let query: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(link.split_once('?').unwrap().1.as_bytes()).into_owned().collect();
    let (destination, until) = (DestinationId::new(&query["destination"]), query["until"].parse::<u64>().unwrap());
    assert_eq!(destination.as_str(), "dana-email");
    assert_eq!(until, service.load(&case_id).await.unwrap().0.executed_at.unwrap().0 + 2 * 3_600_000);
    let password = Password::new("correct horse battery", "correct horse battery").unwrap();
    assert!(!format!("{password:?}").contains("horse"));
    let version = world.embedded.directory.credential_version(&dana).unwrap();

    let forged = service.set_password_with_link(&case_id, &destination, (until, &"0".repeat(64)), &password).await;
    assert!(matches!(forged, Err(ServiceError::Rejected(Rejection::InvalidValue { .. }))), "{forged:?}");
    let refusals_recorded = || async {
        let (_, events) = service.load(&case_id).await.unwrap();
        events
            .iter()
            .filter(|event| {
                matches!(&event.body, airlock::core::event::EventBody::CommandRefused { command, .. }
                    if *command == airlock::core::command::CommandKind::SetPassword)
            })
            .count()
    };
    assert_eq!(refusals_recorded().await, 0, "a forged token (anyone can send one) was recorded as the owner's act");
    let elsewhere = DestinationId::new("dana-phone");
    let token = world.keys.set_password_token(case_id.as_str(), elsewhere.as_str(), until);
    let not_sent = service.set_password_with_link(&case_id, &elsewhere, (until, &token), &password).await;
    assert!(matches!(not_sent, Err(ServiceError::Rejected(Rejection::InvalidValue { .. }))), "{not_sent:?}");
    assert_eq!(world.embedded.directory.credential_version(&dana).unwrap(), version, "a refused link set a password");

    // The kill switch stops the owners' links too, until it is released.
    let operator = Actor::new(Role::Operator, "ops-1");
    let halt = ControlCommand::Halt { reason: text("incident") };
    service.control(CommandId::new("halt"), operator.clone(), halt).await.unwrap();
    let halted = service.set_password_with_link(&case_id, &destination, (until, &query["token"]), &password).await;
    assert!(matches!(halted, Err(ServiceError::Rejected(Rejection::Halted))), "{halted:?}");
    assert_eq!(world.embedded.directory.credential_version(&dana).unwrap(), version, "a halted link set a password");
    let resume = ControlCommand::Resume { reason: text("over") };
    service.control(CommandId::new("resume"), operator, resume).await.unwrap();
    let set =
        service.set_password_with_link(&case_id, &destination, (until, &query["token"]), &password).await.unwrap();
    assert_eq!(set.status, Status::Executed);
    assert_eq!(world.embedded.directory.credential_version(&dana).unwrap(), version + 1);
    let again = service.set_password_with_link(&case_id, &destination, (until, &query["token"]), &password).await;
    assert!(matches!(again, Err(ServiceError::Rejected(Rejection::PasswordAlreadySet))), "{again:?}");
    assert!(refusals_recorded().await >= 1, "a real link used again left no trace on the case");
    assert_eq!(world.embedded.directory.credential_version(&dana).unwrap(), version + 1);
    let receipts = service.projection.receipts(Some(&case_id)).unwrap();
    assert!(receipts.iter().any(|receipt| receipt.body.kind == "password_set"), "{receipts:?}");
    let (_, events) = service.load(&case_id).await.unwrap();
    assert!(!format!("{events:?}").contains("horse"), "the password is in an event");

    // Another world's reset, whose link is used too late.
    let late = self::world();
    let service = &late.embedded.service;
    let case_id = proven_case(&late, "dana", RecoveryAction::ResetPassword).await;
    late.clock.advance(2 * DAY_MS);
    service.run_due().await.unwrap();
    let until = service.load(&case_id).await.unwrap().0.executed_at.unwrap().0 + 2 * 3_600_000;
    let token = late.keys.set_password_token(case_id.as_str(), "dana-email", until);
    // The email the link went to is changed at the directory since the reset: the link has lost its say.
    let mut moved = common::email_account("dana", UnixMs(START.0 - 100 * DAY_MS));
    moved.destinations[0].address = "dana.elsewhere@example.com".into();
    late.embedded.directory.put_account(&moved).unwrap();
    let gone = service.set_password_with_link(&case_id, &destination, (until, &token), &password).await;
    assert!(matches!(gone, Err(ServiceError::Rejected(Rejection::InvalidValue { .. }))), "{gone:?}");
    late.clock.advance(2 * 3_600_000);
    let expired = service.set_password_with_link(&case_id, &destination, (until, &token), &password).await;
    assert!(matches!(expired, Err(ServiceError::Rejected(Rejection::DeadlinePassed))), "{expired:?}");
}

// Proves rollback of an executed "add destination": the added destination is removed, sessions opened since the
// execution are revoked, the owner is told, and a second receipt is chained after the first.
#[tokio::test]
async fn rollback_removes_the_added_destination_and_revokes_new_sessions() {
    let world = world();
    let service = &world.embedded.service;
    let dana = AccountId::new("dana");
    let action = RecoveryAction::AddDestination { kind: DestinationKind::Email, address: "new@example.net".into() };
    let case_id = proven_case(&world, "dana", action).await;
    world.clock.advance(4 * DAY_MS);
    service.run_due().await.unwrap();
    assert_eq!(service.load(&case_id).await.unwrap().0.status, Status::Executed);
    let added = world.embedded.directory.snapshot(&dana).unwrap();
    assert_eq!(added.destinations.iter().filter(|destination| !destination.revoked).count(), 2);
    world.clock.advance(HOUR_MS);
    world
        .embedded
        .directory
        .open_session(&dana, "attacker-session", airlock::clock::Clock::now(&*world.clock))
        .unwrap();
    let sessions_before = world.embedded.directory.active_sessions(&dana).unwrap();
    let rollback = Command::RollBack { reason: text("owner objected") };
    let rolled =
        service.handle(&case_id, command("rollback", Actor::new(Role::Operator, "ops-1"), rollback)).await.unwrap();
    assert_eq!(rolled.status, Status::RolledBack);
    let after = world.embedded.directory.snapshot(&dana).unwrap();
    assert_eq!(after.destinations.iter().filter(|destination| !destination.revoked).count(), 1);
    assert_eq!(world.embedded.directory.active_sessions(&dana).unwrap(), sessions_before - 1);
    let receipts = service.projection.receipts(Some(&case_id)).unwrap();
    assert_eq!(
        receipts.iter().map(|receipt| receipt.body.kind.as_str()).collect::<Vec<_>>(),
        ["executed", "rolled_back"]
    );
    assert_eq!(receipts[1].previous_hash, receipts[0].hash);
    assert!(world.embedded.outbox.messages(Some("new@example.net")).unwrap().is_empty());
    // Issue 15, item 11: receipts tell the truth about sessions. The execution (a factor change) revoked dana's
    // session and its receipt names it with when it was opened; the rollback's receipt claims no session came back.
    let executed = &receipts[0].body.changes;
    assert!(
        executed
            .iter()
            .any(|line| line.starts_with("session:") && line.contains("active, opened") && line.ends_with("revoked")),
        "{executed:?}"
    );
    let rolled_back = &receipts[1].body.changes;
    assert!(
        !rolled_back.iter().any(|line| line.starts_with("session")),
        "a rollback restored no session: {rolled_back:?}"
    );
}

// Proves a retried command appends nothing and returns the case's current status, and that the intake role's
// attempts to act beyond requesting are refused and recorded on the case.
#[tokio::test]
async fn retries_append_once_and_refusals_are_recorded() {
    let world = world();
    let service = &world.embedded.service;
    let case_id = CaseId::new("case-retry");
    let desk = Actor::new(Role::Intake, "desk");
    let first = service
        .handle(&case_id, command("open", desk.clone(), request("dana", RecoveryAction::ResetPassword)))
        .await
        .unwrap();
    let again = service
        .handle(&case_id, command("open", desk.clone(), request("dana", RecoveryAction::ResetPassword)))
        .await
        .unwrap();
    assert_eq!((first.appended, again.appended, again.status), (2, 0, Status::Requested));
    let cancel = command("bot-cancel", desk, Command::Cancel { reason: text("customer changed their mind") });
    let refused = service.handle(&case_id, cancel).await;
    assert!(matches!(refused, Err(ServiceError::Rejected(Rejection::RoleNotAllowed { .. }))));
    let timeline = service.projection.timeline(&case_id).unwrap();
    assert_eq!(timeline.last().unwrap().event_type, "command_refused");
    assert_eq!(service.load(&case_id).await.unwrap().1.len(), 3);
}

// Proves a request sent again (a redelivery, a desk retrying) writes nothing: an hour later, with the kill switch on so
// that deciding it afresh would come out differently, every ledger of the first request (the account's, with its
// code's expiry, the desk's, the proof failures') is at the revision the first left it at, and nothing is appended.
// Fails if a repeated request is decided as a new one before its case is read (issue 21: a first round that assumed
// the case new rewrote the live code's expiry in the account's ledger before its append failed).
#[tokio::test]
async fn a_request_sent_again_writes_no_ledger() {
    use airlock::log::LedgerKey;
    let world = world();
    let service = &world.embedded.service;
    let case_id = CaseId::new("case-again");
    let desk = Actor::new(Role::Intake, "desk");
    let send = || command("again", desk.clone(), request("dana", RecoveryAction::ResetPassword));
    let first = service.handle(&case_id, send()).await.unwrap();
    assert_eq!((first.appended, first.status), (2, Status::Requested));
    let keys = [
        LedgerKey::Account("dana".into()),
        LedgerKey::Requester(desk.to_string()),
        LedgerKey::ProofFailures("dana".into()),
    ];
    let mut before = Vec::new();
    for key in &keys {
        before.push(service.log.ledger(key).await.unwrap());
    }
    assert!(before[0].0 > 0, "the first request wrote its account's ledger");
    let entry = before[0].1.requests.iter().find(|entry| entry.case_id == case_id.as_str()).expect("its entry");
    assert!(entry.code_until_ms.is_some(), "the first request's code is counted as out");

    world.clock.advance(HOUR_MS);
    let operator = Actor::new(Role::Operator, "ops");
    service.control(CommandId::new("halt"), operator, ControlCommand::Halt { reason: text("drill") }).await.unwrap();
    let again = service.handle(&case_id, send()).await.unwrap();
    assert_eq!((again.appended, again.status), (0, Status::Requested));
    for (key, before) in keys.iter().zip(before) {
        assert_eq!(service.log.ledger(key).await.unwrap(), before, "the request sent again wrote {key}");
    }
    assert_eq!(service.load(&case_id).await.unwrap().1.len(), 2);
}

// Proves a request sent again is answered from the log alone (ADR 32): with the directory unreachable, the repeated
// request still gets its case's answer, and the directory was not asked. Senders retry when things are slow; a
// directory that is slow or down must not hold up the answer to a request already taken.
#[tokio::test]
async fn a_request_sent_again_is_answered_without_the_directory() {
    use std::sync::atomic::Ordering;
    let world = world();
    let limited = Arc::new(Limited::over(&world));
    let base = embedded::open(&world.path, world.clock.clone(), world.keys.clone()).unwrap().service;
    let service = airlock::service::Service { directory: limited.clone(), ..base };
    let case_id = CaseId::new("case-again-directory");
    let desk = Actor::new(Role::Intake, "desk");
    let send = || command("again", desk.clone(), request("dana", RecoveryAction::ResetPassword));
    let first = service.handle(&case_id, send()).await.unwrap();
    assert_eq!((first.appended, first.status), (2, Status::Requested));
    let asked = limited.snapshots.load(Ordering::SeqCst);
    assert!(asked > 0, "a new request reads its account");

    limited.snapshots_fail.store(true, Ordering::SeqCst);
    let again = service.handle(&case_id, send()).await.unwrap();
    assert_eq!((again.appended, again.status), (0, Status::Requested));
    assert_eq!(limited.snapshots.load(Ordering::SeqCst), asked, "the directory was asked about a request sent again");
}

// Proves two service instances over the same files (two writers) approving a two-reviewer case at the same time
// both land exactly once: the loser of the race re-reads and re-decides instead of overwriting.
#[test]
fn two_writers_racing_on_one_case_both_land_once() {
    let world = world();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let case_id = runtime.block_on(proven_case(&world, "erin", RecoveryAction::ResetPassword));
    let state = runtime.block_on(world.embedded.service.load(&case_id)).unwrap().0;
    assert_eq!((state.status, state.reviewers_required), (Status::InReview, 2));
    let hash = state.facts.unwrap().action_hash;
    let handles: Vec<_> = ["reviewer-1", "reviewer-2"]
        .into_iter()
        .map(|reviewer| {
            let (path, clock, keys, case_id, hash) =
                (world.path.clone(), world.clock.clone(), world.keys.clone(), case_id.clone(), hash.clone());
            std::thread::spawn(move || {
                let writer = embedded::open(&path, clock, keys).unwrap();
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                let approve = Command::ApproveReview { action_hash: hash, reason: text("checked") };
                runtime.block_on(
                    writer.service.handle(&case_id, command(reviewer, Actor::new(Role::Reviewer, reviewer), approve)),
                )
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap().unwrap();
    }
    let (state, events) = runtime.block_on(world.embedded.service.load(&case_id)).unwrap();
    assert_eq!(state.status, Status::CoolingOff);
    let approvals = events.iter().filter(|event| event.body.kind().name() == "review_approved").count();
    assert_eq!(approvals, 2);
}

// Proves the projection is a fold of the log: rebuilding it from the log into a fresh database gives the same
// cases, timelines and receipts, and applying the log twice (a redelivery) changes nothing.
#[tokio::test]
async fn projection_rebuilt_from_the_log_equals_the_live_one() {
    let world = world();
    let service = &world.embedded.service;
    proven_case(&world, "dana", RecoveryAction::ResetPassword).await;
    proven_case(&world, "erin", RecoveryAction::RemoveTotp).await;
    world.clock.advance(2 * DAY_MS);
    service.run_due().await.unwrap();
    let rebuilt_path = world.path.join("rebuilt.db");
    let rebuilt = Projection::open(&rebuilt_path).unwrap();
    let entries = service.log.read_after(0, 10_000).await.unwrap();
    rebuilt.apply(&entries).unwrap();
    rebuilt.apply(&entries).unwrap();
    let live = common::dump_projection(&world.path.join("projection.db"));
    assert!(live.len() > 10, "the scenario produced rows: {live:?}");
    assert_eq!(common::dump_projection(&rebuilt_path), live);
}

// Proves tampering with a stored receipt is detected by the hash chain (THREATS 14, the chain half).
#[tokio::test]
async fn an_edited_receipt_breaks_the_chain() {
    let world = world();
    let service = &world.embedded.service;
    proven_case(&world, "dana", RecoveryAction::ResetPassword).await;
    world.clock.advance(2 * DAY_MS);
    service.run_due().await.unwrap();
    assert!(service.projection.verify_receipts().unwrap().is_empty());
    let connection = rusqlite::Connection::open(world.path.join("projection.db")).unwrap();
    connection.execute("UPDATE receipts SET body = replace(body, 'dana', 'mallory')", []).unwrap();
    let breaks = service.projection.verify_receipts().unwrap();
    assert_eq!(breaks.len(), 1, "{breaks:?}");
    assert!(breaks[0].problem.contains("does not match the body"));
}

// Proves an effect applied twice under one effect id (a retry after a crash, a redelivery) changes the account once
// and returns the same changes both times; a different effect id is a different change.
#[test]
fn an_effect_id_is_applied_once() {
    let world = world();
    let directory = &world.embedded.directory;
    let dana = AccountId::new("dana");
    let effect = airlock::core::ids::EffectId::new("case-x/execute/1");
    let first = directory.execute(&effect, &dana, &RecoveryAction::ResetPassword, START).unwrap();
    let second = directory.execute(&effect, &dana, &RecoveryAction::ResetPassword, START.plus(HOUR_MS)).unwrap();
    assert_eq!(first, second);
    assert_eq!(directory.credential_version(&dana).unwrap(), 2);
    assert_eq!(directory.applied_effects().unwrap(), 1);
    let other = airlock::core::ids::EffectId::new("case-x/execute/2");
    directory.execute(&other, &dana, &RecoveryAction::ResetPassword, START).unwrap();
    assert_eq!(directory.credential_version(&dana).unwrap(), 3);
}

/// The embedded directory, saying it can do less than it can, and counting what it was asked.
struct Limited {
    inner: Arc<airlock::directory::embedded::EmbeddedDirectory>,
    capabilities: airlock::directory::Capabilities,
    totp_checks: std::sync::atomic::AtomicU32,
    holds: std::sync::atomic::AtomicU32,
    /// Every change fails as if the directory could not be reached.
    unreachable: bool,
    /// Each change waits here until as many changes are under way as the barrier counts (bounded).
    together: Option<tokio::sync::Barrier>,
    /// Accounts read, and whether reading one fails as if the directory could not be reached.
    snapshots: std::sync::atomic::AtomicU32,
    snapshots_fail: std::sync::atomic::AtomicBool,
}

impl Limited {
    /// The embedded directory as it is: every capability, nothing failing, nothing held back.
    fn over(world: &World) -> Limited {
        Limited {
            inner: world.embedded.directory.clone(),
            capabilities: airlock::directory::Capabilities::ALL,
            totp_checks: 0.into(),
            holds: 0.into(),
            unreachable: false,
            together: None,
            snapshots: 0.into(),
            snapshots_fail: false.into(),
        }
    }
}

#[async_trait::async_trait]
impl AccountDirectory for Limited {
    fn capabilities(&self) -> airlock::directory::Capabilities {
        self.capabilities
    }
    async fn snapshot(
        &self,
        account_id: &AccountId,
    ) -> Result<airlock::core::account::AccountSnapshot, airlock::directory::DirectoryError> {
        self.snapshots.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.snapshots_fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(airlock::directory::DirectoryError::Unavailable("connection refused".into()));
        }
        AccountDirectory::snapshot(&*self.inner, account_id).await
    }
    async fn verify_totp(
        &self,
        account_id: &AccountId,
        typed: &str,
        now: UnixMs,
    ) -> Result<airlock::core::command::SecondFactorCheck, airlock::directory::DirectoryError> {
        self.totp_checks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        AccountDirectory::verify_totp(&*self.inner, account_id, typed, now).await
    }
    async fn hold(
        &self,
        account_id: &AccountId,
        case_id: &str,
        now: UnixMs,
    ) -> Result<(), airlock::directory::DirectoryError> {
        self.holds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        AccountDirectory::hold(&*self.inner, account_id, case_id, now).await
    }
    async fn release(&self, account_id: &AccountId, case_id: &str) -> Result<(), airlock::directory::DirectoryError> {
        AccountDirectory::release(&*self.inner, account_id, case_id).await
    }
    async fn execute(
        &self,
        effect_id: &airlock::core::ids::EffectId,
        account_id: &AccountId,
        action: &RecoveryAction,
        seen: &airlock::core::account::AccountSnapshot,
        now: UnixMs,
    ) -> Result<Vec<airlock::core::command::Change>, airlock::directory::DirectoryError> {
        if self.unreachable {
            return Err(airlock::directory::DirectoryError::Unavailable("connection refused".into()));
        }
        if let Some(together) = &self.together {
            let waited = tokio::time::timeout(std::time::Duration::from_secs(10), together.wait()).await;
            waited
                .map_err(|_| airlock::directory::DirectoryError::Unavailable("alone: nothing ran beside it".into()))?;
        }
        AccountDirectory::execute(&*self.inner, effect_id, account_id, action, seen, now).await
    }
    async fn revert(
        &self,
        effect_id: &airlock::core::ids::EffectId,
        account_id: &AccountId,
        reversal: &[airlock::core::command::Change],
        executed_at: UnixMs,
        now: UnixMs,
    ) -> Result<Vec<airlock::core::command::Change>, airlock::directory::DirectoryError> {
        AccountDirectory::revert(&*self.inner, effect_id, account_id, reversal, executed_at, now).await
    }
}

// Proves the service adapts to what a directory says it can do (issue 18): removing an authenticator proven with the
// email's code and the authenticator's own goes to cooling-off on a directory that checks authenticator codes (asked
// once) and holds the account (asked once); on one that can do neither, the authenticator code is never sent to it,
// so the change has only the email's proof and goes to a reviewer, and the approved change starts its cooling-off
// without asking for a hold the directory cannot give.
#[tokio::test]
async fn the_service_asks_a_directory_only_what_it_says_it_can_do() {
    use airlock::directory::Capabilities;
    use std::sync::atomic::Ordering;
    const SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let world = world();
    let secret = airlock::directory::totp::TotpSecret::from_base32(SECRET).unwrap();
    for account in ["tara", "uma"] {
        world
            .embedded
            .directory
            .put_account(&AccountRecord {
                totp_enrolled_since: Some(UnixMs(START.0 - 200 * DAY_MS)),
                totp_secret: Some(secret.clone()),
                ..common::email_account(account, UnixMs(START.0 - 100 * DAY_MS))
            })
            .unwrap();
    }
    let (mut outcomes, mut cases) = (Vec::new(), Vec::new());
    let mut limited_service = None;
    for (account, capabilities) in [
        ("tara", Capabilities::ALL),
        ("uma", Capabilities { verify_second_factor: false, hold: false, ..Capabilities::ALL }),
    ] {
        let limited = Arc::new(Limited { capabilities, ..Limited::over(&world) });
        let base = embedded::open(&world.path, world.clock.clone(), world.keys.clone()).unwrap().service;
        let service = airlock::service::Service { directory: limited.clone(), ..base };
        let case_id = CaseId::new(format!("case-{account}"));
        let desk = Actor::new(Role::Intake, "desk");
        service.handle(&case_id, command("open", desk, request(account, RecoveryAction::RemoveTotp))).await.unwrap();
        let code = latest_code(&world, &format!("{account}@example.com"));
        let totp =
            airlock::directory::totp::hotp(&secret, airlock::directory::totp::step_at(UnixMs(world.clock.now_ms())), 6);
        let owner = Actor::new(Role::Owner, "page");
        let proven = service.submit_code(&case_id, CommandId::new("proof"), owner, &code, Some(&totp)).await.unwrap();
        outcomes.push((
            proven.status,
            limited.totp_checks.load(Ordering::SeqCst),
            limited.holds.load(Ordering::SeqCst),
        ));
        if proven.status == Status::InReview {
            let (state, _) = service.load(&case_id).await.unwrap();
            let action_hash = state.facts.unwrap().action_hash;
            let approve = Command::ApproveReview { action_hash, reason: text("called the owner back") };
            let approved = service
                .handle(&case_id, command("approve", Actor::new(Role::Reviewer, "rita"), approve))
                .await
                .unwrap();
            assert_eq!(approved.status, Status::CoolingOff);
            assert_eq!(limited.holds.load(Ordering::SeqCst), 0, "a hold was asked of a directory that cannot hold");
            limited_service = Some(service);
        }
        cases.push(case_id);
    }
    assert_eq!(outcomes, [(Status::CoolingOff, 1, 1), (Status::InReview, 0, 0)]);

    // Freeze without trust (item 7): nothing held uma's account, and a destination was added to it meanwhile. The
    // executor of the directory that cannot hold reads each account again before the change: tara's changed only by
    // the case's own change (applied once already, unrecorded) and is confirmed; uma's changed otherwise, and goes
    // back to people with what changed named.
    let directory = &world.embedded.directory;
    let mut uma = common::email_account("uma", UnixMs(START.0 - 100 * DAY_MS));
    uma.totp_enrolled_since = Some(UnixMs(START.0 - 200 * DAY_MS));
    uma.totp_secret = Some(secret.clone());
    uma.destinations.push(airlock::core::account::Destination {
        id: DestinationId::new("uma-new"),
        kind: DestinationKind::Email,
        address: "uma-new@example.net".to_string(),
        trusted_since: UnixMs(START.0 + HOUR_MS),
        revoked: false,
    });
    directory.put_account(&uma).unwrap();
    world.clock.advance(3 * DAY_MS);
    // tara's change reached the directory once already and was not recorded (a crash between the directory's answer
    // and airlock's record): that is the case's own change, not the account changing under it.
    let tara_effect = airlock::core::decide::effect_id(&cases[0], 1);
    let tara_id = AccountId::new("tara");
    directory.execute(&tara_effect, &tara_id, &RecoveryAction::RemoveTotp, UnixMs(world.clock.now_ms())).unwrap();
    let service = limited_service.expect("uma's case went to a reviewer");
    service.run_due().await.unwrap();
    let (tara, _) = service.load(&cases[0]).await.unwrap();
    assert_eq!(tara.status, Status::Executed, "an unchanged account was refused");
    assert_eq!(directory.snapshot(&AccountId::new("tara")).unwrap().totp_enrolled_since, None);
    let (uma_case, events) = service.load(&cases[1]).await.unwrap();
    assert_eq!(uma_case.status, Status::InReview, "a changed account was changed anyway");
    let failed = events.iter().find_map(|event| match &event.body {
        airlock::core::event::EventBody::ExecutionFailed { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(failed.as_deref().is_some_and(|reason| reason.contains("destination uma-new added")), "{failed:?}");
    assert!(directory.snapshot(&AccountId::new("uma")).unwrap().totp_enrolled_since.is_some(), "uma's was removed");
}

// Proves an execution a directory never answers does not wait in `executing` for ever: while the directory is
// unreachable the timers try again on each tick and the case stays executing; once the execution started more than
// EXECUTION_UNCONFIRMED_MS ago, the attempt ends as failed, saying the change may or may not have been applied and
// quoting the directory's last answer (bounded), and the case goes back to people.
#[tokio::test]
async fn an_execution_the_directory_never_answers_goes_back_to_people() {
    let world = world();
    let limited = Arc::new(Limited { unreachable: true, ..Limited::over(&world) });
    let base = embedded::open(&world.path, world.clock.clone(), world.keys.clone()).unwrap().service;
    let service = airlock::service::Service { directory: limited, ..base };
    let case_id = CaseId::new("case-unanswered");
    let desk = Actor::new(Role::Intake, "desk");
    service.handle(&case_id, command("open", desk, request("dana", RecoveryAction::ResetPassword))).await.unwrap();
    let code = latest_code(&world, "dana@example.com");
    let owner = Actor::new(Role::Owner, "page");
    let proven = service.submit_code(&case_id, CommandId::new("proof"), owner, &code, None).await.unwrap();
    assert_eq!(proven.status, Status::CoolingOff);
    world.clock.advance(2 * DAY_MS);
    assert!(service.run_due().await.is_err(), "an unreachable directory is an error for the timers to retry");
    assert_eq!(service.load(&case_id).await.unwrap().0.status, Status::Executing);
    world.clock.advance(airlock::core::limits::EXECUTION_UNCONFIRMED_MS / 2);
    assert!(service.run_due().await.is_err());
    assert_eq!(service.load(&case_id).await.unwrap().0.status, Status::Executing, "given up too early");
    world.clock.advance(airlock::core::limits::EXECUTION_UNCONFIRMED_MS / 2);
    service.run_due().await.unwrap();
    let (state, events) = service.load(&case_id).await.unwrap();
    assert_eq!(state.status, Status::InReview);
    let reason = events.iter().find_map(|event| match &event.body {
        airlock::core::event::EventBody::ExecutionFailed { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(reason.as_deref().is_some_and(|reason| reason.contains("may or may not have been applied")), "{reason:?}");
    // The directory's last answer is on the case for the people who look next.
    assert!(reason.as_deref().is_some_and(|reason| reason.contains("connection refused")), "{reason:?}");
}

// Proves the timers move cases side by side: a directory whose every change waits (up to a bound) until another
// change is under way completes both of two due changes in one run of the timers, which one case after the other
// could not (the first would wait alone, give up, and leave its case executing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timers_move_due_cases_side_by_side() {
    let world = world();
    world.embedded.directory.put_account(&common::email_account("fay", UnixMs(START.0 - 100 * DAY_MS))).unwrap();
    let together = Arc::new(Limited { together: Some(tokio::sync::Barrier::new(2)), ..Limited::over(&world) });
    let base = embedded::open(&world.path, world.clock.clone(), world.keys.clone()).unwrap().service;
    let service = airlock::service::Service { directory: together, ..base };
    let mut cases = Vec::new();
    for account in ["dana", "fay"] {
        let case_id = CaseId::new(format!("case-side-{account}"));
        let desk = Actor::new(Role::Intake, "desk");
        service.handle(&case_id, command("open", desk, request(account, RecoveryAction::ResetPassword))).await.unwrap();
        let code = latest_code(&world, &format!("{account}@example.com"));
        let owner = Actor::new(Role::Owner, "page");
        let proven = service.submit_code(&case_id, CommandId::new("proof"), owner, &code, None).await.unwrap();
        assert_eq!(proven.status, Status::CoolingOff);
        cases.push(case_id);
    }
    world.clock.advance(2 * DAY_MS);
    service.run_due().await.unwrap();
    for case_id in &cases {
        assert_eq!(service.load(case_id).await.unwrap().0.status, Status::Executed, "{case_id}");
    }
}

// Proves (issue 20, item 4) every message to an owner comes from its template with what an owner needs and nothing an
// attacker could use: through a reset's whole life (the code, the scheduled change, the applied reset, its rollback)
// each names the destination it went to only masked, the case reference, what happens next and how to stop it; no
// subject carries a code, no body the full address.
#[tokio::test]
async fn every_message_names_its_masked_destination_reference_and_next_step() {
    let world = world();
    let service = &world.embedded.service;
    let case_id = proven_case(&world, "dana", RecoveryAction::ResetPassword).await;
    world.clock.advance(2 * DAY_MS);
    service.run_due().await.unwrap();
    let operator = Actor::new(Role::Operator, "ops-1");
    let undo = Command::RollBack { reason: text("not the owner after all") };
    service.handle(&case_id, command("undo", operator, undo)).await.unwrap();
    assert_eq!(service.load(&case_id).await.unwrap().0.status, Status::RolledBack);
    let messages = world.embedded.outbox.messages(Some("dana@example.com")).unwrap();
    let expected = [
        ("Your account recovery code", "ignore this message: nothing changes without the code"),
        ("A change to your account is scheduled", "cancel it now: "),
        ("Your account was changed", "the reset can be rolled back"),
        (
            "Your account was changed",
            "sessions it ended stay ended: contact support from this address to sign in again",
        ),
    ];
    assert_eq!(messages.len(), expected.len(), "{messages:#?}");
    for (message, (subject, next)) in messages.iter().zip(expected) {
        assert_eq!(message.subject, subject);
        let body = &message.body;
        assert!(
            body.contains("This message went to d***@example.com, a contact method already on the account."),
            "{body}"
        );
        assert!(body.contains(case_id.as_str()) && body.contains(next), "{subject}: {body}");
        assert!(!body.contains("dana@example.com"), "the full address in the body: {body}");
        assert!(!message.subject.chars().any(|c| c.is_ascii_digit()), "a number in a subject: {}", message.subject);
    }
}
