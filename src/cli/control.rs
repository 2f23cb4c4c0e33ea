//! `airlock halt` and `airlock resume`: the kill switch (SPEC principle 11), as an operator on the embedded store.
//! Halting stops every automated execution at once (cases wait in cooling-off); resuming is explicit, and both are
//! recorded with the operator and the reason.

use crate::cli::exit;
use crate::core::actor::{Actor, Role};
use crate::core::control::ControlCommand;
use crate::core::ids::CommandId;
use crate::core::limits::REASON_BYTES_MAX;
use crate::core::text::{UntrustedText, check_identifier};
use crate::server::embedded;
use crate::service::{ServiceError, new_id};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  airlock halt --reason \"incident 42: proxy wave\"\n  airlock resume --reason \"incident 42 closed\""
)]
pub struct ControlArgs {
    /// Why; recorded with the event and shown in the audit trail.
    #[arg(long)]
    pub reason: String,
    /// The operator acting (recorded as operator:ID).
    #[arg(long, env = "AIRLOCK_OPERATOR", default_value = "operator")]
    pub operator: String,
    /// The embedded data directory.
    #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
    pub data_dir: PathBuf,
}

pub fn run(args: ControlArgs, halt: bool) -> u8 {
    if let Err(rejection) = check_identifier("operator", &args.operator) {
        eprintln!("error: {rejection}");
        return exit::USAGE;
    }
    let reason = match UntrustedText::new("reason", &args.reason, REASON_BYTES_MAX) {
        Ok(reason) if !crate::wire::looks_like_code(&args.reason) => reason,
        Ok(_) => {
            eprintln!("error: the reason looks like it contains a verification code; it was not recorded");
            return exit::FAILED;
        }
        Err(rejection) => {
            eprintln!("error: {rejection}");
            return exit::FAILED;
        }
    };
    let embedded = match embedded::open_data_dir(&args.data_dir) {
        Ok(embedded) => embedded,
        Err(error) => {
            eprintln!("error: {error:#}");
            return exit::UNAVAILABLE;
        }
    };
    let command = if halt { ControlCommand::Halt { reason } } else { ControlCommand::Resume { reason } };
    let actor = Actor::new(Role::Operator, args.operator);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts");
    match runtime.block_on(embedded.service.control(CommandId::new(new_id("control")), actor, command)) {
        Ok(true) => {
            println!("automation halted: changes wait in cooling-off until `airlock resume`");
            exit::OK
        }
        Ok(false) => {
            println!("automation resumed");
            exit::OK
        }
        Err(ServiceError::Rejected(rejection)) => {
            eprintln!("refused: {rejection}");
            exit::FAILED
        }
        Err(error) => {
            eprintln!("error: {error}");
            exit::UNAVAILABLE
        }
    }
}
