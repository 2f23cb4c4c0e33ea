//! `airlock audit verify`: re-derives the projection from the log (up to the point the live projection has applied)
//! and reports every row that was altered, added or removed, and every break in the receipts' hash chain. Exits 1 on
//! any finding, so it can run from cron or CI.

use crate::cli::exit;
use crate::cli::store::{LogSource, OpenLog, Reader, exit_code_of, failed};
use crate::policy::retake::Engines;
use crate::projection::verify::{VerifyReport, verify_live};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Rebuild from the log and compare with the live projection; verify the receipt chain.
    #[command(after_help = "Examples:\n  airlock audit verify --data-dir ./airlock-data\n  \
airlock audit verify --nats nats://127.0.0.1:4222 --nats-nkey seeds/operator.ops-1.nk --json")]
    Verify {
        /// The data directory holding projection.db (and log.db in embedded mode).
        #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
        data_dir: PathBuf,
        /// Audit a NATS deployment: with your own operator key (seeds/operator.<id>.nk) the live service audits
        /// itself and answers; with airlock's own key (seeds/airlock.nk), on the server, this command reads the log
        /// and the data directory's projection itself.
        #[command(flatten)]
        log: LogSource,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// The audit of `data_dir`'s projection against the log `source` names, decisions taken again with `engines`; or,
/// with an operator's key, the live service's answer to its `verify` query (taken with the policies it has loaded).
/// On failure the reason is reported and the exit code returned.
pub fn verify(data_dir: &Path, source: &LogSource, engines: &Engines, json: bool) -> Result<VerifyReport, u8> {
    let asking = crate::cli::store::asking_actor(source.nats.as_deref(), source.nats_nkey.as_deref())
        .map_err(|reason| failed(json, "invalid_value", &reason, exit::USAGE))?;
    if let (Some(actor), Some(url), Some(key)) = (asking, &source.nats, &source.nats_nkey) {
        let reader = Reader::connect(url, key, actor)
            .map_err(|reason| failed(json, "unavailable", &reason, exit::UNAVAILABLE))?;
        // A role that may not audit is a usage error (exit 2), never exit 1, which says the audit found something.
        return reader.ask_for(serde_json::json!({ "query": "verify" }), "report").map_err(|error| {
            let code = if error.starts_with("role_not_allowed:") { exit::USAGE } else { exit_code_of(&error) };
            failed(json, "unavailable", &error, code)
        });
    }
    let live = data_dir.join("projection.db");
    let runtime = crate::cli::runtime();
    let report = runtime.block_on(async {
        let bar = crate::cli::replay::progress_bar(json);
        let started = std::time::Instant::now();
        let progress = |seen| crate::cli::replay::advance(&bar, started, seen);
        let report = match source.open(data_dir, "airlock-audit").await? {
            OpenLog::Nats(log) => verify_live(log.as_ref(), &live, engines, progress).await,
            OpenLog::Embedded(log) => verify_live(&log, &live, engines, progress).await,
        };
        bar.finish_and_clear();
        report.map_err(|error| error.to_string())
    });
    report.map_err(|error| failed(json, "unavailable", &error, exit::UNAVAILABLE))
}

pub fn run(args: AuditArgs) -> u8 {
    let AuditCommand::Verify { data_dir, log, json } = args.command;
    let report = match verify(&data_dir, &log, &Engines::with(Vec::new()), json) {
        Ok(report) => report.projection,
        Err(code) => return code,
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
