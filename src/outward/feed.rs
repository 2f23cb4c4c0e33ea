//! Reads the log for outward delivery (ADR 27), at least once and in log order: each commit becomes its documents
//! (`Statuses::documents`), each document goes to one sink (the NATS stream `AIRLOCK_NOTIFY`, or one webhook
//! endpoint), and the position moves on only once every document of the commit was delivered or given up.
//!
//! - In NATS mode the position is a durable consumer of the log, shared by every airlock process (each commit is
//!   handled by one of them): `max_ack_pending` commits in flight (one for a webhook, so that its documents arrive in
//!   log order across the deployment); a commit whose process died is delivered again after `ACK_WAIT`, while a live
//!   process keeps its commits by telling the server it is still working on them.
//! - In the embedded store the position is a row of `outward.db` in the data directory, written after each document.
//!
//! A new sink starts with the events after it was first configured. Nothing here blocks intake or decisions: each
//! sink is a task of its own, and a slow or failing endpoint delays only its own documents.

use crate::log::{Entry, EventLog, LogError, decode_commit};
use crate::outward::nats::Publisher;
use crate::outward::webhook::{DeadLetter, Delivered, Webhook};
use crate::outward::{Outward, Statuses};
use crate::service::Service;
use async_nats::jetstream::{self, AckKind, consumer};
use backon::BackoffBuilder;
use futures::StreamExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long the server waits for a commit to be acknowledged before it gives it to another process.
const ACK_WAIT: Duration = Duration::from_secs(15);
/// How often a process working on a commit (an endpoint being retried) tells the server so.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How long one pull waits for new commits before checking for shutdown.
const PULL_EXPIRES: Duration = Duration::from_millis(500);
/// Commits the publisher to `AIRLOCK_NOTIFY` takes at once.
pub const PUBLISH_BATCH: usize = 256;
/// Commits the embedded feed reads at once.
const EMBEDDED_BATCH: usize = 64;
/// Dead letters kept per endpoint in the embedded store; older ones go first.
pub const DEAD_LETTERS_KEPT_MAX: usize = 10_000;
/// The longest pause before trying again after the log or the broker failed.
const INFRASTRUCTURE_PAUSE_MAX: Duration = Duration::from_secs(5);

/// Where a feed's documents go.
pub enum Sink {
    /// The public stream `AIRLOCK_NOTIFY` (NATS mode).
    Notify(Publisher),
    /// One webhook endpoint, and where its dead letters are recorded.
    Webhook(Webhook, DeadLetters),
}

/// Where a webhook's dead letters are recorded: the dead-letter stream (NATS mode, on
/// `airlock.deadletter.webhook.<endpoint>`, bounded like the intake's), or `outward.db` (the embedded store).
pub enum DeadLetters {
    Nats(Box<jetstream::Context>),
    Store(Arc<OutwardStore>),
}

/// Pauses between tries when the log or the broker fails: capped, jittered, never giving up (the feed stops only at
/// shutdown).
fn infrastructure_pauses() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(INFRASTRUCTURE_PAUSE_MAX)
        .without_max_times()
        .with_jitter()
        // Seeded here: without backon's `std` feature every process would draw the same jitter.
        .with_jitter_seed(rand::random())
        .build()
}

impl Sink {
    /// Who logs name.
    fn shown(&self) -> String {
        match self {
            Sink::Notify(_) => format!("the stream {}", crate::outward::nats::NOTIFY_STREAM),
            Sink::Webhook(webhook, _) => webhook.endpoint().shown(),
        }
    }

    /// Delivers one document, or gives it up and records that; tries again for as long as the broker or the store
    /// is unreachable. Cancel it to stop.
    async fn send(&self, document: &Outward) {
        let mut pauses = infrastructure_pauses();
        match self {
            Sink::Notify(publisher) => {
                while let Err(error) = publisher.publish(document).await {
                    tracing::warn!(%error, event = %document.id, "events out: publishing failed; trying again");
                    tokio::time::sleep(pauses.next().unwrap_or(INFRASTRUCTURE_PAUSE_MAX)).await;
                }
            }
            Sink::Webhook(webhook, dead_letters) => {
                let Delivered::GaveUp(dead_letter) = webhook.deliver(document).await else { return };
                while let Err(error) = dead_letters.record(&dead_letter).await {
                    tracing::warn!(%error, event = %document.id, "webhook: the dead letter was not recorded; trying again");
                    tokio::time::sleep(pauses.next().unwrap_or(INFRASTRUCTURE_PAUSE_MAX)).await;
                }
            }
        }
    }
}

impl DeadLetters {
    async fn record(&self, dead_letter: &DeadLetter) -> Result<(), String> {
        match self {
            DeadLetters::Nats(context) => {
                let body = serde_json::to_vec(dead_letter).expect("a dead letter serializes");
                let subject = format!(
                    "{}.deadletter.webhook.{}",
                    crate::intake::nats::IntakeConfig::default().prefix,
                    dead_letter.endpoint
                );
                let message = jetstream::message::PublishMessage::build()
                    .payload(body.into())
                    .header("Airlock-Reason-Code", "webhook_gave_up")
                    .message_id(format!("{}/{}", dead_letter.endpoint, dead_letter.event_id));
                let pending = context.send_publish(subject, message).await.map_err(|error| error.to_string())?;
                pending.await.map(|_| ()).map_err(|error| error.to_string())
            }
            DeadLetters::Store(store) => {
                let (store, dead_letter) = (store.clone(), dead_letter.clone());
                tokio::task::spawn_blocking(move || store.record_dead_letter(&dead_letter))
                    .await
                    .map_err(|error| error.to_string())?
            }
        }
    }
}

/// The documents of a commit; tries again while the log cannot be read. `None` for a commit that cannot be made into
/// documents (a corrupt log: reported, and passed over, since delivering it again would fail again).
async fn documents_of<L: EventLog>(statuses: &mut Statuses, log: &L, entry: &Entry) -> Option<Vec<Outward>> {
    let mut pauses = infrastructure_pauses();
    loop {
        match statuses.documents(log, entry).await {
            Ok(documents) => return Some(documents),
            Err(LogError::Corrupt(reason)) => {
                tracing::error!(sequence = entry.sequence, %reason, "events out: a commit of the log cannot be read; \
                    it is not sent (run airlock audit verify)");
                return None;
            }
            Err(error) => {
                tracing::warn!(%error, sequence = entry.sequence, "events out: cannot read the log; trying again");
                tokio::time::sleep(pauses.next().unwrap_or(INFRASTRUCTURE_PAUSE_MAX)).await;
            }
        }
    }
}

/// The feed's durable consumer of the log, created at the log's end the first time (a new sink gets the events from
/// then on).
async fn consumer(
    events: &jetstream::stream::Stream,
    name: &str,
    in_flight: usize,
) -> Result<consumer::PullConsumer, String> {
    let config = consumer::pull::Config {
        durable_name: Some(name.to_string()),
        ack_policy: consumer::AckPolicy::All,
        ack_wait: ACK_WAIT,
        deliver_policy: consumer::DeliverPolicy::New,
        max_ack_pending: in_flight as i64,
        description: Some("airlock's events out: documents to the company's systems, in log order".into()),
        ..Default::default()
    };
    events.get_or_create_consumer(name, config).await.map_err(|error| format!("consumer {name}: {error}"))
}

/// The NATS-mode feed: takes up to `in_flight` commits at a time from the durable consumer `name` of the log, sends
/// their documents to `sink`, and acknowledges them once every one was delivered or given up. Until `shutdown`; what
/// is in hand then is handed back to the server (delivered again, by this process or another).
pub async fn run_nats<L: EventLog>(
    service: Arc<Service<L>>,
    events: jetstream::stream::Stream,
    name: String,
    in_flight: usize,
    sink: Sink,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut pauses = infrastructure_pauses();
    let consumer = loop {
        match consumer(&events, &name, in_flight).await {
            Ok(consumer) => break consumer,
            Err(error) => {
                tracing::warn!(%error, "events out: cannot reach the log's consumer; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(pauses.next().unwrap_or(INFRASTRUCTURE_PAUSE_MAX)) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
        }
    };
    tracing::info!(sink = %sink.shown(), consumer = %name, "events out started");
    let mut statuses = Statuses::default();
    while !*shutdown.borrow() {
        let pull = consumer.fetch().max_messages(in_flight).expires(PULL_EXPIRES).messages();
        let mut messages = tokio::select! {
            pulled = pull => match pulled {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(%error, "events out: pull failed; trying again");
                    tokio::time::sleep(PULL_EXPIRES).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let mut held = Vec::new();
        while let Some(message) = messages.next().await {
            let Ok(message) = message else { continue };
            let Ok(info) = message.info() else { continue };
            let sequence = info.stream_sequence;
            match decode_commit(&message.payload) {
                Ok(envelopes) => held.push((Entry { sequence, envelopes }, message)),
                Err(error) => {
                    tracing::error!(sequence, %error, "events out: a commit of the log does not decode; not sent");
                    held.push((Entry { sequence, envelopes: Vec::new() }, message));
                }
            }
        }
        let Some((_, last)) = held.last() else { continue };
        let work = async {
            for (entry, _) in held.iter().filter(|(entry, _)| !entry.envelopes.is_empty()) {
                for document in documents_of(&mut statuses, &service.log, entry).await.unwrap_or_default() {
                    sink.send(&document).await;
                }
            }
        };
        tokio::pin!(work);
        let mut progress = tokio::time::interval(PROGRESS_EVERY);
        progress.tick().await;
        let finished = loop {
            tokio::select! {
                () = &mut work => break true,
                _ = progress.tick() => {
                    for (_, message) in &held {
                        let _ = message.ack_with(AckKind::Progress).await;
                    }
                }
                _ = shutdown.changed() => break false,
            }
        };
        if !finished {
            // Handed back at once rather than after `ACK_WAIT`: another process (or this one, restarted) goes on.
            for (_, message) in &held {
                let _ = message.ack_with(AckKind::Nak(None)).await;
            }
            break;
        }
        // AckPolicy::All: the last acknowledges the batch. Lost, it only means the batch comes again.
        if let Err(error) = last.double_ack().await {
            tracing::warn!(%error, "events out: acknowledgement not confirmed; the commits may be sent again");
        }
    }
    Ok(())
}

/// The embedded store's positions and dead letters (`outward.db` in the data directory).
pub struct OutwardStore {
    connection: Mutex<rusqlite::Connection>,
}

const MIGRATIONS: &[crate::sqlite::Migration] = crate::migrations!("outward": 1 => "0001_webhooks");

/// An embedded feed's position: the last document delivered or given up.
type Position = (u64, usize);

impl OutwardStore {
    pub fn open(path: &Path) -> Result<OutwardStore, String> {
        let connection = crate::sqlite::open(path, MIGRATIONS).map_err(|error| error.to_string())?;
        Ok(OutwardStore { connection: Mutex::new(connection) })
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn position(&self, endpoint: &str) -> Result<Option<Position>, String> {
        use rusqlite::OptionalExtension;
        let row: Option<(i64, i64)> = self
            .connection()
            .query_row("SELECT sequence, place FROM webhook_cursors WHERE endpoint = ?1", [endpoint], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()
            .map_err(|error| error.to_string())?;
        Ok(row.map(|(sequence, place)| (sequence as u64, place as usize)))
    }

    fn set_position(&self, endpoint: &str, origin: &str, (sequence, place): Position) -> Result<(), String> {
        self.connection()
            .execute(
                "INSERT INTO webhook_cursors (endpoint, sequence, place, origin) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (endpoint) DO UPDATE SET sequence = ?2, place = ?3, origin = ?4",
                rusqlite::params![endpoint, sequence as i64, place as i64, origin],
            )
            .map(|_| ())
            .map_err(|error| error.to_string())
    }

    fn record_dead_letter(&self, dead_letter: &DeadLetter) -> Result<(), String> {
        let record = serde_json::to_string(dead_letter).expect("a dead letter serializes");
        let mut connection = self.connection();
        let transaction = connection.transaction().map_err(|error| error.to_string())?;
        transaction
            .execute(
                "INSERT INTO webhook_dead_letters (endpoint, event_id, record) VALUES (?1, ?2, ?3)",
                rusqlite::params![dead_letter.endpoint, dead_letter.event_id, record],
            )
            .map_err(|error| error.to_string())?;
        transaction
            .execute(
                "DELETE FROM webhook_dead_letters WHERE endpoint = ?1 AND id NOT IN
                 (SELECT id FROM webhook_dead_letters WHERE endpoint = ?1 ORDER BY id DESC LIMIT ?2)",
                rusqlite::params![dead_letter.endpoint, DEAD_LETTERS_KEPT_MAX as i64],
            )
            .map_err(|error| error.to_string())?;
        transaction.commit().map_err(|error| error.to_string())
    }

    /// The dead letters of every endpoint, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, String> {
        let connection = self.connection();
        let mut statement = connection
            .prepare("SELECT record FROM webhook_dead_letters ORDER BY id")
            .map_err(|error| error.to_string())?;
        let records = statement
            .query_map([], |row| row.get::<_, String>(0))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|error| error.to_string())?;
        records.iter().map(|record| serde_json::from_str(record).map_err(|error| error.to_string())).collect()
    }
}

/// Runs `work` on the blocking pool (SQLite never runs on the runtime's threads).
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(work).await.map_err(|error| error.to_string())?
}

/// The embedded feed of one webhook: reads the log after the endpoint's position every `tick`, delivers each document
/// in order and moves the position after each. Until `shutdown`.
pub async fn run_embedded<L: EventLog>(
    service: Arc<Service<L>>,
    store: Arc<OutwardStore>,
    webhook: Webhook,
    tick: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let (endpoint, origin) = (webhook.endpoint().name(), webhook.endpoint().shown());
    let sink = Sink::Webhook(webhook, DeadLetters::Store(store.clone()));
    let known = {
        let (store, endpoint) = (store.clone(), endpoint.clone());
        blocking(move || store.position(&endpoint)).await?
    };
    let mut position = match known {
        Some(position) => position,
        // First configured: from the log's end on.
        None => {
            let end = (service.log.last_sequence().await.map_err(|error| error.to_string())?, usize::MAX >> 1);
            let (store, endpoint, origin) = (store.clone(), endpoint.clone(), origin.clone());
            blocking(move || store.set_position(&endpoint, &origin, end)).await?;
            end
        }
    };
    tracing::info!(sink = %sink.shown(), "events out started");
    let mut statuses = Statuses::default();
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return Ok(()),
        }
        loop {
            // The commit of the position again: the documents after it in that commit are still to go.
            let entries = match service.log.read_after(position.0.saturating_sub(1), EMBEDDED_BATCH).await {
                Ok(entries) => entries,
                Err(error) => {
                    tracing::warn!(%error, "events out: cannot read the log; trying again at the next tick");
                    break;
                }
            };
            let before = position;
            for entry in &entries {
                let documents = tokio::select! {
                    documents = documents_of(&mut statuses, &service.log, entry) => documents.unwrap_or_default(),
                    _ = shutdown.changed() => return Ok(()),
                };
                let after = position;
                for document in documents.iter().filter(|document| document.position > after) {
                    tokio::select! {
                        () = sink.send(document) => {}
                        _ = shutdown.changed() => return Ok(()),
                    }
                    position = document.position;
                    let (store, endpoint, origin) = (store.clone(), endpoint.clone(), origin.clone());
                    blocking(move || store.set_position(&endpoint, &origin, position)).await?;
                }
                if entry.sequence > position.0 {
                    position = (entry.sequence, usize::MAX >> 1);
                }
            }
            if position == before || entries.len() < EMBEDDED_BATCH {
                if position != before {
                    let (store, endpoint, origin) = (store.clone(), endpoint.clone(), origin.clone());
                    blocking(move || store.set_position(&endpoint, &origin, position)).await?;
                }
                break;
            }
        }
    }
}
