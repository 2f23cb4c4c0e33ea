//! What the read commands share: the data directory they read, opening its projection without creating one, and
//! printing times and tables the same way everywhere.

use crate::cli::exit;
use crate::core::ids::UnixMs;
use crate::projection::Projection;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the projection is read (and, for commands that record something without `--nats`, the embedded store).
#[derive(Debug, clap::Args)]
pub struct Store {
    /// The data directory: the embedded store, or the one `airlock serve` keeps its projection in.
    #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
    pub data_dir: PathBuf,
}

/// Where a command reads the event log: NATS JetStream, or the embedded log.db of its data directory.
#[derive(Debug, clap::Args)]
pub struct LogSource {
    /// Read the log from NATS JetStream instead of the embedded log.db.
    #[arg(long, env = "AIRLOCK_NATS_URL")]
    pub nats: Option<String>,
    /// The nkey seed file to connect to NATS with: one allowed to read the event log (airlock's own, as
    /// `airlock nats-config` wrote it: seeds/airlock.nk).
    #[arg(long, env = "AIRLOCK_NATS_NKEY", value_name = "FILE")]
    pub nats_nkey: Option<PathBuf>,
}

/// An event log opened for reading, of either mode.
pub enum OpenLog {
    Embedded(crate::log::sqlite::SqliteLog),
    Nats(Box<crate::log::jetstream::JetStreamLog>),
}

impl LogSource {
    /// Opens the log as it exists (never creating one): the NATS stream, or `data_dir`'s log.db. `client` names the
    /// connection to the server.
    pub async fn open(&self, data_dir: &Path, client: &str) -> Result<OpenLog, String> {
        use crate::log::jetstream::{JetStreamConfig, JetStreamLog};
        match &self.nats {
            Some(url) => {
                let client = crate::nats::connect_seeded(url, client, self.nats_nkey.as_deref())
                    .await
                    .map_err(|error| error.to_string())?;
                let log = JetStreamLog::open_existing(client, &JetStreamConfig::default().stream_name)
                    .await
                    .map_err(|error| error.to_string())?;
                Ok(OpenLog::Nats(Box::new(log)))
            }
            None => {
                let path = data_dir.join("log.db");
                if !path.exists() {
                    return Err(format!(
                        "no event log at {}: point --data-dir at airlock's data directory, or use --nats",
                        path.display()
                    ));
                }
                let log = crate::log::sqlite::SqliteLog::open(&path).map_err(|error| error.to_string())?;
                Ok(OpenLog::Embedded(log))
            }
        }
    }
}

/// The projection of a data directory, which must exist: reading one must not create an empty store. On failure the
/// error is printed and the exit code returned.
pub fn projection(data_dir: &Path) -> Result<Projection, u8> {
    let path = data_dir.join("projection.db");
    if !path.exists() {
        eprintln!(
            "error: no projection at {}: point --data-dir at airlock's data directory (AIRLOCK_DATA_DIR)",
            path.display()
        );
        return Err(exit::UNAVAILABLE);
    }
    Projection::open(&path).map_err(|error| {
        eprintln!("error: cannot open {}: {error}", path.display());
        exit::UNAVAILABLE
    })
}

pub fn now() -> UnixMs {
    crate::clock::Clock::now(&crate::clock::SystemClock)
}

/// A moment as RFC 3339 in UTC, to the second.
pub fn rfc3339(at: UnixMs) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(at.0)).to_string()
}

/// A span as people say it: `3d 4h`, `2h 10m`, `45s`.
pub fn span(ms: u64) -> String {
    let seconds = ms / 1_000;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3_600 => format!("{}m", seconds / 60),
        3_600..86_400 => format!("{}h {}m", seconds / 3_600, seconds % 3_600 / 60),
        _ => format!("{}d {}h", seconds / 86_400, seconds % 86_400 / 3_600),
    }
}

/// A moment given on the command line: an RFC 3339 time (`2026-06-01T12:00:00Z`), a UTC date and time
/// (`2026-06-01 12:00:00`), or a span before now (`3d`, `12h 30m`).
pub fn parse_moment(text: &str, now: UnixMs) -> Result<UnixMs, String> {
    let text = text.trim();
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        let ms = at.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("{text} is before 1970"))?;
        return Ok(UnixMs(ms.as_millis() as u64));
    }
    match humantime::parse_duration(text) {
        Ok(ago) => Ok(UnixMs(now.0.saturating_sub(ago.as_millis() as u64))),
        Err(_) => Err(format!(
            "{text:?} is neither a time (2026-06-01 12:00:00, in UTC, or RFC 3339) nor a span before now (3d, 12h 30m)"
        )),
    }
}

/// Columns padded to their widest cell, two spaces apart.
pub fn print_table<const N: usize>(rows: &[[String; N]]) {
    let widths: Vec<usize> =
        (0..N).map(|column| rows.iter().map(|row| row[column].chars().count()).max().unwrap_or(0)).collect();
    for row in rows {
        let cells: Vec<String> =
            row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}", width = *width)).collect();
        println!("{}", cells.join("  ").trim_end());
    }
}
