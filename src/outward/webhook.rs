//! Signed webhooks (issue 20, item 2; ADR 27): each outward document posted as JSON to an endpoint of the company's,
//! signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`: HMAC-SHA256 with every
//! configured secret, for key rotation), the same `webhook-id` on every attempt and every redelivery. A failed attempt
//! (no connection, a timeout, an answer that is not HTTP, a redirect, any status but 2xx) is tried again after a
//! capped, jittered exponential backoff (`backon`), honouring a `Retry-After` up to the cap; after the last attempt the
//! document is given up as a dead letter, with the reason, and the endpoint's next document follows. Whoever calls
//! `deliver` keeps the order and the position (`feed`); nothing here waits on intake or decisions.

use crate::directory::http::{Secret, signature, signed_endpoint_url, without_url};
use crate::outward::Outward;
use backon::BackoffBuilder;
use std::time::Duration;

/// The first pause between two attempts; each later one doubles, up to `Retry::backoff_max`, plus up to as much again
/// of jitter.
const BACKOFF_MIN: Duration = Duration::from_millis(500);

/// Who errors name.
const ENDPOINT: &str = "the webhook endpoint";

/// How hard an endpoint is tried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts per document in all, the first included.
    pub attempts: usize,
    /// The longest pause between two attempts before jitter (a `Retry-After` is cut to it).
    pub backoff_max: Duration,
    /// How long one attempt may take, connecting and answering included.
    pub timeout: Duration,
}

/// Attempts per document by default: with the default pauses (17 minutes without jitter, up to twice that with it),
/// 17 to 35 minutes of trying before a dead letter.
pub const ATTEMPTS_DEFAULT: usize = 12;
pub const BACKOFF_MAX_DEFAULT: Duration = Duration::from_secs(600);
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// The bounds of what may be configured.
pub const ATTEMPTS_MAX: usize = 100;
pub const BACKOFF_MAX_MAX: Duration = Duration::from_secs(24 * 3600);
pub const TIMEOUT_MAX: Duration = Duration::from_secs(300);

impl Default for Retry {
    fn default() -> Self {
        Retry { attempts: ATTEMPTS_DEFAULT, backoff_max: BACKOFF_MAX_DEFAULT, timeout: TIMEOUT_DEFAULT }
    }
}

impl Retry {
    /// Refuses settings out of bounds, naming the flag.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=ATTEMPTS_MAX).contains(&self.attempts) {
            return Err(format!("--webhook-attempts is 1 to {ATTEMPTS_MAX}"));
        }
        if self.timeout.is_zero() || self.timeout > TIMEOUT_MAX {
            return Err("--webhook-timeout is longer than zero and at most 5 minutes".into());
        }
        if self.backoff_max.is_zero() || self.backoff_max > BACKOFF_MAX_MAX {
            return Err("--webhook-backoff-max is longer than zero and at most a day".into());
        }
        Ok(())
    }

    /// The pauses between attempts, `attempts - 1` of them.
    fn pauses(&self) -> impl Iterator<Item = Duration> + use<> {
        backon::ExponentialBuilder::default()
            .with_min_delay(BACKOFF_MIN.min(self.backoff_max))
            .with_max_delay(self.backoff_max)
            .with_factor(2.0)
            .with_max_times(self.attempts.saturating_sub(1))
            .with_jitter()
            // Seeded here: without backon's `std` feature every process would draw the same jitter.
            .with_jitter_seed(rand::random())
            .build()
    }
}

/// One configured endpoint: where, and the secrets its requests are signed with.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub url: url::Url,
    pub secrets: Vec<Secret>,
}

impl Endpoint {
    /// `url` checked as `--webhook` takes it (https://, or http:// to loopback; no user, password, query or fragment).
    pub fn new(url: &str, secrets: Vec<Secret>) -> Result<Endpoint, String> {
        Ok(Endpoint { url: signed_endpoint_url("--webhook", "--webhook-secrets", url)?, secrets })
    }

    /// The endpoint's stable name: its durable consumer in NATS mode, its cursor in the embedded store, its dead
    /// letters. A changed URL is a new endpoint (it starts with the events after it was configured).
    pub fn name(&self) -> String {
        use sha2::{Digest, Sha256};
        format!("webhook-{}", &hex::encode(Sha256::digest(self.url.as_str().as_bytes()))[..16])
    }

    /// The endpoint as logs and metrics show it: its origin only (a path may carry something private).
    pub fn shown(&self) -> String {
        self.url.origin().ascii_serialization()
    }
}

/// A document given up after its last attempt: what operators see, and where it can be found again in the log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// The endpoint's name (`Endpoint::name`) and origin.
    pub endpoint: String,
    pub origin: String,
    /// The document's `webhook-id`: `<log>.<sequence>.<place>`.
    pub event_id: String,
    pub event_type: String,
    pub case_id: Option<String>,
    pub attempts: usize,
    /// Why the last attempt failed (never the document, never a secret).
    pub reason: String,
    pub at_ms: u64,
}

/// What `deliver` did with one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivered {
    Delivered { attempts: usize },
    GaveUp(DeadLetter),
}

pub struct Webhook {
    endpoint: Endpoint,
    retry: Retry,
    client: reqwest::Client,
}

/// Why one attempt failed, and the pause the endpoint asked for.
struct Failure {
    reason: String,
    retry_after: Option<Duration>,
}

impl Webhook {
    pub fn new(endpoint: Endpoint, retry: Retry) -> Result<Webhook, String> {
        if retry.attempts == 0 || retry.timeout.is_zero() {
            return Err("a webhook needs at least one attempt and a timeout longer than zero".into());
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(retry.timeout)
            .connect_timeout(retry.timeout)
            .build()
            .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
        Ok(Webhook { endpoint, retry, client })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Posts `document` until the endpoint takes it or the attempts run out (then a dead letter). Never fails
    /// otherwise; cancel it (drop the future) to stop at once, and the document is delivered again later.
    pub async fn deliver(&self, document: &Outward) -> Delivered {
        let body = serde_json::to_vec(&document.document).expect("a document serializes");
        let mut pauses = self.retry.pauses();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let failure = match self.attempt(&document.id, &body).await {
                Ok(()) => {
                    self.count("airlock_webhook_deliveries_total", Some("delivered"));
                    return Delivered::Delivered { attempts };
                }
                Err(failure) => failure,
            };
            self.count("airlock_webhook_deliveries_total", Some("failed"));
            let Some(pause) = pauses.next() else {
                tracing::warn!(endpoint = %self.endpoint.shown(), event = %document.id, attempts, reason = %failure.reason,
                    "webhook: giving the event up after its last attempt (dead letter)");
                self.count("airlock_webhook_dead_letters_total", None);
                return Delivered::GaveUp(DeadLetter {
                    endpoint: self.endpoint.name(),
                    origin: self.endpoint.shown(),
                    event_id: document.id.clone(),
                    event_type: document.event_type.clone(),
                    case_id: document.case_id.as_ref().map(|case| case.as_str().to_string()),
                    attempts,
                    reason: failure.reason,
                    at_ms: wall_clock_ms(),
                });
            };
            let pause = failure.retry_after.map_or(pause, |asked| asked.min(self.retry.backoff_max));
            tracing::info!(endpoint = %self.endpoint.shown(), event = %document.id, attempts, reason = %failure.reason,
                pause_ms = pause.as_millis() as u64, "webhook: attempt failed; trying again");
            tokio::time::sleep(pause).await;
        }
    }

    /// Counts one attempt's outcome (or, without one, a dead letter), by endpoint name and origin (a path may carry
    /// something private; two endpoints of one origin stay apart by name).
    fn count(&self, counter: &'static str, outcome: Option<&'static str>) {
        let (endpoint, origin) = (self.endpoint.name(), self.endpoint.shown());
        match outcome {
            Some(outcome) => {
                metrics::counter!(counter, "endpoint" => endpoint, "origin" => origin, "outcome" => outcome)
                    .increment(1)
            }
            None => metrics::counter!(counter, "endpoint" => endpoint, "origin" => origin).increment(1),
        }
    }

    async fn attempt(&self, id: &str, body: &[u8]) -> Result<(), Failure> {
        // The wall clock: the receiver compares the timestamp with its own.
        let timestamp = wall_clock_ms() / 1_000;
        let sent = self
            .client
            .post(self.endpoint.url.clone())
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature(&self.endpoint.secrets, id, timestamp, body))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await;
        let response = sent.map_err(|error| Failure { reason: without_url(&error, ENDPOINT), retry_after: None })?;
        let status = response.status();
        // The answer's body is not read: a 2xx means taken, whatever follows (Standard Webhooks).
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let reason = if status.is_redirection() {
            format!("{ENDPOINT} redirected ({status}); airlock does not follow redirects: configure the final URL")
        } else if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            format!(
                "{ENDPOINT} refused airlock's signature ({status}): check that it holds a secret of --webhook-secrets \
                 and that both clocks are right"
            )
        } else {
            format!("{ENDPOINT} answered {status}")
        };
        Err(Failure { reason, retry_after })
    }
}

fn wall_clock_ms() -> u64 {
    crate::clock::Clock::now(&crate::clock::SystemClock).0
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the pauses are capped (jitter adds at most as much again), jittered, and as many as the attempts allow.
    #[test]
    fn the_pauses_grow_to_their_cap_with_jitter_and_stop_after_the_last_attempt() {
        let retry = Retry { attempts: 12, backoff_max: Duration::from_secs(8), timeout: Duration::from_secs(1) };
        let pauses: Vec<Duration> = retry.pauses().collect();
        assert_eq!(pauses.len(), 11, "one pause between each two attempts");
        assert!(pauses.iter().all(|pause| *pause >= BACKOFF_MIN && *pause <= Duration::from_secs(16)), "{pauses:?}");
        assert!(pauses[10] >= Duration::from_secs(8), "the cap is reached: {pauses:?}");
        let again: Vec<Duration> = retry.pauses().collect();
        assert_ne!(pauses, again, "jittered: two endpoints retrying together spread out");
        let once = Retry { attempts: 1, ..retry };
        assert_eq!(once.pauses().count(), 0);
    }

    // Proves an endpoint's URL is refused with the rule when it could leak a token or travel in the clear, and that
    // its name is stable and its shown form holds no path.
    #[test]
    fn an_endpoint_is_https_or_loopback_without_credentials_and_shows_only_its_origin() {
        for (url, rule) in [
            ("http://siem.example/hook", "use https://"),
            ("https://user:pw@siem.example/hook", "a user, a password or a query"),
            ("https://siem.example/hook?token=abc", "a user, a password or a query"),
            ("https://siem.example/hook#x", "a fragment"),
            ("ftp://siem.example/hook", "use https://"),
            ("not a url", "--webhook"),
        ] {
            let error = Endpoint::new(url, Vec::new()).unwrap_err();
            assert!(error.contains(rule), "{url}: {error}");
            assert!(!error.contains("abc") && !error.contains("pw"), "{error}");
        }
        let endpoint = Endpoint::new("https://siem.example/hooks/secret-path", Vec::new()).unwrap();
        assert_eq!(endpoint.shown(), "https://siem.example");
        assert_eq!(
            endpoint.name(),
            Endpoint::new("https://siem.example/hooks/secret-path", Vec::new()).unwrap().name()
        );
        assert_ne!(endpoint.name(), Endpoint::new("https://siem.example/other", Vec::new()).unwrap().name());
        assert!(Endpoint::new("http://127.0.0.1:9/hook", Vec::new()).is_ok());
    }
}
