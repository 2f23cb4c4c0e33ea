//! The SQLite projection: cases, timelines, the review queue, receipts and the account-wide facts the decider needs.
//! It is derived from the event log and can be rebuilt from it at any time. Each batch of entries is applied in one
//! transaction together with the last applied log sequence, so a crash between batches loses nothing and applies
//! nothing twice.

mod apply;
pub mod audit;
pub mod campaigns;
pub mod evidence;
pub mod history;
pub mod projector;
pub mod query;
pub mod receipts;
pub mod replay;
pub mod verify;
pub mod views;

use crate::log::Entry;
use crate::sqlite::{self, Migration, OpenError};
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

pub(crate) const MIGRATIONS: &[Migration] = crate::migrations!(
    "projection": 1 => "0001_read_model", 2 => "0002_velocity_indexes", 3 => "0003_second_factor",
    4 => "0004_append_only_tables", 5 => "0005_velocity_from_ledgers", 6 => "0006_notices_owed",
    7 => "0007_campaigns", 8 => "0008_summary_bands_newest", 9 => "0009_outcome_notices",
    10 => "0010_cooling_off_ends_index"
);

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("projection database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// The log holds an event the projection cannot place: a bug or tampering. Rebuild and investigate.
    #[error("log entry {sequence} cannot be projected: {reason}")]
    Corrupt { sequence: u64, reason: String },
    /// The entries handed over do not follow the checkpoint without a hole: an entry was lost on the way (a delivery
    /// into a dying connection). Nothing was applied; read again from the checkpoint.
    #[error("log entry {found} came where {expected} was due: an entry was lost on the way; nothing was applied")]
    Gap { expected: u64, found: u64 },
}

pub struct Projection {
    /// The file, so that a file deleted or replaced under a running process is noticed (`reopen_if_replaced`).
    path: std::path::PathBuf,
    /// The file's device and inode when it was opened.
    identity: Mutex<Option<(u64, u64)>>,
    /// The writer: applying the log.
    connection: Mutex<Connection>,
    /// The reader: queries for the CLI and the facts `decide` needs. A separate connection, so that in WAL mode a
    /// query never waits for the projector's batch, nor the projector for a query.
    reader: Mutex<Connection>,
    /// A shared lock on the file's lock file, held while the projection is open: `airlock replay` takes it
    /// exclusively before it swaps a rebuilt file in, so it never replaces a file a running process writes to.
    _lock: std::fs::File,
}

/// A file's device and inode, or `None` when there is no file at `path`.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|metadata| (metadata.dev(), metadata.ino()))
}

/// Older schemas whose rows no migration can bring to what a rebuild from the log gives, and what a file of theirs is
/// set aside as: before campaign alerts (versions 1 to 6), the campaign tables miss the hits of the entries already
/// applied (ADR 25); before version 9, the cases miss the count of destinations their notices of an outcome go to.
const REBUILT_FROM: [(std::ops::Range<i64>, &str); 2] = [(1..7, "before-campaigns"), (7..9, "before-outcome-notices")];

/// Why the file at `path`, a projection written at an older schema that applied log entries already, is to be set
/// aside and rebuilt (`REBUILT_FROM`); `None` for any other file (a current one, a fresh one, or none).
fn rebuilt_because(path: &Path) -> Option<&'static str> {
    let connection = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap_or(0);
    let applied: i64 = connection.query_row("SELECT last_sequence FROM checkpoint", [], |row| row.get(0)).unwrap_or(0);
    let (_, why) = REBUILT_FROM.iter().find(|(versions, _)| versions.contains(&version))?;
    (applied > 0).then_some(*why)
}

/// The lock file beside a projection file (`projection.db.lock`).
pub fn lock_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    name.into()
}

/// One connection to a projection file, migrated, with the projection's durability (`Durability::Derived`).
pub(crate) fn open_file(path: &Path) -> Result<Connection, OpenError> {
    sqlite::open_with(path, MIGRATIONS, sqlite::Durability::Derived)
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
        let stale = rebuilt_because(path);
        let connection = open_file(path)?;
        let reader = open_file(path)?;
        let projection = Projection {
            path: path.to_path_buf(),
            identity: Mutex::new(file_identity(path)),
            connection: Mutex::new(connection),
            reader: Mutex::new(reader),
            _lock: lock,
        };
        if let Some(why) = stale {
            // Migrated, its rows would differ from a rebuild (`REBUILT_FROM`): it is set aside, and the caller
            // rebuilds it from the log, as after a lost file.
            let aside = projection.set_aside_as(why, crate::clock::Clock::now(&crate::clock::SystemClock).0)?;
            tracing::warn!(aside = %aside.display(), "the projection was written by an older airlock: rebuilding it from the log");
        }
        Ok(projection)
    }

    /// When the file this projection was opened on is no longer at its path (deleted, or replaced by something other
    /// than `airlock replay`, which never swaps under a running process), opens a fresh one there, at checkpoint 0,
    /// and returns true: the caller rebuilds it from the log. Otherwise returns false.
    pub fn reopen_if_replaced(&self) -> Result<bool, OpenError> {
        let mut identity = self.identity.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = file_identity(&self.path);
        if now.is_some() && now == *identity {
            return Ok(false);
        }
        self.reopen(&mut identity)?;
        Ok(true)
    }

    /// Moves the file aside as `<file>.corrupt-<unix ms>` and starts a fresh one at checkpoint 0, for a projection
    /// that cannot place an entry of the log (it missed one, or was edited): the caller rebuilds it from the log.
    /// Returns where the old file went.
    pub fn set_aside(&self, now_ms: u64) -> Result<std::path::PathBuf, OpenError> {
        self.set_aside_as("corrupt", now_ms)
    }

    /// `set_aside`, the old file named `<file>.<why>-<unix ms>`.
    fn set_aside_as(&self, why: &str, now_ms: u64) -> Result<std::path::PathBuf, OpenError> {
        let mut identity = self.identity.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut aside = self.path.as_os_str().to_owned();
        aside.push(format!(".{why}-{now_ms}"));
        let aside = std::path::PathBuf::from(aside);
        let mut writer = self.lock();
        let mut reader = self.read();
        // Both connections are closed (their WAL checkpointed into the file) before the file is moved.
        *writer = Connection::open_in_memory().map_err(|source| self.open_error(source))?;
        *reader = Connection::open_in_memory().map_err(|source| self.open_error(source))?;
        std::fs::rename(&self.path, &aside)
            .map_err(|source| OpenError::Lock { path: self.path.display().to_string(), source })?;
        drop((writer, reader));
        self.reopen(&mut identity)?;
        Ok(aside)
    }

    fn reopen(&self, identity: &mut Option<(u64, u64)>) -> Result<(), OpenError> {
        let connection = open_file(&self.path)?;
        let reader = open_file(&self.path)?;
        *self.lock() = connection;
        *self.read() = reader;
        *identity = file_identity(&self.path);
        Ok(())
    }

    fn open_error(&self, source: rusqlite::Error) -> OpenError {
        OpenError::Open { path: self.path.display().to_string(), source }
    }

    /// The file this projection is kept in.
    pub fn path(&self) -> &Path {
        &self.path
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
    /// redelivery after a crash applies nothing twice. The rest must follow the checkpoint without a hole, or nothing
    /// is applied (`ProjectionError::Gap`). Returns the new checkpoint.
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
            // The log's positions have no holes (nothing is ever deleted from it), so an entry that does not follow
            // the last one applied means one was lost on the way: applying past it would drop it for good.
            if entry.sequence != last + 1 {
                return Err(ProjectionError::Gap { expected: last + 1, found: entry.sequence });
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

/// Counting the work SQLite does for a query, for tests that prove a query's cost does not grow with the data it
/// does not need (SQLite's virtual machine steps, through rusqlite's `trace` feature, a dev-dependency only).
#[cfg(test)]
pub(crate) mod vm_steps {
    use rusqlite::trace::{TraceEvent, TraceEventCodes};
    use rusqlite::{Connection, StatementStatus};
    use std::cell::RefCell;
    use std::collections::HashMap;

    thread_local! {
        /// Steps run on this thread's traced connections, and each statement's count so far.
        static STEPS: RefCell<(u64, HashMap<String, i32>)> = RefCell::new((0, HashMap::new()));
    }

    /// Adds what a finished statement ran since it last finished (SQLite counts per statement since it was prepared).
    fn count_steps(event: TraceEvent<'_>) {
        if let TraceEvent::Profile(statement, _) = event {
            let total = statement.get_status(StatementStatus::VmStep);
            STEPS.with(|steps| {
                let mut steps = steps.borrow_mut();
                let before = steps.1.insert(statement.sql().to_string(), total).unwrap_or(0);
                steps.0 += u64::try_from(total - before).unwrap_or(0);
            });
        }
    }

    /// Starts counting the steps of the statements run on `connection` by this thread, from zero: its cached
    /// statements are prepared afresh, so that SQLite's counts start at zero too.
    pub(crate) fn start(connection: &Connection) {
        connection.flush_prepared_statement_cache();
        STEPS.with(|steps| *steps.borrow_mut() = (0, HashMap::new()));
        connection.trace_v2(TraceEventCodes::SQLITE_TRACE_PROFILE, Some(count_steps));
    }

    /// Stops counting on `connection`; the steps counted since `start`.
    pub(crate) fn stop(connection: &Connection) -> u64 {
        connection.trace_v2(TraceEventCodes::empty(), None);
        STEPS.with(|steps| steps.borrow().0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves which durability the projection runs with (`Durability::Derived`): WAL, synced at checkpoints, on both of
    // its connections, also once reopened after its file was replaced. The log keeps a sync per commit
    // (`log::sqlite`'s test of the same).
    #[test]
    fn the_projection_syncs_at_checkpoints_on_every_connection() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("projection.db");
        let projection = Projection::open(&path).unwrap();
        let modes = |projection: &Projection| {
            [projection.lock(), projection.read()].map(|connection| {
                let journal: String = connection.query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
                let synchronous: u32 = connection.query_row("PRAGMA synchronous", [], |row| row.get(0)).unwrap();
                (journal, synchronous)
            })
        };
        let normal = || ("wal".to_string(), 1);
        assert_eq!(modes(&projection), [normal(), normal()]);
        projection.set_aside_as("test", 1).unwrap();
        assert_eq!(modes(&projection), [normal(), normal()]);
    }

    // Proves (issue 15, item 4) a batch that does not follow the checkpoint without a hole is refused whole, naming
    // the missing entry, and that the checkpoint stays where it was: nothing past a lost entry is ever committed.
    #[test]
    fn a_batch_with_a_hole_is_applied_not_at_all() {
        let directory = tempfile::tempdir().unwrap();
        let projection = Projection::open(&directory.path().join("projection.db")).unwrap();
        let entry = |sequence| Entry { sequence, envelopes: Vec::new() };
        assert_eq!(projection.apply(&[entry(1)]).unwrap(), 1);
        let refused = projection.apply(&[entry(1), entry(3), entry(4)]);
        assert!(matches!(refused, Err(ProjectionError::Gap { expected: 2, found: 3 })), "{refused:?}");
        assert_eq!(projection.last_sequence().unwrap(), 1);
        assert_eq!(projection.apply(&[entry(2), entry(3)]).unwrap(), 3);
    }

    // Proves a projection whose rows no migration can bring to what a rebuild gives is set aside when opened, under a
    // name saying why, and started afresh at checkpoint 0 for the caller to rebuild from the log: one written before
    // campaign alerts (schema 6: its campaign tables would miss the hits of the entries it applied) and ones written
    // before the cases counted the destinations their notices of an outcome go to (schemas 7 and 8); an empty one
    // is migrated in place, and a current one is kept.
    #[test]
    fn a_projection_a_migration_cannot_bring_up_to_date_is_rebuilt() {
        let names = |directory: &Path, prefix: &str| -> Vec<String> {
            let names = std::fs::read_dir(directory).unwrap().map(|entry| entry.unwrap().file_name());
            names.map(|name| name.to_string_lossy().to_string()).filter(|name| name.starts_with(prefix)).collect()
        };
        for (version, why) in [(6, "before-campaigns"), (7, "before-outcome-notices"), (8, "before-outcome-notices")] {
            let directory = tempfile::tempdir().unwrap();
            let path = directory.path().join("projection.db");
            {
                let old = sqlite::open(&path, &MIGRATIONS[..version]).unwrap();
                old.execute("UPDATE checkpoint SET last_sequence = 5", []).unwrap();
            }
            let projection = Projection::open(&path).unwrap();
            assert_eq!(projection.last_sequence().unwrap(), 0, "schema {version}: the old file was kept");
            let aside = names(directory.path(), &format!("projection.db.{why}-"));
            assert_eq!(aside.len(), 1, "schema {version}: {:?}", names(directory.path(), ""));
            projection.apply(&[Entry { sequence: 1, envelopes: Vec::new() }]).unwrap();
            drop(projection);
            assert_eq!(Projection::open(&path).unwrap().last_sequence().unwrap(), 1, "a current file was set aside");

            let empty = directory.path().join("empty.db");
            drop(sqlite::open(&empty, &MIGRATIONS[..version]).unwrap());
            drop(Projection::open(&empty).unwrap());
            assert!(
                names(directory.path(), "empty.db.").iter().all(|name| name.ends_with(".lock")),
                "schema {version}"
            );
        }
    }

    // Proves a projection file deleted under an open projection is noticed and started afresh at checkpoint 0, and
    // that an untouched one is left alone.
    #[test]
    fn a_deleted_file_is_noticed_and_opened_afresh() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("projection.db");
        let projection = Projection::open(&path).unwrap();
        projection.apply(&[Entry { sequence: 1, envelopes: Vec::new() }]).unwrap();
        assert!(!projection.reopen_if_replaced().unwrap());
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        assert!(projection.reopen_if_replaced().unwrap());
        assert_eq!(projection.last_sequence().unwrap(), 0);
        assert!(path.exists());
    }
}
