//! `airlock submit`: the local front door of the embedded mode. It reads one JSON command (per `schemas/`), hands it
//! to the service as the given actor, and prints the reply as JSON. The actor is asserted by whoever runs the
//! command: on the embedded store that is the local operator, who can read and write its files anyway. Network
//! front doors (NATS, HTTP, MCP) take the actor from the authenticated channel instead.

use crate::cli::exit;
use crate::core::actor::{Actor, Role};
use crate::core::limits;
use crate::core::text::check_identifier;
use crate::intake::{CommandType, ErrorCode, handle_json};
use crate::server::embedded;
use std::io::Read;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// The embedded data directory (event log, projection, directory, key file).
    #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
    pub data_dir: PathBuf,
    /// Who is acting, as ROLE:ID, for example intake:helpdesk-7, owner:verification-page, reviewer:ana.
    #[arg(long)]
    pub actor: String,
    /// Which command the JSON is.
    #[arg(long, value_enum)]
    pub command: CommandType,
    /// The file holding the JSON command; standard input when absent or `-`.
    pub file: Option<PathBuf>,
}

fn parse_actor(text: &str) -> Result<Actor, String> {
    let (role, id) = text.split_once(':').ok_or("--actor must look like ROLE:ID, for example intake:helpdesk-7")?;
    let role = match role {
        "intake" => Role::Intake,
        "owner" => Role::Owner,
        "reviewer" => Role::Reviewer,
        "operator" => Role::Operator,
        other => return Err(format!("unknown role {other:?}: use intake, owner, reviewer or operator")),
    };
    check_identifier("actor id", id).map_err(|rejection| rejection.to_string())?;
    Ok(Actor::new(role, id))
}

/// Reads at most one byte more than a command may have, so oversized input is refused without reading it all.
fn read_input(file: Option<&PathBuf>) -> std::io::Result<Vec<u8>> {
    let limit = limits::COMMAND_BYTES_MAX as u64 + 1;
    let mut bytes = Vec::new();
    match file.filter(|path| path.as_os_str() != "-") {
        Some(path) => std::fs::File::open(path)?.take(limit).read_to_end(&mut bytes)?,
        None => std::io::stdin().lock().take(limit).read_to_end(&mut bytes)?,
    };
    Ok(bytes)
}

pub fn run(args: SubmitArgs) -> u8 {
    let actor = match parse_actor(&args.actor) {
        Ok(actor) => actor,
        Err(reason) => {
            eprintln!("error: {reason}");
            return exit::USAGE;
        }
    };
    let bytes = match read_input(args.file.as_ref()) {
        Ok(bytes) => bytes,
        Err(error) => {
            eprintln!("error: cannot read the command: {error}");
            return exit::UNAVAILABLE;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts");
    let embedded = match runtime.block_on(embedded::open_data_dir(&args.data_dir)) {
        Ok(embedded) => embedded,
        Err(error) => {
            eprintln!("error: {error:#}");
            return exit::UNAVAILABLE;
        }
    };
    let reply = runtime.block_on(handle_json(&embedded.service, &actor, args.command, &bytes));
    println!("{}", serde_json::to_string_pretty(&reply).expect("a reply serializes"));
    match (&reply.accepted, reply.code()) {
        (true, _) => exit::OK,
        (false, Some(ErrorCode::Unavailable)) => exit::UNAVAILABLE,
        (false, _) => exit::FAILED,
    }
}
