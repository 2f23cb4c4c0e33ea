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
    let PolicyCommand::Test { dir, json } = args.command;
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
