//! `airlock review`: the reviewers' queue (SPEC principle 6). `list` shows the cases waiting for people, oldest
//! first, with the account's risk and how long each has waited; `show` the evidence packet of one case; `approve` and
//! `deny` record a named reviewer's decision. An approval names the hash of the action the reviewer was shown, so a
//! changed or different action refuses it; it counts for a day; a high-value account needs two distinct reviewers;
//! nobody approves a case they requested. A reviewer cannot change the destination or shorten the cooling-off: the
//! decision carries no such field. On the embedded store the decision goes to the service directly; with `--nats` it
//! is published on the reviewer's own intake subject, as a review tool would, and the answer is awaited.

use crate::cli::exit;
use crate::cli::store::{Store, now, print_table, projection, rfc3339, span};
use crate::core::actor::{Actor, Role};
use crate::core::ids::CaseId;
use crate::core::text::{UntrustedText, check_identifier, for_terminal};
use crate::intake::{CommandType, handle_json};
use crate::projection::evidence::EvidencePacket;
use crate::server::embedded;
use crate::service::new_id;
use serde::Serialize;
use serde_json::{Value, json};
use std::time::Duration;

/// How long `--nats` waits for airlock's answer to a decision before reporting it unavailable.
const ANSWER_WAIT_MS: u64 = 30_000;

#[derive(Debug, clap::Args)]
pub struct ReviewArgs {
    #[command(subcommand)]
    pub command: ReviewCommand,
}

#[derive(Debug, clap::Args)]
pub struct Decider {
    /// The reviewer deciding (recorded as reviewer:ID; 1 to 64 of A-Z a-z 0-9 - _).
    #[arg(long, env = "AIRLOCK_REVIEWER")]
    pub reviewer: String,
    /// Why, in the reviewer's words (at most 1024 bytes; recorded on the case and in the receipt).
    #[arg(long)]
    pub reason: String,
    /// Send the decision to `airlock serve` over NATS instead of the embedded store.
    #[arg(long, env = "AIRLOCK_NATS_URL")]
    pub nats: Option<String>,
    /// The nkey seed file to connect to NATS with, as `airlock nats-config` wrote it (the reviewer's own,
    /// seeds/reviewer.ID.nk).
    #[arg(long, env = "AIRLOCK_NATS_NKEY", value_name = "FILE")]
    pub nats_nkey: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub store: Store,
    /// Print airlock's answer as JSON (fields: accepted, command_id, case_id, status, message, error{code, reason}).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum ReviewCommand {
    /// The cases waiting for reviewers, oldest first, with the account's risk and the time waited.
    #[command(
        after_help = "Examples:\n  airlock review list\n  airlock review list --json --data-dir /var/lib/airlock"
    )]
    List {
        #[command(flatten)]
        store: Store,
        /// Print a JSON array (fields: case_id, account_id, high_value, reason, entered_at, waiting_ms,
        /// approvals, reviewers_required, action).
        #[arg(long)]
        json: bool,
    },
    /// The evidence packet of one case: what was asked, what would change, the verification signals, the rules that
    /// blocked automation, the requester's summary (untrusted), the action and its hash, and the rollback path.
    #[command(after_help = "Examples:\n  airlock review show case-3f9a0c1d2e4b5a69\n  \
airlock review show case-3f9a0c1d2e4b5a69 --json")]
    Show {
        case_id: String,
        #[command(flatten)]
        store: Store,
        /// Print the packet as JSON (the field names of `EvidencePacket`).
        #[arg(long)]
        json: bool,
    },
    /// Approve the exact action whose hash `review show` printed.
    #[command(after_help = "Examples:\n  airlock review approve case-3f9a0c1d2e4b5a69 --action-hash 9b1e... \
--reviewer ana --reason \"called the owner back on the number on file\"\n  \
AIRLOCK_REVIEWER=ana airlock review approve case-3f9a0c1d2e4b5a69 --action-hash 9b1e... --reason ok \
--nats nats://127.0.0.1:4222")]
    Approve {
        case_id: String,
        /// The action hash from `airlock review show`: an approval of any other action is refused.
        #[arg(long)]
        action_hash: String,
        #[command(flatten)]
        decider: Decider,
    },
    /// Deny the case: it ends, and nothing changes on the account.
    #[command(after_help = "Examples:\n  airlock review deny case-3f9a0c1d2e4b5a69 --reviewer ana \
--reason \"the requester could not name the old address\"")]
    Deny {
        case_id: String,
        #[command(flatten)]
        decider: Decider,
    },
}

/// One case of the queue as `review list` shows it.
#[derive(Debug, Serialize)]
struct QueueEntry {
    case_id: String,
    account_id: String,
    /// The account is high-value (admin, creator, finance, government, VIP): two reviewers.
    high_value: bool,
    /// Why the case needs people (`NoEligibleFactor`, `PolicyReview`, `ExecutionFailed`, `WeakerProof`).
    reason: String,
    /// When it entered review, RFC 3339 in UTC.
    entered_at: String,
    waiting_ms: u64,
    approvals: u32,
    reviewers_required: u32,
    action: String,
}

pub fn run(args: ReviewArgs) -> u8 {
    match args.command {
        ReviewCommand::List { store, json } => list(&store, json),
        ReviewCommand::Show { case_id, store, json } => show(&store, &case_id, json),
        ReviewCommand::Approve { case_id, action_hash, decider } => {
            decide(&decider, &case_id, json!({ "decision": "approve", "action_hash": action_hash }))
        }
        ReviewCommand::Deny { case_id, decider } => decide(&decider, &case_id, json!({ "decision": "deny" })),
    }
}

fn list(store: &Store, json: bool) -> u8 {
    let projection = match projection(&store.data_dir) {
        Ok(projection) => projection,
        Err(code) => return code,
    };
    let now = now();
    let entries: Result<Vec<QueueEntry>, _> = projection.review_queue().and_then(|rows| {
        rows.into_iter()
            .map(|row| {
                let case = projection.case(&CaseId::new(&row.case_id))?;
                Ok(QueueEntry {
                    high_value: case.as_ref().is_some_and(|case| case.high_value),
                    action: case.map(|case| case.action).unwrap_or_default(),
                    case_id: row.case_id,
                    account_id: row.account_id,
                    reason: row.reason,
                    entered_at: rfc3339(row.entered_at),
                    waiting_ms: now.0.saturating_sub(row.entered_at.0),
                    approvals: row.approvals,
                    reviewers_required: row.reviewers_required,
                })
            })
            .collect()
    });
    let entries = match entries {
        Ok(entries) => entries,
        Err(error) => {
            eprintln!("error: {error}");
            return exit::UNAVAILABLE;
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&entries).expect("plain data serializes"));
        return exit::OK;
    }
    if entries.is_empty() {
        println!("no case is waiting for review");
        return exit::OK;
    }
    let mut table = vec![["CASE", "ACCOUNT", "RISK", "WAITING", "APPROVALS", "REASON", "ACTION"].map(String::from)];
    for entry in &entries {
        table.push([
            entry.case_id.clone(),
            entry.account_id.clone(),
            if entry.high_value { "high-value" } else { "standard" }.to_string(),
            span(entry.waiting_ms),
            format!("{} of {}", entry.approvals, entry.reviewers_required),
            entry.reason.clone(),
            for_terminal(&entry.action),
        ]);
    }
    print_table(&table);
    exit::OK
}

fn show(store: &Store, case_id: &str, json: bool) -> u8 {
    let projection = match projection(&store.data_dir) {
        Ok(projection) => projection,
        Err(code) => return code,
    };
    let packet = match projection.evidence(&CaseId::new(case_id)) {
        Ok(Some(packet)) => packet,
        Ok(None) => {
            eprintln!("no case {case_id} in the projection");
            return exit::FAILED;
        }
        Err(error) => {
            eprintln!("error: {error}");
            return exit::UNAVAILABLE;
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&packet).expect("plain data serializes"));
    } else {
        print_packet(&packet);
    }
    exit::OK
}

fn print_packet(packet: &EvidencePacket) {
    let list = |items: &[String]| -> String {
        match items {
            [] => "  (none)".to_string(),
            _ => items.iter().map(|item| format!("  - {item}")).collect::<Vec<_>>().join("\n"),
        }
    };
    println!("case {} on account {}, requested by {}", packet.case_id, packet.account_id, packet.requested_by);
    // Everything but the summary (escaped already) may hold outside text too: an address, the channel's signals.
    let shown: Vec<String> = packet.would_change.iter().map(|item| for_terminal(item)).collect();
    println!("\nwhat was asked:\n  {}", for_terminal(&packet.asked));
    println!("\nwhat would change (old -> new):\n{}", list(&shown));
    println!("\nverification:\n{}", list(&packet.verification));
    println!("\nwhat kept it from automation (policy {}):\n{}", packet.policy_version, list(&packet.blocking_rules));
    println!(
        "\nthe requester's summary (UNTRUSTED: data, not instructions):\n  {}",
        packet.requester_summary_untrusted
    );
    // The signals are JSON, whose escapes are unambiguous already; what JSON leaves raw (bidi and other format
    // characters, 8-bit controls) is escaped on top, without escaping JSON's own backslashes a second time.
    let signals: String = packet
        .signals
        .to_string()
        .chars()
        .map(|character| if character == '\\' { character.to_string() } else { for_terminal(&character.to_string()) })
        .collect();
    println!("\nsignals: {signals}");
    println!("\naction to approve: {}", for_terminal(&packet.action_to_approve));
    println!("action hash:       {}", packet.action_hash);
    println!("reviewers needed:  {}", packet.reviewers_required);
    println!("\nrollback: {}", packet.rollback_path);
    println!(
        "\nto approve: airlock review approve {} --action-hash {} --reviewer YOU --reason TEXT",
        packet.case_id, packet.action_hash
    );
}

fn decide(decider: &Decider, case_id: &str, decision: Value) -> u8 {
    if let Err(rejection) = check_identifier("reviewer", &decider.reviewer) {
        eprintln!("error: {rejection}");
        return exit::USAGE;
    }
    if let Err(rejection) = UntrustedText::new("reason", &decider.reason, crate::core::limits::REASON_BYTES_MAX) {
        eprintln!("error: {rejection}");
        return exit::USAGE;
    }
    let mut body = json!({
        "version": 1,
        "command_id": new_id("review"),
        "case_id": case_id,
        "reason": decider.reason,
    });
    for (key, value) in decision.as_object().expect("a decision is an object") {
        body[key] = value.clone();
    }
    let bytes = body.to_string().into_bytes();
    let actor = Actor::new(Role::Reviewer, decider.reviewer.as_str());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts");
    let answer = match &decider.nats {
        None => match embedded::open_data_dir(&decider.store.data_dir) {
            Ok(embedded) => {
                let reply =
                    runtime.block_on(handle_json(&embedded.service, &actor, CommandType::ReviewDecision, &bytes));
                Ok(serde_json::to_value(reply).expect("a reply serializes"))
            }
            Err(error) => Err(format!("{error:#}")),
        },
        Some(url) => runtime.block_on(over_nats(url, decider.nats_nkey.as_deref(), &actor, bytes)),
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            eprintln!("error: {error}");
            return exit::UNAVAILABLE;
        }
    };
    if decider.json {
        println!("{}", serde_json::to_string_pretty(&answer).expect("a value serializes"));
    }
    let code = answer["error"]["code"].as_str();
    match (answer["accepted"].as_bool(), code) {
        (Some(true), _) => {
            if !decider.json {
                let status = answer["status"].as_str().unwrap_or("unknown");
                println!("recorded: case {case_id} is {status}");
            }
            exit::OK
        }
        (_, Some("unavailable")) => {
            if !decider.json {
                eprintln!("unavailable: {}", answer["error"]["reason"].as_str().unwrap_or_default());
            }
            exit::UNAVAILABLE
        }
        (_, _) => {
            if !decider.json {
                let reason = answer["error"]["reason"].as_str().or(answer["message"].as_str()).unwrap_or_default();
                eprintln!("refused: {reason}");
            }
            exit::FAILED
        }
    }
}

/// Publishes the decision on the reviewer's intake subject and waits for airlock's answer to it.
async fn over_nats(
    url: &str,
    seed_file: Option<&std::path::Path>,
    actor: &Actor,
    bytes: Vec<u8>,
) -> Result<Value, String> {
    let client =
        crate::nats::connect_seeded(url, "airlock-review", seed_file).await.map_err(|error| error.to_string())?;
    crate::intake::nats::send_command(
        &client,
        actor,
        CommandType::ReviewDecision,
        bytes,
        Duration::from_millis(ANSWER_WAIT_MS),
    )
    .await
}
