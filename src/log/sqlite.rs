//! The embedded event log in a local SQLite file: the default when no NATS URL is given. One transaction per
//! append checks the command id and the stream's last sequence, then inserts one commit row; triggers make the table
//! append-only.

use crate::log::envelope::Stream;
use crate::log::{Appended, Entry, EventLog, Ledger, LedgerKey, LogError, decode_commit, encode_commit};
use crate::sqlite::{self, Migration, OpenError};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Mutex;

const MIGRATIONS: &[Migration] =
    crate::migrations!("log": 1 => "0001_events", 2 => "0002_ledgers", 3 => "0003_ledger_keys");

pub struct SqliteLog {
    /// One connection; SQLite serialises writers anyway, and appends are short.
    connection: Mutex<Connection>,
}

impl SqliteLog {
    pub fn open(path: &Path) -> Result<SqliteLog, OpenError> {
        Ok(SqliteLog { connection: Mutex::new(sqlite::open(path, MIGRATIONS)?) })
    }

    fn with<T>(&self, work: impl FnOnce(&mut Connection) -> Result<T, LogError>) -> Result<T, LogError> {
        let mut connection = self.connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        work(&mut connection)
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
        self.with(|connection| append_now(connection, stream, expected_last, command_id, &envelopes))
    }

    async fn read_stream(&self, stream: &Stream) -> Result<Vec<Entry>, LogError> {
        self.with(|connection| {
            let sql = "SELECT sequence, envelopes FROM commits WHERE stream = ?1 ORDER BY sequence";
            entries(connection, sql, [stream.key()])
        })
    }

    async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<Entry>, LogError> {
        self.with(|connection| {
            let sql = "SELECT sequence, envelopes FROM commits WHERE sequence > ?1 ORDER BY sequence LIMIT ?2";
            entries(connection, sql, params![after as i64, limit as i64])
        })
    }

    async fn last_sequence(&self) -> Result<u64, LogError> {
        self.with(|connection| {
            let last: i64 = connection
                .prepare_cached("SELECT COALESCE(MAX(sequence), 0) FROM commits")
                .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
                .map_err(unavailable)?;
            to_u64(last)
        })
    }

    async fn ledger(&self, key: &LedgerKey) -> Result<(u64, Ledger), LogError> {
        let key = key.storage_key();
        self.with(|connection| {
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
    }

    async fn put_ledger(&self, key: &LedgerKey, revision: u64, ledger: &Ledger) -> Result<(), LogError> {
        let (name, key) = (key.to_string(), key.storage_key());
        self.with(|connection| {
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
                .and_then(|mut statement| statement.execute(params![key, (revision + 1) as i64, ledger.encode()]))
                .map_err(unavailable)?;
            transaction.commit().map_err(unavailable)
        })
    }
}
