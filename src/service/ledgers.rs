//! Counting a new request in its request ledgers (ADR 7, ADR 8). The account's ledger is written by `Service::handle`
//! after the decision, on the revision the decision read. The other dimensions (source network, requester, named
//! destination) admit a request before its decision; requests of one process that share such a ledger are admitted
//! together, in one compare-and-swap, so that a busy desk costs one write per batch rather than one per request.

use crate::core::action::RecoveryAction;
use crate::core::ids::{CaseId, UnixMs};
#[cfg(test)]
use crate::core::limits::HOUR_MS;
use crate::core::limits::{DAY_MS, PROOF_ATTEMPT_WINDOW_MS, VELOCITY_COUNT_MAX};
use crate::core::policy::Velocity;
use crate::core::signals::Signals;
use crate::log::{EventLog, Ledger, LedgerEntry, LedgerKey, LogError};
use crate::service::ServiceError;
use crate::service::repository::{Swapped, swap_ledger, swap_ledger_from};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// The ledgers a request is counted in besides its account's, one per velocity dimension it has a value for. Values
/// are normalised so that spelling a value differently does not start a fresh count; merging two values only
/// over-counts.
pub fn dimension_keys(signals: &Signals, requester: &str, action: &RecoveryAction) -> Vec<LedgerKey> {
    let normal = |value: &str| value.trim().to_lowercase();
    let mut keys = Vec::new();
    keys.extend(signals.source_network.as_deref().map(|network| LedgerKey::SourceNetwork(normal(network))));
    keys.push(LedgerKey::Requester(requester.to_string()));
    if let RecoveryAction::AddDestination { kind, address } = action {
        // Every spelling of one address is one address (issue 15, item 10).
        keys.push(LedgerKey::Destination(crate::core::address::counted_as(*kind, address)));
        // And every address at one registrable domain is one campaign's, whichever account it is named for.
        if let Some(domain) = crate::core::address::registrable_domain(*kind, address) {
            keys.push(LedgerKey::DestinationDomain(domain));
        }
    }
    keys
}

/// Records a ledger's count as the velocity fact of its dimension.
pub fn set_count(velocity: &mut Velocity, key: &LedgerKey, count: u32) {
    match key {
        LedgerKey::Account(_) => velocity.account_requests_24h = count,
        LedgerKey::SourceNetwork(_) => velocity.source_network_requests_24h = count,
        LedgerKey::Requester(_) => velocity.requester_requests_24h = count,
        LedgerKey::Destination(_) => velocity.destination_requests_24h = count,
        LedgerKey::DestinationDomain(_) => velocity.destination_domain_requests_24h = count,
        // Not velocities: counted into the account's verification facts, or dating its destinations.
        LedgerKey::ProofFailures(_) | LedgerKey::FirstSeen(_) => {}
    }
}

/// The request's count in a ledger, and the ledger with the request in it. The count is the requests of the day
/// before `now` that came before this one, capped as every velocity count is; a request already in the ledger (it is
/// being decided again) keeps the count it was admitted with.
pub fn count_and_admit(read: &Ledger, case_id: &CaseId, now: UnixMs) -> (u32, Ledger) {
    let mut ledger = read.clone();
    let count = admit_into(&mut ledger, case_id, now);
    (count, ledger)
}

/// `count_and_admit` on a ledger in place: a batch admits its requests one after the other into one copy of the
/// ledger, rather than copying the whole ledger (up to `VELOCITY_COUNT_MAX + 1` entries) once per request.
fn admit_into(ledger: &mut Ledger, case_id: &CaseId, now: UnixMs) -> u32 {
    let since = now.0.saturating_sub(DAY_MS);
    let recent = &mut ledger.requests;
    prune(recent, now);
    if let Some(own) = recent.iter().find(|entry| entry.case_id == case_id.as_str()) {
        return own.count;
    }
    let count = (recent.iter().filter(|entry| entry.at_ms > since).count() as u32).min(VELOCITY_COUNT_MAX);
    recent.push(LedgerEntry { case_id: case_id.to_string(), at_ms: now.0, code_until_ms: None, count });
    // Only whether a threshold was crossed matters, and counts saturate at VELOCITY_COUNT_MAX: entries older than the
    // newest VELOCITY_COUNT_MAX + 1 carry no information (each newer one keeps its own count) and would only grow it.
    let excess = recent.len().saturating_sub(VELOCITY_COUNT_MAX as usize + 1);
    recent.drain(..excess);
    count
}

/// How long a ledger keeps an entry: well past the day it is counted in, so that a wall clock stepped a day ahead
/// and back (ADR 15) finds the counts it left, instead of having pruned them while it was wrong. Entries timed in the
/// future (the clock stepped back) are kept and counted too.
pub const LEDGER_KEEP_MS: u64 = 7 * DAY_MS;

/// Leaves the entries a ledger written at `now` keeps: those younger than `LEDGER_KEEP_MS`, in order.
fn prune(requests: &mut Vec<LedgerEntry>, now: UnixMs) {
    let horizon = now.0.saturating_sub(LEDGER_KEEP_MS);
    requests.retain(|entry| entry.at_ms > horizon);
}

/// The wrong codes counted against an account when a proof for `case_id` is decided: the case's own (`own`, from
/// its events, which the case's appends put in order) plus the other cases' in the ledger, inside
/// `PROOF_ATTEMPT_WINDOW_MS`. And the ledger with this proof recorded as a failure (`<case>/<command>`), to be
/// written (compare-and-swap, even if unchanged, so the count read is still current) before a refusal is appended.
pub fn failures_and_record(read: &Ledger, case_id: &CaseId, command_id: &str, own: u32, now: UnixMs) -> (u32, Ledger) {
    let since = now.0.saturating_sub(PROOF_ATTEMPT_WINDOW_MS);
    let own_prefix = format!("{case_id}/");
    let mut recent = read.requests.clone();
    prune(&mut recent, now);
    let others =
        recent.iter().filter(|entry| entry.at_ms > since && !entry.case_id.starts_with(&own_prefix)).count() as u32;
    let failed = (own + others).min(VELOCITY_COUNT_MAX);
    let id = format!("{case_id}/{command_id}");
    if !recent.iter().any(|entry| entry.case_id == id) {
        recent.push(LedgerEntry { case_id: id, at_ms: now.0, code_until_ms: None, count: failed });
    }
    let excess = recent.len().saturating_sub(VELOCITY_COUNT_MAX as usize + 1);
    recent.drain(..excess);
    (failed, Ledger { requests: recent })
}

/// Takes one proof (`<case>/<command>`) out of a proof-failure ledger: it was counted as a wrong code, then decided
/// otherwise.
pub async fn forget_failure<L: EventLog>(
    log: &L,
    key: &LedgerKey,
    case_id: &CaseId,
    command_id: &str,
) -> Result<(), LogError> {
    let id = format!("{case_id}/{command_id}");
    rewrite(log, key, |ledger| ledger.requests.retain(|entry| entry.case_id != id)).await
}

/// Marks a case's code as never delivered in its account's request ledger: the request stays counted, its code is
/// no longer outstanding.
pub async fn forget_code<L: EventLog>(log: &L, key: &LedgerKey, case_id: &CaseId) -> Result<(), LogError> {
    rewrite(log, key, |ledger| {
        for entry in ledger.requests.iter_mut().filter(|entry| entry.case_id == case_id.as_str()) {
            entry.code_until_ms = None;
        }
    })
    .await
}

/// Applies `change` to the ledger at `key` (`swap_ledger`); writes nothing when the change changes nothing.
async fn rewrite<L: EventLog>(log: &L, key: &LedgerKey, change: impl Fn(&mut Ledger)) -> Result<(), LogError> {
    swap_ledger(log, key, |read| {
        let mut ledger = read.clone();
        change(&mut ledger);
        (ledger, ())
    })
    .await
}

/// The wrong codes in a proof-failure ledger inside `PROOF_ATTEMPT_WINDOW_MS` before `now`.
pub fn failures_in_window(read: &Ledger, now: UnixMs) -> u32 {
    let since = now.0.saturating_sub(PROOF_ATTEMPT_WINDOW_MS);
    read.requests.iter().filter(|entry| entry.at_ms > since).count() as u32
}

/// A request waiting to be admitted to a ledger, and where its count goes.
struct Waiting {
    case_id: CaseId,
    now: UnixMs,
    answer: oneshot::Sender<Result<u32, LogError>>,
}

/// The requests of one service waiting for each ledger, and one turn per stripe of keys: whoever holds a key's turn
/// admits everything waiting for that key. Two keys that share a stripe only take turns when they need not. One per
/// `Service`, so that services on different logs in one process never admit each other's requests.
///
/// Each batch's write is remembered (`remembered`, at most `REMEMBERED_LEDGERS_MAX` ledgers, the least recently used
/// forgotten first), so that the next batch of that ledger writes on it without reading it first: a busy desk's
/// ledger is then one compare-and-swap per batch, not a read and a write, and a request waits for one round trip
/// fewer. Another process's write in between makes the compare-and-swap fail, and the batch is admitted again on a
/// read (`swap_ledger_from`); a ledger found stale is then read first for its next batches, twice as many each time it
/// is found stale again (up to `STALE_READS_MAX`), so that a ledger several processes share costs about what it did
/// before: a read and a write per batch.
pub struct Admissions {
    waiting: Mutex<HashMap<LedgerKey, Vec<Waiting>>>,
    turns: Vec<tokio::sync::Mutex<()>>,
    remembered: Mutex<Remembered>,
}

/// The ledgers an `Admissions` remembers.
#[derive(Default)]
struct Remembered {
    ledgers: HashMap<LedgerKey, Memory>,
    /// Counts uses, to find the least recently used ledger.
    clock: u64,
}

/// One remembered ledger.
struct Memory {
    /// The revision and the ledger this process last wrote or read.
    last: Option<(u64, Ledger)>,
    /// Batches still to read the ledger first, because it was found stale.
    reads_first: u32,
    /// How many to read first when it is next found stale.
    penalty: u32,
    /// When it was last remembered (`Remembered::clock`).
    used: u64,
}

/// The most batches a ledger found stale again and again is read first for before it is tried from memory again.
const STALE_READS_MAX: u32 = 64;

const STRIPES: usize = 64;

/// The most ledgers an `Admissions` remembers. A desk's ledger, full, is about 26 KB (`VELOCITY_COUNT_MAX + 1`
/// entries), so this bounds the memory to a few MB whatever the number of desks, networks and addresses; one that is
/// not remembered costs a read, as before.
pub const REMEMBERED_LEDGERS_MAX: usize = 128;

impl Default for Admissions {
    fn default() -> Self {
        Admissions {
            waiting: Mutex::new(HashMap::new()),
            turns: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            remembered: Mutex::new(Remembered::default()),
        }
    }
}

impl Admissions {
    /// Takes what this process last wrote to `key`, if it remembers it and the ledger was not found stale lately.
    /// Only the holder of the key's turn takes or remembers it, so nobody else in this process writes the ledger
    /// meanwhile; a holder cancelled half way leaves nothing remembered, and the next batch reads.
    fn take_remembered(&self, key: &LedgerKey) -> Option<(u64, Ledger)> {
        let mut remembered = self.remembered.lock().expect("admissions lock");
        let memory = remembered.ledgers.get_mut(key)?;
        let last = memory.last.take();
        if memory.reads_first > 0 {
            memory.reads_first -= 1;
            return None;
        }
        last
    }

    /// Remembers the ledger at `key` as it stands at `revision`, after a batch that started `from_memory` (or on a
    /// read) and found the remembered ledger `stale` (or not); forgets the least recently used other ledger if the
    /// memory is full. Only a batch written on the memory clears the ledger's penalty.
    fn remember(&self, key: &LedgerKey, revision: u64, ledger: Ledger, from_memory: bool, stale: bool) {
        let mut remembered = self.remembered.lock().expect("admissions lock");
        remembered.clock += 1;
        let used = remembered.clock;
        if remembered.ledgers.len() >= REMEMBERED_LEDGERS_MAX
            && !remembered.ledgers.contains_key(key)
            && let Some(oldest) =
                remembered.ledgers.iter().min_by_key(|(_, memory)| memory.used).map(|(key, _)| key.clone())
        {
            remembered.ledgers.remove(&oldest);
        }
        let memory =
            remembered.ledgers.entry(key.clone()).or_insert(Memory { last: None, reads_first: 0, penalty: 0, used });
        memory.last = Some((revision, ledger));
        memory.used = used;
        if stale {
            memory.penalty = (memory.penalty * 2).clamp(1, STALE_READS_MAX);
            memory.reads_first = memory.penalty;
        } else if from_memory {
            memory.penalty = 0;
        }
    }
}

/// Counts a new request in one ledger and returns the key and the count it was admitted with. Idempotent: a request
/// already in the ledger keeps its count. Requests of this process waiting for the same ledger are written together.
pub async fn admit<L: EventLog>(
    admissions: &Admissions,
    log: &L,
    key: LedgerKey,
    case_id: &CaseId,
    now: UnixMs,
) -> Result<(LedgerKey, u32), ServiceError> {
    let (answer, mut counted) = oneshot::channel();
    let waiting = Waiting { case_id: case_id.clone(), now, answer };
    admissions.waiting.lock().expect("admissions lock").entry(key.clone()).or_default().push(waiting);
    // A request taken into another's batch is answered by it and goes at once: waiting for its own turn too would
    // queue it behind one turn per request ahead of it, each turn writing the requests that arrived meanwhile (the
    // p99 of a busy desk's requests was that queue, docs/benchmarks.md, session 21).
    let counted = tokio::select! {
        biased;
        counted = &mut counted => counted,
        turn = admissions.turns[stripe_of(&key)].lock() => {
            // A holder answers every batch it took before it lets the turn go (or, cancelled half way, drops the
            // answers: "dropped" below), so this request is still waiting, and in this batch, unless it was answered.
            let batch = admissions.waiting.lock().expect("admissions lock").remove(&key).unwrap_or_default();
            if !batch.is_empty() {
                admit_batch(admissions, log, &key, batch).await;
            }
            drop(turn);
            counted.await
        }
    };
    let count = counted.map_err(|_| LogError::Unavailable(format!("the admission to {key} was dropped")))??;
    Ok((key, count))
}

fn stripe_of(key: &LedgerKey) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(key) as usize % STRIPES
}

/// Admits `batch` to the ledger at `key` in one compare-and-swap (`swap_ledger_from`, on the ledger as this process
/// last wrote it if it remembers it), then tells each request its count, or the error.
async fn admit_batch<L: EventLog>(admissions: &Admissions, log: &L, key: &LedgerKey, batch: Vec<Waiting>) {
    let remembered = admissions.take_remembered(key);
    let from_memory = remembered.is_some();
    let outcome = swap_ledger_from(log, key, remembered, |read| {
        let mut ledger = read.clone();
        let counts: Vec<u32> =
            batch.iter().map(|waiting| admit_into(&mut ledger, &waiting.case_id, waiting.now)).collect();
        (ledger, counts)
    })
    .await;
    match outcome {
        Ok(Swapped { output: counts, revision, ledger, stale }) => {
            admissions.remember(key, revision, ledger, from_memory, stale);
            for (waiting, count) in batch.into_iter().zip(counts) {
                let _ = waiting.answer.send(Ok(count));
            }
        }
        Err(error) => {
            for waiting in batch {
                let _ = waiting.answer.send(Err(error.clone()));
            }
        }
    }
}

#[cfg(test)]
mod clock_step_tests {
    use super::*;

    // Proves (issue 15, item 16; ADR 15) a wall clock stepped a day ahead and back erases no count: while it is ahead
    // the day's window is empty, but the entries are kept, and once it is back every request counts again; entries
    // timed in the future (the clock stepped back) count too.
    #[test]
    fn a_clock_stepped_ahead_and_back_erases_no_count() {
        let start = UnixMs(100 * DAY_MS);
        let mut ledger = Ledger::default();
        for index in 0..3 {
            let (_, admitted) = count_and_admit(&ledger, &CaseId::new(format!("case-{index}")), start);
            ledger = admitted;
        }
        let ahead = UnixMs(start.0 + DAY_MS + HOUR_MS);
        let (count_ahead, ledger) = count_and_admit(&ledger, &CaseId::new("case-ahead"), ahead);
        assert_eq!(count_ahead, 0, "a day ahead, the window is empty");
        assert_eq!(ledger.requests.len(), 4, "but nothing was pruned");
        let back = UnixMs(start.0 + HOUR_MS);
        let (count_back, _) = count_and_admit(&ledger, &CaseId::new("case-back"), back);
        assert_eq!(count_back, 4, "back on time, the three requests and the one made while ahead all count");
    }

    // Proves the same for wrong codes: failures recorded before a forward step are counted again after it.
    #[test]
    fn wrong_codes_survive_a_clock_step() {
        let start = UnixMs(100 * DAY_MS);
        let mut ledger = Ledger::default();
        for index in 0..3 {
            let (_, recorded) = failures_and_record(&ledger, &CaseId::new("case-a"), &format!("w{index}"), 0, start);
            ledger = recorded;
        }
        let (_, ledger) =
            failures_and_record(&ledger, &CaseId::new("case-b"), "ahead", 0, UnixMs(start.0 + 2 * DAY_MS));
        let (failed, _) = failures_and_record(&ledger, &CaseId::new("case-c"), "back", 0, UnixMs(start.0 + HOUR_MS));
        assert_eq!(failed, 4, "the three wrong codes before the step and the one during it");
    }
}

#[cfg(test)]
mod admission_tests {
    use super::*;
    use crate::log::envelope::Stream;
    use crate::log::{Appended, Entry};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Ledgers in memory whose writes each wait for a permit of `gate`, so a test decides when each batch's
    /// compare-and-swap lands; `writes_started` counts the writes that reached the gate.
    struct GatedLedgers {
        ledgers: Mutex<HashMap<LedgerKey, (u64, Ledger)>>,
        gate: tokio::sync::Semaphore,
        writes_started: AtomicUsize,
        reads: AtomicUsize,
    }

    impl GatedLedgers {
        /// Ledgers whose writes are never held.
        fn open() -> GatedLedgers {
            GatedLedgers {
                ledgers: Default::default(),
                gate: tokio::sync::Semaphore::new(tokio::sync::Semaphore::MAX_PERMITS),
                writes_started: AtomicUsize::new(0),
                reads: AtomicUsize::new(0),
            }
        }

        /// Another process's write: whatever this process remembers of the ledger is stale after it.
        fn written_elsewhere(&self, key: &LedgerKey, ledger: Ledger) {
            let mut ledgers = self.ledgers.lock().unwrap();
            let revision = ledgers.get(key).map_or(0, |(revision, _)| *revision);
            ledgers.insert(key.clone(), (revision + 1, ledger));
        }
    }

    impl EventLog for GatedLedgers {
        async fn append(&self, _: &Stream, _: u64, _: &str, _: Vec<Vec<u8>>) -> Result<Appended, LogError> {
            unreachable!("admissions only use ledgers")
        }
        async fn read_stream(&self, _: &Stream) -> Result<Vec<Entry>, LogError> {
            unreachable!("admissions only use ledgers")
        }
        async fn read_after(&self, _: u64, _: usize) -> Result<Vec<Entry>, LogError> {
            unreachable!("admissions only use ledgers")
        }
        async fn last_sequence(&self) -> Result<u64, LogError> {
            unreachable!("admissions only use ledgers")
        }
        async fn ledger(&self, key: &LedgerKey) -> Result<(u64, Ledger), LogError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(self.ledgers.lock().unwrap().get(key).cloned().unwrap_or_default())
        }
        async fn put_ledger(&self, key: &LedgerKey, revision: u64, ledger: &Ledger) -> Result<u64, LogError> {
            self.writes_started.fetch_add(1, Ordering::SeqCst);
            self.gate.acquire().await.unwrap().forget();
            let mut ledgers = self.ledgers.lock().unwrap();
            let (found, _) = ledgers.get(key).cloned().unwrap_or_default();
            if found != revision {
                return Err(LogError::Conflict { stream: key.to_string(), expected: revision, actual: found });
            }
            ledgers.insert(key.clone(), (revision + 1, ledger.clone()));
            Ok(revision + 1)
        }
    }

    /// Runs the other tasks of this (single-threaded) runtime until `done` holds; a bounded number of turns.
    async fn until(what: &str, done: impl Fn() -> bool) {
        for _ in 0..10_000 {
            if done() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("never came to pass: {what}");
    }

    // Proves a batch written in one compare-and-swap counts its requests as if each had been admitted alone, one after
    // the other (`count_and_admit` chained): requests of one batch at different moments (one a day and more later,
    // which prunes what the others saw), one already in the ledger (it keeps its count) and a full ledger (the oldest
    // entries drop out).
    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_counts_as_its_requests_admitted_one_after_the_other() {
        let key = LedgerKey::Requester("intake:desk".into());
        let start = UnixMs(100 * DAY_MS);
        let mut stored = Ledger::default();
        for index in 0..=VELOCITY_COUNT_MAX as u64 {
            let at = UnixMs(start.0 + index * 60_000);
            stored = count_and_admit(&stored, &CaseId::new(format!("old-{index}")), at).1;
        }
        let log = GatedLedgers {
            ledgers: Mutex::new(HashMap::from([(key.clone(), (7, stored.clone()))])),
            gate: tokio::sync::Semaphore::new(1),
            writes_started: AtomicUsize::new(0),
            reads: AtomicUsize::new(0),
        };
        let later = UnixMs(start.0 + LEDGER_KEEP_MS - HOUR_MS);
        let requests = [
            ("new-1", UnixMs(start.0 + DAY_MS)),
            ("old-3", UnixMs(start.0 + DAY_MS)),
            ("new-2", later),
            ("new-3", UnixMs(later.0 + DAY_MS - 1)),
        ];
        let mut chained = stored;
        let mut expected = Vec::new();
        for (case, now) in requests {
            let (count, admitted) = count_and_admit(&chained, &CaseId::new(case), now);
            expected.push(count);
            chained = admitted;
        }
        let mut answers = Vec::new();
        let batch = requests
            .iter()
            .map(|(case, now)| {
                let (answer, counted) = oneshot::channel();
                answers.push(counted);
                Waiting { case_id: CaseId::new(*case), now: *now, answer }
            })
            .collect();
        admit_batch(&Admissions::default(), &log, &key, batch).await;
        let mut counts = Vec::new();
        for counted in answers {
            counts.push(counted.await.unwrap().unwrap());
        }
        assert_eq!(counts, expected, "each request's count");
        // The full day before new-1, capped; old-3's own count; nothing in new-2's day; new-2 in new-3's.
        assert_eq!(counts, [VELOCITY_COUNT_MAX, 3, 0, 1]);
        let written = log.ledgers.lock().unwrap()[&key].clone();
        let cases: Vec<&str> = written.1.requests.iter().map(|entry| entry.case_id.as_str()).collect();
        assert_eq!(cases, ["new-1", "new-2", "new-3"], "new-3's week left the old requests out");
        assert_eq!(written, (8, chained), "the ledger written, in one write");
        assert_eq!(log.writes_started.load(Ordering::SeqCst), 1);
    }

    // Proves a request taken into another request's batch returns as soon as that batch is written: it does not wait
    // for its own turn at the ledger, behind the writes of batches that came after it. A busy desk's requests all
    // share the desk's ledger, and before this each one waited for one write per request ahead of it (session 21's
    // p99 at half load, docs/benchmarks.md).
    #[tokio::test(flavor = "current_thread")]
    async fn a_request_counted_in_another_batch_does_not_wait_for_later_batches() {
        let log = Arc::new(GatedLedgers {
            ledgers: Default::default(),
            gate: tokio::sync::Semaphore::new(0),
            writes_started: AtomicUsize::new(0),
            reads: AtomicUsize::new(0),
        });
        let admissions = Arc::new(Admissions::default());
        let key = LedgerKey::Requester("intake:desk".into());
        let now = UnixMs(100 * DAY_MS);
        let admit_one = |name: &str| {
            let (log, admissions, key, case_id) = (log.clone(), admissions.clone(), key.clone(), CaseId::new(name));
            tokio::spawn(async move { admit(&admissions, log.as_ref(), key, &case_id, now).await })
        };
        let waiting = || admissions.waiting.lock().unwrap().get(&key).map_or(0, Vec::len);
        let writes = || log.writes_started.load(Ordering::SeqCst);

        // A holds the turn, its write held at the gate; B and C wait for the turn.
        let a = admit_one("case-a");
        until("A's write reached the gate", || writes() == 1).await;
        // One after the other, so that B is first in the turn's queue whatever order the runtime polls new tasks in.
        let b = admit_one("case-b");
        until("B waits", || waiting() == 1).await;
        let c = admit_one("case-c");
        until("C waits", || waiting() == 2).await;
        // A's write lands; B takes the turn and the batch of B and C, its write held; D comes after.
        log.gate.add_permits(1);
        until("B's batch reached the gate", || writes() == 2).await;
        let d = admit_one("case-d");
        until("D waits", || waiting() == 1).await;
        // B's batch lands: C is counted, and D's batch goes to the gate.
        log.gate.add_permits(1);
        until("D's batch reached the gate", || writes() == 3).await;
        assert!(c.is_finished(), "C, counted in B's batch, waited for D's write");
        assert!(!d.is_finished(), "D's write is still held");

        log.gate.add_permits(1);
        let mut counts = Vec::new();
        for handle in [a, b, c, d] {
            // Bounded: a change that wrote more than once per batch would leave a request held at the gate.
            let admitted = tokio::time::timeout(std::time::Duration::from_secs(10), handle).await;
            counts.push(admitted.expect("every admission ends once its write lands").unwrap().unwrap().1);
        }
        assert_eq!(counts, [0, 1, 2, 3], "each request counts those admitted before it");
        assert_eq!(writes(), 3, "one write per batch");
    }

    // Proves a batch written on a ledger this process wrote last is written without reading the ledger first: one
    // round trip, not two, for every batch of a busy desk but its first.
    #[tokio::test(flavor = "current_thread")]
    async fn a_ledger_this_process_wrote_last_is_not_read_again() {
        let (log, admissions) = (GatedLedgers::open(), Admissions::default());
        let key = LedgerKey::Requester("intake:desk".into());
        let now = UnixMs(100 * DAY_MS);
        let reads = || log.reads.load(Ordering::SeqCst);
        let (_, first) = admit(&admissions, &log, key.clone(), &CaseId::new("case-a"), now).await.unwrap();
        assert_eq!((first, reads()), (0, 1), "the first batch reads the ledger");
        for (index, case) in ["case-b", "case-c"].into_iter().enumerate() {
            let (_, count) = admit(&admissions, &log, key.clone(), &CaseId::new(case), now).await.unwrap();
            assert_eq!(count, index as u32 + 1, "{case} counts the requests before it");
        }
        assert_eq!(reads(), 1, "the later batches wrote on the ledger as this process left it");
        assert_eq!(log.writes_started.load(Ordering::SeqCst), 3);
        assert_eq!(log.ledgers.lock().unwrap()[&key].0, 3);
    }

    // Proves remembering a ledger keeps its counts exact across processes: after another process wrote it, the
    // remembered revision is stale, the write on it fails, and the batch is counted again on what that process wrote.
    // And a request already in the remembered ledger is looked up on a read, not in memory: another process may have
    // taken it out since.
    #[tokio::test(flavor = "current_thread")]
    async fn a_ledger_written_elsewhere_since_is_read_again() {
        let (log, admissions) = (GatedLedgers::open(), Admissions::default());
        let key = LedgerKey::Requester("intake:desk".into());
        let now = UnixMs(100 * DAY_MS);
        admit(&admissions, &log, key.clone(), &CaseId::new("case-a"), now).await.unwrap();
        let (_, mut elsewhere) = count_and_admit(&log.ledgers.lock().unwrap()[&key].1, &CaseId::new("other-1"), now);
        elsewhere = count_and_admit(&elsewhere, &CaseId::new("other-2"), now).1;
        log.written_elsewhere(&key, elsewhere);
        let (_, count) = admit(&admissions, &log, key.clone(), &CaseId::new("case-b"), now).await.unwrap();
        assert_eq!(count, 3, "case-b counts case-a and the other process's two requests");
        assert_eq!(
            (log.reads.load(Ordering::SeqCst), log.writes_started.load(Ordering::SeqCst)),
            (2, 3),
            "the write on the remembered revision was tried and lost, then the ledger was read and written"
        );
        let cases = |log: &GatedLedgers| -> Vec<String> {
            log.ledgers.lock().unwrap()[&key].1.requests.iter().map(|entry| entry.case_id.clone()).collect()
        };
        assert_eq!(cases(&log), ["case-a", "other-1", "other-2", "case-b"]);

        // Another process empties the ledger (a week went by, say); case-b, decided again, is admitted again.
        log.written_elsewhere(&key, Ledger::default());
        let reads = log.reads.load(Ordering::SeqCst);
        let (_, count) = admit(&admissions, &log, key.clone(), &CaseId::new("case-b"), now).await.unwrap();
        assert_eq!(count, 0, "counted on the ledger as it is, not as remembered");
        assert_eq!(cases(&log), ["case-b"], "and written back into it");
        assert_eq!(log.reads.load(Ordering::SeqCst), reads + 1, "one read");
    }

    // Proves a ledger another process writes too is read first after it was found stale, for one batch, then two,
    // then four as it is found stale again at once, and from memory again once a write on the memory lands: several
    // processes sharing a desk cost about a read and a write per batch, as before remembering, not a lost write too.
    #[tokio::test(flavor = "current_thread")]
    async fn a_ledger_found_stale_is_read_first_for_its_next_batches() {
        let (log, admissions) = (GatedLedgers::open(), Admissions::default());
        let key = LedgerKey::Requester("intake:desk".into());
        let now = UnixMs(100 * DAY_MS);
        let counted = || (log.reads.load(Ordering::SeqCst), log.writes_started.load(Ordering::SeqCst));
        let mut cases = 0;
        // One batch: the reads and the write attempts it made.
        let mut batch = async || {
            let before = counted();
            cases += 1;
            admit(&admissions, &log, key.clone(), &CaseId::new(format!("case-{cases}")), now).await.unwrap();
            let after = counted();
            (after.0 - before.0, after.1 - before.1)
        };
        const READ: (usize, usize) = (1, 1);
        const MEMORY: (usize, usize) = (0, 1);
        const STALE: (usize, usize) = (1, 2);
        // Another process writes before each batch marked `true`.
        let steps = [
            (false, READ), // nothing remembered yet
            (false, MEMORY),
            (true, STALE), // read first for one batch
            (false, READ),
            (true, STALE), // stale again at once: for two
            (false, READ),
            (false, READ),
            (true, STALE), // and again: for four
            (false, READ),
            (false, READ),
            (false, READ),
            (false, READ),
            (false, MEMORY), // a write on the memory landed: the penalty is cleared
            (true, STALE),
            (false, READ),
            (false, MEMORY),
        ];
        for (step, (elsewhere, expected)) in steps.into_iter().enumerate() {
            if elsewhere {
                let current = log.ledgers.lock().unwrap()[&key].1.clone();
                log.written_elsewhere(&key, current);
            }
            assert_eq!(batch().await, expected, "batch {step}: (reads, writes tried)");
        }
    }

    // Proves the ledgers remembered are bounded, whatever the number of keys admitted to, and that the one forgotten
    // is the least recently used: a busy desk's ledger stays while one-off networks come and go.
    #[tokio::test(flavor = "current_thread")]
    async fn the_ledgers_remembered_are_bounded() {
        let (log, admissions) = (GatedLedgers::open(), Admissions::default());
        let now = UnixMs(100 * DAY_MS);
        let desk = LedgerKey::Requester("intake:desk".into());
        for index in 0..REMEMBERED_LEDGERS_MAX + 10 {
            let key = LedgerKey::SourceNetwork(format!("net-{index}"));
            admit(&admissions, &log, key, &CaseId::new(format!("case-{index}")), now).await.unwrap();
            admit(&admissions, &log, desk.clone(), &CaseId::new(format!("case-{index}")), now).await.unwrap();
        }
        let remembered = admissions.remembered.lock().unwrap();
        assert_eq!(remembered.ledgers.len(), REMEMBERED_LEDGERS_MAX);
        assert!(remembered.ledgers.contains_key(&desk), "the desk's ledger, used at every step, was forgotten");
        assert!(!remembered.ledgers.contains_key(&LedgerKey::SourceNetwork("net-0".into())));
    }
}
