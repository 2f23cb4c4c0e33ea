//! `airlock outbox`: what the embedded notifier "sent" (the stand-in for an email or SMS provider). One-time codes
//! are masked: this is an operator's view, and codes belong only to the owner's destination.

use crate::cli::exit;
use crate::cli::store::failed;
use crate::directory::embedded::EmbeddedDirectory;
use crate::notify::mask_codes;
use crate::notify::outbox::Outbox;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  airlock outbox --data-dir ./airlock-data\n  airlock outbox --to alice@example.com --json"
)]
pub struct OutboxArgs {
    /// Only messages to this address.
    #[arg(long)]
    pub to: Option<String>,
    /// The embedded data directory.
    #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
    pub data_dir: PathBuf,
    /// The most messages shown: the newest, printed oldest first; `more` (in JSON) says whether older ones were left
    /// out.
    #[arg(long, default_value_t = 500)]
    pub limit: usize,
    /// Print one JSON object (fields: items[message_id, case_id, to, subject, body, sent_at], more).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: OutboxArgs) -> u8 {
    let path = args.data_dir.join("directory.db");
    if !path.exists() {
        let reason = format!(
            "no embedded directory at {}: the outbox is the embedded notifier's (point --data-dir at airlock's data \
             directory)",
            path.display()
        );
        return failed(args.json, "unavailable", &reason, exit::UNAVAILABLE);
    }
    let directory = match EmbeddedDirectory::open(&path) {
        Ok(directory) => directory,
        Err(error) => return failed(args.json, "unavailable", &error.to_string(), exit::UNAVAILABLE),
    };
    let mut messages = match Outbox::new(Arc::new(directory)).messages(args.to.as_deref()) {
        Ok(messages) => messages,
        Err(error) => return failed(args.json, "unavailable", &error.to_string(), exit::UNAVAILABLE),
    };
    // The newest `limit`, still printed oldest first: the latest messages are the ones an operator looks for.
    let more = messages.len() > args.limit;
    messages.drain(..messages.len().saturating_sub(args.limit));
    if args.json {
        let rows: Vec<serde_json::Value> = messages
            .iter()
            .map(|message| {
                serde_json::json!({
                    "message_id": message.message_id,
                    "case_id": message.case_id.as_str(),
                    "to": message.address,
                    "subject": message.subject,
                    "body": mask_codes(&message.body),
                    "sent_at": message.sent_at.to_string(),
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "items": rows, "more": more }));
        return exit::OK;
    }
    for message in &messages {
        println!("{}  to {}  case {}  {}", message.sent_at, message.address, message.case_id, message.subject);
        for line in mask_codes(&message.body).lines().filter(|line| !line.trim().is_empty()) {
            println!("    {line}");
        }
    }
    println!("{} messages{}", messages.len(), if more { " (more: raise --limit)" } else { "" });
    exit::OK
}
