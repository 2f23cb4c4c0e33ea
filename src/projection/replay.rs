//! Rebuilding a projection from the log into a fresh file: the heart of `airlock replay` and of the benchmark's
//! rebuild rate. Reading the log and applying it run side by side (the reader stays a few batches ahead), and the
//! new file is written without a journal or fsync until it is complete; it is switched to WAL with full sync
//! before anyone else opens it. A rebuild that fails leaves a file that must be thrown away, never a live one.

use crate::log::{Entry, EventLog};
use crate::projection::{MIGRATIONS, ProjectionError, apply};
use crate::sqlite::{self, Durability};
use std::path::Path;
use std::time::{Duration, Instant};

/// Commits read from the log per request.
const READ_BATCH_MAX: usize = 4_096;

/// Batches the reader may run ahead of the writer; bounds memory whatever the log's size.
const BATCHES_AHEAD_MAX: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RebuildStats {
    pub commits: u64,
    pub events: u64,
    pub last_sequence: u64,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("{0} exists; a rebuild writes a fresh file")]
    Exists(String),
    #[error(transparent)]
    Open(#[from] crate::sqlite::OpenError),
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("the rebuild's writer stopped: {0}")]
    Writer(String),
}

/// Rebuilds the projection of everything in `log` up to its current end into `path` (which must not exist).
/// `progress(read_sequence, last_sequence)` is called after each batch is read.
pub async fn rebuild<L: EventLog>(
    log: &L,
    path: &Path,
    progress: impl FnMut(u64, u64),
) -> Result<RebuildStats, RebuildError> {
    rebuild_until(log, path, None, progress).await
}

/// `rebuild`, stopping after the commit at sequence `until` when given (to compare with a projection that has
/// applied exactly that much).
pub async fn rebuild_until<L: EventLog>(
    log: &L,
    path: &Path,
    until: Option<u64>,
    mut progress: impl FnMut(u64, u64),
) -> Result<RebuildStats, RebuildError> {
    if path.exists() {
        return Err(RebuildError::Exists(path.display().to_string()));
    }
    let started = Instant::now();
    let end = log.last_sequence().await?;
    let last = until.map_or(end, |until| until.min(end));
    let mut connection = sqlite::open_with(path, MIGRATIONS, Durability::Rebuild)?;
    let indexes = drop_secondary_indexes(&connection)?;
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<Entry>>(BATCHES_AHEAD_MAX);
    let writer = tokio::task::spawn_blocking(move || -> Result<(), ProjectionError> {
        while let Some(batch) = receiver.blocking_recv() {
            let transaction = connection.transaction()?;
            let mut statuses = apply::Statuses::new();
            for entry in &batch {
                apply::entry(&transaction, &mut statuses, entry)?;
            }
            let checkpoint = batch.last().map_or(0, |entry| entry.sequence) as i64;
            transaction.execute("UPDATE checkpoint SET last_sequence = ?1", [checkpoint])?;
            transaction.commit()?;
        }
        // Building each index once, sorted, is much cheaper than maintaining it row by row during the load.
        for sql in &indexes {
            connection.execute_batch(sql)?;
        }
        Ok(())
    });
    let (mut after, mut commits, mut events) = (0, 0u64, 0u64);
    while after < last {
        let mut batch = log.read_after(after, READ_BATCH_MAX).await?;
        batch.retain(|entry| entry.sequence <= last);
        let Some(tail) = batch.last() else { break };
        after = tail.sequence;
        commits += batch.len() as u64;
        events += batch.iter().map(|entry| entry.envelopes.len() as u64).sum::<u64>();
        if sender.send(batch).await.is_err() {
            break;
        }
        progress(after, last);
    }
    drop(sender);
    writer.await.map_err(|error| RebuildError::Writer(error.to_string()))??;
    // Back to the normal durability before the file is used: WAL, full sync.
    drop(sqlite::open(path, MIGRATIONS)?);
    Ok(RebuildStats { commits, events, last_sequence: after, elapsed: started.elapsed() })
}

/// Drops every secondary index of a fresh projection file and returns the statements that recreate them, read back
/// from the file itself so that the migrations stay their only definition.
fn drop_secondary_indexes(connection: &rusqlite::Connection) -> Result<Vec<String>, ProjectionError> {
    let mut statement =
        connection.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")?;
    let indexes: Vec<(String, String)> =
        statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<Result<_, _>>()?;
    for (name, _) in &indexes {
        connection.execute_batch(&format!("DROP INDEX \"{name}\""))?;
    }
    Ok(indexes.into_iter().map(|(_, sql)| sql).collect())
}
