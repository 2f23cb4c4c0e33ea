//! `airlock directory import FILE`: loads accounts into the embedded account directory (format:
//! `schemas/directory_import.v1.schema.json`). All or nothing; errors name the line or the field.
//! `airlock directory sync [--baseline --attest REASON]`: asks the live service to read the company's whole directory
//! now (and, with a baseline, to record the operator's attestation first), as the operator's own key.

use crate::cli::exit;
use crate::directory::embedded::EmbeddedDirectory;
use crate::directory::import;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct DirectoryArgs {
    #[command(subcommand)]
    pub command: DirectoryCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DirectoryCommand {
    /// Load accounts from a JSON file; an account already present is replaced whole.
    #[command(after_help = "Examples:\n  airlock directory import accounts.json --data-dir ./airlock-data")]
    Import {
        /// The JSON file (schemas/directory_import.v1.schema.json).
        file: PathBuf,
        /// The embedded data directory.
        #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
        data_dir: PathBuf,
    },
    /// Ask the live service to read the company's whole directory now, dating the destinations airlock has not seen
    /// (serve also does it at start and every --directory-sync). With --baseline, first record that you vouch for every
    /// destination the directory holds now: they are dated as old enough from now on, and every decision that relies
    /// on that says so. For a directory that keeps no age per destination (SCIM, an adapter saying
    /// per_factor_ages false), and for operators only.
    #[command(after_help = "Examples:
  airlock directory sync --nats nats://127.0.0.1:4222 --nats-nkey seeds/operator.ops-1.nk
  airlock directory sync --baseline --attest 'adopting airlock; IdP audited 2026-12-01 (TICKET-1234)' \
    --nats nats://127.0.0.1:4222 --nats-nkey seeds/operator.ops-1.nk")]
    Sync {
        /// Record an attested baseline first (needs --attest).
        #[arg(long, requires = "attest")]
        baseline: bool,
        /// Why the directory's destinations as they are now can be trusted: recorded with your identity.
        #[arg(long, value_name = "REASON", requires = "baseline")]
        attest: Option<String>,
        /// Finish a baseline whose dating stopped (the error names its id): within an hour of it, the same id dates
        /// again; later it dates nothing.
        #[arg(long, value_name = "ID", requires = "baseline")]
        command_id: Option<String>,
        /// Print the answer as one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        operator: crate::cli::target::OperatorArgs,
    },
}

/// Import files are read whole; this bounds what a mistaken path (a disk image, a log) can make airlock read.
const IMPORT_FILE_BYTES_MAX: u64 = 256 * 1024 * 1024;

pub fn run(args: DirectoryArgs) -> u8 {
    match args.command {
        DirectoryCommand::Import { file, data_dir } => import(file, data_dir),
        DirectoryCommand::Sync { baseline, attest, command_id, json, operator } => {
            sync(baseline.then_some(attest).flatten(), command_id, json, &operator)
        }
    }
}

/// How long `directory sync` waits for the service: it reads the whole directory.
const SYNC_WAIT_SECONDS: u64 = 600;

fn sync(
    attest: Option<String>,
    command_id: Option<String>,
    json: bool,
    operator: &crate::cli::target::OperatorArgs,
) -> u8 {
    use crate::cli::target::Target;
    let runtime = crate::cli::runtime();
    let answer = runtime.block_on(async {
        let target = operator.open("airlock-directory-sync").await?;
        let Target::Nats { client, actor } = target else {
            eprintln!("error: the embedded directory dates its own destinations: there is nothing to sync");
            return Err(if attest.is_some() { exit::FAILED } else { exit::OK });
        };
        let mut query = serde_json::json!({ "query": "directory_sync" });
        if let Some(reason) = &attest {
            query["baseline"] = serde_json::json!({ "reason": reason });
            let id = command_id.clone().unwrap_or_else(|| crate::service::new_id("baseline"));
            query["command_id"] = serde_json::Value::String(id);
        }
        let wait = std::time::Duration::from_secs(SYNC_WAIT_SECONDS);
        crate::cli::target::ask_live_within(&client, &actor, query, wait).await.map_err(|reason| {
            eprintln!("error: {reason}");
            exit::UNAVAILABLE
        })
    });
    let answer = match answer {
        Ok(answer) => answer,
        Err(code) => return code,
    };
    if answer["error"].is_object() {
        if json {
            println!("{answer}");
        }
        return crate::cli::target::not_accepted(&answer, json);
    }
    if json {
        println!("{answer}");
    } else {
        let synced = &answer["synced"];
        match synced.is_null() {
            true => println!("the directory dates its own destinations: nothing to sync"),
            false => println!(
                "read {} accounts: {} destinations, {} seen for the first time, {} dated by the baseline",
                synced["accounts"], synced["destinations"], synced["first_seen"], synced["dated_by_baseline"]
            ),
        }
        if let Some(baseline) = answer["baseline"].as_object() {
            println!(
                "baseline attested at {} by {} (\"{}\"): destinations airlock found on its first read of each \
                 account dated to {}; those it saw appear later keep their own date",
                baseline["at"].as_str().unwrap_or_default(),
                baseline["by"].as_str().unwrap_or_default(),
                crate::core::text::for_terminal(baseline["reason"].as_str().unwrap_or_default()),
                baseline["dated_to"].as_str().unwrap_or_default()
            );
        }
    }
    exit::OK
}

fn import(file: PathBuf, data_dir: PathBuf) -> u8 {
    let text = match std::fs::metadata(&file).and_then(|metadata| {
        if metadata.len() > IMPORT_FILE_BYTES_MAX {
            return Err(std::io::Error::other(format!("larger than {IMPORT_FILE_BYTES_MAX} bytes; split it")));
        }
        std::fs::read_to_string(&file)
    }) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("error: cannot read {}: {error}", file.display());
            return exit::UNAVAILABLE;
        }
    };
    let records = match import::parse(&text) {
        Ok(records) => records,
        Err(error) => {
            eprintln!("error: {}: {error}; nothing was imported", file.display());
            return exit::FAILED;
        }
    };
    let written = std::fs::create_dir_all(&data_dir)
        .map_err(|error| (error.to_string(), exit::UNAVAILABLE))
        .and_then(|()| {
            EmbeddedDirectory::open(&data_dir.join("directory.db"))
                .map_err(|error| (error.to_string(), exit::UNAVAILABLE))
        })
        .and_then(|directory| {
            directory.put_accounts(&records).map_err(|error| match error {
                // A frozen account is a refusal, not an outage: its pending recovery must end first.
                crate::directory::DirectoryError::Held { .. } => {
                    (format!("{error} (its settings change only when that case ends)"), exit::FAILED)
                }
                crate::directory::DirectoryError::Refused(_) | crate::directory::DirectoryError::Changed(_) => {
                    (error.to_string(), exit::FAILED)
                }
                crate::directory::DirectoryError::Unavailable(_)
                | crate::directory::DirectoryError::NoSuchAccount(_)
                | crate::directory::DirectoryError::Corrupt(_) => (error.to_string(), exit::UNAVAILABLE),
            })
        });
    match written {
        Ok(()) => {
            println!("imported {} accounts into {}", records.len(), data_dir.join("directory.db").display());
            exit::OK
        }
        Err((error, code)) => {
            eprintln!("error: {error}; nothing was imported");
            code
        }
    }
}
