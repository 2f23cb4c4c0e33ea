//! What the read commands share: the data directory they read, opening its projection without creating one, and
//! printing times and tables the same way everywhere.

use crate::cli::exit;
use crate::core::ids::UnixMs;
use crate::projection::Projection;
use std::path::{Path, PathBuf};

/// Where a read command reads: the projection of a data directory, or, with `--nats`, the live service, asked as the
/// actor of the caller's own key (reviewers and operators; issue 17).
#[derive(Debug, clap::Args)]
pub struct Store {
    /// The data directory: the embedded store, or the one `airlock serve` keeps its projection in.
    #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
    pub data_dir: PathBuf,
    /// Ask the live service `airlock serve --nats` runs instead, for example nats://127.0.0.1:4222, as the actor of
    /// --nats-nkey (a reviewer or an operator).
    #[arg(long, env = "AIRLOCK_NATS_URL")]
    pub nats: Option<String>,
    /// Your own nkey seed file, as `airlock nats-config` wrote it (seeds/<role>.<id>.nk).
    #[arg(long, env = "AIRLOCK_NATS_NKEY", value_name = "FILE")]
    pub nats_nkey: Option<PathBuf>,
}

/// Where a read command's answers come from.
pub enum Reader {
    Local(Projection),
    Nats { runtime: tokio::runtime::Runtime, client: async_nats::Client, actor: crate::core::actor::Actor },
}

impl Store {
    /// Opens what `self` names; on failure the reason is reported (as JSON too under `json`, see `failed`) and the
    /// exit code returned.
    pub fn reader(&self, json: bool) -> Result<Reader, u8> {
        let Some(url) = &self.nats else {
            return projection(&self.data_dir)
                .map(Reader::Local)
                .map_err(|(reason, code)| failed(json, "unavailable", &reason, code));
        };
        let Some(key) = &self.nats_nkey else {
            let reason =
                "--nats needs --nats-nkey: your own reviewer or operator key, as `airlock nats-config` wrote it";
            return Err(failed(json, "invalid_value", reason, exit::USAGE));
        };
        let actor = crate::cli::target::actor_of_key(key)
            .map_err(|reason| failed(json, "invalid_value", &reason, exit::USAGE))?;
        Reader::connect(url, key, actor).map_err(|reason| failed(json, "unavailable", &reason, exit::UNAVAILABLE))
    }

    /// The actor the key of a command that reads the event log belongs to, over NATS: `None` for airlock's own key
    /// (`seeds/airlock.nk`; or no key, on a development server without users), which reads the log itself;
    /// `Some(actor)` for an actor's key (`<role>.<id>.nk`), which asks the live service as that actor.
    pub fn asking_actor(&self) -> Result<Option<crate::core::actor::Actor>, String> {
        asking_actor(self.nats.as_deref(), self.nats_nkey.as_deref())
    }
}

/// See `Store::asking_actor`.
pub fn asking_actor(nats: Option<&str>, key: Option<&Path>) -> Result<Option<crate::core::actor::Actor>, String> {
    match (nats, key) {
        (None, _) | (Some(_), None) => Ok(None),
        (Some(_), Some(key)) if key.file_name().is_some_and(|name| name == AIRLOCKS_OWN_KEY) => Ok(None),
        (Some(_), Some(key)) => crate::cli::target::actor_of_key(key).map(Some),
    }
}

/// How long `audit verify` and `replay --verify` wait for the live service's audit.
const VERIFY_WAIT_SECONDS: u64 = 600;

/// The name `airlock nats-config` gives airlock's own seed file.
pub const AIRLOCKS_OWN_KEY: &str = "airlock.nk";

/// Reports a read command's failure: `error: REASON` on stderr and, under `--json`, `{"error": {"code", "reason"}}` on
/// stdout with the stable codes NATS and HTTP answers use (`not_found`, `invalid_value`, `role_not_allowed`,
/// `unavailable`). A reason that came from the service (`code: reason`) keeps the service's code. Returns `exit_code`.
pub fn failed(json: bool, code: &str, reason: &str, exit_code: u8) -> u8 {
    let (code, reason) = match reason.split_once(": ") {
        Some((from_service, rest))
            if ["role_not_allowed", "malformed_command", "unavailable", "too_large", "busy"]
                .contains(&from_service) =>
        {
            (from_service, rest)
        }
        _ => (code, reason),
    };
    eprintln!("error: {reason}");
    if json {
        println!("{}", serde_json::json!({ "error": { "code": code, "reason": reason } }));
    }
    exit_code
}

/// The exit code of a failed read: refused (exit 1) when airlock answered that this actor may not ask it or the
/// question was wrong; unavailable (exit 3) otherwise.
pub fn exit_code_of(error: &str) -> u8 {
    if error.starts_with("role_not_allowed:") || error.starts_with("malformed_command:") {
        exit::FAILED
    } else {
        exit::UNAVAILABLE
    }
}

impl Reader {
    /// Connects to the live service at `url` with `key`, to ask as `actor`.
    pub fn connect(url: &str, key: &Path, actor: crate::core::actor::Actor) -> Result<Reader, String> {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts");
        let client = runtime
            .block_on(crate::nats::connect_seeded(url, "airlock-read", Some(key)))
            .map_err(|error| error.to_string())?;
        Ok(Reader::Nats { runtime, client, actor })
    }

    /// Asks the live service one query on the actor's own query subject; an answer that is an error comes back as
    /// `Err` with its code and reason. Only for `Reader::Nats`.
    pub fn ask(&self, query: serde_json::Value) -> Result<serde_json::Value, String> {
        let Reader::Nats { runtime, client, actor } = self else { unreachable!("only the live service is asked") };
        // An audit rebuilds the whole log on the service: it may take minutes.
        let wait = match query["query"].as_str() {
            Some("verify") => std::time::Duration::from_secs(VERIFY_WAIT_SECONDS),
            _ => std::time::Duration::from_secs(30),
        };
        let answer = runtime.block_on(crate::cli::target::ask_live_within(client, actor, query, wait))?;
        match answer["error"]["code"].as_str() {
            Some(code) => Err(format!("{code}: {}", answer["error"]["reason"].as_str().unwrap_or_default())),
            None => Ok(answer),
        }
    }

    /// `field` of the answer to `query`, read as `T` (`null` as `None` for an `Option`).
    pub fn ask_for<T: serde::de::DeserializeOwned>(&self, query: serde_json::Value, field: &str) -> Result<T, String> {
        let answer = self.ask(query)?;
        serde_json::from_value(answer[field].clone()).map_err(|error| format!("unreadable answer: {error}"))
    }
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
/// reason and the exit code.
pub fn projection(data_dir: &Path) -> Result<Projection, (String, u8)> {
    let path = data_dir.join("projection.db");
    if !path.exists() {
        let reason = format!(
            "no projection at {}: point --data-dir at airlock's data directory (AIRLOCK_DATA_DIR)",
            path.display()
        );
        return Err((reason, exit::UNAVAILABLE));
    }
    Projection::open(&path).map_err(|error| (format!("cannot open {}: {error}", path.display()), exit::UNAVAILABLE))
}

pub fn now() -> UnixMs {
    crate::clock::Clock::now(&crate::clock::SystemClock)
}

pub use crate::projection::views::rfc3339;

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
