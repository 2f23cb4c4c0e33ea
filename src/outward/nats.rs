//! Case events on NATS (issue 20, item 2; ADR 27): each outward document published to the stream `AIRLOCK_NOTIFY`
//! on a public subject per case and kind, `airlock.notify.case.<case>.<kind>`, and per alert event,
//! `airlock.notify.alert.<kind>`, with `Nats-Msg-Id` = the document's id (a document published again within the
//! server's duplicate window is stored once). `airlock nats-config --integrator ID` writes a key that may read this
//! stream, through its own durable consumer, and nothing else. The stream keeps `NOTIFY_KEPT` of events: it is a feed
//! for the company's systems, not the record (the log is).

use crate::log::jetstream::subject_token;
use crate::outward::Outward;
use async_nats::jetstream::{self, stream};
use std::time::Duration;

pub const NOTIFY_STREAM: &str = "AIRLOCK_NOTIFY";
pub const NOTIFY_PREFIX: &str = "airlock.notify";

/// How long the stream keeps a document: a week, for an integrator that was down over a weekend.
const NOTIFY_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);
/// The stream's size limit; past it the oldest documents go first.
const NOTIFY_BYTES_MAX: i64 = 1 << 30;
/// How long a publish waits for the server's acknowledgement.
const PUBLISH_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// The durable consumer of the log, shared by every airlock process, that publishes the documents.
pub const PUBLISHER_CONSUMER: &str = "airlock-notify";

/// The name of an integrator's durable consumer of `AIRLOCK_NOTIFY`, the only one its key may create or read.
pub fn integrator_consumer(id: &str) -> String {
    format!("integrator-{id}")
}

pub fn stream_config(replicas: usize) -> stream::Config {
    stream::Config {
        name: NOTIFY_STREAM.into(),
        subjects: vec![format!("{NOTIFY_PREFIX}.>")],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        max_age: NOTIFY_KEPT,
        max_bytes: NOTIFY_BYTES_MAX,
        discard: stream::DiscardPolicy::Old,
        deny_delete: true,
        deny_purge: true,
        description: Some("airlock's case and alert events, redacted, for the company's other systems".into()),
        ..Default::default()
    }
}

/// Creates the stream, or leaves an existing one as it is (keeping its replica count and any limits an operator set).
pub async fn ensure_stream(context: &jetstream::Context, replicas: usize) -> Result<(), String> {
    if context.get_stream(NOTIFY_STREAM).await.is_ok() {
        return Ok(());
    }
    context.create_stream(stream_config(replicas)).await.map(|_| ()).map_err(|error| {
        format!(
            "cannot create the stream {NOTIFY_STREAM}: {error} (a nats.conf written by an older `airlock \
                 nats-config` does not allow it: run it again, keys are kept)"
        )
    })
}

/// The durable consumer of `AIRLOCK_NOTIFY` an integrator reads (`serve --integrator ID`), created by airlock: the
/// integrator's key may read it, acknowledge its messages and ask about it, never create a consumer (a consumer's
/// configuration, which the broker does not check against the creator's permissions, could deliver to any subject).
/// From the first document the stream holds; one that exists is kept as it is.
pub async fn ensure_integrator(context: &jetstream::Context, id: &str) -> Result<(), String> {
    let name = integrator_consumer(id);
    let stream =
        context.get_stream(NOTIFY_STREAM).await.map_err(|error| format!("the stream {NOTIFY_STREAM}: {error}"))?;
    let config = jetstream::consumer::pull::Config {
        durable_name: Some(name.clone()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        deliver_policy: jetstream::consumer::DeliverPolicy::All,
        ack_wait: Duration::from_secs(30),
        max_ack_pending: 1_000,
        description: Some(format!("the integrator {id}'s events (airlock nats-config --integrator {id})")),
        ..Default::default()
    };
    stream
        .get_or_create_consumer(&name, config)
        .await
        .map(|_| ())
        .map_err(|error| format!("the integrator {id}'s consumer {name}: {error}"))
}

/// The public subject of one document.
pub fn subject(document: &Outward) -> String {
    let kind = document.event_type.split_once('.').map_or(document.event_type.as_str(), |(_, kind)| kind);
    match &document.case_id {
        Some(case_id) => format!("{NOTIFY_PREFIX}.case.{}.{kind}", subject_token(case_id.as_str())),
        None => format!("{NOTIFY_PREFIX}.alert.{kind}"),
    }
}

/// Publishes documents to `AIRLOCK_NOTIFY`.
pub struct Publisher {
    context: jetstream::Context,
    replicas: usize,
}

impl Publisher {
    pub fn new(context: jetstream::Context, replicas: usize) -> Publisher {
        Publisher { context, replicas }
    }

    /// Publishes `documents` in order and waits until the server stored each (or said it had it already): one
    /// round trip for all of them. After a failure it is called again with the same documents; those already stored
    /// are dropped by their `Nats-Msg-Id`. A stream deleted under airlock is created again.
    pub async fn publish_all(&self, documents: &[Outward]) -> Result<(), String> {
        let mut pending = Vec::with_capacity(documents.len());
        for document in documents {
            let body = serde_json::to_vec(&document.document).expect("a document serializes");
            let message = jetstream::message::PublishMessage::build()
                .payload(body.into())
                .message_id(document.id.clone())
                .header("Airlock-Event-Type", document.event_type.as_str());
            match self.context.send_publish(subject(document), message).await {
                Ok(acknowledgement) => pending.push(acknowledgement),
                Err(error) => return Err(error.to_string()),
            }
        }
        for acknowledgement in pending {
            let failure = match tokio::time::timeout(PUBLISH_ACK_TIMEOUT, acknowledgement).await {
                Ok(Ok(_)) => continue,
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("no acknowledgement within {} s", PUBLISH_ACK_TIMEOUT.as_secs()),
            };
            if self.context.get_stream(NOTIFY_STREAM).await.is_err() {
                ensure_stream(&self.context, self.replicas).await?;
            }
            return Err(failure);
        }
        Ok(())
    }
}
