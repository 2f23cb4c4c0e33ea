//! Assembles the NATS-mode service: the JetStream event log and front-door streams on the server, and the
//! projection, embedded account directory and outbox in SQLite files under the data directory. `airlock serve` and
//! `airlock bench` run exactly this.

use crate::core::verification::Settings;
use crate::directory::embedded::EmbeddedDirectory;
use crate::intake::nats::{IntakeConfig, ensure_streams};
use crate::keys::Keys;
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
    std::fs::create_dir_all(data_dir)
        .map_err(|error| anyhow::anyhow!("cannot create the data directory {}: {error}", data_dir.display()))?;
    let log = JetStreamLog::open(client.clone(), JetStreamConfig { replicas, ..JetStreamConfig::default() }).await?;
    let events = log.stream().clone();
    let context = jetstream::new(client.clone());
    let intake = IntakeConfig { in_flight_max: in_flight, replicas, ..IntakeConfig::default() };
    ensure_streams(&context, &intake).await?;
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
        policy,
    };
    Ok(NatsMode { service, projection, events, context, intake })
}
