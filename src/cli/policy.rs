//! `airlock policy test`: runs the policy test cases kept next to the policies, against those policies.

use crate::cli::exit;
use crate::policy::{DEFAULT_CASES, DEFAULT_POLICIES, DEFAULT_SCHEMA, Engine, cases};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Validate the policies against their schema and run their test cases.
    #[command(after_help = "Examples:\n  airlock policy test\n  airlock policy test --dir ./policies")]
    Test {
        /// A folder holding airlock.cedarschema, default.cedar and tests.toml; the shipped policies when absent.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print one JSON object (fields: valid, version, passed, failed, cases[name, problems], error).
        #[arg(long)]
        json: bool,
    },
    /// Take every decision recorded in the log again under a candidate policy, on its recorded facts, and count the
    /// decisions that would change (auto → review, review → deny, a longer hold), with their cases.
    #[command(after_help = "Examples:\n  airlock policy backtest --policies ./candidate\n  \
airlock policy backtest --policies ./candidate --since 30d --json\n  \
airlock policy backtest --policies ./candidate --nats nats://127.0.0.1:4222 --nats-nkey seeds/airlock.nk")]
    Backtest(BacktestArgs),
}

#[derive(Debug, clap::Args)]
pub struct BacktestArgs {
    /// The candidate policy folder (airlock.cedarschema and default.cedar).
    #[arg(long = "policies")]
    pub policies: PathBuf,
    /// Only decisions recorded at or after this moment: a UTC time ("2026-06-01 12:00:00", or RFC 3339) or a span
    /// before now (30d, "12h 30m"). Every decision when absent.
    #[arg(long)]
    pub since: Option<String>,
    /// The data directory holding the embedded log.db.
    #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub log: crate::cli::store::LogSource,
    /// Print one JSON object (fields: candidate, decisions, unchanged, changes{change: count, decisions[case_id,
    /// case_sequence, at, phase, recorded_rules, candidate_rules]}, recorded_versions).
    #[arg(long)]
    pub json: bool,
}

/// Loads the policies of a folder (airlock.cedarschema and default.cedar), refusing any that does not parse or
/// validate, with the policy and the place named.
pub fn load_dir(dir: &std::path::Path) -> Result<Engine, String> {
    let schema = read(dir, "airlock.cedarschema")?;
    let policies = read(dir, "default.cedar")?;
    Engine::load(&schema, &policies).map_err(|error| format!("{}: {error}", dir.display()))
}

/// The shipped policies and those of each folder given, to take recorded decisions again.
pub fn load_engines(dirs: &[std::path::PathBuf]) -> Result<crate::policy::retake::Engines, String> {
    let loaded = dirs.iter().map(|dir| load_dir(dir).map(std::sync::Arc::new)).collect::<Result<Vec<_>, _>>()?;
    Ok(crate::policy::retake::Engines::with(loaded))
}

fn read(dir: &std::path::Path, name: &str) -> Result<String, String> {
    std::fs::read_to_string(dir.join(name))
        .map_err(|error| format!("cannot read {}: {error}", dir.join(name).display()))
}

pub fn run(args: PolicyArgs) -> u8 {
    match args.command {
        PolicyCommand::Test { dir, json } => test(dir, json),
        PolicyCommand::Backtest(args) => backtest(args),
    }
}

fn backtest(args: BacktestArgs) -> u8 {
    let candidate = match load_dir(&args.policies) {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("error: {error}");
            return exit::USAGE;
        }
    };
    let since = match args.since.as_deref().map(|text| crate::cli::store::parse_moment(text, crate::cli::store::now()))
    {
        None => crate::core::ids::UnixMs(0),
        Some(Ok(moment)) => moment,
        Some(Err(error)) => {
            eprintln!("error: --since: {error}");
            return exit::USAGE;
        }
    };
    let runtime = crate::cli::runtime();
    let report = runtime.block_on(async {
        match args.log.open(&args.data_dir, "airlock-backtest").await? {
            crate::cli::store::OpenLog::Nats(log) => read_log(log.as_ref(), &candidate, since).await,
            crate::cli::store::OpenLog::Embedded(log) => read_log(&log, &candidate, since).await,
        }
    });
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: {error}");
            return exit::UNAVAILABLE;
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("plain data serializes"));
        return exit::OK;
    }
    println!(
        "{} recorded decisions taken again under {} ({}): {} unchanged, {} would change",
        report.decisions,
        args.policies.display(),
        report.candidate,
        report.unchanged,
        report.decisions - report.unchanged
    );
    for (change, listed) in &report.changes {
        println!("\n  {change}: {}", listed.count);
        for decision in &listed.decisions {
            println!(
                "    {} #{} ({}, {}): {} → {}",
                decision.case_id,
                decision.case_sequence,
                decision.phase,
                crate::cli::store::rfc3339(decision.at),
                rules(&decision.recorded_rules),
                rules(&decision.candidate_rules)
            );
        }
        if listed.count > listed.decisions.len() as u64 {
            println!("    ... and {} more", listed.count - listed.decisions.len() as u64);
        }
    }
    exit::OK
}

/// Reads the whole log, a page at a time, and takes each recorded decision again.
async fn read_log<L: crate::log::EventLog>(
    log: &L,
    candidate: &Engine,
    since: crate::core::ids::UnixMs,
) -> Result<crate::policy::backtest::Backtest, String> {
    const PAGE: usize = 512;
    let mut backtester = crate::policy::backtest::Backtester::new(candidate, since);
    let mut after = 0;
    loop {
        let entries = log.read_after(after, PAGE).await.map_err(|error| error.to_string())?;
        let Some(last) = entries.last() else { break };
        after = last.sequence;
        for entry in &entries {
            for bytes in &entry.envelopes {
                let decoded = crate::log::envelope::decode(bytes)
                    .map_err(|error| format!("log sequence {}: an event does not decode: {error}", entry.sequence))?;
                if let crate::log::envelope::Decoded::Case { case_id, stream_version, event } = decoded {
                    backtester.visit(&case_id, stream_version, &event);
                }
            }
        }
    }
    Ok(backtester.finish())
}

fn rules(rules: &[String]) -> String {
    if rules.is_empty() { "no rule".to_string() } else { rules.join(", ") }
}

fn test(dir: Option<PathBuf>, json: bool) -> u8 {
    let refused = |what: &str, error: String| {
        if json {
            let answer = serde_json::json!({ "valid": false, "error": format!("{what} refused: {error}") });
            println!("{answer}");
        } else {
            println!("{what} refused: {error}");
        }
        exit::FAILED
    };
    let texts = match &dir {
        Some(dir) => match (read(dir, "airlock.cedarschema"), read(dir, "default.cedar"), read(dir, "tests.toml")) {
            (Ok(schema), Ok(policies), Ok(tests)) => (schema, policies, tests),
            (Err(error), _, _) | (_, Err(error), _) | (_, _, Err(error)) => {
                eprintln!("error: {error}");
                return exit::UNAVAILABLE;
            }
        },
        None => (DEFAULT_SCHEMA.to_string(), DEFAULT_POLICIES.to_string(), DEFAULT_CASES.to_string()),
    };
    let engine = match Engine::load(&texts.0, &texts.1) {
        Ok(engine) => engine,
        Err(error) => return refused("policies", error.to_string()),
    };
    let results = match cases::run(&engine, &texts.2) {
        Ok(results) => results,
        Err(error) => return refused("test cases", error.to_string()),
    };
    let failed = results.iter().filter(|result| !result.problems.is_empty()).count();
    if json {
        let cases: Vec<serde_json::Value> = results
            .iter()
            .map(|result| serde_json::json!({ "name": result.name, "problems": result.problems }))
            .collect();
        let answer = serde_json::json!({
            "valid": true, "version": engine.version(), "passed": results.len() - failed, "failed": failed,
            "cases": cases,
        });
        println!("{}", serde_json::to_string_pretty(&answer).expect("plain data serializes"));
        return if failed == 0 { exit::OK } else { exit::FAILED };
    }
    println!("policies {} valid against their schema", engine.version());
    for result in &results {
        let mark = if result.problems.is_empty() { "ok  " } else { "FAIL" };
        println!("  [{mark}] {}", result.name);
        for problem in &result.problems {
            println!("         {problem}");
        }
    }
    println!("{} passed, {failed} failed", results.len() - failed);
    if failed == 0 { exit::OK } else { exit::FAILED }
}
