//! One conformance suite for every event-log backend. Each check is a generic function over `EventLog`; a backend
//! conforms when every check passes against it. Today the embedded SQLite log runs it; the JetStream backend (issue 3)
//! adds one test per check that calls the same function with its log.

use airlock::core::ids::CaseId;
use airlock::log::envelope::Stream;
use airlock::log::sqlite::SqliteLog;
use airlock::log::{Appended, EventLog, LogError};
use std::collections::HashMap;

fn case(number: usize) -> Stream {
    Stream::Case(CaseId::new(format!("case-{number}")))
}

fn payload(stream: usize, version: u64) -> Vec<u8> {
    format!("{stream}:{version}").into_bytes()
}

/// Two writers append to one stream at the same expected version: exactly one wins, the other gets a typed
/// conflict naming the actual version, re-reads, and then succeeds on top of the winner.
async fn racing_writers_one_wins<L: EventLog>(log: &L) {
    let stream = case(1);
    let (first, second) = tokio::join!(
        log.append(&stream, 0, "writer-a", vec![b"a".to_vec()]),
        log.append(&stream, 0, "writer-b", vec![b"b".to_vec()]),
    );
    let outcomes = [first, second];
    let winners = outcomes.iter().filter(|outcome| matches!(outcome, Ok(Appended::New { .. }))).count();
    let conflicts = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Err(LogError::Conflict { expected: 0, actual: 1, .. })))
        .count();
    assert_eq!((winners, conflicts), (1, 1), "{outcomes:?}");
    let loser = if outcomes[0].is_ok() { "writer-b" } else { "writer-a" };
    let version = log.read_stream(&stream).await.unwrap().len() as u64;
    assert_eq!(version, 1);
    let retried = log.append(&stream, version, loser, vec![b"again".to_vec()]).await.unwrap();
    assert!(matches!(retried, Appended::New { .. }));
    assert_eq!(log.read_stream(&stream).await.unwrap().len(), 2);
}

/// A retried command appends once, even when it is retried with a stale expected version or much later.
async fn retried_command_appends_once<L: EventLog>(log: &L) {
    let stream = case(2);
    let first = log.append(&stream, 0, "command-1", vec![b"x".to_vec(), b"y".to_vec()]).await.unwrap();
    assert!(matches!(first, Appended::New { .. }));
    assert_eq!(log.append(&stream, 0, "command-1", vec![b"x".to_vec(), b"y".to_vec()]).await, Ok(Appended::Duplicate));
    log.append(&stream, 2, "command-2", vec![b"z".to_vec()]).await.unwrap();
    assert_eq!(log.append(&stream, 3, "command-1", vec![b"x".to_vec()]).await, Ok(Appended::Duplicate));
    let read: Vec<Vec<u8>> = log.read_stream(&stream).await.unwrap().into_iter().map(|entry| entry.bytes).collect();
    assert_eq!(read, vec![b"x".to_vec(), b"y".to_vec(), b"z".to_vec()]);
}

/// A multi-event append is atomic: on a conflict none of its events is written.
async fn conflicting_append_writes_nothing<L: EventLog>(log: &L) {
    let stream = case(3);
    log.append(&stream, 0, "first", vec![b"1".to_vec()]).await.unwrap();
    let error = log.append(&stream, 0, "stale", vec![b"2".to_vec(), b"3".to_vec()]).await.unwrap_err();
    assert!(matches!(error, LogError::Conflict { .. }), "{error}");
    assert_eq!(log.read_stream(&stream).await.unwrap().len(), 1);
    // The refused command id was not consumed: it can append once the writer has re-read.
    assert!(matches!(log.append(&stream, 1, "stale", vec![b"2".to_vec()]).await, Ok(Appended::New { .. })));
}

/// Many events over many streams: each stream reads back exactly what was written, in order, and the global read
/// returns every entry once, in increasing sequence, in bounded batches.
async fn many_streams_read_back_in_order<L: EventLog>(log: &L, streams: usize, events_per_stream: u64) {
    let base = 1_000;
    let before = log.last_sequence().await.unwrap();
    for version in 0..events_per_stream {
        for stream in 0..streams {
            let command = format!("bulk-{stream}-{version}");
            log.append(&case(base + stream), version, &command, vec![payload(stream, version)]).await.unwrap();
        }
    }
    for stream in [0, streams / 2, streams - 1] {
        let read: Vec<Vec<u8>> =
            log.read_stream(&case(base + stream)).await.unwrap().into_iter().map(|entry| entry.bytes).collect();
        let expected: Vec<Vec<u8>> = (0..events_per_stream).map(|version| payload(stream, version)).collect();
        assert_eq!(read, expected, "stream {stream}");
    }
    let mut after = before;
    let mut next_version: HashMap<String, u64> = HashMap::new();
    let mut seen = 0u64;
    loop {
        let batch = log.read_after(after, 4_096).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for entry in &batch {
            assert!(entry.sequence > after, "global order");
            after = entry.sequence;
            let text = String::from_utf8(entry.bytes.clone()).unwrap();
            let (stream, version) = text.split_once(':').unwrap();
            let expected = next_version.entry(stream.to_string()).or_insert(0);
            assert_eq!(version.parse::<u64>().unwrap(), *expected, "per-stream order in the global read");
            *expected += 1;
            seen += 1;
        }
    }
    assert_eq!(seen, streams as u64 * events_per_stream);
    assert_eq!(log.last_sequence().await.unwrap(), after);
}

/// A fresh log file. On tmpfs where the machine has one: the suite checks behaviour, and the log's per-append fsync
/// (synchronous = FULL) would otherwise make the 100k-event check take about a minute for no extra assurance.
fn sqlite_log() -> (tempfile::TempDir, SqliteLog) {
    let shm = std::path::Path::new("/dev/shm");
    let directory = if shm.is_dir() { tempfile::tempdir_in(shm).unwrap() } else { tempfile::tempdir().unwrap() };
    let log = SqliteLog::open(&directory.path().join("log.db")).unwrap();
    (directory, log)
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
    let update = connection.execute("UPDATE events SET envelope = x'00'", []).unwrap_err();
    assert!(update.to_string().contains("append-only"), "{update}");
    let delete = connection.execute("DELETE FROM events", []).unwrap_err();
    assert!(delete.to_string().contains("append-only"), "{delete}");
}
