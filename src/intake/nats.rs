//! The NATS front door of `airlock serve`: a durable pull consumer on the intake stream, the results and dead-letter
//! streams, and the case query responder. A message is acknowledged only after its command was decided and
//! appended and its answer was stored; a message airlock cannot take right now (the log is unavailable) is left for
//! redelivery. Poison (unreadable, oversized, invalid, from a role that may not send it) is answered, kept in the
//! dead-letter stream with its reason, and acknowledged, so it never stalls the consumer.

use crate::core::actor::Role;
use crate::core::limits;
use crate::core::rejection::Rejection;
use crate::intake::subjects::{self, SubjectError};
use crate::intake::{CommandType, ErrorCode, Reply, handle_json};
use crate::log::EventLog;
use crate::service::{Service, with_deferred_notices};
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// How the front door is laid out on the server.
#[derive(Clone, Debug)]
pub struct IntakeConfig {
    pub prefix: String,
    pub intake_stream: String,
    pub results_stream: String,
    pub dead_letter_stream: String,
    pub consumer: String,
    /// Commands decided at once. Different cases proceed in parallel; two on one case resolve by re-deciding.
    pub in_flight_max: usize,
    pub replicas: usize,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            prefix: "airlock".into(),
            intake_stream: "AIRLOCK_INTAKE".into(),
            results_stream: "AIRLOCK_RESULTS".into(),
            dead_letter_stream: "AIRLOCK_DEADLETTER".into(),
            consumer: "airlock-intake".into(),
            in_flight_max: 64,
            replicas: 1,
        }
    }
}

/// Headroom for a sender's headers on top of the largest command airlock reads: the broker counts headers and
/// payload together against the stream's `max_msg_size`.
const INTAKE_HEADER_BYTES_MAX: usize = 4 * 1024;

/// The largest message the intake stream stores. A command larger than `COMMAND_BYTES_MAX` can only be refused, so the
/// broker refuses it at publish time (the sender's publish fails with "message size exceeds maximum allowed") instead
/// of storing something airlock would have to copy into the dead letters.
const INTAKE_MESSAGE_BYTES_MAX: usize = limits::COMMAND_BYTES_MAX + INTAKE_HEADER_BYTES_MAX;

/// Messages waiting in the intake stream per subject (one actor's one command type). Beyond it the broker refuses the
/// sender's publish (`discard_new_per_subject`): one actor's flood can put at most this many messages in front of
/// everyone else's, and a desk can still queue this many while airlock is down.
pub(crate) const INTAKE_BACKLOG_PER_SUBJECT_MAX: i64 = 256;

/// The intake stream's whole size on disk.
const INTAKE_STREAM_BYTES_MAX: i64 = 1024 * 1024 * 1024;

/// The intake stream's duplicate window. The broker's deduplication by `Nats-Msg-Id` is stream-wide, so a message id
/// one actor used would make another actor's message a "duplicate" that is never processed (issue 15, item 2). It is
/// as short as the server allows (100 ms): another actor would have to guess a message id and publish it within
/// 100 ms before its owner does. airlock deduplicates by command id per actor instead, for as long as a case lives.
const INTAKE_DUPLICATE_WINDOW_MS: u64 = 100;

/// How long answers wait in the results stream for their sender to read them.
const RESULTS_KEPT_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Answers kept per sender; the oldest go first, so one actor's flood never evicts another actor's answers.
const RESULTS_PER_ACTOR_MAX: i64 = 10_000;

/// The results stream's whole size on disk; the oldest answers go first.
const RESULTS_STREAM_BYTES_MAX: i64 = 1024 * 1024 * 1024;

/// How long refused input is kept in the dead-letter stream.
pub const DEAD_LETTERS_KEPT_MS: u64 = 30 * 24 * 60 * 60 * 1000;

/// Dead letters kept per sender; the oldest go first, so one actor's junk never evicts another actor's evidence.
pub const DEAD_LETTERS_PER_ACTOR_MAX: i64 = 512;

/// The dead-letter stream's whole size on disk; the oldest go first.
const DEAD_LETTER_STREAM_BYTES_MAX: i64 = 1024 * 1024 * 1024;

/// A body up to this size is kept verbatim in a dead letter; a larger one is kept as a prefix with its size and
/// SHA-256, so a dead letter always fits the dead-letter stream whatever arrived.
const DEAD_LETTER_BODY_BYTES_MAX: usize = limits::COMMAND_BYTES_MAX;

/// The prefix kept of a body too large to keep whole.
const DEAD_LETTER_PREFIX_BYTES: usize = 1024;

/// The sender's headers, as kept in a dead letter, and the reason text: each cut to this size.
const DEAD_LETTER_HEADER_BYTES_MAX: usize = 1024;

/// The largest dead letter: a whole body plus airlock's headers.
const DEAD_LETTER_MESSAGE_BYTES_MAX: usize = DEAD_LETTER_BODY_BYTES_MAX + 8 * DEAD_LETTER_HEADER_BYTES_MAX;

/// How long the server waits for an acknowledgement before redelivering a message to any airlock process. Short,
/// because a message in flight when a server or an airlock process dies comes back only after it; safe, because a
/// redelivered command is a no-op by its command id even if the first delivery is still being decided.
const ACK_WAIT_MS: u64 = 10_000;

/// How long a message airlock could not take (the log was unavailable) first waits before it is delivered again;
/// each later delivery waits twice as long, up to `RETRY_DELAY_MS_MAX`.
const RETRY_DELAY_MS: u64 = 2_000;
const RETRY_DELAY_MS_MAX: u64 = 60_000;

/// Deliveries of one message before airlock gives up on it: the message is then kept in the dead letters (bounded
/// form), its sender is told, and it is never delivered again. With the delays above that is about 8 minutes of
/// airlock being unable to take it.
pub const INTAKE_DELIVERIES_MAX: i64 = 12;

/// The server's own bound on deliveries, a backstop for a process that dies on a message before it can give up on it.
const SERVER_DELIVERIES_MAX: i64 = INTAKE_DELIVERIES_MAX + 4;

/// Commands of one role whose notices are being sent at once, after their answers; beyond it the next command's
/// notices wait (their command's slot is already free).
const NOTICES_IN_FLIGHT_MAX: usize = 256;

/// How long one pull waits for messages before checking for shutdown.
const PULL_EXPIRES_MS: u64 = 1_000;

/// The roles that send commands, each taken by its own consumer with its own share of the commands in flight, so
/// an operator's halt or a reviewer's decision never waits behind a support desk's flood.
const SENDING_ROLES: [Role; 4] = [Role::Intake, Role::Owner, Role::Reviewer, Role::Operator];

const _: () = assert!(DEAD_LETTER_PREFIX_BYTES <= DEAD_LETTER_BODY_BYTES_MAX);
const _: () = assert!(INTAKE_MESSAGE_BYTES_MAX <= DEAD_LETTER_MESSAGE_BYTES_MAX);
const _: () = assert!(RETRY_DELAY_MS <= RETRY_DELAY_MS_MAX);

#[derive(Debug, thiserror::Error)]
#[error("NATS front door: {0}")]
pub struct IntakeError(pub String);

fn failed(error: impl std::fmt::Display) -> IntakeError {
    IntakeError(error.to_string())
}

/// The subjects a role's commands arrive on: `<prefix>.intake.<role>.<actor>.<command>`.
fn role_subjects(prefix: &str, role: Role) -> String {
    format!("{prefix}.intake.{role}.*.*")
}

/// The three streams of the front door, as airlock wants them.
fn wanted_streams(config: &IntakeConfig) -> [stream::Config; 3] {
    let prefix = &config.prefix;
    [
        stream::Config {
            name: config.intake_stream.clone(),
            // Only the subjects some consumer takes: anything else is refused by the broker, never stored unread.
            subjects: SENDING_ROLES.iter().map(|role| role_subjects(prefix, *role)).collect(),
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            max_message_size: INTAKE_MESSAGE_BYTES_MAX as i32,
            max_messages_per_subject: INTAKE_BACKLOG_PER_SUBJECT_MAX,
            discard: stream::DiscardPolicy::New,
            discard_new_per_subject: true,
            max_bytes: INTAKE_STREAM_BYTES_MAX,
            duplicate_window: Duration::from_millis(INTAKE_DUPLICATE_WINDOW_MS),
            description: Some("commands from support systems, agents, owners, reviewers, operators".into()),
            ..Default::default()
        },
        stream::Config {
            name: config.results_stream.clone(),
            subjects: vec![format!("{prefix}.result.>")],
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            max_age: Duration::from_millis(RESULTS_KEPT_MS),
            max_messages_per_subject: RESULTS_PER_ACTOR_MAX,
            max_bytes: RESULTS_STREAM_BYTES_MAX,
            discard: stream::DiscardPolicy::Old,
            description: Some("airlock's answer to each intake message, by sender".into()),
            ..Default::default()
        },
        stream::Config {
            name: config.dead_letter_stream.clone(),
            subjects: vec![format!("{prefix}.deadletter.>")],
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            max_message_size: DEAD_LETTER_MESSAGE_BYTES_MAX as i32,
            max_age: Duration::from_millis(DEAD_LETTERS_KEPT_MS),
            max_messages_per_subject: DEAD_LETTERS_PER_ACTOR_MAX,
            max_bytes: DEAD_LETTER_STREAM_BYTES_MAX,
            discard: stream::DiscardPolicy::Old,
            deny_delete: true,
            deny_purge: true,
            description: Some("input airlock refused or gave up on, with the reason, by sender".into()),
            ..Default::default()
        },
    ]
}

/// Creates the intake, results and dead-letter streams, or brings existing ones to airlock's limits (keeping their
/// replica count: rescaling is an operator's decision).
pub async fn ensure_streams(context: &jetstream::Context, config: &IntakeConfig) -> Result<(), IntakeError> {
    for mut wanted in wanted_streams(config) {
        match context.get_stream(&wanted.name).await {
            Ok(mut existing) => {
                let found = existing.info().await.map_err(failed)?.config.clone();
                wanted.num_replicas = found.num_replicas;
                if !same_limits(&found, &wanted) {
                    let name = wanted.name.clone();
                    context.update_stream(wanted).await.map_err(|error| {
                        IntakeError(format!("cannot bring stream {name} to airlock's limits: {error}"))
                    })?;
                }
            }
            Err(_) => {
                context.create_stream(wanted).await.map_err(failed)?;
            }
        }
    }
    Ok(())
}

/// Whether an existing stream already has every setting `ensure_streams` manages.
fn same_limits(found: &stream::Config, wanted: &stream::Config) -> bool {
    found.subjects == wanted.subjects
        && found.max_message_size == wanted.max_message_size
        && found.max_messages_per_subject == wanted.max_messages_per_subject
        && found.discard == wanted.discard
        && found.discard_new_per_subject == wanted.discard_new_per_subject
        && found.max_bytes == wanted.max_bytes
        && found.max_age == wanted.max_age
        && (wanted.duplicate_window.is_zero() || found.duplicate_window == wanted.duplicate_window)
        && found.deny_delete == wanted.deny_delete
        && found.deny_purge == wanted.deny_purge
}

/// One role's durable consumer. Consumers of a work-queue stream may not overlap, so the unfiltered consumer of
/// earlier releases (named `config.consumer`) is removed first; its unacknowledged messages stay in the stream and
/// go to the role consumers.
async fn role_consumer(
    stream: &stream::Stream,
    config: &IntakeConfig,
    role: Role,
) -> Result<consumer::PullConsumer, IntakeError> {
    let name = format!("{}-{role}", config.consumer);
    let in_flight = role_in_flight_max(config, role);
    stream
        .get_or_create_consumer(
            &name,
            consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: role_subjects(&config.prefix, role),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_millis(ACK_WAIT_MS),
                // Commands in flight, and those whose notices are being sent before they are acknowledged.
                max_ack_pending: (in_flight * 2 + NOTICES_IN_FLIGHT_MAX) as i64,
                max_deliver: SERVER_DELIVERIES_MAX,
                ..Default::default()
            },
        )
        .await
        .map_err(|error| IntakeError(format!("cannot open the intake consumer {name}: {error}")))
}

/// Commands of one role decided at once: support desks and agents share `in_flight_max`; owners, reviewers and
/// operators each have a budget of their own, so they never queue behind intake.
fn role_in_flight_max(config: &IntakeConfig, role: Role) -> usize {
    match role {
        Role::Intake => config.in_flight_max,
        Role::Owner | Role::Reviewer | Role::Operator | Role::System => (config.in_flight_max / 4).max(4),
    }
}

/// Runs the intake consumers, one per sending role, until `shutdown` turns true; then stops pulling, lets every
/// command in flight finish (and be acknowledged), and returns. Nothing unfinished is acknowledged.
pub async fn run_intake<L: EventLog + 'static>(
    service: Arc<Service<L>>,
    context: jetstream::Context,
    config: IntakeConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), IntakeError> {
    let stream = context.get_stream(&config.intake_stream).await.map_err(failed)?;
    if stream.consumer_info(&config.consumer).await.is_ok() {
        stream.delete_consumer(&config.consumer).await.map_err(failed)?;
        tracing::info!(consumer = %config.consumer, "removed the unfiltered intake consumer of an earlier release");
    }
    let config = Arc::new(config);
    let mut roles = JoinSet::new();
    for role in SENDING_ROLES {
        let consumer = role_consumer(&stream, &config, role).await?;
        let (service, context, config, shutdown) = (service.clone(), context.clone(), config.clone(), shutdown.clone());
        roles.spawn(async move { run_role(service, context, config, consumer, role, shutdown).await });
    }
    while let Some(ended) = roles.join_next().await {
        ended.map_err(failed)?;
    }
    Ok(())
}

/// One role's pull loop.
async fn run_role<L: EventLog + 'static>(
    service: Arc<Service<L>>,
    context: jetstream::Context,
    config: Arc<IntakeConfig>,
    consumer: consumer::PullConsumer,
    role: Role,
    mut shutdown: watch::Receiver<bool>,
) {
    let in_flight_max = role_in_flight_max(&config, role);
    let permits = Arc::new(Semaphore::new(in_flight_max));
    let sending = Arc::new(Semaphore::new(NOTICES_IN_FLIGHT_MAX));
    let mut in_flight = JoinSet::new();
    while !*shutdown.borrow() {
        let batch =
            consumer.fetch().max_messages(in_flight_max).expires(Duration::from_millis(PULL_EXPIRES_MS)).messages();
        let mut messages = tokio::select! {
            batch = batch => match batch {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(%error, %role, "intake pull failed; retrying");
                    tokio::time::sleep(Duration::from_millis(RETRY_DELAY_MS)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        while let Some(message) = messages.next().await {
            let Ok(message) = message else { continue };
            let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
            let (service, context, config) = (service.clone(), context.clone(), config.clone());
            let sending = sending.clone();
            in_flight.spawn(async move {
                let (notices, outcome) = process(&service, &context, &config, &message).await;
                // The command's slot is free before its notices go out: a slow mail server delays no other command,
                // so how soon the next command is answered says nothing about this one's account (THREATS 18).
                drop(permit);
                let sent = sending.acquire_owned().await.expect("the semaphore is never closed");
                service.send_deferred(notices).await;
                drop(sent);
                settle(&message, outcome).await;
            });
        }
        while in_flight.try_join_next().is_some() {}
    }
    tracing::info!(%role, in_flight = in_flight.len(), "intake stopping: finishing commands in flight");
    while in_flight.join_next().await.is_some() {}
}

/// What becomes of an intake message once its notices are sent.
enum Settle {
    Ack,
    Nak(Duration),
    Term,
}

/// One intake message, end to end, but for its notices and its acknowledgement: the notices are returned, held back,
/// for the caller to send once the command's slot is free, and the message is settled (`settle`) only after that,
/// so that a crash before a code went out leaves the message to be delivered again.
async fn process<L: EventLog>(
    service: &Service<L>,
    context: &jetstream::Context,
    config: &IntakeConfig,
    message: &jetstream::Message,
) -> (crate::service::DeferredNotices, Settle) {
    let (sequence, delivered) = message.info().map(|info| (info.stream_sequence, info.delivered)).unwrap_or((0, 1));
    let subject = message.subject.to_string();
    // The answer is stored before any notice goes out, so that how long it takes says nothing about the account.
    let ((actor, command, mut reply), notices) = with_deferred_notices(async {
        match subjects::parse_intake(&config.prefix, &subject) {
            Ok((actor, command)) => {
                let reply = handle_json(service, &actor, command, &message.payload).await;
                (Some(actor), Some(command), reply)
            }
            Err(SubjectError { actor, reason, command }) => (actor, command, bad_subject(reason)),
        }
    })
    .await;
    if reply.code() == Some(&ErrorCode::Unavailable) {
        if delivered < INTAKE_DELIVERIES_MAX {
            let delay = retry_delay(delivered);
            tracing::warn!(sequence, delivered, "command left for redelivery in {delay:?}: {}", reply.message);
            return (notices, Settle::Nak(delay));
        }
        tracing::error!(sequence, delivered, "giving up on a command airlock could not take: {}", reply.message);
        reply = gave_up(reply.command_id.take(), delivered);
    }
    let poison = reply.code().is_some_and(ErrorCode::is_poison);
    let stored = async {
        if poison {
            dead_letter(context, config, (actor.as_ref(), command), message, sequence, &reply).await?;
        }
        if let Some(actor) = &actor {
            publish_result(context, config, actor, sequence, &reply).await?;
        }
        Ok::<(), IntakeError>(())
    };
    let settle = match stored.await {
        Ok(()) => Settle::Ack,
        Err(error) if delivered < INTAKE_DELIVERIES_MAX => {
            tracing::warn!(sequence, %error, "could not store the answer; leaving the message for redelivery");
            Settle::Nak(retry_delay(delivered))
        }
        Err(error) => {
            // Never delivered again: the log line is what is left of it.
            tracing::error!(sequence, delivered, subject = %subject, %error, "could not store the answer or the dead \
                letter after {INTAKE_DELIVERIES_MAX} deliveries; the message is dropped");
            Settle::Term
        }
    };
    (notices, settle)
}

/// Acknowledges, delays or ends a message. A lost acknowledgement only means a redelivery, which the command id turns
/// into a no-op; waiting for the server to confirm each one would halve the intake rate for nothing.
async fn settle(message: &jetstream::Message, settle: Settle) {
    let kind = match settle {
        Settle::Ack => jetstream::AckKind::Ack,
        Settle::Nak(delay) => jetstream::AckKind::Nak(Some(delay)),
        Settle::Term => jetstream::AckKind::Term,
    };
    if let Err(error) = message.ack_with(kind).await {
        tracing::warn!(%error, "intake acknowledgement failed; the message will be redelivered");
    }
}

/// The wait before delivery number `delivered + 1`: doubling from `RETRY_DELAY_MS`, at most `RETRY_DELAY_MS_MAX`.
fn retry_delay(delivered: i64) -> Duration {
    let doublings = delivered.clamp(1, 16) as u32 - 1;
    let (first, most) = retry_delays_ms();
    Duration::from_millis(first.saturating_mul(1 << doublings).min(most))
}

/// The first and the longest wait before a redelivery: `RETRY_DELAY_MS` and `RETRY_DELAY_MS_MAX`, except that a debug
/// build started with `AIRLOCK_INTAKE_RETRY_MS=<ms>` starts from that many milliseconds (and waits at most thirty
/// times as long), so an end-to-end test can see a command given up without waiting out minutes of backoff. Release
/// builds never read the variable.
fn retry_delays_ms() -> (u64, u64) {
    #[cfg(debug_assertions)]
    if let Some(first) = std::env::var("AIRLOCK_INTAKE_RETRY_MS").ok().and_then(|text| text.parse::<u64>().ok()) {
        return (first, first.saturating_mul(RETRY_DELAY_MS_MAX / RETRY_DELAY_MS));
    }
    (RETRY_DELAY_MS, RETRY_DELAY_MS_MAX)
}

fn bad_subject(reason: String) -> Reply {
    Reply::refusal(ErrorCode::BadSubject, &reason)
}

/// The answer to a command airlock could not take in `INTAKE_DELIVERIES_MAX` deliveries.
fn gave_up(command_id: Option<String>, delivered: i64) -> Reply {
    let reason = format!(
        "airlock could not take this command in {delivered} attempts; it is kept in the dead letters and will not \
         be tried again: send it again later"
    );
    Reply { command_id, ..Reply::refusal(ErrorCode::GaveUp, &reason) }
}

async fn publish_result(
    context: &jetstream::Context,
    config: &IntakeConfig,
    actor: &crate::core::actor::Actor,
    sequence: u64,
    reply: &Reply,
) -> Result<(), IntakeError> {
    let mut message = jetstream::message::PublishMessage::build()
        .payload(serde_json::to_vec(reply).expect("a reply serializes").into())
        .header("Airlock-Intake-Sequence", sequence.to_string())
        .message_id(format!("result-{sequence}"));
    if let Some(command_id) = &reply.command_id {
        message = message.header("Airlock-Command-Id", command_id.as_str());
    }
    let pending = context.send_publish(subjects::result(&config.prefix, actor), message).await.map_err(failed)?;
    pending.await.map_err(failed)?;
    Ok(())
}

/// `text` cut to at most `bytes_max` bytes on a character boundary, with line breaks and other controls made spaces
/// (a header value is one line).
fn header_value(text: &str, bytes_max: usize) -> String {
    let mut end = text.len().min(bytes_max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].chars().map(|character| if character.is_control() { ' ' } else { character }).collect()
}

/// Whether refused input may hold an owner's code, so that its dead letter must not keep it: every proof (the
/// command whose body is a code), input refused for holding one, and any other input that reads as holding one
/// (`reads_as_holding_a_code`), such as a proof sent to a misspelt subject or a code in a body that is not JSON.
fn may_hold_a_code(command: Option<CommandType>, code: Option<&ErrorCode>, payload: &[u8]) -> bool {
    let proof = command == Some(CommandType::SubmitProof);
    let refused_for_one = matches!(code, Some(ErrorCode::Rejected(Rejection::SecretInUntrustedField { .. })));
    proof || refused_for_one || reads_as_holding_a_code(payload)
}

/// Fields that name things rather than say them: ids and hashes are hex or chosen by the sender, their digit runs
/// read as codes, and they are stored as they are wherever a command is accepted. Only a top-level text that is a
/// well-formed identifier is passed over.
const IDENTIFIER_FIELDS: [&str; 5] = ["case_id", "command_id", "action_hash", "alert_id", "account_id"];

/// Whether a body holds something that reads as a code (`looks_like_code`): in a JSON body, any field name, number
/// or text (escapes decoded) but the values of `IDENTIFIER_FIELDS`, and its raw text with those values blanked (a key
/// given twice is read once by the parser, and its other value must not pass unread); in anything else, the text.
fn reads_as_holding_a_code(payload: &[u8]) -> bool {
    use serde_json::Value;
    fn identifier<'a>(name: &str, value: &'a Value) -> Option<&'a str> {
        let text = value.as_str()?;
        let field = IDENTIFIER_FIELDS.into_iter().find(|field| *field == name)?;
        crate::core::text::check_identifier(field, text).is_ok().then_some(text)
    }
    fn holds(value: &Value, top: bool) -> bool {
        match value {
            Value::String(text) => crate::wire::looks_like_code(text),
            Value::Number(number) => crate::wire::looks_like_code(&number.to_string()),
            Value::Array(items) => items.iter().any(|item| holds(item, false)),
            Value::Object(fields) => fields.iter().any(|(name, value)| {
                let passed_over = top && identifier(name, value).is_some();
                crate::wire::looks_like_code(name) || (!passed_over && holds(value, false))
            }),
            Value::Bool(_) | Value::Null => false,
        }
    }
    let mut raw = String::from_utf8_lossy(payload).into_owned();
    if let Ok(value) = serde_json::from_slice::<Value>(payload) {
        if holds(&value, true) {
            return true;
        }
        if let Value::Object(fields) = &value {
            for (name, value) in fields {
                if let Some(id) = identifier(name, value) {
                    raw = raw.replace(&format!("\"{id}\""), "\"\"");
                }
            }
        }
    }
    crate::wire::looks_like_code(&raw)
}

/// What a dead letter keeps of a body: the body itself when it is small enough, else a prefix; withheld entirely
/// when it may hold an owner's code. Returns the body and what it is (`verbatim`, `prefix`, `withheld`).
fn kept_body(payload: &[u8], may_hold_a_code: bool) -> (Vec<u8>, &'static str) {
    if may_hold_a_code {
        let digest = hex::encode(Sha256::digest(payload));
        (format!("withheld: {} bytes, sha256 {digest}", payload.len()).into_bytes(), "withheld")
    } else if payload.len() <= DEAD_LETTER_BODY_BYTES_MAX {
        (payload.to_vec(), "verbatim")
    } else {
        (payload[..DEAD_LETTER_PREFIX_BYTES].to_vec(), "prefix")
    }
}

/// Keeps refused input with the reason, in a bounded form that always fits the dead-letter stream: the body verbatim
/// up to `DEAD_LETTER_BODY_BYTES_MAX`, else a prefix; always its size and SHA-256; the sender's headers, cut to
/// `DEAD_LETTER_HEADER_BYTES_MAX`. Codes are never stored anywhere: where the input may hold an owner's code
/// (`may_hold_a_code`) its body and headers are withheld, only size and digest kept, and a header value that reads as
/// a code is shown as `(withheld)`.
async fn dead_letter(
    context: &jetstream::Context,
    config: &IntakeConfig,
    (actor, command): (Option<&crate::core::actor::Actor>, Option<CommandType>),
    original: &jetstream::Message,
    sequence: u64,
    reply: &Reply,
) -> Result<(), IntakeError> {
    let subject = original.subject.as_str();
    let payload = &original.payload[..];
    let reason = reply.error.as_ref().map_or("refused", |error| error.reason.as_str());
    let code = reply.code().map_or("refused", ErrorCode::name);
    let may_hold_a_code = may_hold_a_code(command, reply.code(), payload);
    let (body, body_kind) = kept_body(payload, may_hold_a_code);
    let mut message = jetstream::message::PublishMessage::build()
        .payload(body.into())
        .header("Airlock-Reason-Code", code)
        .header("Airlock-Reason", header_value(reason, DEAD_LETTER_HEADER_BYTES_MAX))
        .header("Airlock-Original-Subject", header_value(subject, DEAD_LETTER_HEADER_BYTES_MAX))
        .header("Airlock-Intake-Sequence", sequence.to_string())
        .header("Airlock-Original-Bytes", payload.len().to_string())
        .header("Airlock-Original-Sha256", hex::encode(Sha256::digest(payload)))
        .header("Airlock-Body", body_kind)
        .message_id(format!("dead-{sequence}"));
    if let (Some(headers), false) = (&original.headers, may_hold_a_code) {
        let shown: Vec<String> = headers
            .iter()
            .flat_map(|(name, values)| {
                values.iter().map(move |value| match crate::wire::looks_like_code(value.as_str()) {
                    true => format!("{name}: (withheld)"),
                    false => format!("{name}: {}", value.as_str()),
                })
            })
            .collect();
        if !shown.is_empty() {
            message = message
                .header("Airlock-Original-Headers", header_value(&shown.join("; "), DEAD_LETTER_HEADER_BYTES_MAX));
        }
    }
    let pending = context.send_publish(subjects::dead_letter(&config.prefix, actor), message).await.map_err(failed)?;
    pending.await.map_err(failed)?;
    tracing::info!(sequence, code, "input kept in the dead-letter stream");
    Ok(())
}

/// Answers `<prefix>.query.<role>.<actor>` requests with a case's status, until `shutdown`.
/// `listening` is told once the query subject's subscription has reached the server, so that `serve` says it is
/// serving only when a query sent then is answered.
pub async fn run_queries<L: EventLog + 'static>(
    service: Arc<Service<L>>,
    client: async_nats::Client,
    config: IntakeConfig,
    mut shutdown: watch::Receiver<bool>,
    listening: tokio::sync::oneshot::Sender<()>,
) -> Result<(), IntakeError> {
    use async_nats::service::ServiceExt;
    // A NATS micro service (ADR-32): `$SRV.PING/INFO/STATS` (and `nats micro ls/info/stats airlock`) describe it and
    // count its requests; each actor asks on its own query subject, which names who is asking.
    let micro = client
        .add_service(async_nats::service::Config {
            name: QUERY_SERVICE.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: Some(
                "airlock's reads: a case's status for whoever asks; cases, the review queue, evidence and a case's \
                 history for reviewers and operators; the kill switch too; rollback candidates and the audit for \
                 operators. Ask on <prefix>.query.<role>.<your id>."
                    .to_string(),
            ),
            stats_handler: None,
            metadata: None,
            queue_group: Some("airlock".to_string()),
        })
        .await
        .map_err(|error| failed(format!("cannot start the query service: {error}")))?;
    let mut requests = micro
        .endpoint_builder()
        .name("query")
        .add(format!("{}.query.*.*", config.prefix))
        .await
        .map_err(|error| failed(format!("cannot serve queries: {error}")))?;
    client.flush().await.map_err(|error| failed(format!("cannot serve queries: {error}")))?;
    let _ = listening.send(());
    // Queries are answered side by side, so that a slow one (an operator's audit) never holds up a desk's status
    // query; at most QUERIES_AT_ONCE at a time, the rest wait in the subscription.
    let at_once = Arc::new(tokio::sync::Semaphore::new(QUERIES_AT_ONCE));
    let mut answering = tokio::task::JoinSet::new();
    let max_payload = client.server_info().max_payload;
    loop {
        let request = tokio::select! {
            request = requests.next() => match request { Some(request) => request, None => return Ok(()) },
            _ = shutdown.changed() => break,
        };
        if request.message.reply.is_none() {
            continue;
        }
        while answering.try_join_next().is_some() {}
        let permit = tokio::select! {
            permit = at_once.clone().acquire_owned() => match permit { Ok(permit) => permit, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let (service, prefix) = (service.clone(), config.prefix.clone());
        answering.spawn(async move {
            let answer = match subjects::parse_query(&prefix, &request.message.subject) {
                Some(actor) => crate::intake::query::answer(&service, &actor, &request.message.payload).await,
                None => serde_json::json!({ "error": { "code": "bad_subject", "reason": "not a query subject" } }),
            };
            let bytes = within(serde_json::to_vec(&answer).expect("an answer serializes"), max_payload);
            if let Err(error) = request.respond(Ok(bytes.into())).await {
                tracing::warn!(%error, "could not answer a query");
            }
            drop(permit);
        });
    }
    // Queries being answered finish (an audit is cut off after a while), then the service stops being listed.
    let _ = tokio::time::timeout(Duration::from_secs(QUERIES_DRAIN_SECONDS), async {
        while answering.join_next().await.is_some() {}
    })
    .await;
    answering.abort_all();
    micro.stop().await.ok();
    Ok(())
}

/// How long stopping waits for the queries being answered.
const QUERIES_DRAIN_SECONDS: u64 = 5;

/// The most queries answered at once.
const QUERIES_AT_ONCE: usize = 16;

/// An answer the broker would refuse to carry becomes an error that says how to ask for less: a reply too large
/// would otherwise be dropped, and the asker would wait for nothing.
fn within(answer: Vec<u8>, max_payload: usize) -> Vec<u8> {
    if answer.len() <= max_payload.saturating_sub(1024) {
        return answer;
    }
    let reason = format!(
        "the answer is {} bytes, too large for the broker ({max_payload} bytes per message); ask for less (a smaller \
         limit), or read it on the server with airlock's own key",
        answer.len()
    );
    serde_json::to_vec(&serde_json::json!({ "error": { "code": "too_large", "reason": reason } }))
        .expect("an error serializes")
}

/// The name airlock's reads are served under as a NATS micro service.
pub const QUERY_SERVICE: &str = "airlock";

/// What a sender does (`airlock review --nats`, `airlock mcp --nats`): publishes one command on `actor`'s intake
/// subject through JetStream, and waits up to `wait` for airlock's answer to it on `actor`'s result subject (the
/// answer names the intake message's stream sequence). The subscription starts before the publish, so the answer
/// cannot be missed.
pub async fn send_command(
    client: &async_nats::Client,
    actor: &crate::core::actor::Actor,
    command: crate::intake::CommandType,
    bytes: Vec<u8>,
    wait: Duration,
) -> Result<serde_json::Value, String> {
    let prefix = IntakeConfig::default().prefix;
    let mut answers = client
        .subscribe(subjects::result(&prefix, actor))
        .await
        .map_err(|error| format!("cannot subscribe: {error}"))?;
    client.flush().await.map_err(|error| error.to_string())?;
    let context = jetstream::new(client.clone());
    let subject = subjects::intake(&prefix, actor, command);
    let acknowledged = context
        .publish(subject, bytes.into())
        .await
        .map_err(|error| format!("cannot publish the command: {error}"))?
        .await
        .map_err(|error| format!("the command was not stored: {error}"))?;
    let wanted = acknowledged.sequence.to_string();
    let answer = async {
        while let Some(message) = answers.next().await {
            let sequence = message.headers.as_ref().and_then(|headers| headers.get("Airlock-Intake-Sequence"));
            if sequence.is_some_and(|value| value.as_str() == wanted) {
                return serde_json::from_slice(&message.payload).map_err(|error| format!("unreadable answer: {error}"));
            }
        }
        Err("the answer subscription ended".to_string())
    };
    tokio::time::timeout(wait, answer)
        .await
        .map_err(|_| format!("no answer from airlock within {} ms (is `airlock serve` running?)", wait.as_millis()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves which refused bodies a dead letter withholds for reading as holding a code: a code anywhere a person
    // writes (a field given twice, an escaped one, an id field that is no id, a body that is not JSON), but not the ids
    // and hashes a command names, a numeric account id included.
    #[test]
    fn a_body_is_withheld_for_a_code_anywhere_but_in_well_formed_ids() {
        let hash = "0123456789abcdef".repeat(4);
        for (body, withheld) in [
            (r#"{"summary":"code 48213377","summary":"reset please"}"#.to_string(), true),
            (r#"{"summary":"\u0034\u0038\u0032\u0031\u0033\u0033\u0037\u0037"}"#.to_string(), true),
            (r#"{"case_id":{"x":"48213377"}}"#.to_string(), true),
            (r#"{"command_id":"my code 48213377"}"#.to_string(), true),
            (r#"{"case_id":"48213377","case_id":"case-1"}"#.to_string(), true),
            ("not json: 4821 3377".to_string(), true),
            (
                format!(r#"{{"account_id":"1002345678","command_id":"c-20261206-123456","action_hash":"{hash}"}}"#),
                false,
            ),
            (r#"{"version":1,"decision":"approve","reason":"looks fine"}"#.to_string(), false),
        ] {
            assert_eq!(reads_as_holding_a_code(body.as_bytes()), withheld, "{body}");
        }
    }
}
