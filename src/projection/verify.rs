//! Verifying the live projection and the decisions against the log (THREATS 14, 15), for `airlock audit verify`,
//! `airlock replay --verify` and the operators' `verify` query of `airlock serve`: take one consistent snapshot of the
//! live projection, rebuild from the log up to the point that snapshot had applied, take every recorded decision
//! again on its recorded facts under its recorded policy version, and compare the rebuild with the snapshot row by
//! row (and the receipt chain). Nothing is changed.
//!
//! The snapshot (SQLite's `VACUUM INTO`, one read transaction) is what makes this hold while a projector goes on
//! applying: compared with the file itself, rows applied after its checkpoint was read would show as added.

use crate::core::policy::PolicyDecision;
use crate::log::EventLog;
use crate::log::envelope::Decoded;
use crate::policy::retake::{Engines, Retaken};
use crate::projection::ProjectionError;
use crate::projection::audit::{AuditReport, compare};
use crate::projection::replay::{Progress, RebuildError, RebuildStats, Until, rebuild_with};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a rebuild read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rebuilt {
    pub commits: u64,
    pub events: u64,
    pub last_sequence: u64,
    pub elapsed_ms: u64,
    pub events_per_second: u64,
}

impl From<RebuildStats> for Rebuilt {
    fn from(stats: RebuildStats) -> Rebuilt {
        let seconds = stats.elapsed.as_secs_f64().max(1e-6);
        Rebuilt {
            commits: stats.commits,
            events: stats.events,
            last_sequence: stats.last_sequence,
            elapsed_ms: stats.elapsed.as_millis() as u64,
            events_per_second: (stats.events as f64 / seconds) as u64,
        }
    }
}

/// A recorded decision that the loaded policies of its version decide otherwise on its recorded facts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DifferingDecision {
    pub case_id: String,
    /// The event's place in its case.
    pub case_sequence: u64,
    pub log_sequence: u64,
    pub recorded: PolicyDecision,
    pub retaken: PolicyDecision,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DecisionCheck {
    pub retaken: u64,
    pub same: u64,
    pub differing: Vec<DifferingDecision>,
    /// Decisions not taken again, by the policy version they were recorded under (not loaded).
    pub not_retaken: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyReport {
    pub rebuilt: Rebuilt,
    pub decisions: DecisionCheck,
    pub projection: AuditReport,
    /// The policy versions decisions were taken again with.
    pub policy_versions: Vec<String>,
    /// No decision differs or went unverified, and the projection is exactly what the log implies.
    pub clean: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0} does not exist")]
    Missing(String),
    #[error("cannot read the live projection: {0}")]
    Snapshot(String),
    #[error(transparent)]
    Rebuild(#[from] RebuildError),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
}

/// Verifies the projection file `live` against `log`, taking decisions again with `engines`. `progress` sees the
/// rebuild advance.
pub async fn verify_live<L: EventLog>(
    log: &L,
    live: &Path,
    engines: &Engines,
    progress: impl FnMut(Progress),
) -> Result<VerifyReport, VerifyError> {
    if !live.exists() {
        return Err(VerifyError::Missing(live.display().to_string()));
    }
    // The copies hold what the projection holds (personal data): beside it, on its filesystem, readable by airlock
    // only, never in a shared /tmp. Removed when the audit ends.
    let scratch = tempfile::Builder::new()
        .prefix(".airlock-verify-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir_in(live.parent().unwrap_or(std::path::Path::new(".")))
        .map_err(|error| VerifyError::Snapshot(error.to_string()))?;
    let snapshot = scratch.path().join("live.db");
    let checkpoint = take_snapshot(live.to_path_buf(), snapshot.clone()).await?;
    let rebuilt = scratch.path().join("rebuilt.db");
    let mut decisions = DecisionCheck::default();
    let visit = |log_sequence: u64, decoded: &Decoded| {
        let Decoded::Case { case_id, stream_version, event } = decoded else { return };
        let Some(recorded) = event.body.recorded_decision() else { return };
        match engines.retake(recorded) {
            Retaken::Same => {
                decisions.retaken += 1;
                decisions.same += 1;
            }
            Retaken::Differs(again) => {
                decisions.retaken += 1;
                decisions.differing.push(DifferingDecision {
                    case_id: case_id.to_string(),
                    case_sequence: *stream_version,
                    log_sequence,
                    recorded: recorded.clone(),
                    retaken: again,
                });
            }
            Retaken::NotLoaded => *decisions.not_retaken.entry(recorded.policy_version.clone()).or_default() += 1,
        }
    };
    let stats = rebuild_with(log, &rebuilt, Until::Sequence(checkpoint), progress, visit).await?;
    let projection = tokio::task::spawn_blocking(move || compare(&snapshot, &rebuilt))
        .await
        .map_err(|error| VerifyError::Snapshot(error.to_string()))??;
    let clean = projection.clean() && decisions.differing.is_empty() && decisions.not_retaken.is_empty();
    let policy_versions = engines.versions().into_iter().map(str::to_string).collect();
    Ok(VerifyReport { rebuilt: stats.into(), decisions, projection, policy_versions, clean })
}

/// Copies `live` into `snapshot` in one read transaction and returns the log sequence it had applied.
async fn take_snapshot(live: PathBuf, snapshot: PathBuf) -> Result<u64, VerifyError> {
    let copied = tokio::task::spawn_blocking(move || -> rusqlite::Result<u64> {
        let connection = rusqlite::Connection::open_with_flags(&live, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        connection.execute("VACUUM INTO ?1", [snapshot.to_string_lossy()])?;
        let copy = rusqlite::Connection::open_with_flags(&snapshot, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let last: i64 = copy.query_row("SELECT last_sequence FROM checkpoint", [], |row| row.get(0))?;
        Ok(last as u64)
    });
    match copied.await {
        Ok(Ok(last)) => Ok(last),
        Ok(Err(error)) => Err(VerifyError::Snapshot(error.to_string())),
        Err(error) => Err(VerifyError::Snapshot(error.to_string())),
    }
}
