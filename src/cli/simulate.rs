//! `airlock simulate`: runs a seeded population of owners, attackers and reviewers through the real service with a
//! simulated clock, under one or more policy folders, and reports the trade-off side by side (`crate::simulate`).

use crate::cli::exit;
use crate::cli::policy::load_dir;
use crate::policy::Engine;
use crate::simulate::population::{DEFAULT_POPULATION, Population};
use crate::simulate::report::{self, Run};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How many differing cases are listed per pair of policies.
const DIFFERENCES_SHOWN: usize = 20;

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// A folder of policies (airlock.cedarschema and default.cedar) to run; repeat to compare several side by side,
    /// the first as the baseline. The shipped policies when absent.
    #[arg(long = "policies")]
    pub policies: Vec<PathBuf>,
    /// The population file (TOML); the shipped one (simulations/default.toml) when absent.
    #[arg(long)]
    pub population: Option<PathBuf>,
    /// The seed of every random draw: the same seed, population and policies give the same report, byte for byte.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run only the scenario of this name (repeatable); every scenario of the population when absent.
    #[arg(long = "scenario")]
    pub scenarios: Vec<String>,
    /// Run the population with this many accounts instead of its own number, every share and rate unchanged: a
    /// quicker, noisier run of the same mix.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=crate::simulate::population::ACCOUNTS_MAX as i64))]
    pub accounts: Option<u32>,
    /// Print one JSON object (fields: runs[population, scenario, spread_days, seed, policies, policy_version,
    /// owners, attackers, reviewers], takeovers).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: SimulateArgs) -> u8 {
    let text = match &args.population {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) => {
                eprintln!("error: cannot read the population {}: {error}", path.display());
                return exit::USAGE;
            }
        },
        None => DEFAULT_POPULATION.to_string(),
    };
    let source =
        args.population.as_ref().map_or("the shipped population".to_string(), |path| path.display().to_string());
    let mut population = match Population::parse(&text) {
        Ok(population) => population,
        Err(error) => {
            eprintln!("error: {source}: {error}");
            return exit::USAGE;
        }
    };
    if let Some(accounts) = args.accounts {
        population.accounts = accounts;
    }
    let scenarios: Vec<usize> = if args.scenarios.is_empty() {
        (0..population.scenarios.len()).collect()
    } else {
        let mut chosen = Vec::new();
        for name in &args.scenarios {
            match population.scenarios.iter().position(|scenario| scenario.name == *name) {
                Some(index) => chosen.push(index),
                None => {
                    let known: Vec<&str> = population.scenarios.iter().map(|scenario| scenario.name.as_str()).collect();
                    eprintln!("error: {source} has no scenario {name:?}; it has {known:?}");
                    return exit::USAGE;
                }
            }
        }
        chosen
    };
    let engines: Vec<(String, Arc<Engine>)> = if args.policies.is_empty() {
        vec![("shipped".to_string(), crate::policy::Engine::shared())]
    } else {
        let mut engines = Vec::new();
        for dir in &args.policies {
            match load_dir(dir) {
                Ok(engine) => engines.push((dir.display().to_string(), Arc::new(engine))),
                Err(error) => {
                    eprintln!("error: {error}");
                    return exit::USAGE;
                }
            }
        }
        engines
    };

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts");
    let mut all: Vec<Vec<Run>> = Vec::new();
    for &scenario in &scenarios {
        let mut runs = Vec::new();
        for (label, engine) in &engines {
            let started = std::time::Instant::now();
            let result = runtime.block_on(run_once(&population, scenario, engine.clone(), label, args.seed));
            match result {
                Ok(run) => {
                    let seconds = started.elapsed().as_secs_f64();
                    eprintln!(
                        "simulated {:?} under {label}: {} accounts, {} cases in {seconds:.1} s ({:.0} cases/s)",
                        population.scenarios[scenario].name,
                        population.accounts,
                        run.outcomes.len(),
                        run.outcomes.len() as f64 / seconds.max(0.001)
                    );
                    runs.push(run);
                }
                Err(error) => {
                    eprintln!("error: the simulation could not run: {error:#}");
                    return exit::UNAVAILABLE;
                }
            }
        }
        all.push(runs);
    }

    let takeovers: Vec<(&Run, u32)> = all
        .iter()
        .flatten()
        .filter(|run| run.attackers.takeovers > 0)
        .map(|run| (run, run.attackers.takeovers))
        .collect();
    if args.json {
        let runs: Vec<&Run> = all.iter().flatten().collect();
        let total: u32 = takeovers.iter().map(|(_, count)| count).sum();
        let value = serde_json::json!({ "runs": runs, "takeovers": total });
        println!("{}", serde_json::to_string_pretty(&value).expect("plain data serializes"));
    } else {
        for runs in &all {
            let first = &runs[0];
            println!(
                "== {} · scenario {:?} (first requests over {} day(s)) · seed {} ==",
                first.population, first.scenario, first.spread_days, first.seed
            );
            print!("{}", report::table(runs));
            if runs.len() > 1 {
                for line in report::differences(runs, DIFFERENCES_SHOWN) {
                    println!("{line}");
                }
            }
            println!();
        }
    }
    for (run, count) in &takeovers {
        eprintln!(
            "TAKEOVERS: {count} attack(s) succeeded under {} in scenario {:?}: this policy lets attackers in",
            run.policies, run.scenario
        );
    }
    if takeovers.is_empty() { exit::OK } else { exit::FAILED }
}

/// One run in a fresh store, removed afterwards: in memory-backed storage where the system has it (`/dev/shm`), as
/// nothing of it is kept.
async fn run_once(
    population: &Population,
    scenario: usize,
    engine: Arc<Engine>,
    label: &str,
    seed: u64,
) -> anyhow::Result<Run> {
    let shared_memory = Path::new("/dev/shm");
    let builder = {
        let mut builder = tempfile::Builder::new();
        builder.prefix("airlock-simulate-");
        builder
    };
    let dir = if shared_memory.is_dir() { builder.tempdir_in(shared_memory) } else { builder.tempdir() }?;
    crate::simulate::run(population, scenario, engine, label, seed, dir.path()).await
}
