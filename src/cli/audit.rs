//! `airlock audit verify`: re-derives the projection from the log (up to the point the live projection has applied)
//! and reports every row that was altered, added or removed, and every break in the receipts' hash chain. Exits 1 on
//! any finding, so it can run from cron or CI.

use crate::cli::exit;
use crate::log::EventLog;
use crate::log::jetstream::{JetStreamConfig, JetStreamLog};
use crate::log::sqlite::SqliteLog;
use crate::projection::audit::{AuditReport, compare};
use crate::projection::replay::rebuild_until;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Rebuild from the log and compare with the live projection; verify the receipt chain.
    #[command(
        after_help = "Examples:\n  airlock audit verify --data-dir ./airlock-data\n  airlock audit verify --nats nats://127.0.0.1:4222 --json"
    )]
    Verify {
        /// The data directory holding projection.db (and log.db in embedded mode).
        #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
        data_dir: PathBuf,
        /// Read the log from NATS JetStream instead of the embedded log.db.
        #[arg(long, env = "AIRLOCK_NATS_URL")]
        nats: Option<String>,
        /// The nkey seed file to connect to NATS with, as `airlock nats-config` wrote it (airlock's own,
        /// seeds/airlock.nk).
        #[arg(long, env = "AIRLOCK_NATS_NKEY", value_name = "FILE")]
        nats_nkey: Option<PathBuf>,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

async fn verify<L: EventLog>(log: &L, live: &Path) -> anyhow::Result<AuditReport> {
    let connection = rusqlite::Connection::open_with_flags(live, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let checkpoint: i64 = connection.query_row("SELECT last_sequence FROM checkpoint", [], |row| row.get(0))?;
    drop(connection);
    let scratch = tempfile::Builder::new().prefix("airlock-audit-").tempdir()?;
    let rebuilt = scratch.path().join("rebuilt.db");
    rebuild_until(log, &rebuilt, Some(checkpoint as u64), |_, _| {}).await?;
    Ok(compare(live, &rebuilt)?)
}

pub fn run(args: AuditArgs) -> u8 {
    let AuditCommand::Verify { data_dir, nats, nats_nkey, json } = args.command;
    let live = data_dir.join("projection.db");
    if !live.exists() {
        eprintln!("error: {} does not exist", live.display());
        return exit::UNAVAILABLE;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime starts");
    let report = runtime.block_on(async {
        match nats {
            Some(url) => {
                let client = crate::nats::connect_seeded(&url, "airlock-audit", nats_nkey.as_deref()).await?;
                let log = JetStreamLog::open_existing(client, &JetStreamConfig::default().stream_name).await?;
                verify(&log, &live).await
            }
            None => verify(&SqliteLog::open(&data_dir.join("log.db"))?, &live).await,
        }
    });
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: {error:#}");
            return exit::UNAVAILABLE;
        }
    };
    if json {
        println!("{}", serde_json::to_string(&report).expect("a report serializes"));
    } else {
        for difference in &report.differences {
            println!("{:<8} {}: {}", difference.kind, difference.table, difference.key);
        }
        for chain_break in &report.chain_breaks {
            println!("chain    receipts #{}: {}", chain_break.receipt_sequence, chain_break.problem);
        }
        if report.clean() {
            println!("audit clean: the projection is exactly what the log implies, and the receipt chain holds");
        } else {
            println!(
                "audit FAILED: {} row differences, {} chain breaks",
                report.differences.len(),
                report.chain_breaks.len()
            );
        }
    }
    if report.clean() { exit::OK } else { exit::FAILED }
}
