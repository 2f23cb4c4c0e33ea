//! `airlock halt` and `airlock resume`: the kill switch (SPEC principle 11), as an operator, on the live NATS
//! deployment with the operator's own key or on the embedded store. Halting stops every automated execution at once
//! (cases wait in cooling-off); resuming is explicit, and both are recorded with the operator and the reason. The
//! command says "halted" only when the service that holds the switch answered that it is on.

use crate::cli::exit;
use crate::cli::target::OperatorArgs;
use crate::intake::CommandType;
use crate::service::new_id;
use serde_json::json;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  airlock halt --reason \"incident 42: proxy wave\"\n  \
airlock halt --reason \"incident 42\" --nats nats://127.0.0.1:4222 --nats-nkey nats/seeds/operator.ops-1.nk\n  \
airlock resume --reason \"incident 42 closed\"")]
pub struct ControlArgs {
    /// Why; recorded with the event and shown in the audit trail.
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub who: OperatorArgs,
    /// Print airlock's answer as JSON (fields: accepted, command_id, status, message, error{code, reason}).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ControlArgs, halt: bool) -> u8 {
    if crate::wire::looks_like_code(&args.reason) {
        eprintln!("error: the reason looks like it contains a verification code; it was not recorded");
        return exit::FAILED;
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts");
    runtime.block_on(async {
        let target = match args.who.open("airlock-control").await {
            Ok(target) => target,
            Err(code) => return code,
        };
        let body = json!({ "version": 1, "command_id": new_id("control"), "reason": args.reason });
        let command = if halt { CommandType::Halt } else { CommandType::Resume };
        if let Err(code) = target.command(command, &body, args.json).await {
            return code;
        }
        // Read back from the live service's log before saying so: an answer is not the switch.
        match target.halted().await {
            Ok(halted) if halted == halt => {}
            Ok(halted) => {
                eprintln!(
                    "error: the service accepted the command, but its kill switch reads {}; check with the other \
                     operators (another command may have changed it since)",
                    if halted { "halted" } else { "running" }
                );
                return exit::FAILED;
            }
            Err(error) => {
                eprintln!("error: the command was accepted, but the kill switch could not be read back: {error}");
                return exit::UNAVAILABLE;
            }
        }
        if !args.json {
            let actor = target.actor();
            match halt {
                true => println!("automation halted by {actor}: changes wait in cooling-off until `airlock resume`"),
                false => println!("automation resumed by {actor}"),
            }
        }
        exit::OK
    })
}
