//! The case repository: where every command path loads a stream, folds it, appends a decision's events with the
//! stream's expected version and, when another writer got there first, decides again. The commands (`handle`), the
//! refusals recorded at the edge (`refuse`), the kill switch (`control`), the delivered notices and the alerts each
//! say what one round does; `Retries` counts the rounds and holds the bounds on how often a command may lose a race.
//! The ledgers' compare-and-swap (`swap_ledger`: admissions, first-seen dates, uncounting) runs in the same rounds.

use crate::core::control::ControlState;
use crate::core::event::Event;
use crate::core::ids::CaseId;
use crate::core::state::{CaseState, fold};
use crate::log::envelope::{Decoded, Stream, decode, encode_case_event, encode_control_event};
use crate::log::{Appended, EventLog, Ledger, LedgerKey, LogError};
use crate::service::{Service, ServiceError};

/// How often one command is decided again after another writer appended to its stream first, before the caller is
/// told to retry later.
pub const CONFLICT_RETRIES_MAX: u32 = 8;

/// How often a new request is decided again after another request of the same account updated the ledger first. Each
/// round one racing request wins, so this bounds the burst one account can absorb without a caller being told to
/// retry; the pause between rounds is random, up to `LEDGER_BACKOFF_MS_MAX`.
pub const LEDGER_RETRIES_MAX: u32 = 256;
const LEDGER_BACKOFF_MS_MAX: u64 = 32;

/// The random pause before the `round`th retry of a ledger write that lost a race: it doubles up to
/// `LEDGER_BACKOFF_MS_MAX`, so that racing processes stop meeting at the same instant.
async fn ledger_backoff(round: u32) {
    let pause_ms = rand::random_range(1..=LEDGER_BACKOFF_MS_MAX.min(1 << round.min(5)));
    tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
}

/// What one round of a command path came to.
pub(crate) enum Round<T> {
    Done(T),
    /// Another writer appended to the stream first: decide again on a fresh read.
    Conflict,
    /// Another command wrote a ledger this decision counted in first: pause, and decide again on its count.
    LedgerConflict,
    /// A ledger write on the revision this process remembered lost: another process wrote since. Counted as a lost
    /// ledger write, but run again at once on a read: the memory was old, nobody need be racing now.
    StaleLedger,
}

/// Which round this is.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Attempt {
    pub conflicts: u32,
    pub ledger_conflicts: u32,
}

impl Attempt {
    /// Whether to read the authority rather than a fast copy: after any lost race.
    pub fn fresh(&self) -> bool {
        self.conflicts + self.ledger_conflicts > 0
    }
}

/// What appending a decision's events came to.
pub(crate) enum Written {
    /// Appended; the first event got this global sequence.
    New { first_sequence: u64 },
    /// This command was appended before; nothing was appended now.
    Duplicate,
    /// Another writer appended to the stream first; nothing was appended.
    Conflict,
}

/// The rounds of one command path: which round this is, and the bounds. A path loops
/// `loop { let round = ...(retries.attempt()).await?; if let Some(done) = retries.settle(round).await? { return Ok(done) } }`.
/// (A loop rather than a function taking an async closure: the futures of async closures cannot yet be proven `Send`
/// for every lifetime, which the NATS intake's spawned tasks need.)
pub(crate) struct Retries<'a> {
    what: &'a str,
    attempt: Attempt,
    /// Ledger writes lost on a remembered revision: in the bound, not in the pauses' growth.
    stale_ledgers: u32,
}

impl<'a> Retries<'a> {
    /// The rounds of a command on `what` (a case, the control stream), named in the error past a bound.
    pub fn new(what: &'a str) -> Retries<'a> {
        Retries { what, attempt: Attempt::default(), stale_ledgers: 0 }
    }

    pub fn attempt(&self) -> Attempt {
        self.attempt
    }

    /// What a round came to: `Some` when it is done; `None` to run another (after a random pause when a ledger was
    /// written first); past `CONFLICT_RETRIES_MAX` lost appends or `LEDGER_RETRIES_MAX` lost ledger writes, an error
    /// that tells the caller to retry later, naming the stream and the bound.
    pub async fn settle<T>(&mut self, round: Round<T>) -> Result<Option<T>, LogError> {
        let what = self.what;
        match round {
            Round::Done(value) => Ok(Some(value)),
            Round::Conflict => {
                self.attempt.conflicts += 1;
                if self.attempt.conflicts >= CONFLICT_RETRIES_MAX {
                    return Err(LogError::Unavailable(format!(
                        "{what} kept changing: {CONFLICT_RETRIES_MAX} attempts in a row lost the race to another \
                         writer; try again later"
                    )));
                }
                Ok(None)
            }
            Round::LedgerConflict | Round::StaleLedger => {
                let pause = matches!(round, Round::LedgerConflict);
                match pause {
                    true => self.attempt.ledger_conflicts += 1,
                    false => self.stale_ledgers += 1,
                }
                if self.attempt.ledger_conflicts + self.stale_ledgers >= LEDGER_RETRIES_MAX {
                    return Err(LogError::Unavailable(format!(
                        "{what}: the ledger kept changing under {LEDGER_RETRIES_MAX} attempts; try again later"
                    )));
                }
                if pause {
                    ledger_backoff(self.attempt.ledger_conflicts).await;
                }
                Ok(None)
            }
        }
    }
}

/// Compare-and-swap on one ledger, the ledgers' own repository: reads the ledger, lets `change` make the new one
/// (and what the caller gets) from what it read, and writes it on the revision read unless it is unchanged; after a
/// lost race, again on a fresh read, within `Retries`' bound on ledger rounds (`LEDGER_RETRIES_MAX`, random pauses).
pub(crate) async fn swap_ledger<L: EventLog, T>(
    log: &L,
    key: &LedgerKey,
    change: impl FnMut(&Ledger) -> (Ledger, T),
) -> Result<T, LogError> {
    Ok(swap_ledger_from(log, key, None, change).await?.output)
}

/// What `swap_ledger_from` came to: the caller's output, the ledger as it now stands and its revision (to remember),
/// and whether a remembered ledger turned out stale (another process had written it since).
pub(crate) struct Swapped<T> {
    pub output: T,
    pub revision: u64,
    pub ledger: Ledger,
    pub stale: bool,
}

/// `swap_ledger`, whose first round starts from `remembered` (a revision and the ledger this process wrote there last)
/// instead of a read when it is given. Remembering never loosens the compare-and-swap: a remembered revision that is
/// no longer the ledger's (another process wrote since) only makes the write a conflict, and the round is run again
/// at once on a read (`Round::StaleLedger`: counted in the bound, without the pause). A round that would leave a
/// remembered ledger unchanged is run again on a read too: with nothing written, nothing would show that the ledger
/// is still as remembered.
pub(crate) async fn swap_ledger_from<L: EventLog, T>(
    log: &L,
    key: &LedgerKey,
    mut remembered: Option<(u64, Ledger)>,
    mut change: impl FnMut(&Ledger) -> (Ledger, T),
) -> Result<Swapped<T>, LogError> {
    let what = key.to_string();
    let mut retries = Retries::new(&what);
    let mut stale = false;
    loop {
        let (from_memory, (revision, read)) = match remembered.take() {
            Some(known) => (true, known),
            None => (false, log.ledger(key).await?),
        };
        let (ledger, output) = change(&read);
        let round = match (ledger == read, from_memory) {
            (true, true) => continue,
            (true, false) => Round::Done((output, revision, ledger)),
            (false, _) => match log.put_ledger(key, revision, &ledger).await {
                Ok(written) => Round::Done((output, written, ledger)),
                Err(LogError::Conflict { .. }) if from_memory => {
                    stale = true;
                    Round::StaleLedger
                }
                Err(LogError::Conflict { .. }) => Round::LedgerConflict,
                Err(error) => return Err(error),
            },
        };
        if let Some((output, revision, ledger)) = retries.settle(round).await? {
            return Ok(Swapped { output, revision, ledger, stale });
        }
    }
}

impl<L: EventLog> Service<L> {
    /// Loads a case's history and folds it, refusing a history that breaks the transition table.
    pub async fn load(&self, case_id: &CaseId) -> Result<(CaseState, Vec<Event>), ServiceError> {
        let (state, events, _) = self.load_for_append(case_id, true).await?;
        Ok((state, events))
    }

    /// `load`, plus the global sequence of the case's last commit: the expected position of the next append. The
    /// first attempt may read a fast copy; after a conflict (`fresh`) the authority is read.
    pub(super) async fn load_for_append(
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
                Decoded::Control { .. } | Decoded::Alert { .. } => {
                    return Err(ServiceError::Corrupt("a control or alert event in a case stream".into()));
                }
            }
        }
        let state = fold(&events).map_err(|error| ServiceError::Corrupt(error.to_string()))?;
        Ok((state, events, entries.last().map_or(0, |entry| entry.sequence)))
    }

    /// The kill switch's state, its number of events, and the sequence of its last commit.
    pub async fn control_state(&self) -> Result<(ControlState, u64, u64), ServiceError> {
        Ok(crate::log::control_state(&self.log).await?)
    }

    /// Appends `events` to the case after `state`, if the case's last commit is still `last_sequence`, as the command
    /// `key` (a key appended before appends nothing).
    pub(super) async fn append_case(
        &self,
        case_id: &CaseId,
        state: &CaseState,
        last_sequence: u64,
        key: &str,
        events: &[Event],
    ) -> Result<Written, ServiceError> {
        let encoded = events
            .iter()
            .enumerate()
            .map(|(offset, event)| encode_case_event(case_id, state.events as u64 + offset as u64 + 1, event))
            .collect();
        written(self.log.append(&Stream::Case(case_id.clone()), last_sequence, key, encoded).await)
    }

    /// `append_case` for the kill switch's stream, after its `version` events.
    pub(super) async fn append_control(
        &self,
        version: u64,
        last_sequence: u64,
        key: &str,
        events: &[crate::core::control::ControlEvent],
    ) -> Result<Written, ServiceError> {
        let encoded = events
            .iter()
            .enumerate()
            .map(|(offset, event)| encode_control_event(version + offset as u64 + 1, event))
            .collect();
        written(self.log.append(&Stream::Control, last_sequence, key, encoded).await)
    }
}

pub(super) fn written(appended: Result<Appended, LogError>) -> Result<Written, ServiceError> {
    match appended {
        Ok(Appended::New { first_sequence }) => Ok(Written::New { first_sequence }),
        Ok(Appended::Duplicate) => Ok(Written::Duplicate),
        Err(LogError::Conflict { .. }) => Ok(Written::Conflict),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::actor::{Actor, Role};
    use crate::core::command::{Command, CommandEnvelope};
    use crate::core::ids::CommandId;
    use crate::core::rejection::Rejection;
    use crate::log::sqlite::SqliteLog;
    use crate::log::{Entry, Ledger, LedgerKey};
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    /// A log over the embedded one that counts what it is asked and can be rigged: while `appends_behind`, every
    /// append conflicts (another writer always got there first); while `ledgers_behind`, every ledger write does; each
    /// case read waits for a permit of `case_gate` when there is one.
    struct Rigged {
        log: SqliteLog,
        appends: AtomicU32,
        ledger_writes: AtomicU32,
        ledger_reads: AtomicU32,
        case_reads: AtomicU32,
        appends_behind: AtomicBool,
        ledgers_behind: AtomicBool,
        case_gate: Option<tokio::sync::Semaphore>,
    }

    impl Rigged {
        fn open(path: &std::path::Path) -> Rigged {
            Rigged {
                log: SqliteLog::open(path).unwrap(),
                appends: 0.into(),
                ledger_writes: 0.into(),
                ledger_reads: 0.into(),
                case_reads: 0.into(),
                appends_behind: false.into(),
                ledgers_behind: false.into(),
                case_gate: None,
            }
        }
    }

    impl EventLog for Rigged {
        async fn append(
            &self,
            stream: &Stream,
            expected: u64,
            key: &str,
            events: Vec<Vec<u8>>,
        ) -> Result<Appended, LogError> {
            self.appends.fetch_add(1, Ordering::SeqCst);
            if !self.appends_behind.load(Ordering::SeqCst) {
                return self.log.append(stream, expected, key, events).await;
            }
            Err(LogError::Conflict { stream: format!("{stream:?}"), expected, actual: expected + 1 })
        }
        async fn read_stream(&self, stream: &Stream) -> Result<Vec<Entry>, LogError> {
            if let (Stream::Case(_), Some(gate)) = (stream, &self.case_gate) {
                self.case_reads.fetch_add(1, Ordering::SeqCst);
                gate.acquire().await.unwrap().forget();
            }
            self.log.read_stream(stream).await
        }
        async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<Entry>, LogError> {
            self.log.read_after(after, limit).await
        }
        async fn last_sequence(&self) -> Result<u64, LogError> {
            self.log.last_sequence().await
        }
        async fn ledger(&self, key: &LedgerKey) -> Result<(u64, Ledger), LogError> {
            self.ledger_reads.fetch_add(1, Ordering::SeqCst);
            self.log.ledger(key).await
        }
        async fn put_ledger(&self, key: &LedgerKey, revision: u64, ledger: &Ledger) -> Result<u64, LogError> {
            self.ledger_writes.fetch_add(1, Ordering::SeqCst);
            if !self.ledgers_behind.load(Ordering::SeqCst) {
                return self.log.put_ledger(key, revision, ledger).await;
            }
            Err(LogError::Conflict { stream: key.to_string(), expected: revision, actual: revision + 1 })
        }
    }

    /// The embedded service's parts over another log.
    fn over<L: EventLog>(embedded: Service<SqliteLog>, log: L) -> Service<L> {
        Service {
            log,
            projection: embedded.projection,
            directory: embedded.directory,
            notifier: embedded.notifier,
            clock: embedded.clock,
            keys: embedded.keys,
            settings: embedded.settings,
            public_url: embedded.public_url,
            policy: embedded.policy,
            project_inline: true,
            admissions: Default::default(),
            redelivery: Default::default(),
            sign_in_step_up: false,
            campaigns: Default::default(),
        }
    }

    // Proves a request to open a case reads its ledgers while its case is read, not after (a round trip less per new
    // request, issue 21): with the case's read held, the account's ledger, its proof failures and the desk's are all
    // read; once the read is let go the request is decided on them and opens its case.
    #[tokio::test(flavor = "current_thread")]
    async fn a_new_request_reads_its_ledgers_while_its_case_is_read() {
        let data = tempfile::tempdir().unwrap();
        let keys = crate::keys::Keys::load_or_create(&data.path().join("airlock.key")).unwrap();
        let embedded =
            crate::server::embedded::open(data.path(), std::sync::Arc::new(crate::clock::SystemClock), keys).unwrap();
        let held =
            Rigged { case_gate: Some(tokio::sync::Semaphore::new(0)), ..Rigged::open(&data.path().join("log.db")) };
        let service = std::sync::Arc::new(over(embedded.service, held));
        let envelope = CommandEnvelope {
            command_id: CommandId::new("request-1"),
            actor: Actor::new(Role::Intake, "desk"),
            command: Command::RequestRecovery {
                account_id: crate::core::ids::AccountId::new("nobody"),
                action: crate::core::action::RecoveryAction::ResetPassword,
                summary: crate::core::text::UntrustedText::new("summary", "locked out", 100).unwrap(),
                signals: Default::default(),
            },
        };
        let handling = tokio::spawn({
            let service = service.clone();
            async move { service.handle(&CaseId::new("case-1"), envelope).await }
        });
        // The account's ledger, its proof failures, the desk's (each on the blocking pool). Bounded, so that reading
        // them only after the case fails here rather than hanging.
        let read = async {
            while service.log.ledger_reads.load(Ordering::SeqCst) < 3 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        };
        let waited = tokio::time::timeout(std::time::Duration::from_secs(10), read).await;
        assert!(waited.is_ok(), "the ledgers were not read while the case's read was held");
        assert_eq!(service.log.case_reads.load(Ordering::SeqCst), 1, "the case's read is still held");
        service.log.case_gate.as_ref().unwrap().add_permits(1);
        let handled = handling.await.unwrap().unwrap();
        assert_eq!((handled.appended, handled.case_id.as_str()), (2, "case-1"), "the request opened its case");
    }

    // Proves the repository's bounds (issue 21): on a log where every append loses the race, a command, the kill
    // switch and a refusal recorded at the edge each try exactly CONFLICT_RETRIES_MAX times, then fail with an error
    // that names the stream and the bound and says to try again later, instead of looping for ever; where every ledger
    // write loses, a request's admission to its ledgers and any other ledger swap try exactly LEDGER_RETRIES_MAX
    // times, then fail the same way.
    #[tokio::test]
    async fn every_append_losing_the_race_ends_in_a_clear_error_after_the_bound() {
        let data = tempfile::tempdir().unwrap();
        let keys = crate::keys::Keys::load_or_create(&data.path().join("airlock.key")).unwrap();
        let embedded =
            crate::server::embedded::open(data.path(), std::sync::Arc::new(crate::clock::SystemClock), keys).unwrap();
        let embedded = embedded.service;
        let behind = Rigged { appends_behind: true.into(), ..Rigged::open(&data.path().join("log.db")) };
        let service = over(embedded, behind);
        let operator = Actor::new(Role::Operator, "ops");
        let reason = crate::core::text::UntrustedText::new("reason", "drill", 100).unwrap();
        let halt = crate::core::control::ControlCommand::Halt { reason: reason.clone() };
        let error = service.control(CommandId::new("halt-1"), operator, halt).await.unwrap_err().to_string();
        assert!(error.contains("the control stream kept changing") && error.contains("8 attempts"), "{error}");
        assert_eq!(service.log.appends.swap(0, Ordering::SeqCst), CONFLICT_RETRIES_MAX);

        let case_id = CaseId::new("case-1");
        let request = Command::RequestRecovery {
            account_id: crate::core::ids::AccountId::new("nobody"),
            action: crate::core::action::RecoveryAction::ResetPassword,
            summary: reason,
            signals: Default::default(),
        };
        let desk = Actor::new(Role::Intake, "desk");
        let envelope = |id: &str| CommandEnvelope {
            command_id: CommandId::new(id),
            actor: desk.clone(),
            command: request.clone(),
        };
        let error = service.handle(&case_id, envelope("request-1")).await.unwrap_err().to_string();
        assert!(error.contains("case case-1 kept changing") && error.contains("try again later"), "{error}");
        assert_eq!(service.log.appends.swap(0, Ordering::SeqCst), CONFLICT_RETRIES_MAX);

        // A refusal recorded on a case that exists.
        service.log.appends_behind.store(false, Ordering::SeqCst);
        let opened = CaseId::new("case-2");
        service.handle(&opened, envelope("request-2")).await.unwrap();
        service.log.appends_behind.store(true, Ordering::SeqCst);
        service.log.appends.store(0, Ordering::SeqCst);
        let malformed = Rejection::MalformedCommand { reason: "not JSON".into() };
        let kind = crate::core::command::CommandKind::Cancel;
        let refused = service.refuse(&opened, &desk, &CommandId::new("bad-1"), kind, malformed.clone()).await;
        assert!(matches!(refused, ServiceError::Rejected(rejection) if rejection == malformed));
        assert_eq!(service.log.appends.swap(0, Ordering::SeqCst), CONFLICT_RETRIES_MAX);

        // Every ledger write loses: a new request is never admitted to its ledgers.
        service.log.appends_behind.store(false, Ordering::SeqCst);
        service.log.ledgers_behind.store(true, Ordering::SeqCst);
        service.log.ledger_writes.store(0, Ordering::SeqCst);
        let error = service.handle(&CaseId::new("case-3"), envelope("request-3")).await.unwrap_err().to_string();
        assert!(error.contains("kept changing under 256 attempts; try again later"), "{error}");
        assert_eq!(service.log.ledger_writes.swap(0, Ordering::SeqCst), LEDGER_RETRIES_MAX);
        assert_eq!(service.log.appends.load(Ordering::SeqCst), 0, "a request not counted was appended");
        // Every other ledger (an account's, the first-seen dates) goes through the same swap.
        let key = LedgerKey::FirstSeen("nobody".into());
        let grow = |read: &Ledger| {
            let mut ledger = read.clone();
            ledger.requests.push(crate::log::LedgerEntry {
                case_id: "x".into(),
                at_ms: 1,
                code_until_ms: None,
                count: 0,
            });
            (ledger, ())
        };
        let error = swap_ledger(&service.log, &key, grow).await.unwrap_err().to_string();
        assert!(error.contains("destinations first seen of account nobody: the ledger kept changing"), "{error}");
        assert_eq!(service.log.ledger_writes.load(Ordering::SeqCst), LEDGER_RETRIES_MAX);
    }
}
