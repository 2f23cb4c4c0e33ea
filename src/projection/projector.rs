//! The projector of `airlock serve`: a durable JetStream consumer that feeds the event stream into the SQLite
//! projection. Each batch is applied in one SQLite transaction together with the last applied stream sequence, and
//! acknowledged only after that transaction commits; a crash at any point therefore loses nothing (unacknowledged
//! messages come again) and applies nothing twice (the checkpoint skips what was already applied). A batch that does
//! not follow the checkpoint without a hole is applied not at all, and the consumer is repositioned to read again.

use crate::log::{Entry, decode_commit};
use crate::projection::{Projection, ProjectionError};
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

/// Runs `work` on the projection on the blocking pool: every SQLite call of the projector goes through here, so a
/// slow disk or a busy database never stalls the threads driving NATS.
async fn on_blocking<T: Send + 'static>(
    projection: &Arc<Projection>,
    work: impl FnOnce(&Projection) -> T + Send + 'static,
) -> Result<T, ProjectorError> {
    let projection = projection.clone();
    tokio::task::spawn_blocking(move || work(&projection)).await.map_err(failed)
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
    let config = consumer::pull::Config {
        durable_name: Some(name.to_string()),
        ack_policy: consumer::AckPolicy::All,
        deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: checkpoint + 1 },
        max_ack_pending: (BATCH_MAX * 4) as i64,
        ..Default::default()
    };
    match stream.create_consumer(config.clone()).await {
        Ok(consumer) => Ok(consumer),
        // Around a server restart the lookup above can fail while the consumer still exists at another position,
        // and the server refuses to move its start ("start sequence can not be updated", 10012): delete it and
        // create it again, once.
        Err(error) => {
            tracing::warn!(%error, "projector consumer could not be created; deleting it and creating it again");
            let _ = stream.delete_consumer(name).await;
            stream.create_consumer(config).await.map_err(failed)
        }
    }
}

/// What the projector does about a batch it could not apply.
enum Recovery {
    /// Read again from the checkpoint (a lost entry, or a fresh file to rebuild).
    Reposition,
    /// The database could not write (a full disk, a lock): wait, then read again from the checkpoint.
    RetryLater,
    /// The log itself cannot be projected: stop.
    Stop(ProjectorError),
}

/// Projects until `shutdown` turns true, then returns after the batch in hand is applied and acknowledged. It heals
/// itself from the log: an entry lost on the way is read again, a projection file deleted under it is rebuilt at
/// once, and a projection that cannot place an entry is set aside and rebuilt once; only a log that still cannot be
/// projected after that stops it.
pub async fn run_projector(
    projection: Arc<Projection>,
    stream: jetstream::stream::Stream,
    consumer_name: String,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ProjectorError> {
    let checkpoint = on_blocking(&projection, Projection::last_sequence).await?.map_err(failed)?;
    let mut consumer = consumer_at_checkpoint(&stream, &consumer_name, checkpoint).await?;
    tracing::info!(checkpoint, "projector started");
    // The entry a projection set aside could not place: failing on it again means the log is at fault.
    let mut set_aside_at: Option<u64> = None;
    while !*shutdown.borrow() {
        if on_blocking(&projection, Projection::reopen_if_replaced).await?.map_err(failed)? {
            tracing::error!(
                "the projection file was deleted or replaced under airlock serve; rebuilding it from the log"
            );
            consumer = consumer_at_checkpoint(&stream, &consumer_name, 0).await?;
            continue;
        }
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
        let applied =
            on_blocking(&projection, move |projection| projection.apply(&entries).map(|last| (last, entries.len())))
                .await?;
        let applied = match applied {
            Ok(applied) => applied,
            Err(error) => {
                let set_aside = set_aside_at;
                let (recovery, set_aside) = on_blocking(&projection, move |projection| {
                    let mut set_aside = set_aside;
                    (recover(projection, error, &mut set_aside), set_aside)
                })
                .await?;
                set_aside_at = set_aside;
                match recovery {
                    Recovery::Reposition => {}
                    Recovery::RetryLater => tokio::time::sleep(Duration::from_millis(PULL_EXPIRES_MS)).await,
                    Recovery::Stop(error) => return Err(error),
                }
                let checkpoint = on_blocking(&projection, Projection::last_sequence).await?.map_err(failed)?;
                consumer = consumer_at_checkpoint(&stream, &consumer_name, checkpoint).await?;
                continue;
            }
        };
        // AckPolicy::All: acknowledging the last message acknowledges the whole batch, and every entry of it was
        // applied (a batch with a hole is applied not at all). The rows are committed already, so an acknowledgement
        // lost to a NATS restart only means the batch comes again, and the checkpoint skips it. An acknowledgement can
        // also outlive the rows, if a power loss takes the projection's last commits back (ADR 30): the consumer is
        // then ahead of the checkpoint, and `consumer_at_checkpoint` moves it back when the projector starts.
        if let Err(error) = last.double_ack().await {
            tracing::warn!(%error, checkpoint = applied.0, "projector: acknowledgement not confirmed; the batch may come again");
        }
        tracing::debug!(checkpoint = applied.0, commits = applied.1, "projected");
    }
    Ok(())
}

/// Decides what to do about a batch that was not applied.
fn recover(projection: &Projection, error: ProjectionError, set_aside_at: &mut Option<u64>) -> Recovery {
    match error {
        ProjectionError::Gap { expected, found } => {
            tracing::warn!(
                expected,
                found,
                "projector: an event was lost on the way; reading again from the checkpoint"
            );
            Recovery::Reposition
        }
        ProjectionError::Corrupt { sequence, reason } if *set_aside_at != Some(sequence) => {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_millis() as u64);
            match projection.set_aside(now_ms) {
                Ok(aside) => {
                    tracing::error!(sequence, %reason, aside = %aside.display(), "the projection cannot place an event; \
                        it was set aside and is rebuilt from the log");
                    *set_aside_at = Some(sequence);
                    Recovery::Reposition
                }
                Err(error) => Recovery::Stop(failed(error)),
            }
        }
        ProjectionError::Database(error) => {
            tracing::warn!(%error, "projector: the projection could not be written; retrying");
            Recovery::RetryLater
        }
        error @ ProjectionError::Corrupt { .. } => Recovery::Stop(failed(error)),
    }
}
