//! `airlock serve`: the production process. It takes commands from the NATS intake stream, decides and appends them
//! to the JetStream event log, projects the log into SQLite, runs the timers that drive cooling-off and expiry, and
//! answers case queries. SIGTERM or SIGINT stops it gracefully: no new command is pulled, commands in flight finish
//! and are acknowledged, and nothing unfinished is acknowledged.

use crate::cli::exit;
use crate::cli::nats_mode::{self, NatsMode};
use crate::intake::nats::{run_intake, run_queries};
use crate::keys::Keys;
use crate::projection::projector::run_projector;
use crate::service::Service;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The NATS server (or cluster member) to use, for example nats://127.0.0.1:4222.
    #[arg(long, env = "AIRLOCK_NATS_URL")]
    pub nats: String,
    /// Where the projection, the embedded account directory, the outbox and the key file live.
    #[arg(long, env = "AIRLOCK_DATA_DIR", default_value = "airlock-data")]
    pub data_dir: PathBuf,
    /// Replicas of the streams airlock creates: 1 for one server, 3 for a cluster.
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// Commands decided at once.
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// A folder of policies (airlock.cedarschema, default.cedar) to decide with instead of the shipped ones; airlock
    /// refuses to start if any policy fails to parse or validate.
    #[arg(long, env = "AIRLOCK_POLICIES")]
    pub policies: Option<PathBuf>,
    /// How often the timers look for cases whose cooling-off or time limit has passed.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub tick: Duration,
}

pub fn run(args: ServeArgs) -> u8 {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime starts");
    match runtime.block_on(serve(args)) {
        Ok(()) => exit::OK,
        Err(error) => {
            eprintln!("error: {error:#}");
            tracing::error!("{error:#}");
            exit::UNAVAILABLE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let policy = match &args.policies {
        Some(dir) => std::sync::Arc::new(
            crate::cli::policy::load_dir(dir).map_err(|error| anyhow::anyhow!("policies refused: {error}"))?,
        ),
        None => crate::policy::Engine::shared(),
    };
    let client = crate::nats::connect(&args.nats, "airlock").await?;
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|error| anyhow::anyhow!("cannot create the data directory {}: {error}", args.data_dir.display()))?;
    let keys = Keys::load_or_create(&args.data_dir.join("airlock.key"))
        .map_err(|error| anyhow::anyhow!("cannot use the key file in {}: {error}", args.data_dir.display()))?;
    let NatsMode { service, projection, events, context, intake: intake_config } =
        nats_mode::open(&client, &args.data_dir, args.replicas, args.in_flight, keys, policy.clone()).await?;
    tracing::info!(version = policy.version(), "policies loaded");
    let (stop, shutdown) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(named("intake", run_intake(service.clone(), context, intake_config.clone(), shutdown.clone())));
    tasks.spawn(named("queries", run_queries(service.clone(), client.clone(), intake_config, shutdown.clone())));
    tasks.spawn(named("projector", run_projector(projection, events, "airlock-projector".into(), shutdown.clone())));
    tasks.spawn(named("timers", timers(service, args.tick, shutdown.clone())));
    tracing::info!(nats = %args.nats, data_dir = %args.data_dir.display(), "airlock serving");
    eprintln!("airlock serving on {} (data in {})", args.nats, args.data_dir.display());
    let mut failure = None;
    tokio::select! {
        _ = termination() => tracing::info!("stopping: finishing work in flight"),
        Some(ended) = tasks.join_next() => failure = Some(ended),
    }
    let _ = stop.send(true);
    while let Some(ended) = tasks.join_next().await {
        if let Ok(Err(error)) = ended {
            tracing::warn!("{error:#}");
        }
    }
    client.flush().await.ok();
    match failure {
        Some(Ok(Err(error))) => Err(error),
        Some(Err(panic)) => Err(anyhow::anyhow!("a task panicked: {panic}")),
        Some(Ok(Ok(()))) | None => Ok(()),
    }
}

async fn named<E: std::fmt::Display>(
    name: &'static str,
    task: impl std::future::Future<Output = Result<(), E>>,
) -> anyhow::Result<()> {
    task.await.map_err(|error| anyhow::anyhow!("{name} stopped: {error}"))
}

/// The timers: cooling-off ends, time limits, and pending executions, every `tick`.
async fn timers<L: crate::log::EventLog>(
    service: Arc<Service<L>>,
    tick: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut interval = tokio::time::interval(tick);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                if let Err(error) = service.run_due().await {
                    tracing::warn!(%error, "timers: will retry on the next tick");
                }
            }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn termination() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM can be handled");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
