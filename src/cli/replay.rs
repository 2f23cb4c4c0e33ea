//! `airlock replay`: the projection is derived, so it can always be rebuilt from the log. Three uses:
//! - without options, rebuild from the whole log into a fresh file beside the live one, with a progress bar (events/s,
//!   ETA), and swap it in, keeping the old file as `projection.db.previous`. It refuses while another airlock process
//!   has the projection open (`airlock serve`, say): swapping a file a process writes to would lose its writes.
//! - `--verify`: rebuild up to the point the live projection has applied, take every recorded decision again on its
//!   recorded facts under its recorded policy version, and compare the rebuild with the live projection row by row
//!   (and the receipt chain; `crate::projection::verify`). Nothing is swapped; any difference exits 1. Over NATS with
//!   an operator's own key, the live service runs it with the policies it has loaded and answers.
//! - `--as-of TIME`: rebuild what airlock knew at that moment (the log up to the first commit recorded after it) and
//!   summarise it; `--into DIR` keeps it as `DIR/projection.db` for `airlock case list/show --data-dir DIR`.
//!
//! Events of older versions are read through the upcasters of `crate::log::envelope`, like everywhere else.

use crate::cli::exit;
use crate::cli::store::{LogSource, OpenLog, failed, now, parse_moment, rfc3339};
use crate::core::ids::UnixMs;
use crate::log::EventLog;
use crate::projection::query::CaseFilter;
use crate::projection::replay::{Progress, Until, rebuild_with, swap_in};
use crate::projection::verify::{Rebuilt, VerifyReport};
use crate::projection::{Projection, lock_path};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Cases `--as-of` lists (the counts by state cover them all).
const AS_OF_CASES_SHOWN_MAX: usize = 50;

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("mode").args(["verify", "as_of"]))]
pub struct ReplayArgs {
    /// The data directory holding projection.db (and log.db in embedded mode).
    #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub log: LogSource,
    /// Check, swap nothing: take every recorded decision again and compare a rebuild with the live projection.
    /// Exit 1 on any difference, or on a decision whose policy version is not loaded (see --policies).
    #[arg(long)]
    pub verify: bool,
    /// What airlock knew at this moment: a UTC time ("2026-06-01 12:00:00", or RFC 3339) or a span before now
    /// (3d, "12h 30m"). Swaps nothing.
    #[arg(long)]
    pub as_of: Option<String>,
    /// With --as-of: keep that moment's projection as DIR/projection.db (DIR must not hold one).
    #[arg(long, requires = "as_of")]
    pub into: Option<PathBuf>,
    /// With --verify: also load the policies in this folder, for decisions recorded under their version (the shipped
    /// policies are always loaded). Repeatable.
    #[arg(long)]
    pub policies: Vec<PathBuf>,
    /// Print one JSON object instead of text (fields in the README).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct AsOfCase {
    case_id: String,
    account_id: String,
    status: String,
    updated_at: String,
}

#[derive(Debug, Serialize)]
struct AsOfReport {
    as_of: String,
    rebuilt: Rebuilt,
    halted: bool,
    /// Cases by state, at that moment.
    states: BTreeMap<String, u64>,
    review_queue: usize,
    /// The newest cases of that moment (at most 50).
    cases: Vec<AsOfCase>,
    /// Where the projection of that moment was kept (`--into`).
    kept_in: Option<String>,
}

/// A progress bar on stderr, drawn only on a terminal.
pub(crate) fn progress_bar(json: bool) -> ProgressBar {
    let target = if json { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
    let bar = ProgressBar::with_draw_target(None, target);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{wide_bar}] {pos}/{len} commits  {msg}  ETA {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}

pub(crate) fn advance(bar: &ProgressBar, started: std::time::Instant, seen: Progress) {
    bar.set_length(seen.last);
    bar.set_position(seen.sequence);
    let rate = seen.events as f64 / started.elapsed().as_secs_f64().max(1e-3);
    bar.set_message(format!("{} events, {:.0} events/s", seen.events, rate));
}

async fn replace<L: EventLog>(log: &L, data_dir: &Path, json: bool) -> Result<Rebuilt, Failure> {
    let live = data_dir.join("projection.db");
    let Some(_lock) = Projection::lock_exclusive(&live).map_err(Failure::unavailable)? else {
        return Err(Failure::Unavailable(format!(
            "{} is open in another airlock process (airlock serve?); stop it, then replay (the lock is {})",
            live.display(),
            lock_path(&live).display()
        )));
    };
    let rebuilt = data_dir.join("projection.db.replay");
    remove_leftover(&rebuilt).map_err(Failure::unavailable)?;
    let bar = progress_bar(json);
    let started = std::time::Instant::now();
    let stats = rebuild_with(log, &rebuilt, Until::End, |seen| advance(&bar, started, seen), |_, _| {}).await;
    bar.finish_and_clear();
    let stats = match stats {
        Ok(stats) => stats,
        Err(error) => {
            let _ = remove_leftover(&rebuilt);
            return Err(Failure::unavailable(error));
        }
    };
    swap_in(&live, &rebuilt).map_err(|error| Failure::Unavailable(format!("cannot swap the rebuild in: {error}")))?;
    Ok(stats.into())
}

/// A rebuild that stopped half-way (a crash, a full disk) left a file that must be thrown away.
fn remove_leftover(path: &Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(PathBuf::from(name)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            Ok(()) | Err(_) => {}
        }
    }
    Ok(())
}

async fn as_of<L: EventLog>(log: &L, moment: UnixMs, into: Option<&Path>, json: bool) -> Result<AsOfReport, Failure> {
    let scratch = tempfile::Builder::new().prefix("airlock-as-of-").tempdir().map_err(Failure::unavailable)?;
    let directory = into.unwrap_or(scratch.path());
    std::fs::create_dir_all(directory).map_err(Failure::unavailable)?;
    let path = directory.join("projection.db");
    if path.exists() {
        return Err(Failure::Usage(format!(
            "{} exists; --into needs a directory without a projection",
            path.display()
        )));
    }
    let bar = progress_bar(json);
    let started = std::time::Instant::now();
    let stats = rebuild_with(log, &path, Until::Time(moment), |seen| advance(&bar, started, seen), |_, _| {})
        .await
        .map_err(Failure::unavailable);
    bar.finish_and_clear();
    let stats = stats?;
    let projection = Projection::open(&path).map_err(Failure::unavailable)?;
    let failed = Failure::unavailable;
    let (rows, _) =
        projection.cases(&CaseFilter { limit: AS_OF_CASES_SHOWN_MAX, ..CaseFilter::default() }).map_err(failed)?;
    Ok(AsOfReport {
        as_of: rfc3339(moment),
        rebuilt: stats.into(),
        halted: projection.halted().map_err(failed)?,
        states: projection.status_counts().map_err(failed)?,
        review_queue: projection.review_queue().map_err(failed)?.len(),
        cases: rows
            .into_iter()
            .map(|row| AsOfCase {
                case_id: row.case_id,
                account_id: row.account_id,
                status: row.status.name().to_string(),
                updated_at: rfc3339(row.updated_at),
            })
            .collect(),
        kept_in: into.map(|directory| directory.display().to_string()),
    })
}

/// Why a replay did not run, and the exit code it gets.
enum Failure {
    Usage(String),
    Unavailable(String),
}

impl Failure {
    fn unavailable(error: impl std::fmt::Display) -> Failure {
        Failure::Unavailable(error.to_string())
    }
}

/// The report of the mode that ran.
enum Report {
    Replaced(Rebuilt),
    AsOf(AsOfReport),
}

async fn run_on<L: EventLog>(log: &L, args: &ReplayArgs, moment: Option<UnixMs>) -> Result<Report, Failure> {
    match moment {
        Some(moment) => Ok(Report::AsOf(as_of(log, moment, args.into.as_deref(), args.json).await?)),
        None => Ok(Report::Replaced(replace(log, &args.data_dir, args.json).await?)),
    }
}

pub fn run(args: ReplayArgs) -> u8 {
    let moment = match args.as_of.as_deref().map(|text| parse_moment(text, now())).transpose() {
        Ok(moment) => moment,
        Err(error) => return failed(args.json, "invalid_value", &format!("--as-of: {error}"), exit::USAGE),
    };
    let engines = match crate::cli::policy::load_engines(&args.policies) {
        Ok(engines) => engines,
        Err(error) => return failed(args.json, "invalid_value", &error, exit::USAGE),
    };
    let asking = match crate::cli::store::asking_actor(args.log.nats.as_deref(), args.log.nats_nkey.as_deref()) {
        Ok(asking) => asking,
        Err(reason) => return failed(args.json, "invalid_value", &reason, exit::USAGE),
    };
    if args.verify {
        if asking.is_some() && !args.policies.is_empty() {
            let reason = "--policies: the live service takes decisions again with the policies it has loaded; to \
                          take them with others, run replay --verify on the server with airlock's own key";
            return failed(args.json, "invalid_value", reason, exit::USAGE);
        }
        let report = match crate::cli::audit::verify(&args.data_dir, &args.log, &engines, args.json) {
            Ok(report) => report,
            Err(code) => return code,
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report).expect("plain data serializes"));
        } else {
            print_verify(&report);
        }
        return if report.clean { exit::OK } else { exit::FAILED };
    }
    if let Some(actor) = asking {
        let reason = format!(
            "{actor}'s key can only `replay --verify` over NATS: rebuilding the projection (and --as-of) reads the \
             log itself, on the server, with airlock's own key (seeds/airlock.nk)"
        );
        return failed(args.json, "role_not_allowed", &reason, exit::USAGE);
    }
    let runtime = crate::cli::runtime();
    let report = runtime.block_on(async {
        match args.log.open(&args.data_dir, "airlock-replay").await.map_err(Failure::Unavailable)? {
            OpenLog::Nats(log) => run_on(log.as_ref(), &args, moment).await,
            OpenLog::Embedded(log) => run_on(&log, &args, moment).await,
        }
    });
    let report = match report {
        Ok(report) => report,
        Err(Failure::Usage(error)) => return failed(args.json, "invalid_value", &error, exit::USAGE),
        Err(Failure::Unavailable(error)) => return failed(args.json, "unavailable", &error, exit::UNAVAILABLE),
    };
    match report {
        Report::Replaced(rebuilt) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rebuilt).expect("plain data serializes"));
            } else {
                println!(
                    "replayed {} commits ({} events, up to log sequence {}) in {:.1}s, {} events/s; swapped in \
                     (the previous projection is kept as projection.db.previous)",
                    rebuilt.commits,
                    rebuilt.events,
                    rebuilt.last_sequence,
                    rebuilt.elapsed_ms as f64 / 1_000.0,
                    rebuilt.events_per_second
                );
            }
            exit::OK
        }
        Report::AsOf(report) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report).expect("plain data serializes"));
            } else {
                print_as_of(&report);
            }
            exit::OK
        }
    }
}

fn print_verify(report: &VerifyReport) {
    let decisions = &report.decisions;
    println!(
        "replayed {} commits ({} events, up to the live projection's log sequence {})",
        report.rebuilt.commits, report.rebuilt.events, report.rebuilt.last_sequence
    );
    println!("decisions taken again on their recorded facts: {} ({} the same)", decisions.retaken, decisions.same);
    for differing in &decisions.differing {
        println!(
            "DECISION DIFFERS: case {} event {} (log sequence {}): recorded {}, taken again {}",
            differing.case_id,
            differing.case_sequence,
            differing.log_sequence,
            serde_json::to_string(&differing.recorded).expect("a decision serializes"),
            serde_json::to_string(&differing.retaken).expect("a decision serializes")
        );
    }
    for (version, count) in &decisions.not_retaken {
        println!(
            "NOT VERIFIED: {count} decision(s) recorded under policy version {version}, which is not loaded (loaded: \
             {}); add --policies with the folder of that version (over NATS with an operator's key, the service \
             takes them with what it has loaded: run replay --verify on the server with airlock's own key and \
             --policies)",
            report.policy_versions.join(", ")
        );
    }
    for difference in &report.projection.differences {
        println!("PROJECTION {:<8} {}: {}", difference.kind, difference.table, difference.key);
    }
    for chain_break in &report.projection.chain_breaks {
        println!("CHAIN BREAK receipts #{}: {}", chain_break.receipt_sequence, chain_break.problem);
    }
    if report.clean {
        println!("replay verified: every decision follows from its facts, and the projection is what the log implies");
    } else {
        println!(
            "replay verification FAILED: {} decision(s) differ, {} not verified, {} projection row(s) differ, {} \
             chain break(s)",
            decisions.differing.len(),
            decisions.not_retaken.values().sum::<u64>(),
            report.projection.differences.len(),
            report.projection.chain_breaks.len()
        );
    }
}

fn print_as_of(report: &AsOfReport) {
    println!(
        "as of {}: {} commits ({} events, up to log sequence {})",
        report.as_of, report.rebuilt.commits, report.rebuilt.events, report.rebuilt.last_sequence
    );
    println!("kill switch: {}", if report.halted { "ON (automation halted)" } else { "off" });
    let states: Vec<String> = report.states.iter().map(|(state, count)| format!("{state} {count}")).collect();
    println!("cases by state: {}", if states.is_empty() { "(none)".to_string() } else { states.join(", ") });
    println!("waiting for review: {}", report.review_queue);
    if !report.cases.is_empty() {
        let mut table = vec![["CASE", "ACCOUNT", "STATE THEN", "LAST CHANGE"].map(String::from)];
        for case in &report.cases {
            table.push([case.case_id.clone(), case.account_id.clone(), case.status.clone(), case.updated_at.clone()]);
        }
        println!();
        crate::cli::store::print_table(&table);
    }
    if let Some(directory) = &report.kept_in {
        println!("\nkept in {directory}: airlock case list --data-dir {directory}");
    }
}
