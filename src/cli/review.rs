//! `airlock review`: the reviewers' queue (SPEC principle 6). `list` shows the cases waiting for people, oldest
//! first, with the account's risk and how long each has waited; `show` the evidence packet of one case; `approve` and
//! `deny` record a named reviewer's decision. An approval names the hash of the action the reviewer was shown, so a
//! changed or different action refuses it; it counts for a day; a high-value account needs two distinct reviewers;
//! nobody approves a case they requested. A reviewer cannot change the destination or shorten the cooling-off: the
//! decision carries no such field. On the embedded store the decision goes to the service directly; with `--nats` it
//! is published on the reviewer's own intake subject, as a review tool would, and the answer is awaited.

use crate::cli::exit;
use crate::cli::store::{Reader, Store, exit_code_of, failed, now, print_table, span};
use crate::cli::target::{Target, TargetArgs};
use crate::core::actor::Role;
use crate::core::ids::CaseId;
use crate::core::text::{UntrustedText, for_terminal};
use crate::intake::CommandType;
use crate::projection::evidence::EvidencePacket;
use crate::projection::views::{self, QueueEntry};
use crate::service::new_id;
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct ReviewArgs {
    #[command(subcommand)]
    pub command: ReviewCommand,
}

#[derive(Debug, clap::Args)]
pub struct Decider {
    /// The reviewer deciding (recorded as reviewer:ID; 1 to 64 of A-Z a-z 0-9 - _). Required on the embedded store;
    /// over NATS your key says who you are, and this, if given, must agree with it.
    #[arg(long, env = "AIRLOCK_REVIEWER")]
    pub reviewer: Option<String>,
    /// Why, in the reviewer's words (at most 1024 bytes; recorded on the case and in the receipt).
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub target: TargetArgs,
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
        /// Print one JSON object (fields: items[case_id, account_id, high_value, reason, entered_at, waiting_ms,
        /// approvals, reviewers_required, action], more).
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
    let reader = match store.reader(json) {
        Ok(reader) => reader,
        Err(code) => return code,
    };
    let entries: Result<(Vec<QueueEntry>, bool), String> = match &reader {
        Reader::Local(projection) => views::review_queue(projection, now()).map_err(|error| error.to_string()),
        Reader::Nats { .. } => reader.ask(json!({ "query": "review_queue" })).and_then(|answer| {
            let more = answer["more"].as_bool().unwrap_or(false);
            let items = serde_json::from_value(answer["items"].clone()).map_err(|error| error.to_string())?;
            Ok((items, more))
        }),
    };
    let (entries, more) = match entries {
        Ok(found) => found,
        Err(error) => return failed(json, "unavailable", &error, exit_code_of(&error)),
    };
    if json {
        let answer = json!({ "items": entries, "more": more });
        println!("{}", serde_json::to_string_pretty(&answer).expect("plain data serializes"));
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
    if more {
        println!("more cases wait: these are the oldest {}", views::REVIEW_QUEUE_PAGE_MAX);
    }
    exit::OK
}

fn show(store: &Store, case_id: &str, json: bool) -> u8 {
    let reader = match store.reader(json) {
        Ok(reader) => reader,
        Err(code) => return code,
    };
    let found: Result<Option<EvidencePacket>, String> = match &reader {
        Reader::Local(projection) => projection
            .evidence(&CaseId::new(case_id))
            .map(|packet| packet.map(|packet| with_account_facts(packet, &store.data_dir)))
            .map_err(|error| error.to_string()),
        Reader::Nats { .. } => reader.ask_for(json!({ "query": "evidence", "case_id": case_id }), "evidence"),
    };
    let packet = match found {
        Ok(Some(packet)) => packet,
        Ok(None) => return failed(json, "not_found", &format!("no case {case_id} in the projection"), exit::FAILED),
        Err(error) => return failed(json, "unavailable", &error, exit_code_of(&error)),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&packet).expect("plain data serializes"));
    } else {
        print_packet(&packet);
    }
    exit::OK
}

/// The packet with the account's facts from the case's events, where the data directory holds the log (an embedded
/// store); a NATS deployment's directory holds only the projection, and the packet says so by leaving them out.
fn with_account_facts(mut packet: EvidencePacket, data_dir: &std::path::Path) -> EvidencePacket {
    let path = data_dir.join("log.db");
    if !path.is_file() {
        return packet;
    }
    let Ok(log) = crate::log::sqlite::SqliteLog::open(&path) else { return packet };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts");
    let state = runtime.block_on(crate::log::case_state(&log, &CaseId::new(&packet.case_id)));
    packet.account = state.ok().as_ref().and_then(|state| crate::projection::evidence::account_evidence(state, now()));
    packet
}

/// The account's facts and other cases, as recorded by airlock (nothing here was written by the requester).
fn print_account(packet: &EvidencePacket) {
    let Some(account) = &packet.account else {
        println!("\nthe account: not in this data directory (a NATS deployment's: ask with --nats and your key)");
        return;
    };
    println!("\nthe account when the request came in (recorded by airlock):");
    for destination in &account.destinations {
        let state = match (destination.revoked, destination.eligible) {
            (true, _) => "revoked",
            (false, true) => "eligible for a code",
            (false, false) => "not eligible for a code (too new, or the address named)",
        };
        println!(
            "  - {} {}, {} days old, {state}",
            destination.kind,
            for_terminal(&destination.masked),
            destination.age_days
        );
    }
    let or_none = |value: &Option<String>| value.clone().unwrap_or_else(|| "none".to_string());
    match account.authenticator_unknown {
        true => println!("  authenticator app: the directory cannot tell (a factor change needs a sign-in or people)"),
        false => println!("  authenticator app: {}", or_none(&account.totp_enrolled_at)),
    }
    println!("  last credential change: {}", or_none(&account.credential_changed_at));
    let flags = if account.risk_flags.is_empty() { "none".to_string() } else { account.risk_flags.join(", ") };
    println!("  risk flags: {}", for_terminal(&flags));
    let velocity = &account.velocity;
    println!(
        "  requests in the day before: account {}, source network {}, requester {}, named address {}, its domain {}",
        velocity.account_requests_24h,
        velocity.source_network_requests_24h,
        velocity.requester_requests_24h,
        velocity.destination_requests_24h,
        velocity.destination_domain_requests_24h
    );
    let proven = if account.proven.is_empty() { "nothing".to_string() } else { account.proven.join(", ") };
    println!("  proven by the owner so far: {}", for_terminal(&proven));
    println!(
        "  approvals: {} of {}{}",
        account.approved_by.len(),
        account.approvals_required,
        if account.may_not_approve.is_empty() {
            String::new()
        } else {
            format!(" (may not approve: {})", account.may_not_approve.join(", "))
        }
    );
    if !account.deliverable {
        println!(
            "  WARNING: no destination that existed before the request is left: nobody could be told of the change, \
             and a password reset cannot be approved (it would reach nobody)"
        );
    }
    println!("\nthe account's other cases (30 days):");
    if packet.other_cases.is_empty() {
        println!("  (none)");
    }
    for case in &packet.other_cases {
        println!("  - {} {} {} by {} at {}", case.case_id, case.status, case.action, case.requester, case.requested_at);
    }
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
    print_account(packet);
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
    if decider.target.nats.is_none() && decider.reviewer.is_none() {
        eprintln!("error: --reviewer is required on the embedded store (over NATS, your key names you)");
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
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts");
    runtime.block_on(async {
        let target =
            match Target::open(&decider.target, Role::Reviewer, decider.reviewer.as_deref(), "airlock-review").await {
                Ok(target) => target,
                Err(refusal) => {
                    eprintln!("error: {}", refusal.message);
                    return refusal.code;
                }
            };
        let answer = match target.command(CommandType::ReviewDecision, &body, decider.json).await {
            Ok(answer) => answer,
            Err(code) => return code,
        };
        if !decider.json {
            println!("recorded: case {case_id} is {}", answer["status"].as_str().unwrap_or("unknown"));
        }
        exit::OK
    })
}
