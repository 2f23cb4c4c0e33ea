//! Rebuilding a projection from the log into a fresh file: the heart of `airlock replay` and of the benchmark's
//! rebuild rate. Reading the log and applying it run side by side (the reader stays a few batches ahead), and the
//! new file is written without a journal or fsync until it is complete; it is switched to WAL with full sync
//! before anyone else opens it. A rebuild that fails leaves a file that must be thrown away, never a live one.

use crate::core::ids::UnixMs;
use crate::log::EventLog;
use crate::log::envelope::Decoded;
use crate::projection::{MIGRATIONS, ProjectionError, apply};
use crate::sqlite::{self, Durability};
use futures::StreamExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The most commits handed to the writer at once.
const READ_CHUNK_MAX: usize = 512;

/// Log commits applied per projection transaction.
const TRANSACTION_COMMITS_MAX: usize = 8_192;

/// Chunks the reader may run ahead of the writer; bounds memory whatever the log's size.
const CHUNKS_AHEAD_MAX: usize = 4;

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
    let until = until.map_or(Until::End, Until::Sequence);
    rebuild_with(log, path, until, |seen: Progress| progress(seen.sequence, seen.last), |_, _| {}).await
}

/// How much of the log a rebuild applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// Everything, up to the log's end when the rebuild starts.
    End,
    /// Up to and including the commit at this sequence.
    Sequence(u64),
    /// The commits before the first one recorded after this moment: what airlock knew then.
    Time(UnixMs),
}

/// How far a rebuild has read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The last sequence read.
    pub sequence: u64,
    /// The sequence the rebuild reads up to (for `Until::Time`, the log's end: it may stop before).
    pub last: u64,
    /// Events read so far.
    pub events: u64,
}

/// The general rebuild: `progress` after each batch read, and `visit` with every event read, in log order (each
/// commit's sequence with it), beside the writer (to take recorded decisions again, say).
pub async fn rebuild_with<L: EventLog>(
    log: &L,
    path: &Path,
    until: Until,
    mut progress: impl FnMut(Progress),
    mut visit: impl FnMut(u64, &Decoded),
) -> Result<RebuildStats, RebuildError> {
    if path.exists() {
        return Err(RebuildError::Exists(path.display().to_string()));
    }
    let started = Instant::now();
    let end = log.last_sequence().await?;
    let (last, as_of) = match until {
        Until::End => (end, None),
        Until::Sequence(until) => (until.min(end), None),
        Until::Time(moment) => (end, Some(moment)),
    };
    let mut connection = sqlite::open_with(path, MIGRATIONS, Durability::Rebuild)?;
    let indexes = drop_secondary_indexes(&connection)?;
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<apply::DecodedEntry>>(CHUNKS_AHEAD_MAX);
    let writer = tokio::task::spawn_blocking(move || -> Result<(), ProjectionError> {
        // Few, large transactions: the file is thrown away if the rebuild fails, so commits only bound the dirty
        // pages held in memory; each commit writes them out.
        let (mut last, mut open) = (0, true);
        while open {
            let transaction = connection.transaction()?;
            let mut applied = 0;
            while applied < TRANSACTION_COMMITS_MAX {
                let Some(entries) = receiver.blocking_recv() else {
                    open = false;
                    break;
                };
                let mut batch = apply::Batch::new();
                for entry in &entries {
                    apply::decoded(&transaction, &mut batch, entry)?;
                }
                batch.flush(&transaction)?;
                applied += entries.len();
                last = entries.last().map_or(last, apply::DecodedEntry::sequence);
            }
            transaction.execute("UPDATE checkpoint SET last_sequence = ?1", [last as i64])?;
            transaction.commit()?;
        }
        // Building each index once, sorted, is much cheaper than maintaining it row by row during the load.
        for sql in &indexes {
            connection.execute_batch(sql)?;
        }
        Ok(())
    });
    let (mut after, mut commits, mut events) = (0, 0u64, 0u64);
    // Whatever has arrived goes to the writer at once (up to a chunk): the writer starts on the first commits while
    // the rest are still being read, and gets bigger chunks whenever it falls behind.
    let mut chunks = std::pin::pin!(log.read_range(0, last).ready_chunks(READ_CHUNK_MAX));
    'reading: while let Some(chunk) = chunks.next().await {
        let chunk = chunk.into_iter().collect::<Result<Vec<_>, _>>()?;
        // Decoded here, beside the writer rather than in its way.
        let mut decoded = chunk.iter().map(apply::decode_entry).collect::<Result<Vec<_>, _>>()?;
        let mut past_moment = false;
        if let Some(moment) = as_of
            && let Some(first_after) = decoded.iter().position(|entry| entry.at().is_some_and(|at| at > moment))
        {
            decoded.truncate(first_after);
            past_moment = true;
        }
        for entry in &decoded {
            for event in entry.decoded() {
                visit(entry.sequence(), event);
            }
        }
        if let Some(tail) = decoded.last() {
            after = tail.sequence();
            commits += decoded.len() as u64;
            events += decoded.iter().map(|entry| entry.events() as u64).sum::<u64>();
            if sender.send(decoded).await.is_err() {
                break;
            }
            progress(Progress { sequence: after, last, events });
        }
        if past_moment {
            break 'reading;
        }
    }
    drop(sender);
    writer.await.map_err(|error| RebuildError::Writer(error.to_string()))??;
    // Back to the projection's durability before the file is used: WAL, synced at checkpoints.
    drop(super::open_file(path)?);
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

/// Puts a rebuilt projection file in place of the live one, keeping the live one as `<live>.previous`. The caller
/// holds the live file's exclusive lock (`Projection::lock_exclusive`), so no process has it open. The live file is
/// checkpointed first so that it is whole on its own (no write-ahead log beside it); the rebuilt file then replaces
/// it in one rename, so a crash leaves either the old file or the new one, never neither.
pub fn swap_in(live: &Path, rebuilt: &Path) -> std::io::Result<()> {
    let sibling = |suffix: &str| {
        let mut name = live.as_os_str().to_owned();
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    if live.exists() {
        let connection = rusqlite::Connection::open(live).map_err(std::io::Error::other)?;
        let busy: i64 = connection
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
            .map_err(std::io::Error::other)?;
        drop(connection);
        if busy != 0 {
            return Err(std::io::Error::other(format!("{} is being read; try again", live.display())));
        }
        let previous = sibling(".previous");
        if previous.exists() {
            std::fs::remove_file(&previous)?;
        }
        std::fs::hard_link(live, &previous)?;
    }
    // Whatever write-ahead log or shared memory is left belongs to the old file; the new one must not inherit it.
    for leftover in [sibling("-wal"), sibling("-shm")] {
        if leftover.exists() {
            std::fs::remove_file(leftover)?;
        }
    }
    std::fs::rename(rebuilt, live)?;
    if let Some(directory) = live.parent() {
        std::fs::File::open(if directory.as_os_str().is_empty() { Path::new(".") } else { directory })?.sync_all()?;
    }
    Ok(())
}
