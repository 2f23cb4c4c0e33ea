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
    };
    Ok(Embedded { service, directory, outbox })
}
