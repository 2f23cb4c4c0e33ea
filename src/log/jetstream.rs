//! The production event log on NATS JetStream. One stream holds every commit; each case has its own subject
//! (`<prefix>.case.<case id>`), the kill switch one more (`<prefix>.control`). The stream is immutable at the server
//! (deny delete, deny purge, no rollup, no age limit) and file-backed.
//!
//! An append publishes one message (one commit) with `Nats-Expected-Last-Subject-Sequence` (optimistic concurrency
//! per case) and `Nats-Msg-Id` (idempotency within the server's duplicate window; beyond it, the case state
//! remembers command ids). Reads of one case go to the stream leader (`STREAM.MSG.GET` with `next_by_subj`), so a
//! writer never decides on a stale replica's copy.

use crate::log::envelope::Stream;
use crate::log::{Appended, Entry, EventLog, Ledger, LedgerKey, LogError, decode_commit, encode_commit};
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use futures::StreamExt;
use std::time::Duration;

/// How long a publish waits for the server's acknowledgement before the caller is told the log is unavailable.
const PUBLISH_ACK_TIMEOUT_MS: u64 = 10_000;

/// Where and how the event stream lives.
#[derive(Clone, Debug)]
pub struct JetStreamConfig {
    pub stream_name: String,
    /// Subjects are `<prefix>.case.<id>` and `<prefix>.control`.
    pub subject_prefix: String,
    /// 1 in development, 3 in a cluster.
    pub replicas: usize,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        JetStreamConfig { stream_name: "AIRLOCK_EVENTS".into(), subject_prefix: "airlock.event".into(), replicas: 1 }
    }
}

impl JetStreamConfig {
    /// The stream configuration airlock creates, and insists on when the stream already exists.
    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream_name.clone(),
            subjects: vec![format!("{}.>", self.subject_prefix)],
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            deny_delete: true,
            deny_purge: true,
            allow_rollup: false,
            max_age: Duration::ZERO,
            max_messages: -1,
            max_bytes: -1,
            max_messages_per_subject: -1,
            discard: stream::DiscardPolicy::New,
            description: Some("airlock case events: immutable, one subject per case".into()),
            // Direct Get lets a case be read by any replica without a round trip through the JetStream API queue.
            allow_direct: true,
            ..Default::default()
        }
    }

    /// The subject of one stream of the log.
    pub fn subject(&self, stream: &Stream) -> String {
        match stream {
            Stream::Case(case_id) => format!("{}.case.{}", self.subject_prefix, subject_token(case_id.as_str())),
            Stream::Control => format!("{}.control", self.subject_prefix),
            Stream::Alerts => format!("{}.alerts", self.subject_prefix),
        }
    }
}

/// A case id as exactly one subject token: kept as it is when it is plain (`case-3f9a...`), otherwise hex-encoded
/// behind a `~` (a character plain ids never contain), so that a `.`, `*` or `>` in an id can never add a token or
/// a wildcard to the subject.
pub fn subject_token(id: &str) -> String {
    let plain = !id.is_empty() && id.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if plain { id.to_string() } else { format!("~{}", hex::encode(id)) }
}

pub struct JetStreamLog {
    context: jetstream::Context,
    stream: stream::Stream,
    config: JetStreamConfig,
    /// The request ledgers (ADR 7, ADR 8), a key-value bucket: one key per counted value, compare-and-swap on
    /// revision. `None` when a read-only command found no bucket.
    ledgers: Option<jetstream::kv::Store>,
    /// Whether the stream allows Direct Get (streams created by airlock do; an older one is read the slow way rather
    /// than updated, since nobody may change the log's configuration).
    direct: bool,
}

/// The bucket of request ledgers.
pub const LEDGER_BUCKET: &str = "AIRLOCK_LEDGERS";

fn unavailable(error: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(error.to_string())
}

/// Every setting of an existing event stream that could discard, expire, rewrite or lose an acknowledged event, or
/// let a command delete one, named. Empty when the stream is safe. The replica count is not among them: it is checked
/// only by `serve`, which creates the stream (`JetStreamLog::open`), never by a command that only reads it.
pub fn unsafe_settings(found: &stream::Config, wanted: &stream::Config) -> Vec<String> {
    let mut problems = Vec::new();
    if !found.subjects.iter().any(|subject| wanted.subjects.contains(subject)) {
        problems.push(format!("subjects are {:?}, airlock needs {:?}", found.subjects, wanted.subjects));
    }
    if found.retention != stream::RetentionPolicy::Limits {
        problems.push(format!("retention is {:?}: acknowledged or unread events would be removed", found.retention));
    }
    if !found.deny_delete {
        problems.push("deny_delete is off".to_string());
    }
    if !found.deny_purge {
        problems.push("deny_purge is off".to_string());
    }
    if found.allow_rollup {
        problems.push("allow_rollup is on".to_string());
    }
    if found.max_age != Duration::ZERO {
        problems.push(format!("max_age is {:?}: older events would expire", found.max_age));
    }
    if found.max_messages != -1 {
        problems.push(format!("max_msgs is {}: older events would be discarded", found.max_messages));
    }
    if found.max_bytes != -1 {
        problems.push(format!("max_bytes is {}: older events would be discarded", found.max_bytes));
    }
    if found.max_messages_per_subject != -1 {
        problems.push(format!(
            "max_msgs_per_subject is {}: a case's older events would be discarded",
            found.max_messages_per_subject
        ));
    }
    if found.allow_message_ttl || found.subject_delete_marker_ttl.is_some() {
        problems.push("per-message TTLs are allowed: events could expire".to_string());
    }
    if found.storage != stream::StorageType::File {
        problems.push("storage is not file".to_string());
    }
    if matches!(found.persist_mode, Some(stream::PersistenceMode::Async)) {
        problems.push("persist_mode is async: an acknowledged event could be lost in a crash".to_string());
    }
    if found.mirror.is_some() || found.sources.as_ref().is_some_and(|sources| !sources.is_empty()) {
        problems.push("the stream mirrors or sources another stream".to_string());
    }
    problems
}

/// Checks an existing stream against what airlock needs, refusing it with every unsafe setting named; `serve` also
/// insists on its configured replica count.
fn check_existing(found: &stream::Config, wanted: &stream::Config, replicas: bool) -> Result<(), LogError> {
    let mut problems = unsafe_settings(found, wanted);
    if replicas && found.num_replicas != wanted.num_replicas {
        problems.push(format!("replicas are {}, configured {}", found.num_replicas, wanted.num_replicas));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(LogError::Misconfigured(format!(
        "stream {} exists with an incompatible configuration: {}",
        wanted.name,
        problems.join("; ")
    )))
}

impl JetStreamLog {
    /// Opens the event stream for `serve`, creating it (and the ledger bucket) if it does not exist and refusing one
    /// whose configuration is unsafe or whose replica count differs from the configured one. The stream is never
    /// updated: airlock's own key may not change the log's configuration either (`nats::permissions`).
    pub async fn open(client: async_nats::Client, config: JetStreamConfig) -> Result<JetStreamLog, LogError> {
        let mut context = jetstream::new(client);
        context.set_timeout(Duration::from_millis(PUBLISH_ACK_TIMEOUT_MS));
        let wanted = config.stream_config();
        let stream = match context.get_stream(&config.stream_name).await {
            Ok(mut stream) => {
                let info = stream.info().await.map_err(unavailable)?;
                check_existing(&info.config, &wanted, true)?;
                stream
            }
            Err(error) if error.to_string().contains("stream not found") => {
                context.create_stream(wanted).await.map_err(unavailable)?
            }
            Err(error) => return Err(unavailable(error)),
        };
        let ledgers = match context.get_key_value(LEDGER_BUCKET).await {
            Ok(store) => store,
            Err(_) => context
                .create_key_value(jetstream::kv::Config {
                    bucket: LEDGER_BUCKET.to_string(),
                    description: "airlock: each account's recent requests, for exact velocity limits".to_string(),
                    history: 1,
                    storage: stream::StorageType::File,
                    num_replicas: config.replicas,
                    ..Default::default()
                })
                .await
                .map_err(unavailable)?,
        };
        JetStreamLog::assemble(context, stream, config, Some(ledgers)).await
    }

    /// Opens an existing event stream as it is, for the commands that only read it (`audit`, `replay`, `case
    /// history`): its immutability is checked, its replica count is not (they did not create it), and nothing is
    /// created. The ledger bucket is opened if it exists.
    pub async fn open_existing(client: async_nats::Client, stream_name: &str) -> Result<JetStreamLog, LogError> {
        let mut context = jetstream::new(client);
        context.set_timeout(Duration::from_millis(PUBLISH_ACK_TIMEOUT_MS));
        let defaults = JetStreamConfig::default();
        let mut stream = match context.get_stream(stream_name).await {
            Ok(stream) => stream,
            Err(error) if error.to_string().contains("stream not found") => {
                return Err(LogError::Misconfigured(format!(
                    "there is no event log (stream {stream_name}) on this NATS server: nothing to read"
                )));
            }
            Err(error) => return Err(unavailable(error)),
        };
        let found = stream.info().await.map_err(unavailable)?.config.clone();
        let wanted = JetStreamConfig { stream_name: stream_name.to_string(), ..defaults.clone() }.stream_config();
        check_existing(&found, &wanted, false)?;
        let config = JetStreamConfig { stream_name: stream_name.to_string(), replicas: found.num_replicas, ..defaults };
        let ledgers = context.get_key_value(LEDGER_BUCKET).await.ok();
        JetStreamLog::assemble(context, stream, config, ledgers).await
    }

    async fn assemble(
        context: jetstream::Context,
        mut stream: stream::Stream,
        config: JetStreamConfig,
        ledgers: Option<jetstream::kv::Store>,
    ) -> Result<JetStreamLog, LogError> {
        let direct = stream.info().await.map_err(unavailable)?.config.allow_direct;
        Ok(JetStreamLog { context, stream, config, ledgers, direct })
    }

    pub fn config(&self) -> &JetStreamConfig {
        &self.config
    }

    /// The event stream, for consumers (the projector, the benchmark).
    pub fn stream(&self) -> &stream::Stream {
        &self.stream
    }

    fn ledger_bucket(&self) -> Result<&jetstream::kv::Store, LogError> {
        self.ledgers.as_ref().ok_or_else(|| LogError::Unavailable(format!("there is no {LEDGER_BUCKET} bucket")))
    }

    /// The sequence and message id of a subject's last message, if it has one.
    async fn last_of(&self, subject: &str) -> Result<Option<(u64, Option<String>)>, LogError> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => {
                let id = message.headers.get("Nats-Msg-Id").map(|value| value.as_str().to_string());
                Ok(Some((message.sequence, id)))
            }
            Err(error) if error.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(unavailable(error)),
        }
    }
}

fn entry_of(sequence: u64, payload: &[u8]) -> Result<Entry, LogError> {
    Ok(Entry { sequence, envelopes: decode_commit(payload)? })
}

impl EventLog for JetStreamLog {
    async fn append(
        &self,
        stream: &Stream,
        expected_last: u64,
        command_id: &str,
        envelopes: Vec<Vec<u8>>,
    ) -> Result<Appended, LogError> {
        let subject = self.config.subject(stream);
        let message = jetstream::message::PublishMessage::build()
            .payload(encode_commit(&envelopes).into())
            .message_id(command_id)
            .expected_last_subject_sequence(expected_last);
        let acknowledged = match self.context.send_publish(subject.clone(), message).await {
            Ok(pending) => pending.await,
            Err(error) => Err(error),
        };
        match acknowledged {
            Ok(ack) if ack.duplicate => Ok(Appended::Duplicate),
            Ok(ack) => Ok(Appended::New { first_sequence: ack.sequence }),
            Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => {
                // A retried publish that had in fact been stored is answered with "wrong last sequence", not as a
                // duplicate, because the expectation is checked before deduplication. Only the last message's id
                // tells the two apart.
                match self.last_of(&subject).await? {
                    Some((_, Some(id))) if id == command_id => Ok(Appended::Duplicate),
                    Some((actual, _)) => {
                        Err(LogError::Conflict { stream: stream.key(), expected: expected_last, actual })
                    }
                    None => Err(LogError::Conflict { stream: stream.key(), expected: expected_last, actual: 0 }),
                }
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn read_stream(&self, stream: &Stream) -> Result<Vec<Entry>, LogError> {
        let subject = self.config.subject(stream);
        let mut entries = Vec::new();
        let mut next = 1;
        loop {
            let request = self.stream.raw_message_builder().sequence(next).next_by_subject(subject.clone());
            match request.send().await {
                Ok(message) => {
                    entries.push(entry_of(message.sequence, &message.payload)?);
                    next = message.sequence + 1;
                }
                Err(error) if error.kind() == stream::RawMessageErrorKind::NoMessageFound => return Ok(entries),
                Err(error) => return Err(unavailable(error)),
            }
        }
    }

    async fn read_stream_fast(&self, stream: &Stream) -> Result<Vec<Entry>, LogError> {
        if !self.direct {
            return self.read_stream(stream).await;
        }
        let subject = self.config.subject(stream);
        let mut entries = Vec::new();
        let mut next = 1;
        loop {
            match self.stream.direct_get_next_for_subject(subject.clone(), Some(next)).await {
                Ok(message) => {
                    entries.push(entry_of(message.sequence, &message.payload)?);
                    next = message.sequence + 1;
                }
                Err(error) if error.kind() == stream::DirectGetErrorKind::NotFound => return Ok(entries),
                Err(error) => return Err(unavailable(error)),
            }
        }
    }

    async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<Entry>, LogError> {
        let last = self.last_sequence().await?;
        if last <= after {
            return Ok(Vec::new());
        }
        let consumer = self
            .stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: after + 1 },
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let mut messages = consumer.messages().await.map_err(unavailable)?;
        let mut entries = Vec::new();
        while entries.len() < limit {
            let Some(message) = messages.next().await else { break };
            let message = message.map_err(unavailable)?;
            let info = message.info().map_err(unavailable)?;
            entries.push(entry_of(info.stream_sequence, &message.payload)?);
            if info.stream_sequence >= last {
                break;
            }
        }
        Ok(entries)
    }

    /// One ordered consumer for the whole range, instead of one per `read_after` batch.
    fn read_range(&self, after: u64, until: u64) -> impl futures::Stream<Item = Result<Entry, LogError>> + Send + '_ {
        enum State<M> {
            Start,
            Reading(M, u64),
            Done,
        }
        futures::stream::unfold(State::Start, move |state| async move {
            let (mut messages, until) = match state {
                State::Done => return None,
                State::Start => {
                    // An ordered consumer waits for new messages at the end of the stream; the read stops there.
                    let opened = async {
                        let until = until.min(self.last_sequence().await?);
                        if after >= until {
                            return Ok(None);
                        }
                        let messages = self
                            .stream
                            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                                    start_sequence: after + 1,
                                },
                                ..Default::default()
                            })
                            .await
                            .map_err(unavailable)?
                            .messages()
                            .await
                            .map_err(unavailable)?;
                        Ok(Some((messages, until)))
                    };
                    match opened.await {
                        Ok(Some(opened)) => opened,
                        Ok(None) => return None,
                        Err(error) => return Some((Err(error), State::Done)),
                    }
                }
                State::Reading(messages, until) => (messages, until),
            };
            let read = match messages.next().await {
                None => return None,
                Some(message) => message.map_err(unavailable).and_then(|message| {
                    let sequence = message.info().map_err(unavailable)?.stream_sequence;
                    entry_of(sequence, &message.payload)
                }),
            };
            match read {
                Ok(entry) if entry.sequence > until => None,
                Ok(entry) if entry.sequence == until => Some((Ok(entry), State::Done)),
                Ok(entry) => Some((Ok(entry), State::Reading(messages, until))),
                Err(error) => Some((Err(error), State::Done)),
            }
        })
    }

    async fn last_sequence(&self) -> Result<u64, LogError> {
        let info = self.stream.get_info().await.map_err(unavailable)?;
        Ok(info.state.last_sequence)
    }

    async fn ledger(&self, key: &LedgerKey) -> Result<(u64, Ledger), LogError> {
        match self.ledger_bucket()?.entry(key.storage_key()).await.map_err(unavailable)? {
            Some(entry) if entry.operation == jetstream::kv::Operation::Put => {
                Ok((entry.revision, Ledger::decode(&entry.value)?))
            }
            Some(_) | None => Ok((0, Ledger::default())),
        }
    }

    async fn put_ledger(&self, key: &LedgerKey, revision: u64, ledger: &Ledger) -> Result<u64, LogError> {
        let conflict = || LogError::Conflict { stream: format!("ledger of {key}"), expected: revision, actual: 0 };
        let (key, value) = (key.storage_key(), bytes::Bytes::from(ledger.encode()));
        if revision == 0 {
            return match self.ledger_bucket()?.create(&key, value).await {
                Ok(revision) => Ok(revision),
                Err(error) if error.kind() == jetstream::kv::CreateErrorKind::AlreadyExists => Err(conflict()),
                Err(error) => Err(unavailable(error)),
            };
        }
        match self.ledger_bucket()?.update(&key, value, revision).await {
            Ok(revision) => Ok(revision),
            Err(error) if error.kind() == jetstream::kv::UpdateErrorKind::WrongLastRevision => Err(conflict()),
            Err(error) => Err(unavailable(error)),
        }
    }
}
