//! `airlock case show` and `airlock case list` read the projection (`crate::cli::case_view`).
//!
//! `airlock case history CASE`: every event of one case, read from the event log (the record, not the projection),
//! in order, with its actor, its time and the state after it. Each policy decision is shown with the facts and the
//! policy version it was taken on, and is taken again on those recorded facts by the loaded policies: the answer must
//! be the same (THREATS 15). Exits 1 if a decision taken again differs, or if the case is not in the log.

use crate::cli::case_view::{self, ListFilter};
use crate::cli::exit;
use crate::cli::store::{LogSource, OpenLog, Store, exit_code_of, failed};
use crate::core::ids::CaseId;
use crate::core::policy::PolicyDecision;
use crate::policy::retake::{self, Engines};
use crate::projection::history::{HistoryEvent as RecordedEvent, case_history};
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
        /// Where the log is read: the data directory's log.db; with --nats and airlock's own key (seeds/airlock.nk)
        /// JetStream itself; with --nats and your own reviewer or operator key, the live service, as you.
        #[command(flatten)]
        store: Store,
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

/// One event as the history shows it, its decision taken again here.
#[derive(Debug, Serialize)]
struct HistoryEvent {
    sequence: u64,
    /// When it happened, RFC 3339 in UTC.
    at: String,
    actor: String,
    event: String,
    status_after: String,
    /// The policy decision the event records, if it records one.
    decision: Option<DecisionShown>,
    /// The operator-attested baselines the decision's destinations were dated by, if any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    relied_on_baselines: Vec<String>,
    /// The words a person recorded with the event, as typed (untrusted; the table shows them escaped).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
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

/// The recorded events, each decision taken again by `engines` (here, never by the service that answered).
fn retaken(case_id: &CaseId, recorded: Vec<RecordedEvent>, engines: &Engines) -> History {
    let events: Vec<HistoryEvent> = recorded
        .into_iter()
        .map(|event| {
            let decision = event.decision.map(|recorded| {
                let (retaken, retaken_decision) = match engines.retake(&recorded) {
                    retake::Retaken::Same => (Retaken::Same, None),
                    retake::Retaken::Differs(again) => (Retaken::Differs, Some(again)),
                    retake::Retaken::NotLoaded => (Retaken::PolicyNotLoaded, None),
                };
                DecisionShown { recorded, retaken, retaken_decision }
            });
            HistoryEvent {
                sequence: event.sequence,
                at: event.at,
                actor: event.actor,
                event: event.event,
                status_after: event.status_after,
                decision,
                relied_on_baselines: event.relied_on_baselines,
                reason: event.reason,
            }
        })
        .collect();
    let decisions_differing = events
        .iter()
        .filter(|event| event.decision.as_ref().is_some_and(|shown| shown.retaken == Retaken::Differs))
        .count();
    History { case_id: case_id.to_string(), events, decisions_differing }
}

fn print_table(history: &History, engines: &Engines) {
    println!("case {}: {} events (read from the event log)", history.case_id, history.events.len());
    println!("{:>3}  {:<24}  {:<28}  {:<20}  status after", "#", "at", "actor", "event");
    for event in &history.events {
        println!(
            "{:>3}  {:<24}  {:<28}  {:<20}  {}",
            event.sequence, event.at, event.actor, event.event, event.status_after
        );
        if let Some(reason) = &event.reason {
            println!("     reason (as typed, untrusted): {}", crate::core::text::for_terminal(reason));
        }
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
        for baseline in &event.relied_on_baselines {
            println!("     destinations dated by the baseline {baseline}");
        }
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
        CaseCommand::History { case_id, store, policies, json } => run_history(case_id, &store, policies, json),
    }
}

fn run_history(case_id: String, store: &Store, policies: Vec<PathBuf>, json: bool) -> u8 {
    let engines = match crate::cli::policy::load_engines(&policies) {
        Ok(engines) => engines,
        Err(error) => return failed(json, "invalid_value", &error, exit::USAGE),
    };
    let case_id = CaseId::new(case_id);
    let recorded = match read_history(store, &case_id, json) {
        Ok(recorded) => recorded,
        Err(code) => return code,
    };
    if recorded.is_empty() {
        return failed(json, "not_found", &format!("no case {case_id} in the event log"), exit::FAILED);
    }
    let history = retaken(&case_id, recorded, &engines);
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

/// The case's recorded events: asked of the live service with an actor's key, else read from the log itself.
fn read_history(store: &Store, case_id: &CaseId, json: bool) -> Result<Vec<RecordedEvent>, u8> {
    let asking = store.asking_actor().map_err(|reason| failed(json, "invalid_value", &reason, exit::USAGE))?;
    if asking.is_some() {
        let reader = store.reader(json)?;
        return reader
            .ask_for(serde_json::json!({ "query": "history", "case_id": case_id.as_str() }), "events")
            .map_err(|error| failed(json, "unavailable", &error, exit_code_of(&error)));
    }
    let source = LogSource { nats: store.nats.clone(), nats_nkey: store.nats_nkey.clone() };
    let runtime = crate::cli::runtime();
    let read = runtime.block_on(async {
        let history = match source.open(&store.data_dir, "airlock-case").await? {
            OpenLog::Nats(log) => case_history(log.as_ref(), case_id).await,
            OpenLog::Embedded(log) => case_history(&log, case_id).await,
        };
        history.map_err(|error| error.to_string())
    });
    read.map_err(|error| failed(json, "unavailable", &error, exit::UNAVAILABLE))
}
