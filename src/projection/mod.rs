//! The SQLite projection: cases, timelines, the review queue, receipts and the account-wide facts the decider needs.
//! It is derived from the event log and can be rebuilt from it at any time. Each batch of entries is applied in one
//! transaction together with the last applied log sequence, so a crash between batches loses nothing and applies
//! nothing twice.

mod apply;
pub mod audit;
pub mod evidence;
pub mod projector;
pub mod query;
pub mod receipts;
pub mod replay;

use crate::log::Entry;
use crate::sqlite::{self, Migration, OpenError};
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

pub(crate) const MIGRATIONS: &[Migration] = crate::migrations!(
    "projection": 1 => "0001_read_model", 2 => "0002_velocity_indexes", 3 => "0003_second_factor",
    4 => "0004_append_only_tables", 5 => "0005_velocity_from_ledgers", 6 => "0006_notices_owed"
);

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("projection database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// The log holds an event the projection cannot place: a bug or tampering. Rebuild and investigate.
    #[error("log entry {sequence} cannot be projected: {reason}")]
    Corrupt { sequence: u64, reason: String },
}

pub struct Projection {
    /// The writer: applying the log.
    connection: Mutex<Connection>,
    /// The reader: queries for the CLI and the facts `decide` needs. A separate connection, so that in WAL mode a
    /// query never waits for the projector's batch, nor the projector for a query.
    reader: Mutex<Connection>,
    /// A shared lock on the file's lock file, held while the projection is open: `airlock replay` takes it
    /// exclusively before it swaps a rebuilt file in, so it never replaces a file a running process writes to.
    _lock: std::fs::File,
}

/// The lock file beside a projection file (`projection.db.lock`).
pub fn lock_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    name.into()
}

fn open_lock(path: &Path) -> Result<std::fs::File, OpenError> {
    let lock_path = lock_path(path);
    let failed = |source| OpenError::Lock { path: lock_path.display().to_string(), source };
    std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(failed)
}

impl Projection {
    pub fn open(path: &Path) -> Result<Projection, OpenError> {
        let lock = open_lock(path)?;
        match lock.try_lock_shared() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(OpenError::Replacing { path: path.display().to_string() });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(OpenError::Lock { path: lock_path(path).display().to_string(), source });
            }
        }
        let connection = sqlite::open(path, MIGRATIONS)?;
        let reader = sqlite::open(path, MIGRATIONS)?;
        Ok(Projection { connection: Mutex::new(connection), reader: Mutex::new(reader), _lock: lock })
    }

    /// Takes the projection file's lock exclusively, for swapping a rebuilt file in: `None` while any process has
    /// the projection open.
    pub fn lock_exclusive(path: &Path) -> Result<Option<std::fs::File>, OpenError> {
        let lock = open_lock(path)?;
        match lock.try_lock() {
            Ok(()) => Ok(Some(lock)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(source)) => {
                Err(OpenError::Lock { path: lock_path(path).display().to_string(), source })
            }
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn read(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The last log sequence applied.
    pub fn last_sequence(&self) -> Result<u64, ProjectionError> {
        let last: i64 = self
            .read()
            .prepare_cached("SELECT last_sequence FROM checkpoint")
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))?;
        Ok(last as u64)
    }

    /// Applies entries in one transaction, with the checkpoint. Entries at or below the checkpoint are skipped: a
    /// redelivery after a crash applies nothing twice. Returns the new checkpoint.
    pub fn apply(&self, entries: &[Entry]) -> Result<u64, ProjectionError> {
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut last: u64 = transaction
            .prepare_cached("SELECT last_sequence FROM checkpoint")
            .and_then(|mut statement| statement.query_row([], |row| row.get::<_, i64>(0)))?
            as u64;
        let mut batch = apply::Batch::new();
        for entry in entries {
            if entry.sequence <= last {
                continue;
            }
            apply::entry(&transaction, &mut batch, entry)?;
            last = entry.sequence;
        }
        batch.flush(&transaction)?;
        transaction
            .prepare_cached("UPDATE checkpoint SET last_sequence = ?1")
            .and_then(|mut statement| statement.execute([last as i64]))?;
        transaction.commit()?;
        Ok(last)
    }
}
