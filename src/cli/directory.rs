//! `airlock directory import FILE`: loads accounts into the embedded account directory (format:
//! `schemas/directory_import.v1.schema.json`). All or nothing; errors name the line or the field.

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
}

/// Import files are read whole; this bounds what a mistaken path (a disk image, a log) can make airlock read.
const IMPORT_FILE_BYTES_MAX: u64 = 256 * 1024 * 1024;

pub fn run(args: DirectoryArgs) -> u8 {
    let DirectoryCommand::Import { file, data_dir } = args.command;
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
