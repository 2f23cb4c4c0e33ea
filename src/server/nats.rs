//! Assembles the NATS-mode service: the JetStream event log and front-door streams on the server, and the
//! projection, embedded account directory and outbox in SQLite files under the data directory. `airlock serve` and
//! `airlock bench` run exactly this.

use crate::core::verification::Settings;
use crate::directory::embedded::EmbeddedDirectory;
use crate::intake::nats::{IntakeConfig, ensure_streams};
use crate::keys::Keys;
use crate::log::LogError;
use crate::log::jetstream::{JetStreamConfig, JetStreamLog};
use crate::notify::outbox::Outbox;
use crate::projection::Projection;
use crate::service::{PUBLIC_URL_DEFAULT, Service};
use async_nats::jetstream;
use std::path::Path;
use std::sync::Arc;

pub struct NatsMode {
    pub service: Service<JetStreamLog>,
    pub projection: Arc<Projection>,
    /// The event stream, for the projector.
    pub events: jetstream::stream::Stream,
    pub context: jetstream::Context,
    pub intake: IntakeConfig,
}

pub async fn open(
    client: &async_nats::Client,
    data_dir: &Path,
    replicas: usize,
    in_flight: usize,
    keys: Keys,
    policy: Arc<crate::policy::Engine>,
) -> anyhow::Result<NatsMode> {
    std::fs::create_dir_all(data_dir).map_err(|error| {
        anyhow::anyhow!("--data-dir: cannot create the data directory {}: {error}", data_dir.display())
    })?;
    let context = jetstream::new(client.clone());
    let intake = IntakeConfig { in_flight_max: in_flight, replicas, ..IntakeConfig::default() };
    let log = when_ready(|| async {
        let log = JetStreamLog::open(client.clone(), JetStreamConfig { replicas, ..JetStreamConfig::default() })
            .await
            .map_err(|error| match error {
                LogError::Misconfigured(_) | LogError::Corrupt(_) => Startup::Refused(error.into()),
                LogError::Unavailable(_) | LogError::Conflict { .. } => Startup::NotReady(error.to_string()),
            })?;
        ensure_streams(&context, &intake).await.map_err(|error| Startup::NotReady(error.to_string()))?;
        Ok(log)
    })
    .await?;
    let events = log.stream().clone();
    let directory = Arc::new(EmbeddedDirectory::open(&data_dir.join("directory.db"))?);
    let projection = Arc::new(Projection::open(&data_dir.join("projection.db"))?);
    let service = Service {
        log,
        projection: projection.clone(),
        directory: directory.clone(),
        notifier: Arc::new(Outbox::new(directory)),
        clock: crate::clock::process_clock(),
        keys,
        settings: Settings::default(),
        public_url: PUBLIC_URL_DEFAULT.to_string(),
        project_inline: false,
        admissions: Default::default(),
        redelivery: Default::default(),
        sign_in_step_up: false,
        campaigns: Default::default(),
        policy,
    };
    Ok(NatsMode { service, projection, events, context, intake })
}

/// How long `serve` waits for a JetStream that is reachable but not ready (a cluster still electing its leaders, a
/// server still recovering its store) before it gives up with the last reason.
const STARTUP_READY_WAIT_MS: u64 = 180_000;

/// The first wait between startup attempts; each later one doubles, up to `STARTUP_RETRY_MS_MAX`.
const STARTUP_RETRY_MS_MIN: u64 = 250;
const STARTUP_RETRY_MS_MAX: u64 = 5_000;

/// Why a startup step did not work: worth waiting for, or not.
enum Startup {
    NotReady(String),
    Refused(anyhow::Error),
}

/// Runs `attempt` until it succeeds, is refused, or `STARTUP_READY_WAIT_MS` has passed.
async fn when_ready<T, F, Fut>(mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Startup>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(STARTUP_READY_WAIT_MS);
    let mut wait_ms = STARTUP_RETRY_MS_MIN;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(Startup::Refused(error)) => return Err(error),
            Err(Startup::NotReady(reason)) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%reason, "JetStream is not ready; waiting for it");
                tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
                wait_ms = (wait_ms * 2).min(STARTUP_RETRY_MS_MAX);
            }
            Err(Startup::NotReady(reason)) => {
                anyhow::bail!("JetStream was not ready within {} s: {reason}", STARTUP_READY_WAIT_MS / 1000)
            }
        }
    }
}
