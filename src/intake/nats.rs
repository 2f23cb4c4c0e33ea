//! The NATS front door of `airlock serve`: a durable pull consumer on the intake stream, the results and dead-letter
//! streams, and the case query responder. A message is acknowledged only after its command was decided and
//! appended and its answer was stored; a message airlock cannot take right now (the log is unavailable) is left for
//! redelivery. Poison (unreadable, oversized, invalid, from a role that may not send it) is answered, kept in the
//! dead-letter stream with its reason, and acknowledged, so it never stalls the consumer.

use crate::intake::subjects::{self, SubjectError};
use crate::intake::{Reply, handle_json};
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

/// Larger than any command may be, so that oversized commands land in the stream and are dead-lettered with a
/// reason (instead of being refused by the server without a trace); the server's own `max_payload` caps it anyway.
const INTAKE_MESSAGE_BYTES_MAX: i32 = 1024 * 1024;

/// How long answers wait in the results stream for their sender to read them.
const RESULTS_KEPT_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// How long the server waits for an acknowledgement before redelivering a message to any airlock process. Short,
/// because a message in flight when a server or an airlock process dies comes back only after it; safe, because a
/// redelivered command is a no-op by its command id even if the first delivery is still being decided.
const ACK_WAIT_MS: u64 = 10_000;

/// How long a message airlock could not take (the log was unavailable) waits before it is delivered again.
const RETRY_DELAY_MS: u64 = 2_000;

/// How long one pull waits for messages before checking for shutdown.
const PULL_EXPIRES_MS: u64 = 1_000;

/// Error codes whose input is poison: retrying the same bytes can never succeed.
const POISON_CODES: [&str; 6] =
    ["malformed_command", "invalid_value", "too_long", "secret_in_untrusted_field", "role_not_allowed", "bad_subject"];

#[derive(Debug, thiserror::Error)]
#[error("NATS front door: {0}")]
pub struct IntakeError(pub String);

fn failed(error: impl std::fmt::Display) -> IntakeError {
    IntakeError(error.to_string())
}

/// Creates the intake, results and dead-letter streams if they do not exist.
pub async fn ensure_streams(context: &jetstream::Context, config: &IntakeConfig) -> Result<(), IntakeError> {
    let prefix = &config.prefix;
    let streams = [
        stream::Config {
            name: config.intake_stream.clone(),
            subjects: vec![format!("{prefix}.intake.>")],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            max_message_size: INTAKE_MESSAGE_BYTES_MAX,
            description: Some("commands from support systems, agents, owners, reviewers, operators".into()),
            ..Default::default()
        },
        stream::Config {
            name: config.results_stream.clone(),
            subjects: vec![format!("{prefix}.result.>")],
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            max_age: Duration::from_millis(RESULTS_KEPT_MS),
            description: Some("airlock's answer to each intake message, by sender".into()),
            ..Default::default()
        },
        stream::Config {
            name: config.dead_letter_stream.clone(),
            subjects: vec![format!("{prefix}.deadletter.>")],
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            max_message_size: INTAKE_MESSAGE_BYTES_MAX + 64 * 1024,
            deny_delete: true,
            deny_purge: true,
            description: Some("input airlock refused as unreadable or not allowed, with the reason".into()),
            ..Default::default()
        },
    ];
    for wanted in streams {
        if context.get_stream(&wanted.name).await.is_err() {
            context.create_stream(wanted).await.map_err(failed)?;
        }
    }
    Ok(())
}

/// Runs the intake consumer until `shutdown` turns true; then stops pulling, lets every command in flight finish
/// (and be acknowledged), and returns. Nothing unfinished is acknowledged.
pub async fn run_intake<L: EventLog + 'static>(
    service: Arc<Service<L>>,
    context: jetstream::Context,
    config: IntakeConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), IntakeError> {
    let stream = context.get_stream(&config.intake_stream).await.map_err(failed)?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &config.consumer,
            consumer::pull::Config {
                durable_name: Some(config.consumer.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_millis(ACK_WAIT_MS),
                max_ack_pending: (config.in_flight_max * 4) as i64,
                ..Default::default()
            },
        )
        .await
        .map_err(failed)?;
    let permits = Arc::new(Semaphore::new(config.in_flight_max));
    let mut in_flight = JoinSet::new();
    let config = Arc::new(config);
    while !*shutdown.borrow() {
        let batch = consumer
            .fetch()
            .max_messages(config.in_flight_max)
            .expires(Duration::from_millis(PULL_EXPIRES_MS))
            .messages();
        let mut messages = tokio::select! {
            batch = batch => match batch {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(%error, "intake pull failed; retrying");
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
            in_flight.spawn(async move {
                process(&service, &context, &config, message).await;
                drop(permit);
            });
        }
        while in_flight.try_join_next().is_some() {}
    }
    tracing::info!(in_flight = in_flight.len(), "intake stopping: finishing commands in flight");
    while in_flight.join_next().await.is_some() {}
    Ok(())
}

/// One intake message, end to end.
async fn process<L: EventLog>(
    service: &Service<L>,
    context: &jetstream::Context,
    config: &IntakeConfig,
    message: jetstream::Message,
) {
    let sequence = message.info().map(|info| info.stream_sequence).unwrap_or(0);
    let subject = message.subject.to_string();
    // The answer is stored before any notice goes out, so that how long it takes says nothing about the account.
    let ((actor, reply), notices) = with_deferred_notices(async {
        match subjects::parse_intake(&config.prefix, &subject) {
            Ok((actor, command)) => {
                let reply = handle_json(service, &actor, command, &message.payload).await;
                (Some(actor), reply)
            }
            Err(SubjectError(reason)) => (None, bad_subject(reason)),
        }
    })
    .await;
    let code = reply.error.as_ref().map(|error| error.code.as_str());
    if code == Some("unavailable") {
        tracing::warn!(sequence, "command left for redelivery: {}", reply.message);
        service.send_deferred(notices).await;
        let _ = message.ack_with(jetstream::AckKind::Nak(Some(Duration::from_millis(RETRY_DELAY_MS)))).await;
        return;
    }
    let poison = code.is_some_and(|code| POISON_CODES.contains(&code));
    let stored = async {
        if poison {
            dead_letter(context, config, actor.as_ref(), &subject, sequence, &message.payload, &reply).await?;
        }
        if let Some(actor) = &actor {
            publish_result(context, config, actor, sequence, &reply).await?;
        }
        Ok::<(), IntakeError>(())
    };
    let stored = stored.await;
    service.send_deferred(notices).await;
    match stored {
        Ok(()) => {
            // A lost acknowledgement only means a redelivery, which the command id turns into a no-op; waiting for
            // the server to confirm each one would halve the intake rate for nothing.
            if let Err(error) = message.ack().await {
                tracing::warn!(sequence, %error, "intake acknowledgement failed; the message will be redelivered");
            }
        }
        Err(error) => {
            tracing::warn!(sequence, %error, "could not store the answer; leaving the message for redelivery");
            let _ = message.ack_with(jetstream::AckKind::Nak(Some(Duration::from_millis(RETRY_DELAY_MS)))).await;
        }
    }
}

fn bad_subject(reason: String) -> Reply {
    Reply {
        accepted: false,
        command_id: None,
        case_id: None,
        status: None,
        message: reason.clone(),
        error: Some(crate::intake::ReplyError { code: "bad_subject".into(), reason }),
    }
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

/// Keeps refused input with the reason. The body is kept verbatim, except for `submit_proof`, whose body may hold an
/// owner's code: codes are never stored anywhere, so that body is replaced by its size and SHA-256.
async fn dead_letter(
    context: &jetstream::Context,
    config: &IntakeConfig,
    actor: Option<&crate::core::actor::Actor>,
    subject: &str,
    sequence: u64,
    payload: &[u8],
    reply: &Reply,
) -> Result<(), IntakeError> {
    let reason = reply.error.as_ref().map_or("refused", |error| error.reason.as_str());
    let code = reply.error.as_ref().map_or("refused", |error| error.code.as_str());
    let may_hold_a_code = subject.ends_with(".submit_proof") || code == "secret_in_untrusted_field";
    let body: Vec<u8> = if may_hold_a_code {
        format!("withheld: {} bytes, sha256 {}", payload.len(), hex::encode(Sha256::digest(payload))).into_bytes()
    } else {
        payload.to_vec()
    };
    let message = jetstream::message::PublishMessage::build()
        .payload(body.into())
        .header("Airlock-Reason-Code", code)
        .header("Airlock-Reason", reason.replace(['\r', '\n'], " "))
        .header("Airlock-Original-Subject", subject)
        .header("Airlock-Intake-Sequence", sequence.to_string())
        .message_id(format!("dead-{sequence}"));
    let pending = context.send_publish(subjects::dead_letter(&config.prefix, actor), message).await.map_err(failed)?;
    pending.await.map_err(failed)?;
    tracing::info!(sequence, code, "input kept in the dead-letter stream");
    Ok(())
}

/// Answers `<prefix>.query.<role>.<actor>` requests with a case's status, until `shutdown`.
pub async fn run_queries<L: EventLog + 'static>(
    service: Arc<Service<L>>,
    client: async_nats::Client,
    config: IntakeConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), IntakeError> {
    let mut requests =
        client.queue_subscribe(format!("{}.query.*.*", config.prefix), "airlock".into()).await.map_err(failed)?;
    loop {
        let request = tokio::select! {
            request = requests.next() => match request { Some(request) => request, None => return Ok(()) },
            _ = shutdown.changed() => return Ok(()),
        };
        let Some(reply_to) = request.reply.clone() else { continue };
        let answer = match subjects::parse_query(&config.prefix, &request.subject) {
            Some(actor) => crate::intake::query::answer(&service, &actor, &request.payload).await,
            None => serde_json::json!({ "error": { "code": "bad_subject", "reason": "not a query subject" } }),
        };
        let bytes = serde_json::to_vec(&answer).expect("an answer serializes");
        if let Err(error) = client.publish(reply_to, bytes.into()).await {
            tracing::warn!(%error, "could not answer a query");
        }
    }
}

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
