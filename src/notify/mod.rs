//! Notifications to an account's destinations. The notifier trait is the adapter; the embedded outbox (a table a
//! person or a test can read) is one implementation, `smtp` (email through a mail server, TLS required off loopback)
//! another. Every message has an idempotency id: the outbox stores a retried message once, while SMTP is
//! at-least-once and gives every attempt the same `Message-ID` header so receivers can recognise the copy.

pub mod outbox;
pub mod sms;
pub mod smtp;

use crate::core::account::DestinationKind;
use crate::core::ids::{CaseId, UnixMs};

/// One message to one destination.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// `<commit sequence>.<place of the event in the commit>/<destination id>`: the same event never notifies the same
    /// destination twice.
    pub message_id: String,
    pub case_id: CaseId,
    pub kind: DestinationKind,
    pub address: String,
    pub subject: String,
    /// May hold a one-time code (a challenge) or a cancel link: `Debug` is redacted for that reason.
    pub body: String,
    pub sent_at: UnixMs,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Message")
            .field("message_id", &self.message_id)
            .field("case_id", &self.case_id)
            .field("subject", &self.subject)
            .field("body", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The provider cannot be reached; retry with the same message id.
    #[error("notifier unavailable: {0}")]
    Unavailable(String),
}

pub trait Notifier: Send + Sync {
    /// Delivers a message once per message id.
    fn send(&self, message: &Message) -> Result<(), NotifyError>;
}

/// Replaces every run of exactly `CODE_DIGITS` digits (a one-time code) with `[code]`; longer runs (phone numbers)
/// and shorter ones (dates) are left alone.
pub fn mask_codes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() == crate::core::limits::CODE_DIGITS {
            out.push_str("[code]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for character in text.chars() {
        if character.is_ascii_digit() {
            run.push(character);
        } else {
            flush(&mut run, &mut out);
            out.push(character);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Sends email destinations through one notifier (SMTP, or the outbox) and phones through another (the SMS provider,
/// the outbox when the operator asked for it, or none): `serve` always routes by kind.
pub struct ByKind {
    pub email: std::sync::Arc<dyn Notifier>,
    pub phone: std::sync::Arc<dyn Notifier>,
}

impl Notifier for ByKind {
    fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let notifier = match message.kind {
            DestinationKind::Email => &self.email,
            DestinationKind::Phone => &self.phone,
        };
        // A network notifier blocks (the SMS provider's waits on the runtime through its handle, which must not be
        // done on a runtime's own thread: the service sends on threads of its own); called on a multi-threaded
        // runtime's thread all the same, tell tokio so its other tasks move to other threads.
        match tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| notifier.send(message)),
            Ok(_) | Err(_) => notifier.send(message),
        }
    }
}
