//! Builds the embedded service: event log, projection, directory and outbox in SQLite files under one data
//! directory, with the key file beside them. This is the default when no NATS URL is given.

use crate::clock::Clock;
use crate::core::verification::Settings;
use crate::directory::embedded::EmbeddedDirectory;
use crate::keys::Keys;
use crate::log::sqlite::SqliteLog;
use crate::notify::outbox::Outbox;
use crate::projection::Projection;
use crate::service::Service;
use std::path::Path;
use std::sync::Arc;

pub struct Embedded {
    pub service: Service<SqliteLog>,
    pub directory: Arc<EmbeddedDirectory>,
    pub outbox: Arc<Outbox>,
}

/// Opens the embedded store of a data directory as the command line uses it: the system clock, and the key file of
/// the directory (created on first use), with the projection brought up to the log, as every command reads from it
/// or decides on facts it holds (it can be behind after a power loss, ADR 30, or a lost file). A NATS deployment's
/// data directory is refused.
pub async fn open_data_dir(data_dir: &Path) -> anyhow::Result<Embedded> {
    // A NATS deployment's data directory holds the projection `serve --nats` writes and no log: an embedded store
    // opened there would write into that projection, and its events would be read by nothing (issue 17).
    if data_dir.join("projection.db").is_file() && !data_dir.join("log.db").is_file() {
        anyhow::bail!(
            "{} belongs to a NATS deployment (it holds a projection, and the events are on the NATS servers): \
             nothing was changed; use --nats URL --nats-nkey YOUR-KEY",
            data_dir.display()
        );
    }
    std::fs::create_dir_all(data_dir).map_err(|error| {
        anyhow::anyhow!("--data-dir: cannot create the data directory {}: {error}", data_dir.display())
    })?;
    let keys = Keys::load_or_create(&data_dir.join("airlock.key"))
        .map_err(|error| anyhow::anyhow!("cannot use the key file in {}: {error}", data_dir.display()))?;
    let embedded = open(data_dir, Arc::new(crate::clock::SystemClock), keys)
        .map_err(|error| anyhow::anyhow!("cannot open the embedded store in {}: {error:#}", data_dir.display()))?;
    embedded.service.catch_up_projection().await.map_err(|error| {
        anyhow::anyhow!("cannot bring the projection in {} up to the log: {error}", data_dir.display())
    })?;
    Ok(embedded)
}

pub fn open(data_dir: &Path, clock: Arc<dyn Clock>, keys: Keys) -> anyhow::Result<Embedded> {
    std::fs::create_dir_all(data_dir)?;
    let directory = Arc::new(EmbeddedDirectory::open(&data_dir.join("directory.db"))?);
    let outbox = Arc::new(Outbox::new(directory.clone()));
    let service = Service {
        log: SqliteLog::open(&data_dir.join("log.db"))?,
        projection: Arc::new(Projection::open(&data_dir.join("projection.db"))?),
        directory: directory.clone(),
        notifier: outbox.clone(),
        clock,
        keys,
        settings: Settings::default(),
        public_url: crate::service::PUBLIC_URL_DEFAULT.to_string(),
        project_inline: true,
        admissions: Default::default(),
        redelivery: Default::default(),
        sign_in_step_up: false,
        campaigns: Default::default(),
        policy: crate::policy::Engine::shared(),
    };
    Ok(Embedded { service, directory, outbox })
}
