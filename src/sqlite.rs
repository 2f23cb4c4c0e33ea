//! Opening SQLite files the way every airlock database wants them: WAL, foreign keys on, a busy timeout, and the
//! numbered migrations of that database applied in order (tracked in `PRAGMA user_version`).

use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;

/// One numbered migration, embedded from `migrations/<database>/NNNN_name.sql`.
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// How long a writer waits for another process's lock before reporting the database as busy. Each connection keeps
/// at most 16 MiB of pages in its cache: enough for the hot indexes, and a fixed bound, so that memory stays flat as
/// the files grow (no mmap, whose touched pages would count against the process as the files grow).
const BUSY_TIMEOUT_MS: u64 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("{path} is at schema version {found}, newer than this airlock knows ({known}); upgrade airlock")]
    TooNew { path: String, found: u32, known: u32 },
    #[error("migration {version} ({name}) of {path} failed: {source}")]
    Migration { path: String, version: u32, name: &'static str, source: rusqlite::Error },
    #[error("{path} is being replaced by `airlock replay`; try again when it has finished")]
    Replacing { path: String },
    #[error("cannot lock {path}: {source}")]
    Lock { path: String, source: std::io::Error },
}

/// How a file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// WAL and a full fsync at each commit: the normal mode of every database that holds anything of its own.
    Full,
    /// WAL, synced at each checkpoint rather than each commit: for the projection alone, which holds nothing but what
    /// it derived from the log, with its checkpoint in the same transaction as the rows. A power loss can take its
    /// last commits back, all together, never half of one; it is then behind the log, and catches up from its
    /// checkpoint as after any stop (the projector repositions its consumer there). The fsync per commit was a tenth
    /// of the service's CPU under load (issue 21, item 6; docs/benchmarks.md).
    Derived,
    /// No journal and no fsync: only for a file being rebuilt from the log, which is thrown away (and rebuilt again)
    /// if anything goes wrong, and switched to `Derived` (WAL, which commits the file's pages first) before anyone else
    /// uses it.
    Rebuild,
}

/// Prepared statements kept per connection.
const STATEMENT_CACHE_MAX: usize = 128;

pub fn open(path: &Path, migrations: &[Migration]) -> Result<Connection, OpenError> {
    open_with(path, migrations, Durability::Full)
}

pub fn open_with(path: &Path, migrations: &[Migration], durability: Durability) -> Result<Connection, OpenError> {
    let shown = path.display().to_string();
    let open_error = |source| OpenError::Open { path: shown.clone(), source };
    let mut connection = Connection::open(path).map_err(open_error)?;
    connection.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS)).map_err(open_error)?;
    // The projection alone runs about thirty distinct statements; rusqlite's default cache holds sixteen, and a cache
    // that evicts on every event prepares every statement again.
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE_MAX);
    let pragmas = match durability {
        Durability::Full => "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;",
        Durability::Derived => "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
        Durability::Rebuild => "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA locking_mode = EXCLUSIVE;",
    };
    connection
        .execute_batch(&format!("PRAGMA foreign_keys = ON; PRAGMA cache_size = -16384; {pragmas}"))
        .map_err(open_error)?;
    migrate(&mut connection, migrations, &shown)?;
    Ok(connection)
}

fn migrate(connection: &mut Connection, migrations: &[Migration], path: &str) -> Result<(), OpenError> {
    let found: u32 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|source| OpenError::Open { path: path.to_string(), source })?;
    let known = migrations.last().map_or(0, |migration| migration.version);
    if found > known {
        return Err(OpenError::TooNew { path: path.to_string(), found, known });
    }
    for migration in migrations.iter().filter(|migration| migration.version > found) {
        let failed = |source| OpenError::Migration {
            path: path.to_string(),
            version: migration.version,
            name: migration.name,
            source,
        };
        // IMMEDIATE takes the write lock first, and the version is read again under it: two processes opening a new
        // file at once apply each migration exactly once.
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(failed)?;
        let current: u32 = transaction.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(failed)?;
        if current >= migration.version {
            continue;
        }
        transaction.execute_batch(migration.sql).map_err(failed)?;
        transaction.pragma_update(None, "user_version", migration.version).map_err(failed)?;
        transaction.commit().map_err(failed)?;
    }
    Ok(())
}

/// Declares the migrations of one database from its folder under `migrations/`.
#[macro_export]
macro_rules! migrations {
    ($folder:literal: $($version:literal => $name:literal),+ $(,)?) => {
        &[$($crate::sqlite::Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $folder, "/", $name, ".sql")),
        }),+]
    };
}
