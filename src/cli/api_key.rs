//! `airlock api-key`: the API keys of the HTTP intake, one or more per requester. A key is printed once, when it is
//! made; airlock keeps only its hash (`http::api_keys`), so a lost key is revoked and replaced, never recovered.

use crate::cli::exit;
use crate::http::api_keys::{ApiKeys, FILE};
use crate::intake::subjects::actor_token_valid;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ApiKeyArgs {
    #[command(subcommand)]
    pub command: ApiKeyCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ApiKeyCommand {
    /// Make a key for a requester and print it, once. Requests sent with it are recorded as intake:REQUESTER.
    #[command(after_help = "Examples:\n  airlock api-key create --requester helpdesk-eu\n  \
airlock api-key create --requester helpdesk-eu --json | jq -r .key > helpdesk.key")]
    Create {
        /// The requester's id (1 to 64 of A-Z a-z 0-9 - _), as recorded on every case it opens.
        #[arg(long)]
        requester: String,
        #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
        data_dir: PathBuf,
        /// Print {key_id, requester, key} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the keys: id, requester, when made, when revoked. Never a key itself.
    #[command(after_help = "Examples:\n  airlock api-key list\n  airlock api-key list --json")]
    List {
        #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
        data_dir: PathBuf,
        /// Print the keys as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id (the 12 hex digits after `ak_`); requests with it are refused from then on.
    #[command(after_help = "Examples:\n  airlock api-key revoke 3f9a1c22b0de")]
    Revoke {
        key_id: String,
        #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
        data_dir: PathBuf,
    },
}

fn open(data_dir: &std::path::Path) -> Result<ApiKeys, u8> {
    std::fs::create_dir_all(data_dir).map_err(|error| {
        eprintln!("error: cannot create {}: {error}", data_dir.display());
        exit::UNAVAILABLE
    })?;
    ApiKeys::open(&data_dir.join(FILE)).map_err(|error| {
        eprintln!("error: {error}");
        exit::UNAVAILABLE
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}

pub fn run(args: ApiKeyArgs) -> u8 {
    match run_command(args.command) {
        Ok(code) | Err(code) => code,
    }
}

fn run_command(command: ApiKeyCommand) -> Result<u8, u8> {
    match command {
        ApiKeyCommand::Create { requester, data_dir, json } => {
            if !actor_token_valid(&requester) {
                eprintln!("error: --requester {requester:?}: 1 to 64 of A-Z a-z 0-9 - _");
                return Err(exit::USAGE);
            }
            let keys = open(&data_dir)?;
            let made = keys.create(&requester, now_ms()).map_err(|error| {
                eprintln!("error: {error}");
                exit::UNAVAILABLE
            })?;
            if json {
                let value = serde_json::json!({ "key_id": made.key_id, "requester": requester, "key": made.reveal() });
                println!("{value}");
            } else {
                println!("{}", made.reveal());
                eprintln!(
                    "API key {} for intake:{requester}. It is shown only now: airlock keeps its hash. Send it as \
                     `Authorization: Bearer <key>`.",
                    made.key_id
                );
            }
            Ok(exit::OK)
        }
        ApiKeyCommand::List { data_dir, json } => {
            let keys = open(&data_dir)?.list().map_err(|error| {
                eprintln!("error: {error}");
                exit::UNAVAILABLE
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys).expect("JSON serializes"));
                return Ok(exit::OK);
            }
            let mut rows = vec![["KEY ID", "REQUESTER", "CREATED", "REVOKED"].map(String::from)];
            let time = |ms: i64| crate::cli::store::rfc3339(crate::core::ids::UnixMs(ms.max(0) as u64));
            for key in &keys {
                let revoked = key.revoked_at_ms.map_or_else(|| "-".to_string(), time);
                rows.push([key.key_id.clone(), key.requester.clone(), time(key.created_at_ms), revoked]);
            }
            crate::cli::store::print_table(&rows);
            Ok(exit::OK)
        }
        ApiKeyCommand::Revoke { key_id, data_dir } => {
            let revoked = open(&data_dir)?.revoke(&key_id, now_ms()).map_err(|error| {
                eprintln!("error: {error}");
                exit::UNAVAILABLE
            })?;
            if revoked {
                println!("revoked {key_id}");
                Ok(exit::OK)
            } else {
                eprintln!("error: no live key {key_id:?} (airlock api-key list shows them)");
                Err(exit::FAILED)
            }
        }
    }
}
