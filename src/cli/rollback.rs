//! `airlock rollback`: undo executed changes (SPEC principle 9), as an operator, on the live NATS deployment with the
//! operator's own key or on the embedded store: one case, or
//! every case matching an incident's indicator (`--match destination-domain=DOMAIN` or `source-network=NET`) executed
//! within `--since`, with `--dry-run` listing what would change first. Each rollback restores the previous records,
//! removes added destinations, revokes sessions opened since, notifies the owner, and is recorded with a receipt.

use crate::cli::exit;
use crate::cli::target::OperatorArgs;
use crate::core::ids::{CaseId, UnixMs};
use crate::core::limits::REASON_BYTES_MAX;
use crate::core::text::UntrustedText;
use crate::intake::CommandType;
use crate::projection::query::Indicator;
use crate::service::new_id;
use serde_json::{Value, json};
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
    #[command(flatten)]
    pub who: OperatorArgs,
    /// Print one JSON object (fields: dry_run, cases[case_id, changes, status, refused]).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: RollbackArgs) -> u8 {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts");
    runtime.block_on(rollback(args))
}

async fn rollback(args: RollbackArgs) -> u8 {
    if let Some(indicator) = &args.indicator
        && let Err(reason) = Indicator::parse(indicator)
    {
        eprintln!("error: {reason}");
        return exit::USAGE;
    }
    let reason = args.reason.clone().unwrap_or_default();
    if !args.dry_run
        && (UntrustedText::new("reason", &reason, REASON_BYTES_MAX).is_err() || crate::wire::looks_like_code(&reason))
    {
        eprintln!("error: the reason must be at most {REASON_BYTES_MAX} bytes and hold no verification code");
        return exit::FAILED;
    }
    let target = match args.who.open("airlock-rollback").await {
        Ok(target) => target,
        Err(code) => return code,
    };
    let targets: Vec<(CaseId, String)> = match (&args.case, &args.indicator) {
        (Some(case), None) => vec![(CaseId::new(case), String::new())],
        (None, Some(indicator)) => {
            let now = crate::clock::Clock::now(&crate::clock::SystemClock);
            let since = UnixMs(now.0.saturating_sub(args.since.as_millis() as u64));
            match target.executed_matching(indicator, since).await {
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
        let cases: Vec<Value> = targets
            .iter()
            .map(|(case_id, changes)| json!({ "case_id": case_id.as_str(), "changes": changes }))
            .collect();
        println!("{}", json!({ "dry_run": true, "cases": cases }));
        return exit::OK;
    }
    if args.dry_run {
        for (case_id, changes) in &targets {
            println!("would roll back {case_id}: {changes}");
        }
        println!("{} cases would be rolled back (dry run: nothing changed)", targets.len());
        return exit::OK;
    }
    let mut failed = 0;
    let mut results = Vec::new();
    for (case_id, changes) in &targets {
        let body =
            json!({ "version": 1, "command_id": new_id("rollback"), "case_id": case_id.as_str(), "reason": reason });
        let result = |status: &str, refused: Option<&str>| json!({ "case_id": case_id.as_str(), "changes": changes, "status": status, "refused": refused });
        let answer = match target.send(CommandType::RollBack, &body).await {
            Ok(answer) => answer,
            Err(error) => {
                eprintln!("error: {case_id}: {error}");
                return exit::UNAVAILABLE;
            }
        };
        match (answer["accepted"].as_bool(), answer["error"]["code"].as_str()) {
            (Some(true), _) => {
                let status = answer["status"].as_str().unwrap_or("unknown");
                if !args.json {
                    println!("{case_id}: {status}");
                }
                results.push(result(status, None));
            }
            (_, Some("unavailable")) => {
                eprintln!("error: {case_id}: {}", answer["error"]["reason"].as_str().unwrap_or("unavailable"));
                return exit::UNAVAILABLE;
            }
            _ => {
                failed += 1;
                let refused = answer["error"]["reason"].as_str().or(answer["message"].as_str()).unwrap_or("refused");
                if !args.json {
                    println!("{case_id}: refused: {refused}");
                }
                results.push(result("", Some(refused)));
            }
        }
    }
    if args.json {
        println!("{}", json!({ "dry_run": false, "cases": results }));
    } else {
        println!("{} rolled back, {failed} refused", targets.len() - failed);
    }
    if failed == 0 { exit::OK } else { exit::FAILED }
}
