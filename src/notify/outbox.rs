//! The embedded notifier: messages are written to the `outbox` table of the embedded directory's file, where
//! `airlock outbox`, the demo and the tests read them. This is the fake email provider, behind the real trait.

use crate::core::account::DestinationKind;
use crate::core::ids::{CaseId, UnixMs};
use crate::directory::embedded::EmbeddedDirectory;
use crate::notify::{Message, Notifier, NotifyError};
use rusqlite::params;
use std::sync::Arc;

pub struct Outbox {
    directory: Arc<EmbeddedDirectory>,
}

impl Outbox {
    pub fn new(directory: Arc<EmbeddedDirectory>) -> Outbox {
        Outbox { directory }
    }

    /// Every message sent, oldest first; optionally only those to one address.
    pub fn messages(&self, address: Option<&str>) -> Result<Vec<Message>, NotifyError> {
        let connection = self.directory.lock();
        let mut statement = connection
            .prepare(
                "SELECT message_id, case_id, kind, address, subject, body, sent_at FROM outbox
                 WHERE ?1 IS NULL OR address = ?1 ORDER BY sent_at, rowid",
            )
            .map_err(|error| NotifyError::Unavailable(error.to_string()))?;
        let rows = statement
            .query_map([address], |row| {
                let kind: String = row.get(2)?;
                Ok(Message {
                    message_id: row.get(0)?,
                    case_id: CaseId::new(row.get::<_, String>(1)?),
                    kind: if kind == "phone" { DestinationKind::Phone } else { DestinationKind::Email },
                    address: row.get(3)?,
                    subject: row.get(4)?,
                    body: row.get(5)?,
                    sent_at: UnixMs(row.get::<_, i64>(6)? as u64),
                })
            })
            .map_err(|error| NotifyError::Unavailable(error.to_string()))?;
        rows.collect::<Result<_, _>>().map_err(|error| NotifyError::Unavailable(error.to_string()))
    }
}

impl Notifier for Outbox {
    fn send(&self, message: &Message) -> Result<(), NotifyError> {
        self.directory
            .lock()
            .prepare_cached(
                "INSERT OR IGNORE INTO outbox (message_id, case_id, kind, address, subject, body, sent_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    message.message_id,
                    message.case_id.as_str(),
                    message.kind.name(),
                    message.address,
                    message.subject,
                    message.body,
                    message.sent_at.0 as i64
                ])
            })
            .map(|_| ())
            .map_err(|error| NotifyError::Unavailable(error.to_string()))
    }
}
