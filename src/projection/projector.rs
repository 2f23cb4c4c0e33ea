//! The projector of `airlock serve`: a durable JetStream consumer that feeds the event stream into the SQLite
//! projection. Each batch is applied in one SQLite transaction together with the last applied stream sequence, and
//! acknowledged only after that transaction commits; a crash at any point therefore loses nothing (unacknowledged
//! messages come again) and applies nothing twice (the checkpoint skips what was already applied).

use crate::log::{Entry, decode_commit};
use crate::projection::Projection;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Commits applied per SQLite transaction: large enough to amortise the commit, small enough to keep latency low.
const BATCH_MAX: usize = 512;

/// How long one pull waits for new events before checking for shutdown.
const PULL_EXPIRES_MS: u64 = 500;

#[derive(Debug, thiserror::Error)]
#[error("projector: {0}")]
pub struct ProjectorError(pub String);

fn failed(error: impl std::fmt::Display) -> ProjectorError {
    ProjectorError(error.to_string())
}

/// The durable consumer, positioned right after the projection's checkpoint. The checkpoint is the truth: when the
/// consumer's acknowledged position differs (a rebuilt or restored projection file), the consumer is recreated to
/// start where the projection actually is.
async fn consumer_at_checkpoint(
    stream: &jetstream::stream::Stream,
    name: &str,
    checkpoint: u64,
) -> Result<consumer::PullConsumer, ProjectorError> {
    if let Ok(mut existing) = stream.get_consumer::<consumer::pull::Config>(name).await {
        let info = existing.info().await.map_err(failed)?;
        if info.ack_floor.stream_sequence == checkpoint && info.num_ack_pending == 0 {
            return Ok(existing);
        }
        tracing::info!(
            acknowledged = info.ack_floor.stream_sequence,
            checkpoint,
            "projector consumer does not match the projection's checkpoint; repositioning it"
        );
        stream.delete_consumer(name).await.map_err(failed)?;
    }
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.to_string()),
            ack_policy: consumer::AckPolicy::All,
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: checkpoint + 1 },
            max_ack_pending: (BATCH_MAX * 4) as i64,
            ..Default::default()
        })
        .await
        .map_err(failed)
}

/// Projects until `shutdown` turns true, then returns after the batch in hand is applied and acknowledged.
pub async fn run_projector(
    projection: Arc<Projection>,
    stream: jetstream::stream::Stream,
    consumer_name: String,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ProjectorError> {
    let checkpoint = projection.last_sequence().map_err(failed)?;
    let consumer = consumer_at_checkpoint(&stream, &consumer_name, checkpoint).await?;
    tracing::info!(checkpoint, "projector started");
    while !*shutdown.borrow() {
        let pull = consumer.fetch().max_messages(BATCH_MAX).expires(Duration::from_millis(PULL_EXPIRES_MS)).messages();
        let mut messages = tokio::select! {
            pulled = pull => match pulled {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(%error, "projector pull failed; retrying");
                    tokio::time::sleep(Duration::from_millis(PULL_EXPIRES_MS)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let mut entries = Vec::new();
        let mut last = None;
        while let Some(message) = messages.next().await {
            let Ok(message) = message else { continue };
            let sequence = message.info().map_err(failed)?.stream_sequence;
            entries.push(Entry { sequence, envelopes: decode_commit(&message.payload).map_err(failed)? });
            last = Some(message);
        }
        let Some(last) = last else { continue };
        // SQLite work runs on the blocking pool, so a batch's commit never stalls the threads driving NATS.
        let writer = projection.clone();
        let applied = tokio::task::spawn_blocking(move || writer.apply(&entries).map(|last| (last, entries.len())))
            .await
            .map_err(failed)?
            .map_err(failed)?;
        // AckPolicy::All: acknowledging the last message acknowledges the whole batch. The rows are committed
        // already, so an acknowledgement lost to a NATS restart only means the batch comes again, and the checkpoint
        // skips it: a reason to go on, not to stop projecting.
        if let Err(error) = last.double_ack().await {
            tracing::warn!(%error, checkpoint = applied.0, "projector: acknowledgement not confirmed; the batch may come again");
        }
        tracing::debug!(checkpoint = applied.0, commits = applied.1, "projected");
    }
    Ok(())
}
