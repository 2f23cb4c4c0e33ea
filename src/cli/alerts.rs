//! `airlock alerts`: the campaign alerts (issue 20, ADR 25), as an operator, on the live NATS deployment with the
//! operator's own key or on the embedded store: list the active ones (or all), show one with its cases and the bulk
//! rollback that would undo what the campaign got applied, acknowledge one with a reason (`--benign` when it is no
//! campaign, so that matching requests stop going to people).

use crate::cli::exit;
use crate::cli::target::{OperatorArgs, Target};
use crate::core::ids::UnixMs;
use crate::core::text::for_terminal;
use crate::intake::CommandType;
use crate::projection::views::rfc3339;
use crate::service::new_id;
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    pub command: AlertsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AlertsCommand {
    /// The active alerts, newest first (every alert with --all).
    #[command(after_help = "Examples:\n  airlock alerts list\n  airlock alerts list --all --json\n  \
airlock alerts list --nats nats://127.0.0.1:4222 --nats-nkey nats/seeds/operator.ops-1.nk")]
    List {
        /// Also the alerts that are over (no matching request within their window).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        who: OperatorArgs,
        /// Print the answer as JSON (fields: alerts[], more).
        #[arg(long)]
        json: bool,
    },
    /// One alert: what tripped, its cases, and the rollback that would undo what it got applied.
    #[command(after_help = "Examples:\n  airlock alerts show alert-3f9a0c1d2e4b5a6978\n  \
airlock alerts show alert-3f9a0c1d2e4b5a6978 --json")]
    Show {
        alert_id: String,
        #[command(flatten)]
        who: OperatorArgs,
        /// Print the answer as JSON (fields: alert, case_ids[]).
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an alert, with a reason: it stays open to the policy (matching requests go to people) unless
    /// --benign says it is no campaign.
    #[command(
        after_help = "Examples:\n  airlock alerts ack alert-3f9a0c1d2e4b5a6978 --reason \"incident 42 opened\"\n  \
airlock alerts ack alert-3f9a0c1d2e4b5a6978 --benign --reason \"the Lisbon desk's canned wording\""
    )]
    Ack {
        alert_id: String,
        /// What you found; recorded with the acknowledgement.
        #[arg(long)]
        reason: String,
        /// It is no campaign: matching requests stop going to people because of it.
        #[arg(long)]
        benign: bool,
        #[command(flatten)]
        who: OperatorArgs,
        /// Print airlock's answer as JSON (fields: accepted, status, message, error{code, reason}).
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: AlertsArgs) -> u8 {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts");
    runtime.block_on(async {
        match args.command {
            AlertsCommand::List { all, who, json } => {
                let answer = match ask(&who, json!({ "query": "alerts", "all": all })).await {
                    Ok(answer) => answer,
                    Err(code) => return code,
                };
                if json {
                    println!("{}", serde_json::to_string_pretty(&answer).expect("a value serializes"));
                    return exit::OK;
                }
                let alerts = answer["alerts"].as_array().cloned().unwrap_or_default();
                if alerts.is_empty() {
                    println!(
                        "{}",
                        if all { "no alert" } else { "no active alert (`--all` lists those that are over)" }
                    );
                }
                for alert in &alerts {
                    print_summary(alert);
                }
                if answer["more"] == json!(true) {
                    println!("(more alerts than shown: the newest {} are listed)", alerts.len());
                }
                exit::OK
            }
            AlertsCommand::Show { alert_id, who, json } => {
                let answer = match ask(&who, json!({ "query": "alert", "alert_id": alert_id })).await {
                    Ok(answer) => answer,
                    Err(code) => return code,
                };
                if answer["alert"].is_null() {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&answer).expect("a value serializes"));
                    }
                    eprintln!("error: no alert {}", for_terminal(&alert_id));
                    return exit::FAILED;
                }
                if json {
                    println!("{}", serde_json::to_string_pretty(&answer).expect("a value serializes"));
                    return exit::OK;
                }
                print_summary(&answer["alert"]);
                println!("cases, oldest first:");
                for case in answer["case_ids"].as_array().into_iter().flatten() {
                    println!("  {}", for_terminal(case.as_str().unwrap_or_default()));
                }
                if answer["more_cases"] == json!(true) {
                    println!("  (more cases than shown: `airlock case list` finds them by account or time)");
                }
                exit::OK
            }
            AlertsCommand::Ack { alert_id, reason, benign, who, json } => {
                if crate::wire::looks_like_code(&reason) {
                    eprintln!("error: the reason looks like it contains a verification code; it was not recorded");
                    return exit::FAILED;
                }
                let target = match who.open("airlock-alerts").await {
                    Ok(target) => target,
                    Err(code) => return code,
                };
                let body = json!({ "version": 1, "command_id": new_id("ack"), "alert_id": alert_id, "reason": reason,
                                   "benign": benign });
                if let Err(code) = target.command(CommandType::AcknowledgeAlert, &body, json).await {
                    return code;
                }
                if !json {
                    let how = if benign { " as benign: matching requests no longer go to people for it" } else { "" };
                    println!("alert {} acknowledged by {}{how}", for_terminal(&alert_id), target.actor());
                }
                exit::OK
            }
        }
    })
}

/// Asks the target one alerts query; an error answer or an unreachable target is printed and its exit code returned.
async fn ask(who: &OperatorArgs, query: Value) -> Result<Value, u8> {
    let target: Target = who.open("airlock-alerts").await?;
    let answer = target.query(query).await.map_err(|error| {
        eprintln!("error: {error}");
        exit::UNAVAILABLE
    })?;
    if let Some(reason) = answer["error"]["reason"].as_str() {
        eprintln!("error: {reason}");
        return Err(if answer["error"]["code"] == "unavailable" { exit::UNAVAILABLE } else { exit::FAILED });
    }
    Ok(answer)
}

fn print_summary(alert: &Value) {
    let text = |name: &str| for_terminal(alert[name].as_str().unwrap_or_default());
    let time = |name: &str| rfc3339(UnixMs(alert[name].as_u64().unwrap_or_default()));
    let state = match (alert["active"].as_bool(), alert["acknowledged_by"].as_str(), alert["benign"].as_bool()) {
        (_, Some(by), Some(true)) => format!("acknowledged as benign by {}", for_terminal(by)),
        (Some(true), Some(by), _) => format!("active, acknowledged by {}", for_terminal(by)),
        (Some(true), None, _) => "ACTIVE, not acknowledged".to_string(),
        (_, Some(by), _) => format!("over, acknowledged by {}", for_terminal(by)),
        (_, None, _) => "over, never acknowledged".to_string(),
    };
    println!("{}  {}: {}", text("alert_id"), text("check"), text("what"));
    match (text("shown"), text("indicator")) {
        (shown, key) if shown == key => println!("  indicator: {shown}"),
        (shown, key) => println!("  indicator: {shown} (counted as {key}, with every look-alike)"),
    }
    println!(
        "  {} accounts, {} cases, from {} to {} (trips at {} accounts in {}); {state}",
        alert["accounts"],
        alert["cases"],
        time("first_at"),
        time("last_at"),
        alert["accounts_min"],
        humantime::format_duration(std::time::Duration::from_millis(alert["window_ms"].as_u64().unwrap_or_default())),
    );
    if let Some(reason) = alert["acknowledged_reason"].as_str() {
        println!("  acknowledged: {}", for_terminal(reason));
    }
    match alert["rollback"].as_str() {
        Some(command) => println!("  to undo what it got applied: {}", for_terminal(command)),
        None => {
            println!("  to undo what it got applied: roll back each of its cases (`airlock alerts show` lists them)")
        }
    }
}
