//! `airlock cancel`: an operator stops a change during its cooling-off (SPEC principle 5), on the live NATS
//! deployment with the operator's own key or on the embedded store. Owners cancel with the link sent to their old
//! destinations; this is the operators' way, recorded with who and why.

use crate::cli::exit;
use crate::cli::target::OperatorArgs;
use crate::intake::CommandType;
use crate::service::new_id;
use serde_json::json;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  airlock cancel case-3f9a... --reason \"owner called: not theirs\"\n  \
airlock cancel case-3f9a... --reason \"incident 42\" --nats nats://127.0.0.1:4222 --nats-nkey nats/seeds/operator.ops-1.nk")]
pub struct CancelArgs {
    /// The case to cancel (it must be waiting out its cooling-off).
    pub case: String,
    /// Why; recorded with the cancellation and in the receipt.
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub who: OperatorArgs,
    /// Print airlock's answer as JSON (fields: accepted, command_id, case_id, status, message, error{code, reason}).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: CancelArgs) -> u8 {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts");
    runtime.block_on(async {
        let target = match args.who.open("airlock-cancel").await {
            Ok(target) => target,
            Err(code) => return code,
        };
        let body = json!({ "version": 1, "command_id": new_id("cancel"), "case_id": args.case, "reason": args.reason });
        let answer = match target.command(CommandType::Cancel, &body, args.json).await {
            Ok(answer) => answer,
            Err(code) => return code,
        };
        if !args.json {
            println!("case {} is {}", args.case, answer["status"].as_str().unwrap_or("unknown"));
        }
        exit::OK
    })
}
