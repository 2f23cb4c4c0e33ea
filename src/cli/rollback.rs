//! `airlock rollback`: undo executed changes (SPEC principle 9), as an operator on the embedded store: one case, or
//! every case matching an incident's indicator (`--match destination-domain=DOMAIN` or `source-network=NET`) executed
//! within `--since`, with `--dry-run` listing what would change first. Each rollback restores the previous records,
//! removes added destinations, revokes sessions opened since, notifies the owner, and is recorded with a receipt.

use crate::cli::exit;
use crate::core::actor::{Actor, Role};
use crate::core::command::{Command, CommandEnvelope};
use crate::core::ids::{CaseId, CommandId, UnixMs};
use crate::core::limits::REASON_BYTES_MAX;
use crate::core::text::{UntrustedText, check_identifier};
use crate::projection::query::Indicator;
use crate::server::embedded;
use crate::service::{ServiceError, new_id};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  airlock rollback case-3f9a... --reason \"owner reported it\"\n  \
airlock rollback --match destination-domain=mailbox.example --since 48h --dry-run\n  \
airlock rollback --match source-network=AS64500 --since 7d --reason \"incident 42\"")]
pub struct RollbackArgs {
    /// The case to roll back (or use --match).
    pub case: Option<String>,
    /// Roll back every executed case matching destination-domain=DOMAIN or source-network=NET.
    #[arg(long = "match", conflicts_with = "case")]
    pub indicator: Option<String>,
    /// With --match: only cases executed within this long (for example 48h, 7d).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "48h")]
    pub since: Duration,
    /// List what would be rolled back, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Why; recorded with each rollback and its receipt.
    #[arg(long, required_unless_present = "dry_run")]
    pub reason: Option<String>,
    /// The operator acting (recorded as operator:ID).
    #[arg(long, env = "AIRLOCK_OPERATOR", default_value = "operator")]
    pub operator: String,
    /// The embedded data directory.
    #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
    pub data_dir: PathBuf,
    /// Print one JSON object (fields: dry_run, cases[case_id, changes, status, refused]).
    #[arg(long)]
    pub json: bool,
}

fn parse_indicator(text: &str) -> Result<Indicator, String> {
    match text.split_once('=') {
        Some(("destination-domain", domain)) if !domain.is_empty() => Ok(Indicator::DestinationDomain(domain.into())),
        Some(("source-network", network)) if !network.is_empty() => Ok(Indicator::SourceNetwork(network.into())),
        _ => Err(format!("--match {text:?}: use destination-domain=DOMAIN or source-network=NETWORK")),
    }
}

pub fn run(args: RollbackArgs) -> u8 {
    if let Err(rejection) = check_identifier("operator", &args.operator) {
        eprintln!("error: {rejection}");
        return exit::USAGE;
    }
    let embedded = match embedded::open_data_dir(&args.data_dir) {
        Ok(embedded) => embedded,
        Err(error) => {
            eprintln!("error: {error:#}");
            return exit::UNAVAILABLE;
        }
    };
    let targets: Vec<(CaseId, String)> = match (&args.case, &args.indicator) {
        (Some(case), None) => vec![(CaseId::new(case), String::new())],
        (None, Some(indicator)) => {
            let indicator = match parse_indicator(indicator) {
                Ok(indicator) => indicator,
                Err(reason) => {
                    eprintln!("error: {reason}");
                    return exit::USAGE;
                }
            };
            let now = crate::clock::Clock::now(&crate::clock::SystemClock);
            let since = UnixMs(now.0.saturating_sub(args.since.as_millis() as u64));
            match embedded.service.projection.executed_matching(&indicator, since) {
                Ok(targets) => targets,
                Err(error) => {
                    eprintln!("error: {error}");
                    return exit::UNAVAILABLE;
                }
            }
        }
        (None, None) | (Some(_), Some(_)) => {
            eprintln!("error: name one case, or --match an indicator");
            return exit::USAGE;
        }
    };
    if args.dry_run && args.json {
        let cases: Vec<serde_json::Value> = targets
            .iter()
            .map(|(case_id, changes)| serde_json::json!({ "case_id": case_id.as_str(), "changes": changes }))
            .collect();
        println!("{}", serde_json::json!({ "dry_run": true, "cases": cases }));
        return exit::OK;
    }
    if args.dry_run {
        for (case_id, changes) in &targets {
            println!("would roll back {case_id}: {changes}");
        }
        println!("{} cases would be rolled back (dry run: nothing changed)", targets.len());
        return exit::OK;
    }
    let reason_text = args.reason.clone().unwrap_or_default();
    let reason = match UntrustedText::new("reason", &reason_text, REASON_BYTES_MAX) {
        Ok(reason) if !crate::wire::looks_like_code(&reason_text) => reason,
        Ok(_) | Err(_) => {
            eprintln!("error: the reason must be at most {REASON_BYTES_MAX} bytes and hold no verification code");
            return exit::FAILED;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts");
    let actor = Actor::new(Role::Operator, args.operator);
    let mut failed = 0;
    let mut results = Vec::new();
    for (case_id, changes) in &targets {
        let command = CommandEnvelope {
            command_id: CommandId::new(new_id("rollback")),
            actor: actor.clone(),
            command: Command::RollBack { reason: reason.clone() },
        };
        let result = |status: String, refused: Option<String>| serde_json::json!({ "case_id": case_id.as_str(), "changes": changes, "status": status, "refused": refused });
        match runtime.block_on(embedded.service.handle(case_id, command)) {
            Ok(handled) => {
                if !args.json {
                    println!("{case_id}: {}", handled.status);
                }
                results.push(result(handled.status.to_string(), None));
            }
            Err(ServiceError::Rejected(rejection)) => {
                failed += 1;
                if !args.json {
                    println!("{case_id}: refused: {rejection}");
                }
                results.push(result(String::new(), Some(rejection.to_string())));
            }
            Err(error) => {
                eprintln!("error: {case_id}: {error}");
                return exit::UNAVAILABLE;
            }
        }
    }
    if args.json {
        println!("{}", serde_json::json!({ "dry_run": false, "cases": results }));
    } else {
        println!("{} rolled back, {failed} refused", targets.len() - failed);
    }
    if failed == 0 { exit::OK } else { exit::FAILED }
}
