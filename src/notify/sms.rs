//! Text messages through an SMS provider (issue 20, item 3): airlock posts each message as JSON to one HTTP endpoint
//! the company runs or buys (any SMS gateway can be put behind it), signed per Standard Webhooks (HMAC-SHA256 with
//! every configured secret, for key rotation), the same `webhook-id` on every attempt so the gateway sends a message
//! once. 429, 5xx, timeouts and failed connections are retried with capped, jittered backoff; a redirect is refused.
//! Delivery is at-least-once like email: a notice that failed stays owed and the timers send it again under the same
//! id; a code that failed is gone (only its hash is kept), and its owner asks again. The request shape is documented
//! in `docs/sms-provider.md`.

use crate::core::account::DestinationKind;
use crate::directory::http::{Secret, client, send_with, signature};
use crate::notify::{Message, Notifier, NotifyError};
use serde_json::json;

/// Who `send` names in errors.
const PROVIDER: &str = "the SMS provider";
/// Attempts per message: two, not the adapter's four. A message that fails is sent again by the timers (a notice) or
/// asked for again (a code), and the timers must not wait long behind a provider that is down.
const ATTEMPTS_MAX: usize = 2;

pub struct SmsWebhook {
    url: url::Url,
    secrets: Vec<Secret>,
    client: reqwest::Client,
    /// The runtime the requests run on: `send` is called on a thread of the service's own (never one of the runtime's)
    /// and waits for the request there.
    runtime: tokio::runtime::Handle,
}

/// The provider's endpoint, checked: `https://`, or `http://` to a loopback address only, without a user or password
/// (airlock signs its requests instead). The error names the rule, never the URL.
pub fn provider_url(url: &str) -> Result<url::Url, String> {
    crate::directory::http::signed_endpoint_url("--sms-url", "--sms-secrets", url)
}

impl SmsWebhook {
    /// A provider at `url` with `secrets`, its requests run on the current runtime.
    pub fn new(url: &str, secrets: Vec<Secret>) -> Result<SmsWebhook, String> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| "the SMS provider needs a tokio runtime".to_string())?;
        Ok(SmsWebhook { url: provider_url(url)?, secrets, client: client()?, runtime })
    }

    async fn post(&self, message: &Message) -> Result<(), NotifyError> {
        let body = json!({
            "version": 1,
            "type": "sms",
            "message_id": format!("{}/{}", message.case_id, message.message_id),
            "case_id": message.case_id.as_str(),
            "to": message.address,
            "text": message.body,
        });
        let bytes = serde_json::to_vec(&body).expect("a body serializes");
        // The case and the message: a message id alone starts over with a new store, and two deployments may share
        // one gateway; with the case id it is never reused.
        let id = format!("{}/{}", message.case_id, message.message_id);
        let id = id.as_str();
        let answer = send_with(PROVIDER, ATTEMPTS_MAX, || {
            // The wall clock: the provider compares the timestamp with its own.
            let timestamp = crate::clock::Clock::now(&crate::clock::SystemClock).0 / 1_000;
            self.client
                .post(self.url.clone())
                .header("webhook-id", id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature(&self.secrets, id, timestamp, &bytes))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes.clone())
        })
        .await
        // The error says what went wrong with the call, never the message (it may hold a code).
        .map_err(|error| match error {
            crate::directory::DirectoryError::Unavailable(text) | crate::directory::DirectoryError::Corrupt(text) => {
                NotifyError::Unavailable(text)
            }
            other => NotifyError::Unavailable(other.to_string()),
        })?;
        match answer.status.as_u16() {
            200..=299 => Ok(()),
            401 | 403 => Err(NotifyError::Unavailable(format!(
                "{PROVIDER} refused airlock's signature ({}): check that it holds a secret of --sms-secrets and that \
                 both clocks are right",
                answer.status
            ))),
            _ => Err(NotifyError::Unavailable(format!("{PROVIDER} did not take the message ({})", answer.status))),
        }
    }
}

impl Notifier for SmsWebhook {
    fn send(&self, message: &Message) -> Result<(), NotifyError> {
        if message.kind != DestinationKind::Phone {
            return Err(NotifyError::Unavailable("the SMS provider sends text messages to phones only".into()));
        }
        self.runtime.block_on(self.post(message))
    }
}

/// What phones get when no SMS channel was configured in `serve`: nothing, and an error that says how to configure one.
/// A phone's message never lands in the embedded outbox unless the operator asked for that (`--sms-outbox`).
pub struct NoSmsChannel;

impl Notifier for NoSmsChannel {
    fn send(&self, _: &Message) -> Result<(), NotifyError> {
        Err(NotifyError::Unavailable(
            "no SMS channel is configured: serve --sms-url URL --sms-secrets FILE (or --sms-outbox to keep text \
             messages in the embedded outbox while trying airlock out)"
                .into(),
        ))
    }
}
