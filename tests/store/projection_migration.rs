//! A projection written by an older airlock opens in this one: migration 0004 keeps every timeline row (now an
//! append-only table with a unique index), drops the `requests` copy whose facts now come from `cases` itself, and the
//! queries built on both give the same answers as before; migration 0005 then drops the velocity indexes.

use airlock::core::ids::{CaseId, UnixMs};
use airlock::core::limits::HOUR_MS;
use airlock::projection::Projection;
use rusqlite::Connection;

const NOW: UnixMs = UnixMs(1_780_304_400_000);

/// The projection's migrations in the repository (`migrations/projection/NNNN_*.sql`): the version a migrated file
/// reaches.
fn projection_migrations() -> u32 {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/projection");
    let files = std::fs::read_dir(folder).unwrap();
    let count = files.filter(|file| file.as_ref().unwrap().path().extension().is_some_and(|ext| ext == "sql")).count();
    assert!(count >= 7, "the migrations were not found: {count}");
    count as u32
}

/// A projection file as airlock left it at schema version 3, with one case: two timeline rows and its request row.
fn version_3_projection(path: &std::path::Path) {
    let connection = Connection::open(path).unwrap();
    for sql in [
        include_str!("../../migrations/projection/0001_read_model.sql"),
        include_str!("../../migrations/projection/0002_velocity_indexes.sql"),
        include_str!("../../migrations/projection/0003_second_factor.sql"),
    ] {
        connection.execute_batch(sql).unwrap();
    }
    connection.pragma_update(None, "user_version", 3).unwrap();
    let requested_at = (NOW.0 - HOUR_MS) as i64;
    connection
        .execute(
            "INSERT INTO cases (case_id, account_id, action, action_description, action_hash, status, requester,
                 summary, signals, source_network, new_destination, high_value, destinations, requested_at,
                 updated_at, events)
             VALUES ('case-old', 'olga', '\"ResetPassword\"', 'reset the password', 'hash', 'requested',
                 'intake:desk', 'locked out', '{}', 'AS64500', 'olga@new.example', 0, '{}', ?1, ?1, 2)",
            [requested_at],
        )
        .unwrap();
    connection
        .execute(
            "INSERT INTO requests (case_id, account_id, source_network, requester, new_destination, at)
             VALUES ('case-old', 'olga', 'AS64500', 'intake:desk', 'olga@new.example', ?1)",
            [requested_at],
        )
        .unwrap();
    for (sequence, event_type) in [(1, "recovery_requested"), (2, "challenge_issued")] {
        connection
            .execute(
                "INSERT INTO timeline (case_id, case_sequence, log_sequence, at, actor, event_type, status_after,
                     detail)
                 VALUES ('case-old', ?1, ?1, ?2, 'intake:desk', ?3, 'requested', 'detail')",
                rusqlite::params![sequence, requested_at, event_type],
            )
            .unwrap();
    }
}

// Proves the timeline survives the migration in order, and that its uniqueness is still enforced by the database.
#[test]
fn the_timeline_survives_and_stays_unique() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("projection.db");
    version_3_projection(&path);
    let projection = Projection::open(&path).unwrap();
    let timeline = projection.timeline(&CaseId::new("case-old")).unwrap();
    let types: Vec<&str> = timeline.iter().map(|row| row.event_type.as_str()).collect();
    assert_eq!(types, ["recovery_requested", "challenge_issued"]);
    drop(projection);
    let connection = Connection::open(&path).unwrap();
    let version: u32 = connection.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap();
    assert_eq!(version, projection_migrations(), "every migration ran");
    let duplicate = connection.execute(
        "INSERT INTO timeline (case_id, case_sequence, log_sequence, at, actor, event_type, status_after, detail)
         VALUES ('case-old', 2, 9, 0, 'intake:desk', 'challenge_issued', 'requested', 'again')",
        [],
    );
    assert!(duplicate.is_err(), "a second row for one (case, sequence) must be refused");
}

// Proves the facts the old `requests` rows held are on the migrated case row (account, source network, requester,
// named destination, time), that `requests` is gone, and that migration 0005 leaves no index for velocity counts,
// which come from the request ledgers now (ADR 8).
#[test]
fn the_request_facts_stay_on_the_case() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("projection.db");
    version_3_projection(&path);
    drop(Projection::open(&path).unwrap());
    let connection = Connection::open(&path).unwrap();
    let row: (String, String, String, String, i64) = connection
        .query_row(
            "SELECT account_id, source_network, requester, new_destination, requested_at FROM cases
             WHERE case_id = 'case-old'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)),
        )
        .unwrap();
    let requested_at = (NOW.0 - HOUR_MS) as i64;
    assert_eq!(row, ("olga".into(), "AS64500".into(), "intake:desk".into(), "olga@new.example".into(), requested_at));
    let count = |sql: &str| -> u32 { connection.query_row(sql, [], |row| row.get(0)).unwrap() };
    assert_eq!(count("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'requests'"), 0);
    let velocity_indexes = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name IN
        ('cases_account_requested', 'cases_requester', 'cases_source_network', 'cases_new_destination')";
    assert_eq!(count(velocity_indexes), 0);
    assert_eq!(count("PRAGMA user_version"), projection_migrations());
}
