//! The embedded event log in a local SQLite file: the default when no NATS URL is given. One transaction per
//! append checks the command id and the stream's last sequence, then inserts one commit row; triggers make the table
//! append-only. Every SQLite call runs on tokio's blocking pool (issue 21, item 3), never on the runtime's workers.

use crate::log::envelope::Stream;
use crate::log::{Appended, Entry, EventLog, Ledger, LedgerKey, LogError, decode_commit, encode_commit};
use crate::sqlite::{self, Migration, OpenError};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

const MIGRATIONS: &[Migration] =
    crate::migrations!("log": 1 => "0001_events", 2 => "0002_ledgers", 3 => "0003_ledger_keys");

pub struct SqliteLog {
    /// One connection; SQLite serialises writers anyway, and appends are short.
    connection: Arc<Mutex<Connection>>,
}

impl SqliteLog {
    pub fn open(path: &Path) -> Result<SqliteLog, OpenError> {
        Ok(SqliteLog { connection: Arc::new(Mutex::new(sqlite::open(path, MIGRATIONS)?)) })
    }

    /// Runs `work` on the connection on tokio's blocking pool, so that a slow disk or a lock held by another process
    /// never stalls the runtime's worker threads (outside a runtime, here). A caller that stops waiting does not stop
    /// the work: an append it gave up on may still land, as on NATS, and is found by its command id.
    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, LogError> + Send + 'static,
    ) -> Result<T, LogError> {
        let connection = self.connection.clone();
        let run = move || {
            let mut connection = connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            work(&mut connection)
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime
                .spawn_blocking(run)
                .await
                .map_err(|error| LogError::Unavailable(format!("the log's SQLite work did not finish: {error}")))?,
            Err(_) => run(),
        }
    }
}

fn unavailable(error: rusqlite::Error) -> LogError {
    LogError::Unavailable(error.to_string())
}

fn to_u64(value: i64) -> Result<u64, LogError> {
    u64::try_from(value).map_err(|_| LogError::Corrupt(format!("negative sequence {value}")))
}

fn append_now(
    connection: &mut Connection,
    stream: &Stream,
    expected_last: u64,
    command_id: &str,
    envelopes: &[Vec<u8>],
) -> Result<Appended, LogError> {
    let key = stream.key();
    let transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(unavailable)?;
    let seen: Option<i64> = transaction
        .prepare_cached("SELECT sequence FROM commits WHERE command_id = ?1")
        .and_then(|mut statement| statement.query_row([command_id], |row| row.get(0)))
        .optional()
        .map_err(unavailable)?;
    if seen.is_some() {
        return Ok(Appended::Duplicate);
    }
    let actual: i64 = transaction
        .prepare_cached("SELECT COALESCE(MAX(sequence), 0) FROM commits WHERE stream = ?1")
        .and_then(|mut statement| statement.query_row([&key], |row| row.get(0)))
        .map_err(unavailable)?;
    let actual = to_u64(actual)?;
    if actual != expected_last {
        return Err(LogError::Conflict { stream: key, expected: expected_last, actual });
    }
    transaction
        .prepare_cached("INSERT INTO commits (stream, command_id, envelopes) VALUES (?1, ?2, ?3)")
        .and_then(|mut statement| statement.execute(params![key, command_id, encode_commit(envelopes)]))
        .map_err(unavailable)?;
    let first_sequence = to_u64(transaction.last_insert_rowid())?;
    transaction.commit().map_err(unavailable)?;
    Ok(Appended::New { first_sequence })
}

fn entries(connection: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Entry>, LogError> {
    let mut statement = connection.prepare_cached(sql).map_err(unavailable)?;
    let rows = statement
        .query_map(params, |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?)))
        .map_err(unavailable)?;
    rows.map(|row| {
        let (sequence, bytes) = row.map_err(unavailable)?;
        Ok(Entry { sequence: to_u64(sequence)?, envelopes: decode_commit(&bytes)? })
    })
    .collect()
}

impl EventLog for SqliteLog {
    async fn append(
        &self,
        stream: &Stream,
        expected_last: u64,
        command_id: &str,
        envelopes: Vec<Vec<u8>>,
    ) -> Result<Appended, LogError> {
        let (stream, command_id) = (stream.clone(), command_id.to_string());
        self.with(move |connection| append_now(connection, &stream, expected_last, &command_id, &envelopes)).await
    }

    async fn read_stream(&self, stream: &Stream) -> Result<Vec<Entry>, LogError> {
        let key = stream.key();
        self.with(move |connection| {
            let sql = "SELECT sequence, envelopes FROM commits WHERE stream = ?1 ORDER BY sequence";
            entries(connection, sql, [key])
        })
        .await
    }

    async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<Entry>, LogError> {
        self.with(move |connection| {
            let sql = "SELECT sequence, envelopes FROM commits WHERE sequence > ?1 ORDER BY sequence LIMIT ?2";
            entries(connection, sql, params![after as i64, limit as i64])
        })
        .await
    }

    async fn last_sequence(&self) -> Result<u64, LogError> {
        self.with(|connection| {
            let last: i64 = connection
                .prepare_cached("SELECT COALESCE(MAX(sequence), 0) FROM commits")
                .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
                .map_err(unavailable)?;
            to_u64(last)
        })
        .await
    }

    async fn ledger(&self, key: &LedgerKey) -> Result<(u64, Ledger), LogError> {
        let key = key.storage_key();
        self.with(move |connection| {
            let row: Option<(i64, Vec<u8>)> = connection
                .prepare_cached("SELECT revision, body FROM ledgers WHERE key = ?1")
                .and_then(|mut statement| statement.query_row([&key], |row| Ok((row.get(0)?, row.get(1)?))))
                .optional()
                .map_err(unavailable)?;
            match row {
                Some((revision, body)) => Ok((to_u64(revision)?, Ledger::decode(&body)?)),
                None => Ok((0, Ledger::default())),
            }
        })
        .await
    }

    async fn put_ledger(&self, key: &LedgerKey, revision: u64, ledger: &Ledger) -> Result<u64, LogError> {
        let (name, key, body) = (key.to_string(), key.storage_key(), ledger.encode());
        self.with(move |connection| {
            let transaction =
                connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(unavailable)?;
            let actual: i64 = transaction
                .prepare_cached("SELECT COALESCE((SELECT revision FROM ledgers WHERE key = ?1), 0)")
                .and_then(|mut statement| statement.query_row([&key], |row| row.get(0)))
                .map_err(unavailable)?;
            let actual = to_u64(actual)?;
            if actual != revision {
                return Err(LogError::Conflict { stream: format!("ledger of {name}"), expected: revision, actual });
            }
            transaction
                .prepare_cached("INSERT OR REPLACE INTO ledgers (key, revision, body) VALUES (?1, ?2, ?3)")
                .and_then(|mut statement| statement.execute(params![key, (revision + 1) as i64, body]))
                .map_err(unavailable)?;
            transaction.commit().map_err(unavailable)?;
            Ok(revision + 1)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the log, which holds the only copy of every event, is synced at every commit (the projection, derived
    // from it, only at checkpoints).
    #[test]
    fn the_log_syncs_every_commit() {
        let directory = tempfile::tempdir().unwrap();
        let log = SqliteLog::open(&directory.path().join("log.db")).unwrap();
        let synchronous: u32 =
            log.connection.lock().unwrap().query_row("PRAGMA synchronous", [], |row| row.get(0)).unwrap();
        assert_eq!(synchronous, 2, "FULL");
    }

    // Proves (issue 21, item 3) that an append waiting for SQLite's write lock (another process writing) does not hold
    // the runtime's thread: on a one-thread runtime other work goes on while it waits, and the append lands once the
    // lock is released.
    #[tokio::test(flavor = "current_thread")]
    async fn an_append_waiting_for_the_database_does_not_hold_the_runtime() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("log.db");
        let log = SqliteLog::open(&path).unwrap();
        let mut other = Connection::open(&path).unwrap();
        let holder = other.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
        let append = log.append(&Stream::Control, 0, "command-1", vec![vec![1, 2, 3]]);
        tokio::pin!(append);
        let went_on = tokio::select! {
            biased;
            _ = &mut append => false,
            () = tokio::task::yield_now() => true,
        };
        assert!(went_on, "the append held the runtime's only thread while it waited for the lock");
        holder.rollback().unwrap();
        assert_eq!(append.await, Ok(Appended::New { first_sequence: 1 }));
    }
}
