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
use futures::{FutureExt, StreamExt};
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
/// Commits the publisher to `AIRLOCK_NOTIFY` takes at once (a webhook takes one: `max_ack_pending` 1).
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

    /// The commits this sink's consumer still has after the ones in hand, as a gauge: a feed that falls behind, or
    /// is stuck on an endpoint, shows here.
    fn pending(&self, commits: u64) {
        match self {
            Sink::Notify(_) => metrics::gauge!("airlock_events_out_pending", "sink" => "notify").set(commits as f64),
            Sink::Webhook(webhook, _) => metrics::gauge!("airlock_events_out_pending",
                "sink" => webhook.endpoint().name(), "origin" => webhook.endpoint().shown())
            .set(commits as f64),
        }
    }

    /// Delivers documents in order, each delivered or given up and recorded so; tries again for as long as the
    /// broker or the store is unreachable. Cancel it to stop.
    async fn send_all(&self, documents: &[Outward]) {
        let mut pauses = infrastructure_pauses();
        match self {
            Sink::Notify(publisher) => {
                while let Err(error) = publisher.publish_all(documents).await {
                    tracing::warn!(%error, "events out: publishing failed; trying again");
                    tokio::time::sleep(pauses.next().unwrap_or(INFRASTRUCTURE_PAUSE_MAX)).await;
                }
            }
            Sink::Webhook(webhook, dead_letters) => {
                for document in documents {
                    let Delivered::GaveUp(dead_letter) = webhook.deliver(document).await else { continue };
                    while let Err(error) = dead_letters.record(&dead_letter).await {
                        tracing::warn!(%error, event = %document.id, "webhook: the dead letter was not recorded; \
                            trying again");
                        tokio::time::sleep(pauses.next().unwrap_or(INFRASTRUCTURE_PAUSE_MAX)).await;
                    }
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

/// The priority group every process pulls a feed's consumer in: the server pins one of them and gives the commits to
/// it alone, so that one process at a time sends, in log order.
const PIN_GROUP: &str = "airlock";
/// How long the pinned process may go without pulling before the server pins another. Longer than `ACK_WAIT`, so that
/// the commits a dead process held are due again by the time another one takes over, and come first.
const PIN_TIMEOUT: Duration = Duration::from_secs(20);

/// A feed's durable consumer of the log, created at the log's end the first time (a new sink gets the events from
/// then on). Called before intake starts, so that none of this run's events comes before it.
pub async fn nats_consumer(
    events: &jetstream::stream::Stream,
    name: &str,
    in_flight: usize,
) -> Result<consumer::PullConsumer, String> {
    let config = consumer::pull::Config {
        durable_name: Some(name.to_string()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        deliver_policy: consumer::DeliverPolicy::New,
        max_ack_pending: in_flight as i64,
        priority_policy: consumer::PriorityPolicy::PinnedClient,
        priority_groups: vec![PIN_GROUP.to_string()],
        priority_timeout: PIN_TIMEOUT,
        description: Some("airlock's events out: documents to the company's systems, in log order".into()),
        ..Default::default()
    };
    events.get_or_create_consumer(name, config).await.map_err(|error| format!("the log's consumer {name}: {error}"))
}

/// Whether the connection has been down long enough that the server may have given the commits in hand to another
/// process: then this one stops working on them (they are that process's now), so that an endpoint never gets an
/// event after the ones that follow it.
struct Partition {
    since: Option<tokio::time::Instant>,
}

impl Partition {
    fn lost(&mut self, client: &async_nats::Client) -> bool {
        if client.connection_state() == async_nats::connection::State::Connected {
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert_with(tokio::time::Instant::now);
        since.elapsed() + PROGRESS_EVERY >= ACK_WAIT
    }
}

/// How a batch in hand ended.
enum Handled {
    Done,
    /// Shutdown: handed back to the server.
    Stopped,
    /// The connection was lost for too long: left to whichever process has them now.
    Abandoned,
}

/// The NATS-mode feed: pulls `consumer` (`nats_consumer`) in its pinned group, up to `in_flight` commits at a time,
/// sends their documents to `sink` in order, and acknowledges each commit once all its documents were delivered or
/// given up. Until `shutdown`; what is in hand then is handed back to the server.
pub async fn run_nats<L: EventLog>(
    service: Arc<Service<L>>,
    client: async_nats::Client,
    consumer: consumer::PullConsumer,
    in_flight: usize,
    sink: Sink,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    tracing::info!(sink = %sink.shown(), "events out started");
    let mut statuses = Statuses::default();
    let mut pauses = infrastructure_pauses();
    'pulling: while !*shutdown.borrow() {
        let pulled =
            consumer.stream().group(PIN_GROUP).max_messages_per_batch(in_flight).expires(PULL_EXPIRES).messages().await;
        let mut messages = match pulled {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(%error, sink = %sink.shown(), "events out: cannot pull the log; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(pauses.next().unwrap_or(INFRASTRUCTURE_PAUSE_MAX)) => continue,
                    _ = shutdown.changed() => break,
                }
            }
        };
        loop {
            let first = tokio::select! {
                next = messages.next() => next,
                _ = shutdown.changed() => break 'pulling,
            };
            let first = match first {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    // A missed heartbeat or a broken connection: pause, so that errors in a row never spin.
                    tracing::debug!(%error, "events out: pull interrupted");
                    tokio::select! {
                        _ = tokio::time::sleep(pauses.next().unwrap_or(INFRASTRUCTURE_PAUSE_MAX)) => continue,
                        _ = shutdown.changed() => break 'pulling,
                    }
                }
                None => continue 'pulling,
            };
            pauses = infrastructure_pauses();
            let mut held = vec![first];
            while held.len() < in_flight {
                match messages.next().now_or_never() {
                    Some(Some(Ok(message))) => held.push(message),
                    _ => break,
                }
            }
            if let Some(info) = held.last().and_then(|message| message.info().ok()) {
                sink.pending(info.pending);
            }
            match handle(&service, &client, &mut statuses, &sink, &held, &mut shutdown).await {
                Handled::Done => {
                    for message in &held {
                        if let Err(error) = message.ack().await {
                            tracing::warn!(%error, "events out: acknowledgement not sent; the commit may come again");
                        }
                    }
                }
                Handled::Stopped => {
                    for message in &held {
                        let _ = message.ack_with(AckKind::Nak(None)).await;
                    }
                    break 'pulling;
                }
                Handled::Abandoned => {
                    tracing::warn!(sink = %sink.shown(), "events out: NATS was unreachable for too long; the commits in \
                        hand are another process's now");
                    continue 'pulling;
                }
            }
        }
    }
    Ok(())
}

/// Sends the documents of the commits in hand, in order, telling the server every `PROGRESS_EVERY` that this process
/// is still working on them.
async fn handle<L: EventLog>(
    service: &Service<L>,
    client: &async_nats::Client,
    statuses: &mut Statuses,
    sink: &Sink,
    held: &[jetstream::Message],
    shutdown: &mut watch::Receiver<bool>,
) -> Handled {
    let work = async {
        for message in held {
            let Ok(info) = message.info() else { continue };
            let sequence = info.stream_sequence;
            let envelopes = match decode_commit(&message.payload) {
                Ok(envelopes) => envelopes,
                Err(error) => {
                    tracing::error!(sequence, %error, "events out: a commit of the log does not decode; not sent");
                    continue;
                }
            };
            let entry = Entry { sequence, envelopes };
            let documents = documents_of(statuses, &service.log, &entry).await.unwrap_or_default();
            sink.send_all(&documents).await;
        }
    };
    tokio::pin!(work);
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    progress.tick().await;
    let mut partition = Partition { since: None };
    loop {
        tokio::select! {
            () = &mut work => return Handled::Done,
            _ = progress.tick() => {
                if partition.lost(client) {
                    return Handled::Abandoned;
                }
                for message in held {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
            }
            _ = shutdown.changed() => return Handled::Stopped,
        }
    }
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

    pub fn position(&self, endpoint: &str) -> Result<Option<Position>, String> {
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

/// A position past every document of its commit.
const END_OF_COMMIT: usize = usize::MAX >> 1;

/// Runs `work` on the blocking pool (SQLite never runs on the runtime's threads).
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(work).await.map_err(|error| error.to_string())?
}

impl OutwardStore {
    /// Where an endpoint's embedded feed starts: its kept position, or, the first time, the log's end (`last`),
    /// written before anything is served so that none of this run's events comes before it.
    pub fn start(&self, endpoint: &crate::outward::webhook::Endpoint, last: u64) -> Result<(), String> {
        if self.position(&endpoint.name())?.is_none() {
            self.set_position(&endpoint.name(), &endpoint.shown(), (last, END_OF_COMMIT))?;
        }
        Ok(())
    }
}

/// The embedded feed of one webhook: reads the log after the endpoint's position (`OutwardStore::start`) every
/// `tick`, delivers each document in order and moves the position after each. Until `shutdown`. A store that cannot
/// be written is tried again (the document may then be sent again); it never stops the server.
pub async fn run_embedded<L: EventLog>(
    service: Arc<Service<L>>,
    store: Arc<OutwardStore>,
    webhook: Webhook,
    tick: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let (endpoint, origin) = (webhook.endpoint().name(), webhook.endpoint().shown());
    let sink = Sink::Webhook(webhook, DeadLetters::Store(store.clone()));
    let keep = |position: Position| {
        let (store, endpoint, origin) = (store.clone(), endpoint.clone(), origin.clone());
        async move {
            let mut pauses = infrastructure_pauses();
            loop {
                let (store, endpoint, origin) = (store.clone(), endpoint.clone(), origin.clone());
                match blocking(move || store.set_position(&endpoint, &origin, position)).await {
                    Ok(()) => return,
                    Err(error) => {
                        tracing::warn!(%error, "webhook: its position was not kept; trying again");
                        tokio::time::sleep(pauses.next().unwrap_or(INFRASTRUCTURE_PAUSE_MAX)).await;
                    }
                }
            }
        }
    };
    let mut position = loop {
        let (store, endpoint) = (store.clone(), endpoint.clone());
        match blocking(move || store.position(&endpoint)).await {
            Ok(Some(position)) => break position,
            Ok(None) => return Err(format!("no position kept for the webhook {origin}")),
            Err(error) => {
                tracing::warn!(%error, "webhook: its position cannot be read; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(tick) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
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
            // A commit delivered in part is read again: the documents after the position are still to go.
            let after = if position.1 == END_OF_COMMIT { position.0 } else { position.0.saturating_sub(1) };
            let entries = match service.log.read_after(after, EMBEDDED_BATCH).await {
                Ok(entries) => entries,
                Err(error) => {
                    tracing::warn!(%error, "events out: cannot read the log; trying again at the next tick");
                    break;
                }
            };
            if let Ok(last) = service.log.last_sequence().await {
                sink.pending(last.saturating_sub(position.0));
            }
            let before = position;
            for entry in &entries {
                let documents = tokio::select! {
                    documents = documents_of(&mut statuses, &service.log, entry) => documents.unwrap_or_default(),
                    _ = shutdown.changed() => return Ok(()),
                };
                let after = position;
                for document in documents.iter().filter(|document| document.position > after) {
                    tokio::select! {
                        () = sink.send_all(std::slice::from_ref(document)) => {}
                        _ = shutdown.changed() => return Ok(()),
                    }
                    position = document.position;
                    keep(position).await;
                }
                position = position.max((entry.sequence, END_OF_COMMIT));
            }
            if position != before {
                keep(position).await;
            }
            if entries.len() < EMBEDDED_BATCH {
                break;
            }
        }
    }
}
