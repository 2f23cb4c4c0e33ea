//! One conformance suite for every event-log backend. Each check is a generic function over `EventLog`; a backend
//! conforms when every check passes against it. Today the embedded SQLite log runs it; the JetStream backend (issue 3)
//! adds one test per check that calls the same function with its log.

use airlock::core::ids::CaseId;
use airlock::log::envelope::Stream;
use airlock::log::sqlite::SqliteLog;
use airlock::log::{Appended, EventLog, LogError};
use futures::StreamExt;
use std::collections::HashMap;

fn case(number: usize) -> Stream {
    Stream::Case(CaseId::new(format!("case-{number}")))
}

fn payload(stream: usize, version: u64) -> Vec<u8> {
    format!("{stream}:{version}").into_bytes()
}

/// The sequence of a stream's last commit, as a writer learns it by reading the stream.
async fn last<L: EventLog>(log: &L, stream: &Stream) -> u64 {
    log.read_stream(stream).await.unwrap().last().map_or(0, |entry| entry.sequence)
}

async fn read_back<L: EventLog>(log: &L, stream: &Stream) -> Vec<Vec<u8>> {
    log.read_stream(stream).await.unwrap().into_iter().flat_map(|entry| entry.envelopes).collect()
}

/// Two writers append to one stream expecting the same last commit: exactly one wins, the other gets a typed
/// conflict naming the winner's sequence, re-reads, and then succeeds on top of the winner.
pub async fn racing_writers_one_wins<L: EventLog>(log: &L) {
    let stream = case(1);
    let (first, second) = tokio::join!(
        log.append(&stream, 0, "writer-a", vec![b"a".to_vec()]),
        log.append(&stream, 0, "writer-b", vec![b"b".to_vec()]),
    );
    let outcomes = [first, second];
    let winner_sequence = outcomes
        .iter()
        .find_map(|outcome| match outcome {
            Ok(Appended::New { first_sequence }) => Some(*first_sequence),
            Ok(Appended::Duplicate) | Err(_) => None,
        })
        .unwrap_or_else(|| panic!("nobody won: {outcomes:?}"));
    let conflicts = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Err(LogError::Conflict { expected: 0, actual, .. }) if *actual == winner_sequence))
        .count();
    assert_eq!(conflicts, 1, "{outcomes:?}");
    let loser = if outcomes[0].is_ok() { "writer-b" } else { "writer-a" };
    let seen = last(log, &stream).await;
    assert_eq!(seen, winner_sequence);
    let retried = log.append(&stream, seen, loser, vec![b"again".to_vec()]).await.unwrap();
    assert!(matches!(retried, Appended::New { .. }));
    assert_eq!(read_back(log, &stream).await.len(), 2);
}

/// A retried command appends once, even when it is retried with a stale expectation or much later.
pub async fn retried_command_appends_once<L: EventLog>(log: &L) {
    let stream = case(2);
    let first = log.append(&stream, 0, "command-1", vec![b"x".to_vec(), b"y".to_vec()]).await.unwrap();
    assert!(matches!(first, Appended::New { .. }));
    assert_eq!(log.append(&stream, 0, "command-1", vec![b"x".to_vec(), b"y".to_vec()]).await, Ok(Appended::Duplicate));
    let after_first = last(log, &stream).await;
    log.append(&stream, after_first, "command-2", vec![b"z".to_vec()]).await.unwrap();
    let after_second = last(log, &stream).await;
    assert_eq!(log.append(&stream, after_second, "command-1", vec![b"x".to_vec()]).await, Ok(Appended::Duplicate));
    assert_eq!(read_back(log, &stream).await, vec![b"x".to_vec(), b"y".to_vec(), b"z".to_vec()]);
}

/// A multi-event append is atomic, and on a conflict none of its events is written.
pub async fn conflicting_append_writes_nothing<L: EventLog>(log: &L) {
    let stream = case(3);
    log.append(&stream, 0, "first", vec![b"1".to_vec()]).await.unwrap();
    let error = log.append(&stream, 0, "stale", vec![b"2".to_vec(), b"3".to_vec()]).await.unwrap_err();
    assert!(matches!(error, LogError::Conflict { .. }), "{error}");
    assert_eq!(read_back(log, &stream).await, vec![b"1".to_vec()]);
    // The refused command id was not consumed: it appends once the writer has re-read.
    let seen = last(log, &stream).await;
    let appended = log.append(&stream, seen, "stale", vec![b"2".to_vec(), b"3".to_vec()]).await;
    assert!(matches!(appended, Ok(Appended::New { .. })), "{appended:?}");
    let entries = log.read_stream(&stream).await.unwrap();
    assert_eq!(entries.len(), 2, "two commits");
    assert_eq!(entries[1].envelopes, vec![b"2".to_vec(), b"3".to_vec()], "one commit holds both events");
}

/// Many events over many streams: each stream reads back exactly what was written, in order, and the global read
/// returns every commit once, in increasing sequence, in bounded batches.
pub async fn many_streams_read_back_in_order<L: EventLog>(log: &L, streams: usize, events_per_stream: u64) {
    let base = 1_000;
    let before = log.last_sequence().await.unwrap();
    // Appends to different streams are independent, so each round is sent concurrently (as a busy service would);
    // within one stream they stay in order, each expecting the previous commit.
    let mut last_of = vec![0u64; streams];
    for version in 0..events_per_stream {
        let appends = last_of.iter().enumerate().map(|(stream, last)| async move {
            let command = format!("bulk-{stream}-{version}");
            let appended = log.append(&case(base + stream), *last, &command, vec![payload(stream, version)]).await;
            let Ok(Appended::New { first_sequence }) = appended else { panic!("{appended:?}") };
            first_sequence
        });
        last_of = futures::stream::iter(appends).buffered(256).collect().await;
    }
    for stream in [0, streams / 2, streams - 1] {
        let expected: Vec<Vec<u8>> = (0..events_per_stream).map(|version| payload(stream, version)).collect();
        assert_eq!(read_back(log, &case(base + stream)).await, expected, "stream {stream}");
    }
    let mut after = before;
    let mut next_version: HashMap<String, u64> = HashMap::new();
    let mut seen = 0u64;
    let mut sequences = Vec::new();
    loop {
        let batch = log.read_after(after, 4_096).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for entry in &batch {
            assert!(entry.sequence > after, "global order");
            after = entry.sequence;
            sequences.push(after);
            for bytes in &entry.envelopes {
                let text = String::from_utf8(bytes.clone()).unwrap();
                let (stream, version) = text.split_once(':').unwrap();
                let expected = next_version.entry(stream.to_string()).or_insert(0);
                assert_eq!(version.parse::<u64>().unwrap(), *expected, "per-stream order in the global read");
                *expected += 1;
                seen += 1;
            }
        }
    }
    assert_eq!(seen, streams as u64 * events_per_stream);
    assert_eq!(log.last_sequence().await.unwrap(), after);
    // The continuous read (replay's) gives the same commits, stops at its upper bound, and ends at the log's end
    // instead of waiting for more.
    let range = |from: u64, until: u64| async move {
        let read = log.read_range(from, until).map(|entry| entry.unwrap().sequence).collect::<Vec<u64>>();
        tokio::time::timeout(std::time::Duration::from_secs(120), read).await.expect("read_range ends")
    };
    let middle = sequences.len() / 2;
    assert_eq!(range(before, after).await, sequences);
    assert_eq!(range(before, sequences[middle]).await, sequences[..=middle]);
    assert_eq!(range(sequences[middle], after).await, sequences[middle + 1..]);
    assert_eq!(range(before, after + 1_000).await, sequences, "a bound past the end stops at the end");
    assert!(range(after, after).await.is_empty());
}

/// A request ledger changes only by compare-and-swap: a write on a stale revision (or a second first write) is a
/// conflict and changes nothing. Each dimension's ledger of one value is its own, even where the values are equal.
async fn ledger_is_compare_and_swap<L: EventLog>(log: &L) {
    use airlock::log::{Ledger, LedgerEntry, LedgerKey, LogError};
    let entry = |case: &str, at_ms: u64| LedgerEntry {
        case_id: case.to_string(),
        at_ms,
        code_until_ms: None,
        count: at_ms as u32 - 1,
    };
    let ann = LedgerKey::Account("ann@example.com".into());
    assert_eq!(log.ledger(&ann).await.unwrap(), (0, Ledger::default()), "no ledger yet");
    let first = Ledger { requests: vec![entry("case-1", 1)] };
    let written = log.put_ledger(&ann, 0, &first).await.unwrap();
    let second_first = Ledger { requests: vec![entry("case-2", 2)] };
    assert!(matches!(log.put_ledger(&ann, 0, &second_first).await, Err(LogError::Conflict { .. })));
    let (revision, read) = log.ledger(&ann).await.unwrap();
    assert_eq!(read, first, "the losing write changed nothing");
    assert_eq!(written, revision, "a write returns the revision the ledger is read at next");
    let both = Ledger { requests: vec![entry("case-1", 1), entry("case-2", 2)] };
    let written = log.put_ledger(&ann, revision, &both).await.unwrap();
    assert!(matches!(log.put_ledger(&ann, revision, &first).await, Err(LogError::Conflict { .. })));
    let (newer, read) = log.ledger(&ann).await.unwrap();
    assert!(newer > revision);
    assert_eq!(written, newer, "a write returns the revision the ledger is read at next");
    assert_eq!(read, both);
    // A write on the revision a write returned is taken: what a writer that remembers its last write relies on.
    let third = Ledger { requests: vec![entry("case-3", 3)] };
    let latest = log.put_ledger(&ann, written, &third).await.unwrap();
    assert_eq!(log.ledger(&ann).await.unwrap(), (latest, third.clone()));
    assert_eq!(log.ledger(&LedgerKey::Account("bob".into())).await.unwrap(), (0, Ledger::default()));
    for other in [
        LedgerKey::SourceNetwork("ann@example.com".into()),
        LedgerKey::Requester("ann@example.com".into()),
        LedgerKey::Destination("ann@example.com".into()),
    ] {
        assert_eq!(log.ledger(&other).await.unwrap(), (0, Ledger::default()), "{other} has a ledger of its own");
        log.put_ledger(&other, 0, &second_first).await.unwrap();
        assert_eq!(log.ledger(&other).await.unwrap().1, second_first);
    }
    assert_eq!(log.ledger(&ann).await.unwrap(), (latest, third), "other dimensions leave the account's ledger alone");
}

/// A scratch directory for a log's files. On tmpfs where the machine has one: the suite checks behaviour, and the
/// backends' per-append fsync (SQLite synchronous = FULL, JetStream sync_interval: always) would otherwise make the
/// 100k-event checks take minutes for no extra assurance.
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm).unwrap() } else { tempfile::tempdir().unwrap() }
}

fn sqlite_log() -> (tempfile::TempDir, SqliteLog) {
    let directory = scratch_dir();
    let log = SqliteLog::open(&directory.path().join("log.db")).unwrap();
    (directory, log)
}

// Proves the SQLite log's request ledgers change only by compare-and-swap.
#[tokio::test]
async fn sqlite_ledger_is_compare_and_swap() {
    let (_directory, log) = sqlite_log();
    ledger_is_compare_and_swap(&log).await;
}

// Proves a log.db written before ledgers had dimensions (schema version 2, keyed by the plain account id, entries
// without their count) opens with the account's ledger intact: its key becomes the account's storage key, and each
// first-format entry counts the entries before it.
#[tokio::test]
async fn sqlite_ledgers_of_schema_version_2_migrate() {
    use airlock::log::{Ledger, LedgerKey};
    let directory = scratch_dir();
    let path = directory.path().join("log.db");
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection.execute_batch(include_str!("../../migrations/log/0001_events.sql")).unwrap();
        connection.execute_batch(include_str!("../../migrations/log/0002_ledgers.sql")).unwrap();
        connection.pragma_update(None, "user_version", 2).unwrap();
        // The first format: postcard of [(case id, at, code until)], with no marker and no count.
        let first_format: Vec<(String, u64, Option<u64>)> =
            vec![("case-1".into(), 10, None), ("case-2".into(), 20, Some(99))];
        connection
            .execute(
                "INSERT INTO ledgers (account_id, revision, body) VALUES ('ann@example.com', 7, ?1)",
                [postcard::to_stdvec(&first_format).unwrap()],
            )
            .unwrap();
    }
    let log = SqliteLog::open(&path).unwrap();
    let (revision, ledger) = log.ledger(&LedgerKey::Account("ann@example.com".into())).await.unwrap();
    assert_eq!(revision, 7);
    let read: Vec<(&str, u64, Option<u64>, u32)> = ledger
        .requests
        .iter()
        .map(|entry| (entry.case_id.as_str(), entry.at_ms, entry.code_until_ms, entry.count))
        .collect();
    assert_eq!(read, [("case-1", 10, None, 0), ("case-2", 20, Some(99), 1)]);
    // Written back, it is in the current format and reads the same.
    log.put_ledger(&LedgerKey::Account("ann@example.com".into()), 7, &ledger).await.unwrap();
    let (_, again) = log.ledger(&LedgerKey::Account("ann@example.com".into())).await.unwrap();
    assert_eq!(again, ledger);
    assert_eq!(Ledger::decode(&ledger.encode()).unwrap(), ledger);
}

// Proves the SQLite log lets exactly one of two racing writers win, and the loser can re-read and append.
#[tokio::test]
async fn sqlite_racing_writers_one_wins() {
    let (_directory, log) = sqlite_log();
    racing_writers_one_wins(&log).await;
}

// Proves the SQLite log appends a retried command once.
#[tokio::test]
async fn sqlite_retried_command_appends_once() {
    let (_directory, log) = sqlite_log();
    retried_command_appends_once(&log).await;
}

// Proves a conflicting multi-event append on the SQLite log writes nothing.
#[tokio::test]
async fn sqlite_conflicting_append_writes_nothing() {
    let (_directory, log) = sqlite_log();
    conflicting_append_writes_nothing(&log).await;
}

// Proves 100k events across 10k cases read back in order, per case and globally, from the SQLite log.
#[tokio::test]
async fn sqlite_100k_events_across_10k_cases() {
    let (_directory, log) = sqlite_log();
    many_streams_read_back_in_order(&log, 10_000, 10).await;
}

// Proves the SQLite log file itself refuses to update or delete an event (append-only at the storage layer).
#[tokio::test]
async fn sqlite_log_refuses_update_and_delete() {
    let (directory, log) = sqlite_log();
    log.append(&case(9), 0, "only", vec![b"fact".to_vec()]).await.unwrap();
    let connection = rusqlite::Connection::open(directory.path().join("log.db")).unwrap();
    let update = connection.execute("UPDATE commits SET envelopes = x'00'", []).unwrap_err();
    assert!(update.to_string().contains("append-only"), "{update}");
    let delete = connection.execute("DELETE FROM commits", []).unwrap_err();
    assert!(delete.to_string().contains("append-only"), "{delete}");
}

mod jetstream {
    //! The same checks against the JetStream backend, on a real nats-server started for each test.
    use super::*;
    use airlock::log::jetstream::{JetStreamConfig, JetStreamLog};
    use airlock::nats::server::{NatsServer, Options};

    async fn jetstream_log() -> (tempfile::TempDir, NatsServer, JetStreamLog) {
        let directory = scratch_dir();
        let server = NatsServer::start(directory.path(), &Options::default()).expect("nats-server starts");
        let client = airlock::nats::connect(&server.url(), "conformance").await.unwrap();
        let log = JetStreamLog::open(client, JetStreamConfig::default()).await.unwrap();
        (directory, server, log)
    }

    // Proves the JetStream log's request ledgers (a key-value bucket) change only by compare-and-swap.
    #[tokio::test]
    async fn jetstream_ledger_is_compare_and_swap() {
        let (_directory, _server, log) = jetstream_log().await;
        super::ledger_is_compare_and_swap(&log).await;
    }

    // Proves the JetStream log lets exactly one of two racing writers win, and the loser can re-read and append.
    #[tokio::test]
    async fn jetstream_racing_writers_one_wins() {
        let (_directory, _server, log) = jetstream_log().await;
        racing_writers_one_wins(&log).await;
    }

    // Proves the JetStream log appends a retried command once.
    #[tokio::test]
    async fn jetstream_retried_command_appends_once() {
        let (_directory, _server, log) = jetstream_log().await;
        retried_command_appends_once(&log).await;
    }

    // Proves a conflicting multi-event append on the JetStream log writes nothing, and a commit keeps its events.
    #[tokio::test]
    async fn jetstream_conflicting_append_writes_nothing() {
        let (_directory, _server, log) = jetstream_log().await;
        conflicting_append_writes_nothing(&log).await;
    }

    // Proves 100k events across 10k cases read back in order, per case and globally, from the JetStream log.
    #[tokio::test]
    async fn jetstream_100k_events_across_10k_cases() {
        let (_directory, _server, log) = jetstream_log().await;
        many_streams_read_back_in_order(&log, 10_000, 10).await;
    }
}
