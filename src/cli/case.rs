//! `airlock case show` and `airlock case list` read the projection (`crate::cli::case_view`).
//!
//! `airlock case history CASE`: every event of one case, read from the event log (the record, not the projection),
//! in order, with its actor, its time and the state after it. Each policy decision is shown with the facts and the
//! policy version it was taken on, and is taken again on those recorded facts by the loaded policies: the answer must
//! be the same (THREATS 15). Exits 1 if a decision taken again differs, or if the case is not in the log.

use crate::cli::case_view::{self, ListFilter};
use crate::cli::exit;
use crate::cli::store::Store;
use crate::core::ids::{CaseId, UnixMs};
use crate::core::policy::PolicyDecision;
use crate::core::state::{evolve, initial_state};
use crate::log::EventLog;
use crate::log::envelope::{Decoded, Stream, decode};
use crate::log::jetstream::{JetStreamConfig, JetStreamLog};
use crate::log::sqlite::SqliteLog;
use crate::policy::retake::{self, Engines};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct CaseArgs {
    #[command(subcommand)]
    pub command: CaseCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CaseCommand {
    /// One case now: its state, the timers that will move it, the steps each role may take next, and its receipts.
    #[command(after_help = "Examples:\n  airlock case show case-3f9a0c1d2e4b5a69\n  \
airlock case show case-3f9a0c1d2e4b5a69 --data-dir /var/lib/airlock --json")]
    Show {
        /// The case id, as the requester's reply gave it.
        case_id: String,
        #[command(flatten)]
        store: Store,
        /// Print one JSON object (fields: case_id, account_id, status, terminal, action, action_hash, requester,
        /// high_value, requested_at, updated_at, events, approvers, timers[kind, at, in_ms, held_by_kill_switch],
        /// next_steps[role, command, how], notices_owed_since, receipts).
        #[arg(long)]
        json: bool,
    },
    /// Cases, newest first, filtered by state, account, age and action.
    #[command(after_help = "Examples:\n  airlock case list --state in_review\n  \
airlock case list --account alice --since 3d\n  \
airlock case list --action add_destination --since \"2026-06-01 12:00:00\" --json")]
    List {
        #[command(flatten)]
        filter: ListFilter,
        #[command(flatten)]
        store: Store,
        /// Print one JSON object (fields: items[case_id, account_id, status, action, requester, requested_at,
        /// updated_at], more).
        #[arg(long)]
        json: bool,
    },
    /// Every event of a case from the log, with the state after each, and each policy decision taken again.
    #[command(after_help = "Examples:\n  airlock case history case-3f9a0c1d2e4b5a69 --data-dir ./airlock-data\n  \
airlock case history case-3f9a0c1d2e4b5a69 --nats nats://127.0.0.1:4222 --json\n  \
airlock case history case-3f9a0c1d2e4b5a69 --policies ./policies-2026-06")]
    History {
        /// The case id, as the requester's reply gave it.
        case_id: String,
        /// The data directory (log.db lives here in embedded mode).
        #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
        data_dir: PathBuf,
        /// Read the log from NATS JetStream instead of the embedded log.db.
        #[arg(long, env = "AIRLOCK_NATS_URL")]
        nats: Option<String>,
        /// The nkey seed file to connect to NATS with, as `airlock nats-config` wrote it (airlock's own,
        /// seeds/airlock.nk).
        #[arg(long, env = "AIRLOCK_NATS_NKEY", value_name = "FILE")]
        nats_nkey: Option<PathBuf>,
        /// Also load the policies in this folder, to take again decisions recorded under their version (the shipped
        /// policies are always loaded). Repeatable.
        #[arg(long)]
        policies: Vec<PathBuf>,
        /// Print one JSON object (fields: case_id, events[sequence, at, actor, event, status_after, decision],
        /// decisions_differing).
        #[arg(long)]
        json: bool,
    },
}

/// One event as the history shows it.
#[derive(Debug, Serialize)]
struct HistoryEvent {
    /// The event's place in the case (1, 2, ...).
    sequence: u64,
    /// When it happened, RFC 3339 in UTC.
    at: String,
    actor: String,
    event: &'static str,
    status_after: &'static str,
    /// The policy decision the event records, if it records one.
    decision: Option<DecisionShown>,
}

/// What taking a recorded decision again on its facts gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Retaken {
    Same,
    Differs,
    /// Recorded under a policy version that is not loaded.
    #[serde(rename = "not_retaken")]
    PolicyNotLoaded,
}

/// A recorded policy decision, and what taking it again on its recorded facts gave.
#[derive(Debug, Serialize)]
struct DecisionShown {
    #[serde(flatten)]
    recorded: PolicyDecision,
    /// `same`, `differs`, or `not_retaken` (recorded under a policy version that is not loaded).
    retaken: Retaken,
    /// The decision taken again, when it differs.
    retaken_decision: Option<PolicyDecision>,
}

#[derive(Debug, Serialize)]
struct History {
    case_id: String,
    events: Vec<HistoryEvent>,
    decisions_differing: usize,
}

fn rfc3339(at: UnixMs) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(at.0)).to_string()
}

async fn history<L: EventLog>(log: &L, case_id: &CaseId, engines: &Engines) -> anyhow::Result<History> {
    let entries = log.read_stream(&Stream::Case(case_id.clone())).await?;
    let mut state = initial_state();
    let mut events = Vec::new();
    for envelope in entries.iter().flat_map(|entry| entry.envelopes.iter()) {
        let Decoded::Case { event, stream_version, .. } = decode(envelope)? else {
            anyhow::bail!("the stream of case {case_id} holds an event of another stream");
        };
        state = evolve(state, &event);
        let decision = event.body.recorded_decision().map(|recorded| {
            let (retaken, retaken_decision) = match engines.retake(recorded) {
                retake::Retaken::Same => (Retaken::Same, None),
                retake::Retaken::Differs(again) => (Retaken::Differs, Some(again)),
                retake::Retaken::NotLoaded => (Retaken::PolicyNotLoaded, None),
            };
            DecisionShown { recorded: recorded.clone(), retaken, retaken_decision }
        });
        events.push(HistoryEvent {
            sequence: stream_version,
            at: rfc3339(event.at),
            actor: event.actor.to_string(),
            event: event.body.kind().name(),
            status_after: state.status.name(),
            decision,
        });
    }
    let decisions_differing = events
        .iter()
        .filter(|event| event.decision.as_ref().is_some_and(|shown| shown.retaken == Retaken::Differs))
        .count();
    Ok(History { case_id: case_id.to_string(), events, decisions_differing })
}

fn print_table(history: &History, engines: &Engines) {
    println!("case {}: {} events (read from the event log)", history.case_id, history.events.len());
    println!("{:>3}  {:<24}  {:<28}  {:<20}  status after", "#", "at", "actor", "event");
    for event in &history.events {
        println!(
            "{:>3}  {:<24}  {:<28}  {:<20}  {}",
            event.sequence, event.at, event.actor, event.event, event.status_after
        );
        let Some(shown) = &event.decision else { continue };
        let recorded = &shown.recorded;
        println!(
            "     decision: {:?}, cooling-off {}, {} reviewer(s), policy version {}, rules {:?}",
            recorded.outcome,
            humantime::format_duration(std::time::Duration::from_millis(recorded.cooling_off_ms)),
            recorded.reviewers_required,
            recorded.policy_version,
            recorded.rules
        );
        println!("     facts: {}", serde_json::to_string(&recorded.facts).expect("facts serialize"));
        match shown.retaken {
            Retaken::Same => println!("     taken again on these facts: the same decision"),
            Retaken::Differs => println!(
                "     TAKEN AGAIN ON THESE FACTS, THE DECISION DIFFERS: {}",
                serde_json::to_string(&shown.retaken_decision).expect("a decision serializes")
            ),
            Retaken::PolicyNotLoaded => println!(
                "     not taken again: recorded under policy version {}, and the loaded policies are {} (use \
                 --policies with the folder of that version)",
                recorded.policy_version,
                engines.versions().join(", ")
            ),
        }
    }
}

pub fn run(args: CaseArgs) -> u8 {
    match args.command {
        CaseCommand::Show { case_id, store, json } => case_view::show(&store, &case_id, json),
        CaseCommand::List { filter, store, json } => case_view::list(&store, &filter, json),
        CaseCommand::History { case_id, data_dir, nats, nats_nkey, policies, json } => {
            run_history(case_id, data_dir, nats, nats_nkey, policies, json)
        }
    }
}

fn run_history(
    case_id: String,
    data_dir: PathBuf,
    nats: Option<String>,
    nats_nkey: Option<PathBuf>,
    policies: Vec<PathBuf>,
    json: bool,
) -> u8 {
    let engines = match crate::cli::policy::load_engines(&policies) {
        Ok(engines) => engines,
        Err(error) => {
            eprintln!("error: {error}");
            return exit::FAILED;
        }
    };
    let case_id = CaseId::new(case_id);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime starts");
    let history = runtime.block_on(async {
        match nats {
            Some(url) => {
                let client = crate::nats::connect_seeded(&url, "airlock-case", nats_nkey.as_deref()).await?;
                let log = JetStreamLog::open_existing(client, &JetStreamConfig::default().stream_name).await?;
                history(&log, &case_id, &engines).await
            }
            None => {
                let path = data_dir.join("log.db");
                if !path.exists() {
                    anyhow::bail!("{} does not exist", path.display());
                }
                history(&SqliteLog::open(&path)?, &case_id, &engines).await
            }
        }
    });
    let history = match history {
        Ok(history) => history,
        Err(error) => {
            eprintln!("error: {error:#}");
            return exit::UNAVAILABLE;
        }
    };
    if history.events.is_empty() {
        eprintln!("error: no case {case_id} in the event log");
        return exit::FAILED;
    }
    if json {
        println!("{}", serde_json::to_string(&history).expect("a history serializes"));
    } else {
        print_table(&history, &engines);
    }
    if history.decisions_differing > 0 {
        eprintln!("error: {} recorded decision(s) differ when taken again on their facts", history.decisions_differing);
        return exit::FAILED;
    }
    exit::OK
}
